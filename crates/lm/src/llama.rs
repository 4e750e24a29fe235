//! The Llama architecture: RMSNorm, rotary position embeddings, SwiGLU MLP,
//! grouped-query attention, optionally tied embeddings.
//!
//! Models load from GGUF files ([`Llama::from_gguf`]) or Hugging Face
//! directories ([`Llama::from_hf_dir`]). Weights are looked up by their GGUF
//! names (`token_embd.weight`, `blk.N.attn_q.weight`, ...), which are mapped
//! to Hugging Face names for directories. GGUF stores the query and key projections of
//! Llama models in the interleaved ("Meta") rotary layout: llama.cpp's
//! converter permutes Hugging Face weights so that rotary embedding rotates
//! adjacent pairs `(x[2i], x[2i+1])`. This module undoes that permutation on
//! load (rows `(head, i, pair)` become `(head, pair, i)`), so the model runs
//! the Hugging Face "rotate half" convention and matches `transformers`.
//! Hugging Face checkpoints already use that layout and are not permuted.
//!
//! Parameters are frozen (`requires_grad = false`); activations are ordinary
//! tensors, so gradients flow through the model into attached hooks.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::common::{
    step_mask, with_prefix_columns, ForwardOutput, KvCache, LayerCaches, LogitsScope,
};
pub use crate::config::LlamaConfig;
use crate::config::RopeLayout;
use crate::error::{LmError, Result};
use crate::gguf::GgufFile;
use crate::hooks::{apply_site, HookSite, Hooks, PrefixKv, QkvDelta};
use crate::host::HostDecode;
use crate::linear::{Linear, PackPlan};
use crate::weights::{SafetensorsWeights, WeightSource};

thread_local! {
    /// Attention scores of one decode row, reused from step to step.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Maps the GGUF tensor names the loader asks for to Hugging Face Llama
/// names (`model.layers.N.self_attn.q_proj.weight`, ...).
struct HfLlamaNames<'a> {
    inner: &'a dyn WeightSource,
}

impl HfLlamaNames<'_> {
    fn hf_name(name: &str) -> String {
        match name {
            "token_embd.weight" => return "model.embed_tokens.weight".into(),
            "output_norm.weight" => return "model.norm.weight".into(),
            "output.weight" => return "lm_head.weight".into(),
            _ => {}
        }
        let Some(rest) = name.strip_prefix("blk.") else {
            return name.to_string();
        };
        let Some((layer, part)) = rest.split_once('.') else {
            return name.to_string();
        };
        let part = part.strip_suffix(".weight").unwrap_or(part);
        let hf = match part {
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => return name.to_string(),
        };
        format!("model.layers.{layer}.{hf}.weight")
    }
}

impl WeightSource for HfLlamaNames<'_> {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.inner.get(&Self::hf_name(name), shape)
    }
    fn has(&self, name: &str) -> bool {
        self.inner.has(&Self::hf_name(name))
    }
}

#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.kind() == Kind::Float {
            let n = self.weight.size();
            return Ok(x.f_rms_norm(&n[..], Some(&self.weight), self.eps)?);
        }
        // In f32 whatever the model dtype, as Hugging Face does.
        let xf = x.f_to_kind(Kind::Float)?;
        let var = xf
            .f_square()?
            .f_mean_dim(Some(&[-1i64][..]), true, Kind::Float)?;
        let y = xf.f_mul(&var.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(y.f_to_kind(x.kind())?.f_mul(&self.weight)?)
    }
}

/// Undoes llama.cpp's rotary permutation of a `[heads * head_dim, in]` weight.
fn unpermute_rope(w: &Tensor, heads: i64, head_dim: i64) -> Result<Tensor> {
    let s = w.size();
    Ok(w.f_reshape([heads, head_dim / 2, 2, s[1]])?
        .f_transpose(1, 2)?
        .f_reshape([s[0], s[1]])?
        .f_contiguous()?
        .set_requires_grad(false))
}

