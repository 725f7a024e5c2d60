/* test_conv.c — the image kernels: im2col + GEMM equals a direct convolution (with
 * stride and padding, several samples side by side in one column matrix), col2im is
 * im2col's adjoint (<im2col(x), c> == <x, col2im(c)>); the chunked convolutions and their
 * gradients equal direct double-precision sums, whatever the chunking, and give the same
 * bits on 1, 2 and 3 threads, as does a GEMM large enough to be cut into blocks; max
 * pooling picks the first maximum and its gradient routes dy there. */
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

/* The k x k, stride-2 maxpool of `planes` planes of h x w by a direct search: each window's
 * value and the position (row * w + column) of its first maximum. */
static void maxpool_want(const float *x, int planes, int h, int w, int k, float *y, int32_t *idx) {
    int oh = (h - k) / 2 + 1, ow = (w - k) / 2 + 1;
    for (int p = 0; p < planes; p++)
        for (int r = 0; r < oh; r++)
            for (int q = 0; q < ow; q++) {
                const float *src = x + p * h * w;
                int best = 2 * r * w + 2 * q;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        if (src[(2 * r + i) * w + 2 * q + j] > src[best]) best = (2 * r + i) * w + 2 * q + j;
                y[(p * oh + r) * ow + q] = src[best];
                idx[(p * oh + r) * ow + q] = best;
            }
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
    /* odd sizes, both the 2 x 2 / stride 2 path and the general one, against a direct
     * search (values from few levels, so ties are common) */
    enum { P = 3, H = 7, W = 9 };
    float xr[P * H * W], yr[P * 20], yw[P * 16];
    int32_t ir[P * 20], iw[P * 16];
    const float *xr_odd = xr;
    unsigned seed = 9;
    for (int i = 0; i < P * H * W; i++) xr[i] = (float)((int)((frand(&seed) + 0.5f) * 4));
    for (int k = 2; k <= 3; k++) {
        int OH = (H - k) / 2 + 1, OW = (W - k) / 2 + 1;
        nnq_rt_maxpool(xr, P, H, W, k, 2, yr, ir);
        maxpool_want(xr, P, H, W, k, yw, iw);
        CHECK(!memcmp(yr, yw, sizeof(float) * P * OH * OW) && !memcmp(ir, iw, sizeof(int32_t) * P * OH * OW),
              "maxpool %dx%d stride 2 on 7x9 planes: values and first argmax", k, k);
    }
    /* the gradient, on planes the 2 x 2 windows tile (8 x 10) and on ones they do not
     * (7 x 9), against scattering dy at the argmax */
    float xt[P * 8 * 10];
    for (int i = 0; i < P * 8 * 10; i++) xt[i] = (float)((int)((frand(&seed) + 0.5f) * 4));
    for (int tiled = 0; tiled < 2; tiled++) { /* 8 x 10: four windows at a time and one alone */
        int h = tiled ? 8 : 7, w = tiled ? 10 : 9, OH = (h - 2) / 2 + 1, OW = (w - 2) / 2 + 1;
        float dyv[P * 20], dx[P * 8 * 10], want[P * 8 * 10] = {0};
        const float *xr = tiled ? xt : xr_odd;
        nnq_rt_maxpool(xr, P, h, w, 2, 2, yr, ir);
        bool first_max = true;
        for (int p = 0; p < P; p++)
            for (int r = 0; r < OH; r++)
                for (int q = 0; q < OW; q++) {
                    int best = 2 * r * w + 2 * q, pos[3] = {best + 1, best + w, best + w + 1};
                    for (int j = 0; j < 3; j++)
                        if (xr[p * h * w + pos[j]] > xr[p * h * w + best]) best = pos[j];
                    first_max &= ir[(p * OH + r) * OW + q] == best && yr[(p * OH + r) * OW + q] == xr[p * h * w + best];
                }
        CHECK(first_max, "maxpool 2x2 on %dx%d planes: values and first argmax", h, w);
        for (int i = 0; i < P * OH * OW; i++) dyv[i] = frand(&seed);
        for (int p = 0; p < P; p++)
            for (int o = 0; o < OH * OW; o++) want[p * h * w + ir[p * OH * OW + o]] += dyv[p * OH * OW + o];
        memset(dx, 0xff, sizeof dx);
        nnq_rt_maxpool_grad(dyv, ir, P, OH, OW, h, w, dx);
        CHECK(!memcmp(dx, want, sizeof(float) * P * h * w), "maxpool gradient on %dx%d planes", h, w);
        /* a range of channels at a time (bias_relu_bn_maxpool_grad's groups): the planes as
         * three samples of one channel, then as channels [1, 3) of one sample of three,
         * plane 0 left as it was */
        memset(dx, 0xff, sizeof dx);
        nnq_rt_maxpool_grad_chan(dyv, ir, P, 1, 0, 1, OH, OW, h, w, dx);
        CHECK(!memcmp(dx, want, sizeof(float) * P * h * w), "maxpool gradient by channels on %dx%d planes", h, w);
        memset(dx, 0xff, sizeof dx);
        nnq_rt_maxpool_grad_chan(dyv, ir, 1, P, 1, P, OH, OW, h, w, dx);
        bool kept = true;
        for (int i = 0; i < h * w; i++) kept &= ((const unsigned char *)dx)[4 * i] == 0xff;
        CHECK(kept && !memcmp(dx + h * w, want + h * w, sizeof(float) * (P - 1) * h * w),
              "maxpool gradient of channels [1, 3) on %dx%d planes, channel 0 untouched", h, w);
    }
    /* relu_maxpool: a maxpool of relu(x) (v >= 0 ? v : 0, the generated code's relu), the
     * same bits and argmax positions, on planes of signed values with many ties at zero */
    for (int shape = 0; shape < 3; shape++) {
        int h = shape ? 7 : 8, w = shape ? 9 : 10, k = shape == 2 ? 3 : 2, OH = (h - k) / 2 + 1, OW = (w - k) / 2 + 1;
        float xs[P * 8 * 10], xp[P * 8 * 10], ya[P * 20], yb[P * 20];
        int32_t ia[P * 20], ib[P * 20];
        for (int i = 0; i < P * h * w; i++) {
            xs[i] = (float)((int)((frand(&seed) + 0.5f) * 5) - 2);
            xp[i] = xs[i] >= 0 ? xs[i] : 0.0f;
        }
        nnq_rt_relu_maxpool(xs, P, h, w, k, 2, ya, ia);
        nnq_rt_maxpool(xp, P, h, w, k, 2, yb, ib);
        CHECK(!memcmp(ya, yb, sizeof(float) * P * OH * OW) && !memcmp(ia, ib, sizeof(int32_t) * P * OH * OW),
              "relu_maxpool %dx%d on %dx%d planes: maxpool of relu(x)", k, k, h, w);
    }
}

