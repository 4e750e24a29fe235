//! Throughput of the engine: prefill tokens/s (batch 1) and decode tokens/s
//! (batch 1 and 8, KV cache, greedy), printed as one JSON line. Used by
//! benches/lm/bench.py, which runs the same measurements with transformers.
//!
//! `cargo run --release -p emorl-lm --example bench -- [MODEL] [--bf16]`
use std::time::Instant;

use emorl_lm::{DType, Model};
use tch::{Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = if args.iter().any(|a| a == "--bf16") {
        DType::BF16
    } else {
        DType::F32
    };
    let path = args.iter().find(|a| !a.starts_with("--"));
    let t0 = Instant::now();
    let mut model = match path {
        Some(p) => Model::load(p, dtype)?,
        None => Model::load_default(dtype)?,
    };
    let load_s = t0.elapsed().as_secs_f64();
    let _g = tch::no_grad_guard();
    let vocab = model.vocab_size() as i64;
    let prefill_len = 128i64;
    let decode_steps = 32usize;
    let tokens = |b: i64, n: i64| {
        Tensor::randint_low(10, vocab.min(1000), [b, n], (Kind::Int64, tch::Device::Cpu))
    };
    tch::manual_seed(0);

    // Prefill: one forward over 128 tokens (after a warm-up).
    model.forward(&tokens(1, prefill_len), None, None)?;
    let mut prefill = Vec::new();
    for _ in 0..4 {
        let t = tokens(1, prefill_len);
        let s = Instant::now();
        model.forward(&t, None, None)?;
        prefill.push(prefill_len as f64 / s.elapsed().as_secs_f64());
    }
    let mut decode = Vec::new();
    for b in [1i64, 8] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            model.clear_cache();
            let out = model.forward_cached(&tokens(b, 16), None, None)?;
            let mut next = out.logits.select(1, 15).argmax(-1, true);
            let s = Instant::now();
            for _ in 0..decode_steps {
                let out = model.forward_cached(&next, None, None)?;
                next = out.logits.select(1, 0).argmax(-1, true);
            }
            runs.push((b as usize * decode_steps) as f64 / s.elapsed().as_secs_f64());
        }
        model.clear_cache();
        decode.push((b, median(runs)));
    }
    println!(
        "{{\"engine\": \"emorl-lm\", \"dtype\": \"{:?}\", \"threads\": {}, \"load_s\": {:.2}, \"prefill_tok_s\": {:.1}, \"decode_b1_tok_s\": {:.1}, \"decode_b8_tok_s\": {:.1}}}",
        dtype,
        tch::get_num_threads(),
        load_s,
        median(prefill),
        decode[0].1,
        decode[1].1
    );
    Ok(())
}
