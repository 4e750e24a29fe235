//! Tests that need the learner's internals: gradient isolation of the
//! decoupled fear network, and the coupled modules' quirks.

use crate::config::{
    CoupledCliffConfig, CoupledGridConfig, DecoupledFearConfig, DqnConfig, FearConfig, FearUse,
};
use crate::fear::{BatchFear, FearModule, SelectionBias, StateFear};
use crate::learner::DqnAgent;
use crate::protocol::seed_everything;
use emorl_core::{DiscreteEnv, EmotionalContext, Env, RngHandle, RngKind};
use emorl_envs_gridworld::TerminalThreatGrid;
use tch::{nn, Tensor};

fn agent_with(fear: Option<FearConfig>, seed: u64) -> (DqnAgent, RngHandle) {
    seed_everything(seed);
    let rng = RngHandle::new(RngKind::Fast, seed);
    let cfg = DqnConfig {
        fear,
        ..Default::default()
    };
    let agent = DqnAgent::new(4, 4, cfg, &rng).expect("agent");
    (agent, rng)
}

/// Fills the replay buffer with random-policy transitions on the 16b grid (no learning).
fn fill_replay(agent: &mut DqnAgent, rng: &RngHandle, n: usize) {
    let mut env = TerminalThreatGrid::new();
    let (mut s, _) = env.reset(None);
    for _ in 0..n {
        let a = rng.randint(4);
        let st = env.step(&a);
        agent.replay.push(
            &env.features(s),
            a,
            st.reward,
            &env.features(st.obs),
            st.terminated,
            (&st.context).into(),
        );
        s = if st.terminated {
            env.reset(None).0
        } else {
            st.obs
        };
    }
}

fn zero_grads(vs: &nn::VarStore) {
    for mut t in vs.trainable_variables() {
        t.zero_grad();
    }
}

/// Sum of |grad| over a var store; `None` when no parameter has a gradient.
fn grad_mass(vs: &nn::VarStore) -> Option<f64> {
    let grads: Vec<f64> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.grad())
        .filter(|g| g.defined())
        .map(|g| g.abs().sum(tch::Kind::Double).double_value(&[]))
        .collect();
    (!grads.is_empty()).then(|| grads.iter().sum())
}

#[test]
fn decoupled_fear_and_q_network_share_no_gradients() {
    for fear_use in [
        FearUse::Input,
        FearUse::SelectionBias {
            scale: 1.0,
            range_floor: 0.05,
        },
    ] {
        let cfg = FearConfig::Decoupled(DecoupledFearConfig {
            fear_use: fear_use.clone(),
            ..Default::default()
        });
        let (mut agent, rng) = agent_with(Some(cfg), 1);
        fill_replay(&mut agent, &rng, 300);
        let batch = agent.sample_batch(&rng).expect("batch");
        let bf = agent
            .fear_mut()
            .expect("fear")
            .prepare_batch(&batch)
            .expect("prepare");
        if fear_use == FearUse::Input {
            let col = bf.state_input.as_ref().expect("fear input column");
            assert!(!col.requires_grad(), "fear input must be detached");
        }
        let fear_vs = agent
            .fear
            .as_ref()
            .and_then(|f| f.var_store())
            .expect("fear vs");
        zero_grads(fear_vs);
        zero_grads(&agent.online_vs);

        // Q loss backward: the Q-network gets gradients, the fear network none.
        let (q_loss, _) = agent.q_loss(&batch, &bf).expect("q loss");
        q_loss.backward();
        let fear_vs = agent
            .fear
            .as_ref()
            .and_then(|f| f.var_store())
            .expect("fear vs");
        assert!(grad_mass(&agent.online_vs).unwrap_or(0.0) > 0.0);
        assert_eq!(grad_mass(fear_vs).unwrap_or(0.0), 0.0, "{fear_use:?}");

        // Fear loss backward: the fear network gets gradients, the Q-network none.
        zero_grads(&agent.online_vs);
        let f_loss = agent
            .fear
            .as_ref()
            .expect("fear")
            .fear_loss(&batch)
            .expect("fear loss")
            .expect("a fear network has a loss");
        f_loss.backward();
        assert!(grad_mass(fear_vs).unwrap_or(0.0) > 0.0);
        assert_eq!(
            grad_mass(&agent.online_vs).unwrap_or(0.0),
            0.0,
            "{fear_use:?}"
        );
    }
}

