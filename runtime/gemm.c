/* gemm.c — single-precision matrix multiply: the library path, dot products for small
 * outputs, and the naive reference.
 *
 * Contract shared by both (row-major, BLAS semantics):
 *   C[m x n] = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T (trans flag 1).
 *   A is stored m x k (lda >= k) or, transposed, k x m (lda >= m); B is k x n
 *   (ldb >= n) or n x k (ldb >= k); ldc >= n. Elements of C outside the m x n block
 *   are never touched. beta == 0 means C is not read (NaNs in it are overwritten).
 *   k == 0 or alpha == 0 gives C = beta * C (A and B are not read).
 * A leading dimension below its minimum is a code generator bug, not a user error: it
 * trips an assert. The results of the two paths agree to rounding (tests bound the
 * difference by a multiple of k * FLT_EPSILON * sum |alpha a b| + |beta c|).
 *
 * Library (a rule of the CPU and the shape, so a product takes the same path on every
 * run): oneDNN's sgemm where oneDNN runs AVX-512 code and the product (a block) has at
 * least GEMM_DNNL_FLOPS, else OpenBLAS (rt_gemm_set_mode overrides it for tests and
 * benchmarks); every product goes to oneDNN where OpenBLAS's kernels are narrower than
 * the CPU (rt_blas_fits_cpu: an OpenBLAS older than the CPU, which it does not know,
 * falls back to SSE3 kernels). Measured on the products nnq runs, one thread, one Intel CPU
 * (docs/speed-log.md): with AVX-512, oneDNN's sgemm runs the dense layers' blocks
 * 1.15-1.3x faster (LeNet-5's 100 x 256 x 800: 145 -> 191 GFLOP/s), conv.c's chunk
 * products 1.05-1.9x (bench/conv_bench), and loses 20% on products of 1 MFLOP or less
 * (LeNet-5's conv1 dw chunk 20 x 25 x 576, its last layer's 100 x 10 x 500: about 2 us a
 * call more); with both held to AVX2 it ranges from 0.86x (the dx products of
 * 512-channel layers) to 1.6x, so OpenBLAS keeps AVX2, but for the dense layers' products
 * (nnq_rt_sgemm) of 2 MFLOP or more whose op(A) is A (forward and input gradient): on AMD
 * Zen 5, one thread, in cache, 1.03-1.08x on every such block of the MLP, LeNet-5 and
 * VGG-16 (weight gradients, op(A) = A^T, range from 0.90x to 1.05x: OpenBLAS keeps them);
 * the float MLP's GEMM phase 1.11 -> 1.09 ms at 1 thread and 0.63 -> 0.615 at 2, LeNet-5's
 * 2.45 -> 2.38 and 1.32 -> 1.28 (alternated runs, 2026-12-04).
 *
 * Small outputs: a product C = A B^T (A not transposed, B transposed: rows of both run
 * along k) of at most DOT_MAX_OUT elements and k >= DOT_MIN_K is computed by dot products
 * here (rt_sgemm_nt_small), by the rule (rt_gemm_set_mode(RT_LIB_RULE)); both libraries pack
 * their operands into panels for a register tile larger than such a C. These are the
 * weight gradients of convolutions with few weights (LeNet-5's conv1: 20 x 25 x 576 per
 * sample): a tile of TI x TJ outputs, each a vector of partial sums over k, then summed
 * across the lanes; compiled for AVX-512 (16 lanes, 4 x 6) and AVX2 + FMA (8 lanes,
 * 3 x 4: 16 registers), the first this CPU runs chosen at run time, and SSE2 (4 lanes,
 * 2 x 3) else. Measured on AMD Zen 5, one thread, 20 x 25 x 576: 102 GFLOP/s with
 * AVX-512, 74 with AVX2, against OpenBLAS's 51 (Haswell kernels) and oneDNN's 60. Its
 * bits, like the libraries', depend on the kernel the CPU runs, never on the thread
 * count (the blocks are fixed by the shape). Also up to DOT_LONG_OUT outputs where k is at
 * least DOT_LONG_K and a side of C at most DOT_LONG_SIDE (Winograd's dw for 64 channels,
 * 64 x 64 over 512 tiles and more, lost 4% to OpenBLAS with AVX2 code and 15% to oneDNN's
 * sgemm with AVX-512): a 1 x 1 layer's weight gradient, one sample of 32 x 32 a product
 * (MobileNetV2's 96 -> 24: 24 x 96 x 1024), and the first layer's of VGG-16 and ResNet-18
 * (64 x 27 over a chunk's positions). One thread, AMD Zen 5, 16 samples: 24 x 96 x 1024
 * 146 GFLOP/s with AVX-512 against oneDNN's sgemm's 31 (OpenBLAS 85), 115 with AVX2
 * against OpenBLAS's 93; 24 x 144, 144 x 24, 96 x 16 and 64 x 64 (k = 1024) 1.0-2.1x the
 * library the rule gave them; past 4,096 outputs or with k of 256 it loses (32 x 144 x
 * 784: 134 against 167 with AVX-512; 192 x 32 x 256: 85 against 100 with AVX2). In the
 * convolutions' weight gradients (bench/conv_bench, 2 threads, share of the sgemm rate):
 * MobileNetV2's 96 -> 24 at 32 x 32 0.13 -> 0.51 with AVX-512, 0.67 -> 0.72 with AVX2,
 * its 16 -> 96 0.58 -> 0.69 with AVX2, the 3 -> 64 first layer 0.33 -> 0.54 and 0.60 ->
 * 0.82.
 *
 * Threads: both libraries run single-threaded (parallel.c; oneDNN's OpenMP held to one
 * thread on each thread that calls it); a large product is cut into
 * blocks of rows or columns of C and the blocks run on the pool. The cut depends on the
 * shape only, never on the thread count: OpenBLAS's result for an element depends on how
 * the product around it is cut (measured: different block widths give different bits),
 * so a fixed cut keeps results identical on any number of threads. Called from inside a
 * pool job, the blocks run one after the other on that thread. */
