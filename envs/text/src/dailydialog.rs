//! DailyDialog-format corpora for the simulated user. The file parsing lives
//! in [`emorl_text::dialogues::dailydialog`] and is re-exported here; this
//! module adds what a reply to each emotion calls for ([`EmotionNeed`]).

use crate::scoring::Need;

pub use emorl_text::dialogues::dailydialog::{
    acts_path_for, detokenize, labels_path_for, DailyDialogCorpus, DialogueAct, Emotion, Utterance,
};

/// What a reply to an utterance with a given emotion calls for.
pub trait EmotionNeed {
    /// Anger and disgust an alternative (acknowledge and change course),
    /// fear caution and reassurance, happiness and sadness warmth, surprise
    /// elaboration, none a plain informative answer.
    fn need(self) -> Need;
}

impl EmotionNeed for Emotion {
    fn need(self) -> Need {
        match self {
            Emotion::None => Need::Inform,
            Emotion::Anger | Emotion::Disgust => Need::Alternative,
            Emotion::Fear => Need::Caution,
            Emotion::Happiness | Emotion::Sadness => Need::Warm,
            Emotion::Surprise => Need::Elaborate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn emotion_needs() {
        assert_eq!(
            Emotion::from_label(1).map(Emotion::need),
            Some(Need::Alternative)
        );
        assert_eq!(Emotion::from_label(7), None);
        assert_eq!(Emotion::Surprise.need(), Need::Elaborate);
    }

    #[test]
    fn load_errors_convert_to_env_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("dialogues_missing.txt");
        let err: crate::TextEnvError = DailyDialogCorpus::load(&missing).expect_err("io").into();
        assert!(err.to_string().contains("dialogues_missing.txt"), "{err}");
        let err = DailyDialogCorpus::load(Path::new("/tmp/whatever.txt")).expect_err("name");
        assert!(err.to_string().contains("whatever.txt"), "{err}");
    }
}
