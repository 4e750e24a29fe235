//! Bit-exact reproduction of upstream's per-seed V3 results (seeds 0–49;
//! docs/v3-protocol.md). Experiments are added here as they are ported.

use emorl_agents_tabular::v3;
use emorl_core::RngKind;
use std::path::PathBuf;

fn upstream() -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/docs/v3-protocol-data/upstream_v3_per_seed_0-49.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (../shared must sit beside the repo)",
            p.display()
        )
    });
    serde_json::from_str(&text).expect("upstream json")
}

/// Every metric of both arms on seeds 0–49, bit for bit, through the
/// registry entry `id` (upstream's JSON key `key`, `metrics` per arm).
fn check(id: &str, key: &str, metrics: usize) {
    let data = upstream();
    let reference = &data[key]["arms"];
    let exp = v3::experiment(id).expect("registered");
    let arms = (exp.arms)().expect("arms");
    let configs: Vec<_> = arms.iter().map(|(_, c)| c.clone()).collect();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for seed in 0..50u64 {
        let ours = exp
            .run_seed_raw(seed, &configs, RngKind::Numpy)
            .expect("run");
        for ((arm, _), values) in arms.iter().zip(ours) {
            for (metric, value) in values {
                let want = reference[arm][metric][seed as usize]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no upstream {key} {arm}/{metric}"));
                compared += 1;
                if value.to_bits() != want.to_bits() {
                    mismatches.push(format!(
                        "{arm} seed {seed} {metric}: ours {value}, upstream {want}"
                    ));
                }
            }
        }
        // The table's view (the registry's metric list) reads the same values.
        let table = exp.run_seed(seed, &configs, RngKind::Numpy).expect("run");
        for ((arm, _), values) in arms.iter().zip(&table) {
            for (m, value) in exp.metrics.iter().zip(values) {
                let want = reference[arm][m.name][seed as usize].as_f64();
                assert_eq!(Some(*value), want, "{key} {arm}/{} seed {seed}", m.name);
            }
        }
    }
    assert_eq!(compared, 2 * 50 * metrics, "{key}");
    assert_eq!(
        exp.metrics.len(),
        metrics,
        "{key}: the table reports every metric"
    );
    assert!(
        mismatches.is_empty(),
        "{key}: {} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn pitch_black_matches_upstream_on_every_seed_and_metric() {
    check("pitch-black", "exp17", 4);
}

#[test]
fn bottleneck_matches_upstream_on_every_seed_and_metric() {
    check("bottleneck", "exp20", 5);
}

#[test]
fn changing_seasons_matches_upstream_on_every_seed_and_metric() {
    check("changing-seasons", "exp19", 3);
}

#[test]
fn predator_prey_matches_upstream_on_every_seed_and_metric() {
    check("predator-prey", "exp22", 6);
}

#[test]
fn hazard_transfer_matches_upstream_on_every_seed_and_metric() {
    // Both arms share one generator stream: one call computes both.
    check("hazard-transfer", "exp21", 7);
}

#[test]
fn battery_run_matches_upstream_on_every_seed_and_metric() {
    check("battery-run", "exp23", 7);
}

#[test]
fn published_numbers_match_the_per_seed_data() {
    // Upstream's printed d (rounded to 3 decimals) is the d of its per-seed
    // values: the registry's copy of the results page is checked here.
    let data = upstream();
    let keys = ["exp17", "exp19", "exp20", "exp21", "exp22", "exp23"];
    for (exp, key) in v3::V3_EXPERIMENTS.iter().zip(keys) {
        for m in exp.metrics {
            let Some(d) = m.published.and_then(|p| p.d) else {
                continue;
            };
            let arms = (exp.arms)().expect("arms");
            let col = |arm: &str| -> Vec<f64> {
                data[key]["arms"][arm][m.name]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|v| v.as_f64().expect("number"))
                    .collect()
            };
            let (c, t) = (col(arms[0].0), col(arms[1].0));
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let var = |v: &[f64]| {
                let m = mean(v);
                v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
            };
            let pooled = ((var(&c) + var(&t)) / 2.0).sqrt();
            let ours = (mean(&t) - mean(&c)) / pooled;
            assert!(
                (ours - d).abs() < 0.002,
                "{key} {}: published d {d}, per-seed data give {ours}",
                m.name
            );
        }
    }
}
