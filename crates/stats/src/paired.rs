//! Paired comparisons, multiple-comparison corrections and paired-t power.
//!
//! # Paired or two-sample?
//!
//! Use [`paired_compare`] when row `i` of the control arm and row `i` of the
//! treatment arm measure the same unit: the same prompt × sample, the same
//! seed and environment draws. The tests then work on the differences, so
//! the variance shared by a pair (an easy prompt, a lucky seed) cancels and
//! fewer rows detect the same effect. Use [`crate::compare`] when the arms are
//! independent samples: different seeds per arm, different prompts, or rows
//! that cannot be matched one to one. A paired test on unpaired rows is
//! invalid; a two-sample test on paired rows is valid but wastes power.
//!
//! # Several tests at once
//!
//! [`holm`] (step-down, uniformly more powerful) and [`bonferroni`] adjust a
//! family of p-values so that the family-wise error rate stays at alpha.
//! [`paired_t_power`] and [`min_detectable_dz`] size a paired design; pass
//! `alpha / K` to get the effect that survives Holm's first (strictest) step
//! over `K` tests.
//!
//! The tests hold reference values from scipy 1.17.1 (`ttest_rel`,
//! `wilcoxon` with its defaults, `nct`), printed by
//! `crates/stats/tests/paired_reference.py`.
//!
//! Length: about 570 lines of code (paired t, Wilcoxon with exact and normal
//! methods, Holm, power via the noncentral t); the rest are tests against
//! scipy.

use emorl_core::numeric::{mean, std_dev};
use serde::{Deserialize, Serialize};
use statrs::distribution::{Continuous, ContinuousCDF, StudentsT};
use statrs::function::erf::erfc;

use crate::stats::{t_two_sided_p, StatsError};

/// How [`wilcoxon_signed_rank`] computed its p.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedRankMethod {
    /// The exact null distribution over all sign flips of the observed ranks.
    Exact,
    /// Normal approximation with the tie correction, no continuity correction.
    Normal,
}

/// A Wilcoxon signed-rank statistic and its two-sided p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignedRank {
    /// `min(R+, R−)` over the non-zero differences (scipy's `statistic`).
    pub statistic: f64,
    /// Two-sided p.
    pub p: f64,
    /// How `p` was computed.
    pub method: SignedRankMethod,
    /// Differences left after dropping the zeros.
    pub nonzero: usize,
}

/// Largest sample (zeros included) scipy's default treats exactly when it
/// has neither ties nor zeros.
const EXACT_MAX_N: usize = 50;
/// Largest sample (zeros included) scipy's default treats exactly by
/// enumerating sign flips when it has ties or zeros (2^13 < its 9999
/// resamples).
const SIGN_FLIP_MAX_N: usize = 13;

