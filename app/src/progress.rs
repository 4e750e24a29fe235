//! Bar bars: a bar on a terminal, a plain line every half minute when
//! the output is redirected, and time estimates that leave out work loaded
//! from an earlier run.

use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A progress bar on stderr (drawn only when stderr is a terminal) whose
/// time estimate counts only the steps this process ran: it derefs to the
/// [`ProgressBar`] it wraps.
pub struct Bar {
    bar: ProgressBar,
    /// When, and at which position, this process's own timing starts: at
    /// creation, after a `set_position` (a resumed run) and after a step
    /// loaded from an earlier run.
    since: Arc<Mutex<(Instant, u64)>>,
}

impl std::ops::Deref for Bar {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Bar {
    /// Moves the bar to `pos` (steps done by an earlier run) and restarts
    /// the time estimate there.
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.restart_estimate();
    }

    fn restart_estimate(&self) {
        // The bar's position first, then `since`: indicatif's drawing thread
        // holds the bar's state while it calls `eta`, which takes `since`;
        // the other order here deadlocked a table run (two workers and the
        // ticker each waiting on the other's lock).
        let pos = self.bar.position();
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        *since = (Instant::now(), pos);
    }
}

/// The time left: the mean time of the steps run since `since`, times the
/// steps left; "?" until this process has finished a step (an estimate from
/// nothing reads as "done in a moment" or "in 500 years").
fn eta(since: &Mutex<(Instant, u64)>, pos: u64, len: Option<u64>) -> String {
    let (t0, p0) = *since.lock().unwrap_or_else(|e| e.into_inner());
    let done = pos.saturating_sub(p0);
    let Some(len) = len else {
        return "?".into();
    };
    if done == 0 {
        return "?".into();
    }
    let per_step = t0.elapsed().as_secs_f64() / done as f64;
    let left = per_step * len.saturating_sub(pos) as f64;
    HumanDuration(std::time::Duration::from_secs_f64(left.min(1e9))).to_string()
}

/// A progress bar on stderr for `len` steps named `what`.
pub fn progress(len: u64, what: &str) -> Bar {
    let bar = ProgressBar::new(len);
    let since = Arc::new(Mutex::new((Instant::now(), 0)));
    let key = {
        let since = since.clone();
        move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&eta(&since, state.pos(), state.len()));
        }
    };
    let redirected = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let template = if redirected {
        format!("{what}: {{pos}}/{{len}} {{msg}} ({{elapsed}} elapsed, eta {{left}})")
    } else {
        format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} (eta {{left}})")
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("left", key);
    bar.set_style(style);
    if redirected {
        // Redirected (a log file, a batch job): plain lines, one every
        // `PlainLines::EVERY`, instead of a bar nobody sees.
        bar.set_draw_target(indicatif::ProgressDrawTarget::term_like(Box::new(
            PlainLines::default(),
        )));
        // A heartbeat: a line every `PlainLines::EVERY` even while one step
        // (an agent of a table, a long update) runs for many minutes.
        bar.enable_steady_tick(std::time::Duration::from_secs(5));
    } else {
        // The spinner turns while a step runs, so a long one does not look hung.
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
    }
    Bar { bar, since }
}

/// Counts one finished step of `pb`; a step `loaded` from an earlier run's
/// results took no time, so the time estimate restarts after it and counts
/// only the steps this process runs.
pub fn step_done(pb: &Bar, loaded: bool) {
    pb.inc(1);
    if loaded {
        pb.restart_estimate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarting_the_estimate_while_the_bar_draws_does_not_deadlock() {
        let pb = Arc::new(progress(u64::MAX, "test"));
        pb.enable_steady_tick(std::time::Duration::from_millis(1));
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let (pb, done) = (pb.clone(), done.clone());
            std::thread::spawn(move || {
                // Long enough for the ticker to draw (and call the estimate)
                // many times while the workers restart it.
                let start = Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(2) {
                    step_done(&pb, true);
                }
                let _ = done.send(());
            });
        }
        for _ in 0..3 {
            finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("workers stuck: lock-order deadlock between the bar and its estimate");
        }
        pb.finish_and_clear();
    }

    #[test]
    fn eta_is_unknown_until_a_step_of_this_process_finishes() {
        let pb = progress(10, "test");
        pb.set_position(4); // a resumed run: 4 steps done earlier
                            // The same function the style's key renders with.
        let state_eta = |pb: &Bar| eta(&pb.since, pb.position(), pb.length());
        assert_eq!(state_eta(&pb), "?");
        step_done(&pb, true); // loaded: still nothing timed
        assert_eq!(state_eta(&pb), "?");
        std::thread::sleep(std::time::Duration::from_millis(20));
        step_done(&pb, false);
        let e = state_eta(&pb);
        assert_ne!(e, "?");
        assert!(!e.contains("year"), "{e}");
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
