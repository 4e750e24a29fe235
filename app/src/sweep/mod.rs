//! `emorl sweep`: a grid of trainings — axes of settings × seeds — run on
//! this machine or as a Slurm job array, each run's result stored on its
//! own so that an interrupted sweep resumes, and one table at the end.
//!
//! A sweep directory holds everything a run needs (`sweep.json`, the plan;
//! `cells/<id>.toml`, each cell's resolved training config), so array tasks
//! on other machines read nothing else. Each run is an `emorl train`
//! process (`runs/<cell>/seed-<n>/`: config, metrics, TensorBoard files;
//! its log beside it); when it ends, the numbers the sweep collects are
//! written atomically to `results/<cell>/seed-<n>.json`. A run without a
//! result is redone from scratch. `collect` turns the results into
//! `table.md`, `table.json` and `figure.svg`/`.png`.

pub mod collect;
pub mod spec;

use crate::cluster::{self, Backend, Submission};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use spec::{Plan, Run};
use std::path::{Path, PathBuf};

/// The plan file of a sweep directory.
pub const PLAN_FILE: &str = "sweep.json";
/// The array assignment of the latest Slurm submission.
const ARRAY_FILE: &str = "slurm/array.json";

/// `emorl sweep FILE`'s options.
#[derive(Debug, Clone)]
pub struct SweepArgs {
    pub file: PathBuf,
    pub backend: Backend,
    /// Parallel runs (local backend).
    pub jobs: usize,
    pub out: Option<PathBuf>,
    pub runs_dir: PathBuf,
    /// Slurm options from flags (over the sweep file's `[slurm]`), and
    /// whether to stop at the script.
    pub slurm: Submission,
}

/// A Slurm submission's work: array task `i` runs `runs[j]` for every `j`
/// with `j % tasks == i` (indices into [`Plan::runs`]).
#[derive(Debug, Serialize, Deserialize)]
struct Array {
    tasks: usize,
    runs: Vec<usize>,
}

/// Runs (or submits) the sweep in `args.file`; its directory.
pub fn sweep(args: &SweepArgs) -> Result<PathBuf> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read sweep file {}", args.file.display()))?;
    let sweep = spec::read(&args.file)?;
    let slurm = sweep.slurm.overridden_by(&args.slurm.options);
    slurm.validate()?;
    let plan = sweep.plan;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.runs_dir.join(format!("sweep-{}", plan.name)));
    let dir = open_dir(&out, &plan, &text)?;
    match args.backend {
        Backend::Local => {
            let all: Vec<usize> = (0..plan.runs().len()).collect();
            run_all(dir.path(), &plan, &all, args.jobs)?;
            let markdown = collect::write(&dir, &plan)?;
            crate::summary::print_result(&markdown);
        }
        Backend::Slurm => submit(dir.path(), &plan, &slurm, args.slurm.dry_run)?,
    }
    Ok(out)
}

/// Creates the sweep directory `out` with the plan, or reopens it when it
/// holds the same plan (resume); refuses a directory holding anything
/// else. Locked while the caller holds it.
fn open_dir(out: &Path, plan: &Plan, file_text: &str) -> Result<emorl_log::RunDir> {
    let plan_path = out.join(PLAN_FILE);
    if plan_path.exists() {
        let stored = load_plan(out)?;
        if let Some(what) = first_difference(&stored, plan) {
            bail!(
                "{} holds another sweep (its {what} differs); use another --out",
                out.display()
            );
        }
        return Ok(emorl_log::RunDir::at(out)?);
    }
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty and holds no sweep; use another --out",
            out.display()
        );
    }
    let dir = emorl_log::RunDir::at(out)?;
    for cell in &plan.cells {
        let cfg = match &plan.reproduce {
            None => toml::to_string(&crate::train::resolve_table(
                plan.base.clone(),
                cell.overrides(),
            )?)?,
            Some(_) => toml::to_string(&spec::reproduce_config(&plan.base, cell)?)?,
        };
        let mut text = format!(
            "# sweep {}, cell {}: {}\n",
            plan.name,
            cell.id,
            cell.label()
        );
        text.push_str(&cfg);
        dir.write_atomic(cell_config_rel(&cell.id), text.as_bytes())?;
    }
    dir.write_atomic("sweep.toml", file_text.as_bytes())?;
    // Last: a directory with a plan file is complete.
    dir.write_atomic(PLAN_FILE, serde_json::to_string_pretty(plan)?.as_bytes())?;
    Ok(dir)
}

