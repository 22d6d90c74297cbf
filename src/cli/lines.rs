//! JSON-lines plumbing shared by the streaming commands (`kpg select`, `kpg generate`): numbered
//! input lines from a file, a `.gz` file or stdin; an output sink on which a closed pipe is not an
//! error; periodic progress lines on stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use crate::error::{KpgError, Result};
pub(crate) use crate::records::input_lines;

/// Where output lines go: a file or stdout. After the reader of stdout goes away (`| head`),
/// further lines are dropped without error.
pub(crate) struct LineSink {
    out: Box<dyn Write>,
    closed: bool,
}

impl LineSink {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let out: Box<dyn Write> = match path {
            Some(p) => Box::new(BufWriter::new(
                File::create(p).map_err(|e| KpgError::io(p, e))?,
            )),
            None => Box::new(BufWriter::new(std::io::stdout().lock())),
        };
        Ok(LineSink { out, closed: false })
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
            closed: false,
        })
    }

    /// Hands what is buffered to the operating system, so that a killed process leaves whole
    /// batches behind (and at most one torn line, after them).
    pub fn flush(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.out.flush() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(KpgError::io("<output>", e)),
        }
    }

    pub fn write_line(&mut self, line: &str) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match writeln!(self.out, "{line}") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(KpgError::io("<output>", e)),
        }
    }

    pub fn finish(mut self) -> Result<()> {
        match self.out.flush() {
            Err(e) if !self.closed && e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(KpgError::io("<output>", e))
            }
            _ => Ok(()),
        }
    }
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
                "kpg {}: {documents} documents, {:.1} documents/s",
                self.what,
                documents as f64 / secs
            );
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
