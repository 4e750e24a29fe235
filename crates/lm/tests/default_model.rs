//! The default-model lookup, alone in its test binary because it changes
//! the environment.

#[test]
fn missing_default_model_says_to_run_setup() {
    // Point the override at a file that does not exist.
    let e = {
        let old = std::env::var_os("EMORL_SMOLLM2");
        std::env::set_var("EMORL_SMOLLM2", "/nonexistent/smollm2.gguf");
        let e = emorl_lm::default_model_path().unwrap_err();
        match old {
            Some(v) => std::env::set_var("EMORL_SMOLLM2", v),
            None => std::env::remove_var("EMORL_SMOLLM2"),
        }
        e
    };
    assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
}
