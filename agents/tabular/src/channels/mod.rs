//! Emotion channels: small modules with phasic and tonic state that plug into a
//! value learner at named hooks — perception before acting, action selection
//! (a replacement for the exploratory draw, a bias on the greedy Q-values),
//! learning-rate modulation, and TD-target/TD-error shaping.
//!
//! A learner holds an ordered list of channels and calls each hook in that
//! order; an agent variant is a list of channels, not a copy of the learner.
//! Hooks most channels leave as no-ops are [`Hooks`]: each channel names
//! the ones it does not use ([`unused_hooks!`]), and a learner skips a hook
//! none of its channels uses.

mod anger;
mod anxiety;
mod curiosity;
mod fear;
mod hazard;
mod joy;
mod novelty;
mod patience;
mod persistence;
mod regret;
mod rules;
mod surprise;

pub use anger::{AngerChannel, AngerConfig, AngerDynamics, AngerLearningRate, AngerSelection};
pub use anxiety::{AnxietyChannel, AnxietyConfig};
pub use curiosity::{CuriosityChannel, CuriosityConfig};
pub use fear::{FearChannel, FearConfig, FearLearningRate, FearSelection, FearSource};
pub use hazard::{HazardChannel, HazardConfig};
pub use joy::{JoyChannel, JoyConfig};
pub use novelty::{NoveltyChannel, NoveltyConfig};
pub use patience::{PatienceChannel, PatienceConfig};
pub use persistence::{PersistenceChannel, PersistenceConfig};
pub use regret::{RegretChannel, RegretConfig};
pub use rules::{
    EvadeChannel, EvadeConfig, HazardMaskChannel, HazardMaskConfig, PushOnChannel, PushOnConfig,
    RefuelChannel, RefuelConfig, RepeatChannel, RepeatConfig,
};
pub use surprise::{SurpriseChannel, SurpriseConfig};

use emorl_core::context::EmotionalContext;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A transition as the channels appraise it.
#[derive(Clone, Copy, Debug)]
pub struct Appraisal<'a> {
    pub state: usize,
    pub action: usize,
    /// `Q(state, action)` before this update.
    pub value: f64,
    pub reward: f64,
    pub next_state: usize,
    pub done: bool,
    pub context: &'a EmotionalContext,
}

/// How the learner chose an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// A channel's [`EmotionChannel::preempt`].
    Preempted,
    /// The exploratory branch of ε-greedy.
    Explored,
    /// The greedy branch (after the channels' biases).
    Greedy,
}

/// What a channel does to one update. `None` leaves the quantity untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Modulation {
    /// Factor on the learning rate.
    pub lr_factor: Option<f64>,
    /// Factor on the TD error.
    pub td_factor: Option<f64>,
    /// Upper bound on the learning rate after every factor.
    pub lr_cap: Option<f64>,
}

/// One emotion channel.
pub trait EmotionChannel: std::fmt::Debug {
    /// Short name used in logs (`emotion/<name>`).
    fn name(&self) -> &'static str;

    /// The optional hooks (see [`Hooks`]) the channel implements; a
    /// channel says which it does not with [`unused_hooks!`].
    fn hooks(&self) -> Hooks;

    /// Appraises a transition: updates phasic and tonic state. Called first
    /// in an update. (Rules without affective state keep the default.)
    fn appraise(&mut self, _t: &Appraisal) {}

    /// Optional. Additive shaping of the reward inside the TD target (e.g.
    /// a curiosity bonus).
    fn target_bonus(&self, t: &Appraisal) -> f64;

    /// Learning-rate and TD-error modulation, given the raw TD error `td`.
    fn modulate(&self, _t: &Appraisal, _td: f64) -> Modulation {
        Modulation::default()
    }

    /// Optional. Sees the state about to be acted in and its context (the
    /// one the last step produced, or the reset's), before any draw of the
    /// action.
    fn perceive(&mut self, state: usize, context: &EmotionalContext);

    /// Optional. The ε of ε-greedy for the next action, given the
    /// learner's (or the previous channel's) `epsilon`.
    fn epsilon(&self, epsilon: f64) -> f64;

