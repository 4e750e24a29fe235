//! `emorl reproduce TABLE`: regenerate a results table (markdown + JSON + figure).

use crate::experiment::{Experiment, SeedOutcome};
use crate::figure;
use crate::train::progress;
use anyhow::{bail, Context, Result};
use emorl_core::{EmoRng, RngKind};
use emorl_log::RunDir;
use emorl_stats::{compare, Comparison, SeedStore, Table};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tables `emorl reproduce` knows.
pub const TABLES: [(&str, &str); 3] = [
    (
        "v2-tabular",
        "Emotional-ED V2 Experiment 12: fear, anger, regret, integration, transfer (tabular Q-learning)",
    ),
    (
        "v2-dqn",
        "Emotional-ED V2 Exp 16b (5x5 grid) and Exp 18 (slippery cliff): dqn vs coupled fear-DQN vs decoupled fear-dqn",
    ),
    (
        "llm-modules",
        "Emotional modules on a frozen LM (prefix, gate, ERM, steering, full vs base and static prefix): markers, dialogue return, perplexity",
    ),
];

/// The V2 experiments, embedded so the binary runs anywhere.
pub const V2_TABULAR: [(&str, &str); 5] = [
    ("fear", include_str!("../../configs/v2/fear.toml")),
    ("anger", include_str!("../../configs/v2/anger.toml")),
    ("regret", include_str!("../../configs/v2/regret.toml")),
    (
        "integration",
        include_str!("../../configs/v2/integration.toml"),
    ),
    (
        "transfer",
        include_str!("../../configs/v2/transfer.toml"),
    ),
];

/// Options of one reproduction; stored in the run directory so that a resumed
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
}

