/* proj.c — projection instantiation: turns a `projection` definition and a label set
 * into scalar expressions (sx.h) per parameter element, and derives every grad(x) the
 * definition asks for by symbolic reverse mode.
 *
 * Requires: a checked Program (label sets resolved). Produces: a cached ProjInst whose
 * expressions are over the VARs PV_BETA, PV_GW, PV_W0, PV_W0STD and PV_AUX + k.
 *
 * Values in a projection are scalars or vectors of |Q| scalars ("per label"); vector
 * functions (softmax, sum, argmax, ...) are unrolled over the labels, which |Q| being a
 * compile-time constant allows. Named values (soft, weight) are first bound to
 * placeholder VARs so that grad(x) means the partial derivative with respect to x
 * itself; placeholders are substituted away at the end. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "program.h"

typedef struct PVal {
    int n;                      /* 0: error; 1: scalar; > 1: vector */
    bool is_labels;             /* a label set used as a value */
    const LabelSet *labels;
    int c[NNQ_MAX_LABELS];
} PVal;

typedef struct Named Named;
struct Named {
    const char *name;
    const AstNode *node;        /* defining statement */
    int kind;                   /* AST_AUX, AST_SOFT, AST_WEIGHT */
    int n;                      /* components */
    int var0;                   /* first VAR (placeholder or aux VAR) */
    int *def;                   /* [n] definition over earlier VARs (soft/weight) */
};

typedef struct PCtx {
    Program *prog;
    Diag *diag;
    SxPool *pool;
    const AstNode *def;
    const LabelSet *q;
    const char *qname;          /* the label-set parameter's name, or NULL */
    SrcLoc use;
    Named *names;               /* [nnamed], grown by add_named; freed by proj_instantiate */
    int nnamed, cap_named;
    int nvars;
    bool allow_w0, allow_grad, allow_delta;
    int dbase;                  /* `delta` VARs (move): dbase + aux component */
    Named *move_aux;     /* the aux a `move` statement defines */
    int weight_named;           /* index of the weight value in names[], -1 before */
    int gbase;                  /* grad(x) VARs: gbase + (VAR of x) */
    int *adj;                   /* per VAR adjoint (after derivation), -1 = none */
    int *full;                  /* [cap_full] by VAR: a placeholder's full definition, -1 others */
    int cap_full;
    bool failed;
} PCtx;

static PVal pv_error(void) {
    PVal v;
    memset(&v, 0, sizeof v);
    return v;
}

static PVal pv_scalar(int node) {
    PVal v = pv_error();
    v.n = 1;
    v.c[0] = node;
    return v;
}

static void perr(PCtx *cx, SrcLoc loc, const char *fmt, const char *a, const char *b) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    diag_error(cx->diag, loc, "%s", msg);
    if (cx->use.file) diag_note(cx->diag, cx->use, "in projection '%s' used here", cx->def->name);
    cx->failed = true;
}

static Named *find_named(PCtx *cx, const char *name) {
    for (int i = 0; i < cx->nnamed; i++)
        if (strcmp(cx->names[i].name, name) == 0) return &cx->names[i];
    return NULL;
}

static PVal eval(PCtx *cx, const AstNode *e);

/* Elementwise combination with scalar broadcasting. */
static PVal zip(PCtx *cx, const AstNode *at, SxOp op, PVal x, PVal y) {
    if (!x.n || !y.n) return pv_error();
    if (x.n > 1 && y.n > 1 && x.n != y.n) {
        char a[32], b[160];
        const PVal *ls = y.is_labels ? &y : x.is_labels ? &x : NULL;
        if (ls) { /* e.g. an aux sized for another label set */
            snprintf(a, sizeof a, "%d", ls == &y ? x.n : y.n);
            snprintf(b, sizeof b, "label set '%s' has %d", ls->labels->name, ls->n);
            perr(cx, at->loc, "this has %s values per element, but the %s labels", a, b);
        } else {
            snprintf(a, sizeof a, "%d", x.n);
            snprintf(b, sizeof b, "%d", y.n);
            perr(cx, at->loc, "operands have different lengths (%s and %s)", a, b);
        }
        return pv_error();
    }
    PVal r = pv_error();
    r.n = x.n > y.n ? x.n : y.n;
    for (int i = 0; i < r.n; i++) {
        int a = x.c[x.n == 1 ? 0 : i], b = y.c[y.n == 1 ? 0 : i];
        r.c[i] = sx_binary(cx->pool, op, a, b);
    }
    return r;
}

static int reduce(PCtx *cx, SxOp op, PVal v) {
    int acc = v.c[0];
    for (int i = 1; i < v.n; i++) acc = sx_binary(cx->pool, op, acc, v.c[i]);
    return acc;
}

/* Index of the first maximum, as a float. */
static int argmax_node(PCtx *cx, PVal v) {
    SxPool *p = cx->pool;
    int best = v.c[0], idx = sx_const(p, 0);
    for (int i = 1; i < v.n; i++) {
        int better = sx_binary(p, SX_LT, best, v.c[i]);
        idx = sx_select(p, better, sx_const(p, i), idx);
        best = sx_select(p, better, v.c[i], best);
    }
    return idx;
}

/* The values an index can take: whole numbers from lo to hi. */
typedef struct Span {
    double lo, hi;
} Span;

/* Whether node `id` takes whole values only, and which (*out, by interval arithmetic:
 * it may hold values the node never takes, never miss one). Whole constants; comparisons
 * and logic (0 or 1) and sign (-1 to 1); sums, differences, products, negations, abs,
 * min, max and selects of whole values (argmax is a select chain of constants); a soft or
 * weight name by its definition. Not aux values, beta, w0, quotients or the
 * transcendental functions. memo[i]: 0 not yet known, 1 whole (its span in span[i]),
 * 2 not (both at least sx_count entries). */
