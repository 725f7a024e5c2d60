/* test_isa.c — $NNQ_ISA (runtime/isa.c): the level it names, never above the CPU's, and
 * the kernels compiled per instruction set (RT_ISA_DISPATCH: im2col, col2im, 2 x 2 max
 * pooling with and without a batch norm, depthwise convolutions, of x or of a batch norm's
 * values) giving at every level
 * this CPU runs the same bits as at the widest: the narrower versions are what an
 * AVX2-only or older CPU runs, and no other test reaches them on a wider CPU. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_internal.h"

static float irand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* The widest level this CPU has: rt_isa() with $NNQ_ISA unset. */
static RtIsa cpu_isa(void) {
    unsetenv("NNQ_ISA");
    return rt_isa();
}

void test_isa_levels(void) {
    RtIsa top = cpu_isa();
    static const char *const names[] = {"portable", "avx2", "avx512"};
    static const int lanes[] = {4, 8, 16};
    for (int k = RT_ISA_PORTABLE; k <= RT_ISA_AVX512; k++) {
        setenv("NNQ_ISA", names[k], 1);
        RtIsa got = rt_isa(), want = (RtIsa)k < top ? (RtIsa)k : top;
        CHECK(got == want && !strcmp(nnq_isa(), names[want]) && nnq_isa_held() == (want < top),
              "NNQ_ISA=%s: level %d (%s), want %d", names[k], got, nnq_isa(), want);
        CHECK(rt_cpu_lanes(0) == lanes[want], "NNQ_ISA=%s: %d lanes", names[k], rt_cpu_lanes(0));
        CHECK(rt_cpu_lanes(4) == 4 && (rt_cpu_lanes(8) == 8) == (want >= RT_ISA_AVX2) &&
                  (rt_cpu_lanes(16) == 16) == (want >= RT_ISA_AVX512),
              "NNQ_ISA=%s: a wider kernel family allowed", names[k]);
    }
    setenv("NNQ_ISA", "", 1);
    CHECK(rt_isa() == top, "an empty NNQ_ISA holds nothing back");
    unsetenv("NNQ_ISA");
}

enum { N = 3, C = 5, H = 20, W = 27, K = 3 };

/* Every dispatched kernel's outputs, concatenated into out (OUT_FLOATS). */
enum {
    COL_S1 = C * K * K * (H - K + 1) * (W - K + 1), COL_S2 = C * K * K * ((H - 1) / 2 + 1) * ((W - 1) / 2 + 1),
    XS = N * C * H * W, POOLED = N * C * (H / 2) * (W / 2), DWY = N * C * H * W, DWW = C * K * K,
    OUT_FLOATS = COL_S1 + COL_S2 + C * H * W + 4 * POOLED + 2 * DWY + XS + 2 * DWW,
};

static void run_kernels(const float *x, const float *dy, const float *w, float *out) {
    static const float bias[C] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f}, mean[C] = {0.1f, 0.3f, -0.7f, 0.0f, 0.2f};
    static const float scale[C] = {1.5f, 0.75f, 2.0f, 1.0f, 3.0f};
    float *o = out;
    nnq_rt_im2col(x, C, H, W, K, K, 1, 0, o, (H - K + 1) * (W - K + 1)); /* the plain-copy path */
    float *col = o;
    o += COL_S1;
    nnq_rt_im2col(x, C, H, W, K, K, 2, 1, o, ((H - 1) / 2 + 1) * ((W - 1) / 2 + 1));
    o += COL_S2;
    nnq_rt_col2im(col, (H - K + 1) * (W - K + 1), C, H, W, K, K, 1, 0, o);
    o += C * H * W;
    int32_t *idx = malloc(sizeof(int32_t) * POOLED);
    nnq_rt_relu_maxpool(x, N * C, H, W, 2, 2, o, idx);
    memcpy(o + POOLED, idx, sizeof(int32_t) * POOLED);
    o += 2 * POOLED;
    nnq_rt_bn_relu_maxpool(x, bias, mean, scale, N, C, 0, C, H, W, 2, 2, o, idx);
    memcpy(o + POOLED, idx, sizeof(int32_t) * POOLED);
    o += 2 * POOLED;
    free(idx);
    nnq_rt_dwconv_reserve(NULL, N, C, H, W, C, K, K, 1, 1, 0);
    nnq_rt_dwconv2d(x, w, o, N, C, H, W, C, K, K, 1, 1);
    o += DWY;
    nnq_rt_dwconv2d_dx(dy, w, o, N, C, H, W, C, K, K, 1, 1);
    o += XS;
    nnq_rt_dwconv2d_dw(dy, x, o, N, C, H, W, C, K, K, 1, 1);
    o += DWW;
    nnq_rt_dwconv_reserve(NULL, N, C, H, W, C, K, K, 1, 1, 1);
    nnq_rt_dwconv2d_bn(x, w, o, N, C, H, W, C, K, K, 1, 1, bias, mean, scale);
    o += DWY;
    nnq_rt_dwconv2d_dw_bn(dy, x, o, N, C, H, W, C, K, K, 1, 1, bias, mean, scale);
}

void test_isa_kernels(void) {
    RtIsa top = cpu_isa();
    unsigned seed = 5;
    float *x = malloc(sizeof(float) * XS), *dy = malloc(sizeof(float) * DWY), *w = malloc(sizeof(float) * DWW);
    for (int i = 0; i < XS; i++) x[i] = irand(&seed);
    for (int i = 0; i < DWY; i++) dy[i] = irand(&seed);
    for (int i = 0; i < DWW; i++) w[i] = irand(&seed);
    float *want = malloc(sizeof(float) * OUT_FLOATS), *got = malloc(sizeof(float) * OUT_FLOATS);
    static const char *const names[] = {"portable", "avx2", "avx512"};
    rt_isa_reset();
    CHECK(rt_isa_kernels() == top, "kernels at %s, the CPU runs %s", names[rt_isa_kernels()], names[top]);
    memset(want, 0x55, sizeof(float) * OUT_FLOATS);
    run_kernels(x, dy, w, want);
    for (int k = RT_ISA_PORTABLE; k < (int)top; k++) {
        setenv("NNQ_ISA", names[k], 1);
        rt_isa_reset();
        CHECK(rt_isa_kernels() == (RtIsa)k, "NNQ_ISA=%s: kernels at %s", names[k], names[rt_isa_kernels()]);
        memset(got, 0x33, sizeof(float) * OUT_FLOATS);
        run_kernels(x, dy, w, got);
        int64_t first = -1;
        for (int64_t i = 0; i < OUT_FLOATS && first < 0; i++)
            if (memcmp(&got[i], &want[i], sizeof(float))) first = i;
        CHECK(first < 0, "NNQ_ISA=%s: output %lld of %d differs from %s's", names[k], (long long)first, OUT_FLOATS,
              names[top]);
    }
    unsetenv("NNQ_ISA");
    rt_isa_reset();
    if (top == RT_ISA_PORTABLE) th_skip("this CPU runs no wider kernels than the portable ones");
    free(x), free(dy), free(w), free(want), free(got);
}
