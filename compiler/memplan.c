/* memplan.c — buffer planning: where each IR value and each instruction's scratch
 * buffer lives in memory.
 *
 * Requires: a verified function (train or eval) and the batch size it runs at; as the
 * memplan pass (memplan_module), a module after fuse.
 * Produces: a MemPlan of offsets into one arena of floats (the pass: m->plan). Two buffers share memory only
 * when their lifetimes do not overlap, so the arena holds the peak of live data, not
 * the sum of every value (a VGG-16 step at batch 128 needs about a fifth of the sum).
 *
 * Lifetimes are intervals of instruction numbers, both ends included: a value lives
 * from its defining instruction to its last use, so an output never shares memory with
 * that instruction's inputs. Uses follow RESHAPE to the value it renames, and the ops
 * that point at a forward instruction use what they actually read (ir_ops.def's ARG1
 * column): conv2d_dw reads the conv's input (its columns are rebuilt from it, never
 * kept), maxpool_grad the pool's argmax buffer, dropout_grad the dropout's mask (the
 * side buffers of the SIDE column), bias_relu_bn_maxpool_grad the pool's argmax buffer
 * and its operands. A conv op's column matrix is not planned
 * here: the runtime builds it chunk by chunk in per-thread scratch (runtime/conv.c).
 *
 * Not planned (the caller gives them buffers of their own): the input batch and labels,
 * parameters and their gradients, and the `external` values — those read after the
 * function returns (loss, correct count, logits).
 *
 * One exception, where sharing: a batch norm's pass (in_place_op) writes its output over
 * its first operand when that value is read by nothing after it and has as many
 * elements. Its runtime pass (runtime/chan.c: nnq_rt_bn_apply, its sums before it in the
 * same group of channels) reads each value before it writes that position, so the
 * results are the same; the output's lines are then in cache already, not read from
 * memory before they are written (a batch-norm gradient's sums and elementwise pass, 144
 * channels of 32 x 32, one thread: 15.2 -> 12.7-13.3 ms).
 *
 * Placement is greedy, largest first, each at the lowest 64-byte aligned offset free for
 * its whole lifetime. Deterministic: the same function gives the same plan. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define ALIGN 16 /* floats: 64 bytes */

typedef struct Block {
    int64_t size, off;
    int start, end;
    int64_t *dest; /* where the offset goes in the plan */
} Block;

