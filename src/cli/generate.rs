//! `kpg generate` (the One2Set generator over JSON lines, streaming and in order) and `kpg vocab`
//! (its vocabulary from corpora).

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use serde_json::Value;

use super::select::Progress;
use super::{GenerateKeyphrasesArgs, VocabArgs};
use crate::error::{KpgError, Result};
use crate::eval::input::{for_each_line, open};
use crate::one2set::run::{generate_lines, GenerateOptions};
use crate::one2set::vocab::VocabBuilder;
use crate::one2set::Generator;
use crate::preprocess::{source_tokens, tokenize};

/// Lines of the input (stdin, a file, or a .gz file) as UTF-8 strings; a line that is not UTF-8
/// becomes an error item in place, and blank lines are skipped.
pub(crate) fn input_lines_gz(
    path: Option<&Path>,
) -> Result<Box<dyn Iterator<Item = Result<String>>>> {
    let reader: Box<dyn BufRead> = match path {
        Some(p) if p.as_os_str() != "-" => open(p)?,
        _ => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let name = path.map_or("<stdin>".to_string(), |p| p.display().to_string());
    Ok(Box::new(
        reader
            .split(b'\n')
            .map(move |line| {
                let mut bytes = line.map_err(|e| KpgError::io(&name, e))?;
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                String::from_utf8(bytes)
                    .map_err(|_| KpgError::InvalidArgument("the record is not valid UTF-8".into()))
            })
            .filter(|l| !matches!(l, Ok(s) if s.trim().is_empty())),
    ))
}

pub fn generate(args: GenerateKeyphrasesArgs) -> Result<i32> {
    if args.batch_docs == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-docs must be at least 1".into(),
        ));
    }
    let generator = Generator::load(&args.generator)?;
    let lines = input_lines_gz(args.input.as_deref())?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).map_err(|e| KpgError::io(p, e))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let opts = GenerateOptions {
        batch_docs: args.batch_docs,
    };
    let mut progress = Progress::new("generate");
    let mut broken_pipe = false;
    let summary = generate_lines(
        &generator,
        lines,
        &opts,
        |line| {
            if broken_pipe {
                return Ok(());
            }
            match writeln!(out, "{line}") {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    broken_pipe = true;
                    Ok(())
                }
                Err(e) => Err(KpgError::io("<output>", e)),
            }
        },
        |s| progress.tick(s.documents),
    )?;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(KpgError::io("<output>", e))
        }
        _ => {}
    }
    let secs = progress.elapsed();
    eprintln!(
        "kpg generate: {} documents ({} failed), {} candidates, {:.1} s, {:.1} documents/s",
        summary.documents,
        summary.failed,
        summary.candidates,
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
