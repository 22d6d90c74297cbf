//! `kpg selftest --device cuda`: every CUDA kernel against its CPU twin on seeded random inputs of
//! awkward shapes (sizes that are not multiples of the block sizes, lengths 1, odd and maximal),
//! with outputs poisoned by NaN before each run; then whole models against the CPU backend.
//! `tests/cuda_selftest.rs` runs the same checks under `cargo test --features cuda` when a GPU
//! is present.
//!
//! Each family registers its checks in [`all_checks`]; a check returns one or more table rows.

pub mod compare;
pub mod random;

#[cfg(feature = "cuda")]
mod attention;
#[cfg(feature = "cuda")]
mod llama_model;
#[cfg(feature = "cuda")]
mod llama_ops;
#[cfg(feature = "cuda")]
mod one2set;
#[cfg(feature = "cuda")]
mod one2set_generator;
#[cfg(feature = "cuda")]
mod ops;
#[cfg(feature = "cuda")]
mod sinkhorn;

pub use compare::{
    compare, compare_model, CheckResult, ModelTolerance, Tolerance, BF16, F32, MODEL_BF16,
};

#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaDevice;
#[cfg(feature = "cuda")]
use crate::error::Result;

/// One named check; `run` returns its rows (a family may check several shapes).
#[cfg(feature = "cuda")]
pub struct Check {
    pub name: &'static str,
    pub run: fn(&CudaDevice) -> Result<Vec<CheckResult>>,
}

/// Every registered check, kernels first, whole models last.
#[cfg(feature = "cuda")]
pub fn all_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(ops::checks());
    checks.extend(llama_ops::checks());
    checks.extend(attention::checks());
    checks.extend(sinkhorn::checks());
    // The One2Set kernels, then its whole generator; the LLaMA models last.
    checks.extend(one2set::checks());
    checks.extend(llama_model::checks());
    checks
}

/// Runs the checks whose name contains `filter` (all with `None`). A check that fails to run
/// (a launch error) becomes a failed row naming the error, and the rest still run.
#[cfg(feature = "cuda")]
pub fn run_checks(
    dev: &CudaDevice,
    filter: Option<&str>,
    mut on_row: impl FnMut(&CheckResult),
) -> Vec<CheckResult> {
    let mut rows = Vec::new();
    for check in all_checks() {
        if filter.is_some_and(|f| !check.name.contains(f)) {
            continue;
        }
        let got = (check.run)(dev).unwrap_or_else(|e| {
            vec![CheckResult::exact(
                check.name,
                0,
                Some(format!("error: {e}")),
            )]
        });
        for row in got {
            on_row(&row);
            rows.push(row);
        }
    }
    rows
}

/// The table header and one formatted row, shared by the CLI and the test.
pub fn table_header() -> String {
    format!(
        "{:<44} {:>10} {:>10} {:>9} {:>10}  {}",
        "check", "elements", "max |err|", "worst/tol", "whole rel", "result"
    )
}

pub fn table_row(r: &CheckResult) -> String {
    format!(
        "{:<44} {:>10} {:>10.2e} {:>9.3} {:>10.2e}  {}{}",
        r.name,
        r.elements,
        r.max_abs,
        r.worst_ratio,
        r.whole_rel,
        if r.skipped {
            "SKIPPED"
        } else if r.passed {
            "ok"
        } else {
            "FAIL"
        },
        if r.detail.is_empty() || r.passed {
            String::new()
        } else {
            format!("  ({})", r.detail)
        }
    )
}
