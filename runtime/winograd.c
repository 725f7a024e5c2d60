/* winograd.c — 3 x 3, stride-1, pad-1 convolutions and their input gradients by Winograd's
 * minimal filtering F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2016), m = 2 or 4, for conv.c: VGG-16's layers and most of
 * ResNet-18's. An m x m block of outputs from an n x n tile of input d (n = m + 2) and a
 * 3 x 3 filter g is
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A        ((.): elementwise, n^2 products)
 * where the direct way takes 9 m^2 (F(2 x 2): 16 against 36, F(4 x 4): 36 against 144);
 * summed over C input channels the elementwise products become n^2 matrix products, one
 * per point xi of the transformed tile:
 *     M[xi] [O, T] = V[xi] [O, C] U[xi] [C, T]
 * with T the chunk's tiles, U the inputs' tiles transformed, V the filters transformed:
 * the GEMM (gemm.c's rule, on the calling thread) runs them near its peak, and the
 * transforms cost a few adds a value. F(2 x 2):
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *     A^T = [1 1 1 0; 0 1 -1 -1];
 * F(4 x 4): BT4, g4 and AT4 below. dx of such a layer is the same convolution of dy with
 * each filter turned by 180 degrees and its channels swapped (w'[c][o][i][j] =
 * w[o][c][2-i][2-j]), so one kernel serves both: rt_wino_weights transforms w one way or
 * the other. dw runs the adjoint way (F(2 x 2) or F(4 x 4)): dV[xi] [O, C] = sum over
 * tiles of (A dy_t A^T)[xi] (B^T d_t B)[xi], products over the tiles' dimension, then
 * dw = G^T dV G.
 *
 * Requires conv.c's chunks (a chunk's samples on one thread, its scratch from the pool,
 * parallel.c) and gemm.c's rt_sgemm_serial. Provides rt_wino_serves (the rule; F(4 x 4)
 * where rt_wino_m says; the whole batch at once where rt_wino_batch says), rt_wino_weights
 * (V, in parallel over rows), rt_wino_chunk (the forward or dx of one chunk),
 * rt_wino_dw_chunk and rt_wino_dw_out (dw), rt_wino_rows_in / _dy / _out (one channel of
 * the whole batch), their scratch sizes, and rt_wino_set_mode (conv_bench and the tests
 * take the path on or off).
 *
 * Tiles cover the output plane in rows of TW = ceil(W/m) (a plane of another size than a
 * multiple of m: the last tiles read padding and write fewer outputs); the transforms take
 * 8 tiles a vector: a row of input, padded with zeros, read as its values 0 and 1 mod 2
 * (F(2 x 2)) or 0-3 mod 4 (F(4 x 4)); F(4 x 4) on planes of fewer than 7 tiles a row, and
 * the whole batch at once, read several samples' rows side by side, so that a vector's
 * tiles fill it. Every value's operations are fixed by the shapes (no FMA contraction:
 * runtime/CMakeLists.txt), so a chunk's results are the same bits on any thread. Error:
 * F(2 x 2)'s constants are 1 and 1/2, so its rounding is the direct convolution's order of
 * magnitude; F(4 x 4)'s reach 8 and 1/24: about ten times that
 * (a largest error of 7e-6 of the largest output, 64 channels at 32 x 32; tests/runtime/
 * test_conv.c bounds both). */
#include <stdint.h>
#include <string.h>

#include "rt_internal.h"

typedef float V8 __attribute__((vector_size(32)));
typedef float V8u __attribute__((vector_size(32), aligned(4)));

static RtLibMode mode = RT_LIB_RULE;

void rt_wino_set_mode(RtLibMode m) {
    mode = m;
}

/* Sizes for tiles of m x m outputs: a sample's tiles; a row of tiles rounded up to whole
 * vectors (TWV); a padded input row: a zero, the row, zeros to the last vector's reach
 * (m * TWV + m + 2 floats, and more read past); each input row's horizontal transforms, n
 * rows of TWV per row of input and the zero rows around the plane. */
static int64_t tiles_of(int32_t h, int32_t w, int m) {
    return (int64_t)((h + m - 1) / m) * ((w + m - 1) / m);
}
static int64_t twv_of(int32_t w, int m) {
    return ((w + m - 1) / m + 7) / 8 * 8;
}
static int64_t prow_floats(int32_t w, int m) {
    return m * twv_of(w, m) + 16;
}
static int64_t hbuf_floats(int32_t h, int32_t w, int m) {
    return (int64_t)(m * ((h + m - 1) / m) + 2) * (m + 2) * twv_of(w, m);
}
/* F(4 x 4) on planes of fewer than 7 tiles a row (and the whole batch at once, either
 * tile size) takes the g samples' planes of a channel side by side (winos_in, winos_out):
 * a row of each, padded to TW + 1 tiles (m TW + m floats, its zeros between the planes;
 * the last tile of each is read but not kept), so a vector's 8 tiles come from several
 * samples. Its padded row of the g planes (and the last vector's reach), and its
 * horizontal transforms' rows: the kept tiles, 8 more. */
static bool side_by_side(int32_t w, int m) {
    return m == 4 && (w + 3) / 4 < 7;
}
static int64_t sprow_floats(int32_t w, int m, int64_t g) {
    return m * ((g * ((w + m - 1) / m + 1) + 7) / 8 * 8) + 40;
}
static int64_t shb_row(int32_t w, int m, int64_t g) {
    return (g * ((w + m - 1) / m) + 7) / 8 * 8 + 8;
}
static int64_t shbuf_floats(int32_t h, int32_t w, int m, int64_t g) {
    return (int64_t)(m * ((h + m - 1) / m) + 2) * (m + 2) * shb_row(w, m, g);
}
/* Leading dimension of U's and M's rows: the chunk's tiles and room for a last vector's
 * 7 lanes past them. */
static int64_t ld_of(int64_t g, int32_t h, int32_t w, int m) {
    return g * tiles_of(h, w, m) + 8;
}

/* The floats between one point's block and the next (U, M, DY: rt_wino_pstride; V, dV:
 * rt_wino_plane) beyond the block itself. */
enum { WINO_PAD = 16 };

/* The points of U, M or DY: `rows` rows of ld floats and WINO_PAD more apart. rows * ld
 * alone is a multiple of 2 or 4 KiB for most channel counts and tile counts, and the
 * transforms' (m + 2)^2 streams, a row of each point, then fall in one or two sets of the
 * L1 cache (12 ways): VGG-16's 64 -> 64 at 32 x 32 (pieces of 4 samples: 2 KiB), 2 threads, AVX2,
 * AMD Zen 5, forward 18.8 -> 16.5 ms, dx 18.8 -> 16.7 (best of 8, three alternated runs);
 * the whole batch's 512 channels at 4 x 4 and 2 x 2 within 1%. */
int64_t rt_wino_pstride(int64_t rows, int64_t ld) {
    return rows * ld + WINO_PAD;
}

