//! `kpg tag --resume` and `--shard`: where an interrupted output file stops, and which input
//! records a shard owns.
//!
//! Output is written and flushed a batch at a time, one line per input record in input order, so
//! after any interruption (`kill -9` included) the file is a run of complete lines for the first
//! records, then at most one torn line. Resuming cuts the torn line off, counts the complete ones
//! and skips as many input records.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{KpgError, Result};
use crate::records::RecordId;

/// `--shard I/N`: record k (0-based, counting every non-blank input line) belongs to shard k mod N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn owns(&self, record: usize) -> bool {
        record % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}`: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What an earlier run left in the output file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    /// Complete lines: input records already done.
    pub lines: usize,
    /// Of those, `{"id", "error"}` lines.
    pub failed: usize,
    /// The id of the last complete line (None when it is null or there is none).
    pub last_id: Option<RecordId>,
    /// Bytes of a torn last line that were cut off.
    pub cut_bytes: u64,
}

/// Reads the output of an interrupted run, cuts off a torn last line, and says how far it got. A
/// missing file is a run that had not started.
pub fn resume_point(path: &Path) -> Result<Done> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Done::default()),
        Err(e) => return Err(KpgError::io(path, e)),
    };
    let size = file.metadata().map_err(|e| KpgError::io(path, e))?.len();
    let mut reader = BufReader::new(&file);
    let mut done = Done::default();
    let mut whole: u64 = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| KpgError::io(path, e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let line = done.lines + 1;
        let v: Value = serde_json::from_slice(&buf).map_err(|_| KpgError::InputLine {
            path: path.to_path_buf(),
            line,
            reason: "not a line of kpg tag output, so --resume cannot continue this file".into(),
        })?;
        whole += n as u64;
        done.lines = line;
        if v.get("error").is_some() {
            done.failed += 1;
        }
        done.last_id = std::str::from_utf8(&buf).ok().and_then(RecordId::of_line);
    }
    if size > whole {
        file.set_len(whole).map_err(|e| KpgError::io(path, e))?;
        done.cut_bytes = size - whole;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert!(s.owns(4) && !s.owns(3));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let torn = "{\"id\":\"c\",\"keyph";
        let text =
            format!("{{\"id\":\"a\",\"keyphrases\":[]}}\n{{\"id\":null,\"error\":\"x\"}}\n{torn}");
        std::fs::write(&p, text).unwrap();
        let d = resume_point(&p).unwrap();
        assert_eq!((d.lines, d.failed, d.last_id.clone()), (2, 1, None));
        assert_eq!(d.cut_bytes, torn.len() as u64);
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("\"x\"}\n"));
        assert_eq!(
            resume_point(&dir.path().join("none")).unwrap(),
            Done::default()
        );
    }
}
