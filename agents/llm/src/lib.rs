//! LLM-policy agents for emorl: a frozen language model ([`emorl_lm::Model`])
//! with emotional modules attached through its hooks, trained by RL on the
//! dialogue environment.
//!
//! Layers, each using only those above it in this list:
//! * [`error`], [`params`], [`optim`], [`batch`], [`lexicon`], [`data`]:
//!   errors, module parameters, the one optimiser (AdamW with parameter
//!   groups), token batching, the emotion word lists (an expression half
//!   training may use and a held-out half only the metric counts), where
//!   GoEmotions and DailyDialog are found;
//! * [`modules`]: the emotional encoder, prefix, gate, emotional reward
//!   model and steering, and [`Modules`], which composes them into hooks;
//! * [`agent`]: [`LlmAgent`] and the registry ([`AGENT_IDS`]);
//! * [`checkpoint`]: safetensors + manifest, refused on a different base model;
//! * [`supervision`]: emotion with a meaning — the encoder supervised on
//!   labelled dialogue contexts, the ERM's heads on labelled text;
//! * [`eval`]: the independent judge, the paired forced-emotion effect,
//!   dialogue evaluation, fluency, appropriateness and their tables;
//! * [`rl`]: the RL trainer, its objectives and its resumable state.

pub mod agent;
pub mod batch;
pub mod checkpoint;
pub mod data;
pub mod dual_text;
mod error;
pub mod eval;
pub mod lexicon;
pub mod lora_text;
pub mod modules;
pub mod optim;
pub mod params;
pub mod rl;
pub mod supervision;

pub use agent::{describe_emotion, AgentConfig, AgentKind, LlmAgent, AGENT_IDS};
pub use batch::pad_left;
pub use checkpoint::{model_identity, read_manifest, Manifest, ModelIdentity};
pub use error::{LlmAgentError, Result};
pub use modules::emotion::{
    context_features, EmotionState, EmotionalEncoder, EncoderConfig, CONDITIONING_NAMES, EMOTIONS,
    N_CONDITIONING, N_CONTEXT_FEATURES, N_EMOTIONS,
};
pub use modules::erm::{
    erm_targets, EmotionalRewardModel, ErmConfig, ErmOutput, LogitModulator, TemperatureModulator,
    ERM_EMOTIONS, N_ERM,
};
pub use modules::gate::{EmotionalGate, GateConfig};
pub use modules::prefix::{PrefixConfig, PrefixGenerator};
pub use modules::reft::{EmotionalReft, ReftConfig};
pub use modules::steering::{DirectionSource, SteeringConfig, SteeringVectors, CONTRAST_PAIRS};
pub use modules::{Modules, TurnEmotion, MODULE_NAMES};
pub use rl::{
    evaluate_returns, PhaseSeconds, RewardFn, RlConfig, Trainer, TrainingState, UpdateStats,
};