/// `x * cos + rotate_half(x) * sin` on `[batch, heads, seq, head_dim]`,
/// where `rotate_half(x) = [-x2, x1]`. Written as `x * cos + roll(x) *
/// signed_sin` with `roll(x) = [x2, x1]` and `signed_sin = [-sin, sin]`
/// (the same products, exactly): four tensor operations instead of seven,
/// which counts at decode, where each operation's dispatch costs more
/// than its arithmetic.
fn apply_rope(x: &Tensor, cos: &Tensor, signed_sin: &Tensor) -> Result<Tensor> {
    let d = *x.size().last().unwrap_or(&0);
    let rolled = x.f_roll([d / 2].as_slice(), [-1i64].as_slice())?;
    Ok(x.f_mul(cos)?.f_add(&rolled.f_mul(signed_sin)?)?)
}

struct Attention {
    /// Query, key and value projections stacked row-wise (one matmul).
    wqkv: Linear,
    wo: Linear,
    n_heads: i64,
    n_kv: i64,
    head_dim: i64,
    kv_cache: Option<KvCache>,
}

impl Attention {
    fn forward(
        &mut self,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        prefix: Option<&PrefixKv>,
        qkv_delta: &[QkvDelta<'_>],
        packed: bool,
    ) -> Result<Tensor> {
        let s = x.size();
        let (b, t) = (s[0], s[1]);
        let qd = self.n_heads * self.head_dim;
        let kd = self.n_kv * self.head_dim;
        let mut qkv = self.wqkv.forward(x, packed)?;
        for f in qkv_delta {
            qkv = qkv.f_add(&f(x)?.f_to_kind(qkv.kind())?)?;
        }
        let qkv = qkv.f_split_with_sizes([qd + kd, kd], -1)?;
        // Queries and keys rotate together, as one tensor of heads.
        let qk = qkv[0]
            .f_view([b, t, self.n_heads + self.n_kv, self.head_dim])?
            .f_transpose(1, 2)?;
        let qk = apply_rope(&qk, cos, sin)?.f_split_with_sizes([self.n_heads, self.n_kv], 1)?;
        let (q, k) = (qk[0].shallow_clone(), qk[1].shallow_clone());
        let v = qkv[1]
            .f_view([b, t, self.n_kv, self.head_dim])?
            .f_transpose(1, 2)?;
        let (k, v, prefix_len) = match self.kv_cache.as_mut() {
            Some(c) => {
                let (k, v) = c.append(&k, &v)?;
                (k, v, c.prefix_len)
            }
            None => {
                let (k, v, prefix_len) = match prefix {
                    Some(p) => {
                        let (pk, pv) = self.check_prefix(p, b, x.kind())?;
                        let plen = pk.size()[2];
                        (
                            Tensor::f_cat(&[&pk, &k], 2)?,
                            Tensor::f_cat(&[&pv, &v], 2)?,
                            plen,
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
            self.n_heads != self.n_kv,
        )?;
        let y = y
            .f_transpose(1, 2)?
            .f_reshape([b, t, self.n_heads * self.head_dim])?;
        self.wo.forward(&y, packed)
    }

    fn check_prefix(&self, p: &PrefixKv, b: i64, kind: Kind) -> Result<(Tensor, Tensor)> {
        let ks = p.key.size();
        let vs = p.value.size();
        let ok = |s: &[i64]| {
            s.len() == 4 && (s[0] == b || s[0] == 1) && s[1] == self.n_kv && s[3] == self.head_dim
        };
        if !ok(&ks) || ks != vs {
            return Err(LmError::InvalidArgument(format!(
                "prefix key {ks:?} / value {vs:?} must both be [batch or 1, {}, prefix_len, {}]",
                self.n_kv, self.head_dim
            )));
        }
        let e = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_to_kind(kind)?
                .f_expand([b, ks[1], ks[2], ks[3]], false)?)
        };
        Ok((e(&p.key)?, e(&p.value)?))
    }
}

struct Mlp {
    /// Gate and up projections stacked row-wise (one matmul).
    gate_up: Linear,
    down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, packed: bool) -> Result<Tensor> {
        let gu = self.gate_up.forward(x, packed)?.f_chunk(2, -1)?;
        let g = gu[0].f_silu()?;
        self.down.forward(&g.f_mul(&gu[1])?, packed)
    }
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

/// A Llama model with its KV cache.
pub struct Llama {
    config: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    inv_freq: Tensor,
    kind: Kind,
    device: Device,
    past: i64,
    /// Whether forward passes may use the packed weights (generation).
    use_packed: bool,
    /// Which decode steps run their glue on the host ([`crate::host`]).
    host_decode: HostDecode,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.config)
            .field("kind", &self.kind)
            .field("cached_tokens", &self.past)
            .finish()
    }
}

impl Llama {
    /// The output layer's weight `[vocab, hidden]`.
    pub fn unembedding(&self) -> &Tensor {
        self.lm_head.weight()
    }

