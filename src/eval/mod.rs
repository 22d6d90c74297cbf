//! Keyphrase evaluation by the protocol of the One2Set papers (Ye et al. 2021, "One2Set: Generating
//! Diverse Keyphrases as a Set", `evaluate_prediction.py` in jiacheng-ye/kg_one2set, itself after
//! Chan et al. 2019, kenchan0226/keyphrase-generation-rl), as run for published numbers:
//!
//! - every token is lowercased and Porter-stemmed as NLTK does ([`porter`]);
//! - predictions: empty ones and those with a `,`, `.` or `<unk>` token are dropped, then
//!   duplicates after stemming (the first is kept); gold: duplicates after stemming are dropped;
//! - a phrase is present when its stemmed tokens occur contiguously in the stemmed title and
//!   abstract; predictions and gold are split into present and absent this way and each half is
//!   scored on its own ([`metrics`]).
//!
//! Two deliberate differences from that script, which matter only for phrases with a `_` inside
//! a token or with no tokens at all (no gold phrase of the shared test sets has either): phrases
//! are compared as token lists (the script joins tokens with `_`, so `a_b` equals `a b`), and a
//! gold phrase with no tokens is dropped (the script counts it as an absent keyphrase that can
//! never be matched).

pub mod input;
pub mod metrics;
pub mod plot;
pub mod pool;
pub mod porter;

use std::collections::HashSet;

use crate::preprocess::{tokenize, UNK};
use input::GoldDocument;

/// How titles, abstracts and phrases become tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenization {
    /// kpg's preprocessing ([`crate::preprocess::tokenize`]), for original text.
    Kpg,
    /// Split on single spaces and nothing else, for text already in One2Set form (how published
    /// numbers are computed).
    Spaces,
}

/// What one document contributes: which of its ranked, filtered predictions match a gold
/// phrase, per kind, and the duplication of its raw prediction tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentMatches {
    pub present: Matches,
    pub absent: Matches,
    /// 1 - distinct stemmed tokens / stemmed tokens, over all the document's predictions as
    /// given (before any filtering); 0 when they have no tokens.
    pub dup_token_ratio: f64,
}

/// One kind (present or absent) of one document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matches {
    /// For each prediction of this kind, in rank order: does it equal a gold phrase of this kind?
    pub is_match: Vec<bool>,
    /// The number of distinct gold phrases of this kind.
    pub num_gold: usize,
}

/// Python's `str.strip()` set: Unicode whitespace plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The tokens of a title, an abstract or a phrase.
pub fn tokens(text: &str, tokenization: Tokenization) -> Vec<String> {
    match tokenization {
        Tokenization::Kpg => tokenize(text),
        Tokenization::Spaces => {
            // One2Set strips the text, then splits on single spaces; an empty text has no tokens.
            let text = text.trim_matches(is_python_space);
            if text.is_empty() {
                Vec::new()
            } else {
                text.split(' ').map(str::to_string).collect()
            }
        }
    }
}

/// Tokens stemmed as One2Set's `stem_word_list` does: `stem(w.strip().lower())`.
pub fn stemmed_tokens(text: &str, tokenization: Tokenization) -> Vec<String> {
    tokens(text, tokenization)
        .iter()
        .map(|t| porter::stem(&t.trim_matches(is_python_space).to_lowercase()))
        .collect()
}

/// The stemmed text in which presence is decided: title then abstract. With kpg's tokenisation
/// a `.` goes between them, as One2Set's titles end in ` .` (its `<eos>` is dropped for
/// evaluation); with `--tokenized` the two are joined as given, as One2Set does. Either way no
/// prediction can span the two, since one with a `.` token is dropped.
pub fn presence_source(doc: &GoldDocument, tokenization: Tokenization) -> Vec<String> {
    let mut source = stemmed_tokens(&doc.title, tokenization);
    if tokenization == Tokenization::Kpg {
        source.push(".".to_string());
    }
    source.extend(stemmed_tokens(&doc.abstract_text, tokenization));
    source
}

/// Does `phrase` occur as a contiguous run of `source`? An empty phrase never does.
pub fn is_present(source: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && source.windows(phrase.len()).any(|w| w == phrase)
}

/// A prediction that is kept: it has tokens and none of them is `,`, `.` or `<unk>`.
pub(crate) fn is_valid_prediction(phrase: &[String]) -> bool {
    !phrase.is_empty() && !phrase.iter().any(|t| t == "," || t == "." || t == UNK)
}

