/* test_compiler.c — numeric tests of what nnqc derives and generates:
 *  - scalar expression DAGs: hash-consing, simplification, and every derivative rule
 *    against central finite differences (double precision, the sx interpreter);
 *  - projections of std.projections instantiated for binary and ternary label sets:
 *    derived gradients vs finite differences of the forward weight, hard values in Q,
 *    init reproducing w0;
 *  - a JIT-compiled network: the generated backward pass (every parameter's gradient,
 *    through dense, bias, batch norm, ReLU and softmax cross-entropy) vs central
 *    differences of the generated forward loss;
 *  - the fused PMF + Adam update kernel vs a step-by-step reference written here;
 *  - the CPU target's op table: code for every IR op that computes, none for the rest.
 * Ends with "N passed, N failed". */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "ir.h"
#include "lang.h"
#include "rt_internal.h"
#include "target.h"
#include "testutil.h"

/* ---------- sx ---------- */

static void test_sx_basics(void) {
    SxPool *p = sx_pool_new();
    int x = sx_var(p, 0), y = sx_var(p, 1);
    CHECK(sx_binary(p, SX_ADD, x, y) == sx_binary(p, SX_ADD, y, x), "add is hash-consed commutatively");
    CHECK(sx_binary(p, SX_MUL, x, sx_const(p, 1)) == x, "x*1 folds");
    /* Folds that are wrong for inf or NaN stay unfolded: inf * 0, inf - inf, 0 / 0. */
    double inf[1] = {INFINITY}, zero[1] = {0};
    CHECK(isnan(sx_eval(p, sx_binary(p, SX_MUL, x, sx_const(p, 0)), NULL, inf)), "x*0 is NaN at x = inf");
    CHECK(isnan(sx_eval(p, sx_binary(p, SX_SUB, x, x), NULL, inf)), "x-x is NaN at x = inf");
    CHECK(isnan(sx_eval(p, sx_binary(p, SX_DIV, sx_const(p, 0), x), NULL, zero)), "0/x is NaN at x = 0");
    double v;
    CHECK(sx_is_const(p, sx_unary(p, SX_EXP, sx_const(p, 0)), &v) && v == 1, "exp(0) folds to 1");
    sx_pool_free(p);
}

typedef int (*BuildFn)(SxPool *p, int x, int y);
static int f_poly(SxPool *p, int x, int y) { return sx_binary(p, SX_SUB, sx_binary(p, SX_MUL, x, sx_binary(p, SX_MUL, x, y)), sx_binary(p, SX_DIV, y, sx_binary(p, SX_ADD, x, sx_const(p, 3)))); }
static int f_exp_log(SxPool *p, int x, int y) { return sx_unary(p, SX_LOG, sx_binary(p, SX_ADD, sx_unary(p, SX_EXP, x), sx_unary(p, SX_EXP, y))); }
static int f_tanh(SxPool *p, int x, int y) { return sx_binary(p, SX_MUL, sx_unary(p, SX_TANH, sx_binary(p, SX_MUL, x, y)), y); }
static int f_atanh(SxPool *p, int x, int y) { return sx_unary(p, SX_ATANH, sx_binary(p, SX_MUL, sx_const(p, 0.4), sx_unary(p, SX_TANH, sx_binary(p, SX_ADD, x, y)))); }
static int f_sqrt_abs(SxPool *p, int x, int y) { return sx_unary(p, SX_SQRT, sx_binary(p, SX_ADD, sx_unary(p, SX_ABS, x), sx_binary(p, SX_MUL, y, y))); }
static int f_max_min(SxPool *p, int x, int y) { return sx_binary(p, SX_ADD, sx_binary(p, SX_MAX, x, y), sx_binary(p, SX_MUL, sx_const(p, 2), sx_binary(p, SX_MIN, x, sx_unary(p, SX_NEG, y)))); }
static int f_select(SxPool *p, int x, int y) { return sx_select(p, sx_binary(p, SX_LT, x, y), sx_binary(p, SX_MUL, x, x), sx_binary(p, SX_MUL, y, sx_const(p, 3))); }
static int f_nograd(SxPool *p, int x, int y) { return sx_binary(p, SX_MUL, sx_unary(p, SX_NOGRAD, x), sx_binary(p, SX_ADD, x, y)); }
/* y / (1 + exp(-x y)) and 1 - 2 / (exp(2 x y) + 1) = tanh(x y): the quotient rule through
 * forward values (sx_grad's exp_plus). */
static int f_sigmoid(SxPool *p, int x, int y) { return sx_binary(p, SX_DIV, y, sx_binary(p, SX_ADD, sx_const(p, 1), sx_unary(p, SX_EXP, sx_unary(p, SX_NEG, sx_binary(p, SX_MUL, x, y))))); }
static int f_tanh_exp(SxPool *p, int x, int y) { return sx_binary(p, SX_SUB, sx_const(p, 1), sx_binary(p, SX_DIV, sx_const(p, 2), sx_binary(p, SX_ADD, sx_unary(p, SX_EXP, sx_binary(p, SX_MUL, sx_const(p, 2), sx_binary(p, SX_MUL, x, y))), sx_const(p, 1)))); }
static int f_exp_ratio(SxPool *p, int x, int y) { return sx_binary(p, SX_DIV, sx_binary(p, SX_MUL, x, y), sx_unary(p, SX_EXP, sx_binary(p, SX_MUL, x, x))); }

/* The worst relative error of the derived gradient g[0..1] of f at v against central
 * differences (nograd: the held factor x is subtracted from d/dx). */
static double fd_error(const SxPool *p, int f, const int *g, const double *v, bool nograd) {
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        double h = 1e-6, vp[2] = {v[0], v[1]}, vm[2] = {v[0], v[1]};
        vp[k] += h;
        vm[k] -= h;
        double fd = (sx_eval(p, f, NULL, vp) - sx_eval(p, f, NULL, vm)) / (2 * h);
        double an = sx_eval(p, g[k], NULL, v);
        if (nograd && k == 0) fd -= v[0] + v[1]; /* the held factor */
        worst = fmax(worst, fabs(fd - an) / fmax(1, fabs(fd)));
    }
    return worst;
}

static void test_sx_derivatives(void) {
    struct { const char *name; BuildFn f; } cases[] = {
        {"polynomial/quotient", f_poly}, {"log-sum-exp", f_exp_log}, {"tanh", f_tanh},
        {"atanh", f_atanh}, {"sqrt/abs", f_sqrt_abs}, {"max/min", f_max_min},
        {"select", f_select}, {"nograd", f_nograd},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        SxPool *p = sx_pool_new();
        int x = sx_var(p, 0), y = sx_var(p, 1);
        int f = cases[c].f(p, x, y);
        int seed = sx_const(p, 1);
        int wrt[2] = {x, y}, g[2];
        sx_grad(p, 1, &f, &seed, 2, wrt, g);
        double worst = 0;
        for (int trial = 0; trial < 50; trial++) {
            double v[2] = {urand(-1.5, 1.5), urand(-1.5, 1.5)};
            if (fabs(v[0] - v[1]) < 1e-3 || fabs(v[0] + v[1]) < 1e-3 || fabs(v[0]) < 1e-3) continue; /* kinks */
            worst = fmax(worst, fd_error(p, f, g, v, cases[c].f == f_nograd));
        }
        CHECK(worst < 1e-6, "d/dx of %s: worst relative error %g", cases[c].name, worst);
        sx_pool_free(p);
    }
}

