//! The word splitter against the dialogue environment's original ASCII
//! tokeniser (copied here as the reference before it was replaced).

use emorl_core::rng::{EmoRng, RngKind};
use emorl_text::{word_count, words};

/// `envs/text/src/text.rs::tokens` as it was before `emorl-text`.
fn reference_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        let c = match ch {
            '\u{2019}' | '\u{2018}' | '`' => '\'',
            other => other,
        };
        if c.is_ascii_alphanumeric() || (c == '\'' && !cur.is_empty()) {
            cur.push(c.to_ascii_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur).trim_end_matches('\'').to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur.trim_end_matches('\'').to_string());
    }
    out.retain(|t| !t.is_empty());
    out
}

fn strings(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

#[test]
fn tricky_ascii_cases() {
    let cases: &[(&str, &[&str])] = &[
        ("don't", &["don't"]),
        ("'quoted'", &["quoted"]),
        ("rock'n'roll", &["rock'n'roll"]),
        ("a_b", &["a", "b"]),
        ("x--y", &["x", "y"]),
        ("it's.", &["it's"]),
        ("``", &[]),
        ("`tis the DOGS' bones", &["tis", "the", "dogs", "bones"]),
        (
            "I can\u{2019}t DO it, ok?",
            &["i", "can't", "do", "it", "ok"],
        ),
        ("  ", &[]),
        ("3.14 x2 ''' a''b", &["3", "14", "x2", "a''b"]),
    ];
    for (text, expected) in cases {
        assert_eq!(words(text), strings(expected), "words({text:?})");
        assert_eq!(
            reference_tokens(text),
            strings(expected),
            "reference({text:?})"
        );
        assert_eq!(word_count(text), expected.len());
    }
}

#[test]
fn same_as_reference_on_random_ascii() {
    // Dense in the characters that matter: letters, digits, apostrophe-likes,
    // punctuation and spaces, plus the typographic apostrophes.
    let alphabet: Vec<char> = "aZ9'`_- .,!?\"\t\n\u{2019}\u{2018}".chars().collect();
    let mut rng = EmoRng::new(RngKind::Fast, 11);
    for _ in 0..20_000 {
        let len = rng.randint(16);
        let text: String = (0..len)
            .map(|_| alphabet[rng.randint(alphabet.len())])
            .collect();
        assert_eq!(words(&text), reference_tokens(&text), "{text:?}");
    }
}

#[test]
fn unicode_letters_are_lower_cased_words() {
    assert_eq!(
        words("Café au lait, NAÏVE idea; Straße \u{2018}ΣΟΦΊΑ\u{2019}"),
        strings(&["café", "au", "lait", "naïve", "idea", "straße", "σοφία"])
    );
    // The old ASCII tokeniser split these words apart.
    assert_eq!(reference_tokens("café"), strings(&["caf"]));
}
