//! `kpg debug ot`: training's target assignment seen from outside, for the fixtures of
//! `tools/ot_reference.py` and for checking a training step by hand. The input format is also what
//! `kpg bench ot --dump` writes and `tools/peer_ot.py` reads.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{print_line, AssignMethodArg, DebugOtArgs};
use crate::assign::{assign_batch, Assignment, OtParams, Problem};
use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};

/// The JSON input: parameters (optional, the reference values otherwise) and problems.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iters: Option<usize>,
    pub problems: Vec<InputProblem>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputProblem {
    pub score: Vec<Vec<f64>>, // [targets][slots]
    pub has_null: bool,
}

impl OtInput {
    pub fn params(&self) -> OtParams {
        let d = OtParams::default();
        OtParams {
            tau: self.tau.unwrap_or(d.tau),
            top_k: self.top_k.unwrap_or(d.top_k),
            eps: self.eps.unwrap_or(d.eps),
            iters: self.iters.unwrap_or(d.iters),
        }
    }
}

/// A problem's score flattened row-major, with its shape; ragged rows are an error naming the
/// problem.
pub(crate) fn flatten(index: usize, p: &InputProblem) -> Result<(Vec<f64>, usize, usize)> {
    let slots = p.score.first().map_or(0, Vec::len);
    if let Some(r) = p.score.iter().position(|row| row.len() != slots) {
        return Err(KpgError::AssignInput {
            problem: index,
            field: "score",
            reason: format!("row {r} has {} values, row 0 has {slots}", p.score[r].len()),
        });
    }
    Ok((p.score.concat(), p.score.len(), slots))
}

/// The OT assignment on the GPU (kernels/sinkhorn.cu).
#[cfg(feature = "cuda")]
fn ot_cuda(gpu: usize, problems: &[Problem], params: &OtParams) -> Result<Vec<Assignment>> {
    use crate::backend::cuda::{sinkhorn, CudaDevice};
    let dev = CudaDevice::new(gpu)?;
    let mut ws = sinkhorn::SinkhornWorkspace::default();
    Ok(sinkhorn::ot_batch_cuda(&dev, problems, params, &mut ws)?
        .into_iter()
        .map(Assignment::Ot)
        .collect())
}

#[cfg(not(feature = "cuda"))]
fn ot_cuda(_: usize, _: &[Problem], _: &OtParams) -> Result<Vec<Assignment>> {
    unreachable!("require_built refuses cuda in a build without the feature")
}

fn read_input(path: &Path) -> Result<OtInput> {
    let text = std::fs::read_to_string(path).map_err(|e| KpgError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| KpgError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub fn debug_ot(args: DebugOtArgs) -> Result<i32> {
    let input = read_input(&args.input)?;
    let params = input.params();
    let flat = input
        .problems
        .iter()
        .enumerate()
        .map(|(i, p)| flatten(i, p))
        .collect::<Result<Vec<_>>>()?;
    let problems: Vec<Problem> = flat
        .iter()
        .zip(&input.problems)
        .map(|((score, targets, slots), p)| Problem {
            score,
            targets: *targets,
            slots: *slots,
            has_null: p.has_null,
        })
        .collect();
    let results = match args.device.require_built()? {
        DeviceKind::Cpu => assign_batch(&problems, args.method.into(), &params)?,
        DeviceKind::Cuda if args.method != AssignMethodArg::Ot => {
            return Err(KpgError::InvalidArgument(
                "--device cuda solves the OT assignment only; use --method ot or --device cpu"
                    .into(),
            ))
        }
        DeviceKind::Cuda => ot_cuda(args.gpu, &problems, &params)?,
    };
    let results: Vec<serde_json::Value> = results
        .iter()
        .zip(&problems)
        .map(|(r, p)| match r {
            Assignment::Ot(r) => json!({
                "supply": r.supply,
                "plan": r.plan.chunks(p.slots).collect::<Vec<_>>(),
                "assign": r.assign,
            }),
            Assignment::Hungarian(a) => json!({ "assign": a }),
        })
        .collect();
    print_line(&json!({ "results": results }).to_string())?;
    Ok(0)
}
