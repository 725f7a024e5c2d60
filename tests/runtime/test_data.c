/* test_data.c — data.c: IDX loading (plain and gzip), the search path, validation
 * errors, nnq_rt_data_check, normalization, batches, and the real Fashion-MNIST. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

enum { ROWS = 3, COLS = 4, NIMG = 7, PIX = ROWS * COLS };

static unsigned char pixel_byte(int i, int r, int c) {
    return (unsigned char)((i * 37 + r * 11 + c * 5 + i * r * c) & 255);
}

static int label_of(int i) {
    return (i * 3) % 10; /* 0 3 6 9 2 5 8: max 9 at sample 3 */
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Image file bytes for n images of rows x cols; *len its size. Caller frees. */
static unsigned char *images_bytes(uint32_t magic, int n, int rows, int cols, size_t *len) {
    size_t size = 16 + (size_t)n * rows * cols;
    unsigned char *b = malloc(size + 64);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)rows);
    put_be32(b + 12, (uint32_t)cols);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                b[16 + ((size_t)i * rows + r) * cols + c] = pixel_byte(i, r, c);
    *len = size;
    return b;
}

static unsigned char *labels_bytes(uint32_t magic, int n, size_t *len) {
    unsigned char *b = malloc(8 + (size_t)n + 64);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        b[8 + i] = (unsigned char)label_of(i);
    *len = 8 + (size_t)n;
    return b;
}

/* Writes name-images / name-labels (n samples) into dir; returns false on error. */
static bool write_pair(const char *dir, const char *name, int n, bool gz) {
    size_t li, ll;
    unsigned char *im = images_bytes(0x803, n, ROWS, COLS, &li);
    unsigned char *lb = labels_bytes(0x801, n, &ll);
    char *pi = NULL, *pl = NULL;
    if (asprintf(&pi, "%s/%s-images", dir, name) < 0 || asprintf(&pl, "%s/%s-labels", dir, name) < 0)
        abort();
    bool ok = th_write_file(pi, im, li, gz) && th_write_file(pl, lb, ll, gz);
    free(im), free(lb), free(pi), free(pl);
    return ok;
}

/* ---- shared entry functions (parameters in globals) ---- */

static const char *g_images, *g_labels;
static int32_t g_ds, g_ds2;
static int64_t g_count;

static int entry_load(NnqRun *run) {
    g_ds = nnq_rt_data_idx(run, g_images, g_labels);
    g_count = nnq_rt_data_count(run, g_ds);
    return 0;
}

static float g_x[NIMG * PIX * 2];
static int32_t g_y[NIMG * 2];
static const int64_t *g_index;
static int64_t g_start, g_n;

static int entry_batch(NnqRun *run) {
    nnq_rt_data_batch(run, g_ds, g_index, g_start, g_n, g_x, g_y, 0);
    return 0;
}

static int load_status(const char *images, const char *labels, char **err) {
    g_images = images;
    g_labels = labels;
    g_count = -1;
    return th_invoke_new(NULL, entry_load, err);
}

static NnqRun *quiet_run(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    return nnq_run_new(&o);
}

/* ---- loading ---- */