static bool whole_span(PCtx *cx, int id, char *memo, Span *span, Span *out) {
    if (memo[id]) {
        *out = span[id];
        return memo[id] == 1;
    }
    const SxNode *n = sx_node(cx->pool, id);
    bool r = false;
    Span a = {0, 0}, b = {0, 0}, s = {0, 0};
    switch (n->op) {
    case SX_CONST:
        r = isfinite(n->value) && n->value == floor(n->value);
        s = (Span){n->value, n->value};
        break;
    case SX_LT: case SX_LE: case SX_EQ: case SX_NE: case SX_AND: case SX_OR: case SX_NOT:
        r = true, s = (Span){0, 1};
        break;
    case SX_SIGN: r = true, s = (Span){-1, 1}; break;
    case SX_ADD: case SX_SUB: case SX_MUL: case SX_MAX: case SX_MIN:
        r = whole_span(cx, n->a, memo, span, &a) && whole_span(cx, n->b, memo, span, &b);
        if (n->op == SX_ADD) s = (Span){a.lo + b.lo, a.hi + b.hi};
        else if (n->op == SX_SUB) s = (Span){a.lo - b.hi, a.hi - b.lo};
        else if (n->op == SX_MAX) s = (Span){fmax(a.lo, b.lo), fmax(a.hi, b.hi)};
        else if (n->op == SX_MIN) s = (Span){fmin(a.lo, b.lo), fmin(a.hi, b.hi)};
        else {
            double p[4] = {a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi};
            s = (Span){fmin(fmin(p[0], p[1]), fmin(p[2], p[3])), fmax(fmax(p[0], p[1]), fmax(p[2], p[3]))};
        }
        break;
    case SX_NEG: case SX_ABS: case SX_NOGRAD:
        r = whole_span(cx, n->a, memo, span, &a);
        if (n->op == SX_NOGRAD) s = a;
        else if (n->op == SX_NEG) s = (Span){-a.hi, -a.lo};
        else s = a.lo >= 0 ? a : a.hi <= 0 ? (Span){-a.hi, -a.lo} : (Span){0, fmax(-a.lo, a.hi)};
        break;
    case SX_SELECT:
        r = whole_span(cx, n->b, memo, span, &a) && whole_span(cx, n->c, memo, span, &b);
        s = (Span){fmin(a.lo, b.lo), fmax(a.hi, b.hi)};
        break;
    case SX_VAR:
        for (int i = 0; i < cx->nnamed; i++) {
            const Named *nm = &cx->names[i];
            if (nm->def && n->slot >= nm->var0 && n->slot < nm->var0 + nm->n) {
                r = whole_span(cx, nm->def[n->slot - nm->var0], memo, span, &s);
                break;
            }
        }
        break;
    default: break;
    }
    memo[id] = r ? 1 : 2;
    span[id] = *out = s;
    return r;
}

/* v[i] for a scalar index node: a select chain, or the element itself when i is a
 * constant, which must then be a whole number in [0, n), checked on the double ((int) of
 * a huge, infinite or NaN value is undefined); a computed index must take whole values
 * from 0 to n - 1 only (whole_span). An error at `at` otherwise, and -1. */
static int pick(PCtx *cx, PVal v, int index, SrcLoc at) {
    SxPool *p = cx->pool;
    double ci;
    if (sx_is_const(p, index, &ci)) {
        if (ci >= 0 && ci < v.n && ci == (int)ci) return v.c[(int)ci];
        char got[32], range[64];
        snprintf(got, sizeof got, isnan(ci) ? "NaN" : "%g", ci);
        snprintf(range, sizeof range, v.n == 1 ? "0 (one value)" : "one of 0 to %d (%d values)", v.n - 1, v.n);
        perr(cx, at, "constant index %s is not %s", got, range);
        return -1;
    }
    char *memo = calloc((size_t)sx_count(p), 1);
    Span *span = malloc((size_t)sx_count(p) * sizeof *span), range;
    assert(memo && span);
    bool whole = whole_span(cx, index, memo, span, &range);
    free(memo), free(span);
    if (!whole) {
        perr(cx, at,
             "this index can take values that are not whole numbers; an index is a whole constant, a "
             "comparison, argmax(...), or a sum, product or `if` of such",
             NULL, NULL);
        return -1;
    }
    if (range.lo < 0 || range.hi > v.n - 1) {
        char msg[192];
        snprintf(msg, sizeof msg,
                 "this index can take values from %g to %g, outside the %d positions of the vector "
                 "(0 to %d); clamp(index, 0, %d) bounds it",
                 range.lo + 0.0, range.hi + 0.0, v.n, v.n - 1, v.n - 1);
        perr(cx, at, "%s", msg, NULL);
        return -1;
    }
    int r = v.c[v.n - 1];
    for (int i = v.n - 2; i >= 0; i--)
        r = sx_select(p, sx_binary(p, SX_EQ, index, sx_const(p, i)), v.c[i], r);
    return r;
}

static bool want_args(PCtx *cx, const AstNode *call, int lo, int hi) {
    if (call->nkids >= lo && call->nkids <= hi) {
        for (int i = 0; i < call->nkids; i++)
            if (call->kids[i]->kind == AST_NAMED_ARG) {
                perr(cx, call->kids[i]->loc, "'%s' takes no named arguments", call->name, NULL);
                return false;
            }
        return true;
    }
    char msg[160];
    if (lo == hi)
        snprintf(msg, sizeof msg, "'%s' takes %d argument%s, got %d", call->name, lo,
                 lo == 1 ? "" : "s", call->nkids);
    else
        snprintf(msg, sizeof msg, "'%s' takes %d to %d arguments, got %d", call->name, lo, hi,
                 call->nkids);
    perr(cx, call->loc, "%s", msg, NULL);
    return false;
}

static PVal labels_value(PCtx *cx, const LabelSet *q) {
    PVal v = pv_error();
    v.n = q->k;
    v.is_labels = true;
    v.labels = q;
    for (int i = 0; i < q->k; i++) v.c[i] = sx_const(cx->pool, q->q[i]);
    return v;
}

static const LabelSet *want_labels(PCtx *cx, const AstNode *call, PVal v) {
    if (v.n && v.is_labels) return v.labels;
    if (v.n) perr(cx, call->loc, "'%s' needs a label set argument", call->name, NULL);
    return NULL;
}

/* ---- built-in functions: one per row of proj_builtins.def ---- */

static PVal bi_map(PCtx *cx, const AstNode *e, SxOp op) {
    PVal x = eval(cx, e->kids[0]);
    PVal r = x;
    r.is_labels = false;
    for (int j = 0; j < x.n; j++) r.c[j] = sx_unary(cx->pool, op, x.c[j]);
    return r;
}

static PVal bi_grad(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    const AstNode *x = e->kids[0];
    if (!cx->allow_grad) {
        perr(cx, e->loc, "grad(...) is only allowed in an `update` statement", NULL, NULL);
        return pv_error();
    }
    Named *nm = x->kind == AST_IDENT ? find_named(cx, x->name) : NULL;
    if (!nm) {
        perr(cx, x->loc, "grad(...) needs the name of an aux, soft or weight value", NULL, NULL);
        return pv_error();
    }
    PVal r = pv_error();
    r.n = nm->n;
    /* VAR gbase + v stands for the adjoint of VAR v until the update is resolved. */
    for (int j = 0; j < nm->n; j++) r.c[j] = sx_var(cx->pool, cx->gbase + nm->var0 + j);
    return r;
}

