/* codegen.c — LLVM IR generation for a whole training program, through the LLVM C API.
 *
 * Requires: a verified IrModule with autodiff and fused kernels, and a TrainConfig.
 * Produces: one LLVM module with
 *   - static, 64-byte aligned buffers for every parameter array (weight, hard, grad,
 *     aux/m/v components), batch-norm state and IR value (sized for the batch);
 *   - @train_step(i64 n) and @eval_batch(i64 n, i32 hard) -> float, one loop nest per
 *     IR instruction, GEMMs as calls to nnq_rt_sgemm;
 *   - one function per fused kernel: a single loop over the parameter's elements;
 *   - @evaluate(run, ds, start, count, hard) -> double accuracy;
 *   - @nnq_main(run) -> i32: data loading, initialization (random draws, then the
 *     weights of `init from` where given), the epoch/iteration loops
 *     with the learning-rate schedule and beta annealing, validation, keeping the best
 *     hard model, checkpoints (declared state saved after epochs, restored by
 *     --resume before the first epoch left), the test evaluation and the model file.
 * Only the opaque-pointer-safe builder calls (Load2, GEP2, Call2) are used; pointers
 * are bitcast to their element type first, which is a no-op with opaque pointers. */
#include "codegen.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include "nnq_rt.h"
#include "rt_table.h"

typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const IrModule *m;
    const TrainConfig *tc;
    TrainConfig defaults;
    int64_t batch;
    bool export_internals;
    LLVMTypeRef tv, ti1, ti8, ti32, ti64, tf32, tf64, tp;
    LLVMValueRef *rt_fn;
    LLVMTypeRef *rt_ty;
    LLVMValueRef fn;                 /* function being built */
    /* Buffers */
    LLVMValueRef x, y;               /* the batch */
    LLVMValueRef (*pbuf)[6];         /* per param: weight, hard, grad, aux0, m0, v0 (comp 0) */
    LLVMValueRef **pcomp;            /* per param: [3][K] aux, m, v components */
    LLVMValueRef (*bnbuf)[8];        /* rmean, rvar, mean, invstd, sum1, sum2, hard mean, hard var */
    LLVMValueRef *bntable;           /* per bn: a constant table of its 8 buffers */
    LLVMValueRef bn_body[6][2];      /* shared loop bodies of the batch-norm ops, by op and S > 1 */
    LLVMValueRef ew_body[3];         /* shared loop bodies of add, relu, relu_grad */
    LLVMValueRef *vtrain, *veval;    /* per IR value */
    LLVMValueRef *xtrain, *xeval;    /* per IR instruction: pooling argmax, dropout mask */
    LLVMValueRef dropout_step;       /* i64 global: train steps taken, keys dropout masks */
    LLVMValueRef mpi_size, mpi_base; /* i64 globals: processes in the job, this rank's first sample */
    LLVMValueRef grad_table, grad_counts; /* every parameter's grad buffer and its length */
    LLVMValueRef fingerprint;        /* i64 global: a hash of the module's text (cg_set_fingerprint) */
    LLVMValueRef *kscalars;          /* the kernel being emitted: its scalars (beta, lr, ...) */
    LLVMValueRef (*best)[2];         /* kept model: per param aux snapshot (flat K*count) */
    LLVMValueRef *bestbn;            /* per bn: rmean+rvar snapshot */
    LLVMValueRef *kernels;           /* [nparams * 4] */
    LLVMValueRef train_step, eval_batch, evaluate;
    LLVMTypeRef train_step_ty, eval_batch_ty, evaluate_ty, kernel_ty, calibrate_ty;
    LLVMValueRef calibrate, calib_ds, calib_batches; /* hard batch-norm statistics */
} Cg;

/* ---------- small helpers ---------- */

static LLVMValueRef ci64(Cg *cg, int64_t v) { return LLVMConstInt(cg->ti64, (unsigned long long)v, 1); }
static LLVMValueRef ci32(Cg *cg, int32_t v) { return LLVMConstInt(cg->ti32, (unsigned long long)(int64_t)v, 1); }
static LLVMValueRef cf32(Cg *cg, double v) { return LLVMConstReal(cg->tf32, v); }
static LLVMValueRef cf64(Cg *cg, double v) { return LLVMConstReal(cg->tf64, v); }

static LLVMValueRef rt_call(Cg *cg, const char *name, LLVMValueRef *args, int nargs) {
    int i = rt_table_find(name);
    assert(i >= 0 && "runtime function missing from abi.def");
    assert(rt_table[i].nargs == nargs);
    /* Pointer arguments are declared i8*: cast whatever we have. */
    for (int k = 0; k < nargs; k++)
        if (rt_table[i].args[k] == RT_P && LLVMGetTypeKind(LLVMTypeOf(args[k])) == LLVMPointerTypeKind)
            args[k] = LLVMBuildBitCast(cg->b, args[k], cg->tp, "");
    return LLVMBuildCall2(cg->b, cg->rt_ty[i], cg->rt_fn[i], args, (unsigned)nargs, "");
}

static LLVMValueRef const_array(Cg *cg, LLVMTypeRef elem, const LLVMValueRef *vals, int n, const char *name);

static LLVMValueRef global_buf(Cg *cg, const char *name, int64_t count, LLVMTypeRef elem) {
    if (count < 1) count = 1;
    LLVMTypeRef at = LLVMArrayType(elem, (unsigned)count);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, at, name);
    LLVMSetInitializer(g, LLVMConstNull(at));
    if (!cg->export_internals) LLVMSetLinkage(g, LLVMInternalLinkage);
    LLVMSetAlignment(g, 64);
    return g;
}

/* A float* (or elem*) to the start of a buffer. */
static LLVMValueRef as_ptr(Cg *cg, LLVMValueRef p, LLVMTypeRef elem) {
    return LLVMBuildBitCast(cg->b, p, LLVMPointerType(elem, 0), "");
}

static LLVMValueRef gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(cg->b, elem, as_ptr(cg, base, elem), &idx, 1, "");
}

static LLVMValueRef ldf(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildLoad2(cg->b, cg->tf32, gep(cg, cg->tf32, base, idx), "");
}

static void stf(Cg *cg, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v) {
    LLVMBuildStore(cg->b, v, gep(cg, cg->tf32, base, idx));
}

static LLVMValueRef ldi32(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildLoad2(cg->b, cg->ti32, gep(cg, cg->ti32, base, idx), "");
}

static LLVMValueRef intrinsic(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    assert(id);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &ty, 1);
    return LLVMBuildCall2(cg->b, fty, f, args, (unsigned)n, "");
}

static LLVMValueRef fmaxv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGE, a, b, ""), a, b, "");
}

static LLVMValueRef exp_f32(Cg *cg, LLVMValueRef a);

/* tanh through exp, so the loop vectorizer can use SIMD exp: with t = exp(-2|x|),
 * tanh(x) = sign(x) (1 - t) / (1 + t). Absolute error below 1e-7 (relative error grows
 * only for |x| < 1e-3, where the value itself is that small); libm's tanhf stayed a
 * scalar call and made shifted-tanh epochs ten times slower. */
static LLVMValueRef tanh_f32(Cg *cg, LLVMValueRef x) {
    LLVMValueRef ax = intrinsic(cg, "llvm.fabs", cg->tf32, &x, 1);
    LLVMValueRef t = exp_f32(cg, LLVMBuildFMul(cg->b, ax, LLVMConstReal(cg->tf32, -2.0), ""));
    LLVMValueRef one = LLVMConstReal(cg->tf32, 1.0);
    LLVMValueRef r = LLVMBuildFDiv(cg->b, LLVMBuildFSub(cg->b, one, t, ""), LLVMBuildFAdd(cg->b, one, t, ""), "");
    LLVMTypeRef ty = cg->tf32;
    unsigned id = LLVMLookupIntrinsicID("llvm.copysign", 13);
    LLVMValueRef args[2] = {r, x};
    return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, &ty, 1),
                          LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1), args, 2, "");
}

/* exp with its argument raised to -87 (exp(-87) ~ 1.6e-38, next to FLT_MIN): below
 * that expf underflows through a slow path (scalar and SIMD alike) that dominated
 * training once beta was large; the result differs from 0 by less than 2e-38. */
static LLVMValueRef exp_f32(Cg *cg, LLVMValueRef a) {
    LLVMValueRef lo = LLVMConstReal(cg->tf32, -87.0);
    LLVMValueRef x = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, a, lo, ""), lo, a, "");
    return intrinsic(cg, "llvm.exp", cg->tf32, &x, 1);
}

static LLVMValueRef local(Cg *cg, LLVMTypeRef ty, LLVMValueRef init, const char *name) {
    /* allocas go to the entry block so mem2reg promotes them */
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first) LLVMPositionBuilderBefore(cg->b, first);
    else LLVMPositionBuilderAtEnd(cg->b, entry);
    LLVMValueRef a = LLVMBuildAlloca(cg->b, ty, name);
    LLVMPositionBuilderAtEnd(cg->b, cur);
    if (init) LLVMBuildStore(cg->b, init, a);
    return a;
}

static LLVMValueRef get(Cg *cg, LLVMTypeRef ty, LLVMValueRef var) { return LLVMBuildLoad2(cg->b, ty, var, ""); }

/* ---------- loops ---------- */

typedef struct Loop {
    LLVMBasicBlockRef header, exit;
    LLVMValueRef iv, step;
} Loop;

static Loop loop_begin_step(Cg *cg, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step, const char *name) {
    Loop l;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l.header = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "body");
    l.exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "exit");
    l.step = step;
    LLVMBuildBr(cg->b, l.header);
    LLVMPositionBuilderAtEnd(cg->b, l.header);
    l.iv = LLVMBuildPhi(cg->b, LLVMTypeOf(start), name);
    LLVMAddIncoming(l.iv, &start, &pre, 1);
    LLVMValueRef c = LLVMBuildICmp(cg->b, LLVMIntSLT, l.iv, end, "");
    LLVMBuildCondBr(cg->b, c, body, l.exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
    return l;
}

static Loop loop_begin(Cg *cg, LLVMValueRef start, LLVMValueRef end, const char *name) {
    return loop_begin_step(cg, start, end, LLVMConstInt(LLVMTypeOf(start), 1, 0), name);
}

static void loop_end(Cg *cg, Loop *l) {
    LLVMValueRef next = LLVMBuildAdd(cg->b, l->iv, l->step, "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMBuildBr(cg->b, l->header);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

static void if_begin(Cg *cg, LLVMValueRef cond, LLVMBasicBlockRef *join) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "then");
    *join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "join");
    LLVMBuildCondBr(cg->b, cond, then, *join);
    LLVMPositionBuilderAtEnd(cg->b, then);
}

static void if_end(Cg *cg, LLVMBasicBlockRef join) {
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

static LLVMValueRef new_function(Cg *cg, const char *name, LLVMTypeRef ty, bool external) {
    LLVMValueRef f = LLVMAddFunction(cg->mod, name, ty);
    if (!external && !cg->export_internals) LLVMSetLinkage(f, LLVMInternalLinkage);
    cg->fn = f;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, f, "entry");
    LLVMPositionBuilderAtEnd(cg->b, entry);
    return f;
}

/* Orchestration code that runs once per batch or epoch (the epoch loop, evaluate,
 * calibrate) is not worth optimizing: optnone (with the noinline it requires) keeps the
 * optimizer and the instruction selector's slow path away from it. Compile time falls;
 * the per-element loops it calls are separate functions and optimized as before. */
static void mark_cold(Cg *cg, LLVMValueRef fn) {
    static const char *const attrs[] = {"optnone", "noinline"};
    for (int i = 0; i < 2; i++) {
        unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
    }
}

/* ---------- parallel loops ----------
 * A loop over [0, n) with independent iterations becomes a function
 * body(ctx, i64 begin, i64 end) that nnq_rt_parallel_for runs on the runtime's threads.
 * The values of the enclosing function that the body uses travel in ctx, an array of
 * i64 (pointers through ptrtoint, f32 through its bits, i1 widened); par_begin hands
 * back the body's copies in place. Every iteration is computed by one thread, so
 * results do not depend on the thread count. */
#define PAR_MAX_VALS 10

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
    p.body_fn = new_function(cg, name, LLVMFunctionType(cg->tv, ps, 3, 0), false);
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
    p.l = loop_begin(cg, p.begin, p.end, "par");
    return p;
}

/* Ends the body and returns to the enclosing function, emitting no call. */
static void par_finish(Cg *cg, ParLoop *p) {
    if (p->has_loop) loop_end(cg, &p->l);
    LLVMBuildRetVoid(cg->b);
    cg->fn = p->outer_fn;
    LLVMPositionBuilderAtEnd(cg->b, p->outer_bb);
}

/* A body's context: vals as i64 in a stack array; returns its address. */
static LLVMValueRef par_ctx(Cg *cg, const LLVMValueRef *vals, int nvals) {
    LLVMValueRef ctx = local(cg, LLVMArrayType(cg->ti64, PAR_MAX_VALS), NULL, "par.ctx");
    LLVMValueRef base = LLVMBuildBitCast(cg->b, ctx, LLVMPointerType(cg->ti64, 0), "");
    for (int k = 0; k < nvals; k++)
        LLVMBuildStore(cg->b, to_i64(cg, vals[k]),
                       LLVMBuildInBoundsGEP2(cg->b, cg->ti64, base, (LLVMValueRef[]){ci64(cg, k)}, 1, ""));
    return ctx;
}

/* Runs body over [0, n) on the runtime's threads with vals in its context. */
static void par_call(Cg *cg, LLVMValueRef body, LLVMValueRef n, int64_t min_items, const LLVMValueRef *vals, int nvals) {
    LLVMValueRef ctx = par_ctx(cg, vals, nvals);
    rt_call(cg, "nnq_rt_parallel_for", (LLVMValueRef[]){n, ci64(cg, min_items), body, ctx}, 4);
}

static void par_end(Cg *cg, ParLoop *p) {
    par_finish(cg, p);
    par_call(cg, p->body_fn, p->n, p->min_items, p->vals, p->nvals);
}

/* ---------- buffers ---------- */

