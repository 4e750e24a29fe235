//! `emorl train`: one agent in one environment, logged to TensorBoard.

use crate::catalog::{self, AgentFamily, EnvFamily, TextEnv};
use crate::config;
use crate::interrupt;
use crate::resume::{self, Progress, Start};
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_tabular::{run_episode, QLearner, QLearnerConfig, QLearnerState};
use emorl_core::{RngHandle, RngKind};
use emorl_log::{EventWriter, HParamValue, RunDir};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
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
}

/// Default checkpoint interval (episodes) of tabular agents: their episodes
/// take microseconds, a checkpoint a file sync.
pub const TABULAR_CHECKPOINT_EVERY: usize = 1000;
/// Default checkpoint interval (episodes) of DQN agents.
pub const DQN_CHECKPOINT_EVERY: usize = 50;

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
    let mut t = defaults();
    merge_file(&mut t, config::parse_table(origin, text)?);
    let args = TrainArgs {
        env: None,
        agent: None,
        config: None,
        seed: None,
        episodes: None,
        out: None,
        out_root: PathBuf::from("runs"),
        overrides: Vec::new(),
        resume: false,
    };
    resolve_over(&args, t)
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
            crate::llm::DEFAULT_UPDATES
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
            let typed: emorl_envs_dialogue::DialogueConfig = config::from_table(
                &format!("{origin} [env_config]"),
                std::mem::take(&mut cfg.env_config),
            )?;
            typed.validate()?;
            cfg.env_config = Table::try_from(typed).context("env config")?;
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
                .get_or_insert(crate::llm::LLM_CHECKPOINT_EVERY);
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
            cfg.agent_config = Table::try_from(typed).context("agent config")?;
        }
        AgentFamily::Dqn(make) => {
            let mut full = Table::try_from(make()).context("agent defaults")?;
            config::merge(&mut full, std::mem::take(&mut cfg.agent_config));
            let typed: emorl_agents_dqn::DqnConfig =
                config::from_table(&format!("{origin} [agent_config]"), full)?;
            typed.validate()?;
            cfg.agent_config = Table::try_from(typed).context("agent config")?;
        }
        AgentFamily::Llm(_) => {
            let mut typed = crate::llm::resolve_config(
                &format!("{origin} [agent_config]"),
                std::mem::take(&mut cfg.agent_config),
            )?;
            // The run's length is `episodes` (RL updates): the stored config
            // says so in both places.
            typed.rl.updates = cfg.episodes;
            cfg.agent_config = Table::try_from(typed).context("agent config")?;
        }
        AgentFamily::Scripted(_) => {
            let typed: crate::text::ScriptedConfig = config::from_table(
                &format!("{origin} [agent_config]"),
                std::mem::take(&mut cfg.agent_config),
            )?;
            cfg.agent_config = Table::try_from(typed).context("agent config")?;
        }
    }
    Ok(cfg)
}

/// Runs `emorl train`; returns the run directory.
pub fn train(args: &TrainArgs) -> Result<PathBuf> {
    let (cfg, start) = if args.resume {
        let (cfg, run) = resume::open_stored(args)?;
        (cfg, Start::Resume(run))
    } else {
        let cfg = resolve(args)?;
        // Before building agents or loading models: a taken --out fails fast.
        if let Some(out) = &args.out {
            RunDir::check_new_at(out).map_err(|e| resume::explain(e, true))?;
        }
        (cfg, Start::New(args))
    };
    let envs = catalog::envs();
    let env_family = envs.get(&cfg.env)?.make;
    let agent_family = catalog::agents().get(&cfg.agent)?.make;
    if let (Start::Resume(_), AgentFamily::Scripted(_)) = (&start, agent_family) {
        bail!(
            "--resume continues trained agents; '{}' is scripted and runs start anew (choose a new --out)",
            cfg.agent
        );
    }
    match (env_family, agent_family) {
        (EnvFamily::Discrete(make_env), AgentFamily::Tabular(_)) => {
            train_tabular(&cfg, make_env, start)
        }
        (EnvFamily::Discrete(make_env), AgentFamily::Dqn(_)) => {
            crate::deep::train_dqn(&cfg, make_env, start)
        }
        (EnvFamily::Text(_), AgentFamily::Dqn(_)) => bail!(
            "agent '{}' is a DQN and cannot act in the text environment '{}' (try env 'gridworld')",
            cfg.agent,
            cfg.env
        ),
        (EnvFamily::Text(TextEnv::Dialogue), AgentFamily::Scripted(kind)) => {
            // The environment first: bad data files leave no run directory.
            let prepared = crate::text::prepare_scripted_dialogue(&cfg)?;
            let run = open_run(&cfg, args)?;
            crate::text::train_scripted_dialogue(&cfg, kind, prepared, &run)?;
            Ok(run.path().to_path_buf())
        }
        (EnvFamily::Text(TextEnv::Dialogue), AgentFamily::Llm(kind)) => {
            // Model and agent first: a bad model file leaves no run directory.
            let prepared = crate::llm::prepare(&cfg, kind)?;
            let (run, resumed) = start.open(&cfg)?;
            crate::llm::train_llm(&cfg, prepared, &run, resumed)?;
            Ok(run.path().to_path_buf())
        }
        (_, AgentFamily::Llm(_)) => bail!(
            "agent '{}' is a language-model agent; it trains in env 'dialogue'",
            cfg.agent
        ),
        (EnvFamily::Text(_), AgentFamily::Tabular(_)) => bail!(
            "agent '{}' is tabular and cannot act in the text environment '{}' (try env 'v2-threat-grid')",
            cfg.agent,
            cfg.env
        ),
        (EnvFamily::Discrete(_), AgentFamily::Scripted(_)) | (EnvFamily::Text(_), AgentFamily::Scripted(_)) => bail!(
            "agent '{}' is a scripted dialogue policy; it only acts in env 'dialogue'",
            cfg.agent
        ),
    }
}

