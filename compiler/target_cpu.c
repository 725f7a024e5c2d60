/* target_cpu.c — the CPU target: code for the host's cores, through LLVM's host back end.
 *
 * Requires: codegen.c's state (target.h): the buffers made, an FnCtx for the function
 * being walked. Provides: cg_target_cpu, the CgTarget of the host CPU:
 *   memory   a static, zero-filled, 64-byte aligned global per buffer;
 *   ops      matmul: OpenBLAS (nnq_rt_sgemm); conv2d and its gradients: the runtime's
 *            convolutions (runtime/conv.c: oneDNN, or im2col + GEMM, by chunks of
 *            samples on the thread pool), the depthwise ones runtime/dwconv.c's; pooling:
 *            the runtime's kernels. The rest is generated here: elementwise ops and
 *            dropout as loops outlined for the thread pool (nnq_rt_parallel_for);
 *            per-channel ops (bias, batch norm) over ranges of channels: bias_add's
 *            loop; batch norm's a loop over groups of channels calling the runtime
 *            (runtime/chan.c: the sums, nnq_rt_chan_reduce; the per-channel
 *            statistics, nnq_rt_bn_stats; the elementwise pass, nnq_rt_bn_apply), its
 *            stages through nnq_rt_bn_run; the loss row by row;
 *   kernels  a fused kernel is core(begin, end, noalias buffers..., scalars...), the
 *            loop (or, for a kernel of stages, a loop per stage over each block), and
 *            shape(table, count, scalars...), which runs it on the thread pool; each
 *            parameter passes its buffers in a constant table;
 *   setup    every convolution's scratch, reserved (nnq_rt_conv_reserve).
 * Every parallel loop gives each iteration to one thread and every sum has a fixed
 * order, so results do not depend on the thread count. A loop body shared by the
 * instructions of one op and layout is a function of the module found by its name
 * ("par.add", "par.bn_train.s"); the buffers come in its context. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "nnq_rt.h"
#include "target.h"

/* ---------- memory ---------- */

static LLVMValueRef cpu_buffer(Cg *cg, const char *name, int64_t count, LLVMTypeRef elem) {
    return cg_global(cg, name, count, elem);
}

/* ---------- parallel loops ----------
 * A loop over [0, n) with independent iterations becomes a function
 * body(ctx, i64 begin, i64 end) that nnq_rt_parallel_for runs on the runtime's threads.
 * The values of the enclosing function that the body uses travel in ctx, an array of
 * i64 (pointers through ptrtoint, f32 through its bits, i1 widened); par_begin hands
 * back the body's copies in place. Every iteration is computed by one thread, so
 * results do not depend on the thread count. */
#define PAR_MAX_VALS 15

typedef struct ParLoop {
    LLVMValueRef outer_fn, body_fn;
    LLVMBasicBlockRef outer_bb;
    LLVMValueRef vals[PAR_MAX_VALS];
    int nvals;
    LLVMValueRef n;
    int64_t min_items;
    LLVMValueRef begin, end; /* the body's range */
    bool has_loop;           /* par_begin: l runs over it; par_range_begin: the caller does */
    Loop l;
} ParLoop;

static LLVMValueRef to_i64(Cg *cg, LLVMValueRef v) {
    LLVMTypeRef t = LLVMTypeOf(v);
    switch (LLVMGetTypeKind(t)) {
    case LLVMPointerTypeKind: return LLVMBuildPtrToInt(cg->b, v, cg->ti64, "");
    case LLVMFloatTypeKind: return LLVMBuildZExt(cg->b, LLVMBuildBitCast(cg->b, v, cg->ti32, ""), cg->ti64, "");
    default: return LLVMGetIntTypeWidth(t) == 64 ? v : LLVMBuildZExt(cg->b, v, cg->ti64, "");
    }
}

static LLVMValueRef from_i64(Cg *cg, LLVMValueRef v, LLVMTypeRef t) {
    switch (LLVMGetTypeKind(t)) {
    case LLVMPointerTypeKind: return LLVMBuildIntToPtr(cg->b, v, t, "");
    case LLVMFloatTypeKind: return LLVMBuildBitCast(cg->b, LLVMBuildTrunc(cg->b, v, cg->ti32, ""), t, "");
    default: return LLVMGetIntTypeWidth(t) == 64 ? v : LLVMBuildTrunc(cg->b, v, t, "");
    }
}

/* The body gets its range [p.begin, p.end) and loops over it itself. */
static ParLoop par_range_begin(Cg *cg, const char *name, LLVMValueRef n, int64_t min_items, LLVMValueRef *vals,
                               int nvals) {
    assert(nvals <= PAR_MAX_VALS);
    ParLoop p = {.outer_fn = cg->fn, .outer_bb = LLVMGetInsertBlock(cg->b), .nvals = nvals, .n = n,
                 .min_items = min_items < 1 ? 1 : min_items};
    LLVMTypeRef ps[3] = {cg->tp, cg->ti64, cg->ti64};
    p.body_fn = cg_new_function(cg, name, LLVMFunctionType(cg->tv, ps, 3, 0), false);
    LLVMValueRef ctx = LLVMBuildBitCast(cg->b, LLVMGetParam(p.body_fn, 0), LLVMPointerType(cg->ti64, 0), "ctx");
    for (int k = 0; k < nvals; k++) {
        p.vals[k] = vals[k];
        LLVMValueRef at = LLVMBuildInBoundsGEP2(cg->b, cg->ti64, ctx, (LLVMValueRef[]){ci64(cg, k)}, 1, "");
        vals[k] = from_i64(cg, LLVMBuildLoad2(cg->b, cg->ti64, at, ""), LLVMTypeOf(vals[k]));
    }
    p.begin = LLVMGetParam(p.body_fn, 1);
    p.end = LLVMGetParam(p.body_fn, 2);
    return p;
}

/* The body is one iteration, p.l.iv. */
static ParLoop par_begin(Cg *cg, const char *name, LLVMValueRef n, int64_t min_items, LLVMValueRef *vals, int nvals) {
    ParLoop p = par_range_begin(cg, name, n, min_items, vals, nvals);
    p.has_loop = true;
    p.l = cg_loop_begin(cg, p.begin, p.end, "par");
    return p;
}

/* Ends the body and returns to the enclosing function, emitting no call. */
static void par_finish(Cg *cg, ParLoop *p) {
    if (p->has_loop) cg_loop_end(cg, &p->l);
    LLVMBuildRetVoid(cg->b);
    cg->fn = p->outer_fn;
    LLVMPositionBuilderAtEnd(cg->b, p->outer_bb);
}

/* A body's context: vals as i64 in a stack array; returns its address. */
static LLVMValueRef par_ctx(Cg *cg, const LLVMValueRef *vals, int nvals) {
    LLVMValueRef ctx = cg_local(cg, LLVMArrayType(cg->ti64, PAR_MAX_VALS), NULL, "par.ctx");
    LLVMValueRef base = LLVMBuildBitCast(cg->b, ctx, LLVMPointerType(cg->ti64, 0), "");
    for (int k = 0; k < nvals; k++)
        LLVMBuildStore(cg->b, to_i64(cg, vals[k]),
                       LLVMBuildInBoundsGEP2(cg->b, cg->ti64, base, (LLVMValueRef[]){ci64(cg, k)}, 1, ""));
    return ctx;
}

/* Runs body over [0, n) on the runtime's threads with vals in its context. */
static void par_call(Cg *cg, LLVMValueRef body, LLVMValueRef n, int64_t min_items, const LLVMValueRef *vals, int nvals) {
    LLVMValueRef ctx = par_ctx(cg, vals, nvals);
    cg_rt_call(cg, "nnq_rt_parallel_for", (LLVMValueRef[]){n, ci64(cg, min_items), body, ctx}, 4);
}

static void par_end(Cg *cg, ParLoop *p) {
    par_finish(cg, p);
    par_call(cg, p->body_fn, p->n, p->min_items, p->vals, p->nvals);
}

/* ---------- per-channel loops ---------- */

/* A loop over the channels of a value of shape [N, C, S...] (chan_begin_with). */
typedef struct ChanLoop {
    Loop n, c, s;
    bool has_s;
    LLVMValueRef k;
    LLVMValueRef cv[5]; /* chan_begin_with: per-channel values, loaded before the inner loop */
} ChanLoop;

static int64_t chan_inner(const IrShape *s) {
    int64_t n = 1;
    for (int i = 2; i < s->rank; i++) n *= s->d[i];
    return n;
}

/* A per-channel value's layout [n, C, S]: C channels, S = the product of the trailing
 * dims (i64 values: constants, or read from a shared body's context); has_s: S > 1. */
