//! The `neo4j-sink` binary keeps the command line every service shares (`shared::cli`).

#[test]
fn help_version_unknown_argument_and_config_errors_follow_the_shared_cli() {
    shared::testkit::cli::assert_service_cli(
        env!("CARGO_BIN_EXE_neo4j-sink"),
        "neo4j-sink",
        &[],
        &[("NEO4J_BATCH_SIZE", "0")],
        "NEO4J_BATCH_SIZE",
    );
}
