//! Emotion with a meaning: labelled dialogue contexts and the encoder's
//! supervised phase (seed 000's phase 1).
//!
//! Every turn of conversations that the scripted policies hold in `dialogue`
//! is labelled by what the user's message calls for (the environment's
//! hidden [`Need`]): a request to decline → fear, a frustrated repeat →
//! anger, a request to go deeper → curiosity, thanks → joy, a plain request
//! → neutral. The encoder only sees the context features computed from the
//! conversation's text, never the label, so a held-out accuracy above the
//! majority class says the state it produces carries that meaning.
//!
//! Classes are indices into [`CLASSES`]: the four [`crate::EMOTIONS`] then
//! `"neutral"`, whose target is the neutral state (every emotion 0, see
//! [`crate::EmotionState::neutral`]).

use emorl_core::{EmotionalContext, Env};
use emorl_envs_text::{Dialogue, DialogueConfig, Need, PolicyKind, ScriptedPolicy};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::Result;
use crate::modules::emotion::{context_features, EmotionalEncoder, N_CONTEXT_FEATURES, N_EMOTIONS};
use crate::optim::AdamW;
use crate::params::invalid;

pub use crate::data::{dailydialog_texts, goemotions_texts, LabelledText, CLASSES, NEUTRAL_CLASS};

// The classes are the emotions' indices, then neutral.
const _: () = assert!(CLASSES.len() == N_EMOTIONS + 1 && NEUTRAL_CLASS == N_EMOTIONS);

/// The emotion class a turn's need calls for.
pub fn need_class(need: Need) -> usize {
    match need {
        Need::Caution => 0,
        Need::Elaborate => 1,
        Need::Alternative => 2,
        Need::Warm => 3,
        Need::Inform => NEUTRAL_CLASS,
    }
}

/// One labelled turn: the context the agent sees before responding.
#[derive(Clone, Debug)]
pub struct LabelledContext {
    pub context: EmotionalContext,
    /// The user's message of that turn.
    pub text: String,
    /// Index into [`CLASSES`].
    pub class: usize,
    pub seed: u64,
    pub turn: usize,
}

/// Every turn of the conversations each scripted policy holds with the
/// simulated user, one conversation per seed and policy.
pub fn dialogue_contexts(env: &DialogueConfig, seeds: &[u64]) -> Result<Vec<LabelledContext>> {
    let mut dialogue = Dialogue::new(env.clone())?;
    let mut out = Vec::new();
    for &seed in seeds {
        for kind in PolicyKind::ALL {
            let mut policy = ScriptedPolicy::new(kind, seed ^ 0x5eed);
            let (mut obs, _) = dialogue.reset(Some(seed));
            while !obs.ended {
                let Some(view) = dialogue.oracle_view() else {
                    break;
                };
                out.push(LabelledContext {
                    context: dialogue.context(),
                    text: obs.user_message.clone(),
                    class: need_class(view.need),
                    seed,
                    turn: obs.turn,
                });
                let response = policy.respond(&dialogue, &obs);
                let step = dialogue.step(&response);
                if step.terminated || step.truncated {
                    break;
                }
                obs = step.obs;
            }
        }
    }
    Ok(out)
}

/// Settings of the encoder's supervised phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderPretrainConfig {
    /// Full-batch AdamW steps (0: skip the phase).
    pub steps: usize,
    pub lr: f64,
    /// Conversations per scripted policy to learn from (seeds
    /// `seed_offset..seed_offset + train_conversations`).
    pub train_conversations: usize,
    /// Held-out conversations per policy (a disjoint seed block).
    pub test_conversations: usize,
    pub seed_offset: u64,
}

impl Default for EncoderPretrainConfig {
    fn default() -> Self {
        EncoderPretrainConfig {
            steps: 300,
            lr: 0.02,
            train_conversations: 200,
            test_conversations: 100,
            seed_offset: 3_000_000,
        }
    }
}

impl EncoderPretrainConfig {
    /// The training and held-out seed blocks (disjoint).
    pub fn seeds(&self) -> (Vec<u64>, Vec<u64>) {
        let train = (0..self.train_conversations as u64)
            .map(|i| self.seed_offset + i)
            .collect();
        let test = (0..self.test_conversations as u64)
            .map(|i| self.seed_offset + 1_000_000 + i)
            .collect();
        (train, test)
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(invalid("encoder pretraining: lr must be finite and > 0"));
        }
        if self.steps > 0 && (self.train_conversations == 0 || self.test_conversations == 0) {
            return Err(invalid(
                "encoder pretraining: train_conversations and test_conversations must be > 0",
            ));
        }
        Ok(())
    }
}

