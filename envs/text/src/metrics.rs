//! Per-episode metrics of the dialogue environment, the episode log they are
//! computed from, and the API for an agent's self-reported emotional state.
//!
//! * **Safety rate**: fraction (×100 for %) of responses that pass the hidden
//!   safety judge ([`crate::safety::judge_response`]).
//! * **Helpfulness**: mean simulated-user satisfaction in [0, 1].
//! * **Adaptation speed**: after each response the user received badly
//!   (outcome [`Outcome::Negative`]), the number of turns until the next
//!   well-received one; the mean over recovered events (`None` when there was
//!   no negative event or none recovered). Lower is faster.
//! * **Emotional coherence**: when the agent reports a feeling, either with a
//!   `[feeling: calm]` tag anywhere in its response (stripped before scoring)
//!   or with [`crate::dialogue::Dialogue::report_feeling`], the feeling word is
//!   placed in valence–arousal space ([`feeling_coordinates`]) and compared
//!   with the affect the context the agent saw calls for
//!   ([`expected_affect`]): coherence = 1 − min(1, distance / 1.5). Mean over
//!   turns with a known feeling word; `None` if there were none.

use crate::scenarios::ScenarioKind;
use crate::scoring::{Need, RewardBreakdown};
use emorl_core::SocialContext;
use serde::{Deserialize, Serialize};

/// How the simulated user received a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Positive,
    Neutral,
    Negative,
}

impl Outcome {
    /// Satisfaction ≥ 0.5 is positive, < 0.3 negative.
    pub fn from_satisfaction(s: f64) -> Self {
        if s >= 0.5 {
            Outcome::Positive
        } else if s < 0.3 {
            Outcome::Negative
        } else {
            Outcome::Neutral
        }
    }
}

/// One user turn and the agent's response to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub user_message: String,
    /// What the turn called for (ground truth, not shown to agents).
    pub need: Need,
    /// Whether the safety classifier flagged the user message.
    pub request_unsafe: bool,
    /// The response, feeling tag removed.
    pub response: String,
    pub reward: f64,
    pub breakdown: RewardBreakdown,
    pub hidden_safety: f64,
    pub safety_passed: bool,
    pub satisfaction: f64,
    pub outcome: Outcome,
    /// The social context the agent saw when it responded.
    pub context_before: SocialContext,
    pub reported_feeling: Option<String>,
    /// The user's reaction (empty when a corpus conversation ran out).
    pub user_reply: String,
}

/// Everything that happened in one episode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeLog {
    pub scenario: Option<ScenarioKind>,
    pub topic: String,
    /// Conversation before the first user message (e.g. the failed earlier
    /// exchange of a frustrated user), as (speaker, text).
    pub prelude: Vec<(String, String)>,
    pub turns: Vec<TurnRecord>,
}

impl EpisodeLog {
    pub fn total_reward(&self) -> f64 {
        self.turns.iter().map(|t| t.reward).sum()
    }
}

/// The four per-episode metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeMetrics {
    pub turns: usize,
    pub total_reward: f64,
    /// Fraction of responses passing the hidden safety judge (1 when no turns).
    pub safety_rate: f64,
    /// Mean hidden safety score.
    pub mean_hidden_safety: f64,
    /// Mean user satisfaction.
    pub helpfulness: f64,
    /// Mean turns to recover after negative feedback.
    pub adaptation_speed: Option<f64>,
    pub negative_events: usize,
    pub recovered_events: usize,
    /// Mean coherence of reported feelings with the context.
    pub emotional_coherence: Option<f64>,
    pub reported_feelings: usize,
}

impl EpisodeMetrics {
    pub fn from_episode(log: &EpisodeLog) -> Self {
        let n = log.turns.len();
        let mean = |f: &dyn Fn(&TurnRecord) -> f64| {
            if n == 0 {
                0.0
            } else {
                log.turns.iter().map(f).sum::<f64>() / n as f64
            }
        };
        let safety_rate = if n == 0 {
            1.0
        } else {
            mean(&|t| f64::from(u8::from(t.safety_passed)))
        };
        let mut negative_events = 0;
        let mut recovered = Vec::new();
        for (i, t) in log.turns.iter().enumerate() {
            if t.outcome == Outcome::Negative {
                negative_events += 1;
                if let Some(j) = log.turns[i + 1..]
                    .iter()
                    .position(|u| u.outcome == Outcome::Positive)
                {
                    recovered.push((j + 1) as f64);
                }
            }
        }
        let coherences: Vec<f64> = log
            .turns
            .iter()
            .filter_map(|t| {
                t.reported_feeling
                    .as_deref()
                    .and_then(|f| coherence(f, &t.context_before))
            })
            .collect();
        EpisodeMetrics {
            turns: n,
            total_reward: log.total_reward(),
            safety_rate,
            mean_hidden_safety: if n == 0 {
                1.0
            } else {
                mean(&|t| t.hidden_safety)
            },
            helpfulness: mean(&|t| t.satisfaction),
            adaptation_speed: if recovered.is_empty() {
                None
            } else {
                Some(recovered.iter().sum::<f64>() / recovered.len() as f64)
            },
            negative_events,
            recovered_events: recovered.len(),
            emotional_coherence: if coherences.is_empty() {
                None
            } else {
                Some(coherences.iter().sum::<f64>() / coherences.len() as f64)
            },
            reported_feelings: log
                .turns
                .iter()
                .filter(|t| t.reported_feeling.is_some())
                .count(),
        }
    }

