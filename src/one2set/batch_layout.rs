//! The host side of decoding a batch on the GPU, kept free of CUDA so that it is tested by plain
//! `cargo test`: documents packed one after another (ids, positions, spans), the copy mechanism's
//! view of each source (extended ids with a chain linking the occurrences of each id), and each
//! step's groups of active rows per document (the cross-attention's query groups).

use super::source::SourceIds;

/// A batch of documents as the GPU encoder and the fused finish read it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PackedBatch {
    pub ids: Vec<i32>,       // [tokens] vocabulary ids
    pub positions: Vec<i32>, // [tokens] 1, 2, … within each document
    pub doc_start: Vec<i32>, // [docs]
    pub doc_len: Vec<i32>,   // [docs]
    pub ext: Vec<i32>,       // [tokens] extended ids
    /// The next position, within the document, holding the same extended id; -1 at the last.
    pub next: Vec<i32>, // [tokens]
    /// 1 where an extended id occurs for the first time in its document.
    pub first: Vec<i32>, // [tokens]
    pub max_len: usize,
}

impl PackedBatch {
    /// Packs the documents (their `ids` are cut to `max_source_len` already).
    pub fn new(docs: &[&SourceIds]) -> Self {
        let mut b = PackedBatch::default();
        for d in docs {
            let start = b.ids.len();
            b.doc_start.push(start as i32);
            b.doc_len.push(d.len() as i32);
            b.max_len = b.max_len.max(d.len());
            b.ids.extend(d.ids.iter().map(|&i| i as i32));
            b.positions.extend(1..=d.len() as i32);
            b.ext.extend(d.ext_ids.iter().map(|&e| e as i32));
            // Chains by distinct index: the last position seen of each distinct id.
            let mut last: Vec<i32> = vec![-1; d.distinct.len()];
            b.next.resize(start + d.len(), -1);
            b.first.resize(start + d.len(), 0);
            for (j, &u) in d.distinct_at.iter().enumerate() {
                let prev = last[u as usize];
                if prev < 0 {
                    b.first[start + j] = 1;
                } else {
                    b.next[start + prev as usize] = j as i32;
                }
                last[u as usize] = j as i32;
            }
        }
        b
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    pub fn docs(&self) -> usize {
        self.doc_len.len()
    }
}

/// One step's inputs in one upload: `[slots | tokens | -1 × rows | groups]`, the groups being
/// (first row, rows, document) of each document's contiguous run of active rows. Returns the
/// number of groups and the most rows of any group.
pub fn step_inputs(
    active: &[u32], // [rows] ascending slots
    inputs: &[u32], // [rows]
    num_codes: usize,
    out: &mut Vec<i32>,
) -> (usize, usize) {
    let rows = active.len();
    out.clear();
    out.extend(active.iter().map(|&s| s as i32));
    out.extend(inputs.iter().map(|&t| t as i32));
    out.resize(3 * rows, -1);
    let (mut groups, mut widest) = (0, 0);
    let mut r = 0;
    while r < rows {
        let doc = active[r] as usize / num_codes;
        let mut end = r + 1;
        while end < rows && active[end] as usize / num_codes == doc {
            end += 1;
        }
        out.extend([r as i32, (end - r) as i32, doc as i32]);
        groups += 1;
        widest = widest.max(end - r);
        r = end;
    }
    (groups, widest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::one2set::vocab::Vocab;

    fn source(text: &str, vocab_size: usize) -> SourceIds {
        let words: Vec<String> = crate::one2set::vocab::SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .chain(["a", "b", "c"].iter().map(|s| s.to_string()))
            .collect();
        let vocab = Vocab::from_words(words).unwrap();
        let toks: Vec<String> = text.split(' ').map(str::to_string).collect();
        SourceIds::new(&toks, &vocab, vocab_size, 100)
    }

    #[test]
    fn packs_documents_with_occurrence_chains() {
        let d0 = source("a x a b x a", 10);
        let d1 = source("c", 10);
        let b = PackedBatch::new(&[&d0, &d1]);
        assert_eq!(b.doc_start, [0, 6]);
        assert_eq!(b.doc_len, [6, 1]);
        assert_eq!(b.positions, [1, 2, 3, 4, 5, 6, 1]);
        assert_eq!(b.ids, [7, 1, 7, 8, 1, 7, 9]);
        assert_eq!(b.ext, [7, 10, 7, 8, 10, 7, 9]);
        assert_eq!(b.first, [1, 1, 0, 1, 0, 0, 1]);
        assert_eq!(b.next, [2, 4, 5, -1, -1, -1, -1]);
        assert_eq!(b.max_len, 6);
        // Walking each chain from a first occurrence visits every position of that id once.
        for j in 0..6 {
            if b.first[j] == 1 {
                let mut k = j as i32;
                while k >= 0 {
                    assert_eq!(b.ext[k as usize], b.ext[j]);
                    k = b.next[k as usize];
                }
            }
        }
    }

    #[test]
    fn groups_are_runs_of_one_document() {
        let mut out = Vec::new();
        let active = [0u32, 3, 4, 7, 8, 9, 25];
        let inputs = [2u32, 2, 2, 5, 5, 5, 9];
        let (groups, widest) = step_inputs(&active, &inputs, 4, &mut out);
        assert_eq!((groups, widest), (4, 2));
        assert_eq!(&out[..7], &[0, 3, 4, 7, 8, 9, 25]);
        assert_eq!(&out[7..14], &[2, 2, 2, 5, 5, 5, 9]);
        assert_eq!(&out[14..21], &[-1; 7]);
        assert_eq!(&out[21..], &[0, 2, 0, 2, 2, 1, 4, 2, 2, 6, 1, 6]);
    }
}
