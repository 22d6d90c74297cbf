// The LLaMA block's small kernels (rmsnorm, rope, activation, embedding, label_head, argmax) run on
// the CPU under cuda_emu.h against plain double references of their CPU twins (src/backend/cpu/),
// on awkward sizes with NaN-poisoned outputs. Build and run: tools/kernel-emu/run.sh llama_ops
#include "cuda_emu.h"
#include "emu_check.h"
#include "../../kernels/rmsnorm.cu"
#include "../../kernels/rope.cu"
#include "../../kernels/activation.cu"
#include "../../kernels/embedding.cu"
#include "../../kernels/label_head.cu"
#include "../../kernels/argmax.cu"

#include <cstdio>
#include <random>
#include <string>

static std::mt19937 rng(7);
static float uni(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }
static bf16 b(float x) { return __float2bfloat16(x); }
static float f(bf16 x) { return __bfloat162float(x); }

static void rmsnorm_case(int rows, int dim) {
    std::vector<float> x(rows * dim), w(dim);
    std::vector<bf16> delta(rows * dim), out(rows * dim, b(NAN));
    for (auto& v : x) v = uni(2);
    for (auto& v : w) v = uni(1);
    for (auto& v : delta) v = b(uni(1));
    std::vector<double> want(rows * dim), want2(rows * dim), got(rows * dim);
    for (int r = 0; r < rows; ++r) {
        double s = 0, s2 = 0;
        for (int i = 0; i < dim; ++i) {
            s += (double)x[r * dim + i] * x[r * dim + i];
            const double v = (double)x[r * dim + i] + f(delta[r * dim + i]);
            s2 += v * v;
        }
        const double inv = 1 / std::sqrt(s / dim + 1e-5), inv2 = 1 / std::sqrt(s2 / dim + 1e-5);
        for (int i = 0; i < dim; ++i) {
            want[r * dim + i] = w[i] * x[r * dim + i] * inv;
            want2[r * dim + i] = w[i] * ((double)x[r * dim + i] + f(delta[r * dim + i])) * inv2;
        }
    }
    emu::launch({(unsigned)rows, 1, 1}, {256, 1, 1}, [&] { rmsnorm_f32_bf16(out.data(), x.data(), w.data(), dim, 1e-5f); });
    for (int i = 0; i < rows * dim; ++i) got[i] = f(out[i]);
    check("rmsnorm " + std::to_string(rows) + "x" + std::to_string(dim), got, want, 1e-2, 1.6e-2);
    std::fill(out.begin(), out.end(), b(NAN));
    emu::launch({(unsigned)rows, 1, 1}, {256, 1, 1}, [&] { residual_rmsnorm_f32_bf16(out.data(), x.data(), delta.data(), w.data(), dim, 1e-5f); });
    for (int i = 0; i < rows * dim; ++i) got[i] = f(out[i]);
    check("residual_rmsnorm " + std::to_string(rows) + "x" + std::to_string(dim), got, want2, 1e-2, 1.6e-2);
}

static void rope_case(int tokens, int heads, int kvh, int hd, int slots) {
    const int qd = heads * hd, kd = kvh * hd, row = qd + 2 * kd, half = hd / 2;
    std::vector<bf16> qkv(tokens * row), q(tokens * qd, b(NAN)), kc(slots * kd, b(NAN)), vc(slots * kd, b(NAN));
    for (auto& v : qkv) v = b(uni(1));
    std::vector<unsigned> pos(tokens);
    std::vector<long long> slot(tokens);
    std::vector<float> inv(half);
    for (int i = 0; i < half; ++i) inv[i] = (float)(1 / std::pow(10000.0, 2.0 * i / hd));
    std::vector<int> perm(slots);
    for (int i = 0; i < slots; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int t = 0; t < tokens; ++t) {
        pos[t] = rng() % 5000;
        slot[t] = t % 4 == 3 ? -1 : perm[t];
    }
    std::vector<double> wq(tokens * qd), wk(slots * kd, NAN), wv(slots * kd, NAN);
    for (int t = 0; t < tokens; ++t)
        for (int h = 0; h < heads + kvh; ++h)
            for (int i = 0; i < half; ++i) {
                const float a = inv[i] * (float)pos[t];
                const double c = std::cos(a), s = std::sin(a);
                const double x1 = f(qkv[t * row + h * hd + i]), x2 = f(qkv[t * row + h * hd + i + half]);
                const double r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
                if (h < heads) {
                    wq[t * qd + h * hd + i] = r1;
                    wq[t * qd + h * hd + i + half] = r2;
                } else if (slot[t] >= 0) {
                    const int kh = h - heads;
                    wk[slot[t] * kd + kh * hd + i] = r1;
                    wk[slot[t] * kd + kh * hd + i + half] = r2;
                }
            }
    for (int t = 0; t < tokens; ++t)
        if (slot[t] >= 0)
            for (int i = 0; i < kd; ++i) wv[slot[t] * kd + i] = f(qkv[t * row + qd + kd + i]);
    emu::launch({(unsigned)tokens, 1, 1}, {128, 1, 1}, [&] {
        rope_write_kv_bf16(q.data(), kc.data(), vc.data(), qkv.data(), pos.data(), slot.data(), inv.data(), heads, kvh, hd);
    });
    auto to_d = [](const std::vector<bf16>& v) { std::vector<double> o; for (auto x : v) o.push_back(f(x)); return o; };
    const std::string n = std::to_string(heads) + "/" + std::to_string(kvh) + " heads of " + std::to_string(hd);
    check("rope q " + n, to_d(q), wq, 1e-2, 1.6e-2);
    check("rope k cache " + n, to_d(kc), wk, 1e-2, 1.6e-2);
    check("v cache " + n, to_d(vc), wv, 0, 0);
}

