/* conv.c — the runtime's image kernels: im2col and its adjoint (convolutions become
 * OpenBLAS GEMMs over the column matrix), max and average pooling and their gradients.
 * NCHW, row-major; no allocation, no failure. The batch and pooling entry points split
 * their samples or planes over the thread pool (parallel.c); each sample or plane is
 * computed by one thread, so results do not depend on the thread count. */
#include <string.h>

#include "rt_internal.h"

static int32_t out_dim(int32_t in, int32_t k, int32_t stride, int32_t pad) {
    return (in + 2 * pad - k) / stride + 1;
}

/* Output columns xo whose input column xo*stride - pad + j lies inside [0, w): [*lo, *hi). */
static void valid_cols(int32_t ow, int32_t w, int32_t stride, int32_t pad, int32_t j, int32_t *lo,
                       int32_t *hi) {
    int32_t a = pad - j; /* xo*stride >= a */
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int32_t b = w + pad - j; /* xo*stride < b */
    *hi = b <= 0 ? 0 : (b - 1) / stride + 1;
    if (*hi > ow) *hi = ow;
    if (*lo > *hi) *lo = *hi;
}

void nnq_rt_im2col(const float *x, int32_t c, int32_t h, int32_t w, int32_t kh, int32_t kw,
                   int32_t stride, int32_t pad, float *col, int64_t ld) {
    int32_t oh = out_dim(h, kh, stride, pad), ow = out_dim(w, kw, stride, pad);
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++) {
                float *row = col + ((int64_t)(ch * kh + i) * kw + j) * ld;
                int32_t lo, hi;
                valid_cols(ow, w, stride, pad, j, &lo, &hi);
                for (int32_t y = 0; y < oh; y++) {
                    int32_t r = y * stride - pad + i;
                    float *dst = row + (int64_t)y * ow;
                    if (r < 0 || r >= h) {
                        memset(dst, 0, sizeof(float) * ow);
                        continue;
                    }
                    /* the padding at both ends, and the image part as one strided copy */
                    const float *src = x + ((int64_t)ch * h + r) * w + (int64_t)lo * stride - pad + j;
                    for (int32_t xo = 0; xo < lo; xo++) dst[xo] = 0.0f;
                    if (stride == 1)
                        memcpy(dst + lo, src, sizeof(float) * (size_t)(hi - lo));
                    else
                        for (int32_t xo = lo; xo < hi; xo++) dst[xo] = src[(int64_t)(xo - lo) * stride];
                    for (int32_t xo = hi; xo < ow; xo++) dst[xo] = 0.0f;
                }
            }
}

void nnq_rt_col2im(const float *col, int64_t ld, int32_t c, int32_t h, int32_t w, int32_t kh,
                   int32_t kw, int32_t stride, int32_t pad, float *x) {
    int32_t oh = out_dim(h, kh, stride, pad), ow = out_dim(w, kw, stride, pad);
    memset(x, 0, sizeof(float) * (size_t)c * h * w);
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++) {
                const float *row = col + ((int64_t)(ch * kh + i) * kw + j) * ld;
                int32_t lo, hi;
                valid_cols(ow, w, stride, pad, j, &lo, &hi);
                for (int32_t y = 0; y < oh; y++) {
                    int32_t r = y * stride - pad + i;
                    if (r < 0 || r >= h) continue;
                    float *dst = x + ((int64_t)ch * h + r) * w + (int64_t)lo * stride - pad + j;
                    const float *src = row + (int64_t)y * ow;
                    if (stride == 1)
                        for (int32_t xo = lo; xo < hi; xo++) dst[xo - lo] += src[xo];
                    else
                        for (int32_t xo = lo; xo < hi; xo++) dst[(int64_t)(xo - lo) * stride] += src[xo];
                }
            }
}

static void maxpool_planes(const float *x, int32_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y, int32_t *idx) {
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    for (int32_t p = 0; p < planes; p++) {
        const float *src = x + (int64_t)p * h * w;
        for (int32_t r = 0; r < oh; r++)
            for (int32_t q = 0; q < ow; q++) {
                int32_t best = (r * stride) * w + q * stride;
                float m = src[best];
                for (int32_t i = 0; i < k; i++)
                    for (int32_t j = 0; j < k; j++) {
                        int32_t at = (r * stride + i) * w + q * stride + j;
                        if (src[at] > m) m = src[at], best = at;
                    }
                int64_t o = ((int64_t)p * oh + r) * ow + q;
                y[o] = m;
                idx[o] = best;
            }
    }
}

static void maxpool_grad_planes(const float *dy, const int32_t *idx, int32_t planes, int32_t oh, int32_t ow,
                         int32_t h, int32_t w, float *dx) {
    memset(dx, 0, sizeof(float) * (size_t)planes * h * w);
    for (int32_t p = 0; p < planes; p++)
        for (int32_t o = 0; o < oh * ow; o++) {
            int64_t at = (int64_t)p * oh * ow + o;
            dx[(int64_t)p * h * w + idx[at]] += dy[at];
        }
}

