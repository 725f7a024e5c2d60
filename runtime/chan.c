/* chan.c — per-channel sums over a batch, for batch norm and bias gradients, and the rest
 * of a batch norm's arithmetic (its per-channel statistics, nnq_rt_bn_stats, and its
 * elementwise pass, nnq_rt_bn_apply, forward or gradient): values of shape [n, C, S] (S
 * the product of the trailing dims, 1 for dense layers), channels [c0, c1). The sums'
 * modes (abi.def) sum x + add[c] or (x + add[c] - shift[c])^2, or give both sums of a
 * batch-norm gradient, of g and g y, with g = x or x where y > 0: the terms a bias_add,
 * batch norm, relu_grad chain needs, computed in registers instead of from stored
 * intermediates. Generated code calls these from inside its parallel loops over ranges
 * of channels, so each channel is summed whole by one thread. (The statistics and the
 * elementwise pass were generated code until 2026-12-04: the same operations, compiled
 * here once instead of by LLVM for every program, took about half off VGG-16's compile.)
 *
 * A channel's n*S values are summed in 16 lanes (for S >= 16 value s of a sample's run
 * goes to lane s mod 16, a sample's tail of fewer than 16 to the first lanes; for
 * 1 < S < 16 the channel's values in sequence go round the lanes), the lanes then added in
 * a fixed order; for S = 1 (dense layers) each channel is one sum over n in order, 16
 * channels side by side. Either way: the same bits on any thread count and any channel
 * range, and no long chain of dependent adds. No allocation, no failure.
 *
 * The 16 lanes are one vector of 16 floats (AVX-512), two of 8 (AVX2) or four of 4 (SSE2):
 * one set of loops per width, chosen once for the CPU (rt_chan_lanes), each lane's adds
 * the same in all three, so the bits are too (test_chan_lanes). One 16-float vector type
 * for every CPU instead would be wider than AVX2's registers: GCC keeps such vectors in
 * memory there, and the AVX2 loops ran at a fourteenth of AVX-512's speed. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "rt_internal.h"

typedef float Quad __attribute__((vector_size(16)));

/* The sum of the 16 lanes a[j] + b[j] (b may be NULL), pairwise: 8 + 8, 4 + 4, 2 + 2,
 * 1 + 1; in 4-float vectors, which every x86 has, in registers (a loop over a float[16]
 * went through memory, one stalled load after another, and cost more than summing a
 * sample's plane of a LeNet-5 convolution). */
static inline __attribute__((always_inline)) float lanes_sum(const void *a, const float *b) {
    Quad q[4], t[4];
    memcpy(q, a, sizeof q);
    if (b) {
        memcpy(t, b, sizeof t);
        for (int k = 0; k < 4; k++) q[k] += t[k];
    }
    Quad r = (q[0] + q[2]) + (q[1] + q[3]);
    r += __builtin_shufflevector(r, r, 2, 3, 2, 3);
    return r[0] + r[1];
}

/* x where y > 0, else +0, without a branch (y's sign is as good as random). */
static inline float relu_keep(float x, float y) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    b &= -(uint32_t)(y > 0);
    memcpy(&x, &b, sizeof x);
    return x;
}

/* The value each mode sums, for one float or one vector of floats (a, m: the channel's
 * add[c] and shift[c], as scalars or vectors). A relu mask keeps x where y > 0: a compare
 * as wide as the vector, native at each width. */
#define TERM_SUM(x, y) ((x) + a)
#define TERM_SQDEV(x, y) (((x) + a - m) * ((x) + a - m))
#define TERM_RELU(x, y) relu_keep(x, y)
#define VTERM_RELU(x, y) ((__typeof__(x))(((y) > 0) & (__typeof__((y) > 0))(x)))
#define VTERM_SUM TERM_SUM
#define VTERM_SQDEV TERM_SQDEV
#define TERM_X(x, y) (x)
#define VTERM_X TERM_X
/* y as read (Y_READ), or recomputed from the batch norm's input (Y_AFFINE: y = ((v +
 * add[c]) - shift[c]) * scale[c], v read from y's array, the operations of the generated
 * forward pass, so the same bits as the y it stored). */
