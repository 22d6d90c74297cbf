//! Frozen sinusoidal position vectors (Vaswani et al. 2017, "Attention Is All You Need", 3.5), as
//! jiacheng-ye/kg_one2set builds them (`pykp/modules/position_embed.py`,
//! `get_sinusoid_encoding_table`): angle = pos / 10000^(2·(i div 2) / dim), sine in the even
//! dimensions and cosine in the odd ones, computed in f64 and rounded to f32, and the row of
//! position 0 — the padding index there — all zeros. The encoder's positions start at 1, so only the
//! decoder's first step of every slot (position 0) sees that zero row.

/// A table of position vectors for positions 0..rows.
#[derive(Debug, Clone)]
pub struct SinusoidTable {
    dim: usize,
    table: Vec<f32>, // [rows, dim]
}

impl SinusoidTable {
    pub fn new(rows: usize, dim: usize) -> Self {
        let mut table = vec![0f32; rows * dim];
        for pos in 1..rows {
            for i in 0..dim {
                let angle = pos as f64 / 10000f64.powf(2.0 * (i / 2) as f64 / dim as f64);
                table[pos * dim + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
            }
        }
        SinusoidTable { dim, table }
    }

    pub fn rows(&self) -> usize {
        self.table.len() / self.dim.max(1)
    }

    /// The vector of position `pos` (panics past the table: callers size it from the config).
    pub fn row(&self, pos: usize) -> &[f32] {
        &self.table[pos * self.dim..(pos + 1) * self.dim]
    }
}
