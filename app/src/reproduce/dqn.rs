//! `emorl reproduce v2-dqn`: Exp 16b and Exp 18 for the baseline DQN, the
//! coupled fear-DQNs upstream measured and the decoupled `fear-dqn`.

use super::common::{
    block_done, fresh_event_writer, open_run, seed_options, seeds_to_run, write_timing,
    ReproduceArgs,
};
use super::figure::{self, Curve, CurvePanel};
use crate::config;
use crate::progress::{progress, step_done};
use anyhow::{bail, Context, Result};
use emorl_agents_dqn::protocol::{
    cliff_seed, coupled_grid_seed, CliffSeed, CliffSettings, CoupledGridSeed, CoupledGridSettings,
};
use emorl_agents_dqn::DqnConfig;
use emorl_core::numeric::{mean, std_dev};
use emorl_core::EmoRng;
use emorl_log::RunDir;
use emorl_stats::{compare, Comparison, Table};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;
use toml::Table as TomlTable;

/// The experiment file, embedded so the binary runs anywhere.
pub const V2_DQN: &str = include_str!("../../../configs/v2/dqn.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DqnExperiments {
    control: String,
    exp16b: Section<CoupledGridSettings>,
    exp18: Section<CliffSettings>,
    #[serde(default)]
    agents: TomlTable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section<S> {
    treatments: Vec<String>,
    settings: S,
}

/// One arm: a registered agent with its resolved hyperparameters.
struct Arm {
    id: String,
    config: DqnConfig,
}

fn resolve_arm(id: &str, overrides: &TomlTable) -> Result<Arm> {
    let make = emorl_agents_dqn::registry()
        .get(id)
        .map(|e| e.make)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut table = TomlTable::try_from(make()).context("agent defaults")?;
    if let Some(toml::Value::Table(over)) = overrides.get(id) {
        config::merge(&mut table, over.clone());
    }
    let config: DqnConfig = config::from_table(&format!("agents.{id}"), table)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("agents.{id}: {e}"))?;
    Ok(Arm {
        id: id.to_string(),
        config,
    })
}

fn arms(control: &str, treatments: &[String], overrides: &TomlTable) -> Result<Vec<Arm>> {
    std::iter::once(control)
        .chain(treatments.iter().map(String::as_str))
        .map(|id| resolve_arm(id, overrides))
        .collect()
}

/// Runs every arm of one experiment over the seeds, storing each seed's
/// result under `seeds/<experiment>/<arm>/` (a rerun loads it) and the
/// seconds each arm took.
struct ArmRunner<'a> {
    seeds: &'a [u64],
    jobs: usize,
    seeds_dir: &'a Path,
    stored_under: &'a serde_json::Value,
    pb: &'a crate::progress::Bar,
    tick: &'a (dyn Fn(emorl_stats::SeedDone) + Sync),
}

impl ArmRunner<'_> {
    /// `settings`: the experiment's resolved settings, stored with each seed
    /// beside the options and the arm's configuration, so that a seed
    /// computed under other settings, hyperparameters or backend is never
    /// reused.
    #[allow(clippy::too_many_arguments)]
    fn run<T, E>(
        &self,
        experiment: &str,
        title: &str,
        arms: &[Arm],
        settings: &impl serde::Serialize,
        arm_seconds: &mut serde_json::Map<String, serde_json::Value>,
        one: impl Fn(u64, &Arm) -> std::result::Result<T, E> + Sync,
    ) -> Result<Vec<Vec<T>>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        E: Into<emorl_stats::runner::JobError>,
    {
        let mut out = Vec::with_capacity(arms.len());
        for arm in arms {
            let t0 = Instant::now();
            self.pb.set_message(format!("{title} {}", arm.id));
            let store = self.seeds_dir.join(experiment).join(&arm.id);
            let stored_under = serde_json::json!({
                "options": self.stored_under,
                "settings": settings,
                "agent": arm.config,
            });
            out.push(
                emorl_stats::run_seeds(
                    self.seeds,
                    self.jobs,
                    Some(emorl_stats::SeedStore {
                        dir: &store,
                        options: &stored_under,
                    }),
                    self.tick,
                    |seed| one(seed, arm),
                )
                .with_context(|| format!("{title}, agent '{}'", arm.id))?,
            );
            arm_seconds.insert(
                format!("{experiment}/{}", arm.id),
                t0.elapsed().as_secs_f64().into(),
            );
        }
        Ok(out)
    }
}

