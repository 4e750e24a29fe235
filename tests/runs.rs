//! A run directory belongs to one run: one emorl process at a time writes it
//! (an exclusive lock), `train` never mixes a second run into it, `--resume`
//! continues a stored run from its checkpoint exactly (no repeated metrics
//! steps, the same result as an uninterrupted run), and `reproduce` trusts a
//! stored seed only when it was computed under the same options.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir` with its bytes, to show that nothing was written.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path.strip_prefix(dir).expect("inside").to_path_buf(), bytes);
            }
        }
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stderr(&o)
}

/// Fails with exit 2 and one line holding every `needle`; nothing panicked.
fn refused(args: &[&str], needles: &[&str]) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should be refused: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Every metrics record without the fields that depend on the clock.
fn records(dir: &Path) -> Vec<Value> {
    metrics(dir)
        .into_iter()
        .map(|mut v| {
            let m = v.as_object_mut().expect("object");
            m.remove("wall_time");
            m.remove("charts/SPS");
            v
        })
        .collect()
}

fn steps(dir: &Path) -> Vec<i64> {
    metrics(dir)
        .iter()
        .map(|v| v["step"].as_i64().expect("step"))
        .collect()
}

fn learner_state(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("checkpoints/train_state.json")).expect("state");
    serde_json::from_str::<Value>(&text).expect("json")["learner"].take()
}

const TABULAR: [&str; 4] = ["--env", "v2-threat-grid", "--agent", "emotional-ed"];

fn train(out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train"];
    args.extend(TABULAR);
    args.extend(["--out", s(out)]);
    args.extend(extra);
    ok(&args)
}

/// The case: a second `train` into the directory of a first one used
/// to overwrite config.toml and append to metrics.jsonl. Now it is refused,
/// with `--resume` named, and the directory is left byte for byte as it was.
#[test]
fn train_into_an_existing_run_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let y = tmp.path().join("Y");
    train(&y, &["--episodes", "3"]);
    let before = snapshot(&y);
    refused(
        &[
            "train",
            "--env",
            "gridworld",
            "--agent",
            "dqn",
            "--episodes",
            "2",
            "--out",
            s(&y),
        ],
        &[s(&y), "--resume", "new --out"],
    );
    // The same command again (rerunning a killed run) is refused the same way.
    refused(
        &[
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "emotional-ed",
            "--episodes",
            "3",
            "--out",
            s(&y),
        ],
        &["--resume"],
    );
    assert_eq!(snapshot(&y), before);
    assert_eq!(metrics(&y).len(), 3);
    // A directory holding anything else is not taken over either.
    let other = tmp.path().join("notes");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("todo.txt"), "x").expect("write");
    refused(
        &[
            "train",
            "--env",
            "gridworld",
            "--agent",
            "dqn",
            "--out",
            s(&other),
        ],
        &["todo.txt"],
    );
    assert_eq!(snapshot(&other).len(), 1);
    // An empty directory made beforehand is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    train(&empty, &["--episodes", "2"]);
}

/// While one process holds a run directory (here: this test, through the
/// library's own lock), `train`, `train --resume` and `reproduce` into it are
/// refused with one line naming the directory, and write nothing.
#[test]
fn a_second_writer_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("run");
    train(&dir, &["--episodes", "3"]);
    let before = snapshot(&dir);
    let held = emorl_log::RunDir::at(&dir).expect("lock");
    let busy = [s(&dir), "in use by another emorl process"];
    let mut train_args = vec!["train"];
    train_args.extend(TABULAR);
    train_args.extend(["--out", s(&dir)]);
    refused(&train_args, &busy);
    refused(&["train", "--out", s(&dir), "--resume"], &busy);
    refused(
        &["reproduce", "v2-tabular", "--seeds", "3", "--out", s(&dir)],
        &busy,
    );
    let empty = tmp.path().join("fresh");
    let held_empty = emorl_log::RunDir::at(&empty).expect("lock");
    refused(
        &[
            "reproduce",
            "v2-tabular",
            "--seeds",
            "3",
            "--out",
            s(&empty),
        ],
        &busy[1..],
    );
    refused(
        &[
            "train",
            "--env",
            "gridworld",
            "--agent",
            "dqn",
            "--out",
            s(&empty),
        ],
        &busy[1..],
    );
    assert_eq!(snapshot(&dir), before);
    assert_eq!(snapshot(&empty).len(), 1, "only the lock file");
    drop((held, held_empty));
    // Released: the run continues.
    train(&dir, &["--resume", "--episodes", "5"]);
    assert_eq!(steps(&dir), [0, 1, 2, 3, 4]);
}

