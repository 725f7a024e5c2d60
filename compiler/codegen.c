/* codegen.c — LLVM IR generation for a whole training program, through the LLVM C API:
 * the module's structure, the same for every target; what differs between targets
 * (memory, each op's code, the fused kernels' loops, a run's setup) is asked of
 * cg->target (target.h; the CPU's is target_cpu.c).
 *
 * Requires: a verified IrModule with autodiff and fused kernels, planned (memplan), and
 * a TrainConfig.
 * Produces: one LLVM module with
 *   - a buffer (the target's) for every parameter array (weight, hard, grad, aux/m/v
 *     components), batch-norm state, the batch and the arena of IR values (sized for
 *     the batch, laid out by memplan.c);
 *   - @train_step(i64 n) and @eval_batch(i64 n, i32 hard, i32 calibrate) -> float: a
 *     walk over the IR, each computing instruction the target's code, each --profile
 *     phase marked;
 *   - per fused kernel (fuse.c) its per-element code in the target's parallel loop,
 *     run for each parameter by nnq_main's tables (with export_internals also a
 *     named entry kernel.NAME.PARAM(scalars...) per parameter, for tests);
 *   - @calibrate(run) and @evaluate(run, ds, start, count, hard) -> double accuracy;
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>

#include "nnq_rt.h"
#include "rt_table.h"
#include "target.h"

/* ---------- helpers (target.h declares those a target uses) ---------- */

static LLVMValueRef cf64(Cg *cg, double v) { return LLVMConstReal(cg->tf64, v); }

LLVMValueRef cg_rt_call(Cg *cg, const char *name, LLVMValueRef *args, int nargs) {
    const int *at = names_find(&cg->rt_names, name);
    assert(at && "runtime function missing from abi.def");
    int i = *at;
    assert(rt_table[i].nargs == nargs);
    /* Pointer arguments are declared i8*: cast whatever we have. */
    for (int k = 0; k < nargs; k++)
        if (rt_table[i].args[k] == RT_P && LLVMGetTypeKind(LLVMTypeOf(args[k])) == LLVMPointerTypeKind)
            args[k] = LLVMBuildBitCast(cg->b, args[k], cg->tp, "");
    return LLVMBuildCall2(cg->b, cg->rt_ty[i], cg->rt_fn[i], args, (unsigned)nargs, "");
}

static LLVMValueRef const_array(Cg *cg, LLVMTypeRef elem, const LLVMValueRef *vals, int n, const char *name);

/* LLVMArrayType counts elements in 32 bits (LLVMArrayType2, 64, came with LLVM 17): a
 * longer buffer (batch.x of 784 floats a sample at batch 10^9, or a large batch's arena:
 * 2^32 floats are 16 GiB) is an array of arrays of 2^20 elements, rounded up. Cut to 32
 * bits instead, its type was smaller than the code that addresses it. */
static LLVMTypeRef global_type(LLVMTypeRef elem, int64_t count) {
    if (count <= (int64_t)UINT32_MAX) return LLVMArrayType(elem, (unsigned)count);
    int64_t rows = (count + (1 << 20) - 1) >> 20;
    assert(rows <= (int64_t)UINT32_MAX);
    return LLVMArrayType(LLVMArrayType(elem, 1u << 20), (unsigned)rows);
}

LLVMValueRef cg_global(Cg *cg, const char *name, int64_t count, LLVMTypeRef elem) {
    if (count < 1) count = 1;
    LLVMTypeRef at = global_type(elem, count);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, at, name);
    LLVMSetInitializer(g, LLVMConstNull(at));
    if (!cg->export_internals) LLVMSetLinkage(g, LLVMInternalLinkage);
    LLVMSetAlignment(g, 64);
    return g;
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    assert(id);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &ty, 1);
    return LLVMBuildCall2(cg->b, fty, f, args, (unsigned)n, "");
}

/* tanh through exp, so the loop vectorizer can use SIMD exp: with t = exp(-2|x|),
 * tanh(x) = sign(x) (1 - t) / (1 + t). Absolute error below 1e-7 (relative error grows
 * only for |x| < 1e-3, where the value itself is that small); libm's tanhf stayed a
 * scalar call and made shifted-tanh epochs ten times slower. */
static LLVMValueRef tanh_f32(Cg *cg, LLVMValueRef x) {
    LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", cg->tf32, &x, 1);
    LLVMValueRef t = cg_exp_f32(cg, LLVMBuildFMul(cg->b, ax, LLVMConstReal(cg->tf32, -2.0), ""));
    LLVMValueRef one = LLVMConstReal(cg->tf32, 1.0);
    LLVMValueRef r = LLVMBuildFDiv(cg->b, LLVMBuildFSub(cg->b, one, t, ""), LLVMBuildFAdd(cg->b, one, t, ""), "");
    LLVMTypeRef ty = cg->tf32;
    unsigned id = LLVMLookupIntrinsicID("llvm.copysign", 13);
    LLVMValueRef args[2] = {r, x};
    return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, &ty, 1),
                          LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1), args, 2, "");
}

static LLVMValueRef fmuladd(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return cg_intrinsic(cg, "llvm.fmuladd", cg->tf32, args, 3);
}

/* ln 2 in two parts (Cody and Waite), for exp's reduction and log's reconstruction:
 * LN2_HI has 9 significant bits, so n * LN2_HI is exact for |n| < 2^15. */
static const double LN2_HI = 0.693359375, LN2_LO = -2.12194440e-4;

/* exp, inline: straight-line code the loop vectorizer widens to any vector width, with
 * no call. (Through libmvec, LLVM 14 knows only the 8-wide AVX2 variant: it held the
 * PMF update kernels to 256 bits and spilled every live vector around four calls per
 * iteration, which made them three times slower than the memory they move.)
 *   n = round(x log2 e), by the 1.5 * 2^23 trick: the sum's low bits are n;
 *   r = x - n ln 2, in two parts (n * LN2_HI is exact);
 *   exp(r) on |r| <= ln2/2 by Cephes' degree-7 polynomial, within 2 ulp of expf;
 *   2^n built in the exponent field, as 2^(n-1) * 2 so that n = 128 still overflows
 *   to +inf only where exp does (x > 88.72).
 * x is first held to [-86.9, 88.8]: below, the result would leave the normal range
 * through slow denormal arithmetic that dominated training once beta was large
 * (exp(-86.9) ~ 2e-38 differs from the true value by less than that); above, exp is
 * +inf anyway. NaN passes both comparisons and comes out NaN. */
LLVMValueRef cg_exp_f32(Cg *cg, LLVMValueRef a) {
    LLVMBuilderRef b = cg->b;
    LLVMValueRef lo = cf32(cg, -86.9), hi = cf32(cg, 88.8);
    LLVMValueRef x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, a, lo, ""), lo, a, "");
    x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, hi, ""), hi, x, "");
    LLVMValueRef magic = cf32(cg, 12582912.0); /* 1.5 * 2^23 */
    LLVMValueRef t = fmuladd(cg, x, cf32(cg, 1.44269504088896341), magic);
    LLVMValueRef n = LLVMBuildFSub(b, t, magic, "");
    LLVMValueRef r = fmuladd(cg, n, cf32(cg, -LN2_HI), x);
    r = fmuladd(cg, n, cf32(cg, -LN2_LO), r);
    static const double c[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                               4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
    LLVMValueRef p = cf32(cg, c[0]);
    for (int i = 1; i < 6; i++) p = fmuladd(cg, p, r, cf32(cg, c[i]));
    p = fmuladd(cg, p, LLVMBuildFMul(b, r, r, ""), LLVMBuildFAdd(b, r, cf32(cg, 1.0), ""));
    LLVMValueRef bits = LLVMBuildBitCast(b, t, cg->ti32, "");
    bits = LLVMBuildShl(b, LLVMBuildAdd(b, bits, LLVMConstInt(cg->ti32, 126, 0), ""), LLVMConstInt(cg->ti32, 23, 0), "");
    LLVMValueRef scale = LLVMBuildBitCast(b, bits, cg->tf32, "");
    return LLVMBuildFMul(b, LLVMBuildFMul(b, p, scale, ""), cf32(cg, 2.0), "");
}

/* log, inline like exp, for the same reasons and one more: llvm.log became libmvec's
 * SIMD log in vectorized loops and libm's logf elsewhere, which round differently, so
 * -O0 (no vectorizer) trained another model than -O2 wherever a projection took a log
 * or an atanh (md_tanh's move: found by e2e_model_zoo, 2026-12-07). Here every loop,
 * scalar or vector, at any optimization level, computes the same bits.
 *   a denormal x is first scaled by 2^23 (its exponent corrected below);
 *   x = 2^e m with m in [sqrt(1/2), sqrt(2)), read from the bits, and f = m - 1 (exact);
 *   log x = e ln 2 + f - f^2 / 2 + f^3 P(f), Cephes' degree-8 P, ln 2 in two parts.
 * Within 1 ulp of log over the positive floats (test_compiler's test_jit_log); 0 gives
 * -inf, +inf gives +inf, a negative x or NaN gives NaN. */
LLVMValueRef cg_log_f32(Cg *cg, LLVMValueRef a) {
    LLVMBuilderRef b = cg->b;
    LLVMValueRef tiny = LLVMBuildFCmp(b, LLVMRealOLT, a, cf32(cg, 1.17549435e-38), ""); /* below the normals */
    LLVMValueRef x = LLVMBuildSelect(b, tiny, LLVMBuildFMul(b, a, cf32(cg, 8388608.0), ""), a, "");
    LLVMValueRef bits = LLVMBuildBitCast(b, x, cg->ti32, "");
    LLVMValueRef bias = LLVMBuildSelect(b, tiny, LLVMConstInt(cg->ti32, 126 + 23, 0), LLVMConstInt(cg->ti32, 126, 0), "");
    LLVMValueRef e = LLVMBuildSub(b, LLVMBuildLShr(b, bits, LLVMConstInt(cg->ti32, 23, 0), ""), bias, "");
    LLVMValueRef mbits = LLVMBuildOr(b, LLVMBuildAnd(b, bits, LLVMConstInt(cg->ti32, 0x007fffff, 0), ""),
                                     LLVMConstInt(cg->ti32, 0x3f000000, 0), "");
    LLVMValueRef m = LLVMBuildBitCast(b, mbits, cg->tf32, ""); /* x = 2^e m, m in [1/2, 1) */
    LLVMValueRef low = LLVMBuildFCmp(b, LLVMRealOLT, m, cf32(cg, 0.707106781186547524), "");
    e = LLVMBuildSelect(b, low, LLVMBuildSub(b, e, LLVMConstInt(cg->ti32, 1, 0), ""), e, "");
    LLVMValueRef f = LLVMBuildFSub(b, LLVMBuildSelect(b, low, LLVMBuildFAdd(b, m, m, ""), m, ""), cf32(cg, 1.0), "");
    LLVMValueRef fe = LLVMBuildSIToFP(b, e, cg->tf32, "");
    static const double c[] = {7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
                               -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1};
    LLVMValueRef p = cf32(cg, c[0]);
    for (int i = 1; i < 9; i++) p = fmuladd(cg, p, f, cf32(cg, c[i]));
    LLVMValueRef z = LLVMBuildFMul(b, f, f, "");
    LLVMValueRef y = LLVMBuildFMul(b, f, LLVMBuildFMul(b, z, p, ""), "");
    y = fmuladd(cg, fe, cf32(cg, LN2_LO), y);
    y = fmuladd(cg, z, cf32(cg, -0.5), y);
    LLVMValueRef r = fmuladd(cg, fe, cf32(cg, LN2_HI), LLVMBuildFAdd(b, f, y, ""));
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, a, cf32(cg, INFINITY), ""), a, r, "");
    r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, a, cf32(cg, 0.0), ""), cf32(cg, -INFINITY), r, "");
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGE, a, cf32(cg, 0.0), ""), r, cf32(cg, NAN), "");
}

