//! Seed 001's phase 3 inside RL: the emotional reward model's appraisal
//! of each prompt is pulled towards the emotional targets of the contexts
//! its sampled responses led to (their mean over the prompt's `k`
//! responses). The ERM learns what its situation turns into under its own
//! policy, online, while RL learns what to do with that appraisal; `emorl
//! chat` runs the same step after every user reply
//! ([`crate::LlmAgent::erm_feedback_step`]).

use tch::{Kind, Tensor};

use crate::agent::LlmAgent;
use crate::error::Result;
use crate::modules::erm::{erm_targets, N_ERM};
use crate::rl::config::UpdateStats;
use crate::rl::objective::Objective;
use crate::rl::rollout::{emotion_of, Chunk, Rollout};

/// The ERM feedback objective (only for agents with an ERM).
#[derive(Debug)]
pub struct ErmFeedback {
    coef: f64,
    loss: f64,
}

impl ErmFeedback {
    /// `None` when `coef` is 0 or the agent has no ERM.
    pub fn new(agent: &LlmAgent, coef: f64) -> Option<Self> {
        (coef > 0.0 && agent.modules.erm.is_some()).then_some(ErmFeedback { coef, loss: 0.0 })
    }
}

impl Objective for ErmFeedback {
    fn name(&self) -> &'static str {
        "feedback"
    }

    fn begin(&mut self, _rollout: &Rollout) -> Result<()> {
        self.loss = 0.0;
        Ok(())
    }

    fn loss(
        &mut self,
        agent: &mut LlmAgent,
        rollout: &Rollout,
        chunk: &Chunk,
    ) -> Result<Option<Tensor>> {
        if chunk.epoch > 0 || agent.modules.erm.is_none() {
            return Ok(None);
        }
        let k = rollout.k;
        let mut targets = Vec::with_capacity(chunk.prompts.len() * N_ERM);
        for p in chunk.prompts.clone() {
            let mut mean = [0f32; N_ERM];
            for c in &rollout.next_contexts[p * k..(p + 1) * k] {
                for (m, t) in mean.iter_mut().zip(erm_targets(c)) {
                    *m += t / k as f32;
                }
            }
            targets.extend(mean);
        }
        let device = agent.model.device();
        let targets = Tensor::f_from_slice(&targets)?
            .f_view([chunk.prompts.len() as i64, N_ERM as i64])?
            .f_to_device(device)?;
        let view = rollout.prompt_view(chunk)?;
        let states = &rollout.states[chunk.prompts.clone()];
        // The encoder's state is the ERM's input, not what this objective
        // trains: the encoder learns from its supervision only.
        let state = {
            let _g = tch::no_grad_guard();
            emotion_of(
                agent,
                states,
                &view.tokens,
                &view.mask,
                view.hidden.as_ref(),
            )?
            .state
        };
        let Some(erm) = &agent.modules.erm else {
            return Ok(None);
        };
        let hidden = match &view.hidden {
            Some(h) => h.shallow_clone(),
            None => erm.read_hidden(&mut agent.model, &view.tokens, &view.mask)?,
        };
        let pooled = erm.pool(&hidden, &view.mask)?;
        let appraisal = erm
            .appraise(&pooled, &state.conditioning()?, None)?
            .emotions;
        let share = chunk.prompts.len() as f64 / rollout.states.len() as f64;
        let loss = erm
            .loss_to(&appraisal, &targets)?
            .f_mul_scalar(self.coef * share)?;
        self.loss += loss
            .f_detach()?
            .f_to_kind(Kind::Double)?
            .f_double_value(&[])?;
        Ok(Some(loss))
    }

    fn report(&mut self, stats: &mut UpdateStats) {
        stats.objectives.push(("feedback".into(), self.loss));
    }
}
