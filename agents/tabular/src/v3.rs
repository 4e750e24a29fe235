//! The Emotional-ED V3 "fair test" protocols (docs/v3-protocol.md), one
//! function per experiment computing one seed of one arm. With
//! [`RngKind::Numpy`] they reproduce upstream's per-seed metrics bit for bit.
//!
//! Ported so far: Exp 17 (Pitch Black), Exp 19 (Changing Seasons), Exp 20
//! (Bottleneck), Exp 21 (Visual Hazard Transfer), Exp 22 (Predator–Prey),
//! Exp 23 (Battery Run): all six. The others follow the same
//! shape: an environment in `emorl-envs-gridworld`, the emotional agent as a
//! channel list on the one [`QLearner`], and a per-seed metric set named as
//! in upstream's results.

use crate::episode::run_episode;
use crate::learner::{QLearner, QLearnerConfig};
use emorl_core::numeric::{mean, pairwise_sum};
use emorl_core::{CoreError, DiscreteEnv, RngHandle, RngKind};
use emorl_envs_gridworld::battery::BatteryRun;
use emorl_envs_gridworld::bottleneck::Bottleneck;
use emorl_envs_gridworld::hazards::HazardTransfer;
use emorl_envs_gridworld::pitch_black::{PitchBlack, MAX_STEPS};
use emorl_envs_gridworld::predator::PredatorPrey;
use emorl_envs_gridworld::seasons::{ChangingSeasons, SEASON_LENGTH};

