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
    /// A companion file's name cannot be derived from a data file's name.
    #[error("{}: cannot derive the {what} file from this name (expected a name like {example})", path.display())]
    UnrecognisedFileName {
        /// The data file.
        path: PathBuf,
        /// Which companion file was wanted.
        what: &'static str,
        /// A name of the expected form.
        example: &'static str,
    },
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
    /// The line is not valid UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// The file has no data lines.
    #[error("no dialogues in file")]
    NoDialogues,
    /// A line of one file has no counterpart in a companion file.
    #[error("no matching line in {}", .0.display())]
    NoMatchingLine(PathBuf),
    /// A DailyDialog line has no `__eou__` separator.
    #[error("no '__eou__' utterance separator")]
    NoUtteranceSeparator,
    /// An utterance (1-based position on the line) is empty.
    #[error("utterance {0} is empty")]
    EmptyUtterance(usize),
    /// A DailyDialog emotion label is not 0..=6.
    #[error("emotion label '{0}' is not an integer from 0 to 6")]
    BadEmotionLabel(String),
    /// A DailyDialog act label is not 1..=4.
    #[error("act label '{0}' is not an integer from 1 to 4")]
    BadActLabel(String),
    /// A labels line has a different number of entries than the utterances
    /// on the same line of the dialogues file.
    #[error("{found} {kind} labels for {utterances} utterances in {}", dialogues.display())]
    LabelCountMismatch {
        /// `emotion` or `act`.
        kind: &'static str,
        /// Labels on the line.
        found: usize,
        /// Utterances on the dialogues line.
        utterances: usize,
        /// The dialogues file.
        dialogues: PathBuf,
    },
    /// A CSV header is not the expected one.
    #[error("header is '{found}', expected '{expected}'")]
    UnexpectedHeader {
        /// The header found.
        found: String,
        /// The header wanted.
        expected: &'static str,
    },
    /// A CSV row has the wrong number of comma-separated fields.
    #[error("{found} fields, expected {expected}")]
    FieldCount {
        /// Fields found.
        found: usize,
        /// Fields wanted.
        expected: usize,
    },
    /// A field that must not be empty is empty.
    #[error("empty field '{0}'")]
    EmptyField(&'static str),
    /// A field that must be a non-negative integer is not.
    #[error("field '{field}' is '{value}', not a non-negative integer")]
    NotANumber {
        /// The field's name.
        field: &'static str,
        /// Its content.
        value: String,
    },
    /// A row's `utterance_idx` does not continue its conversation.
    #[error("utterance_idx {found} in conversation '{conv_id}', expected {expected}")]
    UtteranceOutOfOrder {
        /// The conversation.
        conv_id: String,
        /// The index found.
        found: u64,
        /// The index that would continue the conversation.
        expected: u64,
    },
    /// A conversation's rows are not contiguous.
    #[error("conversation '{0}' continues after other conversations")]
    ConversationNotContiguous(String),
    /// A conversation's emotion label changes between rows.
    #[error("emotion '{found}' differs from '{first}' earlier in conversation '{conv_id}'")]
    EmotionChanged {
        /// The conversation.
        conv_id: String,
        /// The label of its first row.
        first: String,
        /// The label of this row.
        found: String,
    },
    /// An emotion label outside the dataset's label set.
    #[error("unknown emotion label '{0}'")]
    UnknownEmotion(String),
}
