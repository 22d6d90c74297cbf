//! The words at which extracted candidates are cut: English function words, plus a few verbs and
//! adverbs of scientific prose that never head a keyphrase. A candidate neither contains one nor
//! is one; a keyphrase such as "quality of service" can still come from the generator.

/// Sorted, so that membership is a binary search.
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "according", "across", "after", "again", "against", "all", "almost",
    "along", "already", "also", "although", "always", "am", "among", "an", "and", "another",
    "any", "are", "around", "as", "at", "be", "because", "been", "before", "being", "below",
    "between", "both", "but", "by", "can", "cannot", "could", "did", "do", "does", "doing",
    "done", "down", "due", "during", "each", "either", "else", "enough", "especially", "etc",
    "even", "ever", "every", "first", "for", "from", "further", "furthermore", "had", "has",
    "have", "having", "he", "hence", "her", "here", "hers", "herself", "him", "himself", "his",
    "how", "however", "i", "ie", "if", "in", "into", "is", "it", "its", "itself", "just",
    "less", "let", "many", "may", "me", "might", "more", "moreover", "most", "much", "must",
    "my", "myself", "namely", "neither", "no", "nor", "not", "now", "of", "off", "often", "on",
    "once", "one", "only", "onto", "or", "other", "others", "otherwise", "our", "ours",
    "ourselves", "out", "over", "own", "paper", "per", "propose", "proposed", "proposes",
    "rather", "same", "second", "several", "shall", "she", "should", "show", "showed", "shown",
    "shows", "since", "so", "some", "still", "such", "than", "that", "the", "their", "theirs",
    "them", "themselves", "then", "there", "thereby", "therefore", "these", "they", "this",
    "those", "though", "three", "through", "thus", "to", "too", "two", "under", "until", "up",
    "upon", "us", "use", "used", "uses", "using", "very", "via", "was", "we", "well", "were",
    "what", "whatever", "when", "where", "whereas", "whether", "which", "while", "who", "whom",
    "whose", "why", "will", "with", "within", "without", "would", "yet", "you", "your", "yours",
    "yourself", "yourselves",
];

/// Whether `word` (lowercased) is a stopword.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_unique() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn membership() {
        assert!(is_stopword("the") && is_stopword("of") && is_stopword("using"));
        assert!(!is_stopword("network") && !is_stopword("The"));
    }
}
