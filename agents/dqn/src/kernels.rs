//! The host backend's two kernels: Adam's element-wise update, and one
//! matrix product for the network's small shapes (tens of rows and
//! columns): `C[m×n] (+)= A·B` with `B` row-major and `A` read through
//! strides, so that `Aᵀ` costs nothing. Blocks of 4 rows × 16 columns are
//! accumulated in registers along the shared dimension — one load of `B`,
//! four broadcasts of `A` and four fused multiply-adds per step — which is
//! what these sizes need; a general GEMM spends much of its time packing
//! operands for them.
//!
//! Every product is `f32::mul_add` in a fixed order, so the result is the
//! same bits whichever instruction set the CPU offers (AVX-512, AVX2+FMA or
//! none; chosen once at run time).

/// Calls `body(args…)` compiled for the best instruction set the CPU offers —
/// AVX-512, AVX2 with FMA, or the baseline — chosen at run time. `body` is
/// `#[inline(always)]`, so each variant is the same code compiled for its
/// target.
macro_rules! with_best_simd {
    ($body:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above);
                // the function has no other requirement.
                return unsafe { avx512($($arg),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above, for AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

/// `A` as a strided view: element `(i, p)` is `data[i * rs + p * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

const MR: usize = 4;
const NR: usize = 16;

/// `c[m×n] = (c if accumulate, else 0) + a[m×k] · b[k×n]`; `b` and `c`
/// row-major and contiguous. Panics (a programming error, not input) when a
/// slice is too short for the shapes.
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(
        b.len() >= k * n && c.len() >= m * n,
        "gemm: slices shorter than the shapes"
    );
    if m > 0 && k > 0 {
        assert!(
            a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs,
            "gemm: A shorter than its strides"
        );
    }
    with_best_simd!(gemm_body(
        m: usize,
        n: usize,
        k: usize,
        a: Strided<'_>,
        b: &[f32],
        c: &mut [f32],
        accumulate: bool
    ));
}

#[inline(always)]
fn gemm_body(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let full_n = n - n % NR;
    let full_m = m - m % MR;
    for i0 in (0..full_m).step_by(MR) {
        for j0 in (0..full_n).step_by(NR) {
            block(i0, j0, k, n, a, b, c, accumulate);
        }
    }
    // Edges, in blocks of up to ER rows × NR columns so that many
    // independent sums are in flight: the last rows of the full column
    // blocks, then every row of the last (narrower) column block.
    for j0 in (0..full_n).step_by(NR) {
        for i0 in (full_m..m).step_by(ER) {
            edge(i0, (m - i0).min(ER), j0, NR, k, n, a, b, c, accumulate);
        }
    }
    if full_n < n {
        for i0 in (0..m).step_by(ER) {
            edge(
                i0,
                (m - i0).min(ER),
                full_n,
                n - full_n,
                k,
                n,
                a,
                b,
                c,
                accumulate,
            );
        }
    }
}

const ER: usize = 8;

/// `rows` × `cols` (≤ ER × NR) of `c` from row `i0`, column `j0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edge(
    i0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    k: usize,
    n: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let mut acc = [[0f32; NR]; ER];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate().take(rows) {
            row[..cols].copy_from_slice(&c[(i0 + r) * n + j0..(i0 + r) * n + j0 + cols]);
        }
    }
    for p in 0..k {
        let bv = &b[p * n + j0..p * n + j0 + cols];
        for (r, row) in acc.iter_mut().enumerate().take(rows) {
            let av = a.data[(i0 + r) * a.rs + p * a.cs];
            for (x, &y) in row.iter_mut().zip(bv) {
                *x = av.mul_add(y, *x);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(rows) {
        c[(i0 + r) * n + j0..(i0 + r) * n + j0 + cols].copy_from_slice(&row[..cols]);
    }
}

/// A full MR × NR block of `c` from row `i0`, column `j0`. `gemm` checked
/// that every index read here is in bounds: `a` holds `(m − 1)·rs + (k − 1)·cs`,
/// `b` `k·n` and `c` `m·n` elements, with `i0 + MR ≤ m` and `j0 + NR ≤ n`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block(
    i0: usize,
    j0: usize,
    k: usize,
    n: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let mut acc = [[0f32; NR]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR]);
        }
    }
    let rows: [usize; MR] = std::array::from_fn(|r| (i0 + r) * a.rs);
    for p in 0..k {
        // SAFETY: p < k and j0 + NR ≤ n, so p·n + j0 + NR ≤ k·n ≤ b.len();
        // (i0 + r)·rs + p·cs ≤ (m − 1)·rs + (k − 1)·cs < a.data.len()
        // (both checked by `gemm` before any block runs).
        let bv: &[f32; NR] = unsafe { &*(b.as_ptr().add(p * n + j0) as *const [f32; NR]) };
        for (row, &base) in acc.iter_mut().zip(&rows) {
            let av = unsafe { *a.data.get_unchecked(base + p * a.cs) };
            for (x, &y) in row.iter_mut().zip(bv) {
                *x = av.mul_add(y, *x);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        c[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR].copy_from_slice(row);
    }
}

/// Adam's constants for one step (see [`crate::flat_adam::FlatAdam::host_step`]).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Factor on the gradient (clipping; 1 when none).
    pub grad_scale: f32,
    /// `1 − β₁`, `β₂`, `1 − β₂`.
    pub w1: f32,
    pub beta2: f32,
    pub w2: f32,
    /// `1 / √(1 − β₂ᵗ)`, `ε`, `−lr / (1 − β₁ᵗ)`.
    pub inv_sqrt_bc2: f32,
    pub eps: f32,
    pub step: f32,
}

