/* machine.c — the floors the workload figures of bench/run are measured against, on
 * this machine, now: the sgemm rate of a large square product (1024^3), as OpenBLAS
 * reaches it on its own (one call, its own threads: the best this library does) and
 * through nnq_rt_sgemm (gemm.c's library for the product, single-threaded, fixed blocks on
 * the runtime's pool), with the name of the kernels OpenBLAS chose for this CPU,
 * and a STREAM-like triad bandwidth (a[i] = b[i] + s c[i] over 3 x 64 MiB), each at 1
 * thread and at THREADS. Prints one JSON object:
 *   {"threads":T,"sgemm_gflops_1":G,"sgemm_gflops_T":G,"nnq_sgemm_gflops_1":G,
 *    "nnq_sgemm_gflops_T":G,"triad_gbs_1":B,"triad_gbs_T":B,"openblas_core":"NAME"}
 * Usage: machine [THREADS]  (default: every CPU). Best of several repetitions. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "nnq_rt.h"
#include "rt_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum { GEMM_N = 1024 };
#define TRIAD_N ((int64_t)16 << 20) /* floats per array: 64 MiB */

/* Through nnq_rt_sgemm, or (blas_threads > 0) one OpenBLAS call on that many threads. */
static double sgemm_rate(float *a, float *b, float *c, int blas_threads) {
    double best = 0;
    if (blas_threads > 0) openblas_set_num_threads(blas_threads);
    for (int rep = 0; rep < 8; rep++) {
        double t = now();
        if (blas_threads > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, GEMM_N, GEMM_N, GEMM_N, 1, a, GEMM_N, b, GEMM_N, 0,
                        c, GEMM_N);
        else
            nnq_rt_sgemm(0, 0, GEMM_N, GEMM_N, GEMM_N, 1, a, GEMM_N, b, GEMM_N, 0, c, GEMM_N);
        t = now() - t;
        double r = 2.0 * GEMM_N * GEMM_N * GEMM_N / t * 1e-9;
        if (r > best) best = r;
    }
    if (blas_threads > 0) openblas_set_num_threads(1);
    return best;
}

typedef struct Triad {
    float *a;
    const float *b, *c;
} Triad;

static void triad_range(void *p, int64_t begin, int64_t end) {
    Triad *t = p;
    for (int64_t i = begin; i < end; i++) t->a[i] = t->b[i] + 3.0f * t->c[i];
}

static double triad_rate(Triad *t) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double s = now();
        rt_parallel_for(TRIAD_N, 1 << 16, triad_range, t);
        s = now() - s;
        double r = 3.0 * sizeof(float) * TRIAD_N / s * 1e-9;
        if (r > best) best = r;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    float *a = malloc(sizeof(float) * GEMM_N * GEMM_N), *b = malloc(sizeof(float) * GEMM_N * GEMM_N);
    float *c = malloc(sizeof(float) * GEMM_N * GEMM_N);
    Triad t = {malloc(sizeof(float) * TRIAD_N), malloc(sizeof(float) * TRIAD_N), malloc(sizeof(float) * TRIAD_N)};
    if (!a || !b || !c || !t.a || !t.b || !t.c) {
        fprintf(stderr, "machine: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < (int64_t)GEMM_N * GEMM_N; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < TRIAD_N; i++) ((float *)t.b)[i] = ((float *)t.c)[i] = t.a[i] = 1.0f;
    rt_parallel_init();
    rt_parallel_set_threads(1);
    double n1 = sgemm_rate(a, b, c, 0), b1 = triad_rate(&t);
    rt_parallel_set_threads(threads);
    double nt = sgemm_rate(a, b, c, 0), bt = triad_rate(&t);
    double g1 = sgemm_rate(a, b, c, 1), gt = sgemm_rate(a, b, c, threads);
    printf("{\"threads\":%d,\"sgemm_gflops_1\":%.1f,\"sgemm_gflops_T\":%.1f,\"nnq_sgemm_gflops_1\":%.1f,"
           "\"nnq_sgemm_gflops_T\":%.1f,\"triad_gbs_1\":%.1f,\"triad_gbs_T\":%.1f,\"openblas_core\":\"%s\"}\n",
           threads, g1, gt, n1, nt, b1, bt, openblas_get_corename());
    return 0;
}
