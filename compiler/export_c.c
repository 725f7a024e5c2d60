/* export_c.c — nnqc export --format c: a trained model as plain C99 source, DIR/P.h and
 * DIR/P.c (docs/deploy.md, "Exporting C"), that computes what the inference engine
 * (runtime/infer.c) computes, one sample at a time, with no library, no heap and no
 * writable global.
 *
 * Requires: a version-2 model file (its architecture record), label tensors read with
 * NNQ_MODEL_PACKED or decoded; runs inside nnq_run_invoke (errors: nnq_rt_fail, before
 * anything is written). Provides: export_c, export_c_name_ok.
 *
 * The generated code, and the invariants this file keeps:
 *  - P_predict(in, logits, scratch) normalizes the raw sample as the engine does, x =
 *    (float)(raw * (1 / scale[c]) + (-shift[c] / scale[c])) in double (both constants
 *    computed here as the engine computes them), runs the ops in the record's order and
 *    returns the class of the first largest logit.
 *  - A quantized dense or convolution weight is stored as rows of label indices, `bits`
 *    each (the model file's: 1 for 2 labels, 2 for 3 or 4, ...), least significant bit
 *    first, in uint32_t words; each row starts on a word. Row o of a dense layer is the
 *    column w[:, o] of its [K, O] weight; row o of a convolution is filter o as stored.
 *    A dense layer computes straight from the indices (y[o] += labels[index] x[k]); a
 *    convolution decodes one filter at a time into a row of the scratch area. Float
 *    weights are float arrays (a dense layer's transposed to [O, K]). Sums run by
 *    blocks (32 inputs of a dense layer; a row, then a channel of a filter) and then
 *    over the blocks, which keeps the logits within about 1e-5 of the engine's. 
 *  - Every float constant is a hexadecimal literal, so it is the model's value bit for
 *    bit; batch norm's 1/sqrt(var + 1e-5) is computed here in float, as the engine does.
 *  - Activations live in the caller's scratch, in slots shared by lifetime (as
 *    infer.c's plan_slots): flatten is the same buffer as its input; bias, batchnorm,
 *    relu and add write over an input that is not read after them; the ops whose value
 *    becomes the logits write into the caller's logits array. Without normalization
 *    the first ops read the caller's input directly.
 *  - Only the kernels the model uses are emitted (the generated file compiles under
 *    -Wall -Wextra -Werror -pedantic); they call no function outside the file
 *    (tests/e2e/export_c.sh checks the object file has no undefined symbol). */
#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy.h"
#include "nnq_infer.h"

/* ---- the kernels of the generated code: one row each, emitted when used ---- */

typedef enum CKernel {
    CK_INDEX_AT, CK_DECODE_ROW, CK_CONV_PLANE, CK_NORMALIZE, CK_DENSE_Q, CK_DENSE_F, CK_CONV2D_Q,
    CK_CONV2D_F, CK_DWCONV2D_Q, CK_DWCONV2D_F, CK_BIAS, CK_BATCHNORM, CK_RELU, CK_MAXPOOL, CK_AVGPOOL,
    CK_ADD, CK_ARGMAX, CK_COUNT
} CKernel;

#define DEP(k) (1u << (k))

