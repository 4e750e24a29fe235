//! Deep Q-learning (Mnih et al. 2015) as upstream Emotional-ED runs it:
//! ε-greedy acting on an online Q-network, experience replay, a target network
//! refreshed by hard copy every N gradient steps, Adam on the TD loss
//! `L = mean_i w_i · ℓ(Q(s_i, a_i) − y_i)` with `y_i = r_i + γ (1 − d_i) max_a' Q_target(s'_i, a')`.
//!
//! An optional [fear module](crate::fear) joins at named places; everything
//! else is the plain algorithm.
//!
//! Length: the agent's whole life cycle (acting, storing transitions, the TD
//! update with the fear module's hook points, the ε schedule, checkpoints) in
//! one file, so every named hook point is visible in the order it runs;
//! networks, Adam and replay are their own files.

use crate::config::{Backend, DqnConfig, Loss};
use crate::error::DqnError;
use crate::fear::{self, BatchFear, FearModule, SelectionBias};
use crate::flat_adam::{AdamSettings, FlatAdam, FlatParams};
use crate::host_net::{HostMlp, Tape};
use crate::network::Mlp;
use crate::replay::{Batch, ReplayBuffer, StoredContext};
use emorl_core::{EmotionalContext, RngHandle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// What one gradient step did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateStats {
    pub td_loss: f64,
    /// Mean `Q(s, a)` over the batch.
    pub q_mean: f64,
    /// Learning rate used for this step.
    pub learning_rate: f64,
    /// Mean fear over the batch, when a fear module is present.
    pub batch_fear: Option<f64>,
    /// Loss of the fear module's own network, when it has one.
    pub fear_loss: Option<f64>,
}

/// Counters that a checkpoint restores along with the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub env_steps: u64,
    pub updates: u64,
    pub episodes: u64,
    pub epsilon: f64,
    pub learning_rate: f64,
}

/// What `agent.json` in a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CheckpointMeta {
    config: DqnConfig,
    n_features: usize,
    n_actions: usize,
    state: TrainingState,
    /// Absent in checkpoints written before training state was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    training: Option<TrainingMeta>,
}

/// What a checkpoint keeps beyond the weights so that training continues
/// exactly: Adam's step counts, the replay buffer's write position and the
/// fear module's state. The tensors (Adam moments, replay contents) are in
/// `training.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TrainingMeta {
    adam_steps: i32,
    fear_adam_steps: Option<i32>,
    replay_head: usize,
    fear_state: serde_json::Value,
    last_fear: Option<f64>,
}

const META_FILE: &str = "agent.json";
const ONLINE_FILE: &str = "q_network.safetensors";
const TARGET_FILE: &str = "target_network.safetensors";
const FEAR_FILE: &str = "fear_network.safetensors";
const TRAINING_FILE: &str = "training.safetensors";

/// A DQN learner plus an optional fear module.
pub struct DqnAgent {
    cfg: DqnConfig,
    device: Device,
    n_features: usize,
    n_actions: usize,
    pub(crate) online_vs: nn::VarStore,
    pub(crate) online: Mlp,
    target_vs: nn::VarStore,
    pub(crate) target: Mlp,
    /// The target network's variables in one buffer (read on the host).
    target_params: FlatParams,
    optimizer: FlatAdam,
    /// The Q-network's shapes for host computation, and whether updates
    /// run there ([`Backend`]).
    host_net: HostMlp,
    host_updates: bool,
    host: HostBuffers,
    pub(crate) replay: ReplayBuffer,
    pub(crate) fear: Option<Box<dyn FearModule>>,
    state: TrainingState,
    last_fear: Option<f64>,
    input_buf: Vec<f32>,
    q_buf: Vec<f32>,
}

/// Buffers the host update reuses from step to step.
#[derive(Debug, Default)]
struct HostBuffers {
    act: Tape,
    online: Tape,
    target: Tape,
    x: Vec<f32>,
    x2: Vec<f32>,
    d_out: Vec<f32>,
    grad: Vec<f32>,
}

