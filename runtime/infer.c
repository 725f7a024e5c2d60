/* infer.c — the inference engine (nnq_infer.h): a model file's architecture record run
 * on raw samples, with the quantized weights kept packed.
 *
 * Load (nnq_net_new): shapes are inferred and checked op by op; every weight matrix is
 * seen as O rows of K values (a dense layer's w [K, O] transposed, a convolution's
 * [O, C·k·k] as stored). A quantized one with at most 4 labels becomes bit planes: its
 * base label (0 when the set holds 0, else the first label) needs no plane, every other
 * label l one bit per weight (1 where the weight is l), each row padded to 64-bit words.
 * So a binary matrix takes 1 bit per weight, a ternary {-1, 0, 1} 2 and a 4-level one 3.
 * Larger label sets keep their packed indices (the file's bits), rows word-aligned.
 *
 * Run: value 0 is the normalized input, op i writes value i + 1; buffers are shared by
 * lifetime and sized for a chunk of samples (at most NET_CHUNK, fewer when a value is
 * large: a buffer holds at most NET_CHUNK_FLOATS unless one sample needs more; no value
 * may exceed NET_MAX_VALUE floats per sample). A dense layer on at most
 * NNQ_NET_PACKED_ROWS samples with bit planes runs from the bits:
 *     y[o] = base · Σ_k x[k] + Σ_l (label_l − base) · Σ_{k: plane_l[o,k] = 1} x[k],
 * the masked sums by the widest kernel the CPU has (AVX-512, AVX2, else portable C),
 * chosen once at run time. Otherwise (more samples, convolutions, larger label sets) the
 * layer is decoded into one scratch buffer (never the whole model) and runs through the
 * float kernels the training uses (nnq_rt_sgemm, nnq_rt_conv2d, ...). Batch norm is the
 * training's eval formula, (x − mean) · 1/sqrt(var + 1e-5) in float.
 *
 * Results do not depend on the thread count (every kernel splits by rows or samples and
 * computes each whole). */
#include <immintrin.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnq_infer.h"
#include "rt_internal.h"

#define NET_CHUNK 256                    /* samples per pass through the ops, at most */
#define NET_CHUNK_FLOATS ((int64_t)1 << 22) /* a value's buffer: 16 MiB for a chunk */
#define NET_MAX_VALUE ((int64_t)1 << 26)    /* floats per sample of any value (256 MiB) */
#define NET_MAX_PLANES 3

/* Σ x[k] over the set bits of a plane row of K bits. */
typedef float (*MaskSumFn)(const uint64_t *bits, const float *x, int64_t K);
/* A row of bit planes as floats: out[k] = vals[0] (the base label), replaced by
 * vals[1 + p] where plane p (words apart) has bit k set. */
typedef void (*DecodeFn)(const uint64_t *row, int nplanes, int64_t words, const float *vals, int64_t K, float *out);

/* The kernels of one instruction set. */
typedef struct Kernels {
    const char *name;
    MaskSumFn masksum;
    DecodeFn decode;
} Kernels;

typedef enum PackKind { PACK_NONE, PACK_PLANES, PACK_INDICES } PackKind;

/* A weight matrix: O rows of K values. */
typedef struct Mat {
    int64_t rows, cols;
    const float *f;          /* float, in the file's layout (dense [K, O], conv [O, K]) */
    float *f_own;            /* decoded at load (NNQ_NET_FLOAT), or NULL */
    bool transposed;         /* f is [K, O] (a dense layer's) */
    PackKind pack;
    const float *labels;
    int nlabels, bits;       /* PACK_INDICES: bits per index */
    int base, nplanes;       /* PACK_PLANES: the base label; planes for the others */
    int plane_label[NET_MAX_PLANES];
    int64_t words;           /* 64-bit words per row (per plane) */
    uint64_t *w;             /* [rows][nplanes or 1][words] */
} Mat;

typedef struct NetOp {
    NnqInferOp op;
    int in[2];
    NnqOpGeometry g;         /* output, input (per-channel ops: g.c channels of g.h*g.w), window */
    Mat m;                   /* dense, conv */
    const float *t0;         /* bias b; batch norm mean */
    float *inv;              /* batch norm 1/sqrt(var + 1e-5) */
    float *own;              /* a quantized bias, decoded */
    /* fuse_chan_ops: a batch norm that took the bias before it (its b), an op that took
     * the relu after it */
    const float *bias;
    bool relu;
} NetOp;

