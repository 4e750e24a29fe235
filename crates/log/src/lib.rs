//! TensorBoard event files and run directories (in progress).
