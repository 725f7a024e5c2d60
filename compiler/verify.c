/* verify.c — the IR verifier, run between passes (always with --verify-each, and after
 * every pass in debug builds). Checks SSA order, operand counts and kinds, the shape
 * rules of each op, parameter and batch-norm indices, that kernels only read
 * inputs they declare, and that a value an update carries in is stored by the update
 * and by the soft kernel. A failure after a pass is an internal compiler error; in a module
 * read from IR text (nnqc --from-ir) it is that file's error. Each op's shape rule is
 * the function its row of ir_ops.def names (SHAPE). */
#define _GNU_SOURCE /* vasprintf */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* A failure's report: after a pass, an internal error ("nnqc: internal error: IR
 * verifier: MSG"); in a module read from IR text (`text`), that file's error, located at
 * the instruction where there is one (FILE:LINE:COL, the line and a caret). */
static void report(FILE *out, const SourceFile *text, const IrInst *in, const char *msg) {
    if (!text) {
        fprintf(out, "nnqc: internal error: IR verifier: %s\n", msg);
    } else if (in && in->loc.file == text) {
        Diag *d = diag_new(out);
        diag_error(d, in->loc, "%s", msg);
        diag_free(d);
    } else {
        fprintf(out, "%s: error: %s\n", text->path, msg);
    }
}

/* The message of a failure, formatted (NULL when out of memory). */
static char *message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        char *msg_ = message(__VA_ARGS__);                                                         \
        report(out, text, NULL, msg_ ? msg_ : "out of memory");                                    \
        free(msg_);                                                                                \
        return false;                                                                              \
    } while (0)

/* A shape rule's view of one instruction: where it is, its operands' shapes a, b (NULL
 * past its operand count) and its own, s. */
typedef struct Check {
    const IrModule *m;
    const IrFunc *f;
    int i;
    const IrInst *in;
    const IrShape *s, *a, *b;
    FILE *out;
    const SourceFile *text; /* the IR text the module was read from, or NULL after a pass */
} Check;

/* A rule's failure, located: "@FUNC %I: " and the message. */
#define FAIL_AT(c, ...)                                                                            \
    do {                                                                                           \
        char *msg_ = message(__VA_ARGS__);                                                         \
        char *at_ = message("@%s %%%d: %s", (c)->f->name, (c)->i, msg_ ? msg_ : "out of memory");  \
        report((c)->out, (c)->text, (c)->in, at_ ? at_ : "out of memory");                         \
        free(msg_);                                                                                \
        free(at_);                                                                                 \
        return false;                                                                              \
    } while (0)

/* ---- shape rules: the functions ir_ops.def's SHAPE column names ---- */

static bool shape_param(const Check *c) {
    const IrInst *in = c->in;
    if (in->attr[0] < 0 || in->attr[0] >= c->m->nparams)
        FAIL_AT(c, "parameter index %lld out of range", (long long)in->attr[0]);
    if (in->op == IR_PARAM_GRAD && !ir_shape_equal(c->a, &c->m->params[in->attr[0]].shape))
        FAIL_AT(c, "gradient shape differs from its parameter");
    return true;
}

/* bn_train, bn_eval, bn_grad and the fused forms */
static bool shape_bn(const Check *c) {
    const IrInst *in = c->in;
    const IrShape *a = c->a, *b = c->b;
    if (in->attr[0] < 0 || in->attr[0] >= c->m->nbns) FAIL_AT(c, "bn index out of range");
    if ((a->rank != 2 && a->rank != 4) || a->d[1] != c->m->bns[in->attr[0]].features || !ir_shape_equal(a, c->s))
        FAIL_AT(c, "bn shape mismatch");
    bool biased = in->op == IR_BIAS_BN_TRAIN || in->op == IR_BIAS_BN_EVAL || in->op == IR_BIAS_BN_RELU_TRAIN ||
                  in->op == IR_BIAS_BN_RELU_EVAL;
    if (biased && (b->rank != 1 || b->d[0] != a->d[1])) FAIL_AT(c, "%s bias shape mismatch", ir_op_name(in->op));
    if ((in->op == IR_BN_GRAD || in->op == IR_RELU_BN_GRAD || in->op == IR_BIAS_RELU_BN_GRAD) && !ir_shape_equal(a, b))
        FAIL_AT(c, "%s operands differ in shape", ir_op_name(in->op));
    if (in->op == IR_BIAS_RELU_BN_GRAD) {
        const IrShape *bias = &c->f->insts[in->args[2]].shape;
        if (bias->rank != 1 || bias->d[0] != a->d[1]) FAIL_AT(c, "%s bias shape mismatch", ir_op_name(in->op));
    }
    return true;
}

