//! Steering directions from GoEmotions (checked against an independent,
//! unbatched computation), their norm, response-only steering, and the
//! agreement of the sampling and learning passes (stories260K).

mod common;
use common::{
    goemotions_dir, learning_pass_logprobs, max_gap, model, sample_and_check_learning_pass,
    two_prompts_and_greedy_responses,
};

use emorl_agents_llm::eval::emotion_of_values;
use emorl_agents_llm::rl::rollout::pack;
use emorl_agents_llm::supervision::{goemotions_texts, CLASSES, NEUTRAL_CLASS};
use emorl_agents_llm::{
    AgentConfig, AgentKind, DirectionSource, LlmAgent, LlmAgentError, RlConfig, SteeringConfig,
    SteeringVectors, Trainer, EMOTIONS,
};
use emorl_core::Env;
use emorl_envs_text::Dialogue;
use emorl_lm::{Hooks, Model};
use tch::{Kind, Tensor};

/// Few texts per class: the tests check the computation, not the directions' quality.
const TEXTS: usize = 12;

fn config() -> AgentConfig {
    AgentConfig {
        steering: SteeringConfig {
            texts_per_class: TEXTS,
            ..SteeringConfig::default()
        },
        ..AgentConfig::default()
    }
}

fn norm(t: &Tensor) -> f64 {
    t.norm().double_value(&[])
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[]) / (norm(a) * norm(b))
}

/// Sets every steering scale to `value`.
fn set_scales(agent: &LlmAgent, value: f64) {
    let _g = tch::no_grad_guard();
    let steering = agent.modules().steering.as_ref().expect("a steering agent");
    let _ = steering.scales().shallow_clone().fill_(value);
}

/// The independent reference: one text at a time, plain means (no batching,
/// padding or sorting).
fn reference_directions(m: &mut Model, layer: usize) -> (Vec<Tensor>, f64) {
    let dir = goemotions_dir();
    let labels = emorl_text::load_labels(dir.join("labels.txt")).unwrap();
    let train = emorl_text::load_split(dir.join("train.tsv"), labels.len()).unwrap();
    let texts = goemotions_texts(&labels, &train, TEXTS);
    let mut per_class: Vec<Vec<Tensor>> = (0..CLASSES.len()).map(|_| Vec::new()).collect();
    let mut norms = Vec::new();
    for t in &texts {
        let ids = m.tokenizer().encode(&t.text, true).unwrap();
        assert!(ids.len() > 1, "BOS and at least one token");
        let x = Tensor::from_slice(&ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>())
            .view([1, -1]);
        let out = m
            .read_out(&x, None, &Hooks::new().with_readout(layer + 1))
            .unwrap();
        // Every position but the first (the documented rule).
        let h = out[0].1.squeeze_dim(0);
        let h = h.narrow(0, 1, h.size()[0] - 1);
        norms.push(
            h.square()
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
                .sqrt(),
        );
        per_class[t.class].push(h.mean_dim([0i64].as_slice(), false, Kind::Float));
    }
    let norms = Tensor::cat(&norms, 0);
    // stories260K has no attention sink past the first position, so no
    // other position is left out.
    let median = norms.median().double_value(&[]);
    assert!(norms.max().double_value(&[]) < 10.0 * median);
    let typical = norms.mean(Kind::Float).double_value(&[]);
    let mean = |v: &[Tensor]| {
        assert_eq!(v.len(), TEXTS);
        Tensor::stack(v, 0).mean_dim([0i64].as_slice(), false, Kind::Float)
    };
    let neutral = mean(&per_class[NEUTRAL_CLASS]);
    let dirs = (0..EMOTIONS.len())
        .map(|e| {
            let d = mean(&per_class[e]) - &neutral;
            &d / norm(&d) * typical
        })
        .collect();
    (dirs, typical)
}

