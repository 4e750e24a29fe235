//! Emotional-ED V3 Exp 17 "Pitch Black" (docs/v3-protocol.md): a dark 10×10
//! grid with a key somewhere and a door in the far corner. The only reward
//! is +10 for reaching the door holding the key; 500 steps end the episode
//! inside the task (a terminal step, as upstream treats it). The agent sees
//! its cell only — not whether it holds the key.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Exploration, Info, RngHandle, Step};

const SIZE: i32 = 10;
const START: Pos = (0, 0);
const DOOR: Pos = (SIZE - 1, SIZE - 1);
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 500;
/// Reward for opening the door with the key.
pub const SUCCESS_REWARD: f64 = 10.0;

#[derive(Clone, Debug)]
pub struct PitchBlack {
    rng: RngHandle,
    pos: Pos,
    key: Pos,
    has_key: bool,
    steps: u32,
    visited: Vec<bool>,
    unique: u32,
    steps_since_new: u32,
}

impl PitchBlack {
    pub fn new(rng: RngHandle) -> Self {
        PitchBlack {
            rng,
            pos: START,
            key: (1, 0),
            has_key: false,
            steps: 0,
            visited: vec![false; (SIZE * SIZE) as usize],
            unique: 0,
            steps_since_new: 0,
        }
    }

    /// Whether the agent holds the key.
    pub fn has_key(&self) -> bool {
        self.has_key
    }

    /// Distinct cells visited this episode, the start included.
    pub fn unique_visited(&self) -> u32 {
        self.unique
    }

    fn make_context(&self, reward: f64) -> EmotionalContext {
        EmotionalContext {
            goal_distance: Some(grid::manhattan(
                self.pos,
                if self.has_key { DOOR } else { self.key },
            )),
            reward,
            exploration: Some(Exploration {
                steps_since_new: self.steps_since_new,
                unique_visited: self.unique,
            }),
            ..Default::default()
        }
    }
}

impl Env for PitchBlack {
    type Obs = usize;
    type Action = usize;

    /// The key's cell is drawn anew: row then column, `randint(0, 10)`
    /// each, again until it is neither the start nor the door.
    fn reset(&mut self, seed: Option<u64>) -> (usize, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.pos = START;
        self.has_key = false;
        self.steps = 0;
        self.visited.iter_mut().for_each(|v| *v = false);
        self.visited[grid::index(START, SIZE)] = true;
        self.unique = 1;
        self.steps_since_new = 0;
        self.key = loop {
            let r = self.rng.randint(SIZE as usize) as i32;
            let c = self.rng.randint(SIZE as usize) as i32;
            if (r, c) != START && (r, c) != DOOR {
                break (r, c);
            }
        };
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let new = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(new, SIZE, SIZE) {
            self.pos = new;
        }
        let cell = grid::index(self.pos, SIZE);
        if self.visited[cell] {
            self.steps_since_new += 1;
        } else {
            self.visited[cell] = true;
            self.unique += 1;
            self.steps_since_new = 0;
        }
        if self.pos == self.key {
            self.has_key = true;
        }
        let success = self.pos == DOOR && self.has_key;
        let reward = if success { SUCCESS_REWARD } else { 0.0 };
        let done = success || self.steps >= MAX_STEPS;
        Step::new(cell, reward, done, self.make_context(reward))
    }

    fn context(&self) -> EmotionalContext {
        self.make_context(0.0)
    }

    fn render(&self) -> String {
        let (key, has) = (self.key, self.has_key);
        grid::draw(SIZE, SIZE, self.pos, |p| match p {
            DOOR => 'D',
            p if p == key && !has => 'k',
            _ => '.',
        })
    }
}

impl DiscreteEnv for PitchBlack {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[DOOR])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn key_opens_the_door_and_500_steps_end_the_episode() {
        let mut env = PitchBlack::new(RngHandle::new(RngKind::Numpy, 0));
        env.reset(None);
        // Walk the first column down and the last row right: the door
        // opens only if the key was on that path.
        let mut last = None;
        for a in std::iter::repeat_n(1, 9).chain(std::iter::repeat_n(3, 9)) {
            last = Some(env.step(&a));
        }
        let last = last.expect("steps");
        let on_path = env.key.1 == 0 || env.key.0 == SIZE - 1;
        assert_eq!(last.terminated, on_path);
        assert_eq!(last.reward, if on_path { SUCCESS_REWARD } else { 0.0 });
        assert_eq!(env.unique_visited(), 19);
        env.reset(None);
        // Bumping the wall: no new cell, so the stagnation count grows.
        let mut s = env.step(&0);
        assert_eq!(s.obs, 0);
        for _ in 1..MAX_STEPS {
            assert!(!s.terminated);
            s = env.step(&0);
        }
        assert!(s.terminated);
        let x = s.context.exploration.expect("exploration");
        assert_eq!((x.steps_since_new, x.unique_visited), (MAX_STEPS, 1));
    }

    #[test]
    fn keys_follow_numpy_draws_and_avoid_start_and_door() {
        let mut env = PitchBlack::new(RngHandle::new(RngKind::Numpy, 0));
        for ep in 0..50u64 {
            env.reset(Some(ep));
            assert!(env.key != START && env.key != DOOR);
        }
        // numpy: seed(0); randint(0, 10) twice -> 5, 0.
        env.reset(Some(0));
        assert_eq!(env.key, (5, 0));
    }
}