/// Two-sided Wilcoxon signed-rank test of `differences`, as scipy 1.17.1
/// `wilcoxon(d)` with its defaults (`zero_method="wilcox"`,
/// `correction=False`, `method="auto"`).
///
/// Zero differences are dropped before ranking; tied |differences| get their
/// average rank. With `n` the number of differences *including* zeros, the p
/// is exact (all `2^nonzero` sign flips of the ranks, both tails counted
/// and doubled, capped at 1) when there are no ties and no zeros and
/// `n ≤ 50`, or when `n ≤ 13`; otherwise it is the normal approximation
/// with the tie correction and without a continuity correction.
///
/// p = 1 when every difference is zero (scipy: 1 for `n ≤ 13`, NaN above).
/// NaN statistic and p when a difference is NaN or there are none.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> SignedRank {
    let n = differences.len();
    if n == 0 || differences.iter().any(|d| d.is_nan()) {
        return SignedRank {
            statistic: f64::NAN,
            p: f64::NAN,
            method: SignedRankMethod::Normal,
            nonzero: 0,
        };
    }
    let mut signed: Vec<(f64, bool)> = differences
        .iter()
        .filter(|&&d| d != 0.0)
        .map(|&d| (d.abs(), d > 0.0))
        .collect();
    signed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let m = signed.len();

    // Ranks are kept doubled so that average ranks of ties stay integers.
    let mut doubled_ranks = Vec::with_capacity(m);
    let mut r_plus2 = 0u64;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < m {
        let mut j = i + 1;
        while j < m && signed[j].0 == signed[i].0 {
            j += 1;
        }
        let rank2 = (i + 1 + j) as u64;
        for &(_, positive) in &signed[i..j] {
            doubled_ranks.push(rank2);
            if positive {
                r_plus2 += rank2;
            }
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let total2 = (m * (m + 1)) as u64;
    let statistic = r_plus2.min(total2 - r_plus2) as f64 / 2.0;
    let has_ties = tie_term > 0.0;
    let has_zeros = m < n;

    let exact = (!has_ties && !has_zeros && n <= EXACT_MAX_N) || n <= SIGN_FLIP_MAX_N;
    let (p, method) = if exact {
        (
            exact_signed_rank_p(&doubled_ranks, r_plus2),
            SignedRankMethod::Exact,
        )
    } else if m == 0 {
        (1.0, SignedRankMethod::Normal)
    } else {
        let mf = m as f64;
        let mean_r = mf * (mf + 1.0) / 4.0;
        let se = ((mf * (mf + 1.0) * (2.0 * mf + 1.0) - tie_term / 2.0) / 24.0).sqrt();
        let z = (r_plus2 as f64 / 2.0 - mean_r) / se;
        (
            erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
            SignedRankMethod::Normal,
        )
    };
    SignedRank {
        statistic,
        p,
        method,
        nonzero: m,
    }
}

/// `2 · min(P(R+ ≤ r), P(R+ ≥ r))` over all sign flips of the (doubled)
/// ranks, capped at 1. Only called with at most 50 ranks, so the counts
/// (at most 2^50) are exact in `u64` and in `f64`.
fn exact_signed_rank_p(doubled_ranks: &[u64], r_plus2: u64) -> f64 {
    let total: u64 = doubled_ranks.iter().sum();
    // counts[s]: number of sign patterns whose positive doubled ranks sum to s.
    let mut counts = vec![0u64; total as usize + 1];
    counts[0] = 1;
    let mut reached = 0usize;
    for &r in doubled_ranks {
        let r = r as usize;
        for s in (0..=reached).rev() {
            counts[s + r] += counts[s];
        }
        reached += r;
    }
    let observed = r_plus2 as usize;
    let at_most: u64 = counts[..=observed].iter().sum();
    let at_least: u64 = counts[observed..].iter().sum();
    let patterns = (doubled_ranks.len() as f64).exp2();
    (2.0 * at_most.min(at_least) as f64 / patterns).min(1.0)
}

/// A paired comparison of two arms measured on the same units, row by row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Number of pairs.
    pub n: usize,
    /// Mean of the control arm.
    #[serde(with = "crate::float_serde")]
    pub control_mean: f64,
    /// Mean of the treatment arm.
    #[serde(with = "crate::float_serde")]
    pub treatment_mean: f64,
    /// Mean of the differences `treatment − control`.
    #[serde(with = "crate::float_serde")]
    pub mean_diff: f64,
    /// Sample SD (ddof 1) of the differences.
    #[serde(with = "crate::float_serde")]
    pub sd_diff: f64,
    /// Lower end of the t-based 95% CI of the mean difference.
    #[serde(with = "crate::float_serde")]
    pub ci_low: f64,
    /// Upper end of the t-based 95% CI of the mean difference.
    #[serde(with = "crate::float_serde")]
    pub ci_high: f64,
    /// Paired t of `treatment − control`: 0 when every difference is zero,
    /// ±inf when the differences are one non-zero constant (as scipy). JSON
    /// has no infinity: it reads back as NaN, and `mean_diff` keeps the sign.
    #[serde(with = "crate::float_serde")]
    pub t: f64,
    /// Degrees of freedom, `n − 1`.
    #[serde(with = "crate::float_serde")]
    pub df: f64,
    /// Two-sided p of the paired t test: 1 when every difference is zero, 0
    /// when they are one non-zero constant.
    #[serde(with = "crate::float_serde")]
    pub p: f64,
    /// Cohen's d_z, `mean_diff / sd_diff`: 0 when every difference is zero,
    /// ±inf (read back from JSON as NaN) when they are one non-zero constant.
    #[serde(with = "crate::float_serde")]
    pub d_z: f64,
    /// Wilcoxon signed-rank `min(R+, R−)` (see [`wilcoxon_signed_rank`]).
    #[serde(with = "crate::float_serde")]
    pub wilcoxon_statistic: f64,
    /// Two-sided Wilcoxon signed-rank p.
    #[serde(with = "crate::float_serde")]
    pub wilcoxon_p: f64,
    /// How `wilcoxon_p` was computed.
    pub wilcoxon_method: SignedRankMethod,
    /// Pairs whose difference is not zero (the Wilcoxon test's sample size).
    pub nonzero_diffs: usize,
}

fn check_paired(control: &[f64], treatment: &[f64]) -> Result<(), StatsError> {
    if control.len() != treatment.len() {
        return Err(StatsError::LengthMismatch {
            control: control.len(),
            treatment: treatment.len(),
        });
    }
    if control.len() < 2 {
        return Err(StatsError::TooFewPairs { n: control.len() });
    }
    for (arm, x) in [("control", control), ("treatment", treatment)] {
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(StatsError::NonFinite {
                arm,
                index,
                value: x[index],
            });
        }
    }
    Ok(())
}

