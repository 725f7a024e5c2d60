/* verify.c — the IR verifier, run between passes (always with --verify-each, and after
 * every pass in debug builds). Checks SSA order, operand counts and kinds, the shape
 * rules of each op, parameter and batch-norm indices, and that kernels only read
 * inputs they declare. A failure is an internal compiler error, not a user error. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(out, "nnqc: internal error: IR verifier: " __VA_ARGS__);                          \
        fputc('\n', out);                                                                          \
        return false;                                                                              \
    } while (0)

static bool verify_func(const IrModule *m, const IrFunc *f, FILE *out) {
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        int na = ir_op_nargs(in->op);
        for (int k = 0; k < na; k++)
            if (in->args[k] < 0 || in->args[k] >= i)
                FAIL("@%s %%%d (%s): operand %d is %%%d, not an earlier value", f->name, i,
                     ir_op_name(in->op), k, in->args[k]);
        const IrShape *s = &in->shape;
        const IrShape *a = na > 0 ? &f->insts[in->args[0]].shape : NULL;
        const IrShape *b = na > 1 ? &f->insts[in->args[1]].shape : NULL;
        switch (in->op) {
        case IR_PARAM:
        case IR_PARAM_GRAD:
            if (in->attr[0] < 0 || in->attr[0] >= m->nparams)
                FAIL("@%s %%%d: parameter index %lld out of range", f->name, i, (long long)in->attr[0]);
            if (in->op == IR_PARAM_GRAD && !ir_shape_equal(a, &m->params[in->attr[0]].shape))
                FAIL("@%s %%%d: gradient shape differs from its parameter", f->name, i);
            break;
        case IR_BN_TRAIN:
        case IR_BN_EVAL:
        case IR_BN_GRAD:
        case IR_BIAS_BN_TRAIN:
        case IR_BIAS_BN_EVAL:
        case IR_RELU_BN_GRAD:
            if (in->attr[0] < 0 || in->attr[0] >= m->nbns)
                FAIL("@%s %%%d: bn index out of range", f->name, i);
            if ((a->rank != 2 && a->rank != 4) || a->d[1] != m->bns[in->attr[0]].features || !ir_shape_equal(a, s))
                FAIL("@%s %%%d: bn shape mismatch", f->name, i);
            if ((in->op == IR_BIAS_BN_TRAIN || in->op == IR_BIAS_BN_EVAL) && (b->rank != 1 || b->d[0] != a->d[1]))
                FAIL("@%s %%%d: %s bias shape mismatch", f->name, i, ir_op_name(in->op));
            if ((in->op == IR_BN_GRAD || in->op == IR_RELU_BN_GRAD) && !ir_shape_equal(a, b))
                FAIL("@%s %%%d: %s operands differ in shape", f->name, i, ir_op_name(in->op));
            break;
        case IR_MATMUL: {
            int64_t am = a->d[in->attr[0] ? 1 : 0], ak = a->d[in->attr[0] ? 0 : 1];
            int64_t bk = b->d[in->attr[1] ? 1 : 0], bn = b->d[in->attr[1] ? 0 : 1];
            if (a->rank != 2 || b->rank != 2 || s->rank != 2 || ak != bk || s->d[0] != am ||
                s->d[1] != bn)
                FAIL("@%s %%%d: matmul shapes do not agree", f->name, i);
            break;
        }
        case IR_BIAS_ADD:
            if (a->rank < 2 || b->rank != 1 || a->d[1] != b->d[0] || !ir_shape_equal(a, s))
                FAIL("@%s %%%d: bias_add shapes do not agree", f->name, i);
            break;
        case IR_CONV2D: {
            int64_t st = in->attr[0], pd = in->attr[1];
            if (a->rank != 4 || b->rank != 4 || s->rank != 4 || b->d[1] != a->d[1] || s->d[1] != b->d[0] ||
                st < 1 || s->d[2] != (a->d[2] + 2 * pd - b->d[2]) / st + 1 ||
                s->d[3] != (a->d[3] + 2 * pd - b->d[3]) / st + 1)
                FAIL("@%s %%%d: conv2d shapes do not agree", f->name, i);
            break;
        }
        case IR_DWCONV2D: {
            int64_t st = in->attr[0], pd = in->attr[1];
            if (a->rank != 4 || b->rank != 4 || s->rank != 4 || b->d[1] != 1 || b->d[0] != a->d[1] ||
                s->d[1] != a->d[1] || st < 1 || s->d[2] != (a->d[2] + 2 * pd - b->d[2]) / st + 1 ||
                s->d[3] != (a->d[3] + 2 * pd - b->d[3]) / st + 1)
                FAIL("@%s %%%d: dwconv2d shapes do not agree", f->name, i);
            break;
        }
        case IR_CONV2D_DX:
        case IR_CONV2D_DW:
        case IR_DWCONV2D_DX:
        case IR_DWCONV2D_DW:
        case IR_MAXPOOL_GRAD: {
            bool dx = in->op == IR_CONV2D_DX || in->op == IR_DWCONV2D_DX;
            IrOp fwd = in->op == IR_CONV2D_DW ? IR_CONV2D : in->op == IR_DWCONV2D_DW ? IR_DWCONV2D : IR_MAXPOOL;
            const IrInst *src = &f->insts[in->args[dx ? 0 : 1]];
            if (!dx && src->op != fwd) FAIL("@%s %%%d: %s must name its forward op", f->name, i, ir_op_name(in->op));
            if (in->op == IR_CONV2D_DX && (s->rank != 4 || b->rank != 4 || s->d[1] != b->d[1]))
                FAIL("@%s %%%d: conv2d_dx shapes do not agree", f->name, i);
            if (in->op == IR_DWCONV2D_DX && (s->rank != 4 || b->rank != 4 || s->d[1] != b->d[0] || b->d[1] != 1))
                FAIL("@%s %%%d: dwconv2d_dx shapes do not agree", f->name, i);
            break;
        }
        case IR_AVGPOOL_GRAD:
            if (a->rank != 4 || s->rank != 4 || s->d[1] != a->d[1] || in->attr[0] < 1 || in->attr[1] < 1 ||
                a->d[2] != (s->d[2] - in->attr[0]) / in->attr[1] + 1)
                FAIL("@%s %%%d: avgpool_grad shapes do not agree", f->name, i);
            break;
        case IR_AVGPOOL:
        case IR_MAXPOOL:
            if (a->rank != 4 || s->rank != 4 || s->d[1] != a->d[1] || in->attr[0] < 1 || in->attr[1] < 1)
                FAIL("@%s %%%d: maxpool shapes do not agree", f->name, i);
            break;
        case IR_ADD:
        case IR_RELU_GRAD:
            if (!ir_shape_equal(a, b) || !ir_shape_equal(a, s))
                FAIL("@%s %%%d: %s operands differ in shape", f->name, i, ir_op_name(in->op));
            break;
        case IR_RELU:
        case IR_DROPOUT:
            if (!ir_shape_equal(a, s)) FAIL("@%s %%%d: %s changes shape", f->name, i, ir_op_name(in->op));
            if (in->op == IR_DROPOUT && (in->attr[0] <= 0 || in->attr[0] >= 1000000))
                FAIL("@%s %%%d: dropout rate %lld out of (0, 1e6)", f->name, i, (long long)in->attr[0]);
            break;
        case IR_DROPOUT_GRAD:
            if (f->insts[in->args[1]].op != IR_DROPOUT || !ir_shape_equal(a, s) ||
                !ir_shape_equal(&f->insts[in->args[1]].shape, s))
                FAIL("@%s %%%d: dropout_grad must name its dropout, of the same shape", f->name, i);
            break;
        case IR_RESHAPE:
            if (ir_shape_elems(a) != ir_shape_elems(s)) FAIL("@%s %%%d: reshape changes size", f->name, i);
            break;
        case IR_XENT:
        case IR_CORRECT:
        case IR_XENT_GRAD:
            if (a->rank != 2 || f->insts[in->args[1]].dtype != IR_I32)
                FAIL("@%s %%%d: %s needs logits [N, C] and i32 labels", f->name, i, ir_op_name(in->op));
            break;
        case IR_BIAS_GRAD:
            if (a->rank < 2 || s->rank != 1 || s->d[0] != a->d[1])
                FAIL("@%s %%%d: bias_grad shape mismatch", f->name, i);
            break;
        default: break;
        }
    }
    return true;
}

/* Every node under `root` is a constant, an operation, a declared per-element input or
 * a scalar: no VAR left from projection instantiation. */