#define Y_READ(v, a, m, sc) (v)
#define Y_AFFINE(v, a, m, sc) ((((v) + (a)) - (m)) * (sc))

/* The vector types of one width: W floats a vector, NV = 16 / W vectors for the 16 lanes;
 * VLD: a vector from any address. */
#define LANE_TYPES(W)                                                                                                 \
    typedef float V __attribute__((vector_size(4 * (W))));                                                          \
    typedef float Vu __attribute__((vector_size(4 * (W)), aligned(4)));                                             \
    enum { NV = 16 / (W) };                                                                                           \
    (void)sizeof(V)
#define VLD(p) (*(const Vu *)(p))
#define VSPLAT(v) ((V){0} + (v))
#define LANES_FOR _Pragma("GCC unroll 4") for (int k_ = 0; k_ < NV; k_++)

/* A channel's runs are a stride of C S values apart, too short for the hardware
 * prefetcher to start on (LeNet-5's second convolution: 64 values, 4 lines; a 32 x 32
 * plane, 64 lines, is a page of its own) and, after a convolution by samples on another
 * thread, often in that CPU's cache: each sample's loop asks for the run AHEAD samples on,
 * its first PREFETCH_LINES lines before it starts, or for a longer run a line as it reads
 * a line (long_runs: a copy of the loops of its own). Runs of 4 KB 576 KB apart,
 * MobileNetV2's 32 x 32 layers, one thread, AVX2: a sum 3.9 -> 2.5-2.8 ms for 144
 * channels (16-18 -> 26-29 GB/s), a gradient's two sums 8.7 -> 5.5-5.7; all 64 lines at
 * the run's start instead read 7.4-7.6 for the latter. The loop's prefetch in every run's
 * loop, or a test for it in the loops that short runs take, slowed those (960 channels of
 * 4 x 4: 0.17 -> 0.22-0.31 ms). A forward elementwise pass writes a buffer its sums did
 * not read: a run of APPLY_AHEAD_MIN values or more asks for the output's lines AHEAD
 * samples on, for writing, as it stores its own (two threads, a forward batch norm's
 * three passes: 144 channels of 32 x 32 5.4 -> 4.65 ms, 192 of 16 x 16 1.6 -> 1.44; runs
 * of 64 values no faster). The times change, not a bit. */
#define AHEAD 2
enum { PREFETCH_LINES = 32, APPLY_AHEAD_MIN = 128 };

/* Channels summed side by side (S >= 16), sample by sample: a sample's runs of a block's
 * channels lie one after another, one read of up to CHAN_BLOCK runs instead of one run
 * of S values a channel and sample. One thread, AVX2, a batch norm's groups of channels
 * (ms, the sums / a relu'd gradient's two sums): MobileNetV2's 192 channels of 16 x 16
 * in groups of 4, 0.96 / 2.04 -> 0.58 / 1.46; 576 of 8 x 8 in groups of 16, 0.95 / 2.37
 * -> 0.35 / 0.83; 960 of 4 x 4 in groups of 64, 0.31 / 0.69 -> 0.18 / 0.35. (Where a
 * group is one channel, 32 x 32, runs of 4 KB 576 KB apart read at 16-21 GB/s and runs
 * of 32 KB at 30-33, but groups of 8 such channels overflow the L2 cache that the
 * statistics' second pass and the elementwise pass read them from: no faster in the
 * network.) Each channel's lanes take the same terms in the same order. */
enum { CHAN_BLOCK = 16 };
static inline __attribute__((always_inline)) void prefetch_run(const float *p, int64_t S) {
    int64_t lines = (S * 4 + 63) / 64;
    if (lines > PREFETCH_LINES) lines = PREFETCH_LINES;
    for (int64_t l = 0; l < lines; l++) __builtin_prefetch(p + 16 * l);
}