/// Per-seed values of one metric, one vector per arm (arm order).
struct Metric {
    name: &'static str,
    description: &'static str,
    higher_is_better: bool,
    values: Vec<Vec<f64>>,
}

/// Runs the reproduction; returns the run directory.
pub fn reproduce_dqn(args: &ReproduceArgs) -> Result<std::path::PathBuf> {
    let o = &args.options;
    const ORIGIN: &str = "configs/v2/dqn.toml";
    let mut table = config::parse_table(ORIGIN, V2_DQN)?;
    if let Some(p) = args.config.as_deref() {
        config::merge(&mut table, config::read_table(p)?);
    }
    let origin = args
        .config
        .as_deref()
        .map_or(ORIGIN.to_string(), |p| p.display().to_string());
    let resolved = toml::to_string(&table).context("v2-dqn experiment")?;
    let spec: DqnExperiments = config::from_table(&origin, table)?;
    let mut s16 = spec.exp16b.settings.clone();
    let mut s18 = spec.exp18.settings.clone();
    s16.rng = o.rng;
    s18.rng = o.rng;
    if let Some(n) = o.episodes {
        if n == 0 {
            bail!("--episodes must be at least 1");
        }
        s16.episodes = n;
        s16.final_window = s16.final_window.min(n);
        s18.train_episodes = n;
        s18.eval_episodes = s18.eval_episodes.min(n.max(10));
    }
    let arms16 = arms(&spec.control, &spec.exp16b.treatments, &spec.agents)?;
    let arms18 = arms(&spec.control, &spec.exp18.treatments, &spec.agents)?;
    let run = open_run(args)?;
    run.write_atomic(Path::new("experiment.toml"), resolved.as_bytes())?;
    // Blocks pool: the table covers seeds × blocks seeds from the offset.
    let seeds = seeds_to_run(o, args.block);
    let start = Instant::now();
    let total = (arms16.len() + arms18.len()) * seeds.len();
    let pb = progress(total as u64, "seed runs");
    let tick = |d: emorl_stats::SeedDone| step_done(&pb, d.loaded);
    let stored_under = seed_options(o)?;
    let mut arm_seconds = serde_json::Map::new();
    let ctx = ArmRunner {
        seeds: &seeds,
        jobs: args.jobs,
        seeds_dir: &run.path().join("seeds"),
        stored_under: &stored_under,
        pb: &pb,
        tick: &tick,
    };
    let r16 = ctx.run(
        "exp16b",
        "Exp 16b",
        &arms16,
        &s16,
        &mut arm_seconds,
        |seed, arm| coupled_grid_seed(seed, &arm.config, &s16),
    )?;
    let r18 = ctx.run(
        "exp18",
        "Exp 18",
        &arms18,
        &s18,
        &mut arm_seconds,
        |seed, arm| cliff_seed(seed, &arm.config, &s18),
    )?;
    pb.finish_and_clear();
    if let Some(done) = block_done(&run, args, &seeds, 2) {
        return Ok(done);
    }

    let pick16 = |f: fn(&CoupledGridSeed) -> f64| -> Vec<Vec<f64>> {
        r16.iter().map(|a| a.iter().map(f).collect()).collect()
    };
    let pick18 = |f: fn(&CliffSeed) -> f64| -> Vec<Vec<f64>> {
        r18.iter().map(|a| a.iter().map(f).collect()).collect()
    };
    let metrics16 = vec![
        Metric {
            name: "episodes to threat criterion",
            description: "first episode whose previous 20 have mean min threat distance ≥ 1.5 (run length when never)",
            higher_is_better: false,
            values: pick16(|s| s.episodes_to_threat_criterion as f64),
        },
        Metric {
            name: "episodes to reward criterion",
            description: "first episode whose previous 20 have mean return ≥ 0.5 (run length when never)",
            higher_is_better: false,
            values: pick16(|s| s.episodes_to_reward_criterion as f64),
        },
        Metric {
            name: "final reward",
            description: "mean return of the last 50 episodes",
            higher_is_better: true,
            values: pick16(|s| s.final_reward),
        },
        Metric {
            name: "final threat distance",
            description: "mean min threat distance of the last 50 episodes",
            higher_is_better: true,
            values: pick16(|s| s.final_threat_distance),
        },
        Metric {
            name: "threat hits",
            description: "episodes that ended on the threat, of all",
            higher_is_better: false,
            values: pick16(|s| s.threat_hits as f64),
        },
    ];
    let metrics18 = vec![
        Metric {
            name: "survival rate",
            description: "greedy evaluation episodes without a fall",
            higher_is_better: true,
            values: pick18(|s| s.survival_rate),
        },
        Metric {
            name: "goal rate",
            description: "greedy evaluation episodes that reached the goal",
            higher_is_better: true,
            values: pick18(|s| s.goal_rate),
        },
        Metric {
            name: "mean reward",
            description: "mean evaluation return",
            higher_is_better: true,
            values: pick18(|s| s.mean_reward),
        },
        Metric {
            name: "episodes to 70% survival",
            description:
                "first training episode whose previous 50 survived ≥ 70% (run length when never)",
            higher_is_better: false,
            values: pick18(|s| s.episodes_to_survival_criterion as f64),
        },
    ];
    let ids16: Vec<&str> = arms16.iter().map(|a| a.id.as_str()).collect();
    let ids18: Vec<&str> = arms18.iter().map(|a| a.id.as_str()).collect();
    let mut perm_rng = EmoRng::new(o.rng, o.seed_offset);
    let mut table = Table::comparisons(format!(
        "Emotional-ED V2 DQN experiments — {} seeds ({}–{}), rng {}, {} permutations; control: {}",
        seeds.len(),
        o.seed_offset,
        o.seed_offset + seeds.len() as u64 - 1,
        o.rng,
        o.permutations,
        spec.control
    ));
    let mut verdicts = Vec::new();
    for (exp, ids, metrics) in [("16b", &ids16, &metrics16), ("18", &ids18, &metrics18)] {
        for (i, label, ctrl) in comparisons(ids) {
            let mut results = Vec::new();
            for m in metrics.iter() {
                let c = compare(&m.values[ctrl], &m.values[i], &mut perm_rng, o.permutations)
                    .with_context(|| format!("statistics of Exp {exp} {}", m.name))?;
                table.push_comparison(&format!("Exp {exp} {}", m.name), &label, &c)?;
                results.push((m, c));
            }
            verdicts.push(verdict(exp, &label, &results));
        }
    }
    let variances: Vec<String> = ids18
        .iter()
        .zip(&metrics18[2].values)
        .map(|(id, v)| format!("{id} {:.1}", std_dev(v, 0).powi(2)))
        .collect();
    table.note(format!(
        "Exp 18 variance of the per-seed mean evaluation reward across seeds (ddof 0): {}.",
        variances.join(", ")
    ));
    let hits: Vec<String> = ids16
        .iter()
        .zip(&metrics16[4].values)
        .map(|(id, v)| format!("{id} {:.0}", v.iter().sum::<f64>()))
        .collect();
    table.note(format!(
        "Exp 16b episodes ending on the threat, all seeds: {} (of {} each).",
        hits.join(", "),
        s16.episodes * seeds.len()
    ));
    for v in verdicts {
        table.note(v);
    }
    table.note(format!(
        "Definitions — {}.",
        metrics16
            .iter()
            .map(|m| format!("16b {}: {}", m.name, m.description))
            .chain(
                metrics18
                    .iter()
                    .map(|m| format!("18 {}: {}", m.name, m.description))
            )
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let markdown = table.to_markdown();
    run.write_atomic(Path::new("table.json"), table.to_json()?.as_bytes())?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    let panels = vec![
        curve_panel(
            "Exp 16b: episode return (10-episode moving mean; band: 95% CI over seeds)",
            "return",
            (f64::NEG_INFINITY, 1.0),
            &ids16,
            r16.iter()
                .map(|a| a.iter().map(|s| s.rewards.clone()).collect())
                .collect(),
        ),
        curve_panel(
            "Exp 16b: minimum threat distance per episode",
            "min. threat distance",
            (0.0, f64::INFINITY),
            &ids16,
            r16.iter()
                .map(|a| a.iter().map(|s| s.min_threat_distance.clone()).collect())
                .collect(),
        ),
        curve_panel(
            "Exp 18: training survival (no fall) per episode",
            "survival rate",
            (0.0, 1.0),
            &ids18,
            r18.iter()
                .map(|a| a.iter().map(|s| s.training_survival.clone()).collect())
                .collect(),
        ),
    ];
    figure::write_figure(&run, "learning_curves", &figure::learning_curves(&panels)?)?;
    log_tensorboard(&run, &panels, &markdown)?;
    let wall = start.elapsed().as_secs_f64();
    // Per-arm times cover only seeds run now (a resumed run loads the rest).
    let timing = serde_json::json!({
        "wall_seconds": wall,
        "jobs": args.jobs,
        "arm_seconds": arm_seconds,
    });
    write_timing(&run, timing, &["wall_seconds", "arm_seconds"])?;
    crate::summary::print_result(&markdown);
    eprintln!(
        "reproduced v2-dqn ({} seeds x {} agent runs) in {wall:.1}s",
        seeds.len(),
        arms16.len() + arms18.len()
    );
    Ok(run.path().to_path_buf())
}

/// (treatment index, label, control index): every treatment against the
/// control, then the decoupled design against the coupled one.
fn comparisons(ids: &[&str]) -> Vec<(usize, String, usize)> {
    let mut out: Vec<(usize, String, usize)> = (1..ids.len())
        .map(|i| (i, format!("{} vs {}", ids[i], ids[0]), 0))
        .collect();
    if ids.len() == 3 {
        out.push((2, format!("{} vs {}", ids[2], ids[1]), 1));
    }
    out
}

/// One line per comparison: the metrics where the first arm is significantly
/// better, significantly worse, or not different.
fn verdict(exp: &str, label: &str, results: &[(&Metric, Comparison)]) -> String {
    let (mut better, mut worse, mut same) = (Vec::new(), Vec::new(), Vec::new());
    for (m, c) in results {
        let text = format!(
            "{} ({:.3} vs {:.3}, p = {:.3}, d = {:.2})",
            m.name,
            c.treatment.mean,
            c.control.mean,
            c.p_value(),
            c.cohens_d
        );
        if !c.significant {
            same.push(m.name.to_string());
        } else if (c.treatment.mean > c.control.mean) == m.higher_is_better {
            better.push(text);
        } else {
            worse.push(text);
        }
    }
    let part = |what: &str, v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" {what}: {}.", v.join("; "))
        }
    };
    format!(
        "**Exp {exp}, {label}** —{}{}{}",
        part("significantly worse on", &worse),
        part("significantly better on", &better),
        part("no significant difference on", &same)
    )
}

