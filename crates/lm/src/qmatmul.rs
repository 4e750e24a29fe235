//! Weight-only quantized matrices and their matmul on the host.
//!
//! A decode step multiplies a few activation rows by every weight matrix of
//! the model; its speed is bounded by the bytes of weights it reads and by
//! the work spent on each weight once read. A [`QuantMatrix`] stores a `[n,
//! k]` weight in blocks of [`BLOCK`] inputs — 4-bit codes with an f16 scale
//! and offset per block (`w = d·q + m`, `q ∈ 0..=15`: Q4_1's form, Q4_0's
//! `d·(q − 8)` is a case of it) or 8-bit codes with an f16 scale (`w = d·q`,
//! `q ∈ −127..=127`: Q8_0's form). Weights dequantised from such blocks (a
//! GGUF file's) are kept bit for bit ([`QuantMatrix::exact`]); others are
//! rounded to the nearest code.
//!
//! [`QuantMatrix::matmul`] works as llama.cpp's CPU kernels do: each
//! activation row is quantized to 8 bits per block of 32 (`x ≈ e·p`, `e =
//! max|x| / 127`), the products of codes are summed exactly in integers,
//! and each block's sum is scaled in f32:
//!
//! `y_j = Σ_b [ (Σ_i q_ji p_i) · (d_jb · e_b) + m_jb · (e_b · Σ_i p_i) ]`
//!
//! (no offset term for int8). Every output is summed in that order, block
//! after block, whatever the CPU, the thread count or the rows beside it:
//! results do not depend on any of them. Weights are laid out for sixteen
//! output features at a time, so that one AVX-512 VNNI instruction
//! multiplies four inputs of sixteen features and the expanded codes of a
//! block serve up to [`TILE`] rows before the next block is read; a CPU
//! without AVX-512 VNNI runs the same arithmetic in plain Rust. From
//! [`AMX_MIN_ROWS`] rows on, where the CPU and the OS run AMX-INT8, one tile
//! instruction forms a block's integer sums for up to sixteen rows and
//! sixteen features, and AVX-512 scales them in the same order: the same
//! bits again (tested), but the per-block scaling, not the products, then
//! bounds the speed.
//!
//! The weights of a decode step do not fit in the caches and are read once
//! per step, group after group. The hardware prefetchers stop at 4 KiB
//! pages (a group's codes span one or two), so without help each group's
//! loads wait on memory and its products wait on the loads. Every kernel
//! therefore asks, while it works on block `b` of a group, for block `b`
//! of the group [`PREFETCH_GROUPS`] ahead ([`ask_ahead`]).

use std::sync::OnceLock;

use half::f16;

use crate::error::{LmError, Result};

/// Inputs per block (Q4_1's and Q8_0's block size).
pub const BLOCK: usize = 32;

/// Activation rows multiplied by each block's codes before the next.
pub const TILE: usize = 8;

/// Output features per group of the layout (the lanes of one vector).
const GROUP: usize = 16;

/// Bytes of codes per block and group.
const INT4_BYTES: usize = GROUP * BLOCK / 2;
const INT8_BYTES: usize = GROUP * BLOCK;

/// How many groups ahead the kernels ask for weights. Measured on SmolLM2
/// (two threads, one decode step): one or two groups ahead took the
/// blocks' matmuls from 2.8 to 1.8 ms at batch 1 and from 6.0 to 4.4 ms at
/// batch 8, and the output layer from 3.1 to 2.2 ms at batch 8; four was
/// slower again.
const PREFETCH_GROUPS: usize = 1;

/// Asks the caches for block `b` of the group [`PREFETCH_GROUPS`] after
/// the one whose codes start at `codes` (`block_bytes` per block) and
/// whose per-block, per-feature values (16 per block: scales, offsets,
/// biases) start at each of `values`. Only hints: nothing is read, and an
/// address past the matrix (after its last group) does not fault.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ask_ahead<const N: usize>(
    codes: *const u8,
    block_bytes: usize,
    nb: usize,
    b: usize,
    values: [(*const u8, usize); N],
) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let codes = codes.wrapping_add((PREFETCH_GROUPS * nb + b) * block_bytes);
    for line in (0..block_bytes).step_by(64) {
        // SAFETY: a prefetch is a hint; it never faults or reads into
        // the program, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(line) as *const i8) };
    }
    for (v, size) in values {
        let at = v.wrapping_add((PREFETCH_GROUPS * nb + b) * GROUP * size);
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
    }
}

/// The codes of a [`QuantMatrix`], group by group, block by block. Within
/// a block of a group, vector `t ∈ 0..8` (64 bytes for int8; for int4 the
/// low nibbles of 64 bytes for `t < 4`, the high nibbles for `t ≥ 4`)
/// holds, for each feature `l` of the group, its codes of inputs `4t ..
/// 4t + 4` of the block at bytes `4l .. 4l + 4`.
#[derive(Clone)]
enum Codes {
    Int4 {
        codes: Vec<u8>,
        min: Vec<f16>,
    },
    /// With `−128 · Σ q` per block and feature: the activations enter the
    /// unsigned × signed product as `p + 128`.
    Int8 {
        codes: Vec<i8>,
        bias: Vec<i32>,
    },
}

/// A `[n, k]` weight quantized in blocks of [`BLOCK`] inputs (see the
/// module documentation).
#[derive(Clone)]
pub struct QuantMatrix {
    n: usize,
    k: usize,
    /// `k` rounded up to whole blocks (zero inputs after `k`).
    kp: usize,
    codes: Codes,
    /// f16 scales, `[group][block][feature of the group]`.
    scale: Vec<f16>,
    exact: bool,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bits", &self.bits())
            .field("exact", &self.exact)
            .finish()
    }
}

fn check_shape(w: &[f32], n: usize, k: usize) -> Result<()> {
    if k == 0 || w.len() != n * k {
        return Err(LmError::InvalidArgument(format!(
            "a quantized matrix needs a [n, k] weight with k > 0; got {} values for [{n}, {k}]",
            w.len()
        )));
    }
    Ok(())
}

fn f16_exact(v: f32) -> Option<f16> {
    let h = f16::from_f32(v);
    (h.to_f32() == v).then_some(h)
}

/// f16 `d` and `m` with every value of `block` equal to `d·q + m` (f32
/// product, then sum, as the GGUF loader computes it) for an integer `q ∈
/// 0..=15`; `None` when there are none.
fn exact_int4(block: &[f32]) -> Option<(f16, f16, [u8; BLOCK])> {
    let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let m = f16_exact(lo).filter(|m| m.is_finite() && hi.is_finite())?;
    let mut q = [0u8; BLOCK];
    if lo == hi {
        return Some((f16::ZERO, m, q));
    }
    for top in (1..=15u8).rev() {
        let d = f16::from_f32((hi - lo) / top as f32);
        let df = d.to_f32();
        if !(df > 0.0 && df.is_finite()) {
            continue;
        }
        let fits = block.iter().zip(q.iter_mut()).all(|(&w, c)| {
            let code = ((w - lo) / df).round();
            *c = code as u8;
            (0.0..=15.0).contains(&code) && df * code + lo == w
        });
        if fits {
            return Some((d, m, q));
        }
    }
    None
}

