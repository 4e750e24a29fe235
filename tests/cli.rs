//! The command line as a user meets it: listings, training runs that real
//! TensorBoard reads, and clear one-line errors on bad input.

mod common;
use common::*;

#[test]
fn binary_finds_libtorch_without_ld_library_path() {
    let o = run(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sum([1,2,3]) = 6"), "{}", stdout(&o));
}

/// `emorl` runs listing, tabular training and the tabular tables itself and
/// hands every other command, same arguments, to `emorl-torch` beside it.
/// The installed build (`target/dist`, thin LTO, which the set-up makes
/// before the tests run) loads no libtorch for the former, and does for the
/// latter (the dynamic loader's own report, `LD_DEBUG=libs`).
#[test]
fn light_commands_run_without_libtorch_and_the_rest_are_handed_over() {
    let torch = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_emorl-torch"));
        c.env_remove("LD_LIBRARY_PATH");
        c
    };
    for args in [&["envs"][..], &["agents"], &["tables"]] {
        let light = run(args);
        let full = torch().args(args).output().expect("emorl-torch");
        assert!(light.status.success() && full.status.success());
        assert_eq!(stdout(&light), stdout(&full), "{args:?}");
    }
    let dist_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), std::path::PathBuf::from)
        .join("dist");
    let dist = dist_dir.join("emorl");
    if !dist.exists() || !dist_dir.join("emorl-torch").exists() {
        eprintln!(
            "skipped the installed-build half: {} is missing (scripts/setup.sh builds it)",
            dist.display()
        );
        return;
    }
    let loads = |args: &[&str]| {
        let o = std::process::Command::new(&dist)
            .args(args)
            .env("LD_DEBUG", "libs")
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("dist emorl");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        (stdout(&o), stderr(&o).contains("libtorch_cpu.so"))
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("t");
    for args in [
        vec!["envs"],
        vec!["agents"],
        vec![
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "q-learning",
            "--episodes",
            "3",
            "--out",
            out.to_str().expect("utf8"),
        ],
    ] {
        let (_, torch_loaded) = loads(&args);
        assert!(!torch_loaded, "{args:?} loaded libtorch");
    }
    let (info, torch_loaded) = loads(&["info"]);
    assert!(torch_loaded && info.contains("sum([1,2,3]) = 6"), "{info}");
}

#[test]
fn listings_show_registered_ids() {
    let envs = stdout(&run(&["envs"]));
    for id in [
        "v2-threat-grid",
        "v2-blocked-path",
        "v2-two-door",
        "v2-integration",
        "v2-transfer-novel",
    ] {
        assert!(envs.contains(id), "{id} missing from:\n{envs}");
    }
    let agents = stdout(&run(&["agents"]));
    for id in [
        "q-learning",
        "emotional-ed",
        "frustration-ed",
        "regret-ed",
        "anger-dominant",
    ] {
        assert!(agents.contains(id), "{id} missing from:\n{agents}");
    }
    // Each agent says where it trains, as `train` decides it.
    let trains_in = |id: &str| -> String {
        let mut lines = agents.lines();
        lines
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} missing"));
        lines.next().expect("trains-in line").trim().to_string()
    };
    assert_eq!(trains_in("q-learning"), "trains in: every discrete env");
    assert_eq!(trains_in("fear-dqn"), "trains in: every discrete env");
    assert_eq!(trains_in("llm-erm"), "trains in: dialogue");
    assert_eq!(trains_in("oracle"), "trains in: dialogue");
    // The reproducible tables, each with the defaults `reproduce` uses.
    let tables = stdout(&run(&["tables"]));
    for (id, defaults) in [
        ("v2-tabular", "default: 50 seeds, rng numpy"),
        ("v2-dqn", "default: 30 seeds, rng fast"),
        ("v3", "default: 50 seeds, rng numpy"),
        ("v3-audit", "default: 50 seeds x 4 blocks, rng numpy"),
        ("llm-modules", "default: 64 seeds, rng fast"),
    ] {
        let mut lines = tables.lines();
        lines
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} missing from:\n{tables}"));
        assert_eq!(lines.next().map(str::trim), Some(defaults), "{tables}");
    }
}

