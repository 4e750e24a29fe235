//! Tests of the LLM agents on stories260K (tiny and fast).

mod common;
use common::{model, stories260k};

use emorl_agents_llm::eval::{
    emotion_markers, forced_emotion, marker_token_ids, EmotionCondition, LexiconPart,
};
use emorl_agents_llm::{
    evaluate_returns, AgentConfig, AgentKind, LlmAgent, LlmAgentError, RlConfig, Trainer,
    TurnEmotion,
};
use emorl_core::{EmotionalContext, Env, SocialContext};
use emorl_envs_text::Dialogue;
use emorl_lm::{DType, Model};
use tch::{Kind, Tensor};

fn small_rl(seed: u64) -> RlConfig {
    RlConfig {
        prompts_per_update: 2,
        samples_per_prompt: 2,
        max_new_tokens: 8,
        updates: 3,
        seed,
        max_turn: 1,
        ..RlConfig::default()
    }
}

fn copies(ts: &[Tensor]) -> Vec<Tensor> {
    let _g = tch::no_grad_guard();
    ts.iter().map(|t| t.detach_copy()).collect()
}

fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.eq_tensor(b).all().int64_value(&[]) == 1
}

/// Sets every trainable module tensor to N(0, std²) values.
fn randomise(agent: &LlmAgent, std: f64) {
    let _g = tch::no_grad_guard();
    tch::manual_seed(11);
    for p in agent.trainable_parameters() {
        let mut p = p.shallow_clone();
        p.copy_(&(Tensor::randn(p.size(), (Kind::Float, p.device())) * std));
    }
}

fn first_prompt(agent: &LlmAgent) -> (Tensor, Tensor, EmotionalContext) {
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(3));
    let ids = agent.encode_prompt(&obs).unwrap();
    let (t, m) = emorl_agents_llm::pad_left(&[ids], agent.model().tokenizer().pad_id()).unwrap();
    (t, m, env.context())
}

fn emotion_for(
    agent: &mut LlmAgent,
    ctx: &EmotionalContext,
    t: &Tensor,
    m: &Tensor,
) -> TurnEmotion {
    let _g = tch::no_grad_guard();
    let (modules, model) = agent.parts_mut();
    modules
        .emotion(model, &[ctx], None, None, t, m, None)
        .unwrap()
}

/// Logits over `t` with every position treated as response (response start
/// 0), so that steering acts on the prompt's own next-token logits too.
fn logits_with(agent: &mut LlmAgent, emotion: &TurnEmotion, t: &Tensor, m: &Tensor) -> Tensor {
    let _g = tch::no_grad_guard();
    let hooks = agent.hooks(emotion, 0).unwrap();
    agent
        .model_mut()
        .forward(t, Some(m), Some(&hooks))
        .unwrap()
        .logits
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn training_leaves_the_frozen_model_bit_identical_and_moves_every_module() {
    let agent = LlmAgent::new(model(), AgentKind::Full, AgentConfig::default()).unwrap();
    let frozen: Vec<(String, Tensor)> = agent
        .model()
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.detach_copy()))
        .collect();
    let before: Vec<(String, Tensor)> = agent
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.detach_copy()))
        .collect();
    // With the ERM's feedback objective, which alone trains its appraisal.
    let cfg = RlConfig {
        feedback_coef: 0.5,
        ..small_rl(1)
    };
    let mut trainer = Trainer::new(agent, cfg).unwrap();
    assert_eq!(
        trainer.objective_names(),
        ["policy", "feedback"],
        "objectives in the order they are summed"
    );
    let stats = trainer.train(|_| {}).unwrap();
    assert_eq!(stats.len(), 3);
    assert!(stats.iter().all(|s| s
        .objectives
        .iter()
        .any(|(n, v)| n == "feedback" && *v > 0.0)));
    let agent = trainer.agent();
    let now = agent.model().parameters();
    assert_eq!(now.len(), frozen.len());
    for ((n0, t0), (n1, t1)) in frozen.iter().zip(&now) {
        assert_eq!(n0, n1);
        assert!(bit_equal(t0, t1), "frozen tensor {n0} changed");
        assert!(!t1.requires_grad(), "frozen tensor {n0} requires grad");
        assert!(!t1.grad().defined(), "frozen tensor {n0} has a gradient");
    }
    let after = agent.named_tensors();
    // The emotion reaches the modules as a detached input: RL does not
    // train the encoder (its meaning comes from supervision).
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        if n.starts_with("encoder.") {
            assert!(bit_equal(a, b), "encoder tensor {n} changed under RL");
        }
    }
    for part in ["erm.heads", "erm.gru", "erm.logit_direction"] {
        assert!(
            before
                .iter()
                .zip(&after)
                .any(|((n, a), (_, b))| n.starts_with(part) && !bit_equal(a, b)),
            "no parameter {part}* changed"
        );
    }
    for module in ["prefix", "gate", "erm", "steering"] {
        let changed = before
            .iter()
            .zip(&after)
            .filter(|((n, _), _)| n.starts_with(&format!("{module}.")))
            .filter(|((_, a), (_, b))| !bit_equal(a, b))
            .count();
        assert!(changed > 0, "no parameter of {module} changed");
    }
    // Buffers (steering directions, token sets) are not trained.
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        if n.contains("directions") || n.contains("cautious") || n.contains("exploratory") {
            assert!(bit_equal(a, b), "buffer {n} changed");
        }
    }
}

