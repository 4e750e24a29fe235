//! Load on `emorl serve`, loopback only, bounded in count and time:
//! `SESSIONS` sessions, each with one WebSocket subscriber, each driven by
//! its own client thread posting `UPDATES` events one after another.
//! Reports throughput and the p50 / p99 latency of an acknowledged update,
//! and checks that every subscriber received every update of its session
//! exactly once and in order.
//!
//!   cargo bench --bench serve_load [-- SESSIONS UPDATES]

use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sessions = args.first().copied().unwrap_or(16).clamp(1, 256);
    let updates = args.get(1).copied().unwrap_or(200).clamp(1, 10_000);
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_emorl"))
        .args(["serve", "--port", "0", "--out"])
        .arg(dir.path().join("engine"))
        .arg("--engine-only")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emorl serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let base = line.trim().trim_start_matches("listening on ").to_string();
    let ws_base = base.replacen("http://", "ws://", 1);
    let client = || {
        Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    };
    let c = client();
    for s in 0..sessions {
        let r = c
            .post(format!("{base}/v1/sessions"))
            .json(&json!({ "id": format!("load{s}") }))
            .send()
            .expect("create");
        assert!(r.status().is_success(), "create: {}", r.status());
    }
    // Subscribers first, so that they see every update.
    let subscribers: Vec<_> = (0..sessions)
        .map(|s| {
            let url = format!("{ws_base}/v1/ws?session=load{s}");
            let (mut ws, _) = tungstenite::connect(url.as_str()).expect("subscribe");
            std::thread::spawn(move || {
                let mut expected = 0u64;
                for _ in 0..=updates {
                    let msg = ws.read().expect("message");
                    let v: Value =
                        serde_json::from_str(msg.to_text().expect("text")).expect("json");
                    let n = v["updates"].as_u64().expect("updates");
                    assert_eq!(n, expected, "session load{s}: out of order or lost");
                    expected += 1;
                }
                expected - 1
            })
        })
        .collect();
    let start = Instant::now();
    let writers: Vec<_> = (0..sessions)
        .map(|s| {
            let base = base.clone();
            let c = client();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(updates);
                for k in 0..updates {
                    let t = Instant::now();
                    let r = c
                        .post(format!("{base}/v1/sessions/load{s}/events"))
                        .json(&json!({ "feedback": ((k % 9) as f64 - 4.0) / 4.0, "threat": 0.3 }))
                        .send()
                        .expect("event");
                    assert!(r.status().is_success(), "event: {}", r.status());
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                lat
            })
        })
        .collect();
    let mut latencies: Vec<f64> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    let wall = start.elapsed().as_secs_f64();
    let delivered: u64 = subscribers
        .into_iter()
        .map(|s| s.join().expect("subscriber"))
        .sum();
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let total = sessions * updates;
    println!("serve_load: {sessions} sessions x {updates} updates, one subscriber each");
    println!(
        "  {total} acknowledged updates in {wall:.2} s = {:.0} updates/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total as f64 / wall,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    println!(
        "  subscribers received {delivered} of {total} updates, each session's in order, none lost"
    );
    assert_eq!(delivered as usize, total);
}
