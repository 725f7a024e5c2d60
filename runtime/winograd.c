/* winograd.c — 3 x 3, stride-1, pad-1 convolutions and their input gradients by Winograd's
 * minimal filtering F(2 x 2, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2016), for conv.c: VGG-16's layers and most of ResNet-18's. A 2 x 2
 * block of outputs from a 4 x 4 tile of input d and a 3 x 3 filter g is
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A        ((.): elementwise, 16 products)
 * where the direct way takes 36 products; summed over C input channels the 16 elementwise
 * products become 16 matrix products, one per point xi of the 4 x 4 transformed tile:
 *     M[xi] [O, T] = V[xi] [O, C] U[xi] [C, T]
 * with T the chunk's tiles, U the inputs' tiles transformed, V the filters transformed:
 * 16/36 of the direct convolution's arithmetic in products the GEMM (gemm.c's rule, on the
 * calling thread) runs near its peak, plus transforms that cost a few adds a value. With
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *     A^T = [1 1 1 0; 0 1 -1 -1].
 * dx of such a layer is the same convolution of dy with each filter turned by 180 degrees
 * and its channels swapped (w'[c][o][i][j] = w[o][c][2-i][2-j]), so one kernel serves
 * both: rt_wino_weights transforms w one way or the other.
 *
 * Requires conv.c's chunks (a chunk's samples on one thread, its scratch from the pool,
 * parallel.c) and gemm.c's rt_sgemm_serial. Provides rt_wino_serves (the rule),
 * rt_wino_weights (V, in parallel over filters), rt_wino_chunk (one chunk), their scratch
 * sizes, and rt_wino_set_mode (conv_bench and the tests take the path on or off).
 *
 * Tiles cover the output plane in rows of TW = ceil(W/2) (the last tile of an odd plane
 * reads one column of padding and writes one output less); the transforms take 8 tiles a
 * vector: a row of input, padded with zeros, is read as even and odd columns. Every value's
 * operations are fixed by the shapes (no FMA contraction: runtime/CMakeLists.txt), so a
 * chunk's results are the same bits on any thread. Error: the transforms' constants are
 * 1 and 1/2, so the products' rounding is the direct convolution's order of magnitude
 * (tests/runtime/test_conv.c bounds it). */
#include <stdint.h>
#include <string.h>

#include "rt_internal.h"

typedef float V8 __attribute__((vector_size(32)));
typedef float V8u __attribute__((vector_size(32), aligned(4)));

static RtLibMode mode = RT_LIB_RULE;

void rt_wino_set_mode(RtLibMode m) {
    mode = m;
}

static int64_t tiles_of(int32_t h, int32_t w) {
    return (int64_t)((h + 1) / 2) * ((w + 1) / 2);
}

/* The rule (shapes and the CPU only): 3 x 3, stride 1, pad 1, planes of 64 positions or
 * more, and both channel counts 16 or more (the products' inner dimension is C forward
 * and O for dx: a network's first layer, of 3 input channels, keeps im2col's 27); where
 * oneDNN runs AVX-512 code, 64 or more, and products (O x C over the g samples' tiles)
 * that gemm.c gives oneDNN's sgemm (2 MFLOP or more), not OpenBLAS's AVX2 kernels.
 * Measured against oneDNN's direct convolutions (bench/conv_bench, 2 threads, AMD Zen 5;
 * docs/status.md): with AVX2 code 1.0-1.7x as fast from 16 channels on, at 8 x 8 to
 * 32 x 32; with AVX-512 code 1.2-1.5x forward and dx and 0.95-1.1x dw at VGG-16's 64
 * channels and more, but 0.55-0.75x at 16 to 48 channels (16 -> 32 at 28 x 28, 32 -> 32
 * at 14 x 14, 32 -> 64 and 48 -> 48 at 16 x 16, where oneDNN's AVX-512 kernels run at
 * 360-415 GFLOP/s); at 4 x 4 a tie or slower, at 2 x 2 slower (a sample's 4 or 1 tiles
 * leave the products narrow). */
bool rt_wino_serves(RtConvOp op, int32_t c, int32_t o, int32_t h, int32_t w, int32_t kh, int32_t kw,
                    int32_t stride, int32_t pad, int64_t g) {
    if (kh != 3 || kw != 3 || stride != 1 || pad != 1 || mode == RT_LIB_NEVER) return false;
    if (mode == RT_LIB_ALWAYS) return true;
    if (c < 16 || o < 16 || (int64_t)h * w < 64) return false;
    if (!rt_dnnl_wide()) return true;
    int64_t t = g * tiles_of(h, w);
    int32_t t32 = t > INT32_MAX ? INT32_MAX : (int32_t)t;
    return c >= 64 && o >= 64 && (op == RT_CONV_DW ? rt_gemm_dnnl(o, c, t32) : rt_gemm_dnnl(o, t32, c));
}

