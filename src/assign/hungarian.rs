//! The K-step Hungarian target assignment of the original One2Set (Ye et al., "One2Set: Generating
//! Diverse Keyphrases as a Set", ACL 2021; jiacheng-ye/kg_one2set, `pykp/utils/label_assign.py`,
//! `hungarian_assign`): a maximum-score one-to-one matching of slots to targets, where the null
//! target is repeated to give every slot a target.
//!
//! The original builds a square `[slots, slots]` matrix, row = slot, column = target, with the
//! null target's copies as the last columns, and calls SciPy's
//! `linear_sum_assignment(score, maximize=True)`. The solver here is the same algorithm as SciPy's
//! (`scipy/optimize/_lsap.c`: the shortest augmenting path method of Jonker and Volgenant in
//! Crouse's form, "On implementing 2D rectangular assignment algorithms", IEEE TAES 2016), O(n^3),
//! one row added per augmentation, with SciPy's choice among equal path costs (an unassigned
//! column wins; otherwise the one met first, scanning the remaining columns from the highest
//! index down), so that ties resolve as they do there. Maximising negates the score.
//!
//! The score is used as given: the original zeroes the null target's score, and the training code
//! passes such a score in.

use super::Problem;
use crate::error::{KpgError, Result};

/// Scratch of the square solver; grows to the largest matrix seen.
#[derive(Debug, Default)]
pub struct HungarianWorkspace {
    cost: Vec<f64>,      // [n, n] row = slot, column = target (null copies last), negated
    u: Vec<f64>,         // [n] row potentials
    v: Vec<f64>,         // [n] column potentials
    shortest: Vec<f64>,  // [n] shortest path cost to each column
    path: Vec<usize>,    // [n] the row that reaches each column on the shortest path
    col4row: Vec<usize>, // [n] NONE = unassigned
    row4col: Vec<usize>, // [n] NONE = unassigned
    seen_row: Vec<bool>, // [n]
    seen_col: Vec<bool>, // [n]
    remaining: Vec<usize>, // [n] columns not yet on the shortest path tree
}

const NONE: usize = usize::MAX;

/// Solves one problem (checking it first; `index 0` in errors). Per slot, the target index; all
/// copies of the null target map to the null row.
pub fn hungarian_assign(problem: &Problem) -> Result<Vec<usize>> {
    problem.validate(0)?;
    Ok(hungarian_solve(problem, &mut HungarianWorkspace::default()))
}

/// [`hungarian_assign`] on a problem already checked.
pub(crate) fn hungarian_solve(p: &Problem, ws: &mut HungarianWorkspace) -> Vec<usize> {
    let n = p.slots;
    let real = p.real_targets();
    ws.cost.clear();
    ws.cost.resize(n * n, 0.0);
    for slot in 0..n {
        for col in 0..n {
            // Columns past the real targets are null copies (only when there is a null row).
            let target = col.min(p.targets - 1);
            ws.cost[slot * n + col] = -p.score[target * n + slot];
        }
    }
    solve_min(n, ws);
    ws.col4row[..n]
        .iter()
        .map(|&col| if col >= real { p.targets - 1 } else { col })
        .collect()
}

/// A maximum-score perfect matching of a square `[n, n]` matrix (row-major, finite): per row, its
/// column, as `scipy.optimize.linear_sum_assignment(score, maximize=True)[1]` gives it.
pub fn linear_sum_assignment_max(score: &[f64], n: usize) -> Result<Vec<usize>> {
    if score.len() != n * n {
        return Err(KpgError::Shape {
            op: "linear_sum_assignment_max",
            expected: format!("[{n}, {n}] ({} values)", n * n),
            got: format!("{} values", score.len()),
        });
    }
    if let Some(x) = score.iter().find(|x| !x.is_finite()) {
        return Err(KpgError::InvalidArgument(format!(
            "linear_sum_assignment_max: scores must be finite, got {x}"
        )));
    }
    let mut ws = HungarianWorkspace {
        cost: score.iter().map(|x| -x).collect(),
        ..Default::default()
    };
    solve_min(n, &mut ws);
    ws.col4row.truncate(n);
    Ok(ws.col4row)
}

/// Minimum-cost perfect matching of `ws.cost` (`[n, n]`), left in `ws.col4row`.
fn solve_min(n: usize, ws: &mut HungarianWorkspace) {
    ws.u.clear();
    ws.u.resize(n, 0.0);
    ws.v.clear();
    ws.v.resize(n, 0.0);
    ws.shortest.resize(n, 0.0);
    ws.path.clear();
    ws.path.resize(n, NONE);
    ws.col4row.clear();
    ws.col4row.resize(n, NONE);
    ws.row4col.clear();
    ws.row4col.resize(n, NONE);
    ws.seen_row.resize(n, false);
    ws.seen_col.resize(n, false);
    ws.remaining.resize(n, 0);
    for cur_row in 0..n {
        let (sink, min_val) = augmenting_path(n, ws, cur_row);
        // Update the potentials so that reduced costs stay non-negative and tight on the tree.
        ws.u[cur_row] += min_val;
        for i in 0..n {
            if ws.seen_row[i] && i != cur_row {
                ws.u[i] += min_val - ws.shortest[ws.col4row[i]];
            }
        }
        for j in 0..n {
            if ws.seen_col[j] {
                ws.v[j] -= min_val - ws.shortest[j];
            }
        }
        // Flip the path back from the sink.
        let mut j = sink;
        loop {
            let i = ws.path[j];
            ws.row4col[j] = i;
            std::mem::swap(&mut ws.col4row[i], &mut j);
            if i == cur_row {
                break;
            }
        }
    }
}

/// Dijkstra over reduced costs from row `start` to the nearest unassigned column: returns that
/// column and the path length. Finite costs and a square matrix always have one.
fn augmenting_path(n: usize, ws: &mut HungarianWorkspace, start: usize) -> (usize, f64) {
    let mut min_val = 0.0;
    let mut num_remaining = n;
    for (it, r) in ws.remaining.iter_mut().enumerate() {
        *r = n - it - 1;
    }
    ws.seen_row.fill(false);
    ws.seen_col.fill(false);
    ws.shortest.fill(f64::INFINITY);
    let mut i = start;
    loop {
        let mut index = NONE;
        let mut lowest = f64::INFINITY;
        ws.seen_row[i] = true;
        for it in 0..num_remaining {
            let j = ws.remaining[it];
            let r = min_val + ws.cost[i * n + j] - ws.u[i] - ws.v[j];
            if r < ws.shortest[j] {
                ws.path[j] = i;
                ws.shortest[j] = r;
            }
            if ws.shortest[j] < lowest || (ws.shortest[j] == lowest && ws.row4col[j] == NONE) {
                lowest = ws.shortest[j];
                index = it;
            }
        }
        min_val = lowest;
        let j = ws.remaining[index];
        ws.seen_col[j] = true;
        num_remaining -= 1;
        ws.remaining[index] = ws.remaining[num_remaining];
        if ws.row4col[j] == NONE {
            return (j, min_val);
        }
        i = ws.row4col[j];
    }
}
