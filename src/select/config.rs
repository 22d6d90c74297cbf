//! `kpg_selector.json`: how a selector directory turns a document and its candidates into a prompt,
//! and how the answer is written. The defaults follow the paper's sequence-labelling selector: the
//! candidates listed in the generator's confidence order, then one label per candidate.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{KpgError, Result};

pub const SELECTOR_FILE: &str = "kpg_selector.json";

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerFormat {
    /// The label sequence alone (`Answer: T F T`), as in the paper's figure.
    Labels,
    /// Each candidate restated, then its label (`1. safety problem: T`).
    Interleaved,
}

/// Whether the prompt is wrapped in the model's chat template (`chat_template`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// Wrapped when the model has a chat template (instruct models do), plain otherwise.
    #[default]
    Auto,
    /// Always wrapped: a model without a template is an error at load.
    On,
    /// Never wrapped.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    #[serde(rename = "true")]
    pub yes: String,
    #[serde(rename = "false")]
    pub no: String,
}

/// How `kpg tag` combines the selector's answers with a ranker's pool ([`crate::rank::fusion`]):
/// each candidate the selector judged gets `sigmoid(logit(ranker probability) + selector_weight ·
/// logit(P(true)))`, and the ranker's cut runs on those. Both numbers are chosen on validation data
/// (`tools/tune_selector_rule.py`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankerFusion {
    pub selector_weight: f64,
    /// The cut's present threshold on the fused probabilities; absent: the ranker's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_threshold: Option<f64>,
    /// Answer each label with the cut's decision on the fused probability (before the top-up to
    /// the fewest present keyphrases), so that the selector's later answers read the keyphrases
    /// the cut keeps; false: its greedy answers, which keep fewer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_by_cut: bool,
}

/// The prompt template. Placeholders: `{title}`, `{abstract}` in `document`; `{n}` (1-based
/// position) and `{phrase}` in `candidate`, `answer_item` and `rerank_query`; `{label}` in
/// `answer_item` and `rerank_query`. Values are inserted verbatim, never re-expanded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorConfig {
    /// The instruction every prompt starts with; computed once and shared by all documents.
    pub instruction: String,
    pub document: String,
    pub candidates_header: String,
    pub candidate: String,
    /// Text between the candidate list and the first label.
    pub answer_prefix: String,
    pub answer_format: AnswerFormat,
    /// One answer item; must contain `{label}` once, and `{phrase}` only when interleaved.
    pub answer_item: String,
    pub labels: Labels,
    /// The `rerank` baseline: instruction and document as above, then this query per candidate,
    /// each candidate scored on its own; must end with `{label}`.
    pub rerank_query: String,
    /// Whether the prompt is wrapped in the model's chat template: the instruction, document and
    /// candidates (or rerank query) as the user's message, the answer as the assistant's.
    #[serde(default)]
    pub chat_template: ChatMode,
    /// The LLaMA model this selector runs on, when the directory holds only a template and a LoRA
    /// adapter (what `kpg train selector` writes): a Hugging Face directory or a GGUF file, relative
    /// to the selector directory unless absolute. The directory's own `adapter_config.json` and
    /// `adapter_model.safetensors` are then applied to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// P(true) (the softmax of the two labels' logits) a candidate needs to be kept, chosen on
    /// validation data for a trained selector; absent: the likelier label, as greedy decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_threshold: Option<f32>,
    /// The selector sees only a record's highest-scored candidates, at most this many (those it
    /// was trained on); the others are dropped. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_candidates: Option<usize>,
    /// With a ranker (`kpg tag`): the keyphrases are the ranker's cut over probabilities the
    /// selector's P(true) has moved, and the selector's own labels only steer its later answers.
    /// Absent, or without a ranker (`kpg select`, `kpg tag --no-ranker`): the selector's labels
    /// are the keyphrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranker_fusion: Option<RankerFusion>,
    /// The template's text around the user message, when the prompt is wrapped (set at load).
    #[serde(skip)]
    pub chat: Option<super::chat::ChatWrap>,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        Self::for_format(AnswerFormat::Labels)
    }
}

impl SelectorConfig {
    /// The default template for an answer format.
    pub fn for_format(format: AnswerFormat) -> Self {
        SelectorConfig {
            instruction: "Below are a scientific document and candidate keyphrases for it, the \
                          most likely first. For each candidate in order, answer T to keep it as a \
                          keyphrase of the document or F to drop it. Drop a candidate that means \
                          the same as one already kept.\n\n"
                .into(),
            document: "Title: {title}\nAbstract: {abstract}\n\n".into(),
            candidates_header: "Candidates:\n".into(),
            candidate: "{n}. {phrase}\n".into(),
            answer_prefix: "\nAnswer:".into(),
            answer_format: format,
            answer_item: match format {
                AnswerFormat::Labels => " {label}".into(),
                AnswerFormat::Interleaved => "\n{n}. {phrase}: {label}".into(),
            },
            labels: Labels {
                yes: "T".into(),
                no: "F".into(),
            },
            rerank_query: "Candidate: {phrase}\nIs it a keyphrase of the document? Answer: {label}"
                .into(),
            chat_template: ChatMode::Auto,
            base_model: None,
            keep_threshold: None,
            max_candidates: None,
            ranker_fusion: None,
            chat: None,
        }
    }

