//! How a fast path is held to its CPU twin: one per-dtype tolerance table, an element-wise
//! `|got - want| <= atol + rtol·|want|` check, and a whole-tensor relative error
//! `‖got - want‖ / ‖want‖`. A NaN or infinity in the output always fails, so a NaN-poisoned output
//! element that a kernel forgot to write is caught.

/// Tolerances for one storage dtype.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
    /// Bound on the whole-tensor relative error.
    pub whole: f64,
}

/// f32 storage and compute: only summation order differs.
pub const F32: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-5,
    whole: 1e-5,
};

/// bf16 storage with f32 accumulation: one bf16 rounding (2^-8 = 3.9e-3 relative) per stored
/// intermediate, a few of them in a row (STYLE.md's table).
pub const BF16: Tolerance = Tolerance {
    atol: 1e-2,
    rtol: 1.6e-2,
    whole: 1e-2,
};

/// One row of the selftest table.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub elements: usize,
    /// Worst `|got - want|`.
    pub max_abs: f64,
    /// Worst `|got - want| / (atol + rtol·|want|)`: at most 1 passes.
    pub worst_ratio: f64,
    pub whole_rel: f64,
    pub passed: bool,
    /// Where the worst element is and its two values, or why the check failed.
    pub detail: String,
}

impl CheckResult {
    /// A check that is not a numeric comparison (equal ids, same candidates).
    pub fn exact(name: impl Into<String>, elements: usize, mismatch: Option<String>) -> Self {
        CheckResult {
            name: name.into(),
            elements,
            max_abs: 0.0,
            worst_ratio: 0.0,
            whole_rel: 0.0,
            passed: mismatch.is_none(),
            detail: mismatch.unwrap_or_default(),
        }
    }
}

/// Compares `got` with the reference `want` under `tol`.
pub fn compare(name: impl Into<String>, got: &[f32], want: &[f32], tol: Tolerance) -> CheckResult {
    let name = name.into();
    if got.len() != want.len() {
        return CheckResult {
            detail: format!("length {} against reference {}", got.len(), want.len()),
            passed: false,
            ..CheckResult::exact(name, want.len(), None)
        };
    }
    let (mut max_abs, mut worst_ratio, mut worst_at) = (0f64, 0f64, None);
    let (mut diff2, mut ref2) = (0f64, 0f64);
    let mut non_finite = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        if !g.is_finite() && w.is_finite() {
            non_finite.get_or_insert(i);
            continue;
        }
        let d = (g - w).abs();
        diff2 += d * d;
        ref2 += w * w;
        max_abs = max_abs.max(d);
        let ratio = d / (tol.atol + tol.rtol * w.abs());
        if ratio > worst_ratio {
            worst_ratio = ratio;
            worst_at = Some(i);
        }
    }
    let whole_rel = if ref2 > 0.0 {
        (diff2 / ref2).sqrt()
    } else {
        diff2.sqrt()
    };
    let mut passed = worst_ratio <= 1.0 && whole_rel <= tol.whole;
    let detail = if let Some(i) = non_finite {
        passed = false;
        format!("element {i} is {} (reference {})", got[i], want[i])
    } else if let Some(i) = worst_at {
        format!("worst at {i}: {} vs {}", got[i], want[i])
    } else {
        String::new()
    };
    CheckResult {
        name,
        elements: want.len(),
        max_abs,
        worst_ratio,
        whole_rel,
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_catches_a_nan_and_a_far_element() {
        let want = [1.0, 2.0, 3.0];
        assert!(compare("same", &want, &want, F32).passed);
        assert!(!compare("nan", &[1.0, f32::NAN, 3.0], &want, BF16).passed);
        assert!(!compare("far", &[1.0, 2.1, 3.0], &want, BF16).passed);
        assert!(compare("bf16 rounding", &[1.0, 2.0078125, 3.0], &want, BF16).passed);
        assert!(!compare("short", &[1.0], &want, BF16).passed);
    }
}
