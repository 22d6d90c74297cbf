//! What kpg guarantees on bad input, driven through the real binary with tiny random-weight models
//! (README, "When things go wrong"): every run ends (each command has a time limit here, so a hang
//! fails its test instead of the suite), a damaged input or model is an error that names it, two
//! runs never share an output, resume continues only the same job, and sizes are checked before
//! they are allocated.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::kpg_bin;
use serde_json::{json, Value};

/// A finished run: status, stdout and stderr.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Exit status 2 and one error line on stderr naming every needle.
    fn fails_with(&self, needles: &[&str]) {
        assert_eq!(
            self.status.code(),
            Some(2),
            "status {:?}, stderr: {}",
            self.status,
            self.stderr
        );
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("kpg: error: "), "stderr: {}", self.stderr);
        for n in needles {
            assert!(last.contains(n), "`{n}` not in: {last}");
        }
    }

    fn succeeds(&self) {
        assert!(
            self.status.success(),
            "status {:?}: {}",
            self.status,
            self.stderr
        );
    }
}

/// Waits for `child` at most `limit`, killing it and failing the test if it has not ended.
fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Run {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

const LIMIT: Duration = Duration::from_secs(120);

fn spawn(args: &[&str]) -> Child {
    Command::new(kpg_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kpg(args: &[&str]) -> Run {
    wait_limited(spawn(args), LIMIT, &args.join(" "))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `kpg tag` with `gen` and no ranker over `input`, into `output` when given.
fn tag_args<'a>(gen: &'a Path, input: &'a Path, output: Option<&'a Path>) -> Vec<&'a str> {
    let mut args = vec![
        "tag",
        "--generator",
        s(gen),
        "--no-ranker",
        "--input",
        s(input),
    ];
    if let Some(out) = output {
        args.extend(["--output", s(out)]);
    }
    args
}

fn synth(arch: &str, dir: &Path, seed: &str) -> PathBuf {
    kpg(&[
        "synth",
        "--arch",
        arch,
        "--preset",
        "tiny",
        "--seed",
        seed,
        "--out",
        s(dir),
    ])
    .succeeds();
    dir.to_path_buf()
}

fn doc(i: usize) -> Value {
    json!({
        "id": format!("d{i}"),
        "title": format!("graph neural networks {i}"),
        "abstract": "message passing over sparse graphs with attention and optimal transport",
        "candidates": [{"phrase": "graph neural networks", "score": 0.9},
                       {"phrase": "optimal transport", "score": 0.5}],
    })
}

fn corpus(n: usize) -> String {
    (0..n).map(|i| format!("{}\n", doc(i))).collect()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// Edits a model's `config.json`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to.to_path_buf()
}

#[test]
fn a_truncated_gzip_input_ends_every_command_with_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let n = 400;
    let whole = gzip(&corpus(n));
    let truncated = tmp.path().join("in.jsonl.gz");
    std::fs::write(&truncated, &whole[..whole.len() * 2 / 3]).unwrap();
    let header_only = tmp.path().join("header.jsonl.gz");
    std::fs::write(&header_only, &whole[..10]).unwrap();
    let commands: [Vec<&str>; 3] = [
        vec!["tag", "--generator", s(&gen), "--no-ranker"],
        vec!["generate", "--generator", s(&gen)],
        vec!["select", "--selector", s(&sel)],
    ];
    for command in &commands {
        let mut args = command.clone();
        args.extend(["--input", s(&truncated)]);
        let run = kpg(&args);
        run.fails_with(&["in.jsonl.gz", "truncated or damaged at byte"]);
        // Every complete record before the damage has its line, in order, and none after.
        let got = run.lines();
        assert!(!got.is_empty() && got.len() < n, "{} lines", got.len());
        for (i, line) in got.iter().enumerate() {
            assert_eq!(line["id"], json!(format!("d{i}")), "{}", command[0]);
            assert!(line.get("error").is_none(), "{line}");
        }
        let mut args = command.clone();
        args.extend(["--input", s(&header_only)]);
        let run = kpg(&args);
        run.fails_with(&["header.jsonl.gz", "truncated or damaged"]);
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn a_second_run_on_the_same_output_is_refused_and_told_who_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(20_000)).unwrap();
    let output = tmp.path().join("out.jsonl");
    let args = tag_args(&gen, &input, Some(&output));
    let mut first = spawn(&args);
    let start = Instant::now();
    while std::fs::read(&output).map_or(0, |b| b.len()) == 0 {
        assert!(start.elapsed() < LIMIT, "the first run wrote nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = kpg(&args);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first run ended before the second started"
    );
    second.fails_with(&[
        "out.jsonl",
        "another run is writing this output",
        &format!("process {}", first.id()),
    ]);
    // The refused run touched nothing: every line is whole and from the first run, in order.
    let text = std::fs::read_to_string(&output).unwrap();
    for (i, line) in text.lines().enumerate() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            assert_eq!(v["id"], json!(format!("d{i}")));
        }
    }
}

