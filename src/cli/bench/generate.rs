//! `kpg bench generate`: One2Set generation throughput (documents/s, slots/s) on synthetic or given
//! documents, timed from text to ranked candidates (preprocessing included) and, on its own, the
//! decoding (`decode_seconds`); with the workload's FLOPs and bytes ([`Workload`]) for the floor.
//! `--device cuda` decodes on the GPU. `--dump` writes the
//! documents with their source tokens and kpg's candidates, so that the PyTorch peer
//! (`tools/peer_generate.py`) runs exactly the same inputs and checks that it gets the same output.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use crate::backend::DeviceKind;
use crate::cli::lines::input_lines;
use crate::cli::{print_line, BenchDocumentsArgs, BenchGenerateArgs};
use crate::error::{KpgError, Result};
use crate::one2set::candidates::document_candidates;
use crate::one2set::document::{parse_document, GenerateDocument};
use crate::one2set::workload::Workload;
use crate::one2set::{GenerateWorkspace, Generator, PreparedDocument};
use crate::preprocess::source_tokens;
use crate::select::document::WORDS;

/// A deterministic synthetic document of `words` abstract words; about one word in five is made
/// up, so that the copy mechanism has out-of-vocabulary words to copy.
pub(crate) fn synthetic_document(i: usize, words: usize) -> GenerateDocument {
    let w = |k: usize| {
        let h = i.wrapping_mul(7919) + k * 13 + k * k;
        if h.is_multiple_of(5) {
            format!("term{}", h % 97)
        } else {
            WORDS[h % WORDS.len()].to_string()
        }
    };
    GenerateDocument {
        id: format!("bench-{i}").into(),
        title: format!("{} {} for {} {}", w(0), w(1), w(2), w(3)),
        abstract_text: (0..words).map(|k| w(k + 4)).collect::<Vec<_>>().join(" "),
    }
}

/// The benchmark's documents: `--docs` synthetic ones, or the first `--docs` of `--input`.
pub(crate) fn bench_documents(args: &BenchDocumentsArgs) -> Result<Vec<GenerateDocument>> {
    let Some(path) = &args.input else {
        return Ok((0..args.docs)
            .map(|i| synthetic_document(i, args.words))
            .collect());
    };
    let mut docs = Vec::new();
    let lines = input_lines(Some(path))?;
    let read_failure = lines.failure();
    for (line_no, line) in lines.take(args.docs) {
        docs.push(parse_document(&line?, line_no)?);
    }
    read_failure.check()?;
    if docs.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "{}: no documents to benchmark (the file has no records)",
            path.display()
        )));
    }
    Ok(docs)
}

pub fn bench_generate(args: BenchGenerateArgs) -> Result<i32> {
    if args.batch_docs == 0 || args.repeats == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-docs and --repeats must be at least 1".into(),
        ));
    }
    args.device.require_built()?;
    let generator = Generator::load(&args.generator)?;
    let docs = bench_documents(&args.documents)?;
    let mut ws = GenerateWorkspace::for_device(&generator, args.device, args.gpu)?;
    let c = &generator.model.config;
    let vocab_size = c.vocab_size;
    // One run: text to ranked candidates, with the decoding (encoder and all steps, from prepared
    // documents to every slot's tokens) timed on its own, the part the GPU does and the part the
    // PyTorch peer's documents/s measures.
    let run = |ws: &mut GenerateWorkspace| -> Result<Run> {
        let start = Instant::now();
        let prepared: Vec<PreparedDocument> = docs
            .iter()
            .map(|d| generator.prepare(&d.title, &d.abstract_text))
            .collect();
        let mut r = Run::default();
        for batch in prepared.chunks(args.batch_docs) {
            let refs: Vec<&PreparedDocument> = batch.iter().collect();
            let t = Instant::now();
            let slots = generator.decode(&refs, ws)?;
            r.decode_seconds += t.elapsed().as_secs_f64();
            let lens: Vec<usize> = refs.iter().map(|d| d.source.len()).collect();
            r.workload.add_batch(&generator.model.config, &lens, &slots);
            for (d, s) in refs.iter().zip(&slots) {
                let c = document_candidates(s, &generator.vocab, vocab_size, &d.source, &d.stemmed);
                r.candidates
                    .push(serde_json::to_value(&c).expect("plain values"));
            }
        }
        r.seconds = start.elapsed().as_secs_f64();
        Ok(r)
    };
    // Warm-up: page in the weights, grow the workspace.
    let first = run(&mut ws)?;
    let (mut best, mut best_decode) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..args.repeats {
        let r = run(&mut ws)?;
        best = best.min(r.seconds);
        best_decode = best_decode.min(r.decode_seconds);
    }
    if let Some(path) = &args.dump {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| KpgError::io(path, e))?,
        );
        for (d, c) in docs.iter().zip(&first.candidates) {
            let line = json!({"id": d.id, "tokens": source_tokens(&d.title, &d.abstract_text),
                "candidates": c});
            writeln!(f, "{line}").map_err(|e| KpgError::io(path, e))?;
        }
        f.flush().map_err(|e| KpgError::io(path, e))?;
    }
    let n = docs.len() as f64;
    let source_tokens: usize = docs
        .iter()
        .map(|d| {
            source_tokens(&d.title, &d.abstract_text)
                .len()
                .min(c.max_source_len)
        })
        .sum();
    let w = &first.workload;
    print_line(
        &json!({
            "bench": "generate",
            "device": match args.device { DeviceKind::Cpu => "cpu", DeviceKind::Cuda => "cuda" },
            "threads": rayon::current_num_threads(),
            "generator": args.generator,
            "input": args.documents.input,
            "docs": docs.len(),
            "batch_docs": args.batch_docs,
            "control_codes": c.num_control_codes,
            "source_tokens": source_tokens,
            "seconds": best,
            "documents_per_s": n / best,
            "slots_per_s": n * c.num_control_codes as f64 / best,
            "decode_seconds": best_decode,
            "decode_documents_per_s": n / best_decode,
            "slot_steps": w.slot_steps,
            "slot_steps_per_s": w.slot_steps as f64 / best,
            "candidates": first.candidates.iter().map(|c| c.as_array().map_or(0, Vec::len)).sum::<usize>(),
            "workload": w,
        })
        .to_string(),
    )?;
    Ok(0)
}

/// What one benchmark run measured and produced.
#[derive(Default)]
struct Run {
    seconds: f64,
    decode_seconds: f64,
    candidates: Vec<Value>,
    workload: Workload,
}
