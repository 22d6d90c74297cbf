//! The GGUF container (ggml's `docs/gguf.md`), versions 2 and 3, read from a byte slice (the
//! memory-mapped file): header, metadata key/values, tensor descriptors, and where the tensor data
//! starts. Every count and length is checked against the bytes that remain before anything is
//! allocated, so a damaged or hostile header is a one-line error, never an allocation of 2^64
//! entries or a read past the end.
//!
//! ```text
//! "GGUF" u32 version | u64 tensor_count | u64 kv_count
//! kv_count × (string key, u32 type, value)        string = u64 len + UTF-8 bytes
//! tensor_count × (string name, u32 n_dims, n_dims × u64 dims, u32 ggml_type, u64 offset)
//! padding to `general.alignment` (default 32), then the tensor data; offsets are from there.
//! ```

use super::types::GgmlType;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<Value>),
}

impl Value {
    /// An unsigned integer of any width (counts, ids, lengths).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The type's name as the spec writes it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "UINT8",
            Value::I8(_) => "INT8",
            Value::U16(_) => "UINT16",
            Value::I16(_) => "INT16",
            Value::U32(_) => "UINT32",
            Value::I32(_) => "INT32",
            Value::F32(_) => "FLOAT32",
            Value::Bool(_) => "BOOL",
            Value::String(_) => "STRING",
            Value::U64(_) => "UINT64",
            Value::I64(_) => "INT64",
            Value::F64(_) => "FLOAT64",
            Value::Array(_) => "ARRAY",
        }
    }
}

/// One tensor's descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// From the start of the data section.
    pub offset: u64,
    /// Bytes of data, from the type's block size.
    pub bytes: u64,
}

/// A parsed GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the tensor data starts in the file.
    pub data_offset: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }
}

/// Why a header cannot be read: the caller adds "GGUF" and the file.
pub type ParseError = String;

const MAGIC: &[u8; 4] = b"GGUF";
/// Nesting of arrays of arrays; real files have none.
const MAX_ARRAY_DEPTH: usize = 4;
const MAX_DIMS: u32 = 4;

