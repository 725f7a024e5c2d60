/* target.h — the code generator's target interface: what codegen.c asks of a target,
 * and what a target may use of codegen.c.
 *
 * codegen.c builds what every target shares: the module's buffers, by name and layout
 * (the memplan pass's arena); train_step and eval_batch as one walk over the IR (phase
 * marks, and the values of the source ops: input, labels, param, reshape, param_grad);
 * the fused kernels' per-element code (sx.c's expressions); calibrate, evaluate and
 * nnq_main (data, the epoch loop, schedules, MPI, checkpoints, the model file). A
 * target, one CgTarget, supplies what differs between machines:
 *   memory   where a tensor buffer lives (.buffer);
 *   ops      each computing IR op's instance: a library call or a generated loop (.ops);
 *   kernels  how a fused kernel's per-element code becomes a parallel loop, what one
 *            parameter's use of it holds, and how that runs (.kernel, .kernel_args,
 *            .kernel_run);
 *   setup    what a run needs before any work (.setup).
 * The CPU target is target_cpu.c (cg_target_cpu). A second target is a second CgTarget
 * in files of its own, chosen in cg_emit_module (docs/gpu-plan.md).
 *
 * The rest is what a target may use: the code generator's state (Cg, FnCtx: owned by
 * cg_emit_module for one module; a target keeps no state of its own beyond what it adds
 * to the LLVM module, which it may look up by name), the LLVM building helpers defined
 * in codegen.c (cg_*) and small inline ones. */
#ifndef NNQ_TARGET_H
#define NNQ_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "ir.h"

typedef struct CgTarget CgTarget;

/* The buffers of a batch norm (Cg.bnbuf): their names in codegen.c, their order below. */
enum { CG_BN_BUFS = 9 };

/* The code generator's state for one module. */
typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const CgTarget *target;
    const IrModule *m;
    const TrainConfig *tc;
    TrainConfig defaults;
    int64_t batch;
    bool export_internals;
    LLVMTypeRef tv, ti1, ti8, ti32, ti64, tf32, tf64, tp;
    LLVMValueRef *rt_fn;
    LLVMTypeRef *rt_ty;
    NameIndex rt_names;              /* each runtime function's index in rt_table (cg_rt_call) */
    LLVMValueRef fn;                 /* function being built */
    /* Buffers */
    LLVMValueRef x, y;               /* the batch */
    LLVMValueRef (*pbuf)[6];         /* per param: weight, hard, grad, aux0, m0, v0 (comp 0) */
    LLVMValueRef **pcomp;            /* per param: [CG_PCOMP_KINDS][K] aux, m, v, carry components */
    LLVMValueRef (*bnbuf)[CG_BN_BUFS]; /* rmean, rvar, mean, invstd, sum1, sum2, hard mean, hard var, bias grad */
    LLVMValueRef *vtrain, *veval;    /* per IR value */
    LLVMValueRef *xtrain, *xeval;    /* per IR instruction: pooling argmax, dropout mask */
    LLVMValueRef dropout_step;       /* i64 global: train steps taken, keys dropout masks */
    LLVMValueRef mpi_size, mpi_base; /* i64 globals: processes in the job, this rank's first sample */
    LLVMValueRef grad_table, grad_counts; /* every parameter's grad buffer and its length */
    LLVMValueRef weight_table; /* every parameter's weight and hard buffers, in turn (eval) */
    LLVMValueRef fingerprint;        /* i64 global: a hash of the module's text (cg_set_fingerprint) */
    LLVMValueRef (*best)[2];         /* kept model: per param aux snapshot (flat K*count) */
    LLVMValueRef *bestbn;            /* per bn: rmean+rvar snapshot */
    LLVMValueRef (*kernels)[2];      /* [nparams * 4]: each parameter's kernels, its code and args (kernel_run) */
    LLVMValueRef train_step, eval_batch, evaluate;
    LLVMTypeRef train_step_ty, eval_batch_ty, evaluate_ty, kernel_ty, calibrate_ty;
    LLVMValueRef calibrate, calib_ds, calib_batches; /* hard batch-norm statistics */
} Cg;

/* The function of the walk (train_step or eval_batch) being built. */
/* The arguments of nnq_rt_sgemm (abi.def) and of nnq_rt_sgemm_bn, which adds the batch
 * norm's six (its body, min_items, context, two sums, grad) after them. */
#define CG_SGEMM_ARGS 13
#define CG_SGEMM_BN_ARGS (CG_SGEMM_ARGS + 6)

