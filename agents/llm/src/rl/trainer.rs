//! The RL trainer: one update is, in the order it runs,
//! 1. [`Trainer::collect_prompts`]: `prompts_per_update` dialogue states
//!    from seeded resets (turn `t` reached by replaying a scripted policy);
//! 2. [`Trainer::sample`]: `k` responses per state, gradients off;
//! 3. [`Trainer::score`]: each response's reward and the context it leads
//!    to (the state is replayed and the response stepped), leave-one-out
//!    advantages;
//! 4. [`Trainer::learn`]: per micro-batch, every [`Objective`]'s loss
//!    (policy gradient, expression, ERM feedback), one backward pass; then
//!    gradient-norm clipping, a NaN/Inf guard and one step of the one
//!    optimiser, whose parameter groups are the modules.

use std::path::Path;
use std::time::Instant;

use emorl_envs_text::Dialogue;
use emorl_lm::Model;
use tch::Tensor;

use crate::agent::LlmAgent;
use crate::error::{LlmAgentError, Result};
use crate::optim::{AdamW, ParamGroup};
use crate::params::{all_finite, restore, snapshot};
use crate::rl::config::{PhaseSeconds, RlConfig, UpdateStats};
use crate::rl::expression::Expression;
use crate::rl::feedback::ErmFeedback;
use crate::rl::objective::Objective;
use crate::rl::policy::PolicyGradient;
use crate::rl::rollout::Samples;
use crate::rl::rollout::{
    advantages, prompt_state, prompt_tensors, replay_reward, sample_responses, PromptState, Rollout,
};
use crate::rl::state::{read_state, write_state, TrainingState};

/// The RL trainer: owns the agent, the environment, the objectives and the
/// optimiser.
#[derive(Debug)]
pub struct Trainer {
    agent: LlmAgent,
    config: RlConfig,
    env: Dialogue,
    opt: AdamW,
    objectives: Vec<Box<dyn Objective>>,
    updates_done: usize,
    stopped: Option<String>,
    /// Recompute the log-probabilities with a model forward even when the
    /// modules only process logits (the slow reference path).
    recompute: bool,
    phases: PhaseSeconds,
    reward_fn: Option<RewardFn>,
}

/// A stand-in reward on a sampled response (replacing the environment's).
pub struct RewardFn(pub Box<dyn FnMut(&emorl_lm::Generation) -> f64>);

impl std::fmt::Debug for RewardFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RewardFn")
    }
}