/* bias_bn_relu_stats_train: a biased batch norm's operands, its channels' means */
static bool shape_bn_stats(const Check *c) {
    const IrInst *in = c->in;
    const IrShape *a = c->a, *b = c->b, *s = c->s;
    if (in->attr[0] < 0 || in->attr[0] >= c->m->nbns) FAIL_AT(c, "bn index out of range");
    if ((a->rank != 2 && a->rank != 4) || a->d[1] != c->m->bns[in->attr[0]].features || b->rank != 1 ||
        b->d[0] != a->d[1] || s->rank != 1 || s->d[0] != a->d[1])
        FAIL_AT(c, "%s shapes do not agree", ir_op_name(in->op));
    return true;
}

static bool shape_matmul(const Check *c) {
    const IrShape *s = c->s, *a = c->a, *b = c->b;
    int64_t am = a->d[c->in->attr[0] ? 1 : 0], ak = a->d[c->in->attr[0] ? 0 : 1];
    int64_t bk = b->d[c->in->attr[1] ? 1 : 0], bn = b->d[c->in->attr[1] ? 0 : 1];
    if (a->rank != 2 || b->rank != 2 || s->rank != 2 || ak != bk || s->d[0] != am || s->d[1] != bn)
        FAIL_AT(c, "matmul shapes do not agree");
    return true;
}

static bool shape_bias_add(const Check *c) {
    if (c->a->rank < 2 || c->b->rank != 1 || c->a->d[1] != c->b->d[0] || !ir_shape_equal(c->a, c->s))
        FAIL_AT(c, "bias_add shapes do not agree");
    return true;
}

/* The output size of a window k at stride st and padding pd over n. */
static int64_t window_out(int64_t n, int64_t k, int64_t st, int64_t pd) { return (n + 2 * pd - k) / st + 1; }

static bool shape_conv2d(const Check *c) {
    const IrShape *s = c->s, *a = c->a, *b = c->b;
    int64_t st = c->in->attr[0], pd = c->in->attr[1];
    if (a->rank != 4 || b->rank != 4 || s->rank != 4 || b->d[1] != a->d[1] || s->d[1] != b->d[0] || st < 1 ||
        s->d[2] != window_out(a->d[2], b->d[2], st, pd) || s->d[3] != window_out(a->d[3], b->d[3], st, pd))
        FAIL_AT(c, "conv2d shapes do not agree");
    return true;
}

/* dwconv2d of x (shape a) and w (shape b) */
static bool dwconv2d_shapes(const Check *c, const IrShape *a) {
    const IrShape *s = c->s, *b = c->b;
    int64_t st = c->in->attr[0], pd = c->in->attr[1];
    if (a->rank != 4 || b->rank != 4 || s->rank != 4 || b->d[1] != 1 || b->d[0] != a->d[1] || s->d[1] != a->d[1] ||
        st < 1 || s->d[2] != window_out(a->d[2], b->d[2], st, pd) || s->d[3] != window_out(a->d[3], b->d[3], st, pd))
        FAIL_AT(c, "%s shapes do not agree", ir_op_name(c->in->op));
    return true;
}

static bool shape_dwconv2d(const Check *c) { return dwconv2d_shapes(c, c->a); }

/* dwconv2d_bn_relu: a dwconv2d of the values of its first operand's batch norm, whose
 * input x gives the shape */
static bool shape_dwconv2d_bn(const Check *c) {
    const IrInst *stats = &c->f->insts[c->in->args[0]];
    if (stats->op != IR_BIAS_BN_RELU_STATS_TRAIN)
        FAIL_AT(c, "%s must read a bias_bn_relu_stats_train", ir_op_name(c->in->op));
    return dwconv2d_shapes(c, &c->f->insts[stats->args[0]].shape);
}

