//! The default ranker (`models/ranker`) and the default `kpg tag` path: kpg's tree evaluation held
//! to LightGBM's own probabilities (`tools/train_ranker.py` writes the fixture with the model), the
//! default tagger on hand-made documents (what it must find, what it must never emit), and named
//! errors for a damaged ranker directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, kpg_bin};
use kpg::rank::trees::probability;
use kpg::rank::{Ranker, DEFAULT_RANKER};
use kpg::select::config::SelectorConfig;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_ranker() -> Ranker {
    Ranker::load(&repo().join(DEFAULT_RANKER)).expect("models/ranker loads")
}

#[test]
fn trees_match_lightgbm() {
    let ranker = default_ranker();
    let text = std::fs::read_to_string(fixtures().join("ranker_parity.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let rows = fixture["rows"].as_array().unwrap();
    let want = fixture["probability"].as_array().unwrap();
    assert!(rows.len() >= 100);
    let mut worst = 0f64;
    for (row, want) in rows.iter().zip(want) {
        let x: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = probability(&ranker.trees, &x);
        worst = worst.max((got - want.as_f64().unwrap()).abs());
    }
    // Same trees, same double sums; only the summation order of the leaves may differ.
    assert!(worst < 1e-12, "worst |kpg - LightGBM| = {worst:e}");
}

fn tag(input: &str) -> (Output, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, input).unwrap();
    let out = Command::new(kpg_bin())
        .current_dir(repo())
        .args(["tag", "--input", path.to_str().unwrap()])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

/// Whether `kpg tag` run from the repository root uses `models/selector`: it is there and so is
/// the base model it names (`tools/fetch-models.sh`).
fn default_selector_is_ready() -> bool {
    let dir = repo().join("models/selector");
    if !dir.join("kpg_selector.json").is_file() {
        return false;
    }
    let config = SelectorConfig::from_dir(&dir).unwrap();
    config
        .base_model
        .is_some_and(|base| dir.join(base).exists())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_tag_finds_the_document_topic_and_never_junk() {
    let docs = [
        (
            "ot",
            "Optimal transport for keyphrase generation",
            "We assign keyphrase targets to control codes with optimal transport. Optimal \
             transport gives each control code a share of every target (see Table 3, p. 12), \
             and keyphrase generation improves on <digit> benchmarks, e.g. 2024's. <unk> <eos>",
        ),
        (
            "wsn",
            "Energy-efficient routing in wireless sensor networks",
            "Wireless sensor networks have tight energy budgets. We propose a routing protocol \
             that balances energy consumption across sensor nodes; simulations with 100 nodes \
             show that the routing protocol extends network lifetime by 35%.",
        ),
    ];
    let input: String = docs
        .iter()
        .map(|(id, t, a)| {
            serde_json::json!({"id": id, "title": t, "abstract": a}).to_string() + "\n"
        })
        .collect();
    let (out, lines) = tag(&input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), 2);
    let with_selector = default_selector_is_ready();
    if !with_selector {
        eprintln!("no default selector with its base model here: the ranker's cut alone");
    }
    for line in &lines {
        let keyphrases = strings(&line["keyphrases"]);
        let candidates = line["candidates"].as_array().unwrap();
        assert!(keyphrases.len() >= 5, "topped up to five: {keyphrases:?}");
        assert!(candidates.len() <= 30 && candidates.len() >= keyphrases.len());
        for c in candidates {
            let phrase = c["phrase"].as_str().unwrap();
            let tokens: Vec<&str> = phrase.split(' ').collect();
            assert!(
                !tokens
                    .iter()
                    .any(|t| ["<eos>", "<unk>", ",", ".", "(", ")", "'"].contains(t)),
                "junk candidate {phrase:?}"
            );
            assert!(
                !tokens.iter().all(|t| *t == "<digit>"),
                "digit-only {phrase:?}"
            );
            let source = c["source"].as_str().unwrap();
            assert!(
                !source.is_empty()
                    && source
                        .split('+')
                        .all(|s| ["extractor", "generator", "retrieval"].contains(&s)),
                "{source}"
            );
            let p = c["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
        }
        // Ranked: most probable first (by the fused probability when the default selector ran).
        let order = if with_selector { "fused" } else { "score" };
        let scores: Vec<f64> = candidates
            .iter()
            .map(|c| c[order].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{order}");
        // The default selector judged the best-scored candidates.
        assert_eq!(
            candidates.iter().any(|c| c.get("p_true").is_some()),
            with_selector
        );
    }
    let top = |i: usize| strings(&lines[i]["keyphrases"])[..3].to_vec();
    assert!(
        top(0).contains(&"optimal transport".to_string()),
        "{:?}",
        top(0)
    );
    assert!(
        top(1).iter().any(|k| k.contains("sensor network")),
        "{:?}",
        top(1)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_damaged_ranker_directory_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("ranker");
    copy_dir(&repo().join(DEFAULT_RANKER), &r);
    let json_path = r.join("ranker.json");
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();

    let mut v = original.clone();
    v["features"][3] = Value::String("something_else".into());
    std::fs::write(&json_path, v.to_string()).unwrap();
    let e = Ranker::load(&r).err().unwrap().to_string();
    assert!(e.contains("ranker.json") && e.contains("position 3"), "{e}");

    let mut v = original.clone();
    v["trees"][0]["left"][0] = Value::from(0);
    std::fs::write(&json_path, v.to_string()).unwrap();
    let e = Ranker::load(&r).err().unwrap().to_string();
    assert!(e.contains("trees[0]") && e.contains("invalid child"), "{e}");

    std::fs::write(&json_path, original.to_string()).unwrap();
    std::fs::remove_file(r.join("phrases.tsv.gz")).unwrap();
    let e = Ranker::load(&r).err().unwrap().to_string();
    assert!(
        e.contains("phrases.tsv.gz") && e.contains("not found"),
        "{e}"
    );

    // Through the CLI: exit 2 and the file named on one line.
    let out = Command::new(kpg_bin())
        .current_dir(repo())
        .args([
            "tag",
            "--ranker",
            r.to_str().unwrap(),
            "--input",
            "examples/abstracts.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("phrases.tsv.gz"));
}
