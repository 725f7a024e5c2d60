/* run.c — the NnqRun: options, the error trap, tracked memory and the random generator;
 * the memory a program's buffers may take (nnq_buffers_fit).
 *
 * Invariants:
 *  - nnq_rt_fail prints exactly one "nnqc: error: ..." line to stderr and longjmps to
 *    the innermost active nnq_run_invoke, which returns 1. Calling it outside
 *    nnq_run_invoke is a bug in the caller: the message is printed and the process
 *    aborts (the library never calls exit()).
 *  - Every block from nnq_rt_alloc / rt_alloc_block is 64-byte aligned and lives until
 *    nnq_run_free; blocks are never freed one by one.
 *  - The generator is xoshiro256** seeded through splitmix64, so a seed fixes every
 *    number drawn afterwards, on every platform. A new run is seeded with
 *    options.seed when that is >= 0, else with 0; nnq_rt_seed reseeds.
 *  - Random draws use only the run's own state: two runs never share a stream.
 *  - The subsystems (data, progress, checkpoints, model files, MPI) register what they
 *    must release with rt_on_release; nnq_run_free calls those, last registered first,
 *    then frees the tracked blocks. run.c names none of them. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rt_internal.h"

#define RT_TWO_PI 6.283185307179586476925286766559

/* ---- options, lifetime, trap ---- */

void nnq_run_options_default(NnqRunOptions *opts) {
    memset(opts, 0, sizeof *opts);
    opts->epochs = 0;
    opts->seed = -1;
    opts->threads = 0;
    opts->progress = -1;
    opts->quiet = false;
}

static char *run_dup_option(const char *s, bool *ok) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

static void run_seed_state(NnqRun *run, uint64_t seed) {
    /* splitmix64 expands the seed into the 256-bit xoshiro state (never all zero). */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        run->rng[i] = z ^ (z >> 31);
    }
}

void nnq_run_prepare(void) { rt_parallel_init(); }

NnqRun *nnq_run_new(const NnqRunOptions *opts) {
    char why[256];
    if (!rt_blas_runs_here(why, sizeof why)) {
        fprintf(stderr, "nnq: error: %s\n", why);
        return NULL;
    }
    NnqRun *run = calloc(1, sizeof *run);
    if (!run) {
        fprintf(stderr, "nnqc: error: out of memory creating the run\n");
        return NULL;
    }
    if (opts)
        run->opts = *opts;
    else
        nnq_run_options_default(&run->opts);
    bool ok = true;
    run->opts.data_dir = run_dup_option(run->opts.data_dir, &ok);
    run->opts.base_dir = run_dup_option(run->opts.base_dir, &ok);
    run->opts.metrics_path = run_dup_option(run->opts.metrics_path, &ok);
    run->opts.resume_dir = run_dup_option(run->opts.resume_dir, &ok);
    if (!ok) {
        fprintf(stderr, "nnqc: error: out of memory creating the run\n");
        nnq_run_free(run);
        return NULL;
    }
    run->epoch_test_soft = run->epoch_test_hard = -1;
    run_seed_state(run, run->opts.seed >= 0 ? (uint64_t)run->opts.seed : 0);
    rt_mpi_init(run);
    rt_parallel_init();
    rt_parallel_set_threads(run->opts.threads > 0 ? run->opts.threads : rt_mpi_threads());
    if (!rt_progress_open(run)) {
        nnq_run_free(run);
        return NULL;
    }
    return run;
}

/* Denormal floats are flushed to zero while generated code runs: with a large annealed
 * beta, softmax and tanh projections produce values far below FLT_MIN, and arithmetic
 * on denormals is many times slower on x86 (a 5x slower epoch was measured). Flushing
 * them changes results only below 1.2e-38. The caller's mode is restored. */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define RT_FTZ_DAZ 0x8040u
static unsigned rt_fp_enter(void) {
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | RT_FTZ_DAZ);
    return old;
}
static void rt_fp_leave(unsigned old) { _mm_setcsr(old); }
#else
static unsigned rt_fp_enter(void) { return 0; }
static void rt_fp_leave(unsigned old) { (void)old; }
#endif

