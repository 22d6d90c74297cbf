//! Continuous batching of selection programs over the paged KV cache.
//!
//! Work comes as groups, in input order: a group is one document's work — a prefix (the rerank
//! baseline's document prompt; empty for sequence labelling) and member programs that fork it.
//! A root prefix shared by every group (the instruction) is computed once and its blocks are shared
//! by reference count. Each forward pass mixes prefill chunks of newly admitted documents with the
//! forced-text chunks that follow decisions in running ones, within a token budget. A group is
//! admitted only when the free blocks, less those promised to running groups, cover all it will
//! ever need, so a running document never meets a full cache; when the cache is full, admission
//! waits. Results are handed back in input order.

use std::collections::{BTreeMap, VecDeque};

use super::program::{KeepRule, LabelSlot, Program};
use crate::error::{KpgError, Result};
use crate::kv_cache::{BlockTable, CacheCapacity, PagedKvCache};
use crate::model::llama::{Llama, LlamaWorkspace, LogitRows, SeqChunk};

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub cache: CacheCapacity,
    pub block_size: usize,
    /// Most tokens in one forward pass (prefill chunks and choice steps together).
    pub max_batch_tokens: usize,
    /// Most sequences in one forward pass.
    pub max_batch_seqs: usize,
    /// Share the root prefix's KV blocks between documents (off: every document computes it).
    pub share_prefix: bool,
    /// Most groups admitted but not yet handed back; bounds memory on any input size.
    pub window: usize,
    /// Keep a candidate when P(true) (the softmax of the two labels' logits) is at least this;
    /// `None`: the likelier label, as greedy decoding. Set from the selector's template
    /// ([`crate::select::Selector::scheduler_options`]).
    pub keep_threshold: Option<f32>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            cache: CacheCapacity::Tokens(64 * 1024),
            block_size: crate::kv_cache::DEFAULT_BLOCK_SIZE,
            max_batch_tokens: 1024,
            max_batch_seqs: 256,
            share_prefix: true,
            window: 256,
            keep_threshold: None,
        }
    }
}

/// One document's work.
#[derive(Debug, Clone)]
pub struct Group {
    /// Whether the member programs start with the root prefix (false when the document's
    /// tokenisation does not reproduce it, or sharing is off).
    pub shares_root: bool,
    /// Tokens after the root that all members share.
    pub prefix: Vec<u32>,
    /// Programs whose tokens and label positions count from after the root and the prefix.
    pub members: Vec<Program>,
}

/// What the selector decided for one member program.
#[derive(Debug, Clone, PartialEq)]
pub struct Decisions {
    pub selected: Vec<bool>,
    /// P(true label) from the softmax over the two label logits.
    pub p_true: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub forward_passes: usize,
    /// Tokens fed through the model (prompts, forced text), root prefix included.
    pub prompt_tokens: usize,
    pub choice_steps: usize,
    pub peak_blocks_in_use: usize,
    pub root_tokens: usize,
}

/// A sequence being computed: a group's prefix or one of its members.
struct Running {
    group: usize,
    member: Option<usize>,
    table: BlockTable,
    tokens: Vec<u32>,
    labels: Vec<LabelSlot>,
    /// By label; empty: the scheduler's rule for all ([`Program::keep_rules`]).
    keep_rules: Vec<KeepRule>,
    /// Tokens fed so far (relative to this sequence's own tokens).
    cursor: usize,
    next_label: usize,
    /// Where this sequence stops: the last label position, or the prefix length.
    end: usize,
}

struct GroupState<P> {
    payload: P,
    group: Group,
    prefix_table: Option<BlockTable>,
    results: Vec<Option<Decisions>>,
    remaining: usize,
    /// Blocks counted at admission and not yet taken from the free list.
    promised: usize,
}

/// What `run` keeps between steps.
struct RunState<P> {
    /// Admitted groups still running, by input index.
    groups: BTreeMap<usize, GroupState<P>>,
    /// Results waiting for the groups before them.
    finished: BTreeMap<usize, (P, Result<Vec<Decisions>>)>,
    running: VecDeque<Running>,
    next_index: usize,
    next_emit: usize,
    /// Blocks counted at admission and not yet taken from the free list, over all groups.
    promised: usize,
}

enum Admission {
    /// The next item was taken (started, or handed to `finished` with its error).
    Admitted,
    /// The next group does not fit yet.
    Wait,
    NoInput,
}

/// The decision rule of greedy decoding restricted to the two labels: the larger logit, and on a
/// tie the smaller token id (argmax takes the first maximum).
pub fn decide(logit_true: f32, logit_false: f32, ids: [u32; 2]) -> (bool, f32) {
    let yes = logit_true > logit_false || (logit_true == logit_false && ids[0] < ids[1]);
    let p_true = 1.0 / (1.0 + (logit_false - logit_true).exp());
    (yes, p_true)
}