struct NnqNet {
    NnqNetMode mode;
    const NnqModelArch *a;
    int nops;
    NetOp *ops;
    int64_t *size;           /* per-sample floats of each value */
    int *slot;               /* the buffer each value lives in */
    int nslots;
    int64_t *slot_size;      /* per-sample floats */
    float **buf;             /* [nslots], each slot_size * chunk */
    int64_t chunk;           /* samples per pass */
    int out;                 /* the logits' value */
    double flops;            /* per sample, in matrix products and convolutions */
    int64_t in_size, chan_size;
    double *na, *nb;         /* normalization: x = raw * na[c] + nb[c] */
    float *scratch;          /* one decoded layer */
    int64_t scratch_floats;
    int32_t *idx;            /* maxpool positions */
    int64_t idx_ints;
    int64_t weight_bytes;
    Kernels k;               /* picked when the net is made */
};

/* ---- masked sums: Σ x[k] over the set bits of a plane row ---- */

static float masksum_portable(const uint64_t *bits, const float *x, int64_t K) {
    float acc[8] = {0};
    for (int64_t k = 0; k < K; k += 64) {
        uint64_t w = bits[k / 64];
        int64_t n = K - k < 64 ? K - k : 64;
        for (int64_t j = 0; j < n; j++)
            acc[j & 7] += (w >> j & 1) ? x[k + j] : 0.0f;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Four (AVX2) or eight (AVX-512) independent sums: the adds' latency, not their
 * throughput, would bound a single chain. */
/* AVX2 has no mask registers: a lane's bit is shifted into its sign (vpsllvd), which
 * blendv reads, taking x or 0. */
__attribute__((target("avx2"))) static float masksum_avx2(const uint64_t *bits, const float *x, int64_t K) {
    const __m256i s0 = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24), eight = _mm256_set1_epi32(8);
    const __m256i s1 = _mm256_sub_epi32(s0, eight), s2 = _mm256_sub_epi32(s1, eight), s3 = _mm256_sub_epi32(s2, eight);
    const __m256 zero = _mm256_setzero_ps();
    __m256 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    int64_t k = 0;
#define MASKED(acc, sh, j) \
    acc = _mm256_add_ps(acc, _mm256_blendv_ps(zero, _mm256_loadu_ps(x + k + 8 * (j)), _mm256_castsi256_ps(_mm256_sllv_epi32(w, sh))))
    for (; k + 32 <= K; k += 32) {
        __m256i w = _mm256_set1_epi32((int)(uint32_t)(bits[k / 64] >> (k & 63)));
        MASKED(a0, s0, 0), MASKED(a1, s1, 1), MASKED(a2, s2, 2), MASKED(a3, s3, 3);
    }
#undef MASKED
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    for (; k < K; k++)
        s += (bits[k / 64] >> (k & 63) & 1) ? x[k] : 0.0f;
    return s;
}

__attribute__((target("avx512f"))) static float masksum_avx512(const uint64_t *bits, const float *x, int64_t K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t k = 0;
#define MASKED(acc, word, j, off) acc = _mm512_mask_add_ps(acc, (__mmask16)((word) >> 16 * (j)), acc, _mm512_loadu_ps(x + k + (off)))
    for (; k + 128 <= K; k += 128) {
        uint64_t b0 = bits[k / 64], b1 = bits[k / 64 + 1];
        MASKED(a0, b0, 0, 0), MASKED(a1, b0, 1, 16), MASKED(a2, b0, 2, 32), MASKED(a3, b0, 3, 48);
        MASKED(a4, b1, 0, 64), MASKED(a5, b1, 1, 80), MASKED(a6, b1, 2, 96), MASKED(a7, b1, 3, 112);
    }
#undef MASKED
    for (; k < K; k += 16) { /* bits past K are zero: the masked load reads only x[< K] */
        __m512 v = _mm512_maskz_loadu_ps((__mmask16)(bits[k / 64] >> (k & 63)), x + k);
        if (k & 16) a1 = _mm512_add_ps(a1, v);
        else a0 = _mm512_add_ps(a0, v);
    }
    __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    return _mm512_reduce_add_ps(t);
}

/* Weight k of a row of bit planes: vals[0], or vals[1 + p] where plane p has bit k. */
static inline float plane_value(const uint64_t *row, int nplanes, int64_t words, const float *vals, int64_t k) {
    float v = vals[0];
    for (int p = 0; p < nplanes; p++)
        if (row[p * words + k / 64] >> (k & 63) & 1) v = vals[1 + p];
    return v;
}

static void decode_portable(const uint64_t *row, int nplanes, int64_t words, const float *vals, int64_t K,
                            float *out) {
    for (int64_t k = 0; k < K; k++) out[k] = plane_value(row, nplanes, words, vals, k);
}

__attribute__((target("avx2"))) static void decode_avx2(const uint64_t *row, int nplanes, int64_t words,
                                                        const float *vals, int64_t K, float *out) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v = _mm256_set1_ps(vals[0]);
        for (int p = 0; p < nplanes; p++) {
            int b = (int)(row[p * words + k / 64] >> (k & 63) & 255);
            __m256i m = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(b), sel), sel);
            v = _mm256_blendv_ps(v, _mm256_set1_ps(vals[1 + p]), _mm256_castsi256_ps(m));
        }
        _mm256_storeu_ps(out + k, v);
    }
    for (; k < K; k++) out[k] = plane_value(row, nplanes, words, vals, k);
}

