//! The selector: constrained decoding equals greedy decoding over the whole vocabulary restricted to
//! the labels; a document's decisions do not depend on its batch, on prefix sharing or on the cache
//! size; bad records are reported in place; templates that tokenise badly fail at load. The
//! program (prompt, tokens, label slots) and the decisions are also held to a reference that
//! shares no code with kpg: transformers with the prompt rendered in Python
//! (`decisions_and_program_equal_transformers`).

mod common;

use std::path::Path;

use kpg::kv_cache::{BlockTable, CacheCapacity};
use kpg::model::llama::{LlamaWorkspace, LogitRows, SeqChunk};
use kpg::model::weights::DType;
use kpg::select::config::{AnswerFormat, SelectorConfig};
use kpg::select::document::{synthetic_document, to_input_line, SelectDocument};
use kpg::select::run::{numbered, select_lines, SelectOptions};
use kpg::select::scheduler::{decide, SchedulerOptions};
use kpg::select::{CandidateOrder, SelectMode, Selector};
use serde_json::Value;

fn synth_selector(dir: &Path, format: AnswerFormat) -> Selector {
    kpg::synth::synth_llama(
        &kpg::synth::llama_preset("tiny").unwrap(),
        DType::F32,
        42,
        dir,
    )
    .unwrap();
    SelectorConfig::for_format(format).write(dir).unwrap();
    Selector::load(dir).unwrap()
}

fn document(i: usize, words: usize, n_cand: usize) -> SelectDocument {
    synthetic_document(i, words, n_cand)
}

fn to_line(d: &SelectDocument) -> String {
    to_input_line(d)
}