#[test]
fn decoupled_update_does_not_change_the_fear_net_through_the_q_step() {
    // With the fear net's own learning rate near zero, a full agent update must
    // leave its weights (almost) where they were; the Q-net must move.
    let cfg = FearConfig::Decoupled(DecoupledFearConfig {
        learning_rate: 1e-12,
        fear_use: FearUse::Input,
        ..Default::default()
    });
    let (mut agent, rng) = agent_with(Some(cfg), 2);
    fill_replay(&mut agent, &rng, 200);
    let snapshot = |vs: &nn::VarStore| -> Vec<Tensor> {
        let mut v: Vec<_> = vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, t)| t.copy()).collect()
    };
    let fear_before = snapshot(agent.fear.as_ref().and_then(|f| f.var_store()).expect("vs"));
    let q_before = snapshot(&agent.online_vs);
    for _ in 0..5 {
        agent.update(&rng).expect("update");
    }
    let fear_after = snapshot(agent.fear.as_ref().and_then(|f| f.var_store()).expect("vs"));
    let q_after = snapshot(&agent.online_vs);
    let max_diff = |a: &[Tensor], b: &[Tensor]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    };
    assert!(max_diff(&fear_before, &fear_after) < 1e-9);
    assert!(max_diff(&q_before, &q_after) > 1e-4);
}

#[test]
fn coupled_16b_augments_with_next_state_fear_and_persists_lr() {
    let (mut agent, rng) = agent_with(
        Some(FearConfig::CoupledGrid(CoupledGridConfig::default())),
        3,
    );
    fill_replay(&mut agent, &rng, 400);
    let batch = agent.sample_batch(&rng).expect("batch");
    let bf: BatchFear = agent
        .fear_mut()
        .expect("fear")
        .prepare_batch(&batch)
        .expect("prepare");
    let expected: Vec<f32> = batch
        .contexts
        .iter()
        .map(|c| match c.threat_distance {
            0.0 => 1.0,
            1.0 => 0.5,
            _ => 0.0,
        })
        .collect();
    let s_in: Vec<f32> = Vec::try_from(bf.state_input.as_ref().expect("s").view(-1)).expect("v");
    let s2_in: Vec<f32> =
        Vec::try_from(bf.next_state_input.as_ref().expect("s2").view(-1)).expect("v");
    // Q-16b-AUGMISMATCH (docs/protocols/v2.md, quirk glossary): both columns carry the fear of s'.
    assert_eq!(s_in, expected);
    assert_eq!(s2_in, expected);
    assert!(
        expected.iter().any(|&f| f > 0.0),
        "batch should contain near-threat samples"
    );
    let mean = expected.iter().map(|&x| x as f64).sum::<f64>() / expected.len() as f64;
    assert!((bf.lr_factor.expect("lr") - (1.0 + 0.5 * mean)).abs() < 1e-6);

    // Q-16b-LRPERSIST: the learning rate after an update is 1e-3·(1 + 0.5·mean F).
    let stats = agent.update(&rng).expect("update");
    assert!(stats.learning_rate >= 1e-3);
    assert_eq!(agent.training_state().learning_rate, stats.learning_rate);

    // Acting: fear of the current state (0.5 next to the threat) joins the input.
    let ctx = EmotionalContext {
        threat_distance: Some(1.0),
        ..Default::default()
    };
    let sf = agent
        .fear_mut()
        .expect("fear")
        .appraise(&[0.2, 0.4, 0.1, 0.5], &ctx)
        .expect("appraise");
    assert_eq!(
        sf,
        StateFear {
            level: 0.5,
            q_input: Some(0.5)
        }
    );
    let m = agent.fear_module().expect("fear");
    assert!((m.exploration_rate(0.1, &sf) - 0.075).abs() < 1e-12);
}

