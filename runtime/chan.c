/* chan.c — per-channel sums over a batch, for batch norm and bias gradients: values of
 * shape [n, C, S] (S the product of the trailing dims, 1 for dense layers), channels
 * [c0, c1). The modes (abi.def) sum x + add[c] or (x + add[c] - shift[c])^2, or give
 * both sums of a batch-norm gradient, of g and g y, with g = x or x where y > 0: the terms
 * a bias_add, batch norm, relu_grad chain needs, computed in registers instead of from
 * stored intermediates. Generated code calls these from inside its parallel loops over ranges of
 * channels, so each channel is summed whole by one thread.
 *
 * A channel's n*S values are summed in 16 lanes (for S >= 16 value s of a sample's run
 * goes to lane s mod 16, a sample's tail of fewer than 16 to the first lanes; for
 * 1 < S < 16 the channel's values in sequence go round the lanes), the lanes then added in
 * a fixed order; for S = 1 (dense layers) each channel is one sum over n in order, 16
 * channels side by side in one vector. Either way: the same bits on any thread count and
 * any channel range, and no long chain of dependent adds. No allocation, no failure. */
#include <stdint.h>
#include <string.h>

#include "rt_internal.h"

typedef float Lanes __attribute__((vector_size(64))); /* 16 floats */

/* Each mode's loops are per-ISA clones (RT_ISA_CLONES) with the same lanes and order of
 * adds in all three. The helpers below take and give 16-lane vectors through memory
 * (RT_VLOAD), never as arguments or results. */
#define load16(p) RT_VLOAD(Lanes, p)

static inline __attribute__((always_inline)) float lanes_sum_at(const Lanes *a) {
    /* pairwise: 8 + 8, 4 + 4, 2 + 2, 1 + 1 */
    float t[16];
    memcpy(t, a, sizeof t);
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) t[j] += t[j + w];
    return t[0];
}
#define lanes_sum(a)                                                                               \
    ({                                                                                             \
        Lanes s_ = (a);                                                                            \
        lanes_sum_at(&s_);                                                                         \
    })

typedef float Quad __attribute__((vector_size(16)));
typedef int32_t QuadMask __attribute__((vector_size(16)));

/* x where y > 0, else 0, lane by lane; in 4-lane pieces, which every x86 compares
 * natively (a 16-lane compare is lowered to scalar code without AVX-512). */
static inline __attribute__((always_inline)) void relu_mask_at(Lanes *x, const Lanes *y) {
    Quad qx[4], qy[4];
    memcpy(qx, x, sizeof qx);
    memcpy(qy, y, sizeof qy);
    for (int k = 0; k < 4; k++) qx[k] = (Quad)((QuadMask)(qy[k] > 0) & (QuadMask)qx[k]);
    memcpy(x, qx, sizeof qx);
}
#define relu_mask(x, y)                                                                            \
    ({                                                                                             \
        Lanes rx_ = (x), ry_ = (y);                                                                \
        relu_mask_at(&rx_, &ry_);                                                                  \
        rx_;                                                                                       \
    })

/* The value each mode sums, for scalars (v) and for 16 lanes (V): a channel's add[c],
 * shift[c] are a, m. */
#define TERM_SUM(x, y) ((x) + a)
#define TERM_SQDEV(x, y) (((x) + a - m) * ((x) + a - m))
#define VTERM_RELU_SUM(x, y) relu_mask(x, y)
#define TERM_RELU_SUM(x, y) ((y) > 0 ? (x) : 0.0f)
#define VTERM_SUM TERM_SUM
#define VTERM_SQDEV TERM_SQDEV

