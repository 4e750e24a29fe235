//! Novelty-seeking curiosity (V3 Exp 17, docs/v3-protocol.md): per-episode
//! visit counts of a square grid's cells drive a curiosity level that
//! (1) steers exploratory moves toward rarely visited neighbours,
//! (2) adds a novelty bonus to the greedy Q-values of moves into them,
//! (3) adds an intrinsic reward for arriving somewhere new, and
//! (4) raises the learning rate while curious.
//!
//! Before each action in cell `s` (hook `perceive`): `visits[s] += 1`, and
//! `curiosity = min(1, (1 / (1 + visits[s]) + stagnation) · weight)` where
//! `stagnation = min(0.5, k / 100)` once `k`, the steps since the last new
//! cell, exceeds `stagnation_after` (else 0). Upstream's constants make
//! `weight` 0.5, so curiosity never exceeds 0.5.

use super::{Appraisal, EmotionChannel, Modulation, SquareGrid};
use emorl_core::context::EmotionalContext;
use emorl_core::numeric::pairwise_sum;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoveltyConfig {
    /// Scales the curiosity level and the greedy novelty bonus.
    pub weight: f64,
    /// Steps without a new cell after which stagnation adds to curiosity.
    pub stagnation_after: u32,
    /// Exploratory moves are novelty-weighted while curiosity exceeds this.
    pub explore_above: f64,
    /// Greedy Q-values get the novelty bonus while curiosity exceeds this.
    pub greedy_above: f64,
    /// Greedy bonus of a move: `novelty(neighbour) · weight · greedy_gain`.
    pub greedy_gain: f64,
    /// Intrinsic reward `novelty(s') · intrinsic` inside the TD target.
    pub intrinsic: f64,
    /// Learning rate `lr · (1 + curiosity · lr_gain)`.
    pub lr_gain: f64,
}