/// Reads the header of a GGUF file's bytes and checks every tensor's data lies inside them.
pub fn parse(bytes: &[u8]) -> Result<Header, ParseError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.take(4, "the magic")?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file: it starts with {:02x?}, not \"GGUF\"",
            magic
        ));
    }
    let version = r.u32("the version")?;
    if version != 2 && version != 3 {
        return Err(format!(
            "version {version} is not supported (2 and 3 are; version 1 files predate \
             llama.cpp's August 2023 format and must be converted again)"
        ));
    }
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    // Each key/value takes at least 13 bytes (8 key length, 4 type, 1 value) and each tensor 28.
    r.check_count(kv_count, 13, "metadata entries")?;
    r.check_count(tensor_count, 28, "tensors")?;
    let mut metadata = Vec::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key = r.string(&format!("the key of metadata entry {i}"))?;
        let kind = r.u32(&format!("the type of `{key}`"))?;
        let value = r.value(kind, &key, 0)?;
        if metadata.iter().any(|(k, _)| k == &key) {
            return Err(format!("metadata key `{key}` appears twice"));
        }
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => 32,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => return Err(format!("general.alignment {v:?} is not a power of two")),
        },
    };
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let n_dims = r.u32(&format!("the dimension count of `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&format!("the dimensions of `{name}`"))?);
        }
        let type_id = r.u32(&format!("the type of `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| format!("tensor `{name}` has unknown ggml type {type_id}"))?;
        let offset = r.u64(&format!("the offset of `{name}`"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!(
                "tensor `{name}` starts at data offset {offset}, not a multiple of the \
                 alignment {alignment}"
            ));
        }
        let bytes = ggml_type
            .data_bytes(&dims)
            .map_err(|reason| format!("tensor `{name}`: {reason}"))?;
        if tensors.iter().any(|t| t.name == name) {
            return Err(format!("tensor `{name}` appears twice"));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            bytes,
        });
    }
    let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(format!(
                "truncated: tensor `{}` ({} bytes at data offset {}) ends past the file's {} \
                 bytes",
                t.name, t.bytes, t.offset, file_len
            ));
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {what} at byte {} needs {n} bytes, {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Refuses a count that the remaining bytes cannot hold at `min_bytes` each.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<(), ParseError> {
        if count.saturating_mul(min_bytes) > self.remaining() as u64 {
            return Err(format!(
                "truncated or damaged: {count} {what} cannot fit in the {} bytes that remain \
                 at byte {}",
                self.remaining(),
                self.pos
            ));
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ParseError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(format!(
                "truncated or damaged: {what} at byte {} claims {len} bytes, {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let at = self.pos;
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} at byte {at} is not UTF-8"))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value, ParseError> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("`{key}`: {b} is not a boolean")),
            },
            8 => Value::String(self.string(&format!("the value of `{key}`"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "`{key}`: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                    ));
                }
                let item = self.u32(&format!("the item type of `{key}`"))?;
                let len = self.u64(&format!("the length of `{key}`"))?;
                self.check_count(len, min_value_bytes(item), &format!("items of `{key}`"))?;
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(format!("`{key}` has unknown value type {other}")),
        })
    }
}

/// The fewest bytes a value of type `kind` takes (arrays: their type and length).
fn min_value_bytes(kind: u32) -> u64 {
    match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        // Unknown: the first item fails on its type anyway.
        _ => 1,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GGUF file's bytes, written by hand: what the parser must read back.
    pub(crate) fn write_gguf(
        metadata: &[(&str, Value)],
        tensors: &[(&str, &[u64], u32)],
    ) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        fn value(out: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U32(x) => out.extend(x.to_le_bytes()),
                Value::F32(x) => out.extend(x.to_le_bytes()),
                Value::String(s) => string(out, s),
                Value::Array(items) => {
                    out.extend(type_id(&items[0]).to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for i in items {
                        value(out, i);
                    }
                }
                other => panic!("not written by the test: {other:?}"),
            }
        }
        fn type_id(v: &Value) -> u32 {
            match v {
                Value::U32(_) => 4,
                Value::F32(_) => 6,
                Value::String(_) => 8,
                Value::Array(_) => 9,
                other => panic!("not written by the test: {other:?}"),
            }
        }
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            string(&mut out, k);
            out.extend(type_id(v).to_le_bytes());
            value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut end = 0u64;
        for (name, dims, ty) in tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            let bytes = GgmlType::from_id(*ty).unwrap().data_bytes(dims).unwrap();
            end = offset + bytes;
            offset += bytes.div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.resize(out.len() + end as usize, 0x11);
        out
    }

    #[test]
    fn a_hand_written_file_reads_back() {
        let bytes = write_gguf(
            &[
                ("general.architecture", Value::String("llama".into())),
                ("llama.block_count", Value::U32(2)),
                (
                    "tokenizer.ggml.tokens",
                    Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
                ),
            ],
            &[("tok_embd.weight", &[64, 3], 3), ("norm.weight", &[64], 0)],
        );
        let h = parse(&bytes).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.get("llama.block_count").unwrap().as_u64(), Some(2));
        assert_eq!(h.tensors[0].ggml_type, GgmlType::Q4_1);
        assert_eq!(h.tensors[0].bytes, 3 * 2 * 20);
        assert_eq!(h.tensors[1].offset, 128);
        assert_eq!(h.data_offset % 32, 0);
    }

    #[test]
    fn damage_is_a_named_error() {
        let good = write_gguf(
            &[("general.architecture", Value::String("llama".into()))],
            &[("w", &[32, 2], 8)],
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GGML\x03\0\0\0".to_vec(), "not a GGUF file"),
            (
                [&good[..4], &1u32.to_le_bytes()[..], &good[8..]].concat(),
                "version 1",
            ),
            (good[..good.len() - 1].to_vec(), "truncated: tensor `w`"),
            (good[..30].to_vec(), "truncated"),
            (
                [&good[..8], &u64::MAX.to_le_bytes()[..], &good[16..]].concat(),
                "tensors cannot fit",
            ),
            (
                [&good[..16], &(1u64 << 60).to_le_bytes()[..], &good[24..]].concat(),
                "metadata entries cannot fit",
            ),
        ];
        for (bytes, needle) in cases {
            let err = parse(&bytes).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // A block type whose rows are not whole blocks.
        let odd = write_gguf(&[], &[("w", &[32, 2], 8)]);
        let mut odd = odd;
        let at = odd
            .windows(8)
            .position(|w| w == 32u64.to_le_bytes())
            .unwrap();
        odd[at..at + 8].copy_from_slice(&33u64.to_le_bytes());
        assert!(parse(&odd).unwrap_err().contains("multiple of its block"));
    }
}
