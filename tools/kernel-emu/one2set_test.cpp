// The One2Set kernels of kernels/one2set_layers.cu, one2set_decode.cu and one2set_finish.cu (the
// WMMA encoder attention has its own harness, encoder_attention_test.cpp) run on the CPU under
// cuda_emu.h against plain double references of their CPU twins (layer functions in
// src/backend/cpu/, slot_attention_reference and segment_attention_reference in
// src/backend/cpu/segment_attention.rs, pick_reference in src/one2set/decode.rs), with the launch
// shapes of src/backend/cuda/one2set_*.rs, on awkward sizes (documents of 1 and 65 tokens, 33 slots
// of one document, head dims 8..128), NaN-poisoned outputs and caches, and planted ties. Build and
// run: tools/kernel-emu/run.sh
#include "cuda_emu.h"
#include "emu_check.h"
#include "emu_vec.h"
#include "../../kernels/one2set_layers.cu"
// The cross-attention's dynamic shared memory, in the kernel's (anonymous) namespace.
namespace {
EMU_DYNAMIC_SHARED(float, smem, 160 * 1024);  // CROSS_MAX_SHARED in one2set_attention.rs
}
#include "../../kernels/one2set_decode.cu"
#include "../../kernels/one2set_finish.cu"

#include <cstdio>
#include <map>
#include <new>
#include <random>
#include <string>

static std::mt19937 rng(11);
static float uni(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }
static int below(int n) { return (int)(rng() % (unsigned)n); }
static bf16 b(float x) { return __float2bfloat16(x); }
static float f(bf16 x) { return __bfloat162float(x); }


static std::string str(int x) { return std::to_string(x); }

template <class V>
static std::vector<double> to_d(const V& v) {
    std::vector<double> o;
    for (auto x : v) o.push_back(f(x));
    return o;
}
template <class V>
static std::vector<double> as_d(const V& v) { return std::vector<double>(v.begin(), v.end()); }

static const dim3 ROWS_BLOCK{128, 1, 1};  // ROW_THREADS in one2set_layers.rs

// ---------------------------------------------------------------- one2set_layers.cu

