/* conv_bench.c — the runtime's convolutions (conv2d, conv2d_dx, conv2d_dw) on the layer
 * shapes of the examples, in GFLOP/s, computed four ways: conv.c's im2col + OpenBLAS,
 * oneDNN per chunk (conv_dnnl.c), LIBXSMM per sample (conv_xsmm.c) and conv.c's im2col +
 * gemm.c's rule (oneDNN's sgemm for products that are not small where it runs AVX-512
 * code, else OpenBLAS: the same as the first way with AVX2), calls of the four
 * interleaved; and the way the default path (the libraries' rules) takes, with its share of
 * the sgemm rate of a 1024^3 product measured in the same run (the GEMM floor bench/run
 * compares whole steps with). Usage: conv_bench [THREADS [LAYER]] (LAYER: the layers whose
 * name contains it). Best of several repetitions;
 * not a test. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nnq_rt.h"
#include "rt_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct Layer {
    const char *what;
    int n, c, h, w, o, k, stride, pad;
} Layer;

static const Layer layers[] = {
    {"LeNet-5 conv1, batch 100", 100, 1, 28, 28, 20, 5, 1, 0},
    {"LeNet-5 conv2", 100, 20, 12, 12, 50, 5, 1, 0},
    {"VGG-16 and ResNet-18 3 -> 64 at 32x32, batch 128", 128, 3, 32, 32, 64, 3, 1, 1},
    {"VGG-16 64 -> 64 at 32x32, batch 128", 128, 64, 32, 32, 64, 3, 1, 1},
    {"VGG-16 128 -> 128 at 16x16", 128, 128, 16, 16, 128, 3, 1, 1},
    {"VGG-16 256 -> 256 at 8x8", 128, 256, 8, 8, 256, 3, 1, 1},
    {"VGG-16 512 -> 512 at 4x4", 128, 512, 4, 4, 512, 3, 1, 1},
    {"VGG-16 512 -> 512 at 2x2", 128, 512, 2, 2, 512, 3, 1, 1},
    {"3x3 16 -> 32 at 28x28, batch 100 (tests/e2e/deep_conv_subset.nnq)", 100, 16, 28, 28, 32, 3, 1, 1},
    {"3x3 32 -> 32 at 14x14", 100, 32, 14, 14, 32, 3, 1, 1},
    {"3x3 32 -> 64 at 16x16, batch 128", 128, 32, 16, 16, 64, 3, 1, 1},
    {"3x3 48 -> 48 at 16x16", 128, 48, 16, 16, 48, 3, 1, 1},
    {"ResNet-18 64 -> 128 stride 2", 128, 64, 32, 32, 128, 3, 2, 1},
    {"ResNet-18 128 -> 256 stride 2 at 16x16", 128, 128, 16, 16, 256, 3, 2, 1},
    {"ResNet-18 256 -> 512 stride 2 at 8x8", 128, 256, 8, 8, 512, 3, 2, 1},
    {"ResNet-18 1x1 64 -> 128 stride 2", 128, 64, 32, 32, 128, 1, 2, 0},
    {"ResNet-18 1x1 128 -> 256 stride 2 at 16x16", 128, 128, 16, 16, 256, 1, 2, 0},
    {"ResNet-18 1x1 256 -> 512 stride 2 at 8x8", 128, 256, 8, 8, 512, 1, 2, 0},
    {"MobileNetV2 1x1 32 -> 16 at 32x32", 128, 32, 32, 32, 16, 1, 1, 0},
    {"MobileNetV2 1x1 16 -> 96 at 32x32", 128, 16, 32, 32, 96, 1, 1, 0},
    {"MobileNetV2 1x1 96 -> 24 at 32x32", 128, 96, 32, 32, 24, 1, 1, 0},
    {"MobileNetV2 1x1 24 -> 144 at 32x32", 128, 24, 32, 32, 144, 1, 1, 0},
    {"MobileNetV2 1x1 144 -> 24 at 32x32", 128, 144, 32, 32, 24, 1, 1, 0},
    {"MobileNetV2 1x1 32 -> 192 at 16x16", 128, 32, 16, 16, 192, 1, 1, 0},
    {"MobileNetV2 1x1 192 -> 32 at 16x16", 128, 192, 16, 16, 32, 1, 1, 0},
    {"MobileNetV2 1x1 64 -> 384 at 8x8", 128, 64, 8, 8, 384, 1, 1, 0},
    {"MobileNetV2 1x1 96 -> 576 at 8x8", 128, 96, 8, 8, 576, 1, 1, 0},
    {"MobileNetV2 1x1 576 -> 96 at 8x8", 128, 576, 8, 8, 96, 1, 1, 0},
    {"MobileNetV2 1x1 160 -> 960 at 4x4", 128, 160, 4, 4, 960, 1, 1, 0},
    {"MobileNetV2 1x1 960 -> 160 at 4x4", 128, 960, 4, 4, 160, 1, 1, 0},
    {"MobileNetV2 1x1 320 -> 1280 at 4x4", 128, 320, 4, 4, 1280, 1, 1, 0},
    {"MobileNetV2 1x1 384 -> 64 at 8x8", 128, 384, 8, 8, 64, 1, 1, 0},
};

static double call(const Layer *l, int op, float *x, float *w, float *y) {
    double t = now();
    if (op == 0) nnq_rt_conv2d(x, w, y, l->n, l->c, l->h, l->w, l->o, l->k, l->k, l->stride, l->pad);
    else if (op == 1) nnq_rt_conv2d_dx(y, w, x, l->n, l->c, l->h, l->w, l->o, l->k, l->k, l->stride, l->pad);
    else nnq_rt_conv2d_dw(y, x, w, l->n, l->c, l->h, l->w, l->o, l->k, l->k, l->stride, l->pad);
    return now() - t;
}

/* 0: im2col + OpenBLAS, 1: oneDNN, 2: LIBXSMM, each on every shape it implements, 3:
 * im2col + gemm.c's rule, 4: Winograd's F(2 x 2, 3 x 3) where it applies (3 x 3, stride 1,
 * pad 1; forward and dx), its products by gemm.c's rule. */
