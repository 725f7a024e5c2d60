/* conv_xsmm.c — the products LIBXSMM (libxsmm-dev: small matrix multiplications, their
 * code generated at run time for the CPU it runs on) computes for conv.c: one product per
 * sample, on the pool thread that owns the sample's chunk, with no packing of either
 * operand (OpenBLAS copies both into its panel layouts on every call, which costs as much
 * as the product itself where the matrices are as small as one sample's).
 *
 * A kernel computes C = A B (+ C for dw after a slot's first sample) in LIBXSMM's
 * column-major terms, on conv.c's row-major arrays read transposed, so every operand is
 * an array conv.c already has or makes cheaply. With AVX2 code the forward and dx run
 * by pieces of m = RT_XSMM_M_PIECE positions (a + i, c + i; a shorter last piece has its
 * own kernel): LIBXSMM's AVX2 kernels over a whole sample's m = 1024 ran at 33-70
 * GFLOP/s where the same product by pieces of 128 ran at 106-115 (operands in cache, AMD
 * Zen 5: 1024 x 64 x 27, VGG-16's first layer, 68 -> 115; 1024 x 24 x 144, 47 -> 108);
 * with AVX-512 code whole samples did as well. With P = OH*OW and K = C*KH*KW:
 *   forward: y_s [O, P] = w [O, K] col_s [K, P]; m = P, n = O, k = K, a = col_s, b = w.
 *   dx: dcol_s [K, P] = w^T dy_s; m = P, n = K, k = O, a = dy_s, b = w^T [K, O].
 *   dw: dw [O, K] += dy_s[:, piece] PT_s[piece, :] over pieces of Q = RT_XSMM_DW_POSITIONS
 *       positions (the last piece may be shorter: its own kernels); m = K, n = O, k = Q,
 *       a = PT_s's rows for the piece [Q, K] (conv.c's patches: im2col's matrix transposed,
 *       built a piece at a time), b = dy_s at the piece's first position, ldb = P.
 *   dw, 1 x 1 stride-1 unpadded: dw^T [K, M] += x_s dy_s^T; m = M, n = K, k = P,
 *       a = dy_s^T [P, M], b = x_s, and conv.c transposes the sum back.
 * LIBXSMM 1.17 generates no transposed operand, so dw needs one operand built transposed:
 * the patches, which cost what im2col does, or, where the sample is its own columns, dy_s
 * (the smaller of the two). M is O rounded up to 8, dy_s^T's extra columns zeros: the
 * kernels hold m in vectors of 8 (AVX2) or 16 (AVX-512) lanes, and a remainder costs more
 * than the zeros. Every dw went the transposed way before: LeNet-5's conv2 (O = 50) ran at
 * 75 GFLOP/s on one thread with AVX2 code (its kernel alone: 114), a fifth of the time in
 * transposing dy_s and in summing and transposing back the slots' dw^T. A whole sample's
 * patches at once reached 95 on one thread but 114 on two (the patches, read back for
 * every few rows of dw, crowd the L2 cache); by pieces of 16 positions, 96 and 168-184,
 * against 75 and 141-152 the transposed way (the call alone, best of 200; AMD Zen 5,
 * 2026-12-04; docs/speed-log.md).
 *
 * The rule (shapes and the CPU only, never timing, so a shape takes the same path on every
 * run): LIBXSMM serves what oneDNN does not where P >= 64, and
 *   forward where a sample's columns fit in 1 MiB (K * P <= 2^18 floats),
 *   dx where they fit in 1 MiB, K <= 576 and the stride is 1 (ResNet-18's stride-2 layers,
 *   2 threads, AMD Zen 5, direct GFLOP/s, LIBXSMM against im2col + GEMM: 3 x 3 64 -> 128
 *   at 32 x 32 150-155 against 203-206 with AVX2 code, 228-236 against 367 with AVX-512;
 *   its 1 x 1 shortcut 143 against 164, 209 against 256),
 *   neither, with AVX2 code, where the product's n is under 32 and its k 32 or more
 *   (forward: O < 32 <= K; dx: K < 32 <= O). MobileNetV2's 1 x 1 layers at 32 x 32 ran
 *   so at 46-57 GFLOP/s on one thread of AMD Zen 5, against 63-74 through im2col +
 *   OpenBLAS (144 -> 24 forward 51 against 67, 24 -> 144 dx 53 against 74); with
 *   AVX-512 code the same products ran at 117-180 against 69-99, and with a short k
 *   LIBXSMM wins with AVX2 too (LeNet-5's conv1 forward, O = 20, K = 25: 100 against 75),
 *   dw where P <= 1024 and K >= 128, and either the sample is its own columns (1 x 1,
 *   stride 1, unpadded) or gemm.c's rule by size gives OpenBLAS a product of one sample's
 *   size (O x K x P; rt_gemm_dnnl_sized: so also where an OpenBLAS older than the CPU has
 *   every product go to oneDNN). Where it gives it to oneDNN's sgemm (AVX-512), im2col + that sgemm
 *   over a chunk of samples (k = the chunk's positions, where LIBXSMM's k is one sample's
 *   P, so it reads and writes dw^T once a sample) beat LIBXSMM's dw wherever columns must
 *   be built: on AMD Zen 5, 2 threads, LeNet-5's conv2 181 -> 232 GFLOP/s (1 thread 92 ->
 *   116), ResNet-18's stride-2 64 -> 128 222 -> 232; LeNet-5's step -5% (paired
 *   profiles); still by patches a piece at a time, 224 against 245 (1 thread: 150 against
 *   147); the 1 x 1 layers keep LIBXSMM (MobileNetV2's 144 -> 24 at 32 x 32 127
 *   against 95, 384 -> 64 at 8 x 8 189 against 161).
 * Measured by bench/conv_bench.c against im2col + OpenBLAS (and oneDNN) on the examples'
 * layers, with AVX-512 code and with AVX2 code (LIBXSMM_TARGET=hsw, OPENBLAS_CORETYPE=
 * Haswell) on one Intel CPU (docs/speed-log.md): inside the rule it wins by 1.1-1.8x,
 * on both ISAs but for a few ties; outside it loses on one ISA or both (fewer than 64
 * positions leave its m or k short; a sample's columns beyond the L2 cache; dw with a
 * short n).
 *
 * A kernel depends on the shape alone: bits agree at any thread count and chunk size, and
 * differ across CPUs, as OpenBLAS's do. LIBXSMM makes a kernel on its first dispatch
 * (nnq_rt_conv_reserve before training) and keeps it in its own thread-safe registry for
 * the process; later dispatches of the shape find it there. */
