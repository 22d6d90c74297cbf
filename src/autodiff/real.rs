//! The float type the training model is generic over: f32 to train, f64 for finite-difference
//! gradient checks (central differences in f32 lose every digit below 1e-3).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use num_traits::Float;

use crate::backend::cpu::simd;

pub trait Real:
    Float
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
    /// Σ a·b: attention's inner loops, SIMD for f32 (the scalar fold of a generic type does not
    /// vectorise, since float addition may not be reordered).
    fn dot(a: &[Self], b: &[Self]) -> Self;
    /// y += alpha·x.
    fn axpy(y: &mut [Self], alpha: Self, x: &[Self]);
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn dot(a: &[Self], b: &[Self]) -> Self {
        simd::dot(a, b)
    }
    fn axpy(y: &mut [Self], alpha: Self, x: &[Self]) {
        simd::axpy(y, alpha, x)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn dot(a: &[Self], b: &[Self]) -> Self {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
    fn axpy(y: &mut [Self], alpha: Self, x: &[Self]) {
        y.iter_mut().zip(x).for_each(|(o, &v)| *o += alpha * v);
    }
}
