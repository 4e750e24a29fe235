//! Generation for `emorl serve`: one worker thread owns the language model
//! (the frozen model alone, or a trained LLM agent from a checkpoint) and
//! answers jobs from a bounded queue. Generation requests that arrive while
//! it is busy, or within `batch_wait` of the first, are run as one batch
//! (up to `batch` rows, grouped by their token limit); each row samples
//! from its own seeded stream, so a reply does not depend on what it was
//! batched with. Text embeddings for the emotional memory are computed on
//! the same thread (the mean read-out of the middle block).
//!
//! The state reaches the text two ways: the frozen model gets the
//! conditioning tokens and the emotions in words in a system message; an
//! agent's modules read the four emotions as a forced state (its prompt is
//! its own). Either way the sampling temperature is the state's (dopamine).

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use axum::http::StatusCode;
use emorl_agents_llm::{describe_emotion, LlmAgent, CONDITIONING_NAMES};
use emorl_core::neuro::EMOTIONS;
use emorl_lm::{ChatMessage, GenerateOptions, Hooks, Model, Sampling};
use tch::{Kind, Tensor};

use super::ApiError;
use crate::llm_setup::Weights;

/// Which model speaks, and how jobs are batched.
#[derive(Clone, Debug)]
pub struct SpeakerSpec {
    /// `default`, a GGUF file or a Hugging Face directory (with a
    /// checkpoint: instead of the model it records).
    pub model: Option<String>,
    /// A trained LLM agent's checkpoint directory.
    pub checkpoint: Option<PathBuf>,
    pub weights: Weights,
    /// Most generation requests per batch.
    pub batch: usize,
    /// How long the first request of a batch waits for others.
    pub batch_wait: Duration,
    /// Most jobs waiting; past it a request is refused with 503.
    pub queue: usize,
    /// libtorch threads of the generation thread.
    pub threads: usize,
}

/// A reply to generate.
pub(crate) struct GenJob {
    pub message: String,
    /// The four emotions (fear, curiosity, anger, joy) to answer in.
    pub emotions: [f64; 4],
    /// The conditioning tokens of the state.
    pub tokens: String,
    pub temperature: f64,
    pub seed: u64,
    pub max_tokens: usize,
}

/// What the worker made of a [`GenJob`].
pub(crate) struct GenReply {
    pub text: String,
    pub new_tokens: usize,
    pub prompt_tokens: usize,
    pub finish: &'static str,
    /// Requests in the batch this one ran in.
    pub batch: usize,
}

type Answer<T> = tokio::sync::oneshot::Sender<std::result::Result<T, ApiError>>;

enum Job {
    Generate(GenJob, Answer<GenReply>),
    Embed(String, Answer<Vec<f32>>),
    Compare(CompareJob, Answer<CompareReply>),
}

/// Two replies to one chat history (`POST /v1/compare`).
pub(crate) struct CompareJob {
    /// `user` and `assistant` messages, the last one the user's.
    pub history: Vec<ChatMessage>,
    /// The four emotions (fear, curiosity, anger, joy) forced on the
    /// emotional side; `None`: the agent's own emotion source reads the turn.
    pub forced: Option<[f64; 4]>,
    pub temperature: f64,
    pub seed: u64,
    pub max_tokens: usize,
}

/// The base model's and the emotional side's replies, and the emotion
/// state the emotional side answered in (by name).
pub(crate) struct CompareReply {
    pub base: String,
    pub emotional: String,
    pub state: Vec<(String, f64)>,
}

enum Speaker {
    Model(Box<Model>),
    Agent(Box<LlmAgent>),
}

/// Everyday sentences on unrelated topics whose mean read-out is
/// subtracted from every embedding: a language model's hidden states share
/// a large common direction (cosines of 0.8–0.9 between unrelated texts),
/// which would make every memory look similar to every message.
const CENTERING_TEXTS: [&str; 16] = [
    "The weather is nice today.",
    "Can you help me with my homework?",
    "I lost my keys again this morning.",
    "The train was late and I missed the meeting.",
    "Thank you so much, that was really helpful!",
    "How do I reset my password?",
    "My cat knocked a glass off the table.",
    "We are planning a trip to the mountains.",
    "This is the worst service I have ever had.",
    "What time does the store close on Sundays?",
    "I am worried about the exam next week.",
    "The recipe needs two cups of flour and an egg.",
    "Why is the sky blue?",
    "The server crashed during the update.",
    "She won the chess tournament yesterday.",
    "Please stop sending me these emails.",
];

