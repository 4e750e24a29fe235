//! Evaluation of LLM agents behind `emorl reproduce llm-modules`:
//!
//! * (a) the upstream-style **marker metric**: generate under a forced
//!   emotional state and under the neutral state (same prompts, same sampling
//!   stream per pair) and count that emotion's marker words
//!   ([`marker_effect`], [`marker_run`]);
//! * (b) the **dialogue evaluation**: return, safety rate and helpfulness
//!   over seeds, compared with `llm-base` and `llm-static-prefix`
//!   ([`evaluate_dialogue`], [`compare_dialogue`]);
//! * (c) **fluency**: perplexity of generated responses under the frozen
//!   model without hooks ([`perplexity`], [`generations_perplexity`]);
//!
//! and the markdown/JSON [`Table`]s of all three.
//!
//! Marker counts are **rates per 100 words** of the response (0 for a
//! response without words): a module that only makes responses longer or
//! shorter does not change the rate, whereas raw counts would follow length.

use emorl_core::{EmoRng, Env, RngKind};
use emorl_envs_dialogue::{Dialogue, DialogueConfig, DialogueObs, EpisodeMetrics};
use emorl_lm::{Generation, Model};
use emorl_stats::{compare, Cell, Comparison, Row, Table};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::agent::{pad_left, AgentKind, LlmAgent, TurnEmotion};
use crate::emotion::{EmotionState, EMOTIONS, N_EMOTIONS};
use crate::erm::N_ERM;
use crate::error::Result;
use crate::params::invalid;

// ---------------------------------------------------------------------------
// Marker lexicons and the counter
// ---------------------------------------------------------------------------

/// Words of fear and caution.
pub const FEAR_MARKERS: &[&str] = &[
    "afraid",
    "scared",
    "scary",
    "fear",
    "feared",
    "fears",
    "frightened",
    "terrified",
    "worried",
    "worry",
    "worries",
    "nervous",
    "anxious",
    "panic",
    "panicked",
    "careful",
    "carefully",
    "caution",
    "cautious",
    "danger",
    "dangerous",
    "risk",
    "risky",
    "unsafe",
    "hurt",
    "harm",
    "harmful",
    "warning",
    "beware",
    "threat",
    "trembled",
    "shaking",
];

/// Words of curiosity and exploration.
pub const CURIOSITY_MARKERS: &[&str] = &[
    "curious",
    "curiosity",
    "wonder",
    "wondered",
    "wondering",
    "why",
    "explore",
    "explored",
    "exploring",
    "discover",
    "discovered",
    "interesting",
    "fascinating",
    "intriguing",
    "mystery",
    "mysterious",
    "learn",
    "learned",
    "investigate",
    "imagine",
    "puzzle",
    "question",
    "questions",
    "what if",
    "find out",
    "tell me more",
];

/// Words of anger and frustration.
pub const ANGER_MARKERS: &[&str] = &[
    "angry",
    "anger",
    "mad",
    "furious",
    "rage",
    "annoyed",
    "annoying",
    "irritated",
    "frustrated",
    "frustrating",
    "hate",
    "hated",
    "unfair",
    "outraged",
    "ridiculous",
    "stupid",
    "shout",
    "shouted",
    "yell",
    "yelled",
    "upset",
    "stomped",
    "enough",
    "fed up",
];

/// Words of joy and warmth.
pub const JOY_MARKERS: &[&str] = &[
    "happy",
    "happily",
    "happiness",
    "joy",
    "joyful",
    "glad",
    "delighted",
    "cheerful",
    "excited",
    "wonderful",
    "great",
    "lovely",
    "love",
    "loved",
    "smile",
    "smiled",
    "laugh",
    "laughed",
    "fun",
    "yay",
    "awesome",
    "fantastic",
    "amazing",
    "pleased",
    "thank",
    "thanks",
];

/// The marker lexicon of an [`EMOTIONS`] name.
pub fn emotion_markers(emotion: &str) -> Option<&'static [&'static str]> {
    match emotion {
        "fear" => Some(FEAR_MARKERS),
        "curiosity" => Some(CURIOSITY_MARKERS),
        "anger" => Some(ANGER_MARKERS),
        "joy" => Some(JOY_MARKERS),
        _ => None,
    }
}

