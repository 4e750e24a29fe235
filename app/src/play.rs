//! `emorl play ENV`: play a text environment yourself in the terminal.

use anyhow::{Context, Result};
use emorl_core::{Env, RngHandle};
use emorl_envs_text::{Dialogue, DialogueConfig};

/// `emorl play --env ID`: a person types the agent's responses. `dialogue`
/// shows the simulated user's replies, reward, hidden safety score and
/// emotional context; `igt` and `gridworld-text` show the observation text,
/// reward and emotional context.
pub fn play(env_id: &str, seed: u64, data: Option<std::path::PathBuf>) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match env_id {
        emorl_envs_text::DIALOGUE_ID => {
            let cfg = DialogueConfig {
                data,
                ..Default::default()
            };
            let mut env = Dialogue::new(cfg).context("dialogue environment")?;
            let summary = emorl_envs_text::play(&mut env, seed, stdin.lock(), stdout.lock())?;
            eprintln!(
                "{} turns, return {:.3}, safety rate {:.2}, helpfulness {:.2}",
                summary.turns,
                summary.total_reward,
                summary.metrics.safety_rate,
                summary.metrics.helpfulness
            );
        }
        emorl_envs_text::IGT_ID => {
            let mut env = emorl_envs_text::Igt::new(Default::default())?;
            env.set_rng(RngHandle::new(emorl_core::RngKind::Fast, seed));
            let (steps, ret) =
                play_text(&mut env, seed, |o| o.to_prompt(), stdin.lock(), stdout.lock())?;
            eprintln!("{steps} trials, return {ret:.3}, net score {}", env.net_score());
        }
        emorl_envs_text::GRIDWORLD_TEXT_ID => {
            let mut env = emorl_envs_text::TextGrid::new(
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
            emorl_envs_text::textgrid::describe_context(&step.context)
        )?;
        if step.done() {
            writeln!(output, "Episode over after {steps} steps; return {ret:.3}.")?;
            break;
        }
        obs = step.obs;
    }
    Ok((steps, ret))
}
