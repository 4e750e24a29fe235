//! What each subcommand does. [`run_light`] runs the commands that need no
//! libtorch — listing, tabular training and the tabular tables — and is all
//! the `emorl` executable links, so those start without libtorch's static
//! initialisation (≈ 0.25 s); every other command is handed, with the same
//! arguments, to the `emorl-torch` executable beside it, which runs [`run`].

use crate::cli::{
    Cli, Command, ConfigWhat, EvalWhat, ReproduceCli, RunSpec, SweepAction, SweepCli,
};
use crate::train;
use anyhow::Result;
use std::path::PathBuf;

/// Runs `cli` if it needs no libtorch; `Ok(false)` (having written nothing)
/// when it does.
pub fn run_light(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Config {
            what: ConfigWhat::Show { run, overrides },
        } => config_show(run, overrides)?,
        Command::Train(t) => {
            match train::train_light(&t.run.into_args(t.overrides, t.out, t.runs_dir, t.resume))? {
                Some(dir) => println!("{}", dir.display()),
                None => return Ok(false),
            }
        }
        Command::Reproduce(r) => {
            let args = reproduce_args(r)?;
            match crate::reproduce::reproduce_light(&args)? {
                Some(dir) => eprintln!("written to {}", dir.display()),
                None => return Ok(false),
            }
        }
        Command::Sweep(s) => sweep(s)?,
        Command::Tables => tables(),
        Command::Envs => envs(),
        Command::Agents => agents(),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `emorl sweep`: runs start `emorl train` processes, which hand over to
/// `emorl-torch` themselves where they need it, so a sweep never does.
fn sweep(s: SweepCli) -> Result<()> {
    match (s.action, s.file) {
        (Some(SweepAction::Collect { dir }), _) => crate::sweep::collect_dir(&dir),
        (Some(SweepAction::RunTask { dir, task, jobs }), _) => {
            let jobs = match jobs {
                Some(j) => j,
                None => std::env::var("SLURM_CPUS_PER_TASK")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            };
            let jobs = emorl_core::parallelism::resolve_threads("--jobs", jobs)?;
            crate::sweep::run_task(&dir, task, jobs)
        }
        (None, Some(file)) => {
            let args = crate::sweep::SweepArgs {
                file,
                backend: s.cluster.backend,
                jobs: emorl_core::parallelism::resolve_threads("--jobs", s.jobs)?,
                out: s.out,
                runs_dir: s.runs_dir,
                slurm: s.cluster.submission(s.runs_per_task),
            };
            let dir = crate::sweep::sweep(&args)?;
            if args.backend == crate::cluster::Backend::Local {
                eprintln!("written to {}", dir.display());
            }
            Ok(())
        }
        (None, None) => anyhow::bail!("give a sweep file, or `collect DIR`"),
    }
}

/// `emorl config show`: the resolved configuration as TOML.
fn config_show(run: RunSpec, overrides: Vec<String>) -> Result<()> {
    let cfg = train::resolve(&run.into_args(overrides, None, PathBuf::from("runs"), false))?;
    print!("{}", toml::to_string(&cfg)?);
    Ok(())
}

fn reproduce_args(r: ReproduceCli) -> Result<crate::reproduce::ReproduceArgs> {
    let spec = crate::reproduce::table(&r.table)?;
    Ok(crate::reproduce::ReproduceArgs {
        options: crate::reproduce::ReproduceOptions {
            table: r.table,
            seeds: r.seeds.unwrap_or(spec.default_seeds),
            seed_offset: r.seed_offset,
            blocks: r.blocks.unwrap_or(spec.default_blocks),
            rng: r.rng.unwrap_or(spec.default_rng),
            permutations: r.permutations,
            episodes: r.episodes,
            model: r.model,
        },
        config: r.config,
        agents: r.agents,
        goemotions: r.goemotions,
        jobs: emorl_core::parallelism::resolve_threads("--jobs", r.jobs)?,
        out: r.out,
        out_root: r.runs_dir,
        backend: r.cluster.backend,
        slurm: r.cluster.submission(None),
        block: r.block,
    })
}

/// Runs any command (the `emorl-torch` executable).
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Config {
            what: ConfigWhat::Show { run, overrides },
        } => config_show(run, overrides)?,
        Command::Train(t) => {
            let dir = train::train(&t.run.into_args(t.overrides, t.out, t.runs_dir, t.resume))?;
            println!("{}", dir.display());
        }
        Command::Eval {
            what:
                EvalWhat::Llm {
                    checkpoint,
                    model,
                    bf16,
                    seeds,
                    seed_offset,
                    config,
                    goemotions,
                    out,
                    runs_dir,
                },
        } => {
            let dir = crate::eval_llm::eval_llm(&crate::eval_llm::EvalArgs {
                checkpoint,
                model,
                bf16,
                seeds,
                seed_offset,
                config,
                goemotions,
                out,
                out_root: runs_dir,
            })?;
            eprintln!("written to {}", dir.display());
        }
        Command::Chat {
            checkpoint,
            model,
            weights,
            max_turns,
        } => crate::chat::chat(&checkpoint, model.as_deref(), weights, max_turns)?,
        Command::Reproduce(r) => {
            let dir = crate::reproduce::reproduce(&reproduce_args(r)?)?;
            eprintln!("written to {}", dir.display());
        }
        Command::Sweep(s) => sweep(s)?,
        Command::Play { env, seed, data } => crate::play::play(&env, seed, data)?,
        Command::Mcp { out, runs_dir } => crate::serve::mcp_stdio(out.as_deref(), &runs_dir)?,
        Command::Serve {
            host,
            port,
            out,
            token,
            runs_dir,
            model,
            checkpoint,
            engine_only,
            weights,
            batch,
            batch_wait_ms,
            queue,
            threads,
            goemotions,
        } => {
            let threads = emorl_core::parallelism::resolve_threads("--threads", threads)?;
            crate::serve::serve(crate::serve::ServeArgs {
                host,
                port,
                out,
                runs_dir,
                token,
                speaker: (!engine_only).then(|| crate::serve::SpeakerSpec {
                    model,
                    checkpoint,
                    weights,
                    batch: batch as usize,
                    batch_wait: std::time::Duration::from_millis(batch_wait_ms),
                    queue: queue as usize,
                    threads,
                }),
                goemotions,
            })?
        }
        Command::Generate(g) => crate::generate::generate(g)?,
        Command::Tables => tables(),
        Command::Envs => envs(),
        Command::Agents => agents(),
        Command::Info => {
            println!("emorl {}", env!("CARGO_PKG_VERSION"));
            println!("libtorch threads: {}", tch::get_num_threads());
            println!("cuda available: {}", tch::Cuda::is_available());
            let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
            println!(
                "libtorch check: sum([1,2,3]) = {}",
                t.sum(tch::Kind::Float).double_value(&[])
            );
        }
    }
    Ok(())
}

