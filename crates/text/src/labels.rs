//! The emotion vocabulary of the LLM modules and how corpus labels map onto it.
//!
//! The modules steer and judge five states. GoEmotions has all five under the
//! same names, so only those labels map; its other 23 (admiration, sadness,
//! surprise, ...) are different states, not finer shades of ours, and map to
//! nothing. DailyDialog has seven classes; "no emotion" is our neutral and
//! anger, fear and happiness (joy) have direct counterparts. Surprise is not
//! mapped to curiosity: surprise is a reaction to something unexpected that
//! has happened, curiosity a wish to find out more, and DailyDialog's
//! surprise turns are mostly exclamations ("Really?!"), not questions asked
//! out of interest. Disgust and sadness have no counterpart among the five.

/// The emotions the LLM modules steer and the judge scores, in this order.
pub const JUDGE_LABELS: [&str; 5] = ["fear", "curiosity", "anger", "joy", "neutral"];

/// The judge label a GoEmotions label name stands for, if any (same name only).
pub fn goemotions_to_judge(name: &str) -> Option<&'static str> {
    JUDGE_LABELS.iter().copied().find(|&label| label == name)
}

/// The judge label of a DailyDialog emotion id (0 no emotion, 1 anger,
/// 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise), if any.
pub fn dailydialog_to_judge(id: u8) -> Option<&'static str> {
    match id {
        0 => Some("neutral"),
        1 => Some("anger"),
        3 => Some("fear"),
        4 => Some("joy"),
        // Disgust and sadness have no counterpart; surprise is not curiosity.
        2 | 5 | 6 => None,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goemotions_maps_same_names_only() {
        for label in JUDGE_LABELS {
            assert_eq!(goemotions_to_judge(label), Some(label));
        }
        for other in [
            "surprise",
            "sadness",
            "excitement",
            "annoyance",
            "nervousness",
        ] {
            assert_eq!(goemotions_to_judge(other), None);
        }
    }

    #[test]
    fn dailydialog_mapping() {
        let mapped: Vec<_> = (0..8).map(dailydialog_to_judge).collect();
        assert_eq!(
            mapped,
            vec![
                Some("neutral"),
                Some("anger"),
                None,
                Some("fear"),
                Some("joy"),
                None,
                None,
                None
            ]
        );
    }
}
