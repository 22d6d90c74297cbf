//! Training examples: labelled selector records turned into teacher-forced sequences.
//!
//! A record is `kpg select`'s input with a `label` per candidate (`kpg selector-data` writes
//! them): `{"id", "title", "abstract", "candidates": [{"phrase", "score", "label": bool}]}`. Its
//! sequence is the selection program of the candidates in a given order (random while training,
//! the paper's R-tuning; by score for validation, its S-infer) with each label slot holding the
//! gold label; the loss is scored at the row before each label.

use std::path::Path;

use serde_json::Value;

use super::model::ScoredRows;
use crate::error::{KpgError, Result};
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
    Ok(TrainSequence {
        tokens,
        scored: ScoredRows { rows, targets },
        labels,
        label_ids,
    })
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
