/* conv.c — the runtime's image kernels: convolutions and their two gradients (im2col and
 * its adjoint around single-threaded GEMMs), max and average pooling and their gradients.
 * NCHW, row-major; no allocation, no failure (conv scratch is reserved before training by
 * nnq_rt_conv_reserve). Every entry point splits its work over the thread pool
 * (parallel.c) into items fixed by the shapes alone — chunks of samples, planes, slots —
 * each computed whole by one thread, so results do not depend on the thread count.
 *
 * A convolution x [N, C, H, W] * w [O, C, KH, KW] -> y [N, O, OH, OW] runs by chunks of
 * about G samples (G * OH*OW >= CONV_COLS columns, so deep layers with small images still
 * give GEMMs of a useful width; a power of two of chunks, sizes within one). One thread
 * takes a chunk whole: im2col of its samples into COL [CKK, G*OHW] in that thread's
 * scratch (it stays in cache), T = w COL, and T is y's chunk in channel-major order (for
 * G = 1 it is y itself, written in place). dx is the adjoint chunk by chunk (DCOL = w^T
 * dy, col2im). dw = sum over chunks of dy COL^T is a reduction: chunks are dealt to S
 * slots (chunk i to slot i mod S, S from the shapes); each slot sums its chunks in order
 * into a buffer of its own, then the slots are added in order, elementwise in parallel
 * (where the batch's positions are few and the weights wide, dw is computed by blocks of
 * its columns over the whole batch instead: dw_blocks). The
 * shapes conv_dnnl.c's rule names run the same
 * chunks and slots through oneDNN instead (a chunk's primitive on its thread; dw's slots
 * in oneDNN's weights layout, summed in the same order, then reordered into dw); those
 * conv_xsmm.c's rule names, through LIBXSMM one sample at a time (im2col of the sample,
 * its product written straight into y; dx: w^T dy_s, col2im; dw: each slot sums its
 * samples' dy_s PT_s in order, PT_s im2col's matrix transposed (patches), built and
 * multiplied a piece of positions at a time, then the slots are summed as ours are; a
 * 1 x 1 stride-1 layer's slots sum dw^T = x_s dy_s^T, transposed back after). Before
 * either, the 3 x 3 stride-1 pad-1 layers winograd.c's rule names run by Winograd's
 * F(m x m, 3 x 3): the forward and dx by chunks (F(4 x 4): by pieces of consecutive
 * chunks, wino_span; the weights transformed first, in parallel), dw by slots of pieces,
 * each slot's sum in the transformed domain, the slots then added in order and
 * transformed back filter by filter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

static int32_t out_dim(int32_t in, int32_t k, int32_t stride, int32_t pad) {
    return (in + 2 * pad - k) / stride + 1;
}

/* Output columns xo whose input column xo*stride - pad + j lies inside [0, w): [*lo, *hi). */
static inline void valid_cols(int32_t ow, int32_t w, int32_t stride, int32_t pad, int32_t j, int32_t *lo,
                              int32_t *hi) {
    int32_t a = pad - j; /* xo*stride >= a */
    int32_t b = w + pad - j; /* xo*stride < b */
    if (stride == 1) { /* no division: im2col calls this per row, and a division costs more than the row */
        *lo = a <= 0 ? 0 : a;
        *hi = b <= 0 ? 0 : b;
    } else {
        *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
        *hi = b <= 0 ? 0 : (b - 1) / stride + 1;
    }
    if (*hi > ow) *hi = ow;
    if (*lo > *hi) *lo = *hi;
}

/* Short row moves and clears (rt_row_copy, and its vector types: rt_internal.h). */
static inline void row_zero(float *dst, int32_t n) {
    if (n < 4) {
        if (n >= 2) *(F2u *)dst = (F2u){0}, *(F2u *)(dst + n - 2) = (F2u){0};
        else if (n == 1) dst[0] = 0.0f;
        return;
    }
    int32_t k = 0;
    for (; k + 4 <= n; k += 4) *(F4u *)(dst + k) = (F4u){0};
    if (k < n) *(F4u *)(dst + n - 4) = (F4u){0};
}

/* dst[k] += src[k]: each element's one add, so the same sums as a scalar loop. */
static inline void row_add(float *dst, const float *src, int32_t n) {
    int32_t k = 0;
    for (; k + 4 <= n; k += 4) *(F4u *)(dst + k) += *(const F4u *)(src + k);
    for (; k < n; k++) dst[k] += src[k];
}

/* Rows y of the output whose input row y*stride - pad + i lies inside [0, h): [*lo, *hi). */
static inline void valid_rows(int32_t oh, int32_t h, int32_t stride, int32_t pad, int32_t i, int32_t *lo,
                              int32_t *hi) {
    valid_cols(oh, h, stride, pad, i, lo, hi);
}

/* Stride 1, no padding: every row of every kernel offset is a plain copy, by 8-float moves
 * where rows are a multiple of 8 (LeNet-5's conv2: 500 rows of eight 8-float moves a
 * sample, where the general loop's bookkeeping cost more than the moves). */
RT_ISA_BODY static void im2col_valid_body(const float *x, int64_t ns, int64_t xs, int32_t c, int32_t h, int32_t w,
                                        int32_t kh, int32_t kw, float *col, int64_t ld) {
    int32_t oh = h - kh + 1, ow = w - kw + 1;
    int64_t ohw = (int64_t)oh * ow;
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++) {
                float *row = col + ((int64_t)(ch * kh + i) * kw + j) * ld;
                const float *src0 = x + ((int64_t)ch * h + i) * w + j;
                for (int64_t sm = 0; sm < ns; sm++, row += ohw, src0 += xs) {
                    const float *src = src0;
                    float *dst = row;
                    if (ow % 8 == 0)
                        for (int32_t y = 0; y < oh; y++, src += w, dst += ow)
                            for (int32_t k = 0; k < ow; k += 8) *(F8u *)(dst + k) = *(const F8u *)(src + k);
                    else
                        for (int32_t y = 0; y < oh; y++, src += w, dst += ow) rt_row_copy(dst, src, ow);
                }
            }
}

/* im2col of ns samples x + s * xs side by side: sample s's columns start at column s * OH*OW
 * of col. The samples are the inner loop, so the writes run along each row of col (a
 * batch's rows are long: one sample at a time wrote a few floats into every row, a page
 * apart, and cost more than the product it fed). */
RT_ISA_BODY static void im2col_samples_body(const float *x, int64_t ns, int64_t xs, int32_t c, int32_t h, int32_t w,
                                          int32_t kh, int32_t kw, int32_t stride, int32_t pad, float *col, int64_t ld) {
    if (stride == 1 && pad == 0) {
        im2col_valid_body(x, ns, xs, c, h, w, kh, kw, col, ld);
        return;
    }
    int32_t oh = out_dim(h, kh, stride, pad), ow = out_dim(w, kw, stride, pad);
    int64_t ohw = (int64_t)oh * ow;
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++) {
            int32_t ylo, yhi;
            valid_rows(oh, h, stride, pad, i, &ylo, &yhi);
            for (int32_t j = 0; j < kw; j++) {
                int32_t lo, hi;
                valid_cols(ow, w, stride, pad, j, &lo, &hi);
                float *row = col + ((int64_t)(ch * kh + i) * kw + j) * ld;
                const float *src0 = x + ((int64_t)ch * h + ylo * stride - pad + i) * w + (int64_t)lo * stride - pad + j;
                for (int64_t sm = 0; sm < ns; sm++, row += ohw, src0 += xs) {
                    /* rows of padding whole, then each image row: padding, a strided copy, padding */
                    if (ylo > 0) row_zero(row, ylo * ow);
                    const float *src = src0;
                    float *dst = row + (int64_t)ylo * ow;
                    if (stride == 1 && lo == 0 && hi == ow) /* the common case, as tight as it goes */
                        for (int32_t y = ylo; y < yhi; y++, src += w, dst += ow) rt_row_copy(dst, src, ow);
                    else
                        for (int32_t y = ylo; y < yhi; y++, src += (int64_t)stride * w, dst += ow) {
                            if (lo > 0) row_zero(dst, lo); /* guarded: a loop here becomes a call of memset */
                            if (stride == 1)
                                rt_row_copy(dst + lo, src, hi - lo);
                            else
                                for (int32_t xo = lo; xo < hi; xo++) dst[xo] = src[(int64_t)(xo - lo) * stride];
                            if (hi < ow) row_zero(dst + hi, ow - hi);
                        }
                    if (yhi < oh) row_zero(row + (int64_t)yhi * ow, (oh - yhi) * ow);
                }
            }
        }
}
RT_ISA_DISPATCH(im2col_samples,
                (const float *x, int64_t ns, int64_t xs, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw,
                int32_t stride, int32_t pad, float *col, int64_t ld),
                (x, ns, xs, c, h, w, kh, kw, stride, pad, col, ld))

void nnq_rt_im2col(const float *x, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw,
                   int32_t stride, int32_t pad, float *col, int64_t ld) {
    im2col_samples(x, 1, 0, c, h, w, kh, kw, stride, pad, col, ld);
}

/* One sample's patches PT [OH*OW, CKK], im2col's matrix transposed: row q holds output
 * position q's receptive field in w's order (channel, kernel row, kernel column), so that
 * dw_s = dy_s PT is a product of operands as they lie (conv_xsmm.c). A field's kernel row
 * is a run of KW floats of one input row at any stride, zeros where it crosses the
 * padding. Runs of at most 8 are moved as one 8-float load and store: the store's tail
 * lands on the runs that follow, which are written after it; the last run of PT, and a
 * load that would read past the sample, take the exact copy. */
