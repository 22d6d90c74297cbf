//! `--device cuda` on `kpg generate` and `kpg bench generate` in a build without the `cuda`
//! feature: a clear error that says how to get CUDA (exit status 2), before any model is read.

#![cfg(not(feature = "cuda"))]

use std::process::Command;

fn kpg(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kpg"))
        .args(args)
        .output()
        .expect("kpg runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    for args in [
        &["generate", "--generator", "no-such-dir", "--device", "cuda"][..],
        &[
            "bench",
            "generate",
            "--generator",
            "no-such-dir",
            "--device",
            "cuda",
        ][..],
    ] {
        let (code, err) = kpg(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("--features cuda"), "{args:?}: {err}");
    }
}
