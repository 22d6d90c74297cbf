//! Read access to the copy-augmented output distributions of a forward pass, per decoder row
//! (document, slot, step), without materialising the extended vocabulary:
//! `P(w) = p_gen·softmax(logits)[w] + (1 − p_gen)·Σ_{s: src_ext[s] = w} a[s]`.

use super::ops::copy::{copy_mass, CopyRow};
use super::Real;

/// Built by the forward pass over its workspace (`model::forward_dists`).
pub struct Dists<'a, T> {
    pub(crate) vocab: usize,
    pub(crate) probs: &'a [T], // [rows, vocab] softmax of the logits
    pub(crate) p_gen: &'a [T], // [rows]
    pub(crate) head0: &'a [T], // [Σ rows' source lengths] copy attention
    pub(crate) copy_rows: &'a [CopyRow], // [rows]
    pub(crate) src_ext: &'a [u32], // [tokens]
    pub(crate) order: &'a [u32], // [tokens] per document, its positions sorted by extended id
}

/// Per document, its source positions (relative to the document) sorted by (extended id,
/// position), so that a row's copy mass per distinct word is one pass over runs.
pub(crate) fn source_order(order: &mut Vec<u32>, src_ext: &[u32], doc_lens: &[usize]) {
    order.clear();
    let mut at = 0;
    for &n in doc_lens {
        let start = order.len();
        order.extend(0..n as u32);
        order[start..].sort_by_key(|&i| (src_ext[at + i as usize], i));
        at += n;
    }
}

impl<'a, T: Real> Dists<'a, T> {
    pub fn num_rows(&self) -> usize {
        self.p_gen.len()
    }

    /// p_gen of a row.
    pub fn p_gen(&self, row: usize) -> T {
        self.p_gen[row]
    }

    fn p_vocab(&self, row: usize, id: u32) -> T {
        if (id as usize) < self.vocab {
            self.probs[row * self.vocab + id as usize]
        } else {
            T::zero()
        }
    }

    /// The copy-augmented probability of extended id `ext_id` in decoder row `row`.
    pub fn prob(&self, row: usize, ext_id: u32) -> T {
        let c = self.copy_rows[row];
        let mass = copy_mass(
            &self.head0[c.head0_at..c.head0_at + c.len],
            &self.src_ext[c.src_at..c.src_at + c.len],
            ext_id,
        );
        let pg = self.p_gen[row];
        pg * self.p_vocab(row, ext_id) + (T::one() - pg) * mass
    }

    /// The most probable extended id of a row and its probability; ties go to the lowest id (as
    /// `torch.max`). Copy mass only raises source words, so the winner is the vocabulary argmax
    /// or a source word.
    pub fn argmax(&self, row: usize) -> (u32, T) {
        let sm = &self.probs[row * self.vocab..(row + 1) * self.vocab];
        let mut am = 0;
        for (i, &v) in sm.iter().enumerate() {
            if v > sm[am] {
                am = i;
            }
        }
        let mut best = (am as u32, self.prob(row, am as u32));
        let c = self.copy_rows[row];
        let pg = self.p_gen[row];
        let order = &self.order[c.src_at..c.src_at + c.len];
        let mut k = 0;
        while k < order.len() {
            let id = self.src_ext[c.src_at + order[k] as usize];
            let mut mass = T::zero();
            while k < order.len() && self.src_ext[c.src_at + order[k] as usize] == id {
                mass += self.head0[c.head0_at + order[k] as usize];
                k += 1;
            }
            let p = pg * self.p_vocab(row, id) + (T::one() - pg) * mass;
            if p > best.1 || (p == best.1 && id < best.0) {
                best = (id, p);
            }
        }
        best
    }
}