    /// The text every prompt starts with: the chat template's head, when wrapped, and the
    /// instruction.
    pub fn prompt_start(&self) -> String {
        match &self.chat {
            Some(chat) => format!("{}{}", chat.head, self.instruction),
            None => self.instruction.clone(),
        }
    }

    /// The text between the question and the answer: the chat template's tail, when wrapped.
    pub fn answer_start(&self) -> &str {
        self.chat.as_ref().map_or("", |c| c.tail.as_str())
    }

    /// Reads `dir/kpg_selector.json`; a LLaMA directory without one gets the default template.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(SELECTOR_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| KpgError::io(&path, e))?;
        let config: SelectorConfig = serde_json::from_str(&text)
            .map_err(|e| KpgError::config(&path, "(template)", format!("{e}")))?;
        config.validate(&path)?;
        Ok(config)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SELECTOR_FILE);
        let text = serde_json::to_string_pretty(self).expect("plain strings");
        std::fs::write(&path, text).map_err(|e| KpgError::io(&path, e))
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let err = |field: &str, reason: &str| Err(KpgError::config(path, field, reason));
        if self.labels.yes.is_empty()
            || self.labels.no.is_empty()
            || self.labels.yes == self.labels.no
        {
            return err(
                "labels",
                "the two labels must be different, non-empty strings",
            );
        }
        if self.answer_item.matches("{label}").count() != 1 {
            return err("answer_item", "must contain `{label}` exactly once");
        }
        let restates = self.answer_item.contains("{phrase}");
        match self.answer_format {
            AnswerFormat::Labels if restates => {
                return err(
                    "answer_item",
                    "the `labels` format does not restate `{phrase}`",
                )
            }
            AnswerFormat::Interleaved if !restates => {
                return err(
                    "answer_item",
                    "the `interleaved` format restates `{phrase}`",
                )
            }
            _ => {}
        }
        if !self.rerank_query.ends_with("{label}")
            || self.rerank_query.matches("{label}").count() != 1
        {
            return err("rerank_query", "must end with `{label}`, once");
        }
        if self.max_candidates == Some(0) {
            return err("max_candidates", "must be at least 1");
        }
        if self
            .keep_threshold
            .is_some_and(|t| !(0.0..=1.0).contains(&t))
        {
            return err("keep_threshold", "must be a probability, in [0, 1]");
        }
        if let Some(f) = &self.ranker_fusion {
            if !(f.selector_weight.is_finite() && f.selector_weight >= 0.0) {
                return err(
                    "ranker_fusion.selector_weight",
                    "must be a finite number, at least 0",
                );
            }
            if f.present_threshold
                .is_some_and(|t| !(0.0..=1.0).contains(&t))
            {
                return err(
                    "ranker_fusion.present_threshold",
                    "must be a probability, in [0, 1]",
                );
            }
        }
        Ok(())
    }
}

/// Fills `{name}` placeholders from `values` in one pass: inserted text is never re-expanded, so a
/// document that contains `{title}` stays as written. Unknown placeholders are kept literally.
pub fn render(template: &str, values: &[(&str, &str)], out: &mut String) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let hit = values.iter().find(|(name, _)| {
            tail.len() > name.len() + 1
                && tail[1..].starts_with(name)
                && tail.as_bytes()[name.len() + 1] == b'}'
        });
        match hit {
            Some((name, value)) => {
                out.push_str(value);
                rest = &tail[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_does_not_reexpand_values() {
        let mut out = String::new();
        render(
            "T: {title} / {abstract} {x}",
            &[("title", "{abstract}"), ("abstract", "a")],
            &mut out,
        );
        assert_eq!(out, "T: {abstract} / a {x}");
    }

    #[test]
    fn ranker_fusion_is_checked_and_round_trips() {
        let with = |selector_weight, present_threshold| SelectorConfig {
            ranker_fusion: Some(RankerFusion {
                selector_weight,
                present_threshold,
                answer_by_cut: true,
            }),
            ..Default::default()
        };
        let good = with(0.5, Some(0.12));
        good.validate(Path::new("x")).unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<SelectorConfig>(&json).unwrap(), good);
        for (bad, field) in [
            (with(-0.1, None), "selector_weight"),
            (with(f64::NAN, None), "selector_weight"),
            (with(0.5, Some(1.5)), "present_threshold"),
        ] {
            let e = bad.validate(Path::new("x")).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        for format in [AnswerFormat::Labels, AnswerFormat::Interleaved] {
            let c = SelectorConfig::for_format(format);
            c.validate(Path::new("x")).unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<SelectorConfig>(&json).unwrap(), c);
        }
    }
}