static bool shape_conv2d_dx(const Check *c) {
    if (c->s->rank != 4 || c->b->rank != 4 || c->s->d[1] != c->b->d[1]) FAIL_AT(c, "conv2d_dx shapes do not agree");
    return true;
}

static bool shape_dwconv2d_dx(const Check *c) {
    if (c->s->rank != 4 || c->b->rank != 4 || c->s->d[1] != c->b->d[0] || c->b->d[1] != 1)
        FAIL_AT(c, "dwconv2d_dx shapes do not agree");
    return true;
}

/* bias_bn_relu_maxpool_train: a biased batch norm's operands, a maxpool's result */
static bool shape_bn_pool(const Check *c) {
    const IrInst *in = c->in;
    const IrShape *a = c->a, *b = c->b, *s = c->s;
    int64_t k = in->attr[1], st = in->attr[2];
    if (in->attr[0] < 0 || in->attr[0] >= c->m->nbns) FAIL_AT(c, "bn index out of range");
    if (a->rank != 4 || a->d[1] != c->m->bns[in->attr[0]].features || b->rank != 1 || b->d[0] != a->d[1])
        FAIL_AT(c, "%s batch-norm shape mismatch", ir_op_name(in->op));
    if (k < 1 || st < 1 || s->rank != 4 || s->d[0] != a->d[0] || s->d[1] != a->d[1] ||
        s->d[2] != window_out(a->d[2], k, st, 0) || s->d[3] != window_out(a->d[3], k, st, 0))
        FAIL_AT(c, "%s shapes do not agree", ir_op_name(in->op));
    return true;
}

/* A gradient op whose second operand is its forward op, `fwd` (ARG1 FWD_INPUT or FWD_SIDE). */
static bool names_forward(const Check *c, IrOp fwd) {
    if (c->f->insts[c->in->args[1]].op != fwd) FAIL_AT(c, "%s must name its forward op", ir_op_name(c->in->op));
    return true;
}

static bool shape_conv2d_dw(const Check *c) { return names_forward(c, IR_CONV2D); }
static bool shape_dwconv2d_dw(const Check *c) {
    return names_forward(c, c->f->insts[c->in->args[1]].op == IR_DWCONV2D_BN_RELU ? IR_DWCONV2D_BN_RELU : IR_DWCONV2D);
}
static bool shape_maxpool_grad(const Check *c) {
    IrOp fwd = c->f->insts[c->in->args[1]].op;
    if (fwd == IR_RELU_MAXPOOL || fwd == IR_BIAS_BN_RELU_MAXPOOL_TRAIN) return true;
    return names_forward(c, IR_MAXPOOL);
}

/* maxpool, avgpool */
static bool shape_pool(const Check *c) {
    if (c->a->rank != 4 || c->s->rank != 4 || c->s->d[1] != c->a->d[1] || c->in->attr[0] < 1 || c->in->attr[1] < 1)
        FAIL_AT(c, "%s shapes do not agree", ir_op_name(c->in->op));
    return true;
}

static bool shape_avgpool_grad(const Check *c) {
    const IrShape *s = c->s, *a = c->a;
    int64_t k = c->in->attr[0], st = c->in->attr[1];
    if (a->rank != 4 || s->rank != 4 || s->d[1] != a->d[1] || k < 1 || st < 1 || a->d[2] != window_out(s->d[2], k, st, 0))
        FAIL_AT(c, "avgpool_grad shapes do not agree");
    return true;
}

/* add, relu_grad, add_relu, add_relu_grad: operands and result of one shape */
static bool shape_same(const Check *c) {
    if (!ir_shape_equal(c->a, c->b) || !ir_shape_equal(c->a, c->s))
        FAIL_AT(c, "%s operands differ in shape", ir_op_name(c->in->op));
    if (ir_op_nargs(c->in->op) == 3 && !ir_shape_equal(&c->f->insts[c->in->args[2]].shape, c->s))
        FAIL_AT(c, "%s operands differ in shape", ir_op_name(c->in->op));
    return true;
}