void test_idx_load(void) {
    const char *dir = th_tmpdir();
    CHECK(write_pair(dir, "plain", NIMG, false));
    CHECK(write_pair(dir, "gz", NIMG, true));
    const char *names[2] = {"plain", "gz"};
    for (int g = 0; g < 2; g++) {
        NnqRun *run = quiet_run();
        char *pi = NULL, *pl = NULL;
        if (asprintf(&pi, "%s/%s-images", dir, names[g]) < 0 ||
            asprintf(&pl, "%s/%s-labels", dir, names[g]) < 0)
            abort();
        g_images = pi, g_labels = pl;
        char *err = NULL;
        int rc = th_invoke(run, entry_load, &err);
        CHECK(rc == 0, "%s: %s", names[g], err);
        free(err);
        CHECK(g_count == NIMG, "%s: count %lld", names[g], (long long)g_count);
        g_index = NULL, g_start = 0, g_n = NIMG;
        memset(g_x, 0, sizeof g_x);
        CHECK(th_invoke(run, entry_batch, NULL) == 0);
        int bad_pix = 0, bad_lab = 0;
        for (int i = 0; i < NIMG; i++) {
            for (int r = 0; r < ROWS; r++)
                for (int c = 0; c < COLS; c++) {
                    float want = pixel_byte(i, r, c) / 255.0f;
                    bad_pix += fabsf(g_x[i * PIX + r * COLS + c] - want) > 1e-7f;
                }
            bad_lab += g_y[i] != label_of(i);
        }
        CHECK(bad_pix == 0, "%s: %d pixels differ from byte/255", names[g], bad_pix);
        CHECK(bad_lab == 0, "%s: %d labels differ", names[g], bad_lab);
        CHECK(g_x[0] == 0.0f && g_x[1 * PIX + 0] == 37 / 255.0f);
        /* gather through an index array */
        static const int64_t idx[] = {6, 0, 3, 3};
        g_index = idx, g_start = 1, g_n = 3; /* samples 0, 3, 3 */
        CHECK(th_invoke(run, entry_batch, NULL) == 0);
        CHECK(g_y[0] == label_of(0) && g_y[1] == label_of(3) && g_y[2] == label_of(3));
        CHECK(g_x[PIX + 5] == pixel_byte(3, 5 / COLS, 5 % COLS) / 255.0f);
        /* a contiguous range */
        g_index = NULL, g_start = 5, g_n = 2;
        CHECK(th_invoke(run, entry_batch, NULL) == 0);
        CHECK(g_y[0] == label_of(5) && g_y[1] == label_of(6));
        CHECK(g_x[PIX + PIX - 1] == pixel_byte(6, ROWS - 1, COLS - 1) / 255.0f);
        nnq_run_free(run);
        free(pi), free(pl);
    }
}

void test_idx_search_path(void) {
    char *d1 = th_path("sp-d1"), *d2 = th_path("sp-d2"), *base = th_path("sp-base");
    char *cwd = th_path("sp-cwd"), *empty = th_path("sp-empty");
    char *sub;
    const char *dirs[4] = {d1, d2, base, cwd};
    for (int i = 0; i < 4; i++) {
        mkdir(dirs[i], 0700);
        if (asprintf(&sub, "%s/sub", dirs[i]) < 0)
            abort();
        mkdir(sub, 0700);
        CHECK(write_pair(sub, "x", 5 + i, i % 2 == 1), "writing into %s", sub);
        free(sub);
    }
    mkdir(empty, 0700);
    char env[1024];
    snprintf(env, sizeof env, "%s::%s", empty, d2);
    char oldcwd[4096];
    CHECK(getcwd(oldcwd, sizeof oldcwd) != NULL);
    CHECK(chdir(cwd) == 0);

    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    g_images = "sub/x-images", g_labels = "sub/x-labels";
    int rc;
    /* all four present: data_dir wins */
    setenv("NNQ_DATA_DIR", env, 1);
    o.data_dir = d1, o.base_dir = base;
    rc = th_invoke_new(&o, entry_load, NULL);
    CHECK(rc == 0 && g_count == 5, "data_dir: %lld", (long long)g_count);
    o.data_dir = NULL;
    rc = th_invoke_new(&o, entry_load, NULL);
    CHECK(rc == 0 && g_count == 6, "$NNQ_DATA_DIR: %lld", (long long)g_count);
    unsetenv("NNQ_DATA_DIR");
    rc = th_invoke_new(&o, entry_load, NULL);
    CHECK(rc == 0 && g_count == 7, "base_dir: %lld", (long long)g_count);
    o.base_dir = NULL;
    rc = th_invoke_new(&o, entry_load, NULL);
    CHECK(rc == 0 && g_count == 8, "current dir: %lld", (long long)g_count);

    /* not found: every location is listed */
    setenv("NNQ_DATA_DIR", env, 1);
    o.data_dir = d1, o.base_dir = base;
    g_images = "nowhere/missing-images.gz";
    char *err = NULL;
    CHECK(th_invoke_new(&o, entry_load, &err) == 1);
    char want[5][1200];
    snprintf(want[0], sizeof want[0], "%s/nowhere/missing-images.gz", d1);
    snprintf(want[1], sizeof want[1], "%s/nowhere/missing-images.gz", empty);
    snprintf(want[2], sizeof want[2], "%s/nowhere/missing-images.gz", d2);
    snprintf(want[3], sizeof want[3], "%s/nowhere/missing-images.gz", base);
    snprintf(want[4], sizeof want[4], "/usr/share/datasets/nowhere/missing-images.gz");
    CHECK(th_contains(err, "cannot find data file 'nowhere/missing-images.gz'"), "got: %s", err);
    for (int i = 0; i < 5; i++)
        CHECK(th_contains(err, want[i]), "'%s' not listed in: %s", want[i], err);
    CHECK(th_contains(err, "./nowhere/missing-images.gz"), "cwd not listed: %s", err);
    free(err);
    unsetenv("NNQ_DATA_DIR");

    /* absolute paths are used as is */
    char *abs_missing = th_path("no-such-images");
    g_images = abs_missing, g_labels = "sub/x-labels";
    CHECK(th_invoke_new(&o, entry_load, &err) == 1);
    CHECK(th_contains(err, abs_missing) && th_contains(err, "No such file"), "got: %s", err);
    free(err);
    CHECK(chdir(oldcwd) == 0);
    free(abs_missing), free(d1), free(d2), free(base), free(cwd), free(empty);
}

