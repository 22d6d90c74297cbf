//! The whole of kpg behind one handle: documents in, keyphrases out, generator then selector, in the
//! generate-then-select style of "One2Set + Large Language Model: Best Partners for Keyphrase
//! Generation" (EMNLP 2024).
//!
//! A [`Pipeline`] loads its models once and is then shared: it is `Send + Sync`, and
//! [`Pipeline::tag`] may be called from many threads at once. Calls are not run one by one: a
//! generator thread takes every request that is waiting (up to `batch_docs` documents) and decodes
//! them in one batch; a selector thread does the same with what the generator hands it, so that
//! the two stages overlap and concurrent callers share forward passes. `kpg tag` runs the same two
//! stages over a JSON-lines corpus ([`stages`]).
//!
//! With a ranker ([`crate::rank`]), the candidates are a pool of the generator's phrases and the
//! extractor's, ranked by gradient-boosted trees, and without a selector the keyphrases are the
//! ranker's cut of it. Without a ranker the candidates are the generator's, and without a selector
//! the keyphrases are those whose confidence is at least [`PipelineOptions::threshold`]
//! ([`DEFAULT_THRESHOLD`]).
//!
//! ```
//! use kpg::{Document, Pipeline, PipelineOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let generator_dir = dir.path().join("generator");
//! # let config = kpg::synth::one2set::one2set_preset("tiny")?;
//! # kpg::synth::one2set::synth_one2set(&config, kpg::model::weights::DType::F32, 0, None, &generator_dir)?;
//! // A generator directory (here a random-weight one from `kpg synth`); no selector.
//! let pipeline = Pipeline::load(&generator_dir, None, None, PipelineOptions::default())?;
//! let docs = [Document::new(
//!     "doc-1",
//!     "Optimal transport for keyphrase generation",
//!     "We assign keyphrase targets to control codes with optimal transport.",
//! )];
//! for tagged in pipeline.tag(&docs) {
//!     let tagged = tagged?;
//!     assert_eq!(tagged.id, "doc-1");
//!     // Every keyphrase is either present in the text or absent from it.
//!     assert_eq!(tagged.keyphrases.len(), tagged.present.len() + tagged.absent.len());
//! }
//! # Ok(()) }
//! ```

pub mod stages;

use std::path::Path;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;

use crate::error::{KpgError, Result};
use crate::one2set::Generator;
use crate::rank::Ranker;
pub use crate::records::RecordId;
use crate::select::scheduler::SchedulerOptions;
use crate::select::Selector;
use stages::{Batch, Models};

/// Generator confidence at or above which a candidate is a keyphrase when there is no selector.
/// A One2Set confidence is the mean probability of the phrase's tokens. Calibrated on the default
/// generator with `tools/calibrate_threshold.py` over the KP20k validation sample: F1@M is flat
/// from 0 to 0.1 (present 0.141, absent 0.010) and falls after (0.3: 0.084, 0.005), since a
/// trained generator already leaves most slots empty (`<null>`); 0.05 drops only the unlikeliest.
pub const DEFAULT_THRESHOLD: f64 = 0.05;

/// A document to tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// A string or a number (see [`RecordId`]); `Document::new` takes a string.
    pub id: RecordId,
    pub title: String,
    pub abstract_text: String,
}

impl Document {
    pub fn new(
        id: impl Into<RecordId>,
        title: impl Into<String>,
        abstract_text: impl Into<String>,
    ) -> Self {
        Document {
            id: id.into(),
            title: title.into(),
            abstract_text: abstract_text.into(),
        }
    }
}

/// One candidate of a tagged document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaggedCandidate {
    pub phrase: String,
    /// The ranker's P(keyphrase), or without a ranker the generator's confidence.
    pub score: f64,
    /// Whether the phrase occurs in the title or abstract (Porter-stemmed match).
    pub present: bool,
    /// Which stage proposed it (`extractor`, `generator` or `both`), when a ranker built the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::rank::candidate::Source>,
    /// Whether it is one of the document's keyphrases.
    pub selected: bool,
    /// The selector's probability of the true label; absent without a selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_true: Option<f32>,
    /// The probability the ranker's cut kept or dropped it by: `score` moved by `p_true`, with a
    /// selector that has `ranker_fusion` (`rank::fusion`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<f64>,
}

