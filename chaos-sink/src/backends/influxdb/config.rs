//! The `influxdb` section (defined with the rest of the file format in [`crate::config`]).

pub use crate::config::{InfluxApi, InfluxConfig, Precision};
