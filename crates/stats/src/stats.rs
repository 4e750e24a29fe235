//! Two-sample comparisons, exactly as upstream computes them (docs/protocols/v2.md §3).
//!
//! [`compare`] reproduces upstream `compute_statistics(control, treatment)`
//! of `test_statistical.py` and adds the exact Welch p, Student's t test and
//! Mann–Whitney U. The primitives are public on their own because other
//! upstream scripts combine them differently (Exp 16b puts the treatment
//! first in its permutation test and uses population SDs in Cohen's d; Exp 18
//! uses Student's t).
//!
//! Means and SDs go through numpy's pairwise summation
//! ([`emorl_core::numeric`]): the permutation test compares means with `>=`,
//! and on coarse grids the summation order decides the ties.
//!
//! Length: about 400 lines of code; the rest are the unit tests against
//! scipy's values.

use emorl_core::numeric::{mean, std_dev, variance};
use emorl_core::EmoRng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use thiserror::Error;

/// Inputs [`compare`] and [`crate::paired_compare`] reject.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    #[error("the {arm} arm has {n} values; a comparison needs at least 2 per arm")]
    TooFewValues { arm: &'static str, n: usize },
    #[error("value {index} of the {arm} arm is not finite ({value})")]
    NonFinite {
        arm: &'static str,
        index: usize,
        value: f64,
    },
    /// Paired arms must have one value per pair.
    #[error("paired arms differ in length: control has {control}, treatment has {treatment}")]
    LengthMismatch {
        /// Values in the control arm.
        control: usize,
        /// Values in the treatment arm.
        treatment: usize,
    },
    /// A paired comparison needs a spread of differences.
    #[error("{n} pairs; a paired comparison needs at least 2")]
    TooFewPairs {
        /// Pairs given.
        n: usize,
    },
}

/// Size class of |Cohen's d| (upstream thresholds 0.2 / 0.5 / 0.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectSize {
    Negligible,
    Small,
    Medium,
    Large,
}

impl EffectSize {
    /// Classifies `|d|`; NaN counts as negligible.
    pub fn from_d(d: f64) -> Self {
        let a = d.abs();
        if a.is_nan() || a < 0.2 {
            EffectSize::Negligible
        } else if a < 0.5 {
            EffectSize::Small
        } else if a < 0.8 {
            EffectSize::Medium
        } else {
            EffectSize::Large
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            EffectSize::Negligible => "negligible",
            EffectSize::Small => "small",
            EffectSize::Medium => "medium",
            EffectSize::Large => "large",
        }
    }
}

impl std::fmt::Display for EffectSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Mean, sample SD and normal-approximation 95% CI of one arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    pub n: usize,
    #[serde(with = "crate::float_serde")]
    pub mean: f64,
    /// Sample SD (ddof 1).
    #[serde(with = "crate::float_serde")]
    pub sd: f64,
    #[serde(with = "crate::float_serde")]
    pub ci_low: f64,
    #[serde(with = "crate::float_serde")]
    pub ci_high: f64,
}

impl ArmSummary {
    /// `mean ± t·sd/sqrt(n)` with [`ci_multiplier`]`(n)`; NaN SD and CI for n < 2.
    pub fn of(x: &[f64]) -> Self {
        let n = x.len();
        let m = mean(x);
        let sd = std_dev(x, 1);
        let half = ci_multiplier(n) * sd / (n as f64).sqrt();
        ArmSummary {
            n,
            mean: m,
            sd,
            ci_low: m - half,
            ci_high: m + half,
        }
    }
}

/// Upstream's CI multiplier: 1.96 if `n > 30`, else 2.0.
pub fn ci_multiplier(n: usize) -> f64 {
    if n > 30 {
        1.96
    } else {
        2.0
    }
}

/// A t statistic with its degrees of freedom and two-sided p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TTest {
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// Two-sided p of a t statistic under Student's t with `df` degrees of
/// freedom; NaN where either is undefined.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df) {
        // cdf(-|t|) keeps full relative precision for small p.
        Ok(dist) => (2.0 * dist.cdf(-t.abs())).min(1.0),
        Err(_) => f64::NAN,
    }
}