/// A tagged document: `kpg tag`'s output line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tagged {
    pub id: RecordId,
    /// The selected candidates, most confident first.
    pub keyphrases: Vec<String>,
    /// The keyphrases that occur in the text.
    pub present: Vec<String>,
    /// The keyphrases that do not.
    pub absent: Vec<String>,
    /// Every candidate, in the order the selector saw them (most confident first).
    pub candidates: Vec<TaggedCandidate>,
    /// What was done to the document to run it, such as a cut to the models' length.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// How a [`Pipeline`] runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Without a selector: the generator confidence a candidate needs to be a keyphrase.
    pub threshold: f64,
    /// Most documents the generator decodes together (and the selector takes at once).
    pub batch_docs: usize,
    /// The selector's KV cache and batching limits.
    pub scheduler: SchedulerOptions,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            threshold: DEFAULT_THRESHOLD,
            batch_docs: 32,
            scheduler: SchedulerOptions::default(),
        }
    }
}

/// What a caller waits on: the results of its documents, in order.
type Reply = Sender<Vec<Result<Tagged>>>;

/// Generator and selector loaded once, run by two worker threads; see the [module docs](self).
///
/// Several threads may tag at once; their documents are batched together:
///
/// ```
/// use kpg::{Document, Pipeline, PipelineOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let config = kpg::synth::one2set::one2set_preset("tiny")?;
/// # kpg::synth::one2set::synth_one2set(&config, kpg::model::weights::DType::F32, 0, None, dir.path())?;
/// let pipeline = Pipeline::load(dir.path(), None, None, PipelineOptions::default())?;
/// std::thread::scope(|s| {
///     for t in 0..4 {
///         let pipeline = &pipeline;
///         s.spawn(move || {
///             let doc = Document::new(format!("t{t}"), "Graph neural networks", "Message passing on graphs.");
///             let tagged = pipeline.tag(&[doc]).pop().unwrap().unwrap();
///             assert_eq!(tagged.id, format!("t{t}"));
///         });
///     }
/// });
/// # Ok(()) }
/// ```
pub struct Pipeline {
    requests: Option<Sender<Batch<Reply>>>,
    workers: Vec<JoinHandle<()>>,
    models: Arc<Models>,
}

impl Pipeline {
    /// Loads a generator directory and, optionally, a ranker directory (`models/ranker`: the
    /// extractor's tables and the trees that rank the merged pool) and a selector directory.
    pub fn load(
        generator: &Path,
        ranker: Option<&Path>,
        selector: Option<&Path>,
        opts: PipelineOptions,
    ) -> Result<Self> {
        let generator = Generator::load(generator)?;
        let ranker = ranker.map(Ranker::load).transpose()?;
        let selector = selector.map(Selector::load).transpose()?;
        Self::new(generator, ranker, selector, opts)
    }

    /// Starts the worker threads over models already loaded.
    pub fn new(
        generator: Generator,
        ranker: Option<Ranker>,
        selector: Option<Selector>,
        opts: PipelineOptions,
    ) -> Result<Self> {
        let models = Arc::new(Models {
            generator,
            ranker,
            selector,
        });
        let (tx, rx) = channel::<Batch<Reply>>();
        let workers = stages::spawn(
            models.clone(),
            stages::StageOptions::from(&opts),
            rx,
            |reply: Reply, results| {
                // A caller that went away does not stop the others.
                let _ = reply.send(results);
            },
        )?;
        Ok(Pipeline {
            requests: Some(tx),
            workers,
            models,
        })
    }

    /// Tags documents: one result per document, in order. A document that cannot be run (an empty
    /// one, or one the models fail on) gets an error in its place; the others go on. Blocks until
    /// its documents are done; other threads' calls are batched with it.
    pub fn tag(&self, docs: &[Document]) -> Vec<Result<Tagged>> {
        if docs.is_empty() {
            return Vec::new();
        }
        let (reply, answer) = channel();
        let batch = Batch {
            payload: reply,
            items: docs.iter().cloned().map(stages::Item::new).collect(),
        };
        let sent = self.requests.as_ref().map(|r| r.send(batch).is_ok());
        match (sent, answer.recv()) {
            (Some(true), Ok(results)) => results,
            _ => docs
                .iter()
                .map(|_| {
                    Err(KpgError::InvalidArgument(
                        "the pipeline's workers stopped".into(),
                    ))
                })
                .collect(),
        }
    }

    /// The generator.
    pub fn generator(&self) -> &Generator {
        &self.models.generator
    }

    /// The selector, when there is one.
    pub fn selector(&self) -> Option<&Selector> {
        self.models.selector.as_ref()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Closing the queue lets the workers finish what they hold and return.
        self.requests.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pipeline>();
    }
}