RT_ISA_BODY static void patches_body(const float *x, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw,
                                     int32_t stride, int32_t pad, int64_t q0, int64_t nq, float *pt) {
    int32_t ow = out_dim(w, kw, stride, pad);
    int64_t hw = (int64_t)h * w, chw = c * hw, ckk = (int64_t)c * kh * kw;
    float *dst = pt, *ptend = pt + nq * ckk;
    for (int64_t q = q0; q < q0 + nq; q++) {
        int32_t x0 = (int32_t)(q % ow) * stride - pad, y0 = (int32_t)(q / ow) * stride - pad; /* the field's corner */
        int64_t at = (int64_t)y0 * w + x0; /* its offset in a plane */
        if (kw <= 8 && x0 >= 0 && x0 + kw <= w && y0 >= 0 && y0 + kh <= h &&
            (c - 1) * hw + at + (kh - 1) * w + 8 <= chw && dst + ckk + 8 - kw <= ptend) {
            /* inside the image, and no move past the sample or PT: 8-float moves */
            for (int32_t ch = 0; ch < c; ch++) {
                const float *src = x + ch * hw + at;
                for (int32_t i = 0; i < kh; i++, src += w, dst += kw) *(F8u *)dst = *(const F8u *)src;
            }
            continue;
        }
        int32_t lo = x0 < 0 ? -x0 : 0, hi = w - x0 < kw ? w - x0 : kw; /* the runs' columns inside */
        if (hi < lo) hi = lo;
        for (int32_t ch = 0; ch < c; ch++)
            for (int32_t i = 0; i < kh; i++, dst += kw) {
                int32_t y = y0 + i;
                if (y < 0 || y >= h) {
                    row_zero(dst, kw);
                    continue;
                }
                int64_t from = ch * hw + (int64_t)y * w + x0 + lo; /* the run's first input inside */
                if (lo > 0) row_zero(dst, lo);
                rt_row_copy(dst + lo, x + from, hi - lo);
                if (hi < kw) row_zero(dst + hi, kw - hi);
            }
    }
}
RT_ISA_DISPATCH(patches,
                (const float *x, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, int32_t stride, int32_t pad,
                int64_t q0, int64_t nq, float *pt),
                (x, c, h, w, kh, kw, stride, pad, q0, nq, pt))

/* col2im of stride 1 without padding, compiled per ISA: plain row adds, 8 floats an add
 * where rows are a multiple of 8 (each element's adds in the general loop's order). */
RT_ISA_BODY static void col2im_valid_body(const float *col, int64_t ld, int32_t c, int32_t h, int32_t w, int32_t kh,
                                       int32_t kw, float *x) {
    int32_t oh = h - kh + 1, ow = w - kw + 1;
    memset(x, 0, sizeof(float) * (size_t)c * h * w);
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++) {
                const float *src = col + ((int64_t)(ch * kh + i) * kw + j) * ld;
                float *dst = x + ((int64_t)ch * h + i) * w + j;
                if (ow % 8 == 0)
                    for (int32_t y = 0; y < oh; y++, src += ow, dst += w)
                        for (int32_t k = 0; k < ow; k += 8) *(F8u *)(dst + k) += *(const F8u *)(src + k);
                else
                    for (int32_t y = 0; y < oh; y++, src += ow, dst += w) row_add(dst, src, ow);
            }
}
RT_ISA_DISPATCH(col2im_valid,
                (const float *col, int64_t ld, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw, float *x),
                (col, ld, c, h, w, kh, kw, x))

void nnq_rt_col2im(const float *col, int64_t ld, int32_t c, int32_t h, int32_t w, int32_t kh,
                   int32_t kw, int32_t stride, int32_t pad, float *x) {
    if (stride == 1 && pad == 0) {
        col2im_valid(col, ld, c, h, w, kh, kw, x);
        return;
    }
    int32_t oh = out_dim(h, kh, stride, pad), ow = out_dim(w, kw, stride, pad);
    memset(x, 0, sizeof(float) * (size_t)c * h * w);
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++) {
            int32_t ylo, yhi;
            valid_rows(oh, h, stride, pad, i, &ylo, &yhi);
            for (int32_t j = 0; j < kw; j++) {
                int32_t lo, hi;
                valid_cols(ow, w, stride, pad, j, &lo, &hi);
                const float *src = col + ((int64_t)(ch * kh + i) * kw + j) * ld + (int64_t)ylo * ow + lo;
                float *dst = x + ((int64_t)ch * h + ylo * stride - pad + i) * w + (int64_t)lo * stride - pad + j;
                for (int32_t y = ylo; y < yhi; y++, src += ow, dst += (int64_t)stride * w)
                    if (stride == 1)
                        row_add(dst, src, hi - lo);
                    else
                        for (int32_t xo = 0; xo < hi - lo; xo++) dst[(int64_t)xo * stride] += src[xo];
            }
        }
}

/* The common 2 x 2 window with stride 2, row pairs at a time; the same results as the
 * general loop (the first maximum in row-major window order). */
typedef float F4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));

typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

/* Lanes i0..i3 of a:b (0-3 from a, 4-7 from b): GCC and clang spell it differently; the
 * 8-lane shuffles are rt_internal.h's. */
#if defined(__clang__)
#define SHUF4(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
#define SHUF4(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (I4){i0, i1, i2, i3})
#endif
#define SHUF8 RT_SHUF8
#define EVEN8 RT_EVEN8
#define ODD8(a, b) RT_SHUF8(a, b, 1, 3, 5, 7, 9, 11, 13, 15)

/* Where mask is set, b, else a (lane by lane; bit operations, so any x86 does it in
 * registers). */
static F4 pick_f(I4 mask, F4 b, F4 a) { return (F4)((mask & (I4)b) | (~mask & (I4)a)); }
static I4 pick_i(I4 mask, I4 b, I4 a) { return (mask & b) | (~mask & a); }
/* pick_f, pick_i on 8 lanes (macros: a function returning an 8-float vector would have
 * the baseline's ABI, which passes it in memory, even where inlined into an AVX clone) */
#define PICK_F8(mask, b, a) ((F8)(((mask) & (I8)(b)) | (~(mask) & (I8)(a))))
#define PICK_I8(mask, b, a) (((mask) & (b)) | (~(mask) & (a)))

/* Eight windows of rows r0, r1 from column 2q: values (bn'd, relu'd as asked) into y,
 * argmax positions (row-major, base `at`) into ip; the order of maxpool2_planes' loops. */
__attribute__((always_inline)) static inline void maxpool2_eight(const float *r0, const float *r1, int32_t w,
                                                                  int32_t at, bool relu, const float *bn, float *y,
                                                                  int32_t *ip) {
    F8 u0, u1, v0, v1;
    memcpy(&u0, r0, 32), memcpy(&u1, r0 + 8, 32), memcpy(&v0, r1, 32), memcpy(&v1, r1 + 8, 32);
    if (bn) {
        F8 b = {bn[0], bn[0], bn[0], bn[0], bn[0], bn[0], bn[0], bn[0]};
        F8 m = {bn[1], bn[1], bn[1], bn[1], bn[1], bn[1], bn[1], bn[1]};
        F8 s = {bn[2], bn[2], bn[2], bn[2], bn[2], bn[2], bn[2], bn[2]};
        u0 = ((u0 + b) - m) * s, u1 = ((u1 + b) - m) * s, v0 = ((v0 + b) - m) * s, v1 = ((v1 + b) - m) * s;
    }
    if (relu) {
        F8 z = {0};
        u0 = PICK_F8(u0 >= z, u0, z), u1 = PICK_F8(u1 >= z, u1, z);
        v0 = PICK_F8(v0 >= z, v0, z), v1 = PICK_F8(v1 >= z, v1, z);
    }
    F8 a = EVEN8(u0, u1), b = ODD8(u0, u1), c = EVEN8(v0, v1), d = ODD8(v0, v1), m = a;
    I8 k = {0}, gt, one = {1, 1, 1, 1, 1, 1, 1, 1}, wv = one * w, wv1 = wv + one;
    gt = b > m, k = PICK_I8(gt, one, k), m = PICK_F8(gt, b, m);
    gt = c > m, k = PICK_I8(gt, wv, k), m = PICK_F8(gt, c, m);
    gt = d > m, k = PICK_I8(gt, wv1, k), m = PICK_F8(gt, d, m);
    I8 pos = k + (I8){at, at + 2, at + 4, at + 6, at + 8, at + 10, at + 12, at + 14};
    memcpy(y, &m, 32), memcpy(ip, &pos, 32);
}

/* relu(v) as the generated code computes it: v >= 0 ? v : 0 (so -0 stays -0). */
static inline float relu_f(float v) { return v >= 0.0f ? v : 0.0f; }

/* With relu, each window's values pass through relu as they are read (relu_maxpool): the
 * values and argmax positions of a maxpool of relu(x). With bn (a triple {b, m, s} a
 * plane, bn + 3 p for plane p), each value v becomes ((v + b) - m) * s before the relu, a batch norm's
 * elementwise pass (nnq_rt_bn_relu_maxpool): the same operations in the same order, so
 * the same values as the generated pass stores. */
__attribute__((always_inline)) static inline float bn_f(const float *bn, float v) {
    return ((v + bn[0]) - bn[1]) * bn[2];
}

