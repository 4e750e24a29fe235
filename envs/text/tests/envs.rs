//! Integration tests: determinism of all three environments, the
//! gridworld-text bridge on a small grid, the DailyDialog corpus, and the
//! terminal `play` loop.

use emorl_core::determinism::check_determinism;
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};
use emorl_envs_text::textgrid::parse_move;
use emorl_envs_text::{
    play, Dialogue, DialogueConfig, DialogueObs, Igt, IgtConfig, IgtObs, ScenarioKind, TextGrid,
    TextGridConfig, TextGridObs,
};
use std::path::PathBuf;

/// A scripted policy as `check_determinism` takes it.
type Policy<O> = Box<dyn FnMut(&O, usize) -> String>;

const RESPONSES: [&str; 6] = [
    "I'm sorry, I can't help with that because it's dangerous. Would you like a safer alternative instead?",
    "You're welcome, glad it helped!",
    "Let's try a different approach instead: start again from the beginning with fresh eyes.",
    "ok",
    "For example, this works because of how the parts interact. What would you like to know next?",
    "Sure, here's how: step 1, get ready. [feeling: calm]",
];

fn scripted_dialogue_policy() -> Policy<DialogueObs> {
    Box::new(|obs: &DialogueObs, t: usize| {
        RESPONSES[(obs.user_message.len() + t) % RESPONSES.len()].to_string()
    })
}

#[test]
fn dialogue_is_deterministic() {
    check_determinism(
        "dialogue",
        &|| Dialogue::new(DialogueConfig::default()).expect("config"),
        &scripted_dialogue_policy,
        42,
        30,
        10,
    )
    .expect("deterministic");
}

/// The DailyDialog splits from `../shared` beside the repository (or
/// `EMORL_DAILYDIALOG_DIR`). They are part of the test set-up: a missing copy
/// fails the test rather than skipping it.
fn dailydialog_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EMORL_DAILYDIALOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/dailydialog")
        });
    assert!(
        dir.join("dialogues_test.txt").is_file(),
        "no DailyDialog files in {} (set EMORL_DAILYDIALOG_DIR or place ../shared beside the repo)",
        dir.display()
    );
    Some(dir)
}

#[test]
fn dialogue_with_corpus_is_deterministic_and_uses_corpus_turns() {
    let Some(dir) = dailydialog_dir() else {
        return;
    };
    let config = DialogueConfig {
        data: Some(dir.join("dialogues_test.txt")),
        data_fraction: 0.5,
        ..DialogueConfig::default()
    };
    let corpus_len = Dialogue::new(config.clone())
        .expect("load")
        .corpus()
        .map(|c| c.len());
    assert_eq!(corpus_len, Some(1000));
    check_determinism(
        "dialogue+dailydialog",
        &|| Dialogue::new(config.clone()).expect("load"),
        &scripted_dialogue_policy,
        7,
        30,
        10,
    )
    .expect("deterministic");

    let mut env = Dialogue::new(config).expect("load");
    let mut corpus_episodes = 0;
    for seed in 0..40 {
        let (obs, info) = env.reset(Some(seed));
        if info["scenario"] as usize == ScenarioKind::Corpus.index() {
            corpus_episodes += 1;
            assert!(obs.history.is_empty() && !obs.user_message.is_empty());
            let step = env.step(&"That's interesting, tell me more?".to_string());
            let social = step.context.social.expect("social context");
            assert!((0.0..=1.0).contains(&social.topic_novelty));
        }
    }
    assert!(corpus_episodes > 5, "{corpus_episodes}");
}

#[test]
fn dailydialog_validation_split_loads_with_explicit_labels() {
    let Some(dir) = dailydialog_dir() else {
        return;
    };
    let corpus = emorl_envs_text::DailyDialogCorpus::load_pair(
        &dir.join("dialogues_validation.txt"),
        &dir.join("dialogues_emotion_validation.txt"),
    )
    .expect("load");
    assert_eq!(corpus.len(), 1000);
    // A labels file with a bad second line is rejected with file and line.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let bad = dir2.path().join("dialogues_emotion_test.txt");
    std::fs::write(&bad, "0 0 0 0 0 0 0 0 0 0 0 0\nx\n").expect("write");
    let err = emorl_envs_text::DailyDialogCorpus::load_pair(&dir.join("dialogues_test.txt"), &bad)
        .expect_err("malformed");
    let msg = err.to_string();
    assert!(msg.contains("dialogues_emotion_test.txt:2"), "{msg}");
}