/// Creates and locks the directory of a new run (refused if `--out` already
/// holds anything) and writes its config.
pub(crate) fn open_run(cfg: &TrainConfig, args: &TrainArgs) -> Result<RunDir> {
    resume::open_new(cfg, args)
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

pub(crate) fn log_config(writer: &mut EventWriter, cfg: &TrainConfig) -> Result<()> {
    let table = Table::try_from(cfg).context("config")?;
    let mut rows = Vec::new();
    flatten("", &table, &mut rows);
    let text_rows: Vec<(String, String)> = rows
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
        .collect();
    writer.add_config_table("hyperparameters", &text_rows)?;
    let hparams: Vec<(String, HParamValue)> = rows
        .into_iter()
        .map(|(k, v)| {
            let hv = match v {
                Value::Float(f) => HParamValue::Number(f),
                Value::Integer(i) => HParamValue::Number(i as f64),
                Value::Boolean(b) => HParamValue::Bool(b),
                Value::String(s) => HParamValue::String(s),
                other => HParamValue::String(other.to_string()),
            };
            (k, hv)
        })
        .collect();
    writer.add_hparams(&hparams, &["charts/episodic_return".to_string()])?;
    Ok(())
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // Redirected (a log file, a batch job): plain lines, one every
        // `PlainLines::EVERY`, instead of a bar nobody sees.
        let style = ProgressStyle::with_template(&format!(
            "{what}: {{pos}}/{{len}} {{msg}} ({{elapsed}} elapsed, eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_draw_target(indicatif::ProgressDrawTarget::term_like(Box::new(
            PlainLines::default(),
        )));
        // A heartbeat: a line every `PlainLines::EVERY` even while one step
        // (an agent of a table, a long update) runs for many minutes.
        pb.enable_steady_tick(std::time::Duration::from_secs(5));
        return pb;
    }
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    // The spinner turns while a step runs, so a long one does not look hung.
    pb.enable_steady_tick(std::time::Duration::from_millis(250));
    pb
}

/// Counts one finished step of `pb`; a step `loaded` from an earlier run's
/// results took no time, so the time estimate restarts from it and counts
/// only the steps this process runs (otherwise a resumed table promises to
/// finish in weeks, or at once).
pub fn step_done(pb: &ProgressBar, loaded: bool) {
    pb.inc(1);
    if loaded {
        pb.reset_eta();
    }
}

/// A progress "terminal" for redirected output: writes the bar's line to
/// stderr at most once every [`PlainLines::EVERY`] (the first after that
/// long: short commands stay quiet), with no cursor movement or colour.
#[derive(Debug)]
struct PlainLines {
    last: std::sync::Mutex<Instant>,
}

