//! Bad, hostile and careless input, table-driven: every case must fail
//! with exit status 2 (not a panic), print exactly one line that names the
//! problem, and leave nothing behind: each case runs in its own empty
//! working directory (its `--out` inside it), which must still be empty
//! afterwards.
//!
//! Placeholders in the arguments: `OUT` the case's `--out` (never created),
//! `IN` a directory of prepared bad inputs, `ST` the stories260K model.

mod common;

use common::{emorl, stderr};
use std::path::{Path, PathBuf};

/// `(what the one line must contain, the arguments)`.
const CASES: &[(&str, &str)] = &[
    // train: ids and combinations
    ("unknown environment 'nope'", "train --env nope --agent q-learning --out OUT"),
    ("unknown agent 'nope'", "train --env v2-threat-grid --agent nope --out OUT"),
    ("cannot act in the text environment", "train --env dialogue --agent q-learning --out OUT"),
    ("cannot act in the text environment", "train --env dialogue --agent dqn --out OUT"),
    ("it trains in env 'dialogue'", "train --env gridworld --agent llm-erm --out OUT"),
    ("only acts in env 'dialogue'", "train --env gridworld --agent oracle --out OUT"),
    ("only acts in env 'dialogue'", "train --env igt --agent oracle --out OUT"),
    ("--env", "train --agent q-learning --out OUT"),
    ("--agent", "train --env v2-threat-grid --out OUT"),
    // train: flags
    ("--episodes", "train --env v2-threat-grid --agent q-learning --episodes abc --out OUT"),
    ("--seed", "train --env v2-threat-grid --agent q-learning --seed -1 --out OUT"),
    ("--episodes", "train --env v2-threat-grid --agent q-learning --episodes -5 --out OUT"),
    ("episodes", "train --env v2-threat-grid --agent q-learning --episodes 0 --out OUT"),
    ("--resume", "train --env v2-threat-grid --agent q-learning --resume"),
    ("holds no run to resume", "train --env v2-threat-grid --agent q-learning --resume --out OUT"),
    ("--wat", "train --env v2-threat-grid --agent q-learning --wat --out OUT"),
    ("key=value", "train --env v2-threat-grid --agent q-learning --out OUT lr"),
    // train: config files and overrides
    ("bad.toml:2:", "train --config IN/bad.toml --out OUT"),
    ("missing.toml", "train --config IN/missing.toml --out OUT"),
    ("episodez", "train --config IN/unknown.toml --out OUT"),
    ("notes.txt", "train --config IN/notes.txt --out OUT"),
    ("nope", "train --env v2-threat-grid --agent q-learning --out OUT nope=1"),
    ("max_steps", "train --env v2-threat-grid --agent q-learning --out OUT max_steps=0"),
    ("max_steps", "train --env v2-threat-grid --agent q-learning --out OUT max_steps=abc"),
    ("seed", "train --env v2-threat-grid --agent q-learning --out OUT seed=-3"),
    // tabular agent_config
    ("unknown field `lrr`", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lrr=1"),
    ("gamma", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.gamma=2.0"),
    ("gamma", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.gamma=-0.1"),
    ("epsilon", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.epsilon=1.5"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=0"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=-0.1"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=1e300"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=nan"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=inf"),
    ("lr", "train --env v2-threat-grid --agent emotional-ed --out OUT agent_config.lr=7"),
    ("lr", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.lr=\"fast\""),
    ("channels", "train --env v2-threat-grid --agent emotional-ed --out OUT agent_config.channels.0.nope=1"),
    ("checkpoint_every", "train --env v2-threat-grid --agent q-learning --out OUT agent_config.checkpoint_every=0"),
    // env_config
    ("takes no env_config options", "train --env v2-threat-grid --agent q-learning --out OUT env_config.nope=1"),
    ("takes no env_config options", "train --env gridworld --agent dqn --out OUT env_config.nope=1"),
    ("unknown field", "train --env dialogue --agent oracle --out OUT env_config.max_turn=1"),
    ("max_turns", "train --env dialogue --agent oracle --out OUT env_config.max_turns=0"),
    ("max_turns", "train --env dialogue --agent oracle --out OUT env_config.max_turns=-2"),
    ("reads no emotion", "train --env dialogue --agent llm-static-prefix --emotion-source neuro --model ST --out OUT"),
    ("--emotion-source", "train --env dialogue --agent llm-steer --emotion-source mood --model ST --out OUT"),
    ("turn_dt", "train --env dialogue --agent llm-steer --emotion-source neuro --model ST --out OUT agent_config.agent.neuro.turn_dt=0"),
    ("nonexistent.txt", "train --env dialogue --agent oracle --out OUT env_config.data=IN/nonexistent.txt"),
    ("notes.txt", "train --env dialogue --agent oracle --out OUT env_config.data=IN/notes.txt"),
    ("takes no env_config options", "train --env igt --agent bandit --out OUT env_config.decks=9"),
    // dqn agent_config
    ("learning_rate", "train --env gridworld --agent dqn --out OUT agent_config.learning_rate=0"),
    ("learning_rate", "train --env gridworld --agent dqn --out OUT agent_config.learning_rate=1e300"),
    ("learning_rate", "train --env gridworld --agent dqn --out OUT agent_config.learning_rate=nan"),
    ("hidden", "train --env gridworld --agent dqn --out OUT agent_config.hidden=[]"),
    ("hidden", "train --env gridworld --agent dqn --out OUT agent_config.hidden=[0]"),
    ("batch_size", "train --env gridworld --agent dqn --out OUT agent_config.batch_size=0"),
    ("buffer_size", "train --env gridworld --agent dqn --out OUT agent_config.buffer_size=3"),
    ("adam_beta1", "train --env gridworld --agent dqn --out OUT agent_config.adam_beta1=1.0"),
    ("adam_beta2", "train --env gridworld --agent dqn --out OUT agent_config.adam_beta2=-1"),
    ("adam_eps", "train --env gridworld --agent dqn --out OUT agent_config.adam_eps=0"),
    ("gamma", "train --env gridworld --agent dqn --out OUT agent_config.gamma=1.5"),
    ("train_frequency", "train --env gridworld --agent dqn --out OUT agent_config.train_frequency=0"),
    ("target_network_frequency", "train --env gridworld --agent dqn --out OUT agent_config.target_network_frequency=0"),
    ("max_grad_norm", "train --env gridworld --agent dqn --out OUT agent_config.max_grad_norm=-1"),
    ("unknown field", "train --env gridworld --agent fear-dqn --out OUT agent_config.fear.nope=1"),
    ("unknown field", "train --env gridworld --agent dqn --out OUT agent_config.hiden=[8]"),
    // llm train
    ("threads", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.threads=100000"),
    ("temperature", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.agent.temperature=0"),
    ("temperature", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.agent.temperature=-1"),
    ("max_new_tokens", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.agent.max_new_tokens=0"),
    ("max_new_tokens", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.agent.max_new_tokens=100000000"),
    ("lr", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.rl.lr=0"),
    ("lr", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.rl.lr=nan"),
    ("lr_scale", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.rl.lr_scale.erm.nope=1"),
    ("unknown field", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.rl.nope=1"),
    ("unknown field", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.nope=1"),
    ("rl.temperature", "train --env dialogue --agent llm-erm --model ST --out OUT agent_config.rl.temperature=0.3"),
    ("missing.gguf", "train --env dialogue --agent llm-erm --model IN/missing.gguf --out OUT"),
    ("garbage.gguf", "train --env dialogue --agent llm-erm --model IN/garbage.gguf --out OUT"),
    ("empty.gguf", "train --env dialogue --agent llm-erm --model IN/empty.gguf --out OUT"),
    ("NaN", "train --env dialogue --agent llm-erm --model IN/nan.gguf --out OUT"),
    ("nothing RL can train", "train --env dialogue --agent llm-base --model ST --out OUT"),
    ("nothing RL can train", "train --env dialogue --agent llm-prompted --model ST --out OUT"),
    ("layer", "train --env dialogue --agent llm-steer --model ST --out OUT agent_config.agent.steering.layers=[99]"),
    ("layer", "train --env dialogue --agent llm-gate --model ST --out OUT agent_config.agent.gate.layers=[-99]"),
    ("reft: rank", "train --env dialogue --agent llm-reft --model ST --out OUT agent_config.agent.reft.rank=0"),
    ("reft: rank", "train --env dialogue --agent llm-reft --model ST --out OUT agent_config.agent.reft.rank=100000"),
    ("unknown field", "train --env dialogue --agent llm-erm --model ST --out OUT env_config.max_turn=1"),
    ("nonexistent.txt", "train --env dialogue --agent llm-erm --model ST --out OUT env_config.data=IN/nonexistent.txt"),
    // reproduce
    ("unknown table 'v9-nothing'", "reproduce v9-nothing --out OUT"),
    ("--seeds", "reproduce v2-tabular --seeds abc --out OUT"),
    ("seeds", "reproduce v2-tabular --seeds 0 --out OUT"),
    ("seeds", "reproduce v2-tabular --seeds 1 --out OUT"),
    ("--jobs", "reproduce v2-tabular --jobs 100000 --out OUT"),
    ("--jobs", "reproduce v2-tabular --jobs -1 --out OUT"),
    ("--rng", "reproduce v2-tabular --rng bogus --out OUT"),
    ("permutations", "reproduce v2-tabular --permutations 0 --out OUT"),
    ("blocks", "reproduce v2-tabular --blocks 0 --out OUT"),
    ("--blocks applies to v2-tabular, v3, v3-audit and v2-dqn only", "reproduce llm-modules --blocks 2 --out OUT"),
    ("--episodes applies to v2-dqn and llm-modules only", "reproduce v3 --episodes 5 --out OUT"),
    ("--episodes applies to v2-dqn and llm-modules only", "reproduce v2-tabular --episodes 5 --out OUT"),
    ("episodes", "reproduce v2-dqn --episodes 0 --out OUT"),
    ("missing.toml", "reproduce llm-modules --config IN/missing.toml --out OUT"),
    ("bad.toml", "reproduce llm-modules --config IN/bad.toml --out OUT"),
    ("nope", "reproduce llm-modules --agents llm-base,nope --model ST --out OUT"),
    ("--agents", "reproduce v2-tabular --agents llm-base --out OUT"),
    ("no train.tsv", "reproduce llm-modules --goemotions IN/missing --model ST --out OUT"),
    ("missing.gguf", "reproduce llm-modules --model IN/missing.gguf --out OUT"),
    ("--model", "reproduce v2-tabular --model ST --out OUT"),
    ("--config applies to llm-modules, v3-audit and v2-dqn only", "reproduce v3 --config IN/audit-grid.toml --out OUT"),
    ("overlap the tuning seeds", "reproduce v3-audit --seed-offset 990 --out OUT"),
    ("tuning.grid.temperature", "reproduce v3-audit --config IN/audit-grid.toml --out OUT"),
    ("no metric 'speed'", "reproduce v3-audit --config IN/audit-metric.toml --out OUT"),
    ("unknown agent 'nope'", "reproduce v3-audit --config IN/audit-agent.toml --out OUT"),
    ("unknown V3 experiment 'nope'", "reproduce v3-audit --config IN/audit-exp.toml --out OUT"),
    ("lr", "reproduce v3-audit --config IN/audit-lr.toml --out OUT"),
    ("<TABLE>", "reproduce --out OUT"),
    // serve (each refused before it listens or writes)
    ("reachable from other machines", "serve --host 0.0.0.0 --out OUT"),
    ("not an IP address", "serve --host localhost.example --out OUT"),
    ("--token", "serve --token short --out OUT"),
    ("--port", "serve --port 70000 --out OUT"),
    ("missing.gguf", "serve --model IN/missing.gguf --out OUT"),
    ("garbage.gguf", "serve --model IN/garbage.gguf --out OUT"),
    ("nothing/manifest.json", "serve --checkpoint IN/nothing --model ST --out OUT"),
    ("--batch", "serve --batch 0 --out OUT"),
    ("--queue", "serve --queue 0 --out OUT"),
    ("--engine-only", "serve --engine-only --model ST --out OUT"),
    ("--threads", "serve --threads 100000 --model ST --out OUT"),
    // generate
    ("missing.gguf", "generate --model IN/missing.gguf --prompt hi"),
    ("garbage.gguf", "generate --model IN/garbage.gguf --prompt hi"),
    ("NaN", "generate --model IN/nan.gguf --prompt hi"),
    ("context", "generate --model ST --prompt hi --max-new-tokens 100000000"),
    ("--temperature", "generate --model ST --prompt hi --temperature -1"),
    ("--top-p", "generate --model ST --prompt hi --top-p 2"),
    ("--top-p", "generate --model ST --prompt hi --top-p -0.5"),
    ("--max-new-tokens", "generate --model ST --prompt hi --max-new-tokens -3"),
    ("--weights", "generate --model ST --prompt hi --weights int3"),
    ("--checkpoint", "generate --prompt hi --emotion fear=1"),
    ("manifest.json", "generate --checkpoint IN/nomanifest --prompt hi"),
    ("manifest.json", "generate --checkpoint IN/badmanifest --prompt hi"),
    ("missing", "generate --checkpoint IN/missing --prompt hi"),
    // chat, eval, play
    ("manifest.json", "chat --checkpoint IN/nomanifest"),
    ("manifest.json", "chat --checkpoint IN/badmanifest"),
    ("missing", "chat --checkpoint IN/missing"),
    ("--checkpoint", "chat"),
    ("manifest.json", "eval llm --checkpoint IN/nomanifest"),
    ("--seeds", "eval llm --checkpoint IN/nomanifest --seeds 1"),
    ("--checkpoint", "eval llm"),
    ("'nothing'", "eval nothing"),
    ("'nope'", "play --env nope"),
    ("nonexistent.txt", "play --env dialogue --data IN/nonexistent.txt"),
    ("--seed", "play --env dialogue --seed x"),
    ("--log", "--log shouty envs"),
    // reproduce on Slurm
    ("--block 1: llm-modules has agents 0 to 0 here", "reproduce llm-modules --agents llm-base --block 1 --model ST --out OUT"),
    ("--block 2", "reproduce v2-dqn --blocks 2 --block 2 --out OUT"),
    ("more array tasks than --max-array", "reproduce llm-modules --agents llm-base,llm-erm --backend slurm --dry-run --max-array 1 --out OUT"),
    ("--block 2", "reproduce v2-tabular --blocks 2 --block 2 --out OUT"),
    ("--block needs --out", "reproduce v2-tabular --block 0"),
    ("slurm time", "reproduce v2-tabular --backend slurm --dry-run --time 1;2 --out OUT"),
    // sweep
    ("missing.toml", "sweep IN/missing.toml --out OUT"),
    ("sweep-seeds.toml: seeds", "sweep IN/sweep-seeds.toml --out OUT"),
    ("axes.agent: no values", "sweep IN/sweep-axis.toml --out OUT"),
    ("agent_config.lr", "sweep IN/sweep-value.toml --out OUT"),
    ("unknown field `bogus`", "sweep IN/sweep-key.toml --out OUT"),
    ("control.agent", "sweep IN/sweep-control.toml --out OUT"),
    ("--backend", "sweep IN/sweep-ok.toml --backend pbs --out OUT"),
    ("max_array", "sweep IN/sweep-ok.toml --backend slurm --dry-run --max-array 0 --out OUT"),
    ("slurm partition", "sweep IN/sweep-ok.toml --backend slurm --dry-run --partition a;b --out OUT"),
    ("--jobs", "sweep IN/sweep-ok.toml --jobs 100000 --out OUT"),
    ("not a sweep directory", "sweep collect IN/"),
    ("not a sweep directory", "sweep run-task IN/ --task 0"),
    ("--task", "sweep run-task IN/ --task x"),
];

fn stories() -> PathBuf {
    common::root().join("../shared/models/stories260k-f32.gguf")
}

/// The prepared bad inputs the cases name as `IN/...`.
fn inputs(dir: &Path) {
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).expect("write input");
    w("bad.toml", b"env = \"v2-threat-grid\"\nagent = = 1\n");
    w(
        "unknown.toml",
        b"env = \"v2-threat-grid\"\nagent = \"q-learning\"\nepisodez = 3\n",
    );
    w("garbage.gguf", &[b"GGUF".as_slice(), &[0u8; 20]].concat());
    w("empty.gguf", b"");
    w("notes.txt", b"hello\n");
    // The stories260K model with its last 1000 floats (inside the last
    // tensors' data) set to NaN.
    let mut model = std::fs::read(stories()).expect("stories260K model");
    let n = model.len();
    for chunk in model[n - 4000..].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    w("nan.gguf", &model);
    std::fs::create_dir(dir.join("nomanifest")).expect("mkdir");
    std::fs::create_dir(dir.join("badmanifest")).expect("mkdir");
    w("badmanifest/manifest.json", b"{\"format\": 99}");
    w(
        "audit-grid.toml",
        b"[tuning]\ngrid = { temperature = [1.0] }\n",
    );
    w(
        "audit-metric.toml",
        b"[[experiment]]\nid = \"battery-run\"\nengineered = []\nreport = [\"speed\"]\n",
    );
    w(
        "audit-agent.toml",
        b"[[experiment]]\nid = \"bottleneck\"\nengineered = [{ label = \"x\", agent = \"nope\" }]\n",
    );
    w(
        "audit-exp.toml",
        b"[[experiment]]\nid = \"nope\"\nengineered = []\n",
    );
    w("audit-lr.toml", b"[tuning]\ngrid = { lr = [0.1, 7.0] }\n");
    let sweep = format!(
        "base = \"{}\"\nseeds = \"0..2\"\ncontrol = {{ agent = \"q-learning\" }}\n[axes]\nagent = [\"q-learning\", \"emotional-ed\"]\n",
        common::root().join("configs/train/threat-grid.toml").display()
    );
    w("sweep-ok.toml", sweep.as_bytes());
    w(
        "sweep-seeds.toml",
        sweep.replace("\"0..2\"", "\"3..1\"").as_bytes(),
    );
    w(
        "sweep-axis.toml",
        sweep
            .replace("[\"q-learning\", \"emotional-ed\"]", "[]")
            .as_bytes(),
    );
    w(
        "sweep-value.toml",
        format!("{sweep}\"agent_config.lr\" = [\"fast\"]\n").as_bytes(),
    );
    w("sweep-key.toml", format!("bogus = 1\n{sweep}").as_bytes());
    w(
        "sweep-control.toml",
        sweep
            .replace("agent = \"q-learning\" }", "agent = \"sarsa\" }")
            .as_bytes(),
    );
}

fn check(case: usize, needle: &str, args: &str, input: &Path) -> Option<String> {
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("out");
    let args: Vec<String> = args
        .split(' ')
        .map(|a| {
            a.replace("OUT", &out.display().to_string())
                .replace("IN/", &format!("{}/", input.display()))
                .replace("ST", &stories().display().to_string())
        })
        .collect();
    let o = emorl()
        .args(&args)
        .current_dir(work.path())
        .env(
            "EMORL_GOEMOTIONS_DIR",
            common::root().join("../shared/data/goemotions"),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run emorl");
    let err = stderr(&o);
    let left: Vec<String> = std::fs::read_dir(work.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let problem = if o.status.code() != Some(2) {
        format!("exit status {:?}, expected 2", o.status.code())
    } else if err.contains("panicked") {
        "panicked".to_string()
    } else if err.trim().lines().count() != 1 {
        "not one line".to_string()
    } else if !err.contains(needle) {
        format!("does not name {needle:?}")
    } else if !left.is_empty() {
        format!("left {left:?} behind")
    } else {
        return None;
    };
    Some(format!(
        "case {case} `emorl {}`: {problem}\n{err}",
        args.join(" ")
    ))
}

/// Runs the cases whose command is `command`.
fn run_cases(command: &str) {
    let input = tempfile::tempdir().expect("tmp");
    inputs(input.path());
    let mut failures = Vec::new();
    let mut n = 0;
    for (i, (needle, args)) in CASES.iter().enumerate() {
        let first = args
            .split(' ')
            .find(|a| !a.starts_with("--") && *a != "shouty");
        if first != Some(command) {
            continue;
        }
        n += 1;
        failures.extend(check(i, needle, args, input.path()));
    }
    assert!(n > 0, "no cases for {command}");
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn at_least_a_hundred_cases() {
    assert!(CASES.len() >= 100, "{} cases", CASES.len());
}

#[test]
fn bad_train_input() {
    run_cases("train");
}

#[test]
fn bad_reproduce_input() {
    run_cases("reproduce");
}

#[test]
fn bad_generate_input() {
    run_cases("generate");
}

#[test]
fn bad_chat_eval_play_input() {
    for command in ["chat", "eval", "play", "envs", "serve", "sweep"] {
        run_cases(command);
    }
}
