//! [`RunDir`]: one directory per run, owned by one process, plus atomic file
//! writes.
//!
//! A run directory belongs to one run: every way of opening one takes an
//! exclusive advisory lock on [`LOCK_FILE`] inside it (released when the last
//! clone of the [`RunDir`] is dropped, or when the process ends however it
//! ends), so a second emorl process writing the same directory is refused
//! before it writes anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{io_err, EventWriter, LogError, MetricsWriter, Result};

/// File name of the run's configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the run's metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Subdirectory for checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The lock file inside a run directory (empty; only its lock matters).
pub const LOCK_FILE: &str = ".emorl.lock";

/// A run's output directory. Holds the event file, `metrics.jsonl`,
/// `config.toml` and `checkpoints/`, and the exclusive lock on it.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    /// The locked lock file; the lock lasts while any clone lives.
    _lock: Arc<File>,
}

impl RunDir {
    /// Creates `<root>/<name>-<YYYYmmdd-HHMMSS>` (UTC), or `...-2`, `-3`, ...
    /// if taken, and locks it. The directory is claimed with a non-recursive
    /// `create_dir`, so two processes starting in the same second get
    /// different ones.
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
                Ok(()) => {
                    let lock = lock(&dir, true)?;
                    return Ok(RunDir {
                        path: dir,
                        _lock: lock,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create run directory", &dir)(e)),
            }
        }
        Err(LogError::Invalid(format!(
            "no free run directory name for {base:?} in {}",
            root.display()
        )))
    }

    /// Uses exactly `path`, created if missing, and locks it. What is already
    /// there is kept: this is how a run is resumed.
    pub fn at(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(io_err("create run directory", &path))?;
        let lock = lock(&path, true)?;
        Ok(RunDir { path, _lock: lock })
    }

