//! A text-emotion classifier that shares nothing with a language model:
//! hashed n-gram features ([`crate::ngram`]) and one binary logistic
//! regression per label, trained with per-coordinate AdaGrad.
//!
//! It judges generated text, so it must be cheap, deterministic and
//! independent of the generator: it is trained on GoEmotions only, in
//! seconds, and the same data and config give bit-identical weights.
//! Each label's regression shares no parameters with the others, so the
//! labels are trained side by side (in parallel) over the same shuffled
//! order per epoch; this is the same computation as one joint pass over the
//! examples that updates every label.
//!
//! Length: one classifier (the one-vs-rest logistic regressions and their
//! training, per-label decision thresholds tuned on dev, per-label and
//! macro/micro F1) kept in one file so the judge's whole computation reads
//! top to bottom.

use crate::error::TextError;
use crate::goemotions::{Example, GoEmotions};
use crate::ngram::{features, DEFAULT_HASH_BITS};
use emorl_core::rng::{EmoRng, RngKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::time::Instant;

/// Hyperparameters of [`TextClassifier::train`]. Defaults were chosen on the
/// GoEmotions dev split (see the crate README).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierConfig {
    /// Feature buckets are `2^hash_bits` (1..=26).
    pub hash_bits: u32,
    /// Passes over the shuffled training set.
    pub epochs: usize,
    /// AdaGrad base learning rate.
    pub learning_rate: f32,
    /// L2 penalty, applied to the coordinates an example touches.
    pub l2: f32,
    /// Seed of the shuffling generator.
    pub seed: u64,
    /// Which generator shuffles the examples.
    pub rng: RngKind,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            hash_bits: DEFAULT_HASH_BITS,
            epochs: 8,
            learning_rate: 0.2,
            l2: 3e-4,
            seed: 0,
            rng: RngKind::Fast,
        }
    }
}

impl ClassifierConfig {
    fn validate(&self) -> Result<(), TextError> {
        let bad = |what: String| Err(TextError::InvalidInput(what));
        if !(1..=26).contains(&self.hash_bits) {
            return bad(format!("hash_bits {} not in 1..=26", self.hash_bits));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("learning_rate {} must be > 0", self.learning_rate));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad(format!("l2 {} must be >= 0", self.l2));
        }
        Ok(())
    }

    fn dim(&self) -> usize {
        1usize << self.hash_bits
    }
}

/// Starting value of AdaGrad's squared-gradient sums: keeps the first step
/// on a coordinate from being a full `learning_rate` whatever its gradient.
const ADAGRAD_INIT: f32 = 0.1;
/// Candidate thresholds: 0.05, 0.10, ..., 0.95.
const THRESHOLD_STEPS: std::ops::RangeInclusive<u32> = 1..=19;
const THRESHOLD_DIVISIONS: f64 = 20.0;
const DEFAULT_THRESHOLD: f64 = 0.5;

/// One-vs-rest logistic regression over hashed n-grams, with a decision
/// threshold per label.
#[derive(Clone, Debug, PartialEq)]
pub struct TextClassifier {
    labels: Vec<String>,
    config: ClassifierConfig,
    /// Label-major: label `l`'s weights are `weights[l * dim..(l + 1) * dim]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    thresholds: Vec<f64>,
}

/// Precision, recall and F1 of one label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// The label's name.
    pub label: String,
    /// Correct positives over predicted positives (0 if none predicted).
    pub precision: f64,
    /// Correct positives over actual positives (0 if none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 if both are 0).
    pub f1: f64,
    /// Number of examples that have the label.
    pub support: usize,
}

/// Multi-label scores: a label is predicted when its probability is at
/// least its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// One score per label, in the classifier's label order.
    pub per_label: Vec<LabelScore>,
    /// Unweighted mean of the per-label F1.
    pub macro_f1: f64,
    /// F1 of the true/false positives and negatives pooled over labels.
    pub micro_f1: f64,
}

