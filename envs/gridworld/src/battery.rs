//! Emotional-ED V3 Exp 23 "Battery Run" (docs/v3-protocol.md): a 12×12 grid
//! where the agent must visit five waypoints in order (+10 each, +5 more for
//! the last, which ends the episode) on a battery of 100 that every step
//! drains by one and any of four chargers (one per quadrant) refills. An
//! empty battery costs 50 and ends the episode; so do 500 steps (inside the
//! task). The layout is drawn anew at every reset; the agent's state is its
//! cell only. The context carries the battery level, whether the nearest
//! charger is in reach (with a margin of 5), and at the start of an episode
//! the chargers — in the order upstream's agent iterates them (a Python
//! set's), which decides ties between equally near chargers.

use crate::grid::{self, Pos};
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Reserve, RngHandle, Step};

const SIZE: i32 = 12;
const START: Pos = (0, 0);
const WAYPOINTS: usize = 5;
/// Full battery.
pub const CAPACITY: i32 = 100;
/// Steps after which an episode ends (terminal, not a truncation).
pub const MAX_STEPS: u32 = 500;
/// Reward when the battery runs out (replaces the step's other rewards).
pub const EMPTY: f64 = -50.0;
const STEP_COST: f64 = -0.01;
/// Each charger lies in one quadrant: rows `r0..r1`, columns `c0..c1`.
const QUADRANTS: [(i32, i32, i32, i32); 4] =
    [(0, 6, 0, 6), (0, 6, 6, 12), (6, 12, 0, 6), (6, 12, 6, 12)];

/// The order in which CPython iterates a fresh set of (up to 5) tuples of
/// two small non-negative ints inserted in `items`' order: the tuple hash
/// (xxHash-style, 64-bit) placed in an 8-slot table by CPython's
/// perturbation probing, read slot by slot.
pub fn python_set_order(items: &[Pos]) -> Vec<Pos> {
    const P1: u64 = 11_400_714_785_074_694_791;
    const P2: u64 = 14_029_467_366_897_019_727;
    const P5: u64 = 2_870_177_450_012_600_261;
    let hash = |(x, y): Pos| -> u64 {
        let mut acc = P5;
        for v in [x as u64, y as u64] {
            acc = acc.wrapping_add(v.wrapping_mul(P2));
            acc = acc.rotate_left(31);
            acc = acc.wrapping_mul(P1);
        }
        acc = acc.wrapping_add(2 ^ (P5 ^ 3_527_539));
        if acc == u64::MAX {
            1_546_275_796
        } else {
            acc
        }
    };
    let mut table: [Option<Pos>; 8] = [None; 8];
    for &item in items.iter().take(5) {
        let h = hash(item);
        let mut i = (h & 7) as usize;
        let mut perturb = h;
        while table[i].is_some() {
            perturb >>= 5;
            i = ((i as u64)
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb)
                & 7) as usize;
        }
        table[i] = Some(item);
    }
    table.into_iter().flatten().collect()
}

#[derive(Clone, Debug)]
pub struct BatteryRun {
    rng: RngHandle,
    pos: Pos,
    battery: i32,
    steps: u32,
    waypoints: Vec<Pos>,
    next: usize,
    /// In Python set order (see [`python_set_order`]).
    chargers: Vec<Pos>,
}

impl BatteryRun {
    pub fn new(rng: RngHandle) -> Self {
        BatteryRun {
            rng,
            pos: START,
            battery: CAPACITY,
            steps: 0,
            waypoints: Vec::new(),
            next: 0,
            chargers: Vec::new(),
        }
    }

    /// Waypoints reached this episode.
    pub fn reached(&self) -> usize {
        self.next
    }

    /// Battery left.
    pub fn battery(&self) -> i32 {
        self.battery
    }

    fn draw(&mut self, rows: (i32, i32), cols: (i32, i32), taken: &[Pos]) -> Pos {
        loop {
            let r = rows.0 + self.rng.randint((rows.1 - rows.0) as usize) as i32;
            let c = cols.0 + self.rng.randint((cols.1 - cols.0) as usize) as i32;
            if !taken.contains(&(r, c)) {
                return (r, c);
            }
        }
    }

    fn reserve(&self, with_stations: bool) -> Reserve {
        let nearest = self
            .chargers
            .iter()
            .map(|&c| grid::manhattan(self.pos, c) as i32)
            .min()
            .unwrap_or(0);
        Reserve {
            level: self.battery as f64 / CAPACITY as f64,
            can_reach_station: self.battery >= nearest + 5,
            stations: with_stations.then(|| {
                self.chargers
                    .iter()
                    .map(|&c| grid::index(c, SIZE))
                    .collect()
            }),
        }
    }
}

