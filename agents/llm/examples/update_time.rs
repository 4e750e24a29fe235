//! Wall time of RL updates (8 prompts × 4 samples × 32 new tokens by
//! default) for one agent kind on one model.
//!
//! `cargo run --release -p emorl-agents-llm --example update_time -- [MODEL|default] [KIND] [UPDATES] [FLAGS]`
//!
//! Flags:
//! - `--recompute`: the reference path (log-probabilities recomputed with
//!   a model forward) even when the modules only process logits;
//! - `--stand-in-reward`: the benchmark's reward (fraction of response token
//!   ids divisible by 7) instead of the dialogue environment's, the same as
//!   `benches/peers/rl_update_peer.py`;
//! - `--dump-prompts FILE`: writes the prompt token ids of every update as
//!   JSON (`{"updates": [[[ids…] × prompts] × updates], …}`) and exits;
//! - `--new-tokens N`: new tokens per sample (default 32);
//! - `--groups N`: sampling in N batches of prompts of similar length;
//! - `--no-share-prefill`: every row prefilled, instead of each prompt
//!   once for its `k` samples (`RlConfig::share_prompt_prefill`, the default);
//! - `--dense-sampling`: sampling reads the dense f32 weights instead of the
//!   file's own quantization (`RlConfig::packed_sampling`, the default);
//! - `--json`: a last line of JSON with the median update time (the first,
//!   warm-up update excluded when there are more than one).

use emorl_agents_llm::{AgentConfig, LlmAgent, RewardFn, RlConfig, Trainer};
use emorl_lm::{DType, Model};

/// The benchmark's stand-in reward: the fraction of response token ids
/// divisible by 7 (deterministic, needs no environment).
fn stand_in_reward(g: &emorl_lm::Generation) -> f64 {
    if g.tokens.is_empty() {
        return 0.0;
    }
    g.tokens.iter().filter(|&&t| t % 7 == 0).count() as f64 / g.tokens.len() as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `emorl-torch` does.
    emorl_lm::keep_freed_memory();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Vec::new();
    let (mut recompute, mut stand_in, mut json, mut share) = (false, false, false, true);
    let mut packed = true;
    let mut dump: Option<String> = None;
    let mut groups: Option<usize> = None;
    let mut new_tokens: Option<usize> = None;
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--recompute" => recompute = true,
            "--no-share-prefill" => share = false,
            "--dense-sampling" => packed = false,
            "--stand-in-reward" => stand_in = true,
            "--json" => json = true,
            "--new-tokens" => {
                new_tokens = Some(it.next().ok_or("--new-tokens needs a number")?.parse()?)
            }
            "--groups" => groups = Some(it.next().ok_or("--groups needs a number")?.parse()?),
            "--dump-prompts" => dump = Some(it.next().ok_or("--dump-prompts needs a file")?),
            _ => args.push(a),
        }
    }
    let model = match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32)?,
        Some(p) => Model::load(p, DType::F32)?,
    };
    let kind = args.get(1).map_or("llm-erm", String::as_str).to_string();
    let updates: usize = match args.get(2) {
        Some(u) => u.parse()?,
        None => 3,
    };
    let source = model.source().display().to_string();
    println!(
        "model {source} ({} layers, hidden {}, vocab {}), agent {kind}, torch threads {}{}{}{}",
        model.n_layers(),
        model.hidden_size(),
        model.vocab_size(),
        tch::get_num_threads(),
        if recompute { ", recompute" } else { "" },
        if stand_in { ", stand-in reward" } else { "" },
        if packed { "" } else { ", dense sampling" },
    );
    let agent = LlmAgent::from_id(model, &kind, AgentConfig::default())?;
    let defaults = RlConfig::default();
    let cfg = RlConfig {
        updates,
        sampling_groups: groups.unwrap_or(defaults.sampling_groups),
        share_prompt_prefill: share,
        packed_sampling: packed,
        max_new_tokens: new_tokens.unwrap_or(defaults.max_new_tokens),
        ..defaults
    };
    let mut trainer = Trainer::new(agent, cfg.clone())?;
    if let Some(path) = dump {
        let all = (0..updates)
            .map(|u| trainer.prompt_tokens(u))
            .collect::<Result<Vec<_>, _>>()?;
        let out = serde_json::json!({
            "model": source,
            "prompts_per_update": cfg.prompts_per_update,
            "samples_per_prompt": cfg.samples_per_prompt,
            "max_new_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "lr": cfg.lr,
            "kl_coef": cfg.kl_coef,
            "grad_clip": cfg.grad_clip,
            "microbatch": cfg.microbatch,
            "updates": all,
        });
        std::fs::write(&path, serde_json::to_string(&out)?)?;
        println!("wrote {path}");
        return Ok(());
    }
    trainer.set_recompute(recompute);
    if stand_in {
        trainer.set_reward_fn(Some(RewardFn(Box::new(stand_in_reward))));
    }
    let mut times = Vec::new();
    for _ in 0..updates {
        let s = trainer.update()?;
        let p = trainer.last_phases();
        println!(
            "update {}: {:.2} s (prompts {:.2}, sampling {:.2}, rewards {:.3}, learning {:.2}), reward {:.3} ± {:.3}, kl {:.5}, entropy {:.3}, loss {:.4}, grad {:.4}, tokens {:.1}",
            s.update, s.seconds, p.prompts, p.sampling, p.rewards, p.learning, s.reward_mean,
            s.reward_std, s.kl, s.entropy, s.loss, s.grad_norm, s.response_tokens
        );
        times.push(s.seconds);
    }
    let timed: Vec<f64> = if times.len() > 1 {
        times[1..].to_vec()
    } else {
        times.clone()
    };
    let mut sorted = timed.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(0.5 * (sorted[n / 2 - 1] + sorted[n / 2])),
    };
    if let Some(m) = median.as_ref() {
        println!("median update time: {m:.2} s");
        if json {
            let out = serde_json::json!({
                "engine": "emorl (tch)",
                "kind": kind,
                "recompute": recompute,
                "packed_sampling": packed,
                "threads": tch::get_num_threads(),
                "median_s": m,
                "times_s": times,
            });
            println!("{out}");
        }
    }
    Ok(())
}