/// Token ids that spell a whole marker word of `markers` on their own
/// (`word`, ` word`, ` Word`, `Word`, each kept only when the tokenizer
/// encodes it as exactly one token), sorted and deduplicated. Words that
/// split into pieces are left out: their first piece is usually a common
/// fragment, not the word.
pub fn marker_token_ids(model: &Model, markers: &[&str]) -> Result<Vec<i64>> {
    let vocab = model.vocab_size();
    let mut ids = Vec::new();
    for w in markers {
        let mut cap = w.chars();
        let capitalised: String = match cap.next() {
            Some(c) => c.to_uppercase().chain(cap).collect(),
            None => continue,
        };
        for text in [
            w.to_string(),
            format!(" {w}"),
            capitalised.clone(),
            format!(" {capitalised}"),
        ] {
            let enc = model.tokenizer().encode(&text, false)?;
            if let [one] = enc.as_slice() {
                if (*one as usize) < vocab {
                    ids.push(i64::from(*one));
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Lowercase words of `text`: maximal runs of letters, digits and
/// apostrophes (curly apostrophes read as `'`, edge apostrophes dropped).
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whole-word, case-insensitive occurrences of `markers` in `text` (a
/// marker of several words counts where its words appear consecutively in
/// [`words`], punctuation between them ignored).
pub fn count_markers(text: &str, markers: &[&str]) -> usize {
    count_in_words(&words(text), markers)
}

fn count_in_words(ws: &[String], markers: &[&str]) -> usize {
    markers
        .iter()
        .map(|m| {
            let m = words(m);
            if m.is_empty() || m.len() > ws.len() {
                return 0;
            }
            ws.windows(m.len()).filter(|w| *w == m.as_slice()).count()
        })
        .sum()
}

/// Occurrences of `markers` per 100 words of `text` (0 when it has no words).
pub fn marker_rate(text: &str, markers: &[&str]) -> f64 {
    let ws = words(text);
    if ws.is_empty() {
        0.0
    } else {
        100.0 * count_in_words(&ws, markers) as f64 / ws.len() as f64
    }
}

/// Neutral user messages the marker metric generates from (no emotion
/// words of any lexicon).
pub const EVAL_PROMPTS: [&str; 16] = [
    "Can you tell me about the weather today?",
    "What should I cook for dinner tonight?",
    "Tell me a short story about a cat.",
    "How do I plant tomatoes in my garden?",
    "Describe a walk in the park.",
    "What is a good name for a small boat?",
    "Explain how a bicycle works.",
    "Tell me about your day.",
    "What do people usually do on a Sunday?",
    "Write a few sentences about the sea.",
    "How do I clean a wooden table?",
    "Tell me about a trip to the market.",
    "What is the capital of France?",
    "Describe the room you are sitting in.",
    "How do trains run on time?",
    "Tell me about a dog and a ball.",
];

/// Other neutral user messages, for choosing settings (module scales,
/// learning rates) before a table is made; never used by the tables.
pub const TUNING_PROMPTS: [&str; 8] = [
    "How do I fold a paper plane?",
    "What is a nice present for a neighbour?",
    "Describe a small town in the morning.",
    "How does a kettle boil water?",
    "Tell me about a visit to the library.",
    "What can I do with old bread?",
    "Write a few lines about a river.",
    "How do I pack a bag for a short trip?",
];

/// A user message as the agent's prompt: the first turn of a conversation,
/// rendered the way the dialogue environment renders its observations.
pub fn prompt_observation(message: &str) -> DialogueObs {
    DialogueObs {
        history: Vec::new(),
        user_message: message.to_string(),
        turn: 0,
        max_turns: DialogueConfig::default().max_turns,
        ended: false,
    }
}

// ---------------------------------------------------------------------------
// Forced emotional states
// ---------------------------------------------------------------------------

/// A forced emotion state: every emotion 0, or one of them 1 and the others 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmotionCondition {
    Neutral,
    Fear,
    Curiosity,
    Anger,
    Joy,
}

impl EmotionCondition {
    /// The high-emotion conditions, in [`EMOTIONS`] order.
    pub const EMOTIONAL: [EmotionCondition; N_EMOTIONS] = [
        EmotionCondition::Fear,
        EmotionCondition::Curiosity,
        EmotionCondition::Anger,
        EmotionCondition::Joy,
    ];

    /// The column of the raised emotion (`None` for neutral).
    pub fn emotion_index(self) -> Option<usize> {
        match self {
            EmotionCondition::Neutral => None,
            EmotionCondition::Fear => Some(0),
            EmotionCondition::Curiosity => Some(1),
            EmotionCondition::Anger => Some(2),
            EmotionCondition::Joy => Some(3),
        }
    }

    /// `"neutral"` or the [`EMOTIONS`] name.
    pub fn name(self) -> &'static str {
        self.emotion_index().map_or("neutral", |i| EMOTIONS[i])
    }

    /// The high condition of an [`EMOTIONS`] name, or `"neutral"`.
    pub fn from_name(name: &str) -> Result<Self> {
        if name == "neutral" {
            return Ok(EmotionCondition::Neutral);
        }
        EmotionCondition::EMOTIONAL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| invalid(format!("unknown emotion `{name}`")))
    }

    /// The four phasic emotions of the condition.
    pub fn phasic(self) -> [f32; N_EMOTIONS] {
        let mut p = [0.0; N_EMOTIONS];
        if let Some(i) = self.emotion_index() {
            p[i] = 1.0;
        }
        p
    }
}

/// The [`TurnEmotion`] of `condition` for `batch` rows, built directly
/// instead of from an environment's context: phasic emotions as the
/// condition says, tonic fear/joy equal to phasic fear/joy (the fixed point
/// of the encoder's tonic decay under a constant state), and the ERM
/// appraisal the same four emotions with anxiety and confidence 0 (so that
/// only the named emotion differs from neutral).
pub fn forced_emotion(
    condition: EmotionCondition,
    batch: i64,
    device: Device,
) -> Result<TurnEmotion> {
    if batch <= 0 {
        return Err(invalid("forced emotion: batch must be > 0"));
    }
    forced_emotions(&vec![condition; batch as usize], device)
}

/// [`forced_emotion`] with one condition per row.
pub fn forced_emotions(conditions: &[EmotionCondition], device: Device) -> Result<TurnEmotion> {
    if conditions.is_empty() {
        return Err(invalid("forced emotion: batch must be > 0"));
    }
    let b = conditions.len() as i64;
    let table = |width: usize, f: &dyn Fn(&[f32; N_EMOTIONS]) -> Vec<f32>| -> Result<Tensor> {
        let flat: Vec<f32> = conditions.iter().flat_map(|c| f(&c.phasic())).collect();
        Ok(Tensor::f_from_slice(&flat)?
            .f_view([b, width as i64])?
            .f_to_device(device)?)
    };
    Ok(TurnEmotion {
        state: EmotionState {
            phasic: table(N_EMOTIONS, &|p| p.to_vec())?,
            tonic: table(2, &|p| vec![p[0], p[3]])?,
        },
        erm: Some(table(N_ERM, &|p| {
            let mut erm = vec![0.0f32; N_ERM];
            erm[..N_EMOTIONS].copy_from_slice(p);
            erm
        })?),
        erm_tonic: None,
        erm_input: None,
    })
}

// ---------------------------------------------------------------------------
// (a) The marker metric
// ---------------------------------------------------------------------------

/// Most sequences generated in one batch (bounds the KV cache: 64 rows of
/// SmolLM2 at ~130 positions hold ~0.4 GB in f32).
const GENERATION_BATCH: usize = 64;

/// Generates `n_samples` responses to each of `prompts` (user messages, see
/// [`prompt_observation`]) with the agent's modules under `condition`.
/// Row `i * n_samples + j` is prompt `i`, sample `j`; its sampling stream
/// depends only on `seed` and the row, so two calls that differ only in
/// `condition` use the same random numbers row by row. The agent's own
/// temperature is used; the episode state is neither read nor changed.
pub fn generate_under(
    agent: &mut LlmAgent,
    condition: EmotionCondition,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
) -> Result<Vec<Generation>> {
    if prompts.is_empty() || n_samples == 0 || max_new_tokens == 0 {
        return Err(invalid(
            "marker metric: prompts, n_samples and max_new_tokens must be non-empty / > 0",
        ));
    }
    let _g = tch::no_grad_guard();
    let ids = prompts
        .iter()
        .map(|p| agent.encode_prompt(&prompt_observation(p)))
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<Vec<u32>> = ids
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n_samples))
        .collect();
    let mut opts = agent.generate_options(0);
    opts.max_new_tokens = max_new_tokens;
    let device = agent.model().device();
    let mut out = Vec::with_capacity(rows.len());
    for (c, chunk) in rows.chunks(GENERATION_BATCH).enumerate() {
        let emotion = forced_emotion(condition, chunk.len() as i64, device)?;
        let hooks = agent.hooks(&emotion)?;
        opts.seed = seed.wrapping_add(c as u64);
        out.extend(
            agent
                .model_mut()
                .generate_from_tokens(chunk, &opts, Some(&hooks), None)?,
        );
    }
    Ok(out)
}

/// The marker metric of one emotion: per-response marker rates (per 100
/// words) under neutral and under that emotion, paired by row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmotionEffect {
    pub emotion: String,
    pub neutral_counts: Vec<f64>,
    pub emotional_counts: Vec<f64>,
    /// Cohen's d of emotional − neutral (pooled sample SD; 0 when both
    /// sides have no variance).
    pub d: f64,
    /// Two-sided Welch p (1 when both sides have no variance).
    pub p: f64,
    pub mann_whitney_p: f64,
}

