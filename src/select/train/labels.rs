//! Gold labels for candidates: a candidate is true when its stemmed tokens equal those of one of
//! the document's keyphrases, the evaluation's matching rule (`kpg eval`), so that the selector
//! learns exactly what F1 rewards.

use std::collections::HashSet;

use crate::eval::{stemmed_tokens, Tokenization};

/// Whether each candidate matches a gold keyphrase after stemming.
pub fn label_candidates(gold: &[String], candidates: &[&str]) -> Vec<bool> {
    let gold: HashSet<Vec<String>> = gold
        .iter()
        .map(|k| stemmed_tokens(k, Tokenization::Kpg))
        .filter(|t| !t.is_empty())
        .collect();
    candidates
        .iter()
        .map(|c| gold.contains(&stemmed_tokens(c, Tokenization::Kpg)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stemmed_matches_are_true_and_others_false() {
        let gold = vec!["Neural Networks".to_string(), "optimal transport".into()];
        let labels = label_candidates(
            &gold,
            &["neural network", "optimal", "optimal transports", "graphs"],
        );
        assert_eq!(labels, [true, false, true, false]);
    }
}
