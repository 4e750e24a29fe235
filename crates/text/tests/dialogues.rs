//! Dialogue loaders on the real DailyDialog files (counts checked against
//! plain line and separator counts), every kind of malformed input (the
//! message names file and line), EmpatheticDialogues in its release layout,
//! the example builder, splits and shuffling.

use emorl_text::dialogues::dailydialog::{DailyDialogCorpus, DialogueAct, Emotion};
use emorl_text::dialogues::empathetic::EmpatheticDialogues;
use emorl_text::dialogues::{
    examples, shuffle_seeded, split_examples, Dialogue, LabelledUtterance, Role, SplitFractions,
};
use emorl_text::{LineProblem, TextError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// `EMORL_DAILYDIALOG_DIR`, else `shared/data/dailydialog` next to the
/// repository (worktrees) or inside it; `None` (and a note) when absent.
fn dailydialog_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("EMORL_DAILYDIALOG_DIR") {
        return Some(PathBuf::from(dir));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../../shared/data/dailydialog"),
        manifest.join("../../shared/data/dailydialog"),
    ];
    let found = candidates
        .iter()
        .find(|d| d.join("dialogues_test.txt").is_file())
        .cloned();
    if found.is_none() {
        println!("skipped: no DailyDialog files in {candidates:?} and EMORL_DAILYDIALOG_DIR unset");
    }
    found
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// Asserts the error is `Malformed` at `file:line` and returns its problem.
fn at(err: TextError, file: &str, line: usize) -> LineProblem {
    let msg = err.to_string();
    assert!(msg.contains(&format!("{file}:{line}: ")), "{msg}");
    match err {
        TextError::Malformed {
            path,
            line: l,
            problem,
        } => {
            assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(file));
            assert_eq!(l, line);
            problem
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn dailydialog_real_files_counts() {
    let Some(dir) = dailydialog_dir() else {
        return;
    };
    for split in ["test", "validation"] {
        let dialogues = dir.join(format!("dialogues_{split}.txt"));
        let text = std::fs::read_to_string(&dialogues).expect("read");
        let expected_dialogues = text.lines().filter(|l| !l.trim().is_empty()).count();
        let expected_utterances = text.matches("__eou__").count();
        let act_text =
            std::fs::read_to_string(dir.join(format!("dialogues_act_{split}.txt"))).expect("acts");
        let expected_acts = act_text.split_whitespace().count();

        let corpus = DailyDialogCorpus::load(&dialogues).expect("load");
        println!(
            "DailyDialog {split}: {} dialogues, {} utterances",
            corpus.len(),
            corpus.utterance_count()
        );
        assert_eq!(corpus.len(), expected_dialogues);
        assert_eq!(corpus.utterance_count(), expected_utterances);
        assert_eq!(expected_acts, expected_utterances);
        let utterances: Vec<_> = corpus.dialogues.iter().flatten().collect();
        assert!(utterances.iter().all(|u| u.act.is_some()));
        assert!(utterances.iter().all(|u| !u.text.is_empty()));

        // Without the act file the same dialogues load, acts absent.
        let pair = DailyDialogCorpus::load_pair(
            &dialogues,
            &dir.join(format!("dialogues_emotion_{split}.txt")),
        )
        .expect("pair");
        assert_eq!(pair.len(), corpus.len());
        assert!(pair.dialogues.iter().flatten().all(|u| u.act.is_none()));

        let ex = examples(&corpus.to_dialogues(), 4);
        println!("DailyDialog {split}: {} examples", ex.len());
        assert_eq!(ex.len(), expected_utterances - expected_dialogues);
        assert!(ex
            .iter()
            .all(|e| e.history.len() <= 4 && !e.history.is_empty()));
    }
}

/// A valid three-file DailyDialog set named `dialogues_{stem}.txt` etc.
fn dd_set(dir: &Path, stem: &str, text: &str, emotions: &str, acts: &str) -> PathBuf {
    write(dir, &format!("dialogues_emotion_{stem}.txt"), emotions);
    write(dir, &format!("dialogues_act_{stem}.txt"), acts);
    write(dir, &format!("dialogues_{stem}.txt"), text)
}

#[test]
fn dailydialog_small_file_with_acts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dd_set(
        dir.path(),
        "x",
        "Hi , how are you ? __eou__ I ’ m fine . __eou__\r\n\nGreat ! __eou__ Yes __eou__ No __eou__\n",
        "0 4\n\n4 0 6\n",
        "2 1\n\n1 3 4\n",
    );
    let c = DailyDialogCorpus::load(&d).expect("load");
    assert_eq!(c.len(), 2);
    assert_eq!(c.utterance_count(), 5);
    assert_eq!(c.dialogues[0][0].text, "Hi, how are you?");
    assert_eq!(c.dialogues[0][1].text, "I’m fine.");
    assert_eq!(c.dialogues[0][1].emotion, Emotion::Happiness);
    assert_eq!(c.dialogues[0][0].act, Some(DialogueAct::Question));
    assert_eq!(c.dialogues[1][2].act, Some(DialogueAct::Commissive));
    assert_eq!(c.dialogues[1][2].emotion, Emotion::Surprise);
    let ds = c.to_dialogues();
    assert_eq!(ds[1].id, "dialogues_x#1");
    assert_eq!(ds[1].utterances[2].emotion, "surprise");
}

#[test]
fn dailydialog_errors_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let text = "A __eou__ B __eou__\nC __eou__ D __eou__\n";

    // Bad emotion label.
    let d = dd_set(p, "a", text, "0 0\n0 9\n", "1 2\n1 2\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_emotion_a.txt",
        2,
    );
    assert_eq!(problem, LineProblem::BadEmotionLabel("9".into()));

    // Bad act label (0 is not an act).
    let d = dd_set(p, "b", text, "0 0\n0 0\n", "1 2\n0 2\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_act_b.txt",
        2,
    );
    assert_eq!(problem, LineProblem::BadActLabel("0".into()));

    // Emotion count differs from the utterances.
    let d = dd_set(p, "c", text, "0 0\n0\n", "1 2\n1 2\n");
    let err = DailyDialogCorpus::load(&d).unwrap_err();
    assert!(
        err.to_string()
            .contains("1 emotion labels for 2 utterances"),
        "{err}"
    );
    let problem = at(err, "dialogues_emotion_c.txt", 2);
    assert!(matches!(
        problem,
        LineProblem::LabelCountMismatch {
            kind: "emotion",
            found: 1,
            utterances: 2,
            ..
        }
    ));

    // Act count differs from the utterances.
    let d = dd_set(p, "d", text, "0 0\n0 0\n", "1 2 3\n1 2\n");
    let err = DailyDialogCorpus::load(&d).unwrap_err();
    assert!(
        err.to_string().contains("3 act labels for 2 utterances"),
        "{err}"
    );
    at(err, "dialogues_act_d.txt", 1);

    // Fewer emotion lines than dialogues: the dialogue line is named.
    let d = dd_set(p, "e", text, "0 0\n", "1 2\n1 2\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_e.txt",
        2,
    );
    assert!(
        matches!(problem, LineProblem::NoMatchingLine(f) if f.ends_with("dialogues_emotion_e.txt"))
    );

    // Fewer act lines than dialogues.
    let d = dd_set(p, "f", text, "0 0\n0 0\n", "1 2\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_f.txt",
        2,
    );
    assert!(
        matches!(problem, LineProblem::NoMatchingLine(f) if f.ends_with("dialogues_act_f.txt"))
    );

    // More emotion lines than dialogues: the extra label line is named.
    let d = dd_set(p, "g", text, "0 0\n0 0\n0\n", "1 2\n1 2\n");
    at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_emotion_g.txt",
        3,
    );

    // More act lines than dialogues.
    let d = dd_set(p, "h", text, "0 0\n0 0\n", "1 2\n1 2\n1\n");
    at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_act_h.txt",
        3,
    );

    // No separator; an empty utterance.
    let d = dd_set(p, "i", "A __eou__\nno separator\n", "0\n0\n", "1\n1\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_i.txt",
        2,
    );
    assert_eq!(problem, LineProblem::NoUtteranceSeparator);
    let d = dd_set(
        p,
        "j",
        "A __eou__ __eou__ B __eou__\n",
        "0 0 0\n",
        "1 1 1\n",
    );
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_j.txt",
        1,
    );
    assert_eq!(problem, LineProblem::EmptyUtterance(2));

    // Invalid UTF-8 on line 2 of the labels.
    let d = dd_set(p, "k", text, "0 0\n", "1 2\n1 2\n");
    std::fs::write(p.join("dialogues_emotion_k.txt"), b"0 0\n0 \xff\n").expect("write");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_emotion_k.txt",
        2,
    );
    assert_eq!(problem, LineProblem::NotUtf8);

    // Only blank lines.
    let d = dd_set(p, "l", "\n\n", "\n\n", "\n\n");
    let problem = at(
        DailyDialogCorpus::load(&d).unwrap_err(),
        "dialogues_l.txt",
        1,
    );
    assert_eq!(problem, LineProblem::NoDialogues);

    // Missing files: the dialogues, the emotions, an explicit act file.
    let err = DailyDialogCorpus::load(&p.join("dialogues_none.txt")).unwrap_err();
    assert!(
        matches!(err, TextError::Io { .. }) && err.to_string().contains("dialogues_none.txt"),
        "{err}"
    );
    let d = write(p, "dialogues_m.txt", text);
    let err = DailyDialogCorpus::load(&d).unwrap_err();
    assert!(err.to_string().contains("dialogues_emotion_m.txt"), "{err}");
    write(p, "dialogues_emotion_m.txt", "0 0\n0 0\n");
    assert!(
        DailyDialogCorpus::load(&d).is_ok(),
        "the act file is optional"
    );
    let err = DailyDialogCorpus::load_files(
        &d,
        &p.join("dialogues_emotion_m.txt"),
        Some(&p.join("acts_m.txt")),
    )
    .unwrap_err();
    assert!(
        matches!(err, TextError::Io { .. }) && err.to_string().contains("acts_m.txt"),
        "{err}"
    );

    // A name the companion files cannot be derived from.
    let err = DailyDialogCorpus::load(&p.join("whatever.txt")).unwrap_err();
    assert!(
        matches!(err, TextError::UnrecognisedFileName { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("whatever.txt"), "{err}");
}

const ED_HEADER: &str =
    "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n";

fn ed_file(dir: &Path, rows: &str) -> PathBuf {
    write(dir, "train.csv", &format!("{ED_HEADER}{rows}"))
}

#[test]
fn empathetic_release_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ed_file(
        dir.path(),
        "hit:0_conv:1,1,sentimental,I remember my first dog_comma_ Max.,1,I still think of my old dog_comma_ Max.,5|5|5_2|2|5,\n\
         hit:0_conv:1,2,sentimental,I remember my first dog_comma_ Max.,0,What was he like?,5|5|5_2|2|5,\n\
         hit:0_conv:1,3,sentimental,I remember my first dog_comma_ Max.,1,Loyal_comma_ and always hungry.,5|5|5_2|2|5,\n\
         hit:1_conv:2,1,afraid,A storm was coming.,2,The thunder last night scared me.,,\n\
         hit:1_conv:2,2,afraid,A storm was coming.,3,That sounds frightening. Are you safe now?,,\n",
    );
    let ed = EmpatheticDialogues::load(&path).expect("load");
    assert_eq!(ed.len(), 2);
    assert_eq!(ed.utterance_count(), 5);
    let c = &ed.conversations[0];
    assert_eq!(c.conv_id, "hit:0_conv:1");
    assert_eq!(c.emotion, "sentimental");
    assert_eq!(c.prompt, "I remember my first dog, Max.");
    assert_eq!(c.utterances[2].text, "Loyal, and always hungry.");
    assert_eq!(c.utterances[1].speaker_idx, 0);

    let ex = examples(&ed.to_dialogues(), 8);
    assert_eq!(ex.len(), 3);
    let last = &ex[1];
    assert_eq!(last.dialogue_id, "hit:0_conv:1");
    assert_eq!(last.turn, 2);
    assert_eq!(last.emotion, "sentimental");
    assert_eq!(last.response, "Loyal, and always hungry.");
    let roles: Vec<Role> = last.history.iter().map(|t| t.role).collect();
    assert_eq!(roles, vec![Role::Bot, Role::User]);
    assert_eq!(ex[2].emotion, "afraid");
    assert_eq!(
        ex[2].text(),
        "USER: The thunder last night scared me.\nBOT: That sounds frightening. Are you safe now?"
    );
}

