//! Checks of the paged attention kernels (`kernels/paged_attention.cu`): the fast path, with the
//! split-KV merge forced on, off and left to the heuristic, and the naive kernel, each against
//! `paged_attention_forward` on the same bf16-rounded inputs. Block tables are random
//! permutations of the physical blocks; cache slots no sequence uses, and every output, are NaN
//! before each run; contexts are 1, odd and past 2048 long; chunks are one decode token, a few
//! forced tokens or a whole prompt, mixed in one batch; GQA 1, 3, 4 and 8; head_dim 32, 34 (the
//! 4-byte load path), 64, 80, 96, 128 and 256; block sizes 16, 7 and 1.

use half::bf16;

use crate::backend::cpu::attention::paged_attention_forward;
use crate::backend::cuda::attention::{AttentionShape, PagedAttention, SplitKv};
use crate::backend::cuda::CudaDevice;
use crate::backend::paged::{PagedLayer, TokenContext};
use crate::error::Result;
use crate::selftest::random::{from_bf16, round_bf16, to_bf16, Rng};
use crate::selftest::{compare, Check, CheckResult, BF16};

pub fn checks() -> Vec<Check> {
    vec![Check {
        name: "paged attention (fast, split, naive)",
        run: attention_checks,
    }]
}

/// One batch: every sequence is (context length after the chunk, chunk length).
struct Case {
    name: &'static str,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    seqs: &'static [(usize, usize)],
    splits: &'static [SplitKv],
}

const ALL_SPLITS: &[SplitKv] = &[SplitKv::Auto, SplitKv::Never, SplitKv::Partition(64)];

