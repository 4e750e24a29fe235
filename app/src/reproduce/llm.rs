//! `emorl reproduce llm-modules`: every LLM agent kind trained by RL on the
//! dialogue environment, then measured three ways — emotion markers under
//! forced emotional states (upstream's metric), dialogue return / safety /
//! helpfulness on held-out conversations, and the frozen model's perplexity
//! of what the agent wrote.

use super::common::{fresh_event_writer, open_run, write_timing, ReproduceArgs};
use super::figure::{self, Curve, CurvePanel};
use crate::llm_setup::{load_model, LlmTrainConfig};
use crate::measure::{
    goemotions_dir, measure, measured_tables, plan_settings, write_tables, MeasureSettings,
    Measured,
};

use crate::progress::{progress, step_done};
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::dual_text::{pretrain_dual_on_dailydialog, DualTextReport};
use emorl_agents_llm::eval::Judge;
use emorl_agents_llm::supervision::{
    pretrain_encoder_on_dialogue, pretrain_erm_on_corpora, EncoderReport, ErmTextReport,
};
use emorl_agents_llm::{AgentKind, LlmAgent, Trainer, UpdateStats};
use emorl_log::RunDir;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Everything measured for one agent (stored as `agents/<id>.json`, so an
/// interrupted reproduction resumes after the last finished agent).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AgentResult {
    agent: String,
    training: Vec<UpdateStats>,
    /// The encoder's supervised phase (agents with an encoder).
    encoder: Option<EncoderReport>,
    /// The ERM's supervised phase on labelled text (agents with an ERM).
    erm_text: Option<ErmTextReport>,
    /// The LoRA adapters' phase on labelled text (`llm-neuro`).
    #[serde(default)]
    lora_text: Option<emorl_agents_llm::lora_text::LoraTextReport>,
    /// The dual adapters' phase on DailyDialog (`llm-dual`).
    #[serde(default)]
    dual_text: Option<DualTextReport>,
    #[serde(flatten)]
    measured: Measured,
    seconds: f64,
}

/// Settings of the reproduction, from the reproduce options and the
/// defaults of `emorl train --agent llm-*`.
struct Plan {
    model: String,
    /// GoEmotions (the judge, the ERM's text phase).
    goemotions: std::path::PathBuf,
    /// DailyDialog's validation dialogues (the ERM's text phase), when found.
    dailydialog: Option<std::path::PathBuf>,
    llm: LlmTrainConfig,
    eval_seeds: Vec<u64>,
    marker_prompts: usize,
    marker_samples: usize,
    /// Held-out DailyDialog examples of the alignment measurement.
    alignment: Vec<emorl_text::DialogueExample>,
    marker_tokens: usize,
}

/// An agent trained as the table trains it: encoder and ERM phases, then
/// RL (agents RL can train), with its training records.
struct Trained {
    agent: LlmAgent,
    training: Vec<UpdateStats>,
    encoder: Option<EncoderReport>,
    erm_text: Option<ErmTextReport>,
    lora_text: Option<emorl_agents_llm::lora_text::LoraTextReport>,
    dual_text: Option<DualTextReport>,
}

