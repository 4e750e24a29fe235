//! Fear modules: the one optional component a [`DqnAgent`](crate::DqnAgent)
//! composes with. A module plugs into named places of the learner —
//! appraisal of the state acted in, exploration, greedy selection, extra
//! Q-network inputs for a sampled batch, loss weighting, learning-rate
//! modulation, and training of its own network — and leaves the rest alone.
//!
//! - [`CoupledGrid`]: upstream Exp 16b's fear, quirks included.
//! - [`CoupledCliff`]: upstream Exp 18's fear, quirks included.
//! - [`DecoupledFear`]: a fear network on its own target, one mechanism, no shared gradients.

mod cliff;
mod coupled;
mod decoupled;

pub use cliff::CoupledCliff;
pub use coupled::CoupledGrid;
pub use decoupled::{danger_label, DecoupledFear};

use crate::config::FearConfig;
use crate::error::DqnError;
use crate::flat_adam::FlatAdam;
use crate::replay::Batch;
use emorl_core::{EmotionalContext, RngHandle};
use tch::{nn, Device, Tensor};

/// What a module makes of the state about to be acted in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateFear {
    /// Fear intensity (logged as `emotion/fear`).
    pub level: f64,
    /// Extra Q-network input for this state, when the module augments states.
    pub q_input: Option<f32>,
}

/// How samples of a batch are weighted in the TD loss: `1 + weight · fear_i`,
/// on every sample or only where the target is below the prediction.
#[derive(Debug)]
pub struct LossWeighting {
    /// `[B]`
    pub fear: Tensor,
    pub weight: f64,
    pub only_overestimates: bool,
}

/// A module's contribution to one DQN update.
#[derive(Debug, Default)]
pub struct BatchFear {
    /// Extra input column `[B, 1]` for the sampled states.
    pub state_input: Option<Tensor>,
    /// Extra input column `[B, 1]` for the sampled next states.
    pub next_state_input: Option<Tensor>,
    pub loss_weighting: Option<LossWeighting>,
    /// Factor on the base learning rate for this (and, upstream, later) steps.
    pub lr_factor: Option<f64>,
    /// Mean fear over the batch, for logging.
    pub mean: f64,
    /// The bias acting applies to the next states' actions: the TD target
    /// bootstraps from the action the agent would take there (biased
    /// choice, unbiased value), not from the unbiased maximum.
    pub next_selection: Option<SelectionBias>,
}

/// Fear's bounded selection bias (the decoupled module's `selection-bias`
/// use): each action's value lowered by `span · danger`, with `span` the
/// row's Q range (at least `range_floor`) times `scale`, so that a certainly
/// dangerous action drops to about the worst one.
#[derive(Debug)]
pub struct SelectionBias {
    /// Per-action danger `[B, n_actions]` in [0, 1].
    pub danger: Tensor,
    pub scale: f64,
    pub range_floor: f64,
}

impl SelectionBias {
    /// The bias's span for one row of Q-values: its range (at least
    /// `range_floor`) times `scale`, as [`apply`](Self::apply) computes it.
    fn host_span(q: &[f32], scale: f32, range_floor: f32) -> f32 {
        let hi = q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lo = q.iter().copied().fold(f32::INFINITY, f32::min);
        (hi - lo).max(range_floor) * scale
    }

    /// [`apply`](Self::apply) to one row of Q-values, in place, on the host.
    pub fn apply_host(q: &mut [f32], danger: &[f32], scale: f32, range_floor: f32) {
        let span = Self::host_span(q, scale, range_floor);
        for (v, &d) in q.iter_mut().zip(danger) {
            *v -= span * d;
        }
    }

    /// The action a biased agent picks in one state: the first maximum of
    /// the biased row (as `argmax` of [`apply`](Self::apply)), on the host.
    pub fn biased_choice(q: &[f32], danger: &[f32], scale: f32, range_floor: f32) -> usize {
        let span = Self::host_span(q, scale, range_floor);
        let mut best = 0;
        let mut best_v = f32::NEG_INFINITY;
        for (j, (&v, &d)) in q.iter().zip(danger).enumerate() {
            let biased = v - span * d;
            if biased > best_v {
                (best, best_v) = (j, biased);
            }
        }
        best
    }