/* The rule (shapes and the CPU only): 3 x 3, stride 1, pad 1, and both channel counts 16
 * or more (the products' inner dimension is C forward and O for dx: a network's first
 * layer, of 3 input channels, keeps im2col's 27). Planes of 64 positions or more; with
 * AVX2 code also smaller planes where both channel counts are 64 or more (F(4 x 4), or
 * the whole batch at once: rt_wino_batch) or 192 (F(2 x 2) by pieces: dw beyond 256 x 256
 * channels, and planes such as 5 x 5). Where oneDNN runs AVX-512 code, 64 positions or
 * more (or the whole batch at once), 64 channels or more, and products (O x C over the g
 * samples' tiles) that gemm.c gives oneDNN's sgemm (2 MFLOP or more), not OpenBLAS's AVX2
 * kernels; there, the whole batch at 4 x 4, direct GFLOP/s against oneDNN's (dw:
 * im2col's): 512 channels 957 / 533, 915 / 626, 607 / 457; 128 828 / 332, 823 / 696, 576 /
 * 331. Measured against the other ways (bench/conv_bench and single layers, batch 128, 2
 * threads, AMD Zen 5; docs/speed-log.md), VGG-16's layers, 64 channels
 * at 32 x 32 to 256 at 8 x 8: forward and dx 1.5-2.1x as fast with AVX2 code, 1.3-1.8x
 * with AVX-512 code; dw 1.45-1.6x and 1.0-1.1x. Planes under 64 positions leave a
 * sample's few tiles (4 at 4 x 4) to the products and the transforms: at 4 x 4 with AVX2
 * code, F(2 x 2) with 512 channels 1.35x forward, 1.2x dx, 1.3x dw (against oneDNN's dx
 * and im2col's dw), 192 channels 1.1-1.45x, but 128 and fewer 0.6-1.0x; F(4 x 4) side by
 * side 1.2-1.7x from 64 channels, 0.85-0.95x at 32; with AVX-512 code F(2 x 2) a tie
 * forward, dx slower, dw 1.15-1.2x at 512 channels only (not taken). At 2 x 2 slower (a
 * sample's 1 tile). With AVX-512 code, 0.55-0.75x at 16 to 48 channels (16 -> 32 at
 * 28 x 28, 32 -> 32 at 14 x 14, 32 -> 64 and 48 -> 48 at 16 x 16, where oneDNN's kernels
 * run at 360-415 GFLOP/s). */
bool rt_wino_serves(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w, int32_t kh, int32_t kw,
                    int32_t stride, int32_t pad, int64_t g) {
    if (kh != 3 || kw != 3 || stride != 1 || pad != 1 || mode == RT_LIB_NEVER) return false;
    if (mode == RT_LIB_ALWAYS) return true;
    bool wide = rt_dnnl_wide(), batch = rt_wino_batch(op, c, o, h, w);
    int64_t positions = (int64_t)h * w;
    if (c < 16 || o < 16 || (positions < 16 && !batch)) return false;
    if (!wide) {
        /* channels, on planes under 64 positions */
        int32_t least = batch || rt_wino_m(op, c, o, h, w) == 4 ? 64 : 192;
        return positions >= 64 || (c >= least && o >= least);
    }
    if (positions < 64 && !batch) return false;
    int64_t t = g * tiles_of(h, w, rt_wino_m(op, c, o, h, w));
    int32_t t32 = t > INT32_MAX ? INT32_MAX : (int32_t)t;
    return c >= 64 && o >= 64 && (op == RT_CONV_DW ? rt_gemm_dnnl(o, c, t32) : rt_gemm_dnnl(o, t32, c));
}

/* The tiles' m for op: F(4 x 4, 3 x 3) where its tiles take fewer products than F(2 x 2,
 * 3 x 3)'s (36 a tile against 16: all planes but those whose sides leave F(4 x 4)'s last
 * tiles mostly past them, such as 5 x 5, 6 x 6 and one row); for dw from 64 channels (at
 * 16 and 32 it lost to F(2 x 2) on planes of 8 x 8 and wider) up to 256 x 256, on wide
 * planes too since its pieces hold 256 tiles (conv.c's wino_span; by pieces of 512, at 32 x
 * 32, 64 channels, it ran about as F(2 x 2) did, and lost with AVX-512 code; by 256, cold,
 * alternated, 2 threads, 19.8-21.6 ms against F(2 x 2)'s 26.7-27.6 with AVX2 code, 16.5-16.7
 * against 20.2-22.8 with AVX-512), whose
 * dV of 36 O C floats lets conv.c keep 6 slots or more (512 x 512 would keep one: F(2 x
 * 2)'s 16 O C keep 4); dw side by side, AVX2: 128 at 16 x 16 533 / 379, 256 at 8 x 8 471 /
 * 366, 64 at 32 x 32 374-390 / 363. Planes of fewer than 7 tiles a row run side by side
 * (side_by_side); before they did, such planes ran F(2 x 2): 2 threads, AVX2, direct
 * GFLOP/s side by side F(4 x 4) / F(2 x 2): 128 channels at 16 x 16 536-540 / 398-410,
 * 256 at 8 x 8 569 / 393-409, 128 at 4 x 4 417-421 / 244-247, 512 at 4 x 4 345-349 /
 * 319-322; AVX-512 884-888 / 721, 955-997 / 704-718. */
int rt_wino_m(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w) {
    int m = 36 * tiles_of(h, w, 4) < 16 * tiles_of(h, w, 2) ? 4 : 2;
    if (op == RT_CONV_DW && m == 4 &&
        (c < 64 || o < 64 || ((int64_t)c * o > 256 * 256 && tiles_of(h, w, 4) > 4)))
        return 2;
    return m;
}

/* Layers whose op runs the whole batch at once (conv.c's wino_batch), side by side: those
 * of one tile a sample (F(4 x 4): 4 x 4 planes and smaller; F(2 x 2): 2 x 2), and dw's by
 * F(4 x 4) of 4 tiles or fewer (8 x 8 and smaller). 2 threads, AVX2, direct GFLOP/s, the
 * whole batch / by pieces: 512 channels at 4 x 4 forward 582 / 348, dx 558 / 358, dw 447 /
 * 290 (F(2 x 2)); 128 at 4 x 4 543 / 429, 544 / 426, 356 / 186; at 8 x 8 dw 256 channels
 * 554 / 461, 128 453 / 350, 64 479 / 340, but the forward and dx of 128 channels 505-567 /
 * 576-609. */
bool rt_wino_batch(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w) {
    int m = rt_wino_m(op, c, o, h, w);
    return tiles_of(h, w, m) <= (op == RT_CONV_DW && m == 4 ? 4 : 1);
}

int64_t rt_wino_tiles(int32_t h, int32_t w, int m) {
    return tiles_of(h, w, m);
}

bool rt_wino_side_by_side(int32_t w, int m) {
    return side_by_side(w, m);
}

/* U and M (or dw's DY), the horizontal transforms, and two padded planes (x's and dy's,
 * each of h + 1 rows of one plane or, side by side, of g). */
int64_t rt_wino_thread_floats(int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t g, int m) {
    bool sbs = side_by_side(w, m);
    int64_t pitch = prow_floats(w, m), spitch = sprow_floats(w, m, sbs ? g : 1);
    int64_t ld = ld_of(g, h, w, m);
    return (int64_t)(m + 2) * (m + 2) * (rt_wino_pstride(cin, ld) + rt_wino_pstride(cout, ld)) +
           (sbs ? shbuf_floats(h, w, m, g) : hbuf_floats(h, w, m)) +
           2 * (h + 1) * (pitch > spitch ? pitch : spitch) + 16;
}

/* A point's block of V (or dV): C O floats and WINO_PAD more. Without them the (m + 2)^2
 * blocks lay a power of two apart for most channel counts (512 x 512: 1 MiB), so the points'
 * streams of one filter's values, written by rt_wino_weights and read by rt_wino_dw_out, all
 * fell in one set of the L1 and L2 caches: rt_wino_weights for 512 x 512 filters by F(4 x 4),
 * one thread, AMD Zen 5, 9.5 ms, 1.8 with the 16 floats (256 x 256: 2.4 -> 0.25 ms). */
int64_t rt_wino_plane(int32_t c, int32_t o) {
    return (int64_t)c * o + WINO_PAD;
}

int64_t rt_wino_weights_floats(int32_t c, int32_t o, int m) {
    return (int64_t)(m + 2) * (m + 2) * rt_wino_plane(c, o);
}

/* G f for one column (or row) of 3, floats or vectors of them alike: for F(2 x 2), G = [1 0 0;
 * .5 .5 .5; .5 -.5 .5; 0 0 1]; for F(4 x 4), G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 * 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]. */
