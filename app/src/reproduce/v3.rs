//! `emorl reproduce v3`: upstream's six V3 "fair test" experiments (Exp 17,
//! 19–23), control against the emotional arm, bit-exact with upstream under
//! `--rng numpy`, with upstream's published numbers beside ours.

use super::common::{
    block_done, fresh_event_writer, open_run, seed_options, seeds_to_run, write_timing,
    ReproduceArgs, ReproduceOptions,
};
use super::figure::{self, Block};
use crate::progress::progress;
use anyhow::{Context, Result};
use emorl_agents_tabular::v3::{MetricSpec, V3Experiment, V3_EXPERIMENTS};
use emorl_agents_tabular::QLearnerConfig;
use emorl_core::EmoRng;
use emorl_log::RunDir;
use emorl_stats::table::{format_number, Cell, COMPARISON_COLUMNS};
use emorl_stats::{compare, holm, Comparison, Row, SeedStore, Table};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One seed of one experiment: per arm, the registry's metrics in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct V3Seed {
    pub seed: u64,
    pub values: Vec<Vec<f64>>,
}

/// Runs every arm of `exp` on `seeds` (resumable under
/// `run/seeds/<experiment>`): together as upstream's protocol runs them
/// (Exp 21's arms share a generator stream), or each `separately` on its
/// own stream.
pub fn run_arms(
    run: &RunDir,
    exp: &V3Experiment,
    arms: &[QLearnerConfig],
    separately: bool,
    seeds: &[u64],
    args: &ReproduceArgs,
    pb: &crate::progress::Bar,
) -> Result<Vec<V3Seed>> {
    let (o, jobs) = (&args.options, args.jobs);
    let path = run.path().join("seeds").join(exp.id);
    let mut options = seed_options(o)?;
    // A stored seed is reused only for the same arms, run the same way.
    options["arms"] = serde_json::to_value(arms).context("arm settings")?;
    options["separately"] = serde_json::Value::Bool(separately);
    let store = SeedStore {
        dir: &path,
        options: &options,
    };
    let tick = |d: emorl_stats::SeedDone| crate::progress::step_done(pb, d.loaded);
    let rng = o.rng;
    emorl_stats::run_seeds(seeds, jobs, Some(store), &tick, |seed| {
        let values = if separately {
            let mut v = Vec::with_capacity(arms.len());
            for arm in arms {
                v.extend(exp.run_seed(seed, std::slice::from_ref(arm), rng)?);
            }
            v
        } else {
            exp.run_seed(seed, arms, rng)?
        };
        Ok::<_, emorl_core::CoreError>(V3Seed { seed, values })
    })
    .with_context(|| format!("experiment '{}'", exp.id))
}

/// The values of metric `m` of arm `arm` over `seeds`.
pub fn column(seeds: &[V3Seed], arm: usize, m: usize) -> Vec<f64> {
    seeds.iter().map(|s| s.values[arm][m]).collect()
}

/// Writes several tables as one `table.md` (one after the other) and one
/// `table.json` (their list); returns the markdown.
pub fn write_tables(run: &RunDir, tables: &[Table]) -> Result<String> {
    let markdown = tables
        .iter()
        .map(Table::to_markdown)
        .collect::<Vec<_>>()
        .join("\n");
    let json = serde_json::to_string_pretty(tables).context("table JSON")?;
    run.write_atomic(Path::new("table.json"), json.as_bytes())?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    Ok(markdown)
}

/// A p-value for prose: four decimals, or "< 0.0001".
pub fn p_text(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".to_string()
    } else {
        format_number(p, 4)
    }
}

/// The seed range `first–last` as text.
pub fn seed_range(seeds: &[V3Seed]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) => format!("{}–{}", a.seed, b.seed),
        _ => String::new(),
    }
}

/// A deterministic generator for the permutation test of one comparison
/// (upstream's V3 scripts report Student's t only, so there is no stream
/// to continue): seeded by the seed offset, experiment, metric and block.
pub fn permutation_rng(o: &ReproduceOptions, exp: &V3Experiment, m: usize, block: usize) -> EmoRng {
    let key = o
        .seed_offset
        .wrapping_mul(1_000_003)
        .wrapping_add(u64::from(exp.number) * 10_000 + m as u64 * 100 + block as u64);
    EmoRng::new(o.rng, key)
}

