//! `kpg select`: the selector over JSON lines, streaming and in order.

use super::lines::{input_lines, LineSink, Progress};
use super::output_lock::OutputLock;
use super::{BenchSelectOptions, CacheArgs, SelectArgs};
use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::model::llama::LoadOptions;
use crate::select::run::{select_lines, SelectOptions, SelectSummary};
use crate::select::scheduler::SchedulerOptions;
use crate::select::{CandidateOrder, SelectMode, Selector};

impl CacheArgs {
    pub fn scheduler_options(&self, device: DeviceKind) -> Result<SchedulerOptions> {
        use crate::kv_cache::CacheCapacity;
        let cache = match (self.cache_tokens, self.cache_mb, self.gpu_cache_share) {
            (Some(t), None, None) => CacheCapacity::Tokens(t),
            (None, Some(mb), None) => CacheCapacity::Bytes(mb << 20),
            (None, None, Some(share)) if device == DeviceKind::Cuda => {
                CacheCapacity::FreeGpuShare(share)
            }
            (None, None, Some(_)) => {
                return Err(KpgError::InvalidArgument(
                    "--gpu-cache-share applies to --device cuda only".into(),
                ))
            }
            (None, None, None) if device == DeviceKind::Cuda => CacheCapacity::FreeGpuShare(0.8),
            (None, None, None) => CacheCapacity::Bytes(2 << 30),
            _ => unreachable!("clap: conflicting flags"),
        };
        if self.block_size == 0 || self.max_batch_tokens == 0 {
            return Err(KpgError::InvalidArgument(
                "--block-size and --max-batch-tokens must be at least 1".into(),
            ));
        }
        Ok(SchedulerOptions {
            cache,
            block_size: self.block_size,
            max_batch_tokens: self.max_batch_tokens,
            share_prefix: !self.no_prefix_sharing,
            ..SchedulerOptions::default()
        })
    }
}

impl SelectArgs {
    pub fn options(&self) -> Result<SelectOptions> {
        let mode = if self.rerank {
            SelectMode::Rerank {
                threshold: self.threshold,
                top_k: self.top_k,
            }
        } else {
            SelectMode::Sequence
        };
        Ok(SelectOptions {
            order: if self.keep_order {
                CandidateOrder::Given
            } else {
                CandidateOrder::Confidence
            },
            mode,
            scheduler: self.cache.scheduler_options(self.device)?,
        })
    }
}

impl BenchSelectOptions {
    pub fn options(&self, device: DeviceKind) -> Result<SelectOptions> {
        Ok(SelectOptions {
            order: CandidateOrder::Confidence,
            mode: if self.rerank {
                SelectMode::Rerank {
                    threshold: 0.5,
                    top_k: None,
                }
            } else {
                SelectMode::Sequence
            },
            scheduler: self.cache.scheduler_options(device)?,
        })
    }
}

pub fn select(args: SelectArgs) -> Result<i32> {
    let opts = args.options()?;
    let selector = Selector::load_with(
        &args.selector,
        &LoadOptions {
            device: args.device,
            gpu: args.gpu,
            adapter: args.adapter.as_deref(),
        },
    )?;
    let lock = args
        .output
        .as_deref()
        .map(OutputLock::acquire)
        .transpose()?;
    let lines = input_lines(args.input.as_deref())?;
    let read_failure = lines.failure();
    let mut sink = LineSink::open(args.output.as_deref())?;
    let mut progress = Progress::new("select");
    let summary: SelectSummary = select_lines(
        &selector,
        lines,
        &opts,
        |line| sink.write_line(line),
        |s| progress.tick(s.documents),
    )?;
    sink.finish()?;
    drop(lock);
    read_failure.check()?;
    let secs = progress.elapsed();
    eprintln!(
        "kpg select: {} ({} failed), {}, {}, {:.1} s, {:.1} documents/s",
        super::plural::count(summary.documents, "document"),
        summary.failed,
        super::plural::count(summary.candidates, "candidate"),
        super::plural::count(summary.stats.choice_steps, "choice step"),
        secs,
        summary.documents as f64 / secs.max(1e-9)
    );
    if let Some(note) = nothing_kept_note(&summary) {
        eprintln!("kpg select: {note}");
    }
    Ok(if summary.failed > 0 { 1 } else { 0 })
}

/// Why every document came back empty, when the selector kept no candidate at all: a model that
/// was never trained to label (a random-weight one, or an instruct model used as it is) puts no
/// probability on the true label.
pub(crate) fn nothing_kept_note(summary: &SelectSummary) -> Option<String> {
    (summary.candidates > 0 && summary.kept == 0).then(|| {
        format!(
            "no candidate was kept: the highest P(true) of all {} was {:.3}, under the decision \
             rule. A model that was not trained as a selector (a random-weight one, or an \
             instruct model as it is) rarely says true; train one with `kpg train selector`, \
             or use the ranker's cut (`kpg tag` without --selector).",
            summary.candidates, summary.max_p_true
        )
    })
}
