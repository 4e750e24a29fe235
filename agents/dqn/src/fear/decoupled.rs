//! Decoupled fear (the remedies of docs/protocols/v2.md §6.7): a small network of its own
//! predicts, per action, the probability that the next step is dangerous
//! (it harms, or ends within `danger_radius` of the threat), trained with BCE
//! on facts stored with each transition. Its output reaches the Q-learner as
//! one of two things — a bounded selection bias scaled to the current Q range
//! (applied where the agent acts and where the TD target picks the next
//! state's action, so that Q values the policy that acts), or a detached
//! input recomputed for every sampled state — so no gradient crosses between
//! the two networks, nothing stale is replayed, and no state mutates during
//! a batch.

use super::{fear_tensors, BatchFear, FearModule, SelectionBias, StateFear};
use crate::config::{DecoupledFearConfig, FearUse};
use crate::error::DqnError;
use crate::flat_adam::{AdamSettings, FlatAdam};
use crate::host_net::{HostMlp, Tape};
use crate::network::Mlp;
use crate::replay::{Batch, StoredContext};
use emorl_core::{EmotionalContext, RngHandle};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// The fear network's target for one transition.
pub fn danger_label(c: &StoredContext, danger_radius: f64) -> f32 {
    f32::from(u8::from(c.harmed || c.threat_distance <= danger_radius))
}

pub struct DecoupledFear {
    cfg: DecoupledFearConfig,
    n_features: usize,
    device: Device,
    vs: nn::VarStore,
    net: Mlp,
    opt: FlatAdam,
    /// Per-action danger of the state last appraised.
    danger: Vec<f32>,
    input_buf: Vec<f32>,
    /// The network computed on the host (forward, BCE gradient, Adam)
    /// instead of through libtorch, when the learner's backend is the host.
    host: Option<HostFearNet>,
}

#[derive(Debug)]
struct HostFearNet {
    net: HostMlp,
    tape: Tape,
    d_out: Vec<f32>,
    grad: Vec<f32>,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl std::fmt::Debug for DecoupledFear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoupledFear")
            .field("cfg", &self.cfg)
            .field("danger", &self.danger)
            .finish_non_exhaustive()
    }
}

impl DecoupledFear {
    pub fn new(
        cfg: DecoupledFearConfig,
        n_features: usize,
        n_actions: usize,
        device: Device,
        host: bool,
        rng: &RngHandle,
    ) -> Result<Self, DqnError> {
        let vs = nn::VarStore::new(device);
        let net = Mlp::new(
            &(vs.root() / "fear"),
            n_features,
            &cfg.hidden,
            n_actions,
            rng,
        )?;
        let opt = FlatAdam::new(&vs, AdamSettings::with_lr(cfg.learning_rate))?;
        let host = (host && opt.params().host().is_some()).then(|| HostFearNet {
            net: HostMlp::new(net.sizes().to_vec()),
            tape: Tape::default(),
            d_out: Vec::new(),
            grad: Vec::new(),
        });
        Ok(DecoupledFear {
            host,
            cfg,
            n_features,
            device,
            vs,
            net,
            opt,
            danger: vec![0.0; n_actions],
            input_buf: Vec::with_capacity(n_features),
        })
    }

    /// Per-action danger probabilities `[B, n_actions]`, outside autograd.
    pub fn danger(&self, states: &Tensor) -> Result<Tensor, DqnError> {
        tch::no_grad(|| Ok(self.net.forward(states)?.f_sigmoid()?))
    }

    /// Logits of `rows` host states on the host network, left in its tape;
    /// `None` without a host network.
    fn host_forward(&mut self, states: &[f32], rows: usize) -> Option<&[f32]> {
        let h = self.host.as_mut()?;
        let params = self.opt.params().host()?;
        h.net.forward(params, states, rows, &mut h.tape)?;
        Some(h.tape.output())
    }

    /// Per-action danger of host states, `[rows, n_actions]`, on the host.
    fn host_danger(&mut self, states: &[f32], rows: usize) -> Option<Vec<f32>> {
        Some(
            self.host_forward(states, rows)?
                .iter()
                .map(|&z| sigmoid(z))
                .collect(),
        )
    }

    /// One BCE step on the host: mean over the batch of
    /// `BCE(sigmoid(logit(s, a)), label)`, libtorch's stable form, its
    /// gradient `(sigmoid(z) − y) / B` at the taken actions, then Adam.
    fn host_train(&mut self, batch: &Batch) -> Option<f64> {
        let rows = batch.len();
        let na = self.danger.len();
        let radius = self.cfg.danger_radius;
        self.host_forward(&batch.host_states, rows)?;
        let h = self.host.as_mut()?;
        let z_all = h.tape.output();
        h.d_out.clear();
        h.d_out.resize(rows * na, 0.0);
        let mut loss = 0.0f64;
        for (i, (c, &a)) in batch.contexts.iter().zip(&batch.host_actions).enumerate() {
            let a = usize::try_from(a).ok()?;
            let z = z_all[i * na + a];
            let y = danger_label(c, radius);
            loss += f64::from(z.max(0.0) - z * y + (-z.abs()).exp().ln_1p());
            h.d_out[i * na + a] = (sigmoid(z) - y) / rows as f32;
        }
        let params = self.opt.params().host()?;
        h.grad.resize(params.len(), 0.0);
        h.net.backward(params, &mut h.tape, &h.d_out, &mut h.grad)?;
        self.opt
            .host_step(&h.grad, None)
            .then_some(loss / rows as f64)
    }