impl Speaker {
    fn model(&self) -> &Model {
        match self {
            Speaker::Model(m) => m,
            Speaker::Agent(a) => a.model(),
        }
    }
    fn model_mut(&mut self) -> &mut Model {
        match self {
            Speaker::Model(m) => m,
            Speaker::Agent(a) => a.model_mut(),
        }
    }
}

/// The handle the request handlers hold.
pub(crate) struct Worker {
    tx: mpsc::SyncSender<Job>,
    /// What speaks, in words (for `/v1/health` and the start-up line).
    pub description: String,
    /// The two sides of `/v1/compare`, in words.
    pub compare_names: CompareNames,
}

/// What answers on each side of `/v1/compare`.
#[derive(Clone, Debug)]
pub(crate) struct CompareNames {
    /// The frozen model alone.
    pub base: String,
    /// The trained agent, or the frozen model told its state.
    pub emotional: String,
}

impl Speaker {
    fn compare_names(&self) -> CompareNames {
        let file = |m: &Model| {
            let p = m.source();
            p.file_name()
                .unwrap_or(p.as_os_str())
                .to_string_lossy()
                .into_owned()
        };
        let base = file(self.model());
        let emotional = match self {
            Speaker::Agent(a) => format!("{} on {base}", a.kind().id()),
            Speaker::Model(_) => format!("{base} with its state in a system message"),
        };
        CompareNames { base, emotional }
    }
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Worker {
    /// Loads the model (or agent) on a new thread and waits until it is
    /// ready; a model that cannot be loaded is an error here, not later.
    pub fn start(spec: SpeakerSpec) -> Result<Worker> {
        let (tx, rx) = mpsc::sync_channel::<Job>(spec.queue.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(String, CompareNames)>>();
        let s = spec.clone();
        std::thread::Builder::new()
            .name("emorl-speaker".into())
            .spawn(move || {
                crate::llm_setup::set_threads(s.threads);
                let loaded = load(&s).and_then(|(mut speaker, description)| {
                    let center = centering(speaker.model_mut())?;
                    Ok((speaker, center, description))
                });
                let (speaker, center) = match loaded {
                    Ok((speaker, center, description)) => {
                        let _ = ready_tx.send(Ok((description, speaker.compare_names())));
                        (speaker, center)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(speaker, center, rx, s.batch.max(1), s.batch_wait);
            })
            .context("starting the generation thread")?;
        let (description, compare_names) = ready_rx
            .recv()
            .map_err(|_| anyhow!("the generation thread stopped while loading the model"))??;
        Ok(Worker {
            tx,
            description,
            compare_names,
        })
    }

    fn send<T>(
        &self,
        job: impl FnOnce(Answer<T>) -> Job,
    ) -> std::result::Result<
        tokio::sync::oneshot::Receiver<std::result::Result<T, ApiError>>,
        ApiError,
    > {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.tx.try_send(job(tx)) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the generation queue is full; retry later".into(),
            )),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(failed("the generation thread stopped"))
            }
        }
    }

    /// A reply, generated in the next batch.
    pub async fn generate(&self, job: GenJob) -> std::result::Result<GenReply, ApiError> {
        let rx = self.send(|a| Job::Generate(job, a))?;
        rx.await
            .map_err(|_| failed("the generation thread stopped"))?
    }

    /// The base and emotional replies to one history, generated together.
    pub async fn compare(&self, job: CompareJob) -> std::result::Result<CompareReply, ApiError> {
        let rx = self.send(|a| Job::Compare(job, a))?;
        rx.await
            .map_err(|_| failed("the generation thread stopped"))?
    }

    /// The unit-length embedding of `text` (the memory's key).
    pub async fn embed(&self, text: String) -> std::result::Result<Vec<f32>, ApiError> {
        let rx = self.send(|a| Job::Embed(text, a))?;
        rx.await
            .map_err(|_| failed("the generation thread stopped"))?
    }
}

fn load(spec: &SpeakerSpec) -> Result<(Speaker, String)> {
    use crate::llm_setup::{checkpoint_model, load_model_for_generation};
    match &spec.checkpoint {
        Some(dir) => {
            let manifest = emorl_agents_llm::read_manifest(dir)
                .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            let (model, held) = load_model_for_generation(
                &checkpoint_model(&manifest, spec.model.as_deref()),
                spec.weights,
            )?;
            let agent = LlmAgent::load(dir, model).map_err(|e| anyhow!("{e}"))?;
            let description = format!(
                "agent {} from {} on {} ({held})",
                manifest.agent.id(),
                dir.display(),
                agent.model().source().display()
            );
            Ok((Speaker::Agent(Box::new(agent)), description))
        }
        None => {
            let (model, held) = load_model_for_generation(
                spec.model.as_deref().unwrap_or("default"),
                spec.weights,
            )?;
            let description = format!(
                "frozen model {} ({held}) with conditioning tokens",
                model.source().display()
            );
            Ok((Speaker::Model(Box::new(model)), description))
        }
    }
}