/// Whether a problem is the expected one.
type Check = fn(&LineProblem) -> bool;

#[test]
fn empathetic_errors_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = "c1,1,proud,p,1,Hello,,\n";
    let cases: Vec<(String, usize, Check)> = vec![
        // Wrong field count (an unescaped comma in the text).
        (format!("{ok}c1,2,proud,p,2,Hi, there,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::FieldCount {
                    found: 9,
                    expected: 8
                }
            )
        }),
        (format!("{ok}c1,2,proud\n"), 3, |p| {
            matches!(p, LineProblem::FieldCount { found: 3, .. })
        }),
        // Non-numeric utterance_idx and speaker_idx.
        (format!("{ok}c1,two,proud,p,2,Hi,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::NotANumber {
                    field: "utterance_idx",
                    ..
                }
            )
        }),
        (format!("{ok}c1,2,proud,p,x,Hi,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::NotANumber {
                    field: "speaker_idx",
                    ..
                }
            )
        }),
        // Out-of-order idx: a gap, a repeat, a conversation not starting at 1.
        (format!("{ok}c1,3,proud,p,2,Hi,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::UtteranceOutOfOrder {
                    found: 3,
                    expected: 2,
                    ..
                }
            )
        }),
        (format!("{ok}c1,1,proud,p,2,Hi,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::UtteranceOutOfOrder {
                    found: 1,
                    expected: 2,
                    ..
                }
            )
        }),
        (format!("{ok}c2,2,proud,p,2,Hi,,\n"), 3, |p| {
            matches!(
                p,
                LineProblem::UtteranceOutOfOrder {
                    found: 2,
                    expected: 1,
                    ..
                }
            )
        }),
        // A conversation split by another.
        (
            format!("{ok}c2,1,sad,p,2,Hi,,\nc1,2,proud,p,2,Back,,\n"),
            4,
            |p| matches!(p, LineProblem::ConversationNotContiguous(c) if c == "c1"),
        ),
        // Labels: unknown, or changing within a conversation.
        (
            format!("{ok}c2,1,happyish,p,2,Hi,,\n"),
            3,
            |p| matches!(p, LineProblem::UnknownEmotion(e) if e == "happyish"),
        ),
        (format!("{ok}c1,2,sad,p,2,Hi,,\n"), 3, |p| {
            matches!(p, LineProblem::EmotionChanged { .. })
        }),
        // Empty utterance and conv_id.
        (format!("{ok}c1,2,proud,p,2, ,,\n"), 3, |p| {
            *p == LineProblem::EmptyField("utterance")
        }),
        (format!("{ok},1,proud,p,2,Hi,,\n"), 3, |p| {
            *p == LineProblem::EmptyField("conv_id")
        }),
    ];
    for (rows, line, check) in cases {
        let path = ed_file(dir.path(), &rows);
        let err = EmpatheticDialogues::load(&path).expect_err(&rows);
        let problem = at(err, "train.csv", line);
        assert!(check(&problem), "{rows}: {problem:?}");
    }

    let path = write(
        dir.path(),
        "valid.csv",
        "conv_id,utterance_idx,context\nc1,1,proud\n",
    );
    let problem = at(
        EmpatheticDialogues::load(&path).unwrap_err(),
        "valid.csv",
        1,
    );
    assert!(matches!(problem, LineProblem::UnexpectedHeader { .. }));
    let path = write(dir.path(), "test.csv", ED_HEADER);
    let problem = at(EmpatheticDialogues::load(&path).unwrap_err(), "test.csv", 1);
    assert_eq!(problem, LineProblem::NoDialogues);
    let err = EmpatheticDialogues::load(dir.path().join("missing.csv")).unwrap_err();
    assert!(
        matches!(err, TextError::Io { .. }) && err.to_string().contains("missing.csv"),
        "{err}"
    );
}

