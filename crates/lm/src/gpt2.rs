//! The GPT-2 architecture: learned position embeddings, LayerNorm, GELU MLP
//! and fused query/key/value projection, loaded from a Hugging Face
//! directory (`config.json`, `model.safetensors` or sharded
//! `model.safetensors.index.json`, `tokenizer.json`) or from a llama.cpp
//! `gpt2` GGUF file.
//!
//! Hugging Face stores GPT-2's projections as `Conv1D` weights `[in, out]`;
//! they are transposed on load to the `[out, in]` layout of `linear`.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::common::{
    step_mask, with_prefix_columns, ForwardOutput, KvCache, LayerCaches, LogitsScope,
};
pub use crate::config::Gpt2Config;
use crate::error::{LmError, Result};
use crate::gguf::GgufFile;
use crate::hooks::{apply_site, HookSite, Hooks, PrefixKv, QkvDelta};
use crate::weights::{GgufWeights, SafetensorsWeights, WeightSource};

/// Serves the Hugging Face GPT-2 names the loader asks for from a llama.cpp
/// `gpt2` GGUF file. llama.cpp's converter transposes the `Conv1D` weights
/// to `[out, in]`; they are handed out transposed back to the `[in, out]`
/// the loader expects (a view, no copy).
struct GgufGpt2Names<'a> {
    inner: GgufWeights<'a>,
}

impl GgufGpt2Names<'_> {
    /// The GGUF name of a Hugging Face name, and whether it is a `Conv1D`
    /// weight.
    fn gguf_name(name: &str) -> (String, bool) {
        let (stem, suffix) = match name.rsplit_once('.') {
            Some((s, x)) => (s, x),
            None => return (name.to_string(), false),
        };
        let fixed = match stem {
            "wte" => Some("token_embd"),
            "wpe" => Some("position_embd"),
            "ln_f" => Some("output_norm"),
            "lm_head" => Some("output"),
            _ => None,
        };
        if let Some(f) = fixed {
            return (format!("{f}.{suffix}"), false);
        }
        let Some((layer, part)) = stem.strip_prefix("h.").and_then(|r| r.split_once('.')) else {
            return (name.to_string(), false);
        };
        let (g, conv) = match part {
            "ln_1" => ("attn_norm", false),
            "attn.c_attn" => ("attn_qkv", true),
            "attn.c_proj" => ("attn_output", true),
            "ln_2" => ("ffn_norm", false),
            "mlp.c_fc" => ("ffn_up", true),
            "mlp.c_proj" => ("ffn_down", true),
            _ => return (name.to_string(), false),
        };
        (
            format!("blk.{layer}.{g}.{suffix}"),
            conv && suffix == "weight",
        )
    }
}

impl WeightSource for GgufGpt2Names<'_> {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (g, conv) = Self::gguf_name(name);
        match (conv, shape) {
            (true, [n_in, n_out]) => Ok(self.inner.get(&g, &[*n_out, *n_in])?.f_transpose(0, 1)?),
            _ => self.inner.get(&g, shape),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.inner.has(&Self::gguf_name(name).0)
    }
}

#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &dyn WeightSource, prefix: &str, n: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: w.get(&format!("{prefix}.weight"), &[n])?,
            bias: w.get(&format!("{prefix}.bias"), &[n])?,
            eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = *x.size().last().unwrap_or(&0);
        Ok(x.f_layer_norm(
            &[n][..],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )?)
    }
}

