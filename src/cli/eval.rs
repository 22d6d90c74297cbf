//! `kpg eval`: scores predicted keyphrases against gold ones by the One2Set protocol
//! (see [`crate::eval`]) and prints the figures as JSON, or as a table.

use std::path::PathBuf;

use clap::Args;

use super::print_line;
use crate::error::{KpgError, Result};
use crate::eval::input::{pair_by_id, read_gold, read_predictions};
use crate::eval::metrics::{precision_recall_curve, Kind, Report};
use crate::eval::plot::{precision_recall_svg, Curve};
use crate::eval::pool::{match_pool, PoolMatches, PoolReport};
use crate::eval::{match_document, DocumentMatches, Tokenization};

/// Arguments of `kpg eval` (its help text is on `Command::Eval`).
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Predictions (JSONL): `{"id", "keyphrases": [ranked]}`, or `kpg generate` / `kpg select`
    /// output.
    ///
    /// One line per document, matched to the gold by id. `kpg generate` lines
    /// (`{"id", "candidates": [{"phrase", ...}]}`) are ranked in the order given; `kpg select`
    /// lines are scored on their `keyphrases`, not their candidates.
    #[arg(long)]
    pub pred: PathBuf,
    /// Gold (JSONL, optionally .gz): `{"id", "title", "abstract", "keyphrases"}` lines.
    ///
    /// The format of `../shared/data`. Every gold id needs a prediction line and every
    /// prediction id a gold line; ids on one side only are an error that names them.
    #[arg(long)]
    pub gold: PathBuf,
    /// Split text on single spaces only, for One2Set-form files (how published numbers are made).
    ///
    /// Without it, titles, abstracts and phrases go through kpg's preprocessing first
    /// (lowercase, punctuation split off or dropped, numbers as `<digit>`).
    #[arg(long)]
    pub tokenized: bool,
    /// Print a readable table on stdout instead of the JSON.
    #[arg(long)]
    pub table: bool,
    /// Also draw precision against recall at cutoffs k = 1..M to this SVG file.
    ///
    /// One curve for present and one for absent keyphrases, one point per k, as in the One2Set
    /// papers' figures.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

pub fn eval(args: EvalArgs) -> Result<i32> {
    if let Some(plot) = &args.plot {
        let dir = plot.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            return Err(KpgError::InvalidArgument(format!(
                "--plot {}: directory {} does not exist",
                plot.display(),
                dir.display()
            )));
        }
    }
    let tokenization = if args.tokenized {
        Tokenization::Spaces
    } else {
        Tokenization::Kpg
    };

    let gold = read_gold(&args.gold)?;
    if gold.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "{}: no gold documents",
            args.gold.display()
        )));
    }
    let preds = read_predictions(&args.pred)?;
    let pairs = pair_by_id(gold, preds, &args.gold, &args.pred)?;
    let docs: Vec<DocumentMatches> = pairs
        .iter()
        .map(|(doc, pred)| match_document(doc, &pred.keyphrases, tokenization))
        .collect();
    let mut report = Report::of(&docs);
    if pairs.iter().any(|(_, p)| p.candidates.is_some()) {
        // A line without `candidates` has an empty pool.
        let pools: Vec<PoolMatches> = pairs
            .iter()
            .map(|(doc, p)| match_pool(doc, p.candidates.as_deref().unwrap_or(&[]), tokenization))
            .collect();
        report.pool = Some(PoolReport::of(&pools));
    }

    if let Some(path) = &args.plot {
        let present = precision_recall_curve(&docs, Kind::Present);
        let absent = precision_recall_curve(&docs, Kind::Absent);
        let title = format!(
            "Precision against recall at top-k cutoffs ({} documents)",
            docs.len()
        );
        let svg = precision_recall_svg(
            &title,
            &[
                Curve {
                    label: "present keyphrases",
                    color: "#1f77b4",
                    points: &present,
                },
                Curve {
                    label: "absent keyphrases",
                    color: "#d62728",
                    points: &absent,
                },
            ],
        );
        std::fs::write(path, svg).map_err(|e| KpgError::io(path, e))?;
    }

    if args.table {
        print_line(&report.table())?;
    } else {
        let json = serde_json::to_string(&report).map_err(|e| KpgError::Json {
            path: "<stdout>".into(),
            source: e,
        })?;
        print_line(&json)?;
    }
    Ok(0)
}
