/* test_gemm.c — nnq_rt_sgemm against nnq_rt_sgemm_ref (naive), with each library gemm.c
 * can call (OpenBLAS, oneDNN's sgemm), and the reference against hand-computed products. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_internal.h"

/* A fixed little generator so the test data does not depend on the runtime's RNG. */
static uint32_t g_lcg = 12345;
static float rnd(void) {
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return (float)((g_lcg >> 8) & 0xffff) / 32768.0f - 1.0f;
}

void test_gemm_ref_known(void) {
    /* A = [1 2 3; 4 5 6], B = [7 8; 9 10; 11 12]: A*B = [58 64; 139 154] */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};
    const float at[6] = {1, 4, 2, 5, 3, 6}, bt[6] = {7, 9, 11, 8, 10, 12};
    const float want[4] = {58, 64, 139, 154};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float c[4] = {1, 1, 1, 1};
            /* C = 2 * op(A) op(B) - 1 * C */
            nnq_rt_sgemm_ref(ta, tb, 2, 2, 3, 2.0f, ta ? at : a, ta ? 2 : 3, tb ? bt : b,
                             tb ? 3 : 2, -1.0f, c, 2);
            for (int i = 0; i < 4; i++)
                CHECK(c[i] == 2 * want[i] - 1, "ref ta=%d tb=%d c[%d] = %g, want %g", ta, tb, i,
                      c[i], 2 * want[i] - 1);
            float d[4] = {1, 1, 1, 1};
            nnq_rt_sgemm(ta, tb, 2, 2, 3, 2.0f, ta ? at : a, ta ? 2 : 3, tb ? bt : b, tb ? 3 : 2,
                         -1.0f, d, 2);
            for (int i = 0; i < 4; i++)
                CHECK(d[i] == 2 * want[i] - 1, "blas ta=%d tb=%d d[%d] = %g", ta, tb, i, d[i]);
        }
}

typedef struct Shape {
    int m, n, k;
} Shape;

/* One comparison: random A, B, C with padded leading dimensions. */
static void gemm_compare(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad) {
    int arows = ta ? k : m, acols = ta ? m : k;
    int brows = tb ? n : k, bcols = tb ? k : n;
    int lda = acols + pad, ldb = bcols + 2 * pad, ldc = n + pad;
    float *a = malloc(sizeof(float) * (size_t)arows * lda + 4);
    float *b = malloc(sizeof(float) * (size_t)brows * ldb + 4);
    float *c1 = malloc(sizeof(float) * (size_t)m * ldc + 4);
    float *c2 = malloc(sizeof(float) * (size_t)m * ldc + 4);
    for (size_t i = 0; i < (size_t)arows * lda; i++)
        a[i] = rnd();
    for (size_t i = 0; i < (size_t)brows * ldb; i++)
        b[i] = rnd();
    for (size_t i = 0; i < (size_t)m * ldc; i++)
        c1[i] = c2[i] = rnd();
    nnq_rt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    nnq_rt_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);

    /* |blas - ref| <= c * (k + 2) * eps * (|alpha| sum_p |a_ip b_pj| + |beta c_ij| + 1) */
    int bad = 0, nonfinite = 0, touched = 0;
    double worst = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= n) { /* padding: untouched, and equal in both */
                touched += c1[at] != c2[at];
                continue;
            }
            double mag = 0;
            for (int p = 0; p < k; p++) {
                double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                mag += fabs(av * bv);
            }
            double tol = 4.0 * (k + 2) * FLT_EPSILON * (fabs(alpha) * mag + fabs(beta) * 2.0 + 1.0);
            double diff = fabs((double)c1[at] - (double)c2[at]);
            if (diff / tol > worst)
                worst = diff / tol;
            bad += diff > tol;
            nonfinite += !isfinite(c1[at]) || !isfinite(c2[at]);
        }
    }
    CHECK(bad == 0 && nonfinite == 0,
          "ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d: %d elements differ (worst "
          "%.3g x tol), %d non-finite",
          ta, tb, m, n, k, alpha, beta, pad, bad, worst, nonfinite);
    CHECK(touched == 0, "padding columns of C differ between the paths");
    free(a), free(b), free(c1), free(c2);
}