/* nnq_rt_bn_relu_maxpool against its definition: v = ((x + b) - mean) * s, relu'd
 * (v >= 0 ? v : 0), then maxpool_want of those values. Samples of 4 channels, channels 1-2
 * pooled (the others left alone); 2 x 2 windows on planes of 6 x 26 (13 windows a row:
 * eight, four and one at a time) and 3 x 3 ones (the general loop); values with ties. The
 * same planes through nnq_rt_maxpool check its eight-window path without the transform. */
void test_bn_relu_maxpool(void) {
    enum { N = 2, C = 4, H = 6, W = 26, MAXO = 3 * 13 };
    const float bias[C] = {0.5f, -1.0f, 0.25f, 2.0f}, mean[C] = {0.1f, 0.3f, -0.7f, 0.0f};
    const float scale[C] = {1.5f, 0.75f, 2.0f, 1.0f};
    unsigned seed = 17;
    float x[N * C * H * W], t[N * C * H * W];
    for (int i = 0; i < N * C * H * W; i++) {
        int c = i / (H * W) % C;
        x[i] = (float)((int)((frand(&seed) + 0.5f) * 6) - 3) * 0.5f;
        float v = ((x[i] + bias[c]) - mean[c]) * scale[c];
        t[i] = v >= 0 ? v : 0.0f;
    }
    for (int k = 2; k <= 3; k++) {
        int OH = (H - k) / 2 + 1, OW = (W - k) / 2 + 1, out = N * C * OH * OW;
        float y[N * C * MAXO], want_y[N * C * MAXO];
        int32_t idx[N * C * MAXO], want_idx[N * C * MAXO];
        memset(y, 0x7f, sizeof y), memset(idx, 0x7f, sizeof idx);
        memcpy(want_y, y, sizeof y), memcpy(want_idx, idx, sizeof idx);
        for (int n = 0; n < N; n++) {
            int p = n * C + 1; /* channels 1 and 2 */
            maxpool_want(t + p * H * W, 2, H, W, k, want_y + p * OH * OW, want_idx + p * OH * OW);
        }
        nnq_rt_bn_relu_maxpool(x, bias, mean, scale, N, C, 1, 3, H, W, k, 2, y, idx);
        CHECK(!memcmp(y, want_y, sizeof(float) * out) && !memcmp(idx, want_idx, sizeof(int32_t) * out),
              "bn_relu_maxpool %dx%d on %dx%d planes: values and first argmax of relu(bn(x)), channels 1-2 only", k, k, H,
              W);
        nnq_rt_maxpool(x, N * C, H, W, k, 2, y, idx);
        maxpool_want(x, N * C, H, W, k, want_y, want_idx);
        CHECK(!memcmp(y, want_y, sizeof(float) * out) && !memcmp(idx, want_idx, sizeof(int32_t) * out),
              "maxpool %dx%d on %dx%d planes: values and first argmax", k, k, H, W);
    }
}

/* conv2d, conv2d_dx and conv2d_dw against direct sums in double, over geometries that
 * give one sample per chunk, several (with a last partial chunk) and several dw slots,
 * each computed every way: by the rules, im2col + OpenBLAS (conv.c), oneDNN (conv_dnnl.c,
 * where it implements the shape), LIBXSMM per sample (conv_xsmm.c), im2col + oneDNN's
 * sgemm (gemm.c) and Winograd's F(2 x 2, 3 x 3) (winograd.c, the 3 x 3 stride-1 pad-1
 * ones: planes of odd sizes, chunks of several samples, dw's slots summing several
 * pieces); each way on 1, 2 and 3 threads gives the same bits. */
