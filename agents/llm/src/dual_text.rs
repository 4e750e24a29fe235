//! The dual-head adapters' supervised phase (seed 004): multi-turn
//! DailyDialog examples (a history of turns, the response, the response's
//! emotion label), the adapters conditioned on the label's embedding `g_in`,
//! trained with AdamW on
//!
//! `L = L_lm + λ_prop·(1 − cos(g_in, g_out)) + λ_kd·KL(frozen ‖ adapted) + λ_sparse·mean(G)`
//!
//! — the response's next-token loss, the emotional propagation loss, a
//! distillation term keeping the response distribution near the frozen
//! model's own (its teacher), and the gate's sparsity. Only the adapters
//! learn; the frozen model is read, never written. Held-out examples (other
//! dialogues) are scored before and after: per-token response loss under
//! the frozen model, the adapter as initialised, and the trained adapter.
//! Which dialogues serve which purpose: [`DailyDialogSplits`].

use std::sync::{Arc, Mutex};

use emorl_envs_text::{DialogueObs, Speaker, Turn as EnvTurn};
use emorl_lm::Model;
use emorl_text::{segment_masks, DialogueExample, Role, Segment};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::modules::dual::{one_hot_labels, DualAdapter, DualTrace};
use crate::optim::AdamW;
use crate::params::invalid;

/// Settings of the dual adapters' supervised phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualTextConfig {
    /// Optimiser steps (0: skip the phase).
    pub steps: usize,
    pub lr: f64,
    pub batch: usize,
    /// Tokens per example at most (history dropped from the left first).
    pub max_tokens: usize,
    /// Turns of history before each response.
    pub history_turns: usize,
    /// Held-out examples scored before and after (from other dialogues).
    pub held_out: usize,
    /// Weight of the propagation loss `1 − cos(g_in, g_out)`.
    pub propagation: f64,
    /// Weight of the distillation loss `KL(frozen ‖ adapted)` (0: no teacher pass).
    pub distillation: f64,
    /// Weight of the gate-sparsity loss `mean(G)`.
    pub sparsity: f64,
}

impl Default for DualTextConfig {
    fn default() -> Self {
        DualTextConfig {
            steps: 200,
            lr: 1e-3,
            batch: 8,
            max_tokens: 96,
            history_turns: 3,
            held_out: 200,
            propagation: 0.1,
            distillation: 0.1,
            sparsity: 0.01,
        }
    }
}

impl DualTextConfig {
    pub fn validate(&self) -> Result<()> {
        let weights = [self.propagation, self.distillation, self.sparsity];
        if self.batch == 0
            || self.max_tokens < 4
            || self.history_turns == 0
            || !(self.lr.is_finite() && self.lr > 0.0)
            || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(invalid(
                "dual text phase: batch and history_turns must be > 0, max_tokens >= 4, lr finite and > 0, loss weights finite and >= 0",
            ));
        }
        Ok(())
    }
}

/// The loss terms of one step (or of a held-out pass).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DualTerms {
    /// Response next-token loss (nats per token).
    pub lm: f64,
    pub propagation: f64,
    pub distillation: f64,
    /// Mean gate over real tokens.
    pub gate_mean: f64,
    /// Share of real-token gates below 0.5 (the emotional head mostly off).
    pub gate_sparsity: f64,
    /// The weighted sum that was minimised.
    pub total: f64,
}

/// Held-out response loss (nats per token) of the three models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DualHeldOut {
    pub examples: usize,
    pub tokens: usize,
    pub frozen: f64,
    /// The adapter as initialised (its output projections start at zero).
    pub untrained: f64,
    pub trained: f64,
}

/// What the phase learned from and how it does on held-out responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DualTextReport {
    /// Training examples the steps went through (cycled when fewer).
    pub train_examples: usize,
    pub steps: usize,
    /// Mean terms over the last tenth of the steps.
    pub final_terms: DualTerms,
    pub held_out: DualHeldOut,
}

/// A batch: left-padded tokens, padding mask, next-token targets' response
/// mask (`[b, s-1]`: position `j` predicts token `j+1`), label mixtures.
struct Batch {
    tokens: Tensor,
    mask: Tensor,
    response_next: Tensor,
    response: Tensor,
    labels: Tensor,
}