/// A `linear` layer: weight `[out, in]` and bias `[out]`.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads a Hugging Face `Conv1D` (`[in, out]`) and transposes it.
    fn conv1d(w: &dyn WeightSource, prefix: &str, n_in: i64, n_out: i64) -> Result<Self> {
        let weight = w
            .get(&format!("{prefix}.weight"), &[n_in, n_out])?
            .f_transpose(0, 1)?
            .f_contiguous()?
            .set_requires_grad(false);
        Ok(Linear {
            weight,
            bias: w.get(&format!("{prefix}.bias"), &[n_out])?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }
}

struct Attention {
    c_attn: Linear,
    c_proj: Linear,
    n_head: i64,
    head_dim: i64,
    kv_cache: Option<KvCache>,
}

impl Attention {
    fn forward(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
        prefix: Option<&PrefixKv>,
        qkv_delta: &[QkvDelta<'_>],
    ) -> Result<Tensor> {
        let s = x.size();
        let (b, t, d) = (s[0], s[1], s[2]);
        let mut qkv = self.c_attn.forward(x)?;
        for f in qkv_delta {
            qkv = qkv.f_add(&f(x)?.f_to_kind(qkv.kind())?)?;
        }
        let parts = qkv.f_split(d, 2)?;
        let heads = |z: &Tensor| -> Result<Tensor> {
            Ok(z.f_view([b, t, self.n_head, self.head_dim])?
                .f_transpose(1, 2)?)
        };
        let q = heads(&parts[0])?;
        let k = heads(&parts[1])?;
        let v = heads(&parts[2])?;
        let (k, v, prefix_len) = match self.kv_cache.as_mut() {
            Some(c) => {
                let (k, v) = c.append(&k, &v)?;
                (k, v, c.prefix_len)
            }
            None => {
                let (k, v, prefix_len) = match prefix {
                    Some(p) => {
                        let ks = p.key.size();
                        let ok = ks.len() == 4
                            && (ks[0] == b || ks[0] == 1)
                            && ks[1] == self.n_head
                            && ks[3] == self.head_dim
                            && p.value.size() == ks;
                        if !ok {
                            return Err(LmError::InvalidArgument(format!(
                            "prefix key {ks:?} / value {:?} must both be [batch or 1, {}, prefix_len, {}]",
                            p.value.size(),
                            self.n_head,
                            self.head_dim
                        )));
                        }
                        let e = |z: &Tensor| -> Result<Tensor> {
                            Ok(z.f_to_kind(x.kind())?
                                .f_expand([b, ks[1], ks[2], ks[3]], false)?)
                        };
                        (
                            Tensor::f_cat(&[&e(&p.key)?, &k], 2)?,
                            Tensor::f_cat(&[&e(&p.value)?, &v], 2)?,
                            ks[2],
                        )
                    }
                    None => (k, v, 0),
                };
                self.kv_cache = Some(KvCache::new(
                    k.shallow_clone(),
                    v.shallow_clone(),
                    prefix_len,
                ));
                (k, v, prefix_len)
            }
        };
        let mask = match (mask, prefix_len) {
            (Some(m), 0) => Some(m.shallow_clone()),
            (Some(m), p) => Some(with_prefix_columns(m, p)?),
            (None, _) => None,
        };
        let y = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask.as_ref(),
            0.0,
            false,
            None,
            false,
        )?;
        let y = y.f_transpose(1, 2)?.f_reshape([b, t, d])?;
        self.c_proj.forward(&y)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
}

/// A GPT-2 model with its KV cache.
pub struct Gpt2 {
    config: Gpt2Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: crate::linear::Linear,
    tied: bool,
    device: Device,
    past: i64,
}

impl std::fmt::Debug for Gpt2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2")
            .field("config", &self.config)
            .field("cached_tokens", &self.past)
            .finish()
    }
}

impl Gpt2 {
    /// The output layer's weight `[vocab, hidden]`.
    pub fn unembedding(&self) -> &Tensor {
        self.lm_head.weight()
    }

    /// Loads a GPT-2 model from a Hugging Face directory.
    pub fn from_hf_dir(dir: &Path, kind: Kind, device: Device) -> Result<Gpt2> {
        let config = Gpt2Config::from_file(&dir.join("config.json"))?;
        let w = SafetensorsWeights::open(dir, kind, device)?;
        Self::load(config, &w, device)
    }

    /// Loads a GPT-2 model from a llama.cpp `gpt2` GGUF file (tensors
    /// `token_embd`, `position_embd`, `blk.N.attn_norm`, `attn_qkv`,
    /// `attn_output`, `ffn_norm`, `ffn_up`, `ffn_down`, `output_norm`, and
    /// `output` unless tied to the token embeddings).
    pub fn from_gguf(g: &GgufFile, kind: Kind, device: Device) -> Result<Gpt2> {
        let config = Gpt2Config::from_gguf(g)?;
        let w = GgufGpt2Names {
            inner: GgufWeights {
                file: g,
                kind,
                device,
            },
        };
        Self::load(config, &w, device)
    }

    fn load(config: Gpt2Config, w: &dyn WeightSource, device: Device) -> Result<Gpt2> {
        let c = &config;
        let d = c.n_embd as i64;
        let inner = c.n_inner as i64;
        let eps = c.layer_norm_epsilon;
        let wte = w.get("wte.weight", &[c.vocab_size as i64, d])?;
        let wpe = w.get("wpe.weight", &[c.n_positions as i64, d])?;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = |s: &str| format!("h.{i}.{s}");
            blocks.push(Block {
                ln_1: LayerNorm::load(w, &p("ln_1"), d, eps)?,
                attn: Attention {
                    c_attn: Linear::conv1d(w, &p("attn.c_attn"), d, 3 * d)?,
                    c_proj: Linear::conv1d(w, &p("attn.c_proj"), d, d)?,
                    n_head: c.n_head as i64,
                    head_dim: d / c.n_head as i64,
                    kv_cache: None,
                },
                ln_2: LayerNorm::load(w, &p("ln_2"), d, eps)?,
                c_fc: Linear::conv1d(w, &p("mlp.c_fc"), d, inner)?,
                c_proj: Linear::conv1d(w, &p("mlp.c_proj"), inner, d)?,
            });
        }
        let ln_f = LayerNorm::load(w, "ln_f", d, eps)?;
        // Hugging Face ties the head to the token embeddings; safetensors
        // files usually omit the duplicate.
        let (lm_head, tied) = if w.has("lm_head.weight") {
            (w.get("lm_head.weight", &[c.vocab_size as i64, d])?, false)
        } else {
            (wte.shallow_clone(), true)
        };
        Ok(Gpt2 {
            config,
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head: crate::linear::Linear::new(lm_head),
            tied,
            device,
            past: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Every parameter tensor by name.
    pub fn parameters(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![
            ("wte.weight".to_string(), &self.wte),
            ("wpe.weight".to_string(), &self.wpe),
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = |s: &str| format!("h.{i}.{s}");
            out.push((p("ln_1.weight"), &b.ln_1.weight));
            out.push((p("ln_1.bias"), &b.ln_1.bias));
            out.push((p("attn.c_attn.weight"), &b.attn.c_attn.weight));
            out.push((p("attn.c_attn.bias"), &b.attn.c_attn.bias));
            out.push((p("attn.c_proj.weight"), &b.attn.c_proj.weight));
            out.push((p("attn.c_proj.bias"), &b.attn.c_proj.bias));
            out.push((p("ln_2.weight"), &b.ln_2.weight));
            out.push((p("ln_2.bias"), &b.ln_2.bias));
            out.push((p("mlp.c_fc.weight"), &b.c_fc.weight));
            out.push((p("mlp.c_fc.bias"), &b.c_fc.bias));
            out.push((p("mlp.c_proj.weight"), &b.c_proj.weight));
            out.push((p("mlp.c_proj.bias"), &b.c_proj.bias));
        }
        out.push(("ln_f.weight".to_string(), &self.ln_f.weight));
        out.push(("ln_f.bias".to_string(), &self.ln_f.bias));
        if !self.tied {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight()));
        }
        out
    }