/// The worker's loop: wait for a job, gather more for up to `wait`, run
/// the embeddings, then the generations in batches of equal token limit.
fn run(
    mut speaker: Speaker,
    center: Vec<f32>,
    rx: mpsc::Receiver<Job>,
    batch: usize,
    wait: Duration,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + wait;
        while jobs.len() < batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut gens: Vec<(GenJob, Answer<GenReply>)> = Vec::new();
        for job in jobs {
            match job {
                Job::Embed(text, answer) => {
                    let _ = answer.send(embed(speaker.model_mut(), &center, &text));
                }
                Job::Generate(g, answer) => gens.push((g, answer)),
                Job::Compare(c, answer) => {
                    let _ = answer.send(compare(&mut speaker, &c));
                }
            }
        }
        // Groups of equal token limit, in arrival order.
        while !gens.is_empty() {
            let limit = gens[0].0.max_tokens;
            let (group, rest): (Vec<_>, Vec<_>) =
                gens.into_iter().partition(|(g, _)| g.max_tokens == limit);
            gens = rest;
            generate_group(&mut speaker, group);
        }
    }
}

/// The memory key of a text: its mean read-out minus the mean read-out of
/// [`CENTERING_TEXTS`], unit length.
fn embed(model: &mut Model, center: &[f32], text: &str) -> std::result::Result<Vec<f32>, ApiError> {
    let raw = mean_readout(model, text)?;
    let v: Vec<f64> = raw
        .iter()
        .zip(center)
        .map(|(&a, &c)| f64::from(a) - f64::from(c))
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(failed("the text's embedding is zero or not finite"));
    }
    Ok(v.iter().map(|x| (x / norm) as f32).collect())
}

/// The mean of [`CENTERING_TEXTS`]' read-outs.
fn centering(model: &mut Model) -> Result<Vec<f32>> {
    let mut sum = vec![0f64; model.hidden_size()];
    for t in CENTERING_TEXTS {
        let r = mean_readout(model, t).map_err(|ApiError(_, m)| anyhow!(m))?;
        for (s, x) in sum.iter_mut().zip(r) {
            *s += f64::from(x);
        }
    }
    let n = CENTERING_TEXTS.len() as f64;
    Ok(sum.into_iter().map(|s| (s / n) as f32).collect())
}

/// Mean read-out of the middle block over the text's tokens (the first,
/// BOS or an attention sink, left out when there are others).
fn mean_readout(model: &mut Model, text: &str) -> std::result::Result<Vec<f32>, ApiError> {
    let ids = model.tokenizer().encode(text, true).map_err(failed)?;
    if ids.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text has no tokens".into(),
        ));
    }
    if ids.len() > model.max_positions() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "text has {} tokens, more than the model's context of {}",
                ids.len(),
                model.max_positions()
            ),
        ));
    }
    let _g = tch::no_grad_guard();
    let layer = model.n_layers() / 2;
    let tokens = Tensor::from_slice(&ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>())
        .view([1, -1])
        .to_device(model.device());
    let hooks = Hooks::new().with_readout(layer);
    let out = model.read_out(&tokens, None, &hooks).map_err(failed)?;
    let hidden = out
        .into_iter()
        .next()
        .ok_or_else(|| failed("no read-out"))?
        .1;
    let n = hidden.size()[1];
    let hidden = if n > 1 {
        hidden.narrow(1, 1, n - 1)
    } else {
        hidden
    };
    let mean = hidden
        .f_mean_dim(1, false, Kind::Float)
        .and_then(|m| m.f_view([-1]))
        .and_then(|m| m.f_to_device(tch::Device::Cpu))
        .map_err(failed)?;
    Vec::<f32>::try_from(&mean).map_err(failed)
}

/// The prompt of one job: the agent's own, or the frozen model's with the
/// state in a system message.
fn prompt_ids(speaker: &Speaker, job: &GenJob) -> emorl_agents_llm::Result<Vec<u32>> {
    let phasic = job.emotions.map(|v| v as f32);
    match speaker {
        Speaker::Agent(agent) => {
            let obs = emorl_agents_llm::eval::prompt_observation(&job.message);
            agent.encode_prompt_for(&obs, Some(&phasic))
        }
        Speaker::Model(model) => {
            let opts = GenerateOptions {
                chat: model.tokenizer().chat_template().is_some(),
                ..GenerateOptions::default()
            };
            let system = format!("{} {}", job.tokens, describe_emotion(&phasic));
            let messages = [ChatMessage::system(system), ChatMessage::user(&job.message)];
            Ok(model.encode_messages(&messages, &opts)?)
        }
    }
}

