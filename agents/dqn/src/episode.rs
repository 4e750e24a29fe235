//! The episode loop and its per-episode statistics.

use crate::error::DqnError;
use crate::learner::DqnAgent;
use emorl_core::{ByRef, DiscreteEnv, Env, EpisodeStatistics, RngHandle, TimeLimit};

/// Totals of one episode, ready for logging.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpisodeStats {
    pub episode_return: f64,
    pub steps: usize,
    /// The environment ended the episode (goal or harm), not the step cap.
    pub terminated: bool,
    /// Not harmed during the episode (no threat hit, no fall).
    pub survived: bool,
    /// Ended by the environment without harm.
    pub reached_goal: bool,
    /// Smallest post-move threat distance (start excluded); `None` without a threat.
    pub min_threat_distance: Option<f64>,
    /// ε in force during the episode.
    pub epsilon: f64,
    /// Gradient steps taken during the episode.
    pub updates: usize,
    /// Mean TD loss over the episode's gradient steps.
    pub td_loss: Option<f64>,
    /// Mean `Q(s, a)` over the episode's sampled batches.
    pub q_mean: Option<f64>,
    /// Mean fear of the states acted in (with a fear module).
    pub fear_mean: Option<f64>,
    /// Mean loss of the fear module's own network.
    pub fear_loss: Option<f64>,
    /// Learning rate after the episode.
    pub learning_rate: f64,
}

impl EpisodeStats {
    /// TensorBoard scalars under CleanRL's tag names (`charts/…`, `losses/…`, `emotion/…`).
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("charts/episodic_return", self.episode_return),
            ("charts/episodic_length", self.steps as f64),
            ("charts/epsilon", self.epsilon),
            ("charts/survived", f64::from(u8::from(self.survived))),
            (
                "charts/reached_goal",
                f64::from(u8::from(self.reached_goal)),
            ),
            ("charts/learning_rate", self.learning_rate),
        ];
        let optional = [
            ("charts/min_threat_distance", self.min_threat_distance),
            ("losses/td_loss", self.td_loss),
            ("losses/q_values", self.q_mean),
            ("losses/fear_loss", self.fear_loss),
            ("emotion/fear", self.fear_mean),
        ];
        v.extend(optional.into_iter().filter_map(|(k, x)| x.map(|x| (k, x))));
        v
    }
}

fn mean_of(sum: f64, n: usize) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// Runs one episode of at most `max_steps` steps. With `learn`, the agent
/// explores (ε), stores every transition, takes its gradient steps, and the
/// ε schedule advances at the end; without, it acts greedily and learns nothing.
/// The step cap does not make the last transition terminal.
pub fn run_episode(
    env: &mut dyn DiscreteEnv,
    agent: &mut DqnAgent,
    rng: &RngHandle,
    max_steps: usize,
    learn: bool,
) -> Result<EpisodeStats, DqnError> {
    if max_steps == 0 {
        return Ok(EpisodeStats {
            epsilon: agent.epsilon(),
            survived: true,
            ..Default::default()
        });
    }
    let mut env = EpisodeStatistics::new(TimeLimit::new(ByRef(env), max_steps));
    let (state, _) = env.reset(None);
    let mut context = env.context();
    let mut features = env.features(state);
    agent.begin_episode();
    let mut stats = EpisodeStats {
        epsilon: agent.epsilon(),
        survived: true,
        ..Default::default()
    };
    let (mut loss_sum, mut q_sum, mut fear_sum, mut fear_loss_sum) = (0.0, 0.0, 0.0, 0.0);
    let (mut fear_n, mut fear_loss_n) = (0usize, 0usize);
    loop {
        let action = agent.act(&features, &context, rng, learn)?;
        if let Some(f) = agent.last_fear() {
            fear_sum += f;
            fear_n += 1;
        }
        let step = env.step(&action);
        let next_features = env.features(step.obs);
        if learn {
            let update = agent.observe(
                &features,
                action,
                step.reward,
                &next_features,
                step.terminated,
                &step.context,
                rng,
            )?;
            if let Some(u) = update {
                stats.updates += 1;
                loss_sum += u.td_loss;
                q_sum += u.q_mean;
                if let Some(fl) = u.fear_loss {
                    fear_loss_sum += fl;
                    fear_loss_n += 1;
                }
            }
        }
        if let Some(d) = step.context.threat_distance {
            stats.min_threat_distance = Some(stats.min_threat_distance.map_or(d, |m| m.min(d)));
        }
        if step.context.harmed {
            stats.survived = false;
        }
        if step.done() {
            stats.terminated = step.terminated;
            stats.reached_goal = step.terminated && !step.context.harmed;
            stats.episode_return = env.episode_return();
            stats.steps = env.length();
            break;
        }
        features = next_features;
        context = step.context;
    }
    stats.td_loss = mean_of(loss_sum, stats.updates);
    stats.q_mean = mean_of(q_sum, stats.updates);
    stats.fear_mean = mean_of(fear_sum, fear_n);
    stats.fear_loss = mean_of(fear_loss_sum, fear_loss_n);
    stats.learning_rate = agent.training_state().learning_rate;
    if learn {
        agent.end_episode();
    }
    Ok(stats)
}
