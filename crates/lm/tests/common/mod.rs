//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The beginning of llama2.c's greedy continuation of "Once upon a time"
/// (the same story as [`DOC_SAMPLE`]).
pub const DOC_CONTINUATION: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said,";

/// llama2.c doc/stories260K.md: `./run stories260K.bin -z tok512.bin -t 0.0`
/// (no prompt: BOS only) prints this greedy sample.
pub const DOC_SAMPLE: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n";

/// The stories260K GGUF (llama2.c's tiny test model, shipped in the
/// project's shared/ folder): `$EMORL_STORIES260K`, else `shared/models/`
/// inside or beside the repository.
pub fn stories260k() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_STORIES260K") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in [
        root.join("shared/models/stories260k-f32.gguf"),
        root.join("../shared/models/stories260k-f32.gguf"),
    ] {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "stories260k-f32.gguf not found in shared/models inside or beside {} (set EMORL_STORIES260K)",
        root.display()
    );
}

/// The default SmolLM2 model, or a panic that says how to get it.
pub fn smollm2() -> PathBuf {
    match emorl_lm::default_model_path() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The project's Python (the cached venv), for the parity helpers.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_PYTHON") {
        return PathBuf::from(p);
    }
    match emorl_lm::cache_dir() {
        Some(c) if c.join("venv/bin/python").is_file() => c.join("venv/bin/python"),
        _ => PathBuf::from("python3"),
    }
}
