//! Chat templates: the Jinja a model's `tokenizer_config.json` (or GGUF `tokenizer.chat_template`)
//! carries, rendered as transformers' `apply_chat_template` renders it (an environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, `tojson`
//! and Python's string methods), held to transformers on fixtures (`tools/make_chat_fixtures.py`).
//!
//! The selector wraps its prompt with [`ChatTemplate::wrap`]: the template rendered around one
//! user message, split at the message, gives the text before the prompt (`head`: a system turn,
//! the user header) and between the question and the answer (`tail`: the end of the user turn,
//! the assistant header).

use std::path::Path;

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::error::{KpgError, Result};

/// A model's chat template, with the special tokens templates refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The text around a user message, and before the assistant's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatWrap {
    pub head: String,
    pub tail: String,
}

/// Stands for the user message while the template is split; a private-use character no prompt
/// carries.
const MARK: &str = "\u{F8FF}kpg-message\u{F8FF}";

impl ChatTemplate {
    /// `conversation` rendered, with the assistant header after it when `add_generation_prompt`.
    pub fn render(&self, conversation: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        // jinja2 drops one trailing newline of a template's source, as transformers loads it.
        let source = self.source.strip_suffix('\n').unwrap_or(&self.source);
        let fail = |e: Error| KpgError::InvalidArgument(format!("chat template: {e:#}"));
        env.add_template("chat", source).map_err(fail)?;
        env.get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => conversation,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                })
            })
            .map_err(fail)
    }

    /// The text before and after one user message, the assistant header included.
    pub fn wrap(&self) -> Result<ChatWrap> {
        let user = Message {
            role: "user".into(),
            content: MARK.into(),
        };
        let text = self.render(&[user], true)?;
        let (head, tail) = text.split_once(MARK).ok_or_else(|| {
            KpgError::InvalidArgument(
                "chat template: the user's message does not appear verbatim in its rendering, so \
                 the prompt cannot be wrapped in it"
                    .into(),
            )
        })?;
        Ok(ChatWrap {
            head: head.to_string(),
            tail: tail.to_string(),
        })
    }

    /// `tokenizer_config.json`'s template (a string, or a list of named ones: `default`), or a
    /// `chat_template.jinja` beside it, with its `bos_token` and `eos_token`; None without one.
    pub fn from_dir(dir: &Path) -> Result<Option<ChatTemplate>> {
        let path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| KpgError::Json {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(KpgError::io(&path, e)),
        };
        let named = |list: &Vec<serde_json::Value>| {
            list.iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string)
        };
        let source = match &config["chat_template"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => named(list),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        let token = |key: &str| match &config[key] {
            serde_json::Value::String(s) => s.clone(),
            v => v["content"].as_str().unwrap_or_default().to_string(),
        };
        Ok(source.map(|source| ChatTemplate {
            source,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        }))
    }
}

/// `strftime_now(format)`: today's date (UTC) for the `%d`, `%m`, `%Y`, `%b`, `%B` and `%%`
/// directives the templates in use ask for.
fn strftime_now(format: String) -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_426), (2025, 12, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