/// Welch's unequal-variance t test of `mean(a) − mean(b)` (scipy
/// `ttest_ind(a, b, equal_var=False)`): Welch–Satterthwaite df (1 when both
/// variances are zero, as scipy) and the exact two-sided p.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> TTest {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let vna = variance(a, 1) / na;
    let vnb = variance(b, 1) / nb;
    let mut df = (vna + vnb).powi(2) / (vna.powi(2) / (na - 1.0) + vnb.powi(2) / (nb - 1.0));
    if df.is_nan() && vna == 0.0 && vnb == 0.0 {
        df = 1.0;
    }
    let t = (mean(a) - mean(b)) / (vna + vnb).sqrt();
    TTest {
        t,
        df,
        p: t_two_sided_p(t, df),
    }
}

/// Student's pooled-variance t test of `mean(a) − mean(b)` (scipy
/// `ttest_ind(a, b)`, used by upstream Exp 18); df = `n_a + n_b − 2`.
pub fn student_t_test(a: &[f64], b: &[f64]) -> TTest {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let df = na + nb - 2.0;
    let pooled_var = ((na - 1.0) * variance(a, 1) + (nb - 1.0) * variance(b, 1)) / df;
    let t = (mean(a) - mean(b)) / (pooled_var * (1.0 / na + 1.0 / nb)).sqrt();
    TTest {
        t,
        df,
        p: t_two_sided_p(t, df),
    }
}

/// Upstream's permutation test: `combined = first ++ second`, shuffled in
/// place `permutations` times with `rng` (each shuffle continues from the
/// previous permutation); counts `|mean(head) − mean(tail)| >= observed` and
/// returns `count / permutations`, floored at `1 / permutations`.
///
/// `rng` is the experiment's own stream, continued, not reseeded. NaN (and no
/// draws) when `permutations == 0`.
pub fn permutation_test(
    first: &[f64],
    second: &[f64],
    rng: &mut EmoRng,
    permutations: usize,
) -> f64 {
    if permutations == 0 {
        return f64::NAN;
    }
    let observed = (mean(first) - mean(second)).abs();
    let mut combined = [first, second].concat();
    let split = first.len();
    let mut count = 0usize;
    for _ in 0..permutations {
        rng.shuffle(&mut combined);
        let diff = (mean(&combined[..split]) - mean(&combined[split..])).abs();
        if diff >= observed {
            count += 1;
        }
    }
    let n = permutations as f64;
    (count as f64 / n).max(1.0 / n)
}

fn pooled_sd(control: &[f64], treatment: &[f64], ddof: usize) -> f64 {
    let (nc, nt) = (control.len() as f64, treatment.len() as f64);
    let (sc, st) = (std_dev(control, ddof), std_dev(treatment, ddof));
    (((nc - 1.0) * sc.powi(2) + (nt - 1.0) * st.powi(2)) / (nc + nt - 2.0)).sqrt()
}

fn standardised(control: &[f64], treatment: &[f64], sp: f64) -> f64 {
    if sp == 0.0 {
        0.0
    } else {
        (mean(treatment) - mean(control)) / sp
    }
}

/// Cohen's d `(mean_t − mean_c) / s_p`, pooled from sample SDs (ddof 1);
/// 0 when `s_p == 0`.
pub fn cohens_d(control: &[f64], treatment: &[f64]) -> f64 {
    standardised(control, treatment, pooled_sd(control, treatment, 1))
}

/// Cohen's d pooled from population SDs (ddof 0) still weighted by `n − 1`
/// (upstream Exp 16b, quirk Q-16b-DDOF); 0 when `s_p == 0`.
pub fn cohens_d_population(control: &[f64], treatment: &[f64]) -> f64 {
    standardised(control, treatment, pooled_sd(control, treatment, 0))
}

/// A Mann–Whitney U statistic and its two-sided p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample (scipy's `statistic`).
    pub u: f64,
    pub p: f64,
}

