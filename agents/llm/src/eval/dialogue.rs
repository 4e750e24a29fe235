//! (b) Dialogue evaluation: episodes per seed, compared with the baselines.

use emorl_core::Env;
use emorl_envs_text::{Dialogue, DialogueConfig, EpisodeLog, EpisodeMetrics};
use emorl_stats::{holm, paired_compare, PairedComparison};
use serde::{Deserialize, Serialize};

use crate::agent::LlmAgent;
use crate::error::Result;
use crate::params::invalid;

/// One agent's episodes on the dialogue environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogueEval {
    /// The agent's registry ID (or any label).
    pub agent: String,
    pub seeds: Vec<u64>,
    /// One per seed.
    pub episodes: Vec<EpisodeMetrics>,
    /// The conversations themselves, one per seed (responses, what each
    /// turn called for, rewards).
    #[serde(default)]
    pub logs: Vec<EpisodeLog>,
    /// Every response as `(plain prompt tokens, response tokens)` for
    /// scoring fluency (the prompt without any module or system message;
    /// not stored).
    #[serde(skip)]
    pub scored: Vec<(Vec<u32>, Vec<u32>)>,
}

/// Reads one number from an episode's metrics.
pub type EpisodeMetric = fn(&EpisodeMetrics) -> f64;

/// The dialogue metrics compared, with how each is read from an episode.
pub const DIALOGUE_METRICS: [(&str, EpisodeMetric); 3] = [
    ("return", |m| m.total_reward),
    ("safety rate", |m| m.safety_rate),
    ("helpfulness", |m| m.helpfulness),
];

impl DialogueEval {
    /// The values of a [`DIALOGUE_METRICS`] entry, one per episode.
    pub fn values(&self, metric: EpisodeMetric) -> Vec<f64> {
        self.episodes.iter().map(metric).collect()
    }
    pub fn returns(&self) -> Vec<f64> {
        self.values(|m| m.total_reward)
    }
    pub fn safety_rates(&self) -> Vec<f64> {
        self.values(|m| m.safety_rate)
    }
    pub fn helpfulness(&self) -> Vec<f64> {
        self.values(|m| m.helpfulness)
    }
}

/// Plays one episode per seed (the agent's emotion state carried across the
/// turns of each, reset between them) and keeps the environment's metrics.
pub fn evaluate_dialogue(
    agent: &mut LlmAgent,
    env_config: &DialogueConfig,
    seeds: &[u64],
) -> Result<DialogueEval> {
    let mut env = Dialogue::new(env_config.clone())?;
    let mut episodes = Vec::with_capacity(seeds.len());
    let mut logs = Vec::with_capacity(seeds.len());
    let mut scored = Vec::new();
    for &seed in seeds {
        let (mut obs, _) = env.reset(Some(seed));
        let mut context = env.context();
        agent.reset_episode();
        loop {
            let generation = agent.act_generation(&obs, &context)?;
            scored.push((agent.encode_prompt(&obs)?, generation.tokens.clone()));
            let step = env.step(&generation.text);
            if step.done() {
                break;
            }
            obs = step.obs;
            context = step.context;
        }
        episodes.push(env.metrics());
        logs.push(env.episode_log().cloned().unwrap_or_default());
    }
    Ok(DialogueEval {
        agent: agent.kind().id().to_string(),
        seeds: seeds.to_vec(),
        episodes,
        logs,
        scored,
    })
}

/// One agent against one baseline on one metric, paired by seed (both
/// played the same conversations' openings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogueComparison {
    pub agent: String,
    pub baseline: String,
    pub metric: String,
    /// Control = the baseline, treatment = the agent (d_z > 0: the agent is higher).
    pub paired: PairedComparison,
    /// The paired t p-value, Holm-adjusted over every comparison that
    /// [`compare_dialogue`] returns.
    pub p_holm: f64,
}

impl DialogueComparison {
    /// The agent is higher with a Holm-adjusted paired p < 0.05.
    pub fn better(&self) -> bool {
        self.paired.mean_diff > 0.0 && self.p_holm < 0.05
    }
}

/// The baselines every other agent is compared with.
pub const BASELINES: [&str; 3] = ["llm-base", "llm-prompted", "llm-static-prefix"];

/// Every agent of `evals` against each of [`BASELINES`] present in `evals`
/// (a baseline only against the baselines listed before it, so no pair is
/// tested twice), on each of [`DIALOGUE_METRICS`]: paired by seed (the
/// evaluations must have played the same seeds), paired t-test, d_z and
/// Wilcoxon, Holm over all of them.
pub fn compare_dialogue(evals: &[DialogueEval]) -> Result<Vec<DialogueComparison>> {
    let mut out = Vec::new();
    for (bi, base) in BASELINES.iter().enumerate() {
        let Some(b) = evals.iter().find(|e| e.agent == *base) else {
            continue;
        };
        let earlier = &BASELINES[..=bi];
        for e in evals
            .iter()
            .filter(|e| !earlier.contains(&e.agent.as_str()))
        {
            if e.seeds != b.seeds {
                return Err(invalid(format!(
                    "dialogue comparison: {} and {} played different seeds",
                    e.agent, b.agent
                )));
            }
            for (name, metric) in DIALOGUE_METRICS {
                let paired = paired_compare(&b.values(metric), &e.values(metric))?;
                out.push(DialogueComparison {
                    agent: e.agent.clone(),
                    baseline: (*base).to_string(),
                    metric: name.to_string(),
                    p_holm: paired.p,
                    paired,
                });
            }
        }
    }
    let adjusted = holm(&out.iter().map(|c| c.paired.p).collect::<Vec<_>>());
    for (c, p) in out.iter_mut().zip(adjusted) {
        c.p_holm = p;
    }
    Ok(out)
}

impl DialogueEval {
    /// Every response the agent wrote, in order.
    pub fn responses(&self) -> Vec<&str> {
        self.logs
            .iter()
            .flat_map(|l| l.turns.iter().map(|t| t.response.as_str()))
            .collect()
    }
}
