//! Parallel control-code decoding, greedy (Ye et al. 2021, One2Set, section 3; the authors'
//! `inference/set_generator.py`): every document of a batch is encoded once, then all N slots of all
//! documents step together, one token per slot per step, up to `max_keyphrase_len` steps.
//!
//! At each step a slot's next token is the argmax of the copy-augmented distribution
//! (pointer–generator, See et al. 2017) over the extended vocabulary,
//! `p(w) = p_gen · softmax(logits)[w] + (1 - p_gen) · Σ_{j: src[j] = w} a_j`, where `a` is head 0 of
//! the last decoder layer's cross-attention; the token's probability `p(w)` is kept for the
//! confidence. A copied out-of-vocabulary word is fed back as `<unk>`, as One2Set does.
//!
//! The argmax needs no vocabulary-sized buffer: copy mass only raises source words, so the winner
//! is either the vocabulary argmax or a source word, and only those few candidates are scored (ties
//! go to the lower id, as `torch.max` returns the first maximum).
//!
//! A slot stops after `<eos>` or `<null>`: One2Set decodes all steps for every slot, but its
//! post-processing (`split_word_list_from_set`) reads a slot only up to the first of these, and a
//! slot's later tokens cannot affect another slot (each attends only to its own tokens), so
//! dropping finished slots from later steps changes no output.

use rayon::prelude::*;

use super::source::SourceIds;
use super::vocab::{BOS_ID, EOS_ID, NULL_ID, UNK_ID};
use crate::backend::cpu::simd;
use crate::error::Result;
use crate::model::one2set::{One2Set, One2SetWorkspace};

/// What one slot decoded, up to and including its `<eos>` or `<null>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlotOutput {
    /// Extended-vocabulary ids.
    pub tokens: Vec<u32>,
    /// Probability of each token under the copy-augmented distribution.
    pub probs: Vec<f32>,
    /// Per token, the source position with the most head-0 cross-attention (for `<unk>`).
    pub attn_argmax: Vec<u32>,
}

/// Buffers of the decoding loop, reused across batches.
#[derive(Default)]
pub struct DecodeScratch {
    ids: Vec<u32>,          // [tokens] packed sources
    doc_lens: Vec<usize>,   // [docs]
    active: Vec<u32>,       // [rows] slots still decoding
    inputs: Vec<u32>,       // [rows] their next input tokens
    picks: Vec<Pick>,       // [rows] this step's choices
    copy_mass: Vec<Vec<f32>>, // per rayon task: [distinct source ids]
    slot_steps: usize,
}

impl DecodeScratch {
    /// Slot steps the last batch ran.
    pub fn slot_steps(&self) -> usize {
        self.slot_steps
    }
}

/// One row's choice at one step.
#[derive(Debug, Clone, Copy, Default)]
struct Pick {
    token: u32,
    prob: f32,
    attn_argmax: u32,
}

/// Greedy decoding of every slot of every document; `out[doc][code]`.
pub fn decode_batch(
    model: &One2Set,
    ws: &mut One2SetWorkspace,
    scratch: &mut DecodeScratch,
    docs: &[&SourceIds],
) -> Result<Vec<Vec<SlotOutput>>> {
    let c = &model.config;
    let n_codes = c.num_control_codes;
    let mut out = vec![vec![SlotOutput::default(); n_codes]; docs.len()];
    if docs.is_empty() {
        return Ok(out);
    }
    scratch.ids.clear();
    scratch.doc_lens.clear();
    for d in docs {
        scratch.ids.extend_from_slice(&d.ids);
        scratch.doc_lens.push(d.len());
    }
    model.encode_forward(ws, &scratch.ids, &scratch.doc_lens)?;

    scratch.active.clear();
    scratch.active.extend(0..(docs.len() * n_codes) as u32);
    scratch.inputs.clear();
    scratch.inputs.resize(scratch.active.len(), BOS_ID);
    scratch.slot_steps = 0;
    for step in 0..c.max_keyphrase_len {
        if scratch.active.is_empty() {
            break;
        }
        model.decode_step_forward(ws, step, &scratch.active, &scratch.inputs)?;
        scratch.slot_steps += scratch.active.len();
        pick_tokens(model, ws, scratch, docs);
        let mut keep = 0;
        for r in 0..scratch.active.len() {
            let slot = scratch.active[r] as usize;
            let p = scratch.picks[r];
            let o = &mut out[slot / n_codes][slot % n_codes];
            o.tokens.push(p.token);
            o.probs.push(p.prob);
            o.attn_argmax.push(p.attn_argmax);
            if p.token != EOS_ID && p.token != NULL_ID {
                scratch.active[keep] = slot as u32;
                scratch.inputs[keep] = if (p.token as usize) < c.vocab_size {
                    p.token
                } else {
                    UNK_ID
                };
                keep += 1;
            }
        }
        scratch.active.truncate(keep);
        scratch.inputs.truncate(keep);
    }
    Ok(out)
}

