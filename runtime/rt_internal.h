/* rt_internal.h — what the runtime's source files share and nobody else sees.
 *
 * The NnqRun structure lives here; each runtime module owns one group of its fields
 * (run.c: options, trap, blocks, RNG; data.c: data sets; progress.c: progress and
 * metrics; model_file.c: the pending model; checkpoint.c: the checkpoint directory and
 * the declared description and state). Invariants:
 *  - every pointer reachable from an NnqRun is owned by it and released by
 *    nnq_run_free, whether or not an error unwound through the code that made it;
 *  - a module that holds an OS resource (FILE, zlib stream, file descriptor) across a call
 *    that might fail releases it before calling nnq_rt_fail — a longjmp never skips
 *    a close;
 *  - no function here calls exit().
 * Helpers that may fail take the run and report through nnq_rt_fail. */
#ifndef NNQ_RT_INTERNAL_H
#define NNQ_RT_INTERNAL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "nnq_rt.h"

/* isa.c: the vector instruction set nnq's code runs, the widest the CPU has or a narrower
 * one $NNQ_ISA (avx512, avx2, portable) asks for; rt_isa reads it on every call,
 * rt_isa_kernels once (until rt_isa_reset: tests that change $NNQ_ISA). */
typedef enum { RT_ISA_PORTABLE, RT_ISA_AVX2, RT_ISA_AVX512 } RtIsa;
RtIsa rt_isa(void);
RtIsa rt_isa_kernels(void);
void rt_isa_reset(void);

/* Kernels compiled three times, for AVX-512, AVX2 and the baseline, the one
 * rt_isa_kernels() names chosen on each call (conv.c, dwconv.c):
 *     RT_ISA_BODY static void NAME_body(PARAMS) { ... }
 *     RT_ISA_DISPATCH(NAME, (PARAMS), (ARGS))
 * defines NAME(PARAMS), which calls NAME_body inlined into a function of each target.
 * Files whose kernels multiply and add (dwconv.c, and chan.c's loops per vector width)
 * are compiled without FMA contraction (runtime/CMakeLists.txt), so with the same lanes
 * and order of operations every CPU computes the same bits. */
