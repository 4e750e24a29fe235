//! `emorl serve`: the emotion engine (seed 003) as a local HTTP service.
//!
//! Sessions hold neurochemical state (`emorl_core::neuro`); clients read it
//! and post interaction events that advance the dynamics. REST under `/v1`:
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | `/v1/health` | liveness and the session count |
//! | POST | `/v1/sessions` | a new session at baseline (`{"id": …}` optional) |
//! | GET | `/v1/sessions/{id}` | its state: levels, emotions, temperature, tokens |
//! | POST | `/v1/sessions/{id}/events` | a stimulus held for `dt` time units |
//! | POST | `/v1/sessions/{id}/reset` | back to baseline (memories are kept) |
//! | POST | `/v1/sessions/{id}/generate` | a reply in the session's state (see [`speaker`]) |
//! | GET | `/v1/sessions/{id}/memory` | the session's remembered episodes |
//! | GET | `/v1/ws?session={id}` | WebSocket: the state now, then every change |
//! | GET | `/` | the compare page: base model and emotional agent side by side |
//! | GET | `/v1/compare/info` | who answers on each side, targets, judge labels |
//! | POST | `/v1/compare` | both replies to a chat history, judged (see [`compare`]) |
//!
//! An event may carry the `text` it was about: the text's embedding is then
//! remembered with the state the event left and its feedback as the outcome
//! (`emorl_core::memory`), and a later reply to a similar message is given in
//! a state biased toward how that moment felt.
//!
//! Every change is written atomically to `sessions/<id>.json` in the run
//! directory before it is acknowledged, so a server killed at any moment and
//! restarted on the same `--out` has every acknowledged update. Bad requests
//! get a 4xx with `{"error": "…"}` and change nothing. Loopback by default;
//! another address needs `--token`, and every request but `/v1/health` must
//! then carry `Authorization: Bearer <token>`.

mod compare;
mod mcp;
mod speaker;

pub use speaker::SpeakerSpec;

use anyhow::{bail, Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use emorl_core::memory::{EmotionalMemory, MemoryConfig, Recall};
use emorl_core::neuro::{NeuroConfig, Neurochemistry, Stimulus, CHEMICALS, EMOTIONS};
use emorl_log::RunDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The session that always exists (MCP tools use it when none is named).
pub const DEFAULT_SESSION: &str = "default";
/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// Most sessions one server holds.
pub const MAX_SESSIONS: usize = 10_000;
/// Longest step one event may ask for (time units).
pub const MAX_DT: f64 = 86_400.0;
/// State changes a WebSocket subscriber may fall behind by before it is
/// disconnected (told so) rather than silently skipped.
pub const SUBSCRIBER_BACKLOG: usize = 4096;
/// Longest message or event text (characters).
pub const MAX_TEXT: usize = 4000;
/// Most new tokens one reply may ask for.
pub const MAX_REPLY_TOKENS: usize = 512;

/// `emorl serve`'s options.
pub struct ServeArgs {
    pub host: String,
    pub port: u16,
    pub out: Option<PathBuf>,
    pub runs_dir: PathBuf,
    pub token: Option<String>,
    /// The language model that replies (`None`: the dynamics only).
    pub speaker: Option<SpeakerSpec>,
    /// GoEmotions files for `/v1/compare`'s judge (`None`: found on disk).
    pub goemotions: Option<PathBuf>,
}

/// One session as stored and served.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    id: String,
    /// Acknowledged events since creation or the last reset.
    updates: u64,
    state: Neurochemistry,
}

pub(crate) struct App {
    cfg: NeuroConfig,
    run: RunDir,
    token: Option<String>,
    sessions: Mutex<BTreeMap<String, Session>>,
    /// Per session: the channel every acknowledged state is published on,
    /// in acknowledgement order (sent under the sessions' lock).
    channels: Mutex<BTreeMap<String, tokio::sync::broadcast::Sender<String>>>,
    memory_cfg: MemoryConfig,
    /// Per session: its remembered episodes (stored in `memory/<id>.json`).
    memories: Mutex<BTreeMap<String, EmotionalMemory>>,
    /// Generation and embeddings (`None` with `--engine-only`).
    worker: Option<speaker::Worker>,
    /// `/v1/compare`'s judge and turn log.
    compare: compare::Compare,
}

/// An error answer: status and one line.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn bad(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

