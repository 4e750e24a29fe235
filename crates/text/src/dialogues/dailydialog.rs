//! DailyDialog-format corpora: `dialogues_X.txt` holds one dialogue per line
//! with utterances separated by `__eou__`; `dialogues_emotion_X.txt` holds one
//! space-separated emotion label per utterance (0 none, 1 anger, 2 disgust,
//! 3 fear, 4 happiness, 5 sadness, 6 surprise); the optional
//! `dialogues_act_X.txt` holds one dialogue-act label per utterance
//! (1 inform, 2 question, 3 directive, 4 commissive).
//!
//! Malformed input is an error naming the file and the 1-based line. The
//! text is lightly detokenised ("I ’ ll" → "I’ll", "you , too" → "you, too").

use super::{read_lines, Dialogue, LabelledUtterance};
use crate::error::{LineProblem, TextError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// DailyDialog's emotion labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    /// Label 0: no emotion.
    None,
    /// Label 1.
    Anger,
    /// Label 2.
    Disgust,
    /// Label 3.
    Fear,
    /// Label 4.
    Happiness,
    /// Label 5.
    Sadness,
    /// Label 6.
    Surprise,
}

impl Emotion {
    /// All labels in label-id order.
    pub const ALL: [Emotion; 7] = [
        Emotion::None,
        Emotion::Anger,
        Emotion::Disgust,
        Emotion::Fear,
        Emotion::Happiness,
        Emotion::Sadness,
        Emotion::Surprise,
    ];

    /// The emotion of a label name ([`Emotion::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The emotion of a corpus label id (0..=6).
    pub fn from_label(label: u8) -> Option<Self> {
        Self::ALL.get(usize::from(label)).copied()
    }

    /// The label id of the corpus files (the inverse of [`Emotion::from_label`]).
    pub fn label(self) -> u8 {
        match self {
            Emotion::None => 0,
            Emotion::Anger => 1,
            Emotion::Disgust => 2,
            Emotion::Fear => 3,
            Emotion::Happiness => 4,
            Emotion::Sadness => 5,
            Emotion::Surprise => 6,
        }
    }

    /// The lower-case name ("none", "anger", ...).
    pub fn name(self) -> &'static str {
        match self {
            Emotion::None => "none",
            Emotion::Anger => "anger",
            Emotion::Disgust => "disgust",
            Emotion::Fear => "fear",
            Emotion::Happiness => "happiness",
            Emotion::Sadness => "sadness",
            Emotion::Surprise => "surprise",
        }
    }
}

/// DailyDialog's dialogue-act labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DialogueAct {
    /// Label 1.
    Inform,
    /// Label 2.
    Question,
    /// Label 3.
    Directive,
    /// Label 4.
    Commissive,
}

impl DialogueAct {
    /// The act of a corpus label id (1..=4).
    pub fn from_label(label: u8) -> Option<Self> {
        Some(match label {
            1 => DialogueAct::Inform,
            2 => DialogueAct::Question,
            3 => DialogueAct::Directive,
            4 => DialogueAct::Commissive,
            _ => return None,
        })
    }

    /// The label id of the corpus files.
    pub fn label(self) -> u8 {
        match self {
            DialogueAct::Inform => 1,
            DialogueAct::Question => 2,
            DialogueAct::Directive => 3,
            DialogueAct::Commissive => 4,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DialogueAct::Inform => "inform",
            DialogueAct::Question => "question",
            DialogueAct::Directive => "directive",
            DialogueAct::Commissive => "commissive",
        }
    }
}

/// One utterance with its labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    /// The detokenised text.
    pub text: String,
    /// Its emotion label.
    pub emotion: Emotion,
    /// Its dialogue act, when an act file was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<DialogueAct>,
}

/// A loaded corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyDialogCorpus {
    /// Dialogues in file order (blank lines skipped).
    pub dialogues: Vec<Vec<Utterance>>,
    /// The dialogues file.
    pub source: PathBuf,
}

/// The emotion labels file next to `dialogues_X.txt`: `dialogues_emotion_X.txt`.
pub fn labels_path_for(dialogues: &Path) -> Option<PathBuf> {
    companion(dialogues, "emotion")
}

/// The act labels file next to `dialogues_X.txt`: `dialogues_act_X.txt`.
pub fn acts_path_for(dialogues: &Path) -> Option<PathBuf> {
    companion(dialogues, "act")
}

fn companion(dialogues: &Path, kind: &str) -> Option<PathBuf> {
    let name = dialogues.file_name()?.to_str()?;
    let rest = name.strip_prefix("dialogues_")?;
    Some(dialogues.with_file_name(format!("dialogues_{kind}_{rest}")))
}

/// Light detokenisation of DailyDialog's spaced punctuation.
pub fn detokenize(text: &str) -> String {
    let mut s = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [
        (" ’ ", "’"),
        (" ' ", "'"),
        (" ,", ","),
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ;", ";"),
        (" :", ":"),
    ] {
        s = s.replace(from, to);
    }
    s
}

impl DailyDialogCorpus {
    /// Loads `dialogues_X.txt` with its `dialogues_emotion_X.txt` neighbour,
    /// and `dialogues_act_X.txt` too when that file exists.
    pub fn load(dialogues: &Path) -> Result<Self, TextError> {
        let unrecognised = || TextError::UnrecognisedFileName {
            path: dialogues.to_path_buf(),
            what: "emotion labels",
            example: "dialogues_test.txt",
        };
        let emotions = labels_path_for(dialogues).ok_or_else(unrecognised)?;
        let acts = acts_path_for(dialogues).filter(|p| p.is_file());
        Self::load_files(dialogues, &emotions, acts.as_deref())
    }

