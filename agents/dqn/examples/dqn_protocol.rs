//! Runs the Exp 16b or Exp 18 protocol for some agents over many seeds, in
//! parallel, and prints per-agent means and the wall time.
//!
//! `cargo run --release -p emorl-agents-dqn --example dqn_protocol -- 16b 30 dqn,fear-dqn-coupled [workers]`
//! `cargo run --release -p emorl-agents-dqn --example dqn_protocol -- 18 30 dqn,fear-dqn-coupled-cliff`

use emorl_agents_dqn::protocol::{
    cliff_seed, coupled_grid_seed, CliffSettings, CoupledGridSettings,
};
use emorl_agents_dqn::registry;
use emorl_core::numeric::{mean, std_dev};
use emorl_stats::run_seeds;
use std::time::Instant;

fn summary(xs: &[f64]) -> String {
    format!("{:.3} ± {:.3}", mean(xs), std_dev(xs, 0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let experiment = args.first().map_or("16b", String::as_str);
    let n_seeds: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let agents = args.get(2).map_or("dqn,fear-dqn-coupled", String::as_str);
    let workers = match args.get(3) {
        Some(w) => w.parse()?,
        None => emorl_core::parallelism::cores(),
    };
    let seeds: Vec<u64> = (0..n_seeds).collect();
    let total = Instant::now();
    for id in agents.split(',') {
        let cfg = (registry().get(id)?.make)();
        let t = Instant::now();
        match experiment {
            "16b" => {
                let settings = CoupledGridSettings::default();
                let r = run_seeds(&seeds, workers, None, &|_| {}, |s| {
                    coupled_grid_seed(s, &cfg, &settings)
                })?;
                let f = |g: fn(&emorl_agents_dqn::protocol::CoupledGridSeed) -> f64| {
                    summary(&r.iter().map(g).collect::<Vec<_>>())
                };
                println!(
                    "{id:>24}: episodes to threat criterion {}, to reward criterion {}, final threat distance {}, final reward {}, threat hits {}  ({:.1} s)",
                    f(|s| s.episodes_to_threat_criterion as f64),
                    f(|s| s.episodes_to_reward_criterion as f64),
                    f(|s| s.final_threat_distance),
                    f(|s| s.final_reward),
                    f(|s| s.threat_hits as f64),
                    t.elapsed().as_secs_f64()
                );
            }
            "18" => {
                let settings = CliffSettings::default();
                let r = run_seeds(&seeds, workers, None, &|_| {}, |s| {
                    cliff_seed(s, &cfg, &settings)
                })?;
                let f = |g: fn(&emorl_agents_dqn::protocol::CliffSeed) -> f64| {
                    summary(&r.iter().map(g).collect::<Vec<_>>())
                };
                println!(
                    "{id:>24}: survival {}, goal {}, mean reward {}, episodes to 70% survival {}  ({:.1} s)",
                    f(|s| s.survival_rate),
                    f(|s| s.goal_rate),
                    f(|s| s.mean_reward),
                    f(|s| s.episodes_to_survival_criterion as f64),
                    t.elapsed().as_secs_f64()
                );
            }
            other => return Err(format!("unknown experiment '{other}' (16b or 18)").into()),
        }
    }
    println!(
        "experiment {experiment}: {n_seeds} seeds, {workers} workers, wall time {:.1} s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