fn train_agent(kind: AgentKind, plan: &Plan, seed: u64) -> Result<Trained> {
    let model = load_model(&plan.model, plan.llm.bf16)?;
    let mut agent_cfg = plan.llm.agent.clone();
    agent_cfg.seed = seed;
    let mut agent = LlmAgent::new(model, kind, agent_cfg)?;
    let encoder = match &agent.modules().encoder {
        Some(enc) => Some(pretrain_encoder_on_dialogue(
            enc,
            &plan.llm.rl.env,
            &plan.llm.encoder_pretrain,
            |_, _| {},
        )?),
        None => None,
    };
    let erm_text = pretrain_erm_on_corpora(
        &mut agent,
        &plan.goemotions,
        plan.dailydialog.as_deref(),
        &plan.llm.erm_text,
    )?;
    let lora_text = emorl_agents_llm::lora_text::pretrain_lora_on_corpora(
        &mut agent,
        &plan.goemotions,
        plan.dailydialog.as_deref(),
        &plan.llm.lora_text,
        |_, _, _| {},
    )?;
    let dual_text = match plan.dailydialog.as_deref().and_then(Path::parent) {
        Some(dir) => {
            pretrain_dual_on_dailydialog(&mut agent, dir, &plan.llm.dual_text, seed, |_, _, _| {})?
        }
        None if agent.modules().dual.is_some() && plan.llm.dual_text.steps > 0 => {
            bail!("{kind} learns from DailyDialog first: no DailyDialog files found (set EMORL_DAILYDIALOG_DIR)")
        }
        None => None,
    };
    let mut training = Vec::new();
    if kind.trained_by_rl() {
        if agent.modules().erm.is_some() {
            let pairs = crate::llm_setup::erm_pairs(&plan.llm.rl.env, 16, seed)?;
            for _ in 0..plan.llm.erm_pretrain_steps {
                agent.erm_supervised_step(&pairs)?;
            }
        }
        let mut rl = plan.llm.rl.clone();
        rl.seed = seed;
        let mut trainer = Trainer::new(agent, rl)?;
        training = trainer.train(|_| {})?;
        if let Some(why) = trainer.stopped() {
            tracing::warn!(agent = kind.id(), why, "training stopped early");
        }
        agent = trainer.into_agent();
    }
    Ok(Trained {
        agent,
        training,
        encoder,
        erm_text,
        lora_text,
        dual_text,
    })
}

