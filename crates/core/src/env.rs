//! One environment API for every task, gridworlds and conversations alike
//! (Gymnasium's `reset`/`step`, with the emotional context typed).

use crate::context::EmotionalContext;
use std::collections::BTreeMap;

/// Diagnostics that are not part of the emotional context.
pub type Info = BTreeMap<String, f64>;

/// The result of one `step`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<O> {
    pub obs: O,
    pub reward: f64,
    /// The episode ended inside the task (goal, cliff, end of conversation).
    pub terminated: bool,
    /// The episode was cut off from outside the task (time limit).
    pub truncated: bool,
    /// Emotional context of the state moved to.
    pub context: EmotionalContext,
    pub info: Info,
}

impl<O> Step<O> {
    /// A step that is not cut off by a time limit and carries no extra info.
    pub fn new(obs: O, reward: f64, terminated: bool, context: EmotionalContext) -> Self {
        Step {
            obs,
            reward,
            terminated,
            truncated: false,
            context,
            info: Info::new(),
        }
    }

    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// An environment. Observation and action types are associated so that text
/// environments (observations and actions are strings) fit the same trait.
pub trait Env {
    type Obs: Clone + std::fmt::Debug + PartialEq;
    type Action: Clone + std::fmt::Debug;

    /// Starts a new episode. `Some(seed)` reseeds the environment's randomness first.
    fn reset(&mut self, seed: Option<u64>) -> (Self::Obs, Info);

    /// Applies one action.
    fn step(&mut self, action: &Self::Action) -> Step<Self::Obs>;

    /// Emotional context of the current state (what an agent sees before its first action).
    fn context(&self) -> EmotionalContext;

    /// A human-readable picture of the current state.
    fn render(&self) -> String;
}

/// Environments with finitely many states and actions (tabular agents).
pub trait DiscreteEnv: Env<Obs = usize, Action = usize> {
    fn n_states(&self) -> usize;
    fn n_actions(&self) -> usize;
    /// Numeric features of a state, for function approximation (DQN).
    fn features(&self, state: usize) -> Vec<f32>;
}