static void avgpool_planes(const float *x, int32_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y) {
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float scale = 1.0f / (float)(k * k);
    for (int32_t p = 0; p < planes; p++) {
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

static void avgpool_grad_planes(const float *dy, int32_t planes, int32_t h, int32_t w, int32_t k,
                         int32_t stride, float *dx) {
    int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    float scale = 1.0f / (float)(k * k);
    memset(dx, 0, sizeof(float) * (size_t)planes * h * w);
    for (int32_t p = 0; p < planes; p++) {
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
} ImageJob;

/* Enough items per thread that waking a worker pays off. */
static int64_t min_items(int64_t item_elems) {
    return item_elems >= 65536 ? 1 : 65536 / (item_elems > 0 ? item_elems : 1);
}

static void im2col_range(void *p, int64_t begin, int64_t end) {
    const ImageJob *j = p;
    int64_t ohw = (int64_t)j->oh * j->ow, chw = (int64_t)j->c * j->h * j->w;
    for (int64_t s = begin; s < end; s++)
        nnq_rt_im2col(j->in + s * chw, j->c, j->h, j->w, j->kh, j->kw, j->stride, j->pad,
                      j->out + s * ohw, j->ld);
}

static void col2im_range(void *p, int64_t begin, int64_t end) {
    const ImageJob *j = p;
    int64_t ohw = (int64_t)j->oh * j->ow, chw = (int64_t)j->c * j->h * j->w;
    for (int64_t s = begin; s < end; s++)
        nnq_rt_col2im(j->in + s * ohw, j->ld, j->c, j->h, j->w, j->kh, j->kw, j->stride, j->pad,
                      j->out + s * chw);
}

/* n samples of a convolution's geometry, split over the threads, each run by `range`. */
static void conv_batch(const float *in, float *out, int32_t n, int32_t c, int32_t h, int32_t w,
                       int32_t kh, int32_t kw, int32_t stride, int32_t pad, RtRangeFn range) {
    ImageJob j = {.in = in, .out = out, .c = c, .h = h, .w = w, .kh = kh, .kw = kw,
                  .stride = stride, .pad = pad, .oh = out_dim(h, kh, stride, pad),
                  .ow = out_dim(w, kw, stride, pad)};
    j.ld = (int64_t)n * j.oh * j.ow;
    rt_parallel_for(n, min_items((int64_t)c * kh * kw * j.oh * j.ow), range, &j);
}

void nnq_rt_im2col_batch(const float *x, int32_t n, int32_t c, int32_t h, int32_t w, int32_t kh,
                         int32_t kw, int32_t stride, int32_t pad, float *col) {
    conv_batch(x, col, n, c, h, w, kh, kw, stride, pad, im2col_range);
}

void nnq_rt_col2im_batch(const float *col, int32_t n, int32_t c, int32_t h, int32_t w, int32_t kh,
                         int32_t kw, int32_t stride, int32_t pad, float *x) {
    conv_batch(col, x, n, c, h, w, kh, kw, stride, pad, col2im_range);
}

static void maxpool_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    maxpool_planes(j->in + b * in, (int32_t)(e - b), j->h, j->w, j->kh, j->stride, j->out + b * out,
                   j->idx_out + b * out);
}

static void maxpool_grad_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    maxpool_grad_planes(j->in + b * out, j->idx_in + b * out, (int32_t)(e - b), j->oh, j->ow, j->h,
                        j->w, j->out + b * in);
}

static void avgpool_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    avgpool_planes(j->in + b * in, (int32_t)(e - b), j->h, j->w, j->kh, j->stride, j->out + b * out);
}

static void avgpool_grad_range(void *p, int64_t b, int64_t e) {
    const ImageJob *j = p;
    int64_t in = (int64_t)j->h * j->w, out = (int64_t)j->oh * j->ow;
    avgpool_grad_planes(j->in + b * out, (int32_t)(e - b), j->h, j->w, j->kh, j->stride,
                        j->out + b * in);
}

void nnq_rt_maxpool(const float *x, int32_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y, int32_t *idx) {
    ImageJob j = {.in = x, .out = y, .idx_out = idx, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1};
    rt_parallel_for(planes, min_items((int64_t)h * w), maxpool_range, &j);
}

void nnq_rt_maxpool_grad(const float *dy, const int32_t *idx, int32_t planes, int32_t oh, int32_t ow,
                         int32_t h, int32_t w, float *dx) {
    ImageJob j = {.in = dy, .out = dx, .idx_in = idx, .h = h, .w = w, .oh = oh, .ow = ow};
    rt_parallel_for(planes, min_items((int64_t)h * w), maxpool_grad_range, &j);
}

void nnq_rt_avgpool(const float *x, int32_t planes, int32_t h, int32_t w, int32_t k, int32_t stride,
                    float *y) {
    ImageJob j = {.in = x, .out = y, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1};
    rt_parallel_for(planes, min_items((int64_t)h * w), avgpool_range, &j);
}

void nnq_rt_avgpool_grad(const float *dy, int32_t planes, int32_t h, int32_t w, int32_t k,
                         int32_t stride, float *dx) {
    ImageJob j = {.in = dy, .out = dx, .h = h, .w = w, .kh = k, .stride = stride,
                  .oh = (h - k) / stride + 1, .ow = (w - k) / stride + 1};
    rt_parallel_for(planes, min_items((int64_t)h * w), avgpool_grad_range, &j);
}
