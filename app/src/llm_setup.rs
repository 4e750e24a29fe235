//! What every LLM command shares: the `[agent_config]` of an LLM agent run
//! (typed, validated, with defaults), loading the frozen model, libtorch's
//! thread count, checkpoint names, and the ERM's supervised pairs.

use crate::config;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::dual_text::DualTextConfig;
use emorl_agents_llm::lora_text::LoraTextConfig;
use emorl_agents_llm::supervision::{EncoderPretrainConfig, ErmTextConfig};
use emorl_agents_llm::{AgentConfig, RlConfig};
use emorl_core::{EmotionalContext, Env};
use emorl_envs_text::{Dialogue, DialogueConfig};
use emorl_lm::{DType, Model, PackPlan, Packing};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything an LLM agent run takes (`[agent_config]` of `emorl train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmTrainConfig {
    /// `default` (SmolLM2-135M-Instruct, installed by scripts/setup.sh), a
    /// GGUF file or a Hugging Face model directory.
    pub model: String,
    /// Hold the frozen weights in bf16 (faster on CPUs with bf16 support).
    pub bf16: bool,
    /// libtorch threads (0: all cores; more than the cores are capped at
    /// them). A run's `config.toml` records the count used: results depend
    /// on it.
    pub threads: usize,
    /// Phase 1: supervised steps of the emotional reward model on the
    /// environment's contexts before RL (agents with an ERM only).
    pub erm_pretrain_steps: usize,
    /// Phase 1 of the encoder: supervised on labelled contexts of scripted
    /// conversations (agents with an encoder; `steps = 0` skips it).
    pub encoder_pretrain: EncoderPretrainConfig,
    /// The ERM's emotion heads supervised on labelled text (GoEmotions'
    /// train split, DailyDialog's validation split when found; skipped with
    /// a warning when no GoEmotions files are found).
    pub erm_text: ErmTextConfig,
    /// The emotional LoRA adapters (`llm-neuro`) trained on labelled text,
    /// one per emotion, before RL (skipped with a warning when no
    /// GoEmotions files are found).
    pub lora_text: LoraTextConfig,
    /// The dual-head adapters (`llm-dual`) trained on DailyDialog responses
    /// before RL (skipped with a warning when no DailyDialog files are found).
    pub dual_text: DualTextConfig,
    /// Log a whole sample conversation (with its emotion states) every this
    /// many updates, and after the last (0: only after the last).
    pub sample_every: usize,
    /// Held-out conversations played before and after training (0: none).
    pub eval_episodes: usize,
    pub agent: AgentConfig,
    pub rl: RlConfig,
}

impl Default for LlmTrainConfig {
    fn default() -> Self {
        LlmTrainConfig {
            model: "default".into(),
            bf16: false,
            threads: 0,
            erm_pretrain_steps: 20,
            encoder_pretrain: EncoderPretrainConfig::default(),
            erm_text: ErmTextConfig::default(),
            lora_text: LoraTextConfig::default(),
            dual_text: DualTextConfig::default(),
            sample_every: 5,
            eval_episodes: 8,
            agent: AgentConfig {
                max_new_tokens: 32,
                ..AgentConfig::default()
            },
            rl: RlConfig {
                prompts_per_update: 4,
                samples_per_prompt: 4,
                // The agent's decoding (`resolve_config` keeps them equal).
                temperature: AgentConfig::default().temperature,
                max_new_tokens: 32,
                // Every turn of a conversation, as evaluation plays them.
                max_turn: 3,
                // Chosen on `emorl train` validation conversations (seeds
                // 6 000 000 + …), not the table's: 1e-3 did not move the
                // modules at all on SmolLM2 (KL 0.000), see docs/llm-design-notes.md.
                lr: 0.05,
                // Tie the modules' emotional input to emotional expression.
                // 1.0 (chosen on the tuning prompts' markers alone) took
                // SmolLM2's validation return from 1.06 to -0.37 in 12
                // updates, 0.1 to +1.46 (8 validation conversations, seeds
                // 6 000 000 + …; docs/llm-design-notes.md).
                expression_coef: 0.1,
                // Seed 001's phase 3: the ERM learns online what its
                // situations turn into.
                feedback_coef: 0.1,
                // The ERM's temperature stays at its base: trained, it made
                // every distribution flatter (a hotter softmax puts more
                // mass on rare expression words too) — SmolLM2's entropy
                // rose from 1.2 to 7 nats per token in 6 updates
                // (docs/llm-design-notes.md, "One optimiser").
                //
                // The ERM's low-rank logit directions at 10× the base rate
                // (0.5: about half a logit a step on the best-aligned token;
                // at 1× that would be 0.6 logits after the default 12
                // updates). Tried on SmolLM2's validation conversations, not
                // the table's (docs/llm-design-notes.md, "One optimiser").
                //
                // llm-reft's interventions at 0.03× the base rate: they write
                // into SmolLM2's late residual stream, whose entries are
                // large, and at 1× one Adam step moved the policy 4.2
                // nats/token and it collapsed (runs/llm-smol-r6). KL to the
                // frozen model after updates 1–3 of `emorl train --env
                // dialogue --agent llm-reft` (seed 0, training
                // conversations): 0.01× → 0.002, 0.005; 0.03× → 0.016,
                // 0.051; 0.1× → 0.19, 1.35 (docs/llm-agents.md).
                lr_scale: [
                    ("erm.temperature".to_string(), 0.0),
                    ("erm.logit".to_string(), 10.0),
                    ("reft".to_string(), 0.03),
                    // llm-neuro's LoRA adapters at 0.002×: KL to the frozen
                    // model over updates 1–4 of `emorl train --env dialogue
                    // --agent llm-neuro` (seed 0, training conversations,
                    // after the text phase): 0.02× → 0.12, 5.25, 2.43 at
                    // update 3 and validation return 1.28 → −0.43; 0.002× →
                    // 0.12, 0.15, 0.15, 0.20 and 1.30 → 1.21
                    // (docs/emotion-engine.md).
                    ("lora".to_string(), 0.002),
                ]
                .into_iter()
                .collect(),
                ..RlConfig::default()
            },
        }
    }
}