/* Checks both paths against the double-precision product, including beta * C. */
static void gemm_exact(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 5;
    int arows = ta ? k : m, brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)arows * lda);
    float *b = malloc(sizeof(float) * (size_t)brows * ldb);
    float *c[2], *c0 = malloc(sizeof(float) * (size_t)m * ldc);
    for (size_t i = 0; i < (size_t)arows * lda; i++)
        a[i] = rnd();
    for (size_t i = 0; i < (size_t)brows * ldb; i++)
        b[i] = rnd();
    for (size_t i = 0; i < (size_t)m * ldc; i++)
        c0[i] = rnd();
    for (int w = 0; w < 2; w++) {
        c[w] = malloc(sizeof(float) * (size_t)m * ldc);
        memcpy(c[w], c0, sizeof(float) * (size_t)m * ldc);
    }
    nnq_rt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c[0], ldc);
    nnq_rt_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c[1], ldc);
    int bad[2] = {0, 0}, pad_changed[2] = {0, 0};
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= n) {
                for (int w = 0; w < 2; w++)
                    pad_changed[w] += c[w][at] != c0[at];
                continue;
            }
            double exact = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                exact += av * bv;
                mag += fabs(av * bv);
            }
            double want = alpha * exact + (double)beta * c0[at];
            double tol = 2.0 * (k + 2) * FLT_EPSILON *
                         (fabs(alpha) * mag + fabs(beta * c0[at]) + 1e-6);
            for (int w = 0; w < 2; w++)
                bad[w] += !(fabs(c[w][at] - want) <= tol);
        }
    CHECK(bad[0] == 0 && bad[1] == 0,
          "vs exact: ta=%d tb=%d %dx%dx%d alpha=%g beta=%g: %d blas, %d ref elements off", ta,
          tb, m, n, k, alpha, beta, bad[0], bad[1]);
    CHECK(pad_changed[0] == 0 && pad_changed[1] == 0,
          "C outside the m x n block was written (blas %d, ref %d)", pad_changed[0],
          pad_changed[1]);
    free(a), free(b), free(c0), free(c[0]), free(c[1]);
}

/* OpenBLAS, then oneDNN's sgemm, whichever this CPU's rule picks */
static const RtLibMode libs[] = {RT_LIB_NEVER, RT_LIB_ALWAYS};

void test_gemm_vs_ref(void) {
    static const Shape shapes[] = {{1, 1, 1},   {7, 5, 3},    {17, 13, 31}, {3, 65, 2},
                                   {33, 1, 129}, {100, 10, 100}, {64, 96, 257}, {300, 520, 90}};
    for (int lib = 0; lib < 2; lib++) {
        rt_gemm_set_mode(libs[lib]);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const Shape *sh = &shapes[s];
                    gemm_compare(ta, tb, sh->m, sh->n, sh->k, 1.0f, 0.0f, 0);
                    gemm_compare(ta, tb, sh->m, sh->n, sh->k, 0.75f, -1.25f, 3);
                    gemm_exact(ta, tb, sh->m, sh->n, sh->k, -0.5f, 2.0f);
                }
    }
    rt_gemm_set_mode(RT_LIB_RULE);
    /* the rule: oneDNN where it runs AVX-512 code, for products of 2 MFLOP or more; every
     * product where OpenBLAS's kernels are narrower than the CPU (runtime_gemm_generic_blas
     * runs this with OpenBLAS held to its SSE3 kernels: OPENBLAS_CORETYPE=Prescott) */
    const char *core = getenv("OPENBLAS_CORETYPE");
    bool generic = core && strcmp(core, "Prescott") == 0 && rt_isa() != RT_ISA_PORTABLE;
    CHECK(rt_blas_fits_cpu() == !generic, "OpenBLAS's %s kernels %s the CPU", openblas_get_corename(),
          generic ? "cannot fit" : "should fit");
    if (generic)
        CHECK(rt_gemm_dnnl(100, 256, 800) && rt_gemm_dnnl(20, 25, 576) && rt_gemm_dnnl(100, 10, 500),
              "gemm.c's rule, OpenBLAS's kernels narrower than the CPU");
    else
        CHECK(rt_gemm_dnnl(100, 256, 800) == rt_dnnl_wide() && !rt_gemm_dnnl(20, 25, 576) &&
                  !rt_gemm_dnnl(100, 10, 500),
              "gemm.c's rule");
    /* a dense layer's products: with AVX2 code (runtime_gemm_avx2) also op(A) = A of 2 MFLOP
     * or more (the MLP's forward 100 x 152 x 784 block), not a weight gradient's or a small one */
    bool avx2 = rt_isa() == RT_ISA_AVX2 && !generic;
    CHECK(rt_gemm_dnnl_dense(0, 100, 152, 784) == (avx2 || rt_gemm_dnnl(100, 152, 784)) &&
              rt_gemm_dnnl_dense(1, 200, 300, 100) == rt_gemm_dnnl(200, 300, 100) &&
              rt_gemm_dnnl_dense(0, 100, 10, 500) == rt_gemm_dnnl(100, 10, 500),
          "gemm.c's rule for dense layers");
}

