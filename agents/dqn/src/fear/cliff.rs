//! Upstream Exp 18 `FearEDAgent` (docs/protocols/v2.md §6.3), reproduced with its quirks:
//! - Q-18-MUTATE: computing fear adds pain to and decays the tonic level —
//!   once per action and once per replayed sample, in sample order.
//! - Q-18-STALECTX: replayed fear comes from the stored post-step context plus
//!   the *current* tonic level, and augments both `s` and `s'`.
//! - Q-18-DOUBLE: fear is an input and a loss weight `1 + w·F` on all samples.
//! - Q-18-FORCEDUP / Q-18-QBONUS: fear pushes exploration and the greedy
//!   choice toward the fixed safe action.
//! - Q-18-INITCTX: the first appraisal of an episode treats the start as not
//!   near the cliff (upstream's hard-coded initial context).

use super::{fear_tensors, BatchFear, FearModule, LossWeighting, StateFear};
use crate::config::CoupledCliffConfig;
use crate::error::DqnError;
use crate::replay::{Batch, StoredContext};
use emorl_core::{EmotionalContext, RngHandle};
use tch::Device;

#[derive(Debug)]
pub struct CoupledCliff {
    cfg: CoupledCliffConfig,
    n_actions: usize,
    device: Device,
    /// Tonic fear level `L`.
    tonic: f64,
    first_appraisal: bool,
}

impl CoupledCliff {
    pub fn new(cfg: CoupledCliffConfig, n_actions: usize, device: Device) -> Self {
        CoupledCliff {
            cfg,
            n_actions,
            device,
            tonic: 0.0,
            first_appraisal: true,
        }
    }

    pub fn tonic(&self) -> f64 {
        self.tonic
    }

    /// Upstream `_compute_fear`: phasic from proximity, pain raises the tonic
    /// level, fear is the larger of the two, then the tonic level decays.
    fn compute_fear(&mut self, c: &StoredContext) -> f64 {
        let phasic = if c.near_threat {
            self.cfg.max_fear
        } else if c.threat_distance <= 2.0 {
            self.cfg.mid_fear
        } else {
            0.0
        };
        if c.reward < self.cfg.pain_threshold {
            self.tonic = (self.tonic + self.cfg.pain_increment).min(self.cfg.max_fear);
        }
        let total = self.tonic.max(phasic);
        self.tonic *= self.cfg.tonic_decay;
        total
    }
}

impl FearModule for CoupledCliff {
    fn name(&self) -> &'static str {
        "fear-coupled-cliff"
    }

    fn q_inputs(&self) -> usize {
        1
    }

    fn reset_episode(&mut self) {
        self.tonic = 0.0;
        self.first_appraisal = true;
    }

    fn appraise(
        &mut self,
        _features: &[f32],
        ctx: &EmotionalContext,
    ) -> Result<StateFear, DqnError> {
        let mut c = StoredContext::from(ctx);
        if std::mem::take(&mut self.first_appraisal) {
            // Upstream's initial context: near_cliff False, reward 0.
            c.near_threat = false;
            c.reward = 0.0;
        }
        let level = self.compute_fear(&c);
        Ok(StateFear {
            level,
            q_input: Some(level as f32),
        })
    }

    fn explore(&mut self, fear: &StateFear, rng: &RngHandle) -> Option<usize> {
        // The second draw happens only above the threshold, as upstream.
        if fear.level > self.cfg.explore_threshold && rng.random() < fear.level {
            return Some(self.cfg.safe_action.min(self.n_actions.saturating_sub(1)));
        }
        None
    }

    fn select(&mut self, fear: &StateFear, q: &mut [f32], _rng: &RngHandle) -> Option<usize> {
        if fear.level > self.cfg.bonus_threshold {
            if let Some(x) = q.get_mut(self.cfg.safe_action) {
                *x += (fear.level * self.cfg.fear_weight * self.cfg.bonus_scale) as f32;
            }
        }
        None
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "tonic": self.tonic, "first_appraisal": self.first_appraisal })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), DqnError> {
        let tonic = state.get("tonic").and_then(serde_json::Value::as_f64);
        let first = state
            .get("first_appraisal")
            .and_then(serde_json::Value::as_bool);
        let (Some(tonic), Some(first)) = (tonic, first) else {
            return Err(DqnError::InvalidConfig(format!(
                "checkpointed cliff fear state {state} lacks tonic or first_appraisal"
            )));
        };
        self.tonic = tonic;
        self.first_appraisal = first;
        Ok(())
    }

    fn prepare_batch(&mut self, batch: &Batch) -> Result<BatchFear, DqnError> {
        let f: Vec<f32> = batch
            .contexts
            .iter()
            .map(|c| self.compute_fear(c) as f32)
            .collect();
        let mean = f.iter().map(|&x| x as f64).sum::<f64>() / f.len().max(1) as f64;
        let (col, flat) = fear_tensors(&f, self.device)?;
        Ok(BatchFear {
            state_input: Some(col.shallow_clone()),
            next_state_input: Some(col),
            loss_weighting: Some(LossWeighting {
                fear: flat,
                weight: self.cfg.fear_weight,
                only_overestimates: false,
            }),
            lr_factor: None,
            mean,
            next_selection: None,
        })
    }
}