/* A sigmoid, a tanh written through exp and a quotient by exp: derived gradients against
 * finite differences on a grid (x in [-1.4, 1.4], y in [0.3, 1.8]), then, at beta (y) up
 * to 1e6, where exp overflows to inf in the forward pass (the value saturates, fine),
 * the gradient of the two saturating ones must stay finite (it was 0 * inf = NaN). */
static void test_sx_large_beta(void) {
    struct { const char *name; BuildFn f; bool saturates; } cases[] = {
        {"sigmoid", f_sigmoid, true}, {"tanh through exp", f_tanh_exp, true},
        {"quotient by exp", f_exp_ratio, false},
    };
    for (int c = 0; c < 3; c++) {
        SxPool *p = sx_pool_new();
        int x = sx_var(p, 0), y = sx_var(p, 1);
        int f = cases[c].f(p, x, y), seed = sx_const(p, 1), wrt[2] = {x, y}, g[2];
        sx_grad(p, 1, &f, &seed, 2, wrt, g);
        double worst = 0;
        for (double a = -1.4; a <= 1.4; a += 0.2)
            for (double b = 0.3; b <= 1.8; b += 0.3) worst = fmax(worst, fd_error(p, f, g, (double[]){a, b}, false));
        CHECK(worst < 1e-6, "d/dx of %s: worst relative error %g", cases[c].name, worst);
        if (!cases[c].saturates) {
            sx_pool_free(p);
            continue;
        }
        bool finite = true;
        for (double beta = 1; beta <= 1e6; beta *= 10)
            for (double a = -1; a <= 1; a += 0.25) {
                double v[2] = {a, beta};
                finite &= isfinite(sx_eval(p, f, NULL, v)) && isfinite(sx_eval(p, g[0], NULL, v)) &&
                          isfinite(sx_eval(p, g[1], NULL, v));
            }
        CHECK(finite, "%s: value and gradient finite for beta up to 1e6", cases[c].name);
        sx_pool_free(p);
    }
}

/* ---------- projections ---------- */

static void test_projections(void) {
    Compiled c;
    bool ok = compile_source(&c, "import std.projections\n"
                                 "labels binary = {-1, +1}\n"
                                 "labels ternary = {-1, 0, 1}\n"
                                 "labels four = levels(4)\n", false);
    CHECK(ok, "stdlib and label sets compile");
    if (!ok) return;
    const LabelSet *four = program_find_labels(c.prog, "four");
    CHECK(four && four->k == 4 && four->q[0] == -2 && four->q[1] == -1 && four->q[2] == 1 && four->q[3] == 2,
          "levels(4) is {-2, -1, 1, 2}");
    /* scale: the update's gradient over the chain rule's. pmf over two labels keeps the
     * pair's half difference t = (a1 - a0) / 2 and steps it by the pair's gradient of a1,
     * half that of t (stdlib/projections.nnq) */
    struct { const char *proj, *labels; bool chain; double scale; } cases[] = {
        {"pmf", "binary", true, 0.5}, {"pmf", "ternary", true, 1}, {"pmf", "four", true, 1},
        {"md_tanh", "binary", false, 1}, {"ste", "binary", false, 1}, {"float", NULL, false, 1},
    };
    SrcLoc none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const AstNode *def = program_find_projection(c.prog, cases[i].proj);
        const LabelSet *q = cases[i].labels ? program_find_labels(c.prog, cases[i].labels) : NULL;
        ProjInst *pi = def ? proj_instantiate(c.prog, c.diag, def, q, none) : NULL;
        CHECK(pi != NULL, "%s(%s) instantiates", cases[i].proj, cases[i].labels ? cases[i].labels : "");
        if (!pi) continue;
        SxPool *p = c.prog->pool;
        int K = pi->ncomp;
        double worst = 0;
        bool hard_in_q = true, after_ok = true;
        for (int trial = 0; trial < 40; trial++) {
            double vars[PV_AUX + NNQ_MAX_LABELS];
            vars[PV_BETA] = urand(0.5, 4);
            vars[PV_GW] = urand(-2, 2);
            vars[PV_W0] = urand(-0.5, 0.5);
            for (int k = 0; k < K; k++) vars[PV_AUX + k] = urand(-0.9, 0.9);
            for (int k = 0; k < K; k++) {
                double an = sx_eval(p, pi->grad[k], NULL, vars), want;
                if (cases[i].chain) {
                    want = cases[i].scale * vars[PV_GW] * weight_slope(p, pi->weight, vars, PV_AUX + k, 1e-6);
                } else {
                    want = vars[PV_GW]; /* grad(w): identity (|a| <= 1 here, so no STE mask) */
                }
                double err = fabs(an - want) / fmax(1, fabs(want));
                if (err > worst) worst = err;
                double after = sx_eval(p, pi->after[k], NULL, vars);
                if (q && (after < q->q[0] - 1e-12 || after > q->q[q->k - 1] + 1e-12) && strcmp(cases[i].proj, "ste") == 0)
                    after_ok = false;
            }
            double hv = sx_eval(p, pi->hard, NULL, vars);
            if (q) {
                bool in = false;
                for (int l = 0; l < q->k; l++) in |= hv == q->q[l];
                hard_in_q &= in;
            }
        }
        CHECK(worst < 1e-6, "%s(%s): derived aux gradient vs finite differences, worst %g", cases[i].proj,
              cases[i].labels ? cases[i].labels : "", worst);
        CHECK(hard_in_q, "%s(%s): hard values lie in Q", cases[i].proj, cases[i].labels ? cases[i].labels : "");
        CHECK(after_ok, "%s: post-step map keeps aux in range", cases[i].proj);
        /* init then weight at beta = 1 reproduces w0 (pmf binary: tanh(w0)) */
        double vars[PV_AUX + NNQ_MAX_LABELS];
        vars[PV_BETA] = 1;
        vars[PV_W0] = 0.3;
        for (int k = 0; k < K; k++) vars[PV_AUX + k] = sx_eval(p, pi->init[k], NULL, vars);
        double w = sx_eval(p, pi->weight, NULL, vars);
        if (!strcmp(cases[i].proj, "pmf") && !strcmp(cases[i].labels, "binary"))
            CHECK(fabs(w - tanh(0.3)) < 1e-12, "pmf(binary) init gives w = tanh(w0), got %g", w);
        if (!strcmp(cases[i].proj, "float") || !strcmp(cases[i].proj, "md_tanh"))
            CHECK(fabs(w - (strcmp(cases[i].proj, "float") ? tanh(0.3) : 0.3)) < 1e-12, "%s init", cases[i].proj);
    }
    /* A straight-through step asked of the chain rule through nearest() is rejected. */
    compiled_free(&c);
    Diag *quiet;
    FILE *sink = fopen("/dev/null", "w");
    quiet = diag_new(sink);
    Arena *ar = arena_new();
    SourceFile *src = source_from_string(ar, "bad.nnq",
                                         "labels binary = {-1, 1}\n"
                                         "projection bad(Q: labels) {\n"
                                         "    aux a\n    init a = w0\n    weight w = nearest(Q, a)\n"
                                         "    update a using grad(a)\n    hard w = nearest(Q, a)\n}\n");
    AstNode *root = lang_parse(ar, quiet, src);
    Program *prog = root ? check_program(ar, quiet, root, NNQ_STDLIB_DIR) : NULL;
    ProjInst *pi = prog ? proj_instantiate(prog, quiet, program_find_projection(prog, "bad"),
                                           program_find_labels(prog, "binary"), none) : NULL;
    CHECK(prog && !pi && diag_error_count(quiet) == 1, "grad through nearest() is a compile error");
    if (prog) sx_pool_free(prog->pool);
    arena_free(ar);
    diag_free(quiet);
    fclose(sink);
}

