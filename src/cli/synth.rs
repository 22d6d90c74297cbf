//! `kpg synth`: writes a random-weight model directory.

use super::{Arch, DTypeArg, SynthArgs};
use crate::error::{KpgError, Result};
use crate::model::weights::DType;
use crate::synth::{llama_preset, synth_llama};

pub fn synth(args: SynthArgs) -> Result<i32> {
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 => DType::F16,
        DTypeArg::Bf16 => DType::BF16,
    };
    if args.vocab.is_some() && args.arch != Arch::One2set {
        return Err(KpgError::InvalidArgument(
            "--vocab applies to --arch one2set only".into(),
        ));
    }
    match args.arch {
        Arch::One2set => {
            let config = crate::synth::one2set::one2set_preset(&args.preset)?;
            let vocab = match &args.vocab {
                Some(p) => Some(crate::one2set::vocab::Vocab::load(p)?),
                None => None,
            };
            crate::synth::one2set::synth_one2set(&config, dtype, args.seed, vocab, &args.out)?;
        }
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