const CASES: &[Case] = &[
    Case {
        name: "decode gqa1 d128",
        num_heads: 32,
        num_kv_heads: 32,
        head_dim: 128,
        block_size: 16,
        seqs: &[(1, 1), (17, 1), (333, 1), (2100, 1)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "decode gqa8 d128",
        num_heads: 32,
        num_kv_heads: 4,
        head_dim: 128,
        block_size: 16,
        seqs: &[(2049, 1), (1, 1), (77, 1)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "decode gqa4 d64 bs7",
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 64,
        block_size: 7,
        seqs: &[(333, 1), (17, 1), (1, 1)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "mixed prefill+forced+decode gqa1 d128",
        num_heads: 4,
        num_kv_heads: 4,
        head_dim: 128,
        block_size: 16,
        seqs: &[(333, 333), (40, 5), (17, 1), (1, 1)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "prefill 2100 gqa4 d64",
        num_heads: 4,
        num_kv_heads: 1,
        head_dim: 64,
        block_size: 16,
        seqs: &[(2100, 2100)],
        splits: &[SplitKv::Auto, SplitKv::Partition(256)],
    },
    Case {
        name: "forced chunks gqa3 d96",
        num_heads: 6,
        num_kv_heads: 2,
        head_dim: 96,
        block_size: 16,
        seqs: &[(50, 3), (9, 9), (130, 4)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "chunks gqa1 d80 bs1",
        num_heads: 3,
        num_kv_heads: 3,
        head_dim: 80,
        block_size: 1,
        seqs: &[(70, 4), (33, 2), (1, 1)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "synth tiny gqa1 d32",
        num_heads: 4,
        num_kv_heads: 4,
        head_dim: 32,
        block_size: 16,
        seqs: &[(45, 45), (19, 1), (100, 7)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "4-byte loads gqa2 d34",
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 34,
        block_size: 16,
        seqs: &[(29, 3), (130, 1), (60, 60)],
        splits: ALL_SPLITS,
    },
    Case {
        name: "gqa16 d256",
        num_heads: 16,
        num_kv_heads: 1,
        head_dim: 256,
        block_size: 16,
        seqs: &[(300, 2), (5, 1)],
        splits: ALL_SPLITS,
    },
];

fn attention_checks(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rows = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        rows.extend(run_case(dev, case, 100 + i as u64)?);
    }
    Ok(rows)
}

fn run_case(dev: &CudaDevice, c: &Case, seed: u64) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(seed);
    let (hd, bs, kvh) = (c.head_dim, c.block_size, c.num_kv_heads);
    let num_seqs = c.seqs.len();
    let max_context = c.seqs.iter().map(|s| s.0).max().unwrap_or(1);
    let used_blocks: usize = c.seqs.iter().map(|s| s.0.div_ceil(bs)).sum();
    // Spare blocks stay NaN, and the block tables have a spare column.
    let num_blocks = used_blocks + 3;
    let max_blocks = max_context.div_ceil(bs) + 1;
    let perm = rng.permutation(num_blocks);
    let mut tables = vec![u32::MAX; num_seqs * max_blocks];
    let mut next = 0;
    for (s, &(len, _)) in c.seqs.iter().enumerate() {
        for b in 0..len.div_ceil(bs) {
            tables[s * max_blocks + b] = perm[next];
            next += 1;
        }
    }
    // The GPU's cache is NaN wherever no sequence has a position; the CPU's is zero there.
    let slot_elems = kvh * hd;
    let cache_len = num_blocks * bs * slot_elems;
    let (mut k_gpu, mut v_gpu) = (vec![f32::NAN; cache_len], vec![f32::NAN; cache_len]);
    let (mut k_cpu, mut v_cpu) = (vec![0f32; cache_len], vec![0f32; cache_len]);
    let (mut token_seq, mut token_pos) = (Vec::new(), Vec::new());
    for (s, &(len, chunk)) in c.seqs.iter().enumerate() {
        for p in 0..len {
            let slot = tables[s * max_blocks + p / bs] as usize * bs + p % bs;
            let at = slot * slot_elems..(slot + 1) * slot_elems;
            let k = round_bf16(&rng.vec(slot_elems, 1.0));
            let v = round_bf16(&rng.vec(slot_elems, 1.0));
            k_gpu[at.clone()].copy_from_slice(&k);
            k_cpu[at.clone()].copy_from_slice(&k);
            v_gpu[at.clone()].copy_from_slice(&v);
            v_cpu[at].copy_from_slice(&v);
        }
        for p in len - chunk..len {
            token_seq.push(s as u32);
            token_pos.push(p as u32);
        }
    }
    let num_tokens = token_seq.len();
    let row = c.num_heads * hd;
    // Scaled up so that the softmax is peaked rather than nearly uniform.
    let q = round_bf16(&rng.vec(num_tokens * row, 3.0));

    let mut want = vec![0f32; num_tokens * row];
    let table_rows: Vec<&[u32]> = tables.chunks(max_blocks).collect();
    paged_attention_forward(
        &mut want,
        &q,
        PagedLayer {
            k: &k_cpu,
            v: &v_cpu,
            block_size: bs,
            num_kv_heads: kvh,
            head_dim: hd,
        },
        &TokenContext {
            token_seq: &token_seq,
            token_pos: &token_pos,
            block_tables: &table_rows,
        },
        c.num_heads,
    );

    let shape = AttentionShape {
        num_tokens,
        num_seqs,
        num_heads: c.num_heads,
        num_kv_heads: kvh,
        head_dim: hd,
        block_size: bs,
        max_blocks_per_seq: max_blocks,
        max_context,
    };
    let q_dev = dev.upload(&to_bf16(&q), "q")?;
    let k_dev = dev.upload(&to_bf16(&k_gpu), "k cache")?;
    let v_dev = dev.upload(&to_bf16(&v_gpu), "v cache")?;
    let seq_dev = dev.upload(&token_seq, "token_seq")?;
    let pos_dev = dev.upload(&token_pos, "token_pos")?;
    let tables_dev = dev.upload(&tables, "block_tables")?;
    let poison = vec![bf16::NAN; num_tokens * row];
    let mut out_dev = dev.upload(&poison, "attention out")?;
    let mut attention = PagedAttention::new();
    let mut rows = Vec::new();
    for &split in c.splits {
        attention.set_split(split);
        let plan = attention.plan_for(dev, &shape)?;
        dev.upload_into(&poison, &mut out_dev, "attention out (NaN)")?;
        attention.forward(
            dev,
            &mut out_dev.as_view_mut(),
            &q_dev.as_view(),
            &k_dev.as_view(),
            &v_dev.as_view(),
            &seq_dev.as_view(),
            &pos_dev.as_view(),
            &tables_dev.as_view(),
            &shape,
        )?;
        let got = from_bf16(&dev.download(&out_dev, "attention out")?);
        let split_name = match split {
            SplitKv::Auto => "auto",
            SplitKv::Never => "no split",
            SplitKv::Partition(_) => "split",
        };
        rows.push(compare(
            format!(
                "attn {} {} ({}x{})",
                c.name, split_name, plan.num_splits, plan.rows
            ),
            &got,
            &want,
            BF16,
        ));
    }
    dev.upload_into(&poison, &mut out_dev, "attention out (NaN)")?;
    attention.forward_naive(
        dev,
        &mut out_dev.as_view_mut(),
        &q_dev.as_view(),
        &k_dev.as_view(),
        &v_dev.as_view(),
        &seq_dev.as_view(),
        &pos_dev.as_view(),
        &tables_dev.as_view(),
        &shape,
    )?;
    let got = from_bf16(&dev.download(&out_dev, "attention out")?);
    rows.push(compare(format!("attn {} naive", c.name), &got, &want, BF16));
    Ok(rows)
}