/* Writes images (raw bytes given) and labels; loads; returns rc with the message. */
static int try_files(const char *tag, const unsigned char *im, size_t li, const unsigned char *lb,
                     size_t ll, bool gz, char **err, char **images_path) {
    char name[64];
    snprintf(name, sizeof name, "bad-%s-images", tag);
    char *pi = th_path(name);
    snprintf(name, sizeof name, "bad-%s-labels", tag);
    char *pl = th_path(name);
    CHECK(th_write_file(pi, im, li, gz) && th_write_file(pl, lb, ll, gz));
    int rc = load_status(pi, pl, err);
    *images_path = pi;
    free(pl);
    return rc;
}

void test_idx_errors(void) {
    size_t li, ll;
    unsigned char *im = images_bytes(0x803, NIMG, ROWS, COLS, &li);
    unsigned char *lb = labels_bytes(0x801, NIMG, &ll);
    char *err = NULL, *path = NULL;

    /* sanity: the pair itself loads */
    int rc = try_files("good", im, li, lb, ll, false, &err, &path);
    CHECK(rc == 0, "%s", err);
    free(err), free(path);

    /* bad magic */
    unsigned char *bad = malloc(li + 64);
    memcpy(bad, im, li);
    put_be32(bad, 0x12345678);
    CHECK(try_files("magic", bad, li, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, path) && th_contains(err, "bad magic number 0x12345678"), "got: %s",
          err);
    free(err), free(path);

    /* a label file where images are expected */
    CHECK(try_files("swapped", lb, ll, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "label file"), "got: %s", err);
    free(err), free(path);

    /* truncated pixel data: 5 bytes short */
    CHECK(try_files("trunc", im, li - 5, lb, ll, false, &err, &path) == 1);
    char want[128];
    snprintf(want, sizeof want, "expected %d bytes", NIMG * PIX);
    CHECK(th_contains(err, path) && th_contains(err, "truncated") && th_contains(err, want) &&
              th_contains(err, "found 79"),
          "got: %s", err);
    free(err), free(path);

    /* the same, gzip-compressed */
    CHECK(try_files("truncgz", im, li - 5, lb, ll, true, &err, &path) == 1);
    CHECK(th_contains(err, "truncated") && th_contains(err, "found 79"), "got: %s", err);
    free(err), free(path);

    /* truncated header */
    CHECK(try_files("header", im, 10, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "16-byte IDX image header, found 10 bytes"), "got: %s", err);
    free(err), free(path);

    /* trailing bytes */
    memcpy(bad, im, li);
    memset(bad + li, 7, 3);
    CHECK(try_files("trailing", bad, li + 3, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "3 unexpected bytes after 7 images"), "got: %s", err);
    free(err), free(path);

    /* image and label counts disagree */
    size_t ll6;
    unsigned char *lb6 = labels_bytes(0x801, NIMG - 1, &ll6);
    CHECK(try_files("count", im, li, lb6, ll6, false, &err, &path) == 1);
    CHECK(th_contains(err, "has 7 images but") && th_contains(err, "has 6 labels"), "got: %s",
          err);
    free(err), free(path), free(lb6);

    /* zero rows */
    memcpy(bad, im, li);
    put_be32(bad + 8, 0);
    CHECK(try_files("dims", bad, 16, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "invalid dimensions"), "got: %s", err);
    free(err), free(path);

    /* truncated gzip stream (the file itself cut short) */
    char *pgz = th_path("cut.gz");
    CHECK(th_write_file(pgz, im, li, true));
    FILE *f = fopen(pgz, "rb");
    unsigned char gzb[4096];
    size_t gzn = f ? fread(gzb, 1, sizeof gzb, f) : 0;
    if (f)
        fclose(f);
    CHECK(try_files("cutgz", gzb, gzn - 12, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, path), "got: %s", err);
    free(err), free(path), free(pgz);

    /* corrupt gzip data: the stream's CRC no longer matches */
    gzb[gzn / 2] ^= 0x55;
    gzb[gzn / 2 + 1] ^= 0x55;
    CHECK(try_files("corruptgz", gzb, gzn, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, path), "got: %s", err);
    free(err), free(path);

    /* a missing label file */
    char *pi = th_path("bad-good-images");
    CHECK(load_status(pi, "/nonexistent/labels", &err) == 1);
    CHECK(th_contains(err, "/nonexistent/labels"), "got: %s", err);
    free(err), free(pi);
    free(bad), free(im), free(lb);
}

