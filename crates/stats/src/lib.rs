//! Statistics for emorl experiments, computed the way upstream Emotional-ED
//! computes them.
//!
//! - [`stats`]: two-sample comparisons (Welch and Student t, the in-place
//!   permutation test on numpy's stream, Cohen's d, Mann–Whitney U), bundled
//!   in a [`Comparison`].
//! - [`paired`]: paired comparisons (paired t with its CI, Cohen's d_z,
//!   Wilcoxon signed-rank) in a [`PairedComparison`], Holm and Bonferroni
//!   corrections, and the power of the paired t test.
//! - [`table`]: results tables rendered to GitHub markdown and JSON.
//! - [`runner`]: a parallel multi-seed runner that stores each seed's result
//!   and resumes interrupted runs.
//!
//! # Paired or two-sample?
//!
//! When both arms were measured on the same units, row by row (the same
//! prompt × sample, the same seed), use [`paired_compare`]: it tests the
//! differences, so what a pair shares cancels out. When the arms are
//! independent samples, or rows cannot be matched one to one, use
//! [`compare`]. See [`paired`] for more.

mod float_serde;
pub mod paired;
pub mod runner;
pub mod stats;
pub mod table;

pub use paired::{
    bonferroni, holm, min_detectable_dz, paired_compare, paired_t_power, t_upper_quantile,
    wilcoxon_signed_rank, PairedComparison, SignedRank, SignedRankMethod,
};
pub use runner::{run_seeds, RunnerError, SeedDone, SeedStore};
pub use stats::{compare, ArmSummary, Comparison, EffectSize, StatsError};
pub use table::{Cell, Row, Table, TableError};