/// f16 `d` with every value of `block` equal to `d·q` for an integer `q ∈
/// −127..=127`; `None` when there is none.
fn exact_int8(block: &[f32]) -> Option<(f16, [i8; BLOCK])> {
    let amax = block.iter().fold(0f32, |a, w| a.max(w.abs()));
    let mut q = [0i8; BLOCK];
    if !amax.is_finite() {
        return None;
    }
    if amax == 0.0 {
        return Some((f16::ZERO, q));
    }
    // The codes of a Q8_0 block reach ±127 in all but rare blocks; a few
    // smaller tops find most of the rest.
    for top in (112..=127u8).rev() {
        let d = f16::from_f32(amax / top as f32);
        let df = d.to_f32();
        if !(df > 0.0 && df.is_finite()) {
            continue;
        }
        let fits = block.iter().zip(q.iter_mut()).all(|(&w, c)| {
            let code = (w / df).round();
            *c = code as i8;
            (-127.0..=127.0).contains(&code) && df * code == w
        });
        if fits {
            return Some((d, q));
        }
    }
    None
}

fn out_of_range(what: &str) -> LmError {
    LmError::InvalidArgument(format!(
        "{what}: a block's scale or offset is outside f16's range (or not finite)"
    ))
}

fn nearest_int4(block: &[f32]) -> Result<(f16, f16, [u8; BLOCK])> {
    let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (d, m) = (f16::from_f32((hi - lo) / 15.0), f16::from_f32(lo));
    if !(d.is_finite() && m.is_finite()) {
        return Err(out_of_range("int4 weights"));
    }
    let (df, mf) = (d.to_f32(), m.to_f32());
    let mut q = [0u8; BLOCK];
    if df > 0.0 {
        for (c, &w) in q.iter_mut().zip(block) {
            *c = ((w - mf) / df).round().clamp(0.0, 15.0) as u8;
        }
    }
    Ok((d, m, q))
}

fn nearest_int8(block: &[f32]) -> Result<(f16, [i8; BLOCK])> {
    let amax = block.iter().fold(0f32, |a, w| a.max(w.abs()));
    let d = f16::from_f32(amax / 127.0);
    if !d.is_finite() {
        return Err(out_of_range("int8 weights"));
    }
    let df = d.to_f32();
    let mut q = [0i8; BLOCK];
    if df > 0.0 {
        for (c, &w) in q.iter_mut().zip(block) {
            *c = (w / df).round().clamp(-127.0, 127.0) as i8;
        }
    }
    Ok((d, q))
}

impl QuantMatrix {
    /// 4-bit blocks of the `[n, k]` row-major weight `w`.
    pub fn int4(w: &[f32], n: usize, k: usize) -> Result<QuantMatrix> {
        Self::build(w, n, k, 4)
    }

    /// 8-bit blocks of the `[n, k]` row-major weight `w`.
    pub fn int8(w: &[f32], n: usize, k: usize) -> Result<QuantMatrix> {
        Self::build(w, n, k, 8)
    }

