/* test_data.c — data.c: IDX loading (plain and gzip), the search path, validation
 * errors, nnq_rt_data_check, normalization, batches, CIFAR and .npy loading and their
 * errors, per-channel normalization, augmentation, and the real Fashion-MNIST. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

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

/* Writes n bytes to path as two gzip members, the first of `cut` bytes (what `cat a.gz
 * b.gz` makes); false on error. */
static bool write_members(const char *path, const unsigned char *data, size_t n, size_t cut) {
    if (!th_write_file(path, data, cut, true))
        return false;
    gzFile g = gzopen(path, "ab"); /* appending starts a new member */
    if (!g)
        return false;
    bool ok = gzwrite(g, data + cut, (unsigned)(n - cut)) == (int)(n - cut);
    return gzclose(g) == Z_OK && ok;
}

/* Writes name-images / name-labels (n samples) into dir: plain (gz 0), gzip-compressed
 * (1), or as two gzip members each, cut inside the header (2); returns false on error. */
static bool write_pair(const char *dir, const char *name, int n, int gz) {
    size_t li, ll;
    unsigned char *im = images_bytes(0x803, n, ROWS, COLS, &li);
    unsigned char *lb = labels_bytes(0x801, n, &ll);
    char *pi = NULL, *pl = NULL;
    if (asprintf(&pi, "%s/%s-images", dir, name) < 0 || asprintf(&pl, "%s/%s-labels", dir, name) < 0)
        abort();
    bool ok = gz == 2 ? write_members(pi, im, li, 10) && write_members(pl, lb, ll, 5)
                      : th_write_file(pi, im, li, gz) && th_write_file(pl, lb, ll, gz);
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
    const char *names[3] = {"plain", "gz", "members"};
    for (int g = 0; g < 3; g++) {
        CHECK(write_pair(dir, names[g], NIMG, g));
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
    CHECK(th_contains(err, ", nowhere/missing-images.gz (the current directory)"), "cwd not listed: %s", err);
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

/* The bytes of the file at path into buf (at most cap); how many. */
static size_t read_into(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap, f) : 0;
    if (f)
        fclose(f);
    return n;
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
    CHECK(th_contains(err, "bytes of pixel data (") &&
              th_contains(err, "after the 16-byte header, found 79 (image ") && th_contains(err, " is incomplete)"),
          "the read loop's message: %s", err);
    free(err), free(path);

    /* a header that declares far more than the file holds (54530 images of 2 x 54530, 23.8 GB
     * as floats): refused from the file's size before the pixels are allocated, plain, and
     * gzip-compressed by the most a compressed byte can hold (found by fuzz_data: the
     * gzip file was allocated and faulted in whole first) */
    memcpy(bad, im, li);
    put_be32(bad + 4, 54530), put_be32(bad + 8, 2), put_be32(bad + 12, 54530);
    CHECK(try_files("huge", bad, li, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "truncated: expected 5947041800 bytes of pixel data") &&
              th_contains(err, "found 84"),
          "got: %s", err);
    free(err), free(path);
    CHECK(try_files("hugegz", bad, li, lb, ll, true, &err, &path) == 1);
    CHECK(th_contains(err, "truncated: expected 5947041800 bytes of pixel data") &&
              th_contains(err, "compressed bytes can hold"),
          "got: %s", err);
    free(err), free(path);
    unsigned char hl[12];
    memcpy(hl, lb, sizeof hl);
    put_be32(hl + 4, 0xffffffffu);
    CHECK(try_files("hugelabels", im, li, hl, sizeof hl, true, &err, &path) == 1);
    CHECK(th_contains(err, "truncated: expected 4294967295 bytes of labels") &&
              th_contains(err, "compressed bytes can hold"),
          "got: %s", err);
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

    /* bytes after the last gzip member that are not gzip data are refused, as a plain
     * file's are (zlib's gzread ignored them); members one after another load as their
     * bytes joined (test_idx_load) */
    char *ph = th_path("head.gz"), *pt = th_path("tail.gz"), *px = th_path("extra.gz");
    CHECK(th_write_file(ph, im, 20, true) && th_write_file(pt, im + 20, li - 20, true) &&
          th_write_file(px, "xyz", 3, true));
    unsigned char cat[8192];
    size_t catn = read_into(ph, cat, sizeof cat);
    catn += read_into(pt, cat + catn, sizeof cat - catn);
    memcpy(cat + catn, "<html>", 6);
    CHECK(try_files("garbage", cat, catn + 6, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, path) && th_contains(err, "has 6 bytes after its gzip data that are not gzip data"),
          "got: %s", err);
    free(err), free(path);
    /* a last member of bytes beyond the images: the plain file's message */
    size_t catx = catn + read_into(px, cat + catn, sizeof cat - catn);
    CHECK(try_files("extramember", cat, catx, lb, ll, false, &err, &path) == 1);
    CHECK(th_contains(err, "3 unexpected bytes after 7 images"), "got: %s", err);
    free(err), free(path), free(ph), free(pt), free(px);

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

/* ---- CIFAR ---- */

enum { CIFAR_PIX = 3 * 32 * 32 };

/* Pixel (c, h, w) of the CIFAR test image numbered g (unique per image of a set). */
static unsigned char cifar_byte(int g, int c, int h, int w) {
    return (unsigned char)((g * 31 + c * 7 + h * 3 + w * 5 + g * c) & 255);
}

/* Writes n CIFAR records of images first..first+n into path: label bytes from lab(g)
 * (one for CIFAR-10, coarse and fine for CIFAR-100), then the pixels; `cut` bytes
 * removed from the end. */
static bool write_cifar(const char *path, int first, int n, bool hundred, int cut) {
    int rec = (hundred ? 2 : 1) + CIFAR_PIX;
    size_t size = (size_t)n * rec;
    unsigned char *b = malloc(size + 1);
    for (int i = 0; i < n; i++) {
        unsigned char *r = b + (size_t)i * rec;
        int g = first + i;
        if (hundred) {
            r[0] = (unsigned char)(g % 20);        /* coarse */
            r[1] = (unsigned char)((g * 7) % 100); /* fine */
        } else {
            r[0] = (unsigned char)(g % 10);
        }
        unsigned char *px = r + (hundred ? 2 : 1);
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 32; h++)
                for (int w = 0; w < 32; w++)
                    px[(c * 32 + h) * 32 + w] = cifar_byte(g, c, h, w);
    }
    bool ok = th_write_file(path, b, size - (size_t)cut, false);
    free(b);
    return ok;
}

static char *dir_file(const char *dir, const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        abort();
    return p;
}

/* A CIFAR-10 directory: data_batch_k.bin holds images 3(k-1)..3k-1, test_batch.bin
 * images 100..103. */
static void make_cifar10(const char *dir) {
    mkdir(dir, 0700);
    for (int k = 1; k <= 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", k);
        char *p = dir_file(dir, name);
        CHECK(write_cifar(p, 3 * (k - 1), 3, false, 0), "writing %s", p);
        free(p);
    }
    char *p = dir_file(dir, "test_batch.bin");
    CHECK(write_cifar(p, 100, 4, false, 0));
    free(p);
}

/* A CIFAR-100 directory: train.bin images 0..5, test.bin images 50..51. */
static void make_cifar100(const char *dir) {
    mkdir(dir, 0700);
    char *p = dir_file(dir, "train.bin"), *q = dir_file(dir, "test.bin");
    CHECK(write_cifar(p, 0, 6, true, 0) && write_cifar(q, 50, 2, true, 0));
    free(p), free(q);
}

static const char *g_cifar_dir;
static int32_t g_classes, g_split, g_coarse;
static float *g_bx; /* big batch buffers, for CIFAR-sized samples */
static int32_t *g_by;

static int entry_cifar(NnqRun *run) {
    g_ds = nnq_rt_data_cifar(run, g_cifar_dir, g_classes, g_split, g_coarse);
    g_count = nnq_rt_data_count(run, g_ds);
    return 0;
}

static int entry_bbatch(NnqRun *run) {
    nnq_rt_data_batch(run, g_ds, g_index, g_start, g_n, g_bx, g_by, 0);
    return 0;
}

/* Loads CIFAR (data_dir = the test directory, so `dir` goes through the search path);
 * rc, and the error when err is not NULL. */
static int cifar_status(const char *dir, int classes, int split, int coarse, char **err) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.data_dir = th_tmpdir();
    g_cifar_dir = dir, g_classes = classes, g_split = split, g_coarse = coarse;
    g_count = -1;
    return th_invoke_new(&o, entry_cifar, err);
}

