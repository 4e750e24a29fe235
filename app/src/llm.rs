//! LLM-policy agents from the command line: `emorl train --env dialogue
//! --agent llm-*` (RL on the frozen model, TensorBoard logging, checkpoints)
//! and `emorl chat` (talk with a trained agent).

use crate::config;
use crate::train::{log_config, progress, TrainConfig};
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::supervision::{
    pretrain_encoder_on_dialogue, pretrain_erm_on_corpora, EncoderPretrainConfig, ErmTextConfig,
};
use emorl_agents_llm::{
    evaluate_returns, read_manifest, AgentConfig, AgentKind, LlmAgent, LlmAgentError, RlConfig,
    Trainer, UpdateStats,
};
use emorl_core::{EmotionalContext, Env};
use emorl_envs_dialogue::{Dialogue, DialogueConfig, DialogueObs, Speaker, Turn};
use emorl_lm::{DType, Model};
use emorl_log::{EventWriter, MetricsWriter, RunDir};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
                // modules at all on SmolLM2 (KL 0.000), see agents/llm/NOTES.md.
                lr: 0.05,
                // Tie the modules' emotional input to emotional expression.
                // 1.0 (chosen on the tuning prompts' markers alone) took
                // SmolLM2's validation return from 1.06 to -0.37 in 12
                // updates, 0.1 to +1.46 (8 validation conversations, seeds
                // 6 000 000 + …; agents/llm/NOTES.md).
                expression_coef: 0.1,
                // Seed 001's phase 3: the ERM learns online what its
                // situations turn into.
                feedback_coef: 0.1,
                // The ERM's temperature stays at its base: trained, it made
                // every distribution flatter (a hotter softmax puts more
                // mass on rare expression words too) — SmolLM2's entropy
                // rose from 1.2 to 7 nats per token in 6 updates
                // (agents/llm/NOTES.md, "One optimiser").
                //
                // The ERM's low-rank logit directions at 10× the base rate
                // (0.5: about half a logit a step on the best-aligned token;
                // at 1× that would be 0.6 logits after the default 12
                // updates). Tried on SmolLM2's validation conversations, not
                // the table's (NOTES.md, "One optimiser").
                lr_scale: [
                    ("erm.temperature".to_string(), 0.0),
                    ("erm.logit".to_string(), 10.0),
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

/// Seeds of the validation conversations `emorl train` plays before and
/// after training: a fixed block disjoint from the training prompts' seeds
/// (mixed from the run seed) and from the held-out conversations of `emorl
/// reproduce llm-modules` (1 000 000 + …), so settings chosen on `train`
/// runs never see the table's conversations.
fn eval_seeds(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| 6_000_000 + i).collect()
}

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
    if cfg.agent.max_new_tokens == 0 {
        bail!("{origin}: agent.max_new_tokens must be > 0");
    }
    // The count used, not 0, goes into the run's config: libtorch's results
    // depend on it (agents/llm/NOTES.md).
    cfg.threads =
        emorl_core::parallelism::resolve_threads(&format!("{origin}.threads"), cfg.threads)?;
    Ok(cfg)
}

/// The model and agent of a run, built before the run directory exists so
/// that a bad model file leaves nothing behind.
pub struct Prepared {
    pub llm: LlmTrainConfig,
    pub agent: LlmAgent,
}