RT_ISA_BODY static void maxpool2_planes_body(const float *x, int64_t planes, int32_t h, int32_t w, bool relu,
                                          const float *bn, float *y, int32_t *idx) {
    int32_t oh = h / 2, ow = w / 2;
    const float *bn_all = bn;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + (int64_t)p * h * w;
        float *yp = y + (int64_t)p * oh * ow;
        int32_t *ip = idx + (int64_t)p * oh * ow;
        bn = bn_all ? bn_all + 3 * p : NULL;
        for (int32_t r = 0; r < oh; r++) {
            const float *r0 = src + (2 * r) * w, *r1 = r0 + w;
            int32_t q = 0;
            /* eight, then four windows at a time: even and odd columns of both rows; the
             * later candidate wins only when strictly greater, as in the scalar loop below */
            for (; q + 8 <= ow; q += 8)
                maxpool2_eight(r0 + 2 * q, r1 + 2 * q, w, 2 * r * w + 2 * q, relu, bn, yp + r * ow + q,
                               ip + r * ow + q);
            for (; q + 4 <= ow; q += 4) {
                F4 u0, u1, v0, v1;
                memcpy(&u0, r0 + 2 * q, 16), memcpy(&u1, r0 + 2 * q + 4, 16);
                memcpy(&v0, r1 + 2 * q, 16), memcpy(&v1, r1 + 2 * q + 4, 16);
                if (bn) {
                    F4 b = {bn[0], bn[0], bn[0], bn[0]}, m = {bn[1], bn[1], bn[1], bn[1]};
                    F4 s = {bn[2], bn[2], bn[2], bn[2]};
                    u0 = ((u0 + b) - m) * s, u1 = ((u1 + b) - m) * s;
                    v0 = ((v0 + b) - m) * s, v1 = ((v1 + b) - m) * s;
                }
                if (relu) {
                    F4 z = {0, 0, 0, 0};
                    u0 = pick_f(u0 >= z, u0, z), u1 = pick_f(u1 >= z, u1, z);
                    v0 = pick_f(v0 >= z, v0, z), v1 = pick_f(v1 >= z, v1, z);
                }
                F4 a = SHUF4(u0, u1, 0, 2, 4, 6), b = SHUF4(u0, u1, 1, 3, 5, 7);
                F4 c = SHUF4(v0, v1, 0, 2, 4, 6), d = SHUF4(v0, v1, 1, 3, 5, 7);
                F4 m = a;
                I4 k = {0, 0, 0, 0}, gt;
                gt = b > m, k = pick_i(gt, (I4){1, 1, 1, 1}, k), m = pick_f(gt, b, m);
                gt = c > m, k = pick_i(gt, (I4){w, w, w, w}, k), m = pick_f(gt, c, m);
                gt = d > m, k = pick_i(gt, (I4){w + 1, w + 1, w + 1, w + 1}, k), m = pick_f(gt, d, m);
                int32_t at = 2 * r * w + 2 * q;
                I4 pos = k + (I4){at, at + 2, at + 4, at + 6};
                memcpy(yp + r * ow + q, &m, 16);
                memcpy(ip + r * ow + q, &pos, 16);
            }
            for (; q < ow; q++) {
                float a = r0[2 * q], b = r0[2 * q + 1], c = r1[2 * q], d = r1[2 * q + 1];
                if (bn) a = bn_f(bn, a), b = bn_f(bn, b), c = bn_f(bn, c), d = bn_f(bn, d);
                if (relu) a = relu_f(a), b = relu_f(b), c = relu_f(c), d = relu_f(d);
                int32_t at = 2 * r * w + 2 * q;
                float m = a;
                int32_t k = 0;
                k = b > m ? 1 : k, m = b > m ? b : m;
                k = c > m ? w : k, m = c > m ? c : m;
                k = d > m ? w + 1 : k, m = d > m ? d : m;
                yp[r * ow + q] = m;
                ip[r * ow + q] = at + k;
            }
        }
    }
}
RT_ISA_DISPATCH(maxpool2_planes,
                (const float *x, int64_t planes, int32_t h, int32_t w, bool relu, const float *bn, float *y,
                int32_t *idx),
                (x, planes, h, w, relu, bn, y, idx))

static void maxpool_planes(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                           bool relu, const float *bn, float *y, int32_t *idx) {
    if (k == 2 && stride == 2) {
        maxpool2_planes(x, planes, h, w, relu, bn, y, idx);
        return;
    }
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    const float *bn_all = bn;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + (int64_t)p * h * w;
        bn = bn_all ? bn_all + 3 * p : NULL;
        for (int32_t r = 0; r < oh; r++)
            for (int32_t q = 0; q < ow; q++) {
                int32_t best = (r * stride) * w + q * stride;
                float m = bn ? bn_f(bn, src[best]) : src[best];
                m = relu ? relu_f(m) : m;
                for (int32_t i = 0; i < k; i++)
                    for (int32_t j = 0; j < k; j++) {
                        int32_t at = (r * stride + i) * w + q * stride + j;
                        float v = bn ? bn_f(bn, src[at]) : src[at];
                        v = relu ? relu_f(v) : v;
                        if (v > m) m = v, best = at;
                    }
                int64_t o = ((int64_t)p * oh + r) * ow + q;
                y[o] = m;
                idx[o] = best;
            }
    }
}

static void maxpool_grad_planes(const float *dy, const int32_t *idx, int64_t planes, int32_t oh, int32_t ow,
                                int32_t h, int32_t w, float *dx) {
    if (h == 2 * oh && w == 2 * ow) {
        /* The windows tile the plane in 2 x 2 blocks (h = 2 oh means stride 2 and k <= 2,
         * or a single window; each window then lies in its own block): one write per
         * pixel, no zeroing pass; four windows at a time, then one by one. */
        for (int64_t p = 0; p < planes; p++) {
            float *dp = dx + (int64_t)p * h * w;
            for (int32_t r = 0; r < oh; r++) {
                int32_t q = 0;
                for (; q + 4 <= ow; q += 4) {
                    int64_t o = ((int64_t)p * oh + r) * ow + q;
                    int32_t base = 2 * r * w + 2 * q;
                    F4 g, zero = {0, 0, 0, 0};
                    I4 at, b0 = {base, base + 2, base + 4, base + 6};
                    memcpy(&g, dy + o, 16), memcpy(&at, idx + o, 16);
                    F4 e0 = pick_f(at == b0, g, zero), o0 = pick_f(at == b0 + 1, g, zero);
                    F4 e1 = pick_f(at == b0 + w, g, zero), o1 = pick_f(at == b0 + w + 1, g, zero);
                    F4 lo0 = SHUF4(e0, o0, 0, 4, 1, 5), hi0 = SHUF4(e0, o0, 2, 6, 3, 7);
                    F4 lo1 = SHUF4(e1, o1, 0, 4, 1, 5), hi1 = SHUF4(e1, o1, 2, 6, 3, 7);
                    memcpy(dp + base, &lo0, 16), memcpy(dp + base + 4, &hi0, 16);
                    memcpy(dp + base + w, &lo1, 16), memcpy(dp + base + w + 4, &hi1, 16);
                }
                for (; q < ow; q++) {
                    int64_t o = ((int64_t)p * oh + r) * ow + q;
                    int32_t at = idx[o], base = 2 * r * w + 2 * q;
                    float g = dy[o];
                    dp[base] = at == base ? g : 0.0f;
                    dp[base + 1] = at == base + 1 ? g : 0.0f;
                    dp[base + w] = at == base + w ? g : 0.0f;
                    dp[base + w + 1] = at == base + w + 1 ? g : 0.0f;
                }
            }
        }
        return;
    }
    memset(dx, 0, sizeof(float) * (size_t)planes * h * w);
    for (int64_t p = 0; p < planes; p++)
        for (int32_t o = 0; o < oh * ow; o++) {
            int64_t at = (int64_t)p * oh * ow + o;
            dx[(int64_t)p * h * w + idx[at]] += dy[at];
        }
}

static void avgpool_planes(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y) {
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float scale = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + (int64_t)p * h * w;
        for (int32_t r = 0; r < oh; r++)
            for (int32_t q = 0; q < ow; q++) {
                float s = 0;
                for (int32_t i = 0; i < k; i++)
                    for (int32_t j = 0; j < k; j++) s += src[(r * stride + i) * w + q * stride + j];
                y[((int64_t)p * oh + r) * ow + q] = s * scale;
            }
    }
}

static void avgpool_grad_planes(const float *dy, int64_t planes, int32_t h, int32_t w, int32_t k,
                         int32_t stride, float *dx) {
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float scale = 1.0f / (float)(k * k);
    memset(dx, 0, sizeof(float) * (size_t)planes * h * w);
    for (int64_t p = 0; p < planes; p++) {
        float *dst = dx + (int64_t)p * h * w;
        for (int32_t r = 0; r < oh; r++)
            for (int32_t q = 0; q < ow; q++) {
                float g = dy[((int64_t)p * oh + r) * ow + q] * scale;
                for (int32_t i = 0; i < k; i++)
                    for (int32_t j = 0; j < k; j++) dst[(r * stride + i) * w + q * stride + j] += g;
            }
    }
}

/* ---- batches and planes over the thread pool ---- */

typedef struct ImageJob {
    const float *in;
    float *out;
    const int32_t *idx_in;
    int32_t *idx_out;
    int32_t c, h, w, kh, kw, stride, pad, oh, ow;
    int64_t ld;
    bool relu; /* relu_maxpool */
} ImageJob;

/* Enough items per thread that waking a worker pays off. */
static int64_t min_items(int64_t item_elems) {
    return item_elems >= 65536 ? 1 : 65536 / (item_elems > 0 ? item_elems : 1);
}

static void maxpool_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    maxpool_planes(j->in + b * in, e - b, j->h, j->w, j->kh, j->stride, j->relu, NULL, j->out + b * out,
                   j->idx_out + b * out);
}

static void maxpool_grad_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    maxpool_grad_planes(j->in + b * out, j->idx_in + b * out, e - b, j->oh, j->ow, j->h,
                        j->w, j->out + b * in);
}

static void avgpool_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    avgpool_planes(j->in + b * in, e - b, j->h, j->w, j->kh, j->stride, j->out + b * out);
}

static void avgpool_grad_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    avgpool_grad_planes(j->in + b * out, e - b, j->h, j->w, j->kh, j->stride,
                        j->out + b * in);
}

static void maxpool(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride, bool relu,
                    float *y, int32_t *idx) {
    ImageJob j = {.in = x, .out = y, .idx_out = idx, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1, .relu = relu};
    rt_parallel_for(planes, min_items((int64_t)h * w), maxpool_range, &j);
}

void nnq_rt_maxpool(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y, int32_t *idx) {
    maxpool(x, planes, h, w, k, stride, false, y, idx);
}

void nnq_rt_relu_maxpool(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                         float *y, int32_t *idx) {
    maxpool(x, planes, h, w, k, stride, true, y, idx);
}

/* The planes of channels [c0, c1) of every sample, each with its channel's batch-norm
 * transform: up to BN_CHANS adjacent planes of a sample a call (LeNet-5's second
 * convolution has 8 x 8 planes: a call a plane cost as much as the pooling). */
