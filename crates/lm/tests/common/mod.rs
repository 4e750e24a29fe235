//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
