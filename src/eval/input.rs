//! The two inputs of `kpg eval`, read as JSON Lines, gzip-compressed or not, and paired by
//! document id.
//!
//! Gold: the `../shared/data` format, `{"id", "title", "abstract", "keyphrases": [...]}`.
//! Predictions, one line per document, in any of three shapes (lines may mix them):
//! `{"id", "keyphrases": [ranked]}`; `kpg generate`'s `{"id", "candidates": [{"phrase", ...}]}`
//! (ranked in the given order); `kpg select`'s `{"id", "keyphrases", "candidates"}`, whose
//! selected `keyphrases` win over the candidates.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{KpgError, Result};

/// One gold document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldDocument {
    pub id: String,
    pub title: String,
    pub abstract_text: String,
    pub keyphrases: Vec<String>,
}

/// One line of a prediction file: the ranked keyphrases of a document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prediction {
    pub id: String,
    pub keyphrases: Vec<String>,
    /// The line's `candidates` phrases, when it has them (its pool).
    pub candidates: Option<Vec<String>>,
}

/// A gold document with its predictions, in gold order.
pub type Pair = (GoldDocument, Prediction);

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Int(i64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::Text(s) => s,
            Id::Int(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct GoldLine {
    id: Id,
    title: String,
    #[serde(rename = "abstract")]
    abstract_text: String,
    keyphrases: Vec<String>,
}

/// Opens `path` for reading lines, decompressing it when it starts with the gzip magic bytes
/// (the extension is not trusted: `.jsonl.gz` files get renamed and piped).
/// The flag says whether it was compressed.
pub(crate) fn open(path: &Path) -> Result<(Box<dyn BufRead + Send>, bool)> {
    let file = File::open(path).map_err(|e| KpgError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| KpgError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(BufReader::new(MultiGzDecoder::new(reader))), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// Calls `each(line_number, line)` (numbered from 1) for every non-blank line of `path`.
pub(crate) fn for_each_line(
    path: &Path,
    mut each: impl FnMut(usize, &str) -> std::result::Result<(), String>,
) -> Result<()> {
    let (mut reader, _) = open(path)?;
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| KpgError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let fail = |reason: String| KpgError::InputLine {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let text = std::str::from_utf8(&buf).map_err(|e| fail(format!("not UTF-8: {e}")))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        each(line, text).map_err(fail)?;
    }
}

/// Remembers the line of every id, so that a repeated one is an error naming both lines.
struct SeenIds(HashMap<String, usize>);

impl SeenIds {
    fn add(&mut self, id: &str, line: usize) -> std::result::Result<(), String> {
        match self.0.insert(id.to_string(), line) {
            Some(first) => Err(format!("duplicate id `{id}` (first on line {first})")),
            None => Ok(()),
        }
    }
}

/// Reads a gold file in the shared data format.
pub fn read_gold(path: &Path) -> Result<Vec<GoldDocument>> {
    let mut docs = Vec::new();
    let mut seen = SeenIds(HashMap::new());
    for_each_line(path, |line, text| {
        let g: GoldLine =
            serde_json::from_str(text).map_err(|e| format!("not a gold record: {e}"))?;
        let id = g.id.into_string();
        seen.add(&id, line)?;
        docs.push(GoldDocument {
            id,
            title: g.title,
            abstract_text: g.abstract_text,
            keyphrases: g.keyphrases,
        });
        Ok(())
    })?;
    Ok(docs)
}

/// Reads a prediction file in any of the three shapes.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let mut preds = Vec::new();
    let mut seen = SeenIds(HashMap::new());
    for_each_line(path, |line, text| {
        let p = parse_prediction(text)?;
        seen.add(&p.id, line)?;
        preds.push(p);
        Ok(())
    })?;
    Ok(preds)
}

fn parse_prediction(text: &str) -> std::result::Result<Prediction, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err("`id` is not a string".into()),
        None => return Err("no `id` field".into()),
    };
    let candidates = match obj.get("candidates") {
        Some(c) if !c.is_null() => Some(candidate_phrases(c)?),
        _ => None,
    };
    let keyphrases = match (obj.get("keyphrases"), &candidates) {
        (Some(k), _) if !k.is_null() => string_list(k, "keyphrases")?,
        (_, Some(c)) => c.clone(),
        _ => {
            return Err(format!(
                "document `{id}`: no `keyphrases` or `candidates` field"
            ))
        }
    };
    Ok(Prediction {
        id,
        keyphrases,
        candidates,
    })
}

fn string_list(v: &Value, field: &str) -> std::result::Result<Vec<String>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("`{field}` is not a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("`{field}`[{i}] is not a string"))
        })
        .collect()
}

