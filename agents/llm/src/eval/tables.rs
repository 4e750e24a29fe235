//! Markdown/JSON tables of the evaluation.

use emorl_core::numeric::mean;
use emorl_stats::{min_detectable_dz, Cell, Row, Table};

use super::dialogue::{DialogueComparison, DialogueEval, BASELINES};
use super::fluency::Fluency;
use super::judge::{JudgeReport, BERT_MACRO_F1_28};
use super::markers::{EmotionEffect, Measure};
use crate::agent::AgentKind;
use crate::error::Result;
use crate::supervision::EncoderReport;

/// Cohen's d of emotion-marker counts upstream (Python) measured for the
/// module an agent corresponds to: prefix 0.00, adapter −0.26, ERM 0.00,
/// activation steering 0.91; `None` for agents upstream had no match for.
pub fn upstream_marker_d(agent: &str) -> Option<f64> {
    match AgentKind::from_id(agent).ok()? {
        AgentKind::Prefix => Some(0.0),
        AgentKind::Gate => Some(-0.26),
        AgentKind::Erm => Some(0.0),
        AgentKind::Steer => Some(0.91),
        _ => None,
    }
}

/// The forced-emotion target: d_z ≥ 0.8 with a Holm-adjusted p < 0.05.
pub const MARKER_D_TARGET: f64 = 0.8;
/// The fluency target: perplexity at most 10% above `llm-base`'s.
pub const PERPLEXITY_RATIO_TARGET: f64 = 1.10;
/// The repetition target: distinct-2 within 10% of `llm-base`'s.
pub const DISTINCT2_TOLERANCE: f64 = 0.10;
/// The significance level of every table.
pub const ALPHA: f64 = 0.05;

fn yes_no(b: bool) -> Cell {
    Cell::text(if b { "yes" } else { "no" })
}

impl EmotionEffect {
    /// The effect reaches the target: d_z ≥ 0.8 and Holm p < 0.05.
    pub fn meets_target(&self) -> bool {
        self.d() >= MARKER_D_TARGET && self.p_holm < ALPHA
    }
}

/// Forced-emotion table: one row per agent × emotion × measure.
pub fn marker_table(results: &[(String, Vec<EmotionEffect>)]) -> Result<Table> {
    let mut t = Table::new(
        "Forced-emotion effect (emotional vs neutral state, paired by prompt × sample)",
        [
            "Agent",
            "Emotion",
            "Measure",
            "Pairs",
            "Neutral mean",
            "Emotional mean",
            "d_z",
            "p (paired t)",
            "p (Holm)",
            "p (Wilcoxon)",
            "Upstream d",
            "Target met",
        ],
    );
    let mut family = 0usize;
    let mut pairs = usize::MAX;
    for (agent, effects) in results {
        for e in effects {
            family += 1;
            pairs = pairs.min(e.neutral.len());
            t.push_row(Row::new([
                Cell::text(agent.as_str()),
                Cell::text(e.emotion.as_str()),
                Cell::text(e.measure.name()),
                Cell::Integer(e.neutral.len() as i64),
                Cell::number(e.neutral_mean(), 4),
                Cell::number(e.emotional_mean(), 4),
                Cell::number(e.d(), 3),
                Cell::number(e.paired.p, 6),
                Cell::number(e.p_holm, 6),
                Cell::number(e.paired.wilcoxon_p, 6),
                match (e.measure, upstream_marker_d(agent)) {
                    (Measure::Full, Some(d)) => Cell::number(d, 2),
                    _ => Cell::Empty,
                },
                yes_no(e.meets_target()),
            ]))?;
        }
    }
    t.note(
        "Each prompt × sample is generated under the neutral state (every emotion 0) and under \
         the emotion at 1 with the same sampling stream, so rows are paired. Measures: the \
         independent judge's probability of the emotion (GoEmotions classifier, never trained \
         against), the held-out lexicon half's words per 100 words (the expression objective and \
         the ERM use only the other half), and the full lexicon (upstream's metric). d_z = mean \
         paired difference / SD of differences; Holm over every row of this table. Upstream's d \
         is its one reported value per module (unpaired counts).",
    );
    if family > 0 && pairs != usize::MAX && pairs >= 2 {
        t.note(format!(
            "Power: with {pairs} pairs and Holm over {family} tests (first step α = {:.2e}), a \
             paired t-test detects d_z ≥ {:.2} with 80% power (d_z ≥ {:.2} at the unadjusted α = \
             0.05).",
            ALPHA / family as f64,
            min_detectable_dz(pairs, ALPHA / family as f64, 0.8),
            min_detectable_dz(pairs, ALPHA, 0.8),
        ));
    }
    Ok(t)
}