LLVMValueRef cg_local(Cg *cg, LLVMTypeRef ty, LLVMValueRef init, const char *name) {
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

/* ---------- loops ---------- */

Loop cg_loop_begin_step(Cg *cg, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step, const char *name) {
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

Loop cg_loop_begin(Cg *cg, LLVMValueRef start, LLVMValueRef end, const char *name) {
    return cg_loop_begin_step(cg, start, end, LLVMConstInt(LLVMTypeOf(start), 1, 0), name);
}

static LLVMValueRef loop_back_edge(Cg *cg, Loop *l) {
    LLVMValueRef next = LLVMBuildAdd(cg->b, l->iv, l->step, "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMValueRef br = LLVMBuildBr(cg->b, l->header);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
    return br;
}

void cg_loop_end(Cg *cg, Loop *l) {
    loop_back_edge(cg, l);
}

/* The back edge's llvm.loop metadata, llvm.loop.interleave.count `count` (which LLVM's
 * vectorizer honours where the pipeline leaves interleaving off: below -O3, jit.c), in
 * a node whose first operand is itself (the loop's ID, made through a temporary node). */
void cg_loop_end_interleaved(Cg *cg, Loop *l, int count) {
    LLVMValueRef br = loop_back_edge(cg, l);
    LLVMMetadataRef on[2] = {LLVMMDStringInContext2(cg->ctx, "llvm.loop.interleave.count", 26),
                             LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(cg->ctx), (unsigned)count, 0))};
    LLVMMetadataRef ops[2] = {LLVMTemporaryMDNode(cg->ctx, NULL, 0), LLVMMDNodeInContext2(cg->ctx, on, 2)};
    LLVMMetadataRef id = LLVMMDNodeInContext2(cg->ctx, ops, 2);
    LLVMMetadataReplaceAllUsesWith(ops[0], id);
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(cg->ctx, "llvm.loop", 9), LLVMMetadataAsValue(cg->ctx, id));
}

void cg_if_begin(Cg *cg, LLVMValueRef cond, LLVMBasicBlockRef *join) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "then");
    *join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "join");
    LLVMBuildCondBr(cg->b, cond, then, *join);
    LLVMPositionBuilderAtEnd(cg->b, then);
}

void cg_if_end(Cg *cg, LLVMBasicBlockRef join) {
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

void cg_attribute(Cg *cg, LLVMValueRef fn, unsigned index, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

LLVMValueRef cg_new_function(Cg *cg, const char *name, LLVMTypeRef ty, bool external) {
    LLVMValueRef f = LLVMAddFunction(cg->mod, name, ty);
    if (!external && !cg->export_internals) LLVMSetLinkage(f, LLVMInternalLinkage);
    cg->fn = f;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, f, "entry");
    LLVMPositionBuilderAtEnd(cg->b, entry);
    return f;
}

/* Orchestration code that runs once per batch or epoch (the epoch loop, evaluate,
 * calibrate, and train_step and eval_batch, which call one kernel after another) is not
 * worth optimizing: optnone (with the noinline it requires) keeps the optimizer and the
 * instruction selector's slow path away from it. Compile time falls (train_step and
 * eval_batch: VGG-16's cold compile 0.51-0.64 -> 0.44-0.47 s); the per-element loops it
 * calls are separate functions (the pool's bodies, the loss) and optimized as before.
 * Where there is enough of it, jit.c compiles it as an object of its own, with LLVM's
 * unoptimizing back end. */
static void mark_cold(Cg *cg, LLVMValueRef fn) {
    cg_attribute(cg, fn, LLVMAttributeFunctionIndex, "optnone");
    cg_attribute(cg, fn, LLVMAttributeFunctionIndex, "noinline");
}

/* ---------- buffers ---------- */

/* Tensor buffers come from the target (its .buffer); the host's scalars are globals. */
/* Does the kernel read or write buffer `buf`, component `comp`? (A parameter's moments
 * and carried values exist only where its kernels name them: fuse.c keeps one set of
 * moments for opposite gradients, and carries few values or none.) */
static bool kernel_names(const IrKernel *k, IrBufKind buf, int comp) {
    for (int i = 0; i < k->nin; i++)
        if (k->in[i].buf == buf && k->in[i].comp == comp) return true;
    for (int i = 0; i < k->nout; i++)
        if (k->out[i].buf == buf && k->out[i].comp == comp) return true;
    return false;
}

/* A parameter's components of kind IRB_AUX + kind (cg->pcomp[param * CG_PCOMP_KINDS +
 * kind]): aux, m and v one per aux array, carried values up to IR_MAX_CARRY. */
static int pcomp_count(const IrParam *p, int kind) { return IRB_AUX + kind == IRB_CARRY ? IR_MAX_CARRY : p->proj->ncomp; }

static void make_buffers(Cg *cg) {
    const IrModule *m = cg->m;
    Arena *ar = m->arena;
    LLVMValueRef (*buffer)(Cg *, const char *, int64_t, LLVMTypeRef) = cg->target->buffer;
    int64_t in_elems = ir_shape_elems(&m->input);
    cg->x = buffer(cg, "batch.x", cg->batch * in_elems, cg->tf32);
    cg->y = buffer(cg, "batch.y", cg->batch, cg->ti32);
    cg->pbuf = calloc(m->nparams, sizeof *cg->pbuf);
    cg->pcomp = calloc(m->nparams * CG_PCOMP_KINDS, sizeof(LLVMValueRef *));
    cg->best = calloc(m->nparams, sizeof *cg->best);
    bool use_m = train_keeps_m(cg->tc), use_v = train_keeps_v(cg->tc);
    for (int i = 0; i < m->nparams; i++) {
        const IrParam *p = &m->params[i];
        int K = p->proj->ncomp;
        cg->pbuf[i][IRB_WEIGHT] = buffer(cg, arena_printf(ar, "%s.weight", p->name), p->count, cg->tf32);
        cg->pbuf[i][IRB_HARD] = buffer(cg, arena_printf(ar, "%s.hard", p->name), p->count, cg->tf32);
        cg->pbuf[i][IRB_GRAD] = buffer(cg, arena_printf(ar, "%s.grad", p->name), p->count, cg->tf32);
        for (int kind = 0; kind < CG_PCOMP_KINDS; kind++) {
            int n = pcomp_count(p, kind);
            LLVMValueRef *comps = calloc(n, sizeof(LLVMValueRef));
            cg->pcomp[i * CG_PCOMP_KINDS + kind] = comps;
            if ((kind == 1 && !use_m) || (kind == 2 && !use_v)) continue;
            for (int c = 0; c < n; c++)
                if (kind == 0 || kernel_names(&m->kernels[i][0], IRB_AUX + kind, c))
                    comps[c] = buffer(cg, arena_printf(ar, "%s.%s%d", p->name, ir_buf_name(IRB_AUX + kind), c), p->count, cg->tf32);
        }
        if (cg->tc->keep_best)
            cg->best[i][0] = buffer(cg, arena_printf(ar, "%s.best", p->name), p->count * K, cg->tf32);
    }
    {
        LLVMValueRef *ptrs = calloc(2 * m->nparams + 1, sizeof *ptrs), *counts = calloc(m->nparams + 1, sizeof *counts);
        for (int i = 0; i < m->nparams; i++) {
            ptrs[i] = LLVMConstBitCast(cg->pbuf[i][IRB_GRAD], cg->tp);
            counts[i] = ci64(cg, m->params[i].count);
        }
        cg->grad_table = const_array(cg, cg->tp, ptrs, m->nparams, "grads");
        cg->grad_counts = const_array(cg, cg->ti64, counts, m->nparams, "grad.counts");
        for (int i = 0; i < m->nparams; i++)
            for (int h = 0; h < 2; h++) ptrs[2 * i + h] = LLVMConstBitCast(cg->pbuf[i][h ? IRB_HARD : IRB_WEIGHT], cg->tp);
        cg->weight_table = const_array(cg, cg->tp, ptrs, 2 * m->nparams, "weights");
        free(ptrs);
        free(counts);
    }
    cg->fingerprint = LLVMAddGlobal(cg->mod, cg->ti64, "nnq.fingerprint");
    LLVMSetInitializer(cg->fingerprint, ci64(cg, 0));
    LLVMSetLinkage(cg->fingerprint, LLVMInternalLinkage);
    cg->bnbuf = calloc(m->nbns, sizeof *cg->bnbuf);
    cg->bestbn = calloc(m->nbns, sizeof(LLVMValueRef));
    for (int i = 0; i < m->nbns; i++) {
        static const char *const bn[CG_BN_BUFS] = {"running_mean", "running_var", "mean", "invstd", "sum1", "sum2",
                                                   "hard_mean", "hard_var", "bias_grad"};
        for (int k = 0; k < CG_BN_BUFS; k++)
            cg->bnbuf[i][k] = buffer(cg, arena_printf(ar, "%s.%s", m->bns[i].name, bn[k]), m->bns[i].features, cg->tf32);
        if (cg->tc->keep_best)
            cg->bestbn[i] = buffer(cg, arena_printf(ar, "%s.best", m->bns[i].name), 2 * m->bns[i].features, cg->tf32);
    }
    /* IR values and scratch: one arena shared by train_step and eval_batch (they never
     * run at the same time), laid out by memplan.c; the values read after a call
     * (loss, correct, logits) get buffers of their own. */
    cg->dropout_step = cg_global(cg, "dropout.step", 1, cg->ti64);
    cg->mpi_size = cg_global(cg, "mpi.size", 1, cg->ti64); /* 1 until nnq_main asks the runtime */
    LLVMValueRef one = ci64(cg, 1);
    LLVMSetInitializer(cg->mpi_size, LLVMConstArray(cg->ti64, &one, 1));
    cg->mpi_base = cg_global(cg, "mpi.base", 1, cg->ti64);
    assert(m->planned && m->plan_batch == cg->batch); /* the memplan pass */
    const MemPlan *plans = m->plan;
    int64_t arena_size = plans[0].size > plans[1].size ? plans[0].size : plans[1].size;
    LLVMValueRef arena = buffer(cg, "arena", arena_size, cg->tf32);
    LLVMValueRef arena_f32 = LLVMConstBitCast(arena, LLVMPointerType(cg->tf32, 0)); /* typed pointers (LLVM 14) */
#define AT(off) LLVMConstInBoundsGEP2(cg->tf32, arena_f32, (LLVMValueRef[]){ci64(cg, (off))}, 1)
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
            else v[i] = buffer(cg, arena_printf(ar, "%s.v%d", f->name, i), memplan_value_elems(in, cg->batch), cg->tf32);
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

/* ---------- train_step and eval_batch: a walk over the IR ---------- */

/* Enters a --profile phase (phases.def). */
static void phase(Cg *cg, int p) { cg_rt_call(cg, "nnq_rt_phase", (LLVMValueRef[]){ci32(cg, p)}, 1); }

/* A parameter's or a reshape's value in the function being emitted. In eval, the
 * weights or the hard weights: loaded from a table at 2 p + hard rather than a select.
 * Selects of addresses on one flag, a hundred of them in one function, cost LLVM's
 * instruction selection 0.19 s for MobileNetV2's eval_batch (its scheduler moving the
 * flag between them); the loads, 0.04 s. */
static void bind_alias(Cg *cg, FnCtx *fc, int i) {
    const IrInst *in = &fc->f->insts[i];
    if (in->op == IR_RESHAPE) {
        fc->val[i] = fc->val[in->args[0]];
        return;
    }
    fc->val[i] = as_ptr(cg, cg->pbuf[in->attr[0]][IRB_WEIGHT], cg->tf32);
    if (fc->hard) {
        LLVMValueRef at = LLVMBuildAdd(cg->b, ci64(cg, 2 * (int64_t)in->attr[0]),
                                       LLVMBuildZExt(cg->b, fc->hard, cg->ti64, ""), "");
        fc->val[i] = as_ptr(cg, LLVMBuildLoad2(cg->b, cg->tp, gep(cg, cg->tp, cg->weight_table, at), ""), cg->tf32);
    }
}

/* A step is cut into parts of at most this many instructions, each a function of its
 * own that the step calls in turn: LLVM's code generation is superlinear in a function's
 * size (a chain of 8,000 relus as one function took 7.4 s). */
#define CG_PART_INSTS 256

/* Ends the part being emitted (if any) and starts the next: a function `outer`.partK of
 * (n, ntot, hard, calib) that `outer` calls at the end of block `at` (the caller binds
 * the earlier parameters and reshapes again inside it; every other value is a global
 * buffer, the same in every part). */
static void next_part(Cg *cg, LLVMValueRef outer, LLVMBasicBlockRef at, const LLVMValueRef *args, int k) {
    if (k > 0) LLVMBuildRetVoid(cg->b);
    LLVMTypeRef ps[4] = {cg->ti64, cg->ti64, cg->ti32, cg->ti32};
    LLVMTypeRef ty = LLVMFunctionType(cg->tv, ps, 4, 0);
    char name[96];
    snprintf(name, sizeof name, "%s.part%d", LLVMGetValueName(outer), k);
    LLVMValueRef part = cg_new_function(cg, name, ty, false);
    mark_cold(cg, part);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, at);
    LLVMBuildCall2(cg->b, ty, part, (LLVMValueRef *)args, 4, "");
    LLVMPositionBuilderAtEnd(cg->b, entry);
}

/* last[j]: the last instruction that reads value j, directly or as an operand of an
 * instruction it reads (the ops that point at a forward instruction read its operands:
 * ir_ops.def's ARG1 column), a reshape's reads counted for what it renames. */
static int *last_reads(const IrFunc *f) {
    int *last = malloc(sizeof *last * ((size_t)f->n + 1));
    for (int j = 0; j < f->n; j++) last[j] = j;
    for (int k = 0; k < f->n; k++)
        for (int a = 0; a < ir_op_nargs(f->insts[k].op); a++) {
            int v = f->insts[k].args[a];
            if (v < 0) continue;
            last[v] = k;
            for (int b = 0; b < ir_op_nargs(f->insts[v].op); b++)
                if (f->insts[v].args[b] >= 0) last[f->insts[v].args[b]] = k;
        }
    for (int j = f->n - 1; j >= 0; j--)
        if (f->insts[j].op == IR_RESHAPE && last[f->insts[j].args[0]] < last[j]) last[f->insts[j].args[0]] = last[j];
    return last;
}

/* One function: the source ops' values bound to buffers, every other instruction the
 * target's code, the training step's --profile phases marked; in parts of at most
 * CG_PART_INSTS instructions (next_part), each binding again the parameters and
 * reshapes defined before it that it or a later part reads (all of them, in every
 * part: 2,800 loads of hard weights in one part of a 1,500-layer eval_batch). */
static void emit_func_body(Cg *cg, FnCtx *fc) {
    const IrFunc *f = fc->f;
    int *last = last_reads(f);
    LLVMValueRef outer = cg->fn;
    LLVMBasicBlockRef at = LLVMGetInsertBlock(cg->b);
    FnCtx top = *fc;
    LLVMValueRef args[4] = {fc->n, fc->ntot,
                            fc->hard ? LLVMBuildZExt(cg->b, fc->hard, cg->ti32, "") : ci32(cg, 0),
                            fc->calib ? LLVMBuildZExt(cg->b, fc->calib, cg->ti32, "") : ci32(cg, 0)};
    int cur = -1; /* the training step marks its phases; evaluation is one phase of its own */
    int parts = 0, in_part = CG_PART_INSTS;
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        if (!ir_op_source(in->op) && in->op != IR_PARAM && in->op != IR_RESHAPE && in_part >= CG_PART_INSTS &&
            !fc->deferred_to) {
            next_part(cg, outer, at, args, parts++);
            LLVMValueRef fn = cg->fn;
            fc->n = LLVMGetParam(fn, 0), fc->ntot = LLVMGetParam(fn, 1);
            fc->hard = top.hard ? LLVMBuildICmp(cg->b, LLVMIntNE, LLVMGetParam(fn, 2), ci32(cg, 0), "hard") : NULL;
            fc->calib = top.calib ? LLVMBuildICmp(cg->b, LLVMIntNE, LLVMGetParam(fn, 3), ci32(cg, 0), "calib") : NULL;
            for (int j = 0; j < i; j++)
                if ((f->insts[j].op == IR_PARAM || f->insts[j].op == IR_RESHAPE) && last[j] >= i) bind_alias(cg, fc, j);
            in_part = 0;
        }
        if (!top.hard && !ir_op_source(in->op) && ir_op_phase(in->op) != cur)
            phase(cg, cur = ir_op_phase(in->op));
        if (in->op == IR_PARAM || in->op == IR_RESHAPE) {
            bind_alias(cg, fc, i);
            continue;
        }
        if (ir_op_source(in->op)) continue; /* input, labels, param_grad: make_buffers bound them */
        assert(cg->target->ops[in->op] && "the target has no code for this op");
        cg->target->ops[in->op](cg, fc, i, fc->val[i]);
        in_part++;
    }
    assert(!fc->deferred_to && "a deferred call was not made");
    free(last);
    if (parts > 0) LLVMBuildRetVoid(cg->b);
    cg->fn = outer;
    LLVMPositionBuilderAtEnd(cg->b, at);
    fc->n = top.n, fc->ntot = top.ntot, fc->hard = top.hard, fc->calib = top.calib;
}

