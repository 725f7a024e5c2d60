/* test_conv.c — the image kernels: im2col + GEMM equals a direct convolution (with
 * stride and padding, several samples side by side in one column matrix), col2im is
 * im2col's adjoint (<im2col(x), c> == <x, col2im(c)>), max pooling picks the first
 * maximum and its gradient routes dy there. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_internal.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

void test_im2col_conv(void) {
    const int N = 3, C = 2, H = 7, W = 6, O = 4, K = 3, S = 2, P = 1;
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1, CKK = C * K * K, L = N * OH * OW;
    unsigned seed = 7;
    float *x = malloc(sizeof(float) * N * C * H * W), *w = malloc(sizeof(float) * O * CKK);
    float *col = malloc(sizeof(float) * CKK * L), *y = malloc(sizeof(float) * O * L);
    for (int i = 0; i < N * C * H * W; i++) x[i] = frand(&seed);
    for (int i = 0; i < O * CKK; i++) w[i] = frand(&seed);
    for (int n = 0; n < N; n++)
        nnq_rt_im2col(x + n * C * H * W, C, H, W, K, K, S, P, col + n * OH * OW, L);
    nnq_rt_sgemm(0, 0, O, L, CKK, 1, w, CKK, col, L, 0, y, L);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int r = 0; r < OH; r++)
                for (int q = 0; q < OW; q++) {
                    double ref = 0;
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < K; i++)
                            for (int j = 0; j < K; j++) {
                                int rr = r * S - P + i, qq = q * S - P + j;
                                if (rr < 0 || rr >= H || qq < 0 || qq >= W) continue;
                                ref += w[((o * C + c) * K + i) * K + j] * x[((n * C + c) * H + rr) * W + qq];
                            }
                    worst = fmax(worst, fabs(ref - y[o * L + n * OH * OW + r * OW + q]));
                }
    CHECK(worst < 1e-5, "im2col + GEMM vs direct convolution: worst %g", worst);
    /* adjoint */
    float *c2 = malloc(sizeof(float) * CKK * L), *x2 = malloc(sizeof(float) * C * H * W);
    for (int i = 0; i < CKK * L; i++) c2[i] = frand(&seed);
    nnq_rt_col2im(c2 + OH * OW, L, C, H, W, K, K, S, P, x2); /* sample 1's columns */
    double lhs = 0, rhs = 0;
    for (int r = 0; r < CKK; r++)
        for (int o = 0; o < OH * OW; o++) lhs += (double)col[r * L + OH * OW + o] * c2[r * L + OH * OW + o];
    for (int i = 0; i < C * H * W; i++) rhs += (double)x[C * H * W + i] * x2[i];
    CHECK(fabs(lhs - rhs) < 1e-4 * (1 + fabs(lhs)), "col2im is the adjoint of im2col: %g vs %g", lhs, rhs);
    free(x), free(w), free(col), free(y), free(c2), free(x2);
}

void test_avgpool(void) {
    float x[16], y[4], dy[4] = {4, 8, 12, 16}, dx[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    nnq_rt_avgpool(x, 1, 4, 4, 2, 2, y);
    CHECK(y[0] == 2.5f && y[1] == 4.5f && y[2] == 10.5f && y[3] == 12.5f, "avgpool means");
    nnq_rt_avgpool_grad(dy, 1, 4, 4, 2, 2, dx);
    CHECK(dx[0] == 1 && dx[5] == 1 && dx[2] == 2 && dx[7] == 2 && dx[8] == 3 && dx[15] == 4,
          "avgpool gradient spreads dy / k^2");
}

void test_maxpool(void) {
    /* two 4x4 planes, 2x2 windows; ties go to the first maximum */
    float x[32] = {1, 2, 0, 0, 3, 1, 0, 5, 0, 0, 7, 7, 0, 9, 7, 1,
                   -1, -1, -2, -3, -1, -1, -4, -2, 0, 0, 0, 0, 0, 0, 0, 1};
    float y[8], dy[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dx[32];
    int32_t idx[8];
    nnq_rt_maxpool(x, 2, 4, 4, 2, 2, y, idx);
    const float want_y[8] = {3, 5, 9, 7, -1, -2, 0, 1};
    const int32_t want_idx[8] = {4, 7, 13, 10, 0, 2, 8, 15};
    CHECK(memcmp(y, want_y, sizeof y) == 0, "maxpool values");
    CHECK(memcmp(idx, want_idx, sizeof idx) == 0, "maxpool first-argmax positions");
    nnq_rt_maxpool_grad(dy, idx, 2, 2, 2, 4, 4, dx);
    float sum = 0;
    for (int i = 0; i < 32; i++) sum += dx[i];
    CHECK(dx[4] == 1 && dx[7] == 2 && dx[13] == 3 && dx[10] == 4 && dx[16] == 5 && dx[18] == 6 &&
              dx[24] == 7 && dx[31] == 8 && sum == 36,
          "maxpool gradient routes dy to the argmax only");
}

/* The batch and pooling entry points split samples and planes over the thread pool:
 * with 1, 2 and 3 threads they give exactly what one sample / plane at a time gives. */
void test_image_threads(void) {
    const int N = 37, C = 3, H = 20, W = 20, K = 3, S = 1, P = 1;
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1, CKK = C * K * K, L = N * OH * OW;
    unsigned seed = 11;
    float *x = malloc(sizeof(float) * N * C * H * W), *ref = malloc(sizeof(float) * CKK * L);
    float *col = malloc(sizeof(float) * CKK * L), *xr = malloc(sizeof(float) * N * C * H * W);
    float *xb = malloc(sizeof(float) * N * C * H * W);
    float *y = malloc(sizeof(float) * N * C * 100), *yr = malloc(sizeof(float) * N * C * 100);
    int32_t *idx = malloc(sizeof(int32_t) * N * C * 100), *idxr = malloc(sizeof(int32_t) * N * C * 100);
    for (int i = 0; i < N * C * H * W; i++) x[i] = frand(&seed);
    for (int n = 0; n < N; n++) {
        nnq_rt_im2col(x + n * C * H * W, C, H, W, K, K, S, P, ref + n * OH * OW, L);
        nnq_rt_col2im(ref + n * OH * OW, L, C, H, W, K, K, S, P, xr + n * C * H * W);
    }
    for (int p = 0; p < N * C; p++) /* one plane per call: no splitting possible */
        nnq_rt_maxpool(x + p * H * W, 1, H, W, 2, 2, yr + p * 100, idxr + p * 100);
    for (int threads = 1; threads <= 3; threads++) {
        rt_parallel_set_threads(threads);
        memset(col, 0xff, sizeof(float) * CKK * L);
        nnq_rt_im2col_batch(x, N, C, H, W, K, K, S, P, col);
        CHECK(memcmp(col, ref, sizeof(float) * CKK * L) == 0, "im2col_batch, %d threads", threads);
        nnq_rt_col2im_batch(ref, N, C, H, W, K, K, S, P, xb);
        CHECK(memcmp(xb, xr, sizeof(float) * N * C * H * W) == 0, "col2im_batch, %d threads", threads);
        nnq_rt_maxpool(x, N * C, H, W, 2, 2, y, idx);
        CHECK(memcmp(y, yr, sizeof(float) * N * C * 100) == 0 &&
                  memcmp(idx, idxr, sizeof(int32_t) * N * C * 100) == 0,
              "maxpool over planes, %d threads", threads);
    }
    rt_parallel_set_threads(0);
    free(x), free(ref), free(col), free(xr), free(xb), free(y), free(yr), free(idx), free(idxr);
}
