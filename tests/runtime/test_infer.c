/* test_infer.c — infer.c and the version-2 model file: nets built here (tensors through
 * nnq_rt_model_add, the architecture record written by this file's own encoder of
 * docs/model-format.md) are saved, read back and run by the engine in both modes, on
 * every masked-sum kernel the CPU has, at batch sizes on both sides of the packed-rows
 * limit and of a chunk; the logits are compared with a plain double-precision evaluation
 * of the same graph written here. Also: what the reader refuses in a record, and what
 * the engine refuses. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "harness.h"
#include "nnq_infer.h"

/* ---- a net description: tensors, ops, input ---- */

typedef struct TT { /* a tensor */
    const char *name;
    int rank;
    int64_t dims[4];
    int nlabels;
    float labels[8];
    float *v;
} TT;

typedef struct TOp {
    const char *op;
    int nin, in[2];
    int nt;
    int t[2];          /* indices into the tensor list */
    int na;
    int64_t attr[2];
} TOp;

typedef struct TNet {
    int rank;
    int64_t dims[3];
    int classes;
    int nt, nops;
    TT t[16];
    TOp ops[24];
    bool normalize;    /* standardize the input data set per channel */
} TNet;

static uint32_t g_rng = 12345;
static uint32_t next_u32(void) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng >> 8;
}
static float urand(void) { /* in [-1, 1) */
    return (float)(next_u32() / 8388608.0 - 1.0);
}

static int tnet_tensor(TNet *n, const char *name, int rank, const int64_t *dims, int nlabels, const float *labels,
                       float lo, float hi) {
    TT *t = &n->t[n->nt];
    t->name = name, t->rank = rank, t->nlabels = nlabels;
    memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
    if (nlabels) memcpy(t->labels, labels, (size_t)nlabels * sizeof *labels);
    int64_t c = 1;
    for (int d = 0; d < rank; d++) c *= dims[d];
    t->v = malloc((size_t)c * sizeof(float));
    for (int64_t i = 0; i < c; i++)
        t->v[i] = nlabels ? labels[next_u32() % (uint32_t)nlabels] : lo + (hi - lo) * (urand() + 1) / 2;
    return n->nt++;
}

static int tnet_op(TNet *n, const char *op, int nin, int a, int b, int nt, int t0, int t1, int na, int64_t x0,
                   int64_t x1) {
    n->ops[n->nops] = (TOp){op, nin, {a, b}, nt, {t0, t1}, na, {x0, x1}};
    return ++n->nops; /* the value it defines */
}

static void tnet_free(TNet *n) {
    for (int i = 0; i < n->nt; i++) free(n->t[i].v);
}

/* ---- the record encoder (docs/model-format.md) ---- */

typedef struct Bytes {
    unsigned char *p;
    size_t n;
} Bytes;

