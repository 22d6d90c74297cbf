//! `kpg ranker`: what a ranker directory is made of. `tables` counts the phrase table and builds
//! the retrieval index of a training corpus; `features` writes the pool of each gold document with
//! its features and labels, which `tools/train_ranker.py` trains the trees on (so that training and
//! `kpg tag` compute the features with the same code).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::lines::LineSink;
use crate::error::{KpgError, Result};
use crate::eval::input::read_gold;
use crate::one2set::candidates::Candidate;
use crate::one2set::{GenerateWorkspace, Generator};
use crate::rank::extract::{phrase_key, DocumentText};
use crate::rank::features::FEATURE_NAMES;
use crate::rank::neighbors::{NeighborIndex, NEIGHBORS_FILE};
use crate::rank::pool::build_pool;
use crate::rank::tables::{PhraseTable, PHRASES_FILE};

#[derive(Subcommand, Debug)]
pub enum RankerCommand {
    /// Count a ranker's phrase table (`phrases.tsv.gz`: every candidate's document frequency and
    /// how often it is an author keyphrase) and build its retrieval index (`neighbors.tsv.gz`),
    /// over gold-format corpora.
    Tables(TablesArgs),
    /// Write every candidate of the pool of gold documents, with its features and label, as TSV.
    ///
    /// Columns: `doc`, `phrase`, `label` (1 when the phrase is a gold keyphrase of the document,
    /// after stemming), `source`, then the features in the order `kpg tag` computes them.
    Features(FeaturesArgs),
}

#[derive(Args, Debug)]
pub struct TablesArgs {
    /// Training corpora `{"id", "title", "abstract", "keyphrases"}` (JSON lines, .gz allowed).
    #[arg(long, num_args = 1.., required = true)]
    pub train: Vec<PathBuf>,
    /// Output directory (created): DIR/phrases.tsv.gz and DIR/neighbors.tsv.gz.
    #[arg(long)]
    pub out: PathBuf,
    /// Longest extracted candidate, in words.
    #[arg(long, default_value_t = 4)]
    pub max_words: usize,
    /// Leave out the record with this id (repeatable), e.g. one that duplicates a test document.
    #[arg(long)]
    pub exclude_id: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// A directory with the phrase table and retrieval index (`kpg ranker tables --out`).
    #[arg(long)]
    pub tables: PathBuf,
    /// Generator whose candidates join the pool (without it, the pool is the extractor's alone).
    #[arg(long)]
    pub generator: Option<PathBuf>,
    /// Gold documents (JSON lines, .gz allowed; several allowed).
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output TSV (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(cmd: RankerCommand) -> Result<i32> {
    match cmd {
        RankerCommand::Tables(a) => build_tables(a),
        RankerCommand::Features(a) => features(a),
    }
}

fn build_tables(args: TablesArgs) -> Result<i32> {
    if args.max_words == 0 || args.max_words > 8 {
        return Err(KpgError::InvalidArgument(
            "--max-words must be between 1 and 8".into(),
        ));
    }
    let exclude: HashSet<String> = args.exclude_id.iter().cloned().collect();
    let (table, index, skipped) =
        crate::rank::build::build_tables(&args.train, args.max_words, &exclude)?;
    let missing: Vec<&String> = exclude.iter().filter(|id| !skipped.contains(id)).collect();
    if !missing.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "--exclude-id: no record has id {missing:?}"
        )));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| KpgError::io(&args.out, e))?;
    let path = args.out.join(PHRASES_FILE);
    table.save(&path)?;
    let index_path = args.out.join(NEIGHBORS_FILE);
    index.save(&index_path)?;
    let keyphrases = table
        .phrases
        .values()
        .filter(|s| s.keyphrase_docs > 0)
        .count();
    eprintln!(
        "kpg ranker tables: {} documents ({} excluded), {} phrases ({keyphrases} ever a keyphrase) \
         -> {} and {}",
        table.docs,
        skipped.len(),
        table.phrases.len(),
        path.display(),
        index_path.display()
    );
    Ok(0)
}

fn features(args: FeaturesArgs) -> Result<i32> {
    let table = PhraseTable::load(&args.tables.join(PHRASES_FILE))?;
    let index = NeighborIndex::load(&args.tables.join(NEIGHBORS_FILE))?;
    let generator = args.generator.as_deref().map(Generator::load).transpose()?;
    let mut ws = GenerateWorkspace::default();
    let mut sink = LineSink::open(args.output.as_deref())?;
    let header: Vec<&str> = ["doc", "phrase", "label", "source"]
        .into_iter()
        .chain(FEATURE_NAMES)
        .collect();
    sink.write_line(&header.join("\t"))?;
    let mut rows = 0usize;
    for path in &args.input {
        let gold = read_gold(path)?;
        for batch in gold.chunks(32) {
            let generated: Vec<Vec<Candidate>> = match &generator {
                Some(g) => {
                    let prepared: Vec<_> = batch
                        .iter()
                        .map(|d| g.prepare(&d.title, &d.abstract_text))
                        .collect();
                    let refs: Vec<_> = prepared.iter().collect();
                    g.generate(&refs, &mut ws)?
                }
                None => vec![Vec::new(); batch.len()],
            };
            let present_codes = generator
                .as_ref()
                .map_or(0, |g| g.model.config.num_present_codes);
            for (doc, generated) in batch.iter().zip(&generated) {
                let text = DocumentText::new(&doc.title, &doc.abstract_text);
                let gold_keys: HashSet<String> =
                    doc.keyphrases.iter().map(|k| phrase_key(k)).collect();
                let retrieved = index.retrieve(&text, &table);
                for c in build_pool(&text, generated, present_codes, &retrieved, &table) {
                    let label = u8::from(gold_keys.contains(&c.key));
                    let mut line = format!(
                        "{}\t{}\t{label}\t{}",
                        doc.id.replace(['\t', '\n'], " "),
                        c.phrase,
                        c.source.name()
                    );
                    for f in c.features {
                        line.push('\t');
                        line.push_str(&f.to_string());
                    }
                    sink.write_line(&line)?;
                    rows += 1;
                }
            }
        }
    }
    sink.finish()?;
    let _ = std::io::stderr().flush();
    eprintln!("kpg ranker features: {rows} candidates");
    Ok(0)
}