/* Each kernel: the kernels it calls (which come before it) and its source. */
static const struct {
    const char *name;
    unsigned deps;
    const char *src;
} ckernels[CK_COUNT] = {
    [CK_INDEX_AT] = {"index_at", 0,
        "/* Label index number k of a packed row: `bits` bits from bit k * bits, least\n"
        " * significant first (bit b of the row is bit b % 32 of word b / 32); an index may\n"
        " * straddle two words. */\n"
        "static unsigned index_at(const uint32_t *row, long k, int bits)\n"
        "{\n"
        "    unsigned long bit = (unsigned long)k * (unsigned long)bits;\n"
        "    unsigned off = (unsigned)(bit % 32u);\n"
        "    uint32_t v = row[bit / 32u] >> off;\n"
        "    if (off + (unsigned)bits > 32u)\n"
        "        v |= row[bit / 32u + 1u] << (32u - off);\n"
        "    return (unsigned)(v & ((1u << bits) - 1u));\n"
        "}\n"},
    [CK_DECODE_ROW] = {"decode_row", DEP(CK_INDEX_AT),
        "/* The n weights of a packed row as floats. */\n"
        "static void decode_row(const uint32_t *row, long n, int bits, const float *labels, float *out)\n"
        "{\n"
        "    for (long k = 0; k < n; k++)\n"
        "        out[k] = labels[index_at(row, k, bits)];\n"
        "}\n"},
    [CK_CONV_PLANE] = {"conv_plane", 0,
        "/* One output plane of a convolution with filter f [C, k, k]: y[oh, ow] = sum over\n"
        " * c, i, j of f[c, i, j] x[c, oh*s - p + i, ow*s - p + j], x zero outside H x W\n"
        " * (i in [i0, i1), j in [j0, j1): the window's part inside the input); summed by\n"
        " * rows of the filter, the rows by channel, then the channels. */\n"
        "static void conv_plane(const float *x, const float *f, float *y, long C, long H, long W, long k,\n"
        "                       long s, long p)\n"
        "{\n"
        "    long OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;\n"
        "    for (long oh = 0; oh < OH; oh++) {\n"
        "        long top = oh * s - p;\n"
        "        long i0 = top < 0 ? -top : 0, i1 = H - top < k ? H - top : k;\n"
        "        for (long ow = 0; ow < OW; ow++) {\n"
        "            long left = ow * s - p;\n"
        "            long j0 = left < 0 ? -left : 0, j1 = W - left < k ? W - left : k;\n"
        "            float acc = 0.0f;\n"
        "            for (long c = 0; c < C; c++) {\n"
        "                float part = 0.0f;\n"
        "                for (long i = i0; i < i1; i++) {\n"
        "                    const float *fr = f + (c * k + i) * k;\n"
        "                    long xr = (c * H + top + i) * W + left;\n"
        "                    float row = 0.0f;\n"
        "                    for (long j = j0; j < j1; j++)\n"
        "                        row += fr[j] * x[xr + j];\n"
        "                    part += row;\n"
        "                }\n"
        "                acc += part;\n"
        "            }\n"
        "            y[oh * OW + ow] = acc;\n"
        "        }\n"
        "    }\n"
        "}\n"},
    [CK_NORMALIZE] = {"normalize", 0,
        "/* The model's input from a raw sample, as in training: x = raw * a[c] + b[c] in\n"
        " * double (a = 1 / scale, b = -shift / scale), c the channel of S values. */\n"
        "static void normalize(const float *raw, float *x, long C, long S, const double *a, const double *b)\n"
        "{\n"
        "    for (long c = 0; c < C; c++)\n"
        "        for (long i = 0; i < S; i++)\n"
        "            x[c * S + i] = (float)((double)raw[c * S + i] * a[c] + b[c]);\n"
        "}\n"},
    [CK_DENSE_Q] = {"dense_q", DEP(CK_INDEX_AT),
        "/* y[o] = sum over k of w[k, o] x[k], straight from the packed row o of w (the label\n"
        " * of each index), summed by blocks of 32 (a sum per block, then the block sums). */\n"
        "static void dense_q(const float *x, float *y, long K, long O, const uint32_t *w, long words, int bits,\n"
        "                    const float *labels)\n"
        "{\n"
        "    for (long o = 0; o < O; o++) {\n"
        "        const uint32_t *row = w + o * words;\n"
        "        float acc = 0.0f;\n"
        "        for (long k0 = 0; k0 < K; k0 += 32) {\n"
        "            long k1 = K - k0 < 32 ? K : k0 + 32;\n"
        "            float block = 0.0f;\n"
        "            for (long k = k0; k < k1; k++)\n"
        "                block += labels[index_at(row, k, bits)] * x[k];\n"
        "            acc += block;\n"
        "        }\n"
        "        y[o] = acc;\n"
        "    }\n"
        "}\n"},
    [CK_DENSE_F] = {"dense_f", 0,
        "/* y[o] = sum over k of w[o, k] x[k] (float weights, stored [O, K]), summed by blocks\n"
        " * of 32. */\n"
        "static void dense_f(const float *x, float *y, long K, long O, const float *w)\n"
        "{\n"
        "    for (long o = 0; o < O; o++) {\n"
        "        const float *row = w + o * K;\n"
        "        float acc = 0.0f;\n"
        "        for (long k0 = 0; k0 < K; k0 += 32) {\n"
        "            long k1 = K - k0 < 32 ? K : k0 + 32;\n"
        "            float block = 0.0f;\n"
        "            for (long k = k0; k < k1; k++)\n"
        "                block += row[k] * x[k];\n"
        "            acc += block;\n"
        "        }\n"
        "        y[o] = acc;\n"
        "    }\n"
        "}\n"},
    [CK_CONV2D_Q] = {"conv2d_q", DEP(CK_DECODE_ROW) | DEP(CK_CONV_PLANE),
        "/* Convolution of x [C, H, W] with O packed filters [C, k, k], stride s, zero\n"
        " * padding p: each filter is decoded into row (C k k floats), then its plane computed. */\n"
        "static void conv2d_q(const float *x, float *y, long C, long H, long W, long O, long k, long s, long p,\n"
        "                     const uint32_t *w, long words, int bits, const float *labels, float *row)\n"
        "{\n"
        "    long plane = ((H + 2 * p - k) / s + 1) * ((W + 2 * p - k) / s + 1);\n"
        "    for (long o = 0; o < O; o++) {\n"
        "        decode_row(w + o * words, C * k * k, bits, labels, row);\n"
        "        conv_plane(x, row, y + o * plane, C, H, W, k, s, p);\n"
        "    }\n"
        "}\n"},
    [CK_CONV2D_F] = {"conv2d_f", DEP(CK_CONV_PLANE),
        "/* Convolution of x [C, H, W] with O float filters w [O, C, k, k], stride s, zero\n"
        " * padding p. */\n"
        "static void conv2d_f(const float *x, float *y, long C, long H, long W, long O, long k, long s, long p,\n"
        "                     const float *w)\n"
        "{\n"
        "    long plane = ((H + 2 * p - k) / s + 1) * ((W + 2 * p - k) / s + 1);\n"
        "    for (long o = 0; o < O; o++)\n"
        "        conv_plane(x, w + o * C * k * k, y + o * plane, C, H, W, k, s, p);\n"
        "}\n"},
    [CK_DWCONV2D_Q] = {"dwconv2d_q", DEP(CK_DECODE_ROW) | DEP(CK_CONV_PLANE),
        "/* Depthwise convolution: channel c of x [C, H, W] with packed filter c [k, k]\n"
        " * (decoded into row), stride s, zero padding p. */\n"
        "static void dwconv2d_q(const float *x, float *y, long C, long H, long W, long k, long s, long p,\n"
        "                       const uint32_t *w, long words, int bits, const float *labels, float *row)\n"
        "{\n"
        "    long plane = ((H + 2 * p - k) / s + 1) * ((W + 2 * p - k) / s + 1);\n"
        "    for (long c = 0; c < C; c++) {\n"
        "        decode_row(w + c * words, k * k, bits, labels, row);\n"
        "        conv_plane(x + c * H * W, row, y + c * plane, 1, H, W, k, s, p);\n"
        "    }\n"
        "}\n"},
    [CK_DWCONV2D_F] = {"dwconv2d_f", DEP(CK_CONV_PLANE),
        "/* Depthwise convolution: channel c of x [C, H, W] with float filter w[c] [k, k],\n"
        " * stride s, zero padding p. */\n"
        "static void dwconv2d_f(const float *x, float *y, long C, long H, long W, long k, long s, long p,\n"
        "                       const float *w)\n"
        "{\n"
        "    long plane = ((H + 2 * p - k) / s + 1) * ((W + 2 * p - k) / s + 1);\n"
        "    for (long c = 0; c < C; c++)\n"
        "        conv_plane(x + c * H * W, w + c * k * k, y + c * plane, 1, H, W, k, s, p);\n"
        "}\n"},
    [CK_BIAS] = {"bias", 0,
        "/* y[c, i] = x[c, i] + b[c], C channels of S values (y may be x). */\n"
        "static void bias(const float *x, float *y, long C, long S, const float *b)\n"
        "{\n"
        "    for (long c = 0; c < C; c++)\n"
        "        for (long i = 0; i < S; i++)\n"
        "            y[c * S + i] = x[c * S + i] + b[c];\n"
        "}\n"},
    [CK_BATCHNORM] = {"batchnorm", 0,
        "/* y[c, i] = (x[c, i] - mean[c]) * inv[c], inv = 1 / sqrt(var + 1e-5) computed by the\n"
        " * exporter, C channels of S values (y may be x). */\n"
        "static void batchnorm(const float *x, float *y, long C, long S, const float *mean, const float *inv)\n"
        "{\n"
        "    for (long c = 0; c < C; c++)\n"
        "        for (long i = 0; i < S; i++)\n"
        "            y[c * S + i] = (x[c * S + i] - mean[c]) * inv[c];\n"
        "}\n"},
    [CK_RELU] = {"relu", 0,
        "/* y = max(x, 0) (y may be x). */\n"
        "static void relu(const float *x, float *y, long n)\n"
        "{\n"
        "    for (long i = 0; i < n; i++)\n"
        "        y[i] = x[i] > 0.0f ? x[i] : 0.0f;\n"
        "}\n"},
    [CK_MAXPOOL] = {"maxpool", 0,
        "/* y[c, oh, ow] = max of the k x k window of x [C, H, W] at (oh*s, ow*s). */\n"
        "static void maxpool(const float *x, float *y, long C, long H, long W, long k, long s)\n"
        "{\n"
        "    long OH = (H - k) / s + 1, OW = (W - k) / s + 1;\n"
        "    for (long c = 0; c < C; c++)\n"
        "        for (long oh = 0; oh < OH; oh++)\n"
        "            for (long ow = 0; ow < OW; ow++) {\n"
        "                const float *win = x + (c * H + oh * s) * W + ow * s;\n"
        "                float m = win[0];\n"
        "                for (long i = 0; i < k; i++)\n"
        "                    for (long j = 0; j < k; j++)\n"
        "                        if (win[i * W + j] > m)\n"
        "                            m = win[i * W + j];\n"
        "                y[(c * OH + oh) * OW + ow] = m;\n"
        "            }\n"
        "}\n"},
    [CK_AVGPOOL] = {"avgpool", 0,
        "/* y[c, oh, ow] = mean of the k x k window of x [C, H, W] at (oh*s, ow*s): the sum\n"
        " * times 1 / (k k). */\n"
        "static void avgpool(const float *x, float *y, long C, long H, long W, long k, long s)\n"
        "{\n"
        "    long OH = (H - k) / s + 1, OW = (W - k) / s + 1;\n"
        "    float scale = 1.0f / (float)(k * k);\n"
        "    for (long c = 0; c < C; c++)\n"
        "        for (long oh = 0; oh < OH; oh++)\n"
        "            for (long ow = 0; ow < OW; ow++) {\n"
        "                const float *win = x + (c * H + oh * s) * W + ow * s;\n"
        "                float sum = 0.0f;\n"
        "                for (long i = 0; i < k; i++)\n"
        "                    for (long j = 0; j < k; j++)\n"
        "                        sum += win[i * W + j];\n"
        "                y[(c * OH + oh) * OW + ow] = sum * scale;\n"
        "            }\n"
        "}\n"},
    [CK_ADD] = {"add", 0,
        "/* y = a + b (y may be a or b). */\n"
        "static void add(const float *a, const float *b, float *y, long n)\n"
        "{\n"
        "    for (long i = 0; i < n; i++)\n"
        "        y[i] = a[i] + b[i];\n"
        "}\n"},
    [CK_ARGMAX] = {"argmax", 0,
        "/* The class of the first largest of n logits. */\n"
        "static int argmax(const float *v, int n)\n"
        "{\n"
        "    int best = 0;\n"
        "    for (int c = 1; c < n; c++)\n"
        "        if (v[c] > v[best])\n"
        "            best = c;\n"
        "    return best;\n"
        "}\n"},
};