/* Loads CIFAR in a fresh run and checks every pixel and label of the n samples against
 * images first.. with labels from lab. */
static void cifar_expect(const char *dir, int classes, int split, int coarse, int first, int n,
                         int (*lab)(int g)) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.data_dir = th_tmpdir();
    NnqRun *run = nnq_run_new(&o);
    g_cifar_dir = dir, g_classes = classes, g_split = split, g_coarse = coarse;
    char *err = NULL;
    int rc = th_invoke(run, entry_cifar, &err);
    CHECK(rc == 0, "%s: %s", dir, err);
    free(err);
    CHECK(g_count == n, "%s split %d: count %lld, want %d", dir, split, (long long)g_count, n);
    if (g_count != n) {
        nnq_run_free(run);
        return;
    }
    g_bx = malloc(sizeof(float) * (size_t)n * CIFAR_PIX);
    g_by = malloc(sizeof(int32_t) * (size_t)n);
    g_index = NULL, g_start = 0, g_n = n;
    CHECK(th_invoke(run, entry_bbatch, NULL) == 0);
    int bad_pix = 0, bad_lab = 0;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 32; h++)
                for (int w = 0; w < 32; w++)
                    bad_pix += g_bx[(size_t)i * CIFAR_PIX + (c * 32 + h) * 32 + w] !=
                               cifar_byte(first + i, c, h, w) / 255.0f;
        bad_lab += g_by[i] != lab(first + i);
    }
    CHECK(bad_pix == 0, "%s split %d: %d pixels differ from byte/255", dir, split, bad_pix);
    CHECK(bad_lab == 0, "%s split %d coarse %d: %d labels differ", dir, split, coarse, bad_lab);
    free(g_bx), free(g_by);
    nnq_run_free(run);
}

static int lab10(int g) {
    return g % 10;
}
static int lab100_coarse(int g) {
    return g % 20;
}
static int lab100_fine(int g) {
    return (g * 7) % 100;
}

static int entry_cifar_check(NnqRun *run) {
    int32_t ds = nnq_rt_data_cifar(run, g_cifar_dir, g_classes, g_split, g_coarse);
    nnq_rt_data_check(run, ds, g_rank, g_dims, g_nclasses, "resnet");
    return 0;
}

void test_cifar_load(void) {
    char *c10 = th_path("cifar10"), *c100 = th_path("cifar100");
    make_cifar10(c10);
    make_cifar100(c100);
    /* relative names: found through --data-dir; training batches concatenated in order */
    cifar_expect("cifar10", 10, 0, 0, 0, 15, lab10);
    cifar_expect("cifar10", 10, 1, 0, 100, 4, lab10);
    cifar_expect(c10, 10, 0, 0, 0, 15, lab10); /* absolute */
    cifar_expect("cifar100", 100, 0, 0, 0, 6, lab100_fine);
    cifar_expect("cifar100", 100, 0, 1, 0, 6, lab100_coarse);
    cifar_expect("cifar100", 100, 1, 7, 50, 2, lab100_coarse); /* any coarse != 0 */
    cifar_expect("cifar100", 100, 1, 0, 50, 2, lab100_fine);

    /* data_check: [3, 32, 32] fits; a single-channel model does not */
    g_cifar_dir = c10, g_classes = 10, g_split = 0, g_coarse = 0;
    g_rank = 3, g_dims[0] = 3, g_dims[1] = 32, g_dims[2] = 32, g_nclasses = 10;
    char *err = NULL;
    int rc = th_invoke_new(NULL, entry_cifar_check, &err);
    CHECK(rc == 0, "got: %s", err);
    free(err);
    g_dims[0] = 1;
    CHECK(th_invoke_new(NULL, entry_cifar_check, &err) == 1);
    CHECK(th_contains(err, "[1, 32, 32]") && th_contains(err, "holds 3x32x32 images") &&
              th_contains(err, "data_batch_[1-5].bin"),
          "got: %s", err);
    free(err);
    g_rank = 2, g_dims[0] = 32, g_dims[1] = 32;
    CHECK(th_invoke_new(NULL, entry_cifar_check, NULL) == 1, "rank 2 needs one channel");
    g_rank = 3, g_dims[0] = 3, g_nclasses = 9; /* image 9 has label 9 */
    CHECK(th_invoke_new(NULL, entry_cifar_check, &err) == 1);
    CHECK(th_contains(err, "label 9 at sample 9"), "got: %s", err);
    free(err);
    free(c10), free(c100);
}

