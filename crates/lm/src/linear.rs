//! Frozen linear layers with an optional weight-only quantized copy.
//!
//! Decoding one token multiplies a handful of activation rows by every
//! weight matrix of the model, so its speed is bounded by how many bytes of
//! weights it reads, not by arithmetic. A [`Linear`] keeps its dense weight
//! (f32 or bf16: what backward passes and long prefills use) and, once
//! [`Linear::pack`]ed, a copy in 8 or 4 bits per weight that libtorch's CPU
//! weight-only kernels (`_weight_int8pack_mm`,
//! `_weight_int4pack_mm_for_cpu`) read instead. Those kernels take bf16
//! activations; the result is converted back to the activation's dtype, so
//! the residual stream, norms, attention and logits keep their precision.
//!
//! The packed copy is used only where it is both valid and faster: when
//! the caller asks for it (generation), no gradient flows through the
//! input, and the pass has at most [`PACKED_MAX_ROWS`] rows (decode steps;
//! a prefill of many tokens is faster with the dense matmul).
//!
//! Formats:
//! - **int8**: one symmetric scale per output row, `w ≈ q · s`, `q ∈
//!   [-127, 127]`. On weights dequantised from a 4-bit GGUF format the
//!   extra error is a fraction of the 4-bit step.
//! - **int4**: groups of [`INT4_GROUP`] weights along the input, an
//!   asymmetric scale and offset per group, `w ≈ (q − 8) · s + z`, `q ∈
//!   [0, 15]`. Weights that came from Q4_1 blocks (32 weights, `d · q + m`)
//!   are represented exactly up to the bf16 rounding of the scales.

use tch::{Kind, Tensor};

use crate::error::{LmError, Result};
use crate::quant::GgmlType;

/// Weight-only quantization of the frozen model's linear layers for
/// forward passes without gradients (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// 8-bit weights, one scale per output row.
    Int8,
    /// 4-bit weights in groups of [`INT4_GROUP`] with a scale and offset each.
    Int4,
}

impl Packing {
    /// The name used on the command line (`int8`, `int4`).
    pub fn name(self) -> &'static str {
        match self {
            Packing::Int8 => "int8",
            Packing::Int4 => "int4",
        }
    }
}

impl Packing {
    /// The format that keeps weights stored as `ty` about as precise as
    /// they are: int4 for 2–4-bit GGUF formats, int8 for 5–8-bit ones, none
    /// for floating-point weights (packing would lose precision they have).
    pub fn keeping(ty: GgmlType) -> Option<Packing> {
        match ty {
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => {
                Some(Packing::Int4)
            }
            GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q8K => Some(Packing::Int8),
            _ => None,
        }
    }
}

/// Which packed copies a model holds: one format for the blocks' linear
/// layers, one for the output layer (often stored more precisely, e.g.
/// Q8_0 embeddings in a Q4_1 file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackPlan {
    /// The attention and MLP projections of every block.
    pub blocks: Option<Packing>,
    /// The output layer (the unembedding).
    pub output: Option<Packing>,
}

impl PackPlan {
    /// The same format everywhere (`None`: dense only).
    pub fn uniform(packing: Option<Packing>) -> PackPlan {
        PackPlan {
            blocks: packing,
            output: packing,
        }
    }

    /// `int4`, `int8`, `int4+int8` (blocks+output) or `dense`.
    pub fn name(&self) -> String {
        let n = |p: Option<Packing>| p.map_or("dense", Packing::name);
        if self.blocks == self.output {
            n(self.blocks).to_string()
        } else {
            format!("{}+{}", n(self.blocks), n(self.output))
        }
    }
}

/// Rows (batch × positions) up to which a pass uses the packed weights.
/// Measured (one thread, SmolLM2's shapes): the int8 kernel is ≈3× faster
/// than the f32 matmul for one row, about even at eight, and ≈2× slower
/// at 128 (a prefill).
pub const PACKED_MAX_ROWS: i64 = 8;

