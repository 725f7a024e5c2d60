/* conv_xsmm.c — the products LIBXSMM (libxsmm-dev: small matrix multiplications, their
 * code generated at run time for the CPU it runs on) computes for conv.c: one product per
 * sample, on the pool thread that owns the sample's chunk, with no packing of either
 * operand (OpenBLAS copies both into its panel layouts on every call, which costs as much
 * as the product itself where the matrices are as small as one sample's).
 *
 * A kernel computes C = A B (+ C for dw after a slot's first sample) in LIBXSMM's
 * column-major terms, on conv.c's row-major arrays read transposed, so every operand is
 * an array conv.c already has or makes: with P = OH*OW and K = C*KH*KW,
 *   forward  y_s [O, P]   = w [O, K]   col_s [K, P]: m = P, n = O, k = K, a = col_s, b = w
 *   dx       dcol_s [K, P] = w^T dy_s [O, P]:        m = P, n = K, k = O, a = dy_s, b = w^T [K, O]
 *   dw       dw^T [K, O] += col_s dy_s^T:           m = O, n = K, k = P, a = dy_s^T [P, O], b =
 * col_s (dw itself as dy_s col_s^T would need an operand transposed, which LIBXSMM 1.17 does not
 * generate; dy_s is the small one to transpose, and conv.c transposes the sum back).
 *
 * The rule (shapes only, never timing): LIBXSMM serves what oneDNN does not where
 * 16 <= P <= 1024 and K <= 1200, every op. Measured by bench/conv_bench.c against im2col +
 * OpenBLAS on the shapes it takes (docs/status.md, Speed); outside it OpenBLAS's blocking
 * wins (a sample's product with P >= 1024 or K in the thousands leaves the cache, and
 * P < 16 gives LIBXSMM nothing to vectorize).
 *
 * A kernel depends on the shape alone: bits agree at any thread count and chunk size, and
 * differ across CPUs, as OpenBLAS's do. Kernels are made on first use (nnq_rt_conv_reserve
 * before training) under a lock, and kept for the process. */
#include <libxsmm.h>
#include <pthread.h>
#include <stdlib.h>

#include "rt_internal.h"

struct RtXsmmConv {
    RtConvOp op;
    int32_t c, h, w, o, kh, kw, stride, pad;
    libxsmm_smmfunction set, add; /* C = A B, C += A B (dw) */
    RtXsmmConv *next;
};

static pthread_mutex_t xsmm_mu = PTHREAD_MUTEX_INITIALIZER;
static RtXsmmConv *kernels;
static RtLibMode mode = RT_LIB_RULE;

void rt_xsmm_set_mode(RtLibMode m) {
    mode = m;
}

bool rt_xsmm_serves(RtConvOp op, int32_t c, int32_t o, int32_t kh, int32_t kw, int32_t stride,
                    int32_t pad, int32_t oh, int32_t ow) {
    (void)stride, (void)pad;
    if (mode != RT_LIB_RULE)
        return mode == RT_LIB_ALWAYS;
    int64_t p = (int64_t)oh * ow, k = (int64_t)c * kh * kw;
    if (p < 64)
        return false;
    switch (op) {
    case RT_CONV_FWD:
        return k * p <= (1 << 18);
    case RT_CONV_DX:
        return p <= 576 && k <= 576;
    case RT_CONV_DW:
        return p <= 1024 && k >= 128 && o % 8 == 0;
    }
    return false;
}

static libxsmm_smmfunction dispatch(int m, int n, int k, int lda, int ldb, int ldc, float beta) {
    float alpha = 1.0f;
    int flags = LIBXSMM_GEMM_FLAG_NONE;
    return libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, NULL);
}

static void make_kernels(RtXsmmConv *k) {
    int oh = (k->h + 2 * k->pad - k->kh) / k->stride + 1,
        ow = (k->w + 2 * k->pad - k->kw) / k->stride + 1;
    int p = oh * ow, ckk = k->c * k->kh * k->kw, o = k->o;
    switch (k->op) {
    case RT_CONV_FWD:
        k->set = dispatch(p, o, ckk, p, ckk, p, 0.0f);
        break;
    case RT_CONV_DX:
        k->set = dispatch(p, ckk, o, p, o, p, 0.0f);
        break;
    case RT_CONV_DW:
        k->set = dispatch(o, ckk, p, o, p, o, 0.0f);
        k->add = dispatch(o, ckk, p, o, p, o, 1.0f);
        if (!k->add)
            k->set = NULL;
        break;
    }
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
    libxsmm_init();
}

const RtXsmmConv *rt_xsmm_conv(RtConvOp op, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh,
                               int32_t kw, int32_t stride, int32_t pad) {
    int32_t oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1;
    if (!rt_xsmm_serves(op, c, o, kh, kw, stride, pad, oh, ow))
        return NULL;
    pthread_once(&init_once, init);
    pthread_mutex_lock(&xsmm_mu);
    RtXsmmConv *k = kernels;
    for (; k; k = k->next)
        if (k->op == op && k->c == c && k->h == h && k->w == w && k->o == o && k->kh == kh &&
            k->kw == kw && k->stride == stride && k->pad == pad)
            break;
    if (!k && (k = calloc(1, sizeof *k))) {
        *k = (RtXsmmConv){.op = op,
                          .c = c,
                          .h = h,
                          .w = w,
                          .o = o,
                          .kh = kh,
                          .kw = kw,
                          .stride = stride,
                          .pad = pad,
                          .next = kernels};
        make_kernels(k);
        kernels = k;
    }
    pthread_mutex_unlock(&xsmm_mu);
    return k && k->set ? k : NULL;
}

void rt_xsmm_sample(const RtXsmmConv *k, bool accumulate, const float *a, const float *b,
                    float *c) {
    (accumulate ? k->add : k->set)(a, b, c);
}
