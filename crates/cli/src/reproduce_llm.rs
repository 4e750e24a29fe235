//! `emorl reproduce llm-modules`: every LLM agent kind trained by RL on the
//! dialogue environment, then measured three ways — emotion markers under
//! forced emotional states (upstream's metric), dialogue return / safety /
//! helpfulness on held-out conversations, and the frozen model's perplexity
//! of what the agent wrote.

use crate::figure::{self, Curve, CurvePanel};
use crate::llm::{load_model, LlmTrainConfig};
use crate::reproduce::{open_run, ReproduceArgs};
use crate::train::progress;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::eval::{
    compare_dialogue, dialogue_comparison_table, dialogue_summary_table, evaluate_dialogue,
    generations_perplexity, marker_run, marker_table, perplexity_table, targets_table,
    DialogueEval, EmotionEffect, Perplexity, EVAL_PROMPTS,
};
use emorl_agents_llm::{AgentKind, LlmAgent, Trainer, UpdateStats};
use emorl_log::RunDir;
use emorl_stats::Table;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Everything measured for one agent (stored as `agents/<id>.json`, so an
/// interrupted reproduction resumes after the last finished agent).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AgentResult {
    agent: String,
    training: Vec<UpdateStats>,
    markers: Vec<EmotionEffect>,
    perplexity: Perplexity,
    dialogue: DialogueEval,
    seconds: f64,
}