#define RT_ISA_BODY __attribute__((always_inline)) inline
#define RT_ISA_DISPATCH(NAME, PARAMS, ARGS)                                                        \
    __attribute__((target("avx512f"))) static void NAME##_avx512 PARAMS { NAME##_body ARGS; }     \
    __attribute__((target("avx2"))) static void NAME##_avx2 PARAMS { NAME##_body ARGS; }          \
    static void NAME##_base PARAMS { NAME##_body ARGS; }                                          \
    static void NAME PARAMS {                                                                      \
        RtIsa isa_ = rt_isa_kernels();                                                             \
        (isa_ == RT_ISA_AVX512 ? NAME##_avx512 : isa_ == RT_ISA_AVX2 ? NAME##_avx2 : NAME##_base) ARGS; \
    }

/* Lanes of two 8-lane vectors a:b (0-7 from a, 8-15 from b), picked by the constant
 * indices: GCC and clang spell it differently. RT_EVEN8: the even lanes. */
typedef int32_t RtShuf8 __attribute__((vector_size(32)));
#if defined(__clang__)
#define RT_SHUF8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define RT_SHUF8(a, b, ...) __builtin_shuffle(a, b, (RtShuf8){__VA_ARGS__})
#endif
#define RT_EVEN8(a, b) RT_SHUF8(a, b, 0, 2, 4, 6, 8, 10, 12, 14)

/* Asks for the lines of cnt planes of hw floats, sx apart: a channel's planes of several
 * samples, the next channel's while a loop over channels transforms one (winograd.c's
 * transforms of planes side by side, conv.c's of the whole batch). Runs of a few lines a
 * stride apart are too short for the hardware prefetcher to start on. Two threads, AVX2,
 * dw's two transforms (perf samples): -10 to -38% on 128 channels at 16 x 16, -15 to
 * -25% on 256 at 8 x 8, -7 to -13% on 512 at 4 x 4, -19% on 512 at 2 x 2 (the first 4
 * lines of each plane only: about half that; with AVX-512 code 0.78-1.03 of the samples
 * without, two pairs of the first two). They are about 7% of VGG-16's samples, so its
 * step gains a percent or two, below this VM's noise: 0.94, 0.96, 1.00 and 0.98 of the
 * step without in four sets of 8-12 alternated pairs, ResNet-18 1.01. Asked for in
 * im2col's loop over channels (LeNet-5, ResNet-18's stride-2 layers), no faster: LeNet-5's
 * step 1.03 (median of 10 pairs). */
static inline void rt_prefetch_planes(const float *x, int64_t sx, int64_t cnt, int64_t hw) {
    for (int64_t s = 0; s < cnt; s++)
        for (int64_t k = 0; k < hw; k += 16) __builtin_prefetch(x + s * sx + k);
}

/* Short row moves (conv.c, dwconv.c). A convolution's rows are short (LeNet-5's conv2: 8
 * floats; MobileNetV2's 4 x 4 planes: 4), so a call of memcpy per row costs more than the
 * copy; these move 8 floats per step as two 16-byte accesses (one register each on any
 * x86-64: a 32-byte vector type would go through the stack on the baseline ISA), a tail
 * of 4 or more by an overlapping step. */
typedef float F4u __attribute__((vector_size(16), aligned(4))); /* unaligned 4-float accesses */
typedef float F2u __attribute__((vector_size(8), aligned(4)));  /* unaligned 2-float accesses */
typedef float F8u __attribute__((vector_size(32), aligned(4))); /* unaligned 8-float accesses */

static inline void rt_row_copy(float *dst, const float *src, int32_t n) {
    if (n < 4) { /* 2 or 3 by two overlapping 8-byte moves (a loop becomes a call of memcpy) */
        if (n >= 2) {
            F2u a = *(const F2u *)src, b = *(const F2u *)(src + n - 2);
            *(F2u *)dst = a, *(F2u *)(dst + n - 2) = b;
        } else if (n == 1) {
            dst[0] = src[0];
        }
        return;
    }
    int32_t k = 0;
    for (; k + 8 <= n; k += 8) *(F8u *)(dst + k) = *(const F8u *)(src + k);
    if (k + 4 <= n) *(F4u *)(dst + k) = *(const F4u *)(src + k), k += 4;
    if (k < n) *(F4u *)(dst + n - 4) = *(const F4u *)(src + n - 4); /* rewrites equal values */
}

/* A vector of type T read from p (any alignment), as an expression. Inside the clones,
 * vectors go through memory, never as arguments or results: how they are passed differs
 * between the clones (clang refuses such calls), so vector-valued helpers are statement
 * expressions. */
#define RT_VLOAD(T, p)                                                                             \
    ({                                                                                             \
        T v_;                                                                                      \
        memcpy(&v_, (p), sizeof v_);                                                               \
        v_;                                                                                        \
    })

/* Subsystems that can hold something outside the tracked blocks (run.c: rt_on_release). */
#define RT_MAX_RELEASES 8

/* Most channels a data set may have (a sanity bound checked when loading). */
#define RT_DATA_MAX_CHANNELS 4096

typedef struct DataPick DataPick;
typedef struct NnqDataSet {
    char *images_path; /* as resolved on the search path; for messages */
    char *labels_path; /* (CIFAR: the record file(s), the same as images_path) */
    int64_t count;
    int32_t channels, rows, cols; /* each sample is channels x rows x cols, CHW */
    float *pixels;   /* count * channels * rows * cols, sample-major */
    int32_t *labels; /* count */
    int32_t max_label;
    int64_t max_label_at; /* first sample holding max_label */
    /* Per channel c: current pixel = (loaded pixel - shift[c]) / scale[c]; `channels`
     * entries each, in one tracked block. Loaded pixels are byte/255 for byte data,
     * the stored values for float data. */
    double *shift, *scale;
    /* Augmentation set by nnq_rt_data_augment (pad 0, hflip false: none). */
    int32_t aug_pad;
    bool aug_hflip;
    /* The latest batch's samples and draws (data.c), a tracked block of cap_picks. */
    DataPick *picks;
    int64_t cap_picks;
} NnqDataSet;
/* Data set handle ds of the run; fails naming fn when there is none (data.c). */
NnqDataSet *rt_data_get(NnqRun *run, int32_t ds, const char *fn);

/* A line of the program's description (name = what, value) or a state region (name,
 * value = bytes, p) that checkpoints hold. */
typedef struct RtCkptItem {
    const char *name; /* tracked block */
    int64_t value;
    void *p;
} RtCkptItem;

struct NnqRun {
    NnqRunOptions opts; /* strings duplicated, owned by the run */

    /* error trap (run.c) */
    jmp_buf *trap;  /* innermost active nnq_run_invoke, NULL outside */
    bool failed;    /* an error was reported during this run */

    /* what nnq_run_free calls, last registered first (run.c: rt_on_release) */
    void (*releases[RT_MAX_RELEASES])(NnqRun *run);
    int32_t nreleases;

    /* tracked blocks (run.c) */
    void **blocks;
    size_t nblocks, cap_blocks;

    /* xoshiro256** state (run.c) */
    uint64_t rng[4];

    /* data sets (data.c) */
    NnqDataSet *datasets;
    int32_t ndatasets, cap_datasets;

    /* progress and metrics (progress.c) */
    bool bar_enabled; /* progress 1, or -1 with stdout a terminal; never when quiet */
    bool training;    /* between nnq_rt_train_begin and nnq_rt_train_end */
    char *model_name;
    int32_t epochs;
    int64_t iters_per_epoch;
    double train_start, epoch_start, last_draw;
    double iters_end; /* when the last iteration of the current epoch ended */
    double epoch_test_soft, epoch_test_hard; /* < 0: none this epoch */
    int bar_width;  /* characters of the live bar now on the terminal line, 0: none */
    FILE *metrics;  /* open on metrics_path + ".tmp", NULL when none or finished */
    char *metrics_tmp;
    char *metrics_history; /* --resume: the earlier run's metrics (PATH.tmp, else PATH),
                              malloc'd, until the checkpoint's epoch cuts it */

    /* pending model (model_file.c) */
    char *pending_model;
    unsigned char *model_buf; /* serialized tensors added since nnq_rt_model_begin */
    size_t model_len, model_cap;
    int32_t model_ntensors;
    char **model_names; /* names added, for the duplicate check */
    const unsigned char *model_arch; /* nnq_rt_model_arch: the record up to its ops (the
                                        program's constant), NULL: none (version 1) */
    int64_t model_arch_len;
    int32_t model_arch_ds;

    /* files written whole and kept as PATH.tmp until nnq_files_commit renames them all
     * (binfile.c: nnq_files_begin); tracked strings, a malloc'd array */
    bool files_deferred;
    struct RtPendingFile {
        const char *tmp, *path;
    } *files_pending;
    int32_t nfiles_pending, cap_files_pending;
    int files_lock; /* 1 + the descriptor of the set's directory, locked (flock); 0: none */

    /* the process group (mpi.c): rank 0 of 1 without MPI */
    int32_t rank, nranks;

    /* checkpoints (checkpoint.c) */
    char *ckpt_dir; /* the program's checkpoint directory (tracked); NULL: none */
    int ckpt_lock;  /* 1 + a descriptor of ckpt_dir, locked for the run (flock); 0: none */
    RtCkptItem *ckpt_desc, *ckpt_state; /* declaration order; malloc'd arrays */
    int32_t ckpt_ndesc, ckpt_cap_desc, ckpt_nstate, ckpt_cap_state;
    int32_t *ckpt_names, ckpt_names_cap; /* the state's names, hashed: 1 + an index, 0 empty */
};

/* run.c */
/* A subsystem that holds something the tracked blocks do not (a malloc'd table, a FILE,
 * signal handlers, the MPI job) registers its release when it first takes it; nnq_run_free
 * calls each registered function once, last registered first. Registering again is a
 * no-op. The subsystems depend on run.c, never the other way round. */
void rt_on_release(NnqRun *run, void (*fn)(NnqRun *run));

/* A tracked 64-byte aligned block (zeroed when asked); fails the run on bad sizes or
 * when memory is exhausted. rt_alloc_try returns NULL instead of failing, for callers
 * that must release something first. */
void *rt_alloc_block(NnqRun *run, int64_t bytes, bool zero);
void *rt_alloc_try(NnqRun *run, int64_t bytes, bool zero);

/* cgroup.c: the lowest memory limit of a process's cgroup and its ancestors, or -1 where
 * none is set or readable (nnq_memory_available: "/proc/self/cgroup" under
 * "/sys/fs/cgroup"; tests give files of their own). proc_cgroup's lines are
 * "ID:CONTROLLERS:PATH": cgroup v2's "0::PATH" gives ROOT/PATH/memory.max, v1's memory
 * controller ROOT/memory/PATH/memory.limit_in_bytes ("max", or near 2^63 there: no
 * limit). The limit itself, not what is left under it: the usage counts page cache the
 * kernel would reclaim. */
int64_t rt_cgroup_limit(const char *proc_cgroup, const char *root);
/* cgroup.c: the CPUs the CPU quotas of the same cgroups allow, rounded up; 0: no quota.
 * (v2 cpu.max, v1 ROOT/cpu,cpuacct/PATH/cpu.cfs_quota_us over cpu.cfs_period_us.) */
int rt_cgroup_cpus(const char *self_cgroup, const char *fs_root);
/* nnq_cpus_usable, and in *bound (may be NULL) whether the affinity mask holds fewer
 * CPUs than are online (a launcher bound the process). */
int rt_cpus_usable(bool *bound);
/* isa.c: the first feature of x86-64 level `level` (0-2, nnq_isa_level) missing from the
 * features in `have` (one bit each, isa.c's F_ order: avx2 fma bmi1 bmi2 f16c movbe lzcnt
 * avx512f bw cd dq vl), or NULL. */
const char *rt_isa_missing(int level, unsigned have);
char *rt_strdup(NnqRun *run, const char *s);
uint64_t rt_rng_next(NnqRun *run);
uint64_t rt_rng_below(NnqRun *run, uint64_t bound); /* uniform in [0, bound), bound > 0 */
double rt_now(void); /* monotonic seconds */

/* parallel.c: fn(ctx, begin, end) over contiguous parts of [0, n), at least min_items
 * items per part, on up to the set number of threads (the caller's included); returns
 * when all parts are done. fn must not fail (no nnq_rt_fail); called from inside a part,
 * it runs the whole range on the calling thread. */
typedef void (*RtRangeFn)(void *ctx, int64_t begin, int64_t end);
void rt_parallel_for(int64_t n, int64_t min_items, RtRangeFn fn, void *ctx);
/* threads <= 0: every CPU this process may use (nnq_cpus_usable). */
void rt_parallel_set_threads(int threads);
/* The threads a job may use, the caller included (after rt_parallel_set_threads). */
int rt_parallel_threads(void);
/* How long a waiting thread spins before it sleeps, in ns: 0 where the pool has more
 * threads than the process has CPUs (nnq_cpus_usable), else 0.2 ms. */
int64_t rt_parallel_spin_ns(void);
/* cap > 0: every job splits as if its min_items were at most cap (tests use 1 to split
 * tiny jobs); 0: as asked. */
void rt_parallel_set_min_items_cap(int64_t cap);
/* Makes OpenBLAS single-threaded (once): the pool owns the cores. */
void rt_parallel_init(void);
/* Reserves per_thread floats of scratch for each of the set threads and `shared` floats
 * shared by a job's parts (kept when already as large); false when out of memory.
 * rt_thread_scratch returns the calling thread's, rt_shared_scratch the shared one; asking
 * for more than was reserved is a code generator bug (abort). */
bool rt_parallel_reserve(int64_t per_thread, int64_t shared);
float *rt_thread_scratch(int64_t floats);
float *rt_shared_scratch(int64_t floats);

/* gemm.c: nnq_rt_sgemm, then then(ctx, lo, hi) over C's columns [lo, hi) once they are final:
 * where the product is cut by columns, on each block's thread right after its block
 * (its columns still in that core's cache); else over all n columns on the pool, in
 * parts of at least min_items, after the whole product. then may be NULL. */
void rt_sgemm_then(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                   int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc, RtRangeFn then,
                   int64_t min_items, void *ctx);
/* gemm.c: nnq_rt_sgemm's contract, on the calling thread as one OpenBLAS call. */
void rt_sgemm_serial(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha,
                     const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc);

/* mpi.c: joins the MPI job when launched by mpirun & co. (sets run->rank, run->nranks;
 * quiets ranks > 0; registers the release: a failed run ends the whole job, MPI_Abort,
 * so no rank waits for it); the default thread count under MPI (0: every CPU); the largest of
 * each rank's v (v itself without MPI). Collectives: every rank must call them alike. */
void rt_mpi_init(NnqRun *run);
int32_t rt_mpi_threads(void);
int32_t rt_mpi_max_i32(NnqRun *run, int32_t v);
void rt_mpi_barrier(NnqRun *run);
/* Fails on every rank unless every rank passes the same value (what: a noun for the
 * message, where: a file or name). */
void rt_mpi_agree(NnqRun *run, uint64_t value, const char *what, const char *where);

/* conv_dnnl.c: the convolutions oneDNN computes for conv.c (which shapes: its header).
 * rt_dnnl_conv returns the kernels of op on chunks of g samples, the last chunk of `tail`
 * (0: none), made on first use; NULL when the rule leaves the op to conv.c or oneDNN has
 * no implementation. Call it outside pool jobs (it may make kernels); the rest may run on
 * any pool thread. */
typedef enum { RT_CONV_FWD, RT_CONV_DX, RT_CONV_DW } RtConvOp;
typedef struct RtDnnlConv RtDnnlConv;
/* Which shapes a kernel library (oneDNN, LIBXSMM) computes: its rule (the default), none,
 * or all it implements (bench/conv_bench.c measures every path on every shape). */
typedef enum { RT_LIB_RULE, RT_LIB_NEVER, RT_LIB_ALWAYS } RtLibMode;
void rt_dnnl_set_mode(RtLibMode mode);
/* oneDNN runs AVX-512 code on this CPU (its rule takes more shapes then). */
bool rt_dnnl_wide(void);
/* conv_dnnl.c: oneDNN's version, "2.6.3" (nnq_describe_libraries). */
const char *rt_dnnl_version(void);
bool rt_dnnl_serves(RtConvOp op, int32_t c, int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad,
                    int32_t oh, int32_t ow);
const RtDnnlConv *rt_dnnl_conv(RtConvOp op, int32_t g, int32_t tail, int32_t c, int32_t h, int32_t w, int32_t o,
                               int32_t kh, int32_t kw, int32_t stride, int32_t pad);
/* Floats of per-thread scratch one chunk needs; floats of the weights in oneDNN's layout
 * (a multiple of 16, so such buffers side by side stay 64-byte aligned). */
int64_t rt_dnnl_thread_floats(const RtDnnlConv *k);
int64_t rt_dnnl_weights_floats(const RtDnnlConv *k);
/* w (OIHW) into oneDNN's layout wk for the forward and dx kernels; dw's wk back to OIHW. */
void rt_dnnl_weights_in(const RtDnnlConv *k, const float *w, float *wk);
void rt_dnnl_weights_out(const RtDnnlConv *k, const float *wk, float *w);
/* One chunk of cnt (g or tail) samples on the calling thread, NCHW pointers at its first
 * sample: forward a = x, b = wk, out = y; dx a = dy, b = wk, out = dx; dw a = x, b = dy,
 * out = dw in oneDNN's layout (overwritten). scratch: rt_dnnl_thread_floats, 64-byte
 * aligned. */
void rt_dnnl_chunk(const RtDnnlConv *k, int64_t cnt, const float *a, const float *b, float *out, float *scratch);
/* oneDNN's sgemm (row-major, gemm.c's contract) on the calling thread, OpenMP held to one
 * thread there. */
void rt_dnnl_sgemm(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                   int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc);
/* gemm.c: which library computes its products: oneDNN's sgemm where oneDNN runs AVX-512
 * code and a product is not small, or where OpenBLAS's kernels are narrower than the CPU,
 * gemm.c's dot kernel for small outputs (the rule), OpenBLAS (never), oneDNN's (always);
 * rt_gemm_dnnl: whether oneDNN computes an m x n x k product now; rt_gemm_dnnl_sized: the
 * same where OpenBLAS's kernels fit the CPU (the rule by ISA and size alone);
 * rt_blas_fits_cpu: whether the kernels OpenBLAS chose are as wide as rt_isa()'s level;
 * rt_blas_runs_here: whether this CPU runs them at all (false, with a message in err,
 * where $OPENBLAS_CORETYPE names wider ones than it has). */
void rt_gemm_set_mode(RtLibMode mode);
bool rt_gemm_dnnl(int32_t m, int32_t n, int32_t k);
bool rt_gemm_dnnl_sized(int32_t m, int32_t n, int32_t k);
/* rt_gemm_dnnl for a block of a dense layer's product (nnq_rt_sgemm), which with AVX2 code
 * also gives oneDNN those of 2 MFLOP or more whose op(A) is A. */
bool rt_gemm_dnnl_dense(int32_t transa, int32_t m, int32_t n, int32_t k);
bool rt_blas_fits_cpu(void);
bool rt_blas_runs_here(char *err, size_t errlen);
/* gemm.c: one line saying which libraries (and OpenBLAS's kernels) the products go to,
 * for --profile's report. */
void rt_gemm_describe(FILE *out);
/* gemm.c's small-output products (its header): whether the rule gives it this product, and
 * the kernel itself, C [m x n] = beta C + A B^T (A m x k, B n x k, row-major). */
bool rt_gemm_dot(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha);
/* Vector lanes of a kernel family (isa.c): `lanes` (16 AVX-512, 8 AVX2 + FMA, 4 SSE2), or
 * for 0 the widest rt_isa() allows; 0 where it does not allow it or lanes is none of
 * those. */
int rt_cpu_lanes(int lanes);
/* Which kernel rt_sgemm_nt_small runs: of 16 lanes (AVX-512), 8 (AVX2 + FMA) or 4 (SSE2),
 * 0: the widest this CPU runs (the default); false, and no change, where the CPU lacks it. */
bool rt_gemm_dot_lanes(int lanes);
/* Which loops nnq_rt_chan_reduce runs: 16 lanes as one vector (AVX-512), two (AVX2) or
 * four (SSE2), the same bits; 0: the widest this CPU runs (the default); false, and no
 * change, where the CPU lacks it. */
bool rt_chan_lanes(int lanes);
void rt_sgemm_nt_small(int32_t m, int32_t n, int32_t k, const float *a, int32_t lda, const float *b, int32_t ldb,
                       float beta, float *c, int32_t ldc);

/* conv_xsmm.c: the per-sample products LIBXSMM computes for conv.c where oneDNN does not
 * (which shapes, and each op's operands: its header). rt_xsmm_conv fills k with op's
 * kernels (LIBXSMM's, made on the first dispatch of a shape; call it outside pool jobs)
 * and returns true; false, k zeroed, when the rule leaves the op to OpenBLAS or LIBXSMM
 * generates no code for it. rt_xsmm_sample and rt_xsmm_dw_piece run on any thread: c = a b,
 * or c += a b with accumulate (dw). */
typedef void (*RtXsmmKernel)(const float *a, const float *b, float *c, ...); /* libxsmm_smmfunction */
typedef struct RtXsmmConv {
    RtXsmmKernel set, add;           /* c = a b, c += a b (dw); set NULL: not served */
    RtXsmmKernel tail_set, tail_add; /* by pieces: the same for a sample's last, shorter piece */
    int32_t m, piece;                /* forward, dx: a sample's m (positions), cut in pieces of `piece` */
} RtXsmmConv;
enum { RT_XSMM_DW_POSITIONS = 16 }; /* dw's pieces of positions, but for 1 x 1 stride-1 unpadded layers */
enum { RT_XSMM_M_PIECE = 128 };     /* the forward's and dx's pieces of positions (m) */
void rt_xsmm_set_mode(RtLibMode mode);
bool rt_xsmm_serves(RtConvOp op, int32_t c, int32_t o, int32_t kh, int32_t kw, int32_t stride, int32_t pad,
                    int32_t oh, int32_t ow);
bool rt_xsmm_conv(RtConvOp op, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh, int32_t kw, int32_t stride,
                  int32_t pad, RtXsmmConv *k);
void rt_xsmm_sample(const RtXsmmConv *k, bool accumulate, const float *a, const float *b, float *c);
/* dw's m where the sample is its own columns: O rounded up to 8 (conv_xsmm.c's header). */
int32_t rt_xsmm_dw_m(int32_t o);
/* dw (+)= pt dy for a piece of `positions` positions (conv_xsmm.c's header). */
void rt_xsmm_dw_piece(const RtXsmmConv *k, bool accumulate, int64_t positions, const float *pt, const float *dy,
                      float *dw);

/* winograd.c: 3 x 3, stride-1, pad-1 convolutions by F(m x m, 3 x 3), m = 2 or 4 (its
 * header), for conv.c's chunks. rt_wino_serves: the rule (or the mode set) for products
 * over g samples' tiles; rt_wino_m: the tiles' m for op on such layers;
 * rt_wino_tiles: a sample's tiles. rt_wino_weights: V for rows [r0, r1) of w [o, c, 3, 3]
 * (the filters; flip: dx's, rows the channels, from the filters turned and their channels
 * swapped), of
 * rt_wino_weights_floats; rt_wino_chunk: cnt <= g samples of x [cnt, cin, h, w] into y
 * [cnt, cout, h, w] on the calling thread; rt_wino_dw_chunk: a chunk's dV [(m + 2)^2, o, c] (+)=
 * the products of its transformed dy and x; rt_wino_dw_out: dw for filters [o0, o1) from
 * the slots' dV summed in order (into slot 0's). Scratch: rt_wino_thread_floats(c, o, h, w, g, m).
 * V and dV hold their (m + 2)^2 points rt_wino_plane(c, o) floats apart (C O and a pad), U, M
 * and DY theirs rt_wino_pstride(rows, ld) (rows of ld and a pad). */
void rt_wino_set_mode(RtLibMode mode);
bool rt_wino_serves(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w, int32_t kh, int32_t kw,
                    int32_t stride, int32_t pad, int64_t g);
int rt_wino_m(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w);
int64_t rt_wino_tiles(int32_t h, int32_t w, int m);
/* Whether F(m x m)'s transforms read planes of width w side by side (several samples'). */
bool rt_wino_side_by_side(int32_t w, int m);
int64_t rt_wino_plane(int32_t c, int32_t o);
int64_t rt_wino_pstride(int64_t rows, int64_t ld);
int64_t rt_wino_weights_floats(int32_t c, int32_t o, int m);
int64_t rt_wino_thread_floats(int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t g, int m);
void rt_wino_weights(const float *w, int32_t o, int32_t c, bool flip, int32_t r0, int32_t r1, int m, float *v);
void rt_wino_chunk(const float *x, int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t cnt, int64_t g, int m,
                   const float *v, float *y, float *scratch);
void rt_wino_dw_chunk(const float *x, const float *dy, int32_t c, int32_t o, int32_t h, int32_t w, int64_t cnt,
                      int64_t g, int m, bool accumulate, float *dv, float *scratch);
void rt_wino_dw_out(float *dv, int64_t slots, int32_t o, int32_t c, int32_t o0, int32_t o1, int m, float *dw);
/* The whole batch at once on planes rt_wino_batch names (a sample's planes side by side):
 * one channel's cnt planes into U's (or DY's) row, or out of M's; a thread's scratch for
 * them: rt_wino_rows_floats. */
bool rt_wino_batch(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w);
int64_t rt_wino_rows_floats(int32_t h, int32_t w, int m, int64_t cnt);
void rt_wino_rows_in(const float *x, int64_t sx, int64_t cnt, int32_t h, int32_t w, int m, float *u, int64_t xi_ld,
                     bool fresh, float *scratch);
void rt_wino_rows_dy(const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, int m, float *d, int64_t xi_ld,
                     bool fresh, float *scratch);
void rt_wino_rows_out(const float *m, int64_t xi_ld, int64_t cnt, int32_t h, int32_t w, int tm, float *y, int64_t sy);
/* conv.c: whether a layer's op runs by Winograd's F(m x m, 3 x 3) on this CPU (its chunks
 * given to rt_wino_serves). */
bool rt_conv_wino(RtConvOp op, int32_t n, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh, int32_t kw,
                  int32_t stride, int32_t pad);

/* binfile.c: little-endian binary files (model files, checkpoints). */
uint32_t rt_le32(const unsigned char *p);
uint64_t rt_le64(const unsigned char *p);
void rt_put_le32(unsigned char *p, uint32_t v);
void rt_put_le64(unsigned char *p, uint64_t v);
/* The whole regular file PATH in a malloc'd buffer of *size bytes (at least one byte
 * allocated), or NULL with "cannot open WHAT 'PATH': ..." / "cannot read WHAT 'PATH': ..."
 * in err. */
unsigned char *rt_slurp(const char *path, const char *what, size_t *size, char *err, size_t errlen);

/* Writes PATH.tmp, CRC-32 of everything written appended by the commit, which fsyncs,
 * renames over PATH and fsyncs the directory; on failure removes the .tmp and fails the
 * run with "WHAT 'PATH': STEP of 'PATH.tmp' failed: ...". Inside a file set
 * (nnq_files_begin) the commit stops before the rename, which nnq_files_commit does. */
typedef struct RtWriter {
    NnqRun *run;
    const char *path, *tmp, *what; /* what: "cannot save model to", ... */
    int fd, err;
    const char *step; /* the step that failed; NULL while none has */
    uLong crc;
    bool no_crc;      /* set after rt_wr_open: commit appends no CRC (files of other formats) */
    bool defer;       /* the run's file set is open (nnq_files_begin): commit leaves PATH.tmp */
    bool stream;      /* PATH is written in place (nnq_output_dest: NNQ_DEST_STREAM), tmp unused */
} RtWriter;
void rt_wr_open(NnqRun *run, RtWriter *w, const char *path, const char *what);
void rt_wr_bytes(RtWriter *w, const void *p, size_t n);
void rt_wr_u32(RtWriter *w, uint32_t v);
void rt_wr_u64(RtWriter *w, uint64_t v);
void rt_wr_commit(RtWriter *w);

/* PATH.tmp, the name a writer of PATH writes first, into tmp, which holds strlen(path)
 * + 5 bytes (NULL: none, returned as is: rt_tmp_name(malloc(...), path) passes on a
 * failed allocation). */
char *rt_tmp_name(char *tmp, const char *path);
/* PATH.tmp (tmp) opened for writing, created if missing, locked (flock) and emptied: the
 * descriptor, or -1 with errno. Writers of one PATH in several processes take turns on
 * it: wait, until the lock is free, and then on the file PATH.tmp names again when the
 * one waited on was renamed or removed meanwhile; else -1 with EWOULDBLOCK while another
 * process holds it. Where the file system has no locks, unlocked. The lock lasts until
 * the descriptor is closed: rename or remove the .tmp before. */
int rt_open_tmp_locked(const char *tmp, bool wait);
/* An exclusive lock (flock) on directory DIR, held until rt_dir_unlock: 1 + its
 * descriptor; 0 where DIR cannot be opened (unlocked: what is wrong with it shows when it
 * is written); -1 while another process holds it, unless wait, which waits for it after
 * a note ("waiting for another process writing into 'DIR'"). Where the file system has
 * no locks, unlocked. Checkpoint directories (one run each) and file sets (in turns). */
int rt_dir_lock(const char *dir, bool wait);
void rt_dir_unlock(int *lock);

/* Reads [pos, end) of a file in memory; a failure writes "'PATH': KIND: ..." (or
 * "KIND: ..." without a path) to err and returns false. */
typedef struct RtReader {
    const unsigned char *p;
    size_t pos, end; /* end: where the CRC starts */
    const char *path, *kind; /* kind: "malformed model file", "is corrupt" */
    char *err;
    size_t errlen;
} RtReader;
void rt_rd_error(RtReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool rt_rd_need(RtReader *r, uint64_t n, const char *what);
bool rt_rd_u32(RtReader *r, uint32_t *v, const char *what);
bool rt_rd_u64(RtReader *r, uint64_t *v, const char *what);
/* A length-prefixed string of at most max bytes, in place (*s points into the file). */
bool rt_rd_str(RtReader *r, const char **s, uint32_t *len, uint32_t max, const char *what);
/* A name as nnq writes it into its files (model and tensor names): 1 to max bytes, each a
 * printable ASCII character other than the space; else false with the message. */
bool rt_rd_name(RtReader *r, const char **s, uint32_t *len, uint32_t max, const char *what);
/* Whether s is such a name (the writers' check: nnq writes no file its readers refuse). */
bool rt_is_name(const char *s, size_t len, size_t max);
/* At most `max` bytes of s[0, len) for a message, into out (cap >= 4 * max + 4): every
 * byte outside printable ASCII written \xNN, "..." when cut. Returns out. */
const char *rt_printable(const void *s, size_t len, size_t max, char *out, size_t cap);

/* data.c: the run-owned path of `name` (a file, or a directory when want_dir) on the data
 * search path (data.c's header); fails listing every candidate tried. `what` names it in
 * the messages (NULL: "data file" or "data directory"). */
char *rt_data_resolve(NnqRun *run, const char *name, bool want_dir, const char *what);
/* data.c: "dir/name" + suffix (no second '/' when dir ends in one), a tracked block. */
char *rt_path_join(NnqRun *run, const char *dir, const char *name, const char *suffix);

/* npy.c: a file read through zlib (gzip-compressed, one member or several, or plain).
 * The functions write any error into err (errlen bytes, a message naming path) and
 * return false; the caller closes the file (rt_zf_close) before it fails the run.
 * Set path, err and errlen; rt_zf_open sets the rest. */
typedef struct RtZFile {
    const char *path;
    char *err;
    size_t errlen;
    FILE *fp;
    unsigned char *in;  /* bytes read from fp, not yet used: zs.next_in, zs.avail_in */
    z_stream zs;        /* inflating when gzip */
    bool gzip, eof, member_done;
} RtZFile;
/* Opens f->path; what names the file in the message ("cannot open data file 'P': ...").
 * On false nothing is left open. */
bool rt_zf_open(RtZFile *f, const char *what);
/* Closes what rt_zf_open opened. */
void rt_zf_close(RtZFile *f);
/* Reads up to n bytes; *got = bytes read. false on a read or decompression error. A
 * short read at the end (a gzip stream that stops early included) is not an error here:
 * the caller reports it as truncation with the counts. Bytes after the last gzip member
 * that do not start another are ("'P' has N bytes after its gzip data ..."). */
bool rt_zf_read(RtZFile *f, void *buf, size_t n, size_t *got);
/* After the payload: any further byte is an error ("... unexpected bytes after WHAT"). */
bool rt_zf_expect_end(RtZFile *f, const char *what);
/* Can the file hold `want` bytes of data after `offset` (the header already read)?
 * Asked before the data's buffer is allocated: a plain file's size after it; for gzip,
 * at most 1032 bytes of data per compressed byte (deflate's largest ratio), so that a
 * 40-byte file whose header declares gigabytes is refused before they are allocated.
 * False with "'PATH' is truncated: expected WANT bytes of WHAT, found N" (plain) or
 * "..., more than its N compressed bytes can hold" (gzip); true where the size is
 * unknown (stat fails: the read loop will tell). */
bool rt_zf_holds(RtZFile *f, uint64_t offset, uint64_t want, const char *what);
/* "'PATH' is truncated: expected WANT bytes of WHAT, found FOUND" in f->err; false (the
 * size check above and the read loops after it say it alike). */
bool rt_zf_truncated(RtZFile *f, uint64_t want, const char *what, uint64_t found);

/* npy.c: NumPy .npy files (format 1.0, 2.0 and 3.0), read through an open RtZFile. */
#define RT_NPY_MAX_DIMS 32 /* the parser refuses more */
typedef struct RtNpyHeader {
    char descr[32]; /* the dtype as written, for messages */
    char kind;      /* 'u', 'i' or 'f'; 0: another dtype (callers refuse it) */
    int size;       /* bytes per element (with kind) */
    bool big;       /* the dtype says big-endian ('>', or '=' on a big-endian host) */
    bool swapped;   /* multi-byte elements not in little-endian order (callers refuse them) */
    bool fortran;
    int ndim;
    int64_t shape[RT_NPY_MAX_DIMS];
    int64_t data_offset; /* bytes before the array: magic, version, length, header */
} RtNpyHeader;
/* Reads the magic, version, header length and header; parses the header dictionary and
 * decodes its dtype. false on anything malformed or truncated, and on Fortran order. */
bool rt_npy_header(RtZFile *f, RtNpyHeader *h);
/* "(60000, 3, 32, 32)", with numpy's one-element comma "(10,)"; cut to cap bytes
 * (RT_NPY_SHAPE_TEXT bytes hold any shape). */
#define RT_NPY_SHAPE_TEXT (4 + RT_NPY_MAX_DIMS * 24)
void rt_npy_shape_text(const RtNpyHeader *h, char *buf, size_t cap);
/* For a plain (not gzip) file: false, reporting truncation, when it is too short for
 * `total` elements (a lying shape reads as truncation, not as an out-of-memory error);
 * true when it is long enough or cannot be told before reading. */
bool rt_npy_check_size(RtZFile *f, const RtNpyHeader *h, uint64_t total);
/* Reads `total` elements (h->kind set; total * h->size must not overflow) in 64 KiB
 * chunks, handing each run of whole elements to put(ctx, f, first, p, n): elements
 * first..first+n from bytes p; put returns false (with a message in f->err) to stop.
 * Reports truncation with the byte counts, then requires the end of the file (`what`
 * names the payload: "4 images"). */
typedef bool (*RtNpyPut)(void *ctx, RtZFile *f, uint64_t first, const unsigned char *p, size_t n);
bool rt_npy_read_data(RtZFile *f, const RtNpyHeader *h, uint64_t total, const char *what,
                      RtNpyPut put, void *ctx);

/* data.c, progress.c, model_file.c, checkpoint.c: release what the module holds. `failed` says
 * whether the run ended in an error (temporary files are then removed). */
bool rt_progress_open(NnqRun *run); /* nnq_run_new: opens the metrics file */
void rt_progress_interrupt(NnqRun *run); /* ends a live bar line before an error */

/* progress.c: after a checkpoint of `epoch` finished epochs is restored, the metrics
 * file starts with the earlier run's epoch lines 1..epoch (no line twice). */
void rt_progress_resumed(NnqRun *run, int64_t epoch);
/* progress.c: closes and renames the metrics file now (an interrupted run keeps the
 * record of its finished epochs); fails the run on an I/O error. */
void rt_progress_keep_metrics(NnqRun *run);
/* checkpoint.c: called at the end of every epoch; after SIGINT, SIGTERM or SIGHUP (handled only
 * while a program with a checkpoint directory trains) saves a checkpoint, keeps the
 * metrics and fails the run, saying how to resume. */
void rt_checkpoint_epoch_done(NnqRun *run, int32_t epoch);
/* checkpoint.c: true when some float state (weights, hard weights, aux, optimizer
 * moments, batch-norm statistics) holds a non-finite value; `what` then names the first
 * tensor in update order (moments, aux, weights, the rest) and the first bad element. */
bool rt_state_nonfinite(const NnqRun *run, char *what, size_t len);

#endif