typedef struct ChanShape {
    LLVMValueRef C, S;
    bool has_s;
} ChanShape;

static ChanShape chan_shape(Cg *cg, const IrShape *shape) {
    return (ChanShape){ci64(cg, shape->d[1]), ci64(cg, chan_inner(shape)), chan_inner(shape) > 1};
}

/* Loops over the channels [c0, c1) of a value with n rows: k = (n C + c) S + s, rows
 * outermost (so a channel's values are visited in the same order whatever the range),
 * cv[i] = chan[i][c] loaded once per channel and row (the inner loop is then a plain
 * elementwise loop that vectorizes). With S = 1 (dense layers) there is no inner loop. */
static ChanLoop chan_begin_with(Cg *cg, LLVMValueRef n, LLVMValueRef c0, LLVMValueRef c1, ChanShape cs,
                                LLVMValueRef *chan, int nchan) {
    ChanLoop l = {0};
    l.n = cg_loop_begin(cg, ci64(cg, 0), n, "n");
    LLVMValueRef nc = LLVMBuildMul(cg->b, l.n.iv, cs.C, "");
    l.c = cg_loop_begin(cg, c0, c1, "c");
    for (int i = 0; i < nchan; i++) l.cv[i] = ldf(cg, chan[i], l.c.iv);
    l.k = LLVMBuildAdd(cg->b, nc, l.c.iv, "");
    l.has_s = cs.has_s;
    if (l.has_s) {
        LLVMValueRef base = LLVMBuildMul(cg->b, l.k, cs.S, "");
        l.s = cg_loop_begin(cg, ci64(cg, 0), cs.S, "s");
        l.k = LLVMBuildAdd(cg->b, base, l.s.iv, "");
    }
    return l;
}

/* Channels a thread's part of a per-channel op holds at least: 64k values at the
 * compiled batch size, each channel having batch * S. */
static int64_t chan_min_items(Cg *cg, int64_t S) {
    int64_t per = cg->batch * S;
    return per >= 65536 ? 1 : 65536 / per;
}

/* A per-channel op (bias, batch norm) as a parallel loop over ranges of channels:
 * channels are independent, sums included, so each is computed whole by one thread. */
static ParLoop par_chan_begin(Cg *cg, const char *name, const IrShape *shape, LLVMValueRef *vals, int nvals) {
    return par_range_begin(cg, name, ci64(cg, shape->d[1]), chan_min_items(cg, chan_inner(shape)), vals, nvals);
}

static void chan_end(Cg *cg, ChanLoop *l) {
    if (l->has_s) cg_loop_end(cg, &l->s);
    cg_loop_end(cg, &l->c);
    cg_loop_end(cg, &l->n);
}

/* out[c] (and out2[c]) for the channels [c0, c1) of x [n, C, S...]: per-channel sums of
 * a mode of nnq_rt_chan_reduce (runtime/chan.c: a fixed order of adds, vectorized); y,
 * add, shift and out2 may be NULL. */
enum { CHAN_SUM, CHAN_SQDEV, CHAN_GRAD, CHAN_RELU_GRAD, CHAN_RELU_GRAD_AFFINE };
static void chan_sums(Cg *cg, int mode, ChanShape cs, LLVMValueRef x, LLVMValueRef y, LLVMValueRef add,
                      LLVMValueRef shift, LLVMValueRef scale, LLVMValueRef n, LLVMValueRef c0, LLVMValueRef c1,
                      LLVMValueRef out, LLVMValueRef out2) {
    LLVMValueRef null = LLVMConstNull(cg->tp);
    LLVMValueRef args[13] = {ci32(cg, mode), x, y ? y : null, add ? add : null, shift ? shift : null,
                             scale ? scale : null, n, LLVMBuildTrunc(cg->b, cs.C, cg->ti32, ""), cs.S,
                             LLVMBuildTrunc(cg->b, c0, cg->ti32, ""), LLVMBuildTrunc(cg->b, c1, cg->ti32, ""), out,
                             out2 ? out2 : null};
    cg_rt_call(cg, "nnq_rt_chan_reduce", args, 13);
}

/* ---------- ops ---------- */

/* The ops a training batch norm or its gradient runs through (nnq_rt_bn_run), but those
 * with pooling. */
static bool bn_run_op(IrOp op) {
    return op == IR_BN_TRAIN || op == IR_BIAS_BN_TRAIN || op == IR_BIAS_BN_RELU_TRAIN || op == IR_BN_GRAD ||
           op == IR_RELU_BN_GRAD || op == IR_BIAS_RELU_BN_GRAD || op == IR_BIAS_BN_RELU_STATS_TRAIN;
}

/* Value v's own buffer: through reshapes. */
static int buffer_of(const IrFunc *f, int v) {
    while (f->insts[v].op == IR_RESHAPE) v = f->insts[v].args[0];
    return v;
}

/* Whether some instruction binds value v to a parameter's gradient buffer (param_grad). */
static bool param_grad_value(const IrFunc *f, int v) {
    for (int k = v + 1; k < f->n; k++)
        if (f->insts[k].op == IR_PARAM_GRAD && f->insts[k].args[0] == v) return true;
    return false;
}

/* The training function's values a and b (own buffers) laid out by memplan in memory
 * that overlaps: 0 none, 1 the same range, 2 a partial overlap. (A value bound to a
 * parameter's gradient buffer, param_grad_value, is one memplan does not place.) */
static int arena_overlap(Cg *cg, const IrFunc *f, int a, int b) {
    const MemPlan *plan = &cg->m->plan[0];
    if (a == b) return 1;
    if (plan->value[a] < 0 || plan->value[b] < 0) return 0;
    int64_t a0 = plan->value[a], a1 = a0 + memplan_value_elems(&f->insts[a], cg->batch);
    int64_t b0 = plan->value[b], b1 = b0 + memplan_value_elems(&f->insts[b], cg->batch);
    if (a1 <= b0 || b1 <= a0) return 0;
    return a0 == b0 && a1 == b1 ? 1 : 2;
}

/* A dense product's GEMM and the training batch norm that reads it, in one runtime call
 * (nnq_rt_sgemm_bn: each block of C's columns then its channels, on the block's thread,
 * the values still in its cache, where the MLP's batch norms of 300 or 100 features ran
 * on one thread). For matmul i of the training function: the instruction that can take
 * its GEMM, or -1. That is the first instruction reading i's value, when it runs through
 * nnq_rt_bn_run on [N, C] with i's value as its input and its output writes none of the
 * product's operands (nor part of its result); every instruction between computes
 * nothing or is a weight gradient's product into its parameter's gradient buffer that
 * does not read i's value (it writes nothing the GEMM reads or writes; the GEMM's result,
 * live past it, shares no memory with its operands). */
static int gemm_bn_consumer(Cg *cg, const FnCtx *fc, int i) {
    const IrFunc *f = fc->f;
    if (f != &cg->m->train || !cg->m->planned) return -1;
    for (int j = i + 1; j < f->n; j++) {
        const IrInst *in = &f->insts[j];
        bool reads = false;
        for (int a = 0; a < ir_op_nargs(in->op); a++) reads |= in->args[a] == i;
        if (!reads) {
            if (ir_op_source(in->op) || (in->op == IR_MATMUL && param_grad_value(f, j))) continue;
            return -1;
        }
        if (!bn_run_op(in->op) || in->args[0] != i || in->shape.rank != 2) return -1;
        const IrInst *mm = &f->insts[i];
        for (int a = 0; a < 2; a++)
            if (arena_overlap(cg, f, buffer_of(f, j), buffer_of(f, mm->args[a]))) return -1;
        return arena_overlap(cg, f, buffer_of(f, j), i) == 2 ? -1 : j;
    }
    return -1;
}

/* y = op(a) op(b): nnq_rt_sgemm, or left to the batch norm that reads y (gemm_bn_consumer). */
static void cpu_matmul(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    const IrShape *a = arg_shape(fc, i, 0), *bs = arg_shape(fc, i, 1);
    int ta = (int)in->attr[0], tb = (int)in->attr[1];
    LLVMValueRef M = dim(cg, fc, ta ? a->d[1] : a->d[0]);
    LLVMValueRef K = dim(cg, fc, ta ? a->d[0] : a->d[1]);
    LLVMValueRef N = dim(cg, fc, tb ? bs->d[0] : bs->d[1]);
    LLVMValueRef lda = dim(cg, fc, a->d[1]), ldb = dim(cg, fc, bs->d[1]);
#define T32(v) LLVMBuildTrunc(b, (v), cg->ti32, "")
    LLVMValueRef args[CG_SGEMM_ARGS] = {ci32(cg, ta), ci32(cg, tb), T32(M), T32(N), T32(K), cf32(cg, 1.0),
                             arg_val(fc, i, 0), T32(lda), arg_val(fc, i, 1), T32(ldb), cf32(cg, 0.0), out, T32(N)};
#undef T32
    int j = gemm_bn_consumer(cg, fc, i);
    if (j >= 0) { /* cpu_bn makes the call */
        fc->deferred_to = j + 1;
        memcpy(fc->deferred, args, sizeof args);
        return;
    }
    cg_rt_call(cg, "nnq_rt_sgemm", args, CG_SGEMM_ARGS);
}