static void emit_tensor_functions(Cg *cg) {
    const IrModule *m = cg->m;
    /* void train_step(i64 n) */
    cg->train_step_ty = LLVMFunctionType(cg->tv, &cg->ti64, 1, 0);
    cg->train_step = cg_new_function(cg, "train_step", cg->train_step_ty, false);
    mark_cold(cg, cg->train_step);
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
    cg->eval_batch = cg_new_function(cg, "eval_batch", cg->eval_batch_ty, false);
    mark_cold(cg, cg->eval_batch);
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
    case IRB_AUX:
    case IRB_M:
    case IRB_V:
    case IRB_CARRY: return cg->pcomp[param * CG_PCOMP_KINDS + (io->buf - IRB_AUX)][io->comp];
    default: return cg->pbuf[param][io->buf];
    }
}

static LLVMValueRef bool_f(Cg *cg, LLVMValueRef c) { return LLVMBuildUIToFP(cg->b, c, cg->tf32, ""); }
static LLVMValueRef truth(Cg *cg, LLVMValueRef v) { return LLVMBuildFCmp(cg->b, LLVMRealUNE, v, cf32(cg, 0), ""); }

/* One kernel's scalar expressions being emitted: the value of each node (memo), its
 * per-element inputs and its scalars. */
typedef struct SxEmit {
    LLVMValueRef *memo;
    const LLVMValueRef *inputs, *scalars;
} SxEmit;

/* The value of scalar expression `id` (memoized). A division is one: fuse.c has
 * written divisions by a shared divisor as products with its reciprocal
 * (sx_reciprocals). */