void test_conv_kernels(void) {
    static const int geo[][8] = {
        /* N, C, H, W, O, K, stride, pad */
        {5, 2, 17, 16, 3, 3, 1, 1},  /* OH*OW >= 256: one sample a chunk */
        {37, 3, 8, 8, 4, 3, 1, 1},   /* 64 positions: chunks of 4, the last of 1 */
        {9, 4, 7, 6, 5, 3, 2, 0},    /* stride 2, no padding */
        {70, 2, 2, 2, 3, 1, 1, 0},   /* 4 positions: chunks of 64 */
        {3, 4, 24, 24, 5, 1, 1, 0},  /* 1x1, 576 positions: one sample a chunk */
        {21, 32, 2, 2, 16, 3, 1, 1}, /* 4 positions, CKK = 288 >= 84: dw by two blocks of channels over the batch;
                                      * Winograd's F(2 x 2) the whole batch at once */
        {40, 2, 23, 23, 3, 3, 1, 1}, /* 529 positions: 64 chunks, two to each of 32 dw slots */
        {37, 16, 8, 8, 32, 3, 1, 1}, /* oneDNN: all three ops, chunks of 4, the last of 1 */
        {21, 32, 4, 4, 16, 3, 1, 1}, /* oneDNN forward and dx (chunks of 2, the last of 1), our dw */
        {20, 2, 10, 10, 3, 3, 1, 0}, /* no padding, rows of 8: im2col by 8-float moves, chunks of 1-2 */
        {37, 2, 6, 6, 3, 3, 1, 0},   /* no padding, rows of 4: chunks of 2-3 */
        {200, 2, 23, 23, 3, 3, 1, 1}, /* Winograd's dw: 50 pieces of 4 samples over 32 slots, some summing two */
        {5, 4, 9, 27, 6, 3, 1, 1},   /* Winograd's F(4 x 4): rows of 7 tiles, the last row and column of tiles partial */
        {4, 3, 6, 38, 5, 3, 1, 1},   /* F(4 x 4): rows of 10 tiles (a vector and a part) */
        {3, 2, 1, 30, 3, 3, 1, 1},   /* a plane of one row (F(2 x 2)): every tile row past it but the first */
        {6, 64, 8, 8, 64, 3, 1, 1},  /* dw by F(4 x 4) too (64 channels), side by side */
        {3, 64, 9, 27, 64, 3, 1, 1}, /* 64 channels plane by plane (dw F(4 x 4) too), partial last row and column of tiles */
        {9, 64, 4, 4, 80, 3, 1, 1},  /* the whole batch at once (4 x 4), all three ops */
        {4, 64, 3, 3, 64, 3, 1, 1},  /* the whole batch at once, one partial tile a plane */
        {3, 64, 7, 6, 64, 3, 1, 1},  /* dw the whole batch at once, forward and dx side by side: partial tiles */
    };
    /* LIBXSMM's dw: 1 x 1 stride-1 layers always, others only where gemm.c gives a sample's
     * product (LeNet-5's conv2: 50 x 500 x 64) to OpenBLAS, not to oneDNN's sgemm */
    CHECK(rt_xsmm_serves(RT_CONV_DW, 144, 24, 1, 1, 1, 0, 32, 32) &&
              rt_xsmm_serves(RT_CONV_DW, 20, 50, 5, 5, 1, 0, 8, 8) == !rt_gemm_dnnl_sized(50, 500, 64) &&
              rt_xsmm_serves(RT_CONV_FWD, 20, 50, 5, 5, 1, 0, 8, 8),
          "LIBXSMM's share of dw");
    /* not a short n over a long k with AVX2 code (MobileNetV2's 144 -> 24 forward, 24 -> 144
     * dx); a short k is still its (LeNet-5's conv1 forward) */
    bool avx2 = rt_isa() == RT_ISA_AVX2;
    CHECK(rt_xsmm_serves(RT_CONV_FWD, 144, 24, 1, 1, 1, 0, 32, 32) == !avx2 &&
              rt_xsmm_serves(RT_CONV_DX, 24, 144, 1, 1, 1, 0, 32, 32) == !avx2 &&
              rt_xsmm_serves(RT_CONV_DX, 144, 24, 1, 1, 1, 0, 32, 32) &&
              rt_xsmm_serves(RT_CONV_FWD, 1, 20, 5, 5, 1, 0, 24, 24),
          "LIBXSMM's share of narrow products with AVX2 code");
    /* dx only at stride 1 (ResNet-18's stride-2 64 -> 128 and its 1 x 1 shortcut: im2col +
     * GEMM), on either ISA */
    CHECK(rt_xsmm_serves(RT_CONV_DX, 64, 128, 3, 3, 1, 1, 16, 16) &&
              !rt_xsmm_serves(RT_CONV_DX, 64, 128, 3, 3, 2, 1, 16, 16) &&
              !rt_xsmm_serves(RT_CONV_DX, 64, 128, 1, 1, 2, 0, 16, 16),
          "LIBXSMM's dx at stride 1 only");
    /* Winograd takes VGG-16's 64 -> 64 at 32 x 32 on either ISA, but not 4,096 channels,
     * whose transformed tiles would pass a thread's 64 MiB */
    CHECK(rt_conv_wino(RT_CONV_FWD, 128, 64, 32, 32, 64, 3, 3, 1, 1) &&
              rt_conv_wino(RT_CONV_DW, 128, 64, 32, 32, 64, 3, 3, 1, 1) &&
              !rt_conv_wino(RT_CONV_FWD, 128, 4096, 32, 32, 4096, 3, 3, 1, 1),
          "Winograd's share of wide layers");
    /* and VGG-16's and ResNet-18's 512 -> 512 at 4 x 4 and 128 channels there, and VGG-16's
     * 512 -> 512 at 2 x 2 (the whole batch at once), all three ops, on either ISA; nothing
     * of 32 channels there */
    for (int op = 0; op < 3; op++)
        CHECK(rt_conv_wino((RtConvOp)op, 128, 512, 4, 4, 512, 3, 3, 1, 1) &&
                  rt_conv_wino((RtConvOp)op, 128, 128, 4, 4, 128, 3, 3, 1, 1) &&
                  rt_conv_wino((RtConvOp)op, 128, 512, 2, 2, 512, 3, 3, 1, 1) &&
                  rt_wino_batch((RtConvOp)op, 512, 512, 2, 2) && rt_wino_batch((RtConvOp)op, 512, 512, 4, 4) &&
                  rt_wino_batch((RtConvOp)op, 256, 256, 8, 8) == (op == RT_CONV_DW) &&
                  !rt_conv_wino((RtConvOp)op, 128, 32, 4, 4, 32, 3, 3, 1, 1) &&
                  !rt_conv_wino((RtConvOp)op, 128, 32, 2, 2, 32, 3, 3, 1, 1),
              "Winograd's share of 4 x 4 planes, op %d", op);
    /* F(4 x 4) where its tiles take fewer products: 32 x 32 to 4 x 4 and 7 x 7, not 5 x 5,
     * 6 x 6 or one row of 30; dw from 64 channels (32 x 32 too), beyond 256 x 256 only on
     * planes of 8 x 8 or less (the whole batch at once: no slots) */
    CHECK(rt_wino_m(RT_CONV_FWD, 64, 64, 32, 32) == 4 && rt_wino_m(RT_CONV_DX, 128, 128, 16, 16) == 4 &&
              rt_wino_m(RT_CONV_FWD, 256, 256, 8, 8) == 4 && rt_wino_m(RT_CONV_DX, 512, 512, 4, 4) == 4 &&
              rt_wino_m(RT_CONV_FWD, 64, 64, 7, 7) == 4 && rt_wino_m(RT_CONV_FWD, 64, 64, 5, 5) == 2 &&
              rt_wino_m(RT_CONV_DX, 64, 64, 6, 6) == 2 && rt_wino_m(RT_CONV_FWD, 64, 64, 1, 30) == 2 &&
              rt_wino_m(RT_CONV_DW, 64, 64, 32, 32) == 4 && rt_wino_m(RT_CONV_DW, 128, 128, 16, 16) == 4 &&
              rt_wino_m(RT_CONV_DW, 256, 256, 8, 8) == 4 &&
              rt_wino_m(RT_CONV_DW, 512, 512, 4, 4) == 4 && rt_wino_m(RT_CONV_DW, 512, 512, 16, 16) == 2 &&
              rt_wino_m(RT_CONV_DW, 64, 64, 5, 5) == 2 && rt_wino_m(RT_CONV_FWD, 512, 512, 2, 2) == 2 &&
              rt_wino_m(RT_CONV_DW, 32, 64, 16, 16) == 2,
          "Winograd's tile sizes");
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        const int N = geo[g][0], C = geo[g][1], H = geo[g][2], W = geo[g][3], O = geo[g][4], K = geo[g][5],
                  S = geo[g][6], P = geo[g][7];
        const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1, CKK = C * K * K;
        const int NX = N * C * H * W, NY = N * O * OH * OW;
        /* the rule of conv_dnnl.c takes geometries 7, 8, 15 to 17 and 19 (8, 17 and 19: not
         * dw), and the forward and dx of the ones at 2 x 2 and 3 x 3 where oneDNN runs
         * AVX-512 code */
        bool two = (g == 5 || g == 18) && rt_dnnl_wide(), dnnl = g == 7 || g == 8 || (g >= 15 && g != 18);
        CHECK(rt_dnnl_serves(RT_CONV_FWD, C, O, K, K, S, P, OH, OW) == (dnnl || two) &&
                  rt_dnnl_serves(RT_CONV_DX, C, O, K, K, S, P, OH, OW) == (dnnl || two) &&
                  rt_dnnl_serves(RT_CONV_DW, C, O, K, K, S, P, OH, OW) == (g == 7 || g == 15 || g == 16),
              "geometry %zu: oneDNN's share", g);
        /* Winograd's rule: 3 x 3, stride 1, pad 1, 16 channels or more each side, 64
         * positions or more (from 16 with 64 channels or more, 192 for dw by F(2 x 2), with
         * AVX2 code): geometries 7 (before oneDNN), 15 to 19, not geometry 8 (4 x 4, 32 ->
         * 16), and none where oneDNN runs AVX-512 code, whose sgemm their products (16 x 32
         * over 48 tiles, 64 x 64 over 24 to 48) are too small for */
        for (int op = 0; op < 3; op++)
            CHECK(rt_conv_wino((RtConvOp)op, N, C, H, W, O, K, K, S, P) == (!rt_dnnl_wide() && (g == 7 || g >= 15)),
                  "geometry %zu: Winograd's share", g);
        unsigned seed = 3 + (unsigned)g;
        float *x = malloc(sizeof(float) * NX), *w = malloc(sizeof(float) * O * CKK);
        float *dy = malloc(sizeof(float) * NY), *y = malloc(sizeof(float) * NY), *dx = malloc(sizeof(float) * NX);
        float *dw = malloc(sizeof(float) * O * CKK);
        double *ry = calloc(NY, sizeof(double)), *rdx = calloc(NX, sizeof(double)), *rdw = calloc(O * CKK, sizeof(double));
        for (int i = 0; i < NX; i++) x[i] = frand(&seed);
        for (int i = 0; i < O * CKK; i++) w[i] = frand(&seed);
        for (int i = 0; i < NY; i++) dy[i] = frand(&seed);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++)
                for (int r = 0; r < OH; r++)
                    for (int q = 0; q < OW; q++)
                        for (int c = 0; c < C; c++)
                            for (int i = 0; i < K; i++)
                                for (int j = 0; j < K; j++) {
                                    int rr = r * S - P + i, qq = q * S - P + j;
                                    if (rr < 0 || rr >= H || qq < 0 || qq >= W) continue;
                                    int yi = ((n * O + o) * OH + r) * OW + q, xi = ((n * C + c) * H + rr) * W + qq;
                                    int wi = ((o * C + c) * K + i) * K + j;
                                    ry[yi] += (double)w[wi] * x[xi];
                                    rdx[xi] += (double)w[wi] * dy[yi];
                                    rdw[wi] += (double)dy[yi] * x[xi];
                                }
        static const char *const way_name[] = {"the rules", "OpenBLAS", "oneDNN", "LIBXSMM", "oneDNN's sgemm",
                                               "Winograd"};
        for (int way = 0; way < 6; way++) {
            rt_wino_set_mode(way == 0 ? RT_LIB_RULE : way == 5 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
            rt_dnnl_set_mode(way == 0 ? RT_LIB_RULE : way == 2 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
            rt_xsmm_set_mode(way == 0 ? RT_LIB_RULE : way == 3 ? RT_LIB_ALWAYS : RT_LIB_NEVER);
            rt_gemm_set_mode(way == 1 ? RT_LIB_NEVER : way == 4 ? RT_LIB_ALWAYS : RT_LIB_RULE);
            rt_parallel_set_threads(1);
            nnq_rt_conv_reserve(NULL, N, C, H, W, O, K, K, S, P);
            nnq_rt_conv2d(x, w, y, N, C, H, W, O, K, K, S, P);
            nnq_rt_conv2d_dx(dy, w, dx, N, C, H, W, O, K, K, S, P);
            nnq_rt_conv2d_dw(dy, x, dw, N, C, H, W, O, K, K, S, P);
            double ey = 0, edx = 0, edw = 0;
            for (int i = 0; i < NY; i++) ey = fmax(ey, fabs(y[i] - ry[i]));
            for (int i = 0; i < NX; i++) edx = fmax(edx, fabs(dx[i] - rdx[i]));
            for (int i = 0; i < O * CKK; i++) edw = fmax(edw, fabs(dw[i] - rdw[i]));
            /* to 1e-5 of the largest value (F(4 x 4)'s constants reach 8 and 1/24: about
             * ten times the direct way's rounding); dw's sums run over N OH OW terms:
             * rounding that grows as their square root */
            double tdw = 1e-5 * fmax(1.0, sqrt((double)N * OH * OW / 10000.0)), my = 1, mdx = 1, mdw = 1;
            for (int i = 0; i < NY; i++) my = fmax(my, fabs(ry[i]));
            for (int i = 0; i < NX; i++) mdx = fmax(mdx, fabs(rdx[i]));
            for (int i = 0; i < O * CKK; i++) mdw = fmax(mdw, fabs(rdw[i]));
            CHECK(ey < 1e-5 * my && edx < 1e-5 * mdx && edw < tdw * mdw,
                  "geometry %zu, %s: conv2d %g, dx %g, dw %g against direct sums", g, way_name[way], ey, edx, edw);
            float *y2 = malloc(sizeof(float) * NY), *dx2 = malloc(sizeof(float) * NX);
            float *dw2 = malloc(sizeof(float) * O * CKK);
            for (int threads = 2; threads <= 3; threads++) {
                rt_parallel_set_threads(threads);
                rt_parallel_set_min_items_cap(1);
                nnq_rt_conv_reserve(NULL, N, C, H, W, O, K, K, S, P);
                nnq_rt_conv2d(x, w, y2, N, C, H, W, O, K, K, S, P);
                nnq_rt_conv2d_dx(dy, w, dx2, N, C, H, W, O, K, K, S, P);
                nnq_rt_conv2d_dw(dy, x, dw2, N, C, H, W, O, K, K, S, P);
                rt_parallel_set_min_items_cap(0);
                CHECK(!memcmp(y, y2, sizeof(float) * NY) && !memcmp(dx, dx2, sizeof(float) * NX) &&
                          !memcmp(dw, dw2, sizeof(float) * O * CKK),
                      "geometry %zu, %s: %d threads give the 1-thread bits", g, way_name[way], threads);
            }
            free(y2), free(dx2), free(dw2);
        }
        rt_wino_set_mode(RT_LIB_RULE);
        rt_dnnl_set_mode(RT_LIB_RULE);
        rt_xsmm_set_mode(RT_LIB_RULE);
        rt_gemm_set_mode(RT_LIB_RULE);
        rt_parallel_set_threads(0);
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw);
    }
}

