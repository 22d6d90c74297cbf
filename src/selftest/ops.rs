//! Checks of the basic device layer: dtype conversion and the cuBLAS bf16 GEMM, against plain
//! f64 loops over the same bf16-rounded inputs.

use half::bf16;

use crate::backend::cuda::{convert, gemm, CudaDevice};
use crate::error::Result;
use crate::selftest::random::{from_bf16, round_bf16, to_bf16, Rng};
use crate::selftest::{compare, Check, CheckResult, BF16, F32};

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "convert f32<->bf16",
            run: convert_check,
        },
        Check {
            name: "gemm bf16 (cuBLAS)",
            run: gemm_check,
        },
    ]
}

fn convert_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(1);
    let n = 100_003;
    let x = rng.vec(n, 3.0);
    let x_dev = dev.upload(&x, "x")?;
    let mut y = dev.upload(&vec![bf16::NAN; n], "y")?;
    convert::f32_to_bf16(dev, &mut y.as_view_mut(), &x_dev.as_view(), n)?;
    let mut back = dev.upload(&vec![f32::NAN; n], "back")?;
    convert::bf16_to_f32(dev, &mut back.as_view_mut(), &y.as_view(), n)?;
    let got = dev.download(&back, "back")?;
    // Round-to-nearest-even on both sides: exact agreement.
    Ok(vec![compare(
        "convert f32->bf16->f32",
        &got,
        &round_bf16(&x),
        F32,
    )])
}

/// y[m, n] = x[m, k] · w[n, k]ᵀ in f64.
pub fn linear_reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                .sum();
            y[i * n + j] = s as f32;
        }
    }
    y
}

fn gemm_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(2);
    let mut rows = Vec::new();
    for (m, n, k) in [(1, 7, 13), (37, 129, 65), (300, 513, 257)] {
        let x = round_bf16(&rng.vec(m * k, 1.0));
        let w = round_bf16(&rng.vec(n * k, 1.0));
        let x_dev = dev.upload(&to_bf16(&x), "x")?;
        let w_dev = dev.upload(&to_bf16(&w), "w")?;
        let mut y_dev = dev.upload(&vec![bf16::NAN; m * n], "y")?;
        gemm::linear_bf16(dev, &mut y_dev, &x_dev, &w_dev, (m, n, k), 0.0)?;
        let got = from_bf16(&dev.download(&y_dev, "y")?);
        rows.push(compare(
            format!("gemm bf16 {m}x{n}x{k}"),
            &got,
            &linear_reference(&x, &w, m, n, k),
            BF16,
        ));
    }
    Ok(rows)
}