/* Leading dimension of U's and M's rows: the chunk's tiles and room for a last vector's
 * 7 lanes past them. */
static int64_t ld_of(int64_t g, int32_t h, int32_t w) {
    return g * tiles_of(h, w) + 8;
}

/* A row of tiles rounded up to whole vectors, and a padded input row: a zero, the row, zeros
 * to the last vector's reach (2 * (TWV + 1) floats and 8 more read past). */
static int64_t twv_of(int32_t w) {
    return ((w + 1) / 2 + 7) / 8 * 8;
}
static int64_t prow_floats(int32_t w) {
    return 2 * twv_of(w) + 16;
}
/* Each input row's horizontal transforms: 4 rows of TWV per row of input and the zero rows
 * around the plane. */
static int64_t hbuf_floats(int32_t h, int32_t w) {
    return (int64_t)(2 * ((h + 1) / 2) + 2) * 4 * twv_of(w);
}

int64_t rt_wino_thread_floats(int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t g) {
    return 16 * ((int64_t)cin + cout) * ld_of(g, h, w) + hbuf_floats(h, w) + 2 * prow_floats(w) + 16;
}

int64_t rt_wino_weights_floats(int32_t c, int32_t o) {
    return 16 * (int64_t)c * o;
}

/* V for filters [o0, o1): forward, V[xi][o][c] = (G w[o][c] G^T)[xi]; for dx (flip),
 * V[xi][c][o] = (G w'[c][o] G^T)[xi] with w' turned and swapped (above): a product of
 * dx's M [C, T] = V [C, O] U [O, T]. */
void rt_wino_weights(const float *w, int32_t o, int32_t c, bool flip, int32_t o0, int32_t o1, float *v) {
    int64_t plane = (int64_t)o * c;
    for (int32_t oo = o0; oo < o1; oo++)
        for (int32_t cc = 0; cc < c; cc++) {
            const float *g = w + ((int64_t)oo * c + cc) * 9;
            float f[9];
            for (int k = 0; k < 9; k++) f[k] = flip ? g[8 - k] : g[k];
            float t[4][3]; /* G f */
            for (int j = 0; j < 3; j++) {
                t[0][j] = f[j];
                t[1][j] = 0.5f * ((f[j] + f[3 + j]) + f[6 + j]);
                t[2][j] = 0.5f * ((f[j] - f[3 + j]) + f[6 + j]);
                t[3][j] = f[6 + j];
            }
            int64_t at = flip ? (int64_t)cc * o + oo : (int64_t)oo * c + cc;
            for (int i = 0; i < 4; i++) { /* (G f) G^T */
                v[(4 * i + 0) * plane + at] = t[i][0];
                v[(4 * i + 1) * plane + at] = 0.5f * ((t[i][0] + t[i][1]) + t[i][2]);
                v[(4 * i + 2) * plane + at] = 0.5f * ((t[i][0] - t[i][1]) + t[i][2]);
                v[(4 * i + 3) * plane + at] = t[i][2];
            }
        }
}

#define EVEN(a, b) RT_SHUF8(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODD(a, b) RT_SHUF8(a, b, 1, 3, 5, 7, 9, 11, 13, 15)

/* One plane [h, w] into U's rows for its channel: U[xi][t0 + ty * TW + tx] (row stride
 * `xi_ld` between the 16 points). hb: the plane's horizontal transforms, row r of input
 * (r = -1 .. 2 TH) at hb + (r + 1) * 4 * TWV: d B's four columns for every tile of the row;
 * then each row of tiles combines four of them vertically (B^T). */
