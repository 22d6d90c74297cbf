//! With the `cuda` feature, compiles every `kernels/*.cu` to a fatbin (sm_90a, sm_80, and PTX for
//! later GPUs) with nvcc and embeds the result; without it, does nothing, so the default build
//! needs no CUDA toolkit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = find_nvcc().unwrap_or_else(|| {
        panic!(
            "the `cuda` feature needs nvcc: set NVCC or CUDA_HOME, put nvcc on PATH, \
             or install the pinned toolkit with tools/install-nvcc.sh"
        )
    });
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    kernels.retain(|p| p.extension().is_some_and(|e| e == "cu"));
    kernels.sort();
    let mut registry = String::from("pub const KERNELS: &[(&str, &[u8])] = &[\n");
    for cu in &kernels {
        let stem = cu.file_stem().unwrap().to_string_lossy().to_string();
        let fatbin = out_dir.join(format!("{stem}.fatbin"));
        compile(&nvcc, cu, &fatbin);
        registry.push_str(&format!(
            "    ({stem:?}, include_bytes!({:?})),\n",
            fatbin.display().to_string()
        ));
    }
    registry.push_str("];\n");
    std::fs::write(out_dir.join("kernels.rs"), registry).unwrap();
}

fn compile(nvcc: &Path, cu: &Path, fatbin: &Path) {
    let status = Command::new(nvcc)
        .args(["-fatbin", "-O3", "-std=c++17", "-Ikernels"])
        .args([
            "-gencode=arch=compute_90a,code=sm_90a",
            "-gencode=arch=compute_80,code=sm_80",
            "-gencode=arch=compute_90,code=compute_90",
        ])
        .arg("-o")
        .arg(fatbin)
        .arg(cu)
        .status()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", nvcc.display()));
    assert!(status.success(), "nvcc failed on {}", cu.display());
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.exists() {
            return Some(p);
        }
    }
    let local = Path::new("local/cuda/bin/nvcc");
    if local.exists() {
        return local.canonicalize().ok();
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.exists())
    })
}
