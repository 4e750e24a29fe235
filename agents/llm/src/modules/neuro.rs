//! The neurochemical emotion source (seed 003): instead of the learned
//! [`super::emotion::EmotionalEncoder`], each conversation carries the four
//! neurochemical levels of `emorl_core::neuro`, advanced every turn by the
//! stimulus read from the turn's emotional context
//! ([`Stimulus::from_context`]) for `turn_dt` time units; the phasic
//! emotions are the levels' emotions ([`Neurochemistry::emotions`]) and the
//! tonic fear/joy follow them with the encoder's decay rule. Nothing here is
//! trained: the dynamics are the library's, computed in f64 on the host.
//!
//! Between turns the state travels as one `[batch, 6]` f64 tensor: the
//! four levels, then tonic fear and joy ([`NeuroSource::carry`]).

use emorl_core::neuro::{NeuroConfig, Neurochemistry, Stimulus};
use emorl_core::EmotionalContext;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::emotion::{EmotionState, N_EMOTIONS};
use crate::error::Result;
use crate::params::invalid;

/// Where an agent's emotion state comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionSource {
    /// The learned [`super::emotion::EmotionalEncoder`] (supervised on labelled contexts).
    #[default]
    Encoder,
    /// The neurochemical dynamics of `emorl_core::neuro`.
    Neuro,
}

impl EmotionSource {
    pub fn name(self) -> &'static str {
        match self {
            EmotionSource::Encoder => "encoder",
            EmotionSource::Neuro => "neuro",
        }
    }
}

/// Width of the carried state: four levels, tonic fear and joy.
pub const NEURO_CARRY: i64 = 6;

/// Settings of the neurochemical source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeuroSourceConfig {
    /// The dynamics (baselines, rates, couplings).
    pub dynamics: NeuroConfig,
    /// Time units one turn lasts.
    pub turn_dt: f64,
}

impl Default for NeuroSourceConfig {
    fn default() -> Self {
        NeuroSourceConfig {
            dynamics: NeuroConfig::default(),
            turn_dt: 1.0,
        }
    }
}

/// The neurochemical emotion source of one agent.
#[derive(Debug, Clone)]
pub struct NeuroSource {
    config: NeuroSourceConfig,
    tonic_decay: f64,
    device: Device,
}

impl NeuroSource {
    /// A source with `config`; tonic fear/joy decay by `tonic_decay` per turn.
    pub fn new(config: &NeuroSourceConfig, tonic_decay: f64, device: Device) -> Result<Self> {
        config
            .dynamics
            .validate()
            .map_err(|e| invalid(format!("neuro: {e}")))?;
        if !(config.turn_dt.is_finite() && config.turn_dt > 0.0) {
            return Err(invalid("neuro: turn_dt must be finite and > 0"));
        }
        if !(0.0..=1.0).contains(&tonic_decay) {
            return Err(invalid("neuro: tonic_decay must be in [0, 1]"));
        }
        Ok(NeuroSource {
            config: config.clone(),
            tonic_decay,
            device,
        })
    }

    /// The state of `contexts` after one turn each, from the carried state
    /// `previous` (`[batch, 6]`; `None`: the start of a conversation, every
    /// level at its baseline and tonic 0).
    pub fn encode(
        &self,
        contexts: &[&EmotionalContext],
        previous: Option<&Tensor>,
    ) -> Result<EmotionState> {
        let b = contexts.len();
        let prev: Vec<f64> = match previous {
            Some(t) => {
                if t.size() != [b as i64, NEURO_CARRY] {
                    return Err(invalid(format!(
                        "neuro: carried state has shape {:?}, expected [{b}, {NEURO_CARRY}]",
                        t.size()
                    )));
                }
                Vec::<f64>::try_from(
                    &t.f_to_kind(Kind::Double)?
                        .f_to_device(Device::Cpu)?
                        .f_view([-1])?,
                )?
            }
            None => {
                let row = Vec::<f64>::try_from(&self.start_carry()?.f_view([-1])?)?;
                row.repeat(b)
            }
        };
        let d = self.tonic_decay;
        let mut carry = Vec::with_capacity(b * NEURO_CARRY as usize);
        let mut phasic = Vec::with_capacity(b * N_EMOTIONS);
        let mut tonic = Vec::with_capacity(b * 2);
        for (row, c) in prev.chunks(NEURO_CARRY as usize).zip(contexts) {
            let levels = [row[0], row[1], row[2], row[3]].map(|x| x.clamp(0.0, 1.0));
            let mut n = Neurochemistry { levels };
            n.step(
                &self.config.dynamics,
                &Stimulus::from_context(c),
                self.config.turn_dt,
            );
            let e = n.emotions();
            let tf = match previous {
                Some(_) => d * row[4] + (1.0 - d) * e[0],
                None => (1.0 - d) * e[0],
            };
            let tj = match previous {
                Some(_) => d * row[5] + (1.0 - d) * e[3],
                None => (1.0 - d) * e[3],
            };
            carry.extend(n.levels);
            carry.extend([tf, tj]);
            phasic.extend(e.map(|x| x as f32));
            tonic.extend([tf as f32, tj as f32]);
        }
        let dev = self.device;
        let bi = b as i64;
        Ok(EmotionState {
            phasic: Tensor::f_from_slice(&phasic)?
                .f_view([bi, N_EMOTIONS as i64])?
                .f_to_device(dev)?,
            tonic: Tensor::f_from_slice(&tonic)?
                .f_view([bi, 2])?
                .f_to_device(dev)?,
            carry: Some(Tensor::f_from_slice(&carry)?.f_view([bi, NEURO_CARRY])?),
        })
    }