static bool kernel_closed(const SxPool *p, int root, int nin) {
    char *seen = calloc(root + 1, 1);
    bool ok = true;
    seen[root] = 1;
    for (int i = root; i >= 0 && ok; i--) {
        if (!seen[i]) continue;
        const SxNode *n = sx_node(p, i);
        if (n->op == SX_VAR) ok = false;
        if (n->op == SX_INPUT && n->slot < IR_SCALAR_SLOT(0) && n->slot >= nin) ok = false;
        if (n->a >= 0) seen[n->a] = 1;
        if (n->b >= 0) seen[n->b] = 1;
        if (n->c >= 0) seen[n->c] = 1;
    }
    free(seen);
    return ok;
}

bool verify_module(const IrModule *m, FILE *out) {
    if (!verify_func(m, &m->train, out) || !verify_func(m, &m->eval, out)) return false;
    if (m->train.loss < 0 || m->train.insts[m->train.loss].op != IR_XENT)
        FAIL("@train has no loss");
    for (int w = 0; w < 2; w++) {
        const IrFunc *f = w ? &m->eval : &m->train;
        if (f->correct < 0 || f->correct >= f->n || f->insts[f->correct].op != IR_CORRECT)
            FAIL("@%s has no correct count", f->name ? f->name : "?");
        if (f->logits >= f->n) FAIL("@%s: its logits are not a value", f->name ? f->name : "?");
    }
    for (int i = 0; m->kernels && i < m->nparams; i++)
        for (int j = 0; j < 4; j++) {
            const IrKernel *k = &m->kernels[i][j];
            if (!k->name) continue;
            for (int o = 0; o < k->nout; o++) {
                int root = k->out[o].node;
                if (root < 0 || root >= sx_count(m->prog->pool))
                    FAIL("kernel %s.%s: output %d has no expression", k->name, m->params[i].name, o);
                if (!kernel_closed(m->prog->pool, root, k->nin))
                    FAIL("kernel %s.%s: output %d uses a projection variable or an undeclared input",
                         k->name, m->params[i].name, o);
            }
        }
    return true;
}
