//! Experience replay: a circular buffer of transitions, sampled uniformly
//! without replacement.

use crate::error::DqnError;
use emorl_core::{EmotionalContext, RngHandle};
use tch::{Device, Kind, Tensor};

/// The part of a step's emotional context kept with each transition: what
/// fear modules need to label or appraise it later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredContext {
    /// Distance to the threat after the step (+∞ when the task has none).
    pub threat_distance: f64,
    pub near_threat: bool,
    pub harmed: bool,
    pub reward: f64,
}

impl From<&EmotionalContext> for StoredContext {
    fn from(c: &EmotionalContext) -> Self {
        StoredContext {
            threat_distance: c.threat_distance.unwrap_or(f64::INFINITY),
            near_threat: c.near_threat,
            harmed: c.harmed,
            reward: c.reward,
        }
    }
}

/// A sampled minibatch, as tensors on the learner's device.
#[derive(Debug)]
pub struct Batch {
    /// `[B, n_features]`
    pub states: Tensor,
    /// `[B, 1]` (int64, for `gather`)
    pub actions: Tensor,
    /// `[B]`
    pub rewards: Tensor,
    /// `[B, n_features]`
    pub next_states: Tensor,
    /// `[B]`, 1.0 where the episode terminated.
    pub dones: Tensor,
    /// Contexts of the next states, in sample order.
    pub contexts: Vec<StoredContext>,
    /// The same states, next states and actions in host memory (row-major),
    /// for modules that compute on the host.
    pub host_states: Vec<f32>,
    pub host_next_states: Vec<f32>,
    pub host_actions: Vec<i64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }
}

