//! Extractive candidates: every run of 1..=`max_words` content words of the title or abstract,
//! cut at stopwords, punctuation and the special tokens, as in the classic keyphrase extractors
//! (Hulth 2003; KEA, Witten et al. 1999). Candidates are grouped by their Porter-stemmed form, so
//! "neural networks" and "neural network" are one candidate with both occurrences.
//!
//! The text is kpg's preprocessing ([`crate::preprocess::tokenize`]), the form of the One2Set test
//! sets: a phrase comes out as lowercased tokens joined by spaces, which the evaluation reads as
//! it reads the text.

use std::collections::HashMap;

use super::stopwords::is_stopword;
use crate::one2set::candidates::stem_all;
use crate::preprocess::{char_prefix, tokenize, DIGIT};

/// Most tokens of a document the ranker reads (title and abstract together): far above any
/// abstract (the test sets' longest is about 1,200), and a bound on the work and memory a huge
/// record can ask for.
pub const MAX_TOKENS: usize = 2048;
/// Bytes of each field read before tokenising, so that a huge field is cut before it is split:
/// [`MAX_TOKENS`] tokens of ordinary text fit well within this.
pub const MAX_FIELD_BYTES: usize = MAX_TOKENS * 32;

/// A document's title and abstract as tokens, with their stems: `title . abstract`, as the
/// evaluation decides presence, so no candidate spans the two.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentText {
    pub tokens: Vec<String>, // [len]
    pub stems: Vec<String>,  // [len]
    /// Tokens of the title (positions below it are in the title).
    pub title_len: usize,
    /// Whether the text was cut to [`MAX_TOKENS`].
    pub truncated: bool,
}

impl DocumentText {
    pub fn new(title: &str, abstract_text: &str) -> Self {
        let (t, a) = (
            char_prefix(title, MAX_FIELD_BYTES),
            char_prefix(abstract_text, MAX_FIELD_BYTES),
        );
        let mut truncated = t.len() < title.len() || a.len() < abstract_text.len();
        let mut tokens = tokenize(t);
        let title_len = tokens.len().min(MAX_TOKENS);
        tokens.push(".".to_string());
        tokens.extend(tokenize(a));
        if tokens.len() > MAX_TOKENS {
            tokens.truncate(MAX_TOKENS);
            truncated = true;
        }
        let stems = stem_all(&tokens);
        DocumentText {
            tokens,
            stems,
            title_len,
            truncated,
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Start positions of every occurrence of `stems` (empty for an empty phrase).
    pub fn occurrences(&self, stems: &[String]) -> Vec<usize> {
        if stems.is_empty() || stems.len() > self.stems.len() {
            return Vec::new();
        }
        self.stems
            .windows(stems.len())
            .enumerate()
            .filter(|(_, w)| *w == stems)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The key under which a phrase is looked up and merged: its kpg tokens, Porter-stemmed, joined
/// by single spaces (the evaluation's notion of "the same keyphrase").
pub fn phrase_key(phrase: &str) -> String {
    stem_key(&tokenize(phrase))
}

/// The key of tokens already split.
pub fn stem_key(tokens: &[String]) -> String {
    stem_all(tokens).join(" ")
}

/// One extracted candidate: a stemmed form and where it occurs.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Stemmed tokens joined by spaces ([`phrase_key`]).
    pub key: String,
    /// The surface tokens of its first occurrence.
    pub words: Vec<String>,
    /// Start positions of its occurrences, ascending.
    pub positions: Vec<usize>,
}

/// Whether a token may be part of a candidate: a word (letters or digits, not a stopword) or
/// `<digit>`. Punctuation, `<unk>` and `<eos>` cut candidates.
pub(crate) fn is_candidate_word(token: &str) -> bool {
    if token == DIGIT {
        return true;
    }
    token.chars().next().is_some_and(char::is_alphanumeric) && !is_stopword(token)
}

/// Every candidate of `doc` of at most `max_words` words, in order of first occurrence. A
/// candidate made only of `<digit>` tokens is not one.
pub fn extract(doc: &DocumentText, max_words: usize) -> Vec<Extracted> {
    let mut out: Vec<Extracted> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let n = doc.len();
    for start in 0..n {
        for len in 1..=max_words {
            let end = start + len;
            if end > n || !is_candidate_word(&doc.tokens[end - 1]) {
                break;
            }
            let words = &doc.tokens[start..end];
            if words.iter().all(|w| w == DIGIT) {
                continue;
            }
            let key = doc.stems[start..end].join(" ");
            match index.get(&key) {
                Some(&i) => out[i].positions.push(start),
                None => {
                    index.insert(key.clone(), out.len());
                    out.push(Extracted {
                        key,
                        words: words.to_vec(),
                        positions: vec![start],
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(title: &str, abstract_text: &str, max_words: usize) -> Vec<String> {
        extract(&DocumentText::new(title, abstract_text), max_words)
            .into_iter()
            .map(|e| e.words.join(" "))
            .collect()
    }

    #[test]
    fn cut_at_stopwords_and_punctuation() {
        let k = keys("Optimal transport", "The sets of keyphrases, generated.", 3);
        assert_eq!(
            k,
            [
                "optimal",
                "optimal transport",
                "transport",
                "sets",
                "keyphrases",
                "generated"
            ]
        );
    }

    #[test]
    fn never_special_tokens_or_digit_only_phrases() {
        let k = keys("", "<unk> model <eos> 42 layers, 3 4 . (x) 'y'", 3);
        assert_eq!(
            k,
            ["model", "<digit> layers", "layers", "x", "y"],
            "no `<unk>`, `<eos>`, punctuation or `<digit>`-only phrase"
        );
    }

    #[test]
    fn title_and_abstract_do_not_join() {
        let k = keys("deep", "learning", 3);
        assert_eq!(k, ["deep", "learning"]);
    }

    #[test]
    fn occurrences_are_grouped_by_stem() {
        let doc = DocumentText::new("Neural networks", "A neural network learns. Networks!");
        let e = extract(&doc, 2);
        let nn = e.iter().find(|c| c.key == "neural network").unwrap();
        assert_eq!(nn.words, ["neural", "networks"]);
        assert_eq!(nn.positions, [0, 4]);
        let net = e.iter().find(|c| c.key == "network").unwrap();
        assert_eq!(net.positions, [1, 5, 8]);
        assert_eq!(
            doc.occurrences(&["neural".into(), "network".into()]),
            [0, 4]
        );
        assert_eq!(phrase_key("Neural Networks"), "neural network");
    }

    #[test]
    fn a_huge_document_is_cut_before_it_is_split() {
        let word = "graph ";
        let huge = word.repeat(10 * MAX_FIELD_BYTES / word.len());
        let doc = DocumentText::new("A title", &huge);
        assert!(doc.truncated);
        assert_eq!(doc.len(), MAX_TOKENS);
        assert_eq!(doc.title_len, 2);
        let short = DocumentText::new("A title", "an abstract");
        assert!(!short.truncated);
        // A cut never splits a character.
        assert_eq!(char_prefix("aé", 2), "a");
    }

    #[test]
    fn max_words_bounds_length() {
        let k = keys("a b c d e", "", 2);
        assert!(k.iter().all(|p| p.split(' ').count() <= 2));
        // "a" is a stopword, "e" is not.
        assert!(k.contains(&"d e".to_string()) && !k.iter().any(|p| p.starts_with("a ")));
    }
}