/// The two arms of an experiment: upstream's name and the agent.
pub type Arms = [(&'static str, QLearnerConfig); 2];

/// The control (plain Q-learning at `epsilon`) and the registered
/// emotional `agent`, under upstream's arm `names`.
fn arms(epsilon: f64, agent: &str, names: [&'static str; 2]) -> Result<Arms, CoreError> {
    let emotional = (crate::registry().get(agent)?.make)();
    // The control learns as the emotional arm does, without its channels.
    let control = QLearnerConfig {
        epsilon,
        gamma: emotional.gamma,
        ..Default::default()
    };
    Ok([(names[0], control), (names[1], emotional)])
}

/// One episode of `learner` in `env` as upstream's loops run them: the
/// emotional state reset, no step cap but the environment's own (terminal),
/// learning when `learn`. Returns the return (summed step by step, as
/// upstream does) and the steps taken; `on_step` sees every step.
fn episode(
    env: &mut dyn DiscreteEnv,
    learner: &mut QLearner,
    rng: &RngHandle,
    learn: bool,
    mut on_step: impl FnMut(&crate::EpisodeStep),
) -> (f64, usize) {
    learner.reset_episode();
    let mut total = 0.0;
    let summary = run_episode(env, learner, rng, usize::MAX, learn, |s, _| {
        total += s.step.reward;
        on_step(s);
    });
    (total, summary.steps)
}

/// The mean of the last 50 values (upstream's "final" metrics).
fn final_mean(v: &[f64]) -> f64 {
    mean(&v[v.len().saturating_sub(50)..])
}

/// A fresh learner for `env` with the arm's settings.
fn learner_for(env: &dyn DiscreteEnv, agent: &QLearnerConfig) -> Result<QLearner, CoreError> {
    QLearner::new(env.n_states(), env.n_actions(), agent.clone())
}

/// Per-seed metrics of one arm, in upstream's order and names.
pub type SeedMetrics = Vec<(&'static str, f64)>;

/// Exp 17's agents: the control (plain Q-learning at ε 0.3) and
/// `novelty-ed` (the same with the novelty channel).
pub fn pitch_black_arms() -> Result<Arms, CoreError> {
    arms(0.3, "novelty-ed", ["standard", "curiosity"])
}

/// Exp 17, one seed of one arm: `episodes` training episodes (upstream:
/// 200), the generator reseeded to `seed · 10000 + episode` before each (so
/// both arms see the same keys). Metrics: `success_rate` (episodes that
/// opened the door), `mean_steps` (mean length of the successful ones; 500
/// when none), `exploration` (mean over episodes of distinct cells / steps)
/// and `first_success` (first successful episode; `episodes` when none).
pub fn pitch_black_seed(
    seed: u64,
    agent: &QLearnerConfig,
    kind: RngKind,
    episodes: usize,
) -> Result<SeedMetrics, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut env = PitchBlack::new(rng.clone());
    let mut learner = learner_for(&env, agent)?;
    let mut successes = Vec::with_capacity(episodes);
    let mut solved_steps = Vec::new();
    let mut exploration = Vec::with_capacity(episodes);
    for ep in 0..episodes {
        rng.reseed(seed * 10_000 + ep as u64);
        let mut success = false;
        let (_, steps) = episode(&mut env, &mut learner, &rng, true, |s| {
            success |= s.step.reward > 0.0;
        });
        successes.push(if success { 1.0 } else { 0.0 });
        if success {
            solved_steps.push(steps as f64);
        }
        exploration.push(env.unique_visited() as f64 / steps.max(1) as f64);
    }
    let first = successes.iter().position(|&s| s > 0.0).unwrap_or(episodes);
    Ok(vec![
        ("success_rate", mean(&successes)),
        (
            "mean_steps",
            if solved_steps.is_empty() {
                MAX_STEPS as f64
            } else {
                mean(&solved_steps)
            },
        ),
        ("exploration", mean(&exploration)),
        ("first_success", first as f64),
    ])
}

/// Exp 20's agents: the control (plain Q-learning at ε 0.2) and
/// `persistent-anger`.
pub fn bottleneck_arms() -> Result<Arms, CoreError> {
    arms(0.2, "persistent-anger", ["standard", "anger"])
}

/// Exp 20, one seed of one arm: `episodes` training episodes (upstream:
/// 300) on one generator stream seeded once. Metrics: `success_rate`,
/// `door_open_rate`, `max_pushes` (mean of each episode's largest push
/// count), `first_success` (`episodes` when none) and `final_success` (the
/// success rate of the last 50 episodes).
pub fn bottleneck_seed(
    seed: u64,
    agent: &QLearnerConfig,
    kind: RngKind,
    episodes: usize,
) -> Result<SeedMetrics, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut env = Bottleneck::default();
    let mut learner = learner_for(&env, agent)?;
    let (mut successes, mut opened, mut max_pushes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..episodes {
        let (mut success, mut most) = (false, 0u32);
        episode(&mut env, &mut learner, &rng, true, |s| {
            success |= s.step.reward > 5.0;
            most = most.max(s.step.context.obstacle.map_or(0, |o| o.pushes));
        });
        successes.push(if success { 1.0 } else { 0.0 });
        opened.push(if env.door_open() { 1.0 } else { 0.0 });
        max_pushes.push(most as f64);
    }
    let first = successes.iter().position(|&s| s > 0.0).unwrap_or(episodes);
    Ok(vec![
        ("success_rate", mean(&successes)),
        ("door_open_rate", mean(&opened)),
        ("max_pushes", mean(&max_pushes)),
        ("first_success", first as f64),
        ("final_success", final_mean(&successes)),
    ])
}

/// Exp 19's agents: the control (plain Q-learning at ε 0.2) and
/// `surprise-ed`.
pub fn seasons_arms() -> Result<Arms, CoreError> {
    arms(0.2, "surprise-ed", ["standard", "surprise"])
}

/// Exp 19, one seed of one arm: `episodes` training episodes (upstream:
/// 600, six seasons) on one generator stream seeded once. Metrics:
/// `mean_reward` and `total_reward` over the episodes' returns, and
/// `recovery_time`: after each season change, the episodes until one
/// with a positive return (the change episode counts as 1), 50 when none
/// came within 51 — upstream's rule, which records 51 for a recovery at
/// the 51st; the mean over changes, 50 when there were none.
pub fn seasons_seed(
    seed: u64,
    agent: &QLearnerConfig,
    kind: RngKind,
    episodes: usize,
) -> Result<SeedMetrics, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut env = ChangingSeasons::default();
    let mut learner = learner_for(&env, agent)?;
    let mut returns = Vec::with_capacity(episodes);
    let give_up = SEASON_LENGTH / 2;
    let (mut recovered, mut counter, mut times) = (true, 0u32, Vec::new());
    for _ in 0..episodes {
        let (total, _) = episode(&mut env, &mut learner, &rng, true, |_| {});
        returns.push(total);
        if env.season_changed() {
            counter = 0;
            recovered = false;
        }
        if !recovered {
            counter += 1;
            if total > 0.0 {
                times.push(counter as f64);
                recovered = true;
            } else if counter > give_up {
                times.push(give_up as f64);
                recovered = true;
            }
        }
    }
    Ok(vec![
        ("mean_reward", mean(&returns)),
        ("total_reward", pairwise_sum(&returns)),
        (
            "recovery_time",
            if times.is_empty() {
                give_up as f64
            } else {
                mean(&times)
            },
        ),
    ])
}

/// Exp 22's agents: the control (plain Q-learning at ε 0.2) and
/// `anxious-ed`.
pub fn predator_arms() -> Result<Arms, CoreError> {
    arms(0.2, "anxious-ed", ["standard", "anxiety"])
}

/// Exp 22, one seed of one arm: `episodes` training episodes (upstream:
/// 300) on one generator stream seeded once. Metrics: `mean_reward`,
/// `mean_food`, `survival_rate` (never caught), `mean_survival_time`
/// (steps), and `final_survival_rate` / `final_food` over the last 50.
pub fn predator_seed(
    seed: u64,
    agent: &QLearnerConfig,
    kind: RngKind,
    episodes: usize,
) -> Result<SeedMetrics, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut env = PredatorPrey::new(rng.clone());
    let mut learner = learner_for(&env, agent)?;
    let (mut returns, mut food, mut survived, mut steps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..episodes {
        let (total, taken) = episode(&mut env, &mut learner, &rng, true, |_| {});
        returns.push(total);
        food.push(env.eaten() as f64);
        survived.push(if env.caught() { 0.0 } else { 1.0 });
        steps.push(taken as f64);
    }
    Ok(vec![
        ("mean_reward", mean(&returns)),
        ("mean_food", mean(&food)),
        ("survival_rate", mean(&survived)),
        ("mean_survival_time", mean(&steps)),
        ("final_survival_rate", final_mean(&survived)),
        ("final_food", final_mean(&food)),
    ])
}

/// Exp 21's agents: the control (plain Q-learning at ε 0.2, arm `tabular`)
/// and `hazard-fear` (arm `feature`).
pub fn transfer_arms() -> Result<Arms, CoreError> {
    arms(0.2, "hazard-fear", ["tabular", "feature"])
}

/// Exp 21, one seed of every arm in `arms` (upstream: the control, then
/// the emotional arm), which share one generator stream in upstream's
/// order: each arm's 100 phase-A training episodes (reseeded to
/// `seed` first); each arm's 5 zero-shot phase-B episodes without learning
/// (reseeded to `seed · 1000 + k`); then each arm's 50 phase-B training
/// episodes, continuing the stream (so the control's phase B depends on
/// the other arm's draws, as upstream's does). Agents keep everything
/// between phases. Metrics per arm: `phase_a_final_reward` / `_hits`
/// (phase-A episodes 80–99), `zeroshot_hits` / `_reward`,
/// `phase_b_early_hits` (phase-B episodes 0–9), `phase_b_final_hits` /
/// `_reward` (40–49).
pub fn transfer_seed(
    seed: u64,
    arms: &[QLearnerConfig],
    kind: RngKind,
) -> Result<Vec<SeedMetrics>, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut learners = Vec::with_capacity(arms.len());
    for cfg in arms {
        learners.push(QLearner::new(64, 4, cfg.clone())?);
    }
    // Returns and hits of `n` episodes of `env` for one learner.
    let play = |learner: &mut QLearner, mut env: HazardTransfer, n: usize, learn: bool| {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (total, _) = episode(&mut env, learner, &rng, learn, |_| {});
            out.push((total, env.hits() as f64));
        }
        out
    };
    let mut phase_a = Vec::new();
    for learner in learners.iter_mut() {
        rng.reseed(seed);
        phase_a.push(play(learner, HazardTransfer::phase_a(), 100, true));
    }
    let mut zero_shot = Vec::new();
    for learner in learners.iter_mut() {
        let mut episodes = Vec::new();
        for k in 0..5 {
            rng.reseed(seed * 1000 + k);
            episodes.extend(play(learner, HazardTransfer::phase_b(), 1, false));
        }
        zero_shot.push(episodes);
    }
    let mut phase_b = Vec::new();
    for learner in learners.iter_mut() {
        phase_b.push(play(learner, HazardTransfer::phase_b(), 50, true));
    }
    let returns = |e: &[(f64, f64)]| mean(&e.iter().map(|x| x.0).collect::<Vec<_>>());
    let hits = |e: &[(f64, f64)]| mean(&e.iter().map(|x| x.1).collect::<Vec<_>>());
    let metrics = |i: usize| -> SeedMetrics {
        let (a, z, b) = (&phase_a[i], &zero_shot[i], &phase_b[i]);
        vec![
            ("phase_a_final_reward", returns(&a[80..])),
            ("phase_a_final_hits", hits(&a[80..])),
            ("zeroshot_hits", hits(z)),
            ("zeroshot_reward", returns(z)),
            ("phase_b_early_hits", hits(&b[..10])),
            ("phase_b_final_hits", hits(&b[40..])),
            ("phase_b_final_reward", returns(&b[40..])),
        ]
    };
    Ok((0..arms.len()).map(metrics).collect())
}