    /// Like [`at`](Self::at), but the lock is shared: several processes
    /// that each write only files of their own (array tasks filling a
    /// store) hold it together, while [`at`](Self::at) and
    /// [`new_at`](Self::new_at) are refused as long as any of them runs.
    pub fn shared_at(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(io_err("create run directory", &path))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))
            .map_err(io_err("open lock file", &path))?;
        match fs4::FileExt::try_lock_shared(&file) {
            Ok(()) => Ok(RunDir {
                path,
                _lock: Arc::new(file),
            }),
            Err(fs4::TryLockError::WouldBlock) => Err(LogError::Locked { path }),
            Err(fs4::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    /// Uses exactly `path` for a new run: created if missing, locked, and
    /// refused ([`LogError::NotEmpty`]) if it already holds anything. A
    /// refused directory is left exactly as it was.
    pub fn new_at(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_path_buf();
        let held = check_new(&path)?;
        fs::create_dir_all(&path).map_err(io_err("create run directory", &path))?;
        let lock = match held {
            Some(l) => l,
            None => lock(&path, true)?,
        };
        // Someone may have written between the check and the lock.
        refuse_if_not_empty(&path)?;
        Ok(RunDir { path, _lock: lock })
    }

    /// Whether [`new_at`](Self::new_at) would take `path` now, checked
    /// without writing anything (to fail before slow preparations).
    pub fn check_new_at(path: impl AsRef<Path>) -> Result<()> {
        check_new(path.as_ref()).map(drop)
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first entry of the directory other than the lock file (the run's
    /// own files first), or `None` when it holds nothing else.
    pub fn first_entry(&self) -> Result<Option<String>> {
        first_entry(&self.path)
    }

    /// Writes `config.toml` atomically (text written verbatim).
    pub fn write_config(&self, toml_text: &str) -> Result<PathBuf> {
        self.write_atomic(CONFIG_FILE, toml_text.as_bytes())
    }

    /// Atomically writes `bytes` to `rel_path` inside the run directory
    /// (parents created). `rel_path` must be relative and must not contain
    /// `..`, so a write can never escape the run directory.
    pub fn write_atomic(&self, rel_path: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
        let target = self.inside(rel_path.as_ref())?;
        write_atomic(&target, bytes)?;
        Ok(target)
    }

    /// `rel` inside the run directory, if it is a plain relative path.
    fn inside(&self, rel: &Path) -> Result<PathBuf> {
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
        Ok(self.path.join(rel))
    }

    /// A new event file in the run directory.
    pub fn event_writer(&self) -> Result<EventWriter> {
        EventWriter::create(&self.path)
    }

    /// A new event file for a run resumed at `step`: it opens with a session
    /// start at `step`, so TensorBoard drops what earlier files logged from
    /// `step` on and the history continues without repeated steps.
    pub fn resumed_event_writer(&self, step: i64) -> Result<EventWriter> {
        let mut w = EventWriter::create(&self.path)?;
        w.add_session_start(step)?;
        Ok(w)
    }

    /// `metrics.jsonl` in the run directory, opened for appending.
    pub fn metrics_writer(&self) -> Result<MetricsWriter> {
        MetricsWriter::create(self.path.join(METRICS_FILE))
    }

    /// `metrics.jsonl` of a run resumed at `next_step`, without the lines a
    /// killed process wrote from that step on (see [`MetricsWriter::resume`]).
    pub fn resumed_metrics_writer(&self, next_step: i64) -> Result<MetricsWriter> {
        MetricsWriter::resume(self.path.join(METRICS_FILE), next_step)
    }

    /// `checkpoints/` in the run directory, created if missing.
    pub fn checkpoints_dir(&self) -> Result<PathBuf> {
        let dir = self.path.join(CHECKPOINTS_DIR);
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(dir)
    }

    /// An empty `checkpoints/.<name>.new/` to write a checkpoint directory
    /// into; [`commit_checkpoint`](Self::commit_checkpoint) then puts it in
    /// place of `checkpoints/<name>/`.
    pub fn begin_checkpoint(&self, name: &str) -> Result<PathBuf> {
        let (_, new, _) = self.checkpoint_paths(name)?;
        remove_dir_if_present(&new)?;
        fs::create_dir_all(&new).map_err(io_err("create directory", &new))?;
        Ok(new)
    }

    /// Replaces `checkpoints/<name>/` with the directory written since
    /// [`begin_checkpoint`](Self::begin_checkpoint), by two renames: a kill
    /// at any moment leaves the old or the new checkpoint whole (see
    /// [`checkpoint`](Self::checkpoint)).
    pub fn commit_checkpoint(&self, name: &str) -> Result<PathBuf> {
        let (current, new, old) = self.checkpoint_paths(name)?;
        remove_dir_if_present(&old)?;
        if current.exists() {
            fs::rename(&current, &old).map_err(io_err("rename", &current))?;
        }
        fs::rename(&new, &current).map_err(io_err("rename", &new))?;
        remove_dir_if_present(&old)?;
        if let Some(parent) = current.parent() {
            sync_dir(parent);
        }
        Ok(current)
    }

    /// `checkpoints/<name>/` if there is one. A kill between the two renames
    /// of [`commit_checkpoint`](Self::commit_checkpoint) is repaired here by
    /// putting the previous checkpoint back.
    pub fn checkpoint(&self, name: &str) -> Result<Option<PathBuf>> {
        let (current, _, old) = self.checkpoint_paths(name)?;
        if !current.exists() && old.is_dir() {
            fs::rename(&old, &current).map_err(io_err("rename", &old))?;
        }
        Ok(current.is_dir().then_some(current))
    }

    fn checkpoint_paths(&self, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let dir = self.checkpoints_dir()?;
        let current = self.inside(&Path::new(CHECKPOINTS_DIR).join(name))?;
        if current.parent() != Some(dir.as_path()) {
            return Err(LogError::Invalid(format!(
                "checkpoint name {name:?} must be a single path component"
            )));
        }
        Ok((
            current,
            dir.join(format!(".{name}.new")),
            dir.join(format!(".{name}.old")),
        ))
    }
}

/// Refuses a non-directory, a held lock, then any content, writing nothing;
/// returns the lock when the directory already had a lock file.
fn check_new(path: &Path) -> Result<Option<Arc<File>>> {
    if path.exists() && !path.is_dir() {
        return Err(LogError::Invalid(format!(
            "{} exists and is not a directory",
            path.display()
        )));
    }
    // A held lock first (its owner may be filling the directory), then what
    // is there.
    let held = if path.join(LOCK_FILE).is_file() {
        Some(lock(path, false)?)
    } else {
        None
    };
    refuse_if_not_empty(path)?;
    Ok(held)
}

/// Opens (or, with `create`, creates) the lock file of `dir` and takes its
/// exclusive lock without waiting.
fn lock(dir: &Path, create: bool) -> Result<Arc<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    // Called through the trait: std's inherent `File::try_lock` (Rust 1.89)
    // would shadow it.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(Arc::new(file)),
        Err(fs4::TryLockError::WouldBlock) => Err(LogError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs4::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

fn refuse_if_not_empty(dir: &Path) -> Result<()> {
    match first_entry(dir)? {
        Some(entry) => Err(LogError::NotEmpty {
            path: dir.to_path_buf(),
            entry,
        }),
        None => Ok(()),
    }
}

/// A run's own files are named first, so a message says what kind of
/// directory this is.
fn first_entry(dir: &Path) -> Result<Option<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    names.sort();
    let known = [CONFIG_FILE, METRICS_FILE, CHECKPOINTS_DIR, "options.toml"];
    Ok(known
        .iter()
        .find(|k| names.iter().any(|n| n == *k))
        .map(|k| (*k).to_string())
        .or_else(|| names.into_iter().next()))
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", dir)(e)),
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
    fn shared_holders_exclude_an_exclusive_one_and_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = RunDir::shared_at(root.path()).expect("first shared");
        let b = RunDir::shared_at(root.path()).expect("second shared");
        assert!(matches!(
            RunDir::at(root.path()),
            Err(LogError::Locked { .. })
        ));
        drop((a, b));
        let x = RunDir::at(root.path()).expect("exclusive once they are gone");
        assert!(matches!(
            RunDir::shared_at(root.path()),
            Err(LogError::Locked { .. })
        ));
        drop(x);
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
    fn one_process_holds_a_run_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("run");
        let run = RunDir::at(&path).expect("first");
        assert!(path.join(LOCK_FILE).is_file());
        // A second opener (another process, or this one) is refused.
        assert!(matches!(RunDir::at(&path), Err(LogError::Locked { .. })));
        assert!(matches!(
            RunDir::new_at(&path),
            Err(LogError::Locked { .. })
        ));
        // Clones share the lock; it ends with the last one.
        let clone = run.clone();
        drop(run);
        assert!(matches!(RunDir::at(&path), Err(LogError::Locked { .. })));
        drop(clone);
        let again = RunDir::at(&path).expect("free again");
        drop(again);
        let created = RunDir::create(root.path(), "x").expect("create");
        assert!(matches!(
            RunDir::at(created.path()),
            Err(LogError::Locked { .. })
        ));
    }

    #[test]
    fn a_new_run_needs_an_empty_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("run");
        let run = RunDir::new_at(&path).expect("missing is fine");
        run.write_config("a = 1\n").expect("config");
        drop(run);
        let listing = || {
            let mut names: Vec<String> = fs::read_dir(&path)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = listing();
        match RunDir::new_at(&path) {
            Err(LogError::NotEmpty { entry, .. }) => assert_eq!(entry, CONFIG_FILE),
            other => panic!("expected NotEmpty, got {other:?}"),
        }
        assert_eq!(listing(), before, "a refused directory is left as it was");
        // An empty directory someone made by hand is fine; a file is not.
        let empty = root.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        RunDir::new_at(&empty).expect("empty directory");
        let file = root.path().join("file");
        fs::write(&file, "x").expect("file");
        assert!(matches!(RunDir::new_at(&file), Err(LogError::Invalid(_))));
        let other = root.path().join("other");
        fs::create_dir(&other).expect("mkdir");
        fs::write(other.join("notes.txt"), "x").expect("file");
        assert!(matches!(
            RunDir::new_at(&other),
            Err(LogError::NotEmpty { .. })
        ));
        assert!(!other.join(LOCK_FILE).exists(), "nothing written");
    }

    #[test]
    fn checkpoint_directories_are_replaced_whole() {
        let root = tempfile::tempdir().expect("tempdir");
        let run = RunDir::at(root.path().join("run")).expect("run");
        assert_eq!(run.checkpoint("agent").expect("none"), None);
        for n in ["1", "2"] {
            let dir = run.begin_checkpoint("agent").expect("begin");
            fs::write(dir.join("w"), n).expect("write");
            let done = run.commit_checkpoint("agent").expect("commit");
            assert_eq!(fs::read_to_string(done.join("w")).expect("read"), n);
        }
        // A checkpoint being written does not disturb the current one.
        let dir = run.begin_checkpoint("agent").expect("begin");
        fs::write(dir.join("w"), "half").expect("write");
        let current = run.checkpoint("agent").expect("ok").expect("some");
        assert_eq!(fs::read_to_string(current.join("w")).expect("read"), "2");
        // Killed between the two renames: the previous one comes back.
        let ck = run.path().join(CHECKPOINTS_DIR);
        fs::rename(ck.join("agent"), ck.join(".agent.old")).expect("rename");
        let back = run.checkpoint("agent").expect("ok").expect("restored");
        assert_eq!(fs::read_to_string(back.join("w")).expect("read"), "2");
        assert!(run.begin_checkpoint("../x").is_err());
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