static void layers_case(int rows, int d, int n) {
    const std::string shape = str(rows) + "x" + str(d);
    const int vocab = 50, n_pos = 10, n_codes = 7;
    const dim3 grid{(unsigned)rows, 1, 1};
    // Embedding with positions, every fifth row without.
    std::vector<bf16> embed(vocab * d);
    for (auto& v : embed) v = b(uni(0.1f));
    std::vector<float> table(n_pos * d);
    for (auto& v : table) v = uni(1);
    std::vector<int> ids(rows), pos(rows);
    for (int r = 0; r < rows; ++r) {
        ids[r] = below(vocab);
        pos[r] = r % 5 == 0 ? -1 : below(n_pos);
    }
    const float scale = std::sqrt((float)d);
    std::vector<bf16> out(rows * d, b(NAN));
    emu::launch(grid, ROWS_BLOCK, [&] {
        one2set_embed_bf16(out.data(), ids.data(), pos.data(), embed.data(), table.data(), scale, d);
    });
    std::vector<double> want(rows * d);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < d; ++c)
            want[r * d + c] = (double)scale * f(embed[ids[r] * d + c]) + (pos[r] < 0 ? 0.0 : table[pos[r] * d + c]);
    check("embed " + shape, to_d(out), want, 1e-2, 1.6e-2);

    // LayerNorm over a residual stream with a large mean.
    std::vector<float> x(rows * d), w(d), bias(d);
    for (auto& v : x) v = uni(3) + 5;
    for (auto& v : w) v = uni(1);
    for (auto& v : bias) v = uni(0.5f);
    std::fill(out.begin(), out.end(), b(NAN));
    emu::launch(grid, ROWS_BLOCK, [&] { one2set_layernorm_bf16(out.data(), x.data(), w.data(), bias.data(), d, 1e-5f); });
    for (int r = 0; r < rows; ++r) {
        double mean = 0, var = 0;
        for (int c = 0; c < d; ++c) mean += x[r * d + c];
        mean /= d;
        for (int c = 0; c < d; ++c) var += (x[r * d + c] - mean) * (x[r * d + c] - mean);
        const double inv = 1 / std::sqrt(var / d + 1e-5);
        for (int c = 0; c < d; ++c) want[r * d + c] = (x[r * d + c] - mean) * inv * w[c] + bias[c];
    }
    check("layernorm " + shape, to_d(out), want, 1e-2, 1.6e-2);

    // Bias (+ ReLU) in place over n columns.
    std::vector<bf16> y0(rows * n);
    for (auto& v : y0) v = b(uni(1));
    std::vector<float> nb(n);
    for (auto& v : nb) v = uni(0.5f);
    for (int relu = 0; relu < 2; ++relu) {
        std::vector<bf16> y = y0;
        emu::launch(grid, ROWS_BLOCK, [&] { one2set_bias_bf16(y.data(), nb.data(), n, relu); });
        std::vector<double> wy(rows * n);
        for (int i = 0; i < rows * n; ++i) {
            const double s = (double)f(y0[i]) + nb[i % n];
            wy[i] = relu ? std::max(s, 0.0) : s;
        }
        check(std::string(relu ? "bias+relu " : "bias ") + str(rows) + "x" + str(n), to_d(y), wy, 1e-2, 1.6e-2);
    }

    // Residual: start (over NaN) and accumulate.
    std::vector<bf16> yd(rows * d);
    for (auto& v : yd) v = b(uni(1));
    std::vector<float> x0(rows * d);
    for (auto& v : x0) v = uni(2);
    for (int acc = 0; acc < 2; ++acc) {
        std::vector<float> xs = acc ? x0 : std::vector<float>(rows * d, NAN);
        emu::launch(grid, ROWS_BLOCK, [&] { one2set_residual_bf16(xs.data(), yd.data(), bias.data(), d, acc); });
        for (int i = 0; i < rows * d; ++i) want[i] = (acc ? (double)x0[i] : 0.0) + f(yd[i]) + bias[i % d];
        check(std::string(acc ? "residual += " : "residual = ") + shape, as_d(xs), want, 1e-6, 1e-6);
    }

    // Decoder input: + bias + position + control code of slot % num_codes.
    std::vector<float> codes(n_codes * d), pos_row(d), xs(rows * d, NAN);
    for (auto& v : codes) v = uni(1);
    for (auto& v : pos_row) v = uni(1);
    std::vector<int> slots(rows);
    for (int r = 0; r < rows; ++r) slots[r] = r * 3 + 1;
    emu::launch(grid, ROWS_BLOCK, [&] {
        one2set_decoder_input_bf16(xs.data(), yd.data(), bias.data(), pos_row.data(), codes.data(), slots.data(), d, n_codes);
    });
    for (int i = 0; i < rows * d; ++i) {
        const int r = i / d, c = i % d;
        want[i] = (double)f(yd[i]) + bias[c] + pos_row[c] + codes[(slots[r] % n_codes) * d + c];
    }
    check("decoder input " + shape, as_d(xs), want, 1e-6, 1e-6);
}

// ---------------------------------------------------------------- one2set_decode.cu: slot attention

