//! Starting and continuing training runs in their run directory: a new run
//! gets an empty, locked directory; `--resume` continues a stored run from its
//! last checkpoint, with the stored configuration, or is refused.

use super::spec::{flatten, resolve_over, TrainArgs, TrainConfig};
use crate::interrupt::{self, Interrupted};
use anyhow::{anyhow, bail, Context, Result};
use emorl_core::{EmoRng, RngHandle};
use emorl_log::{EventWriter, HParamValue, LogError, MetricsWriter, RunDir, CONFIG_FILE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Value;

/// Where a run's training loop stood at a checkpoint (an episode boundary).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Episodes finished: the index of the next one.
    pub episodes_done: usize,
    /// Environment steps so far.
    pub global_step: i64,
    /// The generator the agent and environment share, after the last episode.
    pub rng: EmoRng,
    /// Returns of the latest episodes, for the closing summary.
    pub recent_returns: Vec<f64>,
}

impl Progress {
    /// Before the first episode.
    pub fn start(rng: EmoRng) -> Self {
        Progress {
            episodes_done: 0,
            global_step: 0,
            rng,
            recent_returns: Vec::new(),
        }
    }

    /// Counts one finished episode, keeping the last `window` returns.
    pub fn finish_episode(&mut self, steps: usize, episode_return: f64, window: usize) {
        self.episodes_done += 1;
        self.global_step += steps as i64;
        self.recent_returns.push(episode_return);
        let excess = self.recent_returns.len().saturating_sub(window.max(1));
        self.recent_returns.drain(..excess);
    }
}

/// How many recent returns the closing summary averages: a tenth of the
/// run, at most 1000 (they travel in every checkpoint).
pub fn summary_window(episodes: usize) -> usize {
    (episodes / 10).clamp(1, 1000)
}

/// How a training loop gets its run directory.
pub enum Start<'a> {
    /// A new run: an empty directory is created and locked once the agent is built.
    New(&'a TrainArgs),
    /// `--resume`: the locked directory of a stored run with this configuration.
    Resume(RunDir),
}

impl Start<'_> {
    /// The locked run directory and whether it continues a stored run.
    pub fn open(self, cfg: &TrainConfig) -> Result<(RunDir, bool)> {
        match self {
            Start::New(args) => Ok((open_new(cfg, args)?, false)),
            Start::Resume(run) => Ok((run, true)),
        }
    }

    /// Opens the run of an episode loop and, when it continues a stored
    /// run, the loop's state from its checkpoint (`load` returns the saved
    /// [`Progress`] after restoring the agent, or `None` before the first
    /// checkpoint); the shared generator is restored with it. `None` when
    /// the stored run is already complete.
    pub fn open_episodes(
        self,
        cfg: &TrainConfig,
        rng: &RngHandle,
        load: impl FnOnce(&RunDir) -> Result<Option<Progress>>,
    ) -> Result<Opened> {
        let (run, resumed) = self.open(cfg)?;
        let mut state = Progress::start(rng.snapshot());
        if resumed {
            if let Some(saved) = load(&run)? {
                rng.with(|r| *r = saved.rng.clone());
                state = saved;
            }
            if !continue_run(&run, cfg, state.episodes_done)? {
                return Ok(Opened {
                    run,
                    resumed,
                    state,
                    complete: true,
                });
            }
        }
        Ok(Opened {
            run,
            resumed,
            state,
            complete: false,
        })
    }
}

/// An episode loop's run, as [`Start::open_episodes`] opened it.
pub struct Opened {
    pub run: RunDir,
    /// Whether it continues a stored run.
    pub resumed: bool,
    /// Where the loop starts.
    pub state: Progress,
    /// A resumed run that already has all its episodes: nothing to train.
    pub complete: bool,
}

/// Creates and locks the directory of a new run and writes its config.
pub fn open_new(cfg: &TrainConfig, args: &TrainArgs) -> Result<RunDir> {
    let run = match &args.out {
        Some(p) => RunDir::new_at(p),
        None => RunDir::create(&args.out_root, &cfg.name),
    }
    .map_err(|e| explain(e, true))?;
    let text = toml::to_string(cfg).context("cannot serialise the resolved config")?;
    run.write_config(&text)?;
    Ok(run)
}

/// A run-directory error as the user should read it.
pub fn explain(e: LogError, resumable: bool) -> anyhow::Error {
    match e {
        LogError::Locked { path } => anyhow!(
            "{} is in use by another emorl process; wait for it to finish or choose another --out",
            path.display()
        ),
        LogError::NotEmpty { path, entry } if resumable && entry == CONFIG_FILE => anyhow!(
            "{} already holds a run ({entry}); continue it with --resume or choose a new --out",
            path.display()
        ),
        LogError::NotEmpty { path, entry } => anyhow!(
            "{} is not empty (it holds {entry}); choose a new --out",
            path.display()
        ),
        other => anyhow::Error::new(other).context("cannot use the run directory"),
    }
}

