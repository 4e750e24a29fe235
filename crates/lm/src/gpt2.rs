//! The GPT-2 architecture: learned position embeddings, LayerNorm, GELU MLP
//! and fused query/key/value projection, loaded from a Hugging Face
//! directory (`config.json`, `model.safetensors` or sharded
//! `model.safetensors.index.json`, `tokenizer.json`) or from a llama.cpp
//! `gpt2` GGUF file.
//!
//! Hugging Face stores GPT-2's projections as `Conv1D` weights `[in, out]`;
//! they are transposed on load to the `[out, in]` layout of `linear`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::common::{
    step_mask, with_prefix_columns, ForwardOutput, GgufWeights, KvCache, LogitsScope, WeightSource,
};
use crate::error::{LmError, Result};
use crate::gguf::GgufFile;
use crate::hooks::{apply_site, HookSite, Hooks, PrefixKv};

/// Hyper-parameters from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
    pub activation: String,
    pub layer_norm_epsilon: f64,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    #[serde(alias = "max_position_embeddings")]
    n_positions: usize,
    #[serde(alias = "hidden_size")]
    n_embd: usize,
    #[serde(alias = "num_hidden_layers")]
    n_layer: usize,
    #[serde(alias = "num_attention_heads")]
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_act")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "default_true")]
    scale_attn_weights: bool,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Gpt2Config> {
        let bytes = std::fs::read(path).map_err(|e| LmError::io(path, e))?;
        let raw: RawConfig = serde_json::from_slice(&bytes).map_err(|e| LmError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        if let Some(t) = &raw.model_type {
            if t != "gpt2" {
                return Err(LmError::Unsupported(format!(
                    "model_type `{t}` in {} (Hugging Face directories must be GPT-2)",
                    path.display()
                )));
            }
        }
        if raw.scale_attn_by_inverse_layer_idx || !raw.scale_attn_weights {
            return Err(LmError::Unsupported(format!(
                "non-standard attention scaling in {}",
                path.display()
            )));
        }
        let bad = |msg: String| LmError::Json {
            path: path.to_path_buf(),
            msg,
        };
        const MAX: usize = 1 << 20;
        for (name, v) in [
            ("vocab_size", raw.vocab_size),
            ("n_positions", raw.n_positions),
            ("n_embd", raw.n_embd),
            ("n_layer", raw.n_layer),
            ("n_head", raw.n_head),
        ] {
            if v == 0 || v > MAX {
                return Err(bad(format!("{name} = {v} is out of range")));
            }
        }
        if !raw.n_embd.is_multiple_of(raw.n_head) {
            return Err(bad(format!(
                "n_head {} does not divide n_embd {}",
                raw.n_head, raw.n_embd
            )));
        }
        match raw.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu" | "relu" | "silu" | "swish" => {
            }
            other => {
                return Err(LmError::Unsupported(format!(
                    "activation `{other}` in {}",
                    path.display()
                )))
            }
        }
        Ok(Gpt2Config {
            vocab_size: raw.vocab_size,
            n_positions: raw.n_positions,
            n_embd: raw.n_embd,
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            n_inner: raw.n_inner.unwrap_or(4 * raw.n_embd).min(MAX * 4),
            activation: raw.activation_function,
            layer_norm_epsilon: raw.layer_norm_epsilon,
        })
    }
}

impl Gpt2Config {
    /// Reads the configuration of a llama.cpp `gpt2` GGUF file (`gpt2.*`
    /// keys; the vocabulary size comes from `token_embd.weight`).
    pub fn from_gguf(g: &GgufFile) -> Result<Gpt2Config> {
        let arch = g.get_str("general.architecture")?;
        let k = |s: &str| format!("{arch}.{s}");
        const MAX: u64 = 1 << 20;
        let n_embd = g.get_usize(&k("embedding_length"), MAX)?;
        let n_layer = g.get_usize(&k("block_count"), 4096)?;
        let n_head = g.get_usize(&k("attention.head_count"), 4096)?;
        let n_positions = g.get_usize(&k("context_length"), MAX)?;
        let n_inner = match g.get(&k("feed_forward_length")) {
            Some(_) => g.get_usize(&k("feed_forward_length"), 4 * MAX)?,
            None => 4 * n_embd,
        };
        let eps = g
            .get_f64_opt(&k("attention.layer_norm_epsilon"))?
            .unwrap_or(1e-5);
        let meta_err = |key: String, msg: String| LmError::Metadata {
            path: g.path().into(),
            key,
            msg,
        };
        if n_embd == 0 || n_layer == 0 || n_head == 0 || n_positions == 0 || n_inner == 0 {
            return Err(meta_err(
                k("*"),
                "embedding_length, block_count, head_count, context_length and feed_forward_length must be positive".into(),
            ));
        }
        if !n_embd.is_multiple_of(n_head) {
            return Err(meta_err(
                k("attention.head_count"),
                format!("{n_head} heads do not divide embedding_length {n_embd}"),
            ));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(meta_err(
                k("attention.layer_norm_epsilon"),
                format!("invalid epsilon {eps}"),
            ));
        }
        let embd = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| LmError::MissingTensor {
                path: g.path().into(),
                tensor: "token_embd.weight".into(),
            })?;
        let vocab_size = match embd.dims.as_slice() {
            [d, v] if *d == n_embd as u64 && *v > 0 && *v <= u32::MAX as u64 => *v as usize,
            dims => {
                return Err(LmError::Tensor {
                    path: g.path().into(),
                    tensor: "token_embd.weight".into(),
                    msg: format!(
                        "dims {dims:?} (ggml order) do not match embedding_length {n_embd}"
                    ),
                })
            }
        };
        Ok(Gpt2Config {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner,
            // llama.cpp's gpt2 graph uses the tanh approximation.
            activation: "gelu_new".into(),
            layer_norm_epsilon: eps,
        })
    }
}

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

