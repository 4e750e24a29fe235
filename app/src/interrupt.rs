//! Ctrl-C during training: the first one asks the loop to stop after the
//! episode it is in (it then checkpoints and exits); a second one ends the
//! process at once.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Starts catching Ctrl-C (SIGINT) for this process; later calls do nothing.
pub fn catch_ctrl_c() -> Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let sigint = signal_hook::consts::SIGINT;
    // Registered first, so it sees the flag before the second handler sets
    // it: a Ctrl-C while one is pending exits immediately.
    signal_hook::flag::register_conditional_shutdown(sigint, i32::from(EXIT_CODE), flag.clone())
        .context("cannot catch Ctrl-C")?;
    signal_hook::flag::register(sigint, flag.clone()).context("cannot catch Ctrl-C")?;
    let _ = REQUESTED.set(flag);
    Ok(())
}

/// Whether Ctrl-C was pressed since [`catch_ctrl_c`].
pub fn requested() -> bool {
    REQUESTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// A training run stopped by Ctrl-C after checkpointing.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted after episode {episodes_done} of {episodes}; checkpoint written. Continue with: emorl train --out {} --resume",
    run.display()
)]
pub struct Interrupted {
    pub run: PathBuf,
    pub episodes_done: usize,
    pub episodes: usize,
}