static PVal bi_softmax(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    SxPool *p = cx->pool;
    PVal x = eval(cx, e->kids[0]);
    if (!x.n) return x;
    /* softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m), m = max(x) held constant for
     * the derivative (softmax is shift invariant, so this is exact). */
    int m = sx_unary(p, SX_NOGRAD, reduce(cx, SX_MAX, x));
    PVal ex = x;
    ex.is_labels = false;
    for (int j = 0; j < x.n; j++) ex.c[j] = sx_unary(p, SX_EXP, sx_binary(p, SX_SUB, x.c[j], m));
    int s = reduce(cx, SX_ADD, ex);
    for (int j = 0; j < x.n; j++) ex.c[j] = sx_binary(p, SX_DIV, ex.c[j], s);
    return ex;
}

static PVal bi_sparsemax(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    SxPool *p = cx->pool;
    PVal z = eval(cx, e->kids[0]);
    if (!z.n) return z;
    /* Euclidean projection onto the simplex: u = max(z - tau, 0) with
     * tau = max_k (sum_{j: z_j >= z_k} z_j - 1) / #{j: z_j >= z_k}, unrolled over the
     * labels (no sort). Comparisons carry no derivative, so the derived Jacobian is
     * diag(s) - s s^T / |s| on the support s, as in PGD. */
    int tau = -1;
    for (int k = 0; k < z.n; k++) {
        int cnt = sx_const(p, 0), sum = sx_const(p, -1);
        for (int j = 0; j < z.n; j++) {
            int in = sx_binary(p, SX_LE, z.c[k], z.c[j]);
            cnt = sx_binary(p, SX_ADD, cnt, in);
            sum = sx_binary(p, SX_ADD, sum, sx_binary(p, SX_MUL, in, z.c[j]));
        }
        int cand = sx_binary(p, SX_DIV, sum, cnt);
        tau = tau < 0 ? cand : sx_binary(p, SX_MAX, tau, cand);
    }
    PVal r = z;
    r.is_labels = false;
    for (int j = 0; j < z.n; j++) r.c[j] = sx_binary(p, SX_MAX, sx_binary(p, SX_SUB, z.c[j], tau), sx_const(p, 0));
    return r;
}

static PVal bi_hardmax(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    PVal z = eval(cx, e->kids[0]);
    if (!z.n) return z;
    int idx = argmax_node(cx, z);
    PVal r = z;
    r.is_labels = false;
    for (int j = 0; j < z.n; j++) r.c[j] = sx_binary(cx->pool, SX_EQ, idx, sx_const(cx->pool, j));
    return r;
}

/* mids(Q): midpoints between consecutive labels; gaps(Q): their distances. */
static PVal bi_label_vec(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    const LabelSet *q = want_labels(cx, e, eval(cx, e->kids[0]));
    if (!q) return pv_error();
    PVal r = pv_error();
    r.n = q->k - 1;
    for (int j = 0; j + 1 < q->k; j++)
        r.c[j] = sx_const(cx->pool, e->name[0] == 'm' ? (q->q[j] + q->q[j + 1]) / 2 : q->q[j + 1] - q->q[j]);
    return r;
}

static PVal bi_sum(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    PVal x = eval(cx, e->kids[0]);
    return x.n ? pv_scalar(reduce(cx, SX_ADD, x)) : x;
}

static PVal bi_argmax(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    PVal x = eval(cx, e->kids[0]);
    return x.n ? pv_scalar(argmax_node(cx, x)) : x;
}

/* max(v) / min(v): a vector's extreme element; max(a, b) / min(a, b): elementwise. */
static PVal bi_minmax(PCtx *cx, const AstNode *e, SxOp op) {
    PVal x = eval(cx, e->kids[0]);
    if (e->nkids == 1) return x.n ? pv_scalar(reduce(cx, op, x)) : x;
    return zip(cx, e, op, x, eval(cx, e->kids[1]));
}

static PVal bi_clamp(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    PVal x = eval(cx, e->kids[0]);
    PVal lo = eval(cx, e->kids[1]), hi = eval(cx, e->kids[2]);
    return zip(cx, e, SX_MIN, zip(cx, e, SX_MAX, x, lo), hi);
}

/* mid(Q) = (min + max) / 2, half_range(Q) = (max - min) / 2. */
static PVal bi_label_num(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    const LabelSet *q = want_labels(cx, e, eval(cx, e->kids[0]));
    if (!q) return pv_error();
    double lo = q->q[0], hi = q->q[q->k - 1];
    return pv_scalar(sx_const(cx->pool, e->name[0] == 'm' ? (lo + hi) / 2 : (hi - lo) / 2));
}

static PVal bi_nearest(PCtx *cx, const AstNode *e, SxOp op) {
    (void)op;
    SxPool *p = cx->pool;
    const LabelSet *q = want_labels(cx, e, eval(cx, e->kids[0]));
    PVal x = eval(cx, e->kids[1]);
    if (!q || !x.n) return pv_error();
    PVal r = x;
    r.is_labels = false;
    for (int j = 0; j < x.n; j++) {
        /* Midpoints split the line; a tie goes to the larger label. */
        int v = sx_const(p, q->q[q->k - 1]);
        for (int i = q->k - 2; i >= 0; i--) {
            int below = sx_binary(p, SX_LT, x.c[j], sx_const(p, (q->q[i] + q->q[i + 1]) / 2));
            v = sx_select(p, below, sx_const(p, q->q[i]), v);
        }
        r.c[j] = v;
    }
    return r;
}

static const struct Builtin {
    const char *name;
    PVal (*fn)(PCtx *cx, const AstNode *call, SxOp op);
    SxOp op;
    int min_args, max_args;
    const char *doc[2];
} builtins[] = {
#define BUILTIN(NAME, FN, OP, MIN, MAX, CALL, MEANING) {#NAME, FN, OP, MIN, MAX, {CALL, MEANING}},
#include "proj_builtins.def"
#undef BUILTIN
};
#define NBUILTINS (int)(sizeof builtins / sizeof *builtins)

void proj_builtins_print(FILE *out) {
    for (int i = 0; i < NBUILTINS; i++) fprintf(out, "| %s | %s |\n", builtins[i].doc[0], builtins[i].doc[1]);
}

static PVal eval_call(PCtx *cx, const AstNode *e) {
    for (int i = 0; i < NBUILTINS; i++) {
        const struct Builtin *b = &builtins[i];
        if (strcmp(e->name, b->name)) continue;
        if (!want_args(cx, e, b->min_args, b->max_args)) return pv_error();
        return b->fn(cx, e, b->op);
    }
    DiagNear near = diag_near(e->name);
    for (int i = 0; i < NBUILTINS; i++) diag_near_offer(&near, builtins[i].name);
    char hint[96];
    perr(cx, e->loc, "unknown function '%s' in a projection%s", e->name, diag_near_hint(&near, hint, sizeof hint));
    diag_note_names(cx->diag, e->loc, "available", &builtins[0].name, NBUILTINS, sizeof builtins[0]);
    return pv_error();
}

