use std::path::PathBuf;
use thiserror::Error;

/// Errors of the LLM-policy agents.
#[derive(Debug, Error)]
pub enum LlmAgentError {
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("unknown LLM agent `{id}` (known: {known})")]
    UnknownAgent { id: String, known: String },
    #[error("agent `{0}` has no trainable parameters (llm-base is the frozen model itself)")]
    NothingToTrain(String),
    #[error("checkpoint was trained on base model {expected} but the loaded model is {found}")]
    BaseModelMismatch { expected: String, found: String },
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error(
        "training diverged at update {update}: {what}; parameters restored to the last good ones"
    )]
    Diverged { update: usize, what: String },
    #[error("failed to {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("language model: {0}")]
    Lm(#[from] emorl_lm::LmError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("environment: {0}")]
    Env(#[from] emorl_envs_text::TextEnvError),
    #[error("statistics: {0}")]
    Stats(#[from] emorl_stats::StatsError),
    #[error("table: {0}")]
    Table(#[from] emorl_stats::TableError),
    #[error("labelled text: {0}")]
    Text(#[from] emorl_text::TextError),
}

/// Result with [`LlmAgentError`].
pub type Result<T, E = LlmAgentError> = std::result::Result<T, E>;

impl LlmAgentError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LlmAgentError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Converts a torch error into the model crate's error, for hook closures.
pub(crate) fn lm_err(e: tch::TchError) -> emorl_lm::LmError {
    emorl_lm::LmError::from(e)
}