#[test]
fn coupled_16b_weights_only_overestimated_samples() {
    let (mut agent, rng) = agent_with(
        Some(FearConfig::CoupledGrid(CoupledGridConfig::default())),
        4,
    );
    fill_replay(&mut agent, &rng, 400);
    let batch = agent.sample_batch(&rng).expect("batch");
    let bf = agent
        .fear_mut()
        .expect("fear")
        .prepare_batch(&batch)
        .expect("prepare");
    let (weighted, _) = agent.q_loss(&batch, &bf).expect("loss");
    let plain = BatchFear {
        state_input: bf.state_input.as_ref().map(|t| t.shallow_clone()),
        next_state_input: bf.next_state_input.as_ref().map(|t| t.shallow_clone()),
        ..Default::default()
    };
    let (unweighted, _) = agent.q_loss(&batch, &plain).expect("loss");
    // Recompute by hand: weight 1 + 0.5·F only where y < q.
    let s = Tensor::cat(&[&batch.states, bf.state_input.as_ref().expect("s")], 1);
    let s2 = Tensor::cat(
        &[
            &batch.next_states,
            bf.next_state_input.as_ref().expect("s2"),
        ],
        1,
    );
    let (manual, _) = tch::no_grad(|| {
        let q = agent
            .online
            .forward(&s)
            .expect("q")
            .gather(1, &batch.actions, false)
            .squeeze_dim(1);
        let (qn, _) = agent.target.forward(&s2).expect("qt").max_dim(1, false);
        let not_done: Tensor = 1.0 - &batch.dones;
        let y: Tensor = &batch.rewards + qn * not_done * 0.99;
        let over = y.lt_tensor(&q).to_kind(tch::Kind::Float);
        let fear = bf.state_input.as_ref().expect("f").view(-1);
        let w: Tensor = 1.0 + fear * 0.5 * over;
        (((q - y).square() * w).mean(tch::Kind::Float), 0)
    });
    let (a, b, c) = (
        weighted.double_value(&[]),
        manual.double_value(&[]),
        unweighted.double_value(&[]),
    );
    assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    assert!(a >= c);
}

#[test]
fn coupled_cliff_tonic_fear_mutates_per_sample_and_forces_up() {
    let cfg = CoupledCliffConfig::default();
    let mut m = crate::fear::CoupledCliff::new(cfg, 4, tch::Device::Cpu);
    let far = EmotionalContext {
        threat_distance: Some(4.0),
        ..Default::default()
    };
    // Q-18-INITCTX: first appraisal ignores near_threat (start cell: distance 1 → 0.5).
    let start = EmotionalContext {
        threat_distance: Some(1.0),
        near_threat: true,
        ..Default::default()
    };
    assert_eq!(m.appraise(&[], &start).expect("a").level, 0.5);
    assert_eq!(m.appraise(&[], &start).expect("a").level, 1.0);
    // Pain raises the tonic level; fear is max(tonic, phasic), then tonic decays.
    let fall = EmotionalContext {
        threat_distance: Some(1.0),
        near_threat: true,
        harmed: true,
        reward: -100.0,
        ..Default::default()
    };
    m.appraise(&[], &fall).expect("a");
    assert!((m.tonic() - 0.45).abs() < 1e-12);
    assert!((m.appraise(&[], &far).expect("a").level - 0.45).abs() < 1e-12);
    assert!((m.tonic() - 0.405).abs() < 1e-12);
    // Q-18-QBONUS: +fear·0.5·10 on "up" above 0.3.
    let mut q = [0.0f32, 1.0, 0.0, 0.0];
    let sf = StateFear {
        level: 1.0,
        q_input: Some(1.0),
    };
    assert_eq!(
        m.select(&sf, &mut q, &RngHandle::new(RngKind::Fast, 0)),
        None
    );
    assert_eq!(q, [5.0, 1.0, 0.0, 0.0]);
    // Q-18-FORCEDUP: at fear 1.0 exploration always returns "up".
    let rng = RngHandle::new(RngKind::Fast, 0);
    assert!((0..50).all(|_| m.explore(&sf, &rng) == Some(0)));
    let low = StateFear {
        level: 0.5,
        q_input: Some(0.5),
    };
    let before = rng.snapshot();
    assert_eq!(m.explore(&low, &rng), None);
    assert_eq!(rng.snapshot(), before, "no extra draw at fear <= 0.5");
}

