//! GGML tensor types and their dequantisation to `f32`.
//!
//! Block layouts follow ggml's `ggml-common.h` (all little-endian):
//!
//! | type | values/block | bytes/block | layout |
//! |------|-------------:|------------:|--------|
//! | Q4_0 | 32 | 18 | `d: f16, qs: [u8; 16]` |
//! | Q4_1 | 32 | 20 | `d: f16, m: f16, qs: [u8; 16]` |
//! | Q5_0 | 32 | 22 | `d: f16, qh: [u8; 4], qs: [u8; 16]` |
//! | Q5_1 | 32 | 24 | `d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]` |
//! | Q8_0 | 32 | 34 | `d: f16, qs: [i8; 32]` |
//! | Q8_1 | 32 | 36 | `d: f16, s: f16, qs: [i8; 32]` |
//! | Q2_K | 256 | 84 | `scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16` |
//! | Q3_K | 256 | 110 | `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16` |
//! | Q4_K | 256 | 144 | `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]` |
//! | Q5_K | 256 | 176 | `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]` |
//! | Q6_K | 256 | 210 | `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16` |
//! | Q8_K | 256 | 292 | `d: f32, qs: [i8; 256], bsums: [i16; 16]` |
//!
//! Length: about 490 lines of code, one dequantiser per GGUF block format
//! (each a few dozen lines, documented against the format table above); the
//! rest are tests.

use half::{bf16, f16};

/// The GGML tensor types this crate knows by id. Types it knows only by name
/// (the i-quants, ternary types, ...) parse as [`GgmlType::Other`] and fail
/// with a clear error when dequantised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// A type id this crate cannot dequantise.
    Other(u32),
}

impl GgmlType {
    /// Maps a GGUF type id to a type.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
            GgmlType::Other(id) => id,
        }
    }

    /// The name ggml uses for the type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::BF16 => "BF16",
            GgmlType::Other(id) => match id {
                4 => "Q4_2 (removed)",
                5 => "Q4_3 (removed)",
                16 => "IQ2_XXS",
                17 => "IQ2_XS",
                18 => "IQ3_XXS",
                19 => "IQ1_S",
                20 => "IQ4_NL",
                21 => "IQ3_S",
                22 => "IQ2_S",
                23 => "IQ4_XS",
                29 => "IQ1_M",
                31..=33 => "Q4_0_4_4/Q4_0_4_8/Q4_0_8_8 (removed)",
                34 => "TQ1_0",
                35 => "TQ2_0",
                36..=38 => "IQ4_NL_4_4/IQ4_NL_4_8/IQ4_NL_8_8 (removed)",
                39 => "MXFP4",
                _ => "unknown",
            },
        }
    }

    /// `(values per block, bytes per block)`, or `None` for types this crate
    /// cannot size.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 => (1, 2),
            GgmlType::BF16 => (1, 2),
            GgmlType::F64 => (1, 8),
            GgmlType::I8 => (1, 1),
            GgmlType::I16 => (1, 2),
            GgmlType::I32 => (1, 4),
            GgmlType::I64 => (1, 8),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Q8K => (256, 292),
            GgmlType::Other(_) => return None,
        })
    }

    /// Bytes needed for `n` values, or an error message when `n` is not a
    /// whole number of blocks or the size overflows.
    pub fn byte_size(self, n: u64) -> Result<u64, String> {
        let (block, bytes) = self.block_layout().ok_or_else(|| {
            format!(
                "tensor type {} (id {}) is not supported",
                self.name(),
                self.id()
            )
        })?;
        let block = block as u64;
        if !n.is_multiple_of(block) {
            return Err(format!(
                "{n} values is not a whole number of {}-value {} blocks",
                block,
                self.name()
            ));
        }
        (n / block)
            .checked_mul(bytes as u64)
            .ok_or_else(|| "tensor byte size overflows".to_string())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises `n` values of type `ty` stored in `data` into `f32`.
///
/// `data` must hold exactly [`GgmlType::byte_size`] bytes for `n`; anything
/// else is an error, never a panic.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let need = ty.byte_size(n as u64)?;
    if data.len() as u64 != need {
        return Err(format!(
            "{} bytes of {} data for {n} values, expected {need}",
            data.len(),
            ty.name()
        ));
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(
            data.chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::F64 => out.extend(data.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a) as f32
        })),
        GgmlType::I8 => out.extend(data.iter().map(|&b| b as i8 as f32)),
        GgmlType::I16 => out.extend(
            data.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32),
        ),
        GgmlType::I32 => out.extend(
            data.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
        GgmlType::I64 => out.extend(data.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            i64::from_le_bytes(a) as f32
        })),
        GgmlType::Q4_0 => data.chunks_exact(18).for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => data.chunks_exact(20).for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q5_0 => data.chunks_exact(22).for_each(|b| q5_0(b, &mut out)),
        GgmlType::Q5_1 => data.chunks_exact(24).for_each(|b| q5_1(b, &mut out)),
        GgmlType::Q8_0 => data.chunks_exact(34).for_each(|b| {
            let d = f16_at(b, 0);
            out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
        }),
        GgmlType::Q8_1 => data.chunks_exact(36).for_each(|b| {
            let d = f16_at(b, 0);
            out.extend(b[4..36].iter().map(|&q| d * (q as i8) as f32));
        }),
        GgmlType::Q2K => data.chunks_exact(84).for_each(|b| q2_k(b, &mut out)),
        GgmlType::Q3K => data.chunks_exact(110).for_each(|b| q3_k(b, &mut out)),
        GgmlType::Q4K => data.chunks_exact(144).for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q5K => data.chunks_exact(176).for_each(|b| q5_k(b, &mut out)),
        GgmlType::Q6K => data.chunks_exact(210).for_each(|b| q6_k(b, &mut out)),
        GgmlType::Q8K => data.chunks_exact(292).for_each(|b| {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            out.extend(b[4..260].iter().map(|&q| d * (q as i8) as f32));
        }),
        GgmlType::Other(_) => unreachable_type(ty)?,
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