    /// State fear `max_a danger(s, a)` as a `[B, 1]` column, outside autograd.
    fn state_fear(&self, states: &Tensor) -> Result<Tensor, DqnError> {
        Ok(self.danger(states)?.f_amax([1i64].as_slice(), true)?)
    }

    /// Danger of the last appraised state, per action.
    pub fn last_danger(&self) -> &[f32] {
        &self.danger
    }
}

impl FearModule for DecoupledFear {
    fn name(&self) -> &'static str {
        "fear-decoupled"
    }

    fn q_inputs(&self) -> usize {
        usize::from(self.cfg.fear_use == FearUse::Input)
    }

    fn appraise(
        &mut self,
        features: &[f32],
        _ctx: &EmotionalContext,
    ) -> Result<StateFear, DqnError> {
        if features.len() != self.n_features {
            return Err(DqnError::FeatureLength {
                expected: self.n_features,
                got: features.len(),
            });
        }
        self.input_buf.clear();
        self.input_buf.extend_from_slice(features);
        let input = std::mem::take(&mut self.input_buf);
        let host = self.host_danger(&input, 1);
        self.input_buf = input;
        if let Some(d) = host {
            self.danger = d;
            let level = self.danger.iter().fold(0.0f32, |m, &x| m.max(x));
            return Ok(StateFear {
                level: level as f64,
                q_input: (self.cfg.fear_use == FearUse::Input).then_some(level),
            });
        }
        let x = Tensor::f_from_slice(&self.input_buf)?
            .f_to_device(self.device)?
            .f_view([1, self.n_features as i64])?;
        let d = self.danger(&x)?.f_to_device(Device::Cpu)?.f_view([-1])?;
        self.danger = Vec::<f32>::try_from(&d)?;
        let level = self.danger.iter().fold(0.0f32, |m, &x| m.max(x));
        Ok(StateFear {
            level: level as f64,
            q_input: (self.cfg.fear_use == FearUse::Input).then_some(level),
        })
    }

    fn select(&mut self, _fear: &StateFear, q: &mut [f32], _rng: &RngHandle) -> Option<usize> {
        if let FearUse::SelectionBias { scale, range_floor } = self.cfg.fear_use {
            SelectionBias::apply_host(q, &self.danger, scale as f32, range_floor as f32);
        }
        None
    }

    fn prepare_batch(&mut self, batch: &Batch) -> Result<BatchFear, DqnError> {
        let labels: Vec<f32> = batch
            .contexts
            .iter()
            .map(|c| danger_label(c, self.cfg.danger_radius))
            .collect();
        let mean = labels.iter().map(|&x| x as f64).sum::<f64>() / labels.len().max(1) as f64;
        if let FearUse::SelectionBias { scale, range_floor } = self.cfg.fear_use {
            let danger = match self.host_danger(&batch.host_next_states, batch.len()) {
                Some(d) => Tensor::f_from_slice(&d)?
                    .f_view([batch.len() as i64, -1])?
                    .f_to_device(self.device)?,
                None => self.danger(&batch.next_states)?,
            };
            return Ok(BatchFear {
                mean,
                next_selection: Some(SelectionBias {
                    danger,
                    scale,
                    range_floor,
                }),
                ..Default::default()
            });
        }
        if self.cfg.fear_use != FearUse::Input {
            return Ok(BatchFear {
                mean,
                ..Default::default()
            });
        }
        // Fresh fear for each sampled state and next state, from the current network.
        let fs = self.state_fear(&batch.states)?;
        let fs2 = self.state_fear(&batch.next_states)?;
        let mean = fs.f_mean(Kind::Double)?.f_double_value(&[])?;
        Ok(BatchFear {
            state_input: Some(fs),
            next_state_input: Some(fs2),
            loss_weighting: None,
            lr_factor: None,
            mean,
            next_selection: None,
        })
    }

    fn fear_loss(&self, batch: &Batch) -> Result<Option<Tensor>, DqnError> {
        let labels: Vec<f32> = batch
            .contexts
            .iter()
            .map(|c| danger_label(c, self.cfg.danger_radius))
            .collect();
        let (_, target) = fear_tensors(&labels, self.device)?;
        let logits = self
            .net
            .forward(&batch.states)?
            .f_gather(1, &batch.actions, false)?
            .f_view([-1])?;
        let loss = logits.f_binary_cross_entropy_with_logits::<Tensor>(
            &target,
            None,
            None,
            Reduction::Mean,
        )?;
        Ok(Some(loss))
    }

    fn train(&mut self, batch: &Batch) -> Result<Option<f64>, DqnError> {
        if self.host.is_some() {
            return match self.host_train(batch) {
                Some(loss) => Ok(Some(loss)),
                None => Err(DqnError::InvalidConfig(
                    "fear network: host training needs its parameters in CPU memory".into(),
                )),
            };
        }
        let Some(loss) = self.fear_loss(batch)? else {
            return Ok(None);
        };
        let grad = self.opt.gradient(&loss)?;
        self.opt.step(&grad, None)?;
        Ok(Some(loss.f_double_value(&[])?))
    }

    fn var_store(&self) -> Option<&nn::VarStore> {
        Some(&self.vs)
    }

    fn var_store_mut(&mut self) -> Option<&mut nn::VarStore> {
        Some(&mut self.vs)
    }

    fn optimizer(&self) -> Option<&FlatAdam> {
        Some(&self.opt)
    }

    fn optimizer_mut(&mut self) -> Option<&mut FlatAdam> {
        Some(&mut self.opt)
    }
}
