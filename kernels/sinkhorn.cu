// Batched optimal-transport target assignment with dynamic supplies (src/assign/ot.rs is the
// specification; its module doc numbers the steps used below): per problem, the normalisation
// mu^(1/tau) over targets, the top-k supplies with the fix-up, the log-domain Sinkhorn iterations
// and the argmax per slot, each problem solved in shared memory, the whole batch in one launch.
// `sinkhorn_ot_gather_f32` first gathers the matching scores from the K-step decoder
// distributions (src/trainer/targets.rs `score_half`, src/train/dists.rs `Dists::prob`).
//
// grid: (num_blocks)  block: blockDim.x threads (a multiple of 32, at least the slots of any
// problem). The host packs consecutive problems into blocks (`block_first`); block b owns
// problems [block_first[b], block_first[b+1]). Within a block, a problem's data is packed as in
// global memory (the offset arrays minus the block's first offsets), and threads take three roles:
//   column threads: thread c < (the block's slots) owns one slot of one problem;
//   row threads:    thread r < (the block's targets) owns one target of one problem;
//   element threads: element f < (the block's targets x slots) goes to thread f % blockDim.x.
// The line reductions (max, ordered sums) run per column or row in the CPU's order; the exps, the
// expensive part, run element-parallel so no lane idles on a short problem.
//
// Checked against the CPU by `kpg selftest --device cuda` (src/selftest/sinkhorn.rs) and, without a
// GPU, by tools/sinkhorn_emu/run.sh, which compiles this file as host C++ with one std::thread per
// CUDA thread and a barrier for __syncthreads.
//
// f64 throughout, as the CPU: eps = 1e-3 scales the potentials by 1000, so an f32 potential (7
// digits) would put ~1e-4 of noise into every exponent, and the supplies are ceilings of sums
// that f32 could round across an integer. Products that the CPU rounds before adding use
// __dmul_rn/__fmul_rn so nvcc cannot contract them into an FMA.
#include "common.cuh"

// Where one block's arrays live in dynamic shared memory; sizes are the launch's maxima over
// blocks (e_cap elements, r_cap targets, c_cap slots), so every block uses the same layout.
struct OtShared {
    double* norm;        // [e_cap] normalised scores (= -cost), then kept for every iteration
    double* ex;          // [e_cap] exps of the current half-iteration; the plan at the end
    double* u;           // [r_cap] row potentials
    double* log_a;       // [r_cap] ln(supply + 1e-8)
    double* row_x;       // [r_cap] the top-k sums, then each row's max
    double* sup;         // [r_cap] supplies
    double* v;           // [c_cap] column potentials
    double* col_x;       // [c_cap] each column's max
    long long* dec_row;  // [c_cap] gather: the decoder row of the slot's first step
    unsigned* elem_rc;   // [e_cap] element -> (local row << 16) | local column
    int* order;          // [r_cap] the fix-up's order of real targets
};

__device__ __forceinline__ OtShared carve(void* base, int e_cap, int r_cap, int c_cap) {
    OtShared s;
    double* d = (double*)base;
    s.norm = d;
    s.ex = s.norm + e_cap;
    s.u = s.ex + e_cap;
    s.log_a = s.u + r_cap;
    s.row_x = s.log_a + r_cap;
    s.sup = s.row_x + r_cap;
    s.v = s.sup + r_cap;
    s.col_x = s.v + c_cap;
    s.dec_row = (long long*)(s.col_x + c_cap);
    s.elem_rc = (unsigned*)(s.dec_row + c_cap);
    s.order = (int*)(s.elem_rc + e_cap);
    return s;
}

// One problem as seen from a block: its shape and where its data starts, block-locally.
struct Local {
    int p;       // global problem index
    int t, s;    // targets, slots
    int tile0;   // first element
    int row0;    // first target
    int col0;    // first slot
    bool null_row;
};

// The problem owning local line `k` of `offsets` (row or column offsets), scanning from `first`.
__device__ __forceinline__ Local find_problem(const long long* offsets, int first, int last, int k,
                                              const long long* score_offsets,
                                              const long long* row_offsets,
                                              const long long* col_offsets,
                                              const unsigned char* has_null) {
    int p = first;
    while (p + 1 < last && offsets[p + 1] - offsets[first] <= k) ++p;
    Local l;
    l.p = p;
    l.t = (int)(row_offsets[p + 1] - row_offsets[p]);
    l.s = (int)(col_offsets[p + 1] - col_offsets[p]);
    l.tile0 = (int)(score_offsets[p] - score_offsets[first]);
    l.row0 = (int)(row_offsets[p] - row_offsets[first]);
    l.col0 = (int)(col_offsets[p] - col_offsets[first]);
    l.null_row = has_null[p] != 0;
    return l;
}