/* Whether named value `nm` is an aux or computed from one. */
static bool on_aux(PCtx *cx, const Named *nm) {
    if (nm->kind == AST_AUX) return true;
    for (int j = 0; j < nm->n; j++)
        for (int i = 0; i < cx->nnamed; i++)
            for (int k = 0; cx->names[i].kind == AST_AUX && k < cx->names[i].n; k++)
                if (sx_depends(cx->pool, cx->full[nm->var0 + j], sx_var(cx->pool, cx->names[i].var0 + k))) return true;
    return false;
}

static PVal eval(PCtx *cx, const AstNode *e) {
    SxPool *p = cx->pool;
    switch (e->kind) {
    case AST_NUMBER: return pv_scalar(sx_const(p, e->num));
    case AST_IDENT: {
        if (strcmp(e->name, "beta") == 0) return pv_scalar(sx_var(p, PV_BETA));
        if (strcmp(e->name, "w0") == 0 || strcmp(e->name, "w0_std") == 0) {
            if (!cx->allow_w0) {
                perr(cx, e->loc, "'%s' (the initial float draw) is only defined in `init`", e->name,
                     NULL);
                return pv_error();
            }
            return pv_scalar(sx_var(p, e->name[2] ? PV_W0STD : PV_W0));
        }
        if (strcmp(e->name, "delta") == 0) {
            if (!cx->allow_delta) {
                perr(cx, e->loc, "'delta' (the optimizer's proposed change) is only defined in `move`",
                     NULL, NULL);
                return pv_error();
            }
            PVal r = pv_error();
            r.n = cx->move_aux->n;
            for (int j = 0; j < r.n; j++)
                r.c[j] = sx_var(p, cx->dbase + cx->move_aux->var0 - PV_AUX + j);
            return r;
        }
        if (cx->qname && strcmp(e->name, cx->qname) == 0) return labels_value(cx, cx->q);
        Named *nm = find_named(cx, e->name);
        if (nm && cx->allow_w0 && on_aux(cx, nm)) { /* in `init`, which gives the aux its values */
            perr(cx, e->loc, nm->kind == AST_AUX ? "`init` cannot use the aux '%s': init gives it its first value (from w0, w0_std, beta, labels and numbers)"
                                                 : "`init` cannot use '%s': it is computed from an aux, which init gives its first value (from w0, w0_std, beta, labels and numbers)",
                 e->name, NULL);
            return pv_error();
        }
        if (nm) {
            PVal r = pv_error();
            r.n = nm->n;
            for (int j = 0; j < nm->n; j++) r.c[j] = sx_var(p, nm->var0 + j);
            return r;
        }
        const LabelSet *ls = program_find_labels(cx->prog, e->name);
        if (ls) return labels_value(cx, ls);
        DiagNear near = diag_near(e->name);
        for (int i = cx->nnamed - 1; i >= 0; i--) diag_near_offer(&near, cx->names[i].name);
        for (int i = 0; i < cx->prog->nlabels; i++) diag_near_offer(&near, cx->prog->labels[i]->name);
        char hint[96];
        perr(cx, e->loc, "unknown name '%s' in projection%s", e->name, diag_near_hint(&near, hint, sizeof hint));
        return pv_error();
    }
    case AST_CARD: {
        PVal x = eval(cx, e->kids[0]);
        return x.n ? pv_scalar(sx_const(p, x.n)) : x;
    }
    case AST_UNARY: {
        PVal x = eval(cx, e->kids[0]);
        if (e->op == AST_OP_PLUS || !x.n) return x;
        PVal r = x;
        r.is_labels = false;
        for (int j = 0; j < x.n; j++)
            r.c[j] = sx_unary(p, e->op == AST_OP_NEG ? SX_NEG : SX_NOT, x.c[j]);
        return r;
    }
    case AST_BINARY: {
        PVal x = eval(cx, e->kids[0]), y = eval(cx, e->kids[1]);
        switch (e->op) {
        case AST_OP_ADD: return zip(cx, e, SX_ADD, x, y);
        case AST_OP_SUB: return zip(cx, e, SX_SUB, x, y);
        case AST_OP_MUL: return zip(cx, e, SX_MUL, x, y);
        case AST_OP_DIV: return zip(cx, e, SX_DIV, x, y);
        case AST_OP_EQ: return zip(cx, e, SX_EQ, x, y);
        case AST_OP_NE: return zip(cx, e, SX_NE, x, y);
        case AST_OP_LT: return zip(cx, e, SX_LT, x, y);
        case AST_OP_LE: return zip(cx, e, SX_LE, x, y);
        case AST_OP_GT: return zip(cx, e, SX_LT, y, x);
        case AST_OP_GE: return zip(cx, e, SX_LE, y, x);
        case AST_OP_AND: return zip(cx, e, SX_AND, x, y);
        case AST_OP_OR: return zip(cx, e, SX_OR, x, y);
        default: break;
        }
        break;
    }
    case AST_INDEX: {
        PVal base = eval(cx, e->kids[0]), idx = eval(cx, e->kids[1]);
        if (!base.n || !idx.n) return pv_error();
        if (idx.n != 1) {
            perr(cx, e->kids[1]->loc, "an index must be a single value", NULL, NULL);
            return pv_error();
        }
        int r = pick(cx, base, idx.c[0], e->kids[1]->loc);
        return r < 0 ? pv_error() : pv_scalar(r);
    }
    case AST_IF: {
        /* a condition known when the projection is instantiated (on |Q|, say) selects its
         * branch, and the other is not evaluated: the branches may differ in shape */
        PVal c = eval(cx, e->kids[0]);
        double known;
        if (c.n == 1 && sx_is_const(p, c.c[0], &known)) return eval(cx, e->kids[known != 0 ? 1 : 2]);
        PVal a = eval(cx, e->kids[1]), b = eval(cx, e->kids[2]);
        if (!c.n || !a.n || !b.n) return pv_error();
        PVal ab = zip(cx, e, SX_ADD, a, b); /* shape check only */
        if (!ab.n) return ab;
        PVal r = ab;
        r.is_labels = false;
        for (int j = 0; j < r.n; j++)
            r.c[j] = sx_select(p, c.c[c.n == 1 ? 0 : j], a.c[a.n == 1 ? 0 : j], b.c[b.n == 1 ? 0 : j]);
        return r;
    }
    case AST_CALL: return eval_call(cx, e);
    case AST_SET:
    case AST_LIST: { /* a vector of scalars, e.g. {1, -1} */
        PVal r = pv_error();
        if (e->nkids < 1 || e->nkids > NNQ_MAX_LABELS) {
            perr(cx, e->loc, "a vector has 1 to 64 elements", NULL, NULL);
            return r;
        }
        for (int j = 0; j < e->nkids; j++) {
            PVal x = eval(cx, e->kids[j]);
            if (!x.n) return x;
            if (x.n != 1) {
                perr(cx, e->kids[j]->loc, "a vector's elements must be single values", NULL, NULL);
                return pv_error();
            }
            r.c[j] = x.c[0];
        }
        r.n = e->nkids;
        return r;
    }
    default: break;
    }
    perr(cx, e->loc, "this expression is not allowed in a projection", NULL, NULL);
    return pv_error();
}

