//! The emotional modules an agent composes into the frozen model's hooks,
//! each in its own file:
//!
//! * [`emotion`]: context features, the [`emotion::EmotionalEncoder`] and [`emotion::EmotionState`];
//! * [`neuro`]: the neurochemical emotion source, an alternative to the encoder;
//! * [`prefix`]: emotion-conditioned (or static) prefix keys/values;
//! * [`gate`]: gated bottleneck adapters;
//! * [`erm`]: the emotional reward model and its logit/temperature modulators;
//! * [`steering`]: steering directions with emotion-scaled strengths;
//! * [`reft`]: emotion-conditioned low-rank interventions on the response;
//! * [`lora`]: one LoRA adapter per emotion on the attention projections, blended by the state;
//! * [`dual`]: dual-head (semantic and emotional attention) adapters mixed by a gate (seed 004).
//!
//! [`Modules`] holds the ones an agent has and is the only place that knows
//! in which order their hooks run.

pub mod dual;
pub mod emotion;
pub mod erm;
pub mod gate;
pub mod lora;
pub mod neuro;
pub mod prefix;
pub mod reft;
pub mod steering;

use emorl_core::EmotionalContext;
use emorl_lm::{Hooks, Model};
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::params::ParamStore;
use dual::DualAdapter;
use emotion::{EmotionState, EmotionalEncoder};
use erm::{erm_from_encoder, EmotionalRewardModel, ERM_EMOTIONS};
use gate::EmotionalGate;
use lora::EmotionalLora;
use neuro::NeuroSource;
use prefix::PrefixGenerator;
use reft::EmotionalReft;
use steering::SteeringVectors;

/// The blocks a module acts on: `layers` (a negative index counts from the
/// end, `-1` is the last block), or the middle block when empty; each must
/// exist in `model`.
pub(crate) fn chosen_layers(model: &Model, layers: &[i64], module: &str) -> Result<Vec<usize>> {
    let n = model.n_layers();
    if layers.is_empty() {
        return Ok(vec![n / 2]);
    }
    layers
        .iter()
        .map(|&l| {
            let resolved = if l < 0 { n as i64 + l } else { l };
            if resolved < 0 || resolved >= n as i64 {
                Err(crate::params::invalid(format!(
                    "{module}: layer {l} is outside the model's {n} layers (0..{n}, or -{n}..-1 from the end)"
                )))
            } else {
                Ok(resolved as usize)
            }
        })
        .collect()
}

/// Names of the modules as checkpoints and parameter groups know them, in
/// checkpoint order.
pub const MODULE_NAMES: [&str; 8] = [
    "encoder", "prefix", "gate", "erm", "steering", "reft", "lora", "dual",
];

/// The emotional modules of an agent (each `None` when its kind lacks it).
#[derive(Debug, Default)]
pub struct Modules {
    pub encoder: Option<EmotionalEncoder>,
    /// The neurochemical source, in place of the encoder (no parameters).
    pub neuro: Option<NeuroSource>,
    pub prefix: Option<PrefixGenerator>,
    pub gate: Option<EmotionalGate>,
    pub erm: Option<EmotionalRewardModel>,
    pub steering: Option<SteeringVectors>,
    pub reft: Option<EmotionalReft>,
    pub lora: Option<EmotionalLora>,
    pub dual: Option<DualAdapter>,
}

/// The emotion of one turn for a batch: the encoder's state and, with an
/// ERM, its six-head appraisal and tonic GRU state.
#[derive(Debug)]
pub struct TurnEmotion {
    pub state: EmotionState,
    /// `[batch, N_ERM]`.
    pub erm: Option<Tensor>,
    /// `[batch, width]`.
    pub erm_tonic: Option<Tensor>,
    /// `[batch, width + N_CONDITIONING]`: the ERM's input (for the feedback step).
    pub erm_input: Option<Tensor>,
}

