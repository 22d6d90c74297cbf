// kernels/paged_attention.cu run on the CPU under cuda_emu.h against a plain f64 reference of the
// specification (src/backend/cpu/attention.rs): random block tables, NaN-poisoned unused cache
// slots and outputs, decode, short and prefill chunks, GQA 1/4/8/3, head dims 32..256 (with even
// ones that are not multiples of 8), tiles spanning several sequences, split-KV on and off.
// Build and run: tools/kernel-emu/run.sh
#include "cuda_emu.h"
#include "../../kernels/paged_attention.cu"

#include <cstdio>
#include <random>
#include <string>

using Entry = void (*)(bf16*, float*, float*, const bf16*, const bf16*, const bf16*, const unsigned*,
                       const unsigned*, const unsigned*, int, int, int, int, int, int, int, int, int,
                       int, int, int, int, int, int, int, float);

static Entry entry(int d, int r) {
#define E(D, R) \
    if (d == D && r == R) return paged_attention_bf16_d##D##_r##R;
    E(32, 1) E(32, 2) E(32, 4) E(32, 8) E(64, 1) E(64, 2) E(64, 4) E(64, 8)
    E(128, 1) E(128, 2) E(128, 4) E(128, 8) E(256, 1) E(256, 2) E(256, 4) E(256, 8)
#undef E
    std::abort();
}

struct Seq {
    int len;    // context length after this chunk
    int chunk;  // tokens of this chunk (the last `chunk` positions)
};

struct Case {
    std::string name;
    int num_heads, num_kv_heads, head_dim, block_size;
    std::vector<Seq> seqs;
    int tile_tokens, rows_h;  // the launch plan (rows_h <= group)
    int partition;            // 0: no split
    bool aligned;
    // Out-of-range device values (a sequence >= num_seqs, a position past max_context, a block
    // past num_blocks): the kernels must stay in bounds (AddressSanitizer watches); not compared.
    bool corrupt = false;
};

static std::mt19937 rng(7);
static float uni() { return std::uniform_real_distribution<float>(-1.f, 1.f)(rng); }
static bf16 b(float x) { return __float2bfloat16(x); }
static float f(bf16 x) { return __bfloat162float(x); }

