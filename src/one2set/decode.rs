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
    ids: Vec<u32>,            // [tokens] packed sources
    doc_lens: Vec<usize>,     // [docs]
    active: Vec<u32>,         // [rows] slots still decoding
    inputs: Vec<u32>,         // [rows] their next input tokens
    picks: Vec<Pick>,         // [rows] this step's choices
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

/// Rows per parallel task when choosing tokens.
const PICK_ROWS_PER_TASK: usize = 16;

/// The copy-augmented argmax of every active row.
fn pick_tokens(
    model: &One2Set,
    ws: &One2SetWorkspace,
    scratch: &mut DecodeScratch,
    docs: &[&SourceIds],
) {
    let n_codes = model.config.num_control_codes;
    let rows = scratch.active.len();
    scratch.picks.resize(rows, Pick::default());
    let tasks = rows.div_ceil(PICK_ROWS_PER_TASK);
    scratch.copy_mass.resize_with(tasks, Vec::new);
    let active = &scratch.active;
    let stats = &ws.logit_stats;
    let logits_t = &ws.logits_t[..rows * model.config.vocab_size];
    scratch
        .picks
        .par_chunks_mut(PICK_ROWS_PER_TASK)
        .zip(scratch.copy_mass.par_iter_mut())
        .enumerate()
        .for_each(|(task, (picks, mass))| {
            for (i, pick) in picks.iter_mut().enumerate() {
                let r = task * PICK_ROWS_PER_TASK + i;
                let doc = docs[active[r] as usize / n_codes];
                let (at, len) = ws.copy_at[r];
                let row = RowLogits {
                    logits_t,
                    rows,
                    r,
                    max: stats.max[r],
                    argmax: stats.argmax[r],
                    sum: stats.sum[r],
                };
                *pick = pick_one(&row, ws.p_gen[r], &ws.copy_attn[at..at + len], doc, mass);
            }
        });
}

/// One row's vocabulary logits, read from the transposed logits, with their softmax statistics.
pub struct RowLogits<'a> {
    pub logits_t: &'a [f32], // [vocab, rows]
    pub rows: usize,
    pub r: usize,
    pub max: f32,
    pub argmax: u32,
    pub sum: f32, // Σ exp(logit - max)
}

impl RowLogits<'_> {
    fn vocab(&self) -> usize {
        self.logits_t.len() / self.rows
    }

    /// softmax(logits)[id], 0 past the vocabulary.
    fn p_vocab(&self, id: u32) -> f32 {
        if (id as usize) < self.vocab() {
            simd::exp_fast(self.logits_t[id as usize * self.rows + self.r] - self.max) / self.sum
        } else {
            0.0
        }
    }
}

/// The argmax of `p_gen · softmax(logits) + (1 - p_gen) · copy(attn)` and its probability.
fn pick_one(
    row: &RowLogits<'_>,
    p_gen: f32,
    attn: &[f32], // [source len]
    doc: &SourceIds,
    mass: &mut Vec<f32>, // [distinct source ids] scratch
) -> Pick {
    mass.clear();
    mass.resize(doc.distinct.len(), 0.0);
    let mut attn_argmax = 0;
    for (j, (&a, &u)) in attn.iter().zip(&doc.distinct_at).enumerate() {
        mass[u as usize] += a;
        if a > attn[attn_argmax] {
            attn_argmax = j;
        }
    }
    let copy = 1.0 - p_gen;
    let v_star = row.argmax;
    // The vocabulary argmax, with its copy mass when it is a source word.
    let mut best = (v_star, p_gen / row.sum);
    for (&id, &m) in doc.distinct.iter().zip(mass.iter()) {
        if id == v_star {
            best.1 = p_gen * row.p_vocab(id) + copy * m;
        }
    }
    for (&id, &m) in doc.distinct.iter().zip(mass.iter()) {
        let p = p_gen * row.p_vocab(id) + copy * m;
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

/// The specification of the choice: the whole copy-augmented distribution over the extended
/// vocabulary in f64, and its first argmax. Returns (token, probability).
pub fn pick_reference(logits: &[f32], p_gen: f32, attn: &[f32], ext_ids: &[u32]) -> (u32, f64) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let extended = ext_ids
        .iter()
        .map(|&e| e as usize + 1)
        .max()
        .unwrap_or(0)
        .max(logits.len());
    let mut p = vec![0f64; extended];
    for (i, &l) in logits.iter().enumerate() {
        p[i] = p_gen as f64 * (l as f64 - max).exp() / z;
    }
    for (&a, &e) in attn.iter().zip(ext_ids) {
        p[e as usize] += (1.0 - p_gen as f64) * a as f64;
    }
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    (best as u32, p[best])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::softmax_stats::SoftmaxStats;
    use crate::one2set::vocab::Vocab;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The fast choice (statistics from transposed logits, candidates only) against the whole
    /// distribution, on rows where copying wins, where generating wins, and with repeated and
    /// out-of-vocabulary source words.
    #[test]
    fn pick_matches_the_whole_distribution() {
        let vocab_size = 50;
        let words: Vec<String> = (0..vocab_size)
            .map(|i| match i {
                0..=6 => crate::one2set::vocab::SPECIAL_TOKENS[i].to_string(),
                _ => format!("w{i}"),
            })
            .collect();
        let vocab = Vocab::from_words(words).unwrap();
        let tokens: Vec<String> = "w9 zz w9 w12 yy zz w40 w7"
            .split(' ')
            .map(str::to_string)
            .collect();
        let doc = SourceIds::new(&tokens, &vocab, vocab_size, 100);
        let rows = 37;
        let mut mass = Vec::new();
        for seed in 0..20u64 {
            let scale = 1.0 + seed as f32;
            let logits: Vec<f32> = random(rows * vocab_size, seed)
                .iter()
                .map(|v| v * scale)
                .collect();
            let mut logits_t = vec![0f32; rows * vocab_size];
            for r in 0..rows {
                for o in 0..vocab_size {
                    logits_t[o * rows + r] = logits[r * vocab_size + o];
                }
            }
            let mut stats = SoftmaxStats::default();
            stats.compute(&logits_t, rows);
            for r in 0..rows {
                let attn_raw: Vec<f32> = random(doc.len(), seed * 100 + r as u64)
                    .iter()
                    .map(|v| (3.0 * v).exp())
                    .collect();
                let total: f32 = attn_raw.iter().sum();
                let attn: Vec<f32> = attn_raw.iter().map(|a| a / total).collect();
                let p_gen = (r as f32 + 0.5) / rows as f32;
                let row = RowLogits {
                    logits_t: &logits_t,
                    rows,
                    r,
                    max: stats.max[r],
                    argmax: stats.argmax[r],
                    sum: stats.sum[r],
                };
                let got = pick_one(&row, p_gen, &attn, &doc, &mut mass);
                let (tok, p) = pick_reference(
                    &logits[r * vocab_size..(r + 1) * vocab_size],
                    p_gen,
                    &attn,
                    &doc.ext_ids,
                );
                assert_eq!(got.token, tok, "seed {seed} row {r}");
                assert!(
                    (got.prob as f64 - p).abs() < 1e-5,
                    "seed {seed} row {r}: {} vs {p}",
                    got.prob
                );
            }
        }
    }
}
