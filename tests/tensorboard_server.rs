//! TensorBoard as users see it: a real `tensorboard` server (the one
//! scripts/test.sh installs) on 127.0.0.1 reads the run directories of a
//! training run and of the reproductions, and its HTTP data API must list
//! every kind of tag emorl promises — scalars, histograms, text and hparams
//! — under the plugin that shows it. (Reading the files with
//! `EventAccumulator` cannot catch a tag that the server files under one
//! plugin only: a tag written both as a scalar and as a histogram shows up
//! as one of them.)

mod common;

use common::{python, run, stderr};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server, killed when dropped (so a failing test stops it too).
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts TensorBoard on a free loopback port over `logdir` (port 0: it
/// picks one and prints it).
fn start(logdir: &Path) -> Server {
    let mut child = Command::new(python())
        .args(["-m", "tensorboard.main", "--logdir"])
        .arg(logdir)
        .args(["--host", "127.0.0.1", "--port", "0", "--load_fast=false"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tensorboard (scripts/test.sh installs it in the venv)");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("tensorboard did not print its address within 120 s");
    Server { child, addr }
}

/// One HTTP/1.0 request to the server; the JSON body of a 200 answer.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect to tensorboard");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read answer");
    let (head, json) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{method} {path}: {head}"
    );
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {json}"))
}

fn get(addr: &str, path: &str) -> Value {
    request(addr, "GET", path, None)
}

/// Tags of `run` under `plugin`'s `tags` route (scalars and histograms
/// answer `{run: {tag: …}}`, text `{run: [tag, …]}`).
fn tags(addr: &str, plugin: &str, run: &str) -> Vec<String> {
    let all = get(addr, &format!("/data/plugin/{plugin}/tags"));
    match &all[run] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn assert_has(what: &str, have: &[String], want: &[&str]) {
    for w in want {
        assert!(have.iter().any(|h| h == w), "{what}: no `{w}` in {have:?}");
    }
}

#[test]
fn a_real_tensorboard_server_shows_every_kind_of_tag() {
    let tmp = tempfile::tempdir().expect("tmp");
    let logdir = tmp.path();
    let out = |name: &str| logdir.join(name).display().to_string();
    for args in [
        vec![
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "emotional-ed",
            "--episodes",
            "20",
            "--out",
            &out("train-tabular"),
        ],
        vec![
            "train",
            "--env",
            "gridworld",
            "--agent",
            "fear-dqn",
            "--episodes",
            "3",
            "--out",
            &out("train-dqn"),
        ],
        vec![
            "reproduce",
            "v2-tabular",
            "--seeds",
            "4",
            "--permutations",
            "20",
            "--out",
            &out("reproduce-v2"),
        ],
        vec![
            "reproduce",
            "v2-dqn",
            "--seeds",
            "2",
            "--episodes",
            "3",
            "--permutations",
            "20",
            "--out",
            &out("reproduce-dqn"),
        ],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let server = start(logdir);
    let addr = server.addr.clone();
    // The server loads in the background: wait until every run is listed.
    let wanted = [
        "train-tabular",
        "train-dqn",
        "reproduce-v2",
        "reproduce-dqn",
    ];
    let start = Instant::now();
    loop {
        let runs = get(&addr, "/data/runs");
        let listed: Vec<&str> = runs
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if wanted.iter().all(|w| listed.contains(w)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "runs listed after 120 s: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each run is read whole before its tags are answered? Not guaranteed:
    // ask until the last kind (text, written last) appears.
    let settle = |run: &str, plugin: &str, tag: &str| {
        let t0 = Instant::now();
        while !tags(&addr, plugin, run).iter().any(|t| t == tag) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{run}: `{tag}` never appeared under {plugin}: {:?}",
                tags(&addr, plugin, run)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    settle("train-tabular", "text", "hyperparameters");
    settle("reproduce-v2", "text", "table");

    // A training run: scalars, histograms, the config as text, hparams.
    let run = "train-tabular";
    assert_has(
        "tabular scalars",
        &tags(&addr, "scalars", run),
        &[
            "charts/episodic_return",
            "emotion/fear",
            "emotion/fear_tonic",
        ],
    );
    assert_has(
        "tabular histograms",
        &tags(&addr, "histograms", run),
        &["histograms/q_values", "histograms/emotion/fear"],
    );
    assert_has(
        "tabular text",
        &tags(&addr, "text", run),
        &["hyperparameters"],
    );
    settle("train-dqn", "histograms", "histograms/q_values");
    assert_has(
        "dqn scalars",
        &tags(&addr, "scalars", "train-dqn"),
        &["charts/episodic_return", "emotion/fear"],
    );
    let experiment = request(
        &addr,
        "POST",
        "/data/plugin/hparams/experiment",
        Some(r#"{"experimentName": ""}"#),
    );
    let hparams: Vec<String> = experiment["hparamInfos"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_has("hparams", &hparams, &["agent", "env", "seed"]);

    // The V2 reproduction: per-seed scalars, their histograms, the table.
    assert_has(
        "v2 scalars",
        &tags(&addr, "scalars", "reproduce-v2"),
        &["fear/control", "fear/treatment"],
    );
    assert_has(
        "v2 histograms",
        &tags(&addr, "histograms", "reproduce-v2"),
        &["histograms/fear/control", "histograms/fear/treatment"],
    );
    assert_has("v2 text", &tags(&addr, "text", "reproduce-v2"), &["table"]);
    // The DQN reproduction: learning curves and the table.
    settle("reproduce-dqn", "text", "table");
    assert!(
        !tags(&addr, "scalars", "reproduce-dqn").is_empty(),
        "the v2-dqn reproduction shows no scalars"
    );
    drop(server);
}