/// A JSON body, or the extractor's own 4xx (400 malformed, 413 too large,
/// 415 not JSON, 422 wrong shape) with its message.
fn body<T>(b: std::result::Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(v)| v)
        .map_err(|e| bad(e.status(), e.body_text().replace('\n', " ")))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The answer for a session: levels, emotions, temperature and tokens.
fn view(cfg: &NeuroConfig, s: &Session) -> serde_json::Value {
    let levels: BTreeMap<&str, f64> = CHEMICALS.iter().copied().zip(s.state.levels).collect();
    let emotions: BTreeMap<&str, f64> = EMOTIONS.iter().copied().zip(s.state.emotions()).collect();
    serde_json::json!({
        "id": s.id,
        "updates": s.updates,
        "levels": levels,
        "emotions": emotions,
        "temperature": s.state.temperature(cfg),
        "tokens": s.state.tokens(),
    })
}

impl App {
    fn authorise(&self, headers: &HeaderMap) -> ApiResult<()> {
        self.authorise_with(headers, None)
    }

    /// Accepts the token from the `Authorization` header or, for clients
    /// that cannot set headers (browsers' WebSockets), `query`.
    fn authorise_with(&self, headers: &HeaderMap, query: Option<&str>) -> ApiResult<()> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or(query);
        if given == Some(token.as_str()) {
            Ok(())
        } else {
            Err(bad(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            ))
        }
    }

    fn lock_sessions(&self) -> ApiResult<std::sync::MutexGuard<'_, BTreeMap<String, Session>>> {
        self.sessions
            .lock()
            .map_err(|_| bad(StatusCode::INTERNAL_SERVER_ERROR, "session store poisoned"))
    }

    /// A new session at baseline, named `id` or the first free `s<n>`.
    pub(crate) fn create(&self, id: Option<String>) -> ApiResult<serde_json::Value> {
        let mut sessions = self.lock_sessions()?;
        if sessions.len() >= MAX_SESSIONS {
            return Err(bad(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this server holds its limit of {MAX_SESSIONS} sessions"),
            ));
        }
        let id = match id {
            Some(id) if !valid_id(&id) => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    "id: 1-64 characters from A-Z, a-z, 0-9, '-' and '_'",
                ))
            }
            Some(id) if sessions.contains_key(&id) => {
                return Err(bad(StatusCode::CONFLICT, format!("session '{id}' exists")))
            }
            Some(id) => id,
            None => (sessions.len() + 1..)
                .map(|n| format!("s{n}"))
                .find(|k| !sessions.contains_key(k))
                .unwrap_or_default(),
        };
        let s = Session {
            id: id.clone(),
            updates: 0,
            state: Neurochemistry::at_baseline(&self.cfg),
        };
        self.persist(&s)?;
        let out = view(&self.cfg, &s);
        sessions.insert(id, s);
        Ok(out)
    }

    /// The answer for session `id`.
    pub(crate) fn state(&self, id: &str) -> ApiResult<serde_json::Value> {
        let sessions = self.lock_sessions()?;
        let s = sessions
            .get(id)
            .ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no session '{id}'")))?;
        Ok(view(&self.cfg, s))
    }

    /// Applies an event to session `id` (see [`Event`]); with `embedding`
    /// (of the event's text), the state it leaves is also remembered.
    pub(crate) fn apply(
        &self,
        id: &str,
        e: &Event,
        embedding: Option<&[f32]>,
    ) -> ApiResult<serde_json::Value> {
        let stimulus = e.check()?;
        let (cfg, dt) = (self.cfg.clone(), e.dt);
        let remember = embedding.map(|v| (v, e.feedback));
        self.update_with(
            id,
            |s| {
                s.state.step(&cfg, &stimulus, dt);
                s.updates += 1;
            },
            remember,
        )
    }

    fn lock_memories(
        &self,
    ) -> ApiResult<std::sync::MutexGuard<'_, BTreeMap<String, EmotionalMemory>>> {
        self.memories
            .lock()
            .map_err(|_| bad(StatusCode::INTERNAL_SERVER_ERROR, "memory store poisoned"))
    }

    fn persist_memory(&self, id: &str, m: &EmotionalMemory) -> ApiResult<()> {
        let text = serde_json::to_vec(m)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        self.run
            .write_atomic(Path::new("memory").join(format!("{id}.json")), &text)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(())
    }

    /// Session `id`'s state and the number of episodes it remembers.
    fn snapshot(&self, id: &str) -> ApiResult<(Session, usize)> {
        let sessions = self.lock_sessions()?;
        let s = sessions
            .get(id)
            .ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no session '{id}'")))?
            .clone();
        let n = self
            .lock_memories()?
            .get(id)
            .map_or(0, EmotionalMemory::len);
        Ok((s, n))
    }

    /// Writes the session before the change is acknowledged.
    fn persist(&self, s: &Session) -> ApiResult<()> {
        let text = serde_json::to_vec_pretty(s)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        self.run
            .write_atomic(Path::new("sessions").join(format!("{}.json", s.id)), &text)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(())
    }

    /// Applies `change` to session `id` and stores it, all under the lock
    /// (so updates to a session are stored in the order they are answered);
    /// a failed store leaves the session as it was.
    fn update(&self, id: &str, change: impl FnOnce(&mut Session)) -> ApiResult<serde_json::Value> {
        self.update_with(id, change, None)
    }

    /// Like [`App::update`]; with `remember = (embedding, outcome)` the
    /// state the change leaves is also stored in the session's memory
    /// (the memory first: an acknowledged change has both).
    fn update_with(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session),
        remember: Option<(&[f32], f64)>,
    ) -> ApiResult<serde_json::Value> {
        let mut sessions = self.lock_sessions()?;
        let current = sessions
            .get(id)
            .ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no session '{id}'")))?;
        let mut next = current.clone();
        change(&mut next);
        let mut memories = self.lock_memories()?;
        let memory = match remember {
            Some((embedding, outcome)) => {
                let mut memory = memories.get(id).cloned().unwrap_or_default();
                memory
                    .add(&self.memory_cfg, embedding, &next.state, outcome)
                    .map_err(|err| bad(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
                self.persist_memory(id, &memory)?;
                Some(memory)
            }
            None => None,
        };
        self.persist(&next)?;
        // Served only once both are stored.
        if let Some(memory) = memory {
            memories.insert(id.to_string(), memory);
        }
        let out = view(&self.cfg, &next);
        sessions.insert(id.to_string(), next);
        self.publish(id, &out);
        Ok(out)
    }

    /// Sends an acknowledged state to the session's subscribers (none
    /// listening is fine).
    fn publish(&self, id: &str, state: &serde_json::Value) {
        if let Ok(channels) = self.channels.lock() {
            if let Some(tx) = channels.get(id) {
                let _ = tx.send(state.to_string());
            }
        }
    }

    /// The session's channel, made on first use.
    fn subscribe(&self, id: &str) -> Option<tokio::sync::broadcast::Receiver<String>> {
        let mut channels = self.channels.lock().ok()?;
        let tx = channels
            .entry(id.to_string())
            .or_insert_with(|| tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0);
        Some(tx.subscribe())
    }
}

async fn health(State(app): State<Arc<App>>) -> ApiResult<Json<serde_json::Value>> {
    let n = app.sessions.lock().map(|s| s.len()).unwrap_or(0);
    let speaker = app.worker.as_ref().map(|w| w.description.clone());
    Ok(Json(
        serde_json::json!({ "status": "ok", "sessions": n, "speaker": speaker }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<String>,
}

async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    b: Option<Json<CreateBody>>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    app.authorise(&headers)?;
    let b = b.map(|Json(v)| v).unwrap_or_default();
    app.create(b.id).map(|v| (StatusCode::CREATED, Json(v)))
}

async fn get_session(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    app.state(&id).map(Json)
}

/// An interaction event: a stimulus held for `dt` time units.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    #[serde(default)]
    pub(crate) feedback: f64,
    #[serde(default)]
    pub(crate) novelty: f64,
    #[serde(default)]
    pub(crate) threat: f64,
    #[serde(default)]
    pub(crate) warmth: f64,
    #[serde(default = "one")]
    pub(crate) dt: f64,
    /// What the event was about: remembered (with a language model).
    #[serde(default)]
    pub(crate) text: Option<String>,
}

pub(crate) fn one() -> f64 {
    1.0
}

impl Event {
    pub(crate) fn check(&self) -> ApiResult<Stimulus> {
        let in_range = |name: &str, v: f64, lo: f64| {
            if v.is_finite() && (lo..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{name} = {v} is outside [{lo}, 1]"),
                ))
            }
        };
        in_range("feedback", self.feedback, -1.0)?;
        in_range("novelty", self.novelty, 0.0)?;
        in_range("threat", self.threat, 0.0)?;
        in_range("warmth", self.warmth, 0.0)?;
        if let Some(t) = &self.text {
            check_text("text", t)?;
        }
        if !(self.dt.is_finite() && self.dt > 0.0 && self.dt <= MAX_DT) {
            return Err(bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("dt = {} must be in (0, {MAX_DT}]", self.dt),
            ));
        }
        Ok(Stimulus {
            feedback: self.feedback,
            novelty: self.novelty,
            threat: self.threat,
            warmth: self.warmth,
        })
    }
}