static bool shape_unary(const Check *c) {
    if (!ir_shape_equal(c->a, c->s)) FAIL_AT(c, "%s changes shape", ir_op_name(c->in->op));
    return true;
}

static bool shape_dropout(const Check *c) {
    if (!shape_unary(c)) return false;
    if (c->in->attr[0] <= 0 || c->in->attr[0] >= 1000000)
        FAIL_AT(c, "dropout rate %lld out of (0, 1e6)", (long long)c->in->attr[0]);
    return true;
}

static bool shape_dropout_grad(const Check *c) {
    const IrInst *drop = &c->f->insts[c->in->args[1]];
    if (drop->op != IR_DROPOUT || !ir_shape_equal(c->a, c->s) || !ir_shape_equal(&drop->shape, c->s))
        FAIL_AT(c, "dropout_grad must name its dropout, of the same shape");
    return true;
}

static bool shape_reshape(const Check *c) {
    if (ir_shape_elems(c->a) != ir_shape_elems(c->s)) FAIL_AT(c, "reshape changes size");
    return true;
}

/* xent, correct, xent_grad */
static bool shape_loss(const Check *c) {
    if (c->a->rank != 2 || c->f->insts[c->in->args[1]].dtype != IR_I32)
        FAIL_AT(c, "%s needs logits [N, C] and i32 labels", ir_op_name(c->in->op));
    return true;
}

/* bias_relu_bn_maxpool_grad: the pooled gradient of its batch norm's fused pool, the
 * pool's input's shape */
static bool shape_bn_pool_grad(const Check *c) {
    const IrInst *in = c->in, *pool = &c->f->insts[in->args[1]];
    if (pool->op != IR_BIAS_BN_RELU_MAXPOOL_TRAIN || pool->attr[0] != in->attr[0])
        FAIL_AT(c, "%s must name its batch norm's bias_bn_relu_maxpool_train", ir_op_name(in->op));
    if (!ir_shape_equal(c->a, &pool->shape) || !ir_shape_equal(c->s, &c->f->insts[pool->args[0]].shape))
        FAIL_AT(c, "%s shapes do not agree", ir_op_name(in->op));
    return true;
}

static bool shape_bias_grad(const Check *c) {
    if (c->a->rank < 2 || c->s->rank != 1 || c->s->d[0] != c->a->d[1]) FAIL_AT(c, "bias_grad shape mismatch");
    return true;
}

/* bias_grad_bn: a bias_grad whose operand a batch norm's gradient of the same bn made */
static bool shape_bias_grad_bn(const Check *c) {
    const IrInst *g = &c->f->insts[c->in->args[0]];
    if ((g->op != IR_BN_GRAD && g->op != IR_RELU_BN_GRAD && g->op != IR_BIAS_RELU_BN_GRAD &&
         g->op != IR_BIAS_RELU_BN_MAXPOOL_GRAD) || g->attr[0] != c->in->attr[0])
        FAIL_AT(c, "bias_grad_bn must read the output of its batch norm's gradient");
    return shape_bias_grad(c);
}

/* The SHAPE column of ir_ops.def. */
typedef bool ShapeRule(const Check *c);
#define NONE NULL
static ShapeRule *const shape_rules[IR_OP_COUNT] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) shape,
#include "ir_ops.def"
#undef IR_OP
};
#undef NONE

static bool verify_func(const IrModule *m, const IrFunc *f, FILE *out, const SourceFile *text) {
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        int na = ir_op_nargs(in->op);
        for (int k = 0; k < na; k++)
            if (in->args[k] < 0 || in->args[k] >= i)
                FAIL("@%s %%%d (%s): operand %d is %%%d, not an earlier value", f->name, i,
                     ir_op_name(in->op), k, in->args[k]);
        Check c = {.m = m, .f = f, .i = i, .in = in, .s = &in->shape, .out = out, .text = text,
                   .a = na > 0 ? &f->insts[in->args[0]].shape : NULL,
                   .b = na > 1 ? &f->insts[in->args[1]].shape : NULL};
        if (shape_rules[in->op] && !shape_rules[in->op](&c)) return false;
    }
    return true;
}

/* Does kernel k store buffer `buf` component `comp`? */
static bool kernel_stores(const IrKernel *k, IrBufKind buf, int comp) {
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].buf == buf && k->out[o].comp == comp) return true;
    return false;
}