/* ---------- dropout masks ---------- */

/* The mask of a dropout at rate 0.25 over a [64, 500] activation (read after the step:
 * it lives until dropout_grad, the last planned buffer): about a quarter zeros,
 * the rest 1/0.75; the same step gives the same mask, the next step another; the loss
 * differs between steps (the mask is used) and evaluation has no dropout at all. */
static void test_dropout(void) {
    const char *src = "model net(x: f32[500]) -> f32[2] {\n"
                      "    return dense(dropout(dense(x, 500), 0.25), 2)\n"
                      "}\n"
                      "data d = idx(\"none-images\", \"none-labels\")\n"
                      "train net on d {\n    batch = 64\n}\n";
    Compiled c;
    bool ok = compile_source(&c, src, true);
    CHECK(ok, "dropout network compiles");
    if (!ok) return;
    int drop = -1;
    for (int i = 0; i < c.m->train.n; i++)
        if (c.m->train.insts[i].op == IR_DROPOUT) drop = i;
    bool eval_has = false;
    for (int i = 0; i < c.m->eval.n; i++) eval_has |= c.m->eval.insts[i].op == IR_DROPOUT;
    CHECK(drop >= 0 && !eval_has, "dropout is in train, not in eval");
    Jit *jit = jit_compile(c.m, 1, 0, true, NULL, NULL, c.diag);
    CHECK(jit != NULL, "dropout network JIT-compiles");
    if (!jit || drop < 0) goto out;
    MemPlan plan = memplan_func(&c.m->train, 64, true, c.m->arena);
    float *arena = jit_lookup(jit, "arena"), *x = jit_lookup(jit, "batch.x");
    int64_t *step = jit_lookup(jit, "dropout.step");
    void (*train_step)(int64_t) = (void (*)(int64_t))jit_lookup(jit, "train_step");
    CHECK(arena && x && step && train_step && plan.side[drop] >= 0, "dropout internals reachable");
    if (!arena || !x || !step || !train_step) goto out;
    for (int i = 0; i < 64 * 500; i++) x[i] = 1.0f;
    const float *mask = arena + plan.side[drop];
    float *first = malloc(sizeof(float) * 64 * 500);
    *step = 7;
    train_step(64);
    int zeros = 0, bad = 0;
    for (int i = 0; i < 64 * 500; i++) {
        first[i] = mask[i];
        if (mask[i] == 0) zeros++;
        else if (fabsf(mask[i] - 1 / 0.75f) > 1e-6f) bad++;
    }
    double frac = zeros / (64.0 * 500);
    CHECK(bad == 0 && fabs(frac - 0.25) < 0.01, "dropout drops %.4f (want 0.25 +- 0.01), %d bad scales", frac, bad);
    CHECK(*step == 8, "train_step advances the dropout step");
    *step = 7;
    train_step(64);
    CHECK(memcmp(first, mask, sizeof(float) * 64 * 500) == 0, "same step, same mask");
    train_step(64);
    int same = 0;
    for (int i = 0; i < 64 * 500; i++) same += first[i] == mask[i];
    CHECK(same < 64 * 500 * 0.8, "the next step draws another mask (%d of %d equal)", same, 64 * 500);
    free(first);
out:
    if (jit) jit_free(jit);
    compiled_free(&c);
}

/* ---------- the generated exp ---------- */

/* A one-layer program whose projection's weight is `weight` (over aux `a`, `a[|Q|]` when
 * `pair`), JIT-compiled at -O`opt`; its `soft` kernel computes the weight from the aux. */
typedef struct SoftKernel {
    Compiled c;
    Jit *jit;
    float *a0, *a1, *w;
    void (*soft)(float, float, float, float, float);
    int64_t n;
} SoftKernel;

static bool soft_kernel_at(SoftKernel *k, bool pair, const char *weight, int opt) {
    char src[1024];
    snprintf(src, sizeof src,
             "projection p(Q: labels) requires |Q| == 2 {\n"
             "    aux    %s\n"
             "    init   a = w0\n"
             "    weight w = %s\n"
             "    update a using grad(a)\n"
             "    hard   w = Q[%s]\n"
             "}\n"
             "labels binary = {-1, +1}\n"
             "model net(x: f32[13]) -> f32[7001] {\n"
             "    return dense(x, 7001, quant = p(binary), bias = false)\n"
             "}\n"
             "data d = idx(\"none-images\", \"none-labels\")\n"
             "train net on d {\n    batch = 4\n}\n",
             pair ? "a[|Q|]" : "a", weight, pair ? "argmax(a)" : "a >= 0");
    memset(k, 0, sizeof *k);
    if (!compile_source(&k->c, src, true)) return false;
    k->jit = jit_compile(k->c.m, opt, 0, true, NULL, NULL, k->c.diag);
    if (!k->jit) return false;
    const IrParam *par = &k->c.m->params[0];
    k->n = par->count;
    k->a0 = jit_param_buffer(k->jit, par->name, "aux", 0);
    k->a1 = pair ? jit_param_buffer(k->jit, par->name, "aux", 1) : NULL;
    k->w = jit_param_buffer(k->jit, par->name, "weight", -1);
    char name[256];
    snprintf(name, sizeof name, "kernel.soft.%s", par->name);
    k->soft = (void (*)(float, float, float, float, float))jit_lookup(k->jit, name);
    return k->a0 && (!pair || k->a1) && k->w && k->soft;
}

static bool soft_kernel(SoftKernel *k, bool pair, const char *weight) { return soft_kernel_at(k, pair, weight, 1); }

