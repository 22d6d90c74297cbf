//! Selection programs: a document and its candidates rendered with the template, tokenised, and
//! turned into a fixed program of forced tokens and label choices.
//!
//! The answer is rendered twice, once with every label true and once with every label false, and
//! tokenised with offsets. Each label must be exactly one token in both renderings (a token may take
//! in the whitespace before the label, as sentencepiece's `▁T` does), and every other token must be
//! the same in both: then any mix of decisions tokenises as the program says, and the engine can
//! append forced text in one chunk and choose between two token ids at each label.

use std::ops::Range;

use super::config::{render, AnswerFormat, SelectorConfig};
use crate::error::{KpgError, Result};
use crate::tokenizer::Tokenizer;

/// A choice point: the token at `pos` is one of `ids` = [true label, false label].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSlot {
    pub pos: usize,
    pub ids: [u32; 2],
}

/// Tokens up to the last label (the text after it is never needed) with the choice points. The
/// token at each label position holds the true label until the engine writes the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub tokens: Vec<u32>,
    pub labels: Vec<LabelSlot>,
    /// How each label is answered, by label; empty: every label by the scheduler's own rule.
    pub keep_rules: Vec<KeepRule>,
}

/// How the engine answers a label from the model's P(true).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepRule {
    /// The scheduler's rule: its keep threshold, else the likelier label (greedy).
    Scheduler,
    /// True when the candidate's fused probability ([`crate::rank::fusion::fused_probability`] of
    /// the ranker's probability and P(true) at `weight`) reaches `threshold`: the ranker's cut
    /// before its top-up, so that the later answers read the keyphrases the cut keeps.
    Fused {
        ranker: f64,
        weight: f64,
        threshold: f64,
    },
}

impl KeepRule {
    /// The answer for P(true) `p`; `scheduler` is the scheduler's rule.
    pub fn keep(&self, p: f32, scheduler: impl FnOnce() -> bool) -> bool {
        match *self {
            KeepRule::Scheduler => scheduler(),
            KeepRule::Fused {
                ranker,
                weight,
                threshold,
            } => crate::rank::fusion::fused_probability(ranker, Some(p), weight) >= threshold,
        }
    }
}

/// A template rendering with the byte ranges of its labels.
struct Rendered {
    text: String,
    label_spans: Vec<Range<usize>>,
}

/// Why a rendering cannot be compiled, for the error message.
fn template_error(what: &str, reason: String) -> KpgError {
    KpgError::InvalidArgument(format!("{what}: {reason}"))
}

/// Renders the selection prompt and answer for candidates in the given order.
fn render_selection(
    config: &SelectorConfig,
    title: &str,
    abstract_: &str,
    phrases: &[&str],
    label: &str,
) -> Rendered {
    let mut text = config.prompt_start();
    render(
        &config.document,
        &[("title", title), ("abstract", abstract_)],
        &mut text,
    );
    text.push_str(&config.candidates_header);
    for (i, phrase) in phrases.iter().enumerate() {
        let n = (i + 1).to_string();
        render(
            &config.candidate,
            &[("n", &n), ("phrase", phrase)],
            &mut text,
        );
    }
    text.push_str(config.answer_start());
    text.push_str(&config.answer_prefix);
    let mut label_spans = Vec::with_capacity(phrases.len());
    for (i, phrase) in phrases.iter().enumerate() {
        let n = (i + 1).to_string();
        push_item(
            &config.answer_item,
            &n,
            phrase,
            label,
            "",
            &mut text,
            &mut label_spans,
        );
    }
    Rendered { text, label_spans }
}

/// Renders `item` with its label, recording where the label landed; `answer_start` (the chat
/// template's assistant header, for a rerank query) goes right before the label.
fn push_item(
    item: &str,
    n: &str,
    phrase: &str,
    label: &str,
    answer_start: &str,
    text: &mut String,
    spans: &mut Vec<Range<usize>>,
) {
    let (before, after) = item.split_once("{label}").expect("validated: one {label}");
    render(before, &[("n", n), ("phrase", phrase)], text);
    text.push_str(answer_start);
    let start = text.len();
    text.push_str(label);
    spans.push(start..text.len());
    render(after, &[("n", n), ("phrase", phrase)], text);
}

/// The document part shared by the rerank queries of one document (instruction included).
pub fn rerank_prompt(config: &SelectorConfig, title: &str, abstract_: &str) -> String {
    let mut text = config.prompt_start();
    render(
        &config.document,
        &[("title", title), ("abstract", abstract_)],
        &mut text,
    );
    text
}

fn render_rerank(config: &SelectorConfig, prompt: &str, phrase: &str, label: &str) -> Rendered {
    let mut text = prompt.to_string();
    let mut label_spans = Vec::new();
    push_item(
        &config.rerank_query,
        "1",
        phrase,
        label,
        config.answer_start(),
        &mut text,
        &mut label_spans,
    );
    Rendered { text, label_spans }
}