    /// Optional. Before the ε draw: `Some(a)` takes action `a` outright
    /// (e.g. an angry agent persisting, a frightened one fleeing), with any
    /// draws it needs from `rng`; `q` is the state's row of Q-values.
    fn preempt(&mut self, state: usize, q: &[f64], rng: &RngHandle) -> Option<usize>;

    /// Optional. On the exploratory branch of ε-greedy: `Some(a)` replaces
    /// the uniform random action (e.g. a novelty-weighted draw from `rng`).
    fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize>;

    /// Biases a copy of the greedy Q-values of `state`. Returning `Some(a)`
    /// overrides the choice (an emotion-driven exploratory action).
    fn bias(&mut self, _state: usize, _q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        None
    }

    /// Optional. Told which action was finally taken, and how it was chosen.
    fn on_action(&mut self, action: usize, how: Choice);

    /// Optional. After the Q update: may adjust other entries of the
    /// updated state's row.
    fn after_update(&mut self, t: &Appraisal, q_row: &mut [f64]);

    /// Current (phasic) intensity, for logging (0 for a rule without one).
    fn phasic(&self) -> f64 {
        0.0
    }

    /// Slow (tonic) level, for logging (0 for a channel without one).
    fn tonic(&self) -> f64 {
        0.0
    }

    /// Clears per-episode state (tonic memories that should persist are kept).
    fn reset_episode(&mut self);

    /// Everything the channel has learned or carries between steps (phasic
    /// and tonic levels, per-state memories) and its config, for checkpoints.
    fn state(&self) -> Result<serde_json::Value, CoreError>;

    /// Restores what [`state`](Self::state) returned; a state saved under
    /// another config is refused.
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), CoreError>;
}

/// The optional hooks of [`EmotionChannel`]: those most channels leave as
/// no-ops. A learner calls one only if a channel of its list implements
/// it — at every step of every episode, the calls to no-ops would cost
/// more than some channels' work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub perceive: bool,
    pub epsilon: bool,
    pub preempt: bool,
    pub explore: bool,
    pub on_action: bool,
    pub target_bonus: bool,
    pub after_update: bool,
}

impl Hooks {
    pub const ALL: Hooks = Hooks {
        perceive: true,
        epsilon: true,
        preempt: true,
        explore: true,
        on_action: true,
        target_bonus: true,
        after_update: true,
    };

    pub const NONE: Hooks = Hooks {
        perceive: false,
        epsilon: false,
        preempt: false,
        explore: false,
        on_action: false,
        target_bonus: false,
        after_update: false,
    };

    /// The hooks either set holds.
    pub fn union(self, other: Hooks) -> Hooks {
        Hooks {
            perceive: self.perceive || other.perceive,
            epsilon: self.epsilon || other.epsilon,
            preempt: self.preempt || other.preempt,
            explore: self.explore || other.explore,
            on_action: self.on_action || other.on_action,
            target_bonus: self.target_bonus || other.target_bonus,
            after_update: self.after_update || other.after_update,
        }
    }
}

/// Inside a channel's `impl EmotionChannel`: the optional hooks it does not
/// use, as no-ops, and [`EmotionChannel::hooks`] saying so. The compiler
/// keeps the list right: a hook listed and implemented is defined twice,
/// one neither listed nor implemented is missing.
macro_rules! unused_hooks {
    ($($hook:ident),* $(,)?) => {
        // `..ALL` is needless when every optional hook is listed.
        #[allow(clippy::needless_update)]
        fn hooks(&self) -> $crate::channels::Hooks {
            $crate::channels::Hooks {
                $($hook: false,)*
                ..$crate::channels::Hooks::ALL
            }
        }
        $($crate::channels::unused_hooks!(@no_op $hook);)*
    };
    (@no_op perceive) => {
        fn perceive(&mut self, _: usize, _: &emorl_core::EmotionalContext) {}
    };
    (@no_op epsilon) => {
        fn epsilon(&self, epsilon: f64) -> f64 {
            epsilon
        }
    };
    (@no_op preempt) => {
        fn preempt(&mut self, _: usize, _: &[f64], _: &emorl_core::RngHandle) -> Option<usize> {
            None
        }
    };
    (@no_op explore) => {
        fn explore(&mut self, _: usize, _: &emorl_core::RngHandle) -> Option<usize> {
            None
        }
    };
    (@no_op on_action) => {
        fn on_action(&mut self, _: usize, _: $crate::channels::Choice) {}
    };
    (@no_op target_bonus) => {
        fn target_bonus(&self, _: &$crate::channels::Appraisal) -> f64 {
            0.0
        }
    };
    (@no_op after_update) => {
        fn after_update(&mut self, _: &$crate::channels::Appraisal, _: &mut [f64]) {}
    };
}
pub(crate) use unused_hooks;

