//! Upstream Exp 16b `EmotionalDQNAgent` (docs/protocols/v2.md §5.3), reproduced with its quirks:
//! - Q-16b-AUGMISMATCH: acting sees `[s, fear(s)]`, training sees `[s, fear(s')]`
//!   and `[s', fear(s')]` (the stored fear is that of the next state).
//! - Q-16b-STOREDFEAR: loss weights and LR use that stored fear; the weight
//!   `1 + w·F` applies only where the target is below the prediction.
//! - Q-16b-LRPERSIST: Adam's LR is overwritten with `lr·(1 + w·mean F)` every update.
//! - ε is `ε·(1 − w·fear)`; above 0.3 fear, actions are sampled from `softmax(q/(1+fear))`.
//!
//! Fear here is a pure function of the stored context, so recomputing it at
//! update time gives exactly the value upstream stored at push time.

use super::{fear_tensors, BatchFear, FearModule, LossWeighting, StateFear};
use crate::config::CoupledGridConfig;
use crate::error::DqnError;
use crate::replay::Batch;
use emorl_core::{EmotionalContext, RngHandle};
use tch::Device;

#[derive(Debug)]
pub struct CoupledGrid {
    cfg: CoupledGridConfig,
    device: Device,
}

impl CoupledGrid {
    pub fn new(cfg: CoupledGridConfig, device: Device) -> Self {
        CoupledGrid { cfg, device }
    }

    /// `max_fear · (1 − d / safe_distance)` inside `safe_distance`, else 0.
    pub fn fear_at(&self, threat_distance: f64) -> f64 {
        emorl_core::context::distance_fear(
            threat_distance,
            self.cfg.safe_distance,
            self.cfg.max_fear,
        )
    }
}

impl FearModule for CoupledGrid {
    fn name(&self) -> &'static str {
        "fear-coupled-16b"
    }

    fn q_inputs(&self) -> usize {
        1
    }

    fn appraise(
        &mut self,
        _features: &[f32],
        ctx: &EmotionalContext,
    ) -> Result<StateFear, DqnError> {
        let level = self.fear_at(ctx.threat_distance.unwrap_or(f64::INFINITY));
        Ok(StateFear {
            level,
            q_input: Some(level as f32),
        })
    }

    fn exploration_rate(&self, epsilon: f64, fear: &StateFear) -> f64 {
        epsilon * (1.0 - self.cfg.fear_weight * fear.level)
    }

    fn select(&mut self, fear: &StateFear, q: &mut [f32], rng: &RngHandle) -> Option<usize> {
        if fear.level <= self.cfg.softmax_threshold {
            return None;
        }
        // softmax(q / T), T = 1 + fear, sampled by inverse CDF (upstream: torch.multinomial).
        let t = 1.0 + fear.level;
        let m = q.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let w: Vec<f64> = q.iter().map(|&x| ((x as f64 - m) / t).exp()).collect();
        let total: f64 = w.iter().sum();
        let u = rng.random() * total;
        let mut acc = 0.0;
        for (a, wi) in w.iter().enumerate() {
            acc += wi;
            if u < acc {
                return Some(a);
            }
        }
        Some(w.len().saturating_sub(1))
    }

    fn prepare_batch(&mut self, batch: &Batch) -> Result<BatchFear, DqnError> {
        let f: Vec<f32> = batch
            .contexts
            .iter()
            .map(|c| self.fear_at(c.threat_distance) as f32)
            .collect();
        let mean = f.iter().map(|&x| x as f64).sum::<f64>() / f.len().max(1) as f64;
        let (col, flat) = fear_tensors(&f, self.device)?;
        Ok(BatchFear {
            state_input: Some(col.shallow_clone()),
            next_state_input: Some(col),
            loss_weighting: Some(LossWeighting {
                fear: flat,
                weight: self.cfg.fear_weight,
                only_overestimates: true,
            }),
            lr_factor: Some(1.0 + mean * self.cfg.fear_weight),
            mean,
            next_selection: None,
        })
    }
}
