/* dwconv.c — depthwise convolutions (conv2d with groups = channels: MobileNet's 3x3
 * layers) and their two gradients, as direct loops: a filter is k*k numbers, too few for
 * a GEMM to pay. NCHW, row-major, no allocation, no failure.
 *
 * x [n, c, h, w], w [c, 1, kh, kw], y [n, c, oh, ow], oh = (h + 2 pad - kh) / stride + 1.
 * y and dx run in parallel over the n*c planes, dw over the channels (each channel's k*k
 * sums taken over the samples and positions in order): every item is computed whole by
 * one thread, so results do not depend on the thread count. */
#include <string.h>

#include "rt_internal.h"

typedef struct DwJob {
    const float *a, *b; /* y: x, w; dx: dy, w; dw: dy, x */
    float *out;
    int32_t c, h, w, kh, kw, stride, pad, oh, ow;
    int32_t n;
} DwJob;

static DwJob dw_job(const float *a, const float *b, float *out, int32_t n, int32_t c, int32_t h, int32_t w,
                    int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    DwJob j = {a, b, out, c, h, w, kh, kw, stride, pad, (h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1, n};
    return j;
}

/* Output columns whose input column xo*stride - pad + jj lies in [0, w): [*lo, *hi). */
static void dw_cols(const DwJob *j, int32_t jj, int32_t *lo, int32_t *hi) {
    int32_t a = j->pad - jj, b = j->w + j->pad - jj;
    *lo = a <= 0 ? 0 : (a + j->stride - 1) / j->stride;
    *hi = b <= 0 ? 0 : (b - 1) / j->stride + 1;
    if (*hi > j->ow) *hi = j->ow;
    if (*lo > *hi) *lo = *hi;
}

static void dw_forward(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    for (int64_t p = begin; p < end; p++) { /* plane p = sample * c + channel */
        const float *x = j->a + p * j->h * j->w, *f = j->b + (p % j->c) * j->kh * j->kw;
        float *y = j->out + p * j->oh * j->ow;
        memset(y, 0, sizeof(float) * (size_t)(j->oh * j->ow));
        for (int32_t i = 0; i < j->kh; i++)
            for (int32_t jj = 0; jj < j->kw; jj++) {
                float wv = f[i * j->kw + jj];
                int32_t lo, hi;
                dw_cols(j, jj, &lo, &hi);
                for (int32_t yo = 0; yo < j->oh; yo++) {
                    int32_t r = yo * j->stride - j->pad + i;
                    if (r < 0 || r >= j->h) continue;
                    int64_t base = (int64_t)r * j->w - j->pad + jj; /* + xo * stride: in the row for xo in [lo, hi) */
                    float *dst = y + (int64_t)yo * j->ow;
                    for (int32_t xo = lo; xo < hi; xo++) dst[xo] += wv * x[base + (int64_t)xo * j->stride];
                }
            }
    }
}

static void dw_input_grad(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    for (int64_t p = begin; p < end; p++) {
        const float *dy = j->a + p * j->oh * j->ow, *f = j->b + (p % j->c) * j->kh * j->kw;
        float *dx = j->out + p * j->h * j->w;
        memset(dx, 0, sizeof(float) * (size_t)(j->h * j->w));
        for (int32_t i = 0; i < j->kh; i++)
            for (int32_t jj = 0; jj < j->kw; jj++) {
                float wv = f[i * j->kw + jj];
                int32_t lo, hi;
                dw_cols(j, jj, &lo, &hi);
                for (int32_t yo = 0; yo < j->oh; yo++) {
                    int32_t r = yo * j->stride - j->pad + i;
                    if (r < 0 || r >= j->h) continue;
                    int64_t base = (int64_t)r * j->w - j->pad + jj;
                    const float *src = dy + (int64_t)yo * j->ow;
                    for (int32_t xo = lo; xo < hi; xo++) dx[base + (int64_t)xo * j->stride] += wv * src[xo];
                }
            }
    }
}

static void dw_weight_grad(void *ctx, int64_t begin, int64_t end) {
    const DwJob *j = ctx;
    for (int64_t ch = begin; ch < end; ch++) {
        float *g = j->out + ch * j->kh * j->kw;
        for (int32_t i = 0; i < j->kh; i++)
            for (int32_t jj = 0; jj < j->kw; jj++) {
                int32_t lo, hi;
                dw_cols(j, jj, &lo, &hi);
                float sum = 0;
                for (int32_t s = 0; s < j->n; s++) {
                    const float *dy = j->a + ((int64_t)s * j->c + ch) * j->oh * j->ow;
                    const float *x = j->b + ((int64_t)s * j->c + ch) * j->h * j->w;
                    for (int32_t yo = 0; yo < j->oh; yo++) {
                        int32_t r = yo * j->stride - j->pad + i;
                        if (r < 0 || r >= j->h) continue;
                        int64_t base = (int64_t)r * j->w - j->pad + jj;
                        const float *d = dy + (int64_t)yo * j->ow;
                        for (int32_t xo = lo; xo < hi; xo++) sum += d[xo] * x[base + (int64_t)xo * j->stride];
                    }
                }
                g[i * j->kw + jj] = sum;
            }
    }
}

/* Planes per part: about 64k multiply-adds each. */
static int64_t dw_min_planes(const DwJob *j) {
    int64_t work = (int64_t)j->oh * j->ow * j->kh * j->kw;
    return work >= 65536 ? 1 : 65536 / (work > 0 ? work : 1);
}

void nnq_rt_dwconv2d(const float *x, const float *w, float *y, int32_t n, int32_t c, int32_t h, int32_t wd, int32_t o,
                     int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    (void)o;
    DwJob j = dw_job(x, w, y, n, c, h, wd, kh, kw, stride, pad);
    rt_parallel_for((int64_t)n * c, dw_min_planes(&j), dw_forward, &j);
}

void nnq_rt_dwconv2d_dx(const float *dy, const float *w, float *dx, int32_t n, int32_t c, int32_t h, int32_t wd,
                        int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    (void)o;
    DwJob j = dw_job(dy, w, dx, n, c, h, wd, kh, kw, stride, pad);
    rt_parallel_for((int64_t)n * c, dw_min_planes(&j), dw_input_grad, &j);
}

void nnq_rt_dwconv2d_dw(const float *dy, const float *x, float *dw, int32_t n, int32_t c, int32_t h, int32_t wd,
                        int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad) {
    (void)o;
    DwJob j = dw_job(dy, x, dw, n, c, h, wd, kh, kw, stride, pad);
    rt_parallel_for(c, 1, dw_weight_grad, &j);
}