/// Locks the run directory named by `--out` and resolves the request over its
/// stored configuration; refused when any setting but `episodes` (which may
/// grow) and `checkpoint_every` differs.
pub fn open_stored(args: &TrainArgs) -> Result<(TrainConfig, RunDir)> {
    let Some(dir) = &args.out else {
        bail!("--resume needs --out DIR, the run directory to continue");
    };
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        bail!(
            "{} holds no run to resume (no {CONFIG_FILE})",
            dir.display()
        );
    }
    let run = RunDir::at(dir).map_err(|e| explain(e, false))?;
    let origin = config_path.display().to_string();
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {origin}"))?;
    let table = crate::config::parse_table(&origin, &text)?;
    let stored: TrainConfig = crate::config::from_table(&origin, table.clone())?;
    let refuse = |key: &str, was: &str, now: &str| {
        anyhow!(
            "cannot resume {}: its run has {key} = {was}, this command asks for {key} = {now}; \
             leave the setting out to keep the stored one, or choose a new --out",
            dir.display()
        )
    };
    // Another environment or agent changes which settings exist: say so first.
    for (key, was, now) in [
        ("env", &stored.env, &args.env),
        ("agent", &stored.agent, &args.agent),
    ] {
        if let Some(now) = now.as_ref().filter(|now| *now != was) {
            return Err(refuse(key, &format!("{was:?}"), &format!("{now:?}")));
        }
    }
    let requested = resolve_over(args, table)?;
    if let Some((key, was, now)) = first_difference(&stored, &requested)? {
        return Err(refuse(&key, &was, &now));
    }
    Ok((requested, run))
}

/// Settings that may change when a run is continued (an LLM run's
/// `rl.updates` mirrors `episodes`).
const MAY_CHANGE: [&str; 3] = ["episodes", "agent_config.rl.updates", "checkpoint_every"];

/// The first setting (flattened key, stored value, requested value) that
/// differs, ignoring [`MAY_CHANGE`].
fn first_difference(
    stored: &TrainConfig,
    requested: &TrainConfig,
) -> Result<Option<(String, String, String)>> {
    let rows = |cfg: &TrainConfig| -> Result<BTreeMap<String, Value>> {
        let table = toml::Table::try_from(cfg).context("config")?;
        let mut rows = Vec::new();
        flatten("", &table, &mut rows);
        Ok(rows.into_iter().collect())
    };
    let (a, b) = (rows(stored)?, rows(requested)?);
    let show = |v: Option<&Value>| v.map_or("(unset)".to_string(), Value::to_string);
    Ok(a.keys()
        .chain(b.keys())
        .filter(|k| !MAY_CHANGE.contains(&k.as_str()))
        .find(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), show(a.get(k)), show(b.get(k)))))
}

/// Before a resumed loop continues from `done` episodes: refuses fewer
/// episodes than are done, and records a changed `episodes` or
/// `checkpoint_every` in `config.toml`. Returns false when the run is already
/// complete (nothing to do).
pub fn continue_run(run: &RunDir, cfg: &TrainConfig, done: usize) -> Result<bool> {
    if cfg.episodes < done {
        bail!(
            "{} has {done} episodes done; --episodes must be at least {done} to resume it",
            run.path().display()
        );
    }
    if cfg.episodes == done {
        eprintln!(
            "{} is complete ({done} of {done} episodes); nothing to do (raise --episodes to train on)",
            run.path().display()
        );
        return Ok(false);
    }
    let text = toml::to_string(cfg).context("cannot serialise the resolved config")?;
    let path = run.path().join(CONFIG_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        run.write_config(&text)?;
    }
    eprintln!(
        "resuming {} at episode {done} of {}",
        run.path().display(),
        cfg.episodes
    );
    Ok(true)
}

/// The event and metrics writers of a loop starting at episode `first`: a
/// resumed run drops what was logged from `first` on (see
/// [`RunDir::resumed_event_writer`] and [`RunDir::resumed_metrics_writer`]).
pub fn writers(run: &RunDir, resumed: bool, first: usize) -> Result<(EventWriter, MetricsWriter)> {
    Ok(if resumed {
        (
            run.resumed_event_writer(first as i64)?,
            run.resumed_metrics_writer(first as i64)?,
        )
    } else {
        (run.event_writer()?, run.metrics_writer()?)
    })
}

/// Ends episode `ep` of a checkpointed loop: `save` runs (with the generator
/// recorded in `state`) every `every` episodes, after the last one and when
/// Ctrl-C was pressed; after Ctrl-C the run then stops with [`Interrupted`].
pub fn end_episode(
    run: &RunDir,
    cfg: &TrainConfig,
    ep: usize,
    every: usize,
    state: &mut Progress,
    rng: &RngHandle,
    save: impl FnOnce(&Progress) -> Result<()>,
) -> Result<()> {
    // Read once: a Ctrl-C arriving now must not stop the run unsaved.
    let stop = interrupt::requested();
    let last = ep + 1 == cfg.episodes;
    if stop || last || (ep + 1).is_multiple_of(every) {
        state.rng = rng.snapshot();
        save(state)?;
    }
    if stop && !last {
        return Err(Interrupted {
            run: run.path().to_path_buf(),
            episodes_done: state.episodes_done,
            episodes: cfg.episodes,
        }
        .into());
    }
    Ok(())
}

/// Reads a JSON checkpoint file, if there is one.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a readable checkpoint", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates and locks the directory of a new run (refused if `--out` already
/// holds anything) and writes its config.
pub(crate) fn open_run(cfg: &TrainConfig, args: &TrainArgs) -> Result<RunDir> {
    open_new(cfg, args)
}

pub(crate) fn log_config(writer: &mut EventWriter, cfg: &TrainConfig) -> Result<()> {
    let table = toml::Table::try_from(cfg).context("config")?;
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
