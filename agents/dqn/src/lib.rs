//! Deep Q-networks for emorl, on libtorch (`tch`).
//!
//! One learner ([`DqnAgent`]: online and target MLPs, replay, Adam, ε schedule)
//! and one optional [fear module](fear). The registered agents are:
//!
//! - `dqn` — the baseline (upstream Exp 16b `StandardDQNAgent`);
//! - `fear-dqn-coupled` / `fear-dqn-coupled-cliff` — upstream's emotional DQNs of
//!   Exp 16b and Exp 18, faithful to their quirks (docs/protocols/v2.md §7);
//! - `fear-dqn` — a decoupled design: a fear network trained on its own target,
//!   acting on the Q-learner in one bounded place, with no shared gradients.
//!
//! [`protocol`] holds the Exp 16b and Exp 18 protocols per seed and a parallel
//! runner; [`run_episode`] and [`EpisodeStats`] are what a CLI logs.

pub mod config;
mod episode;
mod error;
pub mod fear;
pub mod flat_adam;
mod learner;
pub mod network;
pub mod protocol;
mod registry;
pub mod replay;

pub use config::{
    CoupledCliffConfig, CoupledGridConfig, DecoupledFearConfig, DeviceChoice, DqnConfig,
    EpsilonSchedule, FearConfig, FearUse, Loss,
};
pub use episode::{run_episode, EpisodeStats};
pub use error::DqnError;
pub use learner::{DqnAgent, TrainingState, UpdateStats};
pub use registry::{registry, MakeDqnConfig};

#[cfg(test)]
mod tests;
