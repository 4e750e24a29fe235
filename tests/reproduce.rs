//! `emorl reproduce v2-tabular`: upstream's reference table (docs/protocols/v2.md §4.7)
//! exactly, deterministic output, and resuming an interrupted run.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn reproduce(out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "reproduce",
        "v2-tabular",
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("table.json")).expect("table.json");
    serde_json::from_str(&text).expect("json")
}

fn round(x: f64, dp: i32) -> f64 {
    let k = 10f64.powi(dp);
    (x * k).round() / k
}

/// Upstream's printed numbers (docs/protocols/v2.md §4.7): control mean, SD, CI low, CI high,
/// treatment mean, SD, CI low, CI high, t, d, permutation p.
const REFERENCE: [(&str, [f64; 11]); 5] = [
    (
        "Fear avoidance",
        [
            0.3273, 0.4572, 0.2006, 0.4540, 0.5730, 0.4785, 0.4403, 0.7056, -2.6249, 0.5250, 0.013,
        ],
    ),
    (
        "Anger persistence",
        [
            118.2200, 6.4785, 116.4243, 120.0157, 246.3800, 77.5478, 224.8848, 267.8752, -11.6455,
            2.3291, 0.001,
        ],
    ),
    (
        "Regret learning",
        [
            0.4126, 0.3480, 0.3161, 0.5091, 0.4880, 0.1521, 0.4458, 0.5302, -1.4037, 0.2807, 0.171,
        ],
    ),
    (
        "Multi-channel integration",
        [
            0.0200, 0.0523, 0.0055, 0.0345, 0.2442, 0.2309, 0.1802, 0.3082, -6.6961, 1.3392, 0.001,
        ],
    ),
    (
        "Transfer to a novel threat",
        [
            2.9384, 2.6104, 2.2148, 3.6620, 2.2200, 2.5940, 1.5010, 2.9390, 1.3803, -0.2761, 0.192,
        ],
    ),
];

#[test]
fn numpy_mode_reproduces_upstreams_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let table = reproduce(
        &tmp.path().join("a"),
        &["--rng", "numpy", "--seeds", "50", "--seed-offset", "0"],
    );
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    for (row, (title, want)) in rows.iter().zip(REFERENCE) {
        assert_eq!(row["cells"][0]["text"], title);
        let c = &row["comparison"];
        let num = |v: &Value| v.as_f64().expect("number");
        let got = [
            num(&c["control"]["mean"]),
            num(&c["control"]["sd"]),
            num(&c["control"]["ci_low"]),
            num(&c["control"]["ci_high"]),
            num(&c["treatment"]["mean"]),
            num(&c["treatment"]["sd"]),
            num(&c["treatment"]["ci_low"]),
            num(&c["treatment"]["ci_high"]),
            num(&c["welch_t"]),
            num(&c["cohens_d"]),
        ];
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(round(*g, 4), w, "{title}: value {i}");
        }
        // p-values are exact: the permutation test continues numpy's stream.
        assert_eq!(num(&c["permutation_p"]), want[10], "{title}: permutation p");
    }
    let md = std::fs::read_to_string(tmp.path().join("a/table.md")).expect("table.md");
    assert!(
        md.contains("significant 3/5, large effects 2/5 → MODERATE"),
        "{md}"
    );
    assert!(tmp.path().join("a/distributions.svg").is_file());
    // The same figure as PNG (2x), for papers and slides.
    let png = std::fs::read(tmp.path().join("a/distributions.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let tb = tensorboard_read(&tmp.path().join("a"));
    let fear = tb["scalars"]["fear/treatment"]
        .as_array()
        .expect("per-seed scalars");
    assert_eq!(fear.len(), 50);
    assert!(tb["texts"]["table"].to_string().contains("Fear avoidance"));
}

#[test]
fn rerun_gives_identical_table_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = [
        "--seeds",
        "12",
        "--seed-offset",
        "100",
        "--rng",
        "fast",
        "--blocks",
        "2",
    ];
    reproduce(&tmp.path().join("a"), &args);
    reproduce(&tmp.path().join("b"), &args);
    let a = std::fs::read(tmp.path().join("a/table.json")).expect("a");
    let b = std::fs::read(tmp.path().join("b/table.json")).expect("b");
    assert_eq!(a, b);
    let table: Value = serde_json::from_slice(&a).expect("json");
    // 5 experiments x (2 blocks + pooled)
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(15));
    assert!(table["rows"][2]["cells"][1]["text"]
        .as_str()
        .unwrap_or("")
        .starts_with("pooled 100–123"));
}

