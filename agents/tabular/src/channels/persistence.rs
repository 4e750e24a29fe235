//! Persistent anger (V3 Exp 20, docs/v3-protocol.md): anger that builds
//! while moves are blocked — more when the blocked move is progress on a
//! jammed obstacle — and makes the agent push on instead of giving up.
//!
//! Before each action (hook `perceive`, on the last step's context): while
//! blocked, `k` consecutive blocks give `phasic = min(cap, k · per_block)`,
//! plus `obstacle_gain · progress` when the block was a push on the
//! obstacle; otherwise `k = 0`, `phasic = 0`. A tonic level rises by `rise`
//! (to at most 1) while phasic anger is present and decays by `decay`
//! otherwise; anger is the larger of the two. Then:
//! - `preempt`: blocked and angrier than `persist_above` → with probability
//!   `min(persist_cap, anger · persist_gain)` (one draw) repeat the last
//!   *greedy* action (ε-random and repeated actions do not count as chosen);
//! - `bias`: after a push, angrier than `boost_above` → that action's
//!   Q-value `+ anger · boost`;
//! - learning rate `· (1 + anger · lr_gain)`; a negative TD error from a
//!   push is damped by `1 − progress · progress_damping`.

use super::{Appraisal, Choice, EmotionChannel, Modulation};
use emorl_core::context::EmotionalContext;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    pub per_block: f64,
    pub phasic_cap: f64,
    pub obstacle_gain: f64,
    pub rise: f64,
    pub decay: f64,
    pub persist_above: f64,
    pub persist_gain: f64,
    pub persist_cap: f64,
    pub boost_above: f64,
    pub boost: f64,
    pub lr_gain: f64,
    pub progress_damping: f64,
}