/* add, relu, relu_grad and the fused add_relu, add_relu_grad: one parallel loop; its
 * body, one per op, is shared by all the op's instructions (the buffers come in the
 * context). The fused forms do the pair's operations in the pair's order. */
static void cpu_elementwise(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = arg_val(fc, i, 0), B = arg_val(fc, i, 1), C = ir_op_nargs(in->op) > 2 ? arg_val(fc, i, 2) : NULL;
    LLVMValueRef outer[4] = {A, B ? B : A, out, C ? C : A}, n = elems(cg, fc, &in->shape);
    char name[64];
    snprintf(name, sizeof name, "par.%s", ir_op_name(in->op));
    LLVMValueRef body = LLVMGetNamedFunction(cg->mod, name);
    if (!body) {
        LLVMValueRef v[4];
        memcpy(v, outer, sizeof v);
        ParLoop p = par_begin(cg, name, n, 65536, v, 4);
        LLVMValueRef a = ldf(cg, v[0], p.l.iv), r, mask = v[1];
        if (in->op == IR_ADD || in->op == IR_ADD_RELU || in->op == IR_ADD_RELU_GRAD)
            a = LLVMBuildFAdd(b, a, ldf(cg, v[1], p.l.iv), "");
        if (in->op == IR_ADD_RELU_GRAD) mask = v[3];
        if (in->op == IR_ADD) r = a;
        else if (in->op == IR_RELU || in->op == IR_ADD_RELU) r = fmaxv(cg, a, cf32(cg, 0));
        else {
            LLVMValueRef pos = LLVMBuildFCmp(b, LLVMRealOGT, ldf(cg, mask, p.l.iv), cf32(cg, 0), "");
            r = LLVMBuildSelect(b, pos, a, cf32(cg, 0), "");
        }
        stf(cg, v[2], p.l.iv, r);
        par_finish(cg, &p);
        body = p.body_fn;
    }
    par_call(cg, body, n, 65536, outer, 4);
}

/* dropout and its gradient: a counter-based mask, one parallel loop. */
static void cpu_dropout(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = arg_val(fc, i, 0);
    /* The mask is a counter-based hash of (step, dropout, element): no state beyond the
     * step counter, the same draw for the same seed whatever the thread count, and a
     * loop that vectorizes. Keep when the top 32 bits fall below keep * 2^32. A dropout
     * is its place among the function's dropouts, not its instruction's index, which
     * layer fusion changes (--no-fuse-layers trains the same model). */
    const IrInst *drop = in->op == IR_DROPOUT ? in : &fc->f->insts[in->args[1]];
    double keep = 1.0 - (double)drop->attr[0] * 1e-6;
    LLVMValueRef key = ci64(cg, 0);
    if (in->op == IR_DROPOUT) {
        int ordinal = 0;
        for (int j = 0; j < i; j++) ordinal += fc->f->insts[j].op == IR_DROPOUT;
        LLVMValueRef step = LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->dropout_step, cg->ti64), "");
        key = LLVMBuildXor(b, LLVMBuildMul(b, step, ci64(cg, (int64_t)0x9E3779B97F4A7C15ull), ""),
                           ci64(cg, (int64_t)((uint64_t)(ordinal + 1) * 0xD1B54A32D192ED03ull)), "key");
        /* element positions in the global batch: this rank's part starts at sample mpi.base */
        LLVMValueRef base = LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->mpi_base, cg->ti64), "");
        int64_t per = ir_shape_elems(&in->shape); /* per sample */
        key = LLVMBuildAdd(b, key, LLVMBuildMul(b, LLVMBuildMul(b, base, ci64(cg, per), ""), ci64(cg, (int64_t)0x9E3779B97F4A7C15ull), ""), "");
    }
    LLVMValueRef v[4] = {A, fc->extra[drop - fc->f->insts], out, key};
    ParLoop p = par_begin(cg, "par.dropout", elems(cg, fc, &in->shape), 65536, v, 4);
    LLVMValueRef m;
    if (in->op == IR_DROPOUT) {
        LLVMValueRef z = LLVMBuildAdd(b, v[3], LLVMBuildMul(b, p.l.iv, ci64(cg, (int64_t)0x9E3779B97F4A7C15ull), ""), "");
        z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(cg, 30), ""), ""), ci64(cg, (int64_t)0xBF58476D1CE4E5B9ull), "");
        z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(cg, 27), ""), ""), ci64(cg, (int64_t)0x94D049BB133111EBull), "");
        z = LLVMBuildXor(b, z, LLVMBuildLShr(b, z, ci64(cg, 31), ""), "");
        LLVMValueRef kept = LLVMBuildICmp(b, LLVMIntULT, LLVMBuildLShr(b, z, ci64(cg, 32), ""),
                                          ci64(cg, (int64_t)(keep * 4294967296.0)), "");
        m = LLVMBuildSelect(b, kept, cf32(cg, 1.0 / keep), cf32(cg, 0), "");
        stf(cg, v[1], p.l.iv, m);
    } else {
        m = ldf(cg, v[1], p.l.iv);
    }
    stf(cg, v[2], p.l.iv, LLVMBuildFMul(b, ldf(cg, v[0], p.l.iv), m, ""));
    par_end(cg, &p);
}

/* bias_add: over ranges of channels, b[c] loaded once per channel and row; one body for
 * every instruction of a layout (dense, or with trailing dims), the shape in its context. */
static void cpu_bias_add(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrShape *as = arg_shape(fc, i, 0);
    int64_t S = chan_inner(as);
    LLVMValueRef outer[6] = {arg_val(fc, i, 0), arg_val(fc, i, 1), out, fc->n, ci64(cg, as->d[1]), ci64(cg, S)};
    const char *name = S > 1 ? "par.bias.s" : "par.bias";
    LLVMValueRef body = LLVMGetNamedFunction(cg->mod, name);
    if (!body) {
        LLVMValueRef v[6];
        memcpy(v, outer, sizeof v);
        ParLoop p = par_range_begin(cg, name, outer[4], 1, v, 6);
        ChanLoop l = chan_begin_with(cg, v[3], p.begin, p.end, (ChanShape){v[4], v[5], S > 1}, &v[1], 1);
        stf(cg, v[2], l.k, LLVMBuildFAdd(cg->b, ldf(cg, v[0], l.k), l.cv[0], ""));
        chan_end(cg, &l);
        par_finish(cg, &p);
        body = p.body_fn;
    }
    par_call(cg, body, outer[4], chan_min_items(cg, S), outer, 6);
}

/* bias_grad: per-channel sums over ranges of channels. */
static void cpu_bias_grad(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrShape *as = arg_shape(fc, i, 0);
    LLVMValueRef v[3] = {arg_val(fc, i, 0), out, fc->n};
    ParLoop p = par_chan_begin(cg, "par.bias_grad", as, v, 3);
    chan_sums(cg, CHAN_SUM, chan_shape(cg, as), v[0], NULL, NULL, NULL, NULL, v[2], p.begin, p.end, v[1], NULL);
    par_end(cg, &p);
}

/* bias_grad_bn: the sums its batch-norm gradient left in the bn's bias-gradient buffer. */
static void cpu_bias_grad_bn(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuildMemCpy(cg->b, as_ptr(cg, out, cg->ti8), 4, as_ptr(cg, cg->bnbuf[in->attr[0]][8], cg->ti8), 4,
                    ci64(cg, in->shape.d[0] * 4));
}

/* The larger and the smaller of two i64 values. */
static LLVMValueRef smax64(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, a, b, ""), a, b, "");
}

static LLVMValueRef smin64(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b, "");
}

/* Batch-norm ops run in one pass (stage 0), or, when the statistics are sums over the
 * global batch of a data-parallel run, in stages between which the sums are
 * all-reduced: 1 the sums of x (of dy and dy * y for the gradient), 2 the squared
 * deviations from the global mean, 3 the rest. in_stage: the part of stage k runs. */
static LLVMValueRef in_stage(Cg *cg, LLVMValueRef stage, int k) {
    return LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, stage, ci64(cg, 0), ""),
                       LLVMBuildICmp(cg->b, LLVMIntEQ, stage, ci64(cg, k), ""), "");
}