// Where the gather reads the decoder's copy-augmented distributions (src/train/dists.rs):
// P(w) = p_gen * softmax[w] + (1 - p_gen) * (sum of the copy attention on source positions of w).
struct Dists {
    const float* probs;          // [rows, vocab] softmax of the logits
    const float* p_gen;          // [rows]
    const float* head0;          // [sum of rows' source lengths] copy attention
    const long long* copy_rows;  // [rows, 3] (head0_at, src_at, len)
    const unsigned* src_ext;     // [tokens] extended source ids
    const unsigned* target_ids;  // [total_targets, steps] each target's first `steps` ids
    const long long* first_row;  // [num_problems] decoder row of slot 0, step 0
    long long vocab;
    int steps;
};

// Dists::prob in f32 with the CPU's roundings: two products, then their sum.
__device__ __forceinline__ float dist_prob(const Dists& d, long long row, unsigned id) {
    const float pv = (long long)id < d.vocab ? d.probs[row * d.vocab + id] : 0.f;
    const long long head0_at = d.copy_rows[3 * row], src_at = d.copy_rows[3 * row + 1];
    const long long len = d.copy_rows[3 * row + 2];
    float mass = 0.f;
    for (long long k = 0; k < len; ++k)
        if (d.src_ext[src_at + k] == id) mass = __fadd_rn(mass, d.head0[head0_at + k]);
    const float pg = d.p_gen[row];
    return __fadd_rn(__fmul_rn(pg, pv), __fmul_rn(__fsub_rn(1.f, pg), mass));
}