#[test]
fn checkpoint_round_trip_reproduces_generation_and_refuses_another_base_model() {
    let config = AgentConfig {
        temperature: 0.0,
        max_new_tokens: 12,
        ..AgentConfig::default()
    };
    let mut agent = LlmAgent::new(model(), AgentKind::Full, config).unwrap();
    randomise(&agent, 0.05);
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(5));
    let ctx = env.context();
    let g0 = agent.act_generation(&obs, &ctx).unwrap();

    let mut loaded = LlmAgent::load(dir.path(), model()).unwrap();
    for ((n0, a), (n1, b)) in agent.named_tensors().iter().zip(&loaded.named_tensors()) {
        assert_eq!(n0, n1);
        assert!(bit_equal(a, b), "{n0} differs after loading");
    }
    let g1 = loaded.act_generation(&obs, &ctx).unwrap();
    assert_eq!(g0.tokens, g1.tokens);
    assert_eq!(g0.logprobs, g1.logprobs);
    // The modules matter for this prompt: the frozen model alone differs.
    let mut base = LlmAgent::new(model(), AgentKind::Base, agent.config().clone()).unwrap();
    let gb = base.act_generation(&obs, &ctx).unwrap();
    assert_ne!(gb.logprobs, g0.logprobs);

    // A different base model: the same file with one weight byte changed.
    let mut bytes = std::fs::read(stories260k()).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    let other = dir.path().join("stories260k-modified.gguf");
    std::fs::write(&other, &bytes).unwrap();
    let other_model = Model::load(&other, DType::F32).unwrap();
    match LlmAgent::load(dir.path(), other_model) {
        Err(LlmAgentError::BaseModelMismatch { expected, found }) => {
            assert!(expected.contains("stories260k-f32.gguf"), "{expected}");
            assert!(found.contains("stories260k-modified.gguf"), "{found}");
        }
        other => panic!("expected a base-model mismatch, got {other:?}"),
    }
}

#[test]
fn same_seed_gives_the_same_stats() {
    let run = || {
        let agent = LlmAgent::new(model(), AgentKind::Full, AgentConfig::default()).unwrap();
        let cfg = RlConfig {
            updates: 2,
            ..small_rl(9)
        };
        let mut t = Trainer::new(agent, cfg).unwrap();
        let mut s = t.train(|_| {}).unwrap();
        for x in &mut s {
            x.seconds = 0.0;
        }
        (s, t.agent().named_tensors())
    };
    let (a, pa) = run();
    let (b, pb) = run();
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    for ((n, x), (_, y)) in pa.iter().zip(&pb) {
        assert!(bit_equal(x, y), "{n} differs between identical runs");
    }
    // A different seed gives different samples.
    let agent = LlmAgent::new(model(), AgentKind::Full, AgentConfig::default()).unwrap();
    let mut t = Trainer::new(
        agent,
        RlConfig {
            updates: 1,
            ..small_rl(10)
        },
    )
    .unwrap();
    let c = t.train(|_| {}).unwrap();
    assert_ne!(
        (c[0].entropy, c[0].reward_mean),
        (a[0].entropy, a[0].reward_mean)
    );
}

