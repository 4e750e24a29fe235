//! Environment wrappers in Gymnasium's manner, used by every episode loop so
//! that no loop counts steps or sums returns on its own, and all of them
//! agree on what ended an episode:
//!
//! * [`TimeLimit`] ends an episode after a number of steps by **truncation**
//!   (`truncated = true`, `terminated` left as the task says). Learners
//!   bootstrap through a truncation and not through a termination, so a
//!   step cap never makes the last transition terminal.
//! * [`EpisodeStatistics`] keeps the episode's return and length. Unlike
//!   Gymnasium's, it leaves the last step's `info` alone: no loop reads them
//!   there, and writing them cost the tabular episode loop a sixth of its
//!   time (keys to allocate, and every step copied on its way out).
//!
//! Both forward `context`, `render` and, for a [`DiscreteEnv`], its sizes
//! and features; [`ByRef`] lets a loop wrap a borrowed `&mut dyn
//! DiscreteEnv`.

use crate::context::EmotionalContext;
use crate::env::{DiscreteEnv, Env, Info, Step};

/// `context` and `render` of a wrapper: its inner environment's.
macro_rules! view_of_inner {
    () => {
        fn context(&self) -> EmotionalContext {
            self.env.context()
        }
        fn render(&self) -> String {
            self.env.render()
        }
    };
}

/// A wrapper of a [`DiscreteEnv`] is one, with the inner sizes and features.
macro_rules! discrete_like_inner {
    ($wrapper:ident) => {
        impl<E: DiscreteEnv> DiscreteEnv for $wrapper<E> {
            fn n_states(&self) -> usize {
                self.env.n_states()
            }
            fn n_actions(&self) -> usize {
                self.env.n_actions()
            }
            fn features(&self, state: usize) -> Vec<f32> {
                self.env.features(state)
            }
        }
    };
}

/// A borrowed environment as a value the wrappers can own, so a loop can
/// wrap the `&mut dyn DiscreteEnv` it was given. (A newtype instead of
/// implementing [`Env`] for every `&mut E`, which would let the trait's
/// methods shadow a type's inherent methods of the same name.)
pub struct ByRef<'a, E: ?Sized>(pub &'a mut E);

impl<E: ?Sized> std::ops::Deref for ByRef<'_, E> {
    type Target = E;
    fn deref(&self) -> &E {
        self.0
    }
}

impl<E: Env + ?Sized> Env for ByRef<'_, E> {
    type Obs = E::Obs;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (Self::Obs, Info) {
        self.0.reset(seed)
    }
    fn step(&mut self, action: &Self::Action) -> Step<Self::Obs> {
        self.0.step(action)
    }
    fn context(&self) -> EmotionalContext {
        self.0.context()
    }
    fn render(&self) -> String {
        self.0.render()
    }
}

impl<E: DiscreteEnv + ?Sized> DiscreteEnv for ByRef<'_, E> {
    fn n_states(&self) -> usize {
        self.0.n_states()
    }
    fn n_actions(&self) -> usize {
        self.0.n_actions()
    }
    fn features(&self, state: usize) -> Vec<f32> {
        self.0.features(state)
    }
}

/// Truncates every episode after `max_steps` steps.
#[derive(Debug)]
pub struct TimeLimit<E> {
    env: E,
    max_steps: usize,
    elapsed: usize,
    cut: bool,
}

impl<E> TimeLimit<E> {
    /// `max_steps` must be at least 1 (a loop that takes no step needs no
    /// environment).
    pub fn new(env: E, max_steps: usize) -> Self {
        TimeLimit {
            env,
            max_steps: max_steps.max(1),
            elapsed: 0,
            cut: false,
        }
    }

    /// Whether the last step was truncated by this limit (and not ended by
    /// the environment itself).
    pub fn cut_short(&self) -> bool {
        self.cut
    }

    /// Steps taken since the last reset.
    pub fn elapsed(&self) -> usize {
        self.elapsed
    }

    pub fn inner(&self) -> &E {
        &self.env
    }
}

impl<E: Env> Env for TimeLimit<E> {
    type Obs = E::Obs;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (Self::Obs, Info) {
        self.elapsed = 0;
        self.cut = false;
        self.env.reset(seed)
    }
    fn step(&mut self, action: &Self::Action) -> Step<Self::Obs> {
        let mut step = self.env.step(action);
        self.elapsed += 1;
        self.cut = self.elapsed >= self.max_steps && !step.done();
        if self.cut {
            step.truncated = true;
        }
        step
    }
    view_of_inner!();
}

discrete_like_inner!(TimeLimit);

