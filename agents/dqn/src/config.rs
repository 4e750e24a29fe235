//! Hyperparameters: one table, every field defaulted (CleanRL's `Args`). The
//! defaults are upstream Exp 16b's (docs/protocols/v2.md §5.2): MLP 64-64, Adam 1e-3, γ 0.99,
//! replay 10 000, batch 64, hard target copy every 100 updates, ε = 0.1, MSE.

use crate::error::DqnError;
use serde::{Deserialize, Serialize};

/// How ε changes over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EpsilonSchedule {
    /// The same ε for every episode (Exp 16b: 0.1).
    Constant { value: f64 },
    /// `start`, multiplied by `decay` after every training episode, floored at `min` (Exp 18).
    PerEpisodeDecay { start: f64, decay: f64, min: f64 },
}

impl EpsilonSchedule {
    /// ε of the first episode.
    pub fn initial(&self) -> f64 {
        match *self {
            EpsilonSchedule::Constant { value } => value,
            EpsilonSchedule::PerEpisodeDecay { start, .. } => start,
        }
    }

    /// ε after one more training episode.
    pub fn next(&self, epsilon: f64) -> f64 {
        match *self {
            EpsilonSchedule::Constant { value } => value,
            EpsilonSchedule::PerEpisodeDecay { decay, min, .. } => (epsilon * decay).max(min),
        }
    }
}

/// Per-sample TD loss (averaged over the batch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Loss {
    /// `(Q(s,a) − y)²` (upstream).
    Mse,
    /// Huber / smooth-L1 with threshold `delta` (DQN paper's error clipping).
    Huber { delta: f64 },
}

/// Where the networks live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CPU: fastest for these small networks, and bit-reproducible.
    #[default]
    Cpu,
    /// CUDA device 0; an error if there is none.
    Cuda,
    /// CUDA when available, otherwise CPU.
    Auto,
}

/// Which code computes the Q-network's forward pass, gradient and Adam step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `host` on CPU, `libtorch` elsewhere.
    #[default]
    Auto,
    /// Plain Rust on the host (`ndarray` matrix products, gradients written
    /// by hand and checked against libtorch's autograd): for the small
    /// networks of these experiments, several times faster than libtorch,
    /// whose per-call cost dominates them. CPU only.
    Host,
    /// libtorch autograd and tensor Adam (any device).
    Libtorch,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<tch::Device, DqnError> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(DqnError::CudaUnavailable),
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
        }
    }
}

/// Upstream Exp 16b `EmotionalDQNAgent` (docs/protocols/v2.md §5.3), quirks included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoupledGridConfig {
    /// Weight of fear on the loss, the learning rate and ε.
    pub fear_weight: f64,
    /// Fear is `max_fear · (1 − d / safe_distance)` inside this distance.
    pub safe_distance: f64,
    pub max_fear: f64,
    /// Above this fear, actions are sampled from `softmax(q / (1 + fear))`.
    pub softmax_threshold: f64,
}

impl Default for CoupledGridConfig {
    fn default() -> Self {
        CoupledGridConfig {
            fear_weight: 0.5,
            safe_distance: 2.0,
            max_fear: 1.0,
            softmax_threshold: 0.3,
        }
    }
}

/// Upstream Exp 18 `FearEDAgent` (docs/protocols/v2.md §6.3), quirks included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoupledCliffConfig {
    /// Loss weight `1 + fear_weight · F` and Q bonus `fear · fear_weight · bonus_scale`.
    pub fear_weight: f64,
    pub max_fear: f64,
    /// Tonic fear decays by this factor every time fear is computed (Q-18-MUTATE).
    pub tonic_decay: f64,
    /// Rewards below this are pain: the tonic level rises by `pain_increment`.
    pub pain_threshold: f64,
    pub pain_increment: f64,
    /// Phasic fear at `threat_distance ≤ 2` when not next to the threat.
    pub mid_fear: f64,
    /// Above this fear, the safe action's Q gets a bonus (Q-18-QBONUS).
    pub bonus_threshold: f64,
    pub bonus_scale: f64,
    /// Above this fear, exploration returns the safe action with probability fear (Q-18-FORCEDUP).
    pub explore_threshold: f64,
    /// The action fear pushes toward (0 = up in the cliff's action order).
    pub safe_action: usize,
}

impl Default for CoupledCliffConfig {
    fn default() -> Self {
        CoupledCliffConfig {
            fear_weight: 0.5,
            max_fear: 1.0,
            tonic_decay: 0.9,
            pain_threshold: -10.0,
            pain_increment: 0.5,
            mid_fear: 0.5,
            bonus_threshold: 0.3,
            bonus_scale: 10.0,
            explore_threshold: 0.5,
            safe_action: 0,
        }
    }
}