typedef struct FnCtx {
    const IrFunc *f;
    LLVMValueRef *val;   /* per value: pointer to its data */
    LLVMValueRef n;      /* i64 batch rows */
    LLVMValueRef ntot;   /* i64 rows of the global batch: n times the processes (train), n (eval) */
    LLVMValueRef hard;   /* eval: i1, use hard weights (and the hard batch-norm statistics) */
    LLVMValueRef calib;  /* eval: i1, batch-norm uses batch statistics and adds them to the hard ones */
    LLVMValueRef *extra; /* per instruction: pooling argmax, dropout mask, or NULL */
    /* A runtime call the target put off to a later instruction (target_cpu.c: a dense
     * product's GEMM, run with the batch norm that reads it): that instruction's index
     * + 1 (0: none), and the call's arguments (nnq_rt_sgemm's). */
    int deferred_to;
    LLVMValueRef deferred[CG_SGEMM_ARGS];
} FnCtx;

/* ---------- the interface ---------- */

/* Emits instruction i of fc->f, an op that computes (not ir_op_source), writing its
 * value to `out` (fc->val[i]). */
typedef void CgEmitOp(Cg *cg, FnCtx *fc, int i, LLVMValueRef out);

/* codegen.c's per-element code of a fused kernel: at element index `i` (i64), loads the
 * kernel's inputs from `bufs` (f32 arrays), computes its outputs from them and
 * `scalars` (IRS_COUNT f32 values), and stores them. `kernel` is codegen.c's, passed
 * through. A kernel of several stages (see .kernel) computes its outputs in a loop per
 * stage over each block of elements: `stage` s the values of stage s, from earlier
 * stages' stored values; -1 all of them in one loop. */
typedef void CgElemCode(Cg *cg, const void *kernel, int stage, LLVMValueRef i, const LLVMValueRef *bufs,
                        const LLVMValueRef *scalars);

/* Elements a kernel of several stages runs each stage's loop over before the next
 * block: earlier stages' results are read back from the L1 cache. */
#define CG_KERNEL_BLOCK 256
/* The most stages of outputs (codegen.c's kernel_stages). */
#define CG_KERNEL_MAX_STAGES 4

/* The most buffers a fused kernel reads and writes. */
#define CG_KERNEL_MAX_BUFS (2 * IR_KERNEL_MAX_IO)
/* A parameter's kinds of components: aux, m, v, carry (IRB_AUX on). */
#define CG_PCOMP_KINDS 4

struct CgTarget {
    const char *name;
    /* A zero-filled tensor buffer of `count` elements of `elem`, named `name`: the batch,
     * the arena of IR values, a parameter's arrays, a batch norm's state. Returns the
     * global of the module that holds it: codegen.c uses its address as a constant (in
     * tables of pointers, offsets into the arena). */
    LLVMValueRef (*buffer)(Cg *cg, const char *name, int64_t count, LLVMTypeRef elem);
    /* Each op that computes: its emitter. NULL for the source ops (ir_op_source), whose
     * values codegen.c binds to buffers itself. */
    CgEmitOp *ops[IR_OP_COUNT];
    /* A fused kernel: `code` for every element of nbufs buffers, the buffers and the
     * element count given when it runs (kernel_run); `name` prefixes the functions it
     * makes. With `stages` more than 1, each block of CG_KERNEL_BLOCK elements runs
     * stage 0's loop, then stage 1's, and so on. Returns what kernel_run calls; one
     * serves every parameter whose kernel is the same code. */
    LLVMValueRef (*kernel)(Cg *cg, const char *name, int nbufs, int stages, CgElemCode *code, const void *kernel);
    /* One parameter's use of a kernel: its nbufs buffers (from .buffer) as one constant
     * that kernel_run takes; `name` is the parameter's kernel's. */
    LLVMValueRef (*kernel_args)(Cg *cg, const char *name, const LLVMValueRef *bufs, int nbufs);
    /* Runs a kernel (from .kernel) where the builder stands, on one parameter's buffers
     * (`args`, from .kernel_args), its `count` elements (i64) and its scalars (IRS_COUNT
     * f32 values). The kernel, args and count may be constants or loaded from a table
     * (codegen.c runs every parameter's kernels by loops over tables of them). */
    void (*kernel_run)(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, LLVMValueRef count, const LLVMValueRef *scalars);
    /* In nnq_main, once the ranks agree and before any data is loaded: what the run
     * needs before any work. `run` is the NnqRun *. */
    void (*setup)(Cg *cg, LLVMValueRef run);
};

/* target_cpu.c: the host CPU. */
extern const CgTarget cg_target_cpu;

/* ---------- helpers (codegen.c) ---------- */

/* A call of the runtime function `name` (runtime/abi.def); pointer arguments are cast. */
LLVMValueRef cg_rt_call(Cg *cg, const char *name, LLVMValueRef *args, int nargs);
/* A zero-filled, 64-byte aligned global array of max(count, 1) elems, internal unless
 * cg->export_internals. */
LLVMValueRef cg_global(Cg *cg, const char *name, int64_t count, LLVMTypeRef elem);
/* A new function, internal unless `external` or cg->export_internals; it becomes cg->fn
 * and the builder stands in its entry block. */
