//! RL fine-tuning of the modules on the dialogue environment: RLOO
//! (REINFORCE with a leave-one-out baseline over `k` samples per prompt), a
//! per-token KL penalty against the frozen model, optional PPO ratio
//! clipping and an entropy bonus, AdamW on module parameters only.
//!
//! One update, in the order it runs:
//! 1. `prompts_per_update` dialogue states from seeded resets (turn `t` is
//!    reached by replaying a scripted policy's responses);
//! 2. `k` responses per prompt, sampled with gradients off;
//! 3. each response's reward: the environment is reset with the prompt's
//!    seed, the same history is replayed and the response is stepped —
//!    the dialogue is deterministic given seed and actions;
//! 4. log-probabilities of the sampled tokens recomputed with gradients
//!    through the frozen model into the modules, in micro-batches;
//! 5. loss = −RLOO advantage × ratio (clipped when `clip` is set)
//!    + `kl_coef` × KL(π ‖ π_frozen) − `entropy_coef` × entropy, per token;
//! 6. gradient-norm clipping, a NaN/Inf guard, an AdamW step.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use emorl_core::{EmotionalContext, Env};
use emorl_envs_dialogue::{Dialogue, DialogueConfig, DialogueObs, PolicyKind, ScriptedPolicy};
use emorl_lm::{GenerateOptions, Model, Sampling};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::agent::{pad_left, LlmAgent, TurnEmotion};
use crate::checkpoint::{read_manifest, TrainingState};
use crate::error::{LlmAgentError, Result};
use crate::eval::{forced_emotions, EmotionCondition};
use crate::lexicon::{emotion_markers, marker_token_ids, LexiconPart};
use crate::params::{all_finite, invalid, restore, snapshot, AdamW};

/// Hyperparameters of RL training (every field defaulted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Dialogue states per update.
    pub prompts_per_update: usize,
    /// Responses sampled per state (k ≥ 2 for the leave-one-out baseline).
    pub samples_per_prompt: usize,
    pub max_new_tokens: usize,
    /// Sampling temperature (> 0); log-probabilities are of `logits / temperature`.
    pub temperature: f64,
    pub lr: f64,
    pub weight_decay: f64,
    /// Weight of the per-token KL(π ‖ π_frozen) penalty.
    pub kl_coef: f64,
    /// PPO ratio clip ε (`None`: plain REINFORCE ratio).
    pub clip: Option<f64>,
    /// Gradient steps per batch of samples (> 1 only makes sense with `clip`).
    pub epochs: usize,
    /// Weight of the entropy bonus.
    pub entropy_coef: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// Number of updates `train` runs.
    pub updates: usize,
    pub seed: u64,
    /// Prompts are at turns 0..=max_turn (earlier turns by a scripted policy).
    pub max_turn: usize,
    /// Divide each prompt's leave-one-out advantages by the standard
    /// deviation of its k rewards plus `advantage_eps` (group-normalised, as
    /// GRPO does): every prompt then weighs about the same whatever its
    /// reward spread. Off by default: on stories260K it learned less than
    /// plain leave-one-out advantages (NOTES.md, "Group-normalised advantages").
    pub normalize_advantages: bool,
    /// Added to the group's reward SD before dividing: near-ties would
    /// otherwise get huge advantages from differences that are noise.
    pub advantage_eps: f64,
    /// Sequences per backward pass (bounds memory).
    pub microbatch: usize,
    /// Sampling runs as this many generation batches of prompts of similar
    /// length (sorted by length, split into equal counts), so that short
    /// prompts are not padded to the longest one (prefill and KV cache
    /// scale with the padded length). 1: one batch of every prompt.
    pub sampling_groups: usize,
    /// Prefill each prompt once while sampling and copy its KV cache to its
    /// `k` rows ([`emorl_lm::Model::set_share_repeated_prompts`]); only
    /// when the modules act on logits alone (`llm-erm`). Faster (the prefill
    /// is most of the sampling time), but the smaller prefill batch can
    /// round log-probs differently in the last bits and, rarely, change a
    /// sampled token, so it is off by default.
    pub share_prompt_prefill: bool,
    /// Weight of the expression objective (0: off). Each sampled sequence
    /// of an update is also scored under a forced emotional state (fear,
    /// curiosity, anger, joy in turn, as the marker metric forces them): at
    /// every response position the policy's probability mass on that
    /// emotion's single-token marker words is pushed up towards
    /// `expression_target` (loss `max(0, log target − log mass)`), which
    /// ties the modules' emotional input to emotional expression. The
    /// environment's reward is untouched.
    pub expression_coef: f64,
    /// Marker-token probability mass per position at which the expression
    /// objective stops pushing (in (0, 1)).
    pub expression_target: f64,
    /// Optimiser steps the expression objective gets per update, after the
    /// RL step, each on one micro-batch of the update's samples (in turn),
    /// with its own AdamW (learning rate `expression_lr`) over every module
    /// parameter except the ERM's per-token vocabulary bias (Adam would move
    /// all of its entries by about `lr` a step, whatever their gradient) and
    /// its temperature weights (a hotter distribution also puts more mass
    /// on rare words);
    /// each step scores its rows under the next emotion in turn. Cheap for
    /// logit-only modules (their raw logits are recorded), a forward and
    /// backward pass of one micro-batch otherwise.
    pub expression_steps: usize,
    pub expression_lr: f64,
    /// Weight of KL(π_forced ‖ π_frozen) per position in the expression
    /// objective: expression without losing the frozen model's fluency.
    pub expression_kl: f64,
    /// Weight of an unlikelihood term on the expression objective's words
    /// a response already wrote: −log(1 − p(any of them)) per position.
    /// Without it the objective is met by repeating one word ("fun fun
    /// fun …"), which the held-out lexicon half exposes.
    pub expression_repeat_coef: f64,
    /// The dialogue environment.
    pub env: DialogueConfig,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            prompts_per_update: 8,
            samples_per_prompt: 4,
            max_new_tokens: 32,
            temperature: 1.0,
            lr: 1e-3,
            weight_decay: 0.0,
            kl_coef: 0.05,
            clip: None,
            epochs: 1,
            entropy_coef: 0.0,
            grad_clip: 1.0,
            updates: 100,
            seed: 0,
            max_turn: 0,
            normalize_advantages: false,
            advantage_eps: 0.1,
            microbatch: 8,
            sampling_groups: 1,
            share_prompt_prefill: false,
            expression_coef: 0.0,
            expression_target: 0.03,
            expression_steps: 8,
            expression_lr: 0.05,
            expression_kl: 1.0,
            expression_repeat_coef: 0.0,
            env: DialogueConfig::default(),
        }
    }
}

