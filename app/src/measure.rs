//! How an LLM agent is measured, shared by `emorl reproduce llm-modules`
//! and `emorl eval llm`: the settings of `configs/llm/modules.toml`, the
//! judge's data, the forced-emotion, dialogue, fluency and appropriateness
//! measurements, their tables and `samples.jsonl` rows.

use crate::llm_setup::LlmTrainConfig;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::eval::{
    alignment_table, appropriateness, appropriateness_table, compare_dialogue,
    dialogue_comparison_table, dialogue_fluency, dialogue_summary_table, encoder_table,
    evaluate_dialogue, fluency_table, holm_adjust, judge_table, marker_run, marker_table,
    measure_alignment, targets_table, AlignmentEval, Appropriateness, DialogueEval, EmotionEffect,
    Fluency, Judge, EVAL_PROMPTS,
};
use emorl_agents_llm::supervision::EncoderReport;
use emorl_agents_llm::{AgentKind, LlmAgent};
use emorl_log::RunDir;
use emorl_stats::Table;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What is measured of one agent after training.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Measured {
    /// Raw paired p-values; Holm is applied over the whole table.
    markers: Vec<EmotionEffect>,
    fluency: Fluency,
    dialogue: DialogueEval,
    appropriateness: Appropriateness,
    /// Alignment with target emotions on held-out DailyDialog responses
    /// (empty in runs from before it was measured).
    #[serde(default)]
    alignment: AlignmentEval,
}

/// How agents are measured: the judge, the forced-emotion prompts and the
/// held-out conversations.
pub(crate) struct MeasureSettings<'a> {
    pub judge: &'a Judge,
    pub env: &'a emorl_envs_text::DialogueConfig,
    pub eval_seeds: &'a [u64],
    pub marker_prompts: usize,
    pub marker_samples: usize,
    pub marker_tokens: usize,
    pub marker_seed: u64,
    /// Held-out DailyDialog examples of the alignment measurement (empty:
    /// not measured).
    pub alignment: &'a [emorl_text::DialogueExample],
}

/// Measures a trained `agent` (labelled `label`), appending every text it
/// generates to `samples` as JSON lines.
pub(crate) fn measure(
    agent: &mut LlmAgent,
    label: &str,
    m: &MeasureSettings<'_>,
    samples: &mut Vec<String>,
) -> Result<Measured> {
    let prompts: Vec<&str> = EVAL_PROMPTS[..m.marker_prompts].to_vec();
    let run = marker_run(
        agent,
        &prompts,
        m.marker_samples,
        m.marker_seed,
        m.marker_tokens,
        Some(m.judge),
    )?;
    for (cond, gens) in &run.generations {
        for (row, g) in gens.iter().enumerate() {
            samples.push(serde_json::to_string(&Sample {
                agent: label,
                task: "forced",
                condition: cond.name(),
                prompt: prompts[row / m.marker_samples],
                index: row % m.marker_samples,
                seed: m.marker_seed,
                text: &g.text,
            })?);
        }
    }
    let mut dialogue = evaluate_dialogue(agent, m.env, m.eval_seeds)?;
    dialogue.agent = label.to_string();
    for (log, &conv) in dialogue.logs.iter().zip(&dialogue.seeds) {
        for (turn, t) in log.turns.iter().enumerate() {
            samples.push(serde_json::to_string(&Sample {
                agent: label,
                task: "dialogue",
                condition: t.need.name(),
                prompt: &t.user_message,
                index: turn,
                seed: conv,
                text: &t.response,
            })?);
        }
    }
    let fluency = dialogue_fluency(agent.model_mut(), &dialogue)?;
    let appropriateness = appropriateness(&dialogue, m.judge)?;
    let mut alignment = measure_alignment(agent, m.judge, m.alignment, m.marker_seed)?;
    for (i, text) in alignment.replies.iter().enumerate() {
        samples.push(serde_json::to_string(&Sample {
            agent: label,
            task: "alignment",
            condition: &alignment.targets[i],
            prompt: &alignment.examples[i],
            index: i,
            seed: m.marker_seed.wrapping_add(i as u64),
            text,
        })?);
    }
    alignment.replies.clear();
    Ok(Measured {
        markers: run.effects,
        fluency,
        dialogue,
        appropriateness,
        alignment,
    })
}

/// The tables of measured agents (`encoders`: the encoder phase per agent).
pub(crate) fn measured_tables(
    measured: &[(String, &Measured)],
    encoders: &[(String, EncoderReport)],
    judge: &Judge,
) -> Result<Vec<Table>> {
    let mut markers: Vec<(String, Vec<EmotionEffect>)> = measured
        .iter()
        .map(|(a, r)| (a.clone(), r.markers.clone()))
        .collect();
    holm_adjust(markers.iter_mut().flat_map(|(_, e)| e.iter_mut()));
    let fluency: Vec<(String, Fluency)> = measured
        .iter()
        .map(|(a, r)| (a.clone(), r.fluency.clone()))
        .collect();
    let evals: Vec<DialogueEval> = measured.iter().map(|(_, r)| r.dialogue.clone()).collect();
    let comparisons = compare_dialogue(&evals)?;
    let coherence: Vec<Appropriateness> = measured
        .iter()
        .map(|(_, r)| r.appropriateness.clone())
        .collect();
    Ok(vec![
        targets_table(&markers, &comparisons, &fluency)?,
        marker_table(&markers)?,
        dialogue_summary_table(&evals)?,
        dialogue_comparison_table(&comparisons)?,
        fluency_table(&fluency)?,
        appropriateness_table(&coherence)?,
        alignment_table(
            &measured
                .iter()
                .map(|(a, r)| (a.clone(), r.alignment.clone()))
                .collect::<Vec<_>>(),
        )?,
        encoder_table(encoders)?,
        judge_table(judge.report())?,
    ])
}

