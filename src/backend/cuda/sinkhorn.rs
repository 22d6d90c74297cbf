//! Training's OT target assignment on the GPU (`kernels/sinkhorn.cu`): every problem of a batch in
//! one launch, each solved in shared memory, f64 as its CPU twin [`crate::assign::ot`] (the
//! specification; `kpg selftest` holds the two together).
//!
//! Problems may differ in targets and slots. The batch is packed as the kernel reads it: problem
//! p's scores at `score_offsets[p]`, its targets (supplies) at `row_offsets[p]`, its slots
//! (assignments) at `col_offsets[p]`; consecutive problems share a thread block while their slots
//! fit the block's threads and their data a shared-memory budget ([`OtLayout`]).
//!
//! Two entries: [`ot_batch_cuda`] takes score matrices from the host (what the CPU trainer
//! produces: it scores targets on the host, so that is the path training uses today), and
//! [`SinkhornWorkspace::launch_gather`] gathers the scores on the GPU from decoder distributions
//! that are already there (`Dists::prob` of src/autodiff/dists.rs), for a trainer whose forward pass
//! runs on the GPU.

use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    CudaFunction, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};

use crate::assign::{OtParams, OtResult, Problem};
use crate::autodiff::ops::copy::CopyRow;
use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::backend::cuda::Scratch;
use crate::error::{KpgError, Result};

const OP: &str = "sinkhorn_ot";
/// Threads of a block unless a problem has more slots (then its slots, rounded up to a warp).
/// Small blocks spread a batch of small problems over every SM.
const MIN_BLOCK: usize = 64;
const MAX_BLOCK: usize = 1024;
/// Shared memory a block may fill with several problems; a single larger problem gets its own
/// block and as much as the GPU allows (64 x 64 takes 86 KiB).
const SOFT_SHARED_BYTES: usize = 32 << 10;
/// What a kernel gets without opting in.
const DEFAULT_SHARED_BYTES: usize = 48 << 10;

/// Shared memory of one block holding `e` elements, `r` targets and `c` slots; the kernel's
/// `carve` lays out the same arrays: norm, ex [e] f64; u, log_a, row_x, sup [r] f64;
/// v, col_x, dec_row [c] 8 bytes; elem_rc [e] u32; order [r] i32.
pub fn shared_bytes(e: usize, r: usize, c: usize) -> usize {
    8 * (2 * e + 4 * r + 3 * c) + 4 * (e + r)
}

/// The packed layout of a batch and its split into thread blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtLayout {
    pub score_offsets: Vec<i64>, // [problems + 1]
    pub row_offsets: Vec<i64>,   // [problems + 1]
    pub col_offsets: Vec<i64>,   // [problems + 1]
    pub has_null: Vec<u8>,       // [problems]
    pub block_first: Vec<i32>,   // [blocks + 1]
    pub block_dim: usize,
    /// The largest block's elements, targets and slots: every block's shared-memory layout.
    pub e_cap: usize,
    pub r_cap: usize,
    pub c_cap: usize,
}

