//! The model facade the rest of emorl uses: loading, forward passes and
//! generation for every supported architecture.
//!
//! Length: the facade dispatches every public operation (load, forward, read-
//! out, cached forward, generation, cache control) over the architectures;
//! each arm is a line, and keeping them together is what makes the facade one
//! place.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::common::{ForwardOutput, LayerCaches, LogitsScope};
use crate::error::{LmError, Result};
use crate::generate::{
    host_logits, pick_rows, FinishReason, GenerateOptions, Generation, GenerationTiming, Rng,
    StreamText, TokenEvent,
};
use crate::gguf::GgufFile;
use crate::gpt2::Gpt2;
use crate::hooks::Hooks;
use crate::linear::{PackPlan, Packing};
use crate::llama::Llama;
use crate::quant::GgmlType;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Environment variable that overrides the default model's path.
pub const DEFAULT_MODEL_ENV: &str = "EMORL_SMOLLM2";

/// The dtype weights and activations use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DType {
    /// 32-bit floats (default).
    #[default]
    F32,
    /// bfloat16 weights and activations (norms and logits in f32).
    BF16,
}

impl DType {
    /// The torch kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::BF16 => Kind::BFloat16,
        }
    }
}

/// The network of a model.
#[derive(Debug)]
pub enum Architecture {
    Llama(Llama),
    Gpt2(Gpt2),
}

/// A frozen language model with its tokenizer.
#[derive(Debug)]
pub struct Model {
    arch: Architecture,
    tokenizer: Tokenizer,
    dtype: DType,
    device: Device,
    source: PathBuf,
    /// Generation without its prefill shortcuts (for tests).
    reference_generation: bool,
    /// Prefill a prompt that repeats in a generation batch once.
    share_repeated_prompts: bool,
    /// Generation reads the packed copies (set by `pack_weights`).
    packed_generation: bool,
    /// Where the last generation's time went.
    last_timing: Option<GenerationTiming>,
    /// GGUF storage types of the blocks' weights and the output layer.
    stored_types: Option<(GgmlType, GgmlType)>,
}

/// The emorl cache directory: `$EMORL_CACHE`, else `$XDG_CACHE_HOME/emorl`,
/// else `$HOME/.cache/emorl`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("EMORL_CACHE").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(c));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        return Some(PathBuf::from(x).join("emorl"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("emorl"))
}

/// The path of the default model: `$EMORL_SMOLLM2`, else
/// `<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf`. Fails with a message
/// that says how to fetch it when the file is not there.
pub fn default_model_path() -> Result<PathBuf> {
    let p = match std::env::var_os(DEFAULT_MODEL_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => cache_dir()
            .map(|c| c.join("models").join(DEFAULT_MODEL_FILE))
            .ok_or_else(|| {
                LmError::ModelNotFound(format!(
                    "cannot locate the default model: set {DEFAULT_MODEL_ENV} or HOME, and run scripts/setup.sh"
                ))
            })?,
    };
    if !p.is_file() {
        return Err(LmError::ModelNotFound(format!(
            "default model not found at {} — run scripts/setup.sh to fetch SmolLM2-135M-Instruct (or set {DEFAULT_MODEL_ENV} to its .gguf)",
            p.display()
        )));
    }
    Ok(p)
}

/// The `model_type` of a Hugging Face directory's `config.json` (`None`
/// when the key is absent).
fn hf_model_type(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| LmError::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| LmError::Json {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    match v.get("model_type") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(LmError::Json {
            path,
            msg: "`model_type` must be a string".into(),
        }),
    }
}

impl Model {
    /// Loads a model on the CPU: a `.gguf` file (`llama`, `mistral` or
    /// `gpt2` architecture), or a Hugging Face directory with `config.json`,
    /// `model.safetensors` (or shards listed in
    /// `model.safetensors.index.json`) and `tokenizer.json` (`model_type`
    /// `llama`, `mistral` or `gpt2`).
    pub fn load(path: impl AsRef<Path>, dtype: DType) -> Result<Model> {
        Self::load_on(path, dtype, Device::Cpu)
    }

