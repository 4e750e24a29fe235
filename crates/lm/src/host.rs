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
    f32_tensor(x, &[rows as i64, k as i64])
}

/// `x` as an f32 CPU tensor of `shape` (one copy). `Tensor::from_slice`
/// zero-fills its tensor first, on libtorch's thread pool for a vocabulary
/// of logits, whose threads then spin beside the decode kernels.
pub(crate) fn f32_tensor(x: &[f32], shape: &[i64]) -> Result<Tensor> {
    if shape.iter().product::<i64>() != x.len() as i64 {
        return Err(LmError::InvalidArgument(format!(
            "{} values for a tensor of shape {shape:?}",
            x.len()
        )));
    }
    let mut t = Tensor::f_empty(shape, (Kind::Float, Device::Cpu))?;
    f32_view_mut(&mut t)?.copy_from_slice(x);
    Ok(t)
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

avx512_or_plain! {
    /// `silu(gate) · up` for each row of `gu` laid out `[gate (ffn) | up
    /// (ffn)]`, into `out`.
    pub(crate) fn silu_mul(gu: &[f32], ffn: usize, out: &mut Vec<f32>) = silu_mul_body
}

/// `silu(g) = g · σ(g)` with `σ(g) = 1 / (1 + e⁻ᵍ)` for `g ≥ 0` and `eᵍ /
/// (1 + eᵍ)` below, `e^−|g|` by [`exp_nonpos`] (no libm
/// call: the loop vectorises).
#[inline(always)]
fn silu_mul_body(gu: &[f32], ffn: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(gu.len() / 2, 0.0);
    for (o, row) in out.chunks_exact_mut(ffn).zip(gu.chunks_exact(2 * ffn)) {
        let (g, u) = row.split_at(ffn);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            let e = exp_nonpos(-g.abs());
            let sigmoid = if g >= 0.0 { 1.0 } else { e } / (1.0 + e);
            *o = g * sigmoid * u;
        }
    }
}

/// Cephes' `expf`: `eˣ = 2ⁿ·eʳ` with `r = x − n·ln 2` (ln 2 in two parts,
/// the first exact in a few bits) and `eʳ ≈ 1 + r + r²·p(r)` on
/// |r| ≤ ln 2 / 2, `p`'s coefficients from the highest power down.
pub(crate) const LN2_PARTS: [f32; 2] = [0.693_359_4, -2.121_944_4e-4];
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `eˣ` for `−87 ≤ x ≤ 0` to a few ulps, 0 elsewhere (NaN and ±∞ included):
/// `2ⁿ·eʳ` with `n` the integer nearest `x·log₂e`, `r = x − n·ln 2` (ln 2 in
/// two parts) and `eʳ` by Cephes' polynomial. Plain multiplies and adds,
/// without branches, so that loops over it vectorise.
#[inline(always)]
pub(crate) fn exp_nonpos(x: f32) -> f32 {
    let live = (-87.0..=0.0).contains(&x);
    let x = if live { x } else { 0.0 };
    let n = crate::qmatmul::round_even(x * std::f32::consts::LOG2_E);
    let [hi, lo] = LN2_PARTS;
    let r = x - n * hi - n * lo;
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let y = 1.0 + r + r * r * p;
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    if live {
        y * scale
    } else {
        0.0
    }
}

/// Heads of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) query: usize,
    pub(crate) kv: usize,
    pub(crate) dim: usize,
}

/// Keys and values of some positions of one batch row: `[kv heads, cap,
/// dim]` buffers of which the first `len` positions are filled.
#[derive(Clone, Copy)]
pub(crate) struct Span<'a> {
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) cap: usize,
    pub(crate) len: usize,
}

/// One batch row of a KV cache: the positions it shares with other rows
/// (`shared`, first), then its own; `keep(j)` says whether position `j`
/// (counted over both) is attended to (padding is not).
pub(crate) struct CacheRow<'a> {
    pub(crate) shared: Option<Span<'a>>,
    pub(crate) own: Span<'a>,
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
    /// `out[i · stride + j] = scale · (q_i · k_j)` for every query head `i`
    /// of `q` and key `j` of `k` (both rows of `d` values).
    fn scores(q: &[f32], k: &[f32], d: usize, scale: f32, out: &mut [f32], stride: usize) {
        for (j, kj) in k.chunks_exact(d).enumerate() {
            for (i, qi) in q.chunks_exact(d).enumerate() {
                out[i * stride + j] = Self::dot(qi, kj) * scale;
            }
        }
    }
    /// `y = Σ w·x` over `item(j)` for `j < n`, in order of `j` (items
    /// that are `None` add nothing); each `x` is as long as `y`.
    fn weighted_sum<'a>(y: &mut [f32], n: usize, item: impl Fn(usize) -> Option<(f32, &'a [f32])>);
    /// Replaces each `s` of `row` by `exp(s − max(row))` and returns their
    /// sum (`-inf` scores become 0).
    fn exp_shifted(row: &mut [f32]) -> f32;
}

struct Plain;