impl OtLayout {
    /// Lays out problems of shapes `(targets, slots, has_null)`, already validated (targets <=
    /// slots, both at least 1).
    pub fn new(shapes: &[(usize, usize, bool)]) -> Result<Self> {
        let max_slots = shapes.iter().map(|s| s.1).max().unwrap_or(1);
        if max_slots > MAX_BLOCK {
            return Err(KpgError::Shape {
                op: OP,
                expected: format!("at most {MAX_BLOCK} slots per problem (one thread each)"),
                got: max_slots.to_string(),
            });
        }
        if i32::try_from(shapes.len()).is_err() {
            return Err(KpgError::Shape {
                op: OP,
                expected: "fewer than 2^31 problems".into(),
                got: shapes.len().to_string(),
            });
        }
        let block_dim = MIN_BLOCK.max(max_slots.div_ceil(32) * 32);
        let mut l = OtLayout {
            block_dim,
            ..OtLayout::default()
        };
        let (mut e, mut r, mut c) = (0i64, 0i64, 0i64);
        l.score_offsets.push(0);
        l.row_offsets.push(0);
        l.col_offsets.push(0);
        l.block_first.push(0);
        // The open block's sizes.
        let (mut be, mut br, mut bc) = (0usize, 0usize, 0usize);
        for (p, &(t, s, null)) in shapes.iter().enumerate() {
            let fits = bc + s <= block_dim
                && shared_bytes(be + t * s, br + t, bc + s) <= SOFT_SHARED_BYTES;
            if bc > 0 && !fits {
                l.block_first.push(p as i32);
                l.close(be, br, bc);
                (be, br, bc) = (0, 0, 0);
            }
            be += t * s;
            br += t;
            bc += s;
            e += (t * s) as i64;
            r += t as i64;
            c += s as i64;
            l.score_offsets.push(e);
            l.row_offsets.push(r);
            l.col_offsets.push(c);
            l.has_null.push(u8::from(null));
        }
        if bc > 0 {
            l.block_first.push(shapes.len() as i32);
            l.close(be, br, bc);
        }
        Ok(l)
    }

    fn close(&mut self, e: usize, r: usize, c: usize) {
        self.e_cap = self.e_cap.max(e);
        self.r_cap = self.r_cap.max(r);
        self.c_cap = self.c_cap.max(c);
    }

    pub fn problems(&self) -> usize {
        self.has_null.len()
    }

    pub fn blocks(&self) -> usize {
        self.block_first.len() - 1
    }

    pub fn total_elements(&self) -> usize {
        *self.score_offsets.last().unwrap_or(&0) as usize
    }

    pub fn total_targets(&self) -> usize {
        *self.row_offsets.last().unwrap_or(&0) as usize
    }

    pub fn total_slots(&self) -> usize {
        *self.col_offsets.last().unwrap_or(&0) as usize
    }

    pub fn shared_bytes(&self) -> usize {
        shared_bytes(self.e_cap, self.r_cap, self.c_cap)
    }
}

/// Decoder distributions on the GPU, laid out as src/autodiff/dists.rs reads them on the host.
pub struct DecoderDists<'a> {
    pub probs: CudaView<'a, f32>,   // [rows, vocab] softmax of the logits
    pub p_gen: CudaView<'a, f32>,   // [rows]
    pub head0: CudaView<'a, f32>,   // [sum of rows' source lengths] copy attention
    pub src_ext: CudaView<'a, u32>, // [tokens] extended source ids
    pub copy_rows: &'a [CopyRow],   // [rows] where each row's attention and source start
    pub vocab: usize,
}

/// One problem to gather: a half's targets against its slots.
#[derive(Debug, Clone, Copy)]
pub struct GatherProblem<'a> {
    /// Each target's first `steps` extended ids, row-major.
    pub target_ids: &'a [u32], // [targets, steps]
    pub targets: usize,
    pub slots: usize,
    pub has_null: bool,
    /// Decoder row of slot 0's first step; slot j's step k is row `first_row + j * steps + k`
    /// (the trainer's `slot * ASSIGN_STEPS + t`).
    pub first_row: usize,
}

/// Buffers of the batched solver, grown on demand and reused across batches.
pub struct SinkhornWorkspace {
    layout: OtLayout,
    score_offsets: Scratch<i64>, // [problems + 1]
    row_offsets: Scratch<i64>,   // [problems + 1]
    col_offsets: Scratch<i64>,   // [problems + 1]
    has_null: Scratch<u8>,       // [problems]
    block_first: Scratch<i32>,   // [blocks + 1]
    score: Scratch<f64>,         // [elements] in, or the gathered scores out
    supply: Scratch<f64>,        // [targets]
    plan: Scratch<f64>,          // [elements]
    assign: Scratch<i32>,        // [slots]
    target_ids: Scratch<u32>,    // [targets, steps]
    first_row: Scratch<i64>,     // [problems]
    copy_rows: Scratch<i64>,     // [rows, 3]
    /// Decoder steps and rows of the gather that prepare_gather() laid out.
    gather_shape: Option<(usize, usize)>,
}

