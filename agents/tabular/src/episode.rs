//! The episode loop shared by training runs and experiment protocols.

use crate::learner::{QLearner, UpdateStats};
use emorl_core::{DiscreteEnv, RngHandle, Step};

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
/// (learn) until the environment is done. The step cap does not make the last
/// transition terminal. `on_step` sees each step and the agent after its update.
pub fn run_episode(
    env: &mut dyn DiscreteEnv,
    agent: &mut QLearner,
    rng: &RngHandle,
    max_steps: usize,
    learn: bool,
    mut on_step: impl FnMut(&EpisodeStep, &QLearner),
) -> EpisodeSummary {
    let (mut state, _) = env.reset(None);
    let mut summary = EpisodeSummary::default();
    for _ in 0..max_steps {
        let action = agent.act(state, rng);
        let step = env.step(&action);
        let done = step.done();
        let update =
            learn.then(|| agent.update(state, action, step.reward, step.obs, done, &step.context));
        summary.episode_return += step.reward;
        summary.steps += 1;
        on_step(
            &EpisodeStep {
                state,
                action,
                step: &step,
                update,
            },
            agent,
        );
        if done {
            summary.done = true;
            break;
        }
        state = step.obs;
    }
    summary
}
