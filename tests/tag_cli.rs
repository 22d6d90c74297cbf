//! `kpg tag` driven through the real binary with tiny random-weight models: one output line per
//! input record, in order, whatever the records hold; `kill -9` then `--resume`; `--shard`
//! partitions; and the pipeline's output equal to `kpg generate` then `kpg select` by hand.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::kpg_bin;
use serde_json::{json, Value};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn kpg(args: &[&str]) -> Output {
    Command::new(kpg_bin()).args(args).output().unwrap()
}

fn kpg_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(kpg_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    lines(std::str::from_utf8(&out.stdout).unwrap())
}

fn synth(arch: &str, dir: &Path) -> PathBuf {
    ok(&kpg(&[
        "synth",
        "--arch",
        arch,
        "--preset",
        "tiny",
        "--out",
        s(dir),
    ]));
    dir.to_path_buf()
}

const WORDS: [&str; 16] = [
    "optimal",
    "transport",
    "keyphrase",
    "generation",
    "graph",
    "neural",
    "network",
    "attention",
    "retrieval",
    "index",
    "language",
    "model",
    "sparse",
    "learning",
    "control",
    "code",
];

fn doc(i: usize, words: usize) -> Value {
    let w = |k: usize| WORDS[(i * 7 + k * 5 + k * k) % WORDS.len()];
    json!({
        "id": format!("d{i}"),
        "title": format!("{} {} for {} {}", w(0), w(1), w(2), w(3)),
        "abstract": (0..words).map(|k| w(k + 4)).collect::<Vec<_>>().join(" "),
    })
}

fn corpus(n: usize, words: usize) -> String {
    (0..n).map(|i| format!("{}\n", doc(i, words))).collect()
}

fn ids(v: &[Value]) -> Vec<Value> {
    v.iter().map(|l| l["id"].clone()).collect()
}

#[test]
fn every_record_gets_one_line_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"));
    let mut input: Vec<u8> = Vec::new();
    let mut want: Vec<(Value, bool)> = Vec::new(); // (id, is an error)
    let mut push = |line: &[u8], id: Value, error: bool| {
        input.extend_from_slice(line);
        input.push(b'\n');
        want.push((id, error));
    };
    push(doc(0, 30).to_string().as_bytes(), json!("d0"), false);
    push(b"{not json", Value::Null, true);
    push(
        br#"{"id": "empty", "title": " ", "abstract": ""}"#,
        json!("empty"),
        true,
    );
    push(
        br#"{"id": "no-abstract", "title": "x"}"#,
        json!("no-abstract"),
        true,
    );
    push(br#"{"title": "no id", "abstract": "y"}"#, Value::Null, true);
    push(
        br#"{"id": "", "title": "empty id", "abstract": "y"}"#,
        json!(""),
        true,
    );
    push(
        b"{\"id\": \"latin1\", \"title\": \"caf\xe9\", \"abstract\": \"x\"}",
        Value::Null,
        true,
    );
    // Longer than the tiny generator's 512 source tokens: cut, with a warning.
    push(doc(7, 700).to_string().as_bytes(), json!("d7"), false);
    push(
        br#"{"id": 42, "title": "numeric id", "abstract": "graph neural network"}"#,
        json!(42), // ids come back as written (issue 17)
        false,
    );
    // Blank lines before it are not records.
    push(
        format!("\n   \n{}", doc(9, 40)).as_bytes(),
        json!("d9"),
        false,
    );

    let out = kpg_stdin(
        &[
            "tag",
            "--generator",
            s(&gen),
            "--no-selector",
            "--batch-docs",
            "3",
        ],
        &input,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = stdout_lines(&out);
    assert_eq!(got.len(), want.len(), "one line per record");
    for (line, (id, error)) in got.iter().zip(&want) {
        assert_eq!(&line["id"], id, "{line}");
        assert_eq!(line.get("error").is_some(), *error, "{line}");
        if !error {
            let c = line["candidates"].as_array().unwrap();
            assert!(c.iter().all(|c| c.get("p_true").is_none()), "{line}");
            let n = line["keyphrases"].as_array().unwrap().len();
            let (p, a) = (line["present"].as_array(), line["absent"].as_array());
            assert_eq!(n, p.unwrap().len() + a.unwrap().len(), "{line}");
        }
    }
    assert!(got[1]["error"].as_str().unwrap().contains("line 2"));
    assert!(got[2]["error"].as_str().unwrap().contains("empty"));
    assert!(got[6]["error"].as_str().unwrap().contains("UTF-8"));
    let warnings = got[7]["warnings"].as_array().expect("a warning for d7");
    assert!(
        warnings[0].as_str().unwrap().contains("512"),
        "{warnings:?}"
    );
    assert!(got[0].get("warnings").is_none());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("10 documents (6 failed, 1 with warnings)"),
        "{stderr}"
    );

    // Without the ranker, threshold 0: every generator candidate is a keyphrase.
    let good = corpus(3, 30);
    let out = kpg_stdin(
        &[
            "tag",
            "--generator",
            s(&gen),
            "--no-ranker",
            "--threshold",
            "0",
        ],
        good.as_bytes(),
    );
    ok(&out);
    for line in stdout_lines(&out) {
        let c = line["candidates"].as_array().unwrap();
        assert!(!c.is_empty());
        assert_eq!(line["keyphrases"].as_array().unwrap().len(), c.len());
    }
}

