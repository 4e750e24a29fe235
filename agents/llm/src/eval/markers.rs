//! (a) The marker metric: generations under forced states, scored per row.

use emorl_core::numeric::mean;
use emorl_lm::Generation;
use emorl_stats::{holm, paired_compare, PairedComparison};
use serde::{Deserialize, Serialize};

use super::conditions::{forced_emotion, EmotionCondition};
use super::judge::Judge;
use super::prompts::prompt_observation;
use crate::agent::LlmAgent;
use crate::error::Result;
use crate::lexicon::{emotion_markers, marker_rate, LexiconPart};
use crate::modules::emotion::N_EMOTIONS;
use crate::params::invalid;

/// Most sequences generated in one batch (bounds the KV cache: 64 rows of
/// SmolLM2 at ~130 positions hold ~0.4 GB in f32).
const GENERATION_BATCH: usize = 64;

/// Generates `n_samples` responses to each of `prompts` (user messages, see
/// [`prompt_observation`]) with the agent's modules under `condition`.
/// Row `i * n_samples + j` is prompt `i`, sample `j`; its sampling stream
/// depends only on `seed` and the row, so two calls that differ only in
/// `condition` use the same random numbers row by row. The agent's own
/// temperature is used; the episode state is neither read nor changed.
pub fn generate_under(
    agent: &mut LlmAgent,
    condition: EmotionCondition,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
) -> Result<Vec<Generation>> {
    if prompts.is_empty() || n_samples == 0 || max_new_tokens == 0 {
        return Err(invalid(
            "marker metric: prompts, n_samples and max_new_tokens must be non-empty / > 0",
        ));
    }
    let _g = tch::no_grad_guard();
    let ids = prompts
        .iter()
        .map(|p| agent.encode_prompt_for(&prompt_observation(p), Some(&condition.phasic())))
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<Vec<u32>> = ids
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n_samples))
        .collect();
    let mut opts = agent.generate_options(0);
    opts.max_new_tokens = max_new_tokens;
    let device = agent.model().device();
    let mut out = Vec::with_capacity(rows.len());
    for (c, chunk) in rows.chunks(GENERATION_BATCH).enumerate() {
        let emotion = forced_emotion(condition, chunk.len() as i64, device)?;
        let hooks = agent.hooks(&emotion, emorl_lm::response_start(chunk))?;
        opts.seed = seed.wrapping_add(c as u64);
        out.extend(
            agent
                .model_mut()
                .generate_from_tokens(chunk, &opts, Some(&hooks), None)?,
        );
    }
    Ok(out)
}

/// How a response's emotion is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// The independent judge's probability of the emotion ([`Judge`]).
    Judge,
    /// Words of the held-out lexicon half per 100 words (nothing trained on them).
    HeldOut,
    /// Words of the whole lexicon per 100 words (upstream's metric).
    Full,
}

impl Measure {
    /// Every measure, in table order.
    pub const ALL: [Measure; 3] = [Measure::Judge, Measure::HeldOut, Measure::Full];

    pub fn name(self) -> &'static str {
        match self {
            Measure::Judge => "judge",
            Measure::HeldOut => "held-out lexicon",
            Measure::Full => "full lexicon",
        }
    }

    /// The value of one response for `emotion` (`None`: the judge is
    /// missing or does not know the emotion).
    pub fn score(self, text: &str, emotion: &str, judge: Option<&Judge>) -> Option<f64> {
        match self {
            Measure::Judge => judge.and_then(|j| j.probability(text, emotion)),
            Measure::HeldOut | Measure::Full => {
                let part = if self == Measure::HeldOut {
                    LexiconPart::HeldOut
                } else {
                    LexiconPart::Full
                };
                emotion_markers(emotion, part).map(|m| marker_rate(text, &m))
            }
        }
    }
}

/// One emotion's effect on one measure: per-response values under the
/// neutral state and under that emotion, paired by row (same prompt, same
/// sample index, same sampling stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmotionEffect {
    pub emotion: String,
    pub measure: Measure,
    pub neutral: Vec<f64>,
    pub emotional: Vec<f64>,
    /// Paired t-test, d_z and Wilcoxon signed-rank of emotional − neutral.
    pub paired: PairedComparison,
    /// The paired t p-value after Holm's correction over every test of the
    /// table it belongs to (set by [`holm_adjust`]; the raw p until then).
    pub p_holm: f64,
}