fn unreachable_type(ty: GgmlType) -> Result<(), String> {
    Err(format!("tensor type {} is not supported", ty.name()))
}

/// Q4_0: value = d * (nibble - 8); low nibbles hold values 0..16, high nibbles 16..32.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * ((q & 0x0f) as i32 - 8) as f32));
    out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
}

/// Q4_1: value = d * nibble + m.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| d * (q & 0x0f) as f32 + m));
    out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
}

/// Q5_0: value = d * ((nibble | high_bit << 4) - 16); bit j of `qh` is the
/// fifth bit of value j.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    out.extend(qs.iter().enumerate().map(|(j, &q)| {
        let h = ((qh >> j) & 1) << 4;
        d * (((q & 0x0f) as u32 | h) as i32 - 16) as f32
    }));
    out.extend(qs.iter().enumerate().map(|(j, &q)| {
        let h = ((qh >> (j + 16)) & 1) << 4;
        d * (((q >> 4) as u32 | h) as i32 - 16) as f32
    }));
}

/// Q5_1: value = d * (nibble | high_bit << 4) + m.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    out.extend(qs.iter().enumerate().map(|(j, &q)| {
        let h = ((qh >> j) & 1) << 4;
        d * ((q & 0x0f) as u32 | h) as f32 + m
    }));
    out.extend(qs.iter().enumerate().map(|(j, &q)| {
        let h = ((qh >> (j + 16)) & 1) << 4;
        d * ((q >> 4) as u32 | h) as f32 + m
    }));
}

/// Q2_K: 16 sub-blocks of 16; each scale byte holds a 4-bit scale (low) and
/// a 4-bit min (high); values are 2-bit, four to a byte, taken by shifting
/// through 32-byte groups.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0f) as f32;
                let ml = dmin * (sc >> 4) as f32;
                out.extend(
                    q[part * 16..part * 16 + 16]
                        .iter()
                        .map(|&x| dl * ((x >> shift) & 3) as f32 - ml),
                );
            }
        }
    }
}

/// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (offset 32) packed into
/// 12 bytes; values are 2 low bits from `qs` plus a high bit from `hmask`
/// (set: no offset, clear: minus 4).
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    let d = f16_at(b, 108);
    // Unpack the 16 six-bit scales: low 4 bits come from bytes 0..8 (low
    // nibbles for scales 0..8, high nibbles for 8..16), high 2 bits from
    // bytes 8..12 (two bits per scale).
    let mut scales = [0i32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0x0f } else { sc[i - 8] >> 4 };
        let high = (sc[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    let mut is = 0;
    let mut m: u8 = 1;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let dl = d * scales[is] as f32;
                is += 1;
                let r = part * 16..part * 16 + 16;
                out.extend(q[r.clone()].iter().zip(&hmask[r]).map(|(&x, &h)| {
                    let v = ((x >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                    dl * v as f32
                }));
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: 8 sub-blocks of 32, each with a 6-bit scale and min; every 32 bytes
/// of `qs` hold two sub-blocks (low nibbles first, then high nibbles).
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (g, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * g, scales);
        let (s2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
        out.extend(q.iter().map(|&x| d1 * (x & 0x0f) as f32 - m1));
        out.extend(q.iter().map(|&x| d2 * (x >> 4) as f32 - m2));
    }
}

/// Q5_K: as Q4_K, with a fifth bit per value from `qh` (bit 2g for the low
/// sub-block of group g, bit 2g+1 for the high one).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (g, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * g, scales);
        let (s2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
        let u1 = 1u8 << (2 * g);
        let u2 = 1u8 << (2 * g + 1);
        out.extend(q.iter().zip(qh).map(|(&x, &h)| {
            let v = (x & 0x0f) + if h & u1 != 0 { 16 } else { 0 };
            d1 * v as f32 - m1
        }));
        out.extend(q.iter().zip(qh).map(|(&x, &h)| {
            let v = (x >> 4) + if h & u2 != 0 { 16 } else { 0 };
            d2 * v as f32 - m2
        }));
    }
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; each value is 4 low
/// bits from `ql` and 2 high bits from `qh`, minus 32. Each half block of 128
/// uses 64 bytes of `ql`, 32 of `qh` and 8 scales.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
        out.extend_from_slice(&y);
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    //! Each dequantiser is checked against blocks built by an independent
    //! encoder written from the block layout, with scales that are exact in
    //! f16 so the expected values are exact.
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as u32
        }
    }

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn check(ty: GgmlType, block: &[u8], expected: &[f32]) {
        let got = dequantize(ty, block, expected.len()).expect("dequantize");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert_eq!(g, e, "{ty} value {i}");
        }
    }

    #[test]
    fn plain_types() {
        let vals = [1.5f32, -2.25, 0.0, 65504.0];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        check(GgmlType::F32, &f32b, &vals);
        let f16b: Vec<u8> = vals.iter().flat_map(|&v| h(v)).collect();
        check(GgmlType::F16, &f16b, &vals);
        let bf: Vec<u8> = vals
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        let exp: Vec<f32> = vals.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        check(GgmlType::BF16, &bf, &exp);
        // bf16 keeps the top 16 bits of an f32
        let one_third = 1.0f32 / 3.0;
        let b = ((one_third.to_bits() >> 16) as u16).to_le_bytes();
        let got = dequantize(GgmlType::BF16, &b, 1).unwrap()[0];
        assert_eq!(got.to_bits(), one_third.to_bits() & 0xffff_0000);
        check(GgmlType::I8, &[0xff, 7], &[-1.0, 7.0]);
    }

    #[test]
    fn q8_0() {
        let mut r = Lcg(1);
        let q: Vec<i8> = (0..32).map(|_| r.next(256) as u8 as i8).collect();
        let mut b = h(0.5).to_vec();
        b.extend(q.iter().map(|&x| x as u8));
        let exp: Vec<f32> = q.iter().map(|&x| 0.5 * x as f32).collect();
        check(GgmlType::Q8_0, &b, &exp);
    }

    #[test]
    fn q4_0_and_q4_1() {
        let mut r = Lcg(2);
        let q: Vec<u8> = (0..32).map(|_| r.next(16) as u8).collect();
        // value j < 16 in the low nibble of byte j, value j >= 16 in the high nibble of byte j - 16
        let qs: Vec<u8> = (0..16).map(|j| q[j] | (q[j + 16] << 4)).collect();
        let mut b = h(0.25).to_vec();
        b.extend(&qs);
        let exp: Vec<f32> = q.iter().map(|&x| 0.25 * (x as f32 - 8.0)).collect();
        check(GgmlType::Q4_0, &b, &exp);

        let mut b = h(2.0).to_vec();
        b.extend(h(-3.5));
        b.extend(&qs);
        let exp: Vec<f32> = q.iter().map(|&x| 2.0 * x as f32 - 3.5).collect();
        check(GgmlType::Q4_1, &b, &exp);
    }

    #[test]
    fn q5_0_and_q5_1() {
        let mut r = Lcg(3);
        let q: Vec<u8> = (0..32).map(|_| r.next(32) as u8).collect();
        let qs: Vec<u8> = (0..16)
            .map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4))
            .collect();
        let mut qh = 0u32;
        for (j, &x) in q.iter().enumerate() {
            qh |= ((x >> 4) as u32 & 1) << j;
        }
        let mut b = h(0.5).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let exp: Vec<f32> = q.iter().map(|&x| 0.5 * (x as f32 - 16.0)).collect();
        check(GgmlType::Q5_0, &b, &exp);

        let mut b = h(0.5).to_vec();
        b.extend(h(1.0));
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let exp: Vec<f32> = q.iter().map(|&x| 0.5 * x as f32 + 1.0).collect();
        check(GgmlType::Q5_1, &b, &exp);
    }

    /// Packs eight 6-bit scales and mins as Q4_K/Q5_K do.
    fn pack_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
        let mut o = [0u8; 12];
        for j in 0..4 {
            o[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            o[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
            o[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
        }
        o
    }

    #[test]
    fn q4_k_and_q5_k() {
        let mut r = Lcg(4);
        let mut sc = [0u8; 8];
        let mut m = [0u8; 8];
        for i in 0..8 {
            sc[i] = r.next(64) as u8;
            m[i] = r.next(64) as u8;
        }
        let q: Vec<u8> = (0..256).map(|_| r.next(32) as u8).collect();
        let (d, dmin) = (0.125f32, 0.0625f32);
        // element j: group g = j / 64 holds sub-blocks 2g (low nibbles) and
        // 2g + 1 (high nibbles) of bytes 32g..32g+32
        let mut qs = [0u8; 128];
        let mut qh = [0u8; 32];
        for j in 0..256 {
            let (g, w) = (j / 64, j % 64);
            let l = w % 32;
            let hi = w >= 32;
            qs[32 * g + l] |= (q[j] & 15) << if hi { 4 } else { 0 };
            qh[l] |= ((q[j] >> 4) & 1) << (2 * g + hi as usize);
        }
        let scales = pack_k4(&sc, &m);
        let sub = |j: usize| (j / 64) * 2 + (j % 64 >= 32) as usize;

        let mut b = h(d).to_vec();
        b.extend(h(dmin));
        b.extend(scales);
        b.extend(qs);
        let exp: Vec<f32> = (0..256)
            .map(|j| d * sc[sub(j)] as f32 * (q[j] & 15) as f32 - dmin * m[sub(j)] as f32)
            .collect();
        check(GgmlType::Q4K, &b, &exp);

        let mut b = h(d).to_vec();
        b.extend(h(dmin));
        b.extend(scales);
        b.extend(qh);
        b.extend(qs);
        let exp: Vec<f32> = (0..256)
            .map(|j| d * sc[sub(j)] as f32 * q[j] as f32 - dmin * m[sub(j)] as f32)
            .collect();
        check(GgmlType::Q5K, &b, &exp);
    }

    #[test]
    fn q6_k() {
        let mut r = Lcg(5);
        let q: Vec<u8> = (0..256).map(|_| r.next(64) as u8).collect();
        let sc: Vec<i8> = (0..16).map(|_| r.next(256) as u8 as i8).collect();
        let d = 0.03125f32;
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        // element j: half h = j / 128, quarter s = (j % 128) / 32, l = j % 32
        for j in 0..256 {
            let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
            let byte = 64 * hh + l + if s % 2 == 1 { 32 } else { 0 };
            ql[byte] |= (q[j] & 15) << if s >= 2 { 4 } else { 0 };
            qh[32 * hh + l] |= (q[j] >> 4) << (2 * s);
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(sc.iter().map(|&x| x as u8));
        b.extend(h(d));
        let exp: Vec<f32> = (0..256)
            .map(|j| {
                let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
                let scale = sc[8 * hh + l / 16 + 2 * s] as f32;
                d * scale * (q[j] as f32 - 32.0)
            })
            .collect();
        check(GgmlType::Q6K, &b, &exp);
    }

    #[test]
    fn q3_k() {
        let mut r = Lcg(6);
        let q: Vec<u8> = (0..256).map(|_| r.next(8) as u8).collect(); // 3-bit: value = q - 4
        let sc: Vec<u8> = (0..16).map(|_| r.next(64) as u8).collect(); // 6-bit, minus 32
        let d = 0.25f32;
        let mut qs = [0u8; 64];
        let mut hmask = [0u8; 32];
        for j in 0..256 {
            let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
            qs[32 * hh + l] |= (q[j] & 3) << (2 * s);
            // the high bit set means "no offset": stored value q = low + 4 * high
            hmask[l] |= ((q[j] >> 2) & 1) << (4 * hh + s);
        }
        let mut packed = [0u8; 12];
        for (i, &s) in sc.iter().enumerate() {
            if i < 8 {
                packed[i] |= s & 15;
            } else {
                packed[i - 8] |= (s & 15) << 4;
            }
            packed[8 + i % 4] |= (s >> 4) << (2 * (i / 4));
        }
        let mut b = hmask.to_vec();
        b.extend(qs);
        b.extend(packed);
        b.extend(h(d));
        let exp: Vec<f32> = (0..256)
            .map(|j| {
                let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
                let scale = sc[8 * hh + 2 * s + (l >= 16) as usize] as f32 - 32.0;
                d * scale * (q[j] as f32 - 4.0)
            })
            .collect();
        check(GgmlType::Q3K, &b, &exp);
    }

    #[test]
    fn q2_k() {
        let mut r = Lcg(7);
        let q: Vec<u8> = (0..256).map(|_| r.next(4) as u8).collect();
        let sc: Vec<u8> = (0..16).map(|_| r.next(256) as u8).collect();
        let (d, dmin) = (0.5f32, 0.25f32);
        let mut qs = [0u8; 64];
        for j in 0..256 {
            let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
            qs[32 * hh + l] |= q[j] << (2 * s);
        }
        let mut b = sc.clone();
        b.extend(qs);
        b.extend(h(d));
        b.extend(h(dmin));
        let exp: Vec<f32> = (0..256)
            .map(|j| {
                let (hh, s, l) = (j / 128, (j % 128) / 32, j % 32);
                let x = sc[8 * hh + 2 * s + (l >= 16) as usize];
                d * (x & 15) as f32 * q[j] as f32 - dmin * (x >> 4) as f32
            })
            .collect();
        check(GgmlType::Q2K, &b, &exp);
    }

    #[test]
    fn wrong_sizes_and_unknown_types_are_errors() {
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], 31).is_err());
        assert!(dequantize(GgmlType::Q6K, &[0u8; 210], 128).is_err());
        let e = dequantize(GgmlType::from_id(16), &[0u8; 66], 256).unwrap_err();
        assert!(e.contains("IQ2_XXS"), "{e}");
        assert!(GgmlType::Q8_0.byte_size(u64::MAX / 32 * 32).is_err());
    }
}
