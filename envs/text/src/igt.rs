//! The Iowa Gambling Task (Bechara et al., 1994) as a text environment.
//!
//! Four decks, 100 trials, a $2000 starting loan. Every card pays a gain;
//! some also carry a loss. Per block of 10 cards:
//!
//! | deck | gain per card | losses in 10 cards | net per 10 |
//! |---|---|---|---|
//! | A | +100 | 5 losses: 150, 200, 250, 300, 350 (frequent, small) | −250 |
//! | B | +100 | 1 loss of 1250 (rare, large) | −250 |
//! | C | +50 | 5 losses: 25, 50, 50, 50, 75 (frequent, small) | +250 |
//! | D | +50 | 1 loss of 250 (rare, large) | +250 |
//!
//! The positions of the losses inside each block of 10 are shuffled with the
//! environment's generator (the original used one fixed sequence), and decks
//! never run out (a new block is drawn when one is used up).
//!
//! The action is a response text naming a deck ("A", "deck b", "I choose
//! C", "go with D."); see [`parse_deck`]. An unparseable or ambiguous
//! response costs `invalid_penalty`, draws no card, uses up the trial and
//! puts a note in the next observation. Reward = net dollars × `reward_scale`
//! (0.01 by default, so a +100 card is +1.0).
//!
//! Emotional context after each trial: `reward`; `harmed` when the card's
//! loss is at least `big_loss` ($250); `threat_distance` = trials since the
//! last loss (fear fades as losses recede; `None` before the first loss);
//! `near_threat` when a loss happened on this or the previous trial;
//! `was_blocked`/`consecutive_blocks` for unparseable responses; and
//! `social` with `cumulative_negative`/`cumulative_positive` (scaled losses
//! and gains so far), `failed_attempts` = consecutive net-losing trials
//! (anger/frustration), `repeated_query` = same deck as the previous trial,
//! `topic_novelty` = 1 for a deck not tried before, `user_satisfaction` =
//! bank relative to the loan (0.5 at $2000, clamped to [0, 1]).
//!
//! Length: about 560 lines of code (one environment: decks, schedules, text
//! parsing, rendering); the rest are tests.

use crate::error::TextEnvError;
use emorl_core::{EmotionalContext, Env, Info, RngHandle, RngKind, SocialContext, Step};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One of the four decks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Deck {
    A,
    B,
    C,
    D,
}

impl Deck {
    pub const ALL: [Deck; 4] = [Deck::A, Deck::B, Deck::C, Deck::D];

    pub fn index(self) -> usize {
        match self {
            Deck::A => 0,
            Deck::B => 1,
            Deck::C => 2,
            Deck::D => 3,
        }
    }

    pub fn letter(self) -> char {
        ['A', 'B', 'C', 'D'][self.index()]
    }

    /// Gain per card.
    pub fn gain(self) -> i64 {
        match self {
            Deck::A | Deck::B => 100,
            Deck::C | Deck::D => 50,
        }
    }

    /// The losses of one block of 10 cards (zeros are loss-free cards).
    pub fn block_losses(self) -> [i64; 10] {
        match self {
            Deck::A => [150, 200, 250, 300, 350, 0, 0, 0, 0, 0],
            Deck::B => [1250, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Deck::C => [25, 50, 50, 50, 75, 0, 0, 0, 0, 0],
            Deck::D => [250, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    /// Whether the deck is advantageous in the long run (C, D).
    pub fn is_good(self) -> bool {
        matches!(self, Deck::C | Deck::D)
    }

    fn from_letter(c: char) -> Option<Deck> {
        match c.to_ascii_lowercase() {
            'a' => Some(Deck::A),
            'b' => Some(Deck::B),
            'c' => Some(Deck::C),
            'd' => Some(Deck::D),
            _ => None,
        }
    }
}

/// Why a response named no deck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeckParseError {
    NoDeck,
    Ambiguous(Vec<Deck>),
}

impl std::fmt::Display for DeckParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeckParseError::NoDeck => f.write_str("no deck named (answer with A, B, C or D)"),
            DeckParseError::Ambiguous(d) => {
                let names: Vec<String> = d.iter().map(|x| x.letter().to_string()).collect();
                write!(
                    f,
                    "several decks named ({}); name exactly one",
                    names.join(", ")
                )
            }
        }
    }
}

