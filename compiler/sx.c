/* sx.c — scalar expression DAGs: hash-consed construction with local simplification,
 * symbolic reverse-mode derivatives, substitution, evaluation and printing.
 * Invariant: a node's operands always have smaller ids (the pool is topologically
 * ordered), which sx_grad and sx_eval rely on. */
#include "sx.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct SxPool {
    SxNode *nodes;
    int count, cap;
    int *table; /* hash table of node ids, -1 = empty; size tcap (power of two) */
    int tcap;
};

static const char *const op_names[] = {
#define SX_OP(name, text, arity, diff, doc) text,
#include "sx_ops.def"
#undef SX_OP
};
static const int op_arity[] = {
#define SX_OP(name, text, arity, diff, doc) arity,
#include "sx_ops.def"
#undef SX_OP
};
static const bool op_diff[] = {
#define SX_OP(name, text, arity, diff, doc) diff,
#include "sx_ops.def"
#undef SX_OP
};

const char *sx_op_name(SxOp op) { return op_names[op]; }
int sx_op_arity(SxOp op) { return op_arity[op]; }
bool sx_op_differentiable(SxOp op) { return op_diff[op]; }

SxPool *sx_pool_new(void) {
    SxPool *p = calloc(1, sizeof *p);
    assert(p);
    p->tcap = 1024;
    p->table = malloc(sizeof(int) * p->tcap);
    assert(p->table);
    memset(p->table, -1, sizeof(int) * p->tcap);
    return p;
}

void sx_pool_free(SxPool *pool) {
    if (!pool) return;
    free(pool->nodes);
    free(pool->table);
    free(pool);
}

const SxNode *sx_node(const SxPool *pool, int id) {
    assert(id >= 0 && id < pool->count);
    return &pool->nodes[id];
}

int sx_count(const SxPool *pool) { return pool->count; }