#[test]
fn resume_refuses_another_job_and_names_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let other_gen = synth("one2set", &tmp.path().join("gen2"), "2");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(12)).unwrap();
    let output = tmp.path().join("out.jsonl");
    let run = |generator: &Path, threshold: &str, input: &Path| {
        kpg(&[
            "tag",
            "--generator",
            s(generator),
            "--no-ranker",
            "--threshold",
            threshold,
            "--input",
            s(input),
            "--output",
            s(&output),
            "--resume",
        ])
    };
    run(&gen, "0.05", &input).succeeds();
    let whole = std::fs::read_to_string(&output).unwrap();
    let keep: String = whole.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&output, &keep).unwrap();

    run(&gen, "0.5", &input).fails_with(&["--resume", "threshold differs (was 0.05, now 0.5)"]);
    run(&other_gen, "0.05", &input).fails_with(&["--resume", "generator differs"]);
    let longer = tmp.path().join("longer.jsonl");
    std::fs::write(&longer, corpus(13)).unwrap();
    run(&gen, "0.05", &longer).fails_with(&["--resume", "input differs"]);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), keep);
    // The same job finishes the file as one run would have written it.
    run(&gen, "0.05", &input).succeeds();
    assert_eq!(
        keyphrases(&std::fs::read_to_string(&output).unwrap()),
        keyphrases(&whole)
    );
    // A job record that is missing (an output from elsewhere) is not guessed at.
    std::fs::write(&output, &keep).unwrap();
    std::fs::remove_file(tmp.path().join("out.jsonl.kpg-job.json")).unwrap();
    run(&gen, "0.05", &input).fails_with(&["--resume", "no job record"]);
}

#[test]
fn resume_compares_ids_by_their_json_text_null_included() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let record = |id: &str| {
        format!("{{\"id\": {id}, \"title\": \"graph networks\", \"abstract\": \"sparse\"}}\n")
    };
    // Inputs of one size, so that only the ids tell them apart.
    let a = [
        record("\"a\""),
        record("null"),
        record("1  "),
        record("\"z\""),
    ]
    .concat();
    let b = [
        record("\"a\""),
        record("\"nu\""),
        record("1  "),
        record("\"z\""),
    ]
    .concat();
    let c = [
        record("\"a\""),
        record("null"),
        record("\"1\""),
        record("\"z\""),
    ]
    .concat();
    assert!(a.len() == b.len() && b.len() == c.len());
    let input = tmp.path().join("in.jsonl");
    let output = tmp.path().join("out.jsonl");
    let run = || {
        let mut args = tag_args(&gen, &input, Some(&output));
        args.push("--resume");
        kpg(&args)
    };
    std::fs::write(&input, &a).unwrap();
    let first = run();
    assert_eq!(first.status.code(), Some(1), "one record has no id");
    let whole = std::fs::read_to_string(&output).unwrap();
    let head = |n: usize| -> String { whole.lines().take(n).map(|l| format!("{l}\n")).collect() };
    assert!(
        head(2).lines().nth(1).unwrap().starts_with(
            "{\"id\":null,\"error\":\"line 2: missing or invalid field `id` (expected {"
        ),
        "{whole}"
    );

    // The output ends with a null id; the input's record 2 has one: not this input.
    std::fs::write(&output, head(2)).unwrap();
    std::fs::write(&input, &b).unwrap();
    run().fails_with(&["--resume", "has id null but input record 2 has id \"nu\""]);
    // The output ends with id 1; the input's record 3 is "1": not the same id.
    std::fs::write(&output, head(3)).unwrap();
    std::fs::write(&input, &c).unwrap();
    run().fails_with(&["--resume", "has id 1 but input record 3 has id \"1\""]);
    // The input it was made from is continued.
    std::fs::write(&input, &a).unwrap();
    assert_eq!(run().status.code(), Some(1));
    assert_eq!(
        keyphrases(&std::fs::read_to_string(&output).unwrap()),
        keyphrases(&whole)
    );
}

/// Each line's id and keyphrases (scores may differ in their last bits when a resumed run
/// batches the remaining documents differently).
fn keyphrases(output: &str) -> Vec<(Value, Value)> {
    output
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].clone(), v["keyphrases"].clone())
        })
        .collect()
}

