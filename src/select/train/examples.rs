//! Training examples: labelled selector records turned into teacher-forced sequences.
//!
//! A record is `kpg select`'s input with a `label` per candidate (`kpg selector-data` writes
//! them): `{"id", "title", "abstract", "candidates": [{"phrase", "score", "label": bool}]}`. Its
//! sequence is the selection program of the candidates in a given order (random while training,
//! the paper's R-tuning; by score for validation, its S-infer) with each label slot holding the
//! gold label; the loss is scored at the row before each label.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::model::ScoredRows;
use crate::error::{KpgError, Result};
use crate::eval::{stemmed_tokens, Tokenization};
use crate::select::config::SelectorConfig;
use crate::select::document::{parse_document, SelectDocument};
use crate::select::program::selection_program;
use crate::tokenizer::Tokenizer;

/// A selector record with the gold decision of each candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledDocument {
    pub doc: SelectDocument,
    pub labels: Vec<bool>, // [candidates]
}

/// The expected record shape, for error messages.
const SCHEMA: &str = r#"{"id", "title", "abstract", "candidates": [{"phrase": string, "score": number, "label": bool}]}"#;

pub fn parse_labelled(line: &str, line_no: usize) -> Result<LabelledDocument> {
    let doc = parse_document(line, line_no)?;
    let v: Value = serde_json::from_str(line).expect("parse_document read it");
    let labels = v["candidates"]
        .as_array()
        .expect("parse_document checked it")
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.get("label").and_then(Value::as_bool).ok_or_else(|| {
                KpgError::InvalidArgument(format!(
                    "line {line_no}: candidate {} has no boolean `label` (expected {SCHEMA})",
                    i + 1
                ))
            })
        })
        .collect::<Result<Vec<bool>>>()?;
    Ok(LabelledDocument { doc, labels })
}

/// The records of a labelled file and the errors of those that could not be read (each naming its
/// line), so that one bad record costs only itself. Records without candidates teach nothing and
/// are left out.
pub fn read_labelled(path: &Path) -> Result<(Vec<LabelledDocument>, Vec<KpgError>)> {
    let lines = crate::records::input_lines(Some(path))?;
    let failure = lines.failure();
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    for (number, line) in lines {
        match line.and_then(|text| parse_labelled(&text, number)) {
            Ok(d) if d.labels.is_empty() => {}
            Ok(d) => docs.push(d),
            Err(e) => errors.push(e),
        }
    }
    failure.check()?;
    Ok((docs, errors))
}

/// One teacher-forced sequence and the labels it is scored on.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSequence {
    pub tokens: Vec<u32>,
    pub scored: ScoredRows,
    /// The gold label of each scored row, in order.
    pub labels: Vec<bool>,
    /// The [true, false] label ids of each scored row.
    pub label_ids: Vec<[u32; 2]>,
    /// Whether each scored label is a redundant false: a non-keyphrase that shares a stemmed
    /// token with an earlier true candidate of the sequence, the kind of candidate the
    /// duplicate-token ratio counts against.
    pub redundant: Vec<bool>,
}

/// The candidates' indices by score, highest first (stable for ties), as the selector shows them.
pub fn by_score(doc: &SelectDocument) -> Vec<usize> {
    let mut order: Vec<usize> = (0..doc.candidates.len()).collect();
    order.sort_by(|&a, &b| doc.candidates[b].score.total_cmp(&doc.candidates[a].score));
    order
}

