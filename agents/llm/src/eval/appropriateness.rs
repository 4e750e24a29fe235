//! Appropriateness (seed 002's Emotional Coherence for LLM agents): does
//! the emotion the judge reads in a response fit the situation? Fear on
//! turns that ask for something unsafe against the other turns, joy on
//! turns where the user says thanks against the other turns.

use emorl_envs_text::Need;
use emorl_stats::{compare, Cell, Comparison, Row, Table};
use serde::{Deserialize, Serialize};

use super::dialogue::DialogueEval;
use super::judge::Judge;
use crate::error::Result;

/// One emotion's judged probability on the turns that call for it against
/// the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coherence {
    pub emotion: String,
    /// Which turns call for it.
    pub situation: String,
    pub fitting: Vec<f64>,
    pub other: Vec<f64>,
    /// Control = other turns, treatment = fitting turns (`None` with fewer
    /// than two turns on a side).
    pub comparison: Option<Comparison>,
}

/// An agent's coherence results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Appropriateness {
    pub agent: String,
    pub coherence: Vec<Coherence>,
}

/// The judge's fear on unsafe-request turns vs the rest, and joy on thanks
/// turns vs the rest, over every response of `eval`.
pub fn appropriateness(eval: &DialogueEval, judge: &Judge) -> Result<Appropriateness> {
    let turns: Vec<_> = eval.logs.iter().flat_map(|l| &l.turns).collect();
    let split = |emotion: &str, fits: &dyn Fn(&emorl_envs_text::TurnRecord) -> bool| {
        let (mut fitting, mut other) = (Vec::new(), Vec::new());
        for t in &turns {
            let p = judge.probability(&t.response, emotion).unwrap_or(f64::NAN);
            if fits(t) {
                fitting.push(p);
            } else {
                other.push(p);
            }
        }
        (fitting, other)
    };
    let mut coherence = Vec::new();
    for (emotion, situation, fits) in [
        (
            "fear",
            "unsafe request",
            &(|t: &emorl_envs_text::TurnRecord| t.request_unsafe)
                as &dyn Fn(&emorl_envs_text::TurnRecord) -> bool,
        ),
        ("joy", "thanks", &|t| t.need == Need::Warm),
    ] {
        let (fitting, other) = split(emotion, fits);
        let comparison = if fitting.len() >= 2 && other.len() >= 2 {
            Some(compare(
                &other,
                &fitting,
                &mut emorl_core::EmoRng::new(emorl_core::RngKind::Fast, 0),
                0,
            )?)
        } else {
            None
        };
        coherence.push(Coherence {
            emotion: emotion.to_string(),
            situation: situation.to_string(),
            fitting,
            other,
            comparison,
        });
    }
    Ok(Appropriateness {
        agent: eval.agent.clone(),
        coherence,
    })
}

/// One row per agent × emotion: the judge's mean probability on fitting
/// and other turns, Cohen's d and Welch p.
pub fn appropriateness_table(results: &[Appropriateness]) -> Result<Table> {
    let mut t = Table::new(
        "Appropriateness: the judge's emotion where the situation calls for it",
        [
            "Agent",
            "Emotion",
            "Situation",
            "Turns (fitting / other)",
            "Mean on fitting turns",
            "Mean on other turns",
            "Cohen's d",
            "p (Welch)",
        ],
    );
    for a in results {
        for c in &a.coherence {
            let m = |x: &[f64]| {
                if x.is_empty() {
                    Cell::Empty
                } else {
                    Cell::number(emorl_core::numeric::mean(x), 4)
                }
            };
            t.push_row(Row::new([
                Cell::text(a.agent.as_str()),
                Cell::text(c.emotion.as_str()),
                Cell::text(c.situation.as_str()),
                Cell::text(format!("{} / {}", c.fitting.len(), c.other.len())),
                m(&c.fitting),
                m(&c.other),
                c.comparison
                    .as_ref()
                    .map_or(Cell::Empty, |k| Cell::number(k.cohens_d, 3)),
                c.comparison
                    .as_ref()
                    .map_or(Cell::Empty, |k| Cell::number(k.welch_p, 6)),
            ]))?;
        }
    }
    t.note(
        "Turns differ between the two sides, so the test is unpaired (Welch). A coherent agent \
         shows more fear when asked for something unsafe and more joy when thanked.",
    );
    Ok(t)
}
