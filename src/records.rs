//! JSON-lines records shared by the streaming commands (`kpg select`, `kpg generate`, `kpg tag`,
//! `kpg train`): numbered input lines, record ids kept exactly as written, and the `{"id", "error"}`
//! line that stands in for a record that failed.

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{KpgError, Result};
use crate::eval::input::open;

/// An input line with its 1-based number in the file (blank lines are skipped before this, so the
/// numbers are the file's own).
pub type NumberedLine = (usize, Result<String>);

/// A record's `id` as its JSON text: a string or a number, exactly as the input wrote it, so that
/// `1` and `"1"` stay two ids and `123456789012345678901234567890` is not rounded. Output lines
/// write it back unchanged; resume compares ids by this text.
#[derive(Clone)]
pub struct RecordId(Box<RawValue>);

impl RecordId {
    /// The id of a JSON value's text, when it is a string or a number.
    pub fn from_json(text: &str) -> Option<RecordId> {
        let text = text.trim();
        let first = text.bytes().next()?;
        if first != b'"' && first != b'-' && !first.is_ascii_digit() {
            return None;
        }
        RawValue::from_string(text.to_string()).ok().map(RecordId)
    }

    /// The `id` field of a JSON-object line, when it is a string or a number.
    pub fn of_line(line: &str) -> Option<RecordId> {
        #[derive(Deserialize)]
        struct IdField<'a> {
            #[serde(borrow, default)]
            id: Option<&'a RawValue>,
        }
        // A derived struct also reads a JSON array by position; only an object has fields.
        if !line.trim_start().starts_with('{') {
            return None;
        }
        let fields: IdField = serde_json::from_str(line).ok()?;
        RecordId::from_json(fields.id?.get())
    }

    /// The id's JSON text (`"a"` with its quotes, `1`), what identity means.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The id as a reader would name it: a string's text, a number as written.
    pub fn text(&self) -> Cow<'_, str> {
        let json = self.json();
        if json.starts_with('"') {
            match serde_json::from_str::<String>(json) {
                Ok(s) => Cow::Owned(s),
                Err(_) => Cow::Borrowed(json),
            }
        } else {
            Cow::Borrowed(json)
        }
    }
}

/// A string id (what library callers give).
impl From<String> for RecordId {
    fn from(s: String) -> Self {
        RecordId::from(s.as_str())
    }
}

impl From<&str> for RecordId {
    fn from(s: &str) -> Self {
        let json = serde_json::to_string(s).expect("a string serialises");
        RecordId(RawValue::from_string(json).expect("a JSON string"))
    }
}

impl From<&String> for RecordId {
    fn from(s: &String) -> Self {
        RecordId::from(s.as_str())
    }
}

impl PartialEq for RecordId {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for RecordId {}

impl std::hash::Hash for RecordId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.json().hash(state)
    }
}

/// Equal to a string id with this text (`RecordId::from("a") == "a"`; the number 1 is not `"1"`).
impl PartialEq<&str> for RecordId {
    fn eq(&self, other: &&str) -> bool {
        self.json().starts_with('"') && self.text() == *other
    }
}

