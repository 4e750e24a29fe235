//! The emotional gate: bottleneck adapters (down-projection → GELU →
//! up-projection, the up-projection zero-initialised) at chosen layers, mixed
//! into the residual stream by a gate computed from the emotion state:
//! `h + sigmoid(g(emotion)) * adapter(h)`.

use emorl_lm::{HookSite, Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{lm_err, Result};
use crate::modules::emotion::{EmotionState, N_CONDITIONING};
use crate::params::{invalid, Linear, ParamStore};

/// Configuration of the [`EmotionalGate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Blocks whose output gets an adapter (negative: from the end, `-1` the
    /// last); empty: the middle block.
    pub layers: Vec<i64>,
    /// Bottleneck width.
    pub bottleneck: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            layers: Vec::new(),
            bottleneck: 16,
        }
    }
}

#[derive(Debug)]
struct Adapter {
    layer: usize,
    down: Linear,
    up: Linear,
    gate: Linear,
}

/// Gated bottleneck adapters.
#[derive(Debug)]
pub struct EmotionalGate {
    pub(crate) params: ParamStore,
    adapters: Vec<Adapter>,
}

impl EmotionalGate {
    pub fn new(model: &Model, config: &GateConfig, seed: u64) -> Result<Self> {
        let layers = super::chosen_layers(model, &config.layers, "gate")?;
        if config.bottleneck == 0 {
            return Err(invalid("gate: bottleneck must be > 0"));
        }
        let h = model.hidden_size() as i64;
        let r = config.bottleneck as i64;
        let mut params = ParamStore::new(seed, "gate", model.device());
        let adapters = layers
            .iter()
            .map(|&layer| {
                let down = params.linear(&format!("l{layer}.down"), h, r)?;
                let up = Linear {
                    weight: params.constant(&format!("l{layer}.up.weight"), &[r, h], 0.0)?,
                    bias: params.constant(&format!("l{layer}.up.bias"), &[h], 0.0)?,
                };
                let gate = params.linear(&format!("l{layer}.gate"), N_CONDITIONING as i64, 1)?;
                Ok(Adapter {
                    layer,
                    down,
                    up,
                    gate,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmotionalGate { params, adapters })
    }

    /// The blocks with an adapter.
    pub fn layers(&self) -> Vec<usize> {
        self.adapters.iter().map(|a| a.layer).collect()
    }

    /// Registers the gated adapters (after each chosen block's MLP).
    pub fn attach<'a>(&self, hooks: Hooks<'a>, emotion: &EmotionState) -> Result<Hooks<'a>> {
        let cond = emotion.conditioning()?;
        let mut h = hooks;
        for a in &self.adapters {
            // [batch or 1, 1, 1]
            let g = a.gate.forward(&cond)?.f_sigmoid()?.f_unsqueeze(-1)?;
            let down = Linear {
                weight: a.down.weight.shallow_clone(),
                bias: a.down.bias.shallow_clone(),
            };
            let up = Linear {
                weight: a.up.weight.shallow_clone(),
                bias: a.up.bias.shallow_clone(),
            };
            h = h.with_adapter_fn(a.layer, HookSite::AfterMlp, move |_, _, x: &Tensor| {
                let y = up
                    .forward(
                        &down
                            .forward(x)
                            .map_err(lm_err)?
                            .f_gelu("none")
                            .map_err(lm_err)?,
                    )
                    .map_err(lm_err)?;
                x.f_add(&y.f_mul(&g).map_err(lm_err)?).map_err(lm_err)
            });
        }
        Ok(h)
    }
}
