//! `emorl chat` (talk with a trained LLM agent) and `emorl generate
//! --checkpoint` (one answer of a trained agent).

use crate::llm_setup::{checkpoint_model, load_model_for_generation, Weights};
use anyhow::{anyhow, Result};
use emorl_agents_llm::{read_manifest, LlmAgent};
use emorl_core::EmotionalContext;
use emorl_envs_text::{DialogueObs, Speaker, Turn};
use std::io::{BufRead, Write};
use std::path::Path;

/// `emorl chat`: the user types, a trained agent answers and shows its emotion.
/// `emorl generate --checkpoint DIR`: one answer of a trained agent to the
/// user message `prompt`, under the emotions of `emotion` (`fear=0.9,…`) or
/// the state its encoder computes from the message. The state used goes to
/// standard error.
pub fn generate_with_agent(
    checkpoint: &Path,
    model: Option<&str>,
    weights: Weights,
    prompt: &str,
    emotion: Option<&str>,
    seed: u64,
) -> Result<String> {
    use emorl_agents_llm::eval::{generate_with_emotion, parse_emotion_values, prompt_observation};
    let forced = emotion
        .map(parse_emotion_values)
        .transpose()
        .map_err(|e| anyhow!("--emotion: {e}"))?;
    let manifest =
        read_manifest(checkpoint).map_err(|e| anyhow!("{}: {e}", checkpoint.display()))?;
    let (model, _) = load_model_for_generation(&checkpoint_model(&manifest, model), weights)?;
    let mut agent = LlmAgent::load(checkpoint, model).map_err(|e| anyhow!("{e}"))?;
    let obs = prompt_observation(prompt);
    let generation = match forced {
        Some(phasic) => {
            let named: Vec<String> = emorl_agents_llm::EMOTIONS
                .iter()
                .zip(phasic)
                .map(|(n, v)| format!("{n}={v:.2}"))
                .collect();
            eprintln!("emotion (given): {}", named.join(" "));
            generate_with_emotion(&mut agent, &obs, phasic, seed)?
        }
        None => {
            let social = emorl_envs_text::signals::social_context(&[], prompt, 0.0, 0.0, 0.0, 0);
            let context = EmotionalContext {
                social: Some(social),
                ..EmotionalContext::default()
            };
            agent.reset_episode();
            let g = agent.act_generation(&obs, &context)?;
            let named: Vec<String> = agent
                .last_emotion()
                .iter()
                .map(|(n, v)| format!("{n}={v:.2}"))
                .collect();
            eprintln!("emotion (from the message): {}", named.join(" "));
            g
        }
    };
    Ok(generation.text)
}

pub fn chat(
    checkpoint: &Path,
    model: Option<&str>,
    weights: Weights,
    max_turns: usize,
) -> Result<()> {
    let manifest =
        read_manifest(checkpoint).map_err(|e| anyhow!("{}: {e}", checkpoint.display()))?;
    let (model, held) = load_model_for_generation(&checkpoint_model(&manifest, model), weights)?;
    let mut agent = LlmAgent::load(checkpoint, model).map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "agent {} on {} ({held}) — type a message, an empty line or /quit ends",
        manifest.agent.id(),
        manifest.base_model.name
    );
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut history: Vec<Turn> = Vec::new();
    let (mut cum_pos, mut cum_neg, mut failed) = (0.0, 0.0, 0u32);
    agent.reset_episode();
    for turn in 0..max_turns {
        write!(out, "you> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let message = line.trim().to_string();
        if message.is_empty() || message == "/quit" {
            break;
        }
        let hist: Vec<(Speaker, &str)> = history
            .iter()
            .map(|t| (t.speaker, t.text.as_str()))
            .collect();
        let social = emorl_envs_text::signals::social_context(
            &hist, &message, 0.0, cum_pos, cum_neg, failed,
        );
        failed = social.failed_attempts;
        let s = social.user_satisfaction;
        if s >= 0.6 {
            cum_pos += s;
        } else if s < 0.4 {
            cum_neg += 1.0 - s;
        }
        let context = EmotionalContext {
            social: Some(social),
            ..EmotionalContext::default()
        };
        // Seed 001's phase 3: the user's reply is the feedback on the last
        // response; the ERM takes one online step toward its targets.
        if turn > 0 {
            if let Some(loss) = agent.erm_feedback_step(&context)? {
                tracing::debug!(loss, "ERM feedback step");
            }
        }
        let obs = DialogueObs {
            history: history.clone(),
            user_message: message.clone(),
            turn,
            max_turns,
            ended: false,
        };
        let reply = agent.act(&obs, &context)?;
        let emotion: Vec<String> = agent
            .last_emotion()
            .iter()
            .map(|(n, v)| format!("{n} {v:.2}"))
            .collect();
        writeln!(out, "agent> {}", reply.trim())?;
        writeln!(out, "       [{}]", emotion.join(", "))?;
        history.push(Turn {
            speaker: Speaker::User,
            text: message,
        });
        history.push(Turn {
            speaker: Speaker::Assistant,
            text: reply,
        });
    }
    Ok(())
}