impl Default for PersistenceConfig {
    /// Upstream's Exp 20 anger agent.
    fn default() -> Self {
        PersistenceConfig {
            per_block: 0.1,
            phasic_cap: 0.5,
            obstacle_gain: 0.3,
            rise: 0.2,
            decay: 0.85,
            persist_above: 0.3,
            persist_gain: 0.6,
            persist_cap: 0.8,
            boost_above: 0.2,
            boost: 5.0,
            lr_gain: 0.5,
            progress_damping: 0.5,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PersistenceChannel {
    cfg: PersistenceConfig,
    tonic: f64,
    anger: f64,
    blocks: u32,
    blocked: bool,
    pushed: bool,
    last_greedy: Option<usize>,
}

impl PersistenceChannel {
    pub fn new(cfg: PersistenceConfig) -> Self {
        PersistenceChannel {
            cfg,
            tonic: 0.0,
            anger: 0.0,
            blocks: 0,
            blocked: false,
            pushed: false,
            last_greedy: None,
        }
    }
}

impl EmotionChannel for PersistenceChannel {
    fn name(&self) -> &'static str {
        "persistence"
    }

    super::unused_hooks!(epsilon, explore, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        let obstacle = context.obstacle.filter(|o| o.pushed);
        self.blocked = context.was_blocked;
        self.pushed = obstacle.is_some();
        let mut phasic = 0.0;
        if context.was_blocked {
            self.blocks += 1;
            phasic = (self.blocks as f64 * self.cfg.per_block).min(self.cfg.phasic_cap);
            if let Some(o) = obstacle {
                phasic += self.cfg.obstacle_gain * o.progress();
            }
        } else {
            self.blocks = 0;
        }
        self.tonic = if phasic > 0.0 {
            (self.tonic + self.cfg.rise).min(1.0)
        } else {
            self.tonic * self.cfg.decay
        };
        self.anger = self.tonic.max(phasic);
    }

    fn preempt(&mut self, _state: usize, _q: &[f64], rng: &RngHandle) -> Option<usize> {
        let last = self.last_greedy?;
        if !self.blocked || self.anger <= self.cfg.persist_above {
            return None;
        }
        let p = (self.anger * self.cfg.persist_gain).min(self.cfg.persist_cap);
        (rng.random() < p).then_some(last)
    }

    fn bias(&mut self, _state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        if let Some(last) = self.last_greedy {
            if self.pushed && self.anger > self.cfg.boost_above {
                if let Some(v) = q.get_mut(last) {
                    *v += self.anger * self.cfg.boost;
                }
            }
        }
        None
    }

    fn on_action(&mut self, action: usize, how: Choice) {
        if how == Choice::Greedy {
            self.last_greedy = Some(action);
        }
    }

    fn appraise(&mut self, _t: &Appraisal) {}

    fn modulate(&self, t: &Appraisal, td: f64) -> Modulation {
        let push = t.context.obstacle.filter(|o| o.pushed);
        Modulation {
            lr_factor: Some(1.0 + self.anger * self.cfg.lr_gain),
            td_factor: match push {
                Some(o) if td < 0.0 => Some(1.0 - o.progress() * self.cfg.progress_damping),
                _ => None,
            },
            lr_cap: None,
        }
    }

    fn phasic(&self) -> f64 {
        self.anger
    }

    fn tonic(&self) -> f64 {
        self.tonic
    }

    fn reset_episode(&mut self) {
        let cfg = self.cfg.clone();
        *self = PersistenceChannel::new(cfg);
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::Obstacle;
    use emorl_core::RngKind;

    fn pushing(pushes: u32) -> EmotionalContext {
        EmotionalContext {
            was_blocked: true,
            obstacle: Some(Obstacle {
                pushed: true,
                pushes,
                needed: 4,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn anger_builds_on_blocked_pushes_and_decays_after() {
        let mut ch = PersistenceChannel::new(PersistenceConfig::default());
        ch.perceive(0, &pushing(2));
        assert_eq!(ch.phasic(), 0.1 + 0.3 * 0.5); // phasic beats tonic 0.2
        assert_eq!(ch.tonic(), 0.2);
        ch.perceive(0, &EmotionalContext::default());
        assert_eq!(ch.phasic(), 0.2 * 0.85);
        ch.reset_episode();
        assert_eq!((ch.phasic(), ch.tonic()), (0.0, 0.0));
    }

    #[test]
    fn persists_with_the_last_greedy_action_only() {
        let mut ch = PersistenceChannel::new(PersistenceConfig::default());
        let rng = RngHandle::new(RngKind::Numpy, 0);
        ch.perceive(0, &pushing(3));
        // Nothing chosen greedily yet: no persistence, no bias.
        assert_eq!(ch.preempt(0, &[0.0; 4], &rng), None);
        ch.on_action(2, Choice::Explored);
        assert_eq!(ch.preempt(0, &[0.0; 4], &rng), None);
        ch.on_action(3, Choice::Greedy);
        let mut q = [0.0; 4];
        ch.bias(0, &mut q, &rng);
        assert_eq!(q[3], ch.phasic() * 5.0);
        // Blocked at anger 0.325 > 0.3: each call draws once and repeats 3
        // with probability min(0.8, 0.325 · 0.6).
        let repeats = (0..200)
            .filter(|_| ch.preempt(0, &[0.0; 4], &rng) == Some(3))
            .count();
        let p = (ch.phasic() * 0.6).min(0.8);
        assert!(
            (repeats as f64 / 200.0 - p).abs() < 0.12,
            "{repeats} vs p {p}"
        );
        // A failed push's negative TD error is damped by its progress.
        let ctx = pushing(3);
        let t = Appraisal {
            state: 0,
            action: 3,
            value: 0.0,
            reward: -0.01,
            next_state: 0,
            done: false,
            context: &ctx,
        };
        assert_eq!(ch.modulate(&t, -1.0).td_factor, Some(1.0 - 0.75 * 0.5));
        assert_eq!(ch.modulate(&t, 1.0).td_factor, None);
    }
}