/* A GEMM large enough to be cut into blocks: the same bits on 1, 2 and 3 threads, and
 * within rounding of the reference. */
void test_gemm_threads(void) {
    const int M = 96, N = 700, K = 300;
    unsigned seed = 5;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c1 = malloc(sizeof(float) * M * N), *c = malloc(sizeof(float) * M * N), *r = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = frand(&seed);
    for (int i = 0; i < K * N; i++) b[i] = frand(&seed);
    nnq_rt_sgemm_ref(0, 0, M, N, K, 1, a, K, b, N, 0, r, N);
    rt_parallel_set_threads(1);
    nnq_rt_sgemm(0, 0, M, N, K, 1, a, K, b, N, 0, c1, N);
    double worst = 0;
    for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs(c1[i] - r[i]));
    CHECK(worst < 1e-4, "blocked GEMM against the reference: worst %g", worst);
    for (int threads = 2; threads <= 3; threads++) {
        rt_parallel_set_threads(threads);
        nnq_rt_sgemm(0, 0, M, N, K, 1, a, K, b, N, 0, c, N);
        CHECK(!memcmp(c, c1, sizeof(float) * M * N), "blocked GEMM: %d threads give the 1-thread bits", threads);
    }
    rt_parallel_set_threads(0);
    free(a), free(b), free(c1), free(c), free(r);
}