/// Exp 23's agents: the control (plain Q-learning at γ 0.95, ε 0.2, arm
/// `impulsive`) and `patient-ed` (arm `patience`).
pub fn battery_arms() -> Result<Arms, CoreError> {
    arms(0.2, "patient-ed", ["impulsive", "patience"])
}

/// Exp 23, one seed of one arm: `episodes` training episodes (upstream:
/// 400) on one generator stream seeded once, each on a new layout.
/// Metrics: `mean_reward`, `mean_waypoints`, `crash_rate` (battery ran
/// out), `completion_rate` (all five waypoints), `mean_charges` (steps
/// after which the battery is higher than before), and `final_completion`
/// / `final_crash` over the last 50 episodes.
pub fn battery_seed(
    seed: u64,
    agent: &QLearnerConfig,
    kind: RngKind,
    episodes: usize,
) -> Result<SeedMetrics, CoreError> {
    let rng = RngHandle::new(kind, seed);
    let mut env = BatteryRun::new(rng.clone());
    let mut learner = learner_for(&env, agent)?;
    let (mut returns, mut reached, mut crashed, mut completed, mut charges) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..episodes {
        let (mut crash, mut charged, mut level) = (false, 0u32, 1.0);
        let (total, _) = episode(&mut env, &mut learner, &rng, true, |s| {
            crash |= s.step.reward < -10.0;
            if let Some(r) = &s.step.context.reserve {
                if r.level > level {
                    charged += 1;
                }
                level = r.level;
            }
        });
        returns.push(total);
        reached.push(env.reached() as f64);
        crashed.push(if crash { 1.0 } else { 0.0 });
        completed.push(if env.reached() == 5 { 1.0 } else { 0.0 });
        charges.push(charged as f64);
    }
    Ok(vec![
        ("mean_reward", mean(&returns)),
        ("mean_waypoints", mean(&reached)),
        ("crash_rate", mean(&crashed)),
        ("completion_rate", mean(&completed)),
        ("mean_charges", mean(&charges)),
        ("final_completion", final_mean(&completed)),
        ("final_crash", final_mean(&crashed)),
    ])
}

