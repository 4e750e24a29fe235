//! Emotional-ED V3 Exp 19 "Changing Seasons" (docs/v3-protocol.md): a 5×5
//! grid with red berries in the top corners and blue ones in the bottom
//! corners. In season A red pays +1 and blue −1; every 100 episodes the
//! seasons swap. Each berry can be eaten once an episode; every step costs
//! 0.01; an episode ends when all four are eaten or after 50 steps (inside
//! the task). The world is deterministic; the season is not in the state.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};

const SIZE: i32 = 5;
const START: Pos = (2, 2);
const RED: [Pos; 2] = [(0, 0), (0, SIZE - 1)];
const BLUE: [Pos; 2] = [(SIZE - 1, 0), (SIZE - 1, SIZE - 1)];
/// Episodes per season.
pub const SEASON_LENGTH: u32 = 100;
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 50;
const STEP_COST: f64 = -0.01;

#[derive(Clone, Debug)]
pub struct ChangingSeasons {
    pos: Pos,
    steps: u32,
    /// Season A: red is good.
    red_good: bool,
    episodes: u32,
    episodes_in_season: u32,
    eaten: [bool; 4],
}

impl Default for ChangingSeasons {
    fn default() -> Self {
        ChangingSeasons {
            pos: START,
            steps: 0,
            red_good: true,
            episodes: 0,
            episodes_in_season: 0,
            eaten: [false; 4],
        }
    }
}

impl ChangingSeasons {
    /// Whether the current episode is the first of a new season (not the
    /// first season).
    pub fn season_changed(&self) -> bool {
        self.episodes_in_season == 1 && self.episodes > 1
    }

    /// Whether red berries pay this season.
    pub fn red_good(&self) -> bool {
        self.red_good
    }

    fn context(&self, reward: f64) -> EmotionalContext {
        EmotionalContext {
            reward,
            ..Default::default()
        }
    }
}

impl Env for ChangingSeasons {
    type Obs = usize;
    type Action = usize;

    /// Starts the next episode; the season turns every
    /// [`SEASON_LENGTH`] episodes.
    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        if self.episodes > 0 && self.episodes.is_multiple_of(SEASON_LENGTH) {
            self.red_good = !self.red_good;
            self.episodes_in_season = 0;
        }
        self.episodes += 1;
        self.episodes_in_season += 1;
        self.pos = START;
        self.steps = 0;
        self.eaten = [false; 4];
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let target = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(target, SIZE, SIZE) {
            self.pos = target;
        }
        let mut reward = STEP_COST;
        for (i, berry) in RED.iter().chain(BLUE.iter()).enumerate() {
            if self.pos == *berry && !self.eaten[i] {
                self.eaten[i] = true;
                let good = (i < RED.len()) == self.red_good;
                reward += if good { 1.0 } else { -1.0 };
            }
        }
        let done = self.eaten.iter().all(|&e| e) || self.steps >= MAX_STEPS;
        Step::new(
            grid::index(self.pos, SIZE),
            reward,
            done,
            self.context(reward),
        )
    }

    fn context(&self) -> EmotionalContext {
        self.context(0.0)
    }

    fn render(&self) -> String {
        let eaten = self.eaten;
        let good = self.red_good;
        grid::draw(SIZE, SIZE, self.pos, |p| {
            match RED.iter().chain(BLUE.iter()).position(|b| *b == p) {
                Some(i) if !eaten[i] => {
                    if (i < RED.len()) == good {
                        '+'
                    } else {
                        '-'
                    }
                }
                _ => '.',
            }
        })
    }
}

impl DiscreteEnv for ChangingSeasons {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[RED[0], RED[1], BLUE[0], BLUE[1]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berries_pay_by_season_once_each_and_seasons_turn_every_100_episodes() {
        let mut env = ChangingSeasons::default();
        env.reset(None);
        assert!(env.red_good() && !env.season_changed());
        // Up twice, left twice: the top-left red berry, once.
        let rewards: Vec<f64> = [0, 0, 2, 2, 3, 2]
            .iter()
            .map(|a| env.step(a).reward)
            .collect();
        assert_eq!(
            rewards,
            vec![
                STEP_COST,
                STEP_COST,
                STEP_COST,
                STEP_COST + 1.0,
                STEP_COST,
                STEP_COST
            ]
        );
        for _ in 1..SEASON_LENGTH {
            env.reset(None);
            assert!(env.red_good());
        }
        env.reset(None);
        assert!(!env.red_good() && env.season_changed());
        for a in [0, 0, 2, 2] {
            env.step(&a);
        }
        assert!(env.eaten[0]);
        env.reset(None);
        assert!(!env.season_changed());
        // 50 steps end an episode.
        let mut s = env.step(&0);
        for _ in 1..MAX_STEPS {
            assert!(!s.terminated);
            s = env.step(&0);
        }
        assert!(s.terminated);
    }
}
