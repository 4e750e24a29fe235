//! Shared set-up of the agents/llm integration tests.

use std::path::{Path, PathBuf};

use emorl_lm::{DType, Model};

/// The 1.2 MB stories260K model (`EMORL_STORIES260K`, or `shared/` beside the repository).
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
    panic!("stories260k-f32.gguf not found beside {}", root.display());
}

/// stories260K in f32 on one libtorch thread.
pub fn model() -> Model {
    // One thread: the machine is shared, and OpenMP spin-waits badly when oversubscribed.
    tch::set_num_threads(1);
    Model::load(stories260k(), DType::F32).expect("load stories260K")
}

/// The GoEmotions files (`EMORL_GOEMOTIONS_DIR`, or `shared/` beside the repository).
#[allow(dead_code)]
pub fn goemotions_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("EMORL_GOEMOTIONS_DIR") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in [
        root.join("shared/data/goemotions"),
        root.join("../shared/data/goemotions"),
    ] {
        if c.join("train.tsv").is_file() {
            return c;
        }
    }
    panic!("GoEmotions not found beside {}", root.display());
}