static LLVMValueRef emit_sx(Cg *cg, SxEmit *e, int id) {
    LLVMValueRef *memo = e->memo;
    if (memo[id]) return memo[id];
    const SxNode *n = sx_node(cg->m->prog->pool, id);
    LLVMBuilderRef b = cg->b;
    LLVMValueRef a = NULL, c = NULL, r = NULL;
    if (n->op != SX_CONST && n->op != SX_INPUT) {
        assert(n->op != SX_VAR);
        a = emit_sx(cg, e, n->a);
        if (n->b >= 0) c = emit_sx(cg, e, n->b);
    }
    switch (n->op) {
    case SX_CONST: r = cf32(cg, n->value); break;
    case SX_INPUT:
        r = n->slot >= IR_SCALAR_SLOT(0) ? e->scalars[n->slot - IR_SCALAR_SLOT(0)] : e->inputs[n->slot];
        break;
    case SX_ADD: r = LLVMBuildFAdd(b, a, c, ""); break;
    case SX_SUB: r = LLVMBuildFSub(b, a, c, ""); break;
    case SX_MUL: r = LLVMBuildFMul(b, a, c, ""); break;
    case SX_DIV: r = LLVMBuildFDiv(b, a, c, ""); break;
    case SX_NEG: r = LLVMBuildFNeg(b, a, ""); break;
    case SX_EXP: r = cg_exp_f32(cg, a); break;
    case SX_LOG: r = cg_log_f32(cg, a); break;
    case SX_SQRT: r = cg_intrinsic(cg, "llvm.sqrt", cg->tf32, &a, 1); break;
    case SX_ABS: r = cg_intrinsic(cg, "llvm.fabs", cg->tf32, &a, 1); break;
    case SX_TANH: r = tanh_f32(cg, a); break;
    case SX_ATANH: { /* atanh(x) = log((1 + x) / (1 - x)) / 2, vectorizable like exp */
        LLVMValueRef q = LLVMBuildFDiv(b, LLVMBuildFAdd(b, cf32(cg, 1), a, ""), LLVMBuildFSub(b, cf32(cg, 1), a, ""), "");
        r = LLVMBuildFMul(b, cg_log_f32(cg, q), cf32(cg, 0.5), "");
        break;
    }
    case SX_MAX: r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGE, a, c, ""), a, c, ""); break;
    case SX_MIN: r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLE, a, c, ""), a, c, ""); break;
    case SX_SELECT: {
        r = LLVMBuildSelect(b, truth(cg, a), c, emit_sx(cg, e, n->c), "");
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

/* A fused kernel's per-element code (the target's CgElemCode): its inputs loaded, its
 * outputs' expressions, the stores; slot[e] is IO entry e's buffer (kernel_buffers),
 * stage[o] output o's stage (kernel_stages). */
typedef struct KernelCode {
    const IrKernel *k;
    const int *slot, *stage;
} KernelCode;

static void kernel_code(Cg *cg, const void *arg, int stage, LLVMValueRef i, const LLVMValueRef *buf,
                        const LLVMValueRef *sc) {
    const KernelCode *kc = arg;
    const IrKernel *k = kc->k;
    LLVMValueRef inputs[IR_KERNEL_MAX_IO], vals[IR_KERNEL_MAX_IO];
    for (int e = 0; e < k->nin; e++) inputs[e] = ldf(cg, buf[kc->slot[e]], i); /* those unused go (DCE) */
    const SxPool *pool = cg->m->prog->pool;
    int count = sx_count(pool);
    SxEmit e = {calloc(count, sizeof(LLVMValueRef)), inputs, sc};
    bool mine[IR_KERNEL_MAX_IO];
    for (int o = 0; o < k->nout; o++) {
        mine[o] = stage < 0 || kc->stage[o] == stage;
        if (stage > 0 && kc->stage[o] < stage) /* an earlier stage's result, as it stored it */
            e.memo[k->out[o].node] = ldf(cg, buf[kc->slot[k->nin + o]], i);
    }
    for (int o = 0; o < k->nout; o++)
        if (mine[o]) vals[o] = emit_sx(cg, &e, k->out[o].node);
    for (int o = 0; o < k->nout; o++)
        if (mine[o]) stf(cg, buf[kc->slot[k->nin + o]], i, vals[o]);
    free(e.memo);
}

/* An op whose latency a chain of them waits on (tens of cycles with the exp's
 * polynomial, the division's and the square root's units). */
static bool long_latency(SxOp op) {
    return op == SX_EXP || op == SX_LOG || op == SX_TANH || op == SX_ATANH || op == SX_SQRT || op == SX_DIV;
}

/* Marks in mark[] every node reachable from id, stopping at the nodes `stop` marks
 * (marked, not entered) below the root. */
static void mark_reach(const SxPool *pool, int id, bool root, const char *stop, char *mark) {
    if (mark[id]) return;
    mark[id] = 1;
    const SxNode *n = sx_node(pool, id);
    if ((stop[id] && !root) || n->op == SX_CONST || n->op == SX_INPUT) return;
    int kids[3] = {n->a, n->b, n->c};
    for (int j = 0; j < 3; j++)
        if (kids[j] >= 0) mark_reach(pool, kids[j], false, stop, mark);
}

/* Stage `stage`'s nodes under outputs' stages st[o]: stop[] the earlier stages' outputs
 * (read back, not computed), mine[] every node its outputs reach through them. */
static void stage_nodes(const SxPool *pool, const IrKernel *k, const int *st, int stage, char *stop, char *mine) {
    for (int o = 0; o < k->nout; o++)
        if (st[o] < stage) stop[k->out[o].node] = 1;
    for (int o = 0; o < k->nout; o++)
        if (st[o] == stage) mark_reach(pool, k->out[o].node, true, stop, mine);
}

/* Whether outputs in stages st[o] (0 .. n - 1) work: every stage waits on a
 * long-latency op, computes nothing another computes (the stages' expressions meet
 * only at the outputs a stage reads back, inputs and constants) and reads no input an
 * earlier stage overwrote. */
static bool stages_work(Cg *cg, const IrKernel *k, const int *slot, const int *st, int n) {
    const SxPool *pool = cg->m->prog->pool;
    int count = sx_count(pool);
    char *mark = calloc(count, 1); /* computed by an earlier stage */
    bool ok = true;
    for (int stage = 0; stage < n && ok; stage++) {
        char *stop = calloc(count, 1), *mine = calloc(count, 1); /* what this stage reads back, computes */
        bool slow = false;
        stage_nodes(pool, k, st, stage, stop, mine);
        for (int id = 0; id < count && ok; id++) {
            if (!mine[id] || stop[id]) continue;
            const SxNode *nd = sx_node(pool, id);
            if (nd->op != SX_CONST && nd->op != SX_INPUT && mark[id]) ok = false; /* computed twice */
            slow |= long_latency(nd->op);
            if (nd->op == SX_INPUT && nd->slot < IR_SCALAR_SLOT(0))
                for (int o = 0; o < k->nout; o++) /* an input an earlier stage overwrote */
                    if (st[o] < stage && slot[k->nin + o] == slot[nd->slot]) ok = false;
            mark[id] = 1;
        }
        ok = ok && slow;
        free(stop);
        free(mine);
    }
    free(mark);
    return ok;
}

/* A kernel's stages: each output's into stage[o]; returns how many (1: all in one
 * loop, stage[o] 0).
 * A parameter's update is one chain of long-latency ops (the projection's exps and
 * divisions for its Jacobian, the optimizer's square roots and divisions, then the
 * projection again on the new values): its loop, one vector of elements after another,
 * waits on the chain with the out-of-order core's scheduler full (llvm-mca: 99% of
 * cycles; binary PMF + Adam, AVX2: 106 cycles a vector of 8). An output computed from
 * other outputs (the new auxiliary values from the optimizer's moments, the new forward
 * weight from them) can go to a later loop over the same block, which reads them back:
 * shorter chains. Stages are the outputs' levels (0: computed from no other output,
 * else one more than the highest of those it is computed from) where that works
 * (stages_work), else two: the highest level and the rest. Every output is the same
 * expression as in one loop, so the bits do not change. */
static int kernel_stages(Cg *cg, const IrKernel *k, const int *slot, int *stage) {
    const SxPool *pool = cg->m->prog->pool;
    int count = sx_count(pool), top = 0;
    char *stop = calloc(count, 1), *mark = calloc(count, 1);
    bool uses[IR_KERNEL_MAX_IO][IR_KERNEL_MAX_IO] = {{false}};
    for (int o = 0; o < k->nout; o++) {
        stage[o] = 0;
        stop[k->out[o].node] = 1;
    }
    for (int o = 0; o < k->nout; o++) {
        memset(mark, 0, count);
        mark_reach(pool, k->out[o].node, true, stop, mark);
        for (int q = 0; q < k->nout; q++) /* a carried value: the new weight's by-product, no stage of its own */
            uses[o][q] = k->out[q].node != k->out[o].node && mark[k->out[q].node] && k->out[q].buf != IRB_CARRY;
    }
    free(stop);
    free(mark);
    for (int pass = 0; pass < k->nout; pass++) /* no output is computed from itself: nout passes settle */
        for (int o = 0; o < k->nout; o++)
            for (int q = 0; q < k->nout; q++)
                if (uses[o][q] && stage[o] < stage[q] + 1) stage[o] = stage[q] + 1;
    for (int o = 0; o < k->nout; o++) top = stage[o] > top ? stage[o] : top;
    if (top > 0 && top < CG_KERNEL_MAX_STAGES && stages_work(cg, k, slot, stage, top + 1)) return top + 1;
    for (int o = 0; o < k->nout; o++) stage[o] = top > 0 && stage[o] == top;
    if (top > 0 && stages_work(cg, k, slot, stage, 2)) return 2;
    for (int o = 0; o < k->nout; o++) stage[o] = 0;
    return 1;
}

/* The target's code for each distinct kernel (same_kernel), shared by every parameter it
 * fits, and each parameter's buffers for it (kernel_args): cg->kernels, which nnq_main's
 * tables hold. With export_internals also a named entry kernel.NAME.PARAM(scalars...)
 * per parameter and kernel that runs it (tests and benchmarks call them); a run has no
 * function per parameter (12,000 at 1,500 layers, each a cost to LLVM). */
static void emit_kernels(Cg *cg) {
    const IrModule *m = cg->m;
    LLVMTypeRef ps[IRS_COUNT];
    for (int i = 0; i < IRS_COUNT; i++) ps[i] = cg->tf32;
    cg->kernel_ty = LLVMFunctionType(cg->tv, ps, IRS_COUNT, 0);
    cg->kernels = calloc(m->nparams * 4, sizeof *cg->kernels);
    int *distinct[4], ndistinct[4] = {0}; /* of each kind, the first parameter of each distinct kernel */
    for (int w = 0; w < 4; w++) distinct[w] = malloc(sizeof(int) * ((size_t)m->nparams + 1));
    for (int p = 0; p < m->nparams; p++) {
        for (int w = 0; w < 4; w++) {
            const IrKernel *k = &m->kernels[p][w];
            IrKernelIO bufs[CG_KERNEL_MAX_BUFS];
            int slot[CG_KERNEL_MAX_BUFS];
            int nb = kernel_buffers(k, bufs, slot);
            char name[256];
            snprintf(name, sizeof name, "kernel.%s.%s", k->name, m->params[p].name);
            int d = 0;
            while (d < ndistinct[w] && !same_kernel(&m->kernels[distinct[w][d]][w], k)) d++;
            LLVMValueRef *use = cg->kernels[p * 4 + w];
            if (d < ndistinct[w]) {
                use[0] = cg->kernels[distinct[w][d] * 4 + w][0];
            } else {
                distinct[w][ndistinct[w]++] = p;
                int stage[CG_KERNEL_MAX_BUFS];
                int stages = kernel_stages(cg, k, slot, stage);
                KernelCode kc = {k, slot, stage};
                use[0] = cg->target->kernel(cg, name, nb, stages, kernel_code, &kc);
            }
            LLVMValueRef addr[CG_KERNEL_MAX_BUFS];
            for (int j = 0; j < nb; j++) addr[j] = kbuf(cg, p, &bufs[j]);
            use[1] = cg->target->kernel_args(cg, name, addr, nb);
            if (cg->export_internals) {
                LLVMValueRef f = cg_new_function(cg, name, cg->kernel_ty, false), sc[IRS_COUNT];
                mark_cold(cg, f);
                for (int i = 0; i < IRS_COUNT; i++) sc[i] = LLVMGetParam(f, (unsigned)i);
                cg->target->kernel_run(cg, use[0], use[1], ci64(cg, m->params[p].count), sc);
                LLVMBuildRetVoid(cg->b);
            }
        }
    }
    for (int w = 0; w < 4; w++) free(distinct[w]);
}

/* ---------- calls by table ----------
 * nnq_main initializes, steps, hardens and saves every parameter, declares a
 * checkpoint's buffers and copies the kept-best model with calls whose arguments are
 * constants, several per parameter or batch norm: as straight-line code, LLVM's
 * instruction selection and register allocation paid for them superlinearly (a model of
 * 1,500 dense layers: nnq_main took 13.6 of the 20 s its module took to compile). Rows
 * gathers such calls' constant arguments, a row per call; rows_begin makes a constant
 * table per argument and starts a loop over the rows that loads them (the caller makes
 * the call, then cg_loop_end): the same calls, in the same order. */
enum { ROWS_MAX_COLS = 10 };
typedef struct Rows {
    int ncols;
    LLVMTypeRef type[ROWS_MAX_COLS];
    LLVMValueRef *cell; /* n rows of ncols, row by row */
    int n, cap;
    LLVMValueRef table[ROWS_MAX_COLS]; /* the columns' tables, made by the first rows_begin */
} Rows;

static void rows_add(Rows *r, const LLVMValueRef *vals) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->cell = realloc(r->cell, sizeof *r->cell * (size_t)r->cap * (size_t)r->ncols);
    }
    for (int c = 0; c < r->ncols; c++) r->cell[(size_t)r->n * (size_t)r->ncols + (size_t)c] = LLVMConstBitCast(vals[c], r->type[c]);
    r->n++;
}

/* (Every row is added before the first rows_begin: a second loop over the same rows
 * reads the tables the first made.) */
static Loop rows_begin(Cg *cg, Rows *r, const char *name, LLVMValueRef *vals) {
    if (!r->table[0]) {
        LLVMValueRef *col = calloc((size_t)r->n + 1, sizeof *col);
        for (int c = 0; c < r->ncols; c++) {
            for (int k = 0; k < r->n; k++) col[k] = r->cell[(size_t)k * (size_t)r->ncols + (size_t)c];
            r->table[c] = const_array(cg, r->type[c], col, r->n, name);
        }
        free(col);
    }
    Loop l = cg_loop_begin(cg, ci64(cg, 0), ci64(cg, r->n), name);
    for (int c = 0; c < r->ncols; c++) vals[c] = LLVMBuildLoad2(cg->b, r->type[c], gep(cg, r->type[c], r->table[c], l.iv), "");
    return l;
}

