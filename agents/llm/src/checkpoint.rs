//! Checkpoints: module tensors as `modules.safetensors` plus a
//! `manifest.json` naming the base model (SHA-256 of its weights,
//! architecture and sizes), the agent kind and its config. Loading onto a
//! different base model is refused. An RL run adds its own training state
//! beside them (`crate::rl::state`).

use std::io::Read;
use std::path::{Path, PathBuf};

use emorl_lm::{Architecture, Model};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::agent::{AgentConfig, AgentKind, LlmAgent};
use crate::error::{LlmAgentError, Result};
use crate::modules::steering::DirectionSource;
use crate::params::load_named;

/// File of the module tensors inside a checkpoint directory.
pub const TENSORS_FILE: &str = "modules.safetensors";
/// File of the manifest inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifest format version.
pub const FORMAT_VERSION: u32 = 2;

/// What identifies a base model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdentity {
    /// File or directory name it was loaded from (informational).
    pub name: String,
    /// SHA-256 of the GGUF file, or of the HF directory's `*.safetensors`
    /// files concatenated in name order.
    pub sha256: String,
    pub architecture: String,
    pub n_layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl std::fmt::Display for ModelIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({} {} layers, hidden {}, vocab {}, sha256 {})",
            self.name,
            self.architecture,
            self.n_layers,
            self.hidden_size,
            self.vocab_size,
            &self.sha256[..self.sha256.len().min(16)]
        )
    }
}

fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).map_err(|e| LlmAgentError::io("open", f, e))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| LlmAgentError::io("read", f, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The identity of `model` (hashes its weights: about a second for SmolLM2).
pub fn model_identity(model: &Model) -> Result<ModelIdentity> {
    let src = model.source();
    let files = if src.is_dir() {
        let rd = std::fs::read_dir(src).map_err(|e| LlmAgentError::io("list", src, e))?;
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        v.sort();
        v
    } else {
        vec![src.to_path_buf()]
    };
    let (kv, hd) = model.kv_shape();
    Ok(ModelIdentity {
        name: src.file_name().map_or_else(
            || src.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        sha256: hash_files(&files)?,
        architecture: match model.architecture() {
            Architecture::Llama(_) => "llama".into(),
            Architecture::Gpt2(_) => "gpt2".into(),
        },
        n_layers: model.n_layers(),
        hidden_size: model.hidden_size(),
        vocab_size: model.vocab_size(),
        n_kv_heads: kv,
        head_dim: hd,
    })
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub agent: AgentKind,
    pub base_model: ModelIdentity,
    pub config: AgentConfig,
    /// Tensor names in `modules.safetensors`.
    pub tensors: Vec<String>,
    /// What the steering directions (saved with the tensors) were computed
    /// from; agents with steering only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<DirectionSource>,
    /// Where the base model was loaded from when the checkpoint was written
    /// (absolute); commands given only the checkpoint load it from there.
    /// The identity above, not this path, decides whether a model fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
}

impl Manifest {
    /// The recorded base model's path when that file or directory still
    /// exists.
    pub fn recorded_model(&self) -> Option<&Path> {
        self.model_path
            .as_deref()
            .map(Path::new)
            .filter(|p| p.exists())
    }
}

/// Reads a checkpoint's manifest.
pub fn read_manifest(dir: impl AsRef<Path>) -> Result<Manifest> {
    let p = dir.as_ref().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| LlmAgentError::io("read", &p, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| LlmAgentError::Checkpoint {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    if m.format != FORMAT_VERSION {
        return Err(LlmAgentError::Checkpoint {
            path: p,
            msg: format!(
                "format {} is not supported (expected {FORMAT_VERSION})",
                m.format
            ),
        });
    }
    Ok(m)
}

impl LlmAgent {
    /// Writes the checkpoint directory `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| LlmAgentError::io("create", dir, e))?;
        let named = self.named_tensors();
        let tensors: Vec<(String, Tensor)> = named
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_detach()?.f_contiguous()?)))
            .collect::<Result<Vec<_>>>()?;
        if !tensors.is_empty() {
            Tensor::write_safetensors(&tensors, dir.join(TENSORS_FILE))?;
        }
        let manifest = Manifest {
            format: FORMAT_VERSION,
            agent: self.kind(),
            base_model: model_identity(&self.model)?,
            config: self.config().clone(),
            tensors: tensors.iter().map(|(n, _)| n.clone()).collect(),
            steering: self.modules.steering.as_ref().map(|s| s.source().clone()),
            model_path: Some(
                std::fs::canonicalize(self.model.source())
                    .unwrap_or_else(|_| self.model.source().to_path_buf())
                    .display()
                    .to_string(),
            ),
        };
        let p = dir.join(MANIFEST_FILE);
        std::fs::write(&p, serde_json::to_string_pretty(&manifest)?)
            .map_err(|e| LlmAgentError::io("write", &p, e))?;
        Ok(())
    }

    /// Rebuilds an agent from a checkpoint directory onto `model`, which
    /// must be the base model it was trained on.
    pub fn load(dir: impl AsRef<Path>, model: Model) -> Result<LlmAgent> {
        let dir = dir.as_ref();
        let manifest = read_manifest(dir)?;
        let found = model_identity(&model)?;
        if found != manifest.base_model {
            return Err(LlmAgentError::BaseModelMismatch {
                expected: manifest.base_model.to_string(),
                found: found.to_string(),
            });
        }
        // The saved directions are restored, not recomputed: loading needs
        // no GoEmotions files and gives back exactly what was trained.
        let steering = match (&manifest.steering, manifest.agent.has_steering()) {
            (Some(source), true) => Some(source.clone()),
            (None, true) => {
                return Err(LlmAgentError::Checkpoint {
                    path: dir.join(MANIFEST_FILE),
                    msg: "no `steering` source: saved before steering directions came from \
                          GoEmotions and acted on the response only; train the agent again"
                        .into(),
                })
            }
            (_, false) => None,
        };
        let agent = LlmAgent::build(model, manifest.agent, manifest.config.clone(), steering)?;
        let tensors = if manifest.tensors.is_empty() {
            Vec::new()
        } else {
            let p = dir.join(TENSORS_FILE);
            Tensor::read_safetensors(&p).map_err(|e| LlmAgentError::Checkpoint {
                path: p.clone(),
                msg: e.to_string(),
            })?
        };
        load_named(&agent.modules.stores(), tensors).map_err(|msg| LlmAgentError::Checkpoint {
            path: dir.join(TENSORS_FILE),
            msg,
        })?;
        Ok(agent)
    }
}