/* nnq_rt_bn_stats (runtime/chan.c) for channels [c0, c1); NULL pointers pass as null. */
static void bn_stats(Cg *cg, int32_t what, LLVMValueRef nf, LLVMValueRef c0, LLVMValueRef c1, LLVMValueRef sum1,
                     LLVMValueRef sum2, LLVMValueRef mean, LLVMValueRef scale, LLVMValueRef rmean, LLVMValueRef rvar) {
    LLVMValueRef null = LLVMConstNull(cg->tp);
    LLVMValueRef args[10] = {ci32(cg, what), nf, LLVMBuildTrunc(cg->b, c0, cg->ti32, ""), LLVMBuildTrunc(cg->b, c1, cg->ti32, ""),
                             sum1 ? sum1 : null, sum2 ? sum2 : null, mean ? mean : null, scale ? scale : null,
                             rmean ? rmean : null, rvar ? rvar : null};
    cg_rt_call(cg, "nnq_rt_bn_stats", args, 10);
}

/* Batch statistics of x (n rows here, nf values per channel in the whole batch) for the
 * channels [c0, c1) (dim 1, over n and the trailing dims): bn[4] = sum x, bn[2] = mean,
 * bn[5] = sum (x - mean)^2, bn[3] = 1/sqrt(var + 1e-5) with the biased variance. train:
 * the running statistics move towards the batch's (momentum 0.1, unbiased variance);
 * otherwise (calibration) the batch's mean and unbiased variance are added to the hard
 * statistics bn[6], bn[7]. Stages 1, 2 and 3 as above. The sums and the per-channel
 * arithmetic are the runtime's (runtime/chan.c). */
static void bn_batch_stats(Cg *cg, ChanShape as, LLVMValueRef A, LLVMValueRef bias, LLVMValueRef *bn, LLVMValueRef n,
                           LLVMValueRef nf, LLVMValueRef c0, LLVMValueRef c1, bool train, LLVMValueRef stage) {
    LLVMBasicBlockRef join;
    cg_if_begin(cg, in_stage(cg, stage, 1), &join);
    chan_sums(cg, CHAN_SUM, as, A, NULL, bias, NULL, NULL, n, c0, c1, bn[4], NULL);
    cg_if_end(cg, join);
    cg_if_begin(cg, in_stage(cg, stage, 2), &join);
    bn_stats(cg, NNQ_BN_MEANS, nf, c0, c1, bn[4], NULL, bn[2], NULL, NULL, NULL);
    chan_sums(cg, CHAN_SQDEV, as, A, NULL, bias, bn[2], NULL, n, c0, c1, bn[5], NULL);
    cg_if_end(cg, join);
    cg_if_begin(cg, in_stage(cg, stage, 3), &join);
    bn_stats(cg, train ? NNQ_BN_TRAIN : NNQ_BN_CALIB, nf, c0, c1, NULL, bn[5], bn[2], bn[3], bn[train ? 0 : 6],
             bn[train ? 1 : 7]);
    cg_if_end(cg, join);
}

/* A batch norm's CG_BN_BUFS buffers (Cg.bnbuf) as a constant table "BN.buffers": its loop body's
 * context carries the table. */
static LLVMValueRef bn_table(Cg *cg, int bn) {
    const char *name = arena_printf(cg->m->arena, "%s.buffers", cg->m->bns[bn].name);
    LLVMValueRef t = LLVMGetNamedGlobal(cg->mod, name);
    if (t) return t;
    LLVMValueRef init[CG_BN_BUFS];
    for (int k = 0; k < CG_BN_BUFS; k++) init[k] = LLVMConstBitCast(cg->bnbuf[bn][k], cg->tp);
    t = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->tp, CG_BN_BUFS), name);
    LLVMSetInitializer(t, LLVMConstArray(cg->tp, init, CG_BN_BUFS));
    LLVMSetGlobalConstant(t, 1);
    LLVMSetLinkage(t, LLVMInternalLinkage);
    return t;
}

