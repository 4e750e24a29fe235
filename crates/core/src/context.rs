//! The emotional context an environment exposes with every step.
//!
//! It is typed, not an untyped info map: each field is something an emotion
//! channel can appraise. Fields an environment does not model stay at their
//! defaults (`None` / `false` / 0).

use serde::{Deserialize, Serialize};

/// What was obtained and what would have been obtained otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counterfactual {
    pub obtained: f64,
    pub foregone: f64,
    /// The action whose outcome was foregone, when there is a single one.
    pub foregone_action: Option<usize>,
}

/// Social signals of a conversation (text environments).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SocialContext {
    pub last_reward: f64,
    pub safety_flag: bool,
    pub user_satisfaction: f64,
    pub repeated_query: bool,
    pub topic_novelty: f64,
    pub contradiction_detected: bool,
    pub cumulative_negative: f64,
    pub cumulative_positive: f64,
    pub failed_attempts: u32,
}

/// How an episode's exploration is going (novelty-seeking environments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    /// Steps since the last first visit of a state in this episode.
    pub steps_since_new: u32,
    /// Distinct states visited in this episode, the current one included.
    pub unique_visited: u32,
}

/// A barrier that gives way after repeated pushes (a jammed door).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Obstacle {
    /// Whether the last move pushed it.
    pub pushed: bool,
    /// Pushes counted so far (reset by walking away).
    pub pushes: u32,
    /// Pushes that open it.
    pub needed: u32,
}

impl Obstacle {
    /// `pushes / needed` (0 when nothing is needed).
    pub fn progress(&self) -> f64 {
        if self.needed == 0 {
            0.0
        } else {
            self.pushes as f64 / self.needed as f64
        }
    }
}

/// A draining resource the agent must renew at stations (a battery).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reserve {
    /// Fraction left, in [0, 1].
    pub level: f64,
    /// Whether the nearest station is within reach with a margin.
    pub can_reach_station: bool,
    /// The stations' cells (state indices) in the environment's order, where
    /// it shows them (e.g. at the start of an episode).
    pub stations: Option<Vec<usize>>,
}

/// Emotional context of the state an environment just moved to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmotionalContext {
    /// Distance to the nearest threat (metric is the environment's), `None` if no threat.
    pub threat_distance: Option<f64>,
    /// Distance to the (nearest) goal.
    pub goal_distance: Option<f64>,
    /// Whether the last move was blocked (wall or boundary).
    pub was_blocked: bool,
    /// Consecutive blocked moves, the current one included (0 if not counted).
    pub consecutive_blocks: u32,
    /// Whether the agent is next to the threat.
    pub near_threat: bool,
    /// The threat's cell (the environment's state index), when it moves.
    pub threat_state: Option<usize>,
    /// Whether the threat just came closer.
    pub threat_approaching: bool,
    /// Whether the agent was just harmed (e.g. fell off a cliff).
    pub harmed: bool,
    /// Reward of the transition that produced this context.
    pub reward: f64,
    /// Counterfactual feedback, when the environment shows it.
    pub counterfactual: Option<Counterfactual>,
    /// Conversation signals, for text environments.
    pub social: Option<SocialContext>,
    /// Exploration progress, for environments that track it.
    pub exploration: Option<Exploration>,
    /// A jammed barrier the agent is working on, where there is one.
    pub obstacle: Option<Obstacle>,
    /// Cells (state indices) the environment shows as hazardous, where it
    /// shows them (e.g. a map handed over at the start of an episode).
    pub hazards: Option<Vec<usize>>,
    /// A resource the agent must keep up, where there is one.
    pub reserve: Option<Reserve>,
}

/// Distance fear, the one formula every agent uses (the tabular fear channel
/// and the coupled fear-DQN): `max_fear · (1 − d / safe)` at distance `d`
/// from the threat ([`EmotionalContext::threat_distance`]) inside `safe`,
/// else 0.
pub fn distance_fear(d: f64, safe: f64, max_fear: f64) -> f64 {
    if d >= safe {
        0.0
    } else {
        max_fear * (1.0 - d / safe)
    }
}
