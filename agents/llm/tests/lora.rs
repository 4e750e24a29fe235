//! `llm-neuro`'s emotional LoRA adapters (stories260K): the frozen model
//! until trained and in the neutral state; a blend of weights (1, 0, 0, 0)
//! is the fear adapter alone; the text phase leaves every frozen weight
//! bit-identical and lowers each profile's held-out loss; checkpoints
//! restore the adapters; RL trains them.

mod common;
use common::{goemotions_dir, model};

use emorl_agents_llm::eval::emotion_of_values;
use emorl_agents_llm::lora_text::{pretrain_lora_on_corpora, LoraTextConfig};
use emorl_agents_llm::modules::lora::LoraConfig;
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent, RlConfig, Trainer};
use emorl_lm::Hooks;
use tch::{Kind, Tensor};

fn config() -> AgentConfig {
    AgentConfig {
        lora: LoraConfig {
            layers: vec![1, -1],
            rank: 2,
            alpha: 4.0,
        },
        ..AgentConfig::default()
    }
}

fn tokens(agent: &LlmAgent) -> Tensor {
    let ids = agent
        .model()
        .tokenizer()
        .encode("Once upon a time, there was a scared little dog", true)
        .unwrap();
    Tensor::from_slice(&ids.iter().map(|&x| i64::from(x)).collect::<Vec<_>>()).view([1, -1])
}

fn logits(agent: &mut LlmAgent, phasic: [f32; 4]) -> Tensor {
    let t = tokens(agent);
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

fn small_text() -> LoraTextConfig {
    LoraTextConfig {
        epochs: 3,
        lr: 1e-2,
        batch: 8,
        per_class: 16,
        test_per_class: 8,
        max_tokens: 24,
    }
}

#[test]
fn lora_adapters_blend_by_the_state_and_learn_their_profiles() {
    tch::manual_seed(0);
    let mut agent = LlmAgent::new(model(), AgentKind::Neuro, config()).unwrap();
    assert!(agent.modules().neuro.is_some() && agent.modules().encoder.is_none());
    let frozen_weights: Vec<(String, Tensor)> = agent
        .model()
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let t = tokens(&agent);
    let plain = agent.model_mut().forward(&t, None, None).unwrap().logits;
    // Untrained (B = 0): the frozen model, bit for bit, in any state.
    assert_eq!(
        max_diff(&plain, &logits(&mut agent, [0.9, 0.3, 0.5, 0.1])),
        0.0
    );

    // The text phase on GoEmotions: held-out loss of each profile drops.
    let mut steps = 0;
    let report = pretrain_lora_on_corpora(
        &mut agent,
        &goemotions_dir(),
        None,
        &small_text(),
        |i, total, _| {
            assert!(i <= total);
            steps = i;
        },
    )
    .unwrap()
    .expect("report");
    assert_eq!(steps, report.steps);
    assert_eq!(report.held_out.len(), 4);
    for p in &report.held_out {
        assert!(
            p.adapted < p.frozen - 0.05,
            "{}: {} -> {}",
            p.emotion,
            p.frozen,
            p.adapted
        );
    }
    // Frozen weights bit-identical, with no gradient.
    for ((n0, a), (n1, b)) in frozen_weights.iter().zip(agent.model().parameters()) {
        assert_eq!(n0, &n1);
        assert!(!b.requires_grad(), "{n1}");
        assert!(a.equal(b), "{n1} changed");
    }
    // The neutral state is still the frozen model bit for bit.
    assert_eq!(max_diff(&plain, &logits(&mut agent, [0.0; 4])), 0.0);

    // Blend (1, 0, 0, 0) = the fear adapter alone: its own columns of A
    // and rows of B, written out by hand.
    let named = agent.named_tensors();
    let scale = 4.0 / 2.0;
    let mut hooks = Hooks::new();
    for layer in agent.modules().lora.as_ref().unwrap().layers() {
        let get = |s: &str| {
            named
                .iter()
                .find(|(n, _)| n == &format!("lora.l{layer}_{s}"))
                .map(|(_, t)| t.detach())
                .unwrap()
        };
        let a = get("a").narrow(1, 0, 2);
        let b = get("b").narrow(0, 0, 2);
        hooks = hooks.with_qkv_delta(layer, move |x: &Tensor| {
            Ok(x.to_kind(Kind::Float).matmul(&a).matmul(&b) * scale)
        });
    }
    let alone = agent
        .model_mut()
        .forward(&t, None, Some(&hooks))
        .unwrap()
        .logits;
    let blended = logits(&mut agent, [1.0, 0.0, 0.0, 0.0]);
    assert!(
        max_diff(&alone, &blended) < 1e-5,
        "{}",
        max_diff(&alone, &blended)
    );
    // And the state matters: fear and joy give different logits.
    assert!(max_diff(&blended, &logits(&mut agent, [0.0, 0.0, 0.0, 1.0])) > 1e-3);

    // Checkpoint round trip restores the adapters exactly.
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let mut loaded = LlmAgent::load(dir.path(), model()).unwrap();
    assert_eq!(
        max_diff(&blended, &logits(&mut loaded, [1.0, 0.0, 0.0, 0.0])),
        0.0
    );

    // RL trains the adapters (and nothing else exists to train).
    let before: Vec<Tensor> = agent
        .trainable_parameters()
        .iter()
        .map(Tensor::copy)
        .collect();
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