impl Default for PlainLines {
    fn default() -> Self {
        PlainLines {
            last: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl PlainLines {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(30);

    fn emit(&self, s: &str) -> std::io::Result<()> {
        let line = s.trim();
        if line.is_empty() {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < Self::EVERY {
            return Ok(());
        }
        *last = Instant::now();
        eprintln!("{line}");
        Ok(())
    }
}

impl indicatif::TermLike for PlainLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.emit(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.emit(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `checkpoints/train_state.json` holds for a tabular run: the loop's
/// progress and the learner's whole state.
#[derive(Serialize, Deserialize)]
struct TabularCheckpoint {
    progress: Progress,
    learner: QLearnerState,
}

const TABULAR_CHECKPOINT: &str = "checkpoints/train_state.json";

/// Records per run of a tabular agent under the default `log_every`.
const MAX_LOG_RECORDS: usize = 1000;
/// Histogram records per run at most (`histogram_every` is stretched).
const MAX_HISTOGRAMS: usize = 500;

/// Means of per-episode records over a window of episodes (tags in the
/// order first seen; a tag missing from some episodes is averaged over the
/// episodes that have it).
#[derive(Default)]
struct WindowMeans {
    sums: Vec<(String, f64, usize)>,
}

impl WindowMeans {
    fn add(&mut self, record: &[(String, f64)]) {
        for (tag, v) in record {
            match self.sums.iter_mut().find(|(t, _, _)| t == tag) {
                Some((_, sum, n)) => {
                    *sum += v;
                    *n += 1;
                }
                None => self.sums.push((tag.clone(), *v, 1)),
            }
        }
    }

    /// Writes the window's means as one record at `step` (nothing when the
    /// window is empty) and starts the next window.
    fn flush(
        &mut self,
        tb: &mut EventWriter,
        metrics: &mut emorl_log::MetricsWriter,
        step: i64,
    ) -> Result<()> {
        let means: Vec<(String, f64)> = std::mem::take(&mut self.sums)
            .into_iter()
            .map(|(t, sum, n)| (t, sum / n.max(1) as f64))
            .collect();
        if means.is_empty() {
            return Ok(());
        }
        for (tag, v) in &means {
            tb.add_scalar(tag, *v, step)?;
        }
        let fields: Vec<(&str, f64)> = means.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.record(step, &fields)?;
        Ok(())
    }
}

fn train_tabular(
    cfg: &TrainConfig,
    make_env: fn(RngHandle) -> Box<dyn emorl_core::DiscreteEnv>,
    start: Start<'_>,
) -> Result<PathBuf> {
    let agent_cfg: QLearnerConfig = config::from_table("agent_config", cfg.agent_config.clone())?;
    let rng = RngHandle::new(cfg.rng, cfg.seed);
    let mut env = make_env(rng.clone());
    let mut agent = QLearner::new(env.n_states(), env.n_actions(), agent_cfg)
        .map_err(|e| anyhow!("agent '{}': {e}", cfg.agent))?;
    let (run, resumed) = start.open(cfg)?;
    let mut state = Progress::start(rng.snapshot());
    if resumed {
        let path = run.path().join(TABULAR_CHECKPOINT);
        if let Some(ck) = resume::read_json::<TabularCheckpoint>(&path)? {
            agent
                .restore(ck.learner)
                .with_context(|| format!("{} does not fit this agent", path.display()))?;
            rng.with(|r| *r = ck.progress.rng.clone());
            state = ck.progress;
        }
        if !resume::continue_run(&run, cfg, state.episodes_done)? {
            return Ok(run.path().to_path_buf());
        }
    }
    let first = state.episodes_done;
    let (mut tb, mut metrics) = resume::writers(&run, resumed, first)?;
    if first == 0 {
        log_config(&mut tb, cfg)?;
        tb.add_text("env/start", &format!("```\n{}```", env.render()), 0)?;
    }
    interrupt::catch_ctrl_c()?;
    tracing::info!(run = %run.path().display(), env = %cfg.env, agent = %cfg.agent, first, "training");

    let every = cfg.checkpoint_every.unwrap_or(TABULAR_CHECKPOINT_EVERY);
    let window = resume::summary_window(cfg.episodes);
    let log_every = match cfg.log_every {
        0 => cfg.episodes.div_ceil(MAX_LOG_RECORDS).max(1),
        n => n,
    };
    let histogram_every = match cfg.histogram_every {
        0 => 0,
        n => n.max(cfg.episodes.div_ceil(MAX_HISTOGRAMS)),
    };
    let mut window_log = WindowMeans::default();
    let pb = progress(cfg.episodes as u64, "train");
    pb.set_position(first as u64);
    let start = Instant::now();
    let mut steps_here: usize = 0;
    let n_actions = env.n_actions();
    for ep in first..cfg.episodes {
        let mut td_abs = 0.0;
        let mut lr_sum = 0.0;
        let mut min_threat = f64::INFINITY;
        let mut blocked = 0usize;
        let mut action_counts = vec![0usize; n_actions];
        let n_channels = agent.channels().len();
        let mut emotion_steps: Vec<Vec<f64>> = vec![Vec::new(); n_channels];
        let summary = run_episode(
            env.as_mut(),
            &mut agent,
            &rng,
            cfg.max_steps,
            true,
            |st, a| {
                if let Some(u) = st.update {
                    td_abs += u.td_error.abs();
                    lr_sum += u.effective_lr;
                }
                if let Some(d) = st.step.context.threat_distance {
                    min_threat = min_threat.min(d);
                }
                blocked += usize::from(st.step.context.was_blocked);
                if let Some(c) = action_counts.get_mut(st.action) {
                    *c += 1;
                }
                for (trace, ch) in emotion_steps.iter_mut().zip(a.channels()) {
                    trace.push(ch.phasic());
                }
            },
        );
        steps_here += summary.steps;
        let steps = summary.steps.max(1) as f64;
        let step = ep as i64;
        let sps = steps_here as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let mut record: Vec<(String, f64)> = vec![
            ("charts/episodic_return".into(), summary.episode_return),
            ("charts/episodic_length".into(), summary.steps as f64),
            ("charts/SPS".into(), sps),
            ("charts/epsilon".into(), agent.epsilon()),
            ("charts/blocked_steps".into(), blocked as f64),
            ("losses/td_error".into(), td_abs / steps),
            ("charts/learning_rate".into(), lr_sum / steps),
        ];
        if min_threat.is_finite() {
            record.push(("charts/min_threat_distance".into(), min_threat));
        }
        for (a, c) in action_counts.iter().enumerate() {
            record.push((format!("charts/action_rate/{a}"), *c as f64 / steps));
        }
        for (ch, trace) in agent.channels().iter().zip(&emotion_steps) {
            record.push((
                format!("emotion/{}", ch.name()),
                emorl_core::numeric::mean(trace),
            ));
            record.push((format!("emotion/{}_tonic", ch.name()), ch.tonic()));
        }
        let last = ep + 1 == cfg.episodes;
        window_log.add(&record);
        if (ep + 1) % log_every == 0 || last {
            window_log.flush(&mut tb, &mut metrics, step)?;
        }
        if histogram_every > 0 && (ep % histogram_every == 0 || last) {
            tb.add_histogram("histograms/q_values", agent.q_table(), step)?;
            for (ch, trace) in agent.channels().iter().zip(&emotion_steps) {
                tb.add_histogram(&format!("histograms/emotion/{}", ch.name()), trace, step)?;
            }
        }
        state.finish_episode(summary.steps, summary.episode_return, window);
        pb.set_message(format!("return {:.3}", summary.episode_return));
        pb.inc(1);
        let saved = resume::end_episode(&run, cfg, ep, every, &mut state, &rng, |st| {
            // A checkpoint holds every record up to it (a resumed run
            // continues after the checkpoint's episode).
            window_log.flush(&mut tb, &mut metrics, step)?;
            save_tabular(&run, st, &agent, n_actions)
        });
        if let Err(e) = saved {
            pb.finish_and_clear();
            return Err(e);
        }
    }
    pb.finish_and_clear();
    tb.add_text(
        "env/end",
        &format!("```\n{}```", env.render()),
        cfg.episodes as i64,
    )?;
    let recent = emorl_core::numeric::mean(&state.recent_returns);
    eprintln!(
        "trained {} on {} for {} episodes ({} steps, {:.2}s); mean return of the last {}: {recent:.4}",
        cfg.agent,
        cfg.env,
        cfg.episodes,
        state.global_step,
        start.elapsed().as_secs_f64(),
        state.recent_returns.len(),
    );
    Ok(run.path().to_path_buf())
}

/// Writes the checkpoint: `train_state.json` (what a resume needs) and
/// `q_table.json` (the table, to read), each atomically.
fn save_tabular(run: &RunDir, state: &Progress, agent: &QLearner, n_actions: usize) -> Result<()> {
    let q = serde_json::to_vec(&serde_json::json!({
        "n_actions": n_actions,
        "q": agent.q_table(),
    }))?;
    run.write_atomic(Path::new("checkpoints/q_table.json"), &q)?;
    let ck = TabularCheckpoint {
        progress: state.clone(),
        learner: agent.state().context("checkpoint")?,
    };
    run.write_atomic(Path::new(TABULAR_CHECKPOINT), &serde_json::to_vec(&ck)?)?;
    Ok(())
}
