/* conv_dnnl.c — the convolutions that oneDNN (libdnnl, C API) computes for conv.c: one
 * primitive execution per chunk of samples, on the pool thread that owns the chunk, with
 * OpenMP held to that one thread. conv.c keeps everything else (the chunking, the dw slots
 * and their fixed-order reduction, every other shape).
 *
 * The rule (shapes only, never timing, so a shape takes the same path on every run and
 * every thread count): oneDNN serves a 3 x 3, stride 1, pad 1 convolution whose C and O
 * are multiples of 16 (its blocked layouts then carry no padding, on AVX-512's 16 lanes
 * as on AVX2's 8) — forward and dx when OH*OW >= 16 (>= 4 where oneDNN runs AVX-512
 * code: rt_dnnl_wide), dw when OH*OW >= 64. Measured on
 * the layers of bench/conv_bench.c, reorders to and from the blocked layouts included
 * (docs/speed-log.md), against conv.c's im2col + OpenBLAS on the shapes it takes:
 * forward and dx 1.5-1.9x, dw 1.2-1.65x, at 1 and 2 threads with AVX-512; 1.1-1.85x with
 * oneDNN and OpenBLAS held to AVX2. Outside it oneDNN loses, or gains on one ISA only or
 * little: LeNet-5's C = 1 (0.15-0.75x) and C = 20, O = 50 (within 20%), 1 x 1 and stride 2
 * (0.7-1.5x), dw of 512 channels at 4 x 4 and 2 x 2 (0.57-0.97x), forward and dx at
 * 2 x 2 (1.4-1.5x with AVX-512, so taken there; 0.64-1.01x with AVX2). VGG-16's three
 * 512-channel layers at 2 x 2 through oneDNN with AVX-512: its step 1.2-2.9% faster
 * (three pairs of profiles, 2 threads).
 *
 * Per (op, geometry, chunk size g, last chunk `tail`) one set of kernels, made on first
 * use on the calling thread (nnq_rt_conv_reserve before training, else the first call) and
 * kept for the process: the primitive for g samples and one for the last chunk (made to
 * take the same weights layout), the reorders between our NCHW / OIHW and the layouts
 * oneDNN chose, and the scratchpad size (the user's: chunks run in rt_thread_scratch).
 * Every primitive is made and run with OpenMP set to one thread on the calling thread
 * (its plan, and so its bits, never depend on the pool size). oneDNN picks its kernels by
 * CPU, as OpenBLAS does: bits agree on one machine at any thread count, not across
 * machines. Executing allocates oneDNN's small memory handles per chunk (a failure is an
 * internal error, as a failed execution is); where oneDNN has no implementation for a
 * shape the rule serves, conv.c computes it. */
#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

/* OpenMP's, from the libgomp that libdnnl uses (linked explicitly): the header is the
 * compiler's own and clang's names another runtime. */
void omp_set_num_threads(int n);

typedef struct Arg {
    dnnl_memory_desc_t user, prim;
    dnnl_primitive_t reorder; /* user <-> prim, NULL when the layouts agree */
    int64_t offset;           /* bytes into the chunk's scratch when reordered */
} Arg;

/* One primitive for chunks of `cnt` samples; args 0 (x or dy / dx's dx), 1 (weights), 2 (y,
 * dy): see rt_dnnl_chunk. */
typedef struct Prim {
    int64_t cnt;
    dnnl_primitive_t p;
    int args[3];
    Arg a[3];
    bool out[3]; /* written by the primitive */
    dnnl_memory_desc_t scratch_md;
    int64_t scratch_bytes, bytes; /* scratchpad; everything of a chunk */
} Prim;

struct RtDnnlConv {
    RtConvOp op;
    int32_t g, tail, c, h, w, o, kh, kw, stride, pad;
    bool ok; /* false: oneDNN has no implementation, conv.c computes it */
    Prim full, last;
    dnnl_memory_desc_t w_user, w_prim; /* OIHW and the weights layout both primitives take */
    dnnl_primitive_t w_reorder;        /* OIHW -> prim (fwd, dx), prim -> OIHW (dw); may be NULL */
    RtDnnlConv *next;
};

