//! A parallel multi-seed runner with per-seed result files for resuming.
//!
//! Seeds are independent: the job builds everything it needs from its seed,
//! so results do not depend on the number of threads or on completion order.

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use thiserror::Error;

/// An error a seed's job returned.
pub type JobError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Error)]
pub enum RunnerError {
    #[error("seed {seed} failed: {source}")]
    Seed {
        seed: u64,
        #[source]
        source: JobError,
    },
    #[error("{0}")]
    Jobs(String),
    #[error("cannot build a thread pool of {jobs} threads: {source}")]
    ThreadPool {
        jobs: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    #[error("result store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise the result of seed {seed}: {source}")]
    Serialize {
        seed: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// Where finished seeds are kept, and the options they are computed under.
/// Each file records its options; a stored result is trusted only when they
/// equal these, so results made under other options are never mixed in.
#[derive(Clone, Copy, Debug)]
pub struct SeedStore<'a> {
    pub dir: &'a Path,
    /// Everything the results depend on, compared as JSON.
    pub options: &'a serde_json::Value,
}

/// A seed's file: its options, then its result.
#[derive(Serialize)]
struct StoredRef<'a, T> {
    options: &'a serde_json::Value,
    result: &'a T,
}

#[derive(Deserialize)]
struct Stored<T> {
    options: serde_json::Value,
    result: T,
}

/// Path of a seed's result file in `store`.
pub fn seed_file(store: &Path, seed: u64) -> PathBuf {
    store.join(format!("{seed}.json"))
}

/// The stored result of `seed`, if its file exists, parses and was written
/// under the store's options.
fn load<T: DeserializeOwned>(store: SeedStore<'_>, seed: u64) -> Option<T> {
    let path = seed_file(store.dir, seed);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<Stored<T>>(&text) {
        Ok(stored) if stored.options == *store.options => Some(stored.result),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "seed result stored under other options; recomputing");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable seed result; recomputing");
            None
        }
    }
}

