//! Errors of the library API (not HTTP error bodies: those are in `responses`).

/// What can go wrong when configuring, starting or steering the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An `OTC_SIM_*` variable (or builder value) is invalid.
    #[error("invalid {var}: {msg}")]
    Config {
        /// The variable name.
        var: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// Binding or serving the socket failed.
    #[error("cannot serve on {addr}: {source}")]
    Bind {
        /// The address that was requested.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file (clouds.yaml) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A trace added by the test is invalid (duplicate id, bad fields).
    #[error("invalid trace: {0}")]
    Trace(String),
}

impl SimError {
    pub(crate) fn config(var: &'static str, msg: impl Into<String>) -> Self {
        Self::Config {
            var,
            msg: msg.into(),
        }
    }
}