pub fn prepare(cfg: &TrainConfig, kind: AgentKind) -> Result<Prepared> {
    if !kind.trained_by_rl() {
        bail!(
            "agent '{}' has nothing RL can train; measure it with `emorl reproduce llm-modules --agents {}`",
            kind.id(),
            kind.id()
        );
    }
    let mut llm = resolve_config("agent_config", cfg.agent_config.clone())?;
    set_threads(llm.threads);
    llm.agent.seed = cfg.seed;
    llm.rl.seed = cfg.seed;
    llm.rl.updates = cfg.episodes;
    llm.rl.env = config::from_table("env_config", cfg.env_config.clone())?;
    // Read the environment's data files now: an error leaves no run directory.
    emorl_envs_dialogue::Dialogue::new(llm.rl.env.clone()).context("dialogue environment")?;
    let model = load_model(&llm.model, llm.bf16)?;
    let agent = LlmAgent::new(model, kind, llm.agent.clone())
        .map_err(|e| anyhow!("agent '{}': {e}", kind.id()))?;
    Ok(Prepared { llm, agent })
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

/// One played conversation: markdown transcript, the episode's metrics and
/// the agent's emotion state (named values) per response.
struct Sample {
    text: String,
    metrics: Vec<(&'static str, f64)>,
    emotions: Vec<Vec<(String, f64)>>,
}

/// One whole conversation with the agent, as markdown with its emotion
/// state per turn, plus the episode's metrics.
fn sample_conversation(
    agent: &mut LlmAgent,
    env_cfg: &DialogueConfig,
    seed: u64,
) -> Result<Sample> {
    let mut env = Dialogue::new(env_cfg.clone())?;
    let (mut obs, _) = env.reset(Some(seed));
    let mut context = env.context();
    agent.reset_episode();
    let mut emotions = Vec::new();
    loop {
        let response = agent.act(&obs, &context)?;
        emotions.push(agent.last_emotion().to_vec());
        let step = env.step(&response);
        if step.done() {
            break;
        }
        obs = step.obs;
        context = step.context;
    }
    let mut text = env.transcript_markdown();
    text.push_str("\n\n**Emotion state per response**\n\n");
    for (i, e) in emotions.iter().enumerate() {
        let parts: Vec<String> = e.iter().map(|(n, v)| format!("{n} {v:.2}")).collect();
        text.push_str(&format!("- response {}: {}\n", i + 1, parts.join(", ")));
    }
    Ok(Sample {
        text,
        metrics: env.metrics().scalars(),
        emotions,
    })
}

fn log_update(tb: &mut EventWriter, m: &mut MetricsWriter, s: &UpdateStats) -> Result<()> {
    let step = s.update as i64;
    let mut rec: Vec<(String, f64)> = vec![
        ("charts/reward".into(), s.reward_mean),
        ("charts/reward_std".into(), s.reward_std),
        ("losses/kl".into(), s.kl),
        ("losses/entropy".into(), s.entropy),
        ("losses/loss".into(), s.loss),
        ("losses/policy_loss".into(), s.policy_loss),
        ("losses/grad_norm".into(), s.grad_norm),
        ("charts/expression_mass".into(), s.expression_mass),
        ("charts/response_tokens".into(), s.response_tokens),
        ("charts/seconds_per_update".into(), s.seconds),
    ];
    rec.extend(
        s.objectives
            .iter()
            .map(|(n, v)| (format!("losses/{n}"), *v)),
    );
    rec.extend(
        s.emotion_means
            .iter()
            .map(|(n, v)| (format!("emotion/{n}"), *v)),
    );
    for (tag, v) in &rec {
        tb.add_scalar(tag, *v, step)?;
    }
    let fields: Vec<(&str, f64)> = rec.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    m.record(step, &fields)?;
    Ok(())
}

/// Plays the sample conversation and logs it: text, dialogue metrics and
/// per-emotion histograms over its turns.
fn log_sample(
    tb: &mut EventWriter,
    agent: &mut LlmAgent,
    env_cfg: &DialogueConfig,
    seed: u64,
    step: i64,
) -> Result<()> {
    let Sample {
        text,
        metrics,
        emotions,
    } = sample_conversation(agent, env_cfg, seed)?;
    tb.add_text("samples/conversation", &text, step)?;
    for (name, v) in metrics {
        tb.add_scalar(&format!("dialogue/{name}"), v, step)?;
    }
    if let Some(first) = emotions.first() {
        for (j, (name, _)) in first.iter().enumerate() {
            let values: Vec<f64> = emotions
                .iter()
                .filter_map(|e| e.get(j).map(|x| x.1))
                .collect();
            tb.add_histogram(&format!("histograms/emotion/{name}"), &values, step)?;
        }
    }
    Ok(())
}

/// Name of an LLM run's checkpoint under `checkpoints/`.
pub const CHECKPOINT: &str = "agent";
/// Checkpoint every this many RL updates unless `checkpoint_every` says otherwise.
pub const LLM_CHECKPOINT_EVERY: usize = 5;
/// The validation returns measured before training, kept for a resumed run.
const BEFORE_FILE: &str = "validation_before.json";

/// Everything before RL: validation conversations, the encoder's and the
/// ERM's supervised phases. Returns the validation returns before training.
fn supervised_phases(
    cfg: &TrainConfig,
    llm: &LlmTrainConfig,
    agent: &mut LlmAgent,
    run: &RunDir,
    tb: &mut EventWriter,
    eval: &[u64],
) -> Result<Vec<f64>> {
    let env_cfg = llm.rl.env.clone();
    let mut before = Vec::new();
    if !eval.is_empty() {
        eprintln!(
            "evaluating {} validation conversations before training (seeds 6000000+)…",
            eval.len()
        );
        before = evaluate_returns(agent, &env_cfg, eval)?;
        tb.add_scalar("eval/return", emorl_core::numeric::mean(&before), 0)?;
    }
    if let (Some(enc), true) = (&agent.modules().encoder, llm.encoder_pretrain.steps > 0) {
        let pb = progress(llm.encoder_pretrain.steps as u64, "encoder phase 1");
        let report =
            pretrain_encoder_on_dialogue(enc, &env_cfg, &llm.encoder_pretrain, |i, loss| {
                if i % 10 == 0 {
                    pb.set_message(format!("loss {loss:.3}"));
                }
                pb.inc(1);
            })?;
        pb.finish_and_clear();
        tb.add_scalar("losses/encoder_supervised", report.final_loss, 0)?;
        tb.add_scalar("eval/encoder_accuracy", report.test.accuracy, 0)?;
        tb.add_scalar(
            "eval/encoder_majority_accuracy",
            report.test.majority_accuracy,
            0,
        )?;
        tb.add_scalar("eval/encoder_macro_f1", report.test.macro_f1, 0)?;
        eprintln!(
            "encoder: held-out accuracy {:.3} (majority class {:.3}), macro-F1 {:.3} on {} contexts",
            report.test.accuracy, report.test.majority_accuracy, report.test.macro_f1, report.test.n
        );
        run.write_atomic(
            std::path::Path::new("encoder.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    if agent.modules().erm.is_some() && llm.erm_text.epochs > 0 {
        match emorl_agents_llm::data::goemotions_dir() {
            Some(dir) => {
                eprintln!("ERM phase 1 on labelled text ({})…", dir.display());
                let dd = emorl_agents_llm::data::dailydialog_file();
                if let Some(r) =
                    pretrain_erm_on_corpora(agent, &dir, dd.as_deref(), &llm.erm_text)?
                {
                    tb.add_scalar("eval/erm_text_accuracy", r.test.accuracy, 0)?;
                    tb.add_scalar("eval/erm_text_macro_f1", r.test.macro_f1, 0)?;
                    eprintln!(
                        "ERM on held-out GoEmotions text: accuracy {:.3} (chance {:.3}), macro-F1 {:.3}",
                        r.test.accuracy, r.test.majority_accuracy, r.test.macro_f1
                    );
                    run.write_atomic(
                        std::path::Path::new("erm_text.json"),
                        serde_json::to_string_pretty(&r)?.as_bytes(),
                    )?;
                }
            }
            None => tracing::warn!(
                "no GoEmotions files found (set EMORL_GOEMOTIONS_DIR): the ERM's text phase is skipped"
            ),
        }
    }
    if agent.modules().erm.is_some() && llm.erm_pretrain_steps > 0 {
        let pairs = erm_pairs(&env_cfg, 16, cfg.seed)?;
        let pb = progress(llm.erm_pretrain_steps as u64, "ERM phase 1");
        for i in 0..llm.erm_pretrain_steps {
            if let Some(loss) = agent.erm_supervised_step(&pairs)? {
                tb.add_scalar("losses/erm_supervised", loss, i as i64)?;
                pb.set_message(format!("loss {loss:.3}"));
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
    }
    run.write_atomic(
        Path::new(BEFORE_FILE),
        serde_json::to_string(&before)?.as_bytes(),
    )?;
    Ok(before)
}

/// Writes the trainer's checkpoint: a new directory replaces the old one
/// whole, so a kill at any moment leaves one of them.
fn save_checkpoint(run: &RunDir, trainer: &Trainer) -> Result<PathBuf> {
    let dir = run.begin_checkpoint(CHECKPOINT)?;
    trainer.save(&dir).context("saving the checkpoint")?;
    Ok(run.commit_checkpoint(CHECKPOINT)?)
}

/// RL training of an LLM agent on the dialogue environment; `resumed`
/// continues the run in `run` from its checkpoint (module parameters,
/// optimiser moments, update count: the updates that follow are the ones
/// an uninterrupted run would have made).
pub fn train_llm(cfg: &TrainConfig, prepared: Prepared, run: &RunDir, resumed: bool) -> Result<()> {
    let Prepared { llm, mut agent } = prepared;
    let env_cfg = llm.rl.env.clone();
    let eval = eval_seeds(llm.eval_episodes);
    let start = Instant::now();
    let (mut trainer, before, mut tb, mut metrics) = if resumed {
        let dir = run.checkpoint(CHECKPOINT)?.ok_or_else(|| {
            anyhow!(
                "{} holds no checkpoint to resume (checkpoints/{CHECKPOINT} is missing)",
                run.path().display()
            )
        })?;
        let trainer = Trainer::resume(&dir, agent.into_model(), Some(llm.rl.clone()))
            .map_err(|e| anyhow!("cannot resume from {}: {e}", dir.display()))?;
        let done = trainer.updates_done();
        if !crate::resume::continue_run(run, cfg, done)? {
            return Ok(());
        }
        let before: Vec<f64> =
            crate::resume::read_json(&run.path().join(BEFORE_FILE))?.unwrap_or_default();
        let (tb, metrics) = crate::resume::writers(run, true, done + 1)?;
        (trainer, before, tb, metrics)
    } else {
        let mut tb = run.event_writer()?;
        let metrics = run.metrics_writer()?;
        log_config(&mut tb, cfg)?;
        let before = supervised_phases(cfg, &llm, &mut agent, run, &mut tb, &eval)?;
        (Trainer::new(agent, llm.rl.clone())?, before, tb, metrics)
    };
    crate::interrupt::catch_ctrl_c()?;
    let every = cfg.checkpoint_every.unwrap_or(LLM_CHECKPOINT_EVERY);
    let pb = progress(llm.rl.updates as u64, "RL updates");
    pb.set_position(trainer.updates_done() as u64);
    let sample_seed = 2_000_000 + cfg.seed;
    let mut stats: Vec<UpdateStats> = Vec::new();
    while trainer.updates_done() < llm.rl.updates && trainer.stopped().is_none() {
        let s = match trainer.update() {
            Ok(s) => s,
            // The trainer restored the last good parameters and says why.
            Err(LlmAgentError::Diverged { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        log_update(&mut tb, &mut metrics, &s)?;
        pb.set_message(format!("reward {:+.3} kl {:.4}", s.reward_mean, s.kl));
        pb.inc(1);
        let last = trainer.updates_done() >= llm.rl.updates;
        if last || (llm.sample_every > 0 && s.update % llm.sample_every == 0) {
            log_sample(
                &mut tb,
                trainer.agent_mut(),
                &env_cfg,
                sample_seed,
                s.update as i64,
            )?;
        }
        stats.push(s);
        // Read once: a Ctrl-C arriving now must not stop the run unsaved.
        let stop = crate::interrupt::requested();
        if stop || last || trainer.updates_done().is_multiple_of(every) {
            save_checkpoint(run, &trainer)?;
        }
        if stop && !last {
            pb.finish_and_clear();
            return Err(crate::interrupt::Interrupted {
                run: run.path().to_path_buf(),
                episodes_done: trainer.updates_done(),
                episodes: llm.rl.updates,
            }
            .into());
        }
    }
    pb.finish_and_clear();
    let last = trainer.updates_done() as i64;
    // After the loop too: a diverged run keeps its last good parameters.
    let ckpt = save_checkpoint(run, &trainer)?;
    if let Some(why) = trainer.stopped() {
        eprintln!("training stopped early: {why} (the last good parameters were kept)");
    }
    let mut after = Vec::new();
    if !eval.is_empty() {
        after = evaluate_returns(trainer.agent_mut(), &env_cfg, &eval)?;
        tb.add_scalar(
            "eval/return",
            emorl_core::numeric::mean(&after),
            last.max(1),
        )?;
    }
    let summary = serde_json::json!({
        "updates": trainer.updates_done(),
        "seconds": start.elapsed().as_secs_f64(),
        "eval_seeds": eval,
        "eval_return_before": before,
        "eval_return_after": after,
        "stopped": trainer.stopped(),
        "checkpoint": ckpt,
    });
    run.write_atomic(
        Path::new("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            emorl_core::numeric::mean(v)
        }
    };
    eprintln!(
        "trained {} on dialogue: {} updates in {:.1}s; validation return {:+.3} → {:+.3} ({} conversations); checkpoint {}",
        cfg.agent,
        trainer.updates_done(),
        start.elapsed().as_secs_f64(),
        mean(&before),
        mean(&after),
        eval.len(),
        ckpt.display()
    );
    Ok(())
}

/// `emorl chat`: the user types, a trained agent answers and shows its emotion.
/// `emorl generate --checkpoint DIR`: one answer of a trained agent to the
/// user message `prompt`, under the emotions of `emotion` (`fear=0.9,…`) or
/// the state its encoder computes from the message. The state used goes to
/// standard error.
pub fn generate_with_agent(
    checkpoint: &Path,
    model: Option<&str>,
    bf16: bool,
    prompt: &str,
    emotion: Option<&str>,
    seed: u64,
) -> Result<String> {
    use emorl_agents_llm::eval::{generate_with_emotion, parse_emotion_values, prompt_observation};
    let forced = emotion
        .map(parse_emotion_values)
        .transpose()
        .map_err(|e| anyhow!("--emotion: {e}"))?;
    let manifest =
        read_manifest(checkpoint).map_err(|e| anyhow!("{}: {e}", checkpoint.display()))?;
    let model = load_model(&checkpoint_model(&manifest, model), bf16)?;
    let mut agent = LlmAgent::load(checkpoint, model).map_err(|e| anyhow!("{e}"))?;
    let obs = prompt_observation(prompt);
    let generation = match forced {
        Some(phasic) => {
            let named: Vec<String> = emorl_agents_llm::EMOTIONS
                .iter()
                .zip(phasic)
                .map(|(n, v)| format!("{n}={v:.2}"))
                .collect();
            eprintln!("emotion (given): {}", named.join(" "));
            generate_with_emotion(&mut agent, &obs, phasic, seed)?
        }
        None => {
            let social =
                emorl_envs_dialogue::signals::social_context(&[], prompt, 0.0, 0.0, 0.0, 0);
            let context = EmotionalContext {
                social: Some(social),
                ..EmotionalContext::default()
            };
            agent.reset_episode();
            let g = agent.act_generation(&obs, &context)?;
            let named: Vec<String> = agent
                .last_emotion()
                .iter()
                .map(|(n, v)| format!("{n}={v:.2}"))
                .collect();
            eprintln!("emotion (from the message): {}", named.join(" "));
            g
        }
    };
    Ok(generation.text)
}

pub fn chat(checkpoint: &Path, model: Option<&str>, bf16: bool, max_turns: usize) -> Result<()> {
    let manifest =
        read_manifest(checkpoint).map_err(|e| anyhow!("{}: {e}", checkpoint.display()))?;
    let model = load_model(&checkpoint_model(&manifest, model), bf16)?;
    let mut agent = LlmAgent::load(checkpoint, model).map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "agent {} on {} — type a message, an empty line or /quit ends",
        manifest.agent.id(),
        manifest.base_model.name
    );
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut history: Vec<Turn> = Vec::new();
    let (mut cum_pos, mut cum_neg, mut failed) = (0.0, 0.0, 0u32);
    agent.reset_episode();
    for turn in 0..max_turns {
        write!(out, "you> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let message = line.trim().to_string();
        if message.is_empty() || message == "/quit" {
            break;
        }
        let hist: Vec<(Speaker, &str)> = history
            .iter()
            .map(|t| (t.speaker, t.text.as_str()))
            .collect();
        let social = emorl_envs_dialogue::signals::social_context(
            &hist, &message, 0.0, cum_pos, cum_neg, failed,
        );
        failed = social.failed_attempts;
        let s = social.user_satisfaction;
        if s >= 0.6 {
            cum_pos += s;
        } else if s < 0.4 {
            cum_neg += 1.0 - s;
        }
        let context = EmotionalContext {
            social: Some(social),
            ..EmotionalContext::default()
        };
        // Seed 001's phase 3: the user's reply is the feedback on the last
        // response; the ERM takes one online step toward its targets.
        if turn > 0 {
            if let Some(loss) = agent.erm_feedback_step(&context)? {
                tracing::debug!(loss, "ERM feedback step");
            }
        }
        let obs = DialogueObs {
            history: history.clone(),
            user_message: message.clone(),
            turn,
            max_turns,
            ended: false,
        };
        let reply = agent.act(&obs, &context)?;
        let emotion: Vec<String> = agent
            .last_emotion()
            .iter()
            .map(|(n, v)| format!("{n} {v:.2}"))
            .collect();
        writeln!(out, "agent> {}", reply.trim())?;
        writeln!(out, "       [{}]", emotion.join(", "))?;
        history.push(Turn {
            speaker: Speaker::User,
            text: message,
        });
        history.push(Turn {
            speaker: Speaker::Assistant,
            text: reply,
        });
    }
    Ok(())
}
