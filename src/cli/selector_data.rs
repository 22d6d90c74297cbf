//! `kpg selector-data`: a selector's training records from `kpg tag`'s output and the gold
//! keyphrases, each candidate labelled by the evaluation's stemmed match.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use super::lines::{input_lines, LineSink};
use crate::error::{KpgError, Result};
use crate::eval::input::read_gold;
use crate::select::train::labels::label_candidates;

#[derive(Args, Debug)]
pub struct SelectorDataArgs {
    /// `kpg tag` output (`{"id", "candidates": [{"phrase", "score", ...}]}` lines), .gz allowed.
    #[arg(long)]
    pub tagged: PathBuf,
    /// The gold corpus (`{"id", "title", "abstract", "keyphrases"}`), .gz allowed.
    #[arg(long)]
    pub gold: PathBuf,
    /// Output file (stdout when absent).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Keep the highest-scored candidates of each record, at most this many.
    #[arg(long, default_value_t = 30)]
    pub max_candidates: usize,
}

pub fn run(args: SelectorDataArgs) -> Result<i32> {
    let gold: HashMap<String, _> = read_gold(&args.gold)?
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
    let lines = input_lines(Some(&args.tagged))?;
    let failure = lines.failure();
    let mut sink = LineSink::open(args.output.as_deref())?;
    let (mut written, mut errors, mut trues, mut total) = (0usize, 0usize, 0usize, 0usize);
    for (number, line) in lines {
        let record = line.and_then(|text| {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                KpgError::InvalidArgument(format!("line {number}: malformed JSON: {e}"))
            })?;
            let id = crate::records::RecordId::of_line(&text).ok_or_else(|| {
                KpgError::InvalidArgument(format!("line {number}: missing or invalid `id`"))
            })?;
            let Some(g) = gold.get(id.text().as_ref()) else {
                return Err(KpgError::InvalidArgument(format!(
                    "line {number}: id {id} is not in {}",
                    args.gold.display()
                )));
            };
            let mut cands: Vec<(String, f64)> = v["candidates"]
                .as_array()
                .ok_or_else(|| {
                    KpgError::InvalidArgument(format!(
                        "line {number}: no `candidates` list (a `kpg tag` output line has one)"
                    ))
                })?
                .iter()
                .filter_map(|c| Some((c["phrase"].as_str()?.to_string(), c["score"].as_f64()?)))
                .collect();
            cands.sort_by(|a, b| b.1.total_cmp(&a.1));
            cands.truncate(args.max_candidates);
            let phrases: Vec<&str> = cands.iter().map(|c| c.0.as_str()).collect();
            let labels = label_candidates(&g.keyphrases, &phrases);
            let candidates: Vec<Value> = cands
                .iter()
                .zip(&labels)
                .map(|((p, s), l)| json!({"phrase": p, "score": s, "label": l}))
                .collect();
            Ok((
                json!({"id": id, "title": g.title, "abstract": g.abstract_text,
                       "candidates": candidates})
                .to_string(),
                labels,
            ))
        });
        match record {
            Ok((text, labels)) => {
                trues += labels.iter().filter(|&&l| l).count();
                total += labels.len();
                sink.write_line(&text)?;
                written += 1;
            }
            Err(e) => {
                eprintln!("kpg selector-data: {}: {e}", args.tagged.display());
                errors += 1;
            }
        }
    }
    sink.finish()?;
    failure.check()?;
    eprintln!(
        "kpg selector-data: {written} records, {total} candidates, {trues} true ({:.1}%){}",
        100.0 * trues as f64 / total.max(1) as f64,
        if errors > 0 {
            format!(", {errors} lines skipped")
        } else {
            String::new()
        }
    );
    Ok(i32::from(errors > 0))
}
