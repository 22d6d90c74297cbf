//! The two stages of the pipeline, each on its own thread, joined by a bounded channel: the
//! generator decodes a batch while the selector labels the one before it, so neither waits for the
//! whole input, and memory holds a few batches whatever the input's length.
//!
//! Work arrives as batches with a payload (`kpg tag`: the batch's line numbers; the library: the
//! caller's reply channel). Each stage takes every batch that is waiting, up to `batch_docs`
//! documents, and runs them together, then hands them on one by one, in order.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::{Document, PipelineOptions, Tagged, TaggedCandidate};
use crate::error::{KpgError, Result};
use crate::one2set::candidates::Candidate;
use crate::one2set::{GenerateWorkspace, Generator, PreparedDocument};
use crate::rank::candidate::Source;
use crate::rank::extract::{DocumentText, MAX_TOKENS};
use crate::rank::fusion::{fuse_and_cut, FusionInput};
use crate::rank::{CutOptions, Ranker};
use crate::records::RecordId;
use crate::select::config::RankerFusion;
use crate::select::document::{Candidate as SelectCandidate, SelectDocument};
use crate::select::program::KeepRule;
use crate::select::run::scheduler_len;
use crate::select::scheduler::{Decisions, Group, Scheduler, SchedulerOptions};
use crate::select::{CandidateOrder, SelectMode, Selector};

/// The models, shared by the stage threads.
pub(crate) struct Models {
    pub generator: Generator,
    pub ranker: Option<Ranker>,
    pub selector: Option<Selector>,
}

/// A candidate on its way to the selector: the generator's, or the ranker's pool.
#[derive(Debug, Clone)]
struct Proposed {
    phrase: String,
    /// The ranker's probability, or without a ranker the generator's confidence.
    score: f64,
    present: bool,
    /// Where it came from (with a ranker).
    source: Option<Source>,
    /// The ranker's decision (with a ranker).
    ranker_selected: Option<bool>,
}

impl Proposed {
    /// The output line's candidate, with the decision and what the selector said.
    fn tagged(&self, selected: bool, p_true: Option<f32>, fused: Option<f64>) -> TaggedCandidate {
        TaggedCandidate {
            phrase: self.phrase.clone(),
            score: self.score,
            present: self.present,
            source: self.source,
            selected,
            p_true,
            fused,
        }
    }
}

/// A document on its way through the stages.
pub struct Item {
    /// The document, or why it cannot be run.
    doc: Result<Document>,
    /// The candidates, most likely first: the generator's, or the ranker's pool.
    candidates: Vec<Proposed>,
    warnings: Vec<String>,
}

impl Item {
    pub fn new(doc: Document) -> Self {
        Self::from_result(Ok(doc))
    }