#[test]
fn no_generator_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(kpg_bin())
        .args(["tag", "--input", "-"])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    common::assert_usage_error(&out, &["no generator", "models/generator", "--generator"]);
}

#[test]
fn kill_nine_then_resume_gives_every_id_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"));
    let n = 3000;
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(n, 60)).unwrap();
    let output = tmp.path().join("out.jsonl");
    let args = [
        "tag",
        "--generator",
        s(&gen),
        "--no-selector",
        "--input",
        s(&input),
        "--output",
        s(&output),
        "--batch-docs",
        "4",
        "--resume",
    ];
    let mut child = Command::new(kpg_bin())
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let written = std::fs::read(&output).unwrap_or_default();
        if written.iter().filter(|&&b| b == b'\n').count() >= 40 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no output");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = std::fs::read_to_string(&output).unwrap();
    let done = killed.lines().count();
    assert!(done < n, "the run finished before it was killed");
    // Whatever the kill left, also tear a line as a kill in mid-write would.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&output)
        .unwrap();
    if killed.ends_with('\n') {
        f.write_all(b"{\"id\":\"d").unwrap();
    }
    drop(f);

    let out = kpg(&args);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming after"), "{stderr}");
    let got = lines(&std::fs::read_to_string(&output).unwrap());
    let want: Vec<Value> = (0..n).map(|i| json!(format!("d{i}"))).collect();
    assert_eq!(ids(&got), want);

    // Resuming a finished file adds nothing; resuming with another input is refused.
    ok(&kpg(&args));
    assert_eq!(lines(&std::fs::read_to_string(&output).unwrap()).len(), n);
    let other = tmp.path().join("other.jsonl");
    std::fs::write(&other, corpus(n + 5, 60).replace("\"d", "\"x")).unwrap();
    let mut other_args = args.to_vec();
    other_args[5] = s(&other);
    common::assert_usage_error(&kpg(&other_args), &["--resume", "input differs"]);
}

