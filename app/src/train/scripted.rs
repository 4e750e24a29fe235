//! `emorl train` for the scripted dialogue policies (no learning: played,
//! logged and sampled like any run).

use super::run::log_config;
use super::spec::{AgentSettings, ScriptedConfig, TrainConfig};
use crate::progress::progress;
use anyhow::{bail, Context, Result};
use emorl_core::{ByRef, Env, EpisodeStatistics, RngHandle, TimeLimit};
use emorl_envs_text::{Dialogue, PolicyKind, ScriptedPolicy};
use emorl_log::RunDir;
use std::time::Instant;

/// A scripted dialogue run's environment and options, built (data files
/// read) before its run directory exists, so that bad input leaves none.
pub struct PreparedScripted {
    env: Dialogue,
    agent_cfg: ScriptedConfig,
}

pub fn prepare_scripted_dialogue(cfg: &TrainConfig) -> Result<PreparedScripted> {
    let AgentSettings::Scripted(agent_cfg) = cfg.settings()?.clone() else {
        bail!("agent '{}' is not a scripted policy", cfg.agent);
    };
    let env = Dialogue::new(cfg.dialogue()?.clone()).context("dialogue environment")?;
    Ok(PreparedScripted { env, agent_cfg })
}

/// Runs a scripted policy for `cfg.episodes` dialogue episodes, logging the
/// return, the four dialogue metrics and sample conversations.
pub fn train_scripted_dialogue(
    cfg: &TrainConfig,
    kind: PolicyKind,
    prepared: PreparedScripted,
    run: &RunDir,
) -> Result<()> {
    let PreparedScripted { mut env, agent_cfg } = prepared;
    env.set_rng(RngHandle::new(cfg.rng, cfg.seed));
    let mut policy = ScriptedPolicy::new(kind, cfg.seed ^ 0x5eed).with_feelings(agent_cfg.feelings);
    let mut tb = run.event_writer()?;
    let mut metrics = run.metrics_writer()?;
    log_config(&mut tb, cfg)?;
    let pb = progress(cfg.episodes as u64, "episodes");
    let start = Instant::now();
    let mut returns = Vec::with_capacity(cfg.episodes);
    let mut turns_total = 0usize;
    for ep in 0..cfg.episodes {
        let mut episode = EpisodeStatistics::new(TimeLimit::new(ByRef(&mut env), cfg.max_steps));
        let (mut obs, _) = episode.reset(if ep == 0 { Some(cfg.seed) } else { None });
        loop {
            let reply = policy.respond(episode.inner().inner(), &obs);
            let step = episode.step(&reply);
            turns_total += 1;
            if step.done() {
                break;
            }
            obs = step.obs;
        }
        let ret = episode.episode_return();
        let m = env.metrics();
        let step = ep as i64;
        let mut record: Vec<(String, f64)> = vec![
            ("charts/episodic_return".into(), ret),
            (
                "charts/SPS".into(),
                turns_total as f64 / start.elapsed().as_secs_f64().max(1e-9),
            ),
        ];
        for (name, v) in m.scalars() {
            record.push((format!("dialogue/{name}"), v));
        }
        for (tag, v) in &record {
            tb.add_scalar(tag, *v, step)?;
        }
        let fields: Vec<(&str, f64)> = record.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.record(step, &fields)?;
        if agent_cfg.sample_every > 0 && ep % agent_cfg.sample_every == 0 {
            tb.add_text("samples/conversation", &env.transcript_markdown(), step)?;
        }
        returns.push(ret);
        pb.set_message(format!("return {ret:.2}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!(
        "{} on dialogue: mean return {:.3} over {} episodes",
        kind.id(),
        emorl_core::numeric::mean(&returns),
        cfg.episodes
    );
    Ok(())
}
