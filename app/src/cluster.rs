//! Handing work to a Slurm cluster: a job-array script that runs one
//! `emorl` command per array task, and its submission with `sbatch`.
//!
//! Nothing here knows what the tasks compute; a caller (the sweep) writes
//! everything a task needs into a directory on the shared filesystem and
//! gives the command that reads it. Options a site needs (partition, time
//! limit, CPUs, memory) come from flags or the sweep file.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// Where a command's runs execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// This machine, `--jobs` at a time.
    #[default]
    Local,
    /// A Slurm job array (`sbatch`); results land in the same directory.
    Slurm,
}

/// How to hand work to Slurm: its options, and whether to stop at
/// writing the script.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub options: SlurmOptions,
    /// Write and print the script, do not submit it.
    pub dry_run: bool,
}

/// Array tasks per submission unless asked otherwise (Slurm's own default
/// `MaxArraySize` is 1001 indices).
pub const DEFAULT_MAX_ARRAY: usize = 1000;

/// Slurm settings of a job array; `None` leaves the site's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `00:30:00`), per array task.
    pub time: Option<String>,
    /// `--cpus-per-task`; also the parallel runs inside a task.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (e.g. `2G`), per array task.
    pub mem: Option<String>,
    /// Most array tasks in one submission (work is chunked to fit).
    pub max_array: Option<usize>,
    /// Pieces of work per array task (default 1); short runs are cheaper
    /// in chunks than one scheduled task each.
    pub runs_per_task: Option<usize>,
}

impl SlurmOptions {
    /// `self` with every option `over` sets replaced.
    pub fn overridden_by(&self, over: &SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            max_array: over.max_array.or(self.max_array),
            runs_per_task: over.runs_per_task.or(self.runs_per_task),
        }
    }

    /// Refuses values that would not survive an `#SBATCH` line.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("partition", &self.partition),
            ("time", &self.time),
            ("mem", &self.mem),
        ] {
            if let Some(v) = v {
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_:.,+".contains(c));
                if !ok {
                    bail!("slurm {key} {v:?}: expected one word of letters, digits and -_:.,+");
                }
            }
        }
        if self.cpus_per_task == Some(0) {
            bail!("slurm cpus_per_task must be at least 1");
        }
        if self.max_array == Some(0) {
            bail!("slurm max_array must be at least 1");
        }
        if self.runs_per_task == Some(0) {
            bail!("slurm runs_per_task must be at least 1");
        }
        Ok(())
    }

    /// Array tasks for `items` independent pieces of work: one per
    /// `runs_per_task`, at most `max_array`.
    pub fn tasks_for(&self, items: usize) -> usize {
        items
            .div_ceil(self.runs_per_task.unwrap_or(1))
            .clamp(1, self.max_array.unwrap_or(DEFAULT_MAX_ARRAY))
    }
}

/// A word quoted for bash (single quotes; `'` written as `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `sbatch` script of a job array of `tasks` tasks, each running
/// `command` (program and arguments, quoted here) with the task's index
/// (`$SLURM_ARRAY_TASK_ID`) appended, so the command ends with the flag
/// that takes it; each task's output goes to `log_dir/%A_%a.out`.
pub fn array_script(
    job_name: &str,
    tasks: usize,
    log_dir: &Path,
    options: &SlurmOptions,
    command: &[String],
    comment: &str,
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    for line in comment.lines() {
        s.push_str(&format!("# {line}\n"));
    }
    let name: String = job_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.push_str(&format!("#SBATCH --job-name={name}\n"));
    s.push_str(&format!("#SBATCH --array=0-{}\n", tasks.saturating_sub(1)));
    s.push_str(&format!(
        "#SBATCH --output={}/%A_%a.out\n",
        log_dir.display()
    ));
    if let Some(p) = &options.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &options.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(c) = options.cpus_per_task {
        s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    if let Some(m) = &options.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    s.push_str("set -euo pipefail\n");
    let words: Vec<String> = command.iter().map(|w| shell_quote(w)).collect();
    s.push_str(&format!(
        "exec {} \"$SLURM_ARRAY_TASK_ID\"\n",
        words.join(" ")
    ));
    s
}

/// Writes `script` to `path` and submits it, or prints it with
/// `dry_run`; the job ID when submitted.
pub fn write_and_submit(path: &Path, script: &str, dry_run: bool) -> Result<Option<String>> {
    emorl_log::write_atomic(path, script.as_bytes())?;
    if dry_run {
        print!("{script}");
        eprintln!(
            "not submitted (--dry-run); submit with: sbatch {}",
            path.display()
        );
        return Ok(None);
    }
    submit(path).map(Some)
}

/// Submits `script` with `sbatch --parsable`; the job ID.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "sbatch not found: --backend slurm needs Slurm's client commands on PATH \
                 (--dry-run writes the script without submitting it)"
            ),
            _ => anyhow!("cannot run sbatch: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "sbatch refused {}: {}",
            script.display(),
            err.trim().lines().last().unwrap_or("no message")
        );
    }
    // `--parsable` prints "ID" or "ID;cluster".
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed {stdout:?}, not a job ID");
    }
    Ok(id)
}

/// The absolute form of `p` (which must exist).
pub fn absolute(p: &Path) -> Result<std::path::PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("cannot resolve {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_the_command_and_sets_only_given_options() {
        let o = SlurmOptions {
            partition: Some("gpu".into()),
            cpus_per_task: Some(4),
            ..Default::default()
        };
        let cmd = vec![
            "/opt/em orl".to_string(),
            "it's".to_string(),
            "--task".to_string(),
        ];
        let s = array_script("my sweep", 3, Path::new("/d/slurm"), &o, &cmd, "a\nb");
        assert!(s.starts_with("#!/bin/bash\n# a\n# b\n"), "{s}");
        assert!(s.contains("#SBATCH --job-name=my_sweep\n"));
        assert!(s.contains("#SBATCH --array=0-2\n"));
        assert!(s.contains("#SBATCH --output=/d/slurm/%A_%a.out\n"));
        assert!(s.contains("#SBATCH --partition=gpu\n#SBATCH --cpus-per-task=4\n"));
        assert!(!s.contains("--time") && !s.contains("--mem"));
        assert!(s.ends_with("exec '/opt/em orl' 'it'\\''s' '--task' \"$SLURM_ARRAY_TASK_ID\"\n"));
    }

    #[test]
    fn options_merge_validate_and_cap_the_array() {
        let file = SlurmOptions {
            partition: Some("short".into()),
            mem: Some("1G".into()),
            ..Default::default()
        };
        let flags = SlurmOptions {
            mem: Some("2G".into()),
            max_array: Some(4),
            ..Default::default()
        };
        let o = file.overridden_by(&flags);
        assert_eq!(o.partition.as_deref(), Some("short"));
        assert_eq!(o.mem.as_deref(), Some("2G"));
        assert_eq!(o.tasks_for(10), 4);
        assert_eq!(o.tasks_for(3), 3);
        assert_eq!(SlurmOptions::default().tasks_for(5000), DEFAULT_MAX_ARRAY);
        let chunked = SlurmOptions {
            runs_per_task: Some(20),
            ..Default::default()
        };
        assert_eq!(chunked.tasks_for(120), 6);
        assert_eq!(chunked.tasks_for(121), 7);
        assert_eq!(chunked.tasks_for(3), 1);
        o.validate().unwrap();
        let bad = SlurmOptions {
            partition: Some("a b\n#SBATCH --x".into()),
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("slurm partition"), "{e}");
    }
}