/// `train` and `reproduce` cannot share a directory either way.
#[test]
fn train_and_reproduce_do_not_share_a_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trained = tmp.path().join("trained");
    train(&trained, &["--episodes", "2"]);
    let before = snapshot(&trained);
    refused(
        &[
            "reproduce",
            "v2-tabular",
            "--seeds",
            "3",
            "--out",
            s(&trained),
        ],
        &[s(&trained), "config.toml"],
    );
    assert_eq!(snapshot(&trained), before);
    let reproduced = tmp.path().join("reproduced");
    ok(&[
        "reproduce",
        "v2-tabular",
        "--seeds",
        "3",
        "--permutations",
        "20",
        "--out",
        s(&reproduced),
    ]);
    let before = snapshot(&reproduced);
    let mut args = vec!["train"];
    args.extend(TABULAR);
    args.extend(["--out", s(&reproduced)]);
    refused(&args, &[s(&reproduced)]);
    refused(
        &["train", "--out", s(&reproduced), "--resume"],
        &["no run to resume"],
    );
    assert_eq!(snapshot(&reproduced), before);
}

/// A run killed after its last checkpoint (episode 20) had logged episodes
/// 20-24 already. `--resume` drops those, continues from the checkpoint, and
/// ends exactly where an uninterrupted run ends: every metrics record equal,
/// each step once in metrics.jsonl and in what TensorBoard shows, and a
/// bit-identical Q-table and learner state (channels included).
#[test]
fn resumed_tabular_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let full = tmp.path().join("full");
    train(&full, &["--episodes", "40", "checkpoint_every=10"]);

    let killed = tmp.path().join("killed");
    train(&killed, &["--episodes", "20", "checkpoint_every=10"]);
    let ck = killed.join("checkpoints");
    let at_20 = (
        std::fs::read(ck.join("train_state.json")).expect("state"),
        std::fs::read(ck.join("q_table.json")).expect("q"),
    );
    train(&killed, &["--resume", "--episodes", "25"]);
    assert_eq!(steps(&killed), (0..25).collect::<Vec<_>>());
    // The process "died" after logging episode 24, its last checkpoint at 20.
    std::fs::write(ck.join("train_state.json"), &at_20.0).expect("write");
    std::fs::write(ck.join("q_table.json"), &at_20.1).expect("write");

    let err = train(&killed, &["--resume", "--episodes", "40"]);
    assert!(
        err.contains("resuming") && err.contains("episode 20"),
        "{err}"
    );
    assert_eq!(steps(&killed), (0..40).collect::<Vec<_>>());
    assert_eq!(records(&killed), records(&full));
    assert_eq!(learner_state(&killed), learner_state(&full));
    assert_eq!(
        std::fs::read(killed.join("checkpoints/q_table.json")).expect("q"),
        std::fs::read(full.join("checkpoints/q_table.json")).expect("q"),
        "bit-identical Q-table"
    );

    // TensorBoard shows one history: each step once, the uninterrupted values.
    let (a, b) = (tensorboard_read(&killed), tensorboard_read(&full));
    for tag in [
        "charts/episodic_return",
        "emotion/fear",
        "emotion/anger_tonic",
    ] {
        let got = a["scalars"][tag].as_array().expect("tag");
        let tb_steps: Vec<i64> = got.iter().map(|p| p[0].as_i64().expect("step")).collect();
        assert_eq!(tb_steps, (0..40).collect::<Vec<_>>(), "{tag}");
        assert_eq!(a["scalars"][tag], b["scalars"][tag], "{tag}");
    }
    assert_eq!(a["hparams"]["session_start"]["agent"], "emotional-ed");
}