#include <libxsmm.h>
#include <pthread.h>

#include "rt_internal.h"

static RtLibMode mode = RT_LIB_RULE;

int32_t rt_xsmm_dw_m(int32_t o) {
    return (o + 7) / 8 * 8;
}

void rt_xsmm_set_mode(RtLibMode m) {
    mode = m;
}

/* A product LIBXSMM's AVX2 kernels run slowly: fewer than 32 columns n over a depth k of
 * 32 or more (see the rule above). */
static bool narrow_on_avx2(int64_t n, int64_t k) {
    return n < 32 && k >= 32 && rt_isa() == RT_ISA_AVX2;
}

bool rt_xsmm_serves(RtConvOp op, int32_t c, int32_t o, int32_t kh, int32_t kw, int32_t stride,
                    int32_t pad, int32_t oh, int32_t ow) {
    if (mode != RT_LIB_RULE)
        return mode == RT_LIB_ALWAYS;
    int64_t p = (int64_t)oh * ow, k = (int64_t)c * kh * kw;
    if (p < 64)
        return false;
    switch (op) {
    case RT_CONV_FWD:
        return k * p <= (1 << 18) && !narrow_on_avx2(o, k);
    case RT_CONV_DX:
        return stride == 1 && k <= 576 && k * p <= (1 << 18) && !narrow_on_avx2(k, o);
    case RT_CONV_DW: {
        bool cols_are_x = kh == 1 && kw == 1 && stride == 1 && pad == 0;
        return p <= 1024 && k >= 128 && (cols_are_x || !rt_gemm_dnnl_sized(o, (int32_t)k, (int32_t)p));
    }
    }
    return false;
}