/// Per-agent dialogue summary: mean and SD of return, safety rate and helpfulness.
pub fn dialogue_summary_table(evals: &[DialogueEval]) -> Result<Table> {
    let mut t = Table::new(
        "Dialogue evaluation on held-out conversations (per-episode means over seeds)",
        [
            "Agent",
            "Episodes",
            "Return mean",
            "Return SD",
            "Safety rate",
            "Helpfulness",
        ],
    );
    for e in evals {
        let r = emorl_stats::ArmSummary::of(&e.returns());
        t.push_row(Row::new([
            Cell::text(e.agent.as_str()),
            Cell::Integer(e.episodes.len() as i64),
            Cell::number(r.mean, 4),
            Cell::number(r.sd, 4),
            Cell::number(mean(&e.safety_rates()), 4),
            Cell::number(mean(&e.helpfulness()), 4),
        ]))?;
    }
    Ok(t)
}

/// Dialogue comparisons: one row per agent × baseline × metric, paired by seed.
pub fn dialogue_comparison_table(comparisons: &[DialogueComparison]) -> Result<Table> {
    paired_comparison_table(
        "Dialogue metrics vs baselines (paired by conversation seed)",
        "conversations",
        comparisons,
    )
}

/// A table of paired comparisons of agents with baselines, one row each,
/// `unit` naming what the pairs are (for the power note).
pub fn paired_comparison_table(
    title: &str,
    unit: &str,
    comparisons: &[DialogueComparison],
) -> Result<Table> {
    let mut t = Table::new(
        title,
        [
            "Agent",
            "Baseline",
            "Metric",
            "Baseline mean",
            "Agent mean",
            "Mean difference",
            "95% CI",
            "d_z",
            "p (paired t)",
            "p (Holm)",
            "p (Wilcoxon)",
            "Better",
        ],
    );
    for c in comparisons {
        let k = &c.paired;
        t.push_row(Row::new([
            Cell::text(c.agent.as_str()),
            Cell::text(c.baseline.as_str()),
            Cell::text(c.metric.as_str()),
            Cell::number(k.control_mean, 4),
            Cell::number(k.treatment_mean, 4),
            Cell::number(k.mean_diff, 4),
            Cell::text(format!("[{:.3}, {:.3}]", k.ci_low, k.ci_high)),
            Cell::number(k.d_z, 3),
            Cell::number(k.p, 6),
            Cell::number(c.p_holm, 6),
            Cell::number(k.wilcoxon_p, 6),
            yes_no(c.better()),
        ]))?;
    }
    if let Some(first) = comparisons.first() {
        let n = first.paired.n;
        t.note(format!(
            "Better: higher with Holm-adjusted paired p < 0.05 (Holm over all {} rows). With {n} \
             paired {unit} a paired t-test detects d_z ≥ {:.2} at 80% power (α = 0.05).",
            comparisons.len(),
            min_detectable_dz(n, ALPHA, 0.8)
        ));
    }
    Ok(t)
}

