//! Same seed ⇒ same trajectory: the check every registered environment passes.

use crate::env::{Env, Step};
use crate::error::CoreError;
use crate::wrappers::{ByRef, TimeLimit};

/// One recorded trajectory: the reset observation, then every step.
pub type Trajectory<O> = (O, Vec<Step<O>>);

/// A policy for recordings: `(observation, step index) -> action`.
pub type BoxedPolicy<O, A> = Box<dyn FnMut(&O, usize) -> A>;

/// Makes a fresh policy for each recording.
pub type PolicyFactory<'a, E> = dyn Fn() -> BoxedPolicy<<E as Env>::Obs, <E as Env>::Action> + 'a;

/// Runs `episodes` episodes of at most `max_steps` steps, choosing actions with
/// `policy(obs, step_index)`; resets with `seed` first.
pub fn record<E: Env>(
    env: &mut E,
    seed: u64,
    episodes: usize,
    max_steps: usize,
    policy: &mut dyn FnMut(&E::Obs, usize) -> E::Action,
) -> Vec<Trajectory<E::Obs>> {
    let mut out = Vec::with_capacity(episodes);
    if max_steps == 0 {
        return out;
    }
    let mut env = TimeLimit::new(ByRef(env), max_steps);
    for ep in 0..episodes {
        let (obs0, _) = env.reset(if ep == 0 { Some(seed) } else { None });
        let mut obs = obs0.clone();
        let mut steps = Vec::new();
        loop {
            let action = policy(&obs, steps.len());
            let step = env.step(&action);
            obs = step.obs.clone();
            let done = step.done();
            steps.push(step);
            if done {
                break;
            }
        }
        out.push((obs0, steps));
    }
    out
}

/// Builds the environment twice with `make`, drives both with the same
/// action sequence (from `make_policy`), and requires identical trajectories.
pub fn check_determinism<E: Env>(
    name: &str,
    make: &dyn Fn() -> E,
    make_policy: &PolicyFactory<'_, E>,
    seed: u64,
    episodes: usize,
    max_steps: usize,
) -> Result<(), CoreError> {
    let mut a = make();
    let mut b = make();
    let ta = record(&mut a, seed, episodes, max_steps, &mut *make_policy());
    let tb = record(&mut b, seed, episodes, max_steps, &mut *make_policy());
    if ta.len() != tb.len() {
        return Err(CoreError::NotDeterministic {
            env: name.to_string(),
            detail: "different numbers of episodes".into(),
        });
    }
    for (ep, (x, y)) in ta.iter().zip(tb.iter()).enumerate() {
        if x.0 != y.0 {
            return Err(CoreError::NotDeterministic {
                env: name.to_string(),
                detail: format!("episode {ep}: reset observations differ"),
            });
        }
        if x.1.len() != y.1.len() {
            return Err(CoreError::NotDeterministic {
                env: name.to_string(),
                detail: format!("episode {ep}: lengths {} vs {}", x.1.len(), y.1.len()),
            });
        }
        for (t, (sx, sy)) in x.1.iter().zip(y.1.iter()).enumerate() {
            // Compare rewards by bit pattern so NaN != NaN does not pass silently.
            let same = sx.obs == sy.obs
                && sx.reward.to_bits() == sy.reward.to_bits()
                && sx.terminated == sy.terminated
                && sx.truncated == sy.truncated
                && sx.context == sy.context;
            if !same {
                return Err(CoreError::NotDeterministic {
                    env: name.to_string(),
                    detail: format!("episode {ep}, step {t}: {sx:?} vs {sy:?}"),
                });
            }
        }
    }
    Ok(())
}