/* One sum a channel (modes 0 and 1), at width W. */
#define CHAN_REDUCE(NAME, TARGET, W, TERM, VTERM)                                                                     \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_runs(                                    \
        const float *x, const float *add, const float *shift, int64_t n, int32_t C, int64_t S, int32_t c0, int32_t c1, \
        float *out, const bool long_runs) {                                                                           \
        LANE_TYPES(W);                                                                                                \
        if (S == 1) { /* dense: 16 channels side by side, each summed over n in order */                             \
            int32_t c = c0;                                                                                           \
            for (; c + 16 <= c1; c += 16) {                                                                           \
                V acc[NV];                                                                                            \
                LANES_FOR acc[k_] = (V){0};                                                                           \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    LANES_FOR {                                                                                       \
                        int32_t at = c + k_ * (W);                                                                    \
                        V a = add ? VLD(add + at) : (V){0}, m = shift ? VLD(shift + at) : (V){0};                     \
                        (void)a, (void)m;                                                                             \
                        acc[k_] += VTERM(VLD(x + i * C + at), 0);                                                     \
                    }                                                                                                 \
                memcpy(out + c, acc, sizeof acc);                                                                     \
            }                                                                                                         \
            for (; c < c1; c++) {                                                                                     \
                float a = add ? add[c] : 0.0f, m = shift ? shift[c] : 0.0f, acc = 0;                                  \
                (void)a, (void)m;                                                                                     \
                for (int64_t i = 0; i < n; i++) acc += TERM(x[i * C + c], 0);                                         \
                out[c] = acc;                                                                                         \
            }                                                                                                         \
            return;                                                                                                   \
        }                                                                                                             \
        for (int32_t c = c0; c < c1; c++) {                                                                           \
            float sa = add ? add[c] : 0.0f, sm = shift ? shift[c] : 0.0f;                                             \
            if (S < 16) { /* the values in sequence round the lanes, added 16 at a time */                           \
                float t[16], a = sa, m = sm;                                                                          \
                (void)a, (void)m;                                                                                     \
                V acc[NV];                                                                                            \
                LANES_FOR acc[k_] = (V){0};                                                                           \
                int lane = 0;                                                                                         \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    for (int64_t s = 0; s < S; s++) {                                                                 \
                        t[lane++] = TERM(x[(i * C + c) * S + s], 0);                                                  \
                        if (lane == 16) {                                                                             \
                            LANES_FOR acc[k_] += VLD(t + k_ * (W));                                                   \
                            lane = 0;                                                                                 \
                        }                                                                                             \
                    }                                                                                                 \
                for (int j = lane; j < 16; j++) t[j] = 0; /* + 0 leaves a lane as it is */                           \
                out[c] = lanes_sum(acc, t);                                                                           \
                continue;                                                                                             \
            }                                                                                                         \
            /* S >= 16: a block of up to CHAN_BLOCK channels side by side, sample by sample */                        \
            int32_t cb = c1 - c < CHAN_BLOCK ? c1 - c : CHAN_BLOCK;                                                   \
            V acc[CHAN_BLOCK][NV];                                                                                    \
            float tail[CHAN_BLOCK][16];                                                                               \
            memset(acc, 0, sizeof acc), memset(tail, 0, sizeof tail);                                                 \
            for (int64_t i = 0; i < n; i++)                                                                           \
                for (int32_t q = 0; q < cb; q++) {                                                                    \
                    float qa = add ? add[c + q] : 0.0f, qm = shift ? shift[c + q] : 0.0f;                             \
                    V a = VSPLAT(qa), m = VSPLAT(qm), lane[NV];                                                       \
                    (void)a, (void)m;                                                                                 \
                    const float *px = x + (i * C + c + q) * S;                                                        \
                    int64_t ahead = i + AHEAD < n ? AHEAD * C * S : 0, s = 0;                                         \
                    if (!long_runs && ahead) prefetch_run(px + ahead, S);                                             \
                    LANES_FOR lane[k_] = acc[q][k_];                                                                  \
                    for (; s + 16 <= S; s += 16) {                                                                    \
                        if (long_runs) __builtin_prefetch(px + ahead + s);                                            \
                        LANES_FOR lane[k_] += VTERM(VLD(px + s + k_ * (W)), 0);                                       \
                    }                                                                                                 \
                    LANES_FOR acc[q][k_] = lane[k_];                                                                  \
                    for (int64_t j = 0; s + j < S; j++) {                                                             \
                        float a = qa, m = qm;                                                                         \
                        (void)a, (void)m;                                                                             \
                        tail[q][j] += TERM(px[s + j], 0);                                                             \
                    }                                                                                                 \
                }                                                                                                     \
            for (int32_t q = 0; q < cb; q++) out[c + q] = lanes_sum(acc[q], tail[q]);                                 \
            c += cb - 1;                                                                                              \
        }                                                                                                             \
    }                                                                                                                 \
    __attribute__((target(TARGET))) static void NAME(const float *x, const float *add, const float *shift, int64_t n, \
                                                     int32_t C, int64_t S, int32_t c0, int32_t c1, float *out) {      \
        if (S > 16 * PREFETCH_LINES)                                                                                  \
            NAME##_runs(x, add, shift, n, C, S, c0, c1, out, true);                                                   \
        else                                                                                                          \
            NAME##_runs(x, add, shift, n, C, S, c0, c1, out, false);                                                  \
    }

