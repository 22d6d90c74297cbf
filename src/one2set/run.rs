//! Streaming generation: JSON lines in, JSON lines out, in order, one output line per input line,
//! with bad records reported in place (as `kpg select` does, `crate::select::run`). Documents are
//! read and decoded `batch_docs` at a time, so memory is bounded whatever the input's length.

use super::document::{parse_document, GeneratedDocument};
use super::{GenerateWorkspace, Generator, PreparedDocument};
use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::records::{check_fields, error_line, NumberedLine, RecordId};
use crate::select::document::record_id;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Documents decoded together (all their slots step together).
    pub batch_docs: usize,
    /// Where the slots are decoded.
    pub device: DeviceKind,
    /// GPU ordinal with `DeviceKind::Cuda`.
    pub gpu: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            batch_docs: 32,
            device: DeviceKind::Cpu,
            gpu: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GenerateSummary {
    pub documents: usize,
    pub failed: usize,
    pub candidates: usize,
    /// Slots decoded: documents × control codes.
    pub slots: usize,
    /// Slot steps run (a slot stops after `<eos>` or `<null>`).
    pub slot_steps: usize,
    /// Source tokens encoded.
    pub source_tokens: usize,
}

/// One input record on its way through a batch.
struct Pending {
    line_no: usize,
    id: Option<RecordId>,
    doc: Result<PreparedDocument>,
}

/// Runs every input line (`Err` for a line that could not be read, e.g. not UTF-8) and writes one
/// output line for each, in order. `progress` is called after each batch.
pub fn generate_lines<I, W>(
    generator: &Generator,
    lines: I,
    opts: &GenerateOptions,
    mut write: W,
    mut progress: impl FnMut(&GenerateSummary),
) -> Result<GenerateSummary>
where
    I: IntoIterator<Item = NumberedLine>,
    W: FnMut(&str) -> Result<()>,
{
    let batch_docs = opts.batch_docs.max(1);
    let mut ws = GenerateWorkspace::for_device(generator, opts.device, opts.gpu)?;
    let mut summary = GenerateSummary::default();
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_docs);
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        batch.clear();
        for (line_no, line) in lines.by_ref().take(batch_docs) {
            let mut id = None;
            let doc = line.and_then(|line| {
                let d = parse_document(&line, line_no).inspect_err(|_| id = record_id(&line))?;
                id = Some(d.id.clone());
                check_fields(&d.id, &d.title, &d.abstract_text)
                    .map_err(|e| KpgError::InvalidArgument(format!("line {line_no}: {e}")))?;
                Ok(generator.prepare(&d.title, &d.abstract_text))
            });
            batch.push(Pending { line_no, id, doc });
        }
        let ready: Vec<&PreparedDocument> =
            batch.iter().filter_map(|p| p.doc.as_ref().ok()).collect();
        let mut results = generator.generate(&ready, &mut ws)?.into_iter();
        summary.slots += ready.len() * generator.model.config.num_control_codes;
        summary.source_tokens += ready.iter().map(|d| d.source.len()).sum::<usize>();
        summary.slot_steps += ws.slot_steps();
        for p in &batch {
            summary.documents += 1;
            let line = match (&p.doc, &p.id) {
                (Ok(_), Some(id)) => {
                    let candidates = results.next().expect("one result per ready document");
                    summary.candidates += candidates.len();
                    serde_json::to_string(&GeneratedDocument {
                        id,
                        candidates: &candidates,
                    })
                    .expect("plain values")
                }
                (Ok(_), None) => unreachable!("a parsed record has an id"),
                (Err(e), _) => {
                    summary.failed += 1;
                    error_line(&p.id, p.line_no, e)
                }
            };
            write(&line)?;
        }
        progress(&summary);
    }
    Ok(summary)
}
