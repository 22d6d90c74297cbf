//! `kpg tag`: documents in, keyphrases out, over a JSON-lines corpus of any size. Three threads
//! and bounded channels: this one reads and parses records into batches and later writes the
//! results; the generator and selector stages ([`crate::pipeline::stages`]) overlap between them.
//! Output is in input order, one line per input record, flushed a batch at a time so that
//! `--resume` can finish an interrupted run ([`super::resume`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use super::job::Job;
use super::lines::{input_lines, LineSink};
use super::output_lock::OutputLock;
use super::progress::DocProgress;
use super::resume::{resume_point, Done, Shard};
use super::TagArgs;
use crate::error::{KpgError, Result};
use crate::model::llama::LoadOptions;
use crate::one2set::document::parse_document;
use crate::one2set::Generator;
use crate::pipeline::stages::{self, Batch, Item, Models, StageOptions};
use crate::pipeline::{Document, Tagged};
use crate::rank::Ranker;
use crate::records::{error_line, NumberedLine, RecordId};
use crate::select::document::record_id;
use crate::select::Selector;

/// Where `kpg tag` looks for a generator when `--generator` is not given.
pub const DEFAULT_GENERATOR: &str = "models/generator";

/// Where `kpg tag` looks for a selector when neither `--selector` nor `--no-selector` is given.
pub const DEFAULT_SELECTOR: &str = "models/selector";

/// `--selector`, else `models/selector` when it exists, there is a ranker and the base model it
/// names is there. The default selector is trained on the ranked pool and fused with the ranker's
/// cut, so without a ranker (`--no-ranker`) it is not used. A default selector whose base is
/// missing is skipped with one line on stderr that says how to fetch it; the ranker's cut then
/// gives the keyphrases.
pub fn selector_dir(
    arg: Option<PathBuf>,
    no_selector: bool,
    ranker: bool,
) -> Result<Option<PathBuf>> {
    if no_selector || arg.is_some() || !ranker {
        return Ok(arg);
    }
    let default = PathBuf::from(DEFAULT_SELECTOR);
    if !default.join(crate::select::config::SELECTOR_FILE).is_file() {
        return Ok(None);
    }
    let config = crate::select::config::SelectorConfig::from_dir(&default)?;
    if let Some(base) = &config.base_model {
        let base = default.join(base);
        if !base.exists() {
            eprintln!(
                "kpg tag: the default selector ({DEFAULT_SELECTOR}) needs its base model {}, \
                 which is not here: run tools/fetch-models.sh to fetch it. Going on without a \
                 selector (the ranker's cut); --no-selector silences this.",
                base.display()
            );
            return Ok(None);
        }
    }
    Ok(Some(default))
}

/// Batches between the reader and the generator, and between the selector and the writer.
const IN_FLIGHT: usize = 2;

/// A record's line number and id, for its error line.
type Meta = (usize, Option<RecordId>);

/// `--generator`, else `models/generator` when it exists, else an error that says what to do.
pub fn generator_dir(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = arg {
        return Ok(dir);
    }
    let default = PathBuf::from(DEFAULT_GENERATOR);
    if default.is_dir() {
        return Ok(default);
    }
    Err(KpgError::InvalidArgument(format!(
        "no generator: {DEFAULT_GENERATOR} does not exist here; run from the kpg repository \
         root (where the default generator lives) or pass --generator DIR (a One2Set generator \
         directory; `kpg synth --arch one2set --preset tiny --out DIR` writes a random-weight one \
         to try the pipeline)"
    )))
}

/// A `kpg tag` input record: `{"id", "title", "abstract"}`, other fields ignored.
fn parse_record(line: &str, line_no: usize) -> Result<Document> {
    let d = parse_document(line, line_no)?;
    let doc = Document::new(d.id, d.title, d.abstract_text);
    stages::check_document(&doc)
        .map_err(|e| KpgError::InvalidArgument(format!("line {line_no}: {e}")))?;
    Ok(doc)
}

#[derive(Debug, Default)]
struct Summary {
    documents: usize,
    failed: usize,
    warned: usize,
    keyphrases: usize,
}

