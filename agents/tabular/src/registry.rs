//! Tabular agents by ID: upstream Emotional-ED agent classes expressed as
//! channel lists on the one Q-learner.

use crate::channels::{
    AngerConfig, AngerDynamics, AngerLearningRate, AngerSelection, AnxietyConfig, ChannelConfig,
    CuriosityConfig, EvadeConfig, FearConfig, FearLearningRate, FearSelection, FearSource,
    HazardConfig, HazardMaskConfig, JoyConfig, NoveltyConfig, PatienceConfig, PersistenceConfig,
    PushOnConfig, RefuelConfig, RegretConfig, RepeatConfig, SurpriseConfig,
};
use crate::learner::QLearnerConfig;
use emorl_core::registry::Registry;

/// Default hyperparameters of a registered agent.
pub type MakeAgentConfig = fn() -> QLearnerConfig;

fn with(channels: Vec<ChannelConfig>) -> QLearnerConfig {
    QLearnerConfig {
        channels,
        ..Default::default()
    }
}

fn distance_fear(selection: FearSelection, learning_rate: FearLearningRate) -> ChannelConfig {
    ChannelConfig::Fear(FearConfig {
        source: FearSource::Distance {
            safe_distance: 3.0,
            max_fear: 1.0,
        },
        selection,
        learning_rate,
    })
}

/// Upstream `IntegratedEmotionalAgent(w_f, w_a, w_r)`.
fn integrated(w_f: f64, w_a: f64, w_r: f64) -> QLearnerConfig {
    with(vec![
        distance_fear(
            FearSelection::Subtract { weight: w_f },
            FearLearningRate::OnPenalty {
                threshold: 0.0,
                weight: w_f,
            },
        ),
        ChannelConfig::Anger(AngerConfig {
            dynamics: AngerDynamics::Stepwise {
                per_block: 0.2,
                decay: 0.1,
            },
            selection: AngerSelection::BoostBest {
                threshold: 0.3,
                weight: w_a,
            },
            learning_rate: AngerLearningRate::DampOnPenalty {
                threshold: 0.3,
                damping: 0.5,
            },
            blocked_td_damping: None,
        }),
        ChannelConfig::Regret(RegretConfig {
            sensitivity: 1.0,
            weight: w_r,
            counterfactual_lr: None,
            memory_exploration: Some(0.3),
        }),
    ])
}