impl EmotionEffect {
    /// From paired rates (at least two each).
    pub fn from_counts(emotion: &str, neutral: Vec<f64>, emotional: Vec<f64>) -> Result<Self> {
        let c = compare(&neutral, &emotional, &mut EmoRng::new(RngKind::Fast, 0), 0)?;
        Ok(EmotionEffect {
            emotion: emotion.to_string(),
            neutral_counts: neutral,
            emotional_counts: emotional,
            d: c.cohens_d,
            p: c.welch_p,
            mann_whitney_p: c.mann_whitney_p,
        })
    }

    pub fn neutral_mean(&self) -> f64 {
        mean(&self.neutral_counts)
    }
    pub fn emotional_mean(&self) -> f64 {
        mean(&self.emotional_counts)
    }
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// The marker metric with the generations it counted (for perplexity).
#[derive(Debug)]
pub struct MarkerRun {
    /// In [`EMOTIONS`] order.
    pub effects: Vec<EmotionEffect>,
    /// The neutral generations, then one set per [`EmotionCondition::EMOTIONAL`].
    pub generations: Vec<(EmotionCondition, Vec<Generation>)>,
}

impl MarkerRun {
    /// Every generation of every condition.
    pub fn all_generations(&self) -> Vec<&Generation> {
        self.generations.iter().flat_map(|(_, g)| g).collect()
    }
}

/// [`marker_effect`] keeping the generations.
pub fn marker_run(
    agent: &mut LlmAgent,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
) -> Result<MarkerRun> {
    if prompts.len() * n_samples < 2 {
        return Err(invalid(
            "marker metric: needs at least two responses per condition",
        ));
    }
    let neutral = generate_under(
        agent,
        EmotionCondition::Neutral,
        prompts,
        n_samples,
        seed,
        max_new_tokens,
    )?;
    let mut effects = Vec::with_capacity(N_EMOTIONS);
    let mut generations = Vec::with_capacity(N_EMOTIONS + 1);
    for cond in EmotionCondition::EMOTIONAL {
        let markers = emotion_markers(cond.name()).unwrap_or(&[]);
        let gens = generate_under(agent, cond, prompts, n_samples, seed, max_new_tokens)?;
        let rates = |g: &[Generation]| g.iter().map(|g| marker_rate(&g.text, markers)).collect();
        effects.push(EmotionEffect::from_counts(
            cond.name(),
            rates(&neutral),
            rates(&gens),
        )?);
        generations.push((cond, gens));
    }
    generations.insert(0, (EmotionCondition::Neutral, neutral));
    Ok(MarkerRun {
        effects,
        generations,
    })
}

/// The upstream-style marker metric: for each emotion, `n_samples`
/// responses to each prompt under the neutral state and under that emotion
/// high (same sampling stream per pair), the emotion's marker rate per 100
/// words in each, and Cohen's d / Welch p / Mann–Whitney p of emotional vs
/// neutral. `llm-base` ignores the state, so its two sides are identical.
pub fn marker_effect(
    agent: &mut LlmAgent,
    prompts: &[&str],
    n_samples: usize,
    seed: u64,
    max_new_tokens: usize,
) -> Result<Vec<EmotionEffect>> {
    Ok(marker_run(agent, prompts, n_samples, seed, max_new_tokens)?.effects)
}

// ---------------------------------------------------------------------------
// (c) Perplexity under the frozen model
// ---------------------------------------------------------------------------

/// Perplexity of responses under the frozen model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// Response tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood per token (nats).
    pub mean_nll: f64,
    /// `exp(mean_nll)`.
    pub ppl: f64,
    /// Mean NLL of each response (NaN for one without tokens).
    pub per_text_nll: Vec<f64>,
}