/* A part's items, the most any part of the job got. */
static void widest_part(void *ctx, int64_t begin, int64_t end) {
    int64_t *most = ctx, n = end - begin, seen = __atomic_load_n(most, __ATOMIC_RELAXED);
    while (n > seen && !__atomic_compare_exchange_n(most, &seen, n, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

/* The pool takes as many threads as --threads allows (NNQ_MAX_THREADS, 1024): a job of
 * 1,000 items at 1,000 threads runs in parts of one item each. The pool once stopped at
 * 256 threads and gave some parts four items, a many-core server's CPUs past 256 idle.
 * With more threads than CPUs its threads do not spin while they wait. */
void test_pool_max_threads(void) {
    int64_t most = 0;
    /* more threads than CPUs: nobody spins waiting (a spinner holds a CPU a worker needs) */
    rt_parallel_set_threads(nnq_cpus_usable());
    CHECK(rt_parallel_spin_ns() > 0, "a pool of the CPUs' size spins briefly");
    rt_parallel_set_threads(nnq_cpus_usable() + 1);
    CHECK(rt_parallel_spin_ns() == 0, "one thread more than CPUs: %lld ns of spinning",
          (long long)rt_parallel_spin_ns());
    rt_parallel_set_threads(1000);
    rt_parallel_for(1000, 1, widest_part, &most);
    CHECK(most == 1, "1000 items on 1000 threads: a part of %lld items", (long long)most);
    most = 0;
    rt_parallel_set_threads(NNQ_MAX_THREADS + 1); /* beyond the bound: the bound */
    rt_parallel_for(2 * NNQ_MAX_THREADS, 1, widest_part, &most);
    CHECK(most == 2, "%d items past the bound: a part of %lld items", 2 * NNQ_MAX_THREADS, (long long)most);
    rt_parallel_set_threads(0);
}

/* The pooling entry points split planes over the thread pool: with 1, 2 and 3 threads
 * they give exactly what one plane at a time gives. */
void test_image_threads(void) {
    const int N = 37, C = 3, H = 20, W = 20;
    unsigned seed = 11;
    float *x = malloc(sizeof(float) * N * C * H * W);
    float *y = malloc(sizeof(float) * N * C * 100), *yr = malloc(sizeof(float) * N * C * 100);
    int32_t *idx = malloc(sizeof(int32_t) * N * C * 100), *idxr = malloc(sizeof(int32_t) * N * C * 100);
    for (int i = 0; i < N * C * H * W; i++) x[i] = frand(&seed);
    for (int p = 0; p < N * C; p++) /* one plane per call: no splitting possible */
        nnq_rt_maxpool(x + p * H * W, 1, H, W, 2, 2, yr + p * 100, idxr + p * 100);
    for (int threads = 1; threads <= 3; threads++) {
        rt_parallel_set_threads(threads);
        rt_parallel_set_min_items_cap(1);
        nnq_rt_maxpool(x, N * C, H, W, 2, 2, y, idx);
        rt_parallel_set_min_items_cap(0);
        CHECK(memcmp(y, yr, sizeof(float) * N * C * 100) == 0 &&
                  memcmp(idx, idxr, sizeof(int32_t) * N * C * 100) == 0,
              "maxpool over planes, %d threads", threads);
    }
    rt_parallel_set_threads(0);
    free(x), free(y), free(yr), free(idx), free(idxr);
}

/* nnq_rt_chan_reduce mode 4 (a bias_relu_bn_grad's sums, y recomputed from the batch
 * norm's input as ((x + add) - shift) * scale) gives the bits of mode 3 on the stored y,
 * for dense layers (S = 1: 16 channels to a vector and a tail), runs shorter than 16 and
 * runs of 16 with a tail; values with many y <= 0. */
void test_chan_relu_grad_affine(void) {
    static const int shapes[][3] = {{5, 37, 1}, {6, 3, 7}, {4, 3, 37}}; /* n, C, S */
    unsigned seed = 17;
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int n = shapes[t][0], C = shapes[t][1], S = shapes[t][2], N = n * C * S;
        float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *dy = malloc(sizeof(float) * N);
        float add[37], shift[37], scale[37], s1[37], s2[37], r1[37], r2[37];
        /* magnitudes apart, so a reordering of the recomputation would round differently */
        for (int c = 0; c < C; c++) add[c] = 0.01f * frand(&seed), shift[c] = 30 * frand(&seed), scale[c] = 1 + frand(&seed);
        for (int i = 0; i < N; i++) {
            int c = i / S % C;
            x[i] = 30 * frand(&seed), dy[i] = frand(&seed);
            y[i] = ((x[i] + add[c]) - shift[c]) * scale[c];
        }
        nnq_rt_chan_reduce(3, dy, y, NULL, NULL, NULL, n, C, S, 0, C, r1, r2);
        nnq_rt_chan_reduce(4, dy, x, add, shift, scale, n, C, S, 0, C, s1, s2);
        CHECK(!memcmp(r1, s1, sizeof(float) * C) && !memcmp(r2, s2, sizeof(float) * C),
              "chan_reduce mode 4 on [%d, %d, %d]: the sums of mode 3 on the stored y", n, C, S);
        free(x), free(y), free(dy);
    }
}

/* nnq_rt_bn_apply's value for element k of channel c, as runtime-abi.md states it, in
 * scalar code. */
static float bn_apply_reference(int mode, const float *x, const float *y, const float *bias, const float *mean,
                                const float *scale, const float *sum1, const float *sum2, float nf, int k, int c) {
    if (!(mode & NNQ_BN_GRAD)) {
        float v = x[k];
        if (mode & NNQ_BN_BIAS) v = v + bias[c];
        v = (v - mean[c]) * scale[c];
        return mode & NNQ_BN_RELU ? (v >= 0 ? v : 0.0f) : v;
    }
    float yv = y[k], g = x[k];
    if (mode & NNQ_BN_RECOMPUTE) yv = ((yv + bias[c]) - mean[c]) * scale[c];
    if ((mode & NNQ_BN_RELU_MASK) && !(yv > 0)) g = 0.0f;
    return scale[c] * ((g - sum1[c] / nf) - yv * (sum2[c] / nf));
}

/* nnq_rt_bn_apply, every mode the code generator uses, at every lane width this CPU runs,
 * gives the documented values bit for bit (dense layers with a tail of channels, runs
 * shorter than a vector, runs with a tail), over a channel range inside the channels,
 * leaving the channels outside it alone; in place (out = x) too. And nnq_rt_bn_stats'
 * four kinds against their formulas. */
void test_bn_apply(void) {
    /* n, C, S; the last: runs long enough for the forward pass's prefetches, with a tail */
    static const int shapes[][3] = {{5, 37, 1}, {3, 20, 1}, {6, 3, 7}, {4, 3, 37}, {3, 5, 64}, {4, 3, 133}};
    static const int modes[] = {0, NNQ_BN_BIAS, NNQ_BN_RELU, NNQ_BN_BIAS | NNQ_BN_RELU, NNQ_BN_GRAD,
                                NNQ_BN_GRAD | NNQ_BN_RELU_MASK,
                                NNQ_BN_GRAD | NNQ_BN_RELU_MASK | NNQ_BN_RECOMPUTE | NNQ_BN_BIAS};
    unsigned seed = 31;
    for (int lanes = 16; lanes >= 4; lanes /= 2) {
        if (!rt_chan_lanes(lanes)) continue;
        for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
            const int n = shapes[t][0], C = shapes[t][1], S = shapes[t][2], N = n * C * S, c0 = 1, c1 = C - 1;
            float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *out = malloc(sizeof(float) * N);
            float *in = malloc(sizeof(float) * N);
            float bias[37], mean[37], scale[37], sum1[37], sum2[37], nf = (float)(n * S);
            for (int c = 0; c < C; c++)
                bias[c] = frand(&seed), mean[c] = frand(&seed), scale[c] = 1 + frand(&seed),
                sum1[c] = 10 * frand(&seed), sum2[c] = 10 * frand(&seed);
            for (int i = 0; i < N; i++) x[i] = 3 * frand(&seed), y[i] = frand(&seed);
            for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
                int mode = modes[mi], bad = -1;
                for (int i = 0; i < N; i++) out[i] = -7.0f;
                nnq_rt_bn_apply(mode, x, mode & NNQ_BN_GRAD ? y : NULL, bias, mean, scale, sum1, sum2, nf, n, C, S, c0,
                                c1, out);
                memcpy(in, x, sizeof(float) * N);
                nnq_rt_bn_apply(mode, in, mode & NNQ_BN_GRAD ? y : NULL, bias, mean, scale, sum1, sum2, nf, n, C, S, c0,
                                c1, in);
                for (int i = 0; i < N && bad < 0; i++) {
                    int c = i / S % C;
                    float want = c >= c0 && c < c1 ? bn_apply_reference(mode, x, y, bias, mean, scale, sum1, sum2, nf, i, c)
                                                   : -7.0f;
                    if (memcmp(&want, &out[i], sizeof want) || (c >= c0 && c < c1 && memcmp(&want, &in[i], sizeof want)))
                        bad = i;
                }
                CHECK(bad < 0, "bn_apply mode %d, %d lanes a vector, [%d, %d, %d]: element %d differs from the formula",
                      mode, lanes, n, C, S, bad);
            }
            free(x), free(y), free(out), free(in);
        }
    }
    rt_chan_lanes(0);
    float sum1[3] = {6, -3, 1.5f}, sum2[3] = {2, 0.5f, 8}, nf = 4, unb = 4.0f / 3.0f;
    float mean[3], scale[3], rmean[3] = {1, 2, 3}, rvar[3] = {4, 5, 6}, r0[3] = {1, 2, 3}, v0[3] = {4, 5, 6};
    nnq_rt_bn_stats(NNQ_BN_MEANS, nf, 0, 3, sum1, NULL, mean, NULL, NULL, NULL);
    nnq_rt_bn_stats(NNQ_BN_TRAIN, nf, 0, 3, NULL, sum2, mean, scale, rmean, rvar);
    bool ok = true;
    for (int c = 0; c < 3; c++) {
        float var = sum2[c] / nf;
        ok &= mean[c] == sum1[c] / nf && scale[c] == 1.0f / sqrtf(var + 1e-5f) &&
              rmean[c] == 0.9f * r0[c] + 0.1f * mean[c] && rvar[c] == 0.9f * v0[c] + 0.1f * (var * unb);
    }
    CHECK(ok, "bn_stats: means, then training statistics and the running ones");
    memcpy(rmean, r0, sizeof rmean), memcpy(rvar, v0, sizeof rvar);
    nnq_rt_bn_stats(NNQ_BN_CALIB, nf, 1, 3, NULL, sum2, mean, scale, rmean, rvar);
    ok = rmean[0] == r0[0] && rvar[0] == v0[0];
    for (int c = 1; c < 3; c++) ok &= rmean[c] == r0[c] + mean[c] && rvar[c] == v0[c] + (sum2[c] / nf) * unb;
    CHECK(ok, "bn_stats: calibration adds the batch's statistics to the sums, channels 1 and 2 only");
    nnq_rt_bn_stats(NNQ_BN_RUNNING, nf, 0, 3, NULL, NULL, mean, scale, r0, v0);
    ok = true;
    for (int c = 0; c < 3; c++) ok &= mean[c] == r0[c] && scale[c] == 1.0f / sqrtf(v0[c] + 1e-5f);
    CHECK(ok, "bn_stats: evaluation's mean and scale from the running statistics");
}