    /// An input record that could not be read: it passes through and comes out as its error.
    pub fn from_result(doc: Result<Document>) -> Self {
        Item {
            doc,
            candidates: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Documents that travel together, with what the caller needs to route their results.
pub struct Batch<P> {
    pub payload: P,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub struct StageOptions {
    pub threshold: f64,
    pub batch_docs: usize,
    pub scheduler: SchedulerOptions,
}

impl From<&PipelineOptions> for StageOptions {
    fn from(o: &PipelineOptions) -> Self {
        StageOptions {
            threshold: o.threshold,
            batch_docs: o.batch_docs.max(1),
            scheduler: o.scheduler.clone(),
        }
    }
}

/// Batches between the generator and the selector: enough for the selector to find the next
/// batch ready, few enough to bound memory.
const IN_FLIGHT: usize = 2;

/// Starts the generator and selector threads. `output` is called on the selector thread with each
/// batch's payload and its results (one per item, in order), batches in input order. The threads
/// end when `input` is closed and drained. An error setting up the selector (its KV cache, its
/// instruction prefix) is returned here, before any work.
pub(crate) fn spawn<P, F>(
    models: Arc<Models>,
    opts: StageOptions,
    input: Receiver<Batch<P>>,
    output: F,
) -> Result<Vec<JoinHandle<()>>>
where
    P: Send + 'static,
    F: FnMut(P, Vec<Result<Tagged>>) + Send + 'static,
{
    let (mid_tx, mid_rx) = sync_channel::<Batch<P>>(IN_FLIGHT);
    let (ready_tx, ready_rx) = channel::<Result<()>>();
    let select = {
        let (models, opts) = (models.clone(), opts.clone());
        std::thread::Builder::new()
            .name("kpg-select".into())
            .spawn(move || select_worker(&models, &opts, mid_rx, output, ready_tx))
            .map_err(|e| KpgError::io("<thread>", e))?
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = select.join();
            return Err(e);
        }
        Err(_) => {
            let _ = select.join();
            return Err(KpgError::InvalidArgument(
                "the selector thread stopped while starting".into(),
            ));
        }
    }
    let generate = std::thread::Builder::new()
        .name("kpg-generate".into())
        .spawn(move || generate_worker(&models, &opts, input, mid_tx))
        .map_err(|e| KpgError::io("<thread>", e))?;
    Ok(vec![generate, select])
}

/// Blocks for one batch, then takes those already waiting while under `max_docs` documents.
fn gather<P>(input: &Receiver<Batch<P>>, max_docs: usize) -> Option<Vec<Batch<P>>> {
    let first = input.recv().ok()?;
    let mut docs = first.items.len();
    let mut out = vec![first];
    while docs < max_docs {
        match input.try_recv() {
            Ok(b) => {
                docs += b.items.len();
                out.push(b);
            }
            Err(_) => break,
        }
    }
    Some(out)
}

fn generate_worker<P>(
    models: &Models,
    opts: &StageOptions,
    input: Receiver<Batch<P>>,
    output: SyncSender<Batch<P>>,
) {
    let mut ws = GenerateWorkspace::default();
    while let Some(mut batches) = gather(&input, opts.batch_docs) {
        let mut items: Vec<&mut Item> = batches.iter_mut().flat_map(|b| &mut b.items).collect();
        for chunk in items.chunks_mut(opts.batch_docs) {
            generate_chunk(&models.generator, models.ranker.as_ref(), &mut ws, chunk);
        }
        for b in batches {
            if output.send(b).is_err() {
                return;
            }
        }
    }
}

/// Rejects what there is nothing to tag in.
pub(crate) fn check_document(d: &Document) -> Result<()> {
    crate::records::check_fields(&d.id, &d.title, &d.abstract_text)
}

/// Decodes one generator batch, then ranks each document's pool when there is a ranker. A
/// document longer than the generator's `max_source_len` is cut there for the generator (as `kpg
/// generate` does) and gets a warning; the extractor reads it whole.
fn generate_chunk(
    generator: &Generator,
    ranker: Option<&Ranker>,
    ws: &mut GenerateWorkspace,
    chunk: &mut [&mut Item],
) {
    let mut prepared: Vec<PreparedDocument> = Vec::with_capacity(chunk.len());
    let mut which = Vec::with_capacity(chunk.len());
    for (i, item) in chunk.iter_mut().enumerate() {
        let checked = match &item.doc {
            Ok(d) => check_document(d),
            Err(_) => continue,
        };
        if let Err(e) = checked {
            item.doc = Err(e);
            continue;
        }
        let d = item.doc.as_ref().expect("checked");
        let p = generator.prepare(&d.title, &d.abstract_text);
        let (read, total) = (p.source.ids.len(), p.stemmed.len());
        if total > read {
            item.warnings.push(format!(
                "truncated: the generator read the first {read} of {total} source tokens"
            ));
        }
        prepared.push(p);
        which.push(i);
    }
    let refs: Vec<&PreparedDocument> = prepared.iter().collect();
    match generator.generate(&refs, ws) {
        Ok(results) => {
            let present_codes = generator.model.config.num_present_codes;
            // Ranking is per document and independent: spread it over the cores.
            let mut work: Vec<(&mut Item, Vec<Candidate>)> = Vec::with_capacity(which.len());
            let mut results = results.into_iter();
            let mut which = which.iter().peekable();
            for (i, item) in chunk.iter_mut().enumerate() {
                if which.peek() == Some(&&i) {
                    which.next();
                    work.push((
                        &mut **item,
                        results.next().expect("one result per document"),
                    ));
                }
            }
            work.into_par_iter().for_each(|(item, candidates)| {
                item.candidates = match (ranker, &item.doc) {
                    (Some(r), Ok(d)) => {
                        let text = DocumentText::new(&d.title, &d.abstract_text);
                        if text.truncated {
                            item.warnings.push(format!(
                                "truncated: the ranker read the first {MAX_TOKENS} tokens"
                            ));
                        }
                        r.rank(&text, &candidates, present_codes)
                            .into_iter()
                            .map(|c| Proposed {
                                phrase: c.phrase,
                                score: c.probability,
                                present: c.present,
                                source: Some(c.source),
                                ranker_selected: Some(c.selected),
                            })
                            .collect()
                    }
                    _ => candidates
                        .into_iter()
                        .map(|c| Proposed {
                            phrase: c.phrase,
                            score: c.score,
                            present: c.present,
                            source: None,
                            ranker_selected: None,
                        })
                        .collect(),
                };
            });
        }
        Err(e) => {
            for &i in &which {
                chunk[i].doc = Err(KpgError::InvalidArgument(format!("generator: {e}")));
            }
        }
    }
}

fn select_worker<P, F>(
    models: &Models,
    opts: &StageOptions,
    input: Receiver<Batch<P>>,
    mut output: F,
    ready: Sender<Result<()>>,
) where
    F: FnMut(P, Vec<Result<Tagged>>),
{
    let cut = models.ranker.as_ref().map(|r| r.cut);
    let mut stage = match SelectStage::new(models.selector.as_ref(), cut, opts) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Some(batches) = gather(&input, opts.batch_docs) {
        let mut routes = Vec::with_capacity(batches.len());
        let mut items = Vec::new();
        for b in batches {
            routes.push((b.payload, b.items.len()));
            items.extend(b.items);
        }
        let mut results = stage.run(items).into_iter();
        for (payload, n) in routes {
            output(payload, results.by_ref().take(n).collect());
        }
    }
}

/// The selector over the paged KV cache, or the confidence threshold when there is no selector.
struct SelectStage<'m> {
    selector: Option<(&'m Selector, Scheduler<'m>)>,
    /// The selector's fusion with the ranker's cut, when it has one and there is a ranker.
    fusion: Option<(RankerFusion, CutOptions)>,
    opts: StageOptions,
}

/// What travels with a document through the scheduler.
struct Pending {
    index: usize,
    id: RecordId,
    candidates: Vec<Proposed>,
    order: Vec<usize>,
    warnings: Vec<String>,
}

impl<'m> SelectStage<'m> {
    fn new(
        selector: Option<&'m Selector>,
        cut: Option<CutOptions>,
        opts: &StageOptions,
    ) -> Result<Self> {
        let fusion = selector.and_then(|s| s.config.ranker_fusion).zip(cut);
        let selector = match selector {
            Some(s) => Some((s, Self::scheduler(s, opts)?)),
            None => None,
        };
        Ok(SelectStage {
            selector,
            fusion,
            opts: opts.clone(),
        })
    }

    fn scheduler(s: &'m Selector, opts: &StageOptions) -> Result<Scheduler<'m>> {
        Scheduler::new(
            &s.model,
            s.root_tokens(),
            s.scheduler_options(&opts.scheduler),
        )
    }

    fn run(&mut self, items: Vec<Item>) -> Vec<Result<Tagged>> {
        let threshold = self.opts.threshold;
        let Some((selector, scheduler)) = &mut self.selector else {
            return items
                .into_iter()
                .map(|it| by_threshold(it, threshold))
                .collect();
        };
        let selector: &Selector = selector;
        let share = self.opts.scheduler.share_prefix;
        let mut results: Vec<Option<Result<Tagged>>> = (0..items.len()).map(|_| None).collect();
        let mut work = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match item.doc {
                Err(e) => results[index] = Some(Err(e)),
                // Nothing to choose from: no need for the model.
                Ok(doc) if item.candidates.is_empty() => {
                    results[index] = Some(Ok(tagged(doc.id, Vec::new(), item.warnings)))
                }
                Ok(doc) => {
                    let mut pending = Pending {
                        index,
                        id: doc.id.clone(),
                        candidates: item.candidates,
                        order: Vec::new(),
                        warnings: item.warnings,
                    };
                    let group = selector_group(selector, doc, &mut pending, share)
                        .map(|g| answer_by_cut(g, &pending, self.fusion.as_ref()));
                    match group {
                        Ok(group) => work.push((pending, Ok(group))),
                        Err(e) => results[index] = Some(Err(e)),
                    }
                }
            }
        }
        let fusion = self.fusion;
        let outcome = scheduler.run(work, |p: Pending, decisions| {
            let index = p.index;
            results[index] = Some(decisions.map(|d| {
                let candidates = match fusion {
                    Some((f, cut)) => fused_candidates(&p, &d[0], f, &cut),
                    None => judged_candidates(&p, &d[0]),
                };
                tagged(p.id, candidates, p.warnings)
            }));
            Ok(())
        });
        if let Err(e) = outcome {
            // The scheduler's cache may hold blocks of the groups it dropped: start afresh.
            match Self::scheduler(selector, &self.opts) {
                Ok(s) => *scheduler = s,
                Err(e2) => eprintln!("kpg: selector could not restart: {e2}"),
            }
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(Err(KpgError::InvalidArgument(format!("selector: {e}"))));
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every document has a result"))
            .collect()
    }
}

/// The candidates the selector judged, in the order it saw them, kept by its labels.
fn judged_candidates(p: &Pending, d: &Decisions) -> Vec<TaggedCandidate> {
    p.order
        .iter()
        .enumerate()
        .map(|(k, &i)| p.candidates[i].tagged(d.selected[k], Some(d.p_true[k]), None))
        .collect()
}

/// The whole ranked pool, in the order of the fused probabilities, kept by the ranker's cut over
/// them; the candidates past the selector's `max_candidates` keep the ranker's probability.
fn fused_candidates(
    p: &Pending,
    d: &Decisions,
    fusion: RankerFusion,
    cut: &CutOptions,
) -> Vec<TaggedCandidate> {
    let mut p_true = vec![None; p.candidates.len()];
    for (k, &i) in p.order.iter().enumerate() {
        p_true[i] = Some(d.p_true[k]);
    }
    let pool: Vec<FusionInput> = p
        .candidates
        .iter()
        .zip(&p_true)
        .map(|(c, &p_true)| FusionInput {
            ranker: c.score,
            present: c.present,
            p_true,
        })
        .collect();
    fuse_and_cut(&pool, fusion.selector_weight, fusion.present_threshold, cut)
        .into_iter()
        .map(|(i, fused, kept)| p.candidates[i].tagged(kept, p_true[i], Some(fused)))
        .collect()
}

/// The selector's work for a document. A prompt longer than the selector's context is cut, words
/// off the end of the abstract, until it fits; the document then gets a warning.
fn selector_group(
    selector: &Selector,
    doc: Document,
    pending: &mut Pending,
    share: bool,
) -> Result<Group> {
    let mut sdoc = SelectDocument {
        id: doc.id,
        title: doc.title,
        abstract_: doc.abstract_text,
        candidates: pending
            .candidates
            .iter()
            .map(|c| SelectCandidate {
                phrase: c.phrase.clone(),
                score: c.score,
            })
            .collect(),
    };
    // A document far beyond the context is cut by bytes before anything is tokenised; the
    // words-based cut below then finds the exact fit.
    let most = selector
        .max_text_bytes(&sdoc, SelectMode::Sequence)
        .saturating_sub(sdoc.title.len());
    let total_words = sdoc.abstract_.split_whitespace().count();
    let cut_by_bytes = sdoc.abstract_.len() > most;
    if cut_by_bytes {
        let end = crate::preprocess::char_prefix(&sdoc.abstract_, most).len();
        sdoc.abstract_.truncate(end);
    }
    let limit = selector.model.config.max_position_embeddings;
    let root = selector.root_tokens().len();
    let (mut order, mut group) = selector.group(
        &sdoc,
        CandidateOrder::Confidence,
        SelectMode::Sequence,
        share,
    )?;
    let mut needed = scheduler_len(&group, root);
    let full = std::mem::take(&mut sdoc.abstract_);
    let words: Vec<&str> = full.split_whitespace().collect();
    let mut keep = words.len();
    while needed > limit {
        if keep == 0 {
            return Err(KpgError::ContextTooLong { needed, limit });
        }
        let scaled = (keep as f64 * limit as f64 / needed as f64 * 0.95) as usize;
        keep = scaled.min(keep - 1);
        sdoc.abstract_ = words[..keep].join(" ");
        (order, group) = selector.group(
            &sdoc,
            CandidateOrder::Confidence,
            SelectMode::Sequence,
            share,
        )?;
        needed = scheduler_len(&group, root);
    }
    if cut_by_bytes || keep < words.len() {
        pending.warnings.push(format!(
            "truncated: the selector's context of {limit} tokens held the first {keep} of \
             {total_words} abstract words"
        ));
    }
    pending.order = order;
    Ok(group)
}

/// With a fusion that answers by the cut, each label's rule: the cut's threshold for its kind over
/// the candidate's fused probability (the top-up comes after, in [`fused_candidates`]).
fn answer_by_cut(
    mut group: Group,
    pending: &Pending,
    fusion: Option<&(RankerFusion, CutOptions)>,
) -> Group {
    let Some((f, cut)) = fusion.filter(|(f, _)| f.answer_by_cut) else {
        return group;
    };
    let cut = cut.with_present_threshold(f.present_threshold);
    for member in &mut group.members {
        member.keep_rules = pending
            .order
            .iter()
            .map(|&i| {
                let c = &pending.candidates[i];
                KeepRule::Fused {
                    ranker: c.score,
                    weight: f.selector_weight,
                    threshold: cut.threshold(c.present),
                }
            })
            .collect();
    }
    group
}

/// Without a selector: the ranker's keyphrases, or without a ranker the generator's candidates at
/// or above the confidence threshold.
fn by_threshold(item: Item, threshold: f64) -> Result<Tagged> {
    let doc = item.doc?;
    let candidates = item
        .candidates
        .iter()
        .map(|c| {
            c.tagged(
                c.ranker_selected.unwrap_or(c.score >= threshold),
                None,
                None,
            )
        })
        .collect();
    Ok(tagged(doc.id, candidates, item.warnings))
}

fn tagged(id: RecordId, candidates: Vec<TaggedCandidate>, warnings: Vec<String>) -> Tagged {
    let pick = |f: &dyn Fn(&TaggedCandidate) -> bool| -> Vec<String> {
        candidates
            .iter()
            .filter(|c| c.selected && f(c))
            .map(|c| c.phrase.clone())
            .collect()
    };
    Tagged {
        keyphrases: pick(&|_| true),
        present: pick(&|c| c.present),
        absent: pick(&|c| !c.present),
        id,
        candidates,
        warnings,
    }
}
