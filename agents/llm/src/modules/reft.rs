//! Emotional low-rank representation interventions, after ReFT's LoReFT
//! (Wu et al., 2024): at a few blocks, on the response positions only, the
//! block output `h` is edited inside an `r`-dimensional subspace,
//!
//! `h' = h + (h W + b + e U − h P) Pᵀ`,
//!
//! where `P` (`[hidden, r]`, orthonormal columns at initialisation) spans
//! the subspace, `h W + b` is the value the edit writes there and `e U`
//! moves it with the emotion state's conditioning `e`. `W` starts equal to
//! `P` and `b`, `U` at zero, so an untrained module is the identity, bit
//! for bit. `P` is trained freely (LoReFT keeps it orthonormal; here it is
//! only initialised so). About `(2·hidden + 1 + 6)·r` parameters a block:
//! 4 636 on SmolLM2 at rank 4 (0.007% of its weights at two blocks).

use emorl_lm::{HookSite, Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{lm_err, Result};
use crate::modules::emotion::{EmotionState, N_CONDITIONING};
use crate::params::{invalid, ParamStore};

/// Configuration of the [`EmotionalReft`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReftConfig {
    /// Blocks whose output is edited (negative: from the end, `-1` the
    /// last); empty: the middle block.
    pub layers: Vec<i64>,
    /// Dimension of the edited subspace.
    pub rank: usize,
}

impl Default for ReftConfig {
    fn default() -> Self {
        ReftConfig {
            layers: vec![-4, -1],
            rank: 4,
        }
    }
}

#[derive(Debug)]
struct Intervention {
    layer: usize,
    /// `[hidden, r]`: the subspace.
    p: Tensor,
    /// `[hidden, r]`: the value written into it, `h W + b`.
    w: Tensor,
    /// `[r]`.
    b: Tensor,
    /// `[N_CONDITIONING, r]`: the emotion's move of that value.
    u: Tensor,
}

/// Emotion-conditioned low-rank interventions on the response positions.
#[derive(Debug)]
pub struct EmotionalReft {
    pub(crate) params: ParamStore,
    interventions: Vec<Intervention>,
}

impl EmotionalReft {
    pub fn new(model: &Model, config: &ReftConfig, seed: u64) -> Result<Self> {
        let layers = super::chosen_layers(model, &config.layers, "reft")?;
        let h = model.hidden_size() as i64;
        let r = config.rank as i64;
        if r == 0 || r > h {
            return Err(invalid(format!(
                "reft: rank must be 1..={h} (the model's hidden size), got {r}"
            )));
        }
        let mut params = ParamStore::new(seed, "reft", model.device());
        let interventions = layers
            .iter()
            .map(|&layer| {
                // Orthonormal columns: the Q of a Gaussian matrix's QR
                // decomposition, signs fixed by R's diagonal (unique, so the
                // same seed gives the same subspace).
                let g = params.normal(&format!("l{layer}.p"), &[h, r], 1.0)?;
                let (q, rr) = Tensor::f_linalg_qr(&g.f_detach()?, "reduced")?;
                let signs = rr.f_diagonal(0, 0, 1)?.f_sign()?;
                let q = q.f_mul(&signs.f_unsqueeze(0)?)?;
                {
                    let _guard = tch::no_grad_guard();
                    g.shallow_clone().f_copy_(&q)?;
                }
                let w = params.copy_of(&format!("l{layer}.w"), &q)?;
                let b = params.constant(&format!("l{layer}.b"), &[r], 0.0)?;
                let u =
                    params.constant(&format!("l{layer}.u"), &[N_CONDITIONING as i64, r], 0.0)?;
                Ok(Intervention {
                    layer,
                    p: g,
                    w,
                    b,
                    u,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmotionalReft {
            params,
            interventions,
        })
    }

    /// The edited blocks.
    pub fn layers(&self) -> Vec<usize> {
        self.interventions.iter().map(|i| i.layer).collect()
    }

    /// Registers the interventions at each chosen block's output, from
    /// column `response_start` on (the prompt runs as the frozen model's).
    pub fn attach<'a>(
        &self,
        hooks: Hooks<'a>,
        emotion: &EmotionState,
        response_start: usize,
    ) -> Result<Hooks<'a>> {
        let cond = emotion.conditioning()?; // [batch or 1, N_CONDITIONING]
        let mut hooks = hooks;
        for iv in &self.interventions {
            // The emotion's part of the written value, [batch or 1, 1, r].
            let shift = cond.f_matmul(&iv.u)?.f_add(&iv.b)?.f_unsqueeze(1)?;
            let (p, w) = (iv.p.shallow_clone(), iv.w.shallow_clone());
            hooks = hooks.with_adapter_from(
                iv.layer,
                HookSite::AfterMlp,
                move |_, _, x: &Tensor| {
                    let kind = x.kind();
                    let xf = x.f_to_kind(Kind::Float).map_err(lm_err)?;
                    let edit = xf
                        .f_matmul(&w)
                        .and_then(|v| v.f_add(&shift))
                        .and_then(|v| v.f_sub(&xf.f_matmul(&p)?))
                        .and_then(|v| v.f_matmul(&p.f_transpose(0, 1)?))
                        .map_err(lm_err)?;
                    xf.f_add(&edit)
                        .and_then(|v| v.f_to_kind(kind))
                        .map_err(lm_err)
                },
                response_start,
            );
        }
        Ok(hooks)
    }
}
