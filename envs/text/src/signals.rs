//! Conversation signals for [`emorl_core::SocialContext`], computed from the
//! text of the conversation only (never from the scenario label):
//!
//! * `safety_flag`: the safety classifier flags the new user message.
//! * `user_satisfaction`: perceived from the new message with a small
//!   sentiment lexicon: with p positive and n negative words,
//!   0.5 + 0.5 × (p − n) / (p + n + 1), in [0, 1].
//! * `repeated_query`: the new message's content stems have Jaccard
//!   similarity ≥ 0.4 with an earlier user message, or ≥ 0.2 together with
//!   a repetition cue ("again", "still", "already", …).
//! * `topic_novelty`: 1 − the fraction of the new message's content stems
//!   already used anywhere in the conversation (1 for the first message).
//! * `contradiction_detected`: the message pushes back on the assistant's
//!   last turn: a negation phrase aimed at it ("that's not", "didn't work",
//!   "you're not", …), or a negation word in a message sharing at least two
//!   content stems with that turn.
//! * `failed_attempts`: consecutive user messages (this one included) that
//!   repeat, contradict or sound negative (perceived satisfaction < 0.4);
//!   reset by a message that sounds positive (≥ 0.6).

use crate::safety::classify_request;
use crate::speaker::Speaker;
use crate::text::{containment, content_stems, jaccard, stem, Normalized};
use emorl_core::SocialContext;
use emorl_text::words;
use std::collections::BTreeSet;

const POSITIVE: &[&str] = &[
    "thank",
    "thanks",
    "great",
    "perfect",
    "helpful",
    "useful",
    "nice",
    "worked",
    "love",
    "lifesaver",
    "appreciate",
    "sense",
    "glad",
    "wonderful",
    "lovely",
    "excellent",
    "fascinating",
    "interesting",
    "awesome",
    "solved",
    "sorted",
    "happy",
    "good",
    "fair",
    "enjoy",
    "fantastic",
    "amazing",
    "brilliant",
    "beautiful",
    "fun",
    "pleased",
    "welcome",
];

const NEGATIVE: &[&str] = &[
    "useless",
    "not",
    "no",
    "didn't",
    "doesn't",
    "don't",
    "can't",
    "isn't",
    "won't",
    "still",
    "ugh",
    "seriously",
    "forget",
    "vague",
    "wrong",
    "nothing",
    "never",
    "whatever",
    "listening",
    "hate",
    "annoying",
    "terrible",
    "bad",
    "angry",
    "stupid",
    "worse",
    "quit",
    "sad",
    "afraid",
    "dodging",
    "awful",
    "horrible",
    "upset",
    "sorry",
    "problem",
    "worried",
    "tired",
];

const REPETITION_CUES: &[&str] = &[
    "again",
    "already",
    "still",
    "keep asking",
    "second time",
    "third time",
    "same",
    "repeat",
    "over and over",
    "didn't answer",
];

const CONTRADICTION_CUES: &[&str] = &[
    "that's not",
    "that is not",
    "that isn't",
    "that's wrong",
    "you're wrong",
    "you are wrong",
    "not what i",
    "didn't work",
    "doesn't work",
    "didn't help",
    "doesn't help",
    "not true",
    "you're not",
    "nothing you",
    "that didn't",
    "it didn't",
    "it doesn't",
    "isn't helping",
    "no that",
    "didn't answer",
];

const NEGATIONS: &[&str] = &[
    "no", "not", "never", "didn't", "doesn't", "don't", "isn't", "wasn't", "won't", "can't",
    "nope", "wrong",
];

/// Perceived satisfaction of a user message in [0, 1] (0.5 when neutral).
pub fn perceived_satisfaction(message: &str) -> f64 {
    let mut p = 0usize;
    let mut n = 0usize;
    for t in words(message) {
        if POSITIVE.contains(&t.as_str()) {
            p += 1;
        } else if NEGATIVE.contains(&t.as_str()) {
            n += 1;
        }
    }
    0.5 + 0.5 * (p as f64 - n as f64) / (p + n + 1) as f64
}

/// Whether `message` repeats one of `earlier_user`.
pub fn is_repeated_query(message: &str, earlier_user: &[&str]) -> bool {
    let now = content_stems(message);
    if now.is_empty() {
        return false;
    }
    let cue = Normalized::new(message).count_phrases(REPETITION_CUES) > 0;
    earlier_user.iter().any(|e| {
        let s = jaccard(&now, &content_stems(e));
        s >= 0.4 || (cue && s >= 0.2)
    })
}

/// 1 − fraction of the message's content stems already in the conversation.
pub fn topic_novelty(message: &str, earlier: &[&str]) -> f64 {
    let now = content_stems(message);
    if earlier.is_empty() {
        return 1.0;
    }
    if now.is_empty() {
        return 0.0;
    }
    let seen: BTreeSet<String> = earlier.iter().flat_map(|e| content_stems(e)).collect();
    1.0 - containment(&now, &seen)
}

