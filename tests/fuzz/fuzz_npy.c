/* fuzz_npy.c — the runtime's .npy reader (runtime/npy.c) under a fuzzer: any byte
 * string, written to a file, is read as
 *   - the initial weights of a [2, 3] tensor (nnq_rt_init_tensor, `init from`), and of a
 *     [4] variance (optional, >= 0);
 *   - the images of a data set (nnq_rt_data_npy) with a valid label file, and the labels
 *     of one with valid images.
 * It must never crash, hang or leak: bad input is a reported error (nnq_rt_fail, caught
 * by nnq_run_invoke), good input is read.
 *
 * With clang: cmake -DNNQ_FUZZ=ON builds `fuzz_npy` (libFuzzer with ASan and UBSan;
 * tools/test.sh runs it for a bounded time, seeded with tests/fuzz/npy/). Always built:
 * `fuzz_npy_replay FILE...`, which feeds files through the same entry point (in the
 * default suite: the seeds, each also cut at 64 places). Not part of nnq: a test tool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnq_rt.h"
#include "put_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_input[128], g_images[128], g_labels[128];

/* A .npy 1.0 file: header dict padded to 64 bytes, then n data bytes. */
static bool put_npy(const char *path, const char *dict, const void *p, size_t n) {
    unsigned char buf[256];
    size_t len = strlen(dict), total = (10 + len + 1 + 63) / 64 * 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(total - 10), buf[9] = 0;
    memcpy(buf + 10, dict, len);
    memset(buf + 10 + len, ' ', total - 10 - len - 1);
    buf[total - 1] = '\n';
    memcpy(buf + total, p, n);
    return put_file(path, buf, total + n, false);
}

static void cleanup(void) {
    unlink(g_input), unlink(g_images), unlink(g_labels), rmdir(g_dir);
}

/* Once: a private directory (removed at exit) with a valid image file ([2, 2, 2] bytes)
 * and label file. */
static void setup(void) {
    if (g_dir[0])
        return;
    snprintf(g_dir, sizeof g_dir, "/tmp/nnq-fuzz-npy-XXXXXX");
    if (!mkdtemp(g_dir))
        abort();
    atexit(cleanup);
    snprintf(g_input, sizeof g_input, "%s/t.npy", g_dir);
    snprintf(g_images, sizeof g_images, "%s/images.npy", g_dir);
    snprintf(g_labels, sizeof g_labels, "%s/labels.npy", g_dir);
    static const unsigned char px[8] = {0, 1, 2, 3, 250, 251, 252, 255}, lb[2] = {1, 0};
    if (!put_npy(g_images, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }", px, 8) ||
        !put_npy(g_labels, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", lb, 2))
        abort();
}

static int entry_weights(NnqRun *run) {
    static const int64_t dims[2] = {2, 3}, dv[1] = {4};
    float w[6], v[4];
    nnq_rt_init_tensor(run, g_dir, "t", 2, dims, w, 0);
    nnq_rt_init_tensor(run, g_dir, "t", 1, dv, v, NNQ_INIT_OPTIONAL | NNQ_INIT_NONNEG);
    return 0;
}

static int entry_images(NnqRun *run) {
    nnq_rt_data_npy(run, g_input, g_labels);
    return 0;
}

static int entry_labels(NnqRun *run) {
    nnq_rt_data_npy(run, g_images, g_input);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (!put_file(g_input, data, size, false))
        abort();
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.threads = 1;
    int (*const entries[3])(NnqRun *) = {entry_weights, entry_images, entry_labels};
    for (int i = 0; i < 3; i++) {
        NnqRun *run = nnq_run_new(&o);
        if (!run)
            abort();
        nnq_run_invoke(run, entries[i]);
        nnq_run_free(run);
    }
    return 0;
}

#ifndef NNQ_LIBFUZZER
#include "replay.h"
int main(int argc, char **argv) {
    return fuzz_replay_main(argc, argv, "fuzz_npy_replay", 0);
}
#endif
