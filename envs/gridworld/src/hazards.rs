//! Emotional-ED V3 Exp 21 "Visual Hazard Transfer" (docs/v3-protocol.md):
//! an 8×8 grid from the top-left corner to the goal (+10, terminal) in the
//! bottom-right, with five red hazard cells that cost 10 each time the agent
//! ends a step on one (the episode goes on). Phase A and phase B place the
//! hazards differently; the question is whether what was learned about red
//! cells in A carries over to B. 100 steps end an episode (inside the task).
//!
//! The hazard map is shown at the start of each episode (the reset's
//! context lists the cells, as upstream hands them to its feature agent);
//! every step's context carries the distance to the nearest hazard.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 8;
const START: Pos = (0, 0);
const GOAL: Pos = (SIZE - 1, SIZE - 1);
/// Phase A's hazards.
pub const PHASE_A: [Pos; 5] = [(2, 3), (3, 3), (4, 4), (5, 2), (3, 5)];
/// Phase B's hazards.
pub const PHASE_B: [Pos; 5] = [(1, 4), (3, 2), (4, 5), (5, 3), (2, 6)];
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 100;
/// Reward of a step that ends on a hazard.
pub const HIT: f64 = -10.0;
const GOAL_REWARD: f64 = 10.0;
const STEP_COST: f64 = -0.01;

#[derive(Clone, Debug)]
pub struct HazardTransfer {
    hazards: [Pos; 5],
    pos: Pos,
    steps: u32,
    hits: u32,
}

impl HazardTransfer {
    /// Phase A's layout.
    pub fn phase_a() -> Self {
        Self::with(PHASE_A)
    }

    /// Phase B's layout.
    pub fn phase_b() -> Self {
        Self::with(PHASE_B)
    }

    fn with(hazards: [Pos; 5]) -> Self {
        HazardTransfer {
            hazards,
            pos: START,
            steps: 0,
            hits: 0,
        }
    }

    /// Steps of this episode that ended on a hazard.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    fn nearest(&self) -> f64 {
        self.hazards
            .iter()
            .map(|&h| grid::manhattan(self.pos, h))
            .fold(f64::INFINITY, f64::min)
    }
}

impl Env for HazardTransfer {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        self.pos = START;
        self.steps = 0;
        self.hits = 0;
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let next = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(next, SIZE, SIZE) {
            self.pos = next;
        }
        let hit = self.hazards.contains(&self.pos);
        if hit {
            self.hits += 1;
        }
        let at_goal = self.pos == GOAL;
        let reward = if at_goal {
            GOAL_REWARD
        } else if hit {
            HIT
        } else {
            STEP_COST
        };
        let distance = self.nearest();
        let context = EmotionalContext {
            threat_distance: Some(distance),
            near_threat: distance <= 2.0,
            harmed: hit,
            goal_distance: Some(grid::manhattan(self.pos, GOAL)),
            reward,
            ..Default::default()
        };
        let done = at_goal || self.steps >= MAX_STEPS;
        Step::new(grid::index(self.pos, SIZE), reward, done, context)
    }

    /// At the start: the hazard map, nothing sensed yet.
    fn context(&self) -> EmotionalContext {
        EmotionalContext {
            hazards: Some(self.hazards.iter().map(|&h| grid::index(h, SIZE)).collect()),
            ..Default::default()
        }
    }

    fn render(&self) -> String {
        let hazards = self.hazards;
        grid::draw(SIZE, SIZE, self.pos, |p| {
            if p == GOAL {
                'G'
            } else if hazards.contains(&p) {
                'x'
            } else {
                '.'
            }
        })
    }
}

impl DiscreteEnv for HazardTransfer {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &self.hazards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazards_cost_without_ending_and_the_goal_ends() {
        let mut env = HazardTransfer::phase_a();
        env.reset(None);
        assert_eq!(env.context().hazards.map(|h| h.len()), Some(5));
        assert_eq!(env.context().threat_distance, None);
        // Right 3, down 2: onto (2, 3), a phase-A hazard.
        let mut s = env.step(&3);
        for a in [3, 3, 1] {
            s = env.step(&a);
        }
        assert_eq!(s.context.threat_distance, Some(1.0));
        s = env.step(&1);
        assert!(s.context.harmed && s.reward == HIT && !s.terminated);
        assert_eq!(env.hits(), 1);
        // Phase B has no hazard there.
        let mut b = HazardTransfer::phase_b();
        b.reset(None);
        for a in [3, 3, 3, 1] {
            b.step(&a);
        }
        assert!(!b.step(&1).context.harmed);
    }
}