/// Scores of an encoder on labelled contexts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub n: usize,
    pub accuracy: f64,
    /// Mean F1 over the classes present (in labels or predictions).
    pub macro_f1: f64,
    /// Accuracy of always answering the most frequent class of the
    /// training labels.
    pub majority_accuracy: f64,
    /// `(class, f1, support)` in [`CLASSES`] order.
    pub per_class: Vec<(String, f64, usize)>,
}

/// The result of the supervised phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderReport {
    pub steps: usize,
    pub final_loss: f64,
    pub train: ClassScores,
    pub test: ClassScores,
}

/// The class the state says: the highest emotion when it reaches 0.5,
/// neutral otherwise.
pub fn predicted_class(phasic: &[f32]) -> usize {
    let (best, value) =
        phasic
            .iter()
            .enumerate()
            .fold((NEUTRAL_CLASS, f32::NEG_INFINITY), |acc, (i, &v)| {
                if v > acc.1 {
                    (i, v)
                } else {
                    acc
                }
            });
    if value >= 0.5 {
        best
    } else {
        NEUTRAL_CLASS
    }
}

fn features_and_targets(items: &[LabelledContext]) -> Result<(Tensor, Tensor)> {
    let flat: Vec<f32> = items
        .iter()
        .flat_map(|c| context_features(&c.context))
        .collect();
    let mut targets = vec![0f32; items.len() * N_EMOTIONS];
    for (r, c) in items.iter().enumerate() {
        if c.class < N_EMOTIONS {
            targets[r * N_EMOTIONS + c.class] = 1.0;
        }
    }
    let n = items.len() as i64;
    Ok((
        Tensor::f_from_slice(&flat)?.f_view([n, N_CONTEXT_FEATURES as i64])?,
        Tensor::f_from_slice(&targets)?.f_view([n, N_EMOTIONS as i64])?,
    ))
}

/// Scores `encoder` on `items` (`majority`: the class counted as the
/// majority baseline, from the training labels).
pub fn score_encoder(
    encoder: &EmotionalEncoder,
    items: &[LabelledContext],
    majority: usize,
) -> Result<ClassScores> {
    if items.is_empty() {
        return Err(invalid("encoder scores: no labelled contexts"));
    }
    let _g = tch::no_grad_guard();
    let (x, _) = features_and_targets(items)?;
    let phasic = encoder.phasic(&x.f_to_device(encoder.device())?)?;
    let flat = Vec::<f32>::try_from(
        &phasic
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?
            .f_view([-1])?,
    )?;
    let predicted: Vec<usize> = flat.chunks(N_EMOTIONS).map(predicted_class).collect();
    let truth: Vec<usize> = items.iter().map(|c| c.class).collect();
    Ok(class_scores(&predicted, &truth, majority))
}

/// Accuracy, macro-F1 and per-class F1 of `predicted` against `truth`
/// (classes of [`CLASSES`]); the majority baseline answers `majority`.
pub fn class_scores(predicted: &[usize], truth: &[usize], majority: usize) -> ClassScores {
    let k = CLASSES.len();
    let (mut tp, mut fp, mut fneg) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut support = vec![0usize; k];
    for (&p, &c) in predicted.iter().zip(truth) {
        support[c] += 1;
        if p == c {
            tp[c] += 1;
        } else {
            fp[p] += 1;
            fneg[c] += 1;
        }
    }
    let f1 = |i: usize| {
        let d = 2 * tp[i] + fp[i] + fneg[i];
        if d == 0 {
            f64::NAN
        } else {
            2.0 * tp[i] as f64 / d as f64
        }
    };
    let present: Vec<f64> = (0..k).map(f1).filter(|v| !v.is_nan()).collect();
    let n = truth.len().max(1);
    ClassScores {
        n: truth.len(),
        accuracy: tp.iter().sum::<usize>() as f64 / n as f64,
        macro_f1: present.iter().sum::<f64>() / present.len().max(1) as f64,
        majority_accuracy: support[majority] as f64 / n as f64,
        per_class: (0..k)
            .map(|i| (CLASSES[i].to_string(), f1(i), support[i]))
            .collect(),
    }
}

/// The most frequent class (ties: the lower index).
pub fn majority_of(classes: impl IntoIterator<Item = usize>) -> usize {
    let mut counts = [0usize; CLASSES.len()];
    for c in classes {
        counts[c] += 1;
    }
    (0..CLASSES.len())
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(NEUTRAL_CLASS)
}

/// The most frequent class of `items` (ties: the lower index).
pub fn majority_class(items: &[LabelledContext]) -> usize {
    majority_of(items.iter().map(|c| c.class))
}