static int run(const Case& c) {
    const int H = c.num_heads, KVH = c.num_kv_heads, hd = c.head_dim, bs = c.block_size;
    const int group = H / KVH;
    const int S = (int)c.seqs.size();
    int max_context = 0, T = 0, total_blocks = 0;
    for (auto& s : c.seqs) {
        max_context = std::max(max_context, s.len);
        T += s.chunk;
        total_blocks += (s.len + bs - 1) / bs;
    }
    const int max_blocks = (max_context + bs - 1) / bs + 1;  // a spare column, never read
    const int num_blocks = total_blocks + 3;                 // spare blocks, NaN throughout
    std::vector<unsigned> perm(num_blocks);
    for (int i = 0; i < num_blocks; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<unsigned> tables((size_t)S * max_blocks, 0xdeadbeefu);
    const size_t cache_n = (size_t)num_blocks * bs * KVH * hd;
    std::vector<bf16> kc(cache_n, b(NAN)), vc(cache_n, b(NAN));
    // kref/vref: [seq][pos][kvh][hd] as the reference sees them
    std::vector<std::vector<float>> kref(S), vref(S);
    int next = 0;
    std::vector<unsigned> token_seq, token_pos;
    for (int s = 0; s < S; ++s) {
        const int L = c.seqs[s].len;
        for (int lb = 0; lb < (L + bs - 1) / bs; ++lb) tables[(size_t)s * max_blocks + lb] = perm[next++];
        kref[s].resize((size_t)L * KVH * hd);
        vref[s].resize((size_t)L * KVH * hd);
        for (int p = 0; p < L; ++p) {
            const unsigned phys = tables[(size_t)s * max_blocks + p / bs];
            for (int g = 0; g < KVH; ++g)
                for (int d = 0; d < hd; ++d) {
                    const size_t at = (((size_t)phys * bs + p % bs) * KVH + g) * hd + d;
                    kc[at] = b(uni());
                    vc[at] = b(uni());
                    kref[s][((size_t)p * KVH + g) * hd + d] = f(kc[at]);
                    vref[s][((size_t)p * KVH + g) * hd + d] = f(vc[at]);
                }
        }
        for (int i = 0; i < c.seqs[s].chunk; ++i) {
            token_seq.push_back(s);
            token_pos.push_back(L - c.seqs[s].chunk + i);
        }
    }
    if (c.corrupt) {
        token_seq.back() = S + 5;
        token_pos.front() = 1000000000u;
        tables[0] = 0xfffffff0u;
    }
    std::vector<bf16> q((size_t)T * H * hd);
    for (auto& x : q) x = b(uni() * 2.f);
    // f64 reference
    std::vector<double> want((size_t)T * H * hd);
    const double scale = 1.0 / std::sqrt((double)hd);
    for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h) {
            if (c.corrupt) continue;
            const int s = token_seq[t], len = token_pos[t] + 1, g = h / group;
            std::vector<double> sc(len);
            double mx = -INFINITY;
            for (int j = 0; j < len; ++j) {
                double acc = 0;
                for (int d = 0; d < hd; ++d)
                    acc += (double)f(q[((size_t)t * H + h) * hd + d]) * kref[s][((size_t)j * KVH + g) * hd + d];
                sc[j] = acc * scale;
                mx = std::max(mx, sc[j]);
            }
            double sum = 0;
            for (auto& x : sc) sum += (x = std::exp(x - mx));
            for (int d = 0; d < hd; ++d) {
                double o = 0;
                for (int j = 0; j < len; ++j) o += sc[j] * vref[s][((size_t)j * KVH + g) * hd + d];
                want[((size_t)t * H + h) * hd + d] = o / sum;
            }
        }
    auto check = [&](const char* path, const std::vector<bf16>& out) {
        if (c.corrupt) {
            std::printf("%-44s %-6s ran in bounds\n", c.name.c_str(), path);
            return true;
        }
        double worst = 0, max_abs = 0;
        size_t worst_i = 0;
        for (size_t i = 0; i < out.size(); ++i) {
            const double g = f(out[i]), w = want[i];
            const double err = std::fabs(g - w);
            const double ratio = std::isfinite(g) ? err / (1e-2 + 1.6e-2 * std::fabs(w)) : INFINITY;
            if (!(ratio <= worst)) worst = ratio, worst_i = i;
            if (std::isfinite(g)) max_abs = std::max(max_abs, err);
        }
        const bool ok = worst <= 1.0;
        std::printf("%-44s %-6s max|err| %.2e worst/tol %.3f %s", c.name.c_str(), path, max_abs, worst,
                    ok ? "ok\n" : "FAIL");
        if (!ok) std::printf("  (at %zu: %g vs %g)\n", worst_i, f(out[worst_i]), want[worst_i]);
        return ok;
    };

    // The fast path, with the launch plan given by the case.
    const int rows_h = c.rows_h, head_chunks = (group + rows_h - 1) / rows_h;
    int R = 1;
    while (R < rows_h * c.tile_tokens) R *= 2;
    int D = 32;
    while (D < hd) D *= 2;
    const int partition = c.partition ? c.partition : max_context;
    const int num_splits = (max_context + partition - 1) / partition;
    int shift = -1;
    if ((bs & (bs - 1)) == 0) shift = __builtin_ctz(bs);
    std::vector<bf16> out((size_t)T * H * hd, b(NAN));
    std::vector<float> ml((size_t)T * H * num_splits * 2, NAN), pacc((size_t)T * H * num_splits * hd, NAN);
    const float q_scale = (float)(scale / std::log(2.0));
    Entry k = entry(D, R);
    emu::launch({(unsigned)((T + c.tile_tokens - 1) / c.tile_tokens), (unsigned)(KVH * head_chunks),
                 (unsigned)num_splits},
                {128, 1, 1}, [&] {
                    k(out.data(), ml.data(), pacc.data(), q.data(), kc.data(), vc.data(), token_seq.data(),
                      token_pos.data(), tables.data(), T, S, H, KVH, hd, bs, shift, max_blocks, num_blocks,
                      max_context, c.tile_tokens, rows_h, head_chunks, partition, num_splits, c.aligned,
                      q_scale);
                });
    if (num_splits > 1)
        emu::launch({(unsigned)T, (unsigned)H, 1}, {128, 1, 1}, [&] {
            paged_attention_reduce_bf16(out.data(), ml.data(), pacc.data(), token_seq.data(), token_pos.data(),
                                        S, H, hd, max_context, partition, num_splits);
        });
    int failed = !check("fast", out);

    std::vector<bf16> naive((size_t)T * H * hd, b(NAN));
    emu::launch({(unsigned)T, (unsigned)H, 1}, {32, 1, 1}, [&] {
        paged_attention_naive_bf16(naive.data(), q.data(), kc.data(), vc.data(), token_seq.data(),
                                   token_pos.data(), tables.data(), S, H, KVH, hd, bs, max_blocks, num_blocks,
                                   max_context, (float)scale);
    });
    failed += !check("naive", naive);
    return failed;
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::vector<Case> cases = {
        {"decode gqa1 d128 bs16 lens 1,17,333", 4, 4, 128, 16, {{1, 1}, {17, 1}, {333, 1}}, 1, 1, 0, true},
        {"decode gqa1 d128 split64", 2, 2, 128, 16, {{1, 1}, {17, 1}, {333, 1}}, 1, 1, 64, true},
        {"decode gqa4 d64 bs16 split100", 8, 2, 64, 16, {{5, 1}, {260, 1}}, 1, 4, 100, true},
        {"decode gqa8 d128 bs7", 8, 1, 128, 7, {{1, 1}, {70, 1}, {201, 1}}, 1, 8, 0, true},
        {"decode gqa8 d32 bs1", 16, 2, 32, 1, {{40, 1}, {3, 1}}, 1, 8, 0, true},
        {"prefill gqa1 d64 tile8", 2, 2, 64, 16, {{45, 45}, {19, 19}}, 8, 1, 0, true},
        {"prefill+decode gqa1 d128 tile4 split32", 2, 2, 128, 16, {{37, 37}, {50, 1}, {9, 3}}, 4, 1, 32, true},
        {"chunks gqa4 d96 tile2 (tiles span seqs)", 4, 1, 96, 16, {{20, 3}, {33, 5}, {1, 1}}, 2, 4, 0, true},
        {"chunks gqa3 d80 rows_h 3 tile2", 6, 2, 80, 5, {{23, 4}, {12, 2}}, 2, 3, 0, true},
        {"gqa8 rows_h 4 (two head chunks)", 8, 1, 64, 16, {{30, 2}, {7, 1}}, 2, 4, 0, true},
        {"d256 gqa2 tile4 split48", 4, 2, 256, 16, {{100, 6}, {40, 2}}, 4, 2, 48, true},
        {"d34 unaligned gqa1", 2, 2, 34, 16, {{29, 3}, {5, 1}}, 2, 1, 0, false},
        {"d50 unaligned gqa2 split16", 4, 2, 50, 3, {{45, 2}, {18, 18}}, 4, 2, 16, false},
        {"d128 unaligned path gqa1", 2, 2, 128, 16, {{50, 2}}, 2, 1, 0, false},
        {"d2 gqa1 bs4", 2, 2, 2, 4, {{11, 11}}, 8, 1, 0, false},
        {"d256 gqa8 r8", 8, 1, 256, 16, {{35, 1}, {64, 1}}, 1, 8, 0, true},
        {"corrupt decode (bounds only)", 2, 2, 64, 16, {{40, 1}, {9, 1}}, 1, 1, 16, true, true},
        {"corrupt prefill (bounds only)", 2, 1, 34, 4, {{21, 21}, {9, 2}}, 4, 2, 0, false, true},
        {"long decode 2100 split256", 2, 1, 128, 16, {{2100, 1}, {1, 1}}, 1, 2, 256, true},
        {"long decode 1500 bs1 (window reloads)", 1, 1, 64, 1, {{1500, 1}}, 1, 1, 0, true},
        {"long prefill chunk 300 after 300 split128", 1, 1, 32, 16, {{600, 300}}, 8, 1, 128, true},
    };
    int failed = 0;
    for (auto& c : cases) {
        if (argc > 1 && c.name.find(argv[1]) == std::string::npos) continue;
        failed += run(c);
    }
    std::printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
