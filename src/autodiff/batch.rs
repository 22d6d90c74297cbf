//! A teacher-forced training batch: documents packed without padding, and every slot's decoder
//! inputs for `steps` steps.

use crate::error::{KpgError, Result};
use crate::model::one2set_config::One2SetConfig;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainBatch {
    /// In-vocabulary source ids of all documents, one after another (an OOV word is `<unk>`).
    pub src: Vec<u32>, // [tokens]
    pub doc_lens: Vec<usize>, // [docs]
    /// Extended ids of the same tokens: an OOV word is `vocab_size + k`, k its index in its
    /// document's OOV list.
    pub src_ext: Vec<u32>, // [tokens]
    pub num_oov: Vec<usize>,  // [docs]
    /// In-vocabulary decoder inputs of every slot: `<bos>`, then the target shifted right (OOV
    /// words as `<unk>`).
    pub dec_in: Vec<u32>, // [docs, N, steps]
    pub steps: usize,
}

impl TrainBatch {
    pub fn num_docs(&self) -> usize {
        self.doc_lens.len()
    }

    pub fn num_tokens(&self) -> usize {
        self.src.len()
    }

    /// Decoder rows `(doc, slot, step)`, in that order.
    pub fn num_rows(&self, config: &One2SetConfig) -> usize {
        self.num_docs() * config.num_control_codes * self.steps
    }

    fn err(&self, expected: String, got: String) -> KpgError {
        KpgError::Shape {
            op: "TrainBatch",
            expected,
            got,
        }
    }

    /// Checks every length and id against the config.
    pub fn validate(&self, c: &One2SetConfig) -> Result<()> {
        let tokens = self.src.len();
        if self.doc_lens.iter().sum::<usize>() != tokens || self.src_ext.len() != tokens {
            return Err(self.err(
                format!(
                    "src, src_ext of Σ doc_lens = {} tokens",
                    self.doc_lens.iter().sum::<usize>()
                ),
                format!("{tokens}, {}", self.src_ext.len()),
            ));
        }
        if let Some(&n) = self
            .doc_lens
            .iter()
            .find(|&&n| n == 0 || n > c.max_source_len)
        {
            return Err(self.err(
                format!("documents of 1..={} tokens", c.max_source_len),
                n.to_string(),
            ));
        }
        if self.num_oov.len() != self.num_docs() {
            return Err(self.err(
                format!("{} num_oov", self.num_docs()),
                self.num_oov.len().to_string(),
            ));
        }
        if self.steps == 0 || self.steps > c.max_keyphrase_len {
            return Err(self.err(
                format!("1..={} steps", c.max_keyphrase_len),
                self.steps.to_string(),
            ));
        }
        let rows = self.num_rows(c);
        if self.dec_in.len() != rows {
            return Err(self.err(
                format!("{rows} decoder inputs"),
                self.dec_in.len().to_string(),
            ));
        }
        let v = c.vocab_size;
        if let Some(&id) = self
            .src
            .iter()
            .chain(&self.dec_in)
            .find(|&&id| id as usize >= v)
        {
            return Err(KpgError::TokenOutOfRange { id, vocab_size: v });
        }
        let mut at = 0;
        for (&n, &oov) in self.doc_lens.iter().zip(&self.num_oov) {
            if let Some(&id) = self.src_ext[at..at + n]
                .iter()
                .find(|&&id| id as usize >= v + oov)
            {
                return Err(KpgError::TokenOutOfRange {
                    id,
                    vocab_size: v + oov,
                });
            }
            at += n;
        }
        Ok(())
    }
}