/// How a table reports one per-seed metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricSpec {
    /// The per-seed key (upstream's JSON name).
    pub name: &'static str,
    /// In words, for tables and axes.
    pub label: &'static str,
    /// Whether larger values are better for the agent.
    pub higher_is_better: bool,
    /// Upstream's published control mean, emotional mean and Cohen's d
    /// (EXTENDED_EXPERIMENTS_RESULTS.md, seeds 0–49), where it printed them.
    pub published: Option<Published>,
}

/// Numbers upstream printed for one metric (seeds 0–49); `None` where the
/// results page leaves a cell out.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub control: Option<f64>,
    pub emotional: Option<f64>,
    pub d: Option<f64>,
}

const fn metric(
    name: &'static str,
    label: &'static str,
    higher_is_better: bool,
    published: Option<Published>,
) -> MetricSpec {
    MetricSpec {
        name,
        label,
        higher_is_better,
        published,
    }
}

const fn printed(control: f64, emotional: f64, d: f64) -> Option<Published> {
    Some(Published {
        control: Some(control),
        emotional: Some(emotional),
        d: Some(d),
    })
}

/// Computes one seed of every arm (in order) for `episodes` training
/// episodes; each arm's metrics in [`V3Experiment::metrics`]' order.
type RunSeed = fn(u64, &[QLearnerConfig], RngKind, usize) -> Result<Vec<SeedMetrics>, CoreError>;