#include <assert.h>
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "rt_internal.h"

static RtLibMode mode = RT_LIB_RULE;
static _Atomic int wide = -1; /* rt_dnnl_wide(), asked once (any thread may ask first) */
static _Atomic int blas_wide = -1; /* OpenBLAS chose AVX2 or AVX-512 kernels, likewise */

void rt_gemm_set_mode(RtLibMode m) {
    mode = m;
}

#define GEMM_DNNL_FLOPS 2e6

/* A product large enough for oneDNN's sgemm (where a rule gives it those). */
static bool dnnl_sized(int32_t m, int32_t n, int32_t k) {
    return 2.0 * m * n * k >= GEMM_DNNL_FLOPS;
}

/* OpenBLAS's kernel families that need more than SSE3 (openblas_get_corename's names),
 * with the instructions they need: one table for whether its kernels are as wide as the
 * level nnq runs (rt_blas_fits_cpu) and whether this CPU runs them at all
 * (rt_blas_runs_here). */
enum { BLAS_AVX, BLAS_AVX2, BLAS_AVX512 };
static const struct {
    const char *core;
    int needs;
} blas_cores[] = {
    {"sandybridge", BLAS_AVX}, {"bulldozer", BLAS_AVX},   {"piledriver", BLAS_AVX}, {"steamroller", BLAS_AVX},
    {"excavator", BLAS_AVX},   {"haswell", BLAS_AVX2},    {"zen", BLAS_AVX2},       {"skylakex", BLAS_AVX512},
    {"cooperlake", BLAS_AVX512}, {"sapphirerapids", BLAS_AVX512},
};

/* What OpenBLAS's chosen kernels need: BLAS_*, or -1 for SSE3 and below. */
static int blas_needs(void) {
    const char *core = openblas_get_corename();
    for (size_t i = 0; core && i < sizeof blas_cores / sizeof blas_cores[0]; i++)
        if (strcasecmp(core, blas_cores[i].core) == 0) return blas_cores[i].needs;
    return -1;
}

/* Whether OpenBLAS runs kernels as wide as the level nnq runs (rt_isa): on an AVX2 or
 * AVX-512 level, one of its AVX2 or AVX-512 kernels. OpenBLAS chooses by CPU model when
 * it loads, and one older than the CPU falls back to its SSE3 kernels ("Prescott"): Debian
 * 12's 0.3.21 on an Intel Xeon of family 6, model 207 (Emerald Rapids) ran 1024^3 at
 * 32.8 GFLOP/s on one thread, against 136.5 for oneDNN's sgemm, which chooses by the
 * CPU's features (docs/speed-log.md, "A 16-core Intel Xeon"). OPENBLAS_CORETYPE, read when
 * OpenBLAS loads, names its kernels instead. */