#[test]
fn goemotions_directions_are_differences_of_means_at_the_residual_norm() {
    let mut m = model();
    let cfg = SteeringConfig {
        layers: vec![1, 3],
        texts_per_class: TEXTS,
        ..SteeringConfig::default()
    };
    let _g = tch::no_grad_guard();
    let texts = SteeringVectors::from_goemotions(&mut m, &cfg, 0, &goemotions_dir()).unwrap();
    match texts.source() {
        DirectionSource::GoEmotions { texts, .. } => assert_eq!(texts, &[TEXTS; 5]),
        other => panic!("expected GoEmotions, got {other:?}"),
    }
    let pairs = SteeringVectors::from_written_pairs(&mut m, &cfg, 0).unwrap();
    assert_eq!(pairs.source(), &DirectionSource::WrittenPairs);
    for (i, &layer) in texts.layers().to_vec().iter().enumerate() {
        let (expected, typical) = reference_directions(&mut m, layer);
        for (e, want) in EMOTIONS.iter().zip(&expected) {
            let got = texts.direction(i, e).unwrap();
            // The documented norm: one typical residual vector's length.
            assert!(
                (norm(&got) - typical).abs() <= 1e-4 * typical,
                "layer {layer} {e}: |d| {} vs mean |h| {typical}",
                norm(&got)
            );
            let diff = (&got - want).abs().max().double_value(&[]);
            assert!(diff <= 1e-3 * typical, "layer {layer} {e}: {diff}");
            // Real text gives other directions than the written pairs.
            let p = pairs.direction(i, e).unwrap();
            let c = cosine(&got, &p);
            eprintln!("layer {layer} {e}: |d| {typical:.3}, off the reference by {diff:.2e}, cos with the pairs {c:.3}");
            assert!(c < 0.95, "layer {layer} {e}: cos with the pairs {c}");
            assert!(norm(&p) > 0.0);
        }
    }
    // Without GoEmotions files: the written pairs, exactly.
    let fallback = SteeringVectors::from_goemotions_or_pairs(&mut m, &cfg, 0, None).unwrap();
    assert_eq!(fallback.source(), &DirectionSource::WrittenPairs);
    for e in EMOTIONS {
        assert!(fallback
            .direction(1, e)
            .unwrap()
            .equal(&pairs.direction(1, e).unwrap()));
    }
    let none = SteeringConfig {
        texts_per_class: 0,
        ..cfg
    };
    assert!(SteeringVectors::from_goemotions(&mut m, &none, 0, &goemotions_dir()).is_err());
}

#[test]
fn steering_changes_the_logits_of_response_positions_only() {
    let mut agent = LlmAgent::new(model(), AgentKind::Steer, config()).unwrap();
    set_scales(&agent, 0.5);
    let (prompts, gens) = two_prompts_and_greedy_responses(&mut agent, 6);
    let _g = tch::no_grad_guard();
    let device = agent.model().device();
    let pad = i64::from(agent.model().tokenizer().pad_id());
    let p = pack(|j| &prompts[j], &gens, pad, device).unwrap();
    let emotion = emotion_of_values(&[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], device).unwrap();
    let frozen = agent
        .model_mut()
        .forward(&p.tokens, Some(&p.mask), None)
        .unwrap()
        .logits;
    let hooks = agent.hooks(&emotion, p.lp as usize).unwrap();
    let steered = agent
        .model_mut()
        .forward(&p.tokens, Some(&p.mask), Some(&hooks))
        .unwrap()
        .logits;
    // Prompt positions (the last one predicts the first response token):
    // the frozen model's logits, bit for bit.
    assert!(steered.narrow(1, 0, p.lp).equal(&frozen.narrow(1, 0, p.lp)));
    for row in 0..2 {
        let d = (steered.get(row).narrow(0, p.lp, p.lr) - frozen.get(row).narrow(0, p.lp, p.lr))
            .abs()
            .amax([-1i64].as_slice(), false);
        assert!(
            d.min().double_value(&[]) > 1e-3,
            "row {row}: a response position is not steered ({d:?})"
        );
    }
    // From column 0 the prompt is steered too (what steering did before).
    let everywhere = agent.hooks(&emotion, 0).unwrap();
    let all = agent
        .model_mut()
        .forward(&p.tokens, Some(&p.mask), Some(&everywhere))
        .unwrap()
        .logits;
    let d = (all.narrow(1, p.lp - 1, 1) - frozen.narrow(1, p.lp - 1, 1))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d > 1e-3);
}