    fn build(w: &[f32], n: usize, k: usize, bits: u32) -> Result<QuantMatrix> {
        check_shape(w, n, k)?;
        let kp = k.div_ceil(BLOCK) * BLOCK;
        let (nb, groups) = (kp / BLOCK, n.div_ceil(GROUP));
        let lanes = groups * nb * GROUP;
        let mut scale = vec![f16::ZERO; lanes];
        let mut min = vec![f16::ZERO; if bits == 4 { lanes } else { 0 }];
        let mut bias = vec![0i32; if bits == 8 { lanes } else { 0 }];
        let mut c4 = vec![
            0u8;
            if bits == 4 {
                groups * nb * INT4_BYTES
            } else {
                0
            }
        ];
        let mut c8 = vec![
            0i8;
            if bits == 8 {
                groups * nb * INT8_BYTES
            } else {
                0
            }
        ];
        let mut exact = true;
        let mut row = vec![0f32; kp];
        for j in 0..n {
            let (g, l) = (j / GROUP, j % GROUP);
            row[..k].copy_from_slice(&w[j * k..(j + 1) * k]);
            for b in 0..nb {
                let block = &row[b * BLOCK..(b + 1) * BLOCK];
                let gb = g * nb + b;
                let lane = gb * GROUP + l;
                if bits == 4 {
                    let (d, m, q) = match exact_int4(block) {
                        Some(found) => found,
                        None => {
                            exact = false;
                            nearest_int4(block)?
                        }
                    };
                    (scale[lane], min[lane]) = (d, m);
                    for (i, &c) in q.iter().enumerate() {
                        let (t, e) = (i / 4, i % 4);
                        let at = gb * INT4_BYTES + (t % 4) * 64 + l * 4 + e;
                        c4[at] |= if t < 4 { c } else { c << 4 };
                    }
                } else {
                    let (d, q) = match exact_int8(block) {
                        Some(found) => found,
                        None => {
                            exact = false;
                            nearest_int8(block)?
                        }
                    };
                    scale[lane] = d;
                    bias[lane] = -128 * q.iter().map(|&c| c as i32).sum::<i32>();
                    for (i, &c) in q.iter().enumerate() {
                        let (t, e) = (i / 4, i % 4);
                        c8[gb * INT8_BYTES + t * 64 + l * 4 + e] = c;
                    }
                }
            }
        }
        let codes = if bits == 4 {
            Codes::Int4 { codes: c4, min }
        } else {
            Codes::Int8 { codes: c8, bias }
        };
        Ok(QuantMatrix {
            n,
            k,
            kp,
            codes,
            scale,
            exact,
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bits per code (4 or 8).
    pub fn bits(&self) -> u32 {
        match self.codes {
            Codes::Int4 { .. } => 4,
            Codes::Int8 { .. } => 8,
        }
    }

    /// Whether every block holds the weight it was packed from bit for bit
    /// (the zero inputs that fill the last block included).
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// The weights the codes stand for, `[n, k]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let nb = self.kp / BLOCK;
        let mut out = vec![0f32; self.n * self.kp];
        for (j, row) in out.chunks_exact_mut(self.kp).enumerate() {
            let (g, l) = (j / GROUP, j % GROUP);
            for b in 0..nb {
                let gb = g * nb + b;
                let d = self.scale[gb * GROUP + l].to_f32();
                for i in 0..BLOCK {
                    let (t, e) = (i / 4, i % 4);
                    row[b * BLOCK + i] = match &self.codes {
                        Codes::Int4 { codes, min } => {
                            let byte = codes[gb * INT4_BYTES + (t % 4) * 64 + l * 4 + e];
                            let q = if t < 4 { byte & 0x0f } else { byte >> 4 };
                            d * q as f32 + min[gb * GROUP + l].to_f32()
                        }
                        Codes::Int8 { codes, .. } => {
                            d * codes[gb * INT8_BYTES + t * 64 + l * 4 + e] as f32
                        }
                    };
                }
            }
        }
        if self.kp != self.k {
            out = out
                .chunks_exact(self.kp)
                .flat_map(|row| &row[..self.k])
                .copied()
                .collect();
        }
        out
    }

    /// [`QuantMatrix::matmul`] with activations to ≈ 16 bits: `x` is
    /// rounded as usual, then what that rounding lost is rounded the same
    /// way and multiplied too (two passes). For the output layer, where an
    /// 8-bit rounding of the last hidden state can swap the top tokens
    /// (SmolLM2 answered "What is the capital of France?" without
    /// "Paris").
    pub fn matmul_refined(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        self.check_rows(x, rows)?;
        // SAFETY: `x` holds `rows` rows (checked); `into_vec` gives room
        // for `rows × n` outputs.
        into_vec(out, rows * self.n, |dst| unsafe {
            self.refined_to(x, rows, dst)
        })
    }

    /// [`QuantMatrix::matmul_refined`] into `out` (`rows × n` values).
    pub fn matmul_refined_into(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Result<()> {
        self.check_rows(x, rows)?;
        self.check_out(out, rows)?;
        // SAFETY: `out` holds `rows × n` values (checked).
        unsafe { self.refined_to(x, rows, out.as_mut_ptr()) };
        Ok(())
    }

    /// # Safety
    /// `x` holds `rows` rows of `k`; `dst` has room for `rows × n` values.
    unsafe fn refined_to(&self, x: &[f32], rows: usize, dst: *mut f32) {
        // Each row followed by what its rounding loses: one matmul of twice
        // the rows, so that both passes share every weight load, whose
        // outputs are added pair by pair as they are stored.
        let mut both = Vec::with_capacity(2 * x.len());
        for row in x.chunks_exact(self.k) {
            both.extend_from_slice(row);
            for block in row.chunks(BLOCK) {
                let (e, inv) = block_scale(block);
                both.extend(
                    block
                        .iter()
                        .map(|&v| v - round_even((v * inv).clamp(-127.0, 127.0)) * e),
                );
            }
        }
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        self.matmul_to(
            &both,
            2 * rows,
            dst,
            threads,
            Kernel::for_rows(2 * rows),
            true,
        );
    }

    /// An error unless `x` holds `rows` rows of this matrix's width.
    fn check_rows(&self, x: &[f32], rows: usize) -> Result<()> {
        self.check_len("activations", x.len(), rows * self.k, rows)
    }

    /// An error unless `out` has room for `rows` rows of outputs.
    fn check_out(&self, out: &[f32], rows: usize) -> Result<()> {
        self.check_len("places for outputs", out.len(), rows * self.n, rows)
    }

    fn check_len(&self, what: &str, len: usize, want: usize, rows: usize) -> Result<()> {
        if len != want {
            return Err(LmError::InvalidArgument(format!(
                "{len} {what} for {rows} rows of a [{}, {}] quantized matrix (expected {want})",
                self.n, self.k
            )));
        }
        Ok(())
    }

    /// `x · Wᵀ` for `rows` rows of `x` (`rows × k`, row-major), into `out`
    /// (`rows × n`), on libtorch's thread count.
    pub fn matmul(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        self.matmul_threads(x, rows, out, threads)
    }

    /// [`QuantMatrix::matmul`] into `out` (`rows × n` values).
    pub fn matmul_into(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Result<()> {
        self.check_rows(x, rows)?;
        self.check_out(out, rows)?;
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        // SAFETY: `x` and `out` hold `rows` rows (checked).
        unsafe {
            self.matmul_to(
                x,
                rows,
                out.as_mut_ptr(),
                threads,
                Kernel::for_rows(rows),
                false,
            )
        };
        Ok(())
    }

    /// [`QuantMatrix::matmul`] on `threads` threads.
    pub fn matmul_threads(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        threads: usize,
    ) -> Result<()> {
        self.matmul_on(x, rows, out, threads, Kernel::for_rows(rows))
    }

    fn matmul_on(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        threads: usize,
        kernel: Kernel,
    ) -> Result<()> {
        self.check_rows(x, rows)?;
        // SAFETY: `x` holds `rows` rows (checked); `into_vec` gives room
        // for `rows × n` outputs.
        into_vec(out, rows * self.n, |dst| unsafe {
            self.matmul_to(x, rows, dst, threads, kernel, false)
        })
    }

    /// `x · Wᵀ` into `dst` (`rows × n`), or with `pairs`, the sum of each
    /// two consecutive rows' outputs (`rows / 2 × n`: row `r` the first
    /// of pair `r` plus the second).
    ///
    /// # Safety
    /// `x` holds `rows` rows of `k` (an even count with `pairs`), and `dst`
    /// has room for every output.
    unsafe fn matmul_to(
        &self,
        x: &[f32],
        rows: usize,
        dst: *mut f32,
        threads: usize,
        kernel: Kernel,
        pairs: bool,
    ) {
        if rows == 0 {
            return;
        }
        // Buffers reused from call to call on this thread: a decode step
        // would otherwise fault in megabytes of fresh pages per matmul.
        crate::alloc::with_reused(&SCRATCH, |scratch| {
            let Scratch { padded, acts } = scratch;
            let x = if self.kp == self.k {
                x
            } else {
                padded.clear();
                for r in x.chunks_exact(self.k) {
                    padded.extend_from_slice(r);
                    padded.resize(padded.len() + self.kp - self.k, 0.0);
                }
                &padded[..]
            };
            acts.quantize(x, rows, self.bits() == 8, kernel != Kernel::Portable);
            if kernel == Kernel::Amx {
                let (tiles, height) = amx_tiles(rows);
                acts.pad_to(tiles * height);
            }
            let acts = &*acts;
            let groups = self.n.div_ceil(GROUP);
            let dst = OutPtr(dst);
            let dst = &dst;
            // Group `g`'s outputs (`[row][feature of the group]`) into
            // their columns of `dst`.
            let store = |g: usize, lanes: &[f32]| {
                let width = GROUP.min(self.n - g * GROUP);
                if pairs {
                    for (r, two) in lanes.chunks_exact(2 * GROUP).enumerate() {
                        let (first, second) = two.split_at(GROUP);
                        // SAFETY: as below, for `rows / 2` rows.
                        let o = unsafe { dst.0.add(r * self.n + g * GROUP) };
                        for (l, (f, s)) in first.iter().zip(second).take(width).enumerate() {
                            // SAFETY: as below.
                            unsafe { *o.add(l) = f + s };
                        }
                    }
                    return;
                }
                for (r, v) in lanes.chunks_exact(GROUP).enumerate() {
                    // SAFETY: `dst` has room for every row's outputs; row
                    // `r`, columns `16g .. 16g + width` belong to group `g`
                    // alone, which one task stores.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            v.as_ptr(),
                            dst.0.add(r * self.n + g * GROUP),
                            width,
                        )
                    };
                }
            };
            let chunk = groups.div_ceil(threads * 4).max(1);
            let run = |c: usize| {
                let span = c * chunk..((c + 1) * chunk).min(groups);
                #[cfg(target_arch = "x86_64")]
                if kernel == Kernel::Amx {
                    // SAFETY: `Kernel::Amx` is only chosen where the CPU
                    // and the OS run AMX (`amx_ready`); `acts` is padded.
                    unsafe { self.amx_groups(span, acts, rows, &store) };
                    return;
                }
                let simd = kernel != Kernel::Portable;
                with_group_out(rows, |o| {
                    for g in span {
                        self.group(g, acts, o, simd);
                        store(g, o);
                    }
                });
            };
            let work = rows * self.n * self.kp;
            let workers = (threads > 1 && groups > chunk && work >= MIN_PARALLEL)
                .then(|| crate::workers::workers(threads))
                .flatten();
            let tasks = groups.div_ceil(chunk);
            match workers {
                Some(w) => w.run(tasks, &run),
                None => (0..tasks).for_each(run),
            }
        });
    }

    /// Group `g`'s outputs for every row, into `out` (`[row][feature]`).
    fn group(&self, g: usize, acts: &Activations, out: &mut [f32], simd: bool) {
        let rows = acts.rows;
        let mut r0 = 0;
        while r0 < rows {
            let t = (rows - r0).min(TILE);
            let o = &mut out[r0 * GROUP..(r0 + t) * GROUP];
            match t {
                1 => self.tile::<1>(g, acts, r0, o, simd),
                2 => self.tile::<2>(g, acts, r0, o, simd),
                3 => self.tile::<3>(g, acts, r0, o, simd),
                4 => self.tile::<4>(g, acts, r0, o, simd),
                5 => self.tile::<5>(g, acts, r0, o, simd),
                6 => self.tile::<6>(g, acts, r0, o, simd),
                7 => self.tile::<7>(g, acts, r0, o, simd),
                _ => self.tile::<8>(g, acts, r0, o, simd),
            }
            r0 += t;
        }
    }

    /// Rows `r0 .. r0 + R` of group `g`, into `out` (`[R][GROUP]`).
    fn tile<const R: usize>(
        &self,
        g: usize,
        acts: &Activations,
        r0: usize,
        out: &mut [f32],
        simd: bool,
    ) {
        let nb = self.kp / BLOCK;
        let lanes = g * nb * GROUP..(g + 1) * nb * GROUP;
        let x = &acts.codes[r0 * self.kp..(r0 + R) * self.kp];
        let (e, s) = (
            &acts.scale[r0 * nb..(r0 + R) * nb],
            &acts.sum[r0 * nb..(r0 + R) * nb],
        );
        let scale = &self.scale[lanes.clone()];
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: the CPU has AVX-512F/BW/VNNI (checked at run time);
            // every slice holds what the kernel reads: `nb` blocks of this
            // group's codes, scales and offsets, `R` rows of `k` codes and
            // `nb` scales and sums, `R × GROUP` outputs.
            unsafe {
                match &self.codes {
                    Codes::Int4 { codes, min } => avx512::int4::<R>(
                        &codes[g * nb * INT4_BYTES..(g + 1) * nb * INT4_BYTES],
                        scale,
                        &min[lanes],
                        x,
                        e,
                        s,
                        nb,
                        out,
                    ),
                    Codes::Int8 { codes, bias } => avx512::int8::<R>(
                        &codes[g * nb * INT8_BYTES..(g + 1) * nb * INT8_BYTES],
                        scale,
                        &bias[lanes],
                        x,
                        e,
                        nb,
                        out,
                    ),
                }
            }
            return;
        }
        let k = self.kp;
        let mut acc = [[0f32; GROUP]; R];
        for b in 0..nb {
            for l in 0..GROUP {
                let lane = b * GROUP + l;
                let d = scale[lane].to_f32();
                for (r, a) in acc.iter_mut().enumerate() {
                    let xb = &x[r * k + b * BLOCK..r * k + (b + 1) * BLOCK];
                    let (er, sr) = (e[r * nb + b], s[r * nb + b]);
                    a[l] = match &self.codes {
                        Codes::Int4 { codes, min } => {
                            let c = &codes[(g * nb + b) * INT4_BYTES..];
                            let dot: i32 = (0..BLOCK)
                                .map(|i| {
                                    let byte = c[(i / 4 % 4) * 64 + l * 4 + i % 4];
                                    let q = if i < 16 { byte & 0x0f } else { byte >> 4 };
                                    q as i32 * xb[i] as i8 as i32
                                })
                                .sum();
                            let a = (dot as f32).mul_add(d * er, a[l]);
                            min[lanes.start + lane].to_f32().mul_add(sr, a)
                        }
                        Codes::Int8 { codes, bias } => {
                            let c = &codes[(g * nb + b) * INT8_BYTES..];
                            let dot: i32 = bias[lanes.start + lane]
                                + (0..BLOCK)
                                    .map(|i| c[(i / 4) * 64 + l * 4 + i % 4] as i32 * xb[i] as i32)
                                    .sum::<i32>();
                            (dot as f32).mul_add(d * er, a[l])
                        }
                    };
                }
            }
        }
        for (o, a) in out.chunks_exact_mut(GROUP).zip(&acc) {
            o.copy_from_slice(a);
        }
    }
}

impl QuantMatrix {
    /// Groups `span` for every row with the AMX kernel, each handed to
    /// `store` (`[row][feature of the group]`).
    ///
    /// # Safety
    /// The CPU and the OS must run AMX-INT8 ([`amx_ready`]), and `acts`
    /// must be padded to whole tiles ([`amx_tiles`]).
    #[cfg(target_arch = "x86_64")]
    unsafe fn amx_groups(
        &self,
        span: std::ops::Range<usize>,
        acts: &Activations,
        rows: usize,
        store: &dyn Fn(usize, &[f32]),
    ) {
        let nb = self.kp / BLOCK;
        let (tiles, height) = amx_tiles(rows);
        amx::configure(height);
        with_group_out(rows, |o| {
            crate::alloc::with_reused(&UNPACKED, |unpacked| {
                let mut sums = [0f32; AMX_ROWS * GROUP];
                for g in span {
                    let lanes = g * nb * GROUP;
                    let scale = self.scale[lanes..].as_ptr();
                    let (w, min, bias, stored, block_bytes) = match &self.codes {
                        Codes::Int4 { codes, min } => {
                            let group = &codes[g * nb * INT4_BYTES..(g + 1) * nb * INT4_BYTES];
                            amx::unpack(group, unpacked);
                            (
                                unpacked.as_ptr() as *const i8,
                                min[lanes..].as_ptr(),
                                std::ptr::null(),
                                group.as_ptr(),
                                INT4_BYTES,
                            )
                        }
                        Codes::Int8 { codes, bias } => {
                            let group = codes[g * nb * INT8_BYTES..].as_ptr();
                            (
                                group,
                                std::ptr::null(),
                                bias[lanes..].as_ptr(),
                                group.cast(),
                                INT8_BYTES,
                            )
                        }
                    };
                    for tile in 0..tiles {
                        let r0 = tile * height;
                        let args = amx::Args {
                            w,
                            stored,
                            block_bytes,
                            scale,
                            min,
                            bias,
                            x: acts.codes[r0 * self.kp..].as_ptr(),
                            kp: self.kp,
                            e: acts.scale[r0 * nb..].as_ptr(),
                            s: acts.sum[r0 * nb..].as_ptr(),
                            nb,
                            out: sums.as_mut_ptr(),
                        };
                        // The tile height as a constant (1 to 16 rows).
                        macro_rules! by_height {
                            ($int8:literal: $($h:literal)*) => {
                                match height {
                                    $($h => amx::tile::<$h, $int8>(&args),)*
                                    _ => amx::tile::<16, $int8>(&args),
                                }
                            };
                        }
                        if self.bits() == 8 {
                            by_height!(true: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
                        } else {
                            by_height!(false: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
                        }
                        let real = height.min(rows - r0);
                        o[r0 * GROUP..(r0 + real) * GROUP].copy_from_slice(&sums[..real * GROUP]);
                    }
                    store(g, o);
                }
            })
        });
        amx::release();
    }
}

thread_local! {
    /// A group's int4 codes widened to bytes for the AMX kernel.
    static UNPACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Activation rows quantized to 8 bits per block: codes `p` (stored as
/// `p + 128` for int8 weights, `p` as a two's-complement byte for int4),
/// scales `e` and `e · Σ p` per row and block.
#[derive(Default)]
struct Activations {
    rows: usize,
    codes: Vec<u8>,
    scale: Vec<f32>,
    sum: Vec<f32>,
}

impl Activations {
    /// Quantizes `rows` rows `x` (whole blocks) into these buffers, with
    /// AVX-512 if `simd` (the same bits).
    fn quantize(&mut self, x: &[f32], rows: usize, unsigned: bool, simd: bool) {
        self.rows = rows;
        let blocks = x.len() / BLOCK;
        self.codes.resize(blocks * BLOCK, 0);
        self.scale.resize(blocks, 0.0);
        self.sum.resize(blocks, 0.0);
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` only where the CPU has AVX-512F/BW; the
            // buffers hold `blocks` blocks.
            unsafe {
                avx512::quantize(x, unsigned, &mut self.codes, &mut self.scale, &mut self.sum)
            };
            return;
        }
        for (b, block) in x.chunks_exact(BLOCK).enumerate() {
            let (e, inv) = block_scale(block);
            let mut total = 0i32;
            for (c, &v) in self.codes[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(block) {
                let p = round_even((v * inv).clamp(-127.0, 127.0)) as i32;
                total += p;
                *c = if unsigned {
                    (p + 128) as u8
                } else {
                    p as i8 as u8
                };
            }
            self.scale[b] = e;
            self.sum[b] = e * total as f32;
        }
    }
}

/// A block's activation scale `e = max|x| / 127` and its inverse (0 for
/// an all-zero block).
#[inline]
fn block_scale(block: &[f32]) -> (f32, f32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let e = amax / 127.0;
    (e, if e > 0.0 { 1.0 / e } else { 0.0 })
}

impl Activations {
    /// Appends zero rows up to `total` rows (whole AMX tiles); `rows`
    /// stays the count of real rows.
    fn pad_to(&mut self, total: usize) {
        if self.rows == 0 || total <= self.rows {
            return;
        }
        let (kp, nb) = (self.codes.len() / self.rows, self.scale.len() / self.rows);
        self.codes.resize(total * kp, 0);
        self.scale.resize(total * nb, 0.0);
        self.sum.resize(total * nb, 0.0);
    }
}

/// A matmul's working buffers (see [`QuantMatrix::matmul_threads`]).
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    acts: Activations,
}

/// Fills `out` with `total` values that `write` stores through the pointer
/// it is given (every one of them, as the matmuls do).
fn into_vec(out: &mut Vec<f32>, total: usize, write: impl FnOnce(*mut f32)) -> Result<()> {
    out.clear();
    out.reserve(total);
    write(out.as_mut_ptr());
    // SAFETY: `write` stored every element of `out[..total]` (every
    // group's columns of every row) within the capacity reserved.
    unsafe { out.set_len(total) };
    Ok(())
}

/// `out`'s buffer, shared by the tasks of one matmul, each of which stores
/// only its own groups' columns.
struct OutPtr(*mut f32);
// SAFETY: see `store` in `QuantMatrix::matmul_on`: tasks write disjoint
// elements, and the matmul waits for all of them.
unsafe impl Sync for OutPtr {}

/// Runs `f` with this thread's buffer for one group's outputs of `rows`
/// rows (`[row][feature of the group]`).
fn with_group_out<R>(rows: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    crate::alloc::with_reused(&GROUP_OUT, |buf| {
        buf.clear();
        buf.resize(rows * GROUP, 0.0);
        f(buf)
    })
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
    static GROUP_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2²²`:
/// adding and removing 1.5·2²³ leaves no fraction bits (`f32::round`
/// is a library call on CPUs without SSE4.1, a tenth of a decode step).
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (v + SHIFT) - SHIFT
}

/// Multiply-adds below which a matmul stays on the caller's thread, where
/// handing out its parts costs more than it saves (SmolLM2 batch-1 decode,
/// two threads: 186–192 tok/s at 2²⁰, 219–227 at 2¹⁸, 209–221 at 2¹⁶ and
/// 2¹⁷; every projection of a decode step is split at 2¹⁸).
const MIN_PARALLEL: usize = 1 << 18;

/// The kernels of [`QuantMatrix::matmul`]; all compute the same bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    /// Plain Rust.
    Portable,
    /// AVX-512 VNNI: sixteen features by four inputs per instruction.
    Vnni,
    /// AMX: a tile of up to sixteen rows by sixteen features by one block
    /// per instruction, each block's integer sums scaled by AVX-512.
    Amx,
}

impl Kernel {
    /// The fastest kernel for `rows` activation rows on this machine.
    fn for_rows(rows: usize) -> Kernel {
        if rows >= AMX_MIN_ROWS && amx_ready() {
            Kernel::Amx
        } else if simd() {
            Kernel::Vnni
        } else {
            Kernel::Portable
        }
    }
}

/// Activation rows from which the AMX kernel is used: in SmolLM2 decode
/// (two threads) it gained 6% at 32 rows and nothing measurable at 4, 8
/// and 16 (`docs/language-models.md`).
const AMX_MIN_ROWS: usize = 16;

/// Rows per AMX tile.
const AMX_ROWS: usize = 16;

/// `(tiles, rows per tile)` for `rows` activation rows: as few tiles as
/// the tile height allows, of equal height (rows past `rows` are zeros).
fn amx_tiles(rows: usize) -> (usize, usize) {
    let tiles = rows.div_ceil(AMX_ROWS).max(1);
    (tiles, rows.div_ceil(tiles).max(1))
}

/// Whether the CPU has AMX-INT8 and the kernel lets this process use its
/// tiles (Linux hands out their 8 KiB of state per process on request).
/// `EMORL_AMX=0` turns the AMX kernel off.
fn amx_ready() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static READY: OnceLock<bool> = OnceLock::new();
        *READY.get_or_init(|| {
            if !simd() || std::env::var_os("EMORL_AMX").is_some_and(|v| v == "0") {
                return false;
            }
            // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 7 exists on every CPU with AVX-512.
            let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
            if leaf.edx & (3 << 24) != 3 << 24 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with this request only asks the kernel
            // for permission to use the tile state; it touches no memory.
            unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                ) == 0
            }
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// Whether this CPU runs the AVX-512 VNNI kernel.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BLOCK, GROUP, INT4_BYTES, INT8_BYTES};
    use half::f16;
    use std::arch::x86_64::*;

    /// Sixteen f16 values as f32 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn f16x16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    /// Four activation codes of row `x` from input `i`, in every lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn four(x: *const u8, i: usize) -> __m512i {
        _mm512_set1_epi32((x.add(i) as *const i32).read_unaligned())
    }

    /// [`super::Activations::quantize`]'s blocks with the same operations
    /// in the same order, sixteen lanes at a time (the same bits).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize(
        x: &[f32],
        unsigned: bool,
        codes: &mut [u8],
        scale: &mut [f32],
        sum: &mut [f32],
    ) {
        let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
        let offset = _mm512_set1_epi32(if unsigned { 128 } else { 0 });
        for (b, block) in x.chunks_exact(BLOCK).enumerate() {
            let v0 = _mm512_loadu_ps(block.as_ptr());
            let v1 = _mm512_loadu_ps(block.as_ptr().add(16));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            let e = amax / 127.0;
            let inv = _mm512_set1_ps(if e > 0.0 { 1.0 / e } else { 0.0 });
            // Clamped, rounded to the nearest (ties to even) and converted.
            macro_rules! code {
                ($v:expr) => {
                    _mm512_cvtps_epi32(_mm512_roundscale_ps::<
                        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                    >(_mm512_min_ps(
                        _mm512_max_ps(_mm512_mul_ps($v, inv), lo),
                        hi,
                    )))
                };
            }
            let (p0, p1) = (code!(v0), code!(v1));
            let total = _mm512_reduce_add_epi32(_mm512_add_epi32(p0, p1));
            let out = codes.as_mut_ptr().add(b * BLOCK);
            _mm_storeu_si128(
                out as *mut __m128i,
                _mm512_cvtepi32_epi8(_mm512_add_epi32(p0, offset)),
            );
            _mm_storeu_si128(
                out.add(16) as *mut __m128i,
                _mm512_cvtepi32_epi8(_mm512_add_epi32(p1, offset)),
            );
            scale[b] = e;
            sum[b] = e * total as f32;
        }
    }

    /// `R` rows times one group of int4 features; see the module
    /// documentation of `qmatmul` for the layout and the order of sums.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn int4<const R: usize>(
        codes: &[u8],
        scale: &[f16],
        min: &[f16],
        x: &[u8],
        e: &[f32],
        s: &[f32],
        nb: usize,
        out: &mut [f32],
    ) {
        let k = nb * BLOCK;
        let low = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..nb {
            let c = codes.as_ptr().add(b * INT4_BYTES);
            super::ask_ahead(
                codes.as_ptr(),
                INT4_BYTES,
                nb,
                b,
                [(scale.as_ptr().cast(), 2), (min.as_ptr().cast(), 2)],
            );
            let mut w = [_mm512_setzero_si512(); 8];
            for t in 0..4 {
                let v = _mm512_loadu_si512(c.add(t * 64) as *const __m512i);
                w[t] = _mm512_and_si512(v, low);
                w[t + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
            }
            let d = f16x16(scale.as_ptr().add(b * GROUP));
            let m = f16x16(min.as_ptr().add(b * GROUP));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xr = x.as_ptr().add(r * k + b * BLOCK);
                let mut dot = _mm512_setzero_si512();
                for (t, wt) in w.iter().enumerate() {
                    dot = _mm512_dpbusd_epi32(dot, *wt, four(xr, 4 * t));
                }
                let de = _mm512_mul_ps(d, _mm512_set1_ps(*e.get_unchecked(r * nb + b)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), de, *acc);
                *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(*s.get_unchecked(r * nb + b)), *acc);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a);
        }
    }

