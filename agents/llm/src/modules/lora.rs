//! Emotional LoRA adapters (seed 003): one low-rank adapter per emotional
//! profile — fear, curiosity, anger, joy — on the fused query/key/value
//! projections of a few attention blocks of the frozen model, blended per
//! row by the emotion state:
//!
//! `qkv(x) = x W_qkv + (α / r) · Σ_p e_p · (x A_p) B_p`
//!
//! with `e` the four phasic emotions in [0, 1] (the weights of the blend),
//! `A_p` `[hidden, r]` (Gaussian, std 1/√hidden) and `B_p` `[r, q+k+v]`
//! (zero at the start, so an untrained module — or the neutral state — is
//! the frozen model bit for bit). The base weights are never touched: the
//! adapters enter through the engine's q/k/v hook. Each adapter is trained
//! on text of its profile ([`crate::supervision::pretrain_lora_on_corpora`]),
//! and a blend of weights (1, 0, 0, 0) is exactly the fear adapter alone.

use emorl_lm::{Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{lm_err, Result};
use crate::modules::emotion::{EmotionState, N_EMOTIONS};
use crate::params::{invalid, ParamStore};

/// Configuration of the [`EmotionalLora`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Blocks whose attention projections are adapted (negative: from the
    /// end); empty: the middle block.
    pub layers: Vec<i64>,
    pub rank: usize,
    /// Scale `α` (the update is multiplied by `α / rank`).
    pub alpha: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            layers: vec![-4, -3, -2, -1],
            rank: 4,
            alpha: 8.0,
        }
    }
}

#[derive(Debug)]
struct Adapter {
    layer: usize,
    /// `[hidden, P·r]`: the profiles' down-projections side by side.
    a: Tensor,
    /// `[P·r, qkv]`: their up-projections stacked.
    b: Tensor,
}

/// One LoRA adapter per emotion on the attention projections, blended by the state.
#[derive(Debug)]
pub struct EmotionalLora {
    pub(crate) params: ParamStore,
    adapters: Vec<Adapter>,
    rank: i64,
    scale: f64,
}

impl EmotionalLora {
    pub fn new(model: &Model, config: &LoraConfig, seed: u64) -> Result<Self> {
        let layers = super::chosen_layers(model, &config.layers, "lora")?;
        let h = model.hidden_size() as i64;
        let r = config.rank as i64;
        if r == 0 || r > h {
            return Err(invalid(format!(
                "lora: rank must be 1..={h} (the model's hidden size), got {r}"
            )));
        }
        if !(config.alpha.is_finite() && config.alpha > 0.0) {
            return Err(invalid("lora: alpha must be finite and > 0"));
        }
        let w = model.qkv_width() as i64;
        let p = N_EMOTIONS as i64;
        let mut params = ParamStore::new(seed, "lora", model.device());
        let adapters = layers
            .iter()
            .map(|&layer| {
                Ok(Adapter {
                    layer,
                    a: params.normal(
                        &format!("l{layer}.a"),
                        &[h, p * r],
                        1.0 / (h as f64).sqrt(),
                    )?,
                    b: params.constant(&format!("l{layer}.b"), &[p * r, w], 0.0)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmotionalLora {
            params,
            adapters,
            rank: r,
            scale: config.alpha / config.rank as f64,
        })
    }

    /// The adapted blocks.
    pub fn layers(&self) -> Vec<usize> {
        self.adapters.iter().map(|a| a.layer).collect()
    }

    /// Registers the blended adapters for `emotion`'s phasic emotions
    /// (`[batch or 1, 4]`, the blend weights).
    pub fn attach<'a>(&self, hooks: Hooks<'a>, emotion: &EmotionState) -> Result<Hooks<'a>> {
        let weights = self.blend_weights(&emotion.phasic)?;
        let mut hooks = hooks;
        for ad in &self.adapters {
            let (a, b, wts, r, scale) = (
                ad.a.shallow_clone(),
                ad.b.shallow_clone(),
                weights.shallow_clone(),
                self.rank,
                self.scale,
            );
            hooks = hooks.with_qkv_delta(ad.layer, move |x: &Tensor| {
                let s = x.size();
                let (bsz, t) = (s[0], s[1]);
                let p = N_EMOTIONS as i64;
                let xf = x.f_to_kind(Kind::Float).map_err(lm_err)?;
                // [b, t, P, r] scaled by each row's weight of each profile.
                xf.f_matmul(&a)
                    .and_then(|z| z.f_view([bsz, t, p, r]))
                    .and_then(|z| z.f_mul(&wts.f_view([-1, 1, p, 1])?))
                    .and_then(|z| z.f_reshape([bsz, t, p * r]))
                    .and_then(|z| z.f_matmul(&b))
                    .and_then(|z| z.f_mul_scalar(scale))
                    .map_err(lm_err)
            });
        }
        Ok(hooks)
    }

    /// `[batch or 1, 4]` blend weights: the phasic emotions, clamped to [0, 1].
    pub fn blend_weights(&self, phasic: &Tensor) -> Result<Tensor> {
        Ok(phasic.f_to_kind(Kind::Float)?.f_clamp(0.0, 1.0)?)
    }
}
