//! `emorl train` for the tabular Q-learners (the V2 agents and their
//! emotional channels): bounded logging, checkpoints, resumption.

use super::run::{self as resume, log_config, Opened, Progress, Start};
use super::spec::{AgentSettings, TrainConfig, TABULAR_CHECKPOINT_EVERY};
use crate::interrupt;
use crate::progress::progress;
use anyhow::{anyhow, bail, Context, Result};
use emorl_agents_tabular::channels::EmotionChannel;
use emorl_agents_tabular::{run_episode, QLearner, QLearnerState};
use emorl_core::RngHandle;
use emorl_log::{EventWriter, RunDir};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `checkpoints/train_state.json` holds for a tabular run: the loop's
/// progress and the learner's whole state.
#[derive(Serialize, Deserialize)]
struct TabularCheckpoint {
    progress: Progress,
    learner: QLearnerState,
}

const TABULAR_CHECKPOINT: &str = "checkpoints/train_state.json";

/// Records per run of a tabular agent under the default `log_every`.
const MAX_LOG_RECORDS: usize = 1000;

/// Histogram records per run at most (`histogram_every` is stretched).
const MAX_HISTOGRAMS: usize = 500;

/// Means of per-episode records over a window of episodes (tags in the
/// order first seen; a tag missing from some episodes is averaged over the
/// episodes that have it).
#[derive(Default)]
struct WindowMeans {
    sums: Vec<(String, f64, usize)>,
}

impl WindowMeans {
    fn add(&mut self, record: &[(String, f64)]) {
        for (tag, v) in record {
            match self.sums.iter_mut().find(|(t, _, _)| t == tag) {
                Some((_, sum, n)) => {
                    *sum += v;
                    *n += 1;
                }
                None => self.sums.push((tag.clone(), *v, 1)),
            }
        }
    }

    /// Writes the window's means as one record at `step` (nothing when the
    /// window is empty) and starts the next window.
    fn flush(
        &mut self,
        tb: &mut EventWriter,
        metrics: &mut emorl_log::MetricsWriter,
        step: i64,
    ) -> Result<()> {
        let means: Vec<(String, f64)> = std::mem::take(&mut self.sums)
            .into_iter()
            .map(|(t, sum, n)| (t, sum / n.max(1) as f64))
            .collect();
        if means.is_empty() {
            return Ok(());
        }
        for (tag, v) in &means {
            tb.add_scalar(tag, *v, step)?;
        }
        let fields: Vec<(&str, f64)> = means.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.record(step, &fields)?;
        Ok(())
    }
}