int nnq_run_invoke(NnqRun *run, int (*entry)(NnqRun *run)) {
    jmp_buf trap;
    jmp_buf *volatile outer = run->trap;
    volatile unsigned fp = rt_fp_enter();
    if (setjmp(trap)) {
        run->trap = outer;
        rt_fp_leave(fp);
        return 1;
    }
    run->trap = &trap;
    int rc = entry(run);
    run->trap = outer;
    rt_fp_leave(fp);
    return rc;
}

void nnq_run_free(NnqRun *run) {
    if (!run)
        return;
    while (run->nreleases > 0) /* the subsystems', last registered first */
        run->releases[--run->nreleases](run);
    for (size_t i = 0; i < run->nblocks; i++)
        free(run->blocks[i]);
    free(run->blocks);
    free((char *)run->opts.data_dir);
    free((char *)run->opts.base_dir);
    free((char *)run->opts.metrics_path);
    free((char *)run->opts.resume_dir);
    free(run);
}

void nnq_rt_fail(NnqRun *run, const char *fmt, ...) {
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (run)
        rt_progress_interrupt(run);
    fflush(stdout);
    if (run && run->nranks > 1)
        fprintf(stderr, "nnqc: error: rank %d: %s\n", run->rank, msg);
    else
        fprintf(stderr, "nnqc: error: %s\n", msg);
    fflush(stderr);
    if (!run || !run->trap) {
        fprintf(stderr, "nnqc: internal error: nnq_rt_fail called outside nnq_run_invoke\n");
        abort();
    }
    run->failed = true;
    longjmp(*run->trap, 1);
}

void rt_on_release(NnqRun *run, void (*fn)(NnqRun *run)) {
    for (int32_t i = 0; i < run->nreleases; i++)
        if (run->releases[i] == fn) return;
    assert(run->nreleases < RT_MAX_RELEASES); /* a fixed set of subsystems */
    run->releases[run->nreleases++] = fn;
}

/* ---- memory ---- */

void *rt_alloc_try(NnqRun *run, int64_t bytes, bool zero) {
    if (bytes < 0 || (uint64_t)bytes > ((uint64_t)1 << 46))
        return NULL;
    if (run->nblocks == run->cap_blocks) {
        size_t cap = run->cap_blocks ? run->cap_blocks * 2 : 64;
        void **blocks = realloc(run->blocks, cap * sizeof *blocks);
        if (!blocks)
            return NULL;
        run->blocks = blocks;
        run->cap_blocks = cap;
    }
    /* aligned_alloc wants a size that is a multiple of the alignment; 0 becomes 64 so
     * every call returns a distinct valid pointer. */
    size_t size = ((size_t)bytes + 63) & ~(size_t)63;
    if (size == 0)
        size = 64;
    void *p = aligned_alloc(64, size);
    if (!p)
        return NULL;
    if (zero)
        memset(p, 0, size);
    run->blocks[run->nblocks++] = p;
    return p;
}

/* In a virtual machine every page fault may exit to the hypervisor: faulting in
 * MobileNetV2's 1.7 GB page by page made its first step 2.4 s longer than populating the
 * pages in one call did (docs/speed-log.md). Whole pages only: [p, p + bytes) may share
 * its first and last pages with other data. Failure (an older kernel, no memory left)
 * leaves the pages to be faulted in as before. */