/// Tokenises the all-true and all-false renderings and checks that they differ only in single
/// label tokens.
fn compile(tok: &Tokenizer, yes: Rendered, no: Rendered, what: &str) -> Result<Program> {
    let (yes_ids, yes_offsets) = tok.encode_with_offsets(&yes.text, true)?;
    let (no_ids, no_offsets) = tok.encode_with_offsets(&no.text, true)?;
    let yes_pos = label_positions(&yes, &yes_offsets, what)?;
    let no_pos = label_positions(&no, &no_offsets, what)?;
    if yes_ids.len() != no_ids.len() || yes_pos != no_pos {
        return Err(template_error(
            what,
            "the labels change how the surrounding text is tokenised".into(),
        ));
    }
    let mut labels = Vec::with_capacity(yes_pos.len());
    for &pos in &yes_pos {
        if yes_ids[pos] == no_ids[pos] {
            return Err(template_error(
                what,
                "the two labels encode to the same token".into(),
            ));
        }
        labels.push(LabelSlot {
            pos,
            ids: [yes_ids[pos], no_ids[pos]],
        });
    }
    let mut is_label = vec![false; yes_ids.len()];
    for &pos in &yes_pos {
        is_label[pos] = true;
    }
    let forced_differ = (0..yes_ids.len()).any(|i| yes_ids[i] != no_ids[i] && !is_label[i]);
    if forced_differ {
        return Err(template_error(
            what,
            "the labels change how the surrounding text is tokenised".into(),
        ));
    }
    let end = labels.last().map_or(0, |l| l.pos);
    if labels.first().is_some_and(|l| l.pos == 0) {
        return Err(template_error(
            what,
            "a label cannot be the first token".into(),
        ));
    }
    let mut tokens = yes_ids;
    tokens.truncate(end + 1);
    Ok(Program {
        tokens,
        labels,
        keep_rules: Vec::new(),
    })
}

/// The token index of each label: the one token that covers it, taking in at most whitespace
/// before it and nothing after it. One walk over the tokens for all labels (offsets ascend, and so
/// do the labels), so a record with many candidates costs linear time.
fn label_positions(r: &Rendered, offsets: &[(usize, usize)], what: &str) -> Result<Vec<usize>> {
    let mut positions = Vec::with_capacity(r.label_spans.len());
    let mut first = 0;
    for span in &r.label_spans {
        // Tokens that end at or before the label cannot overlap it, nor any later label.
        while first < offsets.len() && offsets[first].1 <= span.start {
            first += 1;
        }
        let overlapping: Vec<usize> = (first..offsets.len())
            .take_while(|&i| offsets[i].0 < span.end)
            .filter(|&i| span.start < offsets[i].1)
            .collect();
        let label = &r.text[span.clone()];
        let [i] = overlapping[..] else {
            return Err(template_error(
                what,
                format!(
                    "label `{label}` is {} tokens in context; it must be exactly one",
                    overlapping.len()
                ),
            ));
        };
        let (start, end) = offsets[i];
        let clean = end == span.end
            && start <= span.start
            && r.text[start..span.start].chars().all(char::is_whitespace);
        if !clean {
            return Err(template_error(
                what,
                format!(
                    "label `{label}` merges with the text around it into the token `{}`",
                    &r.text[start.min(span.start)..end.max(span.end)]
                ),
            ));
        }
        positions.push(i);
        first = i + 1;
    }
    Ok(positions)
}

/// Rejects candidates that would break the template.
pub fn check_phrase(n: usize, phrase: &str) -> Result<()> {
    if phrase.trim().is_empty() {
        return Err(KpgError::InvalidArgument(format!("candidate {n} is empty")));
    }
    if phrase.contains(['\n', '\r']) {
        return Err(KpgError::InvalidArgument(format!(
            "candidate {n} `{}` would break the template: it contains a line break",
            phrase.escape_debug()
        )));
    }
    Ok(())
}

/// The selection program for a document with its candidates in presentation order.
pub fn selection_program(
    config: &SelectorConfig,
    tok: &Tokenizer,
    title: &str,
    abstract_: &str,
    phrases: &[&str],
) -> Result<Program> {
    for (i, p) in phrases.iter().enumerate() {
        check_phrase(i + 1, p)?;
    }
    if phrases.is_empty() {
        return Ok(Program {
            tokens: Vec::new(),
            labels: Vec::new(),
            keep_rules: Vec::new(),
        });
    }
    let yes = render_selection(config, title, abstract_, phrases, &config.labels.yes);
    let no = render_selection(config, title, abstract_, phrases, &config.labels.no);
    let what = match config.answer_format {
        AnswerFormat::Labels => "selection prompt",
        AnswerFormat::Interleaved => "selection prompt (interleaved)",
    };
    compile(tok, yes, no, what)
}

/// The rerank program of one candidate: the document prompt, the query, one label.
pub fn rerank_program(
    config: &SelectorConfig,
    tok: &Tokenizer,
    prompt: &str,
    n: usize,
    phrase: &str,
) -> Result<Program> {
    check_phrase(n, phrase)?;
    let yes = render_rerank(config, prompt, phrase, &config.labels.yes);
    let no = render_rerank(config, prompt, phrase, &config.labels.no);
    compile(tok, yes, no, "rerank query")
}

/// Checks at load time that the tokenizer keeps each label a single token in context, on a probe
/// document, for both the selection and the rerank templates.
pub fn check_template(config: &SelectorConfig, tok: &Tokenizer) -> Result<()> {
    let phrases = [
        "keyphrase generation",
        "optimal transport",
        "large language model",
    ];
    let title = "One2Set and large language models";
    let abstract_ = "We generate keyphrases with a set generator and select them with an LLM.";
    selection_program(config, tok, title, abstract_, &phrases)?;
    let prompt = rerank_prompt(config, title, abstract_);
    rerank_program(config, tok, &prompt, 1, phrases[0])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::KeepRule;

    #[test]
    fn keep_rules_answer_by_their_own_rule() {
        assert!(KeepRule::Scheduler.keep(0.1, || true));
        assert!(!KeepRule::Scheduler.keep(0.9, || false));
        let fused = KeepRule::Fused {
            ranker: 0.2,
            weight: 1.0,
            threshold: 0.19,
        };
        // P(true) 0.5 leaves the ranker's 0.2, over the threshold; 0.45 takes it to 0.17.
        assert!(fused.keep(0.5, || false));
        assert!(!fused.keep(0.45, || true));
        assert!(fused.keep(0.9, || false));
    }
}
