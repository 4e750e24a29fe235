//! Options, results and sampling for text generation.
//!
//! Generation runs a batched prefill over left-padded prompts, then decodes
//! one token per step from the KV cache. Sampling uses a seeded generator
//! per prompt (seeded from `seed` and the prompt's index), so a prompt's
//! samples do not depend on the other prompts of the batch.

use tch::{Kind, Tensor};

use crate::error::{LmError, Result};
use crate::host::exp_nonpos;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token.
    Greedy,
    /// Sampling from the softmax of `logits / temperature`, restricted to the
    /// `top_k` most likely tokens (`0`: no limit) and then to the smallest
    /// set whose probability reaches `top_p` (`1.0`: no limit).
    Sample {
        temperature: f64,
        top_k: usize,
        top_p: f64,
    },
}

/// Options of [`crate::Model::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Maximum number of new tokens per prompt.
    pub max_new_tokens: usize,
    /// Greedy or sampled decoding.
    pub sampling: Sampling,
    /// Seed of the sampling generators.
    pub seed: u64,
    /// Stop a sequence when it produces EOS (or another stop token of the
    /// tokenizer, such as `<|im_end|>` for ChatML models).
    pub stop_on_eos: bool,
    /// Further token ids that stop a sequence.
    pub stop_tokens: Vec<u32>,
    /// Add BOS to prompts when the model wants it.
    pub add_special_tokens: bool,
    /// Wrap each prompt as a user message in the model's chat template (with
    /// the assistant turn opened). A model without a template this crate can
    /// render gets the plain prompt (and a warning, once).
    pub chat: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 128,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_on_eos: true,
            stop_tokens: Vec::new(),
            add_special_tokens: true,
            chat: false,
        }
    }
}

impl GenerateOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature, top_p, ..
        } = self.sampling
        {
            if !(temperature >= 0.0 && temperature.is_finite()) {
                return Err(LmError::InvalidArgument(format!(
                    "temperature must be finite and >= 0, got {temperature}"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(LmError::InvalidArgument(format!(
                    "top_p must be in (0, 1], got {top_p}"
                )));
            }
        }
        Ok(())
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced a stop token (included in `tokens`).
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// Where the time of one [`crate::Model::generate`] call went.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenerationTiming {
    /// Prompt tokens the prefill ran (each distinct prompt once when
    /// prompts are shared; padding not counted).
    pub prefill_tokens: usize,
    /// Seconds of the prefill forward pass.
    pub prefill_seconds: f64,
    /// Tokens the decode steps produced over all rows (each row's first
    /// token comes from the prefill and is not counted).
    pub decode_tokens: usize,
    /// Seconds from the end of the prefill to the last token.
    pub decode_seconds: f64,
}

impl GenerationTiming {
    /// Prefill tokens per second.
    pub fn prefill_rate(&self) -> f64 {
        self.prefill_tokens as f64 / self.prefill_seconds.max(1e-9)
    }

    /// Generated tokens per second.
    pub fn decode_rate(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_seconds.max(1e-9)
    }
}

/// The result of generating from one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The prompt's token ids (BOS and chat template included).
    pub prompt_tokens: Vec<u32>,
    /// The generated token ids, the stop token included.
    pub tokens: Vec<u32>,
    /// The generated text (special tokens removed).
    pub text: String,
    /// For each generated token, its log-probability under the model's
    /// next-token distribution (after the hooks' logits processors, before
    /// the sampling temperature and top-k/top-p).
    pub logprobs: Vec<f32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// One generated token, passed to a streaming callback as it is produced.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    /// Which prompt (index into the prompts) the token belongs to.
    pub index: usize,
    /// The token id.
    pub token: u32,
    /// The text this token adds to the output (may be empty while a
    /// multi-byte character is incomplete).
    pub text: &'a str,
    /// Its log-probability (see [`Generation::logprobs`]).
    pub logprob: f32,
}

/// A small seeded generator (SplitMix64), one per prompt.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

avx512_or_plain! {
    /// The index of the first largest logit, NaNs aside (where every logit
    /// is NaN, the last index).
    fn argmax(logits: &[f32]) -> usize = argmax_body
}

#[inline(always)]
fn argmax_body(logits: &[f32]) -> usize {
    // The largest non-NaN value (a NaN compares false), then its first
    // position.
    let max = lanes_max(logits, |_| true);
    logits
        .iter()
        .position(|&v| v == max)
        .unwrap_or(logits.len().saturating_sub(1))
}

/// The largest of the logits that `keep` accepts and that are not NaN
/// (`-inf` when there is none), sixteen lanes at a time.
#[inline(always)]
fn lanes_max(logits: &[f32], keep: impl Fn(f32) -> bool) -> f32 {
    let larger = |m: f32, v: f32| if keep(v) && v > m { v } else { m };
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = logits.chunks_exact(16);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = larger(*m, v);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| larger(m, v))
}