enum { BN_CHANS = 64 };
void nnq_rt_bn_relu_maxpool(const float *x, const float *bias, const float *mean, const float *scale, int64_t n,
                            int32_t c, int32_t c0, int32_t c1, int32_t h, int32_t w, int32_t k, int32_t stride,
                            float *y, int32_t *idx) {
    int64_t hw = (int64_t)h * w, ohw = (int64_t)((h - k) / stride + 1) * ((w - k) / stride + 1);
    float bn[3 * BN_CHANS];
    for (int32_t cc = c0; cc < c1; cc += BN_CHANS) {
        int32_t cnt = c1 - cc < BN_CHANS ? c1 - cc : BN_CHANS;
        for (int32_t j = 0; j < cnt; j++)
            bn[3 * j] = bias[cc + j], bn[3 * j + 1] = mean[cc + j], bn[3 * j + 2] = scale[cc + j];
        for (int64_t s = 0; s < n; s++) {
            int64_t p = s * c + cc;
            maxpool_planes(x + p * hw, cnt, h, w, k, stride, true, bn, y + p * ohw, idx + p * ohw);
        }
    }
}

void nnq_rt_maxpool_grad(const float *dy, const int32_t *idx, int64_t planes, int32_t oh, int32_t ow,
                         int32_t h, int32_t w, float *dx) {
    ImageJob j = {.in = dy, .out = dx, .idx_in = idx, .h = h, .w = w, .oh = oh, .ow = ow};
    rt_parallel_for(planes, min_items((int64_t)h * w), maxpool_grad_range, &j);
}

/* Each sample's planes of channels [c0, c1) (adjacent in memory) in one call; the next
 * sample's, a stride further, are prefetched meanwhile (a group of few channels reads
 * short runs of lines, which the hardware prefetcher hardly starts on). */
void nnq_rt_maxpool_grad_chan(const float *dy, const int32_t *idx, int64_t n, int32_t c, int32_t c0, int32_t c1,
                              int32_t oh, int32_t ow, int32_t h, int32_t w, float *dx) {
    int64_t hw = (int64_t)h * w, ohw = (int64_t)oh * ow, in = (c1 - c0) * ohw, out = (c1 - c0) * hw;
    for (int64_t s = 0; s < n; s++) {
        int64_t p = s * c + c0;
        if (s + 1 < n) {
            int64_t q = p + c;
            for (int64_t k = 0; k < in; k += 16) __builtin_prefetch(dy + q * ohw + k), __builtin_prefetch(idx + q * ohw + k);
            for (int64_t k = 0; k < out; k += 16) __builtin_prefetch(dx + q * hw + k, 1);
        }
        maxpool_grad_planes(dy + p * ohw, idx + p * ohw, c1 - c0, oh, ow, h, w, dx + p * hw);
    }
}

void nnq_rt_avgpool(const float *x, int64_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y) {
    ImageJob j = {.in = x, .out = y, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1};
    rt_parallel_for(planes, min_items((int64_t)h * w), avgpool_range, &j);
}

void nnq_rt_avgpool_grad(const float *dy, int64_t planes, int32_t h, int32_t w, int32_t k,
                         int32_t stride, float *dx) {
    ImageJob j = {.in = dy, .out = dx, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1};
    rt_parallel_for(planes, min_items((int64_t)h * w), avgpool_grad_range, &j);
}

/* ---- convolutions by chunks of samples ---- */

enum { CONV_COLS = 512, CONV_MIN_CHUNKS = 8, DW_MAX_SLOTS = 32 };
#define DW_MAX_SHARED ((int64_t)16 << 20) /* floats of slot buffers: 64 MiB */

typedef struct ConvJob {
    const float *x, *w, *dy;
    float *y;
    int32_t n, c, h, wd, o, kh, kw, stride, pad, oh, ow;
    int64_t ohw, ckk, chw, g, chunks, slots;
    RtConvOp op;
    const RtDnnlConv *dk; /* oneDNN's kernels for op (conv_dnnl.c), NULL: ours */
    RtXsmmConv xk;        /* else LIBXSMM's per-sample products (conv_xsmm.c), xk.set NULL: im2col + GEMM */
    bool wino;            /* before those, Winograd's F(m x m, 3 x 3) (winograd.c) */
    int64_t blocks;       /* else, for dw: blocks of channels over the batch (dw_blocks), 0: slots */
    float *wk;            /* the weights in oneDNN's layout (fwd, dx), dw's slot buffers; w^T for LIBXSMM's dx */
} ConvJob;

static ConvJob conv_job(int32_t n, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh, int32_t kw,
                        int32_t stride, int32_t pad) {
    ConvJob j = {.n = n, .c = c, .h = h, .wd = w, .o = o, .kh = kh, .kw = kw, .stride = stride, .pad = pad,
                 .oh = out_dim(h, kh, stride, pad), .ow = out_dim(w, kw, stride, pad)};
    j.ohw = (int64_t)j.oh * j.ow;
    j.ckk = (int64_t)c * kh * kw;
    j.chw = (int64_t)c * h * w;
    int64_t g = j.ohw >= CONV_COLS ? 1 : (CONV_COLS + j.ohw - 1) / j.ohw;
    if (g > n / CONV_MIN_CHUNKS) g = n / CONV_MIN_CHUNKS; /* enough chunks to go round */
    if (g < 1) g = 1;
    /* a power of two of chunks (their sizes differ by one at most), so they share out
     * evenly over 2, 4, 8... threads: LeNet-5's 100 samples in 13 chunks of 8 left a
     * thread of two idle for one chunk in 13 */
    int64_t want = n > 0 ? (n + g - 1) / g : 1;
    for (j.chunks = 1; j.chunks < want; j.chunks *= 2) {}
    if (j.chunks > n) j.chunks = n > 0 ? n : 1;
    j.g = (n + j.chunks - 1) / j.chunks; /* the largest chunk */
    int64_t most = 1 + DW_MAX_SHARED / (j.ckk * o > 0 ? j.ckk * o : 1);
    j.slots = j.chunks < DW_MAX_SLOTS ? j.chunks : DW_MAX_SLOTS;
    if (j.slots > most) j.slots = most;
    if (j.slots < 1) j.slots = 1;
    return j;
}

/* The samples of piece pc of m consecutive chunks (Winograd's, wino_span): [*s0, *s0 +
 * count). */
static int64_t piece_samples(const ConvJob *j, int64_t m, int64_t pc, int64_t *s0) {
    int64_t last = (pc + 1) * m < j->chunks ? (pc + 1) * m : j->chunks;
    *s0 = pc * m * j->n / j->chunks;
    return last * j->n / j->chunks - *s0;
}

/* Samples [s0, s0 + cnt) of chunk `ch`. */
static int64_t chunk_count(const ConvJob *j, int64_t ch, int64_t *s0) {
    return piece_samples(j, 1, ch, s0);
}

/* Sample s's dy as rows of O, at column offset 0 of a matrix of ld columns (a chunk's,
 * or dw_blocks' batch-wide one). */
static void sample_dy(const ConvJob *j, int64_t s, float *t, int64_t ld) {
    for (int32_t oo = 0; oo < j->o; oo++)
        memcpy(t + oo * ld, j->dy + (s * j->o + oo) * j->ohw, sizeof(float) * (size_t)j->ohw);
}

/* A 1 x 1, stride 1, unpadded convolution's columns are the sample itself: [C, H*W]. */
static bool cols_are_x(const ConvJob *j) {
    return j->kh == 1 && j->kw == 1 && j->stride == 1 && j->pad == 0;
}

/* The chunk's columns [CKK, cnt*OHW]: a single sample's own where cols_are_x, else built in
 * col (LIBXSMM's products take them a sample at a time). MobileNetV2's 1 x 1 layers at
 * 32 x 32 (chunks of one sample) copied each sample first, as much as the product read
 * from it. */
static const float *chunk_cols(const ConvJob *j, int64_t s0, int64_t cnt, float *col) {
    if (cnt == 1 && cols_are_x(j)) return j->x + s0 * j->chw;
    im2col_samples(j->x + s0 * j->chw, cnt, j->chw, j->c, j->h, j->wd, j->kh, j->kw, j->stride, j->pad, col,
                   cnt * j->ohw);
    return col;
}

/* dy's chunk as T [O, cnt*OHW]: in place for one sample, else gathered into t. */
static const float *chunk_dy(const ConvJob *j, int64_t s0, int64_t cnt, float *t) {
    if (cnt == 1) return j->dy + s0 * j->o * j->ohw;
    for (int64_t s = 0; s < cnt; s++) sample_dy(j, s0 + s, t + s * j->ohw, cnt * j->ohw);
    return t;
}

static void conv_fwd_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *col = rt_thread_scratch((j->ckk + j->o) * j->g * j->ohw), *t = col + j->ckk * j->g * j->ohw;
    for (int64_t ch = begin; ch < end; ch++) {
        int64_t s0, cnt = chunk_count(j, ch, &s0), ld = cnt * j->ohw;
        float *y = j->y + s0 * j->o * j->ohw;
        const float *cols = chunk_cols(j, s0, cnt, col);
        rt_sgemm_serial(0, 0, j->o, (int32_t)ld, (int32_t)j->ckk, 1.0f, j->w, (int32_t)j->ckk, cols, (int32_t)ld, 0.0f,
                        cnt == 1 ? y : t, (int32_t)ld);
        if (cnt > 1)
            for (int64_t s = 0; s < cnt; s++)
                for (int32_t oo = 0; oo < j->o; oo++)
                    memcpy(y + (s * j->o + oo) * j->ohw, t + (oo * cnt + s) * j->ohw, sizeof(float) * (size_t)j->ohw);
    }
}

