//! Progress of a long run on stderr: a bar with documents/s and the time left when stderr is a
//! terminal, a plain line every few seconds otherwise (logs, CI), or nothing.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use clap::ValueEnum;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, periodic lines otherwise.
    Auto,
    Bar,
    Lines,
    None,
}

impl ProgressMode {
    /// What `Auto` means here.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        }
    }
}

/// Seconds between plain progress lines.
const LINE_EVERY_S: f64 = 5.0;
/// Seconds between redraws of the bar.
const BAR_EVERY_S: f64 = 0.2;
const BAR_WIDTH: usize = 30;

pub(crate) struct DocProgress {
    what: &'static str,
    mode: ProgressMode,
    /// Documents this run will do, when known (the bar's 100%).
    total: Option<usize>,
    start: Instant,
    last: Instant,
    drawn: bool,
}

impl DocProgress {
    pub fn new(what: &'static str, mode: ProgressMode, total: Option<usize>) -> Self {
        let now = Instant::now();
        DocProgress {
            what,
            mode: mode.resolve(),
            total,
            start: now,
            last: now,
            drawn: false,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn tick(&mut self, done: usize) {
        let every = match self.mode {
            ProgressMode::Bar => BAR_EVERY_S,
            ProgressMode::Lines => LINE_EVERY_S,
            _ => return,
        };
        if self.last.elapsed().as_secs_f64() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.elapsed();
        let rate = done as f64 / secs.max(1e-9);
        let eta = self
            .total
            .filter(|_| rate > 0.0)
            .map(|t| format_secs(t.saturating_sub(done) as f64 / rate));
        let mut err = std::io::stderr().lock();
        if self.mode == ProgressMode::Lines {
            let of = self.total.map_or(String::new(), |t| format!("/{t}"));
            let eta = eta.map_or(String::new(), |e| format!(", {e} left"));
            let _ = writeln!(
                err,
                "kpg {}: {done}{of} documents, {rate:.1} documents/s{eta}",
                self.what
            );
            return;
        }
        let bar = match self.total {
            Some(t) if t > 0 => {
                let filled = (done.min(t) * BAR_WIDTH) / t;
                format!(
                    "[{}{}] {done}/{t}",
                    "#".repeat(filled),
                    ".".repeat(BAR_WIDTH - filled)
                )
            }
            _ => format!("{done}"),
        };
        let eta = eta.map_or(String::new(), |e| format!(" ETA {e}"));
        let _ = write!(
            err,
            "\r\x1b[2Kkpg {} {bar} docs {rate:.1} docs/s{eta}",
            self.what
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the bar, so that the summary starts on its own line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