impl Default for SinkhornWorkspace {
    fn default() -> Self {
        SinkhornWorkspace {
            layout: OtLayout::default(),
            score_offsets: Scratch::new("OT score offsets"),
            row_offsets: Scratch::new("OT row offsets"),
            col_offsets: Scratch::new("OT column offsets"),
            has_null: Scratch::new("OT null flags"),
            block_first: Scratch::new("OT block table"),
            score: Scratch::new("OT scores"),
            supply: Scratch::new("OT supplies"),
            plan: Scratch::new("OT plans"),
            assign: Scratch::new("OT assignments"),
            target_ids: Scratch::new("OT target ids"),
            first_row: Scratch::new("OT first decoder rows"),
            copy_rows: Scratch::new("OT copy rows"),
            gather_shape: None,
        }
    }
}

fn upload<T: DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    host: &[T],
    buf: &mut Scratch<T>,
    what: &str,
) -> Result<()> {
    let dst = buf.get(dev, host.len())?;
    dev.upload_into(host, dst, what)
}

impl SinkhornWorkspace {
    pub fn layout(&self) -> &OtLayout {
        &self.layout
    }

    /// Validates `problems` and `params`, lays the batch out and copies it to the GPU.
    pub fn prepare(&mut self, dev: &CudaDevice, problems: &[Problem]) -> Result<()> {
        for (k, p) in problems.iter().enumerate() {
            p.validate(k)?;
        }
        let shapes: Vec<_> = problems
            .iter()
            .map(|p| (p.targets, p.slots, p.has_null))
            .collect();
        self.set_layout(dev, OtLayout::new(&shapes)?)?;
        self.gather_shape = None;
        let mut score = Vec::with_capacity(self.layout.total_elements());
        for p in problems {
            score.extend_from_slice(p.score);
        }
        upload(dev, &score, &mut self.score, "OT scores")
    }

    fn set_layout(&mut self, dev: &CudaDevice, layout: OtLayout) -> Result<()> {
        self.layout = layout;
        let l = &self.layout;
        upload(
            dev,
            &l.score_offsets,
            &mut self.score_offsets,
            "OT score offsets",
        )?;
        upload(dev, &l.row_offsets, &mut self.row_offsets, "OT row offsets")?;
        upload(
            dev,
            &l.col_offsets,
            &mut self.col_offsets,
            "OT column offsets",
        )?;
        upload(dev, &l.has_null, &mut self.has_null, "OT null flags")?;
        upload(dev, &l.block_first, &mut self.block_first, "OT block table")?;
        self.supply.get(dev, l.total_targets())?;
        self.plan.get(dev, l.total_elements())?;
        self.assign.get(dev, l.total_slots())?;
        Ok(())
    }

    /// Fills the outputs with NaN (assignments with -1; after prepare_gather() the scores too),
    /// so that an element a kernel forgot to write shows in a check.
    pub fn poison(&mut self, dev: &CudaDevice) -> Result<()> {
        let l = &self.layout;
        let (e, r, c) = (l.total_elements(), l.total_targets(), l.total_slots());
        dev.upload_into(&vec![f64::NAN; r], self.supply.get(dev, r)?, "OT supplies")?;
        dev.upload_into(&vec![f64::NAN; e], self.plan.get(dev, e)?, "OT plans")?;
        dev.upload_into(&vec![-1; c], self.assign.get(dev, c)?, "OT assignments")?;
        if self.gather_shape.is_some() {
            dev.upload_into(&vec![f64::NAN; e], self.score.get(dev, e)?, "OT scores")?;
        }
        Ok(())
    }

