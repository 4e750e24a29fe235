//! Neurochemical emotion dynamics (seed 003): dopamine (reward, novelty;
//! exploration), serotonin (mood stability), cortisol (stress, vigilance)
//! and oxytocin (social warmth), each in [0, 1].
//!
//! Each level `x` relaxes to its baseline `b` at rate `k` and is driven up
//! (toward 1) by a drive `u ≥ 0` and down (toward 0) by a drive `v ≥ 0`:
//!
//! ```text
//! dx/dt = −k (x − b) + u (1 − x) − v x
//! ```
//!
//! With the drives held constant over a step of length `dt` this is linear
//! with the exact solution `x(dt) = x∞ + (x(0) − x∞) e^{−a dt}`, `a = k + u +
//! v`, `x∞ = (k b + u) / a`. Because `0 ≤ k b + u ≤ a`, the fixed point lies
//! in [0, 1] and every step is a convex combination of it and the current
//! level: the state stays in [0, 1] for any step length, and one step of
//! length `2 dt` equals two of length `dt` under the same drives.
//!
//! Drives come from a [`Stimulus`] through documented couplings
//! ([`NeuroConfig::drives`]): positive feedback raises dopamine and
//! serotonin, negative feedback lowers them and raises cortisol; novelty
//! raises dopamine; threat (a safety flag, harm, a near threat) raises
//! cortisol and lowers oxytocin; warmth raises oxytocin and serotonin and
//! soothes cortisol. Cortisol above its baseline suppresses serotonin: its
//! excess at the start of a step adds `cortisol_suppression · excess` to
//! serotonin's down drive (the one coupling between chemicals; held for the
//! step, so the linear part stays exact). At rest every chemical sits at
//! its baseline.
//!
//! [`Neurochemistry::emotions`] maps the levels to the four emotions the
//! LLM modules read ([`EMOTIONS`]) and [`Neurochemistry::temperature`] to a
//! sampling temperature that rises with dopamine.

use crate::context::EmotionalContext;
use crate::error::CoreError;
use serde::{Deserialize, Serialize};

/// The four neurochemicals, in array order.
pub const CHEMICALS: [&str; 4] = ["dopamine", "serotonin", "cortisol", "oxytocin"];

/// The four emotions emorl's LLM modules condition on, in their order (the
/// one vocabulary; `emorl-agents-llm` uses this list).
pub const EMOTIONS: [&str; 4] = ["fear", "curiosity", "anger", "joy"];

const DA: usize = 0;
const SE: usize = 1;
const CO: usize = 2;
const OX: usize = 3;

/// Levels of the four chemicals, each in [0, 1] ([`CHEMICALS`] order).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neurochemistry {
    pub levels: [f64; 4],
}

/// What happened, as the dynamics read it. Every field is clamped to its
/// range before use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stimulus {
    /// Feedback in [−1, 1]: praise or reward above 0, blame or loss below.
    pub feedback: f64,
    /// Novelty in [0, 1] (a new topic, an unvisited state).
    pub novelty: f64,
    /// Threat in [0, 1] (a safety flag, harm, a near threat, failure).
    pub threat: f64,
    /// Social warmth in [0, 1] (thanks, kindness).
    pub warmth: f64,
}

impl Stimulus {
    fn clamped(&self) -> Stimulus {
        let c = |x: f64, lo: f64| if x.is_finite() { x.clamp(lo, 1.0) } else { 0.0 };
        Stimulus {
            feedback: c(self.feedback, -1.0),
            novelty: c(self.novelty, 0.0),
            threat: c(self.threat, 0.0),
            warmth: c(self.warmth, 0.0),
        }
    }

    /// The stimulus an environment's emotional context carries: reward and
    /// the conversation's feedback, topic novelty, the safety flag, harm,
    /// failed attempts and threat proximity, and satisfaction as warmth.
    pub fn from_context(c: &EmotionalContext) -> Stimulus {
        let mut s = Stimulus {
            feedback: c.reward.tanh(),
            threat: c
                .threat_distance
                .filter(|d| d.is_finite())
                .map_or(0.0, |d| 1.0 / (1.0 + d.max(0.0))),
            ..Default::default()
        };
        if c.harmed {
            s.threat = 1.0;
        }
        if let Some(social) = &c.social {
            s.feedback = (s.feedback + social.last_reward.tanh()).clamp(-1.0, 1.0);
            s.novelty = social.topic_novelty;
            if social.safety_flag {
                s.threat = 1.0;
            }
            s.threat = s
                .threat
                .max((f64::from(social.failed_attempts) / 3.0).min(1.0));
            s.warmth = social.user_satisfaction.max(0.0);
        }
        s.clamped()
    }
}