/// A message or text: not blank, at most [`MAX_TEXT`] characters.
fn check_text(name: &str, t: &str) -> ApiResult<()> {
    if t.trim().is_empty() {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name} is empty"),
        ));
    }
    let n = t.chars().count();
    if n > MAX_TEXT {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name} has {n} characters, more than {MAX_TEXT}"),
        ));
    }
    Ok(())
}

impl App {
    fn worker(&self) -> ApiResult<&speaker::Worker> {
        self.worker.as_ref().ok_or_else(|| {
            bad(
                StatusCode::SERVICE_UNAVAILABLE,
                "no language model: this server was started with --engine-only",
            )
        })
    }
}

async fn post_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    b: std::result::Result<Json<Event>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    let e = body(b)?;
    e.check()?;
    let embedding = match &e.text {
        Some(t) => {
            // Refuse an unknown session before any model work.
            app.snapshot(&id)?;
            Some(app.worker()?.embed(t.clone()).await?)
        }
        None => None,
    };
    app.apply(&id, &e, embedding.as_deref()).map(Json)
}

fn default_reply_tokens() -> usize {
    64
}

/// A message to answer in the session's state.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    message: String,
    #[serde(default = "default_reply_tokens")]
    max_tokens: usize,
    /// Sampling seed (default: the session's update count).
    seed: Option<u64>,
}