impl TurnEmotion {
    /// The same emotion as a constant input: no gradient reaches the
    /// encoder or the ERM's appraisal through it (the modules that read it
    /// still learn).
    pub fn detach(&self) -> Result<TurnEmotion> {
        let d = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match t {
                Some(t) => Some(t.f_detach()?),
                None => None,
            })
        };
        Ok(TurnEmotion {
            state: self.state.detach()?,
            erm: d(&self.erm)?,
            erm_tonic: d(&self.erm_tonic)?,
            erm_input: d(&self.erm_input)?,
        })
    }

    /// Repeats every row `k` times.
    pub fn repeat_rows(&self, k: i64) -> Result<TurnEmotion> {
        let rep = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match t {
                Some(t) => Some(t.f_repeat_interleave_self_int(k, 0, None)?),
                None => None,
            })
        };
        Ok(TurnEmotion {
            state: self.state.repeat_rows(k)?,
            erm: rep(&self.erm)?,
            erm_tonic: rep(&self.erm_tonic)?,
            erm_input: rep(&self.erm_input)?,
        })
    }

    /// The rows `index` (`[n]` i64) selects.
    pub fn select_rows(&self, index: &Tensor) -> Result<TurnEmotion> {
        let sel = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match t {
                Some(t) => Some(t.f_index_select(0, index)?),
                None => None,
            })
        };
        Ok(TurnEmotion {
            state: self.state.select_rows(index)?,
            erm: sel(&self.erm)?,
            erm_tonic: sel(&self.erm_tonic)?,
            erm_input: sel(&self.erm_input)?,
        })
    }

    /// Batch means by name: the encoder's six conditioning columns, then
    /// the ERM heads as `erm_<name>`.
    pub fn means(&self) -> Result<Vec<(String, f64)>> {
        let mut out = self.state.means()?;
        if let Some(e) = &self.erm {
            let m = Vec::<f32>::try_from(&e.f_detach()?.f_mean_dim(0, false, Kind::Float)?)?;
            out.extend(
                ERM_EMOTIONS
                    .iter()
                    .zip(m)
                    .map(|(n, v)| (format!("erm_{n}"), f64::from(v))),
            );
        }
        Ok(out)
    }
}

impl Modules {
    /// `(module name, parameters)`, in checkpoint order.
    pub fn stores(&self) -> Vec<(&'static str, &ParamStore)> {
        let mut v: Vec<(&'static str, &ParamStore)> = Vec::new();
        if let Some(m) = &self.encoder {
            v.push(("encoder", &m.params));
        }
        if let Some(m) = &self.prefix {
            v.push(("prefix", &m.params));
        }
        if let Some(m) = &self.gate {
            v.push(("gate", &m.params));
        }
        if let Some(m) = &self.erm {
            v.push(("erm", &m.params));
        }
        if let Some(m) = &self.steering {
            v.push(("steering", &m.params));
        }
        if let Some(m) = &self.reft {
            v.push(("reft", &m.params));
        }
        if let Some(m) = &self.lora {
            v.push(("lora", &m.params));
        }
        if let Some(m) = &self.dual {
            v.push(("dual", &m.params));
        }
        v
    }

    /// Every trainable module tensor (what the optimiser sees).
    pub fn trainable(&self) -> Vec<Tensor> {
        self.stores()
            .iter()
            .flat_map(|(_, s)| s.trainable())
            .collect()
    }

    /// Composes the modules into one set of hooks for `emotion` (the
    /// tensors keep their autograd graph, so gradients reach the modules).
    /// `response_start` is the column where the response begins (see
    /// [`emorl_lm::hooks`]): [`emorl_lm::response_start`] of the prompts for
    /// generation, the packed prompt width for a pass over prompt and
    /// response. Steering acts from there on.
    pub fn hooks(&self, emotion: &TurnEmotion, response_start: usize) -> Result<Hooks<'static>> {
        self.attach(Hooks::new(), emotion, response_start)
    }

