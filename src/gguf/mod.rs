//! GGUF files, llama.cpp's model format: the container (memory-mapped, every field checked), the
//! block formats dequantized to f32, a llama model's config, weights (kept in their blocks for
//! `backend::cpu::quant`, or dequantized) and tokenizer (byte-level BPE or SentencePiece) from the
//! file alone.

pub mod dequant;
pub mod header;
pub mod llama;
pub mod tokenizer;
pub mod types;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{KpgError, Result};
use header::Header;

/// A GGUF file mapped, with its header read.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: Header,
    _range: crate::model::mapped::MappedRange,
    map: Mmap,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| KpgError::io(path, e))?;
        // SAFETY: read-only map of a model file; a file cut under the run is named by MappedRange.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| KpgError::io(path, e))?;
        let range = crate::model::mapped::MappedRange::register(&map, path);
        let header = header::parse(&map).map_err(|reason| KpgError::Gguf {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            header,
            _range: range,
            map,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// Whether `path` is a GGUF file (by its magic, whatever its name).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}
