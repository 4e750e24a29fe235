//! Statistics for emorl experiments, computed the way upstream Emotional-ED
//! computes them.
//!
//! - [`stats`]: two-sample comparisons (Welch and Student t, the in-place
//!   permutation test on numpy's stream, Cohen's d, Mann–Whitney U), bundled
//!   in a [`Comparison`].
//! - [`table`]: results tables rendered to GitHub markdown and JSON.
//! - [`runner`]: a parallel multi-seed runner that stores each seed's result
//!   and resumes interrupted runs.

mod float_serde;
pub mod runner;
pub mod stats;
pub mod table;

pub use runner::{run_seeds, RunnerError};
pub use stats::{compare, ArmSummary, Comparison, EffectSize, StatsError};
pub use table::{Cell, Row, Table, TableError};
