//! Text preprocessing shared by the generator and the evaluation: the tokenisation in DESIGN.md
//! ("Preprocessing"), which gives text the form of the One2Set test sets (Meng et al. 2017,
//! "Deep Keyphrase Generation"; Ye et al. 2021, jiacheng-ye/kg_one2set): lowercase, words and
//! numbers as tokens, `, . ' ( )` split off as tokens, other punctuation dropped, numbers as
//! `<digit>`.
//!
//! `tools/make_porter_fixture.py` mirrors [`tokenize`] in Python; keep the two in step.

/// Stands for a purely numeric token.
pub const DIGIT: &str = "<digit>";
/// An out-of-vocabulary word, as the One2Set test sets write it.
pub const UNK: &str = "<unk>";
/// Ends the title in the generator's source.
pub const EOS: &str = "<eos>";

/// Special tokens that stay tokens when a text contains them (the One2Set files do).
const SPECIAL_TOKENS: [&str; 3] = [DIGIT, UNK, EOS];

/// The punctuation kept as tokens of its own; any other punctuation becomes a space.
const KEPT_PUNCTUATION: [char; 5] = [',', '.', '\'', '(', ')'];

/// Tokens of `text`: lowercased, split at whitespace and punctuation, with `, . ' ( )` kept as
/// tokens, purely numeric tokens replaced by `<digit>`, and `<digit> <unk> <eos>` kept whole.
///
/// A word is a run of alphanumeric characters (Unicode, so `café` and `naïve` stay whole, also
/// when written with combining accents); everything else that is not kept punctuation (`-`, `/`,
/// `_`, `:`, `"`, symbols) separates words, so `out-of-print` gives `out of print`.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut rest = lower.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(special) = SPECIAL_TOKENS.iter().find(|s| rest.starts_with(*s)) {
                flush_word(&mut word, &mut tokens);
                tokens.push((*special).to_string());
                rest = &rest[special.len()..];
                continue;
            }
        }
        if is_word_char(c) {
            word.push(c);
        } else {
            flush_word(&mut word, &mut tokens);
            if KEPT_PUNCTUATION.contains(&c) {
                tokens.push(c.to_string());
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    flush_word(&mut word, &mut tokens);
    tokens
}

/// The generator's source: title ` . <eos> ` abstract, as One2Set's source lines.
/// The first `max` bytes of `text`, cut back to a character boundary.
pub fn char_prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub fn source_tokens(title: &str, abstract_text: &str) -> Vec<String> {
    let mut tokens = tokenize(title);
    tokens.push(".".to_string());
    tokens.push(EOS.to_string());
    tokens.extend(tokenize(abstract_text));
    tokens
}

/// Letters and digits of any script, plus combining diacritics (U+0300..U+036F), which a
/// decomposed `é` carries and which must not split its word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || ('\u{300}'..='\u{36f}').contains(&c)
}

fn flush_word(word: &mut String, tokens: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    // Purely numeric: every character is a number (Unicode categories Nd, Nl, No).
    if word.chars().all(char::is_numeric) {
        tokens.push(DIGIT.to_string());
        word.clear();
    } else {
        tokens.push(std::mem::take(word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<String> {
        tokenize(text)
    }

    fn split(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn one2set_form_of_an_inspec_abstract() {
        // inspec.test 1930 against its One2Set copy.
        assert_eq!(
            toks("For pt.I. see Vestn. KhGPU, no.81, p.15-18 (2000). The paper"),
            split("for pt . i . see vestn . khgpu , no . <digit> , p . <digit> <digit> ( <digit> ) . the paper")
        );
        assert_eq!(
            toks("acquiring out-of-print materials"),
            split("acquiring out of print materials")
        );
    }

    #[test]
    fn kept_and_dropped_punctuation() {
        assert_eq!(toks("Porter's"), split("porter ' s"));
        assert_eq!(toks("a/b; c:d \"e\" f_g"), split("a b c d e f g"));
        assert_eq!(toks("(x),y."), split("( x ) , y ."));
        assert_eq!(toks("  \t\n "), Vec::<String>::new());
        assert_eq!(toks(""), Vec::<String>::new());
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("3.5 GHz 2000s 42 ²"),
            split("<digit> . <digit> ghz 2000s <digit> <digit>")
        );
        assert_eq!(toks("IEEE 802.11b"), split("ieee <digit> . 11b"));
    }

    #[test]
    fn special_tokens_stay_whole() {
        assert_eq!(
            toks("an <UNK> method<digit> <eos>x <foo>"),
            split("an <unk> method <digit> <eos> x foo")
        );
        assert_eq!(toks("<digit"), split("digit"));
    }

    #[test]
    fn unicode_words() {
        assert_eq!(toks("Café naïve ÉCOLE"), split("café naïve école"));
        assert_eq!(toks("cafe\u{301} x"), split("cafe\u{301} x"));
        assert_eq!(toks("a–b × c"), split("a b c"));
    }

    #[test]
    fn source_joins_title_and_abstract() {
        assert_eq!(
            source_tokens("Deep Keyphrase Generation", "We propose it."),
            split("deep keyphrase generation . <eos> we propose it .")
        );
        assert_eq!(source_tokens("", "x"), split(". <eos> x"));
    }
}
