//! The prefix generator: per layer, learned prefix keys and values (a base
//! prefix plus an emotion-conditioned modulation) prepended to the frozen
//! model's KV cache through [`Hooks::with_prefix_kv`].

use emorl_lm::{Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::Result;
use crate::modules::emotion::{EmotionState, N_CONDITIONING};
use crate::params::{invalid, ParamStore};

/// Configuration of the [`PrefixGenerator`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixConfig {
    /// Prefix positions per layer.
    pub prefix_len: usize,
    /// Standard deviation of the base prefix's initial values.
    pub init_std: f64,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        PrefixConfig {
            prefix_len: 4,
            init_std: 0.02,
        }
    }
}

/// Learned prefix keys/values for every layer of a model.
#[derive(Debug)]
pub struct PrefixGenerator {
    pub(crate) params: ParamStore,
    /// `[n_layers, 2, n_kv_heads * prefix_len * head_dim]` (key, value).
    base: Tensor,
    /// Emotion conditioning → modulation of every layer's key and value
    /// (`None` for the static variant); zero-initialised.
    modulation: Option<Tensor>,
    n_layers: i64,
    n_kv_heads: i64,
    head_dim: i64,
    prefix_len: i64,
}

impl PrefixGenerator {
    /// A generator for `model`'s shapes; `conditioned: false` is the
    /// static variant that ignores the emotion state.
    pub fn new(model: &Model, config: &PrefixConfig, conditioned: bool, seed: u64) -> Result<Self> {
        if config.prefix_len == 0 {
            return Err(invalid("prefix: prefix_len must be > 0"));
        }
        let (kv, hd) = model.kv_shape();
        let (n_layers, n_kv_heads, head_dim, prefix_len) = (
            model.n_layers() as i64,
            kv as i64,
            hd as i64,
            config.prefix_len as i64,
        );
        let per = n_kv_heads * prefix_len * head_dim;
        let name = if conditioned {
            "prefix"
        } else {
            "static_prefix"
        };
        let mut params = ParamStore::new(seed, name, model.device());
        let base = params.normal("base", &[n_layers, 2, per], config.init_std)?;
        let modulation = if conditioned {
            Some(params.constant(
                "modulation",
                &[N_CONDITIONING as i64, n_layers * 2 * per],
                0.0,
            )?)
        } else {
            None
        };
        Ok(PrefixGenerator {
            params,
            base,
            modulation,
            n_layers,
            n_kv_heads,
            head_dim,
            prefix_len,
        })
    }

    /// Whether the prefix depends on the emotion state.
    pub fn is_conditioned(&self) -> bool {
        self.modulation.is_some()
    }

    /// Per layer, `(key, value)` of shape `[batch or 1, n_kv_heads,
    /// prefix_len, head_dim]`.
    pub fn prefixes(&self, emotion: &EmotionState) -> Result<Vec<(Tensor, Tensor)>> {
        let per = self.n_kv_heads * self.prefix_len * self.head_dim;
        let all = match &self.modulation {
            Some(w) => {
                let b = emotion.batch();
                let m = emotion
                    .conditioning()?
                    .f_matmul(w)?
                    .f_view([b, self.n_layers, 2, per])?;
                self.base.f_unsqueeze(0)?.f_add(&m)?
            }
            None => self.base.f_unsqueeze(0)?,
        };
        let rows = all.size()[0];
        let shape = [rows, self.n_kv_heads, self.prefix_len, self.head_dim];
        (0..self.n_layers)
            .map(|l| {
                let layer = all.f_select(1, l)?;
                Ok((
                    layer.f_select(1, 0)?.f_view(shape)?,
                    layer.f_select(1, 1)?.f_view(shape)?,
                ))
            })
            .collect()
    }

    /// Registers the prefixes on `hooks`.
    pub fn attach<'a>(&self, hooks: Hooks<'a>, emotion: &EmotionState) -> Result<Hooks<'a>> {
        let mut h = hooks;
        for (l, (k, v)) in self.prefixes(emotion)?.into_iter().enumerate() {
            h = h.with_prefix_kv(l, k, v);
        }
        Ok(h)
    }
}