static void soft_kernel_free(SoftKernel *k) {
    if (k->jit) jit_free(k->jit);
    compiled_free(&k->c);
    memset(k, 0, sizeof *k);
}

/* The soft kernels' last TAIL of n elements run in the scalar remainder loop: fill them
 * with copies of elements the vector loop computes, and count the results that differ
 * from those copies' in any bit. */
enum { TAIL = 37 }; /* 13 * 7001 = 91013: the last elements run scalar */
static int64_t tail_source(int64_t i, int64_t n) { return (i - (n - TAIL)) * 911 % (n - TAIL); }
static void tail_fill(float *a, int64_t n) {
    for (int64_t i = n - TAIL; i < n; i++) a[i] = a[tail_source(i, n)];
}
static int64_t tail_differ(const float *w, int64_t n) {
    int64_t differ = 0;
    for (int64_t i = n - TAIL; i < n; i++) differ += memcmp(&w[i], &w[tail_source(i, n)], sizeof(float)) != 0;
    return differ;
}

/* codegen's exp is inline code, not libm's: a projection whose weight is exp(a), its
 * `soft` kernel run over a sweep of a and the special values, against exp in double.
 * Within 2 ulp over the normal range; at most 2.2e-38 (and not negative) below -86.9,
 * where the code holds its argument; +inf from ln(FLT_MAX) on; NaN stays NaN; and the
 * scalar remainder loop gives the same bits as the vector loop. Then a two-label
 * softmax's exp(a1 - max(a0, a1)), which codegen computes from one exp(-|a0 - a1|)
 * shared with exp(a0 - max(a0, a1)) and a select: the same bits as exp of the
 * difference, over pairs that tie, differ by a little or a lot, hold -0 or NaN. */
static void test_jit_exp(void) {
    SoftKernel k, kp;
    memset(&kp, 0, sizeof kp);
    bool ok = soft_kernel(&k, false, "exp(a)");
    CHECK(ok, "the exp projection compiles, its kernel and buffers are reachable");
    if (!ok) goto out;
    float *a = k.a0, *w = k.w;
    int64_t n = k.n;
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 0.34657359f, -0.34657359f,
                                    88.72f, 88.7228f, 88.7229f, 88.8f, 100.0f, -86.8f, -86.9f, -87.4f,
                                    -103.9f, -1000.0f, INFINITY, -INFINITY, NAN};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int64_t i = 0; i < n - TAIL; i++) a[i] = i < ns ? special[i] : (float)(-95.0 + 190.0 * (double)i / n);
    tail_fill(a, n);
    k.soft(1, 1, 1, 1, 1);
    double worst = 0;
    int64_t bad_range = 0, bad_tail = tail_differ(w, n);
    for (int64_t i = 0; i < n; i++) {
        double want = exp((double)a[i]);
        float got = w[i];
        if (isnan(a[i])) bad_range += !isnan(got);
        else if (want > FLT_MAX) bad_range += !(isinf(got) && got > 0);
        else if (a[i] < -86.9f) bad_range += !(got >= 0 && got <= 2.2e-38f);
        else {
            double ulp = nextafterf((float)want, INFINITY) - (float)want;
            worst = fmax(worst, fabs(got - want) / ulp);
        }
    }
    if (getenv("NNQ_TEST_VERBOSE")) printf("exp: worst %.3f ulp\n", worst);
    CHECK(worst <= 2.0, "exp within 2 ulp of exp in double over [-86.9, 88.72] (worst %.2f ulp)", worst);
    CHECK(bad_range == 0, "exp's underflow, overflow and NaN (%lld wrong)", (long long)bad_range);
    CHECK(bad_tail == 0, "the remainder loop's exp matches the vector loop's (%lld differ)", (long long)bad_tail);

    static const float pairs[][2] = {{0.0f, 0.0f}, {-0.0f, 0.0f}, {0.0f, -0.0f}, {1.0f, 1.0f}, {NAN, 1.0f},
                                     {1.0f, NAN}, {NAN, NAN}, {INFINITY, 1.0f}, {1.0f, INFINITY},
                                     {-INFINITY, -INFINITY}, {200.0f, -200.0f}, {-200.0f, 200.0f}};
    int np = (int)(sizeof pairs / sizeof pairs[0]);
    for (int which = 0; which < 2; which++) { /* exp(a[which] - max(a[0], a[1])) */
        ok = soft_kernel(&kp, true, which ? "exp(a[1] - max(a[0], a[1]))" : "exp(a[0] - max(a[0], a[1]))");
        CHECK(ok, "the two-label exp projection compiles, its kernel and buffers are reachable");
        if (!ok) goto out;
        for (int64_t i = 0; i < n; i++) { /* (not urand: the tests after this one draw from it) */
            float u = (float)((uint32_t)(i * 2654435761u) / 4294967296.0), v = (float)((uint32_t)(i * 40503u + 7) % 1000) / 1000;
            float x = i < np ? pairs[i][0] : 6 * u - 3, y = i < np ? pairs[i][1] : x + 2 * v - 1;
            if (i >= np && i % 5 == 0) y = x;         /* ties */
            if (i >= np && i % 7 == 0) y = x * 40.0f; /* exp far below 1 */
            kp.a0[i] = x, kp.a1[i] = y;
            a[i] = (which ? y : x) - (x >= y ? x : y); /* SX_MAX's select, then exp's argument, in float */
        }
        kp.soft(1, 1, 1, 1, 1);
        k.soft(1, 1, 1, 1, 1);
        int64_t differ = 0, first = -1;
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&kp.w[i], &w[i], sizeof(float)) != 0 && !(isnan(kp.w[i]) && isnan(w[i]))) {
                differ++;
                if (first < 0) first = i;
            }
        CHECK(differ == 0, "exp(a%d - max(a0, a1)) through the shared exp has exp's bits (%lld differ; first: "
              "a = %g, %g: %g against %g)", which, (long long)differ, first < 0 ? 0.0 : kp.a0[first],
              first < 0 ? 0.0 : kp.a1[first], first < 0 ? 0.0 : kp.w[first], first < 0 ? 0.0 : w[first]);
        soft_kernel_free(&kp);
    }
out:
    soft_kernel_free(&kp);
    soft_kernel_free(&k);
}

/* codegen's log is inline code too (before 2026-12-07 llvm.log, which became libmvec's
 * SIMD log in vector loops and libm's logf in scalar ones, so -O0 trained another model
 * than -O2): a projection whose weight is log(a), over every binade of the positive
 * floats, denormals included, and the special values, against log in double: within
 * 1 ulp; log(0) = -inf, log(+inf) = +inf, NaN for a negative or NaN argument; the
 * remainder loop gives the vector loop's bits (-O2), and so does the kernel at -O0.
 * The same -O0 check for exp, tanh and atanh. */
