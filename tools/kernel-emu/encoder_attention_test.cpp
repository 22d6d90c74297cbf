// kernels/one2set_encoder_attention.cu (the WMMA encoder self-attention) on the CPU under
// cuda_emu.h and the wmma stand-in of include/mma.h, against a plain double reference of its CPU
// twin (segment_attention_forward in src/backend/cpu/segment_attention.rs: softmax(q·kᵀ/√d)·v over
// the tokens of the query's own document), with the launch shape of encoder_attention_forward in
// src/backend/cuda/one2set_attention.rs. Awkward sizes: documents of 1, 63, 64, 65 and 130 tokens
// (one key tile, a tile and one, several query blocks), every head_dim the kernel takes, and a
// NaN-poisoned token between documents that no document owns: its output must stay NaN, and no
// read of it may reach a result. Build and run: tools/kernel-emu/run.sh
#include "cuda_emu.h"
#include "emu_check.h"
#include "emu_vec.h"
#include "../../kernels/one2set_encoder_attention.cu"

#include <cstdio>
#include <random>
#include <string>

static std::mt19937 rng(5);
static float uni(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }


template <int HD>
static void encoder_case(int heads, const std::vector<int>& lens, float spread) {
    const int d = heads * HD, docs = (int)lens.size();
    std::vector<int> start, len(lens);
    int tokens = 0, max_len = 0;
    for (int l : lens) {
        start.push_back(tokens);
        tokens += l + 1;  // one token between documents that belongs to none
        max_len = std::max(max_len, l);
    }
    Vec<bf16> qkv((size_t)tokens * 3 * d);
    for (auto& v : qkv) v = __float2bfloat16(uni(spread));
    std::vector<bool> owned(tokens, false);
    for (int i = 0; i < docs; ++i)
        for (int t = 0; t < lens[i]; ++t) owned[start[i] + t] = true;
    for (int t = 0; t < tokens; ++t)
        if (!owned[t])
            for (int c = 0; c < 3 * d; ++c) qkv[(size_t)t * 3 * d + c] = __float2bfloat16(NAN);
    Vec<bf16> out((size_t)tokens * d, __float2bfloat16(NAN));
    const float scale = 1.0f / std::sqrt((float)HD);
    const dim3 grid{(unsigned)((max_len + 63) / 64), (unsigned)heads, (unsigned)docs};
    emu::launch(grid, dim3{128, 1, 1}, [&] {
        if constexpr (HD == 16)
            one2set_encoder_attention_hd16_bf16(out.data(), qkv.data(), start.data(), len.data(), heads, scale);
        else if constexpr (HD == 32)
            one2set_encoder_attention_hd32_bf16(out.data(), qkv.data(), start.data(), len.data(), heads, scale);
        else
            one2set_encoder_attention_hd64_bf16(out.data(), qkv.data(), start.data(), len.data(), heads, scale);
    });

    std::vector<double> want((size_t)tokens * d, NAN), got(out.size());
    auto at = [&](int t, int part, int h, int c) {
        return (double)__bfloat162float(qkv[(size_t)t * 3 * d + part * d + h * HD + c]);
    };
    for (int i = 0; i < docs; ++i)
        for (int h = 0; h < heads; ++h)
            for (int q = start[i]; q < start[i] + lens[i]; ++q) {
                std::vector<double> p(lens[i]);
                double mx = -INFINITY, sum = 0;
                for (int k = 0; k < lens[i]; ++k) {
                    double s = 0;
                    for (int c = 0; c < HD; ++c) s += at(q, 0, h, c) * at(start[i] + k, 1, h, c);
                    p[k] = s * scale;
                    mx = std::max(mx, p[k]);
                }
                for (auto& v : p) sum += (v = std::exp(v - mx));
                for (int c = 0; c < HD; ++c) {
                    double o = 0;
                    for (int k = 0; k < lens[i]; ++k) o += p[k] / sum * at(start[i] + k, 2, h, c);
                    want[(size_t)q * d + h * HD + c] = o;
                }
            }
    for (size_t i = 0; i < out.size(); ++i) got[i] = __bfloat162float(out[i]);
    std::string name = "encoder attention hd " + std::to_string(HD) + " heads " + std::to_string(heads) + " lens";
    for (int l : lens) name += " " + std::to_string(l);
    // bf16 probabilities (relative error 2^-9 each, so at most 2^-9 of max|v| = spread in the sum),
    // the output rounded to bf16 (2^-9 relative), f32 sums: 4e-3·spread absolute, 8e-3 relative.
    check(name, got, want, 4e-3 * spread, 8e-3);
}

int main() {
    encoder_case<16>(3, {1, 65, 7}, 1.0f);
    encoder_case<32>(2, {64, 1, 130}, 1.0f);
    encoder_case<64>(2, {63, 129, 2}, 1.0f);
    // Large scores: a peaked softmax (the online max and the exp's range).
    encoder_case<64>(1, {70}, 4.0f);
    std::printf("%d failures\n", emu_failures);
    return emu_failures != 0;
}