#[test]
fn llm_base_is_the_plain_model_and_every_module_changes_the_output() {
    let config = AgentConfig {
        temperature: 0.0,
        max_new_tokens: 10,
        ..AgentConfig::default()
    };
    // llm-base: exactly the frozen model.
    let mut base = LlmAgent::new(model(), AgentKind::Base, config.clone()).unwrap();
    assert!(base.trainable_parameters().is_empty());
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(2));
    let ctx = env.context();
    let g = base.act_generation(&obs, &ctx).unwrap();
    let opts = base.generate_options(0);
    let mut plain = model();
    let p = plain
        .generate(&[obs.to_prompt().as_str()], &opts, None)
        .unwrap();
    assert_eq!(g.tokens, p[0].tokens);
    assert_eq!(g.logprobs, p[0].logprobs);
    let (t, m, c) = first_prompt(&base);
    let e = emotion_for(&mut base, &c, &t, &m);
    let with_hooks = logits_with(&mut base, &e, &t, &m);
    let none = plain.forward(&t, Some(&m), None).unwrap().logits;
    assert!(bit_equal(&with_hooks, &none));

    // Contexts that move the encoder: calm vs threatened.
    let calm = EmotionalContext::default();
    let scared = EmotionalContext {
        threat_distance: Some(0.0),
        near_threat: true,
        harmed: true,
        reward: -1.0,
        social: Some(SocialContext {
            safety_flag: true,
            failed_attempts: 3,
            cumulative_negative: 2.0,
            ..SocialContext::default()
        }),
        ..EmotionalContext::default()
    };
    for kind in [
        AgentKind::StaticPrefix,
        AgentKind::Prefix,
        AgentKind::Gate,
        AgentKind::Erm,
        AgentKind::Steer,
    ] {
        let mut agent = LlmAgent::new(model(), kind, config.clone()).unwrap();
        randomise(&agent, 0.5);
        let (t, m, _) = first_prompt(&agent);
        let e_calm = emotion_for(&mut agent, &calm, &t, &m);
        let e_scared = emotion_for(&mut agent, &scared, &t, &m);
        let l_calm = logits_with(&mut agent, &e_calm, &t, &m);
        let l_scared = logits_with(&mut agent, &e_scared, &t, &m);
        let d_model = max_abs_diff(&l_calm, &none);
        assert!(
            d_model > 1e-3,
            "{kind}: output equals the plain model's ({d_model})"
        );
        let d_emotion = max_abs_diff(&l_calm, &l_scared);
        if kind == AgentKind::StaticPrefix {
            assert_eq!(d_emotion, 0.0, "{kind} must ignore the emotion state");
        } else {
            assert!(
                d_emotion > 1e-4,
                "{kind}: the emotion state does not change the output ({d_emotion})"
            );
        }
    }
}

#[test]
fn trainer_refuses_llm_base_and_stops_on_divergence_keeping_good_parameters() {
    let base = LlmAgent::new(model(), AgentKind::Base, AgentConfig::default()).unwrap();
    assert!(matches!(
        Trainer::new(base, small_rl(0)),
        Err(LlmAgentError::NothingToTrain(_))
    ));
    let agent = LlmAgent::new(model(), AgentKind::Prefix, AgentConfig::default()).unwrap();
    let before = copies(&agent.trainable_parameters());
    // A step this large overflows f32: the guard must restore the parameters.
    let cfg = RlConfig {
        lr: 1e39,
        grad_clip: 0.0,
        ..small_rl(4)
    };
    let mut t = Trainer::new(agent, cfg).unwrap();
    let stats = t.train(|_| {}).unwrap();
    assert!(stats.is_empty());
    assert!(t.stopped().is_some());
    assert!(matches!(t.update(), Err(LlmAgentError::Diverged { .. })));
    let after = t.agent().trainable_parameters();
    for (a, b) in before.iter().zip(&after) {
        assert!(bit_equal(a, b));
    }
}

