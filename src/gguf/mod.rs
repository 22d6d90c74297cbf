//! GGUF files, llama.cpp's model format: the container is read here (memory-mapped, every field
//! checked); running GGUF weights is the subject of the real-checkpoints work and not yet done, so
//! a GGUF given where a model directory is expected says so instead of "config.json not found".

pub mod dequant;
pub mod header;
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
    _map: Mmap,
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
            _map: map,
        })
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

/// The error for a GGUF file given where kpg needs a Hugging Face directory: what the file is,
/// and what to do meanwhile.
pub fn not_yet_supported(path: &Path) -> KpgError {
    let reason = match GgufFile::open(path) {
        Err(e) => return e,
        Ok(f) => {
            let mut types: Vec<String> = Vec::new();
            for t in &f.header.tensors {
                let name = t.ggml_type.to_string();
                if !types.contains(&name) {
                    types.push(name);
                }
            }
            format!(
                "a {} model with {} tensors ({}); kpg does not run GGUF weights yet: convert it \
                 to a Hugging Face directory (transformers: \
                 AutoModelForCausalLM.from_pretrained(dir, gguf_file=...).save_pretrained(out)) \
                 and pass that directory",
                f.header.architecture().unwrap_or("(unnamed)"),
                f.header.tensors.len(),
                types.join(", ")
            )
        }
    };
    KpgError::Gguf {
        path: path.to_path_buf(),
        reason,
    }
}
