//! `emorl-torch`: the `emorl` command line with every command, libtorch
//! linked. `emorl` hands it the commands that need tensors; run directly it
//! behaves as `emorl`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Tensor commands allocate and free large buffers in loops.
    emorl_lm::keep_freed_memory();
    match emorl::cli::parse() {
        Ok(cli) => emorl::cli::exit_code(emorl::commands::run(cli)),
        Err(code) => code,
    }
}
