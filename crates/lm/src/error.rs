//! Error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is malformed (truncated, bad magic, hostile sizes, ...).
    #[error("malformed GGUF file {path}: {msg}")]
    Gguf { path: String, msg: String },
    /// A tensor inside a model file is unusable (unknown type, truncated data, bad shape).
    #[error("tensor `{tensor}` in {path}: {msg}")]
    Tensor {
        path: String,
        tensor: String,
        msg: String,
    },
    /// A tensor the architecture needs is not in the model file.
    #[error("tensor `{tensor}` is missing from {path}")]
    MissingTensor { path: String, tensor: String },
    /// A metadata key the architecture needs is missing or has the wrong type.
    #[error("metadata `{key}` in {path}: {msg}")]
    Metadata {
        path: String,
        key: String,
        msg: String,
    },
    /// The model uses a feature this crate does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Building or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The default model file is not where it is expected.
    #[error("{0}")]
    ModelNotFound(String),
    /// A caller passed arguments that do not fit (shapes, layer indices, options).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An error raised by libtorch.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A JSON file (config.json, tokenizer.json, ...) could not be parsed.
    #[error("cannot parse {path}: {msg}")]
    Json { path: PathBuf, msg: String },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, LmError>;

impl LmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io {
            path: path.into(),
            source,
        }
    }
}
