//! Shared set-up of the agents/llm integration tests.

use std::path::{Path, PathBuf};

use emorl_agents_llm::rl::rollout::pack;
use emorl_agents_llm::{LlmAgent, TurnEmotion};
use emorl_core::Env;
use emorl_envs_text::Dialogue;
use emorl_lm::{DType, GenerateOptions, Generation, Model, Sampling};
use tch::{Kind, Tensor};

/// The 1.2 MB stories260K model (`EMORL_STORIES260K`, or `shared/` beside the repository).
pub fn stories260k() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_STORIES260K") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in [
        root.join("shared/models/stories260k-f32.gguf"),
        root.join("../shared/models/stories260k-f32.gguf"),
    ] {
        if c.is_file() {
            return c;
        }
    }
    panic!("stories260k-f32.gguf not found beside {}", root.display());
}

/// stories260K in f32 on one libtorch thread.
pub fn model() -> Model {
    // One thread: the machine is shared, and OpenMP spin-waits badly when oversubscribed.
    tch::set_num_threads(1);
    Model::load(stories260k(), DType::F32).expect("load stories260K")
}

/// The GoEmotions files (`EMORL_GOEMOTIONS_DIR`, or `shared/` beside the repository).
#[allow(dead_code)]
pub fn goemotions_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_GOEMOTIONS_DIR") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in [
        root.join("shared/data/goemotions"),
        root.join("../shared/data/goemotions"),
    ] {
        if c.join("train.tsv").is_file() {
            return c;
        }
    }
    panic!("GoEmotions not found beside {}", root.display());
}

/// The DailyDialog files (`EMORL_DAILYDIALOG_DIR`, or `shared/` beside the repository).
#[allow(dead_code)]
pub fn dailydialog_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_DAILYDIALOG_DIR") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in [
        root.join("shared/data/dailydialog"),
        root.join("../shared/data/dailydialog"),
    ] {
        if c.join("dialogues_test.txt").is_file() {
            return c;
        }
    }
    panic!("DailyDialog not found beside {}", root.display());
}

/// Prompts of the dialogue environment's first turns (different lengths).
#[allow(dead_code)]
pub fn dialogue_prompts(agent: &LlmAgent, seeds: &[u64]) -> Vec<Vec<u32>> {
    let mut env = Dialogue::with_defaults();
    seeds
        .iter()
        .map(|&s| {
            let (obs, _) = env.reset(Some(s));
            agent.encode_prompt(&obs).unwrap()
        })
        .collect()
}

/// Greedy responses of `agent`'s frozen model (no hooks) to two dialogue
/// prompts of different lengths (left padding exercised), `new_tokens` each.
#[allow(dead_code)]
pub fn two_prompts_and_greedy_responses(
    agent: &mut LlmAgent,
    new_tokens: usize,
) -> (Vec<Vec<u32>>, Vec<Generation>) {
    let prompts = dialogue_prompts(agent, &[1, 2]);
    assert_ne!(
        prompts[0].len(),
        prompts[1].len(),
        "left padding is exercised"
    );
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        stop_on_eos: false,
        ..GenerateOptions::default()
    };
    let _g = tch::no_grad_guard();
    let gens = agent
        .model_mut()
        .generate_from_tokens(&prompts, &opts, None, None)
        .unwrap();
    (prompts, gens)
}

/// Three dialogue prompts of different lengths, twice each, every row its
/// own emotion, sampled (10 tokens, seed 3) with the agent's hooks from the
/// response on; asserts the sampled log-probs equal the learning pass's
/// (< 1e-4). Returns the prompts, the emotion and the generations.
#[allow(dead_code)]
pub fn sample_and_check_learning_pass(
    agent: &mut LlmAgent,
) -> (Vec<Vec<u32>>, TurnEmotion, Vec<Generation>) {
    let distinct = dialogue_prompts(agent, &[4, 5, 6]);
    let prompts: Vec<Vec<u32>> = distinct
        .iter()
        .flat_map(|p| [p.clone(), p.clone()])
        .collect();
    let rows: Vec<[f32; 4]> = (0..prompts.len())
        .map(|r| {
            let mut v = [0.0f32; 4];
            v[r % 4] = 1.0;
            v[(r + 1) % 4] = 0.3;
            v
        })
        .collect();
    let emotion = emorl_agents_llm::eval::emotion_of_values(&rows, agent.model().device()).unwrap();
    let _g = tch::no_grad_guard();
    let hooks = agent
        .hooks(&emotion, emorl_lm::response_start(&prompts))
        .unwrap();
    let gens = agent
        .model_mut()
        .generate_from_tokens(&prompts, &sampling(10, 3), Some(&hooks), None)
        .unwrap();
    drop(hooks);
    let logp = learning_pass_logprobs(agent, &prompts, &gens, |lp| lp, &emotion);
    let gap = max_gap(&gens, &logp, 0);
    assert!(gap < 1e-4, "sampling vs learning pass: {gap}");
    (prompts, emotion, gens)
}

/// Plain sampling at temperature 1 (no top-k or top-p), `new_tokens`
/// tokens, no stop at end-of-sequence.
#[allow(dead_code)]
pub fn sampling(new_tokens: usize, seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: new_tokens,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed,
        stop_on_eos: false,
        ..GenerateOptions::default()
    }
}

/// Log-probabilities of the response tokens in one forward pass over
/// prompt and response, as the RL objectives compute them, with the
/// agent's hooks for `emotion` from column `hooks_from(prompt width)` on.
#[allow(dead_code)]
pub fn learning_pass_logprobs(
    agent: &mut LlmAgent,
    prompts: &[Vec<u32>],
    gens: &[Generation],
    hooks_from: impl Fn(usize) -> usize,
    emotion: &TurnEmotion,
) -> Tensor {
    let device = agent.model().device();
    let pad = i64::from(agent.model().tokenizer().pad_id());
    let p = pack(|j| &prompts[j], gens, pad, device).unwrap();
    let hooks = agent.hooks(emotion, hooks_from(p.lp as usize)).unwrap();
    let logits = agent
        .model_mut()
        .forward(&p.tokens, Some(&p.mask), Some(&hooks))
        .unwrap()
        .logits;
    let targets = p.tokens.narrow(1, p.lp, p.lr).unsqueeze(-1);
    logits
        .narrow(1, p.lp - 1, p.lr)
        .log_softmax(-1, Kind::Float)
        .gather(-1, &targets, false)
        .squeeze_dim(-1)
}

/// The largest gap between the sampled log-probs of `gens` (from token
/// `from` on) and `logp` (`[rows, tokens]`).
#[allow(dead_code)]
pub fn max_gap(gens: &[Generation], logp: &Tensor, from: usize) -> f64 {
    let mut gap = 0f64;
    for (j, g) in gens.iter().enumerate() {
        for (i, &lp) in g.logprobs.iter().enumerate().skip(from) {
            let x = logp.double_value(&[j as i64, i as i64]);
            gap = gap.max((x - f64::from(lp)).abs());
        }
    }
    gap
}
