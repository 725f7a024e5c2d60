/* test_isa.c — $NNQ_ISA (runtime/isa.c): the level it names, never above the CPU's, and
 * the kernels compiled per instruction set (RT_ISA_DISPATCH: im2col, col2im, 2 x 2 max
 * pooling with and without a batch norm, depthwise convolutions, of x or of a batch norm's
 * values) giving at every level
 * this CPU runs the same bits as at the widest: the narrower versions are what an
 * AVX2-only or older CPU runs, and no other test reaches them on a wider CPU; the x86-64
 * level a built trainer targets, and its check of a CPU's features. */
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

/* The x86-64 level a built trainer targets and its check (nnq_isa_level, rt_isa_missing):
 * a feature set missing one feature of a level lacks that feature, and only levels that
 * need it; the level follows $NNQ_ISA down and never exceeds the CPU's. */
void test_isa_trainer_level(void) {
    enum { V3 = 0x7f, V4 = 0xfff }; /* isa.c's order: seven features of v3, then five of v4 */
    CHECK(!rt_isa_missing(2, V4) && !rt_isa_missing(1, V3) && !rt_isa_missing(0, 0), "whole sets lack nothing");
    const char *m = rt_isa_missing(2, V4 & ~(1u << 8));
    CHECK(m && !strcmp(m, "avx512bw"), "v4 without its second feature lacks avx512bw, not %s", m ? m : "nothing");
    m = rt_isa_missing(2, V3);
    CHECK(m && !strcmp(m, "avx512f"), "v3's features lack avx512f for v4, not %s", m ? m : "nothing");
    m = rt_isa_missing(1, V3 & ~(1u << 6));
    CHECK(m && !strcmp(m, "lzcnt") && !rt_isa_missing(0, V3 & ~(1u << 6)), "v3 without lzcnt: %s",
          m ? m : "nothing");
    RtIsa top = cpu_isa();
    int cpu_level = nnq_isa_level();
    CHECK(cpu_level >= 0 && cpu_level <= (top == RT_ISA_AVX512 ? 2 : top == RT_ISA_AVX2 ? 1 : 0) &&
              nnq_isa_level_check(cpu_level, "test"),
          "this CPU's level %d (%s) runs here", cpu_level, nnq_isa_level_name(cpu_level));
    setenv("NNQ_ISA", "avx2", 1);
    CHECK(nnq_isa_level() == (cpu_level < 1 ? cpu_level : 1), "NNQ_ISA=avx2: level %d", nnq_isa_level());
    setenv("NNQ_ISA", "portable", 1);
    CHECK(nnq_isa_level() == 0 && !strcmp(nnq_isa_level_name(0), "x86-64"), "NNQ_ISA=portable: level %d",
          nnq_isa_level());
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
