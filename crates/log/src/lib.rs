//! Run logging for emorl: TensorBoard event files ([`EventWriter`]), `metrics.jsonl`
//! ([`MetricsWriter`]) and run directories owned by one process, with atomic
//! writes ([`RunDir`]).
//! Event files come from our own TFRecord framing over hand-written `prost` mirrors
//! of the TF/TensorBoard protos ([`proto`]), not `tensorboard-rs`: it is unmaintained,
//! leaves text/hparams/histograms `unimplemented!()` and pulls protobuf 2.x
//! (RUSTSEC-2024-0437). Each record reaches the OS before its call returns, so a
//! killed run leaves a readable file.

mod event;
mod metrics;
pub mod proto;
pub mod record;
mod run_dir;

use std::io;
use std::path::{Path, PathBuf};

pub use event::{EventWriter, HParamValue, SessionStatus};
pub use metrics::MetricsWriter;
pub use run_dir::{write_atomic, RunDir, CHECKPOINTS_DIR, CONFIG_FILE, LOCK_FILE, METRICS_FILE};

/// Errors of this crate. I/O failures carry the operation and path.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A filesystem operation failed.
    #[error("failed to {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A metrics record could not be serialised to JSON.
    #[error("failed to serialise metrics record")]
    Json(#[from] serde_json::Error),
    /// Another process holds the run directory's lock.
    #[error("{} is in use by another emorl process (it holds {})", path.display(), crate::LOCK_FILE)]
    Locked { path: PathBuf },
    /// A directory meant for a new run already holds something.
    #[error("{} is not empty (it holds {entry})", path.display())]
    NotEmpty { path: PathBuf, entry: String },
    /// A caller-supplied argument was rejected (bad path, duplicate key, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias using [`LogError`].
pub type Result<T> = std::result::Result<T, LogError>;

/// Builds a closure that wraps an `io::Error` with context, for `map_err`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { op, path, source }
}

/// Current unix time in seconds; a clock before 1970 reads as 0 rather than
/// failing, since a bad timestamp must not abort a training run.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