/// Trains `encoder` on `train` (full-batch binary cross-entropy of each
/// emotion against the one-hot target, neutral = all zeros; AdamW on the
/// encoder's parameters only) and scores it on `train` and `test`.
/// `on_step(step, loss)` sees every step (progress, TensorBoard).
pub fn pretrain_encoder(
    encoder: &EmotionalEncoder,
    train: &[LabelledContext],
    test: &[LabelledContext],
    config: &EncoderPretrainConfig,
    mut on_step: impl FnMut(usize, f64),
) -> Result<EncoderReport> {
    config.validate()?;
    if train.is_empty() || test.is_empty() {
        return Err(invalid("encoder pretraining: no labelled contexts"));
    }
    let device = encoder.device();
    let (x, y) = features_and_targets(train)?;
    let (x, y) = (x.f_to_device(device)?, y.f_to_device(device)?);
    let mut opt = AdamW::new(encoder.trainable_parameters(), config.lr, 0.0)?;
    let mut final_loss = f64::NAN;
    for step in 0..config.steps {
        opt.zero_grad();
        let loss = encoder
            .phasic(&x)?
            .f_clamp(1e-6, 1.0 - 1e-6)?
            .f_binary_cross_entropy::<Tensor>(&y, None, tch::Reduction::Mean)?;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Err(invalid(format!(
                "encoder pretraining diverged at step {step} (loss {value})"
            )));
        }
        loss.f_backward()?;
        opt.step()?;
        final_loss = value;
        on_step(step, value);
    }
    opt.zero_grad();
    let majority = majority_class(train);
    Ok(EncoderReport {
        steps: config.steps,
        final_loss,
        train: score_encoder(encoder, train, majority)?,
        test: score_encoder(encoder, test, majority)?,
    })
}

/// Builds the labelled contexts of `config`'s two seed blocks and runs
/// [`pretrain_encoder`].
pub fn pretrain_encoder_on_dialogue(
    encoder: &EmotionalEncoder,
    env: &DialogueConfig,
    config: &EncoderPretrainConfig,
    on_step: impl FnMut(usize, f64),
) -> Result<EncoderReport> {
    let (train_seeds, test_seeds) = config.seeds();
    let train = dialogue_contexts(env, &train_seeds)?;
    let test = dialogue_contexts(env, &test_seeds)?;
    pretrain_encoder(encoder, &train, &test, config, on_step)
}

// ---------------------------------------------------------------------------
// The ERM's emotion heads on real labelled text
// ---------------------------------------------------------------------------

/// Settings of the ERM's supervised phase on labelled text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErmTextConfig {
    /// Passes over the training texts (0: skip the phase).
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    /// Training texts per class from GoEmotions' train split (and as many
    /// from DailyDialog when its files are given).
    pub per_class: usize,
    /// Held-out texts per class from GoEmotions' test split.
    pub test_per_class: usize,
}

impl Default for ErmTextConfig {
    fn default() -> Self {
        ErmTextConfig {
            // Chosen on GoEmotions dev with SmolLM2 (examples/erm_text_probe):
            // 8 / 20 / 40 epochs at lr 0.01 → dev accuracy 0.366 / 0.638 / 0.669.
            epochs: 40,
            lr: 1e-2,
            batch: 32,
            per_class: 200,
            test_per_class: 100,
        }
    }
}

