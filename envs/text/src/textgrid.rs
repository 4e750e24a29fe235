//! The `gridworld-text` bridge: any [`DiscreteEnv`] with the four grid moves
//! (action 0 up, 1 down, 2 left, 3 right) played through text, so tabular,
//! DQN and language-model agents can be compared on one task.
//!
//! The observation is the inner environment's `render()` plus a plain-text
//! description of its emotional context (threat distance, goal distance,
//! blocked moves, harm). The action is a response naming a move: "up",
//! "north", "go left", "I'll move east.", or a single letter (u/d/l/r or
//! n/s/e/w) as the whole response; see [`parse_move`]. An unparseable or
//! ambiguous response earns `invalid_penalty`, does not move, and puts a
//! note in the next observation; after `max_invalid_in_row` such responses
//! in a row the episode is truncated. Otherwise reward, termination and the
//! emotional context are the inner environment's, passed through unchanged.

use crate::error::TextEnvError;
use emorl_core::{DiscreteEnv, EmotionalContext, Env, Info, Step};
use emorl_text::words;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Move names in action-index order.
pub const MOVE_NAMES: [&str; 4] = ["up", "down", "left", "right"];

const SYNONYMS: &[(&str, usize)] = &[
    ("up", 0),
    ("upward", 0),
    ("upwards", 0),
    ("north", 0),
    ("northward", 0),
    ("down", 1),
    ("downward", 1),
    ("downwards", 1),
    ("south", 1),
    ("southward", 1),
    ("left", 2),
    ("west", 2),
    ("westward", 2),
    ("right", 3),
    ("east", 3),
    ("eastward", 3),
];

const SINGLE_LETTERS: &[(&str, usize)] = &[
    ("u", 0),
    ("n", 0),
    ("d", 1),
    ("s", 1),
    ("l", 2),
    ("w", 2),
    ("r", 3),
    ("e", 3),
];

const NEGATIONS: &[&str] = &[
    "not",
    "don't",
    "dont",
    "never",
    "avoid",
    "no",
    "can't",
    "cannot",
    "shouldn't",
    "won't",
    "instead",
];

const MOVE_VERBS: &[&str] = &[
    "go", "move", "head", "step", "walk", "turn", "going", "moving", "heading", "try", "run",
];

/// Why a response named no move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveParseError {
    NoMove,
    Ambiguous(Vec<usize>),
}

impl std::fmt::Display for MoveParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveParseError::NoMove => {
                f.write_str("no move named (answer with up, down, left or right)")
            }
            MoveParseError::Ambiguous(m) => {
                let names: Vec<&str> = m
                    .iter()
                    .filter_map(|&i| MOVE_NAMES.get(i).copied())
                    .collect();
                write!(
                    f,
                    "several moves named ({}); name exactly one",
                    names.join(", ")
                )
            }
        }
    }
}

/// Finds the move a response names (action index 0 up, 1 down, 2 left, 3 right).
///
/// Direction words and synonyms (north/south/west/east) count unless one of
/// the two preceding words negates them ("don't go left"). If several
/// distinct moves remain, those right after a movement verb ("go", "move",
/// "head" …, optionally followed by "to", "the", "towards") decide; if that
/// is still not exactly one move, the response is ambiguous.
pub fn parse_move(response: &str) -> Result<usize, MoveParseError> {
    let toks = words(response);
    if toks.len() == 1 {
        if let Some(&(_, m)) = SINGLE_LETTERS.iter().find(|(w, _)| *w == toks[0]) {
            return Ok(m);
        }
    }
    let dir = |t: &str| SYNONYMS.iter().find(|(w, _)| *w == t).map(|&(_, m)| m);
    let mut kept: Vec<(usize, usize)> = Vec::new(); // (token index, move)
    for (i, t) in toks.iter().enumerate() {
        if let Some(m) = dir(t) {
            let negated = toks[i.saturating_sub(2)..i]
                .iter()
                .any(|p| NEGATIONS.contains(&p.as_str()));
            if !negated {
                kept.push((i, m));
            }
        }
    }
    let distinct = |moves: &mut dyn Iterator<Item = usize>| {
        let mut v: Vec<usize> = Vec::new();
        for m in moves {
            if !v.contains(&m) {
                v.push(m);
            }
        }
        v
    };
    let all = distinct(&mut kept.iter().map(|&(_, m)| m));
    match all.len() {
        0 => return Err(MoveParseError::NoMove),
        1 => return Ok(all[0]),
        _ => {}
    }
    let after_verb = distinct(&mut kept.iter().filter_map(|&(i, m)| {
        let mut j = i;
        while j > 0 && matches!(toks[j - 1].as_str(), "to" | "the" | "towards" | "toward") {
            j -= 1;
        }
        (j > 0 && MOVE_VERBS.contains(&toks[j - 1].as_str())).then_some(m)
    }));
    if after_verb.len() == 1 {
        Ok(after_verb[0])
    } else {
        Err(MoveParseError::Ambiguous(all))
    }
}

