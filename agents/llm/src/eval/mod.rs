//! Evaluation of LLM agents behind `emorl reproduce llm-modules`, built so
//! that nothing the modules are trained on judges them:
//!
//! * **forced-emotion effect** ([`marker_run`]): each prompt × sample is
//!   answered under the neutral state (every emotion 0) and under each
//!   emotion at 1 with the same sampling stream, so rows are paired; each
//!   response is scored by the independent [`Judge`] (a GoEmotions
//!   classifier, never a training signal), by the held-out half of the
//!   emotion's lexicon (the expression objective and the ERM use only the
//!   other half) and by the full lexicon (upstream's metric); paired t,
//!   d_z, Wilcoxon, Holm over the table ([`holm_adjust`]);
//! * **dialogue** ([`evaluate_dialogue`], [`compare_dialogue`]): return,
//!   safety rate and helpfulness on held-out conversations, paired by seed
//!   against `llm-base`, `llm-prompted` and `llm-static-prefix`;
//! * **fluency** ([`dialogue_fluency`]): the frozen model's perplexity of
//!   the dialogue responses and their distinct-2;
//! * **appropriateness** ([`appropriateness`]): the judge's fear on unsafe
//!   requests and joy on thanks, against the other turns;
//! * **alignment** ([`emo_alignment`]): the cosine between the judge's
//!   scores of a response and a target emotion, and their [`EmotionEma`];
//!
//! and the markdown/JSON tables of all of them ([`targets_table`] …).

mod alignment;
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
pub use alignment::*;
pub use appropriateness::*;
pub use conditions::*;
pub use dialogue::*;
pub use fluency::*;
pub use judge::*;
pub use markers::*;
pub use perplexity::*;
pub use prompts::*;
pub use tables::*;
