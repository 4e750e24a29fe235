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

/// A scripted dialogue run's environment and options, built (data files
/// read) before its run directory exists, so that bad input leaves none.
pub struct PreparedScripted {
    env: Dialogue,
    agent_cfg: ScriptedConfig,
}

pub fn prepare_scripted_dialogue(cfg: &TrainConfig) -> Result<PreparedScripted> {
    let env_cfg: DialogueConfig = config::from_table("env_config", cfg.env_config.clone())?;
    let agent_cfg: ScriptedConfig = config::from_table("agent_config", cfg.agent_config.clone())?;
    let env = Dialogue::new(env_cfg).context("dialogue environment")?;
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

/// `emorl play --env ID`: a person types the agent's responses. `dialogue`
/// shows the simulated user's replies, reward, hidden safety score and
/// emotional context; `igt` and `gridworld-text` show the observation text,
/// reward and emotional context.
pub fn play(env_id: &str, seed: u64, data: Option<std::path::PathBuf>) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match env_id {
        emorl_envs_dialogue::DIALOGUE_ID => {
            let cfg = DialogueConfig {
                data,
                ..Default::default()
            };
            let mut env = Dialogue::new(cfg).context("dialogue environment")?;
            let summary = emorl_envs_dialogue::play(&mut env, seed, stdin.lock(), stdout.lock())?;
            eprintln!(
                "{} turns, return {:.3}, safety rate {:.2}, helpfulness {:.2}",
                summary.turns,
                summary.total_reward,
                summary.metrics.safety_rate,
                summary.metrics.helpfulness
            );
        }
        emorl_envs_dialogue::IGT_ID => {
            let mut env = emorl_envs_dialogue::Igt::new(Default::default())?;
            env.set_rng(RngHandle::new(emorl_core::RngKind::Fast, seed));
            let (steps, ret) =
                play_text(&mut env, seed, |o| o.to_prompt(), stdin.lock(), stdout.lock())?;
            eprintln!("{steps} trials, return {ret:.3}, net score {}", env.net_score());
        }
        emorl_envs_dialogue::GRIDWORLD_TEXT_ID => {
            let mut env = emorl_envs_dialogue::TextGrid::new(
                emorl_envs_gridworld::ThreatGrid::default(),
                Default::default(),
            )?;
            let (steps, ret) =
                play_text(&mut env, seed, |o| o.to_prompt(), stdin.lock(), stdout.lock())?;
            eprintln!("{steps} moves, return {ret:.3}");
        }
        other => anyhow::bail!(
            "`emorl play` supports the text environments dialogue, igt and gridworld-text (got '{other}')"
        ),
    }
    Ok(())
}

/// A terminal loop for any text environment: show the observation, read a
/// response line, step, show reward and emotional context. `/quit` or the end
/// of input stops. Returns (steps, return).
pub fn play_text<E, R, W>(
    env: &mut E,
    seed: u64,
    prompt: impl Fn(&E::Obs) -> String,
    mut input: R,
    mut output: W,
) -> Result<(usize, f64)>
where
    E: Env<Action = String>,
    R: std::io::BufRead,
    W: std::io::Write,
{
    let (mut obs, _) = env.reset(Some(seed));
    let (mut steps, mut ret) = (0usize, 0.0);
    loop {
        writeln!(output, "{}", prompt(&obs))?;
        write!(output, "> ")?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 || line.trim() == "/quit" {
            break;
        }
        let step = env.step(&line.trim().to_string());
        steps += 1;
        ret += step.reward;
        writeln!(
            output,
            "reward {:+.3} | {}",
            step.reward,
            emorl_envs_dialogue::textgrid::describe_context(&step.context)
        )?;
        if step.done() {
            writeln!(output, "Episode over after {steps} steps; return {ret:.3}.")?;
            break;
        }
        obs = step.obs;
    }
    Ok((steps, ret))
}
