//! Steering vectors: one direction per emotion and steered block, added to
//! the residual stream at the block's output on the response positions,
//! scaled by a learned per-emotion scale times the emotion state.
//!
//! * **Directions** are differences of means over real labelled text: at
//!   the steered block, the mean over GoEmotions train comments of the
//!   emotion (labelled with it and with no other of [`CLASSES`]) of each
//!   comment's mean read-out over its tokens, minus the same mean over
//!   `neutral` comments. The first `texts_per_class` comments of each class
//!   in file order are used; dev and test are never read (the judge is
//!   scored on test). Without GoEmotions files the written
//!   [`CONTRAST_PAIRS`] stand in, with a warning.
//! * **Norm**: each direction is rescaled to the mean norm `‖h‖` of the
//!   residual stream at that block over the positions of the same texts,
//!   so `scale × emotion = 1` adds one typical residual vector's length,
//!   whatever the model's width or depth. Attention sinks are left out of
//!   the means and the norm, which a response, coming after its prompt,
//!   does not hold: models park activations about a hundred times larger
//!   on a sequence's first token (SmolLM2 does, and on its second when the
//!   first is a word piece), so each text's first position is dropped, and
//!   so is any position whose norm at a steered block is over ten times the
//!   median of the others.
//! * **Positions**: only the response is steered (columns from the response
//!   start on, see [`emorl_lm::hooks`]). The prompt runs as in the frozen
//!   model, so the first response token is drawn from the frozen model's
//!   distribution and steering acts from the second on.

use std::path::Path;

use emorl_lm::{HookSite, Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::{goemotions_texts, CLASSES, NEUTRAL_CLASS};
use crate::error::Result;
use crate::modules::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::params::{invalid, ParamStore};

/// Written contrast pairs `(emotional, neutral)` per emotion, in
/// [`EMOTIONS`] order: the directions' stand-in when no GoEmotions files
/// are found.
pub const CONTRAST_PAIRS: [&[(&str, &str)]; N_EMOTIONS] = [
    &[
        (
            "I am scared, something dangerous is coming.",
            "I am here, something is coming.",
        ),
        (
            "She was afraid of the dark and trembled.",
            "She was in the dark and sat.",
        ),
        (
            "Be careful, this could hurt you badly.",
            "Look, this is a thing you have.",
        ),
        (
            "He panicked and ran from the terrible monster.",
            "He walked and went past the big tree.",
        ),
    ],
    &[
        (
            "I wonder how this works, tell me more!",
            "This works, that is all.",
        ),
        (
            "She was curious and asked why the sky is blue.",
            "She looked and said the sky is blue.",
        ),
        (
            "What a fascinating question, let us explore it.",
            "That is a question, here is the answer.",
        ),
        (
            "He wanted to discover what was inside the box.",
            "He put the box on the table.",
        ),
    ],
    &[
        (
            "I am furious, this is the third time it failed!",
            "I see, this is the third time it ran.",
        ),
        (
            "She was angry and shouted at the broken toy.",
            "She was there and looked at the toy.",
        ),
        (
            "Stop it, I hate when you ignore me!",
            "Okay, I see that you are busy.",
        ),
        (
            "He stomped his feet, mad and annoyed.",
            "He moved his feet, calm and still.",
        ),
    ],
    &[
        ("I am so happy, thank you so much!", "I am here, thank you."),
        (
            "She laughed with joy and hugged her friend.",
            "She stood and looked at her friend.",
        ),
        (
            "What a wonderful day, everything is great!",
            "It is a day, things are as usual.",
        ),
        (
            "He smiled, delighted by the lovely gift.",
            "He looked at the gift on the table.",
        ),
    ],
];

/// Configuration of the [`SteeringVectors`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringConfig {
    /// Blocks whose output is steered (negative: from the end, `-1` the
    /// last); empty: the middle block. Default: the fourth-last and the last
    /// block (chosen on the tuning prompts, `docs/llm-design-notes.md`).
    pub layers: Vec<i64>,
    /// Initial per-emotion scale, in units of the steered block's typical
    /// residual norm (0: the model is unchanged until trained). Default 0.5,
    /// chosen on the tuning prompts (`docs/llm-design-notes.md`).
    pub init_scale: f64,
    /// GoEmotions train comments per class (each emotion and neutral) the
    /// directions are computed from.
    pub texts_per_class: usize,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            layers: vec![-4, -1],
            init_scale: 0.5,
            texts_per_class: 100,
        }
    }
}

/// What the directions were computed from (checkpoints record it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DirectionSource {
    /// GoEmotions train comments read from `dir`; `texts[c]` of class
    /// `CLASSES[c]` (fear, curiosity, anger, joy, neutral).
    GoEmotions { dir: String, texts: Vec<usize> },
    /// The written [`CONTRAST_PAIRS`].
    WrittenPairs,
}

