/* test_methods.c — every projection of std.projections, checked three ways:
 *
 *  1. against the papers' formulas (docs/../shared methods table), written out here in
 *     plain C: the forward weight, the gradient that steps the aux, the move of the
 *     primal mirror-descent forms — at random points, for binary, ternary and 4-level
 *     label sets where the method serves them;
 *  2. the chain-rule methods' derived gradients against central finite differences;
 *  3. the JIT-compiled fused update kernel against a step-by-step evaluation of the
 *     same formulas (projection gradient, then Adam or SGD with momentum and weight
 *     decay, then move, then after, then the new weight at the next beta).
 * Plus: hard values lie in Q and are the label the paper's hard network takes (argmax,
 * sign, nearest); `after` maps (ste's clamp) against their formula; ste's aux is drawn
 * past max |Q| so that its gradient mask and clamp act; the compile-time rejections of
 * projections that cannot serve a label set. Ends with "N passed, N failed". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "codegen.h"
#include "testutil.h"

#define K_MAX 8

typedef struct Point {
    double beta, gw, a[K_MAX], q[K_MAX];
    int k;  /* labels */
    int n;  /* aux components */
} Point;

static void softmax(const double *z, int k, double *u) {
    double m = z[0], s = 0;
    for (int i = 1; i < k; i++) m = fmax(m, z[i]);
    for (int i = 0; i < k; i++) s += u[i] = exp(z[i] - m);
    for (int i = 0; i < k; i++) u[i] /= s;
}

