//! JSON-lines records shared by the streaming commands (`kpg select`, `kpg generate`): numbered
//! input lines and the `{"id", "error"}` line that stands in for a record that failed.

use crate::error::{KpgError, Result};

/// An input line with its 1-based number in the file (blank lines are skipped before this, so the
/// numbers are the file's own).
pub type NumberedLine = (usize, Result<String>);

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
