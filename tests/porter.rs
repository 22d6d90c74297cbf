//! kpg's Porter stemmer gives NLTK's stem for every word of the five keyphrase test sets
//! (tests/fixtures/porter/words_stems.tsv.gz, written by tools/make_porter_fixture.py with NLTK).

mod common;

use std::io::Read;

use kpg::eval::porter::stem;

#[test]
fn every_test_set_word_stems_as_nltk() {
    let path = common::fixtures().join("porter/words_stems.tsv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("# nltk"), "{header}");

    let (mut checked, mut wrong) = (0, Vec::new());
    for line in lines {
        let (word, want) = line.split_once('\t').unwrap();
        let got = stem(word);
        if got != want {
            wrong.push(format!("{word:?}: kpg {got:?}, nltk {want:?}"));
        }
        checked += 1;
    }
    assert!(
        checked > 20_000,
        "only {checked} words in {}",
        path.display()
    );
    assert!(
        wrong.is_empty(),
        "{} of {checked} words differ from NLTK, first ones:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}