    /// Looks the kernel up and lets it use the batch's shared memory.
    fn function(&self, dev: &CudaDevice, name: &'static str) -> Result<CudaFunction> {
        let f = dev.function("sinkhorn", name)?;
        let need = self.layout.shared_bytes();
        if need <= DEFAULT_SHARED_BYTES {
            return Ok(f);
        }
        let limit = dev
            .stream()
            .context()
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .during(|| "reading the shared-memory limit".into())? as usize;
        if need > limit {
            return Err(KpgError::Shape {
                op: OP,
                expected: format!(
                    "problems whose block needs at most {limit} bytes of shared memory \
                     (64 x 64 needs {})",
                    shared_bytes(64 * 64, 64, 64)
                ),
                got: format!(
                    "{need} bytes for {} elements, {} targets, {} slots",
                    self.layout.e_cap, self.layout.r_cap, self.layout.c_cap
                ),
            });
        }
        // A maximum, not a reservation: raising it once for a large batch costs later launches
        // nothing.
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            need as i32,
        )
        .during(|| format!("allowing {name} {need} bytes of shared memory"))?;
        Ok(f)
    }

    fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.layout.blocks() as u32, 1, 1),
            block_dim: (self.layout.block_dim as u32, 1, 1),
            shared_mem_bytes: self.layout.shared_bytes() as u32,
        }
    }

    /// Solves the batch given to [`Self::prepare`]: one launch of `sinkhorn_ot_f64`.
    pub fn launch(&mut self, dev: &CudaDevice, params: &OtParams) -> Result<()> {
        params.validate()?;
        if self.layout.problems() == 0 {
            return Ok(());
        }
        if self.gather_shape.is_some() {
            return Err(KpgError::InvalidArgument(
                "sinkhorn: launch() after prepare_gather(); call launch_gather()".into(),
            ));
        }
        let f = self.function(dev, "sinkhorn_ot_f64")?;
        let cfg = self.config();
        let l = &self.layout;
        let (e_cap, r_cap, c_cap) = (l.e_cap as i32, l.r_cap as i32, l.c_cap as i32);
        let (power, eps, inv_eps) = (1.0 / params.tau, params.eps, 1.0 / params.eps);
        let log_b = (1.0f64 + 1e-8).ln();
        let (top_k, iters) = (clamp_i32(params.top_k), clamp_i32(params.iters));
        let problems = l.problems();
        let mut b = dev.stream().launch_builder(&f);
        b.arg(self.supply.get(dev, 0)?);
        let plan = self.plan.get(dev, 0)?;
        b.arg(plan);
        b.arg(self.assign.get(dev, 0)?);
        b.arg(self.score.get(dev, 0)?);
        b.arg(self.score_offsets.get(dev, 0)?);
        b.arg(self.row_offsets.get(dev, 0)?);
        b.arg(self.col_offsets.get(dev, 0)?);
        b.arg(self.has_null.get(dev, 0)?);
        b.arg(self.block_first.get(dev, 0)?);
        b.arg(&e_cap).arg(&r_cap).arg(&c_cap);
        b.arg(&power)
            .arg(&top_k)
            .arg(&eps)
            .arg(&inv_eps)
            .arg(&log_b)
            .arg(&iters);
        // SAFETY: prepare() uploaded the offset tables of this layout and sized every buffer to
        // its totals; the kernel touches problem p only inside [offsets[p], offsets[p + 1]), and
        // each block's shared memory is the layout's maximum, allowed by function() above.
        unsafe { b.launch(cfg) }
            .during(|| format!("launching sinkhorn_ot_f64 on {problems} problems"))?;
        Ok(())
    }

    /// Validates problems whose scores are to be gathered from `dists`, lays the batch out and
    /// copies its tables to the GPU; [`Self::launch_gather`] then solves it.
    pub fn prepare_gather(
        &mut self,
        dev: &CudaDevice,
        dists: &DecoderDists<'_>,
        problems: &[GatherProblem<'_>],
        steps: usize,
    ) -> Result<()> {
        let rows = dists.copy_rows.len();
        check_dists(dists, rows)?;
        if steps == 0 || i32::try_from(steps).is_err() {
            return Err(bad_input(0, "steps", format!("{steps} steps")));
        }
        let mut ids = Vec::new();
        let mut first_row = Vec::with_capacity(problems.len());
        for (k, p) in problems.iter().enumerate() {
            shape_ok(k, p.targets, p.slots, p.has_null)?;
            if p.target_ids.len() != p.targets * steps {
                return Err(bad_input(
                    k,
                    "target_ids",
                    format!(
                        "{} ids for {} targets x {steps} steps",
                        p.target_ids.len(),
                        p.targets
                    ),
                ));
            }
            if p.first_row + p.slots * steps > rows {
                return Err(bad_input(
                    k,
                    "first_row",
                    format!(
                        "{} + {} slots x {steps} steps passes the {rows} decoder rows",
                        p.first_row, p.slots
                    ),
                ));
            }
            ids.extend_from_slice(p.target_ids);
            first_row.push(p.first_row as i64);
        }
        let shapes: Vec<_> = problems
            .iter()
            .map(|p| (p.targets, p.slots, p.has_null))
            .collect();
        self.set_layout(dev, OtLayout::new(&shapes)?)?;
        upload(dev, &ids, &mut self.target_ids, "OT target ids")?;
        upload(
            dev,
            &first_row,
            &mut self.first_row,
            "OT first decoder rows",
        )?;
        self.score.get(dev, self.layout.total_elements())?;
        self.gather_shape = Some((steps, rows));
        Ok(())
    }

    /// Gathers each problem's scores from the decoder distributions (the same `dists` as given
    /// to [`Self::prepare_gather`]) and solves the batch: one launch of `sinkhorn_ot_gather_f32`.
    /// The scores are kept ([`Self::scores`]).
    pub fn launch_gather(
        &mut self,
        dev: &CudaDevice,
        dists: &DecoderDists<'_>,
        params: &OtParams,
    ) -> Result<()> {
        params.validate()?;
        let Some((steps, rows)) = self.gather_shape else {
            return Err(KpgError::InvalidArgument(
                "sinkhorn: launch_gather() needs prepare_gather() first".into(),
            ));
        };
        if dists.copy_rows.len() != rows {
            return Err(KpgError::Shape {
                op: "sinkhorn_ot_gather_f32",
                expected: format!("the {rows} decoder rows given to prepare_gather"),
                got: dists.copy_rows.len().to_string(),
            });
        }
        check_dists(dists, rows)?;
        if self.layout.problems() == 0 {
            return Ok(());
        }
        let copy: Vec<i64> = dists
            .copy_rows
            .iter()
            .flat_map(|c| [c.head0_at as i64, c.src_at as i64, c.len as i64])
            .collect();
        upload(dev, &copy, &mut self.copy_rows, "OT copy rows")?;
        let f = self.function(dev, "sinkhorn_ot_gather_f32")?;
        let cfg = self.config();
        let l = &self.layout;
        let n = l.problems();
        let (e_cap, r_cap, c_cap) = (l.e_cap as i32, l.r_cap as i32, l.c_cap as i32);
        let (power, eps, inv_eps) = (1.0 / params.tau, params.eps, 1.0 / params.eps);
        let log_b = (1.0f64 + 1e-8).ln();
        let (top_k, iters) = (clamp_i32(params.top_k), clamp_i32(params.iters));
        let (vocab, steps_i) = (dists.vocab as i64, steps as i32);
        let mut b = dev.stream().launch_builder(&f);
        b.arg(self.supply.get(dev, 0)?);
        b.arg(self.plan.get(dev, 0)?);
        b.arg(self.assign.get(dev, 0)?);
        b.arg(self.score.get(dev, 0)?);
        b.arg(&dists.probs).arg(&dists.p_gen).arg(&dists.head0);
        b.arg(self.copy_rows.get(dev, 0)?);
        b.arg(&dists.src_ext);
        b.arg(self.target_ids.get(dev, 0)?);
        b.arg(self.first_row.get(dev, 0)?);
        b.arg(&vocab).arg(&steps_i);
        b.arg(self.score_offsets.get(dev, 0)?);
        b.arg(self.row_offsets.get(dev, 0)?);
        b.arg(self.col_offsets.get(dev, 0)?);
        b.arg(self.has_null.get(dev, 0)?);
        b.arg(self.block_first.get(dev, 0)?);
        b.arg(&e_cap).arg(&r_cap).arg(&c_cap);
        b.arg(&power)
            .arg(&top_k)
            .arg(&eps)
            .arg(&inv_eps)
            .arg(&log_b)
            .arg(&iters);
        // SAFETY: as in launch(); besides, prepare_gather() checked that every decoder row read
        // (first_row + j * steps + k) is below `rows`; the copy rows just uploaded have their
        // attention and source ranges inside these head0 and src_ext, and probs holds rows x
        // vocab values (check_dists above).
        unsafe { b.launch(cfg) }
            .during(|| format!("launching sinkhorn_ot_gather_f32 on {n} problems"))?;
        Ok(())
    }

    /// Copies the results of the last launch back, one [`OtResult`] per problem.
    pub fn results(&mut self, dev: &CudaDevice) -> Result<Vec<OtResult>> {
        let l = &self.layout;
        let mut supply = vec![0.0; l.total_targets()];
        let mut plan = vec![0.0; l.total_elements()];
        let mut assign = vec![0i32; l.total_slots()];
        if l.problems() == 0 {
            return Ok(Vec::new());
        }
        dev.download_into(self.supply.get(dev, 0)?, &mut supply, "OT supplies")?;
        dev.download_into(self.plan.get(dev, 0)?, &mut plan, "OT plans")?;
        dev.download_into(self.assign.get(dev, 0)?, &mut assign, "OT assignments")?;
        let l = &self.layout;
        Ok((0..l.problems())
            .map(|p| {
                let span = |o: &[i64]| o[p] as usize..o[p + 1] as usize;
                OtResult {
                    supply: supply[span(&l.row_offsets)].to_vec(),
                    plan: plan[span(&l.score_offsets)].to_vec(),
                    // Out-of-range values (an unwritten -1) become usize::MAX: a mismatch.
                    assign: assign[span(&l.col_offsets)]
                        .iter()
                        .map(|&a| usize::try_from(a).unwrap_or(usize::MAX))
                        .collect(),
                }
            })
            .collect())
    }

    /// The scores of the last launch, packed by problem (`layout().score_offsets`).
    pub fn scores(&mut self, dev: &CudaDevice) -> Result<Vec<f64>> {
        let mut out = vec![0.0; self.layout.total_elements()];
        if !out.is_empty() {
            dev.download_into(self.score.get(dev, 0)?, &mut out, "OT scores")?;
        }
        Ok(out)
    }

    /// Bytes the kernel must read and write at least: scores in; supplies, plans and
    /// assignments out (the memory-bound floor of a launch).
    pub fn bytes_moved(&self) -> usize {
        let l = &self.layout;
        8 * l.total_elements() * 2 + 8 * l.total_targets() + 4 * l.total_slots()
    }
}

