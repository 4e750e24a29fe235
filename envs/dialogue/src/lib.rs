//! Text environments (in progress).
