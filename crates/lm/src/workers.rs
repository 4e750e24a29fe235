//! A small pool of helper threads for the decode kernels, built for
//! dispatches of tens of microseconds.
//!
//! A decode step runs a few hundred short matmuls. Handing each to a
//! general-purpose pool (`rayon::ThreadPool::install`) costs a futex wake of
//! every worker and of the caller per matmul, which on a two-core machine
//! ate the whole gain of splitting it. Here the caller works on its own job
//! and helpers join it while they are awake: an idle helper spins for a
//! while ([`SPIN`]) before it parks, so during a decode it is always ready.
//!
//! A job is `n` numbered tasks claimed one by one from a shared counter.
//! Which thread runs a task never changes what the task computes, so results
//! do not depend on the thread count. The caller closes the job once every
//! task is claimed, waits only for helpers that joined, and never for one
//! that is asleep or descheduled. A pool that is busy (another thread's job,
//! or a task that dispatches again) runs the job on the caller's thread.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper waits for the next job before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// Spins between two yields of an idle helper's core.
const YIELD_EVERY: u32 = 64;

/// `state`: the job's epoch (high 32 bits), a closed flag (bit 31) and the
/// number of helpers inside the job (low bits).
const CLOSED: u64 = 1 << 31;
const ACTIVE: u64 = CLOSED - 1;

/// One published job: `n` tasks, `task(i)` for each.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    panicked: AtomicBool,
}

struct Shared {
    state: AtomicU64,
    /// The current job; read by a helper only while it is counted in
    /// `state` for the job's epoch (the caller keeps the job alive until
    /// that count is zero and the job closed).
    job: AtomicPtr<Job<'static>>,
    busy: AtomicBool,
    sleeping: Vec<AtomicBool>,
    threads: Mutex<Vec<Thread>>,
}

/// Helper threads plus the calling thread: `threads` in all.
pub(crate) struct Workers {
    shared: &'static Shared,
    threads: usize,
}

/// The workers for `threads` threads, started once per count and kept for
/// the process (`None` for one thread, or when no helper could be started).
pub(crate) fn workers(threads: usize) -> Option<&'static Workers> {
    static ALL: OnceLock<Mutex<Vec<&'static Workers>>> = OnceLock::new();
    if threads <= 1 {
        return None;
    }
    let mut all = ALL
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(w) = all.iter().find(|w| w.threads == threads) {
        return Some(w);
    }
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        state: AtomicU64::new(CLOSED),
        job: AtomicPtr::new(std::ptr::null_mut()),
        busy: AtomicBool::new(false),
        sleeping: (1..threads).map(|_| AtomicBool::new(false)).collect(),
        threads: Mutex::new(Vec::new()),
    }));
    let mut started = Vec::new();
    for h in 0..threads - 1 {
        let spawned = std::thread::Builder::new()
            .name(format!("emorl-lm-worker-{h}"))
            .spawn(move || helper(shared, h));
        match spawned {
            Ok(handle) => started.push(handle.thread().clone()),
            Err(_) => break,
        }
    }
    if started.is_empty() {
        return None;
    }
    *shared.threads.lock().unwrap_or_else(|e| e.into_inner()) = started;
    let w: &'static Workers = Box::leak(Box::new(Workers { shared, threads }));
    all.push(w);
    Some(w)
}

impl Workers {
    /// Runs `task(i)` for every `i < n`, on this thread and the helpers
    /// that join; returns when all have finished. A panic in a task is
    /// raised here once the job is over.
    pub(crate) fn run(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        let s = self.shared;
        if n <= 1
            || s.busy
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
        {
            (0..n).for_each(task);
            return;
        }
        let job = Job {
            task,
            n,
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        // SAFETY: helpers dereference the pointer only while counted in
        // `state` for this epoch, and this function returns only after the
        // job is closed and that count is back to zero.
        s.job
            .store(&job as *const Job<'_> as *mut Job<'static>, SeqCst);
        let epoch = (s.state.load(SeqCst) >> 32).wrapping_add(1) & 0xffff_ffff;
        s.state.store(epoch << 32, SeqCst);
        for (h, sleeping) in s.sleeping.iter().enumerate() {
            if sleeping.load(SeqCst) {
                if let Some(t) = s.threads.lock().ok().and_then(|t| t.get(h).cloned()) {
                    t.unpark();
                }
            }
        }
        let own = catch_unwind(AssertUnwindSafe(|| work(&job)));
        s.state.fetch_or(CLOSED, SeqCst);
        let mut spins = 0u32;
        while s.state.load(SeqCst) & ACTIVE != 0 {
            spins += 1;
            match spins < 1 << 12 {
                true => std::hint::spin_loop(),
                false => std::thread::yield_now(),
            }
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        s.busy.store(false, SeqCst);
        if let Err(p) = own {
            resume_unwind(p);
        }
        if job.panicked.load(SeqCst) {
            panic!("a decode worker's task panicked");
        }
    }

    /// Splits `data` into chunks of `chunk` elements and runs
    /// `f(index, chunk)` on each, as [`Workers::run`] does.
    pub(crate) fn for_chunks<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let chunk = chunk.max(1);
        let (len, base) = (data.len(), SendPtr(data.as_mut_ptr()));
        let base = &base;
        self.run(len.div_ceil(chunk), &|i| {
            let start = i * chunk;
            let end = (start + chunk).min(len);
            // SAFETY: task `i` is run exactly once and owns elements
            // `start..end`, which no other task touches; `data` is
            // borrowed mutably for the whole call.
            let part = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), end - start) };
            f(i, part)
        });
    }
}