void test_cifar_errors(void) {
    char *d = th_path("cifar-bad");
    char *err = NULL;
    int fds = th_open_fds();
    make_cifar10(d);
    int rc = cifar_status("cifar-bad", 10, 0, 0, &err);
    CHECK(rc == 0, "sanity: %s", err);
    free(err);

    /* a missing training batch: the message names it and the expected set */
    char *b3 = dir_file(d, "data_batch_3.bin");
    CHECK(remove(b3) == 0);
    CHECK(cifar_status("cifar-bad", 10, 0, 0, &err) == 1);
    CHECK(th_contains(err, b3) && th_contains(err, "data_batch_1.bin .. data_batch_5.bin"),
          "got: %s", err);
    free(err);
    CHECK(cifar_status("cifar-bad", 10, 1, 0, &err) == 0, "the test split needs no batch 3");
    free(err);
    CHECK(write_cifar(b3, 6, 3, false, 0));

    /* a truncated record: 3 * 3073 - 5 bytes */
    CHECK(write_cifar(b3, 6, 3, false, 5));
    CHECK(cifar_status("cifar-bad", 10, 0, 0, &err) == 1);
    CHECK(th_contains(err, b3) && th_contains(err, "9214 bytes") &&
              th_contains(err, "3073-byte records"),
          "got: %s", err);
    free(err);

    /* an empty file */
    CHECK(th_write_file(b3, "", 0, false));
    CHECK(cifar_status("cifar-bad", 10, 0, 0, &err) == 1);
    CHECK(th_contains(err, b3) && th_contains(err, "is empty"), "got: %s", err);
    free(err);
    CHECK(write_cifar(b3, 6, 3, false, 0));

    /* label 10 in CIFAR-10: the file, record and value are named */
    char *tb = dir_file(d, "test_batch.bin");
    CHECK(write_cifar(tb, 100, 4, false, 0));
    FILE *f = fopen(tb, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 2 * 3073, SEEK_SET);
        fputc(10, f);
        fclose(f);
    }
    CHECK(cifar_status("cifar-bad", 10, 1, 0, &err) == 1);
    CHECK(th_contains(err, tb) && th_contains(err, "record 2") && th_contains(err, "label 10") &&
              th_contains(err, "0..9"),
          "got: %s", err);
    free(err);

    /* CIFAR-100: coarse label 20 (rejected whichever label set is asked for) */
    char *d100 = th_path("cifar100-bad");
    make_cifar100(d100);
    char *tr = dir_file(d100, "train.bin");
    f = fopen(tr, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 3 * 3074, SEEK_SET);
        fputc(20, f);
        fclose(f);
    }
    CHECK(cifar_status("cifar100-bad", 100, 0, 1, &err) == 1);
    CHECK(th_contains(err, tr) && th_contains(err, "record 3") &&
              th_contains(err, "coarse label 20") && th_contains(err, "0..19"),
          "got: %s", err);
    free(err);
    CHECK(cifar_status("cifar100-bad", 100, 0, 0, NULL) == 1, "a bad coarse byte is corrupt");
    /* fine label 100 */
    CHECK(write_cifar(tr, 0, 6, true, 0));
    f = fopen(tr, "r+b");
    if (f) {
        fseek(f, 1, SEEK_SET);
        fputc(100, f);
        fclose(f);
    }
    CHECK(cifar_status("cifar100-bad", 100, 0, 0, &err) == 1);
    CHECK(th_contains(err, "record 0") && th_contains(err, "fine label 100"), "got: %s", err);
    free(err);
    /* a CIFAR-10 file where CIFAR-100 records are expected: 3073 is not 3074 */
    CHECK(write_cifar(tr, 0, 6, false, 0));
    CHECK(cifar_status("cifar100-bad", 100, 0, 0, &err) == 1);
    CHECK(th_contains(err, "3074-byte records"), "got: %s", err);
    free(err);
    /* missing test.bin */
    char *te = dir_file(d100, "test.bin");
    CHECK(remove(te) == 0);
    CHECK(cifar_status("cifar100-bad", 100, 1, 0, &err) == 1);
    CHECK(th_contains(err, te) && th_contains(err, "test set is test.bin"), "got: %s", err);
    free(err);

    /* the directory itself */
    CHECK(cifar_status("no-such-cifar", 10, 0, 0, &err) == 1);
    CHECK(th_contains(err, "cannot find data directory 'no-such-cifar'") &&
              th_contains(err, "/usr/share/datasets/no-such-cifar"),
          "got: %s", err);
    free(err);
    CHECK(cifar_status(tb, 10, 1, 0, &err) == 1); /* absolute, but a file */
    CHECK(th_contains(err, "is not a directory"), "got: %s", err);
    free(err);
    CHECK(cifar_status("cifar-bad/test_batch.bin", 10, 1, 0, &err) == 1); /* relative file */
    CHECK(th_contains(err, "cannot find data directory"), "got: %s", err);
    free(err);

    /* bad arguments */
    CHECK(cifar_status("cifar-bad", 7, 0, 0, &err) == 1);
    CHECK(th_contains(err, "10") && th_contains(err, "100") && th_contains(err, "not 7"), "got: %s",
          err);
    free(err);
    CHECK(cifar_status("cifar-bad", 10, 2, 0, &err) == 1);
    CHECK(th_contains(err, "split") && th_contains(err, "not 2"), "got: %s", err);
    free(err);
    CHECK(cifar_status("cifar-bad", 10, 0, 1, &err) == 1);
    CHECK(th_contains(err, "coarse labels exist only in CIFAR-100"), "got: %s", err);
    free(err);
    CHECK(th_open_fds() == fds, "%d files open before the error cases, %d after", fds, th_open_fds());
    free(d), free(b3), free(tb), free(d100), free(tr), free(te);
}

/* ---- NumPy .npy ---- */

/* numpy's own header for descr and shape text, e.g. "(4, 3, 5)". */
static bool write_npy(const char *path, int major, const char *descr, const char *shape,
                      const void *data, size_t n) {
    char header[256];
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
             shape);
    return th_write_npy(path, major, header, false, data, n, false);
}

static const char *g_npy_images, *g_npy_labels;
static int entry_npy(NnqRun *run) {
    g_ds = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    g_count = nnq_rt_data_count(run, g_ds);
    return 0;
}

static int npy_status(const char *images, const char *labels, char **err) {
    g_npy_images = images, g_npy_labels = labels, g_count = -1;
    return th_invoke_new(NULL, entry_npy, err);
}