impl RlConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(invalid(format!("rl: {m}")));
        if self.prompts_per_update == 0 {
            return bad("prompts_per_update must be > 0");
        }
        if self.samples_per_prompt < 2 {
            return bad("samples_per_prompt must be >= 2 (leave-one-out baseline)");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be > 0");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be > 0");
        }
        let nonneg = |x: f64| x >= 0.0 && x.is_finite();
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr must be > 0");
        }
        if ![
            self.weight_decay,
            self.kl_coef,
            self.entropy_coef,
            self.grad_clip,
        ]
        .into_iter()
        .all(nonneg)
        {
            return bad("weight_decay, kl_coef, entropy_coef and grad_clip must be >= 0");
        }
        if let Some(c) = self.clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad("clip must be > 0");
            }
        }
        if !(self.advantage_eps > 0.0 && self.advantage_eps.is_finite()) {
            return bad("advantage_eps must be finite and > 0");
        }
        if !nonneg(self.expression_coef)
            || !nonneg(self.expression_kl)
            || !nonneg(self.expression_repeat_coef)
        {
            return bad("expression_coef, expression_kl and expression_repeat_coef must be >= 0");
        }
        if !(self.expression_lr > 0.0 && self.expression_lr.is_finite()) {
            return bad("expression_lr must be > 0");
        }
        if !(self.expression_target > 0.0 && self.expression_target < 1.0) {
            return bad("expression_target must be in (0, 1)");
        }
        if self.epochs == 0 || self.microbatch == 0 || self.sampling_groups == 0 {
            return bad("epochs, microbatch and sampling_groups must be > 0");
        }
        self.env.validate()?;
        Ok(())
    }
}

/// What one update measured (what a logger writes to TensorBoard).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// 1-based update number.
    pub update: usize,
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Mean per-token KL(π ‖ π_frozen).
    pub kl: f64,
    /// Mean per-token entropy of π.
    pub entropy: f64,
    pub loss: f64,
    pub policy_loss: f64,
    /// Gradient norm before clipping (last epoch).
    pub grad_norm: f64,
    /// Mean generated tokens per response.
    pub response_tokens: f64,
    /// Batch-mean emotions by name (encoder columns, then `erm_*`).
    pub emotion_means: Vec<(String, f64)>,
    /// Mean probability mass on the forced emotion's marker tokens per
    /// response position, before the step (0 when the expression objective
    /// is off).
    #[serde(default)]
    pub expression_mass: f64,
    pub seconds: f64,
}

/// A dialogue state to respond to, reproducible from its seed and history.
#[derive(Debug)]
struct PromptState {
    seed: u64,
    history: Vec<String>,
    obs: DialogueObs,
    context: EmotionalContext,
    tonic: Option<Tensor>,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RL trainer: owns the agent, the environment and the optimiser.
#[derive(Debug)]
pub struct Trainer {
    agent: LlmAgent,
    config: RlConfig,
    env: Dialogue,
    opt: AdamW,
    updates_done: usize,
    stopped: Option<String>,
    /// Recompute the log-probabilities with a model forward even when the
    /// modules only process logits (the slow reference path).
    recompute: bool,
    phases: PhaseSeconds,
    reward_fn: Option<RewardFn>,
    /// The expression objective's emotions and their marker token ids
    /// (empty when it is off).
    expression: Vec<(EmotionCondition, Tensor)>,
    /// The expression objective's optimiser (`None` when it is off).
    expression_opt: Option<AdamW>,
}

/// A stand-in reward on a sampled response (replacing the environment's).
pub struct RewardFn(pub Box<dyn FnMut(&emorl_lm::Generation) -> f64>);

impl std::fmt::Debug for RewardFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RewardFn")
    }
}

/// Wall time of the phases of the last update, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseSeconds {
    /// Dialogue states, prompt encoding and the ERM's prompt read-out.
    pub prompts: f64,
    /// Sampling the responses.
    pub sampling: f64,
    /// Environment rewards and advantages.
    pub rewards: f64,
    /// Log-probabilities, loss, backward pass and optimiser step.
    pub learning: f64,
}