pub struct Scheduler<'m> {
    model: &'m Llama,
    cache: PagedKvCache,
    ws: LlamaWorkspace,
    opts: SchedulerOptions,
    root: BlockTable,
    pub stats: SchedulerStats,
}

impl<'m> Scheduler<'m> {
    /// Creates the cache and computes the root prefix (when sharing is on).
    pub fn new(model: &'m Llama, root_tokens: &[u32], opts: SchedulerOptions) -> Result<Self> {
        if opts.max_batch_tokens == 0 || opts.max_batch_seqs == 0 || opts.window == 0 {
            return Err(KpgError::InvalidArgument(
                "batch token and sequence limits and the window must be at least 1".into(),
            ));
        }
        let cache = model.new_cache(opts.cache, opts.block_size)?;
        let mut s = Scheduler {
            model,
            cache,
            ws: LlamaWorkspace::default(),
            opts,
            root: BlockTable::default(),
            stats: SchedulerStats::default(),
        };
        if s.opts.share_prefix && !root_tokens.is_empty() {
            let needed = s.cache.blocks_needed(&s.root, root_tokens.len());
            if needed > s.cache.allocator().num_free() {
                return Err(KpgError::CacheFull {
                    needed,
                    free: s.cache.allocator().num_free(),
                    total: s.cache.allocator().num_blocks(),
                });
            }
            for chunk in root_tokens.chunks(s.opts.max_batch_tokens) {
                let mut batch = [SeqChunk {
                    table: &mut s.root,
                    tokens: chunk,
                }];
                s.model
                    .forward(&mut s.cache, &mut s.ws, &mut batch, LogitRows::None)?;
                s.stats.forward_passes += 1;
            }
            s.stats.prompt_tokens += root_tokens.len();
            s.stats.root_tokens = root_tokens.len();
        }
        s.note_usage();
        Ok(s)
    }

    /// Whether groups may start from the root prefix's blocks.
    pub fn root_len(&self) -> usize {
        self.root.num_tokens()
    }

    fn note_usage(&mut self) {
        let a = self.cache.allocator();
        let used = a.num_blocks() - a.num_free();
        self.stats.peak_blocks_in_use = self.stats.peak_blocks_in_use.max(used);
    }

    /// Blocks a sequence of `extra` tokens forked from a parent of `parent_len` tokens will take:
    /// its own blocks plus a copy of the parent's partly filled last block.
    fn fork_cost(&self, parent_len: usize, extra: usize) -> usize {
        if extra == 0 {
            return 0;
        }
        let bs = self.cache.block_size();
        let cow = usize::from(!parent_len.is_multiple_of(bs));
        (parent_len + extra).div_ceil(bs) - parent_len.div_ceil(bs) + cow
    }

    fn group_cost(&self, g: &Group) -> (usize, usize) {
        let root = if g.shares_root { self.root_len() } else { 0 };
        let prefix_cost = self.fork_cost(root, g.prefix.len());
        let parent = root + g.prefix.len();
        let member_cost = g
            .members
            .iter()
            .map(|m| self.fork_cost(parent, m.labels.last().map_or(0, |l| l.pos)))
            .sum();
        (prefix_cost, member_cost)
    }

    /// Runs every group from `input` (an error item passes through as that group's result) and
    /// calls `output` with each group's payload and result, in input order.
    pub fn run<P, I, F>(&mut self, input: I, mut output: F) -> Result<()>
    where
        I: IntoIterator<Item = (P, Result<Group>)>,
        F: FnMut(P, Result<Vec<Decisions>>) -> Result<()>,
    {
        let mut input = input.into_iter().peekable();
        let mut st = RunState {
            groups: BTreeMap::new(),
            finished: BTreeMap::new(),
            running: VecDeque::new(),
            next_index: 0,
            next_emit: 0,
            promised: 0,
        };
        loop {
            let mut progress = false;
            while st.next_index < st.next_emit + self.opts.window {
                match self.admit_next(&mut input, &mut st)? {
                    Admission::Admitted => progress = true,
                    Admission::Wait | Admission::NoInput => break,
                }
            }
            // Hand back what is done, in order.
            while let Some((payload, result)) = st.finished.remove(&st.next_emit) {
                output(payload, result)?;
                st.next_emit += 1;
                progress = true;
            }
            if st.running.is_empty() {
                if input.peek().is_none() && st.groups.is_empty() {
                    return Ok(());
                }
                // With nothing running, every admitted group has been handed back and the whole
                // cache but the root is free, so the next group fits: no progress is a bug.
                if !progress {
                    return Err(KpgError::InvalidArgument(
                        "selection scheduler stalled with nothing running".into(),
                    ));
                }
                continue;
            }
            self.step(&mut st.running, &mut st.groups, &mut st.promised)?;
            self.collect_finished(&mut st.groups, &mut st.finished);
        }
    }

