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

/// Negative log-likelihood of next tokens, `[batch, n]`: the logits
/// (`[batch, seq, vocab]`) at columns `from .. from + n` scoring the tokens
/// (`[batch, seq]`) one column later.
pub fn next_token_nll(logits: &Tensor, tokens: &Tensor, from: i64, n: i64) -> Result<Tensor> {
    let logp = logits
        .f_narrow(1, from, n)?
        .f_log_softmax(-1, tch::Kind::Float)?;
    let targets = tokens.f_narrow(1, from + 1, n)?.f_unsqueeze(-1)?;
    Ok(logp
        .f_gather(-1, &targets, false)?
        .f_squeeze_dim(-1)?
        .f_neg()?)
}
