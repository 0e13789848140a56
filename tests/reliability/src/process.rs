//! The workspace's binaries as child processes: found in the cargo target directory, started with
//! a clean environment, every stdout/stderr line kept, stopped with SIGTERM or SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A free TCP port on 127.0.0.1, and a temp directory removed on drop (kept with `TEST_KEEP_DIRS=1`).
pub use shared::testkit::{TempDir, free_port};

/// The cargo target directory of this workspace (`CARGO_TARGET_DIR`, else `<repo>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// Path of a workspace binary built by `cargo build --workspace` (`cargo test --workspace` builds
/// them too), from `target/$RELIABILITY_PROFILE` (default `debug`). Panics with what to run when it
/// is missing.
pub fn binary(name: &str) -> PathBuf {
    let dir = target_dir();
    let profile = std::env::var("RELIABILITY_PROFILE").unwrap_or_else(|_| "debug".into());
    let p = dir.join(&profile).join(name);
    if p.is_file() {
        return p;
    }
    let build = if profile == "release" {
        "cargo build --workspace --release"
    } else {
        "cargo build --workspace"
    };
    panic!(
        "binary {name} not found in {}/{profile}: run `{build}` first (cargo test --workspace builds the debug ones)",
        dir.display()
    )
}

/// A running child process with its output lines kept.
pub struct Proc {
    /// Short name used in messages.
    pub name: String,
    child: Child,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    peak_rss_kb: Arc<AtomicU32>,
}

fn collect(
    reader: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = BufReader::new(reader).lines();
        while let Ok(Some(line)) = r.next_line().await {
            if std::env::var_os("RELIABILITY_ECHO").is_some() {
                eprintln!("{line}");
            }
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    })
}

impl Proc {
    /// Starts `path` with only `vars` in its environment (plus `HOME=dir`, `PATH`), in `dir`.
    pub fn spawn(
        name: &str,
        path: &Path,
        args: &[&str],
        vars: &[(String, String)],
        dir: &Path,
    ) -> Self {
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .current_dir(dir)
            .env("HOME", dir)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", path.display()));
        let pid = child.id().expect("pid of a running child");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, lines.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, lines.clone()));
        }
        let peak_rss_kb = Arc::new(AtomicU32::new(0));
        let peak = peak_rss_kb.clone();
        tokio::spawn(async move {
            // VmHWM is gone once the process exits: sample it while it runs.
            while let Some(kb) = status_kb(pid, "VmHWM:") {
                peak.fetch_max(kb as u32, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            name: name.to_owned(),
            child,
            pid,
            lines,
            readers,
            peak_rss_kb,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every output line so far (stdout and stderr interleaved).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Current resident set size in KiB (`VmRSS`), `None` once exited.
    pub fn rss_kb(&self) -> Option<u64> {
        status_kb(self.pid, "VmRSS:")
    }

    /// Highest `VmHWM` seen (sampled every 100 ms while it runs), KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        let now = status_kb(self.pid, "VmHWM:").unwrap_or(0);
        (self.peak_rss_kb.load(Ordering::Relaxed) as u64).max(now)
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {} ({})", self.pid, self.name);
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGKILL and waits for the exit.
    pub async fn sigkill(&mut self) {
        self.signal("-KILL");
        let _ = self.wait(Duration::from_secs(30)).await;
    }

    /// Waits for the exit (panics after `limit`, with the last lines of output).
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => {
                // The readers end at EOF, once they have taken the last lines.
                for r in self.readers.drain(..) {
                    let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
                }
                status
            }
            Ok(Err(e)) => panic!("wait for {}: {e}", self.name),
            Err(_) => panic!(
                "{} did not exit within {limit:?}; last output:\n{}",
                self.name,
                self.tail(30)
            ),
        }
    }

    /// The last `n` output lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let l = self.lines();
        l[l.len().saturating_sub(n)..].join("\n")
    }
}

/// A `Vm*:` field of `/proc/<pid>/status`, KiB.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Polls `url` until it answers 2xx; panics after `limit`.
pub async fn wait_http_ok(url: &str, limit: Duration) {
    let client = shared::testkit::http_client();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `cond` every 20 ms until true; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