#[test]
fn rl_raises_the_dialogue_return_over_llm_base() {
    let agent_cfg = AgentConfig {
        temperature: 1.0,
        max_new_tokens: 24,
        ..AgentConfig::default()
    };
    let rl = RlConfig {
        prompts_per_update: 8,
        samples_per_prompt: 4,
        max_new_tokens: 24,
        lr: 1.0,
        kl_coef: 0.0,
        updates: 20,
        seed: 0,
        max_turn: 3,
        microbatch: 32,
        // The ERM's temperature stays put: RL through a global temperature
        // knob mostly moved the KL (docs/llm-design-notes.md, "One optimiser").
        lr_scale: [("erm.temperature".to_string(), 0.0)].into_iter().collect(),
        ..RlConfig::default()
    };
    let held_out: Vec<u64> = (1000..1024).collect();
    let mut base = LlmAgent::new(model(), AgentKind::Base, agent_cfg.clone()).unwrap();
    let base_returns = evaluate_returns(&mut base, &rl.env, &held_out).unwrap();
    let agent = LlmAgent::new(model(), AgentKind::Erm, agent_cfg).unwrap();
    // As `emorl train` does: the encoder's emotion gets its meaning from
    // labelled contexts first; RL then learns what to do with it (the
    // emotion is a detached input to the modulators).
    let encoder = agent.modules().encoder.as_ref().unwrap();
    emorl_agents_llm::supervision::pretrain_encoder_on_dialogue(
        encoder,
        &rl.env,
        &emorl_agents_llm::supervision::EncoderPretrainConfig::default(),
        |_, _| {},
    )
    .unwrap();
    let mut trainer = Trainer::new(agent, rl.clone()).unwrap();
    let stats = trainer
        .train(|s| {
            eprintln!(
                "update {} reward {:.3} kl {:.4}",
                s.update, s.reward_mean, s.kl
            )
        })
        .unwrap();
    assert_eq!(stats.len(), 20);
    let mut agent = trainer.into_agent();
    let trained = evaluate_returns(&mut agent, &rl.env, &held_out).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (b, a) = (mean(&base_returns), mean(&trained));
    eprintln!("held-out mean return: llm-base {b:.3}, trained llm-erm {a:.3}");
    assert!(
        a > b + 0.2,
        "RL did not raise the return enough: {b:.3} -> {a:.3}"
    );
    // Paired by conversation seed: the same openings for both agents.
    let paired = emorl_stats::paired_compare(&base_returns, &trained).unwrap();
    eprintln!("paired: d_z {:.3}, p {:.2e}", paired.d_z, paired.p);
    assert!(paired.d_z > 0.0 && paired.p < 0.05, "{paired:?}");
}

#[test]
fn leave_one_out_advantages_and_their_group_normalisation() {
    use emorl_agents_llm::rl::advantages;
    let r = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0];
    let plain = advantages(&r, 4, None);
    // r_i − mean of the other three.
    let want = [1.0 - 1.0 / 3.0, -2.0 / 3.0, -2.0 / 3.0, 1.0 - 1.0 / 3.0];
    for (a, w) in plain.iter().zip(want) {
        assert!((a - w).abs() < 1e-12);
    }
    // A group of equal rewards has nothing to learn from.
    assert!(plain[4..].iter().all(|&a| a == 0.0));
    let norm = advantages(&r, 4, Some(0.1));
    // Group SD 0.5 (population): divided by 0.5 + 0.1.
    for (n, p) in norm.iter().zip(&plain) {
        assert!((n - p / 0.6).abs() < 1e-12);
    }
}