impl Lanes for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn weighted_sum<'a>(y: &mut [f32], n: usize, item: impl Fn(usize) -> Option<(f32, &'a [f32])>) {
        y.fill(0.0);
        for (w, x) in (0..n).filter_map(item) {
            for (o, &v) in y.iter_mut().zip(x) {
                *o += w * v;
            }
        }
    }
    #[inline(always)]
    fn exp_shifted(row: &mut [f32]) -> f32 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        total
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
    let keep = row.keep;
    let none = Span {
        k: &[],
        v: &[],
        cap: 0,
        len: 0,
    };
    let (first, own) = (row.shared.unwrap_or(none), row.own);
    let len = first.len + own.len;
    // Position `j` of kv head `g` in `k` (or `v`) of its span.
    let at = |span: &Span<'_>, g: usize, j: usize| (g * span.cap + j) * heads.dim;
    let d = heads.dim;
    let group = heads.query / heads.kv;
    let scale = 1.0 / (d as f32).sqrt();
    // scores[i * len + j]: query head i of the group at position j.
    scores.clear();
    scores.resize(group * len, 0.0);
    for g in 0..heads.kv {
        let qg = &q[g * group * d..(g + 1) * group * d];
        // Each span's keys of this kv head lie one after another.
        for (span, j0) in [(&first, 0), (&own, first.len)] {
            let keys = &span.k[at(span, g, 0)..][..span.len * d];
            L::scores(qg, keys, d, scale, &mut scores[j0..], len);
        }
        for j in (0..len).filter(|&j| !keep(j)) {
            for i in 0..group {
                scores[i * len + j] = f32::NEG_INFINITY;
            }
        }
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            let inv = 1.0 / L::exp_shifted(row);
            let h = g * group + i;
            let row = &*row;
            L::weighted_sum(&mut out[h * d..(h + 1) * d], len, |j| {
                let p = row[j];
                (p != 0.0).then(|| {
                    let vj = match j < first.len {
                        true => &first.v[at(&first, g, j)..][..d],
                        false => &own.v[at(&own, g, j - first.len)..][..d],
                    };
                    (p * inv, vj)
                })
            });
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
        /// Sixty-four outputs at a time stay in registers over all `j`
        /// (the same sums, in the same order, as the plain path's, fused).
        #[inline(always)]
        fn weighted_sum<'a>(
            y: &mut [f32],
            n: usize,
            item: impl Fn(usize) -> Option<(f32, &'a [f32])>,
        ) {
            // SAFETY: as in `dot`; every `x` holds `y.len()` values, a
            // multiple of 16.
            unsafe {
                let mut base = 0;
                // Four named accumulators (an array of them is kept in
                // memory, which puts a store and a load in every step).
                while base + 64 <= y.len() {
                    let (mut a0, mut a1, mut a2, mut a3) = (
                        _mm512_setzero_ps(),
                        _mm512_setzero_ps(),
                        _mm512_setzero_ps(),
                        _mm512_setzero_ps(),
                    );
                    for (w, x) in (0..n).filter_map(&item) {
                        let w = _mm512_set1_ps(w);
                        let x = x.as_ptr().add(base);
                        a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x), a0);
                        a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x.add(16)), a1);
                        a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x.add(32)), a2);
                        a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x.add(48)), a3);
                    }
                    let o = y.as_mut_ptr().add(base);
                    _mm512_storeu_ps(o, a0);
                    _mm512_storeu_ps(o.add(16), a1);
                    _mm512_storeu_ps(o.add(32), a2);
                    _mm512_storeu_ps(o.add(48), a3);
                    base += 64;
                }
                while base < y.len() {
                    let mut a = _mm512_setzero_ps();
                    for (w, x) in (0..n).filter_map(&item) {
                        a = _mm512_fmadd_ps(
                            _mm512_set1_ps(w),
                            _mm512_loadu_ps(x.as_ptr().add(base)),
                            a,
                        );
                    }
                    _mm512_storeu_ps(y.as_mut_ptr().add(base), a);
                    base += 16;
                }
            }
        }

        #[inline(always)]
        fn exp_shifted(row: &mut [f32]) -> f32 {
            // SAFETY: as in `dot`; loads and stores stay inside `row`
            // (the last, partial vector through a lane mask).
            unsafe {
                let n = row.len();
                let p = row.as_mut_ptr();
                let mask = |i: usize| -> __mmask16 {
                    match n - i >= 16 {
                        true => 0xffff,
                        false => (1u16 << (n - i)) - 1,
                    }
                };
                let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
                for i in (0..n).step_by(16) {
                    m = _mm512_mask_max_ps(m, mask(i), m, _mm512_maskz_loadu_ps(mask(i), p.add(i)));
                }
                let max = _mm512_set1_ps(_mm512_reduce_max_ps(m));
                let mut total = _mm512_setzero_ps();
                for i in (0..n).step_by(16) {
                    let k = mask(i);
                    let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p.add(i)), max));
                    let e = _mm512_maskz_mov_ps(k, e);
                    _mm512_mask_storeu_ps(p.add(i), k, e);
                    total = _mm512_add_ps(total, e);
                }
                _mm512_reduce_add_ps(total)
            }
        }
    }

    /// `exp(x)` for `x ≤ 0` to about two ulps: `2ⁿ·eʳ` with `n` the nearest
    /// integer to `x·log₂e`, `r = x − n·ln 2` (ln 2 in two parts) and `eʳ`
    /// by Cephes' degree-7 polynomial; below −87.3 (where f32 runs out of
    /// normal numbers) the result is 0.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        let live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3), _CMP_GE_OQ);
        let x = _mm512_max_ps(x, _mm512_set1_ps(-88.0));
        let n = _mm512_roundscale_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let [hi, lo] = super::LN2_PARTS;
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(hi), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(lo), r);
        let mut q = _mm512_set1_ps(super::EXP_POLY[0]);
        for c in &super::EXP_POLY[1..] {
            q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(*c));
        }
        let y = _mm512_add_ps(
            _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r),
            _mm512_set1_ps(1.0),
        );
        _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, n))
    }

    #[cfg(test)]
    pub(super) fn exp_of(x: &[f32]) -> Vec<f32> {
        assert!(available());
        x.chunks(16)
            .flat_map(|c| {
                let mut buf = [0f32; 16];
                buf[..c.len()].copy_from_slice(c);
                // SAFETY: AVX-512F checked above.
                let e = unsafe { exp(_mm512_loadu_ps(buf.as_ptr())) };
                let mut out = [0f32; 16];
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), e) };
                out[..c.len()].to_vec()
            })
            .collect()
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp_nonpos_is_close_and_zero_outside() {
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (got, want) = (exp_nonpos(x) as f64, (x as f64).exp());
            assert!(
                (got - want).abs() / want < 4.0 * f32::EPSILON as f64,
                "exp({x}) = {got}"
            );
        }
        for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -88.0, 0.5] {
            assert_eq!(exp_nonpos(x), 0.0, "{x}");
        }
    }

    #[test]
    fn vector_exp_is_within_three_ulps() {
        if !avx512::available() {
            return;
        }
        let xs: Vec<f32> = (0..=87_000).map(|i| -(i as f32) / 1000.0).collect();
        let got = avx512::exp_of(&xs);
        for (&x, &e) in xs.iter().zip(&got) {
            let want = (x as f64).exp();
            let err = ((e as f64) - want).abs() / want;
            assert!(
                err < 3.0 * f32::EPSILON as f64,
                "exp({x}) = {e}, want {want}"
            );
        }
        let edge = avx512::exp_of(&[f32::NEG_INFINITY, -100.0, -87.5, 0.0]);
        assert_eq!(edge, vec![0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn attention_matches_sdpa_with_groups_and_padding() {
        // 4 query heads over 2 kv heads; positions 0 and 1 are padding.
        // (head width, cache capacity, filled positions, positions in the
        // shared buffer): short caches, and ones whose keys fill vectors
        // of sixteen scores with some left over, in either buffer.
        for (d, cap, len, first) in [
            (16i64, 9i64, 7i64, 3i64),
            (32, 45, 41, 19),
            (64, 40, 37, 16),
        ] {
            let (hq, hkv) = (4i64, 2i64);
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
                shared: None,
                own: Span {
                    k: &kh,
                    v: &vh,
                    cap: cap as usize,
                    len: len as usize,
                },
                keep: &keep,
            };
            attend(&host(&q), &row, heads, &mut Vec::new(), &mut got);
            close(&got, &host(&want), 1e-5);
            let mut plain = vec![0f32; (hq * d) as usize];
            attend_with::<Plain>(&host(&q), &row, heads, &mut Vec::new(), &mut plain);
            close(&plain, &host(&want), 1e-5);

            // The same positions split: the first ones in a buffer of its
            // own (shared by rows), the rest in the row's buffer; same bits.
            let split = |t: &Tensor, from: i64, n: i64, cap: i64| {
                let buf = Tensor::zeros([1, hkv, cap, d], (Kind::Float, Device::Cpu));
                buf.narrow(2, 0, n).copy_(&t.narrow(2, from, n));
                host(&buf)
            };
            let (sk, sv) = (
                split(&k, 0, first, first + 1),
                split(&v, 0, first, first + 1),
            );
            let rest = len - first;
            let (ok, ov) = (
                split(&k, first, rest, rest + 3),
                split(&v, first, rest, rest + 3),
            );
            let row = CacheRow {
                shared: Some(Span {
                    k: &sk,
                    v: &sv,
                    cap: (first + 1) as usize,
                    len: first as usize,
                }),
                own: Span {
                    k: &ok,
                    v: &ov,
                    cap: (rest + 3) as usize,
                    len: rest as usize,
                },
                keep: &keep,
            };
            let mut parts = vec![0f32; (hq * d) as usize];
            attend(&host(&q), &row, heads, &mut Vec::new(), &mut parts);
            assert_eq!(parts, got, "d {d}, {len} positions split after {first}");
        }
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
