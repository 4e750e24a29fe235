//! [`RunDir`]: one directory per run, plus atomic file writes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{io_err, EventWriter, LogError, MetricsWriter, Result};

/// File name of the run's configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the run's metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Subdirectory for checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// A run's output directory. Holds the event file, `metrics.jsonl`,
/// `config.toml` and `checkpoints/`.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `<root>/<name>-<YYYYmmdd-HHMMSS>` (UTC), or `...-2`, `-3`, ...
    /// if taken. The directory is claimed with a non-recursive `create_dir`,
    /// so two processes starting in the same second get different ones.
    pub fn create(root: &Path, name: &str) -> Result<RunDir> {
        let mut parts = Path::new(name).components();
        let single = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        );
        if !single || name.contains(['/', '\\']) {
            return Err(LogError::Invalid(format!(
                "run name {name:?} must be a single path component"
            )));
        }
        fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        let base = format!("{name}-{}", utc_stamp(crate::unix_now() as i64));
        for n in 1..=10_000u32 {
            let dir = if n == 1 {
                root.join(&base)
            } else {
                root.join(format!("{base}-{n}"))
            };
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(RunDir { path: dir }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create run directory", &dir)(e)),
            }
        }
        Err(LogError::Invalid(format!(
            "no free run directory name for {base:?} in {}",
            root.display()
        )))
    }

    /// Uses exactly `path` (created if missing; an existing one is reused).
    pub fn at(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(io_err("create run directory", &path))?;
        Ok(RunDir { path })
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `config.toml` atomically (text written verbatim).
    pub fn write_config(&self, toml_text: &str) -> Result<PathBuf> {
        self.write_atomic(CONFIG_FILE, toml_text.as_bytes())
    }

    /// Atomically writes `bytes` to `rel_path` inside the run directory
    /// (parents created). `rel_path` must be relative and must not contain
    /// `..`, so a write can never escape the run directory.
    pub fn write_atomic(&self, rel_path: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
        let rel = rel_path.as_ref();
        let ok = rel.components().next().is_some()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !ok {
            return Err(LogError::Invalid(format!(
                "{} is not a plain relative path",
                rel.display()
            )));
        }
        let target = self.path.join(rel);
        write_atomic(&target, bytes)?;
        Ok(target)
    }

    /// A new event file in the run directory.
    pub fn event_writer(&self) -> Result<EventWriter> {
        EventWriter::create(&self.path)
    }

    /// `metrics.jsonl` in the run directory, opened for appending.
    pub fn metrics_writer(&self) -> Result<MetricsWriter> {
        MetricsWriter::create(self.path.join(METRICS_FILE))
    }

    /// `checkpoints/` in the run directory, created if missing.
    pub fn checkpoints_dir(&self) -> Result<PathBuf> {
        let dir = self.path.join(CHECKPOINTS_DIR);
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(dir)
    }
}

/// Writes `bytes` to `path` so readers see either the old file or the whole
/// new one, never a prefix: write a sibling temp file, fsync it, rename over
/// `path`. Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| LogError::Invalid(format!("{} has no file name", path.display())))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    if !parent.as_os_str().is_empty() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    // Same directory as the target so the rename cannot cross filesystems;
    // pid + counter keep concurrent writers (threads or processes) apart.
    let (mut file, tmp) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = parent.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create temporary file", &tmp)(e)),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write temporary file", &tmp));
    drop(file);
    let renamed =
        written.and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into", path)));
    if renamed.is_err() {
        // Best effort: the temp file is garbage either way.
        let _ = fs::remove_file(&tmp);
    }
    renamed?;
    sync_dir(parent);
    Ok(())
}

/// Persists the rename itself across power loss. Best effort: some
/// filesystems refuse to fsync directories, and the data is already safe
/// against a process kill at this point.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// `YYYYmmdd-HHMMSS` in UTC for unix seconds `secs`.
fn utc_stamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Proleptic Gregorian date of `days` since 1970-01-01, counting in 400-year
/// eras (146097 days) that start on March 1 so leap days fall at era ends.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000"); // leap day
        assert_eq!(utc_stamp(1_709_251_199), "20240229-235959");
        assert_eq!(utc_stamp(1_735_689_600), "20250101-000000");
        assert_eq!(utc_stamp(4_107_542_400), "21000301-000000"); // 2100 not leap
        assert_eq!(utc_stamp(-1), "19691231-235959");
    }

    #[test]
    fn create_names_and_suffixes() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = RunDir::create(root.path(), "ppo").expect("first");
        let b = RunDir::create(root.path(), "ppo").expect("second");
        let c = RunDir::create(root.path(), "ppo").expect("third");
        let name = |r: &RunDir| {
            r.path()
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8")
                .to_owned()
        };
        let (na, nb, nc) = (name(&a), name(&b), name(&c));
        assert!(
            na.starts_with("ppo-") && na.len() == "ppo-YYYYmmdd-HHMMSS".len(),
            "{na}"
        );
        assert!(a.path().is_dir() && b.path().is_dir() && c.path().is_dir());
        // Same second is likely but not guaranteed; then suffixes apply.
        if nb.starts_with(&na) {
            assert_eq!(nb, format!("{na}-2"));
        }
        assert!(na != nb && nb != nc && na != nc);
        for bad in ["", "a/b", "..", ".", "/abs"] {
            assert!(matches!(
                RunDir::create(root.path(), bad),
                Err(LogError::Invalid(_))
            ));
        }
    }

    #[test]
    fn atomic_writes_and_layout() {
        let root = tempfile::tempdir().expect("tempdir");
        let run = RunDir::at(root.path().join("exact")).expect("at");
        assert_eq!(run.path(), root.path().join("exact"));
        let cfg = run.write_config("a = 1\n").expect("config");
        assert_eq!(fs::read_to_string(&cfg).expect("read"), "a = 1\n");
        run.write_config("a = 2\n").expect("overwrite");
        assert_eq!(fs::read_to_string(&cfg).expect("read"), "a = 2\n");
        let p = run
            .write_atomic("results/summary.json", b"{}")
            .expect("nested");
        assert_eq!(fs::read(&p).expect("read"), b"{}");
        for bad in ["../escape", "/etc/x", ""] {
            assert!(matches!(
                run.write_atomic(bad, b"x"),
                Err(LogError::Invalid(_))
            ));
        }
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(run.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        let ck = run.checkpoints_dir().expect("checkpoints");
        assert!(ck.is_dir());
        let mut m = run.metrics_writer().expect("metrics");
        m.scalar(0, "x", 1.0).expect("scalar");
        assert!(run.path().join(METRICS_FILE).is_file());
        let ev = run.event_writer().expect("events");
        assert_eq!(ev.path().parent(), Some(run.path()));
    }
}
