/* fuse.c — fused parameter updates. For every parameter tensor this pass builds the
 * per-element programs the code generator turns into single loops over memory:
 *
 *   update: g -> projection gradient (derived in proj.c) -> weight decay -> optimizer
 *           step (SGD / momentum / Adam; AdamW adds its decay to the normalized step)
 *           -> `after` -> new forward weight (next beta); two aux components with
 *           opposite gradients (a two-label softmax's) share one set of moments
 *   init:   w0 -> aux                        hard: aux -> hard weight
 *   soft:   aux -> forward weight (after init, and after restoring a kept model), and
 *           the values the next update carries in (below; or the weight itself)
 *
 * The code generator runs soft right after init: the forward weight is the same
 * expression of the same aux values either way (init stores them as f32, soft loads
 * them), so the same bits, and the projection's forward (a softmax's exps) is compiled
 * once instead of twice: 20-25 ms of a binary PMF MLP's 230 ms of LLVM time.
 *
 * Requires: a lowered IrModule whose parameters carry instantiated projections and a
 * Program with a TrainConfig (defaults otherwise). Produces: m->kernels. Everything is
 * built in the program's SxPool by substituting the projection's VARs, so the whole
 * update is one expression DAG and shared subexpressions are computed once. */
#include <assert.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* Capacity: proj.c caps a projection at NNQ_MAX_LABELS aux components, so a kernel has
 * at most IR_KERNEL_MAX_IO inputs and outputs (gradient or weight, aux, m, v, carried
 * values). */
static int add_in(IrKernel *k, IrBufKind buf, int comp) {
    assert(k->nin < (int)(sizeof k->in / sizeof k->in[0]));
    k->in[k->nin] = (IrKernelIO){buf, comp, -1};
    return k->nin++;
}

static void add_out(IrKernel *k, IrBufKind buf, int comp, int node) {
    assert(k->nout < (int)(sizeof k->out / sizeof k->out[0]));
    k->out[k->nout++] = (IrKernelIO){buf, comp, node};
}

static int scalar(SxPool *p, IrScalar s) { return sx_input(p, IR_SCALAR_SLOT(s)); }

/* ---- carried values ----
 * The update computes the projection twice: at this step's aux and beta for the
 * gradient (a softmax's exps and the division by their sum for its Jacobian), and at the
 * new aux and beta_next for the new weight, which the next update computes again from
 * the same f32 aux and the same beta. So where every exp and division of the aux and
 * beta alone that the gradient uses (at most IR_MAX_CARRY) has a twin at the new aux
 * and beta_next that the new weight computes anyway, those values are carried: the
 * update stores the twins in carry buffers for the next update to load instead of their
 * polynomials and divisions, and the soft kernel (after init and after a kept model is
 * restored) stores its own. Where divisions would remain, the exps alone, where they
 * can be. The same bits, for 8 bytes an element moved each. Binary PMF: its one exp
 * (sx_pair_exps) and its sum's reciprocal (sx_reciprocals), and the gradient's stage
 * computes neither (update_bench, AVX2, 1 thread: the exp 1.32-1.39 -> 1.05-1.12 ns an
 * element, the reciprocal too 1.06 -> 0.96; AVX-512 0.55 -> 0.51). Not where exps would
 * remain (a softmax over three labels: measured no faster with two of its three
 * carried), nor for tanh (gd_tanh: no faster). */

/* What each of update kernel u's aux inputs and beta (cur[0 .. n - 1]) is at the next
 * step: the aux output of its component (outs[]: u's output expressions), beta_next;
 * false where a leaf is of neither kind. */
