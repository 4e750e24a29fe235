//! The expression objective (see [`RlConfig::expression_coef`]): every
//! sampled sequence is also scored under a forced emotional state, and the
//! policy's probability mass on that emotion's expression words (the
//! expression half of its lexicon; the held-out half is the metric's) is
//! pushed up towards a target, with a KL term that keeps the forced
//! distribution near the frozen model's and an optional unlikelihood term on
//! words the response already wrote.

use tch::{Kind, Tensor};

use crate::agent::LlmAgent;
use crate::error::Result;
use crate::eval::{forced_emotions, EmotionCondition};
use crate::lexicon::{emotion_markers, marker_token_ids, LexiconPart};
use crate::rl::config::{RlConfig, UpdateStats};
use crate::rl::objective::{tempered_log_softmax, Objective};
use crate::rl::rollout::{pack, response_targets, Chunk, Rollout};

/// The expression objective's settings and its emotions' word ids.
#[derive(Debug)]
pub struct Expression {
    coef: f64,
    target: f64,
    kl: f64,
    repeat_coef: f64,
    temperature: f64,
    /// Each emotion with its expression words' token ids (as a list and as
    /// `[V]` 0 / −inf mask rows, `[n, V]`).
    emotions: Vec<(EmotionCondition, Vec<i64>)>,
    masks: Tensor,
    mass: f64,
    loss: f64,
    chunks: usize,
}