__attribute__((target("avx512f"))) static void decode_avx512(const uint64_t *row, int nplanes, int64_t words,
                                                             const float *vals, int64_t K, float *out) {
    for (int64_t k = 0; k < K; k += 16) {
        __m512 v = _mm512_set1_ps(vals[0]);
        for (int p = 0; p < nplanes; p++)
            v = _mm512_mask_blend_ps((__mmask16)(row[p * words + k / 64] >> (k & 63)), v, _mm512_set1_ps(vals[1 + p]));
        if (k + 16 <= K) _mm512_storeu_ps(out + k, v);
        else _mm512_mask_storeu_ps(out + k, (__mmask16)((1u << (K - k)) - 1), v);
    }
}

/* The widest kernels rt_isa() allows ($NNQ_ISA asks for narrower ones: tests and
 * benchmarks compare them). */
static Kernels kernels_pick(void) {
    switch (rt_isa()) {
    case RT_ISA_AVX512: return (Kernels){"avx512", masksum_avx512, decode_avx512};
    case RT_ISA_AVX2: return (Kernels){"avx2", masksum_avx2, decode_avx2};
    case RT_ISA_PORTABLE: break;
    }
    return (Kernels){"portable", masksum_portable, decode_portable};
}

const char *nnq_net_isa(void) {
    return kernels_pick().name;
}

/* ---- weight matrices ---- */

static void set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* Element (r, c) of the matrix is file element r*K + c, or c*O + r when transposed. */
static bool mat_init(Mat *m, const NnqModelTensor *t, int64_t rows, int64_t cols, bool transposed, NnqNetMode mode,
                     int64_t *bytes) {
    m->rows = rows, m->cols = cols, m->transposed = transposed;
    if (t->nlabels == 0 || mode == NNQ_NET_FLOAT) {
        m->pack = PACK_NONE;
        if (t->values && t->nlabels == 0) {
            m->f = t->values;
        } else {
            m->f = m->f_own = malloc((size_t)(rows * cols) * sizeof(float));
            if (!m->f_own) return false;
            for (int64_t i = 0; i < rows * cols; i++) m->f_own[i] = nnq_model_value(t, i);
        }
        *bytes += rows * cols * 4;
        return true;
    }
    m->labels = t->labels, m->nlabels = t->nlabels, m->bits = t->bits;
    m->words = (cols + 63) / 64;
    int64_t per_row;
    if (t->nlabels <= NET_MAX_PLANES + 1) {
        m->pack = PACK_PLANES;
        m->base = 0;
        for (int l = 0; l < t->nlabels; l++)
            if (t->labels[l] == 0.0f) m->base = l;
        for (int l = 0; l < t->nlabels; l++)
            if (l != m->base) m->plane_label[m->nplanes++] = l;
        per_row = m->nplanes * m->words;
    } else {
        m->pack = PACK_INDICES;
        m->words = (cols * m->bits + 63) / 64;
        per_row = m->words;
    }
    m->w = calloc((size_t)(rows * per_row), sizeof(uint64_t));
    if (!m->w) return false;
    *bytes += rows * per_row * 8;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int idx = nnq_model_label_index(t, transposed ? c * rows + r : r * cols + c);
            uint64_t *row = m->w + r * per_row;
            if (m->pack == PACK_PLANES) {
                for (int p = 0; p < m->nplanes; p++)
                    if (m->plane_label[p] == idx) row[p * m->words + c / 64] |= (uint64_t)1 << (c % 64);
            } else {
                uint64_t bit = (uint64_t)c * (uint64_t)m->bits;
                for (int b = 0; b < m->bits; b++, bit++)
                    if (idx >> b & 1) row[bit / 64] |= (uint64_t)1 << (bit % 64);
            }
        }
    return true;
}