static pthread_mutex_t dnnl_mu = PTHREAD_MUTEX_INITIALIZER;
static RtDnnlConv *kernels;
static dnnl_engine_t engine;
static _Thread_local dnnl_stream_t stream;
static _Thread_local bool omp_one;

static void die(const char *what, dnnl_status_t s) {
    fprintf(stderr, "nnq: internal error: oneDNN %s failed (status %d)\n", what, (int)s);
    abort();
}

/* This thread: OpenMP on one thread. */
static void omp_single(void) {
    if (!omp_one) {
        omp_set_num_threads(1);
        omp_one = true;
    }
}

/* This thread: OpenMP on one thread, and a stream of its own. */
static void thread_setup(void) {
    omp_single();
    if (!stream) {
        dnnl_status_t s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
        if (s != dnnl_success)
            die("stream creation", s);
    }
}

static RtLibMode mode = RT_LIB_RULE;

void rt_dnnl_set_mode(RtLibMode m) {
    mode = m;
}

/* oneDNN's kernels held to rt_isa() (isa.c): set before anything else asks oneDNN for its
 * ISA (every entry point here calls this first). Its narrowest is SSE4.1. */
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void isa_cap(void) {
    RtIsa isa = rt_isa();
    if (isa != RT_ISA_AVX512)
        dnnl_set_max_cpu_isa(isa == RT_ISA_AVX2 ? dnnl_cpu_isa_avx2 : dnnl_cpu_isa_sse41);
}

