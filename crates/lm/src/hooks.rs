//! Hook points for modules attached to a frozen model: prefix keys/values,
//! residual adapters and gates, steering vectors, hidden-state read-out and
//! logits processors.
//!
//! Hooks are explicit arguments (`Option<&Hooks>`) of every forward and
//! generation call; nothing is global. With `None`, or with a `Hooks` that
//! has nothing registered at a layer, that layer runs exactly as without
//! hooks. Hook tensors may require gradients: the model's parameters are
//! frozen, but gradients flow through its activations into whatever is
//! attached here.
//!
//! Layer indices are 0-based block indices. Read-out indices follow the
//! Hugging Face `hidden_states` convention: `0` is the embedding output (the
//! input of block 0) and `i` (1..=n_layers) is the residual stream after
//! block `i - 1`, with that block's hooks applied and before the final norm.
//!
//! Columns count the token positions of a sequence as the KV cache holds
//! them, left padding included and prefix keys/values not: a forward pass
//! without a cache starts at column 0, a cached step at the number of
//! tokens already cached. Generation left-pads its prompts to the longest,
//! so its responses start at column [`response_start`] of the prompts.

use std::collections::BTreeSet;

use tch::Tensor;

use crate::error::{LmError, Result};

/// Where in a block a residual hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookSite {
    /// After the attention output is added to the residual stream.
    AfterAttention,
    /// After the MLP output is added to the residual stream (the block output).
    AfterMlp,
}

/// A residual adapter or gate: receives the residual stream
/// `[batch, seq, hidden]` and returns the stream to continue with (for an
/// additive adapter, `hidden + f(hidden)`; for a gate, `g * hidden` ...).
///
/// Closures `Fn(usize, HookSite, &Tensor) -> Result<Tensor>` implement it.
pub trait ResidualAdapter {
    /// Transforms the residual stream at `layer`/`site`.
    fn forward(&self, layer: usize, site: HookSite, hidden: &Tensor) -> Result<Tensor>;
}

impl<F> ResidualAdapter for F
where
    F: Fn(usize, HookSite, &Tensor) -> Result<Tensor>,
{
    fn forward(&self, layer: usize, site: HookSite, hidden: &Tensor) -> Result<Tensor> {
        self(layer, site, hidden)
    }
}

/// Transforms logits `[batch, seq, vocab]` before they are returned or
/// sampled from. Generation passes `[batch, 1, vocab]`, the sampled
/// position only, at every step, the prefill included (whose output layer
/// runs on the last position only, see [`crate::LogitsScope`]).
///
/// Closures `Fn(&Tensor) -> Result<Tensor>` implement it.
pub trait LogitsProcessor {
    /// Returns the processed logits.
    fn process(&self, logits: &Tensor) -> Result<Tensor>;
}

impl<F> LogitsProcessor for F
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    fn process(&self, logits: &Tensor) -> Result<Tensor> {
        self(logits)
    }
}

/// The common logits processor: an additive bias (broadcast over the last
/// dimension, `[vocab]` or `[batch, vocab]`-shaped) then division by a
/// temperature.
#[derive(Debug)]
pub struct LogitBias {
    /// Added to the logits when present.
    pub bias: Option<Tensor>,
    /// Logits are divided by this (1.0: unchanged). Must be positive.
    pub temperature: f64,
}

impl LogitsProcessor for LogitBias {
    fn process(&self, logits: &Tensor) -> Result<Tensor> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(LmError::InvalidArgument(format!(
                "LogitBias temperature must be positive, got {}",
                self.temperature
            )));
        }
        let mut out = match &self.bias {
            Some(b) => {
                let b = if b.dim() == 2 && logits.dim() == 3 {
                    b.f_unsqueeze(1)?
                } else {
                    b.shallow_clone()
                };
                logits.f_add(&b.f_to_kind(logits.kind())?)?
            }
            None => logits.shallow_clone(),
        };
        if self.temperature != 1.0 {
            out = out.f_div_scalar(self.temperature)?;
        }
        Ok(out)
    }
}

/// Prefix keys and values for one layer, `[batch or 1, n_kv_heads,
/// prefix_len, head_dim]` each. They are prepended to that layer's KV cache
/// (after rotary embedding, i.e. used as given) and every query may attend
/// to them.
#[derive(Debug)]
pub struct PrefixKv {
    pub key: Tensor,
    pub value: Tensor,
}