/// Fluency table: perplexity and distinct-2, each with its ratio to `llm-base`.
pub fn fluency_table(results: &[(String, Fluency)]) -> Result<Table> {
    let base = results
        .iter()
        .find(|(a, _)| a == "llm-base")
        .map(|(_, f)| f);
    let mut t = Table::new(
        "Fluency of the dialogue responses: perplexity under the frozen model and repetition",
        [
            "Agent",
            "Tokens",
            "Perplexity",
            "Ratio to llm-base",
            "Distinct-2",
            "Ratio to llm-base",
            "Within targets",
        ],
    );
    for (agent, f) in results {
        let ppl_ratio = base.map(|b| f.perplexity.ppl / b.perplexity.ppl);
        let d2_ratio = base.map(|b| f.distinct2 / b.distinct2);
        t.push_row(Row::new([
            Cell::text(agent.as_str()),
            Cell::Integer(f.perplexity.tokens as i64),
            Cell::number(f.perplexity.ppl, 3),
            ppl_ratio.map_or(Cell::Empty, |r| Cell::number(r, 3)),
            Cell::number(f.distinct2, 4),
            d2_ratio.map_or(Cell::Empty, |r| Cell::number(r, 3)),
            match (ppl_ratio, d2_ratio) {
                (Some(p), Some(d)) => yes_no(fluent(p, d)),
                _ => Cell::Empty,
            },
        ]))?;
    }
    t.note(format!(
        "Perplexity: the frozen model without hooks scores each response given the plain \
         prompt (no module, no system message), token-weighted. Targets: perplexity ≤ \
         {PERPLEXITY_RATIO_TARGET} × llm-base's and distinct-2 within ±{:.0}% of llm-base's.",
        DISTINCT2_TOLERANCE * 100.0
    ));
    if base.is_none() {
        t.note("No llm-base row: ratios are not available.");
    }
    Ok(t)
}

fn fluent(ppl_ratio: f64, distinct2_ratio: f64) -> bool {
    ppl_ratio <= PERPLEXITY_RATIO_TARGET && (distinct2_ratio - 1.0).abs() <= DISTINCT2_TOLERANCE
}

/// The judge's GoEmotions scores, beside the published BERT baseline.
pub fn judge_table(report: &JudgeReport) -> Result<Table> {
    let mut t = Table::new(
        "The independent judge on GoEmotions (test split; thresholds tuned on dev)",
        ["Label", "Precision", "Recall", "F1", "Support"],
    );
    for l in &report.test.per_label {
        t.push_row(Row::new([
            Cell::text(l.label.as_str()),
            Cell::number(l.precision, 3),
            Cell::number(l.recall, 3),
            Cell::number(l.f1, 3),
            Cell::Integer(l.support as i64),
        ]))?;
    }
    t.push_row(Row::new([
        Cell::text("macro"),
        Cell::Empty,
        Cell::Empty,
        Cell::number(report.test.macro_f1, 3),
        Cell::Empty,
    ]))?;
    t.note(format!(
        "Hashed word and character n-grams, one-vs-rest logistic regression trained by emorl on \
         the GoEmotions train split ({}); used only to evaluate, never as a training signal. The \
         GoEmotions paper's BERT baseline reaches {BERT_MACRO_F1_28:.2} macro-F1 over all 28 \
         labels.",
        report.data
    ));
    Ok(t)
}

/// The encoder's supervised phase per agent: held-out accuracy and macro-F1
/// against the majority class.
pub fn encoder_table(results: &[(String, EncoderReport)]) -> Result<Table> {
    let mut t = Table::new(
        "Emotion with a meaning: the encoder on held-out labelled dialogue contexts",
        [
            "Agent",
            "Train contexts",
            "Held-out contexts",
            "Held-out accuracy",
            "Majority-class accuracy",
            "Held-out macro-F1",
        ],
    );
    for (agent, r) in results {
        t.push_row(Row::new([
            Cell::text(agent.as_str()),
            Cell::Integer(r.train.n as i64),
            Cell::Integer(r.test.n as i64),
            Cell::number(r.test.accuracy, 3),
            Cell::number(r.test.majority_accuracy, 3),
            Cell::number(r.test.macro_f1, 3),
        ]))?;
    }
    t.note(
        "Labels: what the user's turn calls for in conversations held by the scripted policies \
         (decline → fear, frustrated repeat → anger, go deeper → curiosity, thanks → joy, plain \
         request → neutral = every emotion 0); the encoder sees only features computed from the \
         conversation's text. Held-out contexts come from a disjoint block of conversation seeds.",
    );
    Ok(t)
}

