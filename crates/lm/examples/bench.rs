//! Throughput of the engine: prefill tokens/s (batch 1) and decode tokens/s
//! (batch 1 and 8, KV cache, greedy), printed as one JSON line. Used by
//! benches/lm/bench.py, which runs the same measurements with transformers.
//!
//! `cargo run --release -p emorl-lm --example bench -- [MODEL] [--bf16] [--weights=int8|int4|auto] [--host-decode=off|packed|always] [--decode-steps=N]`
//!
//! `--host-decode` picks which decode steps do the work between matmuls
//! on the host (default `packed`: those with packed weights; `off` is the
//! all-tensor-operations reference).
//! Decode runs through `Model::generate_from_tokens` (greedy, no stop
//! token), the path `emorl generate` and RL sampling take, so `--weights`
//! measures the packed decode weights where generation uses them.
//! `cargo run --release -p emorl-lm --example bench -- [MODEL] --logit-diff`
//! prints the relative L2 difference of bf16 logits from f32 logits instead;
//! `--packed-diff` compares greedy generations with int8/int4 decode weights
//! to the dense ones; `--packed-ppl=FILE` scores the first 1000 tokens of a
//! DailyDialog dialogues file token by token under each weight format.
use std::time::Instant;

use emorl_lm::{DType, GenerateOptions, HostDecode, Model, PackPlan, Packing, Sampling};
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

/// Greedy generations of fixed chat prompts with dense and packed decode
/// weights: sequences identical, mean agreeing prefix, and the largest
/// log-prob difference of the tokens both chose before they part.
fn packed_diff(path: Option<&str>, plan: PackPlan) -> Result<(), Box<dyn std::error::Error>> {
    let prompts = [
        "What is the capital of France?",
        "Write a short poem about the sea.",
        "How do I bake bread at home?",
        "Explain what a neural network is to a child.",
        "I lost my job today and I feel terrible.",
        "Can you help me pick a name for my cat?",
        "What should I do if I smell gas in my kitchen?",
        "Thank you so much for your help yesterday!",
    ];
    let opts = GenerateOptions {
        max_new_tokens: 48,
        sampling: Sampling::Greedy,
        chat: true,
        ..Default::default()
    };
    let mut model = load(path, DType::F32)?;
    let dense = model.generate(&prompts, &opts, None)?;
    model.pack_weights(plan)?;
    let packed = model.generate(&prompts, &opts, None)?;
    let (mut same, mut agree, mut total, mut max_dlp) = (0, 0usize, 0usize, 0f32);
    for (d, p) in dense.iter().zip(&packed) {
        same += usize::from(d.tokens == p.tokens);
        let n = d
            .tokens
            .iter()
            .zip(&p.tokens)
            .take_while(|(a, b)| a == b)
            .count();
        agree += n;
        total += d.tokens.len();
        for i in 0..n {
            max_dlp = max_dlp.max((d.logprobs[i] - p.logprobs[i]).abs());
        }
    }
    println!(
        "{{\"weights\": \"{}\", \"sequences_identical\": \"{same}/{}\", \"agreeing_tokens\": \"{agree}/{total}\", \"max_logprob_diff\": {max_dlp:.4}}}",
        plan.name(),
        prompts.len()
    );
    Ok(())
}