/// Settings other than `episodes` and `checkpoint_every` cannot change on
/// resume; the message names the setting. Fewer episodes than are done are
/// refused, and an empty `--out` has nothing to resume.
#[test]
fn resume_refuses_another_configuration() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("run");
    train(&dir, &["--episodes", "6", "--seed", "4"]);
    let before = snapshot(&dir);
    refused(
        &["train", "--out", s(&dir), "--resume", "--seed", "5"],
        &["seed = 4", "seed = 5"],
    );
    refused(
        &["train", "--out", s(&dir), "--resume", "agent_config.lr=0.3"],
        &["agent_config.lr"],
    );
    let mut other_agent = vec!["train", "--out", s(&dir), "--resume"];
    other_agent.extend(["--env", "v2-threat-grid", "--agent", "q-learning"]);
    refused(&other_agent, &["agent"]);
    refused(
        &["train", "--out", s(&dir), "--resume", "--episodes", "5"],
        &["at least 6"],
    );
    assert_eq!(snapshot(&dir), before);
    // Repeating the whole original command with --resume is fine: complete.
    let mut same = vec!["train"];
    same.extend(TABULAR);
    same.extend([
        "--episodes",
        "6",
        "--seed",
        "4",
        "--out",
        s(&dir),
        "--resume",
    ]);
    assert!(ok(&same).contains("complete"));
    assert_eq!(snapshot(&dir), before);
    let nothing = tmp.path().join("nothing");
    refused(
        &["train", "--out", s(&nothing), "--resume"],
        &["no run to resume"],
    );
    assert!(!nothing.exists());
    refused(&["train", "--resume"], &["--out"]);
}

/// A DQN run continues exactly too (weights, Adam moments, replay buffer,
/// generator): a run whose last checkpoint is older than its metrics ends
/// with the uninterrupted run's records and bit-identical networks.
#[test]
fn resumed_dqn_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dqn = ["--env", "gridworld", "--agent", "fear-dqn", "--seed", "1"];
    let go = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train"];
        args.extend(dqn);
        args.extend(["--out", s(out)]);
        args.extend(extra);
        ok(&args)
    };
    let full = tmp.path().join("full");
    go(&full, &["--episodes", "16"]);
    let killed = tmp.path().join("killed");
    go(&killed, &["--episodes", "8"]);
    let saved = tmp.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");
    for f in std::fs::read_dir(killed.join("checkpoints/dqn")).expect("list") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, saved.join(f.file_name().expect("name"))).expect("copy");
    }
    go(&killed, &["--resume", "--episodes", "11"]);
    // Killed after logging episode 10; its last checkpoint is at episode 8.
    std::fs::remove_dir_all(killed.join("checkpoints/dqn")).expect("rm");
    std::fs::rename(&saved, killed.join("checkpoints/dqn")).expect("restore");
    go(&killed, &["--resume", "--episodes", "16"]);
    assert_eq!(steps(&killed), (0..16).collect::<Vec<_>>());
    assert_eq!(records(&killed), records(&full));
    for f in [
        "q_network.safetensors",
        "target_network.safetensors",
        "training.safetensors",
    ] {
        assert_eq!(
            std::fs::read(killed.join("checkpoints/dqn").join(f)).expect("killed"),
            std::fs::read(full.join("checkpoints/dqn").join(f)).expect("full"),
            "{f}"
        );
    }
}

/// Ctrl-C (SIGINT) finishes the episode, writes a checkpoint and exits 130
/// with a message naming `--resume`; resuming ends where an uninterrupted
/// run of the same length ends.
#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_the_run_resumes() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("run");
    let mut args = vec!["train"];
    args.extend(TABULAR);
    args.extend([
        "--episodes",
        "100000000",
        "--out",
        s(&dir),
        "histogram_every=0",
        // Every episode its own record (the default would average windows
        // of 100 000 episodes in so long a run).
        "log_every=1",
    ]);
    let child = emorl()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Metrics are written once the loop (and its Ctrl-C handler) runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metrics_lines(&dir) < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "training did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after episode") && err.contains("--resume"),
        "{err}"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("checkpoints/train_state.json")).expect("checkpoint"),
    )
    .expect("json");
    let done = state["progress"]["episodes_done"].as_u64().expect("done") as usize;
    assert_eq!(
        metrics(&dir).len(),
        done,
        "the checkpoint is at the last logged episode"
    );

    let total = (done + 30).to_string();
    train(&dir, &["--resume", "--episodes", &total]);
    let full = tmp.path().join("full");
    train(&full, &["--episodes", &total, "histogram_every=0"]);
    assert_eq!(steps(&dir), (0..done as i64 + 30).collect::<Vec<_>>());
    assert_eq!(learner_state(&dir), learner_state(&full));
}