LLVMValueRef cg_new_function(Cg *cg, const char *name, LLVMTypeRef ty, bool external);
/* Adds LLVM's enum attribute `name` (optnone, minsize, noalias...) to fn at index (a
 * parameter's 1 + position, or LLVMAttributeFunctionIndex). */
void cg_attribute(Cg *cg, LLVMValueRef fn, unsigned index, const char *name);
/* A stack variable of cg->fn (in its entry block, so mem2reg promotes it), stored `init`
 * (may be NULL) where the builder stands. */
LLVMValueRef cg_local(Cg *cg, LLVMTypeRef ty, LLVMValueRef init, const char *name);
/* A call of the overloaded intrinsic `name` (llvm.sqrt, llvm.fabs, ...) at type ty. */
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef *args, int n);
/* exp with its argument raised to -87, away from expf's slow underflow path. */
LLVMValueRef cg_exp_f32(Cg *cg, LLVMValueRef a);
/* log as inline code: the same bits in scalar and vector loops at any -O level. */
LLVMValueRef cg_log_f32(Cg *cg, LLVMValueRef a);

/* A counted loop: cg_loop_begin leaves the builder in its body (iv the counter),
 * cg_loop_end after it. */
typedef struct Loop {
    LLVMBasicBlockRef header, exit;
    LLVMValueRef iv, step;
} Loop;
Loop cg_loop_begin(Cg *cg, LLVMValueRef start, LLVMValueRef end, const char *name);
Loop cg_loop_begin_step(Cg *cg, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step, const char *name);
void cg_loop_end(Cg *cg, Loop *l);
/* cg_loop_end asking the vectorizer to interleave `count` vectors an iteration. */
void cg_loop_end_interleaved(Cg *cg, Loop *l, int count);
/* cg_loop_end for a loop LLVM is to leave as it is: neither vectorized nor unrolled (a
 * loop that runs rarely, where code size costs compile time). */
/* if (cond) { ... }: cg_if_begin leaves the builder in the branch, cg_if_end after it. */
void cg_if_begin(Cg *cg, LLVMValueRef cond, LLVMBasicBlockRef *join);
void cg_if_end(Cg *cg, LLVMBasicBlockRef join);

static inline LLVMValueRef ci64(Cg *cg, int64_t v) { return LLVMConstInt(cg->ti64, (unsigned long long)v, 1); }
static inline LLVMValueRef ci32(Cg *cg, int32_t v) {
    return LLVMConstInt(cg->ti32, (unsigned long long)(int64_t)v, 1);
}
static inline LLVMValueRef cf32(Cg *cg, double v) { return LLVMConstReal(cg->tf32, v); }

/* A float* (or elem*) to the start of a buffer. */
static inline LLVMValueRef as_ptr(Cg *cg, LLVMValueRef p, LLVMTypeRef elem) {
    return LLVMBuildBitCast(cg->b, p, LLVMPointerType(elem, 0), "");
}
static inline LLVMValueRef gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(cg->b, elem, as_ptr(cg, base, elem), &idx, 1, "");
}
/* Element idx of a float buffer: loaded, stored; ldi32: of an i32 buffer. */
static inline LLVMValueRef ldf(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildLoad2(cg->b, cg->tf32, gep(cg, cg->tf32, base, idx), "");
}
static inline void stf(Cg *cg, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v) {
    LLVMBuildStore(cg->b, v, gep(cg, cg->tf32, base, idx));
}
static inline LLVMValueRef ldi32(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildLoad2(cg->b, cg->ti32, gep(cg, cg->ti32, base, idx), "");
}
/* The value of a local (cg_local). */
static inline LLVMValueRef get(Cg *cg, LLVMTypeRef ty, LLVMValueRef var) { return LLVMBuildLoad2(cg->b, ty, var, ""); }
static inline LLVMValueRef fmaxv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGE, a, b, ""), a, b, "");
}

/* A dimension as i64 (the batch: fc->n), and the elements of a shape. */
static inline LLVMValueRef dim(Cg *cg, FnCtx *fc, int64_t d) { return d == IR_BATCH ? fc->n : ci64(cg, d); }
static inline LLVMValueRef elems(Cg *cg, FnCtx *fc, const IrShape *s) {
    LLVMValueRef n = ci64(cg, ir_shape_elems(s));
    if (s->rank > 0 && s->d[0] == IR_BATCH) n = LLVMBuildMul(cg->b, n, fc->n, "");
    return n;
}

/* Operand k of instruction i: its data (NULL when absent) and its shape. */
static inline LLVMValueRef arg_val(FnCtx *fc, int i, int k) {
    int v = fc->f->insts[i].args[k];
    return v >= 0 ? fc->val[v] : NULL;
}
static inline const IrShape *arg_shape(FnCtx *fc, int i, int k) {
    int v = fc->f->insts[i].args[k];
    return v >= 0 ? &fc->f->insts[v].shape : NULL;
}

#endif
