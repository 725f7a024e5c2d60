/* dwconv.c — depthwise convolutions (conv2d with groups = channels: MobileNet's 3x3
 * layers) and their two gradients, as direct kernels: a filter is k*k numbers, too few for
 * a GEMM to pay. NCHW, row-major, no allocation but the thread scratch (parallel.c).
 *
 * x [n, c, h, w], w [c, 1, kh, kw], y [n, c, oh, ow], oh = (h + 2 pad - kh) / stride + 1.
 * y and dx run in parallel over the n*c planes, dw over the channels: every item is
 * computed whole by one thread, so results do not depend on the thread count.
 *
 * 3 x 3 filters at padding 1 on rows of 4, 8, 16 or 32 (stride 1: dw_direct; 8 x 8 and
 * 4 x 4 planes whole in registers) or 8, 16 or 32 (stride 2: dw_direct2) run straight
 * from the plane's rows. Every other plane is first copied into the thread's scratch
 * with its zero padding around it, so the inner loops have no bounds to test, and split
 * by column phase for stride s > 1 (phase m holds the columns q*s + m), so a row of
 * outputs reads every tap as one run of consecutive floats: 8 outputs at a time in a
 * vector register (32 in four where the row is long enough), the k*k taps added in order (i, j) — for y and dx the order of a
 * direct loop, so the padding's zero terms aside these are the sums a scalar loop takes.
 * dx is the correlation of dy, dilated by the stride and padded by k - 1, with the filter
 * turned round. dw sums each tap over a channel's samples and positions in 8 lanes
 * (position xo of a row's full 8-column runs in lane xo mod 8), 4 more (a run of 4 after
 * those) and one scalar sum (the columns past them), all added in a fixed order; it
 * reads a thread's channels a sample at a time (up to DW_LANES_BYTES of their lane sums),
 * their planes side by side in memory.
 * y and dw of a batch norm's values (nnq_rt_dwconv2d_bn, nnq_rt_dwconv2d_dw_bn: the IR's
 * dwconv2d_bn_relu, which spares the batch norm's elementwise pass and its output) read
 * x's planes normalized into the thread's scratch a piece at a time (x_plane).
 * Compiled for AVX-512, AVX2 and the baseline (RT_ISA_DISPATCH) without FMA contraction
 * (runtime/CMakeLists.txt): the same bits on every CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

typedef float V8 __attribute__((vector_size(32))); /* 8 floats */
typedef float V4 __attribute__((vector_size(16))); /* 4 floats: a row of 4 to 7 outputs' first 4 */

/* Vectors through memory, never as arguments (rt_internal.h: RT_VLOAD). */
#define ld8(p) RT_VLOAD(V8, p)
#define stv(p, v) /* a value of any type: V8, V4 or float */                                      \
    do {                                                                                           \
        __typeof__(v) s_ = (v);                                                                    \
        memcpy((p), &s_, sizeof s_);                                                               \
    } while (0)

typedef struct DwJob {
    const float *a, *b; /* y: x, w; dx: dy, w; dw: dy, x */
    float *out;
    int64_t c, h, w, kh, kw, stride, pad, oh, ow;
    int64_t n;
    int64_t ph, pq;     /* the padded plane's rows and each phase's columns */
    int64_t dh, dwid;   /* dx: the dilated, padded dy plane's rows and columns */
    /* y and dw of a batch norm's values (nnq_rt_dwconv2d_bn): x the batch norm's input,
     * each plane read as relu(((x + nb[ch]) - nm[ch]) * ns[ch]); normalize: those, or
     * room for them */
    const float *nb, *nm, *ns;
    bool normalize;
} DwJob;

static DwJob dw_job(const float *a, const float *b, float *out, int32_t n, int32_t c, int32_t h, int32_t w,
                    int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    return (DwJob){.a = a, .b = b, .out = out, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .stride = stride,
                   .pad = pad, .oh = (h + 2 * pad - kh) / stride + 1, .ow = (w + 2 * pad - kw) / stride + 1, .n = n,
                   .ph = h + 2 * pad, .pq = (w + 2 * pad + stride - 1) / stride, .dh = h + pad + kh - 1,
                   .dwid = w + pad + kw - 1};
}

/* Floats at the head of a thread's scratch (64-byte aligned) for the taps' pointers,
 * rounded up to 64 bytes so what follows stays aligned. */
static int64_t ptr_floats(const DwJob *j) {
    return (j->kh * j->kw * (int64_t)sizeof(float *) + 63) / 64 * (64 / sizeof(float));
}

/* The lane sums dw_weight_grad keeps for the channels it sums side by side: 13 a tap
 * (8 lanes, 4 more, one scalar) for each of at most DW_LANES_BYTES / (13 * taps * 4)
 * channels (560 of a 3 x 3 filter), read and written for every plane: within a core's L2. */
enum { DW_LANES_BYTES = 256 * 1024 };
static int64_t dw_channel_block(const DwJob *j) {
    int64_t cap = DW_LANES_BYTES / (13 * j->kh * j->kw * (int64_t)sizeof(float));
    return cap < 1 ? 1 : cap < j->c ? cap : j->c;
}

/* A batch norm's values are made NORM_FLOATS at a time (whole planes, at least one):
 * MobileNetV2's 32 x 32 planes 8 at a time, in the L1 cache (a plane at a time, or 2048
 * values, cost more in calls than they saved: 144 channels of 32 x 32, two threads, the
 * forward 5.7 -> 8.2-8.7 ms). */
enum { NORM_FLOATS = 8192 };
static int64_t norm_floats(const DwJob *j) {
    return !j->normalize ? 0 : j->h * j->w > NORM_FLOATS ? j->h * j->w : NORM_FLOATS;
}

/* Scratch floats per thread: the taps' pointers, then the padded, phase-split plane (y,
 * dw) and the lane sums of dw's block of channels, or dx's dilated dy plane; then a batch
 * norm's values (norm_floats). */
static int64_t dw_scratch_base(const DwJob *j) {
    int64_t phases = j->stride * j->ph * j->pq + 13 * j->kh * j->kw * dw_channel_block(j), dil = j->dh * j->dwid;
    return ptr_floats(j) + (phases > dil ? phases : dil);
}
static int64_t dw_scratch(const DwJob *j) { return dw_scratch_base(j) + norm_floats(j); }

