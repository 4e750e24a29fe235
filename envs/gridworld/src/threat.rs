//! Emotional-ED V2 Experiment 12 "fear" grid: a 5×5 world with a passable,
//! harmless threat in the centre (docs/protocols/v2.md §4.2).

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 5;
const START: Pos = (0, 0);
const GOAL: Pos = (4, 4);
const THREAT: Pos = (2, 2);

#[derive(Clone, Debug)]
pub struct ThreatGrid {
    pos: Pos,
    /// Upstream's optional −0.5 penalty within 1.5 of the threat (off in V2).
    threat_penalty: bool,
    blocked: bool,
}

impl Default for ThreatGrid {
    fn default() -> Self {
        Self::new(false)
    }
}

impl ThreatGrid {
    pub fn new(threat_penalty: bool) -> Self {
        ThreatGrid {
            pos: START,
            threat_penalty,
            blocked: false,
        }
    }

    fn make_context(&self) -> EmotionalContext {
        EmotionalContext {
            threat_distance: Some(grid::euclid(self.pos, THREAT)),
            goal_distance: Some(grid::euclid(self.pos, GOAL)),
            was_blocked: self.blocked,
            ..Default::default()
        }
    }
}

impl Env for ThreatGrid {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        self.pos = START;
        self.blocked = false;
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        let d = grid::delta(*action);
        let new = (self.pos.0 + d.0, self.pos.1 + d.1);
        self.blocked = !grid::inside(new, SIZE, SIZE);
        if !self.blocked {
            self.pos = new;
        }
        let done = self.pos == GOAL;
        let mut reward = if done { 1.0 } else { -0.01 };
        let mut context = self.make_context();
        if self.threat_penalty && context.threat_distance.unwrap_or(f64::INFINITY) < 1.5 {
            reward -= 0.5;
        }
        context.reward = reward;
        Step::new(grid::index(self.pos, SIZE), reward, done, context)
    }

    fn context(&self) -> EmotionalContext {
        self.make_context()
    }

    fn render(&self) -> String {
        grid::draw(SIZE, SIZE, self.pos, |p| match p {
            START => 'S',
            GOAL => 'G',
            THREAT => 'X',
            _ => '.',
        })
    }
}

impl DiscreteEnv for ThreatGrid {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[THREAT, GOAL])
    }
}