/// Each row's token and its log-probability ([`sample_row`],
/// [`log_prob`]), `None` for rows that are `done`. Rows run on the decode
/// workers when there are several; each draws from its own random stream,
/// so the picks do not depend on the thread count.
pub(crate) fn pick_rows(
    rows: &[&[f32]],
    done: &[bool],
    sampling: Sampling,
    rngs: &mut [Rng],
) -> Vec<Option<(usize, f32)>> {
    let mut slots: Vec<(&mut Rng, Option<(usize, f32)>)> =
        rngs.iter_mut().map(|r| (r, None)).collect();
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
    let workers = (rows.len() > 1)
        .then(|| crate::workers::workers(threads))
        .flatten();
    crate::workers::for_chunks(workers, &mut slots, 1, &|i, slot| {
        if let (Some(row), Some(false), [(rng, pick)]) = (rows.get(i), done.get(i).copied(), slot) {
            let tok = sample_row(row, sampling, rng);
            *pick = Some((tok, log_prob(row, tok)));
        }
    });
    slots.into_iter().map(|(_, pick)| pick).collect()
}

/// Picks a token from one row of logits.
pub(crate) fn sample_row(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> usize {
    let argmax = || argmax(logits);
    let (temperature, top_k, top_p) = match sampling {
        Sampling::Greedy => return argmax(),
        Sampling::Sample {
            temperature,
            top_k,
            top_p,
        } => (temperature, top_k, top_p),
    };
    if temperature == 0.0 || top_k == 1 {
        return argmax();
    }
    let inv_t = 1.0 / temperature;
    if top_k == 0 && top_p >= 1.0 {
        return sample_tempered(logits, inv_t as f32, rng).unwrap_or_else(argmax);
    }
    let mut cand: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| (i, v as f64 * inv_t))
        .collect();
    if cand.is_empty() {
        return argmax();
    }
    let by_logit_desc = |a: &(usize, f64), b: &(usize, f64)| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    };
    if top_k > 0 && top_k < cand.len() {
        cand.select_nth_unstable_by(top_k - 1, by_logit_desc);
        cand.truncate(top_k);
    }
    if top_p < 1.0 || top_k > 0 {
        cand.sort_by(by_logit_desc);
    }
    let max = cand.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<f64> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    let mut keep = probs.len();
    if top_p < 1.0 {
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= top_p {
                keep = i + 1;
                break;
            }
        }
    }
    let mass: f64 = probs[..keep].iter().sum();
    let u = rng.uniform() * mass;
    let mut acc = 0.0;
    for i in 0..keep {
        acc += probs[i];
        if u < acc {
            return cand[i].0;
        }
    }
    cand[keep - 1].0
}

/// Temperature sampling from the whole vocabulary (no top-k or top-p) by
/// inverse transform: weights `exp((x − max)·inv_t)` in f32 ([`exp_nonpos`]),
/// sums over blocks of 64 tokens in f64, then one walk over the blocks and
/// one inside a block. `None` when no logit is finite.
fn sample_tempered(logits: &[f32], inv_t: f32, rng: &mut Rng) -> Option<usize> {
    const BLOCK: usize = 64;
    // Non-finite logits (masked tokens) get no weight.
    let max = finite_max(logits);
    if max == f32::NEG_INFINITY {
        return None;
    }
    crate::alloc::with_reused(&WEIGHTS, |(weights, blocks)| {
        weights.clear();
        weights.resize(logits.len(), 0.0);
        fill_weights(weights, logits, max, inv_t);
        blocks.clear();
        blocks.extend(weights.chunks(BLOCK).map(|b| {
            let mut l = [0f32; 16];
            let mut c = b.chunks_exact(16);
            for part in &mut c {
                l.iter_mut().zip(part).for_each(|(a, &w)| *a += w);
            }
            let tail: f64 = c.remainder().iter().map(|&w| w as f64).sum();
            l.iter().map(|&v| v as f64).sum::<f64>() + tail
        }));
        let total: f64 = blocks.iter().sum();
        let u = rng.uniform() * total;
        let mut acc = 0.0;
        let last = weights.iter().rposition(|&w| w > 0.0)?;
        for (bi, &bs) in blocks.iter().enumerate() {
            if u < acc + bs {
                for (j, &w) in weights[bi * BLOCK..].iter().take(BLOCK).enumerate() {
                    acc += w as f64;
                    if u < acc && w > 0.0 {
                        return Some(bi * BLOCK + j);
                    }
                }
                return weights[bi * BLOCK..]
                    .iter()
                    .take(BLOCK)
                    .rposition(|&w| w > 0.0)
                    .map(|j| bi * BLOCK + j);
            }
            acc += bs;
        }
        Some(last)
    })
}

