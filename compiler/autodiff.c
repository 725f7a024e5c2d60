/* autodiff.c — reverse-mode differentiation of the `train` function.
 *
 * Requires: m->train holds the forward pass ending in XENT (the loss) and CORRECT.
 * Produces: backward instructions appended to m->train, ending with one PARAM_GRAD per
 * parameter. Only values that depend on a parameter get an adjoint (the input batch
 * needs none, so the first layer's input gradient GEMM is never emitted). Adjoints of
 * a value used several times are summed with ADD. Preserves the forward part.
 *
 * Each differentiable op's rule is the function its row of ir_ops.def names (GRAD):
 * grad_OP(ad, i, in, g) emits the adjoints of instruction i's operands from g, the
 * adjoint of its value, and accumulates them. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct Ad {
    IrModule *m;
    IrFunc *f;
    int *adj;       /* forward value -> adjoint value, -1 none */
    bool *needs;    /* forward value depends on a parameter */
} Ad;

static int emit_like(Ad *ad, IrOp op, int a, int b, int shape_of, int64_t attr0) {
    IrInst *src = &ad->f->insts[shape_of];
    IrShape s = src->shape;
    SrcLoc loc = src->loc;
    const char *name = src->name;
    int v = ir_emit(ad->m, ad->f, op, a, b, s, IR_F32);
    ad->f->insts[v].attr[0] = attr0;
    ad->f->insts[v].loc = loc;
    ad->f->insts[v].name = name;
    return v;
}

static void accumulate(Ad *ad, int value, int delta) {
    if (!ad->needs[value]) return;
    if (ad->adj[value] < 0) ad->adj[value] = delta;
    else ad->adj[value] = emit_like(ad, IR_ADD, ad->adj[value], delta, value, 0);
}

/* A gradient rule: instruction i (a copy, `in`: emitting may move the array) with
 * adjoint g. */
typedef void GradRule(Ad *ad, int i, const IrInst *in, int g);

/* The root: d loss / d logits = xent_grad (the seed d loss / d loss = 1 folded in; g
 * unused). */
static void grad_xent(Ad *ad, int i, const IrInst *in, int g) {
    int logits = in->args[0];
    accumulate(ad, logits, emit_like(ad, IR_XENT_GRAD, logits, in->args[1], logits, 0));
}

/* A parameter's adjoint is complete when the walk reaches it (its uses all come later);
 * autodiff_module stores each into a PARAM_GRAD after the walk, in parameter order. */
static void grad_param(Ad *ad, int i, const IrInst *in, int g) {}

static void grad_reshape(Ad *ad, int i, const IrInst *in, int g) {
    int v = emit_like(ad, IR_RESHAPE, g, -1, in->args[0], 0);
    accumulate(ad, in->args[0], v);
}

/* y = a b:  da = g b^T,  db = a^T g */
static void grad_matmul(Ad *ad, int i, const IrInst *in, int g) {
    int a = in->args[0], b = in->args[1];
    assert(in->attr[0] == 0 && in->attr[1] == 0);
    if (ad->needs[a]) {
        int da = emit_like(ad, IR_MATMUL, g, b, a, 0);
        ad->f->insts[da].attr[1] = 1;
        accumulate(ad, a, da);
    }
    if (ad->needs[b]) {
        int db = emit_like(ad, IR_MATMUL, a, g, b, 1);
        accumulate(ad, b, db);
    }
}

/* A convolution's input gradient (dx_op: the conv's attributes) and weight gradient
 * (dw_op: names the conv, whose input it reads). */
static void conv_grad(Ad *ad, int i, const IrInst *in, int g, IrOp dx_op, IrOp dw_op) {
    int a = in->args[0], b = in->args[1];
    if (ad->needs[a]) {
        int dx = emit_like(ad, dx_op, g, b, a, in->attr[0]);
        ad->f->insts[dx].attr[1] = in->attr[1];
        accumulate(ad, a, dx);
    }
    if (ad->needs[b]) accumulate(ad, b, emit_like(ad, dw_op, g, i, b, 0));
}

