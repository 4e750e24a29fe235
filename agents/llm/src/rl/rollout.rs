//! One update's experience: dialogue states reached by replaying scripted
//! turns, `k` responses sampled per state with gradients off, and the
//! environment's reward of each (the dialogue is deterministic given seed
//! and actions, so a response is scored by replaying its state).

use std::cell::RefCell;
use std::ops::Range;

use emorl_core::{EmotionalContext, Env};
use emorl_envs_text::{Dialogue, DialogueConfig, DialogueObs, PolicyKind, ScriptedPolicy};
use emorl_lm::{GenerateOptions, Generation, Model, PackPlan, Sampling};
use tch::{Kind, Tensor};

use crate::agent::LlmAgent;
use crate::batch::pad_left;
use crate::error::Result;
use crate::modules::erm::EmotionalRewardModel;
use crate::modules::TurnEmotion;
use crate::params::invalid;
use crate::rl::config::RlConfig;

/// A dialogue state to respond to, reproducible from its seed and history.
#[derive(Debug)]
pub struct PromptState {
    pub seed: u64,
    pub history: Vec<String>,
    pub obs: DialogueObs,
    pub context: EmotionalContext,
    /// What the emotion source carries after the replayed turns (the
    /// encoder's tonic state, or the neurochemical levels; `None` at turn 0).
    pub carry: Option<Tensor>,
}

/// Everything the objectives of one update learn from.
#[derive(Debug)]
pub struct Rollout {
    /// 0-based update index.
    pub update: usize,
    /// Responses per prompt.
    pub k: usize,
    pub states: Vec<PromptState>,
    pub prompts: Vec<Vec<u32>>,
    /// `[prompts, len]` left-padded prompt tokens and mask.
    pub prompt_tokens: Tensor,
    pub prompt_mask: Tensor,
    /// The ERM's read-out of the prompts (`None` without an ERM).
    pub prompt_hidden: Option<Tensor>,
    /// `prompts × k` responses, prompt-major.
    pub gens: Vec<Generation>,
    /// `[rows, steps, V]` frozen raw logits of every sampled position, when
    /// the modules act on logits alone (then no forward is needed to learn).
    pub raw_logits: Option<Tensor>,
    pub rewards: Vec<f64>,
    pub advantages: Vec<f64>,
    /// The emotional context each response led to (one per row).
    pub next_contexts: Vec<EmotionalContext>,
    /// Batch-mean emotions while sampling.
    pub emotion_means: Vec<(String, f64)>,
}

/// A micro-batch of a rollout: whole prompts with their `k` rows.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Position among the update's micro-batches.
    pub index: usize,
    /// Pass over the rollout (> 0 only with several epochs).
    pub epoch: usize,
    pub prompts: Range<usize>,
    pub rows: Range<usize>,
}

/// The prompts of one micro-batch (one row per prompt): left-padded tokens,
/// their mask and the ERM's read-out of them.
#[derive(Debug)]
pub struct PromptView {
    pub tokens: Tensor,
    pub mask: Tensor,
    pub hidden: Option<Tensor>,
}

impl Rollout {
    /// Sample rows in the rollout.
    pub fn rows(&self) -> usize {
        self.gens.len()
    }

    /// The micro-batches of `microbatch` rows (rounded to whole prompts).
    pub fn chunks(&self, microbatch: usize, epoch: usize) -> Vec<Chunk> {
        let per = microbatch.div_ceil(self.k).max(1);
        (0..self.states.len())
            .step_by(per)
            .enumerate()
            .map(|(index, p0)| {
                let p1 = (p0 + per).min(self.states.len());
                Chunk {
                    index,
                    epoch,
                    prompts: p0..p1,
                    rows: p0 * self.k..p1 * self.k,
                }
            })
            .collect()
    }

    /// The prompt tensors of `chunk`.
    pub fn prompt_view(&self, chunk: &Chunk) -> Result<PromptView> {
        let (q0, n) = (chunk.prompts.start as i64, chunk.prompts.len() as i64);
        Ok(PromptView {
            tokens: self.prompt_tokens.f_narrow(0, q0, n)?,
            mask: self.prompt_mask.f_narrow(0, q0, n)?,
            hidden: match &self.prompt_hidden {
                Some(h) => Some(h.f_narrow(0, q0, n)?),
                None => None,
            },
        })
    }