/* ---- the model: shapes, weights, buffers ---- */

typedef struct XOp {
    const NnqModelOp *mo;
    NnqOpGeometry g;     /* output, input (channels and H x W), window or filter */
    int64_t size;        /* floats of the output */
    CKernel kernel;      /* CK_COUNT: flatten, no kernel */
    const char *data[3]; /* weights (packed or float) or bias/mean, labels or inv */
} XOp;

/* Where a buffer group lives: the caller's input, the caller's logits, or a slot. */
enum { AT_IN = -1, AT_OUT = -2, AT_NONE = -3 };

typedef struct Export {
    NnqRun *run;
    const NnqModelFile *mf;
    const NnqModelArch *a;
    int nops;
    XOp *ops;            /* [nops] */
    int64_t *size;       /* [nops + 1] floats of each value, value 0 the input */
    int *root;           /* [nops + 1] the value that starts the buffer a value lives in */
    int *last;           /* [nops + 1] a group root: the last op reading any of its values */
    int *at;             /* [nops + 1] a group root: AT_IN, AT_OUT or its slot */
    int64_t *slot_size, *slot_off; /* [nops + 1] floats */
    int nslots;
    int64_t row_floats, row_off, scratch_bytes;
    unsigned used;       /* DEP(kernel) of the kernels used */
    char **names;        /* identifiers taken in the generated file */
    int nnames;
    int64_t flash;       /* bytes of const data */
    FILE *out;           /* the .c text being written */
} Export;