static void conv_dx_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *col = rt_thread_scratch((j->ckk + j->o) * j->g * j->ohw), *t = col + j->ckk * j->g * j->ohw;
    for (int64_t ch = begin; ch < end; ch++) {
        int64_t s0, cnt = chunk_count(j, ch, &s0), ld = cnt * j->ohw;
        const float *dy = chunk_dy(j, s0, cnt, t);
        bool direct = cnt == 1 && cols_are_x(j); /* the product is dx_s itself */
        rt_sgemm_serial(1, 0, (int32_t)j->ckk, (int32_t)ld, j->o, 1.0f, j->w, (int32_t)j->ckk, dy, (int32_t)ld, 0.0f,
                        direct ? j->y + s0 * j->chw : col, (int32_t)ld);
        for (int64_t s = 0; s < cnt && !direct; s++)
            nnq_rt_col2im(col + s * j->ohw, ld, j->c, j->h, j->wd, j->kh, j->kw, j->stride, j->pad,
                          j->y + (s0 + s) * j->chw);
    }
}

/* Slot s's buffer for dw [O, CKK]: dw itself for slot 0, else its own part of the shared
 * scratch (conv_dw_sum_range adds them into dw after). */
static float *dw_slot(const ConvJob *j, int64_t slot) {
    int64_t wsize = j->o * j->ckk;
    return slot == 0 ? j->y : rt_shared_scratch((j->slots - 1) * wsize) + (slot - 1) * wsize;
}

/* Slot s sums chunks s, s + S, ... into its buffer (dw_slot). */
static void conv_dw_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *col = rt_thread_scratch((j->ckk + j->o) * j->g * j->ohw), *t = col + j->ckk * j->g * j->ohw;
    for (int64_t slot = begin; slot < end; slot++) {
        float *dst = dw_slot(j, slot);
        for (int64_t ch = slot; ch < j->chunks; ch += j->slots) {
            int64_t s0, cnt = chunk_count(j, ch, &s0), ld = cnt * j->ohw;
            const float *cols = chunk_cols(j, s0, cnt, col), *dy = chunk_dy(j, s0, cnt, t);
            rt_sgemm_serial(0, 1, j->o, (int32_t)j->ckk, (int32_t)ld, 1.0f, dy, (int32_t)ld, cols, (int32_t)ld,
                            ch == slot ? 0.0f : 1.0f, dst, (int32_t)j->ckk);
        }
    }
}

/* ---- LIBXSMM's per-sample products (conv_xsmm.c): the same chunks and slots ---- */

static void xsmm_fwd_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *col = rt_thread_scratch(j->ckk * j->ohw);
    for (int64_t s = begin * j->n / j->chunks; s < end * j->n / j->chunks; s++)
        rt_xsmm_sample(&j->xk, false, chunk_cols(j, s, 1, col), j->w, j->y + s * j->o * j->ohw);
}

/* dx_s = col2im(w^T dy_s); where cols_are_x, the product is dx_s itself. */
static void xsmm_dx_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *col = rt_thread_scratch(j->ckk * j->ohw);
    for (int64_t s = begin * j->n / j->chunks; s < end * j->n / j->chunks; s++) {
        float *dx = j->y + s * j->chw;
        rt_xsmm_sample(&j->xk, false, j->dy + s * j->o * j->ohw, j->wk, cols_are_x(j) ? dx : col);
        if (!cols_are_x(j)) nnq_rt_col2im(col, j->ohw, j->c, j->h, j->wd, j->kh, j->kw, j->stride, j->pad, dx);
    }
}

/* Slot s sums the samples of chunks s, s + S, ... in order into its buffer (dw_slot), as
 * conv_dw_range does, but where cols_are_x (below): dw += dy_s PT_s, a piece of
 * RT_XSMM_DW_POSITIONS output positions at a time (PT_s's rows for the piece, patches, then
 * the product: the piece stays in the L1 cache, where a whole sample's PT, read back once
 * for every few of dw's rows, crowded the L2 cache and two threads scaled 1.2x on LeNet-5's
 * conv2 instead of 1.9x). */
static void xsmm_dw_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *pt = rt_thread_scratch(j->ckk * RT_XSMM_DW_POSITIONS);
    for (int64_t slot = begin; slot < end; slot++) {
        float *dst = dw_slot(j, slot);
        for (int64_t ch = slot; ch < j->chunks; ch += j->slots) {
            int64_t s0, cnt = chunk_count(j, ch, &s0);
            for (int64_t s = s0; s < s0 + cnt; s++)
                for (int64_t q0 = 0; q0 < j->ohw; q0 += RT_XSMM_DW_POSITIONS) {
                    int64_t nq = j->ohw - q0 < RT_XSMM_DW_POSITIONS ? j->ohw - q0 : RT_XSMM_DW_POSITIONS;
                    patches(j->x + s * j->chw, j->c, j->h, j->wd, j->kh, j->kw, j->stride, j->pad, q0, nq, pt);
                    rt_xsmm_dw_piece(&j->xk, ch != slot || s != s0 || q0 > 0, nq, pt, j->dy + s * j->o * j->ohw + q0,
                                     dst);
                }
        }
    }
}

/* dyt [P, M] = dy [O, P] transposed, its columns O..M-1 zeros (M a multiple of 8), by
 * blocks of 8 x 8 transposed in registers (a scalar loop took a quarter of the time of
 * MobileNetV2's 144 -> 24 1 x 1 weight gradient); positions past the last 8 one by one. */