fn cell_config_rel(id: &str) -> PathBuf {
    Path::new("cells").join(format!("{id}.toml"))
}

/// The plan stored in the sweep directory `dir`.
pub fn load_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!(
            "{} is not a sweep directory (no {PLAN_FILE})",
            dir.display()
        ),
        _ => anyhow!("cannot read {}: {e}", path.display()),
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
}

/// Which part of two plans differs first, if any.
fn first_difference(a: &Plan, b: &Plan) -> Option<&'static str> {
    if a.name != b.name {
        Some("name")
    } else if a.base != b.base || a.reproduce != b.reproduce {
        Some("base config")
    } else if a.axes != b.axes || a.cells != b.cells {
        Some("axes")
    } else if a.seeds != b.seeds {
        Some("seeds")
    } else if a.metrics != b.metrics {
        Some("metrics")
    } else if a.control != b.control {
        Some("control")
    } else {
        None
    }
}

/// Where run `run`'s result is stored, relative to the sweep directory.
pub fn result_rel(run: &Run<'_>) -> PathBuf {
    Path::new("results").join(format!("{}.json", run.rel()))
}

/// Runs the runs `indices` (into [`Plan::runs`]) that have no result yet,
/// `jobs` at a time; every run is attempted, the first failure (in run
/// order) is returned.
fn run_all(dir: &Path, plan: &Plan, indices: &[usize], jobs: usize) -> Result<()> {
    let runs = plan.runs();
    let ids: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    let done_before = indices
        .iter()
        .filter(|&&i| dir.join(result_rel(&runs[i])).exists())
        .count();
    let bar = crate::progress::progress(indices.len() as u64, "sweep");
    bar.set_position(done_before as u64);
    let exe = std::env::current_exe().context("cannot find the emorl executable")?;
    emorl_stats::run_seeds(
        &ids,
        jobs,
        None,
        &|_| {},
        |i| -> Result<(), anyhow::Error> {
            let run = runs[i as usize];
            let fresh = run_one(&exe, dir, plan, &run)?;
            if fresh {
                bar.inc(1);
            }
            Ok(())
        },
    )
    .map_err(|e| match e {
        emorl_stats::RunnerError::Seed { source, .. } => anyhow!("{source}"),
        other => anyhow!(other),
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Runs one run unless its result exists; whether it ran.
fn run_one(exe: &Path, dir: &Path, plan: &Plan, run: &Run<'_>) -> Result<bool> {
    let result_path = dir.join(result_rel(run));
    if result_path.exists() {
        return Ok(false);
    }
    let run_dir = dir.join("runs").join(run.rel());
    if run_dir.exists() {
        // Left by an attempt that did not finish: start it again.
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("cannot clear {}", run_dir.display()))?;
    }
    let parent = run_dir
        .parent()
        .ok_or_else(|| anyhow!("run directory {}", run_dir.display()))?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let log_path = dir.join("runs").join(format!("{}.log", run.rel()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    let config = dir.join(cell_config_rel(&run.cell.id));
    match &plan.reproduce {
        None => {
            cmd.arg("train")
                .arg("--config")
                .arg(&config)
                .arg("--seed")
                .arg(run.seed.to_string());
        }
        Some(r) => {
            cmd.arg("reproduce").arg(&r.table);
            for (k, v) in &r.options {
                cmd.arg(format!("--{k}")).arg(v);
            }
            if crate::reproduce::table(&r.table)?.takes_config {
                cmd.arg("--config").arg(&config);
            }
            let offset = run
                .seed
                .checked_mul(r.seeds_per_table)
                .ok_or_else(|| anyhow!("seed {} × {} overflows", run.seed, r.seeds_per_table))?;
            cmd.arg("--seed-offset")
                .arg(offset.to_string())
                .arg("--jobs")
                .arg("1");
        }
    }
    cmd.arg("--out")
        .arg(&run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    die_with_parent(&mut cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        bail!(
            "run {} ({}, seed {}) failed ({status}): {last} (log: {})",
            run.rel(),
            run.cell.label(),
            run.seed,
            log_path.display()
        );
    }
    let metrics = match plan.reproduce {
        None => collect::run_metrics(&run_dir, &plan.metrics)?,
        Some(_) => collect::table_metrics(&run_dir, &plan.metrics)?,
    };
    let record = collect::RunResult {
        cell: run.cell.id.clone(),
        seed: run.seed,
        metrics,
    };
    std::fs::create_dir_all(result_path.parent().unwrap_or(dir))?;
    emorl_log::write_atomic(
        &result_path,
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    Ok(true)
}

/// A run's process is killed when the thread that started it dies, so that
/// a killed sweep leaves no training behind writing into its directory.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Writes the job-array script for the runs without a result and submits
/// it (or prints it, with `dry_run`).
fn submit(dir: &Path, plan: &Plan, slurm: &cluster::SlurmOptions, dry_run: bool) -> Result<()> {
    let runs = plan.runs();
    let pending: Vec<usize> = (0..runs.len())
        .filter(|&i| !dir.join(result_rel(&runs[i])).exists())
        .collect();
    let abs = cluster::absolute(dir)?;
    if pending.is_empty() {
        println!(
            "all {} runs have results; the table: emorl sweep collect {}",
            runs.len(),
            abs.display()
        );
        return Ok(());
    }
    let tasks = slurm.tasks_for(pending.len());
    let array = Array {
        tasks,
        runs: pending.clone(),
    };
    std::fs::create_dir_all(abs.join("slurm"))?;
    emorl_log::write_atomic(
        &abs.join(ARRAY_FILE),
        serde_json::to_string(&array)?.as_bytes(),
    )?;
    let exe = cluster::absolute(&std::env::current_exe()?)?;
    let command = vec![
        exe.display().to_string(),
        "sweep".into(),
        "run-task".into(),
        abs.display().to_string(),
        "--task".into(),
    ];
    let comment = format!(
        "emorl sweep {}: {} of {} runs ({} cells x {} seeds) in {tasks} array tasks.\n\
         Each task runs its share of the runs without a result; results land in\n\
         {}/results. Afterwards: emorl sweep collect {}",
        plan.name,
        pending.len(),
        runs.len(),
        plan.cells.len(),
        plan.seeds.len(),
        abs.display(),
        abs.display()
    );
    let script = cluster::array_script(
        &format!("emorl-sweep-{}", plan.name),
        tasks,
        &abs.join("slurm"),
        slurm,
        &command,
        &comment,
    );
    let script_path = abs.join("slurm").join("sweep.sbatch");
    let Some(job) = cluster::write_and_submit(&script_path, &script, dry_run)? else {
        return Ok(());
    };
    println!("{job}");
    eprintln!(
        "submitted job {job}: {} runs in {tasks} array tasks ({})\n  watch:   squeue -j {job}\n  logs:    {}/slurm/{job}_<task>.out\n  then:    emorl sweep collect {}",
        pending.len(),
        script_path.display(),
        abs.display(),
        abs.display()
    );
    Ok(())
}

/// `emorl sweep run-task DIR --task N`: array task `N` of the latest
/// submission runs its share; `jobs` at a time.
pub fn run_task(dir: &Path, task: usize, jobs: usize) -> Result<()> {
    let plan = load_plan(dir)?;
    let path = dir.join(ARRAY_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (submit the sweep first)", path.display()))?;
    let array: Array =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    if task >= array.tasks {
        bail!(
            "--task {task}: the submission has tasks 0 to {}",
            array.tasks - 1
        );
    }
    let total = plan.runs().len();
    let mine: Vec<usize> = array
        .runs
        .iter()
        .enumerate()
        .filter(|(j, _)| j % array.tasks == task)
        .map(|(_, &i)| i)
        .collect();
    if let Some(&bad) = mine.iter().find(|&&i| i >= total) {
        bail!("{} names run {bad}; the sweep has {total}", path.display());
    }
    run_all(dir, &plan, &mine, jobs)?;
    eprintln!("task {task}: {} runs done", mine.len());
    Ok(())
}

/// `emorl sweep collect DIR`: the table of a finished sweep.
pub fn collect_dir(dir: &Path) -> Result<()> {
    let plan = load_plan(dir)?;
    let run = emorl_log::RunDir::at(dir)?;
    let markdown = collect::write(&run, &plan)?;
    crate::summary::print_result(&markdown);
    Ok(())
}
