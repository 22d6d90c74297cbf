//! The selector: an LLM as a sequence labeller over the generator's candidates (the paper's
//! "LLM as selector"): one True/False decision per candidate, written in one autoregressive
//! sequence so that each decision sees the earlier ones. Decoding is a fixed program of forced text
//! and two-way label choices (`program`), run for many documents at once over the paged KV cache
//! (`scheduler`).

pub mod chat;
pub mod config;
pub mod document;
pub mod program;
pub mod run;
pub mod scheduler;
pub mod train;

use std::path::Path;

use config::{ChatMode, SelectorConfig};
use document::{Candidate, ScoredCandidate, SelectDocument, Selection};
use program::{rerank_program, rerank_prompt, selection_program, Program};
use scheduler::{Decisions, Group, SchedulerOptions};

use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::model::llama::{Llama, LoadOptions};
use crate::tokenizer::Tokenizer;

/// In which order the candidates are shown (the paper's S-infer sorts by confidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateOrder {
    /// By generator confidence, highest first (stable for ties).
    Confidence,
    /// As given (building training data with a random order).
    Given,
}

/// How candidates are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SelectMode {
    /// One sequence per document, one decision per candidate, each seeing the earlier ones.
    Sequence,
    /// The baseline: each candidate scored on its own; keep those with P(true) at or above
    /// `threshold`, or the `top_k` most likely when given.
    Rerank {
        threshold: f32,
        top_k: Option<usize>,
    },
}

/// A selector directory loaded: the LLaMA model, its tokenizer and the template.
pub struct Selector {
    pub model: Llama,
    pub config: SelectorConfig,
    root: Vec<u32>,
    /// The most bytes of document and candidates that can fit the context: above it a record is
    /// refused (or, in `kpg tag`, cut) before it is tokenised, so that memory and time are bounded
    /// by the context and not by the input. Twice the context times the longest token, the margin
    /// for normalizers that shrink text.
    max_text_bytes: usize,
}

/// How many leading items `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The tokens of `instruction` that stay the same whatever follows it: a tokenizer may merge its
/// last characters with the next segment's first (SmolLM2's merges a final "\n\n" into one
/// token, which splits again before text), so the instruction is tokenised alone and followed by
/// a few usual beginnings, and only the tokens common to all are the shared root. A document
/// whose prompt still does not start with the root simply does not share it.
fn stable_prefix(tok: &Tokenizer, instruction: &str) -> Result<Vec<u32>> {
    let alone = tok.encode(instruction, true)?;
    let mut shared = alone.len();
    for next in ["Title", "title", "A", "a", " ", "\n", "1", "\"", "("] {
        let with = tok.encode(&format!("{instruction}{next}"), true)?;
        shared = shared.min(common_prefix(&alone, &with));
    }
    Ok(alone[..shared].to_vec())
}

/// Most candidates a rerank record may have: each is a query of its own, tokenised with the whole
/// document, so the work grows with candidates times document.
pub const MAX_RERANK_CANDIDATES: usize = 1024;