/// Blocks of `per_block` seeds, then (with more than one block) all seeds
/// pooled: `(label, seeds, block index)`.
pub fn blocks_and_pool(results: &[V3Seed], per_block: usize) -> Vec<(String, &[V3Seed], usize)> {
    let mut out: Vec<(String, &[V3Seed], usize)> = results
        .chunks(per_block)
        .enumerate()
        .map(|(b, chunk)| (seed_range(chunk), chunk, b))
        .collect();
    if out.len() > 1 {
        let n = out.len();
        out.push((format!("pooled {}", seed_range(results)), results, n));
    }
    out
}

const UPSTREAM_COLUMNS: [&str; 3] = ["Upstream control", "Upstream emotional", "Upstream d"];

fn columns() -> Vec<String> {
    COMPARISON_COLUMNS
        .iter()
        .chain(UPSTREAM_COLUMNS.iter())
        .map(|s| s.to_string())
        .collect()
}

/// A comparison row with upstream's printed numbers on the block they
/// describe (seeds 0–49), empty cells elsewhere.
fn row(label: &str, seeds: &str, c: &Comparison, m: &MetricSpec, upstream_block: bool) -> Row {
    let mut r = Row::comparison(label, seeds, c);
    let p = m.published.filter(|_| upstream_block);
    let num = |v: Option<f64>| v.map_or(Cell::Empty, |v| Cell::number(v, 3));
    r.cells.push(num(p.and_then(|p| p.control)));
    r.cells.push(num(p.and_then(|p| p.emotional)));
    r.cells.push(num(p.and_then(|p| p.d)));
    r
}

/// Whether the block is the one upstream published (seeds 0–49).
fn is_upstream_block(chunk: &[V3Seed]) -> bool {
    chunk.len() == 50 && chunk.first().map(|s| s.seed) == Some(0)
}

