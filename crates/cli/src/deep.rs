//! `emorl train` for DQN agents (`dqn`, `fear-dqn`, `fear-dqn-coupled`, …).

use crate::config;
use crate::train::{log_config, progress, TrainConfig};
use anyhow::{anyhow, Context, Result};
use emorl_agents_dqn::{protocol::seed_everything, run_episode, DqnAgent, DqnConfig};
use emorl_core::{DiscreteEnv, RngHandle};
use emorl_log::RunDir;
use std::time::Instant;

/// Trains a DQN agent for `cfg.episodes` episodes, logging CleanRL's tags plus
/// survival, threat distance and fear, and a Q-value histogram.
pub fn train_dqn(
    cfg: &TrainConfig,
    make_env: fn(RngHandle) -> Box<dyn DiscreteEnv>,
    run: &RunDir,
) -> Result<()> {
    let agent_cfg: DqnConfig = config::from_table("agent_config", cfg.agent_config.clone())?;
    // Same seed and config ⇒ same numbers: one libtorch thread, seeded streams.
    seed_everything(cfg.seed);
    let rng = RngHandle::new(cfg.rng, cfg.seed);
    let mut env = make_env(rng.clone());
    let n_features = env.features(0).len();
    let mut agent = DqnAgent::new(n_features, env.n_actions(), agent_cfg, &rng)
        .map_err(|e| anyhow!("agent '{}': {e}", cfg.agent))?;
    let mut tb = run.event_writer()?;
    let mut metrics = run.metrics_writer()?;
    log_config(&mut tb, cfg)?;
    let pb = progress(cfg.episodes as u64, "train");
    let start = Instant::now();
    let mut total_steps = 0usize;
    let mut returns = Vec::with_capacity(cfg.episodes);
    for ep in 0..cfg.episodes {
        let stats = run_episode(env.as_mut(), &mut agent, &rng, cfg.max_steps, true)
            .with_context(|| format!("episode {ep}"))?;
        total_steps += stats.steps;
        let step = ep as i64;
        let mut record: Vec<(String, f64)> = stats
            .scalars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        record.push((
            "charts/SPS".into(),
            total_steps as f64 / start.elapsed().as_secs_f64().max(1e-9),
        ));
        for (tag, v) in &record {
            tb.add_scalar(tag, *v, step)?;
        }
        let fields: Vec<(&str, f64)> = record.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.record(step, &fields)?;
        let last = ep + 1 == cfg.episodes;
        if cfg.histogram_every > 0 && (ep % cfg.histogram_every == 0 || last) {
            let mut q = Vec::new();
            for s in 0..env.n_states() {
                let f = env.features(s);
                if let Ok(values) = agent.q_values(&f, None) {
                    q.extend(values.into_iter().map(f64::from));
                }
            }
            if !q.is_empty() {
                tb.add_histogram("q_values", &q, step)?;
            }
        }
        returns.push(stats.episode_return);
        pb.set_message(format!("return {:.3}", stats.episode_return));
        pb.inc(1);
    }
    pb.finish_and_clear();
    agent
        .save(run.checkpoints_dir()?.join("dqn"))
        .context("saving the checkpoint")?;
    let tail = (returns.len() / 10).max(1);
    eprintln!(
        "trained {} on {} for {} episodes ({total_steps} steps, {:.1}s, {:.0} steps/s); mean return of the last {tail}: {:.4}",
        cfg.agent,
        cfg.env,
        cfg.episodes,
        start.elapsed().as_secs_f64(),
        total_steps as f64 / start.elapsed().as_secs_f64().max(1e-9),
        emorl_core::numeric::mean(&returns[returns.len() - tail..])
    );
    Ok(())
}
