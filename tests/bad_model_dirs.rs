//! Broken model directories get an error that names the file and the tensor or field, through the
//! library and through the command line (exit status 2, one line on stderr), never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, kpg_bin};
use kpg::model::llama::Llama;
use kpg::KpgError;
use serde_json::{json, Value};

/// A copy of a good fixture model to break.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join("llama").join(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

/// (name, dtype, shape, bytes) of every tensor in a safetensors file.
type RawTensor = (String, String, Vec<usize>, Vec<u8>);

fn read_tensors(path: &Path) -> Vec<RawTensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                format!("{:?}", view.dtype()),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_tensors(path: &Path, tensors: &[RawTensor]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for t in tensors {
        out.extend_from_slice(&t.3);
    }
    std::fs::write(path, out).unwrap();
}

fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<RawTensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = read_tensors(&path);
    edit(&mut tensors);
    write_tensors(&path, &tensors);
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(&path, cfg.to_string()).unwrap();
}

fn load_err(dir: &Path) -> KpgError {
    match Llama::load(dir) {
        Ok(_) => panic!("{} loaded, but it is broken", dir.display()),
        Err(e) => e,
    }
}

/// `kpg debug logits` on the directory fails with a usage error that mentions every needle.
fn assert_cli_error(dir: &Path, needles: &[&str]) {
    let out = std::process::Command::new(kpg_bin())
        .args(["debug", "logits", "--ids", "3,4", "--model"])
        .arg(dir)
        .output()
        .unwrap();
    common::assert_usage_error(&out, needles);
}