/// Perplexity of the first `n` tokens of DailyDialog's test dialogues,
/// scored one token at a time with the KV cache (the way decode steps run)
/// under dense, int8 and int4 decode weights.
fn packed_ppl(
    path: Option<&str>,
    text_file: &str,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(text_file)?.replace(" __eou__", "\n");
    let mut model = load(path, DType::F32)?;
    let mut ids: Vec<i64> = model
        .tokenizer()
        .encode(&text, true)?
        .into_iter()
        .map(i64::from)
        .collect();
    ids.truncate(n + 1);
    let _g = tch::no_grad_guard();
    let mut line = Vec::new();
    let mut dense_argmax: Vec<i64> = Vec::new();
    let auto = model.auto_pack_plan();
    for plan in [
        PackPlan::default(),
        PackPlan::uniform(Some(Packing::Int8)),
        PackPlan::uniform(Some(Packing::Int4)),
        auto,
    ] {
        model.pack_weights(plan)?;
        model.set_use_packed(true);
        model.clear_cache();
        let mut nll = 0f64;
        let mut argmax = Vec::new();
        for w in ids.windows(2) {
            let out =
                model.forward_cached(&Tensor::from_slice(&w[..1]).view([1, 1]), None, None)?;
            let lp = out.logits.view([-1]).log_softmax(-1, Kind::Float);
            nll -= lp.double_value(&[w[1]]);
            argmax.push(lp.argmax(-1, false).int64_value(&[]));
        }
        model.clear_cache();
        model.set_use_packed(false);
        let ppl = (nll / (ids.len() - 1) as f64).exp();
        if dense_argmax.is_empty() {
            dense_argmax = argmax.clone();
        }
        // Teacher-forced greedy choices that agree with the dense model's.
        let agree = argmax
            .iter()
            .zip(&dense_argmax)
            .filter(|(a, b)| a == b)
            .count() as f64
            / argmax.len().max(1) as f64;
        line.push(format!(
            "\"{}\": {{\"ppl\": {ppl:.4}, \"greedy_agreement\": {agree:.4}}}",
            plan.name()
        ));
    }
    println!("{{\"tokens\": {}, {}}}", ids.len() - 1, line.join(", "));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `emorl-torch` does.
    emorl_lm::keep_freed_memory();
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
    if let Some(file) = args.iter().find_map(|a| a.strip_prefix("--packed-ppl=")) {
        return packed_ppl(path.map(String::as_str), file, 1000);
    }
    if args.iter().any(|a| a == "--packed-diff") {
        let auto = load(path.map(String::as_str), DType::F32)?.auto_pack_plan();
        for p in [Packing::Int8, Packing::Int4] {
            packed_diff(path.map(String::as_str), PackPlan::uniform(Some(p)))?;
        }
        packed_diff(path.map(String::as_str), auto)?;
        return Ok(());
    }
    let t0 = Instant::now();
    let mut model = load(path.map(String::as_str), dtype)?;
    let plan = match args.iter().find_map(|a| a.strip_prefix("--weights=")) {
        None | Some("dense") => PackPlan::default(),
        Some("int8") => PackPlan::uniform(Some(Packing::Int8)),
        Some("int4") => PackPlan::uniform(Some(Packing::Int4)),
        Some("auto") => model.auto_pack_plan(),
        Some(other) => return Err(format!("--weights={other}: expected int8, int4 or auto").into()),
    };
    model.pack_weights(plan)?;
    let host = match args.iter().find_map(|a| a.strip_prefix("--host-decode=")) {
        None | Some("packed") => HostDecode::Packed,
        Some("off") => HostDecode::Off,
        Some("always") => HostDecode::Always,
        Some(other) => {
            return Err(format!("--host-decode={other}: expected off, packed or always").into())
        }
    };
    model.set_host_decode(host);
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
    // `--batch=N` measures one batch size (for profiling); default 1 and 8.
    let batches: Vec<i64> = match args.iter().find_map(|a| a.strip_prefix("--batch=")) {
        Some(n) => match n.parse::<i64>() {
            Ok(b) if b > 0 => vec![b],
            _ => return Err(format!("--batch={n}: expected a positive whole number").into()),
        },
        None => vec![1, 8],
    };
    for &b in &batches {
        let mut runs = Vec::new();
        let opts = GenerateOptions {
            max_new_tokens: decode_steps + 1,
            sampling: Sampling::Greedy,
            stop_on_eos: false,
            ..Default::default()
        };
        for _ in 0..3 {
            let prompts: Vec<Vec<u32>> = Vec::<i64>::try_from(tokens(b, 16).reshape([-1]))?
                .chunks(16)
                .map(|r| r.iter().map(|&t| t as u32).collect())
                .collect();
            model.generate_from_tokens(&prompts, &opts, None, None)?;
            let t = model
                .last_generation_timing()
                .ok_or("generation recorded no timing")?;
            runs.push(t.decode_rate());
        }
        model.clear_cache();
        decode.push((b, median(runs)));
    }
    let rate = |b: i64| decode.iter().find(|d| d.0 == b).map_or(f64::NAN, |d| d.1);
    // Other batch sizes (`--batch=N`) after the two the side-by-side reads.
    let others: String = decode
        .iter()
        .filter(|d| d.0 != 1 && d.0 != 8)
        .map(|(b, r)| format!(", \"decode_b{b}_tok_s\": {r:.1}"))
        .collect();
    println!(
        "{{\"engine\": \"emorl-lm\", \"dtype\": \"{:?}\", \"weights\": \"{}\", \"host_decode\": \"{:?}\", \"threads\": {}, \"load_s\": {:.2}, \"prefill_tok_s\": {:.1}, \"decode_b1_tok_s\": {:.1}, \"decode_b8_tok_s\": {:.1}{others}}}",
        dtype,
        plan.name(),
        host,
        tch::get_num_threads(),
        load_s,
        median(prefill),
        rate(1),
        rate(8)
    );
    Ok(())
}