/// Two-sided Mann–Whitney U test, normal approximation with tie and
/// continuity corrections (scipy `mannwhitneyu(x, y, method="asymptotic")`).
/// NaN for an empty sample; p = 1 when every value is tied.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> MannWhitney {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return MannWhitney {
            u: f64::NAN,
            p: f64::NAN,
        };
    }
    let n = n1 + n2;
    let mut order: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over runs of equal values; sum(t³ − t) over the runs.
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && order[j].0 == order[i].0 {
            j += 1;
        }
        let rank = (i + 1 + j) as f64 / 2.0;
        let in_x = order[i..j].iter().filter(|e| e.1).count();
        rank_sum_x += rank * in_x as f64;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u = u1.max(f1 * f2 - u1);
    let s = (f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    let p = if s > 0.0 {
        let z = (u - f1 * f2 / 2.0 - 0.5) / s;
        (2.0 * Normal::standard().sf(z)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    MannWhitney { u: u1, p }
}

/// Everything upstream reports for one control-vs-treatment comparison, plus
/// the exact Welch p, Student's t and Mann–Whitney U.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub control: ArmSummary,
    pub treatment: ArmSummary,
    /// Welch t of **control − treatment** (upstream's sign); 0 when se == 0.
    #[serde(with = "crate::float_serde")]
    pub welch_t: f64,
    /// Welch–Satterthwaite df (upstream computes and discards it).
    #[serde(with = "crate::float_serde")]
    pub welch_df: f64,
    /// Exact two-sided Welch p from Student's t; 1 when se == 0.
    #[serde(with = "crate::float_serde")]
    pub welch_p: f64,
    /// Number of permutations asked for.
    pub permutations: usize,
    /// Upstream's p; `None` when no permutations were asked for, 1 without
    /// shuffling when se == 0 (as upstream).
    pub permutation_p: Option<f64>,
    /// `(mean_t − mean_c) / s_p` with sample SDs (upstream's sign).
    #[serde(with = "crate::float_serde")]
    pub cohens_d: f64,
    /// Same with population SDs weighted by n − 1 (Exp 16b quirk).
    #[serde(with = "crate::float_serde")]
    pub cohens_d_population: f64,
    /// Class of [`Comparison::cohens_d`].
    pub effect: EffectSize,
    /// [`Comparison::p_value`] `< 0.05`.
    pub significant: bool,
    /// Student's pooled-variance t of control − treatment.
    #[serde(with = "crate::float_serde")]
    pub student_t: f64,
    #[serde(with = "crate::float_serde")]
    pub student_df: f64,
    #[serde(with = "crate::float_serde")]
    pub student_p: f64,
    /// U of the control arm (scipy `mannwhitneyu(control, treatment)`).
    #[serde(with = "crate::float_serde")]
    pub mann_whitney_u: f64,
    #[serde(with = "crate::float_serde")]
    pub mann_whitney_p: f64,
}

impl Comparison {
    /// The p upstream decides significance with: the permutation p, or the
    /// exact Welch p when no permutation test was run.
    pub fn p_value(&self) -> f64 {
        self.permutation_p.unwrap_or(self.welch_p)
    }
}

fn check_arm(arm: &'static str, x: &[f64]) -> Result<(), StatsError> {
    if x.len() < 2 {
        return Err(StatsError::TooFewValues { arm, n: x.len() });
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite {
            arm,
            index,
            value: x[index],
        }),
        None => Ok(()),
    }
}