/// Divides row `i`'s logits by `temps[i]` (`[b, V]` or `[b, s, V]`).
fn row_temperature(temps: Tensor) -> impl Fn(&Tensor) -> emorl_lm::Result<Tensor> + 'static {
    move |logits: &Tensor| {
        let b = temps.size()[0];
        let shape: Vec<i64> = match logits.dim() {
            2 => vec![b, 1],
            _ => vec![b, 1, 1],
        };
        Ok(logits.f_div(&temps.f_view(shape.as_slice())?)?)
    }
}

fn generate_group(speaker: &mut Speaker, group: Vec<(GenJob, Answer<GenReply>)>) {
    // Each job's prompt; a job whose prompt does not fit is answered alone.
    let max_positions = speaker.model().max_positions();
    let mut rows: Vec<(GenJob, Answer<GenReply>, Vec<u32>)> = Vec::new();
    for (job, answer) in group {
        match prompt_ids(speaker, &job) {
            Ok(ids) if ids.len() + job.max_tokens > max_positions => {
                let _ = answer.send(Err(ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "the prompt ({} tokens) plus max_tokens ({}) exceed the model's context of {max_positions} tokens",
                        ids.len(),
                        job.max_tokens
                    ),
                )));
            }
            Ok(ids) => rows.push((job, answer, ids)),
            Err(e) => {
                let _ = answer.send(Err(failed(e)));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let n = rows.len();
    let result = (|| -> Result<Vec<emorl_lm::Generation>> {
        let _g = tch::no_grad_guard();
        let prompts: Vec<Vec<u32>> = rows.iter().map(|r| r.2.clone()).collect();
        let seeds: Vec<u64> = rows.iter().map(|r| r.0.seed).collect();
        let temps: Vec<f32> = rows.iter().map(|r| r.0.temperature as f32).collect();
        let device = speaker.model().device();
        let temps = Tensor::f_from_slice(&temps)?.f_to_device(device)?;
        let opts = GenerateOptions {
            max_new_tokens: rows[0].0.max_tokens,
            sampling: Sampling::Sample {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            ..GenerateOptions::default()
        };
        let hooks = match speaker {
            Speaker::Agent(agent) => {
                let values: Vec<[f32; 4]> = rows
                    .iter()
                    .map(|r| r.0.emotions.map(|v| v.clamp(0.0, 1.0) as f32))
                    .collect();
                let emotion = emorl_agents_llm::eval::emotion_of_values(&values, device)?;
                agent.hooks(&emotion, emorl_lm::response_start(&prompts))?
            }
            Speaker::Model(_) => Hooks::new(),
        }
        .with_logits_fn(row_temperature(temps));
        Ok(speaker
            .model_mut()
            .generate_seeded(&prompts, &seeds, &opts, Some(&hooks))?)
    })();
    match result {
        Ok(gens) => {
            for ((_, answer, ids), g) in rows.into_iter().zip(gens) {
                let _ = answer.send(Ok(GenReply {
                    text: g.text.trim().to_string(),
                    new_tokens: g.tokens.len(),
                    prompt_tokens: ids.len(),
                    finish: match g.finish_reason {
                        emorl_lm::FinishReason::Stop => "stop",
                        _ => "length",
                    },
                    batch: n,
                }));
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            for (_, answer, _) in rows {
                let _ = answer.send(Err(failed(&msg)));
            }
        }
    }
}

/// The two replies of a [`CompareJob`], one after the other with the same
/// seed: the frozen model alone answering the chat history, then the
/// emotional side. An agent's modules read the forced state, or else the
/// state its emotion source gives for this prompt (neutral context, no
/// state carried: the request holds the whole conversation); the frozen
/// model alone is told the state (forced, or neutral) in a system message.
fn compare(speaker: &mut Speaker, job: &CompareJob) -> std::result::Result<CompareReply, ApiError> {
    let _g = tch::no_grad_guard();
    let opts = GenerateOptions {
        max_new_tokens: job.max_tokens,
        sampling: Sampling::Sample {
            temperature: job.temperature,
            top_k: 0,
            top_p: 1.0,
        },
        ..GenerateOptions::default()
    };
    let chat = GenerateOptions {
        chat: speaker.model().tokenizer().chat_template().is_some(),
        ..GenerateOptions::default()
    };
    let base_ids = speaker
        .model()
        .encode_messages(&job.history, &chat)
        .map_err(failed)?;
    let base = one_reply(speaker.model_mut(), base_ids, job, &opts, None)?;
    let (emotional, state) = match speaker {
        Speaker::Model(model) => {
            let phasic = job.forced.unwrap_or_default().map(|v| v as f32);
            let mut messages = vec![ChatMessage::system(describe_emotion(&phasic))];
            messages.extend(job.history.iter().cloned());
            let ids = model.encode_messages(&messages, &chat).map_err(failed)?;
            let state = EMOTIONS
                .iter()
                .zip(phasic)
                .map(|(n, v)| (n.to_string(), f64::from(v)))
                .collect();
            (one_reply(model, ids, job, &opts, None)?, state)
        }
        Speaker::Agent(agent) => agent_reply(agent, job, &opts)?,
    };
    Ok(CompareReply {
        base,
        emotional,
        state,
    })
}

/// The agent's reply to the history and the state its modules read
/// (the conditioning columns: four phasic emotions, tonic fear and joy).
fn agent_reply(
    agent: &mut LlmAgent,
    job: &CompareJob,
    opts: &GenerateOptions,
) -> std::result::Result<(String, Vec<(String, f64)>), ApiError> {
    use emorl_envs_text::{DialogueConfig, DialogueObs, Speaker as Role, Turn};
    let (last, before) = job
        .history
        .split_last()
        .ok_or_else(|| ApiError(StatusCode::UNPROCESSABLE_ENTITY, "history is empty".into()))?;
    let history: Vec<Turn> = before
        .iter()
        .map(|m| Turn {
            speaker: if m.role == "assistant" {
                Role::Assistant
            } else {
                Role::User
            },
            text: m.content.clone(),
        })
        .collect();
    let obs = DialogueObs {
        turn: history
            .iter()
            .filter(|t| t.speaker == Role::Assistant)
            .count(),
        history,
        user_message: last.content.clone(),
        max_turns: DialogueConfig::default().max_turns,
        ended: false,
    };
    let device = agent.model().device();
    let emotion = match job.forced {
        Some(v) => emorl_agents_llm::eval::emotion_of_values(&[v.map(|x| x as f32)], device)
            .map_err(failed)?,
        None => {
            let ids = agent.encode_prompt(&obs).map_err(failed)?;
            let (tokens, mask) = emorl_agents_llm::pad_left(
                std::slice::from_ref(&ids),
                agent.model().tokenizer().pad_id(),
            )
            .map_err(failed)?;
            let context = emorl_core::EmotionalContext::default();
            let (modules, model) = agent.parts_mut();
            modules
                .emotion(model, &[&context], None, None, &tokens, &mask, None)
                .map_err(failed)?
        }
    };
    let phasic = emotion
        .state
        .phasic
        .f_view([-1])
        .and_then(|t| t.f_to_device(tch::Device::Cpu))
        .map_err(failed)
        .and_then(|t| Vec::<f32>::try_from(&t).map_err(failed))?;
    let ids = agent
        .encode_prompt_for(&obs, Some(&phasic))
        .map_err(failed)?;
    let hooks = agent.hooks(&emotion, ids.len()).map_err(failed)?;
    let state = emotion
        .means()
        .map_err(failed)?
        .into_iter()
        .filter(|(n, _)| CONDITIONING_NAMES.contains(&n.as_str()))
        .collect();
    let text = one_reply(agent.model_mut(), ids, job, opts, Some(&hooks))?;
    Ok((text, state))
}

/// One seeded generation from `ids` (refused with 422 when the prompt and
/// the reply do not fit the model's context).
fn one_reply(
    model: &mut Model,
    ids: Vec<u32>,
    job: &CompareJob,
    opts: &GenerateOptions,
    hooks: Option<&Hooks<'_>>,
) -> std::result::Result<String, ApiError> {
    let max_positions = model.max_positions();
    if ids.len() + job.max_tokens > max_positions {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the conversation ({} tokens) plus max_tokens ({}) exceed the model's context of {max_positions} tokens",
                ids.len(),
                job.max_tokens
            ),
        ));
    }
    let gens = model
        .generate_seeded(&[ids], &[job.seed], opts, hooks)
        .map_err(failed)?;
    gens.into_iter()
        .next()
        .map(|g| g.text.trim().to_string())
        .ok_or_else(|| failed("generation returned no sequence"))
}
