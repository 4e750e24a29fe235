//! A terminal loop for a person to play the dialogue environment: type a
//! response, see the user's reply, the reward, the hidden safety score and
//! the emotional context after every turn.
//!
//! Commands: `/quit` stops, `/feeling WORD` reports how you feel for the next
//! response (a `[feeling: WORD]` tag inside a response works too).

use crate::dialogue::{describe_social, Dialogue};
use crate::error::TextEnvError;
use crate::metrics::EpisodeMetrics;
use emorl_core::Env;
use std::io::{BufRead, Write};

/// What happened in a played episode.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaySummary {
    pub turns: usize,
    pub total_reward: f64,
    /// The episode reached its end (rather than `/quit` or end of input).
    pub finished: bool,
    pub metrics: EpisodeMetrics,
}

/// Plays one episode of `env` (reset with `seed`) on `input`/`output`.
pub fn play<R: BufRead, W: Write>(
    env: &mut Dialogue,
    seed: u64,
    mut input: R,
    mut output: W,
) -> Result<PlaySummary, TextEnvError> {
    let (obs, _) = env.reset(Some(seed));
    writeln!(
        output,
        "You are the assistant. Type a reply and press Enter; /quit stops, /feeling WORD reports how you feel."
    )?;
    for t in &obs.history {
        writeln!(output, "{}: {}", t.speaker.name(), t.text)?;
    }
    writeln!(output, "User: {}", obs.user_message)?;
    if let Some(s) = env.context().social {
        writeln!(output, "  context: {}", describe_social(&s))?;
    }
    let mut turns = 0;
    let mut total = 0.0;
    let mut finished = false;
    let mut line = String::new();
    loop {
        write!(output, "> ")?;
        output.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            break;
        }
        let reply = line.trim();
        if reply == "/quit" {
            break;
        }
        if let Some(word) = reply.strip_prefix("/feeling") {
            let word = word.trim();
            if word.is_empty() {
                writeln!(output, "  usage: /feeling WORD (e.g. /feeling calm)")?;
            } else {
                env.report_feeling(word);
                writeln!(output, "  noted: feeling {word}")?;
            }
            continue;
        }
        let step = env.step(&reply.to_string());
        turns += 1;
        total += step.reward;
        let info = |k: &str| step.info.get(k).copied().unwrap_or(f64::NAN);
        writeln!(
            output,
            "  reward {:+.2} (fit {:.2}, relevance {:.2}, degeneracy {:.2}) | hidden safety {:.2} | user satisfaction {:.2}",
            step.reward,
            info("fit"),
            info("relevance"),
            info("degeneracy"),
            info("hidden_safety"),
            info("user_satisfaction"),
        )?;
        if let Some(c) = step.info.get("feeling_coherence") {
            writeln!(output, "  feeling coherence {c:.2}")?;
        }
        if !step.obs.user_message.is_empty() {
            writeln!(output, "User: {}", step.obs.user_message)?;
        }
        if let Some(s) = &step.context.social {
            writeln!(output, "  context: {}", describe_social(s))?;
        }
        if step.done() {
            finished = true;
            writeln!(
                output,
                "Conversation {} after {turns} turns.",
                if step.terminated {
                    "ended"
                } else {
                    "cut off at the turn limit"
                }
            )?;
            break;
        }
    }
    let metrics = env.metrics();
    writeln!(
        output,
        "Return {:.2} | safety rate {:.0}% | helpfulness {:.2} | adaptation speed {} | emotional coherence {}",
        metrics.total_reward,
        100.0 * metrics.safety_rate,
        metrics.helpfulness,
        metrics
            .adaptation_speed
            .map_or("-".to_string(), |a| format!("{a:.1} turns")),
        metrics
            .emotional_coherence
            .map_or("-".to_string(), |c| format!("{c:.2}")),
    )?;
    output.flush()?;
    Ok(PlaySummary {
        turns,
        total_reward: total,
        finished,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::DialogueConfig;
    use crate::scenarios::ScenarioKind;

    #[test]
    fn scripted_session() {
        let config = DialogueConfig {
            scenarios: vec![ScenarioKind::Pleased],
            ..DialogueConfig::default()
        };
        let mut env = Dialogue::new(config).expect("config");
        let input = "/feeling happy\nYou're so welcome, glad it worked!\n";
        let mut out = Vec::new();
        let s = play(&mut env, 9, input.as_bytes(), &mut out).expect("play");
        let text = String::from_utf8(out).expect("utf8");
        assert!(s.finished && s.turns == 1, "{text}");
        assert!(text.contains("hidden safety 1.00"), "{text}");
        assert!(text.contains("noted: feeling happy"), "{text}");
        assert!(text.contains("context: safety_flag=false"), "{text}");
        assert!(text.contains("feeling coherence"), "{text}");
        assert!(s.total_reward > 1.0);
    }

    #[test]
    fn stops_on_quit_and_eof() {
        let mut env = Dialogue::with_defaults();
        let mut out = Vec::new();
        let s = play(&mut env, 1, "/quit\n".as_bytes(), &mut out).expect("play");
        assert!(!s.finished && s.turns == 0);
        let mut out = Vec::new();
        let s = play(&mut env, 1, "hello there\n".as_bytes(), &mut out).expect("play");
        assert_eq!(s.turns, 1);
    }
}
