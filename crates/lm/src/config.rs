//! Model hyper-parameters, read and validated from a GGUF file's metadata
//! or a Hugging Face `config.json` (serde), for each architecture. Every
//! size is bounded before anything is allocated from it.

use std::path::Path;

use serde::Deserialize;

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;

/// Hyper-parameters of a Llama model, read from the model's own metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    /// Linear RoPE scaling factor (positions are divided by it), if any.
    pub rope_linear_factor: Option<f64>,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

const MAX_DIM: u64 = 1 << 20;

impl LlamaConfig {
    /// Reads a Hugging Face `config.json` (`model_type` `llama` or
    /// `mistral`): rope theta and linear RoPE scaling (old `rope_theta` /
    /// `rope_scaling` keys or transformers 5's `rope_parameters`),
    /// `rms_norm_eps`, grouped-query heads, `head_dim` and tied embeddings.
    pub fn from_hf_config(path: &Path) -> Result<LlamaConfig> {
        let bytes = std::fs::read(path).map_err(|e| LmError::io(path, e))?;
        let raw: RawHfConfig = serde_json::from_slice(&bytes).map_err(|e| LmError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Self::from_raw_hf(raw, path)
    }

    fn from_raw_hf(raw: RawHfConfig, path: &Path) -> Result<LlamaConfig> {
        let bad = |msg: String| LmError::Json {
            path: path.to_path_buf(),
            msg,
        };
        let unsupported =
            |what: String| LmError::Unsupported(format!("{what} in {}", path.display()));
        match raw.model_type.as_deref() {
            Some("llama") | Some("mistral") | None => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "model_type `{other}` (expected llama or mistral)"
                )))
            }
        }
        if raw.attention_bias || raw.mlp_bias {
            return Err(unsupported("attention_bias / mlp_bias".into()));
        }
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" && act != "swish" {
                return Err(unsupported(format!("hidden_act `{act}`")));
            }
        }
        if raw.sliding_window.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(unsupported("sliding-window attention".into()));
        }
        let n_heads = raw.num_attention_heads;
        let n_kv = raw.num_key_value_heads.unwrap_or(n_heads);
        for (name, v, max) in [
            ("vocab_size", raw.vocab_size, u32::MAX as u64),
            ("hidden_size", raw.hidden_size, MAX_DIM),
            ("intermediate_size", raw.intermediate_size, MAX_DIM),
            ("num_hidden_layers", raw.num_hidden_layers, 4096),
            ("num_attention_heads", n_heads, 4096),
            ("num_key_value_heads", n_kv, 4096),
            (
                "max_position_embeddings",
                raw.max_position_embeddings,
                u32::MAX as u64,
            ),
        ] {
            if v == 0 || v as u64 > max {
                return Err(bad(format!("{name} = {v} is out of range")));
            }
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => {
                if !raw.hidden_size.is_multiple_of(n_heads) {
                    return Err(bad(format!(
                        "num_attention_heads {n_heads} does not divide hidden_size {}",
                        raw.hidden_size
                    )));
                }
                raw.hidden_size / n_heads
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 || head_dim as u64 > MAX_DIM {
            return Err(bad(format!(
                "head dimension {head_dim} must be even and positive"
            )));
        }
        if !n_heads.is_multiple_of(n_kv) {
            return Err(bad(format!(
                "num_key_value_heads {n_kv} does not divide num_attention_heads {n_heads}"
            )));
        }
        // Rope parameters: transformers 5 keeps theta and scaling together.
        let params = raw
            .rope_parameters
            .as_ref()
            .filter(|v| !v.is_null())
            .or(raw.rope_scaling.as_ref().filter(|v| !v.is_null()));
        let mut rope_theta = raw.rope_theta;
        let mut rope_linear_factor = None;
        if let Some(p) = params {
            let obj = p
                .as_object()
                .ok_or_else(|| bad("rope_parameters / rope_scaling must be an object".into()))?;
            if let Some(t) = obj.get("rope_theta") {
                rope_theta = Some(
                    t.as_f64()
                        .ok_or_else(|| bad("rope_theta must be a number".into()))?,
                );
            }
            let ty = obj
                .get("rope_type")
                .or_else(|| obj.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("default");
            match ty {
                "default" => {}
                "linear" => {
                    let f = obj.get("factor").and_then(|f| f.as_f64()).ok_or_else(|| {
                        bad("linear RoPE scaling needs a numeric `factor`".into())
                    })?;
                    if !(f > 0.0 && f.is_finite()) {
                        return Err(bad(format!("invalid RoPE scaling factor {f}")));
                    }
                    rope_linear_factor = (f != 1.0).then_some(f);
                }
                other => return Err(unsupported(format!("RoPE scaling `{other}`"))),
            }
        }
        let rope_theta = rope_theta.unwrap_or(10_000.0);
        if !(rope_theta > 0.0 && rope_theta.is_finite()) {
            return Err(bad(format!("invalid rope_theta {rope_theta}")));
        }
        if !(raw.rms_norm_eps >= 0.0 && raw.rms_norm_eps.is_finite()) {
            return Err(bad(format!("invalid rms_norm_eps {}", raw.rms_norm_eps)));
        }
        Ok(LlamaConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: n_heads,
            num_key_value_heads: n_kv,
            head_dim,
            rope_theta,
            rope_linear_factor,
            rms_norm_eps: raw.rms_norm_eps,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
        })
    }
}

