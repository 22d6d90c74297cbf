//! LoRA adapters in peft's format against peft itself: `tests/fixtures/lora/*` were written by
//! `tools/make_lora_fixtures.py` (peft 0.21.0, transformers 5.17.0, torch 2.11.0), random A and B
//! on two of the transformers fixtures of `tests/fixtures/llama/`: every projection at r = 4 on an
//! f32 model, and rsLoRA at r = 8 on q, v and down of a bf16 model with one KV head. kpg's logits
//! with `--adapter` are held to peft's (f32, unmerged), and must differ from the base model's.

mod common;

use std::path::PathBuf;

use serde_json::Value;

fn fixtures() -> PathBuf {
    common::fixtures()
}

fn logits(model: &std::path::Path, adapter: Option<&std::path::Path>, ids: &str) -> Vec<Vec<f32>> {
    let mut args = vec![
        "debug".to_string(),
        "logits".into(),
        "--model".into(),
        model.to_str().unwrap().into(),
        "--ids".into(),
        ids.into(),
    ];
    if let Some(a) = adapter {
        args.push("--adapter".into());
        args.push(a.to_str().unwrap().into());
    }
    let out = std::process::Command::new(common::kpg_bin())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(v["logits"].clone()).unwrap()
}

#[test]
fn adapters_give_peft_logits() {
    for case in ["mha_f32_r4_all", "mqa_bf16_rslora_r8"] {
        let adapter = fixtures().join("lora").join(case);
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(adapter.join("golden.json")).unwrap())
                .unwrap();
        let base = fixtures()
            .join("llama")
            .join(golden["base"].as_str().unwrap());
        for seq in golden["sequences"].as_array().unwrap() {
            let ids: Vec<String> = seq["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect();
            let ids = ids.join(",");
            let want: Vec<Vec<f32>> = serde_json::from_value(seq["logits"].clone()).unwrap();
            let got = logits(&base, Some(&adapter), &ids);
            let plain = logits(&base, None, &ids);
            let largest = want.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
            let err = |a: &[Vec<f32>]| {
                a.iter()
                    .flatten()
                    .zip(want.iter().flatten())
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            };
            // f32 throughout, only the summation order differs: kpg holds the base fixtures to
            // transformers at ~1e-6 of the largest logit.
            assert!(
                err(&got) <= 1e-5 * largest.max(1.0),
                "{case}: {} of {largest}",
                err(&got)
            );
            assert!(
                err(&plain) > 100.0 * 1e-5 * largest.max(1.0),
                "{case}: the adapter changes nothing measurable"
            );
        }
    }
}

#[test]
fn a_wrong_or_unsupported_adapter_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixtures().join("llama/mha_f32_v5");
    let src = fixtures().join("lora/mha_f32_r4_all");
    let run = |adapter: &std::path::Path| {
        let out = std::process::Command::new(common::kpg_bin())
            .args([
                "debug",
                "logits",
                "--model",
                base.to_str().unwrap(),
                "--ids",
                "1,2",
            ])
            .arg("--adapter")
            .arg(adapter)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // An adapter of another base model (the bf16 case's shapes).
    let other = fixtures().join("lora/mqa_bf16_rslora_r8");
    let err = run(&other);
    assert!(
        err.contains("down_proj") && err.contains("expected [64, 96]"),
        "{err}"
    );
    // DoRA, which kpg does not apply.
    let dora = tmp.path().join("dora");
    std::fs::create_dir(&dora).unwrap();
    let config = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    std::fs::write(
        dora.join("adapter_config.json"),
        config.replace("\"use_dora\": false", "\"use_dora\": true"),
    )
    .unwrap();
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        dora.join("adapter_model.safetensors"),
    )
    .unwrap();
    let err = run(&dora);
    assert!(err.contains("use_dora"), "{err}");
    // No weights file.
    std::fs::remove_file(dora.join("adapter_model.safetensors")).unwrap();
    std::fs::write(dora.join("adapter_config.json"), &config).unwrap();
    let err = run(&dora);
    assert!(err.contains("adapter_model.safetensors"), "{err}");
}
