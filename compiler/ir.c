/* ir.c — the IR op table accessors and instruction/shape helpers. The table's GRAD and
 * SHAPE columns are read where their functions are: autodiff.c and verify.c. */
#include "ir.h"

#include <assert.h>
#include <string.h>

#include "nnq_rt.h"

static const char *const names[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) text,
#include "ir_ops.def"
#undef IR_OP
};
static const int nargs_tab[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) nargs,
#include "ir_ops.def"
#undef IR_OP
};
static const IrAttrs attrs_tab[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) IR_ATTRS_##attrs,
#include "ir_ops.def"
#undef IR_OP
};
static const IrArg1 arg1_tab[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) IR_ARG1_##arg1,
#include "ir_ops.def"
#undef IR_OP
};
static const bool side_tab[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) side,
#include "ir_ops.def"
#undef IR_OP
};
static const int phase_tab[] = {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) NNQ_PHASE_##phase,
#include "ir_ops.def"
#undef IR_OP
};

const char *ir_op_name(IrOp op) { return names[op]; }

static const char *const buf_names[] = {"weight", "hard", "grad", "aux", "m", "v", "carry"};
_Static_assert(sizeof buf_names / sizeof buf_names[0] == IRB_CARRY + 1, "a name for every IrBufKind");
const char *ir_buf_name(IrBufKind b) { return buf_names[b]; }
int ir_op_nargs(IrOp op) { return nargs_tab[op]; }
IrAttrs ir_op_attrs(IrOp op) { return attrs_tab[op]; }
IrArg1 ir_op_arg1(IrOp op) { return arg1_tab[op]; }
bool ir_op_side(IrOp op) { return side_tab[op]; }
int ir_op_phase(IrOp op) { return phase_tab[op]; }
bool ir_op_source(IrOp op) { return phase_tab[op] == NNQ_PHASE_OTHER; }

int ir_emit(IrModule *m, IrFunc *f, IrOp op, int a, int b, IrShape shape, IrDType dt) {
    if (f->n == f->cap) {
        int ncap = f->cap ? f->cap * 2 : 32;
        f->insts = arena_realloc(m->arena, f->insts, sizeof(IrInst) * f->cap, sizeof(IrInst) * ncap);
        f->cap = ncap;
    }
    assert(a < f->n && b < f->n);
    IrInst *in = &f->insts[f->n];
    memset(in, 0, sizeof *in);
    in->op = op;
    in->args[0] = a;
    in->args[1] = b;
    in->args[2] = -1;
    in->shape = shape;
    in->dtype = dt;
    return f->n++;
}

IrShape ir_shape(int rank, const int64_t *d) {
    IrShape s;
    memset(&s, 0, sizeof s);
    assert(rank <= NNQ_MAX_RANK);
    s.rank = rank;
    for (int i = 0; i < rank; i++) s.d[i] = d[i];
    return s;
}

int64_t ir_shape_elems(const IrShape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        if (s->d[i] != IR_BATCH) n *= s->d[i];
    return n;
}

bool ir_shape_in_bounds(const IrShape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] == IR_BATCH) continue;
        if (s->d[i] < 1 || s->d[i] > IR_MAX_DIM || n > IR_MAX_ELEMS / s->d[i]) return false;
        n *= s->d[i];
    }
    return true;
}

bool ir_shape_equal(const IrShape *a, const IrShape *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

void ir_shape_format(const IrShape *s, IrDType dt, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "%s[", dt == IR_F32 ? "f32" : "i32");
    for (int i = 0; i < s->rank && at < n; i++) {
        if (s->d[i] == IR_BATCH)
            at += (size_t)snprintf(buf + at, n - at, "%sN", i ? ", " : "");
        else
            at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)s->d[i]);
    }
    if (at < n) snprintf(buf + at, n - at, "]");
}