/// Input weights per int4 group (Q4_1's block size).
pub const INT4_GROUP: i64 = 32;

enum Packed {
    Int8 { q: Tensor, scales: Tensor },
    Int4 { q: Tensor, scales_zeros: Tensor },
}

/// A frozen `[out, in]` weight, optionally with a packed copy.
pub(crate) struct Linear {
    weight: Tensor,
    packed: Option<Packed>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear")
            .field("shape", &self.weight.size())
            .field("packed", &self.packing())
            .finish()
    }
}

impl Linear {
    /// A dense layer over `weight` (`[out, in]`).
    pub(crate) fn new(weight: Tensor) -> Linear {
        Linear {
            weight,
            packed: None,
        }
    }

    /// The dense weight `[out, in]`.
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Output features.
    pub(crate) fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    /// The packed copy's format, if any.
    pub(crate) fn packing(&self) -> Option<Packing> {
        match self.packed {
            Some(Packed::Int8 { .. }) => Some(Packing::Int8),
            Some(Packed::Int4 { .. }) => Some(Packing::Int4),
            None => None,
        }
    }

    /// Whether the kernels of `packing` take this weight's shape: int8
    /// reads inputs in blocks of 16 (other sizes read past the row: wrong
    /// results or a crash), int4 packs 16 output rows and groups of
    /// [`INT4_GROUP`] inputs. 32 is asked of both, which every instruction
    /// set's kernel divides.
    pub(crate) fn check(&self, packing: Option<Packing>) -> Result<()> {
        let s = self.weight.size();
        let (n, k) = (s[0], s[1]);
        let ok = match packing {
            None => true,
            Some(Packing::Int8) => k % 32 == 0,
            Some(Packing::Int4) => k % INT4_GROUP == 0 && n % 16 == 0,
        };
        if ok {
            return Ok(());
        }
        let need = match packing {
            Some(Packing::Int4) => "output sizes divisible by 16 and input sizes divisible by 32",
            _ => "input sizes divisible by 32",
        };
        Err(LmError::Unsupported(format!(
            "{} weights need {need}; this model has a [{n}, {k}] weight (use f32 or bf16)",
            packing.map_or("packed", Packing::name)
        )))
    }

    /// Builds (or replaces) the packed copy of the weight; `None` drops it.
    pub(crate) fn pack(&mut self, packing: Option<Packing>) -> Result<()> {
        self.check(packing)?;
        let _guard = tch::no_grad_guard();
        self.packed = match packing {
            None => None,
            Some(Packing::Int8) => Some(pack_int8(&self.weight)?),
            Some(Packing::Int4) => Some(pack_int4(&self.weight)?),
        };
        Ok(())
    }

    /// `x · Wᵀ` over the last dimension of `x`; through the packed copy when
    /// `use_packed`, the layer has one, no gradient flows through `x` and
    /// `x` has at most [`PACKED_MAX_ROWS`] rows.
    pub(crate) fn forward(&self, x: &Tensor, use_packed: bool) -> Result<Tensor> {
        let packed = match &self.packed {
            Some(p) if use_packed && !x.requires_grad() => p,
            _ => return Ok(x.f_linear::<&Tensor>(&self.weight, None)?),
        };
        let s = x.size();
        let k = *s.last().unwrap_or(&0);
        let rows: i64 = s[..s.len().saturating_sub(1)].iter().product();
        if rows > PACKED_MAX_ROWS || rows == 0 {
            return Ok(x.f_linear::<&Tensor>(&self.weight, None)?);
        }
        let a = x.f_reshape([rows, k])?.f_to_kind(Kind::BFloat16)?;
        let y = match packed {
            Packed::Int8 { q, scales } => a.f_internal_weight_int8pack_mm(q, scales)?,
            Packed::Int4 { q, scales_zeros } => {
                a.f_internal_weight_int4pack_mm_for_cpu(q, INT4_GROUP, scales_zeros)?
            }
        };
        let mut out = s.clone();
        if let Some(last) = out.last_mut() {
            *last = self.out_features();
        }
        Ok(y.f_to_kind(x.kind())?.f_reshape(&out[..])?)
    }
}