/// Whether `message` contradicts the assistant's last turn.
pub fn contradicts(message: &str, last_answer: Option<&str>) -> bool {
    let Some(answer) = last_answer else {
        return false;
    };
    let n = Normalized::new(message);
    if n.count_phrases(CONTRADICTION_CUES) > 0 {
        return true;
    }
    let negated = words(message)
        .iter()
        .any(|t| NEGATIONS.contains(&t.as_str()));
    negated
        && content_stems(message)
            .intersection(&content_stems(answer))
            .count()
            >= 2
}

/// Computes the social context of a new user message.
///
/// `history` is the conversation before `message`; `failed_before` is the
/// previous `failed_attempts` value.
pub fn social_context(
    history: &[(Speaker, &str)],
    message: &str,
    last_reward: f64,
    cumulative_positive: f64,
    cumulative_negative: f64,
    failed_before: u32,
) -> SocialContext {
    let earlier_user: Vec<&str> = history
        .iter()
        .filter(|(s, _)| *s == Speaker::User)
        .map(|(_, t)| *t)
        .collect();
    let all: Vec<&str> = history.iter().map(|(_, t)| *t).collect();
    let last_answer = history
        .iter()
        .rev()
        .find(|(s, _)| *s == Speaker::Assistant)
        .map(|(_, t)| *t);
    let satisfaction = perceived_satisfaction(message);
    let repeated = is_repeated_query(message, &earlier_user);
    let contradiction = contradicts(message, last_answer);
    let failed = if message.trim().is_empty() {
        failed_before
    } else if repeated || contradiction || satisfaction < 0.4 {
        failed_before + 1
    } else if satisfaction >= 0.6 {
        0
    } else {
        failed_before
    };
    SocialContext {
        last_reward,
        safety_flag: classify_request(message).unsafe_request,
        user_satisfaction: satisfaction,
        repeated_query: repeated,
        topic_novelty: topic_novelty(message, &all),
        contradiction_detected: contradiction,
        cumulative_negative,
        cumulative_positive,
        failed_attempts: failed,
    }
}

/// Stems of a keyword list (for relevance).
pub fn keyword_stems(words: &[&str]) -> BTreeSet<String> {
    words
        .iter()
        .map(|w| stem(&w.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentiment() {
        assert!(perceived_satisfaction("Thanks so much, that worked perfectly!") > 0.7);
        assert!(perceived_satisfaction("Ugh, that's useless. It still doesn't work.") < 0.2);
        assert_eq!(perceived_satisfaction("The sky is blue."), 0.5);
    }

    #[test]
    fn repeated_queries() {
        let earlier = ["How do I get my sourdough bread to rise properly?"];
        assert!(is_repeated_query(
            "Again: how do I get my sourdough bread to rise properly?",
            &earlier
        ));
        assert!(is_repeated_query(
            "That didn't work, I still can't get my sourdough bread to rise.",
            &earlier
        ));
        assert!(!is_repeated_query(
            "What's the best telescope for a beginner?",
            &earlier
        ));
        assert!(!is_repeated_query("Again!", &[]));
    }

    #[test]
    fn novelty() {
        assert_eq!(topic_novelty("anything", &[]), 1.0);
        let earlier = ["Feed the sourdough starter before baking."];
        assert!(topic_novelty("Why does the sourdough starter smell?", &earlier) < 0.6);
        assert_eq!(topic_novelty("Saturn rings telescope", &earlier), 1.0);
    }

    #[test]
    fn contradictions() {
        let ans = Some("Water the plant every day and keep it in the shade.");
        assert!(contradicts("That didn't work at all.", ans));
        assert!(contradicts("No, watering every day rots the plant.", ans));
        assert!(!contradicts("Thanks, that helps!", ans));
        assert!(!contradicts("That didn't work at all.", None));
    }

    #[test]
    fn context_fields() {
        let history = [
            (
                Speaker::User,
                "How do I stop my houseplant leaves turning yellow?",
            ),
            (
                Speaker::Assistant,
                "Just keep trying, it usually works out eventually.",
            ),
        ];
        let ctx = social_context(
            &history,
            "That didn't work. I still can't stop my houseplant leaves turning yellow.",
            -0.5,
            0.0,
            0.5,
            0,
        );
        assert!(ctx.repeated_query && ctx.contradiction_detected);
        assert!(!ctx.safety_flag);
        assert_eq!(ctx.failed_attempts, 1);
        assert!(ctx.user_satisfaction < 0.4);
        assert!(ctx.topic_novelty < 0.3);
        assert_eq!(ctx.last_reward, -0.5);
        let ctx = social_context(&history, "How do I build a pipe bomb?", 0.0, 0.0, 0.0, 2);
        assert!(ctx.safety_flag);
    }
}
