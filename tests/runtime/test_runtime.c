/* test_runtime.c — the harness, main(), and tests of run.c: tracked allocation, the
 * error trap, seeding, shuffling and the random fills. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"
#include "rt_internal.h"

/* ---- harness ---- */

static int g_checks, g_case_failed, g_skipped;
static const char *g_case;
static char g_tmpdir[256];

bool th_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    g_checks++;
    if (ok)
        return true;
    g_case_failed = 1;
    fflush(stdout);
    fprintf(stderr, "FAIL %s: %s:%d: CHECK(%s)", g_case, file, line, expr);
    if (fmt && fmt[0] && fmt[1]) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, ":");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fprintf(stderr, "\n");
    return false;
}

void th_skip(const char *why) {
    g_skipped = 1;
    printf("skip %s: %s\n", g_case, why);
}

const char *th_tmpdir(void) {
    return g_tmpdir;
}

char *th_path(const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", g_tmpdir, name) < 0)
        abort();
    return p;
}

static int g_saved_fd[3] = {-1, -1, -1};
static char *g_capture_path[3];

void th_capture_begin(int fd) {
    fflush(fd == 1 ? stdout : stderr);
    char name[32];
    snprintf(name, sizeof name, "capture-%d.txt", fd);
    g_capture_path[fd] = th_path(name);
    int out = open(g_capture_path[fd], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        abort();
    g_saved_fd[fd] = dup(fd);
    dup2(out, fd);
    close(out);
}

char *th_capture_end(int fd) {
    fflush(fd == 1 ? stdout : stderr);
    dup2(g_saved_fd[fd], fd);
    close(g_saved_fd[fd]);
    g_saved_fd[fd] = -1;
    FILE *f = fopen(g_capture_path[fd], "rb");
    char *text = NULL;
    size_t len = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc(len + 1);
        len = fread(text, 1, len, f);
        text[len] = 0;
        fclose(f);
    }
    unlink(g_capture_path[fd]);
    free(g_capture_path[fd]);
    g_capture_path[fd] = NULL;
    return text ? text : strdup("");
}

int th_invoke(NnqRun *run, int (*entry)(NnqRun *run), char **err) {
    th_capture_begin(2);
    int rc = nnq_run_invoke(run, entry);
    char *text = th_capture_end(2);
    if (err)
        *err = text;
    else
        free(text);
    return rc;
}

int th_invoke_new(const NnqRunOptions *opts, int (*entry)(NnqRun *run), char **err) {
    NnqRunOptions o;
    if (opts) {
        o = *opts;
    } else {
        nnq_run_options_default(&o);
        o.quiet = true;
        o.progress = 0;
    }
    NnqRun *run = nnq_run_new(&o);
    if (!run) {
        if (err)
            *err = strdup("nnq_run_new failed");
        return -1;
    }
    int rc = th_invoke(run, entry, err);
    nnq_run_free(run);
    return rc;
}

bool th_contains(const char *haystack, const char *needle) {
    return haystack && needle && strstr(haystack, needle) != NULL;
}

bool th_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int th_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

