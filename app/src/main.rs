//! `emorl`: emotion-inspired reinforcement learning from the command line.
//!
//! This executable links no libtorch: it runs the commands that need none
//! (listing, tabular training, the tabular tables) and hands every other one,
//! with the same arguments, to `emorl-torch` in the same directory
//! ([`emorl::commands`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match emorl::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match emorl::commands::run_light(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => exec_torch(),
        Err(e) => emorl::cli::exit_code(Err(e)),
    }
}

/// Replaces this process by `emorl-torch` with the same arguments; returns
/// only if that fails.
fn exec_torch() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let torch = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("emorl-torch"),
        Err(e) => {
            eprintln!(
                "error: cannot locate the emorl executable to find emorl-torch beside it: {e}"
            );
            return ExitCode::from(2);
        }
    };
    let err = std::process::Command::new(&torch)
        .arg0("emorl")
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "error: this command needs {} (built beside emorl by scripts/setup.sh or `cargo build --release --bins`): {err}",
        torch.display()
    );
    ExitCode::from(2)
}
