//! Text environments of emorl, for comparing tabular, DQN and language-model
//! agents on tasks whose observations and actions are text.
//!
//! * [`dialogue::Dialogue`] (`dialogue`): a conversation with a simulated
//!   user drawn from templated scenarios (safety-sensitive, frustrated,
//!   curious, pleased, neutral) and optionally DailyDialog-format corpus
//!   turns; transparent reward scorers, a hidden safety score in
//!   `info["hidden_safety"]`, per-episode metrics and scripted baselines.
//! * [`igt::Igt`] (`igt`): the Iowa Gambling Task as text.
//! * [`textgrid::TextGrid`] (`gridworld-text`): any [`emorl_core::DiscreteEnv`]
//!   rendered as text, driven by typed moves.
//! * [`play::play`]: a terminal loop for a person to play the dialogue.

pub mod dailydialog;
pub mod dialogue;
pub mod error;
pub mod igt;
pub mod markers;
pub mod metrics;
pub mod play;
pub mod policies;
pub mod safety;
pub mod scenarios;
pub mod scoring;
pub mod signals;
pub mod speaker;
pub mod text;
pub mod textgrid;

pub use dailydialog::{DailyDialogCorpus, Emotion, EmotionNeed};
pub use dialogue::{Dialogue, DialogueConfig, DialogueObs, OracleView, Speaker, Turn};
pub use error::TextEnvError;
pub use igt::{Deck, Igt, IgtConfig, IgtObs};
pub use metrics::{EpisodeLog, EpisodeMetrics, Outcome, TurnRecord};
pub use play::play;
pub use policies::{evaluate, EvalSummary, PolicyKind, ScriptedPolicy};
pub use scenarios::ScenarioKind;
pub use scoring::Need;
pub use textgrid::{TextGrid, TextGridConfig, TextGridObs};

/// Registry ID of the dialogue environment.
pub const DIALOGUE_ID: &str = "dialogue";
/// One-line description of the dialogue environment.
pub const DIALOGUE_DESCRIPTION: &str =
    "Conversation with a simulated user (safety-sensitive, frustrated, curious, pleased, neutral); text in, text out; hidden safety score";
/// Registry ID of the Iowa Gambling Task.
pub const IGT_ID: &str = "igt";
/// One-line description of the Iowa Gambling Task.
pub const IGT_DESCRIPTION: &str =
    "Iowa Gambling Task as text: pick deck A-D for 100 trials; A/B pay more but lose overall, C/D win overall";
/// Registry ID of the gridworld-as-text bridge.
pub const GRIDWORLD_TEXT_ID: &str = "gridworld-text";
/// One-line description of the gridworld-as-text bridge.
pub const GRIDWORLD_TEXT_DESCRIPTION: &str =
    "Any discrete gridworld rendered as text with its emotional context; the response names a move (up/down/left/right)";
/// Registry IDs of the scripted dialogue policies.
pub const DIALOGUE_POLICY_IDS: [&str; 3] = [
    policies::RANDOM_TEMPLATE_ID,
    policies::GENERIC_ID,
    policies::ORACLE_ID,
];
