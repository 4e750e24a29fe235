//! Scripted baseline policies for the dialogue environment.
//!
//! * `random-template`: a canned response drawn uniformly from a fixed pool
//!   of mixed styles (cautious, warm, elaborate, curt, compliant,
//!   degenerate), blind to the conversation: the "random action" baseline.
//! * `generic`: always the same polite answer.
//! * `oracle`: sees the scenario label and topic ([`Dialogue::oracle_view`])
//!   and writes a response in the right style from the topic's material. With
//!   [`ScriptedPolicy::with_feelings`] it also reports the feeling most
//!   coherent with the context, exercising the emotional-coherence metric.

use crate::dialogue::{Dialogue, DialogueConfig, DialogueObs};
use crate::error::TextEnvError;
use crate::metrics::{most_coherent_feeling, EpisodeMetrics};
use crate::scoring::Need;
use emorl_core::{EmoRng, Env, RngKind};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub const RANDOM_TEMPLATE_ID: &str = "random-template";
pub const GENERIC_ID: &str = "generic";
pub const ORACLE_ID: &str = "oracle";

/// The answer of the `generic` policy.
pub const GENERIC_ANSWER: &str =
    "Thank you for your message. I understand, and I'm glad to help however I can.";

/// The pool of the `random-template` policy.
pub const RANDOM_POOL: &[&str] = &[
    "Sure, here's how to do it: step 1, get everything ready; step 2, follow through.",
    "I can't help with that.",
    "Thanks! Glad I could help. Take care!",
    "Maybe try a different approach instead?",
    "That's an interesting question. For example, it works because of several factors. What do you think?",
    "ok",
    "I don't know.",
    "yes yes yes yes yes yes yes yes yes yes yes yes",
    "Of course! You'll need a few things first, then simply do it.",
    "Please be careful, that could be dangerous.",
    "Hmm.",
    "The answer depends on many things.",
];

/// Which scripted policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    RandomTemplate,
    Generic,
    Oracle,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::RandomTemplate,
        PolicyKind::Generic,
        PolicyKind::Oracle,
    ];

    pub fn id(self) -> &'static str {
        match self {
            PolicyKind::RandomTemplate => RANDOM_TEMPLATE_ID,
            PolicyKind::Generic => GENERIC_ID,
            PolicyKind::Oracle => ORACLE_ID,
        }
    }
}

impl FromStr for PolicyKind {
    type Err = TextEnvError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.id() == s)
            .ok_or_else(|| {
                TextEnvError::InvalidConfig(format!(
                    "unknown dialogue policy '{s}' (known: random-template, generic, oracle)"
                ))
            })
    }
}

/// A scripted policy with its own random stream.
#[derive(Clone, Debug)]
pub struct ScriptedPolicy {
    kind: PolicyKind,
    rng: EmoRng,
    feelings: bool,
}

impl ScriptedPolicy {
    pub fn new(kind: PolicyKind, seed: u64) -> Self {
        ScriptedPolicy {
            kind,
            rng: EmoRng::new(RngKind::Fast, seed),
            feelings: false,
        }
    }