/* The batch-norm ops and their fused forms (see the comment inside). */
static void cpu_bn(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    /* bias_relu_bn_maxpool_grad: A the pooled gradient, routed into `out` (the full-size
     * shape) by each group before its sums; x and the bias are its pool's operands, the
     * argmax positions its side buffer, in the context's eleventh slot (its geometry
     * in the four after) */
    bool unpool = in->op == IR_BIAS_RELU_BN_MAXPOOL_GRAD;
    const IrInst *fwdpool = unpool ? &fc->f->insts[in->args[1]] : NULL;
    LLVMValueRef A = arg_val(fc, i, 0), B = unpool ? fc->val[fwdpool->args[0]] : arg_val(fc, i, 1);
    const IrShape *as = unpool ? &in->shape : arg_shape(fc, i, 0);
    /* Per channel c (dim 1) over n and the trailing dims: count = N * S values; one
     * parallel loop over ranges of channels does the statistics and the elementwise
     * pass, both the runtime's (runtime/chan.c; precompiled loops, where generating them
     * here cost about half of VGG-16's compile time, for the same bits). The fused forms
     * (fuse_layers.c) add the bias B[c] to x where it is read, or mask dy by y > 0,
     * computing the same values as the separate ops did. The loop body is shared by
     * every instruction of the same op and layout: shapes, pooling geometry, buffers
     * and the batch-norm state (a table of its 8 buffers) come in its context.
     * Training statistics are those of the global batch (ntot rows): in a
     * data-parallel run the body runs in stages with the sums all-reduced between
     * them (synchronized batch norm), otherwise in one pass. */
    /* relu_bn_grad's relu mask; bias_relu_bn_grad's y recomputed from x (B) and the bias
     * (C); bias_bn_relu_train / eval storing relu(y) */
    /* bias_bn_relu_maxpool_train pooling relu(y) as it computes it (the runtime's maxpool
     * with the same operations), writing the pooled values and their argmax positions (its
     * side buffer, in the context's tenth slot; its geometry in the four after) */
    bool recompute = in->op == IR_BIAS_RELU_BN_GRAD || unpool;
    bool pool = in->op == IR_BIAS_BN_RELU_MAXPOOL_TRAIN || in->op == IR_BIAS_BN_RELU_MAXPOOL_EVAL;
    bool grad = in->op == IR_BN_GRAD || in->op == IR_RELU_BN_GRAD || recompute;
    /* bias_bn_relu_stats_train: the statistics only, its value the means (its reader, a
     * dwconv2d_bn_relu, normalizes x as it reads it) */
    bool stats = in->op == IR_BIAS_BN_RELU_STATS_TRAIN;
    bool train = in->op == IR_BN_TRAIN || in->op == IR_BIAS_BN_TRAIN || in->op == IR_BIAS_BN_RELU_TRAIN ||
                 in->op == IR_BIAS_BN_RELU_MAXPOOL_TRAIN || stats;
    bool relu_out = in->op == IR_BIAS_BN_RELU_TRAIN || in->op == IR_BIAS_BN_RELU_EVAL || pool;
    bool biased = in->op == IR_BIAS_BN_TRAIN || in->op == IR_BIAS_BN_EVAL || relu_out || stats;
    bool relu = in->op == IR_RELU_BN_GRAD || recompute;
    LLVMValueRef Cb = unpool ? fc->val[fwdpool->args[1]] : recompute ? arg_val(fc, i, 2) : NULL;
    /* a bias_grad_bn reads this gradient's output: sum it per channel, group by group */
    bool db = false;
    for (int j = i + 1; j < fc->f->n && grad; j++)
        db |= fc->f->insts[j].op == IR_BIAS_GRAD_BN && fc->f->insts[j].args[0] == i;
    LLVMValueRef hard = fc->hard ? fc->hard : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef calib = fc->calib ? fc->calib : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef flags = LLVMBuildOr(b, LLVMBuildZExt(b, hard, cg->ti64, ""),
                                     LLVMBuildShl(b, LLVMBuildZExt(b, calib, cg->ti64, ""), ci64(cg, 1), ""), "");
    int64_t S = chan_inner(as);
    LLVMValueRef ntot = train || grad ? fc->ntot : fc->n;
    LLVMValueRef outer[PAR_MAX_VALS] = {A, B ? B : A, out, fc->n, flags, bn_table(cg, (int)in->attr[0]), ci64(cg, as->d[1]),
                                        ci64(cg, S), ntot, Cb ? Cb : pool ? fc->extra[i] : A,
                                        unpool ? fc->extra[in->args[1]] : A};
    int nctx = unpool ? 11 : 10;
    if (pool || unpool) { /* the pooling geometry, after the rest (one body serves every geometry):
                           * the plane's h, w, the pool's k and stride (pool); the pooled
                           * plane's h, w, then the plane's (unpool) */
        const IrShape *ps = unpool ? &fwdpool->shape : NULL;
        int64_t g[4] = {unpool ? ps->d[2] : as->d[2], unpool ? ps->d[3] : as->d[3], unpool ? as->d[2] : in->attr[1],
                        unpool ? as->d[3] : in->attr[2]};
        for (int k = 0; k < 4; k++) outer[nctx++] = ci64(cg, g[k]);
    }
    char name[96];
    snprintf(name, sizeof name, "par.%s%s%s", ir_op_name(in->op), S > 1 ? ".s" : "", db ? ".db" : "");
    LLVMValueRef body = LLVMGetNamedFunction(cg->mod, name);
    if (!body) {
        LLVMValueRef v[PAR_MAX_VALS];
        memcpy(v, outer, sizeof v);
        ParLoop p = par_range_begin(cg, name, outer[6], 1, v, nctx);
        A = v[0], B = v[1], out = v[2], Cb = v[9];
        /* The range's channels a group at a time through every stage (a quarter of the
         * core's L2 cache a group, so its input and output fit together: 128k values with
         * 2 MiB; at least one channel), so a group's values stay in cache from its sums to
         * its elementwise pass instead of the whole range being read once per pass. Each
         * channel's arithmetic is the same either way, so the bits do not depend on the
         * cache size. (Measured against 256k values with 2 MiB: MobileNetV2's norm phase
         * 320 -> 295 ms, LeNet-5's 1.22 -> 1.16 ms.) */
        LLVMValueRef per = smax64(cg, LLVMBuildMul(b, v[3], v[7], ""), ci64(cg, 1)); /* values a channel */
        LLVMValueRef cache = cg_rt_call(cg, "nnq_rt_cache_floats", (LLVMValueRef[]){ci32(cg, 4)}, 1);
        LLVMValueRef G = smax64(cg, LLVMBuildSDiv(b, cache, per, ""), ci64(cg, 1));
        LLVMValueRef span = LLVMBuildSub(b, p.end, p.begin, "");
        LLVMValueRef ngroups = LLVMBuildSDiv(b, LLVMBuildAdd(b, span, LLVMBuildSub(b, G, ci64(cg, 1), ""), ""), G, "");
        Loop grp = cg_loop_begin(cg, ci64(cg, 0), ngroups, "grp");
        LLVMValueRef c0 = LLVMBuildAdd(b, p.begin, LLVMBuildMul(b, grp.iv, G, ""), "c0");
        LLVMValueRef c1 = smin64(cg, LLVMBuildAdd(b, c0, G, ""), p.end);
        LLVMValueRef n = v[3], bias = biased ? B : recompute ? Cb : NULL;
        hard = LLVMBuildTrunc(b, v[4], cg->ti1, "hard");
        calib = LLVMBuildTrunc(b, LLVMBuildAnd(b, LLVMBuildLShr(b, v[4], ci64(cg, 1), ""), ci64(cg, 1), ""), cg->ti1, "calib");
        LLVMValueRef stage = LLVMBuildLShr(b, v[4], ci64(cg, 2), "stage");
        ChanShape cs = {v[6], v[7], S > 1};
        LLVMValueRef i32[3] = {LLVMBuildTrunc(b, cs.C, cg->ti32, ""), LLVMBuildTrunc(b, c0, cg->ti32, ""),
                               LLVMBuildTrunc(b, c1, cg->ti32, "")}; /* C, c0, c1 for the runtime's calls */
        LLVMValueRef bn[CG_BN_BUFS], table = as_ptr(cg, v[5], cg->tp);
        for (int k = 0; k < CG_BN_BUFS; k++)
            bn[k] = LLVMBuildLoad2(b, cg->tp, LLVMBuildInBoundsGEP2(b, cg->tp, table, (LLVMValueRef[]){ci64(cg, k)}, 1, ""), "");
        LLVMValueRef nf = LLVMBuildSIToFP(b, LLVMBuildMul(b, v[8], cs.S, ""), cg->tf32, "");
        if (train) {
            bn_batch_stats(cg, cs, A, bias, bn, n, nf, c0, c1, true, stage);
        } else if (grad) {
            /* sum1 = sum g, sum2 = sum g * y, g = dy (masked by y > 0 for relu_bn_grad) */
            LLVMBasicBlockRef join;
            cg_if_begin(cg, in_stage(cg, stage, 1), &join);
            if (unpool) { /* maxpool_grad's planes of the group's channels, into out */
                LLVMValueRef g[4];
                for (int k = 0; k < 4; k++) g[k] = LLVMBuildTrunc(b, v[11 + k], cg->ti32, "");
                cg_rt_call(cg, "nnq_rt_maxpool_grad_chan",
                           (LLVMValueRef[]){A, v[10], n, i32[0], i32[1], i32[2], g[0], g[1], g[2], g[3], out}, 11);
            }
            if (recompute)
                chan_sums(cg, CHAN_RELU_GRAD_AFFINE, cs, unpool ? out : A, B, bias, bn[2], bn[3], n, c0, c1, bn[4], bn[5]);
            else
                chan_sums(cg, relu ? CHAN_RELU_GRAD : CHAN_GRAD, cs, A, B, NULL, NULL, NULL, n, c0, c1, bn[4], bn[5]);
            cg_if_end(cg, join);
        } else {
            /* eval: mean and invstd from the running statistics, or from the hard
             * network's recalibrated ones; when calibrating, from this batch, which is
             * also added to the hard statistics (calibrate() averages them). */
            LLVMBasicBlockRef join;
            cg_if_begin(cg, calib, &join);
            bn_batch_stats(cg, cs, A, bias, bn, n, nf, c0, c1, false, ci64(cg, 0));
            cg_if_end(cg, join);
            cg_if_begin(cg, LLVMBuildNot(b, calib, ""), &join);
            bn_stats(cg, NNQ_BN_RUNNING, nf, c0, c1, NULL, NULL, bn[2], bn[3], LLVMBuildSelect(b, hard, bn[6], bn[0], ""),
                     LLVMBuildSelect(b, hard, bn[7], bn[1], ""));
            cg_if_end(cg, join);
        }
        /* Elementwise pass. */
        if (unpool) A = out; /* the routed gradient (in place: each value read before it is written) */
        LLVMBasicBlockRef last;
        cg_if_begin(cg, in_stage(cg, stage, 3), &last);
        if (stats) { /* the group's means */
            LLVMValueRef at = LLVMBuildInBoundsGEP2(b, cg->tf32, as_ptr(cg, bn[2], cg->tf32), &c0, 1, "");
            LLVMBuildMemCpy(b, LLVMBuildInBoundsGEP2(b, cg->tf32, as_ptr(cg, out, cg->tf32), &c0, 1, ""), 4, at, 4,
                            LLVMBuildMul(b, LLVMBuildSub(b, c1, c0, ""), ci64(cg, 4), ""));
        } else if (pool) {
            LLVMValueRef g[4];
            for (int k = 0; k < 4; k++) g[k] = LLVMBuildTrunc(b, v[10 + k], cg->ti32, "");
            cg_rt_call(cg, "nnq_rt_bn_relu_maxpool",
                       (LLVMValueRef[]){A, bias, bn[2], bn[3], n, i32[0], i32[1], i32[2], g[0], g[1], g[2], g[3], out, Cb},
                       14);
        } else { /* the runtime's pass (runtime/chan.c), on this thread's channels */
            int32_t mode = (grad ? NNQ_BN_GRAD : 0) | (bias ? NNQ_BN_BIAS : 0) | (relu_out ? NNQ_BN_RELU : 0) |
                           (relu ? NNQ_BN_RELU_MASK : 0) | (recompute ? NNQ_BN_RECOMPUTE : 0);
            LLVMValueRef null = LLVMConstNull(cg->tp);
            cg_rt_call(cg, "nnq_rt_bn_apply",
                       (LLVMValueRef[]){ci32(cg, mode), A, grad ? B : null, bias ? bias : null, bn[2], bn[3],
                                        grad ? bn[4] : null, grad ? bn[5] : null, nf, n, i32[0], cs.S, i32[1], i32[2],
                                        out},
                       15);
            if (db) /* bias_grad's sums of the group's output, still in cache */
                chan_sums(cg, CHAN_SUM, cs, out, NULL, NULL, NULL, NULL, n, c0, c1, bn[8], NULL);
        }
        cg_if_end(cg, last);
        cg_loop_end(cg, &grp);
        par_finish(cg, &p);
        body = p.body_fn;
    }
    int64_t min = chan_min_items(cg, S);
    if (!train && !grad) {
        par_call(cg, body, outer[6], min, outer, nctx);
        return;
    }
    /* Training statistics: one pass on one process; the runtime runs the stages with the
     * all-reduces between them in a data-parallel run (nnq_rt_bn_run, runtime/mpi.c). */
    LLVMValueRef ctx = par_ctx(cg, outer, nctx);
    LLVMValueRef sum1 = as_ptr(cg, cg->bnbuf[in->attr[0]][4], cg->tf32), sum2 = as_ptr(cg, cg->bnbuf[in->attr[0]][5], cg->tf32);
    if (fc->deferred_to == i + 1) { /* the product before it (cpu_matmul), on its blocks */
        LLVMValueRef args[CG_SGEMM_BN_ARGS];
        memcpy(args, fc->deferred, sizeof fc->deferred);
        LLVMValueRef rest[CG_SGEMM_BN_ARGS - CG_SGEMM_ARGS] = {body, ci64(cg, min), ctx, sum1, sum2, ci32(cg, grad)};
        memcpy(args + CG_SGEMM_ARGS, rest, sizeof rest);
        fc->deferred_to = 0;
        cg_rt_call(cg, "nnq_rt_phase", (LLVMValueRef[]){ci32(cg, NNQ_PHASE_GEMM)}, 1);
        cg_rt_call(cg, "nnq_rt_sgemm_bn", args, CG_SGEMM_BN_ARGS);
        cg_rt_call(cg, "nnq_rt_phase", (LLVMValueRef[]){ci32(cg, NNQ_PHASE_NORM)}, 1);
        return;
    }
    cg_rt_call(cg, "nnq_rt_bn_run", (LLVMValueRef[]){body, outer[6], ci64(cg, min), ctx, sum1, sum2, ci32(cg, grad)}, 7);
}