#define GCOL(m, f0, f1, f2, t)                                                                                        \
    do {                                                                                                              \
        if ((m) == 2) {                                                                                               \
            (t)[0] = (f0);                                                                                            \
            (t)[1] = 0.5f * (((f0) + (f1)) + (f2));                                                                   \
            (t)[2] = 0.5f * (((f0) - (f1)) + (f2));                                                                   \
            (t)[3] = (f2);                                                                                            \
        } else {                                                                                                      \
            (t)[0] = 0.25f * (f0);                                                                                    \
            (t)[1] = (((f0) + (f1)) + (f2)) * (-1.0f / 6);                                                            \
            (t)[2] = (((f0) - (f1)) + (f2)) * (-1.0f / 6);                                                            \
            (t)[3] = (((f0) + 2.0f * (f1)) + 4.0f * (f2)) * (1.0f / 24);                                              \
            (t)[4] = (((f0) - 2.0f * (f1)) + 4.0f * (f2)) * (1.0f / 24);                                              \
            (t)[5] = (f2);                                                                                            \
        }                                                                                                             \
    } while (0)

/* G f G^T of the filters f[9] (T: float, or V8 for 8 filters side by side), its n x n
 * points into at[(n i + j) * plane]; f[k] is the filter's value k, row-major. */
#define FILTER_TRANSFORM(T, m, f, at, plane, STORE)                                                                   \
    do {                                                                                                              \
        int n_ = (m) + 2;                                                                                             \
        T t_[6][3], col_[6], row_[6]; /* cleared: m = 2 leaves a part unused */                                        \
        memset(t_, 0, sizeof t_), memset(col_, 0, sizeof col_), memset(row_, 0, sizeof row_);                         \
        _Pragma("GCC unroll 3") for (int j_ = 0; j_ < 3; j_++) { /* G f, column by column */                          \
            GCOL(m, f[j_], f[3 + j_], f[6 + j_], col_);                                                               \
            _Pragma("GCC unroll 6") for (int i_ = 0; i_ < n_; i_++) t_[i_][j_] = col_[i_];                            \
        }                                                                                                             \
        _Pragma("GCC unroll 6") for (int i_ = 0; i_ < n_; i_++) { /* (G f) G^T, row by row */                         \
            GCOL(m, t_[i_][0], t_[i_][1], t_[i_][2], row_);                                                           \
            _Pragma("GCC unroll 6") for (int j_ = 0; j_ < n_; j_++)                                                   \
                STORE((at) + (int64_t)(n_ * i_ + j_) * (plane), row_[j_]);                                            \
        }                                                                                                             \
    } while (0)
#define STORE1(p, x) (*(p) = (x))
#define STORE8(p, x) (*(V8u *)(p) = (x))

/* 8 filters side by side: columns q .. q + 7 of row r (rt_wino_weights' terms), the same
 * operations a lane as one filter's. */
RT_ISA_BODY static void weights8_body(const float *w, int32_t c, bool flip, int32_t r, int32_t q, int m, int64_t plane,
                                     float *at) {
    /* lane l: filter (r, q + l), or for dx (q + l, r) turned; built in registers, and the
     * transform's loops unrolled for a constant m (through a float[9][8], with m a variable,
     * every term went through the stack: with the pad of rt_wino_plane, 512 x 512 filters by
     * F(4 x 4), one thread, AMD Zen 5, 4.4 ms, 1.8 so) */
    int64_t step = flip ? (int64_t)c * 9 : 9;
    const float *g0 = w + ((int64_t)(flip ? q : r) * c + (flip ? r : q)) * 9, *g[8];
    for (int l = 0; l < 8; l++) g[l] = g0 + l * step;
    V8 f[9];
    _Pragma("GCC unroll 9") for (int k = 0; k < 9; k++) {
        int kk = flip ? 8 - k : k;
        f[k] = (V8){g[0][kk], g[1][kk], g[2][kk], g[3][kk], g[4][kk], g[5][kk], g[6][kk], g[7][kk]};
    }
    if (m == 4)
        FILTER_TRANSFORM(V8, 4, f, at, plane, STORE8);
    else
        FILTER_TRANSFORM(V8, 2, f, at, plane, STORE8);
}
RT_ISA_DISPATCH(weights8,
                (const float *w, int32_t c, bool flip, int32_t r, int32_t q, int m, int64_t plane, float *at),
                (w, c, flip, r, q, m, plane, at))

/* V for rows [r0, r1): forward, V[xi][o][c] = (G w[o][c] G^T)[xi], rows the filters o;
 * for dx (flip), V[xi][c][o] = (G w'[c][o] G^T)[xi] with w' turned and swapped (above),
 * rows the channels c: a product of dx's M [C, T] = V [C, O] U [O, T]. Each row's values
 * are written in order, one stream a point, 8 filters a vector (one at a time took 6% of
 * VGG-16's step; 64 columns at a time through a buffer, each point's run then copied,
 * took 3.4% of ResNet-18's step against 2.8%: not kept). */
void rt_wino_weights(const float *w, int32_t o, int32_t c, bool flip, int32_t r0, int32_t r1, int m, float *v) {
    int32_t cols = flip ? o : c;
    int64_t plane = rt_wino_plane(c, o);
    for (int32_t r = r0; r < r1; r++) {
        int32_t q = 0;
        for (; q + 8 <= cols; q += 8) weights8(w, c, flip, r, q, m, plane, v + (int64_t)r * cols + q);
        for (; q < cols; q++) {
            int32_t oo = flip ? q : r, cc = flip ? r : q;
            const float *g = w + ((int64_t)oo * c + cc) * 9;
            float f[9];
            for (int k = 0; k < 9; k++) f[k] = flip ? g[8 - k] : g[k];
            FILTER_TRANSFORM(float, m, f, v + (int64_t)r * cols + q, plane, STORE1);
        }
    }
}

/* A plane's h rows of w into rows of pl floats at prow + off, all of them before any is read
 * (a row's vectors read straight after its copy waited on it); the zeros around them are
 * the chunk's, which clears prow once. */
static inline void plane_rows(const float *x, int32_t h, int32_t w, float *prow, int64_t pl, int64_t off) {
    for (int32_t r = 0; r < h; r++) rt_row_copy(prow + r * pl + off, x + (int64_t)r * w, w);
}

#define EVEN(a, b) RT_SHUF8(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODD(a, b) RT_SHUF8(a, b, 1, 3, 5, 7, 9, 11, 13, 15)

/* ---- F(2 x 2, 3 x 3) ---- */

/* B^T d of 8 tiles of a padded row at p, every 2 values (tile k reads p[2 k .. 2 k + 3]):
 * q[0..3] the tiles' four columns. */
static inline __attribute__((always_inline)) void row_bt2(const float *p, V8 *q) {
    V8 a = *(const V8u *)p, b = *(const V8u *)(p + 8), a2 = *(const V8u *)(p + 2), b2 = *(const V8u *)(p + 10);
    V8 d0 = EVEN(a, b), d1 = ODD(a, b), d2 = EVEN(a2, b2), d3 = ODD(a2, b2);
    q[0] = d0 - d2, q[1] = d1 + d2, q[2] = d2 - d1, q[3] = d1 - d3;
}

/* B^T down the four rows of horizontal transforms at r0 (4 rw floats apart; column j of
 * tile t at j rw + t) for tiles [0, n): the tiles' 16 points at ut + xi xi_ld. */
