//! `kpg selftest --device cuda`: prints the device, then one table row per check as it finishes;
//! exit status 1 when any check fails.

use clap::Args;

use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The backend to check against the CPU reference (only `cuda` has anything to check).
    #[arg(long, value_enum, default_value = "cuda")]
    pub device: DeviceKind,
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// Run only the checks whose name contains this text (e.g. `attention`).
    #[arg(long)]
    pub filter: Option<String>,
}

pub fn selftest(args: SelftestArgs) -> Result<i32> {
    if args.device.require_built()? == DeviceKind::Cpu {
        return Err(KpgError::InvalidArgument(
            "the selftest holds the CUDA backend to the CPU reference: use --device cuda".into(),
        ));
    }
    run_cuda(&args)
}

#[cfg(feature = "cuda")]
fn run_cuda(args: &SelftestArgs) -> Result<i32> {
    use crate::selftest;
    let dev = crate::backend::cuda::CudaDevice::new(args.gpu)?;
    eprintln!("kpg selftest on {}", dev.describe()?);
    println!("{}", selftest::table_header());
    let rows = selftest::run_checks(&dev, args.filter.as_deref(), |row| {
        println!("{}", selftest::table_row(row))
    });
    let skipped = rows.iter().filter(|r| r.skipped).count();
    let failed = rows.iter().filter(|r| !r.passed).count() - skipped;
    println!(
        "{} checks, {} failed, {} skipped",
        rows.len(),
        failed,
        skipped
    );
    if skipped > 0 {
        eprintln!(
            "kpg selftest: {skipped} check{} SKIPPED (see the SKIPPED rows): the selftest is not a pass",
            if skipped == 1 { " was" } else { "s were" }
        );
    }
    if rows.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "no check matches --filter {:?}",
            args.filter.as_deref().unwrap_or("")
        )));
    }
    Ok(if failed + skipped == 0 { 0 } else { 1 })
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_: &SelftestArgs) -> Result<i32> {
    unreachable!("require_built refuses cuda in a build without the feature")
}
