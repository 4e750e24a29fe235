//! Core types of emorl: the [`Env`] trait and its typed [`EmotionalContext`]
//! (with the one distance-fear formula), numpy-compatible and fast random numbers,
//! numpy-compatible means, string-ID registries and the determinism check.

pub mod context;
pub mod determinism;
pub mod env;
pub mod error;
pub mod memory;
pub mod neuro;
pub mod numeric;
pub mod parallelism;
pub mod registry;
pub mod rng;
pub mod wrappers;

pub use context::{
    Counterfactual, EmotionalContext, Exploration, Obstacle, Reserve, SocialContext,
};
pub use env::{DiscreteEnv, Env, Info, Step};
pub use error::CoreError;
pub use rng::{EmoRng, RngHandle, RngKind};
pub use wrappers::{ByRef, EpisodeStatistics, TimeLimit};