/// What an agent sees of an example, as the dialogue environment shows it:
/// the turns before the last user message as history (bot turns as the
/// assistant's), the last user message as the new one.
pub fn observation(e: &DialogueExample) -> DialogueObs {
    let mut history: Vec<EnvTurn> = e
        .history
        .iter()
        .map(|t| EnvTurn {
            speaker: match t.role {
                Role::User => Speaker::User,
                Role::Bot => Speaker::Assistant,
            },
            text: t.text.clone(),
        })
        .collect();
    let user_message = match history.last() {
        Some(t) if t.speaker == Speaker::User => history.pop().map(|t| t.text).unwrap_or_default(),
        _ => String::new(),
    };
    let turn = history
        .iter()
        .filter(|t| t.speaker == Speaker::Assistant)
        .count();
    DialogueObs {
        history,
        user_message,
        turn,
        max_turns: turn + 1,
        ended: false,
    }
}

/// Token ids of an example — the agent's prompt for [`observation`] then
/// the response — and which are response tokens, kept to `max_tokens` by
/// the segment masks (history dropped from the left first).
fn encode(
    agent: &crate::agent::LlmAgent,
    e: &DialogueExample,
    max_tokens: usize,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let history = agent.encode_prompt_for(&observation(e), None)?;
    let response = agent.model().tokenizer().encode(&e.response, false)?;
    if response.is_empty() {
        return Err(invalid(format!(
            "dual text phase: example {}#{} has an empty response",
            e.dialogue_id, e.turn
        )));
    }
    let masks = segment_masks(
        &[
            (Segment::History, history.len()),
            (Segment::Response, response.len()),
        ],
        max_tokens,
    );
    let ids = masks
        .assemble(&[history, response], 0)
        .map_err(|e| invalid(format!("dual text phase: {e}")))?;
    let n = masks.real_len();
    Ok((ids[..n].to_vec(), masks.response[..n].to_vec()))
}

fn batches(
    agent: &crate::agent::LlmAgent,
    examples: &[DialogueExample],
    config: &DualTextConfig,
) -> Result<Vec<Batch>> {
    let model = agent.model();
    let device = model.device();
    let pad = model.tokenizer().pad_id();
    let mut out = Vec::new();
    for chunk in examples.chunks(config.batch) {
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut resp = Vec::with_capacity(chunk.len());
        for e in chunk {
            let (ids, r) = encode(agent, e, config.max_tokens)?;
            seqs.push(ids);
            resp.push(r);
        }
        let (tokens, mask) = crate::batch::pad_left(&seqs, pad)?;
        let s = tokens.size()[1] as usize;
        let mut r = vec![0f32; chunk.len() * s];
        for (row, flags) in resp.iter().enumerate() {
            let off = s - flags.len();
            for (j, &f) in flags.iter().enumerate() {
                if f {
                    r[row * s + off + j] = 1.0;
                }
            }
        }
        let response = Tensor::f_from_slice(&r)?
            .f_view([chunk.len() as i64, s as i64])?
            .f_to_device(device)?;
        let labels: Vec<&str> = chunk.iter().map(|e| e.emotion.as_str()).collect();
        out.push(Batch {
            tokens: tokens.f_to_device(device)?,
            mask: mask.f_to_device(device)?,
            response_next: response.f_narrow(1, 1, s as i64 - 1)?,
            response,
            labels: one_hot_labels(&labels, device)?,
        });
    }
    Ok(out)
}

/// Summed response NLL and token count of `logits` `[b, s, v]`.
fn response_nll(logits: &Tensor, b: &Batch) -> Result<(Tensor, f64)> {
    let s = b.tokens.size()[1];
    let nll = crate::batch::next_token_nll(logits, &b.tokens, 0, s - 1)?;
    let count = b.response_next.f_sum(Kind::Float)?.f_double_value(&[])?;
    Ok((nll.f_mul(&b.response_next)?.f_sum(Kind::Float)?, count))
}

/// The frozen model's logits of a batch (no adapter, no gradient).
fn frozen_logits(model: &mut Model, b: &Batch) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    Ok(model.forward(&b.tokens, Some(&b.mask), None)?.logits)
}

