//! Curiosity: a novelty bonus that decays with visits (phasic), shaping the TD target.

use super::{Appraisal, EmotionChannel};
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CuriosityConfig {
    /// Intrinsic reward `scale / (1 + visits(s'))` added inside the TD target.
    pub scale: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CuriosityChannel {
    cfg: CuriosityConfig,
    visits: Vec<u32>,
    current: f64,
}

impl CuriosityChannel {
    pub fn new(cfg: CuriosityConfig, n_states: usize) -> Self {
        CuriosityChannel {
            cfg,
            visits: vec![0; n_states],
            current: 0.0,
        }
    }
}

impl EmotionChannel for CuriosityChannel {
    fn name(&self) -> &'static str {
        "curiosity"
    }

    super::unused_hooks!(perceive, epsilon, preempt, explore, on_action, after_update);

    fn appraise(&mut self, t: &Appraisal) {
        self.visits[t.next_state] += 1;
        self.current = 1.0 / (1.0 + self.visits[t.next_state] as f64);
    }

    fn target_bonus(&self, _t: &Appraisal) -> f64 {
        self.cfg.scale * self.current
    }

    fn phasic(&self) -> f64 {
        self.current
    }

    fn tonic(&self) -> f64 {
        let seen = self.visits.iter().filter(|&&v| v > 0).count();
        seen as f64 / self.visits.len().max(1) as f64
    }

    fn reset_episode(&mut self) {
        self.current = 0.0;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::EmotionalContext;

    #[test]
    fn novelty_bonus_shrinks_with_visits() {
        let mut ch = CuriosityChannel::new(CuriosityConfig { scale: 0.1 }, 4);
        let ctx = EmotionalContext::default();
        let t = Appraisal {
            state: 0,
            action: 0,
            value: 0.0,
            reward: 0.0,
            next_state: 2,
            done: false,
            context: &ctx,
        };
        ch.appraise(&t);
        let first = ch.target_bonus(&t);
        ch.appraise(&t);
        assert!(ch.target_bonus(&t) < first);
        assert!((first - 0.05).abs() < 1e-15);
        assert_eq!(ch.tonic(), 0.25);
    }
}
