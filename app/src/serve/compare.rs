//! `/v1/compare` and the page at `/`: the frozen model alone and the
//! emotional side (a trained agent from `--checkpoint`, or the frozen model
//! told its state in a system message) answer the same chat history; the
//! independent judge (`emorl_agents_llm::eval::Judge`, a GoEmotions
//! classifier trained once, on the first compare request) scores both
//! replies, and every answered turn is appended to `compare.jsonl` in the
//! run directory. Stateless: the client sends the whole conversation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use emorl_agents_llm::eval::{emo_alignment, target_label, EmotionEma, Judge, JUDGE_LABELS};
use emorl_core::neuro::{NeuroConfig, Neurochemistry, EMOTIONS};
use emorl_lm::ChatMessage;
use serde::Deserialize;

use super::speaker::CompareJob;
use super::{bad, body, check_text, default_reply_tokens, ApiResult, App, MAX_REPLY_TOKENS};

/// The page: plain HTML, CSS and JavaScript, no external URLs.
const PAGE: &str = include_str!("compare.html");
/// Most messages one compare request may carry.
pub const MAX_TURNS: usize = 64;
/// Weight of the newest turn in the emotional side's `emotion_ema`.
pub const EMA_ALPHA: f64 = 0.5;
/// The turn log in the run directory.
pub const LOG_FILE: &str = "compare.jsonl";

/// The judge and the turn log of one server.
pub(crate) struct Compare {
    /// Where the judge's GoEmotions files are, or why none were found.
    judge_dir: std::result::Result<PathBuf, String>,
    judge: tokio::sync::OnceCell<std::result::Result<Arc<Judge>, String>>,
    log: PathBuf,
    /// Held while a line is appended, so lines never interleave.
    log_lock: Mutex<()>,
}

impl Compare {
    pub(crate) fn new(judge_dir: std::result::Result<PathBuf, String>, log: PathBuf) -> Compare {
        Compare {
            judge_dir,
            judge: tokio::sync::OnceCell::new(),
            log,
            log_lock: Mutex::new(()),
        }
    }

    /// The judge, trained on first use (later callers wait for it); 503
    /// with one line when it has no data or cannot be trained.
    async fn judge(&self) -> ApiResult<Arc<Judge>> {
        let dir = self
            .judge_dir
            .clone()
            .map_err(|e| bad(StatusCode::SERVICE_UNAVAILABLE, e))?;
        let trained = self
            .judge
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    Judge::train(&dir).map(Arc::new).map_err(|e| {
                        format!("the judge cannot be trained from {}: {e}", dir.display())
                    })
                })
                .await
                .unwrap_or_else(|e| Err(format!("training the judge failed: {e}")))
            })
            .await;
        trained
            .clone()
            .map_err(|e| bad(StatusCode::SERVICE_UNAVAILABLE, e))
    }

    /// Appends one line (one write, then fsync) before the turn is answered.
    fn append(&self, line: &serde_json::Value) -> ApiResult<()> {
        let internal = |e: std::io::Error| {
            bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot append to {}: {e}", self.log.display()),
            )
        };
        let mut text = line.to_string();
        text.push('\n');
        let _held = self
            .log_lock
            .lock()
            .map_err(|_| bad(StatusCode::INTERNAL_SERVER_ERROR, "compare log poisoned"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(internal)?;
        f.write_all(text.as_bytes()).map_err(internal)?;
        f.sync_all().map_err(internal)
    }
}

/// `GET /`: the compare page.
pub(crate) async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

/// `GET /v1/compare/info`: who answers on each side, the targets accepted
/// and the judge's labels.
pub(crate) async fn info(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    let names = &app.worker()?.compare_names;
    Ok(Json(serde_json::json!({
        "base": names.base,
        "emotional": names.emotional,
        "targets": JUDGE_LABELS,
        "emotions": JUDGE_LABELS,
        "ema_alpha": EMA_ALPHA,
        "judge": match &app.compare.judge_dir {
            Ok(dir) => dir.display().to_string(),
            Err(e) => e.clone(),
        },
    })))
}

/// One message of the conversation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompareBody {
    history: Vec<Message>,
    #[serde(default)]
    target: Option<String>,
    /// Sampling seed of both replies (default: the turn number).
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default = "default_reply_tokens")]
    max_tokens: usize,
}

fn unprocessable(msg: impl Into<String>) -> super::ApiError {
    bad(StatusCode::UNPROCESSABLE_ENTITY, msg)
}

/// A requested target emotion.
#[derive(Clone, Copy)]
struct Target {
    /// The judge label it stands for.
    label: &'static str,
    /// The state forced on the emotional side: one-hot for fear,
    /// curiosity, anger or joy, all zero for neutral.
    forced: [f64; 4],
}