static void make_buffers(Cg *cg) {
    const IrModule *m = cg->m;
    Arena *ar = m->arena;
    int64_t in_elems = ir_shape_elems(&m->input);
    cg->x = global_buf(cg, "batch.x", cg->batch * in_elems, cg->tf32);
    cg->y = global_buf(cg, "batch.y", cg->batch, cg->ti32);
    cg->pbuf = calloc(m->nparams, sizeof *cg->pbuf);
    cg->pcomp = calloc(m->nparams * 3, sizeof(LLVMValueRef *));
    cg->best = calloc(m->nparams, sizeof *cg->best);
    bool use_m = cg->tc->opt == OPT_ADAM || cg->tc->momentum != 0, use_v = cg->tc->opt == OPT_ADAM;
    for (int i = 0; i < m->nparams; i++) {
        const IrParam *p = &m->params[i];
        int K = p->proj->ncomp;
        cg->pbuf[i][IRB_WEIGHT] = global_buf(cg, arena_printf(ar, "%s.weight", p->name), p->count, cg->tf32);
        cg->pbuf[i][IRB_HARD] = global_buf(cg, arena_printf(ar, "%s.hard", p->name), p->count, cg->tf32);
        cg->pbuf[i][IRB_GRAD] = global_buf(cg, arena_printf(ar, "%s.grad", p->name), p->count, cg->tf32);
        for (int kind = 0; kind < 3; kind++) {
            LLVMValueRef *comps = calloc(K, sizeof(LLVMValueRef));
            cg->pcomp[i * 3 + kind] = comps;
            if ((kind == 1 && !use_m) || (kind == 2 && !use_v)) continue;
            static const char *const kn[] = {"aux", "m", "v"};
            for (int c = 0; c < K; c++)
                comps[c] = global_buf(cg, arena_printf(ar, "%s.%s%d", p->name, kn[kind], c), p->count, cg->tf32);
        }
        if (cg->tc->keep_best)
            cg->best[i][0] = global_buf(cg, arena_printf(ar, "%s.best", p->name), p->count * K, cg->tf32);
    }
    {
        LLVMValueRef *ptrs = calloc(m->nparams + 1, sizeof *ptrs), *counts = calloc(m->nparams + 1, sizeof *counts);
        for (int i = 0; i < m->nparams; i++) {
            ptrs[i] = LLVMConstBitCast(cg->pbuf[i][IRB_GRAD], cg->tp);
            counts[i] = ci64(cg, m->params[i].count);
        }
        cg->grad_table = const_array(cg, cg->tp, ptrs, m->nparams, "grads");
        cg->grad_counts = const_array(cg, cg->ti64, counts, m->nparams, "grad.counts");
        free(ptrs);
        free(counts);
    }
    cg->fingerprint = LLVMAddGlobal(cg->mod, cg->ti64, "nnq.fingerprint");
    LLVMSetInitializer(cg->fingerprint, ci64(cg, 0));
    LLVMSetLinkage(cg->fingerprint, LLVMInternalLinkage);
    cg->bnbuf = calloc(m->nbns, sizeof *cg->bnbuf);
    cg->bestbn = calloc(m->nbns, sizeof(LLVMValueRef));
    cg->bntable = calloc(m->nbns, sizeof(LLVMValueRef));
    for (int i = 0; i < m->nbns; i++) {
        static const char *const bn[] = {"running_mean", "running_var", "mean", "invstd", "sum1", "sum2",
                                         "hard_mean", "hard_var"};
        for (int k = 0; k < 8; k++)
            cg->bnbuf[i][k] = global_buf(cg, arena_printf(ar, "%s.%s", m->bns[i].name, bn[k]),
                                         m->bns[i].features, cg->tf32);
        if (cg->tc->keep_best)
            cg->bestbn[i] = global_buf(cg, arena_printf(ar, "%s.best", m->bns[i].name), 2 * m->bns[i].features, cg->tf32);
        LLVMValueRef init[8];
        for (int k = 0; k < 8; k++) init[k] = LLVMConstBitCast(cg->bnbuf[i][k], cg->tp);
        LLVMValueRef t = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->tp, 8), arena_printf(ar, "%s.buffers", m->bns[i].name));
        LLVMSetInitializer(t, LLVMConstArray(cg->tp, init, 8));
        LLVMSetGlobalConstant(t, 1);
        LLVMSetLinkage(t, LLVMInternalLinkage);
        cg->bntable[i] = t;
    }
    /* IR values and scratch: one arena shared by train_step and eval_batch (they never
     * run at the same time), laid out by memplan.c; the values read after a call
     * (loss, correct, logits) get buffers of their own. */
    cg->dropout_step = global_buf(cg, "dropout.step", 1, cg->ti64);
    cg->mpi_size = global_buf(cg, "mpi.size", 1, cg->ti64); /* 1 until nnq_main asks the runtime */
    LLVMValueRef one = ci64(cg, 1);
    LLVMSetInitializer(cg->mpi_size, LLVMConstArray(cg->ti64, &one, 1));
    cg->mpi_base = global_buf(cg, "mpi.base", 1, cg->ti64);
    assert(m->planned && m->plan_batch == cg->batch); /* the memplan pass */
    const MemPlan *plans = m->plan;
    int64_t arena_size = plans[0].size > plans[1].size ? plans[0].size : plans[1].size;
    LLVMValueRef arena = global_buf(cg, "arena", arena_size, cg->tf32);
    LLVMTypeRef arena_ty = LLVMArrayType(cg->tf32, (unsigned)(arena_size < 1 ? 1 : arena_size));
#define AT(off) LLVMConstInBoundsGEP2(arena_ty, arena, (LLVMValueRef[]){ci64(cg, 0), ci64(cg, (off))}, 2)
    for (int which = 0; which < 2; which++) {
        const IrFunc *f = which ? &m->eval : &m->train;
        const MemPlan *plan = &plans[which];
        LLVMValueRef *v = calloc(f->n, sizeof(LLVMValueRef));
        /* The adjoint of a parameter is computed straight into its grad buffer. */
        for (int i = 0; i < f->n; i++)
            if (f->insts[i].op == IR_PARAM_GRAD) v[f->insts[i].args[0]] = cg->pbuf[f->insts[i].attr[0]][IRB_GRAD];
        for (int i = 0; i < f->n; i++) {
            const IrInst *in = &f->insts[i];
            if (v[i] || in->op == IR_PARAM || in->op == IR_RESHAPE || in->op == IR_PARAM_GRAD) continue;
            if (in->op == IR_INPUT) v[i] = cg->x;
            else if (in->op == IR_LABELS) v[i] = cg->y;
            else if (plan->value[i] >= 0) v[i] = AT(plan->value[i]);
            else v[i] = global_buf(cg, arena_printf(ar, "%s.v%d", f->name, i), memplan_value_elems(in, cg->batch), cg->tf32);
        }
        /* Side buffers: a maxpool's argmax positions, a dropout's mask. */
        LLVMValueRef *x = calloc(f->n, sizeof(LLVMValueRef));
        for (int i = 0; i < f->n; i++)
            if (plan->side[i] >= 0) x[i] = AT(plan->side[i]);
        if (which) cg->veval = v, cg->xeval = x;
        else cg->vtrain = v, cg->xtrain = x;
    }
#undef AT
}

/* ---------- tensor instructions ---------- */

typedef struct FnCtx {
    const IrFunc *f;
    LLVMValueRef *val;   /* per value: pointer to its data */
    LLVMValueRef n;      /* i64 batch rows */
    LLVMValueRef ntot;   /* i64 rows of the global batch: n times the processes (train), n (eval) */
    LLVMValueRef hard;   /* eval: i1, use hard weights (and the hard batch-norm statistics) */
    LLVMValueRef calib;  /* eval: i1, batch-norm uses batch statistics and adds them to the hard ones */
    LLVMValueRef *extra; /* per instruction: pooling argmax, dropout mask, or NULL */
} FnCtx;

static LLVMValueRef dim(Cg *cg, FnCtx *fc, int64_t d) { return d == IR_BATCH ? fc->n : ci64(cg, d); }

static LLVMValueRef elems(Cg *cg, FnCtx *fc, const IrShape *s) {
    LLVMValueRef n = ci64(cg, ir_shape_elems(s));
    if (s->rank > 0 && s->d[0] == IR_BATCH) n = LLVMBuildMul(cg->b, n, fc->n, "");
    return n;
}

/* Loops over the channels [c0, c1) of a value of shape [N, C, S...] with n rows:
 * k = (n C + c) S + s. Rows are outermost, so a channel's values are visited in the same
 * order whatever the range. With S = 1 (dense layers) there is no inner loop. */
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
    l.n = loop_begin(cg, ci64(cg, 0), n, "n");
    LLVMValueRef nc = LLVMBuildMul(cg->b, l.n.iv, cs.C, "");
    l.c = loop_begin(cg, c0, c1, "c");
    for (int i = 0; i < nchan; i++) l.cv[i] = ldf(cg, chan[i], l.c.iv);
    l.k = LLVMBuildAdd(cg->b, nc, l.c.iv, "");
    l.has_s = cs.has_s;
    if (l.has_s) {
        LLVMValueRef base = LLVMBuildMul(cg->b, l.k, cs.S, "");
        l.s = loop_begin(cg, ci64(cg, 0), cs.S, "s");
        l.k = LLVMBuildAdd(cg->b, base, l.s.iv, "");
    }
    return l;
}


/* A per-channel op (bias, batch norm) as a parallel loop over ranges of channels:
 * channels are independent, sums included, so each is computed whole by one thread. */
static ParLoop par_chan_begin(Cg *cg, const char *name, const IrShape *shape, LLVMValueRef *vals, int nvals) {
    int64_t per = cg->batch * chan_inner(shape);
    return par_range_begin(cg, name, ci64(cg, shape->d[1]), per >= 65536 ? 1 : 65536 / per, vals, nvals);
}

static void chan_end(Cg *cg, ChanLoop *l) {
    if (l->has_s) loop_end(cg, &l->s);
    loop_end(cg, &l->c);
    loop_end(cg, &l->n);
}

static void emit_inst(Cg *cg, FnCtx *fc, int i, LLVMValueRef out);

/* Enters a --profile phase (phases.def). */
static void phase(Cg *cg, int p) { rt_call(cg, "nnq_rt_phase", (LLVMValueRef[]){ci32(cg, p)}, 1); }

static void emit_func_body(Cg *cg, FnCtx *fc) {
    const IrFunc *f = fc->f;
    int cur = -1; /* the training step marks its phases; evaluation is one phase of its own */
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        if (!fc->hard && !ir_op_source(in->op) && ir_op_phase(in->op) != cur)
            phase(cg, cur = ir_op_phase(in->op));
        if (in->op == IR_PARAM) {
            LLVMValueRef soft = as_ptr(cg, cg->pbuf[in->attr[0]][IRB_WEIGHT], cg->tf32);
            LLVMValueRef hard = as_ptr(cg, cg->pbuf[in->attr[0]][IRB_HARD], cg->tf32);
            fc->val[i] = fc->hard ? LLVMBuildSelect(cg->b, fc->hard, hard, soft, "") : soft;
            continue;
        }
        if (in->op == IR_RESHAPE) {
            fc->val[i] = fc->val[in->args[0]];
            continue;
        }
        if (in->op == IR_INPUT || in->op == IR_LABELS || in->op == IR_PARAM_GRAD) continue;
        emit_inst(cg, fc, i, fc->val[i]);
    }
}

/* out[c] (and out2[c]) for the channels [c0, c1) of x [n, C, S...]: per-channel sums of
 * a mode of nnq_rt_chan_reduce (runtime/chan.c: a fixed order of adds, vectorized); y,
 * add, shift and out2 may be NULL. */
enum { CHAN_SUM, CHAN_SQDEV, CHAN_GRAD, CHAN_RELU_GRAD };
static void chan_sums(Cg *cg, int mode, ChanShape cs, LLVMValueRef x, LLVMValueRef y, LLVMValueRef add,
                      LLVMValueRef shift, LLVMValueRef n, LLVMValueRef c0, LLVMValueRef c1, LLVMValueRef out,
                      LLVMValueRef out2) {
    LLVMValueRef null = LLVMConstNull(cg->tp);
    LLVMValueRef args[12] = {ci32(cg, mode), x, y ? y : null, add ? add : null, shift ? shift : null, n,
                             LLVMBuildTrunc(cg->b, cs.C, cg->ti32, ""), cs.S,
                             LLVMBuildTrunc(cg->b, c0, cg->ti32, ""), LLVMBuildTrunc(cg->b, c1, cg->ti32, ""), out,
                             out2 ? out2 : null};
    rt_call(cg, "nnq_rt_chan_reduce", args, 12);
}

/* Batch-norm ops run in one pass (stage 0), or, when the statistics are sums over the
 * global batch of a data-parallel run, in stages between which the sums are
 * all-reduced: 1 the sums of x (of dy and dy * y for the gradient), 2 the squared
 * deviations from the global mean, 3 the rest. in_stage: the part of stage k runs. */
static LLVMValueRef in_stage(Cg *cg, LLVMValueRef stage, int k) {
    return LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, stage, ci64(cg, 0), ""),
                       LLVMBuildICmp(cg->b, LLVMIntEQ, stage, ci64(cg, k), ""), "");
}

/* Batch statistics of x (n rows here, nf values per channel in the whole batch) for the
 * channels [c0, c1) (dim 1, over n and the trailing dims): bn[4] = sum x, bn[2] = mean,
 * bn[5] = sum (x - mean)^2, bn[3] = 1/sqrt(var + 1e-5) with the biased variance. train:
 * the running statistics move towards the batch's (momentum 0.1, unbiased variance);
 * otherwise (calibration) the batch's mean and unbiased variance are added to the hard
 * statistics bn[6], bn[7]. Stages 1, 2 and 3 as above. */
static void bn_batch_stats(Cg *cg, ChanShape as, LLVMValueRef A, LLVMValueRef bias, LLVMValueRef *bn, LLVMValueRef n,
                           LLVMValueRef nf, LLVMValueRef c0, LLVMValueRef c1, bool train, LLVMValueRef stage) {
    LLVMBuilderRef b = cg->b;
    LLVMBasicBlockRef join;
    if_begin(cg, in_stage(cg, stage, 1), &join);
    chan_sums(cg, CHAN_SUM, as, A, NULL, bias, NULL, n, c0, c1, bn[4], NULL);
    if_end(cg, join);
    if_begin(cg, in_stage(cg, stage, 2), &join);
    Loop j2 = loop_begin(cg, c0, c1, "chan");
    stf(cg, bn[2], j2.iv, LLVMBuildFDiv(b, ldf(cg, bn[4], j2.iv), nf, ""));
    loop_end(cg, &j2);
    chan_sums(cg, CHAN_SQDEV, as, A, NULL, bias, bn[2], n, c0, c1, bn[5], NULL);
    if_end(cg, join);
    if_begin(cg, in_stage(cg, stage, 3), &join);
    LLVMValueRef unb = LLVMBuildFDiv(b, nf, fmaxv(cg, LLVMBuildFSub(b, nf, cf32(cg, 1), ""), cf32(cg, 1)), "");
    Loop j4 = loop_begin(cg, c0, c1, "chan");
    LLVMValueRef var = LLVMBuildFDiv(b, ldf(cg, bn[5], j4.iv), nf, "");
    LLVMValueRef ve = LLVMBuildFAdd(b, var, cf32(cg, 1e-5), "");
    stf(cg, bn[3], j4.iv, LLVMBuildFDiv(b, cf32(cg, 1), intrinsic(cg, "llvm.sqrt", cg->tf32, &ve, 1), ""));
    LLVMValueRef uvar = LLVMBuildFMul(b, var, unb, "");
    if (train) {
        stf(cg, bn[0], j4.iv, LLVMBuildFAdd(b, LLVMBuildFMul(b, cf32(cg, 0.9), ldf(cg, bn[0], j4.iv), ""),
                                          LLVMBuildFMul(b, cf32(cg, 0.1), ldf(cg, bn[2], j4.iv), ""), ""));
        stf(cg, bn[1], j4.iv, LLVMBuildFAdd(b, LLVMBuildFMul(b, cf32(cg, 0.9), ldf(cg, bn[1], j4.iv), ""),
                                          LLVMBuildFMul(b, cf32(cg, 0.1), uvar, ""), ""));
    } else {
        stf(cg, bn[6], j4.iv, LLVMBuildFAdd(b, ldf(cg, bn[6], j4.iv), ldf(cg, bn[2], j4.iv), ""));
        stf(cg, bn[7], j4.iv, LLVMBuildFAdd(b, ldf(cg, bn[7], j4.iv), uvar, ""));
    }
    loop_end(cg, &j4);
    if_end(cg, join);
}