fn clamp_i32(x: usize) -> i32 {
    i32::try_from(x).unwrap_or(i32::MAX)
}

fn bad_input(problem: usize, field: &'static str, reason: String) -> KpgError {
    KpgError::AssignInput {
        problem,
        field,
        reason,
    }
}

/// The shape rules of [`Problem::validate`], for problems that carry no scores.
fn shape_ok(k: usize, targets: usize, slots: usize, has_null: bool) -> Result<()> {
    if targets == 0 || slots == 0 || targets > slots || (!has_null && targets != slots) {
        return Err(bad_input(
            k,
            "targets",
            format!("{targets} targets, {slots} slots, null row {has_null}"),
        ));
    }
    Ok(())
}

fn check_dists(d: &DecoderDists<'_>, rows: usize) -> Result<()> {
    let short = |what: &str, need: usize, got: usize| KpgError::Shape {
        op: "sinkhorn_ot_gather_f32",
        expected: format!("{what} of at least {need} elements"),
        got: got.to_string(),
    };
    if d.probs.len() < rows * d.vocab {
        return Err(short("probs", rows * d.vocab, d.probs.len()));
    }
    if d.p_gen.len() < rows {
        return Err(short("p_gen", rows, d.p_gen.len()));
    }
    for (r, c) in d.copy_rows.iter().enumerate() {
        if c.head0_at + c.len > d.head0.len() || c.src_at + c.len > d.src_ext.len() {
            return Err(KpgError::Shape {
                op: "sinkhorn_ot_gather_f32",
                expected: format!(
                    "copy row {r} inside head0 ({}) and src_ext ({})",
                    d.head0.len(),
                    d.src_ext.len()
                ),
                got: format!("{c:?}"),
            });
        }
    }
    Ok(())
}