/// Paired t test (scipy `ttest_rel(treatment, control)`), its 95% CI,
/// Cohen's d_z and the Wilcoxon signed-rank test of `treatment − control`.
///
/// Rows must be paired: `control[i]` and `treatment[i]` come from the same
/// unit. Rejects arms of different lengths, fewer than 2 pairs and
/// non-finite values (naming the arm and the index).
pub fn paired_compare(control: &[f64], treatment: &[f64]) -> Result<PairedComparison, StatsError> {
    check_paired(control, treatment)?;
    let n = control.len();
    let diffs: Vec<f64> = treatment.iter().zip(control).map(|(t, c)| t - c).collect();
    let mean_diff = mean(&diffs);
    let sd_diff = std_dev(&diffs, 1);
    let df = (n - 1) as f64;
    let se = sd_diff / (n as f64).sqrt();
    let signed_rank = wilcoxon_signed_rank(&diffs);
    let (t, p, d_z) = if signed_rank.nonzero == 0 {
        (0.0, 1.0, 0.0)
    } else if se == 0.0 {
        let inf = f64::INFINITY.copysign(mean_diff);
        (inf, 0.0, inf)
    } else {
        let t = mean_diff / se;
        (t, t_two_sided_p(t, df), mean_diff / sd_diff)
    };
    let half = t_upper_quantile(0.025, df) * se;
    Ok(PairedComparison {
        n,
        control_mean: mean(control),
        treatment_mean: mean(treatment),
        mean_diff,
        sd_diff,
        ci_low: mean_diff - half,
        ci_high: mean_diff + half,
        t,
        df,
        p,
        d_z,
        wilcoxon_statistic: signed_rank.statistic,
        wilcoxon_p: signed_rank.p,
        wilcoxon_method: signed_rank.method,
        nonzero_diffs: signed_rank.nonzero,
    })
}

