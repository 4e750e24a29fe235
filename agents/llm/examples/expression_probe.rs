//! Trains one agent kind by RL for a few updates and measures the emotion
//! markers on the tuning prompts (never the evaluation prompts): for
//! choosing learning rate, KL weight, expression objective and steering
//! scale before `emorl reproduce llm-modules` is run.
//!
//! `cargo run --release -p emorl-agents-llm --example expression_probe -- MODEL|default KIND UPDATES [key=value …]`
//!
//! Keys: `lr`, `kl`, `coef` (expression_coef), `repeat`
//! (expression_repeat_coef), `target`
//! (expression_target), `ekl` (expression_kl), `feedback` (feedback_coef), `scale` (steering.init_scale), `layers`
//! (steering.layers, comma-separated), `seed`, `samples`
//! (marker samples per prompt), `base=1` (also measure `llm-base`'s
//! perplexity for the ratio).

use emorl_agents_llm::eval::{generations_perplexity, marker_run, TUNING_PROMPTS};
use emorl_agents_llm::{AgentConfig, LlmAgent, RlConfig, Trainer};
use emorl_lm::{DType, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let load = || match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32),
        Some(p) => Model::load(p, DType::F32),
    };
    let kind = args.get(1).map_or("llm-erm", String::as_str);
    let updates: usize = args.get(2).map_or(Ok(6), |s| s.parse())?;
    let mut rl = RlConfig {
        prompts_per_update: 4,
        samples_per_prompt: 4,
        max_new_tokens: 24,
        updates,
        ..RlConfig::default()
    };
    let mut config = AgentConfig {
        max_new_tokens: 24,
        ..AgentConfig::default()
    };
    let (mut samples, mut base) = (2usize, false);
    for kv in args.iter().skip(3) {
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("expected key=value, got `{kv}`"))?;
        match k {
            "lr" => rl.lr = v.parse()?,
            "kl" => rl.kl_coef = v.parse()?,
            "coef" => rl.expression_coef = v.parse()?,
            "target" => rl.expression_target = v.parse()?,
            "feedback" => rl.feedback_coef = v.parse()?,
            "ekl" => rl.expression_kl = v.parse()?,
            "repeat" => rl.expression_repeat_coef = v.parse()?,
            "scale" => config.steering.init_scale = v.parse()?,
            "layers" => {
                config.steering.layers = v.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "seed" => {
                rl.seed = v.parse()?;
                config.seed = rl.seed;
            }
            "samples" => samples = v.parse()?,
            "base" => base = v == "1",
            _ => return Err(format!("unknown key `{k}`").into()),
        }
    }
    // The judge when the GoEmotions files can be found (tuning prompts only).
    let judge = match emorl_agents_llm::data::goemotions_dir() {
        Some(dir) => Some(emorl_agents_llm::eval::Judge::train(&dir)?),
        None => None,
    };
    let measure = |agent: &mut LlmAgent| -> Result<(f64, String), Box<dyn std::error::Error>> {
        let run = marker_run(agent, &TUNING_PROMPTS, samples, 7, 24, judge.as_ref())?;
        let ppl = generations_perplexity(agent.model_mut(), &run.all_generations())?;
        let cells: Vec<String> = run
            .effects
            .iter()
            .map(|e| {
                format!(
                    "{}/{} {:.2}→{:.2} d_z={:.2}",
                    e.emotion,
                    e.measure.name(),
                    e.neutral_mean(),
                    e.emotional_mean(),
                    e.d()
                )
            })
            .collect();
        let texts: Vec<&str> = run
            .all_generations()
            .iter()
            .map(|g| g.text.as_str())
            .collect();
        let mut text = format!(
            "distinct-2 {:.3} | {}",
            emorl_agents_llm::eval::distinct_n(texts, 2),
            cells.join(" | ")
        );
        for (cond, g) in run.generations.iter().take(2) {
            text.push_str(&format!("\n  {} sample: {:?}", cond.name(), g[0].text));
        }
        Ok((ppl.ppl, text))
    };
    if base {
        let mut agent = LlmAgent::from_id(load()?, "llm-base", config.clone())?;
        let (ppl, _) = measure(&mut agent)?;
        println!("llm-base ppl {ppl:.3}");
    }
    let agent = LlmAgent::from_id(load()?, kind, config)?;
    let mut trainer = Trainer::new(agent, rl)?;
    trainer.train(|s| {
        println!(
            "update {}: reward {:+.3} kl {:.4} expression mass {:.4} ({:.1} s)",
            s.update, s.reward_mean, s.kl, s.expression_mass, s.seconds
        )
    })?;
    let mut agent = trainer.into_agent();
    let (ppl, text) = measure(&mut agent)?;
    println!("{kind}: ppl {ppl:.3} | {text}");
    Ok(())
}