/* The values a hard expression can take, when they are all constants: a select tree
 * whose leaves are constants. Returns false when some leaf is computed. */
static bool hard_values(const SxPool *p, int id, double *vals, int *n, int cap) {
    const SxNode *nd = sx_node(p, id);
    if (nd->op == SX_CONST) {
        for (int i = 0; i < *n; i++)
            if (vals[i] == nd->value) return true;
        if (*n == cap) return false;
        vals[(*n)++] = nd->value;
        return true;
    }
    if (nd->op == SX_SELECT) return hard_values(p, nd->b, vals, n, cap) && hard_values(p, nd->c, vals, n, cap);
    return false;
}

/* `hard` must land in Q: every value it can produce is one of the labels. */
static void check_hard(PCtx *cx, const AstNode *st, int hard) {
    if (!cx->q) return; /* no label set: nothing to land in */
    double vals[4 * NNQ_MAX_LABELS];
    int n = 0;
    if (!hard_values(cx->pool, hard, vals, &n, 4 * NNQ_MAX_LABELS)) {
        perr(cx, st->kids[0]->loc,
             "this hard value is computed, so it can leave the label set; select labels, e.g. "
             "Q[argmax(a)] or nearest(Q, a)", NULL, NULL);
        return;
    }
    for (int i = 0; i < n; i++) {
        bool in = false;
        for (int k = 0; k < cx->q->k; k++) in |= cx->q->q[k] == vals[i];
        if (!in) {
            char v[64];
            snprintf(v, sizeof v, "%g", vals[i]);
            perr(cx, st->kids[0]->loc, "this hard value can be %s, which is not in label set '%s'", v,
                 cx->q->name);
            return;
        }
    }
}

/* The argument name of the first grad(x) in an update expression, for messages. */
static const char *grad_name(const AstNode *e) {
    if (!e) return NULL;
    if (e->kind == AST_CALL && strcmp(e->name, "grad") == 0 && e->nkids == 1 &&
        e->kids[0]->kind == AST_IDENT)
        return e->kids[0]->name;
    for (int i = 0; i < e->nkids; i++) {
        const char *n = grad_name(e->kids[i]);
        if (n) return n;
    }
    return NULL;
}

/* Evaluates a size or requires expression to a constant. */
static bool eval_const(PCtx *cx, const AstNode *e, double *out) {
    PVal v = eval(cx, e);
    if (!v.n) return false;
    if (v.n != 1 || !sx_is_const(cx->pool, v.c[0], out)) {
        perr(cx, e->loc, "this must be a constant known when the projection is used", NULL, NULL);
        return false;
    }
    return true;
}

static Named *add_named(PCtx *cx, const AstNode *st, int n) {
    if (find_named(cx, st->name) || (cx->qname && strcmp(st->name, cx->qname) == 0) ||
        strcmp(st->name, "beta") == 0) {
        perr(cx, st->loc, "'%s' is already defined in this projection", st->name, NULL);
        return NULL;
    }
    if (cx->nnamed == cx->cap_named) {
        cx->cap_named = cx->cap_named ? 2 * cx->cap_named : 16;
        cx->names = realloc(cx->names, sizeof(Named) * cx->cap_named);
        assert(cx->names);
    }
    Named *nm = &cx->names[cx->nnamed++];
    nm->name = st->name;
    nm->node = st;
    nm->kind = st->kind;
    nm->n = n;
    nm->var0 = cx->nvars;
    cx->nvars += n;
    nm->def = NULL;
    return nm;
}

static PVal want_shape(PCtx *cx, const AstNode *at, PVal v, int n, const char *what) {
    if (!v.n) return v;
    if (v.n == 1 && n > 1) { /* broadcast a scalar */
        for (int j = 1; j < n; j++) v.c[j] = v.c[0];
        v.n = n;
    }
    if (v.n != n) {
        char a[64], b[32];
        snprintf(a, sizeof a, "%s needs %d value%s", what, n, n == 1 ? "" : "s");
        snprintf(b, sizeof b, "%d", v.n);
        perr(cx, at->loc, "%s, got %s", a, b);
        return pv_error();
    }
    return v;
}

/* The full definition of each component of named value `nm` (its placeholders
 * substituted: cx->full, which definitions in order fill), refused past SX_MAX_DEPTH. */
static bool define_full(PCtx *cx, Named *nm) {
    if (cx->nvars > cx->cap_full) {
        int cap = cx->nvars > 2 * cx->cap_full ? cx->nvars : 2 * cx->cap_full;
        cx->full = realloc(cx->full, sizeof(int) * cap);
        assert(cx->full);
        for (int v = cx->cap_full; v < cap; v++) cx->full[v] = -1;
        cx->cap_full = cap;
    }
    for (int j = 0; j < nm->n; j++) {
        int f = sx_subst(cx->pool, nm->def[j], cx->full, cx->nvars);
        if (sx_node(cx->pool, f)->depth > SX_MAX_DEPTH) {
            char limit[16];
            snprintf(limit, sizeof limit, "%d", SX_MAX_DEPTH);
            perr(cx, nm->node->loc, "'%s' is computed through more than %s operations in a row "
                 "(counting those of the soft values it uses)", nm->name, limit);
            return false;
        }
        cx->full[nm->var0 + j] = f;
    }
    return true;
}

/* Adjoints of every VAR for dLoss/dw = VAR PV_GW, processing named values from the
 * weight back to the aux (definitions only refer to earlier names). */