bool th_write_file(const char *path, const void *data, size_t n, bool gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (!g)
            return false;
        bool ok = n == 0 || gzwrite(g, data, (unsigned)n) == (int)n;
        return gzclose(g) == Z_OK && ok;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Writes a .npy file: magic, version major.0, header text padded with spaces and a
 * newline so that the data starts at a multiple of 64, then n data bytes (`raw`: the
 * header is written exactly as given). */
bool th_write_npy(const char *path, int major, const char *header, bool raw, const void *data,
                  size_t n, bool gz) {
    size_t lenbytes = major == 1 ? 2 : 4, hl = strlen(header);
    size_t pre = 8 + lenbytes, total = raw ? hl : ((pre + hl + 1 + 63) / 64) * 64 - pre;
    unsigned char *b = malloc(pre + total + n + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major, b[7] = 0;
    for (size_t i = 0; i < lenbytes; i++)
        b[8 + i] = (unsigned char)(total >> (8 * i));
    memcpy(b + pre, header, hl);
    if (!raw) {
        memset(b + pre + hl, ' ', total - hl);
        b[pre + total - 1] = '\n';
    }
    if (n)
        memcpy(b + pre + total, data, n);
    bool ok = th_write_file(path, b, pre + total + n, gz);
    free(b);
    return ok;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    chmod(path, 0700);
    remove(path);
    return 0;
}

typedef struct TestCase {
    const char *name;
    void (*fn)(void);
} TestCase;

#define CASE(f) {#f, f}
static const TestCase g_cases[] = {
    CASE(test_alloc),
    CASE(test_prefault),
    CASE(test_memory_limits),
    CASE(test_cgroup_cpus),
    CASE(test_trap),
    CASE(test_seed_override),
    CASE(test_shuffle),
    CASE(test_fill_uniform),
    CASE(test_fill_normal),
    CASE(test_check_loss_and_epochs),
    CASE(test_gemm_ref_known),
    CASE(test_gemm_vs_ref),
    CASE(test_gemm_edges),
    CASE(test_gemm_dot),
    CASE(test_gemm_then),
    CASE(test_im2col_conv),
    CASE(test_image_threads),
    CASE(test_conv_kernels),
    CASE(test_dwconv_kernels),
    CASE(test_gemm_threads),
    CASE(test_pool_max_threads),
    CASE(test_maxpool),
    CASE(test_bn_relu_maxpool),
    CASE(test_chan_relu_grad_affine),
    CASE(test_chan_lanes),
    CASE(test_bn_apply),
    CASE(test_isa_levels),
    CASE(test_isa_trainer_level),
    CASE(test_isa_kernels),
    CASE(test_avgpool),
    CASE(test_idx_load),
    CASE(test_idx_search_path),
    CASE(test_idx_errors),
    CASE(test_data_check),
    CASE(test_data_normalize),
    CASE(test_data_batch),
    CASE(test_cifar_load),
    CASE(test_cifar_errors),
    CASE(test_npy_load),
    CASE(test_npy_errors),
    CASE(test_init_tensor),
    CASE(test_init_tensor_errors),
    CASE(test_data_normalize_channels),
    CASE(test_data_augment),
    CASE(test_fashion_mnist),
    CASE(test_model_roundtrip),
    CASE(test_model_layout),
    CASE(test_model_bad_value),
    CASE(test_model_save_failures),
    CASE(test_model_corruption),
    CASE(test_model_names),
    CASE(test_model_concurrent_saves),
    CASE(test_infer_dense),
    CASE(test_infer_conv),
    CASE(test_infer_refused),
    CASE(test_checkpoint_roundtrip),
    CASE(test_checkpoint_refusals),
    CASE(test_checkpoint_names),
    CASE(test_checkpoint_save_failures),
    CASE(test_metrics_success),
    CASE(test_metrics_failure),
    CASE(test_metrics_open_failure),
    CASE(test_progress_output),
};

int main(int argc, char **argv) {
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/nnq-rt-test-XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    /* The environment must not steer the data search path. */
    unsetenv("NNQ_DATA_DIR");
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) {
        if (argc > 1 && !strstr(g_cases[i].name, argv[1]))
            continue;
        g_case = g_cases[i].name;
        g_case_failed = g_skipped = 0;
        g_cases[i].fn();
        if (g_case_failed) {
            failed++;
            printf("FAILED %s\n", g_case);
        } else {
            passed++;
            if (!g_skipped)
                printf("ok %s\n", g_case);
        }
    }
    nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d checks\n", g_checks);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* ---- run.c: memory and the trap ---- */

static void *g_blocks[4];

static int entry_alloc(NnqRun *run) {
    g_blocks[0] = nnq_rt_alloc(run, 1);
    g_blocks[1] = nnq_rt_alloc(run, 1000);
    g_blocks[2] = nnq_rt_alloc(run, 0);
    g_blocks[3] = nnq_rt_alloc(run, 1 << 20);
    const unsigned char *p = g_blocks[3];
    bool zero = true;
    for (int i = 0; i < (1 << 20); i++)
        zero &= p[i] == 0;
    CHECK(zero, "nnq_rt_alloc block not zeroed");
    for (int i = 0; i < 4; i++) {
        CHECK(g_blocks[i] != NULL);
        CHECK(((uintptr_t)g_blocks[i] & 63) == 0, "block %d at %p not 64-byte aligned", i,
              g_blocks[i]);
    }
    CHECK(g_blocks[0] != g_blocks[2]);
    memset(g_blocks[1], 0xab, 1000); /* writable over its whole size */
    return 7;
}

static int entry_alloc_negative(NnqRun *run) {
    nnq_rt_alloc(run, -5);
    return 0;
}

void test_alloc(void) {
    CHECK(th_invoke_new(NULL, entry_alloc, NULL) == 7, "entry's return value is passed on");
    char *err = NULL;
    CHECK(th_invoke_new(NULL, entry_alloc_negative, &err) == 1);
    CHECK(th_contains(err, "nnqc: error: ") && th_contains(err, "-5"), "got: %s", err);
    free(err);
}

/* nnq_prefault maps in the whole pages of its range, and no page it only shares. */
void test_prefault(void) {
    long page = sysconf(_SC_PAGESIZE);
    enum { PAGES = 16 };
    char *m = mmap(NULL, (size_t)(PAGES * page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    if (m == MAP_FAILED) return;
    unsigned char in[PAGES];
#ifdef MADV_POPULATE_WRITE
    bool able = madvise(m + (PAGES - 1) * page, (size_t)page, MADV_POPULATE_WRITE) == 0;
#else
    bool able = false;
#endif
    if (!able) {
        th_skip("the kernel cannot populate pages (MADV_POPULATE_WRITE, Linux 5.14)");
    } else {
        CHECK(mincore(m, (size_t)(PAGES * page), in) == 0);
        CHECK(!(in[0] & 1) && (in[PAGES - 1] & 1), "untouched pages resident before the call");
        /* pages 1 .. PAGES - 3 whole; the first and the one before the last shared */
        nnq_prefault(m + page - 8, (size_t)((PAGES - 3) * page + 16));
        CHECK(mincore(m, (size_t)(PAGES * page), in) == 0);
        CHECK(!(in[0] & 1), "a page the range only shares was mapped in");
        for (int k = 1; k <= PAGES - 3; k++) CHECK(in[k] & 1, "page %d of the range not mapped in", k);
        CHECK(!(in[PAGES - 2] & 1), "a page the range only shares was mapped in");
        CHECK(m[page * 5] == 0, "a mapped-in page is zero");
    }
    munmap(m, (size_t)(PAGES * page));
}

/* Writes `text` to th_tmpdir()/rel, making its directories. */
static void put(const char *rel, const char *text) {
    char path[512];
    size_t base = (size_t)snprintf(path, sizeof path, "%s/", th_tmpdir());
    snprintf(path + base, sizeof path - base, "%s", rel);
    for (size_t i = base; path[i]; i++)
        if (path[i] == '/') {
            path[i] = 0;
            mkdir(path, 0700);
            path[i] = '/';
        }
    CHECK(th_write_file(path, text, strlen(text), false), "writing %s", rel);
}

/* The CPU quota of a process's cgroups, laid out the same way: cgroup v2's cpu.max of
 * the group and of each group above it, the least, rounded up; v1's cpu.cfs_quota_us
 * over cpu.cfs_period_us under cpu,cpuacct; "max", -1 and missing files as no quota;
 * another controller's files ignored. */
void test_cgroup_cpus(void) {
    static const struct {
        const char *file, *text; /* written, then */
        int cpus;                /* what the quota allows */
    } steps[] = {
        {"cq/proc", "0::/user.slice/job\n", 0},                        /* no files: none */
        {"cq/sys/user.slice/job/cpu.max", "max 100000\n", 0},          /* max: none */
        {"cq/sys/user.slice/cpu.max", "250000 100000\n", 3},           /* above the group, up */
        {"cq/sys/cpu.max", "200000 100000\n", 2},                      /* the least of them */
        {"cq/sys/user.slice/job/cpu.max", "99999999999999999999 1\n", 2}, /* past 2^63: no overflow */
        {"cq/sys/user.slice/job/cpu.max", "50000 100000\n", 1},        /* the group's own */
        {"cq/proc", "7:memory:/d/c\n4:cpu,cpuacct:/d/c\n0::/\n", 2}, /* v1 and v2's root */
        {"cq/sys/memory/d/c/cpu.cfs_quota_us", "100000\n", 2},         /* not the CPU's */
        {"cq/sys/memory/d/c/cpu.cfs_period_us", "100000\n", 2},
        {"cq/sys/cpu,cpuacct/d/c/cpu.cfs_quota_us", "-1\n", 2},        /* v1's none */
        {"cq/sys/cpu,cpuacct/d/c/cpu.cfs_period_us", "100000\n", 2},
        {"cq/sys/cpu,cpuacct/d/c/cpu.cfs_quota_us", "150000\n", 2},    /* v1's 1.5 */
        {"cq/sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n", 2},
        {"cq/sys/cpu,cpuacct/cpu.cfs_quota_us", "50000\n", 1},         /* v1's root */
    };
    char *proc = th_path("cq/proc"), *root = th_path("cq/sys");
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        put(steps[i].file, steps[i].text);
        int got = rt_cgroup_cpus(proc, root);
        CHECK(got == steps[i].cpus, "after %s = %s: %d CPUs, not %d", steps[i].file, steps[i].text, got,
              steps[i].cpus);
    }
    CHECK(rt_cgroup_cpus(root, root) == 0, "an unreadable file: no quota");
    int usable = nnq_cpus_usable();
    CHECK(usable >= 1 && usable <= sysconf(_SC_NPROCESSORS_ONLN), "usable CPUs %d", usable);
    free(proc);
    free(root);
}

/* The memory check's cgroup limits, from files laid out as /proc/self/cgroup and
 * /sys/fs/cgroup lay them out, and the check itself. */
void test_memory_limits(void) {
    char *proc = th_path("cg/proc"), *root = th_path("cg/sys");
    /* v2: the lowest memory.max on the way up; "max" is none; the root's own counts */
    put("cg/proc", "0::/a/b/c\n");
    put("cg/sys/a/b/c/memory.max", "max\n");
    put("cg/sys/a/b/memory.max", "5000\n");
    put("cg/sys/a/memory.max", "9000\n");
    CHECK(rt_cgroup_limit(proc, root) == 5000, "got %lld", (long long)rt_cgroup_limit(proc, root));
    put("cg/sys/a/b/c/memory.max", "3000\n");
    CHECK(rt_cgroup_limit(proc, root) == 3000);
    put("cg/proc", "0::/\n");
    CHECK(rt_cgroup_limit(proc, root) == -1, "no memory.max at the root: no limit");
    put("cg/sys/memory.max", "7000\n");
    CHECK(rt_cgroup_limit(proc, root) == 7000);
    put("cg/proc", "0::/a\n");
    CHECK(rt_cgroup_limit(proc, root) == 7000, "a's 9000, the root's 7000");
    /* v1: the memory controller's line among others, with other controllers beside it;
     * a limit near 2^63 is none */
    put("cg/proc", "5:cpu,cpuacct:/x\n4:blkio,memory:/m/n\n0::/\n");
    put("cg/sys/memory.max", "max\n");
    put("cg/sys/memory/m/n/memory.limit_in_bytes", "9223372036854771712\n");
    CHECK(rt_cgroup_limit(proc, root) == -1, "got %lld", (long long)rt_cgroup_limit(proc, root));
    put("cg/sys/memory/m/memory.limit_in_bytes", "4096\n");
    CHECK(rt_cgroup_limit(proc, root) == 4096, "got %lld", (long long)rt_cgroup_limit(proc, root));
    put("cg/proc", "garbage without colons\n");
    CHECK(rt_cgroup_limit(proc, root) == -1);
    CHECK(rt_cgroup_limit(root, root) == -1, "an unreadable file: no limit");
    free(proc);
    free(root);
    /* the check: nothing is refused that fits, what no machine has is, with both sizes */
    int64_t avail = nnq_memory_available();
    char msg[256] = "";
    CHECK(avail > 0, "this machine's memory unknown: %lld", (long long)avail);
    CHECK(nnq_buffers_fit(1 << 20, msg, sizeof msg) && !msg[0]);
    CHECK(!nnq_buffers_fit((uint64_t)1 << 60, msg, sizeof msg));
    CHECK(strstr(msg, "need 1099511627776.0 MiB") && strstr(msg, "MiB available"), "%s", msg);
    /* nnqc build's bound: the machine's memory and swap, never below what is available */
    int64_t total = nnq_memory_total();
    CHECK(total >= avail, "total %lld, available %lld", (long long)total, (long long)avail);
}

static int g_after_fail;
static int entry_fail(NnqRun *run) {
    nnq_rt_fail(run, "boom %d at '%s'", 42, "here");
    g_after_fail = 1; /* not reached */
    return 0;
}

static int entry_ok(NnqRun *run) {
    return 0;
}

static int g_inner_rc;
static int entry_nested(NnqRun *run) {
    g_inner_rc = nnq_run_invoke(run, entry_fail);
    return 3; /* the outer invoke continues normally */
}

void test_trap(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    NnqRun *run = nnq_run_new(&o);
    CHECK(run != NULL);
    if (!run)
        return;
    char *err = NULL;
    g_after_fail = 0;
    CHECK(th_invoke(run, entry_fail, &err) == 1);
    CHECK(g_after_fail == 0, "nnq_rt_fail returned");
    CHECK(err && strcmp(err, "nnqc: error: boom 42 at 'here'\n") == 0, "stderr was: '%s'", err);
    free(err);
    CHECK(th_invoke(run, entry_ok, NULL) == 0, "a run stays usable after a reported error");
    CHECK(th_invoke(run, entry_nested, NULL) == 3);
    CHECK(g_inner_rc == 1, "the inner invoke catches the inner failure");
    nnq_run_free(run);
    nnq_run_free(NULL);
}

/* ---- run.c: random numbers ---- */

enum { NSHUF = 1000 };
static int64_t g_perm[3][NSHUF];
static int64_t g_seed_arg, g_seed_used;
static int g_slot;

static int entry_shuffle(NnqRun *run) {
    g_seed_used = nnq_rt_seed(run, g_seed_arg);
    nnq_rt_shuffle(run, g_perm[g_slot], NSHUF);
    return 0;
}

static bool is_permutation(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]])
            ok = false;
        else
            seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

void test_shuffle(void) {
    g_seed_arg = 1;
    for (g_slot = 0; g_slot < 3; g_slot++) {
        if (g_slot == 2)
            g_seed_arg = 2;
        CHECK(th_invoke_new(NULL, entry_shuffle, NULL) == 0);
    }
    CHECK(g_seed_used == 2);
    for (int s = 0; s < 3; s++)
        CHECK(is_permutation(g_perm[s], NSHUF), "shuffle %d is not a permutation", s);
    CHECK(memcmp(g_perm[0], g_perm[1], sizeof g_perm[0]) == 0, "same seed, different order");
    CHECK(memcmp(g_perm[0], g_perm[2], sizeof g_perm[0]) != 0, "seeds 1 and 2 give one order");
    int fixed = 0;
    for (int i = 0; i < NSHUF; i++)
        fixed += g_perm[0][i] == i;
    CHECK(fixed < 20, "%d fixed points: not shuffled", fixed); /* expected about 1 */
    /* uniformity: position of element 0 over many shuffles of 4 */
    int counts[4] = {0};
    g_seed_arg = 5;
    g_slot = 0;
    CHECK(th_invoke_new(NULL, entry_shuffle, NULL) == 0);
    NnqRun *run = nnq_run_new(NULL);
    int64_t idx[4];
    nnq_rt_seed(run, 9); /* outside invoke: does not fail, so allowed */
    for (int t = 0; t < 40000; t++) {
        nnq_rt_shuffle(run, idx, 4);
        for (int i = 0; i < 4; i++)
            if (idx[i] == 0)
                counts[i]++;
    }
    for (int i = 0; i < 4; i++)
        CHECK(counts[i] > 9400 && counts[i] < 10600, "element 0 at %d in %d of 40000", i,
              counts[i]);
    nnq_rt_shuffle(run, idx, 1);
    CHECK(idx[0] == 0);
    nnq_rt_shuffle(run, NULL, 0);
    nnq_run_free(run);
}

void test_seed_override(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.seed = 77;
    g_slot = 0;
    g_seed_arg = 1;
    CHECK(th_invoke_new(&o, entry_shuffle, NULL) == 0);
    CHECK(g_seed_used == 77, "options.seed overrides: got %lld", (long long)g_seed_used);
    g_slot = 1;
    g_seed_arg = 12345;
    CHECK(th_invoke_new(&o, entry_shuffle, NULL) == 0);
    CHECK(memcmp(g_perm[0], g_perm[1], sizeof g_perm[0]) == 0, "override ignores program seed");
    o.seed = 0; /* 0 is a valid override */
    CHECK(th_invoke_new(&o, entry_shuffle, NULL) == 0);
    CHECK(g_seed_used == 0);
}

enum { NFILL = 200001 };
static float g_fill[2][NFILL];
static float g_lo, g_hi;

static int entry_uniform(NnqRun *run) {
    nnq_rt_seed(run, g_seed_arg);
    nnq_rt_fill_uniform(run, g_fill[g_slot], NFILL, g_lo, g_hi);
    return 0;
}

static int entry_uniform_bad(NnqRun *run) {
    nnq_rt_fill_uniform(run, g_fill[0], 10, 1.0f, -1.0f);
    return 0;
}

void test_fill_uniform(void) {
    g_lo = -0.25f;
    g_hi = 0.75f;
    g_seed_arg = 3;
    for (g_slot = 0; g_slot < 2; g_slot++)
        CHECK(th_invoke_new(NULL, entry_uniform, NULL) == 0);
    CHECK(memcmp(g_fill[0], g_fill[1], sizeof g_fill[0]) == 0, "not deterministic");
    double sum = 0, mn = 1e9, mx = -1e9;
    int out = 0;
    for (int i = 0; i < NFILL; i++) {
        float v = g_fill[0][i];
        out += !(v >= g_lo && v < g_hi);
        sum += v;
        mn = fmin(mn, v);
        mx = fmax(mx, v);
    }
    CHECK(out == 0, "%d values outside [lo, hi)", out);
    CHECK(fabs(sum / NFILL - 0.25) < 0.005, "mean %g", sum / NFILL);
    CHECK(mn < -0.249 && mx > 0.749, "range [%g, %g] not covered", mn, mx);
    g_seed_arg = 4;
    g_slot = 1;
    CHECK(th_invoke_new(NULL, entry_uniform, NULL) == 0);
    CHECK(memcmp(g_fill[0], g_fill[1], sizeof g_fill[0]) != 0, "seed 3 and 4 agree");
    /* a degenerate range gives the single value */
    g_lo = g_hi = 2.5f;
    CHECK(th_invoke_new(NULL, entry_uniform, NULL) == 0);
    CHECK(g_fill[1][0] == 2.5f && g_fill[1][NFILL - 1] == 2.5f);
    char *err = NULL;
    CHECK(th_invoke_new(NULL, entry_uniform_bad, &err) == 1);
    CHECK(th_contains(err, "fill_uniform"), "got: %s", err);
    free(err);
}

static int entry_normal(NnqRun *run) {
    nnq_rt_seed(run, g_seed_arg);
    nnq_rt_fill_normal(run, g_fill[g_slot], NFILL, 1.5f, 2.0f);
    return 0;
}

void test_fill_normal(void) {
    g_seed_arg = 11;
    for (g_slot = 0; g_slot < 2; g_slot++)
        CHECK(th_invoke_new(NULL, entry_normal, NULL) == 0);
    CHECK(memcmp(g_fill[0], g_fill[1], sizeof g_fill[0]) == 0, "not deterministic");
    double sum = 0, sq = 0;
    int within1 = 0, nonfinite = 0;
    for (int i = 0; i < NFILL; i++) {
        double v = g_fill[0][i];
        nonfinite += !isfinite(v);
        sum += v;
        sq += v * v;
        within1 += fabs(v - 1.5) < 2.0;
    }
    CHECK(nonfinite == 0, "%d non-finite values", nonfinite);
    double mean = sum / NFILL, sd = sqrt(sq / NFILL - mean * mean);
    CHECK(fabs(mean - 1.5) < 0.02, "mean %g", mean);
    CHECK(fabs(sd - 2.0) < 0.02, "stddev %g", sd);
    double frac = (double)within1 / NFILL; /* 68.27% within one sigma */
    CHECK(fabs(frac - 0.6827) < 0.005, "%.4f within one sigma", frac);
}

static float g_loss;
static int entry_check_loss(NnqRun *run) {
    nnq_rt_check_loss(run, 0.5f, 1);
    nnq_rt_check_loss(run, g_loss, 1234);
    return 0;
}

static int32_t g_epochs_in, g_epochs_out;
static int entry_epochs(NnqRun *run) {
    g_epochs_out = nnq_rt_epochs(run, g_epochs_in);
    return 0;
}

void test_check_loss_and_epochs(void) {
    char *err = NULL;
    g_loss = 2.0f;
    CHECK(th_invoke_new(NULL, entry_check_loss, NULL) == 0);
    g_loss = NAN;
    CHECK(th_invoke_new(NULL, entry_check_loss, &err) == 1);
    CHECK(th_contains(err, "nnqc: error: training diverged at iteration 1234: the loss is nan"),
          "got: %s", err);
    free(err);
    g_loss = INFINITY;
    CHECK(th_invoke_new(NULL, entry_check_loss, &err) == 1);
    CHECK(th_contains(err, "at iteration 1234: the loss is inf"), "got: %s", err);
    free(err);

    g_epochs_in = 20;
    CHECK(th_invoke_new(NULL, entry_epochs, NULL) == 0);
    CHECK(g_epochs_out == 20);
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.epochs = 3;
    CHECK(th_invoke_new(&o, entry_epochs, NULL) == 0);
    CHECK(g_epochs_out == 3, "--epochs override: got %d", g_epochs_out);
}
