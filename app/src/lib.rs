//! The `emorl` library behind the CLI. Modules from the bottom up (each uses
//! only modules above it in this list; `tests/module_graph.rs` checks that
//! no import cycle exists anywhere in the workspace):
//!
//! * `config`, `catalog`, `interrupt`, `progress`, `summary`:
//!   TOML helpers, the registries of environments and agents, Ctrl-C,
//!   progress bars, the terminal summary;
//! * `llm_setup`: what every LLM command shares (agent config, model loading);
//! * `cluster`: Slurm job arrays (script, submission);
//! * one module per subcommand: `train`, `reproduce`, `chat` (also
//!   `generate --checkpoint`), `generate`, `play`, `eval_llm`, `serve`,
//!   `sweep` (grids of `train` runs, locally or on Slurm);
//! * `cli` (the arguments) and `commands` (what each does; the split
//!   between the `emorl` and `emorl-torch` executables).

pub mod catalog;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod eval_llm;
pub mod generate;
pub mod interrupt;
pub mod llm_setup;
pub mod measure;
pub mod play;
pub mod progress;
pub mod reproduce;
pub mod serve;
pub mod summary;
pub mod sweep;
pub mod train;
