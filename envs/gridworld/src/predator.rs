//! Emotional-ED V3 Exp 22 "Predator–Prey" (docs/v3-protocol.md): a 10×10
//! grid with five food pellets (+1 each, replaced when eaten) and a
//! predator that starts in the far corner and, after every move of the
//! agent, chases it (80%: one step along the larger gap) or wanders (20%).
//! Being caught costs 50 and ends the episode; 200 steps end it too (inside
//! the task). The agent's state is its cell only; the context carries the
//! predator's cell and distance.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, RngHandle, Step};

const SIZE: i32 = 10;
const START: Pos = (0, 0);
const PREDATOR_START: Pos = (SIZE - 1, SIZE - 1);
const FOOD: usize = 5;
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 200;
/// Probability that the predator chases rather than wanders.
pub const CHASE: f64 = 0.8;
/// Reward when caught (replaces the step's other rewards).
pub const CAUGHT: f64 = -50.0;
const STEP_COST: f64 = -0.01;

#[derive(Clone, Debug)]
pub struct PredatorPrey {
    rng: RngHandle,
    pos: Pos,
    predator: Pos,
    food: Vec<Pos>,
    steps: u32,
    distance: i32,
    approaching: bool,
    caught: bool,
    eaten: u32,
}

impl PredatorPrey {
    pub fn new(rng: RngHandle) -> Self {
        PredatorPrey {
            rng,
            pos: START,
            predator: PREDATOR_START,
            food: Vec::with_capacity(FOOD),
            steps: 0,
            distance: 0,
            approaching: false,
            caught: false,
            eaten: 0,
        }
    }

    /// Pellets eaten this episode.
    pub fn eaten(&self) -> u32 {
        self.eaten
    }

    /// Whether the predator caught the agent.
    pub fn caught(&self) -> bool {
        self.caught
    }

    /// A new pellet on a free cell: row then column, `randint(0, 10)` each,
    /// again while the cell holds the agent, the predator or food.
    fn spawn(&mut self) {
        loop {
            let cell = (
                self.rng.randint(SIZE as usize) as i32,
                self.rng.randint(SIZE as usize) as i32,
            );
            if cell != self.pos && cell != self.predator && !self.food.contains(&cell) {
                self.food.push(cell);
                return;
            }
        }
    }

    fn move_predator(&mut self) {
        if self.rng.random() < CHASE {
            let dr = self.pos.0 - self.predator.0;
            let dc = self.pos.1 - self.predator.1;
            if dr.abs() >= dc.abs() {
                self.predator.0 += dr.signum();
            } else {
                self.predator.1 += dc.signum();
            }
        } else {
            let d = grid::delta(self.rng.randint(4));
            let next = (self.predator.0 + d.0, self.predator.1 + d.1);
            if grid::inside(next, SIZE, SIZE) {
                self.predator = next;
            }
        }
    }

    fn make_context(&self, reward: f64) -> EmotionalContext {
        EmotionalContext {
            threat_distance: Some(self.distance as f64),
            threat_state: Some(grid::index(self.predator, SIZE)),
            threat_approaching: self.approaching,
            near_threat: self.distance <= 1,
            harmed: self.caught,
            reward,
            ..Default::default()
        }
    }
}

impl Env for PredatorPrey {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, seed: Option<u64>) -> (usize, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.pos = START;
        self.predator = PREDATOR_START;
        self.food.clear();
        for _ in 0..FOOD {
            self.spawn();
        }
        self.steps = 0;
        self.distance = grid::manhattan(self.pos, self.predator) as i32;
        self.approaching = false;
        self.caught = false;
        self.eaten = 0;
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let next = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(next, SIZE, SIZE) {
            self.pos = next;
        }
        let mut reward = STEP_COST;
        if let Some(i) = self.food.iter().position(|&f| f == self.pos) {
            reward += 1.0;
            self.food.remove(i);
            self.eaten += 1;
            // Placed before the predator moves, around its current cell.
            self.spawn();
        }
        self.move_predator();
        let distance = grid::manhattan(self.pos, self.predator) as i32;
        let mut done = self.steps >= MAX_STEPS;
        if distance == 0 {
            reward = CAUGHT;
            self.caught = true;
            done = true;
        }
        self.approaching = distance < self.distance;
        self.distance = distance;
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
        let (predator, food) = (self.predator, self.food.clone());
        grid::draw(SIZE, SIZE, self.pos, |p| {
            if p == predator {
                'P'
            } else if food.contains(&p) {
                'f'
            } else {
                '.'
            }
        })
    }
}

impl DiscreteEnv for PredatorPrey {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &[self.predator])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn food_pays_and_respawns_and_the_predator_closes_in() {
        let mut env = PredatorPrey::new(RngHandle::new(RngKind::Numpy, 3));
        env.reset(None);
        assert_eq!(env.food.len(), FOOD);
        let c = env.context();
        assert_eq!(c.threat_distance, Some(18.0));
        assert!(!c.threat_approaching);
        // Standing still in the corner: the predator arrives, the catch
        // ends the episode with -50 (or the step limit does).
        let mut s = env.step(&0);
        while !s.terminated {
            assert_eq!(env.food.len(), FOOD);
            s = env.step(&0);
        }
        assert!(env.caught() && s.reward == CAUGHT && s.context.harmed);
        assert!(env.steps < MAX_STEPS);
    }
}