#[test]
fn ids_come_back_exactly_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let ids = [
        "1",
        "\"1\"",
        "123456789012345678901234567890",
        "-0.5e3",
        "\"a\\u0041\"",
    ];
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!(
            "{{\"id\": {id}, \"title\": \"graph networks\", \"abstract\": \"sparse attention\", \
             \"candidates\": [{{\"phrase\": \"graph networks\", \"score\": 1}}]}}\n"
        ));
    }
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, text).unwrap();
    for command in [
        vec!["tag", "--generator", s(&gen), "--no-ranker"],
        vec!["generate", "--generator", s(&gen)],
        vec!["select", "--selector", s(&sel)],
    ] {
        let mut args = command.clone();
        args.extend(["--input", s(&input)]);
        let run = kpg(&args);
        run.succeeds();
        let got: Vec<&str> = run
            .stdout
            .lines()
            .map(|l| {
                let rest = l.strip_prefix("{\"id\":").unwrap();
                &rest[..rest.find(",\"").unwrap()]
            })
            .collect();
        assert_eq!(got, ids, "{}", command[0]);
    }
}

#[test]
fn a_closed_pipe_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(50_000)).unwrap();
    let mut child = Command::new(kpg_bin())
        .args([
            "tag",
            "--generator",
            s(&gen),
            "--no-ranker",
            "--input",
            s(&input),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // the reader is dropped here: `| head -1`
    assert!(first.contains("\"d0\""), "{first}");
    let run = wait_limited(child, Duration::from_secs(30), "kpg tag | head -1");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        run.status.signal(),
        Some(libc_sigpipe()),
        "{:?}",
        run.status
    );
}

fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn select_refuses_huge_records_in_linear_time_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let many: Vec<Value> = (0..1_000_000)
        .map(|i| json!({"phrase": format!("p{i}"), "score": 0.5}))
        .collect();
    let records = [
        json!({"id": "many", "title": "t", "abstract": "a", "candidates": many}),
        json!({"id": "long", "title": "t", "abstract": "graph ".repeat(4_000_000),
               "candidates": [{"phrase": "graph", "score": 1}]}),
        doc(0),
    ];
    let input = tmp.path().join("in.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&input, text).unwrap();
    for rerank in [false, true] {
        let mut args = vec!["select", "--selector", s(&sel), "--input", s(&input)];
        if rerank {
            args.push("--rerank");
        }
        let run = wait_limited(spawn(&args), Duration::from_secs(60), "select huge records");
        assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
        let got = run.lines();
        assert_eq!(got.len(), 3);
        let error = |i: usize| got[i]["error"].as_str().unwrap_or_default().to_string();
        assert!(error(0).contains("1000000 candidates"), "{}", error(0));
        assert!(error(1).contains("cut the document"), "{}", error(1));
        assert_eq!(got[2]["id"], json!("d0"));
        assert!(got[2].get("error").is_none(), "{}", got[2]);
    }
}

#[test]
fn a_huge_abstract_through_the_selector_is_cut_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let huge = json!({"id": "huge", "title": "graph networks",
                      "abstract": "sparse graph attention ".repeat(1_500_000)});
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, format!("{huge}\n{}\n", doc(1))).unwrap();
    // Address space capped at 3 GiB: tokenising the whole 35 MB abstract would need several.
    let script = format!(
        "ulimit -v 3145728; exec {} tag --generator {} --no-ranker --selector {} --input {}",
        kpg_bin().display(),
        s(&gen),
        s(&sel),
        s(&input)
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_limited(child, Duration::from_secs(90), "tag a huge abstract");
    run.succeeds();
    let got = run.lines();
    assert_eq!(got.len(), 2, "{}", run.stderr);
    let warnings = got[0]["warnings"].to_string();
    assert!(warnings.contains("truncated"), "{}", got[0]);
}

