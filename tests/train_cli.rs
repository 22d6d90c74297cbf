//! `kpg train generator` driven as a real binary on a slice of the ACM-CR training corpus
//! (tests/fixtures/acmcr): the loss falls, the result is a generator that `kpg generate` loads and
//! that writes phrases, a killed run resumes to the same weights as an uninterrupted one, and a
//! resume with other options is refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, kpg_bin};

fn data(name: &str) -> PathBuf {
    fixtures().join("acmcr").join(name)
}

fn train_args(out: &Path, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "generator",
        "--preset",
        "tiny",
        "--train",
        data("train400.jsonl.gz").to_str().unwrap(),
        "--valid",
        data("valid60.jsonl.gz").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--epochs",
        "100",
        "--valid-every",
        "10",
        "--log-every",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--max-steps".into());
    args.push(steps.to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn kpg(args: &[String]) -> Output {
    Command::new(kpg_bin()).args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "kpg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (split, loss) rows of train_log.csv.
fn losses(out: &Path, split: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("train_log.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(2) == Some(split))
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn training_lowers_the_loss_and_gives_a_generator_that_writes_phrases() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    // Hungarian matching keeps the number of slots that learn a keyphrase fixed, so its losses
    // are comparable from step to step; OT's dynamic supply moves slots from the cheap null target
    // to keyphrases as the model learns, which raises the loss per token while the model improves.
    ok(kpg(&train_args(&out, 60, &["--assign", "hungarian"])));
    let train = losses(&out, "train");
    let valid = losses(&out, "valid");
    assert!(train.len() >= 12, "{train:?}");
    assert!(
        train[train.len() - 2..].iter().sum::<f64>() < 0.8 * train[..2].iter().sum::<f64>(),
        "training loss did not fall: {train:?}"
    );
    assert!(valid.last().unwrap() < &valid[0], "{valid:?}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    let generated = ok(Command::new(kpg_bin())
        .args(["generate", "--generator", out.to_str().unwrap(), "--input"])
        .arg(data("valid60.jsonl.gz"))
        .output()
        .unwrap());
    let text = String::from_utf8(generated.stdout).unwrap();
    let phrases: usize = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["candidates"].as_array().map_or(0, |c| c.len())
        })
        .sum();
    assert_eq!(text.lines().count(), 60);
    assert!(phrases > 0, "the trained generator wrote no phrase");
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_and_other_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    ok(kpg(&train_args(&straight, 30, &[])));

    // Kill -9 once the first checkpoint is written, then run the same command again.
    let resumed = dir.path().join("resumed");
    let args = train_args(&resumed, 30, &[]);
    let mut child = Command::new(kpg_bin())
        .args(&args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !resumed.join("checkpoint/state.json").is_file() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().unwrap();
    let again = ok(kpg(&args));
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(
        log.contains("resuming from step") || log.contains("30 steps"),
        "{log}"
    );
    for f in ["checkpoint/model.safetensors", "model.safetensors"] {
        assert!(
            std::fs::read(straight.join(f)).unwrap() == std::fs::read(resumed.join(f)).unwrap(),
            "{f} differs between the straight and the resumed run"
        );
    }
    assert_eq!(losses(&straight, "valid"), losses(&resumed, "valid"));

    let other = kpg(&train_args(&resumed, 40, &["--seed", "7"]));
    assert_eq!(other.status.code(), Some(2));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("`seed`"), "{err}");
}

#[test]
fn init_from_continues_a_model_and_refuses_other_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    ok(kpg(&train_args(&first, 10, &[])));
    let warm = dir.path().join("warm");
    ok(kpg(&train_args(
        &warm,
        10,
        &["--init-from", first.to_str().unwrap()],
    )));
    // The warm run starts where the first ended: its first validation (after 20 steps in all)
    // is below the first run's (after 10), and it kept that model's vocabulary.
    let (a, b) = (losses(&first, "valid"), losses(&warm, "valid"));
    assert!(b[0] < a[0], "warm start {b:?} against {a:?}");
    assert_eq!(
        std::fs::read(first.join("tokenizer.json")).unwrap(),
        std::fs::read(warm.join("tokenizer.json")).unwrap()
    );

    let other = kpg(&train_args(
        &dir.path().join("other"),
        1,
        &["--init-from", first.to_str().unwrap(), "--layers", "3"],
    ));
    assert_eq!(other.status.code(), Some(2));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("--init-from") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn malformed_training_records_are_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc {} | head -30",
            data("train400.jsonl.gz").display()
        ))
        .output()
        .unwrap()
        .stdout;
    let mut text = String::from_utf8(good).unwrap();
    text.push_str("{not json\n{\"id\": \"x\", \"title\": \"t\"}\n");
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("gen");
    let mut args = train_args(&out, 3, &[]);
    let at = args
        .iter()
        .position(|a| a.ends_with("train400.jsonl.gz"))
        .unwrap();
    args[at] = bad.to_str().unwrap().to_string();
    let run = ok(kpg(&args));
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("bad.jsonl, line 31"), "{log}");
    assert!(log.contains("bad.jsonl, line 32"), "{log}");
    assert!(log.contains("2 malformed"), "{log}");
}

