//! The RL objective: RLOO (REINFORCE with a leave-one-out baseline over the
//! `k` responses of a prompt), a per-token KL penalty against the frozen
//! model, optional PPO ratio clipping and an entropy bonus.

use tch::{Kind, Tensor};

use crate::agent::LlmAgent;
use crate::error::Result;
use crate::modules::TurnEmotion;
use crate::rl::config::{RlConfig, UpdateStats};
use crate::rl::objective::{tempered_log_softmax, Objective};
use crate::rl::rollout::{emotion_of, pack, response_targets, Chunk, Packed, Rollout};

/// Policy gradient with KL and entropy terms.
#[derive(Debug)]
pub struct PolicyGradient {
    temperature: f64,
    kl_coef: f64,
    clip: Option<f64>,
    entropy_coef: f64,
    through_appraisal: bool,
    /// Token log-probabilities of the first epoch, per chunk (the PPO ratio's
    /// denominator in later epochs).
    old_logp: Vec<Tensor>,
    sums: Sums,
}

#[derive(Debug, Default)]
struct Sums {
    loss: f64,
    policy_loss: f64,
    kl: f64,
    entropy: f64,
    tokens: f64,
    epoch: usize,
}

impl PolicyGradient {
    pub fn new(cfg: &RlConfig) -> Self {
        PolicyGradient {
            temperature: cfg.temperature,
            kl_coef: cfg.kl_coef,
            clip: cfg.clip,
            entropy_coef: cfg.entropy_coef,
            through_appraisal: cfg.rl_through_appraisal,
            old_logp: Vec::new(),
            sums: Sums::default(),
        }
    }

    /// The emotion as the modules receive it: detached unless RL may train
    /// the appraisal.
    fn input(&self, emotion: TurnEmotion) -> Result<TurnEmotion> {
        if self.through_appraisal {
            Ok(emotion)
        } else {
            emotion.detach()
        }
    }

    /// The policy's and the frozen model's log-probabilities `[b, lr, V]`
    /// at `chunk`'s response positions, with the targets and response mask.
    fn log_probs(
        &self,
        agent: &mut LlmAgent,
        rollout: &Rollout,
        chunk: &Chunk,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let k = rollout.k as i64;
        let states = &rollout.states[chunk.prompts.clone()];
        let gens = &rollout.gens[chunk.rows.clone()];
        let t_inv = 1.0 / self.temperature;
        let device = agent.model.device();
        if let Some(raw) = rollout.raw_of(chunk)? {
            // The modules act on logits alone: the frozen model's raw logits
            // were recorded while sampling, so the policy's logits are the
            // modules' processing of them and the reference is `raw` itself
            // (no model forward or backward here).
            let (targets, resp, _) = response_targets(gens, device)?;
            let ref_logp = {
                let _g = tch::no_grad_guard();
                tempered_log_softmax(&raw, t_inv)?
            };
            let view = rollout.prompt_view(chunk)?;
            let emotion = self
                .input(emotion_of(
                    agent,
                    states,
                    &view.tokens,
                    &view.mask,
                    view.hidden.as_ref(),
                )?)?
                .repeat_rows(k)?;
            let logp = tempered_log_softmax(&agent.modules.process_logits(&emotion, &raw)?, t_inv)?;
            return Ok((logp, ref_logp, targets, resp));
        }
        let pad = i64::from(agent.model.tokenizer().pad_id());
        let p0 = chunk.prompts.start;
        let Packed {
            tokens,
            mask,
            resp,
            lp,
            lr,
        } = pack(|j| &rollout.prompts[p0 + j / rollout.k], gens, pad, device)?;
        let targets = tokens.f_narrow(1, lp, lr)?.f_unsqueeze(-1)?;
        // The frozen model's distribution (and the ERM's read-out), no grad.
        let (ref_logp, hidden) = {
            let _g = tch::no_grad_guard();
            let mut hooks = emorl_lm::Hooks::new();
            if let Some(r) = agent.modules.erm.as_ref().map(|e| e.readout()) {
                hooks = hooks.with_readout(r);
            }
            let out = agent.model.forward(&tokens, Some(&mask), Some(&hooks))?;
            let l = out.logits.f_narrow(1, lp - 1, lr)?;
            (
                tempered_log_softmax(&l, t_inv)?,
                out.hidden.into_iter().next().map(|(_, h)| h),
            )
        };
        // One row per prompt (its k rows share the prompt part); the ERM
        // reads the prompt positions only.
        let first =
            Tensor::f_from_slice(&(0..states.len()).map(|r| r as i64 * k).collect::<Vec<_>>())?
                .f_to_device(device)?;
        let prompt_tokens = tokens.f_narrow(1, 0, lp)?.f_index_select(0, &first)?;
        let prompt_mask = mask.f_narrow(1, 0, lp)?.f_index_select(0, &first)?;
        let hidden = match hidden {
            Some(h) => Some(
                h.f_narrow(1, 0, lp)?
                    .f_to_kind(Kind::Float)?
                    .f_index_select(0, &first)?,
            ),
            None => None,
        };
        let emotion = self
            .input(emotion_of(
                agent,
                states,
                &prompt_tokens,
                &prompt_mask,
                hidden.as_ref(),
            )?)?
            .repeat_rows(k)?;
        let hooks = agent.modules.hooks(&emotion, lp as usize)?;
        let out = agent.model.forward(&tokens, Some(&mask), Some(&hooks))?;
        let logp = tempered_log_softmax(&out.logits.f_narrow(1, lp - 1, lr)?, t_inv)?;
        Ok((logp, ref_logp, targets, resp))
    }
}

