//! Two-arm tabular experiments: the Emotional-ED V2 protocol
//! (docs/protocols/v2.md §4). Each agent family keeps its protocols in its
//! own `protocol` module (`emorl_agents_dqn::protocol` for Exp 16b and 18,
//! `emorl_agents_llm::eval` for the LLM modules).
//!
//! An experiment is a TOML file: an environment, a metric, a control and a
//! treatment agent, and a protocol (training episodes, evaluation episodes).
//! Per seed, the generator is reseeded before each arm, so both arms start
//! from the same state (paired seeds), exactly as upstream does.

use crate::episode::run_episode;
use crate::learner::{QLearner, QLearnerConfig};
use emorl_core::numeric::mean;
use emorl_core::{CoreError, DiscreteEnv, EmoRng, RngHandle, RngKind};
use serde::{Deserialize, Serialize};

/// Why an experiment cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// An unknown environment or agent ID, or an invalid agent config.
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("experiment '{0}': metric needs evaluation episodes (protocol.eval_episodes = 0)")]
    NoEvaluation(String),
    #[error("agent '{agent}': {source}")]
    Agent { agent: String, source: CoreError },
}

type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// What is measured per seed and arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Metric {
    /// Evaluation: mean over episodes of the smallest post-move threat distance.
    MinThreatDistance,
    /// Training: number of blocked moves over all training episodes.
    BlockedSteps,
    /// Training: fraction of steps that chose `action`.
    ActionRate { action: usize },
    /// Evaluation: fraction of episodes that end with `goal` collected.
    GoalRate { goal: String },
    /// Evaluation: mean per episode of steps whose reward is below `below`.
    PenaltySteps { below: f64 },
}

impl Metric {
    /// A short name for a figure's axis.
    pub fn axis_label(&self) -> String {
        match self {
            Metric::MinThreatDistance => "min. threat distance".into(),
            Metric::BlockedSteps => "blocked moves".into(),
            Metric::ActionRate { action } => format!("rate of action {action}"),
            Metric::GoalRate { goal } => format!("{goal} goal rate"),
            Metric::PenaltySteps { .. } => "penalised steps per episode".into(),
        }
    }

    /// Whether the metric is read from the evaluation phase (else from training).
    pub fn from_evaluation(&self) -> bool {
        !matches!(self, Metric::BlockedSteps | Metric::ActionRate { .. })
    }
}

/// One arm: a registered agent, optionally with replaced hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Name shown in tables.
    pub label: String,
    /// Agent ID from the registry.
    pub agent: String,
    /// Replaces the registered defaults entirely when given.
    #[serde(default)]
    pub config: Option<QLearnerConfig>,
}

fn default_max_steps() -> usize {
    100
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub train_episodes: usize,
    #[serde(default)]
    pub eval_episodes: usize,
    /// ε during evaluation (evaluation never updates the agent).
    #[serde(default)]
    pub eval_epsilon: Option<f64>,
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    /// Reset the environment again right after an episode ends (upstream
    /// rebuilds the regret environment after its last trial; this only moves
    /// the shared generator).
    #[serde(default)]
    pub reset_after_done: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short ID (`fear`, `anger`, …).
    pub name: String,
    /// Title for tables.
    pub title: String,
    /// What the metric means, in words.
    pub metric_description: String,
    /// Whether larger metric values are the desirable direction for the treatment.
    pub higher_is_better: bool,
    pub env: String,
    /// Environment for evaluation, if different (transfer to a novel threat).
    #[serde(default)]
    pub eval_env: Option<String>,
    pub metric: Metric,
    pub protocol: Protocol,
    pub control: Arm,
    pub treatment: Arm,
}

/// Both arms' metric for one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedOutcome {
    pub seed: u64,
    pub control: f64,
    pub treatment: f64,
    /// Generator state after the treatment arm, kept where a permutation test
    /// must continue the stream (the last seed of a block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng_after: Option<EmoRng>,
}

impl Experiment {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks that every name resolves, before any work starts.
    pub fn validate(&self) -> Result<()> {
        let envs = emorl_envs_gridworld::registry();
        envs.get(&self.env)?;
        if let Some(e) = &self.eval_env {
            envs.get(e)?;
        }
        for arm in [&self.control, &self.treatment] {
            self.agent_config(arm)?.validate()?;
        }
        if self.metric.from_evaluation() && self.protocol.eval_episodes == 0 {
            return Err(ProtocolError::NoEvaluation(self.name.clone()));
        }
        Ok(())
    }

