//! The records of `kpg generate`. Input: `{"id", "title", "abstract"}` (other fields ignored).
//! Output: `{"id", "candidates": [{"phrase", "score", "slot", "present"}]}`, or `{"id", "error"}`
//! for a record that could not be read.

use serde::Serialize;
use serde_json::Value;

use super::candidates::Candidate;
use crate::error::{KpgError, Result};
use crate::records::RecordId;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateDocument {
    pub id: RecordId,
    pub title: String,
    pub abstract_text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedDocument<'a> {
    pub id: &'a RecordId,
    pub candidates: &'a [Candidate],
}

/// Parses one input line; errors name the field and the line.
/// The record shape these lines must have, for error messages.
const SCHEMA: &str = r#"{"id": string or number, "title": string, "abstract": string}"#;

pub fn parse_document(line: &str, line_no: usize) -> Result<GenerateDocument> {
    let bad = |reason: String| KpgError::InvalidArgument(format!("line {line_no}: {reason}"));
    // A field that is missing or of the wrong type: the record's expected shape, too.
    let bad_field = |reason: String| bad(format!("{reason} (expected {SCHEMA})"));
    let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad_field("not a JSON object".into()))?;
    let id =
        RecordId::of_line(line).ok_or_else(|| bad_field("missing or invalid field `id`".into()))?;
    let text = |key: &str| -> Result<String> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad_field(format!("`{key}` must be a string"))),
            None => Err(bad_field(format!("missing field `{key}`"))),
        }
    };
    Ok(GenerateDocument {
        id,
        title: text("title")?,
        abstract_text: text("abstract")?,
    })
}