/// Updates `emorl train` runs for an LLM agent unless told otherwise.
pub const DEFAULT_UPDATES: usize = 12;

/// The base model to load for a checkpoint: `given` (`--model`), else the
/// model the checkpoint records when it still exists, else `default` (the
/// checkpoint's model identity is checked at load either way).
pub fn checkpoint_model(
    manifest: &emorl_agents_llm::checkpoint::Manifest,
    given: Option<&str>,
) -> String {
    match (given, manifest.recorded_model()) {
        (Some(m), _) => m.to_string(),
        (None, Some(p)) => p.display().to_string(),
        (None, None) => "default".to_string(),
    }
}

/// Loads the frozen model named by `spec` ("default", a file or a directory).
pub fn load_model(spec: &str, bf16: bool) -> Result<Model> {
    let dtype = if bf16 { DType::BF16 } else { DType::F32 };
    let path = (spec != "default").then(|| PathBuf::from(spec));
    Ok(Model::load_or_default(path.as_deref(), dtype)?)
}

/// How `emorl generate` and `emorl chat` hold the frozen weights
/// (`--weights`). Evaluation and every learning pass run dense f32 (or
/// bf16 with their `bf16` setting); RL sampling reads the file's own
/// quantization unless `rl.packed_sampling = false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Weights {
    /// Keep the file's quantization: int4 decode weights for 4-bit GGUF
    /// blocks, int8 for 5–8-bit ones, dense for float files (SmolLM2's
    /// Q4_1 file: int4 blocks, int8 output layer).
    #[default]
    Auto,
    /// Dense f32 (the reference).
    F32,
    /// Dense bf16 weights and activations.
    Bf16,
    /// int8 decode weights everywhere (prefill stays f32).
    Int8,
    /// int4 decode weights everywhere (prefill stays f32).
    Int4,
}

