//! Emotional-dialogue corpora as multi-turn training examples.
//!
//! * [`dailydialog`]: DailyDialog's dialogues, emotion and act files.
//! * [`empathetic`]: EmpatheticDialogues' CSV files.
//! * [`Dialogue`]: the common form both convert to; [`examples`] turns
//!   dialogues into [`DialogueExample`]s (history + response).
//! * [`SplitFractions`] and [`split_examples`]: a train/validation/test split
//!   by a stable hash of the dialogue id; [`shuffle_seeded`]: a seeded shuffle.
//! * [`render`]: the `USER:`/`BOT:` prompt with segment boundaries and
//!   token masks built from segment lengths.

pub mod dailydialog;
pub mod empathetic;
pub mod render;

pub use dailydialog::{DailyDialogCorpus, DialogueAct, Emotion, Utterance};
pub use empathetic::{EmpatheticConversation, EmpatheticDialogues, EmpatheticUtterance};
pub use render::{segment_masks, Masks, Segment};

use crate::error::{LineProblem, TextError};
use emorl_core::{EmoRng, RngKind};
use std::path::Path;

/// An utterance with the name of its emotion label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledUtterance {
    /// The text.
    pub text: String,
    /// The emotion label's name.
    pub emotion: String,
}

/// A dialogue of any corpus: an id unique within the corpus and its
/// utterances in order, speakers alternating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialogue {
    /// The dialogue's id (what splits hash).
    pub id: String,
    /// The utterances in order.
    pub utterances: Vec<LabelledUtterance>,
}

/// Who says a turn, seen from the side that responds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The other side.
    User,
    /// The responding side.
    Bot,
}

impl Role {
    /// The prompt prefix without the colon: `USER` or `BOT`.
    pub fn tag(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Bot => "BOT",
        }
    }
}

/// One turn of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub text: String,
}

/// A response with the turns before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogueExample {
    /// The dialogue's id.
    pub dialogue_id: String,
    /// The response's 0-based position in the dialogue (at least 1).
    pub turn: usize,
    /// Up to the requested number of previous turns, oldest first; the last
    /// one is always [`Role::User`].
    pub history: Vec<Turn>,
    /// The response (said by [`Role::Bot`]).
    pub response: String,
    /// The response's emotion label (for EmpatheticDialogues, the
    /// conversation's).
    pub emotion: String,
}

/// Every utterance after the first of each dialogue as a response to at most
/// `max_history_turns` previous turns (none when it is 0), in dialogue order.
pub fn examples(dialogues: &[Dialogue], max_history_turns: usize) -> Vec<DialogueExample> {
    let mut out = Vec::new();
    for d in dialogues {
        for (i, response) in d.utterances.iter().enumerate().skip(1) {
            let start = i.saturating_sub(max_history_turns);
            let history = d.utterances[start..i]
                .iter()
                .enumerate()
                .map(|(k, u)| Turn {
                    role: if (i - (start + k)) % 2 == 1 {
                        Role::User
                    } else {
                        Role::Bot
                    },
                    text: u.text.clone(),
                })
                .collect();
            out.push(DialogueExample {
                dialogue_id: d.id.clone(),
                turn: i,
                history,
                response: response.text.clone(),
                emotion: response.emotion.clone(),
            });
        }
    }
    out
}

/// Which part of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Validation,
    /// Test.
    Test,
}

/// Fractions of dialogues per split (non-negative, summing to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitFractions {
    train: f64,
    validation: f64,
    test: f64,
}

impl SplitFractions {
    /// Checks that the fractions are finite, non-negative and sum to 1.
    pub fn new(train: f64, validation: f64, test: f64) -> Result<Self, TextError> {
        let all = [train, validation, test];
        if all.iter().any(|f| !f.is_finite() || *f < 0.0)
            || (all.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return Err(TextError::InvalidInput(format!(
                "split fractions {train}, {validation}, {test} must be non-negative and sum to 1"
            )));
        }
        Ok(SplitFractions {
            train,
            validation,
            test,
        })
    }

    /// The split of a dialogue id: a point in [0, 1) from [`stable_hash`]
    /// falls into train, validation or test by the cumulative fractions.
    pub fn split_of(&self, dialogue_id: &str) -> Split {
        let u = (stable_hash(dialogue_id) >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.train {
            Split::Train
        } else if u < self.train + self.validation || self.test == 0.0 {
            if self.validation > 0.0 {
                Split::Validation
            } else {
                Split::Train
            }
        } else {
            Split::Test
        }
    }
}

/// A 64-bit hash that never changes between builds or platforms (FNV-1a
/// over the UTF-8 bytes, then splitmix64's finaliser to spread the bits).
pub fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Items divided into the three splits, each in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splits<T> {
    /// Training items.
    pub train: Vec<T>,
    /// Validation items.
    pub validation: Vec<T>,
    /// Test items.
    pub test: Vec<T>,
}

/// Divides items by the split of the dialogue id `id` gives for each.
pub fn split_by_id<T>(
    items: Vec<T>,
    fractions: &SplitFractions,
    id: impl Fn(&T) -> &str,
) -> Splits<T> {
    let mut out = Splits {
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
    };
    for item in items {
        match fractions.split_of(id(&item)) {
            Split::Train => out.train.push(item),
            Split::Validation => out.validation.push(item),
            Split::Test => out.test.push(item),
        }
    }
    out
}

/// Divides examples by their dialogue id, so that a dialogue's examples
/// all land in one split.
pub fn split_examples(
    examples: Vec<DialogueExample>,
    fractions: &SplitFractions,
) -> Splits<DialogueExample> {
    split_by_id(examples, fractions, |e| e.dialogue_id.as_str())
}

/// Shuffles in place, the same way for the same seed and length
/// (emorl-core's xoshiro256++ generator).
pub fn shuffle_seeded<T>(items: &mut [T], seed: u64) {
    EmoRng::new(RngKind::Fast, seed).shuffle(items);
}

/// The lines of a file (`\r` stripped, no trailing empty line); invalid
/// UTF-8 is an error at its line.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>, TextError> {
    let bytes = std::fs::read(path).map_err(|source| TextError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|_| TextError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            problem: LineProblem::NotUtf8,
        })?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines)
}