/// Runs `f(index, chunk)` over `data`'s chunks on `workers`, or on this
/// thread when there are none.
pub(crate) fn for_chunks<T: Send>(
    workers: Option<&Workers>,
    data: &mut [T],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    match workers {
        Some(w) => w.for_chunks(data, chunk, f),
        None => data
            .chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, c)| f(i, c)),
    }
}

struct SendPtr<T>(*mut T);
// SAFETY: the pointer is only used to hand out disjoint chunks (see
// `Workers::for_chunks`).
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Claims and runs the job's tasks until none is left.
fn work(job: &Job<'_>) {
    loop {
        let i = job.next.fetch_add(1, SeqCst);
        if i >= job.n {
            return;
        }
        (job.task)(i);
    }
}

fn helper(s: &'static Shared, h: usize) {
    let mut seen = s.state.load(SeqCst) >> 32;
    loop {
        // Wait for a new open job: spin, then park.
        let since = Instant::now();
        let mut spins = 0u32;
        let state = loop {
            let st = s.state.load(SeqCst);
            if st >> 32 != seen && st & CLOSED == 0 {
                break st;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(YIELD_EVERY) {
                std::hint::spin_loop();
                continue;
            }
            if since.elapsed() < SPIN {
                // Lets a thread that waits for this core run (libtorch's
                // OpenMP workers between decode steps).
                std::thread::yield_now();
                continue;
            }
            s.sleeping[h].store(true, SeqCst);
            let st = s.state.load(SeqCst);
            if st >> 32 == seen || st & CLOSED != 0 {
                std::thread::park();
            }
            s.sleeping[h].store(false, SeqCst);
        };
        seen = state >> 32;
        // Join unless the caller closed the job in the meantime.
        let mut cur = state;
        let joined = loop {
            if cur >> 32 != seen || cur & CLOSED != 0 {
                break false;
            }
            match s.state.compare_exchange(cur, cur + 1, SeqCst, SeqCst) {
                Ok(_) => break true,
                Err(now) => cur = now,
            }
        };
        if !joined {
            continue;
        }
        // SAFETY: counted in `state` for this epoch, so the caller of
        // `Workers::run` is still waiting and the job is alive.
        let job = unsafe { &*s.job.load(SeqCst) };
        if catch_unwind(AssertUnwindSafe(|| work(job))).is_err() {
            job.panicked.store(true, SeqCst);
        }
        s.state.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_on_any_thread_count() {
        for threads in [1, 2, 3] {
            let w = workers(threads);
            for n in [0, 1, 2, 7, 100] {
                let mut hits = vec![0u32; n];
                for_chunks(w, &mut hits, 1, &|i, c| c[0] += i as u32 + 1);
                assert_eq!(hits, (1..=n as u32).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn chunks_cover_the_slice_and_concurrent_callers_agree() {
        let w = workers(2);
        let expect: Vec<u64> = (0..1000u64).map(|i| i * i).collect();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let mut v = vec![0u64; 1000];
                        for_chunks(w, &mut v, 37, &|c, part| {
                            for (j, x) in part.iter_mut().enumerate() {
                                let i = (c * 37 + j) as u64;
                                *x = i * i;
                            }
                        });
                        assert_eq!(v, expect);
                    }
                });
            }
        });
    }

    #[test]
    fn a_task_panic_reaches_the_caller_and_the_pool_survives() {
        let w = workers(2).expect("a helper thread");
        let r = catch_unwind(AssertUnwindSafe(|| {
            w.run(64, &|i| {
                if i == 40 {
                    panic!("task 40");
                }
            })
        }));
        assert!(r.is_err());
        let mut v = vec![0u8; 64];
        w.for_chunks(&mut v, 1, &|_, c| c[0] = 1);
        assert!(v.iter().all(|&x| x == 1));
    }

    #[test]
    fn helpers_wake_after_parking() {
        let w = workers(2).expect("a helper thread");
        std::thread::sleep(SPIN * 3);
        let mut v = vec![0u8; 16];
        w.for_chunks(&mut v, 1, &|_, c| c[0] = 1);
        assert!(v.iter().all(|&x| x == 1));
    }
}