static void derive(PCtx *cx) {
    SxPool *p = cx->pool;
    cx->adj = malloc(sizeof(int) * cx->nvars);
    for (int v = 0; v < cx->nvars; v++) cx->adj[v] = -1;
    Named *w = &cx->names[cx->weight_named];
    cx->adj[w->var0] = sx_var(p, PV_GW);
    int *wrt = malloc(sizeof(int) * cx->nvars), *out = malloc(sizeof(int) * cx->nvars);
    for (int v = 0; v < cx->nvars; v++) wrt[v] = sx_var(p, v);
    for (int i = cx->nnamed - 1; i >= 0; i--) {
        Named *nm = &cx->names[i];
        if (!nm->def) continue;
        int roots[NNQ_MAX_LABELS], seeds[NNQ_MAX_LABELS], nr = 0;
        for (int j = 0; j < nm->n; j++) {
            if (cx->adj[nm->var0 + j] < 0) continue;
            roots[nr] = nm->def[j];
            seeds[nr++] = cx->adj[nm->var0 + j];
        }
        if (!nr) continue;
        sx_grad(p, nr, roots, seeds, nm->var0, wrt, out);
        for (int v = 0; v < nm->var0; v++) {
            double z;
            if (sx_is_const(p, out[v], &z) && z == 0) continue;
            cx->adj[v] = cx->adj[v] < 0 ? out[v] : sx_binary(p, SX_ADD, cx->adj[v], out[v]);
        }
    }
    free(wrt);
    free(out);
}

/* ---- shift invariance ----
 * Whether the weight stays the same when every aux component moves by one amount t,
 * with nograd values held (as the derivative holds them): then the derived gradients of
 * the aux sum to zero exactly, and of two components the second is the first negated,
 * which lets fuse.c keep one set of optimizer moments for both. A forward abstract
 * interpretation of the DAG: a node is invariant, moves by c t (c an invariant node),
 * scales by e^(c t), or unknown. A softmax is invariant: its shifted exps scale alike
 * and their sum divides the scale out. Piecewise constant ops (comparisons) count as
 * invariant, as they do for the derivative. */
typedef enum { SH_INV, SH_MOVE, SH_SCALE, SH_UNKNOWN } ShKind;
typedef struct {
    ShKind kind;
    int c; /* SH_MOVE, SH_SCALE: the invariant coefficient node */
} Shift;

static Shift sh(ShKind kind, int c) { return (Shift){kind, c}; }

/* memo[] and done[] cover the nodes the weight reaches: those before the analysis (the
 * coefficient nodes it makes are never analyzed themselves). */
static Shift shift_of(SxPool *p, int id, Shift *memo, bool *done, int naux) {
    if (done[id]) return memo[id];
    SxNode n = *sx_node(p, id); /* copy: constructors below may move the pool */
    Shift r = sh(SH_UNKNOWN, -1);
    if (n.op == SX_VAR) {
        r = n.slot >= PV_AUX && n.slot < PV_AUX + naux ? sh(SH_MOVE, sx_const(p, 1)) : sh(SH_INV, -1);
    } else if (n.op == SX_CONST || n.op == SX_INPUT || !sx_op_differentiable(n.op)) {
        r = sh(SH_INV, -1); /* nograd and comparisons included */
    } else {
        Shift x = shift_of(p, n.a, memo, done, naux);
        Shift y = n.b >= 0 ? shift_of(p, n.b, memo, done, naux) : sh(SH_INV, -1);
        if (n.op == SX_SELECT) {
            x = y;
            y = shift_of(p, n.c, memo, done, naux);
        }
        bool inv = x.kind == SH_INV && y.kind == SH_INV;
        bool same = x.kind == y.kind && x.c == y.c;
        switch (n.op) {
        case SX_ADD:
        case SX_SUB:
            if (inv) r = x;
            else if (x.kind == SH_MOVE && y.kind == SH_INV) r = x;
            else if (x.kind == SH_INV && y.kind == SH_MOVE) r = n.op == SX_ADD ? y : sh(SH_MOVE, sx_unary(p, SX_NEG, y.c));
            else if (x.kind == SH_MOVE && same && n.op == SX_SUB) r = sh(SH_INV, -1);
            else if (x.kind == SH_MOVE && y.kind == SH_MOVE) r = sh(SH_MOVE, sx_binary(p, n.op, x.c, y.c));
            else if (x.kind == SH_SCALE && same && n.op == SX_ADD) r = x;
            break;
        case SX_NEG:
            r = x.kind == SH_MOVE ? sh(SH_MOVE, sx_unary(p, SX_NEG, x.c)) : x;
            break;
        case SX_MUL:
            if (inv) r = x;
            else if (x.kind == SH_INV && y.kind != SH_UNKNOWN) r = y.kind == SH_MOVE ? sh(SH_MOVE, sx_binary(p, SX_MUL, n.a, y.c)) : y;
            else if (y.kind == SH_INV && x.kind != SH_UNKNOWN) r = x.kind == SH_MOVE ? sh(SH_MOVE, sx_binary(p, SX_MUL, x.c, n.b)) : x;
            else if (x.kind == SH_SCALE && y.kind == SH_SCALE) r = sh(SH_SCALE, sx_binary(p, SX_ADD, x.c, y.c));
            break;
        case SX_DIV:
            if (inv) r = x;
            else if (y.kind == SH_INV && x.kind != SH_UNKNOWN) r = x.kind == SH_MOVE ? sh(SH_MOVE, sx_binary(p, SX_DIV, x.c, n.b)) : x;
            else if (x.kind == SH_SCALE && same) r = sh(SH_INV, -1);
            else if (x.kind == SH_INV && y.kind == SH_SCALE) r = sh(SH_SCALE, sx_unary(p, SX_NEG, y.c));
            else if (x.kind == SH_SCALE && y.kind == SH_SCALE) r = sh(SH_SCALE, sx_binary(p, SX_SUB, x.c, y.c));
            break;
        case SX_EXP:
            r = x.kind == SH_MOVE ? sh(SH_SCALE, x.c) : x.kind == SH_INV ? x : r;
            break;
        case SX_MAX:
        case SX_MIN:
        case SX_SELECT: /* an order (or a choice) of two that move or scale alike */
            if (same && x.kind != SH_UNKNOWN) r = x;
            break;
        default: /* log, tanh, sqrt, ...: invariant of invariant only */
            if (inv) r = x;
            break;
        }
    }
    memo[id] = r;
    done[id] = true;
    return r;
}

/* Is `weight` invariant under one shift of aux VARs PV_AUX .. PV_AUX + naux - 1? */
static bool shift_invariant(SxPool *p, int weight, int naux) {
    int n = sx_count(p);
    Shift *memo = malloc(sizeof(Shift) * n);
    bool *done = calloc(n, 1);
    assert(memo && done);
    bool inv = shift_of(p, weight, memo, done, naux).kind == SH_INV;
    free(memo);
    free(done);
    return inv;
}

/* The parameter list: none, or one label set (check.c), bound to cx->qname. */
static void bind_params(PCtx *cx) {
    const AstNode *params = cx->def->kids[0];
    if (params && params->nkids) cx->qname = params->kids[0]->name;
}

/* The `requires` clause for cx->q: 1 met (or absent), 0 not met, -1 error reported. */
static int requires_met(PCtx *cx) {
    double ok = 1;
    if (cx->def->kids[1] && !eval_const(cx, cx->def->kids[1], &ok)) return -1;
    return ok != 0;
}

