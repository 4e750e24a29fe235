//! Wall time of the marker metric (neutral + four emotional conditions) and
//! of scoring its generations' perplexity, for sizing `emorl reproduce
//! llm-modules` defaults.
//!
//! `cargo run --release -p emorl-agents-llm --example eval_time -- [MODEL|default] [KIND] [PROMPTS] [SAMPLES] [TOKENS] [DIALOGUE_SEEDS]`

use std::time::Instant;

use emorl_agents_llm::eval::{
    evaluate_dialogue, generations_perplexity, marker_run, marker_table, EVAL_PROMPTS,
};
use emorl_agents_llm::{AgentConfig, LlmAgent};
use emorl_envs_text::DialogueConfig;
use emorl_lm::{DType, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32)?,
        Some(p) => Model::load(p, DType::F32)?,
    };
    let kind = args.get(1).map_or("llm-steer", String::as_str);
    let arg = |i: usize, d: usize| -> Result<usize, std::num::ParseIntError> {
        args.get(i).map_or(Ok(d), |s| s.parse())
    };
    let (n_prompts, n_samples, tokens, n_seeds) = (arg(2, 8)?, arg(3, 2)?, arg(4, 32)?, arg(5, 0)?);
    println!(
        "model {} ({} layers), agent {kind}, {n_prompts} prompts × {n_samples} samples × {tokens} tokens, torch threads {}",
        model.source().display(),
        model.n_layers(),
        tch::get_num_threads()
    );
    let config = AgentConfig {
        max_new_tokens: tokens,
        ..AgentConfig::default()
    };
    let mut agent = LlmAgent::from_id(model, kind, config)?;
    let prompts: Vec<&str> = EVAL_PROMPTS
        .iter()
        .copied()
        .cycle()
        .take(n_prompts)
        .collect();

    let t = Instant::now();
    let run = marker_run(&mut agent, &prompts, n_samples, 0, tokens, None)?;
    let marker_s = t.elapsed().as_secs_f64();
    let gens = run.all_generations();
    let new_tokens: usize = gens.iter().map(|g| g.tokens.len()).sum();
    println!(
        "(a) marker metric: {marker_s:.1} s for {} generations ({new_tokens} new tokens, 5 conditions)",
        gens.len()
    );

    let t = Instant::now();
    let ppl = generations_perplexity(agent.model_mut(), &gens)?;
    let ppl_s = t.elapsed().as_secs_f64();
    println!(
        "(c) perplexity: {ppl_s:.1} s for {} responses ({} tokens scored), ppl {:.2}",
        gens.len(),
        ppl.tokens,
        ppl.ppl
    );
    print!(
        "{}",
        marker_table(&[(kind.to_string(), run.effects.clone())])?.to_markdown()
    );
    if let Some((_, g)) = run.generations.first() {
        for x in g.iter().take(2) {
            println!("neutral sample: {:?}", x.text);
        }
    }

    if n_seeds > 0 {
        let seeds: Vec<u64> = (0..n_seeds as u64).collect();
        let t = Instant::now();
        let e = evaluate_dialogue(&mut agent, &DialogueConfig::default(), &seeds)?;
        let turns: usize = e.episodes.iter().map(|m| m.turns).sum();
        println!(
            "(b) dialogue: {:.1} s for {n_seeds} episodes ({turns} turns)",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