    /// Builds or drops weight-only quantized copies of every linear layer
    /// and the output layer (see [`crate::linear`]).
    pub(crate) fn pack_weights(&mut self, plan: PackPlan) -> Result<()> {
        let mut pack = |plan: PackPlan| -> Result<()> {
            for b in &mut self.blocks {
                b.attn.wqkv.pack(plan.blocks)?;
                b.attn.wo.pack(plan.blocks)?;
                b.mlp.gate_up.pack(plan.blocks)?;
                b.mlp.down.pack(plan.blocks)?;
            }
            self.lm_head.pack(plan.output)?;
            self.lm_head.refine_activations();
            Ok(())
        };
        // A refusal (a scale outside f16's range) leaves no layer packed.
        pack(plan).inspect_err(|_| {
            let _ = pack(PackPlan::default());
        })
    }

    /// The packed copies' formats.
    pub(crate) fn pack_plan(&self) -> PackPlan {
        PackPlan {
            blocks: self.blocks.first().and_then(|b| b.mlp.down.packing()),
            output: self.lm_head.packing(),
        }
    }

    /// Lets forward passes use the packed weights (where they have any).
    pub(crate) fn set_use_packed(&mut self, on: bool) {
        self.use_packed = on;
    }

    /// Which decode steps do their glue on the host.
    pub(crate) fn set_host_decode(&mut self, mode: HostDecode) {
        self.host_decode = mode;
    }

    /// Whether a pass of `tokens` `[batch, 1]` may take the host decode
    /// path: generation with packed weights, no hooks on hidden states
    /// (logits processors run on its logits), an f32 model on the
    /// CPU, every layer's cache filled and without prefix positions.
    fn host_step_applies(&self, t: i64, hooks: Option<&Hooks<'_>>) -> bool {
        t == 1
            && self.use_packed
            && match self.host_decode {
                HostDecode::Off => false,
                HostDecode::Packed => self.pack_plan().blocks.is_some(),
                HostDecode::Always => true,
            }
            && hooks.is_none_or(|h| !h.touches_hidden())
            && self.kind == Kind::Float
            && self.device == Device::Cpu
            && self.embed.kind() == Kind::Float
            && self.embed.is_contiguous()
            && self.blocks.iter().all(|b| {
                b.attn
                    .kv_cache
                    .as_ref()
                    .is_some_and(|c| c.prefix_len == 0 && c.len() == self.past)
            })
    }