/// Holm–Bonferroni adjusted p-values, in the order given.
///
/// Step-down: the `k`-th smallest of `m` p-values is multiplied by
/// `m − k + 1`, then a running maximum keeps the adjusted values monotone,
/// and each is capped at 1. A NaN p (a test that could not be computed)
/// stays NaN and still counts in `m`; the others are adjusted as if it were
/// 1, which is the conservative reading.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    // NaN sorts last whatever its sign bit; the sort is stable for ties.
    order.sort_by(|&a, &b| {
        let (pa, pb) = (p_values[a], p_values[b]);
        match (pa.is_nan(), pb.is_nan()) {
            (false, false) => pa.total_cmp(&pb),
            (nan_a, nan_b) => nan_a.cmp(&nan_b),
        }
    });
    let mut adjusted = vec![f64::NAN; m];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        let p = p_values[i];
        if p.is_nan() {
            break;
        }
        running = running.max(((m - k) as f64 * p).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Bonferroni adjusted p-values `min(1, m·p)`, in the order given; NaN stays
/// NaN and counts in `m`.
pub fn bonferroni(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len() as f64;
    p_values
        .iter()
        .map(|&p| if p.is_nan() { p } else { (m * p).min(1.0) })
        .collect()
}

/// `t` with `P(T > t) = tail` under Student's t with `df` degrees of
/// freedom, for `0 < tail < 1/2`: statrs' inverse, polished by Newton steps
/// on the CDF so that it is as accurate as the CDF itself. NaN for invalid
/// arguments.
pub fn t_upper_quantile(tail: f64, df: f64) -> f64 {
    if !(tail > 0.0 && tail < 0.5) {
        return f64::NAN;
    }
    let Ok(dist) = StudentsT::new(0.0, 1.0, df) else {
        return f64::NAN;
    };
    let mut t = -dist.inverse_cdf(tail);
    for _ in 0..8 {
        let step = (dist.cdf(-t) - tail) / dist.pdf(t);
        if !step.is_finite() {
            break;
        }
        t += step;
        if step.abs() <= 1e-15 * t.abs() {
            break;
        }
    }
    t
}

/// Standard normal CDF through `erfc`, accurate in both tails.
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Two-sided power of the paired t test at level `alpha` with `n` pairs when
/// the true standardised mean difference is `d_z`.
///
/// Power is `P(|T| > t_crit)` with `T` noncentral t (df `n − 1`, noncentrality
/// `d_z·√n`) and `t_crit` the central `1 − alpha/2` quantile. It is computed
/// exactly, not by a normal approximation: writing `T = (Z + δ)/S` with
/// `S = √(χ²/df)`, power is `E[Φ(δ − t_crit·S) + Φ(−δ − t_crit·S)]`,
/// integrated over the density of `S` by adaptive Gauss–Legendre quadrature.
/// It agrees with scipy's `nct` to better than 1e-9 on the tested cases.
///
/// `alpha` may already be divided for a correction (`alpha / K` for Holm's
/// first step over `K` tests). Symmetric in `d_z`; 1 for infinite `d_z`; NaN
/// when `n < 2`, `alpha` is not in (0, 1) or `d_z` is NaN.
pub fn paired_t_power(d_z: f64, n: usize, alpha: f64) -> f64 {
    if n < 2 || !(alpha > 0.0 && alpha < 1.0) || d_z.is_nan() {
        return f64::NAN;
    }
    if d_z.is_infinite() {
        return 1.0;
    }
    let df = (n - 1) as f64;
    let delta = d_z.abs() * (n as f64).sqrt();
    let t_crit = t_upper_quantile(alpha / 2.0, df);
    let s = ScaledChi::new(df);
    let rule = GaussLegendre::new();
    // Φ(±δ − t_crit·S) steps from 1 to 0 over a width of about 1/t_crit
    // where t_crit·S crosses ±δ.
    let breaks = s.panels(&[(delta / t_crit, 1.0 / t_crit), (0.0, 1.0 / t_crit)]);
    // The density peaks at 1, so its mass is at least about 1/√df.
    let mass = rule.integrate(&|x| s.density(x), &breaks, 1e-14 / df.sqrt());
    let rejected = rule.integrate(
        &|x| s.density(x) * (normal_cdf(delta - t_crit * x) + normal_cdf(-delta - t_crit * x)),
        &breaks,
        1e-13 * mass,
    );
    (rejected / mass).clamp(0.0, 1.0)
}

/// Smallest `d_z ≥ 0` the two-sided paired t test detects with probability
/// `power` at level `alpha` with `n` pairs (bisection on
/// [`paired_t_power`], to about 1e-12 relative).
///
/// For "n pairs detect d_z ≥ X at 80% power after Holm over K tests", pass
/// `alpha / K` (Holm's first step; later steps are less strict). 0 when
/// `power ≤ alpha` (no effect is needed); NaN when `n < 2` or `alpha` or
/// `power` is not in (0, 1).
pub fn min_detectable_dz(n: usize, alpha: f64, power: f64) -> f64 {
    if n < 2 || !(alpha > 0.0 && alpha < 1.0) || !(power > 0.0 && power < 1.0) {
        return f64::NAN;
    }
    if power <= alpha {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while paired_t_power(hi, n, alpha) < power {
        lo = hi;
        hi *= 2.0;
        if hi > 1e12 {
            return f64::NAN;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if paired_t_power(mid, n, alpha) < power {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// `S = √(χ²_df / df)`, the denominator of a t statistic over its true SD.
struct ScaledChi {
    df: f64,
    mode: f64,
}

impl ScaledChi {
    fn new(df: f64) -> Self {
        ScaledChi {
            df,
            mode: ((df - 1.0) / df).sqrt(),
        }
    }

    /// Density up to a constant factor, 1 at the mode; the constant cancels
    /// because callers divide by the integrated mass.
    fn density(&self, s: f64) -> f64 {
        let shape = if self.df > 1.0 {
            (self.df - 1.0) * ((s - self.mode) / self.mode).ln_1p()
        } else {
            0.0
        };
        (shape - self.df * (s * s - self.mode * self.mode) / 2.0).exp()
    }

    /// Panel edges over where all but about e^-50 of the mass lies
    /// (Laurent–Massart bounds on χ²), refined geometrically towards each
    /// `(place, width)` where the integrand has a step that narrow: a step
    /// far narrower than a panel falls between the nodes and is never seen.
    fn panels(&self, steps: &[(f64, f64)]) -> Vec<f64> {
        const PANELS: usize = 64;
        let nu = self.df;
        let spread = 2.0 * (50.0 * nu).sqrt();
        let lo = ((nu - spread).max(0.0) / nu).sqrt();
        let hi = ((nu + spread + 100.0) / nu).sqrt();
        let mut edges: Vec<f64> = (0..=PANELS)
            .map(|k| lo + (hi - lo) * k as f64 / PANELS as f64)
            .collect();
        for &(place, width) in steps {
            edges.push(place);
            let mut offset = width;
            while offset.is_finite() && offset > 0.0 && offset < hi - lo {
                edges.extend([place - offset, place + offset]);
                offset *= 2.0;
            }
        }
        edges.retain(|&e| (lo..=hi).contains(&e));
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        edges
    }
}

/// 16-point Gauss–Legendre rule on [-1, 1], nodes found by Newton's method
/// on the Legendre recurrence.
struct GaussLegendre {
    /// (node, weight) pairs with node > 0; the rule is symmetric.
    half: [(f64, f64); 8],
}

impl GaussLegendre {
    const ORDER: usize = 16;

    fn new() -> Self {
        let m = Self::ORDER;
        let mut half = [(0.0, 0.0); 8];
        for (i, slot) in half.iter_mut().enumerate() {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
            let mut derivative = 1.0;
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=m {
                    let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                    p0 = p1;
                    p1 = p2;
                }
                derivative = m as f64 * (x * p1 - p0) / (x * x - 1.0);
                let step = p1 / derivative;
                x -= step;
                if step.abs() < 1e-16 {
                    break;
                }
            }
            *slot = (x, 2.0 / ((1.0 - x * x) * derivative * derivative));
        }
        GaussLegendre { half }
    }

    fn panel(&self, f: &dyn Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        let (mid, radius) = ((a + b) / 2.0, (b - a) / 2.0);
        let sum: f64 = self
            .half
            .iter()
            .map(|&(x, w)| w * (f(mid - radius * x) + f(mid + radius * x)))
            .sum();
        sum * radius
    }

    /// Integral of `f` over `edges[0]..edges[last]` to within about
    /// `tolerance` (absolute): a panel is halved until one rule and its two
    /// half rules agree within the panel's share of `tolerance` by width, or
    /// within rounding.
    fn integrate(&self, f: &dyn Fn(f64) -> f64, edges: &[f64], tolerance: f64) -> f64 {
        let (Some(first), Some(last)) = (edges.first(), edges.last()) else {
            return 0.0;
        };
        let per_width = tolerance / (last - first);
        edges
            .windows(2)
            .map(|w| self.refine(f, w[0], w[1], self.panel(f, w[0], w[1]), per_width, 40))
            .sum()
    }

    fn refine(
        &self,
        f: &dyn Fn(f64) -> f64,
        a: f64,
        b: f64,
        whole: f64,
        per_width: f64,
        depth: u32,
    ) -> f64 {
        let mid = (a + b) / 2.0;
        let (left, right) = (self.panel(f, a, mid), self.panel(f, mid, b));
        let halves = left + right;
        let error = (halves - whole).abs();
        if depth == 0 || error <= per_width * (b - a) || error <= 1e-14 * halves.abs() {
            return halves;
        }
        self.refine(f, a, mid, left, per_width, depth - 1)
            + self.refine(f, mid, b, right, per_width, depth - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got:e}, want {want:e} (rel {rel:e})"
        );
    }

    // Samples A..E and every scipy number below are printed by
    // `crates/stats/tests/paired_reference.py` (scipy 1.17.1, numpy 2.4.6).

    /// n = 12, no ties, no zeros: scipy's exact signed-rank distribution.
    const A_C: [f64; 12] = [
        0.63, 0.594, 0.371, 0.264, 0.471, 0.741, 0.767, 0.682, 0.569, 0.82, 0.747, 0.456,
    ];
    const A_T: [f64; 12] = [
        0.604, 0.638, 0.409, 0.413, 0.361, 0.802, 1.014, 0.67, 0.573, 0.892, 0.685, 0.523,
    ];
    /// n = 12 with tied |differences| and 4 zero differences: scipy enumerates
    /// all sign flips (a permutation test that is exact for n ≤ 13).
    const B_C: [f64; 12] = [0.5, 0.6, 0.1, 0.2, 0.9, 0.7, 0.2, 0.2, 0.0, 0.8, 0.4, 0.2];
    const B_T: [f64; 12] = [0.6, 0.7, 0.3, 0.1, 1.2, 0.9, 0.2, 0.3, -0.2, 0.8, 0.4, 0.2];
    /// n = 40 on a 0.05 grid, ties and 5 zeros: normal approximation.
    const C_C: [f64; 40] = [
        0.65, 0.9, 0.95, 0.3, 0.25, 0.55, 0.45, 0.35, 0.9, 0.1, 0.8, 0.25, 0.3, 0.7, 0.65, 0.05,
        0.25, 0.1, 0.6, 0.45, 1.0, 0.6, 0.4, 0.7, 0.8, 0.95, 0.35, 0.95, 0.85, 0.95, 0.75, 0.15,
        0.7, 0.85, 0.4, 0.9, 0.8, 0.6, 0.6, 0.95,
    ];
    const C_T: [f64; 40] = [
        0.45, 0.75, 0.9, 0.35, 0.1, 0.5, 0.45, 0.35, 0.95, 0.15, 0.85, 0.2, 0.25, 0.5, 0.85, 0.1,
        0.35, -0.05, 0.75, 0.5, 1.15, 0.55, 0.55, 0.9, 0.8, 0.95, 0.35, 1.0, 1.2, 1.0, 0.85, 0.0,
        0.45, 0.9, 0.45, 1.1, 0.55, 0.7, 0.45, 1.2,
    ];
    /// n = 40 without ties: exact distribution over 2^40 sign patterns.
    const D_C: [f64; 40] = [
        0.7607, -0.9771, 0.7297, 0.891, 0.1179, 1.5439, 0.9743, -0.0789, -0.4348, 0.7352, -0.6102,
        -2.6228, -0.3697, -1.7399, 1.0165, 0.1052, 0.5855, 1.1731, -0.0331, -0.0173, 0.4473,
        2.3887, -0.2086, -0.4167, 0.1282, 0.7555, -0.2219, -0.2799, 0.8337, 2.0486, 1.3577,
        -1.7099, -0.0632, 1.3603, -1.0188, 0.2396, 0.7429, -1.0811, -1.3536, -0.7879,
    ];
    const D_T: [f64; 40] = [
        2.3536, -0.8627, 1.229, 0.4928, 0.3379, -0.1826, 0.7865, 0.5145, -1.7785, 0.9829, -0.5154,
        -1.5504, -2.7237, -1.6306, 1.5948, 0.2485, 1.1687, 0.1906, 2.0477, 1.252, 1.0697, 3.8676,
        -0.319, 0.8595, -0.6808, 2.6065, 1.0339, -0.9199, 0.2176, 2.9285, 1.6287, -0.3251, 0.1767,
        1.8244, -0.8008, 0.5453, 0.2375, -1.9966, -0.5225, -0.2331,
    ];
    /// n = 60 without ties: normal approximation (n > 50).
    const E_C: [f64; 60] = [
        -1.5651, -0.4458, 1.0619, 0.0056, -1.1039, 0.2991, -0.9005, -0.3693, 1.2603, -1.6911,
        0.3097, 1.4455, 0.3049, 0.826, -1.9118, -0.5507, -0.79, -1.121, -0.1962, -0.2187, 0.6534,
        -0.8008, 0.0066, -0.6193, 0.3857, 0.6199, -0.0785, -0.713, -1.9439, 0.4694, -1.2857,
        0.9312, 0.2002, -1.6476, 0.4619, -0.4093, 0.4465, 0.7926, 0.2875, 0.4407, 0.332, -0.6574,
        -0.6818, -0.06, -0.0157, 1.1858, -1.1258, -1.0504, 0.6903, -0.1282, 0.7943, 0.1255,
        -0.7385, -1.5043, -0.8727, 1.0413, -0.8158, 0.5959, 0.823, -0.3832,
    ];
    const E_T: [f64; 60] = [
        0.2385, -0.6927, -0.0472, 0.3509, -0.9109, 1.0699, -2.3682, -0.575, -0.4252, -0.9188,
        0.0266, 3.6879, 0.4927, 1.3628, -0.7186, 1.57, -1.2366, -0.0548, 1.1337, 0.4514, 0.5653,
        -1.3176, 1.3753, -0.7526, -0.464, -0.453, 1.216, -1.7231, -2.0305, -0.0756, -1.114, 0.43,
        0.8496, -0.884, 1.6425, 0.5071, -1.1125, 2.6839, -0.5538, -1.9458, -0.1658, 0.6376, 0.1652,
        -0.6448, 1.0156, 1.083, -2.5116, -1.3488, 0.6452, 1.3175, 1.7409, 0.9111, -0.4614, -3.4114,
        -2.3224, 2.8635, 0.2905, 1.3285, 2.7894, -1.4718,
    ];

    /// One scipy 1.17.1 reference, produced by
    /// ```python
    /// d = np.array(T) - np.array(C)
    /// r = stats.ttest_rel(T, C); ci = r.confidence_interval(0.95)
    /// w = stats.wilcoxon(T, C)
    /// (r.statistic, r.df, r.pvalue, ci.low, ci.high, np.mean(d),
    ///  np.mean(d) / np.std(d, ddof=1), w.statistic, w.pvalue, np.count_nonzero(d))
    /// ```
    struct Reference {
        t: f64,
        df: f64,
        p: f64,
        ci: (f64, f64),
        mean_diff: f64,
        d_z: f64,
        w: f64,
        w_p: f64,
        nonzero: usize,
        method: SignedRankMethod,
    }

    fn check(control: &[f64], treatment: &[f64], want: Reference) {
        let got = paired_compare(control, treatment).unwrap();
        assert_eq!(got.n, control.len());
        close(got.t, want.t, 1e-12);
        assert_eq!(got.df, want.df);
        close(got.p, want.p, 1e-9);
        close(got.ci_low, want.ci.0, 1e-9);
        close(got.ci_high, want.ci.1, 1e-9);
        close(got.mean_diff, want.mean_diff, 1e-15);
        close(got.d_z, want.d_z, 1e-12);
        assert_eq!(got.wilcoxon_statistic, want.w);
        close(got.wilcoxon_p, want.w_p, 1e-9);
        assert_eq!(got.nonzero_diffs, want.nonzero);
        assert_eq!(got.wilcoxon_method, want.method);
        // The test of treatment − control is the test of control − treatment mirrored.
        let back = paired_compare(treatment, control).unwrap();
        assert_eq!((back.t, back.p), (-got.t, got.p));
        assert_eq!(
            (back.wilcoxon_statistic, back.wilcoxon_p),
            (got.wilcoxon_statistic, got.wilcoxon_p)
        );
    }

    #[test]
    fn matches_scipy_exact_without_ties() {
        check(
            &A_C,
            &A_T,
            Reference {
                t: 1.442098491918834,
                df: 11.0,
                p: 0.1771351967187327,
                ci: (-0.020698684901713144, 0.09936535156837983),
                mean_diff: 0.039333333333333345,
                d_z: 0.4162979762536461,
                w: 22.0,
                w_p: 0.20361328125,
                nonzero: 12,
                method: SignedRankMethod::Exact,
            },
        );
    }

    #[test]
    fn matches_scipy_sign_flips_with_ties_and_zeros() {
        check(
            &B_C,
            &B_T,
            Reference {
                t: 1.4654045033934269,
                df: 11.0,
                p: 0.1708019265068062,
                ci: (-0.029281247287943533, 0.14594791395461018),
                mean_diff: 0.05833333333333333,
                d_z: 0.42302584225294243,
                w: 10.0,
                w_p: 0.3125,
                nonzero: 8,
                method: SignedRankMethod::Exact,
            },
        );
    }

    #[test]
    fn matches_scipy_normal_with_ties_and_zeros() {
        check(
            &C_C,
            &C_T,
            Reference {
                t: 0.627122614457862,
                df: 39.0,
                p: 0.5342332779366734,
                ci: (-0.03059858432676444, 0.05809858432676445),
                mean_diff: 0.013750000000000007,
                d_z: 0.0991567916943242,
                w: 267.5,
                w_p: 0.4360013132414471,
                nonzero: 35,
                method: SignedRankMethod::Normal,
            },
        );
    }

    #[test]
    fn matches_scipy_exact_at_n_40() {
        check(
            &D_C,
            &D_T,
            Reference {
                t: 1.688944906649367,
                df: 39.0,
                p: 0.09921111990367544,
                ci: (-0.050604976060430795, 0.5627849760604308),
                mean_diff: 0.25609,
                d_z: 0.2670456373776231,
                w: 271.0,
                w_p: 0.062184092836105265,
                nonzero: 40,
                method: SignedRankMethod::Exact,
            },
        );
    }

    #[test]
    fn matches_scipy_normal_above_50() {
        check(
            &E_C,
            &E_T,
            Reference {
                t: 1.321319195483211,
                df: 59.0,
                p: 0.19149628643698816,
                ci: (-0.09712494820121167, 0.47475494820121167),
                mean_diff: 0.18881499999999998,
                d_z: 0.17058157463768867,
                w: 740.0,
                w_p: 0.19764832976309,
                nonzero: 60,
                method: SignedRankMethod::Normal,
            },
        );
    }

    #[test]
    fn identical_arms_give_no_effect() {
        // scipy 1.17.1: ttest_rel gives nan, nan here; wilcoxon gives (0.0, 1.0) for
        // n = 5 (sign flips) and (0.0, nan) for n = 20 (normal approximation).
        for n in [5, 20] {
            let x: Vec<f64> = (0..n).map(f64::from).collect();
            let c = paired_compare(&x, &x).unwrap();
            assert_eq!((c.t, c.p, c.d_z), (0.0, 1.0, 0.0));
            assert_eq!(
                (c.mean_diff, c.sd_diff, c.ci_low, c.ci_high),
                (0.0, 0.0, 0.0, 0.0)
            );
            assert_eq!((c.wilcoxon_statistic, c.wilcoxon_p), (0.0, 1.0));
            assert_eq!(c.nonzero_diffs, 0);
        }
    }

    #[test]
    fn constant_nonzero_difference_is_infinitely_significant() {
        // scipy 1.17.1: ttest_rel([1.5, ..., 5.5], [1, ..., 5]) -> (inf, 0.0);
        // wilcoxon -> (0.0, 0.0625), all 2^5 sign flips.
        let c = paired_compare(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.5, 2.5, 3.5, 4.5, 5.5]).unwrap();
        assert_eq!((c.t, c.p, c.d_z), (f64::INFINITY, 0.0, f64::INFINITY));
        assert_eq!((c.mean_diff, c.ci_low, c.ci_high), (0.5, 0.5, 0.5));
        assert_eq!((c.wilcoxon_statistic, c.wilcoxon_p), (0.0, 0.0625));
        assert_eq!(c.wilcoxon_method, SignedRankMethod::Exact);
        // ttest_rel([0.5] * 20, [1.0] * 20) -> (-inf, 0.0);
        // wilcoxon -> (0.0, 7.74421643104407e-06), every |d| tied.
        let c = paired_compare(&[1.0; 20], &[0.5; 20]).unwrap();
        assert_eq!(
            (c.t, c.p, c.d_z),
            (f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY)
        );
        assert_eq!(c.wilcoxon_method, SignedRankMethod::Normal);
        close(c.wilcoxon_p, 7.744_216_431_044_07e-6, 1e-9);
        // JSON has no infinity: t reads back as NaN, the sign stays in mean_diff.
        let back: PairedComparison =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert!(back.t.is_nan() && back.d_z.is_nan());
        assert_eq!((back.mean_diff, back.p), (-0.5, 0.0));
    }

    #[test]
    fn two_pairs_and_json_round_trip() {
        // scipy 1.17.1: ttest_rel([2, 1.5], [1, 2]) -> (0.3333333333333333, 0.7951672353008665);
        // wilcoxon -> (1.0, 1.0).
        let c = paired_compare(&[1.0, 2.0], &[2.0, 1.5]).unwrap();
        close(c.t, 0.333_333_333_333_333_3, 1e-15);
        close(c.p, 0.795_167_235_300_866_5, 1e-9);
        assert_eq!((c.wilcoxon_statistic, c.wilcoxon_p), (1.0, 1.0));
        let back: PairedComparison =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            paired_compare(&[1.0, 2.0, 3.0], &[1.0, 2.0]),
            Err(StatsError::LengthMismatch {
                control: 3,
                treatment: 2
            })
        );
        assert_eq!(
            paired_compare(&[1.0], &[2.0]),
            Err(StatsError::TooFewPairs { n: 1 })
        );
        assert_eq!(
            paired_compare(&[], &[]),
            Err(StatsError::TooFewPairs { n: 0 })
        );
        assert!(matches!(
            paired_compare(&[1.0, 2.0, 3.0], &[1.0, 2.0, f64::NAN]),
            Err(StatsError::NonFinite {
                arm: "treatment",
                index: 2,
                ..
            })
        ));
        assert_eq!(
            paired_compare(&[1.0, f64::INFINITY], &[1.0, 2.0]),
            Err(StatsError::NonFinite {
                arm: "control",
                index: 1,
                value: f64::INFINITY
            })
        );
        let w = wilcoxon_signed_rank(&[1.0, f64::NAN]);
        assert!(w.statistic.is_nan() && w.p.is_nan());
        assert!(wilcoxon_signed_rank(&[]).p.is_nan());
    }

    #[test]
    fn holm_by_hand() {
        // Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max 0.06.
        // statsmodels 0.15.0 multipletests(p, method="holm") agrees: [0.03, 0.06, 0.06, 0.02].
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (got, want) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            close(*got, want, 1e-15);
        }
        // Capped at 1 and kept monotone: 0.5·2 = 1.0, then max(1.0, 0.6).
        assert_eq!(holm(&[0.5, 0.6, 0.01]), [1.0, 1.0, 0.03]);
        // Ties get the same adjusted value whatever their order.
        assert_eq!(holm(&[0.02, 0.02, 0.2]), [0.06, 0.06, 0.2]);
        // NaN stays NaN and still counts in m (as if it were 1).
        let adjusted = holm(&[0.01, f64::NAN, 0.04]);
        assert_eq!((adjusted[0], adjusted[2]), (0.03, 0.08));
        assert!(adjusted[1].is_nan());
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn bonferroni_by_hand() {
        // statsmodels 0.15.0 multipletests(p, method="bonferroni"): [0.04, 0.16, 0.12, 0.02].
        assert_eq!(
            bonferroni(&[0.01, 0.04, 0.03, 0.005]),
            [0.04, 0.16, 0.12, 0.02]
        );
        let adjusted = bonferroni(&[0.01, f64::NAN, 0.4]);
        assert_eq!((adjusted[0], adjusted[2]), (0.03, 1.0));
        assert!(adjusted[1].is_nan());
    }

    #[test]
    fn power_matches_scipy_nct() {
        // scipy 1.17.1, power(d_z, n, alpha) of paired_reference.py:
        // t_crit = t.ppf(1 - alpha/2, n - 1), nc = d_z·√n,
        // nct.sf(t_crit, n - 1, nc) + nct.cdf(-t_crit, n - 1, nc).
        // statsmodels 0.15.0 TTestPower().power(0.25, 128, 0.05) = 0.801507136372667.
        let cases = [
            (0.25, 128, 0.05, 0.801_507_136_372_667_2),
            (0.5, 20, 0.05, 0.564_504_418_439_021),
            (0.3, 128, 0.05 / 6.0, 0.760_916_553_916_420_8),
            (0.0, 30, 0.05, 0.049_999_999_999_999_97),
            (1.0, 5, 0.05, 0.401_389_917_371_795_36),
            (0.1, 2000, 0.01, 0.970_794_080_016_737_8),
            (2.0, 2, 0.05, 0.175_707_411_097_760_28),
            (0.8, 3, 0.2, 0.433_763_561_032_087_1),
        ];
        for (d_z, n, alpha, want) in cases {
            let got = paired_t_power(d_z, n, alpha);
            assert!(
                (got - want).abs() < 1e-9,
                "power({d_z}, {n}, {alpha}) = {got}, scipy {want}"
            );
            assert_eq!(paired_t_power(-d_z, n, alpha), got);
        }
    }

    #[test]
    fn min_detectable_dz_matches_scipy() {
        // scipy 1.17.1: brentq(lambda d: power(d, n, alpha) - target, 1e-9, 10) with
        // paired_reference.py's power; statsmodels 0.15.0
        // TTestPower().solve_power(None, 128, 0.05, 0.8) = 0.24951941259463772.
        let cases = [
            (128, 0.05, 0.8, 0.249_519_412_594_627_07),
            (128, 0.05 / 6.0, 0.8, 0.311_864_572_019_295_35),
            (20, 0.05, 0.9, 0.764_457_902_177_731_7),
            (1000, 0.001, 0.95, 0.156_494_765_104_274_6),
            (4, 0.05, 0.8, 2.127_949_343_257_801),
        ];
        for (n, alpha, power, want) in cases {
            let got = min_detectable_dz(n, alpha, power);
            close(got, want, 1e-9);
            assert!((paired_t_power(got, n, alpha) - power).abs() < 1e-12);
        }
    }

    #[test]
    fn power_edge_cases() {
        assert!(paired_t_power(0.5, 1, 0.05).is_nan());
        assert!(paired_t_power(0.5, 10, 0.0).is_nan());
        assert!(paired_t_power(0.5, 10, 1.0).is_nan());
        assert!(paired_t_power(f64::NAN, 10, 0.05).is_nan());
        assert_eq!(paired_t_power(f64::NEG_INFINITY, 10, 0.05), 1.0);
        // A tiny alpha (Holm over many tests) still integrates the sharp step.
        let p = paired_t_power(0.0, 2, 1e-6);
        close(p, 1e-6, 1e-7);
        assert_eq!(min_detectable_dz(10, 0.05, 0.05), 0.0);
        assert!(min_detectable_dz(1, 0.05, 0.8).is_nan());
        assert!(min_detectable_dz(10, 0.05, 1.0).is_nan());
        assert!(min_detectable_dz(10, f64::NAN, 0.8).is_nan());
        // Larger samples detect smaller effects.
        assert!(min_detectable_dz(256, 0.05, 0.8) < min_detectable_dz(128, 0.05, 0.8));
    }
}