// heads x hd, keys 0..=step of the rows' slots (distinct, ascending), caches of `slots` slots.
static void slot_case(int heads, int hd, int step, int max_len, int slots, std::vector<int> row_slots) {
    const int d = heads * hd, rows = (int)row_slots.size();
    const std::string name = str(heads) + "x" + str(hd) + " step " + str(step) + " rows " + str(rows);
    // Earlier steps hold values; `step` and later ones are NaN, which the kernel must not read.
    std::vector<bf16> kc((size_t)slots * max_len * d, b(NAN)), vc = kc;
    for (int s = 0; s < slots; ++s)
        for (int t = 0; t < step; ++t)
            for (int c = 0; c < d; ++c) {
                kc[((size_t)s * max_len + t) * d + c] = b(uni(1));
                vc[((size_t)s * max_len + t) * d + c] = b(uni(1));
            }
    std::vector<bf16> qkv(rows * 3 * d), out(rows * d, b(NAN));
    for (auto& v : qkv) v = b(uni(1));
    std::vector<float> bias(3 * d);
    for (auto& v : bias) v = uni(0.3f);
    // The twin: q with its bias; k and v with theirs, rounded as the cache stores them.
    std::vector<double> wk = to_d(kc), wv = to_d(vc), want(rows * d);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < d; ++c) {
            const size_t at = ((size_t)row_slots[r] * max_len + step) * d + c;
            wk[at] = f(b(f(qkv[r * 3 * d + d + c]) + bias[d + c]));
            wv[at] = f(b(f(qkv[r * 3 * d + 2 * d + c]) + bias[2 * d + c]));
        }
    for (int r = 0; r < rows; ++r)
        for (int h = 0; h < heads; ++h) {
            const size_t base = (size_t)row_slots[r] * max_len * d + h * hd;
            std::vector<double> s(step + 1);
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= step; ++j) {
                double dot = 0;
                for (int c = 0; c < hd; ++c)
                    dot += ((double)f(qkv[r * 3 * d + h * hd + c]) + bias[h * hd + c]) * wk[base + (size_t)j * d + c];
                s[j] = dot / std::sqrt((double)hd);
                mx = std::max(mx, s[j]);
            }
            for (auto& v : s) sum += (v = std::exp(v - mx));
            for (int c = 0; c < hd; ++c) {
                double acc = 0;
                for (int j = 0; j <= step; ++j) acc += s[j] / sum * wv[base + (size_t)j * d + c];
                want[r * d + h * hd + c] = acc;
            }
        }
    const float scale = 1.0f / std::sqrt((float)hd);
    emu::launch({(unsigned)rows, 1, 1}, {(unsigned)(32 * heads), 1, 1}, [&] {
        one2set_slot_attention_bf16(out.data(), kc.data(), vc.data(), qkv.data(), bias.data(), row_slots.data(),
                                    step, max_len, heads, hd, scale);
    });
    check("slot attention " + name, to_d(out), want, 1e-2, 1.6e-2);
    // The whole caches: the rows' entries at `step` written exactly, nothing else touched.
    check("slot cache k " + name, to_d(kc), wk, 0, 0);
    check("slot cache v " + name, to_d(vc), wv, 0, 0);
}

// ---------------------------------------------------------------- one2set_decode.cu: cross attention

using CrossEntry = void (*)(bf16*, float*, const bf16*, const float*, const bf16*, const int*, const int*,
                            const int*, int, int, int, float);
static CrossEntry cross_entry(int hd) {
    switch (hd) {
        case 16: return one2set_cross_attention_hd16_bf16;
        case 32: return one2set_cross_attention_hd32_bf16;
        case 64: return one2set_cross_attention_hd64_bf16;
        case 128: return one2set_cross_attention_hd128_bf16;
    }
    std::abort();
}