/// Safetensors weights of a Hugging Face directory, by name (an optional
/// `transformer.` prefix is accepted).
pub(crate) struct SafetensorsWeights {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    dir: PathBuf,
    kind: Kind,
    device: Device,
}

impl SafetensorsWeights {
    pub(crate) fn open(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let bytes = std::fs::read(&index).map_err(|e| LmError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| LmError::Json {
                    path: index.clone(),
                    msg: e.to_string(),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LmError::Json {
                    path: index.clone(),
                    msg: "no `weight_map` object".into(),
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for f in map.values() {
                let name = f.as_str().ok_or_else(|| LmError::Json {
                    path: index.clone(),
                    msg: "weight_map values must be file names".into(),
                })?;
                if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                    return Err(LmError::Json {
                        path: index.clone(),
                        msg: format!("shard name `{name}` is not a plain file name"),
                    });
                }
                let p = dir.join(name);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files
        } else {
            return Err(LmError::ModelNotFound(format!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        };
        let mut tensors = HashMap::new();
        for f in files {
            let list = Tensor::read_safetensors(&f).map_err(|e| LmError::Tensor {
                path: f.display().to_string(),
                tensor: "*".into(),
                msg: e.to_string(),
            })?;
            for (name, t) in list {
                let key = name
                    .strip_prefix("transformer.")
                    .unwrap_or(&name)
                    .to_string();
                tensors.insert(key, (t, f.clone()));
            }
        }
        Ok(SafetensorsWeights {
            tensors,
            dir: dir.to_path_buf(),
            kind,
            device,
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (t, file) = self
            .tensors
            .get(name)
            .ok_or_else(|| LmError::MissingTensor {
                path: self.dir.display().to_string(),
                tensor: name.to_string(),
            })?;
        if t.size() != shape {
            return Err(LmError::Tensor {
                path: file.display().to_string(),
                tensor: name.to_string(),
                msg: format!("shape {:?} does not match the expected {shape:?}", t.size()),
            });
        }
        if !t.is_floating_point() {
            return Err(LmError::Tensor {
                path: file.display().to_string(),
                tensor: name.to_string(),
                msg: format!("dtype {:?} is not a float type", t.kind()),
            });
        }
        Ok(t.f_to_kind(self.kind)?
            .f_to_device(self.device)?
            .f_contiguous()?
            .set_requires_grad(false))
    }
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
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
    ) -> Result<Tensor> {
        let s = x.size();
        let (b, t, d) = (s[0], s[1], s[2]);
        let qkv = self.c_attn.forward(x)?;
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
    lm_head: Tensor,
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
        &self.lm_head
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
            lm_head,
            tied,
            device,
            past: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Number of tokens in the KV cache.
    pub fn cache_len(&self) -> usize {
        self.past as usize
    }

    /// Replaces the KV cache by its batch rows `index` (`[new_batch]`, i64;
    /// rows may repeat), e.g. to continue one prefilled prompt as several
    /// rows.
    pub fn select_cache_rows(&mut self, index: &Tensor) -> Result<()> {
        for b in &mut self.blocks {
            if let Some(c) = b.attn.kv_cache.as_ref() {
                b.attn.kv_cache = Some(c.select_rows(index)?);
            }
        }
        Ok(())
    }

    /// Empties the KV cache.
    pub fn clear_cache(&mut self) {
        for b in &mut self.blocks {
            b.attn.kv_cache = None;
        }
        self.past = 0;
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
            out.push(("lm_head.weight".to_string(), &self.lm_head));
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
            let a = self.blocks[i].attn.forward(&h1, mask, prefix)?;
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
        if stop.is_some() {
            let logits = crate::common::no_logits(b, self.lm_head.size()[0], self.device)?;
            return Ok(ForwardOutput { logits, hidden });
        }
        let x = match scope {
            LogitsScope::Last if t > 1 => x.f_narrow(1, t - 1, 1)?,
            _ => x,
        };
        let x = self.ln_f.forward(&x)?;
        let mut logits = x
            .f_linear::<&Tensor>(&self.lm_head, None)?
            .f_to_kind(Kind::Float)?;
        if let Some(h) = hooks {
            logits = h.process_logits(logits)?;
        }
        Ok(ForwardOutput { logits, hidden })
    }
}
