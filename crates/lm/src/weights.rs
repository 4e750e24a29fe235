//! Where a model's weights come from, by name: a GGUF file (dequantised on
//! load) or a Hugging Face directory's safetensors (one file or shards).
//! The architectures map their own tensor names onto these.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;

/// Where an architecture takes its weights from, by name.
pub(crate) trait WeightSource {
    /// The tensor `name` with torch shape `shape`, as `kind`, frozen.
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor>;
    /// Whether the source has a tensor `name`.
    fn has(&self, name: &str) -> bool;
}

/// GGUF weights, dequantised on load.
pub(crate) struct GgufWeights<'a> {
    pub(crate) file: &'a GgufFile,
    pub(crate) kind: Kind,
    pub(crate) device: Device,
}

impl WeightSource for GgufWeights<'_> {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.file.tensor_shaped(name, shape, self.kind, self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }
}

/// Safetensors weights of a Hugging Face directory, by name (an optional
/// `transformer.` prefix is accepted).
pub(crate) struct SafetensorsWeights {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    dir: PathBuf,
    kind: Kind,
    device: Device,
}

impl SafetensorsWeights {
    pub(crate) fn open(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let bytes = std::fs::read(&index).map_err(|e| LmError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| LmError::Json {
                    path: index.clone(),
                    msg: e.to_string(),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LmError::Json {
                    path: index.clone(),
                    msg: "no `weight_map` object".into(),
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for f in map.values() {
                let name = f.as_str().ok_or_else(|| LmError::Json {
                    path: index.clone(),
                    msg: "weight_map values must be file names".into(),
                })?;
                if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                    return Err(LmError::Json {
                        path: index.clone(),
                        msg: format!("shard name `{name}` is not a plain file name"),
                    });
                }
                let p = dir.join(name);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files
        } else {
            return Err(LmError::ModelNotFound(format!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        };
        let mut tensors = HashMap::new();
        for f in files {
            let list = Tensor::read_safetensors(&f).map_err(|e| LmError::Tensor {
                path: f.display().to_string(),
                tensor: "*".into(),
                msg: e.to_string(),
            })?;
            for (name, t) in list {
                let key = name
                    .strip_prefix("transformer.")
                    .unwrap_or(&name)
                    .to_string();
                tensors.insert(key, (t, f.clone()));
            }
        }
        Ok(SafetensorsWeights {
            tensors,
            dir: dir.to_path_buf(),
            kind,
            device,
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (t, file) = self
            .tensors
            .get(name)
            .ok_or_else(|| LmError::MissingTensor {
                path: self.dir.display().to_string(),
                tensor: name.to_string(),
            })?;
        if t.size() != shape {
            return Err(LmError::Tensor {
                path: file.display().to_string(),
                tensor: name.to_string(),
                msg: format!("shape {:?} does not match the expected {shape:?}", t.size()),
            });
        }
        if !t.is_floating_point() {
            return Err(LmError::Tensor {
                path: file.display().to_string(),
                tensor: name.to_string(),
                msg: format!("dtype {:?} is not a float type", t.kind()),
            });
        }
        Ok(t.f_to_kind(self.kind)?
            .f_to_device(self.device)?
            .f_contiguous()?
            .set_requires_grad(false))
    }
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
