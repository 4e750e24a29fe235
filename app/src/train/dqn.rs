//! `emorl train` for DQN agents (`dqn`, `fear-dqn`, `fear-dqn-coupled`, …).

use super::run::{self as resume, log_config, Opened, Progress, Start};
use super::spec::{AgentSettings, TrainConfig, DQN_CHECKPOINT_EVERY};
use crate::interrupt;
use crate::progress::progress;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_dqn::{protocol::seed_everything, run_episode, DqnAgent};
use emorl_core::{DiscreteEnv, RngHandle};
use emorl_log::RunDir;
use std::path::PathBuf;
use std::time::Instant;

/// Name of the checkpoint directory under `checkpoints/`.
const CHECKPOINT: &str = "dqn";
/// The loop's progress inside the checkpoint directory.
const PROGRESS_FILE: &str = "progress.json";

/// Trains a DQN agent for `cfg.episodes` episodes, logging CleanRL's tags plus
/// survival, threat distance and fear, and a Q-value histogram; checkpoints
/// the whole training state on a schedule, at the end and on Ctrl-C, and
/// continues from the last checkpoint when resumed.
pub fn train_dqn(
    cfg: &TrainConfig,
    make_env: fn(RngHandle) -> Box<dyn DiscreteEnv>,
    start: Start<'_>,
) -> Result<PathBuf> {
    let AgentSettings::Dqn(agent_cfg) = cfg.settings()?.clone() else {
        bail!("agent '{}' is not a DQN agent", cfg.agent);
    };
    // Same seed and config ⇒ same numbers: one libtorch thread, seeded streams.
    seed_everything(cfg.seed);
    let rng = RngHandle::new(cfg.rng, cfg.seed);
    let mut env = make_env(rng.clone());
    let n_features = env.features(0).len();
    let mut agent = DqnAgent::new(n_features, env.n_actions(), *agent_cfg, &rng)
        .map_err(|e| anyhow!("agent '{}': {e}", cfg.agent))?;
    let Opened {
        run,
        resumed,
        mut state,
        complete,
    } = start.open_episodes(cfg, &rng, |run| {
        let Some(dir) = run.checkpoint(CHECKPOINT)? else {
            return Ok(None);
        };
        let saved: Progress = resume::read_json(&dir.join(PROGRESS_FILE))?
            .with_context(|| format!("{} lacks {PROGRESS_FILE}", dir.display()))?;
        agent = DqnAgent::load(&dir, &rng)
            .with_context(|| format!("cannot load the checkpoint {}", dir.display()))?;
        Ok(Some(saved))
    })?;
    if complete {
        return Ok(run.path().to_path_buf());
    }
    let first = state.episodes_done;
    let (mut tb, mut metrics) = resume::writers(&run, resumed, first)?;
    if first == 0 {
        log_config(&mut tb, cfg)?;
    }
    interrupt::catch_ctrl_c()?;
    let every = cfg.checkpoint_every.unwrap_or(DQN_CHECKPOINT_EVERY);
    let window = resume::summary_window(cfg.episodes);
    let pb = progress(cfg.episodes as u64, "train");
    pb.set_position(first as u64);
    let start = Instant::now();
    let mut total_steps = 0usize;
    for ep in first..cfg.episodes {
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
                tb.add_histogram("histograms/q_values", &q, step)?;
            }
        }
        state.finish_episode(stats.steps, stats.episode_return, window);
        pb.set_message(format!("return {:.3}", stats.episode_return));
        pb.inc(1);
        let saved = resume::end_episode(&run, cfg, ep, every, &mut state, &rng, |st| {
            save(&run, &agent, st)
        });
        if let Err(e) = saved {
            pb.finish_and_clear();
            return Err(e);
        }
    }
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "trained {} on {} for {} episodes ({} steps, {secs:.1}s, {:.0} steps/s); mean return of the last {}: {:.4}",
        cfg.agent,
        cfg.env,
        cfg.episodes,
        state.global_step,
        total_steps as f64 / secs.max(1e-9),
        state.recent_returns.len(),
        emorl_core::numeric::mean(&state.recent_returns)
    );
    Ok(run.path().to_path_buf())
}

/// Replaces `checkpoints/dqn/` with the agent's whole training state and the
/// loop's progress, as one unit.
fn save(run: &RunDir, agent: &DqnAgent, state: &Progress) -> Result<()> {
    let dir = run.begin_checkpoint(CHECKPOINT)?;
    agent.save(&dir).context("saving the checkpoint")?;
    emorl_log::write_atomic(&dir.join(PROGRESS_FILE), &serde_json::to_vec(state)?)?;
    run.commit_checkpoint(CHECKPOINT)?;
    Ok(())
}