    /// Takes the next input item if it can start now: a bad record or a group too big for the
    /// whole cache goes straight to `finished` with its error; a group that fits in the free
    /// blocks, less those promised to running groups, starts; otherwise it waits.
    fn admit_next<P, I>(
        &mut self,
        input: &mut std::iter::Peekable<I>,
        st: &mut RunState<P>,
    ) -> Result<Admission>
    where
        I: Iterator<Item = (P, Result<Group>)>,
    {
        let Some((_, item)) = input.peek() else {
            return Ok(Admission::NoInput);
        };
        let verdict = match item {
            Err(_) => None,
            Ok(g) => {
                let (prefix_cost, member_cost) = self.group_cost(g);
                let need = prefix_cost + member_cost;
                let capacity = self.cache.allocator().num_blocks() - self.root.blocks().len();
                if need > capacity {
                    Some(Err(KpgError::InvalidArgument(format!(
                        "the document needs {need} KV-cache blocks of {} tokens and the cache \
                         has {capacity}: raise --cache-tokens or --cache-mb",
                        self.cache.block_size()
                    ))))
                } else if need
                    > self
                        .cache
                        .allocator()
                        .num_free()
                        .saturating_sub(st.promised)
                {
                    return Ok(Admission::Wait);
                } else {
                    Some(Ok(member_cost))
                }
            }
        };
        let (payload, item) = input.next().expect("peeked");
        let index = st.next_index;
        st.next_index += 1;
        let (group, member_cost) = match (item, verdict) {
            (Err(e), _) | (Ok(_), Some(Err(e))) => {
                st.finished.insert(index, (payload, Err(e)));
                return Ok(Admission::Admitted);
            }
            (Ok(g), Some(Ok(cost))) => (g, cost),
            (Ok(_), None) => unreachable!("a group always gets a verdict"),
        };
        st.promised += member_cost;
        let n = group.members.len();
        let mut state = GroupState {
            payload,
            group,
            prefix_table: None,
            results: vec![None; n],
            remaining: n,
            promised: member_cost,
        };
        let mut table = if state.group.shares_root {
            self.cache.fork(&self.root)
        } else {
            BlockTable::default()
        };
        if state.group.prefix.is_empty() {
            state.prefix_table = Some(table);
            self.spawn_members(index, &mut state, &mut st.running, &mut st.promised)?;
        } else {
            self.cache.reserve(&mut table, state.group.prefix.len())?;
            st.running.push_back(Running {
                group: index,
                member: None,
                table,
                tokens: state.group.prefix.clone(),
                labels: Vec::new(),
                keep_rules: Vec::new(),
                cursor: 0,
                next_label: 0,
                end: state.group.prefix.len(),
            });
        }
        st.groups.insert(index, state);
        self.note_usage();
        self.collect_finished(&mut st.groups, &mut st.finished);
        Ok(Admission::Admitted)
    }

    /// Forks every member of a group from its completed prefix and reserves all its blocks.
    fn spawn_members<P>(
        &mut self,
        index: usize,
        state: &mut GroupState<P>,
        running: &mut VecDeque<Running>,
        promised: &mut usize,
    ) -> Result<()> {
        let parent = state.prefix_table.as_ref().expect("prefix computed");
        for (m, program) in state.group.members.iter().enumerate() {
            let end = program.labels.last().map_or(0, |l| l.pos);
            if end == 0 {
                state.results[m] = Some(Decisions {
                    selected: Vec::new(),
                    p_true: Vec::new(),
                });
                state.remaining -= 1;
                continue;
            }
            let mut table = self.cache.fork(parent);
            let cost = self.cache.blocks_needed(&table, end);
            self.cache.reserve(&mut table, end)?;
            *promised -= cost;
            state.promised -= cost;
            running.push_back(Running {
                group: index,
                member: Some(m),
                table,
                tokens: program.tokens.clone(),
                labels: program.labels.clone(),
                keep_rules: program.keep_rules.clone(),
                cursor: 0,
                next_label: 0,
                end,
            });
        }
        self.note_usage();
        Ok(())
    }

