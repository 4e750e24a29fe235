//! The Exp 16b and Exp 18 protocols, one seed and one agent at a time, plus a
//! small parallel runner over seeds. Statistics across seeds (t-tests, effect
//! sizes, permutation tests) belong to the caller.
//!
//! Every random draw of a seed — initial weights, ε, replay sampling, slips —
//! comes from one [`RngHandle`] built from the seed; torch's global generator
//! is not used, so workers in parallel stay reproducible.

use crate::config::{DqnConfig, EpsilonSchedule};
use crate::episode::run_episode;
use crate::error::DqnError;
use crate::learner::DqnAgent;
use emorl_core::numeric::{mean, std_dev};
use emorl_core::{DiscreteEnv, RngHandle, RngKind};
use emorl_envs_gridworld::{SlipperyCliffEnv, TerminalThreatGrid};
use serde::{Deserialize, Serialize};

/// One libtorch thread for the calling thread, and torch's seed.
/// (Call it in every worker: the intra-op thread count is per thread.)
pub fn seed_everything(seed: u64) {
    tch::set_num_threads(1);
    tch::manual_seed(seed as i64);
}

/// First episode `ep ∈ [window, len)` whose preceding `window` episodes
/// average at least `criterion`; `len` when none does (upstream
/// `episodes_to_criterion(..., 'above')`).
pub fn episodes_to_criterion(curve: &[f64], criterion: f64, window: usize) -> usize {
    (window.max(1)..curve.len())
        .find(|&ep| mean(&curve[ep - window.max(1)..ep]) >= criterion)
        .unwrap_or(curve.len())
}

fn check_settings(episodes: usize, max_steps: usize) -> Result<(), DqnError> {
    if episodes == 0 || max_steps == 0 {
        return Err(DqnError::InvalidConfig(
            "a protocol needs at least one episode and one step per episode".into(),
        ));
    }
    Ok(())
}

/// Exp 16b settings (docs/protocols/v2.md §5.4–5.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoupledGridSettings {
    pub episodes: usize,
    pub max_steps: usize,
    pub rng: RngKind,
    pub criterion_window: usize,
    /// Criterion on the per-episode minimum threat distance.
    pub threat_criterion: f64,
    /// Criterion on the episode return.
    pub reward_criterion: f64,
    /// Final performance = mean over this many last episodes.
    pub final_window: usize,
}

impl Default for CoupledGridSettings {
    fn default() -> Self {
        CoupledGridSettings {
            episodes: 500,
            max_steps: 100,
            rng: RngKind::Fast,
            criterion_window: 20,
            threat_criterion: 1.5,
            reward_criterion: 0.5,
            final_window: 50,
        }
    }
}

/// One seed of Exp 16b for one agent. All episodes are learning episodes (Q-16b-NOEVAL).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoupledGridSeed {
    pub seed: u64,
    pub rewards: Vec<f64>,
    pub min_threat_distance: Vec<f64>,
    pub steps: Vec<usize>,
    /// Episodes that ended on the threat.
    pub threat_hits: usize,
    pub episodes_to_threat_criterion: usize,
    pub episodes_to_reward_criterion: usize,
    pub final_threat_distance: f64,
    pub final_reward: f64,
}

/// Runs Exp 16b for one seed: a fresh grid and agent, `episodes` learning episodes.
pub fn coupled_grid_seed(
    seed: u64,
    agent_cfg: &DqnConfig,
    settings: &CoupledGridSettings,
) -> Result<CoupledGridSeed, DqnError> {
    check_settings(settings.episodes, settings.max_steps)?;
    seed_everything(seed);
    let rng = RngHandle::new(settings.rng, seed);
    let mut env = TerminalThreatGrid::new();
    let mut agent = DqnAgent::new(4, env.n_actions(), agent_cfg.clone(), &rng)?;
    let n = settings.episodes;
    let (mut rewards, mut min_threat, mut steps) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut threat_hits = 0;
    for _ in 0..n {
        let s = run_episode(&mut env, &mut agent, &rng, settings.max_steps, true)?;
        rewards.push(s.episode_return);
        min_threat.push(s.min_threat_distance.unwrap_or(f64::INFINITY));
        steps.push(s.steps);
        threat_hits += usize::from(!s.survived);
    }
    let tail = n.saturating_sub(settings.final_window);
    tracing::debug!(
        seed,
        threat_hits,
        updates = agent.training_state().updates,
        "exp16b seed done"
    );
    Ok(CoupledGridSeed {
        seed,
        episodes_to_threat_criterion: episodes_to_criterion(
            &min_threat,
            settings.threat_criterion,
            settings.criterion_window,
        ),
        episodes_to_reward_criterion: episodes_to_criterion(
            &rewards,
            settings.reward_criterion,
            settings.criterion_window,
        ),
        final_threat_distance: mean(&min_threat[tail..]),
        final_reward: mean(&rewards[tail..]),
        rewards,
        min_threat_distance: min_threat,
        steps,
        threat_hits,
    })
}