/* c, h, w, o, kh, kw, stride, pad of a conv instruction, as i32 arguments. */
static void conv_geometry(Cg *cg, const IrShape *xs, const IrShape *ws, const IrInst *conv, LLVMValueRef *g) {
    int64_t v[8] = {xs->d[1], xs->d[2], xs->d[3], ws->d[0], ws->d[2], ws->d[3], conv->attr[0], conv->attr[1]};
    for (int k = 0; k < 8; k++) g[k] = ci32(cg, (int32_t)v[k]);
}

/* dropout and its gradient: a counter-based mask, one parallel loop. */
static void emit_dropout_op(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = in->args[0] >= 0 ? fc->val[in->args[0]] : NULL;
    /* The mask is a counter-based hash of (step, instruction, element): no state
     * beyond the step counter, the same draw for the same seed whatever the thread
     * count, and a loop that vectorizes. Keep when the top 32 bits fall below
     * keep * 2^32. */
    const IrInst *drop = in->op == IR_DROPOUT ? in : &fc->f->insts[in->args[1]];
    double keep = 1.0 - (double)drop->attr[0] * 1e-6;
    LLVMValueRef key = ci64(cg, 0);
    if (in->op == IR_DROPOUT) {
        LLVMValueRef step = LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->dropout_step, cg->ti64), "");
        key = LLVMBuildXor(b, LLVMBuildMul(b, step, ci64(cg, (int64_t)0x9E3779B97F4A7C15ull), ""),
                           ci64(cg, (int64_t)((uint64_t)(i + 1) * 0xD1B54A32D192ED03ull)), "key");
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
    return;
}

/* The batch-norm ops and their fused forms (see the comment inside). */
static void emit_bn_op(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = in->args[0] >= 0 ? fc->val[in->args[0]] : NULL;
    LLVMValueRef B = in->args[1] >= 0 ? fc->val[in->args[1]] : NULL;
    const IrShape *as = in->args[0] >= 0 ? &fc->f->insts[in->args[0]].shape : NULL;
    /* Per channel c (dim 1) over n and the trailing dims: count = N * S values; one
     * parallel loop over ranges of channels does the statistics and the elementwise
     * pass. The fused forms (fuse_layers.c) add the bias B[c] to x where it is read,
     * or mask dy by y > 0, computing the same values as the separate ops did. The
     * loop body is shared by every op of the same kind and layout: shapes, buffers
     * and the batch-norm state (a table of its 8 buffers) come in its context.
     * Training statistics are those of the global batch (ntot rows): in a
     * data-parallel run the body runs in stages with the sums all-reduced between
     * them (synchronized batch norm), otherwise in one pass. */
    bool grad = in->op == IR_BN_GRAD || in->op == IR_RELU_BN_GRAD;
    bool train = in->op == IR_BN_TRAIN || in->op == IR_BIAS_BN_TRAIN;
    bool biased = in->op == IR_BIAS_BN_TRAIN || in->op == IR_BIAS_BN_EVAL, relu = in->op == IR_RELU_BN_GRAD;
    LLVMValueRef hard = fc->hard ? fc->hard : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef calib = fc->calib ? fc->calib : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef flags = LLVMBuildOr(b, LLVMBuildZExt(b, hard, cg->ti64, ""),
                                     LLVMBuildShl(b, LLVMBuildZExt(b, calib, cg->ti64, ""), ci64(cg, 1), ""), "");
    int64_t S = chan_inner(as);
    LLVMValueRef ntot = train || grad ? fc->ntot : fc->n;
    LLVMValueRef outer[9] = {A, B ? B : A, out, fc->n, flags, cg->bntable[in->attr[0]], ci64(cg, as->d[1]), ci64(cg, S), ntot};
    int kind = in->op == IR_BN_TRAIN ? 0 : in->op == IR_BN_EVAL ? 1 : in->op == IR_BN_GRAD ? 2
             : in->op == IR_BIAS_BN_TRAIN ? 3 : in->op == IR_BIAS_BN_EVAL ? 4 : 5;
    LLVMValueRef *body = &cg->bn_body[kind][S > 1];
    if (!*body) {
        LLVMValueRef v[9];
        memcpy(v, outer, sizeof v);
        ParLoop p = par_range_begin(cg, grad ? "par.bn_grad" : "par.bn", outer[6], 1, v, 9);
        A = v[0], B = v[1], out = v[2];
        LLVMValueRef n = v[3], c0 = p.begin, c1 = p.end, bias = biased ? B : NULL;
        hard = LLVMBuildTrunc(b, v[4], cg->ti1, "hard");
        calib = LLVMBuildTrunc(b, LLVMBuildAnd(b, LLVMBuildLShr(b, v[4], ci64(cg, 1), ""), ci64(cg, 1), ""), cg->ti1, "calib");
        LLVMValueRef stage = LLVMBuildLShr(b, v[4], ci64(cg, 2), "stage");
        ChanShape cs = {v[6], v[7], S > 1};
        LLVMValueRef bn[8], table = as_ptr(cg, v[5], cg->tp);
        for (int k = 0; k < 8; k++)
            bn[k] = LLVMBuildLoad2(b, cg->tp, LLVMBuildInBoundsGEP2(b, cg->tp, table, (LLVMValueRef[]){ci64(cg, k)}, 1, ""), "");
        LLVMValueRef nf = LLVMBuildSIToFP(b, LLVMBuildMul(b, v[8], cs.S, ""), cg->tf32, "");
        if (train) {
            bn_batch_stats(cg, cs, A, bias, bn, n, nf, c0, c1, true, stage);
        } else if (grad) {
            /* sum1 = sum g, sum2 = sum g * y, g = dy (masked by y > 0 for relu_bn_grad) */
            LLVMBasicBlockRef join;
            if_begin(cg, in_stage(cg, stage, 1), &join);
            chan_sums(cg, relu ? CHAN_RELU_GRAD : CHAN_GRAD, cs, A, B, NULL, NULL, n, c0, c1, bn[4], bn[5]);
            if_end(cg, join);
        } else {
            /* eval: mean and invstd from the running statistics, or from the hard
             * network's recalibrated ones; when calibrating, from this batch, which is
             * also added to the hard statistics (calibrate() averages them). */
            LLVMBasicBlockRef join;
            if_begin(cg, calib, &join);
            bn_batch_stats(cg, cs, A, bias, bn, n, nf, c0, c1, false, ci64(cg, 0));
            if_end(cg, join);
            if_begin(cg, LLVMBuildNot(b, calib, ""), &join);
            {
                LLVMValueRef rmean = LLVMBuildSelect(b, hard, as_ptr(cg, bn[6], cg->tf32), as_ptr(cg, bn[0], cg->tf32), "");
                LLVMValueRef rvar = LLVMBuildSelect(b, hard, as_ptr(cg, bn[7], cg->tf32), as_ptr(cg, bn[1], cg->tf32), "");
                Loop j4 = loop_begin(cg, c0, c1, "chan");
                stf(cg, bn[2], j4.iv, ldf(cg, rmean, j4.iv));
                LLVMValueRef ve = LLVMBuildFAdd(b, ldf(cg, rvar, j4.iv), cf32(cg, 1e-5), "");
                LLVMValueRef sq = intrinsic(cg, "llvm.sqrt", cg->tf32, &ve, 1);
                stf(cg, bn[3], j4.iv, LLVMBuildFDiv(b, cf32(cg, 1), sq, ""));
                loop_end(cg, &j4);
            }
            if_end(cg, join);
        }
        /* Elementwise pass. */
        LLVMBasicBlockRef last;
        if_begin(cg, in_stage(cg, stage, 3), &last);
        ChanLoop l = chan_begin_with(cg, n, c0, c1, cs, (LLVMValueRef[]){bn[3], bn[2], bn[4], bn[5], bias}, biased ? 5 : 4);
        LLVMValueRef sc = l.cv[0], res, x = ldf(cg, A, l.k);
        if (grad) {
            LLVMValueRef m1 = LLVMBuildFDiv(b, l.cv[2], nf, "");
            LLVMValueRef m2 = LLVMBuildFDiv(b, l.cv[3], nf, "");
            LLVMValueRef y = ldf(cg, B, l.k);
            if (relu) x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, y, cf32(cg, 0), ""), x, cf32(cg, 0), "");
            LLVMValueRef t = LLVMBuildFSub(b, LLVMBuildFSub(b, x, m1, ""), LLVMBuildFMul(b, y, m2, ""), "");
            res = LLVMBuildFMul(b, sc, t, "");
        } else {
            if (biased) x = LLVMBuildFAdd(b, x, l.cv[4], "");
            res = LLVMBuildFMul(b, LLVMBuildFSub(b, x, l.cv[1], ""), sc, "");
        }
        stf(cg, out, l.k, res);
        chan_end(cg, &l);
        if_end(cg, last);
        par_finish(cg, &p);
        *body = p.body_fn;
    }
    int64_t per = cg->batch * S, min = per >= 65536 ? 1 : 65536 / per;
    if (!train && !grad) {
        par_call(cg, *body, outer[6], min, outer, 9);
        return;
    }
    /* Training statistics: one pass on one process; the runtime runs the stages with the
     * all-reduces between them in a data-parallel run (nnq_rt_bn_run, runtime/mpi.c). */
    LLVMValueRef ctx = par_ctx(cg, outer, 9);
    rt_call(cg, "nnq_rt_bn_run", (LLVMValueRef[]){*body, outer[6], ci64(cg, min), ctx, as_ptr(cg, cg->bnbuf[in->attr[0]][4], cg->tf32),
                                                  as_ptr(cg, cg->bnbuf[in->attr[0]][5], cg->tf32), ci32(cg, grad)}, 7);
}

/* The softmax cross-entropy loss, the correct count and the loss gradient, row by row. */
static void emit_loss_op(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = in->args[0] >= 0 ? fc->val[in->args[0]] : NULL;
    LLVMValueRef B = in->args[1] >= 0 ? fc->val[in->args[1]] : NULL;
    const IrShape *as = in->args[0] >= 0 ? &fc->f->insts[in->args[0]].shape : NULL;
    int64_t C = as->d[1];
    LLVMValueRef acc = local(cg, cg->tf32, cf32(cg, 0), "acc");
    Loop r = loop_begin(cg, ci64(cg, 0), fc->n, "row");
    LLVMValueRef base = LLVMBuildMul(b, r.iv, ci64(cg, C), "");
    LLVMValueRef label = LLVMBuildSExt(b, ldi32(cg, B, r.iv), cg->ti64, "");
    /* max and argmax (first maximum) */
    LLVMValueRef mx = local(cg, cg->tf32, ldf(cg, A, base), "max");
    LLVMValueRef am = local(cg, cg->ti64, ci64(cg, 0), "argmax");
    Loop j = loop_begin(cg, ci64(cg, 1), ci64(cg, C), "col");
    LLVMValueRef v = ldf(cg, A, LLVMBuildAdd(b, base, j.iv, ""));
    LLVMValueRef cur = get(cg, cg->tf32, mx);
    LLVMValueRef gt = LLVMBuildFCmp(b, LLVMRealOGT, v, cur, "");
    LLVMBuildStore(b, LLVMBuildSelect(b, gt, v, cur, ""), mx);
    LLVMBuildStore(b, LLVMBuildSelect(b, gt, j.iv, get(cg, cg->ti64, am), ""), am);
    loop_end(cg, &j);
    LLVMValueRef m = get(cg, cg->tf32, mx);
    if (in->op == IR_CORRECT) {
        LLVMValueRef hit = LLVMBuildICmp(b, LLVMIntEQ, get(cg, cg->ti64, am), label, "");
        LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, acc), LLVMBuildUIToFP(b, hit, cg->tf32, ""), ""), acc);
    } else {
        LLVMValueRef sum = local(cg, cg->tf32, cf32(cg, 0), "sum");
        Loop j2 = loop_begin(cg, ci64(cg, 0), ci64(cg, C), "col");
        LLVMValueRef d = LLVMBuildFSub(b, ldf(cg, A, LLVMBuildAdd(b, base, j2.iv, "")), m, "");
        LLVMValueRef e = exp_f32(cg, d);
        LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, sum), e, ""), sum);
        if (in->op == IR_XENT_GRAD) stf(cg, out, LLVMBuildAdd(b, base, j2.iv, ""), e);
        loop_end(cg, &j2);
        LLVMValueRef s = get(cg, cg->tf32, sum);
        if (in->op == IR_XENT) {
            LLVMValueRef ls = intrinsic(cg, "llvm.log", cg->tf32, &s, 1);
            LLVMValueRef zl = ldf(cg, A, LLVMBuildAdd(b, base, label, ""));
            LLVMValueRef loss = LLVMBuildFSub(b, LLVMBuildFAdd(b, ls, m, ""), zl, "");
            LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf32, acc), loss, ""), acc);
        } else {
            LLVMValueRef scale = LLVMBuildFDiv(b, cf32(cg, 1), LLVMBuildFMul(b, s, LLVMBuildSIToFP(b, fc->n, cg->tf32, ""), ""), "");
            LLVMValueRef invn = LLVMBuildFDiv(b, cf32(cg, 1), LLVMBuildSIToFP(b, fc->n, cg->tf32, ""), "");
            Loop j3 = loop_begin(cg, ci64(cg, 0), ci64(cg, C), "col");
            LLVMValueRef k = LLVMBuildAdd(b, base, j3.iv, "");
            LLVMValueRef g = LLVMBuildFMul(b, ldf(cg, out, k), scale, "");
            LLVMValueRef is = LLVMBuildICmp(b, LLVMIntEQ, j3.iv, label, "");
            g = LLVMBuildSelect(b, is, LLVMBuildFSub(b, g, invn, ""), g, "");
            stf(cg, out, k, g);
            loop_end(cg, &j3);
        }
    }
    loop_end(cg, &r);
    if (in->op == IR_XENT)
        stf(cg, out, ci64(cg, 0), LLVMBuildFDiv(b, get(cg, cg->tf32, acc), LLVMBuildSIToFP(b, fc->n, cg->tf32, ""), ""));
    else if (in->op == IR_CORRECT)
        stf(cg, out, ci64(cg, 0), get(cg, cg->tf32, acc));
    return;
}