/// Writes `value` to the seed's file atomically: a temporary file in the same
/// directory, renamed over the target. A killed run never leaves a partial
/// file; there is no fsync (it would cost more than a seed's work, and a
/// file lost to a power cut is simply recomputed on resume).
fn save<T: Serialize>(store: SeedStore<'_>, seed: u64, value: &T) -> Result<(), RunnerError> {
    let json = serde_json::to_vec_pretty(&StoredRef {
        options: store.options,
        result: value,
    })
    .map_err(|source| RunnerError::Serialize { seed, source })?;
    let path = seed_file(store.dir, seed);
    let io_err = |source| RunnerError::Store {
        path: path.clone(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{seed}."))
        .suffix(".tmp")
        .tempfile_in(store.dir)
        .map_err(io_err)?;
    tmp.write_all(&json).map_err(io_err)?;
    tmp.persist(&path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// One seed finished (see [`run_seeds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedDone {
    /// Seeds finished so far, this one included.
    pub done: usize,
    pub total: usize,
    /// Loaded from the store instead of run.
    pub loaded: bool,
}

/// Runs `f(seed)` for every seed on `jobs` threads (0 = one per CPU) and
/// returns the results in the order of `seeds`.
///
/// With a `store`, each result is written to `<dir>/<seed>.json` with the
/// store's options as soon as it is ready, and seeds whose file already
/// exists, parses and holds the same options are loaded instead of run, so an
/// interrupted run resumes where it stopped; a file written under other
/// options is recomputed. `T` must survive a JSON round trip.
///
/// `progress` is called once per seed, loaded ones included (marked so: they
/// cost nothing, and a time estimate should leave them out), from the worker
/// threads. When jobs fail, the other seeds still run (and are
/// stored); the error of the first failed seed in `seeds` order is returned.
pub fn run_seeds<T, E, F>(
    seeds: &[u64],
    jobs: usize,
    store: Option<SeedStore<'_>>,
    progress: &(dyn Fn(SeedDone) + Sync),
    f: F,
) -> Result<Vec<T>, RunnerError>
where
    T: Serialize + DeserializeOwned + Send,
    E: Into<JobError>,
    F: Fn(u64) -> Result<T, E> + Sync,
{
    let threads = emorl_core::parallelism::resolve_threads("jobs", jobs)
        .map_err(|e| RunnerError::Jobs(e.to_string()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|source| RunnerError::ThreadPool { jobs, source })?;
    if let Some(store) = store {
        std::fs::create_dir_all(store.dir).map_err(|source| RunnerError::Store {
            path: store.dir.to_path_buf(),
            source,
        })?;
    }
    let total = seeds.len();
    let done = AtomicUsize::new(0);
    let run_new = |seed: u64| -> Result<T, RunnerError> {
        let value = f(seed).map_err(|e| RunnerError::Seed {
            seed,
            source: e.into(),
        })?;
        if let Some(st) = store {
            save(st, seed, &value)?;
        }
        Ok(value)
    };
    // `(result, loaded from the store)`
    let run_one = |seed: u64| -> (Result<T, RunnerError>, bool) {
        if let Some(value) = store.and_then(|st| load(st, seed)) {
            return (Ok(value), true);
        }
        (run_new(seed), false)
    };
    let results: Vec<Result<T, RunnerError>> = pool.install(|| {
        seeds
            .par_iter()
            // One seed per task: seeds can differ a lot in cost.
            .with_max_len(1)
            .map(|&seed| {
                let (result, loaded) = run_one(seed);
                progress(SeedDone {
                    done: done.fetch_add(1, Ordering::SeqCst) + 1,
                    total,
                    loaded,
                });
                result
            })
            .collect()
    });
    let mut out = Vec::with_capacity(total);
    let mut first_error = None;
    let mut failed = 0usize;
    for result in results {
        match result {
            Ok(value) => out.push(value),
            Err(e) => {
                tracing::error!(error = %e, "seed failed");
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => {
            if failed > 1 {
                tracing::error!(failed, "seeds failed; returning the first error");
            }
            Err(e)
        }
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::{EmoRng, RngKind};
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A per-seed "experiment": everything comes from the seed.
    fn experiment(seed: u64) -> Vec<f64> {
        let mut rng = EmoRng::new(RngKind::Numpy, seed);
        (0..5).map(|_| rng.random()).collect()
    }

    fn no_progress(_: SeedDone) {}

    #[test]
    fn results_come_back_in_seed_order() {
        let seeds: Vec<u64> = (0..8).collect();
        let calls = Mutex::new(Vec::new());
        let progress = |d: SeedDone| calls.lock().unwrap().push((d.done, d.total));
        let out = run_seeds(&seeds, 2, None, &progress, |seed| {
            // Early seeds take longest, so they finish last.
            std::thread::sleep(Duration::from_millis(10 * (8 - seed)));
            Ok::<_, std::io::Error>((seed, experiment(seed)))
        })
        .unwrap();
        let expected: Vec<_> = seeds.iter().map(|&s| (s, experiment(s))).collect();
        assert_eq!(out, expected);
        let mut done: Vec<_> = calls.into_inner().unwrap();
        done.sort();
        assert_eq!(done, (1..=8).map(|d| (d, 8)).collect::<Vec<_>>());
    }

    #[test]
    fn zero_jobs_means_one_thread_per_cpu() {
        let out = run_seeds(&[3, 1, 2], 0, None, &no_progress, |seed| {
            Ok::<_, String>(seed * 2)
        })
        .unwrap();
        assert_eq!(out, [6, 2, 4]);
    }

    #[test]
    fn interrupted_run_resumes_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("results");
        let store_options = serde_json::json!({"rng": "numpy"});
        let st = SeedStore {
            dir: &store_dir,
            options: &store_options,
        };
        let store = store_dir.clone();
        let seeds: Vec<u64> = (10..18).collect();

        let err = run_seeds(&seeds, 2, Some(st), &no_progress, |seed| {
            if seed == 13 {
                Err(format!("seed {seed} crashed"))
            } else {
                Ok(experiment(seed))
            }
        })
        .unwrap_err();
        assert!(matches!(err, RunnerError::Seed { seed: 13, .. }), "{err}");
        for &seed in &seeds {
            assert_eq!(seed_file(&store, seed).exists(), seed != 13, "seed {seed}");
        }
        // A file cut short by a crash is recomputed, not trusted.
        std::fs::write(seed_file(&store, 15), "[0.1, 0.2").unwrap();

        let computed = Mutex::new(BTreeSet::new());
        let ticks = Mutex::new(Vec::new());
        let tick = |d: SeedDone| ticks.lock().unwrap().push(d);
        let resumed = run_seeds(&seeds, 2, Some(st), &tick, |seed| {
            computed.lock().unwrap().insert(seed);
            Ok::<_, String>(experiment(seed))
        })
        .unwrap();
        assert_eq!(computed.into_inner().unwrap(), BTreeSet::from([13, 15]));
        // Progress marks the loaded seeds, so a time estimate can leave them out.
        let ticks = ticks.into_inner().unwrap();
        assert_eq!(ticks.len(), seeds.len());
        assert_eq!(ticks.iter().filter(|d| !d.loaded).count(), 2);
        let mut done: Vec<usize> = ticks.iter().map(|d| d.done).collect();
        done.sort_unstable();
        assert_eq!(done, (1..=seeds.len()).collect::<Vec<_>>());

        let uninterrupted = run_seeds(&seeds, 1, None, &no_progress, |seed| {
            Ok::<_, String>(experiment(seed))
        })
        .unwrap();
        assert_eq!(resumed, uninterrupted);

        // Only the result files remain: no temporary files left behind.
        let names: BTreeSet<String> = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = seeds.iter().map(|s| format!("{s}.json")).collect();
        assert_eq!(names, want);
    }

    #[test]
    fn results_stored_under_other_options_are_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let (numpy, fast) = (
            serde_json::json!({"rng": "numpy"}),
            serde_json::json!({"rng": "fast"}),
        );
        let store = |options| SeedStore {
            dir: dir.path(),
            options,
        };
        let seeds: Vec<u64> = (0..6).collect();
        // Another run wrote seeds 0-2 under other options into the same place.
        run_seeds(&seeds[..3], 1, Some(store(&fast)), &no_progress, |seed| {
            Ok::<_, String>(-(seed as f64))
        })
        .unwrap();
        let computed = Mutex::new(BTreeSet::new());
        let out = run_seeds(&seeds, 2, Some(store(&numpy)), &no_progress, |seed| {
            computed.lock().unwrap().insert(seed);
            Ok::<_, String>(seed as f64)
        })
        .unwrap();
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(computed.into_inner().unwrap().len(), 6);
        // Now stored under numpy: trusted from here on.
        let again = run_seeds(&seeds, 2, Some(store(&numpy)), &no_progress, |_| {
            Err::<f64, _>("must not run".to_string())
        })
        .unwrap();
        assert_eq!(again, out);
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(seed_file(dir.path(), 1)).unwrap())
                .unwrap();
        assert_eq!(file["options"], numpy);
        assert_eq!(file["result"], 1.0);
    }

    #[test]
    fn stored_floats_round_trip_bit_for_bit() {
        // serde_json's default float parser may be one ulp off; resumed runs
        // must equal uninterrupted ones exactly (float_roundtrip feature).
        let mut rng = EmoRng::new(RngKind::Numpy, 99);
        let values: Vec<f64> = (0..20_000)
            .map(|i| (rng.random() - 0.5) * 10f64.powi(i % 40 - 20))
            .collect();
        let json = serde_json::to_vec_pretty(&values).unwrap();
        let back: Vec<f64> = serde_json::from_slice(&json).unwrap();
        assert!(values
            .iter()
            .zip(&back)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn unwritable_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let options = serde_json::Value::Null;
        let st = SeedStore {
            dir: &file,
            options: &options,
        };
        let err = run_seeds(&[1], 1, Some(st), &no_progress, |seed| {
            Ok::<_, String>(seed)
        })
        .unwrap_err();
        assert!(matches!(err, RunnerError::Store { .. }), "{err}");
    }
}
