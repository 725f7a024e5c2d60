/* infer_bench.c — the inference engine (runtime/infer.c) on one model file, one mode:
 * images per second at a batch size, on random raw samples in [0, 1].
 * Usage: infer_bench MODEL.nnqm packed|float BATCH [THREADS]
 * Prints one JSON object:
 *   {"mode":M,"batch":B,"images_per_s":R,"weight_bytes":W,"file_tensor_bytes":F,
 *    "float_bytes":G,"peak_rss_kib":K,"isa":I}
 * weight_bytes: what the net holds for weights (packed rows or floats, folded
 * constants); file_tensor_bytes / float_bytes: the tensors as stored / as float32. The
 * best of 3 trials of at least 0.3 s each; one process per mode, so that peak_rss_kib
 * (getrusage) is this mode's. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nnq_infer.h"
#include "rt_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: infer_bench MODEL.nnqm packed|float BATCH [THREADS]\n");
        return 2;
    }
    bool packed = !strcmp(argv[2], "packed");
    int batch = atoi(argv[3]);
    rt_parallel_set_threads(argc > 4 ? atoi(argv[4]) : 1);
    rt_parallel_init();
    char err[512];
    NnqModelFile *mf = nnq_model_load(argv[1], packed ? NNQ_MODEL_PACKED : 0, err, sizeof err);
    NnqNet *net = mf ? nnq_net_new(mf, packed ? NNQ_NET_PACKED : NNQ_NET_FLOAT, err, sizeof err) : NULL;
    if (!net) {
        fprintf(stderr, "infer_bench: %s\n", err);
        return 1;
    }
    int64_t stored = 0, floats = 0;
    for (int i = 0; i < mf->ntensors; i++) {
        int64_t n = 1;
        for (int d = 0; d < mf->tensors[i].rank; d++) n *= mf->tensors[i].dims[d];
        stored += mf->tensors[i].stored_bytes, floats += 4 * n;
    }
    int64_t in = nnq_net_input_size(net);
    float *x = malloc((size_t)(batch * in) * sizeof(float)), *y = malloc((size_t)batch * (size_t)nnq_net_classes(net) * 4);
    uint32_t s = 1;
    for (int64_t i = 0; i < batch * in; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    nnq_net_run(net, x, batch, y, err, sizeof err); /* first touches */
    double best = 0;
    for (int trial = 0; trial < 3; trial++) {
        int64_t done = 0;
        double t0 = now(), t;
        do {
            nnq_net_run(net, x, batch, y, err, sizeof err);
            done += batch;
        } while ((t = now() - t0) < 0.3);
        if (done / t > best) best = done / t;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"mode\":\"%s\",\"batch\":%d,\"images_per_s\":%.1f,\"weight_bytes\":%lld,\"file_tensor_bytes\":%lld,"
           "\"float_bytes\":%lld,\"peak_rss_kib\":%ld,\"isa\":\"%s\"}\n",
           argv[2], batch, best, (long long)nnq_net_weight_bytes(net), (long long)stored, (long long)floats,
           ru.ru_maxrss, nnq_net_isa());
    nnq_net_free(net);
    nnq_model_free(mf);
    free(x), free(y);
    return 0;
}