/// Rows scored in one forward pass.
const SCORE_BATCH: usize = 8;

/// Scores `(prompt tokens, response tokens)` pairs with the frozen model
/// (no hooks, no gradients): each response token's NLL given the prompt and
/// the response before it. Token-weighted mean over all responses.
pub fn perplexity(model: &mut Model, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Perplexity> {
    if pairs.iter().any(|(p, _)| p.is_empty()) {
        return Err(invalid("perplexity: every prompt needs at least one token"));
    }
    let _g = tch::no_grad_guard();
    let pad = model.tokenizer().pad_id();
    let device = model.device();
    let mut per_text_nll = Vec::with_capacity(pairs.len());
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in pairs.chunks(SCORE_BATCH) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(p, r)| p.iter().chain(r).copied().collect())
            .collect();
        let (tokens, mask) = pad_left(&seqs, pad)?;
        let (tokens, mask) = (tokens.f_to_device(device)?, mask.f_to_device(device)?);
        let len = tokens.size()[1];
        let n_max = chunk.iter().map(|(_, r)| r.len()).max().unwrap_or(0) as i64;
        if n_max == 0 {
            per_text_nll.extend(std::iter::repeat_n(f64::NAN, chunk.len()));
            continue;
        }
        let logits = model.forward(&tokens, Some(&mask), None)?.logits;
        // Positions len−1−n_max .. len−2 predict the last n_max tokens.
        let logp = logits
            .f_narrow(1, len - 1 - n_max, n_max)?
            .f_log_softmax(-1, Kind::Float)?;
        let targets = tokens.f_narrow(1, len - n_max, n_max)?.f_unsqueeze(-1)?;
        let nll = logp
            .f_gather(-1, &targets, false)?
            .f_squeeze_dim(-1)?
            .f_neg()?;
        let nll =
            Vec::<f32>::try_from(&nll.f_to_device(Device::Cpu)?.f_contiguous()?.f_view([-1])?)?;
        for (i, (_, r)) in chunk.iter().enumerate() {
            let n = r.len();
            if n == 0 {
                per_text_nll.push(f64::NAN);
                continue;
            }
            let row = &nll[i * n_max as usize..(i + 1) * n_max as usize];
            let s: f64 = row[n_max as usize - n..]
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            total += s;
            count += n;
            per_text_nll.push(s / n as f64);
        }
    }
    if count == 0 {
        return Err(invalid("perplexity: no response tokens to score"));
    }
    let mean_nll = total / count as f64;
    Ok(Perplexity {
        tokens: count,
        mean_nll,
        ppl: mean_nll.exp(),
        per_text_nll,
    })
}

