//! Frozen linear layers with an optional weight-only quantized copy.
//!
//! Decoding one token multiplies a handful of activation rows by every
//! weight matrix of the model, so its speed is bounded by how many bytes of
//! weights it reads, not by arithmetic. A [`Linear`] keeps its dense weight
//! (f32 or bf16: what backward passes and long prefills use) and, once
//! [`Linear::pack`]ed, a copy in 8 or 4 bits per weight
//! ([`crate::qmatmul::QuantMatrix`]) that passes without gradients read
//! instead (activations rounded to 8 bits per block of 32, as llama.cpp
//! does).
//!
//! The packed copy is used only by decode steps: when the caller asks for
//! it (generation), no gradient flows through the input, the pass has one
//! position per row and at most [`PACKED_MAX_ROWS`] rows. Prefills keep
//! the dense weights and f32 activations: the prompt's states are what
//! every later token reads, and with 8-bit activations there SmolLM2's
//! greedy answer to "What is the capital of France?" lost "Paris".
//!
//! Formats (blocks of 32 inputs, as GGUF's):
//! - **int8**: a scale per block, `w = d · q`, `q ∈ [-127, 127]` (Q8_0's
//!   form).
//! - **int4**: a scale and an offset per block, `w = d · q + m`, `q ∈
//!   [0, 15]` (Q4_1's form; Q4_0's `d · (q − 8)` is one case of it).
//!
//! Weights dequantised from blocks of those forms (SmolLM2's Q4_1 file)
//! are kept exactly; others are rounded to the nearest code.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::qmatmul::QuantMatrix;
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

/// Rows (sequences of a decode step) up to which it uses the packed weights.
/// Measured (one thread, SmolLM2's shapes, all 30 blocks and the output
/// layer): the packed kernels take 3.3 ms for one row, 8.8 for 8, 33 for
/// 32 and 66 for 64, the dense f32 matmuls 24, 72, 83 and 124 ms.
pub const PACKED_MAX_ROWS: i64 = 64;

/// A frozen `[out, in]` weight, optionally with a packed copy.
pub(crate) struct Linear {
    weight: Tensor,
    packed: Option<QuantMatrix>,
    /// Multiply the packed copy with ≈ 16-bit activations
    /// ([`QuantMatrix::matmul_refined`]; the output layer).
    refined: bool,
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
            refined: false,
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
        self.packed.as_ref().map(|p| match p.bits() {
            4 => Packing::Int4,
            _ => Packing::Int8,
        })
    }

    /// Makes the packed copy read activations to ≈ 16 bits (two passes).
    pub(crate) fn refine_activations(&mut self) {
        self.refined = true;
    }

    fn packed_matmul(
        &self,
        packed: &QuantMatrix,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        match self.refined {
            true => packed.matmul_refined(x, rows, out),
            false => packed.matmul(x, rows, out),
        }
    }

    /// Builds (or replaces) the packed copy of the weight; `None` drops it.
    pub(crate) fn pack(&mut self, packing: Option<Packing>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let Some(packing) = packing else {
            self.packed = None;
            return Ok(());
        };
        let w = self.weight.f_to_kind(Kind::Float)?.f_contiguous()?;
        let (n, k) = (
            self.weight.size()[0] as usize,
            self.weight.size()[1] as usize,
        );
        let w = crate::host::f32_view(&w)?;
        self.packed = Some(match packing {
            Packing::Int8 => QuantMatrix::int8(w, n, k)?,
            Packing::Int4 => QuantMatrix::int4(w, n, k)?,
        });
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
        // `[batch, positions, k]` with several positions is a prefill.
        let prefill = s.len() == 3 && s[1] > 1;
        if prefill || rows > PACKED_MAX_ROWS || rows == 0 {
            return Ok(x.f_linear::<&Tensor>(&self.weight, None)?);
        }
        let a = x
            .f_reshape([rows, k])?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?;
        let mut y = Vec::new();
        self.packed_matmul(packed, crate::host::f32_view(&a)?, rows as usize, &mut y)?;
        let mut out = s.clone();
        if let Some(last) = out.last_mut() {
            *last = self.out_features();
        }
        Ok(crate::host::f32_tensor(&y, &out)?.f_to_kind(x.kind())?)
    }
}

impl Linear {
    /// `x · Wᵀ` for `rows` host rows of `x` as a `[rows, out]` f32 tensor,
    /// the packed copy's outputs stored in it directly (the output layer of
    /// a decode step: a vocabulary of logits per row, copied once less).
    pub(crate) fn forward_host_tensor(&self, x: &[f32], rows: usize) -> Result<Tensor> {
        let Some(packed) = &self.packed else {
            let a = crate::host::rows_tensor(x, rows)?;
            return Ok(a.f_linear::<&Tensor>(&self.weight, None)?);
        };
        let mut y = Tensor::f_empty(
            [rows as i64, self.out_features()],
            (Kind::Float, tch::Device::Cpu),
        )?;
        let out = crate::host::f32_view_mut(&mut y)?;
        match self.refined {
            true => packed.matmul_refined_into(x, rows, out)?,
            false => packed.matmul_into(x, rows, out)?,
        }
        Ok(y)
    }

    /// `x · Wᵀ` for `rows` host rows of `x` (`rows × in`), into `out`
    /// (`rows × out`): through the packed copy where there is one, else
    /// the dense weight (which
    /// must then be f32). One libtorch call; the decode glue of
    /// [`crate::host`] uses it.
    pub(crate) fn forward_host(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        match &self.packed {
            Some(packed) => self.packed_matmul(packed, x, rows, out)?,
            None => {
                let a = crate::host::rows_tensor(x, rows)?;
                let y = a.f_linear::<&Tensor>(&self.weight, None)?;
                out.extend_from_slice(crate::host::f32_view(&y)?);
            }
        }
        Ok(())
    }
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
    fn int4_keeps_q4_1_weights_exactly() {
        // Each group of 32 holds d * q + m with q in 0..=15, f16 d and m,
        // computed as the GGUF loader does.
        tch::manual_seed(3);
        let q = Tensor::randint(16, [16, 64], (Kind::Float, tch::Device::Cpu));
        let d = (Tensor::rand([16, 2, 1], (Kind::Float, tch::Device::Cpu)) * 0.1 + 0.01)
            .to_kind(Kind::Half)
            .to_kind(Kind::Float);
        let m = (Tensor::randn([16, 2, 1], (Kind::Float, tch::Device::Cpu)) * 0.1)
            .to_kind(Kind::Half)
            .to_kind(Kind::Float);
        // Every group spans 0..=15, as Q4_1's quantizer makes them.
        let q = q.reshape([16, 2, 32]);
        let _ = q.narrow(2, 0, 1).fill_(0.0);
        let _ = q.narrow(2, 1, 1).fill_(15.0);
        let w = (q * &d + &m).reshape([16, 64]);
        let mut l = Linear::new(w.copy());
        l.pack(Some(Packing::Int4)).unwrap();
        let packed = l.packed.as_ref().unwrap();
        assert!(packed.exact());
        let kept = Tensor::from_slice(&packed.dequantize()).reshape([16, 64]);
        assert!(kept.equal(&w));
        // What remains is the activations' 8-bit rounding.
        let x = Tensor::randn([3, 64], (Kind::Float, tch::Device::Cpu));
        let got = l.forward(&x, true).unwrap();
        let err = max_rel_err(&got, &x.linear::<&Tensor>(&w, None));
        assert!(err > 0.0 && err < 0.03, "relative error {err}");
    }
}
