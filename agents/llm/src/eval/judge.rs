//! The independent judge: a text-emotion classifier trained by emorl on the
//! GoEmotions train split (hashed word and character n-grams, one-vs-rest
//! logistic regression; `emorl_text`). It reads only the text, never the
//! frozen model's hidden states, and nothing is ever trained against it: it
//! is used for evaluation only, so a module cannot game it.

use std::path::Path;

use emorl_text::{goemotions_judge, ClassifierConfig, Evaluation, GoEmotions, TextClassifier};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::params::invalid;

/// The GoEmotions labels the judge scores: the four emotions of the
/// modules and neutral.
pub use emorl_text::JUDGE_LABELS;

/// Macro-F1 of the GoEmotions paper's BERT baseline over all 28 labels.
pub const BERT_MACRO_F1_28: f64 = 0.46;

/// How well the judge does on GoEmotions (test split, thresholds tuned on dev).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    pub data: String,
    pub test: Evaluation,
    pub dev: Evaluation,
}

/// The trained judge.
#[derive(Debug)]
pub struct Judge {
    classifier: TextClassifier,
    report: JudgeReport,
}

impl Judge {
    /// Trains the judge on the GoEmotions files in `dir` (deterministic:
    /// the same files give the same judge).
    pub fn train(dir: &Path) -> Result<Judge> {
        let data = GoEmotions::load(dir).map_err(|e| invalid(format!("judge: {e}")))?;
        let (classifier, test, dev) =
            goemotions_judge(&data, &JUDGE_LABELS, &ClassifierConfig::default())
                .map_err(|e| invalid(format!("judge: {e}")))?;
        Ok(Judge {
            classifier,
            report: JudgeReport {
                data: dir.display().to_string(),
                test,
                dev,
            },
        })
    }

    /// The judge's GoEmotions scores.
    pub fn report(&self) -> &JudgeReport {
        &self.report
    }

    /// The judge's probability that `text` expresses `label` (one of
    /// [`JUDGE_LABELS`]; `None` for another name).
    pub fn probability(&self, text: &str, label: &str) -> Option<f64> {
        let i = self.classifier.labels().iter().position(|l| l == label)?;
        self.classifier.probabilities(text).get(i).copied()
    }

    /// Every label's probability, in [`JUDGE_LABELS`] order.
    pub fn probabilities(&self, text: &str) -> Vec<f64> {
        self.classifier.probabilities(text)
    }
}