const char *rt_dnnl_version(void) {
    static char text[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
    return text;
}

bool rt_dnnl_wide(void) {
    pthread_once(&isa_once, isa_cap);
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

void rt_dnnl_sgemm(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                   int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc) {
    pthread_once(&isa_once, isa_cap);
    omp_single();
    dnnl_status_t s = dnnl_sgemm(transa ? 'T' : 'N', transb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (s != dnnl_success)
        die("sgemm", s);
}

bool rt_dnnl_serves(RtConvOp op, int32_t c, int32_t o, int32_t kh, int32_t kw, int32_t stride,
                    int32_t pad, int32_t oh, int32_t ow) {
    if (mode != RT_LIB_RULE)
        return mode == RT_LIB_ALWAYS;
    if (kh != 3 || kw != 3 || stride != 1 || pad != 1 || c % 16 != 0 || o % 16 != 0)
        return false;
    int64_t p = (int64_t)oh * ow;
    if (op == RT_CONV_DW)
        return p >= 64;
    return p >= 16 || (p >= 4 && rt_dnnl_wide());
}

static bool md4(dnnl_memory_desc_t *m, int64_t a, int64_t b, int64_t c, int64_t d,
                dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, d};
    return dnnl_memory_desc_init_by_tag(m, 4, dims, dnnl_f32, tag) == dnnl_success;
}

static bool make_reorder(dnnl_primitive_t *r, const dnnl_memory_desc_t *from,
                         const dnnl_memory_desc_t *to) {
    *r = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return true;
    dnnl_primitive_desc_t pd;
    if (dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL) != dnnl_success)
        return false;
    bool ok = dnnl_primitive_create(r, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    return ok;
}

static int64_t round64(int64_t b) {
    return (b + 63) & ~(int64_t)63;
}

/* The primitive of k's op for cnt samples; weights: its layout, or `any` when NULL. */
static bool make_prim(const RtDnnlConv *k, int64_t cnt, const dnnl_memory_desc_t *weights,
                      Prim *P) {
    int32_t oh = (k->h + 2 * k->pad - k->kh) / k->stride + 1,
            ow = (k->w + 2 * k->pad - k->kw) / k->stride + 1;
    dnnl_memory_desc_t xu, yu, xa, ya, wa;
    memset(P, 0, sizeof *P);
    P->cnt = cnt;
    if (!md4(&xu, cnt, k->c, k->h, k->w, dnnl_nchw) || !md4(&yu, cnt, k->o, oh, ow, dnnl_nchw) ||
        !md4(&xa, cnt, k->c, k->h, k->w, dnnl_format_tag_any) ||
        !md4(&ya, cnt, k->o, oh, ow, dnnl_format_tag_any) ||
        !md4(&wa, k->o, k->c, k->kh, k->kw, dnnl_format_tag_any))
        return false;
    if (weights)
        wa = *weights;
    dnnl_dims_t strides = {k->stride, k->stride}, pad_l = {k->pad, k->pad};
    dnnl_dims_t pad_r = {(oh - 1) * k->stride + k->kh - k->h - k->pad,
                         (ow - 1) * k->stride + k->kw - k->w - k->pad};
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    bool ok =
        dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &xa,
                                           &wa, NULL, &ya, strides, pad_l, pad_r) == dnnl_success &&
        dnnl_primitive_attr_create(&attr) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
        dnnl_primitive_desc_create(&fpd, &fd, attr, engine, NULL) == dnnl_success;
    if (ok && k->op == RT_CONV_FWD) {
        pd = fpd, fpd = NULL;
    } else if (ok) {
        ok = (k->op == RT_CONV_DX
                  ? dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &xa, &wa,
                                                             &ya, strides, pad_l, pad_r)
                  : dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &xa,
                                                                &wa, NULL, &ya, strides, pad_l,
                                                                pad_r)) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &bd, attr, engine, fpd) == dnnl_success;
    }
    if (ok) {
        static const dnnl_query_t q[3][3] = {
            {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
            {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
            {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md},
        };
        static const int args[3][3] = {
            {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
            {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST},
            {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST},
        };
        const dnnl_memory_desc_t *user[3] = {&xu, &wa, &yu};
        P->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        P->scratch_bytes = (int64_t)dnnl_memory_desc_get_size(&P->scratch_md);
        int64_t at = round64(P->scratch_bytes);
        for (int i = 0; i < 3 && ok; i++) {
            Arg *a = &P->a[i];
            P->args[i] = args[k->op][i];
            P->out[i] = (k->op == RT_CONV_FWD && i == 2) || (k->op == RT_CONV_DX && i == 0) ||
                        (k->op == RT_CONV_DW && i == 1);
            a->prim = *dnnl_primitive_desc_query_md(pd, q[k->op][i], 0);
            a->user = i == 1 ? a->prim : *user[i]; /* weights: in the primitive's layout already */
            ok = P->out[i] ? make_reorder(&a->reorder, &a->prim, &a->user)
                           : make_reorder(&a->reorder, &a->user, &a->prim);
            if (ok && a->reorder) {
                a->offset = at;
                at += round64((int64_t)dnnl_memory_desc_get_size(&a->prim));
            }
        }
        P->bytes = at;
        ok = ok && dnnl_primitive_create(&P->p, pd) == dnnl_success;
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return ok;
}

static void make_kernels(RtDnnlConv *k) {
    k->ok = make_prim(k, k->g, NULL, &k->full);
    if (!k->ok)
        return;
    k->w_prim = k->full.a[1].prim;
    k->ok = (!k->tail || make_prim(k, k->tail, &k->w_prim, &k->last)) &&
            md4(&k->w_user, k->o, k->c, k->kh, k->kw, dnnl_oihw) &&
            (k->op == RT_CONV_DW ? make_reorder(&k->w_reorder, &k->w_prim, &k->w_user)
                                 : make_reorder(&k->w_reorder, &k->w_user, &k->w_prim));
}

const RtDnnlConv *rt_dnnl_conv(RtConvOp op, int32_t g, int32_t tail, int32_t c, int32_t h,
                               int32_t w, int32_t o, int32_t kh, int32_t kw, int32_t stride,
                               int32_t pad) {
    int32_t oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1;
    if (g < 1 || !rt_dnnl_serves(op, c, o, kh, kw, stride, pad, oh, ow))
        return NULL;
    pthread_once(&isa_once, isa_cap);
    pthread_mutex_lock(&dnnl_mu);
    RtDnnlConv *k = kernels;
    for (; k; k = k->next)
        if (k->op == op && k->g == g && k->tail == tail && k->c == c && k->h == h && k->w == w &&
            k->o == o && k->kh == kh && k->kw == kw && k->stride == stride && k->pad == pad)
            break;
    if (!k) {
        if (!engine && dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success)
            engine = NULL;
        k = calloc(1, sizeof *k);
        if (k) {
            *k = (RtDnnlConv){.op = op,
                              .g = g,
                              .tail = tail,
                              .c = c,
                              .h = h,
                              .w = w,
                              .o = o,
                              .kh = kh,
                              .kw = kw,
                              .stride = stride,
                              .pad = pad,
                              .next = kernels};
            if (engine) {
                thread_setup(); /* made for one OpenMP thread */
                make_kernels(k);
            }
            kernels = k;
        }
    }
    pthread_mutex_unlock(&dnnl_mu);
    return k && k->ok ? k : NULL;
}

int64_t rt_dnnl_thread_floats(const RtDnnlConv *k) {
    int64_t b = k->full.bytes > k->last.bytes ? k->full.bytes : k->last.bytes;
    return b / (int64_t)sizeof(float);
}

int64_t rt_dnnl_weights_floats(const RtDnnlConv *k) {
    return round64((int64_t)dnnl_memory_desc_get_size(&k->w_prim)) / (int64_t)sizeof(float);
}

static dnnl_memory_t memory(const dnnl_memory_desc_t *md, const void *p) {
    dnnl_memory_t m;
    dnnl_status_t s = dnnl_memory_create(&m, md, engine, (void *)p);
    if (s != dnnl_success)
        die("memory creation", s);
    return m;
}

static void run_reorder(dnnl_primitive_t r, const dnnl_memory_desc_t *from, const void *src,
                        const dnnl_memory_desc_t *to, void *dst) {
    dnnl_memory_t a = memory(from, src), b = memory(to, dst);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
    dnnl_status_t s = dnnl_primitive_execute(r, stream, 2, args);
    if (s != dnnl_success)
        die("reorder", s);
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(b);
}

static void weights_reorder(const RtDnnlConv *k, const float *from, float *to) {
    thread_setup();
    if (!k->w_reorder) {
        memcpy(to, from, dnnl_memory_desc_get_size(&k->w_prim));
        return;
    }
    bool dw = k->op == RT_CONV_DW;
    run_reorder(k->w_reorder, dw ? &k->w_prim : &k->w_user, from, dw ? &k->w_user : &k->w_prim, to);
}

void rt_dnnl_weights_in(const RtDnnlConv *k, const float *w, float *wk) {
    weights_reorder(k, w, wk);
}

void rt_dnnl_weights_out(const RtDnnlConv *k, const float *wk, float *w) {
    weights_reorder(k, wk, w);
}

void rt_dnnl_chunk(const RtDnnlConv *k, int64_t cnt, const float *a, const float *b, float *out,
                   float *scratch) {
    thread_setup();
    const Prim *P = cnt == k->g ? &k->full : &k->last;
    if (P->cnt != cnt) {
        fprintf(stderr,
                "nnq: internal error: oneDNN convolution of %lld samples, made for %lld and %lld\n",
                (long long)cnt, (long long)k->full.cnt, (long long)k->last.cnt);
        abort();
    }
    /* the user's pointer of each argument */
    const void *user[3];
    if (k->op == RT_CONV_FWD)
        user[0] = a, user[1] = b, user[2] = out;
    else if (k->op == RT_CONV_DX)
        user[0] = out, user[1] = b, user[2] = a;
    else
        user[0] = a, user[1] = out, user[2] = b;
    dnnl_exec_arg_t args[4];
    int n = 0;
    void *at[3];
    for (int i = 0; i < 3; i++) {
        const Arg *g = &P->a[i];
        at[i] = g->reorder ? (char *)scratch + g->offset : (void *)user[i];
        if (g->reorder && !P->out[i])
            run_reorder(g->reorder, &g->user, user[i], &g->prim, at[i]);
        args[n++] = (dnnl_exec_arg_t){P->args[i], memory(&g->prim, at[i])};
    }
    if (P->scratch_bytes > 0)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, memory(&P->scratch_md, scratch)};
    dnnl_status_t s = dnnl_primitive_execute(P->p, stream, n, args);
    if (s != dnnl_success)
        die("convolution", s);
    for (int i = 0; i < 3; i++)
        if (P->a[i].reorder && P->out[i])
            run_reorder(P->a[i].reorder, &P->a[i].prim, at[i], &P->a[i].user, (void *)user[i]);
    for (int i = 0; i < n; i++)
        dnnl_memory_destroy(args[i].memory);
}