impl Trainer {
    pub fn new(agent: LlmAgent, config: RlConfig) -> Result<Self> {
        config.validate()?;
        let params = agent.trainable_parameters();
        if params.is_empty() {
            return Err(LlmAgentError::NothingToTrain(agent.kind().id().into()));
        }
        // The ERM's lexicon gains belong to the expression objective: the RL
        // step has the per-token bias for the same job.
        let gains = agent
            .modules
            .erm
            .as_ref()
            .map(|e| e.logit_modulator.lexicon_gains().data_ptr());
        let rl_params: Vec<Tensor> = params
            .into_iter()
            .filter(|t| Some(t.data_ptr()) != gains)
            .collect();
        let env = Dialogue::new(config.env.clone())?;
        let opt = AdamW::new(rl_params, config.lr, config.weight_decay)?;
        let mut expression = Vec::new();
        if config.expression_coef > 0.0 {
            for cond in EmotionCondition::EMOTIONAL {
                // Only the expression half: the held-out half is the metric's.
                let words =
                    emotion_markers(cond.name(), LexiconPart::Expression).unwrap_or_default();
                let ids = marker_token_ids(&agent.model, &words)?;
                if ids.is_empty() {
                    tracing::warn!(
                        emotion = cond.name(),
                        "no marker word is a single token of this model; the expression objective leaves it out"
                    );
                    continue;
                }
                let ids = Tensor::f_from_slice(&ids)?.f_to_device(agent.model.device())?;
                expression.push((cond, ids));
            }
        }
        let expression_opt = if expression.is_empty() || config.expression_steps == 0 {
            None
        } else {
            // Neither the per-token bias nor the temperature: a hotter
            // distribution puts more mass on rare marker words too.
            let skip: Vec<_> = agent
                .modules
                .erm
                .iter()
                .flat_map(|e| {
                    [
                        e.logit_modulator.vocab_bias().data_ptr(),
                        e.temperature_modulator.weight().data_ptr(),
                    ]
                })
                .collect();
            let params: Vec<Tensor> = agent
                .trainable_parameters()
                .into_iter()
                .filter(|t| !skip.contains(&t.data_ptr()))
                .collect();
            Some(AdamW::new(
                params,
                config.expression_lr,
                config.weight_decay,
            )?)
        };
        Ok(Trainer {
            agent,
            config,
            env,
            opt,
            updates_done: 0,
            stopped: None,
            recompute: false,
            phases: PhaseSeconds::default(),
            reward_fn: None,
            expression,
            expression_opt,
        })
    }