/* The kernels `which` (0 update, 1 init, 2 hard, 3 soft) of every parameter, in order:
 * a loop over a table of their code, buffers and counts (rows_begin). */
static void all_kernels(Cg *cg, int which, LLVMValueRef *scalars) {
    Rows r = {.ncols = 3, .type = {cg->tp, cg->tp, cg->ti64}};
    for (int p = 0; p < cg->m->nparams; p++) {
        const LLVMValueRef *use = cg->kernels[p * 4 + which];
        rows_add(&r, (LLVMValueRef[]){use[0], use[1], ci64(cg, cg->m->params[p].count)});
    }
    if (r.n > 0) {
        LLVMValueRef v[3];
        Loop l = rows_begin(cg, &r, "kernels", v);
        cg->target->kernel_run(cg, v[0], v[1], v[2], scalars);
        cg_loop_end(cg, &l);
    }
    free(r.cell);
}

/* A parameter's init and soft kernels (code, buffers), four columns of a table's row. */
static void kernels_init_soft(Cg *cg, int p, LLVMValueRef *cols) {
    for (int k = 0; k < 2; k++) {
        cols[2 * k] = cg->kernels[p * 4 + (k ? 3 : 1)][0];
        cols[2 * k + 1] = cg->kernels[p * 4 + (k ? 3 : 1)][1];
    }
}

/* A parameter's initialization from the w0 draw in its grad buffer: init (w0 -> aux),
 * then soft (aux -> the forward weight; fuse.c), with beta in the scalars; `k` the four
 * columns of kernels_init_soft loaded from a table, `count` the parameter's elements. */
static void init_param_at(Cg *cg, const LLVMValueRef *k, LLVMValueRef count, LLVMValueRef *scalars) {
    cg->target->kernel_run(cg, k[0], k[1], count, scalars);
    cg->target->kernel_run(cg, k[2], k[3], count, scalars);
}

/* Every batch norm's statistics buffer `k` (cg->bnbuf[i][k]) set to v, by a table. */
static void bn_fill(Cg *cg, int k, float v) {
    const IrModule *m = cg->m;
    Rows r = {.ncols = 2, .type = {cg->tp, cg->ti64}};
    for (int i = 0; i < m->nbns; i++) rows_add(&r, (LLVMValueRef[]){cg->bnbuf[i][k], ci64(cg, m->bns[i].features)});
    if (r.n > 0) {
        LLVMValueRef t[2];
        Loop l = rows_begin(cg, &r, "bn.fill", t);
        Loop c = cg_loop_begin(cg, ci64(cg, 0), t[1], "chan");
        stf(cg, t[0], c.iv, cf32(cg, v));
        cg_loop_end(cg, &c);
        cg_loop_end(cg, &l);
    }
    free(r.cell);
}

/* ---------- evaluate(run, ds, start, count, hard) -> accuracy ---------- */

/* calibrate(run): the hard network's batch-norm statistics, averaged over the first
 * calib.batches batches of the training data (in order, not augmented) run through the
 * hard network with batch statistics; with none, the running statistics. */
static void emit_calibrate(Cg *cg) {
    const IrModule *m = cg->m;
    LLVMTypeRef ft = LLVMFunctionType(cg->tv, &cg->tp, 1, 0);
    cg->calibrate_ty = ft;
    cg->calibrate = cg_new_function(cg, "calibrate", ft, false);
    mark_cold(cg, cg->calibrate);
    LLVMValueRef run = LLVMGetParam(cg->fn, 0);
    LLVMBuilderRef b = cg->b;
    cg->calib_ds = cg_global(cg, "calib.ds", 1, cg->ti32);
    cg->calib_batches = cg_global(cg, "calib.batches", 1, cg->ti64);
    phase(cg, NNQ_PHASE_EVAL);
    LLVMValueRef K = LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->calib_batches, cg->ti64), "K");
    LLVMValueRef ds = LLVMBuildLoad2(b, cg->ti32, as_ptr(cg, cg->calib_ds, cg->ti32), "ds");
    /* per batch norm: its hard mean and variance (6, 7), running ones (0, 1), features */
    Rows r = {.ncols = 5, .type = {cg->tp, cg->tp, cg->tp, cg->tp, cg->ti64}};
    for (int i = 0; i < m->nbns; i++)
        rows_add(&r, (LLVMValueRef[]){cg->bnbuf[i][6], cg->bnbuf[i][7], cg->bnbuf[i][0], cg->bnbuf[i][1],
                                      ci64(cg, m->bns[i].features)});
    LLVMValueRef t[5];
    if (r.n > 0) {
        Loop z = rows_begin(cg, &r, "calib.zero", t);
        for (int k = 0; k < 2; k++)
            LLVMBuildMemSet(b, t[k], LLVMConstInt(cg->ti8, 0, 0), LLVMBuildMul(b, t[4], ci64(cg, 4), ""), 4);
        cg_loop_end(cg, &z);
    }
    Loop l = cg_loop_begin(cg, ci64(cg, 0), K, "calib");
    LLVMValueRef start = LLVMBuildMul(b, l.iv, ci64(cg, cg->batch), "");
    cg_rt_call(cg, "nnq_rt_data_batch", (LLVMValueRef[]){run, ds, LLVMConstNull(cg->tp), start, ci64(cg, cg->batch), cg->x, cg->y, ci32(cg, 0)}, 8);
    LLVMBuildCall2(b, cg->eval_batch_ty, cg->eval_batch, (LLVMValueRef[]){ci64(cg, cg->batch), ci32(cg, 1), ci32(cg, 1)}, 3, "");
    cg_loop_end(cg, &l);
    LLVMValueRef none = LLVMBuildICmp(b, LLVMIntEQ, K, ci64(cg, 0), "");
    LLVMValueRef kf = LLVMBuildSIToFP(b, LLVMBuildSelect(b, none, ci64(cg, 1), K, ""), cg->tf32, "");
    if (r.n > 0) {
        Loop a = rows_begin(cg, &r, "calib.average", t);
        Loop c = cg_loop_begin(cg, ci64(cg, 0), t[4], "chan");
        for (int k = 0; k < 2; k++) {
            LLVMValueRef avg = LLVMBuildFDiv(b, ldf(cg, t[k], c.iv), kf, "");
            stf(cg, t[k], c.iv, LLVMBuildSelect(b, none, ldf(cg, t[2 + k], c.iv), avg, ""));
        }
        cg_loop_end(cg, &c);
        cg_loop_end(cg, &a);
    }
    free(r.cell);
    phase(cg, NNQ_PHASE_OTHER);
    LLVMBuildRetVoid(b);
}

static void emit_evaluate(Cg *cg) {
    LLVMTypeRef ps[5] = {cg->tp, cg->ti32, cg->ti64, cg->ti64, cg->ti32};
    cg->evaluate_ty = LLVMFunctionType(cg->tf64, ps, 5, 0);
    cg->evaluate = cg_new_function(cg, "evaluate", cg->evaluate_ty, false);
    mark_cold(cg, cg->evaluate);
    LLVMValueRef run = LLVMGetParam(cg->fn, 0), ds = LLVMGetParam(cg->fn, 1);
    LLVMValueRef start = LLVMGetParam(cg->fn, 2), count = LLVMGetParam(cg->fn, 3), hard = LLVMGetParam(cg->fn, 4);
    LLVMBuilderRef b = cg->b;
    phase(cg, NNQ_PHASE_EVAL);
    LLVMValueRef correct = cg_local(cg, cg->tf64, cf64(cg, 0), "correct");
    /* each rank evaluates its part of the samples; the counts are summed */
    LLVMValueRef first = LLVMBuildAdd(b, start, cg_rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, count, ci32(cg, 0)}, 3), "");
    LLVMValueRef end = LLVMBuildAdd(b, first, cg_rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, count, ci32(cg, 1)}, 3), "");
    Loop l = cg_loop_begin_step(cg, first, end, ci64(cg, cg->batch), "batch");
    LLVMValueRef left = LLVMBuildSub(b, end, l.iv, "");
    LLVMValueRef nb = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, ci64(cg, cg->batch), ""), left, ci64(cg, cg->batch), "");
    LLVMValueRef args[8] = {run, ds, LLVMConstNull(cg->tp), l.iv, nb, cg->x, cg->y, ci32(cg, 0)};
    cg_rt_call(cg, "nnq_rt_data_batch", args, 8);
    LLVMValueRef eargs[3] = {nb, hard, ci32(cg, 0)};
    LLVMValueRef c = LLVMBuildCall2(b, cg->eval_batch_ty, cg->eval_batch, eargs, 3, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, get(cg, cg->tf64, correct), LLVMBuildFPExt(b, c, cg->tf64, ""), ""), correct);
    cg_loop_end(cg, &l);
    LLVMValueRef all = cg_rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, correct)}, 2);
    LLVMValueRef acc = LLVMBuildFDiv(b, all, LLVMBuildSIToFP(b, count, cg->tf64, ""), "");
    phase(cg, NNQ_PHASE_OTHER);
    LLVMBuildRet(b, acc);
}

/* ---------- nnq_main ---------- */

static LLVMValueRef str(Cg *cg, const char *s) { return LLVMBuildGlobalStringPtr(cg->b, s, "str"); }

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
    Rows r = {.ncols = 3, .type = {cg->tp, cg->tp, cg->ti64}};
    for (int p = 0; p < m->nparams; p++) {
        int64_t cnt = m->params[p].count;
        for (int c = 0; c < m->params[p].proj->ncomp; c++) {
            LLVMValueRef snap = LLVMConstInBoundsGEP2(cg->ti8, LLVMConstBitCast(cg->best[p][0], cg->tp),
                                                      (LLVMValueRef[]){ci64(cg, c * cnt * 4)}, 1);
            rows_add(&r, (LLVMValueRef[]){cg->pcomp[p * CG_PCOMP_KINDS][c], snap, ci64(cg, cnt * 4)});
        }
    }
    for (int i = 0; i < m->nbns; i++) {
        int64_t F = m->bns[i].features;
        for (int k = 0; k < 2; k++) {
            LLVMValueRef snap = LLVMConstInBoundsGEP2(cg->ti8, LLVMConstBitCast(cg->bestbn[i], cg->tp),
                                                      (LLVMValueRef[]){ci64(cg, k * F * 4)}, 1);
            rows_add(&r, (LLVMValueRef[]){cg->bnbuf[i][k], snap, ci64(cg, F * 4)});
        }
    }
    if (r.n > 0) {
        LLVMValueRef v[3];
        Loop l = rows_begin(cg, &r, save ? "snapshot.save" : "snapshot.restore", v);
        if (save) LLVMBuildMemCpy(cg->b, v[1], 4, v[0], 4, v[2]);
        else LLVMBuildMemCpy(cg->b, v[0], 4, v[1], 4, v[2]);
        cg_loop_end(cg, &l);
    }
    free(r.cell);
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
        ds = cg_rt_call(cg, d->kind == DATA_IDX ? "nnq_rt_data_idx" : "nnq_rt_data_npy",
                        (LLVMValueRef[]){run, str(cg, d->images), str(cg, d->labels)}, 3);
        break;
    default:
        ds = cg_rt_call(cg, "nnq_rt_data_cifar", (LLVMValueRef[]){run, str(cg, d->images), ci32(cg, d->kind == DATA_CIFAR10 ? 10 : 100),
                                                                  ci32(cg, d->split), ci32(cg, d->coarse)}, 5);
    }
    const IrModule *m = cg->m;
    int rank = m->input.rank;
    LLVMValueRef g = const_dims(cg, &m->input, "input.dims");
    LLVMValueRef cargs[6] = {run, ds, ci32(cg, rank), g, ci32(cg, (int32_t)m->classes), str(cg, m->model)};
    cg_rt_call(cg, "nnq_rt_data_check", cargs, 6);
    if (d->crop_pad || d->hflip)
        cg_rt_call(cg, "nnq_rt_data_augment", (LLVMValueRef[]){run, ds, ci32(cg, (int32_t)d->crop_pad), ci32(cg, d->hflip)}, 4);
    return ds;
}

