//! The one word splitter of emorl.
//!
//! A word is a maximal run of Unicode letters, digits and apostrophes,
//! lower-cased, with the typographic apostrophes (U+2019, U+2018) and the
//! backtick folded to `'` and apostrophes at either end trimmed. On ASCII text
//! this is exactly the tokeniser the dialogue environment was built on, so
//! its scorers keep their values; elsewhere "café" stays one word.

/// Lower-cased words of `text` (letters, digits, inner apostrophes).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        let c = fold_apostrophe(ch);
        if c == '\'' || c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else {
            push_word(&mut current, &mut out);
        }
    }
    push_word(&mut current, &mut out);
    out
}

/// Number of [`words`] in `text`.
pub fn word_count(text: &str) -> usize {
    words(text).len()
}

/// Quote-like characters that stand for an apostrophe inside a word.
fn fold_apostrophe(ch: char) -> char {
    match ch {
        '\u{2019}' | '\u{2018}' | '`' => '\'',
        other => other,
    }
}

/// Moves the run collected so far into `out` (edge apostrophes trimmed,
/// nothing if only apostrophes were left) and clears it.
fn push_word(current: &mut String, out: &mut Vec<String>) {
    let word = current.trim_matches('\'');
    if !word.is_empty() {
        out.push(word.to_string());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_letters_are_words() {
        assert_eq!(words("Café NAÏVE Straße!"), vec!["café", "naïve", "straße"]);
        assert_eq!(word_count("l\u{2019}été, c\u{2018}est"), 2);
    }
}