impl Selector {
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, DeviceKind::Cpu)
    }

    /// Loads the selector with its model on `device` (`Llama::load_on`).
    pub fn load_on(dir: &Path, device: DeviceKind) -> Result<Self> {
        Self::load_with(
            dir,
            &LoadOptions {
                device,
                ..LoadOptions::default()
            },
        )
    }

    /// As [`Selector::load_on`], on the GPU and with the adapter that `opts` name.
    pub fn load_with(dir: &Path, opts: &LoadOptions<'_>) -> Result<Self> {
        let config = SelectorConfig::from_dir(dir)?;
        let model = match &config.base_model {
            // A trained selector: a template and an adapter over a base model kept elsewhere.
            Some(base) => {
                let base = dir.join(base);
                if !base.exists() {
                    return Err(KpgError::config(
                        dir.join(config::SELECTOR_FILE),
                        "base_model",
                        format!(
                            "{} does not exist (for the default selector, \
                             tools/fetch-models.sh fetches it)",
                            base.display()
                        ),
                    ));
                }
                let own_adapter = dir.join("adapter_config.json").exists().then_some(dir);
                let opts = LoadOptions {
                    adapter: opts.adapter.or(own_adapter),
                    ..*opts
                };
                Llama::load_with(&base, &opts)?
            }
            None => Llama::load_with(dir, opts)?,
        };
        Self::from_model(model, config, dir)
    }

    /// A selector of a loaded model with the template `config` (`dir` names the selector in
    /// messages): the chat template is applied as `config.chat_template` says, and the template
    /// is checked against the tokenizer.
    pub fn from_model(model: Llama, mut config: SelectorConfig, dir: &Path) -> Result<Self> {
        config.chat = match (config.chat_template, &model.chat_template) {
            (ChatMode::Off, _) | (ChatMode::Auto, None) => None,
            (ChatMode::On, Some(template)) => {
                Some(template.wrap().map_err(|e| KpgError::Tokenizer {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                })?)
            }
            // Asked for nothing in particular: a template that cannot wrap one user message
            // (one that demands a system turn first, say) leaves the prompt plain, with a note.
            (ChatMode::Auto, Some(template)) => match template.wrap() {
                Ok(wrap) => Some(wrap),
                Err(e) => {
                    eprintln!(
                        "kpg: {}: {e}; the selector prompt is used without it (set \
                         \"chat_template\" in kpg_selector.json to silence this)",
                        dir.display()
                    );
                    None
                }
            },
            (ChatMode::On, None) => {
                return Err(KpgError::config(
                    dir.join(config::SELECTOR_FILE),
                    "chat_template",
                    "is \"on\", but the model has no chat template (tokenizer_config.json's \
                     `chat_template`, chat_template.jinja, or GGUF `tokenizer.chat_template`)",
                ))
            }
        };
        let tok = model
            .tokenizer
            .as_ref()
            .ok_or_else(|| KpgError::MissingFile {
                path: dir.join("tokenizer.json"),
            })?;
        program::check_template(&config, tok).map_err(|e| KpgError::Tokenizer {
            path: tok.path().to_path_buf(),
            reason: format!("cannot run the selection template: {e}"),
        })?;
        let root = stable_prefix(tok, &config.prompt_start())?;
        let max_text_bytes = model
            .config
            .max_position_embeddings
            .saturating_mul(tok.longest_token_bytes())
            .saturating_mul(2);
        Ok(Selector {
            model,
            config,
            root,
            max_text_bytes,
        })
    }

    /// `opts` with the template's decision rule (`keep_threshold`).
    pub fn scheduler_options(&self, opts: &SchedulerOptions) -> SchedulerOptions {
        SchedulerOptions {
            keep_threshold: self.config.keep_threshold.or(opts.keep_threshold),
            ..opts.clone()
        }
    }

    /// Bytes of title and abstract a record may have beside its candidates (all of them in one
    /// sequence; the longest alone in a rerank query); see [`Selector::check_size`].
    pub fn max_text_bytes(&self, doc: &SelectDocument, mode: SelectMode) -> usize {
        let phrases: usize = match mode {
            SelectMode::Sequence => doc.candidates.iter().map(|c| c.phrase.len()).sum(),
            SelectMode::Rerank { .. } => doc
                .candidates
                .iter()
                .map(|c| c.phrase.len())
                .max()
                .unwrap_or(0),
        };
        self.max_text_bytes.saturating_sub(phrases)
    }

    /// Refuses, in time linear in the record's size and before any tokenising, a record that
    /// cannot fit the context: too many candidates (each takes at least a phrase token and a label
    /// token) or too many bytes.
    pub fn check_size(&self, doc: &SelectDocument, mode: SelectMode) -> Result<()> {
        let limit = self.model.config.max_position_embeddings;
        let n = doc.candidates.len();
        match mode {
            SelectMode::Sequence if n.saturating_mul(2) > limit => {
                return Err(KpgError::InvalidArgument(format!(
                    "{n} candidates need at least {} tokens, more than the selector's context of \
                     {limit}",
                    n.saturating_mul(2)
                )))
            }
            SelectMode::Rerank { .. } if n > MAX_RERANK_CANDIDATES => {
                return Err(KpgError::InvalidArgument(format!(
                    "{n} candidates: --rerank scores at most {MAX_RERANK_CANDIDATES} per document \
                     (each is a query with the whole document)"
                )))
            }
            _ => {}
        }
        let bytes = doc.title.len() + doc.abstract_.len();
        let most = self.max_text_bytes(doc, mode);
        if bytes > most {
            return Err(KpgError::InvalidArgument(format!(
                "the title and abstract are {bytes} bytes; with these candidates at most {most} \
                 can fit the selector's context of {limit} tokens: cut the document"
            )));
        }
        Ok(())
    }

    fn tokenizer(&self) -> &Tokenizer {
        self.model.tokenizer.as_ref().expect("checked at load")
    }

    /// The instruction's tokens, shared by every prompt.
    pub fn root_tokens(&self) -> &[u32] {
        &self.root
    }

    /// Candidate indices in presentation order.
    pub fn presentation_order(candidates: &[Candidate], order: CandidateOrder) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..candidates.len()).collect();
        if order == CandidateOrder::Confidence {
            idx.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
        }
        idx
    }

    /// Splits a whole-sequence program into the part after `skip` tokens (which it must start with).
    fn after(program: Program, skip: &[u32]) -> Option<Program> {
        if !program.tokens.starts_with(skip) || program.labels.iter().any(|l| l.pos <= skip.len()) {
            return None;
        }
        let n = skip.len();
        Some(Program {
            tokens: program.tokens[n..].to_vec(),
            labels: program
                .labels
                .into_iter()
                .map(|mut l| {
                    l.pos -= n;
                    l
                })
                .collect(),
            keep_rules: program.keep_rules,
        })
    }

    /// The scheduler's work for one document, and the presentation order it used.
    pub fn group(
        &self,
        doc: &SelectDocument,
        order: CandidateOrder,
        mode: SelectMode,
        share_prefix: bool,
    ) -> Result<(Vec<usize>, Group)> {
        self.check_size(doc, mode)?;
        let mut order = Self::presentation_order(&doc.candidates, order);
        if let Some(n) = self.config.max_candidates.filter(|&n| n < order.len()) {
            let top = Self::presentation_order(&doc.candidates, CandidateOrder::Confidence);
            let shown: std::collections::HashSet<usize> = top[..n].iter().copied().collect();
            order.retain(|i| shown.contains(i));
        }
        let phrases: Vec<&str> = order
            .iter()
            .map(|&i| doc.candidates[i].phrase.as_str())
            .collect();
        let tok = self.tokenizer();
        let root: &[u32] = if share_prefix { &self.root } else { &[] };
        match mode {
            SelectMode::Sequence => {
                let p = selection_program(&self.config, tok, &doc.title, &doc.abstract_, &phrases)?;
                let (shares_root, member) = match Self::after(p.clone(), root) {
                    Some(m) if !root.is_empty() => (true, m),
                    _ => (false, p),
                };
                Ok((
                    order,
                    Group {
                        shares_root,
                        prefix: Vec::new(),
                        members: vec![member],
                    },
                ))
            }
            SelectMode::Rerank { .. } => {
                let prompt = rerank_prompt(&self.config, &doc.title, &doc.abstract_);
                let prompt_tokens = tok.encode(&prompt, true)?;
                let programs = phrases
                    .iter()
                    .enumerate()
                    .map(|(n, phrase)| rerank_program(&self.config, tok, &prompt, n + 1, phrase))
                    .collect::<Result<Vec<Program>>>()?;
                // The shared prefix is what the document prompt and every query tokenise to
                // alike: a tokenizer may merge the prompt's last characters with a query's first
                // ("\n\n" then "Is" in SmolLM2's), so the prompt's own tokens are not enough.
                let mut shared = prompt_tokens.len();
                for p in &programs {
                    let first_label = p.labels.first().map_or(p.tokens.len(), |l| l.pos);
                    shared = shared
                        .min(common_prefix(&prompt_tokens, &p.tokens))
                        .min(first_label.saturating_sub(1));
                }
                let prompt_tokens = &prompt_tokens[..shared];
                let shares_root = !root.is_empty() && prompt_tokens.starts_with(root);
                let skip = if shares_root { root.len() } else { 0 };
                let prefix = prompt_tokens[skip..].to_vec();
                let mut members = Vec::with_capacity(phrases.len());
                for (n, p) in programs.into_iter().enumerate() {
                    let m = Self::after(p, prompt_tokens).ok_or_else(|| {
                        KpgError::InvalidArgument(format!(
                            "candidate {}: the rerank query's label lies inside the document \
                             prompt",
                            n + 1
                        ))
                    })?;
                    members.push(m);
                }
                Ok((
                    order,
                    Group {
                        shares_root,
                        prefix,
                        members,
                    },
                ))
            }
        }
    }

    /// Turns the scheduler's decisions back into the output record.
    pub fn selection(
        doc: &SelectDocument,
        order: &[usize],
        mode: SelectMode,
        decisions: &[Decisions],
    ) -> Selection {
        let (selected, p_true): (Vec<bool>, Vec<f32>) = match mode {
            SelectMode::Sequence => {
                let d = &decisions[0];
                (d.selected.clone(), d.p_true.clone())
            }
            SelectMode::Rerank { threshold, top_k } => {
                let p: Vec<f32> = decisions.iter().map(|d| d.p_true[0]).collect();
                let keep = match top_k {
                    Some(k) => {
                        let mut by_p: Vec<usize> = (0..p.len()).collect();
                        by_p.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                        let mut keep = vec![false; p.len()];
                        for &i in by_p.iter().take(k) {
                            keep[i] = true;
                        }
                        keep
                    }
                    None => p.iter().map(|&x| x >= threshold).collect(),
                };
                (keep, p)
            }
        };
        let candidates: Vec<ScoredCandidate> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| ScoredCandidate {
                phrase: doc.candidates[i].phrase.clone(),
                score: doc.candidates[i].score,
                selected: selected[k],
                p_true: p_true[k],
            })
            .collect();
        Selection {
            id: doc.id.clone(),
            keyphrases: candidates
                .iter()
                .filter(|c| c.selected)
                .map(|c| c.phrase.clone())
                .collect(),
            candidates,
        }
    }
}
