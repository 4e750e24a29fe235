//! The gridworld suite: the Emotional-ED V2 Experiment-12 worlds (threat grid,
//! blocked path, two doors, integration, transfer), each exposing the
//! emotional context the protocol lists, plus a registry of string IDs.

pub mod blocked;
pub mod grid;
pub mod integration;
pub mod threat;
pub mod transfer;
pub mod two_door;

pub use blocked::BlockedPathGrid;
pub use integration::IntegrationGrid;
pub use threat::ThreatGrid;
pub use transfer::TransferGrid;
pub use two_door::TwoDoor;

use emorl_core::registry::Registry;
use emorl_core::{DiscreteEnv, RngHandle};

/// Builds an environment on a shared generator (only stochastic worlds draw from it).
pub type MakeEnv = fn(RngHandle) -> Box<dyn DiscreteEnv>;

/// Every discrete environment, by ID.
pub fn registry() -> Registry<MakeEnv> {
    let mut r: Registry<MakeEnv> = Registry::new("environment");
    r.register(
        "v2-threat-grid",
        "5x5 grid, harmless threat in the centre, goal in the far corner (V2 fear)",
        |_| Box::new(ThreatGrid::default()),
    );
    r.register(
        "v2-blocked-path",
        "5x5 grid whose direct route is walled for the first 9 steps (V2 anger)",
        |_| Box::new(BlockedPathGrid::default()),
    );
    r.register(
        "v2-two-door",
        "two doors, 100 trials, counterfactual feedback on the unchosen door (V2 regret)",
        |rng| Box::new(TwoDoor::new(rng)),
    );
    r.register(
        "v2-integration",
        "7x7 grid: safe goal, risky goal behind a threat, blocked goal behind a wall (V2 integration)",
        |_| Box::new(IntegrationGrid::default()),
    );
    r.register(
        "v2-transfer-train",
        "5x5 grid, costly zone around a central threat (V2 transfer, training)",
        |_| Box::new(TransferGrid::training()),
    );
    r.register(
        "v2-transfer-novel",
        "5x5 grid, costly zone around a threat at a new place (V2 transfer, test)",
        |_| Box::new(TransferGrid::novel()),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::determinism::{check_determinism, BoxedPolicy};
    use emorl_core::{Env, RngKind};

    #[test]
    fn every_registered_env_is_deterministic() {
        for entry in registry().entries() {
            let policy = || -> BoxedPolicy<usize, usize> {
                let rng = RngHandle::new(RngKind::Fast, 11);
                Box::new(move |_, _| rng.randint(4) % 4)
            };
            // Boxed envs: wrap to satisfy the generic Env bound.
            let make_boxed = || Boxed((entry.make)(RngHandle::new(RngKind::Numpy, 0)));
            check_determinism(entry.id, &make_boxed, &policy, 3, 5, 120)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    struct Boxed(Box<dyn DiscreteEnv>);
    impl Env for Boxed {
        type Obs = usize;
        type Action = usize;
        fn reset(&mut self, seed: Option<u64>) -> (usize, emorl_core::Info) {
            self.0.reset(seed)
        }
        fn step(&mut self, a: &usize) -> emorl_core::Step<usize> {
            let a = *a % self.0.n_actions();
            self.0.step(&a)
        }
        fn context(&self) -> emorl_core::EmotionalContext {
            self.0.context()
        }
        fn render(&self) -> String {
            self.0.render()
        }
    }

    #[test]
    fn threat_grid_blocks_at_border_and_reaches_goal() {
        let mut g = ThreatGrid::default();
        g.reset(None);
        let s = g.step(&0);
        assert!(s.context.was_blocked);
        assert_eq!(s.obs, 0);
        assert_eq!(s.reward, -0.01);
        for a in [1, 1, 1, 1, 3, 3, 3] {
            assert!(!g.step(&a).terminated);
        }
        let last = g.step(&3);
        assert!(last.terminated);
        assert_eq!(last.reward, 1.0);
        assert_eq!(last.context.threat_distance, Some(8f64.sqrt()));
    }

    #[test]
    fn blocked_path_wall_vanishes_at_step_ten() {
        let mut g = BlockedPathGrid::default();
        g.reset(None);
        // Go to (1,2), then push down into the wall at (2,2).
        for a in [1, 3, 3] {
            g.step(&a);
        }
        let mut blocks = 0;
        for _ in 0..6 {
            let s = g.step(&1);
            assert!(s.context.was_blocked);
            blocks += 1;
            assert_eq!(s.context.consecutive_blocks, blocks);
        }
        // Step 10: the wall is gone.
        let s = g.step(&1);
        assert!(!s.context.was_blocked);
        assert_eq!(s.obs, 12);
    }

    #[test]
    fn integration_wall_breaks_on_fourth_hit() {
        let mut g = IntegrationGrid::default();
        g.reset(None);
        g.step(&3); // (3,1)
        for k in 1..=3 {
            let s = g.step(&1);
            assert!(s.context.was_blocked);
            assert_eq!(s.context.consecutive_blocks, k);
        }
        let s = g.step(&1);
        assert!(!s.context.was_blocked);
        assert_eq!(s.obs, 4 * 7 + 1);
    }

    #[test]
    fn two_door_draws_two_hundred_normals_per_reset() {
        let rng = RngHandle::new(RngKind::Numpy, 0);
        let mut env = TwoDoor::new(rng.clone());
        env.reset(None);
        let mut reference = emorl_core::EmoRng::new(RngKind::Numpy, 0);
        for _ in 0..200 {
            reference.standard_normal();
        }
        assert_eq!(rng.snapshot(), reference);
        let s = env.step(&1);
        let cf = s.context.counterfactual.expect("counterfactual");
        assert_eq!(cf.foregone_action, Some(0));
        assert_eq!(s.reward, cf.obtained);
    }

    #[test]
    fn novel_transfer_zone_costs() {
        let mut g = TransferGrid::novel();
        g.reset(None);
        g.step(&3);
        let s = g.step(&3); // (0,2): distance to (1,3) is sqrt(2) < 1.5
        assert_eq!(s.reward, -0.51);
    }
}
