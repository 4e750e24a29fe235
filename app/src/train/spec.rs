//! The configuration of one `emorl train` run: defaults, the `--config` file
//! and `--set` overrides resolved into one typed, validated [`TrainConfig`]
//! (each agent family's `[agent_config]` checked by its own typed config).

use crate::catalog::{self, AgentFamily, EnvFamily, TextEnv};
use crate::config;
use crate::llm_setup::LlmTrainConfig;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_dqn::DqnConfig;
use emorl_agents_tabular::QLearnerConfig;
use emorl_core::RngKind;
use emorl_envs_text::DialogueConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::{Table, Value};

/// What the user can set; `[agent]` holds the agent's hyperparameters, merged
/// onto the registered agent's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (the run directory is `<out_root>/<name>-<time>`).
    pub name: String,
    pub env: String,
    pub agent: String,
    pub seed: u64,
    pub episodes: usize,
    /// Step cap per episode.
    pub max_steps: usize,
    /// Random-number generator: `fast` or `numpy` (bit-compatible with upstream).
    pub rng: RngKind,
    /// Log a Q-value histogram every this many episodes (and after the last;
    /// at most 500 over a run: longer runs space them out further).
    pub histogram_every: usize,
    /// Tabular agents: write one TensorBoard/metrics record per this many
    /// episodes, each the mean over them (1: every episode). 0 (default):
    /// every episode up to 1000 episodes, else the window that keeps a run
    /// at 1000 records, so that a million short episodes stay readable.
    #[serde(default)]
    pub log_every: usize,
    #[serde(default)]
    pub agent_config: Table,
    /// Environment options (dialogue: `max_turns`, `data`, …); grids take none.
    #[serde(default)]
    pub env_config: Table,
    /// Checkpoint every this many episodes (RL updates for LLM agents),
    /// besides at the end and on Ctrl-C (default 1000 tabular, 50 DQN, 5 LLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// `agent_config`, typed: set once by [`resolve_over`] (the table above
    /// is its serialised form, as `config.toml` holds it).
    #[serde(skip)]
    pub settings: Option<AgentSettings>,
    /// `env_config` of the dialogue environment, typed (set with `settings`).
    #[serde(skip)]
    pub dialogue: Option<DialogueConfig>,
}

/// An agent family's hyperparameters, resolved once (registered defaults
/// merged with the file and overrides, validated).
#[derive(Clone, Debug, PartialEq)]
pub enum AgentSettings {
    Tabular(QLearnerConfig),
    Dqn(Box<DqnConfig>),
    Llm(Box<LlmTrainConfig>),
    Scripted(ScriptedConfig),
}

impl TrainConfig {
    /// The typed agent settings (a config that did not come through
    /// [`resolve_over`] has none).
    pub fn settings(&self) -> Result<&AgentSettings> {
        self.settings
            .as_ref()
            .ok_or_else(|| anyhow!("the config of agent '{}' was not resolved", self.agent))
    }

    /// The dialogue environment's typed settings.
    pub fn dialogue(&self) -> Result<&DialogueConfig> {
        self.dialogue
            .as_ref()
            .ok_or_else(|| anyhow!("environment '{}' is not the dialogue", self.env))
    }
}

/// Default checkpoint interval (episodes) of tabular agents: their episodes
/// take microseconds, a checkpoint a file sync.
pub const TABULAR_CHECKPOINT_EVERY: usize = 1000;

/// Default checkpoint interval (episodes) of DQN agents.
pub const DQN_CHECKPOINT_EVERY: usize = 50;

/// Options of the scripted dialogue policies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedConfig {
    /// Report a `[feeling: …]` tag with each reply (oracle only), so that
    /// Emotional Coherence can be measured.
    #[serde(default)]
    pub feelings: bool,
    /// Log a sample conversation as text every this many episodes (0: never).
    #[serde(default = "default_sample_every")]
    pub sample_every: usize,
}

fn default_sample_every() -> usize {
    20
}