/* ---- check, normalize, batch ---- */

static int32_t g_rank, g_nclasses;
static int64_t g_dims[4];
static int entry_check(NnqRun *run) {
    int32_t ds = nnq_rt_data_idx(run, g_images, g_labels);
    nnq_rt_data_check(run, ds, g_rank, g_dims, g_nclasses, "mlp");
    return 0;
}

static int check_status(int rank, int64_t d0, int64_t d1, int64_t d2, int ncl, char **err) {
    g_rank = rank, g_dims[0] = d0, g_dims[1] = d1, g_dims[2] = d2, g_nclasses = ncl;
    return th_invoke_new(NULL, entry_check, err);
}

void test_data_check(void) {
    CHECK(write_pair(th_tmpdir(), "plain", NIMG, false));
    char *pi = th_path("plain-images"), *pl = th_path("plain-labels");
    g_images = pi, g_labels = pl;
    char *err = NULL;
    CHECK(check_status(3, 1, ROWS, COLS, 10, NULL) == 0, "[1,3,4] accepted");
    CHECK(check_status(2, ROWS, COLS, 0, 10, NULL) == 0, "[3,4] accepted");
    CHECK(check_status(3, 1, COLS, ROWS, 10, &err) == 1, "[1,4,3] rejected");
    CHECK(th_contains(err, "model 'mlp'") && th_contains(err, "[1, 4, 3]") &&
              th_contains(err, pi) && th_contains(err, "3x4"),
          "got: %s", err);
    free(err);
    CHECK(check_status(3, 2, ROWS, COLS, 10, NULL) == 1, "2 channels rejected");
    CHECK(check_status(1, PIX, 0, 0, 10, NULL) == 1, "flat [12] rejected");
    CHECK(check_status(3, 1, ROWS, COLS, 9, &err) == 1, "label 9 with 9 classes");
    CHECK(th_contains(err, pl) && th_contains(err, "label 9 at sample 3") &&
              th_contains(err, "'mlp' has 9 classes"),
          "got: %s", err);
    free(err);
    free(pi), free(pl);
}

