//! The `cts-exporter` binary keeps the command line every service shares (`shared::cli`).

#[test]
fn help_version_unknown_argument_and_config_errors_follow_the_shared_cli() {
    shared::testkit::cli::assert_service_cli(
        env!("CARGO_BIN_EXE_cts-exporter"),
        "cts-exporter",
        &["--once"],
        &[
            ("CTS_FROM", "0"),
            ("OS_AUTH_URL", "https://iam.example/v3"),
            ("OS_TOKEN", "t"),
        ],
        "CTS_FROM",
    );
}