RT_ISA_BODY static void wino_in_body(const float *x, int32_t h, int32_t w, float *prow, float *hb, float *u,
                                     int64_t xi_ld) {
    int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    int64_t twv = twv_of(w), pf = prow_floats(w);
    memset(prow, 0, sizeof(float) * (size_t)pf);
    for (int32_t r = -1; r <= 2 * th; r++) {
        float *hr = hb + (int64_t)(r + 1) * 4 * twv;
        if (r < 0 || r >= h) {
            memset(hr, 0, sizeof(float) * (size_t)(4 * twv));
            continue;
        }
        memcpy(prow + 1, x + (int64_t)r * w, sizeof(float) * (size_t)w); /* prow[k] = x[r][k - 1] */
        for (int64_t tx = 0; tx < twv; tx += 8) {
            const float *p = prow + 2 * tx;
            V8 a = *(const V8u *)p, b = *(const V8u *)(p + 8), a2 = *(const V8u *)(p + 2), b2 = *(const V8u *)(p + 10);
            V8 d0 = EVEN(a, b), d1 = ODD(a, b), d2 = EVEN(a2, b2), d3 = ODD(a2, b2);
            *(V8u *)(hr + tx) = d0 - d2;
            *(V8u *)(hr + twv + tx) = d1 + d2;
            *(V8u *)(hr + 2 * twv + tx) = d2 - d1;
            *(V8u *)(hr + 3 * twv + tx) = d1 - d3;
        }
    }
    for (int32_t ty = 0; ty < th; ty++) {
        const float *r0 = hb + (int64_t)(2 * ty) * 4 * twv; /* input row 2 ty - 1 */
        const float *r1 = r0 + 4 * twv, *r2 = r1 + 4 * twv, *r3 = r2 + 4 * twv;
        float *ut = u + (int64_t)ty * tw;
        for (int j = 0; j < 4; j++)
            for (int64_t tx = 0; tx < tw; tx += 8) {
                int64_t k = j * twv + tx;
                V8 e0 = *(const V8u *)(r0 + k), e1 = *(const V8u *)(r1 + k), e2 = *(const V8u *)(r2 + k),
                   e3 = *(const V8u *)(r3 + k);
                *(V8u *)(ut + (0 + j) * xi_ld + tx) = e0 - e2;
                *(V8u *)(ut + (4 + j) * xi_ld + tx) = e1 + e2;
                *(V8u *)(ut + (8 + j) * xi_ld + tx) = e2 - e1;
                *(V8u *)(ut + (12 + j) * xi_ld + tx) = e1 - e3;
            }
    }
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
            V8 q[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) q[i][j] = *(const V8u *)(mt + (4 * i + j) * xi_ld + tx);
            V8 s[2][4]; /* A^T q */
            for (int j = 0; j < 4; j++) {
                s[0][j] = (q[0][j] + q[1][j]) + q[2][j];
                s[1][j] = (q[1][j] - q[2][j]) - q[3][j];
            }
            int32_t cols = 2 * (tw - tx) < 16 ? 2 * (tw - tx) : 16;
            if (2 * tx + cols > w) cols = w - 2 * tx;
            for (int a = 0; a < 2 && 2 * ty + a < h; a++) {
                V8 y0 = (s[a][0] + s[a][1]) + s[a][2], y1 = (s[a][1] - s[a][2]) - s[a][3];
                V8 lo = RT_SHUF8(y0, y1, 0, 8, 1, 9, 2, 10, 3, 11), hi = RT_SHUF8(y0, y1, 4, 12, 5, 13, 6, 14, 7, 15);
                float *row = y + (int64_t)(2 * ty + a) * w + 2 * tx;
                if (cols == 16) {
                    *(V8u *)row = lo;
                    *(V8u *)(row + 8) = hi;
                } else {
                    float tmp[16];
                    memcpy(tmp, &lo, sizeof lo);
                    memcpy(tmp + 8, &hi, sizeof hi);
                    rt_row_copy(row, tmp, cols);
                }
            }
        }
    }
}
RT_ISA_DISPATCH(wino_out, (const float *m, int64_t xi_ld, int32_t h, int32_t w, float *y), (m, xi_ld, h, w, y))

/* cnt samples of x [cnt, cin, h, w] -> y [cnt, cout, h, w], v from rt_wino_weights (forward
 * with x, w; dx with dy, w flipped), scratch: rt_wino_thread_floats for the chunk size g >=
 * cnt. */
void rt_wino_chunk(const float *x, int32_t cin, int32_t cout, int32_t h, int32_t w, int64_t cnt, int64_t g,
                   const float *v, float *y, float *scratch) {
    int64_t tiles = tiles_of(h, w), ld = ld_of(g, h, w), t = cnt * tiles, hw = (int64_t)h * w;
    float *u = scratch, *m = u + 16 * (int64_t)cin * ld, *hb = m + 16 * (int64_t)cout * ld;
    float *prow = hb + hbuf_floats(h, w);
    int64_t ustride = (int64_t)cin * ld, mstride = (int64_t)cout * ld;
    for (int64_t s = 0; s < cnt; s++)
        for (int32_t c = 0; c < cin; c++)
            wino_in(x + (s * cin + c) * hw, h, w, prow, hb, u + (int64_t)c * ld + s * tiles, ustride);
    for (int xi = 0; xi < 16; xi++)
        rt_sgemm_serial(0, 0, cout, (int32_t)t, cin, 1.0f, v + (int64_t)xi * cout * cin, cin, u + xi * ustride,
                        (int32_t)ld, 0.0f, m + xi * mstride, (int32_t)ld);
    for (int64_t s = 0; s < cnt; s++)
        for (int32_t k = 0; k < cout; k++)
            wino_out(m + (int64_t)k * ld + s * tiles, mstride, h, w, y + (s * cout + k) * hw);
}

