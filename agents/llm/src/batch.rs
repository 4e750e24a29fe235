//! Batching token sequences.

use tch::Tensor;

use crate::error::Result;

/// Left-pads token sequences: `([batch, len] tokens, [batch, len] 0/1 mask)`.
pub fn pad_left(seqs: &[Vec<u32>], pad: u32) -> Result<(Tensor, Tensor)> {
    let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(seqs.len() * len);
    let mut mask = Vec::with_capacity(seqs.len() * len);
    for s in seqs {
        let n = len - s.len();
        flat.extend(std::iter::repeat_n(i64::from(pad), n));
        flat.extend(s.iter().map(|&t| i64::from(t)));
        mask.extend(std::iter::repeat_n(0i64, n));
        mask.extend(std::iter::repeat_n(1i64, s.len()));
    }
    let shape = [seqs.len() as i64, len as i64];
    Ok((
        Tensor::f_from_slice(&flat)?.f_view(shape)?,
        Tensor::f_from_slice(&mask)?.f_view(shape)?,
    ))
}
