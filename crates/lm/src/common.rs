//! Pieces shared by the architectures: weight sources, attention masks and
//! positions for left-padded batches with a KV cache.

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;

/// Where an architecture takes its weights from, by name.
pub(crate) trait WeightSource {
    /// The tensor `name` with torch shape `shape`, as `kind`, frozen.
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor>;
    /// Whether the source has a tensor `name`.
    fn has(&self, name: &str) -> bool;
}

/// GGUF weights, dequantised on load.
pub(crate) struct GgufWeights<'a> {
    pub(crate) file: &'a GgufFile,
    pub(crate) kind: Kind,
    pub(crate) device: Device,
}

impl WeightSource for GgufWeights<'_> {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.file.tensor_shaped(name, shape, self.kind, self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }
}

/// The attention mask and positions of one forward step.
pub(crate) struct StepMask {
    /// `[batch, 1, seq, past + seq]`, `true` where a query may attend; `None`
    /// when every query may attend to every key (a single new token without
    /// padding).
    pub(crate) mask: Option<Tensor>,
    /// `[batch, seq]` position ids of the new tokens.
    pub(crate) positions: Tensor,
}

/// Builds the causal mask and the positions for `seq` new tokens after
/// `past` cached ones. `padding_mask` (`[batch, past + seq]`, nonzero for real
/// tokens) handles left padding: padded keys are masked out and positions
/// count only real tokens, as Hugging Face does (`cumsum(mask) - 1`).
/// Every query may always attend to itself, so no row is fully masked.
pub(crate) fn step_mask(
    padding_mask: Option<&Tensor>,
    batch: i64,
    seq: i64,
    past: i64,
    device: Device,
) -> Result<StepMask> {
    let kv = past + seq;
    let opts = (Kind::Int64, device);
    let pad = match padding_mask {
        Some(m) => {
            if m.size() != [batch, kv] {
                return Err(LmError::InvalidArgument(format!(
                    "padding mask has shape {:?}, expected [{batch}, {kv}] (batch, cached + new tokens)",
                    m.size()
                )));
            }
            Some(m.f_to_device(device)?.f_ne(0)?)
        }
        None => None,
    };
    let positions = match &pad {
        Some(p) => {
            let full = p
                .f_cumsum(-1, Kind::Int64)?
                .f_sub_scalar(1)?
                .f_clamp_min(0)?;
            full.f_narrow(1, past, seq)?
        }
        None => Tensor::f_arange_start(past, kv, opts)?
            .f_unsqueeze(0)?
            .f_expand([batch, seq], false)?,
    };
    if pad.is_none() && seq == 1 {
        return Ok(StepMask {
            mask: None,
            positions,
        });
    }
    let q_abs = Tensor::f_arange_start(past, kv, opts)?.f_unsqueeze(1)?; // [seq, 1]
    let k_idx = Tensor::f_arange(kv, opts)?.f_unsqueeze(0)?; // [1, kv]
    let causal = k_idx.f_le_tensor(&q_abs)?; // [seq, kv]
    let own = k_idx.f_eq_tensor(&q_abs)?; // [seq, kv]
    let mask = match &pad {
        Some(p) => causal
            .f_unsqueeze(0)?
            .f_logical_and(&p.f_unsqueeze(1)?)?
            .f_logical_or(&own.f_unsqueeze(0)?)?,
        None => causal.f_unsqueeze(0)?.f_expand([batch, seq, kv], false)?,
    };
    Ok(StepMask {
        mask: Some(mask.f_unsqueeze(1)?),
        positions,
    })
}

/// Extends a `[batch, 1, seq, kv]` boolean mask with `prefix` always-visible
/// keys in front.
pub(crate) fn with_prefix_columns(mask: &Tensor, prefix: i64) -> Result<Tensor> {
    let s = mask.size();
    let ones = Tensor::f_ones([s[0], s[1], s[2], prefix], (Kind::Bool, mask.device()))?;
    Ok(Tensor::f_cat(&[&ones, mask], 3)?)
}

/// Output of one forward pass.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[batch, seq, vocab]` logits in `f32`, after the hooks' logits processors.
    pub logits: Tensor,
    /// Requested read-outs, `(index, [batch, seq, hidden])`, ascending.
    pub hidden: Vec<(usize, Tensor)>,
}
