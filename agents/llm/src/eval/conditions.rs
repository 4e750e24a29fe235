//! Forced emotional states: neutral, or one emotion high.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::agent::TurnEmotion;
use crate::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::erm::N_ERM;
use crate::error::Result;
use crate::params::invalid;

/// A forced emotion state: every emotion 0, or one of them 1 and the others 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionCondition {
    Neutral,
    Fear,
    Curiosity,
    Anger,
    Joy,
}

impl EmotionCondition {
    /// The high-emotion conditions, in [`EMOTIONS`] order.
    pub const EMOTIONAL: [EmotionCondition; N_EMOTIONS] = [
        EmotionCondition::Fear,
        EmotionCondition::Curiosity,
        EmotionCondition::Anger,
        EmotionCondition::Joy,
    ];

    /// The column of the raised emotion (`None` for neutral).
    pub fn emotion_index(self) -> Option<usize> {
        match self {
            EmotionCondition::Neutral => None,
            EmotionCondition::Fear => Some(0),
            EmotionCondition::Curiosity => Some(1),
            EmotionCondition::Anger => Some(2),
            EmotionCondition::Joy => Some(3),
        }
    }

    /// `"neutral"` or the [`EMOTIONS`] name.
    pub fn name(self) -> &'static str {
        self.emotion_index().map_or("neutral", |i| EMOTIONS[i])
    }

    /// The high condition of an [`EMOTIONS`] name, or `"neutral"`.
    pub fn from_name(name: &str) -> Result<Self> {
        if name == "neutral" {
            return Ok(EmotionCondition::Neutral);
        }
        EmotionCondition::EMOTIONAL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| invalid(format!("unknown emotion `{name}`")))
    }

    /// The four phasic emotions of the condition.
    pub fn phasic(self) -> [f32; N_EMOTIONS] {
        let mut p = [0.0; N_EMOTIONS];
        if let Some(i) = self.emotion_index() {
            p[i] = 1.0;
        }
        p
    }
}

/// The [`TurnEmotion`] of `condition` for `batch` rows, built directly
/// instead of from an environment's context: phasic emotions as the
/// condition says, tonic fear/joy equal to phasic fear/joy (the fixed point
/// of the encoder's tonic decay under a constant state), and the ERM
/// appraisal the same four emotions with anxiety and confidence 0 (so that
/// only the named emotion differs from neutral).
pub fn forced_emotion(
    condition: EmotionCondition,
    batch: i64,
    device: Device,
) -> Result<TurnEmotion> {
    if batch <= 0 {
        return Err(invalid("forced emotion: batch must be > 0"));
    }
    forced_emotions(&vec![condition; batch as usize], device)
}

/// [`forced_emotion`] with one condition per row.
pub fn forced_emotions(conditions: &[EmotionCondition], device: Device) -> Result<TurnEmotion> {
    if conditions.is_empty() {
        return Err(invalid("forced emotion: batch must be > 0"));
    }
    let b = conditions.len() as i64;
    let table = |width: usize, f: &dyn Fn(&[f32; N_EMOTIONS]) -> Vec<f32>| -> Result<Tensor> {
        let flat: Vec<f32> = conditions.iter().flat_map(|c| f(&c.phasic())).collect();
        Ok(Tensor::f_from_slice(&flat)?
            .f_view([b, width as i64])?
            .f_to_device(device)?)
    };
    Ok(TurnEmotion {
        state: EmotionState {
            phasic: table(N_EMOTIONS, &|p| p.to_vec())?,
            tonic: table(2, &|p| vec![p[0], p[3]])?,
        },
        erm: Some(table(N_ERM, &|p| {
            let mut erm = vec![0.0f32; N_ERM];
            erm[..N_EMOTIONS].copy_from_slice(p);
            erm
        })?),
        erm_tonic: None,
        erm_input: None,
    })
}