/// The judge label of the target and the state forced on the emotional side.
fn resolve_target(name: &str) -> ApiResult<Target> {
    let label = target_label(name).ok_or_else(|| {
        unprocessable(format!(
            "target '{name}' is not one of {} (or DailyDialog's happiness, none)",
            JUDGE_LABELS.join(", ")
        ))
    })?;
    let mut forced = [0.0; 4];
    if let Some(i) = EMOTIONS.iter().position(|&e| e == label) {
        forced[i] = 1.0;
    }
    Ok(Target { label, forced })
}

/// A checked request.
struct Checked {
    /// The history as chat messages.
    history: Vec<ChatMessage>,
    /// The user messages so far.
    turn: usize,
    target: Option<Target>,
}

fn check(b: &CompareBody) -> ApiResult<Checked> {
    if b.history.is_empty() {
        return Err(unprocessable(
            "history is empty: send at least one user message",
        ));
    }
    if b.history.len() > MAX_TURNS {
        return Err(unprocessable(format!(
            "history has {} messages, more than {MAX_TURNS}",
            b.history.len()
        )));
    }
    for (i, m) in b.history.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(unprocessable(format!(
                "history[{i}].role '{}' is not 'user' or 'assistant'",
                m.role.chars().take(40).collect::<String>()
            )));
        }
        check_text(&format!("history[{i}].content"), &m.content)?;
    }
    if b.history.last().is_some_and(|m| m.role != "user") {
        return Err(unprocessable("the last message must be the user's"));
    }
    if !(1..=MAX_REPLY_TOKENS).contains(&b.max_tokens) {
        return Err(unprocessable(format!(
            "max_tokens = {} must be in 1..={MAX_REPLY_TOKENS}",
            b.max_tokens
        )));
    }
    let target = b.target.as_deref().map(resolve_target).transpose()?;
    let turn = b.history.iter().filter(|m| m.role == "user").count();
    let messages = b
        .history
        .iter()
        .map(|m| ChatMessage::new(m.role.as_str(), m.content.as_str()))
        .collect();
    Ok(Checked {
        history: messages,
        turn,
        target,
    })
}

/// The judge's scores of `text` normalised to sum 1 over its labels.
fn distribution(judge: &Judge, text: &str) -> Vec<f64> {
    let p = judge.probabilities(text);
    let sum: f64 = p.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        p.iter().map(|x| x / sum).collect()
    } else {
        vec![0.0; p.len()]
    }
}

fn by_label(p: &[f64]) -> BTreeMap<&'static str, f64> {
    JUDGE_LABELS
        .iter()
        .copied()
        .zip(p.iter().copied())
        .collect()
}

/// `POST /v1/compare`: both replies, their judge scores and alignments,
/// and the emotional side's state; the turn is logged before it is answered.
pub(crate) async fn compare(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    b: std::result::Result<Json<CompareBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    let b = body(b)?;
    let Checked {
        history,
        turn,
        target,
    } = check(&b)?;
    let worker = app.worker()?;
    let judge = app.compare.judge().await?;
    let cfg = NeuroConfig::default();
    let seed = b.seed.unwrap_or(turn as u64);
    let job = CompareJob {
        history,
        forced: target.map(|t| t.forced),
        // A fresh session's sampling temperature, as `generate` uses.
        temperature: Neurochemistry::at_baseline(&cfg).temperature(&cfg),
        seed,
        max_tokens: b.max_tokens,
    };
    let reply = worker.compare(job).await?;
    let target_index = target.and_then(|t| JUDGE_LABELS.iter().position(|&l| l == t.label));
    let base_p = distribution(&judge, &reply.base);
    let emo_p = distribution(&judge, &reply.emotional);
    let alignment = |p: &[f64]| target_index.map(|t| emo_alignment(p, t));
    // The emotional side's expressed emotion smoothed over its turns: the
    // assistant turns of the history (its earlier replies), then this one.
    let mut ema = EmotionEma::new(EMA_ALPHA);
    for m in b.history.iter().filter(|m| m.role == "assistant") {
        ema.update(&distribution(&judge, &m.content));
    }
    let smoothed = ema.update(&emo_p).to_vec();
    let state: BTreeMap<String, f64> = reply.state.into_iter().collect();
    let out = serde_json::json!({
        "turn": turn,
        "target": target.map(|t| t.label),
        "seed": seed,
        "base": {
            "reply": reply.base,
            "emotions": by_label(&base_p),
            "alignment": alignment(&base_p),
        },
        "emotional": {
            "reply": reply.emotional,
            "emotions": by_label(&emo_p),
            "alignment": alignment(&emo_p),
            "emotion_ema": by_label(&smoothed),
            "state": state,
        },
        "log": app.compare.log.display().to_string(),
    });
    let user = b.history.last().map(|m| m.content.as_str()).unwrap_or("");
    let mut line = out.clone();
    line["user"] = serde_json::Value::from(user);
    line["messages"] = serde_json::Value::from(b.history.len());
    line["time"] = serde_json::Value::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    if let Some(obj) = line.as_object_mut() {
        obj.remove("log");
    }
    app.compare.append(&line)?;
    Ok(Json(out))
}
