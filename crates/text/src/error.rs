//! Errors of the text crate.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong loading data, training or reading a model.
#[derive(Debug, Error)]
pub enum TextError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A data file is malformed at a (1-based) line.
    #[error("{}:{line}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        problem: LineProblem,
    },
    /// A saved classifier cannot be read back.
    #[error("{}: not a usable classifier file: {problem}", path.display())]
    CorruptModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Training or evaluation inputs do not fit together.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A label name that the dataset does not have.
    #[error("unknown label '{0}'")]
    UnknownLabel(String),
}

/// What is wrong with one line of a data file.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LineProblem {
    /// The line has fewer tab-separated columns than the header.
    #[error("missing column '{0}'")]
    MissingColumn(&'static str),
    /// The header is not `text\tlabel\tid`.
    #[error("header is '{0}', expected 'text<TAB>label<TAB>id'")]
    BadHeader(String),
    /// A label entry is not a non-negative integer.
    #[error("label index '{0}' is not a number")]
    LabelNotANumber(String),
    /// A label index is not below the number of labels.
    #[error("label index {index} out of range (the dataset has {n_labels} labels)")]
    LabelOutOfRange {
        /// The index found.
        index: usize,
        /// How many labels there are.
        n_labels: usize,
    },
    /// The label column is empty.
    #[error("empty label list")]
    EmptyLabelList,
    /// The line has more tab-separated columns than the header (a tab in
    /// the text would shift the label column, so this is refused).
    #[error("{0} columns, expected 3 (text, label, id)")]
    ExtraColumns(usize),
    /// A label name in `labels.txt` is empty or repeated.
    #[error("label name '{0}' is empty or repeated")]
    BadLabelName(String),
}