/* The lanes nnq_rt_chan_reduce documents (runtime/chan.c), one channel, in scalar code:
 * mode 0 sums x + a, mode 1 (x + a - m)^2, modes 2 to 4 g and g y with g = x (2) or x
 * where y > 0 (3; 4 with y = ((y + a) - m) * sc). S = 1: in order over the samples; S <
 * 16: the values in sequence round 16 lanes; else value s of a run in lane s mod 16 and a
 * run's tail in tail lanes, added to the lanes at the end; the 16 lanes then pairwise. */
static void chan_reference(int mode, const float *x, const float *y, float a, float m, float sc, int n, int C,
                           int S, int c, float *out, float *out2) {
    float l1[16] = {0}, l2[16] = {0}, t1[16] = {0}, t2[16] = {0}, s1 = 0, s2 = 0;
    int pos = 0;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < S; s++) {
            int k = (i * C + c) * S + s;
            float v = x[k], yv = mode == 4 ? ((y[k] + a) - m) * sc : mode >= 2 ? y[k] : 0.0f, g, g2 = 0;
            if (mode == 0) g = v + a;
            else if (mode == 1) g = (v + a - m) * (v + a - m);
            else g = mode == 2 || yv > 0 ? v : 0.0f, g2 = g * yv;
            if (S == 1) s1 += g, s2 += g2;
            else if (S < 16) l1[pos % 16] += g, l2[pos % 16] += g2, pos++;
            else if (s < S / 16 * 16) l1[s % 16] += g, l2[s % 16] += g2;
            else t1[s % 16] += g, t2[s % 16] += g2;
        }
    if (S > 1) {
        for (int j = 0; j < 16; j++) l1[j] += t1[j], l2[j] += t2[j];
        for (int w = 8; w >= 1; w /= 2)
            for (int j = 0; j < w; j++) l1[j] += l1[j + w], l2[j] += l2[j + w];
        s1 = l1[0], s2 = l2[0];
    }
    *out = s1, *out2 = s2;
}

