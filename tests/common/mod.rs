//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// ‖got − want‖ / ‖want‖ over the whole tensor.
pub fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// Element-wise `|got − want| <= atol + rtol·|want|`, printing the worst element on failure.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length mismatch");
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // A NaN on either side counts as an infinite excess.
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        let excess = if excess.is_nan() {
            f32::INFINITY
        } else {
            excess
        };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} vs {} (exceeds tolerance by {}); whole-tensor rel error {:.3e}",
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1,
        rel_error(got, want)
    );
}

/// A xorshift64 stream: the source of the random test inputs below.
fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::iter::repeat_with(move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    })
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    xorshift(seed)
        .take(n)
        .map(|s| (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect()
}

/// Deterministic pseudo-random f64 values in [-1, 1), with all 53 bits of mantissa.
pub fn random_vec_f64(n: usize, seed: u64) -> Vec<f64> {
    xorshift(seed)
        .take(n)
        .map(|s| (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect()
}

pub fn kpg_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kpg"))
}

/// A command that failed on bad input: exit status 2, nothing on stdout, and one error line on
/// stderr that mentions every needle.
pub fn assert_usage_error(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(stderr.starts_with("kpg: error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in: {stderr}");
    }
    assert!(out.stdout.is_empty());
}