/// The single place the decoupled fear network's output acts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FearUse {
    /// Subtract `scale · max(Q range, range_floor) · danger(s, a)` from each Q-value
    /// before the greedy choice (acting only; TD targets stay unbiased).
    SelectionBias { scale: f64, range_floor: f64 },
    /// Append the state's fear (detached, recomputed for every sampled state) to the Q input.
    Input,
}

/// A fear network trained on its own target, separate from the Q-network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoupledFearConfig {
    /// Hidden widths of the fear network.
    pub hidden: Vec<usize>,
    pub learning_rate: f64,
    /// A transition is dangerous when it harms or ends within this distance of the threat.
    pub danger_radius: f64,
    #[serde(rename = "use")]
    pub fear_use: FearUse,
}

impl Default for DecoupledFearConfig {
    fn default() -> Self {
        DecoupledFearConfig {
            hidden: vec![32, 32],
            learning_rate: 1e-3,
            danger_radius: 1.0,
            fear_use: FearUse::SelectionBias {
                scale: 1.0,
                range_floor: 0.05,
            },
        }
    }
}

/// Which fear module, if any, joins the learner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FearConfig {
    /// Exp 16b's coupled fear on the terminal-threat grid (`type =
    /// "coupled-16b"`, upstream's experiment name, kept in configs).
    #[serde(rename = "coupled-16b")]
    CoupledGrid(CoupledGridConfig),
    CoupledCliff(CoupledCliffConfig),
    Decoupled(DecoupledFearConfig),
}

/// Every hyperparameter of a DQN agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// Hidden layer widths of the Q-network (ReLU between layers).
    pub hidden: Vec<usize>,
    /// Adam step size.
    pub learning_rate: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Discount γ.
    pub gamma: f64,
    /// Replay capacity (oldest transitions are overwritten).
    pub buffer_size: usize,
    pub batch_size: usize,
    /// Updates start once the buffer holds this many transitions (and a full batch).
    pub learning_starts: usize,
    /// One gradient step every this many environment steps.
    pub train_frequency: usize,
    /// Hard copy online → target every this many gradient steps.
    pub target_network_frequency: usize,
    pub epsilon: EpsilonSchedule,
    pub loss: Loss,
    /// Clip the global gradient L2 norm to this value.
    pub max_grad_norm: Option<f64>,
    pub device: DeviceChoice,
    /// Who computes the Q-network's update (`auto`: the host on CPU). Both
    /// are deterministic; they differ in float rounding, not in the algorithm.
    pub backend: Backend,
    pub fear: Option<FearConfig>,
}

