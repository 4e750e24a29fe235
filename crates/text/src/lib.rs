//! Text utilities shared by emorl's environments and language-model agents.
//!
//! * [`words`]: the one word splitter (lower-cased runs of letters, digits
//!   and apostrophes).
//! * [`goemotions`]: loading the GoEmotions corpus (28 labels, three splits).
//! * [`labels`]: the emotion vocabulary of the LLM modules and its mappings
//!   from GoEmotions and DailyDialog labels.
//! * [`dialogues`]: DailyDialog and EmpatheticDialogues loading, and their
//!   dialogues as multi-turn examples (history + response) with splits,
//!   shuffling, rendering and token masks.
//! * [`ngram`] + [`classifier`]: a hashed n-gram, one-vs-rest logistic
//!   regression emotion classifier trained only on GoEmotions, so generated
//!   text can be judged by a model that shares nothing with the generator.

#![warn(missing_docs)]

pub mod classifier;
pub mod dialogues;
pub mod error;
pub mod goemotions;
pub mod labels;
pub mod ngram;
pub mod words;

pub use classifier::{goemotions_judge, ClassifierConfig, Evaluation, LabelScore, TextClassifier};
pub use dialogues::{
    examples, segment_masks, shuffle_seeded, split_examples, DailyDialogCorpus, Dialogue,
    DialogueExample, EmpatheticDialogues, Masks, Role, Segment, Split, SplitFractions, Splits,
    Turn,
};
pub use error::{LineProblem, TextError};
pub use goemotions::{load_labels, load_split, Example, GoEmotions};
pub use labels::{dailydialog_to_judge, goemotions_to_judge, JUDGE_LABELS};
pub use words::{word_count, words};