impl EmotionEffect {
    /// From paired values (at least two pairs).
    pub fn from_pairs(
        emotion: &str,
        measure: Measure,
        neutral: Vec<f64>,
        emotional: Vec<f64>,
    ) -> Result<Self> {
        let paired = paired_compare(&neutral, &emotional)?;
        Ok(EmotionEffect {
            emotion: emotion.to_string(),
            measure,
            p_holm: paired.p,
            neutral,
            emotional,
            paired,
        })
    }

    /// d_z: mean difference over the SD of the differences.
    pub fn d(&self) -> f64 {
        self.paired.d_z
    }
    pub fn neutral_mean(&self) -> f64 {
        mean(&self.neutral)
    }
    pub fn emotional_mean(&self) -> f64 {
        mean(&self.emotional)
    }
}

/// Holm-adjusts the paired p-values of `effects` as one family.
pub fn holm_adjust<'a>(effects: impl IntoIterator<Item = &'a mut EmotionEffect>) {
    let mut effects: Vec<&mut EmotionEffect> = effects.into_iter().collect();
    let raw: Vec<f64> = effects.iter().map(|e| e.paired.p).collect();
    for (e, p) in effects.iter_mut().zip(holm(&raw)) {
        e.p_holm = p;
    }
}

/// The marker metric with the generations it scored.
#[derive(Debug)]
pub struct MarkerRun {
    /// Per emotion (in [`crate::EMOTIONS`] order), one per measure scored.
    pub effects: Vec<EmotionEffect>,
    /// The neutral generations, then one set per [`EmotionCondition::EMOTIONAL`].
    pub generations: Vec<(EmotionCondition, Vec<Generation>)>,
}

impl MarkerRun {
    /// Every generation of every condition.
    pub fn all_generations(&self) -> Vec<&Generation> {
        self.generations.iter().flat_map(|(_, g)| g).collect()
    }
}

/// The forced-emotion effect: `n_samples` responses to each prompt under
/// the neutral state and under each emotion high (the same sampling
/// stream row by row), each scored by the judge (when given) and by the
/// held-out and full lexicons, compared pairwise. `llm-base` ignores the
/// state, so its two sides are identical and every difference is 0.
pub fn marker_run(
    agent: &mut LlmAgent,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
    judge: Option<&Judge>,
) -> Result<MarkerRun> {
    if prompts.len() * n_samples < 2 {
        return Err(invalid(
            "marker metric: needs at least two responses per condition",
        ));
    }
    let neutral = generate_under(
        agent,
        EmotionCondition::Neutral,
        prompts,
        n_samples,
        seed,
        max_new_tokens,
    )?;
    let mut effects = Vec::with_capacity(N_EMOTIONS * Measure::ALL.len());
    let mut generations = Vec::with_capacity(N_EMOTIONS + 1);
    for cond in EmotionCondition::EMOTIONAL {
        let gens = generate_under(agent, cond, prompts, n_samples, seed, max_new_tokens)?;
        for measure in Measure::ALL {
            let score = |g: &[Generation]| -> Option<Vec<f64>> {
                g.iter()
                    .map(|g| measure.score(&g.text, cond.name(), judge))
                    .collect()
            };
            if let (Some(n), Some(e)) = (score(&neutral), score(&gens)) {
                effects.push(EmotionEffect::from_pairs(cond.name(), measure, n, e)?);
            }
        }
        generations.push((cond, gens));
    }
    generations.insert(0, (EmotionCondition::Neutral, neutral));
    Ok(MarkerRun {
        effects,
        generations,
    })
}

/// [`marker_run`]'s effects alone.
pub fn marker_effect(
    agent: &mut LlmAgent,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
    judge: Option<&Judge>,
) -> Result<Vec<EmotionEffect>> {
    Ok(marker_run(agent, prompts, n_samples, seed, max_new_tokens, judge)?.effects)
}
