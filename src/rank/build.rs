//! A ranker directory's tables built from gold-format corpora: the phrase table
//! ([`super::tables`]) first, then the retrieval index ([`super::neighbors`]), whose weights need
//! the table's IDF (`kpg ranker build`).

use std::collections::HashSet;

use super::extract::DocumentText;
use super::neighbors::NeighborIndex;
use super::tables::PhraseTable;
use crate::error::Result;
use crate::eval::input::for_each_line;

/// Builds the phrase table and the retrieval index from gold-format corpora (`{"id", "title",
/// "abstract", "keyphrases"}`), skipping the records whose id is in `exclude`: one pass for the
/// table, a second for the index (whose weights need the table's IDF). Returns both and the ids
/// that were skipped.
pub fn build_tables(
    inputs: &[std::path::PathBuf],
    max_words: usize,
    exclude: &HashSet<String>,
) -> Result<(PhraseTable, NeighborIndex, Vec<String>)> {
    let mut table = PhraseTable {
        max_words,
        ..PhraseTable::default()
    };
    let mut skipped = Vec::new();
    for_each_record(
        inputs,
        exclude,
        |doc, gold| table.add_document(doc, gold),
        &mut skipped,
    )?;
    table.prune();
    let mut index = NeighborIndex::default();
    for_each_record(
        inputs,
        exclude,
        |doc, gold| index.add_document(doc, gold, &table),
        &mut Vec::new(),
    )?;
    Ok((table, index, skipped))
}

fn for_each_record(
    inputs: &[std::path::PathBuf],
    exclude: &HashSet<String>,
    mut each: impl FnMut(&DocumentText, &[String]),
    skipped: &mut Vec<String>,
) -> Result<()> {
    for path in inputs {
        for_each_line(path, |_, text| {
            let r: TrainRecord =
                serde_json::from_str(text).map_err(|e| format!("not a gold record: {e}"))?;
            let id = match &r.id {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if exclude.contains(&id) {
                skipped.push(id);
                return Ok(());
            }
            each(
                &DocumentText::new(&r.title, &r.abstract_text),
                &r.keyphrases,
            );
            Ok(())
        })?;
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct TrainRecord {
    id: serde_json::Value,
    title: String,
    #[serde(rename = "abstract")]
    abstract_text: String,
    keyphrases: Vec<String>,
}
