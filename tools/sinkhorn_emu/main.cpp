// The host side of the emulation: reads problems as text, packs blocks as
// src/backend/cuda/sinkhorn.rs (OtLayout) does, runs each block with one thread per CUDA thread,
// prints JSON. `emu` solves given scores; `emu gather` gathers them from decoder distributions.
static size_t shared_bytes(size_t e, size_t r, size_t c) { return 8 * (2 * e + 4 * r + 3 * c) + 4 * (e + r); }

int main_gather();
int main(int argc, char** argv) {
    if (argc > 1) return main_gather();
    int P; double tau, eps; int top_k, iters;
    if (scanf("%d %lf %d %lf %d", &P, &tau, &top_k, &eps, &iters) != 5) return 1;
    std::vector<long long> so{0}, ro{0}, co{0}; std::vector<unsigned char> hn; std::vector<double> score;
    for (int p = 0; p < P; ++p) {
        int t, s, n; scanf("%d %d %d", &t, &s, &n);
        for (int k = 0; k < t * s; ++k) { double x; scanf("%lf", &x); score.push_back(x); }
        so.push_back(so.back() + t * s); ro.push_back(ro.back() + t); co.push_back(co.back() + s); hn.push_back(n);
    }
    int maxs = 1; for (int p = 0; p < P; ++p) maxs = std::max<int>(maxs, co[p + 1] - co[p]);
    int bd = std::max(64, (maxs + 31) / 32 * 32);
    std::vector<int> bf{0}; size_t be = 0, br = 0, bc = 0, ec = 0, rc = 0, cc = 0;
    for (int p = 0; p < P; ++p) {
        size_t t = ro[p + 1] - ro[p], s = co[p + 1] - co[p];
        bool fits = bc + s <= (size_t)bd && shared_bytes(be + t * s, br + t, bc + s) <= (32 << 10);
        if (bc > 0 && !fits) { bf.push_back(p); ec = std::max(ec, be); rc = std::max(rc, br); cc = std::max(cc, bc); be = br = bc = 0; }
        be += t * s; br += t; bc += s;
    }
    bf.push_back(P); ec = std::max(ec, be); rc = std::max(rc, br); cc = std::max(cc, bc);
    std::vector<double> supply(ro.back(), NAN), plan(so.back(), NAN); std::vector<int> assign(co.back(), -1);
    double log_b = std::log(1.0 + 1e-8);
    for (size_t b = 0; b + 1 < bf.size(); ++b) {
        blockIdx = {(unsigned)b, 0, 0}; blockDim = {(unsigned)bd, 1, 1};
        memset(smem_raw, 0xff, sizeof smem_raw);  // poison shared memory
        g_bar = std::make_unique<std::barrier<>>(bd);
        std::vector<std::thread> th;
        for (int t = 0; t < bd; ++t)
            th.emplace_back([&, t] {
                threadIdx = {(unsigned)t, 0, 0};
                sinkhorn_ot_f64(supply.data(), plan.data(), assign.data(), score.data(), so.data(), ro.data(), co.data(), hn.data(), bf.data(),
                                (int)ec, (int)rc, (int)cc, 1.0 / tau, top_k, eps, 1.0 / eps, log_b, iters);
            });
        for (auto& x : th) x.join();
    }
    printf("{\"results\": [");
    for (int p = 0; p < P; ++p) {
        printf("%s{\"supply\": [", p ? ", " : "");
        for (long long k = ro[p]; k < ro[p + 1]; ++k) printf("%s%.17g", k > ro[p] ? ", " : "", supply[k]);
        printf("], \"plan\": [");
        for (long long k = so[p]; k < so[p + 1]; ++k) printf("%s%.17g", k > so[p] ? ", " : "", plan[k]);
        printf("], \"assign\": [");
        for (long long k = co[p]; k < co[p + 1]; ++k) printf("%s%d", k > co[p] ? ", " : "", assign[k]);
        printf("]}");
    }
    printf("]}\n");
}

