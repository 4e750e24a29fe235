//! GoEmotions loading: a well-formed directory, and one test per error, each
//! checking that the message names the file and the 1-based line.

use emorl_text::{load_split, GoEmotions, LineProblem, TextError};
use std::path::Path;

const HEADER: &str = "text\tlabel\tid\n";

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).expect("write test file");
}

/// A split file with `body` after the header, and the error loading it
/// with 3 labels.
fn split_error(body: &str) -> (TextError, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "train.tsv", &format!("{HEADER}{body}"));
    let err = load_split(dir.path().join("train.tsv"), 3).expect_err("should fail");
    let message = err.to_string();
    (err, message)
}

fn assert_at_line(err: &TextError, message: &str, line: usize, problem: LineProblem) {
    assert!(
        message.contains(&format!("train.tsv:{line}: ")),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    match err {
        TextError::Malformed {
            line: l,
            problem: p,
            ..
        } => {
            assert_eq!(*l, line);
            assert_eq!(*p, problem);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn loads_a_small_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "labels.txt", "joy\nfear\nneutral\n");
    write(
        dir.path(),
        "train.tsv",
        &format!("{HEADER}I'm \"so\" happy\t0\ta1\nScary, and yet fine\t1,2\ta2\n"),
    );
    write(dir.path(), "dev.tsv", &format!("{HEADER}ok\t2\tb1\n"));
    write(dir.path(), "test.tsv", HEADER);
    let data = GoEmotions::load(dir.path()).expect("load");
    assert_eq!(data.labels, vec!["joy", "fear", "neutral"]);
    assert_eq!(data.train.len(), 2);
    assert_eq!(data.train[0].text, "I'm \"so\" happy");
    assert_eq!(data.train[1].labels, vec![1, 2]);
    assert_eq!(data.train[1].id, "a2");
    assert_eq!(data.dev[0].labels, vec![2]);
    assert!(data.test.is_empty());
    assert_eq!(data.label_index("fear"), Some(1));
}

#[test]
fn missing_column() {
    let (err, msg) = split_error("fine\t0\tx1\nno label here\n");
    assert_at_line(&err, &msg, 3, LineProblem::MissingColumn("label"));
    assert!(msg.contains("missing column 'label'"), "{msg}");
    let (err, msg) = split_error("fine\t0\n");
    assert_at_line(&err, &msg, 2, LineProblem::MissingColumn("id"));
}

#[test]
fn extra_column() {
    let (err, msg) = split_error("a tab\there\t0\tx1\n");
    assert_at_line(&err, &msg, 2, LineProblem::ExtraColumns(4));
}

#[test]
fn label_not_a_number() {
    let (err, msg) = split_error("ok\t0\tx1\nok\t1\tx2\nbad\t1,joy\tx3\n");
    assert_at_line(&err, &msg, 4, LineProblem::LabelNotANumber("joy".into()));
    assert!(msg.contains("'joy' is not a number"), "{msg}");
    let (err, msg) = split_error("bad\t-1\tx1\n");
    assert_at_line(&err, &msg, 2, LineProblem::LabelNotANumber("-1".into()));
}

#[test]
fn label_out_of_range() {
    let (err, msg) = split_error("bad\t0,3\tx1\n");
    assert_at_line(
        &err,
        &msg,
        2,
        LineProblem::LabelOutOfRange {
            index: 3,
            n_labels: 3,
        },
    );
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn empty_label_list() {
    let (err, msg) = split_error("ok\t0\tx1\nnothing\t\tx2\n");
    assert_at_line(&err, &msg, 3, LineProblem::EmptyLabelList);
    assert!(msg.contains("empty label list"), "{msg}");
}

#[test]
fn bad_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "train.tsv", "text,label,id\nok\t0\tx\n");
    let err = load_split(dir.path().join("train.tsv"), 3).expect_err("should fail");
    assert_at_line(
        &err,
        &err.to_string(),
        1,
        LineProblem::BadHeader("text,label,id".into()),
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "labels.txt", "joy\nfear\n");
    write(dir.path(), "train.tsv", HEADER);
    let err = GoEmotions::load(dir.path()).expect_err("dev.tsv is missing");
    assert!(matches!(err, TextError::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("dev.tsv"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn repeated_label_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "labels.txt", "joy\nfear\njoy\n");
    let err = GoEmotions::load(dir.path()).expect_err("repeated name");
    let msg = err.to_string();
    assert!(msg.contains("labels.txt:3: "), "{msg}");
    assert!(msg.contains("'joy'"), "{msg}");
}