impl std::fmt::Display for DirectionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectionSource::GoEmotions { dir, texts } => {
                write!(f, "GoEmotions train comments {texts:?} from {dir}")
            }
            DirectionSource::WrittenPairs => f.write_str("the written contrast pairs"),
        }
    }
}

/// Emotion directions and their learned scales.
#[derive(Debug)]
pub struct SteeringVectors {
    pub(crate) params: ParamStore,
    layers: Vec<usize>,
    /// `[n_layers_steered, N_EMOTIONS, hidden]` (a buffer, not trained).
    directions: Tensor,
    /// `[N_EMOTIONS]`, trained.
    scales: Tensor,
    source: DirectionSource,
}

/// Texts per read-out forward pass.
const READ_BATCH: usize = 16;
/// Tokens read per text (GoEmotions comments are shorter).
const MAX_TOKENS: usize = 128;
/// Positions whose residual norm exceeds this many times the batch's
/// median are attention sinks, left out of the means and the norm.
const SINK_RATIO: f64 = 10.0;

/// Read-outs of groups of texts at the steered blocks.
struct GroupMeans {
    /// `[n_layers_steered, n_groups, hidden]`: per group, the mean over its
    /// texts of each text's mean read-out.
    means: Tensor,
    /// `[n_layers_steered]`: the mean `‖h‖` over every position kept.
    norms: Tensor,
    /// Texts with at least one position kept, per group.
    counts: Vec<usize>,
}

fn group_means(model: &mut Model, layers: &[usize], groups: &[Vec<&str>]) -> Result<GroupMeans> {
    let device = model.device();
    let hidden = model.hidden_size() as i64;
    let pad = model.tokenizer().pad_id();
    let mut hooks = Hooks::new();
    for &l in layers {
        hooks = hooks.with_readout(l + 1);
    }
    let zeros = || Tensor::f_zeros([hidden], (Kind::Float, device));
    let mut means = Vec::with_capacity(groups.len());
    let mut counts = Vec::with_capacity(groups.len());
    let mut norm_sum = vec![0f64; layers.len()];
    let mut positions = 0f64;
    for group in groups {
        let mut sums = layers
            .iter()
            .map(|_| zeros())
            .collect::<Result<Vec<_>, _>>()?;
        let mut count = 0usize;
        let mut seqs = group
            .iter()
            .map(|text| {
                let mut ids = model.tokenizer().encode(text, true)?;
                ids.truncate(MAX_TOKENS);
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        seqs.retain(|s| s.len() > 1);
        // Similar lengths together waste less on padding; a mean ignores order.
        seqs.sort_by_key(Vec::len);
        for seqs in seqs.chunks(READ_BATCH) {
            let (tokens, mask) = crate::batch::pad_left(seqs, pad)?;
            let (tokens, mask) = (tokens.f_to_device(device)?, mask.f_to_device(device)?);
            let out = model.read_out(&tokens, Some(&mask), &hooks)?;
            let hs = layers
                .iter()
                .map(|&l| {
                    out.iter()
                        .find(|(index, _)| *index == l + 1)
                        .ok_or_else(|| invalid("steering: the model returned no read-out"))
                        .and_then(|(_, h)| Ok(h.f_to_kind(Kind::Float)?))
                })
                .collect::<Result<Vec<_>>>()?;
            let norms = hs
                .iter()
                .map(|h| {
                    h.f_square()?
                        .f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)?
                        .f_sqrt()
                })
                .collect::<Result<Vec<_>, _>>()?; // [b, s, 1] each
                                                  // Every position but each text's first, then without the sinks
                                                  // (see the module documentation).
            let width = tokens.size()[1] as usize;
            let mut after_first = vec![false; seqs.len() * width];
            for (r, ids) in seqs.iter().enumerate() {
                after_first[r * width + width + 1 - ids.len()..(r + 1) * width].fill(true);
            }
            let after_first = Tensor::f_from_slice(&after_first)?
                .f_view([seqs.len() as i64, width as i64, 1])?
                .f_to_device(device)?;
            let mut keep = after_first.f_to_kind(Kind::Float)?;
            for nrm in &norms {
                let median = nrm.f_masked_select(&after_first)?.f_median()?;
                let typical = nrm.f_le_tensor(&median.f_mul_scalar(SINK_RATIO)?)?;
                keep = keep.f_mul(&typical.f_to_kind(Kind::Float)?)?;
            }
            let n = keep.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?; // [b, 1]
            let n_safe = n.f_clamp_min(1.0)?;
            for (i, (h, nrm)) in hs.iter().zip(&norms).enumerate() {
                // Texts without a kept position add zeros and are not counted.
                let per_text = h
                    .f_mul(&keep)?
                    .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
                    .f_div(&n_safe)?;
                sums[i] = sums[i].f_add(&per_text.f_sum_dim_intlist(
                    [0i64].as_slice(),
                    false,
                    Kind::Float,
                )?)?;
                norm_sum[i] += nrm.f_mul(&keep)?.f_sum(Kind::Float)?.f_double_value(&[])?;
            }
            positions += n.f_sum(Kind::Float)?.f_double_value(&[])?;
            count += n.f_gt(0.0)?.f_sum(Kind::Int64)?.f_int64_value(&[])? as usize;
        }
        if count == 0 {
            return Err(invalid(
                "steering: a class has no text of more than one token",
            ));
        }
        means.push(
            sums.into_iter()
                .map(|s| s.f_div_scalar(count as f64))
                .collect::<Result<Vec<_>, _>>()?,
        );
        counts.push(count);
    }
    // [groups][layers] -> [layers, groups, hidden]
    let per_layer = (0..layers.len())
        .map(|i| Tensor::f_stack(&means.iter().map(|m| &m[i]).collect::<Vec<_>>(), 0))
        .collect::<Result<Vec<_>, _>>()?;
    let norms: Vec<f32> = norm_sum.iter().map(|s| (s / positions) as f32).collect();
    Ok(GroupMeans {
        means: Tensor::f_stack(&per_layer, 0)?,
        norms: Tensor::f_from_slice(&norms)?.f_to_device(device)?,
        counts,
    })
}

/// `[n_layers_steered, N_EMOTIONS, hidden]`: group `a` minus group `b` for
/// each emotion's `(a, b)`, rescaled to the layer's mean residual norm.
fn normalised_differences(
    g: &GroupMeans,
    contrasts: &[(usize, usize); N_EMOTIONS],
) -> Result<Tensor> {
    let index = |f: fn(&(usize, usize)) -> usize| -> Result<Tensor> {
        let i: Vec<i64> = contrasts.iter().map(|c| f(c) as i64).collect();
        Ok(Tensor::f_from_slice(&i)?.f_to_device(g.means.device())?)
    };
    let d = g
        .means
        .f_index_select(1, &index(|c| c.0)?)?
        .f_sub(&g.means.f_index_select(1, &index(|c| c.1)?)?)?;
    let length = d
        .f_square()?
        .f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)?
        .f_sqrt()?
        .f_clamp_min(1e-12)?;
    Ok(d.f_div(&length)?.f_mul(&g.norms.f_view([-1, 1, 1])?)?)
}