static RtXsmmKernel dispatch(int m, int n, int k, int lda, int ldb, int ldc, float beta) {
    float alpha = 1.0f;
    int flags = LIBXSMM_GEMM_FLAG_NONE;
    return libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, NULL);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* LIBXSMM's code generator held to rt_isa() (isa.c): "hsw" is its AVX2 target, and
 * "generic" generates nothing (conv.c's own path then). */
static void init(void) {
    libxsmm_init();
    RtIsa isa = rt_isa();
    if (isa != RT_ISA_AVX512)
        libxsmm_set_target_arch(isa == RT_ISA_AVX2 ? "hsw" : "generic");
}

bool rt_xsmm_conv(RtConvOp op, int32_t c, int32_t h, int32_t w, int32_t o, int32_t kh, int32_t kw,
                  int32_t stride, int32_t pad, RtXsmmConv *k) {
    int32_t oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1;
    int p = oh * ow, ckk = c * kh * kw;
    *k = (RtXsmmConv){0};
    if (!rt_xsmm_serves(op, c, o, kh, kw, stride, pad, oh, ow))
        return false;
    pthread_once(&init_once, init);
    switch (op) {
    case RT_CONV_FWD:
    case RT_CONV_DX: { /* by pieces of m with AVX2 code: rows [i, i + piece) of a and c, at a + i and c + i */
        int n = op == RT_CONV_FWD ? o : ckk, kk = op == RT_CONV_FWD ? ckk : o;
        int piece = p > RT_XSMM_M_PIECE && rt_isa() == RT_ISA_AVX2 ? RT_XSMM_M_PIECE : p, tail = p % piece;
        k->m = p, k->piece = piece;
        k->set = dispatch(piece, n, kk, p, kk, p, 0.0f);
        if (tail && !(k->tail_set = dispatch(tail, n, kk, p, kk, p, 0.0f)))
            k->set = NULL;
        break;
    }
    case RT_CONV_DW: {
        if (kh == 1 && kw == 1 && stride == 1 && pad == 0) { /* the sample is its own columns */
            int m = rt_xsmm_dw_m(o);
            k->set = dispatch(m, ckk, p, m, p, m, 0.0f);
            k->add = dispatch(m, ckk, p, m, p, m, 1.0f);
            break;
        }
        int q = RT_XSMM_DW_POSITIONS, tail = p % q;
        k->set = dispatch(ckk, o, q, ckk, p, ckk, 0.0f);
        k->add = dispatch(ckk, o, q, ckk, p, ckk, 1.0f);
        if (tail) {
            k->tail_set = dispatch(ckk, o, tail, ckk, p, ckk, 0.0f);
            k->tail_add = dispatch(ckk, o, tail, ckk, p, ckk, 1.0f);
        }
        if (tail && (!k->tail_set || !k->tail_add))
            k->set = NULL;
        break;
    }
    }
    if (!k->set || (op == RT_CONV_DW && !k->add))
        *k = (RtXsmmConv){0};
    return k->set != NULL;
}

void rt_xsmm_dw_piece(const RtXsmmConv *k, bool accumulate, int64_t positions, const float *pt, const float *dy,
                      float *dw) {
    if (positions == RT_XSMM_DW_POSITIONS)
        (accumulate ? k->add : k->set)(pt, dy, dw);
    else
        (accumulate ? k->tail_add : k->tail_set)(pt, dy, dw);
}

void rt_xsmm_sample(const RtXsmmConv *k, bool accumulate, const float *a, const float *b,
                    float *c) {
    if (!k->piece) { /* dw, 1 x 1: one product */
        (accumulate ? k->add : k->set)(a, b, c);
        return;
    }
    int32_t i = 0;
    for (; i + k->piece <= k->m; i += k->piece) k->set(a + i, b, c + i);
    if (i < k->m) k->tail_set(a + i, b, c + i);
}