// Documents of `lens` tokens with `rows_per_doc` active slots each (0: no group).
static void cross_case(int heads, int hd, const std::vector<int>& lens, const std::vector<int>& rows_per_doc,
                       bool with_copy) {
    const int d = heads * hd, docs = (int)lens.size();
    int tokens = 0, rows = 0, max_len = 0, widest = 0;
    std::vector<int> doc_start, groups;
    for (int doc = 0; doc < docs; ++doc) {
        doc_start.push_back(tokens);
        if (rows_per_doc[doc] > 0) groups.insert(groups.end(), {rows, rows_per_doc[doc], doc});
        tokens += lens[doc];
        rows += rows_per_doc[doc];
        max_len = std::max(max_len, lens[doc]);
        widest = std::max(widest, rows_per_doc[doc]);
    }
    const int n_groups = (int)groups.size() / 3;
    const int stride = max_len + 3;  // copy_stride past max_len: the tail must stay NaN
    const int score_ld = (max_len + 3) / 4 * 4;
    // cross_shared_bytes in one2set_attention.rs
    const size_t shared = (32 * (size_t)hd + std::min(widest, 32) * (size_t)score_ld) * 4;
    Vec<bf16> q(rows * d), kv((size_t)tokens * 2 * d), out(rows * d, b(NAN));
    for (auto& v : q) v = b(uni(1));
    for (auto& v : kv) v = b(uni(1));
    std::vector<float> q_bias(d), copy((size_t)rows * stride, NAN);
    for (auto& v : q_bias) v = uni(0.3f);
    std::vector<double> want(rows * d), wcopy(copy.size(), NAN);
    for (int gi = 0; gi < n_groups; ++gi) {
        const int row0 = groups[3 * gi], nr = groups[3 * gi + 1], doc = groups[3 * gi + 2];
        const size_t k0 = doc_start[doc];
        for (int h = 0; h < heads; ++h)
            for (int i = 0; i < nr; ++i) {
                const int r = row0 + i;
                std::vector<double> s(lens[doc]);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < lens[doc]; ++j) {
                    double dot = 0;
                    for (int c = 0; c < hd; ++c)
                        dot += ((double)f(q[r * d + h * hd + c]) + q_bias[h * hd + c]) * f(kv[(k0 + j) * 2 * d + h * hd + c]);
                    s[j] = dot / std::sqrt((double)hd);
                    mx = std::max(mx, s[j]);
                }
                for (auto& v : s) sum += (v = std::exp(v - mx));
                for (auto& v : s) v /= sum;
                if (h == 0 && with_copy)
                    for (int j = 0; j < lens[doc]; ++j) wcopy[(size_t)r * stride + j] = s[j];
                for (int c = 0; c < hd; ++c) {
                    double acc = 0;
                    for (int j = 0; j < lens[doc]; ++j) acc += s[j] * f(kv[(k0 + j) * 2 * d + d + h * hd + c]);
                    want[r * d + h * hd + c] = acc;
                }
            }
    }
    const float scale = 1.0f / std::sqrt((float)hd);
    const CrossEntry k = cross_entry(hd);
    emu::launch({(unsigned)n_groups, (unsigned)heads, 1}, {128, 1, 1}, shared, smem, sizeof smem, [&] {
        k(out.data(), with_copy ? copy.data() : nullptr, q.data(), q_bias.data(), kv.data(), groups.data(),
          doc_start.data(), lens.data(), heads, stride, score_ld, scale);
    });
    std::string name = str(heads) + "x" + str(hd) + " docs";
    for (int doc = 0; doc < docs; ++doc) name += " " + str(lens[doc]) + "/" + str(rows_per_doc[doc]);
    check("cross attention " + name, to_d(out), want, 1e-2, 1.6e-2);
    // Head 0's probabilities are f32 from f32 arithmetic: only exp and summation order differ.
    if (with_copy) check("copy attention " + name, as_d(copy), wcopy, 1e-6, 1e-4);
}

// ---------------------------------------------------------------- one2set_finish.cu

struct Packed {  // PackedBatch in src/one2set/batch_layout.rs
    std::vector<int> doc_start, doc_len, ext, next, first;
    int max_len = 0;
};
static Packed pack(const std::vector<std::vector<int>>& docs) {
    Packed p;
    for (auto& e : docs) {
        const int start = (int)p.ext.size();
        p.doc_start.push_back(start);
        p.doc_len.push_back((int)e.size());
        p.max_len = std::max(p.max_len, (int)e.size());
        std::map<int, int> last;
        for (int j = 0; j < (int)e.size(); ++j) {
            p.ext.push_back(e[j]);
            p.next.push_back(-1);
            auto it = last.find(e[j]);
            p.first.push_back(it == last.end());
            if (it != last.end()) p.next[start + it->second] = j;
            last[e[j]] = j;
        }
    }
    return p;
}