static void put_le(unsigned char *p, uint64_t v, int size) {
    for (int i = 0; i < size; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Fresh run: loads the pair and fetches all n samples of `sample` values into g_bx/g_by. */
static NnqRun *npy_fetch(const char *images, const char *labels, int n, int sample) {
    NnqRun *run = quiet_run();
    g_npy_images = images, g_npy_labels = labels;
    char *err = NULL;
    int rc = th_invoke(run, entry_npy, &err);
    CHECK(rc == 0, "%s: %s", images, err);
    free(err);
    CHECK(g_count == n, "%s: count %lld", images, (long long)g_count);
    g_bx = calloc((size_t)n * sample + 1, sizeof(float));
    g_by = calloc((size_t)n + 1, sizeof(int32_t));
    g_index = NULL, g_start = 0, g_n = g_count == n ? n : 0;
    CHECK(th_invoke(run, entry_bbatch, NULL) == 0);
    return run;
}

static int entry_npy_check(NnqRun *run) {
    int32_t ds = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    nnq_rt_data_check(run, ds, g_rank, g_dims, g_nclasses, "cnn");
    return 0;
}

void test_npy_load(void) {
    /* uint8 [4, 3, 5] (format 1.0) with int64 labels */
    enum { N = 4, H = 3, W = 5 };
    unsigned char u8[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        u8[i] = (unsigned char)(i * 37 + 11);
    unsigned char l8[N * 8];
    static const int64_t labels[N] = {3, 0, 2147483647, 7};
    for (int i = 0; i < N; i++)
        put_le(l8 + 8 * i, (uint64_t)labels[i], 8);
    char *pi = th_path("u8.npy"), *pl = th_path("i8.npy");
    CHECK(write_npy(pi, 1, "|u1", "(4, 3, 5)", u8, sizeof u8));
    CHECK(write_npy(pl, 1, "<i8", "(4,)", l8, sizeof l8));
    NnqRun *run = npy_fetch(pi, pl, N, H * W);
    int bad = 0;
    for (int i = 0; i < N * H * W; i++)
        bad += g_bx[i] != u8[i] / 255.0f;
    CHECK(bad == 0, "%d uint8 pixels differ from byte/255", bad);
    CHECK(g_by[0] == 3 && g_by[1] == 0 && g_by[2] == 2147483647 && g_by[3] == 7);
    free(g_bx), free(g_by);
    nnq_run_free(run);

    /* float32 [3, 2, 2, 3] (format 2.0) with uint8 labels; values kept as they are */
    enum { M = 3, C = 2, S = C * 2 * 3 };
    float f4[M * S];
    unsigned char fb[sizeof f4], lb[M] = {1, 0, 255};
    for (int i = 0; i < M * S; i++) {
        f4[i] = (float)(i - 17) * 0.37f + 1e-3f;
        uint32_t u;
        memcpy(&u, &f4[i], 4);
        put_le(fb + 4 * i, u, 4);
    }
    char *pf = th_path("f4.npy"), *plu = th_path("u1l.npy");
    CHECK(write_npy(pf, 2, "<f4", "(3, 2, 2, 3)", fb, sizeof fb));
    CHECK(write_npy(plu, 2, "|u1", "(3,)", lb, sizeof lb));
    run = npy_fetch(pf, plu, M, S);
    bad = 0;
    for (int i = 0; i < M * S; i++)
        bad += g_bx[i] != f4[i];
    CHECK(bad == 0, "%d float32 pixels differ", bad);
    CHECK(g_by[0] == 1 && g_by[1] == 0 && g_by[2] == 255);
    free(g_bx), free(g_by);
    nnq_run_free(run);

    /* float64 [2, 2, 2] (format 3.0, gzip-compressed), '<u2' labels; a header written
     * differently: double quotes, other key order, no trailing comma, no padding */
    double f8[8] = {0.5, -1.25, 3e10, 1e-300, 0, -0.0, 7, 1.0 / 3};
    unsigned char db[sizeof f8], l2[4];
    for (int i = 0; i < 8; i++) {
        uint64_t u;
        memcpy(&u, &f8[i], 8);
        put_le(db + 8 * i, u, 8);
    }
    put_le(l2, 65535, 2), put_le(l2 + 2, 9, 2);
    char *pd = th_path("f8.npy.gz"), *pl2 = th_path("u2.npy");
    CHECK(th_write_npy(pd, 3, "{\"shape\": (2,2,2), \"fortran_order\":False,\"descr\":\"<f8\"}\n",
                       true, db, sizeof db, true));
    CHECK(write_npy(pl2, 1, "<u2", "(2,)", l2, sizeof l2));
    run = npy_fetch(pd, pl2, 2, 4);
    bad = 0;
    for (int i = 0; i < 8; i++)
        bad += g_bx[i] != (float)f8[i];
    CHECK(bad == 0, "%d float64 pixels differ", bad);
    CHECK(g_by[0] == 65535 && g_by[1] == 9);
    free(g_bx), free(g_by);
    nnq_run_free(run);

    /* every integer label type; -1 stored in the signed ones is caught elsewhere */
    static const char *ltypes[] = {"|i1", "<i2", "<i4", "<u4", "<u8", "|u1", "<i8", "<u2"};
    for (int t = 0; t < 8; t++) {
        int size = ltypes[t][2] - '0';
        unsigned char lt[N * 8];
        for (int i = 0; i < N; i++)
            put_le(lt + size * i, (uint64_t)(i * 5 + 1), size);
        char *p = th_path("lt.npy");
        CHECK(write_npy(p, 1, ltypes[t], "(4,)", lt, (size_t)N * size));
        run = npy_fetch(pi, p, N, H * W);
        CHECK(g_by[0] == 1 && g_by[3] == 16, "%s: labels %d %d", ltypes[t], g_by[0], g_by[3]);
        free(g_bx), free(g_by), free(p);
        nnq_run_free(run);
    }

    /* data_check sees the channels: [2, 2, 3] */
    char *err = NULL;
    g_npy_images = pf, g_npy_labels = plu;
    g_rank = 3, g_dims[0] = 2, g_dims[1] = 2, g_dims[2] = 3, g_nclasses = 256;
    int rc = th_invoke_new(NULL, entry_npy_check, &err);
    CHECK(rc == 0, "got: %s", err);
    free(err);
    g_rank = 2, g_dims[0] = 2, g_dims[1] = 3;
    CHECK(th_invoke_new(NULL, entry_npy_check, &err) == 1);
    CHECK(th_contains(err, "holds 2x2x3 images (shape [2, 2, 3])"), "got: %s", err);
    free(err);
    g_rank = 3, g_dims[0] = 2, g_dims[1] = 2, g_dims[2] = 3, g_nclasses = 255;
    CHECK(th_invoke_new(NULL, entry_npy_check, &err) == 1);
    CHECK(th_contains(err, "label 255 at sample 2"), "got: %s", err);
    free(err);
    free(pi), free(pl), free(pf), free(plu), free(pd), free(pl2);
}

void test_npy_errors(void) {
    enum { N = 4, H = 3, W = 5 };
    unsigned char u8[N * H * W], l8[N * 8];
    memset(u8, 9, sizeof u8);
    for (int i = 0; i < N; i++)
        put_le(l8 + 8 * i, (uint64_t)i, 8);
    char *pi = th_path("e-img.npy"), *pl = th_path("e-lab.npy"), *px = th_path("e-x.npy");
    CHECK(write_npy(pi, 1, "|u1", "(4, 3, 5)", u8, sizeof u8));
    CHECK(write_npy(pl, 1, "<i8", "(4,)", l8, sizeof l8));
    char *err = NULL;
    int fds = th_open_fds();
    int rc = npy_status(pi, pl, &err);
    CHECK(rc == 0, "sanity: %s", err);
    free(err);

    /* data_check: 4-D images carry channels */
    g_npy_images = pi, g_npy_labels = pl;
    g_rank = 2, g_dims[0] = H, g_dims[1] = W, g_nclasses = 4;
    rc = th_invoke_new(NULL, entry_npy_check, &err);
    CHECK(rc == 0, "got: %s", err);
    free(err);

    /* Writes px with `header` (numpy padding) and `data`, loads it as the images (or
     * labels) and checks the message holds want and want2. */
#define NPY_EXPECT(as_labels, major, header, data, n, want, want2)                                 \
    do {                                                                                           \
        CHECK(th_write_npy(px, major, header, false, data, n, false));                             \
        CHECK((as_labels ? npy_status(pi, px, &err) : npy_status(px, pl, &err)) == 1,              \
              "accepted: %s", header);                                                             \
        CHECK(th_contains(err, px) && th_contains(err, want) && th_contains(err, want2),           \
              "%s\n  got: %s", header, err);                                                       \
        free(err);                                                                                 \
    } while (0)

    /* bad magic */
    CHECK(th_write_file(px, "\x93NUMPZ\x01\x00\x00\x00", 10, false));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, px) && th_contains(err, "not a .npy file"), "got: %s", err);
    free(err);
    CHECK(th_write_file(px, "PK\x03\x04zipzipzip", 13, false));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, ".npz"), "got: %s", err);
    free(err);
    CHECK(th_write_file(px, "", 0, false));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "empty"), "got: %s", err);
    free(err);
    /* unknown version */
    CHECK(th_write_npy(px, 4, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5), }",
                       false, u8, sizeof u8, false));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "version 4.0"), "got: %s", err);
    free(err);

    /* header contents */
    NPY_EXPECT(false, 1, "{'descr': '|u1', 'fortran_order': True, 'shape': (4, 3, 5), }", u8,
               sizeof u8, "Fortran", "");
    NPY_EXPECT(false, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4, 3, 5), }", u8,
               sizeof u8, "big-endian", "'>f4'");
    NPY_EXPECT(true, 1, "{'descr': '>i8', 'fortran_order': False, 'shape': (4,), }", l8, sizeof l8,
               "big-endian", "");
    NPY_EXPECT(false, 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (4, 3, 5), }", u8,
               sizeof u8, "dtype '<c8'", "not supported");
    NPY_EXPECT(false, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 3, 5), }", u8,
               sizeof u8, "dtype '<i4'", "'|u1'");
    NPY_EXPECT(true, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", l8, 16,
               "dtype '<f4'", "integers");
    NPY_EXPECT(false, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (60,), }", u8,
               sizeof u8, "shape (60,)", "(N, C, H, W)");
    NPY_EXPECT(false, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 3, 5), }", u8, 0,
               "shape (0, 3, 5)", "no images");
    NPY_EXPECT(false, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 5000, 3, 4), }", u8,
               sizeof u8, "invalid image dimensions", "more than 4096 channels");
    NPY_EXPECT(false, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3, 0, 4), }", u8,
               sizeof u8, "invalid image dimensions", "empty dimension");
    NPY_EXPECT(true, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", l8,
               sizeof l8, "shape (2, 2)", "labels must have shape (N,)");
    NPY_EXPECT(true, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", l8, 24,
               "has 4 images but", "has 3 labels");

    /* malformed headers */
    static const struct {
        const char *header, *want;
    } bad[] = {
        {"{'descr': '|u1', 'fortran_order': False}", "no 'shape' key"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5), 'x': 1}", "unexpected key"},
        {"{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5)}",
         "duplicate key"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (60)}", "trailing comma"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, -3, 5)}", "negative dimension"},
        {"{'descr': '|u1', 'fortran_order': false, 'shape': (4, 3, 5)}", "True or False"},
        {"{'descr': '|u1', 'fortran_order': Falsey, 'shape': (4, 3, 5)}", "True or False"},
        {"{'descr': '|u1, 'fortran_order': False, 'shape': (4, 3, 5)}", "expected ','"},
        {"{'descr' '|u1', 'fortran_order': False, 'shape': (4, 3, 5)}", "expected ':'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5)} junk", "after the dict"},
        {"{'descr': '|u1' 'fortran_order': False, 'shape': (4, 3, 5)}", "expected ','"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4 3 5)}", "expected ','"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5.0)}", "expected an integer"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 03, 5)}", "leading zero"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': [4, 3, 5]}", "expected a tuple"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}", "structured"},
        {"{'descr': '|\\u1', 'fortran_order': False, 'shape': (4, 3, 5)}", "escape"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999, 3, 5)}",
         "too large"},
        {"'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5)", "expected '{'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5)", "expected ',' or '}'"},
        {"", "expected '{'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5), \xe9}", "ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        NPY_EXPECT(false, 1, bad[i].header, u8, sizeof u8, "malformed .npy header", bad[i].want);
    /* a header length beyond the file */
    CHECK(th_write_file(px, "\x93NUMPY\x01\x00\x40\x00{'descr'", 17, false));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "truncated") && th_contains(err, "64-byte .npy header, found 7"),
          "got: %s", err);
    free(err);

    /* labels: negative, too large */
    unsigned char lb[N * 8];
    memcpy(lb, l8, sizeof lb);
    put_le(lb + 16, (uint64_t)-1, 8);
    CHECK(write_npy(px, 1, "<i8", "(4,)", lb, sizeof lb));
    CHECK(npy_status(pi, px, &err) == 1);
    CHECK(th_contains(err, px) && th_contains(err, "negative label -1 at index 2"), "got: %s", err);
    free(err);
    unsigned char lb1[N] = {0, 1, 2, 0xff};
    CHECK(write_npy(px, 1, "|i1", "(4,)", lb1, sizeof lb1));
    CHECK(npy_status(pi, px, &err) == 1);
    CHECK(th_contains(err, "negative label -1 at index 3"), "got: %s", err);
    free(err);
    put_le(lb + 16, (uint64_t)1 << 31, 8);
    CHECK(write_npy(px, 1, "<u8", "(4,)", lb, sizeof lb));
    CHECK(npy_status(pi, px, &err) == 1);
    CHECK(th_contains(err, "label 2147483648 at index 2") && th_contains(err, "2^31"), "got: %s",
          err);
    free(err);

    /* truncated data, plain and gzip; trailing bytes */
    CHECK(write_npy(px, 1, "|u1", "(4, 3, 5)", u8, sizeof u8 - 5));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, px) && th_contains(err, "truncated") &&
              th_contains(err, "expected 60 bytes") && th_contains(err, "found 55"),
          "got: %s", err);
    free(err);
    CHECK(th_write_npy(px, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 5), }",
                       false, u8, sizeof u8 - 5, true));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "expected 60 bytes") && th_contains(err, "found 55"), "got: %s", err);
    free(err);
    CHECK(write_npy(px, 1, "<i8", "(4,)", l8, sizeof l8 - 3));
    CHECK(npy_status(pi, px, &err) == 1);
    CHECK(th_contains(err, "expected 32 bytes") && th_contains(err, "found 29"), "got: %s", err);
    free(err);
    CHECK(write_npy(px, 1, "|u1", "(4, 3, 2)", u8, sizeof u8)); /* 60 bytes for 24 */
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "36 unexpected bytes after 4 images"), "got: %s", err);
    free(err);

    /* non-finite and out-of-range pixels */
    float fv[N * H * W];
    unsigned char fb[sizeof fv];
    for (int i = 0; i < N * H * W; i++)
        fv[i] = 0.5f;
    fv[7] = NAN;
    for (int i = 0; i < N * H * W; i++) {
        uint32_t u;
        memcpy(&u, &fv[i], 4);
        put_le(fb + 4 * i, u, 4);
    }
    CHECK(write_npy(px, 1, "<f4", "(4, 3, 5)", fb, sizeof fb));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, px) && th_contains(err, "non-finite pixel (nan) at index 7") &&
              th_contains(err, "image 0"),
          "got: %s", err);
    free(err);
    fv[7] = 0.5f;
    fv[20] = -INFINITY;
    uint32_t u;
    memcpy(&u, &fv[20], 4);
    put_le(fb + 80, u, 4);
    memcpy(&u, &fv[7], 4);
    put_le(fb + 28, u, 4);
    CHECK(write_npy(px, 1, "<f4", "(4, 3, 5)", fb, sizeof fb));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "non-finite pixel (-inf) at index 20 (image 1)"), "got: %s", err);
    free(err);
    unsigned char db[N * H * W * 8];
    memset(db, 0, sizeof db);
    double big = 1e300;
    uint64_t u64;
    memcpy(&u64, &big, 8);
    put_le(db + 8 * 59, u64, 8);
    CHECK(write_npy(px, 1, "<f8", "(4, 3, 5)", db, sizeof db));
    CHECK(npy_status(px, pl, &err) == 1);
    CHECK(th_contains(err, "index 59 (image 3)") && th_contains(err, "range of float"), "got: %s",
          err);
    free(err);