/// One V3 experiment as the tables run it: its arms, protocol and metrics.
/// The registry is [`V3_EXPERIMENTS`].
pub struct V3Experiment {
    /// Short ID (`pitch-black`, …).
    pub id: &'static str,
    /// Upstream's experiment number.
    pub number: u32,
    pub title: &'static str,
    /// The emotion the experiment tests.
    pub emotion: &'static str,
    /// Upstream's control and emotional arms.
    pub arms: fn() -> Result<Arms, CoreError>,
    /// Training episodes of upstream's protocol (fixed for Exp 21).
    pub episodes: usize,
    /// Every per-seed metric; the first is upstream's headline metric.
    pub metrics: &'static [MetricSpec],
    run: RunSeed,
}

impl V3Experiment {
    /// The headline metric (upstream's summary table).
    pub fn primary(&self) -> &MetricSpec {
        &self.metrics[0]
    }

    /// One seed of every arm in `arms`: per arm, the values of
    /// [`V3Experiment::metrics`] in that order. Arms run one after the
    /// other on their own generator (reseeded as upstream's scripts do),
    /// except Exp 21's, which share one stream in upstream's order.
    pub fn run_seed(
        &self,
        seed: u64,
        arms: &[QLearnerConfig],
        kind: RngKind,
    ) -> Result<Vec<Vec<f64>>, CoreError> {
        let per_arm = (self.run)(seed, arms, kind, self.episodes)?;
        per_arm
            .iter()
            .map(|values| {
                self.metrics
                    .iter()
                    .map(|m| {
                        values
                            .iter()
                            .find(|(name, _)| *name == m.name)
                            .map(|&(_, v)| v)
                            .ok_or_else(|| {
                                CoreError::InvalidConfig(format!(
                                    "{}: no metric '{}'",
                                    self.id, m.name
                                ))
                            })
                    })
                    .collect()
            })
            .collect()
    }

    /// Every metric upstream's protocol computes, under its own names, for
    /// each arm (the bit-exact check compares them all).
    pub fn run_seed_raw(
        &self,
        seed: u64,
        arms: &[QLearnerConfig],
        kind: RngKind,
    ) -> Result<Vec<SeedMetrics>, CoreError> {
        (self.run)(seed, arms, kind, self.episodes)
    }
}

/// Runs a one-arm protocol for each arm in turn.
fn each_arm(
    run: fn(u64, &QLearnerConfig, RngKind, usize) -> Result<SeedMetrics, CoreError>,
    seed: u64,
    arms: &[QLearnerConfig],
    kind: RngKind,
    episodes: usize,
) -> Result<Vec<SeedMetrics>, CoreError> {
    arms.iter()
        .map(|agent| run(seed, agent, kind, episodes))
        .collect()
}