impl Default for NoveltyConfig {
    /// Upstream's Exp 17 curiosity agent.
    fn default() -> Self {
        NoveltyConfig {
            weight: 0.5,
            stagnation_after: 20,
            explore_above: 0.3,
            greedy_above: 0.2,
            greedy_gain: 5.0,
            intrinsic: 0.1,
            lr_gain: 0.5,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NoveltyChannel {
    cfg: NoveltyConfig,
    grid: SquareGrid,
    /// Arrivals at each cell this episode (counted when acting there).
    visits: Vec<u32>,
    curiosity: f64,
}

impl NoveltyChannel {
    pub fn new(cfg: NoveltyConfig, n_states: usize) -> Self {
        NoveltyChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            visits: vec![0; n_states],
            curiosity: 0.0,
        }
    }

    /// `1 / (1 + visits)` of a cell.
    fn novelty(&self, state: usize) -> f64 {
        1.0 / (1.0 + self.visits.get(state).copied().unwrap_or(0) as f64)
    }

    /// Novelty of the cell `action` leads to from `state`; 0 off the grid.
    fn neighbour_novelty(&self, state: usize, action: usize) -> f64 {
        self.grid
            .step(state, action)
            .map_or(0.0, |(next, _)| self.novelty(next))
    }
}

impl EmotionChannel for NoveltyChannel {
    fn name(&self) -> &'static str {
        "novelty"
    }

    super::unused_hooks!(epsilon, preempt, on_action, after_update);

    fn perceive(&mut self, state: usize, context: &EmotionalContext) {
        if let Some(v) = self.visits.get_mut(state) {
            *v += 1;
        }
        let k = context.exploration.map_or(0, |x| x.steps_since_new);
        let stagnation = if k > self.cfg.stagnation_after {
            (k as f64 / 100.0).min(0.5)
        } else {
            0.0
        };
        self.curiosity = ((self.novelty(state) + stagnation) * self.cfg.weight).min(1.0);
    }

    fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize> {
        if self.curiosity <= self.cfg.explore_above {
            return None;
        }
        let novelties: Vec<f64> = (0..SquareGrid::MOVES.len())
            .map(|a| self.neighbour_novelty(state, a))
            .collect();
        let total = pairwise_sum(&novelties);
        if total <= 0.0 {
            return None;
        }
        let p: Vec<f64> = novelties.iter().map(|n| n / total).collect();
        Some(rng.choice_weighted(&p))
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        if self.curiosity > self.cfg.greedy_above {
            for (a, v) in q.iter_mut().enumerate().take(SquareGrid::MOVES.len()) {
                *v += self.neighbour_novelty(state, a) * self.cfg.weight * self.cfg.greedy_gain;
            }
        }
        None
    }

    fn appraise(&mut self, _t: &Appraisal) {}

    /// Novelty of the cell arrived at, before this arrival is counted.
    fn target_bonus(&self, t: &Appraisal) -> f64 {
        self.novelty(t.next_state) * self.cfg.intrinsic
    }

    fn modulate(&self, _t: &Appraisal, _td: f64) -> Modulation {
        Modulation {
            lr_factor: Some(1.0 + self.curiosity * self.cfg.lr_gain),
            td_factor: None,
            lr_cap: None,
        }
    }

    fn phasic(&self) -> f64 {
        self.curiosity
    }

    /// Fraction of cells visited this episode.
    fn tonic(&self) -> f64 {
        let seen = self.visits.iter().filter(|&&v| v > 0).count();
        seen as f64 / self.visits.len().max(1) as f64
    }

    fn reset_episode(&mut self) {
        self.visits.iter_mut().for_each(|v| *v = 0);
        self.curiosity = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::Exploration;
    use emorl_core::RngKind;

    fn at(k: u32) -> EmotionalContext {
        EmotionalContext {
            exploration: Some(Exploration {
                steps_since_new: k,
                unique_visited: 1,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn curiosity_follows_visits_and_stagnation() {
        let mut ch = NoveltyChannel::new(NoveltyConfig::default(), 100);
        ch.perceive(0, &at(0));
        assert_eq!(ch.phasic(), 0.5 * 0.5); // first visit: novelty 1/2
        ch.perceive(0, &at(20));
        assert_eq!(ch.phasic(), (1.0 / 3.0) * 0.5); // 20 is not past 20
        ch.perceive(0, &at(30));
        assert_eq!(ch.phasic(), (0.25 + 0.3) * 0.5);
        ch.reset_episode();
        assert_eq!(ch.phasic(), 0.0);
        assert_eq!(ch.tonic(), 0.0);
    }

    #[test]
    fn hooks_act_on_their_branches_only_when_curious_enough() {
        let mut ch = NoveltyChannel::new(NoveltyConfig::default(), 100);
        let rng = RngHandle::new(RngKind::Numpy, 0);
        // Corner cell 0: up and left leave the grid (novelty 0).
        ch.perceive(0, &at(0)); // curiosity 0.25: greedy bonus yes, exploration no
        assert_eq!(ch.explore(0, &rng), None);
        let mut q = [0.0; 4];
        ch.bias(0, &mut q, &rng);
        assert_eq!(q, [0.0, 2.5, 0.0, 2.5]); // novelty 1 · 0.5 · 5 into unseen cells
        ch.perceive(0, &at(60)); // (1/3 + 0.5) · 0.5 > 0.3: weighted exploration
        for _ in 0..20 {
            let a = ch.explore(0, &rng).expect("explores");
            assert!(a == 1 || a == 3, "moved off the grid: {a}");
        }
        // Intrinsic reward: novelty of the arrival cell before it is counted;
        // learning rate up with curiosity.
        let ctx = EmotionalContext::default();
        let t = Appraisal {
            state: 0,
            action: 1,
            value: 0.0,
            reward: 0.0,
            next_state: 10,
            done: false,
            context: &ctx,
        };
        assert_eq!(ch.target_bonus(&t), 0.1);
        let c = ch.phasic();
        assert_eq!(ch.modulate(&t, 1.0).lr_factor, Some(1.0 + c * 0.5));
    }
}
