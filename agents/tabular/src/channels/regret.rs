//! Regret: appraisal of what was obtained against what was foregone.

use super::{Appraisal, EmotionChannel, Modulation};
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegretConfig {
    /// Regret = `sensitivity · (obtained − foregone)`.
    #[serde(default = "one")]
    pub sensitivity: f64,
    /// On regret (< 0), multiply the learning rate by `1 + weight · |regret|`.
    pub weight: f64,
    /// Learn the foregone action's value from the counterfactual at this rate.
    #[serde(default)]
    pub counterfactual_lr: Option<f64>,
    /// Remember regret per state; where the memory is below −0.5, explore with
    /// probability `|memory| · exploration` (an extra uniform draw).
    #[serde(default)]
    pub memory_exploration: Option<f64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RegretChannel {
    cfg: RegretConfig,
    current: f64,
    memory: Vec<f64>,
}

impl RegretChannel {
    pub fn new(cfg: RegretConfig, n_states: usize) -> Self {
        RegretChannel {
            cfg,
            current: 0.0,
            memory: vec![0.0; n_states],
        }
    }
}

impl EmotionChannel for RegretChannel {
    fn name(&self) -> &'static str {
        "regret"
    }

    super::unused_hooks!(perceive, epsilon, preempt, explore, on_action, target_bonus);

    fn appraise(&mut self, t: &Appraisal) {
        self.current = match &t.context.counterfactual {
            Some(cf) => (cf.obtained - cf.foregone) * self.cfg.sensitivity,
            None => 0.0,
        };
        if t.context.counterfactual.is_some() && self.cfg.memory_exploration.is_some() {
            self.memory[t.state] += self.current;
        }
    }

    fn modulate(&self, _t: &Appraisal, _td: f64) -> Modulation {
        Modulation {
            lr_factor: (self.current < 0.0).then_some(1.0 + self.cfg.weight * self.current.abs()),
            td_factor: None,
            lr_cap: None,
        }
    }

    fn bias(&mut self, state: usize, q: &mut [f64], rng: &RngHandle) -> Option<usize> {
        let rate = self.cfg.memory_exploration?;
        let m = self.memory[state];
        if m < -0.5 && rng.random() < m.abs() * rate {
            return Some(rng.randint(q.len()));
        }
        None
    }

    fn after_update(&mut self, t: &Appraisal, q_row: &mut [f64]) {
        if let (Some(lr), Some(cf)) = (self.cfg.counterfactual_lr, &t.context.counterfactual) {
            if let Some(u) = cf.foregone_action {
                q_row[u] += lr * (cf.foregone - q_row[u]);
            }
        }
    }

    fn phasic(&self) -> f64 {
        self.current
    }

    fn tonic(&self) -> f64 {
        emorl_core::numeric::min(&self.memory).min(0.0)
    }

    fn reset_episode(&mut self) {
        self.current = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::{Counterfactual, EmotionalContext};

    #[test]
    fn regret_speeds_learning_and_learns_the_foregone_door() {
        let mut ch = RegretChannel::new(
            RegretConfig {
                sensitivity: 1.0,
                weight: 0.5,
                counterfactual_lr: Some(0.05),
                memory_exploration: None,
            },
            1,
        );
        let ctx = EmotionalContext {
            counterfactual: Some(Counterfactual {
                obtained: 0.0,
                foregone: 1.0,
                foregone_action: Some(1),
            }),
            ..Default::default()
        };
        let t = Appraisal {
            state: 0,
            action: 0,
            value: 0.0,
            reward: 0.0,
            next_state: 0,
            done: false,
            context: &ctx,
        };
        ch.appraise(&t);
        assert_eq!(ch.phasic(), -1.0);
        assert_eq!(ch.modulate(&t, 0.0).lr_factor, Some(1.5));
        let mut row = vec![0.0, 0.0];
        ch.after_update(&t, &mut row);
        assert_eq!(row, vec![0.0, 0.05]);
    }
}