/// Baselines, relaxation rates and coupling strengths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuroConfig {
    /// Resting levels, in [0, 1] ([`CHEMICALS`] order).
    pub baseline: [f64; 4],
    /// Relaxation rates toward the baseline, per unit time (> 0).
    pub decay: [f64; 4],
    /// How strongly each stimulus drives the levels (≥ 0), per unit time.
    pub gain: f64,
    /// Serotonin's extra down drive per unit of cortisol above its baseline (≥ 0).
    pub cortisol_suppression: f64,
    /// Sampling temperature at dopamine 0 and at dopamine 1.
    pub temperature: [f64; 2],
}

impl Default for NeuroConfig {
    fn default() -> Self {
        NeuroConfig {
            // Serotonin rests highest (a stable mood), cortisol lowest.
            baseline: [0.5, 0.6, 0.2, 0.4],
            // Dopamine and cortisol react fast, serotonin slowly.
            decay: [0.5, 0.1, 0.3, 0.2],
            gain: 2.0,
            cortisol_suppression: 0.5,
            temperature: [0.5, 1.1],
        }
    }
}

impl NeuroConfig {
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |what: &str| Err(CoreError::InvalidConfig(format!("neuro: {what}")));
        if !self.baseline.iter().all(|b| (0.0..=1.0).contains(b)) {
            return bad("every baseline must be in [0, 1]");
        }
        if !self
            .decay
            .iter()
            .all(|k| k.is_finite() && *k > 0.0 && *k <= 1e6)
        {
            return bad("every decay rate must be in (0, 1e6]");
        }
        if !(self.gain.is_finite() && (0.0..=1e6).contains(&self.gain)) {
            return bad("gain must be in [0, 1e6]");
        }
        if !(self.cortisol_suppression.is_finite()
            && (0.0..=1e6).contains(&self.cortisol_suppression))
        {
            return bad("cortisol_suppression must be in [0, 1e6]");
        }
        let [lo, hi] = self.temperature;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= lo && hi <= 10.0) {
            return bad("temperature must be [low, high] with 0 < low <= high <= 10");
        }
        Ok(())
    }

    /// The up and down drives of each chemical under `s` (clamped) when
    /// cortisol stands at `cortisol`:
    ///
    /// | chemical | up | down |
    /// | --- | --- | --- |
    /// | dopamine | feedback⁺ + 0.5 novelty | 0.5 feedback⁻ |
    /// | serotonin | 0.5 feedback⁺ + 0.3 warmth | 0.5 feedback⁻ + suppression · (cortisol − its baseline)⁺ |
    /// | cortisol | threat + 0.5 feedback⁻ | 0.3 warmth |
    /// | oxytocin | warmth | 0.3 threat |
    ///
    /// each times `gain` (the suppression term excepted).
    pub fn drives(&self, s: &Stimulus, cortisol: f64) -> ([f64; 4], [f64; 4]) {
        let s = s.clamped();
        let pos = s.feedback.max(0.0);
        let neg = (-s.feedback).max(0.0);
        let g = self.gain;
        let up = [
            g * (pos + 0.5 * s.novelty),
            g * (0.5 * pos + 0.3 * s.warmth),
            g * (s.threat + 0.5 * neg),
            g * s.warmth,
        ];
        let down = [
            g * 0.5 * neg,
            g * 0.5 * neg
                + self.cortisol_suppression
                    * (cortisol.clamp(0.0, 1.0) - self.baseline[CO]).max(0.0),
            g * 0.3 * s.warmth,
            g * 0.3 * s.threat,
        ];
        (up, down)
    }
}

impl Neurochemistry {
    /// Every chemical at its baseline.
    pub fn at_baseline(cfg: &NeuroConfig) -> Self {
        Neurochemistry {
            levels: cfg.baseline,
        }
    }

    /// Levels from values that must each lie in [0, 1].
    pub fn new(levels: [f64; 4]) -> Result<Self, CoreError> {
        for (name, v) in CHEMICALS.iter().zip(levels) {
            if !(0.0..=1.0).contains(&v) {
                return Err(CoreError::InvalidConfig(format!(
                    "{name} = {v} is outside [0, 1]"
                )));
            }
        }
        Ok(Neurochemistry { levels })
    }