enum { WAYS = 5 };
static const char *const way_name[WAYS] = {"OpenBLAS", "oneDNN", "LIBXSMM", "im2col + GEMM", "Winograd"};

static void set_way(int way) {
    rt_wino_set_mode(way == 4 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
    rt_dnnl_set_mode(way == 1 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
    rt_xsmm_set_mode(way == 2 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
    rt_gemm_set_mode(way == 0 ? RT_LIB_NEVER : RT_LIB_RULE);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    rt_parallel_init();
    rt_parallel_set_threads(threads);
    enum { G = 1024 };
    float *a = malloc(sizeof(float) * G * G), *b = malloc(sizeof(float) * G * G), *c = malloc(sizeof(float) * G * G);
    for (int i = 0; i < G * G; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double gb = 1e30;
    for (int r = 0; r < 8; r++) { /* the first calls start the pool's threads */
        double t = now();
        nnq_rt_sgemm(0, 0, G, G, G, 1, a, G, b, G, 0, c, G);
        t = now() - t;
        if (t < gb) gb = t;
    }
    double peak = 2.0 * G * G * G / gb * 1e-9;
    printf("%d threads; sgemm 1024^3 through nnq_rt_sgemm: %.1f GFLOP/s\n\n", threads, peak);
    printf("| layer | GFLOP | im2col + OpenBLAS GFLOP/s (fwd / dx / dw) | oneDNN GFLOP/s | LIBXSMM GFLOP/s "
           "| im2col + GEMM by gemm.c's rule GFLOP/s | Winograd GFLOP/s (direct FLOPs / time) | default path (fwd / dx / dw) "
           "| default path, of the sgemm rate |\n|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const Layer *l = &layers[i];
        if (argc > 2 && !strstr(l->what, argv[2])) continue;
        int oh = (l->h + 2 * l->pad - l->k) / l->stride + 1, ow = (l->w + 2 * l->pad - l->k) / l->stride + 1;
        size_t nx = (size_t)l->n * l->c * l->h * l->w, nw = (size_t)l->o * l->c * l->k * l->k, ny = (size_t)l->n * l->o * oh * ow;
        float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *y = malloc(sizeof(float) * ny);
        for (size_t j = 0; j < nx; j++) x[j] = (float)(j % 13) * 0.01f;
        for (size_t j = 0; j < nw; j++) w[j] = (float)(j % 5) * 0.01f;
        for (size_t j = 0; j < ny; j++) y[j] = (float)(j % 3) * 0.01f;
        double flops = 2.0 * l->n * l->o * l->c * l->k * l->k * oh * ow, r[WAYS][3];
        for (int way = 0; way < WAYS; way++) { /* kernels made and scratch reserved before timing */
            set_way(way);
            nnq_rt_conv_reserve(NULL, l->n, l->c, l->h, l->w, l->o, l->k, l->k, l->stride, l->pad);
        }
        for (int op = 0; op < 3; op++) {
            double best[WAYS] = {1e30, 1e30, 1e30, 1e30, 1e30};
            for (int rep = 0; rep < 7; rep++) /* the ways in turn: the machine's drift hits all */
                for (int way = 0; way < WAYS; way++) {
                    set_way(way);
                    double t = call(l, op, x, w, y);
                    if (t < best[way]) best[way] = t;
                }
            for (int way = 0; way < WAYS; way++) r[way][op] = flops / best[way] * 1e-9;
        }
        rt_wino_set_mode(RT_LIB_RULE);
        rt_dnnl_set_mode(RT_LIB_RULE);
        rt_xsmm_set_mode(RT_LIB_RULE);
        rt_gemm_set_mode(RT_LIB_RULE);
        char by_default[64] = "";
        double share[3];
        for (int op = 0; op < 3; op++) {
            int way = rt_conv_wino((RtConvOp)op, l->n, l->c, l->h, l->w, l->o, l->k, l->k, l->stride, l->pad) ? 4
                      : rt_dnnl_serves((RtConvOp)op, l->c, l->o, l->k, l->k, l->stride, l->pad, oh, ow)   ? 1
                      : rt_xsmm_serves((RtConvOp)op, l->c, l->o, l->k, l->k, l->stride, l->pad, oh, ow) ? 2
                                                                                                        : 3;
            snprintf(by_default + strlen(by_default), sizeof by_default - strlen(by_default), "%s%s", op ? " / " : "",
                     way_name[way]);
            share[op] = r[way][op] / peak;
        }
        printf("| %s | %.3g |", l->what, flops * 1e-9);
        for (int way = 0; way < WAYS; way++) printf(" %.1f / %.1f / %.1f |", r[way][0], r[way][1], r[way][2]);
        printf(" %s | %.2f / %.2f / %.2f |\n", by_default, share[0], share[1], share[2]);
        free(x), free(w), free(y);
    }
    return 0;
}
