//! GGUF: dequantization held bit for bit to the `gguf` Python package (llama.cpp's gguf-py) on
//! random blocks of every type kpg reads (`tests/fixtures/gguf/dequant.json`, written by
//! `tools/make_gguf_fixtures.py`).

mod common;

use kpg::gguf::dequant::dequantize;
use kpg::gguf::types::GgmlType;
use serde_json::Value;

fn ggml_type(name: &str) -> GgmlType {
    (0..64)
        .filter_map(GgmlType::from_id)
        .find(|t| t.to_string() == name)
        .unwrap_or_else(|| panic!("type {name}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn dequantization_matches_gguf_py_bit_for_bit() {
    let path = common::fixtures().join("gguf/dequant.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let types = fixture["types"].as_object().unwrap();
    assert_eq!(types.len(), 8, "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K");
    for (name, case) in types {
        let ty = ggml_type(name);
        let blocks = hex(case["blocks_hex"].as_str().unwrap());
        let want: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mut got = vec![f32::NAN; want.len()];
        dequantize(ty, &blocks, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name} element {i}: {g} vs {w}");
        }
    }
}

#[test]
fn unsupported_types_are_named() {
    let mut out = vec![0f32; 256];
    let err = dequantize(GgmlType::Q2_K, &[0u8; 84], &mut out).unwrap_err();
    assert!(err.contains("Q2_K is not supported"), "{err}");
}

fn kpg(args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::kpg_bin())
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `tests/fixtures/gguf/tiny-q8_0.gguf` was written by `tools/make_gguf_model.py` (gguf-py's
/// writer and quantizer, llama.cpp's tensor names and q/k row order) from this very model.
fn tiny_pair(tmp: &std::path::Path) -> (String, String) {
    let dir = tmp.join("tiny");
    let out = kpg(&[
        "synth",
        "--arch",
        "llama",
        "--preset",
        "tiny",
        "--seed",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let gguf = common::fixtures().join("gguf/tiny-q8_0.gguf");
    (
        dir.to_str().unwrap().to_string(),
        gguf.to_str().unwrap().to_string(),
    )
}

#[test]
fn a_q8_0_gguf_runs_as_its_hugging_face_original() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, gguf) = tiny_pair(tmp.path());
    let ids = "1,5,9,300,77,1000,2,640";
    let logits = |model: &str, mode: &str| -> Vec<Vec<f32>> {
        let v = stdout_json(&kpg(&[
            "--gguf-weights",
            mode,
            "debug",
            "logits",
            "--model",
            model,
            "--ids",
            ids,
        ]));
        serde_json::from_value(v["logits"].clone()).unwrap()
    };
    let want = logits(&dir, "quantized");
    // Dequantized to f32, only the weights are rounded: Q8_0 keeps each weight to 1/254 of its
    // block's largest; measured 1.2-1.4% of the largest logit here. In their blocks, the
    // activations are rounded to Q8 blocks too (as llama.cpp does): measured up to 2.0%; the
    // bound is issue 15's for the quantized path (llama.cpp itself is at 2.5%). A row order or
    // name mistake gives errors of the logits' own size.
    for (mode, bound) in [("f32", 0.02), ("quantized", 0.04)] {
        let got = logits(&gguf, mode);
        assert_eq!(want.len(), got.len());
        for (pos, (w, g)) in want.iter().zip(&got).enumerate() {
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= bound * scale,
                "{mode}, position {pos}: {diff} of {scale}"
            );
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
            // The reference's own choice, or one within the bound of it (a near tie).
            let chosen = argmax(g);
            assert!(
                w[chosen] >= w[argmax(w)] - bound * scale,
                "{mode}, position {pos}: chose {chosen}"
            );
        }
    }
}

#[test]
fn the_gguf_tokenizer_gives_the_tokenizer_json_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, gguf) = tiny_pair(tmp.path());
    for text in [
        "Keyphrase generation with optimal transport",
        "  leading spaces, trailing\n\n",
        "digits 12345 and ünïcödé, emoji 🙂, tabs\tand CRLF\r\n",
        "<s> a special token in text </s>",
        "",
    ] {
        let ids = |model: &str| {
            stdout_json(&kpg(&[
                "debug", "tokenize", "--model", model, "--text", text,
            ]))
        };
        assert_eq!(ids(&dir), ids(&gguf), "{text:?}");
    }
}

