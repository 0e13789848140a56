//! The command line every service shares: `--help`, `--version`, the service's own flags, a usage line
//! and exit 2 for anything else, and one exit-code table.
//!
//! Configuration errors are printed on stderr by [`config_error`] whatever `RUST_LOG` says: a service that
//! cannot start must say why even with logging off.

use std::process::ExitCode;

/// The exit codes of every service (`--help` prints [`EXIT_CODES_HELP`]).
pub mod exit {
    /// Stopped by SIGTERM/SIGINT after a clean shutdown, `--once` delivered every event, or `--help`.
    pub const OK: u8 = 0;
    /// Failed while running: cannot listen, the runtime failed, the server stopped with an error.
    pub const RUNTIME: u8 = 1;
    /// Bad configuration or command line: a variable, a config file, an unknown argument.
    pub const CONFIG: u8 = 2;
    /// Credentials refused at start (cts-exporter: IAM refused, no CTS endpoint for the region).
    pub const AUTH: u8 = 3;
    /// `--once` ended without fetching and delivering every event (cts-exporter).
    pub const INCOMPLETE: u8 = 4;
}

/// The exit-code table, as every service's `--help` prints it.
pub const EXIT_CODES_HELP: &str = "\
EXIT CODES (the same for every service of this project):
    0   clean shutdown after SIGTERM/SIGINT, --once delivered every event, --help, --version
    1   runtime failure: cannot listen on PORT, the server or runtime failed
    2   bad configuration or command line (the message names the variable, key or argument)
    3   credentials refused at start (cts-exporter: IAM refused, no CTS endpoint for the region)
    4   --once did not fetch and deliver every event (cts-exporter)
";

/// The variables of the sink server scaffold and of telemetry, as both sinks' `--help` prints them.
pub const SINK_SERVER_HELP: &str = "\
SERVER AND LOGS (default in brackets):
    PORT, HOST              listen address [8080, 0.0.0.0]; events on any path, GET /healthz, /readyz, /metrics
    MAX_BODY_BYTES          largest request body, larger gets 413 [1048576]
    HTTP_WORKERS            HTTP worker threads [2]
    SHUTDOWN_TIMEOUT_SECS   on SIGTERM, how long in-flight events may take [20]
    SHUTDOWN_DELAY_SECS     on SIGTERM, answer not-ready this long before closing [0]
    RUST_LOG, LOG_FORMAT    log filter [info] and format, text or json [text]
    OTEL_EXPORTER_OTLP_ENDPOINT   export spans over OTLP/HTTP [off]
    SSL_CERT_FILE           PEM bundle of trusted roots for TLS to backends [the system's]
";

/// A service's command line: its name, version, `--help` text and the flags it takes besides
/// `--help`/`-h` and `--version`/`-V`.
#[derive(Debug, Clone, Copy)]
pub struct Cli {
    /// The binary's name (`neo4j-sink`), printed before every message.
    pub name: &'static str,
    /// `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// The `--help` text in sections, printed in order (the exit-code table is appended).
    pub help: &'static [&'static str],
    /// Flags the service takes (`--once`); none take a value.
    pub flags: &'static [&'static str],
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the service, with these of its flags set.
    Run(Flags),
    /// Print the help text and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// The service flags given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<&'static str>);

impl Flags {
    /// Whether `flag` (e.g. `"--once"`) was given.
    pub fn has(&self, flag: &str) -> bool {
        self.0.contains(&flag)
    }
}

/// An argument the service does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown argument {0:?}")]
pub struct UsageError(pub String);

impl Cli {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(&self, args: I) -> Result<Command, UsageError> {
        let mut flags = Vec::new();
        let mut command = None;
        for arg in args {
            match arg.as_str() {
                "--help" | "-h" => command = Some(Command::Help),
                "--version" | "-V" => command = command.or(Some(Command::Version)),
                other => match self.flags.iter().find(|f| **f == other) {
                    Some(f) => flags.push(*f),
                    None => return Err(UsageError(arg)),
                },
            }
        }
        Ok(command.unwrap_or(Command::Run(Flags(flags))))
    }

