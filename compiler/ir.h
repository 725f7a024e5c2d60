/* ir.h — the tensor IR: a module of parameters, batch-norm states, two functions
 * (`train`: forward with batch statistics, loss, backward; `eval`: forward with running
 * statistics and the count of correct predictions) and one fused update kernel per
 * parameter (fuse.c). Values are SSA: instruction i defines value i; operands refer to
 * earlier values. The module owns everything through its arena. */
#ifndef NNQ_IR_H
#define NNQ_IR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "program.h"

typedef enum IrOp {
#define IR_OP(name, text, nargs, attrs, arg1, side, phase, grad, shape, doc) IR_##name,
#include "ir_ops.def"
#undef IR_OP
    IR_OP_COUNT
} IrOp;

/* The ATTRS and ARG1 columns of ir_ops.def. */
typedef enum IrAttrs { IR_ATTRS_NONE, IR_ATTRS_PARAM, IR_ATTRS_BN, IR_ATTRS_CONV, IR_ATTRS_POOL, IR_ATTRS_MATMUL, IR_ATTRS_RATE, IR_ATTRS_BN_POOL } IrAttrs;
typedef enum IrArg1 { IR_ARG1_VALUE, IR_ARG1_FWD_INPUT, IR_ARG1_FWD_SIDE, IR_ARG1_FWD_OPS } IrArg1;

const char *ir_op_name(IrOp op);
int ir_op_nargs(IrOp op);
IrAttrs ir_op_attrs(IrOp op);
IrArg1 ir_op_arg1(IrOp op);
bool ir_op_side(IrOp op);  /* keeps a side buffer, one 4-byte word per output element */
int ir_op_phase(IrOp op); /* an NnqPhase (runtime/phases.def): where --profile charges it */
bool ir_op_source(IrOp op); /* computes nothing (phase OTHER): input, labels, param, reshape, param_grad */

#define IR_BATCH (-1) /* a dimension equal to the batch size N */

/* Bounds on every tensor, whether from IR text or a model: a dimension, and the elements
 * of one tensor or sample, which the runtime counts in 32 bits (a convolution's rows of
 * C k k, a weight's size; 2^31 - 1 floats are 8 GiB). The batch is not counted. */
#define IR_MAX_DIM ((int64_t)1 << 30)
#define IR_MAX_ELEMS ((int64_t)INT32_MAX)

typedef struct IrShape {
    int rank;
    int64_t d[NNQ_MAX_RANK];
} IrShape;

typedef enum IrDType { IR_F32, IR_I32 } IrDType;

typedef struct IrInst {
    IrOp op;
    int args[3];
    IrShape shape;
    IrDType dtype;
    int64_t attr[3];
    const char *name;   /* layer name for messages and dumps; may be NULL */
    SrcLoc loc;
} IrInst;

typedef struct IrFunc {
    const char *name;
    IrInst *insts;
    int n, cap;
    int loss, correct, logits; /* value ids, -1 when absent */
} IrFunc;
/* Floating-point operations of f's matrix products and convolutions at `batch` rows. */
int64_t ir_func_flops(const IrFunc *f, int64_t batch);
int64_t ir_func_pass_bytes(const IrFunc *f, int64_t batch); /* bytes of the passes bound by memory (ir.c) */
/* The value whose planes a forward convolution reads: its first operand, or, for a
 * dwconv2d_bn_relu, the input of the batch norm whose statistics that operand is. */
int ir_conv_input(const IrFunc *f, const IrInst *conv);

typedef enum IrInit { IR_INIT_XAVIER, IR_INIT_NORMAL } IrInit;

typedef struct IrParam {
    const char *name;           /* "dense1.w" */
    IrShape shape;              /* no batch dimension */
    int64_t count;              /* elements */
    /* `quant = ...`, as lowering found it: the projection's definition and label set
     * (NULL: none), located at proj_loc; the instantiate pass makes proj from them. */
    const AstNode *proj_def;
    const LabelSet *proj_labels;
    SrcLoc proj_loc;
    ProjInst *proj;             /* NULL until the instantiate pass */
    IrInit init;
    int64_t fan_in, fan_out;    /* Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) */
    double init_std;            /* IR_INIT_NORMAL */
    SrcLoc loc;
} IrParam;

typedef struct IrBn {
    const char *name;
    int64_t features;
} IrBn;

/* A fused per-element kernel: one loop over `count` elements that loads inputs, computes
 * SxPool nodes and stores outputs. Buffers are named per parameter by IrBufKind; from
 * IRB_AUX on they have components. IRB_CARRY holds a value of the projection at the
 * aux and beta of the next step, stored by the update (and soft) kernels and loaded by
 * the next update instead of computing it again (fuse.c). */
typedef enum IrBufKind { IRB_WEIGHT, IRB_HARD, IRB_GRAD, IRB_AUX, IRB_M, IRB_V, IRB_CARRY } IrBufKind;
/* A buffer kind's name in IR text and in a parameter's buffer names ("aux": P.aux0). */
const char *ir_buf_name(IrBufKind b);
/* The most carried values a parameter has (IRB_CARRY components). */
#define IR_MAX_CARRY 2
/* The most inputs, and the most outputs, of a kernel: gradient or weight, aux, m, v,
 * carried values. */
