//! `emorl train --env dialogue --agent llm-*`: the supervised phases, RL on
//! the frozen model, TensorBoard logging, checkpoints and resumption.

use super::run::{self as resume, log_config};
use super::spec::{AgentSettings, TrainConfig};
use crate::llm_setup::{
    erm_pairs, load_model, set_threads, LlmTrainConfig, CHECKPOINT, LLM_CHECKPOINT_EVERY,
};
use crate::progress::progress;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_llm::supervision::{pretrain_encoder_on_dialogue, pretrain_erm_on_corpora};
use emorl_agents_llm::{
    evaluate_returns, AgentKind, LlmAgent, LlmAgentError, Trainer, UpdateStats,
};
use emorl_core::Env;
use emorl_envs_text::{Dialogue, DialogueConfig};
use emorl_log::{EventWriter, MetricsWriter, RunDir};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Seeds of the validation conversations `emorl train` plays before and
/// after training: a fixed block disjoint from the training prompts' seeds
/// (mixed from the run seed) and from the held-out conversations of `emorl
/// reproduce llm-modules` (1 000 000 + …), so settings chosen on `train`
/// runs never see the table's conversations.
fn eval_seeds(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| 6_000_000 + i).collect()
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
    let AgentSettings::Llm(llm) = cfg.settings()? else {
        bail!("agent '{}' is not an LLM agent", cfg.agent);
    };
    let mut llm = (**llm).clone();
    set_threads(llm.threads);
    llm.agent.seed = cfg.seed;
    llm.rl.seed = cfg.seed;
    llm.rl.updates = cfg.episodes;
    llm.rl.env = cfg.dialogue()?.clone();
    // Read the environment's data files now: an error leaves no run directory.
    emorl_envs_text::Dialogue::new(llm.rl.env.clone()).context("dialogue environment")?;
    let model = load_model(&llm.model, llm.bf16)?;
    let agent = LlmAgent::new(model, kind, llm.agent.clone())
        .map_err(|e| anyhow!("agent '{}': {e}", kind.id()))?;
    Ok(Prepared { llm, agent })
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
    if agent.modules().lora.is_some() && llm.lora_text.epochs > 0 {
        match emorl_agents_llm::data::goemotions_dir() {
            Some(dir) => {
                eprintln!(
                    "LoRA adapters on labelled text, one per emotion ({})…",
                    dir.display()
                );
                let dd = emorl_agents_llm::data::dailydialog_file();
                let pb = progress(0, "LoRA text phase");
                let report = emorl_agents_llm::lora_text::pretrain_lora_on_corpora(
                    agent,
                    &dir,
                    dd.as_deref(),
                    &llm.lora_text,
                    |_, total, loss| {
                        if pb.length() != Some(total as u64) {
                            pb.set_length(total as u64);
                        }
                        pb.inc(1);
                        pb.set_message(format!("loss {loss:.3}"));
                    },
                )?;
                pb.finish_and_clear();
                if let Some(r) = report {
                    tb.add_scalar("losses/lora_text", r.final_loss, 0)?;
                    for p in &r.held_out {
                        tb.add_scalar(&format!("eval/lora_{}_frozen", p.emotion), p.frozen, 0)?;
                        tb.add_scalar(&format!("eval/lora_{}_adapted", p.emotion), p.adapted, 0)?;
                    }
                    let drops: Vec<String> = r
                        .held_out
                        .iter()
                        .map(|p| format!("{} {:.3}→{:.3}", p.emotion, p.frozen, p.adapted))
                        .collect();
                    eprintln!(
                        "LoRA on held-out GoEmotions text (nats/token, frozen→adapter): {}",
                        drops.join(", ")
                    );
                    run.write_atomic(
                        std::path::Path::new("lora_text.json"),
                        serde_json::to_string_pretty(&r)?.as_bytes(),
                    )?;
                }
            }
            None => tracing::warn!(
                "no GoEmotions files found (set EMORL_GOEMOTIONS_DIR): the LoRA text phase is skipped"
            ),
        }
    }
    if agent.modules().dual.is_some() && llm.dual_text.steps > 0 {
        dual_phase(cfg, llm, agent, run, tb)?;
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

/// `llm-dual`'s supervised phase on DailyDialog: every loss term and the
/// gate's mean and sparsity per step in TensorBoard, the held-out response
/// perplexity of the frozen model and of the adapter before and after.
fn dual_phase(
    cfg: &TrainConfig,
    llm: &LlmTrainConfig,
    agent: &mut LlmAgent,
    run: &RunDir,
    tb: &mut EventWriter,
) -> Result<()> {
    let Some(dir) = emorl_agents_llm::data::dailydialog_file()
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
    else {
        tracing::warn!(
            "no DailyDialog files found (set EMORL_DAILYDIALOG_DIR): the dual adapters' supervised phase is skipped"
        );
        return Ok(());
    };
    eprintln!(
        "dual adapters on DailyDialog responses ({}; dialogues_validation held out)…",
        dir.display()
    );
    let pb = progress(llm.dual_text.steps as u64, "dual phase");
    let mut logged: Result<()> = Ok(());
    let report = emorl_agents_llm::dual_text::pretrain_dual_on_dailydialog(
        agent,
        &dir,
        &llm.dual_text,
        cfg.seed,
        |i, _, t| {
            let step = i as i64;
            let mut log = || -> Result<()> {
                tb.add_scalar("dual/loss_lm", t.lm, step)?;
                tb.add_scalar("dual/loss_propagation", t.propagation, step)?;
                tb.add_scalar("dual/loss_distillation", t.distillation, step)?;
                tb.add_scalar("dual/loss_total", t.total, step)?;
                tb.add_scalar("dual/gate_mean", t.gate_mean, step)?;
                tb.add_scalar("dual/gate_sparsity", t.gate_sparsity, step)?;
                Ok(())
            };
            if logged.is_ok() {
                logged = log();
            }
            pb.inc(1);
            pb.set_message(format!("lm {:.3} prop {:.3}", t.lm, t.propagation));
        },
    )?;
    pb.finish_and_clear();
    logged?;
    if let Some(r) = report {
        let h = &r.held_out;
        tb.add_scalar("eval/dual_perplexity_frozen", h.frozen.exp(), 0)?;
        tb.add_scalar("eval/dual_perplexity_untrained", h.untrained.exp(), 0)?;
        tb.add_scalar("eval/dual_perplexity_trained", h.trained.exp(), 0)?;
        eprintln!(
            "dual adapters: held-out response perplexity {:.2} (frozen) → {:.2} (trained) on {} responses",
            h.frozen.exp(),
            h.trained.exp(),
            h.examples
        );
        run.write_atomic(
            Path::new("dual_text.json"),
            serde_json::to_string_pretty(&r)?.as_bytes(),
        )?;
    }
    Ok(())
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
        if !resume::continue_run(run, cfg, done)? {
            return Ok(());
        }
        let before: Vec<f64> =
            resume::read_json(&run.path().join(BEFORE_FILE))?.unwrap_or_default();
        let (tb, metrics) = resume::writers(run, true, done + 1)?;
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