static const char *op_name(const XOp *op) { return nnq_infer_op_name(op->mo->op); }

static const NnqModelTensor *op_tensor(const Export *x, const XOp *op, int k) {
    return &x->mf->tensors[op->mo->tensor[k]];
}

/* Batch norm's 1 / sqrt(var + 1e-5), as infer.c computes it. */
static float get_inv(const NnqModelTensor *t, int64_t i, void *ctx) {
    (void)ctx;
    return 1.0f / sqrtf(t->values[i] + 1e-5f);
}

_Noreturn static void op_fail(const Export *x, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn static void op_fail(const Export *x, int i, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nnq_rt_fail(x->run, "model '%s': op %d (%s): %s", x->mf->model, i, nnq_infer_op_name(x->a->ops[i].op), msg);
}

/* Op i's geometry from the value shapes (nnq_model_shapes: the engine's checks), its
 * kernel, and the finite constants its hexadecimal literals need. */
static void op_shape(Export *x, const NnqValueShape *shapes, int i) {
    XOp *op = &x->ops[i];
    const NnqModelOp *mo = op->mo = &x->a->ops[i];
    op->g = nnq_model_op_geometry(x->mf, shapes, i);
    const NnqModelTensor *t0 = nnq_infer_op_tensors(mo->op) ? op_tensor(x, op, 0) : NULL;
    bool packed = t0 && t0->nlabels;
    switch (mo->op) {
    case NNQ_INFER_DENSE: op->kernel = packed ? CK_DENSE_Q : CK_DENSE_F; break;
    case NNQ_INFER_CONV2D:
    case NNQ_INFER_DWCONV2D: {
        bool dw = mo->op == NNQ_INFER_DWCONV2D;
        op->kernel = dw ? (packed ? CK_DWCONV2D_Q : CK_DWCONV2D_F) : (packed ? CK_CONV2D_Q : CK_CONV2D_F);
        int64_t row = nnq_model_count(t0) / t0->dims[0];
        if (packed && row > x->row_floats) x->row_floats = row;
        break;
    }
    case NNQ_INFER_MAXPOOL: op->kernel = CK_MAXPOOL; break;
    case NNQ_INFER_AVGPOOL: op->kernel = CK_AVGPOOL; break;
    case NNQ_INFER_BIAS: op->kernel = CK_BIAS; break;
    case NNQ_INFER_BATCHNORM: op->kernel = CK_BATCHNORM; break;
    case NNQ_INFER_RELU: op->kernel = CK_RELU; break;
    case NNQ_INFER_ADD: op->kernel = CK_ADD; break;
    case NNQ_INFER_FLATTEN: op->kernel = CK_COUNT; break;
    default: op_fail(x, i, "unknown op");
    }
    op->size = op->g.dims[0] * (op->g.rank == 3 ? op->g.dims[1] * op->g.dims[2] : 1);
    for (int k = 0; k < nnq_infer_op_tensors(mo->op); k++) { /* hexadecimal literals: finite values only */
        const NnqModelTensor *t = op_tensor(x, op, k);
        bool inv = mo->op == NNQ_INFER_BATCHNORM && k == 1;
        for (int64_t e = 0; e < nnq_model_count(t) && !t->nlabels; e++)
            if (!isfinite(inv ? get_inv(t, e, NULL) : t->values[e]))
                op_fail(x, i, "tensor '%s' %s not finite", t->name,
                        inv ? "gives a 1 / sqrt(var + 1e-5) that is" : "holds a value that is");
    }
}

/* Elementwise ops may write over an input (the kernels allow y == x). */
static bool op_in_place(NnqInferOp op) {
    return op == NNQ_INFER_BIAS || op == NNQ_INFER_BATCHNORM || op == NNQ_INFER_RELU || op == NNQ_INFER_ADD;
}

/* Buffer groups and slots. A group is the values that share one buffer: a value, the
 * flattens of it and the elementwise ops that write over it. A group lives from its
 * first value's op to the last op reading any of its values; groups take slots as
 * infer.c's plan_slots does, through nnq_slot_take (the smallest free slot that is large
 * enough, else the largest free one, grown). The group of the last value is the caller's
 * logits. */
static void plan_buffers(Export *x) {
    int nv = x->nops + 1;
    int *vlast = nnq_rt_alloc(x->run, nv * (int64_t)sizeof(int));
    for (int v = 0; v < nv; v++) vlast[v] = -1, x->at[v] = AT_NONE;
    for (int i = 0; i < x->nops; i++)
        for (int k = 0; k < nnq_infer_op_inputs(x->ops[i].mo->op); k++) vlast[x->ops[i].mo->in[k]] = i;
    vlast[nv - 1] = x->nops; /* the logits outlive the ops */
    bool normalized = x->a->norm_channels > 0;
    x->root[0] = 0, x->last[0] = vlast[0];
    for (int i = 0; i < x->nops; i++) {
        int v = i + 1;
        const NnqModelOp *mo = x->ops[i].mo;
        x->root[v] = v;
        if (mo->op == NNQ_INFER_FLATTEN) {
            x->root[v] = x->root[mo->in[0]];
        } else if (op_in_place(mo->op)) {
            for (int k = 0; k < nnq_infer_op_inputs(mo->op) && x->root[v] == v; k++) {
                int r = x->root[mo->in[k]];
                if (x->last[r] == i && (r != 0 || normalized)) x->root[v] = r;
            }
        }
        int r = x->root[v];
        x->last[r] = r == v ? vlast[v] : (vlast[v] > x->last[r] ? vlast[v] : x->last[r]);
    }
    int out = x->root[nv - 1];
    if (out == 0 && !normalized)
        nnq_rt_fail(x->run, "model '%s': its logits are its input unchanged; there is nothing to export", x->mf->model);
    x->at[out] = AT_OUT;
    if (!normalized) x->at[0] = AT_IN;
    bool *busy = nnq_rt_alloc(x->run, 2 * (int64_t)nv), *live = busy + nv; /* slots; groups holding one */
    memset(busy, 0, 2 * (size_t)nv);
    for (int v = 0; v < nv; v++) {
        if (x->root[v] == v && x->at[v] == AT_NONE) { /* a group starts: take a slot */
            int best = nnq_slot_take(x->slot_size, busy, &x->nslots, x->size[v]);
            busy[best] = live[v] = true;
            x->at[v] = best;
        }
        /* op v - 1 has run (value 0: none): free the groups no later op reads */
        for (int r = 0; r <= v; r++)
            if (live[r] && x->last[r] <= v - 1) live[r] = busy[x->at[r]] = false;
    }
    int64_t off = 0;
    for (int s = 0; s < x->nslots; s++) x->slot_off[s] = off, off += (x->slot_size[s] + 3) / 4 * 4;
    x->row_off = off;
    off += (x->row_floats + 3) / 4 * 4;
    x->scratch_bytes = off ? off * 4 : 16;
}

/* ---- writing ---- */

static void put(Export *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Export *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(x->out, fmt, ap);
    va_end(ap);
}

/* An identifier not yet taken in the generated file: s with every character that
 * cannot be in one as '_', then _2, _3, ... while taken. Run-owned. */
static const char *ident(Export *x, const char *s, const char *suffix) {
    size_t n = strlen(s) + strlen(suffix) + 16;
    char *id = nnq_rt_alloc(x->run, (int64_t)n);
    snprintf(id, n, "%s%s%s", isdigit((unsigned char)s[0]) ? "t_" : "", s, suffix);
    for (char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') *p = '_';
    size_t base = strlen(id);
    for (int k = 2;; k++) {
        bool taken = false;
        for (int j = 0; j < x->nnames && !taken; j++) taken = !strcmp(x->names[j], id);
        if (!taken) break;
        snprintf(id + base, n - base, "_%d", k);
    }
    x->names[x->nnames++] = id;
    return id;
}

static void put_float(Export *x, float v) {
    put(x, "%af", (double)v);
}

/* A float array of n values get(t, i). */
static void put_floats(Export *x, const char *id, int64_t n, const char *what, const NnqModelTensor *t,
                       float (*get)(const NnqModelTensor *, int64_t, void *), void *ctx) {
    put(x, "/* %s */\nstatic const float %s[%lld] = {", what, id, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        put(x, "%s", i % 4 ? " " : "\n    ");
        put_float(x, get(t, i, ctx));
        put(x, ",");
    }
    put(x, "\n};\n\n");
    x->flash += 4 * n;
}

static float get_value(const NnqModelTensor *t, int64_t i, void *ctx) {
    (void)ctx;
    return nnq_model_value(t, i);
}

static float get_transposed(const NnqModelTensor *t, int64_t i, void *ctx) { /* [K, O] as [O, K] */
    int64_t K = t->dims[0], O = t->dims[1];
    (void)ctx;
    return nnq_model_value(t, i % K * O + i / K);
}

static float get_label(const NnqModelTensor *t, int64_t i, void *ctx) {
    (void)ctx;
    return t->labels[i];
}

static void tensor_shape(char *buf, size_t n, const NnqModelTensor *t) {
    int len = snprintf(buf, n, "[");
    for (int d = 0; d < t->rank && len < (int)n; d++)
        len += snprintf(buf + len, n - (size_t)len, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (len < (int)n) snprintf(buf + len, n - (size_t)len, "]");
}

/* The weights of dense or convolution op: packed rows and labels, or floats. Rows: a
 * dense layer's column w[:, o], a convolution's filter. */
static void put_weights(Export *x, XOp *op) {
    const NnqModelTensor *t = op_tensor(x, op, 0);
    bool dense = op->mo->op == NNQ_INFER_DENSE;
    int64_t rows = dense ? t->dims[1] : t->dims[0], cols = nnq_model_count(t) / rows;
    char shape[128], what[512];
    tensor_shape(shape, sizeof shape, t);
    if (!t->nlabels) {
        snprintf(what, sizeof what, "%s %s, float%s", t->name, shape, dense ? ", transposed to [O, K]" : "");
        op->data[0] = ident(x, t->name, "");
        put_floats(x, op->data[0], nnq_model_count(t), what, t, dense ? get_transposed : get_value, NULL);
        return;
    }
    int64_t words = (cols * t->bits + 31) / 32;
    op->data[0] = ident(x, t->name, "");
    op->data[1] = ident(x, t->name, "_labels");
    put(x, "/* %s %s: %lld rows of %lld label indices, %d bit%s each, a row in %lld word%s */\n", t->name, shape,
        (long long)rows, (long long)cols, t->bits, t->bits > 1 ? "s" : "", (long long)words, words > 1 ? "s" : "");
    put(x, "static const uint32_t %s[%lld] = {", op->data[0], (long long)(rows * words));
    uint32_t *row = nnq_rt_alloc(x->run, words * 4);
    for (int64_t r = 0; r < rows; r++) {
        memset(row, 0, (size_t)words * 4);
        for (int64_t c = 0; c < cols; c++) {
            int idx = nnq_model_label_index(t, dense ? c * rows + r : r * cols + c);
            uint64_t bit = (uint64_t)c * (uint64_t)t->bits;
            for (int b = 0; b < t->bits; b++, bit++)
                if (idx >> b & 1) row[bit / 32] |= (uint32_t)1 << (bit % 32);
        }
        for (int64_t w = 0; w < words; w++) put(x, "%s0x%08x,", (r * words + w) % 8 ? " " : "\n    ", row[w]);
    }
    put(x, "\n};\n\n");
    x->flash += rows * words * 4;
    snprintf(what, sizeof what, "the labels of %s", t->name);
    put_floats(x, op->data[1], t->nlabels, what, t, get_label, NULL);
}

/* The constants of op i, before the code. */
static void put_op_data(Export *x, int i) {
    XOp *op = &x->ops[i];
    switch (op->mo->op) {
    case NNQ_INFER_DENSE:
    case NNQ_INFER_CONV2D:
    case NNQ_INFER_DWCONV2D:
        put_weights(x, op);
        break;
    case NNQ_INFER_BIAS:
    case NNQ_INFER_BATCHNORM: {
        char what[512];
        bool bn = op->mo->op == NNQ_INFER_BATCHNORM;
        for (int k = 0; k < (bn ? 2 : 1); k++) {
            const NnqModelTensor *t = op_tensor(x, op, k);
            float (*get)(const NnqModelTensor *, int64_t, void *) = k ? get_inv : get_value;
            snprintf(what, sizeof what, k ? "1 / sqrt(%s + 1e-5) in float" : "%s", t->name);
            if (t->nlabels) snprintf(what + strlen(what), sizeof what - strlen(what), " (labels, decoded)");
            op->data[k] = ident(x, t->name, k ? "_inv" : "");
            put_floats(x, op->data[k], t->dims[0], what, t, get, NULL);
        }
        break;
    }
    default:
        break;
    }
}

/* The buffer of value v in P_predict. */
static const char *value_ref(const Export *x, int v, char *buf, size_t n) {
    int at = x->at[x->root[v]];
    if (at == AT_IN) return "in";
    if (at == AT_OUT) return "logits";
    snprintf(buf, n, "buf + %lld", (long long)x->slot_off[at]);
    return buf;
}

static void dims_text(char *buf, size_t n, int rank, const int64_t *d) {
    if (rank == 1) snprintf(buf, n, "[%lld]", (long long)d[0]);
    else snprintf(buf, n, "[%lld, %lld, %lld]", (long long)d[0], (long long)d[1], (long long)d[2]);
}

/* Op i as a call in P_predict. */
static void put_op_call(Export *x, int i) {
    const XOp *op = &x->ops[i];
    const NnqModelOp *mo = op->mo;
    char xb[64], yb[64], bb[64], dims[96];
    const char *in = value_ref(x, mo->in[0], xb, sizeof xb), *y = value_ref(x, i + 1, yb, sizeof yb);
    dims_text(dims, sizeof dims, op->g.rank, op->g.dims);
    put(x, "    /* %%%d = %s %%%d", i + 1, op_name(op), mo->in[0]);
    if (nnq_infer_op_inputs(mo->op) > 1) put(x, ", %%%d", mo->in[1]);
    for (int k = 0; k < nnq_infer_op_tensors(mo->op); k++) put(x, ", @%s", op_tensor(x, op, k)->name);
    for (int k = 0; k < nnq_infer_op_attrs(mo->op); k++) put(x, " %lld", (long long)mo->attr[k]);
    put(x, ": %s */\n", dims);
    long long C = op->g.c, H = op->g.h, W = op->g.w, S = op->g.h * op->g.w, k = op->g.k, s = op->g.stride, p = op->g.pad;
    const NnqModelTensor *t = nnq_infer_op_tensors(mo->op) ? op_tensor(x, op, 0) : NULL;
    long long words = 0;
    if (t && t->nlabels && (mo->op == NNQ_INFER_DENSE || mo->op == NNQ_INFER_CONV2D || mo->op == NNQ_INFER_DWCONV2D)) {
        int64_t rows = mo->op == NNQ_INFER_DENSE ? t->dims[1] : t->dims[0];
        words = (nnq_model_count(t) / rows * t->bits + 31) / 32;
    }
    switch (op->kernel) {
    case CK_DENSE_Q:
        put(x, "    dense_q(%s, %s, %lld, %lld, %s, %lld, %d, %s);\n", in, y, C, (long long)op->g.dims[0], op->data[0],
            words, t->bits, op->data[1]);
        break;
    case CK_DENSE_F:
        put(x, "    dense_f(%s, %s, %lld, %lld, %s);\n", in, y, C, (long long)op->g.dims[0], op->data[0]);
        break;
    case CK_CONV2D_Q:
        put(x, "    conv2d_q(%s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %s, %lld, %d, %s, buf + %lld);\n", in, y,
            C, H, W, (long long)op->g.dims[0], k, s, p, op->data[0], words, t->bits, op->data[1],
            (long long)x->row_off);
        break;
    case CK_CONV2D_F:
        put(x, "    conv2d_f(%s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %s);\n", in, y, C, H, W,
            (long long)op->g.dims[0], k, s, p, op->data[0]);
        break;
    case CK_DWCONV2D_Q:
        put(x, "    dwconv2d_q(%s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %s, %lld, %d, %s, buf + %lld);\n", in, y, C,
            H, W, k, s, p, op->data[0], words, t->bits, op->data[1], (long long)x->row_off);
        break;
    case CK_DWCONV2D_F:
        put(x, "    dwconv2d_f(%s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %s);\n", in, y, C, H, W, k, s, p,
            op->data[0]);
        break;
    case CK_BIAS:
        put(x, "    bias(%s, %s, %lld, %lld, %s);\n", in, y, C, S, op->data[0]);
        break;
    case CK_BATCHNORM:
        put(x, "    batchnorm(%s, %s, %lld, %lld, %s, %s);\n", in, y, C, S, op->data[0], op->data[1]);
        break;
    case CK_RELU:
        put(x, "    relu(%s, %s, %lld);\n", in, y, (long long)op->size);
        break;
    case CK_MAXPOOL:
    case CK_AVGPOOL:
        put(x, "    %s(%s, %s, %lld, %lld, %lld, %lld, %lld);\n", ckernels[op->kernel].name, in, y, C, H, W, k, s);
        break;
    case CK_ADD:
        put(x, "    add(%s, %s, %s, %lld);\n", in, value_ref(x, mo->in[1], bb, sizeof bb), y, (long long)op->size);
        break;
    default: /* flatten: the same buffer */
        assert(mo->op == NNQ_INFER_FLATTEN && x->root[i + 1] == x->root[mo->in[0]]);
        put(x, "    /* (the same buffer) */\n");
        break;
    }
}

static char *upper(NnqRun *run, const char *s) {
    char *u = nnq_rt_alloc(run, (int64_t)strlen(s) + 1);
    for (size_t i = 0;; i++)
        if (!(u[i] = (char)toupper((unsigned char)s[i]))) break;
    return u;
}

/* The text written since text_begin, run-owned (nnq_file_save may unwind). */
static char *text_end(Export *x, char **mem, size_t *len) {
    if (fclose(x->out) != 0) nnq_rt_fail(x->run, "out of memory");
    x->out = NULL;
    char *t = nnq_rt_alloc(x->run, (int64_t)*len + 1);
    memcpy(t, *mem, *len + 1);
    free(*mem);
    return t;
}

static FILE *text_begin(Export *x, char **mem, size_t *len) {
    FILE *f = open_memstream(mem, len);
    if (!f) nnq_rt_fail(x->run, "out of memory");
    return x->out = f;
}

/* The input's description for the comments: "[1, 28, 28] (784 floats)". */
static void input_text(const NnqModelArch *a, int64_t n, char *buf, size_t size) {
    int len = snprintf(buf, size, "[");
    for (int d = 0; d < a->input_rank && len < (int)size; d++)
        len += snprintf(buf + len, size - (size_t)len, "%s%lld", d ? ", " : "", (long long)a->input_dims[d]);
    if (len < (int)size) snprintf(buf + len, size - (size_t)len, "] (%lld floats)", (long long)n);
}

bool export_c_name_ok(const char *name) {
    if (!name[0] || strlen(name) > 64 || !(isalpha((unsigned char)name[0]) || name[0] == '_')) return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_') || (unsigned char)*p > 127) return false;
    return true;
}

int export_c(NnqRun *run, const NnqModelFile *mf, const char *dir, const char *prefix) {
    if (!export_c_name_ok(prefix))
        nnq_rt_fail(run, "--name '%s' is not a C identifier (letters, digits and '_', not starting with a digit)",
                    prefix);
    if (!mf->arch)
        nnq_rt_fail(run, "model '%s' is a version-%u file: it holds no architecture to export", mf->model,
                    mf->version);
    Export x = {.run = run, .mf = mf, .a = mf->arch, .nops = mf->arch->nops};
    const NnqModelArch *a = x.a;
    int nv = x.nops + 1;
    x.ops = nnq_rt_alloc(run, x.nops * (int64_t)sizeof *x.ops);
    memset(x.ops, 0, (size_t)x.nops * sizeof *x.ops);
    x.size = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.size);
    x.root = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.root);
    x.last = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.last);
    x.at = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.at);
    x.slot_size = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.slot_size);
    x.slot_off = nnq_rt_alloc(run, nv * (int64_t)sizeof *x.slot_off);
    x.names = nnq_rt_alloc(run, (4 * (int64_t)nv + CK_COUNT + 8) * (int64_t)sizeof *x.names);

    /* shapes, kernels and buffers: every check before anything is written */
    int64_t in_size = 1;
    for (int d = 0; d < a->input_rank; d++) in_size *= a->input_dims[d];
    x.size[0] = in_size;
    NnqValueShape *shapes = nnq_rt_alloc(run, (nv + 1) * (int64_t)sizeof *shapes);
    char err[512];
    if (nnq_model_shapes(mf, shapes, err, sizeof err)) nnq_rt_fail(run, "model '%s': %s", mf->model, err);
    for (int i = 0; i < x.nops; i++) {
        op_shape(&x, shapes, i);
        x.size[i + 1] = x.ops[i].size;
        if (x.ops[i].kernel != CK_COUNT) x.used |= DEP(x.ops[i].kernel);
    }
    const XOp *lastop = &x.ops[x.nops - 1];
    if (lastop->g.rank != 1 || lastop->g.dims[0] != a->classes)
        nnq_rt_fail(run, "model '%s': the last op gives %lld values per sample, not the %d classes", mf->model,
                    (long long)lastop->size, a->classes);
    if (a->norm_channels) x.used |= DEP(CK_NORMALIZE);
    x.used |= DEP(CK_ARGMAX);
    for (int k = CK_COUNT - 1; k >= 0; k--) /* a kernel's dependencies come before it */
        if (x.used & DEP(k)) x.used |= ckernels[k].deps;
    plan_buffers(&x);

    const char *P = prefix;
    char *PU = upper(run, prefix);
    for (int k = 0; k < CK_COUNT; k++) x.names[x.nnames++] = (char *)ckernels[k].name;
    char *pred = nnq_rt_alloc(run, (int64_t)strlen(P) + 16);
    sprintf(pred, "%s_predict", P);
    x.names[x.nnames++] = pred;
    const char *reserved[] = {"in", "logits", "scratch", "buf", "norm_a", "norm_b"};
    for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++) x.names[x.nnames++] = (char *)reserved[k];
    char intext[256];
    input_text(a, in_size, intext, sizeof intext);

    /* P.c */
    char *mem;
    size_t len;
    text_begin(&x, &mem, &len);
    put(&x,
        "/* %s.c — the model '%s' as plain C99: %s_predict (%s.h). Generated by nnqc export\n"
        " * --format c; do not edit. Needs no library and no heap, writes no global. */\n"
        "#include <stdint.h>\n\n#include \"%s.h\"\n\n",
        P, mf->model, P, P, P);
    if (a->norm_channels) {
        put(&x, "/* The input normalization, per channel: x = raw * norm_a[c] + norm_b[c] in double\n"
                " * (norm_a = 1 / scale, norm_b = -shift / scale) */\n");
        put(&x, "static const double norm_a[%d] = {", a->norm_channels);
        for (int c = 0; c < a->norm_channels; c++) put(&x, "%s%a", c ? ", " : "", 1.0 / a->norm_scale[c]);
        put(&x, "};\nstatic const double norm_b[%d] = {", a->norm_channels);
        for (int c = 0; c < a->norm_channels; c++)
            put(&x, "%s%a", c ? ", " : "", (0.0 - a->norm_shift[c]) / a->norm_scale[c]);
        put(&x, "};\n\n");
        x.flash += 16 * a->norm_channels;
    }
    for (int i = 0; i < x.nops; i++) put_op_data(&x, i);
    for (int k = 0; k < CK_COUNT; k++)
        if (x.used & DEP(k)) put(&x, "%s\n", ckernels[k].src);
    put(&x, "int %s_predict(const float *in, float *logits, void *scratch)\n{\n", P);
    bool uses_buf = x.nslots > 0 || x.row_floats > 0;
    if (uses_buf) put(&x, "    float *buf = (float *)scratch;\n\n");
    else put(&x, "    (void)scratch;\n\n");
    if (!a->norm_channels && x.last[0] < 0) put(&x, "    (void)in; /* the logits do not depend on it */\n\n");
    char vb[64];
    if (a->norm_channels)
        put(&x, "    /* %%0 = the input, normalized */\n    normalize(in, %s, %d, %lld, norm_a, norm_b);\n",
            value_ref(&x, 0, vb, sizeof vb), a->norm_channels, (long long)(in_size / a->norm_channels));
    for (int i = 0; i < x.nops; i++) put_op_call(&x, i);
    put(&x, "    return argmax(logits, %d);\n}\n", a->classes);
    char *ctext = text_end(&x, &mem, &len);
    size_t clen = len;

    /* P.h */
    text_begin(&x, &mem, &len);
    put(&x,
        "/* %s.h — the model '%s' as plain C99 (%s.c). Generated by nnqc export --format c;\n"
        " * do not edit.\n"
        " *\n"
        " * Input: one raw sample %s, channel x height x width, row-major,\n"
        " * as the data loaders give it (pixels in [0, 1]); %s_predict applies the model's\n"
        " * normalization itself.\n"
        " * Output: %d logits; the result is the class of the first largest.\n"
        " * Flash: %lld bytes of constant data (weights, labels, constants), plus the code.\n"
        " * RAM: %lld bytes of scratch, the caller's (%s_SCRATCH_BYTES), and the stack of a\n"
        " * few calls. No heap, no writable global, no library (not even libm): calls with\n"
        " * separate scratch areas may run at the same time. */\n"
        "#ifndef %s_H\n#define %s_H\n\n"
        "#define %s_INPUT_SIZE %lld  /* floats of one raw sample */\n"
        "#define %s_OUTPUT_SIZE %d  /* logits: the classes */\n"
        "#define %s_SCRATCH_BYTES %lld  /* the scratch %s_predict needs */\n\n"
        "/* Runs the model on one raw sample `in` (%s_INPUT_SIZE floats), writes\n"
        " * %s_OUTPUT_SIZE logits to `logits` and returns the predicted class (the first\n"
        " * largest logit). `scratch` is %s_SCRATCH_BYTES bytes of memory aligned as for float\n"
        " * (16-byte alignment keeps every buffer in it 16-byte aligned); its contents need no\n"
        " * initialization and are not kept. `in` is only read. */\n"
        "int %s_predict(const float *in, float *logits, void *scratch);\n\n#endif\n",
        P, mf->model, P, intext, P, a->classes, (long long)x.flash, (long long)x.scratch_bytes, PU, PU, PU, PU,
        (long long)in_size, PU, a->classes, PU, (long long)x.scratch_bytes, P, PU, PU, PU, P);
    char *htext = text_end(&x, &mem, &len);
    size_t hlen = len;

    size_t dl = strlen(dir) + strlen(P) + 8;
    char *cpath = nnq_rt_alloc(run, (int64_t)dl), *hpath = nnq_rt_alloc(run, (int64_t)dl);
    snprintf(cpath, dl, "%s/%s.c", dir, P);
    snprintf(hpath, dl, "%s/%s.h", dir, P);
    nnq_files_begin(run, dir); /* both or neither: never a header beside another model's source */
    nnq_file_save(run, hpath, htext, hlen, "C header");
    nnq_file_save(run, cpath, ctext, clen, "C source");
    nnq_files_commit(run);
    printf("wrote %s and %s: %lld bytes of constant data (flash, without code), %lld bytes of scratch (RAM)\n",
           hpath, cpath, (long long)x.flash, (long long)x.scratch_bytes);
    return 0;
}
