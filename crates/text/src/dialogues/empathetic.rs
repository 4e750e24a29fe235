//! EmpatheticDialogues (Rashkin et al., 2019) in the CSV layout of its public
//! release: header `conv_id,utterance_idx,context,prompt,speaker_idx,
//! utterance,selfeval,tags`, commas inside text written as `_comma_`, rows
//! grouped by `conv_id` with `utterance_idx` counting up from 1. `context` is
//! the conversation's emotion label (one of [`EMPATHETIC_EMOTIONS`]).
//!
//! Malformed rows are errors naming the file and the 1-based line.

use super::{read_lines, Dialogue, LabelledUtterance};
use crate::error::{LineProblem, TextError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The header line of the release's CSV files.
pub const EMPATHETIC_HEADER: &str =
    "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags";

const N_FIELDS: usize = 8;

/// The 32 emotion labels of EmpatheticDialogues.
pub const EMPATHETIC_EMOTIONS: [&str; 32] = [
    "afraid",
    "angry",
    "annoyed",
    "anticipating",
    "anxious",
    "apprehensive",
    "ashamed",
    "caring",
    "confident",
    "content",
    "devastated",
    "disappointed",
    "disgusted",
    "embarrassed",
    "excited",
    "faithful",
    "furious",
    "grateful",
    "guilty",
    "hopeful",
    "impressed",
    "jealous",
    "joyful",
    "lonely",
    "nostalgic",
    "prepared",
    "proud",
    "sad",
    "sentimental",
    "surprised",
    "terrified",
    "trusting",
];

/// One row's utterance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmpatheticUtterance {
    /// The `speaker_idx` column (the crowd worker's id).
    pub speaker_idx: u64,
    /// The text with `_comma_` turned back into commas.
    pub text: String,
}

/// One conversation: its rows in `utterance_idx` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmpatheticConversation {
    /// The `conv_id` column.
    pub conv_id: String,
    /// The `context` column: the emotion label.
    pub emotion: String,
    /// The `prompt` column (the situation the speaker described).
    pub prompt: String,
    /// The utterances in order.
    pub utterances: Vec<EmpatheticUtterance>,
}

/// A loaded CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmpatheticDialogues {
    /// Conversations in file order.
    pub conversations: Vec<EmpatheticConversation>,
    /// The file read.
    pub source: PathBuf,
}

/// Turns the release's `_comma_` back into commas.
pub fn unescape_commas(text: &str) -> String {
    text.replace("_comma_", ",")
}

impl EmpatheticDialogues {
    /// Reads one CSV file (e.g. `train.csv`, `valid.csv` or `test.csv`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TextError> {
        let path = path.as_ref();
        let lines = read_lines(path)?;
        let bad = |line: usize, problem: LineProblem| TextError::Malformed {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let header = lines.first().map(String::as_str).unwrap_or("");
        if header.trim_start_matches('\u{feff}') != EMPATHETIC_HEADER {
            return Err(bad(
                1,
                LineProblem::UnexpectedHeader {
                    found: header.to_string(),
                    expected: EMPATHETIC_HEADER,
                },
            ));
        }
        let mut conversations: Vec<EmpatheticConversation> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, row) in lines.iter().enumerate().skip(1) {
            let line = i + 1;
            if row.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = row.split(',').collect();
            let [conv_id, idx, context, prompt, speaker, utterance, _selfeval, _tags] =
                fields.as_slice()
            else {
                return Err(bad(
                    line,
                    LineProblem::FieldCount {
                        found: fields.len(),
                        expected: N_FIELDS,
                    },
                ));
            };
            let number = |field: &'static str, value: &str| {
                value.trim().parse::<u64>().map_err(|_| {
                    bad(
                        line,
                        LineProblem::NotANumber {
                            field,
                            value: value.to_string(),
                        },
                    )
                })
            };
            let idx = number("utterance_idx", idx)?;
            let speaker_idx = number("speaker_idx", speaker)?;
            let conv_id = conv_id.trim();
            if conv_id.is_empty() {
                return Err(bad(line, LineProblem::EmptyField("conv_id")));
            }
            let emotion = context.trim();
            if !EMPATHETIC_EMOTIONS.contains(&emotion) {
                return Err(bad(line, LineProblem::UnknownEmotion(emotion.to_string())));
            }
            let text = unescape_commas(utterance).trim().to_string();
            if text.is_empty() {
                return Err(bad(line, LineProblem::EmptyField("utterance")));
            }
            let continues = conversations.last().is_some_and(|c| c.conv_id == conv_id);
            if !continues {
                if seen.contains(conv_id) {
                    return Err(bad(
                        line,
                        LineProblem::ConversationNotContiguous(conv_id.to_string()),
                    ));
                }
                seen.insert(conv_id.to_string());
                conversations.push(EmpatheticConversation {
                    conv_id: conv_id.to_string(),
                    emotion: emotion.to_string(),
                    prompt: unescape_commas(prompt).trim().to_string(),
                    utterances: Vec::new(),
                });
            }
            let Some(conv) = conversations.last_mut() else {
                continue;
            };
            let expected = conv.utterances.len() as u64 + 1;
            if idx != expected {
                return Err(bad(
                    line,
                    LineProblem::UtteranceOutOfOrder {
                        conv_id: conv_id.to_string(),
                        found: idx,
                        expected,
                    },
                ));
            }
            if conv.emotion != emotion {
                return Err(bad(
                    line,
                    LineProblem::EmotionChanged {
                        conv_id: conv_id.to_string(),
                        first: conv.emotion.clone(),
                        found: emotion.to_string(),
                    },
                ));
            }
            conv.utterances
                .push(EmpatheticUtterance { speaker_idx, text });
        }
        if conversations.is_empty() {
            return Err(bad(1, LineProblem::NoDialogues));
        }
        Ok(EmpatheticDialogues {
            conversations,
            source: path.to_path_buf(),
        })
    }

    /// Number of conversations.
    pub fn len(&self) -> usize {
        self.conversations.len()
    }

    /// Whether there are no conversations.
    pub fn is_empty(&self) -> bool {
        self.conversations.is_empty()
    }

    /// Total number of utterances.
    pub fn utterance_count(&self) -> usize {
        self.conversations.iter().map(|c| c.utterances.len()).sum()
    }

    /// The conversations in the common form: id `conv_id`, every utterance
    /// labelled with the conversation's emotion.
    pub fn to_dialogues(&self) -> Vec<Dialogue> {
        self.conversations
            .iter()
            .map(|c| Dialogue {
                id: c.conv_id.clone(),
                utterances: c
                    .utterances
                    .iter()
                    .map(|u| LabelledUtterance {
                        text: u.text.clone(),
                        emotion: c.emotion.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}
