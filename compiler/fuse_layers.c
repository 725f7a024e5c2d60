/* fuse_layers.c — fuses pairs of layer ops whose intermediate value nothing else reads,
 * so the program makes fewer passes over its activations (each pass over a conv layer's
 * output is a full trip through memory):
 *   bias_add(x, b) -> bn_train / bn_eval   becomes  bias_bn_train / bias_bn_eval(x, b)
 *   relu_grad(dy, relu(y)) -> bn_grad(., y)  becomes  relu_bn_grad(dy, y)
 * then
 *   bias_bn_train(x, b) -> relu, and its relu_bn_grad(dy, y)
 *                         becomes  bias_bn_relu_train(x, b), bias_relu_bn_grad(dy, x, b)
 *   bias_bn_eval(x, b) -> relu       becomes  bias_bn_relu_eval(x, b)
 *   bias_grad of a bn_grad, relu_bn_grad or bias_relu_bn_grad   becomes  bias_grad_bn
 *   relu(y) -> maxpool                       becomes  relu_maxpool(y)
 *   bias_bn_relu_train(x, b) -> maxpool      becomes  bias_bn_relu_maxpool_train(x, b)
 *   bias_bn_relu_eval(x, b) -> maxpool       becomes  bias_bn_relu_maxpool_eval(x, b)
 *   its maxpool_grad(dy, pool) -> bias_relu_bn_grad(., x, b)
 *                                            becomes  bias_relu_bn_maxpool_grad(dy, pool)
 *   add(a, b) -> relu                        becomes  add_relu(a, b)
 *   add(a, b) -> relu_grad(., y)             becomes  add_relu_grad(a, b, y)
 * then
 *   bias_bn_relu_train(x, b) -> dwconv2d     becomes  bias_bn_relu_stats_train(x, b),
 *                                                      dwconv2d_bn_relu(stats, w)
 * (relu(y) > 0 exactly when y > 0, so the mask is read from y, which bn_grad reads
 * anyway. Where a batch norm's output is read only by its relu and, in the train
 * function, its relu_bn_grad, the batch norm stores relu(y) and no pass of its own
 * writes it, and the gradient recomputes y from the batch norm's input by the forward's
 * operations (the input stays alive instead of y). A batch-norm gradient whose output a
 * bias_grad_bn reads sums that output per channel while each group of channels is in
 * cache, by bias_grad's routine and order, into the batch norm's bias-gradient buffer,
 * which the bias_grad_bn copies. A relu is fused into its maxpool where the maxpool is its
 * only reader, which in the train function means its gradient went into a relu_bn_grad:
 * the pool's gradient reads only the argmax positions; likewise a training batch norm
 * with its relu into the maxpool that alone reads it (its gradient recomputes y from x):
 * the batch norm's elementwise pass pools each window as it computes it and writes the
 * pooled values and argmax positions, not the full-size output; and that pool's gradient,
 * where only the batch norm's gradient reads it, is routed to the argmax positions by
 * that gradient a group of channels at a time, in its output buffer, just before its
 * sums read them (in cache; the channels' threads are the forward pass's, which wrote
 * the argmax positions), not in a pass of its own over planes. An add whose only reader is a relu
 * or a relu's gradient, a residual block's sum forward and backward, is done in that
 * op's pass. A training batch norm with its relu whose only reader is a depthwise
 * convolution, MobileNetV2's expansion, keeps its statistics pass and writes no output:
 * the convolution normalizes each plane of x as it reads it, by the batch norm's
 * operations, and so does its weight gradient, which reads the convolution's input; the
 * batch norm's gradient recomputes y from x already. One write of the expanded tensor
 * fewer, and its buffer: MobileNetV2's arena 1,571 -> 1,189 MiB, its step as fast within
 * the noise, the pass saved about what the kernels' normalizing costs them.) The fused ops
 * compute the same
 * values in the same order as the pairs did: results are bit-identical (nnqc
 * --no-fuse-layers keeps the pairs; a test compares).
 *
 * Requires: a verified module after autodiff (the train function holds its backward
 * pass). Produces: the same functions with fused pairs and without the instructions
 * that became unused; value ids are renumbered in order, loss/correct/logits with them. */
#include <stdlib.h>

#include "ir.h"

/* uses[v]: how many operands (and function results) name value v, the operands of dead
 * instructions (NULL: none yet) left out. */
static int *count_uses(const IrFunc *f, const bool *dead) {
    int *uses = calloc((size_t)f->n + 1, sizeof(int));
    for (int i = 0; i < f->n; i++)
        for (int k = 0; k < ir_op_nargs(f->insts[i].op) && !(dead && dead[i]); k++)
            if (f->insts[i].args[k] >= 0) uses[f->insts[i].args[k]]++;
    int res[3] = {f->loss, f->correct, f->logits};
    for (int k = 0; k < 3; k++)
        if (res[k] >= 0) uses[res[k]]++;
    return uses;
}