/* Plane pl of x as the kernels read it: x's own, or a batch norm's values, made into the
 * thread's scratch with the planes after it up to `end` of the same sample, as many as
 * norm_floats holds ([*from, *to): the planes made), by the batch norm's elementwise pass
 * (chan.c, nnq_rt_bn_apply: the same operations, so the bits of the values a
 * bias_bn_relu_train writes). */
static const float *x_plane(const DwJob *j, const float *x, int64_t pl, int64_t end, float *scratch, int64_t *from,
                            int64_t *to) {
    int64_t hw = j->h * j->w;
    if (!j->nm) return x + pl * hw;
    float *buf = scratch + dw_scratch_base(j);
    if (pl < *from || pl >= *to) {
        int64_t s = pl / j->c, c0 = pl % j->c, k = norm_floats(j) / hw, c1 = c0 + k;
        if (c1 > j->c) c1 = j->c;
        if (s * j->c + c1 > end) c1 = end - s * j->c;
        nnq_rt_bn_apply(NNQ_BN_BIAS | NNQ_BN_RELU, x + pl * hw, NULL, j->nb + c0, j->nm + c0, j->ns + c0, NULL, NULL,
                        0.0f, 1, (int32_t)(c1 - c0), hw, 0, (int32_t)(c1 - c0), buf);
        *from = pl, *to = pl + (c1 - c0);
    }
    /* this plane's place in the next piece, asked for now, while the kernels work on this
     * one: the normalizing pass does not overlap the kernels' arithmetic, which the plain
     * kernels' reads of x did (the weight gradient is bound by its arithmetic). 144
     * channels of 32 x 32, one thread, the weight gradient: plain 4.8-5.2 ms, normalized
     * 10.3-10.7 without this, 8.5 with it; the whole next piece asked for at once 8.7 */
    int64_t next = pl + (*to - *from);
    if (next < end)
        for (int64_t q = 0; q < hw; q += 16) __builtin_prefetch(x + next * hw + q);
    return buf + (pl - *from) * hw;
}

void nnq_rt_dwconv_reserve(NnqRun *run, int32_t n, int32_t c, int32_t h, int32_t wd, int32_t o, int32_t kh,
                           int32_t kw, int32_t stride, int32_t pad, int32_t normalize) {
    (void)o;
    DwJob j = dw_job(NULL, NULL, NULL, n, c, h, wd, kh, kw, stride, pad);
    j.normalize = normalize;
    if (!rt_parallel_reserve(dw_scratch(&j), 0))
        nnq_rt_fail(run, "out of memory reserving %.1f MiB of depthwise convolution scratch per thread",
                    (double)dw_scratch(&j) * 4 / 1048576);
}

/* Called without that (tests, a last smaller batch), the kernels reserve here, and only
 * an allocation failure at this point is fatal. */
static void dw_ensure(const DwJob *j) {
    if (!rt_parallel_reserve(dw_scratch(j), 0)) {
        fprintf(stderr, "nnq: error: out of memory for depthwise convolution scratch\n");
        abort();
    }
}

/* The plane x [h, w] padded and split by column phase into p: phase m is ph rows of pq
 * columns, column q holding padded column q*s + m (zero past the padded width). Writes
 * the same positions for every plane: the padding, zeroed once (phases_zero), stays. */
static void phases_zero(const DwJob *j, float *p) {
    memset(p, 0, sizeof(float) * (size_t)(j->stride * j->ph * j->pq));
}

static inline __attribute__((always_inline)) void pad_phases(const DwJob *j, const float *x, float *p) {
    int64_t s = j->stride, pq = j->pq;
    for (int64_t r = 0; r < j->h; r++) {
        const float *src = x + r * j->w;
        if (s == 1) {
            rt_row_copy(p + (r + j->pad) * pq + j->pad, src, (int32_t)j->w);
            continue;
        }
        for (int64_t m = 0; m < s; m++) { /* columns q*s + m - pad in [0, w): q in [lo, hi) */
            float *dst = p + (m * j->ph + r + j->pad) * pq;
            int64_t lo = j->pad > m ? (j->pad - m + s - 1) / s : 0, hi = (j->w + j->pad - m + s - 1) / s;
            if (hi > pq) hi = pq;
            int64_t q = lo;
            if (s == 2) /* 8 at a time: the even lanes of 16 (the last read stays in the row) */
                for (; q + 8 <= hi && (q + 7) * 2 + m - j->pad + 2 <= j->w; q += 8) {
                    const float *at = src + q * 2 + m - j->pad;
                    stv(dst + q, RT_EVEN8(ld8(at), ld8(at + 8)));
                }
            for (; q < hi; q++) dst[q] = src[q * s + m - j->pad];
        }
    }
}

/* tv[i*kw + jj] = where tap (i, jj) of output (0, 0) lies in the phase-split plane p;
 * output (yo, xo) is yo * stride * pq + xo further on. No division: this runs per plane. */
static inline void taps_at(const DwJob *j, const float *p, const float **tv) {
    for (int64_t i = 0, t = 0; i < j->kh; i++)
        for (int64_t jj = 0, m = 0, q = 0; jj < j->kw; jj++, t++) {
            tv[t] = p + (m * j->ph + i) * j->pq + q;
            if (++m == j->stride) m = 0, q++;
        }
}

/* Out[0..W) of one output row: sum over taps t of F[t] * TAPV[t][x], the taps in order
 * for each x; 32 outputs at a time (four registers: each tap's weight and row loaded once
 * for them), then 8, then 4, then one by one. */
