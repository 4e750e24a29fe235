//! Emotional-ED V3 Exp 20 "Bottleneck" (docs/v3-protocol.md): a 6×6 grid cut
//! by a wall in column 3 whose only gap, at row 2, is a jammed door. The door
//! opens after 4 pushes in a row (moving right from (2, 2)); walking away
//! right after a push resets the count. Every step costs 0.01; reaching the
//! far corner pays +10 and ends the episode; 200 steps end it too (inside
//! the task). The push count is not part of the state.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Obstacle, Step};

const SIZE: i32 = 6;
const START: Pos = (0, 0);
const GOAL: Pos = (5, 5);
const DOOR: Pos = (2, 3);
const WALLS: [Pos; 5] = [(0, 3), (1, 3), (3, 3), (4, 3), (5, 3)];
/// Consecutive pushes that open the door.
pub const PUSHES_NEEDED: u32 = 4;
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 200;
/// Reward for reaching the goal (replaces the step cost).
pub const GOAL_REWARD: f64 = 10.0;
const STEP_COST: f64 = -0.01;

#[derive(Clone, Debug)]
pub struct Bottleneck {
    pos: Pos,
    steps: u32,
    open: bool,
    pushes: u32,
    pushed_last: bool,
    blocked: bool,
    consecutive_blocks: u32,
}

impl Default for Bottleneck {
    fn default() -> Self {
        Bottleneck {
            pos: START,
            steps: 0,
            open: false,
            pushes: 0,
            pushed_last: false,
            blocked: false,
            consecutive_blocks: 0,
        }
    }
}

impl Bottleneck {
    /// Whether the door is open (it stays open for the episode).
    pub fn door_open(&self) -> bool {
        self.open
    }

    /// Pushes counted so far.
    pub fn pushes(&self) -> u32 {
        self.pushes
    }

    fn make_context(&self, reward: f64) -> EmotionalContext {
        EmotionalContext {
            goal_distance: Some(grid::manhattan(self.pos, GOAL)),
            was_blocked: self.blocked,
            consecutive_blocks: self.consecutive_blocks,
            reward,
            obstacle: Some(Obstacle {
                pushed: self.pushed_last,
                pushes: self.pushes,
                needed: PUSHES_NEEDED,
            }),
            ..Default::default()
        }
    }
}

impl Env for Bottleneck {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        *self = Bottleneck::default();
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let target = (self.pos.0 + d.0, self.pos.1 + d.1);
        let mut pushed = false;
        if target == DOOR && !self.open {
            pushed = true;
            self.pushes += 1;
            if self.pushes >= PUSHES_NEEDED {
                // The last push opens the door and walks through it.
                self.open = true;
                self.pos = DOOR;
                self.blocked = false;
            } else {
                self.blocked = true;
            }
        } else if WALLS.contains(&target) || !grid::inside(target, SIZE, SIZE) {
            self.blocked = true;
        } else {
            self.pos = target;
            self.blocked = false;
            // Walking away right after a push lets the door settle back.
            if self.pushed_last && !self.open {
                self.pushes = 0;
            }
        }
        self.pushed_last = pushed;
        self.consecutive_blocks = if self.blocked {
            self.consecutive_blocks + 1
        } else {
            0
        };
        let at_goal = self.pos == GOAL;
        let reward = if at_goal { GOAL_REWARD } else { STEP_COST };
        let done = at_goal || self.steps >= MAX_STEPS;
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
        let open = self.open;
        grid::draw(SIZE, SIZE, self.pos, |p| match p {
            GOAL => 'G',
            DOOR if open => '/',
            DOOR => 'D',
            p if WALLS.contains(&p) => '#',
            _ => '.',
        })
    }
}

impl DiscreteEnv for Bottleneck {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[DOOR, GOAL])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Down twice, right twice: in front of the door at (2, 2).
    fn to_door(env: &mut Bottleneck) {
        env.reset(None);
        for a in [1, 1, 3, 3] {
            env.step(&a);
        }
        assert_eq!(env.pos, (2, 2));
    }

    #[test]
    fn four_pushes_in_a_row_open_the_door_and_walking_away_resets_them() {
        let mut env = Bottleneck::default();
        to_door(&mut env);
        for k in 1..=3 {
            let s = env.step(&3);
            assert!(s.context.was_blocked);
            assert_eq!(
                s.context.obstacle.map(|o| (o.pushed, o.pushes)),
                Some((true, k))
            );
        }
        // A move away after a push resets the count; a wall bump would not.
        env.step(&0);
        assert_eq!(env.pushes(), 0);
        env.step(&1);
        for _ in 0..3 {
            env.step(&3);
        }
        let s = env.step(&3);
        assert!(env.door_open() && !s.context.was_blocked);
        assert_eq!(env.pos, DOOR);
        // Through the door and down to the goal: +10, terminal.
        let mut last = None;
        for a in [3, 3, 1, 1, 1] {
            last = Some(env.step(&a));
        }
        let last = last.expect("steps");
        assert!(last.terminated);
        assert_eq!(last.reward, GOAL_REWARD);
    }

    #[test]
    fn walls_block_and_200_steps_end_the_episode() {
        let mut env = Bottleneck::default();
        env.reset(None);
        let mut s = env.step(&0);
        assert!(s.context.was_blocked && s.reward == STEP_COST);
        for _ in 1..MAX_STEPS {
            assert!(!s.terminated);
            s = env.step(&0);
        }
        assert!(s.terminated);
        assert_eq!(s.context.consecutive_blocks, MAX_STEPS);
    }
}
