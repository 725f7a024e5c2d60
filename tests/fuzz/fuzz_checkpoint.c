/* fuzz_checkpoint.c — the checkpoint reader (runtime/checkpoint.c, `--resume`) under a
 * fuzzer: any byte string, with its size field (bytes 8..15) set to its length and its
 * last 4 bytes replaced by the CRC-32 of the rest (so that mutations reach the
 * description and state lists the checks guard, instead of all stopping at them), is
 * written to a file and resumed from by a "program" that declares a description and five
 * state regions, as generated code does. It must never crash, hang or leak: a checkpoint
 * of another program, a truncated or corrupt one, is a reported error (nnq_rt_fail,
 * caught by nnq_run_invoke); a good one is restored.
 *
 * With clang: cmake -DNNQ_FUZZ=ON builds `fuzz_checkpoint` (libFuzzer with ASan and
 * UBSan; tools/test.sh runs it for a bounded time, seeded with tests/fuzz/checkpoints/).
 * Always built: `fuzz_checkpoint_replay FILE...`, which feeds files through the same
 * entry point (in the default suite: the seeds, each whole, cut at 64 places and with
 * 1,000 one-byte changes), and `fuzz_checkpoint_replay --save DIR`, which writes this
 * program's own checkpoint, the seed (DIR/checkpoint.nnqc). Not part of nnq: a test
 * tool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "nnq_rt.h"
#include "put_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The "program": its description and state, as codegen.c's declare_checkpoint lays
 * them out (parameters, their optimizer moments, the loop's scalars). */
static float g_w[24], g_m[24];
static int64_t g_iteration = 1500;
static double g_beta = 3.5;
static int32_t g_best_epoch = 2;
static char g_dir[64], g_path[128];

static void declare(NnqRun *run) {
    nnq_rt_checkpoint_describe(run, "model mlp", 0);
    nnq_rt_checkpoint_describe(run, "optimizer adam", 0);
    nnq_rt_checkpoint_describe(run, "batch", 100);
    nnq_rt_checkpoint_describe(run, "parameter dense1.w f32[4, 6] pmf {-1, 1}", 24);
    nnq_rt_checkpoint_state(run, "dense1.w.weight", g_w, sizeof g_w);
    nnq_rt_checkpoint_state(run, "dense1.w.m0", g_m, sizeof g_m);
    nnq_rt_checkpoint_state(run, "train.iteration", &g_iteration, sizeof g_iteration);
    nnq_rt_checkpoint_state(run, "train.beta", &g_beta, sizeof g_beta);
    nnq_rt_checkpoint_state(run, "train.best_epoch", &g_best_epoch, sizeof g_best_epoch);
}

static int entry_resume(NnqRun *run) {
    declare(run);
    nnq_rt_checkpoint_resume(run, 5);
    return 0;
}

static void cleanup(void) {
    unlink(g_path), rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/nnq-fuzz-ckpt-XXXXXX");
        if (!mkdtemp(g_dir))
            abort();
        snprintf(g_path, sizeof g_path, "%s/checkpoint.nnqc", g_dir);
        atexit(cleanup);
    }
    if (size > 1 << 20)
        return 0;
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        abort();
    memcpy(p, data, size);
    if (size >= 16) /* the header's file size, little-endian */
        for (int i = 0; i < 8; i++)
            p[8 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    if (size >= 8) { /* the CRC-32 of everything before it */
        uint32_t crc = (uint32_t)crc32(0L, p, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            p[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    bool ok = put_file(g_path, p, size, false);
    free(p);
    if (!ok)
        abort();
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true, o.threads = 1, o.resume_dir = g_dir;
    NnqRun *run = nnq_run_new(&o);
    if (!run)
        abort();
    nnq_run_invoke(run, entry_resume);
    nnq_run_free(run);
    return 0;
}

#ifndef NNQ_LIBFUZZER
#include "replay.h"

static const char *g_save_dir;

/* The seed: this program's checkpoint after epoch 3 of 5. */
static int entry_save(NnqRun *run) {
    for (int i = 0; i < 24; i++)
        g_w[i] = (float)(i - 12) / 8.0f, g_m[i] = (float)i * 1e-3f;
    nnq_rt_checkpoint_dir(run, g_save_dir);
    declare(run);
    nnq_rt_seed(run, 7);
    nnq_rt_checkpoint_save(run, 3, 5);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--save")) {
        NnqRunOptions o;
        nnq_run_options_default(&o);
        o.quiet = true, o.threads = 1;
        g_save_dir = argv[2];
        NnqRun *run = nnq_run_new(&o);
        int rc = run ? nnq_run_invoke(run, entry_save) : 1;
        nnq_run_free(run);
        return rc;
    }
    return fuzz_replay_main(argc, argv, "fuzz_checkpoint_replay", 1000);
}
#endif
