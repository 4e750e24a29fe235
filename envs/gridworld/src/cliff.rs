//! Emotional-ED Experiment 18 slippery cliff (upstream `SlipperyCliffEnv`,
//! docs/protocols/v2.md §6.1): 4×12 grid, start bottom-left, goal **top**-right,
//! cliff along the bottom row between them; with probability `slip_prob` the
//! intended action is replaced by a uniformly random one (possibly the same,
//! quirk Q-18-SLIPSAME).
//!
//! Action order is upstream's for this task: `0 up, 1 right, 2 down, 3 left`.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, RngHandle, Step};

pub const ROWS: i32 = 4;
pub const COLS: i32 = 12;
pub const START: Pos = (3, 0);
pub const GOAL: Pos = (0, 11);
/// Action order of this task (differs from the other grids).
pub const CLIFF_MOVES: [Pos; 4] = [(-1, 0), (0, 1), (1, 0), (0, -1)];
pub const CLIFF_MOVE_NAMES: [&str; 4] = ["up", "right", "down", "left"];

pub const FALL_REWARD: f64 = -100.0;
pub const GOAL_REWARD: f64 = 10.0;

fn is_cliff(p: Pos) -> bool {
    p.0 == ROWS - 1 && (1..COLS - 1).contains(&p.1)
}

/// Manhattan distance to the nearest cliff cell `(3, 1..=10)`.
pub fn cliff_distance(p: Pos) -> f64 {
    let dr = (ROWS - 1 - p.0).abs();
    let dc = if p.1 < 1 {
        1 - p.1
    } else if p.1 > COLS - 2 {
        p.1 - (COLS - 2)
    } else {
        0
    };
    (dr + dc) as f64
}

/// The Exp-18 cliff. Slips draw from the shared generator, so an experiment
/// that shares one stream between environment and agent reproduces upstream's
/// single Python `random` stream.
#[derive(Debug)]
pub struct SlipperyCliffEnv {
    rng: RngHandle,
    slip_prob: f64,
    time_penalty: f64,
    pos: Pos,
    blocked: bool,
    fell: bool,
    last_reward: f64,
}

impl SlipperyCliffEnv {
    /// Upstream defaults: `slip_prob = 0.2`, `time_penalty = -1.0`.
    pub fn new(rng: RngHandle) -> Self {
        Self::with_params(rng, 0.2, -1.0)
    }

    pub fn with_params(rng: RngHandle, slip_prob: f64, time_penalty: f64) -> Self {
        SlipperyCliffEnv {
            rng,
            slip_prob,
            time_penalty,
            pos: START,
            blocked: false,
            fell: false,
            last_reward: 0.0,
        }
    }

    pub fn position(&self) -> Pos {
        self.pos
    }

    fn make_context(&self) -> EmotionalContext {
        let d = cliff_distance(self.pos);
        EmotionalContext {
            threat_distance: Some(d),
            goal_distance: Some(grid::manhattan(self.pos, GOAL)),
            was_blocked: self.blocked,
            near_threat: d <= 1.0,
            harmed: self.fell,
            reward: self.last_reward,
            ..Default::default()
        }
    }
}

impl Env for SlipperyCliffEnv {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, seed: Option<u64>) -> (usize, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.pos = START;
        self.blocked = false;
        self.fell = false;
        self.last_reward = 0.0;
        (grid::index(self.pos, COLS), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        let mut action = *action;
        // Upstream draws the slip before moving, on every step.
        if self.rng.random() < self.slip_prob {
            action = self.rng.randint(4);
        }
        let d = CLIFF_MOVES.get(action).copied().unwrap_or((0, 0));
        let new = (
            (self.pos.0 + d.0).clamp(0, ROWS - 1),
            (self.pos.1 + d.1).clamp(0, COLS - 1),
        );
        self.blocked = new == self.pos;
        self.pos = new;
        self.fell = is_cliff(new);
        let (reward, done) = if self.fell {
            // A fall sends the agent back to the start and ends the episode.
            self.pos = START;
            (FALL_REWARD, true)
        } else if new == GOAL {
            (GOAL_REWARD, true)
        } else {
            (self.time_penalty, false)
        };
        self.last_reward = reward;
        let mut info = Info::new();
        info.insert("effective_action".into(), action as f64);
        Step {
            obs: grid::index(self.pos, COLS),
            reward,
            terminated: done,
            truncated: false,
            context: self.make_context(),
            info,
        }
    }

    fn context(&self) -> EmotionalContext {
        self.make_context()
    }

    fn render(&self) -> String {
        grid::draw(ROWS, COLS, self.pos, |p| {
            if p == START {
                'S'
            } else if p == GOAL {
                'G'
            } else if is_cliff(p) {
                'C'
            } else {
                '.'
            }
        })
    }
}

impl DiscreteEnv for SlipperyCliffEnv {
    fn n_states(&self) -> usize {
        (ROWS * COLS) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    /// One-hot state vector of length 48 (upstream's DQN input).
    fn features(&self, state: usize) -> Vec<f32> {
        let mut f = vec![0.0; (ROWS * COLS) as usize];
        if let Some(x) = f.get_mut(state) {
            *x = 1.0;
        }
        f
    }
}