/// Plain-text description of an emotional context.
pub fn describe_context(ctx: &EmotionalContext) -> String {
    let mut s = String::new();
    match ctx.threat_distance {
        Some(d) => {
            let _ = write!(s, "Threat: {d:.0} steps away");
            s.push_str(if ctx.near_threat {
                " (right next to you!).\n"
            } else {
                ".\n"
            });
        }
        None => s.push_str("No threat in sight.\n"),
    }
    if let Some(g) = ctx.goal_distance {
        let _ = writeln!(s, "Goal: {g:.0} steps away.");
    }
    if ctx.was_blocked {
        let _ = write!(s, "Your last move was blocked");
        if ctx.consecutive_blocks > 1 {
            let _ = write!(s, " ({} times in a row)", ctx.consecutive_blocks);
        }
        s.push_str(".\n");
    }
    if ctx.harmed {
        s.push_str("You were just harmed!\n");
    }
    let _ = writeln!(s, "Last reward: {:+.2}.", ctx.reward);
    if let Some(social) = &ctx.social {
        let _ = writeln!(s, "Social: {}", crate::dialogue::describe_social(social));
    }
    s
}

/// Configuration of [`TextGrid`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextGridConfig {
    /// Reward of a response that names no move.
    pub invalid_penalty: f64,
    /// Consecutive unparseable responses that truncate the episode.
    pub max_invalid_in_row: usize,
}

impl Default for TextGridConfig {
    fn default() -> Self {
        TextGridConfig {
            invalid_penalty: -1.0,
            max_invalid_in_row: 20,
        }
    }
}

/// What a text agent sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextGridObs {
    /// The inner environment's state index.
    pub state: usize,
    /// The inner environment's `render()`.
    pub grid: String,
    /// [`describe_context`] of the inner context.
    pub context: String,
    /// Set when the last response named no move.
    pub note: Option<String>,
    /// Responses so far in this episode.
    pub step: usize,
}

impl TextGridObs {
    /// Plain-text rendering for a prompt.
    pub fn to_prompt(&self) -> String {
        let mut s = String::from("You are moving through a grid.\n");
        s.push_str(self.grid.trim_end());
        s.push('\n');
        s.push_str(&self.context);
        if let Some(n) = &self.note {
            let _ = writeln!(s, "Note: {n}");
        }
        s.push_str("Which way do you move? Answer with up, down, left or right.\n");
        s
    }
}

/// A [`DiscreteEnv`] played through text.
#[derive(Debug)]
pub struct TextGrid<E: DiscreteEnv> {
    inner: E,
    config: TextGridConfig,
    state: usize,
    steps: usize,
    invalid_in_row: usize,
    note: Option<String>,
}