fn tables() {
    for t in &crate::reproduce::TABLES {
        println!("{:<12} {}", t.id, t.description);
        let blocks = if t.default_blocks > 1 {
            format!(" x {} blocks", t.default_blocks)
        } else {
            String::new()
        };
        println!(
            "{:<12} default: {} seeds{blocks}, rng {}",
            "", t.default_seeds, t.default_rng
        );
    }
}

fn envs() {
    for e in crate::catalog::envs().entries() {
        let family = match e.make {
            crate::catalog::EnvFamily::Discrete(_) => "discrete",
            crate::catalog::EnvFamily::Text(_) => "text",
        };
        println!("{:<20} {:<9} {}", e.id, family, e.description);
    }
}

fn agents() {
    let envs = crate::catalog::envs();
    for e in crate::catalog::agents().entries() {
        let family = match e.make {
            crate::catalog::AgentFamily::Tabular(_) => "tabular",
            crate::catalog::AgentFamily::Dqn(_) => "dqn",
            crate::catalog::AgentFamily::Scripted(_) => "scripted",
            crate::catalog::AgentFamily::Llm(_) => "llm",
        };
        let accepted: Vec<&str> = envs
            .entries()
            .iter()
            .filter(|env| crate::catalog::trains_in(&e.make, &env.make))
            .map(|env| env.id)
            .collect();
        let discrete: Vec<&str> = envs
            .entries()
            .iter()
            .filter(|env| matches!(env.make, crate::catalog::EnvFamily::Discrete(_)))
            .map(|env| env.id)
            .collect();
        let accepted = if accepted == discrete {
            "every discrete env".to_string()
        } else {
            accepted.join(", ")
        };
        println!("{:<22} {:<8} {}", e.id, family, e.description);
        println!("{:<22} {:<8} trains in: {accepted}", "", "");
    }
}