/// The largest finite logit (`-inf` when there is none).
#[inline(always)]
fn finite_max(logits: &[f32]) -> f32 {
    lanes_max(logits, f32::is_finite)
}

/// `log softmax(logits)[token]`, on the host: `logits[token] − max − ln Σ
/// exp(logits − max)` over the finite logits, the exponentials by
/// [`exp_nonpos`] (sixteen lanes wide where the CPU has AVX-512), summed in
/// f32 over 256 logits at a time and in f64 across them. Agrees with
/// libtorch's `log_softmax` to about 1e-6; no tensor operation, so a decode
/// loop whose matmuls run on the host wakes no libtorch thread.
pub(crate) fn log_prob(logits: &[f32], token: usize) -> f32 {
    let x = logits.get(token).copied().unwrap_or(f32::NAN);
    let (max, total) = max_and_exp_sum(logits);
    ((x - max) as f64 - total.ln()) as f32
}

avx512_or_plain! {
    /// The largest finite logit and `Σ exp(logit − max)` (see [`log_prob`]).
    fn max_and_exp_sum(logits: &[f32]) -> (f32, f64) = max_and_exp_sum_body
}

#[inline(always)]
fn max_and_exp_sum_body(logits: &[f32]) -> (f32, f64) {
    let max = finite_max(logits);
    let total = logits
        .chunks(256)
        .map(|c| {
            let mut lanes = [0f32; 16];
            let mut parts = c.chunks_exact(16);
            for part in &mut parts {
                for (a, &x) in lanes.iter_mut().zip(part) {
                    *a += exp_nonpos(x - max);
                }
            }
            let tail: f32 = parts.remainder().iter().map(|&x| exp_nonpos(x - max)).sum();
            lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
        })
        .sum();
    (max, total)
}

