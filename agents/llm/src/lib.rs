//! LLM-policy agents for emorl: a frozen language model ([`emorl_lm::Model`])
//! with emotional modules attached through its hooks, trained by RL on the
//! dialogue environment.
//!
//! * [`emotion`]: context features, the [`EmotionalEncoder`] and [`EmotionState`];
//! * [`prefix`]: the [`PrefixGenerator`] (emotion-conditioned or static prefix keys/values);
//! * [`gate`]: the [`EmotionalGate`] (gated bottleneck adapters);
//! * [`erm`]: the [`EmotionalRewardModel`] with its [`LogitModulator`] and
//!   [`TemperatureModulator`];
//! * [`steering`]: [`SteeringVectors`] from contrastive prompts;
//! * [`agent`]: [`LlmAgent`] and the registry ([`AGENT_IDS`]);
//! * [`trainer`]: the RLOO [`Trainer`] and [`RlConfig`];
//! * [`checkpoint`]: safetensors + manifest, refused on a different base model;
//! * [`supervision`]: emotion with a meaning — the encoder supervised on
//!   labelled dialogue contexts, the ERM's heads on labelled text;
//! * [`lexicon`]: the emotion word lists, split into an expression half
//!   (training may use it) and a held-out half (only the metric counts it);
//! * [`data`]: where GoEmotions and DailyDialog are found on disk;
//! * [`eval`]: the independent judge, the paired forced-emotion effect,
//!   dialogue evaluation, fluency, appropriateness and their tables.

pub mod agent;
pub mod checkpoint;
pub mod data;
pub mod emotion;
pub mod erm;
mod error;
pub mod eval;
pub mod gate;
pub mod lexicon;
pub mod params;
pub mod prefix;
pub mod steering;
pub mod supervision;
pub mod trainer;

pub use agent::{pad_left, AgentConfig, AgentKind, LlmAgent, Modules, TurnEmotion, AGENT_IDS};
pub use checkpoint::{model_identity, read_manifest, Manifest, ModelIdentity, TrainingState};
pub use emotion::{
    context_features, EmotionState, EmotionalEncoder, EncoderConfig, CONDITIONING_NAMES, EMOTIONS,
    N_CONDITIONING, N_CONTEXT_FEATURES, N_EMOTIONS,
};
pub use erm::{
    erm_targets, EmotionalRewardModel, ErmConfig, ErmOutput, LogitModulator, TemperatureModulator,
    ERM_EMOTIONS, N_ERM,
};
pub use error::{LlmAgentError, Result};
pub use gate::{EmotionalGate, GateConfig};
pub use prefix::{PrefixConfig, PrefixGenerator};
pub use steering::{SteeringConfig, SteeringVectors, CONTRAST_PAIRS};
pub use trainer::{evaluate_returns, PhaseSeconds, RewardFn, RlConfig, Trainer, UpdateStats};