/// A [`BatchFear`]'s tensors read onto the host.
#[derive(Debug, Default)]
struct HostFear {
    state_input: Option<Vec<f32>>,
    next_state_input: Option<Vec<f32>>,
    /// Per-sample fear, its weight, and whether only overestimates are weighted.
    loss_weighting: Option<(Vec<f32>, f32, bool)>,
    /// Per-action danger `[B, A]`, scale and range floor.
    next_selection: Option<(Vec<f32>, f32, f32)>,
}

fn host_vec(t: &Tensor) -> Result<Vec<f32>, DqnError> {
    Ok(Vec::<f32>::try_from(
        &t.f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_reshape([-1])?,
    )?)
}

impl HostFear {
    fn read(bf: &BatchFear) -> Result<Self, DqnError> {
        Ok(HostFear {
            state_input: bf.state_input.as_ref().map(host_vec).transpose()?,
            next_state_input: bf.next_state_input.as_ref().map(host_vec).transpose()?,
            loss_weighting: match &bf.loss_weighting {
                Some(lw) => Some((host_vec(&lw.fear)?, lw.weight as f32, lw.only_overestimates)),
                None => None,
            },
            next_selection: match &bf.next_selection {
                Some(sb) => Some((
                    host_vec(&sb.danger)?,
                    sb.scale as f32,
                    sb.range_floor as f32,
                )),
                None => None,
            },
        })
    }
}

/// Rows of `states` (`[rows, n]`), each followed by its entry of `extra`
/// when given, into `out`.
fn join_inputs(states: &[f32], n: usize, extra: Option<&[f32]>, out: &mut Vec<f32>) {
    out.clear();
    match extra {
        None => out.extend_from_slice(states),
        Some(col) => {
            for (row, x) in states.chunks_exact(n).zip(col) {
                out.extend_from_slice(row);
                out.push(*x);
            }
        }
    }
}

impl std::fmt::Debug for DqnAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DqnAgent")
            .field("cfg", &self.cfg)
            .field("n_features", &self.n_features)
            .field("n_actions", &self.n_actions)
            .field("state", &self.state)
            .field("fear", &self.fear)
            .finish_non_exhaustive()
    }
}

fn argmax(q: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..q.len() {
        if q[i] > q[best] {
            best = i;
        }
    }
    best
}

impl DqnAgent {
    /// Builds the networks (online first, then target, as upstream; the target
    /// then takes the online weights), drawing initial weights from `rng`.
    pub fn new(
        n_features: usize,
        n_actions: usize,
        cfg: DqnConfig,
        rng: &RngHandle,
    ) -> Result<Self, DqnError> {
        cfg.validate()?;
        if n_features == 0 || n_actions == 0 {
            return Err(DqnError::InvalidConfig(
                "a DQN needs at least one feature and one action".into(),
            ));
        }
        let device = cfg.device.resolve()?;
        let host_updates = match cfg.backend {
            Backend::Auto => device == Device::Cpu,
            Backend::Host if device != Device::Cpu => {
                return Err(DqnError::InvalidConfig(
                    "backend = \"host\" computes on the CPU, but the device resolved to CUDA"
                        .into(),
                ))
            }
            Backend::Host => true,
            Backend::Libtorch => false,
        };
        let fear = match &cfg.fear {
            Some(fc) => Some(fear::build(
                fc,
                n_features,
                n_actions,
                device,
                host_updates,
                rng,
            )?),
            None => None,
        };
        let n_in = n_features + fear.as_ref().map_or(0, |f| f.q_inputs());
        let online_vs = nn::VarStore::new(device);
        let online = Mlp::new(&(online_vs.root() / "q"), n_in, &cfg.hidden, n_actions, rng)?;
        let mut target_vs = nn::VarStore::new(device);
        let target = Mlp::new(&(target_vs.root() / "q"), n_in, &cfg.hidden, n_actions, rng)?;
        target_vs.copy(&online_vs)?;
        let target_params = FlatParams::new(&target_vs)?;
        let host_net = HostMlp::new(online.sizes().to_vec());

        let optimizer = FlatAdam::new(
            &online_vs,
            AdamSettings {
                lr: cfg.learning_rate,
                beta1: cfg.adam_beta1,
                beta2: cfg.adam_beta2,
                eps: cfg.adam_eps,
            },
        )?;
        let state = TrainingState {
            env_steps: 0,
            updates: 0,
            episodes: 0,
            epsilon: cfg.epsilon.initial(),
            learning_rate: cfg.learning_rate,
        };
        tracing::debug!(
            n_features,
            n_actions,
            ?device,
            fear = fear.as_ref().map(|f| f.name()),
            "built DQN agent"
        );
        Ok(DqnAgent {
            replay: ReplayBuffer::new(cfg.buffer_size, n_features),
            cfg,
            device,
            n_features,
            n_actions,
            online_vs,
            online,
            target_vs,
            target,
            target_params,
            optimizer,
            host_net,
            host_updates,
            host: HostBuffers::default(),
            fear,
            state,
            last_fear: None,
            input_buf: Vec::with_capacity(n_in),
            q_buf: Vec::with_capacity(n_actions),
        })
    }

