//! From the environment's emotional context to an emotion state: a fixed
//! feature vector ([`context_features`]) and the [`EmotionalEncoder`]
//! (one small MLP per emotion, sigmoid outputs, tonic fear and joy that
//! decay across the turns of one conversation).

use emorl_core::EmotionalContext;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::params::{Linear, ParamStore};

/// The emotions of the state, in tensor column order (emorl's one
/// vocabulary, shared with the neurochemical dynamics).
pub use emorl_core::neuro::EMOTIONS;
/// Number of phasic emotions.
pub const N_EMOTIONS: usize = EMOTIONS.len();
/// Width of the conditioning vector modules read: the four phasic emotions
/// then tonic fear and tonic joy.
pub const N_CONDITIONING: usize = N_EMOTIONS + 2;
/// Names of the conditioning columns.
pub const CONDITIONING_NAMES: [&str; N_CONDITIONING] = [
    "fear",
    "curiosity",
    "anger",
    "joy",
    "tonic_fear",
    "tonic_joy",
];
/// Length of [`context_features`].
pub const N_CONTEXT_FEATURES: usize = 20;

fn proximity(d: Option<f64>) -> [f32; 2] {
    match d {
        Some(d) if d.is_finite() => [1.0, (1.0 / (1.0 + d.max(0.0))) as f32],
        _ => [0.0, 0.0],
    }
}

fn flag(b: bool) -> f32 {
    f32::from(u8::from(b))
}

fn squash(x: f64) -> f32 {
    if x.is_finite() {
        x.tanh() as f32
    } else {
        0.0
    }
}

/// A fixed-size, bounded feature vector of an emotional context
/// ([`N_CONTEXT_FEATURES`] entries, each in [-1, 1]): threat and goal
/// proximity, blocking, harm, reward, counterfactual regret and the social
/// signals of a conversation.
pub fn context_features(c: &EmotionalContext) -> Vec<f32> {
    let mut f = Vec::with_capacity(N_CONTEXT_FEATURES);
    f.extend(proximity(c.threat_distance));
    f.extend(proximity(c.goal_distance));
    f.push(flag(c.was_blocked));
    f.push(c.consecutive_blocks as f32 / (1.0 + c.consecutive_blocks as f32));
    f.push(flag(c.near_threat));
    f.push(flag(c.harmed));
    f.push(squash(c.reward));
    f.push(match &c.counterfactual {
        Some(cf) => squash(cf.foregone - cf.obtained),
        None => 0.0,
    });
    match &c.social {
        Some(s) => {
            f.push(1.0);
            f.push(squash(s.last_reward));
            f.push(flag(s.safety_flag));
            f.push(s.user_satisfaction.clamp(-1.0, 1.0) as f32);
            f.push(flag(s.repeated_query));
            f.push(s.topic_novelty.clamp(-1.0, 1.0) as f32);
            f.push(flag(s.contradiction_detected));
            f.push(squash(s.cumulative_negative));
            f.push(squash(s.cumulative_positive));
            f.push(s.failed_attempts as f32 / (1.0 + s.failed_attempts as f32));
        }
        None => f.extend([0.0; 10]),
    }
    debug_assert_eq!(f.len(), N_CONTEXT_FEATURES);
    f
}

/// An emotion state for a batch: phasic emotions `[batch, N_EMOTIONS]`
/// (columns in [`EMOTIONS`] order) and tonic fear/joy `[batch, 2]`.
#[derive(Debug)]
pub struct EmotionState {
    pub phasic: Tensor,
    pub tonic: Tensor,
    /// What the next turn starts from when it is more than the tonic
    /// state: the neurochemical source's `[batch, 6]` f64 levels and tonic
    /// ([`crate::modules::neuro`]); `None` for the encoder.
    pub carry: Option<Tensor>,
}