    /// One row of a conversation's start: every level at its baseline, tonic 0.
    pub fn start_carry(&self) -> Result<Tensor> {
        let base = Neurochemistry::at_baseline(&self.config.dynamics).levels;
        let row: Vec<f64> = base.into_iter().chain([0.0, 0.0]).collect();
        Ok(Tensor::f_from_slice(&row)?.f_view([1, NEURO_CARRY])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::SocialContext;

    fn ctx(threat: bool, satisfaction: f64) -> EmotionalContext {
        EmotionalContext {
            social: Some(SocialContext {
                safety_flag: threat,
                user_satisfaction: satisfaction,
                ..SocialContext::default()
            }),
            ..EmotionalContext::default()
        }
    }

    /// Three turns of two conversations equal the library's dynamics run
    /// by hand, and the phasic emotions are the levels' emotions.
    #[test]
    fn turns_follow_the_library_dynamics() {
        let cfg = NeuroSourceConfig::default();
        let src = NeuroSource::new(&cfg, 0.7, Device::Cpu).unwrap();
        let convs = [
            [ctx(true, -0.5), ctx(true, -0.8), ctx(false, 0.0)],
            [ctx(false, 0.9), ctx(false, 1.0), ctx(false, 0.2)],
        ];
        let mut carry: Option<Tensor> = None;
        let mut want = [Neurochemistry::at_baseline(&cfg.dynamics); 2];
        let mut tonic = [[0.0f64; 2]; 2];
        for turn in 0..3 {
            let cs: Vec<&EmotionalContext> = convs.iter().map(|c| &c[turn]).collect();
            let state = src.encode(&cs, carry.as_ref()).unwrap();
            let got = Vec::<f64>::try_from(&state.carry.as_ref().unwrap().view([-1])).unwrap();
            let phasic = Vec::<f32>::try_from(&state.phasic.view([-1])).unwrap();
            for r in 0..2 {
                want[r].step(&cfg.dynamics, &Stimulus::from_context(cs[r]), 1.0);
                let e = want[r].emotions();
                tonic[r] = [
                    0.7 * tonic[r][0] + 0.3 * e[0],
                    0.7 * tonic[r][1] + 0.3 * e[3],
                ];
                assert_eq!(
                    &got[r * 6..r * 6 + 4],
                    &want[r].levels,
                    "turn {turn} row {r}"
                );
                assert!((got[r * 6 + 4] - tonic[r][0]).abs() < 1e-12);
                for k in 0..4 {
                    assert!((f64::from(phasic[r * 4 + k]) - e[k]).abs() < 1e-6);
                }
            }
            carry = state.carry;
        }
        // The threatened conversation is more afraid than the warm one.
        let c = Vec::<f64>::try_from(&carry.unwrap().view([-1])).unwrap();
        assert!(c[2] > c[8], "cortisol {} vs {}", c[2], c[8]);
        assert!(c[3] < c[9], "oxytocin");
    }

    #[test]
    fn bad_settings_and_shapes_are_refused() {
        let cfg = NeuroSourceConfig {
            turn_dt: 0.0,
            ..NeuroSourceConfig::default()
        };
        assert!(NeuroSource::new(&cfg, 0.7, Device::Cpu).is_err());
        let src = NeuroSource::new(&NeuroSourceConfig::default(), 0.7, Device::Cpu).unwrap();
        assert!(NeuroSource::new(&NeuroSourceConfig::default(), 1.5, Device::Cpu).is_err());
        let wrong = Tensor::zeros([1, 2], (Kind::Double, Device::Cpu));
        assert!(src.encode(&[&ctx(false, 0.0)], Some(&wrong)).is_err());
    }
}