    /// One decode step for `ids` (one token per batch row) with the glue on
    /// the host (see [`crate::host`]); `valid[r][j]` says whether cached
    /// position `j` of row `r` is a real token (`None`: all are).
    fn host_step(&mut self, ids: &[i64], valid: Option<&[Vec<bool>]>) -> Result<Tensor> {
        use crate::host;
        let c = &self.config;
        let (d, hd) = (c.hidden_size, c.head_dim);
        let heads = host::Heads {
            query: c.num_attention_heads,
            kv: c.num_key_value_heads,
            dim: hd,
        };
        let (qd, kd, ffn) = (heads.query * hd, heads.kv * hd, c.intermediate_size);
        let eps = c.rms_norm_eps;
        let b = ids.len();
        let past = self.past as usize;
        let embed = host::f32_view(&self.embed)?;
        let vocab = embed.len() / d;
        let mut x = Vec::with_capacity(b * d);
        for &id in ids {
            let row = usize::try_from(id)
                .ok()
                .filter(|&i| i < vocab)
                .ok_or_else(|| {
                    LmError::InvalidArgument(format!(
                        "token id {id} outside the vocabulary of {vocab}"
                    ))
                })?;
            x.extend_from_slice(&embed[row * d..(row + 1) * d]);
        }
        // Each row's position: its count of real tokens before this one.
        let positions: Vec<f32> = (0..b)
            .map(|r| {
                let p = valid.map_or(past, |v| v[r].iter().filter(|&&k| k).count());
                let p = p as f32;
                c.rope_linear_factor.map_or(p, |f| p / f as f32)
            })
            .collect();
        let inv_freq = host::f32_view(&self.inv_freq)?;
        // Each row's rotary cosines and sines, the same in every layer.
        let half = inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(b * half), Vec::with_capacity(b * half));
        let (mut c_row, mut s_row) = (Vec::new(), Vec::new());
        for &p in &positions {
            host::rope_angles(p, inv_freq, &mut c_row, &mut s_row);
            cos.extend_from_slice(&c_row);
            sin.extend_from_slice(&s_row);
        }
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
        let (mut h, mut proj, mut y, mut act) =
            (Vec::new(), Vec::new(), vec![0f32; b * qd], Vec::new());
        for blk in &mut self.blocks {
            host::rms_norm(&x, host::f32_view(&blk.attn_norm.weight)?, eps, &mut h);
            blk.attn.wqkv.forward_host(&h, b, &mut proj)?;
            let cache =
                blk.attn.kv_cache.as_mut().ok_or_else(|| {
                    LmError::InvalidArgument("decode step without a KV cache".into())
                })?;
            let len = cache.len() as usize;
            let kv = cache.host_buffers(1)?;
            let (kbuf, vbuf, cap, own) = (kv.k, kv.v, kv.cap, kv.own);
            for r in 0..b {
                let row = &mut proj[r * (qd + 2 * kd)..(r + 1) * (qd + 2 * kd)];
                let (qk, v) = row.split_at_mut(qd + kd);
                let angles = r * half..(r + 1) * half;
                host::rope(qk, hd, &cos[angles.clone()], &sin[angles]);
                for g in 0..heads.kv {
                    let at = ((r * heads.kv + g) * cap + own) * hd;
                    kbuf[at..at + hd].copy_from_slice(&qk[qd + g * hd..qd + (g + 1) * hd]);
                    vbuf[at..at + hd].copy_from_slice(&v[g * hd..(g + 1) * hd]);
                }
            }
            let (kbuf, vbuf, qkv, shared) = (&*kbuf, &*vbuf, &proj[..], &kv.shared);
            let stride = heads.kv * cap * hd;
            // Rows attend independently: on the decode workers when there
            // are several (each row's result is the same either way); the
            // samples of a prompt read its shared positions in place.
            let attend_row = |r: usize, yr: &mut [f32], scores: &mut Vec<f32>| {
                let keep = |j: usize| valid.is_none_or(|v| j >= len || v[r][j]);
                let row = host::CacheRow {
                    shared: shared.as_ref().map(|sh| {
                        let (p, n) = (sh.row_of[r], heads.kv * sh.cap * hd);
                        host::Span {
                            k: &sh.k[p * n..(p + 1) * n],
                            v: &sh.v[p * n..(p + 1) * n],
                            cap: sh.cap,
                            len: sh.len,
                        }
                    }),
                    own: host::Span {
                        k: &kbuf[r * stride..(r + 1) * stride],
                        v: &vbuf[r * stride..(r + 1) * stride],
                        cap,
                        len: own + 1,
                    },
                    keep: &keep,
                };
                let q = &qkv[r * (qd + 2 * kd)..r * (qd + 2 * kd) + qd];
                host::attend(q, &row, heads, scores, yr);
            };
            let workers = (b > 1).then(|| crate::workers::workers(threads)).flatten();
            crate::workers::for_chunks(workers, &mut y, qd, &|r, yr| {
                crate::alloc::with_reused(&SCORES, |s| attend_row(r, yr, s))
            });
            cache.advance(1);
            blk.attn.wo.forward_host(&y, b, &mut proj)?;
            x.iter_mut().zip(&proj).for_each(|(a, o)| *a += o);
            host::rms_norm(&x, host::f32_view(&blk.ffn_norm.weight)?, eps, &mut h);
            blk.mlp.gate_up.forward_host(&h, b, &mut proj)?;
            host::silu_mul(&proj, ffn, &mut act);
            blk.mlp.down.forward_host(&act, b, &mut proj)?;
            x.iter_mut().zip(&proj).for_each(|(a, o)| *a += o);
        }
        self.past += 1;
        host::rms_norm(&x, host::f32_view(&self.norm.weight)?, eps, &mut h);
        let logits = self.lm_head.forward_host_tensor(&h, b)?;
        Ok(logits.f_unsqueeze(1)?)
    }