/* Both sums of a batch-norm gradient in one pass (modes 2 to 4), at width W: out = sum g,
 * out2 = sum g y, with g = x (TERM_X) or x where y > 0 (TERM_RELU); the same lanes, so the
 * same bits, as two passes of the single-sum modes. */
#define CHAN_GRAD_SUMS(NAME, TARGET, W, TERM, VTERM, Y)                                                               \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_runs(                                    \
        const float *x, const float *y, const float *add, const float *shift, const float *scale, int64_t n, int32_t C, \
        int64_t S, int32_t c0, int32_t c1, float *out, float *out2, const bool long_runs) {                           \
        LANE_TYPES(W);                                                                                                \
        if (S == 1) { /* dense: 16 channels side by side, each summed over n in order */                             \
            int32_t c = c0;                                                                                           \
            for (; c + 16 <= c1; c += 16) {                                                                           \
                V acc[NV], acc2[NV];                                                                                  \
                LANES_FOR acc[k_] = (V){0}, acc2[k_] = (V){0};                                                        \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    LANES_FOR {                                                                                       \
                        int32_t at = c + k_ * (W);                                                                    \
                        V va = add ? VLD(add + at) : (V){0}, vm = shift ? VLD(shift + at) : (V){0};                   \
                        V vs = scale ? VLD(scale + at) : (V){0};                                                      \
                        (void)va, (void)vm, (void)vs;                                                                 \
                        V yv = Y(VLD(y + i * C + at), va, vm, vs), g = VTERM(VLD(x + i * C + at), yv);                \
                        acc[k_] += g;                                                                                 \
                        acc2[k_] += g * yv;                                                                           \
                    }                                                                                                 \
                memcpy(out + c, acc, sizeof acc);                                                                     \
                memcpy(out2 + c, acc2, sizeof acc2);                                                                  \
            }                                                                                                         \
            for (; c < c1; c++) {                                                                                     \
                float acc = 0, acc2 = 0;                                                                              \
                float sa = add ? add[c] : 0.0f, sm = shift ? shift[c] : 0.0f, ss = scale ? scale[c] : 0.0f;           \
                (void)sa, (void)sm, (void)ss;                                                                         \
                for (int64_t i = 0; i < n; i++) {                                                                     \
                    float yv = Y(y[i * C + c], sa, sm, ss), g = TERM(x[i * C + c], yv);                               \
                    acc += g;                                                                                         \
                    acc2 += g * yv;                                                                                   \
                }                                                                                                     \
                out[c] = acc;                                                                                         \
                out2[c] = acc2;                                                                                       \
            }                                                                                                         \
            return;                                                                                                   \
        }                                                                                                             \
        for (int32_t c = c0; c < c1; c++) {                                                                           \
            float sa = add ? add[c] : 0.0f, sm = shift ? shift[c] : 0.0f, ss = scale ? scale[c] : 0.0f;               \
            (void)sa, (void)sm, (void)ss;                                                                             \
            if (S < 16) { /* the values in sequence round the lanes, added 16 at a time */                           \
                float t[16], t2[16];                                                                                  \
                V acc[NV], acc2[NV];                                                                                  \
                LANES_FOR acc[k_] = (V){0}, acc2[k_] = (V){0};                                                        \
                int lane = 0;                                                                                         \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    for (int64_t s = 0; s < S; s++) {                                                                 \
                        int64_t k = (i * C + c) * S + s;                                                              \
                        float yv = Y(y[k], sa, sm, ss), g = TERM(x[k], yv);                                           \
                        t[lane] = g, t2[lane++] = g * yv;                                                             \
                        if (lane == 16) {                                                                             \
                            LANES_FOR acc[k_] += VLD(t + k_ * (W)), acc2[k_] += VLD(t2 + k_ * (W));                   \
                            lane = 0;                                                                                 \
                        }                                                                                             \
                    }                                                                                                 \
                for (int j = lane; j < 16; j++) t[j] = 0, t2[j] = 0; /* + 0 leaves a lane as it is */                \
                out[c] = lanes_sum(acc, t);                                                                           \
                out2[c] = lanes_sum(acc2, t2);                                                                        \
                continue;                                                                                             \
            }                                                                                                         \
            /* S >= 16: a block of up to CHAN_BLOCK channels side by side, sample by sample */                        \
            int32_t cb = c1 - c < CHAN_BLOCK ? c1 - c : CHAN_BLOCK;                                                   \
            V acc[CHAN_BLOCK][NV], acc2[CHAN_BLOCK][NV];                                                              \
            float tail[CHAN_BLOCK][16], tail2[CHAN_BLOCK][16];                                                        \
            memset(acc, 0, sizeof acc), memset(acc2, 0, sizeof acc2);                                                 \
            memset(tail, 0, sizeof tail), memset(tail2, 0, sizeof tail2);                                             \
            for (int64_t i = 0; i < n; i++)                                                                           \
                for (int32_t q = 0; q < cb; q++) {                                                                    \
                    float qa = add ? add[c + q] : 0.0f, qm = shift ? shift[c + q] : 0.0f;                             \
                    float qs = scale ? scale[c + q] : 0.0f;                                                           \
                    V va = VSPLAT(qa), vm = VSPLAT(qm), vs = VSPLAT(qs), l1[NV], l2[NV];                              \
                    (void)va, (void)vm, (void)vs;                                                                     \
                    const float *px = x + (i * C + c + q) * S, *py = y + (i * C + c + q) * S;                         \
                    int64_t ahead = i + AHEAD < n ? AHEAD * C * S : 0, s = 0;                                         \
                    if (!long_runs && ahead) prefetch_run(px + ahead, S), prefetch_run(py + ahead, S);                \
                    LANES_FOR l1[k_] = acc[q][k_], l2[k_] = acc2[q][k_];                                              \
                    for (; s + 16 <= S; s += 16) {                                                                    \
                        if (long_runs) __builtin_prefetch(px + ahead + s), __builtin_prefetch(py + ahead + s);        \
                        LANES_FOR {                                                                                   \
                            V yv = Y(VLD(py + s + k_ * (W)), va, vm, vs), g = VTERM(VLD(px + s + k_ * (W)), yv);      \
                            l1[k_] += g;                                                                              \
                            l2[k_] += g * yv;                                                                         \
                        }                                                                                             \
                    }                                                                                                 \
                    LANES_FOR acc[q][k_] = l1[k_], acc2[q][k_] = l2[k_];                                              \
                    for (int64_t j = 0; s + j < S; j++) {                                                             \
                        float yv = Y(py[s + j], qa, qm, qs), g = TERM(px[s + j], yv);                                 \
                        tail[q][j] += g;                                                                              \
                        tail2[q][j] += g * yv;                                                                        \
                    }                                                                                                 \
                }                                                                                                     \
            for (int32_t q = 0; q < cb; q++) {                                                                        \
                out[c + q] = lanes_sum(acc[q], tail[q]);                                                              \
                out2[c + q] = lanes_sum(acc2[q], tail2[q]);                                                           \
            }                                                                                                         \
            c += cb - 1;                                                                                              \
        }                                                                                                             \
    }                                                                                                                 \
    __attribute__((target(TARGET))) static void NAME(const float *x, const float *y, const float *add,                \
                                                     const float *shift, const float *scale, int64_t n, int32_t C,    \
                                                     int64_t S, int32_t c0, int32_t c1, float *out, float *out2) {    \
        if (S > 16 * PREFETCH_LINES)                                                                                  \
            NAME##_runs(x, y, add, shift, scale, n, C, S, c0, c1, out, out2, true);                                   \
        else                                                                                                          \
            NAME##_runs(x, y, add, shift, scale, n, C, S, c0, c1, out, out2, false);                                  \
    }

