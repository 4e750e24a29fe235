//! Fuzzes the resolution of a training config file (TOML parsing, defaults,
//! every agent's and environment's typed table and its validation). Any
//! input must give `Ok` or `Err`, never a panic, and an accepted config must
//! hold what validation promises.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = emorl::train::resolve_text("fuzz.toml", text) {
        assert!(cfg.episodes >= 1 && cfg.max_steps >= 1);
        assert_ne!(cfg.checkpoint_every, Some(0));
    }
});
