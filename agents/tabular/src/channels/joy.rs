//! Joy: phasic delight at positive outcomes and a slowly moving tonic mood.

use super::{Appraisal, EmotionChannel, Modulation};
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoyConfig {
    /// Mood update rate: `mood ← mood + rate · (joy − mood)`.
    pub mood_rate: f64,
    /// On good news (TD error > 0), multiply the learning rate by `1 + weight · joy`.
    pub weight: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoyChannel {
    cfg: JoyConfig,
    joy: f64,
    mood: f64,
}

impl JoyChannel {
    pub fn new(cfg: JoyConfig) -> Self {
        JoyChannel {
            cfg,
            joy: 0.0,
            mood: 0.0,
        }
    }
}

impl EmotionChannel for JoyChannel {
    fn name(&self) -> &'static str {
        "joy"
    }

    super::unused_hooks!(
        perceive,
        epsilon,
        preempt,
        explore,
        on_action,
        target_bonus,
        after_update
    );

    fn appraise(&mut self, t: &Appraisal) {
        self.joy = t.reward.clamp(0.0, 1.0);
        self.mood += self.cfg.mood_rate * (self.joy - self.mood);
    }

    fn modulate(&self, _t: &Appraisal, td: f64) -> Modulation {
        Modulation {
            lr_factor: (td > 0.0 && self.joy > 0.0).then_some(1.0 + self.cfg.weight * self.joy),
            td_factor: None,
            lr_cap: None,
        }
    }

    fn phasic(&self) -> f64 {
        self.joy
    }

    fn tonic(&self) -> f64 {
        self.mood
    }

    fn reset_episode(&mut self) {
        self.joy = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::EmotionalContext;

    #[test]
    fn joy_rises_with_reward_and_mood_follows_slowly() {
        let mut ch = JoyChannel::new(JoyConfig {
            mood_rate: 0.1,
            weight: 1.0,
        });
        let ctx = EmotionalContext::default();
        let t = Appraisal {
            state: 0,
            action: 0,
            value: 0.0,
            reward: 1.0,
            next_state: 1,
            done: true,
            context: &ctx,
        };
        ch.appraise(&t);
        assert_eq!(ch.phasic(), 1.0);
        assert!((ch.tonic() - 0.1).abs() < 1e-15);
        assert_eq!(ch.modulate(&t, 0.5).lr_factor, Some(2.0));
        assert_eq!(ch.modulate(&t, -0.5).lr_factor, None);
    }
}
