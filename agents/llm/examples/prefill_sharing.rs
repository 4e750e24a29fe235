//! What the two sampling shortcuts do to an RL update's samples: sharing
//! the prompt prefill (`RlConfig::share_prompt_prefill`) and holding the
//! frozen weights in bf16 (`agent_config.bf16`). The same prompts (each
//! repeated `k` times, as an update samples them) and the same seed are
//! sampled the plain way (f32, no sharing) and with each shortcut; per seed,
//! the sequences that come out identical, the largest log-prob gap on the
//! tokens before the first difference, and the sampling time of each.
//!
//! `cargo run --release -p emorl-agents-llm --example prefill_sharing -- [MODEL|default] [SEEDS] [THREADS]`
//!
//! 8 dialogue prompts (turn 0 of conversations 0–7) × 4 samples × 32 new
//! tokens at temperature 0.7 (the RL defaults of `emorl train`).

use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent};
use emorl_core::Env;
use emorl_envs_text::Dialogue;
use emorl_lm::{DType, GenerateOptions, Generation, Model, Sampling};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn load(spec: Option<&str>, dtype: DType) -> Res<Model> {
    Ok(match spec {
        None | Some("default") => Model::load_default(dtype)?,
        Some(p) => Model::load(p, dtype)?,
    })
}

fn sample(
    agent: &mut LlmAgent,
    batch: &[Vec<u32>],
    seed: u64,
    share: bool,
) -> Res<(Vec<Generation>, f64)> {
    let opts = GenerateOptions {
        max_new_tokens: 32,
        sampling: Sampling::Sample {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
        },
        seed,
        ..GenerateOptions::default()
    };
    let _g = tch::no_grad_guard();
    let m = agent.model_mut();
    m.set_share_repeated_prompts(share);
    let t0 = Instant::now();
    let gens = m.generate_from_tokens(batch, &opts, None, None);
    m.set_share_repeated_prompts(false);
    Ok((gens?, t0.elapsed().as_secs_f64()))
}

/// Identical sequences, tokens compared before each first difference, and
/// the largest log-prob gap on them.
fn compare(a: &[Generation], b: &[Generation]) -> (usize, usize, f64) {
    let (mut identical, mut compared, mut gap) = (0, 0, 0f64);
    for (x, y) in a.iter().zip(b) {
        identical += usize::from(x.tokens == y.tokens);
        for ((tx, lx), (ty, ly)) in x
            .tokens
            .iter()
            .zip(&x.logprobs)
            .zip(y.tokens.iter().zip(&y.logprobs))
        {
            if tx != ty {
                break;
            }
            compared += 1;
            gap = gap.max(f64::from((lx - ly).abs()));
        }
    }
    (identical, compared, gap)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = args.first().map(String::as_str);
    let seeds: u64 = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let threads: i32 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    tch::set_num_threads(threads);
    let mut f32_agent = LlmAgent::new(
        load(spec, DType::F32)?,
        AgentKind::Base,
        AgentConfig::default(),
    )?;
    let mut bf16_agent = LlmAgent::new(
        load(spec, DType::BF16)?,
        AgentKind::Base,
        AgentConfig::default(),
    )?;
    let mut env = Dialogue::with_defaults();
    let k = 4;
    let mut batch = Vec::new();
    for s in 0..8 {
        let (obs, _) = env.reset(Some(s));
        let ids = f32_agent.encode_prompt(&obs)?;
        batch.extend(std::iter::repeat_n(ids, k));
    }
    println!("{threads} thread(s); per shortcut: identical sequences, tokens compared before a difference, max |Δ log-prob| on them, seconds (plain seconds first)");
    println!("seed | plain s | shared prefill | bf16 weights");
    for seed in 0..seeds {
        let (plain, t_plain) = sample(&mut f32_agent, &batch, seed, false)?;
        let (shared, t_shared) = sample(&mut f32_agent, &batch, seed, true)?;
        let (bf16, t_bf16) = sample(&mut bf16_agent, &batch, seed, false)?;
        let row = |g: &[Generation], t: f64| {
            let (same, n, gap) = compare(&plain, g);
            format!(
                "{same}/{} same, {n} tokens, {gap:.2e}, {t:.1} s",
                plain.len()
            )
        };
        println!(
            "{seed} | {t_plain:.1} | {} | {}",
            row(&shared, t_shared),
            row(&bf16, t_bf16)
        );
    }
    Ok(())
}
