/* chan.c — per-channel sums over a batch, for batch norm and bias gradients: values of
 * shape [n, C, S] (S the product of the trailing dims, 1 for dense layers), channels
 * [c0, c1). Generated code calls these from inside its parallel loops over ranges of
 * channels, so each channel is summed whole by one thread.
 *
 * A channel's n*S values are summed in 16 lanes (for S >= 16 value s of a sample's run
 * goes to lane s mod 16, a sample's tail of fewer than 16 to the first lanes; for shorter
 * runs the channel's values in sequence go round the lanes), the lanes then added in a
 * fixed order: the same bits on any thread count and any channel range, and none of
 * the latency of one long chain of dependent adds. No allocation, no failure. */
#include <string.h>

#include "rt_internal.h"

typedef float Lanes __attribute__((vector_size(64))); /* 16 floats */

static Lanes load16(const float *p) {
    Lanes v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float lanes_sum(Lanes a) {
    /* pairwise: 8 + 8, 4 + 4, 2 + 2, 1 + 1 */
    float t[16];
    memcpy(t, &a, sizeof t);
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) t[j] += t[j + w];
    return t[0];
}

/* out[c] = sum of (x - mx[c]) * (y - my[c]) over channel c's values, for y == NULL as
 * (x - mx[c]) alone; mx, my NULL mean 0. */
static void chan_reduce(const float *x, const float *y, const float *mx, const float *my, int64_t n, int32_t C,
                        int64_t S, int32_t c0, int32_t c1, float *out) {
    if (S < 16) {
        /* short runs (dense layers: S = 1): the channel's values in sequence, value q to lane q mod 16 */
        for (int32_t c = c0; c < c1; c++) {
            float a = mx ? mx[c] : 0.0f, b = my ? my[c] : 0.0f, acc[16] = {0};
            int lane = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t s = 0; s < S; s++) {
                    int64_t k = (i * C + c) * S + s;
                    acc[lane] += y ? (x[k] - a) * (y[k] - b) : x[k] - a;
                    lane = (lane + 1) & 15;
                }
            Lanes v;
            memcpy(&v, acc, sizeof v);
            out[c] = lanes_sum(v);
        }
        return;
    }
    for (int32_t c = c0; c < c1; c++) {
        float a = mx ? mx[c] : 0.0f, b = my ? my[c] : 0.0f;
        Lanes acc = {0}, tail = {0};
        float t[16];
        for (int64_t i = 0; i < n; i++) {
            const float *px = x + (i * C + c) * S, *py = y ? y + (i * C + c) * S : NULL;
            int64_t s = 0;
            for (; s + 16 <= S; s += 16) {
                Lanes u = load16(px + s) - a;
                acc += py ? u * (load16(py + s) - b) : u;
            }
            if (s < S) {
                memset(t, 0, sizeof t);
                for (int64_t j = 0; s + j < S; j++)
                    t[j] = py ? (px[s + j] - a) * (py[s + j] - b) : px[s + j] - a;
                tail += load16(t);
            }
        }
        out[c] = lanes_sum(acc + tail);
    }
}

void nnq_rt_chan_sum(const float *x, int64_t n, int32_t c, int64_t s, int32_t c0, int32_t c1, float *out) {
    chan_reduce(x, NULL, NULL, NULL, n, c, s, c0, c1, out);
}

void nnq_rt_chan_dot(const float *x, const float *mx, const float *y, const float *my, int64_t n, int32_t c,
                     int64_t s, int32_t c0, int32_t c1, float *out) {
    chan_reduce(x, y, mx, my, n, c, s, c0, c1, out);
}