static void emit_inst(Cg *cg, FnCtx *fc, int i, LLVMValueRef out) {
    const IrInst *in = &fc->f->insts[i];
    LLVMBuilderRef b = cg->b;
    LLVMValueRef A = in->args[0] >= 0 ? fc->val[in->args[0]] : NULL;
    LLVMValueRef B = in->args[1] >= 0 ? fc->val[in->args[1]] : NULL;
    const IrShape *as = in->args[0] >= 0 ? &fc->f->insts[in->args[0]].shape : NULL;
    switch (in->op) {
    case IR_MATMUL: {
        const IrShape *a = as, *bs = &fc->f->insts[in->args[1]].shape;
        int ta = (int)in->attr[0], tb = (int)in->attr[1];
        LLVMValueRef M = dim(cg, fc, ta ? a->d[1] : a->d[0]);
        LLVMValueRef K = dim(cg, fc, ta ? a->d[0] : a->d[1]);
        LLVMValueRef N = dim(cg, fc, tb ? bs->d[0] : bs->d[1]);
        LLVMValueRef lda = dim(cg, fc, a->d[1]), ldb = dim(cg, fc, bs->d[1]);
#define T32(v) LLVMBuildTrunc(b, (v), cg->ti32, "")
        LLVMValueRef args[13] = {ci32(cg, ta), ci32(cg, tb), T32(M), T32(N), T32(K), cf32(cg, 1.0),
                                 A, T32(lda), B, T32(ldb), cf32(cg, 0.0), out, T32(N)};
#undef T32
        rt_call(cg, "nnq_rt_sgemm", args, 13);
        return;
    }
    case IR_ADD:
    case IR_RELU:
    case IR_RELU_GRAD: {
        /* one loop body per op, shared by all its instructions (buffers come in the context) */
        LLVMValueRef outer[3] = {A, B ? B : A, out}, n = elems(cg, fc, &in->shape);
        LLVMValueRef *body = &cg->ew_body[in->op == IR_ADD ? 0 : in->op == IR_RELU ? 1 : 2];
        if (!*body) {
            LLVMValueRef v[3] = {A, B ? B : A, out};
            ParLoop p = par_begin(cg, "par.ew", n, 65536, v, 3);
            LLVMValueRef a = ldf(cg, v[0], p.l.iv), r;
            if (in->op == IR_ADD) r = LLVMBuildFAdd(b, a, ldf(cg, v[1], p.l.iv), "");
            else if (in->op == IR_RELU) r = fmaxv(cg, a, cf32(cg, 0));
            else {
                LLVMValueRef pos = LLVMBuildFCmp(b, LLVMRealOGT, ldf(cg, v[1], p.l.iv), cf32(cg, 0), "");
                r = LLVMBuildSelect(b, pos, a, cf32(cg, 0), "");
            }
            stf(cg, v[2], p.l.iv, r);
            par_finish(cg, &p);
            *body = p.body_fn;
        }
        par_call(cg, *body, n, 65536, outer, 3);
        return;
    }
    case IR_DROPOUT:
    case IR_DROPOUT_GRAD:
        emit_dropout_op(cg, fc, i, out);
        return;
    case IR_BIAS_ADD: {
        LLVMValueRef v[4] = {A, B, out, fc->n};
        ParLoop p = par_chan_begin(cg, "par.bias", as, v, 4);
        ChanLoop l = chan_begin_with(cg, v[3], p.begin, p.end, chan_shape(cg, as), &v[1], 1);
        stf(cg, v[2], l.k, LLVMBuildFAdd(b, ldf(cg, v[0], l.k), l.cv[0], ""));
        chan_end(cg, &l);
        par_end(cg, &p);
        return;
    }
    case IR_BIAS_GRAD: {
        LLVMValueRef v[3] = {A, out, fc->n};
        ParLoop p = par_chan_begin(cg, "par.bias_grad", as, v, 3);
        chan_sums(cg, CHAN_SUM, chan_shape(cg, as), v[0], NULL, NULL, NULL, v[2], p.begin, p.end, v[1], NULL);
        par_end(cg, &p);
        return;
    }
    case IR_BN_TRAIN:
    case IR_BN_EVAL:
    case IR_BN_GRAD:
    case IR_BIAS_BN_TRAIN:
    case IR_BIAS_BN_EVAL:
    case IR_RELU_BN_GRAD:
        emit_bn_op(cg, fc, i, out);
        return;
    case IR_CONV2D:
    case IR_CONV2D_DX:
    case IR_CONV2D_DW:
    case IR_DWCONV2D:
    case IR_DWCONV2D_DX:
    case IR_DWCONV2D_DW: {
        /* x [N, C, H, W], w [O, C, KH, KW] (depthwise: [C, 1, KH, KW]), y [N, O, OH, OW]:
         * one runtime call each, which runs the op by chunks of samples (runtime/conv.c)
         * or planes (runtime/dwconv.c) on the thread pool. */
        static const char *const fn[] = {"nnq_rt_conv2d", "nnq_rt_conv2d_dx", "nnq_rt_conv2d_dw",
                                         "nnq_rt_dwconv2d", "nnq_rt_dwconv2d_dx", "nnq_rt_dwconv2d_dw"};
        bool depthwise = in->op == IR_DWCONV2D || in->op == IR_DWCONV2D_DX || in->op == IR_DWCONV2D_DW;
        int kind = in->op == IR_CONV2D || in->op == IR_DWCONV2D ? 0 : in->op == IR_CONV2D_DX || in->op == IR_DWCONV2D_DX ? 1 : 2;
        const IrInst *conv = kind == 2 ? &fc->f->insts[in->args[1]] : in;
        const IrShape *xs = kind == 0 ? as : kind == 1 ? &in->shape : &fc->f->insts[conv->args[0]].shape;
        const IrShape *ws = &fc->f->insts[conv->args[1]].shape;
        LLVMValueRef first = kind == 2 ? fc->val[conv->args[0]] : B; /* w, or dw's x */
        LLVMValueRef args[12] = {A, first, out, LLVMBuildTrunc(b, fc->n, cg->ti32, "")};
        conv_geometry(cg, xs, ws, conv, args + 4);
        rt_call(cg, fn[kind + (depthwise ? 3 : 0)], args, 12);
        return;
    }
    case IR_AVGPOOL:
    case IR_AVGPOOL_GRAD: {
        const IrShape *xs = in->op == IR_AVGPOOL ? as : &in->shape;
        LLVMValueRef planes = LLVMBuildTrunc(b, LLVMBuildMul(b, fc->n, ci64(cg, xs->d[1]), ""), cg->ti32, "");
        rt_call(cg, in->op == IR_AVGPOOL ? "nnq_rt_avgpool" : "nnq_rt_avgpool_grad",
                (LLVMValueRef[]){A, planes, ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]),
                                 ci32(cg, (int32_t)in->attr[0]), ci32(cg, (int32_t)in->attr[1]), out}, 7);
        return;
    }
    case IR_MAXPOOL:
    case IR_MAXPOOL_GRAD: {
        const IrInst *pool = in->op == IR_MAXPOOL ? in : &fc->f->insts[in->args[1]];
        const IrShape *xs = in->op == IR_MAXPOOL ? as : &in->shape;
        const IrShape *ys = &pool->shape;
        LLVMValueRef idx = fc->extra[pool - fc->f->insts];
        LLVMValueRef planes = LLVMBuildTrunc(b, LLVMBuildMul(b, fc->n, ci64(cg, xs->d[1]), ""), cg->ti32, "");
        if (in->op == IR_MAXPOOL)
            rt_call(cg, "nnq_rt_maxpool", (LLVMValueRef[]){A, planes, ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]),
                                                           ci32(cg, (int32_t)pool->attr[0]), ci32(cg, (int32_t)pool->attr[1]), out, idx}, 8);
        else
            rt_call(cg, "nnq_rt_maxpool_grad", (LLVMValueRef[]){A, idx, planes, ci32(cg, (int32_t)ys->d[2]), ci32(cg, (int32_t)ys->d[3]),
                                                                ci32(cg, (int32_t)xs->d[2]), ci32(cg, (int32_t)xs->d[3]), out}, 8);
        return;
    }
    case IR_XENT:
    case IR_CORRECT:
    case IR_XENT_GRAD:
        emit_loss_op(cg, fc, i, out);
        return;
    default:
        assert(!"codegen: unhandled IR op");
    }
}

static void emit_tensor_functions(Cg *cg) {
    const IrModule *m = cg->m;
    /* void train_step(i64 n) */
    cg->train_step_ty = LLVMFunctionType(cg->tv, &cg->ti64, 1, 0);
    cg->train_step = new_function(cg, "train_step", cg->train_step_ty, false);
    FnCtx fc = {.f = &m->train, .n = LLVMGetParam(cg->train_step, 0), .extra = cg->xtrain};
    fc.ntot = LLVMBuildMul(cg->b, fc.n, LLVMBuildLoad2(cg->b, cg->ti64, as_ptr(cg, cg->mpi_size, cg->ti64), ""), "ntot");
    fc.val = calloc(m->train.n, sizeof(LLVMValueRef));
    for (int i = 0; i < m->train.n; i++) fc.val[i] = cg->vtrain[i] ? as_ptr(cg, cg->vtrain[i], cg->tf32) : NULL;
    emit_func_body(cg, &fc);
    LLVMValueRef step = LLVMBuildLoad2(cg->b, cg->ti64, as_ptr(cg, cg->dropout_step, cg->ti64), "");
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, step, ci64(cg, 1), ""), as_ptr(cg, cg->dropout_step, cg->ti64));
    LLVMBuildRetVoid(cg->b);
    free(fc.val);
    /* float eval_batch(i64 n, i32 hard, i32 calibrate) */
    LLVMTypeRef ps[3] = {cg->ti64, cg->ti32, cg->ti32};
    cg->eval_batch_ty = LLVMFunctionType(cg->tf32, ps, 3, 0);
    cg->eval_batch = new_function(cg, "eval_batch", cg->eval_batch_ty, false);
    FnCtx ec = {.f = &m->eval, .n = LLVMGetParam(cg->eval_batch, 0), .extra = cg->xeval};
    ec.ntot = ec.n;
    ec.hard = LLVMBuildICmp(cg->b, LLVMIntNE, LLVMGetParam(cg->eval_batch, 1), ci32(cg, 0), "hard");
    ec.calib = LLVMBuildICmp(cg->b, LLVMIntNE, LLVMGetParam(cg->eval_batch, 2), ci32(cg, 0), "calib");
    ec.val = calloc(m->eval.n, sizeof(LLVMValueRef));
    for (int i = 0; i < m->eval.n; i++) ec.val[i] = cg->veval[i] ? as_ptr(cg, cg->veval[i], cg->tf32) : NULL;
    emit_func_body(cg, &ec);
    LLVMBuildRet(cg->b, ldf(cg, ec.val[m->eval.correct], ci64(cg, 0)));
    free(ec.val);
}

/* ---------- fused kernels ---------- */

static LLVMValueRef kbuf(Cg *cg, int param, const IrKernelIO *io) {
    switch (io->buf) {
    case IRB_AUX: return cg->pcomp[param * 3 + 0][io->comp];
    case IRB_M: return cg->pcomp[param * 3 + 1][io->comp];
    case IRB_V: return cg->pcomp[param * 3 + 2][io->comp];
    default: return cg->pbuf[param][io->buf];
    }
}

static LLVMValueRef bool_f(Cg *cg, LLVMValueRef c) { return LLVMBuildUIToFP(cg->b, c, cg->tf32, ""); }
static LLVMValueRef truth(Cg *cg, LLVMValueRef v) { return LLVMBuildFCmp(cg->b, LLVMRealUNE, v, cf32(cg, 0), ""); }

static LLVMValueRef emit_sx(Cg *cg, const IrKernel *k, LLVMValueRef *memo, LLVMValueRef *inputs, int id) {
    if (memo[id]) return memo[id];
    const SxNode *n = sx_node(cg->m->prog->pool, id);
    LLVMBuilderRef b = cg->b;
    LLVMValueRef a = NULL, c = NULL, r = NULL;
    if (n->op != SX_CONST && n->op != SX_INPUT) {
        assert(n->op != SX_VAR);
        a = emit_sx(cg, k, memo, inputs, n->a);
        if (n->b >= 0) c = emit_sx(cg, k, memo, inputs, n->b);
    }
    switch (n->op) {
    case SX_CONST: r = cf32(cg, n->value); break;
    case SX_INPUT:
        r = n->slot >= IR_SCALAR_SLOT(0) ? cg->kscalars[n->slot - IR_SCALAR_SLOT(0)] : inputs[n->slot];
        break;
    case SX_ADD: r = LLVMBuildFAdd(b, a, c, ""); break;
    case SX_SUB: r = LLVMBuildFSub(b, a, c, ""); break;
    case SX_MUL: r = LLVMBuildFMul(b, a, c, ""); break;
    case SX_DIV: r = LLVMBuildFDiv(b, a, c, ""); break;
    case SX_NEG: r = LLVMBuildFNeg(b, a, ""); break;
    case SX_EXP: r = exp_f32(cg, a); break;
    case SX_LOG: r = intrinsic(cg, "llvm.log", cg->tf32, &a, 1); break;
    case SX_SQRT: r = intrinsic(cg, "llvm.sqrt", cg->tf32, &a, 1); break;
    case SX_ABS: r = intrinsic(cg, "llvm.fabs", cg->tf32, &a, 1); break;
    case SX_TANH: r = tanh_f32(cg, a); break;
    case SX_ATANH: { /* atanh(x) = log((1 + x) / (1 - x)) / 2, vectorizable like exp */
        LLVMValueRef q = LLVMBuildFDiv(b, LLVMBuildFAdd(b, cf32(cg, 1), a, ""), LLVMBuildFSub(b, cf32(cg, 1), a, ""), "");
        r = LLVMBuildFMul(b, intrinsic(cg, "llvm.log", cg->tf32, &q, 1), cf32(cg, 0.5), "");
        break;
    }
    case SX_MAX: r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGE, a, c, ""), a, c, ""); break;
    case SX_MIN: r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLE, a, c, ""), a, c, ""); break;
    case SX_SELECT: {
        LLVMValueRef e = emit_sx(cg, k, memo, inputs, n->c);
        r = LLVMBuildSelect(b, truth(cg, a), c, e, "");
        break;
    }
    case SX_SIGN:
        r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, a, cf32(cg, 0), ""), cf32(cg, 1),
                            LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, cf32(cg, 0), ""), cf32(cg, -1), cf32(cg, 0), ""), "");
        break;
    case SX_LT: r = bool_f(cg, LLVMBuildFCmp(b, LLVMRealOLT, a, c, "")); break;
    case SX_LE: r = bool_f(cg, LLVMBuildFCmp(b, LLVMRealOLE, a, c, "")); break;
    case SX_EQ: r = bool_f(cg, LLVMBuildFCmp(b, LLVMRealOEQ, a, c, "")); break;
    case SX_NE: r = bool_f(cg, LLVMBuildFCmp(b, LLVMRealUNE, a, c, "")); break;
    case SX_AND: r = bool_f(cg, LLVMBuildAnd(b, truth(cg, a), truth(cg, c), "")); break;
    case SX_OR: r = bool_f(cg, LLVMBuildOr(b, truth(cg, a), truth(cg, c), "")); break;
    case SX_NOT: r = bool_f(cg, LLVMBuildNot(b, truth(cg, a), "")); break;
    case SX_NOGRAD: r = a; break;
    default: assert(!"codegen: unhandled scalar op");
    }
    memo[id] = r;
    return r;
}