impl TextClassifier {
    /// Trains one regression per label; `targets[i]` lists the label indices
    /// (into `labels`) of `texts[i]`, and may be empty (all negative).
    pub fn train(
        texts: &[&str],
        targets: &[Vec<usize>],
        labels: Vec<String>,
        config: &ClassifierConfig,
    ) -> Result<Self, TextError> {
        config.validate()?;
        check_targets(texts.len(), targets, labels.len())?;
        if texts.is_empty() {
            return Err(TextError::InvalidInput("no training examples".into()));
        }
        if texts.len() > u32::MAX as usize {
            return Err(TextError::InvalidInput("too many training examples".into()));
        }
        let start = Instant::now();
        let xs: Vec<Vec<(u32, f32)>> = texts
            .par_iter()
            .map(|t| features(t, config.hash_bits))
            .collect();
        let n_labels = labels.len();
        let mut positive = vec![vec![false; texts.len()]; n_labels];
        for (i, target) in targets.iter().enumerate() {
            for &l in target {
                positive[l][i] = true;
            }
        }
        let mut rng = EmoRng::new(config.rng, config.seed);
        let mut order: Vec<u32> = (0..texts.len() as u32).collect();
        let orders: Vec<Vec<u32>> = (0..config.epochs)
            .map(|_| {
                rng.shuffle(&mut order);
                order.clone()
            })
            .collect();

        let dim = config.dim();
        let mut weights = vec![0.0f32; dim * n_labels];
        let mut bias = vec![0.0f32; n_labels];
        weights
            .par_chunks_mut(dim)
            .zip(bias.par_iter_mut())
            .zip(positive.par_iter())
            .for_each(|((w, b), y)| train_binary(w, b, &xs, y, &orders, config));
        tracing::info!(
            examples = texts.len(),
            labels = n_labels,
            epochs = config.epochs,
            seconds = start.elapsed().as_secs_f64(),
            "trained text classifier"
        );
        Ok(TextClassifier {
            thresholds: vec![DEFAULT_THRESHOLD; n_labels],
            labels,
            config: config.clone(),
            weights,
            bias,
        })
    }

    /// Label names, in output order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The configuration it was trained with.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Decision threshold per label.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Weights of label `label` (one per feature bucket), if it exists.
    pub fn weights(&self, label: usize) -> Option<&[f32]> {
        let dim = self.config.dim();
        self.weights.get(label * dim..(label + 1) * dim)
    }

    /// Label `label`'s weights; only called with indices below `labels.len()`.
    fn label_weights(&self, label: usize) -> &[f32] {
        let dim = self.config.dim();
        &self.weights[label * dim..(label + 1) * dim]
    }

    /// Bias per label.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// Replaces the thresholds (one per label, each in [0, 1]).
    pub fn set_thresholds(&mut self, thresholds: Vec<f64>) -> Result<(), TextError> {
        if thresholds.len() != self.labels.len()
            || thresholds.iter().any(|t| !(0.0..=1.0).contains(t))
        {
            return Err(TextError::InvalidInput(format!(
                "need {} thresholds in [0, 1], got {thresholds:?}",
                self.labels.len()
            )));
        }
        self.thresholds = thresholds;
        Ok(())
    }

    /// Probability of each label for `text` (independent sigmoids).
    pub fn probabilities(&self, text: &str) -> Vec<f64> {
        let x = features(text, self.config.hash_bits);
        (0..self.labels.len())
            .map(|l| sigmoid(self.bias[l] + dot(self.label_weights(l), &x)) as f64)
            .collect()
    }

    /// Whether each label is predicted for `text` (probability ≥ threshold).
    pub fn predict(&self, text: &str) -> Vec<bool> {
        self.probabilities(text)
            .iter()
            .zip(&self.thresholds)
            .map(|(p, t)| p >= t)
            .collect()
    }

    /// Sets each label's threshold to the grid value (0.05..=0.95, step
    /// 0.05) with the highest F1 on these examples; a label without
    /// positives here keeps its threshold.
    pub fn tune_thresholds(
        &mut self,
        texts: &[&str],
        targets: &[Vec<usize>],
    ) -> Result<(), TextError> {
        check_targets(texts.len(), targets, self.labels.len())?;
        let probs = self.all_probabilities(texts);
        for l in 0..self.labels.len() {
            let truth: Vec<bool> = targets.iter().map(|t| t.contains(&l)).collect();
            if !truth.iter().any(|&y| y) {
                continue;
            }
            let mut best = (f64::NEG_INFINITY, self.thresholds[l]);
            for step in THRESHOLD_STEPS {
                let threshold = step as f64 / THRESHOLD_DIVISIONS;
                let mut counts = Counts::default();
                for (p, &y) in probs.iter().zip(&truth) {
                    counts.add(p[l] >= threshold, y);
                }
                if counts.f1() > best.0 {
                    best = (counts.f1(), threshold);
                }
            }
            self.thresholds[l] = best.1;
        }
        Ok(())
    }