static inline __attribute__((always_inline)) void col_bt2(const float *r0, int64_t rw, int64_t n, float *ut,
                                                          int64_t xi_ld) {
    const float *r1 = r0 + 4 * rw, *r2 = r1 + 4 * rw, *r3 = r2 + 4 * rw;
    for (int j = 0; j < 4; j++)
        for (int64_t tx = 0; tx < n; tx += 8) {
            int64_t k = j * rw + tx;
            V8 e0 = *(const V8u *)(r0 + k), e1 = *(const V8u *)(r1 + k), e2 = *(const V8u *)(r2 + k),
               e3 = *(const V8u *)(r3 + k);
            *(V8u *)(ut + (0 + j) * xi_ld + tx) = e0 - e2;
            *(V8u *)(ut + (4 + j) * xi_ld + tx) = e1 + e2;
            *(V8u *)(ut + (8 + j) * xi_ld + tx) = e2 - e1;
            *(V8u *)(ut + (12 + j) * xi_ld + tx) = e1 - e3;
        }
}

/* y = A^T m A of 8 tiles (m: M's row at the first, points xi_ld apart): out[a][0..1], each
 * output row a's two values a tile interleaved (16 floats; out as out_at4's). */
static inline __attribute__((always_inline)) void out_at2(const float *mt, int64_t xi_ld, V8 out[4][4]) {
    V8 q[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) q[i][j] = *(const V8u *)(mt + (4 * i + j) * xi_ld);
    V8 s[2][4]; /* A^T q */
    for (int j = 0; j < 4; j++) {
        s[0][j] = (q[0][j] + q[1][j]) + q[2][j];
        s[1][j] = (q[1][j] - q[2][j]) - q[3][j];
    }
    for (int a = 0; a < 2; a++) {
        V8 y0 = (s[a][0] + s[a][1]) + s[a][2], y1 = (s[a][1] - s[a][2]) - s[a][3];
        out[a][0] = RT_SHUF8(y0, y1, 0, 8, 1, 9, 2, 10, 3, 11), out[a][1] = RT_SHUF8(y0, y1, 4, 12, 5, 13, 6, 14, 7, 15);
    }
}

/* Side by side: an output row's values of tiles [tx, last) (tmp, m a tile), into the rows
 * of the samples they belong to (TW tiles a sample), each cut to the plane's w; `at` the
 * row's offset in a plane. */
static inline void runs_out(const float *tmp, int64_t tx, int64_t last, int32_t tw, int m, int32_t w, float *y,
                            int64_t sy, int64_t at) {
    for (int64_t t = tx; t < last;) { /* a sample's tiles [t, e) */
        int64_t smp = t / tw, col = m * (t % tw), e = (smp + 1) * tw < last ? (smp + 1) * tw : last;
        int32_t n = (int32_t)(m * (e - t));
        if (col + n > w) n = w - (int32_t)col;
        rt_row_copy(y + smp * sy + at + col, tmp + m * (t - tx), n);
        t = e;
    }
}


/* One plane [h, w] into U's rows for its channel: U[xi][t0 + ty * TW + tx] (row stride
 * `xi_ld` between the 16 points). hb: the plane's horizontal transforms, row r of input
 * (r = -1 .. 2 TH) at hb + (r + 1) * 4 * TWV: d B's four columns for every tile of the row;
 * then each row of tiles combines four of them vertically (B^T). */
RT_ISA_BODY static void wino_in_body(const float *x, int32_t h, int32_t w, float *prow, float *hb, float *u,
                                     int64_t xi_ld) {
    int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    int64_t twv = twv_of(w, 2), pl = prow_floats(w, 2);
    plane_rows(x, h, w, prow, pl, 1); /* prow[r * pl + k] = x[r][k - 1] */
    for (int32_t r = -1; r <= 2 * th; r++) {
        float *hr = hb + (int64_t)(r + 1) * 4 * twv;
        if (r < 0 || r >= h) {
            memset(hr, 0, sizeof(float) * (size_t)(4 * twv));
            continue;
        }
        for (int64_t tx = 0; tx < twv; tx += 8) {
            V8 q[4];
            row_bt2(prow + r * pl + 2 * tx, q);
            for (int j = 0; j < 4; j++) *(V8u *)(hr + j * twv + tx) = q[j];
        }
    }
    for (int32_t ty = 0; ty < th; ty++) /* from input row 2 ty - 1 */
        col_bt2(hb + (int64_t)(2 * ty) * 4 * twv, twv, tw, u + (int64_t)ty * tw, xi_ld);
}
RT_ISA_DISPATCH(wino_in, (const float *x, int32_t h, int32_t w, float *prow, float *hb, float *u, int64_t xi_ld),
                (x, h, w, prow, hb, u, xi_ld))

/* One output plane [h, w] from M's rows for its channel (m: M[0][k][t0], points xi_ld
 * apart): y = A^T m A, 8 tiles a vector, each output row's even and odd columns
 * interleaved; rows and columns past the plane are not written. */
RT_ISA_BODY static void wino_out_body(const float *m, int64_t xi_ld, int32_t h, int32_t w, float *y) {
    int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    for (int32_t ty = 0; ty < th; ty++) {
        const float *mt = m + (int64_t)ty * tw;
        for (int32_t tx = 0; tx < tw; tx += 8) {
            V8 out[4][4];
            out_at2(mt + tx, xi_ld, out);
            int32_t cols = 2 * (tw - tx) < 16 ? 2 * (tw - tx) : 16;
            if (2 * tx + cols > w) cols = w - 2 * tx;
            for (int a = 0; a < 2 && 2 * ty + a < h; a++) {
                float *row = y + (int64_t)(2 * ty + a) * w + 2 * tx;
                if (cols == 16) {
                    *(V8u *)row = out[a][0];
                    *(V8u *)(row + 8) = out[a][1];
                } else {
                    float tmp[16];
                    memcpy(tmp, out[a], sizeof tmp);
                    rt_row_copy(row, tmp, cols);
                }
            }
        }
    }
}
RT_ISA_DISPATCH(wino_out, (const float *m, int64_t xi_ld, int32_t h, int32_t w, float *y), (m, xi_ld, h, w, y))

/* dy's planes of channel k for cnt samples (dy: the first, `sy` floats between samples)
 * into DY's row for k: DY[xi][(ty cnt + s) TW + tx] = (A dy_t A^T)[xi] for each 2 x 2 tile
 * dy_t (values past the plane zero), A = [1 0; 1 1; 1 -1; 0 -1]; 8 tiles a vector, the
 * planes' rows side by side, 2 TW floats each (the order of winos_in; one sample:
 * wino_in's); row h of prow stays zero. */
RT_ISA_BODY static void wino_dy_body(const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, float *prow,
                                     float *d, int64_t xi_ld) {
    int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    int64_t pl = sprow_floats(w, 2, cnt), row = cnt * tw;
    for (int64_t s = 0; s < cnt; s++) plane_rows(dy + s * sy, h, w, prow, pl, s * 2 * tw);
    for (int32_t ty = 0; ty < th; ty++) {
        const float *p0 = prow + 2 * ty * pl, *p1 = prow + (2 * ty + 1 < h ? 2 * ty + 1 : h) * pl;
        float *dt = d + ty * row;
        for (int64_t tx = 0; tx < row; tx += 8) {
            V8 e[2][4];
            for (int a = 0; a < 2; a++) {
                const float *p = (a ? p1 : p0) + 2 * tx;
                V8 lo = *(const V8u *)p, hi = *(const V8u *)(p + 8);
                V8 y0 = EVEN(lo, hi), y1 = ODD(lo, hi);
                e[a][0] = y0, e[a][1] = y0 + y1, e[a][2] = y0 - y1, e[a][3] = -y1;
            }
            for (int j = 0; j < 4; j++) {
                *(V8u *)(dt + (0 + j) * xi_ld + tx) = e[0][j];
                *(V8u *)(dt + (4 + j) * xi_ld + tx) = e[0][j] + e[1][j];
                *(V8u *)(dt + (8 + j) * xi_ld + tx) = e[0][j] - e[1][j];
                *(V8u *)(dt + (12 + j) * xi_ld + tx) = -e[1][j];
            }
        }
    }
}
RT_ISA_DISPATCH(wino_dy,
                (const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, float *prow, float *d, int64_t xi_ld),
                (dy, sy, cnt, h, w, prow, d, xi_ld))