    /// `R` rows times one group of int8 features (activation codes `p +
    /// 128`, corrected by the stored bias).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn int8<const R: usize>(
        codes: &[i8],
        scale: &[f16],
        bias: &[i32],
        x: &[u8],
        e: &[f32],
        nb: usize,
        out: &mut [f32],
    ) {
        let k = nb * BLOCK;
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..nb {
            let c = codes.as_ptr().add(b * INT8_BYTES);
            super::ask_ahead(
                codes.as_ptr().cast(),
                INT8_BYTES,
                nb,
                b,
                [(scale.as_ptr().cast(), 2), (bias.as_ptr().cast(), 4)],
            );
            let mut w = [_mm512_setzero_si512(); 8];
            for (t, wt) in w.iter_mut().enumerate() {
                *wt = _mm512_loadu_si512(c.add(t * 64) as *const __m512i);
            }
            let d = f16x16(scale.as_ptr().add(b * GROUP));
            let bias = _mm512_loadu_si512(bias.as_ptr().add(b * GROUP) as *const __m512i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xr = x.as_ptr().add(r * k + b * BLOCK);
                let mut dot = bias;
                for (t, wt) in w.iter().enumerate() {
                    dot = _mm512_dpbusd_epi32(dot, four(xr, 4 * t), *wt);
                }
                let de = _mm512_mul_ps(d, _mm512_set1_ps(*e.get_unchecked(r * nb + b)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), de, *acc);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a);
        }
    }
}

