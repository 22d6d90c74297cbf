//! A mutation fuzzer that runs in CI in bounded time: every parser of user-supplied bytes (the
//! JSON-lines record reader and the three record schemas, safetensors headers, `config.json` of
//! each model kind and the selector template, GGUF headers) is fed mutations of the committed seed
//! corpus (`tests/fuzz-corpus/`, written by `tools/make_fuzz_corpus.py`). A parser may accept or
//! refuse an input; it may not panic, hang or read out of bounds. A failing input is written to
//! `target/fuzz-failures/` so that it can join the corpus.
//!
//! Deterministic (xorshift from fixed seeds); `KPG_FUZZ_ITERS` sets the mutations per seed file
//! (default 2000, a few seconds in all) for longer runs.

mod common;

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn iterations() -> usize {
    std::env::var("KPG_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: boundaries of each integer width, lengths that overflow.
const INTERESTING_U64: [u64; 8] = [
    0,
    1,
    0x7f,
    0xffff_ffff,
    1 << 32,
    1 << 62,
    u64::MAX,
    u64::MAX / 2,
];

/// One to four byte-level mutations of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'\n', b'9'][rng.below(8)];
            }
            2 if len > 0 => b.truncate(rng.below(len)),
            3 if len > 1 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                b.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let chunk = b[start..end].to_vec();
                let at = rng.below(len);
                b.splice(at..at, chunk);
            }
            5 if len >= 8 => {
                let at = rng.below(len - 7);
                let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            6 if len >= 4 => {
                let at = rng.below(len - 3);
                let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())] as u32;
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, bytes);
            }
        }
    }
    b
}

/// Runs `check` on `iterations()` mutations of every seed of `kind` (and the seeds themselves),
/// saving the input and failing on a panic.
fn fuzz(kind: &str, salt: u64, mut check: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ salt);
    for (name, seed) in corpus(kind) {
        let mut inputs = vec![seed.clone()];
        inputs.extend((0..iterations()).map(|_| mutate(&seed, &mut rng)));
        for (i, input) in inputs.iter().enumerate() {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(input)));
            if outcome.is_err() {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{kind}-{name}-{i}"));
                std::fs::write(&path, input).unwrap();
                panic!(
                    "{kind}: mutation {i} of {name} panicked; input saved to {}",
                    path.display()
                );
            }
        }
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn record_reader_and_record_schemas() {
    let tmp = scratch();
    let path = tmp.path().join("in.jsonl");
    fuzz("records", 1, |input| {
        std::fs::write(&path, input).unwrap();
        let lines = kpg::records::input_lines(Some(&path)).unwrap();
        let failure = lines.failure();
        let mut last = 0;
        for (line_no, line) in lines {
            // Numbered from 1, in order.
            assert!(line_no > last);
            last = line_no;
            let Ok(line) = line else { continue };
            let id = kpg::records::RecordId::of_line(&line);
            if let Some(id) = &id {
                // An id written back is the same id.
                let back = kpg::records::RecordId::from_json(id.json()).unwrap();
                assert_eq!(&back, id);
                let _ = id.to_string();
            }
            if let Ok(d) = kpg::one2set::document::parse_document(&line, line_no) {
                assert!(id.is_some(), "a parsed record has an id: {line}");
                let _ = kpg::records::check_fields(&d.id, &d.title, &d.abstract_text);
            }
            let _ = kpg::select::document::parse_document(&line, line_no);
        }
        let _ = failure.check();
    });
}

#[test]
fn safetensors_headers() {
    let tmp = scratch();
    let path = tmp.path().join("model.safetensors");
    fuzz("safetensors", 2, |input| {
        std::fs::write(&path, input).unwrap();
        if let Ok(files) = kpg::model::weights::WeightFiles::open(tmp.path()) {
            let _ = files.check_finite();
            for name in ["a.weight", "b.weight", "c.bias", "e"] {
                if files.contains(name) {
                    let _ = files.get(name, &[2, 3]);
                }
            }
        }
    });
}

#[test]
fn config_files_of_every_kind() {
    let path = Path::new("config.json");
    let mut rng = Rng(3);
    fuzz("config", 3, |input| {
        let Ok(value) = serde_json::from_slice::<Value>(input) else {
            return;
        };
        parse_configs(&value, path);
        // Byte mutations mostly break the JSON; also mutate values in place.
        for _ in 0..4 {
            let mut v = value.clone();
            mutate_value(&mut v, &mut rng);
            parse_configs(&v, path);
        }
    });
}

fn parse_configs(value: &Value, path: &Path) {
    let _ = kpg::model::config::LlamaConfig::from_json(value, path);
    let _ = kpg::model::one2set_config::One2SetConfig::from_json(value, path);
    let tmp = scratch();
    let file = tmp.path().join("kpg_selector.json");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(value.to_string().as_bytes())
        .unwrap();
    let _ = kpg::select::config::SelectorConfig::from_dir(tmp.path());
}

/// Replaces one value (at any depth) with one that breaks assumptions.
fn mutate_value(v: &mut Value, rng: &mut Rng) {
    let odd = [
        json!(0),
        json!(-1),
        json!(1e308),
        json!(-1e-320),
        json!(u64::MAX),
        json!(1_000_000_000_000u64),
        json!(0.5),
        json!("x"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
    ];
    let mut at = v;
    loop {
        let keys: Vec<String> = match at {
            Value::Object(m) if !m.is_empty() => m.keys().cloned().collect(),
            _ => break,
        };
        let key = keys[rng.below(keys.len())].clone();
        let child = at.get_mut(&key).unwrap();
        if child.is_object() && rng.below(2) == 0 {
            at = child;
            continue;
        }
        *child = odd[rng.below(odd.len())].clone();
        return;
    }
}

#[test]
fn gguf_headers() {
    let tmp = scratch();
    let path: PathBuf = tmp.path().join("model.gguf");
    fuzz("gguf", 4, |input| {
        if let Ok(h) = kpg::gguf::header::parse(input) {
            // Whatever is accepted lies inside the file.
            for t in &h.tensors {
                assert!(h.data_offset + t.offset + t.bytes <= input.len() as u64);
            }
        }
        std::fs::write(&path, input).unwrap();
        let _ = kpg::model::llama::Llama::load(&path);
    });
}