    /// The recorded raw logits of `chunk`'s rows, `[rows, lr, V]` for the
    /// rows' longest response `lr`.
    pub fn raw_of(&self, chunk: &Chunk) -> Result<Option<Tensor>> {
        let Some(raw) = &self.raw_logits else {
            return Ok(None);
        };
        let lr = longest_response(&self.gens[chunk.rows.clone()]);
        let (r0, n) = (chunk.rows.start as i64, chunk.rows.len() as i64);
        let raw = raw
            .f_narrow(0, r0, n)?
            .f_narrow(1, 0, lr.min(raw.size()[1]))?;
        if raw.size()[1] != lr {
            return Err(invalid("recorded logits are shorter than the responses"));
        }
        Ok(Some(raw))
    }
}

pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dialogue state for prompt `i` of update `u`: a seeded reset, then a
/// scripted policy's turns up to a turn drawn from `0..=max_turn`.
pub fn prompt_state(
    env: &mut Dialogue,
    agent: &LlmAgent,
    cfg: &RlConfig,
    u: usize,
    i: usize,
) -> Result<PromptState> {
    let seed = mix(mix(cfg.seed, u as u64), i as u64 + 1);
    let target_turn = (mix(seed, 7) % (cfg.max_turn as u64 + 1)) as usize;
    let (mut obs, _) = env.reset(Some(seed));
    let mut context = env.context();
    let mut history = Vec::new();
    let mut carry: Option<Tensor> = None;
    let mut policy = ScriptedPolicy::new(PolicyKind::Generic, seed);
    let _g = tch::no_grad_guard();
    while history.len() < target_turn {
        let action = policy.respond(env, &obs);
        let step = env.step(&action);
        if step.done() {
            break;
        }
        if let Some(state) = agent.modules.encode_state(&[&context], carry.as_ref())? {
            carry = Some(state.next_carry());
        }
        history.push(action);
        obs = step.obs;
        context = step.context;
    }
    Ok(PromptState {
        seed,
        history,
        obs,
        context,
        carry,
    })
}

/// The environment's reward for `response` in `state`, and the emotional
/// context it leads to.
pub fn replay_reward(
    env: &mut Dialogue,
    state: &PromptState,
    response: &str,
) -> Result<(f64, EmotionalContext)> {
    let (mut obs, _) = env.reset(Some(state.seed));
    for a in &state.history {
        obs = env.step(a).obs;
    }
    if obs != state.obs {
        return Err(invalid(
            "dialogue replay diverged from the recorded state (non-deterministic environment)",
        ));
    }
    let step = env.step(&response.to_string());
    Ok((step.reward, step.context))
}

/// The emotion of `states` (their contexts and carried states; the ERM over
/// `tokens`/`mask` or over a given read-out `hidden`).
pub fn emotion_of(
    agent: &mut LlmAgent,
    states: &[PromptState],
    tokens: &Tensor,
    mask: &Tensor,
    hidden: Option<&Tensor>,
) -> Result<TurnEmotion> {
    let contexts: Vec<&EmotionalContext> = states.iter().map(|s| &s.context).collect();
    // States at turn 0 carry nothing yet: a conversation's start for those.
    let carry = match agent.modules.fresh_carry(agent.model.device())? {
        Some(fresh) if states.iter().any(|s| s.carry.is_some()) => {
            let rows: Vec<Tensor> = states
                .iter()
                .map(|s| match &s.carry {
                    Some(t) => t.shallow_clone(),
                    None => fresh.shallow_clone(),
                })
                .collect();
            Some(Tensor::f_cat(&rows, 0)?)
        }
        _ => None,
    };
    let (modules, model) = agent.parts_mut();
    modules.emotion(model, &contexts, carry.as_ref(), None, tokens, mask, hidden)
}

/// The prompts' tensors and the ERM's read-out of them, once per update.
pub fn prompt_tensors(
    agent: &mut LlmAgent,
    prompts: &[Vec<u32>],
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let pad = agent.model.tokenizer().pad_id();
    let (tokens, mask) = pad_left(prompts, pad)?;
    let (modules, model) = agent.parts_mut();
    let hidden = match &modules.erm {
        Some(erm) => Some(read_hidden_unpadded(erm, model, prompts)?),
        None => None,
    };
    Ok((tokens, mask, hidden))
}

