//! Deep Q-networks for emorl. The networks are libtorch (`tch`) modules and
//! checkpoints; on CPU their updates are computed on the host by default
//! ([`host_net`], [`Backend`]: forward, hand-written gradients checked against
//! autograd, Adam), several times faster than libtorch for networks this small.
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
pub mod host_net;
mod kernels;
mod learner;
pub mod network;
pub mod protocol;
mod registry;
pub mod replay;

pub use config::{
    Backend, CoupledCliffConfig, CoupledGridConfig, DecoupledFearConfig, DeviceChoice, DqnConfig,
    EpsilonSchedule, FearConfig, FearUse, Loss,
};
pub use episode::{run_episode, EpisodeStats};
pub use error::DqnError;
pub use learner::{DqnAgent, TrainingState, UpdateStats};
pub use registry::{registry, MakeDqnConfig};

#[cfg(test)]
mod tests;