/// The phrases of `kpg generate`'s candidates, in the order given (a bare string is accepted
/// as a phrase too).
fn candidate_phrases(v: &Value) -> std::result::Result<Vec<String>, String> {
    let items = v.as_array().ok_or("`candidates` is not a list")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => match o.get("phrase") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(format!("`candidates`[{i}] has no string `phrase`")),
            },
            _ => Err(format!("`candidates`[{i}] is not an object")),
        })
        .collect()
}

/// Pairs every gold document with its predictions. An id on one side only is an error that
/// names it: silently scoring a missing document as zero, or dropping it, skews every metric.
pub fn pair_by_id(
    gold: Vec<GoldDocument>,
    preds: Vec<Prediction>,
    gold_path: &Path,
    pred_path: &Path,
) -> Result<Vec<Pair>> {
    let gold_ids: std::collections::HashSet<&str> = gold.iter().map(|g| g.id.as_str()).collect();
    let only_in_pred: Vec<String> = preds
        .iter()
        .filter(|p| !gold_ids.contains(p.id.as_str()))
        .map(|p| p.id.clone())
        .collect();
    let mut by_id: HashMap<String, Prediction> =
        preds.into_iter().map(|p| (p.id.clone(), p)).collect();
    let only_in_gold: Vec<String> = gold
        .iter()
        .filter(|g| !by_id.contains_key(&g.id))
        .map(|g| g.id.clone())
        .collect();
    if !only_in_gold.is_empty() || !only_in_pred.is_empty() {
        return Err(KpgError::IdMismatch {
            gold: PathBuf::from(gold_path),
            pred: PathBuf::from(pred_path),
            only_in_gold,
            only_in_pred,
        });
    }
    Ok(gold
        .into_iter()
        .map(|g| {
            let p = by_id.remove(&g.id).unwrap_or_default();
            (g, p)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_prediction_shapes() {
        let p = parse_prediction(r#"{"id": "a", "keyphrases": ["x", "y"]}"#).unwrap();
        assert_eq!(p.keyphrases, ["x", "y"]);
        let p = parse_prediction(
            r#"{"id": 7, "candidates": [{"phrase": "y", "score": 0.9, "slot": 0, "present": true}, {"phrase": "x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.id.as_str(), p.keyphrases),
            ("7", vec!["y".into(), "x".into()])
        );
        let p = parse_prediction(
            r#"{"id": "a", "keyphrases": ["x"], "candidates": [{"phrase": "y"}, {"phrase": "x"}]}"#,
        )
        .unwrap();
        assert_eq!(p.keyphrases, ["x"]);
        let p = parse_prediction(r#"{"id": "a", "keyphrases": []}"#).unwrap();
        assert!(p.keyphrases.is_empty());
        assert_eq!(p.candidates, None);
        let p = parse_prediction(
            r#"{"id": "a", "keyphrases": ["x"], "candidates": [{"phrase": "y"}, "x"]}"#,
        )
        .unwrap();
        assert_eq!(
            p.candidates.as_deref(),
            Some(&["y".to_string(), "x".to_string()][..])
        );
    }

    #[test]
    fn malformed_predictions_say_what_is_wrong() {
        for (line, needle) in [
            ("{", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"keyphrases": []}"#, "no `id`"),
            (r#"{"id": ["a"], "keyphrases": []}"#, "`id`"),
            (r#"{"id": "a"}"#, "no `keyphrases` or `candidates`"),
            (
                r#"{"id": "a", "keyphrases": "x"}"#,
                "`keyphrases` is not a list",
            ),
            (r#"{"id": "a", "keyphrases": ["x", 3]}"#, "`keyphrases`[1]"),
            (
                r#"{"id": "a", "candidates": [{"score": 1}]}"#,
                "`candidates`[0]",
            ),
        ] {
            let err = parse_prediction(line).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