RT_ISA_BODY static void transpose_pad_body(const float *dy, int64_t o, int64_t p, int64_t m, float *dyt) {
    int64_t q = 0;
    for (; q + 8 <= p; q += 8)
        for (int64_t o0 = 0; o0 < m; o0 += 8) {
            F8 r[8], t[8], u[8];
            for (int k = 0; k < 8; k++)
                if (o0 + k < o) memcpy(&r[k], dy + (o0 + k) * p + q, sizeof r[k]);
                else r[k] = (F8){0};
            for (int k = 0; k < 8; k += 2) { /* pairs of rows interleaved, within 4-lane halves */
                t[k] = SHUF8(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
                t[k + 1] = SHUF8(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
            }
            for (int k = 0; k < 8; k += 4) /* then pairs of those */
                for (int h = 0; h < 2; h++) {
                    u[k + 2 * h] = SHUF8(t[k + h], t[k + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                    u[k + 2 * h + 1] = SHUF8(t[k + h], t[k + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
                }
            for (int k = 0; k < 4; k++) { /* then the halves: rows k and k + 4 of the transpose */
                F8 lo = SHUF8(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
                F8 hi = SHUF8(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
                memcpy(dyt + (q + k) * m + o0, &lo, sizeof lo);
                memcpy(dyt + (q + k + 4) * m + o0, &hi, sizeof hi);
            }
        }
    for (; q < p; q++)
        for (int64_t oo = 0; oo < m; oo++) dyt[q * m + oo] = oo < o ? dy[oo * p + q] : 0.0f;
}
RT_ISA_DISPATCH(transpose_pad, (const float *dy, int64_t o, int64_t p, int64_t m, float *dyt), (dy, o, p, m, dyt))

/* Where cols_are_x: slot s sums the samples of chunks s, s + S, ... in order into its
 * buffer dw^T [CKK, M] (LIBXSMM computes dw^T += x_s dy_s^T: dy_s, the smaller, transposed
 * into scratch with M - O columns of zeros, M = rt_xsmm_dw_m(O)). */
static void xsmm_dwt_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t m = rt_xsmm_dw_m(j->o), wsize = m * j->ckk;
    float *dyt = rt_thread_scratch(m * j->ohw);
    for (int64_t slot = begin; slot < end; slot++) {
        float *dst = rt_shared_scratch(j->slots * wsize) + slot * wsize;
        for (int64_t ch = slot; ch < j->chunks; ch += j->slots) {
            int64_t s0, cnt = chunk_count(j, ch, &s0);
            for (int64_t s = s0; s < s0 + cnt; s++) {
                transpose_pad(j->dy + s * j->o * j->ohw, j->o, j->ohw, m, dyt);
                rt_xsmm_sample(&j->xk, ch != slot || s != s0, dyt, j->x + s * j->chw, dst);
            }
        }
    }
}

/* dw = the sum of the slots' dw^T in slot order, transposed back, by blocks of 16 rows of
 * dw^T (begin, end: blocks): the block's sums in the thread's scratch [16, M] (contiguous
 * adds), then written into dw as runs of 16. */
enum { DW_SUM_ROWS = 16 };

static void xsmm_dwt_sum_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t m = rt_xsmm_dw_m(j->o), wsize = m * j->ckk;
    const float *part = rt_shared_scratch(j->slots * wsize);
    float *sum = rt_thread_scratch(DW_SUM_ROWS * m);
    for (int64_t b = begin; b < end; b++) {
        int64_t k0 = b * DW_SUM_ROWS, rows = j->ckk - k0 < DW_SUM_ROWS ? j->ckk - k0 : DW_SUM_ROWS;
        int64_t n = rows * m;
        memcpy(sum, part + k0 * m, sizeof(float) * (size_t)n);
        for (int64_t slot = 1; slot < j->slots; slot++) {
            const float *src = part + slot * wsize + k0 * m;
            for (int64_t i = 0; i < n; i++) sum[i] += src[i];
        }
        for (int32_t oo = 0; oo < j->o; oo++)
            for (int64_t k = 0; k < rows; k++) j->y[oo * j->ckk + k0 + k] = sum[k * m + oo];
    }
}

/* wt [CKK, O] = w^T, by rows of wt. */
static void transpose_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    for (int64_t k = begin; k < end; k++)
        for (int32_t oo = 0; oo < j->o; oo++) j->wk[k * j->o + oo] = j->w[oo * j->ckk + k];
}

/* dw over the whole batch by blocks of input channels, where the weights' rows are at
 * least as long as the batch's positions (CKK >= n*OHW: VGG-16's and ResNet-18's 512
 * channels at 4x4 and 2x2). T [O, n*OHW] is dy gathered once into the shared scratch, by
 * samples on the pool; then each block of channels [c0, c1) builds its rows of the
 * batch's columns COL_b [(c1-c0)*KK, n*OHW] in its thread's scratch and computes its
 * columns of dw, dw[:, c0*KK..c1*KK) = T COL_b^T, one product with k the batch's
 * positions. Every element of dw is written once: the slots' way zeroes, fills and adds a
 * buffer of O*CKK per slot (eight of 9.4 MB for a 512 x 4608 weight), this one repacks T
 * once per block, so it wins where CKK, the slot buffers' width, is the larger
 * (`conv_bench`: 512 channels at 4x4 and 2x2 gain 1.2x and 1.8x, 256 -> 512 with stride 2
 * at 4x4 (CKK 2304, n*OHW 2048) ties, 1x1 layers with CKK < n*OHW lose 10-35%). The
 * blocks are fixed by the shapes: a power of two of them, at most DWB_MAX_BLOCKS (8 gave
 * 5-10% more than 16 on 2 threads: fewer repacks of T), at least DWB_MIN_ROWS rows each. */
enum { DWB_MAX_BLOCKS = 8, DWB_MIN_ROWS = 128, DWB_MAX_POSITIONS = 4096 };

static int64_t dw_blocks(const ConvJob *j) {
    int64_t pos = j->n * j->ohw;
    if (pos > j->ckk || pos > DWB_MAX_POSITIONS || j->ckk < 2 * DWB_MIN_ROWS) return 0;
    int64_t b = j->ckk / DWB_MIN_ROWS;
    if (b > DWB_MAX_BLOCKS) b = DWB_MAX_BLOCKS;
    if (b > j->c) b = j->c;
    while (b & (b - 1)) b &= b - 1;
    return b;
}

/* Channels [*c0, *c1) of block b of nb. */
static void dw_block_channels(const ConvJob *j, int64_t b, int64_t nb, int64_t *c0, int64_t *c1) {
    *c0 = b * j->c / nb;
    *c1 = (b + 1) * j->c / nb;
}

static void dw_t_fill(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t ld = j->n * j->ohw;
    float *t = rt_shared_scratch(j->o * ld);
    for (int64_t s = begin; s < end; s++) sample_dy(j, s, t + s * j->ohw, ld);
}

static void dw_block_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t nb = j->blocks, kk = (int64_t)j->kh * j->kw, ld = j->n * j->ohw, hw = (int64_t)j->h * j->wd;
    const float *t = rt_shared_scratch(j->o * ld);
    float *col = rt_thread_scratch((j->c + nb - 1) / nb * kk * ld);
    for (int64_t b = begin; b < end; b++) {
        int64_t c0, c1;
        dw_block_channels(j, b, nb, &c0, &c1);
        im2col_samples(j->x + c0 * hw, j->n, j->chw, (int32_t)(c1 - c0), j->h, j->wd, j->kh, j->kw, j->stride,
                       j->pad, col, ld);
        rt_sgemm_serial(0, 1, j->o, (int32_t)((c1 - c0) * kk), (int32_t)ld, 1.0f, t, (int32_t)ld, col, (int32_t)ld,
                        0.0f, j->y + c0 * kk, (int32_t)j->ckk);
    }
}

/* dw[i] += slot buffers 1..S-1, in order, by pieces of dw that stay in the L1 cache. */
static void conv_dw_sum_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    for (int64_t i0 = begin; i0 < end; i0 += 2048) {
        int32_t n = (int32_t)(end - i0 < 2048 ? end - i0 : 2048);
        for (int64_t slot = 1; slot < j->slots; slot++) row_add(j->y + i0, dw_slot(j, slot) + i0, n);
    }
}

/* ---- the shapes oneDNN computes (conv_dnnl.c): the same chunks and slots ---- */

static int64_t wino_span(const ConvJob *j, RtConvOp op);
static bool wino_batch(const ConvJob *j, RtConvOp op);
static void wino_needs(const ConvJob *j, RtConvOp op, int64_t *per_thread, int64_t *shared);
#define WINO_MAX_THREAD ((int64_t)16 << 20) /* floats of a thread's Winograd scratch: 64 MiB */
#define WINO_BATCH_SHARED ((int64_t)32 << 20) /* floats of the whole batch's transforms: 128 MiB */

/* Who computes op: Winograd's F(m x m, 3 x 3) where winograd.c's rule names the shape
 * (j->wino: 1.3-1.7x oneDNN's speed on the shapes both serve), else oneDNN where its rule
 * does (j->dk), else LIBXSMM where its rule does (j->xk), else im2col + GEMM (gemm.c), dw
 * by blocks of channels where dw_blocks takes it (j->blocks), else by slots. */
static void conv_paths(ConvJob *j, RtConvOp op) {
    j->dk = NULL, j->xk = (RtXsmmConv){0}, j->wino = false, j->blocks = 0;
    if (j->n <= 0) return;
    j->wino = rt_wino_serves(op, j->c, j->o, j->h, j->wd, j->kh, j->kw, j->stride, j->pad,
                             wino_batch(j, op) ? j->n : wino_span(j, op) * j->g);
    /* (not where a thread's transformed tiles would pass WINO_MAX_THREAD: thousands of
     * channels, whose im2col columns are a quarter of that) */
    int64_t per_thread, shared;
    if (j->wino) wino_needs(j, op, &per_thread, &shared);
    if (j->wino && per_thread <= WINO_MAX_THREAD && (!wino_batch(j, op) || shared <= WINO_BATCH_SHARED)) return;
    j->wino = false;
    /* chunks of g samples, and of g - 1 where they do not divide the batch evenly */
    int32_t tail = (int32_t)(j->n % j->chunks ? j->n / j->chunks : 0);
    j->dk = rt_dnnl_conv(op, (int32_t)j->g, tail, j->c, j->h, j->wd, j->o, j->kh, j->kw, j->stride, j->pad);
    if (!j->dk) rt_xsmm_conv(op, j->c, j->h, j->wd, j->o, j->kh, j->kw, j->stride, j->pad, &j->xk);
    if (op == RT_CONV_DW && !j->dk && !j->xk.set) j->blocks = dw_blocks(j);
}

/* ---- Winograd's F(4 x 4, 3 x 3) and F(2 x 2, 3 x 3) (winograd.c) ---- */

/* The tiles' m for this op (winograd.c's rt_wino_m). */
static int wino_m(const ConvJob *j, RtConvOp op) {
    return rt_wino_m(op, j->c, j->o, j->h, j->wd);
}

/* The layers winograd.c's rt_wino_batch names (one tile a sample: 4 x 4 planes by F(4 x
 * 4), 2 x 2 by F(2 x 2); dw's F(4 x 4) of 8 x 8 and smaller): the whole batch at once, in
 * three parallel steps over fixed items: every channel's planes of the batch side by side
 * into U (dw: and dy's into DY), the (m + 2)^2 products over all the batch's tiles
 * (dw: no slots, one dV), every output channel's planes back. By pieces of chunks, a piece
 * of 4 x 4 planes had 16 tiles (WINO_MIN_PIECES), and OpenBLAS packed each point's weights
 * again for every piece (15% of VGG-16's step, AVX2); the whole batch packs them once. The shared
 * scratch: V (or dV), then U, then M (or DY), each row of the batch's tiles and 8 more
 * (wino_batch_layout). */
static bool wino_batch(const ConvJob *j, RtConvOp op) {
    return rt_wino_batch(op, j->c, j->o, j->h, j->wd);
}
static int64_t wino_batch_ld(const ConvJob *j, RtConvOp op) {
    return j->n * rt_wino_tiles(j->h, j->wd, wino_m(j, op)) + 8;
}

/* The points of the op's transformed tiles: (m + 2)^2. */
static int64_t wino_points(const ConvJob *j, RtConvOp op) {
    return (wino_m(j, op) + 2) * (wino_m(j, op) + 2);
}

/* The whole batch's shared scratch, in floats: V (dV) at 0, U (x's, or dy's for dx) at
 * u, M (or dw's DY) at mo, `floats` in all; a point's block of each `plane`, `us` and
 * `ms` apart, rows of ld. */
typedef struct WinoBatchLayout {
    int64_t ld, n2, plane, us, ms, u, mo, floats;
} WinoBatchLayout;
static WinoBatchLayout wino_batch_layout(const ConvJob *j, RtConvOp op) {
    bool dx = op == RT_CONV_DX;
    WinoBatchLayout b;
    b.ld = wino_batch_ld(j, op), b.n2 = wino_points(j, op), b.plane = rt_wino_plane(j->c, j->o);
    b.us = rt_wino_pstride(dx ? j->o : j->c, b.ld), b.ms = rt_wino_pstride(dx ? j->c : j->o, b.ld);
    b.u = b.n2 * b.plane, b.mo = b.u + b.n2 * b.us, b.floats = b.mo + b.n2 * b.ms;
    return b;
}

/* F(4 x 4, 3 x 3)'s forward, dx and dw by pieces of consecutive chunks of about
 * WINO4_TILES tiles (a chunk of one sample of 32 x 32 has 64; 64 / 128 / 256 / 512 tiles:
 * 505 / 505 / 519 / 440 GFLOP/s forward, VGG-16's 64 channels, AVX2, 2 threads; dw at 32 x
 * 32, 64 channels, cold, 256 / 512: 19.8-21.6 / 24.4-27.2 ms with AVX2 code, 16.5-16.7 /
 * 20.9-26.9 with AVX-512; 128 channels at 16 x 16 within 3%), F(2 x 2)'s dw by pieces of
 * WINO_DW_TILES (the direct GFLOP/s of pieces of a chunk / 256 / 512 / 1024 tiles: VGG-16's
 * 128 channels at 16 x 16 230 / 262 / 306 / 270, 256 at 8 x 8 180 / 282 / 289 / 300, 64 at
 * 32 x 32 315 / 323 / 316 / 237); at least WINO_MIN_PIECES pieces where there are as many
 * chunks, so that dw's slots keep 8 threads busy (VGG-16's 256 channels at 8 x 8: 8 pieces
 * of 256 tiles). */
enum { WINO4_TILES = 256, WINO4_SBS_TILES = 128, WINO_DW_TILES = 512, WINO_MIN_PIECES = 8 };
/* The forward and dx on planes side by side take pieces of WINO4_SBS_TILES where a
 * point's product stays with the library it has at WINO4_TILES (gemm.c's rule by size:
 * with AVX-512 code 64 x 64 channels over 128 tiles would leave oneDNN's sgemm for
 * OpenBLAS, and lost 30-45%). Cold, alternated, 2 threads, 128 / 256 tiles: 128 channels
 * at 16 x 16 forward 14.3-15.8 / 16.5-18.8 ms, dx 15.4-16.2 / 16.3-18.9 with AVX2 code,
 * 9.1-9.8 / 10.7-12.1 and 9.0-10.1 / 11.0-12.2 with AVX-512; 64 -> 128 at 16 x 16 likewise;
 * 256 at 8 x 8 within 2%, plane by plane (64 at 32 x 32) no better; dw 0-10% in single
 * layers but not in ResNet-18's dw phase (+14 ms in 6 alternated pairs): dw keeps 256. */
static int64_t wino4_tiles(const ConvJob *j, RtConvOp op) {
    if (op == RT_CONV_DW || !rt_wino_side_by_side(j->wd, 4)) return WINO4_TILES;
    int32_t cin = op == RT_CONV_DX ? j->o : j->c, cout = op == RT_CONV_DX ? j->c : j->o;
    bool same = rt_gemm_dnnl_sized(cout, WINO4_TILES, cin) == rt_gemm_dnnl_sized(cout, WINO4_SBS_TILES, cin);
    return same ? WINO4_SBS_TILES : WINO4_TILES;
}
static int64_t wino_span(const ConvJob *j, RtConvOp op) {
    if (op != RT_CONV_DW && wino_m(j, op) == 2) return 1;
    int64_t per = rt_wino_tiles(j->h, j->wd, wino_m(j, op));
    int64_t want = op == RT_CONV_DW && wino_m(j, op) == 2 ? WINO_DW_TILES : wino4_tiles(j, op), tiles = j->g * per;
    int64_t m = (want + tiles - 1) / tiles;
    if (m > j->chunks / WINO_MIN_PIECES) m = j->chunks / WINO_MIN_PIECES;
    return m > 1 ? m : 1;
}
static int64_t wino_pieces(const ConvJob *j, RtConvOp op) {
    int64_t m = wino_span(j, op);
    return (j->chunks + m - 1) / m;
}

/* dw's slots: each a dV of (m + 2)^2 O C floats, all of them within DW_MAX_SHARED (one for
 * the whole batch at once). */
static int64_t wino_slots(const ConvJob *j) {
    if (wino_batch(j, RT_CONV_DW)) return 1;
    int64_t most = DW_MAX_SHARED / rt_wino_weights_floats(j->c, j->o, wino_m(j, RT_CONV_DW));
    int64_t p = wino_pieces(j, RT_CONV_DW);
    int64_t s = p < j->slots ? p : j->slots;
    return s < most ? s : most > 1 ? most : 1;
}

/* Slot s sums pieces s, s + S, ... into its dV (the shared scratch's s-th). */
static void wino_dw_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int tm = wino_m(j, RT_CONV_DW);
    int64_t slots = wino_slots(j), per = rt_wino_weights_floats(j->c, j->o, tm), m = wino_span(j, RT_CONV_DW);
    int64_t pieces = wino_pieces(j, RT_CONV_DW);
    float *scratch = rt_thread_scratch(rt_wino_thread_floats(j->c, j->o, j->h, j->wd, m * j->g, tm));
    for (int64_t slot = begin; slot < end; slot++)
        for (int64_t pc = slot; pc < pieces; pc += slots) {
            int64_t s0, cnt = piece_samples(j, m, pc, &s0);
            rt_wino_dw_chunk(j->x + s0 * j->chw, j->dy + s0 * j->o * j->ohw, j->c, j->o, j->h, j->wd, cnt,
                             m * j->g, tm, pc != slot, j->wk + slot * per, scratch);
        }
}

/* A call's scratch: per thread, a piece's (U, M or DY, the transforms'); shared, V, or dw's
 * slots of dV. */
static void wino_needs(const ConvJob *j, RtConvOp op, int64_t *per_thread, int64_t *shared) {
    int m = wino_m(j, op);
    if (wino_batch(j, op)) {
        *per_thread = rt_wino_rows_floats(j->h, j->wd, m, j->n);
        *shared = wino_batch_layout(j, op).floats;
        return;
    }
    *per_thread = rt_wino_thread_floats(j->c, j->o, j->h, j->wd, wino_span(j, op) * j->g, m);
    *shared = (op == RT_CONV_DW ? wino_slots(j) : 1) * rt_wino_weights_floats(j->c, j->o, m);
}

static void wino_dw_out_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    rt_wino_dw_out(j->wk, wino_slots(j), j->o, j->c, (int32_t)begin, (int32_t)end, wino_m(j, RT_CONV_DW), j->y);
}

static void wino_weights_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    rt_wino_weights(j->w, j->o, j->c, j->op == RT_CONV_DX, (int32_t)begin, (int32_t)end, wino_m(j, j->op), j->wk);
}