/// A vector added to the residual stream, `scale * vector`, at the columns
/// from `from_column` on (0: every position); the vector broadcasts
/// against `[batch, seq, hidden]` (`[hidden]`, `[batch, 1, hidden]`, ...).
#[derive(Debug)]
pub struct Steering {
    pub vector: Tensor,
    pub scale: f64,
    /// First column the vector is added at; earlier columns are left as
    /// they are (bit for bit).
    pub from_column: usize,
}

/// The column of the first response token when `prompts` are generated
/// from together: generation left-pads them to the longest.
pub fn response_start(prompts: &[Vec<u32>]) -> usize {
    prompts.iter().map(Vec::len).max().unwrap_or(0)
}

/// A residual adapter and the first column it acts on.
pub(crate) struct PlacedAdapter<'a> {
    pub(crate) adapter: Box<dyn ResidualAdapter + 'a>,
    pub(crate) from_column: usize,
}

#[derive(Default)]
pub(crate) struct SiteHooks<'a> {
    pub(crate) steering: Vec<Steering>,
    pub(crate) adapters: Vec<PlacedAdapter<'a>>,
}

impl SiteHooks<'_> {
    fn is_empty(&self) -> bool {
        self.steering.is_empty() && self.adapters.is_empty()
    }

    /// Whether a hook of this site changes a column before `columns`.
    fn acts_before(&self, columns: usize) -> bool {
        self.adapters.iter().any(|a| a.from_column < columns)
            || self.steering.iter().any(|s| s.from_column < columns)
    }
}

/// A function of a block's attention input (`[batch, seq, hidden]`, after
/// the norm) whose output (`[batch, seq, q + k + v width]`) is added to the
/// fused query/key/value projection: a low-rank adapter on the attention
/// projections (LoRA) whose base weights stay untouched.
pub type QkvDelta<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

#[derive(Default)]
pub(crate) struct LayerHooks<'a> {
    pub(crate) prefix: Option<PrefixKv>,
    pub(crate) qkv: Vec<QkvDelta<'a>>,
    pub(crate) after_attention: SiteHooks<'a>,
    pub(crate) after_mlp: SiteHooks<'a>,
}

/// All hooks of one forward or generation call.
#[derive(Default)]
pub struct Hooks<'a> {
    pub(crate) layers: Vec<LayerHooks<'a>>,
    pub(crate) readout: BTreeSet<usize>,
    pub(crate) logits: Vec<Box<dyn LogitsProcessor + 'a>>,
}

impl std::fmt::Debug for Hooks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("layers_with_hooks", &self.layers.len())
            .field("readout", &self.readout)
            .field("logits_processors", &self.logits.len())
            .finish()
    }
}