/// Keeps the first of every run of equal phrases, in order.
fn dedup_keep_first(phrases: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut seen = HashSet::new();
    phrases
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

fn dup_token_ratio(predictions: &[Vec<String>]) -> f64 {
    let all: Vec<&String> = predictions.iter().flatten().collect();
    if all.is_empty() {
        return 0.0;
    }
    let unique: HashSet<&String> = all.iter().copied().collect();
    1.0 - unique.len() as f64 / all.len() as f64
}

/// Applies the protocol to one document and its ranked predictions.
pub fn match_document(
    doc: &GoldDocument,
    predictions: &[String],
    tokenization: Tokenization,
) -> DocumentMatches {
    let source = presence_source(doc, tokenization);
    let stem_all = |phrases: &[String]| -> Vec<Vec<String>> {
        phrases
            .iter()
            .map(|p| stemmed_tokens(p, tokenization))
            .collect()
    };
    let preds = stem_all(predictions);
    let ratio = dup_token_ratio(&preds);
    let preds = dedup_keep_first(
        preds
            .into_iter()
            .filter(|p| is_valid_prediction(p))
            .collect(),
    );
    let gold = dedup_keep_first(
        stem_all(&doc.keyphrases)
            .into_iter()
            .filter(|g| !g.is_empty())
            .collect(),
    );

    let (gold_present, gold_absent): (Vec<_>, Vec<_>) =
        gold.into_iter().partition(|g| is_present(&source, g));
    let mut present = Matches {
        num_gold: gold_present.len(),
        ..Matches::default()
    };
    let mut absent = Matches {
        num_gold: gold_absent.len(),
        ..Matches::default()
    };
    for p in &preds {
        if is_present(&source, p) {
            present.is_match.push(gold_present.contains(p));
        } else {
            absent.is_match.push(gold_absent.contains(p));
        }
    }
    DocumentMatches {
        present,
        absent,
        dup_token_ratio: ratio,
    }
}

/// Hand-made gold documents and phrase lists for the evaluation's unit tests.
#[cfg(test)]
pub(crate) mod test_docs {
    use super::input::GoldDocument;

    pub fn doc(title: &str, abstract_text: &str, gold: &[&str]) -> GoldDocument {
        GoldDocument {
            id: "d".into(),
            title: title.into(),
            abstract_text: abstract_text.into(),
            keyphrases: strings(gold),
        }
    }

    pub fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_docs::{doc, strings as preds};
    use super::*;

    #[test]
    fn present_absent_split_with_stemming() {
        let d = doc(
            "Neural keyphrase generation",
            "We generate keyphrases with sets.",
            &["keyphrase generation", "set", "optimal transport"],
        );
        let m = match_document(
            &d,
            &preds(&[
                "Keyphrases Generation",
                "sets",
                "neural network",
                "transport",
            ]),
            Tokenization::Kpg,
        );
        // "keyphrases generation" and "sets" stem to present gold; "neural network" is absent
        // (no "network" in the text), "transport" is present in neither source nor gold.
        assert_eq!(m.present.is_match, [true, true]);
        assert_eq!(m.present.num_gold, 2);
        assert_eq!(m.absent.is_match, [false, false]);
        assert_eq!(m.absent.num_gold, 1);
    }

    #[test]
    fn filters_and_duplicates() {
        let d = doc("a b", "c", &["a b", "a b", "A B", "x y"]);
        let m = match_document(
            &d,
            &preds(&["", "a , b", "a b", "x <unk>", "A  B", "x. y", "x y", "x y"]),
            Tokenization::Kpg,
        );
        assert_eq!(m.present.is_match, [true]);
        assert_eq!(m.present.num_gold, 1);
        assert_eq!(m.absent.is_match, [true]);
        assert_eq!(m.absent.num_gold, 1);
    }

    #[test]
    fn tokenized_mode_splits_on_single_spaces_only() {
        let d = doc(
            "out-of-print books .",
            "x",
            &["out-of-print books", "out of print"],
        );
        let m = match_document(
            &d,
            &preds(&["Out-of-print books", "out of print"]),
            Tokenization::Spaces,
        );
        assert_eq!(m.present.is_match, [true]);
        assert_eq!(m.present.num_gold, 1);
        assert_eq!(m.absent.is_match, [true]);
    }

    #[test]
    fn kpg_mode_source_does_not_join_title_and_abstract() {
        let d = doc("deep", "learning", &["deep learning"]);
        let m = match_document(&d, &preds(&["deep learning"]), Tokenization::Kpg);
        assert_eq!(m.absent.is_match, [true]);
        let m = match_document(&d, &preds(&["deep learning"]), Tokenization::Spaces);
        assert_eq!(m.present.is_match, [true]);
    }

    #[test]
    fn duplication_ratio_counts_raw_prediction_tokens() {
        let d = doc("t", "a", &[]);
        let m = match_document(&d, &preds(&["a b", "a", "b c", ","]), Tokenization::Kpg);
        // stems: a b | a | b c | ,  -> 6 tokens, 4 distinct
        assert!((m.dup_token_ratio - (1.0 - 4.0 / 6.0)).abs() < 1e-12);
        assert_eq!(
            match_document(&d, &[], Tokenization::Kpg).dup_token_ratio,
            0.0
        );
    }
}
