//! `emorl sweep`: a grid of trainings run locally, resumed after a kill,
//! split into array tasks, and refused with one line when malformed.

mod common;

use common::{emorl, root, run, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A sweep file of `agents` × 2 learning rates × `seeds` over the shipped
/// threat-grid config cut to `episodes` episodes.
fn sweep_file(dir: &Path, seeds: &str, episodes: usize) -> PathBuf {
    let base = root().join("configs/train/threat-grid.toml");
    let text = format!(
        r#"name = "t"
base = "{}"
seeds = "{seeds}"
control = {{ agent = "q-learning" }}

[config]
episodes = {episodes}
histogram_every = 0

[axes]
agent = ["q-learning", "emotional-ed"]
"agent_config.lr" = [0.1, 0.3]

[[metrics]]
name = "return"
key = "charts/episodic_return"

[[metrics]]
name = "final_steps"
key = "charts/episodic_length"
reduce = "last"
"#,
        base.display()
    );
    let p = dir.join("t.toml");
    std::fs::write(&p, text).expect("write sweep file");
    p
}

/// `emorl sweep FILE --out OUT EXTRA...`.
fn sweep(file: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn results(dir: &Path) -> usize {
    walk(&dir.join("results"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_local_sweep_makes_one_table_and_a_rerun_resumes_without_redoing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = sweep_file(tmp.path(), "0..3", 20);
    let out = tmp.path().join("out");
    let args = [
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // 2 agents x 2 learning rates x 3 seeds.
    assert_eq!(results(&out), 12);
    let table = read(&out.join("table.md"));
    assert!(
        table.contains("| agent | agent_config.lr | seeds | return mean"),
        "{table}"
    );
    assert!(table.contains("| emotional-ed | 0.3 | 3 |"), "{table}");
    assert!(stdout(&o).contains("Sweep t"), "{}", stdout(&o));
    let json: serde_json::Value = serde_json::from_str(&read(&out.join("table.json"))).unwrap();
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(4));
    for f in ["figure.svg", "figure.png", "sweep.json", "sweep.toml"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Every run is an ordinary training run with its own TensorBoard files.
    let cells: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(cells.len(), 4);
    let run0 = cells[0].join("seed-0");
    assert!(walk(&run0)
        .iter()
        .any(|p| p.to_string_lossy().contains("tfevents")));
    let cfg = read(&run0.join("config.toml"));
    assert!(
        cfg.contains("seed = 0") && cfg.contains("episodes = 20"),
        "{cfg}"
    );

    // The metrics are what the runs logged: a run's "final_steps" is the
    // last episodic_length record of its metrics.jsonl.
    let some_result = walk(&out.join("results"))[0].clone();
    let r: serde_json::Value = serde_json::from_str(&read(&some_result)).unwrap();
    let seed = r["seed"].as_u64().unwrap();
    let cell = r["cell"].as_str().unwrap();
    let metrics = read(
        &out.join("runs")
            .join(cell)
            .join(format!("seed-{seed}/metrics.jsonl")),
    );
    let last = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["charts/episodic_length"].as_f64())
        .next_back()
        .unwrap();
    assert_eq!(r["metrics"]["final_steps"].as_f64(), Some(last));

    // Same command again: nothing is rerun, the same table comes out.
    let table_json = read(&out.join("table.json"));
    let stamps: Vec<_> = walk(&out.join("results"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    let again = run(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    let stamps_after: Vec<_> = walk(&out.join("results"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(stamps, stamps_after);
    assert_eq!(read(&out.join("table.json")), table_json);
    assert_eq!(stdout(&again), stdout(&o));

    // A different sweep into the same directory is refused; nothing changes.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, read(&file).replace("\"0..3\"", "\"0..4\"")).unwrap();
    let o = sweep(&other, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("holds another sweep") && e.contains("seeds"),
        "{e}"
    );
    assert_eq!(results(&out), 12);
}

#[test]
fn a_killed_sweep_resumes_to_the_table_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = sweep_file(tmp.path(), "0..6", 300);
    let whole = tmp.path().join("whole");
    let o = sweep(&file, &whole, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let cut = tmp.path().join("cut");
    let mut child = emorl()
        .args([
            "sweep",
            file.to_str().unwrap(),
            "--out",
            cut.to_str().unwrap(),
            "--jobs",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sweep");
    let t0 = Instant::now();
    while results(&cut) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no results after two minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    let partial = results(&cut);
    assert!(partial < 24, "all runs finished before the kill");
    // The killed sweep's training (the run it had started) dies with it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!cut.join("table.md").exists());

    let o = sweep(&file, &cut, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&cut), 24);
    assert_eq!(
        read(&cut.join("table.json")),
        read(&whole.join("table.json"))
    );
    assert_eq!(read(&cut.join("table.md")), read(&whole.join("table.md")));
}

#[test]
fn array_tasks_fill_the_same_table_as_a_local_sweep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = sweep_file(tmp.path(), "0..2", 20);
    let local = tmp.path().join("local");
    let o = sweep(&file, &local, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --dry-run writes the plan and the script; nothing runs.
    let arr = tmp.path().join("arr");
    let o = sweep(
        &file,
        &arr,
        &[
            "--backend",
            "slurm",
            "--dry-run",
            "--max-array",
            "3",
            "--partition",
            "short",
            "--time",
            "00:05:00",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert_eq!(script, read(&arr.join("slurm/sweep.sbatch")));
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("#SBATCH --array=0-2\n"), "{script}");
    assert!(script.contains("#SBATCH --partition=short\n"), "{script}");
    assert!(script.contains("#SBATCH --time=00:05:00\n"), "{script}");
    let abs = std::fs::canonicalize(&arr).unwrap();
    assert!(
        script.contains(&format!(
            "'sweep' 'run-task' '{}' '--task' \"$SLURM_ARRAY_TASK_ID\"",
            abs.display()
        )),
        "{script}"
    );
    assert!(stderr(&o).contains("not submitted"), "{}", stderr(&o));
    assert_eq!(results(&arr), 0);

    // Collecting before the runs end names what is missing, writes nothing.
    let o = run(&["sweep", "collect", arr.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("8 of 8 runs have no result yet"),
        "{}",
        stderr(&o)
    );
    assert!(!arr.join("table.md").exists());

    // What the array tasks would run, run here: 8 runs in 3 tasks.
    for task in 0..3 {
        let o = run(&[
            "sweep",
            "run-task",
            arr.to_str().unwrap(),
            "--task",
            &task.to_string(),
        ]);
        assert!(o.status.success(), "task {task}: {}", stderr(&o));
    }
    let o = run(&["sweep", "run-task", arr.to_str().unwrap(), "--task", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tasks 0 to 2"), "{}", stderr(&o));
    let o = run(&["sweep", "collect", arr.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&arr.join("table.json")),
        read(&local.join("table.json"))
    );

    // Everything already done: resubmitting says so instead of submitting.
    let o = sweep(&file, &arr, &["--backend", "slurm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("all 8 runs have results"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn malformed_sweeps_are_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = read(&sweep_file(tmp.path(), "0..2", 5));
    let cases = [
        (
            good.replace("seeds = \"0..2\"", "seeds = \"2..0\""),
            "seeds",
        ),
        (
            good.replace("[axes]", "[axes]\nbogus_key = [1]"),
            "bogus_key",
        ),
        (
            good.replace(
                "\"agent_config.lr\" = [0.1, 0.3]",
                "\"agent_config.lr\" = [0.1, \"x\"]",
            ),
            "lr",
        ),
        (
            good.replace(
                "control = { agent = \"q-learning\" }",
                "control = { agent = \"sarsa\" }",
            ),
            "control.agent",
        ),
        (
            good.replace("name = \"return\"", "name = \"return\"\nscale = 2"),
            "scale",
        ),
        (good.replace("name = \"t\"", "name = \"a b\""), "name"),
        ("not toml at all [".to_string(), "t.toml"),
    ];
    for (text, needle) in cases {
        let file = tmp.path().join("t.toml");
        std::fs::write(&file, &text).unwrap();
        let out = tmp.path().join("never");
        let o = sweep(&file, &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{needle}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim_end().lines().count(), 1, "{needle}: {e}");
        assert!(
            e.starts_with("error: ") && e.contains(needle),
            "{needle}: {e}"
        );
        assert!(!out.exists(), "{needle}: wrote {}", out.display());
    }
    let o = run(&["sweep", "collect", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a sweep directory"),
        "{}",
        stderr(&o)
    );
}

const V2: [&str; 6] = ["reproduce", "v2-tabular", "--seeds", "3", "--blocks", "2"];

/// `emorl reproduce v2-tabular --seeds 3 --blocks 2 --out OUT EXTRA...`.
fn v2(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = V2.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn reproduce_blocks_computed_apart_make_the_table_of_one_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    let o = v2(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let split = tmp.path().join("split");
    let o = v2(&split, &["--backend", "slurm", "--dry-run", "--mem", "1G"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
    assert!(script.contains("#SBATCH --mem=1G\n"), "{script}");
    assert!(
        script.contains("'--out' '") && script.contains("'--block' \"$SLURM_ARRAY_TASK_ID\"\n"),
        "{script}"
    );
    assert!(!split.join("table.json").exists());
    // The two array tasks, run here; they store seeds and write no table.
    for block in ["1", "0"] {
        let o = v2(&split, &["--block", block]);
        assert!(o.status.success(), "block {block}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("block {block}: seeds")),
            "{}",
            stderr(&o)
        );
        assert!(!split.join("table.json").exists());
    }
    // The command without --backend finds every seed stored.
    let o = v2(&split, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&split.join("table.json")),
        read(&whole.join("table.json"))
    );
}

/// A sweep over a `reproduce` table: every run is the v2-dqn table at the
/// cell's settings from its own seed offset; the metrics are the table's
/// numbers, and bad metric specs are one line before anything runs.
#[test]
fn a_sweep_over_a_reproduce_table_collects_its_numbers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("dqn.toml");
    let text = r#"name = "dqn"
reproduce = "v2-dqn"
seeds = [0, 1]
[options]
seeds = 2
episodes = 6
permutations = 20
[axes]
"exp16b.settings.max_steps" = [30, 60]
[[metrics]]
name = "reward"
row = ["Exp 16b final reward", "fear-dqn vs dqn"]
key = "Treatment mean"
"#;
    std::fs::write(&file, text).unwrap();
    let out = tmp.path().join("out");
    let o = sweep(&file, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&out), 4);
    let md = read(&out.join("table.md"));
    assert!(md.contains("exp16b.settings.max_steps"), "{md}");
    // Each run: the table from seed offset 2 × the sweep seed, at the
    // cell's setting; the collected value is the table's.
    let cells: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(cells.len(), 2);
    for cell in &cells {
        let id = cell.file_name().unwrap().to_str().unwrap();
        let cfg = read(&out.join(format!("cells/{id}.toml")));
        assert!(
            cfg.contains("max_steps = 30") || cfg.contains("max_steps = 60"),
            "{cfg}"
        );
        let table = read(&cell.join("seed-1/table.md"));
        assert!(table.contains("2 seeds (2–3)"), "{table}");
        let line = table
            .lines()
            .find(|l| l.starts_with("| Exp 16b final reward | fear-dqn vs dqn |"))
            .expect("row");
        let treatment: f64 = line.split('|').nth(7).unwrap().trim().parse().unwrap();
        let result: serde_json::Value =
            serde_json::from_str(&read(&out.join(format!("results/{id}/seed-1.json")))).unwrap();
        assert_eq!(result["metrics"]["reward"].as_f64(), Some(treatment));
    }
    // Rerun: everything stored, same table.
    let o = sweep(&file, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&out.join("table.md")), md);
    for (bad, needle) in [
        (
            text.replace(
                "row = [\"Exp 16b final reward\", \"fear-dqn vs dqn\"]\n",
                "",
            ),
            "name the row",
        ),
        (
            text.replace("episodes = 6", "episodes = 6\njobs = 2"),
            "options.jobs",
        ),
        (
            text.replace("reproduce = \"v2-dqn\"", "reproduce = \"v2-tabular\""),
            "takes no --config",
        ),
        (
            text.replace("reproduce = \"v2-dqn\"", "reproduce = \"nope\""),
            "unknown table 'nope'",
        ),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let never = tmp.path().join("never");
        let o = sweep(&file, &never, &[]);
        assert_eq!(o.status.code(), Some(2), "{needle}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim_end().lines().count(), 1, "{needle}: {e}");
        assert!(e.contains(needle), "{needle}: {e}");
        assert!(!never.exists());
    }
}

/// v2-dqn splits by seed block too: blocks computed apart pool into the
/// table of one run (the DQN seeds are stored per experiment and arm).
#[test]
fn dqn_blocks_computed_apart_make_the_table_of_one_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dqn = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "reproduce",
            "v2-dqn",
            "--seeds",
            "2",
            "--blocks",
            "2",
            "--episodes",
            "12",
            "--permutations",
            "50",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let whole = tmp.path().join("whole");
    let o = dqn(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let split = tmp.path().join("split");
    let o = dqn(&split, &["--backend", "slurm", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
    assert!(script.contains("'--episodes' '12'"), "{script}");
    for block in ["0", "1"] {
        let o = dqn(&split, &["--block", block]);
        assert!(o.status.success(), "block {block}: {}", stderr(&o));
        assert!(!split.join("table.json").exists());
    }
    let o = dqn(&split, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&split.join("table.json")),
        read(&whole.join("table.json"))
    );
    // Four seeds in the title: the blocks pool.
    assert!(read(&whole.join("table.md")).contains("4 seeds (0–3)"));
}

#[test]
fn audit_blocks_take_the_audit_config_along() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A small tuning grid keeps the four tunings (one per process) quick.
    let cfg = tmp.path().join("audit.toml");
    std::fs::write(
        &cfg,
        "[tuning]\nseeds = 2\ngrid = { lr = [0.1], epsilon = [0.1, 0.2] }\n",
    )
    .unwrap();
    let audit = |out: &Path, extra: &[&str]| {
        let mut args = vec!["reproduce", "v3-audit", "--seeds", "2", "--blocks", "2"];
        args.extend([
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let whole = tmp.path().join("whole");
    let o = audit(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let split = tmp.path().join("split");
    let o = audit(&split, &["--backend", "slurm", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let abs = std::fs::canonicalize(&cfg).unwrap();
    assert!(
        stdout(&o).contains(&format!("'--config' '{}'", abs.display())),
        "{}",
        stdout(&o)
    );
    for block in ["0", "1"] {
        let o = audit(&split, &["--block", block]);
        assert!(o.status.success(), "block {block}: {}", stderr(&o));
    }
    let o = audit(&split, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&split.join("table.json")),
        read(&whole.join("table.json"))
    );
}

/// Runs `emorl ARGS` (a submission) against `cluster` and waits for the
/// array job it printed; the job ID and the submission's output.
fn submit_and_wait(
    cluster: &common::slurm::Cluster,
    args: &[&str],
) -> (String, std::process::Output) {
    let o = emorl()
        .args(args)
        .env("SLURM_CONF", cluster.conf())
        .output()
        .expect("submit");
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        cluster.log_tails()
    );
    let job = stdout(&o).trim().to_string();
    assert!(
        !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()),
        "{job:?}"
    );
    if let Err(e) = cluster.wait_job(&job, Duration::from_secs(300)) {
        panic!("{e}\n{}", cluster.log_tails());
    }
    (job, o)
}

#[test]
fn a_real_slurm_runs_a_sweep_whose_table_equals_the_local_one() {
    let Some(cluster) = common::slurm::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = sweep_file(tmp.path(), "0..3", 20);
    let local = tmp.path().join("local");
    let o = sweep(&file, &local, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // 12 runs, 5 per task: 3 array tasks.
    let arr = tmp.path().join("arr");
    let (job, o) = submit_and_wait(
        &cluster,
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            arr.to_str().unwrap(),
            "--backend",
            "slurm",
            "--runs-per-task",
            "5",
        ],
    );
    assert!(
        stderr(&o).contains(&format!("squeue -j {job}")),
        "{}",
        stderr(&o)
    );
    assert!(read(&arr.join("slurm/sweep.sbatch")).contains("#SBATCH --array=0-2\n"));
    for task in 0..3 {
        let log = arr.join(format!("slurm/{job}_{task}.out"));
        assert!(
            read(&log).contains(&format!("task {task}:")),
            "{}",
            log.display()
        );
    }
    assert_eq!(results(&arr), 12);
    let o = run(&["sweep", "collect", arr.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&arr.join("table.json")),
        read(&local.join("table.json"))
    );
    assert_eq!(read(&arr.join("table.md")), read(&local.join("table.md")));

    // A reproduce table fanned out by seed block, then built here.
    let whole = tmp.path().join("v2-whole");
    let o = v2(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let split = tmp.path().join("v2-split");
    let mut args = V2.to_vec();
    args.extend(["--out", split.to_str().unwrap(), "--backend", "slurm"]);
    submit_and_wait(&cluster, &args);
    let o = v2(&split, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&split.join("table.json")),
        read(&whole.join("table.json"))
    );

    let pids = cluster.daemon_pids();
    drop(cluster);
    let alive: Vec<u32> = pids
        .into_iter()
        .filter(|&p| common::slurm::pid_alive(p))
        .collect();
    assert!(alive.is_empty(), "daemons still running: {alive:?}");
}