static bool next_values(SxPool *p, const IrKernel *u, const int *outs, const int *cur, int n, int *next) {
    for (int i = 0; i < n; i++) {
        const SxNode *leaf = sx_node(p, cur[i]);
        next[i] = leaf->slot == IR_SCALAR_SLOT(IRS_BETA) ? scalar(p, IRS_BETA_NEXT) : -1;
        for (int o = 0; o < u->nout && next[i] < 0; o++)
            if (u->out[o].buf == IRB_AUX && u->in[leaf->slot].buf == IRB_AUX && u->in[leaf->slot].comp == u->out[o].comp)
                next[i] = outs[o];
        if (next[i] < 0) return false;
    }
    return true;
}

/* ---- the weight, carried ----
 * Where the gradient computes, at this step's aux and beta, exactly the expression the
 * update stores as the new weight at the new aux and beta_next (gd_tanh over {-1, +1}:
 * tanh(beta a) for its Jacobian beta (1 - tanh^2)), the weight buffer already holds
 * that value: the previous update stored it from the same f32 aux and beta, and the
 * soft kernel after init and after a restore (a checkpoint holds the weight). The update
 * loads it instead of computing it: the same bits, for 4 bytes read an element and no
 * buffer of its own (update_bench and the MLP measured in docs/speed-log.md). */
static bool carry_weight(SxPool *p, IrKernel *u, const int *cur, int n) {
    int w = 0, outs[IR_KERNEL_MAX_IO], next[NNQ_MAX_LABELS + 1];
    while (u->out[w].buf != IRB_WEIGHT) w++;
    for (int o = 0; o < u->nout; o++) outs[o] = u->out[o].node;
    if (!next_values(p, u, outs, cur, n, next)) return false;
    int before = sx_replace(p, u->out[w].node, next, cur, n); /* the weight at this step's values */
    char *grad_side = calloc(sx_count(p), 1);
    for (int o = 0; o < u->nout; o++)
        if (o != w) sx_reach(p, u->out[o].node, grad_side);
    /* a value computed from them (float's weight is its aux: nothing to save) */
    bool found = before != u->out[w].node && grad_side[before] && sx_node(p, before)->op != SX_INPUT;
    free(grad_side);
    if (!found) return false;
    int in = sx_input(p, u->nin);
    add_in(u, IRB_WEIGHT, 0);
    for (int o = 0; o < u->nout; o++) /* the new weight too: through its aux output */
        u->out[o].node = sx_replace(p, u->out[o].node, &before, &in, 1);
    return true;
}

/* Whether every input `id` reaches is one of leaf[0 .. n - 1] (mark: scratch). */
static bool only_leaves(const SxPool *p, int id, const int *leaf, int n, char *mark) {
    memset(mark, 0, sx_count(p));
    sx_reach(p, id, mark);
    for (int i = 0; i <= id; i++) {
        if (!mark[i] || sx_node(p, i)->op != SX_INPUT) continue;
        bool found = false;
        for (int j = 0; j < n; j++) found |= leaf[j] == i;
        if (!found) return false;
    }
    return true;
}

/* The gradient side's exp (or with divisions, exp or division) of cur[] alone with the
 * highest id (outputs outs[], the new weight outs[w] not included), or -1. */
static int next_carry(const SxPool *p, const IrKernel *u, const int *outs, int w, const int *cur, int n, bool divisions) {
    int count = sx_count(p), found = -1;
    char *grad_side = calloc(count, 1), *scratch = calloc(count, 1);
    for (int o = 0; o < u->nout; o++)
        if (o != w) sx_reach(p, outs[o], grad_side);
    for (int id = count - 1; id >= 0 && found < 0; id--)
        if (grad_side[id] && (sx_node(p, id)->op == SX_EXP || (divisions && sx_node(p, id)->op == SX_DIV)) &&
            only_leaves(p, id, cur, n, scratch))
            found = id;
    free(grad_side);
    free(scratch);
    return found;
}

/* Carries the exps (with divisions, and divisions) of update kernel u (its aux inputs
 * and beta: cur[0 .. n - 1]) if it can carry them all, storing the soft kernel's own
 * values (over its aux inputs and beta: soft_leaf[]) in s. Whether it did. */