/* ---- F(4 x 4, 3 x 3) ---- */

/* B^T d for six values (a row's or a column's), 8 tiles a vector: B^T = [4 0 -5 0 1 0;
 * 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]. */
#define BT4(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                                                         \
    do {                                                                                                              \
        V8 t1_ = (d4) - 4.0f * (d2), t2_ = (d3) - 4.0f * (d1), t3_ = (d4) - (d2), t4_ = 2.0f * ((d3) - (d1));         \
        o0 = (4.0f * (d0) - 5.0f * (d2)) + (d4);                                                                      \
        o1 = t1_ + t2_;                                                                                               \
        o2 = t1_ - t2_;                                                                                               \
        o3 = t3_ + t4_;                                                                                               \
        o4 = t3_ - t4_;                                                                                               \
        o5 = (4.0f * (d1) - 5.0f * (d3)) + (d5);                                                                      \
    } while (0)

/* B^T d of 8 tiles of a padded row at p, every 4 values (tile k reads p[4 k .. 4 k + 5]):
 * the row read as its values 0, 1, 2, 3 mod 4 (two rounds of even and odd) and, 4 on, 0
 * and 1 again; q[0..5] the tiles' six columns. */
static inline __attribute__((always_inline)) void row_bt4(const float *p, V8 *q) {
    V8 a0 = *(const V8u *)p, a1 = *(const V8u *)(p + 8), a2 = *(const V8u *)(p + 16), a3 = *(const V8u *)(p + 24);
    V8 b0 = *(const V8u *)(p + 4), b1 = *(const V8u *)(p + 12), b2 = *(const V8u *)(p + 20), b3 = *(const V8u *)(p + 28);
    V8 e01 = EVEN(a0, a1), e23 = EVEN(a2, a3), o01 = ODD(a0, a1), o23 = ODD(a2, a3);
    V8 d0 = EVEN(e01, e23), d2 = ODD(e01, e23), d1 = EVEN(o01, o23), d3 = ODD(o01, o23);
    V8 d4 = EVEN(EVEN(b0, b1), EVEN(b2, b3)), d5 = EVEN(ODD(b0, b1), ODD(b2, b3));
    BT4(d0, d1, d2, d3, d4, d5, q[0], q[1], q[2], q[3], q[4], q[5]);
}

/* B^T of 8 tiles' column j down six rows of horizontal transforms (e: the first, `es`
 * floats apart): the tiles' points (i, j) at ut + 6 i xi_ld. */
static inline __attribute__((always_inline)) void col_bt4(const float *e, int64_t es, float *ut, int64_t xi_ld) {
    V8 q[6];
    BT4(*(const V8u *)e, *(const V8u *)(e + es), *(const V8u *)(e + 2 * es), *(const V8u *)(e + 3 * es),
        *(const V8u *)(e + 4 * es), *(const V8u *)(e + 5 * es), q[0], q[1], q[2], q[3], q[4], q[5]);
    for (int i = 0; i < 6; i++) *(V8u *)(ut + 6 * i * xi_ld) = q[i];
}

/* One plane [h, w] into U's rows for its channel, as wino_in with tiles of 6 x 6 every 4
 * values (row_bt4, col_bt4). */
RT_ISA_BODY static void wino4_in_body(const float *x, int32_t h, int32_t w, float *prow, float *hb, float *u,
                                      int64_t xi_ld) {
    int32_t th = (h + 3) / 4, tw = (w + 3) / 4;
    int64_t twv = twv_of(w, 4), pl = prow_floats(w, 4);
    plane_rows(x, h, w, prow, pl, 1);
    for (int32_t r = -1; r <= 4 * th; r++) {
        float *hr = hb + (int64_t)(r + 1) * 6 * twv;
        if (r < 0 || r >= h) {
            memset(hr, 0, sizeof(float) * (size_t)(6 * twv));
            continue;
        }
        for (int64_t tx = 0; tx < twv; tx += 8) {
            V8 q[6];
            row_bt4(prow + r * pl + 4 * tx, q);
            for (int j = 0; j < 6; j++) *(V8u *)(hr + j * twv + tx) = q[j];
        }
    }
    for (int32_t ty = 0; ty < th; ty++) {
        const float *r0 = hb + (int64_t)(4 * ty) * 6 * twv; /* input row 4 ty - 1 */
        float *ut = u + (int64_t)ty * tw;
        for (int j = 0; j < 6; j++)
            for (int64_t tx = 0; tx < tw; tx += 8) col_bt4(r0 + j * twv + tx, 6 * twv, ut + j * xi_ld + tx, xi_ld);
    }
}
RT_ISA_DISPATCH(wino4_in, (const float *x, int32_t h, int32_t w, float *prow, float *hb, float *u, int64_t xi_ld),
                (x, h, w, prow, hb, u, xi_ld))

/* A^T m for six values: A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. */
#define AT4(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                                                  \
    do {                                                                                                              \
        V8 s1_ = (m1) + (m2), d1_ = (m1) - (m2), s2_ = (m3) + (m4), d2_ = (m3) - (m4);                                \
        y0 = ((m0) + s1_) + s2_;                                                                                      \
        y1 = d1_ + 2.0f * d2_;                                                                                        \
        y2 = s1_ + 4.0f * s2_;                                                                                        \
        y3 = (d1_ + 8.0f * d2_) + (m5);                                                                               \
    } while (0)

/* y = A^T m A of 8 tiles (m: M's row at the first, points xi_ld apart): out[a] for the
 * first `rows` output rows (at most 4), each row's four values a tile interleaved (32
 * floats). */
static inline __attribute__((always_inline)) void out_at4(const float *mt, int64_t xi_ld, int32_t rows,
                                                          V8 out[4][4]) {
    V8 s[4][6]; /* A^T q, column by column */
    for (int j = 0; j < 6; j++) {
        const float *q = mt + j * xi_ld;
        AT4(*(const V8u *)q, *(const V8u *)(q + 6 * xi_ld), *(const V8u *)(q + 12 * xi_ld),
            *(const V8u *)(q + 18 * xi_ld), *(const V8u *)(q + 24 * xi_ld), *(const V8u *)(q + 30 * xi_ld), s[0][j],
            s[1][j], s[2][j], s[3][j]);
    }
    for (int a = 0; a < 4 && a < rows; a++) {
        V8 y0, y1, y2, y3;
        AT4(s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5], y0, y1, y2, y3);
        V8 p0 = RT_SHUF8(y0, y2, 0, 8, 1, 9, 2, 10, 3, 11), p1 = RT_SHUF8(y0, y2, 4, 12, 5, 13, 6, 14, 7, 15);
        V8 q0 = RT_SHUF8(y1, y3, 0, 8, 1, 9, 2, 10, 3, 11), q1 = RT_SHUF8(y1, y3, 4, 12, 5, 13, 6, 14, 7, 15);
        out[a][0] = RT_SHUF8(p0, q0, 0, 8, 1, 9, 2, 10, 3, 11), out[a][1] = RT_SHUF8(p0, q0, 4, 12, 5, 13, 6, 14, 7, 15);
        out[a][2] = RT_SHUF8(p1, q1, 0, 8, 1, 9, 2, 10, 3, 11), out[a][3] = RT_SHUF8(p1, q1, 4, 12, 5, 13, 6, 14, 7, 15);
    }
}

/* One output plane [h, w] from M's rows for its channel: y = A^T m A, 8 tiles a vector,
 * each output row's 4 values a tile interleaved; rows and columns past the plane are not
 * written. */