/// One generated text of `samples.jsonl`.
#[derive(Serialize)]
struct Sample<'a> {
    agent: &'a str,
    /// `forced` (the forced-emotion measurement), `dialogue` or `alignment`.
    task: &'a str,
    /// The forced condition, the dialogue turn's need, or the target emotion.
    condition: &'a str,
    prompt: &'a str,
    /// Sample index (forced), turn (dialogue) or example (alignment).
    index: usize,
    /// The sampling seed (forced) or the conversation seed (dialogue).
    seed: u64,
    text: &'a str,
}

/// The experiment file, embedded so the binary runs anywhere.
pub const LLM_MODULES: &str = include_str!("../../configs/llm/modules.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModulesFile {
    markers: MarkerSettings,
    #[serde(default)]
    curves: CurveSettings,
    agent_config: toml::Table,
}

/// Extra training seeds for the learning curves of some agents (trained
/// only, not measured).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurveSettings {
    /// Agents whose curve is the mean over `seeds` training seeds.
    #[serde(default)]
    agents: Vec<String>,
    /// Training seeds per listed agent (the measured one included).
    #[serde(default)]
    seeds: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerSettings {
    prompts: usize,
    samples: usize,
    max_new_tokens: usize,
    /// Held-out DailyDialog responses of the alignment measurement (0: none).
    #[serde(default)]
    alignment_responses: usize,
}

/// Writes `table.json` and `table.md`; returns the markdown.
pub(crate) fn write_tables(run: &RunDir, tables: &[Table]) -> Result<String> {
    let markdown: String = tables
        .iter()
        .map(Table::to_markdown)
        .collect::<Vec<_>>()
        .join("\n");
    run.write_atomic(
        Path::new("table.json"),
        serde_json::to_string_pretty(tables)?.as_bytes(),
    )?;
    run.write_atomic(Path::new("table.md"), markdown.as_bytes())?;
    Ok(markdown)
}

/// The experiment's settings: `configs/llm/modules.toml` with `config`
/// merged over it, validated.
pub(crate) struct PlanSettings {
    pub llm: LlmTrainConfig,
    /// Agents with extra training seeds for their curve, and how many seeds.
    pub curve_agents: Vec<AgentKind>,
    pub curve_seeds: usize,
    pub marker_prompts: usize,
    pub marker_samples: usize,
    pub marker_tokens: usize,
    pub alignment_responses: usize,
    /// The merged experiment file as TOML (stored with a run).
    pub resolved: String,
}

pub(crate) fn plan_settings(config: Option<&Path>) -> Result<PlanSettings> {
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
    let llm =
        crate::llm_setup::resolve_config(&format!("{origin} [agent_config]"), file.agent_config)?;
    let curve_agents = file
        .curves
        .agents
        .iter()
        .map(|id| AgentKind::from_id(id).map_err(|e| anyhow!("{origin}: curves.agents: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if !curve_agents.is_empty() && file.curves.seeds == 0 {
        bail!("{origin}: curves.seeds must be at least 1");
    }
    Ok(PlanSettings {
        llm,
        curve_agents,
        curve_seeds: file.curves.seeds.max(1),
        marker_prompts: m.prompts,
        marker_samples: m.samples,
        marker_tokens: m.max_new_tokens,
        alignment_responses: m.alignment_responses,
        resolved,
    })
}

/// The GoEmotions folder: `arg`, else found on disk, else a one-line error.
pub(crate) fn goemotions_dir(arg: Option<&Path>) -> Result<std::path::PathBuf> {
    match arg {
        Some(dir) => {
            if let Some(f) = ["train.tsv", "dev.tsv", "test.tsv"]
                .into_iter()
                .find(|f| !dir.join(f).is_file())
            {
                bail!(
                    "--goemotions {}: no {f} there (the judge needs the GoEmotions train.tsv, \
                     dev.tsv and test.tsv)",
                    dir.display()
                );
            }
            Ok(dir.to_path_buf())
        }
        None => emorl_agents_llm::data::goemotions_dir().ok_or_else(|| {
            anyhow!(
                "the judge needs the GoEmotions files (train.tsv, dev.tsv, test.tsv, labels.txt): \
                 pass --goemotions DIR or set EMORL_GOEMOTIONS_DIR"
            )
        }),
    }
}

/// The held-out examples of the alignment measurement: `n` of the
/// DailyDialog dialogues no agent learns from
/// ([`emorl_agents_llm::dual_text::DailyDialogSplits::evaluation`]), the
/// targets taken in turn; none without the files or with `n = 0`.
pub(crate) fn alignment_examples(
    dailydialog: Option<&Path>,
    n: usize,
    history_turns: usize,
) -> Result<Vec<emorl_text::DialogueExample>> {
    let Some(dir) = dailydialog.and_then(Path::parent) else {
        return Ok(Vec::new());
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let d = emorl_agents_llm::dual_text::dailydialog_examples(dir, history_turns, 0)?;
    Ok(emorl_agents_llm::eval::alignment_examples(&d.evaluation, n))
}