#[test]
fn help_has_examples() {
    let o = run(&["train", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Examples:"));
}

#[test]
fn train_writes_a_run_that_tensorboard_reads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let o = run(&[
        "train",
        "--env",
        "v2-threat-grid",
        "--agent",
        "emotional-ed",
        "--episodes",
        "60",
        "--seed",
        "3",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["config.toml", "metrics.jsonl", "checkpoints/q_table.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let config = std::fs::read_to_string(out.join("config.toml")).expect("config");
    assert!(config.contains("agent = \"emotional-ed\""), "{config}");
    assert!(
        config.contains("safe_distance = 3.0"),
        "resolved agent config:\n{config}"
    );

    let tb = tensorboard_read(&out);
    let returns = tb["scalars"]["charts/episodic_return"]
        .as_array()
        .expect("returns");
    assert_eq!(returns.len(), 60);
    assert_eq!(returns[0][0], 0);
    // Fear and anger channel values are logged as scalars and histograms.
    assert_eq!(
        tb["scalars"]["emotion/fear"].as_array().map(Vec::len),
        Some(60)
    );
    assert!(tb["scalars"]["emotion/anger"].is_array());
    assert!(
        tb["histograms"]["histograms/q_values"]
            .as_array()
            .map_or(0, Vec::len)
            >= 2
    );
    assert!(tb["histograms"]["histograms/emotion/fear"].is_array());
    let text = tb["texts"].to_string();
    assert!(
        text.contains("safe_distance"),
        "config table missing: {text}"
    );
    assert!(tb["hparams"]["session_start"]["agent"] == "emotional-ed");
    // The agent learns: late episodes reach the goal (+1) in few steps.
    let last: f64 = returns[50..]
        .iter()
        .map(|r| r[1].as_f64().unwrap_or(-9.0))
        .sum::<f64>()
        / 10.0;
    assert!(last > 0.5, "mean return of the last 10 episodes {last}");
}

#[test]
fn same_seed_same_learning_curve() {
    let tmp = tempfile::tempdir().expect("tmp");
    let curve = |name: &str, seed: &str| -> Vec<f64> {
        let out = tmp.path().join(name);
        let o = run(&[
            "train",
            "--env",
            "v2-integration",
            "--agent",
            "anger-dominant",
            "--episodes",
            "40",
            "--seed",
            seed,
            "--out",
            out.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["charts/episodic_return"].as_f64().expect("return")
            })
            .collect()
    };
    let a = curve("a", "5");
    let b = curve("b", "5");
    let c = curve("c", "6");
    assert_eq!(a.len(), 40);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn config_file_and_overrides() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        "env = \"v2-blocked-path\"\nagent = \"frustration-ed\"\nepisodes = 5\n[agent_config]\nlr = 0.3\n",
    )
    .expect("write");
    let out = tmp.path().join("run");
    let o = run(&[
        "train",
        "--config",
        cfg.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.gamma=0.9",
        "max_steps=20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved = std::fs::read_to_string(out.join("config.toml")).expect("config");
    for want in ["lr = 0.3", "gamma = 0.9", "max_steps = 20", "episodes = 5"] {
        assert!(resolved.contains(want), "{want} not in\n{resolved}");
    }
}

/// Runs a failing command and checks: exit code != 0, one line naming the
/// problem, no panic, and nothing written.
fn assert_clean_failure(args: &[&str], needle: &str, out_dir: &std::path::Path) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!out_dir.exists(), "{} was created", out_dir.display());
}

#[test]
fn bad_input_fails_with_one_clear_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("never");
    let o = out.to_str().expect("utf8");
    assert_clean_failure(
        &[
            "train",
            "--env",
            "nope",
            "--agent",
            "q-learning",
            "--out",
            o,
        ],
        "unknown environment 'nope'",
        &out,
    );
    assert_clean_failure(
        &[
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "nope",
            "--out",
            o,
        ],
        "unknown agent 'nope'",
        &out,
    );
    assert_clean_failure(
        &[
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "q-learning",
            "--out",
            o,
            "agent_config.lrr=1",
        ],
        "unknown field `lrr`",
        &out,
    );
    assert_clean_failure(
        &[
            "train",
            "--env",
            "v2-threat-grid",
            "--agent",
            "q-learning",
            "--out",
            o,
            "agent_config.gamma=2.0",
        ],
        "gamma",
        &out,
    );
    assert_clean_failure(
        &[
            "train",
            "--env",
            "dialogue",
            "--agent",
            "q-learning",
            "--out",
            o,
        ],
        "cannot act in the text environment",
        &out,
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "env = \"v2-threat-grid\"\nagent = = 1\n").expect("write");
    assert_clean_failure(
        &["train", "--config", bad.to_str().expect("utf8"), "--out", o],
        "bad.toml:2:",
        &out,
    );
    let missing = tmp.path().join("missing.toml");
    assert_clean_failure(
        &[
            "train",
            "--config",
            missing.to_str().expect("utf8"),
            "--out",
            o,
        ],
        "missing.toml",
        &out,
    );
    assert_clean_failure(
        &["reproduce", "v9-nothing", "--out", o],
        "unknown table 'v9-nothing'",
        &out,
    );
}

#[test]
fn scripted_dialogue_run_logs_metrics_and_conversations() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("dlg");
    let o = run(&[
        "train",
        "--env",
        "dialogue",
        "--agent",
        "oracle",
        "--episodes",
        "25",
        "--seed",
        "1",
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.feelings=true",
        "env_config.max_turns=3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tb = tensorboard_read(&out);
    for tag in [
        "charts/episodic_return",
        "dialogue/safety_rate",
        "dialogue/helpfulness",
        "dialogue/emotional_coherence",
    ] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(25),
            "{tag}"
        );
    }
    let samples = tb["texts"]["samples/conversation"]
        .as_array()
        .expect("samples");
    assert_eq!(samples.len(), 2); // episodes 0 and 20
    assert!(samples[0].to_string().contains("User"), "{samples:?}");
}

#[test]
fn play_reads_replies_from_stdin() {
    let o = run_with_stdin(
        &["play", "--env", "dialogue", "--seed", "4"],
        "Could you tell me a bit more about what you need?\n/quit\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("User:"), "{text}");
    assert!(text.contains("hidden safety"), "{text}");
    assert!(stderr(&o).contains("1 turns"), "{}", stderr(&o));
}

#[test]
fn play_gridworld_text_and_igt() {
    for (env, script, want) in [
        (
            "gridworld-text",
            "down\nright\nsideways\n/quit\n",
            "3 moves",
        ),
        ("igt", "A\ndeck c\n/quit\n", "2 trials"),
    ] {
        let o = run_with_stdin(&["play", "--env", env], script);
        assert!(o.status.success(), "{env}: {}", stderr(&o));
        assert!(stdout(&o).contains("reward"), "{env}: {}", stdout(&o));
        assert!(stderr(&o).contains(want), "{env}: {}", stderr(&o));
    }
}

#[test]
fn dqn_run_logs_and_checkpoints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("dqn");
    let o = run(&[
        "train",
        "--env",
        "gridworld",
        "--agent",
        "fear-dqn",
        "--episodes",
        "8",
        "--seed",
        "2",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("checkpoints/dqn").is_dir());
    let tb = tensorboard_read(&out);
    for tag in [
        "charts/episodic_return",
        "charts/SPS",
        "charts/survived",
        "emotion/fear",
    ] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(8),
            "{tag}"
        );
    }
    assert!(tb["histograms"]["histograms/q_values"].is_array());
}