static void b_put(Bytes *b, const void *s, size_t k) {
    b->p = realloc(b->p, b->n + k);
    memcpy(b->p + b->n, s, k);
    b->n += k;
}
static void b_u32(Bytes *b, uint32_t v) {
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    b_put(b, c, 4);
}
static void b_u64(Bytes *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_str(Bytes *b, const char *s) {
    b_u32(b, (uint32_t)strlen(s));
    b_put(b, s, strlen(s));
}

static Bytes tnet_arch(const TNet *n) {
    Bytes b = {0};
    b_u32(&b, (uint32_t)n->rank);
    for (int d = 0; d < n->rank; d++) b_u64(&b, (uint64_t)n->dims[d]);
    b_u32(&b, (uint32_t)n->classes);
    b_u32(&b, (uint32_t)n->nops);
    for (int i = 0; i < n->nops; i++) {
        const TOp *o = &n->ops[i];
        b_str(&b, o->op);
        b_u32(&b, (uint32_t)o->nin);
        for (int k = 0; k < o->nin; k++) b_u32(&b, (uint32_t)o->in[k]);
        b_u32(&b, (uint32_t)o->nt);
        for (int k = 0; k < o->nt; k++) b_str(&b, n->t[o->t[k]].name);
        b_u32(&b, (uint32_t)o->na);
        for (int k = 0; k < o->na; k++) b_u64(&b, (uint64_t)o->attr[k]);
    }
    return b;
}

/* ---- saving: the tensors, the record, and the normalization of an IDX data set ---- */

static const TNet *g_net;
static Bytes g_arch;
static const char *g_path, *g_images, *g_labels;

static int entry_save_net(NnqRun *run) {
    int32_t ds = nnq_rt_data_idx(run, g_images, g_labels);
    if (g_net->normalize) nnq_rt_data_normalize(run, ds, 1, ds, nnq_rt_data_count(run, ds));
    nnq_rt_model_begin(run, "t");
    for (int i = 0; i < g_net->nt; i++) {
        const TT *t = &g_net->t[i];
        nnq_rt_model_add(run, t->name, t->rank, t->dims, t->nlabels, t->labels, t->v);
    }
    if (g_arch.n) /* else a version-1 file */
        nnq_rt_model_arch(run, g_arch.p, (int64_t)g_arch.n, ds);
    nnq_rt_model_save(run, g_path);
    return 0;
}

/* IDX images of the net's input shape (one channel: [1, H, W]; else one image per
 * channel plane is not expressible in IDX, so C = 1 nets only use IDX data) — raw bytes
 * in rawpix, as floats /255. */
static void write_idx(const char *img, const char *lab, int count, int h, int w, float *raw) {
    size_t np = (size_t)count * (size_t)(h * w);
    unsigned char *b = malloc(16 + np), *l = malloc(8 + (size_t)count);
    unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, (unsigned char)(count >> 8), (unsigned char)count,
                             0, 0, 0, (unsigned char)h, 0, 0, 0, (unsigned char)w};
    memcpy(b, hdr, 16);
    for (size_t i = 0; i < np; i++) {
        g_rng = g_rng * 1664525u + 1013904223u;
        b[16 + i] = (unsigned char)(g_rng >> 24);
        raw[i] = (float)b[16 + i] / 255.0f;
    }
    unsigned char lh[8] = {0, 0, 8, 1, 0, 0, (unsigned char)(count >> 8), (unsigned char)count};
    memcpy(l, lh, 8);
    memset(l + 8, 0, (size_t)count);
    CHECK(th_write_file(img, b, 16 + np, false));
    CHECK(th_write_file(lab, l, 8 + (size_t)count, false));
    free(b), free(l);
}

/* ---- the reference: each op in double ---- */

typedef struct RV {
    int rank;
    int64_t d[3];
    double *v;      /* one sample */
} RV;

static double tval(const TT *t, int64_t i) { return t->v[i]; }

