//! Fear of a learned hazard feature (V3 Exp 21, docs/v3-protocol.md): being
//! hurt on red cells teaches a fear of red (`colour fear`, kept for the
//! whole run); near a hazard that fear steers the agent away from every cell
//! it has been shown as hazardous — in any layout, which is the transfer
//! upstream's "feature-based" agent claims.
//!
//! - `perceive`: the hazard cells the environment shows join a memory kept
//!   for the whole run (upstream never clears it, so an old layout's cells
//!   stay feared); fear = colour fear · `max(0, 1 − d / reach)` at distance
//!   `d` from the nearest hazard (at an episode's start, before anything is
//!   sensed, fear only decays);
//! - `explore`: above `explore_above`, the exploratory move is drawn with
//!   probability `1/4` each, times `1 − fear` for moves into remembered
//!   hazards (one weighted draw, even when no move is affected);
//! - `bias`: above `avoid_above`, moves into remembered hazards lose
//!   `colour fear · penalty` of Q-value;
//! - `appraise` (learning steps only): a hit raises colour fear by `learn`,
//!   to at most 1.

use super::{Appraisal, EmotionChannel, SquareGrid};
use emorl_core::context::EmotionalContext;
use emorl_core::numeric::pairwise_sum;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HazardConfig {
    pub reach: f64,
    pub start_decay: f64,
    pub explore_above: f64,
    pub avoid_above: f64,
    pub penalty: f64,
    pub learn: f64,
}

impl Default for HazardConfig {
    /// Upstream's Exp 21 feature-based fear agent.
    fn default() -> Self {
        HazardConfig {
            reach: 3.0,
            start_decay: 0.9,
            explore_above: 0.3,
            avoid_above: 0.2,
            penalty: 20.0,
            learn: 1.0 * 0.3,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HazardChannel {
    cfg: HazardConfig,
    grid: SquareGrid,
    colour_fear: f64,
    fear: f64,
    memory: Vec<bool>,
}

impl HazardChannel {
    pub fn new(cfg: HazardConfig, n_states: usize) -> Self {
        HazardChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            colour_fear: 0.0,
            fear: 0.0,
            memory: vec![false; n_states],
        }
    }

    /// Whether `action` from `state` leads into a remembered hazard.
    fn leads_to_hazard(&self, state: usize, action: usize) -> bool {
        self.grid
            .step(state, action)
            .is_some_and(|(next, _)| self.memory.get(next).copied().unwrap_or(false))
    }
}

impl EmotionChannel for HazardChannel {
    fn name(&self) -> &'static str {
        "hazard"
    }

    super::unused_hooks!(epsilon, preempt, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        for &cell in context.hazards.iter().flatten() {
            if let Some(m) = self.memory.get_mut(cell) {
                *m = true;
            }
        }
        self.fear = match context.threat_distance {
            None => self.fear * self.cfg.start_decay,
            Some(d) => self.colour_fear * (1.0 - d / self.cfg.reach).max(0.0),
        };
    }

    fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize> {
        if self.fear <= self.cfg.explore_above {
            return None;
        }
        let mut p = [0.25; 4];
        for (a, w) in p.iter_mut().enumerate() {
            if self.leads_to_hazard(state, a) {
                *w *= 1.0 - self.fear;
            }
        }
        let total = pairwise_sum(&p);
        let p: Vec<f64> = p.iter().map(|w| w / total).collect();
        Some(rng.choice_weighted(&p))
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        if self.fear > self.cfg.avoid_above {
            for (a, v) in q.iter_mut().enumerate().take(SquareGrid::MOVES.len()) {
                if self.leads_to_hazard(state, a) {
                    *v -= self.colour_fear * self.cfg.penalty;
                }
            }
        }
        None
    }

    fn appraise(&mut self, t: &Appraisal) {
        if t.context.harmed {
            self.colour_fear = (self.colour_fear + self.cfg.learn).min(1.0);
        }
    }

    fn phasic(&self) -> f64 {
        self.fear
    }

    fn tonic(&self) -> f64 {
        self.colour_fear
    }

    fn reset_episode(&mut self) {
        self.fear = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn hits_teach_a_fear_that_avoids_remembered_cells_anywhere() {
        let mut ch = HazardChannel::new(HazardConfig::default(), 64);
        let rng = RngHandle::new(RngKind::Numpy, 0);
        // Shown a hazard at (1, 1) = 9; standing at (1, 0) = 8, one away.
        ch.perceive(
            8,
            &EmotionalContext {
                hazards: Some(vec![9]),
                ..Default::default()
            },
        );
        let near = EmotionalContext {
            threat_distance: Some(1.0),
            ..Default::default()
        };
        ch.perceive(8, &near);
        assert_eq!(ch.phasic(), 0.0); // no colour fear learned yet
        let hit = EmotionalContext {
            harmed: true,
            ..Default::default()
        };
        for _ in 0..4 {
            ch.appraise(&Appraisal {
                state: 8,
                action: 3,
                value: 0.0,
                reward: -10.0,
                next_state: 9,
                done: false,
                context: &hit,
            });
        }
        assert_eq!(ch.tonic(), 1.0);
        ch.perceive(8, &near);
        assert_eq!(ch.phasic(), 1.0 - 1.0 / 3.0);
        let mut q = [0.0; 4];
        ch.bias(8, &mut q, &rng);
        assert_eq!(q, [0.0, 0.0, 0.0, -20.0]);
        // Exploration avoids the hazard in proportion to fear: right has
        // weight 1/4 · (1 − fear) = 1/12 of the 4 moves' 0.8333.
        let right = (0..3000).filter(|_| ch.explore(8, &rng) == Some(3)).count();
        assert!((right as f64 / 3000.0 - 0.1).abs() < 0.03, "{right}");
        ch.reset_episode();
        assert_eq!((ch.phasic(), ch.tonic()), (0.0, 1.0));
    }
}
