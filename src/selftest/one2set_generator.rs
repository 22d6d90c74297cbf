//! The whole One2Set generator on CUDA against the CPU backend: synth tiny and small models (bf16
//! weights, so both sides read the same numbers) on a few real-looking documents, decoded by both;
//! every slot's tokens, probabilities and copy positions, then every document's candidates.
//!
//! Greedy decoding may legitimately part ways where two candidates nearly tie: the GPU's bf16
//! activations move a probability by about a percent. The criterion: at the first step where a
//! slot's tokens differ, the inputs so far were identical, so each side's pick is its argmax of the
//! same distribution, computed with different rounding. If the CPU picked a with probability p_a
//! and the GPU picked b with p_b, then (true values) p_a ≥ p_b and p'_b ≥ p'_a under the GPU's
//! rounding; both can hold only if a and b are within the rounding error of each other, which
//! requires |p_a - p_b| ≤ TIE_RTOL · max(p_a, p_b). A divergence that meets it is counted as a tie
//! (the rest of that slot, and its document's candidates, are not compared); one that does not is
//! a failure.

use std::path::PathBuf;

use crate::backend::cuda::CudaDevice;
use crate::error::Result;
use crate::model::weights::DType;
use crate::one2set::candidates::document_candidates;
use crate::one2set::cuda::decode::CudaDecoder;
use crate::one2set::decode::SlotOutput;
use crate::one2set::{GenerateWorkspace, Generator, PreparedDocument};
use crate::selftest::{compare, CheckResult, BF16};
use crate::synth::one2set::{one2set_preset, synth_one2set};

/// Relative difference of the two winners' probabilities within which a divergence is a near tie:
/// a few bf16 roundings (2^-8 each) through the decoder's residual stream and the logits.
const TIE_RTOL: f64 = 0.05;

/// Real-looking documents: title and abstract, with rare words the copy mechanism must copy.
fn documents() -> Vec<(String, String)> {
    let words = crate::select::document::WORDS;
    let mut docs = vec![
        (
            "Deep keyphrase generation with a copy mechanism".to_string(),
            "Keyphrase provides highly condensed information about a document . We propose a \
             generative model with an encoder-decoder framework and a copy mechanism , evaluated on \
             KP20k , Inspec and SemEval ."
                .to_string(),
        ),
        (
            "Graph neural networks".to_string(),
            "A short abstract .".to_string(),
        ),
    ];
    for i in 0..9usize {
        let n = [3, 40, 150, 250, 400, 17, 90, 300, 64][i];
        let abs: Vec<String> = (0..n)
            .map(|k| {
                let h = i * 7919 + k * 13 + k * k;
                if h % 6 == 0 {
                    format!("zq{}", h % 53)
                } else {
                    words[h % words.len()].to_string()
                }
            })
            .collect();
        docs.push((
            format!("{} {} for {}", words[i], words[i + 3], words[i + 7]),
            abs.join(" "),
        ));
    }
    docs
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kpg-selftest-{}-{name}", std::process::id()))
}

/// Compares one slot; returns whether a near tie cut it short.
fn compare_slot(
    cpu: &SlotOutput,
    gpu: &SlotOutput,
    probs: (&mut Vec<f32>, &mut Vec<f32>),
) -> std::result::Result<bool, String> {
    for t in 0..cpu.tokens.len().max(gpu.tokens.len()) {
        let (Some(&a), Some(&b)) = (cpu.tokens.get(t), gpu.tokens.get(t)) else {
            return Err(format!(
                "lengths {} and {}",
                cpu.tokens.len(),
                gpu.tokens.len()
            ));
        };
        let (pa, pb) = (cpu.probs[t] as f64, gpu.probs[t] as f64);
        if a != b {
            return if (pa - pb).abs() <= TIE_RTOL * pa.max(pb) {
                Ok(true)
            } else {
                Err(format!(
                    "step {t}: cpu token {a} (p {pa:.4}), gpu {b} (p {pb:.4})"
                ))
            };
        }
        probs.0.push(gpu.probs[t]);
        probs.1.push(cpu.probs[t]);
        // The word an <unk> stands for is the attention's argmax, which can nearly tie too (the
        // finish check holds the argmax itself exactly): the phrase may differ from here on.
        if cpu.attn_argmax[t] != gpu.attn_argmax[t] && a == crate::one2set::vocab::UNK_ID {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn generator_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rows = Vec::new();
    for preset in ["tiny", "small"] {
        let dir = temp_dir(preset);
        let config = one2set_preset(preset)?;
        synth_one2set(&config, DType::BF16, 7, None, &dir)?;
        let generator = Generator::load(&dir)?;
        let docs: Vec<PreparedDocument> = documents()
            .iter()
            .map(|(t, a)| generator.prepare(t, a))
            .collect();
        let refs: Vec<&PreparedDocument> = docs.iter().collect();
        let cpu = generator.decode(&refs, &mut GenerateWorkspace::default())?;
        let mut decoder = CudaDecoder::new(device_arc(dev)?, &generator.model)?;
        let sources: Vec<_> = refs.iter().map(|d| &d.source).collect();
        // Two batches: all documents together, then in pairs (a second, smaller batch reuses the
        // grown workspace).
        let gpu_all = decoder.decode_batch(&sources)?;
        let mut gpu_pairs = Vec::new();
        for pair in sources.chunks(2) {
            gpu_pairs.extend(decoder.decode_batch(pair)?);
        }
        for (label, gpu) in [("one batch", &gpu_all), ("batches of 2", &gpu_pairs)] {
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let (mut ties, mut failure, mut same_docs) = (0, None, 0);
            let vocab_size = generator.model.config.vocab_size;
            for (i, (c_doc, g_doc)) in cpu.iter().zip(gpu.iter()).enumerate() {
                let mut tied = false;
                for (code, (c, g)) in c_doc.iter().zip(g_doc).enumerate() {
                    match compare_slot(c, g, (&mut got, &mut want)) {
                        Ok(t) => tied |= t,
                        Err(e) => {
                            failure.get_or_insert(format!("doc {i} slot {code}: {e}"));
                        }
                    }
                }
                if tied {
                    ties += 1;
                    continue;
                }
                let d = &docs[i];
                let cc =
                    document_candidates(c_doc, &generator.vocab, vocab_size, &d.source, &d.stemmed);
                let gc =
                    document_candidates(g_doc, &generator.vocab, vocab_size, &d.source, &d.stemmed);
                let key =
                    |v: &[crate::one2set::candidates::Candidate]| -> Vec<(String, usize, bool)> {
                        let mut k: Vec<_> = v
                            .iter()
                            .map(|c| (c.phrase.clone(), c.slot, c.present))
                            .collect();
                        k.sort();
                        k
                    };
                if key(&cc) != key(&gc) {
                    failure.get_or_insert(format!("doc {i}: candidates differ"));
                } else {
                    same_docs += 1;
                }
            }
            if same_docs == 0 {
                failure.get_or_insert("every document was cut by near ties".into());
            }
            let name = format!("one2set generator {preset} ({label})");
            rows.push(CheckResult::exact(
                format!("{name}: candidates, {same_docs} same, {ties} near ties"),
                docs.len(),
                failure,
            ));
            rows.push(compare(format!("{name}: confidences"), &got, &want, BF16));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(rows)
}

/// The selftest hands checks a `&CudaDevice`; the decoder keeps an `Arc`, so it opens the same
/// GPU again (cudarc takes the device's primary context, so this shares the context).
fn device_arc(dev: &CudaDevice) -> Result<std::sync::Arc<CudaDevice>> {
    CudaDevice::new(dev.ordinal())
}