/// Mean ± 95% CI over seeds of a per-episode series, smoothed by a moving mean.
fn curve_panel(
    title: &str,
    y_label: &str,
    range: (f64, f64),
    ids: &[&str],
    per_arm: Vec<Vec<Vec<f64>>>,
) -> CurvePanel {
    const SMOOTH: usize = 10;
    let curves = ids
        .iter()
        .zip(per_arm)
        .map(|(id, seeds)| {
            let len = seeds.iter().map(Vec::len).min().unwrap_or(0);
            let smoothed: Vec<Vec<f64>> = seeds
                .iter()
                .map(|s| {
                    (0..len)
                        .map(|e| mean(&s[e.saturating_sub(SMOOTH - 1)..=e]))
                        .collect()
                })
                .collect();
            let n = smoothed.len().max(1) as f64;
            let (mut m, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
            for e in 0..len {
                let col: Vec<f64> = smoothed.iter().map(|s| s[e]).collect();
                let mu = mean(&col);
                let half = if col.len() > 1 {
                    emorl_stats::stats::ci_multiplier(col.len()) * std_dev(&col, 1) / n.sqrt()
                } else {
                    0.0
                };
                m.push(mu);
                lo.push(mu - half);
                hi.push(mu + half);
            }
            Curve {
                label: id.to_string(),
                mean: m,
                low: lo,
                high: hi,
            }
        })
        .collect();
    CurvePanel {
        title: title.to_string(),
        x_label: "episode".into(),
        y_label: y_label.to_string(),
        range,
        curves,
    }
}

fn log_tensorboard(run: &RunDir, panels: &[CurvePanel], markdown: &str) -> Result<()> {
    let mut tb = fresh_event_writer(run)?;
    let tags = [
        "exp16b/return",
        "exp16b/min_threat_distance",
        "exp18/training_survival",
    ];
    for (panel, tag) in panels.iter().zip(tags) {
        for c in &panel.curves {
            for (e, v) in c.mean.iter().enumerate() {
                tb.add_scalar(&format!("{tag}/{}", c.label), *v, e as i64)?;
            }
        }
    }
    tb.add_text("table", markdown, 0)?;
    Ok(())
}