/// Runs the reproduction; returns the run directory.
pub fn reproduce(args: &ReproduceArgs) -> Result<PathBuf> {
    let o = &args.options;
    if !TABLES.iter().any(|(id, _)| *id == o.table) {
        let known: Vec<&str> = TABLES.iter().map(|(id, _)| *id).collect();
        bail!("unknown table '{}' (known: {})", o.table, known.join(", "));
    }
    if o.seeds < 2 {
        bail!("--seeds must be at least 2 (statistics need two values per arm)");
    }
    if o.permutations == 0 {
        bail!("--permutations must be at least 1 (the permutation test's p-values need them)");
    }
    if (o.model.is_some()
        || args.config.is_some()
        || args.agents.is_some()
        || args.goemotions.is_some())
        && o.table != "llm-modules"
    {
        bail!("--model, --config, --agents and --goemotions apply to llm-modules only");
    }
    if o.table == "v2-dqn" {
        return crate::reproduce_dqn::reproduce_dqn(args);
    }
    if o.table == "llm-modules" {
        let model = o.model.clone().unwrap_or_else(|| "default".into());
        return crate::reproduce_llm::reproduce_llm(args, &model, args.config.as_deref());
    }
    if o.episodes.is_some() {
        bail!("--episodes applies to v2-dqn and llm-modules only");
    }
    if o.blocks == 0 {
        bail!("--blocks must be at least 1");
    }
    let experiments = V2_TABULAR
        .iter()
        .map(|(name, text)| {
            let e = Experiment::from_toml(text)
                .with_context(|| format!("embedded experiment '{name}'"))?;
            e.validate()?;
            Ok(e)
        })
        .collect::<Result<Vec<_>>>()?;
    let run = open_run(args)?;
    let start = Instant::now();
    let total_seeds = o.seeds * o.blocks;
    let seeds: Vec<u64> = (0..total_seeds as u64).map(|i| o.seed_offset + i).collect();
    let pb = progress((experiments.len() * total_seeds) as u64, "seeds");
    let stored_under = seed_options(o)?;
    let mut outcomes = Vec::new();
    for exp in &experiments {
        pb.set_message(exp.name.clone());
        let dir = run.path().join("seeds").join(&exp.name);
        let store = SeedStore {
            dir: &dir,
            options: &stored_under,
        };
        let offset = o.seed_offset;
        let per_block = o.seeds as u64;
        let last_of_block = |seed: u64| (seed - offset + 1).is_multiple_of(per_block);
        let tick = |d: emorl_stats::SeedDone| crate::train::step_done(&pb, d.loaded);
        let results: Vec<SeedOutcome> =
            emorl_stats::run_seeds(&seeds, args.jobs, Some(store), &tick, |seed| {
                exp.run_seed(seed, o.rng, last_of_block(seed))
            })
            .with_context(|| format!("experiment '{}'", exp.name))?;
        outcomes.push(results);
    }
    pb.finish_and_clear();
    let (table, blocks) = build_table(o, &experiments, &outcomes)?;
    let markdown = table.to_markdown();
    run.write_atomic(Path::new("table.json"), table.to_json()?.as_bytes())?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    log_tensorboard(&run, &experiments, &outcomes, &markdown)?;
    let svg = figure::distributions(&experiments, &blocks, o)?;
    run.write_atomic(Path::new("distributions.svg"), svg.as_bytes())?;
    let timing =
        serde_json::json!({ "wall_seconds": start.elapsed().as_secs_f64(), "jobs": args.jobs });
    write_timing(&run, timing, &["wall_seconds"])?;
    crate::summary::print_result(&markdown);
    eprintln!(
        "reproduced {} ({} seeds x {} experiments) in {:.2}s",
        o.table,
        total_seeds,
        experiments.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(run.path().to_path_buf())
}

/// TensorBoard view of a reproduction: per-seed metrics as scalars (step =
/// seed), their histograms, and the table as text.
fn log_tensorboard(
    run: &RunDir,
    experiments: &[Experiment],
    outcomes: &[Vec<SeedOutcome>],
    markdown: &str,
) -> Result<()> {
    let mut tb = fresh_event_writer(run)?;
    for (exp, results) in experiments.iter().zip(outcomes) {
        for s in results {
            let step = i64::try_from(s.seed).unwrap_or(i64::MAX);
            tb.add_scalar(&format!("{}/control", exp.name), s.control, step)?;
            tb.add_scalar(&format!("{}/treatment", exp.name), s.treatment, step)?;
        }
        let control: Vec<f64> = results.iter().map(|s| s.control).collect();
        let treatment: Vec<f64> = results.iter().map(|s| s.treatment).collect();
        tb.add_histogram(&format!("histograms/{}/control", exp.name), &control, 0)?;
        tb.add_histogram(&format!("histograms/{}/treatment", exp.name), &treatment, 0)?;
    }
    tb.add_text("table", markdown, 0)?;
    Ok(())
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
    let run = match &args.out {
        Some(p) => RunDir::at(p),
        None => RunDir::create(&args.out_root, &format!("reproduce-{}", args.options.table)),
    }
    .map_err(|e| crate::resume::explain(e, false))?;
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

/// Per-seed values of one experiment and block.
pub struct Block {
    pub label: String,
    pub control: Vec<f64>,
    pub treatment: Vec<f64>,
    /// The permutation test's p and Cohen's d of the block (for the figure).
    pub p: Option<f64>,
    pub d: f64,
}

/// The seed range `first–last` as text.
fn seed_range(seeds: &[SeedOutcome]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) => format!("{}–{}", a.seed, b.seed),
        _ => String::new(),
    }
}

