//! Emotional-ED V2 "regret" task: two doors with counterfactual feedback
//! (docs/protocols/v2.md §4.4). Both doors pay 0.5 + N(0, 1), drawn for all trials at reset
//! from the shared generator (upstream's `multivariate_normal` draws).

use emorl_core::{Counterfactual, DiscreteEnv, EmotionalContext, Env, Info, RngHandle, Step};

pub const TRIALS: usize = 100;

#[derive(Debug)]
pub struct TwoDoor {
    rng: RngHandle,
    rewards: Vec<(f64, f64)>,
    trial: usize,
    last: EmotionalContext,
}

impl TwoDoor {
    pub fn new(rng: RngHandle) -> Self {
        TwoDoor {
            rng,
            rewards: Vec::new(),
            trial: 0,
            last: EmotionalContext::default(),
        }
    }
}

impl Env for TwoDoor {
    type Obs = usize;
    type Action = usize;

    fn reset(&mut self, seed: Option<u64>) -> (usize, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.trial = 0;
        self.rewards = (0..TRIALS)
            .map(|_| {
                let a = self.rng.standard_normal();
                let b = self.rng.standard_normal();
                (0.5 + a, 0.5 + b)
            })
            .collect();
        self.last = EmotionalContext::default();
        (0, Info::new())
    }

    fn step(&mut self, action: &usize) -> Step<usize> {
        // Stepping past the last trial (or before reset) repeats a neutral outcome.
        let (a, b) = self.rewards.get(self.trial).copied().unwrap_or((0.0, 0.0));
        let door = usize::from(*action == 1);
        let (obtained, foregone) = if door == 0 { (a, b) } else { (b, a) };
        self.trial += 1;
        let done = self.trial >= TRIALS;
        self.last = EmotionalContext {
            reward: obtained,
            counterfactual: Some(Counterfactual {
                obtained,
                foregone,
                foregone_action: Some(1 - door),
            }),
            ..Default::default()
        };
        Step::new(0, obtained, done, self.last.clone())
    }

    fn context(&self) -> EmotionalContext {
        self.last.clone()
    }

    fn render(&self) -> String {
        format!("trial {}/{}: [A] [B]\n", self.trial, TRIALS)
    }
}

impl DiscreteEnv for TwoDoor {
    fn n_states(&self) -> usize {
        1
    }
    fn n_actions(&self) -> usize {
        2
    }
    fn features(&self, _state: usize) -> Vec<f32> {
        vec![self.trial as f32 / TRIALS as f32]
    }
}
