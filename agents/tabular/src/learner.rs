//! The Q-learner. Order of operations follows upstream Emotional-ED exactly,
//! because bit-exact reproduction depends on it:
//! select: ε draw → (greedy) channel biases in order → argmax;
//! update: channels appraise → TD target → channel modulation in order → Q update → after-update hooks.

use crate::channels::{Appraisal, Channel, ChannelConfig, Choice, EmotionChannel, Hooks};
use emorl_core::numeric::{argmax, max};
use emorl_core::{CoreError, EmotionalContext, RngHandle};
use serde::{Deserialize, Serialize};

fn default_lr() -> f64 {
    0.1
}
fn default_gamma() -> f64 {
    0.99
}
fn default_epsilon() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// Hyperparameters of the learner and its channels (one TOML table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QLearnerConfig {
    /// Step size α.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Discount γ.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// ε of ε-greedy exploration.
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Bootstrap from the next state (false: a bandit learner, target = reward).
    #[serde(default = "default_true")]
    pub bootstrap: bool,
    /// Initial value of every Q-table entry (optimistic initialisation when
    /// above the returns the task can give; 0 as upstream).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub q_init: f64,
    /// Emotion channels, applied in this order at every hook.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for QLearnerConfig {
    fn default() -> Self {
        QLearnerConfig {
            lr: default_lr(),
            gamma: default_gamma(),
            epsilon: default_epsilon(),
            bootstrap: true,
            q_init: 0.0,
            channels: Vec::new(),
        }
    }
}

impl QLearnerConfig {
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |what: &str, v: f64| {
            Err(CoreError::InvalidConfig(format!(
                "{what} = {v} is out of range"
            )))
        };
        // α > 1 overshoots every target and lets the table diverge (lr =
        // 1e300 saved a table of nulls).
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(CoreError::InvalidConfig(format!(
                "lr = {:?} is out of range (0, 1]",
                self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad("gamma", self.gamma);
        }
        if !(0.0..=1.0).contains(&self.epsilon) {
            return bad("epsilon", self.epsilon);
        }
        if !self.q_init.is_finite() || self.q_init.abs() > 1e6 {
            return Err(CoreError::InvalidConfig(format!(
                "q_init = {:?} is out of range [-1e6, 1e6]",
                self.q_init
            )));
        }
        Ok(())
    }
}

/// What one update did (for logging).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateStats {
    pub td_error: f64,
    pub effective_lr: f64,
}

/// Everything a [`QLearner`] has learned, for checkpoints: the Q-table, ε
/// and each channel's state, so a restored learner continues bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QLearnerState {
    pub n_actions: usize,
    /// Row-major `[state][action]`.
    pub q: Vec<f64>,
    pub epsilon: f64,
    /// One entry per channel, in the learner's order.
    pub channels: Vec<serde_json::Value>,
}

#[derive(Debug)]
pub struct QLearner {
    cfg: QLearnerConfig,
    n_actions: usize,
    q: Vec<f64>,
    channels: Vec<Channel>,
    /// The optional hooks some channel implements (the others are skipped).
    hooks: Hooks,
    epsilon: f64,
    scratch: Vec<f64>,
}

impl QLearner {
    pub fn new(n_states: usize, n_actions: usize, cfg: QLearnerConfig) -> Result<Self, CoreError> {
        cfg.validate()?;
        if n_states == 0 || n_actions == 0 {
            return Err(CoreError::InvalidConfig(
                "a tabular learner needs at least one state and one action".into(),
            ));
        }
        let channels: Vec<Channel> = cfg.channels.iter().map(|c| c.build(n_states)).collect();
        let hooks = channels
            .iter()
            .fold(Hooks::NONE, |hooks, ch| hooks.union(ch.hooks()));
        let q = vec![cfg.q_init; n_states * n_actions];
        Ok(QLearner {
            epsilon: cfg.epsilon,
            cfg,
            n_actions,
            q,
            channels,
            hooks,
            scratch: vec![0.0; n_actions],
        })
    }