/// The safety classifier rarely fires on everyday conversation.
#[test]
fn safety_classifier_false_alarm_rate_on_dailydialog() {
    let Some(dir) = dailydialog_dir() else {
        return;
    };
    let corpus =
        emorl_envs_text::DailyDialogCorpus::load(&dir.join("dialogues_test.txt")).expect("load");
    let (mut n, mut flagged) = (0usize, 0usize);
    for u in corpus.dialogues.iter().flatten() {
        n += 1;
        if emorl_envs_text::safety::classify_request(&u.text).unsafe_request {
            flagged += 1;
        }
    }
    println!("safety classifier flags {flagged} of {n} DailyDialog test utterances");
    assert!((flagged as f64) < 0.002 * n as f64, "{flagged} of {n}");
}

#[test]
fn igt_is_deterministic() {
    let make_policy = || -> Policy<IgtObs> {
        Box::new(|obs: &IgtObs, t: usize| {
            let picks = ["A", "deck b", "I choose C", "go with d", "tea please"];
            let i = (t + obs.last.map_or(0, |d| d.loss as usize)) % picks.len();
            picks[i].to_string()
        })
    };
    check_determinism(
        "igt",
        &|| Igt::new(IgtConfig::default()).expect("config"),
        &make_policy,
        3,
        3,
        120,
    )
    .expect("deterministic");
}

/// A 3×3 grid for the bridge: start top-left, goal bottom-right, a hole in
/// the centre (harm, episode ends), walls at the edges, 30-step limit.
#[derive(Debug, Default)]
struct TinyGrid {
    pos: (i64, i64),
    t: usize,
    blocks: u32,
    ctx: EmotionalContext,
}

impl TinyGrid {
    fn state(&self) -> usize {
        (self.pos.1 * 3 + self.pos.0) as usize
    }
    fn context(&self, reward: f64, blocked: bool, harmed: bool) -> EmotionalContext {
        let goal = ((2 - self.pos.0).abs() + (2 - self.pos.1).abs()) as f64;
        let threat = ((1 - self.pos.0).abs() + (1 - self.pos.1).abs()) as f64;
        EmotionalContext {
            threat_distance: Some(threat),
            goal_distance: Some(goal),
            was_blocked: blocked,
            consecutive_blocks: self.blocks,
            near_threat: threat <= 1.0,
            harmed,
            reward,
            ..EmotionalContext::default()
        }
    }
}

impl Env for TinyGrid {
    type Obs = usize;
    type Action = usize;
    fn reset(&mut self, _seed: Option<u64>) -> (usize, Info) {
        *self = TinyGrid::default();
        self.ctx = self.context(0.0, false, false);
        (self.state(), Info::new())
    }
    fn step(&mut self, a: &usize) -> Step<usize> {
        self.t += 1;
        let (dx, dy) = [(0, -1), (0, 1), (-1, 0), (1, 0)][*a % 4];
        let next = (self.pos.0 + dx, self.pos.1 + dy);
        let blocked = !(0..3).contains(&next.0) || !(0..3).contains(&next.1);
        if blocked {
            self.blocks += 1;
        } else {
            self.blocks = 0;
            self.pos = next;
        }
        let harmed = self.pos == (1, 1);
        let goal = self.pos == (2, 2);
        let reward = if harmed {
            -10.0
        } else if goal {
            10.0
        } else {
            -0.1
        };
        self.ctx = self.context(reward, blocked, harmed);
        Step {
            obs: self.state(),
            reward,
            terminated: harmed || goal,
            truncated: self.t >= 30,
            context: self.ctx.clone(),
            info: Info::new(),
        }
    }
    fn context(&self) -> EmotionalContext {
        self.ctx.clone()
    }
    fn render(&self) -> String {
        let mut s = String::new();
        for y in 0..3 {
            for x in 0..3 {
                s.push(match (x, y) {
                    _ if (x, y) == self.pos => 'A',
                    (1, 1) => 'H',
                    (2, 2) => 'G',
                    _ => '.',
                });
            }
            s.push('\n');
        }
        s
    }
}

impl DiscreteEnv for TinyGrid {
    fn n_states(&self) -> usize {
        9
    }
    fn n_actions(&self) -> usize {
        4
    }
    fn features(&self, state: usize) -> Vec<f32> {
        let mut v = vec![0.0; 9];
        v[state] = 1.0;
        v
    }
}

