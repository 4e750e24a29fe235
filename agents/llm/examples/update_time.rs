//! Wall time of RL updates (8 prompts × 4 samples × 32 new tokens by
//! default) for one agent kind on one model.
//!
//! `cargo run --release -p emorl-agents-llm --example update_time -- [MODEL|default] [KIND] [UPDATES]`

use emorl_agents_llm::{AgentConfig, LlmAgent, RlConfig, Trainer};
use emorl_lm::{DType, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32)?,
        Some(p) => Model::load(p, DType::F32)?,
    };
    let kind = args.get(1).map_or("llm-erm", String::as_str);
    let updates: usize = match args.get(2) {
        Some(u) => u.parse()?,
        None => 3,
    };
    println!(
        "model {} ({} layers, hidden {}, vocab {}), agent {kind}, torch threads {}",
        model.source().display(),
        model.n_layers(),
        model.hidden_size(),
        model.vocab_size(),
        tch::get_num_threads()
    );
    let agent = LlmAgent::from_id(model, kind, AgentConfig::default())?;
    let cfg = RlConfig {
        updates,
        ..RlConfig::default()
    };
    let mut trainer = Trainer::new(agent, cfg)?;
    let mut times = Vec::new();
    for _ in 0..updates {
        let s = trainer.update()?;
        println!(
            "update {}: {:.2} s, reward {:.3} ± {:.3}, kl {:.5}, entropy {:.3}, loss {:.4}, grad {:.4}, tokens {:.1}",
            s.update, s.seconds, s.reward_mean, s.reward_std, s.kl, s.entropy, s.loss, s.grad_norm, s.response_tokens
        );
        times.push(s.seconds);
    }
    times.sort_by(f64::total_cmp);
    if let Some(m) = times.get(times.len() / 2) {
        println!("median update time: {m:.2} s");
    }
    Ok(())
}
