//! Surprise (V3 Exp 19, docs/v3-protocol.md): how far an outcome is from
//! what the agent expected raises exploration and the learning rate, so a
//! world whose rewards flip is relearned faster.
//!
//! On every update (hook `appraise`), with `e = |Q(s, a) − r|` (upstream
//! compares the value estimate with the immediate reward, not a TD error):
//! `phasic = min(1, e / 2)` if `e > threshold`, else 0; a level rises by
//! `rise` (to at most 1) on a surprise and decays by `decay` otherwise;
//! surprise is the larger of the two. Then
//! - ε = `min(epsilon_cap, ε + surprise · epsilon_gain)` for the next action;
//! - learning rate `min(lr_cap, lr · (1 + level · lr_gain))` (the level, not
//!   the surprise);
//! - each episode starts with the level scaled by `episode_decay`; the
//!   surprise itself carries over (as upstream's agent does).

use super::{Appraisal, EmotionChannel, Modulation};
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurpriseConfig {
    pub threshold: f64,
    pub rise: f64,
    pub decay: f64,
    pub episode_decay: f64,
    pub epsilon_gain: f64,
    pub epsilon_cap: f64,
    pub lr_gain: f64,
    pub lr_cap: f64,
}

impl Default for SurpriseConfig {
    /// Upstream's Exp 19 surprise agent.
    fn default() -> Self {
        SurpriseConfig {
            threshold: 0.3,
            rise: 0.3,
            decay: 0.9,
            episode_decay: 0.8,
            epsilon_gain: 0.3,
            epsilon_cap: 0.8,
            lr_gain: 2.0,
            lr_cap: 0.5,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SurpriseChannel {
    cfg: SurpriseConfig,
    level: f64,
    surprise: f64,
}

impl SurpriseChannel {
    pub fn new(cfg: SurpriseConfig) -> Self {
        SurpriseChannel {
            cfg,
            level: 0.0,
            surprise: 0.0,
        }
    }
}

impl EmotionChannel for SurpriseChannel {
    fn name(&self) -> &'static str {
        "surprise"
    }

    super::unused_hooks!(
        perceive,
        preempt,
        explore,
        on_action,
        target_bonus,
        after_update
    );

    fn appraise(&mut self, t: &Appraisal) {
        let error = (t.value - t.reward).abs();
        let phasic = if error > self.cfg.threshold {
            (error / 2.0).min(1.0)
        } else {
            0.0
        };
        self.level = if phasic > 0.0 {
            (self.level + self.cfg.rise).min(1.0)
        } else {
            self.level * self.cfg.decay
        };
        self.surprise = self.level.max(phasic);
    }

    fn epsilon(&self, epsilon: f64) -> f64 {
        (epsilon + self.surprise * self.cfg.epsilon_gain).min(self.cfg.epsilon_cap)
    }

    fn modulate(&self, _t: &Appraisal, _td: f64) -> Modulation {
        Modulation {
            lr_factor: Some(1.0 + self.level * self.cfg.lr_gain),
            td_factor: None,
            lr_cap: Some(self.cfg.lr_cap),
        }
    }

    fn phasic(&self) -> f64 {
        self.surprise
    }

    fn tonic(&self) -> f64 {
        self.level
    }

    fn reset_episode(&mut self) {
        self.level *= self.cfg.episode_decay;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::EmotionalContext;

    fn outcome(value: f64, reward: f64, ctx: &EmotionalContext) -> Appraisal<'_> {
        Appraisal {
            state: 0,
            action: 0,
            value,
            reward,
            next_state: 0,
            done: false,
            context: ctx,
        }
    }

    #[test]
    fn surprise_rises_with_the_gap_and_opens_exploration_and_learning() {
        let ctx = EmotionalContext::default();
        let mut ch = SurpriseChannel::new(SurpriseConfig::default());
        assert_eq!(ch.epsilon(0.2), 0.2);
        ch.appraise(&outcome(0.9, -1.01, &ctx)); // |0.9 + 1.01| = 1.91
        assert_eq!(ch.phasic(), (0.9f64 - -1.01).abs() / 2.0);
        assert_eq!(ch.tonic(), 0.3);
        assert_eq!(ch.epsilon(0.2), 0.2 + ch.phasic() * 0.3);
        let m = ch.modulate(&outcome(0.0, 0.0, &ctx), 0.0);
        assert_eq!((m.lr_factor, m.lr_cap), (Some(1.0 + 0.3 * 2.0), Some(0.5)));
        ch.appraise(&outcome(0.1, 0.0, &ctx)); // 0.1: not surprising
        assert_eq!(ch.tonic(), 0.3 * 0.9);
        // A new episode decays the level but keeps the surprise.
        let kept = ch.phasic();
        ch.reset_episode();
        assert_eq!((ch.tonic(), ch.phasic()), (0.3 * 0.9 * 0.8, kept));
    }
}