#[test]
fn missing_directory_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nowhere");
    assert!(matches!(load_err(&nowhere), KpgError::MissingFile { .. }));
    assert_cli_error(&nowhere, &["nowhere", "not found"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(
        matches!(load_err(&dir), KpgError::MissingFile { ref path } if path.ends_with("config.json"))
    );
    assert_cli_error(&dir, &["config.json", "not found"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(
        matches!(load_err(&dir), KpgError::MissingFile { ref path } if path.ends_with("model.safetensors"))
    );
    assert_cli_error(&dir, &["model.safetensors", "not found"]);
}

#[test]
fn config_errors_name_the_field() {
    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_config(&dir, |c| {
        c.remove("hidden_size");
    });
    assert!(matches!(load_err(&dir), KpgError::Config { ref field, .. } if field == "hidden_size"));
    assert_cli_error(&dir, &["config.json", "hidden_size", "missing"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_config(&dir, |c| {
        c.insert("num_key_value_heads".into(), json!(3));
    });
    assert_cli_error(&dir, &["num_key_value_heads"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_config(&dir, |c| {
        c.insert(
            "rope_parameters".into(),
            json!({"rope_type": "yarn", "factor": 4.0}),
        );
    });
    assert_cli_error(&dir, &["rope_parameters.rope_type", "yarn"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_config(&dir, |c| {
        c.insert("vocab_size".into(), json!("many"));
    });
    assert_cli_error(&dir, &["vocab_size", "positive integer"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,").unwrap();
    assert!(matches!(load_err(&dir), KpgError::Json { .. }));
    assert_cli_error(&dir, &["config.json", "JSON"]);
}

#[test]
fn tensor_errors_name_the_tensor_and_file() {
    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_tensors(&dir, |t| {
        t.retain(|t| t.0 != "model.layers.1.mlp.up_proj.weight")
    });
    assert!(
        matches!(load_err(&dir), KpgError::MissingTensor { ref name, .. } if name == "model.layers.1.mlp.up_proj.weight")
    );
    assert_cli_error(
        &dir,
        &[
            "model.safetensors",
            "model.layers.1.mlp.up_proj.weight",
            "missing",
        ],
    );

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_tensors(&dir, |t| t.retain(|t| t.0 != "lm_head.weight"));
    assert_cli_error(&dir, &["lm_head.weight", "missing"]);

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_tensors(&dir, |t| {
        let w = t
            .iter_mut()
            .find(|t| t.0 == "model.layers.0.self_attn.k_proj.weight")
            .unwrap();
        w.2 = vec![32, 128];
    });
    assert!(
        matches!(load_err(&dir), KpgError::TensorShape { ref name, .. } if name == "model.layers.0.self_attn.k_proj.weight")
    );
    assert_cli_error(
        &dir,
        &[
            "model.layers.0.self_attn.k_proj.weight",
            "[32, 128]",
            "[64, 64]",
        ],
    );

    let (_t, dir) = copy_fixture("mha_f32_v5");
    edit_tensors(&dir, |t| {
        let w = t.iter_mut().find(|t| t.0 == "model.norm.weight").unwrap();
        w.1 = "I32".into();
    });
    assert!(
        matches!(load_err(&dir), KpgError::UnsupportedDtype { ref name, .. } if name == "model.norm.weight")
    );
    assert_cli_error(&dir, &["model.safetensors", "model.norm.weight", "I32"]);
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let (_t, dir) = copy_fixture("mha_f32_v5");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    assert!(matches!(load_err(&dir), KpgError::SafeTensors { .. }));
    assert_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);

    std::fs::write(&path, &bytes[..5]).unwrap();
    assert_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);

    let mut garbage = bytes.clone();
    garbage[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(&path, &garbage).unwrap();
    assert_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);

    let mut huge_header = bytes;
    huge_header[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge_header).unwrap();
    assert_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn sharded_index_errors() {
    let (_t, dir) = copy_fixture("sharded_gqa_f32_v4");
    let index = dir.join("model.safetensors.index.json");
    let shard = {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
        v["weight_map"]["model.norm.weight"]
            .as_str()
            .unwrap()
            .to_string()
    };
    std::fs::remove_file(dir.join(&shard)).unwrap();
    assert!(matches!(load_err(&dir), KpgError::MissingShard { shard: ref s, .. } if *s == shard));
    assert_cli_error(&dir, &["model.safetensors.index.json", &shard]);

    // The index promises a tensor its shard does not have.
    let (_t, dir) = copy_fixture("sharded_gqa_f32_v4");
    let index = dir.join("model.safetensors.index.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    let first = v["weight_map"]["model.embed_tokens.weight"].clone();
    v["weight_map"]["model.phantom.weight"] = first.clone();
    std::fs::write(&index, v.to_string()).unwrap();
    assert_cli_error(&dir, &["model.phantom.weight", first.as_str().unwrap()]);

    let (_t, dir) = copy_fixture("sharded_gqa_f32_v4");
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        "{\"metadata\": {}}",
    )
    .unwrap();
    assert_cli_error(&dir, &["model.safetensors.index.json", "weight_map"]);
}

#[test]
fn corrupt_tokenizer_is_named() {
    let (_t, dir) = copy_fixture("mha_f32_v5");
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    assert!(matches!(load_err(&dir), KpgError::Tokenizer { .. }));
    assert_cli_error(&dir, &["tokenizer.json"]);
}

#[test]
fn bad_input_ids_are_usage_errors() {
    let dir = fixtures().join("llama/mha_f32_v5");
    let out = std::process::Command::new(kpg_bin())
        .args(["debug", "logits", "--ids", "3,100000", "--model"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("100000") && stderr.contains("vocabulary"),
        "{stderr}"
    );

    let out = std::process::Command::new(kpg_bin())
        .args([
            "debug",
            "generate",
            "--max-new-tokens",
            "2",
            "--ids",
            "3,x",
            "--model",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A model of the other kind says what it is and which flag wants it, both ways round.
#[test]
fn a_model_of_the_other_kind_names_its_kind_and_flag() {
    let generator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/generator");
    let llama = fixtures().join("llama/mha_f32_v5");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kpg_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&[
        "debug",
        "logits",
        "--model",
        generator.to_str().unwrap(),
        "--ids",
        "1",
    ]);
    assert!(
        err.contains("One2Set generator") && err.contains("--generator"),
        "{err}"
    );
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/abstracts.jsonl");
    let err = run(&[
        "tag",
        "--generator",
        llama.to_str().unwrap(),
        "--no-ranker",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        err.contains("LLaMA model") && err.contains("--selector"),
        "{err}"
    );
}
