/* fuzz_model.c — model files (runtime/model_file.c) and the inference engine
 * (runtime/infer.c) under a fuzzer: any byte string, with its last 4 bytes replaced by
 * the CRC-32 of the rest (so that mutations reach the structure the CRC guards instead
 * of all stopping at the checksum), is written to a file and
 *   - read with nnq_model_load, decoded and packed;
 *   - when it reads and holds an architecture record, made into a net in both engine
 *     modes (nnq_net_new: shape inference and checks, weight packing);
 *   - when that succeeds and the net is small (at most 10^7 FLOP per sample), run on 3
 *     samples at once and on 1 (the chunked and the packed-rows paths), and exported as
 *     C source (compiler/export_c.c, into a scratch directory; the source is not
 *     compiled here: tests/e2e/export_c.sh compiles exports).
 * It must never crash, hang, leak or allocate without bound: bad input is a message.
 *
 * With clang: cmake -DNNQ_FUZZ=ON builds `fuzz_model` (libFuzzer with ASan and UBSan;
 * tools/test.sh runs it for a bounded time, seeded with tests/fuzz/models/). Always
 * built: `fuzz_model_replay FILE...`, which feeds files through the same entry point (in
 * the default suite: the seeds, each whole, cut at 64 places, and with 1,000
 * deterministic one-byte mutations). Not part of nnq: a test tool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "deploy.h"
#include "nnq_infer.h"
#include "put_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_path[128], g_out[128];
static const NnqModelFile *g_mf;

static void cleanup(void) {
    char p[160];
    snprintf(p, sizeof p, "%s/model.c", g_out), unlink(p);
    snprintf(p, sizeof p, "%s/model.h", g_out), unlink(p);
    rmdir(g_out), unlink(g_path), rmdir(g_dir);
}

static int entry_export(NnqRun *run) {
    return export_c(run, g_mf, g_out, "model");
}

static void run_net(const NnqModelFile *mf, NnqNetMode mode) {
    char err[512];
    NnqNet *net = nnq_net_new(mf, mode, err, sizeof err);
    if (!net) return;
    if (nnq_net_flops(net) <= 1e7 && nnq_net_input_size(net) <= 1 << 16) {
        int64_t in = nnq_net_input_size(net), c = nnq_net_classes(net);
        float *x = calloc((size_t)(3 * in), sizeof(float)), *y = malloc((size_t)(3 * c) * sizeof(float));
        if (!x || !y) abort();
        for (int64_t i = 0; i < 3 * in; i++) x[i] = (float)(i % 7) / 7.0f;
        nnq_net_run(net, x, 3, y, err, sizeof err);
        nnq_net_run(net, x, 1, y, err, sizeof err);
        free(x), free(y);
        if (mode == NNQ_NET_PACKED) { /* the exporter on what the engine accepts */
            NnqRunOptions o;
            nnq_run_options_default(&o);
            o.quiet = true, o.threads = 1;
            NnqRun *run = nnq_run_new(&o);
            if (!run) abort();
            g_mf = mf;
            nnq_run_invoke(run, entry_export);
            nnq_run_free(run);
        }
    }
    nnq_net_free(net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/nnq-fuzz-model-XXXXXX");
        if (!mkdtemp(g_dir)) abort();
        snprintf(g_path, sizeof g_path, "%s/m.nnqm", g_dir);
        snprintf(g_out, sizeof g_out, "%s/c", g_dir);
        if (mkdir(g_out, 0700) != 0) abort();
        atexit(cleanup);
    }
    uint8_t *b = malloc(size ? size : 1);
    if (!b) abort();
    memcpy(b, data, size);
    if (size >= 4) {
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(size - 4));
        for (int i = 0; i < 4; i++) b[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    if (!put_file(g_path, b, size, false)) abort();
    free(b);
    char err[512];
    for (int flags = 0; flags < 2; flags++) {
        NnqModelFile *mf = nnq_model_load(g_path, flags ? NNQ_MODEL_PACKED : 0, err, sizeof err);
        if (mf && mf->arch) run_net(mf, flags ? NNQ_NET_PACKED : NNQ_NET_FLOAT);
        nnq_model_free(mf);
    }
    return 0;
}

#ifndef NNQ_LIBFUZZER
#include "replay.h"
int main(int argc, char **argv) {
    return fuzz_replay_main(argc, argv, "fuzz_model_replay", 1000);
}
#endif
