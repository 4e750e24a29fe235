//! Emotional alignment of a response with a target emotion, as the
//! independent [`crate::eval::Judge`] reads the response (never the model
//! being scored), and the smoothing of the expressed emotion over turns.

use emorl_text::{dailydialog_to_judge, goemotions_to_judge};

/// `emo_alignment_score`: the cosine between the judge's scores of a
/// response (`judge_probs`, one per judge label) and the one-hot vector of
/// label `target`, i.e. `p_t / ||p||`; 0 for a zero vector or a `target`
/// out of range. Cosine ignores scale, so one-vs-rest probabilities and
/// the same scores normalised to sum 1 give the same value.
pub fn emo_alignment(judge_probs: &[f64], target: usize) -> f64 {
    let norm = judge_probs.iter().map(|p| p * p).sum::<f64>().sqrt();
    match judge_probs.get(target) {
        Some(&p) if norm > 0.0 && norm.is_finite() => p / norm,
        _ => 0.0,
    }
}

/// The judge label a target emotion name stands for: the judge's own labels
/// (emorl's four state emotions and neutral) and DailyDialog's names
/// (`happiness` → `joy`, `none` → `neutral`). DailyDialog's disgust,
/// sadness and surprise have no counterpart among the judge's labels
/// (`emorl_text::dailydialog_to_judge`) and give `None`, as does any other name.
pub fn target_label(name: &str) -> Option<&'static str> {
    goemotions_to_judge(name).or_else(|| {
        dailydialog_to_judge(emorl_text::dialogues::dailydialog::Emotion::from_name(name)?.label())
    })
}

/// Exponential moving average of an emotion distribution over turns:
/// `ema ← alpha · x + (1 − alpha) · ema`, the first turn taken as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct EmotionEma {
    /// Weight of the newest turn, in (0, 1].
    pub alpha: f64,
    value: Option<Vec<f64>>,
}

impl EmotionEma {
    /// An empty average with weight `alpha` (clamped to (0, 1]; a value
    /// that is not a number counts as 1, i.e. no smoothing).
    pub fn new(alpha: f64) -> EmotionEma {
        let alpha = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(f64::MIN_POSITIVE, 1.0)
        };
        EmotionEma { alpha, value: None }
    }

    /// Adds one turn's distribution and returns the smoothed one. A turn
    /// of another length than the first restarts the average at it.
    pub fn update(&mut self, x: &[f64]) -> &[f64] {
        let next = match self.value.take() {
            Some(prev) if prev.len() == x.len() => prev
                .iter()
                .zip(x)
                .map(|(e, v)| self.alpha * v + (1.0 - self.alpha) * e)
                .collect(),
            _ => x.to_vec(),
        };
        self.value.insert(next)
    }

    /// The smoothed distribution so far (`None` before the first turn).
    pub fn value(&self) -> Option<&[f64]> {
        self.value.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn alignment_is_the_cosine_with_the_one_hot_target() {
        // p = (0.6, 0.8): ||p|| = 1, so the cosine is p_t.
        assert!(close(emo_alignment(&[0.6, 0.8], 0), 0.6));
        assert!(close(emo_alignment(&[0.6, 0.8], 1), 0.8));
        // p = (1, 2, 2): ||p|| = 3.
        assert!(close(emo_alignment(&[1.0, 2.0, 2.0], 1), 2.0 / 3.0));
        // Scale does not matter: (0.2, 0.4, 0.4) sums to 1, same cosine.
        assert!(close(emo_alignment(&[0.2, 0.4, 0.4], 1), 2.0 / 3.0));
        assert!(close(emo_alignment(&[0.0, 0.0, 5.0], 2), 1.0));
        assert_eq!(emo_alignment(&[0.0, 0.0], 0), 0.0);
        assert_eq!(emo_alignment(&[0.5, 0.5], 7), 0.0);
        assert_eq!(emo_alignment(&[], 0), 0.0);
    }

    #[test]
    fn targets_map_to_judge_labels() {
        for label in emorl_text::JUDGE_LABELS {
            assert_eq!(target_label(label), Some(label));
        }
        assert_eq!(target_label("happiness"), Some("joy"));
        assert_eq!(target_label("none"), Some("neutral"));
        assert_eq!(target_label("anger"), Some("anger"));
        assert_eq!(target_label("fear"), Some("fear"));
        for unmapped in ["surprise", "disgust", "sadness", "Joy", "", "admiration"] {
            assert_eq!(target_label(unmapped), None, "{unmapped}");
        }
    }

    #[test]
    fn ema_starts_at_the_first_turn_and_weights_the_newest() {
        let mut ema = EmotionEma::new(0.25);
        assert_eq!(ema.value(), None);
        assert_eq!(ema.update(&[1.0, 0.0]), &[1.0, 0.0]);
        // 0.25 * (0, 1) + 0.75 * (1, 0)
        assert_eq!(ema.update(&[0.0, 1.0]), &[0.75, 0.25]);
        // 0.25 * (0, 1) + 0.75 * (0.75, 0.25) = (0.5625, 0.4375)
        let v = ema.update(&[0.0, 1.0]).to_vec();
        assert!(close(v[0], 0.5625) && close(v[1], 0.4375), "{v:?}");
        assert!(close(v.iter().sum::<f64>(), 1.0));
        // alpha 1: no smoothing.
        let mut raw = EmotionEma::new(1.0);
        raw.update(&[0.2, 0.8]);
        assert_eq!(raw.update(&[0.9, 0.1]), &[0.9, 0.1]);
        assert_eq!(EmotionEma::new(f64::NAN).alpha, 1.0);
        assert_eq!(EmotionEma::new(3.0).alpha, 1.0);
    }
}
