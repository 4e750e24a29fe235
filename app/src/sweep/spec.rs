//! Sweep files and the plan they expand to: cells (one per combination of
//! axis values, with a stable ID) × seeds.

use crate::cluster::SlurmOptions;
use crate::config;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Most cells × seeds a sweep may hold.
pub const MAX_RUNS: usize = 100_000;

/// A sweep file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    /// Name (default: the file's stem).
    name: Option<String>,
    /// A training config (`emorl train --config`), relative to the sweep file.
    base: Option<PathBuf>,
    /// Or a `reproduce` table: each run is that table (its `--config` the
    /// cell's settings), its metrics read from the table.
    reproduce: Option<String>,
    /// `reproduce` options every run takes (`seeds`, `episodes`, `blocks`,
    /// `rng`, `permutations`, `agents`, `model`).
    #[serde(default)]
    options: BTreeMap<String, Value>,
    /// Settings merged over `base` (or the whole training config).
    #[serde(default)]
    config: Table,
    /// Override key (`agent`, `agent_config.lr`, ...) → the values it takes.
    #[serde(default)]
    axes: BTreeMap<String, Vec<Value>>,
    /// `"START..END"` (END excluded) or a list of seeds.
    seeds: Value,
    /// What to collect from each run (default: the return over the last
    /// tenth of training).
    #[serde(default)]
    metrics: Vec<Metric>,
    /// Axis values of the control arm: every other cell is compared with
    /// the cell that shares its remaining axis values.
    control: Option<BTreeMap<String, Value>>,
    /// Slurm settings (flags override them).
    #[serde(default)]
    slurm: SlurmOptions,
}

/// How a metric reduces a run's `metrics.jsonl` series to one number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    /// The last record's value.
    Last,
    /// The mean of every record.
    Mean,
    /// The mean of the last tenth of the records (at least one).
    #[default]
    Tail,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
}

impl Reduce {
    /// `values` (in record order, at least one) reduced.
    pub fn apply(self, values: &[f64]) -> f64 {
        match self {
            Reduce::Last => values[values.len() - 1],
            Reduce::Mean => emorl_core::numeric::mean(values),
            Reduce::Tail => {
                let k = values.len().div_ceil(10).max(1);
                emorl_core::numeric::mean(&values[values.len() - k..])
            }
            Reduce::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Reduce::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// One collected number per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Column name in the table.
    pub name: String,
    /// A key of the run's `metrics.jsonl` (what TensorBoard shows as a tag);
    /// over a `reproduce` table: a column of the table.
    pub key: String,
    #[serde(default)]
    pub reduce: Reduce,
    /// Over a `reproduce` table: the row, by its first cells (e.g.
    /// `["Exp 16b final reward", "fear-dqn vs dqn"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row: Vec<String>,
}

/// The `reproduce` options a sweep over a table may set.
pub const REPRODUCE_OPTIONS: [&str; 7] = [
    "seeds",
    "episodes",
    "blocks",
    "rng",
    "permutations",
    "agents",
    "model",
];

/// A sweep over a `reproduce` table: its ID and the options every run takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproduceBase {
    pub table: String,
    /// `(option, value)` as command-line flags (`--seeds 10`).
    pub options: Vec<(String, String)>,
    /// Seeds per table: run seed `s` computes seeds from `s × this` on.
    pub seeds_per_table: u64,
}

/// One combination of axis values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable ID: a hash of the settings, whatever their order in the file.
    pub id: String,
    /// `(axis key, value)` in axis order.
    pub settings: Vec<(String, Value)>,
}

