//! `emorl serve` over loopback with a real HTTP client: the REST flow, the
//! dynamics it serves equal the library's, every bad request answered with
//! its 4xx and nothing changed, bearer tokens, and a server killed with
//! SIGKILL and restarted keeps every acknowledged update.

mod common;

use common::start_server as start;
use emorl_core::neuro::{NeuroConfig, Neurochemistry, Stimulus};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Stdio;

/// A client that opens a connection per request (a server may close one
/// after refusing a body it did not read, e.g. with 413).
fn client() -> Client {
    Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// POSTs `body` to `url`, expects 200 and returns the JSON answer.
fn post_ok(c: &Client, url: &str, body: &Value) -> Value {
    let r = c.post(url).json(body).send().expect("post");
    assert_eq!(r.status(), StatusCode::OK, "{url} {body}");
    r.json().expect("json")
}

/// Posts an event to a session and returns the acknowledged state.
fn post_event(c: &Client, base: &str, session: &str, body: &Value) -> Value {
    post_ok(c, &format!("{base}/v1/sessions/{session}/events"), body)
}

fn levels(v: &Value) -> [f64; 4] {
    ["dopamine", "serotonin", "cortisol", "oxytocin"].map(|k| {
        v["levels"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {v}"))
    })
}

#[test]
fn rest_sessions_follow_the_dynamics_and_bad_requests_change_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(&tmp.path().join("engine"), &[]);
    let (c, base) = (client(), server.base.clone());
    let url = |p: &str| format!("{base}{p}");

    let health: Value = get_json(&url("/v1/health"));
    // The default session (the MCP tools' when none is named) always exists.
    assert_eq!(
        health,
        json!({"status": "ok", "sessions": 1, "speaker": null})
    );

    let r = c
        .post(url("/v1/sessions"))
        .json(&json!({"id": "alice"}))
        .send()
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let alice: Value = r.json().expect("json");
    let cfg = NeuroConfig::default();
    assert_eq!(levels(&alice), cfg.baseline);
    let r = c.post(url("/v1/sessions")).send().expect("create unnamed");
    assert_eq!(r.status(), StatusCode::CREATED);
    let unnamed: Value = r.json().expect("json");
    assert!(unnamed["id"].as_str().is_some_and(|s| !s.is_empty()));

    // Three events: the served state is the library's, bit for bit.
    let mut want = Neurochemistry::at_baseline(&cfg);
    let events = [
        (
            json!({"threat": 0.9}),
            Stimulus {
                threat: 0.9,
                ..Default::default()
            },
            1.0,
        ),
        (
            json!({"feedback": 0.5, "warmth": 0.3, "dt": 2.5}),
            Stimulus {
                feedback: 0.5,
                warmth: 0.3,
                ..Default::default()
            },
            2.5,
        ),
        (
            json!({"novelty": 1.0, "dt": 0.1}),
            Stimulus {
                novelty: 1.0,
                ..Default::default()
            },
            0.1,
        ),
    ];
    let mut last = Value::Null;
    for (body, stimulus, dt) in events {
        last = post_event(&c, &base, "alice", &body);
        want.step(&cfg, &stimulus, dt);
        assert_eq!(levels(&last), want.levels, "after {body}");
    }
    assert_eq!(last["updates"], 3);
    assert_eq!(last["tokens"], want.tokens());
    let got: Value = get_json(&url("/v1/sessions/alice"));
    assert_eq!(got, last);

    // Bad requests: each its status, and the session unchanged.
    let big = "x".repeat(64 * 1024);
    let cases: Vec<(reqwest::blocking::RequestBuilder, StatusCode)> = vec![
        (
            c.post(url("/v1/sessions/alice/events"))
                .json(&json!({"threat": 1.5})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .json(&json!({"feedback": -2})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .json(&json!({"dt": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .json(&json!({"dt": 1e9})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .json(&json!({"mood": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .header("content-type", "application/json")
                .body("{\"threat\": "),
            StatusCode::BAD_REQUEST,
        ),
        (
            c.post(url("/v1/sessions/alice/events")).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            c.post(url("/v1/sessions/alice/events"))
                .header("content-type", "application/json")
                .body(format!("{{\"threat\": 0.1, \"pad\": \"{big}\"}}")),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            c.post(url("/v1/sessions/nobody/events")).json(&json!({})),
            StatusCode::NOT_FOUND,
        ),
        (c.get(url("/v1/sessions/nobody")), StatusCode::NOT_FOUND),
        (
            c.post(url("/v1/sessions")).json(&json!({"id": "alice"})),
            StatusCode::CONFLICT,
        ),
        (
            c.post(url("/v1/sessions")).json(&json!({"id": "../etc"})),
            StatusCode::BAD_REQUEST,
        ),
        (c.get(url("/v2/whatever")), StatusCode::NOT_FOUND),
    ];
    for (i, (req, status)) in cases.into_iter().enumerate() {
        let r = req.send().expect("request");
        assert_eq!(r.status(), status, "case {i}");
        let err: Value = r.json().expect("a JSON error body");
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i}: {err}"
        );
        let now: Value = get_json(&url("/v1/sessions/alice"));
        assert_eq!(now, last, "case {i} changed the session");
    }

    let r = c
        .post(url("/v1/sessions/alice/reset"))
        .send()
        .expect("reset");
    assert_eq!(r.status(), StatusCode::OK);
    let reset: Value = r.json().expect("json");
    assert_eq!(levels(&reset), cfg.baseline);
    assert_eq!(reset["updates"], 0);
    let health: Value = get_json(&url("/v1/health"));
    assert_eq!(health["sessions"], 3);
}

#[test]
fn a_server_killed_with_sigkill_keeps_every_acknowledged_update() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("engine");
    let c = client();
    let acknowledged = {
        let server = start(&out, &[]);
        let url = |p: &str| format!("{}{p}", server.base);
        c.post(url("/v1/sessions"))
            .json(&json!({"id": "bob"}))
            .send()
            .expect("create");
        let mut last = Value::Null;
        for k in 0..40 {
            let body =
                json!({"feedback": (k % 7) as f64 / 7.0 - 0.4, "threat": (k % 3) as f64 / 3.0});
            last = post_event(&c, &server.base, "bob", &body);
        }
        // Dropping the server sends SIGKILL: no shutdown code runs.
        last
    };
    assert_eq!(acknowledged["updates"], 40);
    let server = start(&out, &[]);
    let now: Value = get_json(&format!("{}/v1/sessions/bob", server.base));
    assert_eq!(now, acknowledged);
}

#[test]
fn a_token_guards_every_route_but_health() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(&tmp.path().join("engine"), &["--token", "s3cret-token"]);
    let c = client();
    let url = |p: &str| format!("{}{p}", server.base);
    assert_eq!(
        c.get(url("/v1/health")).send().expect("health").status(),
        StatusCode::OK
    );
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token"), StatusCode::UNAUTHORIZED),
        (Some("s3cret-token"), StatusCode::CREATED),
    ] {
        let mut req = c.post(url("/v1/sessions"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().expect("create").status(), status, "{token:?}");
    }
    // MCP over HTTP too.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let r = c
        .post(url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .expect("mcp");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Two WebSocket subscribers each get the state at subscription, then every
/// acknowledged change in order, equal to the REST answers; subscribing to
/// an unknown session is refused with 404.
#[test]
fn websocket_subscribers_get_every_change_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(&tmp.path().join("engine"), &[]);
    let c = client();
    let url = |p: &str| format!("{}{p}", server.base);
    c.post(url("/v1/sessions"))
        .json(&json!({"id": "carol"}))
        .send()
        .expect("create");
    let ws_url = format!(
        "{}/v1/ws?session=carol",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut subscribers: Vec<_> = (0..2)
        .map(|_| tungstenite::connect(ws_url.as_str()).expect("subscribe").0)
        .collect();
    let initial: Value = get_json(&url("/v1/sessions/carol"));
    let mut acks = vec![initial];
    for k in 0..50 {
        let body = json!({"warmth": (k % 5) as f64 / 5.0, "threat": (k % 2) as f64 / 2.0});
        acks.push(post_event(&c, &server.base, "carol", &body));
    }
    let reset: Value = c
        .post(url("/v1/sessions/carol/reset"))
        .send()
        .expect("reset")
        .json()
        .expect("json");
    acks.push(reset);
    for (n, ws) in subscribers.iter_mut().enumerate() {
        for (i, want) in acks.iter().enumerate() {
            let msg = ws.read().expect("message");
            let got: Value = serde_json::from_str(msg.to_text().expect("text")).expect("json");
            assert_eq!(&got, want, "subscriber {n}, message {i}");
        }
    }
    for mut ws in subscribers {
        let _ = ws.close(None);
    }
    let missing = format!(
        "{}/v1/ws?session=nobody",
        server.base.replacen("http://", "ws://", 1)
    );
    match tungstenite::connect(missing.as_str()) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|(_, r)| r.status())),
    }
}

/// The MCP tools through the SDK's own client: list them, call both, check
/// the state changed as the dynamics say, and that bad calls (a value out of
/// range, an unknown session, an unknown tool) are errors that change
/// nothing. `check` runs against any connected client.
async fn check_mcp_tools<S: rmcp::service::Service<rmcp::RoleClient>>(
    client: &rmcp::service::RunningService<rmcp::RoleClient, S>,
) {
    use rmcp::model::CallToolRequestParams;
    let call = |name: &'static str, args: Value| {
        CallToolRequestParams::new(name).with_arguments(args.as_object().cloned().expect("object"))
    };
    let text = |r: rmcp::model::CallToolResult| -> Value {
        let t = r.content[0].as_text().expect("text content").text.clone();
        serde_json::from_str(&t).expect("json state")
    };
    let tools = client.list_all_tools().await.expect("list tools");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["get_emotional_state", "update_emotion"]);
    let before = text(
        client
            .call_tool(call("get_emotional_state", json!({})))
            .await
            .expect("get"),
    );
    assert_eq!(before["id"], "default");
    let cfg = NeuroConfig::default();
    let mut want = Neurochemistry::new(levels(&before)).expect("levels");
    let after = text(
        client
            .call_tool(call(
                "update_emotion",
                json!({"threat": 0.8, "warmth": 0.1, "dt": 2.0}),
            ))
            .await
            .expect("update"),
    );
    want.step(
        &cfg,
        &Stimulus {
            threat: 0.8,
            warmth: 0.1,
            ..Default::default()
        },
        2.0,
    );
    assert_eq!(levels(&after), want.levels);
    assert_eq!(after["updates"], before["updates"].as_u64().expect("n") + 1);
    for (name, args) in [
        ("update_emotion", json!({"threat": 3.0})),
        ("update_emotion", json!({"feedback": -1.5})),
        ("update_emotion", json!({"dt": -1.0})),
        (
            "update_emotion",
            json!({"session": "nobody", "threat": 0.1}),
        ),
        ("update_emotion", json!({"mood": 1})),
        ("get_emotional_state", json!({"session": "nobody"})),
        ("no_such_tool", json!({})),
    ] {
        let r = client.call_tool(call(name, args.clone())).await;
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|r| r.is_error == Some(true)),
            "{name} {args} should fail: {r:?}"
        );
    }
    let now = text(
        client
            .call_tool(call("get_emotional_state", json!({"session": "default"})))
            .await
            .expect("get"),
    );
    assert_eq!(now, after, "a bad call changed the state");
}

#[tokio::test]
async fn mcp_over_stdio_with_the_sdk_client() {
    use rmcp::ServiceExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("engine");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_emorl"));
    cmd.args(["mcp", "--out"]).arg(&out).stderr(Stdio::null());
    let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawn emorl mcp");
    let client = ().serve(transport).await.expect("initialise");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("emorl")
    );
    check_mcp_tools(&client).await;
    client.cancel().await.expect("close");
    // What the tools did is stored where `emorl serve --out` reads it.
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("sessions/default.json")).expect("stored session"),
    )
    .expect("json");
    assert_eq!(stored["updates"], 1);
}

