/* machine.c — the floors the workload figures of bench/run are measured against, on
 * this machine, now: the sgemm rate of a large square product (1024^3), as OpenBLAS
 * reaches it on its own (one call, its own threads: the best this library does) and
 * through nnq_rt_sgemm (gemm.c's library for the product, single-threaded, fixed blocks on
 * the runtime's pool), with the name of the kernels OpenBLAS chose for this CPU,
 * and a STREAM-like triad bandwidth (a[i] = b[i] + s c[i] over 3 x 64 MiB), each at 1
 * thread and at THREADS; then what moving data between cores costs, at THREADS, on an
 * array of HAND_BYTES (a small network's tensor, held in the caches): the rate at which
 * the pool's threads read their parts of it back when each wrote its own part
 * (cached_gbs), when one thread wrote all of it (handoff_gbs: the others' parts come
 * from that thread's caches), and the rate at which they write their parts when every
 * thread has just read all of it (shared_write_gbs: each written line is first taken
 * from the others' caches; this is what an update does to weights every thread's GEMMs
 * read); and the rate at which they write their parts again, as contiguous parts
 * (own_write_gbs) and as columns of a row-major matrix whose rows are 20 cache lines, cut
 * at line boundaries (column_write_gbs: no line is shared, yet a core's prefetchers pull
 * lines next to its pieces, which another core writes; a GEMM cut by columns, or a batch
 * norm by channels, writes its output so). Prints one JSON object:
 *   {"threads":T,"sgemm_gflops_1":G,"sgemm_gflops_T":G,"nnq_sgemm_gflops_1":G,
 *    "nnq_sgemm_gflops_T":G,"triad_gbs_1":B,"triad_gbs_T":B,"cached_gbs":B,
 *    "handoff_gbs":B,"shared_write_gbs":B,"own_write_gbs":B,"column_write_gbs":B,
 *    "openblas_core":"NAME"}
 * Usage: machine [THREADS]  (default: every CPU). The floors: best of several
 * repetitions; the moves between cores: the median. */
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

#define HAND_BYTES ((int64_t)1 << 20)
enum { HAND_N = HAND_BYTES / sizeof(float) };

static float hand[HAND_N] __attribute__((aligned(64)));

/* Moves 16 floats at a time (a vector type: loads and stores, not the core's scalar
 * issue rate, set the pace). Parts are multiples of 64 floats (4096 or more). */
typedef float F16 __attribute__((vector_size(64)));
static volatile float hand_sink;

static void hand_write(void *p, int64_t begin, int64_t end) {
    (void)p;
    F16 v = {0};
    for (int64_t i = begin; i + 16 <= end; i += 16) *(F16 *)&hand[i] = v;
}

static void hand_read(void *p, int64_t begin, int64_t end) {
    (void)p;
    F16 s[4] = {{0}};
    for (int64_t i = begin; i + 64 <= end; i += 64) /* four sums: no add waits on the last */
        for (int k = 0; k < 4; k++) s[k] += *(const F16 *)&hand[i + 16 * k];
    float t = 0;
    for (int k = 0; k < 16; k++) t += s[0][k] + s[1][k] + s[2][k] + s[3][k];
    hand_sink = t;
}

/* Columns [begin, end) of the array as a row-major matrix of HAND_COLS floats a row (a
 * small network's activations, [N, C], cut by columns as a GEMM cut by columns or a batch
 * norm by channels cuts it): rows of 20 cache lines, so parts cut at multiples of 64
 * floats share no line. */
enum { HAND_COLS = 320 };
static void hand_cols_write(void *p, int64_t begin, int64_t end) {
    (void)p;
    F16 v = {0};
    for (int64_t r = 0; r < HAND_N / HAND_COLS; r++)
        for (int64_t i = begin; i + 16 <= end; i += 16) *(F16 *)&hand[r * HAND_COLS + i] = v;
}

/* Part p of THREADS reads the whole array. */
static void hand_read_all(void *p, int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; q++) hand_read(p, 0, HAND_N);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median rate of a job over HAND_BYTES (not the best: a repetition where the lines
 * happened to leave the other caches first is not what a training step sees), each
 * repetition after `prepare`: 0 the pool writes the parts, 1 the calling thread writes
 * all, 2 every thread reads all, 3 the pool writes its columns (and the job is cut by
 * columns too). */
static double hand_rate(int threads, int prepare, RtRangeFn job) {
    enum { REPS = 201 };
    double r[REPS];
    for (int rep = 0; rep < REPS; rep++) {
        if (prepare == 0) rt_parallel_for(HAND_N, 4096, hand_write, NULL);
        else if (prepare == 1) hand_write(NULL, 0, HAND_N);
        else if (prepare == 2) rt_parallel_for(threads, 1, hand_read_all, NULL);
        else rt_parallel_for(HAND_COLS, 64, hand_cols_write, NULL);
        double s = now();
        if (prepare == 3) rt_parallel_for(HAND_COLS, 64, job, NULL);
        else rt_parallel_for(HAND_N, 4096, job, NULL);
        r[rep] = (double)HAND_BYTES / (now() - s) * 1e-9;
    }
    qsort(r, REPS, sizeof r[0], cmp_double);
    return r[REPS / 2];
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
    double cached = hand_rate(threads, 0, hand_read), handoff = hand_rate(threads, 1, hand_read);
    double shared = hand_rate(threads, 2, hand_write);
    double own_write = hand_rate(threads, 0, hand_write), cols_write = hand_rate(threads, 3, hand_cols_write);
    double g1 = sgemm_rate(a, b, c, 1), gt = sgemm_rate(a, b, c, threads);
    printf("{\"threads\":%d,\"sgemm_gflops_1\":%.1f,\"sgemm_gflops_T\":%.1f,\"nnq_sgemm_gflops_1\":%.1f,"
           "\"nnq_sgemm_gflops_T\":%.1f,\"triad_gbs_1\":%.1f,\"triad_gbs_T\":%.1f,\"cached_gbs\":%.1f,"
           "\"handoff_gbs\":%.1f,\"shared_write_gbs\":%.1f,\"own_write_gbs\":%.1f,\"column_write_gbs\":%.1f,"
           "\"openblas_core\":\"%s\"}\n",
           threads, g1, gt, n1, nt, b1, bt, cached, handoff, shared, own_write, cols_write, openblas_get_corename());
    return 0;
}