static void wino_chunk_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    bool dx = j->op == RT_CONV_DX;
    int32_t cin = dx ? j->o : j->c, cout = dx ? j->c : j->o;
    int64_t m = wino_span(j, j->op);
    int tm = wino_m(j, j->op);
    float *scratch = rt_thread_scratch(rt_wino_thread_floats(cin, cout, j->h, j->wd, m * j->g, tm));
    for (int64_t pc = begin; pc < end; pc++) {
        int64_t s0, cnt = piece_samples(j, m, pc, &s0);
        const float *in = dx ? j->dy + s0 * j->o * j->ohw : j->x + s0 * j->chw;
        float *out = dx ? j->y + s0 * j->chw : j->y + s0 * j->o * j->ohw;
        rt_wino_chunk(in, cin, cout, j->h, j->wd, cnt, m * j->g, tm, j->wk, out, scratch);
    }
}

/* Item i of wino_batch_in_range: the first of the batch's planes it transforms (input
 * channel i, or for dw past the c input channels dy's channel i - c), and *stride, the
 * floats from a sample's plane to the next's. */
static const float *wino_batch_planes(const ConvJob *j, int64_t i, int64_t *stride) {
    int64_t hw = (int64_t)j->h * j->wd;
    if (j->op == RT_CONV_DW && i >= j->c) {
        *stride = j->o * hw;
        return j->dy + (i - j->c) * hw;
    }
    bool dx = j->op == RT_CONV_DX;
    *stride = (dx ? j->o : j->c) * hw;
    return (dx ? j->dy : j->x) + i * hw;
}

static void wino_batch_in_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    bool dw = j->op == RT_CONV_DW;
    int m = wino_m(j, j->op);
    WinoBatchLayout b = wino_batch_layout(j, j->op);
    int64_t hw = (int64_t)j->h * j->wd, stride, next_stride;
    float *scratch = rt_thread_scratch(rt_wino_rows_floats(j->h, j->wd, m, j->n));
    for (int64_t i = begin; i < end; i++) {
        const float *planes = wino_batch_planes(j, i, &stride);
        if (i + 1 < end) { /* the next item's planes, while this one's are transformed */
            const float *next = wino_batch_planes(j, i + 1, &next_stride);
            rt_prefetch_planes(next, next_stride, j->n, hw);
        }
        if (dw && i >= j->c) { /* dy's channel k into DY */
            int64_t k = i - j->c;
            rt_wino_rows_dy(planes, stride, j->n, j->h, j->wd, m, j->wk + b.mo + k * b.ld, b.ms, i == begin || i == j->c,
                            scratch);
        } else {
            rt_wino_rows_in(planes, stride, j->n, j->h, j->wd, m, j->wk + b.u + i * b.ld, b.us, i == begin, scratch);
        }
    }
}

static void wino_batch_gemm_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    bool dx = j->op == RT_CONV_DX;
    WinoBatchLayout b = wino_batch_layout(j, j->op);
    int32_t cin = dx ? j->o : j->c, cout = dx ? j->c : j->o, ld = (int32_t)b.ld, t = ld - 8;
    float *v = j->wk, *u = v + b.u, *mo = v + b.mo;
    for (int64_t xi = begin; xi < end; xi++) {
        if (j->op == RT_CONV_DW)
            rt_sgemm_serial(0, 1, j->o, j->c, t, 1.0f, mo + xi * b.ms, ld, u + xi * b.us, ld, 0.0f, v + xi * b.plane,
                            j->c);
        else
            rt_sgemm_serial(0, 0, cout, t, cin, 1.0f, v + xi * b.plane, cin, u + xi * b.us, ld, 0.0f, mo + xi * b.ms,
                            ld);
    }
}

static void wino_batch_out_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int32_t cout = j->op == RT_CONV_DX ? j->c : j->o;
    WinoBatchLayout b = wino_batch_layout(j, j->op);
    int64_t hw = (int64_t)j->h * j->wd;
    for (int64_t k = begin; k < end; k++)
        rt_wino_rows_out(j->wk + b.mo + k * b.ld, b.ms, j->n, j->h, j->wd, wino_m(j, j->op), j->y + k * hw, cout * hw);
}

bool rt_conv_wino(RtConvOp op, int32_t n, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh, int32_t kw,
                  int32_t stride, int32_t pad) {
    ConvJob j = conv_job(n, c, h, w, o, kh, kw, stride, pad);
    conv_paths(&j, op);
    return j.wino;
}

static void dnnl_chunk_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    float *scratch = rt_thread_scratch(rt_dnnl_thread_floats(j->dk));
    for (int64_t ch = begin; ch < end; ch++) {
        int64_t s0, cnt = chunk_count(j, ch, &s0);
        if (j->op == RT_CONV_FWD)
            rt_dnnl_chunk(j->dk, cnt, j->x + s0 * j->chw, j->wk, j->y + s0 * j->o * j->ohw, scratch);
        else
            rt_dnnl_chunk(j->dk, cnt, j->dy + s0 * j->o * j->ohw, j->wk, j->y + s0 * j->chw, scratch);
    }
}