    pub fn dopamine(&self) -> f64 {
        self.levels[DA]
    }
    pub fn serotonin(&self) -> f64 {
        self.levels[SE]
    }
    pub fn cortisol(&self) -> f64 {
        self.levels[CO]
    }
    pub fn oxytocin(&self) -> f64 {
        self.levels[OX]
    }

    /// Advances the levels by `dt` (≥ 0; other values leave them as they
    /// are) with `s` held for the whole step: the exact solution of the
    /// linear dynamics (see the module docs).
    pub fn step(&mut self, cfg: &NeuroConfig, s: &Stimulus, dt: f64) {
        if !(dt.is_finite() && dt > 0.0) {
            return;
        }
        let (up, down) = cfg.drives(s, self.levels[CO]);
        for i in 0..4 {
            let a = cfg.decay[i] + up[i] + down[i];
            let target = ((cfg.decay[i] * cfg.baseline[i] + up[i]) / a).clamp(0.0, 1.0);
            let keep = (-a * dt).exp();
            let x = target + (self.levels[i] - target) * keep;
            // Rounding cannot leave [0, 1]: x is a convex combination.
            self.levels[i] = x.clamp(0.0, 1.0);
        }
    }

    /// The four emotions ([`EMOTIONS`] order), each in [0, 1]:
    /// fear = cortisol · (1 − oxytocin / 2); curiosity = dopamine ·
    /// (1 − cortisol); anger = cortisol · (1 − serotonin); joy = the mean
    /// of dopamine, serotonin and oxytocin · (1 − cortisol).
    pub fn emotions(&self) -> [f64; 4] {
        let [da, se, co, ox] = self.levels;
        [
            co * (1.0 - 0.5 * ox),
            da * (1.0 - co),
            co * (1.0 - se),
            (da + se + ox) / 3.0 * (1.0 - co),
        ]
    }

    /// A sampling temperature from dopamine: `low + (high − low) · dopamine`.
    pub fn temperature(&self, cfg: &NeuroConfig) -> f64 {
        let [lo, hi] = cfg.temperature;
        lo + (hi - lo) * self.levels[DA]
    }