#undef NPY_EXPECT
    CHECK(th_open_fds() == fds, "%d files open before the error cases, %d after", fds, th_open_fds());
    free(pi), free(pl), free(px);
}

/* ---- per-channel normalization ---- */

enum { NC = 3, NH = 2, NW = 3, NS = NC * NH * NW, NN = 6 };

/* A 3-channel uint8 set: channel c of image i spreads differently per channel. */
static unsigned char chan_byte(int i, int c, int h, int w) {
    return (unsigned char)((c * 80 + (i * 7 + h * 3 + w) * (c + 1) * 3) & 255);
}

static void write_chan_set(const char *images, const char *labels, int zero_var_channel) {
    unsigned char px[NN * NS], lb[NN];
    for (int i = 0; i < NN; i++) {
        for (int c = 0; c < NC; c++)
            for (int h = 0; h < NH; h++)
                for (int w = 0; w < NW; w++)
                    px[((i * NC + c) * NH + h) * NW + w] =
                        c == zero_var_channel ? 42 : chan_byte(i, c, h, w);
        lb[i] = (unsigned char)i;
    }
    CHECK(write_npy(images, 1, "|u1", "(6, 3, 2, 3)", px, sizeof px));
    CHECK(write_npy(labels, 1, "|u1", "(6,)", lb, sizeof lb));
}

