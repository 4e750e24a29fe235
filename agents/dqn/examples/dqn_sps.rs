//! Environment steps per second of DQN learning on the Exp 16b grid, one
//! libtorch thread — the Rust side of `benches/dqn_side_by_side.sh`.
//!
//! `cargo run --release -p emorl-agents-dqn --example dqn_sps -- [steps] [agent] [seed] [backend]`
//! (backend: auto, host or libtorch; default auto, i.e. host on CPU)
//! prints one line: `sps=<steps/s> steps=<n> episodes=<n> secs=<s> mean_return_last20=<r>`.

use emorl_agents_dqn::{protocol::seed_everything, registry, Backend, DqnAgent, DqnConfig};
use emorl_core::{DiscreteEnv, Env, RngHandle, RngKind};
use emorl_envs_gridworld::TerminalThreatGrid;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let agent_id = args.next().unwrap_or_else(|| "dqn".to_string());
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let backend: Backend = match args.next() {
        Some(b) => serde_json::from_value(serde_json::Value::String(b))?,
        None => Backend::Auto,
    };
    seed_everything(seed);
    let cfg = DqnConfig {
        backend,
        ..(registry().get(&agent_id)?.make)()
    };
    let rng = RngHandle::new(RngKind::Fast, seed);
    let mut env = TerminalThreatGrid::new();
    let mut agent = DqnAgent::new(4, env.n_actions(), cfg, &rng)?;

    // The same loop as `run_episode`, counted in environment steps (as CleanRL's SPS).
    let start = Instant::now();
    let mut returns = Vec::new();
    let (mut steps, mut episodes) = (0usize, 0usize);
    'outer: loop {
        let (s0, _) = env.reset(None);
        let mut ctx = env.context();
        let mut feat = env.features(s0);
        let mut ret = 0.0;
        agent.begin_episode();
        for _ in 0..100 {
            let a = agent.act(&feat, &ctx, &rng, true)?;
            let st = env.step(&a);
            let next = env.features(st.obs);
            agent.observe(&feat, a, st.reward, &next, st.terminated, &st.context, &rng)?;
            ret += st.reward;
            steps += 1;
            if st.terminated || steps >= total {
                break;
            }
            feat = next;
            ctx = st.context;
        }
        agent.end_episode();
        episodes += 1;
        returns.push(ret);
        if steps >= total {
            break 'outer;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let tail = &returns[returns.len().saturating_sub(20)..];
    let last20 = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
    println!(
        "sps={:.1} steps={steps} episodes={episodes} secs={secs:.3} mean_return_last20={last20:.3}",
        steps as f64 / secs
    );
    Ok(())
}