/* The epoch loop's scalars, each in a global of its own. */
typedef struct TrainScalars {
    LLVMValueRef beta, lr, t, best_acc, best_epoch;
} TrainScalars;

/* A global scalar, set to `init` where the builder stands; returns a pointer to it. */
static LLVMValueRef scalar_global(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef init) {
    LLVMValueRef p = as_ptr(cg, cg_global(cg, name, 1, ty), ty);
    LLVMBuildStore(cg->b, init, p);
    return p;
}

static void state(Cg *cg, Rows *r, const char *name, LLVMValueRef p, int64_t bytes) {
    rows_add(r, (LLVMValueRef[]){str(cg, name), p, ci64(cg, bytes)});
}

/* what: a string, or NULL and what_ptr the string's address */
static void describe(Cg *cg, LLVMValueRef run, const char *what, LLVMValueRef value, LLVMValueRef what_ptr) {
    cg_rt_call(cg, "nnq_rt_checkpoint_describe", (LLVMValueRef[]){run, what ? str(cg, what) : what_ptr, value}, 3);
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
    describe(cg, run, arena_printf(ar, "model %s", m->model), ci64(cg, 0), NULL);
    describe(cg, run, tc->opt == OPT_SGD ? "optimizer sgd" : tc->decoupled_decay ? "optimizer adamw" : "optimizer adam", ci64(cg, 0), NULL);
    describe(cg, run, "batch", ci64(cg, cg->batch), NULL);
    describe(cg, run, "keep best", ci64(cg, tc->keep_best), NULL);
    describe(cg, run, "training samples", ntrain, NULL);
    describe(cg, run, "validation samples", nval, NULL);
    Rows d = {.ncols = 2, .type = {cg->tp, cg->ti64}};
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
        rows_add(&d, (LLVMValueRef[]){str(cg, arena_printf(ar, "parameter %s %s %s%s", par->name, shape, par->proj->name, q)),
                                      ci64(cg, par->count)});
    }
    for (int i = 0; i < m->nbns; i++)
        rows_add(&d, (LLVMValueRef[]){str(cg, arena_printf(ar, "batch norm %s", m->bns[i].name)), ci64(cg, m->bns[i].features)});
    LLVMValueRef dv[2];
    Loop dl = rows_begin(cg, &d, "checkpoint.describe", dv);
    describe(cg, run, NULL, dv[1], dv[0]);
    cg_loop_end(cg, &dl);
    free(d.cell);

    Rows r = {.ncols = 3, .type = {cg->tp, cg->tp, cg->ti64}};
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        int K = par->proj->ncomp;
        state(cg, &r, arena_printf(ar, "%s.weight", par->name), cg->pbuf[p][IRB_WEIGHT], par->count * 4);
        state(cg, &r, arena_printf(ar, "%s.hard", par->name), cg->pbuf[p][IRB_HARD], par->count * 4);
        for (int kind = 0; kind < CG_PCOMP_KINDS; kind++)
            for (int c = 0; c < pcomp_count(par, kind); c++) {
                LLVMValueRef buf = cg->pcomp[p * CG_PCOMP_KINDS + kind][c];
                if (buf) state(cg, &r, arena_printf(ar, "%s.%s%d", par->name, ir_buf_name(IRB_AUX + kind), c), buf, par->count * 4);
            }
        if (tc->keep_best) state(cg, &r, arena_printf(ar, "%s.best", par->name), cg->best[p][0], par->count * K * 4);
    }
    static const char *const bn[] = {"running_mean", "running_var", NULL, NULL, NULL, NULL, "hard_mean", "hard_var"};
    for (int i = 0; i < m->nbns; i++) {
        for (int k = 0; k < 8; k++)
            if (bn[k]) state(cg, &r, arena_printf(ar, "%s.%s", m->bns[i].name, bn[k]), cg->bnbuf[i][k], m->bns[i].features * 4);
        if (tc->keep_best) state(cg, &r, arena_printf(ar, "%s.best", m->bns[i].name), cg->bestbn[i], 2 * m->bns[i].features * 4);
    }
    state(cg, &r, "dropout.step", cg->dropout_step, 8);
    state(cg, &r, "train.iteration", ts->t, 8);
    state(cg, &r, "train.beta", ts->beta, 8);
    state(cg, &r, "train.lr", ts->lr, 8);
    state(cg, &r, "train.best_acc", ts->best_acc, 8);
    state(cg, &r, "train.best_epoch", ts->best_epoch, 4);
    LLVMValueRef v[3];
    Loop l = rows_begin(cg, &r, "checkpoint.state", v);
    cg_rt_call(cg, "nnq_rt_checkpoint_state", (LLVMValueRef[]){run, v[0], v[1], v[2]}, 4);
    cg_loop_end(cg, &l);
    free(r.cell);
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

/* Before any data: the checkpoint directory, the seed, the MPI agreement, the target's
 * setup, the dropout key. */
static void emit_main_setup(Cg *cg, MainCtx *mc) {
    const TrainConfig *tc = cg->tc;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    /* an unusable checkpoint directory fails before any work is done */
    if (tc->checkpoint_dir) cg_rt_call(cg, "nnq_rt_checkpoint_dir", (LLVMValueRef[]){run, str(cg, tc->checkpoint_dir)}, 2);
    /* so does a model file that could not be written at the end */
    if (tc->save_path) cg_rt_call(cg, "nnq_rt_model_save_check", (LLVMValueRef[]){run, str(cg, tc->save_path)}, 2);
    LLVMValueRef a2[2];
    a2[0] = run;
    a2[1] = ci64(cg, tc->seed);
    LLVMValueRef seed = cg_rt_call(cg, "nnq_rt_seed", a2, 2);
    LLVMValueRef epochs = mc->epochs = cg_rt_call(cg, "nnq_rt_epochs", (LLVMValueRef[]){run, ci32(cg, tc->epochs)}, 2);
    /* data parallelism: the ranks agree on the program and split every batch */
    LLVMBuildStore(b, LLVMBuildSExt(b, cg_rt_call(cg, "nnq_rt_world_size", &run, 1), cg->ti64, ""), as_ptr(cg, cg->mpi_size, cg->ti64));
    LLVMBuildStore(b, cg_rt_call(cg, "nnq_rt_mpi_part", (LLVMValueRef[]){run, ci64(cg, cg->batch), ci32(cg, 0)}, 3), as_ptr(cg, cg->mpi_base, cg->ti64));
    cg_rt_call(cg, "nnq_rt_mpi_start", (LLVMValueRef[]){run, LLVMBuildLoad2(b, cg->ti64, cg->fingerprint, ""), ci64(cg, cg->batch), seed, epochs}, 5);
    /* what the target needs before any work (the CPU: every convolution's scratch) */
    cg->target->setup(cg, run);
    /* dropout masks: keyed by a draw from the seeded generator and the step count */
    LLVMBuildStore(b, cg_rt_call(cg, "nnq_rt_random_bits", &run, 1), as_ptr(cg, cg->dropout_step, cg->ti64));

}

/* The data sets: loaded, checked, split (training | validation), normalized. */
static void emit_main_data(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    const Program *prog = m->prog;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef run = mc->run;
    /* data */
    const DataDecl *dtrain = program_find_data(prog, tc->data);
    const DataDecl *dtest = tc->eval_data ? program_find_data(prog, tc->eval_data) : NULL;
    LLVMValueRef ds = emit_load_data(cg, run, dtrain);
    LLVMValueRef ntotal = cg_rt_call(cg, "nnq_rt_data_count", (LLVMValueRef[]){run, ds}, 2);
    /* validation: the last V samples, never more than half the set */
    LLVMValueRef vwant = ci64(cg, tc->validation);
    LLVMValueRef half = LLVMBuildSDiv(b, ntotal, ci64(cg, 2), "");
    LLVMValueRef nval = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, vwant, half, ""), vwant, half, "nval");
    {   /* said where it is cut */
        LLVMBasicBlockRef join;
        cg_if_begin(cg, LLVMBuildICmp(b, LLVMIntSGT, vwant, half, ""), &join);
        const char *note = arena_printf(cg->m->arena, "validation = %lld is more than half of data '%s': "
                                        "holding out its last %%lld samples", (long long)tc->validation, dtrain->name);
        cg_rt_call(cg, "nnq_rt_note", (LLVMValueRef[]){run, str(cg, note), nval}, 3);
        cg_if_end(cg, join);
    }
    LLVMValueRef ntrain = LLVMBuildSub(b, ntotal, nval, "ntrain");
    if (dtrain->normalize)
        cg_rt_call(cg, "nnq_rt_data_normalize", (LLVMValueRef[]){run, ds, ci32(cg, 1), ds, ntrain}, 5);
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
            ntest = cg_rt_call(cg, "nnq_rt_data_count", (LLVMValueRef[]){run, dst}, 2);
            if (dtest->normalize) {
                bool like_train = dtest->like && !strcmp(dtest->like, dtrain->name);
                /* like(train): the training portion's statistics; otherwise its own. */
                LLVMValueRef src = like_train ? ds : dst;
                LLVMValueRef cnt = like_train ? ntrain : ntest;
                cg_rt_call(cg, "nnq_rt_data_normalize", (LLVMValueRef[]){run, dst, ci32(cg, 1), src, cnt}, 5);
            }
        } else {
            ntest = nval;
        }
    }
    LLVMValueRef iters = LLVMBuildSDiv(b, ntrain, ci64(cg, cg->batch), "iters");
    LLVMValueRef index = cg_rt_call(cg, "nnq_rt_alloc", (LLVMValueRef[]){run, LLVMBuildMul(b, ntrain, ci64(cg, 8), "")}, 2);

    mc->dtrain = dtrain, mc->dtest = dtest, mc->ds = ds, mc->dst = dst;
    mc->ntrain = ntrain, mc->nval = nval, mc->ntest = ntest, mc->iters = iters, mc->index = index;
}

/* `init from "DIR"` (after the random initialization): unless --resume restores a
 * checkpoint, each parameter's weight is read from DIR/NAME.npy into its grad buffer,
 * where the w0 draw was, and its initialization (init_param) runs again; batch-norm
 * statistics are read where their files exist. The draws are made all the same, so that
 * the generator (and with it shuffling, augmentation and dropout) is where a run without
 * it has it. */