static int entry_npy2(NnqRun *run) {
    g_ds = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    g_ds2 = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    return 0;
}

static int entry_idx_one(NnqRun *run) {
    g_ds2 = nnq_rt_data_idx(run, g_images, g_labels);
    return 0;
}

/* All NN samples of ds into out. */
static void fetch_chan(NnqRun *run, int32_t ds, float *out) {
    g_ds = ds, g_index = NULL, g_start = 0, g_n = NN, g_bx = out, g_by = NULL;
    CHECK(th_invoke(run, entry_bbatch, NULL) == 0);
}

void test_data_normalize_channels(void) {
    char *pi = th_path("ch-img.npy"), *pl = th_path("ch-lab.npy");
    write_chan_set(pi, pl, -1);
    NnqRun *run = quiet_run();
    g_npy_images = pi, g_npy_labels = pl;
    CHECK(th_invoke(run, entry_npy2, NULL) == 0);
    int32_t a = g_ds, b = g_ds2;
    /* per-channel statistics of the loaded pixels of samples 0..3, in double */
    const int k = 4;
    double mean[NC], sd[NC];
    for (int c = 0; c < NC; c++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < k; i++)
            for (int p = 0; p < NH * NW; p++)
                sum += chan_byte(i, c, p / NW, p % NW) / 255.0;
        mean[c] = sum / (k * NH * NW);
        for (int i = 0; i < k; i++)
            for (int p = 0; p < NH * NW; p++) {
                double d = chan_byte(i, c, p / NW, p % NW) / 255.0 - mean[c];
                sq += d * d;
            }
        sd[c] = sqrt(sq / (k * NH * NW));
    }
    CHECK(fabs(mean[0] - mean[2]) > 0.05 && fabs(sd[0] - sd[2]) > 0.01,
          "the channels should differ: means %g %g, stds %g %g", mean[0], mean[2], sd[0], sd[2]);

    g_ds = a, g_mode = 1, g_stats_ds = a, g_stats_count = k;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    float xa[NN * NS], xb[NN * NS];
    fetch_chan(run, a, xa);
    int bad = 0;
    for (int c = 0; c < NC; c++) {
        double m = 0, s = 0;
        for (int i = 0; i < k; i++)
            for (int p = 0; p < NH * NW; p++)
                m += xa[(i * NC + c) * NH * NW + p];
        m /= k * NH * NW;
        for (int i = 0; i < k; i++)
            for (int p = 0; p < NH * NW; p++) {
                double d = xa[(i * NC + c) * NH * NW + p] - m;
                s += d * d;
            }
        s = sqrt(s / (k * NH * NW));
        CHECK(fabs(m) < 1e-6 && fabs(s - 1) < 1e-6, "channel %d: mean %g std %g", c, m, s);
        for (int i = 0; i < NN; i++)
            for (int p = 0; p < NH * NW; p++) {
                double want = (chan_byte(i, c, p / NW, p % NW) / 255.0 - mean[c]) / sd[c];
                bad += fabs(xa[(i * NC + c) * NH * NW + p] - want) > 1e-5;
            }
    }
    CHECK(bad == 0, "%d pixels differ from (x - mean_c) / std_c", bad);

    /* b like a (already normalized): the same values */
    g_ds = b, g_stats_ds = a;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    fetch_chan(run, b, xb);
    bad = 0;
    for (int i = 0; i < NN * NS; i++)
        bad += fabsf(xa[i] - xb[i]) > 1e-6f;
    CHECK(bad == 0, "normalize like another set: %d pixels differ", bad);
    /* mode 0 restores byte/255 */
    g_ds = b, g_mode = 0;
    CHECK(th_invoke(run, entry_normalize, NULL) == 0);
    fetch_chan(run, b, xb);
    bad = 0;
    for (int i = 0; i < NN * NS; i++) {
        int c = (i / (NH * NW)) % NC, p = i % (NH * NW);
        bad += fabsf(xb[i] - chan_byte(i / NS, c, p / NW, p % NW) / 255.0f) > 1e-6f;
    }
    CHECK(bad == 0, "mode 0: %d pixels not restored", bad);

    /* a single-channel set cannot use 3-channel statistics, nor the reverse */
    CHECK(write_pair(th_tmpdir(), "plain", NIMG, false));
    char *ii = th_path("plain-images"), *il = th_path("plain-labels");
    g_images = ii, g_labels = il;
    CHECK(th_invoke(run, entry_idx_one, NULL) == 0);
    char *err = NULL;
    g_ds = g_ds2, g_mode = 1, g_stats_ds = a, g_stats_count = 2;
    CHECK(th_invoke(run, entry_normalize, &err) == 1);
    CHECK(th_contains(err, "1 channel") && th_contains(err, "3 channels") &&
              th_contains(err, "channel counts differ") && th_contains(err, ii),
          "got: %s", err);
    free(err);
    g_stats_ds = g_ds, g_ds = a;
    CHECK(th_invoke(run, entry_normalize, NULL) == 1, "3 channels with 1-channel statistics");
    nnq_run_free(run);

    /* zero variance in one channel only: named */
    write_chan_set(pi, pl, 1);
    run = quiet_run();
    CHECK(th_invoke(run, entry_npy2, NULL) == 0);
    g_mode = 1, g_stats_ds = g_ds, g_stats_count = NN;
    CHECK(th_invoke(run, entry_normalize, &err) == 1);
    CHECK(th_contains(err, "zero pixel variance in channel 1"), "got: %s", err);
    free(err);
    nnq_run_free(run);
    free(pi), free(pl), free(ii), free(il);
}