    /// Conditioning tokens for a prompt, e.g. `<DA=0.75><SE=0.60><CO=0.20><OX=0.40>`.
    pub fn tokens(&self) -> String {
        ["DA", "SE", "CO", "OX"]
            .iter()
            .zip(self.levels)
            .map(|(k, v)| format!("<{k}={v:.2}>"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{EmoRng, RngKind};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Closed form of one chemical under constant drives (no coupling).
    fn closed_form(x0: f64, k: f64, b: f64, u: f64, v: f64, t: f64) -> f64 {
        let a = k + u + v;
        let target = (k * b + u) / a;
        target + (x0 - target) * (-a * t).exp()
    }

    #[test]
    fn matches_the_closed_form_under_constant_stimuli() {
        // Without the cortisol coupling the system is four independent
        // linear equations; any split of the time gives the closed form.
        let cfg = NeuroConfig {
            cortisol_suppression: 0.0,
            ..Default::default()
        };
        let s = Stimulus {
            feedback: 0.6,
            novelty: 0.3,
            threat: 0.2,
            warmth: 0.5,
        };
        let (up, down) = cfg.drives(&s, 0.0);
        let x0 = [0.9, 0.1, 0.7, 0.0];
        for (t, steps) in [(0.5, 1), (3.0, 7), (10.0, 1000), (40.0, 3)] {
            let mut n = Neurochemistry::new(x0).expect("levels");
            for _ in 0..steps {
                n.step(&cfg, &s, t / steps as f64);
            }
            for i in 0..4 {
                let want = closed_form(x0[i], cfg.decay[i], cfg.baseline[i], up[i], down[i], t);
                assert!(
                    close(n.levels[i], want, 1e-12),
                    "{} at t={t} in {steps} steps: {} vs {want}",
                    CHEMICALS[i],
                    n.levels[i]
                );
            }
        }
    }

    #[test]
    fn relaxes_to_baseline_without_stimuli() {
        let cfg = NeuroConfig::default();
        let mut n = Neurochemistry::new([1.0, 0.0, 1.0, 0.0]).expect("levels");
        for _ in 0..400 {
            n.step(&cfg, &Stimulus::default(), 1.0);
        }
        for ((name, level), want) in CHEMICALS.iter().zip(n.levels).zip(cfg.baseline) {
            assert!(close(level, want, 1e-6), "{name}: {level} vs {want}");
        }
    }

    #[test]
    fn stays_in_bounds_under_random_stimuli_and_any_step() {
        let cfg = NeuroConfig {
            gain: 50.0,
            cortisol_suppression: 20.0,
            ..Default::default()
        };
        let mut rng = EmoRng::new(RngKind::Fast, 7);
        let mut n = Neurochemistry::at_baseline(&cfg);
        for _ in 0..20_000 {
            let s = Stimulus {
                feedback: rng.random() * 6.0 - 3.0,
                novelty: rng.random() * 3.0 - 1.0,
                threat: rng.random() * 3.0 - 1.0,
                warmth: if rng.random() < 0.01 {
                    f64::NAN
                } else {
                    rng.random()
                },
            };
            let dt = match rng.randint(4) {
                0 => 1e-9,
                1 => rng.random(),
                2 => rng.random() * 1e6,
                _ => f64::INFINITY,
            };
            n.step(&cfg, &s, dt);
            assert!(n.levels.iter().all(|x| (0.0..=1.0).contains(x)), "{n:?}");
            assert!(n.emotions().iter().all(|x| (0.0..=1.0).contains(x)));
            let t = n.temperature(&cfg);
            assert!((cfg.temperature[0]..=cfg.temperature[1]).contains(&t));
        }
    }

    #[test]
    fn couplings_move_the_chemicals_the_documented_way() {
        let cfg = NeuroConfig::default();
        let after = |s: Stimulus| {
            let mut n = Neurochemistry::at_baseline(&cfg);
            n.step(&cfg, &s, 1.0);
            n
        };
        let base = after(Stimulus::default());
        let praise = after(Stimulus {
            feedback: 1.0,
            ..Default::default()
        });
        assert!(praise.dopamine() > base.dopamine() && praise.serotonin() > base.serotonin());
        let threat = after(Stimulus {
            threat: 1.0,
            ..Default::default()
        });
        assert!(threat.cortisol() > base.cortisol() && threat.oxytocin() < base.oxytocin());
        let warm = after(Stimulus {
            warmth: 1.0,
            ..Default::default()
        });
        assert!(warm.oxytocin() > base.oxytocin() && warm.cortisol() < base.cortisol());
        let novel = after(Stimulus {
            novelty: 1.0,
            ..Default::default()
        });
        assert!(novel.dopamine() > base.dopamine());
        // Cortisol suppresses serotonin: the same step from high cortisol
        // leaves serotonin lower.
        let mut stressed = Neurochemistry::new([0.5, 0.6, 1.0, 0.4]).expect("levels");
        stressed.step(&cfg, &Stimulus::default(), 1.0);
        assert!(stressed.serotonin() < base.serotonin());
        // Emotions follow: threat reads as fear, praise as joy.
        assert!(threat.emotions()[0] > base.emotions()[0]);
        assert!(praise.emotions()[3] > base.emotions()[3]);
        assert!(praise.temperature(&cfg) > base.temperature(&cfg));
    }

    #[test]
    fn a_dialogue_context_becomes_a_stimulus() {
        use crate::context::SocialContext;
        let ctx = EmotionalContext {
            social: Some(SocialContext {
                safety_flag: true,
                topic_novelty: 0.4,
                user_satisfaction: 0.8,
                last_reward: -2.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = Stimulus::from_context(&ctx);
        assert_eq!(s.threat, 1.0);
        assert_eq!(s.novelty, 0.4);
        assert_eq!(s.warmth, 0.8);
        assert!(s.feedback < -0.9);
        assert_eq!(
            Stimulus::from_context(&EmotionalContext::default()),
            Stimulus::default()
        );
    }

    #[test]
    fn bad_levels_and_configs_are_refused() {
        assert!(Neurochemistry::new([0.5, 1.5, 0.0, 0.0]).is_err());
        assert!(Neurochemistry::new([f64::NAN, 0.5, 0.0, 0.0]).is_err());
        let mut cfg = NeuroConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.decay[2] = 0.0;
        assert!(cfg.validate().is_err());
        let cfg = NeuroConfig {
            temperature: [1.0, 0.5],
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
        let n = Neurochemistry::new([0.75, 0.6, 0.2, 0.4]).expect("levels");
        assert_eq!(n.tokens(), "<DA=0.75><SE=0.60><CO=0.20><OX=0.40>");
    }
}
