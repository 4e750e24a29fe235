//! Fear: appraisal of threat proximity (phasic) and learned danger (tonic).

use super::{normalised, Appraisal, EmotionChannel, Modulation};
use emorl_core::context::distance_fear;
use emorl_core::numeric::argmax;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

/// Where fear comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FearSource {
    /// `max_fear · (1 − d / safe_distance)` inside `safe_distance` of the threat, else 0.
    Distance { safe_distance: f64, max_fear: f64 },
    /// Like `Distance`, with a threshold θ that adapts: near the threat
    /// (`d < near`) a penalty (`r < penalty`) raises θ by `raise` up to `max`,
    /// a reward (`r > 0`) lowers it by `lower` down to `min`.
    AdaptiveDistance {
        initial: f64,
        min: f64,
        max: f64,
        raise: f64,
        lower: f64,
        near: f64,
        penalty: f64,
    },
    /// Fear remembered per state: a penalty (`r < penalty`) adds `increment`
    /// (capped at 1) to the pre-move state's fear, otherwise it decays by `decay`.
    StateMemory {
        increment: f64,
        decay: f64,
        penalty: f64,
    },
}

/// How fear biases action selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FearSelection {
    None,
    /// `q_i + fear · norm(q_i)`: strictly increasing, so the greedy action never
    /// changes (upstream `EmotionalEDAgent`, kept for fidelity).
    OrderPreserving,
    /// `q_i − fear · weight · norm(q_i)`: can reverse preferences when
    /// `fear · weight` exceeds the Q range (upstream integration agents).
    Subtract {
        weight: f64,
    },
    /// Above `threshold`, multiply the best Q by `1 + fear · weight`.
    BoostBest {
        threshold: f64,
        weight: f64,
    },
}