bool rt_blas_fits_cpu(void) {
    if (blas_wide < 0)
        blas_wide = blas_needs() >= BLAS_AVX2;
    return blas_wide || rt_isa_kernels() == RT_ISA_PORTABLE;
}

/* Whether this CPU runs the kernels OpenBLAS chose. Its own choice always fits; one that
 * $OPENBLAS_CORETYPE names (Haswell on a CPU without AVX2, copied from a benchmark's
 * settings) would die of SIGILL at the first product, so a run stops before it with
 * this message. */
bool rt_blas_runs_here(char *err, size_t errlen) {
    __builtin_cpu_init();
    int needs = blas_needs();
    const char *lacks = needs == BLAS_AVX && !__builtin_cpu_supports("avx")         ? "avx"
                        : needs == BLAS_AVX2 && !__builtin_cpu_supports("avx2")     ? "avx2"
                        : needs == BLAS_AVX2 && !__builtin_cpu_supports("fma")      ? "fma"
                        : needs == BLAS_AVX512 && !__builtin_cpu_supports("avx512f") ? "avx512f"
                        : needs == BLAS_AVX512 && !__builtin_cpu_supports("avx512vl") ? "avx512vl"
                                                                                     : NULL;
    if (!lacks) return true;
    const char *env = getenv("OPENBLAS_CORETYPE");
    snprintf(err, errlen,
             "OpenBLAS runs its %s kernels%s%s%s, which need %s, and this CPU lacks it: unset OPENBLAS_CORETYPE "
             "or name kernels this CPU runs",
             openblas_get_corename(), env ? " (OPENBLAS_CORETYPE=" : "", env ? env : "", env ? ")" : "", lacks);
    return false;
}

bool rt_gemm_dnnl_sized(int32_t m, int32_t n, int32_t k) {
    if (mode != RT_LIB_RULE)
        return mode == RT_LIB_ALWAYS;
    if (wide < 0)
        wide = rt_dnnl_wide();
    return wide && dnnl_sized(m, n, k);
}

bool rt_gemm_dnnl(int32_t m, int32_t n, int32_t k) {
    return rt_gemm_dnnl_sized(m, n, k) || (mode == RT_LIB_RULE && !rt_blas_fits_cpu());
}

bool rt_gemm_dnnl_dense(int32_t transa, int32_t m, int32_t n, int32_t k) {
    return rt_gemm_dnnl(m, n, k) ||
           (mode == RT_LIB_RULE && rt_isa_kernels() == RT_ISA_AVX2 && !transa && dnnl_sized(m, n, k));
}

void nnq_describe_libraries(FILE *out) {
    const char *isa = nnq_isa();
    fprintf(out, "vector instructions: %s%s\n", isa, nnq_isa_held() ? " (held below the CPU's by $NNQ_ISA)" : "");
    fprintf(out, "%s\n", openblas_get_config()); /* "OpenBLAS 0.3.21 ... Haswell ..." */
    fprintf(out, "oneDNN %s\n", rt_dnnl_version());
}

/* The rule above in words, for --profile (the same cases in the same order). */
void rt_gemm_describe(FILE *out) {
    const char *core = openblas_get_corename();
    core = core ? core : "?";
    double mflop = GEMM_DNNL_FLOPS / 1e6;
    if (!rt_blas_fits_cpu())
        fprintf(out, "matrix products: oneDNN's sgemm (OpenBLAS chose its %s kernels, narrower than the CPU; "
                     "OPENBLAS_CORETYPE names others)\n", core);
    else if (rt_dnnl_wide())
        fprintf(out, "matrix products: oneDNN's sgemm from %g MFLOP, OpenBLAS's %s kernels below\n", mflop, core);
    else if (rt_isa_kernels() == RT_ISA_AVX2)
        fprintf(out, "matrix products: OpenBLAS's %s kernels, oneDNN's sgemm for a dense layer's forward and "
                     "input gradient from %g MFLOP\n", core, mflop);
    else
        fprintf(out, "matrix products: OpenBLAS's %s kernels\n", core);
}