/// How the rows of the query and key projections are laid out for rotary
/// embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeLayout {
    /// llama.cpp's GGUF layout: pairs `(x[2i], x[2i+1])` rotate together;
    /// undone on load.
    Interleaved,
    /// Hugging Face's layout ("rotate half"), which the model runs.
    RotateHalf,
}

/// `config.json` of a Hugging Face Llama model. Missing optional keys take
/// transformers' `LlamaConfig` defaults.
#[derive(Deserialize)]
struct RawHfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// transformers < 5: `{"type" | "rope_type": ..., "factor": ...}`.
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    /// transformers >= 5: `{"rope_type": ..., "rope_theta": ..., "factor": ...}`.
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    sliding_window: Option<serde_json::Value>,
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_max_pos() -> usize {
    2048
}

impl LlamaConfig {
    /// Reads the configuration from GGUF metadata (`{arch}.*` keys) and the
    /// tensor directory.
    pub fn from_gguf(g: &GgufFile) -> Result<LlamaConfig> {
        let arch = g.get_str("general.architecture")?;
        let k = |s: &str| format!("{arch}.{s}");
        let hidden = g.get_usize(&k("embedding_length"), MAX_DIM)?;
        let n_layers = g.get_usize(&k("block_count"), 4096)?;
        let ffn = g.get_usize(&k("feed_forward_length"), MAX_DIM)?;
        let n_heads = g.get_usize(&k("attention.head_count"), 4096)?;
        let n_kv = match g.get(&k("attention.head_count_kv")) {
            Some(_) => g.get_usize(&k("attention.head_count_kv"), 4096)?,
            None => n_heads,
        };
        let meta_err = |key: String, msg: String| LmError::Metadata {
            path: g.path().into(),
            key,
            msg,
        };
        if hidden == 0 || n_layers == 0 || n_heads == 0 || n_kv == 0 || ffn == 0 {
            return Err(meta_err(
                k("*"),
                "embedding_length, block_count, feed_forward_length and head counts must be positive"
                    .into(),
            ));
        }
        let head_dim = match g.get(&k("attention.key_length")) {
            Some(_) => g.get_usize(&k("attention.key_length"), MAX_DIM)?,
            None => {
                if hidden % n_heads != 0 {
                    return Err(meta_err(
                        k("attention.head_count"),
                        format!("{n_heads} heads do not divide embedding_length {hidden}"),
                    ));
                }
                hidden / n_heads
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(meta_err(
                k("attention.key_length"),
                format!("head dimension {head_dim} must be even and positive"),
            ));
        }
        if n_heads % n_kv != 0 {
            return Err(meta_err(
                k("attention.head_count_kv"),
                format!("{n_kv} key/value heads do not divide {n_heads} query heads"),
            ));
        }
        if let Some(rd) = g.get(&k("rope.dimension_count")) {
            let rd = rd.as_u64();
            if rd != Some(head_dim as u64) {
                return Err(LmError::Unsupported(format!(
                    "partial rotary embedding ({} = {rd:?}, head dimension {head_dim}) in {}",
                    k("rope.dimension_count"),
                    g.path()
                )));
            }
        }
        let rope_linear_factor = match g.get_str_opt(&k("rope.scaling.type"))? {
            None | Some("none") => None,
            Some("linear") => {
                let f = g.get_f64_opt(&k("rope.scaling.factor"))?.unwrap_or(1.0);
                if !(f > 0.0 && f.is_finite()) {
                    return Err(meta_err(
                        k("rope.scaling.factor"),
                        format!("invalid factor {f}"),
                    ));
                }
                (f != 1.0).then_some(f)
            }
            Some(other) => {
                return Err(LmError::Unsupported(format!(
                    "RoPE scaling `{other}` in {}",
                    g.path()
                )))
            }
        };
        let rope_theta = g.get_f64_opt(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let rms_norm_eps = g
            .get_f64_opt(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        if !(rope_theta > 0.0 && rope_theta.is_finite() && rms_norm_eps >= 0.0) {
            return Err(meta_err(
                k("rope.freq_base"),
                format!("invalid rope theta {rope_theta} or epsilon {rms_norm_eps}"),
            ));
        }
        let max_pos = match g.get(&k("context_length")) {
            Some(_) => g.get_usize(&k("context_length"), u32::MAX as u64)?,
            None => 2048,
        };
        let embd = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| LmError::MissingTensor {
                path: g.path().into(),
                tensor: "token_embd.weight".into(),
            })?;
        if embd.dims.len() != 2 || embd.dims[0] != hidden as u64 {
            return Err(LmError::Tensor {
                path: g.path().into(),
                tensor: "token_embd.weight".into(),
                msg: format!(
                    "dims {:?} (ggml order) do not match embedding_length {hidden}",
                    embd.dims
                ),
            });
        }
        let vocab_size = usize::try_from(embd.dims[1])
            .ok()
            .filter(|&v| v > 0 && v as u64 <= u32::MAX as u64)
            .ok_or_else(|| LmError::Tensor {
                path: g.path().into(),
                tensor: "token_embd.weight".into(),
                msg: format!("vocabulary size {}", embd.dims[1]),
            })?;
        Ok(LlamaConfig {
            vocab_size,
            hidden_size: hidden,
            intermediate_size: ffn,
            num_hidden_layers: n_layers,
            num_attention_heads: n_heads,
            num_key_value_heads: n_kv,
            head_dim,
            rope_theta,
            rope_linear_factor,
            rms_norm_eps,
            max_position_embeddings: max_pos,
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
        })
    }
}

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