/// Exp 18 settings (docs/protocols/v2.md §6.4–6.5). The protocol owns the ε schedule (both
/// agents decay 1.0 → ×0.995 per training episode, floor 0.05).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CliffSettings {
    pub train_episodes: usize,
    pub eval_episodes: usize,
    pub max_steps: usize,
    pub slip_prob: f64,
    pub time_penalty: f64,
    pub rng: RngKind,
    pub epsilon: EpsilonSchedule,
    pub survival_window: usize,
    pub survival_criterion: f64,
}

impl Default for CliffSettings {
    fn default() -> Self {
        CliffSettings {
            train_episodes: 500,
            eval_episodes: 100,
            max_steps: 200,
            slip_prob: 0.2,
            time_penalty: -1.0,
            rng: RngKind::Fast,
            epsilon: EpsilonSchedule::PerEpisodeDecay {
                start: 1.0,
                decay: 0.995,
                min: 0.05,
            },
            survival_window: 50,
            survival_criterion: 0.7,
        }
    }
}

/// One seed of Exp 18 for one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CliffSeed {
    pub seed: u64,
    /// Evaluation (greedy, slips on): fraction of episodes without a fall.
    pub survival_rate: f64,
    pub goal_rate: f64,
    pub mean_reward: f64,
    /// Population SD of evaluation returns.
    pub std_reward: f64,
    pub mean_steps: f64,
    /// Training: 1 where the episode had no fall.
    pub training_survival: Vec<f64>,
    pub training_rewards: Vec<f64>,
    pub episodes_to_survival_criterion: usize,
}

/// Trains and evaluates one agent on a cliff that shares `rng` (slips, ε,
/// replay and initial weights all draw from it, as upstream's one stream).
pub fn cliff_arm(
    seed: u64,
    rng: &RngHandle,
    agent_cfg: &DqnConfig,
    settings: &CliffSettings,
) -> Result<CliffSeed, DqnError> {
    check_settings(settings.train_episodes, settings.max_steps)?;
    let mut env =
        SlipperyCliffEnv::with_params(rng.clone(), settings.slip_prob, settings.time_penalty);
    let cfg = DqnConfig {
        epsilon: settings.epsilon.clone(),
        ..agent_cfg.clone()
    };
    let n_features = env.n_states();
    let mut agent = DqnAgent::new(n_features, env.n_actions(), cfg, rng)?;
    let mut training_survival = Vec::with_capacity(settings.train_episodes);
    let mut training_rewards = Vec::with_capacity(settings.train_episodes);
    for _ in 0..settings.train_episodes {
        let s = run_episode(&mut env, &mut agent, rng, settings.max_steps, true)?;
        training_survival.push(f64::from(u8::from(s.survived)));
        training_rewards.push(s.episode_return);
    }
    let (mut rewards, mut steps) = (Vec::new(), Vec::new());
    let (mut survived, mut goals) = (0usize, 0usize);
    for _ in 0..settings.eval_episodes {
        let s = run_episode(&mut env, &mut agent, rng, settings.max_steps, false)?;
        rewards.push(s.episode_return);
        steps.push(s.steps as f64);
        survived += usize::from(s.survived);
        goals += usize::from(s.reached_goal);
    }
    let n_eval = settings.eval_episodes.max(1) as f64;
    tracing::debug!(seed, survived, goals, "exp18 arm done");
    Ok(CliffSeed {
        seed,
        survival_rate: survived as f64 / n_eval,
        goal_rate: goals as f64 / n_eval,
        mean_reward: mean(&rewards),
        std_reward: std_dev(&rewards, 0),
        mean_steps: mean(&steps),
        episodes_to_survival_criterion: episodes_to_criterion(
            &training_survival,
            settings.survival_criterion,
            settings.survival_window,
        ),
        training_survival,
        training_rewards,
    })
}

/// Runs Exp 18 for one seed and one agent on a fresh stream (paired seeds).
pub fn cliff_seed(
    seed: u64,
    agent_cfg: &DqnConfig,
    settings: &CliffSettings,
) -> Result<CliffSeed, DqnError> {
    seed_everything(seed);
    let rng = RngHandle::new(settings.rng, seed);
    cliff_arm(seed, &rng, agent_cfg, settings)
}

/// Upstream's pairing (Q-18-NOTPAIRED): one stream per seed, the control arm
/// first, the treatment arm continuing the same stream without reseeding.
pub fn cliff_seed_unpaired(
    seed: u64,
    control: &DqnConfig,
    treatment: &DqnConfig,
    settings: &CliffSettings,
) -> Result<(CliffSeed, CliffSeed), DqnError> {
    seed_everything(seed);
    let rng = RngHandle::new(settings.rng, seed);
    let c = cliff_arm(seed, &rng, control, settings)?;
    let t = cliff_arm(seed, &rng, treatment, settings)?;
    Ok((c, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_uses_the_window_before_the_episode() {
        let curve = [0.0, 0.0, 1.0, 1.0, 1.0];
        // ep 4: mean(curve[2..4]) = 1.0 is the first window at/above 1.0.
        assert_eq!(episodes_to_criterion(&curve, 1.0, 2), 4);
        assert_eq!(episodes_to_criterion(&curve, 0.5, 2), 3);
        assert_eq!(episodes_to_criterion(&curve, 2.0, 2), 5);
        assert_eq!(episodes_to_criterion(&[], 0.0, 20), 0);
    }
}