static int32_t g_mode, g_stats_ds;
static int64_t g_stats_count;
static int entry_load2(NnqRun *run) {
    g_ds = nnq_rt_data_idx(run, g_images, g_labels);
    g_ds2 = nnq_rt_data_idx(run, g_images, g_labels);
    return 0;
}
static int entry_normalize(NnqRun *run) {
    nnq_rt_data_normalize(run, g_ds, g_mode, g_stats_ds, g_stats_count);
    return 0;
}

/* Pixels of all samples of ds into g_x. */
static void fetch(NnqRun *run, int32_t ds) {
    g_ds = ds, g_index = NULL, g_start = 0, g_n = NIMG;
    CHECK(th_invoke(run, entry_batch, NULL) == 0);
}

void test_data_normalize(void) {
    CHECK(write_pair(th_tmpdir(), "plain", NIMG, false));
    char *pi = th_path("plain-images"), *pl = th_path("plain-labels");
    g_images = pi, g_labels = pl;
    NnqRun *run = quiet_run();
    CHECK(th_invoke(run, entry_load2, NULL) == 0);
    int32_t a = g_ds, b = g_ds2;
    /* statistics of the raw pixels of samples 0..4, in double */
    const int k = 5;
    double sum = 0, sq = 0;
    for (int i = 0; i < k; i++)
        for (int p = 0; p < PIX; p++)
            sum += pixel_byte(i, p / COLS, p % COLS) / 255.0;
    double mean = sum / (k * PIX);
    for (int i = 0; i < k; i++)
        for (int p = 0; p < PIX; p++) {
            double d = pixel_byte(i, p / COLS, p % COLS) / 255.0 - mean;
            sq += d * d;
        }
    double sd = sqrt(sq / (k * PIX));

    /* a normalized by its own first 5 samples */
    g_ds = a, g_mode = 1, g_stats_ds = a, g_stats_count = k;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    fetch(run, a);
    double m2 = 0, s2 = 0;
    for (int i = 0; i < k * PIX; i++)
        m2 += g_x[i];
    m2 /= k * PIX;
    for (int i = 0; i < k * PIX; i++)
        s2 += (g_x[i] - m2) * (g_x[i] - m2);
    s2 = sqrt(s2 / (k * PIX));
    CHECK(fabs(m2) < 1e-6 && fabs(s2 - 1) < 1e-6, "mean %g std %g after standardizing", m2, s2);
    int bad = 0;
    for (int i = 0; i < NIMG * PIX; i++) {
        double want = (pixel_byte(i / PIX, (i % PIX) / COLS, i % COLS) / 255.0 - mean) / sd;
        bad += fabs(g_x[i] - want) > 1e-5;
    }
    CHECK(bad == 0, "%d pixels differ from (x - mean) / std", bad);

    /* b "like a": a is already normalized, b must still get the raw statistics */
    g_ds = b, g_mode = 1, g_stats_ds = a, g_stats_count = k;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    float xa[NIMG * PIX];
    memcpy(xa, g_x, sizeof xa);
    fetch(run, b);
    bad = 0;
    for (int i = 0; i < NIMG * PIX; i++)
        bad += fabsf(g_x[i] - xa[i]) > 1e-5f;
    CHECK(bad == 0, "normalize like an already normalized set: %d pixels differ", bad);

    /* normalizing again changes nothing; mode 0 restores [0,1] */
    g_ds = a, g_mode = 1, g_stats_ds = a, g_stats_count = k;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    fetch(run, a);
    bad = 0;
    for (int i = 0; i < NIMG * PIX; i++)
        bad += fabsf(g_x[i] - xa[i]) > 1e-5f;
    CHECK(bad == 0, "second normalize moved %d pixels", bad);
    g_ds = a, g_mode = 0;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    fetch(run, a);
    bad = 0;
    for (int i = 0; i < NIMG * PIX; i++)
        bad += fabsf(g_x[i] - pixel_byte(i / PIX, (i % PIX) / COLS, i % COLS) / 255.0f) > 1e-6f;
    CHECK(bad == 0, "mode 0 after mode 1: %d pixels not restored", bad);

    /* bad statistics ranges */
    char *err = NULL;
    g_ds = a, g_mode = 1, g_stats_ds = a, g_stats_count = NIMG + 1;
    CHECK(th_invoke(run, entry_normalize, &err) == 1);
    CHECK(th_contains(err, "[0, 8)") && th_contains(err, "has 7 samples"), "got: %s", err);
    free(err);
    g_stats_count = 0;
    CHECK(th_invoke(run, entry_normalize, NULL) == 1);
    g_stats_count = 1, g_mode = 2;
    CHECK(th_invoke(run, entry_normalize, NULL) == 1, "unknown mode");
    nnq_run_free(run);

    /* constant images: zero variance */
    size_t li, ll;
    unsigned char *im = images_bytes(0x803, 2, 2, 2, &li);
    memset(im + 16, 9, 8);
    unsigned char *lb = labels_bytes(0x801, 2, &ll);
    char *pc = th_path("const-images"), *pcl = th_path("const-labels");
    CHECK(th_write_file(pc, im, li, false) && th_write_file(pcl, lb, ll, false));
    run = quiet_run();
    g_images = pc, g_labels = pcl;
    CHECK(th_invoke(run, entry_load2, NULL) == 0);
    g_ds = g_ds2, g_mode = 1, g_stats_ds = g_ds2, g_stats_count = 2;
    CHECK(th_invoke(run, entry_normalize, &err) == 1);
    CHECK(th_contains(err, "zero pixel variance"), "got: %s", err);
    free(err);
    nnq_run_free(run);
    free(im), free(lb), free(pc), free(pcl), free(pi), free(pl);
}

