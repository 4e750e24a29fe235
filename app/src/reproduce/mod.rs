//! `emorl reproduce TABLE`: regenerate a results table (markdown + JSON +
//! figure). Each table is a module (`v2`, `dqn`, `llm`) and an entry of
//! [`TABLES`] with its defaults; `common` holds what they share, `figure`
//! draws.

pub mod common;
pub mod dqn;
pub mod figure;
pub mod llm;
pub mod v2;
pub mod v3;
pub mod v3_audit;

pub use common::{ReproduceArgs, ReproduceOptions};
pub use v2::V2_TABULAR;

use crate::cluster::Backend;
use anyhow::{bail, Result};
use emorl_core::RngKind;
use std::path::PathBuf;

/// One table `emorl reproduce` knows: what it is, its defaults and the
/// table-specific options it takes.
pub struct TableSpec {
    pub id: &'static str,
    pub description: &'static str,
    /// Seeds per block unless `--seeds` says otherwise (for `llm-modules`:
    /// held-out conversations).
    pub default_seeds: usize,
    /// Random-number generator unless `--rng` says otherwise.
    pub default_rng: RngKind,
    /// Seed blocks unless `--blocks` says otherwise.
    pub default_blocks: usize,
    /// Takes `--episodes`.
    pub episodes: bool,
    /// Takes `--blocks` other than 1.
    pub blocks: bool,
    /// Takes `--model`, `--agents` and `--goemotions`.
    pub llm_options: bool,
    /// Takes `--config` (a file merged over, or replacing, the embedded one).
    pub takes_config: bool,
}

/// The tables, in the order `--help` lists them.
pub const TABLES: [TableSpec; 5] = [
    TableSpec {
        id: "v2-tabular",
        description: "Emotional-ED V2 Experiment 12: fear, anger, regret, integration, transfer (tabular Q-learning)",
        default_seeds: 50,
        default_rng: RngKind::Numpy,
        default_blocks: 1,
        episodes: false,
        blocks: true,
        llm_options: false,
        takes_config: false,
    },
    TableSpec {
        id: "v3",
        description: "Emotional-ED V3 fair tests, Exp 17 and 19-23: curiosity, surprise, anger, fear transfer, anxiety, patience (tabular Q-learning)",
        default_seeds: 50,
        default_rng: RngKind::Numpy,
        default_blocks: 1,
        episodes: false,
        blocks: true,
        llm_options: false,
        takes_config: false,
    },
    TableSpec {
        id: "v3-audit",
        description: "The V3 audit: each emotional agent vs tuned plain Q-learning and an engineered non-emotional fix, every arm tuned alike on seeds 1000+",
        default_seeds: 50,
        default_rng: RngKind::Numpy,
        default_blocks: 4,
        episodes: false,
        blocks: true,
        llm_options: false,
        takes_config: true,
    },
    TableSpec {
        id: "v2-dqn",
        description: "Emotional-ED V2 Exp 16b (5x5 grid) and Exp 18 (slippery cliff): dqn vs coupled fear-DQN vs decoupled fear-dqn",
        default_seeds: 30,
        default_rng: RngKind::Fast,
        default_blocks: 1,
        episodes: true,
        blocks: true,
        llm_options: false,
        takes_config: true,
    },
    TableSpec {
        id: "llm-modules",
        description: "Emotional modules on a frozen LM (prefix, gate, ERM, steering, full vs base and static prefix): markers, dialogue return, perplexity",
        default_seeds: 64,
        default_rng: RngKind::Fast,
        default_blocks: 1,
        episodes: true,
        blocks: false,
        llm_options: true,
        takes_config: true,
    },
];

/// The table `id`, or an error listing the known ones.
pub fn table(id: &str) -> Result<&'static TableSpec> {
    match TABLES.iter().find(|t| t.id == id) {
        Some(t) => Ok(t),
        None => {
            let known: Vec<&str> = TABLES.iter().map(|t| t.id).collect();
            bail!("unknown table '{id}' (known: {})", known.join(", "))
        }
    }
}

/// Runs the reproduction; returns the run directory.
pub fn reproduce(args: &ReproduceArgs) -> Result<PathBuf> {
    let spec = check(args)?;
    if let Some(done) = run_light(spec, args) {
        return done;
    }
    match spec.id {
        "v2-dqn" => dqn::reproduce_dqn(args),
        "llm-modules" => {
            let model = args.options.model.as_deref().unwrap_or("default");
            if args.backend == Backend::Slurm {
                return llm::submit_agents(args, model);
            }
            llm::reproduce_llm(args, model, args.config.as_deref())
        }
        other => bail!("table '{other}' has no runner"),
    }
}

/// The reproduction of a table that needs no libtorch (the tabular ones);
/// `Ok(None)` for the others, after the options are checked. Only this
/// function's callees are linked into the `emorl` executable, which starts
/// without loading libtorch.
pub fn reproduce_light(args: &ReproduceArgs) -> Result<Option<PathBuf>> {
    let spec = check(args)?;
    run_light(spec, args).transpose()
}

fn run_light(spec: &TableSpec, args: &ReproduceArgs) -> Option<Result<PathBuf>> {
    if args.backend == Backend::Slurm && spec.id != "llm-modules" {
        return Some(submit_blocks(args));
    }
    match spec.id {
        "v2-tabular" => Some(v2::reproduce_v2(args)),
        "v3" => Some(v3::reproduce_v3(args)),
        "v3-audit" => Some(v3_audit::reproduce_v3_audit(args)),
        _ => None,
    }
}