pub fn tag(args: TagArgs) -> Result<i32> {
    if args.batch_docs == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-docs must be at least 1".into(),
        ));
    }
    if !args.threshold.is_finite() {
        return Err(KpgError::InvalidArgument(
            "--threshold must be a number".into(),
        ));
    }
    let generator = generator_dir(args.generator.clone())?;
    let opts = StageOptions {
        threshold: args.threshold,
        batch_docs: args.batch_docs,
        scheduler: args
            .cache
            .scheduler_options(crate::backend::DeviceKind::Cpu)?,
    };
    if let (Some(out), Some(input)) = (&args.output, &args.input) {
        if same_file(out, input) {
            return Err(KpgError::InvalidArgument(
                "--output is the --input file".into(),
            ));
        }
    }
    let ranker = args.ranker.ranker_dir();
    let selector = selector_dir(args.selector.clone(), args.no_selector, ranker.is_some())?;
    // The lock comes first: resume reads and cuts the file, and no other run may be writing it.
    let lock = args
        .output
        .as_deref()
        .map(OutputLock::acquire)
        .transpose()?;
    let done = match (&args.output, args.resume) {
        (Some(out), true) => resume_point(out)?,
        _ => Done::default(),
    };
    if let Some(out) = &args.output {
        let job = describe_job(&args, &generator, ranker.as_deref(), selector.as_deref())?;
        if done.lines > 0 {
            job.check_resumes(out)?;
        } else {
            job.write(out)?;
        }
    }
    let models = Arc::new(Models {
        generator: Generator::load(&generator)?,
        ranker: ranker.as_deref().map(Ranker::load).transpose()?,
        selector: selector
            .as_deref()
            .map(|dir| {
                let opts = LoadOptions {
                    adapter: args.adapter.as_deref(),
                    ..LoadOptions::default()
                };
                Selector::load_with(dir, &opts)
            })
            .transpose()?,
    });

    let input = input_lines(args.input.as_deref())?;
    let read_failure = input.failure();
    let mut records = shard_records(Box::new(input), args.shard);
    skip_done(&mut records, &done, args.output.as_deref())?;
    let total = match (&args.input, args.progress.resolve()) {
        (Some(p), super::progress::ProgressMode::Bar) if p.as_os_str() != "-" => {
            let count = shard_records(Box::new(input_lines(Some(p))?), args.shard).count();
            Some(count.saturating_sub(done.lines))
        }
        _ => None,
    };
    let mut sink = match (&args.output, args.resume) {
        (Some(p), true) => LineSink::append(p)?,
        (p, _) => LineSink::open(p.as_deref())?,
    };

    let (in_tx, in_rx) = sync_channel::<Batch<Vec<Meta>>>(IN_FLIGHT);
    let (out_tx, out_rx) = sync_channel::<(Vec<Meta>, Vec<Result<Tagged>>)>(IN_FLIGHT);
    let workers = stages::spawn(models, opts, in_rx, move |meta, results| {
        let _ = out_tx.send((meta, results));
    })?;
    let batch_docs = args.batch_docs;
    let reader = std::thread::Builder::new()
        .name("kpg-read".into())
        .spawn(move || {
            let mut meta = Vec::with_capacity(batch_docs);
            let mut items = Vec::with_capacity(batch_docs);
            for (line_no, line) in records {
                // The id for an error line: the parsed record's, else whatever is readable.
                let (id, doc) = match line {
                    Ok(l) => match parse_record(&l, line_no) {
                        Ok(doc) => (Some(doc.id.clone()), Ok(doc)),
                        Err(e) => (record_id(&l), Err(e)),
                    },
                    Err(e) => (None, Err(e)),
                };
                items.push(Item::from_result(doc));
                meta.push((line_no, id));
                if items.len() == batch_docs {
                    let batch = Batch {
                        payload: std::mem::take(&mut meta),
                        items: std::mem::take(&mut items),
                    };
                    if in_tx.send(batch).is_err() {
                        return;
                    }
                }
            }
            if !items.is_empty() {
                let _ = in_tx.send(Batch {
                    payload: meta,
                    items,
                });
            }
        })
        .map_err(|e| KpgError::io("<thread>", e))?;

    let mut progress = DocProgress::new("tag", args.progress, total);
    let mut summary = Summary::default();
    for (meta, results) in out_rx {
        for ((line_no, id), result) in meta.iter().zip(results) {
            summary.documents += 1;
            let line = match result {
                Ok(t) => {
                    summary.keyphrases += t.keyphrases.len();
                    summary.warned += usize::from(!t.warnings.is_empty());
                    serde_json::to_string(&t).expect("plain values")
                }
                Err(e) => {
                    summary.failed += 1;
                    error_line(id, *line_no, &e)
                }
            };
            sink.write_line(&line)?;
        }
        sink.flush()?;
        progress.tick(summary.documents);
    }
    sink.finish()?;
    progress.finish();
    let _ = reader.join();
    for w in workers {
        let _ = w.join();
    }
    drop(lock);
    // Every complete record before a damaged stretch of input has its line; now say where.
    read_failure.check()?;
    let secs = progress.elapsed();
    let resumed = if done.lines > 0 {
        format!(
            "; {} more were done by the run this one resumed ({} failed)",
            done.lines, done.failed
        )
    } else {
        String::new()
    };
    eprintln!(
        "kpg tag: {} ({} failed, {} with warnings), {}, {:.1} s, {:.1} documents/s{resumed}",
        super::plural::count(summary.documents, "document"),
        summary.failed,
        summary.warned,
        super::plural::count(summary.keyphrases, "keyphrase"),
        secs,
        summary.documents as f64 / secs.max(1e-9)
    );
    Ok(if summary.failed + done.failed > 0 {
        1
    } else {
        0
    })
}