static bool carry_values(SxPool *p, IrKernel *u, IrKernel *s, const int *cur, const int *soft_leaf, int n, bool divisions) {
    int w = 0, outs[IR_KERNEL_MAX_IO], found[IR_MAX_CARRY], nfound = 0;
    while (u->out[w].buf != IRB_WEIGHT) w++;
    for (int o = 0; o < u->nout; o++) outs[o] = u->out[o].node;
    for (int e; (e = next_carry(p, u, outs, w, cur, n, divisions)) >= 0;) {
        if (nfound == IR_MAX_CARRY) return false; /* some would remain */
        int in = sx_input(p, u->nin + nfound);
        for (int o = 0; o < u->nout; o++) outs[o] = sx_replace(p, outs[o], &e, &in, 1);
        found[nfound++] = e;
    }
    /* each exp's twin over the new aux outputs and beta_next, computed for the weight */
    int next[NNQ_MAX_LABELS + 1], twin[IR_MAX_CARRY];
    if (!next_values(p, u, outs, cur, n, next)) return false;
    bool computed = true;
    for (int j = 0; j < nfound; j++) twin[j] = sx_replace(p, found[j], cur, next, n); /* may add nodes */
    char *weight_side = calloc(sx_count(p), 1);
    sx_reach(p, outs[w], weight_side);
    for (int j = 0; j < nfound; j++) computed &= twin[j] != found[j] && weight_side[twin[j]];
    free(weight_side);
    if (!computed) return false;
    for (int o = 0; o < u->nout; o++) u->out[o].node = outs[o];
    for (int j = 0; j < nfound; j++) {
        add_in(u, IRB_CARRY, j);
        add_out(u, IRB_CARRY, j, twin[j]);
        add_out(s, IRB_CARRY, j, sx_replace(p, found[j], cur, soft_leaf, n));
    }
    return nfound > 0;
}