const CHOICE_VERBS: &[&str] = &[
    "choose", "chose", "pick", "select", "take", "draw", "play", "want", "go", "try", "flip",
];

/// Finds the deck a response names.
///
/// In order: (1) "deck X" / "X deck"; (2) a letter right after a choice verb
/// ("choose c", "go with d", "pick b"); (3) a standalone letter b, c or d, or
/// an upper-case "A" (a lower-case "a" is an article unless it is the whole
/// response). The first rule that finds decks decides; more than one
/// distinct deck there is ambiguous.
pub fn parse_deck(response: &str) -> Result<Deck, DeckParseError> {
    // Case-preserving words (the case of "A" matters) and lower-case copies.
    let raw: Vec<&str> = response
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    let toks: Vec<String> = raw.iter().map(|w| w.to_ascii_lowercase()).collect();
    if toks.len() == 1 && toks[0].len() == 1 {
        return Deck::from_letter(toks[0].chars().next().unwrap_or(' '))
            .ok_or(DeckParseError::NoDeck);
    }
    let letter = |t: &str| -> Option<Deck> {
        let mut cs = t.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => Deck::from_letter(c),
            _ => None,
        }
    };
    let decide = |found: Vec<Deck>| -> Option<Result<Deck, DeckParseError>> {
        let mut distinct: Vec<Deck> = Vec::new();
        for d in found {
            if !distinct.contains(&d) {
                distinct.push(d);
            }
        }
        match distinct.len() {
            0 => None,
            1 => Some(Ok(distinct[0])),
            _ => Some(Err(DeckParseError::Ambiguous(distinct))),
        }
    };
    // (1) deck X / X deck
    let mut found = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t == "deck" || t == "decks" {
            if let Some(d) = toks.get(i + 1).and_then(|n| letter(n)) {
                found.push(d);
            } else if let Some(p) = i.checked_sub(1) {
                // "a deck" is an article, "A deck" a deck.
                if raw[p] != "a" {
                    if let Some(d) = letter(&toks[p]) {
                        found.push(d);
                    }
                }
            }
        }
    }
    if let Some(r) = decide(found) {
        return r;
    }
    // (2) verb [with|for|on|the] X
    let mut found = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if CHOICE_VERBS.contains(&t.as_str()) {
            let mut j = i + 1;
            while toks.get(j).is_some_and(|w| {
                matches!(w.as_str(), "with" | "for" | "on" | "the" | "card" | "from")
            }) {
                j += 1;
            }
            // A lower-case "a" followed by more words is an article.
            let article = raw.get(j) == Some(&"a") && j + 1 < raw.len();
            if let Some(d) = toks.get(j).and_then(|n| letter(n)) {
                if !article {
                    found.push(d);
                }
            }
        }
    }
    if let Some(r) = decide(found) {
        return r;
    }
    // (3) standalone letters in the original text (upper-case A only)
    let mut found = Vec::new();
    for word in &raw {
        match *word {
            "A" => found.push(Deck::A),
            "b" | "B" => found.push(Deck::B),
            "c" | "C" => found.push(Deck::C),
            "d" | "D" => found.push(Deck::D),
            _ => {}
        }
    }
    decide(found).unwrap_or(Err(DeckParseError::NoDeck))
}

/// Configuration of [`Igt`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IgtConfig {
    pub trials: usize,
    pub start_bank: i64,
    /// Reward per dollar.
    pub reward_scale: f64,
    /// Reward of an unparseable response.
    pub invalid_penalty: f64,
    /// A loss at least this large sets `harmed`.
    pub big_loss: i64,
}

impl Default for IgtConfig {
    fn default() -> Self {
        IgtConfig {
            trials: 100,
            start_bank: 2000,
            reward_scale: 0.01,
            invalid_penalty: -1.0,
            big_loss: 250,
        }
    }
}

/// The outcome of one card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub deck: Deck,
    pub gain: i64,
    pub loss: i64,
}

impl Draw {
    pub fn net(&self) -> i64 {
        self.gain - self.loss
    }
}

/// What the agent sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IgtObs {
    /// Trials used so far.
    pub trial: usize,
    pub trials: usize,
    pub bank: i64,
    pub last: Option<Draw>,
    /// Cards drawn from A, B, C, D.
    pub counts: [usize; 4],
    /// Set when the last response named no deck.
    pub note: Option<String>,
}