static void ref_eval(const TNet *n, const double *x0, double *logits) {
    RV val[32] = {{n->rank, {n->dims[0], n->dims[1], n->dims[2]}, NULL}};
    int64_t sz0 = n->dims[0] * (n->rank == 3 ? n->dims[1] * n->dims[2] : 1);
    val[0].v = malloc((size_t)sz0 * sizeof(double));
    memcpy(val[0].v, x0, (size_t)sz0 * sizeof(double));
    for (int i = 0; i < n->nops; i++) {
        const TOp *o = &n->ops[i];
        const RV *a = &val[o->in[0]];
        RV *y = &val[i + 1];
        *y = *a;
        int64_t C = a->d[0], H = a->rank == 3 ? a->d[1] : 1, W = a->rank == 3 ? a->d[2] : 1, S = H * W;
        const TT *t0 = o->nt ? &n->t[o->t[0]] : NULL, *t1 = o->nt > 1 ? &n->t[o->t[1]] : NULL;
        if (!strcmp(o->op, "dense")) {
            y->d[0] = t0->dims[1];
        } else if (!strcmp(o->op, "conv2d") || !strcmp(o->op, "dwconv2d")) {
            int64_t k = t0->dims[2], s = o->attr[0], p = o->attr[1];
            y->d[0] = t0->dims[0], y->d[1] = (H + 2 * p - k) / s + 1, y->d[2] = (W + 2 * p - k) / s + 1;
        } else if (!strcmp(o->op, "maxpool") || !strcmp(o->op, "avgpool")) {
            y->d[1] = (H - o->attr[0]) / o->attr[1] + 1, y->d[2] = (W - o->attr[0]) / o->attr[1] + 1;
        } else if (!strcmp(o->op, "flatten")) {
            y->rank = 1, y->d[0] = C * S;
        }
        int64_t ysz = y->d[0] * (y->rank == 3 ? y->d[1] * y->d[2] : 1);
        y->v = calloc((size_t)ysz, sizeof(double));
        if (!strcmp(o->op, "dense")) {
            for (int64_t j = 0; j < y->d[0]; j++)
                for (int64_t k = 0; k < C; k++) y->v[j] += a->v[k] * tval(t0, k * y->d[0] + j);
        } else if (!strcmp(o->op, "conv2d") || !strcmp(o->op, "dwconv2d")) {
            bool dw = !strcmp(o->op, "dwconv2d");
            int64_t k = t0->dims[2], s = o->attr[0], p = o->attr[1], OH = y->d[1], OW = y->d[2];
            for (int64_t oc = 0; oc < y->d[0]; oc++)
                for (int64_t oy = 0; oy < OH; oy++)
                    for (int64_t ox = 0; ox < OW; ox++) {
                        double acc = 0;
                        for (int64_t c = dw ? oc : 0; c < (dw ? oc + 1 : C); c++)
                            for (int64_t i2 = 0; i2 < k; i2++)
                                for (int64_t j2 = 0; j2 < k; j2++) {
                                    int64_t r = oy * s - p + i2, q = ox * s - p + j2;
                                    if (r < 0 || r >= H || q < 0 || q >= W) continue;
                                    int64_t wc = dw ? 0 : c;
                                    acc += a->v[(c * H + r) * W + q] * tval(t0, ((oc * (dw ? 1 : C) + wc) * k + i2) * k + j2);
                                }
                        y->v[(oc * OH + oy) * OW + ox] = acc;
                    }
        } else if (!strcmp(o->op, "maxpool") || !strcmp(o->op, "avgpool")) {
            bool mx = !strcmp(o->op, "maxpool");
            int64_t k = o->attr[0], s = o->attr[1], OH = y->d[1], OW = y->d[2];
            for (int64_t c = 0; c < C; c++)
                for (int64_t oy = 0; oy < OH; oy++)
                    for (int64_t ox = 0; ox < OW; ox++) {
                        double acc = mx ? -INFINITY : 0;
                        for (int64_t i2 = 0; i2 < k; i2++)
                            for (int64_t j2 = 0; j2 < k; j2++) {
                                double v = a->v[(c * H + oy * s + i2) * W + ox * s + j2];
                                acc = mx ? (v > acc ? v : acc) : acc + v;
                            }
                        y->v[(c * OH + oy) * OW + ox] = mx ? acc : acc / (double)(k * k);
                    }
        } else {
            for (int64_t c = 0; c < C; c++)
                for (int64_t s = 0; s < S; s++) {
                    int64_t e = c * S + s;
                    double v = a->v[e];
                    y->v[e] = !strcmp(o->op, "bias")        ? v + tval(t0, c)
                              : !strcmp(o->op, "batchnorm") ? (v - tval(t0, c)) / sqrt(tval(t1, c) + 1e-5)
                              : !strcmp(o->op, "relu")      ? (v > 0 ? v : 0)
                              : !strcmp(o->op, "add")       ? v + val[o->in[1]].v[e]
                                                            : v; /* flatten */
                }
        }
    }
    memcpy(logits, val[n->nops].v, (size_t)n->classes * sizeof(double));
    for (int i = 0; i <= n->nops; i++) free(val[i].v);
}

/* ---- the check: save, read, run, compare ---- */