#[test]
fn erm_supervised_and_feedback_steps_learn_context_targets() {
    let config = AgentConfig {
        max_new_tokens: 6,
        ..AgentConfig::default()
    };
    let mut agent = LlmAgent::new(model(), AgentKind::Erm, config).unwrap();
    let scared = EmotionalContext {
        harmed: true,
        near_threat: true,
        ..EmotionalContext::default()
    };
    let pleased = EmotionalContext {
        reward: 1.0,
        social: Some(SocialContext {
            user_satisfaction: 1.0,
            ..SocialContext::default()
        }),
        ..EmotionalContext::default()
    };
    let pairs = vec![
        ("The monster bit him and he fell.".to_string(), scared),
        ("Thank you, that was perfect!".to_string(), pleased.clone()),
    ];
    let first = agent.erm_supervised_step(&pairs).unwrap().unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = agent.erm_supervised_step(&pairs).unwrap().unwrap();
    }
    assert!(last < 0.8 * first, "supervised ERM loss {first} -> {last}");

    // Phase 3 needs an `act` first; then it trains toward the new context.
    assert_eq!(agent.erm_feedback_step(&pleased).unwrap(), None);
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(1));
    agent.act(&obs, &env.context()).unwrap();
    assert!(agent.erm_feedback_step(&pleased).unwrap().is_some());
    // An agent without an ERM has nothing to train.
    let mut base = LlmAgent::new(model(), AgentKind::Prefix, AgentConfig::default()).unwrap();
    assert_eq!(base.erm_supervised_step(&pairs).unwrap(), None);
}

#[test]
fn erm_update_from_recorded_logits_matches_the_recomputed_update() {
    // llm-erm only processes logits: the trainer's fast path takes the frozen
    // model's logits recorded while sampling instead of recomputing them with
    // two forwards. Both must give the same update.
    let run = |recompute: bool| {
        let agent = LlmAgent::new(model(), AgentKind::Erm, AgentConfig::default()).unwrap();
        randomise(&agent, 0.05);
        let cfg = RlConfig {
            kl_coef: 0.1,
            entropy_coef: 0.01,
            clip: Some(0.2),
            epochs: 2,
            microbatch: 2,
            updates: 2,
            // The expression objective too: its recorded-logits path must
            // match its forward-pass path.
            expression_coef: 1.0,
            ..small_rl(5)
        };
        let mut t = Trainer::new(agent, cfg).unwrap();
        t.set_recompute(recompute);
        let s = t.train(|_| {}).unwrap();
        (s, t.agent().named_tensors())
    };
    let (fast, pf) = run(false);
    let (slow, ps) = run(true);
    assert_eq!(fast.len(), 2);
    for (a, b) in fast.iter().zip(&slow) {
        assert_eq!(a.reward_mean, b.reward_mean);
        assert_eq!(a.response_tokens, b.response_tokens);
        assert!(a.kl > 0.0, "the KL term is exercised");
        assert!(
            a.expression_mass > 0.0,
            "the expression objective is exercised"
        );
        assert!(
            (a.expression_mass - b.expression_mass).abs() <= 1e-4 * b.expression_mass,
            "expression mass: {} (recorded) vs {} (recomputed)",
            a.expression_mass,
            b.expression_mass
        );
        for (x, y, what) in [
            (a.loss, b.loss, "loss"),
            (a.kl, b.kl, "kl"),
            (a.entropy, b.entropy, "entropy"),
            (a.grad_norm, b.grad_norm, "grad_norm"),
        ] {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}: {x} (recorded) vs {y} (recomputed)"
            );
        }
    }
    for ((n, x), (_, y)) in pf.iter().zip(&ps) {
        assert!(max_abs_diff(x, y) < 1e-4, "{n} differs");
    }
}

