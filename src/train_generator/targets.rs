//! Which keyphrase each control code learns in a training step (../shared/DESIGN.md, "Training the
//! generator"; jiacheng-ye/kg_one2set `train_ml.py`, `pykp/utils/io.py`):
//!
//! - per document and half (present codes, absent codes), the targets are the half's keyphrases
//!   (at most one per code of the half) as `words + <eos> + <pad>…` of `max_keyphrase_len` tokens,
//!   plus one null target `<null> <pad>…` when there are fewer;
//! - each slot's K-step greedy distributions score every target: score[i][j] = Σ_{t<K} P_j,t(target_i[t]).
//!   For optimal transport nothing is masked (the null target's second step scores `<pad>`); for
//!   the Hungarian baseline, `<null>` and `<pad>` tokens score 0, as One2Set's `hungarian_assign`
//!   ignores them;
//! - an assignment (one target per slot) then gives every slot its target sequence, and every token
//!   its loss weight: 0 on `<pad>`, 0.2 (present half) or 0.1 (absent half) on `<null>`, else 1.
//!   The loss is divided by the number of unmasked tokens, `<null>` ones included.

use super::data::TrainExample;
pub use crate::assign::Method as AssignMethod;
use crate::assign::OwnedProblem;
use crate::one2set::vocab::{BOS_ID, EOS_ID, NULL_ID, PAD_ID, UNK_ID};

/// Greedy steps that score the targets (One2Set's `assign_steps`).
pub const ASSIGN_STEPS: usize = 2;
/// Loss weight of a `<null>` token in the present and absent halves (`loss_scale_pre`, `_ab`).
pub const NULL_WEIGHT_PRESENT: f32 = 0.2;
pub const NULL_WEIGHT_ABSENT: f32 = 0.1;

/// One half of one document: its target sequences, the null target last when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct HalfTargets {
    pub sequences: Vec<Vec<u32>>, // [targets][max_keyphrase_len] extended ids
    pub has_null: bool,
}

/// A padded target sequence: the words, `<eos>`, then `<pad>` up to `len`.
fn padded(words: &[u32], len: usize) -> Vec<u32> {
    let mut s: Vec<u32> = words.iter().copied().take(len - 1).collect();
    s.push(EOS_ID);
    s.resize(len, PAD_ID);
    s
}

fn null_sequence(len: usize) -> Vec<u32> {
    let mut s = vec![PAD_ID; len];
    s[0] = NULL_ID;
    s
}

/// The targets of one half: at most `half_slots` keyphrases, and the null target if fewer.
pub fn half_targets(phrases: &[Vec<u32>], half_slots: usize, len: usize) -> HalfTargets {
    let mut sequences: Vec<Vec<u32>> = phrases
        .iter()
        .take(half_slots)
        .map(|p| padded(p, len))
        .collect();
    let has_null = sequences.len() < half_slots;
    if has_null {
        sequences.push(null_sequence(len));
    }
    HalfTargets {
        sequences,
        has_null,
    }
}

/// The two halves of a document: the `present_codes` present codes first, then the absent ones.
pub fn document_targets(
    e: &TrainExample,
    num_codes: usize,
    present_codes: usize,
    len: usize,
) -> [HalfTargets; 2] {
    [
        half_targets(&e.present, present_codes, len),
        half_targets(&e.absent, num_codes - present_codes, len),
    ]
}

/// Scores a half's targets against its slots. `prob(slot, step, ext_id)` is the slot's greedy
/// distribution at that step.
pub fn score_half(
    targets: &HalfTargets,
    slots: std::ops::Range<usize>,
    method: AssignMethod,
    prob: impl Fn(usize, usize, u32) -> f64,
) -> OwnedProblem {
    let n_slots = slots.len();
    let mut score = vec![0.0; targets.sequences.len() * n_slots];
    for (i, seq) in targets.sequences.iter().enumerate() {
        for (j, slot) in slots.clone().enumerate() {
            score[i * n_slots + j] = (0..ASSIGN_STEPS.min(seq.len()))
                .filter(|&t| method == AssignMethod::Ot || (seq[t] != NULL_ID && seq[t] != PAD_ID))
                .map(|t| prob(slot, t, seq[t]))
                .sum();
        }
    }
    OwnedProblem {
        score,
        targets: targets.sequences.len(),
        slots: n_slots,
        has_null: targets.has_null,
    }
}