/// `state` and `restore` of a channel whose whole state serialises with
/// it (a `cfg` field holds its config).
macro_rules! serde_state {
    () => {
        fn state(&self) -> Result<serde_json::Value, CoreError> {
            super::state_of(self)
        }

        fn restore(&mut self, state: &serde_json::Value) -> Result<(), CoreError> {
            *self = super::restored(self.name(), state, &self.cfg, |c: &Self| &c.cfg)?;
            Ok(())
        }
    };
}
pub(crate) use serde_state;

/// A channel's state as JSON (floats round-trip exactly).
pub(crate) fn state_of<C: Serialize>(channel: &C) -> Result<serde_json::Value, CoreError> {
    serde_json::to_value(channel).map_err(|e| CoreError::State(e.to_string()))
}

/// The channel a checkpointed `state` describes, if its config is `current`.
pub(crate) fn restored<C: DeserializeOwned, K: PartialEq>(
    name: &str,
    state: &serde_json::Value,
    current: &K,
    config_of: impl Fn(&C) -> &K,
) -> Result<C, CoreError> {
    let channel: C = serde_json::from_value(state.clone())
        .map_err(|e| CoreError::State(format!("{name} channel: {e}")))?;
    if config_of(&channel) != current {
        return Err(CoreError::State(format!(
            "the {name} channel was saved with another config"
        )));
    }
    Ok(channel)
}

/// Serializable description of a channel, as written in experiment TOML files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ChannelConfig {
    Fear(FearConfig),
    Anger(AngerConfig),
    Regret(RegretConfig),
    Curiosity(CuriosityConfig),
    Joy(JoyConfig),
    Novelty(NoveltyConfig),
    Persistence(PersistenceConfig),
    Surprise(SurpriseConfig),
    Anxiety(AnxietyConfig),
    Hazard(HazardConfig),
    Patience(PatienceConfig),
    /// Engineered rules (no emotion), for the V3 audit's baselines.
    HazardMask(HazardMaskConfig),
    Evade(EvadeConfig),
    Refuel(RefuelConfig),
    Repeat(RepeatConfig),
    PushOn(PushOnConfig),
}

impl ChannelConfig {
    /// Builds the channel for a task with `n_states` states.
    pub fn build(&self, n_states: usize) -> Channel {
        match self {
            ChannelConfig::Fear(c) => Channel::Fear(FearChannel::new(c.clone(), n_states)),
            ChannelConfig::Anger(c) => Channel::Anger(AngerChannel::new(c.clone())),
            ChannelConfig::Regret(c) => Channel::Regret(RegretChannel::new(c.clone(), n_states)),
            ChannelConfig::Curiosity(c) => {
                Channel::Curiosity(CuriosityChannel::new(c.clone(), n_states))
            }
            ChannelConfig::Joy(c) => Channel::Joy(JoyChannel::new(c.clone())),
            ChannelConfig::Novelty(c) => Channel::Novelty(NoveltyChannel::new(c.clone(), n_states)),
            ChannelConfig::Persistence(c) => {
                Channel::Persistence(PersistenceChannel::new(c.clone()))
            }
            ChannelConfig::Surprise(c) => Channel::Surprise(SurpriseChannel::new(c.clone())),
            ChannelConfig::Anxiety(c) => Channel::Anxiety(AnxietyChannel::new(c.clone(), n_states)),
            ChannelConfig::Hazard(c) => Channel::Hazard(HazardChannel::new(c.clone(), n_states)),
            ChannelConfig::Patience(c) => {
                Channel::Patience(PatienceChannel::new(c.clone(), n_states))
            }
            ChannelConfig::HazardMask(c) => {
                Channel::HazardMask(HazardMaskChannel::new(c.clone(), n_states))
            }
            ChannelConfig::Evade(c) => Channel::Evade(EvadeChannel::new(c.clone(), n_states)),
            ChannelConfig::Refuel(c) => Channel::Refuel(RefuelChannel::new(c.clone(), n_states)),
            ChannelConfig::Repeat(c) => Channel::Repeat(RepeatChannel::new(c.clone())),
            ChannelConfig::PushOn(c) => Channel::PushOn(PushOnChannel::new(c.clone())),
        }
    }
}