/* Rows [r0, r1) as floats, out[(r - r0) * K + c]. */
static void mat_decode(const Mat *m, const Kernels *kn, int64_t r0, int64_t r1, float *out) {
    int64_t K = m->cols;
    float vals[1 + NET_MAX_PLANES];
    if (m->pack == PACK_PLANES) {
        vals[0] = m->labels[m->base];
        for (int p = 0; p < m->nplanes; p++) vals[1 + p] = m->labels[m->plane_label[p]];
    }
    for (int64_t r = r0; r < r1; r++) {
        float *o = out + (r - r0) * K;
        if (m->pack == PACK_PLANES) {
            kn->decode(m->w + r * m->nplanes * m->words, m->nplanes, m->words, vals, K, o);
        } else {
            const uint64_t *row = m->w + r * m->words;
            for (int64_t c = 0; c < K; c++) {
                uint64_t bit = (uint64_t)c * (uint64_t)m->bits, v = 0;
                for (int b = 0; b < m->bits; b++, bit++) v |= (row[bit / 64] >> (bit % 64) & 1) << b;
                o[c] = m->labels[v];
            }
        }
    }
}

/* ---- dense from bit planes ---- */

typedef struct PlaneJob {
    const Mat *m;
    const float *x;
    const float *xsum;       /* Σ_k x[n, k] per sample */
    float *y;
    int64_t n;
    MaskSumFn sum;
} PlaneJob;

static void plane_rows(void *ctx, int64_t r0, int64_t r1) {
    const PlaneJob *j = ctx;
    const Mat *m = j->m;
    float base = m->labels[m->base];
    for (int64_t r = r0; r < r1; r++) {
        const uint64_t *row = m->w + r * m->nplanes * m->words;
        for (int64_t s = 0; s < j->n; s++) {
            const float *x = j->x + s * m->cols;
            float acc = base != 0.0f ? base * j->xsum[s] : 0.0f;
            for (int p = 0; p < m->nplanes; p++)
                acc += (m->labels[m->plane_label[p]] - base) * j->sum(row + p * m->words, x, m->cols);
            j->y[s * m->rows + r] = acc;
        }
    }
}

/* ---- per-op kernels ---- */

typedef struct ChanJob {
    const float *x, *x2, *a;
    const float *b, *bias;
    float *y;
    int64_t c, s;            /* channels, values per channel per sample */
    NnqInferOp op;
    bool relu;
} ChanJob;

/* bias, batch norm, relu, add over planes [p0, p1) of s values (plane p: sample p / c,
 * channel p % c), each fused form (a bias into its batch norm, a relu into the op before
 * it) one loop with the separate ops' float operations in their order, the switch
 * outside the loops. */
#define CHAN_LOOP(expr)                                                                            \
    for (int64_t p = p0, c = p0 % j->c; p < p1; p++, c = c + 1 == j->c ? 0 : c + 1)               \
        for (int64_t i = p * j->s; i < (p + 1) * j->s; i++) y[i] = (expr)
#define RELU(v) ((v) > 0.0f ? (v) : 0.0f)
#define CHAN_CASE(expr)                                                                            \
    do {                                                                                           \
        if (j->relu) {                                                                             \
            CHAN_LOOP(RELU(expr));                                                                 \
        } else {                                                                                   \
            CHAN_LOOP(expr);                                                                       \
        }                                                                                          \
    } while (0)
static void chan_rows(void *ctx, int64_t p0, int64_t p1) {
    const ChanJob *j = ctx;
    const float *x = j->x, *x2 = j->x2, *a = j->a, *b = j->b, *bias = j->bias;
    float *y = j->y;
    switch (j->op) {
    case NNQ_INFER_BIAS: CHAN_CASE(x[i] + a[c]); break;
    case NNQ_INFER_BATCHNORM:
        if (bias) CHAN_CASE((x[i] + bias[c] - a[c]) * b[c]);
        else CHAN_CASE((x[i] - a[c]) * b[c]);
        break;
    case NNQ_INFER_RELU: CHAN_LOOP(RELU(x[i])); break;
    case NNQ_INFER_ADD: CHAN_CASE(x[i] + x2[i]); break;
    default: break;
    }
}
#undef CHAN_CASE
#undef RELU
#undef CHAN_LOOP

