//! Loader for DailyDialog-format corpora: one dialogue per line with
//! utterances separated by `__eou__`, and a matching labels file with one
//! space-separated emotion label per utterance (0 none, 1 anger, 2 disgust,
//! 3 fear, 4 happiness, 5 sadness, 6 surprise).
//!
//! Malformed input is an error that names the file and the 1-based line.
//! The text is lightly detokenised for display ("I ’ ll" → "I’ll",
//! "you , too" → "you, too").

use crate::error::TextEnvError;
use crate::scoring::Need;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// DailyDialog's emotion labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    None,
    Anger,
    Disgust,
    Fear,
    Happiness,
    Sadness,
    Surprise,
}

impl Emotion {
    pub fn from_label(label: u8) -> Option<Self> {
        Some(match label {
            0 => Emotion::None,
            1 => Emotion::Anger,
            2 => Emotion::Disgust,
            3 => Emotion::Fear,
            4 => Emotion::Happiness,
            5 => Emotion::Sadness,
            6 => Emotion::Surprise,
            _ => return None,
        })
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

    /// What a reply to an utterance with this emotion calls for: anger and
    /// disgust an alternative (acknowledge and change course), fear caution
    /// and reassurance, happiness and sadness warmth, surprise elaboration,
    /// none a plain informative answer.
    pub fn need(self) -> Need {
        match self {
            Emotion::None => Need::Inform,
            Emotion::Anger | Emotion::Disgust => Need::Alternative,
            Emotion::Fear => Need::Caution,
            Emotion::Happiness | Emotion::Sadness => Need::Warm,
            Emotion::Surprise => Need::Elaborate,
        }
    }
}

/// One utterance with its emotion label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    pub text: String,
    pub emotion: Emotion,
}

/// A loaded corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyDialogCorpus {
    pub dialogues: Vec<Vec<Utterance>>,
    pub source: PathBuf,
}

/// The labels file next to `dialogues_X.txt`: `dialogues_emotion_X.txt`.
pub fn labels_path_for(dialogues: &Path) -> Option<PathBuf> {
    let name = dialogues.file_name()?.to_str()?;
    let rest = name.strip_prefix("dialogues_")?;
    Some(dialogues.with_file_name(format!("dialogues_emotion_{rest}")))
}

