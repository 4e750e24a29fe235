//! Engineered, non-emotional rules: what an RL engineer would give a plain
//! Q-learner that sees the same things the V3 emotional agents see (the
//! audit of docs/v3-protocol.md). They plug into the same hooks as the
//! emotion channels but carry no affective state: no intensity that rises
//! and decays, no learning-rate modulation — a fixed rule over the
//! observation.
//!
//! - [`HazardMaskChannel`] (Exp 21): moves into the hazard cells the
//!   environment currently shows are masked out — removed from the
//!   exploratory draw and pushed down by `penalty` on the greedy branch.
//! - [`EvadeChannel`] (Exp 22): within `radius` of the threat, moves that
//!   end closer to it are masked the same way.
//! - [`RefuelChannel`] (Exp 23): at a reserve level at or below `below`, or
//!   when the nearest station is out of reach, take the first move toward
//!   the nearest station (no draw).
//! - [`PushOnChannel`] (Exp 20): after a move that pushed a jammed
//!   obstacle without opening it, push again (no draw).
//! - [`RepeatChannel`] (Exp 20): temporally extended exploration
//!   (εz-greedy, Dabney et al. 2021): an exploratory action is repeated for
//!   the next `repeat − 1` steps.

use super::{EmotionChannel, SquareGrid};
use emorl_core::context::EmotionalContext;
use emorl_core::rng::RngHandle;
use emorl_core::CoreError;
use serde::{Deserialize, Serialize};

/// Removes the masked moves from the exploratory draw (uniform over the
/// allowed moves, one draw) unless every move is masked.
fn explore_unmasked(masked: &[bool], rng: &RngHandle) -> Option<usize> {
    let allowed: Vec<usize> = (0..masked.len()).filter(|&a| !masked[a]).collect();
    if allowed.is_empty() || allowed.len() == masked.len() {
        return None;
    }
    Some(allowed[rng.randint(allowed.len())])
}

