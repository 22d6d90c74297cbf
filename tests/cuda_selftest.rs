//! `cargo test --features cuda`: the selftest's checks, every kernel against its CPU twin, when a
//! GPU is present; without one the test says it skipped and passes (CI has no GPU).
#![cfg(feature = "cuda")]

use kpg::backend::cuda::CudaDevice;
use kpg::selftest;

#[test]
fn every_kernel_matches_its_cpu_twin() {
    let dev = match CudaDevice::new(0) {
        Ok(dev) => dev,
        Err(e) => {
            eprintln!("skipped: no usable CUDA device ({e})");
            return;
        }
    };
    let rows = selftest::run_checks(&dev, None, |row| eprintln!("{}", selftest::table_row(row)));
    let failed: Vec<_> = rows.iter().filter(|r| !r.passed).collect();
    assert!(!rows.is_empty());
    assert!(
        failed.is_empty(),
        "{} of {} checks failed:\n{}",
        failed.len(),
        rows.len(),
        failed
            .iter()
            .map(|r| selftest::table_row(r))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