#[derive(Debug)]
pub struct ReplayBuffer {
    capacity: usize,
    n_features: usize,
    states: Vec<f32>,
    next_states: Vec<f32>,
    actions: Vec<i64>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
    contexts: Vec<StoredContext>,
    /// Next slot to write once full.
    head: usize,
    /// A permutation of `0..len`, partially reshuffled by every sample.
    order: Vec<usize>,
    // Gather buffers reused across samples.
    s_buf: Vec<f32>,
    s2_buf: Vec<f32>,
    a_buf: Vec<i64>,
    r_buf: Vec<f32>,
    d_buf: Vec<f32>,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, n_features: usize) -> Self {
        ReplayBuffer {
            capacity,
            n_features,
            states: Vec::with_capacity(capacity * n_features),
            next_states: Vec::with_capacity(capacity * n_features),
            actions: Vec::with_capacity(capacity),
            rewards: Vec::with_capacity(capacity),
            dones: Vec::with_capacity(capacity),
            contexts: Vec::with_capacity(capacity),
            head: 0,
            order: Vec::with_capacity(capacity),
            s_buf: Vec::new(),
            s2_buf: Vec::new(),
            a_buf: Vec::new(),
            r_buf: Vec::new(),
            d_buf: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Stores a transition, overwriting the oldest once full. Feature lengths
    /// are checked by the caller.
    pub fn push(
        &mut self,
        state: &[f32],
        action: usize,
        reward: f64,
        next_state: &[f32],
        done: bool,
        context: StoredContext,
    ) {
        let n = self.n_features;
        if self.len() < self.capacity {
            self.states.extend_from_slice(state);
            self.next_states.extend_from_slice(next_state);
            self.actions.push(action as i64);
            self.rewards.push(reward as f32);
            self.dones.push(f32::from(u8::from(done)));
            self.contexts.push(context);
            self.order.push(self.order.len());
        } else {
            let i = self.head;
            self.states[i * n..(i + 1) * n].copy_from_slice(state);
            self.next_states[i * n..(i + 1) * n].copy_from_slice(next_state);
            self.actions[i] = action as i64;
            self.rewards[i] = reward as f32;
            self.dones[i] = f32::from(u8::from(done));
            self.contexts[i] = context;
            self.head = (self.head + 1) % self.capacity;
        }
    }

    /// The stored transitions and sampling order as named tensors, plus the
    /// write position, for checkpoints (nothing when empty).
    pub fn to_tensors(&self) -> Result<(Vec<(String, Tensor)>, usize), DqnError> {
        if self.is_empty() {
            return Ok((Vec::new(), self.head));
        }
        let n = self.n_features as i64;
        let len = self.len() as i64;
        let ctx = &self.contexts;
        let col_f64 = |f: fn(&StoredContext) -> f64| -> Result<Tensor, DqnError> {
            Ok(Tensor::f_from_slice(
                &ctx.iter().map(f).collect::<Vec<f64>>(),
            )?)
        };
        let col_u8 = |f: fn(&StoredContext) -> bool| -> Result<Tensor, DqnError> {
            Ok(Tensor::f_from_slice(
                &ctx.iter().map(|c| u8::from(f(c))).collect::<Vec<u8>>(),
            )?)
        };
        let order: Vec<i64> = self.order.iter().map(|&i| i as i64).collect();
        let tensors = vec![
            (
                "states",
                Tensor::f_from_slice(&self.states)?.f_view([len, n])?,
            ),
            (
                "next_states",
                Tensor::f_from_slice(&self.next_states)?.f_view([len, n])?,
            ),
            ("actions", Tensor::f_from_slice(&self.actions)?),
            ("rewards", Tensor::f_from_slice(&self.rewards)?),
            ("dones", Tensor::f_from_slice(&self.dones)?),
            ("threat_distance", col_f64(|c| c.threat_distance)?),
            ("near_threat", col_u8(|c| c.near_threat)?),
            ("harmed", col_u8(|c| c.harmed)?),
            ("context_reward", col_f64(|c| c.reward)?),
            ("order", Tensor::f_from_slice(&order)?),
        ];
        Ok((
            tensors
                .into_iter()
                .map(|(k, t)| (format!("replay/{k}"), t))
                .collect(),
            self.head,
        ))
    }

    /// Refills an empty buffer from [`to_tensors`](Self::to_tensors)' output
    /// (`get` looks a name up; no tensors means an empty buffer).
    pub fn restore_tensors(
        &mut self,
        get: impl Fn(&str) -> Option<Tensor>,
        head: usize,
    ) -> Result<(), DqnError> {
        let Some(states) = get("replay/states") else {
            return Ok(());
        };
        let need = |k: &str| {
            get(&format!("replay/{k}"))
                .ok_or_else(|| DqnError::InvalidConfig(format!("checkpoint lacks replay/{k}")))
        };
        let flat_f32 = |t: Tensor| -> Result<Vec<f32>, DqnError> {
            Ok(Vec::<f32>::try_from(&t.f_reshape([-1])?)?)
        };
        let states = flat_f32(states)?;
        let next_states = flat_f32(need("next_states")?)?;
        let actions = Vec::<i64>::try_from(&need("actions")?)?;
        let rewards = flat_f32(need("rewards")?)?;
        let dones = flat_f32(need("dones")?)?;
        let threat = Vec::<f64>::try_from(&need("threat_distance")?)?;
        let near = Vec::<u8>::try_from(&need("near_threat")?)?;
        let harmed = Vec::<u8>::try_from(&need("harmed")?)?;
        let reward = Vec::<f64>::try_from(&need("context_reward")?)?;
        let order = Vec::<i64>::try_from(&need("order")?)?;
        let len = actions.len();
        let fits = len <= self.capacity
            && states.len() == len * self.n_features
            && next_states.len() == states.len()
            && [rewards.len(), dones.len(), threat.len(), near.len()]
                .iter()
                .chain(&[harmed.len(), reward.len(), order.len()])
                .all(|&l| l == len)
            && order.iter().all(|&i| i >= 0 && (i as usize) < len)
            && (head < self.capacity.max(1));
        if !fits {
            return Err(DqnError::InvalidConfig(format!(
                "checkpointed replay buffer ({len} transitions) does not fit a buffer of {} x {} features",
                self.capacity, self.n_features
            )));
        }
        self.states = states;
        self.next_states = next_states;
        self.actions = actions;
        self.rewards = rewards;
        self.dones = dones;
        self.contexts = (0..len)
            .map(|i| StoredContext {
                threat_distance: threat[i],
                near_threat: near[i] != 0,
                harmed: harmed[i] != 0,
                reward: reward[i],
            })
            .collect();
        self.order = order.into_iter().map(|i| i as usize).collect();
        self.head = head;
        Ok(())
    }

    /// `k` distinct indices, uniformly: a partial Fisher–Yates over a kept
    /// permutation (any permutation works as a start, so it is never reset).
    pub fn sample_indices(&mut self, k: usize, rng: &RngHandle) -> Vec<usize> {
        let n = self.order.len();
        let k = k.min(n);
        rng.with(|r| {
            for i in 0..k {
                let j = i + r.bounded((n - 1 - i) as u64) as usize;
                self.order.swap(i, j);
            }
        });
        self.order[..k].to_vec()
    }

    /// Samples `k` transitions as tensors on `device`.
    pub fn sample(&mut self, k: usize, rng: &RngHandle, device: Device) -> Result<Batch, DqnError> {
        let idx = self.sample_indices(k, rng);
        self.gather(&idx, device)
    }

    /// The transitions at `idx`, in that order, as tensors on `device`.
    pub fn gather(&mut self, idx: &[usize], device: Device) -> Result<Batch, DqnError> {
        let contexts = self.gather_host(idx);
        let (n, b) = (self.n_features, idx.len());
        let to = |t: Tensor| -> Result<Tensor, DqnError> {
            Ok(if device == Device::Cpu {
                t
            } else {
                t.f_to_device(device)?
            })
        };
        let shape = [b as i64, n as i64];
        Ok(Batch {
            states: to(Tensor::f_from_slice(&self.s_buf)?.f_view(shape)?)?,
            actions: to(Tensor::f_from_slice(&self.a_buf)?.f_view([b as i64, 1])?)?,
            rewards: to(Tensor::f_from_slice(&self.r_buf)?)?,
            next_states: to(Tensor::f_from_slice(&self.s2_buf)?.f_view(shape)?)?,
            dones: to(Tensor::f_from_slice(&self.d_buf)?)?,
            contexts,
            host_states: self.s_buf.clone(),
            host_next_states: self.s2_buf.clone(),
            host_actions: self.a_buf.clone(),
        })
    }

    /// Copies the transitions at `idx` into the gather buffers that
    /// [`host_batch`](Self::host_batch) reads; returns their contexts.
    pub fn gather_host(&mut self, idx: &[usize]) -> Vec<StoredContext> {
        let n = self.n_features;
        self.s_buf.clear();
        self.s2_buf.clear();
        self.a_buf.clear();
        self.r_buf.clear();
        self.d_buf.clear();
        let mut contexts = Vec::with_capacity(idx.len());
        for &i in idx {
            self.s_buf
                .extend_from_slice(&self.states[i * n..(i + 1) * n]);
            self.s2_buf
                .extend_from_slice(&self.next_states[i * n..(i + 1) * n]);
            self.a_buf.push(self.actions[i]);
            self.r_buf.push(self.rewards[i]);
            self.d_buf.push(self.dones[i]);
            contexts.push(self.contexts[i]);
        }
        contexts
    }

    /// The batch last gathered, as host slices.
    pub fn host_batch(&self) -> HostBatch<'_> {
        HostBatch {
            states: &self.s_buf,
            actions: &self.a_buf,
            rewards: &self.r_buf,
            next_states: &self.s2_buf,
            dones: &self.d_buf,
        }
    }
}

