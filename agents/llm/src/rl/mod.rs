//! RL fine-tuning of the modules on the dialogue environment.
//!
//! * [`config`]: [`RlConfig`] and what an update reports;
//! * [`rollout`]: dialogue states, sampling, rewards, advantages;
//! * [`objective`]: the [`Objective`] hook every loss term plugs into;
//! * [`policy`]: RLOO with KL, clipping and entropy terms;
//! * [`expression`]: emotional expression under forced states;
//! * [`feedback`]: the ERM's online feedback (seed 001's phase 3);
//! * [`trainer`]: the update as named steps, one optimiser;
//! * [`state`]: what a checkpoint keeps to resume a run exactly.

pub mod config;
pub mod expression;
pub mod feedback;
pub mod objective;
pub mod policy;
pub mod rollout;
pub mod state;
pub mod trainer;

pub use config::{PhaseSeconds, RlConfig, UpdateStats};
pub use objective::Objective;
pub use rollout::{advantages, evaluate_returns};
pub use state::TrainingState;
pub use trainer::{RewardFn, Trainer};
