//! The emotional LoRA adapters' supervised phase: each adapter learns the
//! language of its profile — the next-token loss of texts labelled with
//! that emotion (GoEmotions' train split, DailyDialog's validation split
//! when found), computed with the blend weights one-hot on that emotion, so
//! only its own adapter receives gradient. Neutral texts are left out (the
//! neutral state uses no adapter). Held-out GoEmotions test texts of each
//! profile are scored before and after: per-token loss under the frozen
//! model and under the profile's adapter.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::LabelledText;
use crate::error::Result;
use crate::modules::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::modules::lora::EmotionalLora;
use crate::optim::AdamW;
use crate::params::invalid;

/// Settings of the LoRA adapters' text phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraTextConfig {
    /// Passes over the training texts (0: skip the phase).
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    /// Training texts per emotion from GoEmotions' train split (and as
    /// many from DailyDialog when its files are found).
    pub per_class: usize,
    /// Held-out texts per emotion from GoEmotions' test split.
    pub test_per_class: usize,
    /// Tokens kept of each text.
    pub max_tokens: usize,
}

impl Default for LoraTextConfig {
    fn default() -> Self {
        LoraTextConfig {
            epochs: 2,
            lr: 1e-3,
            batch: 16,
            per_class: 128,
            test_per_class: 50,
            max_tokens: 40,
        }
    }
}

/// One profile's held-out loss (nats per token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileLoss {
    pub emotion: String,
    pub texts: usize,
    pub tokens: usize,
    /// Under the frozen model.
    pub frozen: f64,
    /// Under the profile's adapter.
    pub adapted: f64,
}

/// What the phase learned from and how the adapters do on held-out text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraTextReport {
    pub goemotions: String,
    pub dailydialog: Option<String>,
    pub train_texts: usize,
    pub steps: usize,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    pub held_out: Vec<ProfileLoss>,
}

/// A batch: left-padded tokens, mask, one-hot blend weights.
struct Batch {
    tokens: Tensor,
    mask: Tensor,
    weights: Tensor,
}