fn steered_layers(model: &Model, config: &SteeringConfig) -> Result<Vec<usize>> {
    super::chosen_layers(model, &config.layers, "steering")
}

impl SteeringVectors {
    /// Computes the directions on `model` (no gradients) from GoEmotions
    /// where [`crate::data::goemotions_dir`] finds it, else from the
    /// written [`CONTRAST_PAIRS`] with a warning.
    pub fn new(model: &mut Model, config: &SteeringConfig, seed: u64) -> Result<Self> {
        let dir = crate::data::goemotions_dir();
        Self::from_goemotions_or_pairs(model, config, seed, dir.as_deref())
    }

    /// [`SteeringVectors::from_goemotions`] on `dir`, or, with `None`,
    /// [`SteeringVectors::from_written_pairs`] with a warning.
    pub fn from_goemotions_or_pairs(
        model: &mut Model,
        config: &SteeringConfig,
        seed: u64,
        dir: Option<&Path>,
    ) -> Result<Self> {
        // A bad layer is an error before any direction is computed.
        steered_layers(model, config)?;
        match dir {
            Some(dir) => Self::from_goemotions(model, config, seed, dir),
            None => {
                tracing::warn!(
                    "steering: no GoEmotions files found (set EMORL_GOEMOTIONS_DIR or put them \
                     in shared/data/goemotions); directions from the written contrast pairs"
                );
                Self::from_written_pairs(model, config, seed)
            }
        }
    }