static void check_net(const TNet *n, const char *what, int count) {
    char *path = th_path("net.nnqm"), *img = th_path("img.idx"), *lab = th_path("lab.idx");
    int64_t sz = n->dims[0] * (n->rank == 3 ? n->dims[1] * n->dims[2] : 1);
    CHECK(n->rank == 3 && n->dims[0] == 1, "the IDX data gives one channel");
    float *raw = malloc((size_t)(count * sz) * sizeof(float));
    write_idx(img, lab, count, (int)n->dims[1], (int)n->dims[2], raw);
    g_net = n, g_arch = tnet_arch(n), g_path = path, g_images = img, g_labels = lab;
    char *err = NULL;
    CHECK(th_invoke_new(NULL, entry_save_net, &err) == 0, "%s: %s", what, err ? err : "");
    free(err);
    free(g_arch.p);
    /* the normalization the engine must apply: the data set's mean and deviation */
    double mean = 0, var = 0;
    for (int64_t i = 0; i < count * sz; i++) mean += raw[i];
    mean /= (double)(count * sz);
    for (int64_t i = 0; i < count * sz; i++) var += (raw[i] - mean) * (raw[i] - mean);
    double sd = sqrt(var / (double)(count * sz));
    double *ref = malloc((size_t)(count * n->classes) * sizeof(double)), *x0 = malloc((size_t)sz * sizeof(double));
    double maxref = 0;
    for (int s = 0; s < count; s++) {
        for (int64_t i = 0; i < sz; i++) x0[i] = n->normalize ? (raw[s * sz + i] - mean) / sd : raw[s * sz + i];
        ref_eval(n, x0, ref + s * n->classes);
    }
    for (int64_t i = 0; i < count * n->classes; i++) maxref = fmax(maxref, fabs(ref[i]));
    char msg[512];
    static const char *const isas[] = {"portable", "avx2", "avx512"};
    for (int mode = 0; mode < 2; mode++) {
        NnqModelFile *mf = nnq_model_load(path, mode == 0 ? NNQ_MODEL_PACKED : 0, msg, sizeof msg);
        CHECK(mf && mf->version == 2 && mf->arch, "%s: %s", what, msg);
        if (!mf) continue;
        for (int isa = 0; isa < (mode == 0 ? 3 : 1); isa++) {
            setenv("NNQ_ISA", isas[isa], 1);
            NnqNet *net = nnq_net_new(mf, mode == 0 ? NNQ_NET_PACKED : NNQ_NET_FLOAT, msg, sizeof msg);
            unsetenv("NNQ_ISA");
            CHECK(net, "%s: %s", what, msg);
            if (!net) continue;
            CHECK(nnq_net_input_size(net) == sz && nnq_net_classes(net) == n->classes);
            /* batches of 1, 3, 4 (packed rows), 5, and all at once (more than a chunk) */
            static const int batches[] = {1, 3, 4, 5, 1000};
            float *logits = malloc((size_t)(count * n->classes) * sizeof(float));
            for (int bi = 0; bi < 5; bi++) {
                double worst = 0;
                for (int s = 0; s < count; s += batches[bi]) {
                    int m = count - s < batches[bi] ? count - s : batches[bi];
                    CHECK(nnq_net_run(net, raw + s * sz, m, logits + s * n->classes, msg, sizeof msg) == 0);
                }
                for (int64_t i = 0; i < count * n->classes; i++) worst = fmax(worst, fabs(logits[i] - ref[i]));
                CHECK(worst <= 2e-5 * maxref + 1e-5, "%s, %s mode, %s kernel, batch %d: logits off by %g (max |logit| %g)",
                      what, mode ? "float" : "packed", isas[isa], batches[bi], worst, maxref);
            }
            free(logits);
            nnq_net_free(net);
        }
        nnq_model_free(mf);
    }
    free(ref), free(x0), free(raw), free(path), free(img), free(lab);
}