impl Cell {
    /// `key=value` overrides (values as TOML literals).
    pub fn overrides(&self) -> Vec<String> {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// `key=value, key=value` (strings unquoted), or `(base)` without axes.
    pub fn label(&self) -> String {
        if self.settings.is_empty() {
            return "(base)".into();
        }
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The value of axis `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A value as a table shows it (strings without quotes).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a sweep directory holds: everything a run needs, so that runs on
/// other machines (array tasks) read only the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    /// The training config every cell starts from (base file + `config`);
    /// over a `reproduce` table, the table's `--config` (its `config`).
    pub base: Table,
    /// Set when every run is a `reproduce` table instead of a training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduce: Option<ReproduceBase>,
    /// Axis keys in expansion order (sorted).
    pub axes: Vec<String>,
    pub seeds: Vec<u64>,
    pub metrics: Vec<Metric>,
    /// Axis → control value, if the sweep names a control.
    pub control: Option<BTreeMap<String, Value>>,
    /// Cells in expansion order (the last axis varies fastest).
    pub cells: Vec<Cell>,
}

/// One run: a cell and a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run<'a> {
    pub cell: &'a Cell,
    pub seed: u64,
}

impl Run<'_> {
    /// `<cell id>/seed-<seed>`: where its files go under `runs/` and
    /// `results/`.
    pub fn rel(&self) -> String {
        format!("{}/seed-{}", self.cell.id, self.seed)
    }
}

impl Plan {
    /// Every run, cell-major (the order results and tasks use).
    pub fn runs(&self) -> Vec<Run<'_>> {
        self.cells
            .iter()
            .flat_map(|cell| self.seeds.iter().map(move |&seed| Run { cell, seed }))
            .collect()
    }

    /// The control cell of `cell` (itself when it is one), if the sweep
    /// names a control.
    pub fn control_of(&self, cell: &Cell) -> Option<&Cell> {
        let control = self.control.as_ref()?;
        self.cells.iter().find(|c| {
            c.settings.iter().all(|(k, v)| match control.get(k) {
                Some(cv) => v == cv,
                None => cell.get(k) == Some(v),
            })
        })
    }
}

/// A parsed sweep file: its plan and Slurm settings.
#[derive(Debug)]
pub struct Sweep {
    pub plan: Plan,
    pub slurm: SlurmOptions,
}

/// Reads and expands the sweep file at `path`. Every cell's training
/// config is resolved here, so a bad key or value fails before any run.
pub fn read(path: &Path) -> Result<Sweep> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read sweep file {origin}"))?;
    let file: SweepFile = config::from_table(&origin, config::parse_table(&origin, &text)?)?;
    let name = match file.name {
        Some(n) => n,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into()),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("{origin}: name {name:?}: use letters, digits, '-', '_' and '.'");
    }
    if file.base.is_some() && file.reproduce.is_some() {
        bail!("{origin}: base and reproduce: a sweep runs trainings or a table, not both");
    }
    if file.reproduce.is_none() && !file.options.is_empty() {
        bail!("{origin}: options: only a sweep over a reproduce table takes them");
    }
    let reproduce = match &file.reproduce {
        Some(id) => Some(reproduce_base(&origin, id, &file.options)?),
        None => None,
    };
    let mut base = match &file.base {
        Some(b) => {
            let at = path.parent().unwrap_or(Path::new(".")).join(b);
            config::read_table(&at).with_context(|| format!("{origin}: base"))?
        }
        None => Table::new(),
    };
    config::merge(&mut base, file.config);
    let seeds = parse_seeds(&file.seeds).map_err(|e| anyhow!("{origin}: seeds: {e}"))?;
    let metrics = if file.metrics.is_empty() {
        if reproduce.is_some() {
            bail!("{origin}: metrics: a sweep over a reproduce table names its metrics (row and column)");
        }
        vec![Metric {
            name: "return".into(),
            key: "charts/episodic_return".into(),
            reduce: Reduce::Tail,
            row: Vec::new(),
        }]
    } else {
        file.metrics
    };
    for m in &metrics {
        if reproduce.is_some() == m.row.is_empty() {
            bail!(
                "{origin}: metrics: {:?}: {}",
                m.name,
                if m.row.is_empty() {
                    "over a reproduce table, name the row (its first cells) and the column (key)"
                } else {
                    "row applies to sweeps over a reproduce table"
                }
            );
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for m in &metrics {
        if m.name.is_empty() || m.key.is_empty() || !names.insert(m.name.as_str()) {
            bail!(
                "{origin}: metrics: {:?} (names must be given and distinct, keys given)",
                m.name
            );
        }
    }
    for (key, values) in &file.axes {
        if values.is_empty() {
            bail!("{origin}: axes.{key}: no values");
        }
        if let Some(v) = values
            .iter()
            .find(|v| matches!(v, Value::Array(_) | Value::Table(_)))
        {
            bail!("{origin}: axes.{key}: {v} is not a single value (string, number or boolean)");
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                bail!("{origin}: axes.{key}: {v} appears twice");
            }
        }
    }
    let axes: Vec<String> = file.axes.keys().cloned().collect();
    let total = file
        .axes
        .values()
        .try_fold(seeds.len(), |n, v| n.checked_mul(v.len()))
        .filter(|&n| n <= MAX_RUNS)
        .ok_or_else(|| anyhow!("{origin}: more than {MAX_RUNS} runs (cells × seeds)"))?;
    tracing::debug!(total, "sweep runs");
    let mut cells = vec![Vec::<(String, Value)>::new()];
    for (key, values) in &file.axes {
        cells = cells
            .into_iter()
            .flat_map(|s| {
                values.iter().map(move |v| {
                    let mut s = s.clone();
                    s.push((key.clone(), v.clone()));
                    s
                })
            })
            .collect();
    }
    let cells: Vec<Cell> = cells
        .into_iter()
        .map(|settings| Cell {
            id: cell_id(&settings),
            settings,
        })
        .collect();
    if let Some(control) = &file.control {
        for (k, v) in control {
            let Some(values) = file.axes.get(k) else {
                bail!("{origin}: control.{k}: not an axis");
            };
            if !values.contains(v) {
                bail!("{origin}: control.{k}: {v} is not one of the axis's values");
            }
        }
        if control.is_empty() {
            bail!("{origin}: control: name at least one axis value");
        }
    }
    if let Some(r) = &reproduce {
        let spec = crate::reproduce::table(&r.table)?;
        if !spec.takes_config && (!base.is_empty() || !file.axes.is_empty()) {
            bail!(
                "{origin}: {} takes no --config: a sweep over it has no config or axes (only seeds)",
                r.table
            );
        }
    }
    for cell in &cells {
        match &reproduce {
            None => {
                crate::train::resolve_table(base.clone(), cell.overrides())
                    .with_context(|| format!("{origin}: cell {}", cell.label()))?;
            }
            Some(_) => {
                reproduce_config(&base, cell)
                    .with_context(|| format!("{origin}: cell {}", cell.label()))?;
            }
        }
    }
    file.slurm
        .validate()
        .with_context(|| format!("{origin}: slurm"))?;
    Ok(Sweep {
        plan: Plan {
            name,
            base,
            reproduce,
            axes,
            seeds,
            metrics,
            control: file.control,
            cells,
        },
        slurm: file.slurm,
    })
}

/// The table and its options, checked: a known table, known options with
/// plain values.
fn reproduce_base(
    origin: &str,
    id: &str,
    options: &BTreeMap<String, Value>,
) -> Result<ReproduceBase> {
    let spec = crate::reproduce::table(id).map_err(|e| anyhow!("{origin}: reproduce: {e}"))?;
    let mut flags = Vec::new();
    for (k, v) in options {
        if !REPRODUCE_OPTIONS.contains(&k.as_str()) {
            bail!(
                "{origin}: options.{k}: not a reproduce option a sweep sets ({})",
                REPRODUCE_OPTIONS.join(", ")
            );
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) if *i >= 0 => i.to_string(),
            other => bail!("{origin}: options.{k}: {other} is not a string or whole number ≥ 0"),
        };
        flags.push((k.clone(), text));
    }
    let seeds_per_table = match options.get("seeds") {
        Some(Value::Integer(i)) => *i as u64,
        Some(other) => bail!("{origin}: options.seeds: {other} is not a whole number"),
        None => spec.default_seeds as u64,
    };
    Ok(ReproduceBase {
        table: spec.id.to_string(),
        options: flags,
        seeds_per_table: seeds_per_table.max(1),
    })
}

/// A cell's `--config` for a sweep over a table: the sweep's `config` with
/// the cell's settings written at their dotted keys.
pub fn reproduce_config(base: &Table, cell: &Cell) -> Result<Table> {
    let mut t = base.clone();
    for (key, value) in &cell.settings {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            bail!("{key}: not a dotted key");
        }
        let mut at = &mut t;
        for p in &parts[..parts.len() - 1] {
            let entry = at
                .entry((*p).to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            at = match entry {
                Value::Table(inner) => inner,
                _ => bail!("{key}: {p} is not a table"),
            };
        }
        at.insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    Ok(t)
}

fn parse_seeds(v: &Value) -> Result<Vec<u64>> {
    let seeds: Vec<u64> = match v {
        Value::String(s) => {
            let (a, b) = s
                .split_once("..")
                .ok_or_else(|| anyhow!("{s:?}: expected \"START..END\" (END excluded)"))?;
            let parse = |x: &str| {
                x.trim()
                    .parse::<u64>()
                    .map_err(|_| anyhow!("{s:?}: {x:?} is not a seed (a whole number ≥ 0)"))
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if b <= a {
                bail!("{s:?} is empty");
            }
            if b - a > MAX_RUNS as u64 {
                bail!("{s:?}: more than {MAX_RUNS} seeds");
            }
            (a..b).collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|x| match x {
                Value::Integer(i) if *i >= 0 => Ok(*i as u64),
                other => Err(anyhow!("{other} is not a seed (a whole number ≥ 0)")),
            })
            .collect::<Result<_>>()?,
        other => bail!("{other}: expected \"START..END\" or a list of seeds"),
    };
    if seeds.is_empty() {
        bail!("no seeds");
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            bail!("seed {s} appears twice");
        }
    }
    Ok(seeds)
}

/// `c` and 8 hex digits of a 64-bit FNV-1a hash of the settings sorted by
/// key (`key=value` lines): the same cell gets the same ID in any sweep,
/// whatever the order of its axes.
pub fn cell_id(settings: &[(String, Value)]) -> String {
    let mut lines: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    lines.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.concat().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("c{:08x}", h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const BASE: &str = "env = \"v2-threat-grid\"\nagent = \"q-learning\"\nepisodes = 5\n";

    #[test]
    fn cells_expand_in_a_fixed_order_with_stable_ids() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "base.toml", BASE);
        let a = write(
            d.path(),
            "a.toml",
            "base = \"base.toml\"\nseeds = \"3..5\"\n[axes]\nagent = [\"q-learning\", \"emotional-ed\"]\n\"agent_config.lr\" = [0.1, 0.2, 0.3]\n",
        );
        // The same axes written in another order.
        let b = write(
            d.path(),
            "b.toml",
            "base = \"base.toml\"\nseeds = [3, 4]\n[axes]\n\"agent_config.lr\" = [0.1, 0.2, 0.3]\nagent = [\"q-learning\", \"emotional-ed\"]\n",
        );
        let pa = read(&a).unwrap().plan;
        let pb = read(&b).unwrap().plan;
        assert_eq!(pa.name, "a");
        assert_eq!(pa.seeds, vec![3, 4]);
        assert_eq!(pa.axes, vec!["agent", "agent_config.lr"]);
        assert_eq!(pa.cells.len(), 6);
        assert_eq!(pa.cells, pb.cells);
        assert_eq!(pa.cells[1].label(), "agent=q-learning, agent_config.lr=0.2");
        assert_eq!(
            pa.cells[1].overrides(),
            vec!["agent=\"q-learning\"", "agent_config.lr=0.2"]
        );
        let ids: std::collections::BTreeSet<_> = pa.cells.iter().map(|c| &c.id).collect();
        assert_eq!(ids.len(), 6);
        // IDs depend on the settings only: fixed forever (results on disk
        // are found by them).
        assert_eq!(cell_id(&pa.cells[0].settings), pa.cells[0].id);
        assert_eq!(
            cell_id(&[("agent".into(), Value::String("q-learning".into()))]),
            cell_id(&[("agent".into(), Value::String("q-learning".into()))])
        );
        assert_ne!(pa.cells[0].id, pa.cells[1].id);
        let runs = pa.runs();
        assert_eq!(runs.len(), 12);
        assert_eq!(runs[1].rel(), format!("{}/seed-4", pa.cells[0].id));
    }

    #[test]
    fn the_control_of_a_cell_shares_its_other_axes() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "s.toml",
            &format!("seeds = \"0..2\"\ncontrol = {{ agent = \"q-learning\" }}\n[config]\n{BASE}[axes]\nagent = [\"q-learning\", \"emotional-ed\"]\n\"agent_config.lr\" = [0.1, 0.2]\n"),
        );
        let plan = read(&p).unwrap().plan;
        let treated = &plan.cells[3]; // emotional-ed, lr 0.2
        assert_eq!(treated.label(), "agent=emotional-ed, agent_config.lr=0.2");
        let control = plan.control_of(treated).unwrap();
        assert_eq!(control.label(), "agent=q-learning, agent_config.lr=0.2");
        assert_eq!(plan.control_of(control).unwrap().id, control.id);
    }

    #[test]
    fn malformed_sweeps_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "base.toml", BASE);
        let cases = [
            ("seeds = \"0..3\"\nbase = \"base.toml\"\nbogus = 1\n", "bogus"),
            ("base = \"base.toml\"\n", "seeds"),
            ("base = \"base.toml\"\nseeds = \"5..2\"\n", "seeds"),
            ("base = \"base.toml\"\nseeds = [1, -1]\n", "seeds"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[axes]\nagent = []\n", "axes.agent"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[axes]\n\"agent_config.lr\" = [\"fast\"]\n", "lr"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[axes]\nagent = [\"nope\"]\n", "nope"),
            ("base = \"missing.toml\"\nseeds = \"0..2\"\n", "missing.toml"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\ncontrol = { agent = \"x\" }\n", "control.agent"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[[metrics]]\nname = \"r\"\n", "key"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[[metrics]]\nname = \"r\"\nkey = \"k\"\nreduce = \"median\"\n", "reduce"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[slurm]\npartition = \"a b\"\n", "slurm"),
            ("base = \"base.toml\"\nseeds = \"0..2\"\n[slurm]\nqueue = \"a\"\n", "queue"),
        ];
        for (text, needle) in cases {
            let p = write(d.path(), "bad.toml", text);
            let e = format!("{:#}", read(&p).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("bad.toml"), "{text:?}: {e}");
        }
    }

    #[test]
    fn reductions() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Reduce::Last.apply(&v), 20.0);
        assert_eq!(Reduce::Mean.apply(&v), 10.5);
        assert_eq!(Reduce::Tail.apply(&v), 19.5);
        assert_eq!(Reduce::Tail.apply(&v[..3]), 3.0);
        assert_eq!(Reduce::Max.apply(&v), 20.0);
        assert_eq!(Reduce::Min.apply(&v), 1.0);
    }
}
