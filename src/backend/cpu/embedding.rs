//! Token embedding lookup from a stored [vocab, dim] table.

use super::convert;
use crate::model::weights::WeightView;

pub fn embedding_forward(
    out: &mut [f32],       // [tokens, dim]
    ids: &[u32],           // [tokens]
    table: WeightView<'_>, // [vocab, dim]
) {
    let (_, dim) = table.rows_cols();
    let row_bytes = table.dtype.row_bytes(dim);
    for (o, &id) in out.chunks_mut(dim).zip(ids) {
        let start = id as usize * row_bytes;
        convert::to_f32(table.dtype, &table.bytes[start..start + row_bytes], o);
    }
}