#[test]
fn coupled_cliff_batch_decays_tonic_once_per_sample() {
    let rng = RngHandle::new(RngKind::Fast, 5);
    let cfg = DqnConfig {
        fear: Some(FearConfig::CoupledCliff(CoupledCliffConfig::default())),
        ..Default::default()
    };
    let mut agent = DqnAgent::new(48, 4, cfg, &rng).expect("agent");
    let mut env = emorl_envs_gridworld::SlipperyCliffEnv::new(rng.clone());
    env.reset(None);
    let one_hot = |s: usize| env.features(s);
    // 64 far-from-cliff, painless transitions: phasic 0, so only tonic decay shows.
    let ctx = EmotionalContext {
        threat_distance: Some(3.0),
        reward: -1.0,
        ..Default::default()
    };
    for _ in 0..64 {
        agent
            .replay
            .push(&one_hot(0), 1, -1.0, &one_hot(1), false, (&ctx).into());
    }
    let fall = EmotionalContext {
        threat_distance: Some(1.0),
        near_threat: true,
        harmed: true,
        reward: -100.0,
        ..Default::default()
    };
    agent.act(&one_hot(36), &fall, &rng, false).expect("act");
    agent.act(&one_hot(36), &fall, &rng, false).expect("act");
    let batch = agent.sample_batch(&rng).expect("batch");
    let bf = agent
        .fear_mut()
        .expect("fear")
        .prepare_batch(&batch)
        .expect("p");
    let f: Vec<f32> = Vec::try_from(bf.state_input.expect("s").view(-1)).expect("v");
    // The first appraisal is the initial context; the second is a fall (tonic 0.5, decayed to 0.45);
    // then, sample i sees 0.45·0.9^i.
    for (i, &x) in f.iter().enumerate() {
        let expected = 0.45 * 0.9f64.powi(i as i32);
        assert!(
            (x as f64 - expected).abs() < 1e-6,
            "sample {i}: {x} vs {expected}"
        );
    }
}

/// The selection bias changes which action the agent takes, so the TD
/// target bootstraps from that action's value, not from the unbiased
/// maximum: bootstrapping from an action fear never lets it take made the
/// Q-values of a safe loop look as good as the shortcut past the threat, and
/// `emorl train --env gridworld --agent fear-dqn` (seed 0) circled for the
/// whole episode from episode 80 on (return -1.0 of the last 20).
#[test]
fn decoupled_bias_target_bootstraps_from_the_biased_choice() {
    let cfg = FearConfig::Decoupled(DecoupledFearConfig::default());
    let (mut agent, rng) = agent_with(Some(cfg), 3);
    fill_replay(&mut agent, &rng, 400);
    let batch = agent.sample_batch(&rng).expect("batch");
    let bf = agent
        .fear_mut()
        .expect("fear")
        .prepare_batch(&batch)
        .expect("prepare");
    let bias = bf
        .next_selection
        .as_ref()
        .expect("the module hands its bias to the target");
    assert_eq!(bias.danger.size(), [64, 4]);
    // A danger that forbids each next state's best action outright: the
    // target must bootstrap from the second best.
    let all = tch::no_grad(|| agent.target.forward(&batch.next_states).expect("qt"));
    let best = all.argmax(1, true);
    let danger = Tensor::zeros_like(&all).scatter_value(1, &best, 1.0);
    let forbidding = BatchFear {
        next_selection: Some(SelectionBias {
            danger,
            scale: 1.0,
            range_floor: 0.05,
        }),
        ..Default::default()
    };
    let (loss, _) = agent.q_loss(&batch, &forbidding).expect("loss");
    let (plain, _) = agent.q_loss(&batch, &BatchFear::default()).expect("loss");
    let manual = tch::no_grad(|| {
        let q = agent
            .online
            .forward(&batch.states)
            .expect("q")
            .gather(1, &batch.actions, false)
            .squeeze_dim(1);
        let second = all.topk(2, 1, true, true).0.select(1, 1);
        let not_done: Tensor = 1.0 - &batch.dones;
        let y: Tensor = &batch.rewards + second * not_done * 0.99;
        (q - y).square().mean(tch::Kind::Float)
    });
    let (a, b) = (loss.double_value(&[]), manual.double_value(&[]));
    assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    assert_ne!(a, plain.double_value(&[]));
    // The host backend bootstraps from the same biased choice.
    let (host, _, _) = agent.host_loss_gradient(&forbidding);
    assert!(
        (host - b).abs() < 1e-5 * b.abs().max(1.0),
        "host {host} vs {b}"
    );
}