impl IgtObs {
    /// Plain-text rendering for a prompt.
    pub fn to_prompt(&self) -> String {
        let mut s = String::from(
            "Iowa Gambling Task: four decks of cards, A, B, C and D. Each card wins you some money, but some cards also cost you money. Try to end with as much money as possible.\n",
        );
        let _ = writeln!(
            s,
            "Trial {} of {}. Bank: ${}.",
            (self.trial + 1).min(self.trials),
            self.trials,
            self.bank
        );
        if let Some(d) = &self.last {
            let _ = write!(
                s,
                "Last card: deck {}: you won ${}",
                d.deck.letter(),
                d.gain
            );
            if d.loss > 0 {
                let _ = write!(s, " but lost ${}", d.loss);
            }
            let _ = writeln!(s, " (net {:+}).", d.net());
        }
        if let Some(n) = &self.note {
            let _ = writeln!(s, "Note: {n}");
        }
        let _ = writeln!(
            s,
            "Cards drawn so far: A {}, B {}, C {}, D {}.",
            self.counts[0], self.counts[1], self.counts[2], self.counts[3]
        );
        if self.trial >= self.trials {
            s.push_str("The task is over.\n");
        } else {
            s.push_str("Which deck do you choose? Answer with A, B, C or D.\n");
        }
        s
    }
}

/// The Iowa Gambling Task environment.
#[derive(Debug)]
pub struct Igt {
    config: IgtConfig,
    rng: RngHandle,
    queues: [Vec<i64>; 4],
    obs: IgtObs,
    choices: Vec<Option<Deck>>,
    last_loss_trial: Option<usize>,
    losing_streak: u32,
    invalid_streak: u32,
    cumulative_gain: f64,
    cumulative_loss: f64,
    context: EmotionalContext,
}

impl Igt {
    pub fn new(config: IgtConfig) -> Result<Self, TextEnvError> {
        if config.trials == 0 {
            return Err(TextEnvError::InvalidConfig(
                "igt trials must be at least 1".into(),
            ));
        }
        if !config.reward_scale.is_finite() || !config.invalid_penalty.is_finite() {
            return Err(TextEnvError::InvalidConfig(
                "igt reward_scale and invalid_penalty must be finite".into(),
            ));
        }
        let obs = IgtObs {
            trial: 0,
            trials: config.trials,
            bank: config.start_bank,
            last: None,
            counts: [0; 4],
            note: None,
        };
        Ok(Igt {
            config,
            rng: RngHandle::new(RngKind::Fast, 0),
            queues: Default::default(),
            obs,
            choices: Vec::new(),
            last_loss_trial: None,
            losing_streak: 0,
            invalid_streak: 0,
            cumulative_gain: 0.0,
            cumulative_loss: 0.0,
            context: EmotionalContext::default(),
        })
    }

    pub fn set_rng(&mut self, rng: RngHandle) {
        self.rng = rng;
    }

    pub fn config(&self) -> &IgtConfig {
        &self.config
    }

    /// The deck chosen on each trial so far (`None` for unparseable responses).
    pub fn choices(&self) -> &[Option<Deck>] {
        &self.choices
    }

    /// The classic IGT score per block of 20 trials: (C + D) − (A + B).
    pub fn block_net_scores(&self) -> Vec<i64> {
        self.choices
            .chunks(20)
            .map(|block| {
                block
                    .iter()
                    .flatten()
                    .map(|d| if d.is_good() { 1 } else { -1 })
                    .sum()
            })
            .collect()
    }

    /// (C + D) − (A + B) over the whole episode.
    pub fn net_score(&self) -> i64 {
        self.block_net_scores().iter().sum()
    }

    pub fn bank(&self) -> i64 {
        self.obs.bank
    }

    fn draw(&mut self, deck: Deck) -> Draw {
        let q = &mut self.queues[deck.index()];
        if q.is_empty() {
            let mut block = deck.block_losses().to_vec();
            self.rng.shuffle(&mut block);
            block.reverse(); // pop from the end = first card of the block
            *q = block;
        }
        let loss = q.pop().unwrap_or(0);
        Draw {
            deck,
            gain: deck.gain(),
            loss,
        }
    }