impl Objective for PolicyGradient {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn begin(&mut self, _rollout: &Rollout) -> Result<()> {
        self.old_logp.clear();
        self.sums = Sums::default();
        Ok(())
    }

    fn loss(
        &mut self,
        agent: &mut LlmAgent,
        rollout: &Rollout,
        chunk: &Chunk,
    ) -> Result<Option<Tensor>> {
        let (logp, ref_logp, targets, resp) = self.log_probs(agent, rollout, chunk)?;
        let device = logp.device();
        let adv = &rollout.advantages[chunk.rows.clone()];
        let total = rollout.rows() as f64;
        let token_logp = logp.f_gather(-1, &targets, false)?.f_squeeze_dim(-1)?; // [b, lr]
        let probs = logp.f_exp()?;
        // Σ p·log p once: KL = Σ p·log p − Σ p·log p_ref, entropy = −Σ p·log p.
        let sum_v = |t: &Tensor| t.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        let p_logp = sum_v(&probs.f_mul(&logp)?)?;
        let kl = p_logp.f_sub(&sum_v(&probs.f_mul(&ref_logp)?)?)?;
        let entropy = p_logp.f_neg()?;
        let adv_t = Tensor::f_from_slice(&adv.iter().map(|&a| a as f32).collect::<Vec<_>>())?
            .f_to_device(device)?
            .f_unsqueeze(1)?;
        let old = if chunk.epoch == 0 {
            let o = token_logp.f_detach()?;
            self.old_logp.push(o.shallow_clone());
            o
        } else {
            match self.old_logp.get(chunk.index) {
                Some(o) => o.shallow_clone(),
                None => token_logp.f_detach()?,
            }
        };
        let ratio = token_logp.f_sub(&old)?.f_exp()?;
        let mut pg = ratio.f_mul(&adv_t)?;
        if let Some(eps) = self.clip {
            let clipped = ratio.f_clamp(1.0 - eps, 1.0 + eps)?.f_mul(&adv_t)?;
            pg = pg.f_minimum(&clipped)?;
        }
        let per_token = pg
            .f_neg()?
            .f_add(&kl.f_mul_scalar(self.kl_coef)?)?
            .f_sub(&entropy.f_mul_scalar(self.entropy_coef)?)?;
        let n_tok = resp
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let seq_mean = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_mul(&resp)?
                .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
                .f_div(&n_tok)?)
        };
        let loss = seq_mean(&per_token)?
            .f_sum(Kind::Float)?
            .f_div_scalar(total)?;
        let masked_sum = |t: &Tensor| -> Result<f64> {
            Ok(t.f_detach()?
                .f_mul(&resp)?
                .f_sum(Kind::Float)?
                .f_double_value(&[])?)
        };
        if chunk.epoch != self.sums.epoch {
            // Report the last epoch only.
            self.sums = Sums {
                epoch: chunk.epoch,
                ..Sums::default()
            };
        }
        self.sums.loss += loss.f_double_value(&[])?;
        self.sums.policy_loss += seq_mean(&pg.f_neg()?.f_detach()?)?
            .f_sum(Kind::Float)?
            .f_double_value(&[])?
            / total;
        self.sums.kl += masked_sum(&kl)?;
        self.sums.entropy += masked_sum(&entropy)?;
        self.sums.tokens += resp.f_sum(Kind::Float)?.f_double_value(&[])?;
        Ok(Some(loss))
    }

    fn report(&mut self, stats: &mut UpdateStats) {
        let tokens = self.sums.tokens.max(1.0);
        stats.policy_loss = self.sums.policy_loss;
        stats.kl = self.sums.kl / tokens;
        stats.entropy = self.sums.entropy / tokens;
        stats.objectives.push(("policy".into(), self.sums.loss));
    }
}
