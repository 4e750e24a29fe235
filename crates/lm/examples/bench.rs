//! Throughput of the engine: prefill tokens/s (batch 1) and decode tokens/s
//! (batch 1 and 8, KV cache, greedy), printed as one JSON line. Used by
//! benches/lm/bench.py, which runs the same measurements with transformers.
//!
//! `cargo run --release -p emorl-lm --example bench -- [MODEL] [--bf16] [--decode-steps=N]`
//! `cargo run --release -p emorl-lm --example bench -- [MODEL] --logit-diff`
//! prints the relative L2 difference of bf16 logits from f32 logits instead.
use std::time::Instant;

use emorl_lm::{DType, Model};
use tch::{Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load(path: Option<&str>, dtype: DType) -> Result<Model, emorl_lm::LmError> {
    match path {
        Some(p) => Model::load(p, dtype),
        None => Model::load_default(dtype),
    }
}

/// Relative L2 distance of bf16 logits from f32 logits on a fixed prompt.
fn logit_diff(path: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let _g = tch::no_grad_guard();
    let prompt = "The old lighthouse keeper climbed the stairs every evening to light the lamp.";
    let logits = |dtype: DType| -> Result<Tensor, Box<dyn std::error::Error>> {
        let mut m = load(path, dtype)?;
        let ids: Vec<i64> = m
            .tokenizer()
            .encode(prompt, true)?
            .into_iter()
            .map(i64::from)
            .collect();
        let t = Tensor::from_slice(&ids).unsqueeze(0);
        Ok(m.forward(&t, None, None)?.logits.to_kind(Kind::Float))
    };
    let a = logits(DType::F32)?;
    let b = logits(DType::BF16)?;
    let rel = (&b - &a).norm().double_value(&[]) / a.norm().double_value(&[]);
    let same_argmax = a.argmax(-1, false).eq_tensor(&b.argmax(-1, false));
    let agree = same_argmax
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    println!(
        "{{\"bf16_vs_f32_rel_l2\": {rel:.6}, \"argmax_agreement\": {agree:.4}, \"positions\": {}}}",
        a.size()[1]
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = if args.iter().any(|a| a == "--bf16") {
        DType::BF16
    } else {
        DType::F32
    };
    let path = args.iter().find(|a| !a.starts_with("--"));
    if args.iter().any(|a| a == "--logit-diff") {
        return logit_diff(path.map(String::as_str));
    }
    let t0 = Instant::now();
    let mut model = load(path.map(String::as_str), dtype)?;
    let load_s = t0.elapsed().as_secs_f64();
    let _g = tch::no_grad_guard();
    let vocab = model.vocab_size() as i64;
    let prefill_len = 128i64;
    // `--decode-steps=N` (default 32) measures longer decodes.
    let decode_steps = args
        .iter()
        .find_map(|a| a.strip_prefix("--decode-steps="))
        .map(|n| n.parse::<usize>())
        .transpose()?
        .unwrap_or(32)
        .max(1);
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
