//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

pub mod slurm;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn root() -> PathBuf {
    // The tests belong to the `app` crate; the repository root is its parent.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built `emorl` binary, with LD_LIBRARY_PATH removed so that the run
/// path baked into the binary is what finds libtorch.
pub fn emorl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_emorl"));
    c.env_remove("LD_LIBRARY_PATH");
    c.env_remove("RUST_LOG");
    c
}

pub fn run(args: &[&str]) -> Output {
    emorl()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run emorl {args:?}: {e}"))
}

/// Runs emorl with `input` on its standard input.
pub fn run_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = emorl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run emorl {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python with the reference packages (scripts/setup.sh + scripts/test.sh).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/emorl/venv/bin/python")
}

/// What real TensorBoard's EventAccumulator reads from a run directory.
pub fn tensorboard_read(dir: &Path) -> serde_json::Value {
    let script = root().join("crates/log/tests/read_events.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/test.sh, which installs tensorboard",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "reading events failed (is tensorboard installed? `pip install tensorboard`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reader output is JSON")
}

/// A running server, killed when dropped (tests never leave one behind).
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `emorl serve` on a free port; without `--model` in `extra`, the
/// dynamics only (`--engine-only`).
pub fn start_server(out: &Path, extra: &[&str]) -> Server {
    start_server_with(out, extra, &[])
}

/// [`start_server`] with environment variables `envs` set for the server.
pub fn start_server_with(out: &Path, extra: &[&str], envs: &[(&str, &Path)]) -> Server {
    let engine_only: &[&str] = if extra.contains(&"--model") {
        &[]
    } else {
        &["--engine-only"]
    };
    let mut child = emorl()
        .envs(envs.iter().copied())
        .args(["serve", "--port", "0", "--out"])
        .arg(out)
        .args(extra)
        .args(engine_only)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emorl serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    Server { child, base }
}