// Gather mode: rows vocab steps / probs / p_gen / head0 (n then values) / src_ext (n then values) /
// copy rows (rows x 3) / P tau top_k eps iters / per problem: t s has_null first_row ids[t*steps]
int main_gather() {
    long long rows, vocab; int steps;
    scanf("%lld %lld %d", &rows, &vocab, &steps);
    std::vector<float> probs(rows * vocab), p_gen(rows);
    for (auto& x : probs) scanf("%f", &x);
    for (auto& x : p_gen) scanf("%f", &x);
    long long nh; scanf("%lld", &nh); std::vector<float> head0(nh); for (auto& x : head0) scanf("%f", &x);
    long long ns; scanf("%lld", &ns); std::vector<unsigned> src(ns); for (auto& x : src) scanf("%u", &x);
    std::vector<long long> cr(rows * 3); for (auto& x : cr) scanf("%lld", &x);
    int P; double tau, eps; int top_k, iters;
    scanf("%d %lf %d %lf %d", &P, &tau, &top_k, &eps, &iters);
    std::vector<long long> so{0}, ro{0}, co{0}, fr; std::vector<unsigned char> hn; std::vector<unsigned> ids;
    for (int p = 0; p < P; ++p) {
        int t, s, n; long long f; scanf("%d %d %d %lld", &t, &s, &n, &f);
        for (int k = 0; k < t * steps; ++k) { unsigned x; scanf("%u", &x); ids.push_back(x); }
        so.push_back(so.back() + t * s); ro.push_back(ro.back() + t); co.push_back(co.back() + s); hn.push_back(n); fr.push_back(f);
    }
    int maxs = 1; for (int p = 0; p < P; ++p) maxs = std::max<int>(maxs, co[p + 1] - co[p]);
    int bd = std::max(64, (maxs + 31) / 32 * 32);
    std::vector<int> bf{0}; size_t be = 0, br = 0, bc = 0, ec = 0, rc = 0, cc = 0;
    for (int p = 0; p < P; ++p) {
        size_t t = ro[p + 1] - ro[p], s = co[p + 1] - co[p];
        bool fits = bc + s <= (size_t)bd && shared_bytes(be + t * s, br + t, bc + s) <= (32 << 10);
        if (bc > 0 && !fits) { bf.push_back(p); ec = std::max(ec, be); rc = std::max(rc, br); cc = std::max(cc, bc); be = br = bc = 0; }
        be += t * s; br += t; bc += s;
    }
    bf.push_back(P); ec = std::max(ec, be); rc = std::max(rc, br); cc = std::max(cc, bc);
    std::vector<double> supply(ro.back(), NAN), plan(so.back(), NAN), score(so.back(), NAN); std::vector<int> assign(co.back(), -1);
    double log_b = std::log(1.0 + 1e-8);
    for (size_t b = 0; b + 1 < bf.size(); ++b) {
        blockIdx = {(unsigned)b, 0, 0}; blockDim = {(unsigned)bd, 1, 1};
        memset(smem_raw, 0xff, sizeof smem_raw);
        g_bar = std::make_unique<std::barrier<>>(bd);
        std::vector<std::thread> th;
        for (int t = 0; t < bd; ++t)
            th.emplace_back([&, t] {
                threadIdx = {(unsigned)t, 0, 0};
                sinkhorn_ot_gather_f32(supply.data(), plan.data(), assign.data(), score.data(), probs.data(), p_gen.data(), head0.data(), cr.data(), src.data(), ids.data(), fr.data(), vocab, steps,
                                       so.data(), ro.data(), co.data(), hn.data(), bf.data(), (int)ec, (int)rc, (int)cc, 1.0 / tau, top_k, eps, 1.0 / eps, log_b, iters);
            });
        for (auto& x : th) x.join();
    }
    printf("{\"scores\": [");
    for (size_t k = 0; k < score.size(); ++k) printf("%s%.17g", k ? ", " : "", score[k]);
    printf("], \"results\": [");
    for (int p = 0; p < P; ++p) {
        printf("%s{\"supply\": [", p ? ", " : "");
        for (long long k = ro[p]; k < ro[p + 1]; ++k) printf("%s%.17g", k > ro[p] ? ", " : "", supply[k]);
        printf("], \"plan\": [");
        for (long long k = so[p]; k < so[p + 1]; ++k) printf("%s%.17g", k > so[p] ? ", " : "", plan[k]);
        printf("], \"assign\": [");
        for (long long k = co[p]; k < co[p + 1]; ++k) printf("%s%d", k > co[p] ? ", " : "", assign[k]);
        printf("]}");
    }
    printf("]}\n");
    return 0;
}
