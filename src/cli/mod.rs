//! The `kpg` command line: argument definitions and dispatch. Each subcommand turns its raw
//! arguments into a validated config before doing any work.

mod bench;
mod debug;
pub(crate) mod debug_ot;
mod eval;
mod generate;
mod job;
mod lines;
mod output_lock;
mod plural;
mod progress;
mod ranker;
mod resume;
mod select;
mod selector_data;
mod selftest;
mod synth;
mod tag;
mod train;
mod train_selector;

pub use progress::ProgressMode;
pub use resume::Shard;
pub use tag::DEFAULT_GENERATOR;

pub use eval::EvalArgs;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{KpgError, Result};
use crate::kv_cache::DEFAULT_BLOCK_SIZE;

#[derive(Parser, Debug)]
#[command(
    name = "kpg",
    version,
    about = "Keyphrase generation: a One2Set generator and an LLM selector"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How a GGUF model's quantized weights are held: in their blocks (resident memory about the
    /// file's size; integer dot products as llama.cpp does) or dequantized to f32 at load (exact
    /// against an f32 reference; four to eight times the memory).
    #[arg(long, global = true, value_enum, default_value = "quantized")]
    pub gguf_weights: crate::gguf::llama::WeightMode,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a model or an algorithm from outside: logits, greedy continuations, target
    /// assignments, as JSON.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Write a random-weight model in the Hugging Face layout (tests, benchmarks).
    Synth(SynthArgs),
    /// Score predicted keyphrases against gold ones, the One2Set way (P, R, F1 @5 and @M).
    ///
    /// Prints `{"documents", "present": {"P@5", "R@5", "F1@5", "P@M", "R@M", "F1@M"}, "absent":
    /// {...}, "dup_token_ratio"}` on stdout, or with --table a table instead. The protocol is
    /// One2Set's: tokens lowercased and Porter-stemmed as NLTK does; empty predictions and those
    /// with a `,`, `.` or `<unk>` token dropped, then duplicates after stemming; duplicate gold
    /// dropped; a phrase is present when it occurs in the title and abstract, and present and
    /// absent phrases are scored apart. @5 divides by 5 even with fewer predictions; P and R are
    /// averaged over documents and F1 is their harmonic mean. Exit status 0, or 2 with a one-line
    /// error (an id on one side only, a malformed line, a missing file).
    Eval(EvalArgs),
    /// Generate candidate keyphrases with a One2Set generator (JSON lines in, JSON lines out).
    ///
    /// Input lines `{"id", "title", "abstract"}` (a .gz file is read as such); output lines
    /// `{"id", "candidates": [{"phrase", "score", "slot", "present"}]}` in input order, sorted by
    /// confidence, or `{"id", "error"}` in place for a bad record (exit status 1).
    Generate(GenerateKeyphrasesArgs),
    /// Build a generator's word vocabulary (`tokenizer.json`) from JSON-lines corpora.
    ///
    /// The seven special tokens first, then the words of titles, abstracts and keyphrases (kpg's
    /// preprocessing) by descending frequency, ties in order of first appearance.
    Vocab(VocabArgs),
    /// Select keyphrases among candidates with an LLM selector (JSON lines in, JSON lines out).
    Select(SelectArgs),
    /// Tag documents with keyphrases: a ranked candidate pool, then a selector or the ranker's cut
    /// (JSON lines in, JSON lines out).
    ///
    /// Input lines `{"id", "title", "abstract"}` (stdin or a file, .gz allowed); output lines
    /// `{"id", "keyphrases", "present", "absent", "candidates": [{"phrase", "score", "present",
    /// "source", "selected", "p_true"}]}` in input order, one per input record, with `"warnings"`
    /// when a document was cut to the models' length, or `{"id", "error"}` in place for a bad
    /// record (exit status 1). The pool is the generator's, the extractor's and retrieved
    /// candidates ranked by the ranker (default models/ranker); without --selector the ranker's
    /// cut gives the keyphrases (and there is no `p_true`). With --no-ranker the candidates are
    /// the generator's and, without a selector, those at or above --threshold are kept.
    Tag(TagArgs),
    /// Throughput benchmarks; one JSON line of figures on stdout.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train a model: `kpg train generator`, `kpg train selector`.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Label the candidates of `kpg tag` output against gold keyphrases (stemmed match, as
    /// `kpg eval` matches): the training records of `kpg train selector`.
    SelectorData(selector_data::SelectorDataArgs),
    /// Build what a ranker directory holds: `kpg ranker tables`, `kpg ranker features`.
    #[command(subcommand)]
    Ranker(ranker::RankerCommand),
    /// Hold every CUDA kernel, then whole models, to the CPU reference on random inputs; prints a
    /// table of worst errors and exits 1 when any check fails.
    Selftest(selftest::SelftestArgs),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The selector on synthetic documents: documents/s, prompt tokens/s, choice steps/s.
    Select(BenchSelectArgs),
    /// The One2Set generator on synthetic (or given) documents: documents/s, slots/s.
    Generate(BenchGenerateArgs),
    /// Generator training on real documents: examples/s and one step's time by phase.
    Train(bench::train::BenchTrainArgs),
    /// Training's target assignment (OT or Hungarian) on random score matrices: problems/s.
    Ot(BenchOtArgs),
    /// The whole pipeline through the library API: throughput, and the latency of one document
    /// per call (p50, p99), alone and with concurrent callers.
    Tag(BenchTagArgs),
    /// One LLaMA prefill pass over a batch of prompts: tokens/s and TFLOP/s.
    Prefill(bench::prefill::BenchPrefillArgs),
    /// The GPU's ceilings, measured: device-to-device copy GB/s and bf16 cuBLAS GEMM TFLOP/s.
    Ceilings(bench::prefill::BenchCeilingsArgs),
    /// The paged attention kernels (decode or prefill) against the device-to-device copy
    /// ceiling, with CUDA events: seconds, GB/s of keys and values, share of copy bandwidth.
    Attention(bench::attention::BenchAttentionArgs),
}