int64_t ir_func_flops(const IrFunc *f, int64_t batch) {
    int64_t flops = 0;
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        if (in->op == IR_MATMUL) {
            const IrShape *a = &f->insts[in->args[0]].shape;
            int64_t m = in->shape.d[0] == IR_BATCH ? batch : in->shape.d[0], n = in->shape.d[1];
            int64_t k = in->attr[0] ? a->d[0] : a->d[1];
            flops += 2 * m * n * (k == IR_BATCH ? batch : k);
        } else if (in->op == IR_CONV2D || in->op == IR_CONV2D_DX || in->op == IR_CONV2D_DW || in->op == IR_DWCONV2D ||
                   in->op == IR_DWCONV2D_DX || in->op == IR_DWCONV2D_DW || in->op == IR_DWCONV2D_BN_RELU) {
            /* 2 O CKK OHW per sample (depthwise: C = 1 per output channel), the same for the
             * forward op and both gradients */
            bool dw = in->op == IR_CONV2D_DW || in->op == IR_DWCONV2D_DW;
            bool dx = in->op == IR_CONV2D_DX || in->op == IR_DWCONV2D_DX;
            const IrInst *conv = dw ? &f->insts[in->args[1]] : in;
            const IrShape *w = &f->insts[conv->args[1]].shape;
            const IrShape *y = dx ? &f->insts[in->args[0]].shape : &conv->shape; /* dy, y */
            flops += 2 * batch * w->d[0] * w->d[1] * w->d[2] * w->d[3] * y->d[2] * y->d[3];
        }
    }
    return flops;
}

int ir_conv_input(const IrFunc *f, const IrInst *conv) {
    return conv->op == IR_DWCONV2D_BN_RELU ? f->insts[conv->args[0]].args[0] : conv->args[0];
}

/* The bytes f moves in its passes outside the products, those bound by memory: the ops
 * --profile charges to the norm, elementwise and pool phases, and the depthwise
 * convolutions (9 multiply-adds a value). Each op reads each operand value once (through
 * a forward op: the values it reads of it, ARG1) and writes its output and side buffer
 * once, 4 bytes an element: a floor for the passes as the program cuts them, counted as
 * a triad counts its bytes (a store once), not one for fewer passes. A bias_grad_bn
 * reads nothing (its batch norm's gradient summed its output); a reader of a
 * bias_bn_relu_stats_train reads its operands. */
static int64_t read_elems(const IrFunc *f, int v, int64_t batch) {
    const IrInst *in = &f->insts[v];
    if (in->op != IR_BIAS_BN_RELU_STATS_TRAIN) return memplan_value_elems(in, batch);
    return memplan_value_elems(&f->insts[in->args[0]], batch) + memplan_value_elems(&f->insts[in->args[1]], batch);
}

int64_t ir_func_pass_bytes(const IrFunc *f, int64_t batch) {
    int64_t elems = 0;
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        int ph = ir_op_phase(in->op);
        bool depthwise = in->op == IR_DWCONV2D || in->op == IR_DWCONV2D_DX || in->op == IR_DWCONV2D_DW ||
                         in->op == IR_DWCONV2D_BN_RELU;
        if (ph != NNQ_PHASE_NORM && ph != NNQ_PHASE_ELEM && ph != NNQ_PHASE_POOL && !depthwise) continue;
        elems += memplan_value_elems(in, batch) * (ir_op_side(in->op) ? 2 : 1);
        if (in->op == IR_BIAS_GRAD_BN) continue;
        for (int k = 0; k < ir_op_nargs(in->op); k++) {
            int a = in->args[k];
            if (a < 0) continue;
            IrArg1 how = k == 1 ? ir_op_arg1(in->op) : IR_ARG1_VALUE;
            const IrInst *fwd = &f->insts[a];
            if (how == IR_ARG1_FWD_INPUT) elems += read_elems(f, fwd->args[0], batch);
            if (how == IR_ARG1_FWD_SIDE || how == IR_ARG1_FWD_OPS) elems += memplan_value_elems(fwd, batch);
            for (int q = 0; q < ir_op_nargs(fwd->op) && how == IR_ARG1_FWD_OPS; q++)
                if (fwd->args[q] >= 0) elems += memplan_value_elems(&f->insts[fwd->args[q]], batch);
            if (how == IR_ARG1_VALUE) elems += read_elems(f, a, batch);
        }
    }
    return 4 * elems;
}