/* gemm.c's small-output kernel, each width this CPU runs, against the reference: every
 * remainder of its tiles (rows 1-9 against tiles of 2, 3, 4; columns 1-13 against 3, 4, 6),
 * k below, at and past multiples of 4, 8 and 16 lanes, leading dimensions past k, beta 0
 * (C's NaNs overwritten) and not; then the rule that routes products to it. */
void test_gemm_dot(void) {
    static const int ks[] = {1, 15, 16, 17, 64, 100, 579};
    float *a = malloc(sizeof(float) * 9 * 600), *b = malloc(sizeof(float) * 13 * 600);
    float c[9 * 14], r[9 * 14];
    for (int i = 0; i < 9 * 600; i++) a[i] = rnd();
    for (int i = 0; i < 13 * 600; i++) b[i] = rnd();
    int widths = 0;
    for (int lanes = 4; lanes <= 16; lanes *= 2) {
        if (!rt_gemm_dot_lanes(lanes)) continue;
        widths++;
        for (int m = 1; m <= 9; m++)
            for (int n = 1; n <= 13; n++)
                for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++)
                    for (int bi = 0; bi < 2; bi++) {
                        int k = ks[q], lda = k + 3, ldb = k + 1;
                        float beta = bi ? -0.5f : 0.0f;
                        for (int i = 0; i < 9 * 14; i++) c[i] = r[i] = bi ? rnd() : NAN;
                        rt_sgemm_nt_small(m, n, k, a, lda, b, ldb, beta, c, 14);
                        for (int i = 0; i < 9 * 14; i++) r[i] = bi ? r[i] : 0.0f;
                        nnq_rt_sgemm_ref(0, 1, m, n, k, 1.0f, a, lda, b, ldb, beta, r, 14);
                        double worst = 0;
                        int outside = 0, off = 0;
                        for (int i = 0; i < 9; i++)
                            for (int j = 0; j < 14; j++) {
                                if (i < m && j < n) { /* a NaN counts as off */
                                    double d = fabs(c[i * 14 + j] - r[i * 14 + j]);
                                    off += !(d <= 1e-5 * k);
                                    worst = fmax(worst, d);
                                }
                                else outside += bi ? c[i * 14 + j] != r[i * 14 + j] : !isnan(c[i * 14 + j]);
                            }
                        CHECK(!off && !outside, "dot kernel of %d lanes, %d x %d x %d, beta %g: %d off (worst %g), %d written outside",
                              lanes, m, n, k, beta, off, worst, outside);
                    }
    }
    rt_gemm_dot_lanes(0);
    CHECK(widths >= 1, "no dot kernel ran");
    CHECK(rt_gemm_dot(0, 1, 20, 25, 576, 1.0f) && !rt_gemm_dot(0, 1, 50, 500, 448, 1.0f) &&
              !rt_gemm_dot(0, 1, 20, 25, 32, 1.0f) && !rt_gemm_dot(1, 0, 20, 25, 576, 1.0f) &&
              !rt_gemm_dot(0, 1, 20, 25, 576, 0.5f),
          "gemm.c's rule for small outputs");
    /* and up to 4,096 outputs of a narrow C over a long k: a 1 x 1 layer's weight gradient,
     * one sample of 32 x 32 (MobileNetV2's 96 -> 24: 24 x 96 x 1024), the first layer's (64 x
     * 27 over a chunk's positions), not over a short k, past 4,096 (the deep fixture's 3 x 3
     * 16 -> 32 at 28 x 28: 32 x 144 x 784) or with both sides over 32 (Winograd's dw of 64
     * channels) */
    CHECK(rt_gemm_dot(0, 1, 24, 96, 1024, 1.0f) && rt_gemm_dot(0, 1, 64, 27, 4096, 1.0f) &&
              !rt_gemm_dot(0, 1, 64, 64, 512, 1.0f) && !rt_gemm_dot(0, 1, 24, 144, 256, 1.0f) &&
              !rt_gemm_dot(0, 1, 32, 144, 784, 1.0f),
          "gemm.c's rule for small outputs over a long k");
    /* such a product, whole tiles and partial ones, against the reference */
    {
        enum { M = 26, N = 95, K = 1030 };
        float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * N * K);
        float *cd = malloc(sizeof(float) * M * N), *cr = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M * K; i++) x[i] = rnd();
        for (int i = 0; i < N * K; i++) y[i] = rnd();
        rt_sgemm_nt_small(M, N, K, x, K, y, K, 0.0f, cd, N);
        nnq_rt_sgemm_ref(0, 1, M, N, K, 1.0f, x, K, y, K, 0.0f, cr, N);
        int off = 0;
        for (int i = 0; i < M * N; i++) off += !(fabs(cd[i] - cr[i]) <= 1e-5 * K);
        CHECK(!off, "dot kernel, %d x %d x %d: %d outputs off", M, N, K, off);
        free(x), free(y), free(cd), free(cr);
    }
    free(a), free(b);
}