#define IR_KERNEL_MAX_IO (3 * NNQ_MAX_LABELS + 2 + IR_MAX_CARRY)
typedef enum IrScalar { IRS_BETA, IRS_BETA_NEXT, IRS_LR, IRS_BC1, IRS_BC2, IRS_COUNT } IrScalar;

#define IR_SCALAR_SLOT(s) (1000 + (int)(s))

typedef struct IrKernelIO {
    IrBufKind buf;
    int comp;                   /* aux / m / v / carry component */
    int node;                   /* outputs: the value stored */
} IrKernelIO;

typedef struct IrKernel {
    const char *name;           /* "update", "init", "hard", "soft" */
    int param;
    int nin, nout;
    IrKernelIO in[IR_KERNEL_MAX_IO];
    IrKernelIO out[IR_KERNEL_MAX_IO];
    /* Input slots: per-element input i is slot i; scalar s is slot IR_SCALAR_SLOT(s). */
} IrKernel;

/* memplan.c's result for one function: see memplan_func below. */
typedef struct MemPlan {
    int64_t *value, *side;
    int64_t size, total;
} MemPlan;

typedef struct IrModule {
    Arena *arena;
    Program *prog;
    const char *model;
    IrShape input;              /* per-sample input shape */
    int64_t classes;
    int nparams;
    IrParam *params;
    int nbns;
    IrBn *bns;
    IrFunc train, eval;
    /* Per parameter: [0] update (train step), [1] init, [2] hard, [3] soft (weights from aux). */
    IrKernel (*kernels)[4];
    /* Code generation: give every value and scratch buffer memory of its own instead of
     * sharing by lifetime (nnqc --no-share-memory; tests compare both layouts). */
    bool unshared_memory;
    /* The memplan pass's result: [0] train, [1] eval, at plan_batch; planned false before. */
    bool planned;
    int64_t plan_batch;
    MemPlan plan[2];
} IrModule;

/* Appends an instruction, returns its value id. */
int ir_emit(IrModule *m, IrFunc *f, IrOp op, int a, int b, IrShape shape, IrDType dt);
IrShape ir_shape(int rank, const int64_t *d);
int64_t ir_shape_elems(const IrShape *s);   /* product ignoring a leading IR_BATCH */
bool ir_shape_in_bounds(const IrShape *s);  /* dimensions and elements within IR_MAX_DIM, IR_MAX_ELEMS */
bool ir_shape_equal(const IrShape *a, const IrShape *b);
void ir_shape_format(const IrShape *s, IrDType dt, char *buf, size_t n);

/* lower.c: lowers the program's trained model to train/eval forward functions,
 * checking shapes; each parameter records its `quant = ...` (proj_def, proj_labels).
 * NULL after reporting errors. */
IrModule *lower_program(Program *prog, Diag *diag);
/* lower.c: the layers (layers.def) as the rows of docs/language.md's table (nnqc --help-layers). */
void layers_print(FILE *out);
/* instantiate.c: the instantiate pass: every parameter's projection instantiated for its label
 * set (proj.c, cached per pair), then every projection the model does not use checked
 * on its own (proj_check_unused). False after reporting errors. */
bool instantiate_module(IrModule *m, Diag *diag, const AstNode *root);
/* memplan.c: buffer offsets (in floats) into one arena for a function run at `batch`.
 * value[i], side[i]: offset of value i and of instruction i's side buffer (a maxpool's
 * argmax positions, a dropout's mask); -1 where the instruction has none or it is not planned (input,
 * labels, parameters, reshapes, gradients stored into parameters, and the values read
 * after the function returns: loss, correct, logits). size: the arena's floats; total:
 * the sum of all planned buffers, for comparison. share false: every buffer gets its
 * own memory (size == total). */
MemPlan memplan_func(const IrFunc *f, int64_t batch, bool share, Arena *arena);
/* memplan.c: the memplan pass: plans both functions at the training batch (the train
 * block's, else 100), sharing unless m->unshared_memory, into m->plan. */
void memplan_module(IrModule *m);
int64_t memplan_value_elems(const IrInst *in, int64_t batch);

/* autodiff.c: appends the backward pass to m->train (reverse mode from the loss). */
void autodiff_module(IrModule *m);
/* fuse_layers.c: bias_add + batch norm and relu_grad + bn_grad pairs become one op each
 * where nothing else reads their intermediate value (bit-identical results). */
void fuse_layers_module(IrModule *m);
/* fuse.c: builds each parameter's fused kernels from its projection and the optimizer. */
void fuse_module(IrModule *m);
/* verify.c: structural checks; false (and messages to `out`) on a failure: an internal
 * error, or with `text` (the IR text the module was read from) that file's error, at the
 * instruction. */
bool verify_module(const IrModule *m, FILE *out, const SourceFile *text);
/* arch.c: the model file's architecture record up to its ops (docs/model-format.md),
 * from m->eval, in m's arena; *len its bytes. */
unsigned char *arch_build(const IrModule *m, size_t *len);
/* ir_print.c: the readable text form documented in docs/ir.md. */
void ir_print_module(const IrModule *m, FILE *out);
/* ir_parse.c: that text read back, in the context of a checked program (projections,
 * train settings); *after_pass: the pipeline index of the pass it was printed after.
 * NULL after reporting errors (FILE:LINE:COL, with the line). */
IrModule *ir_parse(Program *prog, const SourceFile *src, int *after_pass, Diag *diag);

#endif