static void emit_init_from(Cg *cg, MainCtx *mc, LLVMValueRef *sc) {
    const IrModule *m = mc->m;
    LLVMValueRef run = mc->run;
    LLVMValueRef dir = cg_rt_call(cg, "nnq_rt_init_from", (LLVMValueRef[]){run, str(cg, cg->tc->init_dir)}, 2);
    LLVMBasicBlockRef join;
    cg_if_begin(cg, LLVMBuildIsNotNull(cg->b, dir, ""), &join);
    Rows r = {.ncols = 9, .type = {cg->tp, cg->ti32, cg->tp, cg->tp, cg->ti64, cg->tp, cg->tp, cg->tp, cg->tp}};
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        LLVMValueRef row[9] = {str(cg, par->name), ci32(cg, par->shape.rank), const_dims(cg, &par->shape, "dims"),
                               cg->pbuf[p][IRB_GRAD], ci64(cg, par->count)};
        kernels_init_soft(cg, p, row + 5);
        rows_add(&r, row);
    }
    if (r.n > 0) {
        LLVMValueRef v[9];
        Loop l = rows_begin(cg, &r, "init.from", v);
        cg_rt_call(cg, "nnq_rt_init_tensor", (LLVMValueRef[]){run, dir, v[0], v[1], v[2], v[3], ci32(cg, 0)}, 7);
        init_param_at(cg, v + 5, v[4], sc);
        cg_loop_end(cg, &l);
    }
    free(r.cell);
    Rows bn = {.ncols = 4, .type = {cg->tp, cg->tp, cg->tp, cg->ti32}};
    for (int i = 0; i < m->nbns; i++)
        for (int k = 0; k < 2; k++) {
            LLVMValueRef dv = ci64(cg, m->bns[i].features);
            const char *nm = arena_printf(m->arena, "%s.%s", m->bns[i].name, k ? "running_var" : "running_mean");
            rows_add(&bn, (LLVMValueRef[]){str(cg, nm), const_array(cg, cg->ti64, &dv, 1, "dims"), cg->bnbuf[i][k],
                                           ci32(cg, NNQ_INIT_OPTIONAL | (k ? NNQ_INIT_NONNEG : 0))});
        }
    if (bn.n > 0) {
        LLVMValueRef v[4];
        Loop l = rows_begin(cg, &bn, "init.from.bn", v);
        cg_rt_call(cg, "nnq_rt_init_tensor", (LLVMValueRef[]){run, dir, v[0], ci32(cg, 1), v[1], v[2], v[3]}, 7);
        cg_loop_end(cg, &l);
    }
    free(bn.cell);
    const char *note = arena_printf(m->arena, "initial weights of %%lld parameters read from \"%s\" (init from)", cg->tc->init_dir);
    cg_rt_call(cg, "nnq_rt_note", (LLVMValueRef[]){run, str(cg, note), ci64(cg, m->nparams)}, 3);
    cg_if_end(cg, join);
}

/* Initialization: w0 draws into the grad buffers, then each parameter's init_param;
 * batch norms; then `init from`. */
static void emit_main_init(Cg *cg, MainCtx *mc) {
    const IrModule *m = mc->m;
    const TrainConfig *tc = cg->tc;
    LLVMValueRef run = mc->run;
    LLVMValueRef sc[IRS_COUNT];
    scalars_beta(cg, sc, cf64(cg, tc->beta_start));
    /* per parameter: the draw (uniform in [a, b], Xavier's, or normal of mean a and
     * deviation b), then init_param_at */
    Rows r = {.ncols = 9, .type = {cg->tp, cg->ti64, cg->tf32, cg->tf32, cg->ti32, cg->tp, cg->tp, cg->tp, cg->tp}};
    for (int p = 0; p < m->nparams; p++) {
        const IrParam *par = &m->params[p];
        bool xavier = par->init == IR_INIT_XAVIER;
        double bound = sqrt(6.0 / (double)(par->fan_in + par->fan_out));
        LLVMValueRef row[9] = {cg->pbuf[p][IRB_GRAD], ci64(cg, par->count), cf32(cg, xavier ? -bound : 0),
                               cf32(cg, xavier ? bound : par->init_std), ci32(cg, xavier)};
        kernels_init_soft(cg, p, row + 5);
        rows_add(&r, row);
    }
    if (r.n > 0) {
        LLVMValueRef v[9];
        Loop l = rows_begin(cg, &r, "init", v);
        LLVMBasicBlockRef join;
        LLVMValueRef uniform = LLVMBuildICmp(cg->b, LLVMIntNE, v[4], ci32(cg, 0), "");
        LLVMValueRef fill[5] = {run, v[0], v[1], v[2], v[3]};
        cg_if_begin(cg, uniform, &join);
        cg_rt_call(cg, "nnq_rt_fill_uniform", fill, 5);
        cg_if_end(cg, join);
        cg_if_begin(cg, LLVMBuildNot(cg->b, uniform, ""), &join);
        cg_rt_call(cg, "nnq_rt_fill_normal", fill, 5);
        cg_if_end(cg, join);
        init_param_at(cg, v + 5, v[1], sc);
        cg_loop_end(cg, &l);
    }
    free(r.cell);
    bn_fill(cg, 1, 1.0f); /* running variances 1, means 0 */
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
    LLVMValueRef nb = cg_rt_call(cg, "nnq_rt_data_shard", (LLVMValueRef[]){run, ds, index, start, ci64(cg, cg->batch), cg->x, cg->y, ci32(cg, 1)}, 8);
    LLVMBuildCall2(b, cg->train_step_ty, cg->train_step, &nb, 1, "");
    phase(cg, NNQ_PHASE_COMM);
    cg_rt_call(cg, "nnq_rt_mpi_grads", (LLVMValueRef[]){run, cg->grad_table, cg->grad_counts, ci32(cg, m->nparams)}, 4);
    phase(cg, NNQ_PHASE_OTHER);
    LLVMValueRef loss = ldf(cg, cg->vtrain[m->train.loss], ci64(cg, 0));
    LLVMValueRef correct = ldf(cg, cg->vtrain[m->train.correct], ci64(cg, 0));
    LLVMValueRef tt = get(cg, cg->ti64, t);
    cg_rt_call(cg, "nnq_rt_check_loss", (LLVMValueRef[]){run, loss, tt}, 3);
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
    cg_rt_call(cg, "nnq_rt_progress", (LLVMValueRef[]){run, ep->iv, LLVMBuildAdd(b, it->iv, ci64(cg, 1), ""), loss}, 4);
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
    LLVMValueRef vs = cg_local(cg, cg->tf64, NULL, "val_soft"), vh = cg_local(cg, cg->tf64, NULL, "val_hard");
    LLVMBuildStore(b, cf64(cg, -1), vs);
    LLVMBuildStore(b, cf64(cg, -1), vh);
    /* `evaluate DATA every N epochs`: the test accuracies at this epoch */
    const DataDecl *dtest_every = tc->eval_every_epochs > 0 ? dtest : NULL;
    LLVMValueRef due = dtest_every ? LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, ep->iv, ci32(cg, tc->eval_every_epochs), ""), ci32(cg, 0), "due")
                                   : LLVMConstInt(cg->ti1, 0, 0);
    LLVMValueRef validate = LLVMBuildICmp(b, LLVMIntSGT, nval, ci64(cg, 0), "validate");
    LLVMBasicBlockRef join;
    /* one hard network for this epoch's validation and test evaluations */
    cg_if_begin(cg, LLVMBuildOr(b, validate, due, ""), &join);
    {
        LLVMValueRef s[IRS_COUNT];
        scalars_beta(cg, s, get(cg, cg->tf64, beta));
        hard_network(cg, run, s);
    }
    cg_if_end(cg, join);
    cg_if_begin(cg, validate, &join);
    {
        LLVMValueRef soft = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, ds, ntrain, nval, ci32(cg, 0)}, 5, "");
        LLVMValueRef hard = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, ds, ntrain, nval, ci32(cg, 1)}, 5, "");
        LLVMBuildStore(b, soft, vs);
        LLVMBuildStore(b, hard, vh);
        if (tc->keep_best) {
            LLVMBasicBlockRef j2;
            cg_if_begin(cg, LLVMBuildFCmp(b, LLVMRealOGT, hard, get(cg, cg->tf64, best_acc), ""), &j2);
            LLVMBuildStore(b, hard, best_acc);
            LLVMBuildStore(b, ep->iv, best_epoch);
            snapshot(cg, true);
            cg_if_end(cg, j2);
        }
    }
    cg_if_end(cg, join);
    if (dtest_every) {
        LLVMBasicBlockRef j4;
        cg_if_begin(cg, due, &j4);
        LLVMValueRef tstart = dtest == dtrain ? ntrain : ci64(cg, 0);
        LLVMValueRef soft = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 0)}, 5, "");
        LLVMValueRef hard = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 1)}, 5, "");
        cg_rt_call(cg, "nnq_rt_epoch_test", (LLVMValueRef[]){run, soft, hard}, 3);
        cg_if_end(cg, j4);
    }
    /* the epoch's loss and accuracy over every rank's samples */
    LLVMValueRef fi = LLVMBuildSIToFP(b, iters, cg->tf64, "");
    LLVMValueRef ranks = LLVMBuildSIToFP(b, LLVMBuildLoad2(b, cg->ti64, as_ptr(cg, cg->mpi_size, cg->ti64), ""), cg->tf64, "");
    LLVMValueRef all_loss = cg_rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, sum_loss)}, 2);
    LLVMValueRef all_correct = cg_rt_call(cg, "nnq_rt_mpi_sum_f64", (LLVMValueRef[]){run, get(cg, cg->tf64, sum_correct)}, 2);
    LLVMValueRef mean_loss = LLVMBuildFDiv(b, LLVMBuildFDiv(b, all_loss, ranks, ""), fi, "");
    LLVMValueRef tr_acc = LLVMBuildFDiv(b, all_correct, LLVMBuildFMul(b, fi, cf64(cg, (double)cg->batch), ""), "");
    cg_rt_call(cg, "nnq_rt_epoch_end", (LLVMValueRef[]){run, ep->iv, mean_loss, tr_acc, get(cg, cg->tf64, vs), get(cg, cg->tf64, vh),
                                                        get(cg, cg->tf64, beta), get(cg, cg->tf64, lr)}, 8);
    if (tc->checkpoint_dir) {
        /* every N epochs and after the last one (which a longer run can extend) */
        LLVMValueRef due_ck = LLVMBuildOr(b, LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, ep->iv, ci32(cg, tc->checkpoint_every), ""), ci32(cg, 0), ""),
                                          LLVMBuildICmp(b, LLVMIntEQ, ep->iv, epochs, ""), "checkpoint_due");
        LLVMBasicBlockRef j5;
        cg_if_begin(cg, due_ck, &j5);
        cg_rt_call(cg, "nnq_rt_checkpoint_save", (LLVMValueRef[]){run, ep->iv, epochs}, 3);
        cg_if_end(cg, j5);
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
        cg_if_begin(cg, LLVMBuildICmp(b, LLVMIntSGT, get(cg, cg->ti32, best_epoch), ci32(cg, 0), ""), &j3);
        snapshot(cg, false);
        all_kernels(cg, 3, s);
        cg_rt_call(cg, "nnq_rt_note", (LLVMValueRef[]){run, str(cg, "kept the best hard-quantized validation model, from epoch"),
                                                       LLVMBuildSExt(b, get(cg, cg->ti32, best_epoch), cg->ti64, "")}, 3);
        cg_if_end(cg, j3);
    }
    hard_network(cg, run, s);
    LLVMValueRef ts = cf64(cg, -1), th = cf64(cg, -1);
    if (dst) {
        LLVMValueRef tstart = dtest == dtrain ? ntrain : ci64(cg, 0);
        ts = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 0)}, 5, "test_soft");
        th = LLVMBuildCall2(b, cg->evaluate_ty, cg->evaluate, (LLVMValueRef[]){run, dst, tstart, ntest, ci32(cg, 1)}, 5, "test_hard");
    }
    cg_rt_call(cg, "nnq_rt_train_end", (LLVMValueRef[]){run, epochs, ts, th}, 4);
    if (tc->save_path) {
        /* the hard network of the last hard_network() call, statistics included */
        cg_rt_call(cg, "nnq_rt_model_begin", (LLVMValueRef[]){run, str(cg, m->model)}, 2);
        size_t alen;
        const unsigned char *arch = arch_build(m, &alen);
        LLVMValueRef ag = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->ti8, (unsigned)alen), "arch");
        LLVMSetInitializer(ag, LLVMConstStringInContext(cg->ctx, (const char *)arch, (unsigned)alen, 1));
        LLVMSetGlobalConstant(ag, 1);
        LLVMSetLinkage(ag, LLVMPrivateLinkage);
        /* the normalization the test evaluation saw (that of the training data when there
         * is no test set), so that `nnqc eval` on the test set reproduces its accuracy */
        cg_rt_call(cg, "nnq_rt_model_arch", (LLVMValueRef[]){run, ag, ci64(cg, (int64_t)alen), dst ? dst : mc->ds}, 4);
        Rows t = {.ncols = 6, .type = {cg->tp, cg->ti32, cg->tp, cg->ti32, cg->tp, cg->tp}};
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
            rows_add(&t, (LLVMValueRef[]){str(cg, par->name), ci32(cg, par->shape.rank), dg, ci32(cg, ls ? ls->k : 0), lg,
                                          cg->pbuf[p][IRB_HARD]});
        }
        for (int i = 0; i < m->nbns; i++) {
            for (int k = 0; k < 2; k++) {
                LLVMValueRef dv = ci64(cg, m->bns[i].features);
                LLVMValueRef dg = const_array(cg, cg->ti64, &dv, 1, "dims");
                const char *nm = arena_printf(m->arena, "%s.%s", m->bns[i].name, k ? "running_var" : "running_mean");
                rows_add(&t, (LLVMValueRef[]){str(cg, nm), ci32(cg, 1), dg, ci32(cg, 0), LLVMConstNull(cg->tp), cg->bnbuf[i][6 + k]});
            }
        }
        LLVMValueRef tv[6];
        Loop tl = rows_begin(cg, &t, "model.tensors", tv);
        cg_rt_call(cg, "nnq_rt_model_add", (LLVMValueRef[]){run, tv[0], tv[1], tv[2], tv[3], tv[4], tv[5]}, 7);
        cg_loop_end(cg, &tl);
        free(t.cell);
        cg_rt_call(cg, "nnq_rt_model_save", (LLVMValueRef[]){run, str(cg, tc->save_path)}, 2);
    }
}