#[test]
fn decoupled_bias_is_bounded_by_the_q_range() {
    let cfg = FearConfig::Decoupled(DecoupledFearConfig::default());
    let (mut agent, _) = agent_with(Some(cfg), 6);
    let rng = RngHandle::new(RngKind::Fast, 0);
    let m = agent.fear_mut().expect("fear");
    m.appraise(&[0.2, 0.4, 0.1, 0.5], &EmotionalContext::default())
        .expect("appraise");
    let sf = StateFear::default();
    let mut q = [1.0f32, 0.0, 0.5, 0.2];
    let before = q;
    assert_eq!(m.select(&sf, &mut q, &rng), None);
    for (a, b) in before.iter().zip(&q) {
        // Danger ∈ [0, 1] and scale 1: no action moves by more than the range (1.0).
        assert!(b <= a && a - b <= 1.0 + 1e-6);
    }
}

#[test]
fn wrong_feature_lengths_and_actions_are_errors() {
    let (mut agent, rng) = agent_with(None, 7);
    let ctx = EmotionalContext::default();
    assert!(agent.act(&[0.0; 3], &ctx, &rng, true).is_err());
    assert!(agent
        .observe(&[0.0; 4], 9, 0.0, &[0.0; 4], false, &ctx, &rng)
        .is_err());
    assert!(agent
        .observe(&[0.0; 4], 1, 0.0, &[0.0; 5], false, &ctx, &rng)
        .is_err());
    assert!(DqnAgent::new(0, 4, DqnConfig::default(), &rng).is_err());
}

