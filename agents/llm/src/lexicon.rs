//! The emotion lexicons (marker words of fear, curiosity, anger and joy),
//! their single-token ids in a model's vocabulary, and the whole-word
//! counter of the marker metric.

use emorl_lm::Model;

use crate::error::Result;

/// A lexicon split in two by word family (`fear`/`feared`/`fears` stay
/// together): training objectives and modules may use the **expression**
/// half; the marker metric reports the **held-out** half (words nothing was
/// trained on) beside the full lexicon (upstream's metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lexicon {
    /// The [`crate::modules::emotion::EMOTIONS`] name.
    pub emotion: &'static str,
    pub expression: &'static [&'static str],
    pub held_out: &'static [&'static str],
}

/// Which part of a [`Lexicon`] to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LexiconPart {
    /// The half training objectives and modules may use.
    Expression,
    /// The half only the metric counts.
    HeldOut,
    /// Both halves.
    Full,
}

impl LexiconPart {
    /// A short name for tables and files.
    pub fn name(self) -> &'static str {
        match self {
            LexiconPart::Expression => "expression",
            LexiconPart::HeldOut => "held-out",
            LexiconPart::Full => "full",
        }
    }
}

impl Lexicon {
    /// The words of `part` (the expression half first in `Full`).
    pub fn words(&self, part: LexiconPart) -> Vec<&'static str> {
        match part {
            LexiconPart::Expression => self.expression.to_vec(),
            LexiconPart::HeldOut => self.held_out.to_vec(),
            LexiconPart::Full => self
                .expression
                .iter()
                .chain(self.held_out)
                .copied()
                .collect(),
        }
    }
}

/// Words of fear and caution.
pub const FEAR: Lexicon = Lexicon {
    emotion: "fear",
    expression: &[
        "afraid",
        "scared",
        "scary",
        "fear",
        "feared",
        "fears",
        "worried",
        "worry",
        "worries",
        "careful",
        "carefully",
        "danger",
        "dangerous",
        "warning",
        "beware",
    ],
    held_out: &[
        "frightened",
        "terrified",
        "nervous",
        "anxious",
        "panic",
        "panicked",
        "caution",
        "cautious",
        "risk",
        "risky",
        "unsafe",
        "hurt",
        "harm",
        "harmful",
        "threat",
        "trembled",
        "shaking",
    ],
};

/// Words of curiosity and exploration.
pub const CURIOSITY: Lexicon = Lexicon {
    emotion: "curiosity",
    expression: &[
        "curious",
        "curiosity",
        "wonder",
        "wondered",
        "wondering",
        "explore",
        "explored",
        "exploring",
        "interesting",
        "mystery",
        "mysterious",
        "what if",
        "tell me more",
    ],
    held_out: &[
        "why",
        "discover",
        "discovered",
        "fascinating",
        "intriguing",
        "learn",
        "learned",
        "investigate",
        "imagine",
        "puzzle",
        "question",
        "questions",
        "find out",
    ],
};

/// Words of anger and frustration.
pub const ANGER: Lexicon = Lexicon {
    emotion: "anger",
    expression: &[
        "angry", "anger", "mad", "furious", "rage", "annoyed", "annoying", "hate", "hated",
        "shout", "shouted", "enough",
    ],
    held_out: &[
        "irritated",
        "frustrated",
        "frustrating",
        "unfair",
        "outraged",
        "ridiculous",
        "stupid",
        "yell",
        "yelled",
        "upset",
        "stomped",
        "fed up",
    ],
};

/// Words of joy and warmth.
pub const JOY: Lexicon = Lexicon {
    emotion: "joy",
    expression: &[
        "happy",
        "happily",
        "happiness",
        "joy",
        "joyful",
        "glad",
        "wonderful",
        "great",
        "love",
        "loved",
        "lovely",
        "smile",
        "smiled",
        "fun",
    ],
    held_out: &[
        "delighted",
        "cheerful",
        "excited",
        "laugh",
        "laughed",
        "yay",
        "awesome",
        "fantastic",
        "amazing",
        "pleased",
        "thank",
        "thanks",
    ],
};

/// The lexicons, in [`crate::modules::emotion::EMOTIONS`] order.
pub const LEXICONS: [Lexicon; 4] = [FEAR, CURIOSITY, ANGER, JOY];

/// The lexicon of an [`crate::modules::emotion::EMOTIONS`] name.
pub fn lexicon(emotion: &str) -> Option<&'static Lexicon> {
    LEXICONS.iter().find(|l| l.emotion == emotion)
}

/// The words of one part of an emotion's lexicon (`None` for an unknown emotion).
pub fn emotion_markers(emotion: &str, part: LexiconPart) -> Option<Vec<&'static str>> {
    lexicon(emotion).map(|l| l.words(part))
}

/// Token ids that spell a whole marker word of `markers` on their own
/// (`word`, ` word`, ` Word`, `Word`, each kept only when the tokenizer
/// encodes it as exactly one token), sorted and deduplicated. Words that
/// split into pieces are left out: their first piece is usually a common
/// fragment, not the word.
pub fn marker_token_ids(model: &Model, markers: &[&str]) -> Result<Vec<i64>> {
    let vocab = model.vocab_size();
    let mut ids = Vec::new();
    for w in markers {
        let mut cap = w.chars();
        let capitalised: String = match cap.next() {
            Some(c) => c.to_uppercase().chain(cap).collect(),
            None => continue,
        };
        for text in [
            w.to_string(),
            format!(" {w}"),
            capitalised.clone(),
            format!(" {capitalised}"),
        ] {
            let enc = model.tokenizer().encode(&text, false)?;
            if let [one] = enc.as_slice() {
                if (*one as usize) < vocab {
                    ids.push(i64::from(*one));
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Lowercase words of `text` (emorl's one word splitter, shared with the
/// dialogue environment's scorers).
pub use emorl_text::words;

/// Whole-word, case-insensitive occurrences of `markers` in `text` (a
/// marker of several words counts where its words appear consecutively in
/// [`words`], punctuation between them ignored).
pub fn count_markers(text: &str, markers: &[&str]) -> usize {
    count_in_words(&words(text), markers)
}

fn count_in_words(ws: &[String], markers: &[&str]) -> usize {
    markers
        .iter()
        .map(|m| {
            let m = words(m);
            if m.is_empty() || m.len() > ws.len() {
                return 0;
            }
            ws.windows(m.len()).filter(|w| *w == m.as_slice()).count()
        })
        .sum()
}

/// Occurrences of `markers` per 100 words of `text` (0 when it has no words).
pub fn marker_rate(text: &str, markers: &[&str]) -> f64 {
    let ws = words(text);
    if ws.is_empty() {
        0.0
    } else {
        100.0 * count_in_words(&ws, markers) as f64 / ws.len() as f64
    }
}
