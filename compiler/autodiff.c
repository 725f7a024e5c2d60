/* autodiff.c — reverse-mode differentiation of the `train` function.
 *
 * Requires: m->train holds the forward pass ending in XENT (the loss) and CORRECT.
 * Produces: backward instructions appended to m->train, ending with one PARAM_GRAD per
 * parameter. Only values that depend on a parameter get an adjoint (the input batch
 * needs none, so the first layer's input gradient GEMM is never emitted). Adjoints of
 * a value used several times are summed with ADD. Preserves the forward part. */
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
            if (in->args[k] >= 0 && ad.needs[in->args[k]] && ir_op_differentiable(in->op))
                ad.needs[i] = true;
    }
    assert(f->loss >= 0);
    /* The loss is the root: d loss / d logits = xent_grad (seed 1 folded in). */
    const IrInst *loss = &f->insts[f->loss];
    int logits = loss->args[0];
    accumulate(&ad, logits, emit_like(&ad, IR_XENT_GRAD, logits, loss->args[1], logits, 0));
    for (int i = nfwd - 1; i >= 0; i--) {
        int g = ad.adj[i];
        if (g < 0) continue;
        IrInst in = f->insts[i]; /* copy: emitting may move the array */
        int a = in.args[0], b = in.args[1];
        switch (in.op) {
        case IR_PARAM: break;
        case IR_RESHAPE: {
            int v = emit_like(&ad, IR_RESHAPE, g, -1, a, 0);
            accumulate(&ad, a, v);
            break;
        }
        case IR_MATMUL: {
            assert(in.attr[0] == 0 && in.attr[1] == 0);
            /* y = a b:  da = g b^T,  db = a^T g */
            if (ad.needs[a]) {
                int da = emit_like(&ad, IR_MATMUL, g, b, a, 0);
                f->insts[da].attr[1] = 1;
                accumulate(&ad, a, da);
            }
            if (ad.needs[b]) {
                int db = emit_like(&ad, IR_MATMUL, a, g, b, 1);
                accumulate(&ad, b, db);
            }
            break;
        }
        case IR_CONV2D:
        case IR_DWCONV2D: {
            bool dw = in.op == IR_DWCONV2D;
            if (ad.needs[a]) {
                int dx = emit_like(&ad, dw ? IR_DWCONV2D_DX : IR_CONV2D_DX, g, b, a, in.attr[0]);
                f->insts[dx].attr[1] = in.attr[1];
                accumulate(&ad, a, dx);
            }
            if (ad.needs[b]) accumulate(&ad, b, emit_like(&ad, dw ? IR_DWCONV2D_DW : IR_CONV2D_DW, g, i, b, 0));
            break;
        }
        case IR_MAXPOOL: accumulate(&ad, a, emit_like(&ad, IR_MAXPOOL_GRAD, g, i, a, 0)); break;
        case IR_AVGPOOL: {
            int dx = emit_like(&ad, IR_AVGPOOL_GRAD, g, -1, a, in.attr[0]);
            f->insts[dx].attr[1] = in.attr[1];
            accumulate(&ad, a, dx);
            break;
        }
        case IR_BIAS_ADD:
            accumulate(&ad, a, g);
            if (ad.needs[b]) accumulate(&ad, b, emit_like(&ad, IR_BIAS_GRAD, g, -1, b, 0));
            break;
        case IR_ADD:
            accumulate(&ad, a, g);
            accumulate(&ad, b, g);
            break;
        case IR_RELU: accumulate(&ad, a, emit_like(&ad, IR_RELU_GRAD, g, i, a, 0)); break;
        case IR_DROPOUT: accumulate(&ad, a, emit_like(&ad, IR_DROPOUT_GRAD, g, i, a, 0)); break;
        case IR_BN_TRAIN: {
            int dx = emit_like(&ad, IR_BN_GRAD, g, i, a, in.attr[0]);
            f->insts[dx].name = in.name;
            accumulate(&ad, a, dx);
            break;
        }
        default: assert(!"no adjoint rule for this op");
        }
    }
    for (int i = 0; i < nfwd; i++) {
        if (f->insts[i].op != IR_PARAM || ad.adj[i] < 0) continue;
        int v = emit_like(&ad, IR_PARAM_GRAD, ad.adj[i], -1, i, f->insts[i].attr[0]);
        f->insts[v].shape.rank = 0;
    }
    free(ad.adj);
    free(ad.needs);
}
