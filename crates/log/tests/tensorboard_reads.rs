//! Writes an event file with every summary kind we support and checks that
//! real TensorBoard (its Python `EventAccumulator`) reads back exact values.
//! Needs a Python with the `tensorboard` pip package: `$EMORL_PYTHON`, else
//! `$HOME/.cache/emorl/venv/bin/python`. Fails (never skips) without it.

use std::path::PathBuf;
use std::process::Command;

use emorl_log::{EventWriter, HParamValue, SessionStatus};
use serde_json::Value;

const INSTALL_HINT: &str = "install it with `$HOME/.cache/emorl/venv/bin/pip install tensorboard` \
     (or point EMORL_PYTHON at a Python that has the `tensorboard` package)";

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/emorl/venv/bin/python")
}

fn read_with_tensorboard(dir: &std::path::Path) -> Value {
    let py = python();
    assert!(
        py.exists(),
        "Python interpreter {} not found; create the venv \
         (`python3 -m venv $HOME/.cache/emorl/venv`) and {INSTALL_HINT}",
        py.display()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_events.py");
    let out = Command::new(&py)
        .arg(script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", py.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("EMORL_MISSING_TENSORBOARD"),
        "TensorBoard is not importable from {}: {stderr}\n{INSTALL_HINT}",
        py.display()
    );
    assert!(
        out.status.success(),
        "read_events.py failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "read_events.py printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn tensorboard_reads_our_event_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = EventWriter::create(dir.path()).expect("create writer");

    // Exactly representable in f32 except 0.1, which checks the f32 rounding.
    let scalars = [(0i64, 0.5f64), (10, -1.25), (20, 3.0), (30, 0.1)];
    for &(step, v) in &scalars {
        w.add_scalar("charts/episodic_return", v, step)
            .expect("scalar");
    }
    w.add_scalar("losses/td", 2.0, 5).expect("scalar");

    let hist = [1.0, 2.0, 2.0, 3.5, -4.0, 0.0, 1e-3, 250.0];
    w.add_histogram("q_values", &hist, 7).expect("histogram");

    let text = "Agent **ED** with fear channel.\n\n- item ü";
    w.add_text("notes", text, 3).expect("text");
    w.add_config_table("hyperparameters", &[("lr", "0.1"), ("env", "grid|world")])
        .expect("config table");

    let hp = vec![
        ("lr".to_owned(), HParamValue::from(0.1)),
        ("env".to_owned(), HParamValue::from("gridworld")),
        ("social".to_owned(), HParamValue::from(true)),
    ];
    w.add_hparams(&hp, &["charts/episodic_return".to_owned()])
        .expect("hparams");
    w.add_session_end(SessionStatus::Success)
        .expect("session end");
    w.flush().expect("flush");

    let got = read_with_tensorboard(dir.path());
    assert_eq!(got["file_version"], 2.0, "{got}");

    // Scalars: exact steps and f32-rounded values.
    let series = got["scalars"]["charts/episodic_return"]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar series in {got}"));
    assert_eq!(series.len(), scalars.len());
    for (pt, &(step, v)) in series.iter().zip(&scalars) {
        assert_eq!(pt[0], step);
        assert_eq!(pt[1].as_f64(), Some(f64::from(v as f32)), "step {step}");
    }
    assert_eq!(got["scalars"]["losses/td"][0][0], 5);
    assert_eq!(got["scalars"]["losses/td"][0][1], 2.0);

    // Histogram summary statistics.
    let h = &got["histograms"]["q_values"][0];
    assert_eq!(h["step"], 7, "{got}");
    assert_eq!(h["num"], 8.0);
    assert_eq!(h["min"], -4.0);
    assert_eq!(h["max"], 250.0);
    assert_eq!(h["sum"].as_f64(), Some(hist.iter().sum::<f64>()));
    let sum_sq: f64 = hist.iter().map(|x| x * x).sum();
    assert_eq!(h["sum_squares"].as_f64(), Some(sum_sq));
    let counts: f64 = h["bucket"]
        .as_array()
        .expect("bucket counts")
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    assert_eq!(counts, 8.0);

    // Text, decoded from the text plugin's string tensor.
    assert_eq!(got["texts"]["notes"][0][0], 3, "{got}");
    assert_eq!(got["texts"]["notes"][0][1][0], text);
    assert_eq!(
        got["texts"]["hyperparameters"][0][1][0],
        "|param|value|\n|-|-|\n|lr|0.1|\n|env|grid\\|world|\n"
    );

    // Hparams, parsed by the hparams plugin's own metadata helpers.
    let exp = &got["hparams"]["experiment"];
    assert_eq!(
        exp["hparams"],
        serde_json::json!([["lr", 3], ["env", 1], ["social", 2]]),
        "{got}"
    );
    assert_eq!(
        exp["metrics"],
        serde_json::json!(["charts/episodic_return"])
    );
    let ssi = &got["hparams"]["session_start"];
    assert_eq!(ssi["lr"], 0.1);
    assert_eq!(ssi["env"], "gridworld");
    assert_eq!(ssi["social"], true);
}