/// Synthetic records whose one keyphrase is the first two words of the title, placed somewhere
/// in the abstract among 18 other words of a 60-word vocabulary.
fn synthetic_records(path: &Path, n: usize, seed: u64) {
    let mut rng = kpg::selftest::random::Rng::new(seed);
    let mut text = String::new();
    for i in 0..n {
        let mut words: Vec<usize> = (0..60).collect();
        for k in (1..60).rev() {
            words.swap(k, rng.below(k + 1));
        }
        let (title, rest) = (&words[..2], &words[2..20]);
        let w = |k: &usize| format!("w{k}");
        let mut abstract_: Vec<String> = rest.iter().map(w).collect();
        let at = rng.below(abstract_.len());
        abstract_.splice(at..at, title.iter().map(w));
        let key = title.iter().map(w).collect::<Vec<_>>().join(" ");
        let record = serde_json::json!({"id": format!("s{i}"), "title": format!("{key} study"),
            "abstract": abstract_.join(" "), "keyphrases": [key]});
        text.push_str(&record.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Training with the optimal-transport assignment learns a task, judged by what the model writes
/// (OT's loss is not comparable across steps): on held-out records, present F1@M of the
/// generator after 60 steps is at least 0.8 (it reaches 1.0), where after one step it is at most
/// 0.1 (it is 0).
#[test]
fn training_with_ot_assignment_learns_a_copy_task() {
    let dir = tempfile::tempdir().unwrap();
    let (train, valid) = (
        dir.path().join("train.jsonl"),
        dir.path().join("valid.jsonl"),
    );
    synthetic_records(&train, 400, 1);
    synthetic_records(&valid, 60, 2);
    let f1_after = |steps: usize| -> f64 {
        let out = dir.path().join(format!("gen{steps}"));
        let args: Vec<String> = [
            "train",
            "generator",
            "--preset",
            "tiny",
            "--assign",
            "ot",
            "--lr",
            "1e-3",
            "--epochs",
            "100",
            "--valid-every",
            "20",
            "--train",
            train.to_str().unwrap(),
            "--valid",
            valid.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-steps",
            &steps.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ok(kpg(&args));
        let pred = dir.path().join(format!("pred{steps}.jsonl"));
        let generated = ok(Command::new(kpg_bin())
            .args(["generate", "--generator", out.to_str().unwrap(), "--input"])
            .arg(&valid)
            .output()
            .unwrap());
        std::fs::write(&pred, generated.stdout).unwrap();
        let scored = ok(Command::new(kpg_bin())
            .args([
                "eval",
                "--pred",
                pred.to_str().unwrap(),
                "--gold",
                valid.to_str().unwrap(),
            ])
            .output()
            .unwrap());
        let r: serde_json::Value = serde_json::from_slice(&scored.stdout).unwrap();
        r["present"]["F1@M"].as_f64().unwrap()
    };
    let (before, after) = (f1_after(1), f1_after(60));
    assert!(before <= 0.1, "one step already solves it: {before}");
    assert!(after >= 0.8, "present F1@M {before} → {after}");
}