#[test]
fn gguf_headers_print_and_damaged_files_are_named() {
    let gguf = common::fixtures().join("gguf/tiny-q8_0.gguf");
    let h = stdout_json(&kpg(&["debug", "gguf", "--model", gguf.to_str().unwrap()]));
    assert_eq!(h["version"], 3);
    assert_eq!(h["metadata"]["general.architecture"], "llama");
    assert_eq!(h["metadata"]["llama.block_count"], 4);
    let types: Vec<&str> = h["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"Q8_0") && types.contains(&"F16") && types.contains(&"F32"));

    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&gguf).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    for args in [
        vec![
            "debug",
            "logits",
            "--model",
            cut.to_str().unwrap(),
            "--ids",
            "1",
        ],
        vec![
            "debug",
            "tokenize",
            "--model",
            cut.to_str().unwrap(),
            "--text",
            "a",
        ],
        vec!["debug", "gguf", "--model", cut.to_str().unwrap()],
    ] {
        let out = kpg(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("GGUF") && err.contains("cut.gguf") && err.contains("truncated"),
            "{err}"
        );
    }
}

/// A SentencePiece GGUF vocabulary (LLaMA 1/2 style: "▁" pieces with scores, byte fallback, BOS
/// added) tokenises as llama.cpp tokenises it (`tools/make_spm_fixtures.py`).
#[test]
fn a_sentencepiece_vocabulary_gives_llama_cpp_ids() {
    let dir = common::fixtures().join("gguf");
    let model = dir.join("spm-vocab.gguf");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("spm-tokens.json")).unwrap())
            .unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = stdout_json(&kpg(&[
            "debug",
            "tokenize",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text,
        ]));
        assert_eq!(got["ids"], case["ids"], "{text:?}");
    }
}

/// LLaMA 3.1's per-frequency RoPE factors (`rope_freqs.weight`): every factor 2 divides every
/// frequency by 2, as linear scaling of factor 2 does in the Hugging Face config. The fixture is
/// tiny-q8_0.gguf with that tensor added (`tools/make_gguf_model.py ... 2`).
#[test]
fn rope_freqs_divide_the_frequencies() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = tiny_pair(tmp.path());
    let config_path = std::path::Path::new(&dir).join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["rope_parameters"]["rope_type"] = "linear".into();
    config["rope_parameters"]["factor"] = 2.0.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let gguf = common::fixtures().join("gguf/tiny-q8_0-rope-freqs2.gguf");
    let plain = common::fixtures().join("gguf/tiny-q8_0.gguf");
    let ids = "1,5,9,300,77,1000,2,640,17,18,19,20,21,22,23,24";
    let logits = |model: &str| -> Vec<Vec<f32>> {
        let v = stdout_json(&kpg(&[
            "--gguf-weights",
            "f32",
            "debug",
            "logits",
            "--model",
            model,
            "--ids",
            ids,
        ]));
        serde_json::from_value(v["logits"].clone()).unwrap()
    };
    let want = logits(&dir);
    let worst = |got: &[Vec<f32>]| {
        want.iter()
            .zip(got)
            .map(|(w, g)| {
                let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                diff / scale
            })
            .fold(0f32, f32::max)
    };
    // Q8_0 weights: within 2% of the largest logit, as the test above.
    let with_factors = worst(&logits(gguf.to_str().unwrap()));
    assert!(with_factors <= 0.02, "{with_factors}");
    // Without the factors the positions rotate twice as fast: far off.
    let without = worst(&logits(plain.to_str().unwrap()));
    assert!(
        without > 5.0 * with_factors,
        "{without} against {with_factors}"
    );
}

/// kpg's dequantized path against transformers' own reading of the same GGUF file
/// (`tools/make_gguf_transformers_fixture.py`: `from_pretrained(gguf_file=...)`, float32): within
/// 1e-4 of the largest logit, and the quantized path within 4e-2 (issue 15's bounds).
#[test]
fn the_dequantized_path_is_transformers_reading_of_the_file() {
    let gguf = common::fixtures().join("gguf/tiny-q8_0.gguf");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("gguf/tiny-q8_0-transformers.json"))
            .unwrap(),
    )
    .unwrap();
    for seq in fixture["sequences"].as_array().unwrap() {
        let ids: Vec<String> = seq["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let want: Vec<Vec<f32>> = serde_json::from_value(seq["logits"].clone()).unwrap();
        let largest = want.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        for (mode, chunk, bound) in [("f32", "512", 1e-4), ("quantized", "1", 4e-2)] {
            let v = stdout_json(&kpg(&[
                "--gguf-weights",
                mode,
                "debug",
                "logits",
                "--model",
                gguf.to_str().unwrap(),
                "--ids",
                &ids.join(","),
                "--chunk",
                chunk,
            ]));
            let got: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone()).unwrap();
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .flatten()
                .zip(want.iter().flatten())
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= bound * largest,
                "{mode}, {} ids: {worst} of {largest}",
                ids.len()
            );
        }
    }
}