/// The TensorBoard event files directly in `dir`.
fn event_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out"))
        })
        .collect()
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// Two reproductions with different generators once wrote into one --out at
/// the same time and the table mixed both seed sets; resuming kept it. Now a
/// stored seed carries its options, and one written under other options is
/// recomputed: the table equals a clean run's byte for byte.
#[test]
fn reproduce_resume_recomputes_seeds_stored_under_other_options() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = [
        "reproduce",
        "v2-tabular",
        "--seeds",
        "6",
        "--permutations",
        "50",
    ];
    let go = |out: &Path, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(["--out", s(out)]);
        args.extend(extra);
        ok(&args)
    };
    let clean = tmp.path().join("clean");
    go(&clean, &["--rng", "numpy"]);
    let fast = tmp.path().join("fast");
    go(&fast, &["--rng", "fast"]);
    let mixed = tmp.path().join("mixed");
    go(&mixed, &["--rng", "numpy"]);
    // What the concurrent fast run left in the numpy run's store.
    for exp in ["fear", "anger", "integration"] {
        for seed in 0..4 {
            let f = format!("seeds/{exp}/{seed}.json");
            std::fs::copy(fast.join(&f), mixed.join(&f)).expect("copy");
        }
    }
    go(&mixed, &["--rng", "numpy"]);
    assert_eq!(
        std::fs::read(mixed.join("table.json")).expect("mixed"),
        std::fs::read(clean.join("table.json")).expect("clean"),
    );
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(mixed.join("seeds/fear/0.json")).expect("seed"),
    )
    .expect("json");
    assert_eq!(seed["options"]["rng"], "numpy");
    // And a second run with other options on the same --out is refused.
    let o = run(&[
        "reproduce",
        "v2-tabular",
        "--seeds",
        "6",
        "--rng",
        "fast",
        "--out",
        s(&mixed),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("other options"), "{}", stderr(&o));
}

/// Many short episodes: the default logs one record per window of episodes
/// (means over it), so a long tabular run stays at about 1000 records;
/// `log_every=1` keeps the full per-episode record. The windows' means are
/// the per-episode values averaged.
#[test]
fn logging_of_many_short_episodes_is_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (full, bounded) = (tmp.path().join("full"), tmp.path().join("bounded"));
    train(
        &full,
        &["--episodes", "5000", "log_every=1", "max_steps=20"],
    );
    train(&bounded, &["--episodes", "5000", "max_steps=20"]);
    let all = records(&full);
    let windows = records(&bounded);
    assert_eq!(all.len(), 5000);
    assert_eq!(windows.len(), 1000, "5000 episodes in windows of 5");
    assert_eq!(steps(&bounded)[..3], [4, 9, 14]);
    // The same run underneath: each window's mean return is the mean of the
    // full record's five episodes.
    for (w, rec) in windows.iter().enumerate().step_by(97) {
        let tag = "charts/episodic_return";
        let mean: f64 = (0..5)
            .map(|i| all[w * 5 + i][tag].as_f64().expect("return"))
            .sum::<f64>()
            / 5.0;
        let got = rec[tag].as_f64().expect("return");
        assert!((got - mean).abs() < 1e-9, "window {w}: {got} vs {mean}");
    }
    let size = |dir: &Path| -> u64 {
        event_files(dir)
            .iter()
            .map(|p| p.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    assert!(
        size(&bounded) * 3 < size(&full),
        "event files: bounded {} B, full {} B",
        size(&bounded),
        size(&full)
    );
}

/// Rerunning a finished reproduction re-renders it from its stored seeds:
/// its TensorBoard record is replaced, not doubled (one event file), and
/// `timing.json` keeps the compute time of the process that did the work
/// (this one's is added, not substituted).
#[test]
fn rerendering_a_reproduction_keeps_one_event_file_and_its_timing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("rep");
    let args = [
        "reproduce",
        "v2-tabular",
        "--seeds",
        "4",
        "--permutations",
        "20",
        "--out",
        s(&out),
    ];
    ok(&args);
    let wall = |dir: &Path| -> f64 {
        let t: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("timing.json")).expect("timing"),
        )
        .expect("json");
        t["wall_seconds"].as_f64().expect("wall_seconds")
    };
    let events = |dir: &Path| event_files(dir).len();
    let (first, table) = (
        wall(&out),
        std::fs::read_to_string(out.join("table.md")).expect("table"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&args);
    assert_eq!(events(&out), 1);
    assert!(wall(&out) >= first, "{} < {first}", wall(&out));
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).expect("table"),
        table
    );
}
