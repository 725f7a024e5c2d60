/* test_dwconv.c — depthwise convolutions (runtime/dwconv.c) against the general
 * convolution, itself tested against direct sums (test_conv.c): a depthwise conv is a
 * conv2d whose weight is block-diagonal (w_full[o, c] = w[o] when o == c, else 0), so y
 * and dx must match conv2d's and dw the diagonal of conv2d_dw's; y and dx bit for bit the
 * sums of a direct loop (0, then each tap's term in order, the padding's zero terms
 * included, which change no such sum of finite floats: dwconv.c's contract, whatever rows
 * or columns its kernels take together, and where its direct kernels leave padding rows
 * out); and
 * the same bits on 1, 2 and 3 threads. Of a batch norm's values (nnq_rt_dwconv2d_bn and
 * its dw, each plane normalized as the kernels read it, some planes at a time): the bits
 * of the batch norm's elementwise pass written out and convolved, on 1 and 3 threads.
 * Geometries with stride, padding and borders where a window leaves the image. Compiled
 * without FMA contraction (CMakeLists.txt), as dwconv.c is. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_internal.h"

static float drand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* y and dx by direct loops, the taps in order (i, j), each term added to a float sum
 * starting at 0; a tap outside the input (y) or on no output (dx) adds w * 0. */
static void direct_sums(const float *x, const float *w, const float *dy, float *y, float *dx, int N, int C, int H,
                        int W, int K, int S, int P) {
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    for (int pl = 0; pl < N * C; pl++) {
        const float *f = w + (pl % C) * K * K, *xp = x + (size_t)pl * H * W, *dp = dy + (size_t)pl * OH * OW;
        for (int yo = 0; yo < OH; yo++)
            for (int xo = 0; xo < OW; xo++) {
                float acc = 0;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int r = yo * S + i - P, c = xo * S + j - P;
                        float v = r >= 0 && r < H && c >= 0 && c < W ? xp[r * W + c] : 0.0f, term = f[i * K + j] * v;
                        acc += term;
                    }
                y[((size_t)pl * OH + yo) * OW + xo] = acc;
            }
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                float acc = 0;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) { /* dy[yo][xo] with yo * S = r + P - i, xo * S = c + P - j */
                        int a = r + P - i, b = c + P - j;
                        bool on = a >= 0 && b >= 0 && a % S == 0 && b % S == 0 && a / S < OH && b / S < OW;
                        float term = f[i * K + j] * (on ? dp[(a / S) * OW + b / S] : 0.0f);
                        acc += term;
                    }
                dx[((size_t)pl * H + r) * W + c] = acc;
            }
    }
}

