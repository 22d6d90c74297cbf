//! Greedy parallel control-code decoding on the GPU (feature `cuda`): the loop of
//! [`crate::one2set::decode::decode_batch`] (its specification) over [`One2SetCuda`]. Each step uploads the
//! active slots with their input tokens and document groups (a few kilobytes), runs the whole
//! decoder step and the fused finish on the device, and downloads three numbers per row; the host
//! drops finished slots (`<eos>`, `<null>`) from the next step, so they stop costing work, and
//! builds the same [`SlotOutput`]s as the CPU backend.

use std::sync::Arc;

use super::model::{One2SetCuda, One2SetCudaWorkspace};
use crate::backend::cuda::CudaDevice;
use crate::error::Result;
use crate::model::one2set::One2Set;
use crate::one2set::batch_layout::{step_inputs, PackedBatch};
use crate::one2set::decode::SlotOutput;
use crate::one2set::source::SourceIds;
use crate::one2set::vocab::{BOS_ID, EOS_ID, NULL_ID, UNK_ID};

/// The GPU model with its workspace and the loop's host buffers.
pub struct CudaDecoder {
    pub model: One2SetCuda,
    ws: One2SetCudaWorkspace,
    step_in: Vec<i32>, // see batch_layout::step_inputs
    picks: Vec<i32>,   // [3, rows]
    active: Vec<u32>,  // [rows] slots still decoding
    inputs: Vec<u32>,  // [rows] their next input tokens
    slot_steps: usize,
}

impl CudaDecoder {
    /// Uploads the weights of a loaded generator to `dev`.
    pub fn new(dev: Arc<CudaDevice>, model: &One2Set) -> Result<Self> {
        Ok(CudaDecoder {
            model: One2SetCuda::load(dev, model)?,
            ws: One2SetCudaWorkspace::default(),
            step_in: Vec::new(),
            picks: Vec::new(),
            active: Vec::new(),
            inputs: Vec::new(),
            slot_steps: 0,
        })
    }

    /// Slot steps the last batch ran.
    pub fn slot_steps(&self) -> usize {
        self.slot_steps
    }

    /// Greedy decoding of every slot of every document; `out[doc][code]`.
    pub fn decode_batch(&mut self, docs: &[&SourceIds]) -> Result<Vec<Vec<SlotOutput>>> {
        let c = &self.model.config;
        let n_codes = c.num_control_codes;
        let mut out = vec![vec![SlotOutput::default(); n_codes]; docs.len()];
        self.slot_steps = 0;
        if docs.is_empty() {
            return Ok(out);
        }
        let batch = PackedBatch::new(docs);
        self.model.encode_forward(&mut self.ws, &batch)?;
        self.active.clear();
        self.active.extend(0..(docs.len() * n_codes) as u32);
        self.inputs.clear();
        self.inputs.resize(self.active.len(), BOS_ID);
        for step in 0..c.max_keyphrase_len {
            if self.active.is_empty() {
                break;
            }
            let rows = self.active.len();
            let (groups, widest) =
                step_inputs(&self.active, &self.inputs, n_codes, &mut self.step_in);
            let picks = self.model.decode_step_forward(
                &mut self.ws,
                step,
                &self.step_in,
                (rows, groups, widest),
                &mut self.picks,
            )?;
            self.slot_steps += rows;
            let mut keep = 0;
            for r in 0..rows {
                let slot = self.active[r] as usize;
                let token = picks.tokens[r] as u32;
                let o = &mut out[slot / n_codes][slot % n_codes];
                o.tokens.push(token);
                o.probs.push(f32::from_bits(picks.prob_bits[r] as u32));
                o.attn_argmax.push(picks.attn_argmax[r] as u32);
                if token != EOS_ID && token != NULL_ID {
                    self.active[keep] = slot as u32;
                    self.inputs[keep] = if (token as usize) < c.vocab_size {
                        token
                    } else {
                        UNK_ID
                    };
                    keep += 1;
                }
            }
            self.active.truncate(keep);
            self.inputs.truncate(keep);
        }
        Ok(out)
    }
}
