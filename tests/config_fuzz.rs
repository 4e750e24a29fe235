//! The config fuzz target's check (app/fuzz, `train_config`) in the
//! normal suite: seeded mutations of every shipped training config and of a
//! few written ones — bytes flipped, dropped and inserted, values replaced
//! by hostile numbers — must each resolve to `Ok` or `Err`, never a panic,
//! and an accepted config must hold what validation promises.

mod common;

use emorl_core::{EmoRng, RngKind};

/// Values a careless or hostile file might hold.
const HOSTILE: &[&str] = &[
    "-1",
    "0",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "9223372036854775807",
    "\"\"",
    "[]",
    "[[]]",
    "{}",
    "true",
    "0.0",
    "1e-320",
    "\"../../../../etc/passwd\"",
    "[1e308, -1]",
];

fn seeds() -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(common::root().join("configs/train"))
        .expect("configs/train")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    texts.push(
        "env = \"dialogue\"\nagent = \"llm-erm\"\nepisodes = 3\n[agent_config]\nthreads = 1\n\
         [agent_config.rl]\nlr = 0.05\nlr_scale = { \"erm.logit\" = 10.0 }\n\
         [agent_config.agent]\nmax_new_tokens = 16\ntemperature = 0.7\n\
         [agent_config.agent.steering]\nlayers = [-4, -1]\n"
            .to_string(),
    );
    texts.push(
        "env = \"gridworld\"\nagent = \"fear-dqn\"\n[agent_config]\nlearning_rate = 0.001\n\
         hidden = [64, 64]\n[agent_config.fear]\ntype = \"decoupled\"\n"
            .to_string(),
    );
    texts.push("env = \"v2-two-door\"\nagent = \"regret-ed\"\nlog_every = 5\n".to_string());
    texts
}

fn mutate(text: &str, rng: &mut EmoRng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.randint(4) {
        let at = if bytes.is_empty() {
            0
        } else {
            rng.randint(bytes.len())
        };
        match rng.randint(5) {
            0 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            1 => {
                let set = b"=[]{}\".,#\n0-";
                bytes.insert(at, set[rng.randint(set.len())]);
            }
            2 if !bytes.is_empty() => bytes[at] = rng.randint(128) as u8,
            _ => {
                // Replace the value after some `=` by a hostile one.
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let eqs: Vec<usize> = s.match_indices('=').map(|(i, _)| i).collect();
                if eqs.is_empty() {
                    continue;
                }
                let i = eqs[rng.randint(eqs.len())];
                let end = s[i..].find('\n').map_or(s.len(), |e| i + e);
                let value = HOSTILE[rng.randint(HOSTILE.len())];
                bytes = format!("{}= {value}{}", &s[..i], &s[end..]).into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_configs_resolve_or_fail_cleanly() {
    let seeds = seeds();
    let mut rng = EmoRng::new(RngKind::Fast, 7);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..20_000 {
        let text = mutate(&seeds[i % seeds.len()], &mut rng);
        let result = std::panic::catch_unwind(|| emorl::train::resolve_text("fuzz.toml", &text));
        match result {
            Ok(Ok(cfg)) => {
                assert!(cfg.episodes >= 1 && cfg.max_steps >= 1, "{text}");
                assert_ne!(cfg.checkpoint_every, Some(0), "{text}");
                accepted += 1;
            }
            Ok(Err(e)) => {
                let line = format!("{e:#}");
                assert!(!line.is_empty() && !line.contains("panicked"), "{text}");
                refused += 1;
            }
            Err(_) => panic!("resolving this config panicked:\n{text}"),
        }
    }
    // Both outcomes happen: the mutations are neither all harmless nor all fatal.
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}