pub fn registry() -> Registry<MakeAgentConfig> {
    let mut r: Registry<MakeAgentConfig> = Registry::new("agent");
    r.register(
        "q-learning",
        "standard tabular Q-learning, epsilon-greedy (no emotion)",
        QLearnerConfig::default,
    );
    r.register(
        "bandit",
        "standard bandit learner: Q(a) <- Q(a) + lr (r - Q(a)) (no emotion)",
        || QLearnerConfig {
            bootstrap: false,
            ..Default::default()
        },
    );
    r.register(
        "emotional-ed",
        "Q-learning + fear (threat proximity speeds learning from bad news) + anger (blocked moves)",
        || {
            with(vec![
                distance_fear(
                    FearSelection::OrderPreserving,
                    FearLearningRate::NegativeBias { weight: 0.5 },
                ),
                ChannelConfig::Anger(AngerConfig {
                    dynamics: AngerDynamics::Simple {
                        buildup: 0.3,
                        decay: 0.9,
                    },
                    selection: AngerSelection::None,
                    learning_rate: AngerLearningRate::Scale { weight: 0.3 },
                    blocked_td_damping: None,
                }),
            ])
        },
    );
    r.register(
        "frustration-ed",
        "Q-learning + frustration: persists with the last action and discounts evidence of blockage",
        || {
            with(vec![ChannelConfig::Anger(AngerConfig {
                dynamics: AngerDynamics::GoalScaled {
                    buildup: 0.3,
                    decay: 0.8,
                },
                selection: AngerSelection::RepeatLast {
                    threshold: 0.3,
                    bonus: 0.5,
                },
                learning_rate: AngerLearningRate::Scale { weight: 0.5 },
                blocked_td_damping: Some(0.5),
            })])
        },
    );
    r.register(
        "regret-ed",
        "bandit learner + regret: learns faster after regret and from the foregone door",
        || QLearnerConfig {
            bootstrap: false,
            channels: vec![ChannelConfig::Regret(RegretConfig {
                sensitivity: 1.0,
                weight: 0.5,
                counterfactual_lr: Some(0.05),
                memory_exploration: None,
            })],
            ..Default::default()
        },
    );
    r.register(
        "fear-dominant",
        "fear, anger and regret together, fear weighted highest (w_f 1.0, w_a 0.2, w_r 0.2)",
        || integrated(1.0, 0.2, 0.2),
    );
    r.register(
        "anger-dominant",
        "fear, anger and regret together, anger weighted highest (w_f 0.2, w_a 1.0, w_r 0.2)",
        || integrated(0.2, 1.0, 0.2),
    );
    r.register(
        "no-transfer",
        "Q-learning + fear remembered per cell (does not generalise to new threat places)",
        || {
            with(vec![ChannelConfig::Fear(FearConfig {
                source: FearSource::StateMemory {
                    increment: 0.2,
                    decay: 0.95,
                    penalty: -0.2,
                },
                selection: FearSelection::BoostBest {
                    threshold: 0.3,
                    weight: 1.0,
                },
                learning_rate: FearLearningRate::None,
            })])
        },
    );
    r.register(
        "emotional-transfer",
        "Q-learning + fear of threat proximity with an adaptive distance threshold (transfers)",
        || {
            with(vec![ChannelConfig::Fear(FearConfig {
                source: FearSource::AdaptiveDistance {
                    initial: 2.0,
                    min: 1.0,
                    max: 3.0,
                    raise: 0.1,
                    lower: 0.05,
                    near: 2.0,
                    penalty: -0.2,
                },
                selection: FearSelection::BoostBest {
                    threshold: 0.3,
                    weight: 0.8,
                },
                learning_rate: FearLearningRate::OnPenalty {
                    threshold: 0.3,
                    weight: 0.8,
                },
            })])
        },
    );
    r.register(
        "curious-q",
        "Q-learning + curiosity: a novelty bonus 0.05/(1 + visits) inside the TD target",
        || {
            with(vec![ChannelConfig::Curiosity(CuriosityConfig {
                scale: 0.05,
            })])
        },
    );
    r.register(
        "novelty-ed",
        "Q-learning (epsilon 0.3) + novelty-seeking curiosity: steers toward unvisited cells (V3 Exp 17)",
        || QLearnerConfig {
            epsilon: 0.3,
            channels: vec![ChannelConfig::Novelty(NoveltyConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "persistent-anger",
        "Q-learning (epsilon 0.2) + anger that builds on blocked pushes and persists with the last greedy move (V3 Exp 20)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Persistence(PersistenceConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "surprise-ed",
        "Q-learning (epsilon 0.2) + surprise: a gap between expected and received reward raises exploration and the learning rate (V3 Exp 19)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Surprise(SurpriseConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "anxious-ed",
        "Q-learning (epsilon 0.2) + anxiety about a nearby, approaching predator: flees and avoids moves toward it (V3 Exp 22)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Anxiety(AnxietyConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "hazard-fear",
        "Q-learning (epsilon 0.2) + fear of a hazard feature learned from hits, avoiding every cell shown as hazardous (V3 Exp 21)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Hazard(HazardConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "patient-ed",
        "Q-learning (gamma 0.95, epsilon 0.2) + patience: a low battery or an out-of-reach charger sends it to the nearest charger (V3 Exp 23)",
        || QLearnerConfig {
            gamma: 0.95,
            epsilon: 0.2,
            channels: vec![ChannelConfig::Patience(PatienceConfig::default())],
            ..Default::default()
        },
    );
    // Engineered, non-emotional baselines (the V3 audit): a plain learner
    // given the same observation as the emotional agent it is set against.
    r.register(
        "optimistic-q",
        "Q-learning with optimistic initial values (Q = 1 everywhere): untried moves look best until tried (V3 audit, Exp 17)",
        || QLearnerConfig {
            epsilon: 0.1,
            q_init: 1.0,
            ..Default::default()
        },
    );
    r.register(
        "repeat-q",
        "Q-learning (epsilon 0.2) with temporally extended exploration: an exploratory move is repeated for 4 steps (ez-greedy); no emotion (V3 audit, Exp 20)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Repeat(RepeatConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "push-on-q",
        "Q-learning (epsilon 0.2) with a persistence rule: after a push that moved a jammed door without opening it, push again; no emotion (V3 audit, Exp 20)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::PushOn(PushOnConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "hazard-mask-q",
        "Q-learning (epsilon 0.2) with moves into the hazard cells shown masked out; no emotion (V3 audit, Exp 21)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::HazardMask(HazardMaskConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "evade-q",
        "Q-learning (epsilon 0.2) with moves toward a predator within 3 cells masked out; no emotion (V3 audit, Exp 22)",
        || QLearnerConfig {
            epsilon: 0.2,
            channels: vec![ChannelConfig::Evade(EvadeConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "refuel-q",
        "Q-learning (gamma 0.95, epsilon 0.2) with a refuelling rule: at 30% battery or less, or a charger out of reach, head for the nearest charger; no emotion (V3 audit, Exp 23)",
        || QLearnerConfig {
            gamma: 0.95,
            epsilon: 0.2,
            channels: vec![ChannelConfig::Refuel(RefuelConfig::default())],
            ..Default::default()
        },
    );
    r.register(
        "joyful-q",
        "Q-learning + joy: learns faster from good news; tonic mood follows rewards",
        || {
            with(vec![ChannelConfig::Joy(JoyConfig {
                mood_rate: 0.05,
                weight: 0.5,
            })])
        },
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::QLearner;
    use emorl_core::{EmotionalContext, RngHandle, RngKind};

    #[test]
    fn every_agent_config_validates_and_roundtrips_through_toml() {
        for e in registry().entries() {
            let cfg = (e.make)();
            cfg.validate().expect("valid");
            let text = toml::to_string(&cfg).expect("serialise");
            let back: QLearnerConfig = toml::from_str(&text).expect("parse");
            assert_eq!(back, cfg, "{}", e.id);
        }
    }

    /// A learner restored mid-run makes the same choices and updates as the
    /// one that kept going, for every channel kind.
    #[test]
    fn restored_learner_continues_bit_for_bit() {
        use crate::channels::ChannelConfig;
        let registry = crate::registry();
        for entry in registry.entries() {
            let cfg = (entry.make)();
            let n_states = 25;
            let run = |l: &mut QLearner, rng: &RngHandle, steps: usize| {
                let mut trace = Vec::new();
                let mut s = 0;
                for t in 0..steps {
                    let a = l.act(s, &EmotionalContext::default(), rng);
                    let ctx = EmotionalContext {
                        threat_distance: Some((t % 5) as f64),
                        was_blocked: t % 3 == 0,
                        reward: -0.01,
                        counterfactual: Some(emorl_core::Counterfactual {
                            obtained: -0.01,
                            foregone: (t % 7) as f64 / 7.0,
                            foregone_action: Some((a + 1) % 4),
                        }),
                        ..Default::default()
                    };
                    let next = (s + a + 1) % n_states;
                    let u = l.update(s, a, -0.01, next, t % 17 == 16, &ctx);
                    trace.push((a, u.td_error.to_bits(), u.effective_lr.to_bits()));
                    if t % 17 == 16 {
                        l.reset_episode();
                    }
                    s = next;
                }
                trace
            };
            let rng = RngHandle::new(RngKind::Numpy, 7);
            let mut a = QLearner::new(n_states, 4, cfg.clone()).expect("learner");
            run(&mut a, &rng, 300);
            let saved = serde_json::to_string(&a.state().expect("state")).expect("json");
            let rng_saved = rng.snapshot();
            let tail_a = run(&mut a, &rng, 300);

            let mut b = QLearner::new(n_states, 4, cfg.clone()).expect("learner");
            b.restore(serde_json::from_str(&saved).expect("parse"))
                .expect("restore");
            let rng_b = RngHandle::from_rng(rng_saved);
            let tail_b = run(&mut b, &rng_b, 300);
            assert_eq!(tail_a, tail_b, "{}", entry.id);
            assert_eq!(a.state().expect("a"), b.state().expect("b"), "{}", entry.id);

            // Another channel list or table size is refused.
            if let Some(ChannelConfig::Fear(_) | ChannelConfig::Anger(_)) = cfg.channels.first() {
                let mut other_cfg = cfg.clone();
                other_cfg.channels.rotate_left(1);
                other_cfg.channels.pop();
                let mut c = QLearner::new(n_states, 4, other_cfg).expect("learner");
                assert!(c.restore(a.state().expect("a")).is_err(), "{}", entry.id);
            }
            let mut d = QLearner::new(n_states + 1, 4, cfg).expect("learner");
            assert!(d.restore(a.state().expect("a")).is_err(), "{}", entry.id);
        }
    }
}