/* One plane of dy [h, w] into the rows of its channel: DY[xi][t0 + ty * TW + tx] = (A dy_t
 * A^T)[xi] for each 2 x 2 tile dy_t (values past the plane zero), A = [1 0; 1 1; 1 -1;
 * 0 -1]; 8 tiles a vector, as wino_in. */
RT_ISA_BODY static void wino_dy_body(const float *dy, int32_t h, int32_t w, float *prow, float *d, int64_t xi_ld) {
    int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    memset(prow, 0, sizeof(float) * (size_t)(2 * prow_floats(w)));
    float *p0 = prow, *p1 = prow + prow_floats(w);
    for (int32_t ty = 0; ty < th; ty++) {
        memcpy(p0, dy + (int64_t)(2 * ty) * w, sizeof(float) * (size_t)w);
        if (2 * ty + 1 < h) memcpy(p1, dy + (int64_t)(2 * ty + 1) * w, sizeof(float) * (size_t)w);
        else memset(p1, 0, sizeof(float) * (size_t)w);
        float *dt = d + (int64_t)ty * tw;
        for (int64_t tx = 0; tx < tw; tx += 8) {
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
RT_ISA_DISPATCH(wino_dy, (const float *dy, int32_t h, int32_t w, float *prow, float *d, int64_t xi_ld),
                (dy, h, w, prow, d, xi_ld))

void rt_wino_dw_chunk(const float *x, const float *dy, int32_t c, int32_t o, int32_t h, int32_t w, int64_t cnt,
                      int64_t g, bool accumulate, float *dv, float *scratch) {
    int64_t tiles = tiles_of(h, w), ld = ld_of(g, h, w), t = cnt * tiles, hw = (int64_t)h * w;
    float *u = scratch, *d = u + 16 * (int64_t)c * ld, *hb = d + 16 * (int64_t)o * ld;
    float *prow = hb + hbuf_floats(h, w);
    int64_t ustride = (int64_t)c * ld, dstride = (int64_t)o * ld;
    for (int64_t s = 0; s < cnt; s++) {
        for (int32_t cc = 0; cc < c; cc++)
            wino_in(x + (s * c + cc) * hw, h, w, prow, hb, u + (int64_t)cc * ld + s * tiles, ustride);
        for (int32_t k = 0; k < o; k++)
            wino_dy(dy + (s * o + k) * hw, h, w, prow, d + (int64_t)k * ld + s * tiles, dstride);
    }
    for (int xi = 0; xi < 16; xi++)
        rt_sgemm_serial(0, 1, o, c, (int32_t)t, 1.0f, d + xi * dstride, (int32_t)ld, u + xi * ustride, (int32_t)ld,
                        accumulate ? 1.0f : 0.0f, dv + (int64_t)xi * o * c, c);
}

/* dw [o, c, 3, 3] for filters [o0, o1) = G^T dV G, dV the slots' sums added in order
 * (slot k's dV [16, o, c] at dv + k * 16 o c). */
void rt_wino_dw_out(const float *dv, int64_t slots, int32_t o, int32_t c, int32_t o0, int32_t o1, float *dw) {
    int64_t plane = (int64_t)o * c, per = 16 * plane;
    for (int32_t oo = o0; oo < o1; oo++)
        for (int32_t cc = 0; cc < c; cc++) {
            float q[16];
            for (int xi = 0; xi < 16; xi++) {
                const float *at = dv + xi * plane + (int64_t)oo * c + cc;
                float sum = at[0];
                for (int64_t k = 1; k < slots; k++) sum += at[k * per];
                q[xi] = sum;
            }
            float r[3][4]; /* G^T q: G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1] */
            for (int j = 0; j < 4; j++) {
                r[0][j] = q[j] + 0.5f * (q[4 + j] + q[8 + j]);
                r[1][j] = 0.5f * (q[4 + j] - q[8 + j]);
                r[2][j] = 0.5f * (q[4 + j] + q[8 + j]) + q[12 + j];
            }
            float *out = dw + ((int64_t)oo * c + cc) * 9;
            for (int i = 0; i < 3; i++) { /* (G^T q) G */
                out[3 * i + 0] = r[i][0] + 0.5f * (r[i][1] + r[i][2]);
                out[3 * i + 1] = 0.5f * (r[i][1] - r[i][2]);
                out[3 * i + 2] = 0.5f * (r[i][1] + r[i][2]) + r[i][3];
            }
        }
}