/// The table's options checked against what it takes.
fn check(args: &ReproduceArgs) -> Result<&'static TableSpec> {
    let o = &args.options;
    let spec = table(&o.table)?;
    if o.seeds < 2 {
        bail!("--seeds must be at least 2 (statistics need two values per arm)");
    }
    if o.permutations == 0 {
        bail!("--permutations must be at least 1 (the permutation test's p-values need them)");
    }
    let llm_options = o.model.is_some() || args.agents.is_some() || args.goemotions.is_some();
    if llm_options && !spec.llm_options {
        bail!("--model, --agents and --goemotions apply to llm-modules only");
    }
    if args.config.is_some() && !spec.takes_config {
        bail!("--config applies to llm-modules, v3-audit and v2-dqn only");
    }
    if o.episodes.is_some() && !spec.episodes {
        bail!("--episodes applies to v2-dqn and llm-modules only");
    }
    if o.blocks == 0 {
        bail!("--blocks must be at least 1");
    }
    if o.blocks != 1 && !spec.blocks {
        bail!("--blocks applies to v2-tabular, v3, v3-audit and v2-dqn only");
    }
    if let Some(b) = args.block {
        // llm-modules' blocks are its agents, counted where they are resolved.
        if spec.blocks && b >= o.blocks {
            bail!("--block {b}: the run has blocks 0 to {}", o.blocks - 1);
        }
        if args.out.is_none() {
            bail!("--block needs --out (the directory the blocks are stored in)");
        }
        if args.backend == Backend::Slurm {
            bail!("--block is what each array task runs; not with --backend slurm");
        }
    }
    args.slurm.options.validate()?;
    Ok(spec)
}

/// `--backend slurm` for the seed-block tables: one array task per block.
fn submit_blocks(args: &ReproduceArgs) -> Result<PathBuf> {
    let o = &args.options;
    let unit = format!("blocks of {} seeds", o.seeds);
    submit_array(args, o.blocks, &unit, Vec::new())
}

/// Refuses a job array larger than `--max-array` allows.
pub(crate) fn check_array_size(args: &ReproduceArgs, tasks: usize, unit: &str) -> Result<()> {
    let cap = args.slurm.options.max_array;
    if tasks > cap.unwrap_or(crate::cluster::DEFAULT_MAX_ARRAY) {
        bail!("{tasks} {unit} are more array tasks than --max-array allows");
    }
    Ok(())
}

/// A job array of `tasks` array tasks, each running this command with
/// `--block` (its results go to the run's stores: seeds, or agents for
/// llm-modules) and `extra` options; the same command without `--backend`
/// afterwards finds everything stored and builds the table.
pub(crate) fn submit_array(
    args: &ReproduceArgs,
    tasks: usize,
    unit: &str,
    extra: Vec<String>,
) -> Result<PathBuf> {
    let o = &args.options;
    let slurm = &args.slurm.options;
    check_array_size(args, tasks, unit)?;
    let run = common::open_run(args)?;
    let abs = crate::cluster::absolute(run.path())?;
    let exe = crate::cluster::absolute(&std::env::current_exe()?)?;
    let options: Vec<String> = vec![
        "--seeds".into(),
        o.seeds.to_string(),
        "--seed-offset".into(),
        o.seed_offset.to_string(),
        "--blocks".into(),
        o.blocks.to_string(),
        "--rng".into(),
        o.rng.to_string(),
        "--permutations".into(),
        o.permutations.to_string(),
    ];
    let mut options = options;
    if let Some(n) = o.episodes {
        options.extend(["--episodes".into(), n.to_string()]);
    }
    options.extend(extra);
    if let Some(c) = &args.config {
        // The tasks read it by absolute path, from the shared filesystem.
        options.extend([
            "--config".into(),
            crate::cluster::absolute(c)?.display().to_string(),
        ]);
    }
    let mut command = vec![
        exe.display().to_string(),
        "reproduce".into(),
        o.table.clone(),
    ];
    command.extend(options.iter().cloned());
    command.extend([
        "--jobs".into(),
        slurm.cpus_per_task.unwrap_or(1).to_string(),
        "--out".into(),
        abs.display().to_string(),
        "--block".into(),
    ]);
    let table_command = format!(
        "emorl reproduce {} {} --out {}",
        o.table,
        options.join(" "),
        abs.display()
    );
    let comment = format!(
        "emorl reproduce {}: {tasks} {unit}, one array task each, stored in\n\
         {}. Afterwards: {table_command}",
        o.table,
        abs.display()
    );
    let script = crate::cluster::array_script(
        &format!("emorl-reproduce-{}", o.table),
        tasks,
        &abs.join("slurm"),
        slurm,
        &command,
        &comment,
    );
    std::fs::create_dir_all(abs.join("slurm"))?;
    let path = abs.join("slurm").join("reproduce.sbatch");
    if let Some(job) = crate::cluster::write_and_submit(&path, &script, args.slurm.dry_run)? {
        println!("{job}");
        eprintln!(
            "submitted job {job}: {tasks} array tasks ({})\n  watch: squeue -j {job}\n  then:  {table_command}",
            path.display()
        );
    }
    Ok(abs)
}
