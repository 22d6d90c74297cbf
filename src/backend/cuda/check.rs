//! The host-side checks every launcher makes before its one unsafe launch: a buffer long enough,
//! a size that fits the kernel's i32.

use crate::error::{KpgError, Result};

/// Fails with a shape error naming `what` when a buffer is shorter than `need`.
pub fn need(op: &'static str, what: &str, need: usize, got: usize) -> Result<()> {
    if got < need {
        return Err(KpgError::Shape {
            op,
            expected: format!("{what} of at least {need} elements"),
            got: got.to_string(),
        });
    }
    Ok(())
}

/// A dimension as the i32 the kernels and cuBLAS take.
pub fn int(op: &'static str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| KpgError::Shape {
        op,
        expected: "a size below 2^31".into(),
        got: n.to_string(),
    })
}