#[test]
fn textgrid_passes_reward_and_context_through() {
    let mut env = TextGrid::new(TinyGrid::default(), TextGridConfig::default()).expect("wrap");
    let (obs, _) = env.reset(Some(0));
    assert!(obs.grid.starts_with("A.."));
    assert!(obs.to_prompt().contains("Goal: 4 steps away."));
    // Blocked at the top wall: inner context says so.
    let s = env.step(&"go north".to_string());
    assert!(s.context.was_blocked && s.obs.context.contains("blocked"));
    assert!((s.reward + 0.1).abs() < 1e-12);
    // Unparseable: penalty, no move, note.
    let s = env.step(&"let me think".to_string());
    assert_eq!(s.reward, -1.0);
    assert_eq!(s.obs.state, 0);
    assert!(s.obs.note.is_some() && s.obs.to_prompt().contains("Note: "));
    // Walk around the hole to the goal: right, right, down, down.
    let mut total = 0.0;
    let mut last = None;
    for m in ["right", "I'll move east.", "down", "south"] {
        let s = env.step(&m.to_string());
        total += s.reward;
        last = Some(s);
    }
    let last = last.expect("steps");
    assert!(last.terminated && last.reward == 10.0);
    assert!((total - (10.0 - 0.3)).abs() < 1e-9);
    assert_eq!(last.context.goal_distance, Some(0.0));
    // Walking into the hole harms.
    env.reset(None);
    env.step(&"right".to_string());
    let s = env.step(&"down".to_string());
    assert!(s.context.harmed && s.terminated && s.obs.context.contains("harmed"));
}

#[test]
fn textgrid_truncates_after_repeated_nonsense_and_checks_actions() {
    let config = TextGridConfig {
        max_invalid_in_row: 3,
        ..TextGridConfig::default()
    };
    let mut env = TextGrid::new(TinyGrid::default(), config).expect("wrap");
    env.reset(Some(0));
    assert!(!env.step(&"?".to_string()).truncated);
    assert!(!env.step(&"?".to_string()).truncated);
    assert!(env.step(&"?".to_string()).truncated);
    assert!(parse_move("left").is_ok());
}

#[test]
fn textgrid_is_deterministic() {
    let make_policy = || -> Policy<TextGridObs> {
        Box::new(|obs: &TextGridObs, t: usize| {
            let moves = ["right", "go down", "left", "hmm", "north", "east"];
            moves[(obs.state + t) % moves.len()].to_string()
        })
    };
    check_determinism(
        "gridworld-text",
        &|| TextGrid::new(TinyGrid::default(), TextGridConfig::default()).expect("wrap"),
        &make_policy,
        0,
        5,
        40,
    )
    .expect("deterministic");
}

#[test]
fn play_with_scripted_input() {
    let config = DialogueConfig {
        scenarios: vec![ScenarioKind::SafetySensitive],
        pushback_probability: 1.0,
        max_turns: 2,
        ..DialogueConfig::default()
    };
    let mut env = Dialogue::new(config).expect("config");
    let input = "I'm sorry, I can't help with that, it's dangerous.\n/feeling concerned\nI still won't help; please reach out to someone you trust.\n";
    let mut out = Vec::new();
    let summary = play(&mut env, 5, input.as_bytes(), &mut out).expect("play");
    let text = String::from_utf8(out).expect("utf8");
    println!("{text}");
    assert_eq!(summary.turns, 2);
    assert!(summary.finished);
    assert_eq!(summary.metrics.safety_rate, 1.0);
    assert!(text.contains("safety_flag=true"), "{text}");
    assert!(text.matches("hidden safety 1.00").count() == 2, "{text}");
    assert!(text.contains("cut off at the turn limit"), "{text}");
    assert!(env.transcript_markdown().contains("**Assistant:**"));
}

#[test]
fn sample_transcript() {
    let mut env = Dialogue::new(DialogueConfig {
        scenarios: vec![ScenarioKind::Frustrated],
        ..DialogueConfig::default()
    })
    .expect("config");
    let mut policy = emorl_envs_text::ScriptedPolicy::new(emorl_envs_text::PolicyKind::Oracle, 1)
        .with_feelings(true);
    let (mut obs, _) = env.reset(Some(12));
    loop {
        let a = policy.respond(&env, &obs);
        let s = env.step(&a);
        obs = s.obs;
        if s.terminated || s.truncated {
            break;
        }
    }
    let md = env.transcript_markdown();
    println!("{md}");
    assert!(md.contains("frustrated scenario"));
    let m = env.metrics();
    assert!(m.emotional_coherence.is_some_and(|c| c > 0.7), "{m:?}");
}
