//! The One2Set generator end to end: a directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`) loaded once, then documents in, ranked candidate keyphrases out.
//!
//! - [`vocab`]: the word vocabulary and its `tokenizer.json` (`kpg vocab`);
//! - [`source`]: a document's source ids, with the extended vocabulary of the copy mechanism;
//! - [`decode`]: parallel control-code decoding, greedy, all slots of a batch together;
//! - [`candidates`]: slots to phrases, confidences, deduplication, order, present/absent;
//! - [`document`] and [`run`]: the JSON lines of `kpg generate`, streamed in batches.
//!
//! The model itself is [`crate::model::one2set`]. A [`Generator`] is immutable after loading and
//! can be shared between threads, each with its own [`GenerateWorkspace`].

pub mod batch_layout;
pub mod candidates;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decode;
pub mod document;
pub mod run;
pub mod source;
pub mod vocab;
pub mod workload;

use std::path::Path;

use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::model::one2set::{One2Set, One2SetWorkspace};
use crate::preprocess::{char_prefix, source_tokens};
use crate::rank::extract::MAX_FIELD_BYTES;
use candidates::{document_candidates, stem_all, Candidate};
use decode::{decode_batch, DecodeScratch, SlotOutput};
use source::SourceIds;
use vocab::Vocab;

/// A loaded generator: the model and its vocabulary.
pub struct Generator {
    pub model: One2Set,
    pub vocab: Vocab,
}

/// A document prepared for generation: its source ids and its stemmed source.
#[derive(Debug, Clone)]
pub struct PreparedDocument {
    pub source: SourceIds,
    /// Every source token (uncut) stemmed, for the present/absent tag.
    pub stemmed: Vec<String>,
}

/// Scratch space for [`Generator::generate`], one per thread; with the GPU decoder in it
/// ([`GenerateWorkspace::for_device`]), the slots are decoded on the GPU.
#[derive(Default)]
pub struct GenerateWorkspace {
    model: One2SetWorkspace,
    decode: DecodeScratch,
    #[cfg(feature = "cuda")]
    cuda: Option<cuda::decode::CudaDecoder>,
}

impl GenerateWorkspace {
    /// A workspace that decodes on `device` (GPU `gpu` for CUDA, whose weights it uploads once).
    /// In a build without CUDA, asking for it is the error of [`DeviceKind::require_built`].
    pub fn for_device(generator: &Generator, device: DeviceKind, gpu: usize) -> Result<Self> {
        match device.require_built()? {
            DeviceKind::Cpu => Ok(Self::default()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => {
                let dev = crate::backend::cuda::CudaDevice::new(gpu)?;
                Ok(GenerateWorkspace {
                    cuda: Some(cuda::decode::CudaDecoder::new(dev, &generator.model)?),
                    ..Self::default()
                })
            }
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda => {
                let _ = (generator, gpu);
                unreachable!("require_built refuses cuda in a build without the feature")
            }
        }
    }

    /// Slot steps the last batch ran (a slot stops after `<eos>` or `<null>`).
    pub fn slot_steps(&self) -> usize {
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.cuda {
            return c.slot_steps();
        }
        self.decode.slot_steps()
    }
}

impl Generator {
    /// Loads a generator directory; the vocabulary must cover the model's `vocab_size`.
    pub fn load(dir: &Path) -> Result<Self> {
        let model = One2Set::load(dir)?;
        let path = vocab::tokenizer_path(dir);
        let vocab = Vocab::load(&path)?;
        if vocab.len() < model.config.vocab_size {
            return Err(KpgError::Tokenizer {
                path,
                reason: format!(
                    "holds {} words, fewer than the model's vocab_size = {}",
                    vocab.len(),
                    model.config.vocab_size
                ),
            });
        }
        Ok(Generator { model, vocab })
    }

    /// Preprocesses a title and an abstract (`title . <eos> abstract`).
    /// A huge field is cut by bytes before it is split into words (the encoder reads
    /// `max_source_len` tokens, presence looks as far as the ranker does), so that memory is
    /// bounded by the model and not by the input.
    pub fn prepare(&self, title: &str, abstract_text: &str) -> PreparedDocument {
        let most = MAX_FIELD_BYTES.max(self.model.config.max_source_len.saturating_mul(32));
        self.prepare_tokens(&source_tokens(
            char_prefix(title, most),
            char_prefix(abstract_text, most),
        ))
    }

    /// Prepares an already tokenised source.
    pub fn prepare_tokens(&self, tokens: &[String]) -> PreparedDocument {
        let c = &self.model.config;
        PreparedDocument {
            source: SourceIds::new(tokens, &self.vocab, c.vocab_size, c.max_source_len),
            stemmed: stem_all(tokens),
        }
    }

    /// Every slot's raw output, `out[doc][code]` (what the golden tests compare).
    pub fn decode(
        &self,
        docs: &[&PreparedDocument],
        ws: &mut GenerateWorkspace,
    ) -> Result<Vec<Vec<SlotOutput>>> {
        let sources: Vec<&SourceIds> = docs.iter().map(|d| &d.source).collect();
        #[cfg(feature = "cuda")]
        if let Some(c) = ws.cuda.as_mut() {
            return c.decode_batch(&sources);
        }
        decode_batch(&self.model, &mut ws.model, &mut ws.decode, &sources)
    }

    /// The ranked candidates of every document, all decoded in one batch.
    pub fn generate(
        &self,
        docs: &[&PreparedDocument],
        ws: &mut GenerateWorkspace,
    ) -> Result<Vec<Vec<Candidate>>> {
        let slots = self.decode(docs, ws)?;
        let vocab_size = self.model.config.vocab_size;
        Ok(docs
            .iter()
            .zip(&slots)
            .map(|(d, s)| document_candidates(s, &self.vocab, vocab_size, &d.source, &d.stemmed))
            .collect())
    }
}
