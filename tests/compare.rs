//! `/v1/compare` and the compare page against a real `emorl serve` on
//! loopback (stories260K): over REST, both replies judged by the
//! independent judge, alignments equal to `emo_alignment` of the returned
//! scores, one log line per answered turn and none for a bad request; in a
//! real headless Chromium (WebDriver), two turns typed and answered on the
//! page at `/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{run, start_server, start_server_with, stderr};
use emorl_agents_llm::eval::{emo_alignment, JUDGE_LABELS};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn stories() -> String {
    common::root()
        .join("../shared/models/stories260k-f32.gguf")
        .display()
        .to_string()
}

/// The first lines of each GoEmotions split in `dir` (enough for a judge
/// that scores; how well it scores is `emorl reproduce llm-modules`' job).
fn small_goemotions(dir: &Path) -> PathBuf {
    let from = common::root().join("../shared/data/goemotions");
    std::fs::create_dir_all(dir).expect("mkdir");
    for (file, lines) in [("train.tsv", 4000), ("dev.tsv", 800), ("test.tsv", 800)] {
        let text = std::fs::read_to_string(from.join(file)).expect(file);
        let head: Vec<&str> = text.lines().take(lines).collect();
        std::fs::write(dir.join(file), head.join("\n") + "\n").expect(file);
    }
    std::fs::copy(from.join("labels.txt"), dir.join("labels.txt")).expect("labels");
    dir.to_path_buf()
}