static int cmp_desc(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Sparsemax by sorting (Martins & Astudillo), independent of nnqc's unrolled form. */
static void sparsemax(const double *z, int k, double *u) {
    double s[K_MAX], cum = 0, tau = 0;
    memcpy(s, z, sizeof(double) * k);
    qsort(s, k, sizeof(double), cmp_desc);
    for (int j = 0; j < k; j++) {
        cum += s[j];
        if (1 + (j + 1) * s[j] > cum) tau = (cum - 1) / (j + 1);
    }
    for (int i = 0; i < k; i++) u[i] = fmax(z[i] - tau, 0);
}

static double shifted_tanh(const Point *p, double a, double *dw) {
    double w = p->q[0];
    *dw = 0;
    for (int i = 0; i + 1 < p->k; i++) {
        double gap = p->q[i + 1] - p->q[i], mid = (p->q[i] + p->q[i + 1]) / 2;
        double t = tanh(p->beta * (a - mid));
        w += gap / 2 * (1 + t);
        *dw += gap / 2 * p->beta * (1 - t * t);
    }
    return w;
}

/* pmf over two labels keeps its pair as one value t = (a1 - a0) / 2 (stdlib
 * /projections.nnq): the pair (-t, t), whose softmax is the same. */
static bool pmf_one_value(const char *m, const Point *p) { return !strcmp(m, "pmf") && p->k == 2 && p->n == 1; }

static Point pmf_pair(const Point *p) {
    Point pair = *p;
    pair.n = 2, pair.a[0] = -p->a[0], pair.a[1] = p->a[0];
    return pair;
}

/* The papers' formulas: forward weight and the gradient stepping the aux. */
static double reference(const char *m, const Point *p, double *ga) {
    double z[K_MAX], u[K_MAX], gu[K_MAX], dot = 0, w = 0;
    int k = p->k;
    if (!strcmp(m, "pmf_pair")) m = "pmf";
    if (pmf_one_value(m, p)) { /* stepped by the pair's gradient of a1 */
        Point pair = pmf_pair(p);
        double gp[2];
        w = reference(m, &pair, gp);
        ga[0] = gp[1];
        return w;
    }
    for (int i = 0; i < k; i++) gu[i] = p->gw * p->q[i];
    if (!strcmp(m, "pmf") || !strcmp(m, "md_softmax_s")) {
        for (int i = 0; i < k; i++) z[i] = p->beta * p->a[i];
        softmax(z, k, u);
        for (int i = 0; i < k; i++) w += u[i] * p->q[i], dot += u[i] * gu[i];
        for (int i = 0; i < k; i++)
            ga[i] = !strcmp(m, "pmf") ? p->beta * u[i] * (gu[i] - dot) : gu[i];
        return w;
    }
    if (!strcmp(m, "pgd")) {
        for (int i = 0; i < k; i++) z[i] = p->beta * p->a[i];
        sparsemax(z, k, u);
        int ns = 0;
        double sg = 0;
        for (int i = 0; i < k; i++)
            if (u[i] > 0) ns++, sg += gu[i];
        for (int i = 0; i < k; i++) w += u[i] * p->q[i];
        for (int i = 0; i < k; i++) ga[i] = u[i] > 0 ? p->beta * (gu[i] - sg / ns) : 0;
        return w;
    }
    if (!strcmp(m, "picm")) {
        double v = p->a[0] - p->a[1];
        w = p->a[0] >= p->a[1] ? p->q[0] : p->q[1];
        ga[0] = (fabs(v) <= 1) * (gu[0] - gu[1]) / 2;
        ga[1] = -ga[0];
        return w;
    }
    if (!strcmp(m, "md_softmax")) { /* aux is the simplex point itself */
        for (int i = 0; i < k; i++) w += p->a[i] * p->q[i], ga[i] = gu[i];
        return w;
    }
    double lo = p->q[0], hi = p->q[k - 1], mid = (lo + hi) / 2, half = (hi - lo) / 2, a = p->a[0];
    if (!strcmp(m, "ste")) {
        ga[0] = p->gw * (fabs(a) <= hi);
        return a < mid ? lo : hi;
    }
    if (!strcmp(m, "md_tanh_s") || !strcmp(m, "gd_tanh")) {
        double t = tanh(p->beta * a);
        ga[0] = !strcmp(m, "gd_tanh") ? p->gw * half * p->beta * (1 - t * t) : p->gw;
        return mid + half * t;
    }
    if (!strcmp(m, "md_tanh")) {
        ga[0] = p->gw;
        return mid + half * a;
    }
    if (!strcmp(m, "md_stanh_s") || !strcmp(m, "gd_stanh")) {
        double dw;
        w = shifted_tanh(p, a, &dw);
        ga[0] = !strcmp(m, "gd_stanh") ? p->gw * dw : p->gw;
        return w;
    }
    if (!strcmp(m, "float")) {
        ga[0] = p->gw;
        return a;
    }
    abort();
}

/* The label the hard network takes, and the aux after a step's post-step map. */
static double reference_hard(const char *m, const Point *p) {
    if (!strcmp(m, "pmf_pair")) m = "pmf";
    if (pmf_one_value(m, p)) {
        Point pair = pmf_pair(p);
        return reference_hard(m, &pair);
    }
    int k = p->k, best = 0;
    double lo = p->q[0], hi = p->q[k - 1], a = p->a[0];
    if (!strcmp(m, "float")) return a;
    if (!strcmp(m, "ste")) return a < (lo + hi) / 2 ? lo : hi;
    if (!strcmp(m, "md_tanh_s") || !strcmp(m, "gd_tanh") || !strcmp(m, "md_tanh")) return a >= 0 ? hi : lo;
    if (!strcmp(m, "md_stanh_s") || !strcmp(m, "gd_stanh")) { /* nearest; ties to the larger */
        for (int i = 1; i < k; i++)
            if (fabs(a - p->q[i]) <= fabs(a - p->q[best])) best = i;
        return p->q[best];
    }
    for (int i = 1; i < p->n; i++) /* the simplex methods: Q[argmax(a)], the first maximum */
        if (p->a[i] > p->a[best]) best = i;
    return p->q[best];
}

static double reference_after(const char *m, const Point *p, int i) {
    return !strcmp(m, "ste") ? fmin(fmax(p->a[i], p->q[0]), p->q[p->k - 1]) : p->a[i];
}

typedef struct Case {
    const char *proj, *labels;
    bool chain; /* gradient through the projection: finite differences apply */
} Case;

static const Case cases[] = {
    {"float", NULL, false},          {"pmf", "binary", true},        {"pmf", "ternary", true},
    {"pmf", "four", true},           {"pgd", "binary", true},        {"pgd", "ternary", true},
    {"pgd", "four", true},           {"picm", "binary", false},      {"md_softmax_s", "binary", false},
    {"md_softmax_s", "ternary", false}, {"md_softmax", "binary", false}, {"md_softmax", "ternary", false},
    {"ste", "binary", false},        {"md_tanh_s", "binary", false}, {"gd_tanh", "binary", true},
    {"md_tanh", "binary", false},    {"md_stanh_s", "ternary", false}, {"gd_stanh", "ternary", true},
    {"md_stanh_s", "four", false},   {"gd_stanh", "four", true},     {"md_stanh_s", "binary", false},
    {"pmf_pair", "binary", true},
};

static void random_point(Point *p, const char *proj, const LabelSet *q, int ncomp) {
    p->beta = urand(0.5, 3);
    p->gw = urand(-2, 2);
    p->k = q ? q->k : 1;
    for (int i = 0; q && i < q->k; i++) p->q[i] = q->q[i];
    p->n = ncomp;
    /* ste's aux goes past max |Q| (its gradient mask and clamp must act there); the
     * others stay inside (-1, 1), where md_tanh's atanh is defined. */
    double span = !strcmp(proj, "ste") ? 1.6 : 0.95;
    for (int i = 0; i < ncomp; i++) p->a[i] = urand(-span, span);
    if (!strcmp(proj, "md_softmax")) { /* a point inside the simplex */
        double s = 0;
        for (int i = 0; i < ncomp; i++) s += p->a[i] = urand(0.05, 1);
        for (int i = 0; i < ncomp; i++) p->a[i] /= s;
    }
}

static void vars_of(const Point *p, double *vars) {
    vars[PV_BETA] = p->beta;
    vars[PV_GW] = p->gw;
    vars[PV_W0] = 0;
    for (int i = 0; i < p->n; i++) vars[PV_AUX + i] = p->a[i];
}

static void test_formulas(Compiled *c) {
    SrcLoc none = {0};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const Case *cs = &cases[ci];
        const LabelSet *q = cs->labels ? program_find_labels(c->prog, cs->labels) : NULL;
        ProjInst *pi = proj_instantiate(c->prog, c->diag, program_find_projection(c->prog, cs->proj), q, none);
        CHECK(pi, "%s(%s) instantiates", cs->proj, cs->labels ? cs->labels : "");
        if (!pi) continue;
        SxPool *pool = c->prog->pool;
        double werr = 0, gerr = 0, fderr = 0, merr = 0, aerr = 0;
        bool hard_ok = true, hard_right = true;
        for (int trial = 0; trial < 60; trial++) {
            Point p;
            random_point(&p, cs->proj, q, pi->ncomp);
            double vars[2 * 256], ga[K_MAX];
            vars_of(&p, vars);
            double w = reference(cs->proj, &p, ga);
            /* avoid kinks: sparsemax support changes, ste/picm thresholds */
            werr = fmax(werr, fabs(sx_eval(pool, pi->weight, NULL, vars) - w));
            for (int i = 0; i < pi->ncomp; i++)
                gerr = fmax(gerr, fabs(sx_eval(pool, pi->grad[i], NULL, vars) - ga[i]) / fmax(1, fabs(ga[i])));
            if (cs->chain) {
                for (int i = 0; i < pi->ncomp; i++) {
                    /* pmf's one value: its gradient is the pair's of a1, half its own */
                    double fd = (pmf_one_value(cs->proj, &p) ? 0.5 : 1) * p.gw *
                                weight_slope(pool, pi->weight, vars, PV_AUX + i, 1e-6);
                    double an = sx_eval(pool, pi->grad[i], NULL, vars);
                    fderr = fmax(fderr, fabs(fd - an) / fmax(1, fabs(fd)));
                }
            }
            /* The primal forms' moves. */
            if (!strcmp(cs->proj, "md_tanh") || !strcmp(cs->proj, "md_softmax")) {
                double d[K_MAX], want[K_MAX], s = 0;
                for (int i = 0; i < pi->ncomp; i++) vars[pi->delta_var0 + i] = d[i] = urand(-0.3, 0.3);
                for (int i = 0; i < pi->ncomp; i++) {
                    if (!strcmp(cs->proj, "md_tanh")) want[i] = tanh(atanh(p.a[i]) - p.beta * d[i]);
                    else s += want[i] = p.a[i] * exp(-p.beta * d[i]);
                }
                for (int i = 0; i < pi->ncomp; i++) {
                    if (s) want[i] /= s;
                    merr = fmax(merr, fabs(sx_eval(pool, pi->move[i], NULL, vars) - want[i]));
                }
            }
            for (int i = 0; i < pi->ncomp; i++)
                aerr = fmax(aerr, fabs(sx_eval(pool, pi->after[i], NULL, vars) - reference_after(cs->proj, &p, i)));
            double hv = sx_eval(pool, pi->hard, NULL, vars);
            hard_right &= hv == reference_hard(cs->proj, &p);
            if (q) {
                bool in = false;
                for (int l = 0; l < q->k; l++) in |= hv == q->q[l];
                hard_ok &= in;
            }
        }
        const char *ls = cs->labels ? cs->labels : "";
        CHECK(werr < 1e-9, "%s(%s): forward weight vs the paper's formula, worst %g", cs->proj, ls, werr);
        CHECK(gerr < 1e-9, "%s(%s): aux gradient vs the paper's formula, worst %g", cs->proj, ls, gerr);
        if (cs->chain) CHECK(fderr < 1e-5, "%s(%s): derived gradient vs finite differences, worst %g", cs->proj, ls, fderr);
        if (pi->move && (!strcmp(cs->proj, "md_tanh") || !strcmp(cs->proj, "md_softmax")))
            CHECK(merr < 1e-9, "%s(%s): mirror move vs the paper's formula, worst %g", cs->proj, ls, merr);
        CHECK(hard_ok, "%s(%s): hard values lie in Q", cs->proj, ls);
        CHECK(hard_right, "%s(%s): the hard value is the paper's label", cs->proj, ls);
        CHECK(aerr < 1e-12, "%s(%s): post-step map (ste: the clamp to [min Q, max Q]), worst %g", cs->proj, ls, aerr);
    }
}

