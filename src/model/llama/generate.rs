//! Teacher-forced scoring and greedy generation with a LLaMA model over the paged KV cache: the
//! engine behind `kpg debug logits` and `kpg debug generate`. Prompts are prefilled in chunks,
//! all sequences of a batch together; decoding then appends one token per sequence per step.

use crate::error::Result;
use crate::kv_cache::{BlockTable, CacheCapacity, PagedKvCache, DEFAULT_BLOCK_SIZE};
use crate::model::llama::{Llama, LlamaWorkspace, LogitRows, SeqChunk};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tokens per sequence per prefill step; long prompts are split into chunks of this size.
    pub prefill_chunk: usize,
    pub block_size: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            prefill_chunk: 512,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// Index of the largest value (the first one on ties, as torch.argmax).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn cache_for(model: &Llama, tokens_per_seq: &[usize], opts: &RunOptions) -> Result<PagedKvCache> {
    let bs = opts.block_size.max(1);
    let blocks: usize = tokens_per_seq.iter().map(|n| n.div_ceil(bs).max(1)).sum();
    model.new_cache(CacheCapacity::Tokens(blocks * bs), bs)
}

/// Logits for every position of `ids` (`[ids.len(), vocab]`), fed through the cache chunk by chunk.
pub fn teacher_forced_logits(model: &Llama, ids: &[u32], opts: &RunOptions) -> Result<Vec<f32>> {
    let mut cache = cache_for(model, &[ids.len()], opts)?;
    let mut ws = LlamaWorkspace::default();
    let mut table = BlockTable::default();
    let mut logits = Vec::with_capacity(ids.len() * model.config.vocab_size);
    for chunk in ids.chunks(opts.prefill_chunk.max(1)) {
        let mut batch = [SeqChunk {
            table: &mut table,
            tokens: chunk,
        }];
        logits.extend_from_slice(model.forward(&mut cache, &mut ws, &mut batch, LogitRows::All)?);
    }
    Ok(logits)
}

/// Where a greedy continuation's time went: the prompt's forward passes (which give the first
/// new token) and the single-token decode passes after them.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateTimings {
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Forward passes of the decode loop (one new token per unfinished sequence each).
    pub decode_steps: usize,
}

/// Greedy continuation of each prompt: up to `max_new_tokens` new ids per prompt, stopping after
/// an end-of-sequence token of the config when `stop_at_eos` (as transformers' generate does).
pub fn greedy_generate(
    model: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    stop_at_eos: bool,
    opts: &RunOptions,
) -> Result<Vec<Vec<u32>>> {
    greedy_generate_timed(model, prompts, max_new_tokens, stop_at_eos, opts).map(|(ids, _)| ids)
}

/// [`greedy_generate`], with its timings.
pub fn greedy_generate_timed(
    model: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    stop_at_eos: bool,
    opts: &RunOptions,
) -> Result<(Vec<Vec<u32>>, GenerateTimings)> {
    let mut timings = GenerateTimings::default();
    let started = std::time::Instant::now();
    let lens: Vec<usize> = prompts.iter().map(|p| p.len() + max_new_tokens).collect();
    let mut cache = cache_for(model, &lens, opts)?;
    let mut ws = LlamaWorkspace::default();
    let mut tables = vec![BlockTable::default(); prompts.len()];
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut done: Vec<bool> = prompts
        .iter()
        .map(|p| p.is_empty() || max_new_tokens == 0)
        .collect();
    let vocab = model.config.vocab_size;
    let chunk = opts.prefill_chunk.max(1);

    // Prefill: every sequence advances by up to one chunk per forward pass.
    let mut fed = vec![0usize; prompts.len()];
    loop {
        let active: Vec<usize> = (0..prompts.len())
            .filter(|&i| !done[i] && fed[i] < prompts[i].len())
            .collect();
        if active.is_empty() {
            break;
        }
        let mut batch: Vec<SeqChunk> = Vec::with_capacity(active.len());
        let mut finishing = Vec::with_capacity(active.len());
        for (i, table) in tables.iter_mut().enumerate() {
            if !active.contains(&i) {
                continue;
            }
            let end = (fed[i] + chunk).min(prompts[i].len());
            batch.push(SeqChunk {
                table,
                tokens: &prompts[i][fed[i]..end],
            });
            finishing.push(end == prompts[i].len());
            fed[i] = end;
        }
        let logits = model.forward(&mut cache, &mut ws, &mut batch, LogitRows::Last)?;
        for (row, &i) in active.iter().enumerate() {
            if finishing[row] {
                outputs[i].push(argmax(&logits[row * vocab..(row + 1) * vocab]));
            }
        }
    }

    let is_stop = |id: u32| stop_at_eos && model.config.eos_token_ids.contains(&id);
    for i in 0..prompts.len() {
        if let Some(&last) = outputs[i].last() {
            done[i] = outputs[i].len() >= max_new_tokens || is_stop(last);
        }
    }
    timings.prefill_seconds = started.elapsed().as_secs_f64();
    let decode_started = std::time::Instant::now();
    // Decode: one token per unfinished sequence per forward pass.
    loop {
        let active: Vec<usize> = (0..prompts.len()).filter(|&i| !done[i]).collect();
        if active.is_empty() {
            break;
        }
        let last_tokens: Vec<u32> = active
            .iter()
            .map(|&i| *outputs[i].last().unwrap())
            .collect();
        let mut batch: Vec<SeqChunk> = Vec::with_capacity(active.len());
        let mut k = 0;
        for (i, table) in tables.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            batch.push(SeqChunk {
                table,
                tokens: std::slice::from_ref(&last_tokens[k]),
            });
            k += 1;
        }
        let logits = model.forward(&mut cache, &mut ws, &mut batch, LogitRows::Last)?;
        for (row, &i) in active.iter().enumerate() {
            let next = argmax(&logits[row * vocab..(row + 1) * vocab]);
            outputs[i].push(next);
            done[i] = outputs[i].len() >= max_new_tokens || is_stop(next);
        }
        timings.decode_steps += 1;
    }
    timings.decode_seconds = decode_started.elapsed().as_secs_f64();
    Ok((outputs, timings))
}