    /// Moves groups whose members are all done to `finished`, returning their blocks.
    fn collect_finished<P>(
        &mut self,
        groups: &mut BTreeMap<usize, GroupState<P>>,
        finished: &mut BTreeMap<usize, (P, Result<Vec<Decisions>>)>,
    ) {
        let done: Vec<usize> = groups
            .iter()
            .filter(|(_, g)| g.remaining == 0 && g.prefix_table.is_some())
            .map(|(&i, _)| i)
            .collect();
        for i in done {
            let mut g = groups.remove(&i).unwrap();
            debug_assert_eq!(g.promised, 0);
            if let Some(mut t) = g.prefix_table.take() {
                self.cache.release(&mut t);
            }
            let results = g.results.into_iter().map(|r| r.unwrap()).collect();
            finished.insert(i, (g.payload, Ok(results)));
        }
    }

    /// One forward pass over chunks of the running sequences, oldest first.
    fn step<P>(
        &mut self,
        running: &mut VecDeque<Running>,
        groups: &mut BTreeMap<usize, GroupState<P>>,
        promised: &mut usize,
    ) -> Result<()> {
        let mut budget = self.opts.max_batch_tokens;
        let mut plan: Vec<(usize, usize, bool)> = Vec::new(); // (running idx, chunk end, wants labels)
        for (i, seq) in running.iter().enumerate() {
            if budget == 0 || plan.len() == self.opts.max_batch_seqs {
                break;
            }
            let stop = seq.labels.get(seq.next_label).map_or(seq.end, |l| l.pos);
            let chunk_end = stop.min(seq.cursor + budget);
            budget -= chunk_end - seq.cursor;
            plan.push((
                i,
                chunk_end,
                chunk_end == stop && seq.next_label < seq.labels.len(),
            ));
        }
        let label_ids: Vec<[u32; 2]> = plan
            .iter()
            .map(|&(i, _, wants)| {
                if wants {
                    let seq = &running[i];
                    seq.labels[seq.next_label].ids
                } else {
                    [0, 0]
                }
            })
            .collect();
        let wanted: Vec<&[u32]> = plan
            .iter()
            .zip(&label_ids)
            .map(|(&(_, _, wants), ids)| if wants { &ids[..] } else { &[][..] })
            .collect();

        let logits = {
            let mut batch: Vec<SeqChunk> = Vec::with_capacity(plan.len());
            let mut next = plan.iter().peekable();
            for (i, seq) in running.iter_mut().enumerate() {
                match next.peek() {
                    Some(&&(pi, end, _)) if pi == i => {
                        batch.push(SeqChunk {
                            table: &mut seq.table,
                            tokens: &seq.tokens[seq.cursor..end],
                        });
                        next.next();
                    }
                    _ => {}
                }
            }
            self.stats.prompt_tokens += batch.iter().map(|c| c.tokens.len()).sum::<usize>();
            self.model
                .forward(
                    &mut self.cache,
                    &mut self.ws,
                    &mut batch,
                    LogitRows::LastAmong(&wanted),
                )?
                .to_vec()
        };
        self.stats.forward_passes += 1;
        self.note_usage();

        let mut read = 0;
        let mut done_prefixes = Vec::new();
        let mut retired = Vec::new();
        for &(i, end, wants) in &plan {
            let seq = &mut running[i];
            seq.cursor = end;
            if wants {
                let slot = seq.labels[seq.next_label];
                let (greedy, p) = decide(logits[read], logits[read + 1], slot.ids);
                let rule = seq.keep_rules.get(seq.next_label);
                let by_scheduler = || self.opts.keep_threshold.map_or(greedy, |t| p >= t);
                let yes = rule.map_or_else(by_scheduler, |r| r.keep(p, by_scheduler));
                read += 2;
                self.stats.choice_steps += 1;
                seq.tokens[slot.pos] = if yes { slot.ids[0] } else { slot.ids[1] };
                let state = groups.get_mut(&seq.group).expect("running group");
                let m = seq.member.expect("only members have labels");
                let entry = state.results[m].get_or_insert_with(|| Decisions {
                    selected: Vec::new(),
                    p_true: Vec::new(),
                });
                entry.selected.push(yes);
                entry.p_true.push(p);
                seq.next_label += 1;
                if seq.next_label == seq.labels.len() {
                    state.remaining -= 1;
                    retired.push(i);
                }
            } else if seq.member.is_none() && seq.cursor == seq.end {
                done_prefixes.push(i);
                retired.push(i);
            }
        }
        // Retire from the back so indices stay valid.
        retired.sort_unstable();
        for &i in retired.iter().rev() {
            let mut seq = running.remove(i).unwrap();
            if seq.member.is_none() {
                let state = groups.get_mut(&seq.group).unwrap();
                state.prefix_table = Some(std::mem::take(&mut seq.table));
                let index = seq.group;
                let mut state = groups.remove(&index).unwrap();
                self.spawn_members(index, &mut state, running, promised)?;
                groups.insert(index, state);
            } else {
                self.cache.release(&mut seq.table);
            }
        }
        Ok(())
    }
}