/* Two parameters' kernels are the same code when they have the same IO layout and the
 * same output expressions (the pool is hash-consed: equal expressions are equal ids). */
static bool same_kernel(const IrKernel *a, const IrKernel *b) {
    if (strcmp(a->name, b->name) || a->nin != b->nin || a->nout != b->nout) return false;
    for (int i = 0; i < a->nin; i++)
        if (a->in[i].buf != b->in[i].buf || a->in[i].comp != b->in[i].comp) return false;
    for (int o = 0; o < a->nout; o++)
        if (a->out[o].buf != b->out[o].buf || a->out[o].comp != b->out[o].comp || a->out[o].node != b->out[o].node)
            return false;
    return true;
}

/* The distinct buffers a kernel touches, in order of first use (inputs, then outputs);
 * slot[i] for IO entry i (inputs first). Returns the count. */
static int kernel_buffers(const IrKernel *k, IrKernelIO *bufs, int *slot) {
    int n = 0;
    for (int e = 0; e < k->nin + k->nout; e++) {
        const IrKernelIO *io = e < k->nin ? &k->in[e] : &k->out[e - k->nin];
        int j = 0;
        while (j < n && !(bufs[j].buf == io->buf && bufs[j].comp == io->comp)) j++;
        if (j == n) bufs[n++] = *io;
        slot[e] = j;
    }
    return n;
}

/* One function per distinct kernel (same_kernel), shared by every parameter it fits:
 *   shape(table, count, scalars...) runs body(ctx, begin, end) on the pool, which loads
 *   the buffer pointers from the parameter's table and calls
 *   core(begin, end, noalias buffers..., scalars...), the loop itself: the buffers are
 *   distinct arrays, so it vectorizes without run-time alias checks.
 * Each parameter keeps a named entry kernel.NAME.PARAM(scalars...) that calls its shape
 * with its own table and count (tests and benchmarks call it). */
static void emit_kernels(Cg *cg) {
    const IrModule *m = cg->m;
    LLVMTypeRef ps[IRS_COUNT];
    for (int i = 0; i < IRS_COUNT; i++) ps[i] = cg->tf32;
    cg->kernel_ty = LLVMFunctionType(cg->tv, ps, IRS_COUNT, 0);
    LLVMTypeRef sps[IRS_COUNT + 2] = {cg->tp, cg->ti64};
    for (int i = 0; i < IRS_COUNT; i++) sps[i + 2] = cg->tf32;
    LLVMTypeRef shape_ty = LLVMFunctionType(cg->tv, sps, IRS_COUNT + 2, 0);
    cg->kernels = calloc(m->nparams * 4, sizeof(LLVMValueRef));
    LLVMValueRef *shapes = calloc(m->nparams * 4, sizeof(LLVMValueRef));
    int npool = sx_count(m->prog->pool);
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    enum { MAXIO = 2 * (3 * NNQ_MAX_LABELS + 2) };
    for (int p = 0; p < m->nparams; p++) {
        for (int w = 0; w < 4; w++) {
            const IrKernel *k = &m->kernels[p][w];
            IrKernelIO bufs[MAXIO];
            int slot[MAXIO];
            int nb = kernel_buffers(k, bufs, slot);
            char name[256];
            int rep = 0;
            while (rep < p && !same_kernel(&m->kernels[rep][w], k)) rep++;
            if (rep < p) {
                shapes[p * 4 + w] = shapes[rep * 4 + w];
            } else {
                /* core(begin, end, buffers..., scalars...) */
                LLVMTypeRef cps[2 + MAXIO + IRS_COUNT];
                cps[0] = cps[1] = cg->ti64;
                for (int j = 0; j < nb; j++) cps[2 + j] = cg->tp;
                for (int i = 0; i < IRS_COUNT; i++) cps[2 + nb + i] = cg->tf32;
                LLVMTypeRef core_ty = LLVMFunctionType(cg->tv, cps, (unsigned)(2 + nb + IRS_COUNT), 0);
                snprintf(name, sizeof name, "kernel.%s.%s.core", k->name, m->params[p].name);
                LLVMValueRef core = new_function(cg, name, core_ty, false);
                for (int j = 0; j < nb; j++)
                    LLVMAddAttributeAtIndex(core, (unsigned)(3 + j), LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
                LLVMValueRef sc[IRS_COUNT], buf[MAXIO];
                for (int i = 0; i < IRS_COUNT; i++) sc[i] = LLVMGetParam(core, (unsigned)(2 + nb + i));
                for (int j = 0; j < nb; j++) buf[j] = LLVMGetParam(core, (unsigned)(2 + j));
                cg->kscalars = sc;
                Loop l = loop_begin(cg, LLVMGetParam(core, 0), LLVMGetParam(core, 1), "i");
                LLVMValueRef inputs[3 * NNQ_MAX_LABELS + 2], vals[3 * NNQ_MAX_LABELS + 2];
                for (int i = 0; i < k->nin; i++) inputs[i] = ldf(cg, buf[slot[i]], l.iv);
                LLVMValueRef *memo = calloc(npool, sizeof(LLVMValueRef));
                for (int o = 0; o < k->nout; o++) vals[o] = emit_sx(cg, k, memo, inputs, k->out[o].node);
                for (int o = 0; o < k->nout; o++) stf(cg, buf[slot[k->nin + o]], l.iv, vals[o]);
                free(memo);
                loop_end(cg, &l);
                LLVMBuildRetVoid(cg->b);
                /* shape(table, count, scalars...): the loop on the runtime's threads */
                snprintf(name, sizeof name, "kernel.%s.%s.shape", k->name, m->params[p].name);
                LLVMValueRef f = new_function(cg, name, shape_ty, false);
                shapes[p * 4 + w] = f;
                LLVMValueRef v[1 + IRS_COUNT] = {LLVMGetParam(f, 0)};
                for (int i = 0; i < IRS_COUNT; i++) v[1 + i] = LLVMGetParam(f, (unsigned)(2 + i));
                snprintf(name, sizeof name, "kernel.%s.%s.body", k->name, m->params[p].name);
                ParLoop pl = par_range_begin(cg, name, LLVMGetParam(f, 1), 65536, v, 1 + IRS_COUNT);
                LLVMValueRef args[2 + MAXIO + IRS_COUNT] = {pl.begin, pl.end};
                LLVMValueRef table = as_ptr(cg, v[0], cg->tp);
                for (int j = 0; j < nb; j++)
                    args[2 + j] = LLVMBuildLoad2(cg->b, cg->tp, LLVMBuildInBoundsGEP2(cg->b, cg->tp, table, (LLVMValueRef[]){ci64(cg, j)}, 1, ""), "");
                for (int i = 0; i < IRS_COUNT; i++) args[2 + nb + i] = v[1 + i];
                LLVMBuildCall2(cg->b, core_ty, core, args, (unsigned)(2 + nb + IRS_COUNT), "");
                par_end(cg, &pl);
                LLVMBuildRetVoid(cg->b);
            }
            /* this parameter's table of buffers and its entry */
            LLVMValueRef init[MAXIO];
            for (int j = 0; j < nb; j++) init[j] = LLVMConstBitCast(kbuf(cg, p, &bufs[j]), cg->tp);
            LLVMTypeRef tt = LLVMArrayType(cg->tp, (unsigned)nb);
            snprintf(name, sizeof name, "kernel.%s.%s.buffers", k->name, m->params[p].name);
            LLVMValueRef table = LLVMAddGlobal(cg->mod, tt, name);
            LLVMSetInitializer(table, LLVMConstArray(cg->tp, init, (unsigned)nb));
            LLVMSetGlobalConstant(table, 1);
            LLVMSetLinkage(table, LLVMInternalLinkage);
            snprintf(name, sizeof name, "kernel.%s.%s", k->name, m->params[p].name);
            LLVMValueRef f = new_function(cg, name, cg->kernel_ty, false);
            cg->kernels[p * 4 + w] = f;
            LLVMValueRef args[2 + IRS_COUNT] = {as_ptr(cg, table, cg->ti8), ci64(cg, m->params[p].count)};
            for (int i = 0; i < IRS_COUNT; i++) args[2 + i] = LLVMGetParam(f, (unsigned)i);
            LLVMBuildCall2(cg->b, shape_ty, shapes[p * 4 + w], args, 2 + IRS_COUNT, "");
            LLVMBuildRetVoid(cg->b);
        }
    }
    free(shapes);
}

static void call_kernel(Cg *cg, int p, int which, LLVMValueRef *scalars) {
    LLVMBuildCall2(cg->b, cg->kernel_ty, cg->kernels[p * 4 + which], scalars, IRS_COUNT, "");
}

/* ---------- evaluate(run, ds, start, count, hard) -> accuracy ---------- */

/* calibrate(run): the hard network's batch-norm statistics, averaged over the first
 * calib.batches batches of the training data (in order, not augmented) run through the
 * hard network with batch statistics; with none, the running statistics. */
static void emit_calibrate(Cg *cg) {
    const IrModule *m = cg->m;
    LLVMTypeRef ft = LLVMFunctionType(cg->tv, &cg->tp, 1, 0);
    cg->calibrate_ty = ft;
    cg->calibrate = new_function(cg, "calibrate", ft, false);
    mark_cold(cg, cg->calibrate);
    LLVMValueRef run = LLVMGetParam(cg->fn, 0);
    LLVMBuilderRef b = cg->b;
    cg->calib_ds = global_buf(cg, "calib.ds", 1, cg->ti32);
    cg->calib_batches = global_buf(cg, "calib.batches", 1, cg->ti64);
    phase(cg, NNQ_PHASE_EVAL);
    LLVMValueRef K = LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->calib_batches, cg->ti64), "K");
    LLVMValueRef ds = LLVMBuildLoad2(b, cg->ti32, as_ptr(cg, cg->calib_ds, cg->ti32), "ds");
    for (int i = 0; i < m->nbns; i++)
        for (int k = 6; k < 8; k++)
            LLVMBuildMemSet(b, as_ptr(cg, cg->bnbuf[i][k], cg->ti8), LLVMConstInt(cg->ti8, 0, 0), ci64(cg, m->bns[i].features * 4), 4);
    Loop l = loop_begin(cg, ci64(cg, 0), K, "calib");
    LLVMValueRef start = LLVMBuildMul(b, l.iv, ci64(cg, cg->batch), "");
    rt_call(cg, "nnq_rt_data_batch", (LLVMValueRef[]){run, ds, LLVMConstNull(cg->tp), start, ci64(cg, cg->batch), cg->x, cg->y, ci32(cg, 0)}, 8);
    LLVMBuildCall2(b, cg->eval_batch_ty, cg->eval_batch, (LLVMValueRef[]){ci64(cg, cg->batch), ci32(cg, 1), ci32(cg, 1)}, 3, "");
    loop_end(cg, &l);
    LLVMValueRef none = LLVMBuildICmp(b, LLVMIntEQ, K, ci64(cg, 0), "");
    LLVMValueRef kf = LLVMBuildSIToFP(b, LLVMBuildSelect(b, none, ci64(cg, 1), K, ""), cg->tf32, "");
    for (int i = 0; i < m->nbns; i++) {
        Loop c = loop_begin(cg, ci64(cg, 0), ci64(cg, m->bns[i].features), "chan");
        for (int k = 6; k < 8; k++) {
            LLVMValueRef avg = LLVMBuildFDiv(b, ldf(cg, cg->bnbuf[i][k], c.iv), kf, "");
            stf(cg, cg->bnbuf[i][k], c.iv, LLVMBuildSelect(b, none, ldf(cg, cg->bnbuf[i][k - 6], c.iv), avg, ""));
        }
        loop_end(cg, &c);
    }
    phase(cg, NNQ_PHASE_OTHER);
    LLVMBuildRetVoid(b);
}

static void emit_evaluate(Cg *cg) {
    LLVMTypeRef ps[5] = {cg->tp, cg->ti32, cg->ti64, cg->ti64, cg->ti32};
    cg->evaluate_ty = LLVMFunctionType(cg->tf64, ps, 5, 0);
    cg->evaluate = new_function(cg, "evaluate", cg->evaluate_ty, false);
    mark_cold(cg, cg->evaluate);
    LLVMValueRef run = LLVMGetParam(cg->fn, 0), ds = LLVMGetParam(cg->fn, 1);
    LLVMValueRef start = LLVMGetParam(cg->fn, 2), count = LLVMGetParam(cg->fn, 3), hard = LLVMGetParam(cg->fn, 4);
    LLVMBuilderRef b = cg->b;
    phase(cg, NNQ_PHASE_EVAL);
    LLVMValueRef correct = local(cg, cg->tf64, cf64(cg, 0), "correct");
    /* each rank evaluates its part of the samples; the counts are summed */
    LLVMValueRef first = LLVMBuildAdd(b, start, rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, count, ci32(cg, 0)}, 3), "");
    LLVMValueRef end = LLVMBuildAdd(b, first, rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, count, ci32(cg, 1)}, 3), "");
    Loop l = loop_begin_step(cg, first, end, ci64(cg, cg->batch), "batch");
    LLVMValueRef left = LLVMBuildSub(b, end, l.iv, "");
    LLVMValueRef nb = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, ci64(cg, cg->batch), ""), left, ci64(cg, cg->batch), "");
    LLVMValueRef args[8] = {run, ds, LLVMConstNull(cg->tp), l.iv, nb, cg->x, cg->y, ci32(cg, 0)};
    rt_call(cg, "nnq_rt_data_batch", args, 8);
    LLVMValueRef eargs[3] = {nb, hard, ci32(cg, 0)};
    LLVMValueRef c = LLVMBuildCall2(b, cg->eval_batch_ty, cg->eval_batch, eargs, 3, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf64, correct), LLVMBuildFPExt(b, c, cg->tf64, ""), ""), correct);
    loop_end(cg, &l);
    LLVMValueRef all = rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, correct)}, 2);
    LLVMValueRef acc = LLVMBuildFDiv(b, all, LLVMBuildSIToFP(b, count, cg->tf64, ""), "");
    phase(cg, NNQ_PHASE_OTHER);
    LLVMBuildRet(b, acc);
}

