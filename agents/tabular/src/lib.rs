//! Tabular Q-learning with composable emotion channels.
//!
//! One learner ([`QLearner`]); every Emotional-ED agent is this learner plus an
//! ordered list of channels ([`channels`]: fear, anger, regret, curiosity,
//! joy, and V3's novelty, surprise, persistence, hazard, anxiety and
//! patience, each a plug-in
//! at named hooks of the learner). The registry maps the upstream agent
//! names to channel lists; [`protocol`] runs the V2 experiments and [`v3`]
//! the V3 ones.

pub mod channels;
mod episode;
mod learner;
pub mod protocol;
mod registry;
pub mod v3;

pub use episode::{run_episode, EpisodeStep, EpisodeSummary};
pub use learner::{QLearner, QLearnerConfig, QLearnerState, UpdateStats};
pub use registry::{registry, MakeAgentConfig};