template <bool GATHER>
__device__ void ot_block(double* __restrict__ supply,                // [total_targets]
                         double* __restrict__ plan,                  // [total_elements]
                         int* __restrict__ assign,                   // [total_slots]
                         double* __restrict__ score_out,             // [total_elements] or null
                         const double* __restrict__ score,           // [total_elements] (!GATHER)
                         const Dists dists,                          // (GATHER)
                         const long long* __restrict__ score_offsets,  // [num_problems + 1]
                         const long long* __restrict__ row_offsets,    // [num_problems + 1]
                         const long long* __restrict__ col_offsets,    // [num_problems + 1]
                         const unsigned char* __restrict__ has_null,   // [num_problems]
                         const int* __restrict__ block_first,          // [num_blocks + 1]
                         int e_cap, int r_cap, int c_cap, double power, int top_k, double eps,
                         double inv_eps, double log_b, int iters) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const OtShared sh = carve(smem_raw, e_cap, r_cap, c_cap);
    const int first = block_first[blockIdx.x], last = block_first[blockIdx.x + 1];
    const long long e_base = score_offsets[first], r_base = row_offsets[first];
    const long long c_base = col_offsets[first];
    const int num_e = (int)(score_offsets[last] - e_base);
    const int num_r = (int)(row_offsets[last] - r_base);
    const int num_c = (int)(col_offsets[last] - c_base);
    const int tid = threadIdx.x, nthreads = blockDim.x;

    const bool is_col = tid < num_c, is_row = tid < num_r;
    Local cl = {}, rl = {};
    if (is_col)
        cl = find_problem(col_offsets, first, last, tid, score_offsets, row_offsets, col_offsets,
                          has_null);
    if (is_row)
        rl = find_problem(row_offsets, first, last, tid, score_offsets, row_offsets, col_offsets,
                          has_null);
    const int j = tid - cl.col0;  // this column thread's slot
    const int i = tid - rl.row0;  // this row thread's target

    if (is_col) {
        for (int a = 0; a < cl.t; ++a)
            sh.elem_rc[cl.tile0 + a * cl.s + j] = ((unsigned)(cl.row0 + a) << 16) | (unsigned)tid;
        if (GATHER) sh.dec_row[tid] = dists.first_row[cl.p] + (long long)j * dists.steps;
        sh.v[tid] = 1.0;
    }
    __syncthreads();

    // Step 1: mu^(1/tau), the matching scores gathered first when asked.
    for (int f = tid; f < num_e; f += nthreads) {
        double x;
        if (GATHER) {
            const unsigned rc = sh.elem_rc[f];
            const long long target = r_base + (rc >> 16);
            const long long row = sh.dec_row[rc & 0xffffu];
            x = 0.0;  // summed over the steps in f64, as score_half does
            for (int k = 0; k < dists.steps; ++k)
                x += (double)dist_prob(dists, row + k,
                                       dists.target_ids[target * dists.steps + k]);
        } else {
            x = score[e_base + f];
        }
        if (score_out) score_out[e_base + f] = x;
        sh.norm[f] = pow(x, power);
    }
    __syncthreads();
    if (is_col) {
        double sum = 0.0;
        for (int a = 0; a < cl.t; ++a) sum += sh.norm[cl.tile0 + a * cl.s + j];
        const double uniform = 1.0 / (double)cl.t;  // an all-zero slot: the limit of equal scores
        for (int a = 0; a < cl.t; ++a) {
            double* n = &sh.norm[cl.tile0 + a * cl.s + j];
            *n = sum > 0.0 ? *n / sum : uniform;
        }
    }
    __syncthreads();

    // Step 2: each row's top-k sum, largest first. The k-th pick is the largest entry after the
    // previous pick in the order (value descending, slot ascending), which walks the row's sorted
    // values without sorting, duplicates included.
    if (is_row && rl.null_row) {
        const double* row = &sh.norm[rl.tile0 + i * rl.s];
        const int k = min(top_k, rl.s);
        double raw = 0.0, prev_v = INFINITY;
        int prev_j = -1;
        for (int pick = 0; pick < k; ++pick) {
            double best_v = 0.0;
            int best_j = -1;
            for (int b = 0; b < rl.s; ++b) {
                const double x = row[b];
                const bool after = x < prev_v || (x == prev_v && b > prev_j);
                if (after && (best_j < 0 || x > best_v)) {
                    best_v = x;
                    best_j = b;
                }
            }
            raw += best_v;
            prev_v = best_v;
            prev_j = best_j;
        }
        sh.row_x[tid] = raw;
    }
    __syncthreads();
    // The supplies and the fix-up: serial per problem (a few dozen targets), by its slot-0 thread.
    if (is_col && j == 0) {
        double* sup = &sh.sup[cl.row0];
        const double* raw = &sh.row_x[cl.row0];
        if (!cl.null_row) {
            for (int a = 0; a < cl.t; ++a) sup[a] = 1.0;
        } else {
            const int real = cl.t - 1;
            long long taken = 0;
            for (int a = 0; a < real; ++a) {
                sup[a] = ceil(raw[a]);
                taken += (long long)sup[a];
            }
            long long left = (long long)cl.s - taken;
            if (left >= 0) {
                sup[real] = (double)left;
            } else {
                sup[real] = 0.0;
                // Real targets by rounding slack, largest first, equal slack lower index first
                // (a stable insertion sort of 0..real).
                int* order = &sh.order[cl.row0];
                for (int a = 0; a < real; ++a) {
                    const int key = a;
                    const double key_slack = sup[key] - raw[key];
                    int b = a;
                    while (b > 0 && sup[order[b - 1]] - raw[order[b - 1]] < key_slack) {
                        order[b] = order[b - 1];
                        --b;
                    }
                    order[b] = key;
                }
                int pos = 0;
                while (left < 0) {
                    const int a = order[pos];
                    if (sup[a] >= 2.0) {
                        sup[a] -= 1.0;
                        ++left;
                    }
                    pos = (pos + 1) % real;
                }
            }
        }
    }
    __syncthreads();
    if (is_row) {
        const double a = sh.sup[tid];
        supply[r_base + tid] = a;
        sh.log_a[tid] = log(a + 1e-8);
        sh.u[tid] = 1.0;
    }
    __syncthreads();

    // Step 4: v before u, u with the new v. M = ((norm + u) + v) / eps; logsumexp's max term is
    // max(a) / eps (division by eps > 0 keeps the order) and the others exp((a - max a) / eps).
    for (int it = 0; it < iters; ++it) {
        if (is_col) {
            const double vj = sh.v[tid];
            double m = -INFINITY;
            for (int a = 0; a < cl.t; ++a)
                m = fmax(m, (sh.norm[cl.tile0 + a * cl.s + j] + sh.u[cl.row0 + a]) + vj);
            sh.col_x[tid] = m;
        }
        __syncthreads();
#pragma unroll 4  // independent exps: several in flight hide the f64 latency
        for (int f = tid; f < num_e; f += nthreads) {
            const unsigned rc = sh.elem_rc[f];
            const int r = rc >> 16, c = rc & 0xffffu;
            const double a = (sh.norm[f] + sh.u[r]) + sh.v[c];
            sh.ex[f] = exp(__dmul_rn(a - sh.col_x[c], inv_eps));
        }
        __syncthreads();
        if (is_col) {
            double sum = 0.0;
            for (int a = 0; a < cl.t; ++a) sum += sh.ex[cl.tile0 + a * cl.s + j];
            const double lse = sh.col_x[tid] / eps + log(sum);
            sh.v[tid] = __dadd_rn(sh.v[tid], __dmul_rn(eps, log_b - lse));
        }
        __syncthreads();
        if (is_row) {
            const double ui = sh.u[tid];
            double m = -INFINITY;
            for (int b = 0; b < rl.s; ++b)
                m = fmax(m, (sh.norm[rl.tile0 + i * rl.s + b] + ui) + sh.v[rl.col0 + b]);
            sh.row_x[tid] = m;
        }
        __syncthreads();
#pragma unroll 4  // independent exps: several in flight hide the f64 latency
        for (int f = tid; f < num_e; f += nthreads) {
            const unsigned rc = sh.elem_rc[f];
            const int r = rc >> 16, c = rc & 0xffffu;
            const double a = (sh.norm[f] + sh.u[r]) + sh.v[c];
            sh.ex[f] = exp(__dmul_rn(a - sh.row_x[r], inv_eps));
        }
        __syncthreads();
        if (is_row) {
            double sum = 0.0;
            for (int b = 0; b < rl.s; ++b) sum += sh.ex[rl.tile0 + i * rl.s + b];
            const double lse = sh.row_x[tid] / eps + log(sum);
            sh.u[tid] = __dadd_rn(sh.u[tid], __dmul_rn(eps, sh.log_a[tid] - lse));
        }
        __syncthreads();
    }

    // Step 5: the plan exactly as the CPU forms it, then the first maximum per slot.
    for (int f = tid; f < num_e; f += nthreads) {
        const unsigned rc = sh.elem_rc[f];
        const double p = exp(((sh.norm[f] + sh.u[rc >> 16]) + sh.v[rc & 0xffffu]) / eps);
        sh.ex[f] = p;
        plan[e_base + f] = p;
    }
    __syncthreads();
    if (is_col) {
        int best = 0;
        for (int a = 1; a < cl.t; ++a)
            if (sh.ex[cl.tile0 + a * cl.s + j] > sh.ex[cl.tile0 + best * cl.s + j]) best = a;
        assign[c_base + tid] = best;
    }
}

