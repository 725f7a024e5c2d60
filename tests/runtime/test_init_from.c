/* test_init_from.c — tests of init_from.c: initial weights read from .npy files
 * (nnq_rt_init_from, nnq_rt_init_tensor). The .npy header parser they share with data
 * sets is tested in test_data.c; here: what a tensor accepts, the optional files, the
 * messages (whole, with a long path too), --resume, and that no file stays open. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static const char *g_dir, *g_name;
static int32_t g_rank, g_flags, g_got;
static const int64_t *g_dims;
static float g_dst[64];
static char *g_resolved;

static int entry_tensor(NnqRun *run) {
    g_got = nnq_rt_init_tensor(run, g_dir, g_name, g_rank, g_dims, g_dst, g_flags);
    return 0;
}

static int entry_from(NnqRun *run) {
    g_resolved = nnq_rt_init_from(run, g_dir);
    if (g_resolved)
        g_resolved = strdup(g_resolved); /* the run's copy goes with the run */
    return 0;
}

/* Reads g_dir/NAME.npy as a tensor of shape dims; returns nnq_run_invoke's result and
 * the message in *err (NULL to drop it). */
static int read_tensor(const char *name, int32_t rank, const int64_t *dims, int32_t flags,
                       char **err) {
    g_name = name, g_rank = rank, g_dims = dims, g_flags = flags, g_got = -1;
    for (int i = 0; i < 64; i++)
        g_dst[i] = -7;
    return th_invoke_new(NULL, entry_tensor, err);
}

static void put_f32(unsigned char *p, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static bool write_f32(const char *dir, const char *name, const char *descr, const char *shape,
                      bool fortran, const float *v, int n, bool gz) {
    char path[4096], header[256];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
             fortran ? "True" : "False", shape);
    unsigned char bytes[4 * 64];
    for (int i = 0; i < n; i++)
        put_f32(bytes + 4 * i, v[i]);
    return th_write_npy(path, 1, header, false, bytes, 4 * (size_t)n, gz);
}

void test_init_tensor(void) {
    char *dir = th_path("w");
    mkdir(dir, 0700);
    g_dir = dir;
    float v[6] = {0.5f, -1.25f, 3e10f, 1e-30f, -0.0f, 7};
    static const int64_t d23[2] = {2, 3}, d6[1] = {6};
    CHECK(write_f32(dir, "dense1.w", "<f4", "(2, 3)", false, v, 6, false));
    char *err = NULL;
    CHECK(read_tensor("dense1.w", 2, d23, 0, &err) == 0, "%s", err ? err : "");
    free(err);
    CHECK(g_got == 1 && memcmp(g_dst, v, sizeof v) == 0 && g_dst[6] == -7);
    /* gzip-compressed, and the trailing slash of a directory */
    float pos[6] = {1, 2, 0, 4, 5, 6};
    CHECK(write_f32(dir, "bn1.running_var", "<f4", "(6,)", false, pos, 6, true));
    char *slash = th_path("w/");
    g_dir = slash;
    CHECK(read_tensor("bn1.running_var", 1, d6, NNQ_INIT_OPTIONAL | NNQ_INIT_NONNEG, NULL) == 0);
    CHECK(g_got == 1 && memcmp(g_dst, pos, sizeof pos) == 0);
    g_dir = dir;
    /* an optional file that is not there: 0, the tensor untouched */
    CHECK(read_tensor("bn1.running_mean", 1, d6, NNQ_INIT_OPTIONAL, NULL) == 0);
    CHECK(g_got == 0 && g_dst[0] == -7 && g_dst[5] == -7);

    /* nnq_rt_init_from: the directory on the search path; nothing with --resume */
    g_dir = "w";
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.data_dir = th_tmpdir();
    g_resolved = NULL;
    CHECK(th_invoke_new(&o, entry_from, &err) == 0, "%s", err);
    free(err);
    CHECK(g_resolved && strcmp(g_resolved, dir) == 0, "resolved to %s",
          g_resolved ? g_resolved : "NULL");
    free(g_resolved);
    o.resume_dir = "runs/ck";
    g_dir = "no-such-directory";
    g_resolved = (char *)"x";
    CHECK(th_invoke_new(&o, entry_from, NULL) == 0 && g_resolved == NULL);
    o.resume_dir = NULL;
    CHECK(th_invoke_new(&o, entry_from, &err) == 1);
    CHECK(th_contains(err, "cannot find `init from` directory 'no-such-directory'; tried: "),
          "got: %s", err);
    free(err);
    free(slash), free(dir);
}