fn dialogue(id: &str, texts: &[&str]) -> Dialogue {
    Dialogue {
        id: id.into(),
        utterances: texts
            .iter()
            .enumerate()
            .map(|(i, t)| LabelledUtterance {
                text: t.to_string(),
                emotion: format!("e{i}"),
            })
            .collect(),
    }
}

#[test]
fn examples_alternate_roles_and_cap_history() {
    let d = dialogue("d", &["a", "b", "c", "d", "e"]);
    let ex = examples(std::slice::from_ref(&d), 2);
    assert_eq!(ex.len(), 4);
    type Shape<'a> = (usize, Vec<(Role, &'a str)>, &'a str, &'a str);
    let shape: Vec<Shape> = ex
        .iter()
        .map(|e| {
            (
                e.turn,
                e.history
                    .iter()
                    .map(|t| (t.role, t.text.as_str()))
                    .collect(),
                e.response.as_str(),
                e.emotion.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (1, vec![(Role::User, "a")], "b", "e1"),
            (2, vec![(Role::Bot, "a"), (Role::User, "b")], "c", "e2"),
            (3, vec![(Role::Bot, "b"), (Role::User, "c")], "d", "e3"),
            (4, vec![(Role::Bot, "c"), (Role::User, "d")], "e", "e4"),
        ]
    );
    assert!(examples(&[dialogue("one", &["solo"])], 3).is_empty());
    assert!(examples(&[d], 0).iter().all(|e| e.history.is_empty()));
}