void test_data_batch(void) {
    CHECK(write_pair(th_tmpdir(), "plain", NIMG, false));
    char *pi = th_path("plain-images"), *pl = th_path("plain-labels");
    g_images = pi, g_labels = pl;
    NnqRun *run = quiet_run();
    CHECK(th_invoke(run, entry_load, NULL) == 0);
    char *err = NULL;
    g_index = NULL, g_start = 5, g_n = 3;
    CHECK(th_invoke(run, entry_batch, &err) == 1);
    CHECK(th_contains(err, "[5, 8)") && th_contains(err, pi), "got: %s", err);
    free(err);
    static const int64_t idx[] = {1, 2, 99};
    g_index = idx, g_start = 0, g_n = 3;
    CHECK(th_invoke(run, entry_batch, &err) == 1);
    CHECK(th_contains(err, "position 2 selects sample 99"), "got: %s", err);
    free(err);
    g_ds = 5;
    g_index = NULL, g_start = 0, g_n = 1;
    CHECK(th_invoke(run, entry_batch, &err) == 1);
    CHECK(th_contains(err, "invalid data set handle 5"), "got: %s", err);
    free(err);
    nnq_run_free(run);
    free(pi), free(pl);
}

/* ---- the real thing ---- */

static int32_t g_fm_train, g_fm_test;
static int64_t g_fm_counts[2];
static int entry_fashion(NnqRun *run) {
    g_fm_train = nnq_rt_data_idx(run, "fashion-mnist/train-images-idx3-ubyte.gz",
                                 "fashion-mnist/train-labels-idx1-ubyte.gz");
    g_fm_test = nnq_rt_data_idx(run, "fashion-mnist/t10k-images-idx3-ubyte.gz",
                                "fashion-mnist/t10k-labels-idx1-ubyte.gz");
    g_fm_counts[0] = nnq_rt_data_count(run, g_fm_train);
    g_fm_counts[1] = nnq_rt_data_count(run, g_fm_test);
    static const int64_t dims[3] = {1, 28, 28};
    nnq_rt_data_check(run, g_fm_train, 3, dims, 10, "fashion");
    nnq_rt_data_check(run, g_fm_test, 3, dims, 10, "fashion");
    return 0;
}