#[test]
fn damaged_or_absurd_models_and_options_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(2)).unwrap();
    let select = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["select", "--selector", s(dir), "--input", s(&input)];
        args.extend(extra);
        kpg(&args)
    };
    let generate = |dir: &Path| kpg(&["generate", "--generator", s(dir), "--input", s(&input)]);

    /// (case name, the edit of config.json, the field the error must name)
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 5] = [
        ("eps", |c| c["rms_norm_eps"] = json!(0.0), "rms_norm_eps"),
        ("neg", |c| c["rms_norm_eps"] = json!(-1e-5), "rms_norm_eps"),
        (
            "theta",
            |c| c["rope_parameters"]["rope_theta"] = json!(0.0),
            "rope_theta",
        ),
        (
            "layers",
            |c| c["num_hidden_layers"] = json!(1_000_000_000u64),
            "num_hidden_layers",
        ),
        (
            "heads",
            |c| c["num_key_value_heads"] = json!(3),
            "num_key_value_heads",
        ),
    ];
    for (name, edit, field) in cases {
        let dir = copy_dir(&sel, &tmp.path().join(format!("sel-{name}")));
        edit_config(&dir, edit);
        select(&dir, &[]).fails_with(&["config.json", field]);
    }
    for (field, value) in [
        ("max_source_len", 1_000_000_000_000u64),
        ("max_keyphrase_len", 1_000_000_000_000u64),
    ] {
        let dir = copy_dir(&gen, &tmp.path().join(format!("gen-{field}")));
        edit_config(&dir, |c| c[field] = json!(value));
        generate(&dir).fails_with(&["config.json", field, "too large"]);
    }
    select(&sel, &["--cache-tokens", "100000000000"]).fails_with(&["--cache-tokens", "memory"]);
    select(&sel, &["--block-size", "100000000"]).fails_with(&["--block-size", "memory"]);

    // A NaN in one weight, in each kind of model.
    for (dir, tensor) in [
        (&sel, "model.layers.1.mlp.up_proj.weight"),
        (&gen, "decoder.layer_stacks.0.ffn.0.weight"),
    ] {
        let bad = copy_dir(dir, &tmp.path().join("nan"));
        poison(&bad.join("model.safetensors"), tensor);
        let run = if dir == &sel {
            select(&bad, &[])
        } else {
            generate(&bad)
        };
        run.fails_with(&["model.safetensors", tensor, "non-finite"]);
        std::fs::remove_dir_all(&bad).unwrap();
    }

    // A KV cache too small for one document: that record's error names the option.
    let run = select(&sel, &["--cache-tokens", "64"]);
    assert!(
        run.stdout.contains("--cache-tokens") || run.stderr.contains("--cache-tokens"),
        "{} {}",
        run.stdout,
        run.stderr
    );
}

/// Writes a NaN into the 3rd element of `tensor` (an f32 tensor).
fn poison(path: &Path, tensor: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header[tensor]["dtype"], json!("F32"));
    let start = header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    let at = 8 + n + start + 2 * 4;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_model_file_cut_under_a_run_is_named_not_a_bare_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let sel = synth("llama", &tmp.path().join("sel"), "1");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(100_000)).unwrap();
    let output = tmp.path().join("out.jsonl");
    let child = spawn(&[
        "select",
        "--selector",
        s(&sel),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    let start = Instant::now();
    while std::fs::read(&output).map_or(0, |b| b.len()) == 0 {
        assert!(start.elapsed() < LIMIT, "no output");
        std::thread::sleep(Duration::from_millis(10));
    }
    // `cp new old` truncates in place, as here: the mapped pages are gone.
    std::fs::OpenOptions::new()
        .write(true)
        .open(sel.join("model.safetensors"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let run = wait_limited(child, Duration::from_secs(60), "select with its model cut");
    run.fails_with(&[
        "model.safetensors",
        "truncated or rewritten while this run had it mapped",
    ]);
}

#[test]
fn small_cases_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = synth("one2set", &tmp.path().join("gen"), "1");
    // A byte-order mark before the first record is not part of it.
    let input = tmp.path().join("bom.jsonl");
    std::fs::write(&input, format!("\u{FEFF}{}", corpus(2))).unwrap();
    let run = kpg(&tag_args(&gen, &input, None));
    run.succeeds();
    assert_eq!(run.lines()[0]["id"], json!("d0"));
    // `generate` rejects the empty documents `tag` rejects.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(
        &empty,
        "{\"id\": \"e\", \"title\": \" \", \"abstract\": \"\"}\n",
    )
    .unwrap();
    for command in ["tag", "generate"] {
        let mut args = vec![command, "--generator", s(&gen), "--input", s(&empty)];
        if command == "tag" {
            args.push("--no-ranker");
        }
        let run = kpg(&args);
        assert_eq!(run.status.code(), Some(1), "{command}: {}", run.stderr);
        assert!(
            run.stdout.contains("empty document"),
            "{command}: {}",
            run.stdout
        );
    }
    // `kpg bench tag` on an empty input is an error, not a panic.
    let nothing = tmp.path().join("nothing.jsonl");
    std::fs::write(&nothing, "").unwrap();
    kpg(&[
        "bench",
        "tag",
        "--generator",
        s(&gen),
        "--input",
        s(&nothing),
        "--docs",
        "4",
    ])
    .fails_with(&["nothing.jsonl", "no documents"]);
    // A resumed run's summary says each thing once.
    let out = tmp.path().join("out.jsonl");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, corpus(6)).unwrap();
    let mut args = tag_args(&gen, &input, Some(&out));
    args.push("--resume");
    kpg(&args).succeeds();
    let text = std::fs::read_to_string(&out).unwrap();
    let keep: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&out, keep).unwrap();
    let run = kpg(&args);
    run.succeeds();
    let summary = run.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("kpg tag: 4 documents (0 failed"),
        "{summary}"
    );
    assert_eq!(summary.matches("failed").count(), 2, "{summary}");
    assert!(
        summary.contains("2 more were done by the run this one resumed"),
        "{summary}"
    );
}