/// Whether each trained agent meets the targets: on each of the four
/// emotions d_z ≥ 0.8 with Holm p < 0.05 on the judge **and** on the
/// held-out lexicon; dialogue return above `llm-base` and above
/// `llm-prompted` (Holm p < 0.05); perplexity ≤ 1.1 × and distinct-2
/// within 10% of `llm-base`'s. An agent missing from one of the inputs gets
/// empty cells there and does not meet the targets. Baselines get no row.
pub fn targets_table(
    markers: &[(String, Vec<EmotionEffect>)],
    dialogue: &[DialogueComparison],
    fluency: &[(String, Fluency)],
) -> Result<Table> {
    let base = fluency
        .iter()
        .find(|(a, _)| a == "llm-base")
        .map(|(_, f)| f);
    let mut agents: Vec<&str> = Vec::new();
    let names = markers
        .iter()
        .map(|(a, _)| a.as_str())
        .chain(dialogue.iter().map(|c| c.agent.as_str()))
        .chain(fluency.iter().map(|(a, _)| a.as_str()));
    for a in names {
        if !BASELINES.contains(&a) && !agents.contains(&a) {
            agents.push(a);
        }
    }
    let mut t = Table::new(
        "Targets per module",
        [
            "Agent",
            "Emotions met (judge)",
            "Emotions met (held-out lexicon)",
            "Return d_z vs llm-base",
            "Return p (Holm) vs llm-base",
            "Return d_z vs llm-prompted",
            "Return p (Holm) vs llm-prompted",
            "Perplexity ratio",
            "Distinct-2 ratio",
            "All targets met",
        ],
    );
    for a in agents {
        let effects = markers.iter().find(|(m, _)| m == a).map(|(_, e)| e);
        let met_on = |measure: Measure| {
            effects.map(|e| {
                let of: Vec<&EmotionEffect> = e.iter().filter(|e| e.measure == measure).collect();
                let hit = of.iter().filter(|e| e.meets_target()).count();
                (hit, of.len())
            })
        };
        let (judge, held) = (met_on(Measure::Judge), met_on(Measure::HeldOut));
        let all = |m: Option<(usize, usize)>| m.is_some_and(|(h, n)| n == 4 && h == n);
        let ret = |baseline: &str| {
            dialogue
                .iter()
                .find(|c| c.agent == a && c.baseline == baseline && c.metric == "return")
        };
        let (vs_base, vs_prompted) = (ret("llm-base"), ret("llm-prompted"));
        let f = fluency.iter().find(|(p, _)| p == a).map(|(_, f)| f);
        let ratios = f.zip(base).map(|(f, b)| {
            (
                f.perplexity.ppl / b.perplexity.ppl,
                f.distinct2 / b.distinct2,
            )
        });
        let met = all(judge)
            && all(held)
            && vs_base.is_some_and(DialogueComparison::better)
            && vs_prompted.is_some_and(DialogueComparison::better)
            && ratios.is_some_and(|(p, d)| fluent(p, d));
        let count = |m: Option<(usize, usize)>| {
            m.map_or(Cell::Empty, |(h, n)| Cell::text(format!("{h}/{n}")))
        };
        t.push_row(Row::new([
            Cell::text(a),
            count(judge),
            count(held),
            vs_base.map_or(Cell::Empty, |c| Cell::number(c.paired.d_z, 3)),
            vs_base.map_or(Cell::Empty, |c| Cell::number(c.p_holm, 6)),
            vs_prompted.map_or(Cell::Empty, |c| Cell::number(c.paired.d_z, 3)),
            vs_prompted.map_or(Cell::Empty, |c| Cell::number(c.p_holm, 6)),
            ratios.map_or(Cell::Empty, |(p, _)| Cell::number(p, 3)),
            ratios.map_or(Cell::Empty, |(_, d)| Cell::number(d, 3)),
            yes_no(met),
        ]))?;
    }
    t.note(format!(
        "Targets: for each of fear, curiosity, anger and joy, d_z ≥ {MARKER_D_TARGET} with Holm p \
         < 0.05 on the judge and on the held-out lexicon half; dialogue return above llm-base and \
         above llm-prompted (paired by seed, Holm p < 0.05); perplexity ≤ \
         {PERPLEXITY_RATIO_TARGET} × and distinct-2 within ±{:.0}% of llm-base's.",
        DISTINCT2_TOLERANCE * 100.0
    ));
    Ok(t)
}
