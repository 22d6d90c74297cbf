//! CPU forward throughput of the LLaMA model on a synth model: prefill tokens/s (one sequence of
//! PROMPT tokens, one chunk) and decode tokens/s (one token at a time through the paged cache).
//!
//! `cargo bench -p kpg-extras --bench cpu_forward` writes the `small` preset (f32) to `target/bench-models/` on
//! first use; `KPG_BENCH_PRESET` and `KPG_BENCH_DTYPE` choose another. The transformers peer on the
//! same model and inputs is `tools/peer_cpu_forward.py`; see docs/PERF.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kpg::kv_cache::{BlockTable, CacheCapacity};
use kpg::model::llama::{Llama, LlamaWorkspace, LogitRows, SeqChunk};
use kpg::model::weights::DType;

const PROMPT: usize = 128;
const DECODE_STEPS: usize = 32;

fn bench_model() -> Llama {
    let preset = std::env::var("KPG_BENCH_PRESET").unwrap_or_else(|_| "small".into());
    let dtype = std::env::var("KPG_BENCH_DTYPE").unwrap_or_else(|_| "f32".into());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-models")
        .join(format!("{preset}-{dtype}"));
    if !dir.join("config.json").exists() {
        let config = kpg::synth::llama_preset(&preset).expect("preset");
        let dt = DType::parse(&dtype).expect("dtype f32, f16 or bf16");
        kpg::synth::synth_llama(&config, dt, 0, &dir).expect("synth model");
    }
    Llama::load(&dir).expect("load bench model")
}

/// The prompt the peer uses too: ids 3, 4, ... wrapped into the vocabulary.
fn prompt(vocab: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| (3 + (i * 7) % (vocab - 3)) as u32).collect()
}

fn forward(c: &mut Criterion) {
    let model = bench_model();
    let ids = prompt(model.config.vocab_size, PROMPT);
    let mut cache = model
        .new_cache(CacheCapacity::Tokens(PROMPT + DECODE_STEPS + 16), 16)
        .unwrap();
    let mut ws = LlamaWorkspace::default();

    let mut group = c.benchmark_group("cpu_forward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(PROMPT as u64));
    group.bench_function(BenchmarkId::new("prefill", PROMPT), |b| {
        b.iter(|| {
            let mut table = BlockTable::default();
            let mut batch = [SeqChunk {
                table: &mut table,
                tokens: &ids,
            }];
            model
                .forward(&mut cache, &mut ws, &mut batch, LogitRows::Last)
                .unwrap();
            cache.release(&mut table);
        })
    });

    group.throughput(Throughput::Elements(DECODE_STEPS as u64));
    group.bench_function(BenchmarkId::new("decode", DECODE_STEPS), |b| {
        // Only the decode steps are timed; the prompt is prefilled before each measurement.
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let mut table = BlockTable::default();
                let mut batch = [SeqChunk {
                    table: &mut table,
                    tokens: &ids,
                }];
                model
                    .forward(&mut cache, &mut ws, &mut batch, LogitRows::None)
                    .unwrap();
                let start = Instant::now();
                // Teacher-forced steps: a step costs the same whichever token it feeds.
                for &id in &ids[..DECODE_STEPS] {
                    let token = [id];
                    let mut batch = [SeqChunk {
                        table: &mut table,
                        tokens: &token,
                    }];
                    model
                        .forward(&mut cache, &mut ws, &mut batch, LogitRows::Last)
                        .unwrap();
                }
                timed += start.elapsed();
                cache.release(&mut table);
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