impl Linear {
    /// `x · Wᵀ` for `rows` host rows of `x` (`rows × in`), into `out`
    /// (`rows × out`): through the packed copy where there is one (bf16
    /// activations, as [`Linear::forward`]), else the dense weight (which
    /// must then be f32). One libtorch call; the decode glue of
    /// [`crate::host`] uses it.
    pub(crate) fn forward_host(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        match &self.packed {
            Some(packed) => {
                let a = crate::host::rows_tensor(x, rows, Kind::BFloat16)?;
                let y = match packed {
                    Packed::Int8 { q, scales } => a.f_internal_weight_int8pack_mm(q, scales)?,
                    Packed::Int4 { q, scales_zeros } => {
                        a.f_internal_weight_int4pack_mm_for_cpu(q, INT4_GROUP, scales_zeros)?
                    }
                };
                out.extend(crate::host::bf16_view(&y)?.iter().map(|v| v.to_f32()));
            }
            None => {
                let a = crate::host::rows_tensor(x, rows, Kind::Float)?;
                let y = a.f_linear::<&Tensor>(&self.weight, None)?;
                out.extend_from_slice(crate::host::f32_view(&y)?);
            }
        }
        Ok(())
    }
}

/// `t` rounded to the nearest bf16 value, kept in f32.
fn bf16_exact(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_to_kind(Kind::BFloat16)?.f_to_kind(Kind::Float)?)
}

fn pack_int8(w: &Tensor) -> Result<Packed> {
    let w = w.f_to_kind(Kind::Float)?;
    let absmax = w.f_abs()?.f_amax([1i64].as_slice(), true)?;
    // An all-zero row gets scale 1 (its codes are 0 either way). The
    // kernel reads the scales in bf16: the codes are computed against the
    // rounded scale, so the rounding costs no systematic row error.
    let scale = bf16_exact(
        &absmax
            .f_div_scalar(127.0)?
            .f_where_scalarother(&absmax.f_gt(0.0)?, 1.0)?,
    )?;
    let q = w
        .f_div(&scale)?
        .f_round()?
        .f_clamp(-127.0, 127.0)?
        .f_to_kind(Kind::Int8)?
        .f_contiguous()?;
    Ok(Packed::Int8 {
        q,
        scales: scale.f_squeeze_dim(1)?.f_to_kind(Kind::BFloat16)?,
    })
}