#define ROW_SUMS(W, NT, F, TAPV, OUT)                                                              \
    do {                                                                                           \
        int64_t x_ = 0;                                                                            \
        for (; x_ + 32 <= (W); x_ += 32) {                                                         \
            V8 a0_ = {0}, a1_ = {0}, a2_ = {0}, a3_ = {0};                                         \
            for (int64_t t_ = 0; t_ < (NT); t_++) {                                                \
                const float *in_ = (TAPV)[t_] + x_;                                                \
                float f_ = (F)[t_];                                                                \
                a0_ += f_ * ld8(in_), a1_ += f_ * ld8(in_ + 8);                                    \
                a2_ += f_ * ld8(in_ + 16), a3_ += f_ * ld8(in_ + 24);                              \
            }                                                                                      \
            stv((OUT) + x_, a0_);                                                                  \
            stv((OUT) + x_ + 8, a1_);                                                              \
            stv((OUT) + x_ + 16, a2_);                                                             \
            stv((OUT) + x_ + 24, a3_);                                                             \
        }                                                                                          \
        for (; x_ + 8 <= (W); x_ += 8) {                                                           \
            V8 acc_ = {0};                                                                         \
            for (int64_t t_ = 0; t_ < (NT); t_++) acc_ += (F)[t_] * ld8((TAPV)[t_] + x_);          \
            stv((OUT) + x_, acc_);                                                                 \
        }                                                                                          \
        if (x_ + 4 <= (W)) {                                                                       \
            V4 acc_ = {0}, v_;                                                                     \
            for (int64_t t_ = 0; t_ < (NT); t_++) {                                                \
                memcpy(&v_, (TAPV)[t_] + x_, sizeof v_);                                           \
                acc_ += (F)[t_] * v_;                                                              \
            }                                                                                      \
            memcpy((OUT) + x_, &acc_, sizeof acc_);                                                \
            x_ += 4;                                                                               \
        }                                                                                          \
        for (; x_ < (W); x_++) {                                                                   \
            float acc_ = 0;                                                                        \
            for (int64_t t_ = 0; t_ < (NT); t_++) acc_ += (F)[t_] * (TAPV)[t_][x_];                \
            (OUT)[x_] = acc_;                                                                      \
        }                                                                                          \
    } while (0)

enum { DW_TAPS3 = 9 }; /* a 3 x 3 filter's taps */

/* A plane's rows for a 3 x 3 filter, DW_ROWS rows at a time: each output is the sum
 * ROW_SUMS takes (0, then the nine taps' terms in order), but the DW_ROWS rows' sums are
 * independent chains side by side, 8 columns (then 4, then one) of each, and the taps
 * are offsets from tap 0 (output (r, x) reads tap t at tv[0] + off[t] + r * step + x),
 * the weights locals. MobileNetV2's 8 x 8 planes, 384 channels, batch 128, AVX2, 1
 * thread: y and dx 2.6-2.9 and 2.5-2.8 ms one row at a time, 2.4-2.6 and 2.3-2.5 in rows
 * of four (1.8-2.0 and 1.6-1.8 with the plane's shape a constant as well, a case these
 * shapes no longer take: they go to the direct kernels below, 0.7 ms). */
enum { DW_ROWS = 4 };

#define DW_ROWS_SUMS(T, X)                                                                         \
    do {                                                                                           \
        T a_[DW_ROWS];                                                                             \
        _Pragma("GCC unroll 4") for (int k_ = 0; k_ < DW_ROWS; k_++) a_[k_] = (T){0};               \
        _Pragma("GCC unroll 9") for (int t_ = 0; t_ < DW_TAPS3; t_++) {                            \
            const float *in_ = base + off[t_] + (X);                                               \
            _Pragma("GCC unroll 4") for (int k_ = 0; k_ < DW_ROWS; k_++) a_[k_] += fl[t_] * RT_VLOAD(T, in_ + k_ * step); \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k_ = 0; k_ < DW_ROWS; k_++) stv(o + k_ * width + (X), a_[k_]); \
    } while (0)

static inline __attribute__((always_inline)) void plane_sums3(const float *const *tv, int64_t step, int64_t rows,
                                                              int64_t width, const float *f, float *out) {
    int64_t off[DW_TAPS3];
    float fl[DW_TAPS3];
    for (int t = 0; t < DW_TAPS3; t++) off[t] = tv[t] - tv[0], fl[t] = f[t];
    int64_t r = 0;
    for (; r + DW_ROWS <= rows; r += DW_ROWS) {
        const float *base = tv[0] + r * step;
        float *o = out + r * width;
        int64_t x = 0;
        for (; x + 8 <= width; x += 8) DW_ROWS_SUMS(V8, x);
        if (x + 4 <= width) {
            DW_ROWS_SUMS(V4, x);
            x += 4;
        }
        for (; x < width; x++) DW_ROWS_SUMS(float, x);
    }
    const float *tl[DW_TAPS3]; /* the last rows, one at a time */
    for (int t = 0; t < DW_TAPS3; t++) tl[t] = tv[t] + r * step;
    for (out += r * width; r < rows; r++, out += width) {
        ROW_SUMS(width, DW_TAPS3, fl, tl, out);
        for (int t = 0; t < DW_TAPS3; t++) tl[t] += step;
    }
}

/* 3 x 3 filters at stride 1 and padding 1 on planes of 8 x 8 or 4 x 4 (MobileNetV2's last
 * stages on CIFAR), straight from the plane's rows: each row one vector (8 or 4 columns),
 * moved one column either way in registers (the padding's zero column shifted in), so no
 * padded copy goes through the thread's scratch. The copy cost more than the sums: a
 * row's vectors read back from the copy they had just been stored into straddled two of
 * its stores, and the loads waited for them. Each output is the sum ROW_SUMS takes (0,
 * then the taps' terms in order), but the terms of padding rows are left out: a zero term
 * changes no sum that starts at +0 (a sum of finite floats from +0 is never -0), only an
 * infinite or NaN weight would tell. y reads tap (i, j) at row r + i - 1, column c + j -
 * 1; dx (flip) at row r + 1 - i, column c + 1 - j: the filter turned round. */
typedef int32_t DwShuf4 __attribute__((vector_size(16)));
#if defined(__clang__)
#define DW_SHUF4(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define DW_SHUF4(a, b, ...) __builtin_shuffle(a, b, (DwShuf4){__VA_ARGS__})
#endif
/* lane c of the result: column c - 1 (from the left) or c + 1 (from the right) of v */
#define DW_LEFT8(v) RT_SHUF8(v, (V8){0}, 8, 0, 1, 2, 3, 4, 5, 6)
#define DW_RIGHT8(v) RT_SHUF8(v, (V8){0}, 1, 2, 3, 4, 5, 6, 7, 8)
#define DW_LEFT4(v) DW_SHUF4(v, (V4){0}, 4, 0, 1, 2)
#define DW_RIGHT4(v) DW_SHUF4(v, (V4){0}, 1, 2, 3, 4)