/// Probability mass of `ids` in the next-token distribution of the first
/// dialogue prompt, with the agent's modules under a forced `condition`.
fn forced_mass(agent: &mut LlmAgent, condition: EmotionCondition, ids: &[i64]) -> f64 {
    let (t, m, _) = first_prompt(agent);
    let emotion = forced_emotion(condition, 1, agent.model().device()).unwrap();
    let logits = logits_with(agent, &emotion, &t, &m);
    let p = logits.select(1, -1).softmax(-1, Kind::Float);
    p.index_select(1, &Tensor::from_slice(ids))
        .sum(Kind::Float)
        .double_value(&[])
}

#[test]
fn expression_objective_ties_forced_emotions_to_their_marker_words() {
    // The lexicon words that are single tokens of stories260K's small vocabulary.
    let probe = model();
    let lexicons: Vec<(EmotionCondition, Vec<i64>)> = EmotionCondition::EMOTIONAL
        .iter()
        .map(|&c| {
            let words = emotion_markers(c.name(), LexiconPart::Expression).unwrap();
            let ids = marker_token_ids(&probe, &words).unwrap();
            (c, ids)
        })
        .filter(|(_, ids)| !ids.is_empty())
        .collect();
    assert!(
        !lexicons.is_empty(),
        "no marker word is a single stories260K token"
    );
    for kind in [AgentKind::Erm, AgentKind::Steer, AgentKind::Prefix] {
        let agent = LlmAgent::new(model(), kind, AgentConfig::default()).unwrap();
        let frozen: Vec<Tensor> = agent
            .model()
            .parameters()
            .into_iter()
            .map(|(_, t)| t.detach_copy())
            .collect();
        let mut trainer = Trainer::new(
            agent,
            RlConfig {
                expression_coef: 1.0,
                expression_target: 0.5,
                lr: 0.1,
                expression_kl: 0.0,
                // One optimiser step per update carries both objectives.
                updates: 8,
                ..small_rl(2)
            },
        )
        .unwrap();
        let before: Vec<f64> = lexicons
            .iter()
            .map(|(c, ids)| forced_mass(trainer.agent_mut(), *c, ids))
            .collect();
        let neutral_before: Vec<f64> = lexicons
            .iter()
            .map(|(_, ids)| forced_mass(trainer.agent_mut(), EmotionCondition::Neutral, ids))
            .collect();
        let stats = trainer.train(|_| {}).unwrap();
        assert!(stats.iter().all(|s| s.expression_mass > 0.0));
        for (i, (c, ids)) in lexicons.iter().enumerate() {
            let after = forced_mass(trainer.agent_mut(), *c, ids);
            let neutral = forced_mass(trainer.agent_mut(), EmotionCondition::Neutral, ids);
            assert!(
                after > 1.5 * before[i] && after > neutral,
                "{}: {} markers {:.4} -> {:.4} under the emotion (neutral {:.4} -> {:.4})",
                kind.id(),
                c.name(),
                before[i],
                after,
                neutral_before[i],
                neutral
            );
        }
        let now = trainer.agent().model().parameters();
        for (a, (n, b)) in frozen.iter().zip(&now) {
            assert!(bit_equal(a, b), "frozen tensor {n} changed");
        }
    }
}

#[test]
fn sharing_the_prompt_prefill_keeps_the_erm_update() {
    // llm-erm only processes logits, so sampling may prefill each prompt once
    // for its k rows; samples, rewards and the update stay the same.
    let run = |share: bool| {
        let agent = LlmAgent::new(model(), AgentKind::Erm, AgentConfig::default()).unwrap();
        randomise(&agent, 0.05);
        let cfg = RlConfig {
            share_prompt_prefill: share,
            samples_per_prompt: 3,
            kl_coef: 0.1,
            ..small_rl(8)
        };
        let mut t = Trainer::new(agent, cfg).unwrap();
        let s = t.train(|_| {}).unwrap();
        (s, t.agent().named_tensors())
    };
    let (shared, ps) = run(true);
    let (plain, pp) = run(false);
    for (a, b) in shared.iter().zip(&plain) {
        assert_eq!(a.reward_mean, b.reward_mean);
        assert_eq!(a.response_tokens, b.response_tokens);
        assert!((a.loss - b.loss).abs() <= 1e-4 * (1.0 + b.loss.abs()));
        assert!((a.kl - b.kl).abs() <= 1e-4 * (1.0 + b.kl.abs()));
    }
    for ((n, x), (_, y)) in ps.iter().zip(&pp) {
        assert!(max_abs_diff(x, y) < 1e-4, "{n} differs");
    }
}