RT_ISA_BODY static void wino4_out_body(const float *m, int64_t xi_ld, int32_t h, int32_t w, float *y) {
    int32_t th = (h + 3) / 4, tw = (w + 3) / 4;
    for (int32_t ty = 0; ty < th; ty++) {
        const float *mt = m + (int64_t)ty * tw;
        for (int32_t tx = 0; tx < tw; tx += 8) {
            V8 out[4][4];
            out_at4(mt + tx, xi_ld, h - 4 * ty, out);
            int32_t cols = 4 * (tw - tx) < 32 ? 4 * (tw - tx) : 32;
            if (4 * tx + cols > w) cols = w - 4 * tx;
            for (int a = 0; a < 4 && 4 * ty + a < h; a++) {
                float *row = y + (int64_t)(4 * ty + a) * w + 4 * tx;
                if (cols == 32) {
                    for (int k = 0; k < 4; k++) *(V8u *)(row + 8 * k) = out[a][k];
                } else {
                    float tmp[32];
                    memcpy(tmp, out[a], sizeof tmp);
                    rt_row_copy(row, tmp, cols);
                }
            }
        }
    }
}
RT_ISA_DISPATCH(wino4_out, (const float *m, int64_t xi_ld, int32_t h, int32_t w, float *y), (m, xi_ld, h, w, y))

/* Lanes of a by the indices k (GCC's variable shuffle; clang has none). */
typedef int32_t V8i __attribute__((vector_size(32)));
#if defined(__clang__)
#define LANES_BY(a, k)                                                                                                \
    ({                                                                                                                \
        V8 r_;                                                                                                        \
        for (int l_ = 0; l_ < 8; l_++) r_[l_] = (a)[(k)[l_] & 7];                                                     \
        r_;                                                                                                           \
    })
#else
#define LANES_BY(a, k) __builtin_shuffle(a, k)
#endif

/* The tiles of a row of planes side by side, TW + 1 a plane (TW < 7), the last of each
 * dropped: for each of the TW + 1 vectors of a period (8 planes), keep[ph] the lanes kept,
 * moved to the front, and before[ph] the kept tiles of the period before it. */
static void keep_pattern(int tw, V8i *keep, int *before) {
    int per = tw + 1;
    before[0] = 0;
    for (int ph = 0; ph < per; ph++) {
        int k = 0;
        for (int l = 0; l < 8; l++)
            if ((8 * ph + l) % per < tw) keep[ph][k++] = l;
        for (int l = k; l < 8; l++) keep[ph][l] = 0;
        before[ph + 1] = before[ph] + k;
    }
}

/* Channel c's planes of cnt samples (x: the first, `sx` floats between samples) into U's
 * row for c, their tiles in the order (tile row, sample, tile column): U[xi][(ty cnt + s)
 * TW + tx]. As wino4_in (m = 4) or wino_in (m = 2), on one padded row of the cnt planes'
 * rows side by side, TW + 1 tiles each (TW < 7); each vector of 8 of its tiles keeps
 * those that are not a plane's last, moved to the front (keep_pattern), stored where the
 * kept tiles before it end (the next store writes over the rest). */
RT_ISA_BODY static void winos_in_body(const float *x, int64_t sx, int64_t cnt, int32_t h, int32_t w, int m,
                                      float *prow, float *hb, float *u, int64_t xi_ld) {
    int n = m + 2;
    int32_t th = (h + m - 1) / m, tw = (w + m - 1) / m, per = tw + 1;
    int64_t seg = m * (int64_t)per, all = cnt * per, pl = sprow_floats(w, m, cnt), hw = shb_row(w, m, cnt);
    V8i keep[7];
    int before[8];
    keep_pattern(tw, keep, before);
    for (int64_t s = 0; s < cnt; s++) plane_rows(x + s * sx, h, w, prow, pl, s * seg + 1);
    for (int32_t r = -1; r <= m * th; r++) {
        float *hr = hb + (int64_t)(r + 1) * n * hw;
        if (r < 0 || r >= h) {
            memset(hr, 0, sizeof(float) * (size_t)(n * hw));
            continue;
        }
        for (int64_t v = 0; 8 * v < all; v++) {
            V8 q[6];
            if (m == 4)
                row_bt4(prow + r * pl + 32 * v, q);
            else
                row_bt2(prow + r * pl + 16 * v, q);
            int ph = (int)(v % per);
            int64_t at = v / per * 8 * tw + before[ph];
            for (int j = 0; j < n; j++) *(V8u *)(hr + j * hw + at) = LANES_BY(q[j], keep[ph]);
        }
    }
    int64_t row = cnt * tw; /* a tile row's tiles in U */
    for (int32_t ty = 0; ty < th; ty++) {
        const float *r0 = hb + (int64_t)(m * ty) * n * hw; /* input row m ty - 1 */
        float *ut = u + ty * row;
        if (m == 2) {
            col_bt2(r0, hw, row, ut, xi_ld);
            continue;
        }
        for (int j = 0; j < 6; j++)
            for (int64_t tx = 0; tx < row; tx += 8) col_bt4(r0 + j * hw + tx, 6 * hw, ut + j * xi_ld + tx, xi_ld);
    }
}
RT_ISA_DISPATCH(winos_in,
                (const float *x, int64_t sx, int64_t cnt, int32_t h, int32_t w, int m, float *prow, float *hb,
                 float *u, int64_t xi_ld),
                (x, sx, cnt, h, w, m, prow, hb, u, xi_ld))

/* Output channel k's planes of cnt samples (y: the first, `sy` floats between samples)
 * from M's row for k in winos_in's order: as wino4_out or wino_out, 8 tiles a vector; a
 * vector's values of an output row are the rows of the samples its tiles belong to, in
 * order (runs_out). */
RT_ISA_BODY static void winos_out_body(const float *mm, int64_t xi_ld, int64_t cnt, int32_t h, int32_t w, int m,
                                       float *y, int64_t sy) {
    int32_t th = (h + m - 1) / m, tw = (w + m - 1) / m;
    int64_t row = cnt * tw;
    for (int32_t ty = 0; ty < th; ty++) {
        const float *mt = mm + ty * row;
        for (int64_t tx = 0; tx < row; tx += 8) {
            V8 out[4][4];
            if (m == 4)
                out_at4(mt + tx, xi_ld, h - 4 * ty, out);
            else
                out_at2(mt + tx, xi_ld, out);
            int64_t last = tx + 8 < row ? tx + 8 : row; /* tiles [tx, last) */
            for (int a = 0; a < m && m * ty + a < h; a++) {
                float tmp[32];
                memcpy(tmp, out[a], sizeof(float) * 8 * (size_t)m);
                runs_out(tmp, tx, last, tw, m, w, y, sy, (int64_t)(m * ty + a) * w);
            }
        }
    }
}
RT_ISA_DISPATCH(winos_out,
                (const float *mm, int64_t xi_ld, int64_t cnt, int32_t h, int32_t w, int m, float *y, int64_t sy),
                (mm, xi_ld, cnt, h, w, m, y, sy))

/* A dy for four values (a row's or a column's) of a 4 x 4 tile, 8 tiles a vector: A =
 * [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1] (F(4 x 4)'s A^T turned). */
#define A4(y0, y1, y2, y3, o)                                                                                         \
    do {                                                                                                              \
        (o)[0] = (y0);                                                                                                \
        (o)[1] = (((y0) + (y1)) + (y2)) + (y3);                                                                       \
        (o)[2] = (((y0) - (y1)) + (y2)) - (y3);                                                                       \
        (o)[3] = (((y0) + 2.0f * (y1)) + 4.0f * (y2)) + 8.0f * (y3);                                                  \
        (o)[4] = (((y0) - 2.0f * (y1)) + 4.0f * (y2)) - 8.0f * (y3);                                                  \
        (o)[5] = (y3);                                                                                                \
    } while (0)