/* ---- augmentation ---- */

enum { AC = 2, AH = 5, AW = 6, AP = AH * AW, AS = AC * AP, AN = 4, AB = 96 };

static int32_t g_aug_pad, g_aug_flip, g_augment;
static int64_t g_seed, g_bits;
static float g_plain[AN * AS]; /* the normalized samples, unaugmented */
static float g_aug[AB * AS];   /* an augmented batch */
static int64_t g_aug_index[AB];

/* Loads the augmentation set, standardizes it, sets the augmentation, reseeds, takes
 * the plain samples and then one batch (g_augment) of AB samples (index i % AN), then
 * 64 bits from the generator. */
static int entry_augment(NnqRun *run) {
    int32_t ds = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    nnq_rt_data_normalize(run, ds, 1, ds, AN);
    nnq_rt_data_augment(run, ds, g_aug_pad, g_aug_flip);
    nnq_rt_data_batch(run, ds, NULL, 0, AN, g_plain, NULL, 0);
    nnq_rt_seed(run, g_seed);
    for (int i = 0; i < AB; i++)
        g_aug_index[i] = i % AN;
    nnq_rt_data_batch(run, ds, g_aug_index, 0, AB, g_aug, NULL, g_augment);
    g_bits = nnq_rt_random_bits(run);
    return 0;
}

static int entry_augment_bad(NnqRun *run) {
    int32_t ds = nnq_rt_data_npy(run, g_npy_images, g_npy_labels);
    nnq_rt_data_augment(run, g_ds < 0 ? ds + 1 : ds, g_aug_pad, g_aug_flip);
    return 0;
}

static int augment_run(int pad, int flip, int augment, int64_t seed) {
    g_aug_pad = pad, g_aug_flip = flip, g_augment = augment, g_seed = seed;
    char *err = NULL;
    int rc = th_invoke_new(NULL, entry_augment, &err);
    CHECK(rc == 0, "got: %s", err);
    free(err);
    return rc;
}

/* Is out the window of sample `in` padded by pad with black[c], at offset (dy, dx) of
 * the padded image, mirrored when flip? */
static bool is_window(const float *out, const float *in, const float *black, int pad, int dy,
                      int dx, bool flip) {
    for (int c = 0; c < AC; c++)
        for (int h = 0; h < AH; h++)
            for (int w = 0; w < AW; w++) {
                int sr = h + dy - pad, sc = (flip ? AW - 1 - w : w) + dx - pad;
                float o = out[c * AP + h * AW + w];
                if (sr < 0 || sr >= AH || sc < 0 || sc >= AW) {
                    if (fabsf(o - black[c]) > 1e-5f)
                        return false;
                } else if (o != in[c * AP + sr * AW + sc]) {
                    return false;
                }
            }
    return true;
}