// Rows' logits (f32), features, attention given; the picks against pick_reference (the whole
// copy-augmented distribution in f64, its first maximum) and the first most-attended position.
static void finish_run(const std::string& name, int vocab, int d, int n_codes, const std::vector<std::vector<int>>& docs,
                       const std::vector<int>& slots, const std::vector<float>& logits, const std::vector<bf16>& features,
                       const std::vector<float>& p_gen_w, float p_gen_b, const std::vector<float>& attn, int stride) {
    const Packed p = pack(docs);
    const int rows = (int)slots.size();
    std::vector<int> picks(3 * rows, -7);
    emu::launch({(unsigned)rows, 1, 1}, {256, 1, 1}, [&] {
        one2set_finish_f32(picks.data(), logits.data(), features.data(), p_gen_w.data(), attn.data(), slots.data(),
                           p.doc_start.data(), p.doc_len.data(), p.ext.data(), p.next.data(), p.first.data(), p_gen_b,
                           rows, vocab, d, stride, n_codes);
    });
    std::vector<double> tok_got, tok_want, arg_got, arg_want, prob_got, prob_want;
    for (int r = 0; r < rows; ++r) {
        const int doc = slots[r] / n_codes, len = p.doc_len[doc];
        double z = p_gen_b;
        for (int c = 0; c < d; ++c) z += (double)f(features[r * d + c]) * p_gen_w[c];
        const double p_gen = (float)(1 / (1 + std::exp(-z)));
        const float* l = &logits[(size_t)r * vocab];
        const float* a = &attn[(size_t)r * stride];
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < vocab; ++v) mx = std::max(mx, (double)l[v]);
        for (int v = 0; v < vocab; ++v) sum += std::exp(l[v] - mx);
        int extended = vocab;
        for (int e : docs[doc]) extended = std::max(extended, e + 1);
        std::vector<double> pr(extended, 0.0);
        for (int v = 0; v < vocab; ++v) pr[v] = p_gen * std::exp(l[v] - mx) / sum;
        for (int j = 0; j < len; ++j) pr[docs[doc][j]] += (1 - p_gen) * a[j];
        int best = 0, am = 0;
        for (int i = 0; i < extended; ++i) if (pr[i] > pr[best]) best = i;
        for (int j = 0; j < len; ++j) if (a[j] > a[am]) am = j;
        tok_got.push_back(picks[r]);
        tok_want.push_back(best);
        arg_got.push_back(picks[rows + r]);
        arg_want.push_back(am);
        float pg;
        std::memcpy(&pg, &picks[2 * rows + r], 4);
        prob_got.push_back(pg);
        prob_want.push_back(pr[best]);
    }
    check("finish " + name + ": tokens", tok_got, tok_want, 0, 0);
    check("finish " + name + ": attention argmax", arg_got, arg_want, 0, 0);
    check("finish " + name + ": probabilities", prob_got, prob_want, 1e-6, 1e-4);
}

// The selftest's documents (repeated words, out-of-vocabulary ids past the vocabulary, lengths 7, 1
// and 333) and random rows, for three mixes of generating and copying.
static void finish_random_cases() {
    const int vocab = 3001, d = 72, n_codes = 4;
    std::vector<std::vector<int>> docs{{10, 3002, 10, 57, 3001, 3002, 10}, {400}, {}};
    for (int j = 0; j < 333; ++j) docs[2].push_back(j % 7 == 0 ? 3001 + j % 3 : j * 37 % 2999 + 2);
    const std::vector<int> slots{0, 1, 3, 4, 8, 9, 10, 11, 2};
    const int rows = (int)slots.size(), stride = 333 + 2;
    for (auto [p_gen_b, logit_scale] : {std::pair{2.0f, 6.0f}, {-1.5f, 2.0f}, {0.0f, 0.5f}}) {
        std::vector<bf16> features(rows * d);
        for (auto& v : features) v = b(uni(1));
        std::vector<float> p_gen_w(d), logits((size_t)rows * vocab), attn((size_t)rows * stride, NAN);
        for (auto& v : p_gen_w) v = uni(0.2f);
        for (auto& v : logits) v = uni(logit_scale);
        for (int r = 0; r < rows; ++r) {
            const int len = (int)docs[slots[r] / n_codes].size();
            double total = 0;
            for (int j = 0; j < len; ++j) total += attn[r * stride + j] = std::exp(uni(3));
            for (int j = 0; j < len; ++j) attn[r * stride + j] = (float)(attn[r * stride + j] / total);
        }
        finish_run("p_gen bias " + std::to_string(p_gen_b).substr(0, 4), vocab, d, n_codes, docs, slots, logits,
                   features, p_gen_w, p_gen_b, attn, stride);
    }
}

