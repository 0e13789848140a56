//! Helpers of the reliability suite (see README.md): the real binaries as child processes with
//! their logs captured, private backend servers a test may kill and restart, the graph and
//! InfluxDB read back over their own HTTP APIs, and the figures each scenario prints.

pub mod figures;
pub mod graph;
pub mod hostile;
pub mod pipeline;
pub mod process;
pub mod servers;
pub mod traffic;

pub use figures::Figures;
pub use process::{Proc, TempDir, binary, free_port};