/* nnq_main(run): the parts above around the epoch and iteration loops. */
static void emit_main(Cg *cg) {
    const IrModule *m = cg->m;
    const TrainConfig *tc = cg->tc;
    const Program *prog = m->prog;
    LLVMBuilderRef b = cg->b;
    LLVMTypeRef mt = LLVMFunctionType(cg->ti32, &cg->tp, 1, 0);
    mark_cold(cg, cg_new_function(cg, "nnq_main", mt, true));
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
    cg_rt_call(cg, "nnq_rt_train_begin", (LLVMValueRef[]){run, str(cg, m->model), epochs, iters, ntrain, nval, ntest}, 7);
    /* --resume: the state after the checkpoint's epoch replaces the fresh one */
    declare_checkpoint(cg, run, &st, ntrain, nval);
    LLVMValueRef first = LLVMBuildAdd(b, cg_rt_call(cg, "nnq_rt_checkpoint_resume", (LLVMValueRef[]){run, epochs}, 2), ci32(cg, 1), "first");
    /* Schedules in iterations: `N epochs` becomes N * iters. */
    mc.lr_every = tc->lr_every >= 0 ? ci64(cg, tc->lr_every) : LLVMBuildMul(b, ci64(cg, -tc->lr_every), iters, "");
    mc.beta_every = tc->beta_every >= 0 ? ci64(cg, tc->beta_every) : LLVMBuildMul(b, ci64(cg, -tc->beta_every), iters, "");

    mc.st = st;
    Loop ep = cg_loop_begin(cg, first, LLVMBuildAdd(b, epochs, ci32(cg, 1), ""), "epoch");
    cg_rt_call(cg, "nnq_rt_shuffle", (LLVMValueRef[]){run, mc.index, ntrain}, 3);
    LLVMValueRef sum_loss = cg_local(cg, cg->tf64, NULL, "sum_loss");
    LLVMValueRef sum_correct = cg_local(cg, cg->tf64, NULL, "sum_correct");
    LLVMBuildStore(b, cf64(cg, 0), sum_loss);
    LLVMBuildStore(b, cf64(cg, 0), sum_correct);
    Loop it = cg_loop_begin(cg, ci64(cg, 0), iters, "iter");
    emit_main_iteration(cg, &mc, &ep, &it, sum_loss, sum_correct);
    cg_loop_end(cg, &it);
    emit_main_epoch_end(cg, &mc, &ep, sum_loss, sum_correct);
    cg_loop_end(cg, &ep);
    emit_main_finish(cg, &mc);
    LLVMBuildRet(b, ci32(cg, 0));
}

/* ---------- module ---------- */

LLVMModuleRef cg_emit_module(const IrModule *m, LLVMContextRef ctx, bool export_internals, Diag *diag) {
    Cg cg;
    memset(&cg, 0, sizeof cg);
    cg.export_internals = export_internals;
    cg.target = &cg_target_cpu; /* the one target; a second would be chosen here */
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
    cg.rt_names.arena = m->arena;
    for (int i = 0; i < rt_table_count; i++) {
        LLVMTypeRef codes[6] = {cg.tv, cg.ti32, cg.ti64, cg.tf32, cg.tf64, cg.tp};
        LLVMTypeRef ps[RT_MAX_ARGS];
        for (int k = 0; k < rt_table[i].nargs; k++) ps[k] = codes[rt_table[i].args[k]];
        cg.rt_ty[i] = LLVMFunctionType(codes[rt_table[i].ret], ps, (unsigned)rt_table[i].nargs, 0);
        cg.rt_fn[i] = LLVMAddFunction(cg.mod, rt_table[i].name, cg.rt_ty[i]);
        *names_add(&cg.rt_names, rt_table[i].name) = i;
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
    for (int i = 0; i < m->nparams * CG_PCOMP_KINDS; i++) free(cg.pcomp[i]);
    free(cg.pcomp);
    free(cg.pbuf);
    free(cg.best);
    free(cg.bnbuf);
    free(cg.bestbn);
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

bool cg_zero_variable(LLVMValueRef g) {
    LLVMValueRef init = LLVMGetInitializer(g);
    return init && LLVMIsNull(init) && !LLVMIsGlobalConstant(g);
}

/* A built trainer's buffers, its zero-initialized variables, become common symbols,
 * which the linker places at the end of .bss, past the runtime's own data (its code
 * reaches that by 32-bit offsets, which gigabytes of buffers in between would break),
 * and which generated code reaches through the GOT: a new global each, with none of the
 * old one's dso_local mark (an internal variable keeps it through a change of linkage,
 * and its references would stay 32-bit offsets). Returns the table of their spans,
 * {start, bytes} each, and their count in *n. */
static LLVMValueRef trainer_buffers(LLVMModuleRef mod, int *n) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    int cap = 0;
    LLVMValueRef *old = NULL;
    *n = 0;
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g)) /* first all: new ones go to the end */
        if (cg_zero_variable(g)) {
            if (*n == cap) old = realloc(old, sizeof *old * (size_t)(cap = cap ? 2 * cap : 64));
            old[(*n)++] = g;
        }
    LLVMTypeRef p = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0), i64 = LLVMInt64TypeInContext(ctx);
    LLVMTypeRef span = LLVMStructTypeInContext(ctx, (LLVMTypeRef[]){p, i64}, 2, 0);
    LLVMValueRef *spans = malloc(sizeof *spans * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) {
        LLVMTypeRef ty = LLVMGlobalGetValueType(old[i]);
        size_t len;
        const char *name = LLVMGetValueName2(old[i], &len);
        char *copy = strndup(name, len);
        LLVMValueRef g = LLVMAddGlobal(mod, ty, "");
        LLVMSetLinkage(g, LLVMCommonLinkage);
        LLVMSetInitializer(g, LLVMConstNull(ty));
        LLVMSetAlignment(g, LLVMGetAlignment(old[i]));
        LLVMReplaceAllUsesWith(old[i], g);
        LLVMDeleteGlobal(old[i]);
        LLVMSetValueName2(g, copy, len);
        free(copy);
        spans[i] = LLVMConstNamedStruct(span, (LLVMValueRef[]){LLVMConstBitCast(g, p), LLVMSizeOf(ty)}, 2);
    }
    LLVMTypeRef aty = LLVMArrayType(span, (unsigned)*n);
    LLVMValueRef table = LLVMAddGlobal(mod, aty, "nnq.buffers");
    LLVMSetLinkage(table, LLVMInternalLinkage);
    LLVMSetGlobalConstant(table, 1);
    LLVMSetInitializer(table, LLVMConstArray(span, spans, (unsigned)*n));
    free(spans);
    free(old);
    return LLVMConstBitCast(table, p);
}

void cg_add_trainer_main(LLVMModuleRef mod) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx),
                p = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
    LLVMTypeRef pp = LLVMPointerType(p, 0);
    LLVMValueRef entry = LLVMGetNamedFunction(mod, "nnq_main");
    assert(entry);
    int nbuf;
    LLVMValueRef buffers = trainer_buffers(mod, &nbuf);
    LLVMTypeRef tm_params[6] = {i32, pp, p, p, i64, i32};
    LLVMTypeRef tm_ty = LLVMFunctionType(i32, tm_params, 6, 0);
    LLVMValueRef tmain = LLVMAddFunction(mod, "nnq_trainer_main", tm_ty);
    LLVMTypeRef main_params[2] = {i32, pp};
    LLVMValueRef mainf = LLVMAddFunction(mod, "main", LLVMFunctionType(i32, main_params, 2, 0));
    /* main runs before the CPU is checked: baseline x86-64 code, whatever the module's */
    LLVMAddTargetDependentFunctionAttr(mainf, "target-cpu", "x86-64");
    LLVMAddTargetDependentFunctionAttr(mainf, "target-features", "");
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, mainf, "entry"));
    /* the level the objects are compiled for (jit.c's host_target) */
    LLVMValueRef args[6] = {LLVMGetParam(mainf, 0), LLVMGetParam(mainf, 1), LLVMBuildBitCast(b, entry, p, ""),
                            buffers, LLVMConstInt(i64, (unsigned long long)nbuf, 0),
                            LLVMConstInt(i32, (unsigned long long)nnq_isa_level(), 0)};
    LLVMBuildRet(b, LLVMBuildCall2(b, tm_ty, tmain, args, 6, ""));
    LLVMDisposeBuilder(b);
}