/// [`perplexity`] of generations (their prompts as context), with the stop
/// tokens that ended them left out: fluency is about the text.
pub fn generations_perplexity(model: &mut Model, gens: &[&Generation]) -> Result<Perplexity> {
    let stops = model.tokenizer().stop_ids().to_vec();
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = gens
        .iter()
        .map(|g| {
            let mut r = g.tokens.clone();
            while r.last().is_some_and(|t| stops.contains(t)) {
                r.pop();
            }
            (g.prompt_tokens.clone(), r)
        })
        .collect();
    perplexity(model, &pairs)
}

// ---------------------------------------------------------------------------
// (b) Dialogue evaluation
// ---------------------------------------------------------------------------

/// One agent's episodes on the dialogue environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogueEval {
    /// The agent's registry ID (or any label).
    pub agent: String,
    pub seeds: Vec<u64>,
    /// One per seed.
    pub episodes: Vec<EpisodeMetrics>,
}

/// Reads one number from an episode's metrics.
pub type EpisodeMetric = fn(&EpisodeMetrics) -> f64;

/// The dialogue metrics compared, with how each is read from an episode.
pub const DIALOGUE_METRICS: [(&str, EpisodeMetric); 3] = [
    ("return", |m| m.total_reward),
    ("safety rate", |m| m.safety_rate),
    ("helpfulness", |m| m.helpfulness),
];

