//! `tokenizer.json` through Hugging Face's tokenizers crate.

use std::path::{Path, PathBuf};

use crate::error::{KpgError, Result};

/// Token ids and, per token, the byte range of the input it covers.
pub type IdsWithOffsets = (Vec<u32>, Vec<(usize, usize)>);

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            if !path.exists() {
                KpgError::MissingFile {
                    path: path.to_path_buf(),
                }
            } else {
                KpgError::Tokenizer {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            }
        })?;
        Ok(Tokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// A tokenizer from `tokenizer.json` text made in memory (a GGUF file's, rebuilt from its
    /// metadata); `source` names where it came from in errors.
    pub fn from_json(json: &str, source: &Path) -> Result<Self> {
        let inner: tokenizers::Tokenizer =
            json.parse()
                .map_err(|e: tokenizers::Error| KpgError::Tokenizer {
                    path: source.to_path_buf(),
                    reason: e.to_string(),
                })?;
        Ok(Tokenizer {
            inner,
            path: source.to_path_buf(),
        })
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids with the byte range of the input each token covers (empty for added special
    /// tokens such as BOS).
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<IdsWithOffsets> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(e))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err(e))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Bytes of the longest entry of the vocabulary (added tokens included): no token covers more
    /// of a text, so a text of `n` bytes is at least `n / longest` tokens.
    pub fn longest_token_bytes(&self) -> usize {
        self.inner
            .get_vocab(true)
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    fn err(&self, e: impl std::fmt::Display) -> KpgError {
        KpgError::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}
