//! Steering vectors: one direction per emotion and chosen layer, the mean
//! read-out difference between emotional and neutral versions of the same
//! prompts, added to the residual stream scaled by a learned per-emotion
//! scale times the emotion state.

use emorl_lm::{HookSite, Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::modules::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::params::{invalid, ParamStore};

/// Contrastive prompt pairs `(emotional, neutral)` per emotion, in
/// [`EMOTIONS`] order.
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
    /// Blocks whose output is steered; empty: the middle block.
    pub layers: Vec<usize>,
    /// Initial per-emotion scale (0: the model is unchanged until trained).
    pub init_scale: f64,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            layers: Vec::new(),
            init_scale: 0.0,
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
}

/// Mean read-out of `prompts` at `index` (over prompts and positions): `[hidden]`.
fn mean_readout(model: &mut Model, prompts: &[&str], index: usize) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for p in prompts {
        let ids = model.tokenizer().encode(p, true)?;
        let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        let t = Tensor::f_from_slice(&ids)?
            .f_view([1, ids.len() as i64])?
            .f_to_device(model.device())?;
        let hooks = Hooks::new().with_readout(index);
        let h = match model.read_out(&t, None, &hooks)?.into_iter().next() {
            Some((_, h)) => h,
            None => return Err(invalid("steering: the model returned no read-out")),
        };
        let m = h
            .f_to_kind(Kind::Float)?
            .f_mean_dim([0i64, 1].as_slice(), false, Kind::Float)?;
        sum = Some(match sum {
            Some(s) => s.f_add(&m)?,
            None => m,
        });
    }
    match sum {
        Some(s) => Ok(s.f_div_scalar(prompts.len() as f64)?),
        None => Err(invalid("steering: no prompts")),
    }
}

impl SteeringVectors {
    /// Computes the directions on `model` (no gradients) from [`CONTRAST_PAIRS`].
    pub fn new(model: &mut Model, config: &SteeringConfig, seed: u64) -> Result<Self> {
        let n = model.n_layers();
        let layers = if config.layers.is_empty() {
            vec![n / 2]
        } else {
            config.layers.clone()
        };
        if let Some(&l) = layers.iter().find(|&&l| l >= n) {
            return Err(invalid(format!(
                "steering: layer {l} is past the model's {n} layers"
            )));
        }
        let _g = tch::no_grad_guard();
        let mut per_layer = Vec::with_capacity(layers.len());
        for &l in &layers {
            let mut per_emotion = Vec::with_capacity(N_EMOTIONS);
            for pairs in CONTRAST_PAIRS {
                let emo: Vec<&str> = pairs.iter().map(|p| p.0).collect();
                let neu: Vec<&str> = pairs.iter().map(|p| p.1).collect();
                let d =
                    mean_readout(model, &emo, l + 1)?.f_sub(&mean_readout(model, &neu, l + 1)?)?;
                per_emotion.push(d);
            }
            per_layer.push(Tensor::f_stack(&per_emotion, 0)?);
        }
        let directions = Tensor::f_stack(&per_layer, 0)?;
        let mut params = ParamStore::new(seed, "steering", model.device());
        let directions = params.buffer("directions", &directions)?;
        let scales = params.constant("scales", &[N_EMOTIONS as i64], config.init_scale)?;
        Ok(SteeringVectors {
            params,
            layers,
            directions,
            scales,
        })
    }

    /// The steered blocks.
    pub fn layers(&self) -> &[usize] {
        &self.layers
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

    /// Registers the steering vectors: at each steered block,
    /// `Σ_e scale_e · emotion_e · direction_e`, `[batch, 1, hidden]`.
    pub fn attach<'a>(&self, hooks: Hooks<'a>, emotion: &EmotionState) -> Result<Hooks<'a>> {
        let weights = emotion.phasic.f_mul(&self.scales.f_unsqueeze(0)?)?; // [b, E]
        let mut h = hooks;
        for (i, &l) in self.layers.iter().enumerate() {
            let v = weights
                .f_matmul(&self.directions.f_select(0, i as i64)?)?
                .f_unsqueeze(1)?;
            h = h.with_steering(l, HookSite::AfterMlp, v, 1.0);
        }
        Ok(h)
    }
}
