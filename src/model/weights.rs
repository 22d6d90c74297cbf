//! Memory-mapped safetensors weights: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Only headers are parsed at load time; tensor bytes stay in the
//! page cache and are read in place, so loading a 7B checkpoint costs a few page faults, not 13 GB
//! of copies.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::mapped::MappedRange;
use serde_json::Value;

use crate::error::{KpgError, Result};
use crate::gguf::types::GgmlType;
use crate::gguf::GgufFile;
use crate::model::config::read_json;

/// Storage dtypes kpg reads; compute is f32 on the CPU backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// A ggml block format, as a GGUF file stores it (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
    /// Q6_K): a row is whole blocks of 32 or 256 elements, each with its own scale.
    Quant(GgmlType),
}

impl DType {
    /// Bytes per element of a float dtype. A block format has none: use [`DType::row_bytes`].
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Quant(t) => panic!("{t} stores blocks, not elements: use DType::row_bytes"),
        }
    }

    /// Bytes of `cols` consecutive elements from a block boundary (a row, for a block format
    /// whose rows are whole blocks, as GGUF requires).
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            DType::Quant(t) => {
                let (per_block, block_bytes) = t.block();
                cols / per_block as usize * block_bytes as usize
            }
            float => cols * float.size(),
        }
    }

    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Quant(_))
    }

    /// The name used in safetensors headers (float dtypes only: kpg writes no quantized
    /// safetensors).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Quant(t) => panic!("{t} has no safetensors name"),
        }
    }

    /// The name `config.json`'s `torch_dtype` uses (float dtypes only).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::Quant(t) => panic!("{t} has no torch dtype"),
        }
    }

    pub fn parse(name: &str) -> Option<DType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DType::Quant(t) => write!(f, "{t}"),
            float => f.write_str(float.safetensors_name()),
        }
    }
}

/// The index of the first NaN or infinity in little-endian `bytes` of `dtype`: all exponent bits
/// set, whatever the mantissa.
fn first_non_finite(dtype: DType, bytes: &[u8]) -> Option<usize> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).position(|b| {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000
        }),
        DType::F16 => bytes
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00),
        DType::BF16 => bytes
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
        // A block's scales are f16: a NaN or infinite scale, or one that overflows in a product,
        // shows in the dequantized values. A chunk of blocks at a time, so the scan needs no
        // buffer the size of the tensor.
        DType::Quant(t) => {
            let (per_block, block_bytes) = t.block();
            let (per_block, block_bytes) = (per_block as usize, block_bytes as usize);
            let mut values = vec![0f32; per_block * 256];
            for (c, chunk) in bytes.chunks(block_bytes * 256).enumerate() {
                let values = &mut values[..chunk.len() / block_bytes * per_block];
                crate::gguf::dequant::dequantize(t, chunk, values).ok()?;
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Some(c * per_block * 256 + i);
                }
            }
            None
        }
    }
}

/// Where a tensor's bytes are: which shard, and the byte range inside the shard's memory map.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub name: String,
    pub shard: usize,
    pub start: usize,
    pub end: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor's bytes with their dtype and shape, borrowed from the memory map.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl WeightView<'_> {
    /// Rows and columns of a 2-D tensor (a 1-D tensor is one row).
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => (self.shape[0], self.shape[1..].iter().product()),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of one row (see [`DType::row_bytes`]).
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.rows_cols().1)
    }
}

struct Shard {
    path: PathBuf,
    data: ShardData,
}

/// Where a shard's bytes live.
enum ShardData {
    /// A safetensors file, mapped; the range names the file if it is cut under the run (declared
    /// first: dropped before the map).
    Mapped { _range: MappedRange, map: Mmap },
    /// Tensors made at load (a GGUF file's, dequantized to f32 under `--gguf-weights f32`):
    /// owned, f32-aligned.
    Owned(Vec<f32>),
    /// A GGUF file, mapped (its own `MappedRange` names it if it is cut under the run).
    Gguf(Arc<GgufFile>),
    /// Bytes made at load (a GGUF file's q and k rows, reordered): blocks, any alignment.
    OwnedBytes(Vec<u8>),
}

impl ShardData {
    fn bytes(&self) -> &[u8] {
        match self {
            ShardData::Mapped { map, .. } => map,
            ShardData::Owned(v) => bytemuck::cast_slice(v),
            ShardData::Gguf(file) => file.bytes(),
            ShardData::OwnedBytes(v) => v,
        }
    }
}

/// All safetensors files of a model directory, mapped, with an index of every tensor.
pub struct WeightFiles {
    dir: PathBuf,
    shards: Vec<Shard>,
    tensors: HashMap<String, TensorRef>,
}