/* Which label sets a method refuses, at compile time. */
static void test_rejections(void) {
    static const char *const bad[][2] = {
        {"picm", "ternary"}, {"ste", "ternary"}, {"md_tanh_s", "ternary"},
        {"gd_tanh", "four"}, {"md_tanh", "ternary"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "labels ternary = {-1, 0, 1}\nlabels four = levels(4)\n"
                 "model m(x: f32[3]) -> f32[2] {\n    return dense(x, 2, quant = %s(%s))\n}\n",
                 bad[i][0], bad[i][1]);
        Compiled c;
        FILE *sink = fopen("/dev/null", "w");
        FILE *saved = stderr;
        stderr = sink;
        bool ok = compile_source(&c, src, true);
        int errors = diag_error_count(c.diag);
        stderr = saved;
        fclose(sink);
        CHECK(!ok && errors == 1, "%s(%s) is rejected with one error", bad[i][0], bad[i][1]);
        compiled_free(&c);
    }
}

/* ---- the fused kernel against a step-by-step evaluation ---- */

/* The loops over elements in the first parameter's update kernel (its core: one loop,
 * or one per stage inside a loop over blocks), counted by their counters ("j"). */
static int update_loops(const Compiled *c) {
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = cg_emit_module(c->m, ctx, true, c->diag);
    char name[160];
    snprintf(name, sizeof name, "kernel.update.%s.core", c->m->params[0].name);
    LLVMValueRef f = mod ? LLVMGetNamedFunction(mod, name) : NULL;
    int loops = 0;
    for (LLVMBasicBlockRef b = f ? LLVMGetFirstBasicBlock(f) : NULL; b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i && LLVMIsAPHINode(i); i = LLVMGetNextInstruction(i)) {
            size_t len;
            const char *v = LLVMGetValueName2(i, &len);
            loops += len >= 1 && v[0] == 'j';
        }
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    return loops;
}

