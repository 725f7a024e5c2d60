/* update_bench.c — what fusing a parameter's update buys.
 *
 * Compiles a binary PMF layer of 784x300 (plus Adam) with nnqc's own pipeline, then
 * times, per parameter element:
 *   fused   the JIT-compiled kernel.update (gradient -> softmax Jacobian -> Adam ->
 *           new forward weight, one pass, each array it names read or written once:
 *           gradient, the aux (a two-label pair kept as one value, stdlib/projections
 *           .nnq), its moments, the weight, which also carries in the Jacobian's tanh
 *           from the step before: fuse.c);
 *   naive   the same method as separate passes over memory, the way an unfused
 *           framework runs it (a score per label: softmax, Jacobian-vector product,
 *           Adam moments, Adam step, new weight; moments for each score), written in
 *           plain C and compiled with -O2, on arrays of its own;
 *   cold    the fused kernel once, after every line of 64 MiB elsewhere has been read and
 *           written (evict_caches), evicting its state from every cache (what a training
 *           step's update meets when its state does not stay in the last-level cache
 *           between steps; its reads come from memory, its writes go back after it);
 *   copy    memcpy of the bytes the fused kernel must move (a bandwidth bound).
 * Usage: update_bench [THREADS] (default: every CPU): the fused kernel runs on nnq's pool
 * of that many threads, the naive passes and the copy on one. Prints ns/element,
 * effective GB/s and the ratios. Not a test: nothing is asserted. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen.h"
#include "pipeline.h"
#include "lang.h"
#include "rt_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *src = "labels binary = {-1, +1}\n"
                         "model m(x: f32[784]) -> f32[300] {\n"
                         "    return dense(x, 300, quant = pmf(binary), bias = false)\n"
                         "}\n"
                         "data d = idx(\"i\", \"l\")\n"
                         "train m on d {\n"
                         "    optimizer = adam(lr = 1e-3)\n"
                         "}\n";

/* Every line of p[0 .. bytes) read and written with ordinary stores, so the caches hold
 * these lines instead of the kernel's state. (A memset of this size evicted nothing here:
 * glibc's memset is `rep stosb` at that size (its _erms variant), whose streaming stores
 * do not fill the caches on this AMD CPU; the "cold" kernel ran as fast as the warm one,
 * reading its state from the L3 cache at 170 GB/s on two threads where the triad reaches 43.) */
static void evict_caches(unsigned char *p, size_t bytes) {
    for (size_t i = 0; i < bytes; i += 64) p[i]++;
    __asm__ volatile("" : : "r"(p) : "memory"); /* the stores are seen: not dead before free() */
}

/* The unfused reference: one pass per step, temporaries in memory. */
static void naive_update(int64_t n, float *g, float *a0, float *a1, float *m0, float *m1, float *v0,
                         float *v1, float *w, float *u0, float *u1, float *ga0, float *ga1,
                         float beta, float beta_next, float lr, float bc1, float bc2) {
    for (int64_t i = 0; i < n; i++) { /* softmax */
        float z0 = beta * a0[i], z1 = beta * a1[i], mx = z0 > z1 ? z0 : z1;
        float e0 = expf(z0 - mx), e1 = expf(z1 - mx), s = e0 + e1;
        u0[i] = e0 / s;
        u1[i] = e1 / s;
    }
    for (int64_t i = 0; i < n; i++) { /* g_u = g q; g_a = beta (diag(u) - u u^T) g_u */
        float gu0 = -g[i], gu1 = g[i], dot = u0[i] * gu0 + u1[i] * gu1;
        ga0[i] = beta * u0[i] * (gu0 - dot);
        ga1[i] = beta * u1[i] * (gu1 - dot);
    }
    for (int64_t i = 0; i < n; i++) { /* moments */
        m0[i] = 0.9f * m0[i] + 0.1f * ga0[i];
        m1[i] = 0.9f * m1[i] + 0.1f * ga1[i];
        v0[i] = 0.999f * v0[i] + 0.001f * ga0[i] * ga0[i];
        v1[i] = 0.999f * v1[i] + 0.001f * ga1[i] * ga1[i];
    }
    for (int64_t i = 0; i < n; i++) { /* step */
        a0[i] -= lr * (m0[i] * bc1) / (sqrtf(v0[i] * bc2) + 1e-8f);
        a1[i] -= lr * (m1[i] * bc1) / (sqrtf(v1[i] * bc2) + 1e-8f);
    }
    for (int64_t i = 0; i < n; i++) { /* new weight */
        float z0 = beta_next * a0[i], z1 = beta_next * a1[i], mx = z0 > z1 ? z0 : z1;
        float e0 = expf(z0 - mx), e1 = expf(z1 - mx);
        w[i] = (e1 - e0) / (e0 + e1);
    }
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2 || (argc > 1 && threads < 1)) {
        fprintf(stderr, "usage: update_bench [THREADS]\n");
        return 2;
    }
    if (threads) rt_parallel_set_threads(threads);
    NnqCompilation c;
    NnqCompileOptions o = {.stdlib_dir = NNQ_STDLIB_DIR, .until = NNQ_STAGE_IR};
    if (!nnq_compile(&c, "bench.nnq", src, &o) || c.library) return 1;
    IrModule *m = c.m;
    Jit *jit = jit_compile(m, 2, 0, true, NULL, NULL, c.diag);
    if (!jit) return 1;
    const char *p = m->params[0].name;
    int64_t n = m->params[0].count;
    char name[128];
