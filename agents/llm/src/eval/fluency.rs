//! Fluency of responses: the frozen model's perplexity and repetition
//! (distinct-n).

use emorl_lm::Model;
use serde::{Deserialize, Serialize};

use super::dialogue::DialogueEval;
use super::perplexity::{perplexity, Perplexity};
use crate::error::Result;

/// Fluency of one agent's dialogue responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fluency {
    /// The frozen model's perplexity of the responses given their prompts.
    pub perplexity: Perplexity,
    /// Distinct word bigrams over all bigrams of the responses.
    pub distinct2: f64,
}

/// Distinct-n of a set of texts: distinct word n-grams over all n-grams
/// (1 = no repetition; lower = more repetitive). NaN without any n-gram.
pub fn distinct_n<'a>(texts: impl IntoIterator<Item = &'a str>, n: usize) -> f64 {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0usize;
    for t in texts {
        let w = emorl_text::words(t);
        if n == 0 || w.len() < n {
            continue;
        }
        for g in w.windows(n) {
            seen.insert(g.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        f64::NAN
    } else {
        seen.len() as f64 / total as f64
    }
}

/// The fluency of an agent's dialogue responses: perplexity of each
/// response (stop tokens dropped) given its plain prompt under the frozen
/// model, and distinct-2 of their words.
pub fn dialogue_fluency(model: &mut Model, eval: &DialogueEval) -> Result<Fluency> {
    let stops = model.tokenizer().stop_ids().to_vec();
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = eval
        .scored
        .iter()
        .map(|(p, r)| {
            let mut r = r.clone();
            while r.last().is_some_and(|t| stops.contains(t)) {
                r.pop();
            }
            (p.clone(), r)
        })
        .collect();
    Ok(Fluency {
        perplexity: perplexity(model, &pairs)?,
        distinct2: distinct_n(eval.responses(), 2),
    })
}
