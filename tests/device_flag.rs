//! `--device cuda` on a build without the `cuda` feature: every GPU entry point of the selector
//! side refuses with one line that says how to get CUDA, exit status 2, before touching its input.
#![cfg(not(feature = "cuda"))]

mod common;

use std::process::Command;

use common::{assert_usage_error, kpg_bin};

fn kpg(args: &[&str]) -> std::process::Output {
    Command::new(kpg_bin()).args(args).output().unwrap()
}

#[test]
fn cuda_commands_say_how_to_build_with_cuda() {
    let missing = "/nonexistent/model";
    for args in [
        vec!["selftest"],
        vec!["selftest", "--device", "cuda"],
        vec!["bench", "ceilings"],
        vec!["bench", "prefill", "--device", "cuda", "--model", missing],
        vec!["select", "--device", "cuda", "--selector", missing],
        vec!["bench", "select", "--device", "cuda", "--selector", missing],
        vec![
            "debug", "logits", "--device", "cuda", "--model", missing, "--ids", "1",
        ],
        vec![
            "debug",
            "generate",
            "--device",
            "cuda",
            "--model",
            missing,
            "--ids",
            "1",
            "--max-new-tokens",
            "2",
        ],
    ] {
        let out = kpg(&args);
        assert_usage_error(&out, &["--features cuda"]);
    }
}

#[test]
fn selftest_on_the_cpu_is_a_usage_error() {
    let out = kpg(&["selftest", "--device", "cpu"]);
    // A CPU-only build refuses --device cpu too: nothing to hold to the reference.
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn gpu_cache_share_needs_cuda() {
    let out = kpg(&[
        "select",
        "--selector",
        "/nonexistent",
        "--gpu-cache-share",
        "0.5",
    ]);
    assert_usage_error(&out, &["--gpu-cache-share", "--device cuda"]);
}