impl<'a> Hooks<'a> {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    fn layer_mut(&mut self, layer: usize) -> &mut LayerHooks<'a> {
        if self.layers.len() <= layer {
            self.layers.resize_with(layer + 1, LayerHooks::default);
        }
        &mut self.layers[layer]
    }

    /// Prepends `key`/`value` (`[batch or 1, n_kv_heads, prefix_len,
    /// head_dim]`) to the KV cache of `layer`. Replaces an earlier prefix of
    /// that layer.
    pub fn with_prefix_kv(mut self, layer: usize, key: Tensor, value: Tensor) -> Self {
        self.layer_mut(layer).prefix = Some(PrefixKv { key, value });
        self
    }

    /// Adds `scale * vector` to the residual stream of `layer` at `site`.
    pub fn with_steering(self, layer: usize, site: HookSite, vector: Tensor, scale: f64) -> Self {
        self.with_steering_from(layer, site, vector, scale, 0)
    }

    /// Like [`Hooks::with_steering`], at the columns from `from_column` on
    /// only (e.g. a response's positions, not its prompt's; see the module
    /// documentation for columns).
    pub fn with_steering_from(
        mut self,
        layer: usize,
        site: HookSite,
        vector: Tensor,
        scale: f64,
        from_column: usize,
    ) -> Self {
        let s = Steering {
            vector,
            scale,
            from_column,
        };
        match site {
            HookSite::AfterAttention => self.layer_mut(layer).after_attention.steering.push(s),
            HookSite::AfterMlp => self.layer_mut(layer).after_mlp.steering.push(s),
        }
        self
    }

    /// Runs `adapter` on the residual stream of `layer` at `site` (after any
    /// steering vectors of that site).
    pub fn with_adapter(
        self,
        layer: usize,
        site: HookSite,
        adapter: impl ResidualAdapter + 'a,
    ) -> Self {
        self.with_adapter_from(layer, site, adapter, 0)
    }

    /// Like [`Hooks::with_adapter`], on the columns from `from_column` on
    /// only (e.g. a response's positions): the adapter sees
    /// `[batch, columns from there, hidden]` and earlier columns are left as
    /// they are (bit for bit).
    pub fn with_adapter_from(
        mut self,
        layer: usize,
        site: HookSite,
        adapter: impl ResidualAdapter + 'a,
        from_column: usize,
    ) -> Self {
        let b = PlacedAdapter {
            adapter: Box::new(adapter),
            from_column,
        };
        match site {
            HookSite::AfterAttention => self.layer_mut(layer).after_attention.adapters.push(b),
            HookSite::AfterMlp => self.layer_mut(layer).after_mlp.adapters.push(b),
        }
        self
    }

    /// Like [`Hooks::with_adapter`], for a closure (its argument types are
    /// inferred from this signature).
    pub fn with_adapter_fn<F>(self, layer: usize, site: HookSite, f: F) -> Self
    where
        F: Fn(usize, HookSite, &Tensor) -> Result<Tensor> + 'a,
    {
        self.with_adapter(layer, site, f)
    }

    /// Adds `f(x)` to the fused query/key/value projection of `layer`'s
    /// attention, `x` being the attention's input (see [`QkvDelta`]; the
    /// output's last dimension is the query width plus twice the key/value
    /// width, in that order). It acts on every column.
    pub fn with_qkv_delta<F>(mut self, layer: usize, f: F) -> Self
    where
        F: Fn(&Tensor) -> Result<Tensor> + 'a,
    {
        self.layer_mut(layer).qkv.push(Box::new(f));
        self
    }

    /// The q/k/v deltas of `layer`.
    pub(crate) fn qkv(&self, layer: usize) -> &[QkvDelta<'a>] {
        self.layers.get(layer).map_or(&[], |l| l.qkv.as_slice())
    }

    /// Requests the hidden state at read-out index `index` (see the module
    /// documentation for the convention).
    pub fn with_readout(mut self, index: usize) -> Self {
        self.readout.insert(index);
        self
    }

    /// Appends a logits processor (processors run in the order added).
    pub fn with_logits_processor(mut self, p: impl LogitsProcessor + 'a) -> Self {
        self.logits.push(Box::new(p));
        self
    }

    /// Like [`Hooks::with_logits_processor`], for a closure.
    pub fn with_logits_fn<F>(self, f: F) -> Self
    where
        F: Fn(&Tensor) -> Result<Tensor> + 'a,
    {
        self.with_logits_processor(f)
    }

    /// Checks layer indices against a model with `n_layers` blocks.
    pub(crate) fn validate(&self, n_layers: usize) -> Result<()> {
        if self.layers.len() > n_layers {
            let has_any = self.layers[n_layers..].iter().any(|l| {
                l.prefix.is_some()
                    || !l.qkv.is_empty()
                    || !l.after_attention.is_empty()
                    || !l.after_mlp.is_empty()
            });
            if has_any {
                return Err(LmError::InvalidArgument(format!(
                    "a hook is registered at a layer >= the model's {n_layers} layers"
                )));
            }
        }
        if let Some(&r) = self.readout.iter().next_back() {
            if r > n_layers {
                return Err(LmError::InvalidArgument(format!(
                    "read-out index {r} is past the model's {n_layers} layers (0..={n_layers})"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn layer(&self, layer: usize) -> Option<&LayerHooks<'a>> {
        self.layers.get(layer)
    }

    pub(crate) fn prefix(&self, layer: usize) -> Option<&PrefixKv> {
        self.layers.get(layer).and_then(|l| l.prefix.as_ref())
    }

    /// The deepest read-out index asked for.
    pub(crate) fn deepest_readout(&self) -> Option<usize> {
        self.readout.iter().next_back().copied()
    }

    pub(crate) fn wants_readout(&self, index: usize) -> bool {
        self.readout.contains(&index)
    }

    /// Whether no hook acts on the hidden states of the first `columns`
    /// columns: no prefix keys/values or adapters, and steering vectors only
    /// from `columns` on (read-outs and logits processors aside).
    /// Generation may then prefill a prompt that repeats in the batch once.
    pub(crate) fn hidden_rows_independent(&self, columns: usize) -> bool {
        self.layers.iter().all(|l| {
            l.prefix.is_none()
                && l.qkv.is_empty()
                && !l.after_attention.acts_before(columns)
                && !l.after_mlp.acts_before(columns)
        })
    }

    /// Whether a hook reads or changes hidden states (anything but logits
    /// processors).
    pub(crate) fn touches_hidden(&self) -> bool {
        !self.readout.is_empty()
            || self.layers.iter().any(|l| {
                l.prefix.is_some()
                    || !l.qkv.is_empty()
                    || !l.after_attention.is_empty()
                    || !l.after_mlp.is_empty()
            })
    }

    /// Runs the logits processors.
    pub(crate) fn process_logits(&self, logits: Tensor) -> Result<Tensor> {
        let mut l = logits;
        for p in &self.logits {
            l = p.process(&l)?;
        }
        Ok(l)
    }
}

/// Applies the hooks of `layer`/`site` to the residual stream `x`, whose
/// first position is column `past`.
pub(crate) fn apply_site(
    hooks: Option<&Hooks<'_>>,
    layer: usize,
    site: HookSite,
    x: Tensor,
    past: i64,
) -> Result<Tensor> {
    let Some(lh) = hooks.and_then(|h| h.layer(layer)) else {
        return Ok(x);
    };
    let sh = match site {
        HookSite::AfterAttention => &lh.after_attention,
        HookSite::AfterMlp => &lh.after_mlp,
    };
    if sh.is_empty() {
        return Ok(x);
    }
    let mut x = x;
    for s in &sh.steering {
        let v = s.vector.f_to_kind(x.kind())?;
        let v = if s.scale == 1.0 {
            v
        } else {
            v.f_mul_scalar(s.scale)?
        };
        x = add_from(x, &v, s.from_column as i64 - past)?;
    }
    for a in &sh.adapters {
        let y = adapt_from(
            &x,
            |x| a.adapter.forward(layer, site, x),
            a.from_column as i64 - past,
        )?;
        if y.size() != x.size() {
            return Err(LmError::InvalidArgument(format!(
                "adapter at layer {layer} {site:?} returned shape {:?}, expected {:?}",
                y.size(),
                x.size()
            )));
        }
        x = y;
    }
    Ok(x)
}

/// `f(x)` at the positions from `start` (relative to `x`'s first) on.
fn adapt_from(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>, start: i64) -> Result<Tensor> {
    let t = x.size()[1];
    if start <= 0 {
        return f(x);
    }
    if start >= t {
        return Ok(x.shallow_clone());
    }
    let head = x.f_narrow(1, 0, start)?;
    let rest = x.f_narrow(1, start, t - start)?;
    let tail = f(&rest)?;
    // A tail of the wrong shape cannot equal `x`'s: the caller reports it.
    if tail.size() != rest.size() {
        return Ok(tail);
    }
    Ok(Tensor::f_cat(&[&head, &tail], 1)?)
}

/// `x + v` at the positions from `start` (relative to `x`'s first) on.
fn add_from(x: Tensor, v: &Tensor, start: i64) -> Result<Tensor> {
    let t = x.size()[1];
    if start <= 0 {
        return Ok(x.f_add(v)?);
    }
    if start >= t {
        return Ok(x);
    }
    // A vector with its own sequence dimension is cut like `x`.
    let v = if v.dim() == 3 && v.size()[1] == t {
        v.f_narrow(1, start, t - start)?
    } else {
        v.shallow_clone()
    };
    // Concatenation instead of adding a zero-masked vector keeps the head
    // bit-identical to an unsteered pass.
    let tail = x.f_narrow(1, start, t - start)?.f_add(&v)?;
    Ok(Tensor::f_cat(&[&x.f_narrow(1, 0, start)?, &tail], 1)?)
}