/* Every mode of nnq_rt_chan_reduce, at every lane width this CPU runs (16, 8, 4 floats a
 * vector), gives the bits of the documented lanes, for dense layers (S = 1: 16 channels to
 * a vector and a tail), runs shorter than 16, runs of 16 and runs of 16 with a tail (in
 * blocks of channels summed side by side; long runs, their loops' own copy), over a
 * channel range that starts and ends inside the channels; y's signs mixed. */
void test_chan_lanes(void) {
    /* n, C, S; the last two: runs with a tail in blocks of 16 channels side by side and one
     * of 3; runs longer than chan.c's PREFETCH_LINES lines, with a tail */
    static const int shapes[][3] = {{5, 37, 1}, {6, 3, 7}, {9, 4, 4}, {4, 3, 37}, {3, 5, 64}, {3, 37, 20}, {4, 3, 1037}};
    unsigned seed = 29;
    int widths = 0;
    for (int lanes = 16; lanes >= 4; lanes /= 2) {
        if (!rt_chan_lanes(lanes)) continue;
        widths++;
        for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
            const int n = shapes[t][0], C = shapes[t][1], S = shapes[t][2], N = n * C * S, c0 = 1, c1 = C - 1;
            float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
            float add[37], shift[37], scale[37], o1[37], o2[37];
            for (int c = 0; c < C; c++) add[c] = frand(&seed), shift[c] = 3 * frand(&seed), scale[c] = 1 + frand(&seed);
            for (int i = 0; i < N; i++) x[i] = 30 * frand(&seed), y[i] = frand(&seed);
            for (int mode = 0; mode <= 4; mode++) {
                bool two = mode >= 2, aff = mode == 4 || mode <= 1;
                memset(o1, 0, sizeof o1), memset(o2, 0, sizeof o2);
                nnq_rt_chan_reduce(mode, x, two ? y : NULL, aff ? add : NULL, mode != 0 && aff ? shift : NULL,
                                   mode == 4 ? scale : NULL, n, C, S, c0, c1, o1, two ? o2 : NULL);
                int bad = -1;
                for (int c = c0; c < c1 && bad < 0; c++) {
                    float r1, r2;
                    chan_reference(mode, x, y, aff ? add[c] : 0, mode != 0 && aff ? shift[c] : 0, scale[c], n, C, S,
                                   c, &r1, &r2);
                    if (memcmp(&r1, &o1[c], sizeof r1) || (two && memcmp(&r2, &o2[c], sizeof r2))) bad = c;
                }
                CHECK(bad < 0, "chan_reduce mode %d, %d lanes a vector, [%d, %d, %d]: channel %d differs from the documented lanes",
                      mode, lanes, n, C, S, bad);
            }
            free(x), free(y);
        }
    }
    CHECK(widths >= 1 && !rt_chan_lanes(5), "chan_reduce: %d lane widths run here; 5 is refused", widths);
    rt_chan_lanes(0);
}