/* c, h, w, o, kh, kw, stride, pad of a conv instruction, as i32 arguments. */
static void conv_geometry(Cg *cg, const IrShape *xs, const IrShape *ws, const IrInst *conv, LLVMValueRef *g) {
    int64_t v[8] = {xs->d[1], xs->d[2], xs->d[3], ws->d[0], ws->d[2], ws->d[3], conv->attr[0], conv->attr[1]};
    for (int k = 0; k < 8; k++) g[k] = ci32(cg, (int32_t)v[k]);
}

/* x [N, C, H, W], w [O, C, KH, KW] (depthwise: [C, 1, KH, KW]), y [N, O, OH, OW]: one
 * runtime call each, which runs the op by chunks of samples (runtime/conv.c) or planes
 * (runtime/dwconv.c) on the thread pool. */
static void cpu_conv(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    static const char *const fn[] = {"nnq_rt_conv2d", "nnq_rt_conv2d_dx", "nnq_rt_conv2d_dw",
                                     "nnq_rt_dwconv2d", "nnq_rt_dwconv2d_dx", "nnq_rt_dwconv2d_dw"};
    bool depthwise = in->op == IR_DWCONV2D || in->op == IR_DWCONV2D_DX || in->op == IR_DWCONV2D_DW ||
                     in->op == IR_DWCONV2D_BN_RELU;
    int kind = in->op == IR_CONV2D || in->op == IR_DWCONV2D || in->op == IR_DWCONV2D_BN_RELU ? 0
             : in->op == IR_CONV2D_DX || in->op == IR_DWCONV2D_DX                       ? 1
                                                                                          : 2;
    const IrInst *conv = kind == 2 ? &fc->f->insts[in->args[1]] : in;
    /* a dwconv2d_bn_relu (or its dwconv2d_dw) reads x, its statistics op's input, each
     * plane normalized by that op's bias, mean and scale as it is read */
    const IrInst *stats = conv->op == IR_DWCONV2D_BN_RELU ? &fc->f->insts[conv->args[0]] : NULL;
    int xv = ir_conv_input(fc->f, conv); /* the value whose planes are x */
    const IrShape *xs = kind == 1 ? &in->shape : &fc->f->insts[xv].shape;
    const IrShape *ws = &fc->f->insts[conv->args[1]].shape;
    LLVMValueRef first = kind == 2 ? fc->val[xv] : arg_val(fc, i, 1); /* w, or dw's x */
    LLVMValueRef args[15] = {kind == 0 ? fc->val[xv] : arg_val(fc, i, 0), first, out,
                             LLVMBuildTrunc(cg->b, fc->n, cg->ti32, "")};
    conv_geometry(cg, xs, ws, conv, args + 4);
    if (!stats) {
        cg_rt_call(cg, fn[kind + (depthwise ? 3 : 0)], args, 12);
        return;
    }
    args[12] = fc->val[stats->args[1]];
    args[13] = as_ptr(cg, cg->bnbuf[stats->attr[0]][2], cg->tf32);
    args[14] = as_ptr(cg, cg->bnbuf[stats->attr[0]][3], cg->tf32);
    cg_rt_call(cg, kind == 0 ? "nnq_rt_dwconv2d_bn" : "nnq_rt_dwconv2d_dw_bn", args, 15);
}

/* avgpool and its gradient: the runtime's kernels, over the N C planes. */
static void cpu_avgpool(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    const IrShape *xs = in->op == IR_AVGPOOL ? arg_shape(fc, i, 0) : &in->shape;
    LLVMValueRef planes = LLVMBuildMul(b, fc->n, ci64(cg, xs->d[1]), ""); /* N C: past 2^31 at a large batch */
    cg_rt_call(cg, in->op == IR_AVGPOOL ? "nnq_rt_avgpool" : "nnq_rt_avgpool_grad",
               (LLVMValueRef[]){arg_val(fc, i, 0), planes, ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]),
                                ci32(cg, (int32_t)in->attr[0]), ci32(cg, (int32_t)in->attr[1]), out}, 7);
}

/* maxpool and relu_maxpool (keeping each window's argmax in its side buffer) and their
 * gradient (reading it). */
static void cpu_maxpool(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = arg_val(fc, i, 0);
    bool fwd = in->op != IR_MAXPOOL_GRAD;
    const IrInst *pool = fwd ? in : &fc->f->insts[in->args[1]];
    const IrShape *xs = fwd ? arg_shape(fc, i, 0) : &in->shape;
    const IrShape *ys = &pool->shape;
    LLVMValueRef idx = fc->extra[pool - fc->f->insts];
    LLVMValueRef planes = LLVMBuildMul(b, fc->n, ci64(cg, xs->d[1]), ""); /* N C: past 2^31 at a large batch */
    if (fwd)
        cg_rt_call(cg, in->op == IR_MAXPOOL ? "nnq_rt_maxpool" : "nnq_rt_relu_maxpool", (LLVMValueRef[]){A, planes, ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]),
                                                          ci32(cg, (int32_t)pool->attr[0]), ci32(cg, (int32_t)pool->attr[1]), out, idx}, 8);
    else
        cg_rt_call(cg, "nnq_rt_maxpool_grad", (LLVMValueRef[]){A, idx, planes, ci32(cg, (int32_t)ys->d[2]), ci32(cg, (int32_t)ys->d[3]),
                                                               ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]), out}, 8);
}

/* The softmax cross-entropy loss, the correct count and the loss gradient of n rows of C
 * logits A (labels B), row by row, into out. */
