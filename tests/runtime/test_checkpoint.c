/* test_checkpoint.c — checkpoint.c: a saved state comes back bit for bit with the random
 * generator where it was; the byte layout's header and CRC; checkpoints of another
 * program, truncated, corrupt or missing ones are refused naming the file before any
 * state is touched; failed saves (an impossible directory, a full disk, a .tmp that is
 * a directory) fail naming the path and leave the previous checkpoint as it was. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"

enum { NW = 1000 };

/* The "program": a description and three state regions. */
static float g_w[NW];
static int64_t g_step;
static double g_beta;
static int64_t g_batch = 100;         /* described */
static int64_t g_wbytes = sizeof g_w; /* declared size of g_w */
static const char *g_extra;           /* an extra state region's name, or NULL */
static const char *g_dir;             /* checkpoint directory */
static int32_t g_epoch = 3, g_epochs = 5, g_resumed;
static uint64_t g_next_bits; /* the generator's next draw after saving / resuming */

static void declare(NnqRun *run) {
    nnq_rt_checkpoint_describe(run, "model mlp", 0);
    nnq_rt_checkpoint_describe(run, "batch", g_batch);
    nnq_rt_checkpoint_state(run, "dense1.w.aux0", g_w, g_wbytes);
    nnq_rt_checkpoint_state(run, "dropout.step", &g_step, sizeof g_step);
    nnq_rt_checkpoint_state(run, "train.beta", &g_beta, sizeof g_beta);
    if (g_extra)
        nnq_rt_checkpoint_state(run, g_extra, &g_step, sizeof g_step);
}

static int entry_save(NnqRun *run) {
    nnq_rt_checkpoint_dir(run, g_dir);
    declare(run);
    nnq_rt_seed(run, 11);
    nnq_rt_random_bits(run);
    nnq_rt_checkpoint_save(run, g_epoch, g_epochs);
    g_next_bits = (uint64_t)nnq_rt_random_bits(run);
    return 0;
}

static int entry_resume(NnqRun *run) {
    declare(run);
    nnq_rt_seed(run, 99); /* the checkpoint's generator must replace this one */
    g_resumed = nnq_rt_checkpoint_resume(run, g_epochs);
    g_next_bits = (uint64_t)nnq_rt_random_bits(run);
    return 0;
}

static void fill_state(void) {
    for (int i = 0; i < NW; i++)
        g_w[i] = (float)i * 0.37f - 100.0f;
    g_w[5] = -0.0f;
    g_w[6] = 1e-40f;
    g_step = 0x123456789abcdefll;
    g_beta = 12.5;
}

static int save(char **err) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    return th_invoke_new(&o, entry_save, err);
}

static int resume(const char *from, char **err) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.resume_dir = from;
    return th_invoke_new(&o, entry_resume, err);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    *n = fread(b, 1, *n, f);
    fclose(f);
    return b;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void test_checkpoint_roundtrip(void) {
    char *dir = th_path("runs/a/b"); /* created with its parents */
    g_dir = dir;
    fill_state();
    char *err = NULL;
    int rc = save(&err);
    CHECK(rc == 0, "save failed: %s", err);
    free(err);
    uint64_t after_save = g_next_bits;
    char *file = th_path("runs/a/b/checkpoint.nnqc"),
         *tmp = th_path("runs/a/b/checkpoint.nnqc.tmp");
    CHECK(th_file_exists(file) && !th_file_exists(tmp));

    /* layout: magic, version, size, epoch, epochs; CRC-32 of the rest at the end */
    size_t n = 0;
    unsigned char *b = read_all(file, &n);
    CHECK(b && n > 60 && memcmp(b, "NNQC", 4) == 0 && le32(b + 4) == 1);
    if (b && n > 60) {
        CHECK(le32(b + 8) == n && le32(b + 12) == 0, "size field %u, file %zu", le32(b + 8), n);
        CHECK(le32(b + 16) == 3 && le32(b + 20) == 5);
        CHECK(le32(b + n - 4) == (uint32_t)crc32(0, b, (uInt)(n - 4)));
    }
    free(b);

    memset(g_w, 0, sizeof g_w);
    g_step = 0;
    g_beta = 0;
    rc = resume(dir, &err);
    CHECK(rc == 0, "resume failed: %s", err);
    free(err);
    float want[NW];
    int64_t step = g_step;
    double beta = g_beta;
    memcpy(want, g_w, sizeof want);
    fill_state();
    CHECK(memcmp(want, g_w, sizeof want) == 0, "weights differ after resuming");
    CHECK(step == g_step && beta == g_beta, "scalars differ after resuming");
    CHECK(g_resumed == 3, "resumed after epoch %d", g_resumed);
    CHECK(g_next_bits == after_save, "the generator did not continue where it was saved");

    /* --resume may name the file itself; a finished run (epoch == epochs) loads too */
    g_epochs = 3;
    rc = resume(file, &err);
    CHECK(rc == 0 && g_resumed == 3, "resume from the file: %s", err);
    free(err);
    g_epochs = 5;

    /* without --resume nothing is read or touched */
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    g_step = 7;
    CHECK(th_invoke_new(&o, entry_resume, NULL) == 0 && g_resumed == 0 && g_step == 7);
    free(file), free(tmp), free(dir);
}