/// `POST /v1/sessions/{id}/generate`: a reply in the session's state —
/// biased toward the states of remembered similar moments — with the
/// sampling temperature of that state. Changes nothing.
async fn generate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    b: std::result::Result<Json<GenerateBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    let b = body(b)?;
    check_text("message", &b.message)?;
    if !(1..=MAX_REPLY_TOKENS).contains(&b.max_tokens) {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "max_tokens = {} must be in 1..={MAX_REPLY_TOKENS}",
                b.max_tokens
            ),
        ));
    }
    let (session, remembered) = app.snapshot(&id)?;
    let worker = app.worker()?;
    let (state, recall) = if remembered > 0 {
        let query = worker.embed(b.message.clone()).await?;
        let memories = app.lock_memories()?;
        match memories.get(&id) {
            Some(m) => m
                .bias(&app.memory_cfg, &session.state, &query)
                .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            None => (session.state, Recall::default()),
        }
    } else {
        (session.state, Recall::default())
    };
    let seed = b.seed.unwrap_or(session.updates);
    let job = speaker::GenJob {
        message: b.message,
        emotions: state.emotions(),
        tokens: state.tokens(),
        temperature: state.temperature(&app.cfg),
        seed,
        max_tokens: b.max_tokens,
    };
    let (emotions, temperature, tokens) = (job.emotions, job.temperature, job.tokens.clone());
    let reply = worker.generate(job).await?;
    let levels: BTreeMap<&str, f64> = CHEMICALS.iter().copied().zip(state.levels).collect();
    let emotions: BTreeMap<&str, f64> = EMOTIONS.iter().copied().zip(emotions).collect();
    Ok(Json(serde_json::json!({
        "session": id,
        "reply": reply.text,
        "seed": seed,
        "levels": levels,
        "emotions": emotions,
        "temperature": temperature,
        "tokens": tokens,
        "recall": { "matches": recall.matches, "mix": recall.mix },
        "prompt_tokens": reply.prompt_tokens,
        "new_tokens": reply.new_tokens,
        "finish": reply.finish,
        "batch": reply.batch,
    })))
}