impl EmotionState {
    /// The neutral state for `batch` rows: every emotion 0, tonic 0. This
    /// is emorl's one definition of "neutral" (modules, the marker metric's
    /// neutral condition, `chat` and the encoder's supervision target for an
    /// emotionless context all use it).
    pub fn neutral(batch: i64, device: Device) -> Result<Self> {
        Ok(EmotionState {
            phasic: Tensor::f_zeros([batch, N_EMOTIONS as i64], (Kind::Float, device))?,
            tonic: Tensor::f_zeros([batch, 2], (Kind::Float, device))?,
            carry: None,
        })
    }

    /// Number of rows.
    pub fn batch(&self) -> i64 {
        self.phasic.size()[0]
    }

    fn column(&self, t: &Tensor, i: i64) -> Result<Tensor> {
        Ok(t.f_select(1, i)?)
    }

    pub fn fear(&self) -> Result<Tensor> {
        self.column(&self.phasic, 0)
    }
    pub fn curiosity(&self) -> Result<Tensor> {
        self.column(&self.phasic, 1)
    }
    pub fn anger(&self) -> Result<Tensor> {
        self.column(&self.phasic, 2)
    }
    pub fn joy(&self) -> Result<Tensor> {
        self.column(&self.phasic, 3)
    }
    pub fn tonic_fear(&self) -> Result<Tensor> {
        self.column(&self.tonic, 0)
    }
    pub fn tonic_joy(&self) -> Result<Tensor> {
        self.column(&self.tonic, 1)
    }

    /// `[batch, N_CONDITIONING]`: phasic emotions then tonic fear and joy.
    pub fn conditioning(&self) -> Result<Tensor> {
        Ok(Tensor::f_cat(&[&self.phasic, &self.tonic], 1)?)
    }

    /// Repeats every row `k` times (row `i` becomes rows `i*k .. i*k+k`).
    pub fn repeat_rows(&self, k: i64) -> Result<EmotionState> {
        Ok(EmotionState {
            phasic: self.phasic.f_repeat_interleave_self_int(k, 0, None)?,
            tonic: self.tonic.f_repeat_interleave_self_int(k, 0, None)?,
            carry: match &self.carry {
                Some(c) => Some(c.f_repeat_interleave_self_int(k, 0, None)?),
                None => None,
            },
        })
    }

    /// The same state with no gradient path back to what computed it.
    pub fn detach(&self) -> Result<EmotionState> {
        Ok(EmotionState {
            phasic: self.phasic.f_detach()?,
            tonic: self.tonic.f_detach()?,
            carry: self.carry.as_ref().map(Tensor::shallow_clone),
        })
    }

    /// The rows `index` (`[n]` i64) selects.
    pub fn select_rows(&self, index: &Tensor) -> Result<EmotionState> {
        Ok(EmotionState {
            phasic: self.phasic.f_index_select(0, index)?,
            tonic: self.tonic.f_index_select(0, index)?,
            carry: match &self.carry {
                Some(c) => Some(c.f_index_select(0, index)?),
                None => None,
            },
        })
    }

    /// What the next turn of the conversation starts from (the tonic
    /// state, or the neurochemical source's levels and tonic state).
    pub fn next_carry(&self) -> Tensor {
        match &self.carry {
            Some(c) => c.shallow_clone(),
            None => self.tonic.shallow_clone(),
        }
    }

    /// Row means, by [`CONDITIONING_NAMES`], then (neurochemical source)
    /// the four levels by `emorl_core::neuro::CHEMICALS`.
    pub fn means(&self) -> Result<Vec<(String, f64)>> {
        let c = self
            .conditioning()?
            .f_detach()?
            .f_mean_dim(0, false, Kind::Float)?;
        let v = Vec::<f32>::try_from(&c)?;
        let mut out: Vec<(String, f64)> = CONDITIONING_NAMES
            .iter()
            .zip(v)
            .map(|(n, x)| (n.to_string(), f64::from(x)))
            .collect();
        if let Some(carry) = &self.carry {
            // The carried state's first four columns are the levels.
            let levels = carry
                .f_narrow(1, 0, emorl_core::neuro::CHEMICALS.len() as i64)?
                .f_mean_dim(0, false, Kind::Double)?;
            let l = Vec::<f64>::try_from(&levels)?;
            out.extend(
                emorl_core::neuro::CHEMICALS
                    .iter()
                    .zip(l)
                    .map(|(n, x)| (n.to_string(), x)),
            );
        }
        Ok(out)
    }
}