/* Resuming must fail with `pattern` and the file's path, and restore nothing. */
static void expect_refused(const char *from, const char *path, const char *pattern) {
    fill_state();
    g_w[0] = 4242.0f;
    char *err = NULL;
    CHECK(resume(from, &err) == 1, "resume did not fail (%s)", pattern);
    CHECK(th_contains(err, pattern) && th_contains(err, path), "expected '%s' and '%s' in: %s",
          pattern, path, err);
    CHECK(g_w[0] == 4242.0f && g_step == 0x123456789abcdefll, "state changed by a refused resume");
    free(err);
}

void test_checkpoint_refusals(void) {
    char *dir = th_path("refuse");
    g_dir = dir;
    fill_state();
    CHECK(save(NULL) == 0);
    char *file = th_path("refuse/checkpoint.nnqc");
    size_t n = 0;
    unsigned char *good = read_all(file, &n);
    CHECK(good != NULL);
    if (!good)
        return;

    /* another program */
    g_batch = 50;
    expect_refused(dir, file, "different program: batch 100 there, 50 here");
    g_batch = 100;
    g_wbytes = sizeof g_w - 4;
    expect_refused(dir, file, "different program");
    g_wbytes = sizeof g_w;
    g_extra = "extra.state";
    expect_refused(dir, file, "different program");
    g_extra = NULL;
    g_epochs = 2;
    expect_refused(dir, file, "written after epoch 3, but this run has 2 epochs");
    g_epochs = 5;

    /* damaged files */
    CHECK(th_write_file(file, good, n - 10, false));
    expect_refused(dir, file, "truncated");
    CHECK(th_write_file(file, good, 30, false));
    expect_refused(dir, file, "truncated");
    CHECK(th_write_file(file, good, 0, false));
    expect_refused(dir, file, "truncated");
    good[n / 2] ^= 0x10;
    CHECK(th_write_file(file, good, n, false));
    expect_refused(dir, file, "corrupt");
    good[n / 2] ^= 0x10;
    CHECK(th_write_file(file, "NNQM this is a model", 20, false));
    expect_refused(dir, file, "not an nnq checkpoint");
    /* a description with a control character, its CRC right: shown as \xNN, never sent
     * to the terminal */
    unsigned char *m = memmem(good, n, "model mlp", 9);
    CHECK(m != NULL);
    if (m) {
        *m = 0x1b;
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), good, (uInt)(n - 4));
        unsigned char *c = good + n - 4, keep[4];
        memcpy(keep, c, 4);
        for (int i = 0; i < 4; i++)
            c[i] = (unsigned char)(crc >> (8 * i));
        CHECK(th_write_file(file, good, n, false));
        expect_refused(dir, file, "it has '\\x1bodel mlp' where this program has 'model mlp'");
        *m = 'm';
        memcpy(c, keep, 4);
    }
    unlink(file);
    expect_refused(dir, file, "No such file or directory");

    /* the intact file still loads */
    CHECK(th_write_file(file, good, n, false));
    char *err = NULL;
    int rc = resume(dir, &err);
    CHECK(rc == 0 && g_resumed == 3, "%s", err);
    free(err);
    free(good), free(file), free(dir);
}

