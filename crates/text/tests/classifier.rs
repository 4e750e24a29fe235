//! The n-gram classifier on synthetic data: it learns a separable rule, is
//! bit-for-bit deterministic, round-trips through a file and refuses
//! corrupt files and inconsistent inputs.

use emorl_core::rng::{EmoRng, RngKind};
use emorl_text::{ClassifierConfig, TextClassifier, TextError};

const FILLER: &[&str] = &[
    "the", "walk", "house", "today", "we", "saw", "a", "garden", "near", "river", "then", "later",
    "morning", "blue", "table", "went", "home", "quiet", "road", "friend",
];
const SCARY: &[&str] = &["spider", "ghost", "Spiders"];
const CUTE: &[&str] = &["puppy", "kitten"];

/// Texts of filler words; label 0 ("scary") when a scary word is present,
/// label 1 ("cute") when a cute word is, both or neither possible.
fn synthetic(n: usize, seed: u64) -> (Vec<String>, Vec<Vec<usize>>) {
    let mut rng = EmoRng::new(RngKind::Fast, seed);
    let mut texts = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n {
        let mut ws: Vec<&str> = (0..4 + rng.randint(6))
            .map(|_| FILLER[rng.randint(FILLER.len())])
            .collect();
        let mut target = Vec::new();
        if rng.random() < 0.3 {
            ws.insert(rng.randint(ws.len()), SCARY[rng.randint(SCARY.len())]);
            target.push(0);
        }
        if rng.random() < 0.3 {
            ws.insert(rng.randint(ws.len()), CUTE[rng.randint(CUTE.len())]);
            target.push(1);
        }
        texts.push(ws.join(" "));
        targets.push(target);
    }
    (texts, targets)
}

fn labels() -> Vec<String> {
    vec!["scary".into(), "cute".into()]
}

fn small_config(seed: u64) -> ClassifierConfig {
    ClassifierConfig {
        hash_bits: 14,
        epochs: 4,
        seed,
        ..ClassifierConfig::default()
    }
}

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

fn trained(seed: u64) -> TextClassifier {
    let (texts, targets) = synthetic(2000, 1);
    TextClassifier::train(&refs(&texts), &targets, labels(), &small_config(seed)).expect("train")
}

#[test]
fn learns_a_separable_rule() {
    let mut model = trained(0);
    let (dev_texts, dev_targets) = synthetic(500, 2);
    model
        .tune_thresholds(&refs(&dev_texts), &dev_targets)
        .expect("tune");
    assert!(model.thresholds().iter().all(|t| (0.05..=0.95).contains(t)));
    let (test_texts, test_targets) = synthetic(1000, 3);
    let eval = model
        .evaluate(&refs(&test_texts), &test_targets)
        .expect("evaluate");
    println!("{eval}");
    for score in &eval.per_label {
        assert!(score.f1 > 0.97, "{eval}");
    }
    assert!(eval.macro_f1 > 0.97 && eval.micro_f1 > 0.97, "{eval}");

    let p = model.probabilities("a ghost in the garden");
    assert!(p[0] > 0.9 && p[1] < 0.1, "{p:?}");
    assert_eq!(model.predict("a puppy near the river"), vec![false, true]);
}

#[test]
fn training_is_deterministic() {
    let a = trained(5);
    let b = trained(5);
    let bits = |m: &TextClassifier| -> Vec<u32> {
        (0..m.labels().len())
            .flat_map(|l| m.weights(l).unwrap_or_default().to_vec())
            .map(f32::to_bits)
            .chain(m.bias().iter().map(|b| b.to_bits()))
            .collect()
    };
    assert_eq!(bits(&a).len(), 2 * (1 << 14) + 2);
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(a, b);
    // A different shuffling seed gives different (but equally good) weights.
    assert_ne!(bits(&a), bits(&trained(6)));
}

#[test]
fn save_load_round_trip() {
    let mut model = trained(0);
    model.set_thresholds(vec![0.35, 0.6]).expect("thresholds");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("judge.bin");
    model.save(&path).expect("save");
    let back = TextClassifier::load(&path).expect("load");
    assert_eq!(back, model);
    assert_eq!(
        back.probabilities("ghost puppy"),
        model.probabilities("ghost puppy")
    );
}

#[test]
fn corrupt_files_are_refused() {
    let model = trained(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("judge.bin");
    model.save(&path).expect("save");
    let good = std::fs::read(&path).expect("read");

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let truncated = good[..good.len() - 100].to_vec();
    let mut foreign = good.clone();
    foreign[0] = b'X';
    let mut future = good.clone();
    future[8] = 2;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("flipped", flipped, "checksum"),
        ("truncated", truncated, "checksum"),
        ("foreign", foreign, "magic"),
        ("future", future, "version 2"),
        ("empty", Vec::new(), "file ends"),
    ];
    for (name, bytes, expected) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, bytes).expect("write");
        match TextClassifier::load(&bad) {
            Err(err @ TextError::CorruptModel { .. }) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(expected) && msg.contains(name),
                    "{name}: {msg}"
                );
            }
            other => panic!("{name}: expected CorruptModel, got {other:?}"),
        }
    }
    assert!(matches!(
        TextClassifier::load(dir.path().join("absent")),
        Err(TextError::Io { .. })
    ));
}

#[test]
fn inconsistent_inputs_are_errors() {
    let texts = ["a spider", "a puppy"];
    let config = small_config(0);
    let out_of_range = TextClassifier::train(&texts, &[vec![0], vec![2]], labels(), &config);
    assert!(matches!(out_of_range, Err(TextError::InvalidInput(_))));
    let mismatched = TextClassifier::train(&texts, &[vec![0]], labels(), &config);
    assert!(matches!(mismatched, Err(TextError::InvalidInput(_))));
    let bad_config = ClassifierConfig {
        hash_bits: 40,
        ..config.clone()
    };
    let refused = TextClassifier::train(&texts, &[vec![0], vec![1]], labels(), &bad_config);
    assert!(matches!(refused, Err(TextError::InvalidInput(_))));
    let mut model = trained(0);
    assert!(model.set_thresholds(vec![0.5]).is_err());
    assert!(model.evaluate(&texts, &[vec![], vec![7]]).is_err());
}
