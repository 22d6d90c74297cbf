//! `kpg bench generate`: One2Set generation throughput (documents/s, slots/s) on synthetic or given
//! documents, timed from text to ranked candidates (preprocessing included). `--dump` writes the
//! documents with their source tokens and kpg's candidates, so that the PyTorch peer
//! (`tools/peer_generate.py`) runs exactly the same inputs and checks that it gets the same output.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use super::lines::input_lines;
use super::{print_line, BenchDocumentsArgs, BenchGenerateArgs};
use crate::error::{KpgError, Result};
use crate::one2set::document::{parse_document, GenerateDocument};
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
        id: format!("bench-{i}"),
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
    for (line_no, line) in input_lines(Some(path))?.take(args.docs) {
        docs.push(parse_document(&line?, line_no)?);
    }
    Ok(docs)
}

pub fn bench_generate(args: BenchGenerateArgs) -> Result<i32> {
    if args.batch_docs == 0 || args.repeats == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-docs and --repeats must be at least 1".into(),
        ));
    }
    let generator = Generator::load(&args.generator)?;
    let docs = bench_documents(&args.documents)?;
    let mut ws = GenerateWorkspace::default();
    let run = |ws: &mut GenerateWorkspace| -> Result<(Vec<PreparedDocument>, Vec<Value>, usize)> {
        let prepared: Vec<PreparedDocument> = docs
            .iter()
            .map(|d| generator.prepare(&d.title, &d.abstract_text))
            .collect();
        let mut out = Vec::with_capacity(docs.len());
        let mut slot_steps = 0;
        for batch in prepared.chunks(args.batch_docs) {
            let refs: Vec<&PreparedDocument> = batch.iter().collect();
            for c in generator.generate(&refs, ws)? {
                out.push(serde_json::to_value(&c).expect("plain values"));
            }
            slot_steps += ws.slot_steps();
        }
        Ok((prepared, out, slot_steps))
    };
    // Warm-up: page in the weights, grow the workspace.
    let (_, candidates, slot_steps) = run(&mut ws)?;
    let mut best = f64::INFINITY;
    for _ in 0..args.repeats {
        let start = Instant::now();
        run(&mut ws)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    if let Some(path) = &args.dump {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| KpgError::io(path, e))?,
        );
        for (d, c) in docs.iter().zip(&candidates) {
            let line = json!({"id": d.id, "tokens": source_tokens(&d.title, &d.abstract_text),
                "candidates": c});
            writeln!(f, "{line}").map_err(|e| KpgError::io(path, e))?;
        }
        f.flush().map_err(|e| KpgError::io(path, e))?;
    }
    let c = &generator.model.config;
    let n = docs.len() as f64;
    let source_tokens: usize = docs
        .iter()
        .map(|d| {
            source_tokens(&d.title, &d.abstract_text)
                .len()
                .min(c.max_source_len)
        })
        .sum();
    print_line(
        &json!({
            "bench": "generate",
            "device": "cpu",
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
            "slot_steps": slot_steps,
            "slot_steps_per_s": slot_steps as f64 / best,
            "candidates": candidates.iter().map(|c| c.as_array().map_or(0, Vec::len)).sum::<usize>(),
        })
        .to_string(),
    )?;
    Ok(0)
}