    /// Directions from the GoEmotions train split in `dir` (`labels.txt`,
    /// `train.tsv`; nothing else is read).
    pub fn from_goemotions(
        model: &mut Model,
        config: &SteeringConfig,
        seed: u64,
        dir: &Path,
    ) -> Result<Self> {
        if config.texts_per_class == 0 {
            return Err(invalid("steering: texts_per_class must be > 0"));
        }
        let layers = steered_layers(model, config)?;
        let labels = emorl_text::load_labels(dir.join("labels.txt"))?;
        let train = emorl_text::load_split(dir.join("train.tsv"), labels.len())?;
        let texts = goemotions_texts(&labels, &train, config.texts_per_class);
        let groups: Vec<Vec<&str>> = (0..CLASSES.len())
            .map(|c| {
                texts
                    .iter()
                    .filter(|t| t.class == c)
                    .map(|t| t.text.as_str())
                    .collect()
            })
            .collect();
        let start = std::time::Instant::now();
        let g = {
            let _g = tch::no_grad_guard();
            group_means(model, &layers, &groups)?
        };
        let contrasts = std::array::from_fn(|e| (e, NEUTRAL_CLASS));
        let directions = normalised_differences(&g, &contrasts)?;
        let source = DirectionSource::GoEmotions {
            dir: dir.display().to_string(),
            texts: g.counts,
        };
        tracing::info!(
            seconds = start.elapsed().as_secs_f64(),
            "steering directions from {source}"
        );
        Self::build(model, config, seed, layers, &directions, source)
    }

    /// Directions from the written [`CONTRAST_PAIRS`]: each emotion's
    /// emotional sentences minus their neutral counterparts.
    pub fn from_written_pairs(
        model: &mut Model,
        config: &SteeringConfig,
        seed: u64,
    ) -> Result<Self> {
        let layers = steered_layers(model, config)?;
        let mut groups: Vec<Vec<&str>> = Vec::with_capacity(2 * N_EMOTIONS);
        for pairs in CONTRAST_PAIRS {
            groups.push(pairs.iter().map(|p| p.0).collect());
        }
        for pairs in CONTRAST_PAIRS {
            groups.push(pairs.iter().map(|p| p.1).collect());
        }
        let g = {
            let _g = tch::no_grad_guard();
            group_means(model, &layers, &groups)?
        };
        let contrasts = std::array::from_fn(|e| (e, N_EMOTIONS + e));
        let directions = normalised_differences(&g, &contrasts)?;
        Self::build(
            model,
            config,
            seed,
            layers,
            &directions,
            DirectionSource::WrittenPairs,
        )
    }

    /// Zero directions of the right shape, for a checkpoint computed from
    /// `source` to overwrite (nothing is read or computed).
    pub(crate) fn to_restore(
        model: &Model,
        config: &SteeringConfig,
        seed: u64,
        source: DirectionSource,
    ) -> Result<Self> {
        let layers = steered_layers(model, config)?;
        let directions = Tensor::f_zeros(
            [
                layers.len() as i64,
                N_EMOTIONS as i64,
                model.hidden_size() as i64,
            ],
            (Kind::Float, model.device()),
        )?;
        Self::build(model, config, seed, layers, &directions, source)
    }

    fn build(
        model: &Model,
        config: &SteeringConfig,
        seed: u64,
        layers: Vec<usize>,
        directions: &Tensor,
        source: DirectionSource,
    ) -> Result<Self> {
        let mut params = ParamStore::new(seed, "steering", model.device());
        let directions = params.buffer("directions", directions)?;
        let scales = params.constant("scales", &[N_EMOTIONS as i64], config.init_scale)?;
        Ok(SteeringVectors {
            params,
            layers,
            directions,
            scales,
            source,
        })
    }

    /// The steered blocks.
    pub fn layers(&self) -> &[usize] {
        &self.layers
    }

    /// What the directions were computed from.
    pub fn source(&self) -> &DirectionSource {
        &self.source
    }

    /// The direction of `emotion` (an [`EMOTIONS`] name) at steered block
    /// number `i`, `[hidden]`.
    pub fn direction(&self, i: usize, emotion: &str) -> Result<Tensor> {
        let e = EMOTIONS
            .iter()
            .position(|&n| n == emotion)
            .ok_or_else(|| invalid(format!("unknown emotion `{emotion}`")))?;
        Ok(self
            .directions
            .f_select(0, i as i64)?
            .f_select(0, e as i64)?)
    }

    /// The learned per-emotion scales, `[N_EMOTIONS]`.
    pub fn scales(&self) -> &Tensor {
        &self.scales
    }

    /// Registers the steering vectors: at each steered block,
    /// `Σ_e scale_e · emotion_e · direction_e` (`[batch, 1, hidden]`) from
    /// column `response_start` on (where the response begins; see
    /// [`crate::Modules::hooks`]).
    pub fn attach<'a>(
        &self,
        hooks: Hooks<'a>,
        emotion: &EmotionState,
        response_start: usize,
    ) -> Result<Hooks<'a>> {
        let weights = emotion.phasic.f_mul(&self.scales.f_unsqueeze(0)?)?; // [b, E]
        let mut h = hooks;
        for (i, &l) in self.layers.iter().enumerate() {
            let v = weights
                .f_matmul(&self.directions.f_select(0, i as i64)?)?
                .f_unsqueeze(1)?;
            h = h.with_steering_from(l, HookSite::AfterMlp, v, 1.0, response_start);
        }
        Ok(h)
    }
}
