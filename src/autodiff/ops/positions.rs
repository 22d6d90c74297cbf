//! Frozen sinusoidal positions ([`crate::backend::cpu::sinusoid::SinusoidTable`], the same f32
//! values as inference): added in the forward pass, no parameters, so no backward.

use crate::autodiff::Real;
use crate::backend::cpu::sinusoid::SinusoidTable;

pub struct Positions<T> {
    d: usize,
    table: Vec<T>, // [rows, d]
}

impl<T: Real> Positions<T> {
    pub fn new(rows: usize, d: usize) -> Self {
        let s = SinusoidTable::new(rows, d);
        let table = (0..rows)
            .flat_map(|p| {
                s.row(p)
                    .iter()
                    .map(|&v| T::of(v as f64))
                    .collect::<Vec<_>>()
            })
            .collect();
        Positions { d, table }
    }

    pub fn row(&self, pos: usize) -> &[T] {
        &self.table[pos * self.d..(pos + 1) * self.d]
    }
}

/// `x[r] += pos[positions[r]]`.
pub fn positions_forward<T: Real>(x: &mut [T], positions: &[usize], table: &Positions<T>) {
    let d = table.d;
    for (row, &p) in x.chunks_mut(d).zip(positions) {
        row.iter_mut().zip(table.row(p)).for_each(|(v, &e)| *v += e);
    }
}
