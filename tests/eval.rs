//! `kpg eval` through the binary: hand-worked documents, the three prediction shapes, gzip gold,
//! clear errors on bad input, the table and the plot, and parity with tools/one2set_eval.py
//! (NLTK) on 30 Inspec documents.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixtures, kpg_bin};
use serde_json::{json, Value};

fn kpg_eval(args: &[&str]) -> Output {
    std::process::Command::new(kpg_bin())
        .arg("eval")
        .args(args)
        .output()
        .unwrap()
}

fn write_jsonl(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `kpg eval` and parses its JSON, failing on a non-zero exit.
fn eval_json(pred: &Path, gold: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "--pred",
        pred.to_str().unwrap(),
        "--gold",
        gold.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = kpg_eval(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_error(out: &Output, needles: &[&str]) {
    common::assert_usage_error(out, needles);
}

fn assert_metric(got: &Value, path: &[&str], want: f64, tol: f64) {
    let mut v = got;
    for p in path {
        v = &v[p];
    }
    let g = v
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {got}"));
    assert!(
        (g - want).abs() <= tol,
        "{path:?}: got {g}, want {want} (diff {:e})",
        (g - want).abs()
    );
}

/// Two hand-worked documents.
///
/// A: source stems `keyphras gener with set . we gener keyphras for scientif document , use optim
/// transport .`; gold present {keyphras gener, optim transport, scientif document}, absent
/// {set predict}. Predictions after filtering: present [keyphras gener ✓, optim transport ✓]
/// (the second "keyphrase generation" is a duplicate after stemming, "" is dropped), absent
/// [set predict ✓, neural model ✗]. B has no predictions.
fn hand_worked_gold() -> Vec<Value> {
    vec![
        json!({"id": "A", "title": "Keyphrase generation with sets",
               "abstract": "We generate keyphrases for scientific documents, using optimal transport.",
               "keyphrases": ["keyphrase generation", "optimal transport", "scientific documents", "set prediction"]}),
        json!({"id": "B", "title": "Deep learning", "abstract": "A survey.",
               "keyphrases": ["deep learning", "survey"]}),
    ]
}

const PREDS_A: [&str; 6] = [
    "Keyphrases Generation",
    "keyphrase generation",
    "optimal transports",
    "set prediction",
    "neural model",
    "",
];

#[test]
fn hand_worked_fewer_than_five_duplicates_and_no_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(tmp.path(), "gold.jsonl", &hand_worked_gold());
    let pred = write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[
            json!({"id": "B", "keyphrases": []}),
            json!({"id": "A", "keyphrases": PREDS_A}),
        ],
    );
    let got = eval_json(&pred, &gold, &[]);
    assert_eq!(got["documents"], 2);
    let t = 1e-12;
    // Present, A: 2 hits of 2 predictions, 3 gold; B: 0. @5 divides by 5.
    assert_metric(&got, &["present", "P@5"], (2.0 / 5.0) / 2.0, t);
    assert_metric(&got, &["present", "R@5"], (2.0 / 3.0) / 2.0, t);
    assert_metric(&got, &["present", "F1@5"], 0.25, t);
    assert_metric(&got, &["present", "P@M"], 0.5, t);
    assert_metric(&got, &["present", "R@M"], 1.0 / 3.0, t);
    assert_metric(&got, &["present", "F1@M"], 0.4, t);
    // Absent, A: 1 hit of 2 predictions, 1 gold; B: no absent gold, recall 0 but counted.
    assert_metric(&got, &["absent", "P@5"], 0.1, t);
    assert_metric(&got, &["absent", "R@5"], 0.5, t);
    assert_metric(&got, &["absent", "F1@5"], 1.0 / 6.0, t);
    assert_metric(&got, &["absent", "P@M"], 0.25, t);
    assert_metric(&got, &["absent", "R@M"], 0.5, t);
    assert_metric(&got, &["absent", "F1@M"], 1.0 / 3.0, t);
    // A: 10 stemmed tokens, 8 distinct; B: none.
    assert_metric(&got, &["dup_token_ratio"], 0.2 / 2.0, t);
}

#[test]
fn predictions_with_comma_period_or_unk_tokens_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(
        tmp.path(),
        "gold.jsonl",
        &[json!({"id": "C", "title": "Porter stemming",
                 "abstract": "An algorithm for suffix stripping, by Porter.",
                 "keyphrases": ["suffix stripping", "porter stemmer"]})],
    );
    let pred = write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[json!({"id": "C", "keyphrases": [
            "suffix stripping, by porter", "porter. stemming", "<UNK> stemming",
            "Porter stemmer", "suffix stripping"]})],
    );
    let got = eval_json(&pred, &gold, &[]);
    // Only "porter stemmer" (absent) and "suffix stripping" (present) remain, both right.
    for kind in ["present", "absent"] {
        assert_metric(&got, &[kind, "P@M"], 1.0, 1e-12);
        assert_metric(&got, &[kind, "R@M"], 1.0, 1e-12);
        assert_metric(&got, &[kind, "P@5"], 0.2, 1e-12);
    }
}

