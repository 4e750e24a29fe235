//! (e) Emotional alignment on held-out dialogue responses: DailyDialog
//! validation turns whose response carries an emotion the judge scores
//! (anger, fear, happiness → joy), answered by each agent under that target
//! emotion (its modules read it as a forced state; `llm-prompted` reads it
//! in its system message; `llm-base` has nothing to read it with), the
//! reply scored by the independent judge and its `emo_alignment_score`
//! taken. Rows are paired by example across agents; every agent is compared
//! with `llm-base` and `llm-prompted` (paired t, d_z, Wilcoxon, Holm over
//! the table).

use emorl_stats::{holm, paired_compare, Table};
use emorl_text::DialogueExample;
use serde::{Deserialize, Serialize};

use super::alignment::{emo_alignment, target_label};
use super::conditions::generate_with_emotion;
use super::dialogue::DialogueComparison;
use super::judge::{Judge, JUDGE_LABELS};
use super::tables::paired_comparison_table;
use crate::agent::LlmAgent;
use crate::error::Result;
use crate::modules::emotion::{EMOTIONS, N_EMOTIONS};

/// One agent's alignment, one score per example (in example order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlignmentEval {
    /// `dialogue id#turn` of each example.
    pub examples: Vec<String>,
    /// The judge label each reply was asked to express.
    pub targets: Vec<String>,
    pub scores: Vec<f64>,
    /// The replies (for `samples.jsonl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<String>,
}

/// Up to `n` examples of `corpus_examples` whose response emotion maps to
/// a judge emotion (not neutral), taking the targets in turn so that rare
/// ones (fear) are not crowded out; the order within a target is kept.
pub fn alignment_examples(corpus_examples: &[DialogueExample], n: usize) -> Vec<DialogueExample> {
    let mut by_target: Vec<Vec<&DialogueExample>> = vec![Vec::new(); N_EMOTIONS];
    for e in corpus_examples {
        if let Some(i) =
            target_label(&e.emotion).and_then(|l| EMOTIONS.iter().position(|&x| x == l))
        {
            by_target[i].push(e);
        }
    }
    let longest = by_target.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| by_target.iter().filter_map(move |t| t.get(i).copied()))
        .take(n)
        .cloned()
        .collect()
}

/// Each example answered by `agent` under its target emotion (sampling seed
/// `seed + index`, so agents draw the same random numbers row by row), the
/// reply scored by `judge`.
pub fn measure_alignment(
    agent: &mut LlmAgent,
    judge: &Judge,
    examples: &[DialogueExample],
    seed: u64,
) -> Result<AlignmentEval> {
    let mut out = AlignmentEval::default();
    for (i, e) in examples.iter().enumerate() {
        let Some(target) = target_label(&e.emotion) else {
            continue;
        };
        let (Some(state), Some(judged)) = (
            EMOTIONS.iter().position(|&x| x == target),
            JUDGE_LABELS.iter().position(|&x| x == target),
        ) else {
            continue;
        };
        let mut phasic = [0.0f32; N_EMOTIONS];
        phasic[state] = 1.0;
        let obs = crate::dual_text::observation(e);
        let reply = generate_with_emotion(agent, &obs, phasic, seed.wrapping_add(i as u64))?;
        let score = emo_alignment(&judge.probabilities(&reply.text), judged);
        out.examples.push(format!("{}#{}", e.dialogue_id, e.turn));
        out.targets.push(target.to_string());
        out.scores.push(score);
        out.replies.push(reply.text);
    }
    Ok(out)
}

/// Each agent against `llm-base` and `llm-prompted` (paired by example,
/// Holm over every comparison), with the mean alignment per agent.
pub fn alignment_table(results: &[(String, AlignmentEval)]) -> Result<Table> {
    let n = results.first().map_or(0, |(_, r)| r.scores.len());
    let title = format!(
        "Emotional alignment (emo_alignment_score) on {n} held-out DailyDialog responses under their target emotion"
    );
    let mut comparisons = Vec::new();
    if n >= 2 {
        for baseline in ["llm-base", "llm-prompted"] {
            let Some((_, b)) = results.iter().find(|(a, _)| a == baseline) else {
                continue;
            };
            for (agent, r) in results {
                if agent == baseline || agent == "llm-base" || r.examples != b.examples {
                    continue;
                }
                let paired = paired_compare(&b.scores, &r.scores)
                    .map_err(|e| crate::params::invalid(format!("alignment table: {e}")))?;
                comparisons.push(DialogueComparison {
                    agent: agent.clone(),
                    baseline: baseline.to_string(),
                    metric: "alignment".into(),
                    paired,
                    p_holm: f64::NAN,
                });
            }
        }
    }
    let adjusted = holm(&comparisons.iter().map(|c| c.paired.p).collect::<Vec<_>>());
    for (c, p) in comparisons.iter_mut().zip(adjusted) {
        c.p_holm = p;
    }
    let mut t = paired_comparison_table(&title, "responses", &comparisons)?;
    if n < 2 {
        t.note("Not measured: no DailyDialog files (set EMORL_DAILYDIALOG_DIR) or alignment_responses < 2.");
        return Ok(t);
    }
    let means: Vec<String> = results
        .iter()
        .map(|(a, r)| format!("{a} {:.3}", emorl_core::numeric::mean(&r.scores)))
        .collect();
    let count = |l: &str| results[0].1.targets.iter().filter(|t| *t == l).count();
    t.note(format!(
        "emo_alignment_score = cosine between the judge's scores of the reply (fear, curiosity, \
         anger, joy, neutral) and the one-hot target; DailyDialog test-split dialogues no agent \
         learns from, targets anger {}, fear {}, joy {}; mean per agent: {}.",
        count("anger"),
        count("fear"),
        count("joy"),
        means.join(", ")
    ));
    Ok(t)
}
