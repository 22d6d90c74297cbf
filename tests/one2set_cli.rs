//! `kpg generate`, `kpg vocab` and `kpg synth --arch one2set` driven through the real binary, and
//! broken generator directories, which must get an error naming the file and the tensor or field
//! (exit status 2, one line on stderr), never a panic.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, kpg_bin};
use kpg::one2set::Generator;
use serde_json::{json, Value};

fn kpg(args: &[&str]) -> Output {
    Command::new(kpg_bin()).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn synth_tiny(dir: &Path) {
    let out = kpg(&[
        "synth",
        "--arch",
        "one2set",
        "--preset",
        "tiny",
        "--out",
        s(dir),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gzip(path: &Path, text: &str) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[test]
fn generate_streams_in_order_with_bad_records_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("gen");
    synth_tiny(&model);
    let mut input = String::new();
    for i in 0..23 {
        match i {
            5 => input.push_str("{not json\n"),
            9 => input.push_str("{\"id\": \"no-abstract\", \"title\": \"x\"}\n"),
            12 => input.push('\n'),
            _ => input.push_str(
                &json!({"id": format!("d{i}"), "title": "Optimal transport for keyphrase sets",
                    "abstract": format!("We study keyphrase generation {i} with copy attention.")})
                .to_string(),
            ),
        }
        if i != 12 {
            input.push('\n');
        }
    }
    let path = tmp.path().join("docs.jsonl.gz");
    gzip(&path, &input);
    let out = kpg(&[
        "generate",
        "--generator",
        s(&model),
        "--input",
        s(&path),
        "--batch-docs",
        "4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 22, "one line per non-blank input line");
    let ids: Vec<Value> = lines.iter().map(|l| l["id"].clone()).collect();
    assert_eq!(ids[4], json!("d4"));
    assert_eq!(ids[5], Value::Null);
    assert!(lines[5]["error"].as_str().unwrap().contains("line 6"));
    assert_eq!(ids[9], json!("no-abstract"));
    assert!(lines[9]["error"].as_str().unwrap().contains("abstract"));
    assert_eq!(ids[21], json!("d22"));
    for l in lines.iter().filter(|l| l.get("error").is_none()) {
        let c = l["candidates"].as_array().unwrap();
        assert!(!c.is_empty());
        let scores: Vec<f64> = c.iter().map(|c| c["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score");
        let mut phrases: Vec<&str> = c.iter().map(|c| c["phrase"].as_str().unwrap()).collect();
        phrases.sort();
        phrases.dedup();
        assert_eq!(phrases.len(), c.len(), "no duplicate phrases");
        for c in c {
            assert!(c["slot"].as_u64().unwrap() < 20);
            assert!(c["present"].is_boolean());
        }
    }
    // The same documents give the same candidates whatever the batch size.
    let again = kpg(&[
        "generate",
        "--generator",
        s(&model),
        "--input",
        s(&path),
        "--batch-docs",
        "1",
    ]);
    let a = stdout_lines(&again);
    for (x, y) in lines.iter().zip(&a) {
        assert_eq!(x["id"], y["id"]);
        let phrases = |v: &Value| -> Vec<String> {
            v["candidates"]
                .as_array()
                .map(|c| c.iter().map(|c| c["phrase"].to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(phrases(x), phrases(y));
    }
}

#[test]
fn vocab_then_synth_with_it_then_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl.gz");
    gzip(
        &corpus,
        &[
            json!({"id": "1", "title": "Deep keyphrase generation", "abstract": "Keyphrase generation in 2017.",
                "keyphrases": ["keyphrase generation", "deep learning"]}),
            json!({"id": "2", "title": "Sets", "abstract": "One2Set: sets of keyphrases.", "keyphrases": []}),
        ]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect::<String>(),
    );
    let vocab_dir = tmp.path().join("vocab");
    let out = kpg(&[
        "vocab",
        "--input",
        s(&corpus),
        "--size",
        "12",
        "--out",
        s(&vocab_dir),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok: Value =
        serde_json::from_str(&std::fs::read_to_string(vocab_dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), 12);
    // `.` ×4 (each source's ` . <eos> ` and abstract end), keyphrase ×3, generation ×3, deep ×2,
    // sets ×2: ties in order of first appearance; `<eos>` is special and not counted.
    assert_eq!(vocab["<null>"], 6);
    let order = [".", "keyphrase", "generation", "deep", "sets"];
    for (i, w) in order.iter().enumerate() {
        assert_eq!(vocab[*w], 7 + i, "{w}");
    }

    let model = tmp.path().join("gen");
    let out = kpg(&[
        "synth",
        "--arch",
        "one2set",
        "--preset",
        "tiny",
        "--seed",
        "3",
        "--vocab",
        s(&vocab_dir.join("tokenizer.json")),
        "--out",
        s(&model),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = Generator::load(&model).unwrap();
    assert_eq!(g.model.config.vocab_size, 12);
    let docs = tmp.path().join("docs.jsonl");
    std::fs::write(
        &docs,
        json!({"id": 5, "title": "Keyphrase sets", "abstract": "Generation of keyphrase sets."})
            .to_string(),
    )
    .unwrap();
    let out = kpg(&["generate", "--generator", s(&model), "--input", s(&docs)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    // A numeric id comes back as the number it was (issue 17: ids keep their JSON text).
    assert_eq!(lines[0]["id"], json!(5));
}

#[test]
fn synth_is_deterministic_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    synth_tiny(&a);
    synth_tiny(&b);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    let g = Generator::load(&a).unwrap();
    assert_eq!(g.model.config.num_control_codes, 20);
    assert_eq!(g.model.config.vocab_size, 1000);
}

/// A copy of a good fixture generator to break.
fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gen");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join("one2set/tiny_f32")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Rewrites model.safetensors with `edit` applied to its (name, dtype, shape, bytes) list.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, String, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in &tensors {
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for t in &tensors {
        out.extend_from_slice(&t.3);
    }
    std::fs::write(&path, out).unwrap();
}

/// The library error and the command line's one-line error both contain every `needle`.
fn expect_error(dir: &Path, needles: &[&str]) {
    let err = match Generator::load(dir) {
        Ok(_) => panic!(
            "{} loaded; expected an error with {needles:?}",
            dir.display()
        ),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(err.contains(n), "library error `{err}` lacks `{n}`");
    }
    let docs = dir.parent().unwrap().join("docs.jsonl");
    std::fs::write(
        &docs,
        "{\"id\": 1, \"title\": \"a\", \"abstract\": \"b\"}\n",
    )
    .unwrap();
    let out = kpg(&["generate", "--generator", s(dir), "--input", s(&docs)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "cli error `{stderr}` lacks `{n}`");
    }
}

#[test]
fn broken_generator_directories_are_named() {
    let (_t, dir) = copy_fixture();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    expect_error(&dir, &["tokenizer.json", "not found"]);

    let (_t, dir) = copy_fixture();
    edit_json(&dir.join("tokenizer.json"), |v| {
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        let last = vocab
            .iter()
            .max_by_key(|(_, id)| id.as_u64())
            .unwrap()
            .0
            .clone();
        vocab.remove(&last);
        // 29 words for a vocab_size of 30.
    });
    expect_error(
        &dir,
        &["tokenizer.json", "fewer than the model's vocab_size = 30"],
    );

    let (_t, dir) = copy_fixture();
    edit_json(&dir.join("config.json"), |v| {
        v["architecture"] = json!("llama")
    });
    expect_error(
        &dir,
        &["config.json", "architecture", "not a One2Set generator"],
    );

    let (_t, dir) = copy_fixture();
    edit_json(&dir.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("num_control_codes");
    });
    expect_error(&dir, &["config.json", "num_control_codes", "missing"]);

    let (_t, dir) = copy_fixture();
    edit_json(&dir.join("config.json"), |v| {
        v["num_present_codes"] = json!(9)
    });
    expect_error(
        &dir,
        &[
            "config.json",
            "num_present_codes",
            "more than num_control_codes = 8",
        ],
    );

    let (_t, dir) = copy_fixture();
    edit_json(&dir.join("config.json"), |v| v["num_heads"] = json!(5));
    expect_error(
        &dir,
        &["config.json", "num_heads", "does not divide d_model = 32"],
    );

    let (_t, dir) = copy_fixture();
    edit_tensors(&dir, |t| t.retain(|x| x.0 != "decoder.p_gen_linear.bias"));
    expect_error(
        &dir,
        &["model.safetensors", "decoder.p_gen_linear.bias", "missing"],
    );

    let (_t, dir) = copy_fixture();
    edit_tensors(&dir, |t| {
        let c = t
            .iter_mut()
            .find(|x| x.0 == "decoder.control_code.weight")
            .unwrap();
        c.2 = vec![4, 64];
    });
    expect_error(&dir, &["decoder.control_code.weight", "[4, 64]", "[8, 32]"]);

    let (_t, dir) = copy_fixture();
    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    expect_error(&dir, &["model.safetensors", "not a valid safetensors file"]);

    let (t, _) = copy_fixture();
    expect_error(&t.path().join("nowhere"), &["nowhere", "not found"]);
}