static ProjInst *instantiate(PCtx *cx) {
    Program *prog = cx->prog;
    SxPool *p = cx->pool;
    const AstNode *def = cx->def;
    bind_params(cx);
    int met = requires_met(cx);
    if (met < 0) return NULL;
    if (!met) {
        diag_error(cx->diag, cx->use, "projection '%s' cannot serve label set '%s' (%d labels)",
                   def->name, cx->q ? cx->q->name : "?", cx->q ? cx->q->k : 0);
        diag_note(cx->diag, def->kids[1]->loc, "'%s' requires this", def->name);
        cx->failed = true;
        return NULL;
    }
    cx->nvars = PV_AUX;
    cx->weight_named = -1;
    /* Pass 1: aux declarations (they may be used anywhere). */
    int ncomp = 0;
    for (int i = 2; i < def->nkids; i++) {
        const AstNode *st = def->kids[i];
        if (st->kind != AST_AUX) continue;
        double size = 1;
        if (st->kids && st->nkids && st->kids[0] && !eval_const(cx, st->kids[0], &size)) return NULL;
        if (size < 1 || size > NNQ_MAX_LABELS || size != floor(size)) {
            perr(cx, st->loc, "aux size must be an integer from 1 to 64", NULL, NULL);
            return NULL;
        }
        /* The fused kernels hold every component of one element in registers and
         * fixed-size tables (fuse.c, IrKernel): the total is capped, not each aux. */
        if (ncomp + (int)size > NNQ_MAX_LABELS) {
            char total[32];
            snprintf(total, sizeof total, "%d", ncomp + (int)size);
            perr(cx, st->loc, "'%s' brings the aux components of this projection to %s; at most 64 "
                 "are supported (NNQ_MAX_LABELS)", st->name, total);
            return NULL;
        }
        if (!add_named(cx, st, (int)size)) return NULL;
        ncomp += (int)size;
    }
    if (ncomp == 0) {
        perr(cx, def->loc, "projection '%s' declares no aux variable", def->name, NULL);
        return NULL;
    }
    /* Pass 2: soft and weight definitions, in order. */
    for (int i = 2; i < def->nkids; i++) {
        const AstNode *st = def->kids[i];
        if (st->kind != AST_SOFT && st->kind != AST_WEIGHT) continue;
        if (st->kind == AST_WEIGHT && cx->weight_named >= 0) {
            perr(cx, st->loc, "a projection has exactly one weight", NULL, NULL);
            return NULL;
        }
        PVal v = eval(cx, st->kids[0]);
        if (!v.n) return NULL;
        if (st->kind == AST_WEIGHT && v.n != 1) {
            perr(cx, st->loc, "the weight must be one value per parameter element", NULL, NULL);
            return NULL;
        }
        Named *nm = add_named(cx, st, v.n);
        if (!nm) return NULL;
        nm->def = arena_alloc(prog->arena, sizeof(int) * v.n);
        memcpy(nm->def, v.c, sizeof(int) * v.n);
        if (!define_full(cx, nm)) return NULL;
        if (st->kind == AST_WEIGHT) cx->weight_named = cx->nnamed - 1;
    }
    if (cx->weight_named < 0) {
        perr(cx, def->loc, "projection '%s' has no `weight` statement", def->name, NULL);
        return NULL;
    }
    const char *wname = cx->names[cx->weight_named].name;

    ProjInst *pi = arena_alloc(prog->arena, sizeof *pi);
    pi->name = def->name;
    pi->labels = cx->q;
    pi->def = def;
    pi->ncomp = ncomp;
    pi->comp_names = arena_alloc(prog->arena, sizeof(char *) * ncomp);
    pi->init = arena_alloc(prog->arena, sizeof(int) * ncomp);
    pi->grad = arena_alloc(prog->arena, sizeof(int) * ncomp);
    pi->after = arena_alloc(prog->arena, sizeof(int) * ncomp);
    pi->move = arena_alloc(prog->arena, sizeof(int) * ncomp);
    for (int k = 0; k < ncomp; k++) {
        pi->init[k] = pi->grad[k] = pi->move[k] = -1;
        pi->after[k] = sx_var(p, PV_AUX + k);
    }
    for (int i = 0; i < cx->nnamed; i++) {
        Named *nm = &cx->names[i];
        if (nm->kind != AST_AUX) continue;
        for (int j = 0; j < nm->n; j++)
            pi->comp_names[nm->var0 - PV_AUX + j] =
                nm->n == 1 ? nm->name : arena_printf(prog->arena, "%s%d", nm->name, j);
    }

    derive(cx);
    const int *full = cx->full;
    pi->weight = full[cx->names[cx->weight_named].var0];
    /* One substitution map: placeholders -> definitions, grad VARs -> adjoints; `delta`
     * VARs (after both) stay: the fuser substitutes the optimizer's step for them. */
    cx->gbase = cx->nvars;
    cx->dbase = 2 * cx->nvars;
    pi->delta_var0 = cx->dbase;
    int nmap = 2 * cx->nvars;
    int *map = malloc(sizeof(int) * nmap);
    for (int v = 0; v < cx->nvars; v++) {
        map[v] = full[v];
        int a = cx->adj[v];
        map[cx->gbase + v] = a >= 0 ? sx_subst(p, a, full, cx->nvars) : sx_const(p, 0);
    }

    /* Pass 3: init, update, after, hard. */
    bool have_hard = false;
    for (int i = 2; i < def->nkids; i++) {
        const AstNode *st = def->kids[i];
        if (st->kind == AST_AUX || st->kind == AST_SOFT || st->kind == AST_WEIGHT) continue;
        Named *aux = NULL;
        if (st->kind != AST_HARD) {
            aux = find_named(cx, st->name);
            if (!aux || aux->kind != AST_AUX) {
                perr(cx, st->loc, "'%s' is not an aux variable of this projection", st->name, NULL);
                continue;
            }
        } else if (strcmp(st->name, wname) != 0) {
            perr(cx, st->loc, "`hard` must define the weight '%s'", wname, NULL);
            continue;
        }
        cx->allow_w0 = st->kind == AST_INIT;
        cx->allow_grad = st->kind == AST_UPDATE;
        cx->allow_delta = st->kind == AST_MOVE;
        cx->move_aux = aux;
        PVal v = eval(cx, st->kids[0]);
        cx->allow_w0 = cx->allow_grad = cx->allow_delta = false;
        if (!v.n) continue;
        if (st->kind == AST_HARD) {
            if (v.n != 1) {
                perr(cx, st->loc, "`hard` must give one value per parameter element", NULL, NULL);
                continue;
            }
            pi->hard = sx_subst(p, v.c[0], map, nmap);
            have_hard = true;
            check_hard(cx, st, pi->hard);
            continue;
        }
        int *slot = st->kind == AST_INIT     ? pi->init
                    : st->kind == AST_UPDATE ? pi->grad
                    : st->kind == AST_MOVE   ? pi->move
                                             : pi->after;
        v = want_shape(cx, st, v, aux->n, st->kind == AST_UPDATE ? "the update of an aux"
                                          : st->kind == AST_INIT ? "the init of an aux"
                                          : st->kind == AST_MOVE ? "the move of an aux"
                                                                 : "the post-step map of an aux");
        if (!v.n) continue;
        int k0 = aux->var0 - PV_AUX;
        bool all_zero = true;
        for (int j = 0; j < aux->n; j++) {
            int e = sx_subst(p, v.c[j], map, nmap);
            double z;
            if (!sx_is_const(p, e, &z) || z != 0) all_zero = false;
            bool seen = st->kind == AST_AFTER ? pi->after[k0 + j] != sx_var(p, PV_AUX + k0 + j)
                                              : slot[k0 + j] >= 0;
            if (seen) {
                perr(cx, st->loc, "'%s' already has a statement of this kind", st->name, NULL);
                break;
            }
            slot[k0 + j] = e;
        }
        if (st->kind == AST_UPDATE && all_zero) {
            const char *x = grad_name(st->kids[0]);
            char what[128];
            snprintf(what, sizeof what, "grad(%s) is zero everywhere: '%s' does not depend",
                     x ? x : "...", wname);
            perr(cx, st->kids[0]->loc,
                 "%s differentiably on it (nearest() and comparisons are piecewise constant)",
                 what, NULL);
            diag_note(cx->diag, st->kids[0]->loc,
                      "a straight-through step is written `update %s using grad(%s)`", st->name,
                      wname);
        }
    }
    /* `update a using grad(a)` for both of two aux components */
    bool own_grads = ncomp == 2 && pi->grad[0] == map[cx->gbase + PV_AUX] && pi->grad[1] == map[cx->gbase + PV_AUX + 1];
    free(map);
    if (cx->failed) return NULL;
    if (!have_hard) {
        perr(cx, def->loc, "projection '%s' has no `hard` statement", def->name, NULL);
        return NULL;
    }
    for (int k = 0; k < ncomp; k++) {
        if (pi->init[k] < 0 || pi->grad[k] < 0) {
            perr(cx, def->loc, pi->init[k] < 0 ? "aux '%s' has no `init` statement"
                                               : "aux '%s' has no `update` statement",
                 pi->comp_names[k], NULL);
            return NULL;
        }
    }
    /* Two aux components stepped by their own gradients through a weight invariant under
     * their common shift (a two-label softmax): the gradients are opposite exactly, so
     * the second is written as the first negated. */
    if (own_grads && shift_invariant(p, pi->weight, ncomp)) pi->grad[1] = sx_unary(p, SX_NEG, pi->grad[0]);
    pi->uses_beta = sx_depends(p, pi->weight, sx_var(p, PV_BETA));
    return pi;
}