/* The plane's rows and their two moved copies, as locals c, l, r of N vectors of type T. */
#define DW_DIRECT_ROWS(T, N, LEFT, RIGHT, PLANE)                                                   \
    T c[N], l[N], r[N];                                                                            \
    _Pragma("GCC unroll 8") for (int k_ = 0; k_ < (N); k_++) {                                     \
        c[k_] = RT_VLOAD(T, (PLANE) + k_ * (N));                                                   \
        l[k_] = LEFT(c[k_]), r[k_] = RIGHT(c[k_]);                                                 \
    }

/* y (flip 0) or dx (flip 1) of one N x N plane: in the plane read, f its filter. */
#define DW_DIRECT_SUMS(NAME, T, N, LEFT, RIGHT)                                                    \
    static inline __attribute__((always_inline)) void NAME(const float *restrict in, const float *f, int flip, \
                                                           float *restrict out) {                  \
        float g[DW_TAPS3];                                                                         \
        for (int t = 0; t < DW_TAPS3; t++) g[t] = f[t];                                            \
        DW_DIRECT_ROWS(T, N, LEFT, RIGHT, in)                                                      \
        _Pragma("GCC unroll 8") for (int y = 0; y < (N); y++) {                                    \
            T acc = {0};                                                                           \
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {                                  \
                int row = flip ? y + 1 - i : y + i - 1;                                            \
                if (row < 0 || row >= (N)) continue;                                               \
                acc += g[3 * i] * (flip ? r[row] : l[row]);                                        \
                acc += g[3 * i + 1] * c[row];                                                      \
                acc += g[3 * i + 2] * (flip ? l[row] : r[row]);                                    \
            }                                                                                      \
            stv(out + y * (N), acc);                                                               \
        }                                                                                          \
    }
DW_DIRECT_SUMS(direct_sums8, V8, 8, DW_LEFT8, DW_RIGHT8)
DW_DIRECT_SUMS(direct_sums4, V4, 4, DW_LEFT4, DW_RIGHT4)

/* One sample's terms of a plane's weight gradient into its lane sums (the 8-lane sums of
 * 8 x 8 planes, the 4-lane sums of 4 x 4: lanes + 12 t, + 8 for 4 lanes), as
 * dw_weight_grad3 adds them, row by row, less the padding rows' zero terms. */
#define DW_DIRECT_GRAD(NAME, T, N, LEFT, RIGHT, AT)                                                \
    static inline __attribute__((always_inline)) void NAME(const float *restrict dy, const float *restrict x, \
                                                           float *lanes) {                         \
        DW_DIRECT_ROWS(T, N, LEFT, RIGHT, x)                                                       \
        T acc[DW_TAPS3];                                                                           \
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) acc[t] = RT_VLOAD(T, lanes + 12 * t + (AT)); \
        _Pragma("GCC unroll 8") for (int y = 0; y < (N); y++) {                                    \
            T d = RT_VLOAD(T, dy + y * (N));                                                       \
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {                                  \
                int row = y + i - 1;                                                               \
                if (row < 0 || row >= (N)) continue;                                               \
                acc[3 * i] += d * l[row], acc[3 * i + 1] += d * c[row], acc[3 * i + 2] += d * r[row]; \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) stv(lanes + 12 * t + (AT), acc[t]); \
    }
DW_DIRECT_GRAD(direct_grad8, V8, 8, DW_LEFT8, DW_RIGHT8, 0)
DW_DIRECT_GRAD(direct_grad4, V4, 4, DW_LEFT4, DW_RIGHT4, 8)

/* Rows of M vectors (16 or 32 columns, any number of rows: MobileNetV2's first stages),
 * read where they lie, a row at a time for each output row (a plane is too big for the
 * registers): vector k of a row moved a column is the unaligned load one float either
 * way, but at the row's two ends, where the padding's zero comes in by a shuffle. */
#define DW_LEFT_AT(rp, k) ((k) == 0 ? DW_LEFT8(ld8(rp)) : ld8((rp) + 8 * (k) - 1))
#define DW_RIGHT_AT(rp, k, M) ((k) == (M) - 1 ? DW_RIGHT8(ld8((rp) + 8 * (k))) : ld8((rp) + 8 * (k) + 1))

static inline __attribute__((always_inline)) void direct_rows(const float *restrict in, const float *f, int flip,
                                                              int64_t rows, int M, float *restrict out) {
    float g[DW_TAPS3];
    for (int t = 0; t < DW_TAPS3; t++) g[t] = f[t];
    int64_t width = 8 * M;
    for (int64_t y = 0; y < rows; y++) {
        _Pragma("GCC unroll 4") for (int k = 0; k < M; k++) {
            V8 acc = {0};
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {
                int64_t row = flip ? y + 1 - i : y + i - 1;
                if (row < 0 || row >= rows) continue;
                const float *rp = in + row * width;
                acc += g[3 * i] * (flip ? DW_RIGHT_AT(rp, k, M) : DW_LEFT_AT(rp, k));
                acc += g[3 * i + 1] * ld8(rp + 8 * k);
                acc += g[3 * i + 2] * (flip ? DW_LEFT_AT(rp, k) : DW_RIGHT_AT(rp, k, M));
            }
            stv(out + y * width + 8 * k, acc);
        }
    }
}

/* dw's 8-lane sums of one sample's plane of M-vector rows, as direct_grad8 adds them
 * (for each tap: row by row, in a row vector by vector). */
static inline __attribute__((always_inline)) void direct_grad_rows(const float *restrict dy, const float *restrict x,
                                                                   int64_t rows, int M, float *lanes) {
    V8 acc[DW_TAPS3];
    _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) acc[t] = ld8(lanes + 12 * t);
    int64_t width = 8 * M;
    for (int64_t y = 0; y < rows; y++) {
        _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {
            int64_t row = y + i - 1;
            if (row < 0 || row >= rows) continue;
            const float *rp = x + row * width;
            _Pragma("GCC unroll 4") for (int k = 0; k < M; k++) {
                V8 d = ld8(dy + y * width + 8 * k);
                acc[3 * i] += d * DW_LEFT_AT(rp, k), acc[3 * i + 1] += d * ld8(rp + 8 * k);
                acc[3 * i + 2] += d * DW_RIGHT_AT(rp, k, M);
            }
        }
    }
    _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) stv(lanes + 12 * t, acc[t]);
}