    /// The whole `--help` text: the service's sections, then [`EXIT_CODES_HELP`].
    pub fn help_text(&self) -> String {
        let mut text = String::new();
        for section in self.help.iter().copied().chain([EXIT_CODES_HELP]) {
            text.push_str(section.trim_end());
            text.push_str("\n\n");
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    }

    /// The usage line: `usage: NAME [--once] [--help] [--version]`.
    pub fn usage(&self) -> String {
        let mut line = format!("usage: {}", self.name);
        for f in self.flags {
            line.push_str(&format!(" [{f}]"));
        }
        line.push_str(" [--help] [--version]");
        line
    }

    /// Parses `std::env::args()`. `Ok(flags)`: run the service. `Err(code)`: exit now with `code`
    /// (help or version printed on stdout and 0; an unknown argument with the usage line on stderr and 2).
    pub fn from_env(&self) -> Result<Flags, ExitCode> {
        match self.parse(std::env::args().skip(1)) {
            Ok(Command::Run(flags)) => Ok(flags),
            Ok(Command::Help) => {
                print!("{}", self.help_text());
                Err(ExitCode::from(exit::OK))
            }
            Ok(Command::Version) => {
                println!("{} {}", self.name, self.version);
                Err(ExitCode::from(exit::OK))
            }
            Err(e) => {
                eprintln!("{}: {e}\n{}", self.name, self.usage());
                Err(ExitCode::from(exit::CONFIG))
            }
        }
    }

    /// Reports a configuration error on stderr (always, whatever `RUST_LOG` says) and in the log, and
    /// returns exit code 2.
    pub fn config_error(&self, error: &dyn std::fmt::Display) -> ExitCode {
        self.fail(exit::CONFIG, "invalid configuration", error)
    }

    /// Reports a failure on stderr and in the log, and returns `code`.
    pub fn fail(&self, code: u8, what: &str, error: &dyn std::fmt::Display) -> ExitCode {
        let text = error.to_string();
        tracing::error!(error = %text, "{what}");
        eprintln!("{}: {text}", self.name);
        ExitCode::from(code)
    }
}

/// How a service's run ended badly, for [`Cli::main`].
#[derive(Debug)]
pub enum Failure {
    /// A configuration problem found while starting (a backend client, a file): exit 2.
    Config(String),
    /// Anything else: exit `code`, reported as `what: detail`.
    Exit {
        /// The exit code ([`exit`]).
        code: u8,
        /// What failed, for the log line.
        what: &'static str,
        /// Why (the error and its causes).
        detail: String,
    },
}

impl Failure {
    /// A runtime failure (exit 1).
    pub fn runtime(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Failure::Exit {
            code: exit::RUNTIME,
            what,
            detail: detail.to_string(),
        }
    }
}

/// Where a service's log lines go and how many Tokio worker threads it runs, for [`Cli::main`].
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    /// Standard output (the default) or standard error (when standard output carries data).
    pub logs: crate::telemetry::LogOutput,
    /// Tokio worker threads.
    pub worker_threads: usize,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            logs: crate::telemetry::LogOutput::Stdout,
            worker_threads: 2,
        }
    }
}

impl Cli {
    /// The `main` of every service, in one order: the TLS crypto provider; the command line (`--help`,
    /// `--version`, unknown arguments: exit 0 or 2); telemetry; `configure` (an error is exit 2, printed
    /// whatever `RUST_LOG` says); a Tokio runtime; `serve` until it ends. `runtime` picks the log output
    /// and threads from the flags. `serve`'s `Ok(code)` is the exit code.
    pub fn main<C, E, F, Fut>(
        &self,
        runtime: impl FnOnce(&Flags) -> Runtime,
        configure: impl FnOnce(&Flags) -> Result<C, E>,
        serve: F,
    ) -> ExitCode
    where
        E: std::fmt::Display,
        F: FnOnce(C) -> Fut,
        Fut: std::future::Future<Output = Result<u8, Failure>>,
    {
        crate::tls::install_crypto_provider();
        let flags = match self.from_env() {
            Ok(flags) => flags,
            Err(code) => return code,
        };
        let settings = runtime(&flags);
        let _telemetry = match crate::telemetry::init_with(self.name, settings.logs) {
            Ok(guard) => guard,
            Err(e) => return self.config_error(&e),
        };
        let config = match configure(&flags) {
            Ok(c) => c,
            Err(e) => return self.config_error(&e),
        };
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.worker_threads.max(1))
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return self.fail(exit::RUNTIME, "cannot start the Tokio runtime", &e),
        };
        match rt.block_on(serve(config)) {
            Ok(code) => ExitCode::from(code),
            Err(Failure::Config(e)) => self.config_error(&e),
            Err(Failure::Exit { code, what, detail }) => self.fail(code, what, &detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: Cli = Cli {
        name: "svc",
        version: "1.2.3",
        help: &["svc: does things\n", "MORE:\n    X   y\n"],
        flags: &["--once"],
    };

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        CLI.parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_run_without_flags() {
        assert_eq!(parse(&[]), Ok(Command::Run(Flags::default())));
    }

    #[test]
    fn a_service_flag_is_seen() {
        let Ok(Command::Run(flags)) = parse(&["--once"]) else {
            panic!("--once should run");
        };
        assert!(flags.has("--once"));
        assert!(!flags.has("--other"));
    }

    #[test]
    fn help_wins_over_version_and_flags() {
        assert_eq!(parse(&["--once", "-V", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-h"]), Ok(Command::Help));
        assert_eq!(parse(&["--version", "--once"]), Ok(Command::Version));
    }

    #[test]
    fn an_unknown_argument_is_refused_by_name() {
        assert_eq!(
            parse(&["--once", "--nope"]),
            Err(UsageError("--nope".into()))
        );
        // A flag another service takes is unknown here.
        let sink = Cli { flags: &[], ..CLI };
        let err = sink.parse(["--once".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "unknown argument \"--once\"");
    }

    #[test]
    fn help_is_every_section_then_the_exit_codes() {
        let text = CLI.help_text();
        assert!(
            text.starts_with("svc: does things\n\nMORE:\n    X   y\n\nEXIT CODES"),
            "{text}"
        );
        assert!(text.ends_with("(cts-exporter)\n"), "{text}");
    }

    #[test]
    fn usage_names_every_flag() {
        assert_eq!(CLI.usage(), "usage: svc [--once] [--help] [--version]");
    }

    #[test]
    fn the_exit_code_table_lists_every_constant() {
        for code in [
            exit::OK,
            exit::RUNTIME,
            exit::CONFIG,
            exit::AUTH,
            exit::INCOMPLETE,
        ] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n    {code}   ")),
                "code {code} missing from the table"
            );
        }
    }
}