    pub fn config(&self) -> &DqnConfig {
        &self.cfg
    }
    pub fn n_features(&self) -> usize {
        self.n_features
    }
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn epsilon(&self) -> f64 {
        self.state.epsilon
    }
    pub fn set_epsilon(&mut self, epsilon: f64) {
        self.state.epsilon = epsilon;
    }
    pub fn training_state(&self) -> &TrainingState {
        &self.state
    }
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }
    pub fn fear_module(&self) -> Option<&dyn FearModule> {
        self.fear.as_deref()
    }
    /// Fear of the state last acted in (`None` without a fear module).
    pub fn last_fear(&self) -> Option<f64> {
        self.last_fear
    }
    /// Parameters of the online Q-network.
    pub fn q_var_store(&self) -> &nn::VarStore {
        &self.online_vs
    }

    fn check_features(&self, features: &[f32]) -> Result<(), DqnError> {
        if features.len() == self.n_features {
            Ok(())
        } else {
            Err(DqnError::FeatureLength {
                expected: self.n_features,
                got: features.len(),
            })
        }
    }

    /// Start of an episode: clears per-episode fear state.
    pub fn begin_episode(&mut self) {
        if let Some(f) = self.fear.as_mut() {
            f.reset_episode();
        }
    }

    /// End of a training episode: advances the ε schedule.
    pub fn end_episode(&mut self) {
        self.state.episodes += 1;
        self.state.epsilon = self.cfg.epsilon.next(self.state.epsilon);
    }

    /// Q-values of one state (with the fear input, when the module adds one).
    pub fn q_values(
        &mut self,
        features: &[f32],
        fear_input: Option<f32>,
    ) -> Result<Vec<f32>, DqnError> {
        self.check_features(features)?;
        self.input_buf.clear();
        self.input_buf.extend_from_slice(features);
        if let Some(x) = fear_input {
            self.input_buf.push(x);
        }
        let n_in = self.online.n_inputs();
        if self.input_buf.len() != n_in {
            return Err(DqnError::FeatureLength {
                expected: n_in,
                got: self.input_buf.len(),
            });
        }
        // On CPU the online weights are read in place and the forward pass
        // runs on the host (the same function, without ~8 libtorch calls).
        if let Some(params) = self.optimizer.params().host() {
            let tape = &mut self.host.act;
            if self
                .host_net
                .forward(params, &self.input_buf, 1, tape)
                .is_some()
            {
                return Ok(tape.output().to_vec());
            }
        }
        let x = Tensor::f_from_slice(&self.input_buf)?.f_view([1, n_in as i64])?;
        let x = if self.device == Device::Cpu {
            x
        } else {
            x.f_to_device(self.device)?
        };
        let q = tch::no_grad(|| self.online.forward(&x))?;
        let q = q.f_to_device(Device::Cpu)?.f_view([-1])?;
        self.q_buf.resize(self.n_actions, 0.0);
        q.f_copy_data(&mut self.q_buf, self.n_actions)?;
        Ok(self.q_buf.clone())
    }

    /// Chooses an action in the state with `features`, whose context is
    /// `context`. With `explore` false the choice is greedy (no ε draw).
    pub fn act(
        &mut self,
        features: &[f32],
        context: &EmotionalContext,
        rng: &RngHandle,
        explore: bool,
    ) -> Result<usize, DqnError> {
        self.check_features(features)?;
        let fear = match self.fear.as_mut() {
            Some(f) => Some(f.appraise(features, context)?),
            None => None,
        };
        self.last_fear = fear.as_ref().map(|f| f.level);
        if explore {
            let eps = match (&self.fear, &fear) {
                (Some(m), Some(sf)) => m.exploration_rate(self.state.epsilon, sf),
                _ => self.state.epsilon,
            };
            if rng.random() < eps {
                if let (Some(m), Some(sf)) = (self.fear.as_mut(), &fear) {
                    if let Some(a) = m.explore(sf, rng) {
                        return Ok(a);
                    }
                }
                return Ok(rng.randint(self.n_actions));
            }
        }
        let sf = fear.unwrap_or_default();
        let mut q = self.q_values(features, sf.q_input)?;
        if let Some(m) = self.fear.as_mut() {
            if let Some(a) = m.select(&sf, &mut q, rng) {
                return Ok(a);
            }
        }
        Ok(argmax(&q))
    }

    /// Stores the transition `(s, a, r, s', terminated)` with the context of
    /// `s'`, then takes a gradient step when one is due.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        state: &[f32],
        action: usize,
        reward: f64,
        next_state: &[f32],
        terminated: bool,
        context: &EmotionalContext,
        rng: &RngHandle,
    ) -> Result<Option<UpdateStats>, DqnError> {
        self.check_features(state)?;
        self.check_features(next_state)?;
        if action >= self.n_actions {
            return Err(DqnError::ActionOutOfRange {
                action,
                n_actions: self.n_actions,
            });
        }
        self.replay.push(
            state,
            action,
            reward,
            next_state,
            terminated,
            StoredContext::from(context),
        );
        self.state.env_steps += 1;
        let ready = self.replay.len() >= self.cfg.learning_starts.max(self.cfg.batch_size);
        if ready
            && self
                .state
                .env_steps
                .is_multiple_of(self.cfg.train_frequency as u64)
        {
            self.update(rng).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Appends the fear column to a batch of states, when the module gives one.
    fn with_fear_input(states: &Tensor, extra: Option<&Tensor>) -> Result<Tensor, DqnError> {
        Ok(match extra {
            Some(col) => Tensor::f_cat(&[states, col], 1)?,
            None => states.shallow_clone(),
        })
    }

    /// The TD loss of a batch and the mean `Q(s, a)`. Fear inputs arrive
    /// already computed; if they came from a network, they carry no graph.
    pub(crate) fn q_loss(&self, batch: &Batch, bf: &BatchFear) -> Result<(Tensor, f64), DqnError> {
        let s = Self::with_fear_input(&batch.states, bf.state_input.as_ref())?;
        let s2 = Self::with_fear_input(&batch.next_states, bf.next_state_input.as_ref())?;
        let q = self
            .online
            .forward(&s)?
            .f_gather(1, &batch.actions, false)?
            .f_squeeze_dim(1)?;
        let y = tch::no_grad(|| -> Result<Tensor, DqnError> {
            let q_all = self.target.forward(&s2)?;
            let q_next = match &bf.next_selection {
                // The value of the action the agent would choose there.
                Some(bias) => {
                    let chosen = bias.apply(&q_all)?.f_argmax(1, true)?;
                    q_all.f_gather(1, &chosen, false)?.f_squeeze_dim(1)?
                }
                None => q_all.f_max_dim(1, false)?.0,
            };
            let not_done = batch.dones.f_rsub_scalar(1.0)?;
            Ok(batch
                .rewards
                .f_add(&q_next.f_mul(&not_done)?.f_mul_scalar(self.cfg.gamma)?)?)
        })?;
        let q_mean = tch::no_grad(|| q.f_mean(Kind::Double)?.f_double_value(&[]))?;
        let Some(lw) = &bf.loss_weighting else {
            // Unweighted: the fused loss ops are fewer autograd nodes.
            let loss = match self.cfg.loss {
                Loss::Mse => q.f_mse_loss(&y, Reduction::Mean)?,
                Loss::Huber { delta } => q.f_huber_loss(&y, Reduction::Mean, delta)?,
            };
            return Ok((loss, q_mean));
        };
        let per_sample = match self.cfg.loss {
            Loss::Mse => q.f_sub(&y)?.f_square()?,
            Loss::Huber { delta } => q.f_huber_loss(&y, Reduction::None, delta)?,
        };
        // Fear weights 1 + w·F, on every sample or only on negative TD errors.
        let mut extra = lw.fear.f_mul_scalar(lw.weight)?;
        if lw.only_overestimates {
            let over = y.f_lt_tensor(&q.detach())?.f_to_kind(Kind::Float)?;
            extra = extra.f_mul(&over)?;
        }
        let per_sample = per_sample.f_mul(&extra.f_add_scalar(1.0)?)?;
        Ok((per_sample.f_mean(Kind::Float)?, q_mean))
    }

    /// One gradient step on a sampled batch; then the target copy when due,
    /// then the fear module's own step.
    pub fn update(&mut self, rng: &RngHandle) -> Result<UpdateStats, DqnError> {
        if self.host_updates {
            return self.update_host(rng);
        }
        let batch = self.replay.sample(self.cfg.batch_size, rng, self.device)?;
        let bf = match self.fear.as_mut() {
            Some(f) => f.prepare_batch(&batch)?,
            None => BatchFear::default(),
        };
        let (loss, q_mean) = self.q_loss(&batch, &bf)?;
        let td_loss = loss.f_double_value(&[])?;
        self.before_step(&bf, td_loss)?;
        let grad = self.optimizer.gradient(&loss)?;
        self.optimizer.step(&grad, self.cfg.max_grad_norm)?;
        self.after_step(td_loss, q_mean, &bf, Some(&batch))
    }

    /// What every update does before its step: the fear module's learning
    /// rate factor, and a stop on a non-finite loss.
    fn before_step(&mut self, bf: &BatchFear, td_loss: f64) -> Result<(), DqnError> {
        if let Some(factor) = bf.lr_factor {
            // Persists until overwritten (Q-16b-LRPERSIST; docs/protocols/v2.md, quirk glossary).
            self.state.learning_rate = self.cfg.learning_rate * factor;
            self.optimizer.settings.lr = self.state.learning_rate;
        }
        if !td_loss.is_finite() {
            // Stop before the step spreads it into the weights: the last
            // checkpoint on disk still holds the last good state.
            return Err(DqnError::Diverged {
                update: self.state.updates + 1,
                value: td_loss,
            });
        }
        Ok(())
    }

    /// What every update does after its step: count it, copy the target
    /// when due, train the fear module's own network on the batch.
    fn after_step(
        &mut self,
        td_loss: f64,
        q_mean: f64,
        bf: &BatchFear,
        batch: Option<&Batch>,
    ) -> Result<UpdateStats, DqnError> {
        self.state.updates += 1;
        if self
            .state
            .updates
            .is_multiple_of(self.cfg.target_network_frequency as u64)
        {
            let online = self.optimizer.params().host().map(<[f32]>::to_vec);
            match (online, self.target_params.host_mut()) {
                (Some(src), Some(dst)) if src.len() == dst.len() => dst.copy_from_slice(&src),
                _ => self.target_vs.copy(&self.online_vs)?,
            }
        }
        let fear_loss = match (self.fear.as_mut(), batch) {
            (Some(f), Some(batch)) => f.train(batch)?,
            _ => None,
        };
        Ok(UpdateStats {
            td_loss,
            q_mean,
            learning_rate: self.state.learning_rate,
            batch_fear: self.fear.as_ref().map(|_| bf.mean),
            fear_loss,
        })
    }

    /// [`update`](Self::update) on the host: the same sample, fear hooks,
    /// target, loss, Adam step and target copy, computed by
    /// [`crate::host_net`] and [`FlatAdam::host_step`]. The fear module's
    /// hooks and its own training keep their tensor interface (the batch is
    /// built as tensors only when there is a module).
    fn update_host(&mut self, rng: &RngHandle) -> Result<UpdateStats, DqnError> {
        let idx = self.replay.sample_indices(self.cfg.batch_size, rng);
        let (batch, bf) = match self.fear.as_mut() {
            Some(f) => {
                let batch = self.replay.gather(&idx, self.device)?;
                let bf = f.prepare_batch(&batch)?;
                (Some(batch), bf)
            }
            None => {
                self.replay.gather_host(&idx);
                (None, BatchFear::default())
            }
        };
        let hf = HostFear::read(&bf)?;
        let (td_loss, q_mean) = self.host_gradient(&hf)?;
        self.before_step(&bf, td_loss)?;
        if !self
            .optimizer
            .host_step(&self.host.grad, self.cfg.max_grad_norm)
        {
            return Err(DqnError::InvalidConfig(
                "the host backend needs the Q-network's parameters in CPU memory".into(),
            ));
        }
        self.after_step(td_loss, q_mean, &bf, batch.as_ref())
    }

    /// TD loss and mean `Q(s, a)` of the batch gathered in the replay
    /// buffer's host buffers, leaving the loss's gradient in `host.grad`.
    /// The loss is [`q_loss`](Self::q_loss)'s, term for term.
    fn host_gradient(&mut self, hf: &HostFear) -> Result<(f64, f64), DqnError> {
        let no_host = || DqnError::InvalidConfig("host update: inconsistent shapes".into());
        let hb = self.replay.host_batch();
        let b = hb.actions.len();
        let n = self.n_features;
        let na = self.n_actions;
        let h = &mut self.host;
        join_inputs(hb.states, n, hf.state_input.as_deref(), &mut h.x);
        join_inputs(hb.next_states, n, hf.next_state_input.as_deref(), &mut h.x2);
        let online = self.optimizer.params().host().ok_or_else(no_host)?;
        let target = self.target_params.host().ok_or_else(no_host)?;
        self.host_net
            .forward(online, &h.x, b, &mut h.online)
            .ok_or_else(no_host)?;
        self.host_net
            .forward(target, &h.x2, b, &mut h.target)
            .ok_or_else(no_host)?;
        let (q_all, qt_all) = (h.online.output(), h.target.output());
        let gamma = self.cfg.gamma as f32;
        h.d_out.clear();
        h.d_out.resize(b * na, 0.0);
        let (mut loss_sum, mut q_sum) = (0.0f64, 0.0f64);
        for i in 0..b {
            let a = usize::try_from(hb.actions[i]).map_err(|_| no_host())?;
            let q = q_all[i * na + a];
            let qt = &qt_all[i * na..(i + 1) * na];
            let q_next = match &hf.next_selection {
                // The value of the action the agent would choose there.
                Some((danger, scale, floor)) => {
                    let row = &danger[i * na..(i + 1) * na];
                    qt[SelectionBias::biased_choice(qt, row, *scale, *floor)]
                }
                None => qt.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            };
            let y = hb.rewards[i] + q_next * (1.0 - hb.dones[i]) * gamma;
            let d = q - y;
            let (per, dper) = match self.cfg.loss {
                Loss::Mse => (d * d, 2.0 * d),
                Loss::Huber { delta } => {
                    let delta = delta as f32;
                    if d.abs() < delta {
                        (0.5 * d * d, d)
                    } else {
                        (delta * (d.abs() - 0.5 * delta), delta * d.signum())
                    }
                }
            };
            let w = match &hf.loss_weighting {
                // Fear weights 1 + w·F, on every sample or only on negative TD errors.
                Some((fear, weight, only_over)) => {
                    let on = !*only_over || y < q;
                    1.0 + if on { weight * fear[i] } else { 0.0 }
                }
                None => 1.0,
            };
            loss_sum += f64::from(per * w);
            q_sum += f64::from(q);
            h.d_out[i * na + a] = dper * w / b as f32;
        }
        h.grad.resize(online.len(), 0.0);
        self.host_net
            .backward(online, &mut h.online, &h.d_out, &mut h.grad)
            .ok_or_else(no_host)?;
        Ok((loss_sum / b as f64, q_sum / b as f64))
    }

    /// The host backend's TD loss and gradient for a batch gathered by
    /// [`sample_batch`](Self::sample_batch) and its fear contribution.
    #[cfg(test)]
    pub(crate) fn host_loss_gradient(&mut self, bf: &BatchFear) -> (f64, f64, Vec<f32>) {
        let hf = HostFear::read(bf).expect("read fear");
        let (loss, q_mean) = self.host_gradient(&hf).expect("host gradient");
        (loss, q_mean, self.host.grad.clone())
    }

    /// libtorch's gradient of a loss with respect to the Q-network, flat.
    #[cfg(test)]
    pub(crate) fn libtorch_gradient(&self, loss: &Tensor) -> Vec<f32> {
        let g = self.optimizer.gradient(loss).expect("gradient");
        Vec::<f32>::try_from(&g).expect("vec")
    }

    /// Samples a batch without learning from it.
    #[cfg(test)]
    pub(crate) fn sample_batch(&mut self, rng: &RngHandle) -> Result<Batch, DqnError> {
        self.replay.sample(self.cfg.batch_size, rng, self.device)
    }

    #[cfg(test)]
    pub(crate) fn fear_mut(&mut self) -> Option<&mut Box<dyn FearModule>> {
        self.fear.as_mut()
    }

    /// Writes a checkpoint directory: the networks as safetensors,
    /// `training.safetensors` (Adam's moments for the Q-network and the fear
    /// network, the replay buffer's transitions and sampling order) and
    /// `agent.json` (config, counters, step counts, the fear module's state),
    /// so that [`load`](Self::load) continues training exactly where it
    /// stopped.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), DqnError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| DqnError::Io {
            op: "create checkpoint directory",
            path: dir.to_path_buf(),
            source,
        })?;
        self.online_vs.save(dir.join(ONLINE_FILE))?;
        self.target_vs.save(dir.join(TARGET_FILE))?;
        if let Some(vs) = self.fear.as_ref().and_then(|f| f.var_store()) {
            vs.save(dir.join(FEAR_FILE))?;
        }
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut moments = |prefix: &str, opt: &FlatAdam| -> Result<i32, DqnError> {
            let (m, v, steps) = opt.moments();
            tensors.push((format!("{prefix}/exp_avg"), m.f_to_device(Device::Cpu)?));
            tensors.push((format!("{prefix}/exp_avg_sq"), v.f_to_device(Device::Cpu)?));
            Ok(steps)
        };
        let adam_steps = moments("adam", &self.optimizer)?;
        let fear_adam_steps = match self.fear.as_ref().and_then(|f| f.optimizer()) {
            Some(opt) => Some(moments("fear_adam", opt)?),
            None => None,
        };
        let (replay, replay_head) = self.replay.to_tensors()?;
        tensors.extend(replay);
        Tensor::write_safetensors(&tensors, dir.join(TRAINING_FILE))?;
        let meta = CheckpointMeta {
            config: self.cfg.clone(),
            n_features: self.n_features,
            n_actions: self.n_actions,
            state: self.state.clone(),
            training: Some(TrainingMeta {
                adam_steps,
                fear_adam_steps,
                replay_head,
                fear_state: self
                    .fear
                    .as_ref()
                    .map_or(serde_json::Value::Null, |f| f.state()),
                last_fear: self.last_fear,
            }),
        };
        let path = dir.join(META_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&meta)?).map_err(|source| DqnError::Io {
            op: "write",
            path,
            source,
        })
    }

    /// Rebuilds an agent from a checkpoint directory written by [`save`](Self::save),
    /// training state included (checkpoints from before it was kept load the
    /// weights and counters only). Building the networks draws from `rng`
    /// before their weights are loaded; a caller continuing a run restores
    /// its generator afterwards.
    pub fn load(dir: impl AsRef<Path>, rng: &RngHandle) -> Result<Self, DqnError> {
        let dir = dir.as_ref();
        let path: PathBuf = dir.join(META_FILE);
        let text = std::fs::read(&path).map_err(|source| DqnError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let meta: CheckpointMeta = serde_json::from_slice(&text)?;
        let mut agent = DqnAgent::new(meta.n_features, meta.n_actions, meta.config, rng)?;
        agent.online_vs.load(dir.join(ONLINE_FILE))?;
        agent.target_vs.load(dir.join(TARGET_FILE))?;
        if let Some(vs) = agent.fear.as_mut().and_then(|f| f.var_store_mut()) {
            vs.load(dir.join(FEAR_FILE))?;
        }
        for (file, vs) in [
            (ONLINE_FILE, &agent.online_vs),
            (TARGET_FILE, &agent.target_vs),
        ] {
            for (name, t) in vs.variables() {
                if t.f_isfinite()?.f_all()?.int64_value(&[]) == 0 {
                    return Err(DqnError::InvalidConfig(format!(
                        "checkpoint {}: tensor `{name}` holds NaN or infinite values",
                        dir.join(file).display()
                    )));
                }
            }
        }
        agent.optimizer.settings.lr = meta.state.learning_rate;
        agent.state = meta.state;
        if let Some(t) = meta.training {
            agent.restore_training(dir, t)?;
        }
        Ok(agent)
    }

    /// Adam moments, replay buffer and fear state from a checkpoint.
    fn restore_training(&mut self, dir: &Path, t: TrainingMeta) -> Result<(), DqnError> {
        let device = self.device;
        let tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join(TRAINING_FILE))?
                .into_iter()
                .collect();
        let get = |k: &str| -> Result<Tensor, DqnError> {
            let t = tensors
                .get(k)
                .ok_or_else(|| DqnError::InvalidConfig(format!("checkpoint lacks {k}")))?;
            Ok(t.f_to_device(device)?)
        };
        self.optimizer.restore_moments(
            &get("adam/exp_avg")?,
            &get("adam/exp_avg_sq")?,
            t.adam_steps,
        )?;
        if let Some(steps) = t.fear_adam_steps {
            let (m, v) = (get("fear_adam/exp_avg")?, get("fear_adam/exp_avg_sq")?);
            let opt = self
                .fear
                .as_mut()
                .and_then(|f| f.optimizer_mut())
                .ok_or_else(|| {
                    DqnError::InvalidConfig(
                        "checkpoint has a fear optimiser, the agent none".into(),
                    )
                })?;
            opt.restore_moments(&m, &v, steps)?;
        }
        self.replay
            .restore_tensors(|k| tensors.get(k).map(Tensor::shallow_clone), t.replay_head)?;
        if let Some(f) = self.fear.as_mut() {
            f.restore(&t.fear_state)?;
        }
        self.last_fear = t.last_fear;
        Ok(())
    }
}