fn run(selector: &Selector, docs: &[SelectDocument], opts: &SelectOptions) -> Vec<Value> {
    let lines: Vec<kpg::Result<String>> = docs.iter().map(|d| Ok(to_line(d))).collect();
    let mut out = Vec::new();
    select_lines(
        selector,
        numbered(lines),
        opts,
        |l| {
            out.push(serde_json::from_str(l).unwrap());
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    out
}

/// Greedy decoding token by token with the full LM head, restricted to the two labels at each
/// choice: the specification the constrained program must reproduce.
fn reference_decisions(selector: &Selector, doc: &SelectDocument) -> (Vec<bool>, Vec<f32>) {
    let (_, group) = selector
        .group(doc, CandidateOrder::Confidence, SelectMode::Sequence, false)
        .unwrap();
    let program = &group.members[0];
    let model = &selector.model;
    let mut cache = model.new_cache(CacheCapacity::Tokens(4096), 16).unwrap();
    let mut ws = LlamaWorkspace::default();
    let mut table = BlockTable::default();
    let vocab = model.config.vocab_size;
    let (mut selected, mut p_true) = (Vec::new(), Vec::new());
    let mut tokens = program.tokens.clone();
    let mut logits = Vec::new();
    let mut label = 0;
    #[allow(clippy::needless_range_loop)] // tokens[pos] is rewritten at labels before it is fed
    for pos in 0..tokens.len() {
        if label < program.labels.len() && program.labels[label].pos == pos {
            let ids = program.labels[label].ids;
            let (lt, lf) = (logits[ids[0] as usize], logits[ids[1] as usize]);
            // Restricted greedy: the argmax of the full row over the two label ids.
            let yes = if lt == lf { ids[0] < ids[1] } else { lt > lf };
            let (dec, p) = decide(lt, lf, ids);
            assert_eq!(dec, yes);
            selected.push(yes);
            p_true.push(p);
            tokens[pos] = if yes { ids[0] } else { ids[1] };
            label += 1;
            if label == program.labels.len() {
                break;
            }
        }
        let tok = [tokens[pos]];
        let mut batch = [SeqChunk {
            table: &mut table,
            tokens: &tok,
        }];
        logits = model
            .forward(&mut cache, &mut ws, &mut batch, LogitRows::Last)
            .unwrap()[..vocab]
            .to_vec();
    }
    (selected, p_true)
}

fn decisions(v: &Value) -> (Vec<bool>, Vec<f32>) {
    let c = v["candidates"]
        .as_array()
        .unwrap_or_else(|| panic!("not a selection: {v}"));
    (
        c.iter().map(|c| c["selected"].as_bool().unwrap()).collect(),
        c.iter()
            .map(|c| c["p_true"].as_f64().unwrap() as f32)
            .collect(),
    )
}

fn assert_same(what: &str, a: &Value, b: &Value) {
    let (da, pa) = decisions(a);
    let (db, pb) = decisions(b);
    assert_eq!(da, db, "{what}: decisions differ for {}", a["id"]);
    for (x, y) in pa.iter().zip(&pb) {
        assert!(
            (x - y).abs() <= 1e-5,
            "{what}: p_true {x} vs {y} for {}",
            a["id"]
        );
    }
    assert_eq!(a["keyphrases"], b["keyphrases"], "{what}");
}

#[test]
fn constrained_decoding_equals_restricted_greedy_in_both_formats() {
    for format in [AnswerFormat::Labels, AnswerFormat::Interleaved] {
        let tmp = tempfile::tempdir().unwrap();
        let selector = synth_selector(tmp.path(), format);
        let docs: Vec<SelectDocument> = (0..4).map(|i| document(i, 5 + 9 * i, 1 + 2 * i)).collect();
        let got = run(&selector, &docs, &SelectOptions::default());
        for (doc, out) in docs.iter().zip(&got) {
            let (want_sel, want_p) = reference_decisions(&selector, doc);
            let (sel, p) = decisions(out);
            assert_eq!(sel, want_sel, "{format:?} {}", doc.id);
            for (a, b) in p.iter().zip(&want_p) {
                assert!((a - b).abs() <= 1e-5, "{format:?} {}: {a} vs {b}", doc.id);
            }
        }
    }
}

#[test]
fn a_document_gets_the_same_answer_alone_and_in_a_batch_of_fifty() {
    let tmp = tempfile::tempdir().unwrap();
    let selector = synth_selector(tmp.path(), AnswerFormat::Labels);
    let docs: Vec<SelectDocument> = (0..51)
        .map(|i| document(i, 3 + (i * 11) % 60, (i * 5) % 9))
        .collect();
    let opts = SelectOptions {
        scheduler: SchedulerOptions {
            max_batch_tokens: 300,
            ..SchedulerOptions::default()
        },
        ..SelectOptions::default()
    };
    let together = run(&selector, &docs, &opts);
    assert_eq!(together.len(), docs.len());
    for (k, i) in [0usize, 17, 50].into_iter().enumerate() {
        let alone = run(&selector, &docs[i..=i], &opts);
        assert_eq!(together[i]["id"], docs[i].id.to_string(), "order kept");
        assert_same(&format!("doc {i} (check {k})"), &together[i], &alone[0]);
    }
}

#[test]
fn prefix_sharing_and_cache_pressure_do_not_change_results() {
    let tmp = tempfile::tempdir().unwrap();
    let selector = synth_selector(tmp.path(), AnswerFormat::Labels);
    let docs: Vec<SelectDocument> = (0..12)
        .map(|i| document(i, 10 + i * 4, 2 + i % 4))
        .collect();
    let base = run(&selector, &docs, &SelectOptions::default());
    let variants = [
        (
            "no prefix sharing",
            SchedulerOptions {
                share_prefix: false,
                ..Default::default()
            },
        ),
        // Room for the root and one or two documents at a time: admission must wait.
        (
            "small cache",
            SchedulerOptions {
                cache: CacheCapacity::Tokens(16 * 30),
                block_size: 16,
                ..Default::default()
            },
        ),
        (
            "tiny blocks",
            SchedulerOptions {
                cache: CacheCapacity::Tokens(450),
                block_size: 3,
                max_batch_tokens: 7,
                ..Default::default()
            },
        ),
    ];
    for (what, sched) in variants {
        let opts = SelectOptions {
            scheduler: sched.clone(),
            ..SelectOptions::default()
        };
        let lines: Vec<kpg::Result<String>> = docs.iter().map(|d| Ok(to_line(d))).collect();
        let mut got: Vec<Value> = Vec::new();
        let summary = select_lines(
            &selector,
            numbered(lines),
            &opts,
            |l| {
                got.push(serde_json::from_str(l).unwrap());
                Ok(())
            },
            |_| {},
        )
        .unwrap();
        for (a, b) in got.iter().zip(&base) {
            assert_same(what, a, b);
        }
        if let CacheCapacity::Tokens(capacity) = sched.cache {
            // The documents together need more than the cache holds, so some had to wait.
            let blocks = capacity.div_ceil(sched.block_size);
            assert!(summary.stats.peak_blocks_in_use <= blocks);
            if what != "no prefix sharing" {
                assert!(
                    summary.stats.prompt_tokens > 2 * capacity,
                    "{what}: the cache was not under pressure"
                );
            }
        }
    }
}

#[test]
fn rerank_scores_each_candidate_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let selector = synth_selector(tmp.path(), AnswerFormat::Labels);
    let docs: Vec<SelectDocument> = (0..3).map(|i| document(i, 12, 4)).collect();
    let opts = |top_k| SelectOptions {
        mode: SelectMode::Rerank {
            threshold: 0.5,
            top_k,
        },
        ..SelectOptions::default()
    };
    let all = run(&selector, &docs, &opts(None));
    let top2 = run(&selector, &docs, &opts(Some(2)));
    for (doc, (a, t)) in docs.iter().zip(all.iter().zip(&top2)) {
        // One candidate alone gives the same P(true) as among its siblings.
        let single = SelectDocument {
            candidates: vec![doc.candidates[1].clone()],
            ..doc.clone()
        };
        let alone = run(&selector, &[single], &opts(None));
        let (_, p) = decisions(a);
        let (_, p_alone) = decisions(&alone[0]);
        let presented = a["candidates"].as_array().unwrap();
        let k = presented
            .iter()
            .position(|c| c["phrase"] == doc.candidates[1].phrase.as_str())
            .unwrap();
        assert!((p[k] - p_alone[0]).abs() <= 1e-5);
        assert_eq!(t["keyphrases"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn candidate_order_follows_confidence_unless_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let selector = synth_selector(tmp.path(), AnswerFormat::Labels);
    let doc = document(3, 8, 5);
    let sorted = &run(
        &selector,
        std::slice::from_ref(&doc),
        &SelectOptions::default(),
    )[0];
    let scores: Vec<f64> = sorted["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let opts = SelectOptions {
        order: CandidateOrder::Given,
        ..SelectOptions::default()
    };
    let kept = &run(&selector, std::slice::from_ref(&doc), &opts)[0];
    let phrases: Vec<&str> = kept["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phrase"].as_str().unwrap())
        .collect();
    let given: Vec<&str> = doc.candidates.iter().map(|c| c.phrase.as_str()).collect();
    assert_eq!(phrases, given);
}

#[test]
fn labels_that_are_not_single_tokens_fail_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    synth_selector(tmp.path(), AnswerFormat::Labels);
    let mut config = SelectorConfig::default();
    config.labels.yes = "True".into();
    config.labels.no = "False".into();
    config.write(tmp.path()).unwrap();
    let err = Selector::load(tmp.path())
        .err()
        .expect("multi-token labels must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("True") && msg.contains("exactly one"),
        "{msg}"
    );
}

#[test]
fn command_line_reports_bad_records_in_place_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sel");
    let status = std::process::Command::new(common::kpg_bin())
        .args(["synth", "--preset", "tiny", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let good = to_line(&document(1, 10, 3));
    let long = to_line(&SelectDocument {
        abstract_: "x".repeat(5000),
        ..document(2, 1, 2)
    });
    let mut input = Vec::new();
    for line in [
        good.as_str(),
        "",
        "{not json",
        r#"{"id": "m", "title": "t", "candidates": []}"#,
        r#"{"id": "b", "title": "t", "abstract": "a", "candidates": [{"phrase": "two\nlines", "score": 1}]}"#,
        long.as_str(),
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"id\": \"u\", \"title\": \"\xff\xfe\"}\n");
    input.extend_from_slice(good.as_bytes());
    input.push(b'\n');
    let path = tmp.path().join("in.jsonl");
    std::fs::write(&path, &input).unwrap();
    let out = std::process::Command::new(common::kpg_bin())
        .args(["select", "--selector"])
        .arg(&dir)
        .arg("--input")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["id"], "doc-1");
    assert!(lines[0]["candidates"].as_array().unwrap().len() == 3);
    let err = |i: usize| lines[i]["error"].as_str().unwrap().to_string();
    // The blank line is no record, but it counts in the line numbers.
    assert!(
        err(1).contains("line 3") && err(1).contains("JSON"),
        "{}",
        err(1)
    );
    assert!(
        err(2).contains("abstract") && lines[2]["id"] == "m",
        "{}",
        err(2)
    );
    assert!(
        err(3).contains("line break") && lines[3]["id"] == "b",
        "{}",
        err(3)
    );
    assert!(err(4).contains("at most"), "{}", err(4));
    assert!(err(5).contains("UTF-8"), "{}", err(5));
    assert_eq!(lines[6], lines[0], "the same document gives the same line");
}

#[test]
fn a_document_larger_than_the_cache_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let selector = synth_selector(tmp.path(), AnswerFormat::Labels);
    let docs = [document(0, 5, 2), document(1, 400, 2), document(2, 5, 2)];
    let opts = SelectOptions {
        scheduler: SchedulerOptions {
            cache: CacheCapacity::Tokens(16 * 30),
            ..Default::default()
        },
        ..SelectOptions::default()
    };
    let lines: Vec<kpg::Result<String>> = docs.iter().map(|d| Ok(to_line(d))).collect();
    let mut out = Vec::new();
    let summary = select_lines(
        &selector,
        numbered(lines),
        &opts,
        |l| {
            out.push(l.to_string());
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.failed, 1);
    assert!(out[1].contains("cache"), "{}", out[1]);
    assert!(out[0].contains("doc-0") && out[2].contains("doc-2"));
}

/// A template's `keep_threshold` decides by P(true) instead of the likelier label: each kept
/// candidate has P(true) at or above it, each dropped one below, and a threshold between the
/// probabilities greedy decoding sees changes the decisions.
#[test]
fn keep_threshold_decides_by_p_true() {
    let dir = tempfile::tempdir().unwrap();
    let greedy = synth_selector(dir.path(), AnswerFormat::Labels);
    let docs: Vec<SelectDocument> = (0..6).map(|i| document(i, 30, 6)).collect();
    let opts = SelectOptions::default();
    let base = run(&greedy, &docs, &opts);
    let mut ps: Vec<f32> = base.iter().flat_map(|v| decisions(v).1).collect();
    ps.sort_by(f32::total_cmp);
    let threshold = ps[ps.len() / 2];
    let mut config = SelectorConfig::for_format(AnswerFormat::Labels);
    config.keep_threshold = Some(threshold);
    config.write(dir.path()).unwrap();
    let thresholded = Selector::load(dir.path()).unwrap();
    let out = run(&thresholded, &docs, &opts);
    let mut changed = false;
    for (a, b) in out.iter().zip(&base) {
        let (kept, p) = decisions(a);
        for (k, p) in kept.iter().zip(&p) {
            assert_eq!(*k, *p >= threshold, "P(true) {p} against {threshold}");
        }
        changed |= kept != decisions(b).0;
    }
    assert!(changed, "a median threshold changed no decision");
    config.keep_threshold = Some(1.5);
    config.write(dir.path()).unwrap();
    let err = Selector::load(dir.path())
        .err()
        .expect("a threshold above 1 is refused");
    assert!(err.to_string().contains("keep_threshold"), "{err}");
}

/// A template's `max_candidates` shows the selector only a record's highest-scored candidates, in
/// the order it would have shown them, and their decisions are those of a record that had only
/// them.
#[test]
fn max_candidates_shows_the_best_scored_only() {
    let dir = tempfile::tempdir().unwrap();
    synth_selector(dir.path(), AnswerFormat::Interleaved);
    let mut config = SelectorConfig::for_format(AnswerFormat::Interleaved);
    config.max_candidates = Some(3);
    config.write(dir.path()).unwrap();
    let selector = Selector::load(dir.path()).unwrap();
    let docs: Vec<SelectDocument> = (0..4).map(|i| document(i, 25, 7)).collect();
    let mut cut: Vec<SelectDocument> = docs.clone();
    for d in &mut cut {
        d.candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        d.candidates.truncate(3);
    }
    let opts = SelectOptions::default();
    let (full, alone) = (run(&selector, &docs, &opts), run(&selector, &cut, &opts));
    for (a, b) in full.iter().zip(&alone) {
        assert_eq!(a["candidates"].as_array().unwrap().len(), 3);
        assert_same("max_candidates", a, b);
    }
}

/// Held to transformers, with nothing of kpg's prompt code on the reference side: for the tiny
/// synthetic selector (seed 42) in both answer formats, `tests/fixtures/selector/transformers.json`
/// (from `tools/make_selector_fixture.py`: the prompt rendered in Python from the template,
/// tokenised by the tokenizers library through transformers, each label decided by
/// `LlamaForCausalLM` over the whole prefix) gives the program's tokens with the decisions
/// written in, the decisions and P(true), which kpg must reproduce. If `kpg synth` ever changes
/// its weights, regenerate the fixture.
#[test]
fn decisions_and_program_equal_transformers() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("selector/transformers.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    kpg::synth::synth_llama(
        &kpg::synth::llama_preset("tiny").unwrap(),
        DType::F32,
        42,
        dir.path(),
    )
    .unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let config: SelectorConfig = serde_json::from_value(case["template"].clone()).unwrap();
        config.write(dir.path()).unwrap();
        let selector = Selector::load(dir.path()).unwrap();
        let format = case["format"].as_str().unwrap();
        for d in case["documents"].as_array().unwrap() {
            let line = d["record"].to_string();
            let doc = kpg::select::document::parse_document(&line, 1).unwrap();
            // The program, with the reference's decisions written into its label slots.
            let (_, group) = selector
                .group(
                    &doc,
                    CandidateOrder::Confidence,
                    SelectMode::Sequence,
                    false,
                )
                .unwrap();
            let program = &group.members[0];
            let want_selected: Vec<bool> = serde_json::from_value(d["selected"].clone()).unwrap();
            let mut tokens = program.tokens.clone();
            for (slot, &keep) in program.labels.iter().zip(&want_selected) {
                tokens[slot.pos] = slot.ids[usize::from(!keep)];
            }
            let want_ids: Vec<u32> = serde_json::from_value(d["ids"].clone()).unwrap();
            assert_eq!(tokens, want_ids, "{format} {}: program tokens", doc.id);

            let out = run(
                &selector,
                std::slice::from_ref(&doc),
                &SelectOptions::default(),
            );
            let (selected, p_true) = decisions(&out[0]);
            let want_p: Vec<f32> = serde_json::from_value(d["p_true"].clone()).unwrap();
            assert_eq!(selected, want_selected, "{format} {}", doc.id);
            common::assert_close(
                &format!("{format} {} P(true)", doc.id),
                &p_true,
                &want_p,
                1e-4,
                0.0,
            );
        }
    }
}