/* One mode's loops: see the file comment for the lanes. */
#define CHAN_REDUCE(NAME, TERM, VTERM)                                                                                \
    RT_ISA_CLONES static void NAME(const float *x, const float *y, const float *add, const float *shift, int64_t n,   \
                                 int32_t C,                                                                           \
                     int64_t S, int32_t c0, int32_t c1, float *out) {                                                 \
        if (S == 1) { /* dense: 16 channels side by side, each summed over n in order */                             \
            int32_t c = c0;                                                                                           \
            for (; c + 16 <= c1; c += 16) {                                                                           \
                Lanes a = add ? load16(add + c) : (Lanes){0}, m = shift ? load16(shift + c) : (Lanes){0}, acc = {0};  \
                (void)a, (void)m;                                                                                     \
                for (int64_t i = 0; i < n; i++) acc += VTERM(load16(x + i * C + c), y ? load16(y + i * C + c) : a);   \
                memcpy(out + c, &acc, sizeof acc);                                                                    \
            }                                                                                                         \
            for (; c < c1; c++) {                                                                                     \
                float a = add ? add[c] : 0.0f, m = shift ? shift[c] : 0.0f, acc = 0;                                  \
                (void)a, (void)m;                                                                                     \
                for (int64_t i = 0; i < n; i++) acc += TERM(x[i * C + c], y ? y[i * C + c] : 0.0f);                   \
                out[c] = acc;                                                                                         \
            }                                                                                                         \
            return;                                                                                                   \
        }                                                                                                             \
        for (int32_t c = c0; c < c1; c++) {                                                                           \
            float a = add ? add[c] : 0.0f, m = shift ? shift[c] : 0.0f;                                               \
            (void)a, (void)m;                                                                                         \
            if (S < 16) {                                                                                             \
                float acc[16] = {0};                                                                                  \
                int lane = 0;                                                                                         \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    for (int64_t s = 0; s < S; s++) {                                                                 \
                        int64_t k = (i * C + c) * S + s;                                                              \
                        acc[lane] += TERM(x[k], y ? y[k] : 0.0f);                                                     \
                        lane = (lane + 1) & 15;                                                                       \
                    }                                                                                                 \
                out[c] = lanes_sum(load16(acc));                                                                      \
                continue;                                                                                             \
            }                                                                                                         \
            Lanes acc = {0}, tail = {0}, zero = {0};                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                const float *px = x + (i * C + c) * S, *py = y ? y + (i * C + c) * S : NULL;                          \
                int64_t s = 0;                                                                                        \
                (void)py, (void)zero;                                                                                 \
                for (; s + 16 <= S; s += 16) acc += VTERM(load16(px + s), py ? load16(py + s) : zero);                 \
                if (s < S) {                                                                                          \
                    float t[16] = {0};                                                                                \
                    for (int64_t j = 0; s + j < S; j++) t[j] = TERM(px[s + j], py ? py[s + j] : 0.0f);                \
                    tail += load16(t);                                                                                \
                }                                                                                                     \
            }                                                                                                         \
            out[c] = lanes_sum(acc + tail);                                                                           \
        }                                                                                                             \
    }

/* Both sums of a batch-norm gradient in one pass: out = sum g, out2 = sum g y, with
 * g = x (TERM_X) or x where y > 0 (TERM_RELU_SUM); the same lanes, so the same bits, as
 * two passes of the single-sum modes. y is read (Y_READ), or recomputed from the batch
 * norm's input (Y_AFFINE: y = ((v + add[c]) - shift[c]) * scale[c], v read from y's
 * array, the operations of the generated forward pass, so the same bits as the y it
 * stored). a, m, sc: the channel's add, shift, scale (16 of them side by side for S = 1). */
