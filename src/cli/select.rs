//! `kpg select`: the selector over JSON lines, streaming and in order.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

use super::{BenchSelectOptions, CacheArgs, SelectArgs};
use crate::error::{KpgError, Result};
use crate::select::run::{select_lines, NumberedLine, SelectOptions, SelectSummary};
use crate::select::scheduler::SchedulerOptions;
use crate::select::{CandidateOrder, SelectMode, Selector};

impl CacheArgs {
    pub fn scheduler_options(&self) -> Result<SchedulerOptions> {
        let cache = match (self.cache_tokens, self.cache_mb) {
            (Some(t), None) => crate::kv_cache::CacheCapacity::Tokens(t),
            (None, Some(mb)) => crate::kv_cache::CacheCapacity::Bytes(mb << 20),
            (None, None) => crate::kv_cache::CacheCapacity::Bytes(2 << 30),
            (Some(_), Some(_)) => unreachable!("clap: conflicting flags"),
        };
        if self.block_size == 0 || self.max_batch_tokens == 0 {
            return Err(KpgError::InvalidArgument(
                "--block-size and --max-batch-tokens must be at least 1".into(),
            ));
        }
        Ok(SchedulerOptions {
            cache,
            block_size: self.block_size,
            max_batch_tokens: self.max_batch_tokens,
            share_prefix: !self.no_prefix_sharing,
            ..SchedulerOptions::default()
        })
    }
}

impl SelectArgs {
    pub fn options(&self) -> Result<SelectOptions> {
        let mode = if self.rerank {
            SelectMode::Rerank {
                threshold: self.threshold,
                top_k: self.top_k,
            }
        } else {
            SelectMode::Sequence
        };
        Ok(SelectOptions {
            order: if self.keep_order {
                CandidateOrder::Given
            } else {
                CandidateOrder::Confidence
            },
            mode,
            scheduler: self.cache.scheduler_options()?,
        })
    }
}

impl BenchSelectOptions {
    pub fn options(&self) -> Result<SelectOptions> {
        Ok(SelectOptions {
            order: CandidateOrder::Confidence,
            mode: if self.rerank {
                SelectMode::Rerank {
                    threshold: 0.5,
                    top_k: None,
                }
            } else {
                SelectMode::Sequence
            },
            scheduler: self.cache.scheduler_options()?,
        })
    }
}

/// Lines of the input as UTF-8 strings with their line numbers; a line that is not UTF-8 becomes an
/// error item in place; blank lines are skipped.
pub(crate) fn input_lines(
    path: Option<&std::path::Path>,
) -> Result<Box<dyn Iterator<Item = NumberedLine>>> {
    let reader: Box<dyn BufRead> = match path {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::new(
            File::open(p).map_err(|e| KpgError::io(p, e))?,
        )),
    };
    let name = path.map_or("<stdin>".to_string(), |p| p.display().to_string());
    Ok(Box::new(
        reader
            .split(b'\n')
            .map(move |line| {
                let mut bytes = line.map_err(|e| KpgError::io(&name, e))?;
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                String::from_utf8(bytes)
                    .map_err(|_| KpgError::InvalidArgument("the record is not valid UTF-8".into()))
            })
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .filter(|(_, l)| !matches!(l, Ok(s) if s.trim().is_empty())),
    ))
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

pub fn select(args: SelectArgs) -> Result<i32> {
    let opts = args.options()?;
    let selector = Selector::load(&args.selector)?;
    let lines = input_lines(args.input.as_deref())?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).map_err(|e| KpgError::io(p, e))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut progress = Progress::new("select");
    let mut broken_pipe = false;
    let summary: SelectSummary = select_lines(
        &selector,
        lines,
        &opts,
        |line| {
            if broken_pipe {
                return Ok(());
            }
            match writeln!(out, "{line}") {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    broken_pipe = true;
                    Ok(())
                }
                Err(e) => Err(KpgError::io("<output>", e)),
            }
        },
        |s| progress.tick(s.documents),
    )?;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(KpgError::io("<output>", e))
        }
        _ => {}
    }
    let secs = progress.elapsed();
    eprintln!(
        "kpg select: {} documents ({} failed), {} candidates, {} choice steps, {:.1} s, {:.1} documents/s",
        summary.documents,
        summary.failed,
        summary.candidates,
        summary.stats.choice_steps,
        secs,
        summary.documents as f64 / secs.max(1e-9)
    );
    Ok(if summary.failed > 0 { 1 } else { 0 })
}
