//! Target assignment for training the One2Set generator: which target (keyphrase or the null
//! target) each control-code slot learns in a training step.
//!
//! - [`ot`]: the optimal-transport assignment with dynamic supplies of "One2Set + Large Language
//!   Model: Best Partners for Keyphrase Generation" (EMNLP 2024), as DESIGN.md describes it and the
//!   authors' code (DeepLearnXMU/KPG-SetLLM, `OTA_One2Set/pykp/utils/label_assign.py`) does it.
//! - [`hungarian`]: the K-step Hungarian matching of the original One2Set (Ye et al., ACL 2021;
//!   jiacheng-ye/kg_one2set, `pykp/utils/label_assign.py`), kept as the baseline.
//!
//! A [`Problem`] is one document half: a score matrix `[targets, slots]` (the K-step sums of each
//! slot's predicted probability of each target's tokens) and whether its last row is the null
//! target. [`assign_batch`] (or the typed [`ot_batch`] / [`hungarian_batch`]) checks every problem
//! first, then solves them on rayon's threads with one workspace per thread; f64 throughout.
//!
//! `tools/ot_reference.py` is an independent NumPy/SciPy implementation that the tests hold this
//! module to (`tests/fixtures/ot/`).

pub mod hungarian;
pub mod ot;
pub mod random;

use rayon::prelude::*;

use crate::error::{KpgError, Result};

pub use hungarian::{hungarian_assign, linear_sum_assignment_max, HungarianWorkspace};
pub use ot::{ot_assign, OtParams, OtResult, OtWorkspace};

/// One assignment problem: a document half's targets against its slots.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// Matching scores, row-major: `score[i * slots + j]` is how well slot `j` predicts target `i`,
    /// summed over the K assignment steps. Finite and non-negative.
    pub score: &'a [f64], // [targets, slots]
    pub targets: usize,
    pub slots: usize,
    /// The last row is the null target (the half has fewer than `slots` real keyphrases). Without
    /// it there must be exactly one target per slot.
    pub has_null: bool,
}

/// A [`Problem`] that owns its scores: what the trainer builds from its greedy passes, and what
/// benchmarks, the selftest and tests make up.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedProblem {
    pub score: Vec<f64>, // [targets, slots]
    pub targets: usize,
    pub slots: usize,
    pub has_null: bool,
}

impl OwnedProblem {
    pub fn view(&self) -> Problem<'_> {
        Problem {
            score: &self.score,
            targets: self.targets,
            slots: self.slots,
            has_null: self.has_null,
        }
    }
}

impl Problem<'_> {
    /// Real keyphrases (the null row not counted).
    pub fn real_targets(&self) -> usize {
        self.targets - usize::from(self.has_null)
    }

    /// Row index of the null target, if any.
    pub fn null_index(&self) -> Option<usize> {
        self.has_null.then(|| self.targets - 1)
    }

    /// Checks the shape and the values; `index` is the problem's place in its batch, for the
    /// error. Holds for both methods: with a null row there are at most `slots - 1` real targets,
    /// without one exactly `slots`.
    pub fn validate(&self, index: usize) -> Result<()> {
        let err = |field: &'static str, reason: String| KpgError::AssignInput {
            problem: index,
            field,
            reason,
        };
        if self.slots == 0 {
            return Err(err("score", "there are no slots (0 columns)".into()));
        }
        if self.targets == 0 {
            return Err(err("score", "there are no targets (0 rows)".into()));
        }
        if self.score.len() != self.targets * self.slots {
            return Err(err(
                "score",
                format!(
                    "{} values for {} targets x {} slots",
                    self.score.len(),
                    self.targets,
                    self.slots
                ),
            ));
        }
        if self.targets > self.slots {
            return Err(err(
                "score",
                format!(
                    "{} targets for {} slots: at most one target per slot",
                    self.targets, self.slots
                ),
            ));
        }
        if !self.has_null && self.targets != self.slots {
            return Err(err(
                "has_null",
                format!(
                    "false with {} targets for {} slots: without the null target every slot \
                     needs its own target",
                    self.targets, self.slots
                ),
            ));
        }
        if let Some(k) = self.score.iter().position(|x| !x.is_finite() || *x < 0.0) {
            return Err(err(
                "score",
                format!(
                    "target {}, slot {} is {}: scores must be finite and non-negative",
                    k / self.slots,
                    k % self.slots,
                    self.score[k]
                ),
            ));
        }
        Ok(())
    }
}

/// Which assignment to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Optimal transport with dynamic supplies ([`ot::ot_assign`]).
    Ot,
    /// The original One2Set's Hungarian matching ([`hungarian::hungarian_assign`]).
    Hungarian,
}

/// One problem's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    Ot(OtResult),
    /// Per slot, the target index (every null copy maps to the null row).
    Hungarian(Vec<usize>), // [slots]
}

impl Assignment {
    /// Per slot, the index of the target it learns.
    pub fn assign(&self) -> &[usize] {
        match self {
            Assignment::Ot(r) => &r.assign,
            Assignment::Hungarian(a) => a,
        }
    }
}

fn validate_all(problems: &[Problem]) -> Result<()> {
    problems
        .iter()
        .enumerate()
        .try_for_each(|(i, p)| p.validate(i))
}

/// Solves every problem with `method` (`params` is only read by [`Method::Ot`]). All problems are
/// checked before any work; the error names the first bad one.
pub fn assign_batch(
    problems: &[Problem],
    method: Method,
    params: &OtParams,
) -> Result<Vec<Assignment>> {
    Ok(match method {
        Method::Ot => ot_batch(problems, params)?
            .into_iter()
            .map(Assignment::Ot)
            .collect(),
        Method::Hungarian => hungarian_batch(problems)?
            .into_iter()
            .map(Assignment::Hungarian)
            .collect(),
    })
}

/// [`ot::ot_assign`] over a batch, in parallel, one [`OtWorkspace`] per rayon job.
pub fn ot_batch(problems: &[Problem], params: &OtParams) -> Result<Vec<OtResult>> {
    params.validate()?;
    validate_all(problems)?;
    Ok(problems
        .par_iter()
        .map_init(OtWorkspace::default, |ws, p| ot::ot_solve(p, params, ws))
        .collect())
}

/// [`hungarian::hungarian_assign`] over a batch, in parallel.
pub fn hungarian_batch(problems: &[Problem]) -> Result<Vec<Vec<usize>>> {
    validate_all(problems)?;
    Ok(problems
        .par_iter()
        .map_init(HungarianWorkspace::default, |ws, p| {
            hungarian::hungarian_solve(p, ws)
        })
        .collect())
}
