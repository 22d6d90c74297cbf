//! Prompt segments whose boundary a tokenizer merges across: SmolLM2's tokenizer makes one token
//! of a text-final "\n\n" but two of "\n\n" before a word, so the instruction alone, or the
//! document prompt alone, does not tokenise as the start of the whole prompt. The selector must
//! still share the instruction between documents and the document between rerank queries, and give
//! the results it gives without sharing. Here a tiny random selector's tokenizer is given that
//! very merge.

mod common;

use std::path::Path;
use std::process::Command;

use kpg::select::document::{Candidate, SelectDocument};
use kpg::select::{CandidateOrder, SelectMode, Selector};
use serde_json::{json, Value};

/// A tiny selector whose tokenizer merges "\n\n" into one token (the unused id 1023).
fn merging_selector(dir: &Path) {
    let out = Command::new(common::kpg_bin())
        .args(["synth", "--arch", "llama", "--preset", "tiny", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = dir.join("tokenizer.json");
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = t["model"]["vocab"].as_object_mut().unwrap();
    assert_eq!(vocab.remove("<unused_1023>"), Some(json!(1023)));
    vocab.insert("ĊĊ".into(), json!(1023));
    t["model"]["merges"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!(["Ċ", "Ċ"]));
    std::fs::write(&path, t.to_string()).unwrap();
}

fn doc() -> SelectDocument {
    SelectDocument {
        id: "d".into(),
        title: "Keyphrase generation".into(),
        abstract_: "Sets of keyphrases generated with optimal transport.".into(),
        candidates: ["keyphrase generation", "optimal transport", "sets"]
            .iter()
            .map(|p| Candidate {
                phrase: p.to_string(),
                score: 0.5,
            })
            .collect(),
    }
}

#[test]
fn merges_across_segments_keep_sharing_and_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sel");
    merging_selector(&dir);
    let selector = Selector::load(&dir).unwrap();
    let tok = selector.model.tokenizer.as_ref().unwrap();
    // The merge is real: final "\n\n" is one token, "\n\n" before a word two.
    assert_eq!(tok.encode("x\n\n", false).unwrap().last(), Some(&1023));
    assert!(!tok.encode("x\n\nTitle", false).unwrap().contains(&1023));

    let rerank = SelectMode::Rerank {
        threshold: 0.5,
        top_k: None,
    };
    for mode in [SelectMode::Sequence, rerank] {
        let (_, group) = selector
            .group(&doc(), CandidateOrder::Confidence, mode, true)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(group.shares_root, "{mode:?}: the instruction is not shared");
        if matches!(mode, SelectMode::Rerank { .. }) {
            assert!(!group.prefix.is_empty(), "the document is not shared");
            assert_eq!(group.members.len(), 3);
        }
    }

    // Through the binary: every record answered, the same with and without sharing.
    let input = tmp.path().join("in.jsonl");
    let d = doc();
    let record = json!({"id": "d", "title": d.title, "abstract": d.abstract_,
        "candidates": d.candidates.iter().map(|c| json!({"phrase": c.phrase, "score": c.score})).collect::<Vec<_>>()});
    std::fs::write(&input, format!("{record}\n{record}\n")).unwrap();
    let run = |extra: &[&str]| -> Vec<f64> {
        let out = Command::new(common::kpg_bin())
            .args(["select", "--selector"])
            .arg(&dir)
            .arg("--input")
            .arg(&input)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .flat_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["p_true"].as_f64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for mode in [&[][..], &["--rerank"][..]] {
        let shared = run(mode);
        let unshared = run(&[mode, &["--no-prefix-sharing"][..]].concat());
        assert_eq!(shared.len(), 6);
        for (a, b) in shared.iter().zip(&unshared) {
            assert!((a - b).abs() < 1e-5, "{mode:?}: {a} vs {b}");
        }
    }
}
