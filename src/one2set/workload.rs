//! The arithmetic and memory traffic of generating a batch, counted from what was decoded (how many
//! slots were still active at each step), so that `kpg bench generate` can report it and a floor
//! can be computed against measured ceilings: time ≥ encoder FLOPs / peak FLOP/s + max(decoder
//! FLOPs / peak FLOP/s, decoder bytes / peak bandwidth).
//!
//! Counted: the matrix products and attention (2 FLOPs a multiply-add); the decoder's bytes are
//! those a step cannot avoid reading: its bf16 weights once per step, and the cross-attention keys
//! and values of the documents with an active slot and the slots' own caches. Element-wise work
//! and the logits' round trip through memory are the implementation's cost, not the workload's.

use serde::Serialize;

use super::decode::SlotOutput;
use crate::model::one2set_config::One2SetConfig;

/// bf16 storage.
const BYTES: f64 = 2.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Workload {
    pub encoder_flops: f64,
    pub decoder_flops: f64,
    /// Of which the vocabulary projection.
    pub logits_flops: f64,
    pub decoder_bytes: f64,
    /// Decoding steps run (over all batches).
    pub decode_steps: usize,
    pub slot_steps: usize,
}

impl Workload {
    /// Adds one batch: the documents' source lengths and what each slot decoded.
    pub fn add_batch(&mut self, c: &One2SetConfig, doc_lens: &[usize], slots: &[Vec<SlotOutput>]) {
        let (d, f, v) = (c.d_model as f64, c.ffn_dim as f64, c.vocab_size as f64);
        let (le, ld) = (c.encoder_layers as f64, c.decoder_layers as f64);
        let tokens: f64 = doc_lens.iter().map(|&n| n as f64).sum();
        let squares: f64 = doc_lens.iter().map(|&n| (n * n) as f64).sum();
        // input_fc; per layer q, k, v, out and the FFN; attention 2·n²·d twice; cross k, v.
        self.encoder_flops += 2.0 * tokens * d * d
            + le * tokens * (8.0 * d * d + 4.0 * d * f)
            + le * 4.0 * squares * d
            + ld * tokens * 4.0 * d * d;
        let per_row = 2.0 * d * d // input_fc
            + ld * (8.0 * d * d + 4.0 * d * d + 4.0 * d * f) // self q,k,v,out; cross q,out; FFN
            + 2.0 * d * d // output_fc
            + 2.0 * d * v // vocabulary
            + 2.0 * d; // p_gen
        let step_weights = BYTES * (d * d + ld * (6.0 * d * d + 2.0 * d * f) + d * d + v * d);
        for t in 0..c.max_keyphrase_len {
            let mut rows = 0f64;
            let mut cross_tokens = 0f64;
            for (doc, doc_slots) in slots.iter().enumerate() {
                let active = doc_slots.iter().filter(|s| s.tokens.len() > t).count() as f64;
                if active > 0.0 {
                    rows += active;
                    cross_tokens += doc_lens[doc] as f64 * active;
                    self.decoder_bytes += ld * doc_lens[doc] as f64 * 2.0 * d * BYTES;
                }
            }
            if rows == 0.0 {
                break;
            }
            let ctx = (t + 1) as f64;
            self.decoder_flops += rows * per_row + ld * 4.0 * d * (rows * ctx + cross_tokens);
            self.logits_flops += rows * 2.0 * d * v;
            self.decoder_bytes += step_weights + ld * rows * ctx * 2.0 * d * BYTES;
            self.decode_steps += 1;
            self.slot_steps += rows as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_active_rows_per_step() {
        let c = crate::synth::one2set::one2set_preset("tiny").unwrap();
        let slot = |n: usize| SlotOutput {
            tokens: vec![7; n],
            probs: vec![0.5; n],
            attn_argmax: vec![0; n],
        };
        let mut slots = vec![vec![slot(1); c.num_control_codes]; 2];
        slots[0][3] = slot(3);
        let mut w = Workload::default();
        w.add_batch(&c, &[10, 20], &slots);
        assert_eq!(w.decode_steps, 3);
        assert_eq!(w.slot_steps, 2 * c.num_control_codes + 2);
        let (d, v) = (c.d_model as f64, c.vocab_size as f64);
        assert_eq!(w.logits_flops, w.slot_steps as f64 * 2.0 * d * v);
        assert!(w.encoder_flops > 0.0 && w.decoder_bytes > 0.0);
    }
}