impl<E: DiscreteEnv> TextGrid<E> {
    /// Wraps `inner`, which must have exactly the four grid moves.
    pub fn new(inner: E, config: TextGridConfig) -> Result<Self, TextEnvError> {
        if inner.n_actions() != 4 {
            return Err(TextEnvError::InvalidConfig(format!(
                "gridworld-text needs an environment with 4 actions (up, down, left, right), got {}",
                inner.n_actions()
            )));
        }
        if config.max_invalid_in_row == 0 || !config.invalid_penalty.is_finite() {
            return Err(TextEnvError::InvalidConfig(
                "max_invalid_in_row must be at least 1 and invalid_penalty finite".into(),
            ));
        }
        Ok(TextGrid {
            inner,
            config,
            state: 0,
            steps: 0,
            invalid_in_row: 0,
            note: None,
        })
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }

    pub fn into_inner(self) -> E {
        self.inner
    }

    fn observation(&self, ctx: &EmotionalContext) -> TextGridObs {
        TextGridObs {
            state: self.state,
            grid: self.inner.render(),
            context: describe_context(ctx),
            note: self.note.clone(),
            step: self.steps,
        }
    }
}

impl<E: DiscreteEnv> Env for TextGrid<E> {
    type Obs = TextGridObs;
    type Action = String;

    fn reset(&mut self, seed: Option<u64>) -> (TextGridObs, Info) {
        let (state, info) = self.inner.reset(seed);
        self.state = state;
        self.steps = 0;
        self.invalid_in_row = 0;
        self.note = None;
        let ctx = self.inner.context();
        (self.observation(&ctx), info)
    }

    fn step(&mut self, action: &String) -> Step<TextGridObs> {
        self.steps += 1;
        match parse_move(action) {
            Ok(m) => {
                self.invalid_in_row = 0;
                self.note = None;
                let step = self.inner.step(&m);
                self.state = step.obs;
                let mut info = step.info;
                info.insert("move".into(), m as f64);
                Step {
                    obs: self.observation(&step.context),
                    reward: step.reward,
                    terminated: step.terminated,
                    truncated: step.truncated,
                    context: step.context,
                    info,
                }
            }
            Err(e) => {
                self.invalid_in_row += 1;
                self.note = Some(format!(
                    "your last answer could not be read as a move: {e}. You did not move and paid a penalty."
                ));
                let mut ctx = self.inner.context();
                ctx.reward = self.config.invalid_penalty;
                let mut info = Info::new();
                info.insert("invalid".into(), 1.0);
                Step {
                    obs: self.observation(&ctx),
                    reward: self.config.invalid_penalty,
                    terminated: false,
                    truncated: self.invalid_in_row >= self.config.max_invalid_in_row,
                    context: ctx,
                    info,
                }
            }
        }
    }

    fn context(&self) -> EmotionalContext {
        self.inner.context()
    }

    fn render(&self) -> String {
        self.observation(&self.inner.context()).to_prompt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_moves() {
        let cases = [
            ("up", 0),
            ("North", 0),
            ("go left", 2),
            ("I'll move east.", 3),
            ("d", 1),
            ("s", 1),
            ("Let's head south", 1),
            ("don't go left, go right", 3),
            ("Right, I'll go up", 0),
            ("Moving to the west now", 2),
        ];
        for (text, m) in cases {
            assert_eq!(parse_move(text), Ok(m), "{text}");
        }
        assert_eq!(parse_move("wait here"), Err(MoveParseError::NoMove));
        assert_eq!(parse_move(""), Err(MoveParseError::NoMove));
        assert!(matches!(
            parse_move("up or down"),
            Err(MoveParseError::Ambiguous(_))
        ));
    }

    #[test]
    fn describes_context() {
        let ctx = EmotionalContext {
            threat_distance: Some(1.0),
            near_threat: true,
            goal_distance: Some(4.0),
            was_blocked: true,
            consecutive_blocks: 2,
            harmed: true,
            reward: -1.0,
            ..EmotionalContext::default()
        };
        let d = describe_context(&ctx);
        for part in [
            "Threat: 1 steps away (right next to you!)",
            "Goal: 4 steps away.",
            "blocked (2 times in a row)",
            "harmed",
            "Last reward: -1.00",
        ] {
            assert!(d.contains(part), "{d}");
        }
        assert!(describe_context(&EmotionalContext::default()).contains("No threat"));
    }
}