void fuse_module(IrModule *m) {
    SxPool *p = m->prog->pool;
    const TrainConfig *tc = m->prog->train;
    TrainConfig defaults = {0}; /* the table sets the defaults, the rest is zero */
    train_config_defaults(&defaults); /* a program without a train block */
    if (!tc) tc = &defaults;
    for (int pi = 0; pi < m->nparams; pi++) {
        IrParam *par = &m->params[pi];
        ProjInst *pr = par->proj;
        int K = pr->ncomp;
        assert(K >= 1 && K <= NNQ_MAX_LABELS);
        int nvar = PV_AUX + K;
        int subst[PV_AUX + NNQ_MAX_LABELS];

        /* ---- update ---- */
        IrKernel *k = &m->kernels[pi][0];
        memset(k, 0, sizeof *k);
        k->name = "update";
        k->param = pi;
        int gw = sx_input(p, add_in(k, IRB_GRAD, 0));
        int a[NNQ_MAX_LABELS], mo[NNQ_MAX_LABELS], ve[NNQ_MAX_LABELS];
        for (int c = 0; c < K; c++) a[c] = sx_input(p, add_in(k, IRB_AUX, c));
        bool use_m = train_keeps_m(tc), use_v = train_keeps_v(tc);
        for (int v = 0; v < nvar; v++) subst[v] = -1;
        subst[PV_BETA] = scalar(p, IRS_BETA);
        subst[PV_GW] = gw;
        for (int c = 0; c < K; c++) subst[PV_AUX + c] = a[c];
        int anew[NNQ_MAX_LABELS], deltas[NNQ_MAX_LABELS];
        /* Parameter groups: the last matching group sets this tensor's weight decay and
         * scales its learning rate (the schedule applies to every group alike). */
        double wd = tc->weight_decay, lr_scale = 1;
        for (int gi = 0; gi < tc->ngroups; gi++) {
            const ParamGroup *grp = &tc->groups[gi];
            if (fnmatch(grp->pattern, par->name, 0) != 0) continue;
            if (grp->has_weight_decay) wd = grp->weight_decay;
            if (grp->has_lr) lr_scale = grp->lr / tc->lr;
        }
        /* L2 weight decay joins the gradient; adamw's is added to the normalized step */
        bool decoupled = tc->opt == OPT_ADAM && tc->decoupled_decay;
        int lr = scalar(p, IRS_LR);
        if (lr_scale != 1) lr = sx_binary(p, SX_MUL, lr, sx_const(p, lr_scale));
        int grads[NNQ_MAX_LABELS];
        for (int c = 0; c < K; c++) {
            int g = sx_subst(p, pr->grad[c], subst, nvar);
            if (wd != 0 && !decoupled) g = sx_binary(p, SX_ADD, g, sx_binary(p, SX_MUL, sx_const(p, wd), a[c]));
            grads[c] = g;
        }
        /* Two opposite gradients, one written as the other negated (proj.c: two aux
         * components through a softmax; grad(u) of a softmax over {-1, +1}), from moments
         * that start at zero, give opposite first moments and equal second moments at
         * every step. So only one component's moments are kept: the other's are those
         * negated or not, and with sx.c's sign rules its moment and step nodes are the
         * kept component's. */
        int keep = K == 2 && sx_negated(p, grads[1]) == grads[0]   ? 0
                   : K == 2 && sx_negated(p, grads[0]) == grads[1] ? 1
                                                                   : -1;
        for (int c = 0; c < K && use_m; c++)
            if (keep < 0 || c == keep) mo[c] = sx_input(p, add_in(k, IRB_M, c));
        for (int c = 0; c < K && use_v; c++)
            if (keep < 0 || c == keep) ve[c] = sx_input(p, add_in(k, IRB_V, c));
        if (keep >= 0) {
            mo[1 - keep] = use_m ? sx_unary(p, SX_NEG, mo[keep]) : -1;
            ve[1 - keep] = use_v ? ve[keep] : -1;
        }
        for (int c = 0; c < K; c++) {
            bool kept = keep < 0 || c == keep;
            int g = grads[c];
            int step;
            if (tc->opt == OPT_ADAM) {
                int m1 = sx_binary(p, SX_ADD, sx_binary(p, SX_MUL, sx_const(p, tc->beta1), mo[c]),
                                   sx_binary(p, SX_MUL, sx_const(p, 1 - tc->beta1), g));
                int v1 = sx_binary(p, SX_ADD, sx_binary(p, SX_MUL, sx_const(p, tc->beta2), ve[c]),
                                   sx_binary(p, SX_MUL, sx_const(p, 1 - tc->beta2),
                                             sx_binary(p, SX_MUL, g, g)));
                if (kept) add_out(k, IRB_M, c, m1);
                if (kept) add_out(k, IRB_V, c, v1);
                int mhat = sx_binary(p, SX_MUL, m1, scalar(p, IRS_BC1));
                int vhat = sx_binary(p, SX_MUL, v1, scalar(p, IRS_BC2));
                step = sx_binary(p, SX_DIV, mhat,
                                 sx_binary(p, SX_ADD, sx_unary(p, SX_SQRT, vhat), sx_const(p, tc->eps)));
                if (wd != 0 && decoupled) step = sx_binary(p, SX_ADD, step, sx_binary(p, SX_MUL, sx_const(p, wd), a[c]));
            } else if (use_m) {
                int m1 = sx_binary(p, SX_ADD, sx_binary(p, SX_MUL, sx_const(p, tc->momentum), mo[c]), g);
                if (kept) add_out(k, IRB_M, c, m1);
                step = m1;
            } else {
                step = g;
            }
            deltas[c] = sx_binary(p, SX_MUL, lr, step);
        }
        /* The move: a - delta, or the projection's own (a mirror step). */
        int nmv = pr->delta_var0 + K;
        int *mv = malloc(sizeof(int) * nmv);
        for (int v = 0; v < nmv; v++) mv[v] = -1;
        mv[PV_BETA] = scalar(p, IRS_BETA);
        for (int c = 0; c < K; c++) {
            mv[PV_AUX + c] = a[c];
            mv[pr->delta_var0 + c] = deltas[c];
        }
        for (int c = 0; c < K; c++)
            anew[c] = pr->move[c] >= 0 ? sx_subst(p, pr->move[c], mv, nmv)
                                       : sx_binary(p, SX_SUB, a[c], deltas[c]);
        free(mv);
        for (int c = 0; c < K; c++) subst[PV_AUX + c] = anew[c];
        int after[NNQ_MAX_LABELS];
        for (int c = 0; c < K; c++) after[c] = sx_subst(p, pr->after[c], subst, nvar);
        for (int c = 0; c < K; c++) {
            add_out(k, IRB_AUX, c, after[c]);
            subst[PV_AUX + c] = after[c];
        }
        subst[PV_BETA] = scalar(p, IRS_BETA_NEXT);
        add_out(k, IRB_WEIGHT, 0, sx_subst(p, pr->weight, subst, nvar));

        /* ---- init: the grad buffer holds the w0 draw ---- */
        k = &m->kernels[pi][1];
        memset(k, 0, sizeof *k);
        k->name = "init";
        k->param = pi;
        for (int v = 0; v < nvar; v++) subst[v] = -1;
        subst[PV_W0] = sx_input(p, add_in(k, IRB_GRAD, 0));
        subst[PV_W0STD] = sx_const(p, par->init == IR_INIT_XAVIER
                                          ? sqrt(6.0 / (double)(par->fan_in + par->fan_out)) / sqrt(3.0)
                                          : par->init_std);
        subst[PV_BETA] = scalar(p, IRS_BETA);
        int a0[NNQ_MAX_LABELS];
        for (int c = 0; c < K; c++) a0[c] = sx_subst(p, pr->init[c], subst, nvar);
        for (int c = 0; c < K; c++) add_out(k, IRB_AUX, c, a0[c]);

        /* ---- hard and soft ---- */
        for (int which = 2; which <= 3; which++) {
            k = &m->kernels[pi][which];
            memset(k, 0, sizeof *k);
            k->name = which == 2 ? "hard" : "soft";
            k->param = pi;
            for (int v = 0; v < nvar; v++) subst[v] = -1;
            subst[PV_BETA] = scalar(p, IRS_BETA);
            for (int c = 0; c < K; c++) subst[PV_AUX + c] = sx_input(p, add_in(k, IRB_AUX, c));
            add_out(k, which == 2 ? IRB_HARD : IRB_WEIGHT, 0,
                    sx_subst(p, which == 2 ? pr->hard : pr->weight, subst, nvar));
        }

        /* ---- a two-label softmax's exps through one, one reciprocal per divisor
         * (sx.c); carried values ---- */
        for (int which = 0; which < 4; which++) {
            k = &m->kernels[pi][which];
            int roots[IR_KERNEL_MAX_IO];
            for (int o = 0; o < k->nout; o++) roots[o] = sx_pair_exps(p, k->out[o].node);
            sx_reciprocals(p, roots, k->nout);
            for (int o = 0; o < k->nout; o++) k->out[o].node = roots[o];
        }
        int cur[NNQ_MAX_LABELS + 1], soft_leaf[NNQ_MAX_LABELS + 1];
        for (int c = 0; c < K; c++) {
            cur[c] = a[c];
            soft_leaf[c] = sx_input(p, c); /* the soft kernel's inputs are its aux */
        }
        cur[K] = soft_leaf[K] = scalar(p, IRS_BETA);
        if (carry_weight(p, &m->kernels[pi][0], cur, K + 1)) continue;
        if (carry_values(p, &m->kernels[pi][0], &m->kernels[pi][3], cur, soft_leaf, K + 1, true)) continue;
        carry_values(p, &m->kernels[pi][0], &m->kernels[pi][3], cur, soft_leaf, K + 1, false);
    }
}