static void test_jit_log(void) {
    SoftKernel k, k0;
    memset(&k0, 0, sizeof k0);
    bool ok = soft_kernel_at(&k, false, "log(a)", 2); /* -O2: the loop vectorizer runs */
    CHECK(ok, "the log projection compiles, its kernel and buffers are reachable");
    if (!ok) goto out;
    int64_t n = k.n;
    static const float special[] = {0.0f, -0.0f, 1.0f, 1.00000012f, 0.99999994f, 0.70710677f, 0.70710683f,
                                    1.41421354f, 1.41421366f, 2.0f, 0.5f, 1e-45f, 1e-40f, 1.17549421e-38f,
                                    1.17549435e-38f, 3.40282347e38f, INFINITY, -1.0f, -1e-40f, -INFINITY, NAN};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int64_t i = 0; i < n - TAIL; i++) /* 2^-149 to 2^128, log-spaced, and near 1 */
        k.a0[i] = i < ns ? special[i]
                  : i % 3 ? (float)exp2(-149.0 + 277.0 * (double)i / n)
                          : (float)(1.0 + ((double)i / n - 0.5) * 1e-2);
    tail_fill(k.a0, n);
    k.soft(1, 1, 1, 1, 1);
    double worst = 0;
    int64_t bad_range = 0, bad_tail = tail_differ(k.w, n);
    for (int64_t i = 0; i < n; i++) {
        float a = k.a0[i], got = k.w[i];
        if (isnan(a) || a < 0) bad_range += !isnan(got);
        else if (a == 0) bad_range += !(isinf(got) && got < 0);
        else if (isinf(a)) bad_range += !(isinf(got) && got > 0);
        else {
            double want = log((double)a), ulp = fabs(nextafterf((float)want, INFINITY) - (float)want);
            worst = fmax(worst, fabs(got - want) / fmax(ulp, 1e-45));
        }
    }
    if (getenv("NNQ_TEST_VERBOSE")) printf("log: worst %.3f ulp\n", worst);
    CHECK(worst <= 1.0, "log within 1 ulp of log in double over the positive floats (worst %.2f ulp)", worst);
    CHECK(bad_range == 0, "log of 0, +inf, negatives and NaN (%lld wrong)", (long long)bad_range);
    CHECK(bad_tail == 0, "the remainder loop's log matches the vector loop's (%lld differ)", (long long)bad_tail);
    static const char *const fns[] = {"log(a)", "exp(a)", "tanh(a)", "atanh(a)"};
    for (int f = 0; f < 4; f++) {
        if (f) {
            soft_kernel_free(&k);
            ok = soft_kernel_at(&k, false, fns[f], 2);
            CHECK(ok, "the %s projection compiles", fns[f]);
            if (!ok) goto out;
        }
        ok = soft_kernel_at(&k0, false, fns[f], 0);
        CHECK(ok, "the %s projection compiles at -O0", fns[f]);
        if (!ok) goto out;
        for (int64_t i = 0; i < n; i++) /* the sweep above, and [-1.5, 1.5] for tanh and atanh */
            k0.a0[i] = k.a0[i] = f < 2 ? k.a0[i] : (float)(-1.5 + 3.0 * (double)((i * 7919) % n) / n);
        k.soft(1, 1, 1, 1, 1);
        k0.soft(1, 1, 1, 1, 1);
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += memcmp(&k.w[i], &k0.w[i], sizeof(float)) != 0;
        CHECK(differ == 0, "%s compiled at -O0 gives -O2's bits (%lld of %lld differ)", fns[f], (long long)differ,
              (long long)n);
        soft_kernel_free(&k0);
    }
out:
    soft_kernel_free(&k0);
    soft_kernel_free(&k);
}

/* ---------- batch-norm recalibration for the hard network ---------- */

/* eval_batch(n, hard = 1, calibrate = 1) normalizes with the batch's own statistics and
 * adds its mean and unbiased variance to the hard statistics; calibrate() averages. Here
 * batch norm sits right on the input, so the expected values come straight from x. */
static void test_bn_calibration(void) {
    const char *src = "model net(x: f32[3]) -> f32[2] {\n"
                      "    return dense(batchnorm(x), 2)\n"
                      "}\n"
                      "data d = idx(\"none-images\", \"none-labels\")\n"
                      "train net on d {\n    batch = 4\n}\n";
    Compiled c;
    bool ok = compile_source(&c, src, true);
    CHECK(ok, "calibration network compiles");
    if (!ok) return;
    Jit *jit = jit_compile(c.m, 1, 0, true, NULL, NULL, c.diag);
    float (*eval)(int64_t, int32_t, int32_t) = jit ? (float (*)(int64_t, int32_t, int32_t))jit_lookup(jit, "eval_batch") : NULL;
    float *x = jit ? jit_lookup(jit, "batch.x") : NULL;
    float *hm = jit ? jit_lookup(jit, "bn1.hard_mean") : NULL, *hv = jit ? jit_lookup(jit, "bn1.hard_var") : NULL;
    CHECK(eval && x && hm && hv, "eval_batch and the hard statistics are reachable");
    if (eval && x && hm && hv) {
        double want_m[3] = {0, 0, 0}, want_v[3] = {0, 0, 0};
        memset(hm, 0, 3 * sizeof(float));
        memset(hv, 0, 3 * sizeof(float));
        for (int batch = 0; batch < 2; batch++) {
            for (int i = 0; i < 12; i++) x[i] = (float)((i * 7 + batch * 5) % 11) * (batch ? 0.5f : 2.0f);
            for (int f = 0; f < 3; f++) {
                double m = 0, v = 0;
                for (int n = 0; n < 4; n++) m += x[n * 3 + f] / 4.0;
                for (int n = 0; n < 4; n++) v += (x[n * 3 + f] - m) * (x[n * 3 + f] - m) / 3.0;
                want_m[f] += m, want_v[f] += v;
            }
            eval(4, 1, 1);
        }
        double worst = 0;
        for (int f = 0; f < 3; f++)
            worst = fmax(worst, fmax(fabs(hm[f] - want_m[f]), fabs(hv[f] - want_v[f]) / fmax(1, want_v[f])));
        CHECK(worst < 1e-5, "calibration adds batch means and unbiased variances (worst error %g)", worst);
    }
    if (jit) jit_free(jit);
    compiled_free(&c);
}

/* ---------- memory planning and threads give the same numbers ---------- */

/* One training step of the same network, weights, batch and dropout masks, compiled
 * with buffers shared by lifetime (run on 1 and on 3 threads) and with every buffer its
 * own: the loss and every gradient must agree bit for bit, and sharing must actually
 * save memory. */