/// The records of a shard: every non-blank line counts, read or not, so that the split depends on
/// the input alone.
fn shard_records(
    records: Box<dyn Iterator<Item = NumberedLine> + Send>,
    shard: Option<Shard>,
) -> Box<dyn Iterator<Item = NumberedLine> + Send> {
    match shard {
        None => records,
        Some(s) => Box::new(
            records
                .enumerate()
                .filter(move |(k, _)| s.owns(*k))
                .map(|(_, r)| r),
        ),
    }
}

/// Skips the records an earlier run finished, checking that the last of them is the one the
/// output file ends with (so a different input is not silently continued).
fn skip_done(
    records: &mut Box<dyn Iterator<Item = NumberedLine> + Send>,
    done: &Done,
    output: Option<&Path>,
) -> Result<()> {
    let mut last = None;
    for k in 0..done.lines {
        match records.next() {
            Some((_, line)) => last = line.ok(),
            None => {
                return Err(KpgError::InvalidArgument(format!(
                    "--resume: {} has {} lines, more than the input's {k} records: not the \
                     output of this input",
                    output.map_or("the output".into(), |p| p.display().to_string()),
                    done.lines
                )))
            }
        }
    }
    // Ids compare by their JSON text; an unreadable id (null in the output) must be unreadable
    // in the input too.
    let input_id = last.as_deref().and_then(record_id);
    let json = |id: &Option<RecordId>| id.as_ref().map_or("null".into(), |i| i.json().to_string());
    if done.lines > 0 && json(&done.last_id) != json(&input_id) {
        return Err(KpgError::InvalidArgument(format!(
            "--resume: the output's last line has id {} but input record {} has id {}: not \
             the output of this input (and --shard)",
            json(&done.last_id),
            done.lines,
            json(&input_id)
        )));
    }
    if done.cut_bytes > 0 {
        eprintln!(
            "kpg tag: resuming after {} complete lines (cut a torn last line of {} bytes)",
            done.lines, done.cut_bytes
        );
    } else if done.lines > 0 {
        eprintln!("kpg tag: resuming after {} complete lines", done.lines);
    }
    Ok(())
}

/// What this run is, for `--resume` to check ([`Job`]): the models by content, the options that
/// change the output, the input's size.
fn describe_job(
    args: &TagArgs,
    generator: &Path,
    ranker: Option<&Path>,
    selector: Option<&Path>,
) -> Result<Job> {
    let mut job = Job::default();
    job.set("kpg", env!("CARGO_PKG_VERSION"));
    job.set_model("generator", Some(generator))?;
    job.set_model("ranker", ranker)?;
    job.set_model("selector", selector)?;
    job.set_model("adapter", args.adapter.as_deref())?;
    job.set("threshold", args.threshold.to_string());
    job.set(
        "shard",
        args.shard
            .map_or("none".into(), |s| format!("{}/{}", s.index, s.count)),
    );
    job.set_input(args.input.as_deref())?;
    Ok(job)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::selector_dir;
    use std::path::PathBuf;

    #[test]
    fn the_default_selector_needs_a_ranker_and_no_flag_against_it() {
        // Unit tests run from the repository root, where models/selector may be ready.
        assert_eq!(selector_dir(None, false, false).unwrap(), None);
        assert_eq!(selector_dir(None, true, true).unwrap(), None);
        let given = PathBuf::from("some/selector");
        assert_eq!(
            selector_dir(Some(given.clone()), false, false).unwrap(),
            Some(given)
        );
    }
}
