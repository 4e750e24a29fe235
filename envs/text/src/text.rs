//! Small text utilities shared by the scorers, the safety classifier and the
//! conversation signals: stop words, a crude stemmer, set overlaps and
//! phrase matching.
//!
//! Everything here is deliberately simple and transparent (no models): a
//! token is a word of [`emorl_text::words`] (lower-cased letters, digits and
//! inner apostrophes, typographic apostrophes folded to `'`).

use emorl_text::words;
use std::collections::BTreeSet;

/// Function words ignored when comparing content.
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do",
    "does", "doing", "for", "from", "get", "got", "had", "has", "have", "having", "he", "her",
    "here", "hers", "him", "his", "how", "i", "i'd", "i'll", "i'm", "i've", "if", "in", "into",
    "is", "it", "it's", "its", "just", "let", "let's", "me", "more", "most", "my", "no", "not",
    "now", "of", "off", "on", "once", "one", "only", "or", "other", "our", "out", "over", "own",
    "really", "same", "she", "should", "so", "some", "such", "than", "that", "that's", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "up", "us", "very", "was", "we", "were", "what", "what's", "when", "where", "which", "while",
    "who", "why", "will", "with", "would", "you", "you'd", "you'll", "you're", "your", "yours",
    "yes", "ok", "okay", "oh", "well", "much", "many", "way", "want", "need", "know", "tell",
    "thing", "things", "make", "sure", "still", "even", "each", "every", "s", "t", "don't",
    "can't", "won't", "isn't", "didn't", "doesn't", "go", "going",
];

/// Whether a token is a stop word.
pub fn is_stopword(token: &str) -> bool {
    STOPWORDS.contains(&token)
}

/// A crude suffix-stripping stemmer: enough to match "baking"/"bake"/"baked"
/// and "plants"/"plant". Possessive `'s` is dropped first.
pub fn stem(token: &str) -> String {
    let t = token.strip_suffix("'s").unwrap_or(token);
    let t = t.trim_end_matches('\'');
    for suffix in ["ings", "ing", "ed", "es", "s", "e", "y"] {
        if let Some(base) = t.strip_suffix(suffix) {
            if base.len() >= 3 && !(suffix == "s" && base.ends_with('s')) {
                return base.to_string();
            }
        }
    }
    t.to_string()
}

/// Stems of the content words (no stop words, at least 3 characters).
pub fn content_stems(text: &str) -> BTreeSet<String> {
    words(text)
        .into_iter()
        .filter(|t| t.len() >= 3 && !is_stopword(t))
        .map(|t| stem(&t))
        .collect()
}

/// Jaccard similarity of two sets (0 when both are empty).
pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Fraction of `a` that also occurs in `b` (0 when `a` is empty).
pub fn containment(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.intersection(b).count() as f64 / a.len() as f64
}

/// A text normalised for phrase matching: tokens joined by single spaces,
/// padded with a space on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized(String);

impl Normalized {
    pub fn new(text: &str) -> Self {
        Normalized(format!(" {} ", words(text).join(" ")))
    }

    /// Whether the whole-word phrase occurs.
    pub fn contains(&self, phrase: &str) -> bool {
        let p = words(phrase).join(" ");
        !p.is_empty() && self.0.contains(&format!(" {p} "))
    }

    /// Whether a whole word starting with `prefix` occurs.
    pub fn has_word_prefix(&self, prefix: &str) -> bool {
        self.0.contains(&format!(" {prefix}"))
    }

    /// How many of the phrases occur (each counted once).
    pub fn count_phrases(&self, phrases: &[&str]) -> usize {
        phrases.iter().filter(|p| self.contains(p)).count()
    }

    /// The phrases that occur.
    pub fn matching<'a>(&self, phrases: &[&'a str]) -> Vec<&'a str> {
        phrases
            .iter()
            .copied()
            .filter(|p| self.contains(p))
            .collect()
    }

    pub fn as_str(&self) -> &str {
        self.0.trim()
    }
}

/// Upper-cases the first character.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Fraction of word trigrams that repeat an earlier trigram (0 for texts
/// shorter than four words). "yes yes yes yes" scores high; prose scores ~0.
pub fn repeated_trigram_fraction(text: &str) -> f64 {
    let toks = words(text);
    if toks.len() < 4 {
        return 0.0;
    }
    let trigrams: Vec<_> = toks.windows(3).collect();
    let mut seen = BTreeSet::new();
    let mut repeated = 0usize;
    for tri in &trigrams {
        if !seen.insert(*tri) {
            repeated += 1;
        }
    }
    repeated as f64 / trigrams.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fold_case_and_apostrophes() {
        assert_eq!(
            words("I can\u{2019}t DO it, ok?"),
            vec!["i", "can't", "do", "it", "ok"]
        );
        assert_eq!(words("  "), Vec::<String>::new());
        assert_eq!(words("'quoted'"), vec!["quoted"]);
    }

    #[test]
    fn stems_match_inflections() {
        assert_eq!(stem("baking"), stem("baked"));
        assert_eq!(stem("plants"), stem("plant"));
        assert_eq!(stem("ex's"), "ex");
        assert_eq!(stem("glass"), "glass");
    }

    #[test]
    fn overlaps() {
        let a = content_stems("How do I bake sourdough bread?");
        let b = content_stems("Baking sourdough bread is fun");
        assert!(jaccard(&a, &b) > 0.4);
        assert_eq!(containment(&a, &b), 1.0);
        assert_eq!(jaccard(&BTreeSet::new(), &BTreeSet::new()), 0.0);
    }

    #[test]
    fn phrases_match_whole_words() {
        let n = Normalized::new("Let's try a different approach, instead.");
        assert!(n.contains("different approach"));
        assert!(n.contains("instead"));
        assert!(!n.contains("stead"));
        assert_eq!(n.count_phrases(&["instead", "let's try", "nope"]), 2);
        assert!(n.has_word_prefix("differ"));
    }

    #[test]
    fn repetition() {
        assert!(repeated_trigram_fraction("yes yes yes yes yes yes yes") > 0.6);
        assert_eq!(
            repeated_trigram_fraction("the quick brown fox jumps over the lazy dog"),
            0.0
        );
    }
}