// Planted ties, each broken towards the lower id / position as torch.max does: vocabulary maxima
// within one thread's stride and across warps, attention maxima likewise, and two source words
// with exactly equal copy mass (the higher id first in the source).
static void finish_tie_cases() {
    const int vocab = 3001, d = 8, n_codes = 2;
    std::vector<std::vector<int>> docs{{}, {3005, 3003, 3005, 3003}, {7}};
    for (int j = 0; j < 333; ++j) docs[0].push_back(1500 + j);  // no word of the planted maxima
    const std::vector<int> slots{0, 1, 2, 3, 5};              // docs 0, 0, 1, 1, 2
    const int rows = (int)slots.size(), stride = 336;
    std::vector<bf16> features(rows * d, b(0.f));
    std::vector<float> p_gen_w(d, 0.f), logits((size_t)rows * vocab), attn((size_t)rows * stride, NAN);
    for (auto& v : logits) v = uni(0.5f);
    for (int r = 0; r < rows; ++r) {
        const int len = (int)docs[slots[r] / n_codes].size();
        for (int j = 0; j < len; ++j) attn[r * stride + j] = std::uniform_real_distribution<float>(0, 0.002f)(rng);
    }
    auto L = [&](int r, int v) -> float& { return logits[(size_t)r * vocab + v]; };
    auto A = [&](int r, int j) -> float& { return attn[(size_t)r * stride + j]; };
    // Row 0: logits tie at 5, 261 (thread 5 again) and 700 (thread 188); attention at 10, 200, 266.
    L(0, 5) = L(0, 261) = L(0, 700) = 9;
    A(0, 10) = A(0, 200) = A(0, 266) = 0.05f;
    // Row 1: logits tie at 700 (thread 188) and 1029 (thread 5); attention at 200 and 266 (thread 10).
    L(1, 700) = L(1, 1029) = 9;
    A(1, 200) = A(1, 266) = 0.05f;
    // Rows 2 and 3: copying wins; 3005 and 3003 both get 0.5 (sums exact in f32 and f64); row 2 has
    // every attention equal too.
    for (int j = 0; j < 4; ++j) A(2, j) = 0.25f;
    A(3, 0) = 0.5f, A(3, 1) = 0.25f, A(3, 2) = 0.f, A(3, 3) = 0.25f;
    // Row 4: a one-token document.
    A(4, 0) = 1;
    // p_gen = sigmoid(bias) with zero features: near 1 for rows 0, 1 (the planted logits win), near 0
    // for the copy rows. One bias per launch, so two launches.
    finish_run("ties, generating", vocab, d, n_codes, docs, {0, 1},
               std::vector<float>(logits.begin(), logits.begin() + 2 * vocab), features, p_gen_w, 8.f,
               std::vector<float>(attn.begin(), attn.begin() + 2 * stride), stride);
    finish_run("ties, copying", vocab, d, n_codes, docs, {2, 3, 5},
               std::vector<float>(logits.begin() + 2 * vocab, logits.end()), features, p_gen_w, -12.f,
               std::vector<float>(attn.begin() + 2 * stride, attn.end()), stride);
}

// A vocabulary smaller than a warp and a feature width of 1.
static void finish_small_case() {
    const int vocab = 7, d = 1, n_codes = 3;
    std::vector<std::vector<int>> docs{{3, 9, 3, 8}, {2}};
    const std::vector<int> slots{0, 2, 4};
    const int rows = 3, stride = 4;
    std::vector<bf16> features{b(0.5f), b(-1.f), b(2.f)};
    std::vector<float> p_gen_w{0.7f}, logits(rows * vocab), attn(rows * stride, NAN);
    for (auto& v : logits) v = uni(2);
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < (int)docs[slots[r] / n_codes].size(); ++j) attn[r * stride + j] = std::exp(uni(2)) / 4;
    finish_run("vocab 7, d 1", vocab, d, n_codes, docs, slots, logits, features, p_gen_w, -0.3f, attn, stride);
}

int main() {
    layers_case(1, 1, 1);
    layers_case(3, 7, 130);
    layers_case(37, 200, 333);
    layers_case(2, 300, 129);
    slot_case(3, 64, 3, 6, 11, {0, 2, 3, 7, 10});
    slot_case(4, 16, 0, 6, 11, {1, 4, 5});
    slot_case(2, 96, 5, 6, 8, {0, 7});
    slot_case(1, 128, 9, 10, 3, {2});
    slot_case(5, 40, 2, 4, 6, {0, 1, 2, 3, 4, 5});
    slot_case(2, 8, 1, 3, 4, {3});
    // Documents of 1 and 65 tokens; 33 slots of one document cross the 32-query pass; 32 exactly
    // fill one; a document with no active slot has no group.
    cross_case(3, 64, {1, 65, 5, 130, 7}, {2, 33, 0, 1, 32}, true);
    cross_case(4, 16, {65, 1, 3}, {33, 1, 4}, true);
    cross_case(2, 128, {1, 65, 9}, {1, 33, 2}, true);
    cross_case(2, 32, {5, 1, 65}, {0, 3, 33}, false);
    cross_case(1, 32, {1}, {1}, true);
    finish_random_cases();
    finish_tie_cases();
    finish_small_case();
    std::printf("%d failures\n", emu_failures);
    return emu_failures != 0;
}
