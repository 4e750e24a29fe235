//! Patience over a draining reserve (V3 Exp 23, docs/v3-protocol.md): as
//! the battery runs low — or the nearest charger drifts out of reach — the
//! agent puts its errand aside and heads for a charger.
//!
//! Before each action (hook `perceive`, on the last step's context):
//! patience = 1 at a level ≤ `critical`, `min(1, 2 · (low − level) / low)`
//! at ≤ `low`, `medium` at ≤ `half`, else 0; at least `unreachable` when the
//! nearest charger is out of reach. The chargers are those shown at the
//! start of the episode, in the environment's order (ties between equally
//! near chargers go to the first). Then:
//! - `preempt`: above `go_above`, with probability `patience` (one draw,
//!   made whenever a move toward the nearest charger exists) take the first
//!   such move;
//! - `bias`: above `lean_above`, the moves toward it gain `patience ·
//!   gain · (1 − 0.3 i)` for the i-th;
//! - learning rate `· crash_lr` on a step whose reward is below
//!   `crash_below` (the battery died).

use super::{Appraisal, EmotionChannel, Modulation, SquareGrid};
use emorl_core::context::EmotionalContext;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatienceConfig {
    pub critical: f64,
    pub low: f64,
    pub half: f64,
    pub medium: f64,
    pub unreachable: f64,
    pub go_above: f64,
    pub lean_above: f64,
    pub gain: f64,
    pub crash_below: f64,
    pub crash_lr: f64,
}

impl Default for PatienceConfig {
    /// Upstream's Exp 23 patience agent.
    fn default() -> Self {
        PatienceConfig {
            critical: 0.15,
            low: 0.3,
            half: 0.5,
            medium: 0.2,
            unreachable: 0.8,
            go_above: 0.5,
            lean_above: 0.2,
            gain: 10.0,
            crash_below: -10.0,
            crash_lr: 2.0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PatienceChannel {
    cfg: PatienceConfig,
    grid: SquareGrid,
    patience: f64,
    chargers: Vec<usize>,
}

impl PatienceChannel {
    pub fn new(cfg: PatienceConfig, n_states: usize) -> Self {
        PatienceChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            patience: 0.0,
            chargers: Vec::new(),
        }
    }

    /// Moves from `state` that bring the agent closer to the nearest
    /// charger, in action order (at most two; none on the charger).
    fn toward_charger(&self, state: usize) -> Vec<usize> {
        self.grid.moves_toward_nearest(state, &self.chargers)
    }
}

impl EmotionChannel for PatienceChannel {
    fn name(&self) -> &'static str {
        "patience"
    }

    super::unused_hooks!(epsilon, explore, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        let Some(r) = &context.reserve else {
            return;
        };
        if let Some(stations) = &r.stations {
            self.chargers.clone_from(stations);
        }
        let level = r.level;
        let c = &self.cfg;
        let mut p = if level <= c.critical {
            1.0
        } else if level <= c.low {
            (((c.low - level) / c.low) * 2.0).min(1.0)
        } else if level <= c.half {
            c.medium
        } else {
            0.0
        };
        if !r.can_reach_station {
            p = f64::max(p, c.unreachable);
        }
        self.patience = p;
    }

    fn preempt(&mut self, state: usize, _q: &[f64], rng: &RngHandle) -> Option<usize> {
        if self.patience <= self.cfg.go_above {
            return None;
        }
        let first = *self.toward_charger(state).first()?;
        (rng.random() < self.patience).then_some(first)
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        if self.patience > self.cfg.lean_above {
            for (i, a) in self.toward_charger(state).into_iter().enumerate() {
                if let Some(v) = q.get_mut(a) {
                    *v += self.patience * self.cfg.gain * (1.0 - i as f64 * 0.3);
                }
            }
        }
        None
    }

    fn appraise(&mut self, _t: &Appraisal) {}

    fn modulate(&self, t: &Appraisal, _td: f64) -> Modulation {
        Modulation {
            lr_factor: (t.reward < self.cfg.crash_below).then_some(self.cfg.crash_lr),
            td_factor: None,
            lr_cap: None,
        }
    }

    fn phasic(&self) -> f64 {
        self.patience
    }

    fn tonic(&self) -> f64 {
        self.patience
    }

    fn reset_episode(&mut self) {
        self.patience = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::Reserve;
    use emorl_core::RngKind;

    fn at(level: f64, reach: bool, stations: Option<Vec<usize>>) -> EmotionalContext {
        EmotionalContext {
            reserve: Some(Reserve {
                level,
                can_reach_station: reach,
                stations,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn low_battery_sends_the_agent_to_the_nearest_charger() {
        // 12×12; chargers at (0, 5) = 5 and (5, 0) = 60, equally far from
        // (2, 2) = 26: the first listed wins the tie.
        let mut ch = PatienceChannel::new(PatienceConfig::default(), 144);
        ch.perceive(26, &at(1.0, true, Some(vec![5, 60])));
        assert_eq!(ch.phasic(), 0.0);
        ch.perceive(26, &at(0.4, true, None));
        assert_eq!(ch.phasic(), 0.2); // the medium band acts on nothing
        let rng = RngHandle::new(RngKind::Numpy, 0);
        assert_eq!(ch.preempt(26, &[0.0; 4], &rng), None);
        ch.perceive(26, &at(0.2, false, None));
        assert_eq!(ch.phasic(), 0.8); // out of reach
        assert_eq!(ch.toward_charger(26), vec![0, 3]); // up and right, toward (0, 5)
        let mut q = [0.0; 4];
        ch.bias(26, &mut q, &rng);
        assert_eq!(q, [8.0, 0.0, 0.0, 0.8 * 10.0 * (1.0 - 0.3)]);
        ch.perceive(26, &at(0.1, true, None));
        assert_eq!(ch.phasic(), 1.0);
        assert_eq!(ch.preempt(26, &[0.0; 4], &rng), Some(0));
        assert!(ch.toward_charger(5).is_empty()); // on the charger
    }
}
