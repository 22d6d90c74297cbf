//! The integer dot products of ggml blocks (`kpg::backend::cpu::quant::dot_row`): nanoseconds a
//! block of 32 weights, for rows of 576 (SmolLM2's hidden size) streamed from 4096 rows (1.5 MB of
//! Q4_1: in the last-level cache, as a decode step's weights are not; the figure is the kernel's,
//! not the memory's). `cargo bench -p kpg-extras --bench quant_dot`; docs/PERF.md has the figures.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::f16;
use kpg::backend::cpu::quant::{dot_row, quantize_row, BlockQ8, QK};
use kpg::gguf::types::GgmlType;

const ROWS: usize = 4096;
const BLOCKS: usize = 576 / QK;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant_dot");
    group.throughput(Throughput::Elements((ROWS * BLOCKS) as u64));
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ] {
        let bytes = ty.block().1 as usize;
        let mut w: Vec<u8> = (0..ROWS * BLOCKS * bytes)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for b in w.chunks_exact_mut(bytes) {
            b[..2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
            b[2..4].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
        }
        let x: Vec<f32> = (0..BLOCKS * QK).map(|i| (i as f32).sin()).collect();
        let mut xq = vec![BlockQ8::default(); BLOCKS];
        quantize_row(&x, &mut xq);
        group.bench_function(format!("{ty} blocks"), |bench| {
            bench.iter(|| {
                let mut s = 0f32;
                for row in w.chunks_exact(BLOCKS * bytes) {
                    s += dot_row(ty, row, &xq);
                }
                s
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