/// One pass with the adapter on `b`: the weighted loss and its terms.
fn pass(
    dual: &DualAdapter,
    model: &mut Model,
    b: &Batch,
    config: &DualTextConfig,
    teacher: Option<&Tensor>,
) -> Result<(Tensor, DualTerms, f64)> {
    let trace = Arc::new(Mutex::new(DualTrace::default()));
    let g_in = dual.embed(&b.labels)?;
    let hooks = dual.attach_embedding(emorl_lm::Hooks::new(), &g_in, Some(trace.clone()))?;
    let logits = model
        .forward(&b.tokens, Some(&b.mask), Some(&hooks))?
        .logits;
    drop(hooks);
    let trace = std::mem::take(
        &mut *trace
            .lock()
            .map_err(|_| invalid("dual text phase: trace lock poisoned"))?,
    );
    let (nll, n) = response_nll(&logits, b)?;
    let lm = nll.f_div_scalar(n.max(1.0))?;
    let g_out = dual.output_embedding(&trace, &b.response)?;
    let cos = Tensor::f_cosine_similarity(&g_in, &g_out, 1, 1e-8)?;
    let propagation = cos.f_neg()?.f_add_scalar(1.0)?.f_mean(Kind::Float)?;
    // Gate over real tokens, averaged over blocks.
    let real = b.mask.f_to_kind(Kind::Float)?;
    let n_real = real.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
    let mut gate_sum: Option<Tensor> = None;
    let mut off = 0.0;
    for g in &trace.gates {
        let g = g.f_squeeze_dim(-1)?;
        let m = g.f_mul(&real)?.f_sum(Kind::Float)?.f_div(&n_real)?;
        off += g
            .f_lt(0.5)?
            .f_to_kind(Kind::Float)?
            .f_mul(&real)?
            .f_sum(Kind::Float)?
            .f_div(&n_real)?
            .f_double_value(&[])?;
        gate_sum = Some(match gate_sum {
            Some(s) => s.f_add(&m)?,
            None => m,
        });
    }
    let blocks = trace.gates.len().max(1) as f64;
    let gate = match gate_sum {
        Some(s) => s.f_div_scalar(blocks)?,
        None => Tensor::f_zeros([], (Kind::Float, logits.device()))?,
    };
    let s = b.tokens.size()[1];
    let distillation = match teacher {
        Some(t) if config.distillation > 0.0 => {
            let p = t.f_narrow(1, 0, s - 1)?.f_log_softmax(-1, Kind::Float)?;
            let q = logits
                .f_narrow(1, 0, s - 1)?
                .f_log_softmax(-1, Kind::Float)?;
            // KL(p ‖ q) per position, over response targets.
            let kl = p
                .f_exp()?
                .f_mul(&p.f_sub(&q)?)?
                .f_sum_dim_intlist(-1, false, Kind::Float)?;
            kl.f_mul(&b.response_next)?
                .f_sum(Kind::Float)?
                .f_div_scalar(n.max(1.0))?
        }
        _ => Tensor::f_zeros([], (Kind::Float, logits.device()))?,
    };
    let total = lm
        .f_add(&propagation.f_mul_scalar(config.propagation)?)?
        .f_add(&distillation.f_mul_scalar(config.distillation)?)?
        .f_add(&gate.f_mul_scalar(config.sparsity)?)?;
    let terms = DualTerms {
        lm: lm.f_double_value(&[])?,
        propagation: propagation.f_double_value(&[])?,
        distillation: distillation.f_double_value(&[])?,
        gate_mean: gate.f_double_value(&[])?,
        gate_sparsity: off / blocks,
        total: total.f_double_value(&[])?,
    };
    Ok((total, terms, n))
}

/// Mean response loss per token of `batches`, with the adapter or frozen.
fn held_out_loss(
    dual: &DualAdapter,
    model: &mut Model,
    batches: &[Batch],
    config: &DualTextConfig,
    adapted: bool,
) -> Result<(f64, usize)> {
    let _g = tch::no_grad_guard();
    let (mut sum, mut tokens) = (0.0, 0.0);
    for b in batches {
        let (nll, n) = if adapted {
            let (_, terms, n) = pass(dual, model, b, config, None)?;
            (terms.lm * n, n)
        } else {
            let (nll, n) = response_nll(&frozen_logits(model, b)?, b)?;
            (nll.f_double_value(&[])?, n)
        };
        sum += nll;
        tokens += n;
    }
    Ok((sum / tokens.max(1.0), tokens as usize))
}