impl WeightFiles {
    /// Opens `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut files = WeightFiles {
            dir: dir.to_path_buf(),
            shards: Vec::new(),
            tensors: HashMap::new(),
        };
        if index.exists() {
            files.open_sharded(&index)?;
        } else if single.exists() {
            files.add_shard(&single, None)?;
        } else {
            return Err(KpgError::MissingFile { path: single });
        }
        Ok(files)
    }

    fn open_sharded(&mut self, index: &Path) -> Result<()> {
        let json = read_json(index)?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| KpgError::config(index, "weight_map", "missing or not an object"))?;
        // Which tensors each shard should hold, so a shard that lacks one is caught at load.
        let mut by_shard: Vec<(String, Vec<String>)> = Vec::new();
        for (tensor, shard) in map {
            let shard = shard.as_str().ok_or_else(|| {
                KpgError::config(
                    index,
                    &format!("weight_map.{tensor}"),
                    "must be a file name",
                )
            })?;
            match by_shard.iter_mut().find(|(s, _)| s == shard) {
                Some((_, names)) => names.push(tensor.clone()),
                None => by_shard.push((shard.to_string(), vec![tensor.clone()])),
            }
        }
        by_shard.sort();
        for (shard, names) in by_shard {
            let path = self.dir.join(&shard);
            if !path.exists() {
                return Err(KpgError::MissingShard {
                    index: index.to_path_buf(),
                    shard,
                    tensor: names[0].clone(),
                });
            }
            self.add_shard(&path, Some(&names))?;
        }
        Ok(())
    }

    /// Maps one file and records its tensors; with `expected`, only those names are taken from it.
    fn add_shard(&mut self, path: &Path, expected: Option<&[String]>) -> Result<()> {
        let file = File::open(path).map_err(|e| KpgError::io(path, e))?;
        // SAFETY: the map is read-only and kpg never writes model files while serving them; a file
        // truncated under us by another process faults, and `MappedRange` turns that fault into
        // an error line naming the file.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| KpgError::io(path, e))?;
        let range = MappedRange::register(&map, path);
        let corrupt = |reason: String| KpgError::SafeTensors {
            path: path.to_path_buf(),
            reason,
        };
        let (header_len, metadata) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
                use safetensors::SafeTensorError as E;
                corrupt(match e {
                    E::MetadataIncompleteBuffer => format!(
                        "truncated: the header describes more tensor data than the file's {} bytes",
                        map.len()
                    ),
                    E::HeaderTooSmall | E::HeaderTooLarge | E::InvalidHeaderLength => format!(
                        "the header length is impossible for a file of {} bytes",
                        map.len()
                    ),
                    other => other.to_string(),
                })
            })?;
        let data_start = 8 + header_len;
        let shard_idx = self.shards.len();
        for (name, info) in metadata.tensors() {
            if let Some(names) = expected {
                if !names.iter().any(|n| n == &name) {
                    continue;
                }
            }
            let dtype = match info.dtype {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                other => {
                    return Err(KpgError::UnsupportedDtype {
                        name,
                        path: path.to_path_buf(),
                        dtype: format!("{other:?}"),
                    })
                }
            };
            let (start, end) = info.data_offsets;
            let numel: usize = info.shape.iter().product();
            if end - start != numel * dtype.size() {
                return Err(corrupt(format!(
                    "tensor `{name}` holds {} bytes for shape {:?}",
                    end - start,
                    info.shape
                )));
            }
            self.tensors.insert(
                name.clone(),
                TensorRef {
                    name,
                    shard: shard_idx,
                    start: data_start + start,
                    end: data_start + end,
                    dtype,
                    shape: info.shape.clone(),
                },
            );
        }
        if let Some(names) = expected {
            if let Some(missing) = names.iter().find(|n| !self.tensors.contains_key(*n)) {
                return Err(KpgError::MissingTensor {
                    name: missing.clone(),
                    path: path.to_path_buf(),
                });
            }
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            data: ShardData::Mapped { _range: range, map },
        });
        Ok(())
    }

    /// Weights made in memory, all f32, in one buffer: `tensors` are (name, shape, start in
    /// elements of `data`). `source` is the file they came from, for error messages.
    pub fn from_f32(
        source: &Path,
        data: Vec<f32>,
        tensors: Vec<(String, Vec<usize>, usize)>,
    ) -> WeightFiles {
        let mut index = HashMap::with_capacity(tensors.len());
        for (name, shape, start) in tensors {
            let n: usize = shape.iter().product();
            index.insert(
                name.clone(),
                TensorRef {
                    name,
                    shard: 0,
                    start: start * 4,
                    end: (start + n) * 4,
                    dtype: DType::F32,
                    shape,
                },
            );
        }
        WeightFiles {
            dir: source.parent().unwrap_or(Path::new(".")).to_path_buf(),
            shards: vec![Shard {
                path: source.to_path_buf(),
                data: ShardData::Owned(data),
            }],
            tensors: index,
        }
    }

    /// A GGUF file's tensors: `tensors` with shard 0 in the file's map and shard 1 in `owned`.
    pub fn from_gguf(file: Arc<GgufFile>, owned: Vec<u8>, tensors: Vec<TensorRef>) -> WeightFiles {
        let path = file.path.clone();
        WeightFiles {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            shards: vec![
                Shard {
                    path: path.clone(),
                    data: ShardData::Gguf(file),
                },
                Shard {
                    path,
                    data: ShardData::OwnedBytes(owned),
                },
            ],
            tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
        }
    }

    /// One safetensors file of any name (a LoRA adapter's), mapped.
    pub fn open_file(path: &Path) -> Result<Self> {
        let mut files = WeightFiles {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            shards: Vec::new(),
            tensors: HashMap::new(),
        };
        files.add_shard(path, None)?;
        Ok(files)
    }

    /// Every tensor's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    /// The tensor `name`, whatever its shape.
    pub fn tensor(&self, name: &str) -> Result<TensorRef> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| KpgError::MissingTensor {
                name: name.to_string(),
                path: self.describe_location(),
            })
    }

    /// The tensor `name`, checked against the shape the model expects.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<TensorRef> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| KpgError::MissingTensor {
                name: name.to_string(),
                path: self.describe_location(),
            })?;
        if t.shape != expected {
            return Err(KpgError::TensorShape {
                name: name.to_string(),
                path: self.shards[t.shard].path.clone(),
                expected: expected.to_vec(),
                got: t.shape.clone(),
            });
        }
        Ok(t.clone())
    }

    /// Checks that a config's layer count is backed by weights before anything is allocated per
    /// layer: `last_tensor` is a tensor of the last layer the config claims. A count of 10^9 is
    /// then an error naming the field, not an allocation that aborts.
    pub fn check_layer_count(&self, field: &str, count: usize, last_tensor: &str) -> Result<()> {
        if count == 0 || self.contains(last_tensor) {
            return Ok(());
        }
        Err(KpgError::Config {
            path: self.dir.join("config.json"),
            field: field.to_string(),
            reason: format!(
                "{count} layers, but the weights have no tensor `{last_tensor}` (in {})",
                self.describe_location().display()
            ),
        })
    }

    /// Fails on the first tensor that holds a NaN or an infinity, naming it and the element: such a
    /// model loads and runs, but every score it gives is null. One parallel pass over the weights
    /// at memory speed (docs/PERF.md has its cost); it also brings the pages in, which the first
    /// forward pass would do anyway.
    pub fn check_finite(&self) -> Result<()> {
        use rayon::prelude::*;
        let mut tensors: Vec<&TensorRef> = self.tensors.values().collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let bad = tensors
            .par_iter()
            .filter_map(|t| {
                first_non_finite(t.dtype, self.view(t).bytes).map(|i| (t.name.clone(), t.shard, i))
            })
            .min();
        match bad {
            None => Ok(()),
            Some((name, shard, element)) => Err(KpgError::NonFiniteWeight {
                name,
                path: self.shards[shard].path.clone(),
                element,
            }),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn view<'a>(&'a self, t: &'a TensorRef) -> WeightView<'a> {
        WeightView {
            dtype: t.dtype,
            shape: &t.shape,
            bytes: &self.shards[t.shard].data.bytes()[t.start..t.end],
        }
    }

    /// The weights file, or the index when sharded: where a missing tensor was looked for.
    fn describe_location(&self) -> PathBuf {
        if self.shards.len() == 1 {
            self.shards[0].path.clone()
        } else {
            self.dir.join("model.safetensors.index.json")
        }
    }

    /// The dtype most elements are stored in (for reporting).
    pub fn main_dtype(&self) -> Option<DType> {
        let mut counts: Vec<(DType, usize)> = Vec::new();
        for t in self.tensors.values() {
            match counts.iter_mut().find(|(d, _)| *d == t.dtype) {
                Some((_, n)) => *n += t.numel(),
                None => counts.push((t.dtype, t.numel())),
            }
        }
        counts.sort_by_key(|&(d, _)| d.to_string());
        counts
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
            .map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_in_every_dtype() {
        let f32s: Vec<u8> = [1.0f32, -2.5, f32::NAN, f32::INFINITY]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(DType::F32, &f32s), Some(2));
        assert_eq!(first_non_finite(DType::F32, &f32s[..8]), None);
        let f16s: Vec<u8> = [1.0f32, 65504.0, f32::NEG_INFINITY]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(DType::F16, &f16s), Some(2));
        let bf16s: Vec<u8> = [3.0e38f32, f32::NAN]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(DType::BF16, &bf16s), Some(1));
    }
}