/// How fear modulates the learning rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FearLearningRate {
    None,
    /// `1 + weight · fear · (1 if td < 0 else 0.5)`: learn faster from bad news.
    NegativeBias {
        weight: f64,
    },
    /// `1 + fear · weight` when `fear > threshold` and the reward is negative.
    OnPenalty {
        threshold: f64,
        weight: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FearConfig {
    pub source: FearSource,
    pub selection: FearSelection,
    pub learning_rate: FearLearningRate,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FearChannel {
    cfg: FearConfig,
    /// Fear of the state the agent is now in (set by the last appraisal).
    current: f64,
    /// Adaptive threshold θ (AdaptiveDistance) .
    theta: f64,
    /// Per-state fear (StateMemory).
    memory: Vec<f64>,
}

impl FearChannel {
    pub fn new(cfg: FearConfig, n_states: usize) -> Self {
        let theta = match cfg.source {
            FearSource::AdaptiveDistance { initial, .. } => initial,
            _ => 0.0,
        };
        let memory = match cfg.source {
            FearSource::StateMemory { .. } => vec![0.0; n_states],
            _ => Vec::new(),
        };
        FearChannel {
            cfg,
            current: 0.0,
            theta,
            memory,
        }
    }

    fn fear_at(&self, state: usize) -> f64 {
        match self.cfg.source {
            FearSource::StateMemory { .. } => self.memory[state],
            _ => self.current,
        }
    }
}

impl EmotionChannel for FearChannel {
    fn name(&self) -> &'static str {
        "fear"
    }

    super::unused_hooks!(
        perceive,
        epsilon,
        preempt,
        explore,
        on_action,
        target_bonus,
        after_update
    );

    fn appraise(&mut self, t: &Appraisal) {
        let d = t.context.threat_distance.unwrap_or(f64::INFINITY);
        match self.cfg.source {
            FearSource::Distance {
                safe_distance,
                max_fear,
            } => self.current = distance_fear(d, safe_distance, max_fear),
            FearSource::AdaptiveDistance {
                min,
                max,
                raise,
                lower,
                near,
                penalty,
                ..
            } => {
                self.current = distance_fear(d, self.theta, 1.0);
                if d < near {
                    if t.reward < penalty {
                        self.theta = max.min(self.theta + raise);
                    } else if t.reward > 0.0 {
                        self.theta = min.max(self.theta - lower);
                    }
                }
            }
            FearSource::StateMemory {
                increment,
                decay,
                penalty,
            } => {
                let m = &mut self.memory[t.state];
                if t.reward < penalty {
                    *m = 1.0f64.min(*m + increment);
                } else {
                    *m *= decay;
                }
                self.current = *m;
            }
        }
    }

    fn modulate(&self, t: &Appraisal, td: f64) -> Modulation {
        let fear = self.current;
        let lr_factor = match self.cfg.learning_rate {
            FearLearningRate::None => None,
            FearLearningRate::NegativeBias { weight } => {
                Some(1.0 + weight * fear * if td < 0.0 { 1.0 } else { 0.5 })
            }
            FearLearningRate::OnPenalty { threshold, weight } => {
                (fear > threshold && t.reward < 0.0).then_some(1.0 + fear * weight)
            }
        };
        Modulation {
            lr_factor,
            td_factor: None,
            lr_cap: None,
        }
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        let fear = self.fear_at(state);
        match self.cfg.selection {
            FearSelection::None => {}
            FearSelection::OrderPreserving => {
                if fear > 0.0 {
                    if let Some((lo, range)) = normalised(q) {
                        for v in q.iter_mut() {
                            *v += fear * ((*v - lo) / range);
                        }
                    }
                }
            }
            FearSelection::Subtract { weight } => {
                if fear > 0.0 {
                    if let Some((lo, range)) = normalised(q) {
                        let c = fear * weight;
                        for v in q.iter_mut() {
                            *v -= c * ((*v - lo) / range);
                        }
                    }
                }
            }
            FearSelection::BoostBest { threshold, weight } => {
                if fear > threshold {
                    let b = argmax(q);
                    q[b] *= 1.0 + fear * weight;
                }
            }
        }
        None
    }

    fn phasic(&self) -> f64 {
        self.current
    }

    fn tonic(&self) -> f64 {
        match self.cfg.source {
            FearSource::AdaptiveDistance { .. } => self.theta,
            FearSource::StateMemory { .. } => emorl_core::numeric::max(&self.memory),
            FearSource::Distance { .. } => 0.0,
        }
    }

    fn reset_episode(&mut self) {
        self.current = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::EmotionalContext;

    fn appraisal(ctx: &EmotionalContext, reward: f64) -> Appraisal<'_> {
        Appraisal {
            state: 3,
            action: 0,
            value: 0.0,
            reward,
            next_state: 4,
            done: false,
            context: ctx,
        }
    }

    fn distance_channel(selection: FearSelection) -> FearChannel {
        FearChannel::new(
            FearConfig {
                source: FearSource::Distance {
                    safe_distance: 3.0,
                    max_fear: 1.0,
                },
                selection,
                learning_rate: FearLearningRate::NegativeBias { weight: 0.5 },
            },
            25,
        )
    }

    #[test]
    fn distance_fear_values_match_protocol() {
        let mut ch = distance_channel(FearSelection::None);
        for (d, want) in [
            (0.0, 1.0),
            (1.0, 0.666_666_666_666_666_7),
            (3.0, 0.0),
            (5.0, 0.0),
        ] {
            let ctx = EmotionalContext {
                threat_distance: Some(d),
                ..Default::default()
            };
            ch.appraise(&appraisal(&ctx, -0.01));
            assert!((ch.phasic() - want).abs() < 1e-12, "d={d}");
        }
    }

    #[test]
    fn fear_speeds_up_learning_from_bad_news_more() {
        let mut ch = distance_channel(FearSelection::None);
        let ctx = EmotionalContext {
            threat_distance: Some(0.0),
            ..Default::default()
        };
        let a = appraisal(&ctx, -0.01);
        ch.appraise(&a);
        assert_eq!(ch.modulate(&a, -1.0).lr_factor, Some(1.5));
        assert_eq!(ch.modulate(&a, 1.0).lr_factor, Some(1.25));
    }

    #[test]
    fn order_preserving_bias_never_changes_greedy_action() {
        let mut ch = distance_channel(FearSelection::OrderPreserving);
        let ctx = EmotionalContext {
            threat_distance: Some(1.0),
            ..Default::default()
        };
        ch.appraise(&appraisal(&ctx, 0.0));
        let rng = RngHandle::new(emorl_core::rng::RngKind::Fast, 0);
        let mut q = vec![0.1, -0.3, 0.7, 0.2];
        ch.bias(0, &mut q, &rng);
        assert_eq!(argmax(&q), 2);
    }

    #[test]
    fn subtract_bias_reverses_preferences_when_strong() {
        let mut ch = distance_channel(FearSelection::Subtract { weight: 1.0 });
        let ctx = EmotionalContext {
            threat_distance: Some(0.0),
            ..Default::default()
        };
        ch.appraise(&appraisal(&ctx, 0.0));
        let rng = RngHandle::new(emorl_core::rng::RngKind::Fast, 0);
        let mut q = vec![0.1, 0.0, 0.5, 0.2]; // range 0.5 < fear 1.0
        ch.bias(0, &mut q, &rng);
        assert_eq!(argmax(&q), 1, "{q:?}");
    }

    #[test]
    fn state_memory_accumulates_and_decays() {
        let mut ch = FearChannel::new(
            FearConfig {
                source: FearSource::StateMemory {
                    increment: 0.2,
                    decay: 0.95,
                    penalty: -0.2,
                },
                selection: FearSelection::None,
                learning_rate: FearLearningRate::None,
            },
            25,
        );
        let ctx = EmotionalContext::default();
        for _ in 0..7 {
            ch.appraise(&appraisal(&ctx, -0.51));
        }
        assert_eq!(ch.fear_at(3), 1.0);
        ch.appraise(&appraisal(&ctx, -0.01));
        assert!((ch.fear_at(3) - 0.95).abs() < 1e-15);
        assert_eq!(ch.fear_at(4), 0.0);
    }
}