/// Command-line inputs of `emorl train`.
pub struct TrainArgs {
    pub env: Option<String>,
    pub agent: Option<String>,
    pub config: Option<PathBuf>,
    pub seed: Option<u64>,
    pub episodes: Option<usize>,
    pub out: Option<PathBuf>,
    pub out_root: PathBuf,
    pub overrides: Vec<String>,
    /// Continue the run stored in `out` from its last checkpoint.
    pub resume: bool,
}

fn defaults() -> Table {
    let mut t = Table::new();
    t.insert("seed".into(), Value::Integer(0));
    t.insert("max_steps".into(), Value::Integer(100));
    t.insert("rng".into(), Value::String("fast".into()));
    t.insert("histogram_every".into(), Value::Integer(50));
    t
}

/// Merges defaults, the config file, flags and overrides into one config.
pub fn resolve(args: &TrainArgs) -> Result<TrainConfig> {
    resolve_over(args, defaults())
}

/// [`resolve`] of a config file's text alone (no flags), as `emorl train
/// --config FILE` reads it; `origin` names it in errors. (The config fuzz
/// target and its in-suite counterpart drive this.)
pub fn resolve_text(origin: &str, text: &str) -> Result<TrainConfig> {
    resolve_table(config::parse_table(origin, text)?, Vec::new())
}

/// Merges a config file's table over `t`. Its `[agent_config]` and
/// `[env_config]` replace the base's whole (a file states them in full).
fn merge_file(t: &mut Table, mut file: Table) {
    for section in ["agent_config", "env_config"] {
        if let Some(v) = file.remove(section) {
            t.insert(section.into(), v);
        }
    }
    config::merge(t, file);
}

/// [`resolve`] of a configuration given as a table (as if it were the
/// `--config` file) with `overrides` (`key=value`) and no other flags.
pub fn resolve_table(config: Table, overrides: Vec<String>) -> Result<TrainConfig> {
    let mut base = defaults();
    merge_file(&mut base, config);
    let args = TrainArgs {
        env: None,
        agent: None,
        config: None,
        seed: None,
        episodes: None,
        out: None,
        out_root: PathBuf::from("runs"),
        overrides,
        resume: false,
    };
    resolve_over(&args, base)
}

