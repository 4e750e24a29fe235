//! The `emorl` library behind the CLI: registries of environments and agents,
//! configuration, experiment protocols, training loops with logging, and
//! table reproduction.

pub mod catalog;
pub mod config;
pub mod deep;
pub mod eval_llm;
pub mod experiment;
pub mod figure;
pub mod interrupt;
pub mod llm;
pub mod reproduce;
pub mod reproduce_dqn;
pub mod reproduce_llm;
pub mod resume;
pub mod summary;
pub mod text;
pub mod train;