/// The six V3 experiments, in upstream's order. Published numbers are
/// those of upstream's results page (EXTENDED_EXPERIMENTS_RESULTS.md).
pub const V3_EXPERIMENTS: [V3Experiment; 6] = [
    V3Experiment {
        id: "pitch-black",
        number: 17,
        title: "Pitch Black",
        emotion: "curiosity",
        arms: pitch_black_arms,
        episodes: 200,
        metrics: &[
            metric(
                "success_rate",
                "success rate",
                true,
                printed(0.000, 0.613, 28.858),
            ),
            metric(
                "mean_steps",
                "steps to solve",
                false,
                printed(500.0, 144.7, -37.313),
            ),
            metric(
                "exploration",
                "exploration efficiency",
                true,
                printed(0.039, 0.357, 18.527),
            ),
            metric(
                "first_success",
                "first success episode",
                false,
                printed(200.0, 0.5, -436.450),
            ),
        ],
        run: |s, a, k, e| each_arm(pitch_black_seed, s, a, k, e),
    },
    V3Experiment {
        id: "changing-seasons",
        number: 19,
        title: "Changing Seasons",
        emotion: "surprise",
        arms: seasons_arms,
        episodes: 600,
        metrics: &[
            metric(
                "recovery_time",
                "recovery time (episodes)",
                false,
                printed(27.0, 12.4, -2.828),
            ),
            metric(
                "mean_reward",
                "mean reward per episode",
                true,
                printed(-0.153, 0.095, 2.861),
            ),
            metric(
                "total_reward",
                "total reward",
                true,
                printed(-92.0, 57.2, 2.861),
            ),
        ],
        run: |s, a, k, e| each_arm(seasons_seed, s, a, k, e),
    },
    V3Experiment {
        id: "bottleneck",
        number: 20,
        title: "Bottleneck",
        emotion: "anger",
        arms: bottleneck_arms,
        episodes: 300,
        metrics: &[
            metric(
                "door_open_rate",
                "door open rate",
                true,
                printed(0.651, 0.988, 2.277),
            ),
            metric(
                "success_rate",
                "success rate",
                true,
                printed(0.651, 0.977, 2.198),
            ),
            metric(
                "max_pushes",
                "most consecutive pushes",
                true,
                printed(2.99, 3.97, 2.247),
            ),
            metric(
                "first_success",
                "first success episode",
                false,
                printed(88.6, 2.6, -2.142),
            ),
            metric(
                "final_success",
                "success rate, last 50 episodes",
                true,
                None,
            ),
        ],
        run: |s, a, k, e| each_arm(bottleneck_seed, s, a, k, e),
    },
    V3Experiment {
        id: "hazard-transfer",
        number: 21,
        title: "Visual Hazard Transfer",
        emotion: "fear",
        arms: transfer_arms,
        episodes: 150,
        metrics: &[
            metric(
                "zeroshot_hits",
                "zero-shot hazard hits",
                false,
                printed(1.78, 0.69, -1.681),
            ),
            metric(
                "zeroshot_reward",
                "zero-shot reward",
                true,
                printed(-8.36, -0.51, 1.161),
            ),
            metric(
                "phase_b_early_hits",
                "hits, first 10 phase-B episodes",
                false,
                printed(1.35, 0.79, -1.216),
            ),
            metric(
                "phase_a_final_hits",
                "hits, end of phase A",
                false,
                Some(Published {
                    control: Some(0.23),
                    emotional: Some(0.13),
                    d: None,
                }),
            ),
            metric("phase_a_final_reward", "reward, end of phase A", true, None),
            metric("phase_b_final_hits", "hits, end of phase B", false, None),
            metric("phase_b_final_reward", "reward, end of phase B", true, None),
        ],
        run: |s, a, k, _| transfer_seed(s, a, k),
    },
    V3Experiment {
        id: "predator-prey",
        number: 22,
        title: "Predator–Prey",
        emotion: "anxiety",
        arms: predator_arms,
        episodes: 300,
        metrics: &[
            metric(
                "mean_survival_time",
                "survival time (steps)",
                true,
                printed(20.3, 45.5, 10.972),
            ),
            metric(
                "survival_rate",
                "survival rate",
                true,
                printed(0.000, 0.008, 2.177),
            ),
            metric(
                "mean_reward",
                "mean reward",
                true,
                printed(-49.9, -49.2, 3.884),
            ),
            metric(
                "mean_food",
                "food collected",
                true,
                printed(0.30, 0.89, 9.241),
            ),
            metric(
                "final_survival_rate",
                "survival rate, last 50 episodes",
                true,
                None,
            ),
            metric("final_food", "food, last 50 episodes", true, None),
        ],
        run: |s, a, k, e| each_arm(predator_seed, s, a, k, e),
    },
    V3Experiment {
        id: "battery-run",
        number: 23,
        title: "Battery Run",
        emotion: "patience",
        arms: battery_arms,
        episodes: 400,
        metrics: &[
            metric(
                "crash_rate",
                "crash rate",
                false,
                printed(0.907, 0.000, -73.691),
            ),
            metric(
                "mean_reward",
                "mean reward",
                true,
                printed(-44.3, 1.4, 51.760),
            ),
            metric(
                "mean_waypoints",
                "waypoints reached",
                true,
                printed(0.30, 0.64, 6.025),
            ),
            metric(
                "completion_rate",
                "completion rate",
                true,
                printed(0.001, 0.002, 0.872),
            ),
            metric(
                "mean_charges",
                "charges per episode",
                true,
                printed(7.90, 19.81, 12.999),
            ),
            metric(
                "final_completion",
                "completion rate, last 50 episodes",
                true,
                None,
            ),
            metric("final_crash", "crash rate, last 50 episodes", false, None),
        ],
        run: |s, a, k, e| each_arm(battery_seed, s, a, k, e),
    },
];

/// The experiment `id`, or an error listing the known ones.
pub fn experiment(id: &str) -> Result<&'static V3Experiment, CoreError> {
    V3_EXPERIMENTS.iter().find(|e| e.id == id).ok_or_else(|| {
        let known: Vec<&str> = V3_EXPERIMENTS.iter().map(|e| e.id).collect();
        CoreError::InvalidConfig(format!(
            "unknown V3 experiment '{id}' (known: {})",
            known.join(", ")
        ))
    })
}