/// [`resolve`] over `base` instead of the defaults (a stored run's config,
/// when it is resumed).
pub fn resolve_over(args: &TrainArgs, base: Table) -> Result<TrainConfig> {
    let mut t = base;
    if let Some(path) = &args.config {
        merge_file(&mut t, config::read_table(path)?);
    }
    if let Some(v) = &args.env {
        t.insert("env".into(), Value::String(v.clone()));
    }
    if let Some(v) = &args.agent {
        t.insert("agent".into(), Value::String(v.clone()));
    }
    if let Some(v) = args.seed {
        t.insert(
            "seed".into(),
            Value::Integer(i64::try_from(v).context("seed too large")?),
        );
    }
    if let Some(v) = args.episodes {
        t.insert(
            "episodes".into(),
            Value::Integer(i64::try_from(v).context("episodes too large")?),
        );
    }
    config::apply_overrides(&mut t, &args.overrides)?;
    for key in ["env", "agent"] {
        if !t.contains_key(key) {
            bail!("no {key} given: pass --{key} ID or set `{key}` in the config file");
        }
    }
    if !t.contains_key("name") {
        let name = format!(
            "{}-{}",
            t["env"].as_str().unwrap_or("env"),
            t["agent"].as_str().unwrap_or("agent")
        );
        t.insert("name".into(), Value::String(name));
    }
    let origin = args
        .config
        .as_ref()
        .map_or("config".to_string(), |p| p.display().to_string());
    // Episodes (RL updates for LLM agents) default by agent family.
    if !t.contains_key("episodes") {
        let is_llm = t["agent"]
            .as_str()
            .and_then(|id| catalog::agents().get(id).ok().map(|e| e.make))
            .is_some_and(|f| matches!(f, AgentFamily::Llm(_)));
        let n = if is_llm {
            crate::llm_setup::DEFAULT_UPDATES
        } else {
            200
        };
        t.insert("episodes".into(), Value::Integer(n as i64));
    }
    let mut cfg: TrainConfig = config::from_table(&origin, t)?;
    if cfg.episodes == 0 {
        bail!("episodes must be at least 1");
    }
    if cfg.max_steps == 0 {
        bail!("max_steps must be at least 1");
    }
    if cfg.checkpoint_every == Some(0) {
        bail!("checkpoint_every must be at least 1");
    }
    // Resolve the agent's hyperparameters now, so unknown keys fail before any work.
    let agents = catalog::agents();
    let family = agents.get(&cfg.agent)?.make;
    let env_family = catalog::envs().get(&cfg.env)?.make;
    match env_family {
        EnvFamily::Text(TextEnv::Dialogue) => {
            let typed: DialogueConfig = config::from_table(
                &format!("{origin} [env_config]"),
                std::mem::take(&mut cfg.env_config),
            )?;
            typed.validate()?;
            cfg.env_config = Table::try_from(&typed).context("env config")?;
            cfg.dialogue = Some(typed);
        }
        _ if !cfg.env_config.is_empty() => {
            bail!("environment '{}' takes no env_config options", cfg.env)
        }
        _ => {}
    }
    match family {
        AgentFamily::Tabular(_) => {
            cfg.checkpoint_every.get_or_insert(TABULAR_CHECKPOINT_EVERY);
        }
        AgentFamily::Dqn(_) => {
            cfg.checkpoint_every.get_or_insert(DQN_CHECKPOINT_EVERY);
        }
        AgentFamily::Llm(_) => {
            cfg.checkpoint_every
                .get_or_insert(crate::llm_setup::LLM_CHECKPOINT_EVERY);
        }
        AgentFamily::Scripted(_) if cfg.checkpoint_every.is_some() => {
            bail!("checkpoint_every applies to trained agents only")
        }
        AgentFamily::Scripted(_) => {}
    }
    match family {
        AgentFamily::Tabular(make) => {
            let mut full = Table::try_from(make()).context("agent defaults")?;
            config::merge(&mut full, std::mem::take(&mut cfg.agent_config));
            let typed: QLearnerConfig =
                config::from_table(&format!("{origin} [agent_config]"), full)?;
            typed.validate()?;
            cfg.agent_config = Table::try_from(&typed).context("agent config")?;
            cfg.settings = Some(AgentSettings::Tabular(typed));
        }
        AgentFamily::Dqn(make) => {
            let mut full = Table::try_from(make()).context("agent defaults")?;
            config::merge(&mut full, std::mem::take(&mut cfg.agent_config));
            let typed: DqnConfig = config::from_table(&format!("{origin} [agent_config]"), full)?;
            typed.validate()?;
            cfg.agent_config = Table::try_from(&typed).context("agent config")?;
            cfg.settings = Some(AgentSettings::Dqn(Box::new(typed)));
        }
        AgentFamily::Llm(_) => {
            let mut typed = crate::llm_setup::resolve_config(
                &format!("{origin} [agent_config]"),
                std::mem::take(&mut cfg.agent_config),
            )?;
            // The run's length is `episodes` (RL updates): the stored config
            // says so in both places.
            typed.rl.updates = cfg.episodes;
            cfg.agent_config = Table::try_from(&typed).context("agent config")?;
            cfg.settings = Some(AgentSettings::Llm(Box::new(typed)));
        }
        AgentFamily::Scripted(_) => {
            let typed: ScriptedConfig = config::from_table(
                &format!("{origin} [agent_config]"),
                std::mem::take(&mut cfg.agent_config),
            )?;
            cfg.agent_config = Table::try_from(&typed).context("agent config")?;
            cfg.settings = Some(AgentSettings::Scripted(typed));
        }
    }
    Ok(cfg)
}

/// Flattens a config into `key -> value` rows (nested keys joined by '.').
pub fn flatten(prefix: &str, t: &Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(inner) => flatten(&key, inner, out),
            Value::Array(items) if items.iter().any(Value::is_table) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Table(inner) = item {
                        flatten(&format!("{key}.{i}"), inner, out);
                    }
                }
            }
            other => out.push((key, other.clone())),
        }
    }
}