// Scores given (kpg debug ot / bench ot --device cuda, and any caller with host scores).
extern "C" __global__ void sinkhorn_ot_f64(
    double* __restrict__ supply,                  // [total_targets]
    double* __restrict__ plan,                    // [total_elements]
    int* __restrict__ assign,                     // [total_slots]
    const double* __restrict__ score,             // [total_elements] problem p: [targets, slots]
    const long long* __restrict__ score_offsets,  // [num_problems + 1]
    const long long* __restrict__ row_offsets,    // [num_problems + 1]
    const long long* __restrict__ col_offsets,    // [num_problems + 1]
    const unsigned char* __restrict__ has_null,   // [num_problems]
    const int* __restrict__ block_first,          // [num_blocks + 1]
    int e_cap, int r_cap, int c_cap, double power, int top_k, double eps, double inv_eps,
    double log_b, int iters) {
    const Dists none = {};
    ot_block<false>(supply, plan, assign, nullptr, score, none, score_offsets, row_offsets,
                    col_offsets, has_null, block_first, e_cap, r_cap, c_cap, power, top_k, eps,
                    inv_eps, log_b, iters);
}

// Scores gathered from the K-step decoder distributions (f32, as the trainer keeps them), summed
// over the steps in f64; `score_out` (may be null) receives them.
extern "C" __global__ void sinkhorn_ot_gather_f32(
    double* __restrict__ supply,                  // [total_targets]
    double* __restrict__ plan,                    // [total_elements]
    int* __restrict__ assign,                     // [total_slots]
    double* __restrict__ score_out,               // [total_elements] or null
    const float* __restrict__ probs,              // [rows, vocab]
    const float* __restrict__ p_gen,              // [rows]
    const float* __restrict__ head0,              // [sum of source lengths]
    const long long* __restrict__ copy_rows,      // [rows, 3] (head0_at, src_at, len)
    const unsigned* __restrict__ src_ext,         // [tokens]
    const unsigned* __restrict__ target_ids,      // [total_targets, steps]
    const long long* __restrict__ first_row,      // [num_problems]
    long long vocab, int steps,
    const long long* __restrict__ score_offsets,  // [num_problems + 1]
    const long long* __restrict__ row_offsets,    // [num_problems + 1]
    const long long* __restrict__ col_offsets,    // [num_problems + 1]
    const unsigned char* __restrict__ has_null,   // [num_problems]
    const int* __restrict__ block_first,          // [num_blocks + 1]
    int e_cap, int r_cap, int c_cap, double power, int top_k, double eps, double inv_eps,
    double log_b, int iters) {
    const Dists d = {probs, p_gen, head0, copy_rows, src_ext, target_ids, first_row, vocab, steps};
    ot_block<true>(supply, plan, assign, score_out, nullptr, d, score_offsets, row_offsets,
                   col_offsets, has_null, block_first, e_cap, r_cap, c_cap, power, top_k, eps,
                   inv_eps, log_b, iters);
}
