/* fuzz_data.c — the runtime's IDX and CIFAR readers (runtime/data.c) under a fuzzer: any
 * byte string, written to a file, is read as
 *   - the images of an IDX data set with a valid label file, and the labels of one with
 *     valid images, each as it is and gzip-compressed (the reader takes either);
 *   - CIFAR-10's test_batch.bin and CIFAR-100's test.bin (fine and coarse labels).
 * What loads is then checked against a 2 x 2 sample of 10 classes and its first sample
 * batched, as a training program does. It must never crash, hang or leak: bad input is a
 * reported error (nnq_rt_fail, caught by nnq_run_invoke), good input is read.
 *
 * With clang: cmake -DNNQ_FUZZ=ON builds `fuzz_data` (libFuzzer with ASan and UBSan;
 * tools/test.sh runs it for a bounded time, seeded with tests/fuzz/data/). Always built:
 * `fuzz_data_replay FILE...`, which feeds files through the same entry point (in the
 * default suite: the seeds, each also cut at 64 places and changed at 64 bytes). Not
 * part of nnq: a test tool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnq_rt.h"
#include "put_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_input[128], g_images[128], g_labels[128], g_c10[128], g_c100[128],
    g_c10_file[160], g_c100_file[160];
static const char *g_img, *g_lab, *g_cdir;
static int32_t g_classes;

static void cleanup(void) {
    unlink(g_input), unlink(g_images), unlink(g_labels), unlink(g_c10_file), unlink(g_c100_file);
    rmdir(g_c10), rmdir(g_c100), rmdir(g_dir);
}

/* Once: a private directory (removed at exit) with a valid IDX image file (two 2 x 2
 * images) and label file, and a folder for each CIFAR variant. */
static void setup(void) {
    if (g_dir[0])
        return;
    snprintf(g_dir, sizeof g_dir, "/tmp/nnq-fuzz-data-XXXXXX");
    if (!mkdtemp(g_dir))
        abort();
    atexit(cleanup);
    snprintf(g_input, sizeof g_input, "%s/input", g_dir);
    snprintf(g_images, sizeof g_images, "%s/images", g_dir);
    snprintf(g_labels, sizeof g_labels, "%s/labels", g_dir);
    snprintf(g_c10, sizeof g_c10, "%s/c10", g_dir);
    snprintf(g_c100, sizeof g_c100, "%s/c100", g_dir);
    snprintf(g_c10_file, sizeof g_c10_file, "%s/test_batch.bin", g_c10);
    snprintf(g_c100_file, sizeof g_c100_file, "%s/test.bin", g_c100);
    static const unsigned char images[24] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2,
                                             0, 1, 2, 3, 250, 251, 252, 255};
    static const unsigned char labels[10] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 0};
    if (mkdir(g_c10, 0700) || mkdir(g_c100, 0700) || !put_file(g_images, images, 24, false) ||
        !put_file(g_labels, labels, 10, false))
        abort();
}

/* A loaded data set as a program uses it: its shape and classes checked, a sample read. */
static void use(NnqRun *run, int32_t ds, int32_t rank, const int64_t *dims, int64_t sample) {
    nnq_rt_data_check(run, ds, rank, dims, g_classes, "the fuzzed data");
    if (nnq_rt_data_count(run, ds) < 1)
        return;
    float *x = malloc(sizeof(float) * (size_t)sample);
    int32_t y;
    if (!x)
        abort();
    nnq_rt_data_batch(run, ds, NULL, 0, 1, x, &y, 0);
    free(x);
}

static int entry_idx(NnqRun *run) {
    static const int64_t dims[3] = {1, 2, 2};
    use(run, nnq_rt_data_idx(run, g_img, g_lab), 3, dims, 4);
    return 0;
}

static int entry_cifar(NnqRun *run) {
    static const int64_t dims[3] = {3, 32, 32};
    for (int32_t coarse = 0; coarse <= (g_classes == 100); coarse++)
        use(run, nnq_rt_data_cifar(run, g_cdir, g_classes, 1, coarse), 3, dims, 3 * 32 * 32);
    return 0;
}

static void run_entry(int (*entry)(NnqRun *)) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    o.threads = 1;
    NnqRun *run = nnq_run_new(&o);
    if (!run)
        abort();
    nnq_run_invoke(run, entry);
    nnq_run_free(run);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    g_classes = 10;
    for (int gz = 0; gz <= 1; gz++) {
        if (!put_file(g_input, data, size, gz))
            abort();
        g_img = g_input, g_lab = g_labels;
        run_entry(entry_idx);
        g_img = g_images, g_lab = g_input;
        run_entry(entry_idx);
    }
    if (!put_file(g_c10_file, data, size, false) || !put_file(g_c100_file, data, size, false))
        abort();
    g_cdir = g_c10;
    run_entry(entry_cifar);
    g_classes = 100, g_cdir = g_c100;
    run_entry(entry_cifar);
    return 0;
}

#ifndef NNQ_LIBFUZZER
#include "replay.h"
int main(int argc, char **argv) {
    return fuzz_replay_main(argc, argv, "fuzz_data_replay", 64);
}
#endif