/// The host backend takes the same steps as libtorch: from the same seed,
/// after 60 updates on the same replay samples (fear hooks, loss weights,
/// LR modulation, biased targets, target copies every 25 updates, Huber and
/// clipping included) every Q-network weight agrees to float rounding.
#[test]
fn host_and_libtorch_backends_take_the_same_steps() {
    use crate::config::{Backend, Loss};
    let variants: Vec<(&str, DqnConfig)> = crate::registry()
        .entries()
        .iter()
        .map(|e| (e.id, (e.make)()))
        .chain([(
            "dqn huber+clip",
            DqnConfig {
                loss: Loss::Huber { delta: 1.0 },
                max_grad_norm: Some(0.5),
                ..Default::default()
            },
        )])
        .collect();
    for (name, base) in variants {
        let run = |backend: Backend| {
            seed_everything(7);
            let rng = RngHandle::new(RngKind::Fast, 7);
            let cfg = DqnConfig {
                backend,
                target_network_frequency: 25,
                ..base.clone()
            };
            let mut agent = DqnAgent::new(4, 4, cfg, &rng).expect("agent");
            fill_replay(&mut agent, &rng, 400);
            let mut losses = Vec::new();
            for _ in 0..60 {
                let st = agent.update(&rng).expect("update");
                losses.push((st.td_loss, st.q_mean, st.learning_rate, st.fear_loss));
            }
            // The Q-network's weights, then the fear network's when it has one.
            let mut stores = vec![&agent.online_vs];
            stores.extend(agent.fear.as_ref().and_then(|f| f.var_store()));
            let weights: Vec<f32> = stores
                .iter()
                .flat_map(|vs| vs.trainable_variables())
                .flat_map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).expect("vec"))
                .collect();
            let q = agent.q_values(&[0.1, 0.4, 0.2, 0.9], None);
            (weights, losses, q.ok())
        };
        let (w_host, l_host, q_host) = run(Backend::Host);
        let (w_torch, l_torch, q_torch) = run(Backend::Libtorch);
        assert_eq!(w_host.len(), w_torch.len());
        let max_diff = w_host
            .iter()
            .zip(&w_torch)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{name}: weights differ by {max_diff}");
        let moved = w_host
            .iter()
            .zip(&w_torch)
            .zip(run(Backend::Host).0.iter())
            .all(|((a, _), c)| a == c);
        assert!(moved, "{name}: the host backend is deterministic");
        for (i, (a, b)) in l_host.iter().zip(&l_torch).enumerate() {
            let tol = 1e-4 * (1.0 + b.0.abs());
            assert!(
                (a.0 - b.0).abs() < tol,
                "{name} update {i}: loss {a:?} vs {b:?}"
            );
            assert!(
                (a.1 - b.1).abs() < 1e-4,
                "{name} update {i}: q {a:?} vs {b:?}"
            );
            assert_eq!(a.2, b.2, "{name} update {i}: learning rate");
            match (a.3, b.3) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() < 1e-4,
                    "{name} update {i}: fear loss {x} vs {y}"
                ),
                (x, y) => assert_eq!(x.is_some(), y.is_some(), "{name}: fear loss"),
            }
        }
        if let (Some(a), Some(b)) = (q_host, q_torch) {
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{name}: q {x} vs {y}");
            }
        }
    }
}

/// The host backend's TD loss and its gradient equal libtorch's autograd of
/// [`DqnAgent::q_loss`] on the same batch and fear contribution, for every
/// registered agent (inputs, loss weights, biased targets) and Huber.
#[test]
fn host_td_gradient_matches_libtorch_autograd() {
    use crate::config::Loss;
    let mut configs: Vec<(String, DqnConfig)> = crate::registry()
        .entries()
        .iter()
        .map(|e| (e.id.to_string(), (e.make)()))
        .collect();
    configs.push((
        "dqn huber".into(),
        DqnConfig {
            loss: Loss::Huber { delta: 0.05 },
            ..Default::default()
        },
    ));
    for (name, cfg) in configs {
        seed_everything(3);
        let rng = RngHandle::new(RngKind::Fast, 3);
        let mut agent = DqnAgent::new(4, 4, cfg, &rng).expect("agent");
        fill_replay(&mut agent, &rng, 300);
        // A few steps first, so that the weights are not at initialisation.
        for _ in 0..5 {
            agent.update(&rng).expect("update");
        }
        let batch = agent.sample_batch(&rng).expect("batch");
        let bf = match agent.fear_mut() {
            Some(f) => f.prepare_batch(&batch).expect("prepare"),
            None => BatchFear::default(),
        };
        let (loss, q_mean) = agent.q_loss(&batch, &bf).expect("q loss");
        let reference = agent.libtorch_gradient(&loss);
        let loss = loss.double_value(&[]);
        let (host_loss, host_q, grad) = agent.host_loss_gradient(&bf);
        assert!(
            (host_loss - loss).abs() <= 1e-5 * (1.0 + loss.abs()),
            "{name}: loss {host_loss} vs {loss}"
        );
        assert!(
            (host_q - q_mean).abs() < 1e-5,
            "{name}: q {host_q} vs {q_mean}"
        );
        assert_eq!(grad.len(), reference.len());
        let scale = reference.iter().fold(0f32, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{name}: a gradient to compare");
        for (i, (a, b)) in grad.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "{name}: grad[{i}] {a} vs autograd {b}"
            );
        }
    }
}
