//! One training step's preparation: a batch of examples laid out for the model, the K-step
//! greedy decoding that scores the targets (no dropout, no gradient), the assignment of targets
//! to control codes, and the teacher-forced inputs, targets and loss weights that follow from it.

use std::time::Instant;

use super::data::TrainExample;
use super::targets::{
    document_targets, score_half, slot_targets, AssignMethod, HalfTargets, SlotTargets,
    ASSIGN_STEPS,
};
use crate::assign::{assign_batch, OtParams, OwnedProblem, Problem};
use crate::autodiff::{
    forward_dists, forward_dists_reusing_encoder, Params, TrainBatch, TrainWorkspace,
};
use crate::error::Result;
use crate::model::one2set_config::One2SetConfig;
use crate::one2set::vocab::{BOS_ID, UNK_ID};

/// A batch with its assigned targets, ready for the loss.
pub struct PreparedBatch {
    pub batch: TrainBatch,
    pub targets: SlotTargets,
    /// Seconds spent scoring (greedy decoding) and assigning.
    pub score_s: f64,
    pub assign_s: f64,
}

/// The source side of a batch: packed ids, extended ids and OOV counts; `dec_in` all `<bos>` for
/// one step.
pub fn source_batch(examples: &[&TrainExample], config: &One2SetConfig) -> TrainBatch {
    let n = config.num_control_codes;
    let mut b = TrainBatch {
        src: Vec::new(),
        doc_lens: Vec::new(),
        src_ext: Vec::new(),
        num_oov: Vec::new(),
        dec_in: vec![BOS_ID; examples.len() * n],
        steps: 1,
    };
    for e in examples {
        b.src.extend_from_slice(&e.source.ids);
        b.src_ext.extend_from_slice(&e.source.ext_ids);
        b.doc_lens.push(e.source.len());
        b.num_oov.push(e.source.oov.len());
    }
    b
}

/// Runs the K-step greedy decoding of every slot and returns the assignment problems, two per
/// document (present half, absent half), scored for `method`.
pub fn score_targets(
    params: &Params<f32>,
    batch: &mut TrainBatch,
    halves: &[HalfTargets],
    method: AssignMethod,
    ws: &mut TrainWorkspace<f32>,
) -> Result<Vec<OwnedProblem>> {
    let c = &params.config;
    let (n, vocab) = (c.num_control_codes, c.vocab_size);
    let slots = batch.doc_lens.len() * n;
    // Step 0 reads <bos>; step t reads step t-1's argmax, a copied word as <unk>. The encoder
    // runs once: later passes decode the same sources with the same parameters.
    let mut inputs: Vec<Vec<u32>> = vec![vec![BOS_ID]; slots];
    for step in 1..ASSIGN_STEPS {
        batch.steps = step;
        batch.dec_in = inputs.iter().flatten().copied().collect();
        let d = if step == 1 {
            forward_dists(params, batch, ws)?
        } else {
            forward_dists_reusing_encoder(params, batch, ws)?
        };
        for (s, input) in inputs.iter_mut().enumerate() {
            let (id, _) = d.argmax(s * step + step - 1);
            input.push(if (id as usize) < vocab { id } else { UNK_ID });
        }
    }
    batch.steps = ASSIGN_STEPS;
    batch.dec_in = inputs.iter().flatten().copied().collect();
    let d = forward_dists_reusing_encoder(params, batch, ws)?;
    let half = c.num_present_codes;
    let mut problems = Vec::with_capacity(halves.len());
    for (h, targets) in halves.iter().enumerate() {
        let (doc, second) = (h / 2, h % 2 == 1);
        let first = doc * n + if second { half } else { 0 };
        let last = doc * n + if second { n } else { half };
        problems.push(score_half(targets, first..last, method, |slot, t, id| {
            d.prob(slot * ASSIGN_STEPS + t, id) as f64
        }));
    }
    Ok(problems)
}

/// Solves every problem with `method`: per problem, the target index of each slot.
pub fn assign_targets(problems: &[OwnedProblem], method: AssignMethod) -> Result<Vec<Vec<usize>>> {
    let problems: Vec<Problem> = problems.iter().map(OwnedProblem::view).collect();
    Ok(assign_batch(&problems, method, &OtParams::default())?
        .iter()
        .map(|a| a.assign().to_vec())
        .collect())
}