/// Upstream `compute_statistics(control, treatment)` plus the extra tests.
///
/// The permutation test runs `permutations` in-place shuffles of
/// `control ++ treatment` drawn from `rng`, which continues the experiment's
/// stream; none are drawn when `permutations == 0` or when the Welch standard
/// error is zero (upstream then reports t = 0, p = 1).
pub fn compare(
    control: &[f64],
    treatment: &[f64],
    rng: &mut EmoRng,
    permutations: usize,
) -> Result<Comparison, StatsError> {
    check_arm("control", control)?;
    check_arm("treatment", treatment)?;
    let welch = welch_t_test(control, treatment);
    let se_is_zero = variance(control, 1) / control.len() as f64
        + variance(treatment, 1) / treatment.len() as f64
        == 0.0;
    let (welch_t, welch_p, permutation_p) = if se_is_zero {
        (0.0, 1.0, (permutations > 0).then_some(1.0))
    } else {
        let p = (permutations > 0).then(|| permutation_test(control, treatment, rng, permutations));
        (welch.t, welch.p, p)
    };
    let student = student_t_test(control, treatment);
    let mw = mann_whitney_u(control, treatment);
    let d = cohens_d(control, treatment);
    let mut out = Comparison {
        control: ArmSummary::of(control),
        treatment: ArmSummary::of(treatment),
        welch_t,
        welch_df: welch.df,
        welch_p,
        permutations,
        permutation_p,
        cohens_d: d,
        cohens_d_population: cohens_d_population(control, treatment),
        effect: EffectSize::from_d(d),
        significant: false,
        student_t: student.t,
        student_df: student.df,
        student_p: student.p,
        mann_whitney_u: mw.u,
        mann_whitney_p: mw.p,
    };
    out.significant = out.p_value() < 0.05;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got:e}, want {want:e} (rel {rel:e})"
        );
    }

    /// Upstream Exp 12 Regret per-seed metrics (`v2-protocol-data/upstream_v2_per_seed.json`),
    /// a 0.01 grid with many exact ties.
    const REGRET_CONTROL: [f64; 50] = [
        0.64, 0.03, 0.71, 0.12, 0.04, 0.08, 0.92, 0.01, 0.02, 0.94, 0.07, 0.07, 0.76, 0.14, 0.81,
        0.92, 0.91, 0.02, 0.01, 0.06, 0.29, 0.37, 0.67, 0.84, 0.25, 0.19, 0.07, 0.23, 0.08, 0.2,
        0.41, 0.21, 0.02, 0.55, 0.09, 0.96, 0.91, 0.67, 0.04, 0.91, 0.58, 0.28, 0.28, 0.61, 0.94,
        0.86, 0.06, 0.28, 0.67, 0.83,
    ];
    const REGRET_TREATMENT: [f64; 50] = [
        0.64, 0.25, 0.53, 0.59, 0.36, 0.74, 0.66, 0.38, 0.46, 0.69, 0.34, 0.48, 0.61, 0.33, 0.54,
        0.5, 0.57, 0.27, 0.43, 0.31, 0.11, 0.7, 0.42, 0.59, 0.77, 0.26, 0.52, 0.44, 0.54, 0.44,
        0.38, 0.62, 0.4, 0.59, 0.69, 0.46, 0.68, 0.41, 0.25, 0.6, 0.78, 0.32, 0.64, 0.49, 0.44,
        0.45, 0.33, 0.47, 0.38, 0.55,
    ];

    /// Integer samples found by search so that scipy 1.17.1
    /// `ttest_ind(A, B, equal_var=False)` prints t = 3.556259, df = 12.9429,
    /// p = 3.53648e-3.
    const A: [f64; 7] = [13.0, 39.0, 39.0, 40.0, 40.0, 40.0, 41.0];
    const B: [f64; 8] = [0.0, 0.0, 0.0, 23.0, 23.0, 25.0, 25.0, 25.0];

    #[test]
    fn welch_matches_scipy() {
        // scipy 1.17.1: ttest_ind(A, B, equal_var=False) ->
        // statistic 3.5562592802928696, df 12.94289943724296, pvalue 0.003536480016051802
        let w = welch_t_test(&A, &B);
        close(w.t, 3.556_259_280_292_869_6, 1e-12);
        close(w.df, 12.942_899_437_242_96, 1e-12);
        close(w.p, 0.003_536_480_016_051_802, 1e-6);
        assert_eq!(
            format!("{:.6} {:.4} {:.5e}", w.t, w.df, w.p),
            "3.556259 12.9429 3.53648e-3"
        );
        // scipy: ttest_ind(REGRET_CONTROL, REGRET_TREATMENT, equal_var=False) ->
        // statistic -1.4037271772934892, df 67.05541934709753, pvalue 0.16501445172593537
        let w = welch_t_test(&REGRET_CONTROL, &REGRET_TREATMENT);
        close(w.t, -1.403_727_177_293_489_2, 1e-12);
        close(w.df, 67.055_419_347_097_53, 1e-12);
        close(w.p, 0.165_014_451_725_935_37, 1e-6);
    }

    #[test]
    fn student_matches_scipy() {
        // scipy 1.17.1: ttest_ind(A, B) -> 3.503641482764675, df 13.0, p 0.003886811856274265
        let s = student_t_test(&A, &B);
        close(s.t, 3.503_641_482_764_675, 1e-12);
        assert_eq!(s.df, 13.0);
        close(s.p, 0.003_886_811_856_274_265, 1e-6);
        // scipy: ttest_ind(REGRET_CONTROL, REGRET_TREATMENT) -> -1.4037271772934892, df 98.0,
        // p 0.16356103010881476
        let s = student_t_test(&REGRET_CONTROL, &REGRET_TREATMENT);
        close(s.t, -1.403_727_177_293_489_2, 1e-12);
        assert_eq!(s.df, 98.0);
        close(s.p, 0.163_561_030_108_814_76, 1e-6);
        // scipy: constant samples with different means -> t = -inf, p = 0.0
        let s = student_t_test(&[1.0, 1.0, 1.0], &[2.0, 2.0]);
        assert_eq!((s.t, s.p), (f64::NEG_INFINITY, 0.0));
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy 1.17.1: mannwhitneyu(x, y, method="asymptotic") (use_continuity=True)
        let m = mann_whitney_u(&A, &B); // statistic 51.0, pvalue 0.00836328029487248
        assert_eq!(m.u, 51.0);
        close(m.p, 0.008_363_280_294_872_48, 1e-6);
        // ties across the 0.01 grid: statistic 1024.5, pvalue 0.12081634991807269
        let m = mann_whitney_u(&REGRET_CONTROL, &REGRET_TREATMENT);
        assert_eq!(m.u, 1024.5);
        close(m.p, 0.120_816_349_918_072_69, 1e-6);
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let y = [5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0, 3.0, 2.0, 3.0, 8.0];
        // (x, y): statistic 28.0, (y, x): 60.0; pvalue 0.1964180803799429 both ways
        let (m, r) = (mann_whitney_u(&x, &y), mann_whitney_u(&y, &x));
        assert_eq!((m.u, r.u), (28.0, 60.0));
        close(m.p, 0.196_418_080_379_942_9, 1e-6);
        close(r.p, 0.196_418_080_379_942_9, 1e-6);
        // every value tied: scipy gives statistic 3.0, pvalue 1.0
        let m = mann_whitney_u(&[1.0, 1.0, 1.0], &[1.0, 1.0]);
        assert_eq!((m.u, m.p), (3.0, 1.0));
    }

    #[test]
    fn upstream_t_and_d_are_bit_exact() {
        // t_statistic and cohens_d captured from the upstream Exp 12 run (same JSON).
        let c = compare(
            &REGRET_CONTROL,
            &REGRET_TREATMENT,
            &mut EmoRng::new(RngKind::Numpy, 0),
            0,
        )
        .unwrap();
        assert_eq!(c.welch_t, -1.403_727_177_293_489_2);
        assert_eq!(c.cohens_d, 0.280_745_435_458_697_8);
        // numpy: np.mean / np.std(ddof=1) of each arm
        assert_eq!(c.control.mean, 0.412_599_999_999_999_97);
        assert_eq!(c.control.sd, 0.348_037_119_765_541_5);
        assert_eq!(c.treatment.mean, 0.488);
        assert_eq!(c.treatment.sd, 0.152_087_515_085_551_82);
        assert_eq!(c.effect, EffectSize::Small);
        // Exp 16b formula with x = treatment, y = control and np.std (ddof 0):
        // numpy gives 0.28359571600002204
        assert_eq!(c.cohens_d_population, 0.283_595_716_000_022_04);
        assert_eq!(c.permutation_p, None);
        assert!(!c.significant); // falls back to the Welch p (0.165)
    }

    /// The permutation procedure with naive left-to-right means.
    fn naive_permutation_count(c: &[f64], t: &[f64], seed: u64, n: usize) -> usize {
        let m = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let mut rng = EmoRng::new(RngKind::Numpy, seed);
        let observed = (m(c) - m(t)).abs();
        let mut all = [c, t].concat();
        (0..n)
            .filter(|_| {
                rng.shuffle(&mut all);
                (m(&all[..c.len()]) - m(&all[c.len()..])).abs() >= observed
            })
            .count()
    }

    #[test]
    fn permutation_p_matches_numpy() {
        // numpy 2.4.6:
        //   np.random.seed(s); comb = np.array(c + t, dtype=np.float64)
        //   obs = abs(np.mean(c) - np.mean(t)); cnt = 0
        //   for _ in range(1000):
        //       np.random.shuffle(comb)
        //       cnt += abs(np.mean(comb[:50]) - np.mean(comb[50:])) >= obs
        //   max(cnt / 1000, 1 / 1000)
        // gives 0.15 for s = 0 and 0.171 for s = 2 (naive sums would count 153 and 173).
        for (seed, want, naive) in [(0, 0.15, 153), (2, 0.171, 173)] {
            let mut rng = EmoRng::new(RngKind::Numpy, seed);
            let p = permutation_test(&REGRET_CONTROL, &REGRET_TREATMENT, &mut rng, 1000);
            assert_eq!(p, want, "seed {seed}");
            let mut rng = EmoRng::new(RngKind::Numpy, seed);
            let c = compare(&REGRET_CONTROL, &REGRET_TREATMENT, &mut rng, 1000).unwrap();
            assert_eq!(c.permutation_p, Some(want));
            assert_eq!(c.p_value(), want);
            assert!(!c.significant);
            // The ties really depend on the summation order.
            let naive_count =
                naive_permutation_count(&REGRET_CONTROL, &REGRET_TREATMENT, seed, 1000);
            assert_eq!(naive_count, naive);
        }
    }

    #[test]
    fn permutation_p_is_floored_and_continues_the_stream() {
        let c = [0.0, 0.1, 0.2, 0.1, 0.0, 0.2];
        let t = [5.0, 5.1, 5.2, 5.1, 5.0, 5.2];
        let mut rng = EmoRng::new(RngKind::Fast, 1);
        let p = permutation_test(&c, &t, &mut rng, 100);
        // Only 2 of the 924 splits reach the observed gap: p sits at or near its 1/100 floor.
        assert!((0.01..0.05).contains(&p), "{p}");
        // The generator moved on: a fresh one would differ from the used one.
        assert_ne!(rng, EmoRng::new(RngKind::Fast, 1));
        assert!(permutation_test(&c, &t, &mut rng, 0).is_nan());
    }

    #[test]
    fn zero_se_reports_upstream_defaults_without_drawing() {
        let mut rng = EmoRng::new(RngKind::Numpy, 4);
        let c = compare(&[1.0, 1.0, 1.0], &[1.0, 1.0], &mut rng, 1000).unwrap();
        assert_eq!(rng, EmoRng::new(RngKind::Numpy, 4));
        assert_eq!(
            (c.welch_t, c.welch_p, c.permutation_p),
            (0.0, 1.0, Some(1.0))
        );
        assert_eq!(c.cohens_d, 0.0);
        assert_eq!(c.effect, EffectSize::Negligible);
        assert!(!c.significant);
        // Constant arms with different means: se == 0 too (upstream's t = 0, p = 1).
        let c = compare(&[1.0, 1.0], &[2.0, 2.0], &mut rng, 10).unwrap();
        assert_eq!((c.welch_t, c.p_value()), (0.0, 1.0));
        assert!(c.student_t.is_infinite());
        // NaN statistics survive a JSON round trip as null.
        let json = serde_json::to_string(&c).unwrap();
        let back: Comparison = serde_json::from_str(&json).unwrap();
        assert!(back.student_t.is_nan());
        assert_eq!(back.welch_t, c.welch_t);
    }

    #[test]
    fn ci_uses_upstream_multiplier() {
        let x: Vec<f64> = (0..31).map(f64::from).collect();
        let s = ArmSummary::of(&x);
        let half = 1.96 * s.sd / 31f64.sqrt();
        assert_eq!((s.ci_low, s.ci_high), (s.mean - half, s.mean + half));
        let s = ArmSummary::of(&x[..30]);
        let half = 2.0 * s.sd / 30f64.sqrt();
        assert_eq!((s.ci_low, s.ci_high), (s.mean - half, s.mean + half));
    }

    #[test]
    fn effect_labels() {
        let labels: Vec<_> = [0.0, -0.19, 0.2, -0.49, 0.5, 0.79, -0.8, 2.3, f64::NAN]
            .iter()
            .map(|&d| EffectSize::from_d(d).label())
            .collect();
        assert_eq!(
            labels,
            [
                "negligible",
                "negligible",
                "small",
                "small",
                "medium",
                "medium",
                "large",
                "large",
                "negligible"
            ]
        );
    }

    #[test]
    fn compare_rejects_bad_input() {
        let mut rng = EmoRng::new(RngKind::Numpy, 0);
        assert_eq!(
            compare(&[1.0], &[1.0, 2.0], &mut rng, 10),
            Err(StatsError::TooFewValues {
                arm: "control",
                n: 1
            })
        );
        assert!(matches!(
            compare(&[1.0, 2.0], &[1.0, f64::NAN], &mut rng, 10),
            Err(StatsError::NonFinite {
                arm: "treatment",
                index: 1,
                ..
            })
        ));
    }
}
