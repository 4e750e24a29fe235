//! An RL run's training state beside the agent checkpoint: `training.json`
//! (updates done, the RL config, optimiser steps) and
//! `optimizer.safetensors` (the optimiser's moment estimates), so that a
//! resumed run continues exactly where it stopped.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{LlmAgentError, Result};
use crate::rl::config::RlConfig;

/// File of the training progress inside a checkpoint directory.
pub const TRAINING_FILE: &str = "training.json";
/// File of the optimiser moments inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Training progress stored with a checkpoint written by the trainer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    pub updates_done: usize,
    /// Optimiser steps taken (Adam's bias correction continues from here).
    pub optimizer_steps: i64,
    pub rl: RlConfig,
}

/// Tensors by name (the optimiser's moments).
pub type NamedTensors = Vec<(String, Tensor)>;

/// Writes the state and the optimiser's tensors into `dir`.
pub fn write_state(dir: &Path, state: &TrainingState, moments: &[(String, Tensor)]) -> Result<()> {
    let tmp = dir.join(format!("{OPTIMIZER_FILE}.tmp"));
    Tensor::write_safetensors(moments, &tmp)?;
    let dst = dir.join(OPTIMIZER_FILE);
    std::fs::rename(&tmp, &dst).map_err(|e| LlmAgentError::io("write", &dst, e))?;
    let tmp = dir.join(format!("{TRAINING_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(state)?)
        .map_err(|e| LlmAgentError::io("write", &tmp, e))?;
    let dst = dir.join(TRAINING_FILE);
    std::fs::rename(&tmp, &dst).map_err(|e| LlmAgentError::io("write", &dst, e))?;
    Ok(())
}

/// Reads the training state of `dir` (`None`: the checkpoint holds none,
/// e.g. an agent saved without training).
pub fn read_state(dir: &Path) -> Result<Option<(TrainingState, NamedTensors)>> {
    let p = dir.join(TRAINING_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| LlmAgentError::io("read", &p, e))?;
    let state: TrainingState =
        serde_json::from_str(&text).map_err(|e| LlmAgentError::Checkpoint {
            path: p.clone(),
            msg: e.to_string(),
        })?;
    let o = dir.join(OPTIMIZER_FILE);
    let moments = Tensor::read_safetensors(&o).map_err(|e| LlmAgentError::Checkpoint {
        path: o.clone(),
        msg: e.to_string(),
    })?;
    Ok(Some((state, moments)))
}
