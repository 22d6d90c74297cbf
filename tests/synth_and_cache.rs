//! `kpg synth` models, and the paged KV cache seen through the model: block size and chunking do
//! not change the logits, and sequences that share a prefix by reference get what they would get
//! alone.

mod common;

use common::rel_error;
use kpg::kv_cache::{BlockTable, CacheCapacity};
use kpg::model::llama::generate::{greedy_generate, teacher_forced_logits, RunOptions};
use kpg::model::llama::{Llama, LlamaWorkspace, LogitRows, SeqChunk};
use kpg::model::weights::DType;
use kpg::synth::{llama_preset, synth_llama, synth_llama_sharded};

fn tiny(dtype: DType, seed: u64) -> (tempfile::TempDir, Llama) {
    let tmp = tempfile::tempdir().unwrap();
    synth_llama(&llama_preset("tiny").unwrap(), dtype, seed, tmp.path()).unwrap();
    let model = Llama::load(tmp.path()).unwrap();
    (tmp, model)
}

#[test]
fn synth_is_deterministic_and_sharding_changes_nothing() {
    let (a, _) = tiny(DType::F32, 7);
    let (b, _) = tiny(DType::F32, 7);
    let (c, _) = tiny(DType::F32, 8);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));

    let sharded = tempfile::tempdir().unwrap();
    synth_llama_sharded(
        &llama_preset("tiny").unwrap(),
        DType::F32,
        7,
        sharded.path(),
        1 << 20,
    )
    .unwrap();
    assert!(sharded.path().join("model.safetensors.index.json").exists());
    let shards = std::fs::read_dir(sharded.path())
        .unwrap()
        .filter(|e| {
            let name = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            name.starts_with("model-000") && name.ends_with(".safetensors")
        })
        .count();
    assert!(
        shards >= 4,
        "{shards} shards for a 4 MB model in 1 MB shards"
    );
    let ids = [1u32, 50, 60, 70, 300, 2, 9];
    let opts = RunOptions::default();
    let one = teacher_forced_logits(&Llama::load(a.path()).unwrap(), &ids, &opts).unwrap();
    let many = teacher_forced_logits(&Llama::load(sharded.path()).unwrap(), &ids, &opts).unwrap();
    assert_eq!(one, many);
}

#[test]
fn synth_tokenizer_round_trips_text_and_keeps_labels_single_tokens() {
    let (_d, model) = tiny(DType::BF16, 1);
    let tok = model
        .tokenizer
        .as_ref()
        .expect("synth writes tokenizer.json");
    assert_eq!(tok.vocab_size(), model.config.vocab_size);
    let text = "Keyphrases: safety problem; naïve Bayes (T/F)";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert_eq!(tok.encode("T", false).unwrap().len(), 1);
    assert_eq!(tok.encode("F", false).unwrap().len(), 1);
}

#[test]
fn half_precision_synth_stays_close_to_f32() {
    let (_a, f32_model) = tiny(DType::F32, 3);
    let ids = [1u32, 40, 41, 42, 500, 77, 3, 2, 9, 10, 11];
    let want = teacher_forced_logits(&f32_model, &ids, &RunOptions::default()).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let (_d, m) = tiny(dtype, 3);
        let got = teacher_forced_logits(&m, &ids, &RunOptions::default()).unwrap();
        // Weight rounding only: 2^-11 (f16) and 2^-8 (bf16) relative per weight.
        let tol = if dtype == DType::F16 { 5e-3 } else { 5e-2 };
        let err = rel_error(&got, &want);
        assert!(err < tol, "{dtype}: rel error {err}");
    }
}

#[test]
fn block_size_and_chunking_do_not_change_logits() {
    let (_d, model) = tiny(DType::F32, 5);
    let ids: Vec<u32> = (0..70).map(|i| 3 + (i * 37) % 1000).collect();
    let want = teacher_forced_logits(&model, &ids, &RunOptions::default()).unwrap();
    for (chunk, bs) in [(1, 16), (70, 1), (13, 7), (64, 64), (70, 128)] {
        let got = teacher_forced_logits(
            &model,
            &ids,
            &RunOptions {
                prefill_chunk: chunk,
                block_size: bs,
            },
        )
        .unwrap();
        let err = rel_error(&got, &want);
        assert!(err < 1e-5, "chunk {chunk} block {bs}: rel error {err}");
    }
}

#[test]
fn forked_prefix_shares_blocks_and_matches_unshared_runs() {
    let (_d, model) = tiny(DType::F32, 11);
    let prefix: Vec<u32> = (0..21).map(|i| 5 + i * 3).collect();
    let suffixes: [Vec<u32>; 3] = [
        vec![400, 401, 402],
        vec![7],
        vec![900, 8, 8, 8, 8, 8, 8, 8, 8, 8],
    ];
    let mut cache = model.new_cache(CacheCapacity::Tokens(16 * 8), 16).unwrap();
    let mut ws = LlamaWorkspace::default();
    let mut parent = BlockTable::default();
    model
        .forward(
            &mut cache,
            &mut ws,
            &mut [SeqChunk {
                table: &mut parent,
                tokens: &prefix,
            }],
            LogitRows::None,
        )
        .unwrap();
    let used_by_prefix = cache.allocator().num_blocks() - cache.allocator().num_free();
    let mut children: Vec<BlockTable> = suffixes.iter().map(|_| cache.fork(&parent)).collect();
    assert_eq!(
        cache.allocator().num_blocks() - cache.allocator().num_free(),
        used_by_prefix,
        "forks must not allocate"
    );
    let mut batch: Vec<SeqChunk> = children
        .iter_mut()
        .zip(&suffixes)
        .map(|(table, s)| SeqChunk { table, tokens: s })
        .collect();
    let got = model
        .forward(&mut cache, &mut ws, &mut batch, LogitRows::All)
        .unwrap()
        .to_vec();
    let vocab = model.config.vocab_size;
    let mut row = 0;
    for s in &suffixes {
        let full: Vec<u32> = prefix.iter().chain(s).copied().collect();
        let alone = teacher_forced_logits(&model, &full, &RunOptions::default()).unwrap();
        let want = &alone[prefix.len() * vocab..];
        let mine = &got[row * vocab..(row + s.len()) * vocab];
        assert!(rel_error(mine, want) < 1e-5);
        row += s.len();
    }
    for mut c in children {
        cache.release(&mut c);
    }
    cache.release(&mut parent);
    assert_eq!(cache.allocator().num_free(), cache.allocator().num_blocks());
}

#[test]
fn generation_stops_at_eos_and_errors_cleanly_when_context_is_too_long() {
    let (_d, model) = tiny(DType::F32, 2);
    let out = greedy_generate(&model, &[vec![1, 2, 3]], 5, false, &RunOptions::default()).unwrap();
    assert_eq!(out[0].len(), 5);
    let long = vec![3u32; model.config.max_position_embeddings + 1];
    let err = teacher_forced_logits(&model, &long, &RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}