/* Op i on n samples. */
static void op_run(NnqNet *net, int i, int64_t n) {
    NetOp *op = &net->ops[i];
    float *x = net->buf[net->slot[op->in[0]]];
    float *y = net->buf[net->slot[i + 1]];
    Mat *m = &op->m;
    switch (op->op) {
    case NNQ_INFER_DENSE: {
        int64_t K = m->cols, O = m->rows;
        if (m->pack == PACK_PLANES && n <= NNQ_NET_PACKED_ROWS) {
            float xsum[NNQ_NET_PACKED_ROWS];
            for (int64_t s = 0; s < n; s++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) acc += x[s * K + k];
                xsum[s] = (float)acc;
            }
            PlaneJob j = {m, x, xsum, y, n, net->k.masksum};
            rt_parallel_for(O, 16, plane_rows, &j);
        } else if (m->pack == PACK_NONE) {
            nnq_rt_sgemm(0, 0, (int32_t)n, (int32_t)O, (int32_t)K, 1.0f, x, (int32_t)K, m->f, (int32_t)O, 0.0f, y,
                         (int32_t)O);
        } else {
            mat_decode(m, &net->k, 0, O, net->scratch);
            nnq_rt_sgemm(0, 1, (int32_t)n, (int32_t)O, (int32_t)K, 1.0f, x, (int32_t)K, net->scratch, (int32_t)K,
                         0.0f, y, (int32_t)O);
        }
        break;
    }
    case NNQ_INFER_CONV2D:
    case NNQ_INFER_DWCONV2D: {
        const float *w = m->f;
        if (m->pack != PACK_NONE) {
            mat_decode(m, &net->k, 0, m->rows, net->scratch);
            w = net->scratch;
        }
        (op->op == NNQ_INFER_CONV2D ? nnq_rt_conv2d : nnq_rt_dwconv2d)(
            x, w, y, (int32_t)n, (int32_t)op->g.c, (int32_t)op->g.h, (int32_t)op->g.w, (int32_t)op->g.dims[0],
            (int32_t)op->g.k, (int32_t)op->g.k, (int32_t)op->g.stride, (int32_t)op->g.pad);
        break;
    }
    case NNQ_INFER_MAXPOOL:
        nnq_rt_maxpool(x, (int64_t)n * op->g.c, (int32_t)op->g.h, (int32_t)op->g.w, (int32_t)op->g.k,
                       (int32_t)op->g.stride, y, net->idx);
        break;
    case NNQ_INFER_AVGPOOL:
        nnq_rt_avgpool(x, (int64_t)n * op->g.c, (int32_t)op->g.h, (int32_t)op->g.w, (int32_t)op->g.k,
                       (int32_t)op->g.stride, y);
        break;
    case NNQ_INFER_FLATTEN:
        memcpy(y, x, (size_t)(n * net->size[i + 1]) * sizeof(float));
        break;
    default: {
        int64_t s = op->g.h * op->g.w;
        ChanJob j = {x, op->op == NNQ_INFER_ADD ? net->buf[net->slot[op->in[1]]] : NULL, op->t0, op->inv, op->bias, y,
                     op->g.c, s, op->op, op->relu};
        rt_parallel_for(n * op->g.c, s >= 4096 ? 1 : 4096 / s, chan_rows, &j);
        break;
    }
    }
}

/* ---- loading: shapes, weights, buffers ---- */

static const NnqModelTensor *tensor_of(const NnqModelFile *mf, const NnqModelOp *mo, int k) {
    return &mf->tensors[mo->tensor[k]];
}

/* Op i's geometry (from the value shapes nnq_model_shapes checked) and weights; false
 * with a message (out of memory). */