#[test]
fn interrupted_run_resumes_to_the_same_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = ["--seeds", "20", "--blocks", "2"];
    let full = tmp.path().join("full");
    reproduce(&full, &args);
    let resumed = tmp.path().join("resumed");
    reproduce(&resumed, &args);
    // Simulate a run killed midway: results not written yet, some seeds not finished.
    for f in [
        "table.json",
        "table.md",
        "distributions.svg",
        "distributions.png",
    ] {
        std::fs::remove_file(resumed.join(f)).expect("remove");
    }
    for (exp, seeds) in [
        ("fear", 7..40u64),
        ("integration", 0..40),
        ("transfer", 19..21),
    ] {
        for s in seeds {
            std::fs::remove_file(resumed.join(format!("seeds/{exp}/{s}.json")))
                .expect("remove seed");
        }
    }
    // A stored result is used as it is, not recomputed: mark one and check it shows.
    let marked = resumed.join("seeds/anger/3.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&marked).expect("seed")).expect("json");
    let original = v["result"]["control"].clone();
    v["result"]["control"] = Value::from(-1.0);
    std::fs::write(&marked, v.to_string()).expect("write");
    reproduce(&resumed, &args);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(resumed.join("table.json")).expect("t"))
            .expect("json");
    assert_eq!(t["rows"][3]["comparison"]["control"]["n"], 20);
    assert_ne!(
        std::fs::read(full.join("table.json")).expect("full"),
        std::fs::read(resumed.join("table.json")).expect("resumed"),
        "the marked stored value must have been used"
    );
    v["result"]["control"] = original;
    std::fs::write(&marked, v.to_string()).expect("write");
    reproduce(&resumed, &args);
    for f in ["table.json", "distributions.png"] {
        assert_eq!(
            std::fs::read(full.join(f)).expect("full"),
            std::fs::read(resumed.join(f)).expect("resumed"),
            "{f}"
        );
    }
}

#[test]
fn resuming_with_other_options_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("r");
    reproduce(&out, &["--seeds", "5"]);
    let o = run(&[
        "reproduce",
        "v2-tabular",
        "--seeds",
        "6",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("other options"), "{}", stderr(&o));
}

/// `--rng fast` changes every per-seed value but not the distributions: per
/// experiment and arm, a Mann–Whitney test between 100 numpy-mode and 100
/// fast-mode seeds does not reject.
#[test]
fn fast_generator_agrees_with_numpy_in_distribution() {
    use emorl::reproduce::V2_TABULAR;
    use emorl_agents_tabular::protocol::Experiment;
    use emorl_core::RngKind;
    for (name, text) in V2_TABULAR {
        let exp = Experiment::from_toml(text).expect("config");
        let run = |kind| -> (Vec<f64>, Vec<f64>) {
            (0..100u64)
                .map(|s| {
                    let o = exp.run_seed(s, kind, false).expect("run");
                    (o.control, o.treatment)
                })
                .unzip()
        };
        let (nc, nt) = run(RngKind::Numpy);
        let (fc, ft) = run(RngKind::Fast);
        assert_ne!(nc, fc, "{name}: the generators should differ per seed");
        for (arm, a, b) in [("control", &nc, &fc), ("treatment", &nt, &ft)] {
            let p = emorl_stats::stats::mann_whitney_u(a, b).p;
            assert!(
                p > 0.01,
                "{name} {arm}: numpy vs fast differ (Mann-Whitney p = {p})"
            );
        }
    }
}

