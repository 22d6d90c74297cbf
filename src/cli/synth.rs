//! `kpg synth`: writes a random-weight model directory.

use super::{Arch, DTypeArg, SynthArgs};
use crate::error::Result;
use crate::model::weights::DType;
use crate::synth::{llama_preset, synth_llama};

pub fn synth(args: SynthArgs) -> Result<i32> {
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 => DType::F16,
        DTypeArg::Bf16 => DType::BF16,
    };
    match args.arch {
        Arch::Llama => {
            let config = llama_preset(&args.preset)?;
            synth_llama(&config, dtype, args.seed, &args.out)?;
            // A synth LLaMA is also a selector: the default template goes with it.
            crate::select::config::SelectorConfig::default().write(&args.out)?;
        }
    }
    eprintln!(
        "kpg: wrote {} ({} {})",
        args.out.display(),
        args.preset,
        dtype
    );
    Ok(0)
}