/// `m ← m + (1−β₁)(g − m)`, `v ← β₂v + g·(1−β₂)g`,
/// `p ← p + (m · step) / (√v · (1/√bc₂) + ε)` element-wise (libtorch's
/// order of operations but for that one reciprocal, which saves a division),
/// vectorised where the CPU allows (IEEE `sqrt` and division, so the same
/// bits either way).
pub fn adam(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamStep) {
    with_best_simd!(adam_body(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        s: AdamStep
    ));
}

#[inline(always)]
fn adam_body(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamStep) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g = g * s.grad_scale;
        *m += s.w1 * (g - *m);
        *v = *v * s.beta2 + g * (g * s.w2);
        let denom = v.sqrt() * s.inv_sqrt_bc2 + s.eps;
        *p += (*m * s.step) / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: Strided<'_>,
        b: &[f32],
        c0: &[f32],
        acc: bool,
    ) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = if acc { f64::from(c0[i * n + j]) } else { 0.0 };
                for p in 0..k {
                    s += f64::from(a.data[i * a.rs + p * a.cs]) * f64::from(b[p * n + j]);
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_a_naive_product_on_edges_strides_and_accumulation() {
        let mut x = 0.37f32;
        let mut next = || {
            x = (x * 3.7 + 0.11).fract();
            x - 0.5
        };
        for (m, n, k) in [
            (64, 64, 64),
            (5, 17, 3),
            (4, 16, 1),
            (1, 1, 1),
            (7, 33, 64),
            (64, 4, 64),
            (3, 2, 0),
        ] {
            let a_rm: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
            // Row-major A, and the same A stored transposed (read through strides).
            let mut a_cm = vec![0.0; m * k];
            for i in 0..m {
                for p in 0..k {
                    a_cm[p * m + i] = a_rm[i * k + p];
                }
            }
            for acc in [false, true] {
                let views = [
                    Strided {
                        data: &a_rm,
                        rs: k,
                        cs: 1,
                    },
                    Strided {
                        data: &a_cm,
                        rs: 1,
                        cs: m,
                    },
                ];
                for a in views {
                    let mut c = c0.clone();
                    gemm(m, n, k, a, &b, &mut c, acc);
                    let want = naive(m, n, k, a, &b, &c0, acc);
                    for (g, w) in c.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-5, "{m}x{n}x{k} acc={acc}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