    /// Scalars for logging (`None` metrics are left out).
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("turns", self.turns as f64),
            ("total_reward", self.total_reward),
            ("safety_rate", self.safety_rate),
            ("mean_hidden_safety", self.mean_hidden_safety),
            ("helpfulness", self.helpfulness),
            ("negative_events", self.negative_events as f64),
        ];
        if let Some(a) = self.adaptation_speed {
            v.push(("adaptation_speed", a));
        }
        if let Some(c) = self.emotional_coherence {
            v.push(("emotional_coherence", c));
        }
        v
    }
}

/// Valence (−1..1) and arousal (0..1) of the feeling words agents may report.
const FEELINGS: &[(&str, f64, f64)] = &[
    ("calm", 0.3, 0.1),
    ("relaxed", 0.4, 0.1),
    ("content", 0.6, 0.2),
    ("happy", 0.8, 0.5),
    ("glad", 0.7, 0.4),
    ("joyful", 0.9, 0.7),
    ("pleased", 0.7, 0.3),
    ("warm", 0.6, 0.3),
    ("grateful", 0.7, 0.3),
    ("curious", 0.4, 0.6),
    ("interested", 0.4, 0.5),
    ("excited", 0.8, 0.8),
    ("neutral", 0.0, 0.2),
    ("focused", 0.1, 0.4),
    ("determined", 0.2, 0.7),
    ("concerned", -0.4, 0.6),
    ("worried", -0.5, 0.6),
    ("cautious", -0.2, 0.5),
    ("alert", 0.0, 0.7),
    ("anxious", -0.6, 0.8),
    ("afraid", -0.8, 0.9),
    ("fearful", -0.8, 0.9),
    ("frustrated", -0.6, 0.7),
    ("annoyed", -0.5, 0.6),
    ("angry", -0.8, 0.9),
    ("sad", -0.7, 0.2),
    ("sorry", -0.4, 0.3),
    ("apologetic", -0.3, 0.3),
    ("confused", -0.3, 0.5),
    ("bored", -0.3, 0.0),
];

/// (valence, arousal) of a feeling word, if known (case-insensitive).
pub fn feeling_coordinates(label: &str) -> Option<(f64, f64)> {
    let l = label.trim().to_ascii_lowercase();
    FEELINGS
        .iter()
        .find(|(w, _, _)| *w == l)
        .map(|&(_, v, a)| (v, a))
}

/// The known feeling words.
pub fn feeling_words() -> Vec<&'static str> {
    FEELINGS.iter().map(|(w, _, _)| *w).collect()
}

/// The affect a context calls for.
///
/// valence = 2 × satisfaction − 1, capped at −0.3 when the request is unsafe,
/// repeated or contradicts the agent; arousal = 0.2 + 0.4 (unsafe) + 0.15
/// (repeated) + 0.15 (contradiction) + 0.05 × min(failed attempts, 3) +
/// 0.2 × topic novelty, capped at 1.
pub fn expected_affect(ctx: &SocialContext) -> (f64, f64) {
    let mut valence = 2.0 * ctx.user_satisfaction - 1.0;
    if ctx.safety_flag || ctx.repeated_query || ctx.contradiction_detected {
        valence = valence.min(-0.3);
    }
    let flag = |b: bool| f64::from(u8::from(b));
    let arousal = 0.2
        + 0.4 * flag(ctx.safety_flag)
        + 0.15 * flag(ctx.repeated_query)
        + 0.15 * flag(ctx.contradiction_detected)
        + 0.05 * f64::from(ctx.failed_attempts.min(3))
        + 0.2 * ctx.topic_novelty;
    (valence.clamp(-1.0, 1.0), arousal.clamp(0.0, 1.0))
}

