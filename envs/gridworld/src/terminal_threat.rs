//! Emotional-ED Experiment 16b grid (upstream `GridWorldGPU(size=5)`, docs/protocols/v2.md §5.1):
//! a 5×5 world with clamped moves, a **terminal** threat in the centre and a
//! goal in the far corner, described to a DQN by four numeric features.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 5;
const START: Pos = (0, 0);
const GOAL: Pos = (4, 4);
const THREAT: Pos = (SIZE / 2, SIZE / 2);

/// Reward of entering the goal (ends the episode).
pub const GOAL_REWARD: f64 = 1.0;
/// Reward of entering the threat cell (ends the episode).
pub const THREAT_REWARD: f64 = -1.0;
/// Reward of every other move, bumps included.
pub const STEP_REWARD: f64 = -0.01;

/// The Exp-16b grid. Actions `0 up, 1 down, 2 left, 3 right`; no randomness.
#[derive(Clone, Debug)]
pub struct TerminalThreatGrid {
    pos: Pos,
    blocked: bool,
    last_reward: f64,
}

impl Default for TerminalThreatGrid {
    fn default() -> Self {
        TerminalThreatGrid {
            pos: START,
            blocked: false,
            last_reward: 0.0,
        }
    }
}

impl TerminalThreatGrid {
    pub fn new() -> Self {
        Self::default()
    }

    /// Current position `(row, col)`.
    pub fn position(&self) -> Pos {
        self.pos
    }

    fn make_context(&self) -> EmotionalContext {
        let threat_distance = grid::manhattan(self.pos, THREAT);
        EmotionalContext {
            threat_distance: Some(threat_distance),
            goal_distance: Some(grid::manhattan(self.pos, GOAL)),
            was_blocked: self.blocked,
            near_threat: threat_distance <= 1.0,
            // The threat is terminal and costly here, so standing on it is harm.
            harmed: self.pos == THREAT,
            reward: self.last_reward,
            ..Default::default()
        }
    }
}

/// `[row/5, col/5, manhattan(threat)/10, manhattan(goal)/10]` (upstream `get_state_features`).
pub fn features_of(p: Pos) -> [f32; 4] {
    [
        p.0 as f32 / SIZE as f32,
        p.1 as f32 / SIZE as f32,
        grid::manhattan(p, THREAT) as f32 / 10.0,
        grid::manhattan(p, GOAL) as f32 / 10.0,
    ]
}

impl Env for TerminalThreatGrid {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        *self = Self::default();
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        let d = grid::delta(*action);
        let new = (
            (self.pos.0 + d.0).clamp(0, SIZE - 1),
            (self.pos.1 + d.1).clamp(0, SIZE - 1),
        );
        self.blocked = new == self.pos;
        self.pos = new;
        let (reward, done) = if self.pos == GOAL {
            (GOAL_REWARD, true)
        } else if self.pos == THREAT {
            (THREAT_REWARD, true)
        } else {
            (STEP_REWARD, false)
        };
        self.last_reward = reward;
        Step::new(
            grid::index(self.pos, SIZE),
            reward,
            done,
            self.make_context(),
        )
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

impl DiscreteEnv for TerminalThreatGrid {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        let s = state as i32;
        features_of((s / SIZE, s % SIZE)).to_vec()
    }
}