impl PartialEq<String> for RecordId {
    fn eq(&self, other: &String) -> bool {
        *self == other.as_str()
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Set when the input could not be read to its end (a truncated or corrupt `.gz`, an I/O error):
/// the line iterator stops there, and the command, after writing the lines of every complete
/// record before it, fails with this error ([`ReadFailure::check`]).
#[derive(Clone, Default)]
pub struct ReadFailure(Arc<Mutex<Option<KpgError>>>);

impl ReadFailure {
    fn set(&self, err: KpgError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
    }

    /// The read error, if reading stopped on one.
    pub fn check(&self) -> Result<()> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The non-blank lines of an input, numbered; see [`input_lines`].
pub struct InputLines {
    reader: Box<dyn BufRead + Send>,
    name: String,
    /// How the offsets are counted: of the file, or of its decompressed text.
    compressed: bool,
    line_no: usize,
    /// Bytes of (decompressed) text read so far: where the next line starts.
    offset: u64,
    ended: bool,
    failure: ReadFailure,
}

impl InputLines {
    /// The handle that says whether reading stopped on an error; check it after the last line.
    pub fn failure(&self) -> ReadFailure {
        self.failure.clone()
    }

    fn next_line(&mut self) -> Option<NumberedLine> {
        while !self.ended {
            let mut bytes = Vec::new();
            match self.reader.read_until(b'\n', &mut bytes) {
                Ok(0) => self.ended = true,
                Ok(n) => {
                    let start = self.offset;
                    self.offset += n as u64;
                    self.line_no += 1;
                    if bytes.last() == Some(&b'\n') {
                        bytes.pop();
                    }
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                    // A UTF-8 byte-order mark (Windows editors write one) is not part of the record.
                    if start == 0 && bytes.starts_with(b"\xEF\xBB\xBF") {
                        bytes.drain(..3);
                    }
                    let line = String::from_utf8(bytes).map_err(|_| {
                        KpgError::InvalidArgument("the record is not valid UTF-8".into())
                    });
                    if matches!(&line, Ok(s) if s.trim().is_empty()) {
                        continue;
                    }
                    return Some((self.line_no, line));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A decoder keeps failing once its stream is damaged: stop for good, and let
                    // the command fail after the complete records before this point.
                    self.ended = true;
                    let at = if self.compressed {
                        format!("byte {} of its decompressed text", self.offset)
                    } else {
                        format!("byte {}", self.offset)
                    };
                    self.failure.set(KpgError::CorruptInput {
                        path: self.name.clone(),
                        at,
                        after_line: self.line_no,
                        source: e,
                    });
                }
            }
        }
        None
    }
}

impl Iterator for InputLines {
    type Item = NumberedLine;

    fn next(&mut self) -> Option<NumberedLine> {
        self.next_line()
    }
}

/// Lines of the input (stdin for None or `-`; gzip detected from the content) as UTF-8 strings with
/// the file's own 1-based line numbers; a line that is not UTF-8 becomes an error item in place;
/// blank lines are skipped, and so is a byte-order mark at the start. A read error (a truncated
/// `.gz`) ends the lines and is kept in [`InputLines::failure`].
pub fn input_lines(path: Option<&Path>) -> Result<InputLines> {
    let (reader, compressed): (Box<dyn BufRead + Send>, bool) = match path {
        Some(p) if p.as_os_str() != "-" => open(p)?,
        _ => (Box::new(std::io::BufReader::new(std::io::stdin())), false),
    };
    Ok(InputLines {
        reader,
        name: path.map_or("<stdin>".to_string(), |p| p.display().to_string()),
        compressed,
        line_no: 0,
        offset: 0,
        ended: false,
        failure: ReadFailure::default(),
    })
}

/// Rejects a record there is nothing to tag in: `kpg tag`, `kpg generate` and the library's
/// [`crate::Pipeline`] agree on what a document is.
pub fn check_fields(id: &RecordId, title: &str, abstract_text: &str) -> Result<()> {
    if id.text().trim().is_empty() {
        return Err(KpgError::InvalidArgument("empty field `id`".into()));
    }
    if title.trim().is_empty() && abstract_text.trim().is_empty() {
        return Err(KpgError::InvalidArgument(
            "empty document: `title` and `abstract` are both empty".into(),
        ));
    }
    Ok(())
}

/// Numbers lines from 1, for inputs without blank lines.
pub fn numbered<I: IntoIterator<Item = Result<String>>>(
    lines: I,
) -> impl Iterator<Item = NumberedLine> {
    lines.into_iter().enumerate().map(|(i, l)| (i + 1, l))
}

/// The output line of a record that failed: `{"id", "error"}` (id null when unreadable).
#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    id: &'a Option<RecordId>,
    error: String,
}

/// `{"id", "error"}` for a failed record; the message names the line unless it already does.
pub fn error_line(id: &Option<RecordId>, line_no: usize, err: &KpgError) -> String {
    let msg = err.to_string();
    let error = if msg.starts_with("line ") {
        msg
    } else {
        format!("line {line_no}: {msg}")
    };
    serde_json::to_string(&ErrorLine { id, error }).expect("plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ids_keep_their_json_text() {
        let big = r#"{"id": 123456789012345678901234567890, "title": "t"}"#;
        let id = RecordId::of_line(big).unwrap();
        assert_eq!(id.json(), "123456789012345678901234567890");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "123456789012345678901234567890"
        );
        let one = RecordId::of_line(r#"{"id": 1}"#).unwrap();
        let one_str = RecordId::of_line(r#"{"id": "1"}"#).unwrap();
        assert_ne!(one, one_str);
        assert_eq!(one_str, "1");
        assert_ne!(one, "1");
        assert_eq!(RecordId::from("a\"b").json(), r#""a\"b""#);
        assert_eq!(RecordId::from("a\"b").to_string(), "a\"b");
        for bad in [
            r#"{"id": null}"#,
            r#"{"id": [1]}"#,
            r#"{"id": true}"#,
            r#"{"x": 1}"#,
            "[1]",
            "not json",
        ] {
            assert!(RecordId::of_line(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_truncated_gzip_ends_the_lines_with_a_named_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2000 {
            writeln!(enc, "{{\"id\": {i}, \"title\": \"record number {i}\"}}").unwrap();
        }
        let bytes = enc.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let lines = input_lines(Some(&path)).unwrap();
        let failure = lines.failure();
        let read: Vec<_> = lines.collect();
        assert!(!read.is_empty() && read.len() < 2000);
        assert!(read.iter().all(|(_, l)| l.is_ok()));
        let msg = failure.check().unwrap_err().to_string();
        assert!(
            msg.contains("in.jsonl.gz") && msg.contains("byte "),
            "{msg}"
        );
        // A header alone, and a gzip magic with nothing after it.
        for head in [&bytes[..10], &bytes[..2]] {
            std::fs::write(&path, head).unwrap();
            let lines = input_lines(Some(&path)).unwrap();
            let failure = lines.failure();
            assert_eq!(lines.count(), 0);
            assert!(failure.check().is_err());
        }
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.jsonl");
        std::fs::write(&path, "\u{FEFF}{\"id\": 1}\r\n\n{\"id\": 2}").unwrap();
        let lines: Vec<_> = input_lines(Some(&path))
            .unwrap()
            .map(|(n, l)| (n, l.unwrap()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (1, "{\"id\": 1}".to_string()),
                (3, "{\"id\": 2}".to_string())
            ]
        );
    }
}
