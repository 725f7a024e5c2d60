/* arch.c — the architecture record of a model file (docs/model-format.md, version 2):
 * the IR's eval function written in the inference vocabulary (runtime/infer_ops.def),
 * so that a saved model can be evaluated, served and exported without its program.
 *
 * Requires: a lowered module (m->eval as lower.c and, optionally, fuse_layers.c leave
 * it). Provides: the record's bytes up to and including the ops; the runtime appends the
 * input normalization, which is known only once the training data is loaded
 * (nnq_rt_model_arch).
 *
 * Invariants: value 0 of the record is the input; each op defines the next value; the
 * IR's source ops (input, labels, param) define none, `correct` is dropped, and a fused
 * bias_bn_eval is written as `bias` then `batchnorm` (and so on for the other fused
 * forms: bias_bn_relu_maxpool_eval as those two, `relu` and `maxpool`), so the record does not depend on
 * which IR passes ran. */
#include <assert.h>
#include <string.h>

#include "ir.h"
#include "nnq_rt.h"

typedef struct ArchBuf {
    Arena *arena;
    unsigned char *p;
    size_t len, cap;
} ArchBuf;

static void put(ArchBuf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = arena_realloc(b->arena, b->p, b->cap, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(ArchBuf *b, uint32_t v) {
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, c, 4);
}

static void put_u64(ArchBuf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(ArchBuf *b, const char *s) {
    put_u32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}

/* One op: its inputs (record value ids), tensor names and attributes. */
static void put_op(ArchBuf *b, NnqInferOp op, int nin, const int *in, int nt, const char *const *t, int na,
                   const int64_t *attr) {
    assert(nin == nnq_infer_op_inputs(op) && nt == nnq_infer_op_tensors(op) && na == nnq_infer_op_attrs(op));
    put_str(b, nnq_infer_op_name(op));
    put_u32(b, (uint32_t)nin);
    for (int i = 0; i < nin; i++) put_u32(b, (uint32_t)in[i]);
    put_u32(b, (uint32_t)nt);
    for (int i = 0; i < nt; i++) put_str(b, t[i]);
    put_u32(b, (uint32_t)na);
    for (int i = 0; i < na; i++) put_u64(b, (uint64_t)attr[i]);
}

unsigned char *arch_build(const IrModule *m, size_t *len) {
    const IrFunc *f = &m->eval;
    ArchBuf b = {.arena = m->arena};
    put_u32(&b, (uint32_t)m->input.rank);
    for (int d = 0; d < m->input.rank; d++) put_u64(&b, (uint64_t)m->input.d[d]);
    put_u32(&b, (uint32_t)m->classes);
    /* rec[v]: the record value of IR value v (-1: none); param[v]: its tensor name */
    int *rec = arena_alloc(m->arena, (size_t)f->n * sizeof *rec);
    const char **param = arena_alloc(m->arena, (size_t)f->n * sizeof *param);
    size_t count_at = b.len;
    put_u32(&b, 0); /* op count, patched below */
    int nops = 0;
    for (int v = 0; v < f->n; v++) {
        const IrInst *in = &f->insts[v];
        int a = in->args[0] >= 0 ? rec[in->args[0]] : -1, c = in->args[1] >= 0 ? rec[in->args[1]] : -1;
        const char *pa = in->args[1] >= 0 ? param[in->args[1]] : NULL;
        rec[v] = -1;
        param[v] = NULL;
        switch (in->op) {
        case IR_INPUT: rec[v] = 0; continue;
        case IR_LABELS: case IR_CORRECT: continue;
        case IR_PARAM: param[v] = m->params[in->attr[0]].name; continue;
        case IR_RESHAPE: put_op(&b, NNQ_INFER_FLATTEN, 1, &a, 0, NULL, 0, NULL); break;
        case IR_MATMUL:
            assert(!in->attr[0] && !in->attr[1] && pa);
            put_op(&b, NNQ_INFER_DENSE, 1, &a, 1, &pa, 0, NULL);
            break;
        case IR_CONV2D: case IR_DWCONV2D:
            put_op(&b, in->op == IR_CONV2D ? NNQ_INFER_CONV2D : NNQ_INFER_DWCONV2D, 1, &a, 1, &pa, 2, in->attr);
            break;
        case IR_BIAS_ADD: put_op(&b, NNQ_INFER_BIAS, 1, &a, 1, &pa, 0, NULL); break;
        case IR_BIAS_BN_EVAL: case IR_BN_EVAL: case IR_BIAS_BN_RELU_EVAL: case IR_BIAS_BN_RELU_MAXPOOL_EVAL: {
            if (in->op != IR_BN_EVAL) {
                put_op(&b, NNQ_INFER_BIAS, 1, &a, 1, &pa, 0, NULL);
                a = ++nops;
            }
            const char *bn = m->bns[in->attr[0]].name;
            const char *t[2] = {arena_printf(m->arena, "%s.running_mean", bn), arena_printf(m->arena, "%s.running_var", bn)};
            put_op(&b, NNQ_INFER_BATCHNORM, 1, &a, 2, t, 0, NULL);
            if (in->op == IR_BIAS_BN_RELU_EVAL || in->op == IR_BIAS_BN_RELU_MAXPOOL_EVAL) {
                a = ++nops;
                put_op(&b, NNQ_INFER_RELU, 1, &a, 0, NULL, 0, NULL);
            }
            if (in->op == IR_BIAS_BN_RELU_MAXPOOL_EVAL) {
                a = ++nops;
                put_op(&b, NNQ_INFER_MAXPOOL, 1, &a, 0, NULL, 2, in->attr + 1);
            }
            break;
        }
        case IR_RELU: put_op(&b, NNQ_INFER_RELU, 1, &a, 0, NULL, 0, NULL); break;
        case IR_MAXPOOL: case IR_AVGPOOL:
            put_op(&b, in->op == IR_MAXPOOL ? NNQ_INFER_MAXPOOL : NNQ_INFER_AVGPOOL, 1, &a, 0, NULL, 2, in->attr);
            break;
        case IR_RELU_MAXPOOL:
            put_op(&b, NNQ_INFER_RELU, 1, &a, 0, NULL, 0, NULL);
            a = ++nops;
            put_op(&b, NNQ_INFER_MAXPOOL, 1, &a, 0, NULL, 2, in->attr);
            break;
        case IR_ADD: put_op(&b, NNQ_INFER_ADD, 2, (int[]){a, c}, 0, NULL, 0, NULL); break;
        case IR_ADD_RELU:
            put_op(&b, NNQ_INFER_ADD, 2, (int[]){a, c}, 0, NULL, 0, NULL);
            a = ++nops;
            put_op(&b, NNQ_INFER_RELU, 1, &a, 0, NULL, 0, NULL);
            break;
        default: assert(!"an eval op with no inference form"); return NULL;
        }
        rec[v] = ++nops;
    }
    assert(f->logits >= 0 && rec[f->logits] == nops);
    unsigned char *cnt = b.p + count_at;
    cnt[0] = (unsigned char)nops, cnt[1] = (unsigned char)(nops >> 8), cnt[2] = (unsigned char)(nops >> 16),
    cnt[3] = (unsigned char)(nops >> 24);
    *len = b.len;
    return b.p;
}