#define Y_READ(v, a, m, sc) (v)
#define Y_AFFINE(v, a, m, sc) ((((v) + (a)) - (m)) * (sc))
#define TERM_X(x, y) (x)
#define VTERM_X(x, y) (x)
#define CHAN_GRAD_SUMS(NAME, TERM, VTERM, Y)                                                                          \
    RT_ISA_CLONES static void NAME(const float *x, const float *y, const float *add, const float *shift,              \
                                   const float *scale, int64_t n, int32_t C, int64_t S, int32_t c0, int32_t c1,       \
                                   float *out, float *out2) {                                                         \
        if (S == 1) { /* dense: 16 channels side by side, each summed over n in order */                             \
            int32_t c = c0;                                                                                           \
            for (; c + 16 <= c1; c += 16) {                                                                           \
                Lanes acc = {0}, acc2 = {0};                                                                          \
                Lanes va = add ? load16(add + c) : (Lanes){0}, vm = shift ? load16(shift + c) : (Lanes){0};           \
                Lanes vs = scale ? load16(scale + c) : (Lanes){0};                                                    \
                (void)va, (void)vm, (void)vs;                                                                         \
                for (int64_t i = 0; i < n; i++) {                                                                     \
                    Lanes yv = Y(load16(y + i * C + c), va, vm, vs), g = VTERM(load16(x + i * C + c), yv);            \
                    acc += g;                                                                                         \
                    acc2 += g * yv;                                                                                   \
                }                                                                                                     \
                memcpy(out + c, &acc, sizeof acc);                                                                    \
                memcpy(out2 + c, &acc2, sizeof acc2);                                                                 \
            }                                                                                                         \
            for (; c < c1; c++) {                                                                                     \
                float acc = 0, acc2 = 0;                                                                              \
                float sa = add ? add[c] : 0.0f, sm = shift ? shift[c] : 0.0f, ss = scale ? scale[c] : 0.0f;           \
                (void)sa, (void)sm, (void)ss;                                                                         \
                for (int64_t i = 0; i < n; i++) {                                                                     \
                    float yv = Y(y[i * C + c], sa, sm, ss), g = TERM(x[i * C + c], yv);                               \
                    acc += g;                                                                                         \
                    acc2 += g * yv;                                                                                   \
                }                                                                                                     \
                out[c] = acc;                                                                                         \
                out2[c] = acc2;                                                                                       \
            }                                                                                                         \
            return;                                                                                                   \
        }                                                                                                             \
        for (int32_t c = c0; c < c1; c++) {                                                                           \
            float sa = add ? add[c] : 0.0f, sm = shift ? shift[c] : 0.0f, ss = scale ? scale[c] : 0.0f;               \
            Lanes va = {0}, vm = {0}, vs = {0};                                                                       \
            va += sa, vm += sm, vs += ss;                                                                             \
            (void)va, (void)vm, (void)vs;                                                                             \
            if (S < 16) {                                                                                             \
                float acc[16] = {0}, acc2[16] = {0};                                                                  \
                int lane = 0;                                                                                         \
                for (int64_t i = 0; i < n; i++)                                                                       \
                    for (int64_t s = 0; s < S; s++) {                                                                 \
                        int64_t k = (i * C + c) * S + s;                                                              \
                        float yv = Y(y[k], sa, sm, ss), g = TERM(x[k], yv);                                           \
                        acc[lane] += g;                                                                               \
                        acc2[lane] += g * yv;                                                                         \
                        lane = (lane + 1) & 15;                                                                       \
                    }                                                                                                 \
                out[c] = lanes_sum(load16(acc));                                                                      \
                out2[c] = lanes_sum(load16(acc2));                                                                    \
                continue;                                                                                             \
            }                                                                                                         \
            Lanes acc = {0}, acc2 = {0}, tail = {0}, tail2 = {0};                                                     \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                const float *px = x + (i * C + c) * S, *py = y + (i * C + c) * S;                                     \
                int64_t s = 0;                                                                                        \
                for (; s + 16 <= S; s += 16) {                                                                        \
                    Lanes yv = Y(load16(py + s), va, vm, vs), g = VTERM(load16(px + s), yv);                          \
                    acc += g;                                                                                         \
                    acc2 += g * yv;                                                                                   \
                }                                                                                                     \
                if (s < S) {                                                                                          \
                    float t[16] = {0}, t2[16] = {0};                                                                  \
                    for (int64_t j = 0; s + j < S; j++) {                                                             \
                        float yv = Y(py[s + j], sa, sm, ss);                                                          \
                        t[j] = TERM(px[s + j], yv);                                                                   \
                        t2[j] = t[j] * yv;                                                                            \
                    }                                                                                                 \
                    tail += load16(t);                                                                                \
                    tail2 += load16(t2);                                                                              \
                }                                                                                                     \
            }                                                                                                         \
            out[c] = lanes_sum(acc + tail);                                                                           \
            out2[c] = lanes_sum(acc2 + tail2);                                                                        \
        }                                                                                                             \
    }

CHAN_GRAD_SUMS(grad_sums, TERM_X, VTERM_X, Y_READ)
CHAN_GRAD_SUMS(relu_grad_sums, TERM_RELU_SUM, VTERM_RELU_SUM, Y_READ)
CHAN_GRAD_SUMS(relu_grad_sums_affine, TERM_RELU_SUM, VTERM_RELU_SUM, Y_AFFINE)

CHAN_REDUCE(reduce_sum, TERM_SUM, VTERM_SUM)
CHAN_REDUCE(reduce_sqdev, TERM_SQDEV, VTERM_SQDEV)

void nnq_rt_chan_reduce(int32_t mode, const float *x, const float *y, const float *add, const float *shift,
                        const float *scale, int64_t n, int32_t c, int64_t s, int32_t c0, int32_t c1, float *out,
                        float *out2) {
    switch (mode) {
    case 0: reduce_sum(x, y, add, shift, n, c, s, c0, c1, out); break;
    case 1: reduce_sqdev(x, y, add, shift, n, c, s, c0, c1, out); break;
    case 2: grad_sums(x, y, NULL, NULL, NULL, n, c, s, c0, c1, out, out2); break;
    case 3: relu_grad_sums(x, y, NULL, NULL, NULL, n, c, s, c0, c1, out, out2); break;
    default: relu_grad_sums_affine(x, y, add, shift, scale, n, c, s, c0, c1, out, out2); break;
    }
}