impl DialogueEval {
    /// The values of a [`DIALOGUE_METRICS`] entry, one per episode.
    pub fn values(&self, metric: EpisodeMetric) -> Vec<f64> {
        self.episodes.iter().map(metric).collect()
    }
    pub fn returns(&self) -> Vec<f64> {
        self.values(|m| m.total_reward)
    }
    pub fn safety_rates(&self) -> Vec<f64> {
        self.values(|m| m.safety_rate)
    }
    pub fn helpfulness(&self) -> Vec<f64> {
        self.values(|m| m.helpfulness)
    }
}

/// Plays one episode per seed (the agent's emotion state carried across the
/// turns of each, reset between them) and keeps the environment's metrics.
pub fn evaluate_dialogue(
    agent: &mut LlmAgent,
    env_config: &DialogueConfig,
    seeds: &[u64],
) -> Result<DialogueEval> {
    let mut env = Dialogue::new(env_config.clone())?;
    let mut episodes = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let (mut obs, _) = env.reset(Some(seed));
        let mut context = env.context();
        agent.reset_episode();
        loop {
            let response = agent.act(&obs, &context)?;
            let step = env.step(&response);
            if step.done() {
                break;
            }
            obs = step.obs;
            context = step.context;
        }
        episodes.push(env.metrics());
    }
    Ok(DialogueEval {
        agent: agent.kind().id().to_string(),
        seeds: seeds.to_vec(),
        episodes,
    })
}

/// One agent against one baseline on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogueComparison {
    pub agent: String,
    pub baseline: String,
    pub metric: String,
    /// Control = the baseline, treatment = the agent (d > 0: the agent is higher).
    pub comparison: Comparison,
}

impl DialogueComparison {
    /// The agent is higher with Welch p < 0.05.
    pub fn better(&self) -> bool {
        self.comparison.cohens_d > 0.0 && self.comparison.welch_p < 0.05
    }
}

/// The baselines every other agent is compared with.
pub const BASELINES: [&str; 2] = ["llm-base", "llm-static-prefix"];