/// Samples `k` responses per prompt with gradients off (the emotion of
/// each state computed once), in `cfg.sampling_groups` batches of similar
/// prompt length. With `record`, also the frozen model's raw logits of
/// every sampled position, `[rows, steps, V]`.
#[allow(clippy::too_many_arguments)]
pub fn sample_responses(
    agent: &mut LlmAgent,
    cfg: &RlConfig,
    states: &[PromptState],
    prompts: &[Vec<u32>],
    prompt_tokens: &Tensor,
    prompt_mask: &Tensor,
    prompt_hidden: Option<&Tensor>,
    u: usize,
    record: bool,
) -> Result<Samples> {
    let _g = tch::no_grad_guard();
    let k = cfg.samples_per_prompt;
    let emotion = emotion_of(agent, states, prompt_tokens, prompt_mask, prompt_hidden)?;
    let emotion_means = emotion.means()?;
    let rep = emotion.repeat_rows(k as i64)?;
    let seed = mix(cfg.seed ^ 0xA5A5, u as u64);
    let groups = sampling_groups(prompts, cfg.sampling_groups);
    let mut gens: Vec<Option<Generation>> = Vec::new();
    gens.resize_with(prompts.len() * k, || None);
    let mut raw: Vec<Option<Tensor>> = Vec::new();
    raw.resize_with(prompts.len() * k, || None);
    let device = agent.model.device();
    for (gi, group) in groups.iter().enumerate() {
        let rows: Vec<usize> = group
            .iter()
            .flat_map(|&p| (p * k..(p + 1) * k).collect::<Vec<_>>())
            .collect();
        let index = Tensor::f_from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>())?
            .f_to_device(device)?;
        let emo = if groups.len() == 1 {
            rep.repeat_rows(1)?
        } else {
            rep.select_rows(&index)?
        };
        let batch: Vec<Vec<u32>> = rows.iter().map(|&r| prompts[r / k].clone()).collect();
        // One group keeps the seeding of a single batch.
        let group_seed = if groups.len() == 1 {
            seed
        } else {
            mix(seed, gi as u64 + 1)
        };
        let (g, r) = sample_batch(agent, cfg, &batch, &emo, group_seed, record)?;
        for ((row, gen), i) in rows.iter().zip(g).zip(0i64..) {
            gens[*row] = Some(gen);
            if let Some(r) = &r {
                raw[*row] = Some(r.f_select(0, i)?);
            }
        }
    }
    let gens = gens
        .into_iter()
        .map(|g| g.ok_or_else(|| invalid("a prompt was not sampled")))
        .collect::<Result<Vec<_>>>()?;
    // Step i predicts response token i; groups that stopped earlier are
    // padded with zeros, never read.
    let raw_logits = if record && raw.iter().all(Option::is_some) {
        let raw: Vec<Tensor> = raw.into_iter().flatten().collect();
        let steps = raw.iter().map(|t| t.size()[0]).max().unwrap_or(0);
        let padded = raw
            .iter()
            .map(|t| {
                let n = t.size()[0];
                if n == steps {
                    Ok(t.shallow_clone())
                } else {
                    Ok(t.f_constant_pad_nd([0, 0, 0, steps - n])?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Some(Tensor::f_stack(&padded, 0)?)
    } else {
        None
    };
    Ok(Samples {
        gens,
        emotion_means,
        raw_logits,
    })
}

/// What [`sample_responses`] returns.
#[derive(Debug)]
pub struct Samples {
    /// `prompts × k` responses, prompt-major.
    pub gens: Vec<Generation>,
    /// Batch-mean emotions while sampling.
    pub emotion_means: Vec<(String, f64)>,
    /// `[rows, steps, V]` frozen raw logits (when recorded).
    pub raw_logits: Option<Tensor>,
}

/// Samples one response per row of `batch` (with the rows' `emotion`).
fn sample_batch(
    agent: &mut LlmAgent,
    cfg: &RlConfig,
    batch: &[Vec<u32>],
    emotion: &TurnEmotion,
    seed: u64,
    record: bool,
) -> Result<(Vec<Generation>, Option<Tensor>)> {
    let recorded: RefCell<Vec<Tensor>> = RefCell::new(Vec::new());
    // Only the last position of the prefill is sampled from, so the logits
    // processing runs on that position alone (the prefill's other
    // positions are returned as a broadcast view, never read) instead of
    // on all `[b, len, vocab]` prefill logits.
    let (modules, model) = agent.parts_mut();
    let process = modules.logits_processor(emotion)?;
    let sample_logits = |l: &Tensor| -> emorl_lm::Result<Tensor> {
        let s = l.size();
        let last = if s.len() == 3 {
            l.f_select(1, s[1] - 1)?
        } else {
            l.shallow_clone()
        };
        if record {
            recorded.borrow_mut().push(last.f_contiguous()?);
        }
        let out = match &process {
            Some(f) => f(&last)?,
            None => last,
        };
        Ok(if s.len() == 3 {
            out.f_unsqueeze(1)?.f_expand(&s, false)?
        } else {
            out
        })
    };
    let hooks = modules.attach_hidden(
        emorl_lm::Hooks::new().with_logits_fn(sample_logits),
        emotion,
        emorl_lm::response_start(batch),
    )?;
    let opts = GenerateOptions {
        max_new_tokens: cfg.max_new_tokens,
        sampling: Sampling::Sample {
            temperature: cfg.temperature,
            top_k: 0,
            top_p: 1.0,
        },
        seed,
        ..GenerateOptions::default()
    };
    model.set_share_repeated_prompts(cfg.share_prompt_prefill);
    let before = model.packed_generation();
    model.set_packed_generation(cfg.packed_sampling && model.pack_plan() != PackPlan::default());
    let gens = model.generate_from_tokens(batch, &opts, Some(&hooks), None);
    model.set_share_repeated_prompts(false);
    model.set_packed_generation(before);
    let gens = gens?;
    drop(hooks);
    let steps = recorded.into_inner();
    let max_len = gens.iter().map(|g| g.tokens.len()).max().unwrap_or(0);
    let raw = if record && !steps.is_empty() && steps.len() >= max_len {
        Some(Tensor::f_stack(&steps, 1)?)
    } else {
        None
    };
    Ok((gens, raw))
}

/// Leave-one-out advantages of `rewards` in groups of `k` (one group per
/// prompt); with `normalize = Some(eps)`, each group's divided by the
/// standard deviation of its rewards plus `eps`.
pub fn advantages(rewards: &[f64], k: usize, normalize: Option<f64>) -> Vec<f64> {
    let mut adv = vec![0f64; rewards.len()];
    for (p, group) in rewards.chunks(k).enumerate() {
        let n = group.len() as f64;
        let sum: f64 = group.iter().sum();
        let scale = match normalize {
            Some(eps) => {
                let mean = sum / n;
                let sd = (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
                1.0 / (sd + eps)
            }
            None => 1.0,
        };
        for (i, r) in group.iter().enumerate() {
            adv[p * k + i] = if group.len() > 1 {
                (r - (sum - r) / (n - 1.0)) * scale
            } else {
                0.0
            };
        }
    }
    adv
}

/// The longest response of `gens` (at least 1).
fn longest_response(gens: &[Generation]) -> i64 {
    gens.iter()
        .map(|g| g.tokens.len())
        .max()
        .unwrap_or(0)
        .max(1) as i64
}

/// The response tokens of `gens` as `[b, lr, 1]` targets (0 past a row's
/// end), the `[b, lr]` mask of real tokens, and `lr` (the longest response,
/// at least 1).
pub fn response_targets(gens: &[Generation], device: tch::Device) -> Result<(Tensor, Tensor, i64)> {
    let b = gens.len() as i64;
    let lr = longest_response(gens) as usize;
    let mut targets = vec![0i64; gens.len() * lr];
    let mut resp = vec![0f32; gens.len() * lr];
    for (j, g) in gens.iter().enumerate() {
        for (i, &t) in g.tokens.iter().enumerate() {
            targets[j * lr + i] = i64::from(t);
            resp[j * lr + i] = 1.0;
        }
    }
    let lr = lr as i64;
    Ok((
        Tensor::f_from_slice(&targets)?
            .f_view([b, lr, 1])?
            .f_to_device(device)?,
        Tensor::f_from_slice(&resp)?
            .f_view([b, lr])?
            .f_to_device(device)?,
        lr,
    ))
}

/// Prompt-plus-response sequences of a batch, `[pad… prompt | response
/// …pad]`: the response tokens of every row share columns `lp..lp + lr`.
pub struct Packed {
    pub tokens: Tensor,
    pub mask: Tensor,
    /// `[b, lr]`, 1 at response tokens.
    pub resp: Tensor,
    pub lp: i64,
    pub lr: i64,
}

pub fn pack<'a>(
    prompt_of: impl Fn(usize) -> &'a Vec<u32>,
    gens: &[Generation],
    pad: i64,
    device: tch::Device,
) -> Result<Packed> {
    let b = gens.len() as i64;
    let lp = (0..gens.len())
        .map(|j| prompt_of(j).len())
        .max()
        .unwrap_or(0) as i64;
    let lr = longest_response(gens);
    let width = (lp + lr) as usize;
    let mut flat = vec![pad; gens.len() * width];
    let mut mask = vec![0i64; gens.len() * width];
    let mut resp = vec![0f32; gens.len() * lr as usize];
    for (j, g) in gens.iter().enumerate() {
        let p = prompt_of(j);
        let off = j * width + (lp as usize - p.len());
        for (i, &t) in p.iter().enumerate() {
            flat[off + i] = i64::from(t);
            mask[off + i] = 1;
        }
        for (i, &t) in g.tokens.iter().enumerate() {
            flat[j * width + lp as usize + i] = i64::from(t);
            mask[j * width + lp as usize + i] = 1;
            resp[j * lr as usize + i] = 1.0;
        }
    }
    let shape = [b, lp + lr];
    Ok(Packed {
        tokens: Tensor::f_from_slice(&flat)?
            .f_view(shape)?
            .f_to_device(device)?,
        mask: Tensor::f_from_slice(&mask)?
            .f_view(shape)?
            .f_to_device(device)?,
        resp: Tensor::f_from_slice(&resp)?
            .f_view([b, lr])?
            .f_to_device(device)?,
        lp,
        lr,
    })
}

/// Prompt indices in `n` groups of similar length (sorted by length, equal
/// counts; fewer groups when there are fewer prompts).
fn sampling_groups(prompts: &[Vec<u32>], n: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    if n <= 1 {
        return vec![order];
    }
    order.sort_by_key(|&i| prompts[i].len());
    let size = prompts.len().div_ceil(n).max(1);
    order.chunks(size).map(<[usize]>::to_vec).collect()
}

/// The ERM's read-out of every prompt, each run alone (no padding), left-
/// padded with zeros into `[prompts, longest, hidden]` (the pooling masks
/// the padding out).
fn read_hidden_unpadded(
    erm: &EmotionalRewardModel,
    model: &mut Model,
    prompts: &[Vec<u32>],
) -> Result<Tensor> {
    let device = model.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let rows = prompts
        .iter()
        .map(|p| {
            let ids: Vec<i64> = p.iter().map(|&t| i64::from(t)).collect();
            let n = ids.len() as i64;
            let t = Tensor::f_from_slice(&ids)?
                .f_view([1, n])?
                .f_to_device(device)?;
            let m = Tensor::f_ones([1, n], (Kind::Int64, device))?;
            let h = erm.read_hidden(model, &t, &m)?;
            Ok(h.f_constant_pad_nd([0, 0, longest - n, 0])?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::f_cat(&rows, 0)?)
}

/// Returns of whole dialogue episodes played by `agent` (its `act`), one per seed.
pub fn evaluate_returns(
    agent: &mut LlmAgent,
    env_config: &DialogueConfig,
    seeds: &[u64],
) -> Result<Vec<f64>> {
    let mut env = Dialogue::new(env_config.clone())?;
    let mut returns = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let (mut obs, _) = env.reset(Some(seed));
        let mut context = env.context();
        agent.reset_episode();
        let mut total = 0.0;
        loop {
            let response = agent.act(&obs, &context)?;
            let step = env.step(&response);
            total += step.reward;
            if step.done() {
                break;
            }
            obs = step.obs;
            context = step.context;
        }
        returns.push(total);
    }
    Ok(returns)
}
