//! `kpg generate` (the One2Set generator over JSON lines, streaming and in order) and `kpg vocab`
//! (its vocabulary from corpora).

use serde_json::Value;

use super::lines::{input_lines, LineSink, Progress};
use super::output_lock::OutputLock;
use super::{GenerateKeyphrasesArgs, VocabArgs};
use crate::error::{KpgError, Result};
use crate::eval::input::for_each_line;
use crate::one2set::run::{generate_lines, GenerateOptions};
use crate::one2set::vocab::VocabBuilder;
use crate::one2set::Generator;
use crate::preprocess::{source_tokens, tokenize};

pub fn generate(args: GenerateKeyphrasesArgs) -> Result<i32> {
    if args.batch_docs == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-docs must be at least 1".into(),
        ));
    }
    args.device.require_built()?;
    let generator = Generator::load(&args.generator)?;
    let lock = args
        .output
        .as_deref()
        .map(OutputLock::acquire)
        .transpose()?;
    let lines = input_lines(args.input.as_deref())?;
    let read_failure = lines.failure();
    let mut sink = LineSink::open(args.output.as_deref())?;
    let opts = GenerateOptions {
        batch_docs: args.batch_docs,
        device: args.device,
        gpu: args.gpu,
    };
    let mut progress = Progress::new("generate");
    let summary = generate_lines(
        &generator,
        lines,
        &opts,
        |line| sink.write_line(line),
        |s| progress.tick(s.documents),
    )?;
    sink.finish()?;
    drop(lock);
    read_failure.check()?;
    let secs = progress.elapsed();
    eprintln!(
        "kpg generate: {} ({} failed), {}, {:.1} s, {:.1} documents/s",
        super::plural::count(summary.documents, "document"),
        summary.failed,
        super::plural::count(summary.candidates, "candidate"),
        secs,
        summary.documents as f64 / secs.max(1e-9)
    );
    Ok(if summary.failed > 0 { 1 } else { 0 })
}

pub fn vocab(args: VocabArgs) -> Result<i32> {
    if args.size < crate::one2set::vocab::SPECIAL_TOKENS.len() {
        return Err(KpgError::InvalidArgument(format!(
            "--size must be at least {} (the special tokens)",
            crate::one2set::vocab::SPECIAL_TOKENS.len()
        )));
    }
    let mut builder = VocabBuilder::default();
    let mut documents = 0usize;
    for path in &args.input {
        for_each_line(path, |_, text| {
            let v: Value =
                serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
            let field = |key: &str| -> std::result::Result<&str, String> {
                match v.get(key) {
                    Some(Value::String(s)) => Ok(s),
                    None | Some(Value::Null) => Ok(""),
                    Some(_) => Err(format!("`{key}` is not a string")),
                }
            };
            builder.add(&source_tokens(field("title")?, field("abstract")?));
            match v.get("keyphrases") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, k) in items.iter().enumerate() {
                        let k = k
                            .as_str()
                            .ok_or_else(|| format!("`keyphrases`[{i}] is not a string"))?;
                        builder.add(&tokenize(k));
                    }
                }
                Some(_) => return Err("`keyphrases` is not a list".into()),
            }
            documents += 1;
            Ok(())
        })?;
    }
    let vocab = builder.build(args.size);
    std::fs::create_dir_all(&args.out).map_err(|e| KpgError::io(&args.out, e))?;
    let path = crate::one2set::vocab::tokenizer_path(&args.out);
    vocab.write(&path)?;
    eprintln!(
        "kpg vocab: {} documents, {} distinct words, wrote {} entries to {}",
        documents,
        builder.distinct(),
        vocab.len(),
        path.display()
    );
    Ok(0)
}