/* Slot s sums chunks s, s + S, ... into its buffer wk + s * (weights' floats). */
static void dnnl_dw_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t wf = rt_dnnl_weights_floats(j->dk), tf = rt_dnnl_thread_floats(j->dk);
    float *scratch = rt_thread_scratch(tf + wf), *part = scratch + tf;
    for (int64_t slot = begin; slot < end; slot++) {
        float *dst = j->wk + slot * wf;
        for (int64_t ch = slot; ch < j->chunks; ch += j->slots) {
            int64_t s0, cnt = chunk_count(j, ch, &s0);
            rt_dnnl_chunk(j->dk, cnt, j->x + s0 * j->chw, j->dy + s0 * j->o * j->ohw, ch == slot ? dst : part, scratch);
            if (ch != slot)
                for (int64_t i = 0; i < wf; i++) dst[i] += part[i];
        }
    }
}

/* Slot 0's buffer += slot buffers 1..S-1, in order. */
static void dnnl_dw_sum_range(void *p, int64_t begin, int64_t end) {
    const ConvJob *j = p;
    int64_t wf = rt_dnnl_weights_floats(j->dk);
    for (int64_t slot = 1; slot < j->slots; slot++)
        for (int64_t i = begin; i < end; i++) j->wk[i] += j->wk[slot * wf + i];
}

/* Scratch a call of op needs on the paths conv_paths chose: per thread (ours: COL and T of
 * a chunk; LIBXSMM's: a sample's columns, and dy^T for dw) and shared (ours: the dw slot
 * buffers but slot 0's; LIBXSMM's: w^T for dx, every dw slot's buffer; oneDNN's: its
 * weights, or all its dw slot buffers). */
static void conv_needs(const ConvJob *j, RtConvOp op, int64_t *per_thread, int64_t *shared) {
    const RtDnnlConv *dk = j->dk;
    if (j->wino) {
        wino_needs(j, op, per_thread, shared);
    } else if (j->xk.set) {
        int64_t m = rt_xsmm_dw_m(j->o);
        *per_thread = j->ckk * j->ohw;
        *shared = op == RT_CONV_FWD ? 0 : op == RT_CONV_DX ? j->o * j->ckk : (j->slots - 1) * j->o * j->ckk;
        if (op == RT_CONV_DW && cols_are_x(j)) {
            *per_thread = m * (j->ohw > DW_SUM_ROWS ? j->ohw : DW_SUM_ROWS);
            *shared = j->slots * m * j->ckk;
        } else if (op == RT_CONV_DW) {
            *per_thread = j->ckk * RT_XSMM_DW_POSITIONS;
        }
    } else if (!dk) {
        *per_thread = (j->ckk + j->o) * j->g * j->ohw;
        int64_t nb = j->blocks;
        if (nb) *per_thread = (j->c + nb - 1) / nb * j->kh * j->kw * j->n * j->ohw;
        *shared = op != RT_CONV_DW ? 0 : nb ? j->o * j->n * j->ohw : (j->slots - 1) * j->o * j->ckk;
    } else {
        int64_t wf = rt_dnnl_weights_floats(dk);
        *per_thread = rt_dnnl_thread_floats(dk) + (op == RT_CONV_DW ? wf : 0);
        *shared = op == RT_CONV_DW ? j->slots * wf : wf;
    }
}

/* Generated code reserves before training; a kernel called without that (tests, a last
 * smaller batch) gets it here, and only an allocation failure at this point is fatal. */
static void conv_ensure(const ConvJob *j) {
    int64_t per_thread, shared;
    conv_needs(j, j->op, &per_thread, &shared);
    if (!rt_parallel_reserve(per_thread, shared)) {
        fprintf(stderr, "nnq: error: out of memory for convolution scratch\n");
        abort();
    }
}

/* Every op's scratch for a geometry, and oneDNN's kernels made now, before training. */
void nnq_rt_conv_reserve(NnqRun *run, int32_t n, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh,
                         int32_t kw, int32_t stride, int32_t pad) {
    ConvJob j = conv_job(n, c, h, w, o, kh, kw, stride, pad);
    int64_t per_thread = 0, shared = 0;
    for (RtConvOp op = RT_CONV_FWD; op <= RT_CONV_DW; op++) {
        int64_t t, s;
        conv_paths(&j, op);
        conv_needs(&j, op, &t, &s);
        per_thread = t > per_thread ? t : per_thread;
        shared = s > shared ? s : shared;
    }
    if (!rt_parallel_reserve(per_thread, shared))
        nnq_rt_fail(run, "out of memory reserving %.1f MiB of convolution scratch per thread and %.1f MiB shared",
                    (double)per_thread * 4 / 1048576, (double)shared * 4 / 1048576);
}

/* conv2d (x, w -> y) and conv2d_dx (dy, w -> dx): chunk by chunk on the pool. */
static void conv_chunks(const float *in, const float *w, float *out, RtConvOp op, int32_t n, int32_t c, int32_t h,
                        int32_t wd, int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    ConvJob j = conv_job(n, c, h, wd, o, kh, kw, stride, pad);
    j.w = w, j.y = out, j.op = op;
    conv_paths(&j, op);
    if (op == RT_CONV_DX) j.dy = in;
    else j.x = in;
    conv_ensure(&j);
    if (j.wino) {
        int64_t shared, per_thread;
        wino_needs(&j, op, &per_thread, &shared);
        j.wk = rt_shared_scratch(shared);
        rt_parallel_for(op == RT_CONV_DX ? j.c : j.o, min_items(9 * (int64_t)(op == RT_CONV_DX ? j.o : j.c)),
                        wino_weights_range, &j);
        if (wino_batch(&j, op)) {
            rt_parallel_for(op == RT_CONV_DX ? j.o : j.c, 1, wino_batch_in_range, &j);
            rt_parallel_for(wino_points(&j, op), 1, wino_batch_gemm_range, &j);
            rt_parallel_for(op == RT_CONV_DX ? j.c : j.o, 1, wino_batch_out_range, &j);
        } else {
            rt_parallel_for(wino_pieces(&j, op), 1, wino_chunk_range, &j);
        }
        return;
    }
    if (j.xk.set) {
        if (op == RT_CONV_DX) {
            j.wk = rt_shared_scratch(j.o * j.ckk);
            rt_parallel_for(j.ckk, min_items(j.o), transpose_range, &j);
        }
        rt_parallel_for(j.chunks, 1, op == RT_CONV_DX ? xsmm_dx_range : xsmm_fwd_range, &j);
        return;
    }
    if (j.dk) {
        j.wk = rt_shared_scratch(rt_dnnl_weights_floats(j.dk));
        rt_dnnl_weights_in(j.dk, w, j.wk);
        rt_parallel_for(j.chunks, 1, dnnl_chunk_range, &j);
        return;
    }
    rt_parallel_for(j.chunks, 1, op == RT_CONV_DX ? conv_dx_range : conv_fwd_range, &j);
}

void nnq_rt_conv2d(const float *x, const float *w, float *y, int32_t n, int32_t c, int32_t h, int32_t wd,
                   int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    conv_chunks(x, w, y, RT_CONV_FWD, n, c, h, wd, o, kh, kw, stride, pad);
}

void nnq_rt_conv2d_dx(const float *dy, const float *w, float *dx, int32_t n, int32_t c, int32_t h, int32_t wd,
                      int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    conv_chunks(dy, w, dx, RT_CONV_DX, n, c, h, wd, o, kh, kw, stride, pad);
}

void nnq_rt_conv2d_dw(const float *dy, const float *x, float *dw, int32_t n, int32_t c, int32_t h, int32_t wd,
                      int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    ConvJob j = conv_job(n, c, h, wd, o, kh, kw, stride, pad);
    j.dy = dy, j.x = x, j.y = dw, j.op = RT_CONV_DW;
    if (n <= 0) {
        memset(dw, 0, sizeof(float) * (size_t)(j.o * j.ckk));
        return;
    }
    conv_paths(&j, RT_CONV_DW);
    conv_ensure(&j);
    if (j.wino) {
        int64_t shared, per_thread;
        wino_needs(&j, RT_CONV_DW, &per_thread, &shared);
        j.wk = rt_shared_scratch(shared);
        if (wino_batch(&j, RT_CONV_DW)) {
            rt_parallel_for(j.c + j.o, 1, wino_batch_in_range, &j);
            rt_parallel_for(wino_points(&j, RT_CONV_DW), 1, wino_batch_gemm_range, &j);
        } else {
            rt_parallel_for(wino_slots(&j), 1, wino_dw_range, &j);
        }
        rt_parallel_for(j.o, min_items(rt_wino_weights_floats(1, j.c, wino_m(&j, RT_CONV_DW)) * wino_slots(&j)),
                        wino_dw_out_range, &j);
        return;
    }
    if (j.xk.set && cols_are_x(&j)) {
        rt_parallel_for(j.slots, 1, xsmm_dwt_range, &j);
        int64_t blocks = (j.ckk + DW_SUM_ROWS - 1) / DW_SUM_ROWS;
        rt_parallel_for(blocks, min_items(DW_SUM_ROWS * rt_xsmm_dw_m(j.o) * j.slots), xsmm_dwt_sum_range, &j);
        return;
    }
    if (j.xk.set) {
        rt_parallel_for(j.slots, 1, xsmm_dw_range, &j);
        if (j.slots > 1)
            rt_parallel_for(j.o * j.ckk, 4096, conv_dw_sum_range, &j);
        return;
    }
    if (j.dk) {
        int64_t wf = rt_dnnl_weights_floats(j.dk);
        j.wk = rt_shared_scratch(j.slots * wf);
        rt_parallel_for(j.slots, 1, dnnl_dw_range, &j);
        if (j.slots > 1)
            rt_parallel_for(wf, 16384, dnnl_dw_sum_range, &j);
        rt_dnnl_weights_out(j.dk, j.wk, dw);
        return;
    }
    if (j.blocks) {
        rt_parallel_for(n, 1, dw_t_fill, &j);
        rt_parallel_for(j.blocks, 1, dw_block_range, &j);
        return;
    }
    rt_parallel_for(j.slots, 1, conv_dw_range, &j);
    if (j.slots > 1)
        rt_parallel_for(j.o * j.ckk, 4096, conv_dw_sum_range, &j);
}