    fn act(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.config.activation.as_str() {
            "gelu" => x.f_gelu("none")?,
            "relu" => x.f_relu()?,
            "silu" | "swish" => x.f_silu()?,
            _ => x.f_gelu("tanh")?,
        })
    }

    /// Runs `tokens` after the cached ones and appends them to the cache
    /// (see [`crate::llama::Llama::forward`]).
    pub fn forward(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: Option<&Hooks<'_>>,
    ) -> Result<ForwardOutput> {
        self.forward_scoped(tokens, padding_mask, hooks, LogitsScope::All)
    }

    /// Like [`Self::forward`], computing logits only for the positions
    /// `scope` names (`[batch, 1, vocab]` for [`LogitsScope::Last`]; the
    /// logits processors see that tensor).
    pub fn forward_scoped(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: Option<&Hooks<'_>>,
        scope: LogitsScope,
    ) -> Result<ForwardOutput> {
        let s = tokens.size();
        if s.len() != 2 || s[1] == 0 {
            return Err(LmError::InvalidArgument(format!(
                "tokens must be [batch, seq] with seq > 0, got {s:?}"
            )));
        }
        let (b, t) = (s[0], s[1]);
        if self.past + t > self.config.n_positions as i64 {
            return Err(LmError::InvalidArgument(format!(
                "{} cached + {t} new tokens exceed GPT-2's {} positions",
                self.past, self.config.n_positions
            )));
        }
        if let Some(h) = hooks {
            h.validate(self.blocks.len())?;
        }
        let tokens = tokens.f_to_device(self.device)?;
        let sm = step_mask(padding_mask, b, t, self.past, self.device)?;
        let pos = Tensor::f_embedding(&self.wpe, &sm.positions, -1, false, false)?;
        let mut x = Tensor::f_embedding(&self.wte, &tokens, -1, false, false)?.f_add(&pos)?;
        let want = |i: usize| hooks.is_some_and(|h| h.wants_readout(i));
        let mut hidden = Vec::new();
        if want(0) {
            hidden.push((0, x.shallow_clone()));
        }
        let mask = sm.mask.as_ref();
        let n = self.blocks.len();
        let stop = crate::common::stop_after(scope, hooks);
        let past = self.past;
        for i in 0..n {
            if stop.is_some_and(|s| i >= s) {
                break;
            }
            let prefix = hooks.and_then(|h| h.prefix(i));
            let h1 = self.blocks[i].ln_1.forward(&x)?;
            let qkv_delta = hooks.map_or(&[][..], |h| h.qkv(i));
            let a = self.blocks[i].attn.forward(&h1, mask, prefix, qkv_delta)?;
            x = x.f_add(&a)?;
            x = apply_site(hooks, i, HookSite::AfterAttention, x, past)?;
            let blk = &self.blocks[i];
            let h2 = blk.ln_2.forward(&x)?;
            let m = blk.c_proj.forward(&self.act(&blk.c_fc.forward(&h2)?)?)?;
            x = x.f_add(&m)?;
            x = apply_site(hooks, i, HookSite::AfterMlp, x, past)?;
            if want(i + 1) {
                hidden.push((i + 1, x.shallow_clone()));
            }
        }
        self.past += t;
        crate::common::finish_forward(
            x,
            hidden,
            stop,
            scope,
            |x| self.ln_f.forward(x),
            &self.lm_head,
            false,
            hooks,
        )
    }
}

impl LayerCaches for Gpt2 {
    fn caches_mut(&mut self) -> impl Iterator<Item = &mut Option<KvCache>> {
        self.blocks.iter_mut().map(|b| &mut b.attn.kv_cache)
    }
    fn past(&self) -> i64 {
        self.past
    }
    fn set_past(&mut self, past: i64) {
        self.past = past;
    }
}