/// Runs the V3 table; returns the run directory.
pub fn reproduce_v3(args: &ReproduceArgs) -> Result<PathBuf> {
    let o = &args.options;
    let run = open_run(args)?;
    let start = Instant::now();
    let seeds = seeds_to_run(o, args.block);
    let pb = progress((V3_EXPERIMENTS.len() * seeds.len()) as u64, "seeds");
    let mut outcomes = Vec::new();
    for exp in &V3_EXPERIMENTS {
        pb.set_message(format!("Exp {} {}", exp.number, exp.title));
        let arms = (exp.arms)()?;
        let configs: Vec<QLearnerConfig> = arms.iter().map(|(_, c)| c.clone()).collect();
        outcomes.push(run_arms(&run, exp, &configs, false, &seeds, args, &pb)?);
    }
    pb.finish_and_clear();
    if let Some(done) = block_done(&run, args, &seeds, V3_EXPERIMENTS.len()) {
        return Ok(done);
    }
    let (tables, panels) = build_tables(o, &outcomes)?;
    let markdown = write_tables(&run, &tables)?;
    log_tensorboard(&run, &outcomes, &markdown)?;
    let labels: Vec<_> = V3_EXPERIMENTS
        .iter()
        .map(|e| (e.arms)())
        .collect::<Result<_, _>>()?;
    let figure_panels: Vec<figure::DistributionPanel<'_>> = V3_EXPERIMENTS
        .iter()
        .zip(&panels)
        .zip(&labels)
        .map(|((exp, blocks), arms)| figure::DistributionPanel {
            title: format!("Exp {} {} ({})", exp.number, exp.title, exp.emotion),
            control: arms[0].0,
            treatment: arms[1].0,
            y_label: exp.primary().label.to_string(),
            blocks,
            columns: None,
        })
        .collect();
    let svg = figure::distributions(&figure_panels, &figure::distributions_title(o))?;
    figure::write_figure(&run, "distributions", &svg)?;
    let timing =
        serde_json::json!({ "wall_seconds": start.elapsed().as_secs_f64(), "jobs": args.jobs });
    write_timing(&run, timing, &["wall_seconds"])?;
    crate::summary::print_result(&tables[0].to_markdown());
    eprintln!(
        "reproduced {} ({} seeds x {} experiments) in {:.2}s",
        o.table,
        seeds.len(),
        V3_EXPERIMENTS.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(run.path().to_path_buf())
}

/// The headline table (each experiment's primary metric, Holm-corrected
/// over the six experiments per block), then one table per experiment
/// with every metric; and the primary metric's blocks for the figure.
fn build_tables(
    o: &ReproduceOptions,
    outcomes: &[Vec<V3Seed>],
) -> Result<(Vec<Table>, Vec<Vec<Block>>)> {
    let mut headline = Table::new(
        format!(
            "Emotional-ED V3 fair tests — headline metrics, {} seeds per block, {} block(s), rng {}, {} permutations",
            o.seeds, o.blocks, o.rng, o.permutations
        ),
        columns(),
    );
    let mut per_exp = Vec::new();
    let mut panels = Vec::new();
    // Per block (and pooled): the six headline comparisons, for Holm.
    let mut by_block: Vec<Vec<(usize, Comparison)>> = Vec::new();
    for (e, (exp, results)) in V3_EXPERIMENTS.iter().zip(outcomes).enumerate() {
        let arms = (exp.arms)()?;
        let mut table = Table::new(
            format!(
                "Exp {} {} ({}): {} vs {}",
                exp.number, exp.title, exp.emotion, arms[0].0, arms[1].0
            ),
            columns(),
        );
        let mut blocks = Vec::new();
        for (m, spec) in exp.metrics.iter().enumerate() {
            for (label, chunk, b) in blocks_and_pool(results, o.seeds) {
                let control = column(chunk, 0, m);
                let treatment = column(chunk, 1, m);
                let mut rng = permutation_rng(o, exp, m, b);
                let c = compare(&control, &treatment, &mut rng, o.permutations)
                    .with_context(|| format!("statistics of '{}' {}", exp.id, spec.name))?;
                let up = is_upstream_block(chunk);
                table.push_row(row(spec.label, &label, &c, spec, up))?;
                if m == 0 {
                    let name = format!("Exp {} {}: {}", exp.number, exp.title, spec.label);
                    headline.push_row(row(&name, &label, &c, spec, up))?;
                    if by_block.len() <= b {
                        by_block.resize_with(b + 1, Vec::new);
                    }
                    by_block[b].push((e, c.clone()));
                    if !label.starts_with("pooled") {
                        blocks.push(Block {
                            label: label.clone(),
                            control,
                            treatment,
                            p: c.permutation_p,
                            d: c.cohens_d,
                        });
                    }
                }
            }
        }
        table.note(format!(
            "Student's t (upstream's test) and Cohen's d as upstream computes them are in table.json (`student_t`, `student_p`, `cohens_d`); d > 0 means the emotional arm ({}) is higher. Upstream's columns are its printed results (seeds 0–49).",
            arms[1].0
        ));
        per_exp.push(table);
        panels.push(blocks);
    }
    for (b, comps) in by_block.iter().enumerate() {
        let ps: Vec<f64> = comps.iter().map(|(_, c)| c.welch_p).collect();
        let adjusted = holm(&ps);
        let label = blocks_and_pool(&outcomes[0], o.seeds)
            .get(b)
            .map_or(String::new(), |x| x.0.clone());
        let parts: Vec<String> = comps
            .iter()
            .zip(&adjusted)
            .map(|((e, c), p)| {
                let exp = &V3_EXPERIMENTS[*e];
                let better = (c.cohens_d > 0.0) == exp.primary().higher_is_better;
                let verdict = match (*p < 0.05, better) {
                    (true, true) => "emotion better",
                    (true, false) => "emotion WORSE",
                    (false, _) => "no significant difference",
                };
                format!(
                    "Exp {} d {} (Holm p {}): {verdict}",
                    exp.number,
                    format_number(c.cohens_d, 2),
                    p_text(*p)
                )
            })
            .collect();
        headline.note(format!("Seeds {label}: {}.", parts.join("; ")));
    }
    headline.note(format!(
        "p (perm.) is a {}-permutation test; Holm's correction runs over the Welch p-values of the six headline tests of each block. Upstream's columns are its printed results for seeds 0–49; with --rng numpy our seeds 0–49 reproduce its per-seed values bit for bit, so its t and d follow exactly (Student's t, table.json `student_t`). d > 0: the emotional arm's value is higher (for crash rate, recovery time and hits, lower is better).",
        o.permutations
    ));
    let mut tables = vec![headline];
    tables.extend(per_exp);
    Ok((tables, panels))
}

/// TensorBoard: each experiment's headline metric per seed (step = seed)
/// for both arms, their histograms, and the tables as text.
fn log_tensorboard(run: &RunDir, outcomes: &[Vec<V3Seed>], markdown: &str) -> Result<()> {
    let mut tb = fresh_event_writer(run)?;
    for (exp, results) in V3_EXPERIMENTS.iter().zip(outcomes) {
        let arms = (exp.arms)()?;
        for (a, (label, _)) in arms.iter().enumerate() {
            let tag = format!("{}/{}/{}", exp.id, exp.primary().name, label);
            for s in results {
                let step = i64::try_from(s.seed).unwrap_or(i64::MAX);
                tb.add_scalar(&tag, s.values[a][0], step)?;
            }
            tb.add_histogram(&format!("histograms/{tag}"), &column(results, a, 0), 0)?;
        }
    }
    tb.add_text("table", markdown, 0)?;
    Ok(())
}