/* Stride 2 (MobileNetV2's downsampling layers), rows of 8, 16 or 32 inputs: output
 * column c reads input columns 2c - 1 (L), 2c (E) and 2c + 1 (O). For the 8 outputs of
 * vector k, E and O are the even and odd lanes of the 16 inputs at 16 k and L is O one
 * column on (the padding's zero at the row's start, else the odd lanes of the 16 inputs
 * a column back); with 4 outputs (rows of 8), the same of two 4-float vectors. */
#define DW_ODD8(a, b) RT_SHUF8(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define DW_S2_TAPS8(rp, k, L, E, O)                                                                \
    do {                                                                                           \
        V8 a_ = ld8((rp) + 16 * (k)), b_ = ld8((rp) + 16 * (k) + 8);                               \
        E = RT_EVEN8(a_, b_), O = DW_ODD8(a_, b_);                                                 \
        L = (k) == 0 ? DW_LEFT8(O) : DW_ODD8(ld8((rp) + 16 * (k) - 2), ld8((rp) + 16 * (k) + 6));  \
    } while (0)
#define DW_S2_TAPS4(rp, k, L, E, O)                                                                \
    do {                                                                                           \
        V4 a_ = RT_VLOAD(V4, (rp)), b_ = RT_VLOAD(V4, (rp) + 4);                                   \
        E = DW_SHUF4(a_, b_, 0, 2, 4, 6), O = DW_SHUF4(a_, b_, 1, 3, 5, 7), L = DW_LEFT4(O);        \
    } while (0)

/* y of a stride-2 plane (rows of M vectors of type T, L outputs a vector): the sums of
 * direct_rows; and dw's lane sums (at AT: 8-lane or 4-lane) from a sample's plane, as
 * direct_grad_rows adds them. */
#define DW_S2_KERNELS(SUMS, GRAD, T, L, TAPS, AT)                                                  \
    static inline __attribute__((always_inline)) void SUMS(const float *restrict in, const float *f, int64_t rows, \
                                                           int64_t orows, int M, float *restrict out) { \
        float g[DW_TAPS3];                                                                         \
        for (int t = 0; t < DW_TAPS3; t++) g[t] = f[t];                                            \
        for (int64_t y = 0; y < orows; y++)                                                        \
            _Pragma("GCC unroll 2") for (int k = 0; k < M; k++) {                                  \
                T acc = {0}, l, e, o;                                                              \
                _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {                              \
                    int64_t row = 2 * y + i - 1;                                                   \
                    if (row < 0 || row >= rows) continue;                                          \
                    TAPS(in + row * 2 * (L) * M, k, l, e, o);                                      \
                    acc += g[3 * i] * l;                                                           \
                    acc += g[3 * i + 1] * e;                                                       \
                    acc += g[3 * i + 2] * o;                                                       \
                }                                                                                  \
                stv(out + (y * M + k) * (L), acc);                                                 \
            }                                                                                      \
    }                                                                                              \
    static inline __attribute__((always_inline)) void GRAD(const float *restrict dy, const float *restrict x, \
                                                           int64_t rows, int64_t orows, int M, float *lanes) { \
        T acc[DW_TAPS3], l, e, o;                                                                  \
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) acc[t] = RT_VLOAD(T, lanes + 12 * t + (AT)); \
        for (int64_t y = 0; y < orows; y++)                                                        \
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {                                  \
                int64_t row = 2 * y + i - 1;                                                       \
                if (row < 0 || row >= rows) continue;                                              \
                _Pragma("GCC unroll 2") for (int k = 0; k < M; k++) {                              \
                    T d = RT_VLOAD(T, dy + (y * M + k) * (L));                                     \
                    TAPS(x + row * 2 * (L) * M, k, l, e, o);                                       \
                    acc[3 * i] += d * l, acc[3 * i + 1] += d * e, acc[3 * i + 2] += d * o;         \
                }                                                                                  \
            }                                                                                      \
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) stv(lanes + 12 * t + (AT), acc[t]); \
    }
DW_S2_KERNELS(s2_sums8, s2_grad8, V8, 8, DW_S2_TAPS8, 0)
DW_S2_KERNELS(s2_sums4, s2_grad4, V4, 4, DW_S2_TAPS4, 8)

/* dx of a stride-2 plane: rows of M vectors of 8 inputs, from dy's rows of 4 M. dx[r][c]
 * takes tap (i, j) from dy[(r + 1 - i) / 2][(c + 1 - j) / 2] where both are even (dy
 * dilated): rows of one parity take one tap row (even r) or two (odd r), the rest are
 * padding's; a vector's lanes of the other parity get the tap's zero terms, as the
 * dilated plane gives them. From the 4 dy values at 4 k (and the next one): j = 0 the
 * odd lanes d[4k + 1 ..4k + 4], j = 1 the even lanes d[4k ..4k + 3], j = 2 the odd
 * lanes d[4k ..4k + 3]. */
static inline __attribute__((always_inline)) void s2_input_grad(const float *restrict dy, const float *f, int64_t rows,
                                                                int64_t orows, int M, float *restrict dx) {
    float g[DW_TAPS3];
    for (int t = 0; t < DW_TAPS3; t++) g[t] = f[t];
    const V8 z = {0};
    for (int64_t r = 0; r < rows; r++)
        _Pragma("GCC unroll 4") for (int k = 0; k < M; k++) {
            V8 acc = {0};
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++) {
                int64_t a = r + 1 - i;
                if (a < 0 || (a & 1) || a / 2 >= orows) continue;
                const float *dp = dy + a / 2 * 4 * M + 4 * k;
                V8 q; /* d[4k ..4k + 7], or d[4k ..4k + 3] and zeros at the row's end (in registers:
                       * 16 bytes copied into a zeroed vector went through the stack, and its
                       * load waited for the store) */
                if (k + 1 < M) {
                    q = ld8(dp);
                } else {
                    V4 h = RT_VLOAD(V4, dp);
                    q = (V8){h[0], h[1], h[2], h[3], 0, 0, 0, 0};
                }
                acc += g[3 * i] * RT_SHUF8(q, z, 8, 1, 8, 2, 8, 3, 8, 4);
                acc += g[3 * i + 1] * RT_SHUF8(q, z, 0, 8, 1, 8, 2, 8, 3, 8);
                acc += g[3 * i + 2] * RT_SHUF8(q, z, 8, 0, 8, 1, 8, 2, 8, 3);
            }
            stv(dx + (r * M + k) * 8, acc);
        }
}