void test_data_augment(void) {
    /* a 2-channel uint8 set with every byte in 1..250, so a padded "black" pixel differs
     * from every image pixel */
    unsigned char px[AN * AS], lb[AN] = {0, 1, 2, 3};
    for (int i = 0; i < AN * AS; i++)
        px[i] = (unsigned char)(1 + (i * 53 + i / AS * 7) % 250);
    char *pi = th_path("aug-img.npy"), *pl = th_path("aug-lab.npy");
    CHECK(write_npy(pi, 1, "|u1", "(4, 2, 5, 6)", px, sizeof px));
    CHECK(write_npy(pl, 1, "|u1", "(4,)", lb, sizeof lb));
    g_npy_images = pi, g_npy_labels = pl;
    /* the normalized black: (0 - mean_c) / std_c over the 4 samples */
    float black[AC];
    for (int c = 0; c < AC; c++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < AN; i++)
            for (int p = 0; p < AP; p++)
                sum += px[i * AS + c * AP + p] / 255.0;
        double m = sum / (AN * AP);
        for (int i = 0; i < AN; i++)
            for (int p = 0; p < AP; p++) {
                double d = px[i * AS + c * AP + p] / 255.0 - m;
                sq += d * d;
            }
        black[c] = (float)(-m / sqrt(sq / (AN * AP)));
    }

    /* no augmentation asked: an exact copy, and no random numbers drawn */
    CHECK(augment_run(3, 1, 0, 5) == 0);
    int bad = 0;
    for (int i = 0; i < AB; i++)
        bad += memcmp(g_aug + i * AS, g_plain + (i % AN) * AS, AS * sizeof(float)) != 0;
    CHECK(bad == 0, "augment 0: %d samples not copied exactly", bad);
    int64_t bits_plain = g_bits;
    CHECK(augment_run(0, 0, 1, 5) == 0); /* asked, but none set */
    bad = 0;
    for (int i = 0; i < AB; i++)
        bad += memcmp(g_aug + i * AS, g_plain + (i % AN) * AS, AS * sizeof(float)) != 0;
    CHECK(bad == 0 && g_bits == bits_plain, "no augmentation set: %d samples changed", bad);

    /* flips only: each sample is the original or its mirror, both occur */
    CHECK(augment_run(0, 1, 1, 5) == 0);
    CHECK(g_bits != bits_plain, "flips draw from the run's generator");
    int same = 0, mirrored = 0, neither = 0;
    for (int i = 0; i < AB; i++) {
        const float *o = g_aug + i * AS, *in = g_plain + (i % AN) * AS;
        if (is_window(o, in, black, 0, 0, 0, false))
            same++;
        else if (is_window(o, in, black, 0, 0, 0, true))
            mirrored++;
        else
            neither++;
    }
    CHECK(neither == 0 && same > 10 && mirrored > 10, "flips: %d same, %d mirrored, %d neither",
          same, mirrored, neither);

    /* pad 2 and flips: each sample is some window of the padded image; the offsets vary */
    enum { PAD = 2 };
    CHECK(augment_run(PAD, 1, 1, 5) == 0);
    float first[AB * AS];
    memcpy(first, g_aug, sizeof first);
    int seen[2 * PAD + 1][2 * PAD + 1][2];
    memset(seen, 0, sizeof seen);
    int unmatched = 0;
    for (int i = 0; i < AB; i++) {
        const float *o = g_aug + i * AS, *in = g_plain + (i % AN) * AS;
        int matches = 0;
        for (int dy = 0; dy <= 2 * PAD; dy++)
            for (int dx = 0; dx <= 2 * PAD; dx++)
                for (int f = 0; f < 2; f++)
                    if (is_window(o, in, black, PAD, dy, dx, f)) {
                        seen[dy][dx][f]++;
                        matches++;
                    }
        unmatched += matches == 0;
    }
    CHECK(unmatched == 0, "%d of %d samples are no padded window of their image", unmatched, AB);
    int offsets = 0, corners = 0, flipped = 0;
    for (int dy = 0; dy <= 2 * PAD; dy++)
        for (int dx = 0; dx <= 2 * PAD; dx++) {
            offsets += seen[dy][dx][0] + seen[dy][dx][1] > 0;
            flipped += seen[dy][dx][1];
            if ((dy == 0 || dy == 2 * PAD) && (dx == 0 || dx == 2 * PAD))
                corners += seen[dy][dx][0] + seen[dy][dx][1];
        }
    CHECK(offsets >= 15 && corners > 0 && flipped > 10 && flipped < AB - 10,
          "offsets: %d of 25 seen, %d in corners, %d flipped", offsets, corners, flipped);
    /* padding only (no flips) */
    CHECK(augment_run(PAD, 0, 1, 9) == 0);
    unmatched = 0;
    for (int i = 0; i < AB; i++) {
        int matches = 0;
        for (int dy = 0; dy <= 2 * PAD; dy++)
            for (int dx = 0; dx <= 2 * PAD; dx++)
                matches +=
                    is_window(g_aug + i * AS, g_plain + (i % AN) * AS, black, PAD, dy, dx, false);
        unmatched += matches == 0;
    }
    CHECK(unmatched == 0, "pad only: %d samples unmatched", unmatched);

    /* deterministic given the seed; another seed gives another batch */
    CHECK(augment_run(PAD, 1, 1, 5) == 0);
    CHECK(memcmp(first, g_aug, sizeof first) == 0, "same seed, different batch");
    CHECK(augment_run(PAD, 1, 1, 6) == 0);
    CHECK(memcmp(first, g_aug, sizeof first) != 0, "seeds 5 and 6 gave the same batch");

    /* bad settings */
    char *err = NULL;
    g_ds = 0;
    g_aug_pad = -1, g_aug_flip = 0;
    CHECK(th_invoke_new(NULL, entry_augment_bad, &err) == 1);
    CHECK(th_contains(err, "padding -1") && th_contains(err, "0..64"), "got: %s", err);
    free(err);
    g_aug_pad = 65;
    CHECK(th_invoke_new(NULL, entry_augment_bad, NULL) == 1, "pad 65 rejected");
    g_aug_pad = 64;
    CHECK(th_invoke_new(NULL, entry_augment_bad, NULL) == 0, "pad 64 accepted");
    g_ds = -1, g_aug_pad = 1;
    CHECK(th_invoke_new(NULL, entry_augment_bad, &err) == 1);
    CHECK(th_contains(err, "invalid data set handle 1"), "got: %s", err);
    free(err);
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