/* A batch norm's elementwise pass (nnq_rt_bn_apply) at width W: vectors of W values, the
 * values past the last whole vector one at a time in a one-float vector type (scalar
 * instructions, the same operations). Each value is computed on its own, so the width
 * changes no bit. Every vector is loaded before it is stored (out may be x). */
typedef float V1 __attribute__((vector_size(4))); /* one float, with the vector operators */
#define LD1(p) RT_VLOAD(V1, p)
/* The value of one element (T: V or V1; b, m, sc, m1, m2: the channel's values as T). */
#define BN_VALUE(T, xv, yv, b, m, sc, m1, m2)                                                                         \
    ({                                                                                                                \
        T r_;                                                                                                         \
        if (!(mode & NNQ_BN_GRAD)) {                                                                                  \
            T v_ = (xv);                                                                                              \
            if (mode & NNQ_BN_BIAS) v_ = v_ + (b);                                                                    \
            v_ = (v_ - (m)) * (sc);                                                                                   \
            if (mode & NNQ_BN_RELU) v_ = (T)((v_ >= 0) & (__typeof__(v_ >= 0))v_); /* v >= 0 ? v : +0 */             \
            r_ = v_;                                                                                                  \
        } else {                                                                                                      \
            T y_ = (yv), g_ = (xv);                                                                                   \
            if (mode & NNQ_BN_RECOMPUTE) y_ = ((y_ + (b)) - (m)) * (sc);                                              \
            if (mode & NNQ_BN_RELU_MASK) g_ = VTERM_RELU(g_, y_);                                                     \
            r_ = (sc) * ((g_ - (m1)) - y_ * (m2));                                                                    \
        }                                                                                                             \
        r_;                                                                                                           \
    })
