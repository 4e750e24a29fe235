//! Progress bars: a bar on a terminal, a plain line every half minute when
//! the output is redirected, and time estimates that leave out work loaded
//! from an earlier run.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // Redirected (a log file, a batch job): plain lines, one every
        // `PlainLines::EVERY`, instead of a bar nobody sees.
        let style = ProgressStyle::with_template(&format!(
            "{what}: {{pos}}/{{len}} {{msg}} ({{elapsed}} elapsed, eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_draw_target(indicatif::ProgressDrawTarget::term_like(Box::new(
            PlainLines::default(),
        )));
        // A heartbeat: a line every `PlainLines::EVERY` even while one step
        // (an agent of a table, a long update) runs for many minutes.
        pb.enable_steady_tick(std::time::Duration::from_secs(5));
        return pb;
    }
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    // The spinner turns while a step runs, so a long one does not look hung.
    pb.enable_steady_tick(std::time::Duration::from_millis(250));
    pb
}

/// Counts one finished step of `pb`; a step `loaded` from an earlier run's
/// results took no time, so the time estimate restarts from it and counts
/// only the steps this process runs (otherwise a resumed table promises to
/// finish in weeks, or at once).
pub fn step_done(pb: &ProgressBar, loaded: bool) {
    pb.inc(1);
    if loaded {
        pb.reset_eta();
    }
}

/// A progress "terminal" for redirected output: writes the bar's line to
/// stderr at most once every [`PlainLines::EVERY`] (the first after that
/// long: short commands stay quiet), with no cursor movement or colour.
#[derive(Debug)]
struct PlainLines {
    last: std::sync::Mutex<Instant>,
}

impl Default for PlainLines {
    fn default() -> Self {
        PlainLines {
            last: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl PlainLines {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(30);

    fn emit(&self, s: &str) -> std::io::Result<()> {
        let line = s.trim();
        if line.is_empty() {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < Self::EVERY {
            return Ok(());
        }
        *last = Instant::now();
        eprintln!("{line}");
        Ok(())
    }
}

impl indicatif::TermLike for PlainLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.emit(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.emit(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