    pub fn agent_config(&self, arm: &Arm) -> Result<QLearnerConfig> {
        let reg = crate::registry();
        let entry = reg.get(&arm.agent)?;
        Ok(arm.config.clone().unwrap_or_else(entry.make))
    }

    /// Runs both arms for one seed.
    pub fn run_seed(&self, seed: u64, kind: RngKind, keep_rng: bool) -> Result<SeedOutcome> {
        let rng = RngHandle::new(kind, seed);
        let control = self.run_arm(&self.control, seed, &rng)?;
        let treatment = self.run_arm(&self.treatment, seed, &rng)?;
        Ok(SeedOutcome {
            seed,
            control,
            treatment,
            rng_after: keep_rng.then(|| rng.snapshot()),
        })
    }

    fn make_env(&self, id: &str, rng: &RngHandle) -> Result<Box<dyn DiscreteEnv>> {
        let reg = emorl_envs_gridworld::registry();
        Ok((reg.get(id)?.make)(rng.clone()))
    }

    /// One arm: reseed, build, train, evaluate, and return the metric.
    pub fn run_arm(&self, arm: &Arm, seed: u64, rng: &RngHandle) -> Result<f64> {
        rng.reseed(seed);
        let mut env = self.make_env(&self.env, rng)?;
        let mut eval_env = match &self.eval_env {
            Some(id) => Some(self.make_env(id, rng)?),
            None => None,
        };
        let cfg = self.agent_config(arm)?;
        let mut agent = QLearner::new(env.n_states(), env.n_actions(), cfg).map_err(|source| {
            ProtocolError::Agent {
                agent: arm.agent.clone(),
                source,
            }
        })?;
        let p = &self.protocol;

        let mut train_steps = 0usize;
        let mut train_count = 0usize;
        for _ in 0..p.train_episodes {
            let s = run_episode(env.as_mut(), &mut agent, rng, p.max_steps, true, |st, _| {
                train_steps += 1;
                train_count += usize::from(match &self.metric {
                    Metric::BlockedSteps => st.step.context.was_blocked,
                    Metric::ActionRate { action } => st.action == *action,
                    _ => false,
                });
            });
            if p.reset_after_done && s.done {
                env.reset(None);
            }
        }
        match self.metric {
            Metric::BlockedSteps => return Ok(train_count as f64),
            Metric::ActionRate { .. } => return Ok(train_count as f64 / train_steps.max(1) as f64),
            _ => {}
        }

        if let Some(eps) = p.eval_epsilon {
            agent.set_epsilon(eps);
        }
        let env = eval_env.as_mut().unwrap_or(&mut env);
        let mut per_episode = Vec::with_capacity(p.eval_episodes);
        for _ in 0..p.eval_episodes {
            let mut min_threat = f64::INFINITY;
            let mut penalties = 0usize;
            let mut goal_hit = false;
            run_episode(
                env.as_mut(),
                &mut agent,
                rng,
                p.max_steps,
                false,
                |st, _| {
                    let ctx = &st.step.context;
                    match &self.metric {
                        Metric::MinThreatDistance => {
                            min_threat =
                                min_threat.min(ctx.threat_distance.unwrap_or(f64::INFINITY))
                        }
                        Metric::PenaltySteps { below } => {
                            penalties += usize::from(st.step.reward < *below)
                        }
                        Metric::GoalRate { goal } if st.step.terminated => {
                            goal_hit = st.step.info.contains_key(&format!("collected_{goal}"));
                        }
                        _ => {}
                    }
                },
            );
            per_episode.push(match self.metric {
                Metric::MinThreatDistance => min_threat,
                Metric::PenaltySteps { .. } => penalties as f64,
                _ => f64::from(u8::from(goal_hit)),
            });
        }
        Ok(match self.metric {
            Metric::GoalRate { .. } => {
                per_episode.iter().sum::<f64>() / per_episode.len().max(1) as f64
            }
            _ => mean(&per_episode),
        })
    }
}