/// Trains the agent's dual adapters on `train` (cycled in order for
/// `config.steps` steps) and scores `held_out` before and after, calling
/// `progress(step, terms)` after each step. `Ok(None)` for an agent
/// without dual adapters or with `steps = 0`.
pub fn pretrain_dual_on_dialogues(
    agent: &mut crate::agent::LlmAgent,
    train: &[DialogueExample],
    held_out: &[DialogueExample],
    config: &DualTextConfig,
    mut progress: impl FnMut(usize, &DualTerms),
) -> Result<Option<DualTextReport>> {
    config.validate()?;
    if agent.modules().dual.is_none() || config.steps == 0 {
        return Ok(None);
    }
    if train.is_empty() || held_out.is_empty() {
        return Err(invalid(
            "dual text phase: needs training and held-out examples",
        ));
    }
    // Only the batches of the steps taken are tokenised.
    let used = &train[..train.len().min(config.steps * config.batch)];
    let train_batches = batches(agent, used, config)?;
    let held = &held_out[..held_out.len().min(config.held_out.max(1))];
    let held_batches = batches(agent, held, config)?;
    let (modules, model) = agent.parts_mut();
    let Some(dual) = &modules.dual else {
        return Ok(None);
    };
    let (frozen, tokens) = held_out_loss(dual, model, &held_batches, config, false)?;
    let (untrained, _) = held_out_loss(dual, model, &held_batches, config, true)?;
    let mut opt = AdamW::new(dual.params.trainable(), config.lr, 0.01)?;
    let mut history: Vec<DualTerms> = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        let b = &train_batches[step % train_batches.len()];
        let teacher = if config.distillation > 0.0 {
            Some(frozen_logits(model, b)?)
        } else {
            None
        };
        opt.zero_grad();
        let (loss, terms, _) = pass(dual, model, b, config, teacher.as_ref())?;
        if !terms.total.is_finite() {
            return Err(invalid(format!(
                "dual text phase diverged (step {step}, loss {})",
                terms.total
            )));
        }
        loss.f_backward()?;
        opt.step()?;
        progress(step + 1, &terms);
        history.push(terms);
    }
    opt.zero_grad();
    let (trained, _) = held_out_loss(dual, model, &held_batches, config, true)?;
    let tail = &history[history.len() - history.len().div_ceil(10)..];
    let k = tail.len() as f64;
    let mean = |f: fn(&DualTerms) -> f64| tail.iter().map(f).sum::<f64>() / k;
    Ok(Some(DualTextReport {
        train_examples: used.len(),
        steps: config.steps,
        final_terms: DualTerms {
            lm: mean(|t| t.lm),
            propagation: mean(|t| t.propagation),
            distillation: mean(|t| t.distillation),
            gate_mean: mean(|t| t.gate_mean),
            gate_sparsity: mean(|t| t.gate_sparsity),
            total: mean(|t| t.total),
        },
        held_out: DualHeldOut {
            examples: held.len(),
            tokens,
            frozen,
            untrained,
            trained,
        },
    }))
}

/// The DailyDialog examples of the LLM tables, kept apart by dialogue:
/// `llm-dual` learns from 80% of the test split's dialogues (`train`, by a
/// stable hash of the dialogue ID) and its response perplexity is held out
/// on the validation split (`held_out`); the other 20% of the test split's
/// dialogues (`evaluation`) are what no agent learns from (the ERM and LoRA
/// text phases read the validation split), for the alignment measurement.
#[derive(Clone, Debug)]
pub struct DailyDialogSplits {
    pub train: Vec<DialogueExample>,
    pub held_out: Vec<DialogueExample>,
    pub evaluation: Vec<DialogueExample>,
}

/// Share of the test split's dialogues `llm-dual` learns from.
pub const DUAL_TRAIN_SHARE: f64 = 0.8;

/// [`DailyDialogSplits`] from the files in `dir`, `history_turns` turns of
/// history per example; `train` and `held_out` shuffled with `seed`,
/// `evaluation` in corpus order.
pub fn dailydialog_examples(
    dir: &std::path::Path,
    history_turns: usize,
    seed: u64,
) -> Result<DailyDialogSplits> {
    let load = |name: &str| -> Result<Vec<DialogueExample>> {
        let corpus = emorl_text::DailyDialogCorpus::load(&dir.join(name))?;
        Ok(emorl_text::examples(&corpus.to_dialogues(), history_turns))
    };
    let fractions = emorl_text::SplitFractions::new(DUAL_TRAIN_SHARE, 0.0, 1.0 - DUAL_TRAIN_SHARE)?;
    let split = emorl_text::split_examples(load("dialogues_test.txt")?, &fractions);
    let mut train = split.train;
    let mut held_out = load("dialogues_validation.txt")?;
    emorl_text::shuffle_seeded(&mut train, seed);
    emorl_text::shuffle_seeded(&mut held_out, seed);
    Ok(DailyDialogSplits {
        train,
        held_out,
        evaluation: split.test,
    })
}

/// The phase on the DailyDialog files in `dir` (see
/// [`dailydialog_examples`]; shuffled with `seed`), `progress(step, steps,
/// terms)` after each step. `Ok(None)` for an agent without dual adapters
/// or with `steps = 0`.
pub fn pretrain_dual_on_dailydialog(
    agent: &mut crate::agent::LlmAgent,
    dir: &std::path::Path,
    config: &DualTextConfig,
    seed: u64,
    mut progress: impl FnMut(usize, usize, &DualTerms),
) -> Result<Option<DualTextReport>> {
    if config.steps == 0 || agent.modules().dual.is_none() {
        return Ok(None);
    }
    config.validate()?;
    let d = dailydialog_examples(dir, config.history_turns, seed)?;
    let steps = config.steps;
    pretrain_dual_on_dialogues(agent, &d.train, &d.held_out, config, |i, t| {
        progress(i, steps, t)
    })
}
