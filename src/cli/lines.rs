//! JSON-lines plumbing shared by the streaming commands (`kpg select`, `kpg generate`): numbered
//! input lines from a file, a `.gz` file or stdin; an output sink; periodic progress lines on
//! stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use crate::error::{KpgError, Result};
pub(crate) use crate::records::input_lines;

/// Where output lines go: a file or stdout. A reader of stdout that goes away (`| head`) ends
/// the process by SIGPIPE, as with other Unix tools (`main` restores the default action); a
/// write error on a file is an error naming it.
pub(crate) struct LineSink {
    out: Box<dyn Write>,
    name: String,
}

impl LineSink {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let out: Box<dyn Write> = match path {
            Some(p) => Box::new(BufWriter::new(
                File::create(p).map_err(|e| KpgError::io(p, e))?,
            )),
            None => Box::new(BufWriter::new(std::io::stdout().lock())),
        };
        Ok(LineSink {
            out,
            name: sink_name(path),
        })
    }

    /// Appends to an existing file (`kpg tag --resume`), creating it when missing.
    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| KpgError::io(path, e))?;
        Ok(LineSink {
            out: Box::new(BufWriter::new(file)),
            name: sink_name(Some(path)),
        })
    }

    /// Hands what is buffered to the operating system, so that a killed process leaves whole
    /// batches behind (and at most one torn line, after them).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| KpgError::io(&self.name, e))
    }

    pub fn write_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.out, "{line}").map_err(|e| KpgError::io(&self.name, e))
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

fn sink_name(path: Option<&Path>) -> String {
    path.map_or("<stdout>".to_string(), |p| p.display().to_string())
}

/// Periodic progress lines on stderr.
pub(crate) struct Progress {
    start: Instant,
    last: Instant,
    what: &'static str,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        let now = Instant::now();
        Progress {
            start: now,
            last: now,
            what,
        }
    }

    pub fn tick(&mut self, documents: usize) {
        if self.last.elapsed().as_secs_f64() >= 2.0 {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "kpg {}: {}, {:.1} documents/s",
                self.what,
                super::plural::count(documents, "document"),
                documents as f64 / secs
            );
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
