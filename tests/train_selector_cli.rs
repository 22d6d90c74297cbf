//! `kpg train selector` through the CLI on a random-weight selector (`kpg synth`): a run stopped
//! with --max-steps and continued with --resume ends with the same adapter and optimiser state as
//! one that was never stopped; the output directory is a selector that `kpg select` loads (its
//! `base_model` and adapter), deciding as the base with `--adapter` does; a misused --resume (or
//! one with another loss weighting) is refused with a message that says what to do.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use kpg::model::lora::LoraAdapter;
use kpg::select::train::lora_params::{LoraParams, LoraShape};
use kpg::select::train::optim::AdamW;

fn kpg(args: &[&str]) -> Output {
    Command::new(common::kpg_bin()).args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// 12 labelled records of 3–6 candidates over the synthetic documents' words.
fn write_records(path: &Path) {
    let mut text = String::new();
    for i in 0..12 {
        let d = kpg::select::document::synthetic_document(i, 20, 3 + i % 4);
        let cands: Vec<serde_json::Value> = d
            .candidates
            .iter()
            .enumerate()
            .map(|(k, c)| serde_json::json!({"phrase": c.phrase, "score": c.score, "label": (i + k) % 3 == 0}))
            .collect();
        text.push_str(
            &serde_json::json!({"id": format!("r{i}"), "title": d.title, "abstract": d.abstract_,
                                "candidates": cands})
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn train(base: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    // The base directory's own template, so that the base with --adapter selects with it too.
    let template = base.join("kpg_selector.json");
    let mut args = vec![
        "train",
        "selector",
        "--template",
        template.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--train",
        data.to_str().unwrap(),
        "--valid",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "3",
        "--epochs",
        "3",
        "--rank",
        "4",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "2",
        "--checkpoint-every",
        "2",
        "--valid-every",
        "4",
    ];
    args.extend_from_slice(extra);
    kpg(&args)
}

fn adam_of(out: &Path, shape: &LoraShape, base: &Path) -> (LoraParams<f32>, AdamW) {
    let llama = kpg::model::llama::Llama::load(base).unwrap();
    let b = kpg::select::train::base::BaseModel::<f32>::from_files(
        &llama.config,
        llama.weights(),
        llama.rope_inv_freq(),
    )
    .unwrap();
    let dir = out.join("checkpoint");
    let adapter = LoraAdapter::load(&dir).unwrap();
    let params = LoraParams::from_adapter(&adapter, shape.clone(), b.layers.len(), |p| {
        b.projection_shape(p)
    })
    .unwrap();
    let adam = AdamW::load(&dir.join("optimizer.safetensors"), &params).unwrap();
    (params, adam)
}

#[test]
fn resumed_runs_equal_unbroken_ones_and_the_output_is_a_selector() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    ok(kpg(&[
        "synth",
        "--arch",
        "llama",
        "--preset",
        "tiny",
        "--out",
        base.to_str().unwrap(),
    ]));
    let data = tmp.path().join("train.jsonl");
    write_records(&data);

    // 12 records in batches of 3 for 3 epochs: 12 steps; stopped at 5, then resumed to the end.
    let (broken, whole) = (tmp.path().join("broken"), tmp.path().join("whole"));
    ok(train(&base, &data, &broken, &["--max-steps", "5"]));
    let refused = train(&base, &data, &broken, &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let other = train(&base, &data, &broken, &["--resume", "--seed", "3"]);
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("`seed`"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // An option that changes the loss is part of the run too, where it is not the default.
    let reweighted = train(
        &base,
        &data,
        &broken,
        &["--resume", "--redundant-false-weight", "3"],
    );
    assert!(
        String::from_utf8_lossy(&reweighted.stderr).contains("`redundant_false_weight`"),
        "{}",
        String::from_utf8_lossy(&reweighted.stderr)
    );
    let zero = train(&base, &data, &broken, &["--redundant-false-weight", "0"]);
    assert!(
        String::from_utf8_lossy(&zero.stderr).contains("--redundant-false-weight must be"),
        "{}",
        String::from_utf8_lossy(&zero.stderr)
    );
    ok(train(&base, &data, &broken, &["--resume"]));
    ok(train(&base, &data, &whole, &[]));
    let fresh = train(&base, &data, &tmp.path().join("new"), &["--resume"]);
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("no checkpoint"));

    for file in [
        "adapter_model.safetensors",
        "checkpoint/adapter_model.safetensors",
    ] {
        let a = std::fs::read(broken.join(file)).unwrap();
        let b = std::fs::read(whole.join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the resumed and the unbroken run"
        );
    }
    let shape = LoraShape {
        rank: 4,
        alpha: 16.0,
        rslora: false,
        targets: LoraShape::parse_targets("all").unwrap(),
    };
    let (pa, aa) = adam_of(&broken, &shape, &base);
    let (pb, ab) = adam_of(&whole, &shape, &base);
    assert_eq!(pa, pb);
    assert_eq!(aa, ab);
    assert_eq!(aa.step, 12);
    // The log has each step once, and the same numbers (the timing columns aside).
    let rows = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("train_log.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                format!("{},{},{},{},{},{}", f[0], f[1], f[2], f[3], f[4], f[6])
            })
            .collect()
    };
    assert_eq!(rows(&broken), rows(&whole));
    assert_eq!(rows(&whole).len(), 13);

    // The output directory selects as the base model with the adapter does, and differently
    // from the base alone (the adapter was trained at a high rate to move it).
    let input = tmp.path().join("select.jsonl");
    let docs: Vec<String> = (0..4)
        .map(|i| {
            kpg::select::document::to_input_line(&kpg::select::document::synthetic_document(
                i, 20, 5,
            ))
        })
        .collect();
    std::fs::write(&input, docs.join("\n")).unwrap();
    let select = |args: &[&str]| {
        let mut a = vec!["select", "--input", input.to_str().unwrap()];
        a.extend_from_slice(args);
        String::from_utf8(ok(kpg(&a)).stdout).unwrap()
    };
    let trained = select(&["--selector", whole.to_str().unwrap()]);
    let explicit = select(&[
        "--selector",
        base.to_str().unwrap(),
        "--adapter",
        whole.to_str().unwrap(),
    ]);
    let plain = select(&["--selector", base.to_str().unwrap()]);
    assert_eq!(trained, explicit);
    assert_ne!(trained, plain);
}

/// `kpg tag` runs `models/selector` (relative to where it runs) by default when its base model is
/// there and there is a ranker; `--no-selector` and `--no-ranker` skip it; without its base it
/// says how to fetch it, once, and goes on with no selector.
#[test]
fn tag_uses_the_default_selector_when_its_base_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, generator) = (tmp.path().join("base"), tmp.path().join("gen"));
    ok(kpg(&[
        "synth",
        "--arch",
        "llama",
        "--preset",
        "tiny",
        "--out",
        base.to_str().unwrap(),
    ]));
    ok(kpg(&[
        "synth",
        "--arch",
        "one2set",
        "--preset",
        "tiny",
        "--out",
        generator.to_str().unwrap(),
    ]));
    let cwd = tmp.path().join("work");
    let sel = cwd.join("models/selector");
    std::fs::create_dir_all(&sel).unwrap();
    let config = kpg::select::config::SelectorConfig {
        base_model: Some("../../../base".into()),
        ..Default::default()
    };
    config.write(&sel).unwrap();
    let input = tmp.path().join("docs.jsonl");
    std::fs::write(
        &input,
        r#"{"id": "d1", "title": "optimal transport", "abstract": "keyphrase generation with optimal transport and a set decoder"}"#,
    )
    .unwrap();
    let ranker = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ranker");
    let tag = |extra: &[&str]| {
        let mut args = vec![
            "tag",
            "--generator",
            generator.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ];
        if !extra.contains(&"--no-ranker") {
            args.extend(["--ranker", ranker.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        let out = Command::new(common::kpg_bin())
            .args(&args)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let out = ok(out);
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let judged = line["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.get("p_true").is_some());
        (judged, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(tag(&[]).0, "the default selector did not run");
    assert!(!tag(&["--no-selector"]).0);
    assert!(
        !tag(&["--no-ranker"]).0,
        "the default selector ran without a ranker"
    );
    std::fs::remove_dir_all(&base).unwrap();
    let (judged, stderr) = tag(&[]);
    assert!(!judged);
    assert_eq!(
        stderr.matches("tools/fetch-models.sh").count(),
        1,
        "{stderr}"
    );
}

/// A random-weight selector keeps nothing, and `kpg select` says why, with the highest P(true)
/// it saw and what to do.
#[test]
fn a_selector_that_keeps_nothing_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    ok(kpg(&[
        "synth",
        "--arch",
        "llama",
        "--preset",
        "tiny",
        "--out",
        base.to_str().unwrap(),
    ]));
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/candidates.jsonl");
    let out = ok(kpg(&[
        "select",
        "--selector",
        base.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kept: usize = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["keyphrases"].as_array().unwrap().len()
        })
        .sum();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        kept, 0,
        "the random selector kept something: the test needs another seed"
    );
    assert!(
        stderr.contains("no candidate was kept") && stderr.contains("kpg train selector"),
        "{stderr}"
    );
}
