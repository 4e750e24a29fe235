//! README and docs/ commands work as written. Every command line of the
//! `bash` blocks of README.md and of every page under docs/ is run here
//! verbatim through `bash -c`, from a scratch
//! repository root (with `../shared` beside it, as in a clone) and `emorl`
//! on PATH as set-up puts it — unless it is named in [`NOT_RUN`] with the
//! reason. A README command that is neither run nor named fails the test,
//! so a new command cannot slip in untried.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Commands not run here, and why: a prefix of the command (its comment
/// left out), or the whole command when the pattern ends in `$`.
const NOT_RUN: &[(&str, &str)] = &[
    ("bash scripts/test.sh", "runs this test suite"),
    (
        "emorl reproduce v2-dqn$",
        "30 seeds x 500 episodes x 6 agent runs: many minutes (its quick form below runs)",
    ),
    (
        "emorl train --env dialogue --agent llm-erm$",
        "SmolLM2 RL with the embedded defaults: about an hour",
    ),
    (
        "emorl eval llm --checkpoint",
        "64 conversations x 3 agents: minutes even on stories260K",
    ),
    (
        "emorl reproduce llm-modules",
        "trains and measures every LLM agent: tens of minutes to hours",
    ),
];

/// README.md and the Markdown pages under docs/ (any depth).
fn pages() -> Vec<PathBuf> {
    let root = common::root();
    let mut out = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Lines of the `bash` blocks of README.md and docs/, comments kept (they
/// are part of what a user copies; bash ignores them).
fn readme_commands() -> Vec<String> {
    let mut out = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        out.extend(bash_lines(&text));
    }
    out
}

fn bash_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_bash = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_bash = !in_bash && line.trim() == "```bash";
            continue;
        }
        let l = line.trim();
        if in_bash && !l.is_empty() && !l.starts_with('#') {
            out.push(l.to_string());
        }
    }
    out
}

/// Whether `pattern` (of [`NOT_RUN`]) names the README line `line`.
fn names(pattern: &str, line: &str) -> bool {
    let bare = after_setup(line.split(" #").next().unwrap_or_default().trim());
    match pattern.strip_suffix('$') {
        Some(whole) => bare == whole,
        None => bare.starts_with(pattern),
    }
}

/// `bash scripts/setup.sh && CMD` runs as CMD here: the set-up is what
/// built this binary (CI runs it before the tests).
fn after_setup(line: &str) -> &str {
    line.strip_prefix("bash scripts/setup.sh && ")
        .unwrap_or(line)
}

fn run_line(root: &Path, line: &str, stdin: &str) -> std::process::Output {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_emorl"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-c", line])
        .current_dir(root)
        .env("PATH", path)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("EMORL_GOEMOTIONS_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn readme_commands_run_as_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A clone's layout: the repository root with ../shared beside it.
    let root = tmp.path().join("emorl");
    std::fs::create_dir(&root).expect("mkdir");
    let shared = common::root()
        .join("../shared")
        .canonicalize()
        .expect("../shared");
    std::os::unix::fs::symlink(&shared, tmp.path().join("shared")).expect("link shared");
    // The clone's shipped configs (sweep files and training configs).
    std::os::unix::fs::symlink(common::root().join("configs"), root.join("configs"))
        .expect("link configs");

    // The `<time>` of the README's checkpoint commands: a run made here
    // under that name (stories260K, one RL update), so that the commands
    // that read a trained agent run as written with `<time>` filled in.
    let o = run_line(
        &root,
        "emorl train --env dialogue --agent llm-erm --model ../shared/models/stories260k-f32.gguf \
         --episodes 1 --out runs/dialogue-llm-erm-readme agent_config.threads=1 \
         agent_config.rl.prompts_per_update=2 agent_config.rl.samples_per_prompt=2 \
         agent_config.agent.max_new_tokens=8 agent_config.encoder_pretrain.steps=5 \
         agent_config.erm_text.epochs=1 agent_config.erm_text.per_class=5 \
         agent_config.erm_text.test_per_class=5",
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let commands = readme_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    let mut ran = 0;
    for line in &commands {
        let listed = NOT_RUN.iter().find(|(p, _)| names(p, line));
        if let Some((_, why)) = listed {
            eprintln!("not run ({why}): {line}");
            continue;
        }
        let cmd = after_setup(line).replace("<time>", "readme");
        assert!(
            cmd.starts_with("emorl "),
            "README command neither run nor listed in NOT_RUN: {line}"
        );
        // Interactive commands get a short session on stdin.
        let stdin = if cmd.starts_with("emorl play") {
            "I can help with that.\nHere is the answer.\nYou're welcome.\nGoodbye.\n"
        } else if cmd.starts_with("emorl chat") {
            "Hello!\n\n"
        } else {
            ""
        };
        let t0 = std::time::Instant::now();
        let o = run_line(&root, &cmd, stdin);
        eprintln!("ran in {:.1} s: {line}", t0.elapsed().as_secs_f64());
        assert!(
            o.status.success(),
            "README command failed: {line}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 9, "only {ran} README commands ran");
    // Every exemption still names a README command (a stale one would hide
    // nothing, but a mistyped one lets a slow command run).
    for (pattern, _) in NOT_RUN {
        let used = commands.iter().any(|line| names(pattern, line));
        assert!(used, "NOT_RUN pattern matches no README command: {pattern}");
    }
    // They wrote their runs where the README says: runs/ under the root.
    assert!(root.join("runs").read_dir().expect("runs/").count() >= 4);
}

/// Every relative link of README.md and docs/ names a file that exists
/// (pages moved between them must not leave dead links).
#[test]
fn links_between_pages_resolve() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let dir = page.parent().expect("page dir");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || target.starts_with('#') || target.contains(' ') {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            assert!(
                dir.join(path).exists(),
                "{}: the link to {target} names no file",
                page.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} links checked");
}
