//! Emotional-ED V2 "transfer" grids (docs/protocols/v2.md §4.6): train with the threat in the
//! centre, test with a novel threat at (1,3). Cells within 1.5 of the threat
//! cost 0.5.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 5;
const START: Pos = (0, 0);
const GOAL: Pos = (4, 4);
const MAX_STEPS: u32 = 100;

pub const TRAINING_THREAT: Pos = (2, 2);
pub const NOVEL_THREAT: Pos = (1, 3);

#[derive(Clone, Debug)]
pub struct TransferGrid {
    threat: Pos,
    pos: Pos,
    step_count: u32,
}

impl TransferGrid {
    pub fn training() -> Self {
        Self::with_threat(TRAINING_THREAT)
    }
    pub fn novel() -> Self {
        Self::with_threat(NOVEL_THREAT)
    }
    pub fn with_threat(threat: Pos) -> Self {
        TransferGrid {
            threat,
            pos: START,
            step_count: 0,
        }
    }
    fn make_context(&self, reward: f64) -> EmotionalContext {
        let threat_distance = grid::euclid(self.pos, self.threat);
        EmotionalContext {
            threat_distance: Some(threat_distance),
            goal_distance: Some(grid::euclid(self.pos, GOAL)),
            near_threat: threat_distance < 1.5,
            reward,
            ..Default::default()
        }
    }
}

impl Env for TransferGrid {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        self.pos = START;
        self.step_count = 0;
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.step_count += 1;
        let d = grid::delta(*action);
        let new = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(new, SIZE, SIZE) {
            self.pos = new;
        }
        let threat_distance = grid::euclid(self.pos, self.threat);
        let mut reward = -0.01;
        if threat_distance < 1.5 {
            reward -= 0.5;
        }
        let at_goal = self.pos == GOAL;
        let done = at_goal || self.step_count >= MAX_STEPS;
        if at_goal {
            reward += 1.0;
        }
        Step::new(
            grid::index(self.pos, SIZE),
            reward,
            done,
            self.make_context(reward),
        )
    }

    fn context(&self) -> EmotionalContext {
        self.make_context(0.0)
    }

    fn render(&self) -> String {
        let threat = self.threat;
        grid::draw(SIZE, SIZE, self.pos, |p| {
            if p == START {
                'S'
            } else if p == GOAL {
                'G'
            } else if p == threat {
                'X'
            } else if grid::euclid(p, threat) < 1.5 {
                'z'
            } else {
                '.'
            }
        })
    }
}

impl DiscreteEnv for TransferGrid {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[self.threat])
    }
}