/// Which target assignment to run.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignMethodArg {
    /// Optimal transport with dynamic supplies (the EMNLP 2024 paper's).
    Ot,
    /// The original One2Set's Hungarian matching.
    Hungarian,
}

impl From<AssignMethodArg> for crate::assign::Method {
    fn from(m: AssignMethodArg) -> Self {
        match m {
            AssignMethodArg::Ot => crate::assign::Method::Ot,
            AssignMethodArg::Hungarian => crate::assign::Method::Hungarian,
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchOtArgs {
    /// Number of random problems (document halves).
    #[arg(long, default_value_t = 4096)]
    pub problems: usize,
    /// Most target rows a problem has, the null row counted (a training batch holds N/2 + 1 per
    /// half).
    ///
    /// Each problem draws its real keyphrases uniformly from 0 to min(--targets - 1, --slots) and
    /// adds the null row when they are fewer than --slots, so no problem has more rows than slots.
    #[arg(long, default_value_t = 11)]
    pub targets: usize,
    /// Slots per problem (N/2 control codes).
    #[arg(long, default_value_t = 10)]
    pub slots: usize,
    /// Assignment method.
    #[arg(long, value_enum, default_value = "ot")]
    pub method: AssignMethodArg,
    /// Seed of the random problems: the same seed gives the same problems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Timed runs; the figures are those of the fastest.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Write the problems here in `kpg debug ot`'s input format, for tools/peer_ot.py.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Where to solve: `cpu` (rayon threads) or `cuda` (one launch per batch, OT only).
    ///
    /// With `cuda`, the figure is the median kernel time of --repeats runs (CUDA events, after a
    /// warm-up), besides the time with host-device transfers, and the share of the memory-bound
    /// floor (bytes in and out at the bandwidth of a large device-to-device copy in the same run).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Generator directory (default: models/generator, when run from the repository root).
    #[arg(long)]
    pub generator: Option<PathBuf>,
    #[command(flatten)]
    pub ranker: RankerArgs,
    /// Selector directory (a LLaMA selector, as for `kpg select`; default: models/selector when
    /// it exists and its base model has been fetched). Without one, the ranker's cut of the pool
    /// (or without a ranker, the generator's candidates at or above --threshold) are the
    /// keyphrases.
    #[arg(long)]
    pub selector: Option<PathBuf>,
    /// No selector, not even the default one: the ranker's cut gives the keyphrases.
    #[arg(long, conflicts_with = "selector")]
    pub no_selector: bool,
    /// A LoRA adapter for the selector (needs --selector): a peft directory (adapter_config.json,
    /// adapter_model.safetensors).
    #[arg(long, requires = "selector")]
    pub adapter: Option<PathBuf>,
    /// Input JSON lines `{"id", "title", "abstract"}` (default: stdin; .gz is decompressed).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout). Written and flushed a batch at a time.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Finish an interrupted run (even one killed with kill -9): keep the complete lines of
    /// --output, cut a torn last line, skip as many input records and append the rest. Run the
    /// same command again with --resume.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Tag only shard I of N (0 <= I < N): the input records whose 0-based index, counting
    /// non-blank lines, is I modulo N. N workers with the same input cover it exactly once.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Without a ranker (--no-ranker) and without --selector: the generator confidence (mean token
    /// probability) a candidate needs to be a keyphrase.
    #[arg(
        long,
        default_value_t = crate::pipeline::DEFAULT_THRESHOLD,
        conflicts_with = "selector",
        requires = "no_ranker"
    )]
    pub threshold: f64,
    /// Documents per batch: the generator decodes them together and the selector takes them at
    /// once; memory holds a few batches.
    #[arg(long, default_value_t = 32)]
    pub batch_docs: usize,
    /// Progress on stderr: a bar (with documents/s and ETA) on a terminal, plain lines every few
    /// seconds otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Which ranker ranks the candidate pool.
#[derive(Args, Debug)]
pub struct RankerArgs {
    /// Ranker directory: the extractor's phrase table and the trees that rank the pool of
    /// extracted and generated candidates (default: models/ranker, when it exists here).
    #[arg(long, conflicts_with = "no_ranker")]
    pub ranker: Option<PathBuf>,
    /// No ranker: the candidates are the generator's alone, ranked by its confidence.
    #[arg(long)]
    pub no_ranker: bool,
}

impl RankerArgs {
    /// `--ranker`, else `models/ranker` when it exists, else none (with a note on stderr).
    pub fn ranker_dir(&self) -> Option<PathBuf> {
        if self.no_ranker {
            return None;
        }
        if let Some(dir) = &self.ranker {
            return Some(dir.clone());
        }
        let default = PathBuf::from(crate::rank::DEFAULT_RANKER);
        if default.is_dir() {
            return Some(default);
        }
        eprintln!(
            "kpg: no ranker ({} does not exist here): the candidates are the generator's alone; \
             pass --ranker DIR, or --no-ranker to silence this",
            crate::rank::DEFAULT_RANKER
        );
        None
    }
}

#[derive(Args, Debug)]
pub struct BenchTagArgs {
    /// Generator directory.
    #[arg(long)]
    pub generator: PathBuf,
    #[command(flatten)]
    pub ranker: RankerArgs,
    /// Selector directory (optional, as for `kpg tag`).
    #[arg(long)]
    pub selector: Option<PathBuf>,
    #[command(flatten)]
    pub documents: BenchDocumentsArgs,
    /// Documents per batch, as for `kpg tag`.
    #[arg(long, default_value_t = 32)]
    pub batch_docs: usize,
    /// Concurrent callers for the concurrent-latency run (one document per call each).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// The documents a generator benchmark runs on: synthetic ones, or the first of a file.
#[derive(Args, Debug)]
pub struct BenchDocumentsArgs {
    /// Number of documents (synthetic unless --input).
    #[arg(long, default_value_t = 64)]
    pub docs: usize,
    /// Words per synthetic abstract.
    #[arg(long, default_value_t = 150)]
    pub words: usize,
    /// Benchmark these documents (JSON lines `{"id", "title", "abstract"}`, .gz allowed) instead
    /// of synthetic ones; --docs caps how many are read.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    /// Generator directory.
    #[arg(long)]
    pub generator: PathBuf,
    #[command(flatten)]
    pub documents: BenchDocumentsArgs,
    /// Documents decoded together.
    #[arg(long, default_value_t = 32)]
    pub batch_docs: usize,
    /// Timed runs; the figures are those of the fastest.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Write the documents (with their source tokens) and kpg's candidates here, as JSON lines,
    /// for the PyTorch peer (tools/peer_generate.py).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Where to decode: `cpu` (the f32 reference) or `cuda` (bf16 on the GPU; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal, with --device cuda.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct GenerateKeyphrasesArgs {
    /// Generator directory: config.json ("architecture": "one2set"), model.safetensors,
    /// tokenizer.json.
    #[arg(long)]
    pub generator: PathBuf,
    /// Input JSON lines `{"id", "title", "abstract"}` (default: stdin; .gz is decompressed).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Documents decoded together: more use the matrix units better, and cost more memory.
    #[arg(long, default_value_t = 32)]
    pub batch_docs: usize,
    /// Where to decode: `cpu` (the f32 reference) or `cuda` (bf16 on the GPU; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal, with --device cuda.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct VocabArgs {
    /// Corpora as JSON lines `{"title", "abstract", "keyphrases"}` (the shared data format; .gz
    /// allowed).
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Entries in all, the seven special tokens included (One2Set uses 50,000).
    #[arg(long, default_value_t = 50_000)]
    pub size: usize,
    /// Output directory; tokenizer.json is written there.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchSelectArgs {
    /// Selector directory.
    #[arg(long)]
    pub selector: PathBuf,
    /// A LoRA adapter for the selector: a peft directory (adapter_config.json,
    /// adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Number of synthetic documents.
    #[arg(long, default_value_t = 64)]
    pub docs: usize,
    /// Candidates per document.
    #[arg(long, default_value_t = 10)]
    pub candidates: usize,
    /// Words per synthetic abstract.
    #[arg(long, default_value_t = 120)]
    pub words: usize,
    /// Write the token programs and kpg's decisions here, for tools/peer_select.py.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Where the model runs: `cpu` (f32) or `cuda` (bf16 on the GPU that --gpu names; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    #[command(flatten)]
    pub select: BenchSelectOptions,
}

/// Selection options the benchmark shares with `kpg select`.
#[derive(Args, Debug)]
pub struct BenchSelectOptions {
    /// Benchmark the rerank baseline instead of sequence labelling.
    #[arg(long)]
    pub rerank: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// KV-cache and batching limits of the selection scheduler.
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// KV-cache capacity in tokens (default: 2 GiB worth on the CPU, --gpu-cache-share on CUDA).
    #[arg(long, conflicts_with_all = ["cache_mb", "gpu_cache_share"])]
    pub cache_tokens: Option<usize>,
    /// KV-cache capacity in MiB.
    #[arg(long, conflicts_with = "gpu_cache_share")]
    pub cache_mb: Option<usize>,
    /// With --device cuda: the share of the GPU memory free after loading the weights that the
    /// KV cache takes (default 0.8; the rest is left for activations and cuBLAS workspaces).
    #[arg(long)]
    pub gpu_cache_share: Option<f64>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
    pub block_size: usize,
    /// Most tokens per forward pass (prefill chunks and choice steps of all documents together).
    #[arg(long, default_value_t = 1024)]
    pub max_batch_tokens: usize,
    /// Compute the shared instruction prefix for every document instead of once.
    #[arg(long)]
    pub no_prefix_sharing: bool,
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// Selector directory: a Hugging Face LLaMA directory with tokenizer.json and, optionally,
    /// kpg_selector.json (the prompt template; the documented default otherwise).
    #[arg(long)]
    pub selector: PathBuf,
    /// A LoRA adapter for the selector: a peft directory (adapter_config.json,
    /// adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Input JSON lines `{"id", "title", "abstract", "candidates": [{"phrase", "score"}]}`
    /// (default: stdin).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Show candidates in the given order instead of by descending score.
    #[arg(long)]
    pub keep_order: bool,
    /// The baseline: score each candidate on its own and keep those with P(true) >= --threshold
    /// (or the --top-k most likely).
    #[arg(long)]
    pub rerank: bool,
    /// Rerank: the P(true) a candidate needs to be kept.
    #[arg(long, default_value_t = 0.5, requires = "rerank")]
    pub threshold: f32,
    /// Rerank: keep this many candidates, the most likely, instead of a threshold.
    #[arg(long, requires = "rerank")]
    pub top_k: Option<usize>,
    /// Where the model runs: `cpu` (f32) or `cuda` (bf16 on the GPU that --gpu names; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print `{"logits": [[...], ...]}`: one row of vocabulary logits per input position.
    Logits(LogitsArgs),
    /// Print `{"ids": [...]}`: the new tokens of a greedy continuation, decoded token by token.
    Generate(GenerateArgs),
    /// Load a model and print what loading cost: wall time and resident memory added (JSON).
    Load(LoadArgs),
    /// Solve training's target-assignment problems from a JSON file and print the results (in
    /// f64, on the CPU and on the GPU alike).
    ///
    /// Input `{"tau", "top_k", "eps", "iters", "problems": [{"score": [[...]], "has_null"}]}`
    /// (the parameters are optional: 10, 3, 1e-3, 100), each score `[targets][slots]`, the null
    /// target last when `has_null`. Prints `{"results": [{"supply", "plan", "assign"}]}`, or
    /// `{"results": [{"assign"}]}` with --method hungarian.
    Ot(DebugOtArgs),
    /// Read a GGUF file's header and print it as JSON: version, metadata (arrays shortened to
    /// their first items and length) and every tensor's type, shape, offset and size.
    Gguf(LoadArgs),
    /// Print `{"ids": [...]}`: the model's token ids for a text, special tokens (BOS) included as
    /// the model adds them. The model is a directory with tokenizer.json or a GGUF file.
    Tokenize(TokenizeArgs),
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// A model directory (its tokenizer.json) or a GGUF file (its tokenizer metadata).
    #[arg(long)]
    pub model: PathBuf,
    /// The text to encode.
    #[arg(long)]
    pub text: String,
}

#[derive(Args, Debug)]
pub struct DebugOtArgs {
    /// JSON file of problems.
    #[arg(long)]
    pub input: PathBuf,
    /// Assignment method.
    #[arg(long, value_enum, default_value = "ot")]
    pub method: AssignMethodArg,
    /// Where to solve: `cpu` or `cuda` (OT only; the same output, from kernels/sinkhorn.cu).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
}

/// What both debug commands take: a model and its input.
#[derive(Args, Debug)]
pub struct ModelInput {
    /// Model: a Hugging Face directory (config.json, *.safetensors, optional tokenizer.json) or a
    /// GGUF file (weights kept in their blocks, or dequantized with `--gguf-weights f32`).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter for the model: a peft directory (adapter_config.json,
    /// adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Input token ids, comma separated (for example `1,5,9`).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "text",
        conflicts_with = "text"
    )]
    pub ids: Option<Vec<u32>>,
    /// Input text, encoded with the model's tokenizer.json (instead of --ids).
    #[arg(long)]
    pub text: Option<String>,
    /// Tokens per prefill step: longer inputs go through the KV cache in chunks of this size.
    #[arg(long, default_value_t = 512)]
    pub chunk: usize,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
    pub block_size: usize,
    /// Where the model runs: `cpu` (f32) or `cuda` (bf16 on the GPU that --gpu names; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::backend::DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub input: ModelInput,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub input: ModelInput,
    /// Most new tokens to generate.
    #[arg(long)]
    pub max_new_tokens: usize,
    /// Keep going after an end-of-sequence token (by default generation stops after one, as
    /// transformers' generate does).
    #[arg(long)]
    pub ignore_eos: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    One2set,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Model architecture.
    #[arg(long, value_enum, default_value = "llama")]
    pub arch: Arch,
    /// Size preset. llama: tiny (a few MB), small (about 60M parameters), llama2-7b, llama3-8b;
    /// one2set: tiny (a few hundred KB), small (3+3 layers, d_model 256, 20,000 words), base (6+6
    /// layers, d_model 512, 50,000 words).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// one2set: take the vocabulary from this tokenizer.json (e.g. from `kpg vocab`); its size
    /// replaces the preset's.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Storage dtype of the weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Seed: the same seed gives the same weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the command and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    crate::gguf::llama::set_weight_mode(cli.gguf_weights);
    match cli.command {
        Command::Debug(DebugCommand::Logits(args)) => debug::logits(args),
        Command::Debug(DebugCommand::Generate(args)) => debug::generate(args),
        Command::Debug(DebugCommand::Load(args)) => debug::load_cost(args),
        Command::Debug(DebugCommand::Gguf(args)) => debug::gguf_header(args),
        Command::Debug(DebugCommand::Tokenize(args)) => debug::tokenize(args),
        Command::Debug(DebugCommand::Ot(args)) => debug_ot::debug_ot(args),
        Command::Synth(args) => synth::synth(args),
        Command::Select(args) => select::select(args),
        Command::Generate(args) => generate::generate(args),
        Command::Vocab(args) => generate::vocab(args),
        Command::Bench(cmd) => bench::bench(cmd),
        Command::Eval(args) => eval::eval(args),
        Command::Train(cmd) => train::run(cmd),
        Command::SelectorData(args) => selector_data::run(args),
        Command::Ranker(cmd) => ranker::run(cmd),
        Command::Tag(args) => tag::tag(args),
        Command::Selftest(args) => selftest::selftest(args),
    }
}

/// Writes a line to stdout; a closed pipe (`kpg ... | head`) is not an error.
pub(crate) fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(KpgError::io("<stdout>", e)),
    }
}