    pub fn q_row(&self, state: usize) -> &[f64] {
        &self.q[state * self.n_actions..(state + 1) * self.n_actions]
    }

    pub fn q_table(&self) -> &[f64] {
        &self.q
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    pub fn set_epsilon(&mut self, epsilon: f64) {
        self.epsilon = epsilon;
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The ε of the next action: the learner's, as the channels adjust it.
    fn exploration_rate(&self) -> f64 {
        if self.hooks.epsilon {
            self.channels
                .iter()
                .fold(self.epsilon, |e, ch| ch.epsilon(e))
        } else {
            self.epsilon
        }
    }

    /// ε-greedy action in `state`, whose emotional `context` the channels
    /// perceive first. A channel may then pre-empt the choice (before the
    /// ε draw), replace the exploratory draw, or bias the greedy branch;
    /// every channel is told the action and how it was chosen.
    pub fn act(&mut self, state: usize, context: &EmotionalContext, rng: &RngHandle) -> usize {
        let hooks = self.hooks;
        if hooks.perceive {
            for ch in self.channels.iter_mut() {
                ch.perceive(state, context);
            }
        }
        let n = self.n_actions;
        let row = &self.q[state * n..(state + 1) * n];
        let preempted = if hooks.preempt {
            self.channels
                .iter_mut()
                .find_map(|ch| ch.preempt(state, row, rng))
        } else {
            None
        };
        let (action, how) = if let Some(a) = preempted {
            (a, Choice::Preempted)
        } else if rng.random() < self.exploration_rate() {
            let explored = if hooks.explore {
                self.channels
                    .iter_mut()
                    .find_map(|ch| ch.explore(state, rng))
            } else {
                None
            };
            let a = explored.unwrap_or_else(|| rng.randint(self.n_actions));
            (a, Choice::Explored)
        } else {
            self.scratch
                .copy_from_slice(&self.q[state * n..(state + 1) * n]);
            let scratch = &mut self.scratch;
            let forced = self
                .channels
                .iter_mut()
                .find_map(|ch| ch.bias(state, scratch, rng));
            (
                forced.unwrap_or_else(|| argmax(&self.scratch)),
                Choice::Greedy,
            )
        };
        if hooks.on_action {
            for ch in self.channels.iter_mut() {
                ch.on_action(action, how);
            }
        }
        action
    }

    /// One learning step on the transition `(s, a, r, s', done)` with the
    /// emotional context of `s'`.
    pub fn update(
        &mut self,
        state: usize,
        action: usize,
        reward: f64,
        next_state: usize,
        done: bool,
        context: &EmotionalContext,
    ) -> UpdateStats {
        let t = Appraisal {
            state,
            action,
            value: self.q[state * self.n_actions + action],
            reward,
            next_state,
            done,
            context,
        };
        for ch in self.channels.iter_mut() {
            ch.appraise(&t);
        }
        let n = self.n_actions;
        let mut r = reward;
        if self.hooks.target_bonus {
            for ch in &self.channels {
                let bonus = ch.target_bonus(&t);
                if bonus != 0.0 {
                    r += bonus;
                }
            }
        }
        let target = if done || !self.cfg.bootstrap {
            r
        } else {
            r + self.cfg.gamma * max(&self.q[next_state * n..(next_state + 1) * n])
        };
        let idx = state * n + action;
        let td = target - self.q[idx];
        let mut lr = self.cfg.lr;
        let mut td_eff = td;
        for ch in &self.channels {
            let m = ch.modulate(&t, td);
            if let Some(f) = m.lr_factor {
                lr *= f;
            }
            if let Some(f) = m.td_factor {
                td_eff *= f;
            }
            if let Some(cap) = m.lr_cap {
                lr = lr.min(cap);
            }
        }
        self.q[idx] += lr * td_eff;
        if self.hooks.after_update {
            let row = &mut self.q[state * n..(state + 1) * n];
            for ch in self.channels.iter_mut() {
                ch.after_update(&t, row);
            }
        }
        UpdateStats {
            td_error: td,
            effective_lr: lr,
        }
    }

    /// The learner's whole state (see [`QLearnerState`]).
    pub fn state(&self) -> Result<QLearnerState, CoreError> {
        Ok(QLearnerState {
            n_actions: self.n_actions,
            q: self.q.clone(),
            epsilon: self.epsilon,
            channels: self
                .channels
                .iter()
                .map(|c| c.state())
                .collect::<Result<_, _>>()?,
        })
    }

    /// Restores a state saved by [`state`](Self::state) from a learner with
    /// the same table size and channel configs.
    pub fn restore(&mut self, state: QLearnerState) -> Result<(), CoreError> {
        if state.n_actions != self.n_actions || state.q.len() != self.q.len() {
            return Err(CoreError::State(format!(
                "the saved Q-table has {} entries for {} actions, this learner {} for {}",
                state.q.len(),
                state.n_actions,
                self.q.len(),
                self.n_actions
            )));
        }
        if state.channels.len() != self.channels.len() {
            return Err(CoreError::State(format!(
                "the saved learner has {} channels, this one {}",
                state.channels.len(),
                self.channels.len()
            )));
        }
        for (ch, saved) in self.channels.iter_mut().zip(&state.channels) {
            ch.restore(saved)?;
        }
        self.q = state.q;
        self.epsilon = state.epsilon;
        Ok(())
    }

    /// Clears per-episode emotional state (upstream's `reset_episode`).
    pub fn reset_episode(&mut self) {
        for ch in self.channels.iter_mut() {
            ch.reset_episode();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn plain_q_update_matches_formula() {
        let mut l = QLearner::new(2, 2, QLearnerConfig::default()).expect("learner");
        let ctx = EmotionalContext::default();
        l.update(0, 1, -0.01, 1, false, &ctx);
        assert_eq!(l.q_row(0), &[0.0, 0.1 * -0.01]);
        l.update(1, 0, 1.0, 0, true, &ctx);
        assert_eq!(l.q_row(1)[0], 0.1);
        let s = l.update(0, 0, 0.0, 1, false, &ctx);
        assert_eq!(s.td_error, 0.99 * 0.1);
    }

    #[test]
    fn greedy_ties_go_to_first_action() {
        let mut l = QLearner::new(1, 4, QLearnerConfig::default()).expect("learner");
        l.set_epsilon(0.0);
        let rng = RngHandle::new(RngKind::Numpy, 0);
        assert_eq!(l.act(0, &EmotionalContext::default(), &rng), 0);
    }

    #[test]
    fn optimistic_initial_values_fill_the_table() {
        let cfg = QLearnerConfig {
            q_init: 2.5,
            ..Default::default()
        };
        let l = QLearner::new(3, 4, cfg).expect("learner");
        assert!(l.q_table().iter().all(|&q| q == 2.5));
        for bad in [f64::NAN, f64::INFINITY, 1e7] {
            let cfg = QLearnerConfig {
                q_init: bad,
                ..Default::default()
            };
            assert!(QLearner::new(1, 2, cfg).is_err(), "q_init {bad}");
        }
        // The default (0) is not written out, so configs stay as they were.
        let text = toml::to_string(&QLearnerConfig::default()).expect("toml");
        assert!(!text.contains("q_init"), "{text}");
    }

    #[test]
    fn bad_hyperparameters_are_rejected() {
        let cfg = QLearnerConfig {
            gamma: 1.5,
            ..Default::default()
        };
        assert!(QLearner::new(1, 2, cfg).is_err());
        assert!(QLearner::new(0, 2, QLearnerConfig::default()).is_err());
    }
}
