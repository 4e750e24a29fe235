//! Time of one batched generation as RL sampling runs it: `P` distinct
//! prompts of about `L` tokens, each repeated `K` times, `N` new tokens.
//!
//! `cargo run --release -p emorl-lm --example gen_batch_bench -- [MODEL] [--prompts=8] [--k=4] [--len=150] [--new=32] [--reps=3] [--share]`
//!
//! `--share` turns on `Model::set_share_repeated_prompts`.
//!
//! Prints the wall time of each repetition, the median, and a checksum of
//! the generated tokens and log-probs (to compare runs of two builds).
use std::time::Instant;

use emorl_lm::{DType, GenerateOptions, Model, Sampling};

fn arg(args: &[String], name: &str, default: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let key = format!("--{name}=");
    match args.iter().find_map(|a| a.strip_prefix(&key)) {
        Some(v) => Ok(v.parse()?),
        None => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::set_num_threads(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.iter().find(|a| !a.starts_with("--"));
    let (p, k) = (arg(&args, "prompts", 8)?, arg(&args, "k", 4)?);
    let (len, new, reps) = (
        arg(&args, "len", 150)?,
        arg(&args, "new", 32)?,
        arg(&args, "reps", 3)?,
    );
    let mut model = match path {
        Some(p) => Model::load(p, DType::F32)?,
        None => Model::load_default(DType::F32)?,
    };
    model.set_share_repeated_prompts(args.iter().any(|a| a == "--share"));
    let vocab = model.vocab_size() as u64;
    // Deterministic pseudo-random prompts of `len - 5*i` tokens (ids 100..).
    let mut prompts = Vec::with_capacity(p * k);
    for i in 0..p {
        let n = len.saturating_sub(5 * i).max(1);
        let ids: Vec<u32> = (0..n as u64)
            .map(|j| (100 + (j * 7919 + i as u64 * 104_729) % (vocab - 200)) as u32)
            .collect();
        for _ in 0..k {
            prompts.push(ids.clone());
        }
    }
    let opts = GenerateOptions {
        max_new_tokens: new,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed: 7,
        stop_on_eos: false,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut check = (0u64, 0f64);
    for _ in 0..reps {
        let t0 = Instant::now();
        let out = model.generate_from_tokens(&prompts, &opts, None, None)?;
        times.push(t0.elapsed().as_secs_f64());
        check = out.iter().fold((0u64, 0f64), |(s, l), g| {
            (
                g.tokens
                    .iter()
                    .fold(s, |s, &t| s.wrapping_mul(31).wrapping_add(t as u64)),
                l + g.logprobs.iter().map(|&x| x as f64).sum::<f64>(),
            )
        });
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "rows={} prompt_len<={len} new={new} times={times:?} median={:.3}s tokens_hash={} logprob_sum={:.6}",
        p * k,
        sorted[sorted.len() / 2],
        check.0,
        check.1
    );
    Ok(())
}