    /// Per-label precision, recall and F1, and their macro and micro F1.
    pub fn evaluate(
        &self,
        texts: &[&str],
        targets: &[Vec<usize>],
    ) -> Result<Evaluation, TextError> {
        check_targets(texts.len(), targets, self.labels.len())?;
        let probs = self.all_probabilities(texts);
        let mut counts = vec![Counts::default(); self.labels.len()];
        for (p, target) in probs.iter().zip(targets) {
            for (l, c) in counts.iter_mut().enumerate() {
                c.add(p[l] >= self.thresholds[l], target.contains(&l));
            }
        }
        let per_label: Vec<LabelScore> = counts
            .iter()
            .zip(&self.labels)
            .map(|(c, label)| LabelScore {
                label: label.clone(),
                precision: ratio(c.tp, c.tp + c.fp),
                recall: ratio(c.tp, c.tp + c.fn_),
                f1: c.f1(),
                support: c.tp + c.fn_,
            })
            .collect();
        let pooled = counts.iter().fold(Counts::default(), |a, c| Counts {
            tp: a.tp + c.tp,
            fp: a.fp + c.fp,
            fn_: a.fn_ + c.fn_,
        });
        Ok(Evaluation {
            macro_f1: per_label.iter().map(|s| s.f1).sum::<f64>() / per_label.len().max(1) as f64,
            micro_f1: pooled.f1(),
            per_label,
        })
    }

    fn all_probabilities(&self, texts: &[&str]) -> Vec<Vec<f64>> {
        texts.par_iter().map(|t| self.probabilities(t)).collect()
    }
}

/// AdaGrad logistic regression for one label over the epochs' orders.
fn train_binary(
    w: &mut [f32],
    b: &mut f32,
    xs: &[Vec<(u32, f32)>],
    y: &[bool],
    orders: &[Vec<u32>],
    config: &ClassifierConfig,
) {
    let lr = config.learning_rate;
    let l2 = config.l2;
    // Start from the label's base rate so early epochs learn words, not the prior.
    let positives = y.iter().filter(|&&p| p).count() as f32;
    let prior = (positives + 1.0) / (y.len() as f32 + 2.0);
    *b = (prior / (1.0 - prior)).ln();
    let mut acc = vec![ADAGRAD_INIT; w.len()];
    let mut acc_b = ADAGRAD_INIT;
    for order in orders {
        for &i in order {
            let x = &xs[i as usize];
            let target = if y[i as usize] { 1.0 } else { 0.0 };
            let g = sigmoid(*b + dot(w, x)) - target;
            for &(j, v) in x {
                let j = j as usize;
                let grad = g * v + l2 * w[j];
                acc[j] += grad * grad;
                w[j] -= lr * grad / acc[j].sqrt();
            }
            acc_b += g * g;
            *b -= lr * g / acc_b.sqrt();
        }
    }
}

fn dot(w: &[f32], x: &[(u32, f32)]) -> f32 {
    x.iter().map(|&(j, v)| w[j as usize] * v).sum()
}

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn check_targets(n_texts: usize, targets: &[Vec<usize>], n_labels: usize) -> Result<(), TextError> {
    if n_labels == 0 {
        return Err(TextError::InvalidInput("no labels".into()));
    }
    if targets.len() != n_texts {
        return Err(TextError::InvalidInput(format!(
            "{n_texts} texts but {} target lists",
            targets.len()
        )));
    }
    if let Some((i, &l)) = targets
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.iter().find(|&&l| l >= n_labels).map(|l| (i, l)))
    {
        return Err(TextError::InvalidInput(format!(
            "example {i} has label index {l}, but there are {n_labels} labels"
        )));
    }
    Ok(())
}

/// True positives, false positives and false negatives of one label.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

impl fmt::Display for Evaluation {
    /// A fixed-width table: one row per label, then macro and micro F1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>9} {:>9} {:>9} {:>8}",
            "label", "precision", "recall", "f1", "support"
        )?;
        for s in &self.per_label {
            writeln!(
                f,
                "{:<16} {:>9.3} {:>9.3} {:>9.3} {:>8}",
                s.label, s.precision, s.recall, s.f1, s.support
            )?;
        }
        writeln!(f, "{:<16} {:>29.3}", "macro-F1", self.macro_f1)?;
        write!(f, "{:<16} {:>29.3}", "micro-F1", self.micro_f1)
    }
}