/// `$call` on the channel inside `$channel` (bound to `$c`), whichever of
/// `$kind` it is.
macro_rules! on_channel {
    ($channel:expr, [$($kind:ident),+], $c:ident => $call:expr) => {
        match $channel {
            $(Channel::$kind($c) => $call,)+
        }
    };
}

/// Declares [`Channel`] with these kinds and forwards every hook to the
/// channel inside.
macro_rules! channel_kinds {
    ($($kind:ident($channel:ty)),+ $(,)?) => {
        /// A built channel of any kind. An enum rather than a
        /// `Box<dyn EmotionChannel>`: the learner calls every hook of every
        /// channel at every step, and through a `match` those calls inline,
        /// so a hook a channel leaves at its default costs nothing.
        #[derive(Debug)]
        pub enum Channel {
            $($kind($channel),)+
        }

        impl EmotionChannel for Channel {
            #[inline]
            fn name(&self) -> &'static str {
                on_channel!(self, [$($kind),+], c => c.name())
            }
            #[inline]
            fn hooks(&self) -> Hooks {
                on_channel!(self, [$($kind),+], c => c.hooks())
            }
            #[inline]
            fn appraise(&mut self, t: &Appraisal) {
                on_channel!(self, [$($kind),+], c => c.appraise(t))
            }
            #[inline]
            fn target_bonus(&self, t: &Appraisal) -> f64 {
                on_channel!(self, [$($kind),+], c => c.target_bonus(t))
            }
            #[inline]
            fn modulate(&self, t: &Appraisal, td: f64) -> Modulation {
                on_channel!(self, [$($kind),+], c => c.modulate(t, td))
            }
            #[inline]
            fn perceive(&mut self, state: usize, context: &EmotionalContext) {
                on_channel!(self, [$($kind),+], c => c.perceive(state, context))
            }
            #[inline]
            fn epsilon(&self, epsilon: f64) -> f64 {
                on_channel!(self, [$($kind),+], c => c.epsilon(epsilon))
            }
            #[inline]
            fn preempt(&mut self, state: usize, q: &[f64], rng: &RngHandle) -> Option<usize> {
                on_channel!(self, [$($kind),+], c => c.preempt(state, q, rng))
            }
            #[inline]
            fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize> {
                on_channel!(self, [$($kind),+], c => c.explore(state, rng))
            }
            #[inline]
            fn bias(&mut self, state: usize, q: &mut [f64], rng: &RngHandle) -> Option<usize> {
                on_channel!(self, [$($kind),+], c => c.bias(state, q, rng))
            }
            #[inline]
            fn on_action(&mut self, action: usize, how: Choice) {
                on_channel!(self, [$($kind),+], c => c.on_action(action, how))
            }
            #[inline]
            fn after_update(&mut self, t: &Appraisal, q_row: &mut [f64]) {
                on_channel!(self, [$($kind),+], c => c.after_update(t, q_row))
            }
            #[inline]
            fn phasic(&self) -> f64 {
                on_channel!(self, [$($kind),+], c => c.phasic())
            }
            #[inline]
            fn tonic(&self) -> f64 {
                on_channel!(self, [$($kind),+], c => c.tonic())
            }
            #[inline]
            fn reset_episode(&mut self) {
                on_channel!(self, [$($kind),+], c => c.reset_episode())
            }
            #[inline]
            fn state(&self) -> Result<serde_json::Value, CoreError> {
                on_channel!(self, [$($kind),+], c => c.state())
            }
            #[inline]
            fn restore(&mut self, state: &serde_json::Value) -> Result<(), CoreError> {
                on_channel!(self, [$($kind),+], c => c.restore(state))
            }
        }
    };
}