#[test]
fn the_expression_objective_can_penalise_repeated_words() {
    let bad = RlConfig {
        expression_repeat_coef: -1.0,
        ..small_rl(0)
    };
    assert!(bad.validate().is_err());
    let agent = LlmAgent::new(model(), AgentKind::Erm, AgentConfig::default()).unwrap();
    let mut trainer = Trainer::new(
        agent,
        RlConfig {
            expression_coef: 1.0,
            expression_target: 0.5,
            expression_repeat_coef: 1.0,
            max_new_tokens: 16,
            ..small_rl(3)
        },
    )
    .unwrap();
    let stats = trainer.train(|_| {}).unwrap();
    assert_eq!(stats.len(), 3);
    assert!(stats
        .iter()
        .all(|s| s.loss.is_finite() && s.expression_mass > 0.0));
}

#[test]
fn resumed_training_continues_exactly_where_it_stopped() {
    // The optimiser's moments and step count travel with the checkpoint, so
    // 2 updates + save + resume + 1 update equal 3 uninterrupted updates.
    let cfg = RlConfig {
        lr: 0.1,
        feedback_coef: 0.5,
        expression_coef: 1.0,
        updates: 3,
        ..small_rl(9)
    };
    let fresh = || {
        let agent = LlmAgent::new(model(), AgentKind::Erm, AgentConfig::default()).unwrap();
        Trainer::new(agent, cfg.clone()).unwrap()
    };
    let mut whole = fresh();
    let all = whole.train(|_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut first = fresh();
    first.update().unwrap();
    first.update().unwrap();
    first.save(dir.path()).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(dir.path(), model(), None).unwrap();
    assert_eq!(resumed.updates_done(), 2);
    let last = resumed.update().unwrap();
    assert_eq!(last.update, 3);
    assert_eq!(last.reward_mean, all[2].reward_mean);
    assert_eq!(last.loss, all[2].loss);
    assert_eq!(last.grad_norm, all[2].grad_norm);
    for ((n, a), (_, b)) in whole
        .agent()
        .named_tensors()
        .iter()
        .zip(&resumed.agent().named_tensors())
    {
        assert!(bit_equal(a, b), "{n} differs after resuming");
    }
    // A checkpoint that lost its optimiser state is refused rather than
    // restarted with fresh moments (which would change every later step).
    std::fs::remove_file(dir.path().join("optimizer.safetensors")).unwrap();
    assert!(Trainer::resume(dir.path(), model(), None).is_err());
}

#[test]
fn learning_rate_scales_name_module_parts_and_freeze_at_zero() {
    let with = |pairs: &[(&str, f64)]| RlConfig {
        lr_scale: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ..small_rl(1)
    };
    let erm = || LlmAgent::new(model(), AgentKind::Erm, AgentConfig::default()).unwrap();
    // An unknown module is refused by validation, a part the ERM lacks by the
    // trainer; a scale for a module this agent lacks is for other agents.
    assert!(with(&[("decoder", 1.0)]).validate().is_err());
    assert!(with(&[("erm", -1.0)]).validate().is_err());
    let err = Trainer::new(erm(), with(&[("erm.logits", 0.0)])).unwrap_err();
    assert!(err.to_string().contains("erm.logit"), "{err}");
    let t = Trainer::new(erm(), with(&[("prefix", 0.0), ("erm.heads", 0.0)])).unwrap();
    let groups = t.param_groups();
    assert!(groups
        .iter()
        .any(|(g, lr, _)| g == "erm.heads" && *lr == 0.0));
    assert!(groups
        .iter()
        .any(|(g, lr, _)| g == "erm.logit" && *lr > 0.0));
    // A frozen part stays bit-identical through training.
    let cfg = RlConfig {
        lr: 0.1,
        feedback_coef: 1.0,
        ..with(&[("erm.heads", 0.0)])
    };
    let agent = erm();
    let heads: Vec<(String, Tensor)> = agent
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("erm.heads"))
        .map(|(n, t)| (n, t.detach_copy()))
        .collect();
    let mut t = Trainer::new(agent, cfg).unwrap();
    t.train(|_| {}).unwrap();
    for ((n, a), (_, b)) in heads.iter().zip(
        t.agent()
            .named_tensors()
            .iter()
            .filter(|(n, _)| n.starts_with("erm.heads")),
    ) {
        assert!(bit_equal(a, b), "{n} moved at lr 0");
    }
}