/* The input width (8, 16 or 32) of a job the stride-2 kernels take (3 x 3, padding 1),
 * else 0. */
static int64_t dw_direct2(const DwJob *j) {
    bool fits = j->kh == 3 && j->kw == 3 && j->stride == 2 && j->pad == 1;
    return fits && (j->w == 8 || j->w == 16 || j->w == 32) ? j->w : 0;
}

/* Which direct kernel takes a job's planes: 3 x 3, stride 1, padding 1, and rows of 4, 8,
 * 16 or 32 columns (8 x 8 and 4 x 4 planes: the whole plane in registers); else 0. */
static int64_t dw_direct(const DwJob *j) {
    if (j->kh != 3 || j->kw != 3 || j->stride != 1 || j->pad != 1) return 0;
    if ((j->w == 8 || j->w == 4) && j->h == j->w) return j->w;
    return j->w == 16 || j->w == 32 ? j->w : 0;
}

/* One plane through the direct kernel for its shape (side: dw_direct's, wide2:
 * dw_direct2's), the shape's sizes as constants so that its loops unroll: y (op 0: in the
 * plane x, w its filter, out y), dx (op 1: in dy, w the filter, out dx) or dw's lane sums
 * (op 2: in dy, w the plane x, out the lanes). */
#define DW_OP(Y, DX, DW)                                                                           \
    do {                                                                                           \
        if (op == 0)                                                                               \
            Y;                                                                                     \
        else if (op == 1)                                                                          \
            DX;                                                                                    \
        else                                                                                       \
            DW;                                                                                    \
    } while (0)
static inline __attribute__((always_inline)) void direct_op(const DwJob *j, int op, int64_t side, int64_t wide2,
                                                            const float *in, const float *w, float *out) {
    if (side == 8)
        DW_OP(direct_sums8(in, w, 0, out), direct_sums8(in, w, 1, out), direct_grad8(in, w, out));
    else if (side == 4)
        DW_OP(direct_sums4(in, w, 0, out), direct_sums4(in, w, 1, out), direct_grad4(in, w, out));
    else if (side == 16)
        DW_OP(direct_rows(in, w, 0, j->h, 2, out), direct_rows(in, w, 1, j->h, 2, out),
              direct_grad_rows(in, w, j->h, 2, out));
    else if (side == 32)
        DW_OP(direct_rows(in, w, 0, j->h, 4, out), direct_rows(in, w, 1, j->h, 4, out),
              direct_grad_rows(in, w, j->h, 4, out));
    else if (wide2 == 8 && j->h == 8)
        DW_OP(s2_sums4(in, w, 8, 4, 1, out), s2_input_grad(in, w, 8, 4, 1, out), s2_grad4(in, w, 8, 4, 1, out));
    else if (wide2 == 8)
        DW_OP(s2_sums4(in, w, j->h, j->oh, 1, out), s2_input_grad(in, w, j->h, j->oh, 1, out),
              s2_grad4(in, w, j->h, j->oh, 1, out));
    else if (wide2 == 16)
        DW_OP(s2_sums8(in, w, j->h, j->oh, 1, out), s2_input_grad(in, w, j->h, j->oh, 2, out),
              s2_grad8(in, w, j->h, j->oh, 1, out));
    else
        DW_OP(s2_sums8(in, w, j->h, j->oh, 2, out), s2_input_grad(in, w, j->h, j->oh, 4, out),
              s2_grad8(in, w, j->h, j->oh, 2, out));
}

RT_ISA_BODY static void dw_forward_body(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    int64_t taps = j->kh * j->kw;
    float *scratch = rt_thread_scratch(dw_scratch(j)), *p = scratch + ptr_floats(j);
    const float **tv = (const float **)(void *)scratch; /* the taps' pointers */
    int64_t side = dw_direct(j), wide2 = dw_direct2(j), from = 0, to = 0;
    if (side || wide2) {
        for (int64_t pl = begin; pl < end; pl++)
            direct_op(j, 0, side, wide2, x_plane(j, j->a, pl, end, scratch, &from, &to), j->b + (pl % j->c) * taps,
                      j->out + pl * j->oh * j->ow);
        return;
    }
    phases_zero(j, p);
    taps_at(j, p, tv);
    for (int64_t pl = begin; pl < end; pl++) { /* plane pl = sample * c + channel */
        const float *f = j->b + (pl % j->c) * taps;
        float *y = j->out + pl * j->oh * j->ow;
        pad_phases(j, x_plane(j, j->a, pl, end, scratch, &from, &to), p);
        if (taps == DW_TAPS3) {
            plane_sums3(tv, j->stride * j->pq, j->oh, j->ow, f, y);
            continue;
        }
        for (int64_t yo = 0; yo < j->oh; yo++) {
            ROW_SUMS(j->ow, taps, f, tv, y + yo * j->ow);
            for (int64_t t = 0; t < taps; t++) tv[t] += j->stride * j->pq;
        }
        for (int64_t t = 0; t < taps; t++) tv[t] -= j->oh * j->stride * j->pq; /* back to output (0, 0) */
    }
}
RT_ISA_DISPATCH(dw_forward, (void *ctx, int64_t begin, int64_t end), (ctx, begin, end))

/* dx[r][c] = sum over (i, jj) of w[i][jj] * d[r + pad - i + kh - 1][c + pad - jj + kw - 1],
 * d the plane dy dilated by the stride (dy[yo][xo] at (yo*s + kh - 1, xo*s + kw - 1), zero
 * between) in dh x dwid; dy entries whose outputs touch no input fall outside and are
 * dropped. */
