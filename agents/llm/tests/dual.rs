//! `llm-dual`'s dual-head emotional adapters (stories260K): the frozen
//! model until trained; the supervised phase on DailyDialog lowers the
//! response loss on held-out validation dialogues versus the untrained
//! adapter and leaves every frozen weight bit-identical; the emotion
//! changes the output once trained; checkpoints restore the adapters; RL
//! trains them.

mod common;
use common::{dailydialog_dir, model};

use emorl_agents_llm::dual_text::{
    dailydialog_examples, pretrain_dual_on_dialogues, DualTextConfig,
};
use emorl_agents_llm::eval::emotion_of_values;
use emorl_agents_llm::modules::dual::DualConfig;
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent, RlConfig, Trainer};
use tch::Tensor;

fn config() -> AgentConfig {
    AgentConfig {
        dual: DualConfig {
            layers: vec![1, -1],
            ..DualConfig::default()
        },
        ..AgentConfig::default()
    }
}

fn logits(agent: &mut LlmAgent, phasic: [f32; 4]) -> Tensor {
    let ids = agent
        .model()
        .tokenizer()
        .encode("USER: I am so happy today!\nBOT: ", true)
        .unwrap();
    let t =
        Tensor::from_slice(&ids.iter().map(|&x| i64::from(x)).collect::<Vec<_>>()).view([1, -1]);
    let e = emotion_of_values(&[phasic], agent.model().device()).unwrap();
    let hooks = agent.hooks(&e, 0).unwrap();
    agent
        .model_mut()
        .forward(&t, None, Some(&hooks))
        .unwrap()
        .logits
        .detach()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn dual_adapters_learn_dailydialog_responses_and_leave_the_model_frozen() {
    tch::manual_seed(0);
    let mut agent = LlmAgent::new(model(), AgentKind::Dual, config()).unwrap();
    assert_eq!(agent.modules().dual.as_ref().unwrap().layers(), vec![1, 4]);
    let frozen_weights: Vec<(String, Tensor)> = agent
        .model()
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let plain = {
        let ids = agent
            .model()
            .tokenizer()
            .encode("USER: I am so happy today!\nBOT: ", true)
            .unwrap();
        let t = Tensor::from_slice(&ids.iter().map(|&x| i64::from(x)).collect::<Vec<_>>())
            .view([1, -1]);
        agent.model_mut().forward(&t, None, None).unwrap().logits
    };
    // Untrained (output projections zero): the frozen model, bit for bit.
    assert_eq!(
        max_diff(&plain, &logits(&mut agent, [0.9, 0.1, 0.0, 0.3])),
        0.0
    );

    let d = dailydialog_examples(&dailydialog_dir(), 2, 7).unwrap();
    let (train, held_out) = (&d.train, &d.held_out);
    assert!(train.len() > 1000 && held_out.len() > 1000);
    // The three parts are different dialogues.
    let ids = |v: &[emorl_text::DialogueExample]| -> std::collections::BTreeSet<String> {
        v.iter().map(|e| e.dialogue_id.clone()).collect()
    };
    let (a, b, c) = (ids(train), ids(held_out), ids(&d.evaluation));
    assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
    assert!(c.len() > 100 && c.len() < 300, "{}", c.len());
    let cfg = DualTextConfig {
        steps: 60,
        lr: 3e-3,
        batch: 8,
        max_tokens: 48,
        history_turns: 2,
        held_out: 64,
        ..DualTextConfig::default()
    };
    let mut seen = Vec::new();
    let report = pretrain_dual_on_dialogues(&mut agent, train, held_out, &cfg, |i, t| {
        seen.push((i, t.clone()));
    })
    .unwrap()
    .expect("report");
    assert_eq!(seen.len(), 60);
    // The first step runs the untrained adapter: the frozen model, so the
    // distillation term (KL to the frozen model) is zero; the gate starts at
    // sigmoid(0) = 0.5 up to its small random weights.
    assert!(seen[0].1.distillation.abs() < 1e-6, "{:?}", seen[0]);
    assert!((seen[0].1.gate_mean - 0.5).abs() < 0.05, "{:?}", seen[0]);
    let t = &seen[0].1;
    let total = t.lm + 0.1 * t.propagation + 0.1 * t.distillation + 0.01 * t.gate_mean;
    assert!((t.total - total).abs() < 1e-5, "{t:?}");
    for (_, t) in &seen {
        assert!(t.lm.is_finite() && t.propagation >= 0.0 && t.propagation <= 2.0 + 1e-6);
        assert!(t.distillation >= -1e-6, "{t:?}");
        assert!((0.0..=1.0).contains(&t.gate_mean) && (0.0..=1.0).contains(&t.gate_sparsity));
    }
    let h = &report.held_out;
    // The untrained adapter is the frozen model.
    assert!((h.untrained - h.frozen).abs() < 1e-6, "{h:?}");
    assert!(h.trained < h.untrained - 0.05, "{h:?}");
    assert!(h.tokens > 200, "{h:?}");
    // Propagation: g_out learned to point along g_in.
    let first = seen[..6].iter().map(|(_, t)| t.propagation).sum::<f64>() / 6.0;
    assert!(
        report.final_terms.propagation < first,
        "{first} -> {:?}",
        report.final_terms
    );

    // Frozen weights bit-identical, with no gradient.
    for ((n0, a), (n1, b)) in frozen_weights.iter().zip(agent.model().parameters()) {
        assert_eq!(n0, &n1);
        assert!(!b.requires_grad(), "{n1}");
        assert!(a.equal(b), "{n1} changed");
    }
    // Trained, the emotion changes the output.
    let joy = logits(&mut agent, [0.0, 0.0, 0.0, 1.0]);
    let fear = logits(&mut agent, [1.0, 0.0, 0.0, 0.0]);
    assert!(max_diff(&joy, &fear) > 1e-4, "{}", max_diff(&joy, &fear));

    // Checkpoint round trip restores the adapters exactly.
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let mut loaded = LlmAgent::load(dir.path(), model()).unwrap();
    assert_eq!(
        max_diff(&joy, &logits(&mut loaded, [0.0, 0.0, 0.0, 1.0])),
        0.0
    );

    // RL trains the adapters.
    let before: Vec<Tensor> = agent
        .modules()
        .dual
        .as_ref()
        .map(|_| {
            agent
                .trainable_parameters()
                .iter()
                .map(Tensor::copy)
                .collect()
        })
        .unwrap();
    let rl = RlConfig {
        prompts_per_update: 2,
        samples_per_prompt: 2,
        max_new_tokens: 8,
        updates: 1,
        max_turn: 1,
        ..RlConfig::default()
    };
    let mut trainer = Trainer::new(agent, rl).unwrap();
    trainer.update().unwrap();
    let moved = trainer
        .agent()
        .trainable_parameters()
        .iter()
        .zip(&before)
        .any(|(a, b)| !a.equal(b));
    assert!(moved);
}

#[test]
fn the_dual_phase_refuses_bad_settings() {
    let mut agent = LlmAgent::new(model(), AgentKind::Dual, config()).unwrap();
    let d = dailydialog_examples(&dailydialog_dir(), 2, 0).unwrap();
    let (train, held) = (&d.train, &d.held_out);
    for bad in [
        DualTextConfig {
            batch: 0,
            ..DualTextConfig::default()
        },
        DualTextConfig {
            lr: f64::NAN,
            ..DualTextConfig::default()
        },
        DualTextConfig {
            sparsity: -1.0,
            ..DualTextConfig::default()
        },
        DualTextConfig {
            max_tokens: 2,
            ..DualTextConfig::default()
        },
    ] {
        let e = pretrain_dual_on_dialogues(&mut agent, &train[..8], &held[..8], &bad, |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("dual text phase"), "{e}");
    }
    // An agent without the adapters: nothing to do.
    let mut base = LlmAgent::new(model(), AgentKind::Gate, AgentConfig::default()).unwrap();
    assert!(pretrain_dual_on_dialogues(
        &mut base,
        &train[..8],
        &held[..8],
        &DualTextConfig::default(),
        |_, _| {}
    )
    .unwrap()
    .is_none());
}

/// `top_k = 1` leaves one token to sample from: the greedy reply, at any
/// temperature.
#[test]
fn top_k_one_samples_the_greedy_reply() {
    let d = dailydialog_examples(&dailydialog_dir(), 2, 0).unwrap();
    let obs = emorl_agents_llm::dual_text::observation(&d.evaluation[0]);
    let reply = |top_k: usize, temperature: f64| {
        let cfg = AgentConfig {
            top_k,
            temperature,
            max_new_tokens: 12,
            ..config()
        };
        let mut a = LlmAgent::new(model(), AgentKind::Dual, cfg).unwrap();
        emorl_agents_llm::eval::generate_with_emotion(&mut a, &obs, [0.0, 0.0, 0.0, 1.0], 3)
            .unwrap()
            .text
    };
    assert_eq!(reply(1, 1.5), reply(0, 0.0));
}