static bool op_load(NnqNet *net, const NnqModelFile *mf, const NnqValueShape *shapes, int i, char *err,
                    size_t errlen) {
    const NnqModelOp *mo = &net->a->ops[i];
    NetOp *op = &net->ops[i];
    op->op = mo->op;
    op->in[0] = mo->in[0], op->in[1] = mo->in[1];
    op->g = nnq_model_op_geometry(mf, shapes, i);
    const NnqModelTensor *t0 = nnq_infer_op_tensors(mo->op) ? tensor_of(mf, mo, 0) : NULL;
    switch (mo->op) {
    case NNQ_INFER_DENSE:
        return mat_init(&op->m, t0, t0->dims[1], op->g.c, true, net->mode, &net->weight_bytes) ||
               (set_err(err, errlen, "out of memory"), false);
    case NNQ_INFER_CONV2D:
    case NNQ_INFER_DWCONV2D:
        return mat_init(&op->m, t0, t0->dims[0], nnq_model_count(t0) / t0->dims[0], false, net->mode,
                        &net->weight_bytes) ||
               (set_err(err, errlen, "out of memory"), false);
    case NNQ_INFER_BIAS:
        if (t0->nlabels) { /* a quantized bias: decoded (C values) */
            op->t0 = op->own = malloc((size_t)op->g.c * sizeof(float));
            if (!op->own) return set_err(err, errlen, "out of memory"), false;
            for (int64_t c = 0; c < op->g.c; c++) op->own[c] = nnq_model_value(t0, c);
        } else {
            op->t0 = t0->values;
        }
        net->weight_bytes += op->g.c * 4;
        return true;
    case NNQ_INFER_BATCHNORM: {
        const NnqModelTensor *var = tensor_of(mf, mo, 1);
        op->t0 = t0->values;
        op->inv = malloc((size_t)op->g.c * sizeof(float));
        if (!op->inv) return set_err(err, errlen, "out of memory"), false;
        for (int64_t c = 0; c < op->g.c; c++) op->inv[c] = 1.0f / sqrtf(var->values[c] + 1e-5f);
        net->weight_bytes += op->g.c * 8;
        return true;
    }
    case NNQ_INFER_FLATTEN: /* the channel ops see a flat value as F channels */
        op->g.c = op->g.dims[0], op->g.h = op->g.w = 1;
        return true;
    default: /* relu, pools, add */
        return true;
    }
}

static int64_t dims_size(int rank, const int64_t *d) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= d[k];
    return n;
}

/* One pass instead of two or three over a value: a bias read only by the batch norm
 * after it goes into that batch norm, a relu into the bias, batch norm or add before it
 * when it is that value's only reader. The ops are then renumbered (net->nops shrinks;
 * readers of a dropped op's value read the op that took it). Results are unchanged:
 * the fused loops do the same float operations in the same order. */
static void fuse_chan_ops(NnqNet *net) {
    int nv = net->nops + 1;
    int *readers = calloc((size_t)nv, sizeof *readers), *map = malloc((size_t)nv * sizeof *map);
    int *renum = calloc((size_t)nv, sizeof *renum);
    bool *dead = calloc((size_t)nv, sizeof *dead);
    if (!readers || !map || !dead || !renum) { /* no fusion: the ops run as they are */
        free(readers), free(map), free(dead), free(renum);
        return;
    }
    for (int i = 0; i < net->nops; i++)
        for (int k = 0; k < nnq_infer_op_inputs(net->ops[i].op); k++) readers[net->ops[i].in[k]]++;
    for (int v = 0; v < nv; v++) map[v] = v;
    for (int i = 0; i < net->nops; i++) {
        NetOp *op = &net->ops[i];
        int v = map[op->in[0]], j = v - 1; /* the op that defines its input */
        NetOp *src = j >= 0 ? &net->ops[j] : NULL;
        if (op->op == NNQ_INFER_BATCHNORM && src && src->op == NNQ_INFER_BIAS && !src->relu && readers[v] == 1) {
            op->bias = src->t0, op->in[0] = src->in[0];
            op->own = src->own, src->own = NULL; /* a decoded quantized bias goes with it */
            dead[j] = true;
        } else if (op->op == NNQ_INFER_RELU && src && !src->relu && readers[v] == 1 &&
                   (src->op == NNQ_INFER_BIAS || src->op == NNQ_INFER_BATCHNORM || src->op == NNQ_INFER_ADD)) {
            src->relu = true;
            dead[i] = true;
            map[i + 1] = v; /* its readers read the op that took it */
        }
    }
    /* renumber: live op i becomes op n, value i + 1 value n + 1 */
    int n = 0;
    for (int i = 0; i < net->nops; i++) {
        if (dead[i]) continue;
        NetOp op = net->ops[i];
        for (int k = 0; k < nnq_infer_op_inputs(op.op); k++) op.in[k] = renum[map[op.in[k]]];
        renum[i + 1] = n + 1;
        net->size[n + 1] = net->size[i + 1];
        net->ops[n++] = op;
    }
    for (int i = 0; i < net->nops; i++) /* a dropped op's value: that of the op it went into */
        if (dead[i] && map[i + 1] != i + 1) renum[i + 1] = renum[map[i + 1]];
    net->out = renum[map[net->out]];
    net->nops = n;
    free(readers), free(map), free(dead), free(renum);
}