/* The smallest plane whose batch norm a depthwise layer normalizes as it reads it: its
 * kernels normalize x a piece at a time beside their arithmetic (runtime/dwconv.c), which
 * on 4 x 4 planes cost more than the batch norm's pass (960 channels, two threads, the
 * pass and the forward then the weight gradient: 1.2-1.5 / 1.1 ms against 1.2 / 1.7-1.9). */
enum { FUSE_DW_MIN_PLANE = 64 };

static void fuse_func(IrFunc *f) {
    bool *dead = calloc((size_t)f->n + 1, sizeof(bool));
    int *uses = count_uses(f, NULL);
    for (int i = 0; i < f->n; i++) {
        IrInst *in = &f->insts[i];
        if (in->op == IR_BN_TRAIN || in->op == IR_BN_EVAL) {
            const IrInst *a = &f->insts[in->args[0]];
            if (a->op == IR_BIAS_ADD && uses[in->args[0]] == 1) {
                dead[in->args[0]] = true;
                in->op = in->op == IR_BN_TRAIN ? IR_BIAS_BN_TRAIN : IR_BIAS_BN_EVAL;
                in->args[1] = a->args[1];
                in->args[0] = a->args[0];
            }
        } else if (in->op == IR_BN_GRAD) {
            const IrInst *g = &f->insts[in->args[0]];
            if (g->op == IR_RELU_GRAD && uses[in->args[0]] == 1) {
                const IrInst *r = &f->insts[g->args[1]];
                if (r->op == IR_RELU && r->args[0] == in->args[1]) {
                    dead[in->args[0]] = true;
                    in->op = IR_RELU_BN_GRAD;
                    in->args[0] = g->args[0];
                }
            }
        }
    }
    /* then batch norm -> relu, counting the readers left (a relu_grad fused above reads
     * the relu no more); alias[i]: the value a dead instruction's readers read instead */
    free(uses);
    uses = count_uses(f, dead);
    int *alias = malloc(sizeof(int) * ((size_t)f->n + 1)), *grad_of = malloc(sizeof(int) * ((size_t)f->n + 1));
    for (int i = 0; i < f->n; i++) alias[i] = grad_of[i] = -1;
    for (int i = 0; i < f->n; i++)
        if (!dead[i] && f->insts[i].op == IR_RELU_BN_GRAD) grad_of[f->insts[i].args[1]] = i;
    for (int i = 0; i < f->n; i++) {
        IrInst *r = &f->insts[i];
        if (dead[i] || r->op != IR_RELU) continue;
        int y = r->args[0];
        IrInst *bn = &f->insts[y];
        if (bn->op == IR_BIAS_BN_EVAL && uses[y] == 1) {
            bn->op = IR_BIAS_BN_RELU_EVAL;
        } else if (bn->op == IR_BIAS_BN_TRAIN && uses[y] == 2 && grad_of[y] >= 0) {
            IrInst *g = &f->insts[grad_of[y]];
            bn->op = IR_BIAS_BN_RELU_TRAIN;
            g->op = IR_BIAS_RELU_BN_GRAD;
            g->args[1] = bn->args[0];
            g->args[2] = bn->args[1];
        } else {
            continue;
        }
        dead[i] = true;
        alias[i] = y;
    }
    for (int i = 0; i < f->n; i++) /* readers of a fused relu read its batch norm */
        for (int k = 0; k < ir_op_nargs(f->insts[i].op); k++)
            if (f->insts[i].args[k] >= 0 && alias[f->insts[i].args[k]] >= 0) f->insts[i].args[k] = alias[f->insts[i].args[k]];
    int *res[3] = {&f->loss, &f->correct, &f->logits};
    for (int k = 0; k < 3; k++)
        if (*res[k] >= 0 && alias[*res[k]] >= 0) *res[k] = alias[*res[k]];
    free(alias);
    free(grad_of);
    /* a bias gradient of a batch norm's gradient's output: summed by that op (the same
     * sums, while its output is in cache) */
    for (int i = 0; i < f->n; i++) {
        IrInst *in = &f->insts[i];
        if (dead[i] || in->op != IR_BIAS_GRAD) continue;
        const IrInst *g = &f->insts[in->args[0]];
        if (g->op == IR_BN_GRAD || g->op == IR_RELU_BN_GRAD || g->op == IR_BIAS_RELU_BN_GRAD) {
            in->op = IR_BIAS_GRAD_BN;
            in->attr[0] = g->attr[0];
            in->name = g->name; /* the bn's, as its @ref prints */
        }
    }
    /* then relu -> maxpool, bias_bn_relu_train / eval -> maxpool (and the pool's gradient into
     * the batch norm's, the pool fused first: it comes first), add -> relu and
     * add -> relu_grad */
    free(uses);
    uses = count_uses(f, dead);
    for (int i = 0; i < f->n; i++) {
        IrInst *in = &f->insts[i];
        if (dead[i]) continue;
        const IrInst *a = &f->insts[in->args[0] >= 0 ? in->args[0] : i];
        if (in->op == IR_MAXPOOL && a->op == IR_RELU && uses[in->args[0]] == 1) {
            dead[in->args[0]] = true;
            in->op = IR_RELU_MAXPOOL;
            in->args[0] = a->args[0];
        } else if (in->op == IR_MAXPOOL && (a->op == IR_BIAS_BN_RELU_TRAIN || a->op == IR_BIAS_BN_RELU_EVAL) &&
                   !dead[in->args[0]] && uses[in->args[0]] == 1) {
            dead[in->args[0]] = true;
            in->op = a->op == IR_BIAS_BN_RELU_TRAIN ? IR_BIAS_BN_RELU_MAXPOOL_TRAIN : IR_BIAS_BN_RELU_MAXPOOL_EVAL;
            in->attr[2] = in->attr[1], in->attr[1] = in->attr[0], in->attr[0] = a->attr[0];
            in->args[0] = a->args[0], in->args[1] = a->args[1];
            in->name = a->name; /* the bn's, as its @ref prints */
        } else if (in->op == IR_BIAS_RELU_BN_GRAD && a->op == IR_MAXPOOL_GRAD && !dead[in->args[0]] &&
                   uses[in->args[0]] == 1 && f->insts[a->args[1]].op == IR_BIAS_BN_RELU_MAXPOOL_TRAIN &&
                   f->insts[a->args[1]].args[0] == in->args[1] && f->insts[a->args[1]].args[1] == in->args[2]) {
            dead[in->args[0]] = true;
            in->op = IR_BIAS_RELU_BN_MAXPOOL_GRAD;
            in->args[1] = a->args[1];
            in->args[0] = a->args[0];
            in->args[2] = -1;
        } else if ((in->op == IR_RELU || in->op == IR_RELU_GRAD) && a->op == IR_ADD && !dead[in->args[0]] &&
                   uses[in->args[0]] == 1) {
            dead[in->args[0]] = true;
            if (in->op == IR_RELU_GRAD) in->args[2] = in->args[1];
            in->op = in->op == IR_RELU ? IR_ADD_RELU : IR_ADD_RELU_GRAD;
            in->args[1] = a->args[1];
            in->args[0] = a->args[0];
        }
    }
    /* then bias_bn_relu_train -> dwconv2d: the batch norm keeps its statistics, the
     * depthwise convolution (and its weight gradient, through it) normalizes x's planes as
     * it reads them; where the convolution is the batch norm's only reader (its gradient
     * reads x and b) */
    free(uses);
    uses = count_uses(f, dead);
    for (int i = 0; i < f->n; i++) {
        IrInst *conv = &f->insts[i];
        if (dead[i] || conv->op != IR_DWCONV2D || uses[conv->args[0]] != 1) continue;
        IrInst *bn = &f->insts[conv->args[0]];
        if (dead[conv->args[0]] || bn->op != IR_BIAS_BN_RELU_TRAIN || bn->shape.rank != 4 ||
            bn->shape.d[2] * bn->shape.d[3] < FUSE_DW_MIN_PLANE)
            continue;
        bool through = false; /* an op reading the batch norm as its forward op (none today) */
        for (int j = 0; j < f->n && !through; j++)
            through = !dead[j] && ir_op_nargs(f->insts[j].op) > 1 && ir_op_arg1(f->insts[j].op) != IR_ARG1_VALUE &&
                      f->insts[j].args[1] == conv->args[0];
        if (through) continue;
        bn->op = IR_BIAS_BN_RELU_STATS_TRAIN;
        bn->shape.rank = 1;
        bn->shape.d[0] = bn->shape.d[1];
        conv->op = IR_DWCONV2D_BN_RELU;
    }
    /* compact: drop the dead, renumber the rest in order */
    int *id = malloc(sizeof(int) * ((size_t)f->n + 1));
    int n = 0;
    for (int i = 0; i < f->n; i++) {
        if (dead[i]) {
            id[i] = -1;
            continue;
        }
        IrInst in = f->insts[i];
        for (int k = 0; k < ir_op_nargs(in.op); k++)
            if (in.args[k] >= 0) in.args[k] = id[in.args[k]];
        id[i] = n;
        f->insts[n++] = in;
    }
    if (f->loss >= 0) f->loss = id[f->loss];
    if (f->correct >= 0) f->correct = id[f->correct];
    if (f->logits >= 0) f->logits = id[f->logits];
    f->n = n;
    free(id);
    free(dead);
    free(uses);
}

void fuse_layers_module(IrModule *m) {
    fuse_func(&m->train);
    fuse_func(&m->eval);
}