#[test]
fn shards_cover_the_input_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"));
    let n = 20;
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(n, 20)).unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = kpg(&[
            "tag",
            "--generator",
            s(&gen),
            "--no-selector",
            "--input",
            s(&input),
            "--shard",
            &shard,
        ]);
        ok(&out);
        let got = ids(&stdout_lines(&out));
        let want: Vec<Value> = (i..n).step_by(3).map(|k| json!(format!("d{k}"))).collect();
        assert_eq!(got, want, "shard {shard}");
        seen.extend(got);
    }
    seen.sort_by_key(|v| v.as_str().unwrap()[1..].parse::<usize>().unwrap());
    let all: Vec<Value> = (0..n).map(|k| json!(format!("d{k}"))).collect();
    assert_eq!(seen, all);
    for bad in ["3/3", "1", "x/2"] {
        let out = kpg(&["tag", "--generator", s(&gen), "--shard", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn tag_equals_generate_then_select() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"));
    let sel = synth("llama", &tmp.path().join("sel"));
    let docs: Vec<Value> = (0..6).map(|i| doc(i, 20 + 7 * i)).collect();
    let input = tmp.path().join("in.jsonl");
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(&input, &text).unwrap();

    let generated = kpg(&["generate", "--generator", s(&gen), "--input", s(&input)]);
    ok(&generated);
    let generated = stdout_lines(&generated);
    let select_input: String = docs
        .iter()
        .zip(&generated)
        .map(|(d, g)| {
            let mut d = d.clone();
            d["candidates"] = g["candidates"].clone();
            format!("{d}\n")
        })
        .collect();
    let selected = kpg_stdin(&["select", "--selector", s(&sel)], select_input.as_bytes());
    ok(&selected);
    let selected = stdout_lines(&selected);

    let tagged = kpg(&[
        "tag",
        "--generator",
        s(&gen),
        "--no-ranker",
        "--selector",
        s(&sel),
        "--input",
        s(&input),
    ]);
    ok(&tagged);
    let tagged = stdout_lines(&tagged);
    assert_eq!(tagged.len(), docs.len());
    let mut decisions = 0;
    for ((t, sel), g) in tagged.iter().zip(&selected).zip(&generated) {
        assert_eq!(t["id"], sel["id"]);
        assert_eq!(t["keyphrases"], sel["keyphrases"], "{}", t["id"]);
        let (tc, sc) = (
            t["candidates"].as_array().unwrap(),
            sel["candidates"].as_array().unwrap(),
        );
        assert_eq!(tc.len(), sc.len());
        let present: std::collections::HashMap<&str, bool> = g["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["phrase"].as_str().unwrap(),
                    c["present"].as_bool().unwrap(),
                )
            })
            .collect();
        for (a, b) in tc.iter().zip(sc) {
            assert_eq!(a["phrase"], b["phrase"]);
            assert_eq!(a["score"], b["score"]);
            assert_eq!(a["selected"], b["selected"]);
            let (pa, pb) = (a["p_true"].as_f64().unwrap(), b["p_true"].as_f64().unwrap());
            assert!((pa - pb).abs() <= 1e-5, "p_true {pa} vs {pb}");
            assert_eq!(
                a["present"].as_bool(),
                present.get(a["phrase"].as_str().unwrap()).copied()
            );
            decisions += 1;
        }
        let split: Vec<&Value> = tc.iter().filter(|c| c["selected"] == true).collect();
        let present_kp: Vec<&Value> = split
            .iter()
            .filter(|c| c["present"] == true)
            .map(|c| &c["phrase"])
            .collect();
        assert_eq!(
            t["present"].as_array().unwrap().iter().collect::<Vec<_>>(),
            present_kp
        );
    }
    assert!(
        decisions > 0,
        "no candidates at all: the comparison is empty"
    );
}

#[test]
fn a_prompt_longer_than_the_selector_takes_is_cut_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"));
    let sel = synth("llama", &tmp.path().join("sel"));
    // About 3,000 words: past the generator's 512 tokens and the tiny selector's 4,096 positions.
    let input = format!("{}\n{}\n", doc(0, 3000), doc(1, 30));
    let out = kpg_stdin(
        &["tag", "--generator", s(&gen), "--selector", s(&sel)],
        input.as_bytes(),
    );
    ok(&out);
    let got = stdout_lines(&out);
    assert_eq!(ids(&got), vec![json!("d0"), json!("d1")]);
    let warnings: Vec<&str> = got[0]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("generator read the first 512"));
    assert!(warnings[1].contains("ranker read the first 2048 tokens"));
    assert!(warnings[2].contains("selector's context of 4096 tokens"));
    assert!(got[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["p_true"].is_number()));
    assert!(got[1].get("warnings").is_none());
}

/// A record of another shape gets an error line that names the field and the shape expected.
#[test]
fn a_record_of_another_shape_names_the_expected_schema() {
    let input = concat!(
        r#"{"id": 1, "text": "a document in the wrong field"}"#,
        "\n",
        r#"{"id": 2, "title": 5, "abstract": "b"}"#,
        "\n"
    );
    let out = kpg_stdin(&["tag"], input.as_bytes());
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2);
    let e0 = lines[0]["error"].as_str().unwrap();
    assert!(
        e0.contains("missing field `title`") && e0.contains(r#""abstract": string"#),
        "{e0}"
    );
    let e1 = lines[1]["error"].as_str().unwrap();
    assert!(
        e1.contains("`title` must be a string") && e1.contains("expected {"),
        "{e1}"
    );
}