impl Expression {
    /// `None` when the objective is off or no expression word is a single
    /// token of the model.
    pub fn new(agent: &LlmAgent, cfg: &RlConfig) -> Result<Option<Self>> {
        if cfg.expression_coef <= 0.0 {
            return Ok(None);
        }
        let mut emotions = Vec::new();
        for cond in EmotionCondition::EMOTIONAL {
            let words = emotion_markers(cond.name(), LexiconPart::Expression).unwrap_or_default();
            let ids = marker_token_ids(&agent.model, &words)?;
            if ids.is_empty() {
                tracing::warn!(
                    emotion = cond.name(),
                    "no expression word is a single token of this model; the expression objective leaves it out"
                );
                continue;
            }
            emotions.push((cond, ids));
        }
        if emotions.is_empty() {
            return Ok(None);
        }
        let device = agent.model.device();
        let vocab = agent.model.vocab_size() as i64;
        let masks = emotions
            .iter()
            .map(|(_, ids)| -> Result<Tensor> {
                let idx = Tensor::f_from_slice(ids)?.f_to_device(device)?;
                let m = Tensor::f_full([vocab], f64::NEG_INFINITY, (Kind::Float, device))?;
                Ok(m.f_index_fill(0, &idx, 0.0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Expression {
            coef: cfg.expression_coef,
            target: cfg.expression_target,
            kl: cfg.expression_kl,
            repeat_coef: cfg.expression_repeat_coef,
            temperature: cfg.temperature,
            masks: Tensor::f_stack(&masks, 0)?,
            emotions,
            mass: 0.0,
            loss: 0.0,
            chunks: 0,
        }))
    }

    /// `[b, len, V]`: 1 at the expression words of row `j`'s emotion
    /// (`which[j]`) that its response wrote before each position.
    fn seen_words(
        &self,
        gens: &[emorl_lm::Generation],
        which: &[usize],
        len: i64,
        vocab: i64,
        device: tch::Device,
    ) -> Result<Tensor> {
        let (mut rows, mut cols, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for (j, (g, &e)) in gens.iter().zip(which).enumerate() {
            let words = &self.emotions[e].1;
            let mut seen: Vec<i64> = Vec::new();
            for (t, &tok) in g.tokens.iter().enumerate().take(len as usize) {
                for &w in &seen {
                    rows.push(j as i64);
                    cols.push(t as i64);
                    ids.push(w);
                }
                let tok = i64::from(tok);
                if words.contains(&tok) && !seen.contains(&tok) {
                    seen.push(tok);
                }
            }
        }
        let mut mask = Tensor::f_zeros([gens.len() as i64, len, vocab], (Kind::Float, device))?;
        if !ids.is_empty() {
            let index = |v: Vec<i64>| -> Result<Option<Tensor>> {
                Ok(Some(Tensor::f_from_slice(&v)?.f_to_device(device)?))
            };
            let ones = Tensor::f_ones([ids.len() as i64], (Kind::Float, device))?;
            mask = mask.f_index_put_(&[index(rows)?, index(cols)?, index(ids)?], &ones, false)?;
        }
        Ok(mask)
    }
}

impl Objective for Expression {
    fn name(&self) -> &'static str {
        "expression"
    }

    fn begin(&mut self, _rollout: &Rollout) -> Result<()> {
        (self.mass, self.loss, self.chunks) = (0.0, 0.0, 0);
        Ok(())
    }

    fn loss(
        &mut self,
        agent: &mut LlmAgent,
        rollout: &Rollout,
        chunk: &Chunk,
    ) -> Result<Option<Tensor>> {
        let device = agent.model.device();
        let vocab = agent.model.vocab_size() as i64;
        let n_emo = self.emotions.len();
        let t_inv = 1.0 / self.temperature;
        // Row j is scored under emotion (j + update) mod n: every emotion
        // sees every kind of prompt over the updates.
        let which: Vec<usize> = chunk
            .rows
            .clone()
            .map(|j| (j + rollout.update) % n_emo)
            .collect();
        let conditions: Vec<EmotionCondition> = which.iter().map(|&e| self.emotions[e].0).collect();
        let emotion = forced_emotions(&conditions, device)?;
        let gens = &rollout.gens[chunk.rows.clone()];
        // The policy's logits under the forced states and the frozen
        // model's at the same positions.
        let (logits, frozen, resp) = match rollout.raw_of(chunk)? {
            Some(raw) => {
                let (_, resp, _) = response_targets(gens, device)?;
                let logits = agent.modules.process_logits(&emotion, &raw)?;
                (logits, raw, resp)
            }
            None => {
                let pad = i64::from(agent.model.tokenizer().pad_id());
                let p0 = chunk.prompts.start;
                let packed = pack(|j| &rollout.prompts[p0 + j / rollout.k], gens, pad, device)?;
                let (lp, lr) = (packed.lp, packed.lr);
                let frozen = if self.kl > 0.0 {
                    let _g = tch::no_grad_guard();
                    agent
                        .model
                        .forward(&packed.tokens, Some(&packed.mask), None)?
                        .logits
                        .f_narrow(1, lp - 1, lr)?
                } else {
                    Tensor::f_zeros([1], (Kind::Float, device))?
                };
                let hooks = agent.modules.hooks(&emotion, lp as usize)?;
                let out = agent
                    .model
                    .forward(&packed.tokens, Some(&packed.mask), Some(&hooks))?;
                (out.logits.f_narrow(1, lp - 1, lr)?, frozen, packed.resp)
            }
        };
        let logp = tempered_log_softmax(&logits, t_inv)?;
        let index = Tensor::f_from_slice(&which.iter().map(|&e| e as i64).collect::<Vec<_>>())?
            .f_to_device(device)?;
        let row_masks = self.masks.f_index_select(0, &index)?.f_unsqueeze(1)?; // [b, 1, V]
        let log_mass = logp
            .f_add(&row_masks)?
            .f_logsumexp([-1i64].as_slice(), false)?; // [b, lr]
        let mut per_token = log_mass
            .f_neg()?
            .f_add_scalar(self.target.ln())?
            .f_clamp_min(0.0)?;
        if self.repeat_coef > 0.0 {
            let seen = self.seen_words(gens, &which, logp.size()[1], vocab, device)?;
            let repeat_mass = logp
                .f_exp()?
                .f_mul(&seen)?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?
                .f_clamp(0.0, 1.0 - 1e-6)?;
            let unlikelihood = repeat_mass.f_neg()?.f_add_scalar(1.0)?.f_log()?.f_neg()?;
            per_token = per_token.f_add(&unlikelihood.f_mul_scalar(self.repeat_coef)?)?;
        }
        if self.kl > 0.0 {
            let ref_logp = tempered_log_softmax(&frozen, t_inv)?;
            let kl = logp
                .f_exp()?
                .f_mul(&logp.f_sub(&ref_logp)?)?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?;
            per_token = per_token.f_add(&kl.f_mul_scalar(self.kl)?)?;
        }
        let n_tok = resp
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        // Mean over the chunk's sequences, scaled by its share of the update.
        let share = chunk.rows.len() as f64 / rollout.rows() as f64;
        let loss = per_token
            .f_mul(&resp)?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_div(&n_tok)?
            .f_mean(Kind::Float)?
            .f_mul_scalar(self.coef * share)?;
        let mass = log_mass
            .f_detach()?
            .f_exp()?
            .f_mul(&resp)?
            .f_sum(Kind::Float)?
            .f_double_value(&[])?;
        self.mass += mass / resp.f_sum(Kind::Float)?.f_double_value(&[])?.max(1.0);
        self.loss += loss.f_double_value(&[])?;
        self.chunks += 1;
        Ok(Some(loss))
    }

    fn report(&mut self, stats: &mut UpdateStats) {
        stats.expression_mass = self.mass / self.chunks.max(1) as f64;
        stats.objectives.push(("expression".into(), self.loss));
    }
}