/// The AMX kernel. A tile instruction multiplies up to sixteen rows of one
/// block's 32 activation codes by the block's codes of sixteen features
/// (laid out as the VNNI kernel reads them: row `t` of the weight tile is
/// vector `t`) into exact int32 sums; AVX-512 then scales and adds each
/// block's sums in the VNNI kernel's order, so both give the same bits.
/// Two sets of tiles alternate, so that one block's tile product runs while
/// the previous block's sums are scaled.
#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{BLOCK, GROUP, INT4_BYTES, INT8_BYTES};
    use half::f16;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// The tile configuration `ldtilecfg` reads (palette 1).
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// Configures this thread's tiles for `height` activation rows:
    /// tmm0, tmm1 hold `height × 16` int32 sums, tmm2, tmm3 `height × 32`
    /// activation codes, tmm4, tmm5 a block's `8 × 64` weight codes.
    ///
    /// # Safety
    /// The CPU and the OS must run AMX; `1 ≤ height ≤ 16`.
    pub(super) unsafe fn configure(height: usize) {
        let mut c = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..2 {
            (c.rows[t], c.colsb[t]) = (height as u8, 64);
            (c.rows[2 + t], c.colsb[2 + t]) = (height as u8, BLOCK as u16);
            (c.rows[4 + t], c.colsb[4 + t]) = (8, 64);
        }
        asm!("ldtilecfg [{}]", in(reg) &c, options(nostack, readonly, preserves_flags));
    }

    /// Returns the tiles to their initial state (no configuration).
    ///
    /// # Safety
    /// The CPU and the OS must run AMX.
    pub(super) unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }

    /// A group's int4 codes (low nibbles of vector `t` are row `t`, high
    /// nibbles row `t + 4`) as one byte per code, block after block.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn unpack(codes: &[u8], out: &mut Vec<u8>) {
        let n = codes.len() / INT4_BYTES * INT8_BYTES;
        if out.len() < n {
            out.resize(n, 0);
        }
        let low = _mm512_set1_epi8(0x0f);
        for (b, c) in codes.chunks_exact(INT4_BYTES).enumerate() {
            let dst = out.as_mut_ptr().add(b * INT8_BYTES);
            for t in 0..4 {
                let v = _mm512_loadu_si512(c.as_ptr().add(t * 64) as *const __m512i);
                _mm512_storeu_si512(dst.add(t * 64) as *mut __m512i, _mm512_and_si512(v, low));
                let high = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                _mm512_storeu_si512(dst.add((t + 4) * 64) as *mut __m512i, high);
            }
        }
    }

    /// One tile of rows times one group: see [`tile`].
    pub(super) struct Args {
        /// The group's codes as bytes, `nb` blocks of `INT8_BYTES`.
        pub w: *const i8,
        /// The group's codes as stored (`block_bytes` per block): where
        /// the next group's are asked for ([`super::ask_ahead`]).
        pub stored: *const u8,
        pub block_bytes: usize,
        /// The group's scales, offsets (int4) or biases (int8) per block.
        pub scale: *const f16,
        pub min: *const f16,
        pub bias: *const i32,
        /// The tile's first activation row (`kp` codes per row) and its
        /// scales and sums per block (`nb` per row).
        pub x: *const u8,
        pub kp: usize,
        pub e: *const f32,
        pub s: *const f32,
        pub nb: usize,
        /// `R × 16` outputs.
        pub out: *mut f32,
    }

    /// Block `b`'s tile product into tmm0 (`C = 0`) or tmm1 (`C = 1`):
    /// signed activation codes for int4 weights, `p + 128` for int8.
    #[inline(always)]
    unsafe fn product<const C: usize, const INT8: bool>(a: &Args, b: usize) {
        let (x, w) = (a.x.add(b * BLOCK), a.w.add(b * INT8_BYTES));
        let (kp, row) = (a.kp, 64usize);
        // Sums in tmm`$c`, activations in tmm`$c + 2`, weights in tmm`$c + 4`.
        macro_rules! product {
            ($c:literal, $a:literal, $w:literal, $op:literal) => {
                asm!(
                    concat!("tilezero tmm", $c),
                    concat!("tileloadd tmm", $a, ", [{x} + {kp}*1]"),
                    concat!("tileloadd tmm", $w, ", [{w} + {row}*1]"),
                    concat!($op, " tmm", $c, ", tmm", $a, ", tmm", $w),
                    x = in(reg) x, kp = in(reg) kp, w = in(reg) w, row = in(reg) row,
                    options(nostack, readonly, preserves_flags)
                )
            };
        }
        match (C, INT8) {
            (0, false) => product!("0", "2", "4", "tdpbssd"),
            (0, true) => product!("0", "2", "4", "tdpbusd"),
            (_, false) => product!("1", "3", "5", "tdpbssd"),
            (_, true) => product!("1", "3", "5", "tdpbusd"),
        }
    }

    /// Stores tmm0 (`C = 0`) or tmm1 into `sums` (`16 × 16` int32).
    #[inline(always)]
    unsafe fn store<const C: usize>(sums: &mut [i32; 256]) {
        let (p, row) = (sums.as_mut_ptr(), 64usize);
        if C == 0 {
            asm!("tilestored [{p} + {row}*1], tmm0", p = in(reg) p, row = in(reg) row,
                options(nostack, preserves_flags));
        } else {
            asm!("tilestored [{p} + {row}*1], tmm1", p = in(reg) p, row = in(reg) row,
                options(nostack, preserves_flags));
        }
    }

    /// Adds block `b`'s scaled sums to the accumulators, in the order of
    /// the VNNI kernel.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn scale_in<const R: usize, const INT8: bool>(
        a: &Args,
        b: usize,
        sums: &[i32; 256],
        acc: &mut [__m512; R],
    ) {
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(a.scale.add(b * GROUP) as *const __m256i));
        if INT8 {
            let bias = _mm512_loadu_si512(a.bias.add(b * GROUP) as *const __m512i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let dot = _mm512_loadu_si512(sums.as_ptr().add(r * GROUP) as *const __m512i);
                let dot = _mm512_add_epi32(dot, bias);
                let de = _mm512_mul_ps(d, _mm512_set1_ps(*a.e.add(r * a.nb + b)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), de, *acc);
            }
        } else {
            let m = _mm512_cvtph_ps(_mm256_loadu_si256(a.min.add(b * GROUP) as *const __m256i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let dot = _mm512_loadu_si512(sums.as_ptr().add(r * GROUP) as *const __m512i);
                let de = _mm512_mul_ps(d, _mm512_set1_ps(*a.e.add(r * a.nb + b)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), de, *acc);
                *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(*a.s.add(r * a.nb + b)), *acc);
            }
        }
    }

    /// `R` rows times one group, every block, into `a.out`.
    ///
    /// # Safety
    /// The tiles are configured for `R` rows ([`configure`]) and every
    /// pointer of `a` holds what it documents.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const R: usize, const INT8: bool>(a: &Args) {
        let mut acc = [_mm512_setzero_ps(); R];
        let (mut even, mut odd) = ([0i32; 256], [0i32; 256]);
        let nb = a.nb;
        let mut b = 0;
        let ahead = |b: usize| {
            let values = match INT8 {
                true => (a.bias.cast(), 4),
                false => (a.min.cast(), 2),
            };
            super::ask_ahead(
                a.stored,
                a.block_bytes,
                nb,
                b,
                [(a.scale.cast(), 2), values],
            );
        };
        while b < nb {
            ahead(b);
            if b + 1 < nb {
                ahead(b + 1);
            }
            product::<0, INT8>(a, b);
            if b > 0 {
                store::<1>(&mut odd);
                scale_in::<R, INT8>(a, b - 1, &odd, &mut acc);
            }
            if b + 1 < nb {
                product::<1, INT8>(a, b + 1);
            }
            store::<0>(&mut even);
            scale_in::<R, INT8>(a, b, &even, &mut acc);
            b += 2;
        }
        if nb.is_multiple_of(2) {
            store::<1>(&mut odd);
            scale_in::<R, INT8>(a, nb - 1, &odd, &mut acc);
        }
        for (r, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(a.out.add(r * GROUP), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency for the tests).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    fn f16r(v: f32) -> f32 {
        f16::from_f32(v).to_f32()
    }

    /// Q4_1-style weights: d·q + m with f16 d and m.
    fn q4_1_like(rng: &mut Lcg, n: usize, k: usize) -> Vec<f32> {
        let mut w = Vec::with_capacity(n * k);
        for blk in 0..n * k / BLOCK {
            let d = f16r(0.01 + 0.05 * rng.next().abs());
            let m = f16r(-8.0 * d + 0.01 * rng.next());
            // Most blocks span all codes; some only part of them.
            let top = if blk % 5 == 0 { 11.0 } else { 15.0 };
            for i in 0..BLOCK {
                let q = match i {
                    3 => 0.0,
                    17 => top,
                    _ => ((rng.next() + 1.0) * top / 2.0).round(),
                };
                w.push(d * q + m);
            }
        }
        w
    }

    /// What the kernels compute, from the documented formula in f64: the
    /// dequantized weights times the quantized activations.
    fn reference(m: &QuantMatrix, x: &[f32], rows: usize) -> Vec<f64> {
        let (n, k) = (m.n(), m.k());
        let w = m.dequantize();
        let mut xq = vec![0f64; rows * k];
        // Blocks of 32 inputs within each row (the last one may be short:
        // the kernels fill it with zeros).
        let blocks = x.chunks_exact(k).flat_map(|row| row.chunks(BLOCK));
        let mut at = 0;
        for block in blocks {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let e = amax / 127.0;
            for &v in block {
                let p = if e > 0.0 {
                    (v * (1.0 / e)).round_ties_even()
                } else {
                    0.0
                };
                xq[at] = p as f64 * e as f64;
                at += 1;
            }
        }
        let mut out = vec![0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                out[r * n + j] = (0..k).map(|i| w[j * k + i] as f64 * xq[r * k + i]).sum();
            }
        }
        out
    }

    fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0f64, |a, (&g, &w)| a.max((g as f64 - w).abs()))
            / scale
    }

    #[test]
    fn gguf_style_blocks_are_kept_exactly() {
        let mut rng = Lcg(1);
        let (n, k) = (48, 96);
        let w = q4_1_like(&mut rng, n, k);
        let m = QuantMatrix::int4(&w, n, k).unwrap();
        assert!(m.exact());
        assert_eq!(m.dequantize(), w);
        // Q4_0: d·(q − 8).
        let q4_0: Vec<f32> = (0..n * k)
            .map(|i| {
                let d = f16r(0.02 + 0.001 * (i / BLOCK % 7) as f32);
                d * ((i * 7 % 16) as i32 - 8) as f32
            })
            .collect();
        let m = QuantMatrix::int4(&q4_0, n, k).unwrap();
        assert!(m.exact());
        assert_eq!(m.dequantize(), q4_0);
        // Q8_0: d·q with q in −127..=127.
        let q8: Vec<f32> = (0..n * k)
            .map(|i| {
                let d = f16r(0.003 + 0.0001 * (i / BLOCK % 5) as f32);
                let q = if i % BLOCK == 5 {
                    -127
                } else {
                    (i * 37 % 255) as i32 - 127
                };
                d * q as f32
            })
            .collect();
        let m = QuantMatrix::int8(&q8, n, k).unwrap();
        assert!(m.exact());
        assert_eq!(m.dequantize(), q8);
    }

    #[test]
    fn other_weights_are_rounded_to_the_nearest_codes() {
        let mut rng = Lcg(2);
        let (n, k) = (20, 64);
        let w = rng.vec(n * k);
        for (m, step) in [
            (QuantMatrix::int4(&w, n, k).unwrap(), 2.0 / 15.0),
            (QuantMatrix::int8(&w, n, k).unwrap(), 1.0 / 127.0),
        ] {
            assert!(!m.exact());
            let err = m
                .dequantize()
                .iter()
                .zip(&w)
                .fold(0f32, |a, (d, w)| a.max((d - w).abs()));
            assert!(err > 0.0 && err <= step * 0.51, "{} bits: {err}", m.bits());
        }
        let flat = [vec![0.25f32; BLOCK], vec![0.0; BLOCK]].concat();
        let m = QuantMatrix::int4(&flat, 2, BLOCK).unwrap();
        assert!(m.exact());
        assert_eq!(m.dequantize(), flat);
        let m = QuantMatrix::int8(&flat[BLOCK..], 1, BLOCK).unwrap();
        assert_eq!(m.dequantize(), vec![0.0; BLOCK]);
        let e = QuantMatrix::int4(&[1e6f32; BLOCK], 1, BLOCK).unwrap_err();
        assert!(e.to_string().contains("f16's range"), "{e}");
        for v in [0.5f32, 1.5, -2.5, 126.49, -126.51, 3.0] {
            assert_eq!(round_even(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn matmul_is_the_documented_sum_for_any_rows_and_threads() {
        let mut rng = Lcg(3);
        // 264 features: sixteen full groups of 16 and a part; large enough
        // that even one row is split over the threads (`MIN_PARALLEL`).
        let (n, k) = (264, 4096);
        assert!(n * k >= MIN_PARALLEL);
        for m in [
            QuantMatrix::int4(&q4_1_like(&mut rng, n, k), n, k).unwrap(),
            QuantMatrix::int8(&rng.vec(n * k), n, k).unwrap(),
        ] {
            let rows = 19;
            let mut x = rng.vec(rows * k);
            x[5] = 40.0; // an outlier in one block
            x[k..k + BLOCK].fill(0.0); // an all-zero block
            let want = reference(&m, &x, rows);
            let mut first: Option<Vec<f32>> = None;
            for threads in [1, 2, 3] {
                let mut out = Vec::new();
                m.matmul_threads(&x, rows, &mut out, threads).unwrap();
                let err = max_rel_err(&out, &want);
                assert!(err < 1e-5, "{} bits, {threads} threads: {err}", m.bits());
                match &first {
                    None => first = Some(out),
                    Some(f) => assert_eq!(f, &out, "{threads} threads"),
                }
            }
            // A row's result does not depend on the rows beside it.
            let all = first.unwrap_or_default();
            for r in [0, 7, 8, 18] {
                let mut one = Vec::new();
                m.matmul_threads(&x[r * k..(r + 1) * k], 1, &mut one, 2)
                    .unwrap();
                assert_eq!(one, all[r * n..(r + 1) * n], "row {r}");
            }
        }
    }

    #[test]
    fn inputs_off_the_blocks_are_padded_with_zeros() {
        let mut rng = Lcg(5);
        let (n, k) = (18, 44);
        let w = rng.vec(n * k);
        for m in [
            QuantMatrix::int4(&w, n, k).unwrap(),
            QuantMatrix::int8(&w, n, k).unwrap(),
        ] {
            assert_eq!(m.dequantize().len(), n * k);
            let x = rng.vec(3 * k);
            let mut out = Vec::new();
            m.matmul(&x, 3, &mut out).unwrap();
            let want = reference(&m, &x, 3);
            let err = max_rel_err(&out, &want);
            assert!(err < 1e-5, "{} bits: {err}", m.bits());
        }
    }

    #[test]
    fn refined_activations_are_nearly_exact() {
        let mut rng = Lcg(6);
        let (n, k) = (40, 100);
        let m = QuantMatrix::int8(&rng.vec(n * k), n, k).unwrap();
        let x = rng.vec(3 * k);
        let w = m.dequantize();
        let exact: Vec<f64> = (0..3 * n)
            .map(|o| {
                let (r, j) = (o / n, o % n);
                (0..k)
                    .map(|i| w[j * k + i] as f64 * x[r * k + i] as f64)
                    .sum()
            })
            .collect();
        let (mut once, mut refined) = (Vec::new(), Vec::new());
        m.matmul(&x, 3, &mut once).unwrap();
        m.matmul_refined(&x, 3, &mut refined).unwrap();
        // The same into a slice; a slice of the wrong size is an error.
        let mut into = vec![0f32; 3 * n];
        m.matmul_refined_into(&x, 3, &mut into).unwrap();
        assert_eq!(into, refined);
        m.matmul_into(&x, 3, &mut into).unwrap();
        assert_eq!(into, once);
        let e = m
            .matmul_into(&x, 3, &mut into[1..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("119 places for outputs for 3 rows"), "{e}");
        let (e1, e2) = (max_rel_err(&once, &exact), max_rel_err(&refined, &exact));
        assert!(
            e2 < 1e-4 && e2 * 20.0 < e1,
            "one pass {e1:.2e}, refined {e2:.2e}"
        );
    }

    #[test]
    fn every_kernel_computes_the_same_bits() {
        let mut kernels = vec![Kernel::Portable];
        if simd() {
            kernels.push(Kernel::Vnni);
        }
        if amx_ready() {
            kernels.push(Kernel::Amx);
        }
        eprintln!("kernels on this machine: {kernels:?}");
        let mut rng = Lcg(4);
        // An odd and an even count of blocks (the AMX kernel alternates
        // two sets of tiles), a part group, and rows that fill one, two
        // and three AMX tiles partly or wholly.
        for (n, k) in [(36, 96), (40, 128)] {
            for m in [
                QuantMatrix::int4(&q4_1_like(&mut rng, n, k), n, k).unwrap(),
                QuantMatrix::int8(&rng.vec(n * k), n, k).unwrap(),
            ] {
                for rows in [1, 3, 4, 8, 11, 16, 17, 33] {
                    let mut x = rng.vec(rows * k);
                    x[BLOCK..2 * BLOCK].fill(0.0); // an all-zero block
                    x[2 * BLOCK + 3] = -40.0; // an outlier
                    x[2 * BLOCK + 4] = 40.0 * 2.5 / 127.0; // about 2.5 codes: next to a tie
                    let mut plain = Vec::new();
                    m.matmul_on(&x, rows, &mut plain, 1, Kernel::Portable)
                        .unwrap();
                    for &kernel in &kernels[1..] {
                        let mut fast = Vec::new();
                        m.matmul_on(&x, rows, &mut fast, 2, kernel).unwrap();
                        assert_eq!(fast, plain, "{kernel:?}, {} bits, {rows} rows", m.bits());
                    }
                    // Pairs of rows added as they are stored (the refined
                    // output layer): the sums of the rows' outputs.
                    if rows % 2 == 0 {
                        let want: Vec<f32> = plain
                            .chunks_exact(2 * n)
                            .flat_map(|two| {
                                let (f, s) = two.split_at(n);
                                f.iter().zip(s).map(|(f, s)| f + s).collect::<Vec<_>>()
                            })
                            .collect();
                        for &kernel in &kernels {
                            let mut got = Vec::new();
                            // SAFETY: `x` holds `rows` rows, an even count;
                            // `into_vec` gives room for `rows / 2` rows.
                            into_vec(&mut got, rows / 2 * n, |dst| unsafe {
                                m.matmul_to(&x, rows, dst, 2, kernel, true)
                            })
                            .unwrap();
                            assert_eq!(got, want, "pairs, {kernel:?}, {rows} rows");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let e = QuantMatrix::int4(&[], 1, 0).unwrap_err().to_string();
        assert!(e.contains("k > 0"), "{e}");
        let e = QuantMatrix::int8(&[0.0; 64], 3, 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 values for [3, 32]"), "{e}");
        let m = QuantMatrix::int8(&[0.0; 64], 2, 32).unwrap();
        let e = m.matmul(&[0.0; 33], 1, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("33 activations"), "{e}");
    }
}
