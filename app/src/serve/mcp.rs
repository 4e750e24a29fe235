//! The emotion engine as MCP tools (the official Rust SDK, `rmcp`):
//! `get_emotional_state` and `update_emotion`, over stdio (`emorl mcp`) and
//! over streamable HTTP at `/mcp` on `emorl serve`. Both read and change
//! the same sessions as the REST API; a bad call is a JSON-RPC error and
//! changes nothing.

use super::{ApiError, App, Event, DEFAULT_SESSION};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData as McpError, ServerHandler};
use serde::Deserialize;
use std::sync::Arc;

/// The MCP face of one engine.
#[derive(Clone)]
pub(crate) struct EngineTools {
    pub(crate) app: Arc<App>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateArgs {
    /// The session (default: "default", which always exists).
    session: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateArgs {
    /// The session (default: "default", which always exists).
    session: Option<String>,
    /// Feedback in [-1, 1]: praise or success above 0, blame or failure below.
    feedback: Option<f64>,
    /// Novelty in [0, 1].
    novelty: Option<f64>,
    /// Threat in [0, 1] (danger, a safety concern, repeated failure).
    threat: Option<f64>,
    /// Social warmth in [0, 1] (thanks, kindness).
    warmth: Option<f64>,
    /// How long the stimulus lasts, in time units (0, 86400]; default 1.
    dt: Option<f64>,
}

fn answer(r: Result<serde_json::Value, ApiError>) -> Result<CallToolResult, McpError> {
    match r {
        Ok(v) => Ok(CallToolResult::success(vec![ContentBlock::text(
            v.to_string(),
        )])),
        Err(ApiError(status, msg)) if status.is_client_error() => {
            Err(McpError::invalid_params(msg, None))
        }
        Err(ApiError(_, msg)) => Err(McpError::internal_error(msg, None)),
    }
}

#[tool_router]
impl EngineTools {
    #[tool(
        description = "The emotional state of a session: neurochemical levels (dopamine, serotonin, cortisol, oxytocin), the emotions fear, curiosity, anger and joy, a sampling temperature and conditioning tokens; all in [0, 1] but the temperature."
    )]
    fn get_emotional_state(
        &self,
        Parameters(a): Parameters<StateArgs>,
    ) -> Result<CallToolResult, McpError> {
        let id = a.session.unwrap_or_else(|| DEFAULT_SESSION.to_string());
        answer(self.app.state(&id))
    }

    #[tool(
        description = "Tell the emotion engine what happened: a stimulus (feedback in [-1, 1]; novelty, threat, warmth in [0, 1]; each 0 when left out) held for dt time units. Returns the new state."
    )]
    fn update_emotion(
        &self,
        Parameters(a): Parameters<UpdateArgs>,
    ) -> Result<CallToolResult, McpError> {
        let id = a.session.unwrap_or_else(|| DEFAULT_SESSION.to_string());
        let e = Event {
            feedback: a.feedback.unwrap_or(0.0),
            novelty: a.novelty.unwrap_or(0.0),
            threat: a.threat.unwrap_or(0.0),
            warmth: a.warmth.unwrap_or(0.0),
            dt: a.dt.unwrap_or_else(super::one),
            text: None,
        };
        answer(self.app.apply(&id, &e, None))
    }
}

#[tool_handler]
impl ServerHandler for EngineTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("emorl", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "emorl's emotion engine: per-session neurochemistry (dopamine, serotonin, cortisol, oxytocin) that update_emotion drives with stimuli and get_emotional_state reads, with the emotions and sampling temperature it implies.",
            )
    }
}