/// Loads the model for generation with `weights`, and says which weights
/// it decodes with (for the summary line).
pub fn load_model_for_generation(spec: &str, weights: Weights) -> Result<(Model, String)> {
    let mut model = load_model(spec, weights == Weights::Bf16)?;
    let plan = match weights {
        Weights::Auto => model.auto_pack_plan(),
        Weights::Int8 => PackPlan::uniform(Some(Packing::Int8)),
        Weights::Int4 => PackPlan::uniform(Some(Packing::Int4)),
        Weights::F32 | Weights::Bf16 => PackPlan::default(),
    };
    model.pack_weights(plan)?;
    let name = match (weights, plan == PackPlan::default()) {
        (Weights::Bf16, _) => "bf16".to_string(),
        (_, true) => "f32".to_string(),
        (_, false) => format!("{} decode", plan.name()),
    };
    Ok((model, name))
}

/// Sets libtorch's thread count to a resolved `threads` (see
/// [`resolve_config`], which records the count used in the run's config).
pub(crate) fn set_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}

/// Validates an LLM agent config table, filling defaults.
pub fn resolve_config(origin: &str, table: toml::Table) -> Result<LlmTrainConfig> {
    // RL samples exactly as the agent is evaluated and chats: the agent's
    // settings are the one place that sets it (an rl value equal to them,
    // as a resolved config holds, is accepted).
    let rl_table = table.get("rl").and_then(toml::Value::as_table).cloned();
    // Over the whole default config, so that setting one `rl` key keeps the
    // other defaults of LLM training (not those of a bare `RlConfig`).
    let mut full = toml::Table::try_from(LlmTrainConfig::default()).context("LLM defaults")?;
    config::merge(&mut full, table);
    let mut cfg: LlmTrainConfig = config::from_table(origin, full)?;
    if let Some(rl) = rl_table {
        let differs = |key: &str, agent: f64| {
            rl.get(key)
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                .is_some_and(|v| v != agent)
        };
        for (key, agent) in [
            ("temperature", cfg.agent.temperature),
            ("max_new_tokens", cfg.agent.max_new_tokens as f64),
        ] {
            if differs(key, agent) {
                bail!(
                    "{origin}: rl.{key} is not set separately: RL samples with the agent's decoding \
                     settings, as evaluation does; set agent.{key} instead"
                );
            }
        }
    }
    if cfg.agent.temperature <= 0.0 {
        bail!(
            "{origin}: agent.temperature must be > 0 for RL (sampling), got {}",
            cfg.agent.temperature
        );
    }
    cfg.rl.temperature = cfg.agent.temperature;
    cfg.rl.max_new_tokens = cfg.agent.max_new_tokens;
    cfg.rl.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
    cfg.encoder_pretrain
        .validate()
        .map_err(|e| anyhow!("{origin}: {e}"))?;
    cfg.dual_text
        .validate()
        .map_err(|e| anyhow!("{origin}: {e}"))?;
    if cfg.agent.max_new_tokens == 0 {
        bail!("{origin}: agent.max_new_tokens must be > 0");
    }
    // The count used, not 0, goes into the run's config: libtorch's results
    // depend on it (docs/llm-design-notes.md).
    cfg.threads =
        emorl_core::parallelism::resolve_threads(&format!("{origin}.threads"), cfg.threads)?;
    Ok(cfg)
}

/// Phase 1 of the ERM: `(user message, context)` pairs from seeded resets
/// of the environment (their first turns), for supervised steps.
pub(crate) fn erm_pairs(
    env_cfg: &DialogueConfig,
    n: usize,
    seed: u64,
) -> Result<Vec<(String, EmotionalContext)>> {
    let mut env = Dialogue::new(env_cfg.clone())?;
    Ok((0..n as u64)
        .map(|i| {
            let (obs, _) = env.reset(Some(seed.wrapping_mul(31).wrapping_add(500_000 + i)));
            (obs.user_message, env.context())
        })
        .collect())
}

/// Name of an LLM run's checkpoint under `checkpoints/`.
pub const CHECKPOINT: &str = "agent";

/// Checkpoint every this many RL updates unless `checkpoint_every` says otherwise.
pub const LLM_CHECKPOINT_EVERY: usize = 5;