/* Whether the first parameter's update loads the weight (fuse.c: the weight, carried). */
static bool update_loads_weight(const Compiled *c) {
    const IrKernel *uk = &c->m->kernels[0][0];
    bool loads = false;
    for (int e = 0; e < uk->nin; e++) loads |= uk->in[e].buf == IRB_WEIGHT;
    return loads;
}

/* opt: "adam", "adamw" (decoupled weight decay) or "sgd" (with momentum); weight decay 0.01,
 * or none with "sgd_nowd". */
static void test_fused(const Case *cs, const char *opt) {
    bool adam = strncmp(opt, "adam", 4) == 0, decoupled = strcmp(opt, "adamw") == 0, nowd = strcmp(opt, "sgd_nowd") == 0;
    const char *opt_text = adam ? opt : nowd ? "sgd+momentum, no decay" : "sgd+momentum"; /* for messages */
    char src[2048];
    char quant[64];
    if (cs->labels) snprintf(quant, sizeof quant, "%s(%s)", cs->proj, cs->labels);
    else snprintf(quant, sizeof quant, "%s", cs->proj);
    snprintf(src, sizeof src,
             "labels binary = {-1, +1}\nlabels ternary = {-1, 0, 1}\nlabels four = levels(4)\n%s"
             "model m(x: f32[100]) -> f32[7] {\n    return dense(x, 7, quant = %s, bias = false)\n}\n"
             "data d = idx(\"i\", \"l\")\n"
             "train m on d {\n    optimizer = %s\n    beta = anneal(start = 1.5, times = 1.1, every = 1 iterations)\n}\n",
             pmf_pair_src(), quant, adam ? (decoupled ? "adamw(lr = 0.05, weight_decay = 0.01)" : "adam(lr = 0.05, weight_decay = 0.01)")
                         : nowd ? "sgd(lr = 0.05, momentum = 0.9)" : "sgd(lr = 0.05, momentum = 0.9, weight_decay = 0.01)");
    Compiled c;
    bool ok = compile_source(&c, src, true);
    CHECK(ok, "%s compiles in a model", quant);
    if (!ok) {
        compiled_free(&c);
        return;
    }
    if (adam && !decoupled) { /* the update's loops: one, or one per stage */
        int loops = update_loops(&c), want = !strcmp(cs->proj, "float") || !strcmp(cs->proj, "ste") ? 1 : 0;
        CHECK(want ? loops == want : loops >= 1, "%s: the update's kernel runs %d loop(s)", quant, loops);
        if (!strcmp(cs->proj, "pmf") || !strcmp(cs->proj, "md_tanh_s"))
            CHECK(loops >= 2, "%s: the update's chain of exps, divisions and square roots is cut into stages", quant);
        /* fuse.c carries a two-label softmax's one exp and its sum's reciprocal from the
         * step before (pmf_pair: pmf keeps such a pair as one value), so that its
         * gradient's stage computes neither; no library projection carries a value in a
         * buffer of its own */
        const IrKernel *uk = &c.m->kernels[0][0];
        int carried = 0;
        for (int o = 0; o < uk->nout; o++) carried += uk->out[o].buf == IRB_CARRY;
        bool pair2 = !strcmp(cs->proj, "pmf_pair") && !strcmp(cs->labels, "binary");
        CHECK(carried == 2 * pair2, "%s: %s (%d carried)", quant,
              pair2 ? "the softmax's exp and its sum's reciprocal are carried from the step before" : "nothing is carried",
              carried);
        if (pair2) /* the moments and the aux (Adam's square root and division), then the new weight and the
                    * carried values (the exp and the division): the moments alone wait on nothing slow */
            CHECK(loops == 2, "%s: the update runs in two stages (%d loops)", quant, loops);
        /* fuse.c carries the Jacobian's tanh(beta a) of gd_tanh and of pmf over {-1, +1}
         * in the weight itself, which holds exactly that from the step before */
        bool gdt2 = (!strcmp(cs->proj, "gd_tanh") || !strcmp(cs->proj, "pmf")) && !strcmp(cs->labels, "binary");
        CHECK(update_loads_weight(&c) == gdt2, "%s: the update %s the weight", quant, gdt2 ? "loads" : "does not load");
    }
    Jit *jit = jit_compile(c.m, 2, 0, true, NULL, NULL, c.diag);
    CHECK(jit, "%s JIT-compiles", quant);
    if (!jit) {
        compiled_free(&c);
        return;
    }
    const IrParam *par = &c.m->params[0];
    ProjInst *pi = par->proj;
    int K = pi->ncomp;
    int64_t n = par->count;
    char name[160];
    float *aux[K_MAX], *mo[K_MAX], *ve[K_MAX];
    for (int k = 0; k < K; k++) {
        aux[k] = jit_param_buffer(jit, par->name, "aux", k);
        mo[k] = jit_param_buffer(jit, par->name, "m", k);
        ve[k] = jit_param_buffer(jit, par->name, "v", k);
    }
    float *g = jit_param_buffer(jit, par->name, "grad", -1);
    float *w = jit_param_buffer(jit, par->name, "weight", -1);
    /* fuse.c keeps one set of moments for two opposite aux gradients: the two-label
     * softmax methods, where no L2 decay (which adds each aux to its gradient) breaks
     * the symmetry. The other component's moments are those, negated (m) or not (v). */
    int keep = K == 2 && (!mo[0] || !mo[1]) ? (mo[0] ? 0 : 1) : -1;
    bool opposite = K == 2 && (decoupled || nowd) && cs->labels && !strcmp(cs->labels, "binary") &&
                    (!strcmp(cs->proj, "pmf_pair") || !strcmp(cs->proj, "picm") || !strcmp(cs->proj, "md_softmax") ||
                     !strcmp(cs->proj, "md_softmax_s"));
    CHECK((keep >= 0) == opposite, "%s with %s: %s (kept: %d)", quant, opt,
          opposite ? "one set of moments serves both opposite aux gradients" : "every aux component has its moments", keep);
    if (keep >= 0) {
        mo[1 - keep] = mo[keep];
        ve[1 - keep] = ve[keep];
    }
    double msign[K_MAX];
    for (int k = 0; k < K; k++) msign[k] = keep >= 0 && k != keep ? -1 : 1;
    snprintf(name, sizeof name, "kernel.update.%s", par->name);
    void (*upd)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
    /* the soft kernel stores the values the update carries in (fuse.c), as after init */
    snprintf(name, sizeof name, "kernel.soft.%s", par->name);
    void (*soft)(float, float, float, float, float) = (void (*)(float, float, float, float, float))jit_lookup(jit, name);
    CHECK(upd && soft && g && w && aux[0] && mo[0] && (!adam || ve[0]), "%s: kernels and buffers reachable", quant);
    if (upd && soft && g && w && aux[0] && mo[0] && (!adam || ve[0])) {
        const float beta = 1.5f, beta_next = 1.65f, lr = 0.05f, bc1 = 1 / (1 - 0.9f), bc2 = 1 / (1 - 0.999f);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            Point p;
            random_point(&p, cs->proj, pi->labels, K);
            for (int k = 0; k < K; k++) {
                aux[k][i] = (float)p.a[k];
                if (k == 1 - keep) continue; /* the kept moments, drawn once */
                mo[k][i] = (float)urand(-0.1, 0.1);
                if (adam) ve[k][i] = (float)urand(0, 0.01);
            }
            g[i] = (float)urand(-1, 1);
        }
        /* reference, in double from the float inputs */
        double *ref = malloc(sizeof(double) * n * (3 * K + 1));
        for (int64_t i = 0; i < n; i++) {
            double vars[2 * 256] = {0}, delta[K_MAX], a1[K_MAX], *r = ref + i * (3 * K + 1);
            vars[PV_BETA] = beta;
            vars[PV_GW] = g[i];
            for (int k = 0; k < K; k++) vars[PV_AUX + k] = aux[k][i];
            for (int k = 0; k < K; k++) {
                double gk = sx_eval(c.prog->pool, pi->grad[k], NULL, vars) + (decoupled || nowd ? 0 : 0.01 * aux[k][i]);
                double m1, step;
                if (adam) {
                    m1 = 0.9 * msign[k] * mo[k][i] + 0.1 * gk;
                    double v1 = 0.999 * ve[k][i] + 0.001 * gk * gk;
                    step = (m1 * bc1) / (sqrt(v1 * bc2) + 1e-8) + (decoupled ? 0.01 * aux[k][i] : 0);
                    r[1 + 2 * K + k] = v1;
                } else {
                    m1 = 0.9 * msign[k] * mo[k][i] + gk;
                    step = m1;
                }
                r[1 + K + k] = msign[k] * m1;
                delta[k] = (double)lr * step;
            }
            for (int k = 0; k < K; k++) vars[pi->delta_var0 + k] = delta[k];
            for (int k = 0; k < K; k++)
                a1[k] = pi->move[k] >= 0 ? sx_eval(c.prog->pool, pi->move[k], NULL, vars) : aux[k][i] - delta[k];
            for (int k = 0; k < K; k++) vars[PV_AUX + k] = a1[k];
            for (int k = 0; k < K; k++) r[1 + k] = sx_eval(c.prog->pool, pi->after[k], NULL, vars);
            for (int k = 0; k < K; k++) vars[PV_AUX + k] = r[1 + k];
            vars[PV_BETA] = beta_next;
            r[0] = sx_eval(c.prog->pool, pi->weight, NULL, vars);
        }
        soft(beta, beta, 0, 0, 0);
        upd(beta, beta_next, lr, bc1, bc2);
        for (int64_t i = 0; i < n; i++) {
            double *r = ref + i * (3 * K + 1);
            double got[1 + 3 * K_MAX];
            got[0] = w[i];
            for (int k = 0; k < K; k++) {
                got[1 + k] = aux[k][i];
                got[1 + K + k] = mo[k][i];
                if (adam) got[1 + 2 * K + k] = ve[k][i];
            }
            for (int j = 0; j < 1 + (adam ? 3 : 2) * K; j++)
                worst = fmax(worst, fabs(got[j] - r[j]) / fmax(1e-2, fabs(r[j])));
        }
        CHECK(worst < 2e-4, "%s with %s: fused kernel vs step-by-step reference, worst relative error %g", quant,
              opt_text, worst);
        free(ref);
        /* A carried value is what the next step would compute: the soft kernel at the new
         * aux and beta_next stores the same bits for every one, and the same weight. */
        float *carry[IR_MAX_CARRY];
        int ncarry = 0;
        while (ncarry < IR_MAX_CARRY && (carry[ncarry] = jit_param_buffer(jit, par->name, "carry", ncarry))) ncarry++;
        if (ncarry > 0 || update_loads_weight(&c)) { /* the weight carried: the soft kernel's too */
            float *kept = malloc(sizeof(float) * (size_t)(ncarry + 1) * n);
            for (int q = 0; q < ncarry; q++) memcpy(kept + q * n, carry[q], sizeof(float) * n);
            memcpy(kept + ncarry * n, w, sizeof(float) * n);
            soft(beta_next, beta_next, 0, 0, 0);
            for (int q = 0; q < ncarry; q++)
                CHECK(!memcmp(kept + q * n, carry[q], sizeof(float) * n),
                      "%s with %s: carried value %d is the soft kernel's at the new aux, bit for bit", quant, opt_text, q);
            CHECK(!memcmp(kept + ncarry * n, w, sizeof(float) * n),
                  "%s with %s: the weight is the soft kernel's at the new aux, bit for bit", quant, opt_text);
            free(kept);
        }
    }
    jit_free(jit);
    compiled_free(&c);
}

