//! The `chaos-sink` binary keeps the command line every service shares (`shared::cli`).

#[test]
fn help_version_unknown_argument_and_config_errors_follow_the_shared_cli() {
    shared::testkit::cli::assert_service_cli(
        env!("CARGO_BIN_EXE_chaos-sink"),
        "chaos-sink",
        &[],
        &[("CHAOS_SINK_PUSHGATEWAY_URL", "not a url")],
        "CHAOS_SINK_PUSHGATEWAY_URL",
    );
}
