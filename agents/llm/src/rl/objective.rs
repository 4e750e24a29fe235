//! The objectives of an RL update plug in here, the way DQN's fear hooks
//! plug into its learner: the trainer collects a [`Rollout`], then for
//! every micro-batch asks each objective for its (already weighted) loss,
//! sums them, runs one backward pass, and after the last micro-batch takes
//! one step of the one optimiser. An objective touches only what it
//! changes; adding one is a new file and a line in
//! [`crate::rl::Trainer::new`].

use tch::Tensor;

use crate::agent::LlmAgent;
use crate::error::Result;
use crate::rl::config::UpdateStats;
use crate::rl::rollout::{Chunk, Rollout};

/// One term of the update's loss.
pub trait Objective: std::fmt::Debug {
    /// Its name in [`UpdateStats::objectives`] and TensorBoard (`losses/<name>`).
    fn name(&self) -> &'static str;

    /// Called once per update, before the first micro-batch.
    fn begin(&mut self, _rollout: &Rollout) -> Result<()> {
        Ok(())
    }

    /// Its loss on `chunk`, weighted and scaled by the chunk's share of the
    /// update (so that the chunks' sum is the update's loss), with
    /// gradients into the module parameters; `None` when it has nothing to
    /// say about this chunk.
    fn loss(
        &mut self,
        agent: &mut LlmAgent,
        rollout: &Rollout,
        chunk: &Chunk,
    ) -> Result<Option<Tensor>>;

    /// Adds what it measured during the update to `stats`.
    fn report(&mut self, _stats: &mut UpdateStats) {}
}

/// `log_softmax(logits · t_inv)` over the vocabulary; at `t_inv` 1 (the
/// default temperature) without the scaled copy, which for an update's
/// `[rows, steps, vocab]` logits is a pass over hundreds of megabytes
/// forward and another backward.
pub(crate) fn tempered_log_softmax(logits: &Tensor, t_inv: f64) -> Result<Tensor> {
    let kind = tch::Kind::Float;
    Ok(match t_inv == 1.0 {
        true => logits.f_log_softmax(-1, kind)?,
        false => logits.f_mul_scalar(t_inv)?.f_log_softmax(-1, kind)?,
    })
}
