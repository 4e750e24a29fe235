//! Loading the GoEmotions corpus (Demszky et al., 2020): Reddit comments with
//! one or more of 28 emotion labels.
//!
//! The directory holds `labels.txt` (one name per line; the index of a label
//! is its line number from 0) and `train.tsv`, `dev.tsv`, `test.tsv` with the
//! header `text\tlabel\tid`, where `label` is a comma-separated list of
//! indices. Columns are split on tabs only; quotes are part of the text.

use crate::error::{LineProblem, TextError};
use std::path::{Path, PathBuf};

/// One labelled comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The comment as written.
    pub text: String,
    /// Indices into [`GoEmotions::labels`], in file order (never empty).
    pub labels: Vec<usize>,
    /// The corpus id of the comment.
    pub id: String,
}

/// The label names and the three splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoEmotions {
    /// Label names; an example's label `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// Training split.
    pub train: Vec<Example>,
    /// Development split (model selection, threshold tuning).
    pub dev: Vec<Example>,
    /// Test split (reported numbers only).
    pub test: Vec<Example>,
}

impl GoEmotions {
    /// Reads `labels.txt`, `train.tsv`, `dev.tsv` and `test.tsv` from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<GoEmotions, TextError> {
        let dir = dir.as_ref();
        let labels = load_labels(dir.join("labels.txt"))?;
        let n = labels.len();
        let data = GoEmotions {
            train: load_split(dir.join("train.tsv"), n)?,
            dev: load_split(dir.join("dev.tsv"), n)?,
            test: load_split(dir.join("test.tsv"), n)?,
            labels,
        };
        tracing::debug!(
            train = data.train.len(),
            dev = data.dev.len(),
            test = data.test.len(),
            "loaded GoEmotions from {}",
            dir.display()
        );
        Ok(data)
    }

    /// The index of the label called `name`.
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == name)
    }
}

/// Reads a label file: one non-empty, distinct name per line.
pub fn load_labels(path: impl AsRef<Path>) -> Result<Vec<String>, TextError> {
    let path = path.as_ref();
    let content = read(path)?;
    let mut labels: Vec<String> = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() || labels.iter().any(|l| l == name) {
            return Err(malformed(
                path,
                i + 1,
                LineProblem::BadLabelName(name.into()),
            ));
        }
        labels.push(name.to_string());
    }
    Ok(labels)
}

/// Reads one split (`text\tlabel\tid` with a header line); label indices
/// must be below `n_labels`.
pub fn load_split(path: impl AsRef<Path>, n_labels: usize) -> Result<Vec<Example>, TextError> {
    let path = path.as_ref();
    let content = read(path)?;
    let mut lines = content.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or("");
    if header.trim_end_matches('\r') != "text\tlabel\tid" {
        return Err(malformed(path, 1, LineProblem::BadHeader(header.into())));
    }
    lines
        .map(|(i, line)| parse_line(line, n_labels).map_err(|p| malformed(path, i + 1, p)))
        .collect()
}

/// One data line into an example.
fn parse_line(line: &str, n_labels: usize) -> Result<Example, LineProblem> {
    let columns: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
    let (text, label, id) = match columns.as_slice() {
        [text, label, id] => (*text, *label, *id),
        [_] => return Err(LineProblem::MissingColumn("label")),
        [_, _] => return Err(LineProblem::MissingColumn("id")),
        more => return Err(LineProblem::ExtraColumns(more.len())),
    };
    if label.trim().is_empty() {
        return Err(LineProblem::EmptyLabelList);
    }
    let labels = label
        .split(',')
        .map(|entry| {
            let entry = entry.trim();
            let index: usize = entry
                .parse()
                .map_err(|_| LineProblem::LabelNotANumber(entry.into()))?;
            if index >= n_labels {
                return Err(LineProblem::LabelOutOfRange { index, n_labels });
            }
            Ok(index)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Example {
        text: text.to_string(),
        labels,
        id: id.to_string(),
    })
}

fn read(path: &Path) -> Result<String, TextError> {
    std::fs::read_to_string(path).map_err(|source| TextError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn malformed(path: &Path, line: usize, problem: LineProblem) -> TextError {
    TextError::Malformed {
        path: PathBuf::from(path),
        line,
        problem,
    }
}
