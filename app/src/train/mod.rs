//! `emorl train`: one agent in one environment, logged to TensorBoard and
//! `metrics.jsonl`, checkpointed and resumable. `spec` resolves the
//! configuration, `run` opens and continues run directories, and one file
//! per agent family trains (`tabular`, `dqn`, `scripted`, `llm`).

pub mod dqn;
pub mod llm;
pub mod run;
pub mod scripted;
pub mod spec;
pub mod tabular;

pub use spec::{
    flatten, resolve, resolve_over, resolve_table, resolve_text, TrainArgs, TrainConfig,
};

use crate::catalog::{self, AgentFamily, EnvFamily, TextEnv};
use anyhow::{bail, Result};
use run::Start;
use std::path::PathBuf;

/// A run resolved and checked, not yet started.
struct Prepared<'a> {
    cfg: TrainConfig,
    start: Start<'a>,
    env_family: EnvFamily,
    agent_family: AgentFamily,
}

/// Resolves the configuration (or the stored one with `--resume`) and the
/// families of its environment and agent; writes nothing.
fn prepare(args: &TrainArgs) -> Result<Prepared<'_>> {
    let (cfg, start) = if args.resume {
        let (cfg, run) = run::open_stored(args)?;
        (cfg, Start::Resume(run))
    } else {
        let cfg = resolve(args)?;
        // Before building agents or loading models: a taken --out fails fast.
        if let Some(out) = &args.out {
            emorl_log::RunDir::check_new_at(out).map_err(|e| run::explain(e, true))?;
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
    Ok(Prepared {
        cfg,
        start,
        env_family,
        agent_family,
    })
}

/// `emorl train` for the runs that need no libtorch (tabular agents);
/// `None` for the others, which [`train`] runs. Nothing is written before
/// that answer.
pub fn train_light(args: &TrainArgs) -> Result<Option<PathBuf>> {
    let p = prepare(args)?;
    match (p.env_family, p.agent_family) {
        (EnvFamily::Discrete(make_env), AgentFamily::Tabular(_)) => {
            tabular::train_tabular(&p.cfg, make_env, p.start).map(Some)
        }
        _ => Ok(None),
    }
}

/// Runs `emorl train`; returns the run directory.
pub fn train(args: &TrainArgs) -> Result<PathBuf> {
    let Prepared {
        cfg,
        start,
        env_family,
        agent_family,
    } = prepare(args)?;
    match (env_family, agent_family) {
        (EnvFamily::Discrete(make_env), AgentFamily::Tabular(_)) => {
            tabular::train_tabular(&cfg, make_env, start)
        }
        (EnvFamily::Discrete(make_env), AgentFamily::Dqn(_)) => {
            dqn::train_dqn(&cfg, make_env, start)
        }
        (EnvFamily::Text(_), AgentFamily::Dqn(_)) => bail!(
            "agent '{}' is a DQN and cannot act in the text environment '{}' (try env 'gridworld')",
            cfg.agent,
            cfg.env
        ),
        (EnvFamily::Text(TextEnv::Dialogue), AgentFamily::Scripted(kind)) => {
            // The environment first: bad data files leave no run directory.
            let prepared = scripted::prepare_scripted_dialogue(&cfg)?;
            let run = run::open_run(&cfg, args)?;
            scripted::train_scripted_dialogue(&cfg, kind, prepared, &run)?;
            Ok(run.path().to_path_buf())
        }
        (EnvFamily::Text(TextEnv::Dialogue), AgentFamily::Llm(kind)) => {
            // Model and agent first: a bad model file leaves no run directory.
            let prepared = llm::prepare(&cfg, kind)?;
            let (run, resumed) = start.open(&cfg)?;
            llm::train_llm(&cfg, prepared, &run, resumed)?;
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