fn read_lines(path: &Path) -> Result<Vec<String>, TextEnvError> {
    let bytes = std::fs::read(path).map_err(|source| TextEnvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|_| TextEnvError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            reason: "not valid UTF-8".into(),
        })?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    // A trailing newline leaves one empty piece at the end.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines)
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
    /// Loads `dialogues_X.txt` and its `dialogues_emotion_X.txt` neighbour.
    pub fn load(dialogues: &Path) -> Result<Self, TextEnvError> {
        let labels = labels_path_for(dialogues).ok_or_else(|| {
            TextEnvError::InvalidConfig(format!(
                "cannot derive the emotion labels file from {} (expected a name like dialogues_test.txt)",
                dialogues.display()
            ))
        })?;
        Self::load_pair(dialogues, &labels)
    }

    /// Loads a dialogues file and an explicit labels file.
    pub fn load_pair(dialogues: &Path, labels: &Path) -> Result<Self, TextEnvError> {
        let text_lines = read_lines(dialogues)?;
        let label_lines = read_lines(labels)?;
        let mut out = Vec::new();
        let n = text_lines.len().max(label_lines.len());
        for i in 0..n {
            let (text, labels_line) = match (text_lines.get(i), label_lines.get(i)) {
                (Some(t), Some(l)) => (t, l),
                (Some(_), None) => {
                    return Err(TextEnvError::Malformed {
                        path: dialogues.to_path_buf(),
                        line: i + 1,
                        reason: format!("no matching line in {}", labels.display()),
                    })
                }
                (None, _) => {
                    return Err(TextEnvError::Malformed {
                        path: labels.to_path_buf(),
                        line: i + 1,
                        reason: format!("no matching line in {}", dialogues.display()),
                    })
                }
            };
            let line = i + 1;
            if text.trim().is_empty() && labels_line.trim().is_empty() {
                continue;
            }
            if !text.contains("__eou__") {
                return Err(TextEnvError::Malformed {
                    path: dialogues.to_path_buf(),
                    line,
                    reason: "no '__eou__' utterance separator".into(),
                });
            }
            let mut pieces: Vec<&str> = text.split("__eou__").map(str::trim).collect();
            if pieces.last().is_some_and(|p| p.is_empty()) {
                pieces.pop();
            }
            if let Some(k) = pieces.iter().position(|p| p.is_empty()) {
                return Err(TextEnvError::Malformed {
                    path: dialogues.to_path_buf(),
                    line,
                    reason: format!("utterance {} is empty", k + 1),
                });
            }
            let mut emotions = Vec::with_capacity(pieces.len());
            for tok in labels_line.split_whitespace() {
                let e = tok
                    .parse::<u8>()
                    .ok()
                    .and_then(Emotion::from_label)
                    .ok_or_else(|| TextEnvError::Malformed {
                        path: labels.to_path_buf(),
                        line,
                        reason: format!("label '{tok}' is not an integer from 0 to 6"),
                    })?;
                emotions.push(e);
            }
            if emotions.len() != pieces.len() {
                return Err(TextEnvError::Malformed {
                    path: labels.to_path_buf(),
                    line,
                    reason: format!(
                        "{} emotion labels for {} utterances in {}",
                        emotions.len(),
                        pieces.len(),
                        dialogues.display()
                    ),
                });
            }
            out.push(
                pieces
                    .into_iter()
                    .zip(emotions)
                    .map(|(t, emotion)| Utterance {
                        text: detokenize(t),
                        emotion,
                    })
                    .collect(),
            );
        }
        if out.is_empty() {
            return Err(TextEnvError::Malformed {
                path: dialogues.to_path_buf(),
                line: 1,
                reason: "no dialogues in file".into(),
            });
        }
        Ok(DailyDialogCorpus {
            dialogues: out,
            source: dialogues.to_path_buf(),
        })
    }

    pub fn len(&self) -> usize {
        self.dialogues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(body.as_bytes()).expect("write");
        p
    }

    #[test]
    fn loads_and_detokenizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = write(
            dir.path(),
            "dialogues_x.txt",
            "Hi , how are you ? __eou__ I ’ m fine . __eou__\nGreat ! __eou__ Yes __eou__ \n",
        );
        write(dir.path(), "dialogues_emotion_x.txt", "0 4 \n4 0\n");
        let c = DailyDialogCorpus::load(&d).expect("load");
        assert_eq!(c.len(), 2);
        assert_eq!(c.dialogues[0][0].text, "Hi, how are you?");
        assert_eq!(c.dialogues[0][1].text, "I’m fine.");
        assert_eq!(c.dialogues[0][1].emotion, Emotion::Happiness);
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = write(
            dir.path(),
            "dialogues_y.txt",
            "A __eou__ B __eou__\nC __eou__ D __eou__\n",
        );
        write(dir.path(), "dialogues_emotion_y.txt", "0 0\n0 9\n");
        let err = DailyDialogCorpus::load(&d).expect_err("bad label");
        let msg = err.to_string();
        assert!(msg.contains("dialogues_emotion_y.txt:2"), "{msg}");
        assert!(msg.contains("'9'"), "{msg}");

        write(dir.path(), "dialogues_emotion_y.txt", "0 0\n0\n");
        let msg = DailyDialogCorpus::load(&d).expect_err("count").to_string();
        assert!(
            msg.contains(":2") && msg.contains("1 emotion labels for 2"),
            "{msg}"
        );

        write(dir.path(), "dialogues_emotion_y.txt", "0 0\n");
        let msg = DailyDialogCorpus::load(&d).expect_err("lines").to_string();
        assert!(msg.contains("dialogues_y.txt:2"), "{msg}");

        let d2 = write(dir.path(), "dialogues_z.txt", "no separator here\n");
        write(dir.path(), "dialogues_emotion_z.txt", "0\n");
        let msg = DailyDialogCorpus::load(&d2).expect_err("sep").to_string();
        assert!(
            msg.contains("dialogues_z.txt:1") && msg.contains("__eou__"),
            "{msg}"
        );

        let missing = dir.path().join("dialogues_missing.txt");
        let msg = DailyDialogCorpus::load(&missing)
            .expect_err("io")
            .to_string();
        assert!(msg.contains("dialogues_missing.txt"), "{msg}");

        let msg = DailyDialogCorpus::load(Path::new("/tmp/whatever.txt"))
            .expect_err("name")
            .to_string();
        assert!(msg.contains("whatever.txt"), "{msg}");
    }

    #[test]
    fn emotion_needs() {
        assert_eq!(
            Emotion::from_label(1).map(Emotion::need),
            Some(Need::Alternative)
        );
        assert_eq!(Emotion::from_label(7), None);
        assert_eq!(Emotion::Surprise.need(), Need::Elaborate);
    }
}