    /// Loads a dialogues file and an explicit emotion labels file (no acts).
    pub fn load_pair(dialogues: &Path, emotions: &Path) -> Result<Self, TextError> {
        Self::load_files(dialogues, emotions, None)
    }

    /// Loads a dialogues file, its emotion labels file and, when given, its
    /// act labels file; all must have the same number of lines and of
    /// entries per line.
    pub fn load_files(
        dialogues: &Path,
        emotions: &Path,
        acts: Option<&Path>,
    ) -> Result<Self, TextError> {
        let text_lines = read_lines(dialogues)?;
        let emotion_lines = read_lines(emotions)?;
        let act_lines = match acts {
            Some(p) => Some((p, read_lines(p)?)),
            None => None,
        };
        let n = text_lines
            .len()
            .max(emotion_lines.len())
            .max(act_lines.as_ref().map_or(0, |(_, l)| l.len()));
        let mut out = Vec::new();
        for i in 0..n {
            let line = i + 1;
            let text = match text_lines.get(i) {
                Some(t) => t,
                None => {
                    let longer = if emotion_lines.len() > i {
                        emotions
                    } else {
                        act_lines.as_ref().map_or(emotions, |(p, _)| *p)
                    };
                    return Err(malformed(
                        longer,
                        line,
                        LineProblem::NoMatchingLine(dialogues.to_path_buf()),
                    ));
                }
            };
            let emotion_line = emotion_lines.get(i).ok_or_else(|| {
                malformed(
                    dialogues,
                    line,
                    LineProblem::NoMatchingLine(emotions.to_path_buf()),
                )
            })?;
            let act_line = match &act_lines {
                Some((p, lines)) => match lines.get(i) {
                    Some(l) => Some((*p, l)),
                    None => {
                        return Err(malformed(
                            dialogues,
                            line,
                            LineProblem::NoMatchingLine(p.to_path_buf()),
                        ))
                    }
                },
                None => None,
            };
            if text.trim().is_empty()
                && emotion_line.trim().is_empty()
                && act_line.map(|(_, l)| l.trim().is_empty()).unwrap_or(true)
            {
                continue;
            }
            let pieces = split_utterances(text).map_err(|p| malformed(dialogues, line, p))?;
            let emotions_here = parse_labels(emotion_line, |t| {
                t.parse::<u8>().ok().and_then(Emotion::from_label)
            })
            .map_err(|t| malformed(emotions, line, LineProblem::BadEmotionLabel(t)))?;
            check_count(
                emotions,
                line,
                "emotion",
                emotions_here.len(),
                pieces.len(),
                dialogues,
            )?;
            let acts_here = match act_line {
                Some((p, l)) => {
                    let a = parse_labels(l, |t| {
                        t.parse::<u8>().ok().and_then(DialogueAct::from_label)
                    })
                    .map_err(|t| malformed(p, line, LineProblem::BadActLabel(t)))?;
                    check_count(p, line, "act", a.len(), pieces.len(), dialogues)?;
                    a.into_iter().map(Some).collect()
                }
                None => vec![None; pieces.len()],
            };
            out.push(
                pieces
                    .into_iter()
                    .zip(emotions_here)
                    .zip(acts_here)
                    .map(|((t, emotion), act)| Utterance {
                        text: detokenize(t),
                        emotion,
                        act,
                    })
                    .collect(),
            );
        }
        if out.is_empty() {
            return Err(malformed(dialogues, 1, LineProblem::NoDialogues));
        }
        Ok(DailyDialogCorpus {
            dialogues: out,
            source: dialogues.to_path_buf(),
        })
    }

    /// Number of dialogues.
    pub fn len(&self) -> usize {
        self.dialogues.len()
    }

    /// Whether there are no dialogues.
    pub fn is_empty(&self) -> bool {
        self.dialogues.is_empty()
    }

    /// Total number of utterances.
    pub fn utterance_count(&self) -> usize {
        self.dialogues.iter().map(Vec::len).sum()
    }

    /// The dialogues in the common form: id `<file stem>#<index>`, each
    /// utterance labelled with its emotion's name.
    pub fn to_dialogues(&self) -> Vec<Dialogue> {
        let stem = self
            .source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dialogues
            .iter()
            .enumerate()
            .map(|(i, d)| Dialogue {
                id: format!("{stem}#{i}"),
                utterances: d
                    .iter()
                    .map(|u| LabelledUtterance {
                        text: u.text.clone(),
                        emotion: u.emotion.name().to_string(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Splits a line on `__eou__`, dropping the empty piece after the last one.
fn split_utterances(text: &str) -> Result<Vec<&str>, LineProblem> {
    if !text.contains("__eou__") {
        return Err(LineProblem::NoUtteranceSeparator);
    }
    let mut pieces: Vec<&str> = text.split("__eou__").map(str::trim).collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    if let Some(k) = pieces.iter().position(|p| p.is_empty()) {
        return Err(LineProblem::EmptyUtterance(k + 1));
    }
    Ok(pieces)
}

/// Parses whitespace-separated labels; the error is the first bad token.
fn parse_labels<T>(line: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    line.split_whitespace()
        .map(|t| parse(t).ok_or_else(|| t.to_string()))
        .collect()
}

fn check_count(
    path: &Path,
    line: usize,
    kind: &'static str,
    found: usize,
    utterances: usize,
    dialogues: &Path,
) -> Result<(), TextError> {
    if found == utterances {
        return Ok(());
    }
    Err(malformed(
        path,
        line,
        LineProblem::LabelCountMismatch {
            kind,
            found,
            utterances,
            dialogues: dialogues.to_path_buf(),
        },
    ))
}

fn malformed(path: &Path, line: usize, problem: LineProblem) -> TextError {
    TextError::Malformed {
        path: path.to_path_buf(),
        line,
        problem,
    }
}