#define SYM(var, fmt)                                                                              \
    snprintf(name, sizeof name, fmt, p);                                                           \
    float *var = jit_lookup(jit, name)
    SYM(g, "%s.grad");
    SYM(a, "%s.aux0");
    SYM(w, "%s.weight");
    /* the naive passes' own arrays: two scores, their moments, the weight */
    float *own = calloc(7 * n, sizeof(float));
    float *a0 = own, *a1 = own + n, *m0 = own + 2 * n, *m1 = own + 3 * n, *v0 = own + 4 * n, *v1 = own + 5 * n;
    float *wn = own + 6 * n;
    snprintf(name, sizeof name, "kernel.update.%s", p);
    void (*fused)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
    snprintf(name, sizeof name, "kernel.soft.%s", p);
    void (*soft)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
    if (!fused || !soft || !g || !a || !w || !own) return 1;
    srand(1);
    for (int64_t i = 0; i < n; i++) {
        g[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        a0[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        a1[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        a[i] = (a1[i] - a0[i]) / 2;
    }
    soft(2.0f, 2.0f, 0, 0, 0); /* the weight, which the update carries in (fuse.c) */
    float *tmp = calloc(4 * n, sizeof(float));
    float *cbuf = malloc(8 * n * sizeof(float)), *cdst = malloc(8 * n * sizeof(float));
    memset(cbuf, 1, 8 * n * sizeof(float));
    int reps = 200;
    double best_f = 1e9, best_n = 1e9, best_c = 1e9;
    for (int round = 0; round < 5; round++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) fused(2.0f, 2.0f, 1e-3f, 10.0f, 1000.0f);
        double t1 = now();
        for (int r = 0; r < reps; r++)
            naive_update(n, g, a0, a1, m0, m1, v0, v1, wn, tmp, tmp + n, tmp + 2 * n, tmp + 3 * n, 2.0f,
                         2.0f, 1e-3f, 10.0f, 1000.0f);
        double t2 = now();
        for (int r = 0; r < reps; r++) memcpy(cdst, cbuf, 8 * n * sizeof(float)); /* ~ the fused traffic */
        double t3 = now();
        if (t1 - t0 < best_f) best_f = t1 - t0;
        if (t2 - t1 < best_n) best_n = t2 - t1;
        if (t3 - t2 < best_c) best_c = t3 - t2;
    }
    size_t evict_bytes = (size_t)64 << 20;
    unsigned char *evict = calloc(evict_bytes, 1);
    double best_cold = 1e9;
    for (int r = 0; r < 40 && evict; r++) {
        evict_caches(evict, evict_bytes);
        double t0 = now();
        fused(2.0f, 2.0f, 1e-3f, 10.0f, 1000.0f);
        double t = now() - t0;
        if (t < best_cold) best_cold = t;
    }
    free(evict);
    double per = 1e9 / ((double)n * reps);
    /* fused: reads and writes the arrays its kernel names (binary PMF: reads g, the aux,
     * m0, v0 and the weight, writes the aux, m0, v0 and the weight: 36 bytes) */
    const IrKernel *k = &m->kernels[0][0];
    double fused_bytes = 4.0 * n * (k->nin + k->nout), copy_bytes = 16.0 * 4 * n;
    long pool = threads ? threads : sysconf(_SC_NPROCESSORS_ONLN);
    printf("binary PMF + Adam update of a %lld-element tensor (784x300), best of 5 x %d; fused kernel on %ld thread%s:\n",
           (long long)n, reps, pool, pool == 1 ? "" : "s");
    printf("  fused kernel (nnqc)   %6.2f ns/element  %6.1f GB/s moved\n", best_f * per, fused_bytes * reps / best_f / 1e9);
    printf("  fused, state cold     %6.2f ns/element  %6.1f GB/s moved (best of 40)\n", best_cold * 1e9 / n,
           fused_bytes / best_cold / 1e9);
    printf("  naive, 5 passes (C)   %6.2f ns/element\n", best_n * per);
    printf("  memcpy of 64 B/elem   %6.2f ns/element  %6.1f GB/s\n", best_c * per, copy_bytes * reps / best_c / 1e9);
    printf("  fused vs naive: %.2fx faster; fused time / bandwidth bound: %.2f\n", best_n / best_f,
           best_f / (best_c * fused_bytes / copy_bytes));
    free(own);
    free(tmp);
    free(cbuf);
    free(cdst);
    jit_free(jit);
    nnq_compilation_free(&c);
    return 0;
}