static void ctx_init(PCtx *cx, Program *prog, Diag *diag, const AstNode *def, const LabelSet *q,
                     SrcLoc use) {
    memset(cx, 0, sizeof *cx);
    cx->prog = prog;
    cx->diag = diag;
    cx->pool = prog->pool;
    cx->def = def;
    cx->q = q;
    cx->use = use;
}

/* A new instance of `def` for `q`, added to the program's. */
static ProjInst *new_instance(Program *prog, Diag *diag, const AstNode *def, const LabelSet *q, SrcLoc use) {
    PCtx cx;
    ctx_init(&cx, prog, diag, def, q, use);
    ProjInst *pi = instantiate(&cx);
    free(cx.adj);
    free(cx.names);
    free(cx.full);
    if (!pi) return NULL;
    prog->insts = arena_grow(prog->arena, prog->insts, (size_t)prog->ninsts, sizeof(ProjInst *));
    prog->insts[prog->ninsts++] = pi;
    return pi;
}

ProjInst *proj_instantiate(Program *prog, Diag *diag, const AstNode *def, const LabelSet *q,
                           SrcLoc use) {
    for (int i = 0; i < prog->ninsts; i++)
        if (prog->insts[i]->def == def && prog->insts[i]->labels == q) return prog->insts[i];
    return new_instance(prog, diag, def, q, use);
}

/* A label set for checking a projection nothing instantiates: the program's own sets in
 * order, then {-1, +1}, {-1, 0, +1}, {-2, -1, +1, +2}; the first its `requires` accepts. */
static const LabelSet *check_labels_for(Program *prog, Diag *diag, const AstNode *def, bool *error) {
    static const LabelSet builtin[] = {
        {.name = "{-1, +1}", .k = 2, .q = {-1, 1}},
        {.name = "{-1, 0, +1}", .k = 3, .q = {-1, 0, 1}},
        {.name = "{-2, -1, +1, +2}", .k = 4, .q = {-2, -1, 1, 2}},
    };
    int n = prog->nlabels + (int)(sizeof builtin / sizeof builtin[0]);
    for (int i = 0; i < n; i++) {
        const LabelSet *q = i < prog->nlabels ? prog->labels[i] : &builtin[i - prog->nlabels];
        PCtx cx;
        ctx_init(&cx, prog, diag, def, q, (SrcLoc){0});
        bind_params(&cx);
        int met = requires_met(&cx);
        if (met != 0) {
            *error = met < 0;
            return met > 0 ? q : NULL;
        }
    }
    return NULL;
}

bool proj_check_unused(Program *prog, Diag *diag, const AstNode *root) {
    bool ok = true;
    /* the projections instantiated, by name (each is the program's of its name) */
    NameIndex used = {.arena = prog->arena};
    for (int k = 0; k < prog->ninsts; k++) names_add(&used, prog->insts[k]->name);
    for (int i = 0; i < root->nkids; i++) {
        const AstNode *def = root->kids[i];
        if (def->kind != AST_PROJECTION || program_find_projection(prog, def->name) != def) continue;
        if (names_find(&used, def->name)) continue;
        const LabelSet *q = NULL;
        if (def->kids[0] && def->kids[0]->nkids) {
            bool error = false;
            q = check_labels_for(prog, diag, def, &error);
            if (error) ok = false;
            if (!q) continue; /* no label set meets `requires`: nothing to check against */
        }
        if (new_instance(prog, diag, def, q, (SrcLoc){0})) continue;
        ok = false;
        if (q)
            diag_note(diag, def->loc, "'%s' is used nowhere in this file; it was checked for label set %s",
                      def->name, q->name);
    }
    return ok;
}