void nnq_prefault(void *p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t e = ((uintptr_t)p + bytes) & ~(uintptr_t)(page - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
#else
    (void)p, (void)bytes;
#endif
}

/* The value of `key` (kB) in /proc/meminfo, in bytes, or -1. */
static int64_t meminfo_bytes(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%lld", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

/* meminfo's `mem` + `swap`; without /proc, the machine's physical memory. */
static int64_t memory_and_swap(const char *mem, const char *swap) {
    int64_t m = meminfo_bytes(mem), s = meminfo_bytes(swap);
    if (m < 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        return pages > 0 && page > 0 ? (int64_t)pages * page : -1;
    }
    return s > 0 ? m + s : m;
}

int64_t nnq_memory_total(void) {
    return memory_and_swap("MemTotal", "SwapTotal");
}

int64_t nnq_memory_available(void) {
    int64_t avail = memory_and_swap("MemAvailable", "SwapFree");
    int64_t limit = rt_cgroup_limit("/proc/self/cgroup", "/sys/fs/cgroup"); /* a container's */
    if (limit > 0 && (avail < 0 || limit < avail)) avail = limit;
    return avail;
}

bool nnq_buffers_fit(uint64_t bytes, char *msg, size_t cap) {
    int64_t avail = nnq_memory_available();
    if (avail < 0 || bytes <= (uint64_t)avail) return true;
    snprintf(msg, cap,
             "out of memory: the program's buffers need %.1f MiB, and this machine has %.1f MiB available "
             "(a smaller `batch` needs less)",
             (double)bytes / 1048576, (double)avail / 1048576);
    return false;
}

void *rt_alloc_block(NnqRun *run, int64_t bytes, bool zero) {
    if (bytes < 0)
        nnq_rt_fail(run, "invalid allocation of %lld bytes", (long long)bytes);
    void *p = rt_alloc_try(run, bytes, zero);
    if (!p)
        nnq_rt_fail(run, "out of memory allocating %lld bytes", (long long)bytes);
    return p;
}

void *nnq_rt_alloc(NnqRun *run, int64_t bytes) {
    return rt_alloc_block(run, bytes, true);
}

char *rt_strdup(NnqRun *run, const char *s) {
    size_t n = strlen(s);
    char *d = rt_alloc_block(run, (int64_t)n + 1, false);
    memcpy(d, s, n + 1);
    return d;
}

double rt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- random numbers ---- */

static inline uint64_t rng_rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_next(NnqRun *run) {
    uint64_t *s = run->rng;
    uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 24 random bits: exactly representable as a float. */
static inline float rng_unit_float(NnqRun *run) {
    return (float)(rt_rng_next(run) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform in (0, 1] with 53 random bits (never 0, so log() is finite). */
static inline double rng_unit_open(NnqRun *run) {
    return (double)((rt_rng_next(run) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, bound), unbiased (rejection of the short final interval). */
uint64_t rt_rng_below(NnqRun *run, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
    for (;;) {
        uint64_t r = rt_rng_next(run);
        if (r >= threshold)
            return r % bound;
    }
}

int64_t nnq_rt_seed(NnqRun *run, int64_t seed) {
    int64_t used = run->opts.seed >= 0 ? run->opts.seed : seed;
    run_seed_state(run, (uint64_t)used);
    return used;
}

void nnq_rt_fill_uniform(NnqRun *run, float *p, int64_t n, float lo, float hi) {
    if (n < 0 || (n > 0 && !p))
        nnq_rt_fail(run, "fill_uniform: invalid buffer (%lld values)", (long long)n);
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        nnq_rt_fail(run, "fill_uniform: invalid range [%g, %g)", lo, hi);
    float width = hi - lo;
    for (int64_t i = 0; i < n; i++) {
        float v = lo + width * rng_unit_float(run);
        if (v >= hi && hi > lo) /* rounding can reach hi; the range is half-open */
            v = nextafterf(hi, lo);
        p[i] = v;
    }
}

void nnq_rt_fill_normal(NnqRun *run, float *p, int64_t n, float mean, float stddev) {
    if (n < 0 || (n > 0 && !p))
        nnq_rt_fail(run, "fill_normal: invalid buffer (%lld values)", (long long)n);
    if (!isfinite(mean) || !isfinite(stddev) || stddev < 0)
        nnq_rt_fail(run, "fill_normal: invalid mean %g or standard deviation %g", mean, stddev);
    /* Box–Muller: each pair of uniforms gives two independent normals. */
    for (int64_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(rng_unit_open(run)));
        double theta = RT_TWO_PI * rng_unit_open(run);
        p[i] = (float)(mean + stddev * r * cos(theta));
        if (i + 1 < n)
            p[i + 1] = (float)(mean + stddev * r * sin(theta));
    }
}

void nnq_rt_shuffle(NnqRun *run, int64_t *index, int64_t n) {
    if (n < 0 || (n > 0 && !index))
        nnq_rt_fail(run, "shuffle: invalid index array (%lld entries)", (long long)n);
    for (int64_t i = 0; i < n; i++)
        index[i] = i;
    /* Fisher–Yates, from the end. */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rt_rng_below(run, (uint64_t)i + 1);
        int64_t t = index[i];
        index[i] = index[j];
        index[j] = t;
    }
}

int32_t nnq_rt_epochs(NnqRun *run, int32_t epochs) {
    return run->opts.epochs > 0 ? run->opts.epochs : epochs;
}

int64_t nnq_rt_random_bits(NnqRun *run) { return (int64_t)rt_rng_next(run); }
