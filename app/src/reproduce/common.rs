//! What every `emorl reproduce` table shares: its options (stored in the
//! run directory, so a resumed run cannot mix options), opening that
//! directory, TensorBoard's event file and the timing record.

use anyhow::{bail, Context, Result};
use emorl_core::RngKind;
use emorl_log::RunDir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// run cannot mix results made with different options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproduceOptions {
    pub table: String,
    /// Seeds per block.
    pub seeds: usize,
    pub seed_offset: u64,
    pub blocks: usize,
    pub rng: RngKind,
    pub permutations: usize,
    /// Training episodes per run (v2-dqn only; default: the protocol's 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes: Option<usize>,
    /// Frozen model (llm-modules only; default: SmolLM2-135M-Instruct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

pub struct ReproduceArgs {
    pub options: ReproduceOptions,
    /// Experiment file merged over the embedded one (llm-modules only).
    pub config: Option<PathBuf>,
    /// Comma-separated agent IDs to measure (llm-modules only; all when `None`).
    pub agents: Option<String>,
    /// GoEmotions directory for the judge (llm-modules only; default: found
    /// through `EMORL_GOEMOTIONS_DIR` or `shared/data/goemotions`).
    pub goemotions: Option<PathBuf>,
    pub jobs: usize,
    pub out: Option<PathBuf>,
    pub out_root: PathBuf,
    /// Where the seeds are computed (slurm: one array task per block).
    pub backend: crate::cluster::Backend,
    pub slurm: crate::cluster::Submission,
    /// Compute and store only this block's seeds; no table.
    pub block: Option<usize>,
}

/// The seeds this process computes: all `blocks × seeds` from the offset,
/// or only block `block`'s.
pub(crate) fn seeds_to_run(o: &ReproduceOptions, block: Option<usize>) -> Vec<u64> {
    let per = o.seeds as u64;
    let (first, n) = match block {
        Some(b) => (o.seed_offset + b as u64 * per, per),
        None => (o.seed_offset, per * o.blocks as u64),
    };
    (first..first + n).collect()
}

/// With `--block`: says what this process stored and returns the run
/// directory (no table: it needs every block); `None` otherwise.
pub(crate) fn block_done(
    run: &RunDir,
    args: &ReproduceArgs,
    seeds: &[u64],
    experiments: usize,
) -> Option<PathBuf> {
    let b = args.block?;
    eprintln!(
        "block {b}: seeds {}–{} of {experiments} experiments stored in {}/seeds",
        seeds.first().copied().unwrap_or_default(),
        seeds.last().copied().unwrap_or_default(),
        run.path().display()
    );
    Some(run.path().to_path_buf())
}

/// Writes `timing.json`, adding the times this process measured (the keys
/// `measured`: a number, or an object of numbers added key by key) to those
/// a stored file already holds, so that an interrupted run resumed, or a
/// finished one re-rendered, accumulates its compute time instead of
/// replacing it. Other keys (`jobs`, times read back from stored results)
/// are written as given.
pub(crate) fn write_timing(
    run: &RunDir,
    mut timing: serde_json::Value,
    measured: &[&str],
) -> Result<()> {
    use serde_json::Value;
    fn add(into: &mut Value, old: &Value) {
        match (into, old) {
            (Value::Number(n), Value::Number(o)) => {
                if let (Some(a), Some(b)) = (n.as_f64(), o.as_f64()) {
                    if let Some(sum) = serde_json::Number::from_f64(a + b) {
                        *n = sum;
                    }
                }
            }
            (Value::Object(m), Value::Object(o)) => {
                for (k, v) in m.iter_mut() {
                    if let Some(ov) = o.get(k) {
                        add(v, ov);
                    }
                }
            }
            _ => {}
        }
    }
    let path = run.path().join("timing.json");
    if let Some(old) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    {
        for key in measured {
            if let (Some(new), Some(old)) = (timing.get_mut(*key), old.get(*key)) {
                add(new, old);
            }
        }
    }
    run.write_atomic(Path::new("timing.json"), timing.to_string().as_bytes())?;
    Ok(())
}

/// The event writer of a reproduction: its TensorBoard record is rebuilt
/// whole from the stored results, so the event files of an earlier process
/// on the same directory are removed first (TensorBoard would show every
/// point twice).
pub(crate) fn fresh_event_writer(run: &RunDir) -> Result<emorl_log::EventWriter> {
    for entry in std::fs::read_dir(run.path())?.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents.")
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(run.event_writer()?)
}

/// What every stored seed result records it was computed under: a stored
/// seed is reused only under the same options (see [`SeedStore`]).
pub(crate) fn seed_options(o: &ReproduceOptions) -> Result<serde_json::Value> {
    serde_json::to_value(o).context("reproduce options")
}

/// Locks the run directory (another emorl process writing it is refused)
/// and checks it belongs to a reproduction with the same options: a new
/// directory gets `options.toml`, an existing one must hold the same.
pub(crate) fn open_run(args: &ReproduceArgs) -> Result<RunDir> {
    let run = match (&args.out, args.block) {
        // Array tasks fill the seed store side by side; the table waits.
        (Some(p), Some(_)) => RunDir::shared_at(p),
        (Some(p), None) => RunDir::at(p),
        (None, _) => RunDir::create(&args.out_root, &format!("reproduce-{}", args.options.table)),
    }
    .map_err(|e| crate::train::run::explain(e, false))?;
    let path = run.path().join("options.toml");
    let text = toml::to_string(&args.options).context("options")?;
    if path.exists() {
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let old: ReproduceOptions = toml::from_str(&old)
            .with_context(|| format!("{} is not a reproduce options file", path.display()))?;
        if old != args.options {
            bail!(
                "{} holds a run made with other options ({}); choose another --out",
                run.path().display(),
                toml::to_string(&old).unwrap_or_default().replace('\n', " ")
            );
        }
    } else if let Some(entry) = run.first_entry()? {
        bail!(
            "{} holds something other than a reproduction ({entry}); choose another --out",
            run.path().display()
        );
    } else {
        run.write_atomic(Path::new("options.toml"), text.as_bytes())?;
    }
    Ok(run)
}
