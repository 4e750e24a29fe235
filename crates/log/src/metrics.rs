//! [`MetricsWriter`]: append-only `metrics.jsonl`.
//!
//! Format: one JSON object per line, always with `"step"` (integer) and
//! `"wall_time"` (unix seconds, float). Two shapes are written:
//! - scalar: `{"step":10,"tag":"charts/return","value":1.5,"wall_time":...}`
//! - record: `{"step":10,"wall_time":...,"return":1.5,"length":42.0}`
//!   (the caller's fields, in the order given).
//!
//! Non-finite numbers are written as `null`, since JSON has no NaN/inf. Each
//! line goes to the OS in a single write, so a killed run leaves at most one
//! trailing line without `\n`, which readers should ignore.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{io_err, unix_now, LogError, Result};

/// Keys every line carries; record fields may not reuse them.
const RESERVED: [&str; 2] = ["step", "wall_time"];

/// Appends JSON lines to a metrics file, one unbuffered write per line.
#[derive(Debug)]
pub struct MetricsWriter {
    file: File,
    path: PathBuf,
}

#[derive(Serialize)]
struct ScalarLine<'a> {
    step: i64,
    tag: &'a str,
    value: f64,
    wall_time: f64,
}

impl MetricsWriter {
    /// Opens `path` for appending (creating it and its parent directories),
    /// so a resumed run extends rather than truncates its history.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open metrics file", &path))?;
        Ok(Self { file, path })
    }

    /// Reopens the metrics file of a run resumed at `next_step`: lines with a
    /// `"step"` of `next_step` or more (logged by a killed process after its
    /// last checkpoint) and a cut-off last line are dropped, atomically, so
    /// the resumed run continues the history without repeating a step.
    pub fn resume(path: impl AsRef<Path>, next_step: i64) -> Result<Self> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => {
                let mut kept = String::with_capacity(text.len());
                for line in text.split_inclusive('\n') {
                    if !line.ends_with('\n') {
                        continue; // cut off by a kill
                    }
                    let step = serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(serde_json::Value::as_i64));
                    if step.is_none_or(|s| s < next_step) {
                        kept.push_str(line);
                    }
                }
                if kept.len() != text.len() {
                    crate::write_atomic(path, kept.as_bytes())?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read metrics file", path)(e)),
        }
        Self::create(path)
    }

    /// Path of the metrics file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `{"step","tag","value","wall_time"}`.
    pub fn scalar(&mut self, step: i64, tag: &str, value: f64) -> Result<()> {
        let line = serde_json::to_string(&ScalarLine {
            step,
            tag,
            value,
            wall_time: unix_now(),
        })?;
        self.write_line(line)
    }

    /// Writes `{"step","wall_time", name: value, ...}` with the fields in the
    /// order given. Duplicate names and the reserved `step`/`wall_time` are
    /// rejected, since they would make the line ambiguous.
    pub fn record(&mut self, step: i64, fields: &[(&str, f64)]) -> Result<()> {
        let mut seen = HashSet::with_capacity(fields.len());
        let mut line = format!("{{\"step\":{step},\"wall_time\":{}", json(&unix_now())?);
        for (name, value) in fields {
            if RESERVED.contains(name) || !seen.insert(*name) {
                return Err(LogError::Invalid(format!(
                    "metrics field {name:?} is reserved or repeated"
                )));
            }
            line.push(',');
            line.push_str(&json(name)?);
            line.push(':');
            line.push_str(&json(value)?);
        }
        line.push('}');
        self.write_line(line)
    }

    /// Writes any serialisable value as one compact JSON line (free-form
    /// records; the caller is responsible for including a step).
    pub fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let line = serde_json::to_string(value)?;
        self.write_line(line)
    }

    fn write_line(&mut self, mut line: String) -> Result<()> {
        // Compact serde_json output never contains a raw newline.
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err("append to", &self.path))
    }
}

fn json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .expect("read metrics")
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid JSON line"))
            .collect()
    }

    #[test]
    fn writes_and_appends_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/metrics.jsonl");
        {
            let mut w = MetricsWriter::create(&path).expect("create");
            w.scalar(3, "charts/return", 1.5).expect("scalar");
            w.record(4, &[("return", 2.0), ("td \"err\"", f64::NAN)])
                .expect("record");
            // Readable before the writer is dropped.
            assert_eq!(lines(&path).len(), 2);
        }
        let mut w = MetricsWriter::create(&path).expect("reopen");
        w.write_json(&serde_json::json!({"step": 5, "note": "resumed"}))
            .expect("json");
        let got = lines(&path);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["step"], 3);
        assert_eq!(got[0]["tag"], "charts/return");
        assert_eq!(got[0]["value"], 1.5);
        assert!(got[0]["wall_time"].as_f64().is_some());
        assert_eq!(got[1]["return"], 2.0);
        assert!(got[1]["td \"err\""].is_null());
        assert_eq!(got[2]["note"], "resumed");
        let raw = fs::read_to_string(&path).expect("read");
        assert!(raw
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("{\"step\":4,")));
    }

    #[test]
    fn resume_drops_steps_past_the_checkpoint_and_a_cut_off_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.jsonl");
        {
            let mut w = MetricsWriter::create(&path).expect("create");
            for step in 0..6 {
                w.record(step, &[("x", step as f64)]).expect("record");
            }
        }
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"step\":6,\"wall").expect("partial");
        drop(f);
        let mut w = MetricsWriter::resume(&path, 4).expect("resume");
        w.record(4, &[("x", 40.0)]).expect("record");
        let steps: Vec<i64> = lines(&path)
            .iter()
            .map(|v| v["step"].as_i64().expect("step"))
            .collect();
        assert_eq!(steps, [0, 1, 2, 3, 4]);
        assert_eq!(lines(&path)[4]["x"], 40.0);
        // A run that never wrote metrics resumes with an empty file.
        let fresh = dir.path().join("none.jsonl");
        MetricsWriter::resume(&fresh, 3).expect("resume missing");
        assert_eq!(fs::read_to_string(&fresh).expect("read"), "");
    }

    #[test]
    fn reserved_and_duplicate_fields_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = MetricsWriter::create(dir.path().join("m.jsonl")).expect("create");
        assert!(matches!(
            w.record(0, &[("step", 1.0)]),
            Err(LogError::Invalid(_))
        ));
        assert!(matches!(
            w.record(0, &[("a", 1.0), ("a", 2.0)]),
            Err(LogError::Invalid(_))
        ));
        assert_eq!(fs::read_to_string(w.path()).expect("read"), "");
    }
}