void test_dwconv_kernels(void) {
    static const int geo[][7] = {
        /* N, C, H, W, K, stride, pad: */
        {3, 4, 9, 7, 3, 1, 1},
        {2, 5, 8, 8, 3, 2, 1},
        {4, 3, 6, 5, 3, 2, 0},
        {2, 6, 4, 4, 1, 1, 0},
        {1, 2, 5, 6, 5, 1, 2},
        {2, 3, 19, 21, 3, 1, 1},  /* rows of two 8-column runs and a tail */
        {3, 2, 20, 35, 3, 2, 1},  /* stride 2, two runs and a tail */
        {2, 2, 17, 32, 5, 2, 2},  /* 5x5, stride 2: rows of 16, two whole runs */
        {3, 21, 8, 8, 3, 1, 1},   /* dw by blocks of 16 channels: a whole block and one of 5 */
        {2, 5, 4, 4, 3, 1, 1},    /* 4 x 4 planes (dwconv.c's shapes as constants) */
        {2, 3, 11, 4, 3, 1, 1},   /* rows of 4 in groups of four and three left over */
        {1, 2, 6, 13, 3, 2, 1},   /* stride 2: outputs 3 x 7, in no group of four rows */
        {2, 3, 5, 16, 3, 1, 1},   /* rows of 16 and 32 straight from the input (dw_direct) */
        {2, 2, 7, 32, 3, 1, 1},
        {3, 2, 1, 32, 3, 1, 1},   /* one row: both its neighbours padding */
        {2, 3, 6, 16, 3, 2, 1},   /* stride 2 from rows of 16 and 32 (dw_direct2), of 8 above */
        {1, 2, 7, 32, 3, 2, 1},   /* an odd number of rows: the last output's third row padding */
        {2, 2, 32, 32, 3, 2, 1},
        {2, 19, 32, 32, 3, 1, 1}, /* a batch norm's planes 8 at a time: 8, 8 and 3 a sample */
    };
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        const int N = geo[g][0], C = geo[g][1], H = geo[g][2], W = geo[g][3], K = geo[g][4], S = geo[g][5], P = geo[g][6];
        const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
        const int NX = N * C * H * W, NY = N * C * OH * OW, NW = C * K * K, NF = C * C * K * K;
        unsigned seed = 11 + (unsigned)g;
        float *x = malloc(sizeof(float) * NX), *w = malloc(sizeof(float) * NW), *full = calloc(NF, sizeof(float));
        float *dy = malloc(sizeof(float) * NY), *y = malloc(sizeof(float) * NY), *dx = malloc(sizeof(float) * NX);
        float *dw = malloc(sizeof(float) * NW), *ry = malloc(sizeof(float) * NY), *rdx = malloc(sizeof(float) * NX);
        float *rdw = malloc(sizeof(float) * NF);
        for (int i = 0; i < NX; i++) x[i] = drand(&seed);
        for (int i = 0; i < NW; i++) w[i] = drand(&seed);
        for (int i = 0; i < NY; i++) dy[i] = drand(&seed);
        for (int c = 0; c < C; c++) memcpy(full + ((size_t)c * C + c) * K * K, w + (size_t)c * K * K, sizeof(float) * K * K);
        rt_parallel_set_threads(1);
        nnq_rt_conv_reserve(NULL, N, C, H, W, C, K, K, S, P);
        nnq_rt_conv2d(x, full, ry, N, C, H, W, C, K, K, S, P);
        nnq_rt_conv2d_dx(dy, full, rdx, N, C, H, W, C, K, K, S, P);
        nnq_rt_conv2d_dw(dy, x, rdw, N, C, H, W, C, K, K, S, P);
        nnq_rt_dwconv2d(x, w, y, N, C, H, W, C, K, K, S, P);
        nnq_rt_dwconv2d_dx(dy, w, dx, N, C, H, W, C, K, K, S, P);
        nnq_rt_dwconv2d_dw(dy, x, dw, N, C, H, W, C, K, K, S, P);
        double ey = 0, edx = 0, edw = 0;
        for (int i = 0; i < NY; i++) ey = fmax(ey, fabs(y[i] - ry[i]));
        for (int i = 0; i < NX; i++) edx = fmax(edx, fabs(dx[i] - rdx[i]));
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K * K; k++)
                edw = fmax(edw, fabs(dw[c * K * K + k] - rdw[((size_t)c * C + c) * K * K + k]));
        CHECK(ey < 1e-5 && edx < 1e-5 && edw < 1e-4, "geometry %zu: dwconv2d %g, dx %g, dw %g against conv2d", g, ey, edx, edw);
        direct_sums(x, w, dy, ry, rdx, N, C, H, W, K, S, P);
        CHECK(!memcmp(y, ry, sizeof(float) * NY) && !memcmp(dx, rdx, sizeof(float) * NX),
              "geometry %zu: dwconv2d and dx give a direct loop's sums bit for bit", g);
        float *y2 = malloc(sizeof(float) * NY), *dx2 = malloc(sizeof(float) * NX), *dw2 = malloc(sizeof(float) * NW);
        for (int threads = 2; threads <= 3; threads++) {
            rt_parallel_set_threads(threads);
            rt_parallel_set_min_items_cap(1);
            nnq_rt_dwconv2d(x, w, y2, N, C, H, W, C, K, K, S, P);
            nnq_rt_dwconv2d_dx(dy, w, dx2, N, C, H, W, C, K, K, S, P);
            nnq_rt_dwconv2d_dw(dy, x, dw2, N, C, H, W, C, K, K, S, P);
            rt_parallel_set_min_items_cap(0);
            CHECK(!memcmp(y, y2, sizeof(float) * NY) && !memcmp(dx, dx2, sizeof(float) * NX) && !memcmp(dw, dw2, sizeof(float) * NW),
                  "geometry %zu: %d threads give the 1-thread bits", g, threads);
        }
        float *bias = malloc(sizeof(float) * C), *mean = malloc(sizeof(float) * C), *scale = malloc(sizeof(float) * C);
        float *e = malloc(sizeof(float) * NX);
        for (int c = 0; c < C; c++) bias[c] = drand(&seed), mean[c] = drand(&seed), scale[c] = 1 + drand(&seed);
        nnq_rt_bn_apply(NNQ_BN_BIAS | NNQ_BN_RELU, x, NULL, bias, mean, scale, NULL, NULL, 0.0f, N, C, H * W, 0, C, e);
        rt_parallel_set_threads(1);
        nnq_rt_dwconv2d(e, w, y, N, C, H, W, C, K, K, S, P);
        nnq_rt_dwconv2d_dw(dy, e, dw, N, C, H, W, C, K, K, S, P);
        for (int threads = 1; threads <= 3; threads += 2) {
            rt_parallel_set_threads(threads);
            rt_parallel_set_min_items_cap(1);
            nnq_rt_dwconv_reserve(NULL, N, C, H, W, C, K, K, S, P, 1);
            nnq_rt_dwconv2d_bn(x, w, y2, N, C, H, W, C, K, K, S, P, bias, mean, scale);
            nnq_rt_dwconv2d_dw_bn(dy, x, dw2, N, C, H, W, C, K, K, S, P, bias, mean, scale);
            rt_parallel_set_min_items_cap(0);
            CHECK(!memcmp(y, y2, sizeof(float) * NY) && !memcmp(dw, dw2, sizeof(float) * NW),
                  "geometry %zu, %d threads: dwconv2d_bn and its dw give the bits of a batch norm's values convolved", g,
                  threads);
        }
        free(e), free(bias), free(mean), free(scale);
        rt_parallel_set_threads(0);
        free(x), free(w), free(full), free(dy), free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw);
        free(y2), free(dx2), free(dw2);
    }
}
