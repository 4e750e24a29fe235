//! Results tables, as `emorl reproduce` prints and stores them.
//!
//! A [`Table`] is a title, column headers, rows of [`Cell`]s and free-form
//! note lines (verdicts, footnotes). Numbers keep full precision in JSON and
//! are rounded only when rendered to markdown. Rows built from a
//! [`Comparison`] carry it along, so the JSON has every statistic.

use crate::stats::Comparison;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TableError {
    #[error("row has {got} cells but table '{title}' has {expected} columns")]
    RowLength {
        title: String,
        expected: usize,
        got: usize,
    },
    #[error("table JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decimals upstream prints: means, SDs, CIs, t and d with 4, p with 6.
pub const STAT_DECIMALS: usize = 4;
pub const P_DECIMALS: usize = 6;

/// Column headers of a comparison table (see [`Row::comparison`]).
pub const COMPARISON_COLUMNS: [&str; 15] = [
    "Experiment",
    "Seeds",
    "n",
    "Control mean",
    "Control SD",
    "Control 95% CI",
    "Treatment mean",
    "Treatment SD",
    "Treatment 95% CI",
    "t (c − t)",
    "p (perm.)",
    "p (Welch)",
    "Cohen's d",
    "Effect",
    "Significant",
];

/// One table cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Text(String),
    /// A float shown with `decimals` places in markdown.
    Number {
        #[serde(with = "crate::float_serde")]
        value: f64,
        decimals: usize,
    },
    Integer(i64),
    Empty,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    pub fn number(value: f64, decimals: usize) -> Self {
        Cell::Number { value, decimals }
    }

    /// The cell as markdown shows it (`|` escaped).
    pub fn render(&self) -> String {
        match self {
            Cell::Text(s) => s.replace('|', "\\|"),
            Cell::Number { value, decimals } => format_number(*value, *decimals),
            Cell::Integer(v) => v.to_string(),
            Cell::Empty => String::new(),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

/// `value` with `decimals` places, spelling non-finite values as Python does.
pub fn format_number(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        "nan".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{value:.decimals$}")
    }
}

/// One table row; `comparison` is kept for rows built from one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub cells: Vec<Cell>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

impl Row {
    pub fn new(cells: impl IntoIterator<Item = Cell>) -> Self {
        Row {
            cells: cells.into_iter().collect(),
            comparison: None,
        }
    }

    /// A row of a comparison table ([`COMPARISON_COLUMNS`]): `experiment`
    /// names the experiment, `seeds` the seed block (e.g. "0–49", "pooled").
    pub fn comparison(experiment: &str, seeds: &str, c: &Comparison) -> Self {
        let n = if c.control.n == c.treatment.n {
            c.control.n.to_string()
        } else {
            format!("{}/{}", c.control.n, c.treatment.n)
        };
        let ci = |lo: f64, hi: f64| {
            Cell::Text(format!(
                "[{}, {}]",
                format_number(lo, STAT_DECIMALS),
                format_number(hi, STAT_DECIMALS)
            ))
        };
        let cells = vec![
            Cell::text(experiment),
            Cell::text(seeds),
            Cell::Text(n),
            Cell::number(c.control.mean, STAT_DECIMALS),
            Cell::number(c.control.sd, STAT_DECIMALS),
            ci(c.control.ci_low, c.control.ci_high),
            Cell::number(c.treatment.mean, STAT_DECIMALS),
            Cell::number(c.treatment.sd, STAT_DECIMALS),
            ci(c.treatment.ci_low, c.treatment.ci_high),
            Cell::number(c.welch_t, STAT_DECIMALS),
            c.permutation_p
                .map_or(Cell::Empty, |p| Cell::number(p, P_DECIMALS)),
            Cell::number(c.welch_p, P_DECIMALS),
            Cell::number(c.cohens_d, STAT_DECIMALS),
            Cell::text(c.effect.label()),
            Cell::text(if c.significant { "YES" } else { "NO" }),
        ];
        Row {
            cells,
            comparison: Some(c.clone()),
        }
    }
}

/// A titled table with note lines under it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(
        title: impl Into<String>,
        columns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Table {
            title: title.into(),
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// An empty table with [`COMPARISON_COLUMNS`].
    pub fn comparisons(title: impl Into<String>) -> Self {
        Table::new(title, COMPARISON_COLUMNS)
    }

    /// Appends a row; it must have one cell per column.
    pub fn push_row(&mut self, row: Row) -> Result<(), TableError> {
        if row.cells.len() != self.columns.len() {
            return Err(TableError::RowLength {
                title: self.title.clone(),
                expected: self.columns.len(),
                got: row.cells.len(),
            });
        }
        self.rows.push(row);
        Ok(())
    }

    /// Appends [`Row::comparison`]; the table must have the comparison columns.
    pub fn push_comparison(
        &mut self,
        experiment: &str,
        seeds: &str,
        c: &Comparison,
    ) -> Result<(), TableError> {
        self.push_row(Row::comparison(experiment, seeds, c))
    }

    /// Appends a note or verdict line, shown under the table.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// GitHub markdown: `## title`, the table, then each note as a paragraph.
    pub fn to_markdown(&self) -> String {
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&format!("## {}\n\n", self.title));
        }
        out.push_str(&line(
            self.columns.iter().map(|c| c.replace('|', "\\|")).collect(),
        ));
        out.push_str(&line(vec!["---".to_string(); self.columns.len()]));
        for row in &self.rows {
            out.push_str(&line(row.cells.iter().map(Cell::render).collect()));
        }
        for note in &self.notes {
            out.push('\n');
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// Pretty JSON with full-precision numbers (NaN as `null`).
    pub fn to_json(&self) -> Result<String, TableError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(json: &str) -> Result<Self, TableError> {
        Ok(serde_json::from_str(json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ArmSummary, EffectSize};

    fn fear() -> Comparison {
        Comparison {
            control: ArmSummary {
                n: 50,
                mean: 0.327_297_056_274_847_7,
                sd: 0.457_211_615_831_833_3,
                ci_low: 0.200_566_5,
                ci_high: 0.454_027_6,
            },
            treatment: ArmSummary {
                n: 50,
                mean: 0.572_965_685_424_949_2,
                sd: 0.478_454_611_906_407_3,
                ci_low: 0.440_344_7,
                ci_high: 0.705_586_6,
            },
            welch_t: -2.624_924_689_364_295,
            welch_df: 97.8,
            welch_p: 0.010_093_2,
            permutations: 1000,
            permutation_p: Some(0.013),
            cohens_d: 0.524_984_937_872_859,
            cohens_d_population: 0.53,
            effect: EffectSize::Medium,
            significant: true,
            student_t: -2.624_924_689_364_295,
            student_df: 98.0,
            student_p: 0.010_05,
            mann_whitney_u: 900.0,
            mann_whitney_p: 0.02,
        }
    }

    #[test]
    fn comparison_table_markdown() {
        let mut table = Table::comparisons("Experiment 12");
        let c = fear();
        table.push_comparison("Fear", "0–49", &c).unwrap();
        let mut other = c.clone();
        other.treatment.n = 40;
        other.permutation_p = None;
        other.significant = false;
        other.cohens_d = -0.1;
        other.effect = EffectSize::Negligible;
        table.push_comparison("Fear", "pooled", &other).unwrap();
        table.note("Significant: 1/2");
        table.note("Verdict: WEAK");
        let want = "\
## Experiment 12

| Experiment | Seeds | n | Control mean | Control SD | Control 95% CI | Treatment mean | Treatment SD | Treatment 95% CI | t (c − t) | p (perm.) | p (Welch) | Cohen's d | Effect | Significant |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| Fear | 0–49 | 50 | 0.3273 | 0.4572 | [0.2006, 0.4540] | 0.5730 | 0.4785 | [0.4403, 0.7056] | -2.6249 | 0.013000 | 0.010093 | 0.5250 | medium | YES |
| Fear | pooled | 50/40 | 0.3273 | 0.4572 | [0.2006, 0.4540] | 0.5730 | 0.4785 | [0.4403, 0.7056] | -2.6249 |  | 0.010093 | -0.1000 | negligible | NO |

Significant: 1/2

Verdict: WEAK
";
        assert_eq!(table.to_markdown(), want);
    }

    #[test]
    fn free_form_table_and_json_round_trip() {
        let mut table = Table::new("", ["Agent", "Episodes | criterion", "Final reward"]);
        table
            .push_row(Row::new([
                Cell::text("DQN|std"),
                Cell::Integer(212),
                Cell::number(0.123_456_789, 3),
            ]))
            .unwrap();
        table
            .push_row(Row::new([
                "Fear-ED".into(),
                Cell::Empty,
                Cell::number(f64::NAN, 3),
            ]))
            .unwrap();
        assert!(matches!(
            table.push_row(Row::new([Cell::Empty])),
            Err(TableError::RowLength {
                expected: 3,
                got: 1,
                ..
            })
        ));
        assert_eq!(
            table.to_markdown(),
            "| Agent | Episodes \\| criterion | Final reward |\n\
             | --- | --- | --- |\n\
             | DQN\\|std | 212 | 0.123 |\n\
             | Fear-ED |  | nan |\n"
        );
        let json = table.to_json().unwrap();
        let back = Table::from_json(&json).unwrap();
        assert_eq!(back.rows[0], table.rows[0]);
        assert!(
            matches!(back.rows[1].cells[2], Cell::Number { value, decimals: 3 } if value.is_nan())
        );

        let mut cmp = Table::comparisons("t");
        cmp.push_comparison("Fear", "0–49", &fear()).unwrap();
        let back = Table::from_json(&cmp.to_json().unwrap()).unwrap();
        // Full precision survives in both the cells and the attached comparison.
        assert_eq!(back, cmp);
        assert_eq!(
            back.rows[0].comparison.as_ref().map(|c| c.welch_t),
            Some(-2.624_924_689_364_295)
        );
    }

    #[test]
    fn numbers_format_like_python() {
        assert_eq!(format_number(0.0105, 6), "0.010500");
        assert_eq!(format_number(-2.624_924_689, 4), "-2.6249");
        assert_eq!(format_number(f64::INFINITY, 4), "inf");
        assert_eq!(format_number(f64::NEG_INFINITY, 4), "-inf");
        // Exact binary halves round to even, as Python's format does.
        assert_eq!(format_number(0.125, 2), "0.12");
        assert_eq!(format_number(0.375, 2), "0.38");
    }
}
