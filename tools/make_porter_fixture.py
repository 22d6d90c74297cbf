#!/usr/bin/env python3
"""Writes tests/fixtures/porter/words_stems.tsv.gz: every distinct lowercase token of the five
keyphrase test sets with its stem from NLTK's PorterStemmer() (default NLTK_EXTENSIONS mode).

`tests/porter.rs` holds kpg's Porter port (src/eval/porter.rs) to this list word for word, so that
`kpg eval` decides presence and matches exactly as NLTK-based evaluation scripts do.

Words: the titles, abstracts and gold keyphrases of the Inspec, Krapivin, NUS, SemEval and KP20k
(first 1000) test sets, in both the original-text files and the One2Set-processed copies under
../shared/data, tokenised both ways `kpg eval` tokenises: split on single spaces (`--tokenized`)
and kpg's preprocessing (a mirror of src/preprocess.rs's `tokenize`, below). Each token is
stripped and lowercased as One2Set's `stem_word_list` does before stemming.

Usage:
    pip install nltk
    python tools/make_porter_fixture.py [--data ../shared/data] [--out tests/fixtures/porter/words_stems.tsv.gz]
"""

import argparse
import gzip
import io
import json
import os
import unicodedata

import nltk
from nltk.stem import PorterStemmer

TEST_FILES = [
    "inspec.test.jsonl.gz",
    "krapivin.test.jsonl.gz",
    "nus.test.jsonl.gz",
    "semeval.test.jsonl.gz",
    "inspec.test.one2set.jsonl.gz",
    "krapivin.test.one2set.jsonl.gz",
    "nus.test.one2set.jsonl.gz",
    "semeval.test.one2set.jsonl.gz",
    "kp20k.test.first1000.one2set.jsonl.gz",
]

SPECIAL_TOKENS = ["<digit>", "<unk>", "<eos>"]
KEPT_PUNCTUATION = ",.'()"


def is_word_char(c):
    # Rust's char::is_alphanumeric is Unicode Alphabetic or Numeric; Python's isalnum differs on a
    # few combining marks, which only changes which words land in the list, not their stems.
    return c.isalnum() or 0x300 <= ord(c) <= 0x36F


def is_numeric(c):
    return unicodedata.category(c) in ("Nd", "Nl", "No")


def kpg_tokenize(text):
    """Mirror of kpg::preprocess::tokenize."""
    lower = text.lower()
    tokens, word, i = [], [], 0

    def flush():
        if word:
            w = "".join(word)
            tokens.append("<digit>" if all(is_numeric(c) for c in w) else w)
            word.clear()

    while i < len(lower):
        c = lower[i]
        if c == "<":
            special = next((s for s in SPECIAL_TOKENS if lower.startswith(s, i)), None)
            if special:
                flush()
                tokens.append(special)
                i += len(special)
                continue
        if is_word_char(c):
            word.append(c)
        else:
            flush()
            if c in KEPT_PUNCTUATION:
                tokens.append(c)
        i += 1
    flush()
    return tokens


def space_tokenize(text):
    text = text.strip()
    return text.split(" ") if text else []


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "porter", "words_stems.tsv.gz"))
    args = ap.parse_args()

    words = set()
    for name in TEST_FILES:
        with gzip.open(os.path.join(args.data, name), "rt", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for text in [rec["title"], rec["abstract"], *rec["keyphrases"]]:
                    for tok in space_tokenize(text) + kpg_tokenize(text):
                        w = tok.strip().lower()
                        if w:
                            words.add(w)

    # One word a line, tab-separated: a word with a tab or newline inside cannot be stored.
    bad = [w for w in words if "\t" in w or "\n" in w or "\r" in w]
    assert not bad, f"words with tabs or newlines: {bad[:5]}"

    stemmer = PorterStemmer()
    buf = io.StringIO()
    buf.write(f"# nltk {nltk.__version__} PorterStemmer() mode NLTK_EXTENSIONS; "
              f"{len(words)} words; made by tools/make_porter_fixture.py\n")
    for w in sorted(words):
        buf.write(f"{w}\t{stemmer.stem(w)}\n")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    # mtime=0: the same input gives byte-identical output.
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    print(f"wrote {args.out}: {len(words)} words")


if __name__ == "__main__":
    main()