#[test]
fn sampling_and_the_learning_pass_agree_on_the_steered_response() {
    let mut agent = LlmAgent::new(model(), AgentKind::Steer, config()).unwrap();
    set_scales(&agent, 0.5);
    // Three prompts of different lengths, twice each, each row its own emotion.
    let (prompts, emotion, gens) = sample_and_check_learning_pass(&mut agent);
    let _g = tch::no_grad_guard();
    // The steering mattered: the frozen model gives the same first token's
    // log-prob (unsteered) and other later ones.
    let mut frozen = LlmAgent::new(model(), AgentKind::Base, AgentConfig::default()).unwrap();
    let base = learning_pass_logprobs(&mut frozen, &prompts, &gens, |lp| lp, &emotion);
    for (j, g) in gens.iter().enumerate() {
        let first = base.double_value(&[j as i64, 0]);
        assert!((first - f64::from(g.logprobs[0])).abs() < 1e-4);
    }
    let moved = max_gap(&gens, &base, 1);
    eprintln!("steered vs frozen log-probs: {moved:.3}");
    assert!(moved > 1e-2);
    // Steering the prompt in the learning pass would not match the samples.
    let everywhere = learning_pass_logprobs(&mut agent, &prompts, &gens, |_| 0, &emotion);
    assert!(max_gap(&gens, &everywhere, 0) > 1e-2);
}

#[test]
fn sharing_the_prompt_prefill_keeps_the_steering_update() {
    // Steering acts on the response only, so sampling may prefill each
    // prompt once for its k rows; samples and the update stay the same.
    let run = |share: bool| {
        let agent = LlmAgent::new(model(), AgentKind::Steer, config()).unwrap();
        set_scales(&agent, 0.3);
        let cfg = RlConfig {
            share_prompt_prefill: share,
            prompts_per_update: 2,
            samples_per_prompt: 3,
            max_new_tokens: 8,
            updates: 2,
            max_turn: 1,
            kl_coef: 0.1,
            seed: 8,
            ..RlConfig::default()
        };
        let mut t = Trainer::new(agent, cfg).unwrap();
        let s = t.train(|_| {}).unwrap();
        (s, t.agent().named_tensors())
    };
    let (shared, ps) = run(true);
    let (plain, pp) = run(false);
    assert_eq!(shared.len(), 2);
    for (a, b) in shared.iter().zip(&plain) {
        assert_eq!(a.reward_mean, b.reward_mean);
        assert_eq!(a.response_tokens, b.response_tokens);
        assert!((a.loss - b.loss).abs() <= 1e-4 * (1.0 + b.loss.abs()));
        assert!((a.kl - b.kl).abs() <= 1e-4 * (1.0 + b.kl.abs()));
        assert!(a.kl > 0.0, "the steering is exercised");
    }
    for ((n, x), (_, y)) in ps.iter().zip(&pp) {
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{n} differs by {d}");
    }
}

#[test]
fn checkpoint_restores_the_directions_and_their_source() {
    let cfg = AgentConfig {
        temperature: 0.0,
        max_new_tokens: 8,
        ..config()
    };
    let mut agent = LlmAgent::new(model(), AgentKind::Steer, cfg).unwrap();
    set_scales(&agent, 0.4);
    let source = agent.modules().steering.as_ref().unwrap().source().clone();
    assert!(matches!(source, DirectionSource::GoEmotions { .. }));
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let manifest = emorl_agents_llm::read_manifest(dir.path()).unwrap();
    assert_eq!(manifest.steering.as_ref(), Some(&source));
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(7));
    let ctx = env.context();
    let g0 = agent.act_generation(&obs, &ctx).unwrap();

    let mut loaded = LlmAgent::load(dir.path(), model()).unwrap();
    assert_eq!(
        loaded.modules().steering.as_ref().unwrap().source(),
        &source
    );
    for ((n0, a), (n1, b)) in agent.named_tensors().iter().zip(&loaded.named_tensors()) {
        assert_eq!(n0, n1);
        assert!(a.equal(b), "{n0} differs after loading");
    }
    let g1 = loaded.act_generation(&obs, &ctx).unwrap();
    assert_eq!(g0.tokens, g1.tokens);
    assert_eq!(g0.logprobs, g1.logprobs);

    // A steering checkpoint that does not say where its directions came
    // from predates response-only, normalised directions: refused.
    let path = dir.path().join(emorl_agents_llm::checkpoint::MANIFEST_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("steering");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    match LlmAgent::load(dir.path(), model()) {
        Err(LlmAgentError::Checkpoint { msg, .. }) => assert!(msg.contains("steering"), "{msg}"),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}