channel_kinds!(
    Fear(FearChannel),
    Anger(AngerChannel),
    Regret(RegretChannel),
    Curiosity(CuriosityChannel),
    Joy(JoyChannel),
    Novelty(NoveltyChannel),
    Persistence(PersistenceChannel),
    Surprise(SurpriseChannel),
    Anxiety(AnxietyChannel),
    Hazard(HazardChannel),
    Patience(PatienceChannel),
    HazardMask(HazardMaskChannel),
    Evade(EvadeChannel),
    Refuel(RefuelChannel),
    Repeat(RepeatChannel),
    PushOn(PushOnChannel),
);

/// The square grid a channel assumes its states lie on (`⌊√n_states⌋` a
/// side, state `row · side + col`), with the environments' four moves (up,
/// down, left, right), as upstream's V3 agents derive it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct SquareGrid {
    side: usize,
}

impl SquareGrid {
    /// Moves of actions 0–3 as (row, column) steps.
    pub(crate) const MOVES: [(i64, i64); 4] = [(-1, 0), (1, 0), (0, -1), (0, 1)];

    pub(crate) fn new(n_states: usize) -> Self {
        SquareGrid {
            side: (n_states as f64).sqrt() as usize,
        }
    }

    /// `(row, col)` of a state.
    pub(crate) fn cell(&self, state: usize) -> (i64, i64) {
        let side = self.side.max(1);
        ((state / side) as i64, (state % side) as i64)
    }

    /// The state `action` leads to from `state` and its cell; `None` off
    /// the grid (or for an action outside 0–3).
    pub(crate) fn step(&self, state: usize, action: usize) -> Option<(usize, (i64, i64))> {
        let (r, c) = self.cell(state);
        let (dr, dc) = Self::MOVES.get(action).copied()?;
        let (nr, nc) = (r + dr, c + dc);
        let side = self.side as i64;
        (nr >= 0 && nr < side && nc >= 0 && nc < side)
            .then_some(((nr * side + nc) as usize, (nr, nc)))
    }

    /// Manhattan distance between two cells.
    pub(crate) fn distance(a: (i64, i64), b: (i64, i64)) -> i64 {
        (a.0 - b.0).abs() + (a.1 - b.1).abs()
    }

    /// Moves from `state` that bring the agent closer to the nearest of
    /// `targets` (ties between equally near targets go to the first), in
    /// action order: at most two, none when it stands on the target or
    /// there is none.
    pub(crate) fn moves_toward_nearest(&self, state: usize, targets: &[usize]) -> Vec<usize> {
        let here = self.cell(state);
        let mut nearest: Option<((i64, i64), i64)> = None;
        for &t in targets {
            let cell = self.cell(t);
            let d = Self::distance(cell, here);
            if nearest.is_none_or(|(_, best)| d < best) {
                nearest = Some((cell, d));
            }
        }
        let Some((target, d)) = nearest else {
            return Vec::new();
        };
        (0..Self::MOVES.len())
            .filter(|&a| {
                self.step(state, a)
                    .is_some_and(|(_, p)| Self::distance(p, target) < d)
            })
            .collect()
    }
}

/// `(q - min) / (max - min)` for every entry, or `None` when all are equal.
pub(crate) fn normalised(q: &[f64]) -> Option<(f64, f64)> {
    let lo = emorl_core::numeric::min(q);
    let hi = emorl_core::numeric::max(q);
    if hi > lo {
        Some((lo, hi - lo))
    } else {
        None
    }
}