/* Cutting: blocks of at least GEMM_BLOCK_FLOPS and GEMM_MIN_WIDTH rows or columns, at
 * most GEMM_MAX_BLOCKS, a power of two of them, cut as evenly as whole tiles of
 * GEMM_TILE rows or columns allow (gemm_edge). (At 4 MFLOP a block, the MLP's 6-MFLOP
 * products ran whole on one thread: gemm_bench at 2 threads, its 300 x 100 weight
 * gradient and 100 -> 300 dx 140 and 155 GFLOP/s, 230 and 248 in two blocks.) A product
 * too narrow for two such blocks is still cut in two where each half is at least
 * GEMM_MIN_HALF wide: the MLP's 300 -> 100 forward product (100 x 100 x 300), whole on
 * one thread, took 108-113 GFLOP/s at 2 threads in gemm_bench, and 172-186 in halves.
 * Tiles of 8, not of 16 (every kernel's widest register tile, in equal blocks but the
 * last): the MLP's 300 columns went 160 | 140, its 100 columns 64 | 36 and 784 rows
 * 208 x 3 + 160 (2 threads: 416 | 368 rows); in tiles of 8, 152 | 148, 56 | 44 and
 * 392 | 392. gemm_bench's nine MLP products, AMD Zen 5, 2 threads, six alternated
 * runs: 226-237 -> 226-250 GFLOP/s (medians 230 -> 241) with AVX2 kernels, 422-438 ->
 * 435-447 with AVX-512's; tiles of 4 no better than 8 (220-245). */
enum { GEMM_TILE = 8, GEMM_MAX_BLOCKS = 16, GEMM_MIN_WIDTH = 128, GEMM_MIN_HALF = 48 };
#define GEMM_BLOCK_FLOPS 2e6

static void gemm_check_args(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k,
                            int32_t lda, int32_t ldb, int32_t ldc) {
    assert(m >= 0 && n >= 0 && k >= 0);
    assert(lda >= (transa ? m : k) && lda >= 1);
    assert(ldb >= (transb ? k : n) && ldb >= 1);
    assert(ldc >= n && ldc >= 1);
    (void)transa, (void)transb, (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc;
}

/* C = beta * C over the m x n block (beta == 0 stores zeros). */
static void gemm_scale_c(int32_t m, int32_t n, float beta, float *c, int32_t ldc) {
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++)
            c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

typedef struct GemmJob {
    int32_t transa, transb, m, n, k;
    float alpha;
    const float *a;
    int32_t lda;
    const float *b;
    int32_t ldb;
    float beta;
    float *c;
    int32_t ldc;
    int32_t by_rows, blocks; /* `blocks` blocks of rows (by_rows) or columns of C */
    bool dense;             /* a dense layer's product (nnq_rt_sgemm), not a convolution's */
    RtRangeFn then;         /* rt_sgemm_then's pass over a block of columns, or NULL */
    void *then_ctx;
} GemmJob;

/* ---- small outputs: C = beta C + A B^T by dot products ---- */

enum { DOT_MAX_OUT = 1024, DOT_MIN_K = 64, DOT_LONG_OUT = 4096, DOT_LONG_K = 512, DOT_LONG_SIDE = 32 };

bool rt_gemm_dot(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha) {
    int64_t out = (int64_t)m * n;
    bool narrow = m <= DOT_LONG_SIDE || n <= DOT_LONG_SIDE;
    return mode == RT_LIB_RULE && !transa && transb && alpha == 1.0f &&
           ((out <= DOT_MAX_OUT && k >= DOT_MIN_K) || (out <= DOT_LONG_OUT && narrow && k >= DOT_LONG_K));
}

/* One tile of C, ti x tj (<= TI x TJ): rows beyond ti of A and tj of B repeat the last one,
 * so every tile runs the full kernel, and only ti x tj outputs are stored. Per output: the
 * V lanes' partial sums over k rounded down to V, then the lanes in order, then the rest of
 * k (a fixed order: the same bits for a shape on every call). */
#define DOT_KERNEL(NAME, TARGET, V, TI, TJ)                                                                    \
    typedef float NAME##_v __attribute__((vector_size(4 * V)));                                               \
    typedef float NAME##_u __attribute__((vector_size(4 * V), aligned(4)));                                   \
    __attribute__((target(TARGET))) static void NAME##_tile(int ti, int tj, int32_t k, const float *a,        \
                                                            int32_t lda, const float *b, int32_t ldb,        \
                                                            float beta, float *c, int32_t ldc) {             \
        const float *ar[TI], *br[TJ];                                                                         \
        for (int i = 0; i < TI; i++) ar[i] = a + (int64_t)(i < ti ? i : ti - 1) * lda;                        \
        for (int j = 0; j < TJ; j++) br[j] = b + (int64_t)(j < tj ? j : tj - 1) * ldb;                        \
        NAME##_v acc[TI][TJ];                                                                                 \
        _Pragma("GCC unroll 8") for (int i = 0; i < TI; i++)                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < TJ; j++) acc[i][j] = (NAME##_v){0};                   \
        int32_t p = 0;                                                                                        \
        for (; p + V <= k; p += V) {                                                                          \
            NAME##_v av[TI];                                                                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < TI; i++) av[i] = *(const NAME##_u *)(ar[i] + p);      \
            _Pragma("GCC unroll 8") for (int j = 0; j < TJ; j++) {                                            \
                NAME##_v bv = *(const NAME##_u *)(br[j] + p);                                                 \
                _Pragma("GCC unroll 8") for (int i = 0; i < TI; i++) acc[i][j] += av[i] * bv;                 \
            }                                                                                                 \
        }                                                                                                     \
        for (int i = 0; i < ti; i++)                                                                          \
            for (int j = 0; j < tj; j++) {                                                                    \
                float sum = 0.0f;                                                                             \
                for (int l = 0; l < V; l++) sum += acc[i][j][l];                                              \
                for (int32_t q = p; q < k; q++) sum += ar[i][q] * br[j][q];                                   \
                float *cij = c + (int64_t)i * ldc + j;                                                        \
                *cij = beta == 0.0f ? sum : sum + beta * *cij;                                                \
            }                                                                                                 \
    }                                                                                                         \
    __attribute__((target(TARGET))) static void NAME(int32_t m, int32_t n, int32_t k, const float *a,         \
                                                     int32_t lda, const float *b, int32_t ldb, float beta,   \
                                                     float *c, int32_t ldc) {                                \
        for (int32_t j0 = 0; j0 < n; j0 += TJ)                                                                \
            for (int32_t i0 = 0; i0 < m; i0 += TI)                                                            \
                NAME##_tile(m - i0 < TI ? m - i0 : TI, n - j0 < TJ ? n - j0 : TJ, k, a + (int64_t)i0 * lda,   \
                            lda, b + (int64_t)j0 * ldb, ldb, beta, c + (int64_t)i0 * ldc + j0, ldc);          \
    }