/// The experiment file, embedded so the binary runs anywhere.
pub const LLM_MODULES: &str = include_str!("../../../configs/llm/modules.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModulesFile {
    markers: MarkerSettings,
    agent_config: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerSettings {
    prompts: usize,
    samples: usize,
    max_new_tokens: usize,
}

/// Settings of the reproduction, from the reproduce options and the
/// defaults of `emorl train --agent llm-*`.
struct Plan {
    model: String,
    llm: LlmTrainConfig,
    eval_seeds: Vec<u64>,
    marker_prompts: usize,
    marker_samples: usize,
    marker_tokens: usize,
}

fn run_agent(kind: AgentKind, plan: &Plan, seed: u64) -> Result<AgentResult> {
    let start = Instant::now();
    let model = load_model(&plan.model, plan.llm.bf16)?;
    let mut agent_cfg = plan.llm.agent.clone();
    agent_cfg.seed = seed;
    let mut agent = LlmAgent::new(model, kind, agent_cfg)?;
    let mut training = Vec::new();
    if !matches!(kind, AgentKind::Base) {
        if agent.modules().erm.is_some() {
            let pairs = crate::llm::erm_pairs(&plan.llm.rl.env, 16, seed)?;
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
    let prompts: Vec<&str> = EVAL_PROMPTS[..plan.marker_prompts].to_vec();
    let run = marker_run(
        &mut agent,
        &prompts,
        plan.marker_samples,
        seed ^ 0x6d61_726b,
        plan.marker_tokens,
    )?;
    let gens = run.all_generations();
    let perplexity = generations_perplexity(agent.model_mut(), &gens)?;
    let dialogue = evaluate_dialogue(&mut agent, &plan.llm.rl.env, &plan.eval_seeds)?;
    Ok(AgentResult {
        agent: kind.id().to_string(),
        training,
        markers: run.effects,
        perplexity,
        dialogue,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn load_or_run(run: &RunDir, kind: AgentKind, plan: &Plan, seed: u64) -> Result<AgentResult> {
    let rel = Path::new("agents").join(format!("{}.json", kind.id()));
    let path = run.path().join(&rel);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(r) = serde_json::from_str::<AgentResult>(&text) {
            return Ok(r);
        }
        tracing::warn!(path = %path.display(), "unreadable agent result; recomputing");
    }
    let r = run_agent(kind, plan, seed).with_context(|| format!("agent '{}'", kind.id()))?;
    run.write_atomic(&rel, serde_json::to_string_pretty(&r)?.as_bytes())?;
    Ok(r)
}

/// Runs the reproduction; returns the run directory.
pub fn reproduce_llm(
    args: &ReproduceArgs,
    model: &str,
    config: Option<&Path>,
) -> Result<std::path::PathBuf> {
    let o = &args.options;
    if o.blocks != 1 {
        bail!("llm-modules has no seed blocks; leave out --blocks");
    }
    let mut table = crate::config::parse_table("configs/llm/modules.toml", LLM_MODULES)?;
    if let Some(path) = config {
        crate::config::merge(&mut table, crate::config::read_table(path)?);
    }
    let origin = config.map_or("configs/llm/modules.toml".to_string(), |p| {
        p.display().to_string()
    });
    let resolved = toml::to_string(&table).context("experiment config")?;
    let file: ModulesFile = crate::config::from_table(&origin, table)?;
    let m = &file.markers;
    if m.prompts == 0 || m.prompts > EVAL_PROMPTS.len() || m.samples == 0 || m.max_new_tokens == 0 {
        bail!(
            "{origin}: markers.prompts must be 1..={}, markers.samples and markers.max_new_tokens > 0",
            EVAL_PROMPTS.len()
        );
    }
    if m.prompts * m.samples < 2 {
        bail!("{origin}: the marker metric needs markers.prompts x markers.samples >= 2");
    }
    let mut llm =
        crate::llm::resolve_config(&format!("{origin} [agent_config]"), file.agent_config)?;
    llm.rl.updates = o.episodes.unwrap_or(crate::llm::DEFAULT_UPDATES);
    if llm.rl.updates == 0 {
        bail!("--episodes (RL updates per agent) must be at least 1");
    }
    llm.rl.validate().map_err(|e| anyhow!("{e}"))?;
    let plan = Plan {
        model: model.to_string(),
        llm,
        // Held-out conversations: disjoint from training prompts' seeds.
        eval_seeds: (0..o.seeds as u64)
            .map(|i| 1_000_000 + o.seed_offset + i)
            .collect(),
        marker_prompts: m.prompts,
        marker_samples: m.samples,
        marker_tokens: m.max_new_tokens,
    };
    // Fail on a bad model before anything is written.
    drop(load_model(&plan.model, plan.llm.bf16)?);
    crate::llm::set_threads(plan.llm.threads);
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
    let start = Instant::now();
    let pb = progress(AgentKind::ALL.len() as u64, "agents");
    let mut results = Vec::new();
    for kind in AgentKind::ALL {
        pb.set_message(kind.id());
        results.push(load_or_run(&run, kind, &plan, o.seed_offset)?);
        pb.inc(1);
    }
    pb.finish_and_clear();

    let markers: Vec<(String, Vec<EmotionEffect>)> = results
        .iter()
        .map(|r| (r.agent.clone(), r.markers.clone()))
        .collect();
    let perplexities: Vec<(String, Perplexity)> = results
        .iter()
        .map(|r| (r.agent.clone(), r.perplexity.clone()))
        .collect();
    let evals: Vec<DialogueEval> = results.iter().map(|r| r.dialogue.clone()).collect();
    let comparisons = compare_dialogue(&evals)?;
    let mut tables: Vec<Table> = vec![
        targets_table(&markers, &comparisons, &perplexities)?,
        marker_table(&markers)?,
        dialogue_summary_table(&evals)?,
        dialogue_comparison_table(&comparisons)?,
        perplexity_table(&perplexities)?,
    ];
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
    let markdown: String = tables
        .iter()
        .map(Table::to_markdown)
        .collect::<Vec<_>>()
        .join("\n");
    run.write_atomic(
        Path::new("table.json"),
        serde_json::to_string_pretty(&tables)?.as_bytes(),
    )?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    let curves: Vec<Curve> = results
        .iter()
        .filter(|r| !r.training.is_empty())
        .map(|r| {
            let mean: Vec<f64> = r.training.iter().map(|s| s.reward_mean).collect();
            let n = (plan.llm.rl.prompts_per_update * plan.llm.rl.samples_per_prompt) as f64;
            let half: Vec<f64> = r
                .training
                .iter()
                .map(|s| 1.96 * s.reward_std / n.sqrt())
                .collect();
            Curve {
                label: r.agent.clone(),
                low: mean.iter().zip(&half).map(|(m, h)| m - h).collect(),
                high: mean.iter().zip(&half).map(|(m, h)| m + h).collect(),
                mean,
            }
        })
        .collect();
    let panel = CurvePanel {
        title:
            "RL training: mean sampled reward per update (band: 95% CI over the update's samples)"
                .into(),
        curves,
    };
    run.write_atomic(
        Path::new("learning_curves.svg"),
        figure::learning_curves(std::slice::from_ref(&panel))?.as_bytes(),
    )?;
    let mut tb = run.event_writer()?;
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
    tb.add_text("table", &markdown, 0)?;
    let timing = serde_json::json!({
        "wall_seconds": start.elapsed().as_secs_f64(),
        "agent_seconds": results.iter().map(|r| (r.agent.clone(), r.seconds)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    run.write_atomic(Path::new("timing.json"), timing.to_string().as_bytes())?;
    println!("{markdown}");
    eprintln!(
        "reproduced llm-modules ({} agents) in {:.1}s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(run.path().to_path_buf())
}