/// `emorl reproduce v2-dqn` on a tiny budget: every comparison row is there,
/// per-seed values come from the runs, the figure and TensorBoard curves are
/// written, a rerun with the same --out reuses the stored seeds exactly.
#[test]
fn v2_dqn_writes_both_tables_curves_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("dqn");
    let args = [
        "reproduce",
        "v2-dqn",
        "--seeds",
        "2",
        "--episodes",
        "6",
        "--permutations",
        "20",
        "--jobs",
        "2",
        "--out",
        out.to_str().expect("utf8"),
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("table.json")).expect("json"))
            .expect("parse");
    let rows = table["rows"].as_array().expect("rows");
    // 5 Exp 16b metrics and 4 Exp 18 metrics, 3 comparisons each.
    assert_eq!(rows.len(), 27);
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} | {}", r["cells"][0]["text"], r["cells"][1]["text"]))
        .collect();
    assert!(labels
        .iter()
        .any(|l| l.contains("Exp 16b episodes to threat criterion")
            && l.contains("fear-dqn-coupled vs dqn")));
    assert!(labels
        .iter()
        .any(|l| l.contains("Exp 18 survival rate")
            && l.contains("fear-dqn vs fear-dqn-coupled-cliff")));
    // The per-seed store holds what the table summarises.
    let seed0: Value = serde_json::from_str::<Value>(
        &std::fs::read_to_string(out.join("seeds/exp16b/dqn/0.json")).expect("seed file"),
    )
    .expect("parse")["result"]
        .take();
    assert_eq!(seed0["rewards"].as_array().map(Vec::len), Some(6));
    let seed1: Value = serde_json::from_str::<Value>(
        &std::fs::read_to_string(out.join("seeds/exp16b/dqn/1.json")).expect("seed file"),
    )
    .expect("parse")["result"]
        .take();
    let c = &rows[2]["comparison"]; // Exp 16b final reward, fear-dqn-coupled vs dqn
    let mean_dqn = (seed0["final_reward"].as_f64().expect("f")
        + seed1["final_reward"].as_f64().expect("f"))
        / 2.0;
    assert!((c["control"]["mean"].as_f64().expect("mean") - mean_dqn).abs() < 1e-12);
    let svg = std::fs::read_to_string(out.join("learning_curves.svg")).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("fear-dqn-coupled-cliff"));
    assert!(std::fs::read(out.join("learning_curves.png"))
        .expect("png")
        .starts_with(b"\x89PNG"));
    let tb = tensorboard_read(&out);
    assert_eq!(
        tb["scalars"]["exp16b/return/fear-dqn"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
    assert!(tb["scalars"]["exp18/training_survival/dqn"].is_array());
    // Resume: same options, same --out → the same table, from the stored seeds.
    let before = std::fs::read_to_string(out.join("table.md")).expect("md");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).expect("md"),
        before
    );
    // Seed blocks do not apply to the LLM table (it splits by agent).
    let o = run(&[
        "reproduce",
        "llm-modules",
        "--blocks",
        "2",
        "--out",
        tmp.path().join("x").to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--blocks"), "{}", stderr(&o));
    assert!(!tmp.path().join("x").exists());
}

/// `emorl reproduce v3` with numpy's generator: every metric of seeds 0–49
/// gives upstream's own statistics exactly (its `upstream_stats`: Student's
/// t of emotional − standard and Cohen's d), the printed numbers stand
/// beside them, and the figure is written.
#[test]
fn v3_reproduces_upstreams_statistics_on_seeds_0_to_49() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("v3");
    let o = run(&[
        "reproduce",
        "v3",
        "--permutations",
        "50",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tables: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("table.json")).expect("json"))
            .expect("tables");
    assert_eq!(tables.len(), 7, "a headline table and one per experiment");
    let upstream: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/docs/v3-protocol-data/upstream_v3_per_seed_0-49.json"),
        )
        .expect("upstream data"),
    )
    .expect("json");
    // Upstream's stats keys, in the registry's metric order.
    let keys: [(&str, &[&str]); 6] = [
        ("exp17", &["success", "steps", "exploration", "first"]),
        ("exp19", &["recovery", "reward", "total"]),
        ("exp20", &["door", "success", "pushes", "first", "final"]),
        ("exp21", &["zeroshot_hits", "zeroshot_reward", "early_b"]),
        ("exp22", &["time", "survival", "reward", "food"]),
        (
            "exp23",
            &["crash", "reward", "waypoints", "completion", "charges"],
        ),
    ];
    let mut checked = 0;
    for (table, (exp, stats)) in tables[1..].iter().zip(keys) {
        let rows = table["rows"].as_array().expect("rows");
        for (row, key) in rows.iter().zip(stats) {
            let want = &upstream[exp]["upstream_stats"][key];
            let c = &row["comparison"];
            // Ours is control − emotional; upstream's emotional − standard.
            let t = -c["student_t"].as_f64().expect("t");
            let d = c["cohens_d"].as_f64().expect("d");
            let (wt, wd) = (want["t"].as_f64(), want["d"].as_f64().expect("d"));
            if let Some(wt) = wt {
                assert!(
                    (t - wt).abs() <= 1e-9 * wt.abs().max(1.0),
                    "{exp} {key}: t {t} vs {wt}"
                );
            }
            assert!(
                (d - wd).abs() <= 1e-9 * wd.abs().max(1.0),
                "{exp} {key}: d {d} vs {wd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
    // The headline rows carry upstream's printed numbers.
    let md = std::fs::read_to_string(out.join("table.md")).expect("md");
    assert!(
        md.contains("| Exp 23 Battery Run: crash rate | 0–49 |"),
        "{md}"
    );
    assert!(md.contains("| 0.907 | 0.000 | -73.691 |"), "{md}");
    for f in ["distributions.svg", "distributions.png", "timing.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

/// Seed blocks with a pooled row, and an interrupted run resumed from its
/// stored seeds gives the same table as one run straight through.
#[test]
fn v3_blocks_pool_and_resume_to_the_same_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = |out: &Path| -> Vec<String> {
        [
            "reproduce",
            "v3",
            "--seeds",
            "3",
            "--blocks",
            "2",
            "--seed-offset",
            "7",
            "--rng",
            "fast",
            "--permutations",
            "20",
            "--jobs",
            "2",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().expect("utf8").to_string()])
        .collect()
    };
    let straight = tmp.path().join("a");
    let a: Vec<String> = args(&straight);
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(straight.join("table.md")).expect("md");
    for label in ["| 7–9 |", "| 10–12 |", "| pooled 7–12 |"] {
        assert!(md.contains(label), "{label} missing:\n{md}");
    }
    // Interrupted: only some seeds stored (the others deleted), then resumed.
    let resumed = tmp.path().join("b");
    let b: Vec<String> = args(&resumed);
    let o = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    for exp in ["pitch-black", "battery-run", "hazard-transfer"] {
        for seed in [8, 11, 12] {
            std::fs::remove_file(resumed.join("seeds").join(exp).join(format!("{seed}.json")))
                .expect("stored seed");
        }
    }
    std::fs::remove_file(resumed.join("table.md")).expect("table");
    let o = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(resumed.join("table.json")).expect("json"),
        std::fs::read_to_string(straight.join("table.json")).expect("json")
    );
}

/// `emorl reproduce v3-audit` with a small audit config: every tuned arm
/// runs the best of its candidates (checked against tuning.json), the
/// verdicts and tables are written, a rerun resumes to the same table, and
/// the same --out with another audit config is refused.
#[test]
fn v3_audit_tunes_every_arm_alike_and_reports_verdicts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("audit.toml");
    std::fs::write(
        &config,
        r#"
[tuning]
seed_offset = 5000
seeds = 2
grid = { lr = [0.1, 0.3], epsilon = [0.1] }

[[experiment]]
id = "pitch-black"
engineered = [{ label = "optimistic Q", agent = "optimistic-q" }]

[[experiment]]
id = "battery-run"
engineered = [{ label = "refuel rule", agent = "refuel-q" }]
report = ["mean_waypoints"]
"#,
    )
    .expect("config");
    let out = tmp.path().join("audit");
    let args = |cfg: &Path| -> Vec<String> {
        [
            "reproduce",
            "v3-audit",
            "--seeds",
            "3",
            "--blocks",
            "2",
            "--permutations",
            "20",
            "--jobs",
            "2",
            "--config",
            cfg.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = args(&config);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("table.md")).expect("md");
    for want in [
        "**Exp 17 Pitch Black (curiosity)**: upstream's claim",
        "vs optimistic Q tuned on success rate",
        "vs refuel rule tuned on waypoints reached",
        "| pooled 0–5 |",
        "## Tuning",
    ] {
        assert!(md.contains(want), "{want} missing:\n{md}");
    }
    assert!(
        !md.contains("Changing Seasons"),
        "only the configured experiments"
    );
    // Each tuned arm runs the best of its two candidates.
    let tuning: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tuning.json")).expect("tuning"))
            .expect("json");
    let mut tuned = 0;
    for exp in tuning.as_array().expect("experiments") {
        let lower_better = exp["metric"] == "crash_rate";
        for arm in exp["arms"].as_array().expect("arms") {
            if arm["tuned"] != true {
                assert!(arm["candidates"].as_array().expect("list").is_empty());
                continue;
            }
            tuned += 1;
            let cands = arm["candidates"].as_array().expect("list");
            assert_eq!(cands.len(), 2, "the same budget for every arm");
            let scores: Vec<f64> = cands
                .iter()
                .map(|c| c[1].as_f64().expect("score"))
                .collect();
            let best = if lower_better {
                scores.iter().cloned().fold(f64::INFINITY, f64::min)
            } else {
                scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            };
            assert_eq!(arm["tuning_score"].as_f64(), Some(best));
            let chosen = &cands[scores.iter().position(|&s| s == best).expect("best")][0];
            assert_eq!(&arm["config"], chosen);
        }
    }
    assert_eq!(
        tuned,
        2 * 3,
        "emotional, Q-learning and one engineered arm per experiment"
    );
    // Resume: the stored seeds give the same table.
    let before = std::fs::read_to_string(out.join("table.json")).expect("json");
    std::fs::remove_file(out.join("seeds/battery-run/2.json")).expect("stored seed");
    let o = run(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("table.json")).expect("json"),
        before
    );
    // Another audit config into the same directory is refused.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, "[tuning]\nseeds = 3\n").expect("config");
    let b = args(&other);
    let o = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another audit config"),
        "{}",
        stderr(&o)
    );
}
