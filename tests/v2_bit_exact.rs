//! Bit-exact reproduction of upstream's per-seed V2 results (seeds 0–49).

use emorl_agents_tabular::protocol::Experiment;
use emorl_core::RngKind;
use std::path::PathBuf;

fn root() -> PathBuf {
    // The tests belong to the `app` crate; the repository root is its parent.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn upstream() -> serde_json::Value {
    let p = root().join("../shared/docs/v2-protocol-data/upstream_v2_per_seed.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (../shared must sit beside the repo)",
            p.display()
        )
    });
    serde_json::from_str(&text).expect("upstream json")
}

#[test]
fn every_per_seed_value_matches_upstream() {
    let data = upstream();
    let mut mismatches = Vec::new();
    for name in ["fear", "anger", "regret", "integration", "transfer"] {
        let text = std::fs::read_to_string(root().join(format!("configs/v2/{name}.toml")))
            .expect("config");
        let exp = Experiment::from_toml(&text).expect("parse");
        exp.validate().expect("valid");
        let reference = &data["experiments"][name];
        for seed in 0..50u64 {
            let out = exp.run_seed(seed, RngKind::Numpy, false).expect("run");
            let c = reference["control"][seed as usize]
                .as_f64()
                .expect("control");
            let t = reference["treatment"][seed as usize]
                .as_f64()
                .expect("treatment");
            if out.control.to_bits() != c.to_bits() || out.treatment.to_bits() != t.to_bits() {
                mismatches.push(format!(
                    "{name} seed {seed}: ours ({}, {}) upstream ({c}, {t})",
                    out.control, out.treatment
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