    /// Appends the modules' hooks for `emotion` to `hooks` (after whatever
    /// `hooks` already holds, e.g. a logits processor that must run first).
    pub fn attach<'a>(
        &self,
        hooks: Hooks<'a>,
        emotion: &TurnEmotion,
        response_start: usize,
    ) -> Result<Hooks<'a>> {
        let mut h = self.attach_hidden(hooks, emotion, response_start)?;
        if let Some(f) = self.logits_processor(emotion)? {
            h = h.with_logits_fn(f);
        }
        Ok(h)
    }

    /// Appends only the hooks that act on hidden states (prefix, steering,
    /// gate, ReFT), leaving the logits processing to the caller (see
    /// [`Modules::logits_processor`]).
    pub fn attach_hidden<'a>(
        &self,
        hooks: Hooks<'a>,
        emotion: &TurnEmotion,
        response_start: usize,
    ) -> Result<Hooks<'a>> {
        let mut h = hooks;
        if let Some(p) = &self.prefix {
            h = p.attach(h, &emotion.state)?;
        }
        if let Some(s) = &self.steering {
            h = s.attach(h, &emotion.state, response_start)?;
        }
        if let Some(g) = &self.gate {
            h = g.attach(h, &emotion.state)?;
        }
        if let Some(r) = &self.reft {
            h = r.attach(h, &emotion.state, response_start)?;
        }
        if let Some(l) = &self.lora {
            h = l.attach(h, &emotion.state)?;
        }
        if let Some(d) = &self.dual {
            h = d.attach(h, &emotion.state)?;
        }
        Ok(h)
    }

    /// The modules' logits processing for `emotion` (the ERM's bias and
    /// temperature; `None` without an ERM), for `[batch, vocab]` or
    /// `[batch, seq, vocab]` logits.
    pub fn logits_processor(
        &self,
        emotion: &TurnEmotion,
    ) -> Result<Option<impl Fn(&Tensor) -> emorl_lm::Result<Tensor> + 'static>> {
        match &self.erm {
            Some(erm) => {
                let e = match &emotion.erm {
                    Some(e) => e.shallow_clone(),
                    None => erm_from_encoder(&emotion.state.phasic)?,
                };
                Ok(Some(erm.logits_fn(&e)?))
            }
            None => Ok(None),
        }
    }

    /// Whether the modules change only the logits (no prefix, steering,
    /// gate or ReFT): the frozen model's hidden states and raw logits then do not
    /// depend on any trainable parameter.
    pub fn logits_only(&self) -> bool {
        self.prefix.is_none()
            && self.steering.is_none()
            && self.gate.is_none()
            && self.reft.is_none()
            && self.lora.is_none()
            && self.dual.is_none()
    }

    /// The modules' logits processing for `emotion` applied to raw model
    /// logits (`[batch, vocab]` or `[batch, seq, vocab]`): what the hooks of
    /// [`Modules::hooks`] do to the logits.
    pub fn process_logits(&self, emotion: &TurnEmotion, logits: &Tensor) -> Result<Tensor> {
        match self.logits_processor(emotion)? {
            Some(f) => Ok(f(logits)?),
            None => Ok(logits.shallow_clone()),
        }
    }

    /// The emotion state of `contexts` from the agent's source — the
    /// neurochemical dynamics or the encoder — given what the previous turn
    /// carried (`None` at a conversation's start); `None` for an agent
    /// without a source.
    pub fn encode_state(
        &self,
        contexts: &[&EmotionalContext],
        carry: Option<&Tensor>,
    ) -> Result<Option<EmotionState>> {
        Ok(match (&self.neuro, &self.encoder) {
            (Some(n), _) => Some(n.encode(contexts, carry)?),
            (None, Some(enc)) => Some(enc.encode(contexts, carry)?),
            (None, None) => None,
        })
    }

    /// One row of what a conversation's start carries, for batches that mix
    /// first and later turns (`None` without a source).
    pub fn fresh_carry(&self, device: tch::Device) -> Result<Option<Tensor>> {
        Ok(match (&self.neuro, &self.encoder) {
            (Some(n), _) => Some(n.start_carry()?),
            (None, Some(_)) => Some(Tensor::f_zeros([1, 2], (Kind::Float, device))?),
            (None, None) => None,
        })
    }

    /// The emotion of a batch of prompts: the source over `contexts` (with
    /// `carry` from the previous turn, see [`EmotionState::next_carry`]),
    /// and the ERM over the prompts' read-out (`tokens`/`mask`, left-padded;
    /// `hidden`: a read-out already computed, `[batch, seq, hidden]`, whose
    /// positions `mask` selects).
    #[allow(clippy::too_many_arguments)]
    pub fn emotion(
        &self,
        model: &mut Model,
        contexts: &[&EmotionalContext],
        carry: Option<&Tensor>,
        erm_tonic: Option<&Tensor>,
        tokens: &Tensor,
        mask: &Tensor,
        hidden: Option<&Tensor>,
    ) -> Result<TurnEmotion> {
        let b = contexts.len() as i64;
        let state = match self.encode_state(contexts, carry)? {
            Some(s) => s,
            None => EmotionState::neutral(b, model.device())?,
        };
        let (erm, erm_tonic, erm_input) = match &self.erm {
            Some(erm) => {
                let h = match hidden {
                    Some(h) => h.shallow_clone(),
                    None => erm.read_hidden(model, tokens, mask)?,
                };
                let pooled = erm.pool(&h, mask)?;
                let out = erm.appraise(&pooled, &state.conditioning()?, erm_tonic)?;
                (Some(out.emotions), Some(out.tonic), Some(out.input))
            }
            None => (None, None, None),
        };
        Ok(TurnEmotion {
            state,
            erm,
            erm_tonic,
            erm_input,
        })
    }
}