#[test]
fn generate_streams_a_known_continuation() {
    let model = root().join("../shared/models/stories260k-f32.gguf");
    let o = run(&[
        "generate",
        "--model",
        model.to_str().expect("utf8"),
        "--prompt",
        "Once upon a time",
        "--max-new-tokens",
        "30",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("there was a little girl named Lily"),
        "{}",
        stdout(&o)
    );
    // The summary line: prefill and decode rates apart, and what decoded.
    let e = stderr(&o);
    assert!(
        e.contains("30 tokens; prefill ") && e.contains(" tok/s (5 tokens), decode "),
        "{e}"
    );
    assert!(e.contains("f32 weights"), "{e}");
}

#[test]
fn generate_default_model_answers_in_chat() {
    let o = run(&[
        "generate",
        "--prompt",
        "What is the capital of France?",
        "--chat",
        "--max-new-tokens",
        "16",
    ]);
    assert!(
        o.status.success(),
        "{} (run scripts/setup.sh to fetch the default model)",
        stderr(&o)
    );
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    // `--weights auto`: SmolLM2's Q4_1 blocks decode in int4, its Q8_0
    // output layer in int8.
    assert!(
        stderr(&o).contains("int4+int8 decode weights"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn corrupt_or_missing_model_is_one_clear_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bytes = std::fs::read(root().join("../shared/models/stories260k-f32.gguf")).expect("model");
    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..1000]).expect("write");
    let garbage = tmp.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").expect("write");
    for (path, needle) in [
        (truncated, "truncated"),
        (garbage, "garbage.gguf"),
        (tmp.path().join("missing.gguf"), "missing.gguf"),
    ] {
        let o = run(&[
            "generate",
            "--model",
            path.to_str().expect("utf8"),
            "--prompt",
            "x",
        ]);
        let err = stderr(&o);
        assert!(!o.status.success());
        assert_ne!(o.status.code(), Some(101), "panicked: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{needle} not in {err}");
    }
}

#[test]
fn unknown_dialogue_settings_are_refused_before_the_run_exists() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let o = run(&[
        "train",
        "--env",
        "dialogue",
        "--agent",
        "oracle",
        "--episodes",
        "1",
        "--out",
        out.to_str().expect("utf8"),
        // A typo of max_turns: once silently ignored (4 turns were played).
        "env_config.max_turn=1",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("max_turn"), "{err}");
    assert!(!out.exists(), "a run directory was left");
}

#[test]
fn negative_sampling_settings_name_their_flag() {
    let model = root().join("../shared/models/stories260k-f32.gguf");
    for (flag, value) in [("--temperature", "-1"), ("--top-p", "-0.5")] {
        let o = run(&[
            "generate",
            "--model",
            model.to_str().expect("utf8"),
            "--prompt",
            "x",
            flag,
            value,
        ]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{flag} {value} accepted");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(flag), "{flag} not named: {err}");
    }
}

#[test]
fn shipped_train_configs_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    for name in ["threat-grid", "fear-dqn", "dialogue-oracle"] {
        let cfg = root().join(format!("configs/train/{name}.toml"));
        let out = tmp.path().join(name);
        let o = run(&[
            "train",
            "--config",
            cfg.to_str().expect("utf8"),
            "--episodes",
            "3",
            "--out",
            out.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(out.join("config.toml").is_file());
    }
}

/// `emorl config show` prints exactly the config.toml that `emorl train`
/// with the same arguments writes (every key, defaults included), and that
/// text runs again as `--config`.
#[test]
fn config_show_prints_what_train_resolves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = [
        "--env",
        "v2-threat-grid",
        "--agent",
        "emotional-ed",
        "--episodes",
        "5",
        "agent_config.lr=0.2",
    ];
    let o = run(&[&["config", "show"][..], &args[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    for line in [
        "episodes = 5",
        "lr = 0.2",
        "gamma = 0.99",
        "type = \"fear\"",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line}:\n{shown}");
    }
    let out = tmp.path().join("run");
    let o = run(&[
        &["train"][..],
        &args[..],
        &["--out", out.to_str().expect("utf8")],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let written = std::fs::read_to_string(out.join("config.toml")).expect("config.toml");
    assert_eq!(shown, written);
    let file = tmp.path().join("shown.toml");
    std::fs::write(&file, &shown).expect("write");
    let again = tmp.path().join("again");
    let o = run(&[
        "train",
        "--config",
        file.to_str().expect("utf8"),
        "--out",
        again.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(again.join("config.toml")).expect("config.toml"),
        written
    );
    // An LLM config says its length once: rl.updates follows --episodes.
    let o = run(&[
        "config",
        "show",
        "--env",
        "dialogue",
        "--agent",
        "llm-erm",
        "--episodes",
        "7",
    ]);
    let shown = stdout(&o);
    assert!(shown.lines().any(|l| l == "updates = 7"), "{shown}");
}

/// The first fear-DQN run a user sees (the README's command, seed 0, 200
/// episodes) learns the grid. It used to end every episode at the step cap
/// (mean return -1.0 of the last 20): the TD target bootstrapped from
/// actions fear never let the agent take (agents/dqn/src/tests.rs,
/// `decoupled_bias_target_bootstraps_from_the_biased_choice`).
#[test]
fn the_default_fear_dqn_run_learns_the_grid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let o = run(&[
        "train",
        "--env",
        "gridworld",
        "--agent",
        "fear-dqn",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let last20: f64 = err
        .split("mean return of the last 20: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no closing line: {err}"));
    assert!(last20 > 0.5, "mean return of the last 20: {last20}");
}

/// For LLM agents `--episodes` counts RL updates; `--updates` is the same
/// flag under the name that says so, and sets the RL update count.
#[test]
fn updates_is_episodes_for_llm_agents() {
    let show = |flag: &str| {
        let o = run(&[
            "config", "show", "--env", "dialogue", "--agent", "llm-erm", flag, "3",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let by_updates = show("--updates");
    assert_eq!(by_updates, show("--episodes"));
    for line in ["episodes = 3", "updates = 3"] {
        assert!(
            by_updates.lines().any(|l| l == line),
            "{line}:\n{by_updates}"
        );
    }
}