static const float BIN[] = {-1, 1}, TER[] = {-1, 0, 1}, AFF[] = {0.5f, 1.5f}, FIVE[] = {-3, -1, 0, 1, 3},
                   FOUR[] = {-2, -1, 1, 2};

/* Dense layers over every packing: binary (K = 117, past a word and not a multiple of
 * 16), ternary, an affine pair with no zero, four levels (3 planes), five (indices), and
 * float; a quantized bias, batch norm, relu, and an add of two branches. */
void test_infer_dense(void) {
    TNet n = {.rank = 3, .dims = {1, 9, 13}, .classes = 10, .normalize = true};
    int w1 = tnet_tensor(&n, "d1.w", 2, (int64_t[]){117, 70}, 2, BIN, 0, 0);
    int b1 = tnet_tensor(&n, "d1.b", 1, (int64_t[]){70}, 2, BIN, 0, 0);
    int m1 = tnet_tensor(&n, "bn1.running_mean", 1, (int64_t[]){70}, 0, NULL, -3, 3);
    int v1 = tnet_tensor(&n, "bn1.running_var", 1, (int64_t[]){70}, 0, NULL, 20, 90);
    int w2 = tnet_tensor(&n, "d2.w", 2, (int64_t[]){70, 33}, 3, TER, 0, 0);
    int w3 = tnet_tensor(&n, "d3.w", 2, (int64_t[]){33, 20}, 2, AFF, 0, 0);
    int w4 = tnet_tensor(&n, "d4.w", 2, (int64_t[]){20, 10}, 4, FOUR, 0, 0);
    int w5 = tnet_tensor(&n, "d5.w", 2, (int64_t[]){20, 10}, 5, FIVE, 0, 0);
    int w6 = tnet_tensor(&n, "d6.w", 2, (int64_t[]){10, 10}, 0, NULL, -1, 1);
    int f = tnet_op(&n, "flatten", 1, 0, 0, 0, 0, 0, 0, 0, 0);
    int h = tnet_op(&n, "dense", 1, f, 0, 1, w1, 0, 0, 0, 0);
    h = tnet_op(&n, "bias", 1, h, 0, 1, b1, 0, 0, 0, 0);
    h = tnet_op(&n, "batchnorm", 1, h, 0, 2, m1, v1, 0, 0, 0);
    h = tnet_op(&n, "relu", 1, h, 0, 0, 0, 0, 0, 0, 0);
    h = tnet_op(&n, "dense", 1, h, 0, 1, w2, 0, 0, 0, 0);
    h = tnet_op(&n, "dense", 1, h, 0, 1, w3, 0, 0, 0, 0);
    int a = tnet_op(&n, "dense", 1, h, 0, 1, w4, 0, 0, 0, 0);
    int b = tnet_op(&n, "dense", 1, h, 0, 1, w5, 0, 0, 0, 0);
    a = tnet_op(&n, "add", 2, a, b, 0, 0, 0, 0, 0, 0);
    tnet_op(&n, "dense", 1, a, 0, 1, w6, 0, 0, 0, 0);
    check_net(&n, "dense net", 300); /* more than a chunk (256) */
    tnet_free(&n);
}

/* Convolutions: binary with padding, a ternary depthwise one with stride 2, a
 * five-level one without padding, and with stride 3 and a padding of 3, the kernel's size
 * (the language allows it: its outer windows read padding only; the engine refused it
 * until 2026-12-07); max and average pooling; a residual add. */
