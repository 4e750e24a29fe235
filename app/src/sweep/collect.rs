//! A sweep's numbers: each run's metrics read from its `metrics.jsonl`,
//! and the table (mean and CI per cell; paired comparisons with the
//! control, Holm-corrected) and figure built from all of them.

use super::spec::{value_text, Cell, Metric, Plan};
use anyhow::{anyhow, bail, Context, Result};
use emorl_stats::{Cell as TableCell, Row, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What a finished run stores (`results/<cell>/seed-<n>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub cell: String,
    pub seed: u64,
    /// Metric name → value.
    pub metrics: BTreeMap<String, f64>,
}

/// The sweep's metrics of the finished run in `run_dir`.
pub fn run_metrics(run_dir: &Path, metrics: &[Metric]) -> Result<BTreeMap<String, f64>> {
    let path = run_dir.join(emorl_log::METRICS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut series: BTreeMap<&str, Vec<f64>> = metrics
        .iter()
        .map(|m| (m.key.as_str(), Vec::new()))
        .collect();
    let mut seen_keys = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON record", path.display(), n + 1))?;
        for (k, v) in &record {
            if let (Some(s), Some(x)) = (series.get_mut(k.as_str()), v.as_f64()) {
                if x.is_finite() {
                    s.push(x);
                }
            }
            if seen_keys.len() < 200 {
                seen_keys.insert(k.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for m in metrics {
        let values = &series[m.key.as_str()];
        if values.is_empty() {
            let known: Vec<&str> = seen_keys
                .iter()
                .map(String::as_str)
                .filter(|k| *k != "step" && *k != "wall_time")
                .collect();
            bail!(
                "metric {}: no finite value of {:?} in {} (keys there: {})",
                m.name,
                m.key,
                path.display(),
                known.join(", ")
            );
        }
        out.insert(m.name.clone(), m.reduce.apply(values));
    }
    Ok(out)
}

/// The sweep's metrics of the finished `reproduce` run in `run_dir`: each
/// the number in column `key` of the first row (of any of its tables)
/// whose first cells are `row`.
pub fn table_metrics(run_dir: &Path, metrics: &[Metric]) -> Result<BTreeMap<String, f64>> {
    let path = run_dir.join("table.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tables: Vec<Table> = match serde_json::from_str::<Vec<Table>>(&text) {
        Ok(t) => t,
        Err(_) => vec![serde_json::from_str::<Table>(&text)
            .with_context(|| format!("{} is not a table", path.display()))?],
    };
    let mut out = BTreeMap::new();
    for m in metrics {
        let found = tables.iter().find_map(|t| {
            let col = t.columns.iter().position(|c| c == &m.key)?;
            let row = t.rows.iter().find(|r| {
                r.cells.len() >= m.row.len()
                    && r.cells
                        .iter()
                        .zip(&m.row)
                        .all(|(c, want)| c.render() == *want)
            })?;
            Some(row.cells.get(col)?.render())
        });
        let Some(text) = found else {
            let columns: Vec<&str> = tables
                .iter()
                .flat_map(|t| t.columns.iter().map(String::as_str))
                .collect();
            bail!(
                "metric {}: no row starting {:?} with a column {:?} in {} (columns there: {})",
                m.name,
                m.row,
                m.key,
                path.display(),
                columns.join(", ")
            );
        };
        let value: f64 = text.trim().parse().map_err(|_| {
            anyhow!(
                "metric {}: {:?} in {} is not a number",
                m.name,
                text,
                path.display()
            )
        })?;
        out.insert(m.name.clone(), value);
    }
    Ok(out)
}

/// Every cell's values per metric, in seed order; an error naming the
/// first run without a result.
fn load(dir: &Path, plan: &Plan) -> Result<BTreeMap<String, BTreeMap<String, Vec<f64>>>> {
    let runs = plan.runs();
    let missing: Vec<_> = runs
        .iter()
        .filter(|r| !dir.join(super::result_rel(r)).exists())
        .collect();
    if let Some(first) = missing.first() {
        bail!(
            "{} of {} runs have no result yet (first: {}, seed {}); run the sweep again, or wait for its array, then collect",
            missing.len(),
            runs.len(),
            first.cell.label(),
            first.seed
        );
    }
    let mut values: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for run in &runs {
        let path = dir.join(super::result_rel(run));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let r: RunResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        if r.cell != run.cell.id || r.seed != run.seed {
            bail!("{} holds cell {} seed {}", path.display(), r.cell, r.seed);
        }
        for m in &plan.metrics {
            let v = r
                .metrics
                .get(&m.name)
                .ok_or_else(|| anyhow!("{} has no metric {}", path.display(), m.name))?;
            values
                .entry(run.cell.id.clone())
                .or_default()
                .entry(m.name.clone())
                .or_default()
                .push(*v);
        }
    }
    Ok(values)
}

/// A cell's short label for figure columns: its axis values.
fn short_label(cell: &Cell) -> String {
    if cell.settings.is_empty() {
        return "(base)".into();
    }
    cell.settings
        .iter()
        .map(|(_, v)| value_text(v))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Builds `table.md`, `table.json` and `figure.svg`/`.png` in the sweep
/// directory from every run's result; the markdown.
pub fn write(dir: &emorl_log::RunDir, plan: &Plan) -> Result<String> {
    let values = load(dir.path(), plan)?;
    let table = table(plan, &values)?;
    let markdown = table.to_markdown();
    let panels: Vec<crate::reproduce::figure::ValuesPanel> = plan
        .metrics
        .iter()
        .map(|m| crate::reproduce::figure::ValuesPanel {
            title: format!("{} ({} of {})", m.name, reduce_name(m), m.key),
            columns: plan
                .cells
                .iter()
                .map(|c| {
                    let control = plan.control_of(c).is_some_and(|k| k.id == c.id);
                    (short_label(c), values[&c.id][&m.name].clone(), control)
                })
                .collect(),
        })
        .collect();
    let heading = format!(
        "Sweep {}: {} ({} seeds per cell; dots: seeds, bars: mean and 95% CI)",
        plan.name,
        if plan.axes.is_empty() {
            "one cell".to_string()
        } else {
            plan.axes.join(" / ")
        },
        plan.seeds.len()
    );
    let svg = crate::reproduce::figure::values(&panels, &heading)?;
    crate::reproduce::figure::write_figure(dir, "figure", &svg)?;
    dir.write_atomic("table.json", table.to_json()?.as_bytes())?;
    dir.write_atomic("table.md", markdown.as_bytes())?;
    Ok(markdown)
}

fn reduce_name(m: &Metric) -> &'static str {
    if !m.row.is_empty() {
        return "table value";
    }
    match m.reduce {
        super::spec::Reduce::Last => "last value",
        super::spec::Reduce::Mean => "mean",
        super::spec::Reduce::Tail => "mean of the last tenth",
        super::spec::Reduce::Max => "maximum",
        super::spec::Reduce::Min => "minimum",
    }
}

fn table(plan: &Plan, values: &BTreeMap<String, BTreeMap<String, Vec<f64>>>) -> Result<Table> {
    let mut columns: Vec<String> = plan.axes.clone();
    if columns.is_empty() {
        columns.push("cell".into());
    }
    columns.push("seeds".into());
    for m in &plan.metrics {
        columns.push(format!("{} mean", m.name));
        columns.push(format!("{} CI low", m.name));
        columns.push(format!("{} CI high", m.name));
        if plan.control.is_some() {
            columns.push(format!("{} Δ vs control", m.name));
            columns.push(format!("{} d_z", m.name));
            columns.push(format!("{} p (Holm)", m.name));
        }
    }
    let mut t = Table::new(
        format!("Sweep {}", plan.name),
        columns.iter().map(String::as_str),
    );

    // Paired comparisons with the control, p-values Holm-corrected together.
    let mut comparisons: Vec<(String, String, emorl_stats::PairedComparison)> = Vec::new();
    let mut failed = Vec::new();
    for cell in &plan.cells {
        let Some(control) = plan.control_of(cell) else {
            continue;
        };
        if control.id == cell.id {
            continue;
        }
        for m in &plan.metrics {
            let c = &values[&control.id][&m.name];
            let x = &values[&cell.id][&m.name];
            match emorl_stats::paired_compare(c, x) {
                Ok(pc) if pc.p.is_finite() => {
                    comparisons.push((cell.id.clone(), m.name.clone(), pc))
                }
                Ok(_) | Err(_) => failed.push(format!("{} ({})", cell.label(), m.name)),
            }
        }
    }
    let holm = emorl_stats::holm(&comparisons.iter().map(|(_, _, c)| c.p).collect::<Vec<_>>());
    let find = |cell: &str, metric: &str| {
        comparisons
            .iter()
            .zip(&holm)
            .find(|((c, m, _), _)| c == cell && m == metric)
            .map(|((_, _, pc), p)| (pc, *p))
    };

    for cell in &plan.cells {
        let mut row: Vec<TableCell> = if plan.axes.is_empty() {
            vec![TableCell::text("(base)")]
        } else {
            plan.axes
                .iter()
                .map(|k| TableCell::text(cell.get(k).map(value_text).unwrap_or_default()))
                .collect()
        };
        row.push(TableCell::Integer(plan.seeds.len() as i64));
        let is_control = plan.control_of(cell).is_some_and(|k| k.id == cell.id);
        for m in &plan.metrics {
            let s = emorl_stats::ArmSummary::of(&values[&cell.id][&m.name]);
            row.push(TableCell::number(s.mean, 4));
            row.push(TableCell::number(s.ci_low, 4));
            row.push(TableCell::number(s.ci_high, 4));
            if plan.control.is_some() {
                match (is_control, find(&cell.id, &m.name)) {
                    (true, _) => {
                        row.push(TableCell::text("control"));
                        row.push(TableCell::Empty);
                        row.push(TableCell::Empty);
                    }
                    (false, Some((pc, p))) => {
                        row.push(TableCell::number(pc.mean_diff, 4));
                        row.push(TableCell::number(pc.d_z, 3));
                        row.push(TableCell::number(p, 6));
                    }
                    (false, None) => {
                        row.push(TableCell::text("–"));
                        row.push(TableCell::Empty);
                        row.push(TableCell::Empty);
                    }
                }
            }
        }
        t.push_row(Row::new(row))?;
    }

    let n = plan.seeds.len();
    let metrics: Vec<String> = plan
        .metrics
        .iter()
        .map(|m| format!("{} = {} of `{}`", m.name, reduce_name(m), m.key))
        .collect();
    t.note(format!(
        "{} cells × {n} seeds ({}); each run is `emorl train --config cells/<cell>.toml --seed S` \
         (runs/<cell>/seed-S holds its config, metrics and TensorBoard files). Metrics: {}. \
         CI: mean ± 2 standard errors (1.96 above 30 seeds).",
        plan.cells.len(),
        seed_text(&plan.seeds),
        metrics.join("; ")
    ));
    if let Some(control) = &plan.control {
        let named: Vec<String> = control
            .iter()
            .map(|(k, v)| format!("{k} = {}", value_text(v)))
            .collect();
        t.note(format!(
            "Control: {}; every other cell is compared with the control cell that shares its \
             other axis values, paired by seed: Δ = cell − control, paired t-test, d_z = mean Δ / \
             sd Δ; p-values Holm-corrected over all {} comparisons. With {n} paired seeds a \
             two-sided test at α = 0.05 has 80% power for |d_z| ≥ {:.2}.",
            named.join(", "),
            comparisons.len(),
            emorl_stats::min_detectable_dz(n, 0.05, 0.8)
        ));
    }
    if !failed.is_empty() {
        t.note(format!(
            "No test (no variation in the differences): {}.",
            failed.join("; ")
        ));
    }
    Ok(t)
}

/// `0–19` for consecutive seeds, else the list.
fn seed_text(seeds: &[u64]) -> String {
    let consecutive = seeds.windows(2).all(|w| w[1] == w[0] + 1);
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if consecutive && seeds.len() > 2 => format!("seeds {a}–{b}"),
        _ => format!(
            "seeds {}",
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
