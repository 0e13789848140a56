//! The command-line contract every service binary keeps (`shared::cli`), checked on the real binary.

use crate::cli::exit;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to its end, failing the test if it has not exited within 20 s (a binary that starts its
/// server instead of answering `--help` would otherwise hang the test).
fn finish(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait().expect("wait for the binary") {
            Some(_) => return child.wait_with_output().expect("binary output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{cmd:?} did not exit within 20 s");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The binary at `bin`, with a clean environment (PATH only) plus `vars`, on a free port.
fn command(bin: &str, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .envs(vars.iter().copied())
        .args(args);
    c
}

/// Checks the shared command line of service `name` (binary `bin`, flags it takes besides `--help` and
/// `--version`): `--help` and `-h` print usage, every flag and the exit-code table and exit 0 without
/// starting; `--version`/`-V` print `NAME VERSION`; an unknown argument exits 2 with the reason and the
/// usage line on stderr; and a configuration error (`bad_config`) exits 2 with `want_error` on stderr even
/// with `RUST_LOG=off`.
pub fn assert_service_cli(
    bin: &str,
    name: &str,
    flags: &[&str],
    bad_config: &[(&str, &str)],
    want_error: &str,
) {
    for help in ["--help", "-h"] {
        let out = finish(command(bin, &[], &[help]));
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(exit::OK.into()), "{help}: {stdout}");
        assert!(stdout.starts_with(&format!("{name}: ")), "{help}: {stdout}");
        assert!(stdout.contains("USAGE"), "{help}: {stdout}");
        assert!(
            stdout.contains(crate::cli::EXIT_CODES_HELP.trim_end()),
            "{help}: {stdout}"
        );
        for flag in flags.iter().chain(&["--help", "--version"]) {
            assert!(
                stdout.contains(flag),
                "{flag} missing from {help}: {stdout}"
            );
        }
        assert!(
            out.stderr.is_empty(),
            "{help} wrote to stderr: {}",
            text(&out.stderr)
        );
    }
    for version in ["--version", "-V"] {
        let out = finish(command(bin, &[], &[version]));
        assert_eq!(out.status.code(), Some(exit::OK.into()));
        assert_eq!(
            text(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{version}"
        );
    }
    let out = finish(command(bin, &[], &["--bogus"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::CONFIG.into()), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("{name}: unknown argument \"--bogus\"").as_str()),
        "{stderr}"
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with(&format!("usage: {name} "))),
        "{stderr}"
    );
    let mut vars = vec![("RUST_LOG", "off")];
    vars.extend_from_slice(bad_config);
    let out = finish(command(bin, &vars, &[]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::CONFIG.into()), "{stderr}");
    assert!(
        stderr.starts_with(&format!("{name}: ")) && stderr.contains(want_error),
        "configuration error with RUST_LOG=off: want {want_error:?} on stderr, got {stderr:?}"
    );
}
