//! `emorl reproduce v2-tabular`: the five V2 experiments (tabular
//! Q-learning with and without each emotional channel), bit-exact with
//! upstream under `--rng numpy`.

use super::common::{
    block_done, fresh_event_writer, open_run, seed_options, seeds_to_run, write_timing,
    ReproduceArgs, ReproduceOptions,
};
use super::figure::{self, Block};
use crate::progress::progress;
use anyhow::{Context, Result};
use emorl_agents_tabular::protocol::{Experiment, SeedOutcome};
use emorl_core::EmoRng;
use emorl_log::RunDir;
use emorl_stats::{compare, Comparison, SeedStore, Table};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The V2 experiments, embedded so the binary runs anywhere.
pub const V2_TABULAR: [(&str, &str); 5] = [
    ("fear", include_str!("../../../configs/v2/fear.toml")),
    ("anger", include_str!("../../../configs/v2/anger.toml")),
    ("regret", include_str!("../../../configs/v2/regret.toml")),
    (
        "integration",
        include_str!("../../../configs/v2/integration.toml"),
    ),
    (
        "transfer",
        include_str!("../../../configs/v2/transfer.toml"),
    ),
];

/// Runs the V2 tabular table; returns the run directory.
pub fn reproduce_v2(args: &ReproduceArgs) -> Result<PathBuf> {
    let o = &args.options;
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
    let seeds = seeds_to_run(o, args.block);
    let pb = progress((experiments.len() * seeds.len()) as u64, "seeds");
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
        let tick = |d: emorl_stats::SeedDone| crate::progress::step_done(&pb, d.loaded);
        let results: Vec<SeedOutcome> =
            emorl_stats::run_seeds(&seeds, args.jobs, Some(store), &tick, |seed| {
                exp.run_seed(seed, o.rng, last_of_block(seed))
            })
            .with_context(|| format!("experiment '{}'", exp.name))?;
        outcomes.push(results);
    }
    pb.finish_and_clear();
    if let Some(done) = block_done(&run, args, &seeds, experiments.len()) {
        return Ok(done);
    }
    let (table, blocks) = build_table(o, &experiments, &outcomes)?;
    let markdown = table.to_markdown();
    run.write_atomic(Path::new("table.json"), table.to_json()?.as_bytes())?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    log_tensorboard(&run, &experiments, &outcomes, &markdown)?;
    let panels: Vec<figure::DistributionPanel<'_>> = experiments
        .iter()
        .zip(&blocks)
        .map(|(exp, b)| figure::DistributionPanel {
            title: exp.title.clone(),
            control: &exp.control.label,
            treatment: &exp.treatment.label,
            y_label: exp.metric.axis_label(),
            blocks: b,
            columns: None,
        })
        .collect();
    let svg = figure::distributions(&panels, &figure::distributions_title(o))?;
    figure::write_figure(&run, "distributions", &svg)?;
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