static int by_size_desc(const void *a, const void *b) {
    const Block *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

static int root(const IrFunc *f, int v) {
    while (f->insts[v].op == IR_RESHAPE) v = f->insts[v].args[0];
    return v;
}

static int64_t rows(const IrShape *s, int64_t batch) { return s->rank > 0 && s->d[0] == IR_BATCH ? batch : 1; }

int64_t memplan_value_elems(const IrInst *in, int64_t batch) { return rows(&in->shape, batch) * ir_shape_elems(&in->shape); }

static int64_t aligned(int64_t floats) { return (floats + ALIGN - 1) / ALIGN * ALIGN; }

/* The ops whose pass may write its output over its first operand (target_cpu.c's cpu_bn
 * without pooling: nnq_rt_bn_apply after the group's sums). */
static bool in_place_op(IrOp op) {
    switch (op) {
    case IR_BN_TRAIN: case IR_BN_EVAL: case IR_BN_GRAD: case IR_BIAS_BN_TRAIN: case IR_BIAS_BN_EVAL:
    case IR_RELU_BN_GRAD: case IR_BIAS_BN_RELU_TRAIN: case IR_BIAS_BN_RELU_EVAL: case IR_BIAS_RELU_BN_GRAD:
        return true;
    default:
        return false;
    }
}

MemPlan memplan_func(const IrFunc *f, int64_t batch, bool share, Arena *arena) {
    int n = f->n;
    MemPlan p = {0};
    p.value = arena_alloc(arena, sizeof(int64_t) * (size_t)(n ? n : 1));
    p.side = arena_alloc(arena, sizeof(int64_t) * (size_t)(n ? n : 1));
    bool *external = calloc((size_t)n + 1, 1);
    int *end = malloc(sizeof(int) * ((size_t)n + 1));     /* last use of value i */
    int *side_end = malloc(sizeof(int) * ((size_t)n + 1)); /* last use of i's side buffer */
    for (int i = 0; i < n; i++) {
        p.value[i] = p.side[i] = -1;
        end[i] = side_end[i] = i;
    }
    if (f->loss >= 0) external[f->loss] = true;
    if (f->correct >= 0) external[f->correct] = true;
    if (f->logits >= 0) external[f->logits] = true;
    for (int i = 0; i < n; i++) {
        const IrInst *in = &f->insts[i];
        if (in->op == IR_PARAM_GRAD) external[root(f, in->args[0])] = true;
        int nargs = ir_op_nargs(in->op);
        for (int k = 0; k < nargs; k++) {
            int a = in->args[k];
            if (a < 0) continue;
            if (k == 1 && ir_op_arg1(in->op) == IR_ARG1_FWD_INPUT) a = f->insts[a].args[0];
            else if (k == 1 && (ir_op_arg1(in->op) == IR_ARG1_FWD_SIDE || ir_op_arg1(in->op) == IR_ARG1_FWD_OPS)) {
                if (side_end[a] < i) side_end[a] = i;
                const IrInst *fwd = &f->insts[a];
                for (int j = 0; j < ir_op_nargs(fwd->op) && ir_op_arg1(in->op) == IR_ARG1_FWD_OPS; j++) {
                    int o = root(f, fwd->args[j]);
                    if (end[o] < i) end[o] = i;
                }
                continue;
            }
            a = root(f, a);
            if (end[a] < i) end[a] = i;
            /* a batch norm's statistics stand for its values, which their reader computes
             * from the batch norm's operands (dwconv2d_bn_relu, and its dwconv2d_dw) */
            for (int q = 0; q < 2 && f->insts[a].op == IR_BIAS_BN_RELU_STATS_TRAIN; q++) {
                int o = root(f, f->insts[a].args[q]);
                if (end[o] < i) end[o] = i;
            }
        }
    }

    /* over[i]: the value whose block i's output takes over (in_place_op), else -1; that
     * block then lives on to i's last use */
    int *over = malloc(sizeof(int) * ((size_t)n + 1));
    for (int i = 0; i < n; i++) {
        const IrInst *in = &f->insts[i];
        int a = in->args[0] >= 0 ? root(f, in->args[0]) : -1;
        over[i] = -1;
        if (!share || !in_place_op(in->op) || a < 0 || external[i] || external[a] || end[a] != i) continue;
        IrOp aop = f->insts[a].op;
        if (aop == IR_INPUT || aop == IR_LABELS || aop == IR_PARAM || aop == IR_PARAM_GRAD) continue;
        if (memplan_value_elems(&f->insts[a], batch) != memplan_value_elems(in, batch)) continue;
        bool again = false; /* the operand read once only */
        for (int k = 1; k < ir_op_nargs(in->op); k++) again |= in->args[k] >= 0 && root(f, in->args[k]) == a;
        if (again) continue;
        int r = over[a] >= 0 ? over[a] : a; /* a chain of them: the first one's block */
        over[i] = r;
        if (end[r] < end[i]) end[r] = end[i];
    }

    Block *blocks = malloc(sizeof(Block) * (2 * (size_t)n + 1));
    int nb = 0;
#define ADD_BLOCK(sz, s, e, d) (blocks[nb++] = (Block){aligned(sz), 0, (s), (e), (d)})
    for (int i = 0; i < n; i++) {
        const IrInst *in = &f->insts[i];
        switch (in->op) {
        case IR_INPUT: case IR_LABELS: case IR_PARAM: case IR_RESHAPE: case IR_PARAM_GRAD: break;
        default:
            if (over[i] >= 0)
                p.total += aligned(memplan_value_elems(in, batch)); /* counted, not placed */
            else if (!external[i])
                ADD_BLOCK(memplan_value_elems(in, batch), i, end[i], &p.value[i]);
        }
        if (ir_op_side(in->op)) {
            /* int32 argmax positions or float mask: one 4-byte word per output element */
            ADD_BLOCK(memplan_value_elems(in, batch), i, side_end[i], &p.side[i]);
        }
    }
#undef ADD_BLOCK
    qsort(blocks, (size_t)nb, sizeof *blocks, by_size_desc);
    /* the blocks placed so far, by offset: each block goes in the first gap, in offset
     * order, among those whose lifetimes overlap its own (sorting those for each block
     * was 6% of a 1,500-layer program's --emit=obj) */
    Block **placed = malloc(sizeof(Block *) * ((size_t)nb + 1));
    for (int b = 0; b < nb; b++) {
        Block *blk = &blocks[b];
        int64_t off = 0;
        for (int o = 0; o < b; o++) {
            const Block *q = placed[o];
            if (share && (q->start > blk->end || blk->start > q->end)) continue; /* not live beside it */
            if (q->off >= off + blk->size) break; /* fits in the gap before it */
            if (q->off + q->size > off) off = q->off + q->size;
        }
        blk->off = off;
        *blk->dest = off;
        if (off + blk->size > p.size) p.size = off + blk->size;
        p.total += blk->size;
        int lo = 0, hi = b; /* after those at its offset or below */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (placed[mid]->off <= off) lo = mid + 1;
            else hi = mid;
        }
        memmove(placed + lo + 1, placed + lo, sizeof *placed * (size_t)(b - lo));
        placed[lo] = blk;
    }
    for (int i = 0; i < n; i++)
        if (over[i] >= 0) p.value[i] = p.value[over[i]];
    free(placed);
    free(blocks);
    free(over);
    free(external);
    free(end);
    free(side_end);
    return p;
}

void memplan_module(IrModule *m) {
    TrainConfig defaults = {0}; /* the table sets the defaults, the rest is zero */
    train_config_defaults(&defaults);
    m->plan_batch = m->prog && m->prog->train ? m->prog->train->batch : defaults.batch;
    m->plan[0] = memplan_func(&m->train, m->plan_batch, !m->unshared_memory, m->arena);
    m->plan[1] = memplan_func(&m->eval, m->plan_batch, !m->unshared_memory, m->arena);
    m->planned = true;
}