RT_ISA_BODY static void dw_input_grad_body(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    int64_t taps = j->kh * j->kw;
    float *scratch = rt_thread_scratch(dw_scratch(j)), *d = scratch + ptr_floats(j);
    const float **tv = (const float **)(void *)scratch;
    int64_t side = dw_direct(j), wide2 = dw_direct2(j);
    if (side || wide2) {
        for (int64_t pl = begin; pl < end; pl++)
            direct_op(j, 1, side, wide2, j->a + pl * j->oh * j->ow, j->b + (pl % j->c) * taps,
                      j->out + pl * j->h * j->w);
        return;
    }
    memset(d, 0, sizeof(float) * (size_t)(j->dh * j->dwid)); /* every plane writes the same positions */
    for (int64_t i = 0, t = 0; i < j->kh; i++)
        for (int64_t jj = 0; jj < j->kw; jj++, t++)
            tv[t] = d + (j->pad + j->kh - 1 - i) * j->dwid + j->pad + j->kw - 1 - jj;
    /* dy's columns that land inside the dilated plane (all of them but where stride and
     * padding leave outputs that touch no input) */
    int64_t cols = (j->dwid - j->kw + j->stride) / j->stride;
    if (cols > j->ow) cols = j->ow;
    for (int64_t pl = begin; pl < end; pl++) {
        const float *dy = j->a + pl * j->oh * j->ow, *f = j->b + (pl % j->c) * taps;
        float *dx = j->out + pl * j->h * j->w;
        for (int64_t yo = 0; yo < j->oh; yo++) {
            int64_t r = yo * j->stride + j->kh - 1;
            if (r >= j->dh) break;
            float *dr = d + r * j->dwid + j->kw - 1;
            if (j->stride == 1)
                rt_row_copy(dr, dy + yo * j->ow, (int32_t)cols);
            else
                for (int64_t xo = 0; xo < cols; xo++) dr[xo * j->stride] = dy[yo * j->ow + xo];
        }
        if (taps == DW_TAPS3) {
            plane_sums3(tv, j->dwid, j->h, j->w, f, dx);
            continue;
        }
        for (int64_t r = 0; r < j->h; r++) {
            ROW_SUMS(j->w, taps, f, tv, dx + r * j->w);
            for (int64_t t = 0; t < taps; t++) tv[t] += j->dwid;
        }
        for (int64_t t = 0; t < taps; t++) tv[t] -= j->h * j->dwid; /* back to row 0 */
    }
}
RT_ISA_DISPATCH(dw_input_grad, (void *ctx, int64_t begin, int64_t end), (ctx, begin, end))

/* One sample's terms of a 3 x 3 filter's weight gradient, into the lanes as the general
 * loop below adds them (each tap's 8-lane, 4-lane and scalar sums get the same terms in
 * the same order: rows, then columns), but the taps side by side: each 8 or 4 values of
 * dy are loaded once for the nine taps, and the nine sums stay in registers through the
 * plane. One tap at a time loaded dy nine times, two loads a multiply-add, and paid the
 * loop's overhead per tap: MobileNetV2's 384 channels at 8 x 8, batch 128, 6.25 -> 5.29
 * ms (AVX2, 1 thread; 144 at 32 x 32 the same either way). */
static inline __attribute__((always_inline)) void dw_weight_grad3(const DwJob *j, const float *dy,
                                                                  const float **tv, float *lanes, float *tail) {
    int64_t ow8 = j->ow / 8 * 8, step = j->stride * j->pq;
    if (ow8 > 0) { /* rows of fewer than 8 (4 x 4 planes) have no 8-lane terms */
        V8 acc[DW_TAPS3];
        const float *row[DW_TAPS3];
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) acc[t] = ld8(lanes + 12 * t), row[t] = tv[t];
        for (int64_t yo = 0; yo < j->oh; yo++) {
            const float *dr = dy + yo * j->ow;
            for (int64_t xo = 0; xo < ow8; xo += 8) {
                V8 d = ld8(dr + xo);
                _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) acc[t] += d * ld8(row[t] + xo);
            }
            _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) row[t] += step;
        }
        _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) stv(lanes + 12 * t, acc[t]);
    }
    if (ow8 == j->ow) return;
    V4 acc4[DW_TAPS3], v4, w4;
    _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) memcpy(&acc4[t], lanes + 12 * t + 8, sizeof acc4[t]);
    for (int64_t yo = 0; yo < j->oh; yo++) {
        const float *dr = dy + yo * j->ow;
        int64_t xo = ow8;
        if (xo + 4 <= j->ow) {
            memcpy(&v4, dr + xo, sizeof v4);
            _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) {
                memcpy(&w4, tv[t] + yo * step + xo, sizeof w4);
                acc4[t] += v4 * w4;
            }
            xo += 4;
        }
        for (; xo < j->ow; xo++)
            for (int t = 0; t < DW_TAPS3; t++) tail[t] += dr[xo] * tv[t][yo * step + xo];
    }
    _Pragma("GCC unroll 9") for (int t = 0; t < DW_TAPS3; t++) memcpy(lanes + 12 * t + 8, &acc4[t], sizeof acc4[t]);
}

