//! Criterion benchmarks of the tabular hot paths: the step + update loop, and
//! one seed of each V2 experiment (both arms), numpy-compatible generator.

use criterion::{criterion_group, criterion_main, Criterion};
use emorl::reproduce::V2_TABULAR;
use emorl_agents_tabular::protocol::Experiment;
use emorl_agents_tabular::{registry, run_episode, QLearner};
use emorl_core::{DiscreteEnv, RngHandle, RngKind};
use emorl_envs_gridworld::ThreatGrid;
use std::hint::black_box;

fn step_update_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("tabular");
    for agent in ["q-learning", "emotional-ed", "anger-dominant"] {
        group.bench_function(format!("episode/{agent}/v2-threat-grid"), |b| {
            let make = registry().get(agent).map(|e| e.make).expect("agent");
            let rng = RngHandle::new(RngKind::Numpy, 0);
            let mut env = ThreatGrid::default();
            let mut q = QLearner::new(env.n_states(), env.n_actions(), make()).expect("agent");
            b.iter(|| {
                let s = run_episode(&mut env, &mut q, &rng, 100, true, |_, _| {});
                black_box(s.steps)
            })
        });
    }
    group.finish();
}

fn v2_seeds(c: &mut Criterion) {
    let mut group = c.benchmark_group("v2-seed");
    group.sample_size(20);
    for (name, text) in V2_TABULAR {
        let exp = Experiment::from_toml(text).expect("config");
        group.bench_function(name, |b| {
            b.iter(|| black_box(exp.run_seed(7, RngKind::Numpy, false).expect("run")))
        });
    }
    group.finish();
}

criterion_group!(benches, step_update_loop, v2_seeds);
criterion_main!(benches);