impl Default for DqnConfig {
    fn default() -> Self {
        DqnConfig {
            hidden: vec![64, 64],
            learning_rate: 1e-3,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            gamma: 0.99,
            buffer_size: 10_000,
            batch_size: 64,
            learning_starts: 64,
            train_frequency: 1,
            target_network_frequency: 100,
            epsilon: EpsilonSchedule::Constant { value: 0.1 },
            loss: Loss::Mse,
            max_grad_norm: None,
            device: DeviceChoice::Cpu,
            backend: Backend::Auto,
            fear: None,
        }
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), DqnError> {
    if ok {
        Ok(())
    } else {
        Err(DqnError::InvalidConfig(what()))
    }
}

fn probability(name: &str, v: f64) -> Result<(), DqnError> {
    check((0.0..=1.0).contains(&v), || {
        format!("{name} = {v} must lie in [0, 1]")
    })
}

fn positive(name: &str, v: f64) -> Result<(), DqnError> {
    check(v > 0.0 && v.is_finite(), || {
        format!("{name} = {v} must be positive and finite")
    })
}

fn widths(name: &str, hidden: &[usize]) -> Result<(), DqnError> {
    check(!hidden.is_empty() && hidden.iter().all(|&h| h > 0), || {
        format!("{name} = {hidden:?} needs at least one layer, all widths > 0")
    })
}

impl DqnConfig {
    pub fn validate(&self) -> Result<(), DqnError> {
        widths("hidden", &self.hidden)?;
        positive("learning_rate", self.learning_rate)?;
        check(self.learning_rate <= 1.0, || {
            format!("learning_rate = {:?} must be at most 1", self.learning_rate)
        })?;
        check((0.0..1.0).contains(&self.adam_beta1), || {
            format!("adam_beta1 = {} must lie in [0, 1)", self.adam_beta1)
        })?;
        check((0.0..1.0).contains(&self.adam_beta2), || {
            format!("adam_beta2 = {} must lie in [0, 1)", self.adam_beta2)
        })?;
        positive("adam_eps", self.adam_eps)?;
        probability("gamma", self.gamma)?;
        check(self.batch_size > 0, || "batch_size must be > 0".into())?;
        check(self.buffer_size >= self.batch_size, || {
            format!(
                "buffer_size = {} must hold at least one batch ({})",
                self.buffer_size, self.batch_size
            )
        })?;
        check(
            !(self.backend == Backend::Host && self.device == DeviceChoice::Cuda),
            || {
                "backend = \"host\" computes on the CPU; device = \"cuda\" needs backend = \"libtorch\" or \"auto\"".into()
            },
        )?;
        check(self.train_frequency > 0, || {
            "train_frequency must be > 0".into()
        })?;
        check(self.target_network_frequency > 0, || {
            "target_network_frequency must be > 0".into()
        })?;
        match self.epsilon {
            EpsilonSchedule::Constant { value } => probability("epsilon.value", value)?,
            EpsilonSchedule::PerEpisodeDecay { start, decay, min } => {
                probability("epsilon.start", start)?;
                probability("epsilon.min", min)?;
                check(decay > 0.0 && decay <= 1.0, || {
                    format!("epsilon.decay = {decay} must lie in (0, 1]")
                })?;
            }
        }
        if let Loss::Huber { delta } = self.loss {
            positive("loss.delta", delta)?;
        }
        if let Some(m) = self.max_grad_norm {
            positive("max_grad_norm", m)?;
        }
        match &self.fear {
            None => {}
            Some(FearConfig::CoupledGrid(c)) => {
                positive("fear.safe_distance", c.safe_distance)?;
                check(c.fear_weight.is_finite() && c.max_fear.is_finite(), || {
                    "fear weights must be finite".into()
                })?;
            }
            Some(FearConfig::CoupledCliff(c)) => {
                probability("fear.tonic_decay", c.tonic_decay)?;
                check(
                    c.fear_weight.is_finite() && c.bonus_scale.is_finite(),
                    || "fear weights must be finite".into(),
                )?;
            }
            Some(FearConfig::Decoupled(c)) => {
                widths("fear.hidden", &c.hidden)?;
                positive("fear.learning_rate", c.learning_rate)?;
                check(c.danger_radius >= 0.0, || {
                    format!("fear.danger_radius = {} must be >= 0", c.danger_radius)
                })?;
                if let FearUse::SelectionBias { scale, range_floor } = c.fear_use {
                    check(scale >= 0.0 && scale.is_finite(), || {
                        format!("fear.use.scale = {scale} must be >= 0")
                    })?;
                    check(range_floor >= 0.0 && range_floor.is_finite(), || {
                        format!("fear.use.range_floor = {range_floor} must be >= 0")
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The hyperparameters as a Markdown table (CleanRL logs this as TensorBoard text).
    pub fn hyperparameter_table(&self) -> String {
        let mut rows = Vec::new();
        if let Ok(v) = serde_json::to_value(self) {
            flatten("", &v, &mut rows);
        }
        let mut s = String::from("|param|value|\n|-|-|\n");
        for (k, v) in rows {
            s.push_str(&format!("|{k}|{v}|\n"));
        }
        s
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_fear_module_roundtrips_and_rejects_unknown_keys() {
        let text = r#"
            learning_rate = 0.0005
            loss = { kind = "huber", delta = 1.0 }
            epsilon = { kind = "per-episode-decay", start = 1.0, decay = 0.995, min = 0.05 }
            [fear]
            type = "decoupled"
            danger_radius = 1.0
            use = { kind = "selection-bias", scale = 0.5, range_floor = 0.1 }
        "#;
        let cfg: DqnConfig = toml::from_str(text).expect("parse");
        assert_eq!(cfg.learning_rate, 0.0005);
        assert_eq!(cfg.batch_size, 64);
        assert!(matches!(cfg.fear, Some(FearConfig::Decoupled(ref d)) if d.hidden == vec![32, 32]));
        cfg.validate().expect("valid");
        let back: DqnConfig = toml::from_str(&toml::to_string(&cfg).expect("ser")).expect("de");
        assert_eq!(back, cfg);
        assert!(toml::from_str::<DqnConfig>("learnig_rate = 0.1").is_err());
        assert!(toml::from_str::<DqnConfig>("[fear]\ntype = \"coupled-16b\"\nbogus = 1").is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        let bad = [
            DqnConfig {
                hidden: vec![],
                ..Default::default()
            },
            DqnConfig {
                batch_size: 128,
                buffer_size: 64,
                ..Default::default()
            },
            DqnConfig {
                gamma: 1.5,
                ..Default::default()
            },
            DqnConfig {
                epsilon: EpsilonSchedule::PerEpisodeDecay {
                    start: 1.0,
                    decay: 0.0,
                    min: 0.0,
                },
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn epsilon_decay_matches_upstream_exp18() {
        let s = EpsilonSchedule::PerEpisodeDecay {
            start: 1.0,
            decay: 0.995,
            min: 0.05,
        };
        let mut e = s.initial();
        for _ in 0..500 {
            e = s.next(e);
        }
        assert!((e - 0.995f64.powi(500)).abs() < 1e-12);
        assert!((e - 0.0816).abs() < 1e-3);
        let table = DqnConfig::default().hyperparameter_table();
        assert!(table.contains("|learning_rate|0.001|"));
        assert!(table.contains("|epsilon.value|0.1|"));
    }
}
