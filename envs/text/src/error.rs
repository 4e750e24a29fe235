//! Errors of the text environments.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TextEnvError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file is malformed at a given (1-based) line.
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A corpus file could not be loaded.
    #[error(transparent)]
    Text(#[from] emorl_text::TextError),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Reading input or writing output in the terminal `play` loop failed.
    #[error("terminal i/o: {0}")]
    Terminal(#[from] std::io::Error),
}