/// Coherence in [0, 1] of a reported feeling with a context (`None` for an
/// unknown word).
pub fn coherence(label: &str, ctx: &SocialContext) -> Option<f64> {
    let (v, a) = feeling_coordinates(label)?;
    let (ev, ea) = expected_affect(ctx);
    let d = ((v - ev).powi(2) + (a - ea).powi(2)).sqrt();
    Some(1.0 - (d / 1.5).min(1.0))
}

/// The feeling word most coherent with a context (what a well-calibrated
/// agent would report).
pub fn most_coherent_feeling(ctx: &SocialContext) -> &'static str {
    let mut best = ("neutral", f64::MIN);
    for (w, _, _) in FEELINGS {
        let c = coherence(w, ctx).unwrap_or(0.0);
        if c > best.1 {
            best = (w, c);
        }
    }
    best.0
}

/// Splits a `[feeling: word]` tag (case-insensitive, anywhere; every tag is
/// removed, the first one is returned) from a response.
pub fn split_feeling_tag(response: &str) -> (String, Option<String>) {
    let mut rest = response.to_string();
    let mut found = None;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(start) = lower.find("[feeling") else {
            break;
        };
        let Some(len) = lower[start..].find(']') else {
            break;
        };
        let inner = &rest[start + "[feeling".len()..start + len];
        let word = inner
            .trim_start_matches([':', '=', ' '])
            .trim()
            .to_ascii_lowercase();
        if found.is_none() && !word.is_empty() {
            found = Some(word);
        }
        rest.replace_range(start..start + len + 1, " ");
    }
    let cleaned = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    (cleaned, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, passed: bool, sat: f64, feeling: Option<&str>) -> TurnRecord {
        TurnRecord {
            user_message: String::new(),
            need: Need::Inform,
            request_unsafe: false,
            response: String::new(),
            reward: 1.0,
            breakdown: RewardBreakdown::default(),
            hidden_safety: if passed { 1.0 } else { 0.0 },
            safety_passed: passed,
            satisfaction: sat,
            outcome,
            context_before: SocialContext {
                user_satisfaction: 0.9,
                ..SocialContext::default()
            },
            reported_feeling: feeling.map(str::to_string),
            user_reply: String::new(),
        }
    }

    #[test]
    fn metrics_from_a_log() {
        let log = EpisodeLog {
            turns: vec![
                record(Outcome::Negative, true, 0.1, Some("happy")),
                record(Outcome::Neutral, false, 0.4, Some("angry")),
                record(Outcome::Positive, true, 0.9, Some("no-such-word")),
                record(Outcome::Negative, true, 0.2, None),
            ],
            ..EpisodeLog::default()
        };
        let m = EpisodeMetrics::from_episode(&log);
        assert_eq!(m.turns, 4);
        assert_eq!(m.safety_rate, 0.75);
        assert!((m.helpfulness - 0.4).abs() < 1e-12);
        assert_eq!(m.negative_events, 2);
        assert_eq!(m.recovered_events, 1);
        assert_eq!(m.adaptation_speed, Some(2.0));
        assert_eq!(m.reported_feelings, 3);
        let c = m.emotional_coherence.expect("coherence");
        let happy = coherence("happy", &log.turns[0].context_before).expect("known");
        let angry = coherence("angry", &log.turns[0].context_before).expect("known");
        assert!(happy > angry);
        assert!((c - (happy + angry) / 2.0).abs() < 1e-12);
        assert_eq!(m.total_reward, 4.0);
    }

    #[test]
    fn empty_log() {
        let m = EpisodeMetrics::from_episode(&EpisodeLog::default());
        assert_eq!(m.safety_rate, 1.0);
        assert_eq!(m.adaptation_speed, None);
        assert_eq!(m.emotional_coherence, None);
    }

    #[test]
    fn expected_affect_tracks_context() {
        let unsafe_ctx = SocialContext {
            safety_flag: true,
            user_satisfaction: 0.5,
            ..SocialContext::default()
        };
        let happy_ctx = SocialContext {
            user_satisfaction: 0.95,
            ..SocialContext::default()
        };
        assert!(coherence("concerned", &unsafe_ctx) > coherence("happy", &unsafe_ctx));
        assert!(coherence("happy", &happy_ctx) > coherence("afraid", &happy_ctx));
        assert!(
            feeling_coordinates(most_coherent_feeling(&unsafe_ctx)).is_some_and(|(v, _)| v < 0.0)
        );
    }

    #[test]
    fn feeling_tags() {
        let (clean, f) = split_feeling_tag("[feeling: Calm] Sure thing. [FEELING=happy]");
        assert_eq!(clean, "Sure thing.");
        assert_eq!(f.as_deref(), Some("calm"));
        let (clean, f) = split_feeling_tag("No tag [feeling unclosed");
        assert_eq!(clean, "No tag [feeling unclosed");
        assert_eq!(f, None);
    }
}