/// `GET /v1/sessions/{id}/memory`: the remembered episodes (levels,
/// outcome, index; embeddings left out).
async fn get_memory(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    app.snapshot(&id)?;
    let memories = app.lock_memories()?;
    let episodes: Vec<serde_json::Value> = memories
        .get(&id)
        .map(|m| {
            m.episodes()
                .map(|e| {
                    serde_json::json!({
                        "index": e.index,
                        "levels": CHEMICALS.iter().copied().zip(e.levels).collect::<BTreeMap<_, _>>(),
                        "outcome": e.outcome,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(serde_json::json!({
        "session": id,
        "capacity": app.memory_cfg.capacity,
        "stored": memories.get(&id).map_or(0, EmotionalMemory::stored),
        "episodes": episodes,
    })))
}

async fn reset(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    app.authorise(&headers)?;
    let base = Neurochemistry::at_baseline(&app.cfg);
    app.update(&id, |s| {
        s.state = base;
        s.updates = 0;
    })
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WsQuery {
    session: String,
    token: Option<String>,
}

/// `GET /v1/ws?session=ID`: sends the session's state, then every
/// acknowledged change in order, as JSON text messages. A subscriber that
/// falls more than [`SUBSCRIBER_BACKLOG`] changes behind gets an error
/// message and is closed (never a silent gap).
async fn subscribe(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: std::result::Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| bad(StatusCode::BAD_REQUEST, e.body_text()))?;
    app.authorise_with(&headers, q.token.as_deref())?;
    let ws = ws.map_err(|e| bad(e.status(), e.body_text()))?;
    // Subscribe and read the current state under the sessions' lock, so the
    // first message and the stream that follows have no gap or overlap.
    let (first, rx) = {
        let sessions = app.lock_sessions()?;
        let s = sessions
            .get(&q.session)
            .ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no session '{}'", q.session)))?;
        let rx = app
            .subscribe(&q.session)
            .ok_or_else(|| bad(StatusCode::INTERNAL_SERVER_ERROR, "channel store poisoned"))?;
        (view(&app.cfg, s).to_string(), rx)
    };
    Ok(ws.on_upgrade(move |socket| forward(socket, first, rx)))
}

async fn forward(
    mut socket: WebSocket,
    first: String,
    mut rx: tokio::sync::broadcast::Receiver<String>,
) {
    use tokio::sync::broadcast::error::RecvError;
    if socket.send(Message::Text(first.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let err = serde_json::json!({
                        "error": format!("this subscriber fell {n} changes behind; reconnect for the current state")
                    });
                    let _ = socket.send(Message::Text(err.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Clients only listen; a close or an error ends the stream.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn not_found() -> ApiError {
    bad(
        StatusCode::NOT_FOUND,
        "no such route (see `emorl serve --help`)",
    )
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/sessions", post(create))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/events", post(post_event))
        .route("/v1/sessions/{id}/reset", post(reset))
        .route("/v1/sessions/{id}/generate", post(generate))
        .route("/v1/sessions/{id}/memory", get(get_memory))
        .route("/v1/ws", get(subscribe))
        .route("/", get(compare::page))
        .route("/v1/compare/info", get(compare::info))
        .route("/v1/compare", post(compare::compare))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// The JSON files in `dir` by file stem (a missing directory holds none;
/// temporary files of an interrupted write, whose names start with a dot,
/// are skipped), each read as a `what` file.
fn load_json_dir<T: serde::de::DeserializeOwned>(
    dir: &Path,
    what: &str,
) -> Result<BTreeMap<String, (PathBuf, T)>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: T = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a {what} file", path.display()))?;
        out.insert(stem.to_string(), (path, value));
    }
    Ok(out)
}

/// The sessions stored in `dir`.
fn load_sessions(dir: &Path) -> Result<BTreeMap<String, Session>> {
    let mut out = BTreeMap::new();
    for (_, (path, s)) in load_json_dir::<Session>(dir, "session")? {
        Neurochemistry::new(s.state.levels)
            .with_context(|| format!("{}: levels out of range", path.display()))?;
        out.insert(s.id.clone(), s);
    }
    Ok(out)
}

/// The memories stored in `dir`, by session.
fn load_memories(dir: &Path) -> Result<BTreeMap<String, EmotionalMemory>> {
    Ok(load_json_dir::<EmotionalMemory>(dir, "memory")?
        .into_iter()
        .map(|(id, (_, m))| (id, m))
        .collect())
}

/// Opens (or creates) the run directory, loads its sessions and memories,
/// starts the speaker (when there is one) and makes sure the default
/// session exists.
fn open_app(
    out: Option<&Path>,
    runs_dir: &Path,
    token: Option<String>,
    speaker: Option<SpeakerSpec>,
    judge_dir: std::result::Result<PathBuf, String>,
) -> Result<Arc<App>> {
    // The model first: one that cannot be loaded leaves no run directory.
    let worker = speaker.map(speaker::Worker::start).transpose()?;
    let run = match out {
        Some(p) => RunDir::at(p),
        None => RunDir::create(runs_dir, "serve"),
    }
    .map_err(|e| crate::train::run::explain(e, false))?;
    let sessions = load_sessions(&run.path().join("sessions"))?;
    let memories = load_memories(&run.path().join("memory"))?;
    let compare = compare::Compare::new(judge_dir, run.path().join(compare::LOG_FILE));
    let app = Arc::new(App {
        cfg: NeuroConfig::default(),
        run,
        token,
        sessions: Mutex::new(sessions),
        channels: Mutex::new(BTreeMap::new()),
        memory_cfg: MemoryConfig::default(),
        memories: Mutex::new(memories),
        worker,
        compare,
    });
    let missing = app
        .sessions
        .lock()
        .map(|s| !s.contains_key(DEFAULT_SESSION))
        .unwrap_or(false);
    if missing {
        app.create(Some(DEFAULT_SESSION.to_string()))
            .map_err(|ApiError(_, msg)| anyhow::anyhow!("creating the default session: {msg}"))?;
    }
    Ok(app)
}

/// Requires the bearer token on `/mcp` when the server has one.
async fn mcp_auth(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match app.authorise(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Runs the server until Ctrl-C (or SIGTERM).
pub fn serve(args: ServeArgs) -> Result<()> {
    let ip: IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host {}: not an IP address", args.host))?;
    if !ip.is_loopback() && args.token.is_none() {
        bail!(
            "--host {ip} is reachable from other machines: give --token T (clients send Authorization: Bearer T)"
        );
    }
    if args
        .token
        .as_deref()
        .is_some_and(|t| t.len() < 8 || t.contains(char::is_whitespace))
    {
        bail!("--token: at least 8 characters, no spaces");
    }
    // An explicit --goemotions must hold the files; without it, a server
    // that finds none still serves everything but /v1/compare (503).
    let judge_dir = match &args.goemotions {
        Some(dir) => Ok(crate::measure::goemotions_dir(Some(dir))?),
        None => crate::measure::goemotions_dir(None)
            .map_err(|e| format!("/v1/compare has no judge: {e}")),
    };
    let app = open_app(
        args.out.as_deref(),
        &args.runs_dir,
        args.token,
        args.speaker,
        judge_dir,
    )?;
    let dir = app.run.path().to_path_buf();
    let n = app.sessions.lock().map(|s| s.len()).unwrap_or(0);
    let speaker = app
        .worker
        .as_ref()
        .map_or("none (--engine-only)".to_string(), |w| {
            w.description.clone()
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, args.port))
            .await
            .with_context(|| format!("cannot listen on {ip}:{}", args.port))?;
        let addr = listener.local_addr()?;
        use rmcp::transport::streamable_http_server::{
            session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
        };
        let tools_app = app.clone();
        let mcp = StreamableHttpService::new(
            move || {
                Ok(mcp::EngineTools {
                    app: tools_app.clone(),
                })
            },
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        );
        let mcp_router = Router::new()
            .nest_service("/mcp", mcp)
            .layer(axum::middleware::from_fn_with_state(app.clone(), mcp_auth));
        let routes = router(app).merge(mcp_router);
        // The first line on stdout names the address (tests read the port
        // from it when they ask for port 0).
        println!("listening on http://{addr}");
        eprintln!(
            "emotion engine: {n} stored session(s) in {}; replies: {speaker}; MCP at http://{addr}/mcp; Ctrl-C stops",
            dir.display()
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, routes)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")?;
        Ok::<(), anyhow::Error>(())
    })
}

/// `emorl mcp`: the MCP tools over stdio (stdout carries the protocol, so
/// nothing else is printed there), on the sessions of `out`.
pub fn mcp_stdio(out: Option<&Path>, runs_dir: &Path) -> Result<()> {
    let app = open_app(out, runs_dir, None, None, Err("no language model".into()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the MCP runtime")?;
    runtime.block_on(async move {
        use rmcp::ServiceExt;
        let service = mcp::EngineTools { app }
            .serve(rmcp::transport::stdio())
            .await
            .context("starting the MCP session")?;
        service.waiting().await.context("serving MCP")?;
        Ok::<(), anyhow::Error>(())
    })
}