static void gemm_edges(void);

void test_gemm_edges(void) {
    for (int lib = 0; lib < 2; lib++) {
        rt_gemm_set_mode(libs[lib]);
        gemm_edges();
    }
    rt_gemm_set_mode(RT_LIB_RULE);
}

static void gemm_edges(void) {
    /* beta == 0: C is not read, NaNs in it are overwritten */
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    float c[4], d[4];
    for (int i = 0; i < 4; i++)
        c[i] = d[i] = NAN;
    nnq_rt_sgemm(0, 0, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
    nnq_rt_sgemm_ref(0, 0, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, d, 2);
    /* [1 2 3; 4 5 6] * [1 0; 0 1; 1 1] = [4 5; 10 11] */
    const float want[4] = {4, 5, 10, 11};
    for (int i = 0; i < 4; i++) {
        CHECK(c[i] == want[i], "blas beta=0 c[%d] = %g", i, c[i]);
        CHECK(d[i] == want[i], "ref beta=0 d[%d] = %g", i, d[i]);
    }
    /* k == 0: C = beta * C */
    for (int i = 0; i < 4; i++)
        c[i] = d[i] = (float)(i + 1);
    nnq_rt_sgemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 3.0f, c, 2);
    nnq_rt_sgemm_ref(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 3.0f, d, 2);
    for (int i = 0; i < 4; i++)
        CHECK(c[i] == 3.0f * (i + 1) && d[i] == 3.0f * (i + 1), "k=0: %g %g", c[i], d[i]);
    /* m == 0 or n == 0: nothing written */
    c[0] = 42;
    nnq_rt_sgemm(0, 0, 0, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
    nnq_rt_sgemm_ref(0, 0, 2, 0, 3, 1.0f, a, 3, b, 1, 0.0f, c, 1);
    CHECK(c[0] == 42);
}

/* rt_sgemm_then: then() sees every column of C once, each already final (the same bits as
 * nnq_rt_sgemm's C: the same blocks), for products cut by columns (in two blocks, and in
 * halves), cut by rows, and whole, on 1 and 2 threads; where the product is cut by
 * columns, once a block (on one thread: two calls), else once after it. */
typedef struct ThenCheck {
    const float *want, *c;
    int m, n;
    int *seen, *wrong; /* per column: disjoint across the pool's threads */
    _Atomic int calls;
} ThenCheck;

static void then_check(void *p, int64_t lo, int64_t hi) {
    ThenCheck *t = p;
    t->calls++;
    for (int64_t col = lo; col < hi; col++) {
        t->seen[col]++;
        for (int r = 0; r < t->m; r++) t->wrong[col] += t->c[(size_t)r * t->n + col] != t->want[(size_t)r * t->n + col];
    }
}

void test_gemm_then(void) {
    static const struct {
        Shape sh;
        int blocks; /* rt_sgemm_then's calls of then() on one thread */
    } cases[] = {{{100, 300, 784}, 2}, {{100, 100, 300}, 2}, {{784, 300, 100}, 1}, {{20, 30, 10}, 1}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++)
        for (int threads = 1; threads <= 2; threads++) {
            int m = cases[s].sh.m, n = cases[s].sh.n, k = cases[s].sh.k;
            float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
            float *want = malloc(sizeof(float) * m * n), *c = malloc(sizeof(float) * m * n);
            int *seen = calloc(n, sizeof(int)), *wrong = calloc(n, sizeof(int));
            for (int i = 0; i < m * k; i++) a[i] = rnd();
            for (int i = 0; i < k * n; i++) b[i] = rnd();
            for (int i = 0; i < m * n; i++) c[i] = NAN;
            rt_parallel_set_threads(threads);
            nnq_rt_sgemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, want, n);
            ThenCheck t = {want, c, m, n, seen, wrong, 0};
            rt_sgemm_then(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n, then_check, 1, &t);
            int twice = 0, never = 0, off = 0;
            for (int col = 0; col < n; col++) twice += seen[col] > 1, never += seen[col] == 0, off += wrong[col] > 0;
            CHECK(!twice && !never && !off,
                  "rt_sgemm_then %d x %d x %d, %d threads: %d columns seen twice, %d never, %d not final", m, n, k,
                  threads, twice, never, off);
            if (threads == 1)
                CHECK(t.calls == cases[s].blocks, "rt_sgemm_then %d x %d x %d on one thread: then() %d times, want %d",
                      m, n, k, (int)t.calls, cases[s].blocks);
            free(a), free(b), free(want), free(c), free(seen), free(wrong);
        }
    rt_parallel_set_threads(0);
}
