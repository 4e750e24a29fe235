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

type Arms = [(&'static str, emorl_agents_tabular::QLearnerConfig); 2];
type SeedFn = fn(
    u64,
    &emorl_agents_tabular::QLearnerConfig,
    RngKind,
    usize,
) -> Result<v3::SeedMetrics, emorl_core::CoreError>;

/// Every metric of both arms on seeds 0–49, bit for bit.
fn check(exp: &str, arms: Arms, run: SeedFn, episodes: usize, metrics: usize) {
    let data = upstream();
    let reference = &data[exp]["arms"];
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (arm, agent) in arms {
        for seed in 0..50u64 {
            let ours = run(seed, &agent, RngKind::Numpy, episodes).expect("run");
            for (metric, value) in ours {
                let want = reference[arm][metric][seed as usize]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no upstream {exp} {arm}/{metric}"));
                compared += 1;
                if value.to_bits() != want.to_bits() {
                    mismatches.push(format!(
                        "{arm} seed {seed} {metric}: ours {value}, upstream {want}"
                    ));
                }
            }
        }
    }
    assert_eq!(compared, 2 * 50 * metrics, "{exp}");
    assert!(
        mismatches.is_empty(),
        "{exp}: {} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn pitch_black_matches_upstream_on_every_seed_and_metric() {
    check(
        "exp17",
        v3::pitch_black_arms().expect("arms"),
        v3::pitch_black_seed,
        200,
        4,
    );
}

#[test]
fn bottleneck_matches_upstream_on_every_seed_and_metric() {
    check(
        "exp20",
        v3::bottleneck_arms().expect("arms"),
        v3::bottleneck_seed,
        300,
        5,
    );
}

#[test]
fn changing_seasons_matches_upstream_on_every_seed_and_metric() {
    check(
        "exp19",
        v3::seasons_arms().expect("arms"),
        v3::seasons_seed,
        600,
        3,
    );
}

#[test]
fn predator_prey_matches_upstream_on_every_seed_and_metric() {
    check(
        "exp22",
        v3::predator_arms().expect("arms"),
        v3::predator_seed,
        300,
        6,
    );
}

#[test]
fn hazard_transfer_matches_upstream_on_every_seed_and_metric() {
    // Both arms share one stream, so one call computes a seed of both.
    let data = upstream();
    let reference = &data["exp21"]["arms"];
    let arms = v3::transfer_arms().expect("arms");
    let (mut mismatches, mut compared) = (Vec::new(), 0);
    for seed in 0..50u64 {
        for (arm, metrics) in v3::transfer_seed(seed, &arms, RngKind::Numpy).expect("run") {
            for (metric, value) in metrics {
                let want = reference[arm][metric][seed as usize]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no upstream exp21 {arm}/{metric}"));
                compared += 1;
                if value.to_bits() != want.to_bits() {
                    mismatches.push(format!(
                        "{arm} seed {seed} {metric}: ours {value}, upstream {want}"
                    ));
                }
            }
        }
    }
    assert_eq!(compared, 2 * 50 * 7);
    assert!(
        mismatches.is_empty(),
        "exp21: {} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn battery_run_matches_upstream_on_every_seed_and_metric() {
    check(
        "exp23",
        v3::battery_arms().expect("arms"),
        v3::battery_seed,
        400,
        7,
    );
}
