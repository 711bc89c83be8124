//! Progress bars for long work, on stderr, only when stderr is a terminal
//! (never in CI logs or pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count bar with rate; hidden when stderr is not a terminal.
pub struct Bytes(Option<ProgressBar>);

pub fn bytes(message: &'static str) -> Bytes {
    if !std::io::stderr().is_terminal() {
        return Bytes(None);
    }
    let bar = ProgressBar::new(0).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Bytes(Some(bar))
}

impl Bytes {
    /// Updates the bar for a step of several (`fetching …`, `converting …`).
    pub fn step(&self, what: &str, done: u64, total: Option<u64>) {
        if let Some(bar) = &self.0 {
            if bar.message() != what {
                bar.set_message(what.to_string());
                bar.reset();
            }
        }
        self.update(done, total);
    }

    pub fn update(&self, done: u64, total: Option<u64>) {
        if let Some(bar) = &self.0 {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