/* Every node under `root` is a constant, an operation, a declared per-element input or
 * a scalar: no VAR left from projection instantiation. A walk of the nodes under root
 * only (seen: all 0 on entry and on return; list: room for every node of the pool):
 * every kernel's nodes are in one pool, and a scan of the pool below each root took time
 * quadratic in the parameters (a fifth of a 1,500-layer program's compile). */
static bool kernel_closed(const SxPool *p, int root, int nin, unsigned char *seen, int *list) {
    int n = 0;
    bool ok = true;
    list[n++] = root;
    seen[root] = 1;
    for (int at = 0; at < n; at++) {
        const SxNode *x = sx_node(p, list[at]);
        if (x->op == SX_VAR) ok = false;
        if (x->op == SX_INPUT && x->slot < IR_SCALAR_SLOT(0) && x->slot >= nin) ok = false;
        const int kids[3] = {x->a, x->b, x->c};
        for (int k = 0; k < 3; k++)
            if (kids[k] >= 0 && !seen[kids[k]]) seen[kids[k]] = 1, list[n++] = kids[k];
    }
    for (int at = 0; at < n; at++) seen[list[at]] = 0;
    return ok;
}

/* Each parameter's kernels: outputs closed expressions; what the update carries in, stored
 * by the update and the soft kernel. */
static bool verify_kernels(const IrModule *m, FILE *out, const SourceFile *text, unsigned char *seen, int *list) {
    for (int i = 0; i < m->nparams; i++)
        for (int j = 0; j < 4; j++) {
            const IrKernel *k = &m->kernels[i][j];
            if (!k->name) continue;
            for (int o = 0; o < k->nout; o++) {
                int root = k->out[o].node;
                if (root < 0 || root >= sx_count(m->prog->pool))
                    FAIL("kernel %s.%s: output %d has no expression", k->name, m->params[i].name, o);
                if (!kernel_closed(m->prog->pool, root, k->nin, seen, list))
                    FAIL("kernel %s.%s: output %d uses a projection variable or an undeclared input",
                         k->name, m->params[i].name, o);
            }
            /* a value the update carries in (a carry buffer, or the weight itself): stored
             * by the update for the next step, and by the soft kernel after init and after
             * a restore (fuse.c) */
            for (int e = 0; j == 0 && e < k->nin; e++) {
                IrBufKind b = k->in[e].buf;
                if ((b != IRB_CARRY && b != IRB_WEIGHT) ||
                    (kernel_stores(k, b, k->in[e].comp) && kernel_stores(&m->kernels[i][3], b, k->in[e].comp)))
                    continue;
                if (b == IRB_WEIGHT)
                    FAIL("kernel update.%s loads weight, which the update and soft kernels must both store",
                         m->params[i].name);
                FAIL("kernel update.%s loads carry%d, which the update and soft kernels must both store",
                     m->params[i].name, k->in[e].comp);
            }
        }
    return true;
}

bool verify_module(const IrModule *m, FILE *out, const SourceFile *text) {
    if (!verify_func(m, &m->train, out, text) || !verify_func(m, &m->eval, out, text)) return false;
    if (m->train.loss < 0 || m->train.insts[m->train.loss].op != IR_XENT)
        FAIL("@train has no loss");
    for (int w = 0; w < 2; w++) {
        const IrFunc *f = w ? &m->eval : &m->train;
        if (f->correct < 0 || f->correct >= f->n || f->insts[f->correct].op != IR_CORRECT)
            FAIL("@%s has no correct count", f->name ? f->name : "?");
        if (f->logits >= f->n) FAIL("@%s: its logits are not a value", f->name ? f->name : "?");
    }
    if (!m->kernels) return true;
    int count = sx_count(m->prog->pool);
    unsigned char *seen = calloc((size_t)count + 1, 1);
    int *list = malloc(sizeof(int) * ((size_t)count + 1));
    bool oom = !seen || !list, ok = !oom && verify_kernels(m, out, text, seen, list);
    free(seen);
    free(list);
    if (oom) FAIL("out of memory verifying the kernels");
    return ok;
}