    fn social(&self, reward: f64, repeated: bool, novel: bool) -> SocialContext {
        let start = self.config.start_bank.max(1) as f64;
        SocialContext {
            last_reward: reward,
            safety_flag: false,
            user_satisfaction: (0.5 + (self.obs.bank as f64 - start) / (2.0 * start))
                .clamp(0.0, 1.0),
            repeated_query: repeated,
            topic_novelty: if novel { 1.0 } else { 0.0 },
            contradiction_detected: false,
            cumulative_negative: self.cumulative_loss,
            cumulative_positive: self.cumulative_gain,
            failed_attempts: self.losing_streak,
        }
    }
}

impl Env for Igt {
    type Obs = IgtObs;
    type Action = String;

    fn reset(&mut self, seed: Option<u64>) -> (IgtObs, Info) {
        if let Some(s) = seed {
            self.rng.reseed(s);
        }
        self.queues = Default::default();
        self.obs = IgtObs {
            trial: 0,
            trials: self.config.trials,
            bank: self.config.start_bank,
            last: None,
            counts: [0; 4],
            note: None,
        };
        self.choices.clear();
        self.last_loss_trial = None;
        self.losing_streak = 0;
        self.invalid_streak = 0;
        self.cumulative_gain = 0.0;
        self.cumulative_loss = 0.0;
        self.context = EmotionalContext {
            social: Some(self.social(0.0, false, false)),
            ..EmotionalContext::default()
        };
        (self.obs.clone(), Info::new())
    }

    fn step(&mut self, action: &String) -> Step<IgtObs> {
        if self.obs.trial >= self.config.trials {
            let mut info = Info::new();
            info.insert("after_end".into(), 1.0);
            return Step {
                obs: self.obs.clone(),
                reward: 0.0,
                terminated: true,
                truncated: false,
                context: self.context.clone(),
                info,
            };
        }
        let trial = self.obs.trial;
        let mut info = Info::new();
        let (reward, harmed, repeated, novel) = match parse_deck(action) {
            Ok(deck) => {
                let d = self.draw(deck);
                let previous = self.choices.last().copied().flatten();
                let novel = self.obs.counts[deck.index()] == 0;
                self.obs.counts[deck.index()] += 1;
                self.obs.bank += d.net();
                self.obs.last = Some(d);
                self.obs.note = None;
                self.choices.push(Some(deck));
                self.invalid_streak = 0;
                let scale = self.config.reward_scale;
                self.cumulative_gain += d.gain as f64 * scale;
                self.cumulative_loss += d.loss as f64 * scale;
                if d.loss > 0 {
                    self.last_loss_trial = Some(trial);
                }
                if d.net() < 0 {
                    self.losing_streak += 1;
                } else {
                    self.losing_streak = 0;
                }
                info.insert("deck".into(), deck.index() as f64);
                info.insert("gain".into(), d.gain as f64);
                info.insert("loss".into(), d.loss as f64);
                (
                    d.net() as f64 * scale,
                    d.loss >= self.config.big_loss,
                    previous == Some(deck),
                    novel,
                )
            }
            Err(e) => {
                self.obs.note = Some(format!(
                    "your last answer could not be read as a deck: {e}. That cost a penalty and used up the trial."
                ));
                self.obs.last = None;
                self.choices.push(None);
                self.invalid_streak += 1;
                info.insert("invalid".into(), 1.0);
                (self.config.invalid_penalty, false, false, false)
            }
        };
        self.obs.trial += 1;
        let since_loss = self.last_loss_trial.map(|t| (trial - t) as f64);
        self.context = EmotionalContext {
            threat_distance: since_loss,
            goal_distance: Some((self.config.trials - self.obs.trial) as f64),
            was_blocked: self.invalid_streak > 0,
            consecutive_blocks: self.invalid_streak,
            near_threat: since_loss.is_some_and(|d| d <= 1.0),
            threat_state: None,
            threat_approaching: false,
            harmed,
            reward,
            counterfactual: None,
            social: Some(self.social(reward, repeated, novel)),
            exploration: None,
            obstacle: None,
            hazards: None,
            reserve: None,
        };
        info.insert("bank".into(), self.obs.bank as f64);
        let terminated = self.obs.trial >= self.config.trials;
        if terminated {
            info.insert("net_score".into(), self.net_score() as f64);
        }
        Step {
            obs: self.obs.clone(),
            reward,
            terminated,
            truncated: false,
            context: self.context.clone(),
            info,
        }
    }

    fn context(&self) -> EmotionalContext {
        self.context.clone()
    }