static void test_same_numbers(const char *src, int in_elems, int classes, bool in_place) {
    Compiled c[2];
    Jit *jit[2] = {NULL, NULL};
    float loss[3] = {0, 0, 0};
    float *grads[3] = {NULL, NULL, NULL};
    int64_t total = 0;
    bool ok = compile_source(&c[0], src, true) && compile_source(&c[1], src, true);
    CHECK(ok, "network compiles twice");
    if (!ok) return;
    MemPlan shared = memplan_func(&c[0].m->train, c[0].m->prog->train->batch, true, c[0].m->arena);
    MemPlan own = memplan_func(&c[0].m->train, c[0].m->prog->train->batch, false, c[0].m->arena);
    CHECK(own.size == own.total && shared.total == own.total && shared.size < own.size,
          "sharing saves memory: %lld of %lld floats", (long long)shared.size, (long long)own.size);
    /* a batch norm's gradient over its input gradient, where that dies there (memplan.c):
     * the numbers below must not change for it */
    int over = 0, apart = 0;
    const IrFunc *tf = &c[0].m->train;
    for (int i = 0; i < tf->n; i++) {
        IrOp op = tf->insts[i].op;
        if (op != IR_BN_GRAD && op != IR_RELU_BN_GRAD && op != IR_BIAS_RELU_BN_GRAD) continue;
        over += shared.value[i] >= 0 && shared.value[i] == shared.value[tf->insts[i].args[0]];
        apart += own.value[i] != own.value[tf->insts[i].args[0]];
    }
    CHECK(!in_place || (over > 0 && apart > 0), "a batch-norm gradient written over its input gradient (%d), "
          "not without sharing", over);
    for (int k = 0; k < c[0].m->nparams; k++) total += c[0].m->params[k].count;
    for (int v = 0; v < 2; v++) {
        c[v].m->unshared_memory = v == 1;
        jit[v] = jit_compile(c[v].m, 1, 0, true, NULL, NULL, c[v].diag);
        CHECK(jit[v] != NULL, "JIT %d", v);
        if (!jit[v]) goto out;
    }
    for (int run = 0; run < 3; run++) {
        int v = run == 1; /* runs 0 and 2: shared buffers, on 1 and on 3 threads */
        rt_parallel_set_threads(run == 2 ? 3 : 1);
        rt_parallel_set_min_items_cap(run == 2 ? 1 : 0); /* split even these tiny loops */
        void (*step)(int64_t) = (void (*)(int64_t))jit_lookup(jit[v], "train_step");
        float *x = jit_lookup(jit[v], "batch.x");
        int32_t *y = jit_lookup(jit[v], "batch.y");
        int64_t *dstep = jit_lookup(jit[v], "dropout.step");
        char name[64];
        snprintf(name, sizeof name, "train.v%d", c[v].m->train.loss);
        float *l = jit_lookup(jit[v], name);
        if (!step || !x || !y || !dstep || !l) {
            CHECK(false, "internals reachable");
            goto out;
        }
        uint64_t seed = 12345;
        for (int i = 0; i < 8 * in_elems; i++) x[i] = (float)((seed = seed * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5f;
        for (int i = 0; i < 8; i++) y[i] = i % classes;
        for (int k = 0; k < c[v].m->nparams; k++) {
            const IrParam *par = &c[v].m->params[k];
            float *w = jit_param_buffer(jit[v], par->name, "weight", -1);
            for (int64_t i = 0; i < par->count; i++) w[i] = (float)((seed = seed * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5f;
        }
        *dstep = 3;
        step(8);
        loss[run] = *l;
        grads[run] = malloc(sizeof(float) * (size_t)total);
        int64_t at = 0;
        for (int k = 0; k < c[v].m->nparams; k++) {
            const IrParam *par = &c[v].m->params[k];
            memcpy(grads[run] + at, jit_param_buffer(jit[v], par->name, "grad", -1), sizeof(float) * (size_t)par->count);
            at += par->count;
        }
    }
    rt_parallel_set_threads(0);
    rt_parallel_set_min_items_cap(0);
    CHECK(loss[0] == loss[1] && isfinite(loss[0]), "same loss shared and unshared (%.9g vs %.9g)", loss[0], loss[1]);
    CHECK(memcmp(grads[0], grads[1], sizeof(float) * (size_t)total) == 0, "same gradients shared and unshared");
    CHECK(loss[0] == loss[2] && memcmp(grads[0], grads[2], sizeof(float) * (size_t)total) == 0,
          "same loss and gradients on 1 and 3 threads");
out:
    for (int v = 0; v < 3; v++) free(grads[v]);
    for (int v = 0; v < 2; v++) {
        if (jit[v]) jit_free(jit[v]);
        compiled_free(&c[v]);
    }
}

/* ---------- the generated network: backward vs finite differences ---------- */

static const char *mlp_src =
    "import std.projections\n"
    "labels binary = {-1, +1}\n"
    "model net(x: f32[2, 3]) -> f32[4] {\n"
    "    h = flatten(x)\n"
    "    h = relu(batchnorm(dense(h, 7, quant = pmf(binary))))\n"
    "    h = relu(dense(dropout(h, 0.3), 5))\n"
    "    return dense(h, 4, quant = pmf(binary))\n"
    "}\n"
    "data d = idx(\"none-images\", \"none-labels\")\n"
    "train net on d {\n"
    "    optimizer = adam(lr = 0.01)\n"
    "    beta = anneal(start = 1.5, times = 1.1, every = 1 iterations)\n"
    "    batch = 8\n"
    "}\n";

/* Batch norms over channels with no pooling after them: their gradients may write over
 * their input gradients (memplan.c). */
static const char *conv_bn_src =
    "labels binary = {-1, +1}\n"
    "model net(x: f32[2, 9, 9]) -> f32[3] {\n"
    "    h = relu(batchnorm(conv2d(x, 4, 3, pad = 1, quant = pmf(binary))))\n"
    "    h = batchnorm(conv2d(h, 5, 3, stride = 2))\n"
    "    return dense(flatten(relu(h)), 3)\n"
    "}\n"
    "data d = idx(\"none-images\", \"none-labels\")\n"
    "train net on d {\n"
    "    batch = 8\n"
    "}\n";

/* Convolutions (stride, padding), max and average pooling, a residual block called in a
 * for loop with a compile-time if, batch norm over channels, biases. */
static const char *conv_src =
    "labels binary = {-1, +1}\n"
    "block res(x, k: int) {\n"
    "    y = relu(conv2d(x, channels(x), k, pad = (k - 1) / 2, bias = false))\n"
    "    return if k == 1 then y else x + y\n"
    "}\n"
    "model net(x: f32[2, 9, 9]) -> f32[3] {\n"
    "    h = relu(batchnorm(conv2d(x, 4, 3, pad = 1, quant = pmf(binary), bias = false)))\n"
    "    h = maxpool(h, 2)\n"
    "    for k in [3, 1] {\n"
    "        h = res(h, k)\n"
    "    }\n"
    "    h = avgpool(h, 2)\n"
    "    h = relu(conv2d(h, 3, 2, stride = 2))\n"
    "    return dense(flatten(h), 3)\n"
    "}\n"
    "data d = idx(\"none-images\", \"none-labels\")\n"
    "train net on d {\n"
    "    batch = 8\n"
    "}\n";

/* One training step with the dropout masks of step 42 every time, so that the finite
 * differences see one function. */
static void (*g_train_step)(int64_t);
static int64_t *g_dropout_step;
static void fixed_step(int64_t n) {
    *g_dropout_step = 42;
    g_train_step(n);
}

/* Nodes of kind `op` reachable from a kernel's outputs (seen: one flag a pool node). */
static int reachable_ops(const SxPool *p, const IrKernel *k, SxOp op) {
    int n = sx_count(p), count = 0;
    char *mark = calloc(n, 1);
    for (int o = 0; o < k->nout; o++) sx_reach(p, k->out[o].node, mark);
    for (int i = 0; i < n; i++) count += mark[i] && sx_node(p, i)->op == op;
    free(mark);
    return count;
}

static void test_network_gradients(const char *net_src, int in_elems, int classes) {
    Compiled c;
    bool ok = compile_source(&c, net_src, true);
    CHECK(ok, "test network compiles");
    if (!ok) return;
    Jit *jit = jit_compile(c.m, 1, 0, true, NULL, NULL, c.diag);
    CHECK(jit != NULL, "test network JIT-compiles");
    if (!jit) {
        compiled_free(&c);
        return;
    }
    g_train_step = (void (*)(int64_t))jit_lookup(jit, "train_step");
    g_dropout_step = jit_lookup(jit, "dropout.step");
    void (*train_step)(int64_t) = g_train_step && g_dropout_step ? fixed_step : NULL;
    float *x = jit_lookup(jit, "batch.x");
    int32_t *y = jit_lookup(jit, "batch.y");
    char name[128];
    snprintf(name, sizeof name, "train.v%d", c.m->train.loss);
    float *loss = jit_lookup(jit, name);
    CHECK(train_step && x && y && loss, "internals are reachable");
    if (!train_step || !x || !y || !loss) goto out;
    int n = 8;
    for (int i = 0; i < n * in_elems; i++) x[i] = (float)urand(-1, 1);
    for (int i = 0; i < n; i++) y[i] = (int32_t)(urand(0, classes));
    for (int pi = 0; pi < c.m->nparams; pi++) {
        const IrParam *par = &c.m->params[pi];
        float *w = jit_param_buffer(jit, par->name, "weight", -1);
        for (int64_t i = 0; i < par->count; i++) w[i] = (float)urand(-0.8, 0.8);
    }
    train_step(n);
    double base = *loss;
    CHECK(isfinite(base) && base > 0, "loss is finite and positive (%g)", base);
    for (int pi = 0; pi < c.m->nparams; pi++) {
        const IrParam *par = &c.m->params[pi];
        float *w = jit_param_buffer(jit, par->name, "weight", -1);
        float *g = jit_param_buffer(jit, par->name, "grad", -1);
        double *an = malloc(sizeof(double) * par->count);
        train_step(n);
        for (int64_t i = 0; i < par->count; i++) an[i] = g[i];
        /* The scale's floor: a float loss's central difference is good to about 1e-4
         * absolute (a bias ahead of a batch norm has no gradient at all). */
        double worst = 0, scale = 1e-2;
        for (int64_t i = 0; i < par->count; i++) scale = fmax(scale, fabs(an[i]));
        for (int64_t i = 0; i < par->count; i++) {
            /* a relu or maxpool kink within h of the point spoils that difference: the
             * better of steps h and h / 4 (a kink closer than h / 4 is rarer still) */
            double err = INFINITY;
            for (float h = 2e-3f; h > 4e-4f; h /= 4) {
                float save = w[i];
                w[i] = save + h;
                train_step(n);
                double lp = *loss;
                w[i] = save - h;
                train_step(n);
                double lm = *loss;
                w[i] = save;
                err = fmin(err, fabs((lp - lm) / (2.0 * h) - an[i]) / scale);
            }
            if (err > worst) worst = err;
        }
        if (getenv("NNQ_TEST_VERBOSE")) printf("%s: worst %.3g of max %.3g\n", par->name, worst, scale);
        CHECK(worst < 2e-2, "%s: generated gradient vs central differences, worst %.3g of max |g| %.3g",
              par->name, worst, scale);
        free(an);
    }

    /* The fused PMF + Adam kernel against a step-by-step reference. */
    if (c.m->params[0].proj->ncomp == 2) {
        int pi = 0;
        const IrParam *par = &c.m->params[pi];
        float *a[2], *mo[2], *ve[2], *w, *g;
        for (int k = 0; k < 2; k++) {
            a[k] = jit_param_buffer(jit, par->name, "aux", k);
            mo[k] = jit_param_buffer(jit, par->name, "m", k);
            ve[k] = jit_param_buffer(jit, par->name, "v", k);
        }
        w = jit_param_buffer(jit, par->name, "weight", -1);
        g = jit_param_buffer(jit, par->name, "grad", -1);
        snprintf(name, sizeof name, "kernel.update.%s", par->name);
        void (*upd)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
        snprintf(name, sizeof name, "kernel.soft.%s", par->name);
        void (*soft)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
        CHECK(upd && a[0] && a[1] && mo[0] && ve[0], "update kernel and its buffers are reachable");
        /* the two aux gradients are opposite: one set of moments serves both (fuse.c) */
        CHECK(!mo[1] && !ve[1], "binary pmf under Adam keeps one set of moments, not two");
        /* sx.c's sign rules: the second aux's Adam step is the first's nodes negated */
        int sqrts = reachable_ops(c.prog->pool, &c.m->kernels[pi][0], SX_SQRT);
        CHECK(sqrts == 1, "binary pmf under Adam: one square root a weight, for both aux (%d)", sqrts);
        if (upd && soft && mo[0] && ve[0]) {
            int64_t N = par->count;
            double *ref = malloc(sizeof(double) * N * 7);
            float beta = 1.5f, beta_next = 1.65f, lr = 0.01f, bc1 = 1 / (1 - 0.9f), bc2 = 1 / (1 - 0.999f);
            for (int64_t i = 0; i < N; i++) {
                for (int k = 0; k < 2; k++) a[k][i] = (float)urand(-1, 1);
                mo[0][i] = (float)urand(-0.1, 0.1);
                ve[0][i] = (float)urand(0, 0.01);
                double m0[2] = {mo[0][i], -mo[0][i]}, v0[2] = {ve[0][i], ve[0][i]};
                g[i] = (float)urand(-1, 1);
                /* reference: u = softmax(beta a), w = u1 - u0, g_a = beta (diag(u) - u u^T) (g q) */
                double q[2] = {-1, 1}, u[2], e0 = exp(beta * a[0][i]), e1 = exp(beta * a[1][i]);
                u[0] = e0 / (e0 + e1);
                u[1] = e1 / (e0 + e1);
                double gu[2] = {g[i] * q[0], g[i] * q[1]}, dot = u[0] * gu[0] + u[1] * gu[1], an[2];
                for (int k = 0; k < 2; k++) {
                    double ga = beta * u[k] * (gu[k] - dot);
                    double m1 = 0.9 * m0[k] + 0.1 * ga, v1 = 0.999 * v0[k] + 0.001 * ga * ga;
                    an[k] = a[k][i] - lr * (m1 * bc1) / (sqrt(v1 * bc2) + 1e-8);
                    ref[i * 7 + 1 + k] = an[k];
                    ref[i * 7 + 3 + k] = m1;
                    ref[i * 7 + 5 + k] = v1;
                }
                double f0 = exp(beta_next * an[0]), f1 = exp(beta_next * an[1]);
                ref[i * 7] = (f1 - f0) / (f0 + f1);
            }
            soft(beta, beta, 0, 0, 0); /* the values the update carries in (fuse.c), as after init */
            upd(beta, beta_next, lr, bc1, bc2);
            double worst = 0;
            for (int64_t i = 0; i < N; i++) {
                /* the second component's moments: the first's, negated (m) or not (v) */
                double got[7] = {w[i], a[0][i], a[1][i], mo[0][i], -mo[0][i], ve[0][i], ve[0][i]};
                for (int j = 0; j < 7; j++) {
                    double err = fabs(got[j] - ref[i * 7 + j]) / fmax(1e-3, fabs(ref[i * 7 + j]));
                    if (err > worst) worst = err;
                }
            }
            CHECK(worst < 1e-4, "fused pmf+adam update vs reference, worst relative error %g", worst);
            free(ref);
        }
    }
out:
    jit_free(jit);
    compiled_free(&c);
}

/* ---------- targets ---------- */

static void test_target_tables(void) {
    const CgTarget *t = &cg_target_cpu;
    for (int op = 0; op < IR_OP_COUNT; op++)
        CHECK(!t->ops[op] == ir_op_source((IrOp)op), "%s target: %s %s", t->name, ir_op_name((IrOp)op),
              ir_op_source((IrOp)op) ? "computes nothing but has code" : "has no code");
    CHECK(t->buffer && t->kernel && t->kernel_run && t->setup, "%s target: every entry filled", t->name);
}

/* proj.c's shift invariance: the second of two aux gradients is written as the first
 * negated exactly where the weight does not change when both aux move by one amount;
 * the derived gradients still match finite differences either way. */
static void test_shift_invariance(void) {
    Compiled c;
    char src[4096];
    snprintf(src, sizeof src, "import std.projections\n"
                              "labels binary = {-1, +1}\n"
                              "labels ternary = {-1, 0, 1}\n"
                              "%s"
                              "projection gap(Q: labels) requires |Q| == 2 {\n"
                              "    aux    a[2]\n"
                              "    init   a = -abs(w0 - Q)\n"
                              "    weight w = tanh(beta * (a[1] - a[0]))\n"
                              "    update a using grad(a)\n"
                              "    hard   w = Q[argmax(a)]\n"
                              "}\n"
                              "projection tilt(Q: labels) {\n"
                              "    aux    a[|Q|]\n"
                              "    init   a = -abs(w0 - Q)\n"
                              "    soft   u = softmax(beta * a)\n"
                              "    weight w = sum(u * Q) + 0.25 * a[0]\n"
                              "    update a using grad(a)\n"
                              "    hard   w = Q[argmax(a)]\n"
                              "}\n"
                              "projection scaled(Q: labels) {\n"
                              "    aux    a[|Q|]\n"
                              "    init   a = -abs(w0 - Q)\n"
                              "    soft   u = softmax(beta * a * a)\n"
                              "    weight w = sum(u * Q)\n"
                              "    update a using grad(a)\n"
                              "    hard   w = Q[argmax(a)]\n"
                              "}\n",
             pmf_pair_src());
    bool ok = compile_source(&c, src, false);
    CHECK(ok, "projections for the shift-invariance check compile");
    if (!ok) {
        compiled_free(&c);
        return;
    }
    static const struct { const char *proj, *labels; bool opposite; } cases[] = {
        {"pmf_pair", "binary", true}, /* a softmax of beta a (pmf keeps such a pair as one value) */
        {"gap", "binary", true},      /* a function of a1 - a0 (the derivative negates by itself) */
        {"tilt", "binary", false},    /* plus a term in a0 alone */
        {"scaled", "binary", false},  /* a softmax of beta a^2: not invariant */
        {"pmf", "ternary", false},    /* three components: nothing rewritten */
    };
    SrcLoc none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const LabelSet *q = program_find_labels(c.prog, cases[i].labels);
        ProjInst *pi = proj_instantiate(c.prog, c.diag, program_find_projection(c.prog, cases[i].proj), q, none);
        CHECK(pi != NULL, "%s(%s) instantiates", cases[i].proj, cases[i].labels);
        if (!pi) continue;
        SxPool *p = c.prog->pool;
        bool negated = pi->ncomp == 2 && (sx_negated(p, pi->grad[1]) == pi->grad[0] || sx_negated(p, pi->grad[0]) == pi->grad[1]);
        CHECK(negated == cases[i].opposite, "%s(%s): one aux gradient %s the other negated", cases[i].proj,
              cases[i].labels, cases[i].opposite ? "is written as" : "is not written as");
        double worst = 0;
        for (int trial = 0; trial < 40; trial++) {
            double vars[PV_AUX + NNQ_MAX_LABELS] = {0};
            vars[PV_BETA] = urand(0.5, 3);
            vars[PV_GW] = urand(-2, 2);
            for (int k = 0; k < pi->ncomp; k++) vars[PV_AUX + k] = urand(-0.9, 0.9);
            for (int k = 0; k < pi->ncomp; k++) {
                double want = vars[PV_GW] * weight_slope(p, pi->weight, vars, PV_AUX + k, 1e-6);
                worst = fmax(worst, fabs(sx_eval(p, pi->grad[k], NULL, vars) - want) / fmax(1, fabs(want)));
            }
        }
        CHECK(worst < 1e-6, "%s(%s): aux gradients vs finite differences, worst %g", cases[i].proj, cases[i].labels,
              worst);
    }
    compiled_free(&c);
}

int main(void) {
    test_target_tables();
    test_sx_basics();
    test_sx_derivatives();
    test_sx_large_beta();
    test_projections();
    test_dropout();
    test_jit_exp();
    test_jit_log();
    test_bn_calibration();
    test_same_numbers(mlp_src, 6, 4, true);
    test_same_numbers(conv_src, 2 * 9 * 9, 3, false);
    test_same_numbers(conv_bn_src, 2 * 9 * 9, 3, true);
    test_network_gradients(mlp_src, 6, 4);
    test_network_gradients(conv_src, 2 * 9 * 9, 3);
    test_shift_invariance(); /* last: the draws above stay those the thresholds were set with */
    return test_summary();
}