/// Trains the judge on GoEmotions for the given label names: train on the
/// train split, thresholds tuned on dev; returns the classifier and its
/// (test, dev) evaluations. Examples with none of the labels stay in as
/// all-negative, so the judge also learns what none of them looks like.
pub fn goemotions_judge(
    data: &GoEmotions,
    labels: &[&str],
    config: &ClassifierConfig,
) -> Result<(TextClassifier, Evaluation, Evaluation), TextError> {
    let indices = labels
        .iter()
        .map(|&name| {
            data.label_index(name)
                .ok_or_else(|| TextError::UnknownLabel(name.into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (train_x, train_y) = judge_split(&data.train, &indices);
    let (dev_x, dev_y) = judge_split(&data.dev, &indices);
    let (test_x, test_y) = judge_split(&data.test, &indices);
    let names = labels.iter().map(|s| s.to_string()).collect();
    let mut model = TextClassifier::train(&train_x, &train_y, names, config)?;
    model.tune_thresholds(&dev_x, &dev_y)?;
    let dev = model.evaluate(&dev_x, &dev_y)?;
    let test = model.evaluate(&test_x, &test_y)?;
    Ok((model, test, dev))
}

/// Texts and targets of one split, where target `k` means `indices[k]`.
fn judge_split<'a>(examples: &'a [Example], indices: &[usize]) -> (Vec<&'a str>, Vec<Vec<usize>>) {
    let texts = examples.iter().map(|e| e.text.as_str()).collect();
    let targets = examples
        .iter()
        .map(|e| {
            (0..indices.len())
                .filter(|&k| e.labels.contains(&indices[k]))
                .collect()
        })
        .collect();
    (texts, targets)
}

/// First bytes of a saved classifier.
const MAGIC: &[u8; 8] = b"EMORLTXC";
/// Format version written by [`TextClassifier::save`].
const FORMAT_VERSION: u32 = 1;

/// The JSON part of a saved classifier; weights and biases follow as raw
/// little-endian f32 so they come back bit for bit.
#[derive(Serialize, Deserialize)]
struct SavedHeader {
    labels: Vec<String>,
    config: ClassifierConfig,
    thresholds: Vec<f64>,
}

impl TextClassifier {
    /// Writes the classifier: magic, version (u32), header length (u64), a
    /// JSON header (labels, config, thresholds), weights and biases as
    /// little-endian f32, then an FNV-1a checksum (u64) of all that precedes.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TextError> {
        let path = path.as_ref();
        let header = serde_json::to_vec(&SavedHeader {
            labels: self.labels.clone(),
            config: self.config.clone(),
            thresholds: self.thresholds.clone(),
        })
        .map_err(|e| TextError::InvalidInput(format!("cannot encode header: {e}")))?;
        let mut buf =
            Vec::with_capacity(32 + header.len() + 4 * (self.weights.len() + self.bias.len()));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
        buf.extend_from_slice(&header);
        for v in self.weights.iter().chain(&self.bias) {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let checksum = fnv1a(&buf);
        buf.extend_from_slice(&checksum.to_le_bytes());
        std::fs::write(path, buf).map_err(|source| TextError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a classifier written by [`TextClassifier::save`]; a truncated,
    /// altered or foreign file is a [`TextError::CorruptModel`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TextError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TextError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        decode(&bytes).map_err(|problem| TextError::CorruptModel {
            path: path.to_path_buf(),
            problem,
        })
    }
}

/// The inverse of `save`'s encoding; errors say what is wrong.
fn decode(bytes: &[u8]) -> Result<TextClassifier, String> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err("wrong magic bytes".into());
    }
    let version = u32::from_le_bytes(r.array()?);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let (body, stored) = bytes.split_at(bytes.len().saturating_sub(8));
    let stored = u64::from_le_bytes(stored.try_into().map_err(|_| "file too short")?);
    if fnv1a(body) != stored {
        return Err("checksum mismatch (file altered or truncated)".into());
    }
    let header_len =
        usize::try_from(u64::from_le_bytes(r.array()?)).map_err(|_| "header too long")?;
    let header: SavedHeader =
        serde_json::from_slice(r.take(header_len)?).map_err(|e| format!("bad header: {e}"))?;
    header.config.validate().map_err(|e| e.to_string())?;
    let n_labels = header.labels.len();
    if n_labels == 0 || header.thresholds.len() != n_labels {
        return Err(format!(
            "{n_labels} labels but {} thresholds",
            header.thresholds.len()
        ));
    }
    let n_weights = n_labels * header.config.dim();
    let expected = r.pos + 4 * (n_weights + n_labels) + 8;
    if bytes.len() != expected {
        return Err(format!("{} bytes, expected {expected}", bytes.len()));
    }
    let mut floats = |n: usize| -> Result<Vec<f32>, String> {
        (0..n).map(|_| r.array().map(f32::from_le_bytes)).collect()
    };
    let weights = floats(n_weights)?;
    let bias = floats(n_labels)?;
    Ok(TextClassifier {
        labels: header.labels,
        config: header.config,
        weights,
        bias,
        thresholds: header.thresholds,
    })
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end =
            end.ok_or_else(|| format!("file ends before byte {}", self.pos.saturating_add(n)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

/// FNV-1a (64-bit) of a byte string, the file checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