/// Rows per parallel task when choosing tokens (each row reads `vocab` logits).
const PICK_ROWS_PER_TASK: usize = 4;

/// The copy-augmented argmax of every active row.
fn pick_tokens(
    model: &One2Set,
    ws: &One2SetWorkspace,
    scratch: &mut DecodeScratch,
    docs: &[&SourceIds],
) {
    let vocab = model.config.vocab_size;
    let n_codes = model.config.num_control_codes;
    let rows = scratch.active.len();
    scratch.picks.resize(rows, Pick::default());
    let tasks = rows.div_ceil(PICK_ROWS_PER_TASK);
    scratch.copy_mass.resize_with(tasks, Vec::new);
    let active = &scratch.active;
    scratch
        .picks
        .par_chunks_mut(PICK_ROWS_PER_TASK)
        .zip(scratch.copy_mass.par_iter_mut())
        .enumerate()
        .for_each(|(task, (picks, mass))| {
            for (i, pick) in picks.iter_mut().enumerate() {
                let r = task * PICK_ROWS_PER_TASK + i;
                let doc = docs[active[r] as usize / n_codes];
                let logits = &ws.logits[r * vocab..(r + 1) * vocab];
                let (at, len) = ws.copy_at[r];
                let attn = &ws.copy_attn[at..at + len];
                *pick = pick_one(logits, ws.p_gen[r], attn, doc, mass);
            }
        });
}

/// The argmax of `p_gen · softmax(logits) + (1 - p_gen) · copy(attn)` and its probability.
fn pick_one(
    logits: &[f32], // [vocab]
    p_gen: f32,
    attn: &[f32], // [source len]
    doc: &SourceIds,
    mass: &mut Vec<f32>, // [distinct source ids] scratch
) -> Pick {
    let vocab = logits.len();
    let (max, v_star) = max_and_argmax(logits);
    let z = sum_exp(logits, max);
    mass.clear();
    mass.resize(doc.distinct.len(), 0.0);
    let mut attn_argmax = 0;
    for (j, (&a, &u)) in attn.iter().zip(&doc.distinct_at).enumerate() {
        mass[u as usize] += a;
        if a > attn[attn_argmax] {
            attn_argmax = j;
        }
    }
    let p_vocab = |id: u32| {
        if (id as usize) < vocab {
            simd::exp_fast(logits[id as usize] - max) / z
        } else {
            0.0
        }
    };
    let copy = 1.0 - p_gen;
    // v* gets copy mass too when it is in the source; found below in that case.
    let mut best = (v_star, p_gen / z);
    for (&id, &m) in doc.distinct.iter().zip(mass.iter()) {
        let p = p_gen * p_vocab(id) + copy * m;
        if id == v_star {
            best.1 = p;
        }
    }
    for (&id, &m) in doc.distinct.iter().zip(mass.iter()) {
        let p = p_gen * p_vocab(id) + copy * m;
        if p > best.1 || (p == best.1 && id < best.0) {
            best = (id, p);
        }
    }
    Pick {
        token: best.0,
        prob: best.1,
        attn_argmax: attn_argmax as u32,
    }
}

/// The largest logit and its first index.
fn max_and_argmax(x: &[f32]) -> (f32, u32) {
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (i, &v) in x.iter().enumerate() {
        if v > best.0 {
            best = (v, i as u32);
        }
    }
    best
}

/// Σ exp(x - max), vectorisable.
fn sum_exp(x: &[f32], max: f32) -> f32 {
    let mut lanes = [0f32; 16];
    for chunk in x.chunks(16) {
        for (v, lane) in chunk.iter().zip(lanes.iter_mut()) {
            *lane += simd::exp_fast(v - max);
        }
    }
    lanes.iter().sum()
}
