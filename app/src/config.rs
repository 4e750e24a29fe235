//! TOML configuration: loading with located errors, and `key=value` overrides.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use toml::{Table, Value};

/// `file:line:col: message` for a TOML parse or schema error.
pub fn describe_toml_error(origin: &str, text: &str, err: &toml::de::Error) -> String {
    let msg = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{origin}:{line}:{col}: {msg}")
        }
        None => format!("{origin}: {msg}"),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses TOML text into a table, naming `origin` in errors.
pub fn parse_table(origin: &str, text: &str) -> Result<Table> {
    text.parse::<Table>()
        .map_err(|e| anyhow!(describe_toml_error(origin, text, &e)))
}

/// Reads a TOML file into a table.
pub fn read_table(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    parse_table(&path.display().to_string(), &text)
}

/// Deserialises a merged table into `T`, naming `origin` in errors. (Merged
/// tables have no source positions; file syntax errors are located earlier.)
pub fn from_table<T: serde::de::DeserializeOwned>(origin: &str, table: Table) -> Result<T> {
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let message = e.inner().message().trim().replace('\n', " ");
        // The key the problem is at ("max_steps", "rl.lr"), when it is not
        // the table itself.
        match e.path().to_string().as_str() {
            "." | "" => anyhow!("{origin}: {message}"),
            key => anyhow!("{origin}: {key}: {message}"),
        }
    })
}

/// Recursively merges `over` into `base` (tables merge, other values replace).
pub fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `a.b.c=value` overrides. Values are TOML literals (`0.5`, `true`,
/// `"x"`, `[1, 2]`); anything that does not parse as one is taken as a string.
pub fn apply_overrides(table: &mut Table, overrides: &[String]) -> Result<()> {
    for item in overrides {
        let (key, raw) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("override '{item}' is not of the form key=value"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            bail!("override '{item}' has an empty key");
        }
        let value = parse_value(raw.trim());
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut cur = &mut *table;
        for p in parts {
            let entry = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            cur = match entry {
                Value::Table(t) => t,
                _ => bail!("override '{item}': '{p}' is not a table"),
            };
        }
        cur.insert(last.to_string(), value);
    }
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_file_line_and_column() {
        let err = parse_table("x.toml", "a = 1\nb = = 2\n").expect_err("malformed");
        let msg = err.to_string();
        assert!(msg.starts_with("x.toml:2:"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn overrides_parse_literals_and_nest() {
        let mut t = Table::new();
        apply_overrides(
            &mut t,
            &[
                "agent.lr=0.2".into(),
                "name=fear run".into(),
                "x.flag=true".into(),
            ],
        )
        .expect("overrides");
        assert_eq!(t["agent"]["lr"].as_float(), Some(0.2));
        assert_eq!(t["name"].as_str(), Some("fear run"));
        assert_eq!(t["x"]["flag"].as_bool(), Some(true));
        assert!(apply_overrides(&mut t, &["novalue".into()]).is_err());
        assert!(apply_overrides(&mut t, &["name.sub=1".into()]).is_err());
    }

    #[test]
    fn merge_is_deep() {
        let mut a = parse_table("a", "[agent]\nlr = 0.1\ngamma = 0.9\n").expect("a");
        let b = parse_table("b", "[agent]\nlr = 0.5\n").expect("b");
        merge(&mut a, b);
        assert_eq!(a["agent"]["lr"].as_float(), Some(0.5));
        assert_eq!(a["agent"]["gamma"].as_float(), Some(0.9));
    }
}