#[tokio::test]
async fn mcp_over_streamable_http_shares_the_rest_sessions() {
    use rmcp::ServiceExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let server = start(&tmp.path().join("engine"), &[]);
    let transport =
        rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base));
    let client = ().serve(transport).await.expect("initialise");
    check_mcp_tools(&client).await;
    client.cancel().await.expect("close");
    // The REST API sees what the MCP tools did.
    let base = server.base.clone();
    let state: Value =
        tokio::task::spawn_blocking(move || get_json(&format!("{base}/v1/sessions/default")))
            .await
            .expect("join");
    assert_eq!(state["updates"], 1);
}

/// GET `url` with a fresh client; the JSON answer.
fn get_json(url: &str) -> Value {
    client().get(url).send().expect("get").json().expect("json")
}

fn stories() -> String {
    common::root()
        .join("../shared/models/stories260k-f32.gguf")
        .display()
        .to_string()
}

fn reply(c: &Client, base: &str, session: &str, body: &Value) -> Value {
    post_ok(c, &format!("{base}/v1/sessions/{session}/generate"), body)
}

/// Replies: concurrent requests share a batch and each equals the reply it
/// gets alone (per-row seeds); the temperature and conditioning tokens are
/// the session's; a remembered moment biases the state of a reply to a
/// similar message; bad requests get their 4xx and change nothing; a
/// server without a model answers 503.
#[test]
fn replies_are_batched_seeded_and_biased_by_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("engine");
    let model = stories();
    let server = start(
        &out,
        &[
            "--model",
            &model,
            "--batch-wait-ms",
            "400",
            "--threads",
            "1",
        ],
    );
    let (c, base) = (client(), server.base.clone());
    let health: Value = get_json(&format!("{base}/v1/health"));
    assert!(
        health["speaker"]
            .as_str()
            .is_some_and(|s| s.contains("stories260k")),
        "{health}"
    );

    // Four at once: batched, each with its own seed.
    let bodies: Vec<Value> = (0..4)
        .map(|i| json!({"message": "Tom went to the park", "max_tokens": 12, "seed": 100 + i}))
        .collect();
    let batched: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| {
                let (c, base) = (&c, &base);
                s.spawn(move || reply(c, base, "default", b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let largest = batched
        .iter()
        .filter_map(|r| r["batch"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(largest >= 2, "no batching: {batched:?}");
    let texts: Vec<&str> = batched
        .iter()
        .map(|r| r["reply"].as_str().unwrap_or(""))
        .collect();
    assert!(
        texts.iter().any(|t| *t != texts[0]),
        "seeds gave one text: {texts:?}"
    );
    let cfg = NeuroConfig::default();
    let base_state = Neurochemistry::at_baseline(&cfg);
    for (b, r) in bodies.iter().zip(&batched) {
        assert!(
            r["new_tokens"]
                .as_u64()
                .is_some_and(|n| (1..=12).contains(&n)),
            "{r}"
        );
        assert_eq!(
            r["temperature"].as_f64(),
            Some(base_state.temperature(&cfg))
        );
        assert_eq!(r["tokens"].as_str(), Some(base_state.tokens().as_str()));
        let alone = reply(&c, &base, "default", b);
        assert_eq!(alone["batch"], 1);
        assert_eq!(alone["reply"], r["reply"], "seed {}", b["seed"]);
    }

    // A remembered moment: a threatening event about a text, then back to
    // baseline; a reply to the same text is given in a state biased toward
    // the remembered one, a reply to another text is not.
    let scared = post_event(
        &c,
        &base,
        "default",
        &json!({"threat": 1.0, "feedback": -1.0, "dt": 3, "text": "The big dog bit Tom"}),
    );
    post_event(
        &c,
        &base,
        "default",
        &json!({"warmth": 1.0, "feedback": 1.0, "dt": 3, "text": "Lily gave Tom a cake"}),
    );
    let memory: Value = get_json(&format!("{base}/v1/sessions/default/memory"));
    assert_eq!(
        memory["episodes"].as_array().map(Vec::len),
        Some(2),
        "{memory}"
    );
    assert_eq!(memory["episodes"][0]["levels"], scared["levels"]);
    assert_eq!(memory["episodes"][0]["outcome"], -1.0);
    let r = c
        .post(format!("{base}/v1/sessions/default/reset"))
        .send()
        .expect("reset");
    assert_eq!(r.status(), StatusCode::OK);
    let r = reply(
        &c,
        &base,
        "default",
        &json!({"message": "The big dog bit Tom", "max_tokens": 4}),
    );
    assert_eq!(r["recall"]["matches"][0][0], 0, "{r}");
    assert!(
        r["recall"]["matches"][0][1]
            .as_f64()
            .is_some_and(|s| s > 0.99),
        "{r}"
    );
    let biased = levels(&r);
    assert!(
        biased[2] > base_state.cortisol() + 0.1,
        "cortisol {biased:?}"
    );
    assert!(biased[3] < base_state.oxytocin(), "oxytocin {biased:?}");
    let r = reply(
        &c,
        &base,
        "default",
        &json!({"message": "Lily gave Tom a cake", "max_tokens": 4}),
    );
    assert_eq!(r["recall"]["matches"][0][0], 1, "{r}");
    assert!(levels(&r)[3] > base_state.oxytocin(), "{r}");

    // Bad requests: their status, and nothing changed.
    let before: Value = get_json(&format!("{base}/v1/sessions/default"));
    let long = "x".repeat(5000);
    for (path, body, status) in [
        ("default/generate", json!({"message": ""}), 422),
        (
            "default/generate",
            json!({"message": "hi", "max_tokens": 0}),
            422,
        ),
        (
            "default/generate",
            json!({"message": "hi", "max_tokens": 100000}),
            422,
        ),
        (
            "default/generate",
            json!({"message": "hi", "temperature": 2}),
            422,
        ),
        ("default/generate", json!({"message": long}), 422),
        ("nobody/generate", json!({"message": "hi"}), 404),
        ("default/events", json!({"threat": 0.5, "text": "  "}), 422),
        ("nobody/events", json!({"threat": 0.5, "text": "hi"}), 404),
        // The prompt is short, but with 500 new tokens it exceeds stories260K's context.
        (
            "default/generate",
            json!({"message": "hi", "max_tokens": 500}),
            422,
        ),
    ] {
        let r = c
            .post(format!("{base}/v1/sessions/{path}"))
            .json(&body)
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), status, "{path} {body}");
        let e: Value = r.json().expect("json error");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let after: Value = get_json(&format!("{base}/v1/sessions/default"));
    assert_eq!(before, after);
    let memory: Value = get_json(&format!("{base}/v1/sessions/default/memory"));
    assert_eq!(memory["stored"], 2);
    drop(server);

    // Restarted without a model: the memory is still there, replies are 503.
    let server = start(&out, &[]);
    let memory: Value = get_json(&format!("{}/v1/sessions/default/memory", server.base));
    assert_eq!(memory["stored"], 2);
    for (path, body) in [
        ("generate", json!({"message": "hi"})),
        ("events", json!({"threat": 0.1, "text": "hi"})),
    ] {
        let r = c
            .post(format!("{}/v1/sessions/default/{path}", server.base))
            .json(&body)
            .send()
            .expect("request");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
}