#[test]
fn three_prediction_shapes_and_gzip_gold_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(tmp.path(), "gold.jsonl", &hand_worked_gold());
    let candidates: Vec<Value> = PREDS_A
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"phrase": p, "score": 1.0 - i as f64 / 10.0, "slot": i, "present": i < 3}))
        .collect();
    let mut select_candidates = vec![json!({"phrase": "survey", "score": 0.99, "slot": 0})];
    select_candidates.extend(candidates.iter().cloned());
    let shapes = [
        json!({"id": "A", "keyphrases": PREDS_A}),
        json!({"id": "A", "candidates": candidates}),
        json!({"id": "A", "keyphrases": PREDS_A, "candidates": select_candidates}),
    ];
    let mut outputs = Vec::new();
    for (i, a) in shapes.iter().enumerate() {
        let pred = write_jsonl(
            tmp.path(),
            &format!("pred{i}.jsonl"),
            &[a.clone(), json!({"id": "B", "candidates": []})],
        );
        outputs.push(eval_json(&pred, &gold, &[]));
    }
    // Candidate lists (document B's empty one in every file) add the pool's recall: document A
    // has one with the second and third shapes only, so only their pools find gold.
    let pool_recall = |o: &Value| o["pool"]["present"]["recall_micro"].as_f64().unwrap();
    assert_eq!(pool_recall(&outputs[0]), 0.0);
    assert!(pool_recall(&outputs[1]) > 0.0);
    // The third shape's pool has one candidate more ("survey", not gold): same recall.
    assert_eq!(pool_recall(&outputs[1]), pool_recall(&outputs[2]));
    let gz_want = outputs[0].clone();
    for o in &mut outputs {
        o.as_object_mut().unwrap().remove("pool");
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);

    let gz = tmp.path().join("gold.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&gold).unwrap()).unwrap();
    enc.finish().unwrap();
    let pred = tmp.path().join("pred0.jsonl");
    assert_eq!(eval_json(&pred, &gz, &[]), gz_want);
}

#[test]
fn ids_on_one_side_only_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(tmp.path(), "gold.jsonl", &hand_worked_gold());
    let pred = write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[
            json!({"id": "A", "keyphrases": ["x"]}),
            json!({"id": "Z", "keyphrases": ["x"]}),
        ],
    );
    let args = [
        "--pred",
        pred.to_str().unwrap(),
        "--gold",
        gold.to_str().unwrap(),
    ];
    assert_error(
        &kpg_eval(&args),
        &["`Z`", "`B`", "pred.jsonl", "gold.jsonl", "only in"],
    );

    write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[json!({"id": "A", "keyphrases": []})],
    );
    assert_error(&kpg_eval(&args), &["1 only in", "`B`"]);
}