/* dy's planes of channel k for cnt samples (dy: the first, `sy` floats between samples)
 * into DY's row for k: DY[xi][(ty cnt + s) TW + tx] = (A dy_t A^T)[xi] for each 4 x 4 tile
 * dy_t (values past the plane zero), the order of winos_in (one sample: wino4_in's). The
 * planes' rows side by side, 4 TW floats each (tiles do not overlap: no tile between
 * them), read as their values 0-3 mod 4; row h of prow stays zero. A row of tiles at a
 * time: its four rows' horizontal transforms into hb, then each column of points down
 * them, a point's row of DY at a time (the 36 rows, a multiple of 4 KiB apart, at once
 * share a set of the L1 cache: 22-26% of dw's time against 12%). */
RT_ISA_BODY static void wino4_dy_body(const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, float *prow,
                                      float *hb, float *d, int64_t xi_ld) {
    int32_t th = (h + 3) / 4, tw = (w + 3) / 4;
    int64_t pl = sprow_floats(w, 4, cnt), row = cnt * tw, hw = (row + 7) / 8 * 8;
    for (int64_t s = 0; s < cnt; s++) plane_rows(dy + s * sy, h, w, prow, pl, s * 4 * tw);
    for (int32_t ty = 0; ty < th; ty++) {
        for (int a = 0; a < 4; a++) /* hb[(6 a + j) hw + t]: A along tile t's row a */
            for (int64_t tx = 0; tx < row; tx += 8) {
                const float *p = prow + (4 * ty + a < h ? 4 * ty + a : h) * pl + 4 * tx;
                V8 a0 = *(const V8u *)p, a1 = *(const V8u *)(p + 8), a2 = *(const V8u *)(p + 16),
                   a3 = *(const V8u *)(p + 24);
                V8 e01 = EVEN(a0, a1), e23 = EVEN(a2, a3), o01 = ODD(a0, a1), o23 = ODD(a2, a3), e[6];
                A4(EVEN(e01, e23), EVEN(o01, o23), ODD(e01, e23), ODD(o01, o23), e);
                for (int j = 0; j < 6; j++) *(V8u *)(hb + (6 * a + j) * hw + tx) = e[j];
            }
        float *dt = d + ty * row;
        for (int j = 0; j < 6; j++)
            for (int64_t tx = 0; tx < row; tx += 8) {
                const float *e = hb + j * hw + tx;
                V8 q[6];
                A4(*(const V8u *)e, *(const V8u *)(e + 6 * hw), *(const V8u *)(e + 12 * hw),
                   *(const V8u *)(e + 18 * hw), q);
                for (int i = 0; i < 6; i++) *(V8u *)(dt + (6 * i + j) * xi_ld + tx) = q[i];
            }
    }
}
RT_ISA_DISPATCH(wino4_dy,
                (const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, float *prow, float *hb, float *d,
                 int64_t xi_ld),
                (dy, sy, cnt, h, w, prow, hb, d, xi_ld))

/* ---- the whole batch (rt_wino_batch), side by side ---- */

/* A thread's scratch for the calls below on cnt samples: the horizontal transforms and
 * one padded row of the cnt planes' rows (h + 1 rows). */
int64_t rt_wino_rows_floats(int32_t h, int32_t w, int m, int64_t cnt) {
    return shbuf_floats(h, w, m, cnt) + (h + 1) * sprow_floats(w, m, cnt) + 16;
}

/* Channel c's planes of cnt samples (x: the first, sx floats apart) into U's row for c
 * (winos_in); fresh: the scratch's padded rows are cleared first (the
 * thread's first call, or after rt_wino_rows_dy). */
void rt_wino_rows_in(const float *x, int64_t sx, int64_t cnt, int32_t h, int32_t w, int m, float *u, int64_t xi_ld,
                     bool fresh, float *scratch) {
    float *prow = scratch + shbuf_floats(h, w, m, cnt);
    if (fresh) memset(prow, 0, sizeof(float) * (size_t)(h * sprow_floats(w, m, cnt)));
    winos_in(x, sx, cnt, h, w, m, prow, scratch, u, xi_ld);
}

/* dy's planes of channel k for cnt samples into DY's row for k (wino4_dy, wino_dy); fresh
 * as above (after rt_wino_rows_in). */
void rt_wino_rows_dy(const float *dy, int64_t sy, int64_t cnt, int32_t h, int32_t w, int m, float *d, int64_t xi_ld,
                     bool fresh, float *scratch) {
    float *prow = scratch + shbuf_floats(h, w, m, cnt);
    if (fresh) memset(prow, 0, sizeof(float) * (size_t)((h + 1) * sprow_floats(w, m, cnt)));
    if (m == 4)
        wino4_dy(dy, sy, cnt, h, w, prow, scratch, d, xi_ld);
    else
        wino_dy(dy, sy, cnt, h, w, prow, d, xi_ld);
}

/* Output channel k's planes of cnt samples from M's row for k (winos_out). */
void rt_wino_rows_out(const float *m, int64_t xi_ld, int64_t cnt, int32_t h, int32_t w, int tm, float *y, int64_t sy) {
    winos_out(m, xi_ld, cnt, h, w, tm, y, sy);
}

/* ---- a chunk ---- */

/* cnt samples of x [cnt, cin, h, w] -> y [cnt, cout, h, w] by F(m x m, 3 x 3), v from
 * rt_wino_weights (forward with x, w; dx with dy, w flipped), scratch:
 * rt_wino_thread_floats for g >= cnt samples. */
void rt_wino_chunk(const float *x, int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t cnt, int64_t g, int m,
                   const float *v, float *y, float *scratch) {
    int n2 = (m + 2) * (m + 2);
    int64_t tiles = tiles_of(h, w, m), ld = ld_of(g, h, w, m), t = cnt * tiles, hw = (int64_t)h * w;
    int64_t ustride = rt_wino_pstride(cin, ld), mstride = rt_wino_pstride(cout, ld);
    float *u = scratch, *mm = u + n2 * ustride, *hb = mm + n2 * mstride;
    bool sbs = side_by_side(w, m);
    float *prow = hb + (sbs ? shbuf_floats(h, w, m, cnt) : hbuf_floats(h, w, m));
    memset(prow, 0, sizeof(float) * (size_t)(sbs ? h * sprow_floats(w, m, cnt) : (h + 1) * prow_floats(w, m)));
    if (sbs)
        for (int32_t c = 0; c < cin; c++) {
            if (c + 1 < cin) rt_prefetch_planes(x + (c + 1) * hw, cin * hw, cnt, hw);
            winos_in(x + c * hw, cin * hw, cnt, h, w, m, prow, hb, u + (int64_t)c * ld, ustride);
        }
    else
        for (int64_t s = 0; s < cnt; s++)
            for (int32_t c = 0; c < cin; c++)
                (m == 4 ? wino4_in : wino_in)(x + (s * cin + c) * hw, h, w, prow, hb,
                                              u + (int64_t)c * ld + s * tiles, ustride);
    for (int xi = 0; xi < n2; xi++)
        rt_sgemm_serial(0, 0, cout, (int32_t)t, cin, 1.0f, v + xi * rt_wino_plane(cin, cout), cin, u + xi * ustride,
                        (int32_t)ld, 0.0f, mm + xi * mstride, (int32_t)ld);
    if (sbs)
        for (int32_t k = 0; k < cout; k++)
            winos_out(mm + (int64_t)k * ld, mstride, cnt, h, w, m, y + k * hw, cout * hw);
    else
        for (int64_t s = 0; s < cnt; s++)
            for (int32_t k = 0; k < cout; k++)
                (m == 4 ? wino4_out : wino_out)(mm + (int64_t)k * ld + s * tiles, mstride, h, w,
                                                y + (s * cout + k) * hw);
}