/// Keeps the running episode's return (rewards summed in step order) and
/// length.
#[derive(Debug)]
pub struct EpisodeStatistics<E> {
    env: E,
    episode_return: f64,
    length: usize,
}

impl<E> EpisodeStatistics<E> {
    pub fn new(env: E) -> Self {
        EpisodeStatistics {
            env,
            episode_return: 0.0,
            length: 0,
        }
    }

    /// Sum of this episode's rewards so far.
    pub fn episode_return(&self) -> f64 {
        self.episode_return
    }

    /// Steps of this episode so far.
    pub fn length(&self) -> usize {
        self.length
    }

    pub fn inner(&self) -> &E {
        &self.env
    }
}

impl<E: Env> Env for EpisodeStatistics<E> {
    type Obs = E::Obs;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (Self::Obs, Info) {
        self.episode_return = 0.0;
        self.length = 0;
        self.env.reset(seed)
    }
    fn step(&mut self, action: &Self::Action) -> Step<Self::Obs> {
        let step = self.env.step(action);
        self.episode_return += step.reward;
        self.length += 1;
        step
    }
    view_of_inner!();
}

discrete_like_inner!(EpisodeStatistics);

#[cfg(test)]
mod tests {
    use super::*;

    /// A corridor: action 1 moves right, the end (cell `len`) terminates.
    struct Corridor {
        pos: usize,
        len: usize,
    }

    impl Env for Corridor {
        type Obs = usize;
        type Action = usize;
        fn reset(&mut self, _: Option<u64>) -> (usize, Info) {
            self.pos = 0;
            (0, Info::new())
        }
        fn step(&mut self, a: &usize) -> Step<usize> {
            self.pos += a;
            let end = self.pos >= self.len;
            Step::new(self.pos, if end { 1.0 } else { -0.1 }, end, self.context())
        }
        fn context(&self) -> EmotionalContext {
            EmotionalContext::default()
        }
        fn render(&self) -> String {
            format!("at {}", self.pos)
        }
    }

    impl DiscreteEnv for Corridor {
        fn n_states(&self) -> usize {
            self.len + 1
        }
        fn n_actions(&self) -> usize {
            2
        }
        fn features(&self, s: usize) -> Vec<f32> {
            vec![s as f32]
        }
    }

    fn run(env: &mut impl Env<Action = usize>, action: usize) -> Vec<(bool, bool)> {
        env.reset(None);
        let mut flags = Vec::new();
        loop {
            let s = env.step(&action);
            flags.push((s.terminated, s.truncated));
            if s.done() {
                return flags;
            }
        }
    }

    #[test]
    fn the_limit_truncates_and_the_task_terminates() {
        let mut env = TimeLimit::new(Corridor { pos: 0, len: 3 }, 5);
        // Standing still: cut at step 5, never terminal.
        let flags = run(&mut env, 0);
        assert_eq!(flags.len(), 5);
        assert_eq!(flags[4], (false, true));
        assert!(flags[..4].iter().all(|f| *f == (false, false)));
        assert!(env.cut_short());
        // Walking: the task ends at step 3, before the limit.
        let flags = run(&mut env, 1);
        assert_eq!(flags.last(), Some(&(true, false)));
        assert!(!env.cut_short());
        assert_eq!(env.elapsed(), 3);
        // Ending exactly at the limit is the task's end, not a truncation.
        let mut env = TimeLimit::new(Corridor { pos: 0, len: 3 }, 3);
        assert_eq!(run(&mut env, 1).last(), Some(&(true, false)));
        assert!(!env.cut_short());
    }

    #[test]
    fn statistics_sum_in_step_order_and_reset() {
        let mut corridor = Corridor { pos: 0, len: 3 };
        // Through a borrowed `dyn`, as the episode loops hold it.
        let dyn_env: &mut dyn DiscreteEnv = &mut corridor;
        let mut env = EpisodeStatistics::new(TimeLimit::new(ByRef(dyn_env), 10));
        assert_eq!(env.n_states(), 4);
        assert_eq!(env.features(2), vec![2.0]);
        env.reset(None);
        let mut expected = 0.0;
        let last = loop {
            let s = env.step(&1);
            expected += s.reward;
            if s.done() {
                break s;
            }
        };
        assert_eq!(env.length(), 3);
        assert_eq!(env.episode_return().to_bits(), expected.to_bits());
        assert!(last.terminated && last.info.is_empty());
        env.reset(None);
        assert_eq!((env.length(), env.episode_return()), (0, 0.0));
        assert_eq!(env.render(), "at 0");
    }
}