/* Each state name is declared once, whatever their number: 20,000 distinct names (the
 * index of names grows past several sizes) are accepted; one declared again is refused,
 * naming it, also when its first declaration was the first of all. */
static int g_names, g_again; /* names declared, then the one declared again (-1: none) */
static int entry_names(NnqRun *run) {
    char name[32];
    for (int i = 0; i < g_names; i++) {
        snprintf(name, sizeof name, "dense%d.w.aux0", i);
        nnq_rt_checkpoint_state(run, name, &g_step, sizeof g_step);
    }
    if (g_again >= 0) {
        snprintf(name, sizeof name, "dense%d.w.aux0", g_again);
        nnq_rt_checkpoint_state(run, name, &g_step, sizeof g_step);
    }
    return 0;
}

void test_checkpoint_names(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    g_names = 20000;
    static const int again[] = {-1, 0, 7, 19999};
    for (size_t k = 0; k < sizeof again / sizeof *again; k++) {
        g_again = again[k];
        char *err = NULL, want[64];
        int rc = th_invoke_new(&o, entry_names, &err);
        snprintf(want, sizeof want, "state 'dense%d.w.aux0' declared twice", g_again);
        if (g_again < 0)
            CHECK(rc == 0, "20,000 distinct state names refused: %s", err ? err : "");
        else
            CHECK(rc == 1 && err && th_contains(err, want), "expected '%s', got %d: %s", want, rc, err ? err : "");
        free(err);
    }
}

void test_checkpoint_save_failures(void) {
    char *err = NULL;
    /* a directory that cannot exist (a path under a regular file): fails at once */
    g_dir = "/dev/null/ckpt";
    CHECK(save(&err) == 1);
    CHECK(th_contains(err, "/dev/null/ckpt") && th_contains(err, "Not a directory"), "got: %s",
          err);
    free(err);

    char *dir = th_path("keep");
    g_dir = dir;
    fill_state();
    CHECK(save(NULL) == 0);
    char *file = th_path("keep/checkpoint.nnqc"), *tmp = th_path("keep/checkpoint.nnqc.tmp");
    size_t n = 0, m = 0;
    unsigned char *old = read_all(file, &n), *now = NULL;
    g_epoch = 4; /* a later checkpoint, whose writing fails */

    /* the disk is full: the .tmp is a link to /dev/full, writes fail with ENOSPC */
    if (th_file_exists("/dev/full") && symlink("/dev/full", tmp) == 0) {
        CHECK(save(&err) == 1);
        CHECK(th_contains(err, file) && th_contains(err, "No space left on device"), "got: %s",
              err);
        free(err);
        struct stat st;
        CHECK(lstat(tmp, &st) != 0, "the .tmp is left after ENOSPC");
        now = read_all(file, &m);
        CHECK(now && m == n && memcmp(old, now, n) == 0, "the previous checkpoint changed");
        free(now);
        unlink(tmp);
    } else {
        printf("note: /dev/full unavailable, ENOSPC case not exercised\n");
    }

    /* the .tmp cannot be created (it is a directory) */
    mkdir(tmp, 0700);
    CHECK(save(&err) == 1);
    CHECK(th_contains(err, file) && th_contains(err, "Is a directory"), "got: %s", err);
    free(err);
    now = read_all(file, &m);
    CHECK(now && m == n && memcmp(old, now, n) == 0, "the previous checkpoint changed");
    free(now);
    rmdir(tmp);

    /* a read-only directory (meaningless for root, who may write anyway) */
    if (geteuid() != 0) {
        chmod(dir, 0500);
        CHECK(save(&err) == 1);
        CHECK(th_contains(err, dir) && th_contains(err, "Permission denied"), "got: %s", err);
        free(err);
        chmod(dir, 0700);
    }

    /* and the next good save replaces it */
    CHECK(save(NULL) == 0);
    now = read_all(file, &m);
    CHECK(now && m == n && le32(now + 16) == 4 && !th_file_exists(tmp));
    free(now);
    g_epoch = 3;
    free(old), free(file), free(tmp), free(dir);
}
