//! Where the labelled text lives: GoEmotions and DailyDialog are read from
//! local files (never downloaded), found through an environment variable or
//! a `shared/data` folder beside or above the working directory, and the
//! texts of theirs labelled with one of the four emotions or neutral.

use std::path::PathBuf;

fn find(env: &str, relative: &str, marker: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .flat_map(|a| [a.join("shared/data"), a.join("../shared/data")])
        .map(|d| d.join(relative))
        .find(|p| p.join(marker).is_file())
}

/// The GoEmotions folder (`train.tsv`, `dev.tsv`, `test.tsv`,
/// `labels.txt`): `$EMORL_GOEMOTIONS_DIR`, else `shared/data/goemotions`.
pub fn goemotions_dir() -> Option<PathBuf> {
    find("EMORL_GOEMOTIONS_DIR", "goemotions", "train.tsv")
}

/// DailyDialog's validation dialogues (its emotion labels beside it):
/// `$EMORL_DAILYDIALOG_DIR/dialogues_validation.txt`, else under
/// `shared/data/dailydialog`.
pub fn dailydialog_file() -> Option<PathBuf> {
    let dir = find(
        "EMORL_DAILYDIALOG_DIR",
        "dailydialog",
        "dialogues_validation.txt",
    )?;
    let file = dir.join("dialogues_validation.txt");
    file.is_file().then_some(file)
}

/// The labelled-text classes: the four emotions (in [`crate::EMOTIONS`]
/// order), then neutral (the judge's labels, in the same order).
pub const CLASSES: [&str; 5] = emorl_text::JUDGE_LABELS;
/// Index of `"neutral"` in [`CLASSES`].
pub const NEUTRAL_CLASS: usize = 4;

/// A text with one emotion class (index into [`CLASSES`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledText {
    pub text: String,
    pub class: usize,
}

fn class_of_name(name: &str) -> Option<usize> {
    CLASSES.iter().position(|c| *c == name)
}

/// GoEmotions examples whose labels name exactly one of [`CLASSES`]
/// (examples with two of them are ambiguous and left out), at most
/// `per_class` per class, in file order.
pub fn goemotions_texts(
    labels: &[String],
    examples: &[emorl_text::Example],
    per_class: usize,
) -> Vec<LabelledText> {
    let mut counts = [0usize; CLASSES.len()];
    let mut out = Vec::new();
    for e in examples {
        let classes: Vec<usize> = e
            .labels
            .iter()
            .filter_map(|&l| labels.get(l).and_then(|n| class_of_name(n)))
            .collect();
        if let [c] = classes.as_slice() {
            if counts[*c] < per_class {
                counts[*c] += 1;
                out.push(LabelledText {
                    text: e.text.clone(),
                    class: *c,
                });
            }
        }
    }
    out
}

/// Labelled text to learn from and to hold out, as the supervised phases use it.
#[derive(Clone, Debug)]
pub struct LabelledCorpora {
    /// GoEmotions' train split (at most `per_class` per class), then
    /// DailyDialog's utterances when a dialogues file is given.
    pub train: Vec<LabelledText>,
    /// GoEmotions' dev split (for choosing settings).
    pub dev: Vec<LabelledText>,
    /// GoEmotions' test split (reported).
    pub test: Vec<LabelledText>,
}

/// Reads [`LabelledCorpora`] from the GoEmotions folder and an optional
/// DailyDialog dialogues file (`phase` names the reader in errors).
pub fn labelled_corpora(
    goemotions: &std::path::Path,
    dailydialog: Option<&std::path::Path>,
    per_class: usize,
    test_per_class: usize,
    phase: &str,
) -> crate::error::Result<LabelledCorpora> {
    let data = emorl_text::GoEmotions::load(goemotions)
        .map_err(|e| crate::params::invalid(format!("{phase}: {e}")))?;
    let mut train = goemotions_texts(&data.labels, &data.train, per_class);
    if let Some(dd) = dailydialog {
        let corpus = emorl_envs_text::DailyDialogCorpus::load(dd)?;
        train.extend(dailydialog_texts(&corpus, per_class));
    }
    Ok(LabelledCorpora {
        train,
        dev: goemotions_texts(&data.labels, &data.dev, test_per_class),
        test: goemotions_texts(&data.labels, &data.test, test_per_class),
    })
}

/// DailyDialog utterances labelled anger, fear, happiness (joy) or no
/// emotion (neutral), at most `per_class` per class; DailyDialog has no
/// curiosity label (surprise is not curiosity), and disgust and sadness
/// have no counterpart among the four emotions.
pub fn dailydialog_texts(
    corpus: &emorl_envs_text::DailyDialogCorpus,
    per_class: usize,
) -> Vec<LabelledText> {
    let mut counts = [0usize; CLASSES.len()];
    let mut out = Vec::new();
    for u in corpus.dialogues.iter().flatten() {
        let Some(class) =
            emorl_text::dailydialog_to_judge(u.emotion.label()).and_then(class_of_name)
        else {
            continue;
        };
        if counts[class] < per_class {
            counts[class] += 1;
            out.push(LabelledText {
                text: u.text.clone(),
                class,
            });
        }
    }
    out
}
