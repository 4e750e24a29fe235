//! `llm-reft`: emotion-conditioned low-rank interventions on the response
//! positions (stories260K): the identity until trained, the prompt left to
//! the frozen model, the emotion moving the response, the sampling and
//! learning passes agreeing, RL moving every part, checkpoints restoring it.

mod common;
use common::{model, sample_and_check_learning_pass, two_prompts_and_greedy_responses};

use emorl_agents_llm::eval::emotion_of_values;
use emorl_agents_llm::rl::rollout::pack;
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent, ReftConfig, RlConfig, Trainer};
use emorl_core::Env;
use emorl_envs_text::Dialogue;
use emorl_lm::Generation;
use tch::Tensor;

fn config() -> AgentConfig {
    AgentConfig {
        reft: ReftConfig {
            layers: vec![1, -1],
            rank: 3,
        },
        ..AgentConfig::default()
    }
}

/// Moves every ReFT tensor whose name contains `part` by Gaussian noise.
fn perturb(agent: &LlmAgent, part: &str, std: f64) {
    let _g = tch::no_grad_guard();
    for (n, t) in agent.named_tensors() {
        if n.starts_with("reft.") && n.contains(part) {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * std));
        }
    }
}

/// Logits of prompts + greedy responses with the agent's hooks for `emotion`.
fn logits(
    agent: &mut LlmAgent,
    prompts: &[Vec<u32>],
    gens: &[Generation],
    emotion: &emorl_agents_llm::TurnEmotion,
) -> (Tensor, i64) {
    let device = agent.model().device();
    let pad = i64::from(agent.model().tokenizer().pad_id());
    let p = pack(|j| &prompts[j], gens, pad, device).unwrap();
    let hooks = agent.hooks(emotion, p.lp as usize).unwrap();
    let l = agent
        .model_mut()
        .forward(&p.tokens, Some(&p.mask), Some(&hooks))
        .unwrap()
        .logits;
    (l, p.lp)
}

#[test]
fn reft_is_the_identity_until_trained_then_moves_the_response_only() {
    tch::manual_seed(0);
    let mut agent = LlmAgent::new(model(), AgentKind::Reft, config()).unwrap();
    let mut frozen = LlmAgent::new(model(), AgentKind::Base, AgentConfig::default()).unwrap();
    let (prompts, gens) = two_prompts_and_greedy_responses(&mut frozen, 6);
    let _g = tch::no_grad_guard();
    let device = agent.model().device();
    let fear = emotion_of_values(&[[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], device).unwrap();
    let joy = emotion_of_values(&[[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]], device).unwrap();
    let (base, lp) = logits(&mut frozen, &prompts, &gens, &fear);
    // Untrained: W = P, b = U = 0, so the edit is exactly zero everywhere.
    let (untrained, _) = logits(&mut agent, &prompts, &gens, &fear);
    assert!(
        untrained.equal(&base),
        "an untrained intervention changed the logits"
    );
    // With U moved, the emotion moves the response positions' logits; the
    // prompt's (the last one predicts the first response token) stay the
    // frozen model's, bit for bit.
    perturb(&agent, "_u", 0.5);
    let (l_fear, _) = logits(&mut agent, &prompts, &gens, &fear);
    let (l_joy, _) = logits(&mut agent, &prompts, &gens, &joy);
    assert!(l_fear.narrow(1, 0, lp).equal(&base.narrow(1, 0, lp)));
    assert!(l_joy.narrow(1, 0, lp).equal(&base.narrow(1, 0, lp)));
    let lr = l_fear.size()[1] - lp;
    let d = (l_fear.narrow(1, lp, lr) - l_joy.narrow(1, lp, lr))
        .abs()
        .amax([-1i64].as_slice(), false);
    assert!(
        d.min().double_value(&[]) > 1e-3,
        "a response position does not depend on the emotion ({d:?})"
    );
}

#[test]
fn sampling_and_the_learning_pass_agree_and_rl_trains_every_part() {
    tch::manual_seed(1);
    let mut agent = LlmAgent::new(model(), AgentKind::Reft, config()).unwrap();
    perturb(&agent, "_u", 0.3);
    perturb(&agent, "_w", 0.1);
    sample_and_check_learning_pass(&mut agent);
    // RL (with the expression objective, as `emorl train` runs it) moves
    // every part of every intervention and nothing of the frozen model.
    let before: Vec<(String, Tensor)> = agent
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let frozen_before: Vec<Tensor> = agent
        .model()
        .parameters()
        .iter()
        .map(|(_, t)| t.copy())
        .collect();
    let cfg = RlConfig {
        prompts_per_update: 2,
        samples_per_prompt: 3,
        max_new_tokens: 8,
        updates: 2,
        max_turn: 1,
        lr: 0.05,
        seed: 8,
        ..RlConfig::default()
    };
    let mut t = Trainer::new(agent, cfg).unwrap();
    t.train(|_| {}).unwrap();
    let after = t.agent().named_tensors();
    for part in ["_p", "_w", "_b", "_u"] {
        for layer in ["l1", "l4"] {
            let moved = before.iter().zip(&after).any(|((n, a), (_, b))| {
                n.starts_with(&format!("reft.{layer}{part}")) && !a.equal(b)
            });
            assert!(moved, "RL did not move reft.{layer}{part}");
        }
    }
    for ((_, a), b) in t.agent().model().parameters().iter().zip(&frozen_before) {
        assert!(a.equal(b), "the frozen model changed");
    }
}

#[test]
fn checkpoint_restores_the_interventions() {
    tch::manual_seed(2);
    let config = AgentConfig {
        temperature: 0.0,
        max_new_tokens: 8,
        ..config()
    };
    let mut agent = LlmAgent::new(model(), AgentKind::Reft, config).unwrap();
    perturb(&agent, "", 0.2);
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path()).unwrap();
    let mut env = Dialogue::with_defaults();
    let (obs, _) = env.reset(Some(3));
    let ctx = env.context();
    let g0 = agent.act_generation(&obs, &ctx).unwrap();
    let mut loaded = LlmAgent::load(dir.path(), model()).unwrap();
    for ((n, a), (_, b)) in agent.named_tensors().iter().zip(&loaded.named_tensors()) {
        assert!(a.equal(b), "{n} differs after loading");
    }
    let g1 = loaded.act_generation(&obs, &ctx).unwrap();
    assert_eq!(g0.tokens, g1.tokens);
}
