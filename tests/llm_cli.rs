//! `emorl train --env dialogue --agent llm-*` and `emorl chat` on the small
//! stories260K model: TensorBoard curves, histograms and sample texts, a
//! checkpoint that chat loads, and clean failures on bad input.

mod common;
use common::*;

fn stories() -> String {
    root()
        .join("../shared/models/stories260k-f32.gguf")
        .to_str()
        .expect("utf8")
        .to_string()
}

#[test]
fn llm_training_logs_tensorboard_and_chat_loads_the_checkpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let model = stories();
    let o = run(&[
        "train",
        "--env",
        "dialogue",
        "--agent",
        "llm-full",
        "--model",
        &model,
        "--episodes",
        "2",
        "--seed",
        "4",
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.threads=1",
        "agent_config.eval_episodes=1",
        "agent_config.sample_every=1",
        "agent_config.erm_pretrain_steps=2",
        "agent_config.rl.prompts_per_update=2",
        "agent_config.rl.samples_per_prompt=2",
        "agent_config.agent.max_new_tokens=6",
        "agent_config.encoder_pretrain.steps=30",
        "agent_config.encoder_pretrain.train_conversations=20",
        "agent_config.encoder_pretrain.test_conversations=10",
        "agent_config.erm_text.epochs=1",
        "agent_config.erm_text.per_class=10",
        "agent_config.erm_text.test_per_class=5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Setting some rl keys keeps the other LLM training defaults.
    let config = std::fs::read_to_string(out.join("config.toml")).expect("config");
    for line in [
        "expression_coef = 0.1",
        "max_turn = 3",
        "prompts_per_update = 2",
        "lr = 0.05",
    ] {
        assert!(config.lines().any(|l| l == line), "{line}: {config}");
    }
    // The supervised phases leave their held-out scores beside the run.
    let encoder: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("encoder.json")).expect("encoder"))
            .expect("json");
    assert!(encoder["test"]["accuracy"].as_f64().is_some(), "{encoder}");
    let erm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("erm_text.json")).expect("erm"))
            .expect("json");
    assert_eq!(erm["test"]["n"].as_u64(), Some(25), "{erm}");
    let tb = tensorboard_read(&out);
    for tag in ["eval/encoder_accuracy", "eval/erm_text_accuracy"] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(1),
            "{tag}"
        );
    }
    for tag in [
        "charts/reward",
        "losses/kl",
        "losses/entropy",
        "emotion/fear",
        "emotion/erm_anxiety",
    ] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(2),
            "{tag}: {}",
            tb["scalars"]
        );
    }
    assert!(tb["scalars"]["dialogue/safety_rate"].is_array());
    assert!(
        tb["histograms"]["histograms/emotion/fear"]
            .as_array()
            .map_or(0, Vec::len)
            >= 2
    );
    let texts = tb["texts"]["samples/conversation"]
        .as_array()
        .expect("samples");
    assert_eq!(texts.len(), 2);
    assert!(texts[0][1][0]
        .as_str()
        .unwrap_or("")
        .contains("Emotion state per response"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["updates"], 2);
    // Chat with the checkpoint: two messages, two replies with emotions.
    let ckpt = out.join("checkpoints/agent");
    let o = run_with_stdin(
        &[
            "chat",
            "--checkpoint",
            ckpt.to_str().expect("utf8"),
            "--model",
            &model,
        ],
        "Hello there!\nCan you help me with my garden?\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("agent> ").count(), 2, "{text}");
    assert!(text.contains("fear "), "{text}");
    // Generate under a given emotion, or under the one computed from the
    // message; a bad emotion is one line and exit 2.
    let gen = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--checkpoint",
            ckpt.to_str().expect("utf8"),
            "--model",
            &model,
            "--prompt",
            "Please help me with my garden.",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = gen(&["--emotion", "fear=0.9,joy=0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fear=0.90") && stderr(&o).contains("joy=0.10"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).trim().is_empty());
    let o = gen(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("emotion (from the message)"),
        "{}",
        stderr(&o)
    );
    for bad in ["rage=1", "fear=2", "fear"] {
        let o = gen(&["--emotion", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    }
    // The agent as the emotion engine's speaker: its modules read the
    // session's emotions; a frightened session answers differently.
    {
        let server = common::start_server(
            &tmp.path().join("engine"),
            &[
                "--model",
                &model,
                "--checkpoint",
                ckpt.to_str().expect("utf8"),
            ],
        );
        let c = reqwest::blocking::Client::new();
        let health: serde_json::Value = c
            .get(format!("{}/v1/health", server.base))
            .send()
            .and_then(|r| r.json())
            .expect("health");
        assert!(
            health["speaker"]
                .as_str()
                .is_some_and(|s| s.contains("agent llm-full")),
            "{health}"
        );
        let ask = || -> serde_json::Value {
            c.post(format!("{}/v1/sessions/default/generate", server.base))
                .json(&serde_json::json!({"message": "Please help me with my garden.", "max_tokens": 12, "seed": 3}))
                .send()
                .and_then(|r| r.json())
                .expect("generate")
        };
        let calm = ask();
        assert!(calm["reply"].is_string(), "{calm}");
        let r = c
            .post(format!("{}/v1/sessions/default/events", server.base))
            .json(&serde_json::json!({"threat": 1.0, "feedback": -1.0, "dt": 5}))
            .send()
            .expect("event");
        assert!(r.status().is_success());
        let afraid = ask();
        assert!(
            afraid["emotions"]["fear"].as_f64() > calm["emotions"]["fear"].as_f64(),
            "{afraid}"
        );
        assert_ne!(calm["reply"], afraid["reply"], "the state changed nothing");
    }
    // The evaluation of this one agent beside llm-base and llm-prompted.
    let small = tmp.path().join("eval.toml");
    std::fs::write(
        &small,
        "[markers]\nprompts = 2\nsamples = 2\nmax_new_tokens = 6\nalignment_responses = 6\n[agent_config]\nthreads = 1\n\
         [agent_config.encoder_pretrain]\nsteps = 10\ntrain_conversations = 5\ntest_conversations = 5\n",
    )
    .expect("config");
    let eval_out = tmp.path().join("eval");
    let eval_args = [
        "eval",
        "llm",
        "--checkpoint",
        ckpt.to_str().expect("utf8"),
        "--model",
        &model,
        "--seeds",
        "2",
        "--config",
        small.to_str().expect("utf8"),
        "--out",
        eval_out.to_str().expect("utf8"),
    ];
    let o = run(&eval_args);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(eval_out.join("table.md")).expect("table");
    assert!(
        md.contains("| llm-full |") && md.contains("llm-prompted"),
        "{md}"
    );
    let samples = std::fs::read_to_string(eval_out.join("samples.jsonl")).expect("samples");
    // 2 prompts x 2 samples x 5 conditions for each of the three agents.
    assert_eq!(
        samples.matches("\"task\":\"forced\"").count(),
        3 * 2 * 2 * 5
    );
    // Six held-out DailyDialog responses per agent under their target
    // emotion (anger, fear, joy in turn), compared with both baselines.
    assert_eq!(samples.matches("\"task\":\"alignment\"").count(), 3 * 6);
    assert!(
        md.contains("Emotional alignment (emo_alignment_score) on 6 held-out DailyDialog")
            && md.contains("| llm-full | llm-prompted | alignment |"),
        "{md}"
    );
    // A used directory is refused, and nothing in it changes.
    let o = run(&eval_args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(eval_out.join("table.md")).expect("table"),
        md
    );
    // Given only the checkpoint, chat loads the base model it records
    // (stories260K here, not the default SmolLM2).
    let ck = ckpt.to_str().expect("utf8");
    let o = run_with_stdin(&["chat", "--checkpoint", ck], "Hello there\n\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("on stories260k-f32.gguf"),
        "{}",
        stderr(&o)
    );
    // The checkpoint refuses another base model, in one line.
    let o = run(&["chat", "--checkpoint", ck, "--model", "default"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("stories260k-f32.gguf") && err.lines().count() == 1,
        "{err}"
    );
}

/// `llm-dual`: the supervised phase on DailyDialog logs every loss term and
/// the gate per step, writes its held-out perplexities, then RL runs and
/// the checkpoint generates.
#[test]
fn llm_dual_learns_from_dailydialog_then_rl() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("dual");
    let model = stories();
    let o = run(&[
        "train",
        "--env",
        "dialogue",
        "--agent",
        "llm-dual",
        "--model",
        &model,
        "--episodes",
        "1",
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.threads=1",
        "agent_config.eval_episodes=0",
        "agent_config.rl.prompts_per_update=2",
        "agent_config.rl.samples_per_prompt=2",
        "agent_config.agent.max_new_tokens=6",
        "agent_config.encoder_pretrain.steps=5",
        "agent_config.dual_text.steps=12",
        "agent_config.dual_text.batch=4",
        "agent_config.dual_text.max_tokens=32",
        "agent_config.dual_text.held_out=16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("held-out response perplexity"),
        "{}",
        stderr(&o)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dual_text.json")).expect("dual"))
            .expect("json");
    assert_eq!(report["held_out"]["examples"], 16, "{report}");
    let tb = tensorboard_read(&out);
    for tag in [
        "dual/loss_lm",
        "dual/loss_propagation",
        "dual/loss_distillation",
        "dual/loss_total",
        "dual/gate_mean",
        "dual/gate_sparsity",
    ] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(12),
            "{tag}: {}",
            tb["scalars"]
        );
    }
    for tag in [
        "eval/dual_perplexity_frozen",
        "eval/dual_perplexity_trained",
    ] {
        assert_eq!(
            tb["scalars"][tag].as_array().map(Vec::len),
            Some(1),
            "{tag}"
        );
    }
    assert_eq!(
        tb["scalars"]["charts/reward"].as_array().map(Vec::len),
        Some(1)
    );
    let o = run(&[
        "generate",
        "--checkpoint",
        out.join("checkpoints/agent").to_str().expect("utf8"),
        "--model",
        &model,
        "--emotion",
        "joy=0.9",
        "--prompt",
        "Hello",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn llm_training_refuses_bad_input_without_writing_a_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00truncated").expect("write");
    let out = tmp.path().join("run");
    for args in [
        vec!["--model", bad.to_str().expect("utf8")],
        vec!["agent_config.rl.samples_per_prompt=1"],
        vec!["agent_config.no_such_key=1"],
        // RL samples with the agent's decoding settings, set in one place.
        vec!["agent_config.rl.temperature=0.5"],
        vec!["agent_config.encoder_pretrain.lr=-1"],
    ] {
        let mut all = vec![
            "train",
            "--env",
            "dialogue",
            "--agent",
            "llm-erm",
            "--out",
            out.to_str().expect("utf8"),
        ];
        all.extend(args.iter().copied());
        let o = run(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(!out.exists(), "{args:?} left a run directory");
    }
    let o = run(&["train", "--env", "gridworld", "--agent", "llm-prefix"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("dialogue"));
    // Nothing for RL to train in the prompted baseline.
    let o = run(&["train", "--env", "dialogue", "--agent", "llm-prompted"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--agents llm-prompted"),
        "{}",
        stderr(&o)
    );
}

/// `emorl reproduce llm-modules` on stories260K with one RL update per
/// agent: every agent is measured, the tables and figure are written, and a
/// rerun resumes from the stored per-agent results.
#[test]
fn reproduce_llm_modules_writes_every_table_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("llm");
    let model = stories();
    let cfg = tmp.path().join("small.toml");
    std::fs::write(
        &cfg,
        "[markers]\nprompts = 3\nsamples = 2\nmax_new_tokens = 6\nalignment_responses = 4\n[agent_config]\nthreads = 1\nerm_pretrain_steps = 1\n\
         [agent_config.agent]\nmax_new_tokens = 6\n\
         [agent_config.encoder_pretrain]\nsteps = 20\ntrain_conversations = 10\ntest_conversations = 5\n\
         [agent_config.erm_text]\nepochs = 1\nper_class = 10\ntest_per_class = 5\n\
         [agent_config.lora_text]\nepochs = 1\nper_class = 8\ntest_per_class = 4\n\
         [agent_config.dual_text]\nsteps = 3\nbatch = 4\nmax_tokens = 32\nheld_out = 8\n\
         [agent_config.rl]\nprompts_per_update = 2\nsamples_per_prompt = 2\n",
    )
    .expect("config");
    let args = [
        "reproduce",
        "llm-modules",
        "--model",
        &model,
        "--config",
        cfg.to_str().expect("utf8"),
        "--seeds",
        "2",
        "--episodes",
        "1",
        "--out",
        out.to_str().expect("utf8"),
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for id in [
        "llm-base",
        "llm-prompted",
        "llm-static-prefix",
        "llm-prefix",
        "llm-gate",
        "llm-erm",
        "llm-steer",
        "llm-reft",
        "llm-neuro",
        "llm-full",
        "llm-dual",
    ] {
        assert!(out.join(format!("agents/{id}.json")).exists(), "{id}");
    }
    // llm-dual's adapters learned from DailyDialog before RL.
    let dual: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("agents/llm-dual.json")).expect("dual"),
    )
    .expect("json");
    assert_eq!(dual["dual_text"]["steps"], 3, "{dual}");
    assert_eq!(dual["dual_text"]["held_out"]["examples"], 8, "{dual}");
    // llm-neuro's adapters learned from text before RL.
    let neuro: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("agents/llm-neuro.json")).expect("neuro"),
    )
    .expect("json");
    assert_eq!(
        neuro["lora_text"]["held_out"].as_array().map(Vec::len),
        Some(4),
        "{neuro}"
    );
    let tables: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("table.json")).expect("json"))
            .expect("parse");
    let tables = tables.as_array().expect("tables");
    // Targets, forced emotions, dialogue summary and comparisons, fluency,
    // appropriateness, alignment, the encoder, the judge.
    assert_eq!(tables.len(), 9);
    // Targets: one row per trained module (not the three baselines).
    assert_eq!(tables[0]["rows"].as_array().map(Vec::len), Some(8));
    // Forced emotions: 11 agents x 4 emotions x 3 measures (judge, held-out
    // and full lexicon).
    let marker_rows = tables[1]["rows"].as_array().expect("rows");
    assert_eq!(marker_rows.len(), 132);
    let md = std::fs::read_to_string(out.join("table.md")).expect("md");
    for needle in [
        "Perplexity",
        "Distinct-2",
        "llm-steer",
        "judge",
        "held-out lexicon",
        "Holm",
    ] {
        assert!(md.contains(needle), "{needle}: {md}");
    }
    // Every generated text, readable and re-scorable.
    let samples = std::fs::read_to_string(out.join("samples.jsonl")).expect("samples");
    let lines: Vec<serde_json::Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    // 3 prompts x 2 samples x 5 conditions per agent, plus dialogue turns.
    let forced = lines.iter().filter(|l| l["task"] == "forced").count();
    assert_eq!(forced, 11 * 3 * 2 * 5);
    let aligned = lines.iter().filter(|l| l["task"] == "alignment").count();
    assert_eq!(aligned, 11 * 4);
    assert!(lines
        .iter()
        .any(|l| l["task"] == "dialogue" && l["agent"] == "llm-prompted"));
    // llm-erm's curve: mean and band over three training seeds.
    assert!(std::fs::read_to_string(out.join("learning_curves.svg"))
        .expect("svg")
        .contains("llm-erm (3 seeds)"));
    assert!(out.join("curves/llm-erm-seed2.json").exists());
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).expect("md"),
        md
    );
    assert_eq!(
        std::fs::read_to_string(out.join("samples.jsonl")).expect("samples"),
        samples
    );
    // Agents trained under other settings (e.g. another version's defaults)
    // are not mixed into the table: the stored settings must match.
    let settings = out.join("agent_config.toml");
    let stored = std::fs::read_to_string(&settings).expect("agent_config.toml");
    assert!(stored.contains("share_prompt_prefill"), "{stored}");
    std::fs::write(
        &settings,
        stored.replace("microbatch = 8", "microbatch = 7"),
    )
    .expect("write");
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("agent_config.toml"), "{}", stderr(&o));
    std::fs::write(&settings, stored).expect("restore");
    // A subset of agents, and a clear error for an unknown one.
    let sub = tmp.path().join("sub");
    let mut some: Vec<&str> = args[..args.len() - 2].to_vec();
    some.extend([
        "--agents",
        "llm-erm,llm-base",
        "--out",
        sub.to_str().expect("utf8"),
    ]);
    let o = run(&some);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(sub.join("agents/llm-erm.json").exists() && !sub.join("agents/llm-gate.json").exists());
    // By agent, as Slurm array tasks would (one agent each, run here):
    // the table equals that of one process measuring both.
    let by_agent = |out: &std::path::Path, extra: &[&str]| {
        let mut a: Vec<&str> = args[..args.len() - 2].to_vec();
        a.extend([
            "--agents",
            "llm-prompted,llm-base",
            "--out",
            out.to_str().expect("utf8"),
        ]);
        a.extend_from_slice(extra);
        run(&a)
    };
    let whole = tmp.path().join("whole");
    let o = by_agent(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let split = tmp.path().join("split");
    let o = by_agent(&split, &["--backend", "slurm", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
    // The registry's order, fixed for the tasks and the table command.
    assert!(
        script.contains("'--agents' 'llm-base,llm-prompted'"),
        "{script}"
    );
    for block in ["1", "0"] {
        let o = by_agent(&split, &["--block", block]);
        assert!(o.status.success(), "block {block}: {}", stderr(&o));
        assert!(!split.join("table.json").exists());
    }
    assert!(split.join("agents/llm-base.json").exists());
    let o = by_agent(&split, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(split.join("table.json")).expect("split"),
        std::fs::read_to_string(whole.join("table.json")).expect("whole")
    );
    let bad = tmp.path().join("bad");
    let mut wrong: Vec<&str> = args[..args.len() - 2].to_vec();
    wrong.extend(["--agents", "llm-nope", "--out", bad.to_str().expect("utf8")]);
    let o = run(&wrong);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("llm-nope") && !bad.exists(),
        "{}",
        stderr(&o)
    );
}

/// `emorl train` of `llm-erm` on stories260K with small settings, into `out`.
fn train_llm_erm(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let model = stories();
    let mut args = vec![
        "train",
        "--env",
        "dialogue",
        "--agent",
        "llm-erm",
        "--model",
        &model,
        "--seed",
        "6",
        "--out",
        out.to_str().expect("utf8"),
        "agent_config.threads=1",
        "agent_config.eval_episodes=1",
        "agent_config.sample_every=0",
        "agent_config.erm_pretrain_steps=2",
        "agent_config.rl.prompts_per_update=2",
        "agent_config.rl.samples_per_prompt=2",
        "agent_config.agent.max_new_tokens=6",
        "agent_config.encoder_pretrain.steps=20",
        "agent_config.encoder_pretrain.train_conversations=10",
        "agent_config.encoder_pretrain.test_conversations=5",
        "agent_config.erm_text.epochs=0",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_resumed_llm_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    let o = train_llm_erm(&whole, &["--episodes", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The same run stopped after 2 updates, then continued to 4.
    let split = tmp.path().join("split");
    let o = train_llm_erm(&split, &["--episodes", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "train",
        "--out",
        split.to_str().expect("utf8"),
        "--resume",
        "--episodes",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    // Same module tensors and optimiser moments, bit for bit.
    for file in ["modules.safetensors", "optimizer.safetensors"] {
        let a = std::fs::read(whole.join("checkpoints/agent").join(file)).expect(file);
        let b = std::fs::read(split.join("checkpoints/agent").join(file)).expect(file);
        assert!(a == b, "{file} differs after resuming");
    }
    // Every update logged once, in order.
    let steps: Vec<i64> = std::fs::read_to_string(split.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["step"]
                .as_i64()
                .expect("step")
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    // A finished run has nothing to resume; another setting is refused.
    let o = run(&["train", "--out", split.to_str().expect("utf8"), "--resume"]);
    assert!(
        o.status.success() && stderr(&o).contains("nothing to do"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "train",
        "--out",
        split.to_str().expect("utf8"),
        "--resume",
        "--episodes",
        "6",
        "agent_config.rl.lr=0.5",
    ]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("lr"), "{}", stderr(&o));
}