/* Element k of x, y into out, channel c's values read from the per-channel arrays. */
#define BN_ONE(k, c)                                                                                                  \
    do {                                                                                                              \
        V1 r1_ = BN_VALUE(V1, LD1(x + (k)), grad ? LD1(y + (k)) : (V1){0}, biased ? LD1(bias + (c)) : (V1){0},        \
                          LD1(mean + (c)), LD1(scale + (c)), (V1){grad ? sum1[c] / nf : 0.0f},                        \
                          (V1){grad ? sum2[c] / nf : 0.0f});                                                          \
        memcpy(out + (k), &r1_, sizeof r1_);                                                                          \
    } while (0)

/* The pass for one mode (a constant where CHAN_APPLY calls it, so its tests fold away):
 * dense layers (S = 1) row by row, W channels at a time with their values; else a channel
 * at a time over each sample's run of S values. */
#define CHAN_APPLY(NAME, TARGET, W)                                                                                   \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_mode(                                    \
        const int32_t mode, const float *x, const float *y, const float *bias, const float *mean, const float *scale, \
        const float *sum1, const float *sum2, float nf, int64_t n, int32_t C, int64_t S, int32_t c0, int32_t c1,      \
        float *out) {                                                                                                 \
        LANE_TYPES(W);                                                                                                \
        const V zero = {0};                                                                                           \
        const bool biased = mode & (NNQ_BN_BIAS | NNQ_BN_RECOMPUTE), grad = mode & NNQ_BN_GRAD;                       \
        if (S == 1) {                                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                int32_t c = c0;                                                                                       \
                for (; c + (W) <= c1; c += (W)) {                                                                     \
                    int64_t k = i * C + c;                                                                            \
                    V r = BN_VALUE(V, VLD(x + k), grad ? VLD(y + k) : zero, biased ? VLD(bias + c) : zero,            \
                                   VLD(mean + c), VLD(scale + c), grad ? VLD(sum1 + c) / VSPLAT(nf) : zero,           \
                                   grad ? VLD(sum2 + c) / VSPLAT(nf) : zero);                                         \
                    *(Vu *)(out + k) = r;                                                                             \
                }                                                                                                     \
                for (; c < c1; c++) BN_ONE(i * C + c, c);                                                             \
            }                                                                                                         \
            return;                                                                                                   \
        }                                                                                                             \
        for (int64_t i = 0; i < n; i++)                                                                               \
            for (int32_t c = c0; c < c1; c++) {                                                                       \
                V b = VSPLAT(biased ? bias[c] : 0.0f), m = VSPLAT(mean[c]), sc = VSPLAT(scale[c]);                    \
                V m1 = VSPLAT(grad ? sum1[c] / nf : 0.0f), m2 = VSPLAT(grad ? sum2[c] / nf : 0.0f);                   \
                int64_t k = (i * C + c) * S, s = 0;                                                                   \
                if (!grad && S >= APPLY_AHEAD_MIN && i + AHEAD < n) /* see AHEAD */                                   \
                    for (; s + (W) <= S; s += (W)) {                                                                  \
                        __builtin_prefetch(out + k + AHEAD * C * S + s, 1);                                           \
                        V r = BN_VALUE(V, VLD(x + k + s), zero, b, m, sc, m1, m2);                                    \
                        *(Vu *)(out + k + s) = r;                                                                     \
                    }                                                                                                 \
                for (; s + (W) <= S; s += (W)) {                                                                      \
                    V r = BN_VALUE(V, VLD(x + k + s), grad ? VLD(y + k + s) : zero, b, m, sc, m1, m2);                \
                    *(Vu *)(out + k + s) = r;                                                                         \
                }                                                                                                     \
                for (; s < S; s++) BN_ONE(k + s, c);                                                                  \
            }                                                                                                         \
    }                                                                                                                 \
    __attribute__((target(TARGET))) static void NAME(int32_t mode, const float *x, const float *y, const float *bias, \
                                                     const float *mean, const float *scale, const float *sum1,        \
                                                     const float *sum2, float nf, int64_t n, int32_t C, int64_t S,    \
                                                     int32_t c0, int32_t c1, float *out) {                            \
        switch (mode) { /* the modes the code generator uses, each compiled on its own */                            \
        BN_MODE_CASE(NAME, 0)                                                                                         \
        BN_MODE_CASE(NAME, NNQ_BN_BIAS)                                                                               \
        BN_MODE_CASE(NAME, NNQ_BN_RELU)                                                                               \
        BN_MODE_CASE(NAME, NNQ_BN_BIAS | NNQ_BN_RELU)                                                                 \
        BN_MODE_CASE(NAME, NNQ_BN_GRAD)                                                                               \
        BN_MODE_CASE(NAME, NNQ_BN_GRAD | NNQ_BN_RELU_MASK)                                                            \
        BN_MODE_CASE(NAME, NNQ_BN_GRAD | NNQ_BN_RELU_MASK | NNQ_BN_RECOMPUTE | NNQ_BN_BIAS)                           \
        default: NAME##_mode(mode, x, y, bias, mean, scale, sum1, sum2, nf, n, C, S, c0, c1, out); break;             \
        }                                                                                                             \
    }