#[test]
fn bad_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(tmp.path(), "gold.jsonl", &hand_worked_gold());
    let g = gold.to_str().unwrap();
    let pred = tmp.path().join("pred.jsonl");
    let p = pred.to_str().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        (
            "{\"id\": \"A\", \"keyphrases\": []}\n{oops\n",
            &["line 2", "not valid JSON"],
        ),
        ("\n\n{\"keyphrases\": [\"x\"]}\n", &["line 3", "no `id`"]),
        (
            "{\"id\": \"A\", \"keyphrases\": [1]}\n",
            &["line 1", "`keyphrases`[0]"],
        ),
        (
            "{\"id\": \"A\", \"keyphrases\": []}\n{\"id\": \"A\", \"keyphrases\": []}\n",
            &["line 2", "duplicate id `A`", "line 1"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(&pred, text).unwrap();
        assert_error(&kpg_eval(&["--pred", p, "--gold", g]), needles);
    }
    std::fs::write(&pred, b"\x1f\x8bnot really gzip").unwrap();
    assert_error(&kpg_eval(&["--pred", p, "--gold", g]), &["pred.jsonl"]);
    std::fs::write(&pred, [0xff, 0xfe, b'\n']).unwrap();
    assert_error(&kpg_eval(&["--pred", p, "--gold", g]), &["line 1", "UTF-8"]);

    // A prediction file given as gold, a missing file, an empty gold file.
    write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[json!({"id": "A", "keyphrases": []})],
    );
    assert_error(
        &kpg_eval(&["--pred", p, "--gold", p]),
        &["line 1", "gold record", "title"],
    );
    assert_error(
        &kpg_eval(&["--pred", p, "--gold", "/nonexistent/gold.jsonl"]),
        &["gold.jsonl", "not found"],
    );
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert_error(
        &kpg_eval(&["--pred", p, "--gold", empty.to_str().unwrap()]),
        &["no gold documents"],
    );
    assert_error(
        &kpg_eval(&["--pred", p, "--gold", g, "--plot", "/nonexistent/dir/x.svg"]),
        &["--plot", "does not exist"],
    );
}

#[test]
fn table_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_jsonl(tmp.path(), "gold.jsonl", &hand_worked_gold());
    let pred = write_jsonl(
        tmp.path(),
        "pred.jsonl",
        &[
            json!({"id": "A", "keyphrases": PREDS_A}),
            json!({"id": "B", "keyphrases": ["deep learning"]}),
        ],
    );
    let svg = tmp.path().join("pr.svg");
    let out = kpg_eval(&[
        "--pred",
        pred.to_str().unwrap(),
        "--gold",
        gold.to_str().unwrap(),
        "--table",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("F1@5") && table.contains("F1@M"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("present")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("absent")), "{table}");
    assert!(table.contains("2 documents"), "{table}");
    assert!(serde_json::from_str::<Value>(&table).is_err());

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
    // Present: at most 2 predictions a document, so k = 1, 2; absent: k = 1, 2.
    assert_eq!(svg.matches("<circle").count(), 4);
}

/// Parity with the plain-Python One2Set protocol (tools/one2set_eval.py with NLTK), on the
/// fixture written by tools/make_eval_fixture.py.
#[test]
fn matches_the_python_one2set_script() {
    let dir = fixtures().join("eval");
    let got = eval_json(
        &dir.join("inspec30.pred.jsonl"),
        &dir.join("inspec30.gold.jsonl.gz"),
        &["--tokenized"],
    );
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inspec30.expected.json")).unwrap())
            .unwrap();
    assert_eq!(got["documents"], want["documents"]);
    for kind in ["present", "absent"] {
        for key in ["P@5", "R@5", "F1@5", "P@M", "R@M", "F1@M"] {
            assert_metric(&got, &[kind, key], want[kind][key].as_f64().unwrap(), 1e-6);
        }
    }
    assert_metric(
        &got,
        &["dup_token_ratio"],
        want["dup_token_ratio"].as_f64().unwrap(),
        1e-6,
    );
}
