//! `--device` on `kpg debug ot` and `kpg bench ot`: the CPU path still answers, and a build without
//! the `cuda` feature refuses `--device cuda` with the clear error and exit status 2. (The CUDA
//! path itself is held to the CPU by `kpg selftest --device cuda`, tools/gpu-check.d/ot.sh.)

mod common;

use std::process::Command;

use serde_json::Value;

fn kpg(args: &[&str]) -> std::process::Output {
    Command::new(common::kpg_bin()).args(args).output().unwrap()
}

#[test]
fn bench_ot_on_the_cpu_reports_its_figures() {
    let out = kpg(&[
        "bench",
        "ot",
        "--device",
        "cpu",
        "--problems",
        "16",
        "--repeats",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["problems"], 16);
    assert!(v["problems_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["assign_sum"].as_u64().is_some());
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_without_the_feature_is_a_clear_error() {
    let fixture = common::fixtures().join("ot/problems_params.json");
    for args in [
        vec!["bench", "ot", "--device", "cuda", "--problems", "4"],
        vec![
            "debug",
            "ot",
            "--device",
            "cuda",
            "--input",
            fixture.to_str().unwrap(),
        ],
    ] {
        let out = kpg(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("built without the `cuda` feature"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
