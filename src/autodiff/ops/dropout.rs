//! Inverted dropout (kept values scaled by 1/(1−p), as `F.dropout`). The mask is a pure function of
//! (seed, site, element index), so it is never stored: the backward pass recomputes it, and a
//! finite-difference check sees the same mask on every evaluation.

use crate::autodiff::Real;
use crate::synth::splitmix64;

/// Dropout probability and the seed of this step's masks; `p = 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub seed: u64,
}

impl Dropout {
    pub const OFF: Dropout = Dropout { p: 0.0, seed: 0 };

    pub fn is_on(&self) -> bool {
        self.p > 0.0
    }

    /// The mask of one dropout site (one tensor of the forward pass).
    pub fn site(&self, site: u64) -> Mask {
        Mask {
            p: self.p,
            key: splitmix64(self.seed ^ splitmix64(site)),
        }
    }
}

/// One site's mask: element `i` is kept with probability 1 − p.
#[derive(Debug, Clone, Copy)]
pub struct Mask {
    p: f64,
    key: u64,
}

impl Mask {
    /// 0 for a dropped element, 1/(1−p) for a kept one.
    pub fn scale<T: Real>(&self, i: usize) -> T {
        if self.p <= 0.0 {
            return T::one();
        }
        let u = (splitmix64(self.key ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 11)
            as f64
            / (1u64 << 53) as f64;
        if u < self.p {
            T::zero()
        } else {
            T::of(1.0 / (1.0 - self.p))
        }
    }

    pub fn is_on(&self) -> bool {
        self.p > 0.0
    }
}

/// `x = x · mask / (1 − p)` in place; `offset` is the index of `x[0]` in the site's tensor.
pub fn dropout_forward<T: Real>(x: &mut [T], mask: Mask, offset: usize) {
    if mask.is_on() {
        x.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v *= mask.scale::<T>(offset + i));
    }
}

/// The gradient through the same mask, in place (the op is linear in x).
pub fn dropout_backward<T: Real>(dx: &mut [T], mask: Mask, offset: usize) {
    dropout_forward(dx, mask, offset);
}