fn build_table(
    o: &ReproduceOptions,
    experiments: &[Experiment],
    outcomes: &[Vec<SeedOutcome>],
) -> Result<(Table, Vec<Vec<Block>>)> {
    let mut table = Table::comparisons(format!(
        "Emotional-ED V2 tabular experiments — {} seeds per block, {} block(s), rng {}, {} permutations",
        o.seeds, o.blocks, o.rng, o.permutations
    ));
    let mut all_blocks = Vec::new();
    let mut block_verdicts = vec![(0usize, 0usize); o.blocks];
    for (exp, results) in experiments.iter().zip(outcomes) {
        let mut blocks = Vec::new();
        let mut comps: Vec<Comparison> = Vec::new();
        for (b, chunk) in results.chunks(o.seeds).enumerate() {
            let control: Vec<f64> = chunk.iter().map(|s| s.control).collect();
            let treatment: Vec<f64> = chunk.iter().map(|s| s.treatment).collect();
            // The permutation test continues the stream after the block's last
            // treatment run (upstream's global numpy state).
            let mut rng = chunk
                .last()
                .and_then(|s| s.rng_after.clone())
                .context("the last seed of a block lacks its generator state")?;
            let c = compare(&control, &treatment, &mut rng, o.permutations)
                .with_context(|| format!("statistics of '{}'", exp.name))?;
            let label = seed_range(chunk);
            table.push_comparison(&exp.title, &label, &c)?;
            if c.significant {
                block_verdicts[b].0 += 1;
            }
            if c.cohens_d.abs() >= 0.8 {
                block_verdicts[b].1 += 1;
            }
            blocks.push(Block {
                label,
                control,
                treatment,
                p: c.permutation_p,
                d: c.cohens_d,
            });
            comps.push(c);
        }
        if o.blocks > 1 {
            let control: Vec<f64> = results.iter().map(|s| s.control).collect();
            let treatment: Vec<f64> = results.iter().map(|s| s.treatment).collect();
            // Pooled rows have no upstream counterpart: a fresh stream seeded
            // with the seed offset keeps them deterministic.
            let mut rng = EmoRng::new(o.rng, o.seed_offset);
            let c = compare(&control, &treatment, &mut rng, o.permutations)?;
            table.push_comparison(&exp.title, &format!("pooled {}", seed_range(results)), &c)?;
        }
        table.note(verdict(exp, &comps));
        all_blocks.push(blocks);
    }
    for (b, (sig, large)) in block_verdicts.iter().enumerate() {
        let strength = if *sig >= 4 && *large >= 3 {
            "STRONG"
        } else if *sig >= 3 {
            "MODERATE"
        } else {
            "WEAK"
        };
        let label = all_blocks
            .first()
            .and_then(|bl: &Vec<Block>| bl.get(b))
            .map_or(String::new(), |bl| bl.label.clone());
        table.note(format!(
            "Seeds {label}: significant {sig}/{n}, large effects {large}/{n} → {strength} statistical support (upstream's criteria).",
            n = experiments.len()
        ));
    }
    Ok((table, all_blocks))
}

/// A plain-words verdict for one experiment across its blocks.
fn verdict(exp: &Experiment, comps: &[Comparison]) -> String {
    let favours = |c: &Comparison| (c.cohens_d > 0.0) == exp.higher_is_better;
    let sig: Vec<&Comparison> = comps.iter().filter(|c| c.significant).collect();
    let n = comps.len();
    let direction = |c: &Comparison| {
        let side = if c.cohens_d > 0.0 { "higher" } else { "lower" };
        let claim = if favours(c) {
            "the direction upstream claims"
        } else {
            "against upstream's claim"
        };
        format!("{} {side} ({claim})", exp.treatment.label)
    };
    let ds: Vec<String> = comps.iter().map(|c| format!("{:.2}", c.cohens_d)).collect();
    let detail = format!("d per block: {}", ds.join(", "));
    let text = if n == 1 {
        let c = &comps[0];
        if c.significant {
            format!("significant (p = {:.3}), {}", c.p_value(), direction(c))
        } else {
            format!("not significant (p = {:.3})", c.p_value())
        }
    } else if sig.len() == n && comps.iter().all(|c| favours(c) == favours(&comps[0])) {
        format!(
            "stable: significant in all {n} blocks, {}",
            direction(&comps[0])
        )
    } else if sig.is_empty() {
        format!("no effect: significant in none of {n} blocks")
    } else {
        format!("NOT stable: significant in {}/{n} blocks", sig.len())
    };
    format!(
        "**{}** ({}): {text}; {detail}.",
        exp.title, exp.metric_description
    )
}