RT_ISA_BODY static void dw_weight_grad_body(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    int64_t taps = j->kh * j->kw, ow8 = j->ow / 8 * 8, step = j->stride * j->pq, per = 13 * taps;
    float *scratch = rt_thread_scratch(dw_scratch(j)), *p = scratch + ptr_floats(j);
    float *lanes_all = p + j->stride * j->ph * j->pq;
    const float **tv = (const float **)(void *)scratch;
    phases_zero(j, p);
    taps_at(j, p, tv);
    /* by blocks of channels, each block's planes sample by sample: a sample's planes of the
     * block lie side by side in x and dy, so the reads run on through whole pages, where
     * one channel's planes, a sample apart, each started cold (4 KB at a time: 144 channels
     * at 32 x 32, batch 128, 26.6-26.9 -> 17.5-18.9 ms; 384 at 8 x 8 9.9-10.9 -> 4.2-4.3;
     * AVX2, 1 thread, blocks of 16 channels). The longer the run, the fewer pages a
     * sample's reads open and the sooner the prefetcher follows: all of the part's channels
     * in one block (up to DW_LANES_BYTES of sums) against blocks of 16, 1 thread, AVX2,
     * medians of 5: MobileNetV2's 576 at 8 x 8 6.09 -> 4.73 ms, 192 at 16 x 16 6.55 ->
     * 4.80, 144 at 32 x 32 15.91 -> 12.81, 960 at 4 x 4 4.43 -> 4.34. Each channel's sums
     * take the same terms in the same order. */
    int64_t block = dw_channel_block(j), side = dw_direct(j), wide2 = dw_direct2(j), from = 0, to = 0;
    for (int64_t c0 = begin; c0 < end; c0 += block) {
        int64_t c1 = c0 + block < end ? c0 + block : end;
        memset(lanes_all, 0, sizeof(float) * (size_t)((c1 - c0) * per));
        for (int64_t s = 0; s < j->n; s++)
            for (int64_t ch = c0; ch < c1; ch++) {
                float *lanes = lanes_all + (ch - c0) * per, *tail = lanes + 12 * taps;
                const float *dy = j->a + (s * j->c + ch) * j->oh * j->ow;
                const float *x = x_plane(j, j->b, s * j->c + ch, s * j->c + c1, scratch, &from, &to);
                if (j->nm) /* dy's next plane: its stream, broken by x_plane's, restarts cold */
                    for (int64_t q = 0, len = j->oh * j->ow; q < len; q += 16) __builtin_prefetch(dy + len + q);
                if (side || wide2) {
                    direct_op(j, 2, side, wide2, dy, x, lanes);
                    continue;
                }
                pad_phases(j, x, p);
                if (taps == DW_TAPS3) {
                    dw_weight_grad3(j, dy, tv, lanes, tail);
                    continue;
                }
                for (int64_t t = 0; t < taps; t++) {
                    const float *in = tv[t];
                    V8 acc = ld8(lanes + 12 * t);
                    V4 acc4, v4, w4;
                    memcpy(&acc4, lanes + 12 * t + 8, sizeof acc4);
                    float rest = tail[t];
                    for (int64_t yo = 0; yo < j->oh; yo++, in += step) {
                        const float *dr = dy + yo * j->ow;
                        for (int64_t xo = 0; xo < ow8; xo += 8) acc += ld8(dr + xo) * ld8(in + xo);
                        int64_t xo = ow8;
                        if (xo + 4 <= j->ow) {
                            memcpy(&v4, dr + xo, sizeof v4), memcpy(&w4, in + xo, sizeof w4);
                            acc4 += v4 * w4;
                            xo += 4;
                        }
                        for (; xo < j->ow; xo++) rest += dr[xo] * in[xo];
                    }
                    stv(lanes + 12 * t, acc);
                    memcpy(lanes + 12 * t + 8, &acc4, sizeof acc4);
                    tail[t] = rest;
                }
            }
        for (int64_t ch = c0; ch < c1; ch++) {
            float *g = j->out + ch * taps, *lanes = lanes_all + (ch - c0) * per, *tail = lanes + 12 * taps;
            for (int64_t t = 0; t < taps; t++) { /* pairwise: 8 lanes, then 4, then the tail */
                float *l = lanes + 12 * t, *l4 = l + 8;
                for (int wd = 4; wd >= 1; wd /= 2)
                    for (int k = 0; k < wd; k++) l[k] += l[k + wd];
                for (int wd = 2; wd >= 1; wd /= 2)
                    for (int k = 0; k < wd; k++) l4[k] += l4[k + wd];
                g[t] = l[0] + l4[0] + tail[t];
            }
        }
    }
}
RT_ISA_DISPATCH(dw_weight_grad, (void *ctx, int64_t begin, int64_t end), (ctx, begin, end))

/* Planes per part: about 64k multiply-adds each. */
static int64_t dw_min_planes(const DwJob *j) {
    int64_t work = j->oh * j->ow * j->kh * j->kw;
    return work >= 65536 ? 1 : 65536 / (work > 0 ? work : 1);
}

/* y = dwconv2d(x, w), or with bias, mean and scale, of relu(((x + bias) - mean) * scale)
 * per channel: the values of a bias_bn_relu_train of x that it did not write
 * (dwconv2d_bn_relu). */
void nnq_rt_dwconv2d_bn(const float *x, const float *w, float *y, int32_t n, int32_t c, int32_t h, int32_t wd,
                        int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad, const float *bias,
                        const float *mean, const float *scale) {
    (void)o;
    DwJob j = dw_job(x, w, y, n, c, h, wd, kh, kw, stride, pad);
    j.nb = bias, j.nm = mean, j.ns = scale, j.normalize = mean != NULL;
    dw_ensure(&j);
    rt_parallel_for((int64_t)n * c, dw_min_planes(&j), dw_forward, &j);
}

void nnq_rt_dwconv2d(const float *x, const float *w, float *y, int32_t n, int32_t c, int32_t h, int32_t wd, int32_t o,
                     int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    nnq_rt_dwconv2d_bn(x, w, y, n, c, h, wd, o, kh, kw, stride, pad, NULL, NULL, NULL);
}

void nnq_rt_dwconv2d_dx(const float *dy, const float *w, float *dx, int32_t n, int32_t c, int32_t h, int32_t wd,
                        int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    (void)o;
    DwJob j = dw_job(dy, w, dx, n, c, h, wd, kh, kw, stride, pad);
    dw_ensure(&j);
    rt_parallel_for((int64_t)n * c, dw_min_planes(&j), dw_input_grad, &j);
}

/* dw of nnq_rt_dwconv2d_bn: x read as that reads it (bias, mean, scale NULL: as it is). */
void nnq_rt_dwconv2d_dw_bn(const float *dy, const float *x, float *dw, int32_t n, int32_t c, int32_t h, int32_t wd,
                           int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad, const float *bias,
                           const float *mean, const float *scale) {
    (void)o;
    DwJob j = dw_job(dy, x, dw, n, c, h, wd, kh, kw, stride, pad);
    j.nb = bias, j.nm = mean, j.ns = scale, j.normalize = mean != NULL;
    dw_ensure(&j);
    rt_parallel_for(c, 1, dw_weight_grad, &j);
}

void nnq_rt_dwconv2d_dw(const float *dy, const float *x, float *dw, int32_t n, int32_t c, int32_t h, int32_t wd,
                        int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    nnq_rt_dwconv2d_dw_bn(dy, x, dw, n, c, h, wd, o, kh, kw, stride, pad, NULL, NULL, NULL);
}
