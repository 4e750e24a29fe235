use std::path::PathBuf;
use thiserror::Error;

/// Errors of the DQN agents.
#[derive(Debug, Error)]
pub enum DqnError {
    #[error("invalid DQN config: {0}")]
    InvalidConfig(String),
    #[error("feature vector has {got} entries, the network expects {expected}")]
    FeatureLength { expected: usize, got: usize },
    #[error("action {action} is out of range (the agent has {n_actions} actions)")]
    ActionOutOfRange { action: usize, n_actions: usize },
    #[error(
        "training diverged: the TD loss is {value} at update {update} (try a lower \
         learning_rate; the run's last checkpoint holds the last finite state)"
    )]
    Diverged { update: u64, value: f64 },
    #[error("CUDA was requested but is not available")]
    CudaUnavailable,
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("failed to {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Core(#[from] emorl_core::CoreError),
}
