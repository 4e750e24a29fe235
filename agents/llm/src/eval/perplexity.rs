//! (c) Fluency: perplexity of responses under the frozen model.

use emorl_lm::{Generation, Model};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::batch::pad_left;
use crate::error::Result;
use crate::params::invalid;

/// Perplexity of responses under the frozen model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// Response tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood per token (nats).
    pub mean_nll: f64,
    /// `exp(mean_nll)`.
    pub ppl: f64,
    /// Mean NLL of each response (NaN for one without tokens).
    pub per_text_nll: Vec<f64>,
}

/// Rows scored in one forward pass.
const SCORE_BATCH: usize = 8;

/// Scores `(prompt tokens, response tokens)` pairs with the frozen model
/// (no hooks, no gradients): each response token's NLL given the prompt and
/// the response before it. Token-weighted mean over all responses.
pub fn perplexity(model: &mut Model, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Perplexity> {
    if pairs.iter().any(|(p, _)| p.is_empty()) {
        return Err(invalid("perplexity: every prompt needs at least one token"));
    }
    let _g = tch::no_grad_guard();
    let pad = model.tokenizer().pad_id();
    let device = model.device();
    let mut per_text_nll = Vec::with_capacity(pairs.len());
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in pairs.chunks(SCORE_BATCH) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(p, r)| p.iter().chain(r).copied().collect())
            .collect();
        let (tokens, mask) = pad_left(&seqs, pad)?;
        let (tokens, mask) = (tokens.f_to_device(device)?, mask.f_to_device(device)?);
        let len = tokens.size()[1];
        let n_max = chunk.iter().map(|(_, r)| r.len()).max().unwrap_or(0) as i64;
        if n_max == 0 {
            per_text_nll.extend(std::iter::repeat_n(f64::NAN, chunk.len()));
            continue;
        }
        let logits = model.forward(&tokens, Some(&mask), None)?.logits;
        // Positions len−1−n_max .. len−2 predict the last n_max tokens.
        let nll = crate::batch::next_token_nll(&logits, &tokens, len - 1 - n_max, n_max)?;
        let nll =
            Vec::<f32>::try_from(&nll.f_to_device(Device::Cpu)?.f_contiguous()?.f_view([-1])?)?;
        for (i, (_, r)) in chunk.iter().enumerate() {
            let n = r.len();
            if n == 0 {
                per_text_nll.push(f64::NAN);
                continue;
            }
            let row = &nll[i * n_max as usize..(i + 1) * n_max as usize];
            let s: f64 = row[n_max as usize - n..]
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            total += s;
            count += n;
            per_text_nll.push(s / n as f64);
        }
    }
    if count == 0 {
        return Err(invalid("perplexity: no response tokens to score"));
    }
    let mean_nll = total / count as f64;
    Ok(Perplexity {
        tokens: count,
        mean_nll,
        ppl: mean_nll.exp(),
        per_text_nll,
    })
}

/// [`perplexity`] of generations (their prompts as context), with the stop
/// tokens that ended them left out: fluency is about the text.
pub fn generations_perplexity(model: &mut Model, gens: &[&Generation]) -> Result<Perplexity> {
    let stops = model.tokenizer().stop_ids().to_vec();
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = gens
        .iter()
        .map(|g| {
            let mut r = g.tokens.clone();
            while r.last().is_some_and(|t| stops.contains(t)) {
                r.pop();
            }
            (g.prompt_tokens.clone(), r)
        })
        .collect();
    perplexity(model, &pairs)
}