    /// Loads the default model (see [`default_model_path`]).
    pub fn load_default(dtype: DType) -> Result<Model> {
        Self::load(default_model_path()?, dtype)
    }

    /// Loads `path`, or the default model when `path` is `None`.
    pub fn load_or_default(path: Option<&Path>, dtype: DType) -> Result<Model> {
        match path {
            Some(p) => Self::load(p, dtype),
            None => Self::load_default(dtype),
        }
    }

    /// Loads a model onto `device`.
    pub fn load_on(path: impl AsRef<Path>, dtype: DType, device: Device) -> Result<Model> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| LmError::io(path, e))?;
        if meta.is_dir() {
            let net = match hf_model_type(path)?.as_deref() {
                Some("llama") | Some("mistral") => {
                    Architecture::Llama(Llama::from_hf_dir(path, dtype.kind(), device)?)
                }
                Some("gpt2") | None => {
                    Architecture::Gpt2(Gpt2::from_hf_dir(path, dtype.kind(), device)?)
                }
                Some(other) => {
                    return Err(LmError::Unsupported(format!(
                        "model_type `{other}` in {} (supported: llama, mistral, gpt2)",
                        path.join("config.json").display()
                    )))
                }
            };
            let tokenizer = Tokenizer::from_hf_file(path.join("tokenizer.json"))?;
            let model = Model {
                arch: net,
                tokenizer,
                dtype,
                device,
                source: path.to_path_buf(),
                reference_generation: false,
                share_repeated_prompts: false,
                packed_generation: false,
                last_timing: None,
                stored_types: None,
            };
            model.check_finite()?;
            return Ok(model);
        }
        let g = GgufFile::open(path)?;
        let arch = g.get_str("general.architecture")?;
        let net = match arch {
            "llama" | "mistral" => Architecture::Llama(Llama::from_gguf(&g, dtype.kind(), device)?),
            "gpt2" => Architecture::Gpt2(Gpt2::from_gguf(&g, dtype.kind(), device)?),
            other => {
                return Err(LmError::Unsupported(format!(
                    "GGUF architecture `{other}` in {} (supported: llama, mistral, gpt2)",
                    path.display()
                )))
            }
        };
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let ty = |name: &str| g.tensor_info(name).map(|t| t.ggml_type);
        let stored_types = ty("blk.0.ffn_down.weight")
            .zip(ty("output.weight").or_else(|| ty("token_embd.weight")));
        let model = Model {
            arch: net,
            tokenizer,
            dtype,
            device,
            source: path.to_path_buf(),
            reference_generation: false,
            share_repeated_prompts: false,
            packed_generation: false,
            last_timing: None,
            stored_types,
        };
        model.check_finite()?;
        Ok(model)
    }

    /// Refuses weights holding NaN or ±inf (they decode to blank text).
    fn check_finite(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, t) in self.parameters() {
            let finite = t
                .f_isfinite()
                .and_then(|f| f.f_all())
                .map(|a| a.int64_value(&[]) != 0)
                .map_err(|e| LmError::Tensor {
                    path: self.source.display().to_string(),
                    tensor: name.clone(),
                    msg: e.to_string(),
                })?;
            if !finite {
                return Err(LmError::Tensor {
                    path: self.source.display().to_string(),
                    tensor: name,
                    msg: "holds NaN or infinite values".into(),
                });
            }
        }
        Ok(())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Mutable access to the tokenizer (e.g. to set a chat template).
    pub fn tokenizer_mut(&mut self) -> &mut Tokenizer {
        &mut self.tokenizer
    }

    /// The network.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The dtype it was loaded with.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The file or directory it was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of transformer blocks.
    pub fn n_layers(&self) -> usize {
        match &self.arch {
            Architecture::Llama(m) => m.config().num_hidden_layers,
            Architecture::Gpt2(m) => m.config().n_layer,
        }
    }

    /// Width of the residual stream.
    pub fn hidden_size(&self) -> usize {
        match &self.arch {
            Architecture::Llama(m) => m.config().hidden_size,
            Architecture::Gpt2(m) => m.config().n_embd,
        }
    }

    /// The output layer's weight `[vocab, hidden]` (the unembedding: logits
    /// are the final normalised hidden state times its transpose). Frozen,
    /// like every model tensor.
    pub fn unembedding(&self) -> &Tensor {
        match &self.arch {
            Architecture::Llama(m) => m.unembedding(),
            Architecture::Gpt2(m) => m.unembedding(),
        }
    }

    /// Number of logits per position.
    pub fn vocab_size(&self) -> usize {
        match &self.arch {
            Architecture::Llama(m) => m.config().vocab_size,
            Architecture::Gpt2(m) => m.config().vocab_size,
        }
    }

    /// `(n_kv_heads, head_dim)` of the attention layers (the shape prefix
    /// keys/values need).
    pub fn kv_shape(&self) -> (usize, usize) {
        match &self.arch {
            Architecture::Llama(m) => (m.config().num_key_value_heads, m.config().head_dim),
            Architecture::Gpt2(m) => (m.config().n_head, m.config().n_embd / m.config().n_head),
        }
    }

    /// Width of the fused query/key/value projection (the last dimension a
    /// [`crate::hooks::QkvDelta`] returns): query heads, then keys, then values.
    pub fn qkv_width(&self) -> usize {
        let (n_kv, head_dim) = self.kv_shape();
        let q = match &self.arch {
            Architecture::Llama(m) => m.config().num_attention_heads * head_dim,
            Architecture::Gpt2(m) => m.config().n_embd,
        };
        q + 2 * n_kv * head_dim
    }

    /// Largest number of positions the model supports (hard limit for
    /// learned position embeddings).
    pub fn max_positions(&self) -> usize {
        match &self.arch {
            Architecture::Llama(m) => m.config().max_position_embeddings,
            Architecture::Gpt2(m) => m.config().n_positions,
        }
    }

    /// Every parameter tensor by name (all frozen).
    pub fn parameters(&self) -> Vec<(String, &Tensor)> {
        match &self.arch {
            Architecture::Llama(m) => m.parameters(),
            Architecture::Gpt2(m) => m.parameters(),
        }
    }

    /// Number of tokens in the KV cache.
    pub fn cache_len(&self) -> usize {
        match &self.arch {
            Architecture::Llama(m) => m.cache_len(),
            Architecture::Gpt2(m) => m.cache_len(),
        }
    }

    /// Replaces the KV cache by its batch rows `index` (`[new_batch]`,
    /// i64; rows may repeat).
    pub fn select_cache_rows(&mut self, index: &Tensor) -> Result<()> {
        match &mut self.arch {
            Architecture::Llama(m) => m.select_cache_rows(index),
            Architecture::Gpt2(m) => m.select_cache_rows(index),
        }
    }

    /// As [`Model::select_cache_rows`] with `index` = `row_of`, sharing the
    /// cached positions between the rows that repeat a row instead of
    /// copying them (the host decode path reads them in place).
    pub(crate) fn share_cache_rows(&mut self, row_of: &[usize]) -> Result<()> {
        match &mut self.arch {
            Architecture::Llama(m) => m.share_cache_rows(row_of),
            Architecture::Gpt2(m) => m.share_cache_rows(row_of),
        }
    }

    /// Makes generation prefill each distinct prompt of a batch once and
    /// copy its KV cache to the rows that repeat it (RL sampling passes
    /// every prompt k times), when the hooks are `None` or act on no hidden
    /// state of the prompts (read-outs, logits processors and steering from
    /// the response start on: prefix keys/values, adapters and steering of
    /// prompt positions may hold per-row tensors). Logits processors
    /// then run on the prefill's last logits after they are copied to every
    /// row, so they see the whole batch as without sharing. Off by
    /// default: libtorch's CPU kernels are not batch-invariant, so a
    /// smaller prefill batch can change log-probs in the last bits (about
    /// 1e-6) and, rarely, a sampled token.
    pub fn set_share_repeated_prompts(&mut self, on: bool) {
        self.share_repeated_prompts = on;
    }

    /// Builds weight-only quantized copies of the linear layers and the
    /// output layer as `plan` says ([`PackPlan::default`] drops them).
    /// Generation then reads them (see [`Model::set_packed_generation`])
    /// for decode steps (one position per row, up to
    /// [`crate::linear::PACKED_MAX_ROWS`] rows, no gradient); prefills and
    /// every other forward pass keep the dense weights (see
    /// [`crate::linear`]). On an error no layer is
    /// packed. Llama-architecture models only.
    pub fn pack_weights(&mut self, plan: PackPlan) -> Result<()> {
        self.packed_generation = false;
        let packed = plan != PackPlan::default();
        match &mut self.arch {
            Architecture::Llama(m) => {
                m.pack_weights(plan)?;
                self.packed_generation = packed;
                Ok(())
            }
            Architecture::Gpt2(_) if plan == PackPlan::default() => Ok(()),
            Architecture::Gpt2(_) => Err(LmError::Unsupported(format!(
                "{} weights are implemented for Llama-architecture models; {} is GPT-2 (use f32 or bf16)",
                plan.name(),
                self.source.display()
            ))),
        }
    }

    /// Whether generation reads the packed copies (on after
    /// [`Model::pack_weights`] packs; off: generation keeps the dense
    /// weights, the copies stay for the callers that turn it on again,
    /// e.g. RL sampling while evaluation stays dense).
    pub fn set_packed_generation(&mut self, on: bool) {
        self.packed_generation = on;
    }

    /// See [`Model::set_packed_generation`].
    pub fn packed_generation(&self) -> bool {
        self.packed_generation
    }

    /// The packed copies generation decodes with.
    pub fn pack_plan(&self) -> PackPlan {
        match &self.arch {
            Architecture::Llama(m) => m.pack_plan(),
            Architecture::Gpt2(_) => PackPlan::default(),
        }
    }

    /// The packing that keeps this model's stored weights about as precise
    /// as the file holds them ([`Packing::keeping`] of the blocks' and the
    /// output layer's GGUF types): for SmolLM2's Q4_1 file, int4 blocks
    /// and an int8 output layer (stored Q8_0). Dense for float files,
    /// Hugging Face directories and GPT-2 models.
    pub fn auto_pack_plan(&self) -> PackPlan {
        match (&self.arch, self.stored_types) {
            (Architecture::Llama(_), Some((blocks, output))) => PackPlan {
                blocks: Packing::keeping(blocks),
                output: Packing::keeping(output),
            },
            _ => PackPlan::default(),
        }
    }

    /// Where the time of the last [`Model::generate`] call went.
    pub fn last_generation_timing(&self) -> Option<GenerationTiming> {
        self.last_timing
    }

    /// Lets forward passes use the packed weights (see
    /// [`Model::pack_weights`]) while on: decode steps (one position per
    /// row) of at most [`crate::linear::PACKED_MAX_ROWS`] rows through
    /// which no gradient flows. Generation turns it on for its duration and off after; this
    /// is for callers that decode with [`Model::forward_cached`] themselves
    /// (e.g. to score text the way generation computes it).
    pub fn set_use_packed(&mut self, on: bool) {
        if let Architecture::Llama(m) = &mut self.arch {
            m.set_use_packed(on);
        }
    }

    /// Which decode steps do the work between matmuls on the host
    /// ([`HostDecode::Packed`], the default: those with packed weights and
    /// no hooks, about forty fewer libtorch calls per layer) instead of as
    /// tensor operations ([`HostDecode::Off`]: the reference the host path
    /// is tested and benchmarked against). Both compute the same function
    /// up to f32 rounding order.
    #[doc(hidden)]
    pub fn set_host_decode(&mut self, mode: crate::HostDecode) {
        if let Architecture::Llama(m) = &mut self.arch {
            m.set_host_decode(mode);
        }
    }

    /// Turns off (`true`) or on (`false`, the default) generation's prefill
    /// shortcut: output-layer logits of the last position only. It does
    /// not change any token or log-prob; tests compare both paths. `true`
    /// also turns off [`Model::set_share_repeated_prompts`].
    #[doc(hidden)]
    pub fn set_reference_generation(&mut self, on: bool) {
        self.reference_generation = on;
    }

    /// Empties the KV cache.
    pub fn clear_cache(&mut self) {
        match &mut self.arch {
            Architecture::Llama(m) => m.clear_cache(),
            Architecture::Gpt2(m) => m.clear_cache(),
        }
    }

    /// A stateless forward pass over `tokens` (`[batch, seq]`, i64): the KV
    /// cache is cleared before and after. `padding_mask` (`[batch, seq]`,
    /// nonzero for real tokens) supports left padding. Returns `[batch, seq,
    /// vocab]` f32 logits and the read-outs the hooks ask for.
    pub fn forward(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: Option<&Hooks<'_>>,
    ) -> Result<ForwardOutput> {
        self.clear_cache();
        let out = self.forward_cached(tokens, padding_mask, hooks);
        self.clear_cache();
        out
    }

    /// The read-outs `hooks` ask for, running the blocks only up to the
    /// deepest one (no later block, no output layer): `[batch, seq,
    /// hidden]` per index, ascending. Stateless like [`Model::forward`].
    pub fn read_out(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: &Hooks<'_>,
    ) -> Result<Vec<(usize, Tensor)>> {
        self.clear_cache();
        let out =
            self.forward_cached_scoped(tokens, padding_mask, Some(hooks), LogitsScope::ReadoutOnly);
        self.clear_cache();
        Ok(out?.hidden)
    }

    /// A forward pass that continues from the KV cache and appends `tokens`
    /// to it. `padding_mask` covers cached and new tokens (`[batch, cached +
    /// seq]`). Prefix keys/values of the hooks are used when the cache is
    /// empty (and stay in it).
    pub fn forward_cached(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: Option<&Hooks<'_>>,
    ) -> Result<ForwardOutput> {
        self.forward_cached_scoped(tokens, padding_mask, hooks, LogitsScope::All)
    }

    /// Like [`Model::forward_cached`], computing logits only for the
    /// positions `scope` names (see [`LogitsScope`]).
    pub fn forward_cached_scoped(
        &mut self,
        tokens: &Tensor,
        padding_mask: Option<&Tensor>,
        hooks: Option<&Hooks<'_>>,
        scope: LogitsScope,
    ) -> Result<ForwardOutput> {
        let tokens = if tokens.kind() == Kind::Int64 {
            tokens.shallow_clone()
        } else {
            tokens.f_to_kind(Kind::Int64)?
        };
        let seq = tokens.size().last().copied().unwrap_or(0).max(0) as usize;
        if self.cache_len().saturating_add(seq) > self.max_positions() {
            return Err(LmError::InvalidArgument(format!(
                "{} tokens (cached {} + new {seq}) exceed the model's context of {} tokens",
                self.cache_len() + seq,
                self.cache_len(),
                self.max_positions()
            )));
        }
        let vocab = self.vocab_size() as i64;
        if tokens.numel() > 0 {
            let min = tokens.f_min()?.f_int64_value(&[])?;
            let max = tokens.f_max()?.f_int64_value(&[])?;
            if min < 0 || max >= vocab {
                return Err(LmError::InvalidArgument(format!(
                    "token ids must be in 0..{vocab}, got range {min}..={max}"
                )));
            }
        }
        match &mut self.arch {
            Architecture::Llama(m) => m.forward_scoped(&tokens, padding_mask, hooks, scope),
            Architecture::Gpt2(m) => m.forward_scoped(&tokens, padding_mask, hooks, scope),
        }
    }

    /// Token ids of a prompt as `generate` builds them.
    pub fn encode_prompt(&self, prompt: &str, opts: &GenerateOptions) -> Result<Vec<u32>> {
        if opts.chat {
            let Some(template) = self.tokenizer.chat_template() else {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "{} has no chat template this crate can render; using plain prompts",
                        self.source.display()
                    )
                });
                return self.tokenizer.encode(prompt, opts.add_special_tokens);
            };
            let text = template.render(&[ChatMessage::user(prompt)], true);
            // The template carries its own special tokens.
            self.tokenizer.encode(&text, false)
        } else {
            self.tokenizer.encode(prompt, opts.add_special_tokens)
        }
    }

    /// Token ids of a conversation of `messages`: rendered by the chat
    /// template when `opts.chat` is set and the model has one, otherwise
    /// the messages' texts joined by blank lines (a plain prompt).
    pub fn encode_messages(
        &self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
    ) -> Result<Vec<u32>> {
        match (opts.chat, self.tokenizer.chat_template()) {
            (true, Some(template)) => {
                let text = template.render(messages, true);
                self.tokenizer.encode(&text, false)
            }
            (true, None) | (false, _) if messages.len() == 1 => {
                self.encode_prompt(&messages[0].content, opts)
            }
            _ => {
                let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                self.tokenizer
                    .encode(&text.join("\n\n"), opts.add_special_tokens)
            }
        }
    }

    /// Generates continuations of `prompts` as one left-padded batch.
    pub fn generate(
        &mut self,
        prompts: &[&str],
        opts: &GenerateOptions,
        hooks: Option<&Hooks<'_>>,
    ) -> Result<Vec<Generation>> {
        self.generate_stream(prompts, opts, hooks, None)
    }

    /// Like [`Model::generate`], calling `on_token` for every token as it is
    /// produced (for printing).
    pub fn generate_stream(
        &mut self,
        prompts: &[&str],
        opts: &GenerateOptions,
        hooks: Option<&Hooks<'_>>,
        on_token: Option<&mut dyn FnMut(&TokenEvent<'_>)>,
    ) -> Result<Vec<Generation>> {
        let ids = prompts
            .iter()
            .map(|p| self.encode_prompt(p, opts))
            .collect::<Result<Vec<_>>>()?;
        self.generate_from_tokens(&ids, opts, hooks, on_token)
    }

    /// Generates from already tokenised prompts.
    pub fn generate_from_tokens(
        &mut self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        hooks: Option<&Hooks<'_>>,
        on_token: Option<&mut dyn FnMut(&TokenEvent<'_>)>,
    ) -> Result<Vec<Generation>> {
        let rngs = (0..prompts.len())
            .map(|i| Rng::new(opts.seed, i as u64))
            .collect();
        self.generate_with_rngs(prompts, opts, hooks, on_token, rngs)
    }

    /// Like [`Model::generate_from_tokens`] with one sampling seed per
    /// prompt (`opts.seed` is not used): a row samples from the same
    /// random stream whatever batch it shares and wherever it sits in it
    /// (for a server that batches independent requests).
    pub fn generate_seeded(
        &mut self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        opts: &GenerateOptions,
        hooks: Option<&Hooks<'_>>,
    ) -> Result<Vec<Generation>> {
        if seeds.len() != prompts.len() {
            return Err(LmError::InvalidArgument(format!(
                "{} seeds for {} prompts",
                seeds.len(),
                prompts.len()
            )));
        }
        let rngs = seeds.iter().map(|&s| Rng::new(s, 0)).collect();
        self.generate_with_rngs(prompts, opts, hooks, None, rngs)
    }

    fn generate_with_rngs(
        &mut self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        hooks: Option<&Hooks<'_>>,
        mut on_token: Option<&mut dyn FnMut(&TokenEvent<'_>)>,
        mut rngs: Vec<Rng>,
    ) -> Result<Vec<Generation>> {
        opts.validate()?;
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
            return Err(LmError::InvalidArgument(format!(
                "prompt {i} has no tokens (an empty prompt needs BOS, or a model that adds it)"
            )));
        }
        let b = prompts.len();
        let len = crate::hooks::response_start(prompts);
        // Every architecture: past its context a Llama's rotary positions
        // are ones it never saw (and a huge count would never end).
        if len.saturating_add(opts.max_new_tokens) > self.max_positions() {
            return Err(LmError::InvalidArgument(format!(
                "prompt ({len} tokens) plus max_new_tokens ({}) exceed the model's context of {} tokens",
                opts.max_new_tokens,
                self.max_positions()
            )));
        }
        let pad = self.tokenizer.pad_id() as i64;
        let mut stop: Vec<u32> = opts.stop_tokens.clone();
        if opts.stop_on_eos {
            stop.extend_from_slice(self.tokenizer.stop_ids());
        }

        // Prefill shortcuts (see `set_reference_generation`): logits of the
        // last position only, and, when asked for and the hooks treat all
        // rows alike, one prefill row per distinct prompt whose KV cache is
        // then repeated to the rows that share it.
        let fast = !self.reference_generation;
        let mut distinct: Vec<usize> = Vec::new();
        let mut row_of: Vec<i64> = Vec::with_capacity(b);
        if fast
            && self.share_repeated_prompts
            && hooks.is_none_or(|h| h.hidden_rows_independent(len))
        {
            let mut seen: std::collections::HashMap<&[u32], i64> = std::collections::HashMap::new();
            for (i, p) in prompts.iter().enumerate() {
                let r = *seen.entry(p.as_slice()).or_insert_with(|| {
                    distinct.push(i);
                    distinct.len() as i64 - 1
                });
                row_of.push(r);
            }
        }
        let dedupe = !distinct.is_empty() && distinct.len() < b;
        let prefill_rows: Vec<usize> = if dedupe { distinct } else { (0..b).collect() };
        let pb = prefill_rows.len();

        let mut flat = Vec::with_capacity(pb * len);
        for &r in &prefill_rows {
            let p = &prompts[r];
            flat.extend(std::iter::repeat_n(pad, len - p.len()));
            flat.extend(p.iter().map(|&t| t as i64));
        }
        let tokens = Tensor::f_from_slice(&flat)?.f_view([pb as i64, len as i64])?;
        let mut mask = Vec::with_capacity(b * len);
        for p in prompts {
            let n = len - p.len();
            mask.extend(std::iter::repeat_n(0i64, n));
            mask.extend(std::iter::repeat_n(1i64, p.len()));
        }
        let mut padding = Tensor::f_from_slice(&mask)?
            .f_view([b as i64, len as i64])?
            .f_to_device(self.device)?;
        let any_padding = prompts.iter().any(|p| p.len() != len);

        let mut gens: Vec<Generation> = prompts
            .iter()
            .map(|p| Generation {
                prompt_tokens: p.clone(),
                tokens: Vec::new(),
                text: String::new(),
                logprobs: Vec::new(),
                finish_reason: FinishReason::Length,
            })
            .collect();
        let mut streams = match on_token {
            Some(_) => Some(
                prompts
                    .iter()
                    .map(|p| StreamText::new(&self.tokenizer, p))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let mut done = vec![false; b];

        let _guard = tch::no_grad_guard();
        self.clear_cache();
        self.set_use_packed(self.packed_generation);
        let mut timing = GenerationTiming {
            prefill_tokens: prefill_rows.iter().map(|&r| prompts[r].len()).sum(),
            ..Default::default()
        };
        let result = (|| -> Result<()> {
            if opts.max_new_tokens == 0 {
                return Ok(());
            }
            let t_prefill = std::time::Instant::now();
            let (scope, row_index) = if fast {
                let idx = Tensor::f_from_slice(&row_of)?.f_to_device(self.device)?;
                (LogitsScope::Last, dedupe.then_some(idx))
            } else {
                (LogitsScope::All, None)
            };
            let prefill_mask = match (&row_index, any_padding) {
                (_, false) => None,
                (None, true) => Some(padding.shallow_clone()),
                (Some(_), true) => {
                    let rows: Vec<i64> = prefill_rows.iter().map(|&r| r as i64).collect();
                    let rows = Tensor::f_from_slice(&rows)?.f_to_device(self.device)?;
                    Some(padding.f_index_select(0, &rows)?)
                }
            };
            // A shared prefill runs without hooks (they hold nothing that acts
            // on hidden states then) and its logits processors run once the
            // rows are expanded, so that they see every row as usual.
            let prefill_hooks = if row_index.is_some() { None } else { hooks };
            let out =
                self.forward_cached_scoped(&tokens, prefill_mask.as_ref(), prefill_hooks, scope)?;
            let positions = out.logits.size().get(1).copied().unwrap_or(0);
            let mut last = out.logits.f_select(1, positions - 1)?;
            if let Some(idx) = &row_index {
                let rows: Vec<usize> = row_of.iter().map(|&r| r as usize).collect();
                self.share_cache_rows(&rows)?;
                last = last.f_index_select(0, idx)?;
                if let Some(h) = hooks {
                    last = h.process_logits(last.f_unsqueeze(1)?)?.f_select(1, 0)?;
                }
            }
            timing.prefill_seconds = t_prefill.elapsed().as_secs_f64();
            let _timed = DecodeClock {
                start: std::time::Instant::now(),
                seconds: &mut timing.decode_seconds,
            };
            for step in 0..opts.max_new_tokens {
                let (host, vocab) = host_logits(&last)?;
                let flat = crate::host::f32_view(&host)?;
                let rows: Vec<&[f32]> = flat.chunks(vocab).collect();
                let picks = pick_rows(&rows, &done, opts.sampling, &mut rngs);
                let mut next = Vec::with_capacity(b);
                for i in 0..b {
                    let Some((tok, lp)) = picks[i] else {
                        next.push(pad);
                        continue;
                    };
                    let tok = tok as u32;
                    gens[i].tokens.push(tok);
                    gens[i].logprobs.push(lp);
                    if let (Some(cb), Some(st)) = (on_token.as_mut(), streams.as_mut()) {
                        let delta = st[i].delta(&self.tokenizer, &gens[i].tokens)?;
                        cb(&TokenEvent {
                            index: i,
                            token: tok,
                            text: &delta,
                            logprob: lp,
                        });
                    }
                    if stop.contains(&tok) {
                        done[i] = true;
                        gens[i].finish_reason = FinishReason::Stop;
                    }
                    next.push(tok as i64);
                }
                if done.iter().all(|&d| d) || step + 1 == opts.max_new_tokens {
                    break;
                }
                let step_tokens = Tensor::f_from_slice(&next)?.f_view([b as i64, 1])?;
                let step_mask = if any_padding {
                    let ones = Tensor::f_ones([b as i64, 1], (Kind::Int64, self.device))?;
                    padding = Tensor::f_cat(&[&padding, &ones], 1)?;
                    Some(&padding)
                } else {
                    None
                };
                let out = self.forward_cached(&step_tokens, step_mask, hooks)?;
                last = out.logits.f_select(1, 0)?;
            }
            Ok(())
        })();
        self.set_use_packed(false);
        self.clear_cache();
        result?;
        // The first token of each row comes from the prefill's logits.
        timing.decode_tokens = gens.iter().map(|g| g.tokens.len().saturating_sub(1)).sum();
        self.last_timing = Some(timing);
        for (i, g) in gens.iter_mut().enumerate() {
            g.text = match &streams {
                Some(st) => st[i].text(&self.tokenizer, &g.tokens)?,
                None => StreamText::new(&self.tokenizer, &g.prompt_tokens)?
                    .text(&self.tokenizer, &g.tokens)?,
            };
        }
        Ok(gens)
    }
}

/// Writes the seconds since `start` when dropped (the decode loop's exits).
struct DecodeClock<'a> {
    start: std::time::Instant,
    seconds: &'a mut f64,
}

impl Drop for DecodeClock<'_> {
    fn drop(&mut self) {
        *self.seconds = self.start.elapsed().as_secs_f64();
    }
}
