//! Thread and job counts: one rule for every command that takes one.
//!
//! `0` means every core of this machine; a count above the machine's cores
//! is capped at them (more threads than cores only adds contention, and for
//! libtorch changes results); a count above [`MAX_THREADS`] is a mistake and
//! an error, named by the setting it came from.

use crate::error::CoreError;

/// The largest thread or job count emorl accepts (before capping at cores).
pub const MAX_THREADS: usize = 1024;

/// Cores this process may use (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread count to use for `requested` threads of the setting `what`.
pub fn resolve_threads(what: &str, requested: usize) -> Result<usize, CoreError> {
    resolve_threads_on(what, requested, cores())
}

/// [`resolve_threads`] on a machine with `cores` cores.
pub fn resolve_threads_on(what: &str, requested: usize, cores: usize) -> Result<usize, CoreError> {
    let cores = cores.max(1);
    match requested {
        0 => Ok(cores),
        n if n > MAX_THREADS => Err(CoreError::OutOfBounds(format!(
            "{what} = {n} is more than the {MAX_THREADS} emorl accepts (this machine has {cores} \
             cores; 0 uses them all)"
        ))),
        n => Ok(n.min(cores)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_every_core_and_larger_counts_are_capped() {
        assert_eq!(resolve_threads_on("jobs", 0, 8), Ok(8));
        assert_eq!(resolve_threads_on("jobs", 3, 8), Ok(3));
        assert_eq!(resolve_threads_on("jobs", 64, 8), Ok(8));
        assert_eq!(resolve_threads_on("jobs", MAX_THREADS, 2), Ok(2));
        assert_eq!(resolve_threads_on("jobs", 1, 0), Ok(1));
    }

    #[test]
    fn absurd_counts_are_refused_by_name() {
        let e = resolve_threads_on("--jobs", 100_000, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--jobs = 100000"), "{e}");
        assert!(e.contains("2 cores"), "{e}");
    }
}