static void loss_rows(Cg *cg, IrOp op, int64_t C, LLVMValueRef A, LLVMValueRef B, LLVMValueRef out, LLVMValueRef n) {
    LLVMBuilderRef b = cg->b;
    LLVMValueRef acc = cg_local(cg, cg->tf32, cf32(cg, 0), "acc");
    Loop r = cg_loop_begin(cg, ci64(cg, 0), n, "row");
    LLVMValueRef base = LLVMBuildMul(b, r.iv, ci64(cg, C), "");
    LLVMValueRef label = LLVMBuildSExt(b, ldi32(cg, B, r.iv), cg->ti64, "");
    /* max and argmax (first maximum) */
    LLVMValueRef mx = cg_local(cg, cg->tf32, ldf(cg, A, base), "max");
    LLVMValueRef am = cg_local(cg, cg->ti64, ci64(cg, 0), "argmax");
    Loop j = cg_loop_begin(cg, ci64(cg, 1), ci64(cg, C), "col");
    LLVMValueRef v = ldf(cg, A, LLVMBuildAdd(b, base, j.iv, ""));
    LLVMValueRef cur = get(cg, cg->tf32, mx);
    LLVMValueRef gt = LLVMBuildFCmp(b, LLVMRealOGT, v, cur, "");
    LLVMBuildStore(b, LLVMBuildSelect(b, gt, v, cur, ""), mx);
    LLVMBuildStore(b, LLVMBuildSelect(b, gt, j.iv, get(cg, cg->ti64, am), ""), am);
    cg_loop_end(cg, &j);
    LLVMValueRef m = get(cg, cg->tf32, mx);
    if (op == IR_CORRECT) {
        LLVMValueRef hit = LLVMBuildICmp(b, LLVMIntEQ, get(cg, cg->ti64, am), label, "");
        LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, acc), LLVMBuildUIToFP(b, hit, cg->tf32, ""), ""), acc);
    } else {
        LLVMValueRef sum = cg_local(cg, cg->tf32, cf32(cg, 0), "sum");
        Loop j2 = cg_loop_begin(cg, ci64(cg, 0), ci64(cg, C), "col");
        LLVMValueRef d = LLVMBuildFSub(b, ldf(cg, A, LLVMBuildAdd(b, base, j2.iv, "")), m, "");
        LLVMValueRef e = cg_exp_f32(cg, d);
        LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, sum), e, ""), sum);
        if (op == IR_XENT_GRAD) stf(cg, out, LLVMBuildAdd(b, base, j2.iv, ""), e);
        cg_loop_end(cg, &j2);
        LLVMValueRef s = get(cg, cg->tf32, sum);
        if (op == IR_XENT) {
            LLVMValueRef ls = cg_log_f32(cg, s);
            LLVMValueRef zl = ldf(cg, A, LLVMBuildAdd(b, base, label, ""));
            LLVMValueRef loss = LLVMBuildFSub(b, LLVMBuildFAdd(b, ls, m, ""), zl, "");
            LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, acc), loss, ""), acc);
        } else {
            LLVMValueRef scale = LLVMBuildFDiv(b, cf32(cg, 1), LLVMBuildFMul(b, s, LLVMBuildSIToFP(b, n, cg->tf32, ""), ""), "");
            LLVMValueRef invn = LLVMBuildFDiv(b, cf32(cg, 1), LLVMBuildSIToFP(b, n, cg->tf32, ""), "");
            Loop j3 = cg_loop_begin(cg, ci64(cg, 0), ci64(cg, C), "col");
            LLVMValueRef k = LLVMBuildAdd(b, base, j3.iv, "");
            LLVMValueRef g = LLVMBuildFMul(b, ldf(cg, out, k), scale, "");
            LLVMValueRef is = LLVMBuildICmp(b, LLVMIntEQ, j3.iv, label, "");
            g = LLVMBuildSelect(b, is, LLVMBuildFSub(b, g, invn, ""), g, "");
            stf(cg, out, k, g);
            cg_loop_end(cg, &j3);
        }
    }
    cg_loop_end(cg, &r);
    if (op == IR_XENT)
        stf(cg, out, ci64(cg, 0), LLVMBuildFDiv(b, get(cg, cg->tf32, acc), LLVMBuildSIToFP(b, n, cg->tf32, ""), ""));
    else if (op == IR_CORRECT)
        stf(cg, out, ci64(cg, 0), get(cg, cg->tf32, acc));
}

/* The loss ops: a function of their own per op and class count, loss.OP.C(A, B, out, n),
 * optimized (the step functions that call it are not: codegen.c's mark_cold) for size:
 * at full optimization LLVM unrolled the loops over the 10 classes of the examples
 * completely, 2 KB of code a function; minsize keeps the loops (the same operations in
 * the same order, so the same bits) and took 6 ms off the MLP's 215 of LLVM time at one
 * thread (nine alternated runs). A batch's loss is a few thousand exps at most. */
static void cpu_loss(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    int64_t C = arg_shape(fc, i, 0)->d[1];
    char name[96];
    snprintf(name, sizeof name, "loss.%s.%lld", ir_op_name(in->op), (long long)C);
    LLVMTypeRef ps[4] = {cg->tp, cg->tp, cg->tp, cg->ti64};
    LLVMTypeRef ty = LLVMFunctionType(cg->tv, ps, 4, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) {
        LLVMValueRef outer = cg->fn;
        LLVMBasicBlockRef at = LLVMGetInsertBlock(cg->b);
        fn = cg_new_function(cg, name, ty, false);
        cg_attribute(cg, fn, LLVMAttributeFunctionIndex, "minsize");
        loss_rows(cg, in->op, C, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), LLVMGetParam(fn, 3));
        LLVMBuildRetVoid(cg->b);
        cg->fn = outer;
        LLVMPositionBuilderAtEnd(cg->b, at);
    }
    LLVMValueRef args[4] = {LLVMBuildBitCast(cg->b, arg_val(fc, i, 0), cg->tp, ""), LLVMBuildBitCast(cg->b, arg_val(fc, i, 1), cg->tp, ""),
                            LLVMBuildBitCast(cg->b, out, cg->tp, ""), fc->n};
    LLVMBuildCall2(cg->b, ty, fn, args, 4, "");
}

/* ---------- fused kernels ---------- */

/* Elements a thread's part of a kernel holds at least. A binary PMF update costs about
 * 3 ns an element (AVX2, one thread): at 65536, LeNet-300-100's 30000-weight layer ran
 * on one thread while the other waited (its update at 2 threads 0.40 ms; 0.355 at
 * 8192, the float MLP's unchanged). */
#define KERNEL_MIN_ITEMS 8192

/* Vectors an iteration of a kernel's loops computes, interleaved operation by operation.
 * An update's element is a chain of dependent long-latency operations (exp polynomials,
 * divisions, square roots) that keeps the out-of-order core's scheduler full: four
 * independent chains side by side let it find ready work. The same operations on every
 * element, so the same bits. Measured (AMD Zen 5, alternated): update_bench's binary PMF
 * + Adam, 1 thread, 1.00-1.10 -> 0.92-1.00 ns a weight with AVX2 (2: 0.96-1.01; 8: no
 * gain), 0.56-0.58 -> 0.52-0.58 with AVX-512; the MLPs' update phase at 2 threads, binary
 * PMF 0.144 -> 0.133 ms, MD-tanh-S 0.106 -> 0.088; LeNet-5's at 1 thread 0.507 -> 0.465;
 * the float MLP's 0.087 -> 0.081 (plain Adam, one loop); 0.01 s more compile time for the
 * MLP, LeNet-5 and ResNet-18. With it, two earlier ways of breaking the chain lost and
 * are gone (docs/ir.md): a loop of its own for an exp a division waits on, and a stage
 * run beside the next block's stage 0 (update phase, 1 thread, AVX2: binary PMF 0.279
 * -> 0.261 ms, MD-tanh-S 0.210 -> 0.188, MD-softmax 0.392 -> 0.341; GD-stanh over three
 * labels 0.581 -> 0.604). */
#define KERNEL_INTERLEAVE 4

/* Stage `stage`'s loop over elements base + [lo, hi). */
static void stage_loop(Cg *cg, CgElemCode *code, const void *kernel, int stage, LLVMValueRef base, LLVMValueRef lo,
                       LLVMValueRef hi, const LLVMValueRef *buf, const LLVMValueRef *sc) {
    Loop l = cg_loop_begin(cg, lo, hi, "j");
    code(cg, kernel, stage, LLVMBuildAdd(cg->b, base, l.iv, ""), buf, sc);
    cg_loop_end_interleaved(cg, &l, KERNEL_INTERLEAVE);
}

/* A kernel's shape(table, count, scalars...): what cpu_kernel defines and cpu_kernel_run
 * calls. */
static LLVMTypeRef shape_type(Cg *cg) {
    LLVMTypeRef ps[2 + IRS_COUNT] = {cg->tp, cg->ti64};
    for (int i = 0; i < IRS_COUNT; i++) ps[2 + i] = cg->tf32;
    return LLVMFunctionType(cg->tv, ps, 2 + IRS_COUNT, 0);
}

/* core(begin, end, buffers..., scalars...) runs `code` over [begin, end): the buffers are
 * distinct arrays (noalias), so it vectorizes without run-time alias checks.
 * shape(table, count, scalars...) runs body(ctx, begin, end) on the thread pool, which
 * loads the buffers' addresses from the parameter's table and calls core. Returns shape. */