static void grad_conv2d(Ad *ad, int i, const IrInst *in, int g) {
    conv_grad(ad, i, in, g, IR_CONV2D_DX, IR_CONV2D_DW);
}

static void grad_dwconv2d(Ad *ad, int i, const IrInst *in, int g) {
    conv_grad(ad, i, in, g, IR_DWCONV2D_DX, IR_DWCONV2D_DW);
}

static void grad_maxpool(Ad *ad, int i, const IrInst *in, int g) {
    accumulate(ad, in->args[0], emit_like(ad, IR_MAXPOOL_GRAD, g, i, in->args[0], 0));
}

static void grad_avgpool(Ad *ad, int i, const IrInst *in, int g) {
    int dx = emit_like(ad, IR_AVGPOOL_GRAD, g, -1, in->args[0], in->attr[0]);
    ad->f->insts[dx].attr[1] = in->attr[1];
    accumulate(ad, in->args[0], dx);
}

static void grad_bias_add(Ad *ad, int i, const IrInst *in, int g) {
    int a = in->args[0], b = in->args[1];
    accumulate(ad, a, g);
    if (ad->needs[b]) accumulate(ad, b, emit_like(ad, IR_BIAS_GRAD, g, -1, b, 0));
}

static void grad_add(Ad *ad, int i, const IrInst *in, int g) {
    accumulate(ad, in->args[0], g);
    accumulate(ad, in->args[1], g);
}

static void grad_relu(Ad *ad, int i, const IrInst *in, int g) {
    accumulate(ad, in->args[0], emit_like(ad, IR_RELU_GRAD, g, i, in->args[0], 0));
}

static void grad_dropout(Ad *ad, int i, const IrInst *in, int g) {
    accumulate(ad, in->args[0], emit_like(ad, IR_DROPOUT_GRAD, g, i, in->args[0], 0));
}

static void grad_bn_train(Ad *ad, int i, const IrInst *in, int g) {
    int dx = emit_like(ad, IR_BN_GRAD, g, i, in->args[0], in->attr[0]);
    ad->f->insts[dx].name = in->name;
    accumulate(ad, in->args[0], dx);
}

/* The GRAD column of ir_ops.def. */
#define NONE NULL
static GradRule *const grad_rules[IR_OP_COUNT] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) grad,
#include "ir_ops.def"
#undef IR_OP
};
#undef NONE

void autodiff_module(IrModule *m) {
    IrFunc *f = &m->train;
    int nfwd = f->n;
    Ad ad = {.m = m, .f = f};
    ad.adj = malloc(sizeof(int) * nfwd);
    ad.needs = calloc(nfwd, sizeof(bool));
    for (int i = 0; i < nfwd; i++) {
        ad.adj[i] = -1;
        IrInst *in = &f->insts[i];
        if (in->op == IR_PARAM) ad.needs[i] = true;
        for (int k = 0; k < ir_op_nargs(in->op); k++)
            if (in->args[k] >= 0 && ad.needs[in->args[k]] && grad_rules[in->op]) ad.needs[i] = true;
    }
    assert(f->loss >= 0);
    IrInst loss = f->insts[f->loss]; /* the root: its rule folds in the seed */
    grad_rules[loss.op](&ad, f->loss, &loss, -1);
    for (int i = nfwd - 1; i >= 0; i--) {
        int g = ad.adj[i];
        if (g < 0) continue;
        IrInst in = f->insts[i]; /* copy: emitting may move the array */
        assert(grad_rules[in.op] && "no gradient rule for this op");
        grad_rules[in.op](&ad, i, &in, g);
    }
    for (int i = 0; i < nfwd; i++) {
        if (f->insts[i].op != IR_PARAM || ad.adj[i] < 0) continue;
        int v = emit_like(&ad, IR_PARAM_GRAD, ad.adj[i], -1, i, f->insts[i].attr[0]);
        f->insts[v].shape.rank = 0;
    }
    free(ad.adj);
    free(ad.needs);
}