impl Env for BatteryRun {
    type Obs = usize;
    type Action = usize;

    /// A new layout: the waypoints (rows and columns `randint(2, 12)`),
    /// then one charger per quadrant, each drawn again while its cell is
    /// taken.
    fn reset(&mut self, seed: Option<u64>) -> (usize, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.pos = START;
        self.battery = CAPACITY;
        self.steps = 0;
        self.next = 0;
        let mut taken = vec![START];
        self.waypoints.clear();
        for _ in 0..WAYPOINTS {
            let w = self.draw((2, SIZE), (2, SIZE), &taken);
            self.waypoints.push(w);
            taken.push(w);
        }
        let mut chargers = Vec::with_capacity(QUADRANTS.len());
        for (r0, r1, c0, c1) in QUADRANTS {
            let c = self.draw((r0, r1), (c0, c1), &taken);
            chargers.push(c);
            taken.push(c);
        }
        self.chargers = python_set_order(&chargers);
        (grid::index(self.pos, SIZE), Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        self.steps += 1;
        let d = grid::delta(*action);
        let next = (self.pos.0 + d.0, self.pos.1 + d.1);
        if grid::inside(next, SIZE, SIZE) {
            self.pos = next;
        }
        self.battery -= 1;
        if self.chargers.contains(&self.pos) {
            self.battery = CAPACITY;
        }
        let mut reward = STEP_COST;
        let mut done = false;
        if self.next < WAYPOINTS && self.pos == self.waypoints[self.next] {
            reward += 10.0;
            self.next += 1;
            if self.next == WAYPOINTS {
                reward += 5.0;
                done = true;
            }
        }
        if self.battery <= 0 {
            reward = EMPTY;
            done = true;
        }
        done |= self.steps >= MAX_STEPS;
        let context = EmotionalContext {
            reward,
            harmed: self.battery <= 0,
            reserve: Some(self.reserve(false)),
            ..Default::default()
        };
        Step::new(grid::index(self.pos, SIZE), reward, done, context)
    }

    /// At the start: full battery and the chargers.
    fn context(&self) -> EmotionalContext {
        EmotionalContext {
            reserve: Some(self.reserve(true)),
            ..Default::default()
        }
    }

    fn render(&self) -> String {
        let (chargers, waypoints, next) =
            (self.chargers.clone(), self.waypoints.clone(), self.next);
        grid::draw(SIZE, SIZE, self.pos, |p| {
            if chargers.contains(&p) {
                '+'
            } else if let Some(i) = waypoints.iter().position(|&w| w == p) {
                if i >= next {
                    char::from(b'1' + i as u8)
                } else {
                    '.'
                }
            } else {
                '.'
            }
        })
    }
}

impl DiscreteEnv for BatteryRun {
    fn n_states(&self) -> usize {
        (SIZE * SIZE) as usize
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        grid::cell_features(state, SIZE, &self.chargers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn set_order_matches_cpython() {
        // CPython 3.11: `list` of a set built by adding these in order.
        let cases: [(&[Pos], &[Pos]); 3] = [
            (
                &[(1, 2), (3, 4), (5, 6), (7, 8)],
                &[(1, 2), (7, 8), (3, 4), (5, 6)],
            ),
            (&[(0, 0), (4, 9), (9, 4)], &[(4, 9), (9, 4), (0, 0)]),
            (
                &[(3, 1), (2, 9), (8, 2), (10, 7)],
                &[(3, 1), (2, 9), (10, 7), (8, 2)],
            ),
        ];
        for (inserted, iterated) in cases {
            assert_eq!(python_set_order(inserted), iterated.to_vec());
        }
    }

    #[test]
    fn the_battery_drains_refills_and_runs_out() {
        let mut env = BatteryRun::new(RngHandle::new(RngKind::Numpy, 0));
        env.reset(None);
        assert_eq!(env.chargers.len(), 4);
        let start = env.context().reserve.expect("reserve");
        assert_eq!(start.level, 1.0);
        assert!(start.can_reach_station && start.stations.map(|s| s.len()) == Some(4));
        // Bumping the top wall drains the battery to the end.
        let mut s = env.step(&0);
        for _ in 1..CAPACITY {
            assert!(!s.terminated);
            s = env.step(&0);
        }
        assert!(s.terminated && s.reward == EMPTY && env.battery() == 0);
    }
}