fn pack_int4(w: &Tensor) -> Result<Packed> {
    let s = w.size();
    let (n, k) = (s[0], s[1]);
    let g = w
        .f_to_kind(Kind::Float)?
        .f_reshape([n, k / INT4_GROUP, INT4_GROUP])?;
    let lo = g.f_amin([-1i64].as_slice(), true)?;
    let hi = g.f_amax([-1i64].as_slice(), true)?;
    let range = hi.f_sub(&lo)?;
    // The kernel computes (q - 8) * scale + zero with bf16 scales and
    // zeros: both are rounded first and the codes computed against them.
    let scale = bf16_exact(
        &range
            .f_div_scalar(15.0)?
            .f_where_scalarother(&range.f_gt(0.0)?, 1.0)?,
    )?;
    let zero = bf16_exact(&lo.f_add(&scale.f_mul_scalar(8.0)?)?)?;
    let q = g
        .f_sub(&zero)?
        .f_div(&scale)?
        .f_add_scalar(8.0)?
        .f_round()?
        .f_clamp(0.0, 15.0)?
        .f_to_kind(Kind::Int)?
        .f_reshape([n, k])?
        .f_contiguous()?;
    let scales_zeros = Tensor::f_stack(&[scale.f_squeeze_dim(-1)?, zero.f_squeeze_dim(-1)?], -1)?
        .f_transpose(0, 1)?
        .f_contiguous()?
        .f_to_kind(Kind::BFloat16)?;
    Ok(Packed::Int4 {
        q: q.f_internal_convert_weight_to_int4pack_for_cpu(1)?,
        scales_zeros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(n: i64, k: i64) -> Tensor {
        tch::manual_seed(7);
        Tensor::randn([n, k], (Kind::Float, tch::Device::Cpu))
    }

    fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b).abs().max().double_value(&[]);
        d / b.abs().max().double_value(&[])
    }

    #[test]
    fn packed_forward_matches_dense_within_quantization_error() {
        for (packing, tol) in [(Packing::Int8, 0.03), (Packing::Int4, 0.2)] {
            let mut l = Linear::new(seeded(96, 64));
            let x = Tensor::randn([2, 1, 64], (Kind::Float, tch::Device::Cpu));
            let dense = l.forward(&x, true).unwrap();
            l.pack(Some(packing)).unwrap();
            let packed = l.forward(&x, true).unwrap();
            assert_eq!(packed.size(), vec![2, 1, 96]);
            assert_eq!(packed.kind(), Kind::Float);
            let err = max_rel_err(&packed, &dense);
            assert!(err > 0.0 && err < tol, "{packing:?}: relative error {err}");
            // Not asked for, or too many rows, or a gradient: the dense path.
            assert!(l.forward(&x, false).unwrap().equal(&dense));
            let long = Tensor::randn(
                [1, PACKED_MAX_ROWS + 1, 64],
                (Kind::Float, tch::Device::Cpu),
            );
            assert!(l
                .forward(&long, true)
                .unwrap()
                .equal(&long.linear::<&Tensor>(l.weight(), None)));
            let xg = x.copy().set_requires_grad(true);
            assert!(l.forward(&xg, true).unwrap().equal(&dense));
        }
    }

    #[test]
    fn int4_represents_q4_1_style_weights_up_to_bf16_scales() {
        // Each group of 32 holds d * q + m with q in 0..=15, as Q4_1 does.
        tch::manual_seed(3);
        let q = Tensor::randint(16, [16, 64], (Kind::Float, tch::Device::Cpu));
        let d = Tensor::rand([16, 2, 1], (Kind::Float, tch::Device::Cpu)) * 0.1 + 0.01;
        let m = Tensor::randn([16, 2, 1], (Kind::Float, tch::Device::Cpu)) * 0.1;
        // Make every group span the full 0..=15 so min/max recover d and m.
        let q = q.reshape([16, 2, 32]);
        let _ = q.narrow(2, 0, 1).fill_(0.0);
        let _ = q.narrow(2, 1, 1).fill_(15.0);
        let w = (q * &d + &m).reshape([16, 64]);
        let mut l = Linear::new(w.copy());
        l.pack(Some(Packing::Int4)).unwrap();
        let eye = Tensor::eye(64, (Kind::Float, tch::Device::Cpu));
        // Rows of the identity read back columns of W (8 rows at a time).
        for c in 0..8 {
            let x = eye.narrow(0, c * 8, 8);
            let got = l.forward(&x, true).unwrap();
            let want = x.linear::<&Tensor>(&w, None);
            let err = max_rel_err(&got, &want);
            assert!(err < 0.01, "columns {c}: relative error {err}");
        }
    }

    #[test]
    fn shapes_off_the_kernels_blocks_are_refused() {
        let mut l = Linear::new(seeded(4, 40));
        for p in [Packing::Int8, Packing::Int4] {
            let e = l.pack(Some(p)).unwrap_err().to_string();
            assert!(
                e.contains("input sizes divisible by 32") && e.contains("[4, 40]"),
                "{e}"
            );
            assert_eq!(l.packing(), None);
        }
        let mut l = Linear::new(seeded(40, 64));
        let e = l.pack(Some(Packing::Int4)).unwrap_err().to_string();
        assert!(e.contains("output sizes divisible by 16"), "{e}");
        l.pack(Some(Packing::Int8)).unwrap();
        assert_eq!(l.packing(), Some(Packing::Int8));
    }
}