DOT_KERNEL(dot_avx512, "avx512f,fma", 16, 4, 6)
DOT_KERNEL(dot_avx2, "avx2,fma", 8, 3, 4)
DOT_KERNEL(dot_sse2, "sse2", 4, 2, 3)

typedef void DotFn(int32_t, int32_t, int32_t, const float *, int32_t, const float *, int32_t, float, float *,
                   int32_t);

static DotFn *_Atomic dot_fn;

bool rt_gemm_dot_lanes(int lanes) {
    lanes = rt_cpu_lanes(lanes);
    if (!lanes) return false;
    dot_fn = lanes == 16 ? dot_avx512 : lanes == 8 ? dot_avx2 : dot_sse2;
    return true;
}

void rt_sgemm_nt_small(int32_t m, int32_t n, int32_t k, const float *a, int32_t lda, const float *b, int32_t ldb,
                       float beta, float *c, int32_t ldc) {
    if (!dot_fn) rt_gemm_dot_lanes(0);
    if (m > 0 && n > 0) dot_fn(m, n, k, a, lda, b, ldb, beta, c, ldc);
}

/* Rows or columns [lo, hi) of C. */
static void gemm_block(const GemmJob *j, int32_t lo, int32_t hi) {
    const float *a = j->a, *b = j->b;
    float *c = j->c;
    int32_t m = j->m, n = j->n;
    if (j->by_rows) {
        a += j->transa ? lo : (size_t)lo * j->lda;
        c += (size_t)lo * j->ldc;
        m = hi - lo;
    } else {
        b += j->transb ? (size_t)lo * j->ldb : lo;
        c += lo;
        n = hi - lo;
    }
    if (rt_gemm_dot(j->transa, j->transb, m, n, j->k, j->alpha))
        rt_sgemm_nt_small(m, n, j->k, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
    else if (j->dense ? rt_gemm_dnnl_dense(j->transa, m, n, j->k) : rt_gemm_dnnl(m, n, j->k))
        rt_dnnl_sgemm(j->transa, j->transb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
    else
        cblas_sgemm(CblasRowMajor, j->transa ? CblasTrans : CblasNoTrans, j->transb ? CblasTrans : CblasNoTrans,
                    m, n, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
}

/* Where block b of `blocks` over dim rows or columns begins (b == blocks: dim), in whole
 * tiles of GEMM_TILE, the tiles shared out as evenly as they go. */
static int32_t gemm_edge(int32_t dim, int32_t blocks, int64_t b) {
    int64_t tiles = (dim + GEMM_TILE - 1) / GEMM_TILE, at = (tiles * b + blocks / 2) / blocks * GEMM_TILE;
    return (int32_t)(at < dim ? at : dim);
}

static void gemm_blocks(void *p, int64_t begin, int64_t end) {
    const GemmJob *j = p;
    int32_t dim = j->by_rows ? j->m : j->n;
    for (int64_t blk = begin; blk < end; blk++) {
        int32_t lo = gemm_edge(dim, j->blocks, blk), hi = gemm_edge(dim, j->blocks, blk + 1);
        gemm_block(j, lo, hi);
        if (j->then) j->then(j->then_ctx, lo, hi);
    }
}

/* Checks the arguments and does the cases with no product (an empty C, k == 0 or
 * alpha == 0); true when nothing is left to do. */
static bool gemm_trivial(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, int32_t lda,
                         int32_t ldb, float beta, float *c, int32_t ldc) {
    gemm_check_args(transa, transb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return true;
    if (k == 0 || alpha == 0.0f) {
        gemm_scale_c(m, n, beta, c, ldc);
        return true;
    }
    return false;
}

void nnq_rt_sgemm(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha,
                  const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c,
                  int32_t ldc) {
    rt_sgemm_then(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 0, NULL);
}

void rt_sgemm_then(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                   int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc, RtRangeFn then,
                   int64_t min_items, void *ctx) {
    if (gemm_trivial(transa, transb, m, n, k, alpha, lda, ldb, beta, c, ldc)) {
        if (then) rt_parallel_for(n, min_items, then, ctx);
        return;
    }
    rt_parallel_init();
    GemmJob j = {transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, true, NULL, NULL};
    /* Cut the dimension whose blocks repack the smaller operand: columns of C (each block
     * repacks all of A, m x k) when m <= n, rows of C (each repacks B) otherwise. */
    j.by_rows = m > n;
    int32_t dim = j.by_rows ? m : n;
    double flops = 2.0 * m * n * k;
    int64_t blocks = (int64_t)(flops / GEMM_BLOCK_FLOPS);
    int64_t most = dim / GEMM_MIN_WIDTH;
    if (most < 2 && dim >= 2 * GEMM_MIN_HALF) most = 2;
    if (blocks > most) blocks = most;
    if (blocks > GEMM_MAX_BLOCKS) blocks = GEMM_MAX_BLOCKS;
    /* a power of two: the blocks share out evenly over 2, 4, ... threads (3 blocks on 2
     * threads leave one thread a third of the product idle) */
    while (blocks & (blocks - 1)) blocks &= blocks - 1;
    if (blocks > 1) {
        j.blocks = (int32_t)blocks;
        if (!j.by_rows) j.then = then, j.then_ctx = ctx; /* each block's columns are whole */
        rt_parallel_for(blocks, 1, gemm_blocks, &j);
    } else {
        gemm_block(&j, 0, dim);
    }
    if (then && !j.then) rt_parallel_for(n, min_items, then, ctx);
}

void rt_sgemm_serial(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha,
                     const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc) {
    if (gemm_trivial(transa, transb, m, n, k, alpha, lda, ldb, beta, c, ldc))
        return;
    GemmJob j = {transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, false, NULL, NULL};
    gemm_block(&j, 0, n);
}

void nnq_rt_sgemm_ref(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k,
                      float alpha, const float *a, int32_t lda, const float *b, int32_t ldb,
                      float beta, float *c, int32_t ldc) {
    gemm_check_args(transa, transb, m, n, k, lda, ldb, ldc);
    if (k == 0 || alpha == 0.0f) {
        gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    /* strides of op(A)[i][p] and op(B)[p][j] */
    size_t a_i = transa ? 1 : (size_t)lda, a_p = transa ? (size_t)lda : 1;
    size_t b_p = transb ? 1 : (size_t)ldb, b_j = transb ? (size_t)ldb : 1;
    for (int32_t i = 0; i < m; i++) {
        for (int32_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int32_t p = 0; p < k; p++)
                acc += (double)a[i * a_i + p * a_p] * (double)b[p * b_p + j * b_j];
            float *cij = &c[(size_t)i * ldc + j];
            float v = alpha * (float)acc;
            *cij = beta == 0.0f ? v : v + beta * *cij;
        }
    }
}