    /// Also report a feeling tag (oracle only).
    pub fn with_feelings(mut self, on: bool) -> Self {
        self.feelings = on;
        self
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The response to the current observation.
    pub fn respond(&mut self, env: &Dialogue, obs: &DialogueObs) -> String {
        match self.kind {
            PolicyKind::Generic => GENERIC_ANSWER.to_string(),
            PolicyKind::RandomTemplate => {
                RANDOM_POOL[self.rng.randint(RANDOM_POOL.len())].to_string()
            }
            PolicyKind::Oracle => {
                let text = oracle_response(env, obs);
                if self.feelings {
                    let ctx = env.context().social.unwrap_or_default();
                    format!("[feeling: {}] {text}", most_coherent_feeling(&ctx))
                } else {
                    text
                }
            }
        }
    }
}

fn first_two(words: &[String]) -> (String, String) {
    let a = words.first().cloned().unwrap_or_else(|| "this".into());
    let b = words.get(1).cloned().unwrap_or_else(|| a.clone());
    (a, b)
}

/// The oracle's response: the right style for what the turn calls for.
pub fn oracle_response(env: &Dialogue, obs: &DialogueObs) -> String {
    let Some(view) = env.oracle_view() else {
        return "Hello! How can I help?".to_string();
    };
    let (k1, k2) = first_two(&view.keywords);
    let repeat = obs.turn > 0;
    match (view.need, view.benign, view.unsafe_topic) {
        (Need::Caution, _, Some(u)) => {
            if repeat {
                format!(
                    "I understand you really want this, but I still won't help with {}: it's dangerous and illegal or harmful however it's framed. Instead, {}. If something difficult is going on, please reach out to someone you trust.",
                    u.short, u.safer
                )
            } else {
                format!(
                    "I'm sorry, but I can't help with {}: it's dangerous and could seriously harm people. Instead, {}. If you're going through something difficult, please reach out to someone you trust.",
                    u.short, u.safer
                )
            }
        }
        (Need::Caution, _, None) => format!(
            "That sounds worrying, and I want you to stay safe, so please be careful with {k1}. If it feels serious, reach out to someone you trust or a professional. Would a safer alternative help instead?"
        ),
        (Need::Alternative, Some(t), _) => {
            if view.failed_attempts >= 2 {
                format!(
                    "I'm sorry this is still frustrating. Let's try something else entirely: rather than what we tried, {}. What do you think?",
                    lower_first(t.tip)
                )
            } else {
                format!(
                    "I'm sorry the earlier advice didn't work, that's frustrating. Let's try a different approach instead: {}. Would that work for you?",
                    t.alt_tip
                )
            }
        }
        (Need::Alternative, None, _) => format!(
            "I'm sorry, I hear you, that sounds frustrating. Let's try a different approach to {k1} instead: what if you look at {k2} from another angle? Would that help?"
        ),
        (Need::Elaborate, Some(t), _) => format!(
            "Great question! {} In other words, it all comes down to how {} and {} interact, which is why small changes matter so much. What part of it would you like to explore next?",
            t.detail, k1, k2
        ),
        (Need::Elaborate, None, _) => format!(
            "Really? That's surprising about {k1}! Let me explain why that might happen: for example, {k2} often changes more than people expect, because small things add up. What do you think caused it?"
        ),
        (Need::Warm, Some(t), _) => {
            format!("You're very welcome, I'm so glad it helped! Enjoy {}.", t.subject.replace("my ", "your "))
        }
        (Need::Warm, _, _) => format!("Oh, I'm so glad to hear about {k1}! Take care."),
        (Need::Inform, Some(t), _) => format!(
            "Here's a practical way to do it: {} This works because it tackles the most common cause first, for example with your {} and {}. Would you like more detail on any step?",
            t.tip, k1, k2
        ),
        (Need::Inform, _, _) => format!(
            "Good point about {k1}. Specifically, {k2} matters here because it shapes what happens next, so it's worth a closer look first. Would you like to talk about it more?"
        ),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Mean results of a policy over many episodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub policy: String,
    pub episodes: usize,
    pub mean_return: f64,
    pub std_return: f64,
    pub mean_safety_rate: f64,
    pub mean_helpfulness: f64,
    pub mean_turns: f64,
}

/// Runs `episodes` episodes (episode `i` reset with seed `seed + i`).
pub fn evaluate(
    kind: PolicyKind,
    config: &DialogueConfig,
    episodes: usize,
    seed: u64,
) -> Result<EvalSummary, TextEnvError> {
    let mut env = Dialogue::new(config.clone())?;
    let mut policy = ScriptedPolicy::new(kind, seed ^ 0x5eed);
    let mut metrics: Vec<EpisodeMetrics> = Vec::with_capacity(episodes);
    for i in 0..episodes {
        let (mut obs, _) = env.reset(Some(seed.wrapping_add(i as u64)));
        for _ in 0..config.max_turns {
            let action = policy.respond(&env, &obs);
            let step = env.step(&action);
            obs = step.obs;
            if step.terminated || step.truncated {
                break;
            }
        }
        metrics.push(env.metrics());
    }
    let n = metrics.len().max(1) as f64;
    let mean = |f: &dyn Fn(&EpisodeMetrics) -> f64| metrics.iter().map(f).sum::<f64>() / n;
    let mean_return = mean(&|m| m.total_reward);
    let var = mean(&|m| (m.total_reward - mean_return).powi(2));
    Ok(EvalSummary {
        policy: kind.id().to_string(),
        episodes,
        mean_return,
        std_return: var.sqrt(),
        mean_safety_rate: mean(&|m| m.safety_rate),
        mean_helpfulness: mean(&|m| m.helpfulness),
        mean_turns: mean(&|m| m.turns as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for k in PolicyKind::ALL {
            assert_eq!(k.id().parse::<PolicyKind>().ok(), Some(k));
        }
        assert!("nope".parse::<PolicyKind>().is_err());
    }

    #[test]
    fn oracle_covers_every_scenario() {
        use crate::scenarios::ScenarioKind;
        for kind in ScenarioKind::TEMPLATED {
            let config = DialogueConfig {
                scenarios: vec![kind],
                ..DialogueConfig::default()
            };
            let s = evaluate(PolicyKind::Oracle, &config, 20, 7).expect("eval");
            assert!(s.mean_return > 1.0, "{kind:?}: {s:?}");
            assert!(s.mean_safety_rate > 0.99, "{kind:?}: {s:?}");
        }
    }
}
