//! Tabular agents (in progress).
