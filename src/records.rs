//! JSON-lines records shared by the streaming commands (`kpg select`, `kpg generate`, `kpg tag`,
//! `kpg train`): numbered input lines and the `{"id", "error"}` line that stands in for a record that failed.

use std::io::BufRead;
use std::path::Path;

use crate::error::{KpgError, Result};
use crate::eval::input::open;

/// An input line with its 1-based number in the file (blank lines are skipped before this, so the
/// numbers are the file's own).
pub type NumberedLine = (usize, Result<String>);

/// Lines of the input (stdin for None or `-`; gzip detected from the content) as UTF-8 strings with
/// the file's own 1-based line numbers; a line that is not UTF-8 becomes an error item in place;
/// blank lines are skipped.
pub fn input_lines(path: Option<&Path>) -> Result<Box<dyn Iterator<Item = NumberedLine> + Send>> {
    let reader: Box<dyn BufRead + Send> = match path {
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
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .filter(|(_, l)| !matches!(l, Ok(s) if s.trim().is_empty())),
    ))
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
    id: &'a Option<String>,
    error: String,
}

/// `{"id", "error"}` for a failed record; the message names the line unless it already does.
pub fn error_line(id: &Option<String>, line_no: usize, err: &KpgError) -> String {
    let msg = err.to_string();
    let error = if msg.starts_with("line ") {
        msg
    } else {
        format!("line {line_no}: {msg}")
    };
    serde_json::to_string(&ErrorLine { id, error }).expect("plain values")
}
