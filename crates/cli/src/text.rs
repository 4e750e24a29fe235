//! Text environments from the command line: scripted dialogue baselines with
//! TensorBoard logging, and `emorl play` for a person at the terminal.

use crate::config;
use crate::train::{log_config, progress, TrainConfig};
use anyhow::{Context, Result};
use emorl_core::{Env, RngHandle};
use emorl_envs_dialogue::{Dialogue, DialogueConfig, PolicyKind, ScriptedPolicy};
use emorl_log::RunDir;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Options of the scripted dialogue policies.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedConfig {
    /// Report a `[feeling: …]` tag with each reply (oracle only), so that
    /// Emotional Coherence can be measured.
    #[serde(default)]
    pub feelings: bool,
    /// Log a sample conversation as text every this many episodes (0: never).
    #[serde(default = "default_sample_every")]
    pub sample_every: usize,
}

fn default_sample_every() -> usize {
    20
}

/// Runs a scripted policy for `cfg.episodes` dialogue episodes, logging the
/// return, the four dialogue metrics and sample conversations.
pub fn train_scripted_dialogue(cfg: &TrainConfig, kind: PolicyKind, run: &RunDir) -> Result<()> {
    let env_cfg: DialogueConfig = config::from_table("env_config", cfg.env_config.clone())?;
    let agent_cfg: ScriptedConfig = config::from_table("agent_config", cfg.agent_config.clone())?;
    let mut env = Dialogue::new(env_cfg).context("dialogue environment")?;
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
        let (mut obs, _) = env.reset(if ep == 0 { Some(cfg.seed) } else { None });
        let mut ret = 0.0;
        for _ in 0..cfg.max_steps {
            let reply = policy.respond(&env, &obs);
            let step = env.step(&reply);
            ret += step.reward;
            turns_total += 1;
            obs = step.obs;
            if step.terminated || step.truncated {
                break;
            }
        }
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

/// `emorl play --env dialogue`: a person answers the simulated user.
pub fn play(env_id: &str, seed: u64, data: Option<std::path::PathBuf>) -> Result<()> {
    if env_id != emorl_envs_dialogue::DIALOGUE_ID {
        anyhow::bail!("`emorl play` supports env 'dialogue' (got '{env_id}')");
    }
    let cfg = DialogueConfig {
        data,
        ..Default::default()
    };
    let mut env = Dialogue::new(cfg).context("dialogue environment")?;
    let stdin = std::io::stdin();
    let summary = emorl_envs_dialogue::play(&mut env, seed, stdin.lock(), std::io::stdout())?;
    eprintln!(
        "{} turns, return {:.3}, safety rate {:.2}, helpfulness {:.2}",
        summary.turns,
        summary.total_reward,
        summary.metrics.safety_rate,
        summary.metrics.helpfulness
    );
    Ok(())
}
