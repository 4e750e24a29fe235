//! Gridworlds (in progress).
