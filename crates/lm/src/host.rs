//! Decode steps with the glue between matmuls done on plain slices.
//!
//! A decode step of a small model does little arithmetic outside its
//! matmuls: a norm, a rotation, attention over the cache, an activation and
//! two residual additions per layer. Written as tensor operations that is
//! about forty libtorch calls per layer, each costing microseconds of
//! dispatch and allocation, which at 135M parameters is a quarter of the
//! step (`stories260K`, where arithmetic is negligible, decodes at ≈ 2 000
//! tokens/s: 100 µs per layer of nothing but calls). The functions here do
//! that glue on the host, single-threaded, leaving libtorch the four
//! weight matmuls per layer ([`crate::linear::Linear::forward_host`]).
//!
//! They compute what the tensor path computes, in f32, up to rounding
//! order (tests below compare them with libtorch's operations). The path is
//! taken only by generation with packed decode weights (see
//! [`crate::llama`]): every number a table, a scorer or an RL learning pass
//! reads still comes from the tensor path.

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};

/// Which decode steps (one token per row, no hooks, f32 on the CPU, during
/// generation or with [`crate::Model::set_use_packed`]) do their glue on
/// the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostDecode {
    /// None: every step is tensor operations (the reference).
    Off,
    /// Steps of a model with packed block weights (the default): its
    /// numbers differ from the dense model's anyway, and it is where the
    /// per-call cost matters.
    #[default]
    Packed,
    /// Every such step, dense weights too (tests: the glue against the
    /// tensor path without bf16 activations in between).
    Always,
}

fn check_host(t: &Tensor, kind: Kind) -> Result<()> {
    if t.kind() != kind || t.device() != Device::Cpu || !t.is_contiguous() {
        return Err(LmError::InvalidArgument(format!(
            "host view of a {:?} tensor on {:?} (contiguous: {}); expected contiguous {kind:?} on the CPU",
            t.kind(),
            t.device(),
            t.is_contiguous()
        )));
    }
    Ok(())
}

/// The elements of a contiguous CPU f32 tensor, borrowed.
pub(crate) fn f32_view(t: &Tensor) -> Result<&[f32]> {
    check_host(t, Kind::Float)?;
    let n = t.numel();
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: the tensor is a contiguous f32 CPU tensor of `n` elements
    // (checked above) and the borrow of `t` keeps its storage alive.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) })
}

/// The elements of a contiguous CPU f32 tensor, mutably borrowed. The
/// caller must own the only handle to its storage (a cache buffer).
pub(crate) fn f32_view_mut(t: &mut Tensor) -> Result<&mut [f32]> {
    check_host(t, Kind::Float)?;
    let n = t.numel();
    if n == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as in `f32_view`; the exclusive borrow of `t` stands for the
    // storage's only user.
    Ok(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) })
}

/// `rows × k` values as a `[rows, k]` f32 tensor.
pub(crate) fn rows_tensor(x: &[f32], rows: usize) -> Result<Tensor> {
    let k = x.len() / rows.max(1);
    Ok(Tensor::f_from_slice(x)?.f_view([rows as i64, k as i64])?)
}

/// Root-mean-square normalisation of each `w.len()`-wide row of `x`,
/// scaled by `w`, into `out`.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f64, out: &mut Vec<f32>) {
    out.clear();
    let d = w.len();
    for row in x.chunks_exact(d) {
        let ss: f32 = sum_of(row.iter().map(|v| v * v));
        let r = 1.0 / (ss / d as f32 + eps as f32).sqrt();
        out.extend(row.iter().zip(w).map(|(v, g)| v * r * g));
    }
}

/// A sum in eight interleaved partial sums (vectorisable; the order
/// differs from a plain left fold only by rounding).
fn sum_of(it: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in it.enumerate() {
        acc[i % 8] += v;
    }
    acc.iter().sum()
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Cosines and sines of the rotary angles `pos · inv_freq`.
pub(crate) fn rope_angles(pos: f32, inv_freq: &[f32], cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    cos.clear();
    sin.clear();
    for &f in inv_freq {
        let a = pos * f;
        cos.push(a.cos());
        sin.push(a.sin());
    }
}

/// Rotates every `head_dim`-wide head of `x` in the "rotate half" layout:
/// `(x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin)` with `x1`, `x2` the
/// head's halves.
pub(crate) fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        let (x1, x2) = head.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * cos[i] - b * sin[i];
            x2[i] = b * cos[i] + a * sin[i];
        }
    }
}