/// The decoder's teacher-forced input for a target sequence: `<bos>`, then the target shifted
/// right, copied words as `<unk>`.
pub fn decoder_input(target: &[u32], vocab_size: usize, out: &mut Vec<u32>) {
    out.push(BOS_ID);
    out.extend(target[..target.len() - 1].iter().map(|&t| {
        if (t as usize) < vocab_size {
            t
        } else {
            UNK_ID
        }
    }));
}

/// Slot targets and loss weights of a batch, from one assignment per (document, half).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlotTargets {
    pub targets: Vec<u32>, // [docs, N, len] extended ids
    pub weights: Vec<f32>, // [docs, N, len]
    pub dec_in: Vec<u32>,  // [docs, N, len] in-vocabulary ids
    /// Unmasked target tokens: the loss's divisor.
    pub tokens: usize,
}

/// Writes every slot's target, weights and decoder input. `halves[2d + h]` are the targets of
/// document d's half h and `assign[2d + h][j]` the target index of that half's slot j.
pub fn slot_targets(
    halves: &[HalfTargets],
    assign: &[Vec<usize>],
    vocab_size: usize,
) -> SlotTargets {
    let mut out = SlotTargets::default();
    for (h, (half, slots)) in halves.iter().zip(assign).enumerate() {
        let null_weight = if h % 2 == 0 {
            NULL_WEIGHT_PRESENT
        } else {
            NULL_WEIGHT_ABSENT
        };
        for &i in slots {
            let seq = &half.sequences[i];
            out.targets.extend_from_slice(seq);
            for &t in seq {
                let w = match t {
                    PAD_ID => 0.0,
                    NULL_ID => null_weight,
                    _ => 1.0,
                };
                out.weights.push(w);
                out.tokens += (t != PAD_ID) as usize;
            }
            decoder_input(seq, vocab_size, &mut out.dec_in);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_cap_at_their_slots_and_add_a_null_target_when_short() {
        let h = half_targets(&[vec![10, 11], vec![12]], 3, 4);
        assert_eq!(
            h.sequences,
            vec![
                vec![10, 11, EOS_ID, PAD_ID],
                vec![12, EOS_ID, PAD_ID, PAD_ID],
                vec![NULL_ID, PAD_ID, PAD_ID, PAD_ID],
            ]
        );
        assert!(h.has_null);
        let full = half_targets(&[vec![10], vec![11], vec![12]], 2, 4);
        assert_eq!(full.sequences.len(), 2);
        assert!(!full.has_null);
    }

    #[test]
    fn hungarian_scores_ignore_null_and_pad_but_ot_scores_them() {
        let h = half_targets(&[vec![10]], 2, 3);
        // Every probability is 0.25, so a score counts the steps that are scored.
        let ot = score_half(&h, 2..4, AssignMethod::Ot, |_, _, _| 0.25);
        let hu = score_half(&h, 2..4, AssignMethod::Hungarian, |_, _, _| 0.25);
        assert_eq!(ot.score, vec![0.5, 0.5, 0.5, 0.5]);
        assert_eq!(hu.score, vec![0.5, 0.5, 0.0, 0.0]);
        let slots_seen = std::cell::RefCell::new(Vec::new());
        score_half(&h, 2..4, AssignMethod::Ot, |s, t, id| {
            slots_seen.borrow_mut().push((s, t, id));
            0.0
        });
        assert!(slots_seen.borrow().contains(&(3, 1, EOS_ID)));
        assert!(slots_seen.borrow().contains(&(2, 1, PAD_ID)));
    }

    #[test]
    fn slot_targets_weigh_null_by_half_and_mask_pads() {
        let vocab_size = 20;
        let present = half_targets(&[vec![10, 25]], 2, 3);
        let absent = half_targets(&[], 2, 3);
        let t = slot_targets(&[present, absent], &[vec![0, 0], vec![0, 0]], vocab_size);
        assert_eq!(t.targets[..3], [10, 25, EOS_ID]);
        assert_eq!(t.dec_in[..3], [BOS_ID, 10, UNK_ID]);
        assert_eq!(t.targets[6..9], [NULL_ID, PAD_ID, PAD_ID]);
        assert_eq!(t.weights[6..9], [NULL_WEIGHT_ABSENT, 0.0, 0.0]);
        assert_eq!(t.tokens, 3 + 3 + 1 + 1);
    }
}
