/* sx.h — scalar expression DAGs: the per-element programs of fused parameter updates.
 *
 * An SxPool holds nodes (referenced by int id) built through sx_* constructors that
 * hash-cons (structurally equal nodes are one node) and simplify as they go (constant
 * folding, x+0, x*1, select on a constant condition, signs pulled out of products,
 * quotients and sums of negations: only rewrites that hold for inf and NaN too, so never
 * x*0, x-x or 0/x), so derived expressions stay small. The
 * pool owns all nodes; ids stay valid until sx_pool_free.
 *
 * sx_grad derives reverse-mode derivatives symbolically: new nodes in the same pool.
 * sx_eval evaluates in double precision: the reference the JIT-compiled code and the
 * finite-difference checks are compared with.
 */
#ifndef NNQ_SX_H
#define NNQ_SX_H

#include <stdbool.h>
#include <stdio.h>

typedef enum SxOp {
#define SX_OP(name, text, arity, diff, doc) SX_##name,
#include "sx_ops.def"
#undef SX_OP
    SX_OP_COUNT
} SxOp;

typedef struct SxNode {
    SxOp op;
    int a, b, c;   /* operands (ids), -1 when unused */
    int slot;      /* SX_INPUT: input slot; SX_VAR: variable number */
    double value;  /* SX_CONST */
    int depth;     /* the nodes on the longest path down to a leaf, itself included */
} SxNode;

/* The deepest expression a projection may define (SxNode.depth, its soft values'
 * definitions substituted: proj.c refuses more). The passes over a projection's
 * expressions (rebuilds, derivatives, code generation) recurse once a level, and a chain
 * of 50,000 soft values overflowed the stack; derived expressions are a few times as deep
 * as the definitions they come from. */
#define SX_MAX_DEPTH 1000
/* The deepest value a kernel read from IR text may hold (ir_parse.c refuses more): the
 * kernels nnqc derives from projections within SX_MAX_DEPTH are a few times as deep
 * (3,006 for a chain of 1,000 tanh whose update sums three gradients). */
#define SX_KERNEL_MAX_DEPTH 10000

typedef struct SxPool SxPool;

SxPool *sx_pool_new(void);
void sx_pool_free(SxPool *pool);
const SxNode *sx_node(const SxPool *pool, int id);
int sx_count(const SxPool *pool);

const char *sx_op_name(SxOp op);
int sx_op_arity(SxOp op);
bool sx_op_differentiable(SxOp op);

int sx_const(SxPool *pool, double v);
int sx_input(SxPool *pool, int slot);
int sx_var(SxPool *pool, int var);
int sx_unary(SxPool *pool, SxOp op, int a);
int sx_binary(SxPool *pool, SxOp op, int a, int b);
int sx_select(SxPool *pool, int cond, int a, int b);
bool sx_is_const(const SxPool *pool, int id, double *value);
/* The operand of a negation, or -1 where `id` is not one. */
int sx_negated(const SxPool *pool, int id);

/* Reverse mode: given roots[i] with seeds[i] (adjoint node ids), returns in out[j] the
 * adjoint node of leaf wrt[j] (a VAR or INPUT node); the constant 0 where wrt[j] has no
 * path to a root. A quotient by exp(x) + k is differentiated through its own value
 * (-r (1 - k / b) per unit of x), so sigmoids stay finite at any beta. */
void sx_grad(SxPool *pool, int nroots, const int *roots, const int *seeds,
             int nwrt, const int *wrt, int *out);

/* Rebuilds `id` with every VAR v replaced by subst[v] (subst[v] < 0: kept). */
int sx_subst(SxPool *pool, int id, const int *subst, int nsubst);

/* Rebuilds `id` with each node from[i] replaced by to[i]. */
int sx_replace(SxPool *pool, int id, const int *from, const int *to, int n);

/* Rebuilds `id` with the two exps of each softmax over two labels, exp(x - max(p, q))
 * for x = p and x = q, written through one: exp(-|p - q|) for the smaller, 1 for the
 * larger (a select; the same bits). */
int sx_pair_exps(SxPool *pool, int id);

/* Rebuilds roots[0 .. n - 1] (one kernel's outputs) in place with every division by a
 * node that more than one of their divisions divides by, a / d, as a * (1 / d): one
 * division where there were several (what LLVM does for divisions marked `arcp`; a SIMD
 * division costs a dozen multiplications' throughput). Each quotient moves by at most
 * one ulp. A projection's softmax and its gradient divide by the same sum three times. */
void sx_reciprocals(SxPool *pool, int *roots, int n);

/* Sets mark[i] for every node `id` reaches, itself included (mark: at least id + 1
 * entries; marks already set stay, so several calls mark what any of their roots reach). */
void sx_reach(const SxPool *pool, int id, char *mark);

/* Does `id` depend on VAR/INPUT node `leaf`? */
bool sx_depends(const SxPool *pool, int id, int leaf);

/* Evaluates with inputs[slot] and vars[var]. */
double sx_eval(const SxPool *pool, int id, const double *inputs, const double *vars);

/* Writes an infix rendering, e.g. "(a0 * 2)", naming inputs through names[slot]. */
void sx_print(const SxPool *pool, int id, const char *const *input_names, FILE *out);

#endif
