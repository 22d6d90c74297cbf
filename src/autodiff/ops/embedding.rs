//! `nn.Embedding` lookups, scaled, and their scatter-add backward.

use crate::autodiff::Real;

/// `out[r] = scale · table[ids[r]]`.
pub fn embedding_forward<T: Real>(
    out: &mut [T], // [rows, d]
    ids: &[u32],   // [rows]
    table: &[T],   // [vocab, d]
    scale: T,
) {
    let d = out.len() / ids.len().max(1);
    for (row, &id) in out.chunks_mut(d).zip(ids) {
        let e = &table[id as usize * d..(id as usize + 1) * d];
        row.iter_mut().zip(e).for_each(|(o, &v)| *o = scale * v);
    }
}

/// `dtable[ids[r]] += scale · dout[r]`, except for `padding_idx`, whose row PyTorch never updates
/// (`nn.Embedding(..., padding_idx=<pad>)` in the authors' model; `<pad>` is fed to the decoder
/// after a null target's `<pad>` tokens).
pub fn embedding_backward<T: Real>(
    dtable: &mut [T], // [vocab, d]
    ids: &[u32],      // [rows]
    dout: &[T],       // [rows, d]
    scale: T,
    padding_idx: Option<u32>,
) {
    let d = dout.len() / ids.len().max(1);
    for (row, &id) in dout.chunks(d).zip(ids) {
        if Some(id) == padding_idx {
            continue;
        }
        let g = &mut dtable[id as usize * d..(id as usize + 1) * d];
        g.iter_mut().zip(row).for_each(|(t, &v)| *t += scale * v);
    }
}