    /// `q` (`[B, n_actions]`) with the bias applied.
    pub fn apply(&self, q: &Tensor) -> Result<Tensor, DqnError> {
        let hi = q.f_amax([1i64].as_slice(), true)?;
        let lo = q.f_amin([1i64].as_slice(), true)?;
        let span = hi
            .f_sub(&lo)?
            .f_clamp_min(self.range_floor)?
            .f_mul_scalar(self.scale)?;
        Ok(q.f_sub(&span.f_mul(&self.danger)?)?)
    }
}

/// One fear module.
pub trait FearModule: std::fmt::Debug {
    fn name(&self) -> &'static str;

    /// Extra Q-network inputs the module supplies (0 or 1).
    fn q_inputs(&self) -> usize;

    /// Start of an episode.
    fn reset_episode(&mut self) {}

    /// Appraises the state about to be acted in; `context` is the one the
    /// environment returned with that state.
    fn appraise(
        &mut self,
        features: &[f32],
        context: &EmotionalContext,
    ) -> Result<StateFear, DqnError>;

    /// ε actually used in this state.
    fn exploration_rate(&self, epsilon: f64, _fear: &StateFear) -> f64 {
        epsilon
    }

    /// Once exploring was decided: `Some(a)` overrides the uniform random action.
    fn explore(&mut self, _fear: &StateFear, _rng: &RngHandle) -> Option<usize> {
        None
    }

    /// Greedy branch: may bias `q` in place, or choose outright.
    fn select(&mut self, _fear: &StateFear, _q: &mut [f32], _rng: &RngHandle) -> Option<usize> {
        None
    }

    /// Inputs, weights and LR factor for one sampled batch.
    fn prepare_batch(&mut self, batch: &Batch) -> Result<BatchFear, DqnError>;

    /// The module's own training loss on `batch`, `None` when it has no network.
    fn fear_loss(&self, _batch: &Batch) -> Result<Option<Tensor>, DqnError> {
        Ok(None)
    }

    /// One optimisation step of the module's own network; returns its loss.
    fn train(&mut self, _batch: &Batch) -> Result<Option<f64>, DqnError> {
        Ok(None)
    }

    /// The module's network parameters, for checkpoints and tests.
    fn var_store(&self) -> Option<&nn::VarStore> {
        None
    }

    fn var_store_mut(&mut self) -> Option<&mut nn::VarStore> {
        None
    }

    /// The optimiser of the module's own network, for checkpoints.
    fn optimizer(&self) -> Option<&FlatAdam> {
        None
    }

    fn optimizer_mut(&mut self) -> Option<&mut FlatAdam> {
        None
    }

    /// State carried between steps besides weights and optimiser (tonic
    /// levels, flags), for checkpoints.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores what [`state`](Self::state) returned.
    fn restore(&mut self, _state: &serde_json::Value) -> Result<(), DqnError> {
        Ok(())
    }
}

/// Builds the module described by `cfg`; `host`: a module with a network
/// of its own computes it on the host (the learner's [`crate::Backend`]).
pub fn build(
    cfg: &FearConfig,
    n_features: usize,
    n_actions: usize,
    device: Device,
    host: bool,
    rng: &RngHandle,
) -> Result<Box<dyn FearModule>, DqnError> {
    Ok(match cfg {
        FearConfig::CoupledGrid(c) => Box::new(CoupledGrid::new(c.clone(), device)),
        FearConfig::CoupledCliff(c) => Box::new(CoupledCliff::new(c.clone(), n_actions, device)),
        FearConfig::Decoupled(c) => Box::new(DecoupledFear::new(
            c.clone(),
            n_features,
            n_actions,
            device,
            host,
            rng,
        )?),
    })
}

/// `[B]` fear values as a `[B, 1]` input column and a `[B]` tensor on `device`.
pub(crate) fn fear_tensors(values: &[f32], device: Device) -> Result<(Tensor, Tensor), DqnError> {
    let t = Tensor::f_from_slice(values)?.f_to_device(device)?;
    let col = t.f_view([values.len() as i64, 1])?;
    Ok((col, t))
}