fn synthetic_examples(n_dialogues: usize) -> Vec<emorl_text::DialogueExample> {
    let dialogues: Vec<Dialogue> = (0..n_dialogues)
        .map(|i| dialogue(&format!("conv{i}"), &["x", "y", "z"][..2 + i % 2]))
        .collect();
    examples(&dialogues, 3)
}

#[test]
fn splits_are_deterministic_disjoint_and_near_the_fractions() {
    let fractions = SplitFractions::new(0.8, 0.1, 0.1).expect("fractions");
    let all = synthetic_examples(4000);
    let a = split_examples(all.clone(), &fractions);
    let b = split_examples(all.clone(), &fractions);
    assert_eq!(a, b);
    assert_eq!(a.train.len() + a.validation.len() + a.test.len(), all.len());

    let ids = |v: &[emorl_text::DialogueExample]| -> HashSet<String> {
        v.iter().map(|e| e.dialogue_id.clone()).collect()
    };
    let (tr, va, te) = (ids(&a.train), ids(&a.validation), ids(&a.test));
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    let share = |s: &HashSet<String>| s.len() as f64 / 4000.0;
    assert!((share(&tr) - 0.8).abs() < 0.03, "{}", share(&tr));
    assert!((share(&va) - 0.1).abs() < 0.03, "{}", share(&va));
    assert!((share(&te) - 0.1).abs() < 0.03, "{}", share(&te));

    // The split of a dialogue depends on its id only, not on what else is split.
    let alone = split_examples(all[..50].to_vec(), &fractions);
    for e in &alone.validation {
        assert!(va.contains(&e.dialogue_id));
    }
    // Pinned values (FNV-1a, whose value for "a" is the published
    // 0xaf63dc4c8601ec8c, then the splitmix64 finaliser, computed
    // independently) guard against the hash changing between builds.
    use emorl_text::dialogues::stable_hash;
    assert_eq!(stable_hash(""), 0xf52a_15e9_a9b5_e89b);
    assert_eq!(stable_hash("a"), 0x02c0_bdbf_4814_20f8);
    assert_eq!(stable_hash("hit:0_conv:1"), 0x8527_0153_cb65_1a6c);

    let none_test = SplitFractions::new(0.5, 0.5, 0.0).expect("fractions");
    assert!(split_examples(all.clone(), &none_test).test.is_empty());
    for bad in [(0.5, 0.5, 0.5), (-0.1, 0.6, 0.5), (f64::NAN, 0.5, 0.5)] {
        assert!(matches!(
            SplitFractions::new(bad.0, bad.1, bad.2),
            Err(TextError::InvalidInput(_))
        ));
    }
}

#[test]
fn shuffle_is_deterministic_per_seed() {
    let all = synthetic_examples(200);
    let mut a = all.clone();
    let mut b = all.clone();
    shuffle_seeded(&mut a, 7);
    shuffle_seeded(&mut b, 7);
    assert_eq!(a, b);
    assert_ne!(a, all);
    let mut c = all.clone();
    shuffle_seeded(&mut c, 8);
    assert_ne!(a, c);
    // A permutation: the same multiset of (dialogue, turn).
    let count = |v: &[emorl_text::DialogueExample]| {
        let mut m: HashMap<(String, usize), usize> = HashMap::new();
        for e in v {
            *m.entry((e.dialogue_id.clone(), e.turn)).or_default() += 1;
        }
        m
    };
    assert_eq!(count(&a), count(&all));
}
