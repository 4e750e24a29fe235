//! Anxiety about a moving threat (V3 Exp 22, docs/v3-protocol.md): the
//! closer a predator (and the more it approaches), the more anxious the
//! agent; anxiety makes it flee and avoid moves toward the threat.
//!
//! Before each action (hook `perceive`, on the last step's context, which
//! names the threat's cell and distance `d` on a square grid):
//! `base = 1` if `d ≤ near`, `(far − d) / far` if `d ≤ far`, else 0, plus
//! `approach` (to at most 1) while the threat approaches. Anxiety jumps up
//! to `base` and otherwise relaxes toward it: `a·decay + base·(1 − decay)`.
//! Then:
//! - `preempt`: above `flee_above`, with probability `a · flee_gain` (one
//!   draw) take the move that ends farthest from the threat (off-grid moves
//!   score −10; ties to the highest Q-value, then the lowest action);
//! - `bias`: above `avoid_above`, moves that end closer to the threat lose
//!   `a · avoid_penalty` of Q-value;
//! - learning rate `· caught_lr` on the step that was caught.

use super::{Appraisal, EmotionChannel, Modulation, SquareGrid};
use emorl_core::context::EmotionalContext;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnxietyConfig {
    pub near: f64,
    pub far: f64,
    pub approach: f64,
    pub decay: f64,
    pub flee_above: f64,
    pub flee_gain: f64,
    pub avoid_above: f64,
    pub avoid_penalty: f64,
    pub caught_lr: f64,
}

impl Default for AnxietyConfig {
    /// Upstream's Exp 22 anxiety agent.
    fn default() -> Self {
        AnxietyConfig {
            near: 1.0,
            far: 3.0,
            approach: 0.2,
            decay: 0.8,
            flee_above: 0.5,
            flee_gain: 0.8,
            avoid_above: 0.2,
            avoid_penalty: 10.0,
            caught_lr: 2.0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AnxietyChannel {
    cfg: AnxietyConfig,
    grid: SquareGrid,
    anxiety: f64,
    threat: Option<usize>,
}

impl AnxietyChannel {
    pub fn new(cfg: AnxietyConfig, n_states: usize) -> Self {
        AnxietyChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            anxiety: 0.0,
            threat: None,
        }
    }

    /// The move that ends farthest from the threat at `threat`.
    fn flee(&self, state: usize, threat: (i64, i64), q: &[f64]) -> usize {
        let score: Vec<f64> = (0..SquareGrid::MOVES.len())
            .map(|a| {
                self.grid
                    .step(state, a)
                    .map_or(-10.0, |(_, p)| SquareGrid::distance(p, threat) as f64)
            })
            .collect();
        let top = emorl_core::numeric::max(&score);
        let best: Vec<usize> = (0..score.len()).filter(|&a| score[a] == top).collect();
        if best.len() == 1 {
            return best[0];
        }
        let values: Vec<f64> = best
            .iter()
            .map(|&a| q.get(a).copied().unwrap_or(0.0))
            .collect();
        best[emorl_core::numeric::argmax(&values)]
    }
}

impl EmotionChannel for AnxietyChannel {
    fn name(&self) -> &'static str {
        "anxiety"
    }

    super::unused_hooks!(epsilon, explore, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        self.threat = context.threat_state;
        let Some(d) = context.threat_distance else {
            return;
        };
        let mut base = if d <= self.cfg.near {
            1.0
        } else if d <= self.cfg.far {
            (self.cfg.far - d) / self.cfg.far
        } else {
            0.0
        };
        if context.threat_approaching {
            base = (base + self.cfg.approach).min(1.0);
        }
        self.anxiety = if base > self.anxiety {
            base
        } else {
            self.anxiety * self.cfg.decay + base * (1.0 - self.cfg.decay)
        };
    }

    fn preempt(&mut self, state: usize, q: &[f64], rng: &RngHandle) -> Option<usize> {
        let threat = self.grid.cell(self.threat?);
        if self.anxiety <= self.cfg.flee_above {
            return None;
        }
        (rng.random() < self.anxiety * self.cfg.flee_gain).then(|| self.flee(state, threat, q))
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        let threat = self.grid.cell(self.threat?);
        if self.anxiety > self.cfg.avoid_above {
            let here = SquareGrid::distance(self.grid.cell(state), threat);
            for (a, v) in q.iter_mut().enumerate().take(SquareGrid::MOVES.len()) {
                if self
                    .grid
                    .step(state, a)
                    .is_some_and(|(_, p)| SquareGrid::distance(p, threat) < here)
                {
                    *v -= self.anxiety * self.cfg.avoid_penalty;
                }
            }
        }
        None
    }

    fn appraise(&mut self, _t: &Appraisal) {}

    fn modulate(&self, t: &Appraisal, _td: f64) -> Modulation {
        Modulation {
            lr_factor: t.context.harmed.then_some(self.cfg.caught_lr),
            td_factor: None,
            lr_cap: None,
        }
    }

    fn phasic(&self) -> f64 {
        self.anxiety
    }

    fn tonic(&self) -> f64 {
        self.anxiety
    }

    fn reset_episode(&mut self) {
        self.anxiety = 0.0;
        self.threat = None;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    fn threat_at(cell: usize, d: f64, approaching: bool) -> EmotionalContext {
        EmotionalContext {
            threat_distance: Some(d),
            threat_state: Some(cell),
            threat_approaching: approaching,
            ..Default::default()
        }
    }

    #[test]
    fn anxiety_jumps_up_and_relaxes_down() {
        let mut ch = AnxietyChannel::new(AnxietyConfig::default(), 100);
        ch.perceive(0, &threat_at(2, 2.0, true));
        assert_eq!(ch.phasic(), (3.0 - 2.0) / 3.0 + 0.2);
        let a = ch.phasic();
        ch.perceive(0, &threat_at(9, 9.0, false));
        assert_eq!(ch.phasic(), a * 0.8 + 0.0 * (1.0 - 0.8));
        ch.reset_episode();
        assert_eq!(ch.phasic(), 0.0);
    }

    #[test]
    fn flees_away_and_avoids_moves_toward_the_threat() {
        let mut ch = AnxietyChannel::new(AnxietyConfig::default(), 100);
        let rng = RngHandle::new(RngKind::Numpy, 1);
        // Agent at (5, 5) = 55, predator right beside it at (5, 6) = 56.
        ch.perceive(55, &threat_at(56, 1.0, true));
        let q = [0.0, 0.0, 0.0, 0.0];
        let fled: Vec<Option<usize>> = (0..50).map(|_| ch.preempt(55, &q, &rng)).collect();
        // Up, down and left all end 2 away (right walks into it): a tie,
        // broken by the highest Q (all 0) and then the lowest action, up.
        assert!(fled.iter().flatten().all(|&a| a == 0));
        assert!(fled.iter().any(Option::is_some) && fled.iter().any(Option::is_none));
        let mut q = [0.0; 4];
        ch.bias(55, &mut q, &rng);
        assert_eq!(q, [0.0, 0.0, 0.0, -ch.phasic() * 10.0]);
        // With Q favouring left among the tied moves, fleeing goes left.
        let q = [0.0, 0.0, 1.0, 0.0];
        assert_eq!(ch.flee(55, (5, 6), &q), 2);
    }
}
