//! The selector's input and output records (`kpg select`).
//!
//! Input: `{"id", "title", "abstract", "candidates": [{"phrase", "score"}]}`. Output:
//! `{"id", "keyphrases": [...], "candidates": [{"phrase", "score", "selected", "p_true"}]}`, or
//! `{"id", "error"}` for a record that could not be read or run.

use serde::Serialize;
use serde_json::Value;

use crate::error::{KpgError, Result};
use crate::records::RecordId;

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub phrase: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectDocument {
    pub id: RecordId,
    pub title: String,
    pub abstract_: String,
    pub candidates: Vec<Candidate>,
}

/// A candidate as the selector saw it, with its decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredCandidate {
    pub phrase: String,
    pub score: f64,
    pub selected: bool,
    pub p_true: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub id: RecordId,
    /// The selected phrases, in the order the selector saw them.
    pub keyphrases: Vec<String>,
    pub candidates: Vec<ScoredCandidate>,
}

/// The id of a record, for error lines: its `id` field when readable.
pub fn record_id(line: &str) -> Option<RecordId> {
    RecordId::of_line(line)
}

/// Parses one input line; errors name the field and the line.
/// The record shape these lines must have, for error messages.
const SCHEMA: &str =
    r#"{"id", "title", "abstract", "candidates": [{"phrase": string, "score": number}]}"#;

pub fn parse_document(line: &str, line_no: usize) -> Result<SelectDocument> {
    let bad = |reason: String| KpgError::InvalidArgument(format!("line {line_no}: {reason}"));
    // A field that is missing or of the wrong type: the record's expected shape, too.
    let bad_field = |reason: String| bad(format!("{reason} (expected {SCHEMA})"));
    let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad_field("not a JSON object".into()))?;
    let text = |key: &str| -> Result<String> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad_field(format!("`{key}` must be a string"))),
            None => Err(bad_field(format!("missing field `{key}`"))),
        }
    };
    let id =
        RecordId::of_line(line).ok_or_else(|| bad_field("missing or invalid field `id`".into()))?;
    let title = text("title")?;
    let abstract_ = text("abstract")?;
    let list = obj
        .get("candidates")
        .ok_or_else(|| bad_field("missing field `candidates`".into()))?
        .as_array()
        .ok_or_else(|| bad_field("`candidates` must be a list".into()))?;
    let mut candidates = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let phrase = c
            .get("phrase")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_field(format!("candidate {} has no string `phrase`", i + 1)))?;
        let score = match c.get("score") {
            None | Some(Value::Null) => 0.0,
            Some(s) => s.as_f64().ok_or_else(|| {
                bad_field(format!("candidate {} has a non-numeric `score`", i + 1))
            })?,
        };
        candidates.push(Candidate {
            phrase: phrase.to_string(),
            score,
        });
    }
    Ok(SelectDocument {
        id,
        title,
        abstract_,
        candidates,
    })
}

/// Words of the synthetic documents of the benchmarks.
pub const WORDS: [&str; 32] = [
    "optimal",
    "transport",
    "keyphrase",
    "generation",
    "language",
    "model",
    "sinkhorn",
    "set",
    "control",
    "code",
    "decoder",
    "encoder",
    "attention",
    "copy",
    "mechanism",
    "selection",
    "precision",
    "recall",
    "absent",
    "present",
    "graph",
    "neural",
    "retrieval",
    "index",
    "document",
    "corpus",
    "learning",
    "network",
    "semantic",
    "search",
    "query",
    "ranking",
];

/// A deterministic synthetic document for benchmarks and tests: `words` words of abstract and
/// `candidates` two-word candidates whose scores are not in presentation order.
pub fn synthetic_document(i: usize, words: usize, candidates: usize) -> SelectDocument {
    let w = |k: usize| WORDS[(i.wrapping_mul(7919) + k * 13 + k * k) % WORDS.len()];
    SelectDocument {
        id: format!("doc-{i}").into(),
        title: format!("{} {} for {} {}", w(0), w(1), w(2), w(3)),
        abstract_: (0..words).map(|k| w(k + 4)).collect::<Vec<_>>().join(" "),
        candidates: (0..candidates)
            .map(|k| Candidate {
                phrase: format!("{} {}", w(3 * k + 1), w(5 * k + 2)),
                score: ((i * 31 + k * 17) % 100) as f64 / 100.0,
            })
            .collect(),
    }
}

/// The input line `kpg select` reads for a document.
pub fn to_input_line(d: &SelectDocument) -> String {
    let candidates: Vec<Value> = d
        .candidates
        .iter()
        .map(|c| serde_json::json!({"phrase": c.phrase, "score": c.score}))
        .collect();
    serde_json::json!({"id": d.id, "title": d.title, "abstract": d.abstract_, "candidates": candidates})
        .to_string()
}