static uint64_t node_hash(const SxNode *n) {
    uint64_t bits;
    memcpy(&bits, &n->value, sizeof bits);
    uint64_t h = 1469598103934665603ull;
    uint64_t parts[6] = {(uint64_t)n->op, (uint64_t)(int64_t)n->a, (uint64_t)(int64_t)n->b,
                         (uint64_t)(int64_t)n->c, (uint64_t)(int64_t)n->slot, bits};
    for (int i = 0; i < 6; i++) {
        h ^= parts[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    return h;
}

static bool node_equal(const SxNode *x, const SxNode *y) {
    return x->op == y->op && x->a == y->a && x->b == y->b && x->c == y->c &&
           x->slot == y->slot && memcmp(&x->value, &y->value, sizeof x->value) == 0;
}

static void table_grow(SxPool *p) {
    int ncap = p->tcap * 2;
    int *nt = malloc(sizeof(int) * ncap);
    assert(nt);
    memset(nt, -1, sizeof(int) * ncap);
    for (int i = 0; i < p->count; i++) {
        uint64_t h = node_hash(&p->nodes[i]) & (uint64_t)(ncap - 1);
        while (nt[h] >= 0) h = (h + 1) & (uint64_t)(ncap - 1);
        nt[h] = i;
    }
    free(p->table);
    p->table = nt;
    p->tcap = ncap;
}

static int intern(SxPool *p, SxNode n) {
    if ((p->count + 1) * 2 > p->tcap) table_grow(p);
    uint64_t h = node_hash(&n) & (uint64_t)(p->tcap - 1);
    while (p->table[h] >= 0) {
        if (node_equal(&p->nodes[p->table[h]], &n)) return p->table[h];
        h = (h + 1) & (uint64_t)(p->tcap - 1);
    }
    if (p->count == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->nodes = realloc(p->nodes, sizeof(SxNode) * p->cap);
        assert(p->nodes);
    }
    n.depth = 1;
    int kids[3] = {n.a, n.b, n.c};
    for (int k = 0; k < 3; k++)
        if (kids[k] >= 0 && p->nodes[kids[k]].depth + 1 > n.depth) n.depth = p->nodes[kids[k]].depth + 1;
    p->nodes[p->count] = n;
    p->table[h] = p->count;
    return p->count++;
}

static SxNode mk(SxOp op, int a, int b, int c) {
    SxNode n = {op, a, b, c, 0, 0.0, 0};
    return n;
}

int sx_const(SxPool *pool, double v) {
    if (v == 0.0) v = 0.0; /* -0 and +0 are one constant */
    SxNode n = mk(SX_CONST, -1, -1, -1);
    n.value = v;
    return intern(pool, n);
}

int sx_input(SxPool *pool, int slot) {
    SxNode n = mk(SX_INPUT, -1, -1, -1);
    n.slot = slot;
    return intern(pool, n);
}

int sx_var(SxPool *pool, int var) {
    SxNode n = mk(SX_VAR, -1, -1, -1);
    n.slot = var;
    return intern(pool, n);
}

bool sx_is_const(const SxPool *pool, int id, double *value) {
    const SxNode *n = sx_node(pool, id);
    if (n->op != SX_CONST) return false;
    if (value) *value = n->value;
    return true;
}

static double fold(SxOp op, double a, double b, double c) {
    switch (op) {
    case SX_ADD: return a + b;
    case SX_SUB: return a - b;
    case SX_MUL: return a * b;
    case SX_DIV: return a / b;
    case SX_NEG: return -a;
    case SX_EXP: return exp(a);
    case SX_LOG: return log(a);
    case SX_TANH: return tanh(a);
    case SX_ATANH: return atanh(a);
    case SX_SQRT: return sqrt(a);
    case SX_ABS: return fabs(a);
    case SX_MAX: return a >= b ? a : b;
    case SX_MIN: return a <= b ? a : b;
    case SX_SELECT: return a != 0 ? b : c;
    case SX_SIGN: return a > 0 ? 1.0 : a < 0 ? -1.0 : 0.0;
    case SX_LT: return a < b;
    case SX_LE: return a <= b;
    case SX_EQ: return a == b;
    case SX_NE: return a != b;
    case SX_AND: return a != 0 && b != 0;
    case SX_OR: return a != 0 || b != 0;
    case SX_NOT: return a == 0;
    case SX_NOGRAD: return a;
    default: assert(!"not foldable"); return 0;
    }
}

int sx_unary(SxPool *pool, SxOp op, int a) {
    assert(op_arity[op] == 1);
    double va;
    if (sx_is_const(pool, a, &va)) return sx_const(pool, fold(op, va, 0, 0));
    const SxNode *na = sx_node(pool, a);
    if (op == SX_NEG && na->op == SX_NEG) return na->a;
    if (op == SX_NOGRAD && (na->op == SX_NOGRAD || (op_arity[na->op] > 0 && !op_diff[na->op])))
        return a; /* already carries no derivative */
    return intern(pool, mk(op, a, -1, -1));
}

int sx_negated(const SxPool *pool, int id) {
    const SxNode *n = sx_node(pool, id);
    return n->op == SX_NEG ? n->a : -1;
}

/* Signs move outward: -x * y = -(x * y), -x / y = -(x / y), -x + -y = -(x + y) and
 * x - -y = x + y, which hold for every IEEE value (round-to-nearest is symmetric) except
 * for the sign of an exact zero sum, as x + 0 = x does. So an expression of negated
 * inputs shares its nodes with the same expression of the inputs (fuse.c's opposite
 * moments). -1 where no rule applies. */
static int pull_sign(SxPool *pool, SxOp op, int a, int b) {
    int na = sx_negated(pool, a), nb = sx_negated(pool, b);
    if (na < 0 && nb < 0) return -1;
    if (op == SX_MUL || op == SX_DIV) {
        int r = sx_binary(pool, op, na >= 0 ? na : a, nb >= 0 ? nb : b);
        return (na >= 0) != (nb >= 0) ? sx_unary(pool, SX_NEG, r) : r;
    }
    if (op == SX_ADD && na >= 0 && nb >= 0) return sx_unary(pool, SX_NEG, sx_binary(pool, SX_ADD, na, nb));
    if (op == SX_SUB && nb >= 0) return sx_binary(pool, SX_ADD, a, nb);
    return -1;
}

int sx_binary(SxPool *pool, SxOp op, int a, int b) {
    assert(op_arity[op] == 2);
    double va = 0, vb = 0;
    bool ca = sx_is_const(pool, a, &va), cb = sx_is_const(pool, b, &vb);
    if (ca && cb) return sx_const(pool, fold(op, va, vb, 0));
    int signed_ = pull_sign(pool, op, a, b);
    if (signed_ >= 0) return signed_;
    switch (op) {
    case SX_ADD:
        if (ca && va == 0) return b;
        if (cb && vb == 0) return a;
        if (ca || a > b) { int t = a; a = b; b = t; } /* canonical order; consts last */
        if (sx_is_const(pool, a, NULL)) { int t = a; a = b; b = t; }
        break;
    /* Only folds that hold for every IEEE value: x * 0, x - x and 0 / x are not folded
     * (inf * 0, inf - inf and 0 / 0 are NaN). sx_grad drops structurally zero adjoints
     * itself (d_mul, d_div). */
    case SX_SUB:
        if (cb && vb == 0) return a;
        if (ca && va == 0) return sx_unary(pool, SX_NEG, b);
        break;
    case SX_MUL:
        if (ca && va == 1) return b;
        if (cb && vb == 1) return a;
        if (ca && va == -1) return sx_unary(pool, SX_NEG, b);
        if (cb && vb == -1) return sx_unary(pool, SX_NEG, a);
        if (ca || a > b) { int t = a; a = b; b = t; }
        if (sx_is_const(pool, a, NULL)) { int t = a; a = b; b = t; }
        break;
    case SX_DIV:
        if (cb && vb == 1) return a;
        break;
    default:
        break;
    }
    return intern(pool, mk(op, a, b, -1));
}

int sx_select(SxPool *pool, int cond, int a, int b) {
    double vc;
    if (sx_is_const(pool, cond, &vc)) return vc != 0 ? a : b;
    if (a == b) return a;
    return intern(pool, mk(SX_SELECT, cond, a, b));
}

/* ---- reverse mode ---- */

static bool is_zero(const SxPool *p, int id) {
    double v;
    return sx_is_const(p, id, &v) && v == 0;
}

/* Products and quotients of adjoints: a structurally zero factor (no dependence at all,
 * not a value that happens to be 0) makes the term vanish. */
static int d_mul(SxPool *p, int g, int x) {
    return is_zero(p, g) || is_zero(p, x) ? sx_const(p, 0) : sx_binary(p, SX_MUL, g, x);
}

static int d_div(SxPool *p, int g, int x) { return is_zero(p, g) ? g : sx_binary(p, SX_DIV, g, x); }

static void acc(SxPool *p, int *adj, int id, int delta) {
    if (is_zero(p, delta)) return; /* no adjoint reads as zero */
    adj[id] = adj[id] < 0 ? delta : sx_binary(p, SX_ADD, adj[id], delta);
}

/* b = exp(x) + k for a constant k (k: -1 when b = exp(x) alone): the denominator of a
 * sigmoid or of a tanh written through exp. (A softmax's sum of shifted exps, each at
 * most 1, cannot overflow and keeps the plain rule.) */
static bool exp_plus(const SxPool *p, int b, int *x, int *k) {
    const SxNode *nb = &p->nodes[b];
    if (nb->op == SX_EXP) {
        *x = nb->a;
        *k = -1;
        return true;
    }
    /* constants are an ADD's second operand (sx_binary's canonical order) */
    if (nb->op != SX_ADD || p->nodes[nb->a].op != SX_EXP || p->nodes[nb->b].op != SX_CONST) return false;
    *x = p->nodes[nb->a].a;
    *k = nb->b;
    return true;
}

/* One more than the highest of roots[0 .. n - 1] (at least 1): what arrays indexed by the
 * nodes they reach hold. */
static int roots_top(const int *roots, int n) {
    int top = 1;
    for (int i = 0; i < n; i++)
        if (roots[i] + 1 > top) top = roots[i] + 1;
    return top;
}

void sx_grad(SxPool *p, int nroots, const int *roots, const int *seeds, int nwrt,
             const int *wrt, int *out) {
    int top = roots_top(roots, nroots);
    int *adj = malloc(sizeof(int) * top);
    bool *live = calloc(top, 1);
    assert(adj && live);
    for (int i = 0; i < top; i++) adj[i] = -1;
    for (int i = 0; i < nroots; i++) {
        acc(p, adj, roots[i], seeds[i]);
        live[roots[i]] = true;
    }
    /* Operands have smaller ids: one downward sweep visits each node after all its users. */
    for (int id = top - 1; id >= 0; id--) {
        if (!live[id] || adj[id] < 0) continue;
        SxNode n = p->nodes[id]; /* copy: constructors may move the array */
        int g = adj[id];
        if (!op_diff[n.op]) continue;
        for (int k = 0; k < op_arity[n.op]; k++) {
            int opnd = k == 0 ? n.a : k == 1 ? n.b : n.c;
            live[opnd] = true;
        }
        int one = sx_const(p, 1);
        switch (n.op) {
        case SX_ADD: acc(p, adj, n.a, g); acc(p, adj, n.b, g); break;
        case SX_SUB: acc(p, adj, n.a, g); acc(p, adj, n.b, sx_unary(p, SX_NEG, g)); break;
        case SX_MUL:
            acc(p, adj, n.a, d_mul(p, g, n.b));
            acc(p, adj, n.b, d_mul(p, g, n.a));
            break;
        case SX_DIV: {
            int ga = d_div(p, g, n.b);
            acc(p, adj, n.a, ga);
            int gb = sx_unary(p, SX_NEG, d_mul(p, ga, id));
            int x, k;
            if (!exp_plus(p, n.b, &x, &k)) {
                acc(p, adj, n.b, gb);
                break;
            }
            /* r = a / (exp(x) + k): dr/dx = -g r exp(x) / b overflows to 0 * inf once
             * exp(x) does (a sigmoid at large beta), though it tends to 0. Through forward
             * values it is -g r (1 - k / b), finite wherever r is. */
            live[x] = true;
            if (k >= 0) {
                live[k] = true;
                acc(p, adj, k, gb);
            }
            int share = k >= 0 ? sx_binary(p, SX_SUB, one, sx_binary(p, SX_DIV, k, n.b)) : one;
            acc(p, adj, x, sx_unary(p, SX_NEG, d_mul(p, g, sx_binary(p, SX_MUL, id, share))));
            break;
        }
        case SX_NEG: acc(p, adj, n.a, sx_unary(p, SX_NEG, g)); break;
        case SX_EXP: acc(p, adj, n.a, d_mul(p, g, id)); break;
        case SX_LOG: acc(p, adj, n.a, d_div(p, g, n.a)); break;
        case SX_TANH:
            acc(p, adj, n.a, d_mul(p, g, sx_binary(p, SX_SUB, one, sx_binary(p, SX_MUL, id, id))));
            break;
        case SX_ATANH:
            acc(p, adj, n.a, d_div(p, g, sx_binary(p, SX_SUB, one, sx_binary(p, SX_MUL, n.a, n.a))));
            break;
        case SX_SQRT: acc(p, adj, n.a, d_div(p, d_mul(p, g, sx_const(p, 0.5)), id)); break;
        case SX_ABS: acc(p, adj, n.a, d_mul(p, g, sx_unary(p, SX_SIGN, n.a))); break;
        case SX_MAX:
        case SX_MIN: {
            /* max: a wins when b <= a; min: a wins when a <= b */
            int pick_a = n.op == SX_MAX ? sx_binary(p, SX_LE, n.b, n.a) : sx_binary(p, SX_LE, n.a, n.b);
            int zero = sx_const(p, 0);
            acc(p, adj, n.a, sx_select(p, pick_a, g, zero));
            acc(p, adj, n.b, sx_select(p, pick_a, zero, g));
            break;
        }
        case SX_SELECT: {
            int zero = sx_const(p, 0);
            acc(p, adj, n.b, sx_select(p, n.a, g, zero));
            acc(p, adj, n.c, sx_select(p, n.a, zero, g));
            break;
        }
        default: assert(!"unhandled differentiable op");
        }
    }
    for (int j = 0; j < nwrt; j++) {
        int w = wrt[j];
        out[j] = (w < top && adj[w] >= 0) ? adj[w] : sx_const(p, 0);
    }
    free(adj);
    free(live);
}

/* ---- substitution, dependence, evaluation ---- */

/* exp(x - max(p, q)) with x one of p, q (the max maybe under nograd), `d` the
 * argument x - max: a softmax over two labels, stabilized. One of its two exponentials
 * is exp(0) = 1 and the other exp(-|p - q|), so both are written through that one exp
 * (one node, shared by the two) and a select: the same bits as the two exps (q - p is
 * exactly -(p - q); where x is the max, 1 + (x - x) is 1, or NaN for an infinite or NaN
 * x, as exp(x - x) is). -1 where `d` is not of that form. */
static int pair_exp(SxPool *p, int d) {
    const SxNode *nd = &p->nodes[d];
    if (nd->op != SX_SUB) return -1;
    int x = nd->a, mx = nd->b;
    while (p->nodes[mx].op == SX_NOGRAD) mx = p->nodes[mx].a;
    const SxNode *m = &p->nodes[mx];
    int a = m->a, b = m->b;
    if (m->op != SX_MAX || a == b || (x != a && x != b)) return -1;
    int gap = sx_unary(p, SX_EXP, sx_unary(p, SX_NEG, sx_unary(p, SX_ABS, sx_binary(p, SX_SUB, a, b))));
    int self = sx_binary(p, SX_ADD, sx_binary(p, SX_SUB, x, x), sx_const(p, 1));
    int a_wins = sx_binary(p, SX_LE, b, a); /* a >= b: a is the max */
    return x == a ? sx_select(p, a_wins, self, gap) : sx_select(p, a_wins, gap, self);
}

/* A rebuild through the constructors: VARs replaced by subst[], memo[] (seeded with
 * replacements of other nodes) the rebuilt node of each; with pair_exps, a two-label
 * softmax's exps by pair_exp's one; with divides[], each division by a node that
 * divides[] counts at least twice as a product with that node's reciprocal. */
typedef struct Rebuild {
    const int *subst;
    int nsubst;
    int *memo;
    bool pair_exps;
    const int *divides;
} Rebuild;

static int rebuild(SxPool *p, Rebuild *rb, int id) {
    if (rb->memo[id] >= 0) return rb->memo[id];
    SxNode n = p->nodes[id];
    int r;
    switch (op_arity[n.op]) {
    case 0:
        r = (n.op == SX_VAR && n.slot < rb->nsubst && rb->subst[n.slot] >= 0) ? rb->subst[n.slot] : id;
        break;
    case 1: {
        int a = rebuild(p, rb, n.a);
        r = n.op == SX_EXP && rb->pair_exps ? pair_exp(p, a) : -1;
        if (r < 0) r = sx_unary(p, n.op, a);
        break;
    }
    case 2: {
        int a = rebuild(p, rb, n.a), b = rebuild(p, rb, n.b);
        if (n.op == SX_DIV && rb->divides && rb->divides[n.b] >= 2)
            r = sx_binary(p, SX_MUL, a, sx_binary(p, SX_DIV, sx_const(p, 1), b));
        else
            r = sx_binary(p, n.op, a, b);
        break;
    }
    default:
        r = sx_select(p, rebuild(p, rb, n.a), rebuild(p, rb, n.b), rebuild(p, rb, n.c));
        break;
    }
    rb->memo[id] = r;
    return r;
}

/* roots[0 .. n - 1] rebuilt in place through one memo (nodes they share stay shared). */
static void rebuild_roots(SxPool *p, Rebuild *rb, int *roots, int n, const int *from, const int *to, int nfrom) {
    int top = roots_top(roots, n);
    rb->memo = malloc(sizeof(int) * top);
    assert(rb->memo);
    for (int i = 0; i < top; i++) rb->memo[i] = -1;
    for (int i = 0; i < nfrom; i++)
        if (from[i] < top) rb->memo[from[i]] = to[i];
    for (int i = 0; i < n; i++) roots[i] = rebuild(p, rb, roots[i]);
    free(rb->memo);
}

static int rebuild_with(SxPool *p, int id, const int *subst, int nsubst, const int *from, const int *to, int n,
                        bool pair_exps) {
    Rebuild rb = {subst, nsubst, NULL, pair_exps, NULL};
    rebuild_roots(p, &rb, &id, 1, from, to, n);
    return id;
}

int sx_replace(SxPool *p, int id, const int *from, const int *to, int n) {
    return rebuild_with(p, id, NULL, 0, from, to, n, false);
}

int sx_pair_exps(SxPool *p, int id) { return rebuild_with(p, id, NULL, 0, NULL, NULL, 0, true); }

void sx_reciprocals(SxPool *p, int *roots, int n) {
    int top = roots_top(roots, n);
    char *mark = calloc(top, 1);
    int *divides = calloc(top, sizeof(int));
    assert(mark && divides);
    for (int i = 0; i < n; i++) sx_reach(p, roots[i], mark);
    bool shared = false;
    for (int i = 0; i < top; i++)
        if (mark[i] && p->nodes[i].op == SX_DIV) shared |= ++divides[p->nodes[i].b] >= 2;
    Rebuild rb = {NULL, 0, NULL, false, divides};
    if (shared) rebuild_roots(p, &rb, roots, n, NULL, NULL, 0);
    free(divides);
    free(mark);
}

int sx_subst(SxPool *p, int id, const int *subst, int nsubst) {
    return rebuild_with(p, id, subst, nsubst, NULL, NULL, 0, false);
}

void sx_reach(const SxPool *p, int id, char *mark) {
    mark[id] = 1;
    for (int i = id; i >= 0; i--) { /* operands have smaller ids: one downward sweep */
        if (!mark[i]) continue;
        const SxNode *n = &p->nodes[i];
        if (n->a >= 0) mark[n->a] = 1;
        if (n->b >= 0) mark[n->b] = 1;
        if (n->c >= 0) mark[n->c] = 1;
    }
}

bool sx_depends(const SxPool *p, int id, int leaf) {
    if (leaf > id) return false; /* operands have smaller ids */
    char *mark = calloc(id + 1, 1);
    assert(mark);
    sx_reach(p, id, mark);
    bool found = mark[leaf];
    free(mark);
    return found;
}

double sx_eval(const SxPool *p, int id, const double *inputs, const double *vars) {
    /* Mark what `id` reaches, then evaluate upward once per node (DAGs share a lot). */
    char *need = calloc(id + 1, 1);
    double *val = malloc(sizeof(double) * (id + 1));
    assert(need && val);
    sx_reach(p, id, need);
    for (int i = 0; i <= id; i++) {
        if (!need[i]) continue;
        const SxNode *n = &p->nodes[i];
        switch (n->op) {
        case SX_CONST: val[i] = n->value; break;
        case SX_INPUT: val[i] = inputs[n->slot]; break;
        case SX_VAR: val[i] = vars[n->slot]; break;
        default:
            val[i] = fold(n->op, val[n->a], n->b >= 0 ? val[n->b] : 0, n->c >= 0 ? val[n->c] : 0);
        }
    }
    double r = val[id];
    free(need);
    free(val);
    return r;
}

void sx_print(const SxPool *p, int id, const char *const *names, FILE *out) {
    const SxNode *n = &p->nodes[id];
    static const char *const infix[SX_OP_COUNT] = {
        [SX_ADD] = "+", [SX_SUB] = "-", [SX_MUL] = "*", [SX_DIV] = "/", [SX_LT] = "<",
        [SX_LE] = "<=", [SX_EQ] = "==", [SX_NE] = "!=", [SX_AND] = "and", [SX_OR] = "or"};
    switch (n->op) {
    case SX_CONST: fprintf(out, "%.9g", n->value); return;
    case SX_INPUT:
        if (names && names[n->slot]) fputs(names[n->slot], out);
        else fprintf(out, "in%d", n->slot);
        return;
    case SX_VAR: fprintf(out, "v%d", n->slot); return;
    default: break;
    }
    if (infix[n->op]) {
        fputc('(', out);
        sx_print(p, n->a, names, out);
        fprintf(out, " %s ", infix[n->op]);
        sx_print(p, n->b, names, out);
        fputc(')', out);
        return;
    }
    fprintf(out, "%s(", op_names[n->op]);
    sx_print(p, n->a, names, out);
    if (n->b >= 0) { fputs(", ", out); sx_print(p, n->b, names, out); }
    if (n->c >= 0) { fputs(", ", out); sx_print(p, n->c, names, out); }
    fputc(')', out);
}
