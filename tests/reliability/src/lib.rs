//! Helpers of the reliability suite (see README.md): processes of the real binaries, private backend
//! servers that a test may kill and restart, and the figures each scenario prints.
