//! Streaming selection: JSON lines in, JSON lines out, in order, one output line per input line,
//! with bad records reported in place. Memory is bounded by the scheduler's window, whatever the
//! input's length.

use super::document::{parse_document, record_id, SelectDocument};
use super::scheduler::{Scheduler, SchedulerOptions, SchedulerStats};
use super::{CandidateOrder, SelectMode, Selector};
use crate::error::{KpgError, Result};

#[derive(Debug, Clone)]
pub struct SelectOptions {
    pub order: CandidateOrder,
    pub mode: SelectMode,
    pub scheduler: SchedulerOptions,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions {
            order: CandidateOrder::Confidence,
            mode: SelectMode::Sequence,
            scheduler: SchedulerOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SelectSummary {
    pub documents: usize,
    pub failed: usize,
    pub candidates: usize,
    /// Candidates kept, over all documents.
    pub kept: usize,
    /// The highest P(true) of any candidate, or 0 without one.
    pub max_p_true: f32,
    pub stats: SchedulerStats,
}

/// What travels with a record through the scheduler.
struct Payload {
    line_no: usize,
    id: Option<RecordId>,
    doc: Option<SelectDocument>,
    order: Vec<usize>,
}

use crate::records::{error_line, RecordId};
pub use crate::records::{numbered, NumberedLine};

/// Runs every input line (`Err` for a line that could not be read, e.g. not UTF-8) and writes one
/// output line for each, in order. `progress` is called after each record.
pub fn select_lines<I, W>(
    selector: &Selector,
    lines: I,
    opts: &SelectOptions,
    mut write: W,
    mut progress: impl FnMut(&SelectSummary),
) -> Result<SelectSummary>
where
    I: IntoIterator<Item = NumberedLine>,
    W: FnMut(&str) -> Result<()>,
{
    let share = opts.scheduler.share_prefix;
    let mut scheduler = Scheduler::new(
        &selector.model,
        selector.root_tokens(),
        selector.scheduler_options(&opts.scheduler),
    )?;
    let work = lines.into_iter().map(|(line_no, line)| {
        let mut payload = Payload {
            line_no,
            id: None,
            doc: None,
            order: Vec::new(),
        };
        let group = line.and_then(|line| {
            // The id for an error line: the parsed record's, else whatever of it is readable.
            let doc = parse_document(&line, line_no).inspect_err(|_| {
                payload.id = record_id(&line);
            })?;
            payload.id = Some(doc.id.clone());
            let (order, group) = selector.group(&doc, opts.order, opts.mode, share)?;
            let limit = selector.model.config.max_position_embeddings;
            let needed = scheduler_len(&group, selector.root_tokens().len());
            if needed > limit {
                return Err(KpgError::ContextTooLong { needed, limit });
            }
            payload.order = order;
            payload.doc = Some(doc);
            Ok(group)
        });
        (payload, group)
    });
    let mut summary = SelectSummary::default();
    scheduler.run(work, |payload, result| {
        summary.documents += 1;
        let line = match (result, &payload.doc) {
            (Ok(decisions), Some(doc)) => {
                summary.candidates += doc.candidates.len();
                let sel = Selector::selection(doc, &payload.order, opts.mode, &decisions);
                summary.kept += sel.keyphrases.len();
                for c in &sel.candidates {
                    summary.max_p_true = summary.max_p_true.max(c.p_true);
                }
                serde_json::to_string(&sel).expect("plain values")
            }
            (Err(e), _) => {
                summary.failed += 1;
                error_line(&payload.id, payload.line_no, &e)
            }
            (Ok(_), None) => unreachable!("a group without a document"),
        };
        write(&line)?;
        progress(&summary);
        Ok(())
    })?;
    summary.stats = scheduler.stats.clone();
    Ok(summary)
}

/// The longest sequence of a group, in tokens, counted from position 0.
pub(crate) fn scheduler_len(group: &super::scheduler::Group, root: usize) -> usize {
    let base = if group.shares_root { root } else { 0 } + group.prefix.len();
    base + group
        .members
        .iter()
        .map(|m| m.labels.last().map_or(0, |l| l.pos + 1))
        .max()
        .unwrap_or(0)
}