    /// Resumes from a checkpoint written by [`Trainer::save`] (or an agent
    /// checkpoint): module parameters and update count are restored, AdamW
    /// moments restart from zero. `config` replaces the saved RL config
    /// (`None`: the saved one).
    pub fn resume(dir: impl AsRef<Path>, model: Model, config: Option<RlConfig>) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest = read_manifest(dir)?;
        let agent = LlmAgent::load(dir, model)?;
        let (done, saved) = match manifest.training {
            Some(t) => (t.updates_done, Some(t.rl)),
            None => (0, None),
        };
        let cfg = config.or(saved).unwrap_or_default();
        let mut t = Trainer::new(agent, cfg)?;
        t.updates_done = done;
        Ok(t)
    }

    /// Writes the agent checkpoint with the training progress.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.agent.save_with(
            dir.as_ref(),
            Some(TrainingState {
                updates_done: self.updates_done,
                rl: self.config.clone(),
            }),
        )
    }

    pub fn agent(&self) -> &LlmAgent {
        &self.agent
    }
    pub fn agent_mut(&mut self) -> &mut LlmAgent {
        &mut self.agent
    }
    pub fn into_agent(self) -> LlmAgent {
        self.agent
    }
    pub fn config(&self) -> &RlConfig {
        &self.config
    }
    pub fn updates_done(&self) -> usize {
        self.updates_done
    }
    /// Forces (`true`) the reference path that recomputes log-probabilities
    /// with a full model forward (and the frozen reference with a second
    /// one) even when the modules only process logits; by default those are
    /// taken from the logits recorded while sampling, which is the same
    /// computation. For tests and benchmarks.
    pub fn set_recompute(&mut self, recompute: bool) {
        self.recompute = recompute;
    }

    /// Replaces the environment's reward by `f` (`None`: the environment's
    /// again). For benchmarks against implementations without the
    /// dialogue environment.
    pub fn set_reward_fn(&mut self, f: Option<RewardFn>) {
        self.reward_fn = f;
    }

    /// The prompt token ids update `update` (0-based) responds to.
    pub fn prompt_tokens(&mut self, update: usize) -> Result<Vec<Vec<u32>>> {
        (0..self.config.prompts_per_update)
            .map(|i| {
                let s = self.prompt_state(update, i)?;
                self.agent.encode_prompt(&s.obs)
            })
            .collect()
    }

    /// Phase timings of the last update.
    pub fn last_phases(&self) -> PhaseSeconds {
        self.phases
    }

    /// Why training stopped early (a non-finite loss, gradient or parameter).
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Runs the remaining updates of `config.updates`, calling `on_update`
    /// after each. Stops early (keeping the last good parameters) when an
    /// update diverges; [`Trainer::stopped`] then says why.
    pub fn train(&mut self, mut on_update: impl FnMut(&UpdateStats)) -> Result<Vec<UpdateStats>> {
        let mut all = Vec::new();
        while self.updates_done < self.config.updates && self.stopped.is_none() {
            match self.update() {
                Ok(s) => {
                    on_update(&s);
                    all.push(s);
                }
                Err(LlmAgentError::Diverged { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// The dialogue state for prompt `i` of update `u`.
    fn prompt_state(&mut self, u: usize, i: usize) -> Result<PromptState> {
        let seed = mix(mix(self.config.seed, u as u64), i as u64 + 1);
        let target_turn = (mix(seed, 7) % (self.config.max_turn as u64 + 1)) as usize;
        let (mut obs, _) = self.env.reset(Some(seed));
        let mut context = self.env.context();
        let mut history = Vec::new();
        let mut tonic: Option<Tensor> = None;
        let mut policy = ScriptedPolicy::new(PolicyKind::Generic, seed);
        let _g = tch::no_grad_guard();
        while history.len() < target_turn {
            let action = policy.respond(&self.env, &obs);
            let step = self.env.step(&action);
            if step.done() {
                break;
            }
            if let Some(enc) = &self.agent.modules.encoder {
                tonic = Some(enc.encode(&[&context], tonic.as_ref())?.tonic);
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
            tonic,
        })
    }

    /// The environment's reward for `response` in `state`.
    fn reward(&mut self, state: &PromptState, response: &str) -> Result<f64> {
        let (mut obs, _) = self.env.reset(Some(state.seed));
        for a in &state.history {
            obs = self.env.step(a).obs;
        }
        if obs != state.obs {
            return Err(invalid(
                "dialogue replay diverged from the recorded state (non-deterministic environment)",
            ));
        }
        Ok(self.env.step(&response.to_string()).reward)
    }

    /// One RL update.
    pub fn update(&mut self) -> Result<UpdateStats> {
        if let Some(why) = &self.stopped {
            return Err(LlmAgentError::Diverged {
                update: self.updates_done,
                what: why.clone(),
            });
        }
        let start = Instant::now();
        let u = self.updates_done;
        let cfg = self.config.clone();
        let k = cfg.samples_per_prompt;
        let states = (0..cfg.prompts_per_update)
            .map(|i| self.prompt_state(u, i))
            .collect::<Result<Vec<_>>>()?;
        let prompts = states
            .iter()
            .map(|s| self.agent.encode_prompt(&s.obs))
            .collect::<Result<Vec<_>>>()?;
        let pad = self.agent.model.tokenizer().pad_id();

        // The prompts' read-out for the ERM, once per update (no grad): the
        // sampling emotion and every micro-batch's emotion pool over it.
        let (prompt_tokens, prompt_mask) = pad_left(&prompts, pad)?;
        let prompt_hidden = match &self.agent.modules.erm {
            Some(erm) => Some(read_hidden_unpadded(erm, &mut self.agent.model, &prompts)?),
            None => None,
        };
        let t_prompts = start.elapsed().as_secs_f64();
        let logits_only = self.agent.modules.logits_only() && !self.recompute;
        // 2. Sample k responses per prompt, gradients off. When the modules
        // only process logits, the frozen model's raw logits of every
        // sampled position are recorded on the way: they are exactly what a
        // recomputation would give, so the learning phase needs no forward.
        let (gens, emotion_means, raw_logits) = {
            let _g = tch::no_grad_guard();
            let emotion = self.emotion_of(
                &states,
                &prompt_tokens,
                &prompt_mask,
                prompt_hidden.as_ref(),
            )?;
            let emotion_means = emotion.means()?;
            let rep = emotion.repeat_rows(k as i64)?;
            let seed = mix(cfg.seed ^ 0xA5A5, u as u64);
            let groups = sampling_groups(&prompts, cfg.sampling_groups);
            let mut gens: Vec<Option<emorl_lm::Generation>> = Vec::new();
            gens.resize_with(prompts.len() * k, || None);
            let mut raw: Vec<Option<Tensor>> = Vec::new();
            raw.resize_with(prompts.len() * k, || None);
            let device = self.agent.model.device();
            for (gi, group) in groups.iter().enumerate() {
                let rows: Vec<usize> = group
                    .iter()
                    .flat_map(|&p| (p * k..(p + 1) * k).collect::<Vec<_>>())
                    .collect();
                let index =
                    Tensor::f_from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>())?
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
                let (g, r) = self.sample(&batch, &emo, group_seed, logits_only)?;
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
            // [b·k, steps, V] raw logits, step i predicting response token i
            // (groups that stopped earlier padded with zeros, never read).
            let raw_logits = if raw.iter().all(Option::is_some) && logits_only {
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
            (gens, emotion_means, raw_logits)
        };

        let t_gen = start.elapsed().as_secs_f64();
        // 3. Rewards and leave-one-out advantages.
        let mut rewards = Vec::with_capacity(gens.len());
        for (j, g) in gens.iter().enumerate() {
            let r = match &mut self.reward_fn {
                Some(f) => (f.0)(g),
                None => self.reward(&states[j / k], &g.text)?,
            };
            rewards.push(r);
        }
        let adv = advantages(
            &rewards,
            k,
            cfg.normalize_advantages.then_some(cfg.advantage_eps),
        );
        let n = rewards.len() as f64;
        let reward_mean = rewards.iter().sum::<f64>() / n;
        let reward_std = (rewards
            .iter()
            .map(|r| (r - reward_mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let response_tokens = gens.iter().map(|g| g.tokens.len() as f64).sum::<f64>() / n;

        let t_rew = start.elapsed().as_secs_f64();
        tracing::debug!(t_prompts, t_gen, t_rew, "update phases (s since start)");
        // 4–6. Recompute log-probs with gradients, loss, step.
        let params: Vec<Tensor> = self
            .opt
            .params()
            .iter()
            .map(Tensor::shallow_clone)
            .collect();
        let mut old_logp: Vec<Option<Tensor>> = Vec::new();
        let mut stats = UpdateStats {
            update: u + 1,
            reward_mean,
            reward_std,
            response_tokens,
            emotion_means,
            ..UpdateStats::default()
        };
        for epoch in 0..cfg.epochs {
            self.opt.zero_grad();
            let (mut loss_sum, mut pl_sum, mut kl_sum, mut ent_sum, mut tok_sum) =
                (0.0, 0.0, 0.0, 0.0, 0.0);
            let chunk_prompts = cfg.microbatch.div_ceil(k).max(1);
            for (ci, p0) in (0..states.len()).step_by(chunk_prompts).enumerate() {
                let p1 = (p0 + chunk_prompts).min(states.len());
                let rows = p0 * k..p1 * k;
                let old = if epoch == 0 {
                    None
                } else {
                    old_logp.get(ci).and_then(|o| o.as_ref())
                };
                let c = match (&raw_logits, &prompt_hidden) {
                    (Some(raw), hidden) => {
                        let (lo, hi) = (rows.start as i64, rows.end as i64);
                        let (q0, q1) = (p0 as i64, p1 as i64);
                        let prompt = PromptView {
                            tokens: prompt_tokens.f_narrow(0, q0, q1 - q0)?,
                            mask: prompt_mask.f_narrow(0, q0, q1 - q0)?,
                            hidden: match hidden {
                                Some(h) => Some(h.f_narrow(0, q0, q1 - q0)?),
                                None => None,
                            },
                        };
                        self.chunk_loss_logits_only(
                            &states[p0..p1],
                            &prompt,
                            &raw.f_narrow(0, lo, hi - lo)?,
                            &gens[rows.clone()],
                            &adv[rows],
                            old,
                            n,
                        )?
                    }
                    (None, _) => self.chunk_loss(
                        &states[p0..p1],
                        &prompts[p0..p1],
                        &gens[rows.clone()],
                        &adv[rows],
                        old,
                        n,
                    )?,
                };
                if epoch == 0 {
                    old_logp.push(Some(c.token_logp));
                }
                loss_sum += c.loss;
                pl_sum += c.policy_loss;
                kl_sum += c.kl_sum;
                ent_sum += c.entropy_sum;
                tok_sum += c.tokens;
            }
            stats.loss = loss_sum;
            stats.policy_loss = pl_sum;
            stats.kl = kl_sum / tok_sum.max(1.0);
            stats.entropy = ent_sum / tok_sum.max(1.0);
            if !loss_sum.is_finite() {
                return Err(self.diverge(format!("loss {loss_sum}")));
            }
            stats.grad_norm = self.guarded_step(false, &params, cfg.grad_clip, "RL step")?;
        }
        if let Some(expr_params) = self.expression_opt.as_ref().map(|o| {
            o.params()
                .iter()
                .map(Tensor::shallow_clone)
                .collect::<Vec<_>>()
        }) {
            let chunks = gens.len().div_ceil(cfg.microbatch.max(1));
            let mut mass = 0.0;
            for s in 0..cfg.expression_steps {
                // Both: the lexicon gains are only the expression optimiser's,
                // and the RL backward pass reaches them too.
                self.opt.zero_grad();
                if let Some(o) = &mut self.expression_opt {
                    o.zero_grad();
                }
                let turn = u * cfg.expression_steps + s;
                let c = turn % chunks;
                let r0 = c * cfg.microbatch;
                let r1 = (r0 + cfg.microbatch).min(gens.len());
                mass += self.expression_loss(&prompts, &gens, raw_logits.as_ref(), r0..r1, turn)?;
                self.guarded_step(true, &expr_params, cfg.grad_clip, "expression step")?;
            }
            stats.expression_mass = mass / cfg.expression_steps.max(1) as f64;
        }
        self.opt.zero_grad();
        self.updates_done += 1;
        stats.seconds = start.elapsed().as_secs_f64();
        self.phases = PhaseSeconds {
            prompts: t_prompts,
            sampling: t_gen - t_prompts,
            rewards: t_rew - t_gen,
            learning: stats.seconds - t_rew,
        };
        Ok(stats)
    }

    /// Samples one response per row of `batch` (with the rows' `emotion`);
    /// with `record`, also returns the frozen model's raw logits of every
    /// sampled position, `[rows, steps, V]`.
    fn sample(
        &mut self,
        batch: &[Vec<u32>],
        emotion: &TurnEmotion,
        seed: u64,
        record: bool,
    ) -> Result<(Vec<emorl_lm::Generation>, Option<Tensor>)> {
        let recorded: RefCell<Vec<Tensor>> = RefCell::new(Vec::new());
        // Only the last position of the prefill is sampled from, so the
        // logits processing runs on that position alone (the prefill's
        // other positions are returned as a broadcast view, never read)
        // instead of on all `[b, len, vocab]` prefill logits.
        let process = self.agent.modules.logits_processor(emotion)?;
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
        let hooks = self.agent.modules.attach_hidden(
            emorl_lm::Hooks::new().with_logits_fn(sample_logits),
            emotion,
        )?;
        let opts = GenerateOptions {
            max_new_tokens: self.config.max_new_tokens,
            sampling: Sampling::Sample {
                temperature: self.config.temperature,
                top_k: 0,
                top_p: 1.0,
            },
            seed,
            ..GenerateOptions::default()
        };
        self.agent
            .model
            .set_share_repeated_prompts(self.config.share_prompt_prefill);
        let gens = self
            .agent
            .model
            .generate_from_tokens(batch, &opts, Some(&hooks), None);
        self.agent.model.set_share_repeated_prompts(false);
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

    /// Gradient clipping, a NaN/Inf check and an AdamW step that is undone
    /// when it makes a parameter non-finite.
    fn guarded_step(
        &mut self,
        expression: bool,
        params: &[Tensor],
        grad_clip: f64,
        what: &str,
    ) -> Result<f64> {
        let opt = match (&mut self.expression_opt, expression) {
            (Some(o), true) => o,
            _ => &mut self.opt,
        };
        let grad_norm = opt.clip_grad_norm(grad_clip)?;
        if !grad_norm.is_finite() {
            return Err(self.diverge(format!("{what}: gradient norm {grad_norm}")));
        }
        let good = snapshot(params)?;
        opt.step()?;
        if !all_finite(params)? {
            restore(params, &good)?;
            return Err(self.diverge(format!(
                "{what}: a parameter became non-finite after the step"
            )));
        }
        Ok(grad_norm)
    }

    fn diverge(&mut self, what: String) -> LlmAgentError {
        self.opt.zero_grad();
        tracing::warn!(update = self.updates_done + 1, %what, "training stopped");
        self.stopped = Some(what.clone());
        LlmAgentError::Diverged {
            update: self.updates_done + 1,
            what,
        }
    }

    /// The emotion of `states` (their contexts and tonic states; the ERM
    /// over `tokens`/`mask` or over a given read-out).
    fn emotion_of(
        &mut self,
        states: &[PromptState],
        tokens: &Tensor,
        mask: &Tensor,
        hidden: Option<&Tensor>,
    ) -> Result<TurnEmotion> {
        let contexts: Vec<&EmotionalContext> = states.iter().map(|s| &s.context).collect();
        // States at turn 0 have no tonic state yet: zeros for those.
        let tonic = if states.iter().any(|s| s.tonic.is_some()) {
            let device = self.agent.model.device();
            let rows = states
                .iter()
                .map(|s| match &s.tonic {
                    Some(t) => Ok(t.shallow_clone()),
                    None => Ok(Tensor::f_zeros([1, 2], (Kind::Float, device))?),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::f_cat(&rows, 0)?)
        } else {
            None
        };
        self.agent.modules.emotion(
            &mut self.agent.model,
            &contexts,
            tonic.as_ref(),
            None,
            tokens,
            mask,
            hidden,
        )
    }

    /// The expression objective over the sampled sequences `rows` (see
    /// [`RlConfig::expression_coef`]); accumulates its gradients and
    /// returns the mean marker mass per response position. Row `j` is
    /// scored under emotion `(j + turn) mod n` of the objective's emotions.
    /// With recorded raw logits the modules' processing of them is all
    /// there is to compute; otherwise the model runs forward with the
    /// forced emotion's hooks.
    /// `[b, len, V]`: 1 at the expression words of row `j`'s emotion
    /// (`which[j]`) that its response wrote before each position.
    fn seen_expression_words(
        &self,
        gens: &[emorl_lm::Generation],
        which: &[usize],
        len: i64,
        vocab: i64,
    ) -> Result<Tensor> {
        let lexicons = self
            .expression
            .iter()
            .map(|(_, ids)| Ok(Vec::<i64>::try_from(&ids.f_to_device(tch::Device::Cpu)?)?))
            .collect::<Result<Vec<_>>>()?;
        let (mut rows, mut cols, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for (j, (g, &e)) in gens.iter().zip(which).enumerate() {
            let words = &lexicons[e];
            let mut seen: Vec<i64> = Vec::new();
            for (t, &tok) in g.tokens.iter().enumerate().take(len as usize) {
                for &w in &seen {
                    rows.push(j as i64);
                    cols.push(t as i64);
                    ids.push(w);
                }
                let tok = i64::from(tok);
                if words.contains(&tok) && !seen.contains(&tok) {
                    seen.push(tok);
                }
            }
        }
        let device = self.agent.model.device();
        let mut mask = Tensor::f_zeros([gens.len() as i64, len, vocab], (Kind::Float, device))?;
        if !ids.is_empty() {
            let index = |v: Vec<i64>| -> Result<Option<Tensor>> {
                Ok(Some(Tensor::f_from_slice(&v)?.f_to_device(device)?))
            };
            let ones = Tensor::f_ones([ids.len() as i64], (Kind::Float, device))?;
            mask = mask.f_index_put_(&[index(rows)?, index(cols)?, index(ids)?], &ones, false)?;
        }
        Ok(mask)
    }

    fn expression_loss(
        &mut self,
        prompts: &[Vec<u32>],
        gens: &[emorl_lm::Generation],
        raw: Option<&Tensor>,
        rows: std::ops::Range<usize>,
        turn: usize,
    ) -> Result<f64> {
        let cfg = self.config.clone();
        let k = cfg.samples_per_prompt;
        let device = self.agent.model.device();
        let pad = i64::from(self.agent.model.tokenizer().pad_id());
        let vocab = self.agent.model.vocab_size() as i64;
        let n_emo = self.expression.len();
        // [n_emo, V]: 0 on the emotion's marker tokens, −inf elsewhere.
        let masks = self
            .expression
            .iter()
            .map(|(_, ids)| -> Result<Tensor> {
                let m = Tensor::f_full([vocab], f64::NEG_INFINITY, (Kind::Float, device))?;
                Ok(m.f_index_fill(0, ids, 0.0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let masks = Tensor::f_stack(&masks, 0)?;
        let log_target = cfg.expression_target.ln();
        let t_inv = 1.0 / cfg.temperature;
        let (r0, r1) = (rows.start, rows.end);
        let which: Vec<usize> = (r0..r1).map(|j| (j + turn) % n_emo).collect();
        let conditions: Vec<EmotionCondition> =
            which.iter().map(|&e| self.expression[e].0).collect();
        let emotion = forced_emotions(&conditions, device)?;
        let chunk = &gens[r0..r1];
        // The policy's logits under the forced states and the frozen
        // model's at the same positions.
        let (logits, frozen, resp) = match raw {
            Some(raw) => {
                let (_, resp, lr) = response_targets(chunk, device)?;
                let raw = raw.f_narrow(0, r0 as i64, (r1 - r0) as i64)?.f_narrow(
                    1,
                    0,
                    lr.min(raw.size()[1]),
                )?;
                if raw.size()[1] != lr {
                    return Err(invalid("recorded logits are shorter than the responses"));
                }
                let logits = self.agent.modules.process_logits(&emotion, &raw)?;
                (logits, raw, resp)
            }
            None => {
                let packed = pack(|j| &prompts[(r0 + j) / k], chunk, pad, device)?;
                let (lp, lr) = (packed.lp, packed.lr);
                let frozen = if cfg.expression_kl > 0.0 {
                    let _g = tch::no_grad_guard();
                    self.agent
                        .model
                        .forward(&packed.tokens, Some(&packed.mask), None)?
                        .logits
                        .f_narrow(1, lp - 1, lr)?
                } else {
                    Tensor::f_zeros([1], (Kind::Float, device))?
                };
                let hooks = self.agent.modules.hooks(&emotion)?;
                let out =
                    self.agent
                        .model
                        .forward(&packed.tokens, Some(&packed.mask), Some(&hooks))?;
                (out.logits.f_narrow(1, lp - 1, lr)?, frozen, packed.resp)
            }
        };
        let logp = logits.f_mul_scalar(t_inv)?.f_log_softmax(-1, Kind::Float)?;
        let index = Tensor::f_from_slice(&which.iter().map(|&e| e as i64).collect::<Vec<_>>())?
            .f_to_device(device)?;
        let row_masks = masks.f_index_select(0, &index)?.f_unsqueeze(1)?; // [b, 1, V]
        let log_mass = logp
            .f_add(&row_masks)?
            .f_logsumexp([-1i64].as_slice(), false)?; // [b, lr]
        let mut per_token = log_mass
            .f_neg()?
            .f_add_scalar(log_target)?
            .f_clamp_min(0.0)?
            .f_mul_scalar(cfg.expression_coef)?;
        if cfg.expression_repeat_coef > 0.0 {
            let seen = self.seen_expression_words(chunk, &which, logp.size()[1], vocab)?;
            let repeat_mass = logp
                .f_exp()?
                .f_mul(&seen)?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?
                .f_clamp(0.0, 1.0 - 1e-6)?;
            let unlikelihood = repeat_mass.f_neg()?.f_add_scalar(1.0)?.f_log()?.f_neg()?;
            per_token = per_token.f_add(&unlikelihood.f_mul_scalar(cfg.expression_repeat_coef)?)?;
        }
        if cfg.expression_kl > 0.0 {
            let ref_logp = frozen.f_mul_scalar(t_inv)?.f_log_softmax(-1, Kind::Float)?;
            let kl = logp
                .f_exp()?
                .f_mul(&logp.f_sub(&ref_logp)?)?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?;
            per_token = per_token.f_add(&kl.f_mul_scalar(cfg.expression_kl)?)?;
        }
        let n_tok = resp
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let loss = per_token
            .f_mul(&resp)?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_div(&n_tok)?
            .f_mean(Kind::Float)?;
        loss.f_backward()?;
        let mass = log_mass
            .f_detach()?
            .f_exp()?
            .f_mul(&resp)?
            .f_sum(Kind::Float)?
            .f_double_value(&[])?;
        Ok(mass / resp.f_sum(Kind::Float)?.f_double_value(&[])?.max(1.0))
    }

    /// Loss of one micro-batch (its gradients are accumulated); the loss is
    /// scaled by the micro-batch's share of the `total` sequences.
    fn chunk_loss(
        &mut self,
        states: &[PromptState],
        prompts: &[Vec<u32>],
        gens: &[emorl_lm::Generation],
        adv: &[f64],
        old_logp: Option<&Tensor>,
        total: f64,
    ) -> Result<ChunkLoss> {
        let cfg = self.config.clone();
        let k = cfg.samples_per_prompt;
        let device = self.agent.model.device();
        let pad = i64::from(self.agent.model.tokenizer().pad_id());
        let Packed {
            tokens,
            mask,
            resp,
            lp,
            lr,
        } = pack(|j| &prompts[j / k], gens, pad, device)?;
        let targets = tokens.f_narrow(1, lp, lr)?.f_unsqueeze(-1)?;
        let t_inv = 1.0 / cfg.temperature;

        // The frozen model's distribution (and the ERM's read-out), no grad.
        let (ref_logp, hidden) = {
            let _g = tch::no_grad_guard();
            let mut hooks = emorl_lm::Hooks::new();
            let readout = self.agent.modules.erm.as_ref().map(|e| e.readout());
            if let Some(r) = readout {
                hooks = hooks.with_readout(r);
            }
            let out = self
                .agent
                .model
                .forward(&tokens, Some(&mask), Some(&hooks))?;
            let l = out.logits.f_narrow(1, lp - 1, lr)?.f_mul_scalar(t_inv)?;
            (
                l.f_log_softmax(-1, Kind::Float)?,
                out.hidden.into_iter().next().map(|(_, h)| h),
            )
        };
        // The ERM reads the prompt positions only.
        let prompt_mask = mask.f_narrow(1, 0, lp)?;
        let hidden = match hidden {
            Some(h) => Some(h.f_narrow(1, 0, lp)?.f_to_kind(Kind::Float)?),
            None => None,
        };
        // One row per prompt (every prompt's k rows share its prompt part).
        let first = Tensor::f_from_slice(
            &(0..states.len())
                .map(|r| (r * k) as i64)
                .collect::<Vec<_>>(),
        )?
        .f_to_device(device)?;
        let prompt_tokens = tokens.f_narrow(1, 0, lp)?.f_index_select(0, &first)?;
        let prompt_mask = prompt_mask.f_index_select(0, &first)?;
        let hidden = match hidden {
            Some(h) => Some(h.f_index_select(0, &first)?),
            None => None,
        };
        let emotion = self
            .emotion_of(states, &prompt_tokens, &prompt_mask, hidden.as_ref())?
            .repeat_rows(k as i64)?;
        let hooks = self.agent.modules.hooks(&emotion)?;
        let out = self
            .agent
            .model
            .forward(&tokens, Some(&mask), Some(&hooks))?;
        let logits = out.logits.f_narrow(1, lp - 1, lr)?.f_mul_scalar(t_inv)?;
        let logp = logits.f_log_softmax(-1, Kind::Float)?; // [b, lr, V]
        Self::loss_terms(
            &cfg, &logp, &ref_logp, &targets, &resp, adv, old_logp, total,
        )
    }

    /// Loss of one micro-batch when the modules only process logits: the
    /// frozen model's raw logits of the sampled positions were recorded
    /// while sampling (`raw`, `[b, steps, V]`), so the policy's logits are
    /// the modules' processing of them (with gradients) and the frozen
    /// reference is `raw` itself — no model forward or backward here.
    #[allow(clippy::too_many_arguments)]
    fn chunk_loss_logits_only(
        &mut self,
        states: &[PromptState],
        prompt: &PromptView,
        raw: &Tensor,
        gens: &[emorl_lm::Generation],
        adv: &[f64],
        old_logp: Option<&Tensor>,
        total: f64,
    ) -> Result<ChunkLoss> {
        let cfg = self.config.clone();
        let k = cfg.samples_per_prompt;
        let device = self.agent.model.device();
        let (targets, resp, lr) = response_targets(gens, device)?;
        let t_inv = 1.0 / cfg.temperature;
        let raw = raw.f_narrow(1, 0, lr.min(raw.size()[1]))?;
        if raw.size()[1] != lr {
            return Err(invalid("recorded logits are shorter than the responses"));
        }
        let ref_logp = {
            let _g = tch::no_grad_guard();
            raw.f_mul_scalar(t_inv)?.f_log_softmax(-1, Kind::Float)?
        };
        let emotion = self
            .emotion_of(states, &prompt.tokens, &prompt.mask, prompt.hidden.as_ref())?
            .repeat_rows(k as i64)?;
        let logits = self
            .agent
            .modules
            .process_logits(&emotion, &raw)?
            .f_mul_scalar(t_inv)?;
        let logp = logits.f_log_softmax(-1, Kind::Float)?; // [b, lr, V]
        Self::loss_terms(
            &cfg, &logp, &ref_logp, &targets, &resp, adv, old_logp, total,
        )
    }

    /// The per-token loss from the policy's and the frozen model's
    /// log-probabilities (`[b, lr, V]`) at the response positions; runs the
    /// backward pass.
    #[allow(clippy::too_many_arguments)]
    fn loss_terms(
        cfg: &RlConfig,
        logp: &Tensor,
        ref_logp: &Tensor,
        targets: &Tensor,
        resp: &Tensor,
        adv: &[f64],
        old_logp: Option<&Tensor>,
        total: f64,
    ) -> Result<ChunkLoss> {
        let device = logp.device();
        let token_logp = logp.f_gather(-1, targets, false)?.f_squeeze_dim(-1)?; // [b, lr]
        let probs = logp.f_exp()?;
        // Σ p·log p once: KL = Σ p·log p − Σ p·log p_ref, entropy = −Σ p·log p.
        let sum_v = |t: &Tensor| t.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        let p_logp = sum_v(&probs.f_mul(logp)?)?;
        let kl = p_logp.f_sub(&sum_v(&probs.f_mul(ref_logp)?)?)?;
        let entropy = p_logp.f_neg()?;
        let adv_t = Tensor::f_from_slice(&adv.iter().map(|&a| a as f32).collect::<Vec<_>>())?
            .f_to_device(device)?
            .f_unsqueeze(1)?;
        let old = match old_logp {
            Some(o) => o.shallow_clone(),
            None => token_logp.f_detach()?,
        };
        let ratio = token_logp.f_sub(&old)?.f_exp()?;
        let mut pg = ratio.f_mul(&adv_t)?;
        if let Some(eps) = cfg.clip {
            let clipped = ratio.f_clamp(1.0 - eps, 1.0 + eps)?.f_mul(&adv_t)?;
            pg = pg.f_minimum(&clipped)?;
        }
        let per_token = pg
            .f_neg()?
            .f_add(&kl.f_mul_scalar(cfg.kl_coef)?)?
            .f_sub(&entropy.f_mul_scalar(cfg.entropy_coef)?)?;
        let n_tok = resp
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let seq_mean = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_mul(resp)?
                .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
                .f_div(&n_tok)?)
        };
        let loss = seq_mean(&per_token)?
            .f_sum(Kind::Float)?
            .f_div_scalar(total)?;
        let policy_loss = seq_mean(&pg.f_neg()?)?
            .f_sum(Kind::Float)?
            .f_div_scalar(total)?;
        loss.f_backward()?;
        let masked_sum = |t: &Tensor| -> Result<f64> {
            Ok(t.f_detach()?
                .f_mul(resp)?
                .f_sum(Kind::Float)?
                .f_double_value(&[])?)
        };
        Ok(ChunkLoss {
            loss: loss.f_double_value(&[])?,
            policy_loss: policy_loss.f_double_value(&[])?,
            kl_sum: masked_sum(&kl)?,
            entropy_sum: masked_sum(&entropy)?,
            tokens: resp.f_sum(Kind::Float)?.f_double_value(&[])?,
            token_logp: token_logp.f_detach()?,
        })
    }
}

/// The response tokens of `gens` as `[b, lr, 1]` targets (0 past a row's
/// end), the `[b, lr]` mask of real tokens, and `lr` (the longest response,
/// at least 1).
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

fn response_targets(
    gens: &[emorl_lm::Generation],
    device: tch::Device,
) -> Result<(Tensor, Tensor, i64)> {
    let b = gens.len() as i64;
    let lr = gens
        .iter()
        .map(|g| g.tokens.len())
        .max()
        .unwrap_or(0)
        .max(1);
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
struct Packed {
    tokens: Tensor,
    mask: Tensor,
    /// `[b, lr]`, 1 at response tokens.
    resp: Tensor,
    lp: i64,
    lr: i64,
}

fn pack<'a>(
    prompt_of: impl Fn(usize) -> &'a Vec<u32>,
    gens: &[emorl_lm::Generation],
    pad: i64,
    device: tch::Device,
) -> Result<Packed> {
    let b = gens.len() as i64;
    let lp = (0..gens.len())
        .map(|j| prompt_of(j).len())
        .max()
        .unwrap_or(0) as i64;
    let lr = gens
        .iter()
        .map(|g| g.tokens.len())
        .max()
        .unwrap_or(0)
        .max(1) as i64;
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

/// The prompts of one micro-batch (one row per prompt): left-padded tokens,
/// their mask and the ERM's read-out of them.
struct PromptView {
    tokens: Tensor,
    mask: Tensor,
    hidden: Option<Tensor>,
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
    erm: &crate::erm::EmotionalRewardModel,
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

struct ChunkLoss {
    loss: f64,
    policy_loss: f64,
    kl_sum: f64,
    entropy_sum: f64,
    tokens: f64,
    token_logp: Tensor,
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