/* Parameter groups: `group = params("*.b", weight_decay = 0)` etc. change exactly the
 * matching tensors' update kernels. */
static void test_groups(void) {
    Compiled c;
    bool ok = compile_source(&c, "model m(x: f32[4]) -> f32[3] {\n"
                                 "    return dense(relu(dense(x, 5)), 3)\n}\n"
                                 "data d = idx(\"i\", \"l\")\n"
                                 "train m on d {\n"
                                 "    optimizer = sgd(lr = 0.1, weight_decay = 0.5)\n"
                                 "    group = params(\"*.b\", weight_decay = 0)\n"
                                 "    group = params(\"dense2.*\", lr = 0.01)\n}\n",
                             true);
    CHECK(ok, "a program with parameter groups compiles");
    if (!ok) {
        compiled_free(&c);
        return;
    }
    static const struct { const char *name; double lr, wd; } want[] = {
        {"dense1.w", 0.1, 0.5}, {"dense1.b", 0.1, 0}, {"dense2.w", 0.01, 0.5}, {"dense2.b", 0.01, 0}};
    for (int p = 0; p < c.m->nparams; p++) {
        const IrKernel *k = &c.m->kernels[p][0];
        double in[IR_SCALAR_SLOT(IRS_COUNT)] = {0};
        for (int i = 0; i < k->nin; i++) in[i] = k->in[i].buf == IRB_GRAD ? 0.3 : 2.0; /* g, a */
        in[IR_SCALAR_SLOT(IRS_LR)] = 0.1;
        double got = NAN;
        for (int o = 0; o < k->nout; o++)
            if (k->out[o].buf == IRB_AUX) got = sx_eval(c.prog->pool, k->out[o].node, in, NULL);
        const char *name = c.m->params[p].name;
        for (int w = 0; w < 4; w++) {
            if (strcmp(want[w].name, name)) continue;
            double expect = 2.0 - want[w].lr * (0.3 + want[w].wd * 2.0);
            CHECK(fabs(got - expect) < 1e-12, "%s: step %g, expected %g (lr %g, weight decay %g)", name,
                  got, expect, want[w].lr, want[w].wd);
        }
    }
    compiled_free(&c);
}

int main(void) {
    Compiled c;
    char src[2048];
    snprintf(src, sizeof src, "labels binary = {-1, +1}\nlabels ternary = {-1, 0, 1}\nlabels four = levels(4)\n%s",
             pmf_pair_src());
    bool ok = compile_source(&c, src, false);
    CHECK(ok, "the standard library compiles");
    if (ok) test_formulas(&c);
    compiled_free(&c);
    test_rejections();
    test_groups();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_fused(&cases[i], "adam");
        if (i % 3 == 0) test_fused(&cases[i], "sgd");
        if (cases[i].labels && !strcmp(cases[i].labels, "binary")) test_fused(&cases[i], "sgd_nowd"); /* shared momentum */
        if (i % 3 == 1 || !strcmp(cases[i].proj, "md_softmax_s")) test_fused(&cases[i], "adamw");
    }
    return test_summary();
}