#define BN_MODE_CASE(NAME, M)                                                                                         \
    case M: NAME##_mode(M, x, y, bias, mean, scale, sum1, sum2, nf, n, C, S, c0, c1, out); break;

/* Every mode at one width. */
#define CHAN_WIDTH(SUF, TARGET, W)                                                                                    \
    CHAN_REDUCE(reduce_sum_##SUF, TARGET, W, TERM_SUM, VTERM_SUM)                                                     \
    CHAN_REDUCE(reduce_sqdev_##SUF, TARGET, W, TERM_SQDEV, VTERM_SQDEV)                                               \
    CHAN_GRAD_SUMS(grad_sums_##SUF, TARGET, W, TERM_X, VTERM_X, Y_READ)                                               \
    CHAN_GRAD_SUMS(relu_grad_sums_##SUF, TARGET, W, TERM_RELU, VTERM_RELU, Y_READ)                                    \
    CHAN_GRAD_SUMS(relu_grad_sums_affine_##SUF, TARGET, W, TERM_RELU, VTERM_RELU, Y_AFFINE)                           \
    CHAN_APPLY(bn_apply_##SUF, TARGET, W)                                                                             \
    static const ChanKernels chan_##SUF = {reduce_sum_##SUF, reduce_sqdev_##SUF,                                      \
                                           {grad_sums_##SUF, relu_grad_sums_##SUF, relu_grad_sums_affine_##SUF},      \
                                           bn_apply_##SUF};

typedef void ReduceFn(const float *, const float *, const float *, int64_t, int32_t, int64_t, int32_t, int32_t,
                      float *);
typedef void GradSumsFn(const float *, const float *, const float *, const float *, const float *, int64_t, int32_t,
                        int64_t, int32_t, int32_t, float *, float *);
typedef void ApplyFn(int32_t, const float *, const float *, const float *, const float *, const float *, const float *,
                     const float *, float, int64_t, int32_t, int64_t, int32_t, int32_t, float *);
typedef struct {
    ReduceFn *sum, *sqdev;
    GradSumsFn *grad[3]; /* modes 2, 3, 4 */
    ApplyFn *apply;      /* nnq_rt_bn_apply */
} ChanKernels;

CHAN_WIDTH(avx512, "avx512f", 16)
CHAN_WIDTH(avx2, "avx2", 8)
CHAN_WIDTH(sse2, "sse2", 4)

static const ChanKernels *_Atomic chan_kernels;

bool rt_chan_lanes(int lanes) {
    lanes = rt_cpu_lanes(lanes);
    if (!lanes) return false;
    chan_kernels = lanes == 16 ? &chan_avx512 : lanes == 8 ? &chan_avx2 : &chan_sse2;
    return true;
}

void nnq_rt_chan_reduce(int32_t mode, const float *x, const float *y, const float *add, const float *shift,
                        const float *scale, int64_t n, int32_t c, int64_t s, int32_t c0, int32_t c1, float *out,
                        float *out2) {
    if (!chan_kernels) rt_chan_lanes(0);
    const ChanKernels *k = chan_kernels;
    switch (mode) {
    case 0: k->sum(x, add, shift, n, c, s, c0, c1, out); break;
    case 1: k->sqdev(x, add, shift, n, c, s, c0, c1, out); break;
    case 2: k->grad[0](x, y, NULL, NULL, NULL, n, c, s, c0, c1, out, out2); break;
    case 3: k->grad[1](x, y, NULL, NULL, NULL, n, c, s, c0, c1, out, out2); break;
    default: k->grad[2](x, y, add, shift, scale, n, c, s, c0, c1, out, out2); break;
    }
}

void nnq_rt_bn_apply(int32_t mode, const float *x, const float *y, const float *bias, const float *mean,
                     const float *scale, const float *sum1, const float *sum2, float nf, int64_t n, int32_t c, int64_t s,
                     int32_t c0, int32_t c1, float *out) {
    if (!chan_kernels) rt_chan_lanes(0);
    chan_kernels->apply(mode, x, y, bias, mean, scale, sum1, sum2, nf, n, c, s, c0, c1, out);
}

/* Scalar loops over channels: each value's operations those of the generated loops they
 * replaced (no contraction, runtime/CMakeLists.txt), so the same bits. */
void nnq_rt_bn_stats(int32_t what, float nf, int32_t c0, int32_t c1, const float *sum1, const float *sum2, float *mean,
                     float *scale, float *rmean, float *rvar) {
    float d = nf - 1.0f, unbias = nf / (d >= 1.0f ? d : 1.0f);
    for (int32_t c = c0; c < c1; c++) {
        if (what == NNQ_BN_MEANS) {
            mean[c] = sum1[c] / nf;
            continue;
        }
        if (what == NNQ_BN_RUNNING) {
            mean[c] = rmean[c];
            scale[c] = 1.0f / sqrtf(rvar[c] + 1e-5f);
            continue;
        }
        float var = sum2[c] / nf, uvar = var * unbias;
        scale[c] = 1.0f / sqrtf(var + 1e-5f);
        if (what == NNQ_BN_TRAIN) {
            rmean[c] = 0.9f * rmean[c] + 0.1f * mean[c];
            rvar[c] = 0.9f * rvar[c] + 0.1f * uvar;
        } else {
            rmean[c] = rmean[c] + mean[c];
            rvar[c] = rvar[c] + uvar;
        }
    }
}