/// The optimiser's parameter groups: one per part of each module
/// (`<module>.<part>`, the part being the first word of the parameter's
/// name: `erm.logit`, `erm.heads`, `prefix.mlp`, …), at `lr` times the
/// `lr_scale` of the part, else of the module, else 1. A scale for a module
/// the agent has must name parameters of it; scales for modules it lacks are
/// for other agents and left alone.
fn param_groups(agent: &LlmAgent, config: &RlConfig) -> Result<Vec<ParamGroup>> {
    let mut groups: Vec<ParamGroup> = Vec::new();
    for (module, store) in agent.modules.stores() {
        for (name, t) in store.named() {
            if !t.requires_grad() {
                continue;
            }
            let part = name.split('_').next().unwrap_or(&name);
            let group = format!("{module}.{part}");
            let scale = config
                .lr_scale
                .get(&group)
                .or_else(|| config.lr_scale.get(module))
                .copied()
                .unwrap_or(1.0);
            match groups.iter_mut().find(|g| g.name == group) {
                Some(g) => g.params.push(t),
                None => groups.push(ParamGroup {
                    name: group,
                    params: vec![t],
                    lr: config.lr * scale,
                    weight_decay: config.weight_decay,
                }),
            }
        }
    }
    let modules: Vec<&str> = agent.modules.stores().iter().map(|(m, _)| *m).collect();
    for key in config.lr_scale.keys() {
        // A module this agent does not have: the scale is for other agents
        // (one config serves them all). A part its module lacks is a typo.
        let module = key.split('.').next().unwrap_or(key);
        if !modules.contains(&module) {
            continue;
        }
        let prefix = format!("{key}.");
        if !groups
            .iter()
            .any(|g| &g.name == key || g.name.starts_with(&prefix))
        {
            return Err(crate::params::invalid(format!(
                "rl.lr_scale: `{key}` names no parameters of {} (groups: {})",
                agent.kind().id(),
                groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(groups)
}

/// Packs the frozen weights in the file's own quantization for sampling
/// (see [`RlConfig::packed_sampling`]), unless they already are; other
/// generation keeps reading the dense weights.
fn pack_for_sampling(model: &mut emorl_lm::Model) -> Result<()> {
    if model.pack_plan() == emorl_lm::PackPlan::default() {
        model.pack_weights(model.auto_pack_plan())?;
        model.set_packed_generation(false);
    }
    Ok(())
}

impl Trainer {
    pub fn new(mut agent: LlmAgent, config: RlConfig) -> Result<Self> {
        config.validate()?;
        if agent.trainable_parameters().is_empty() {
            return Err(LlmAgentError::NothingToTrain(agent.kind().id().into()));
        }
        if config.packed_sampling {
            pack_for_sampling(agent.model_mut())?;
        }
        let env = Dialogue::new(config.env.clone())?;
        let opt = AdamW::with_groups(param_groups(&agent, &config)?)?;
        let mut objectives: Vec<Box<dyn Objective>> = vec![Box::new(PolicyGradient::new(&config))];
        if let Some(e) = Expression::new(&agent, &config)? {
            objectives.push(Box::new(e));
        }
        if let Some(f) = ErmFeedback::new(&agent, config.feedback_coef) {
            objectives.push(Box::new(f));
        }
        Ok(Trainer {
            agent,
            config,
            env,
            opt,
            objectives,
            updates_done: 0,
            stopped: None,
            recompute: false,
            phases: PhaseSeconds::default(),
            reward_fn: None,
        })
    }

    /// Resumes from a checkpoint written by [`Trainer::save`] (or an agent
    /// checkpoint, which starts at update 0): module parameters, the update
    /// count and the optimiser's moments are restored, so the run continues
    /// as if it had not stopped. `config` replaces the saved RL config
    /// (`None`: the saved one).
    pub fn resume(dir: impl AsRef<Path>, model: Model, config: Option<RlConfig>) -> Result<Self> {
        let dir = dir.as_ref();
        let agent = LlmAgent::load(dir, model)?;
        let saved = read_state(dir)?;
        let cfg = match (&config, &saved) {
            (Some(c), _) => c.clone(),
            (None, Some((s, _))) => s.rl.clone(),
            (None, None) => RlConfig::default(),
        };
        let mut t = Trainer::new(agent, cfg)?;
        if let Some((state, moments)) = saved {
            t.updates_done = state.updates_done;
            t.opt
                .load_state(moments, state.optimizer_steps)
                .map_err(|e| LlmAgentError::Checkpoint {
                    path: dir.join(crate::rl::state::OPTIMIZER_FILE),
                    msg: e.to_string(),
                })?;
        }
        Ok(t)
    }

    /// Writes the agent checkpoint with the training progress and the
    /// optimiser's state.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.agent.save(dir)?;
        write_state(
            dir,
            &TrainingState {
                updates_done: self.updates_done,
                optimizer_steps: self.opt.steps(),
                rl: self.config.clone(),
            },
            &self.opt.state()?,
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
    /// `(group, learning rate, parameters)` of the optimiser's groups.
    pub fn param_groups(&self) -> Vec<(String, f64, i64)> {
        self.opt.groups()
    }
    /// Names of the objectives, in the order their losses are summed.
    pub fn objective_names(&self) -> Vec<&'static str> {
        self.objectives.iter().map(|o| o.name()).collect()
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
                let s = prompt_state(&mut self.env, &self.agent, &self.config, update, i)?;
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
        let (states, prompts) = self.collect_prompts(u)?;
        let (prompt_tokens, prompt_mask, prompt_hidden) =
            prompt_tensors(&mut self.agent, &prompts)?;
        let t_prompts = start.elapsed().as_secs_f64();
        let record = self.agent.modules.logits_only() && !self.recompute;
        let Samples {
            gens,
            emotion_means,
            raw_logits,
        } = sample_responses(
            &mut self.agent,
            &self.config,
            &states,
            &prompts,
            &prompt_tokens,
            &prompt_mask,
            prompt_hidden.as_ref(),
            u,
            record,
        )?;
        let t_gen = start.elapsed().as_secs_f64();
        let mut rollout = Rollout {
            update: u,
            k: self.config.samples_per_prompt,
            states,
            prompts,
            prompt_tokens,
            prompt_mask,
            prompt_hidden,
            gens,
            raw_logits,
            rewards: Vec::new(),
            advantages: Vec::new(),
            next_contexts: Vec::new(),
            emotion_means,
        };
        self.score(&mut rollout)?;
        let t_rew = start.elapsed().as_secs_f64();
        let mut stats = summarize(&rollout, u);
        self.learn(&rollout, &mut stats)?;
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

    /// Step 1: the update's dialogue states and their encoded prompts.
    fn collect_prompts(&mut self, u: usize) -> Result<(Vec<PromptState>, Vec<Vec<u32>>)> {
        let states = (0..self.config.prompts_per_update)
            .map(|i| prompt_state(&mut self.env, &self.agent, &self.config, u, i))
            .collect::<Result<Vec<_>>>()?;
        let prompts = states
            .iter()
            .map(|s| self.agent.encode_prompt(&s.obs))
            .collect::<Result<Vec<_>>>()?;
        Ok((states, prompts))
    }

    /// Step 3: rewards, the contexts the responses led to, advantages.
    fn score(&mut self, rollout: &mut Rollout) -> Result<()> {
        let k = rollout.k;
        for (j, g) in rollout.gens.iter().enumerate() {
            let state = &rollout.states[j / k];
            let (reward, next) = replay_reward(&mut self.env, state, &g.text)?;
            let reward = match &mut self.reward_fn {
                Some(f) => (f.0)(g),
                None => reward,
            };
            rollout.rewards.push(reward);
            rollout.next_contexts.push(next);
        }
        rollout.advantages = advantages(
            &rollout.rewards,
            k,
            self.config
                .normalize_advantages
                .then_some(self.config.advantage_eps),
        );
        Ok(())
    }

    /// Step 4: every objective's loss per micro-batch, one backward pass
    /// each, one optimiser step per epoch.
    fn learn(&mut self, rollout: &Rollout, stats: &mut UpdateStats) -> Result<()> {
        for o in &mut self.objectives {
            o.begin(rollout)?;
        }
        let params = self.opt.params();
        for epoch in 0..self.config.epochs {
            self.opt.zero_grad();
            let mut total = 0.0;
            for chunk in rollout.chunks(self.config.microbatch, epoch) {
                let mut loss: Option<Tensor> = None;
                for o in &mut self.objectives {
                    if let Some(l) = o.loss(&mut self.agent, rollout, &chunk)? {
                        loss = Some(match loss {
                            Some(acc) => acc.f_add(&l)?,
                            None => l,
                        });
                    }
                }
                if let Some(l) = loss {
                    total += l.f_double_value(&[])?;
                    l.f_backward()?;
                }
            }
            stats.loss = total;
            if !total.is_finite() {
                return Err(self.diverge(format!("loss {total}")));
            }
            stats.grad_norm = self.guarded_step(&params)?;
        }
        self.opt.zero_grad();
        for o in &mut self.objectives {
            o.report(stats);
        }
        Ok(())
    }

    /// Gradient clipping, a NaN/Inf check and an optimiser step that is
    /// undone when it makes a parameter non-finite.
    fn guarded_step(&mut self, params: &[Tensor]) -> Result<f64> {
        let grad_norm = self.opt.clip_grad_norm(self.config.grad_clip)?;
        if !grad_norm.is_finite() {
            return Err(self.diverge(format!("gradient norm {grad_norm}")));
        }
        let good = snapshot(params)?;
        self.opt.step()?;
        if !all_finite(params)? {
            restore(params, &good)?;
            return Err(self.diverge("a parameter became non-finite after the step".into()));
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
}

/// The reward statistics of a rollout (the objectives add the rest).
fn summarize(rollout: &Rollout, u: usize) -> UpdateStats {
    let n = rollout.rewards.len().max(1) as f64;
    let reward_mean = rollout.rewards.iter().sum::<f64>() / n;
    let reward_std = (rollout
        .rewards
        .iter()
        .map(|r| (r - reward_mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    UpdateStats {
        update: u + 1,
        reward_mean,
        reward_std,
        response_tokens: rollout
            .gens
            .iter()
            .map(|g| g.tokens.len() as f64)
            .sum::<f64>()
            / n,
        emotion_means: rollout.emotion_means.clone(),
        ..UpdateStats::default()
    }
}