/// Configuration of the [`EmotionalEncoder`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// Hidden width of each emotion's MLP.
    pub hidden: usize,
    /// Tonic decay per turn: `tonic ← decay·tonic + (1 − decay)·phasic`.
    pub tonic_decay: f64,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            hidden: 16,
            tonic_decay: 0.7,
        }
    }
}

/// Context features → four phasic emotions (one MLP each, sigmoid output),
/// plus tonic fear and joy.
#[derive(Debug)]
pub struct EmotionalEncoder {
    pub(crate) params: ParamStore,
    nets: Vec<(Linear, Linear)>,
    config: EncoderConfig,
}

impl EmotionalEncoder {
    pub fn new(config: &EncoderConfig, seed: u64, device: Device) -> Result<Self> {
        if config.hidden == 0 || !(0.0..=1.0).contains(&config.tonic_decay) {
            return Err(crate::params::invalid(
                "encoder: hidden must be > 0 and tonic_decay in [0, 1]",
            ));
        }
        let mut params = ParamStore::new(seed, "encoder", device);
        let h = config.hidden as i64;
        let nets = EMOTIONS
            .iter()
            .map(|e| {
                Ok((
                    params.linear(&format!("{e}.l1"), N_CONTEXT_FEATURES as i64, h)?,
                    params.linear(&format!("{e}.l2"), h, 1)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmotionalEncoder {
            params,
            nets,
            config: config.clone(),
        })
    }

    /// The encoder's trainable tensors.
    pub fn trainable_parameters(&self) -> Vec<Tensor> {
        self.params.trainable()
    }

    /// Where the encoder's parameters live.
    pub fn device(&self) -> Device {
        self.params
            .trainable()
            .first()
            .map_or(Device::Cpu, |t| t.device())
    }

    /// Phasic emotions `[batch, N_EMOTIONS]` of `[batch, N_CONTEXT_FEATURES]` features.
    pub fn phasic(&self, features: &Tensor) -> Result<Tensor> {
        let cols = self
            .nets
            .iter()
            .map(|(l1, l2)| l2.forward(&l1.forward(features)?.f_tanh()?)?.f_sigmoid())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::f_cat(&cols, 1)?)
    }

    /// The emotion state of `contexts`, with tonic fear/joy updated from
    /// `previous_tonic` (`None`: the start of a conversation, tonic 0).
    pub fn encode(
        &self,
        contexts: &[&EmotionalContext],
        previous_tonic: Option<&Tensor>,
    ) -> Result<EmotionState> {
        let flat: Vec<f32> = contexts.iter().flat_map(|c| context_features(c)).collect();
        let device = self.device();
        let x = Tensor::f_from_slice(&flat)?
            .f_view([contexts.len() as i64, N_CONTEXT_FEATURES as i64])?
            .f_to_device(device)?;
        let phasic = self.phasic(&x)?;
        let fear_joy = Tensor::f_stack(&[phasic.f_select(1, 0)?, phasic.f_select(1, 3)?], 1)?;
        let d = self.config.tonic_decay;
        let tonic = match previous_tonic {
            Some(t) => t.f_mul_scalar(d)?.f_add(&fear_joy.f_mul_scalar(1.0 - d)?)?,
            None => fear_joy.f_mul_scalar(1.0 - d)?,
        };
        Ok(EmotionState {
            phasic,
            tonic,
            carry: None,
        })
    }
}