int nnq_slot_take(int64_t *slot_size, const bool *busy, int *nslots, int64_t need) {
    /* the smallest free slot that is large enough, else the largest free one */
    int best = -1;
    for (int s = 0; s < *nslots; s++) {
        if (busy[s]) continue;
        int64_t have = slot_size[s], cur = best < 0 ? -1 : slot_size[best];
        bool fits = have >= need, cur_fits = cur >= need;
        if (best < 0 || (fits && (!cur_fits || have < cur)) || (!fits && !cur_fits && have > cur)) best = s;
    }
    if (best < 0) best = (*nslots)++, slot_size[best] = 0;
    if (slot_size[best] < need) slot_size[best] = need;
    return best;
}

/* Buffers shared by lifetime: value v takes a free slot as large as it needs (or the
 * largest free one, grown), and its inputs' slots are freed after their last reader. */
static bool plan_slots(NnqNet *net) {
    int nv = net->nops + 1;
    int *last = calloc((size_t)nv, sizeof *last);
    bool *busy = calloc((size_t)nv, sizeof *busy);
    net->slot = malloc((size_t)nv * sizeof *net->slot);
    net->slot_size = calloc((size_t)nv, sizeof *net->slot_size);
    if (!last || !busy || !net->slot || !net->slot_size) {
        free(last), free(busy);
        return false;
    }
    for (int i = 0; i < net->nops; i++)
        for (int k = 0; k < nnq_infer_op_inputs(net->ops[i].op); k++) last[net->ops[i].in[k]] = i;
    last[net->out] = net->nops; /* the logits outlive the ops */
    for (int v = 0; v < nv; v++) {
        int best = nnq_slot_take(net->slot_size, busy, &net->nslots, net->size[v]);
        busy[best] = true;
        net->slot[v] = best;
        if (v > 0) /* op v - 1 has run: free the inputs it read last */
            for (int k = 0; k < nnq_infer_op_inputs(net->ops[v - 1].op); k++) {
                int in = net->ops[v - 1].in[k];
                if (last[in] == v - 1) busy[net->slot[in]] = false;
            }
    }
    free(last), free(busy);
    net->buf = calloc((size_t)net->nslots, sizeof *net->buf);
    if (!net->buf) return false;
    for (int s = 0; s < net->nslots; s++)
        if (!(net->buf[s] = malloc((size_t)(net->slot_size[s] * net->chunk) * sizeof(float)))) return false;
    return true;
}

