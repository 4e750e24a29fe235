//! Forced emotional states: neutral, or one emotion high.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::error::Result;
use crate::modules::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::modules::erm::N_ERM;
use crate::modules::TurnEmotion;
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
    let rows: Vec<[f32; N_EMOTIONS]> = conditions.iter().map(|c| c.phasic()).collect();
    emotion_of_values(&rows, device)
}

/// A [`TurnEmotion`] with the given phasic emotions per row (each in
/// [`EMOTIONS`] order, in [0, 1]), built like the forced conditions: tonic
/// fear/joy equal to phasic fear/joy and the ERM appraisal the same four
/// emotions with anxiety and confidence 0.
pub fn emotion_of_values(rows: &[[f32; N_EMOTIONS]], device: Device) -> Result<TurnEmotion> {
    if rows.is_empty() {
        return Err(invalid("forced emotion: batch must be > 0"));
    }
    if rows.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(invalid("forced emotion: every emotion must be in [0, 1]"));
    }
    let b = rows.len() as i64;
    let table = |width: usize, f: &dyn Fn(&[f32; N_EMOTIONS]) -> Vec<f32>| -> Result<Tensor> {
        let flat: Vec<f32> = rows.iter().flat_map(f).collect();
        Ok(Tensor::f_from_slice(&flat)?
            .f_view([b, width as i64])?
            .f_to_device(device)?)
    };
    Ok(TurnEmotion {
        state: EmotionState {
            phasic: table(N_EMOTIONS, &|p| p.to_vec())?,
            tonic: table(2, &|p| vec![p[0], p[3]])?,
            carry: None,
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

/// Parses `fear=0.9,joy=0.1` (emotions not named are 0) into phasic values
/// in [`EMOTIONS`] order.
pub fn parse_emotion_values(text: &str) -> Result<[f32; N_EMOTIONS]> {
    let mut values = [0.0f32; N_EMOTIONS];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("emotion `{part}`: expected name=value")))?;
        let i = EMOTIONS
            .iter()
            .position(|e| *e == name.trim())
            .ok_or_else(|| {
                invalid(format!(
                    "unknown emotion `{}` (known: {})",
                    name.trim(),
                    EMOTIONS.join(", ")
                ))
            })?;
        let v: f32 = value.trim().parse().map_err(|_| {
            invalid(format!(
                "emotion `{part}`: `{}` is not a number",
                value.trim()
            ))
        })?;
        if !(0.0..=1.0).contains(&v) {
            return Err(invalid(format!(
                "emotion `{part}`: the value must be in [0, 1]"
            )));
        }
        values[i] = v;
    }
    Ok(values)
}

/// One response of `agent` to `obs` under the given phasic emotions instead
/// of the state its encoder would compute (agents that describe their
/// emotion also get it in the prompt). The agent's decoding settings are
/// used, with sampling seed `seed`.
pub fn generate_with_emotion(
    agent: &mut crate::agent::LlmAgent,
    obs: &emorl_envs_text::DialogueObs,
    phasic: [f32; N_EMOTIONS],
    seed: u64,
) -> Result<emorl_lm::Generation> {
    let _g = tch::no_grad_guard();
    let ids = agent.encode_prompt_for(obs, Some(&phasic))?;
    let emotion = emotion_of_values(&[phasic], agent.model().device())?;
    let hooks = agent.hooks(&emotion, ids.len())?;
    let mut opts = agent.generate_options(0);
    opts.seed = seed;
    agent
        .model_mut()
        .generate_from_tokens(&[ids], &opts, Some(&hooks), None)?
        .pop()
        .ok_or_else(|| invalid("generation returned no sequence"))
}
