//! The gridworld suite: the Emotional-ED V2 Experiment-12 worlds (threat grid,
//! blocked path, two doors, integration, transfer), each exposing the
//! emotional context the protocol lists, plus a registry of string IDs.

pub mod battery;
pub mod blocked;
pub mod bottleneck;
pub mod cliff;
pub mod grid;
pub mod hazards;
pub mod integration;
pub mod pitch_black;
pub mod predator;
pub mod seasons;
pub mod terminal_threat;
pub mod threat;
pub mod transfer;
pub mod two_door;

pub use battery::BatteryRun;
pub use blocked::BlockedPathGrid;
pub use bottleneck::Bottleneck;
pub use cliff::SlipperyCliffEnv;
pub use hazards::HazardTransfer;
pub use integration::IntegrationGrid;
pub use pitch_black::PitchBlack;
pub use predator::PredatorPrey;
pub use seasons::ChangingSeasons;
pub use terminal_threat::TerminalThreatGrid;
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
    r.register(
        "gridworld",
        "5x5 DQN grid: terminal threat (-1) in the centre, goal (+1) in the far corner, 4 features (Exp 16b)",
        |_| Box::new(TerminalThreatGrid::new()),
    );
    r.register(
        "v3-pitch-black",
        "10x10 dark grid: find a hidden key, then the door in the far corner; +10 only then, 500 steps (V3 Exp 17)",
        |rng| Box::new(PitchBlack::new(rng)),
    );
    r.register(
        "v3-changing-seasons",
        "5x5 grid, red berries top and blue bottom; which colour pays +1 (the other -1) swaps every 100 episodes (V3 Exp 19)",
        |_| Box::new(ChangingSeasons::default()),
    );
    r.register(
        "v3-bottleneck",
        "6x6 grid cut by a wall whose one gap is a door that opens after 4 pushes in a row; goal +10 beyond (V3 Exp 20)",
        |_| Box::new(Bottleneck::default()),
    );
    r.register(
        "v3-hazards-a",
        "8x8 grid to a goal (+10) past five red hazards (-10 a step on one), phase A layout, map shown at the start (V3 Exp 21)",
        |_| Box::new(HazardTransfer::phase_a()),
    );
    r.register(
        "v3-hazards-b",
        "the same grid with the red hazards moved: phase B, the transfer test (V3 Exp 21)",
        |_| Box::new(HazardTransfer::phase_b()),
    );
    r.register(
        "v3-predator-prey",
        "10x10 grid, 5 food pellets (+1), a predator that chases 80% of the time; caught -50 ends it (V3 Exp 22)",
        |rng| Box::new(PredatorPrey::new(rng)),
    );
    r.register(
        "v3-battery-run",
        "12x12 grid: 5 waypoints in order (+10, +5 at the end) on a 100-step battery with 4 chargers; empty -50; new layout every episode (V3 Exp 23)",
        |rng| Box::new(BatteryRun::new(rng)),
    );
    r.register(
        "slippery-cliff",
        "4x12 cliff walk, 20% slip, fall -100 ends the episode, goal +10 top right, one-hot states (Exp 18)",
        |rng| Box::new(SlipperyCliffEnv::new(rng)),
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

    #[test]
    fn dqn_grid_clamps_and_ends_on_threat_and_goal() {
        let mut g = TerminalThreatGrid::new();
        let (s0, _) = g.reset(None);
        assert_eq!(s0, 0);
        assert_eq!(g.features(s0), vec![0.0, 0.0, 0.4, 0.8]);
        let c0 = g.context();
        assert_eq!(
            (c0.threat_distance, c0.goal_distance),
            (Some(4.0), Some(8.0))
        );
        let bump = g.step(&2);
        assert!(bump.context.was_blocked && !bump.terminated);
        assert_eq!((bump.obs, bump.reward), (0, -0.01));
        // Down, down, right, right reaches the centre threat: terminal, -1, harmed.
        for a in [1, 1, 3] {
            let s = g.step(&a);
            assert!(!s.terminated);
        }
        let hit = g.step(&3);
        assert!(hit.terminated && hit.context.harmed);
        assert_eq!((hit.obs, hit.reward), (12, -1.0));
        assert_eq!(hit.context.threat_distance, Some(0.0));
        // The border route is 8 moves and never comes within 1 of the threat.
        g.reset(None);
        let mut total = 0.0;
        for a in [3, 3, 3, 3, 1, 1, 1, 1] {
            let s = g.step(&a);
            total += s.reward;
            assert!(s.context.threat_distance.unwrap_or(0.0) >= 2.0);
            if s.terminated {
                assert_eq!(s.reward, 1.0);
                assert!(!s.context.harmed);
            }
        }
        assert!((total - 0.93).abs() < 1e-12);
    }

    #[test]
    fn cliff_distances_match_the_spec() {
        use cliff::cliff_distance;
        assert_eq!(cliff_distance((3, 0)), 1.0);
        assert_eq!(cliff_distance((3, 11)), 1.0);
        assert_eq!(cliff_distance((2, 5)), 1.0);
        assert_eq!(cliff_distance((2, 0)), 2.0);
        assert_eq!(cliff_distance((1, 10)), 2.0);
        assert_eq!(cliff_distance((0, 4)), 3.0);
        assert_eq!(cliff_distance((0, 0)), 4.0);
        assert_eq!(cliff_distance((0, 11)), 4.0);
    }

    #[test]
    fn cliff_without_slip_falls_back_to_start_or_reaches_goal() {
        let rng = RngHandle::new(RngKind::Fast, 1);
        let mut env = SlipperyCliffEnv::with_params(rng, 0.0, -1.0);
        env.reset(None);
        assert_eq!(env.features(36).iter().filter(|&&x| x == 1.0).count(), 1);
        // Action 1 is "right" here: from the start it steps into the cliff.
        let fall = env.step(&1);
        assert!(fall.terminated && fall.context.harmed && fall.context.near_threat);
        assert_eq!((fall.obs, fall.reward), (36, -100.0));
        assert_eq!(fall.context.threat_distance, Some(1.0));
        // Up three rows, right eleven columns: the safe 14-step path.
        env.reset(None);
        let mut total = 0.0;
        let mut last = None;
        for a in std::iter::repeat_n(0, 3).chain(std::iter::repeat_n(1, 11)) {
            let s = env.step(&a);
            total += s.reward;
            last = Some(s);
        }
        let last = last.expect("steps taken");
        assert!(last.terminated && !last.context.harmed);
        assert_eq!(last.obs, 11);
        assert_eq!(total, 10.0 - 13.0);
    }

    #[test]
    fn cliff_slips_follow_the_shared_stream() {
        // With slip 1.0 every step draws u then a replacement action from the stream.
        let rng = RngHandle::new(RngKind::Fast, 5);
        let mut env = SlipperyCliffEnv::with_params(rng.clone(), 1.0, -1.0);
        env.reset(None);
        let mut reference = emorl_core::EmoRng::new(RngKind::Fast, 5);
        for _ in 0..20 {
            let s = env.step(&0);
            reference.random();
            let expected = reference.randint(4) as f64;
            assert_eq!(s.info.get("effective_action"), Some(&expected));
            if s.terminated {
                env.reset(None);
            }
        }
        // Slip frequency at the default 0.2 is about 1 in 5, same-action slips included.
        let mut env = SlipperyCliffEnv::new(RngHandle::new(RngKind::Fast, 9));
        let mut changed = 0usize;
        let n = 20_000;
        for _ in 0..n {
            env.reset(None);
            let s = env.step(&0);
            changed += usize::from(s.info.get("effective_action") != Some(&0.0));
        }
        let rate = changed as f64 / n as f64;
        assert!((rate - 0.15).abs() < 0.01, "rate {rate}");
    }
}
