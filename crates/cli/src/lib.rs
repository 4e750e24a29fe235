//! The `emorl` library behind the CLI: experiment protocols, configuration,
//! training loops with logging, and table reproduction.

pub mod experiment;
