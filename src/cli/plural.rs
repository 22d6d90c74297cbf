//! Counts in messages: "1 document", "2 documents".

/// `n` and the noun, plural unless `n` is 1 (nouns whose plural adds an s).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::count(1, "document"), "1 document");
        assert_eq!(super::count(0, "document"), "0 documents");
        assert_eq!(super::count(2, "keyphrase"), "2 keyphrases");
    }
}
