//! Helpers for unit tests.

pub use shared::testkit::TempDir;
