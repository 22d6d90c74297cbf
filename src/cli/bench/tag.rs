//! `kpg bench tag`: the whole pipeline through the library API ([`crate::Pipeline`]), as an indexer
//! would use it. Three runs over the same documents, after a warm-up: all of them in one call
//! (throughput), one document per call from one thread (single-document latency, p50/p99), and one
//! document per call from `--threads` threads at once (latency and throughput when the pipeline
//! batches concurrent calls).

use std::time::Instant;

use serde_json::json;

use super::generate::bench_documents;
use crate::cli::{print_line, BenchTagArgs};
use crate::error::{KpgError, Result};
use crate::pipeline::{Document, Pipeline, PipelineOptions};

fn documents(args: &BenchTagArgs) -> Result<Vec<Document>> {
    Ok(bench_documents(&args.documents)?
        .into_iter()
        .map(|d| Document::new(d.id, d.title, d.abstract_text))
        .collect())
}

/// Latency figures in milliseconds: nearest-rank percentiles.
fn latency(mut secs: Vec<f64>) -> serde_json::Value {
    secs.sort_by(f64::total_cmp);
    let rank = |p: f64| secs[((p * secs.len() as f64).ceil() as usize).clamp(1, secs.len()) - 1];
    json!({
        "p50_ms": rank(0.5) * 1e3,
        "p99_ms": rank(0.99) * 1e3,
        "mean_ms": secs.iter().sum::<f64>() / secs.len() as f64 * 1e3,
        "max_ms": secs[secs.len() - 1] * 1e3,
    })
}

fn tag_all(pipeline: &Pipeline, docs: &[Document]) -> Result<()> {
    for r in pipeline.tag(docs) {
        r?;
    }
    Ok(())
}

pub fn bench_tag(args: BenchTagArgs) -> Result<i32> {
    if args.batch_docs == 0 || args.threads == 0 || args.documents.docs == 0 {
        return Err(KpgError::InvalidArgument(
            "--docs, --batch-docs and --threads must be at least 1".into(),
        ));
    }
    let opts = PipelineOptions {
        batch_docs: args.batch_docs,
        scheduler: args
            .cache
            .scheduler_options(crate::backend::DeviceKind::Cpu)?,
        ..PipelineOptions::default()
    };
    let start = Instant::now();
    let ranker = args.ranker.ranker_dir();
    let pipeline = Pipeline::load(
        &args.generator,
        ranker.as_deref(),
        args.selector.as_deref(),
        opts,
    )?;
    let load_s = start.elapsed().as_secs_f64();
    let docs = documents(&args)?;
    let n = docs.len();

    // Warm-up: page in the weights, grow the workspaces.
    tag_all(&pipeline, &docs[..n.min(args.batch_docs)])?;

    let start = Instant::now();
    tag_all(&pipeline, &docs)?;
    let batch_s = start.elapsed().as_secs_f64();

    let mut single = Vec::with_capacity(n);
    let start = Instant::now();
    for d in &docs {
        let t = Instant::now();
        tag_all(&pipeline, std::slice::from_ref(d))?;
        single.push(t.elapsed().as_secs_f64());
    }
    let single_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let concurrent: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (pipeline, docs) = (&pipeline, &docs);
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut out = Vec::new();
                    for d in docs.iter().skip(t).step_by(args.threads) {
                        let t = Instant::now();
                        tag_all(pipeline, std::slice::from_ref(d))?;
                        out.push(t.elapsed().as_secs_f64());
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    let concurrent_s = start.elapsed().as_secs_f64();

    print_line(
        &json!({
            "bench": "tag",
            "device": "cpu",
            "threads": rayon::current_num_threads(),
            "generator": args.generator,
            "ranker": ranker,
            "selector": args.selector,
            "input": args.documents.input,
            "docs": n,
            "batch_docs": args.batch_docs,
            "load_seconds": load_s,
            "batch": {"seconds": batch_s, "documents_per_s": n as f64 / batch_s},
            "single": {
                "seconds": single_s,
                "documents_per_s": n as f64 / single_s,
                "latency": latency(single),
            },
            "concurrent": {
                "callers": args.threads,
                "seconds": concurrent_s,
                "documents_per_s": n as f64 / concurrent_s,
                "latency": latency(concurrent),
            },
        })
        .to_string(),
    )?;
    Ok(0)
}
