//! Emotional-ED V2 "anger" grid: a temporary wall stands on the direct route
//! for the first nine steps of each episode (docs/protocols/v2.md §4.3).

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 5;
const START: Pos = (0, 0);
const GOAL: Pos = (4, 4);
const WALLS: [Pos; 3] = [(2, 2), (2, 3), (3, 2)];
const WALL_DURATION: u32 = 10;

#[derive(Clone, Debug)]
pub struct BlockedPathGrid {
    pos: Pos,
    steps: u32,
    consecutive_blocks: u32,
    walls_active: bool,
    blocked: bool,
}

impl Default for BlockedPathGrid {
    fn default() -> Self {
        BlockedPathGrid {
            pos: START,
            steps: 0,
            consecutive_blocks: 0,
            walls_active: true,
            blocked: false,
        }
    }
}

impl BlockedPathGrid {
    fn make_context(&self) -> EmotionalContext {
        EmotionalContext {
            threat_distance: None,
            goal_distance: Some(grid::euclid(self.pos, GOAL)),
            was_blocked: self.blocked,
            consecutive_blocks: self.consecutive_blocks,
            ..Default::default()
        }
    }
}

impl Env for BlockedPathGrid {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        *self = BlockedPathGrid::default();
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        // The wall disappears before the move of step 10.
        if WALL_DURATION > 0 && self.steps >= WALL_DURATION {
            self.walls_active = false;
        }
        let d = grid::delta(*action);
        let new = (self.pos.0 + d.0, self.pos.1 + d.1);
        self.blocked =
            !grid::inside(new, SIZE, SIZE) || (self.walls_active && WALLS.contains(&new));
        if !self.blocked {
            self.pos = new;
        }
        self.consecutive_blocks = if self.blocked {
            self.consecutive_blocks + 1
        } else {
            0
        };
        let done = self.pos == GOAL;
        let reward = if done { 1.0 } else { -0.01 };
        let mut context = self.make_context();
        context.reward = reward;
        Step::new(grid::index(self.pos, SIZE), reward, done, context)
    }

    fn context(&self) -> EmotionalContext {
        self.make_context()
    }

    fn render(&self) -> String {
        let walls = self.walls_active;
        grid::draw(SIZE, SIZE, self.pos, |p| match p {
            START => 'S',
            GOAL => 'G',
            p if walls && WALLS.contains(&p) => '#',
            _ => '.',
        })
    }
}

impl DiscreteEnv for BlockedPathGrid {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[GOAL])
    }
}