/// `emotion_source = "neuro"`: the agent's state is the emotion engine's
/// dynamics carried across the turns of a conversation (levels logged with
/// the emotions), it survives a checkpoint, a new conversation starts at
/// baseline, RL trains the modules as with the encoder, and an agent that
/// reads no emotion refuses the source.
#[test]
fn the_neurochemical_source_carries_levels_across_turns() {
    use emorl_agents_llm::modules::neuro::EmotionSource;
    use emorl_core::neuro::{NeuroConfig, Neurochemistry, Stimulus};
    let config = AgentConfig {
        temperature: 0.0,
        max_new_tokens: 4,
        emotion_source: EmotionSource::Neuro,
        ..AgentConfig::default()
    };
    let mut agent = LlmAgent::new(model(), AgentKind::Steer, config.clone()).unwrap();
    assert!(agent.modules().encoder.is_none() && agent.modules().neuro.is_some());
    let scared = EmotionalContext {
        social: Some(SocialContext {
            safety_flag: true,
            failed_attempts: 2,
            ..SocialContext::default()
        }),
        ..EmotionalContext::default()
    };
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(5));
    let level = |agent: &LlmAgent, name: &str| {
        agent
            .last_emotion()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} not logged: {:?}", agent.last_emotion()))
    };
    let cfg = NeuroConfig::default();
    let mut want = Neurochemistry::at_baseline(&cfg);
    let mut cortisol = Vec::new();
    for _ in 0..3 {
        agent.act(&obs, &scared).unwrap();
        want.step(&cfg, &Stimulus::from_context(&scared), 1.0);
        assert_eq!(level(&agent, "cortisol"), want.cortisol());
        cortisol.push(level(&agent, "cortisol"));
    }
    assert!(
        cortisol[0] < cortisol[1] && cortisol[1] < cortisol[2],
        "{cortisol:?}"
    );
    assert!((level(&agent, "fear") - want.emotions()[0]).abs() < 1e-6);
    agent.reset_episode();
    agent.act(&obs, &EmotionalContext::default()).unwrap();
    assert!(level(&agent, "cortisol") < cortisol[0]);

    // Checkpoint: the source and its settings come back.
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let loaded = LlmAgent::load(dir.path(), model()).unwrap();
    assert_eq!(loaded.config().emotion_source, EmotionSource::Neuro);
    assert!(loaded.modules().neuro.is_some());

    // RL over multi-turn prompts trains the modules with this source.
    let before = copies(&agent.trainable_parameters());
    let mut trainer = Trainer::new(agent, small_rl(0)).unwrap();
    let stats = trainer.update().unwrap();
    assert!(
        stats.emotion_means.iter().any(|(n, _)| n == "dopamine"),
        "{:?}",
        stats.emotion_means
    );
    let moved = trainer
        .agent()
        .trainable_parameters()
        .iter()
        .zip(&before)
        .any(|(a, b)| !bit_equal(a, b));
    assert!(moved, "RL moved nothing");

    let err = LlmAgent::new(model(), AgentKind::Base, config).unwrap_err();
    assert!(err.to_string().contains("reads no emotion"), "{err}");
}