void test_init_tensor_errors(void) {
    char *dir = th_path("we");
    mkdir(dir, 0700);
    g_dir = dir;
    static const int64_t d23[2] = {2, 3}, d3[1] = {3};
    float v[6] = {1, 2, 3, 4, 5, 6};
    int fds = th_open_fds();
    char *err = NULL;

    /* WRITE makes we/t.npy; the read of shape [2, 3] must fail with want and want2 */
#define EXPECT(WRITE, flags, want, want2)                                                          \
    do {                                                                                           \
        CHECK(WRITE);                                                                              \
        CHECK(read_tensor("t", 2, d23, flags, &err) == 1, "accepted: %s", #WRITE);                 \
        CHECK(th_contains(err, "we/t.npy") && th_contains(err, want) && th_contains(err, want2),   \
              "%s\n  got: %s", #WRITE, err);                                                       \
        free(err);                                                                                 \
    } while (0)

    char path[4096];
    snprintf(path, sizeof path, "%s/t.npy", dir);
    remove(path);
    CHECK(read_tensor("t", 2, d23, 0, &err) == 1);
    CHECK(th_contains(err, "cannot open '") &&
              th_contains(
                  err,
                  "we/t.npy', the initial weights of t (shape (2, 3)): No such file or directory"),
          "got: %s", err);
    free(err);
    EXPECT(write_f32(dir, "t", "<f8", "(2, 3)", false, v, 6, false), 0, "has dtype '<f8'",
           "must be float32, dtype '<f4'");
    EXPECT(write_f32(dir, "t", "<i4", "(2, 3)", false, v, 6, false), 0, "has dtype '<i4'", "");
    EXPECT(write_f32(dir, "t", "<c8", "(2, 3)", false, v, 6, false), 0, "has dtype '<c8'", "");
    EXPECT(write_f32(dir, "t", ">f4", "(2, 3)", false, v, 6, false), 0, "has dtype '>f4'", "");
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", true, v, 6, false), 0, "Fortran", "");
    EXPECT(write_f32(dir, "t", "<f4", "(3, 2)", false, v, 6, false), 0,
           "has shape (3, 2); expected (2, 3), the shape of t", "");
    EXPECT(write_f32(dir, "t", "<f4", "(6,)", false, v, 6, false), 0, "has shape (6,)", "");
    EXPECT(write_f32(dir, "t", "<f4", "(1, 2, 3)", false, v, 6, false), 0, "has shape (1, 2, 3)",
           "");
    EXPECT(write_f32(dir, "t", "<f4", "()", false, v, 1, false), 0, "has shape ()", "");
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, v, 5, false), 0,
           "is truncated: expected 24 bytes of data", "found 20");
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, v, 5, true), 0, "is truncated", "found 20");
    EXPECT(write_f32(dir, "t", "<f4", "(2, 2)", false, v, 6, false), 0, "has shape (2, 2)", "");
    float w[7] = {1, 2, 3, 4, 5, 6, 7};
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, w, 7, false), 0,
           "has 4 unexpected bytes after the array", "");
    float nan6[6] = {1, 2, 3, 4, NAN, 6}, inf6[6] = {-INFINITY, 2, 3, 4, 5, 6};
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, nan6, 6, false), 0,
           "has the non-finite value nan at index 4 (of 6 values of t)", "");
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, inf6, 6, true), 0,
           "has the non-finite value -inf at index 0", "");
    float neg[6] = {1, 2, 3, 4, 5, -0.5f};
    EXPECT(write_f32(dir, "t", "<f4", "(2, 3)", false, neg, 6, false), NNQ_INIT_NONNEG,
           "has the negative variance -0.5 at index 5", "");
    /* a missing file is an error for a required tensor whatever the flags but OPTIONAL;
     * a file that is there but bad is an error for an optional one too */
    EXPECT(write_f32(dir, "t", "<f4", "(3,)", false, v, 3, false), NNQ_INIT_OPTIONAL,
           "has shape (3,); expected (2, 3)", "");
    CHECK(th_write_file(path, "\x93NUMPY\x01\x00\x05\x00{'des", 15, false));
    CHECK(read_tensor("t", 2, d23, 0, &err) == 1);
    CHECK(th_contains(err, "malformed .npy header"), "got: %s", err);
    free(err);
    /* a control character in the header: named, not sent to the terminal */
    CHECK(th_write_file(path, "\x93NUMPY\x01\x00\x06\x00{\x1b[2J\n", 16, false));
    CHECK(read_tensor("t", 2, d23, 0, &err) == 1);
    CHECK(th_contains(err, "byte 0x1b (the header must be ASCII)") && !strchr(err, 0x1b), "got: %s", err);
    free(err);
    remove(path);
    mkdir(path, 0700);
    CHECK(read_tensor("t", 2, d23, NNQ_INIT_OPTIONAL, &err) == 1);
    CHECK(th_contains(err, "we/t.npy' is a directory, not the .npy file of t"), "got: %s", err);
    free(err);
    rmdir(path);

    /* a long path: the whole message, never cut (directories of 200-character names) */
    char *deep = strdup(dir);
    for (int i = 0; i < 12; i++) {
        char *next = NULL;
        CHECK(asprintf(&next, "%s/%0200d", deep, i) > 0);
        free(deep);
        deep = next;
        mkdir(deep, 0700);
    }
    g_dir = deep;
    CHECK(write_f32(deep, "dense1.b", "<f4", "(3, 1)", false, v, 3, false));
    CHECK(read_tensor("dense1.b", 1, d3, 0, &err) == 1);
    CHECK(th_contains(err, deep) &&
              th_contains(err, "has shape (3, 1); expected (3,), the shape of dense1.b"),
          "got: %s", err);
    free(err);
    CHECK(write_f32(deep, "dense1.b", "<f4", "(3,)", false, v, 2, false));
    CHECK(read_tensor("dense1.b", 1, d3, 0, &err) == 1);
    CHECK(th_contains(err, deep) && th_contains(err, "after the 128-byte header, found 8"),
          "got: %s", err);
    free(err);
    free(deep);
    CHECK(th_open_fds() == fds, "%d files open before the error cases, %d after", fds, th_open_fds());
    free(dir);
#undef EXPECT
}