/// A gathered minibatch in host memory (row-major), as
/// [`ReplayBuffer::host_batch`] lends it.
#[derive(Clone, Copy, Debug)]
pub struct HostBatch<'a> {
    /// `[B, n_features]`
    pub states: &'a [f32],
    pub actions: &'a [i64],
    pub rewards: &'a [f32],
    pub next_states: &'a [f32],
    /// 1.0 where the episode terminated.
    pub dones: &'a [f32],
}

/// `[B, n]` float tensor from rows of equal length (tests and tools).
pub fn rows_to_tensor(rows: &[Vec<f32>]) -> Result<Tensor, DqnError> {
    let n = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::f_from_slice(&flat)?
        .f_view([rows.len() as i64, n as i64])?
        .f_to_kind(Kind::Float)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    fn ctx() -> StoredContext {
        StoredContext::from(&EmotionalContext::default())
    }

    #[test]
    fn overwrites_oldest_when_full() {
        let mut rb = ReplayBuffer::new(3, 1);
        for i in 0..5 {
            rb.push(&[i as f32], i, i as f64, &[i as f32 + 0.5], i == 4, ctx());
        }
        assert_eq!(rb.len(), 3);
        let b = rb.gather(&[0, 1, 2], Device::Cpu).expect("gather");
        let s: Vec<f32> = Vec::try_from(b.states.view(-1)).expect("vec");
        // Slots 0 and 1 were overwritten by transitions 3 and 4.
        assert_eq!(s, vec![3.0, 4.0, 2.0]);
        let d: Vec<f32> = Vec::try_from(&b.dones).expect("vec");
        assert_eq!(d, vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn samples_are_distinct_and_cover_the_buffer_uniformly() {
        let mut rb = ReplayBuffer::new(100, 1);
        for i in 0..100 {
            rb.push(&[0.0], 0, i as f64, &[0.0], false, ctx());
        }
        let rng = RngHandle::new(RngKind::Fast, 1);
        let mut counts = [0usize; 100];
        for _ in 0..2000 {
            let mut idx = rb.sample_indices(64, &rng);
            for &i in &idx {
                counts[i] += 1;
            }
            idx.sort_unstable();
            idx.dedup();
            assert_eq!(idx.len(), 64);
        }
        // Each index is drawn with probability 0.64: 1280 expected per index.
        let (lo, hi) = (counts.iter().min(), counts.iter().max());
        assert!(lo > Some(&1150) && hi < Some(&1410), "{lo:?} {hi:?}");
    }
}
