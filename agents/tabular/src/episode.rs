//! The episode loop shared by training runs and experiment protocols.

use crate::learner::{QLearner, UpdateStats};
use emorl_core::{ByRef, DiscreteEnv, Env, EpisodeStatistics, RngHandle, Step, TimeLimit};

/// One step as seen by bookkeeping callbacks.
pub struct EpisodeStep<'a> {
    pub state: usize,
    pub action: usize,
    pub step: &'a Step<usize>,
    /// `None` when the episode does not learn (evaluation).
    pub update: Option<UpdateStats>,
}

/// Totals of one episode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpisodeSummary {
    pub episode_return: f64,
    pub steps: usize,
    /// Whether the environment ended the episode (as opposed to the step cap).
    pub done: bool,
}

/// Runs one episode of at most `max_steps` steps: reset, then act / step /
/// (learn) until the environment is done or the step cap truncates it
/// ([`TimeLimit`]; the learner bootstraps through a truncation, so the cap
/// never makes the last transition terminal). `on_step` sees each step and
/// the agent after its update.
pub fn run_episode(
    env: &mut dyn DiscreteEnv,
    agent: &mut QLearner,
    rng: &RngHandle,
    max_steps: usize,
    learn: bool,
    mut on_step: impl FnMut(&EpisodeStep, &QLearner),
) -> EpisodeSummary {
    if max_steps == 0 {
        return EpisodeSummary::default();
    }
    let mut env = EpisodeStatistics::new(TimeLimit::new(ByRef(env), max_steps));
    let (mut state, _) = env.reset(None);
    let mut action = agent.act(state, &env.context(), rng);
    loop {
        let step = env.step(&action);
        let update = learn.then(|| {
            agent.update(
                state,
                action,
                step.reward,
                step.obs,
                step.terminated,
                &step.context,
            )
        });
        on_step(
            &EpisodeStep {
                state,
                action,
                step: &step,
                update,
            },
            agent,
        );
        if step.done() {
            return EpisodeSummary {
                episode_return: env.episode_return(),
                steps: env.length(),
                done: !env.inner().cut_short(),
            };
        }
        state = step.obs;
        // Acting here, while the step is at hand, spares a copy of its context.
        action = agent.act(state, &step.context, rng);
    }
}