thread_local! {
    /// [`sample_tempered`]'s weights and block sums, reused.
    static WEIGHTS: std::cell::RefCell<(Vec<f32>, Vec<f64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

avx512_or_plain! {
    /// `weights[i] = exp_nonpos((logits[i] − max)·inv_t)`.
    fn fill_weights(weights: &mut [f32], logits: &[f32], max: f32, inv_t: f32) = fill_weights_body
}

#[inline(always)]
fn fill_weights_body(weights: &mut [f32], logits: &[f32], max: f32, inv_t: f32) {
    for (w, &x) in weights.iter_mut().zip(logits) {
        *w = exp_nonpos((x - max) * inv_t);
    }
}

/// `[batch, vocab]` logits as a contiguous f32 CPU tensor (the same
/// tensor, not a copy, when it is one already; its values are
/// [`crate::host::f32_view`], row after row) and the vocabulary size.
pub(crate) fn host_logits(logits: &Tensor) -> Result<(Tensor, usize)> {
    let s = logits.size();
    if s.len() != 2 {
        return Err(LmError::InvalidArgument(format!(
            "expected [batch, vocab] logits, got {s:?}"
        )));
    }
    let l = logits
        .f_to_device(tch::Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    Ok((l, s[1].max(1) as usize))
}

/// Incremental detokenisation for streaming: the text a new token adds.
pub(crate) struct StreamText {
    anchor_ids: Vec<u32>,
    anchor_text: String,
    emitted: usize,
}

impl StreamText {
    pub(crate) fn new(tok: &crate::tokenizer::Tokenizer, prompt: &[u32]) -> Result<StreamText> {
        let anchor_ids: Vec<u32> = prompt.last().copied().into_iter().collect();
        let anchor_text = tok.decode(&anchor_ids, true)?;
        Ok(StreamText {
            anchor_ids,
            anchor_text,
            emitted: 0,
        })
    }

    /// Full text of `generated` (decoded after the last prompt token, so
    /// that a leading space of the first generated token is kept).
    pub(crate) fn text(
        &self,
        tok: &crate::tokenizer::Tokenizer,
        generated: &[u32],
    ) -> Result<String> {
        let mut ids = self.anchor_ids.clone();
        ids.extend_from_slice(generated);
        let full = tok.decode(&ids, true)?;
        Ok(match full.strip_prefix(&self.anchor_text) {
            Some(rest) => rest.to_string(),
            None => tok.decode(generated, true)?,
        })
    }

    /// The new text since the last call, holding back an incomplete
    /// character at the end.
    pub(crate) fn delta(
        &mut self,
        tok: &crate::tokenizer::Tokenizer,
        generated: &[u32],
    ) -> Result<String> {
        let text = self.text(tok, generated)?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let d = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_log_prob_matches_libtorch_log_softmax() {
        tch::manual_seed(11);
        let logits = Tensor::randn([3, 1000], (Kind::Float, tch::Device::Cpu)) * 6.0;
        let _ = logits.get(2).narrow(0, 5, 40).fill_(f64::NEG_INFINITY);
        let want = logits.log_softmax(-1, Kind::Float);
        let (host, vocab) = host_logits(&logits).unwrap();
        let flat = crate::host::f32_view(&host).unwrap();
        for (r, row) in flat.chunks(vocab).enumerate() {
            for tok in [0, 1, 17, 44, 999] {
                let (got, want) = (
                    log_prob(row, tok),
                    want.double_value(&[r as i64, tok as i64]),
                );
                match want.is_finite() {
                    true => assert!(
                        (got as f64 - want).abs() < 2e-6,
                        "{r},{tok}: {got} vs {want}"
                    ),
                    false => assert_eq!(got, f32::NEG_INFINITY),
                }
            }
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut r = Rng::new(1, 0);
        assert_eq!(
            sample_row(&[0.1, 3.0, -1.0, 2.9], Sampling::Greedy, &mut r),
            1
        );
        // The first of equal maxima, wherever it lies (lanes, the tail past
        // the last whole vector); NaNs never win; a row of NaNs gives its
        // last index, a row of -inf its first.
        let mut rng = Rng::new(5, 0);
        for len in [1usize, 15, 16, 17, 100, 1000] {
            for _ in 0..20 {
                let mut row: Vec<f32> = (0..len)
                    .map(|_| (rng.uniform() * 8.0).floor() as f32)
                    .collect();
                if len > 3 {
                    row[len / 3] = f32::NAN;
                    row[len - 1] = f32::NEG_INFINITY;
                }
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] || row[best].is_nan() {
                        best = i;
                    }
                }
                assert_eq!(argmax(&row), best, "{row:?}");
            }
        }
        let mut tail = vec![1.0f32; 37];
        tail[35] = 2.0;
        tail[36] = 2.0;
        assert_eq!(argmax(&tail), 35);
        assert_eq!(argmax(&[f32::NAN; 20]), 19);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 20]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, 1.0]), 2);
    }

    #[test]
    fn top_k_one_and_zero_temperature_are_greedy() {
        let mut r = Rng::new(1, 0);
        let l = [0.1, 3.0, -1.0, 2.9];
        let s = Sampling::Sample {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        };
        assert_eq!(sample_row(&l, s, &mut r), 1);
        let s = Sampling::Sample {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        };
        assert_eq!(sample_row(&l, s, &mut r), 1);
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        let l = [0.0f32, (2.0f32).ln(), (3.0f32).ln(), f32::NEG_INFINITY];
        let s = Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let mut r = Rng::new(42, 0);
        let mut counts = [0usize; 4];
        let n = 60_000;
        for _ in 0..n {
            counts[sample_row(&l, s, &mut r)] += 1;
        }
        assert_eq!(counts[3], 0);
        for (i, p) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            assert!((f - p).abs() < 0.01, "token {i}: {f} vs {p}");
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let l = [1.0f32, 5.0, 4.9, 0.0, 4.8];
        let mut r = Rng::new(7, 0);
        let k2 = Sampling::Sample {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
        };
        for _ in 0..2000 {
            let t = sample_row(&l, k2, &mut r);
            assert!(t == 1 || t == 2);
        }
        // Probabilities ~ [.006, .35, .32, .002, .29]: top_p 0.5 keeps tokens 1 and 2.
        let p = Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        let mut seen = [false; 5];
        for _ in 0..2000 {
            seen[sample_row(&l, p, &mut r)] = true;
        }
        assert_eq!(seen, [false, true, true, false, false]);
    }

    #[test]
    fn seeded_rng_is_reproducible_and_streams_differ() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(5, 0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(5, 0), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(Rng::new(5, 1), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