/// Pushes masked moves down by `penalty` on the greedy branch.
fn penalise(masked: &[bool], q: &mut [f64], penalty: f64) {
    for (v, &m) in q.iter_mut().zip(masked) {
        if m {
            *v -= penalty;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HazardMaskConfig {
    /// Q-value subtracted from a masked move on the greedy branch.
    pub penalty: f64,
}

impl Default for HazardMaskConfig {
    fn default() -> Self {
        HazardMaskConfig { penalty: 100.0 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HazardMaskChannel {
    cfg: HazardMaskConfig,
    grid: SquareGrid,
    /// The hazards shown last (the current layout's).
    shown: Vec<usize>,
}

impl HazardMaskChannel {
    pub fn new(cfg: HazardMaskConfig, n_states: usize) -> Self {
        HazardMaskChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            shown: Vec::new(),
        }
    }

    fn masked(&self, state: usize) -> Vec<bool> {
        (0..SquareGrid::MOVES.len())
            .map(|a| {
                self.grid
                    .step(state, a)
                    .is_some_and(|(s, _)| self.shown.contains(&s))
            })
            .collect()
    }
}

impl EmotionChannel for HazardMaskChannel {
    fn name(&self) -> &'static str {
        "hazard_mask"
    }

    super::unused_hooks!(epsilon, preempt, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        if let Some(h) = &context.hazards {
            self.shown.clone_from(h);
        }
    }

    fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize> {
        explore_unmasked(&self.masked(state), rng)
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        penalise(&self.masked(state), q, self.cfg.penalty);
        None
    }

    fn reset_episode(&mut self) {}

    super::serde_state!();
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvadeConfig {
    /// Manhattan distance from the threat within which the rule acts.
    pub radius: f64,
    /// Q-value subtracted from a masked move on the greedy branch.
    pub penalty: f64,
}

impl Default for EvadeConfig {
    fn default() -> Self {
        EvadeConfig {
            radius: 3.0,
            penalty: 100.0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EvadeChannel {
    cfg: EvadeConfig,
    grid: SquareGrid,
    threat: Option<usize>,
}

impl EvadeChannel {
    pub fn new(cfg: EvadeConfig, n_states: usize) -> Self {
        EvadeChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            threat: None,
        }
    }

    /// Moves that end closer to a threat within the radius.
    fn masked(&self, state: usize) -> Vec<bool> {
        let moves = SquareGrid::MOVES.len();
        let Some(threat) = self.threat.map(|t| self.grid.cell(t)) else {
            return vec![false; moves];
        };
        let here = SquareGrid::distance(self.grid.cell(state), threat);
        if here as f64 > self.cfg.radius {
            return vec![false; moves];
        }
        (0..moves)
            .map(|a| {
                self.grid
                    .step(state, a)
                    .is_some_and(|(_, p)| SquareGrid::distance(p, threat) < here)
            })
            .collect()
    }
}

impl EmotionChannel for EvadeChannel {
    fn name(&self) -> &'static str {
        "evade"
    }

    super::unused_hooks!(epsilon, preempt, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        self.threat = context.threat_state;
    }

    fn explore(&mut self, state: usize, rng: &RngHandle) -> Option<usize> {
        explore_unmasked(&self.masked(state), rng)
    }

    fn bias(&mut self, state: usize, q: &mut [f64], _rng: &RngHandle) -> Option<usize> {
        penalise(&self.masked(state), q, self.cfg.penalty);
        None
    }

    fn reset_episode(&mut self) {
        self.threat = None;
    }

    super::serde_state!();
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuelConfig {
    /// Reserve level (fraction) at or below which the agent heads for a station.
    pub below: f64,
}

impl Default for RefuelConfig {
    fn default() -> Self {
        RefuelConfig { below: 0.3 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RefuelChannel {
    cfg: RefuelConfig,
    grid: SquareGrid,
    stations: Vec<usize>,
    refuel: bool,
}

impl RefuelChannel {
    pub fn new(cfg: RefuelConfig, n_states: usize) -> Self {
        RefuelChannel {
            cfg,
            grid: SquareGrid::new(n_states),
            stations: Vec::new(),
            refuel: false,
        }
    }
}

impl EmotionChannel for RefuelChannel {
    fn name(&self) -> &'static str {
        "refuel"
    }

    super::unused_hooks!(epsilon, explore, on_action, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        let Some(r) = &context.reserve else {
            self.refuel = false;
            return;
        };
        if let Some(s) = &r.stations {
            self.stations.clone_from(s);
        }
        self.refuel = r.level <= self.cfg.below || !r.can_reach_station;
    }

    fn preempt(&mut self, state: usize, _q: &[f64], _rng: &RngHandle) -> Option<usize> {
        if !self.refuel {
            return None;
        }
        self.grid
            .moves_toward_nearest(state, &self.stations)
            .first()
            .copied()
    }

    fn phasic(&self) -> f64 {
        if self.refuel {
            1.0
        } else {
            0.0
        }
    }

    fn reset_episode(&mut self) {
        self.refuel = false;
    }

    super::serde_state!();
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushOnConfig {}

#[derive(Debug, Serialize, Deserialize)]
pub struct PushOnChannel {
    cfg: PushOnConfig,
    /// The last action and whether the move before acting pushed the
    /// obstacle without opening it.
    last: Option<usize>,
    push_again: bool,
}

impl PushOnChannel {
    pub fn new(cfg: PushOnConfig) -> Self {
        PushOnChannel {
            cfg,
            last: None,
            push_again: false,
        }
    }
}

impl EmotionChannel for PushOnChannel {
    fn name(&self) -> &'static str {
        "push_on"
    }

    super::unused_hooks!(epsilon, explore, target_bonus, after_update);

    fn perceive(&mut self, _state: usize, context: &EmotionalContext) {
        self.push_again = context
            .obstacle
            .is_some_and(|o| o.pushed && o.pushes > 0 && o.pushes < o.needed);
    }

    fn preempt(&mut self, _state: usize, _q: &[f64], _rng: &RngHandle) -> Option<usize> {
        if self.push_again {
            self.last
        } else {
            None
        }
    }

    fn on_action(&mut self, action: usize, _how: super::Choice) {
        self.last = Some(action);
    }

    fn reset_episode(&mut self) {
        self.last = None;
        self.push_again = false;
    }

    super::serde_state!();
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatConfig {
    /// Steps an exploratory action lasts (1: plain ε-greedy).
    pub repeat: u32,
}

impl Default for RepeatConfig {
    fn default() -> Self {
        RepeatConfig { repeat: 4 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RepeatChannel {
    cfg: RepeatConfig,
    n_actions: usize,
    /// The exploratory action being repeated and the steps it has left.
    current: Option<(usize, u32)>,
}

impl RepeatChannel {
    pub fn new(cfg: RepeatConfig) -> Self {
        RepeatChannel {
            cfg,
            n_actions: SquareGrid::MOVES.len(),
            current: None,
        }
    }
}

impl EmotionChannel for RepeatChannel {
    fn name(&self) -> &'static str {
        "repeat"
    }

    super::unused_hooks!(perceive, epsilon, on_action, target_bonus, after_update);

    fn preempt(&mut self, _state: usize, q: &[f64], _rng: &RngHandle) -> Option<usize> {
        self.n_actions = q.len();
        let (action, left) = self.current?;
        self.current = (left > 1).then_some((action, left - 1));
        Some(action)
    }

    fn explore(&mut self, _state: usize, rng: &RngHandle) -> Option<usize> {
        let a = rng.randint(self.n_actions.max(1));
        if self.cfg.repeat > 1 {
            self.current = Some((a, self.cfg.repeat - 1));
        }
        Some(a)
    }

    fn reset_episode(&mut self) {
        self.current = None;
    }

    super::serde_state!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::context::Reserve;
    use emorl_core::RngKind;

    fn rng() -> RngHandle {
        RngHandle::new(RngKind::Numpy, 0)
    }

    #[test]
    fn hazard_mask_removes_moves_into_shown_hazards() {
        // 4x4 grid; the agent at (1,1) = 5, a hazard right of it at (1,2) = 6.
        let mut ch = HazardMaskChannel::new(HazardMaskConfig { penalty: 50.0 }, 16);
        let ctx = EmotionalContext {
            hazards: Some(vec![6]),
            ..Default::default()
        };
        ch.perceive(5, &ctx);
        let mut q = [1.0, 1.0, 1.0, 2.0];
        ch.bias(5, &mut q, &rng());
        assert_eq!(q, [1.0, 1.0, 1.0, -48.0]);
        let r = rng();
        for _ in 0..200 {
            assert_ne!(ch.explore(5, &r), Some(3), "explored into the hazard");
        }
        // A context without a map keeps the last one shown.
        ch.perceive(5, &EmotionalContext::default());
        assert_eq!(ch.masked(5), vec![false, false, false, true]);
        // Nothing masked: the learner's own uniform draw is kept.
        assert_eq!(ch.explore(0, &r), None);
    }

    #[test]
    fn evade_masks_approaching_moves_only_within_the_radius() {
        let cfg = EvadeConfig {
            radius: 2.0,
            penalty: 10.0,
        };
        let mut ch = EvadeChannel::new(cfg, 25);
        // Agent (2,2) = 12, threat (2,4) = 14: distance 2, "right" approaches.
        let ctx = EmotionalContext {
            threat_state: Some(14),
            ..Default::default()
        };
        ch.perceive(12, &ctx);
        assert_eq!(ch.masked(12), vec![false, false, false, true]);
        // Agent (0,0): distance 6 > radius, nothing masked.
        assert_eq!(ch.masked(0), vec![false; 4]);
        let mut q = [0.0; 4];
        ch.bias(12, &mut q, &rng());
        assert_eq!(q, [0.0, 0.0, 0.0, -10.0]);
    }

    #[test]
    fn push_on_pushes_again_until_the_obstacle_gives() {
        use emorl_core::context::Obstacle;
        let mut ch = PushOnChannel::new(PushOnConfig::default());
        let r = rng();
        let q = [0.0; 4];
        let ctx = |pushed, pushes| EmotionalContext {
            obstacle: Some(Obstacle {
                pushed,
                pushes,
                needed: 4,
            }),
            ..Default::default()
        };
        ch.on_action(3, super::super::Choice::Explored);
        ch.perceive(0, &ctx(true, 1));
        assert_eq!(ch.preempt(0, &q, &r), Some(3));
        ch.perceive(0, &ctx(true, 4));
        assert_eq!(ch.preempt(0, &q, &r), None, "it gave way");
        ch.perceive(0, &ctx(false, 0));
        assert_eq!(ch.preempt(0, &q, &r), None, "no push");
        ch.perceive(0, &EmotionalContext::default());
        assert_eq!(ch.preempt(0, &q, &r), None, "no obstacle");
    }

    #[test]
    fn repeat_holds_an_exploratory_action_for_its_duration() {
        let mut ch = RepeatChannel::new(RepeatConfig { repeat: 3 });
        let r = rng();
        let q = [0.0; 4];
        assert_eq!(ch.preempt(0, &q, &r), None, "nothing to repeat yet");
        let a = ch.explore(0, &r).expect("draws");
        assert_eq!(ch.preempt(1, &q, &r), Some(a));
        assert_eq!(ch.preempt(2, &q, &r), Some(a));
        assert_eq!(ch.preempt(3, &q, &r), None, "three steps in all");
        ch.explore(0, &r);
        ch.reset_episode();
        assert_eq!(ch.preempt(0, &q, &r), None, "an episode starts afresh");
        // repeat = 1 is plain ε-greedy.
        let mut one = RepeatChannel::new(RepeatConfig { repeat: 1 });
        one.explore(0, &r);
        assert_eq!(one.preempt(0, &q, &r), None);
    }

    #[test]
    fn refuel_heads_for_the_nearest_station_when_low() {
        let mut ch = RefuelChannel::new(RefuelConfig { below: 0.3 }, 16);
        let reserve = |level: f64, stations: Option<Vec<usize>>| EmotionalContext {
            reserve: Some(Reserve {
                level,
                can_reach_station: true,
                stations,
            }),
            ..Default::default()
        };
        // Stations at (0,0) and (3,3); the agent at (2,2) = 10 is nearer (3,3).
        ch.perceive(10, &reserve(0.9, Some(vec![0, 15])));
        assert_eq!(ch.preempt(10, &[0.0; 4], &rng()), None, "not low yet");
        ch.perceive(10, &reserve(0.2, None));
        assert_eq!(ch.preempt(10, &[0.0; 4], &rng()), Some(1), "down first");
        // Out of reach counts as low.
        let far = EmotionalContext {
            reserve: Some(Reserve {
                level: 0.9,
                can_reach_station: false,
                stations: None,
            }),
            ..Default::default()
        };
        ch.perceive(10, &far);
        assert!(ch.preempt(10, &[0.0; 4], &rng()).is_some());
        // Standing on the station: nothing to do.
        ch.perceive(15, &reserve(0.1, None));
        assert_eq!(ch.preempt(15, &[0.0; 4], &rng()), None);
    }
}