fn run_agent(
    kind: AgentKind,
    plan: &Plan,
    judge: &Judge,
    seed: u64,
    samples: &mut Vec<String>,
) -> Result<AgentResult> {
    let start = Instant::now();
    let Trained {
        mut agent,
        training,
        encoder,
        erm_text,
        lora_text,
        dual_text,
    } = train_agent(kind, plan, seed)?;
    let settings = MeasureSettings {
        judge,
        env: &plan.llm.rl.env,
        eval_seeds: &plan.eval_seeds,
        marker_prompts: plan.marker_prompts,
        marker_samples: plan.marker_samples,
        marker_tokens: plan.marker_tokens,
        marker_seed: seed ^ 0x6d61_726b,
        alignment: &plan.alignment,
    };
    let measured = measure(&mut agent, kind.id(), &settings, samples)?;
    Ok(AgentResult {
        agent: kind.id().to_string(),
        training,
        encoder,
        erm_text,
        lora_text,
        dual_text,
        measured,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The resolved `[agent_config]` of a table's agents, every default written out.
const AGENT_SETTINGS: &str = "agent_config.toml";

/// The agent's result and whether it was loaded from an earlier run.
fn load_or_run(
    run: &RunDir,
    kind: AgentKind,
    plan: &Plan,
    judge: &Judge,
    seed: u64,
) -> Result<(AgentResult, bool)> {
    let rel = Path::new("agents").join(format!("{}.json", kind.id()));
    let samples_rel = Path::new("samples").join(format!("{}.jsonl", kind.id()));
    let path = run.path().join(&rel);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(r) = serde_json::from_str::<AgentResult>(&text) {
            if run.path().join(&samples_rel).is_file() {
                return Ok((r, true));
            }
        }
        tracing::warn!(path = %path.display(), "unreadable agent result; recomputing");
    }
    let mut samples = Vec::new();
    let r = run_agent(kind, plan, judge, seed, &mut samples)
        .with_context(|| format!("agent '{}'", kind.id()))?;
    // Samples first: a result file is only trusted beside its samples.
    let mut text = samples.join("\n");
    text.push('\n');
    run.write_atomic(&samples_rel, text.as_bytes())?;
    run.write_atomic(&rel, serde_json::to_string_pretty(&r)?.as_bytes())?;
    Ok((r, false))
}

/// The training curve of `kind` with an extra training seed (no
/// measurement), stored as `curves/<id>-seed<seed>.json` (resumable).
fn load_or_train_curve(
    run: &RunDir,
    kind: AgentKind,
    plan: &Plan,
    seed: u64,
) -> Result<Vec<UpdateStats>> {
    let rel = Path::new("curves").join(format!("{}-seed{seed}.json", kind.id()));
    if let Ok(text) = std::fs::read_to_string(run.path().join(&rel)) {
        if let Ok(r) = serde_json::from_str::<Vec<UpdateStats>>(&text) {
            return Ok(r);
        }
    }
    let t = train_agent(kind, plan, seed)
        .with_context(|| format!("agent '{}', training seed {seed}", kind.id()))?;
    run.write_atomic(&rel, serde_json::to_string_pretty(&t.training)?.as_bytes())?;
    Ok(t.training)
}

/// Mean and 95% t-interval over seeds of each update's mean reward (the
/// shortest run sets the length); one seed: the band over its samples.
fn seed_curve(label: &str, runs: &[Vec<UpdateStats>], samples_per_update: f64) -> Curve {
    let len = runs.iter().map(Vec::len).min().unwrap_or(0);
    let (mut mean, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..len {
        let values: Vec<f64> = runs.iter().map(|r| r[u].reward_mean).collect();
        let n = values.len() as f64;
        let m = emorl_core::numeric::mean(&values);
        let half = if values.len() > 1 {
            let sd = (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            emorl_stats::t_upper_quantile(0.025, n - 1.0) * sd / n.sqrt()
        } else {
            1.96 * runs[0][u].reward_std / samples_per_update.sqrt()
        };
        mean.push(m);
        low.push(m - half);
        high.push(m + half);
    }
    Curve {
        label: if runs.len() > 1 {
            format!("{label} ({} seeds)", runs.len())
        } else {
            label.to_string()
        },
        mean,
        low,
        high,
    }
}

/// The agents of `--agents` (comma-separated registry IDs), in registry
/// order; every agent when `None`.
fn selected_agents(list: Option<&str>) -> Result<Vec<AgentKind>> {
    let Some(list) = list else {
        return Ok(AgentKind::ALL.to_vec());
    };
    let mut kinds = Vec::new();
    for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = AgentKind::from_id(id).map_err(|e| anyhow!("--agents: {e}"))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        bail!("--agents: name at least one agent (e.g. --agents llm-base,llm-erm)");
    }
    kinds.sort_by_key(|k| AgentKind::ALL.iter().position(|a| a == k));
    Ok(kinds)
}

/// Runs the reproduction; returns the run directory.
/// `--backend slurm`: one array task per agent (`--block N` measures the
/// N-th of `--agents`), the agent list, model and judge data fixed by
/// absolute path so that every task and the table command agree.
pub fn submit_agents(args: &ReproduceArgs, model: &str) -> Result<std::path::PathBuf> {
    let kinds = selected_agents(args.agents.as_deref())?;
    super::check_array_size(args, kinds.len(), "agents")?;
    let ids: Vec<&str> = kinds.iter().map(|k| k.id()).collect();
    let model = if Path::new(model).exists() {
        crate::cluster::absolute(Path::new(model))?
            .display()
            .to_string()
    } else {
        model.to_string()
    };
    let goemotions = crate::cluster::absolute(&goemotions_dir(args.goemotions.as_deref())?)?;
    let extra = vec![
        "--agents".into(),
        ids.join(","),
        "--model".into(),
        model,
        "--goemotions".into(),
        goemotions.display().to_string(),
    ];
    super::submit_array(args, kinds.len(), "agents", extra)
}

pub fn reproduce_llm(
    args: &ReproduceArgs,
    model: &str,
    config: Option<&Path>,
) -> Result<std::path::PathBuf> {
    let o = &args.options;
    if o.blocks != 1 {
        bail!("llm-modules has no seed blocks; leave out --blocks");
    }
    let settings = plan_settings(config)?;
    let mut llm = settings.llm;
    llm.rl.updates = o.episodes.unwrap_or(crate::llm_setup::DEFAULT_UPDATES);
    if llm.rl.updates == 0 {
        bail!("--episodes (RL updates per agent) must be at least 1");
    }
    llm.rl.validate().map_err(|e| anyhow!("{e}"))?;
    let kinds = selected_agents(args.agents.as_deref())?;
    if let Some(b) = args.block {
        if b >= kinds.len() {
            bail!(
                "--block {b}: llm-modules has agents 0 to {} here (one array task per --agents entry)",
                kinds.len() - 1
            );
        }
    }
    // Fail on a bad model or missing judge data before anything is written.
    drop(load_model(model, llm.bf16)?);
    let goemotions = goemotions_dir(args.goemotions.as_deref())?;
    eprintln!("training the judge on {} …", goemotions.display());
    let judge = Judge::train(&goemotions)?;
    let resolved = settings.resolved;
    let (curve_agents, curve_seeds) = (settings.curve_agents, settings.curve_seeds);
    let alignment = crate::measure::alignment_examples(
        emorl_agents_llm::data::dailydialog_file().as_deref(),
        settings.alignment_responses,
        llm.dual_text.history_turns,
    )?;
    let plan = Plan {
        model: model.to_string(),
        goemotions,
        dailydialog: emorl_agents_llm::data::dailydialog_file(),
        llm,
        // Held-out conversations: disjoint from training prompts' seeds.
        eval_seeds: (0..o.seeds as u64)
            .map(|i| 1_000_000 + o.seed_offset + i)
            .collect(),
        marker_prompts: settings.marker_prompts,
        marker_samples: settings.marker_samples,
        marker_tokens: settings.marker_tokens,
        alignment,
    };
    crate::llm_setup::set_threads(plan.llm.threads);
    let run = open_run(args)?;
    let exp_path = run.path().join("experiment.toml");
    match std::fs::read_to_string(&exp_path) {
        Ok(old) if old != resolved => bail!(
            "{} holds a run made with another experiment config; choose another --out",
            run.path().display()
        ),
        Ok(_) => {}
        Err(_) => {
            run.write_atomic(Path::new("experiment.toml"), resolved.as_bytes())?;
        }
    }
    // Every setting the agents are trained with, defaults included: a
    // binary whose defaults changed must not add agents to a table whose
    // other agents it did not train. (A run from before this file existed
    // gets it on its first resume.)
    let full = toml::to_string(&plan.llm).context("agent settings")?;
    match std::fs::read_to_string(run.path().join(AGENT_SETTINGS)) {
        Ok(old) if old != full => bail!(
            "{} holds agents trained under other settings ({AGENT_SETTINGS} differs: another emorl version's defaults?); choose another --out",
            run.path().display()
        ),
        Ok(_) => {}
        Err(_) => {
            run.write_atomic(Path::new(AGENT_SETTINGS), full.as_bytes())?;
        }
    }
    let start = Instant::now();
    if let Some(b) = args.block {
        // One array task: one agent (and its extra training-seed curves).
        let kind = kinds[b];
        let (result, loaded) = load_or_run(&run, kind, &plan, &judge, o.seed_offset)?;
        if !result.training.is_empty() && curve_agents.contains(&kind) {
            for k in 1..curve_seeds as u64 {
                load_or_train_curve(&run, kind, &plan, o.seed_offset + k)?;
            }
        }
        eprintln!(
            "block {b}: agent {} {} in {}/agents",
            kind.id(),
            if loaded {
                "was already stored"
            } else {
                "stored"
            },
            run.path().display()
        );
        return Ok(run.path().to_path_buf());
    }
    let pb = progress(kinds.len() as u64, "agents");
    let mut results = Vec::new();
    for &kind in &kinds {
        pb.set_message(kind.id());
        let (result, loaded) = load_or_run(&run, kind, &plan, &judge, o.seed_offset)?;
        results.push(result);
        step_done(&pb, loaded);
    }
    pb.finish_and_clear();
    let mut samples = String::new();
    for &kind in &kinds {
        let path = run
            .path()
            .join("samples")
            .join(format!("{}.jsonl", kind.id()));
        samples.push_str(
            &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
        );
    }
    run.write_atomic(Path::new("samples.jsonl"), samples.as_bytes())?;

    let encoders: Vec<(String, EncoderReport)> = results
        .iter()
        .filter_map(|r| r.encoder.clone().map(|e| (r.agent.clone(), e)))
        .collect();
    let measured: Vec<(String, &Measured)> = results
        .iter()
        .map(|r| (r.agent.clone(), &r.measured))
        .collect();
    let mut tables = measured_tables(&measured, &encoders, &judge)?;
    if let Some(first) = tables.first_mut() {
        first.title = format!(
            "LLM emotional modules on {} — {} RL updates per agent (seed {}), {} held-out conversations; {}",
            plan.model,
            plan.llm.rl.updates,
            o.seed_offset,
            o.seeds,
            first.title
        );
    }
    let markdown = write_tables(&run, &tables)?;
    let per_update = (plan.llm.rl.prompts_per_update * plan.llm.rl.samples_per_prompt) as f64;
    let mut curves: Vec<Curve> = Vec::new();
    let mut extra_runs: Vec<(String, Vec<UpdateStats>)> = Vec::new();
    for r in results.iter().filter(|r| !r.training.is_empty()) {
        let mut runs = vec![r.training.clone()];
        let kind = AgentKind::from_id(&r.agent)?;
        if curve_agents.contains(&kind) {
            for k in 1..curve_seeds as u64 {
                let seed = o.seed_offset + k;
                let t = load_or_train_curve(&run, kind, &plan, seed)?;
                extra_runs.push((format!("{}/seed{seed}", r.agent), t.clone()));
                runs.push(t);
            }
        }
        curves.push(seed_curve(&r.agent, &runs, per_update));
    }
    let panel = CurvePanel {
        title: "RL training: mean reward per update (band: 95% CI over training seeds, else over samples)"
            .into(),
        x_label: "RL update".into(),
        y_label: "mean reward".into(),
        range: (f64::NEG_INFINITY, f64::INFINITY),
        curves,
    };
    figure::write_figure(
        &run,
        "learning_curves",
        &figure::learning_curves(std::slice::from_ref(&panel))?,
    )?;
    let mut tb = fresh_event_writer(&run)?;
    for r in &results {
        for s in &r.training {
            tb.add_scalar(
                &format!("train/{}/reward", r.agent),
                s.reward_mean,
                s.update as i64,
            )?;
            tb.add_scalar(&format!("train/{}/kl", r.agent), s.kl, s.update as i64)?;
            tb.add_scalar(
                &format!("train/{}/expression_mass", r.agent),
                s.expression_mass,
                s.update as i64,
            )?;
        }
    }
    for (label, training) in &extra_runs {
        for s in training {
            tb.add_scalar(
                &format!("train/{label}/reward"),
                s.reward_mean,
                s.update as i64,
            )?;
        }
    }
    tb.add_text("table", &markdown, 0)?;
    let timing = serde_json::json!({
        "wall_seconds": start.elapsed().as_secs_f64(),
        "agent_seconds": results.iter().map(|r| (r.agent.clone(), r.seconds)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    // Per-agent seconds are read back from the stored results.
    write_timing(&run, timing, &["wall_seconds"])?;
    crate::summary::print_result(&markdown);
    eprintln!(
        "reproduced llm-modules ({} agents) in {:.1}s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(run.path().to_path_buf())
}