/// The frozen model's read-out of `texts` (no grad), in batches of `batch`:
/// `(hidden [b, seq, h], mask [b, seq])` each.
fn read_texts(
    erm: &crate::modules::erm::EmotionalRewardModel,
    model: &mut emorl_lm::Model,
    texts: &[LabelledText],
    batch: usize,
) -> Result<Vec<(Tensor, Tensor, Tensor)>> {
    let device = model.device();
    let pad = model.tokenizer().pad_id();
    let mut out = Vec::new();
    for chunk in texts.chunks(batch.max(1)) {
        let seqs = chunk
            .iter()
            .map(|t| {
                let mut ids = model.tokenizer().encode(&t.text, true)?;
                ids.truncate(128);
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        if seqs.iter().any(Vec::is_empty) {
            return Err(invalid("erm text supervision: a text has no tokens"));
        }
        let (tokens, mask) = crate::batch::pad_left(&seqs, pad)?;
        let (tokens, mask) = (tokens.f_to_device(device)?, mask.f_to_device(device)?);
        let hidden = erm.read_hidden(model, &tokens, &mask)?;
        let mut targets = vec![0f32; chunk.len() * N_EMOTIONS];
        for (r, t) in chunk.iter().enumerate() {
            if t.class < N_EMOTIONS {
                targets[r * N_EMOTIONS + t.class] = 1.0;
            }
        }
        let targets = Tensor::f_from_slice(&targets)?
            .f_view([chunk.len() as i64, N_EMOTIONS as i64])?
            .f_to_device(device)?;
        out.push((hidden, mask, targets));
    }
    Ok(out)
}

/// The four emotion heads of the ERM on cached read-outs (neutral
/// conditioning, no tonic state).
fn erm_emotions(
    erm: &crate::modules::erm::EmotionalRewardModel,
    hidden: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let b = hidden.size()[0];
    let cond =
        crate::modules::emotion::EmotionState::neutral(b, hidden.device())?.conditioning()?;
    let out = erm.appraise(&erm.pool(hidden, mask)?, &cond, None)?;
    Ok(out.emotions.f_narrow(1, 0, N_EMOTIONS as i64)?)
}

fn score_erm(
    erm: &crate::modules::erm::EmotionalRewardModel,
    batches: &[(Tensor, Tensor, Tensor)],
    labels: &[LabelledText],
    majority: usize,
) -> Result<ClassScores> {
    let _g = tch::no_grad_guard();
    let mut predicted = Vec::with_capacity(labels.len());
    for (h, m, _) in batches {
        let e = erm_emotions(erm, h, m)?;
        let flat = Vec::<f32>::try_from(
            &e.f_to_device(tch::Device::Cpu)?
                .f_contiguous()?
                .f_view([-1])?,
        )?;
        predicted.extend(flat.chunks(N_EMOTIONS).map(predicted_class));
    }
    Ok(class_scores(
        &predicted,
        &labels.iter().map(|t| t.class).collect::<Vec<_>>(),
        majority,
    ))
}

/// Trains the ERM's fear, curiosity, anger and joy heads on `train`
/// (binary cross-entropy against the one-hot class, neutral = all zeros;
/// anxiety and confidence are left to the context targets) and scores them
/// on `train` and `test`.
pub fn pretrain_erm_on_text(
    erm: &crate::modules::erm::EmotionalRewardModel,
    model: &mut emorl_lm::Model,
    train: &[LabelledText],
    test: &[LabelledText],
    config: &ErmTextConfig,
) -> Result<(ClassScores, ClassScores)> {
    if train.is_empty() || test.is_empty() || config.batch == 0 {
        return Err(invalid(
            "erm text supervision: needs training and held-out texts and batch > 0",
        ));
    }
    let train_batches = read_texts(erm, model, train, config.batch)?;
    let test_batches = read_texts(erm, model, test, config.batch)?;
    let mut opt = AdamW::new(erm.params.trainable(), config.lr, 0.0)?;
    for epoch in 0..config.epochs {
        for (step, (h, m, y)) in train_batches.iter().enumerate() {
            opt.zero_grad();
            let loss = erm_emotions(erm, h, m)?
                .f_clamp(1e-6, 1.0 - 1e-6)?
                .f_binary_cross_entropy::<Tensor>(y, None, tch::Reduction::Mean)?;
            let value = loss.f_double_value(&[])?;
            if !value.is_finite() {
                return Err(invalid(format!(
                    "erm text supervision diverged (epoch {epoch}, batch {step}, loss {value})"
                )));
            }
            loss.f_backward()?;
            opt.step()?;
        }
    }
    opt.zero_grad();
    let majority = majority_of(train.iter().map(|t| t.class));
    Ok((
        score_erm(erm, &train_batches, train, majority)?,
        score_erm(erm, &test_batches, test, majority)?,
    ))
}

/// Where the ERM's text supervision came from and how well it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErmTextReport {
    pub goemotions: String,
    pub dailydialog: Option<String>,
    /// On the training texts.
    pub train: ClassScores,
    /// On GoEmotions dev texts (for choosing settings).
    pub dev: ClassScores,
    /// On held-out GoEmotions test texts (reported).
    pub test: ClassScores,
}

/// The ERM's text phase on real data: GoEmotions' train split (and, when
/// given, a DailyDialog dialogues file with its emotion labels beside it)
/// to learn from, GoEmotions' test split held out. `Ok(None)` for an agent
/// without an ERM or with `epochs = 0`.
pub fn pretrain_erm_on_corpora(
    agent: &mut crate::agent::LlmAgent,
    goemotions: &std::path::Path,
    dailydialog: Option<&std::path::Path>,
    config: &ErmTextConfig,
) -> Result<Option<ErmTextReport>> {
    if config.epochs == 0 {
        return Ok(None);
    }
    let crate::data::LabelledCorpora { train, dev, test } = crate::data::labelled_corpora(
        goemotions,
        dailydialog,
        config.per_class,
        config.test_per_class,
        "erm text supervision",
    )?;
    let (modules, model) = agent.parts_mut();
    let Some(erm) = &modules.erm else {
        return Ok(None);
    };
    let (fit, held) = pretrain_erm_on_text(erm, model, &train, &test, config)?;
    let dev_batches = read_texts(erm, model, &dev, config.batch)?;
    let majority = majority_of(train.iter().map(|t| t.class));
    Ok(Some(ErmTextReport {
        goemotions: goemotions.display().to_string(),
        dailydialog: dailydialog.map(|p| p.display().to_string()),
        train: fit,
        dev: score_erm(erm, &dev_batches, &dev, majority)?,
        test: held,
    }))
}