void test_infer_conv(void) {
    TNet n = {.rank = 3, .dims = {1, 11, 11}, .classes = 4};
    int c1 = tnet_tensor(&n, "c1.w", 4, (int64_t[]){8, 1, 3, 3}, 2, BIN, 0, 0);
    int b1 = tnet_tensor(&n, "c1.b", 1, (int64_t[]){8}, 0, NULL, -1, 1);
    int m1 = tnet_tensor(&n, "bn1.running_mean", 1, (int64_t[]){8}, 0, NULL, -1, 1);
    int v1 = tnet_tensor(&n, "bn1.running_var", 1, (int64_t[]){8}, 0, NULL, 1, 4);
    int dw = tnet_tensor(&n, "dw.w", 4, (int64_t[]){8, 1, 3, 3}, 3, TER, 0, 0);
    int c2 = tnet_tensor(&n, "c2.w", 4, (int64_t[]){6, 8, 3, 3}, 5, FIVE, 0, 0);
    int d = tnet_tensor(&n, "d.w", 2, (int64_t[]){6, 4}, 2, BIN, 0, 0);
    int h = tnet_op(&n, "conv2d", 1, 0, 0, 1, c1, 0, 2, 1, 1);          /* [8, 11, 11] */
    h = tnet_op(&n, "bias", 1, h, 0, 1, b1, 0, 0, 0, 0);
    h = tnet_op(&n, "batchnorm", 1, h, 0, 2, m1, v1, 0, 0, 0);
    h = tnet_op(&n, "relu", 1, h, 0, 0, 0, 0, 0, 0, 0);
    int p = tnet_op(&n, "maxpool", 1, h, 0, 0, 0, 0, 2, 2, 2);          /* [8, 5, 5] */
    h = tnet_op(&n, "dwconv2d", 1, p, 0, 1, dw, 0, 2, 1, 1);            /* [8, 5, 5] */
    h = tnet_op(&n, "add", 2, h, p, 0, 0, 0, 0, 0, 0);
    int s = tnet_op(&n, "dwconv2d", 1, h, 0, 1, dw, 0, 2, 2, 1);        /* stride 2: [8, 3, 3] */
    h = tnet_op(&n, "conv2d", 1, h, 0, 1, c2, 0, 2, 1, 0);              /* [6, 3, 3] */
    int t = tnet_op(&n, "conv2d", 1, s, 0, 1, c2, 0, 2, 3, 3);          /* [6, 3, 3] */
    h = tnet_op(&n, "add", 2, h, t, 0, 0, 0, 0, 0, 0);
    h = tnet_op(&n, "avgpool", 1, h, 0, 0, 0, 0, 2, 3, 3);              /* [6, 1, 1] */
    h = tnet_op(&n, "flatten", 1, h, 0, 0, 0, 0, 0, 0, 0);
    tnet_op(&n, "dense", 1, h, 0, 1, d, 0, 0, 0, 0);
    check_net(&n, "conv net", 300);
    tnet_free(&n);
}

/* Saves n as g_path (entry_save_net), reads it back, and checks that the engine in `mode`
 * refuses it with `want` in its message. */
static void engine_refuses(const TNet *n, NnqNetMode mode, const char *want) {
    char msg[512];
    g_net = n, g_arch = tnet_arch(n);
    th_invoke_new(NULL, entry_save_net, NULL);
    free(g_arch.p);
    NnqModelFile *mf = nnq_model_read(g_path, msg, sizeof msg);
    CHECK(mf != NULL, "%s", msg);
    if (!mf) return;
    NnqNet *net = nnq_net_new(mf, mode, msg, sizeof msg);
    CHECK(!net && th_contains(msg, want), "got: %s", msg);
    nnq_net_free(net);
    nnq_model_free(mf);
}

