//! `emorl eval llm --checkpoint DIR`: the `llm-modules` evaluation of one
//! trained agent, beside the two baselines every module must beat
//! (`llm-base`, and `llm-prompted` with its encoder supervised the same
//! way), on the same prompts, samples and held-out conversations.

use crate::llm_setup::load_model;
use crate::measure::{measure, measured_tables, MeasureSettings, Measured};
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::eval::Judge;
use emorl_agents_llm::supervision::{pretrain_encoder_on_dialogue, EncoderReport};
use emorl_agents_llm::{read_manifest, AgentKind, LlmAgent};
use emorl_log::RunDir;
use std::path::{Path, PathBuf};

/// What `emorl eval llm` takes.
pub struct EvalArgs {
    pub checkpoint: PathBuf,
    /// The base model (`default` or a path); must be the checkpoint's
    /// (`None`: the one the checkpoint records, else `default`).
    pub model: Option<String>,
    pub bf16: bool,
    /// Held-out conversations.
    pub seeds: usize,
    pub seed_offset: u64,
    /// Experiment file merged over `configs/llm/modules.toml` (its
    /// `[markers]` and `[agent_config]` sections are used).
    pub config: Option<PathBuf>,
    pub goemotions: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub out_root: PathBuf,
}

/// Runs the evaluation; returns the run directory.
pub fn eval_llm(args: &EvalArgs) -> Result<PathBuf> {
    if args.seeds < 2 {
        bail!("--seeds must be at least 2 (paired statistics need two conversations)");
    }
    let manifest = read_manifest(&args.checkpoint)
        .map_err(|e| anyhow!("{}: {e}", args.checkpoint.display()))?;
    let model = crate::llm_setup::checkpoint_model(&manifest, args.model.as_deref());
    let plan = crate::measure::plan_settings(args.config.as_deref())?;
    let goemotions = crate::measure::goemotions_dir(args.goemotions.as_deref())?;
    // Everything that can fail on input fails before the run directory exists.
    let mut agent = LlmAgent::load(&args.checkpoint, load_model(&model, args.bf16)?)
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(out) = &args.out {
        if out.exists() && out.read_dir().map_or(true, |mut d| d.next().is_some()) {
            bail!(
                "{} already exists and is not empty; choose a new --out",
                out.display()
            );
        }
    }
    eprintln!("training the judge on {} …", goemotions.display());
    let judge = Judge::train(&goemotions)?;
    crate::llm_setup::set_threads(plan.llm.threads);
    let run = match &args.out {
        Some(p) => RunDir::at(p),
        None => RunDir::create(&args.out_root, &format!("eval-{}", manifest.agent.id())),
    }
    .context("cannot create the run directory")?;
    let eval_seeds: Vec<u64> = (0..args.seeds as u64)
        .map(|i| 1_000_000 + args.seed_offset + i)
        .collect();
    let alignment = crate::measure::alignment_examples(
        emorl_agents_llm::data::dailydialog_file().as_deref(),
        plan.alignment_responses,
        plan.llm.dual_text.history_turns,
    )?;
    let settings = MeasureSettings {
        judge: &judge,
        env: &plan.llm.rl.env,
        eval_seeds: &eval_seeds,
        marker_prompts: plan.marker_prompts,
        marker_samples: plan.marker_samples,
        marker_tokens: plan.marker_tokens,
        marker_seed: manifest.config.seed ^ 0x6d61_726b,
        alignment: &alignment,
    };
    let mut samples = Vec::new();
    let mut results: Vec<(String, Measured)> = Vec::new();
    let mut encoders: Vec<(String, EncoderReport)> = Vec::new();
    for kind in [AgentKind::Base, AgentKind::Prompted] {
        eprintln!("measuring {} …", kind.id());
        let mut baseline = LlmAgent::new(
            load_model(&model, args.bf16)?,
            kind,
            manifest.config.clone(),
        )?;
        if let Some(enc) = &baseline.modules().encoder {
            let report = pretrain_encoder_on_dialogue(
                enc,
                &plan.llm.rl.env,
                &plan.llm.encoder_pretrain,
                |_, _| {},
            )?;
            encoders.push((kind.id().to_string(), report));
        }
        let m = measure(&mut baseline, kind.id(), &settings, &mut samples)?;
        results.push((kind.id().to_string(), m));
    }
    let label = manifest.agent.id().to_string();
    eprintln!("measuring {label} from {} …", args.checkpoint.display());
    let m = measure(&mut agent, &label, &settings, &mut samples)?;
    results.push((label, m));
    let measured: Vec<(String, &Measured)> = results.iter().map(|(a, m)| (a.clone(), m)).collect();
    let mut tables = measured_tables(&measured, &encoders, &judge)?;
    if let Some(first) = tables.first_mut() {
        first.title = format!(
            "{} from {} on {} — {} held-out conversations; {}",
            manifest.agent.id(),
            args.checkpoint.display(),
            manifest.base_model.name,
            args.seeds,
            first.title
        );
    }
    let mut text = samples.join("\n");
    text.push('\n');
    run.write_atomic(Path::new("samples.jsonl"), text.as_bytes())?;
    let markdown = crate::measure::write_tables(&run, &tables)?;
    crate::summary::print_result(&markdown);
    Ok(run.path().to_path_buf())
}