/// Scores, assigns and lays out the targets of `examples`.
pub fn prepare_batch(
    params: &Params<f32>,
    examples: &[&TrainExample],
    method: AssignMethod,
    ws: &mut TrainWorkspace<f32>,
) -> Result<PreparedBatch> {
    let c = &params.config;
    let mut batch = source_batch(examples, c);
    let halves: Vec<HalfTargets> = examples
        .iter()
        .flat_map(|e| {
            document_targets(
                e,
                c.num_control_codes,
                c.num_present_codes,
                c.max_keyphrase_len,
            )
        })
        .collect();
    let t0 = Instant::now();
    let problems = score_targets(params, &mut batch, &halves, method, ws)?;
    let t1 = Instant::now();
    let assign = assign_targets(&problems, method)?;
    let t2 = Instant::now();
    let targets = slot_targets(&halves, &assign, c.vocab_size);
    batch.steps = c.max_keyphrase_len;
    batch.dec_in = targets.dec_in.clone();
    Ok(PreparedBatch {
        batch,
        targets,
        score_s: (t1 - t0).as_secs_f64(),
        assign_s: (t2 - t1).as_secs_f64(),
    })
}

/// The loss of a prepared batch without dropout or gradient (validation): Σ weight · −log(P + 1e-8)
/// and the number of target tokens it is divided by. Reuses the encoder output that
/// [`prepare_batch`] left in `ws` (same parameters, same sources).
pub fn batch_loss(
    params: &Params<f32>,
    prepared: &PreparedBatch,
    ws: &mut TrainWorkspace<f32>,
) -> Result<(f64, usize)> {
    let d = forward_dists_reusing_encoder(params, &prepared.batch, ws)?;
    let t = &prepared.targets;
    let sum = t
        .targets
        .iter()
        .zip(&t.weights)
        .enumerate()
        .filter(|(_, (_, &w))| w > 0.0)
        .map(|(row, (&id, &w))| -(w as f64) * ((d.prob(row, id) as f64) + 1e-8).ln())
        .sum();
    Ok((sum, t.tokens))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::one2set::one2set_preset;

    fn batch(src: Vec<u32>, doc_lens: Vec<usize>, n: usize, steps: usize) -> TrainBatch {
        let docs = doc_lens.len();
        TrainBatch {
            src_ext: src.clone(),
            src,
            doc_lens,
            num_oov: vec![0; docs],
            dec_in: (0..docs * n * steps)
                .map(|i| [BOS_ID, 9, 10][i % 3])
                .collect(),
            steps,
        }
    }

    /// Every row's probability of every in-vocabulary id.
    fn all_probs(d: &crate::autodiff::Dists<f32>, vocab: usize) -> Vec<f32> {
        (0..d.num_rows())
            .flat_map(|r| (0..vocab as u32).map(move |id| (r, id)))
            .map(|(r, id)| d.prob(r, id))
            .collect()
    }

    #[test]
    fn reusing_the_encoder_gives_the_fresh_distributions_and_only_for_the_same_source() {
        let mut c = one2set_preset("tiny").unwrap();
        c.vocab_size = 40;
        let params = Params::<f32>::init(&c, 3);
        let n = c.num_control_codes;
        let a = batch(vec![7, 8, 9, 11, 12, 7, 30], vec![4, 3], n, 1);
        let a2 = batch(a.src.clone(), a.doc_lens.clone(), n, 2);
        let b2 = batch(vec![20, 21, 22, 23, 24], vec![2, 3], n, 2);
        let mut fresh_ws = TrainWorkspace::new();
        let fresh_a2 = all_probs(&forward_dists(&params, &a2, &mut fresh_ws).unwrap(), 40);
        let fresh_b2 = all_probs(&forward_dists(&params, &b2, &mut fresh_ws).unwrap(), 40);

        let mut ws = TrainWorkspace::new();
        forward_dists(&params, &a, &mut ws).unwrap();
        let reused_a2 = all_probs(
            &forward_dists_reusing_encoder(&params, &a2, &mut ws).unwrap(),
            40,
        );
        assert_eq!(reused_a2, fresh_a2);
        // Another source: the encoder must run again, not reuse `a`'s output.
        let reused_b2 = all_probs(
            &forward_dists_reusing_encoder(&params, &b2, &mut ws).unwrap(),
            40,
        );
        assert_eq!(reused_b2, fresh_b2);
    }
}