/* ---------- nnq_main ---------- */

static LLVMValueRef str(Cg *cg, const char *s) { return LLVMBuildGlobalStringPtr(cg->b, s, "str"); }

static const DataDecl *find_data(const Program *prog, const char *name) {
    for (int i = 0; i < prog->ndata; i++)
        if (!strcmp(prog->data[i]->name, name)) return prog->data[i];
    return NULL;
}

static void all_kernels(Cg *cg, int which, LLVMValueRef *scalars) {
    for (int p = 0; p < cg->m->nparams; p++) call_kernel(cg, p, which, scalars);
}

/* The hard network: its weights (the hard kernels) and then its batch-norm statistics
 * (calibrate), which every hard evaluation and the saved model use. */
static void hard_network(Cg *cg, LLVMValueRef run, LLVMValueRef *scalars) {
    all_kernels(cg, 2, scalars);
    LLVMBuildCall2(cg->b, cg->calibrate_ty, cg->calibrate, &run, 1, "");
}

static LLVMValueRef scalars_beta(Cg *cg, LLVMValueRef *s, LLVMValueRef beta64) {
    LLVMValueRef bf = LLVMBuildFPTrunc(cg->b, beta64, cg->tf32, "");
    for (int i = 0; i < IRS_COUNT; i++) s[i] = cf32(cg, 0);
    s[IRS_BETA] = s[IRS_BETA_NEXT] = bf;
    return bf;
}

/* Copies between the live model (aux components, bn running stats) and the snapshot. */
static void snapshot(Cg *cg, bool save) {
    const IrModule *m = cg->m;
    LLVMBuilderRef b = cg->b;
    for (int p = 0; p < m->nparams; p++) {
        int64_t cnt = m->params[p].count;
        for (int c = 0; c < m->params[p].proj->ncomp; c++) {
            LLVMValueRef live = as_ptr(cg, cg->pcomp[p * 3][c], cg->ti8);
            LLVMValueRef snap = LLVMBuildInBoundsGEP2(b, cg->ti8, as_ptr(cg, cg->best[p][0], cg->ti8),
                                                      (LLVMValueRef[]){ci64(cg, c * cnt * 4)}, 1, "");
            if (save) LLVMBuildMemCpy(b, snap, 4, live, 4, ci64(cg, cnt * 4));
            else LLVMBuildMemCpy(b, live, 4, snap, 4, ci64(cg, cnt * 4));
        }
    }
    for (int i = 0; i < m->nbns; i++) {
        int64_t F = m->bns[i].features;
        for (int k = 0; k < 2; k++) {
            LLVMValueRef live = as_ptr(cg, cg->bnbuf[i][k], cg->ti8);
            LLVMValueRef snap = LLVMBuildInBoundsGEP2(b, cg->ti8, as_ptr(cg, cg->bestbn[i], cg->ti8),
                                                      (LLVMValueRef[]){ci64(cg, k * F * 4)}, 1, "");
            if (save) LLVMBuildMemCpy(b, snap, 4, live, 4, ci64(cg, F * 4));
            else LLVMBuildMemCpy(b, live, 4, snap, 4, ci64(cg, F * 4));
        }
    }
}

/* A private constant global array: shapes and label sets handed to the runtime. */
static LLVMValueRef const_array(Cg *cg, LLVMTypeRef elem, const LLVMValueRef *vals, int n, const char *name) {
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMArrayType(elem, (unsigned)n), name);
    LLVMSetInitializer(g, LLVMConstArray(elem, (LLVMValueRef *)vals, (unsigned)n));
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

/* The dims of a shape (no batch dimension) as a constant i64 array. */
static LLVMValueRef const_dims(Cg *cg, const IrShape *s, const char *name) {
    LLVMValueRef d[NNQ_MAX_RANK];
    for (int i = 0; i < s->rank; i++) d[i] = ci64(cg, s->d[i]);
    return const_array(cg, cg->ti64, d, s->rank, name);
}

static LLVMValueRef emit_load_data(Cg *cg, LLVMValueRef run, const DataDecl *d) {
    LLVMValueRef ds;
    switch (d->kind) {
    case DATA_IDX:
    case DATA_NPY:
        ds = rt_call(cg, d->kind == DATA_IDX ? "nnq_rt_data_idx" : "nnq_rt_data_npy",
                     (LLVMValueRef[]){run, str(cg, d->images), str(cg, d->labels)}, 3);
        break;
    default:
        ds = rt_call(cg, "nnq_rt_data_cifar", (LLVMValueRef[]){run, str(cg, d->images), ci32(cg, d->kind == DATA_CIFAR10 ? 10 : 100),
                                                               ci32(cg, d->split), ci32(cg, d->coarse)}, 5);
    }
    const IrModule *m = cg->m;
    int rank = m->input.rank;
    LLVMValueRef g = const_dims(cg, &m->input, "input.dims");
    char what[256];
    snprintf(what, sizeof what, "model '%s'", m->model);
    LLVMValueRef cargs[6] = {run, ds, ci32(cg, rank), g, ci32(cg, (int32_t)m->classes), str(cg, what)};
    rt_call(cg, "nnq_rt_data_check", cargs, 6);
    if (d->crop_pad || d->hflip)
        rt_call(cg, "nnq_rt_data_augment", (LLVMValueRef[]){run, ds, ci32(cg, (int32_t)d->crop_pad), ci32(cg, d->hflip)}, 4);
    return ds;
}

/* The epoch loop's scalars, each in a global of its own. */
typedef struct TrainScalars {
    LLVMValueRef beta, lr, t, best_acc, best_epoch;
} TrainScalars;

/* A global scalar, set to `init` where the builder stands; returns a pointer to it. */
static LLVMValueRef scalar_global(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef init) {
    LLVMValueRef p = as_ptr(cg, global_buf(cg, name, 1, ty), ty);
    LLVMBuildStore(cg->b, init, p);
    return p;
}

static void state(Cg *cg, LLVMValueRef run, const char *name, LLVMValueRef p, int64_t bytes) {
    rt_call(cg, "nnq_rt_checkpoint_state", (LLVMValueRef[]){run, str(cg, name), p, ci64(cg, bytes)}, 4);
}

static void describe(Cg *cg, LLVMValueRef run, const char *what, LLVMValueRef value) {
    rt_call(cg, "nnq_rt_checkpoint_describe", (LLVMValueRef[]){run, str(cg, what), value}, 3);
}

/* Declares what a checkpoint must match (the description) and what it holds: every
 * buffer that carries over from one step or epoch to the next — each parameter's
 * weights, hard weights, aux components and optimizer moments, batch-norm running and
 * hard statistics, the kept best model, the dropout step counter and the loop's
 * scalars (the runtime adds its generator, which shuffles and augments). Gradients, the
 * batch and IR values are rewritten by every step and are left out. */
static void declare_checkpoint(Cg *cg, LLVMValueRef run, const TrainScalars *ts, LLVMValueRef ntrain, LLVMValueRef nval) {
    const IrModule *m = cg->m;
    const TrainConfig *tc = cg->tc;
    Arena *ar = m->arena;
    describe(cg, run, arena_printf(ar, "model %s", m->model), ci64(cg, 0));
    describe(cg, run, tc->opt == OPT_SGD ? "optimizer sgd" : tc->decoupled_decay ? "optimizer adamw" : "optimizer adam", ci64(cg, 0));
    describe(cg, run, "batch", ci64(cg, cg->batch));
    describe(cg, run, "keep best", ci64(cg, tc->keep_best));
    describe(cg, run, "training samples", ntrain);
    describe(cg, run, "validation samples", nval);
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        char shape[128], q[1024] = "";
        ir_shape_format(&par->shape, IR_F32, shape, sizeof shape);
        if (par->proj->labels) {
            size_t len = 0;
            for (int i = 0; i < par->proj->labels->k && len < sizeof q - 32; i++)
                len += (size_t)snprintf(q + len, sizeof q - len, "%s%g", i ? ", " : " {", par->proj->labels->q[i]);
            snprintf(q + len, sizeof q - len, "}");
        }
        describe(cg, run, arena_printf(ar, "parameter %s %s %s%s", par->name, shape, par->proj->name, q), ci64(cg, par->count));
    }
    for (int i = 0; i < m->nbns; i++)
        describe(cg, run, arena_printf(ar, "batch norm %s", m->bns[i].name), ci64(cg, m->bns[i].features));

    static const char *const kn[] = {"aux", "m", "v"};
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        int K = par->proj->ncomp;
        state(cg, run, arena_printf(ar, "%s.weight", par->name), cg->pbuf[p][IRB_WEIGHT], par->count * 4);
        state(cg, run, arena_printf(ar, "%s.hard", par->name), cg->pbuf[p][IRB_HARD], par->count * 4);
        for (int kind = 0; kind < 3; kind++)
            for (int c = 0; c < K; c++)
                if (cg->pcomp[p * 3 + kind][c])
                    state(cg, run, arena_printf(ar, "%s.%s%d", par->name, kn[kind], c), cg->pcomp[p * 3 + kind][c], par->count * 4);
        if (tc->keep_best) state(cg, run, arena_printf(ar, "%s.best", par->name), cg->best[p][0], par->count * K * 4);
    }
    static const char *const bn[] = {"running_mean", "running_var", NULL, NULL, NULL, NULL, "hard_mean", "hard_var"};
    for (int i = 0; i < m->nbns; i++) {
        for (int k = 0; k < 8; k++)
            if (bn[k]) state(cg, run, arena_printf(ar, "%s.%s", m->bns[i].name, bn[k]), cg->bnbuf[i][k], m->bns[i].features * 4);
        if (tc->keep_best) state(cg, run, arena_printf(ar, "%s.best", m->bns[i].name), cg->bestbn[i], 2 * m->bns[i].features * 4);
    }
    state(cg, run, "dropout.step", cg->dropout_step, 8);
    state(cg, run, "train.iteration", ts->t, 8);
    state(cg, run, "train.beta", ts->beta, 8);
    state(cg, run, "train.lr", ts->lr, 8);
    state(cg, run, "train.best_acc", ts->best_acc, 8);
    state(cg, run, "train.best_epoch", ts->best_epoch, 4);
}

/* ---------- nnq_main, in parts ----------
 * What the parts of nnq_main share: the run, the data sets and their split, the epoch
 * count and the scalars kept in globals (checkpointed). */
typedef struct MainCtx {
    const IrModule *m;
    LLVMValueRef run;
    const DataDecl *dtrain, *dtest;
    LLVMValueRef ds, dst;                /* training and test data sets (dst NULL: none) */
    LLVMValueRef ntrain, nval, ntest;    /* training / validation / test sample counts */
    LLVMValueRef epochs, iters, index;   /* epochs to run, iterations per epoch, the shuffled order */
    LLVMValueRef lr_every, beta_every;   /* schedules in iterations */
    TrainScalars st;
} MainCtx;

/* Before any data: the checkpoint directory, the seed, the MPI agreement, every
 * convolution's scratch, the dropout key. */
static void emit_main_setup(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    /* an unusable checkpoint directory fails before any work is done */
    if (tc->checkpoint_dir) rt_call(cg, "nnq_rt_checkpoint_dir", (LLVMValueRef[]){run, str(cg, tc->checkpoint_dir)}, 2);
    LLVMValueRef a2[2];
    a2[0] = run;
    a2[1] = ci64(cg, tc->seed);
    LLVMValueRef seed = rt_call(cg, "nnq_rt_seed", a2, 2);
    LLVMValueRef epochs = mc->epochs = rt_call(cg, "nnq_rt_epochs", (LLVMValueRef[]){run, ci32(cg, tc->epochs)}, 2);
    /* data parallelism: the ranks agree on the program and split every batch */
    LLVMBuildStore(b, LLVMBuildSExt(b, rt_call(cg, "nnq_rt_world_size", &run, 1), cg->ti64, ""), as_ptr(cg, cg->mpi_size, cg->ti64));
    LLVMBuildStore(b, rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, ci64(cg, cg->batch), ci32(cg, 0)}, 3), as_ptr(cg, cg->mpi_base, cg->ti64));
    rt_call(cg, "nnq_rt_mpi_start", (LLVMValueRef[]){run, LLVMBuildLoad2(b, cg->ti64, cg->fingerprint, ""), ci64(cg, cg->batch), seed, epochs}, 5);
    /* every convolution's scratch, reserved before any work */
    for (int which = 0; which < 2; which++) {
        const IrFunc *f = which ? &m->eval : &m->train;
        for (int i = 0; i < f->n; i++) {
            const IrInst *in = &f->insts[i];
            if (in->op != IR_CONV2D) continue;
            LLVMValueRef args[10] = {run, ci32(cg, (int32_t)cg->batch)};
            conv_geometry(cg, &f->insts[in->args[0]].shape, &f->insts[in->args[1]].shape, in, args + 2);
            rt_call(cg, "nnq_rt_conv_reserve", args, 10);
        }
    }
    /* dropout masks: keyed by a draw from the seeded generator and the step count */
    LLVMBuildStore(b, rt_call(cg, "nnq_rt_random_bits", &run, 1), as_ptr(cg, cg->dropout_step, cg->ti64));

}

