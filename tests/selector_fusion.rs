//! `ranker_fusion` in `kpg_selector.json`, end to end through `kpg tag` with the shipped generator
//! and ranker and a random-weight selector (`kpg synth`): the output lists the whole ranked pool,
//! the candidates past `max_candidates` unjudged; weight 0 keeps exactly the ranker's keyphrases;
//! with weight 1 the `fused` probabilities and the keyphrases are what `rank::fusion` makes of the
//! printed ranker scores and P(true), and the selector does change the list. With `answer_by_cut`
//! the same holds, and the selector's P(true) moves past the first candidate: its later answers
//! read the cut's decisions instead of its greedy ones.

mod common;

use std::path::Path;
use std::process::Command;

use kpg::rank::fusion::{fuse_and_cut, FusionInput};
use kpg::rank::CutOptions;
use kpg::select::config::{RankerFusion, SelectorConfig};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `kpg tag` over the examples, run from the repository root (its default generator and ranker).
fn tag(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "tag",
        "--input",
        "examples/abstracts.jsonl",
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(common::kpg_bin())
        .current_dir(repo())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn phrases(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn selector(dir: &Path, base: &Path, weight: f64, answer_by_cut: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let config = SelectorConfig {
        base_model: Some(base.to_str().unwrap().into()),
        max_candidates: Some(6),
        ranker_fusion: Some(RankerFusion {
            selector_weight: weight,
            present_threshold: None,
            answer_by_cut,
        }),
        ..Default::default()
    };
    config.write(dir).unwrap();
}

#[test]
fn fusion_cuts_the_whole_pool_over_moved_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let out = Command::new(common::kpg_bin())
        .args(["synth", "--arch", "llama", "--preset", "tiny", "--out"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success());
    let ranked = tag(&["--no-selector"]);
    let ranker: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("models/ranker/ranker.json")).unwrap(),
    )
    .unwrap();
    let cut: CutOptions = serde_json::from_value(ranker).unwrap();

    let (zero, one, by_cut) = (
        tmp.path().join("w0"),
        tmp.path().join("w1"),
        tmp.path().join("w1-by-cut"),
    );
    selector(&zero, &base, 0.0, false);
    selector(&one, &base, 1.0, false);
    selector(&by_cut, &base, 1.0, true);
    let at_zero = tag(&["--selector", zero.to_str().unwrap()]);
    let at_one = tag(&["--selector", one.to_str().unwrap()]);
    let answered_by_cut = tag(&["--selector", by_cut.to_str().unwrap()]);
    for (r, z) in ranked.iter().zip(&at_zero) {
        assert_eq!(
            phrases(&z["keyphrases"]),
            phrases(&r["keyphrases"]),
            "{}",
            r["id"]
        );
    }
    let changed = check_fused(&ranked, &at_one, &cut);
    assert!(
        changed > 0,
        "a weight-1 selector changed no document's keyphrases"
    );
    check_fused(&ranked, &answered_by_cut, &cut);
    // The first candidate's P(true) follows no answer; some later ones follow different answers.
    let mut moved = 0;
    for (g, c) in at_one.iter().zip(&answered_by_cut) {
        let (g, c) = (judged_by_score(g), judged_by_score(c));
        assert_eq!(g.len(), c.len());
        assert_eq!(g[0], c[0], "the first P(true) follows no answer");
        moved += g.iter().zip(&c).filter(|(a, b)| a != b).count();
    }
    assert!(moved > 0, "answering by the cut moved no P(true)");
}

/// (phrase, P(true)) of the judged candidates, highest ranker score first: the order the selector
/// read them in.
fn judged_by_score(doc: &Value) -> Vec<(String, f64)> {
    let mut judged: Vec<&Value> = doc["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("p_true").is_some())
        .collect();
    judged.sort_by(|a, b| {
        b["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["score"].as_f64().unwrap())
    });
    judged
        .iter()
        .map(|c| {
            (
                c["phrase"].as_str().unwrap().to_string(),
                c["p_true"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Checks a weight-1 fused tagging against `rank::fusion` over its own printed numbers; returns
/// how many documents' keyphrases differ from the ranker's.
fn check_fused(ranked: &[Value], fused: &[Value], cut: &CutOptions) -> usize {
    let mut changed = 0;
    for (r, o) in ranked.iter().zip(fused) {
        let pool = r["candidates"].as_array().unwrap();
        let cands = o["candidates"].as_array().unwrap();
        assert_eq!(cands.len(), pool.len(), "{}: the whole pool", r["id"]);
        // The six highest-scored were judged, the rest not.
        let mut by_score: Vec<&Value> = cands.iter().collect();
        by_score.sort_by(|a, b| {
            b["score"]
                .as_f64()
                .unwrap()
                .total_cmp(&a["score"].as_f64().unwrap())
        });
        for (k, c) in by_score.iter().enumerate() {
            assert_eq!(c.get("p_true").is_some(), k < 6, "{}: {c}", r["id"]);
        }
        let inputs: Vec<FusionInput> = cands
            .iter()
            .map(|c| FusionInput {
                ranker: c["score"].as_f64().unwrap(),
                present: c["present"].as_bool().unwrap(),
                p_true: c.get("p_true").map(|p| p.as_f64().unwrap() as f32),
            })
            .collect();
        let want = fuse_and_cut(&inputs, 1.0, None, cut);
        for (k, &(i, fused, kept)) in want.iter().enumerate() {
            let got = &cands[k];
            assert_eq!(got["phrase"], cands[i]["phrase"], "{}: order", r["id"]);
            assert!(
                (got["fused"].as_f64().unwrap() - fused).abs() < 1e-12,
                "{got}"
            );
            assert_eq!(got["selected"].as_bool().unwrap(), kept, "{got}");
        }
        let kept: Vec<String> = want
            .iter()
            .filter(|w| w.2)
            .map(|w| cands[w.0]["phrase"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(phrases(&o["keyphrases"]), kept);
        changed += usize::from(kept != phrases(&r["keyphrases"]));
    }
    changed
}