/// `silu(gate) · up` for each row of `gu` laid out `[gate (ffn) | up (ffn)]`.
pub(crate) fn silu_mul(gu: &[f32], ffn: usize, out: &mut Vec<f32>) {
    out.clear();
    for row in gu.chunks_exact(2 * ffn) {
        let (g, u) = row.split_at(ffn);
        out.extend(g.iter().zip(u).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u));
    }
}

/// Heads of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) query: usize,
    pub(crate) kv: usize,
    pub(crate) dim: usize,
}

/// One batch row of a KV cache: `k` and `v` are `[kv heads, cap, dim]`
/// buffers of which the first `len` positions are filled; `keep(j)` says
/// whether position `j` is attended to (padding is not).
pub(crate) struct CacheRow<'a> {
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) cap: usize,
    pub(crate) len: usize,
    pub(crate) keep: &'a dyn Fn(usize) -> bool,
}

/// One query row `q` (`[query heads × dim]`) attending over a cache row.
/// Query head `h` reads kv head `h / (query / kv)` (grouped-query
/// attention). Writes `[query heads × dim]` into `out`. Its dot products and weighted sums run on AVX-512
/// where the CPU has it and `dim` is a multiple of 16 (sums in another
/// order: results differ from the plain path by rounding).
pub(crate) fn attend(
    q: &[f32],
    row: &CacheRow<'_>,
    heads: Heads,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if heads.dim.is_multiple_of(16) && avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked at run time) and every
        // head's width is a multiple of 16.
        unsafe { avx512::attend(q, row, heads, scores, out) };
        return;
    }
    attend_with::<Plain>(q, row, heads, scores, out);
}

/// The two vector operations of attention.
trait Lanes {
    /// `a · b`.
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `y += w · x`.
    fn axpy(y: &mut [f32], w: f32, x: &[f32]);
}

struct Plain;

impl Lanes for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn axpy(y: &mut [f32], w: f32, x: &[f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o += w * v;
        }
    }
}

