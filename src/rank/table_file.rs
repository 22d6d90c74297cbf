//! The file form of a ranker directory's tables (`phrases.tsv.gz`, `neighbors.tsv.gz`):
//! gzip-compressed text lines, the first a header `#kpg-<kind>\tname=number\t...`. Reading checks
//! the header and names the file and line of anything wrong.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{KpgError, Result};
use crate::eval::input::open;

/// Writes a table: its header, then one line at a time.
pub struct TableWriter {
    path: PathBuf,
    out: GzEncoder<BufWriter<File>>,
}

impl TableWriter {
    pub fn create(path: &Path, kind: &str, header: &[(&str, u64)]) -> Result<Self> {
        let file = File::create(path).map_err(|e| KpgError::io(path, e))?;
        let mut w = TableWriter {
            path: path.to_path_buf(),
            out: GzEncoder::new(BufWriter::new(file), Compression::new(9)),
        };
        let fields: Vec<String> = header.iter().map(|(n, v)| format!("{n}={v}")).collect();
        w.line(&format!("#kpg-{kind}\t{}", fields.join("\t")))?;
        Ok(w)
    }

    pub fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}").map_err(|e| KpgError::io(&self.path, e))
    }

    pub fn finish(self) -> Result<()> {
        let path = self.path;
        self.out
            .finish()
            .and_then(|mut b| b.flush())
            .map_err(|e| KpgError::io(&path, e))
    }
}

/// Reads a table: the header's numbers, then one line at a time.
pub struct TableReader {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: String,
    line_no: usize,
    header: HashMap<String, u64>,
}

impl TableReader {
    /// Opens `path`, whose header must be `#kpg-<kind>` with a number for each of `required`;
    /// `what` names the kind in errors ("a kpg phrase table").
    pub fn open(path: &Path, kind: &str, what: &str, required: &[&str]) -> Result<Self> {
        if !path.is_file() {
            return Err(KpgError::MissingFile { path: path.into() });
        }
        let mut r = TableReader {
            path: path.to_path_buf(),
            reader: open(path)?.0,
            line: String::new(),
            line_no: 0,
            header: HashMap::new(),
        };
        let magic = format!("#kpg-{kind}");
        let head = r.next_line()?.unwrap_or_default().to_string();
        let mut fields = head.split('\t');
        if fields.next() != Some(magic.as_str()) {
            return Err(r.error(format!("not {what} (no `{magic}` header)")));
        }
        for f in fields {
            let (name, value) = f.split_once('=').unwrap_or((f, ""));
            let v = value
                .parse::<u64>()
                .map_err(|_| r.error(format!("header field `{f}` is not name=number")))?;
            r.header.insert(name.to_string(), v);
        }
        if let Some(missing) = required.iter().find(|n| !r.header.contains_key(**n)) {
            return Err(r.error(format!("the header lacks {missing}=")));
        }
        Ok(r)
    }

    /// A header number (one of `required`).
    pub fn field(&self, name: &str) -> u64 {
        self.header[name]
    }

    /// The next line without its line break, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<&str>> {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| KpgError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        Ok(Some(self.line.trim_end_matches(['\n', '\r'])))
    }

    /// The next line, which must be there.
    pub fn required_line(&mut self) -> Result<&str> {
        if self.next_line()?.is_none() {
            return Err(self.error("the file ends early (truncated?)".into()));
        }
        Ok(self.line.trim_end_matches(['\n', '\r']))
    }

    /// An error at the line last read.
    pub fn error(&self, reason: String) -> KpgError {
        KpgError::InputLine {
            path: self.path.clone(),
            line: self.line_no.max(1),
            reason,
        }
    }
}