    fn render(&self) -> String {
        self.obs.to_prompt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_many_phrasings() {
        let ok = [
            ("A", Deck::A),
            ("a", Deck::A),
            ("deck b", Deck::B),
            ("I choose C", Deck::C),
            ("I'll go with d.", Deck::D),
            ("Deck A, please", Deck::A),
            ("the B deck", Deck::B),
            ("Let me pick c this time", Deck::C),
            ("A!", Deck::A),
            ("I avoid risk, so I take a card from deck D", Deck::D),
            ("Hmm, I think C.", Deck::C),
        ];
        for (text, deck) in ok {
            assert_eq!(parse_deck(text), Ok(deck), "{text}");
        }
        assert_eq!(parse_deck("I want a card"), Err(DeckParseError::NoDeck));
        assert_eq!(parse_deck(""), Err(DeckParseError::NoDeck));
        assert_eq!(parse_deck("e"), Err(DeckParseError::NoDeck));
        assert!(matches!(
            parse_deck("deck A or deck B"),
            Err(DeckParseError::Ambiguous(_))
        ));
    }

    #[test]
    fn block_structure_is_classic() {
        for deck in Deck::ALL {
            let net: i64 = deck.block_losses().iter().map(|l| deck.gain() - l).sum();
            assert_eq!(net, if deck.is_good() { 250 } else { -250 }, "{deck:?}");
        }
    }

    fn run(policy: &str, seed: u64) -> Igt {
        let mut env = Igt::new(IgtConfig::default()).expect("config");
        env.reset(Some(seed));
        for _ in 0..100 {
            let s = env.step(&policy.to_string());
            if s.terminated {
                break;
            }
        }
        env
    }

    #[test]
    fn good_decks_win_bad_decks_lose() {
        assert_eq!(run("C", 1).bank(), 2000 + 2500);
        assert_eq!(run("deck d", 1).bank(), 2000 + 2500);
        assert_eq!(run("A", 1).bank(), 2000 - 2500);
        assert_eq!(run("I choose B", 1).bank(), 2000 - 2500);
        assert_eq!(run("C", 1).net_score(), 100);
        assert_eq!(run("A", 1).block_net_scores(), vec![-20; 5]);
    }

    #[test]
    fn losses_set_fear_signals() {
        let mut env = Igt::new(IgtConfig::default()).expect("config");
        env.reset(Some(3));
        let mut saw_harm = false;
        for _ in 0..10 {
            let s = env.step(&"B".to_string());
            if s.context.harmed {
                saw_harm = true;
                assert_eq!(s.context.threat_distance, Some(0.0));
                assert!(s.context.near_threat);
                assert!(s.reward < -10.0);
                let social = s.context.social.expect("social");
                assert!(social.cumulative_negative >= 12.5);
                assert_eq!(social.failed_attempts, 1);
            }
        }
        assert!(saw_harm, "deck B has one 1250 loss in every 10 cards");
    }

    #[test]
    fn unparseable_response_is_penalised_with_a_note() {
        let mut env = Igt::new(IgtConfig::default()).expect("config");
        env.reset(Some(3));
        let s = env.step(&"I'd like some tea".to_string());
        assert_eq!(s.reward, -1.0);
        assert!(s.context.was_blocked);
        assert!(s
            .obs
            .note
            .as_deref()
            .is_some_and(|n| n.contains("could not be read")));
        assert!(s.obs.to_prompt().contains("Note: "));
        assert_eq!(s.obs.bank, 2000);
        assert_eq!(s.obs.trial, 1);
        let s = env.step(&"C".to_string());
        assert!(s.obs.note.is_none());
        assert!(!s.context.was_blocked);
    }

    #[test]
    fn ends_after_the_last_trial() {
        let mut env = Igt::new(IgtConfig {
            trials: 3,
            ..IgtConfig::default()
        })
        .expect("config");
        env.reset(Some(0));
        assert!(!env.step(&"c".to_string()).terminated);
        assert!(!env.step(&"c".to_string()).terminated);
        let last = env.step(&"c".to_string());
        assert!(last.terminated && last.info.contains_key("net_score"));
        let after = env.step(&"c".to_string());
        assert!(after.terminated && after.reward == 0.0);
        assert!(env.render().contains("The task is over."));
        assert!(Igt::new(IgtConfig {
            trials: 0,
            ..IgtConfig::default()
        })
        .is_err());
    }
}
