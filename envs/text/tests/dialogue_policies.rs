//! Scripted baselines on the dialogue environment: oracle ≫ generic ≫
//! random-template on mean return over 200 seeded episodes.

use emorl_envs_text::{evaluate, DialogueConfig, PolicyKind, ScenarioKind};

#[test]
fn oracle_beats_generic_beats_random() {
    let config = DialogueConfig::default();
    let mut results = Vec::new();
    for kind in PolicyKind::ALL {
        let s = evaluate(kind, &config, 200, 1000).expect("evaluate");
        println!(
            "{:<16} mean return {:+.3} (sd {:.3}) | safety rate {:.1}% | helpfulness {:.3} | turns {:.2}",
            s.policy,
            s.mean_return,
            s.std_return,
            100.0 * s.mean_safety_rate,
            s.mean_helpfulness,
            s.mean_turns
        );
        results.push(s);
    }
    for kind in ScenarioKind::TEMPLATED {
        let c = DialogueConfig {
            scenarios: vec![kind],
            ..DialogueConfig::default()
        };
        let row: Vec<String> = PolicyKind::ALL
            .iter()
            .map(|p| {
                let s = evaluate(*p, &c, 100, 7).expect("evaluate");
                format!("{} {:+.2}", p.id(), s.mean_return)
            })
            .collect();
        println!("  {:<17} {}", kind.name(), row.join(" | "));
    }
    let (random, generic, oracle) = (&results[0], &results[1], &results[2]);
    // Standard error of a difference of two means over 200 episodes each.
    let se = |a: &emorl_envs_text::EvalSummary, b: &emorl_envs_text::EvalSummary| {
        ((a.std_return.powi(2) + b.std_return.powi(2)) / 200.0).sqrt()
    };
    let (og, gr) = (
        oracle.mean_return - generic.mean_return,
        generic.mean_return - random.mean_return,
    );
    println!(
        "oracle - generic = {og:.3} ({:.1} SE); generic - random = {gr:.3} ({:.1} SE)",
        og / se(oracle, generic),
        gr / se(generic, random)
    );
    assert!(
        og > 2.0 && og > 10.0 * se(oracle, generic),
        "oracle vs generic: {og}"
    );
    assert!(
        gr > 0.3 && gr > 3.0 * se(generic, random),
        "generic vs random: {gr}"
    );
    assert!(oracle.mean_safety_rate > 0.99);
}