    /// Loads a Llama model from a GGUF file.
    pub fn from_gguf(g: &GgufFile, kind: Kind, device: Device) -> Result<Llama> {
        let config = LlamaConfig::from_gguf(g)?;
        let w = crate::weights::GgufWeights {
            file: g,
            kind,
            device,
        };
        Self::load(config, &w, RopeLayout::Interleaved, kind, device)
    }

    /// Loads a Llama model from a Hugging Face directory: `config.json`
    /// (`model_type` `llama` or `mistral`) and `model.safetensors` or the
    /// shards listed in `model.safetensors.index.json`. Hugging Face stores
    /// the query/key projections in the "rotate half" layout the model runs,
    /// so they are used as they are.
    pub fn from_hf_dir(dir: &Path, kind: Kind, device: Device) -> Result<Llama> {
        let config = LlamaConfig::from_hf_config(&dir.join("config.json"))?;
        let st = SafetensorsWeights::open(dir, kind, device)?;
        let w = HfLlamaNames { inner: &st };
        Self::load(config, &w, RopeLayout::RotateHalf, kind, device)
    }

    pub(crate) fn load(
        config: LlamaConfig,
        w: &dyn WeightSource,
        rope: RopeLayout,
        kind: Kind,
        device: Device,
    ) -> Result<Llama> {
        let c = &config;
        let h = c.hidden_size as i64;
        let hd = c.head_dim as i64;
        let nh = c.num_attention_heads as i64;
        let nkv = c.num_key_value_heads as i64;
        let ffn = c.intermediate_size as i64;
        let vocab = c.vocab_size as i64;
        let embed = w.get("token_embd.weight", &[vocab, h])?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let mut wq = w.get(&n("attn_q"), &[nh * hd, h])?;
            let mut wk = w.get(&n("attn_k"), &[nkv * hd, h])?;
            if rope == RopeLayout::Interleaved {
                wq = unpermute_rope(&wq, nh, hd)?;
                wk = unpermute_rope(&wk, nkv, hd)?;
            }
            blocks.push(Block {
                attn_norm: RmsNorm {
                    weight: w.get(&n("attn_norm"), &[h])?,
                    eps: c.rms_norm_eps,
                },
                attn: Attention {
                    wqkv: Linear::new(
                        Tensor::f_cat(&[&wq, &wk, &w.get(&n("attn_v"), &[nkv * hd, h])?], 0)?
                            .set_requires_grad(false),
                    ),
                    wo: Linear::new(w.get(&n("attn_output"), &[h, nh * hd])?),
                    n_heads: nh,
                    n_kv: nkv,
                    head_dim: hd,
                    kv_cache: None,
                },
                ffn_norm: RmsNorm {
                    weight: w.get(&n("ffn_norm"), &[h])?,
                    eps: c.rms_norm_eps,
                },
                mlp: Mlp {
                    gate_up: Linear::new(
                        Tensor::f_cat(
                            &[
                                &w.get(&n("ffn_gate"), &[ffn, h])?,
                                &w.get(&n("ffn_up"), &[ffn, h])?,
                            ],
                            0,
                        )?
                        .set_requires_grad(false),
                    ),
                    down: Linear::new(w.get(&n("ffn_down"), &[h, ffn])?),
                },
            });
        }
        let norm = RmsNorm {
            weight: w.get("output_norm.weight", &[h])?,
            eps: c.rms_norm_eps,
        };
        let lm_head = Linear::new(if c.tie_word_embeddings {
            embed.shallow_clone()
        } else {
            w.get("output.weight", &[vocab, h])?
        });
        let inv_freq: Vec<f32> = (0..hd / 2)
            .map(|i| (1.0 / c.rope_theta.powf(2.0 * i as f64 / hd as f64)) as f32)
            .collect();
        let inv_freq = Tensor::f_from_slice(&inv_freq)?.f_to_device(device)?;
        Ok(Llama {
            config,
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            kind,
            device,
            past: 0,
            use_packed: false,
            host_decode: HostDecode::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Every parameter tensor, by name (for inspection and tests).
    pub fn parameters(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![("token_embd.weight".to_string(), &self.embed)];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            out.push((p("attn_norm"), &b.attn_norm.weight));
            // attn_q, attn_k (Hugging Face rotary layout) and attn_v, stacked
            out.push((p("attn_qkv"), b.attn.wqkv.weight()));
            out.push((p("attn_output"), b.attn.wo.weight()));
            out.push((p("ffn_norm"), &b.ffn_norm.weight));
            // ffn_gate and ffn_up, stacked
            out.push((p("ffn_gate_up"), b.mlp.gate_up.weight()));
            out.push((p("ffn_down"), b.mlp.down.weight()));
        }
        out.push(("output_norm.weight".to_string(), &self.norm.weight));
        if !self.config.tie_word_embeddings {
            out.push(("output.weight".to_string(), self.lm_head.weight()));
        }
        out
    }

    /// Runs `tokens` (`[batch, seq]`, i64) after the cached ones and appends
    /// them to the cache. `padding_mask` (`[batch, cached + seq]`, nonzero for
    /// real tokens) supports left padding.
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
        if let Some(h) = hooks {
            h.validate(self.blocks.len())?;
        }
        let (b, t) = (s[0], s[1]);
        if self.host_step_applies(t, hooks) {
            let ids = Vec::<i64>::try_from(tokens.f_reshape([-1])?)?;
            let valid = match padding_mask {
                Some(m) => {
                    let kv = self.past + 1;
                    if m.size() != [b, kv] {
                        return Err(LmError::InvalidArgument(format!(
                            "padding mask has shape {:?}, expected [{b}, {kv}] (batch, cached + new tokens)",
                            m.size()
                        )));
                    }
                    let flat = Vec::<i64>::try_from(m.f_reshape([-1])?.f_to_kind(Kind::Int64)?)?;
                    Some(
                        flat.chunks(kv as usize)
                            .map(|r| r[..r.len() - 1].iter().map(|&v| v != 0).collect())
                            .collect::<Vec<Vec<bool>>>(),
                    )
                }
                None => None,
            };
            let mut logits = self.host_step(&ids, valid.as_deref())?;
            if let Some(h) = hooks {
                logits = h.process_logits(logits)?;
            }
            return Ok(ForwardOutput {
                logits,
                hidden: Vec::new(),
            });
        }
        let tokens = tokens.f_to_device(self.device)?;
        let sm = step_mask(padding_mask, b, t, self.past, self.device)?;
        let mut x = Tensor::f_embedding(&self.embed, &tokens, -1, false, false)?;
        let mut hidden = Vec::new();
        let want = |i: usize| hooks.is_some_and(|h| h.wants_readout(i));
        if want(0) {
            hidden.push((0, x.shallow_clone()));
        }
        let mut pos = sm.positions.f_to_kind(Kind::Float)?;
        if let Some(f) = self.config.rope_linear_factor {
            pos = pos.f_div_scalar(f)?;
        }
        let freqs = pos.f_unsqueeze(-1)?.f_mul(&self.inv_freq)?; // [b, t, hd/2]
        let (fcos, fsin) = (freqs.f_cos()?, freqs.f_sin()?);
        let cos = Tensor::f_cat(&[&fcos, &fcos], -1)?.f_unsqueeze(1)?; // [b, 1, t, hd]
        let sin = Tensor::f_cat(&[&fsin.f_neg()?, &fsin], -1)?.f_unsqueeze(1)?;
        let (cos, sin) = (cos.f_to_kind(self.kind)?, sin.f_to_kind(self.kind)?);
        let mask = sm.mask.as_ref();
        let stop = crate::common::stop_after(scope, hooks);
        let past = self.past;
        let packed = self.use_packed;
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            if stop.is_some_and(|s| i >= s) {
                break;
            }
            let prefix = hooks.and_then(|h| h.prefix(i));
            let qkv_delta = hooks.map_or(&[][..], |h| h.qkv(i));
            let a = blk.attn.forward(
                &blk.attn_norm.forward(&x)?,
                (&cos, &sin),
                mask,
                prefix,
                qkv_delta,
                packed,
            )?;
            x = x.f_add(&a)?;
            x = apply_site(hooks, i, HookSite::AfterAttention, x, past)?;
            let m = blk.mlp.forward(&blk.ffn_norm.forward(&x)?, packed)?;
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
            |x| self.norm.forward(x),
            &self.lm_head,
            packed,
            hooks,
        )
    }
}

impl LayerCaches for Llama {
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
