//! Progress on stderr: a line per scenario, refreshed in place on a
//! terminal and about once a second otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

pub(super) struct Progress {
    state: Mutex<State>,
    terminal: bool,
}

struct State {
    label: String,
    step: usize,
    steps: usize,
    started: Instant,
    last_shown: Instant,
}

impl Progress {
    pub(super) fn new(steps: usize) -> Self {
        Self {
            state: Mutex::new(State {
                label: String::new(),
                step: 0,
                steps,
                started: Instant::now(),
                last_shown: Instant::now(),
            }),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub(super) fn begin(&self, label: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.step += 1;
        state.label = label.to_owned();
        state.started = Instant::now();
        if self.terminal {
            eprintln!();
        }
        eprintln!("[{}/{}] {label}", state.step, state.steps);
    }

    /// `done` of `total` (0: unknown total).
    pub(super) fn show(&self, done: u64, total: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let interval = if self.terminal { 0.2 } else { 1.0 };
        if state.last_shown.elapsed().as_secs_f64() < interval {
            return;
        }
        state.last_shown = Instant::now();
        let secs = state.started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-3);
        let of = if total > 0 {
            format!(" of {total}")
        } else {
            String::new()
        };
        let line = format!("      {done}{of} in {secs:.1} s ({rate:.0}/s)");
        if self.terminal {
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }

    /// A remark within a step.
    pub(super) fn note(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        eprintln!("      {text}");
    }

    pub(super) fn result(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        eprintln!("      -> {text}");
    }
}