/// Every agent of `evals` that is not itself the baseline against each of
/// [`BASELINES`] present in `evals`, on each of [`DIALOGUE_METRICS`]
/// (Welch p and Cohen's d; no permutation test).
pub fn compare_dialogue(evals: &[DialogueEval]) -> Result<Vec<DialogueComparison>> {
    let mut out = Vec::new();
    for base in BASELINES {
        let Some(b) = evals.iter().find(|e| e.agent == base) else {
            continue;
        };
        for e in evals.iter().filter(|e| e.agent != base) {
            for (name, metric) in DIALOGUE_METRICS {
                let c = compare(
                    &b.values(metric),
                    &e.values(metric),
                    &mut EmoRng::new(RngKind::Fast, 0),
                    0,
                )?;
                out.push(DialogueComparison {
                    agent: e.agent.clone(),
                    baseline: base.to_string(),
                    metric: name.to_string(),
                    comparison: c,
                });
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// Cohen's d of emotion-marker counts upstream (Python) measured for the
/// module an agent corresponds to: prefix 0.00, adapter −0.26, ERM 0.00,
/// activation steering 0.91; `None` for agents upstream had no match for.
pub fn upstream_marker_d(agent: &str) -> Option<f64> {
    match AgentKind::from_id(agent).ok()? {
        AgentKind::Prefix => Some(0.0),
        AgentKind::Gate => Some(-0.26),
        AgentKind::Erm => Some(0.0),
        AgentKind::Steer => Some(0.91),
        _ => None,
    }
}

/// The marker-metric target: d ≥ 0.8 on the emotion's own markers.
pub const MARKER_D_TARGET: f64 = 0.8;
/// The fluency target: perplexity at most 10% above `llm-base`'s.
pub const PERPLEXITY_RATIO_TARGET: f64 = 1.10;

fn yes_no(b: bool) -> Cell {
    Cell::text(if b { "yes" } else { "no" })
}

/// Marker table: one row per agent × emotion.
pub fn marker_table(results: &[(String, Vec<EmotionEffect>)]) -> Result<Table> {
    let mut t = Table::new(
        "Emotion-marker effect (markers per 100 words, emotional vs neutral state)",
        [
            "Agent",
            "Emotion",
            "n",
            "Neutral mean",
            "Emotional mean",
            "Cohen's d",
            "p (Welch)",
            "p (Mann–Whitney)",
            "Upstream d",
            "d ≥ 0.8",
        ],
    );
    for (agent, effects) in results {
        for e in effects {
            t.push_row(Row::new([
                Cell::text(agent.as_str()),
                Cell::text(e.emotion.as_str()),
                Cell::Integer(e.neutral_counts.len() as i64),
                Cell::number(e.neutral_mean(), 3),
                Cell::number(e.emotional_mean(), 3),
                Cell::number(e.d, 3),
                Cell::number(e.p, 4),
                Cell::number(e.mann_whitney_p, 4),
                upstream_marker_d(agent).map_or(Cell::Empty, |d| Cell::number(d, 2)),
                yes_no(e.d >= MARKER_D_TARGET),
            ]))?;
        }
    }
    t.note(
        "Each response is generated once under the neutral state (every emotion 0) and once \
         under the emotion at 1, with the same prompt and sampling stream; the count is the \
         emotion's marker words per 100 words. Upstream's d is the one value it reported per \
         module (prefix, adapter, ERM, activation steering).",
    );
    Ok(t)
}

/// Per-agent dialogue summary: mean and SD of return, safety rate and helpfulness.
pub fn dialogue_summary_table(evals: &[DialogueEval]) -> Result<Table> {
    let mut t = Table::new(
        "Dialogue evaluation (per-episode means over seeds)",
        [
            "Agent",
            "Episodes",
            "Return mean",
            "Return SD",
            "Safety rate",
            "Helpfulness",
        ],
    );
    for e in evals {
        let r = emorl_stats::ArmSummary::of(&e.returns());
        t.push_row(Row::new([
            Cell::text(e.agent.as_str()),
            Cell::Integer(e.episodes.len() as i64),
            Cell::number(r.mean, 4),
            Cell::number(r.sd, 4),
            Cell::number(mean(&e.safety_rates()), 4),
            Cell::number(mean(&e.helpfulness()), 4),
        ]))?;
    }
    Ok(t)
}

/// Dialogue comparisons: one row per agent × baseline × metric (the full
/// [`Comparison`] rides along in the JSON).
pub fn dialogue_comparison_table(comparisons: &[DialogueComparison]) -> Result<Table> {
    let mut t = Table::new(
        "Dialogue metrics vs baselines (Welch t-test)",
        [
            "Agent",
            "Baseline",
            "Metric",
            "Baseline mean",
            "Agent mean",
            "Difference",
            "p (Welch)",
            "Cohen's d",
            "Better (p < 0.05)",
        ],
    );
    for c in comparisons {
        let k = &c.comparison;
        let mut row = Row::new([
            Cell::text(c.agent.as_str()),
            Cell::text(c.baseline.as_str()),
            Cell::text(c.metric.as_str()),
            Cell::number(k.control.mean, 4),
            Cell::number(k.treatment.mean, 4),
            Cell::number(k.treatment.mean - k.control.mean, 4),
            Cell::number(k.welch_p, 6),
            Cell::number(k.cohens_d, 3),
            yes_no(c.better()),
        ]);
        row.comparison = Some(k.clone());
        t.push_row(row)?;
    }
    Ok(t)
}

/// Perplexity table: one row per agent, with the ratio to `llm-base`'s
/// perplexity and whether it is within +10%.
pub fn perplexity_table(results: &[(String, Perplexity)]) -> Result<Table> {
    let base = results
        .iter()
        .find(|(a, _)| a == "llm-base")
        .map(|(_, p)| p.ppl);
    let mut t = Table::new(
        "Fluency: perplexity of generated responses under the frozen model",
        [
            "Agent",
            "Tokens",
            "Mean NLL",
            "Perplexity",
            "Ratio to llm-base",
            "Within +10%",
        ],
    );
    for (agent, p) in results {
        let ratio = base.map(|b| p.ppl / b);
        t.push_row(Row::new([
            Cell::text(agent.as_str()),
            Cell::Integer(p.tokens as i64),
            Cell::number(p.mean_nll, 4),
            Cell::number(p.ppl, 3),
            ratio.map_or(Cell::Empty, |r| Cell::number(r, 3)),
            ratio.map_or(Cell::Empty, |r| yes_no(r <= PERPLEXITY_RATIO_TARGET)),
        ]))?;
    }
    if base.is_none() {
        t.note("No llm-base row: ratios are not available.");
    }
    Ok(t)
}

/// Whether each trained agent meets the targets: d ≥ 0.8 on every emotion's
/// own markers, a higher dialogue return than `llm-base` with Welch p <
/// 0.05, and a perplexity at most 10% above `llm-base`'s. An agent missing
/// from one of the inputs gets empty cells there and is not counted as
/// meeting the targets. The baselines themselves get no row.
pub fn targets_table(
    markers: &[(String, Vec<EmotionEffect>)],
    dialogue: &[DialogueComparison],
    perplexities: &[(String, Perplexity)],
) -> Result<Table> {
    let base_ppl = perplexities
        .iter()
        .find(|(a, _)| a == "llm-base")
        .map(|(_, p)| p.ppl);
    let mut agents: Vec<&str> = Vec::new();
    let names = markers
        .iter()
        .map(|(a, _)| a.as_str())
        .chain(dialogue.iter().map(|c| c.agent.as_str()))
        .chain(perplexities.iter().map(|(a, _)| a.as_str()));
    for a in names {
        if !BASELINES.contains(&a) && !agents.contains(&a) {
            agents.push(a);
        }
    }
    let mut t = Table::new(
        "Targets per module",
        [
            "Agent",
            "Emotions with d ≥ 0.8",
            "Return d vs llm-base",
            "Return p vs llm-base",
            "Perplexity ratio",
            "All targets met",
        ],
    );
    for a in agents {
        let marker = markers.iter().find(|(m, _)| m == a).map(|(_, e)| {
            let hit = e.iter().filter(|e| e.d >= MARKER_D_TARGET).count();
            (hit, e.len(), hit == e.len() && !e.is_empty())
        });
        let ret = dialogue
            .iter()
            .find(|c| c.agent == a && c.baseline == "llm-base" && c.metric == "return");
        let ratio = perplexities
            .iter()
            .find(|(p, _)| p == a)
            .and_then(|(_, p)| base_ppl.map(|b| p.ppl / b));
        let met = marker.is_some_and(|m| m.2)
            && ret.is_some_and(DialogueComparison::better)
            && ratio.is_some_and(|r| r <= PERPLEXITY_RATIO_TARGET);
        t.push_row(Row::new([
            Cell::text(a),
            marker.map_or(Cell::Empty, |(h, n, _)| Cell::text(format!("{h}/{n}"))),
            ret.map_or(Cell::Empty, |c| Cell::number(c.comparison.cohens_d, 3)),
            ret.map_or(Cell::Empty, |c| Cell::number(c.comparison.welch_p, 6)),
            ratio.map_or(Cell::Empty, |r| Cell::number(r, 3)),
            yes_no(met),
        ]))?;
    }
    t.note(format!(
        "Targets: Cohen's d ≥ {MARKER_D_TARGET} on each emotion's own markers; dialogue return \
         above llm-base with Welch p < 0.05; perplexity ≤ {PERPLEXITY_RATIO_TARGET} × llm-base's."
    ));
    Ok(t)
}