fn batches(
    model: &emorl_lm::Model,
    texts: &[&LabelledText],
    config: &LoraTextConfig,
) -> Result<Vec<Batch>> {
    let device = model.device();
    let pad = model.tokenizer().pad_id();
    let mut out = Vec::new();
    for chunk in texts.chunks(config.batch.max(1)) {
        let seqs = chunk
            .iter()
            .map(|t| {
                let mut ids = model.tokenizer().encode(&t.text, true)?;
                ids.truncate(config.max_tokens.max(2));
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        if seqs.iter().any(|s| s.len() < 2) {
            return Err(invalid("lora text phase: a text has fewer than 2 tokens"));
        }
        let (tokens, mask) = crate::batch::pad_left(&seqs, pad)?;
        let mut w = vec![0f32; chunk.len() * N_EMOTIONS];
        for (r, t) in chunk.iter().enumerate() {
            w[r * N_EMOTIONS + t.class] = 1.0;
        }
        out.push(Batch {
            tokens: tokens.f_to_device(device)?,
            mask: mask.f_to_device(device)?,
            weights: Tensor::f_from_slice(&w)?
                .f_view([chunk.len() as i64, N_EMOTIONS as i64])?
                .f_to_device(device)?,
        });
    }
    Ok(out)
}

/// Summed next-token loss and token count of a batch, with the adapters
/// blended by `weights` (`None`: the frozen model).
fn batch_loss(
    lora: &EmotionalLora,
    model: &mut emorl_lm::Model,
    b: &Batch,
    weights: Option<&Tensor>,
) -> Result<(Tensor, f64)> {
    let n = b.tokens.size()[0];
    let hooks = match weights {
        Some(w) => {
            let state = EmotionState {
                phasic: w.shallow_clone(),
                tonic: Tensor::f_zeros([n, 2], (Kind::Float, w.device()))?,
                carry: None,
            };
            Some(lora.attach(emorl_lm::Hooks::new(), &state)?)
        }
        None => None,
    };
    let logits = model
        .forward(&b.tokens, Some(&b.mask), hooks.as_ref())?
        .logits;
    let s = b.tokens.size()[1];
    let nll = crate::batch::next_token_nll(&logits, &b.tokens, 0, s - 1)?;
    let m = b.mask.f_narrow(1, 1, s - 1)?.f_to_kind(Kind::Float)?;
    let count = m.f_sum(Kind::Float)?.f_double_value(&[])?;
    Ok((nll.f_mul(&m)?.f_sum(Kind::Float)?, count))
}

/// The number of optimiser steps the phase takes for `train_texts`
/// emotional texts (for a progress bar).
pub fn lora_text_steps(train_texts: usize, config: &LoraTextConfig) -> usize {
    train_texts.div_ceil(config.batch.max(1)) * config.epochs
}

/// Trains the agent's LoRA adapters on `train` (neutral texts left out)
/// and scores each profile on `test`, calling `progress(step, loss)` after
/// each step. `Ok(None)` for an agent without LoRA adapters.
pub fn pretrain_lora_on_text(
    agent: &mut crate::agent::LlmAgent,
    train: &[LabelledText],
    test: &[LabelledText],
    config: &LoraTextConfig,
    mut progress: impl FnMut(usize, f64),
) -> Result<Option<(usize, f64, Vec<ProfileLoss>)>> {
    if config.batch == 0 || !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(invalid(
            "lora text phase: batch must be > 0 and lr finite and > 0",
        ));
    }
    let (modules, model) = agent.parts_mut();
    let Some(lora) = &modules.lora else {
        return Ok(None);
    };
    let emotional = |ts: &[LabelledText]| -> Vec<LabelledText> {
        ts.iter()
            .filter(|t| t.class < N_EMOTIONS)
            .cloned()
            .collect()
    };
    let train = emotional(train);
    let test = emotional(test);
    if train.is_empty() || test.is_empty() {
        return Err(invalid(
            "lora text phase: needs emotional training and held-out texts",
        ));
    }
    // Classes interleaved so that every batch trains every adapter.
    let mut by_class: Vec<Vec<&LabelledText>> = vec![Vec::new(); N_EMOTIONS];
    for t in &train {
        by_class[t.class].push(t);
    }
    let longest = by_class.iter().map(Vec::len).max().unwrap_or(0);
    let order: Vec<&LabelledText> = (0..longest)
        .flat_map(|i| by_class.iter().filter_map(move |c| c.get(i).copied()))
        .collect();
    let train_batches = batches(model, &order, config)?;
    let mut opt = AdamW::new(lora.params.trainable(), config.lr, 0.0)?;
    let mut steps = 0;
    let mut final_loss = f64::NAN;
    for epoch in 0..config.epochs {
        let (mut sum, mut count) = (0.0, 0.0);
        for (i, b) in train_batches.iter().enumerate() {
            opt.zero_grad();
            let (loss, n) = batch_loss(lora, model, b, Some(&b.weights))?;
            let mean = loss.f_div_scalar(n.max(1.0))?;
            let value = mean.f_double_value(&[])?;
            if !value.is_finite() {
                return Err(invalid(format!(
                    "lora text phase diverged (epoch {epoch}, batch {i}, loss {value})"
                )));
            }
            mean.f_backward()?;
            opt.step()?;
            steps += 1;
            progress(steps, value);
            sum += value * n;
            count += n;
        }
        final_loss = sum / count.max(1.0);
    }
    opt.zero_grad();
    let _g = tch::no_grad_guard();
    let mut held_out = Vec::new();
    for (class, emotion) in EMOTIONS.iter().enumerate() {
        let texts: Vec<&LabelledText> = test.iter().filter(|t| t.class == class).collect();
        if texts.is_empty() {
            continue;
        }
        let (mut frozen, mut adapted, mut tokens) = (0.0, 0.0, 0.0);
        for b in batches(model, &texts, config)? {
            let (l0, n) = batch_loss(lora, model, &b, None)?;
            let (l1, _) = batch_loss(lora, model, &b, Some(&b.weights))?;
            frozen += l0.f_double_value(&[])?;
            adapted += l1.f_double_value(&[])?;
            tokens += n;
        }
        held_out.push(ProfileLoss {
            emotion: emotion.to_string(),
            texts: texts.len(),
            tokens: tokens as usize,
            frozen: frozen / tokens.max(1.0),
            adapted: adapted / tokens.max(1.0),
        });
    }
    Ok(Some((steps, final_loss, held_out)))
}

/// The LoRA phase on real data: GoEmotions' train split (and DailyDialog's
/// labelled utterances when given) to learn from, its test split held out;
/// `progress(step, steps, loss)` after each step. `Ok(None)` for an agent
/// without adapters or with `epochs = 0`.
pub fn pretrain_lora_on_corpora(
    agent: &mut crate::agent::LlmAgent,
    goemotions: &std::path::Path,
    dailydialog: Option<&std::path::Path>,
    config: &LoraTextConfig,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Option<LoraTextReport>> {
    if config.epochs == 0 || agent.modules().lora.is_none() {
        return Ok(None);
    }
    let crate::data::LabelledCorpora { train, test, .. } = crate::data::labelled_corpora(
        goemotions,
        dailydialog,
        config.per_class,
        config.test_per_class,
        "lora text phase",
    )?;
    let train_texts = train.iter().filter(|t| t.class < N_EMOTIONS).count();
    let total = lora_text_steps(train_texts, config);
    Ok(
        pretrain_lora_on_text(agent, &train, &test, config, |i, loss| {
            progress(i, total, loss)
        })?
        .map(|(steps, final_loss, held_out)| LoraTextReport {
            goemotions: goemotions.display().to_string(),
            dailydialog: dailydialog.map(|p| p.display().to_string()),
            train_texts,
            steps,
            final_loss,
            held_out,
        }),
    )
}