/* What the reader and the engine refuse. */
void test_infer_refused(void) {
    TNet n = {.rank = 3, .dims = {1, 4, 4}, .classes = 3};
    int w = tnet_tensor(&n, "w", 2, (int64_t[]){16, 3}, 2, BIN, 0, 0);
    int f = tnet_op(&n, "flatten", 1, 0, 0, 0, 0, 0, 0, 0, 0);
    tnet_op(&n, "dense", 1, f, 0, 1, w, 0, 0, 0, 0);
    char *path = th_path("r.nnqm"), *img = th_path("r_img.idx"), *lab = th_path("r_lab.idx"), msg[512];
    float raw[16 * 5];
    write_idx(img, lab, 5, 4, 4, raw);
    g_images = img, g_labels = lab, g_path = path;
    /* a good net first */
    g_net = &n, g_arch = tnet_arch(&n);
    CHECK(th_invoke_new(NULL, entry_save_net, NULL) == 0);
    free(g_arch.p);
    NnqModelFile *mf = nnq_model_read(path, msg, sizeof msg);
    CHECK(mf && mf->arch && mf->arch->nops == 2 && mf->arch->ops[1].op == NNQ_INFER_DENSE && mf->arch->ops[1].tensor[0] == 0,
          "%s", msg);
    nnq_model_free(mf);

    /* record edits the reader must refuse, each with its message */
    TOp saved = n.ops[1];
    n.ops[1].op = "densest";
    g_arch = tnet_arch(&n);
    CHECK(th_invoke_new(NULL, entry_save_net, NULL) == 0);
    free(g_arch.p);
    CHECK(!(mf = nnq_model_read(path, msg, sizeof msg)) && th_contains(msg, "'densest', not an op"), "got: %s", msg);
    n.ops[1] = saved;
    n.ops[1].in[0] = 2; /* its own value */
    g_arch = tnet_arch(&n);
    th_invoke_new(NULL, entry_save_net, NULL);
    free(g_arch.p);
    CHECK(!(mf = nnq_model_read(path, msg, sizeof msg)) && th_contains(msg, "reads value 2, not yet defined"), "got: %s", msg);
    n.ops[1] = saved;
    n.ops[1].nt = 0; /* a dense with no weight */
    g_arch = tnet_arch(&n);
    th_invoke_new(NULL, entry_save_net, NULL);
    free(g_arch.p);
    CHECK(!(mf = nnq_model_read(path, msg, sizeof msg)) && th_contains(msg, "(dense) has 0 tensors"), "got: %s", msg);
    n.ops[1] = saved;
    n.t[w].name = "w2"; /* the record names a tensor the file lacks */
    g_arch = tnet_arch(&n);
    n.t[w].name = "w";
    th_invoke_new(NULL, entry_save_net, NULL);
    free(g_arch.p);
    CHECK(!(mf = nnq_model_read(path, msg, sizeof msg)) && th_contains(msg, "reads tensor 'w2', which the file does not hold"),
          "got: %s", msg);

    /* shapes the engine refuses: a weight for 15 inputs after a flatten of 16 */
    n.t[w].dims[0] = 15;
    engine_refuses(&n, NNQ_NET_PACKED, "op 1 (dense): weight 'w' does not fit an input of 16 features");
    n.t[w].dims[0] = 16;
    /* classes that are not the last op's width */
    n.classes = 4;
    engine_refuses(&n, NNQ_NET_FLOAT, "not the 4 classes");
    n.classes = 3;
    /* a padding past the language's limit (NNQ_CONV_MAX): a 1x1 convolution padded by 65 */
    TOp fl = n.ops[0];
    int c = tnet_tensor(&n, "c", 4, (int64_t[]){1, 1, 1, 1}, 0, NULL, -1, 1);
    n.ops[0] = (TOp){.op = "conv2d", .nin = 1, .in = {0}, .nt = 1, .t = {c}, .na = 2, .attr = {1, NNQ_CONV_MAX + 1}};
    engine_refuses(&n, NNQ_NET_FLOAT, "op 0 (conv2d): kernel 1, stride 1, padding 65: each at most 64");
    n.ops[0] = fl;

    /* a version-1 file (no record) reads, but the engine cannot run it */
    g_arch.n = 0;
    CHECK(th_invoke_new(NULL, entry_save_net, NULL) == 0);
    mf = nnq_model_read(path, msg, sizeof msg);
    CHECK(mf && mf->version == 1 && !mf->arch, "%s", msg);
    if (mf) {
        NnqNet *net = nnq_net_new(mf, NNQ_NET_PACKED, msg, sizeof msg);
        CHECK(!net && th_contains(msg, "holds no architecture"), "got: %s", msg);
        nnq_net_free(net);
        nnq_model_free(mf);
    }
    tnet_free(&n);
    free(path), free(img), free(lab);
}
