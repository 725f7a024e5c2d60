/* gemm_bench.c — how fast nnq_rt_sgemm (OpenBLAS or oneDNN's sgemm, by gemm.c's rule)
 * runs the GEMMs of a LeNet-300-100 training step, against a large square GEMM (the
 * "peak" it reaches on this machine) and against the naive nnq_rt_sgemm_ref.
 *
 * Usage: gemm_bench [--threads N] [--quick]
 * Each measurement repeats the call until at least ~0.25 s (BLAS) / ~0.15 s (naive)
 * have passed and reports the best-of-3 rate. Results of the two paths are compared
 * too, so a fast wrong answer does not go unnoticed. Not a test: it prints numbers. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnq_rt.h"
#include "rt_internal.h"

typedef void (*GemmFn)(int32_t, int32_t, int32_t, int32_t, int32_t, float, const float *, int32_t,
                       const float *, int32_t, float, float *, int32_t);

typedef struct Shape {
    const char *what;
    int ta, tb, m, n, k;
} Shape;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct Buffers {
    float *a, *b, *c;
    int lda, ldb, ldc;
} Buffers;

static Buffers buffers_new(const Shape *s) {
    Buffers bf;
    int arows = s->ta ? s->k : s->m, brows = s->tb ? s->n : s->k;
    bf.lda = s->ta ? s->m : s->k;
    bf.ldb = s->tb ? s->k : s->n;
    bf.ldc = s->n;
    bf.a = malloc(sizeof(float) * (size_t)arows * bf.lda);
    bf.b = malloc(sizeof(float) * (size_t)brows * bf.ldb);
    bf.c = calloc((size_t)s->m * bf.ldc, sizeof(float));
    unsigned x = 1;
    for (size_t i = 0; i < (size_t)arows * bf.lda; i++)
        bf.a[i] = (float)((x = x * 1103515245u + 12345u) >> 8 & 0xffffff) / 8388608.0f - 1.0f;
    for (size_t i = 0; i < (size_t)brows * bf.ldb; i++)
        bf.b[i] = (float)((x = x * 1103515245u + 12345u) >> 8 & 0xffffff) / 8388608.0f - 1.0f;
    return bf;
}

static void buffers_free(Buffers *bf) {
    free(bf->a), free(bf->b), free(bf->c);
}

/* GFLOP/s of fn on s: best of 3 rounds, each at least min_s seconds long. */
static double gflops(GemmFn fn, const Shape *s, Buffers *bf, double min_s) {
    double flop = 2.0 * s->m * s->n * s->k, best = 0;
    fn(s->ta, s->tb, s->m, s->n, s->k, 1.0f, bf->a, bf->lda, bf->b, bf->ldb, 0.0f, bf->c,
       bf->ldc); /* warm-up */
    for (int round = 0; round < 3; round++) {
        long reps = 0;
        double t0 = now(), t;
        do {
            fn(s->ta, s->tb, s->m, s->n, s->k, 1.0f, bf->a, bf->lda, bf->b, bf->ldb, 0.0f, bf->c,
               bf->ldc);
            reps++;
            t = now() - t0;
        } while (t < min_s / 3);
        double rate = flop * (double)reps / t * 1e-9;
        if (rate > best)
            best = rate;
    }
    return best;
}

/* Largest |blas - ref| relative to k (the GEMMs' inputs are in [-1, 1]). */
static double max_rel_diff(const Shape *s, Buffers *bf) {
    size_t n = (size_t)s->m * bf->ldc;
    float *c1 = malloc(sizeof(float) * n), *c2 = malloc(sizeof(float) * n);
    nnq_rt_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, bf->a, bf->lda, bf->b, bf->ldb, 0.0f, c1,
                 bf->ldc);
    nnq_rt_sgemm_ref(s->ta, s->tb, s->m, s->n, s->k, 1.0f, bf->a, bf->lda, bf->b, bf->ldb, 0.0f,
                     c2, bf->ldc);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)c1[i] - c2[i]) / s->k);
    free(c1), free(c2);
    return worst;
}

int main(int argc, char **argv) {
    int threads = 0;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else {
            fprintf(stderr, "usage: gemm_bench [--threads N] [--quick]\n");
            return 2;
        }
    }
    if (threads > 0)
        openblas_set_num_threads(threads);
    double blas_s = quick ? 0.05 : 0.25, ref_s = quick ? 0.03 : 0.15;

    /* LeNet-300-100, batch 100: forward Y = X W, weight gradient dW = X^T dY, input
     * gradient dX = dY W^T (row-major, W stored in x out). */
    static const Shape shapes[] = {
        {"fwd   784->300  X W", 0, 0, 100, 300, 784},
        {"fwd   300->100  X W", 0, 0, 100, 100, 300},
        {"fwd   100->10   X W", 0, 0, 100, 10, 100},
        {"dW    784x300   X^T dY", 1, 0, 784, 300, 100},
        {"dW    300x100   X^T dY", 1, 0, 300, 100, 100},
        {"dW    100x10    X^T dY", 1, 0, 100, 10, 100},
        {"dX    300->784  dY W^T", 0, 1, 100, 784, 300},
        {"dX    100->300  dY W^T", 0, 1, 100, 300, 100},
        {"dX    10->100   dY W^T", 0, 1, 100, 100, 10},
    };
    const Shape peak_shape = {"square 1024^3 (peak)", 0, 0, 1024, 1024, 1024};

    printf("gemm_bench: OpenBLAS %d thread%s (%s); oneDNN's sgemm for products of 2 MFLOP or more: %s\n",
           openblas_get_num_threads(), openblas_get_num_threads() == 1 ? "" : "s", openblas_get_config(),
           rt_gemm_dnnl(1024, 1024, 1024) ? "yes" : "no (AVX2 or less)");
    Buffers pb = buffers_new(&peak_shape);
    double peak = gflops(nnq_rt_sgemm, &peak_shape, &pb, quick ? 0.2 : 1.0);
    buffers_free(&pb);
    printf("%-24s %9s %7s %9s %8s %10s\n", "shape (m x n x k)", "BLAS GF/s", "of peak",
           "naive GF/s", "speedup", "max|d|/k");
    printf("%-24s %9.2f %6.0f%% %9s %8s %10s   1024x1024x1024\n", peak_shape.what, peak, 100.0,
           "-", "-", "-");
    double total_flop = 0, total_blas = 0, total_ref = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const Shape *s = &shapes[i];
        Buffers bf = buffers_new(s);
        double g = gflops(nnq_rt_sgemm, s, &bf, blas_s);
        double r = gflops(nnq_rt_sgemm_ref, s, &bf, ref_s);
        double d = max_rel_diff(s, &bf);
        double flop = 2.0 * s->m * s->n * s->k;
        total_flop += flop;
        total_blas += flop / (g * 1e9);
        total_ref += flop / (r * 1e9);
        printf("%-24s %9.2f %6.0f%% %9.2f %7.1fx %10.2e   %dx%dx%d\n", s->what, g,
               100.0 * g / peak, r, g / r, d, s->m, s->n, s->k);
        buffers_free(&bf);
    }
    double step_blas = total_flop / total_blas * 1e-9, step_ref = total_flop / total_ref * 1e-9;
    printf("%-24s %9.2f %6.0f%% %9.2f %7.1fx %10s   %.1f MFLOP, %.3f ms BLAS / %.2f ms naive\n",
           "training step (all 9)", step_blas, 100.0 * step_blas / peak, step_ref,
           step_blas / step_ref, "", total_flop * 1e-6, total_blas * 1e3, total_ref * 1e3);
    return 0;
}