/* The data sets: loaded, checked, split (training | validation), normalized. */
static void emit_main_data(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    const Program *prog = m->prog;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    /* data */
    const DataDecl *dtrain = find_data(prog, tc->data);
    const DataDecl *dtest = tc->eval_data ? find_data(prog, tc->eval_data) : NULL;
    LLVMValueRef ds = emit_load_data(cg, run, dtrain);
    LLVMValueRef ntotal = rt_call(cg, "nnq_rt_data_count", (LLVMValueRef[]){run, ds}, 2);
    /* validation: the last V samples, never more than half the set */
    LLVMValueRef vwant = ci64(cg, tc->validation);
    LLVMValueRef half = LLVMBuildSDiv(b, ntotal, ci64(cg, 2), "");
    LLVMValueRef nval = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, vwant, half, ""), vwant, half, "nval");
    LLVMValueRef ntrain = LLVMBuildSub(b, ntotal, nval, "ntrain");
    if (dtrain->normalize)
        rt_call(cg, "nnq_rt_data_normalize", (LLVMValueRef[]){run, ds, ci32(cg, 1), ds, ntrain}, 5);
    /* the hard network's batch-norm statistics come from the first training batches */
    LLVMBuildStore(b, ds, as_ptr(cg, cg->calib_ds, cg->ti32));
    {
        LLVMValueRef want = ci64(cg, tc->calibrate), cnt = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, want, ntrain, ""), want, ntrain, "");
        LLVMBuildStore(b, LLVMBuildSDiv(b, cnt, ci64(cg, cg->batch), ""), as_ptr(cg, cg->calib_batches, cg->ti64));
    }
    LLVMValueRef dst = NULL, ntest = ci64(cg, 0);
    if (dtest) {
        dst = dtest == dtrain ? ds : emit_load_data(cg, run, dtest);
        if (dtest != dtrain) {
            ntest = rt_call(cg, "nnq_rt_data_count", (LLVMValueRef[]){run, dst}, 2);
            if (dtest->normalize) {
                bool like_train = dtest->like && !strcmp(dtest->like, dtrain->name);
                /* like(train): the training portion's statistics; otherwise its own. */
                LLVMValueRef src = like_train ? ds : dst;
                LLVMValueRef cnt = like_train ? ntrain : ntest;
                rt_call(cg, "nnq_rt_data_normalize", (LLVMValueRef[]){run, dst, ci32(cg, 1), src, cnt}, 5);
            }
        } else {
            ntest = nval;
        }
    }
    LLVMValueRef iters = LLVMBuildSDiv(b, ntrain, ci64(cg, cg->batch), "iters");
    LLVMValueRef index = rt_call(cg, "nnq_rt_alloc", (LLVMValueRef[]){run, LLVMBuildMul(b, ntrain, ci64(cg, 8), "")}, 2);

    mc->dtrain = dtrain, mc->dtest = dtest, mc->ds = ds, mc->dst = dst;
    mc->ntrain = ntrain, mc->nval = nval, mc->ntest = ntest, mc->iters = iters, mc->index = index;
}

/* `init from "DIR"` (after the random initialization): unless --resume restores a
 * checkpoint, each parameter's weight is read from DIR/NAME.npy into its grad buffer,
 * where the w0 draw was, and its init kernel runs again; batch-norm statistics are read
 * where their files exist. The draws are made all the same, so that the generator (and
 * with it shuffling, augmentation and dropout) is where a run without it has it. */
static void emit_init_from(Cg *cg, MainCtx *mc, LLVMValueRef *sc) {
    const IrModule *m = mc->m;
    LLVMValueRef run = mc->run;
    LLVMValueRef dir = rt_call(cg, "nnq_rt_init_from", (LLVMValueRef[]){run, str(cg, cg->tc->init_dir)}, 2);
    LLVMBasicBlockRef join;
    if_begin(cg, LLVMBuildIsNotNull(cg->b, dir, ""), &join);
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        rt_call(cg, "nnq_rt_init_tensor", (LLVMValueRef[]){run, dir, str(cg, par->name), ci32(cg, par->shape.rank),
                                                            const_dims(cg, &par->shape, "dims"), cg->pbuf[p][IRB_GRAD], ci32(cg, 0)}, 7);
        call_kernel(cg, p, 1, sc);
    }
    for (int i = 0; i < m->nbns; i++)
        for (int k = 0; k < 2; k++) {
            LLVMValueRef dv = ci64(cg, m->bns[i].features);
            const char *nm = arena_printf(m->arena, "%s.%s", m->bns[i].name, k ? "running_var" : "running_mean");
            rt_call(cg, "nnq_rt_init_tensor", (LLVMValueRef[]){run, dir, str(cg, nm), ci32(cg, 1), const_array(cg, cg->ti64, &dv, 1, "dims"),
                                                                cg->bnbuf[i][k], ci32(cg, NNQ_INIT_OPTIONAL | (k ? NNQ_INIT_NONNEG : 0))}, 7);
        }
    const char *note = arena_printf(m->arena, "initial weights of %%lld parameters read from \"%s\" (init from)", cg->tc->init_dir);
    rt_call(cg, "nnq_rt_note", (LLVMValueRef[]){run, str(cg, note), ci64(cg, m->nparams)}, 3);
    if_end(cg, join);
}

/* Initialization: w0 draws into the grad buffers, then each init kernel; batch norms;
 * then `init from`. */
static void emit_main_init(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    LLVMValueRef run = mc->run;
    LLVMValueRef sc[IRS_COUNT];
    scalars_beta(cg, sc, cf64(cg, tc->beta_start));
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        LLVMValueRef g = as_ptr(cg, cg->pbuf[p][IRB_GRAD], cg->tf32);
        if (par->init == IR_INIT_XAVIER) {
            double bound = sqrt(6.0 / (double)(par->fan_in + par->fan_out));
            rt_call(cg, "nnq_rt_fill_uniform", (LLVMValueRef[]){run, g, ci64(cg, par->count), cf32(cg, -bound), cf32(cg, bound)}, 5);
        } else {
            rt_call(cg, "nnq_rt_fill_normal", (LLVMValueRef[]){run, g, ci64(cg, par->count), cf32(cg, 0), cf32(cg, par->init_std)}, 5);
        }
        call_kernel(cg, p, 1, sc);
    }
    for (int i = 0; i < m->nbns; i++) {
        Loop l = loop_begin(cg, ci64(cg, 0), ci64(cg, m->bns[i].features), "bninit");
        stf(cg, cg->bnbuf[i][1], l.iv, cf32(cg, 1));
        loop_end(cg, &l);
    }
    if (tc->init_dir) emit_init_from(cg, mc, sc);
}

/* One training iteration: this rank's part of the batch, the step, the gradient
 * all-reduce, the loss check, the schedules, the fused updates, progress. */
static void emit_main_iteration(Cg *cg, MainCtx *mc, Loop *ep, Loop *it, LLVMValueRef sum_loss, LLVMValueRef sum_correct) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    LLVMValueRef ds = mc->ds, index = mc->index, iters = mc->iters, lr_every = mc->lr_every, beta_every = mc->beta_every;
    LLVMValueRef beta = mc->st.beta, lr = mc->st.lr, t = mc->st.t;
    LLVMValueRef start = LLVMBuildMul(b, it->iv, ci64(cg, cg->batch), "");
    phase(cg, NNQ_PHASE_DATA);
    /* this rank's part of the batch (the whole batch without MPI) */
    LLVMValueRef nb = rt_call(cg, "nnq_rt_data_shard", (LLVMValueRef[]){run, ds, index, start, ci64(cg, cg->batch), cg->x, cg->y, ci32(cg, 1)}, 8);
    LLVMBuildCall2(b, cg->train_step_ty, cg->train_step, &nb, 1, "");
    phase(cg, NNQ_PHASE_COMM);
    rt_call(cg, "nnq_rt_mpi_grads", (LLVMValueRef[]){run, cg->grad_table, cg->grad_counts, ci32(cg, m->nparams)}, 4);
    phase(cg, NNQ_PHASE_OTHER);
    LLVMValueRef loss = ldf(cg, cg->vtrain[m->train.loss], ci64(cg, 0));
    LLVMValueRef correct = ldf(cg, cg->vtrain[m->train.correct], ci64(cg, 0));
    LLVMValueRef tt = get(cg, cg->ti64, t);
    rt_call(cg, "nnq_rt_check_loss", (LLVMValueRef[]){run, loss, tt}, 3);
    LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf64, sum_loss), LLVMBuildFPExt(b, loss, cg->tf64, ""), ""), sum_loss);
    LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf64, sum_correct), LLVMBuildFPExt(b, correct, cg->tf64, ""), ""), sum_correct);
    LLVMValueRef t1 = LLVMBuildAdd(b, tt, ci64(cg, 1), "t1");
    LLVMBuildStore(b, t1, t);
    /* learning rate for this step: lr0 * gamma^floor(t / every) */
    LLVMValueRef lrv = cf64(cg, tc->lr);
    if ((tc->lr_every != 0 || tc->nmilestones > 0) && tc->lr_gamma != 1) {
        /* step: floor(t / every) decays; multistep: the milestones passed */
        LLVMValueRef k;
        if (tc->lr_every != 0) {
            k = LLVMBuildSIToFP(b, LLVMBuildSDiv(b, tt, lr_every, ""), cg->tf64, "");
        } else {
            LLVMValueRef cnt = ci64(cg, 0);
            for (int i = 0; i < tc->nmilestones; i++) {
                int64_t ms = tc->lr_milestones[i];
                LLVMValueRef at = ms >= 0 ? ci64(cg, ms) : LLVMBuildMul(b, ci64(cg, -ms), iters, "");
                cnt = LLVMBuildAdd(b, cnt, LLVMBuildZExt(b, LLVMBuildICmp(b, LLVMIntSGE, tt, at, ""), cg->ti64, ""), "");
            }
            k = LLVMBuildSIToFP(b, cnt, cg->tf64, "");
        }
        LLVMValueRef pa[2] = {cf64(cg, tc->lr_gamma), k};
        LLVMTypeRef f64 = cg->tf64;
        unsigned id = LLVMLookupIntrinsicID("llvm.pow", 8);
        LLVMValueRef pw = LLVMBuildCall2(b, LLVMIntrinsicGetType(cg->ctx, id, &f64, 1),
                                         LLVMGetIntrinsicDeclaration(cg->mod, id, &f64, 1), pa, 2, "");
        lrv = LLVMBuildFMul(b, lrv, pw, "lr");
    }
    LLVMBuildStore(b, lrv, lr);
    /* beta for the next step */
    LLVMValueRef bcur = get(cg, cg->tf64, beta), bnext = bcur;
    if (tc->beta_every != 0 && tc->beta_times != 1) {
        LLVMValueRef due = LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, t1, beta_every, ""), ci64(cg, 0), "");
        LLVMValueRef grown = LLVMBuildFMul(b, bcur, cf64(cg, tc->beta_times), "");
        LLVMValueRef capped = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, grown, cf64(cg, tc->beta_max), ""),
                                              cf64(cg, tc->beta_max), grown, "");
        bnext = LLVMBuildSelect(b, due, capped, bcur, "beta_next");
    }
    LLVMValueRef s[IRS_COUNT];
    s[IRS_BETA] = LLVMBuildFPTrunc(b, bcur, cg->tf32, "");
    s[IRS_BETA_NEXT] = LLVMBuildFPTrunc(b, bnext, cg->tf32, "");
    s[IRS_LR] = LLVMBuildFPTrunc(b, lrv, cg->tf32, "");
    LLVMValueRef tf = LLVMBuildSIToFP(b, t1, cg->tf64, "");
    LLVMTypeRef f64 = cg->tf64;
    unsigned pid = LLVMLookupIntrinsicID("llvm.pow", 8);
    LLVMTypeRef powty = LLVMIntrinsicGetType(cg->ctx, pid, &f64, 1);
    LLVMValueRef powf = LLVMGetIntrinsicDeclaration(cg->mod, pid, &f64, 1);
    LLVMValueRef p1 = LLVMBuildCall2(b, powty, powf, (LLVMValueRef[]){cf64(cg, tc->beta1), tf}, 2, "");
    LLVMValueRef p2 = LLVMBuildCall2(b, powty, powf, (LLVMValueRef[]){cf64(cg, tc->beta2), tf}, 2, "");
    s[IRS_BC1] = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, cf64(cg, 1), LLVMBuildFSub(b, cf64(cg, 1), p1, ""), ""), cg->tf32, "bc1");
    s[IRS_BC2] = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, cf64(cg, 1), LLVMBuildFSub(b, cf64(cg, 1), p2, ""), ""), cg->tf32, "bc2");
    phase(cg, NNQ_PHASE_UPDATE);
    all_kernels(cg, 0, s);
    phase(cg, NNQ_PHASE_OTHER);
    LLVMBuildStore(b, bnext, beta);
    rt_call(cg, "nnq_rt_progress", (LLVMValueRef[]){run, ep->iv, LLVMBuildAdd(b, it->iv, ci64(cg, 1), ""), loss}, 4);
}

/* The end of an epoch: validation (soft and hard), the kept best model, the test
 * evaluation when due, the epoch line and metrics, the checkpoint when due. */
static void emit_main_epoch_end(Cg *cg, MainCtx *mc, Loop *ep, LLVMValueRef sum_loss, LLVMValueRef sum_correct) {
    const TrainConfig *tc = cg->tc;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    const DataDecl *dtrain = mc->dtrain, *dtest = mc->dtest;
    LLVMValueRef ds = mc->ds, dst = mc->dst, ntrain = mc->ntrain, nval = mc->nval, ntest = mc->ntest;
    LLVMValueRef epochs = mc->epochs, iters = mc->iters;
    LLVMValueRef beta = mc->st.beta, lr = mc->st.lr, best_acc = mc->st.best_acc, best_epoch = mc->st.best_epoch;
    /* end of epoch: validation, soft and hard */
    LLVMValueRef vs = local(cg, cg->tf64, NULL, "val_soft"), vh = local(cg, cg->tf64, NULL, "val_hard");
    LLVMBuildStore(b, cf64(cg, -1), vs);
    LLVMBuildStore(b, cf64(cg, -1), vh);
    /* `evaluate DATA every N epochs`: the test accuracies at this epoch */
    const DataDecl *dtest_every = tc->eval_every_epochs > 0 ? dtest : NULL;
    LLVMValueRef due = dtest_every ? LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, ep->iv, ci32(cg, tc->eval_every_epochs), ""), ci32(cg, 0), "due")
                                   : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef validate = LLVMBuildICmp(b, LLVMIntSGT, nval, ci64(cg, 0), "validate");
    LLVMBasicBlockRef join;
    /* one hard network for this epoch's validation and test evaluations */
    if_begin(cg, LLVMBuildOr(b, validate, due, ""), &join);
    {
        LLVMValueRef s[IRS_COUNT];
        scalars_beta(cg, s, get(cg, cg->tf64, beta));
        hard_network(cg, run, s);
    }
    if_end(cg, join);
    if_begin(cg, validate, &join);
    {
        LLVMValueRef soft = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, ds, ntrain, nval, ci32(cg, 0)}, 5, "");
        LLVMValueRef hard = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, ds, ntrain, nval, ci32(cg, 1)}, 5, "");
        LLVMBuildStore(b, soft, vs);
        LLVMBuildStore(b, hard, vh);
        if (tc->keep_best) {
            LLVMBasicBlockRef j2;
            if_begin(cg, LLVMBuildFCmp(b, LLVMRealOGT, hard, get(cg, cg->tf64, best_acc), ""), &j2);
            LLVMBuildStore(b, hard, best_acc);
            LLVMBuildStore(b, ep->iv, best_epoch);
            snapshot(cg, true);
            if_end(cg, j2);
        }
    }
    if_end(cg, join);
    if (dtest_every) {
        LLVMBasicBlockRef j4;
        if_begin(cg, due, &j4);
        LLVMValueRef tstart = dtest == dtrain ? ntrain : ci64(cg, 0);
        LLVMValueRef soft = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 0)}, 5, "");
        LLVMValueRef hard = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 1)}, 5, "");
        rt_call(cg, "nnq_rt_epoch_test", (LLVMValueRef[]){run, soft, hard}, 3);
        if_end(cg, j4);
    }
    /* the epoch's loss and accuracy over every rank's samples */
    LLVMValueRef fi = LLVMBuildSIToFP(b, iters, cg->tf64, "");
    LLVMValueRef ranks = LLVMBuildSIToFP(b, LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->mpi_size, cg->ti64), ""), cg->tf64, "");
    LLVMValueRef all_loss = rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, sum_loss)}, 2);
    LLVMValueRef all_correct = rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, sum_correct)}, 2);
    LLVMValueRef mean_loss = LLVMBuildFDiv(b, LLVMBuildFDiv(b, all_loss, ranks, ""), fi, "");
    LLVMValueRef tr_acc = LLVMBuildFDiv(b, all_correct, LLVMBuildFMul(b, fi, cf64(cg, (double)cg->batch), ""), "");
    rt_call(cg, "nnq_rt_epoch_end", (LLVMValueRef[]){run, ep->iv, mean_loss, tr_acc, get(cg, cg->tf64, vs), get(cg, cg->tf64, vh),
                                                     get(cg, cg->tf64, beta), get(cg, cg->tf64, lr)}, 8);
    if (tc->checkpoint_dir) {
        /* every N epochs and after the last one (which a longer run can extend) */
        LLVMValueRef due_ck = LLVMBuildOr(b, LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, ep->iv, ci32(cg, tc->checkpoint_every), ""), ci32(cg, 0), ""),
                                          LLVMBuildICmp(b, LLVMIntEQ, ep->iv, epochs, ""), "checkpoint_due");
        LLVMBasicBlockRef j5;
        if_begin(cg, due_ck, &j5);
        rt_call(cg, "nnq_rt_checkpoint_save", (LLVMValueRef[]){run, ep->iv, epochs}, 3);
        if_end(cg, j5);
    }
}