static LLVMValueRef cpu_kernel(Cg *cg, const char *name, int nb, int stages, CgElemCode *code, const void *kernel) {
    char fname[256];
    LLVMTypeRef cps[2 + CG_KERNEL_MAX_BUFS + IRS_COUNT];
    cps[0] = cps[1] = cg->ti64;
    for (int j = 0; j < nb; j++) cps[2 + j] = cg->tp;
    for (int i = 0; i < IRS_COUNT; i++) cps[2 + nb + i] = cg->tf32;
    LLVMTypeRef core_ty = LLVMFunctionType(cg->tv, cps, (unsigned)(2 + nb + IRS_COUNT), 0);
    snprintf(fname, sizeof fname, "%s.core", name);
    LLVMValueRef core = cg_new_function(cg, fname, core_ty, false);
    for (int j = 0; j < nb; j++) cg_attribute(cg, core, (unsigned)(3 + j), "noalias");
    LLVMValueRef sc[IRS_COUNT], buf[CG_KERNEL_MAX_BUFS];
    for (int i = 0; i < IRS_COUNT; i++) sc[i] = LLVMGetParam(core, (unsigned)(2 + nb + i));
    for (int j = 0; j < nb; j++) buf[j] = LLVMGetParam(core, (unsigned)(2 + j));
    LLVMValueRef begin = LLVMGetParam(core, 0), end = LLVMGetParam(core, 1);
    if (stages == 1) {
        stage_loop(cg, code, kernel, -1, ci64(cg, 0), begin, end, buf, sc);
    } else { /* per block: stage 0's loop, then stage 1's, ... */
        Loop blk = cg_loop_begin_step(cg, begin, end, ci64(cg, CG_KERNEL_BLOCK), "block");
        LLVMValueRef next = LLVMBuildAdd(cg->b, blk.iv, ci64(cg, CG_KERNEL_BLOCK), "");
        LLVMValueRef n = LLVMBuildSub(cg->b, smin64(cg, next, end), blk.iv, "");
        for (int stage = 0; stage < stages; stage++) stage_loop(cg, code, kernel, stage, blk.iv, ci64(cg, 0), n, buf, sc);
        cg_loop_end(cg, &blk);
    }
    LLVMBuildRetVoid(cg->b);
    snprintf(fname, sizeof fname, "%s.shape", name);
    LLVMValueRef f = cg_new_function(cg, fname, shape_type(cg), false);
    LLVMValueRef v[1 + IRS_COUNT] = {LLVMGetParam(f, 0)};
    for (int i = 0; i < IRS_COUNT; i++) v[1 + i] = LLVMGetParam(f, (unsigned)(2 + i));
    snprintf(fname, sizeof fname, "%s.body", name);
    ParLoop pl = par_range_begin(cg, fname, LLVMGetParam(f, 1), KERNEL_MIN_ITEMS, v, 1 + IRS_COUNT);
    LLVMValueRef args[2 + CG_KERNEL_MAX_BUFS + IRS_COUNT] = {pl.begin, pl.end};
    LLVMValueRef table = as_ptr(cg, v[0], cg->tp);
    for (int j = 0; j < nb; j++)
        args[2 + j] = LLVMBuildLoad2(cg->b, cg->tp, LLVMBuildInBoundsGEP2(cg->b, cg->tp, table, (LLVMValueRef[]){ci64(cg, j)}, 1, ""), "");
    for (int i = 0; i < IRS_COUNT; i++) args[2 + nb + i] = v[1 + i];
    LLVMBuildCall2(cg->b, core_ty, core, args, (unsigned)(2 + nb + IRS_COUNT), "");
    par_end(cg, &pl);
    LLVMBuildRetVoid(cg->b);
    return f;
}

/* The parameter's table of buffers, "NAME.buffers": what its kernels' shape loads. */
static LLVMValueRef cpu_kernel_args(Cg *cg, const char *name, const LLVMValueRef *bufs, int nb) {
    char tname[256];
    LLVMValueRef init[CG_KERNEL_MAX_BUFS];
    for (int j = 0; j < nb; j++) init[j] = LLVMConstBitCast(bufs[j], cg->tp);
    snprintf(tname, sizeof tname, "%s.buffers", name);
    LLVMValueRef table = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->tp, (unsigned)nb), tname);
    LLVMSetInitializer(table, LLVMConstArray(cg->tp, init, (unsigned)nb));
    LLVMSetGlobalConstant(table, 1);
    LLVMSetLinkage(table, LLVMInternalLinkage);
    return LLVMConstBitCast(table, cg->tp);
}

/* shape(table, count, scalars...) */
static void cpu_kernel_run(Cg *cg, LLVMValueRef shape, LLVMValueRef table, LLVMValueRef count,
                           const LLVMValueRef *scalars) {
    LLVMTypeRef ty = shape_type(cg);
    LLVMValueRef args[2 + IRS_COUNT] = {table, count};
    for (int i = 0; i < IRS_COUNT; i++) args[2 + i] = scalars[i];
    LLVMValueRef f = LLVMBuildBitCast(cg->b, shape, LLVMPointerType(ty, 0), ""); /* typed pointers (LLVM 14) */
    LLVMBuildCall2(cg->b, ty, f, args, 2 + IRS_COUNT, "");
}

/* ---------- setup ---------- */

/* Every convolution's scratch (the columns of a chunk of samples, per thread; a padded
 * plane for the depthwise ones), reserved before any work. */
static void cpu_setup(Cg *cg, LLVMValueRef run) {
    for (int which = 0; which < 2; which++) {
        const IrFunc *f = which ? &cg->m->eval : &cg->m->train;
        for (int i = 0; i < f->n; i++) {
            const IrInst *in = &f->insts[i];
            if (in->op != IR_CONV2D && in->op != IR_DWCONV2D && in->op != IR_DWCONV2D_BN_RELU) continue;
            LLVMValueRef args[11] = {run, ci32(cg, (int32_t)cg->batch)};
            conv_geometry(cg, &f->insts[ir_conv_input(f, in)].shape, &f->insts[in->args[1]].shape, in, args + 2);
            if (in->op == IR_CONV2D) cg_rt_call(cg, "nnq_rt_conv_reserve", args, 10);
            else {
                args[10] = ci32(cg, in->op == IR_DWCONV2D_BN_RELU);
                cg_rt_call(cg, "nnq_rt_dwconv_reserve", args, 11);
            }
        }
    }
}

/* ---------- the target ---------- */

const CgTarget cg_target_cpu = {
    .name = "cpu",
    .buffer = cpu_buffer,
    .ops = {
        [IR_MATMUL] = cpu_matmul,
        [IR_ADD] = cpu_elementwise,
        [IR_RELU] = cpu_elementwise,
        [IR_RELU_GRAD] = cpu_elementwise,
        [IR_ADD_RELU] = cpu_elementwise,
        [IR_ADD_RELU_GRAD] = cpu_elementwise,
        [IR_DROPOUT] = cpu_dropout,
        [IR_DROPOUT_GRAD] = cpu_dropout,
        [IR_BIAS_ADD] = cpu_bias_add,
        [IR_BIAS_GRAD] = cpu_bias_grad,
        [IR_BIAS_GRAD_BN] = cpu_bias_grad_bn,
        [IR_BN_TRAIN] = cpu_bn,
        [IR_BN_EVAL] = cpu_bn,
        [IR_BN_GRAD] = cpu_bn,
        [IR_BIAS_BN_TRAIN] = cpu_bn,
        [IR_BIAS_BN_EVAL] = cpu_bn,
        [IR_RELU_BN_GRAD] = cpu_bn,
        [IR_BIAS_BN_RELU_TRAIN] = cpu_bn,
        [IR_BIAS_BN_RELU_STATS_TRAIN] = cpu_bn,
        [IR_DWCONV2D_BN_RELU] = cpu_conv,
        [IR_BIAS_BN_RELU_EVAL] = cpu_bn,
        [IR_BIAS_BN_RELU_MAXPOOL_TRAIN] = cpu_bn,
        [IR_BIAS_BN_RELU_MAXPOOL_EVAL] = cpu_bn,
        [IR_BIAS_RELU_BN_GRAD] = cpu_bn,
        [IR_BIAS_RELU_BN_MAXPOOL_GRAD] = cpu_bn,
        [IR_CONV2D] = cpu_conv,
        [IR_CONV2D_DX] = cpu_conv,
        [IR_CONV2D_DW] = cpu_conv,
        [IR_DWCONV2D] = cpu_conv,
        [IR_DWCONV2D_DX] = cpu_conv,
        [IR_DWCONV2D_DW] = cpu_conv,
        [IR_AVGPOOL] = cpu_avgpool,
        [IR_AVGPOOL_GRAD] = cpu_avgpool,
        [IR_MAXPOOL] = cpu_maxpool,
        [IR_RELU_MAXPOOL] = cpu_maxpool,
        [IR_MAXPOOL_GRAD] = cpu_maxpool,
        [IR_XENT] = cpu_loss,
        [IR_CORRECT] = cpu_loss,
        [IR_XENT_GRAD] = cpu_loss,
    },
    .kernel = cpu_kernel,
    .kernel_args = cpu_kernel_args,
    .kernel_run = cpu_kernel_run,
    .setup = cpu_setup,
};
