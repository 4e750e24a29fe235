//! Evaluation of LLM agents behind `emorl reproduce llm-modules`:
//!
//! * (a) the upstream-style **marker metric**: generate under a forced
//!   emotional state and under the neutral state (same prompts, same sampling
//!   stream per pair) and count that emotion's marker words
//!   ([`marker_effect`], [`marker_run`]);
//! * (b) the **dialogue evaluation**: return, safety rate and helpfulness
//!   over seeds, compared with `llm-base` and `llm-static-prefix`
//!   ([`evaluate_dialogue`], [`compare_dialogue`]);
//! * (c) **fluency**: perplexity of generated responses under the frozen
//!   model without hooks ([`perplexity`], [`generations_perplexity`]);
//!
//! and the markdown/JSON [`Table`]s of all three.
//!
//! Marker counts are **rates per 100 words** of the response (0 for a
//! response without words): a module that only makes responses longer or
//! shorter does not change the rate, whereas raw counts would follow length.

mod appropriateness;
mod conditions;
mod dialogue;
mod fluency;
mod judge;
mod markers;
mod perplexity;
mod prompts;
mod tables;

pub use crate::lexicon::*;
pub use appropriateness::*;
pub use conditions::*;
pub use dialogue::*;
pub use fluency::*;
pub use judge::*;
pub use markers::*;
pub use perplexity::*;
pub use prompts::*;
pub use tables::*;
