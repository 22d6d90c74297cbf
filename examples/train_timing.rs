//! Times one `loss_backward` (and one `forward_dists`) of the training model on a small config:
//! d 256, 4 heads, FFN 1024, 3+3 layers, vocabulary 20,000, 12 documents of ~250 tokens, 20 slots
//! of 6 steps, dropout 0.1.
//!
//!     cargo run --release --example train_timing

use std::time::Instant;

use kpg::model::one2set_config::One2SetConfig;
use kpg::train::{forward_dists, loss_backward, Dropout, Params, TrainBatch, TrainWorkspace};

fn main() {
    let c = One2SetConfig {
        vocab_size: 20_000,
        d_model: 256,
        num_heads: 4,
        ffn_dim: 1024,
        encoder_layers: 3,
        decoder_layers: 3,
        num_control_codes: 20,
        num_present_codes: 10,
        max_keyphrase_len: 6,
        max_source_len: 512,
        layer_norm_eps: 1e-5,
        dtype: None,
    };
    let (docs, steps, n) = (12, 6, c.num_control_codes);
    let mut s = 12345u64;
    let mut rnd = |m: u32| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as u32
    };
    let doc_lens: Vec<usize> = (0..docs).map(|_| 230 + rnd(40) as usize).collect();
    let src: Vec<u32> = doc_lens
        .iter()
        .flat_map(|&l| (0..l).map(|_| 7 + rnd(19_000)).collect::<Vec<_>>())
        .collect();
    let rows = docs * n * steps;
    let dec_in: Vec<u32> = (0..rows)
        .map(|r| if r % steps == 0 { 2 } else { 7 + rnd(19_000) })
        .collect();
    let targets: Vec<u32> = (0..rows).map(|_| 7 + rnd(19_000)).collect();
    let weights = vec![1f32; rows];
    let batch = TrainBatch {
        src_ext: src.clone(),
        src,
        num_oov: vec![0; docs],
        doc_lens,
        dec_in,
        steps,
    };
    let params = Params::<f32>::init(&c, 1);
    let mut grads = params.zeros_like();
    let mut ws = TrainWorkspace::new();
    println!(
        "{} parameters, {} source tokens, {rows} decoder rows",
        params.num_params(),
        batch.num_tokens()
    );
    for i in 0..3 {
        let t = Instant::now();
        let loss = loss_backward(
            &params,
            &batch,
            &targets,
            &weights,
            rows as f32,
            Dropout { p: 0.1, seed: i },
            &mut grads,
            &mut ws,
        )
        .unwrap();
        println!(
            "loss_backward: {:.3} s (loss {loss:.4})",
            t.elapsed().as_secs_f64()
        );
    }
    let mut b2 = batch.clone();
    b2.steps = 2;
    b2.dec_in = (0..docs * n * 2)
        .map(|r| if r % 2 == 0 { 2 } else { 9 })
        .collect();
    let t = Instant::now();
    let d = forward_dists(&params, &b2, &mut ws).unwrap();
    let _ = d.argmax(0);
    println!(
        "forward_dists (2 steps): {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