/// The sequence of `doc`'s candidates in `order` (the first `max_candidates`), cut after the last
/// label that fits in `max_tokens`: later candidates stay in the prompt but are not scored. A
/// record whose first label does not fit is an error.
pub fn build_sequence(
    config: &SelectorConfig,
    tok: &Tokenizer,
    doc: &LabelledDocument,
    order: &[usize],
    max_tokens: usize,
) -> Result<TrainSequence> {
    let phrases: Vec<&str> = order
        .iter()
        .map(|&i| doc.doc.candidates[i].phrase.as_str())
        .collect();
    let program = selection_program(config, tok, &doc.doc.title, &doc.doc.abstract_, &phrases)?;
    let fits = program
        .labels
        .iter()
        .take_while(|slot| slot.pos < max_tokens)
        .count();
    if fits == 0 {
        let needed = program.labels.first().map_or(0, |s| s.pos + 1);
        return Err(KpgError::ContextTooLong {
            needed,
            limit: max_tokens,
        });
    }
    let mut tokens = program.tokens;
    tokens.truncate(program.labels[fits - 1].pos + 1);
    let (mut rows, mut targets, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (slot, &i) in program.labels[..fits].iter().zip(order) {
        let label = doc.labels[i];
        let id = slot.ids[if label { 0 } else { 1 }];
        tokens[slot.pos] = id;
        rows.push(slot.pos - 1);
        targets.push(id);
        labels.push(label);
    }
    let label_ids = program.labels[..fits].iter().map(|s| s.ids).collect();
    let redundant = redundant_falses(&phrases[..fits], &labels);
    Ok(TrainSequence {
        tokens,
        scored: ScoredRows { rows, targets },
        labels,
        label_ids,
        redundant,
    })
}

/// For phrases in sequence order with their labels: whether each is false and shares a stemmed
/// token (the evaluation's stemming) with an earlier true phrase.
pub fn redundant_falses(phrases: &[&str], labels: &[bool]) -> Vec<bool> {
    let mut kept_tokens: HashSet<String> = HashSet::new();
    phrases
        .iter()
        .zip(labels)
        .map(|(phrase, &label)| {
            let tokens = stemmed_tokens(phrase, Tokenization::Kpg);
            if label {
                kept_tokens.extend(tokens);
                false
            } else {
                tokens.iter().any(|t| kept_tokens.contains(t))
            }
        })
        .collect()
}

/// The loss weight of every scored label of a batch: the balanced halves of
/// [`balanced_weights`], where within the false half a redundant false (see
/// [`redundant_falses`]) counts `redundant_weight` times a plain one. Weight 1 gives exactly
/// [`balanced_weights`].
pub fn label_weights(seqs: &[TrainSequence], redundant_weight: f64) -> Vec<Vec<f32>> {
    let units = |label: bool, redundant: bool| match (label, redundant) {
        (true, _) => 1.0,
        (false, true) => redundant_weight,
        (false, false) => 1.0,
    };
    let (mut true_units, mut false_units) = (0.0f64, 0.0f64);
    for seq in seqs {
        for (&l, &r) in seq.labels.iter().zip(&seq.redundant) {
            if l {
                true_units += units(l, r);
            } else {
                false_units += units(l, r);
            }
        }
    }
    let half = |units: f64, other: f64| match (units > 0.0, other > 0.0) {
        (false, _) => 0.0,
        (true, false) => 1.0 / units,
        (true, true) => 0.5 / units,
    };
    let (w_true, w_false) = (half(true_units, false_units), half(false_units, true_units));
    seqs.iter()
        .map(|seq| {
            seq.labels
                .iter()
                .zip(&seq.redundant)
                .map(|(&l, &r)| ((if l { w_true } else { w_false }) * units(l, r)) as f32)
                .collect()
        })
        .collect()
}

/// Per-label loss weights that give the true and the false labels of a batch half the loss each
/// (the paper's balanced weighting; one class alone takes it all), normalised so that the loss is
/// a weighted mean.
pub fn balanced_weights(labels: &[bool]) -> (f64, f64) {
    let trues = labels.iter().filter(|&&l| l).count();
    let falses = labels.len() - trues;
    match (trues, falses) {
        (0, 0) => (0.0, 0.0),
        (0, f) => (0.0, 1.0 / f as f64),
        (t, 0) => (1.0 / t as f64, 0.0),
        (t, f) => (0.5 / t as f64, 0.5 / f as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(labels: &[bool], redundant: &[bool]) -> TrainSequence {
        TrainSequence {
            tokens: vec![],
            scored: ScoredRows {
                rows: vec![],
                targets: vec![],
            },
            labels: labels.to_vec(),
            label_ids: vec![],
            redundant: redundant.to_vec(),
        }
    }

    #[test]
    fn a_false_is_redundant_when_it_repeats_a_stemmed_token_of_an_earlier_true() {
        let phrases = [
            "web search",           // false, nothing kept yet
            "search engines",       // true
            "search engine design", // false, repeats "search" (stemmed) of a kept one
            "index sizes",          // false, shares nothing kept
            "engine",               // true: a keyphrase is never redundant
            "web search",           // false: "web" was only in a false phrase, "search" kept
        ];
        let labels = [false, true, false, false, true, false];
        assert_eq!(
            redundant_falses(&phrases, &labels),
            [false, false, true, false, false, true]
        );
    }

    #[test]
    fn label_weights_at_one_are_the_balanced_ones_and_keep_the_halves_otherwise() {
        let seqs = [
            sequence(&[true, false, false], &[false, true, false]),
            sequence(&[false, true, false, false], &[false, false, true, false]),
        ];
        let all: Vec<bool> = seqs.iter().flat_map(|s| s.labels.clone()).collect();
        let (wt, wf) = balanced_weights(&all);
        let plain = label_weights(&seqs, 1.0);
        for (seq, w) in seqs.iter().zip(&plain) {
            for (&l, &x) in seq.labels.iter().zip(w) {
                assert_eq!(x, (if l { wt } else { wf }) as f32);
            }
        }
        let heavy = label_weights(&seqs, 3.0);
        let half = |want: bool| -> f64 {
            seqs.iter()
                .zip(&heavy)
                .flat_map(|(s, w)| s.labels.iter().zip(w))
                .filter(|(&l, _)| l == want)
                .map(|(_, &x)| x as f64)
                .sum()
        };
        assert!((half(true) - 0.5).abs() < 1e-6 && (half(false) - 0.5).abs() < 1e-6);
        // Five falses, two of them redundant at weight 3: 9 units share the false half.
        assert!((heavy[0][1] - 3.0 * 0.5 / 9.0).abs() < 1e-7);
        assert!((heavy[0][2] - 0.5 / 9.0).abs() < 1e-7);
    }
}
