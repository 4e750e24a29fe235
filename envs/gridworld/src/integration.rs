//! Emotional-ED V2 "integration" grid (docs/protocols/v2.md §4.5): a safe goal, a risky goal
//! behind a harmful threat cell, and a blocked goal behind a breakable wall —
//! fear, anger and regret pull in different directions.

use crate::grid::{self, Pos};
use emorl_core::{Counterfactual, DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 7;
const START: Pos = (3, 0);
const THREAT: Pos = (3, 4);
const SAFE: Pos = (0, 6);
const RISKY: Pos = (3, 6);
const BLOCKED: Pos = (6, 6);
const WALL: [Pos; 5] = [(4, 1), (4, 2), (4, 3), (4, 4), (4, 5)];
const MAX_STEPS: u32 = 100;
const HITS_TO_BREAK: u32 = 4;

/// (name, position, value, foregone value reported when collected).
const GOALS: [(&str, Pos, f64, f64); 3] = [
    ("safe", SAFE, 0.3, 1.0),
    ("risky", RISKY, 1.0, 0.3),
    ("blocked", BLOCKED, 0.6, 1.0),
];

#[derive(Clone, Debug)]
pub struct IntegrationGrid {
    pos: Pos,
    collected: [bool; 3],
    step_count: u32,
    wall_hits: u32,
    consecutive_wall_hits: u32,
    wall_broken: bool,
    /// What the last step showed besides the position (for `context`):
    /// whether the move was blocked, its reward and the goal it collected.
    blocked: bool,
    reward: f64,
    goal: Option<usize>,
}

impl Default for IntegrationGrid {
    fn default() -> Self {
        IntegrationGrid {
            pos: START,
            collected: [false; 3],
            step_count: 0,
            wall_hits: 0,
            consecutive_wall_hits: 0,
            wall_broken: false,
            blocked: false,
            reward: 0.0,
            goal: None,
        }
    }
}

impl IntegrationGrid {
    fn min_goal_distance(&self) -> f64 {
        GOALS
            .iter()
            .map(|g| grid::euclid(self.pos, g.1))
            .fold(f64::INFINITY, f64::min)
    }

    /// Names of the goals collected this episode, in collection order.
    pub fn collected_names(&self) -> Vec<&'static str> {
        GOALS
            .iter()
            .zip(self.collected)
            .filter(|(_, c)| *c)
            .map(|(g, _)| g.0)
            .collect()
    }
}

impl Env for IntegrationGrid {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        *self = IntegrationGrid::default();
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.step_count += 1;
        let d = grid::delta(*action);
        let mut new = (self.pos.0 + d.0, self.pos.1 + d.1);
        let mut was_blocked = false;
        if !grid::inside(new, SIZE, SIZE) {
            was_blocked = true;
            new = self.pos;
        }
        if !self.wall_broken && WALL.contains(&new) {
            was_blocked = true;
            self.wall_hits += 1;
            self.consecutive_wall_hits += 1;
            if self.wall_hits >= HITS_TO_BREAK {
                // The fourth hit breaks the whole wall and the agent moves in.
                self.wall_broken = true;
                was_blocked = false;
            } else {
                new = self.pos;
            }
        } else {
            self.consecutive_wall_hits = 0;
        }
        self.pos = new;

        let mut reward = -0.01;
        if self.pos == THREAT {
            reward -= 0.2;
        }
        self.goal = None;
        let mut info = Info::new();
        for (i, (name, at, value, _)) in GOALS.iter().enumerate() {
            if self.pos == *at && !self.collected[i] {
                reward += value;
                self.collected[i] = true;
                self.goal = Some(i);
                info.insert(format!("goal_{name}"), 1.0);
            }
        }
        let done = self.collected.iter().any(|&c| c) || self.step_count >= MAX_STEPS;
        for (i, (name, ..)) in GOALS.iter().enumerate() {
            if self.collected[i] {
                info.insert(format!("collected_{name}"), 1.0);
            }
        }
        self.blocked = was_blocked;
        self.reward = reward;
        Step {
            obs: grid::index(self.pos, SIZE),
            reward,
            terminated: done,
            truncated: false,
            context: self.context(),
            info,
        }
    }

    fn context(&self) -> EmotionalContext {
        let threat_distance = grid::euclid(self.pos, THREAT);
        EmotionalContext {
            threat_distance: Some(threat_distance),
            goal_distance: Some(self.min_goal_distance()),
            was_blocked: self.blocked,
            // Zero unless the last move hit the wall.
            consecutive_blocks: self.consecutive_wall_hits,
            near_threat: threat_distance < 1.5,
            reward: self.reward,
            counterfactual: self.goal.map(|i| {
                let (_, _, obtained, foregone) = GOALS[i];
                Counterfactual {
                    obtained,
                    foregone,
                    foregone_action: None,
                }
            }),
            ..Default::default()
        }
    }

    fn render(&self) -> String {
        let broken = self.wall_broken;
        grid::draw(SIZE, SIZE, self.pos, |p| match p {
            START => 'S',
            THREAT => 'X',
            SAFE => 's',
            RISKY => 'r',
            BLOCKED => 'b',
            p if !broken && WALL.contains(&p) => '#',
            _ => '.',
        })
    }
}

impl DiscreteEnv for IntegrationGrid {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[THREAT])
    }
}
