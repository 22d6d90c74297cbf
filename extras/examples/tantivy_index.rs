//! An indexer that uses kpg as a library: documents are tagged by a [`kpg::Pipeline`] (loaded once)
//! and indexed with tantivy, with a `keyphrase` field next to the title and abstract; then a search
//! on that field.
//!
//! ```sh
//! cargo run --release -p kpg-extras --example tantivy_index -- --generator models/generator \
//!     [--ranker DIR] [--selector DIR] [--input examples/abstracts.jsonl] \
//!     [--query "optimal transport"] [--threshold X]
//! ```
//!
//! Without `--query`, it searches for the first keyphrase of the first document.

use std::error::Error;
use std::path::PathBuf;

use kpg::{Document, Pipeline, PipelineOptions};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, Value, STORED, STRING, TEXT};
use tantivy::{Index, IndexWriter, TantivyDocument};

struct Args {
    generator: PathBuf,
    ranker: Option<PathBuf>,
    selector: Option<PathBuf>,
    input: PathBuf,
    query: Option<String>,
    threshold: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        generator: PathBuf::from(kpg::cli::DEFAULT_GENERATOR),
        ranker: Some(PathBuf::from(kpg::rank::DEFAULT_RANKER)).filter(|d| d.is_dir()),
        selector: None,
        input: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/abstracts.jsonl"
        )),
        query: None,
        threshold: kpg::pipeline::DEFAULT_THRESHOLD,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--generator" => args.generator = value()?.into(),
            "--selector" => args.selector = Some(value()?.into()),
            "--ranker" => args.ranker = Some(value()?.into()),
            "--input" => args.input = value()?.into(),
            "--query" => args.query = Some(value()?),
            "--threshold" => {
                args.threshold = value()?.parse().map_err(|e| format!("--threshold: {e}"))?
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: tantivy_index --generator DIR \
                     [--ranker DIR] [--selector DIR] [--input FILE] [--query TEXT] [--threshold X]"
                ))
            }
        }
    }
    Ok(args)
}

/// `{"id", "title", "abstract"}` lines.
fn read_documents(path: &PathBuf) -> Result<Vec<Document>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut docs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        docs.push(Document::new(
            field("id"),
            field("title"),
            field("abstract"),
        ));
    }
    Ok(docs)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let pipeline = Pipeline::load(
        &args.generator,
        args.ranker.as_deref(),
        args.selector.as_deref(),
        PipelineOptions {
            threshold: args.threshold,
            ..PipelineOptions::default()
        },
    )?;
    let docs = read_documents(&args.input)?;

    let mut schema = Schema::builder();
    let id = schema.add_text_field("id", STRING | STORED);
    let title = schema.add_text_field("title", TEXT | STORED);
    let body = schema.add_text_field("abstract", TEXT);
    let keyphrase = schema.add_text_field("keyphrase", TEXT | STORED);
    let index = Index::create_in_ram(schema.build());
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000)?;

    // One call for the whole lot; an indexer with many threads may equally call `tag` from each
    // with a document at a time, and the pipeline batches them.
    let mut first_keyphrase = None;
    for (doc, tagged) in docs.iter().zip(pipeline.tag(&docs)) {
        let tagged = tagged?;
        let mut d = TantivyDocument::default();
        d.add_text(id, doc.id.text());
        d.add_text(title, &doc.title);
        d.add_text(body, &doc.abstract_text);
        for k in &tagged.keyphrases {
            d.add_text(keyphrase, k);
        }
        println!("{}: {}", doc.id, tagged.keyphrases.join("; "));
        if first_keyphrase.is_none() {
            first_keyphrase = tagged.keyphrases.first().cloned();
        }
        writer.add_document(d)?;
    }
    writer.commit()?;

    let Some(query_text) = args.query.or(first_keyphrase) else {
        println!("no keyphrases to search for (pass --query TEXT)");
        return Ok(());
    };
    let searcher = index.reader()?.searcher();
    // Lenient: keyphrases may hold characters of the query language, such as parentheses.
    let (query, _) =
        QueryParser::for_index(&index, vec![keyphrase]).parse_query_lenient(&query_text);
    let hits = searcher.search(&query, &TopDocs::with_limit(5).order_by_score())?;
    println!("keyphrase:({query_text}) -> {} hits", hits.len());
    for (score, address) in hits {
        let d: TantivyDocument = searcher.doc(address)?;
        let text = |f| {
            d.get_all(f)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        };
        println!(
            "  {score:.3} {} {:?} keyphrases {:?}",
            text(id).join(""),
            text(title).join(""),
            text(keyphrase)
        );
    }
    Ok(())
}