static float *g_big_x;
static int32_t *g_big_y;
static int entry_big_batch(NnqRun *run) {
    nnq_rt_data_batch(run, g_ds, NULL, g_start, g_n, g_big_x, g_big_y, 0);
    return 0;
}

void test_fashion_mnist(void) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) != 0) {
        th_skip("/usr/share/datasets/fashion-mnist not installed");
        return;
    }
    NnqRun *run = quiet_run();
    char *err = NULL;
    int rc = th_invoke(run, entry_fashion, &err);
    CHECK(rc == 0, "got: %s", err);
    free(err);
    CHECK(g_fm_counts[0] == 60000 && g_fm_counts[1] == 10000, "counts %lld / %lld",
          (long long)g_fm_counts[0], (long long)g_fm_counts[1]);
    enum { CHUNK = 10000 };
    g_big_x = malloc(sizeof(float) * CHUNK * 784);
    g_big_y = malloc(sizeof(int32_t) * CHUNK);
    for (int set = 0; set < 2; set++) {
        int64_t hist[10] = {0}, n = g_fm_counts[set], out = 0;
        double sum = 0;
        g_ds = set ? g_fm_test : g_fm_train;
        for (g_start = 0; g_start < n; g_start += CHUNK) {
            g_n = n - g_start < CHUNK ? n - g_start : CHUNK;
            CHECK(th_invoke(run, entry_big_batch, NULL) == 0);
            for (int64_t i = 0; i < g_n * 784; i++) {
                out += !(g_big_x[i] >= 0.0f && g_big_x[i] <= 1.0f);
                sum += g_big_x[i];
            }
            for (int64_t i = 0; i < g_n; i++)
                if (g_big_y[i] >= 0 && g_big_y[i] < 10)
                    hist[g_big_y[i]]++;
        }
        CHECK(out == 0, "%lld pixels outside [0,1]", (long long)out);
        for (int c = 0; c < 10; c++)
            CHECK(hist[c] == n / 10, "set %d class %d: %lld samples", set, c, (long long)hist[c]);
        double mean = sum / ((double)n * 784);
        CHECK(fabs(mean - 0.286) < 0.003, "set %d mean pixel %g (Fashion-MNIST: 0.286)", set,
              mean);
    }
    /* standardize train with its first 50000 samples, test like it */
    g_ds = g_fm_train, g_mode = 1, g_stats_ds = g_fm_train, g_stats_count = 50000;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    g_ds = g_fm_test;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    double sum = 0, sq = 0;
    g_ds = g_fm_train;
    for (g_start = 0; g_start < 50000; g_start += CHUNK) {
        g_n = CHUNK;
        CHECK(th_invoke(run, entry_big_batch, NULL) == 0);
        for (int64_t i = 0; i < g_n * 784; i++)
            sum += g_big_x[i], sq += (double)g_big_x[i] * g_big_x[i];
    }
    double n = 50000.0 * 784, mean = sum / n, sd = sqrt(sq / n - mean * mean);
    CHECK(fabs(mean) < 1e-4 && fabs(sd - 1) < 1e-4, "standardized train: mean %g std %g", mean,
          sd);
    free(g_big_x), free(g_big_y);
    nnq_run_free(run);
}