pub(crate) fn train_tabular(
    cfg: &TrainConfig,
    make_env: fn(RngHandle) -> Box<dyn emorl_core::DiscreteEnv>,
    start: Start<'_>,
) -> Result<PathBuf> {
    let AgentSettings::Tabular(agent_cfg) = cfg.settings()?.clone() else {
        bail!("agent '{}' is not a tabular agent", cfg.agent);
    };
    let rng = RngHandle::new(cfg.rng, cfg.seed);
    let mut env = make_env(rng.clone());
    let mut agent = QLearner::new(env.n_states(), env.n_actions(), agent_cfg)
        .map_err(|e| anyhow!("agent '{}': {e}", cfg.agent))?;
    let Opened {
        run,
        resumed,
        mut state,
        complete,
    } = start.open_episodes(cfg, &rng, |run| {
        let path = run.path().join(TABULAR_CHECKPOINT);
        let Some(ck) = resume::read_json::<TabularCheckpoint>(&path)? else {
            return Ok(None);
        };
        agent
            .restore(ck.learner)
            .with_context(|| format!("{} does not fit this agent", path.display()))?;
        Ok(Some(ck.progress))
    })?;
    if complete {
        return Ok(run.path().to_path_buf());
    }
    let first = state.episodes_done;
    let (mut tb, mut metrics) = resume::writers(&run, resumed, first)?;
    if first == 0 {
        log_config(&mut tb, cfg)?;
        tb.add_text("env/start", &format!("```\n{}```", env.render()), 0)?;
    }
    interrupt::catch_ctrl_c()?;
    tracing::info!(run = %run.path().display(), env = %cfg.env, agent = %cfg.agent, first, "training");

    let every = cfg.checkpoint_every.unwrap_or(TABULAR_CHECKPOINT_EVERY);
    let window = resume::summary_window(cfg.episodes);
    let log_every = match cfg.log_every {
        0 => cfg.episodes.div_ceil(MAX_LOG_RECORDS).max(1),
        n => n,
    };
    let histogram_every = match cfg.histogram_every {
        0 => 0,
        n => n.max(cfg.episodes.div_ceil(MAX_HISTOGRAMS)),
    };
    let mut window_log = WindowMeans::default();
    let pb = progress(cfg.episodes as u64, "train");
    pb.set_position(first as u64);
    let start = Instant::now();
    let mut steps_here: usize = 0;
    let n_actions = env.n_actions();
    for ep in first..cfg.episodes {
        let mut td_abs = 0.0;
        let mut lr_sum = 0.0;
        let mut min_threat = f64::INFINITY;
        let mut blocked = 0usize;
        let mut action_counts = vec![0usize; n_actions];
        let n_channels = agent.channels().len();
        let mut emotion_steps: Vec<Vec<f64>> = vec![Vec::new(); n_channels];
        let summary = run_episode(
            env.as_mut(),
            &mut agent,
            &rng,
            cfg.max_steps,
            true,
            |st, a| {
                if let Some(u) = st.update {
                    td_abs += u.td_error.abs();
                    lr_sum += u.effective_lr;
                }
                if let Some(d) = st.step.context.threat_distance {
                    min_threat = min_threat.min(d);
                }
                blocked += usize::from(st.step.context.was_blocked);
                if let Some(c) = action_counts.get_mut(st.action) {
                    *c += 1;
                }
                for (trace, ch) in emotion_steps.iter_mut().zip(a.channels()) {
                    trace.push(ch.phasic());
                }
            },
        );
        steps_here += summary.steps;
        let steps = summary.steps.max(1) as f64;
        let step = ep as i64;
        let sps = steps_here as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let mut record: Vec<(String, f64)> = vec![
            ("charts/episodic_return".into(), summary.episode_return),
            ("charts/episodic_length".into(), summary.steps as f64),
            ("charts/SPS".into(), sps),
            ("charts/epsilon".into(), agent.epsilon()),
            ("charts/blocked_steps".into(), blocked as f64),
            ("losses/td_error".into(), td_abs / steps),
            ("charts/learning_rate".into(), lr_sum / steps),
        ];
        if min_threat.is_finite() {
            record.push(("charts/min_threat_distance".into(), min_threat));
        }
        for (a, c) in action_counts.iter().enumerate() {
            record.push((format!("charts/action_rate/{a}"), *c as f64 / steps));
        }
        for (ch, trace) in agent.channels().iter().zip(&emotion_steps) {
            record.push((
                format!("emotion/{}", ch.name()),
                emorl_core::numeric::mean(trace),
            ));
            record.push((format!("emotion/{}_tonic", ch.name()), ch.tonic()));
        }
        let last = ep + 1 == cfg.episodes;
        window_log.add(&record);
        if (ep + 1) % log_every == 0 || last {
            window_log.flush(&mut tb, &mut metrics, step)?;
        }
        if histogram_every > 0 && (ep % histogram_every == 0 || last) {
            tb.add_histogram("histograms/q_values", agent.q_table(), step)?;
            for (ch, trace) in agent.channels().iter().zip(&emotion_steps) {
                tb.add_histogram(&format!("histograms/emotion/{}", ch.name()), trace, step)?;
            }
        }
        state.finish_episode(summary.steps, summary.episode_return, window);
        pb.set_message(format!("return {:.3}", summary.episode_return));
        pb.inc(1);
        let saved = resume::end_episode(&run, cfg, ep, every, &mut state, &rng, |st| {
            // A checkpoint holds every record up to it (a resumed run
            // continues after the checkpoint's episode).
            window_log.flush(&mut tb, &mut metrics, step)?;
            save_tabular(&run, st, &agent, n_actions)
        });
        if let Err(e) = saved {
            pb.finish_and_clear();
            return Err(e);
        }
    }
    pb.finish_and_clear();
    tb.add_text(
        "env/end",
        &format!("```\n{}```", env.render()),
        cfg.episodes as i64,
    )?;
    let recent = emorl_core::numeric::mean(&state.recent_returns);
    eprintln!(
        "trained {} on {} for {} episodes ({} steps, {:.2}s); mean return of the last {}: {recent:.4}",
        cfg.agent,
        cfg.env,
        cfg.episodes,
        state.global_step,
        start.elapsed().as_secs_f64(),
        state.recent_returns.len(),
    );
    Ok(run.path().to_path_buf())
}

/// Writes the checkpoint: `train_state.json` (what a resume needs) and
/// `q_table.json` (the table, to read), each atomically.
fn save_tabular(run: &RunDir, state: &Progress, agent: &QLearner, n_actions: usize) -> Result<()> {
    let q = serde_json::to_vec(&serde_json::json!({
        "n_actions": n_actions,
        "q": agent.q_table(),
    }))?;
    run.write_atomic(Path::new("checkpoints/q_table.json"), &q)?;
    let ck = TabularCheckpoint {
        progress: state.clone(),
        learner: agent.state().context("checkpoint")?,
    };
    run.write_atomic(Path::new(TABULAR_CHECKPOINT), &serde_json::to_vec(&ck)?)?;
    Ok(())
}
