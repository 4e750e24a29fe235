//! What a finished `reproduce` or `eval` prints. Redirected, the whole
//! markdown (tables, notes) goes to stdout, for scripts; at a terminal, a
//! compact summary: the headings and each table narrowed to the columns a
//! reader looks at first, then where the full table is.

use std::io::IsTerminal;

/// Columns kept at a terminal (besides each table's first column).
const KEY_COLUMNS: &[&str] = &[
    "Agent",
    "Baseline",
    "Emotion",
    "Measure",
    "Metric",
    "Control mean",
    "Treatment mean",
    "Return mean",
    "Cohen's d",
    "d",
    "d_z",
    "p (perm.)",
    "p (Holm)",
    "Significant",
    "Better",
    "Target met",
    "All targets met",
];

/// Prints `markdown` (all of it when stdout is not a terminal).
pub fn print_result(markdown: &str) {
    if std::io::stdout().is_terminal() {
        println!("{}", compact(markdown));
        println!("(every column, with notes: table.md in the run directory)");
    } else {
        println!("{markdown}");
    }
}

/// Headings and narrowed tables of `markdown`; prose is left out.
pub fn compact(markdown: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut keep: Option<Vec<usize>> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            out.push(String::new());
            out.push(trimmed.trim_start_matches('#').trim().to_string());
            keep = None;
            continue;
        }
        if !trimmed.starts_with('|') {
            keep = None;
            continue;
        }
        let cells: Vec<&str> = trimmed
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let columns = keep.get_or_insert_with(|| {
            cells
                .iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || KEY_COLUMNS.contains(c))
                .map(|(i, _)| i)
                .collect()
        });
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let row: Vec<&str> = columns
            .iter()
            .map(|&i| cells.get(i).copied().unwrap_or(""))
            .collect();
        out.push(format!("  {}", row.join("  ")));
    }
    out.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_narrowed_to_key_columns_and_prose_dropped() {
        let md = "## Title\n\n| Experiment | n | Control mean | SD | p (perm.) |\n| --- | --- | --- | --- | --- |\n\
                  | Fear | 50 | 0.3 | 0.4 | 0.013 |\n\n**Fear** is significant.\n";
        assert_eq!(
            compact(md),
            "Title\n  Experiment  Control mean  p (perm.)\n  Fear  0.3  0.013"
        );
    }
}