NnqNet *nnq_net_new(const NnqModelFile *mf, NnqNetMode mode, char *err, size_t errlen) {
    const NnqModelArch *a = mf->arch;
    if (!a) {
        set_err(err, errlen, "model '%s' is a version-%u file: it holds no architecture; save it again with this nnqc",
                mf->model, mf->version);
        return NULL;
    }
    if (!rt_blas_runs_here(err, errlen)) return NULL;
    NnqValueShape *shapes = NULL; /* each value's, from nnq_model_shapes */
    NnqNet *net = calloc(1, sizeof *net);
    if (!net) return set_err(err, errlen, "out of memory"), NULL;
    net->mode = mode, net->a = a, net->nops = a->nops, net->out = a->nops;
    net->k = kernels_pick();
    net->ops = calloc((size_t)a->nops, sizeof *net->ops);
    net->size = calloc((size_t)a->nops + 1, sizeof *net->size);
    if (!net->ops || !net->size) goto oom;
    net->in_size = net->size[0] = dims_size(a->input_rank, a->input_dims);
    net->chan_size = a->norm_channels ? net->in_size / a->norm_channels : net->in_size;
    net->na = malloc(2 * (size_t)(a->norm_channels + 1) * sizeof(double));
    if (!net->na) goto oom;
    net->nb = net->na + a->norm_channels + 1;
    for (int c = 0; c < a->norm_channels; c++) { /* as runtime/data.c's nnq_rt_data_normalize */
        net->na[c] = 1.0 / a->norm_scale[c];
        net->nb[c] = (0.0 - a->norm_shift[c]) / a->norm_scale[c];
    }
    int64_t scratch = 0, idx = 0, largest = net->in_size;
    shapes = malloc((size_t)(a->nops + 1) * sizeof *shapes);
    if (!shapes) goto oom;
    if (nnq_model_shapes(mf, shapes, err, errlen)) goto fail;
    for (int i = 0; i < a->nops; i++) {
        if (!op_load(net, mf, shapes, i, err, errlen)) goto fail;
        NetOp *op = &net->ops[i];
        net->size[i + 1] = dims_size(op->g.rank, op->g.dims);
        if (net->size[i + 1] > NET_MAX_VALUE || net->in_size > NET_MAX_VALUE) {
            set_err(err, errlen, "model '%s': op %d (%s) gives %lld values per sample, more than this engine's %lld",
                    mf->model, i, nnq_infer_op_name(op->op), (long long)net->size[i + 1], (long long)NET_MAX_VALUE);
            goto fail;
        }
        if (net->size[i + 1] > largest) largest = net->size[i + 1];
        if (op->m.pack != PACK_NONE && op->m.rows * op->m.cols > scratch) scratch = op->m.rows * op->m.cols;
        if (op->m.rows) /* dense, conv: rows x cols products per output position */
            net->flops += 2.0 * (double)op->m.rows * (double)op->m.cols *
                          (double)(op->op == NNQ_INFER_DENSE ? 1 : op->g.dims[1] * op->g.dims[2]);
    }
    free(shapes);
    shapes = NULL;
    net->chunk = NET_CHUNK_FLOATS / largest;
    net->chunk = net->chunk < 1 ? 1 : net->chunk > NET_CHUNK ? NET_CHUNK : net->chunk;
    for (int i = 0; i < a->nops; i++)
        if (net->ops[i].op == NNQ_INFER_MAXPOOL && net->size[i + 1] * net->chunk > idx) idx = net->size[i + 1] * net->chunk;
    const NetOp *last = &net->ops[a->nops - 1];
    if (last->g.rank != 1 || last->g.dims[0] != a->classes) {
        set_err(err, errlen, "model '%s': the last op gives %lld values per sample, not the %d classes", mf->model,
                (long long)net->size[a->nops], a->classes);
        goto fail;
    }
    net->scratch_floats = scratch, net->idx_ints = idx;
    fuse_chan_ops(net);
    if ((scratch && !(net->scratch = malloc((size_t)scratch * sizeof(float)))) ||
        (idx && !(net->idx = malloc((size_t)idx * sizeof(int32_t)))) || !plan_slots(net))
        goto oom;
    return net;
oom:
    set_err(err, errlen, "out of memory loading model '%s'", mf->model);
fail:
    free(shapes);
    nnq_net_free(net);
    return NULL;
}

int nnq_net_run(NnqNet *net, const float *raw, int64_t n, float *logits, char *err, size_t errlen) {
    int32_t classes = net->a->classes;
    for (int64_t s0 = 0; s0 < n; s0 += net->chunk) {
        int64_t m = n - s0 < net->chunk ? n - s0 : net->chunk;
        float *x = net->buf[net->slot[0]];
        const float *r = raw + s0 * net->in_size;
        int nc = net->a->norm_channels;
        if (!nc) memcpy(x, r, (size_t)(m * net->in_size) * sizeof(float));
        for (int64_t p = 0; nc && p < m * nc; p++) { /* sample p / nc, channel p % nc */
            double a = net->na[p % nc], b = net->nb[p % nc];
            for (int64_t i = p * net->chan_size; i < (p + 1) * net->chan_size; i++) x[i] = (float)(r[i] * a + b);
        }
        for (int i = 0; i < net->nops; i++) op_run(net, i, m);
        memcpy(logits + s0 * classes, net->buf[net->slot[net->out]], (size_t)(m * classes) * sizeof(float));
    }
    (void)err, (void)errlen;
    return 0;
}

int64_t nnq_net_input_size(const NnqNet *net) { return net->in_size; }
int32_t nnq_net_classes(const NnqNet *net) { return net->a->classes; }
int64_t nnq_net_weight_bytes(const NnqNet *net) { return net->weight_bytes; }
double nnq_net_flops(const NnqNet *net) { return net->flops; }

void nnq_net_free(NnqNet *net) {
    if (!net) return;
    if (net->ops)
        for (int i = 0; i < net->nops; i++) {
            free(net->ops[i].m.f_own);
            free(net->ops[i].m.w);
            free(net->ops[i].inv);
            free(net->ops[i].own);
        }
    if (net->buf)
        for (int s = 0; s < net->nslots; s++) free(net->buf[s]);
    free(net->buf);
    free(net->slot);
    free(net->slot_size);
    free(net->ops);
    free(net->size);
    free(net->na);
    free(net->scratch);
    free(net->idx);
    free(net);
}
