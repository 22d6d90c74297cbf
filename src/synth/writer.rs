//! Writes safetensors files tensor by tensor, so that a model larger than memory can be produced:
//! the header (names, dtypes, shapes, offsets) is computed from shapes alone, then each tensor's
//! values are generated in chunks and streamed to disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{KpgError, Result};
use crate::model::weights::DType;

/// A tensor to write: its name and shape (all tensors of a file share one dtype).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Writes `tensors` to `path`; `fill(index, chunk_start, out)` provides the bytes of tensor
/// `index` starting at element `chunk_start`, `out.len() / dtype.size()` elements at a time.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorSpec],
    dtype: DType,
    mut fill: impl FnMut(usize, usize, &mut Vec<u8>),
) -> Result<()> {
    let io = |e| KpgError::io(path, e);
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for t in tensors {
        let bytes = t.numel() * dtype.size();
        header.insert(
            t.name.clone(),
            json!({"dtype": dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("JSON of plain values");
    // The data section starts 8-byte aligned, as the reference writer pads it.
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&header).map_err(io)?;
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(CHUNK * 4);
    for (i, t) in tensors.iter().enumerate() {
        let n = t.numel();
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            buf.clear();
            fill(i, start, &mut buf);
            if buf.len() != len * dtype.size() {
                return Err(KpgError::InvalidArgument(format!(
                    "writer for `{}` produced {} bytes, expected {}",
                    t.name,
                    buf.len(),
                    len * dtype.size()
                )));
            }
            out.write_all(&buf).map_err(io)?;
            start += len;
        }
    }
    out.flush().map_err(io)?;
    Ok(())
}

/// Splits tensors into shards of at most `max_bytes` (a tensor larger than that gets its own).
pub fn plan_shards(tensors: &[TensorSpec], dtype: DType, max_bytes: usize) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = t.numel() * dtype.size();
        if size > 0 && size + bytes > max_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().unwrap().push(i);
        size += bytes;
    }
    shards
}

/// Shard file names as transformers writes them.
pub fn shard_name(index: usize, count: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", index + 1, count)
}

/// Writes `model.safetensors.index.json` for the given shard plan.
pub fn write_index(
    dir: &Path,
    tensors: &[TensorSpec],
    dtype: DType,
    shards: &[Vec<usize>],
) -> Result<PathBuf> {
    let mut map = Map::new();
    for (s, members) in shards.iter().enumerate() {
        for &i in members {
            map.insert(tensors[i].name.clone(), shard_name(s, shards.len()).into());
        }
    }
    let total: usize = tensors.iter().map(|t| t.numel() * dtype.size()).sum();
    let index = json!({"metadata": {"total_size": total}, "weight_map": map});
    let path = dir.join("model.safetensors.index.json");
    std::fs::write(&path, serde_json::to_string_pretty(&index).unwrap())
        .map_err(|e| KpgError::io(&path, e))?;
    Ok(path)
}