/// [`attend`]'s work: the query heads of one kv head read its keys and
/// values together.
#[inline(always)]
fn attend_with<L: Lanes>(
    q: &[f32],
    row: &CacheRow<'_>,
    heads: Heads,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let CacheRow {
        k,
        v,
        cap,
        len,
        keep,
    } = *row;
    let d = heads.dim;
    let group = heads.query / heads.kv;
    let scale = 1.0 / (d as f32).sqrt();
    // scores[i * len + j]: query head i of the group at position j.
    scores.clear();
    scores.resize(group * len, 0.0);
    for g in 0..heads.kv {
        let kg = &k[g * cap * d..];
        let vg = &v[g * cap * d..];
        let qg = &q[g * group * d..(g + 1) * group * d];
        for j in 0..len {
            let kj = &kg[j * d..(j + 1) * d];
            let kept = keep(j);
            for (i, qh) in qg.chunks_exact(d).enumerate() {
                scores[i * len + j] = if kept {
                    L::dot(qh, kj) * scale
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            let h = g * group + i;
            let oh = &mut out[h * d..(h + 1) * d];
            oh.fill(0.0);
            for (j, &p) in row.iter().enumerate() {
                if p != 0.0 {
                    L::axpy(oh, p / total, &vg[j * d..(j + 1) * d]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{attend_with, CacheRow, Heads, Lanes};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    /// Lanes of 16 (slices whose length is a multiple of 16); only reached
    /// through [`attend`], after the CPU check.
    struct Avx512;

    impl Lanes for Avx512 {
        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: reached only from `attend` below (AVX-512F present);
            // both slices hold `a.len()` values, a multiple of 16.
            unsafe {
                let mut acc = _mm512_setzero_ps();
                for i in (0..a.len()).step_by(16) {
                    acc = _mm512_fmadd_ps(
                        _mm512_loadu_ps(a.as_ptr().add(i)),
                        _mm512_loadu_ps(b.as_ptr().add(i)),
                        acc,
                    );
                }
                _mm512_reduce_add_ps(acc)
            }
        }
        #[inline(always)]
        fn axpy(y: &mut [f32], w: f32, x: &[f32]) {
            // SAFETY: as in `dot`; `x` holds as many values as `y`.
            unsafe {
                let w = _mm512_set1_ps(w);
                for i in (0..y.len()).step_by(16) {
                    let p = y.as_mut_ptr().add(i);
                    let r =
                        _mm512_fmadd_ps(w, _mm512_loadu_ps(x.as_ptr().add(i)), _mm512_loadu_ps(p));
                    _mm512_storeu_ps(p, r);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend(
        q: &[f32],
        row: &CacheRow<'_>,
        heads: Heads,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        attend_with::<Avx512>(q, row, heads, scores, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    fn host(t: &Tensor) -> Vec<f32> {
        f32_view(&t.contiguous()).unwrap().to_vec()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn norm_rope_and_silu_match_libtorch() {
        let x = randn(&[3, 40], 1);
        let w = randn(&[40], 2);
        let want = x.rms_norm(&[40][..], Some(&w), 1e-5);
        let mut got = Vec::new();
        rms_norm(&host(&x), &host(&w), 1e-5, &mut got);
        close(&got, &host(&want), 1e-5);

        // Rotate-half rotary embedding on 3 heads of 8 at position 5.
        let inv: Vec<f32> = (0..4)
            .map(|i| 1.0 / 10000f32.powf(i as f32 / 4.0))
            .collect();
        let (mut c, mut s) = (Vec::new(), Vec::new());
        rope_angles(5.0, &inv, &mut c, &mut s);
        let q = randn(&[3, 8], 3);
        let cos = Tensor::from_slice(&[c.clone(), c.clone()].concat());
        let sin = Tensor::from_slice(&[s.clone(), s.clone()].concat());
        let halves = q.chunk(2, -1);
        let rotated = Tensor::cat(&[-&halves[1], halves[0].shallow_clone()], -1);
        let want = &q * &cos + rotated * &sin;
        let mut got = host(&q);
        rope(&mut got, 8, &c, &s);
        close(&got, &host(&want), 1e-6);

        let gu = randn(&[2, 12], 4);
        let parts = gu.chunk(2, -1);
        let want = parts[0].silu() * &parts[1];
        let mut got = Vec::new();
        silu_mul(&host(&gu), 6, &mut got);
        close(&got, &host(&want), 1e-6);
    }

    #[test]
    fn attention_matches_sdpa_with_groups_and_padding() {
        // 4 query heads over 2 kv heads of 16; a cache of capacity 9 with 7
        // filled positions, of which positions 0 and 1 are padding.
        let (hq, hkv, d, cap, len) = (4i64, 2i64, 16i64, 9i64, 7i64);
        let q = randn(&[1, hq, 1, d], 5);
        let k = randn(&[1, hkv, cap, d], 6);
        let v = randn(&[1, hkv, cap, d], 7);
        let keep = |j: usize| j >= 2;
        let mask = Tensor::from_slice(&(0..len).map(|j| keep(j as usize)).collect::<Vec<_>>())
            .view([1, 1, 1, len]);
        let want = Tensor::scaled_dot_product_attention(
            &q,
            &k.narrow(2, 0, len),
            &v.narrow(2, 0, len),
            Some(&mask),
            0.0,
            false,
            None,
            true,
        );
        let mut got = vec![0f32; (hq * d) as usize];
        let heads = Heads {
            query: hq as usize,
            kv: hkv as usize,
            dim: d as usize,
        };
        let (kh, vh) = (host(&k), host(&v));
        let row = CacheRow {
            k: &kh,
            v: &vh,
            cap: cap as usize,
            len: len as usize,
            keep: &keep,
        };
        attend(&host(&q), &row, heads, &mut Vec::new(), &mut got);
        close(&got, &host(&want), 1e-5);
    }

    #[test]
    fn views_check_dtype_device_and_layout() {
        let t = randn(&[4, 6], 8);
        assert_eq!(f32_view(&t).unwrap().len(), 24);
        let e = f32_view(&t.transpose(0, 1)).unwrap_err().to_string();
        assert!(e.contains("contiguous: false"), "{e}");
        assert!(f32_view(&t.to_kind(Kind::Half)).is_err());
        let x: Vec<f32> = vec![1.0, -2.5, 3.0e-3, 7.0];
        let r = rows_tensor(&x, 2).unwrap();
        assert_eq!(host(&r), x);
        assert_eq!(r.size(), vec![2, 2]);
    }
}
