//! Anger / frustration: builds up when progress is blocked, decays otherwise.

use super::{Appraisal, EmotionChannel, Modulation};
use emorl_core::numeric::argmax;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

/// How frustration `F` evolves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AngerDynamics {
    /// Blocked: `F ← min(1, F + buildup)`; otherwise `F ← F · decay`.
    Simple { buildup: f64, decay: f64 },
    /// Blocked: `F ← min(1, F + buildup / (1 + goal_distance) · (1 + 0.2 · min(blocks, 5)))`
    /// — frustration grows faster near the goal and with repeated blocks;
    /// otherwise `F ← F · decay`.
    GoalScaled { buildup: f64, decay: f64 },
    /// Blocked: `F ← min(1, F + per_block · consecutive_blocks)`;
    /// otherwise `F ← max(0, F − decay)`.
    Stepwise { per_block: f64, decay: f64 },
}

/// How anger biases action selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AngerSelection {
    None,
    /// Above `threshold`, add `bonus · F` to the previous action's Q (persist).
    RepeatLast {
        threshold: f64,
        bonus: f64,
    },
    /// Above `threshold`, multiply the best Q by `1 + F · weight`.
    BoostBest {
        threshold: f64,
        weight: f64,
    },
}

/// How anger modulates learning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AngerLearningRate {
    None,
    /// `1 + weight · F`.
    Scale {
        weight: f64,
    },
    /// `1 − F · damping` when `F > threshold` and the reward is negative.
    DampOnPenalty {
        threshold: f64,
        damping: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AngerConfig {
    pub dynamics: AngerDynamics,
    pub selection: AngerSelection,
    pub learning_rate: AngerLearningRate,
    /// When blocked with a negative TD error, scale it by `1 − blocked_td_damping · F`
    /// (a frustrated agent discounts the evidence that the path is closed).
    #[serde(default)]
    pub blocked_td_damping: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AngerChannel {
    cfg: AngerConfig,
    frustration: f64,
    last_action: Option<usize>,
}

impl AngerChannel {
    pub fn new(cfg: AngerConfig) -> Self {
        AngerChannel {
            cfg,
            frustration: 0.0,
            last_action: None,
        }
    }
}

impl EmotionChannel for AngerChannel {
    fn name(&self) -> &'static str {
        "anger"
    }

    super::unused_hooks!(
        perceive,
        epsilon,
        preempt,
        explore,
        target_bonus,
        after_update
    );

    fn appraise(&mut self, t: &Appraisal) {
        let ctx = t.context;
        let f = self.frustration;
        self.frustration = match self.cfg.dynamics {
            AngerDynamics::Simple { buildup, decay } => {
                if ctx.was_blocked {
                    1.0f64.min(f + buildup)
                } else {
                    f * decay
                }
            }
            AngerDynamics::GoalScaled { buildup, decay } => {
                if ctx.was_blocked {
                    let goal = ctx.goal_distance.unwrap_or(0.0);
                    let blocks = ctx.consecutive_blocks.min(5) as f64;
                    let inc = buildup * (1.0 / (1.0 + goal)) * (1.0 + 0.2 * blocks);
                    1.0f64.min(f + inc)
                } else {
                    f * decay
                }
            }
            AngerDynamics::Stepwise { per_block, decay } => {
                if !ctx.was_blocked {
                    0.0f64.max(f - decay)
                } else {
                    1.0f64.min(f + per_block * ctx.consecutive_blocks as f64)
                }
            }
        };
    }

    fn modulate(&self, t: &Appraisal, td: f64) -> Modulation {
        let f = self.frustration;
        let lr_factor = match self.cfg.learning_rate {
            AngerLearningRate::None => None,
            AngerLearningRate::Scale { weight } => Some(1.0 + weight * f),
            AngerLearningRate::DampOnPenalty { threshold, damping } => {
                (f > threshold && t.reward < 0.0).then_some(1.0 - f * damping)
            }
        };
        let td_factor = match self.cfg.blocked_td_damping {
            Some(k) if t.context.was_blocked && td < 0.0 => Some(1.0 - k * f),
            _ => None,
        };
        Modulation {
            lr_factor,
            td_factor,
            lr_cap: None,
        }
    }

    fn bias(&mut self, _state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        let f = self.frustration;
        match self.cfg.selection {
            AngerSelection::None => {}
            AngerSelection::RepeatLast { threshold, bonus } => {
                if f > threshold {
                    if let Some(last) = self.last_action {
                        q[last] += bonus * f;
                    }
                }
            }
            AngerSelection::BoostBest { threshold, weight } => {
                if f > threshold {
                    let b = argmax(q);
                    q[b] *= 1.0 + f * weight;
                }
            }
        }
        None
    }

    fn on_action(&mut self, action: usize, _how: super::Choice) {
        self.last_action = Some(action);
    }

    fn phasic(&self) -> f64 {
        self.frustration
    }

    fn tonic(&self) -> f64 {
        self.frustration
    }

    fn reset_episode(&mut self) {
        self.frustration = 0.0;
        self.last_action = None;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::EmotionalContext;

    fn run(ch: &mut AngerChannel, blocked: bool, blocks: u32, goal: f64) {
        let ctx = EmotionalContext {
            was_blocked: blocked,
            consecutive_blocks: blocks,
            goal_distance: Some(goal),
            ..Default::default()
        };
        ch.appraise(&Appraisal {
            state: 0,
            action: 0,
            value: 0.0,
            reward: -0.01,
            next_state: 0,
            done: false,
            context: &ctx,
        });
    }

    #[test]
    fn simple_frustration_builds_caps_and_decays() {
        let mut ch = AngerChannel::new(AngerConfig {
            dynamics: AngerDynamics::Simple {
                buildup: 0.3,
                decay: 0.9,
            },
            selection: AngerSelection::None,
            learning_rate: AngerLearningRate::Scale { weight: 0.3 },
            blocked_td_damping: None,
        });
        for _ in 0..5 {
            run(&mut ch, true, 1, 1.0);
        }
        assert_eq!(ch.phasic(), 1.0);
        run(&mut ch, false, 0, 1.0);
        assert!((ch.phasic() - 0.9).abs() < 1e-15);
    }

    #[test]
    fn repeat_last_boosts_previous_action_only_when_frustrated() {
        let mut ch = AngerChannel::new(AngerConfig {
            dynamics: AngerDynamics::GoalScaled {
                buildup: 0.3,
                decay: 0.8,
            },
            selection: AngerSelection::RepeatLast {
                threshold: 0.3,
                bonus: 0.5,
            },
            learning_rate: AngerLearningRate::None,
            blocked_td_damping: Some(0.5),
        });
        let rng = RngHandle::new(emorl_core::rng::RngKind::Fast, 0);
        ch.on_action(2, super::super::Choice::Greedy);
        let mut q = vec![0.0; 4];
        ch.bias(0, &mut q, &rng);
        assert_eq!(q, vec![0.0; 4]);
        for k in 1..=4 {
            run(&mut ch, true, k, 0.0);
        }
        assert!(ch.phasic() > 0.3);
        ch.bias(0, &mut q, &rng);
        assert_eq!(argmax(&q), 2);
    }

    #[test]
    fn stepwise_ignores_boundary_bumps_without_block_count() {
        let mut ch = AngerChannel::new(AngerConfig {
            dynamics: AngerDynamics::Stepwise {
                per_block: 0.2,
                decay: 0.1,
            },
            selection: AngerSelection::None,
            learning_rate: AngerLearningRate::None,
            blocked_td_damping: None,
        });
        run(&mut ch, true, 2, 3.0);
        assert!((ch.phasic() - 0.4).abs() < 1e-15);
        run(&mut ch, true, 0, 3.0);
        assert!((ch.phasic() - 0.4).abs() < 1e-15);
        run(&mut ch, false, 0, 3.0);
        assert!((ch.phasic() - 0.3).abs() < 1e-12);
    }
}