static void elementwise_case(int rows, int inter) {
    std::vector<bf16> gu(rows * 2 * inter), out(rows * inter, b(NAN)), delta(rows * inter);
    for (auto& v : gu) v = b(uni(4));
    for (auto& v : delta) v = b(uni(1));
    std::vector<float> x(rows * inter);
    for (auto& v : x) v = uni(3);
    std::vector<double> want(rows * inter), got(rows * inter), wx(rows * inter), gx(rows * inter);
    for (int r = 0; r < rows; ++r)
        for (int i = 0; i < inter; ++i) {
            const double g = f(gu[r * 2 * inter + i]), u = f(gu[r * 2 * inter + inter + i]);
            want[r * inter + i] = g / (1 + std::exp(-g)) * u;
            wx[r * inter + i] = (double)(x[r * inter + i] + f(delta[r * inter + i]));
        }
    const int n = rows * inter;
    emu::launch({(unsigned)((n + 255) / 256), 1, 1}, {256, 1, 1}, [&] { silu_mul_bf16(out.data(), gu.data(), rows, inter); });
    emu::launch({(unsigned)((n + 255) / 256), 1, 1}, {256, 1, 1}, [&] { residual_add_f32_bf16(x.data(), delta.data(), n); });
    for (int i = 0; i < n; ++i) { got[i] = f(out[i]); gx[i] = x[i]; }
    check("silu_mul " + std::to_string(rows) + "x" + std::to_string(inter), got, want, 1e-2, 1.6e-2);
    check("residual_add " + std::to_string(n), gx, wx, 1e-6, 1e-6);
}

static void embedding_label_argmax_case(int tokens, int vocab, int dim, int num_out) {
    std::vector<bf16> table(vocab * dim);
    for (auto& v : table) v = b(uni(1));
    std::vector<unsigned> ids(tokens), rows(num_out), lids(num_out);
    for (auto& v : ids) v = rng() % vocab;
    for (auto& v : rows) v = rng() % tokens;
    for (auto& v : lids) v = rng() % vocab;
    std::vector<float> emb(tokens * dim, NAN), norm(dim), out(num_out, NAN);
    for (auto& v : norm) v = uni(1);
    emu::launch({(unsigned)tokens, 1, 1}, {256, 1, 1}, [&] { embedding_bf16(emb.data(), ids.data(), table.data(), dim); });
    std::vector<double> ge(emb.begin(), emb.end()), we(tokens * dim);
    for (int t = 0; t < tokens; ++t)
        for (int i = 0; i < dim; ++i) we[t * dim + i] = f(table[ids[t] * dim + i]);
    check("embedding " + std::to_string(tokens) + "x" + std::to_string(dim), ge, we, 0, 0);
    // The label head over the embeddings as the residual stream.
    emu::launch({(unsigned)num_out, 1, 1}, {256, 1, 1}, [&] {
        label_head_bf16(out.data(), emb.data(), rows.data(), lids.data(), norm.data(), table.data(), dim, 1e-5f);
    });
    std::vector<double> gl(out.begin(), out.end()), wl(num_out);
    for (int o = 0; o < num_out; ++o) {
        double s = 0, d = 0;
        for (int i = 0; i < dim; ++i) {
            const double v = emb[rows[o] * dim + i];
            s += v * v;
        }
        const double inv = 1 / std::sqrt(s / dim + 1e-5);
        for (int i = 0; i < dim; ++i) d += norm[i] * emb[rows[o] * dim + i] * inv * f(table[lids[o] * dim + i]);
        wl[o] = d;
    }
    check("label head " + std::to_string(num_out) + " of " + std::to_string(vocab), gl, wl, 1e-4, 1e-4);
    // Argmax over the embedding rows with planted ties, across threads (3, dim - 2) and within one
    // thread's stride (3, 259): the first maximum wins.
    if (dim > 260)
        for (int t = 0; t < tokens; ++t) emb[t * dim + 3] = emb[t * dim + 259] = emb[t * dim + dim - 2] = 100;
    std::vector<unsigned> am(tokens, ~0u);
    emu::launch({(unsigned)tokens, 1, 1}, {256, 1, 1}, [&] { argmax_f32(am.data(), emb.data(), dim); });
    std::vector<double> ga, wa;
    for (int t = 0; t < tokens; ++t) {
        int best = 0;
        for (int i = 0; i < dim; ++i) if (emb[t * dim + i] > emb[t * dim + best]) best = i;
        ga.push_back(am[t]);
        wa.push_back(best);
    }
    check("argmax " + std::to_string(tokens) + "x" + std::to_string(dim), ga, wa, 0, 0);
}

int main() {
    rmsnorm_case(1, 7);
    rmsnorm_case(3, 300);
    rmsnorm_case(2, 4100);
    rope_case(9, 4, 2, 32, 16);
    rope_case(5, 8, 1, 64, 9);
    rope_case(3, 4, 4, 128, 4);
    elementwise_case(1, 1);
    elementwise_case(3, 345);
    embedding_label_argmax_case(1, 3, 7, 1);
    embedding_label_argmax_case(5, 50, 300, 9);
    std::printf("%d failures\n", emu_failures);
    return emu_failures != 0;
}