/// [`crate::assign::ot_batch`] on the GPU: checks, uploads, one launch, downloads.
pub fn ot_batch_cuda(
    dev: &CudaDevice,
    problems: &[Problem],
    params: &OtParams,
    ws: &mut SinkhornWorkspace,
) -> Result<Vec<OtResult>> {
    params.validate()?;
    ws.prepare(dev, problems)?;
    ws.launch(dev, params)?;
    ws.results(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_packs_problems_into_blocks_that_fit() {
        let shapes: Vec<_> = (0..20).map(|k| (1 + k % 10, 10, k % 10 != 9)).collect();
        let l = OtLayout::new(&shapes).unwrap();
        assert_eq!(l.block_dim, 64);
        assert_eq!(l.problems(), 20);
        // Six problems of 10 slots fill 60 of 64 threads.
        assert_eq!(&l.block_first[..3], &[0, 6, 12]);
        assert_eq!(*l.block_first.last().unwrap(), 20);
        assert_eq!(l.total_slots(), 200);
        assert_eq!(
            l.total_targets(),
            (0..20).map(|k| 1 + k % 10).sum::<usize>()
        );
        let e: usize = shapes.iter().map(|s| s.0 * s.1).sum();
        assert_eq!(l.total_elements(), e);
        assert_eq!(l.has_null[9], 0);
        for b in 0..l.blocks() {
            let (p0, p1) = (l.block_first[b] as usize, l.block_first[b + 1] as usize);
            let c = (l.col_offsets[p1] - l.col_offsets[p0]) as usize;
            let r = (l.row_offsets[p1] - l.row_offsets[p0]) as usize;
            let e = (l.score_offsets[p1] - l.score_offsets[p0]) as usize;
            assert!(c <= l.block_dim && c <= l.c_cap && r <= l.r_cap && e <= l.e_cap);
            assert!(shared_bytes(e, r, c) <= SOFT_SHARED_BYTES);
        }
    }

    #[test]
    fn layout_gives_large_problems_their_own_block() {
        let l =
            OtLayout::new(&[(64, 64, false), (3, 5, true), (64, 64, true), (1, 1, false)]).unwrap();
        assert_eq!(l.block_dim, 64);
        assert_eq!(l.block_first, vec![0, 1, 2, 3, 4]);
        assert_eq!(l.e_cap, 64 * 64);
        assert!(l.shared_bytes() > DEFAULT_SHARED_BYTES);
        let wide = OtLayout::new(&[(2, 100, true), (1, 3, true)]).unwrap();
        assert_eq!(wide.block_dim, 128);
        assert_eq!(wide.block_first, vec![0, 2]);
        assert!(OtLayout::new(&[(1, 1025, true)]).is_err());
        let empty = OtLayout::new(&[]).unwrap();
        assert_eq!(empty.blocks(), 0);
        assert_eq!(empty.total_elements(), 0);
    }
}
