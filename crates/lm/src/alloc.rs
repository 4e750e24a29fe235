//! Keeping memory: freed memory stays in the process (for the processes that
//! run models), and hot loops reuse per-thread buffers ([`with_reused`]).
//!
//! A decode step or an RL update allocates and frees tensors of megabytes
//! (a batch's logits) to hundreds of megabytes (an update's recorded
//! logits) over and over. glibc hands allocations above its mmap threshold
//! (at most 32 MiB) to the kernel and takes them back when freed, and trims
//! the top of its heap, so each of them faults in and zero-fills fresh
//! pages: an `llm-erm` update on SmolLM2 (one thread) spent 6.5 s with
//! glibc's defaults and 5.6 s with this (`benches/llm_update_side_by_side.sh`).
//! The price is that the process keeps its peak memory until it exits.

/// Makes glibc serve every allocation from its heaps and never give freed
/// memory back to the kernel (`M_MMAP_MAX` 0, `M_TRIM_THRESHOLD` and
/// `M_TOP_PAD` large). Call it once, early in `main`, in processes that run
/// models; it does nothing on other C libraries. Returns whether glibc
/// took every setting.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocator parameters; it
        // is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Runs `f` on this thread's value in `key`: buffers reused from call to
/// call, so that hot loops do not allocate and fault in fresh pages. A
/// re-entrant call (the value already borrowed) gets a fresh default value.
pub(crate) fn with_reused<T: Default + 'static, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut value) => f(&mut value),
        Err(_) => f(&mut T::default()),
    })
}