/// An llm-erm agent trained for one short update on stories260K.
fn trained_checkpoint(tmp: &Path) -> PathBuf {
    let out = tmp.join("train");
    let model = stories();
    let o = run(&[
        "train",
        "--env",
        "dialogue",
        "--agent",
        "llm-erm",
        "--model",
        &model,
        "--episodes",
        "1",
        "--seed",
        "3",
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.threads=1",
        "agent_config.eval_episodes=1",
        "agent_config.erm_pretrain_steps=2",
        "agent_config.rl.prompts_per_update=2",
        "agent_config.rl.samples_per_prompt=2",
        "agent_config.agent.max_new_tokens=6",
        "agent_config.erm_text.epochs=1",
        "agent_config.erm_text.per_class=10",
        "agent_config.erm_text.test_per_class=5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    out.join("checkpoints/agent")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(300))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("client")
}

fn post(c: &Client, base: &str, body: &Value) -> (StatusCode, Value) {
    let r = c
        .post(format!("{base}/v1/compare"))
        .json(body)
        .send()
        .expect("post");
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

fn log_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A side's judge scores in label order; they must cover exactly the
/// judge's labels and sum to 1.
fn scores(side: &Value) -> Vec<f64> {
    let e = side["emotions"].as_object().expect("emotions");
    assert_eq!(e.len(), JUDGE_LABELS.len(), "{side}");
    let p: Vec<f64> = JUDGE_LABELS
        .iter()
        .map(|l| e[*l].as_f64().unwrap_or_else(|| panic!("{l} in {side}")))
        .collect();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
    assert!(p.iter().all(|x| (0.0..=1.0).contains(x)), "{p:?}");
    p
}

fn index(label: &str) -> usize {
    JUDGE_LABELS
        .iter()
        .position(|&l| l == label)
        .expect("a judge label")
}

/// Both sides answered, judged, aligned as `emo_alignment` of their own
/// scores (null without a target); returns the emotional side's scores.
fn check_turn(v: &Value, turn: u64, target: Option<&str>) -> Vec<f64> {
    assert_eq!(v["turn"], turn, "{v}");
    for side in ["base", "emotional"] {
        let s = &v[side];
        assert!(
            s["reply"].as_str().is_some_and(|r| !r.trim().is_empty()),
            "{side}: {v}"
        );
        let p = scores(s);
        match target {
            Some(t) => {
                let a = s["alignment"].as_f64().expect("alignment");
                assert!((a - emo_alignment(&p, index(t))).abs() < 1e-9, "{v}");
            }
            None => assert!(s["alignment"].is_null(), "{v}"),
        }
    }
    scores(&v["emotional"])
}

/// REST over loopback with a trained agent: two turns (the second answers a
/// history holding the first reply), the forced state, the EMA over the
/// turns, same seed same replies, a log line per answered turn, bad
/// requests refused with nothing logged; a server without judge data
/// answers 503 on /v1/compare only.
#[test]
fn compare_rest_judges_both_replies_and_logs_every_turn() {
    let tmp = tempfile::tempdir().expect("tmp");
    let checkpoint = trained_checkpoint(tmp.path());
    let goemotions = small_goemotions(&tmp.path().join("goemotions"));
    let out = tmp.path().join("serve");
    let model = stories();
    let server = start_server(
        &out,
        &[
            "--model",
            &model,
            "--checkpoint",
            checkpoint.to_str().expect("utf8"),
            "--goemotions",
            goemotions.to_str().expect("utf8"),
            "--threads",
            "1",
        ],
    );
    let (c, base) = (client(), server.base.clone());
    let log = out.join("compare.jsonl");

    let info: Value = c
        .get(format!("{base}/v1/compare/info"))
        .send()
        .expect("info")
        .json()
        .expect("json");
    assert_eq!(info["emotions"], json!(JUDGE_LABELS), "{info}");
    assert!(
        info["emotional"]
            .as_str()
            .is_some_and(|s| s.contains("llm-erm")),
        "{info}"
    );
    assert!(
        info["base"]
            .as_str()
            .is_some_and(|s| s.contains("stories260k")),
        "{info}"
    );

    let first = json!({
        "history": [{"role": "user", "content": "Hello! How was your day?"}],
        "target": "joy",
        "seed": 7,
        "max_tokens": 12,
    });
    let (status, v1) = post(&c, &base, &first);
    assert_eq!(status, StatusCode::OK, "{v1}");
    let emo1 = check_turn(&v1, 1, Some("joy"));
    assert_eq!(v1["target"], "joy");
    assert_eq!(v1["log"], log.display().to_string());
    // The forced state: joy at 1, the other three at 0.
    let state = &v1["emotional"]["state"];
    for (name, want) in [
        ("fear", 0.0),
        ("curiosity", 0.0),
        ("anger", 0.0),
        ("joy", 1.0),
    ] {
        assert_eq!(state[name].as_f64(), Some(want), "{state}");
    }
    // One emotional turn: the EMA is that turn.
    let ema1: Vec<f64> = JUDGE_LABELS
        .iter()
        .map(|l| v1["emotional"]["emotion_ema"][*l].as_f64().expect("ema"))
        .collect();
    assert_eq!(ema1, emo1);
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["turn"], 1);
    assert_eq!(lines[0]["user"], "Hello! How was your day?");
    assert_eq!(lines[0]["emotional"]["reply"], v1["emotional"]["reply"]);

    // The same request and seed: the same replies (and another line).
    let (_, again) = post(&c, &base, &first);
    assert_eq!(again["base"]["reply"], v1["base"]["reply"]);
    assert_eq!(again["emotional"]["reply"], v1["emotional"]["reply"]);
    assert_eq!(log_lines(&log).len(), 2);

    // Turn two, no target: the agent's own emotion source; the EMA mixes
    // this reply's scores with those of the first emotional reply.
    let second = json!({
        "history": [
            {"role": "user", "content": "Hello! How was your day?"},
            {"role": "assistant", "content": v1["emotional"]["reply"]},
            {"role": "user", "content": "Tell me about the park."},
        ],
        "max_tokens": 12,
    });
    let (status, v2) = post(&c, &base, &second);
    assert_eq!(status, StatusCode::OK, "{v2}");
    let emo2 = check_turn(&v2, 2, None);
    assert!(v2["target"].is_null());
    let state = v2["emotional"]["state"].as_object().expect("state");
    for name in emorl_agents_llm::modules::emotion::CONDITIONING_NAMES {
        assert!(state[name].as_f64().is_some(), "{name}: {state:?}");
    }
    for (i, l) in JUDGE_LABELS.iter().enumerate() {
        let got = v2["emotional"]["emotion_ema"][*l].as_f64().expect("ema");
        let want = 0.5 * emo2[i] + 0.5 * emo1[i];
        assert!((got - want).abs() < 1e-9, "{l}: {got} vs {want}");
    }
    assert_eq!(log_lines(&log).len(), 3);

    // Bad requests: refused with one line, nothing logged.
    let user = |t: &str| json!({"role": "user", "content": t});
    let long = "a".repeat(4001);
    let many: Vec<Value> = (0..65)
        .map(|i| {
            if i % 2 == 0 {
                user("hi")
            } else {
                json!({"role": "assistant", "content": "hello"})
            }
        })
        .collect();
    let bad = [
        json!({"history": []}),
        json!({"history": [user("hi"), {"role": "assistant", "content": "hello"}]}),
        json!({"history": [{"role": "system", "content": "be nice"}, user("hi")]}),
        json!({"history": [user(&long)]}),
        json!({"history": [user("   ")]}),
        json!({"history": many}),
        json!({"history": [user("hi")], "target": "surprise"}),
        json!({"history": [user("hi")], "target": "bliss"}),
        json!({"history": [user("hi")], "max_tokens": 0}),
        json!({"history": [user("hi")], "mood": "joy"}),
        json!({"history": [{"role": "user"}]}),
        json!({"messages": [user("hi")]}),
    ];
    for body in &bad {
        let (status, v) = post(&c, &base, body);
        assert!(status.is_client_error(), "{status} for {body}: {v}");
        let e = v["error"].as_str().unwrap_or_else(|| panic!("{body}: {v}"));
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    let r = c
        .post(format!("{base}/v1/compare"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(log_lines(&log).len(), 3, "a refused request was logged");

    // The page is served from the binary.
    let r = c.get(format!("{base}/")).send().expect("page");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().ok(),
        Some("text/html; charset=utf-8")
    );
    assert!(r.text().expect("text").contains("id=\"send\""));
    drop(server);

    // No judge data: /v1/compare answers 503 with one line, the rest serves.
    let empty = tmp.path().join("no-goemotions");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = tmp.path().join("serve-no-judge");
    let server = start_server_with(
        &out,
        &["--model", &model, "--threads", "1"],
        &[("EMORL_GOEMOTIONS_DIR", &empty)],
    );
    let (status, v) = post(&c, &server.base, &first);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("judge")),
        "{v}"
    );
    let health = c
        .get(format!("{}/v1/health", server.base))
        .send()
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!out.join("compare.jsonl").exists());
}

fn js(b: &browser::Browser, code: &str) -> Value {
    b.execute(code, vec![]).expect("script")
}

/// Turn `n` is on the page with both replies and the send button is back.
fn turn_done(b: &browser::Browser, send: &browser::ElementId, n: usize) -> Result<bool, String> {
    let turns = b.find_all(".turn")?;
    if turns.len() < n {
        return Ok(false);
    }
    let last = &turns[n - 1];
    Ok(!b.text(&b.find_in(last, ".base .reply-text")?)?.is_empty()
        && !b
            .text(&b.find_in(last, ".emotional .reply-text")?)?
            .is_empty()
        && b.is_enabled(send)?)
}

/// Whether process `pid` still exists.
fn alive(pid: u32) -> bool {
    // Signal 0 checks existence only.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The page at `/` in a real headless Chromium against `emorl serve` with
/// the frozen model (the emotional side told its state): a target chosen,
/// two turns typed and sent, both replies and alignments shown per turn;
/// a screenshot written (to docs/img/compare.png with
/// EMORL_WRITE_SCREENSHOT=1). Leaves no browser, driver or server behind.
#[test]
fn compare_page_in_headless_chromium() {
    let Some(b) = browser::start_or_skip() else {
        return;
    };
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let goemotions = small_goemotions(&tmp.path().join("goemotions"));
    let model = stories();
    let server = start_server(
        &tmp.path().join("serve"),
        &[
            "--model",
            &model,
            "--goemotions",
            goemotions.to_str().expect("utf8"),
            "--threads",
            "1",
        ],
    );
    let server_pid = server.child.id();
    let driver_pid = b.driver_pid();
    b.set_window_size(1280, 900).expect("window");
    b.navigate(&format!("{}/", server.base)).expect("navigate");
    b.wait_until(Duration::from_secs(20), || {
        Ok(js(
            &b,
            "return !document.getElementById('target-wrap').hidden && document.querySelectorAll('#target option').length",
        )
        .as_u64()
            == Some(1 + JUDGE_LABELS.len() as u64))
    })
    .expect("the targets from /v1/compare/info");
    js(
        &b,
        "const s = document.getElementById('target'); s.value = 'joy'; s.dispatchEvent(new Event('change')); return null",
    );

    let msg = b.find("#message").expect("#message");
    let send = b.find("#send").expect("#send");
    b.send_keys(&msg, "Hi! I passed my exam today.")
        .expect("type");
    b.click(&send).expect("click");
    // The first request trains the judge.
    b.wait_until(Duration::from_secs(300), || turn_done(&b, &send, 1))
        .expect("turn 1");
    let turns = b.find_all(".turn").expect("turns");
    assert_eq!(turns.len(), 1);
    for side in ["base", "emotional"] {
        let a = b
            .text(
                &b.find_in(&turns[0], &format!(".{side} .alignment"))
                    .expect("alignment"),
            )
            .expect("text");
        let x: f64 = a
            .parse()
            .unwrap_or_else(|_| panic!("{side} alignment {a:?}"));
        assert!((0.0..=1.0).contains(&x), "{a}");
        let bars = b
            .find_all_in(&turns[0], &format!(".{side} .emotions .bar"))
            .expect("bars");
        assert_eq!(bars.len(), JUDGE_LABELS.len());
    }
    let state = b
        .find_all_in(&turns[0], ".emotional .state .bar")
        .expect("state");
    assert_eq!(state.len(), 4);

    b.send_keys(&msg, "What should I do to celebrate?\u{E007}")
        .expect("type and Enter");
    b.wait_until(Duration::from_secs(120), || turn_done(&b, &send, 2))
        .expect("turn 2");
    assert_eq!(b.find_all(".turn").expect("turns").len(), 2);
    assert_eq!(b.find_all("#history .hist-cell").expect("cells").len(), 2);
    let errors = b.console_errors().expect("console");
    assert!(errors.is_empty(), "{errors:?}");

    js(&b, "window.scrollTo(0, 0); return null");
    let png = b.screenshot_png().expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    let path = if std::env::var("EMORL_WRITE_SCREENSHOT").as_deref() == Ok("1") {
        common::root().join("docs/img/compare.png")
    } else {
        tmp.path().join("compare.png")
    };
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, &png).expect("write the screenshot");
    eprintln!(
        "{} answered two turns in {:.1}s; screenshot {}",
        b.version,
        t0.elapsed().as_secs_f64(),
        path.display()
    );

    drop(b);
    drop(server);
    assert!(!alive(driver_pid), "chromedriver {driver_pid} left running");
    assert!(!alive(server_pid), "emorl serve {server_pid} left running");
}