/* After training: the kept best model restored, the hard network, the test
 * evaluation, the final report and the model file. */
static void emit_main_finish(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    const DataDecl *dtrain = mc->dtrain, *dtest = mc->dtest;
    LLVMValueRef dst = mc->dst, ntrain = mc->ntrain, ntest = mc->ntest, epochs = mc->epochs;
    LLVMValueRef beta = mc->st.beta, best_epoch = mc->st.best_epoch;
    /* after training */
    LLVMValueRef s[IRS_COUNT];
    scalars_beta(cg, s, get(cg, cg->tf64, beta));
    if (tc->keep_best) {
        LLVMBasicBlockRef j3;
        if_begin(cg, LLVMBuildICmp(b, LLVMIntSGT, get(cg, cg->ti32, best_epoch), ci32(cg, 0), ""), &j3);
        snapshot(cg, false);
        all_kernels(cg, 3, s);
        rt_call(cg, "nnq_rt_note", (LLVMValueRef[]){run, str(cg, "kept the best hard-quantized validation model, from epoch"),
                                                    LLVMBuildSExt(b, get(cg, cg->ti32, best_epoch), cg->ti64, "")}, 3);
        if_end(cg, j3);
    }
    hard_network(cg, run, s);
    LLVMValueRef ts = cf64(cg, -1), th = cf64(cg, -1);
    if (dst) {
        LLVMValueRef tstart = dtest == dtrain ? ntrain : ci64(cg, 0);
        ts = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 0)}, 5, "test_soft");
        th = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 1)}, 5, "test_hard");
    }
    rt_call(cg, "nnq_rt_train_end", (LLVMValueRef[]){run, epochs, ts, th}, 4);
    if (tc->save_path) {
        /* the hard network of the last hard_network() call, statistics included */
        rt_call(cg, "nnq_rt_model_begin", (LLVMValueRef[]){run, str(cg, m->model)}, 2);
        size_t alen;
        const unsigned char *arch = arch_build(m, &alen);
        LLVMValueRef ag = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->ti8, (unsigned)alen), "arch");
        LLVMSetInitializer(ag, LLVMConstStringInContext(cg->ctx, (const char *)arch, (unsigned)alen, 1));
        LLVMSetGlobalConstant(ag, 1);
        LLVMSetLinkage(ag, LLVMPrivateLinkage);
        /* the normalization the test evaluation saw (that of the training data when there
         * is no test set), so that `nnqc eval` on the test set reproduces its accuracy */
        rt_call(cg, "nnq_rt_model_arch", (LLVMValueRef[]){run, ag, ci64(cg, (int64_t)alen), dst ? dst : mc->ds}, 4);
        for (int p = 0; p < m->nparams; p++) {
            const IrParam *par = &m->params[p];
            const LabelSet *ls = par->proj->labels;
            LLVMValueRef dg = const_dims(cg, &par->shape, "dims");
            LLVMValueRef lg = LLVMConstNull(cg->tp);
            if (ls) {
                LLVMValueRef lv[NNQ_MAX_LABELS];
                for (int i = 0; i < ls->k; i++) lv[i] = cf32(cg, ls->q[i]);
                lg = const_array(cg, cg->tf32, lv, ls->k, "labels");
            }
            rt_call(cg, "nnq_rt_model_add", (LLVMValueRef[]){run, str(cg, par->name), ci32(cg, par->shape.rank), dg,
                                                             ci32(cg, ls ? ls->k : 0), lg, cg->pbuf[p][IRB_HARD]}, 7);
        }
        for (int i = 0; i < m->nbns; i++) {
            for (int k = 0; k < 2; k++) {
                LLVMValueRef dv = ci64(cg, m->bns[i].features);
                LLVMValueRef dg = const_array(cg, cg->ti64, &dv, 1, "dims");
                const char *nm = arena_printf(m->arena, "%s.%s", m->bns[i].name, k ? "running_var" : "running_mean");
                rt_call(cg, "nnq_rt_model_add", (LLVMValueRef[]){run, str(cg, nm), ci32(cg, 1), dg, ci32(cg, 0),
                                                                 LLVMConstNull(cg->tp), cg->bnbuf[i][6 + k]}, 7);
            }
        }
        rt_call(cg, "nnq_rt_model_save", (LLVMValueRef[]){run, str(cg, tc->save_path)}, 2);
    }
}

/* nnq_main(run): the parts above around the epoch and iteration loops. */
static void emit_main(Cg *cg) {
    const IrModule *m = cg->m;
    const TrainConfig *tc = cg->tc;
    const Program *prog = m->prog;
    LLVMBuilderRef b = cg->b;
    LLVMTypeRef mt = LLVMFunctionType(cg->ti32, &cg->tp, 1, 0);
    mark_cold(cg, new_function(cg, "nnq_main", mt, true));
    MainCtx mc = {.m = m, .run = LLVMGetParam(cg->fn, 0)};
    LLVMValueRef run = mc.run;
    if (!prog->train) { /* no train block, no data: nothing to run (nnqc refuses to) */
        LLVMBuildRet(b, ci32(cg, 1));
        return;
    }
    emit_main_setup(cg, &mc);
    emit_main_data(cg, &mc);
    emit_main_init(cg, &mc);
    LLVMValueRef epochs = mc.epochs, iters = mc.iters, ntrain = mc.ntrain, nval = mc.nval, ntest = mc.ntest;
    /* The loop's scalars live in globals, so that checkpoints can hold them. */
    TrainScalars st = {
        .beta = scalar_global(cg, "train.beta", cg->tf64, cf64(cg, tc->beta_start)),
        .lr = scalar_global(cg, "train.lr", cg->tf64, cf64(cg, tc->lr)),
        .t = scalar_global(cg, "train.iteration", cg->ti64, ci64(cg, 0)),
        .best_acc = scalar_global(cg, "train.best_acc", cg->tf64, cf64(cg, -1)),
        .best_epoch = scalar_global(cg, "train.best_epoch", cg->ti32, ci32(cg, 0)),
    };
    rt_call(cg, "nnq_rt_train_begin", (LLVMValueRef[]){run, str(cg, m->model), epochs, iters, ntrain, nval, ntest}, 7);
    /* --resume: the state after the checkpoint's epoch replaces the fresh one */
    declare_checkpoint(cg, run, &st, ntrain, nval);
    LLVMValueRef first = LLVMBuildAdd(b, rt_call(cg, "nnq_rt_checkpoint_resume", (LLVMValueRef[]){run, epochs}, 2), ci32(cg, 1), "first");
    /* Schedules in iterations: `N epochs` becomes N * iters. */
    mc.lr_every = tc->lr_every >= 0 ? ci64(cg, tc->lr_every) : LLVMBuildMul(b, ci64(cg, -tc->lr_every), iters, "");
    mc.beta_every = tc->beta_every >= 0 ? ci64(cg, tc->beta_every) : LLVMBuildMul(b, ci64(cg, -tc->beta_every), iters, "");

    mc.st = st;
    Loop ep = loop_begin(cg, first, LLVMBuildAdd(b, epochs, ci32(cg, 1), ""), "epoch");
    rt_call(cg, "nnq_rt_shuffle", (LLVMValueRef[]){run, mc.index, ntrain}, 3);
    LLVMValueRef sum_loss = local(cg, cg->tf64, NULL, "sum_loss");
    LLVMValueRef sum_correct = local(cg, cg->tf64, NULL, "sum_correct");
    LLVMBuildStore(b, cf64(cg, 0), sum_loss);
    LLVMBuildStore(b, cf64(cg, 0), sum_correct);
    Loop it = loop_begin(cg, ci64(cg, 0), iters, "iter");
    emit_main_iteration(cg, &mc, &ep, &it, sum_loss, sum_correct);
    loop_end(cg, &it);
    emit_main_epoch_end(cg, &mc, &ep, sum_loss, sum_correct);
    loop_end(cg, &ep);
    emit_main_finish(cg, &mc);
    LLVMBuildRet(b, ci32(cg, 0));
}

/* ---------- module ---------- */

LLVMModuleRef cg_emit_module(const IrModule *m, LLVMContextRef ctx, bool export_internals, Diag *diag) {
    Cg cg;
    memset(&cg, 0, sizeof cg);
    cg.export_internals = export_internals;
    cg.ctx = ctx;
    cg.m = m;
    train_config_defaults(&cg.defaults); /* a program without a train block */
    cg.tc = m->prog->train ? m->prog->train : &cg.defaults;
    cg.batch = cg.tc->batch;
    cg.mod = LLVMModuleCreateWithNameInContext(m->model, ctx);
    cg.b = LLVMCreateBuilderInContext(ctx);
    cg.tv = LLVMVoidTypeInContext(ctx);
    cg.ti1 = LLVMInt1TypeInContext(ctx);
    cg.ti8 = LLVMInt8TypeInContext(ctx);
    cg.ti32 = LLVMInt32TypeInContext(ctx);
    cg.ti64 = LLVMInt64TypeInContext(ctx);
    cg.tf32 = LLVMFloatTypeInContext(ctx);
    cg.tf64 = LLVMDoubleTypeInContext(ctx);
    cg.tp = LLVMPointerType(cg.ti8, 0);
    /* Runtime declarations from the ABI table. */
    cg.rt_fn = calloc(rt_table_count, sizeof(LLVMValueRef));
    cg.rt_ty = calloc(rt_table_count, sizeof(LLVMTypeRef));
    for (int i = 0; i < rt_table_count; i++) {
        LLVMTypeRef codes[6] = {cg.tv, cg.ti32, cg.ti64, cg.tf32, cg.tf64, cg.tp};
        LLVMTypeRef ps[16];
        for (int k = 0; k < rt_table[i].nargs; k++) ps[k] = codes[rt_table[i].args[k]];
        cg.rt_ty[i] = LLVMFunctionType(codes[rt_table[i].ret], ps, (unsigned)rt_table[i].nargs, 0);
        cg.rt_fn[i] = LLVMAddFunction(cg.mod, rt_table[i].name, cg.rt_ty[i]);
    }
    make_buffers(&cg);
    emit_tensor_functions(&cg);
    emit_kernels(&cg);
    emit_calibrate(&cg);
    emit_evaluate(&cg);
    emit_main(&cg);
    LLVMDisposeBuilder(cg.b);
    char *msg = NULL;
    bool bad = LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg);
    if (bad) {
        diag_error_noloc(diag, "internal compiler error: LLVM module does not verify:\n%s", msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(cg.mod);
        cg.mod = NULL;
    } else if (msg) {
        LLVMDisposeMessage(msg);
    }
    for (int i = 0; i < m->nparams * 3; i++) free(cg.pcomp[i]);
    free(cg.pcomp);
    free(cg.pbuf);
    free(cg.best);
    free(cg.bnbuf);
    free(cg.bestbn);
    free(cg.bntable);
    free(cg.vtrain);
    free(cg.veval);
    free(cg.xtrain);
    free(cg.xeval);
    free(cg.kernels);
    free(cg.rt_fn);
    free(cg.rt_ty);
    return cg.mod;
}

void cg_set_fingerprint(LLVMModuleRef mod, const char *text) {
    LLVMValueRef g = LLVMGetNamedGlobal(mod, "nnq.fingerprint");
    if (!g) return;
    char *own = text ? NULL : LLVMPrintModuleToString(mod);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *c = text ? text : own; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    if (own) LLVMDisposeMessage(own);
    LLVMSetInitializer(g, LLVMConstInt(LLVMInt64TypeInContext(LLVMGetModuleContext(mod)), h >> 1, 0));
}

void cg_add_trainer_main(LLVMModuleRef mod) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), p = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
    LLVMTypeRef pp = LLVMPointerType(p, 0);
    LLVMValueRef entry = LLVMGetNamedFunction(mod, "nnq_main");
    assert(entry);
    LLVMTypeRef tm_params[3] = {i32, pp, p};
    LLVMTypeRef tm_ty = LLVMFunctionType(i32, tm_params, 3, 0);
    LLVMValueRef tmain = LLVMAddFunction(mod, "nnq_trainer_main", tm_ty);
    LLVMTypeRef main_params[2] = {i32, pp};
    LLVMValueRef mainf = LLVMAddFunction(mod, "main", LLVMFunctionType(i32, main_params, 2, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, mainf, "entry"));
    LLVMValueRef args[3] = {LLVMGetParam(mainf, 0), LLVMGetParam(mainf, 1), LLVMBuildBitCast(b, entry, p, "")};
    LLVMBuildRet(b, LLVMBuildCall2(b, tm_ty, tmain, args, 3, ""));
    LLVMDisposeBuilder(b);
}