/* dw: the chunk's dV [n^2, o, c] (+)= DY[xi] U[xi]^T, F(m x m) (n = m + 2): x transformed as
 * the forward's, dy by wino_dy, or for F(4 x 4) (side by side only) by wino4_dy in
 * winos_in's order. */
void rt_wino_dw_chunk(const float *x, const float *dy, int32_t c, int32_t o, int32_t h, int32_t w, int64_t cnt,
                      int64_t g, int m, bool accumulate, float *dv, float *scratch) {
    int n2 = (m + 2) * (m + 2);
    int64_t tiles = tiles_of(h, w, m), ld = ld_of(g, h, w, m), t = cnt * tiles, hw = (int64_t)h * w;
    bool sbs = side_by_side(w, m);
    int64_t ustride = rt_wino_pstride(c, ld), dstride = rt_wino_pstride(o, ld);
    float *u = scratch, *d = u + n2 * ustride, *hb = d + n2 * dstride;
    int64_t xrows = sbs ? h * sprow_floats(w, m, cnt) : (h + 1) * prow_floats(w, m);
    int64_t dyrows = (h + 1) * sprow_floats(w, m, sbs ? cnt : 1);
    float *prow = hb + (sbs ? shbuf_floats(h, w, m, cnt) : hbuf_floats(h, w, m)), *pdy = prow + xrows;
    memset(prow, 0, sizeof(float) * (size_t)(xrows + dyrows));
    if (sbs) {
        for (int32_t cc = 0; cc < c; cc++) {
            if (cc + 1 < c)
                rt_prefetch_planes(x + (cc + 1) * hw, c * hw, cnt, hw);
            else
                rt_prefetch_planes(dy, o * hw, cnt, hw); /* dy's first channel comes next */
            winos_in(x + cc * hw, c * hw, cnt, h, w, m, prow, hb, u + (int64_t)cc * ld, ustride);
        }
        for (int32_t k = 0; k < o; k++) {
            if (k + 1 < o) rt_prefetch_planes(dy + (k + 1) * hw, o * hw, cnt, hw);
            wino4_dy(dy + k * hw, o * hw, cnt, h, w, pdy, hb, d + (int64_t)k * ld, dstride);
        }
    } else {
        for (int64_t s = 0; s < cnt; s++) {
            for (int32_t cc = 0; cc < c; cc++)
                (m == 4 ? wino4_in : wino_in)(x + (s * c + cc) * hw, h, w, prow, hb, u + (int64_t)cc * ld + s * tiles,
                                              ustride);
            for (int32_t k = 0; k < o; k++) {
                float *dk = d + (int64_t)k * ld + s * tiles;
                if (m == 4)
                    wino4_dy(dy + (s * o + k) * hw, 0, 1, h, w, pdy, hb, dk, dstride);
                else
                    wino_dy(dy + (s * o + k) * hw, 0, 1, h, w, pdy, dk, dstride);
            }
        }
    }
    for (int xi = 0; xi < n2; xi++)
        rt_sgemm_serial(0, 1, o, c, (int32_t)t, 1.0f, d + xi * dstride, (int32_t)ld, u + xi * ustride, (int32_t)ld,
                        accumulate ? 1.0f : 0.0f, dv + xi * rt_wino_plane(c, o), c);
}

/* G^T v for one column (or row) of n values, the adjoint of GCOL: for F(2 x 2) G^T = [1 .5 .5
 * 0; 0 .5 -.5 0; 0 .5 .5 1]; for F(4 x 4) G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6
 * 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1]. */
#define GTCOL(m, v, t)                                                                                                \
    do {                                                                                                              \
        if ((m) == 2) {                                                                                               \
            (t)[0] = (v)[0] + 0.5f * ((v)[1] + (v)[2]);                                                               \
            (t)[1] = 0.5f * ((v)[1] - (v)[2]);                                                                        \
            (t)[2] = 0.5f * ((v)[1] + (v)[2]) + (v)[3];                                                               \
        } else {                                                                                                      \
            (t)[0] = (0.25f * (v)[0] - ((v)[1] + (v)[2]) * (1.0f / 6)) + ((v)[3] + (v)[4]) * (1.0f / 24);             \
            (t)[1] = ((v)[2] - (v)[1]) * (1.0f / 6) + ((v)[3] - (v)[4]) * (1.0f / 12);                                \
            (t)[2] = (((v)[3] + (v)[4]) - ((v)[1] + (v)[2])) * (1.0f / 6) + (v)[5];                                   \
        }                                                                                                             \
    } while (0)

/* G^T q G for 8 filters side by side (dV's values at + xi plane, the filters' dw at out,
 * 72 floats): the same operations a lane as rt_wino_dw_out's for one. */
RT_ISA_BODY static void dw_out8_body(const float *dv, int64_t plane, int m, int64_t at, float *out) {
    int n = m + 2;
    V8 col[6], r[3][6], t[3];
    for (int j = 0; j < n; j++) { /* G^T q, column by column */
        for (int i = 0; i < n; i++) col[i] = *(const V8u *)(dv + (n * i + j) * plane + at);
        GTCOL(m, col, t);
        for (int i = 0; i < 3; i++) r[i][j] = t[i];
    }
    float v[9][8];
    for (int i = 0; i < 3; i++) { /* (G^T q) G, row by row */
        GTCOL(m, r[i], t);
        for (int jj = 0; jj < 3; jj++) memcpy(v[3 * i + jj], &t[jj], sizeof v[0]);
    }
    for (int l = 0; l < 8; l++)
        for (int k = 0; k < 9; k++) out[9 * l + k] = v[k][l];
}
RT_ISA_DISPATCH(dw_out8, (const float *dv, int64_t plane, int m, int64_t at, float *out), (dv, plane, m, at, out))

/* dw [o, c, 3, 3] for filters [o0, o1) = G^T dV G, dV the slots' sums added in order
 * (slot k's dV [n^2, o, c] at dv + k n^2 o c), into slot 0's: the filters' rows of each
 * slot in turn, contiguous (a value's n^2 points a slot apart each, read value by value,
 * went to a page of its own for every point and slot). */
void rt_wino_dw_out(float *dv, int64_t slots, int32_t o, int32_t c, int32_t o0, int32_t o1, int m, float *dw) {
    int n = m + 2, n2 = n * n;
    int64_t plane = rt_wino_plane(c, o), per = n2 * plane, rows = (int64_t)(o1 - o0) * c;
    for (int xi = 0; xi < n2; xi++) {
        float *dst = dv + xi * plane + (int64_t)o0 * c;
        for (int64_t k = 1; k < slots; k++) {
            const float *src = dst + k * per;
            for (int64_t i = 0; i < rows; i++) dst[i] += src[i];
        }
    }
    for (int32_t oo = o0; oo < o1; oo++) {
        int32_t cc = 0;
        for (; cc + 8 <= c; cc += 8) dw_out8(dv, plane, m, (int64_t)oo * c + cc, dw + ((int64_t)oo * c + cc) * 9);
        for (; cc < c; cc++) {
            float q[36], col[6], r[3][6], t[3];
            for (int xi = 0; xi < n2; xi++) q[xi] = dv[xi * plane + (int64_t)oo * c + cc];
            for (int j = 0; j < n; j++) { /* G^T q, column by column */
                for (int i = 0; i < n; i++) col[i] = q[n * i + j];
                GTCOL(m, col, t);
                for (int i = 0; i < 3; i++) r[i][j] = t[i];
            }
            float *out = dw + ((int64_t)oo * c + cc) * 9;
            for (int i = 0; i < 3; i++) { /* (G^T q) G, row by row */
                GTCOL(m, r[i], t);
                for (int jj = 0; jj < 3; jj++) out[3 * i + jj] = t[jj];
            }
        }
    }
}
