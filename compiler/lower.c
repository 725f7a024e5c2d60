/* lower.c — lowering: the trained model's body becomes the forward part of two IR
 * functions, `train` (batch statistics, then loss and correct count) and `eval`
 * (running statistics, correct count). Shapes are inferred and checked here; a
 * mismatch is reported at the layer that causes it.
 *
 * Requires: a checked Program. Produces: an IrModule with parameters (one per weight
 * and bias tensor, each with the projection and label set its `quant = ...` names,
 * instantiated by the next pass, instantiate.c) and batch-norm states.
 * The model is lowered twice, once per mode; the second pass reuses the parameters the
 * first created, in creation order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "nnq_rt.h"

/* A name in a model or block: a tensor (IR value), a compile-time number (block
 * arguments, loop variables), or a quantizer (a block argument such as md_tanh(binary)). */
typedef enum BindKind { B_TENSOR, B_NUM, B_QUANT } BindKind;

typedef struct Binding {
    const char *name;
    BindKind kind;
    int value;
    double num;
    const AstNode *quant;
    int hides;                   /* the binding of this name it hides (an outer scope's, in env); -1 none */
} Binding;

#define LOWER_MAX_DEPTH 32
/* The most operations a model's forward pass may expand to. Loops and blocks repeat their
 * bodies, so a few lines can ask for millions (five nested loops over 20 values, or
 * blocks each calling the next twice). At this bound (a chain of relus) --emit=obj takes
 * 8 s and 0.2 GB on one thread (the step in parts of 256 instructions, codegen.c; as one
 * function it took 33 s, at 46,000 operations 126 s). A ResNet-18 has about 250
 * operations, a ResNet-1202 about 4,000. */
#define LOWER_MAX_OPS 20000

typedef struct Lower {
    IrModule *m;
    Program *prog;
    Diag *diag;
    IrFunc *f;
    bool train;
    int next_param, next_bn;     /* creation counters of this pass */
    int ndense, nconv;
    Binding *env;                /* the names in sight: env[scope .. nenv), one a name (from the arena, */
    int nenv, cap;               /* grown by doubling: as many names as a program binds) */
    int scope;                   /* first binding visible: blocks see only their own names */
    NameIndex innermost;         /* each name to its innermost binding (env index; -1 none) */
    int depth;                   /* block nesting, against runaway recursion */
    bool failed;
} Lower;

static void lerror(Lower *lw, SrcLoc loc, const char *fmt, const char *a, const char *b) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    diag_error(lw->diag, loc, "%s", msg);
    lw->failed = true;
}

static const IrShape *shape_of(Lower *lw, int v) { return &lw->f->insts[v].shape; }

static const char *fmt_shape(Lower *lw, int v) {
    char buf[128];
    ir_shape_format(shape_of(lw, v), lw->f->insts[v].dtype, buf, sizeof buf);
    return arena_strdup(lw->m->arena, buf);
}

static const Binding *lookup(Lower *lw, const char *name) {
    const int *at = names_find(&lw->innermost, name);
    return at && *at >= lw->scope ? &lw->env[*at] : NULL;
}

/* Drops the bindings from env[n] on, each name's binding again the one it hid. */
static void env_pop(Lower *lw, int n) {
    for (int i = lw->nenv - 1; i >= n; i--) *names_add(&lw->innermost, lw->env[i].name) = lw->env[i].hides;
    lw->nenv = n;
}

/* "unknown name 'NAME'", with the name in sight nearest it */
static void unknown_name(Lower *lw, SrcLoc loc, const char *name) {
    DiagNear near = diag_near(name);
    for (int i = lw->nenv - 1; i >= lw->scope; i--) diag_near_offer(&near, lw->env[i].name);
    diag_unknown(lw->diag, loc, "name", &near, NULL);
    lw->failed = true;
}

/* Every value and parameter passes here, so here the shapes' bounds are checked: an
 * error, and the value still emitted for the caller to use. */
static int emit(Lower *lw, IrOp op, int a, int b, IrShape s, const AstNode *at) {
    int v = ir_emit(lw->m, lw->f, op, a, b, s, IR_F32);
    lw->f->insts[v].loc = at ? at->loc : (SrcLoc){0};
    if (!ir_shape_in_bounds(&s) && !lw->failed)
        lerror(lw, lw->f->insts[v].loc, "this makes a tensor of shape %s, larger than nnq allows "
               "(2^30 per dimension, 2^31 - 1 elements)", fmt_shape(lw, v), NULL);
    return v;
}

static const AstNode *named(const AstNode *call, const char *name) {
    for (int i = 0; i < call->nkids; i++)
        if (call->kids[i]->kind == AST_NAMED_ARG && strcmp(call->kids[i]->name, name) == 0)
            return call->kids[i]->kids[0];
    return NULL;
}

static int npositional(const AstNode *call) {
    int n = 0;
    for (int i = 0; i < call->nkids; i++) n += call->kids[i]->kind != AST_NAMED_ARG;
    return n;
}

static bool check_layer_args(Lower *lw, const AstNode *call, int lo, int hi,
                             const char *const *allowed) {
    bool ok = true;
    int pos = npositional(call);
    if (pos < lo || pos > hi) {
        char msg[160];
        if (lo == hi)
            snprintf(msg, sizeof msg, "'%s' takes %d positional argument%s, got %d", call->name,
                     lo, lo == 1 ? "" : "s", pos);
        else
            snprintf(msg, sizeof msg, "'%s' takes %d to %d positional arguments, got %d",
                     call->name, lo, hi, pos);
        lerror(lw, call->loc, "%s", msg, NULL);
        ok = false;
    }
    for (int i = 0; i < call->nkids; i++) {
        const AstNode *a = call->kids[i];
        if (a->kind != AST_NAMED_ARG) continue;
        bool known = false;
        for (int j = 0; allowed && allowed[j]; j++) known |= strcmp(allowed[j], a->name) == 0;
        if (!known) {
            lerror(lw, a->loc, "'%s' has no argument named '%s'", call->name, a->name);
            ok = false;
        }
    }
    return ok;
}

/* What `quant = ...` names (absent: float), checked; the instantiate pass makes it. */
typedef struct ProjUse {
    const AstNode *def;
    const LabelSet *labels;
    SrcLoc loc;
} ProjUse;

static bool quant_of(Lower *lw, const AstNode *call, ProjUse *use) {
    const AstNode *q = named(call, "quant");
    if (q && q->kind == AST_IDENT) { /* a block parameter holding a quantizer */
        const Binding *bd = lookup(lw, q->name);
        if (bd && bd->kind == B_QUANT) q = bd->quant;
    }
    const char *pname = "float";
    const AstNode *largs = NULL;
    SrcLoc at = call->loc;
    if (q) {
        at = q->loc;
        if (q->kind == AST_IDENT) pname = q->name;
        else if (q->kind == AST_CALL) pname = q->name, largs = q;
        else {
            lerror(lw, q->loc, "quant must name a projection, e.g. pmf(binary) or float", NULL, NULL);
            return false;
        }
    }
    const AstNode *def = program_find_projection(lw->prog, pname);
    if (!def) {
        DiagNear near = diag_near(pname);
        for (int i = 0; i < lw->prog->nprojs; i++) diag_near_offer(&near, lw->prog->projs[i]->name);
        diag_unknown(lw->diag, at, "projection", &near, NULL);
        lw->failed = true;
        const char **names = arena_alloc(lw->m->arena, sizeof *names * (size_t)(lw->prog->nprojs + 1));
        for (int i = 0; i < lw->prog->nprojs; i++) names[i] = lw->prog->projs[i]->name;
        if (lw->prog->nprojs) diag_note_names(lw->diag, at, "known projections", names, lw->prog->nprojs, sizeof *names);
        return false;
    }
    int want = def->kids[0] ? def->kids[0]->nkids : 0;
    int got = largs ? largs->nkids : 0;
    if (want != got) {
        char msg[200];
        snprintf(msg, sizeof msg, "projection '%s' takes %d argument%s, got %d", pname, want,
                 want == 1 ? " (a label set)" : "s", got);
        lerror(lw, at, "%s", msg, NULL);
        diag_note(lw->diag, def->loc, "'%s' is defined here", pname);
        return false;
    }
    const LabelSet *ls = NULL;
    if (got) {
        const AstNode *a = largs->kids[0];
        if (a->kind == AST_IDENT) ls = program_find_labels(lw->prog, a->name);
        if (!ls) {
            if (a->kind == AST_IDENT) {
                DiagNear near = diag_near(a->name);
                for (int i = 0; i < lw->prog->nlabels; i++) diag_near_offer(&near, lw->prog->labels[i]->name);
                diag_unknown(lw->diag, a->loc, "label set", &near, NULL);
                lw->failed = true;
            } else
                lerror(lw, a->loc, "a projection's argument must name a label set", NULL, NULL);
            return false;
        }
    }
    *use = (ProjUse){def, ls, at};
    return true;
}

static int new_param(Lower *lw, const char *name, IrShape shape, const ProjUse *pu, IrInit init,
                     int64_t fan_in, int64_t fan_out, const AstNode *at) {
    IrModule *m = lw->m;
    int idx = lw->next_param++;
    if (idx == m->nparams) {
        m->params = arena_grow(m->arena, m->params, (size_t)m->nparams, sizeof(IrParam));
        IrParam *p = &m->params[m->nparams++];
        p->name = name;
        p->shape = shape;
        p->count = ir_shape_elems(&shape);
        p->proj_def = pu->def;
        p->proj_labels = pu->labels;
        p->proj_loc = pu->loc;
        p->proj = NULL;
        p->init = init;
        p->fan_in = fan_in;
        p->fan_out = fan_out;
        p->init_std = 0.1;
        p->loc = at->loc;
    }
    int v = emit(lw, IR_PARAM, -1, -1, m->params[idx].shape, at);
    lw->f->insts[v].attr[0] = idx;
    lw->f->insts[v].name = m->params[idx].name;
    return v;
}

static int lower_expr(Lower *lw, const AstNode *e);

/* Binds a name in the current scope: a name bound there before (`h = relu(h)` in a
 * loop) takes the new value in place, so the table holds each name once, however many
 * times a loop binds it. */
static void bind(Lower *lw, Binding b) {
    int *at = names_add(&lw->innermost, b.name);
    if (*at >= lw->scope) { /* rebound in its scope */
        b.hides = lw->env[*at].hides;
        lw->env[*at] = b;
        return;
    }
    b.hides = *at;
    *at = lw->nenv;
    if (lw->nenv == lw->cap) {
        int cap = lw->cap ? 2 * lw->cap : 64;
        Binding *env = arena_alloc(lw->m->arena, sizeof *env * (size_t)cap);
        if (lw->nenv) memcpy(env, lw->env, sizeof *env * (size_t)lw->nenv);
        lw->env = env, lw->cap = cap;
    }
    lw->env[lw->nenv++] = b;
}

/* A compile-time number: literals, numeric names, arithmetic, comparisons (1 or 0),
 * and/or/not, if-then-else, and channels(x) of a tensor. */
static bool const_num(Lower *lw, const AstNode *e, double *out) {
    double a, b;
    switch (e->kind) {
    case AST_NUMBER: *out = e->num; return true;
    case AST_IDENT: {
        const Binding *bd = lookup(lw, e->name);
        if (bd && bd->kind == B_NUM) {
            *out = bd->num;
            return true;
        }
        if (bd) lerror(lw, e->loc, "'%s' is not a number here", e->name, NULL);
        else unknown_name(lw, e->loc, e->name);
        return false;
    }
    case AST_UNARY:
        if (!const_num(lw, e->kids[0], &a)) return false;
        *out = e->op == AST_OP_NEG ? -a : e->op == AST_OP_NOT ? (a == 0) : a;
        return true;
    case AST_BINARY:
        if (!const_num(lw, e->kids[0], &a) || !const_num(lw, e->kids[1], &b)) return false;
        switch (e->op) {
        case AST_OP_ADD: *out = a + b; return true;
        case AST_OP_SUB: *out = a - b; return true;
        case AST_OP_MUL: *out = a * b; return true;
        case AST_OP_DIV: *out = a / b; return true;
        case AST_OP_EQ: *out = a == b; return true;
        case AST_OP_NE: *out = a != b; return true;
        case AST_OP_LT: *out = a < b; return true;
        case AST_OP_LE: *out = a <= b; return true;
        case AST_OP_GT: *out = a > b; return true;
        case AST_OP_GE: *out = a >= b; return true;
        case AST_OP_AND: *out = a != 0 && b != 0; return true;
        case AST_OP_OR: *out = a != 0 || b != 0; return true;
        default: break;
        }
        break;
    case AST_IF:
        if (!const_num(lw, e->kids[0], &a)) return false;
        return const_num(lw, e->kids[a != 0 ? 1 : 2], out);
    case AST_CALL:
        if (!strcmp(e->name, "channels") && e->nkids == 1 && e->kids[0]->kind == AST_IDENT) {
            const Binding *bd = lookup(lw, e->kids[0]->name);
            if (bd && bd->kind == B_TENSOR && shape_of(lw, bd->value)->rank >= 2) {
                *out = (double)shape_of(lw, bd->value)->d[1];
                return true;
            }
            lerror(lw, e->kids[0]->loc, "channels(...) needs a tensor with a channel dimension", NULL, NULL);
            return false;
        }
        break;
    default: break;
    }
    lerror(lw, e->loc, "this must be a number known at compile time", NULL, NULL);
    return false;
}

static bool int_arg(Lower *lw, const AstNode *a, int64_t lo, int64_t hi, int64_t *out, const char *what) {
    double v;
    if (!const_num(lw, a, &v)) return false;
    if (v != floor(v) || v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", what, (long long)lo, (long long)hi);
        lerror(lw, a->loc, "%s", msg, NULL);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static bool bool_arg(Lower *lw, const AstNode *b, bool *out) {
    if (b->kind == AST_IDENT && (!strcmp(b->name, "true") || !strcmp(b->name, "false"))) {
        *out = !strcmp(b->name, "true");
        return true;
    }
    lerror(lw, b->loc, "bias must be true or false", NULL, NULL);
    return false;
}

/* A dense or conv2d layer after its input and shapes are checked: the weight parameter
 * (Xavier draw), the layer's op, and unless `bias = false` the bias parameter (N(0, 0.1)
 * draw) and its add; both quantized by `quant = ...`. Returns the output value. */
static int weighted_layer(Lower *lw, const AstNode *e, const char *kind, int layer, IrShape wshape,
                          int64_t fan_in, int64_t fan_out, IrOp op, int x, IrShape yshape,
                          int64_t attr0, int64_t attr1) {
    Arena *arena = lw->m->arena;
    bool bias = true;
    const AstNode *b = named(e, "bias");
    if (b && !bool_arg(lw, b, &bias)) return -1;
    ProjUse pu;
    if (!quant_of(lw, e, &pu)) return -1;
    int w = new_param(lw, arena_printf(arena, "%s%d.w", kind, layer), wshape, &pu, IR_INIT_XAVIER,
                      fan_in, fan_out, e);
    int y = emit(lw, op, x, w, yshape, e);
    lw->f->insts[y].attr[0] = attr0;
    lw->f->insts[y].attr[1] = attr1;
    if (bias) {
        int64_t bd[1] = {wshape.d[op == IR_MATMUL ? 1 : 0]};
        int bv = new_param(lw, arena_printf(arena, "%s%d.b", kind, layer), ir_shape(1, bd), &pu,
                           IR_INIT_NORMAL, fan_in, fan_out, e);
        y = emit(lw, IR_BIAS_ADD, y, bv, yshape, e);
    }
    return y;
}

static int inline_block(Lower *lw, const AstNode *blk, const AstNode *call);

/* ---- layers: one function per row of layers.def, given the input lowered ---- */

static int lower_flatten(Lower *lw, const AstNode *e, int x) {
    IrShape s = *shape_of(lw, x);
    int64_t d[2] = {IR_BATCH, ir_shape_elems(&s)};
    return emit(lw, IR_RESHAPE, x, -1, ir_shape(2, d), e);
}

static int lower_relu(Lower *lw, const AstNode *e, int x) { return emit(lw, IR_RELU, x, -1, *shape_of(lw, x), e); }

static int lower_batchnorm(Lower *lw, const AstNode *e, int x) {
    Arena *arena = lw->m->arena;
    IrShape s = *shape_of(lw, x);
    if (s.rank != 2 && s.rank != 4) {
        lerror(lw, e->loc, "batchnorm needs [N, features] or [N, channels, H, W], got %s", fmt_shape(lw, x), NULL);
        return -1;
    }
    int idx = lw->next_bn++;
    IrModule *m = lw->m;
    if (idx == m->nbns) {
        m->bns = arena_grow(arena, m->bns, (size_t)m->nbns, sizeof(IrBn));
        m->bns[m->nbns].name = arena_printf(arena, "bn%d", idx + 1);
        m->bns[m->nbns++].features = s.d[1];
    }
    int v = emit(lw, lw->train ? IR_BN_TRAIN : IR_BN_EVAL, x, -1, s, e);
    lw->f->insts[v].attr[0] = idx;
    lw->f->insts[v].name = m->bns[idx].name;
    return v;
}

static int lower_dense(Lower *lw, const AstNode *e, int x) {
    int64_t units;
    if (!int_arg(lw, e->kids[1], 1, 100000000, &units, "the number of units")) return -1;
    const IrShape *xs = shape_of(lw, x);
    if (xs->rank != 2) {
        lerror(lw, e->kids[0]->loc, "dense needs an input of shape [N, features], got %s", fmt_shape(lw, x), NULL);
        diag_note(lw->diag, e->kids[0]->loc, "use flatten(...) first");
        return -1;
    }
    int64_t in = xs->d[1], out = units;
    int64_t wd[2] = {in, out}, yd[2] = {IR_BATCH, out};
    return weighted_layer(lw, e, "dense", ++lw->ndense, ir_shape(2, wd), in, out, IR_MATMUL, x, ir_shape(2, yd), 0, 0);
}

static int lower_conv2d(Lower *lw, const AstNode *e, int x) {
    const IrShape *xs = shape_of(lw, x);
    if (xs->rank != 4) {
        lerror(lw, e->kids[0]->loc, "conv2d needs an input of shape [N, channels, H, W], got %s", fmt_shape(lw, x), NULL);
        return -1;
    }
    int64_t out, k, stride = 1, pad = 0, groups = 1;
    if (!int_arg(lw, e->kids[1], 1, 1 << 20, &out, "the number of channels") ||
        !int_arg(lw, e->kids[2], 1, NNQ_CONV_MAX, &k, "the kernel size") ||
        (named(e, "stride") && !int_arg(lw, named(e, "stride"), 1, NNQ_CONV_MAX, &stride, "stride")) ||
        (named(e, "pad") && !int_arg(lw, named(e, "pad"), 0, NNQ_CONV_MAX, &pad, "pad")) ||
        (named(e, "groups") && !int_arg(lw, named(e, "groups"), 1, 1 << 20, &groups, "groups")))
        return -1;
    int64_t c = xs->d[1], h = xs->d[2], w = xs->d[3];
    if (groups != 1 && (groups != c || out != c)) {
        lerror(lw, named(e, "groups")->loc,
               "groups must be 1, or the input's channels with as many output channels (a depthwise convolution); got %s",
               arena_printf(lw->m->arena, "groups = %lld for %lld -> %lld channels", (long long)groups, (long long)c, (long long)out), NULL);
        return -1;
    }
    int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    if (h + 2 * pad < k || w + 2 * pad < k) {
        lerror(lw, e->loc, "the kernel is larger than the padded input %s", fmt_shape(lw, x), NULL);
        return -1;
    }
    int64_t cin = groups == 1 ? c : 1; /* input channels each output channel sees */
    int64_t wd[4] = {out, cin, k, k}, yd[4] = {IR_BATCH, out, oh, ow};
    return weighted_layer(lw, e, "conv", ++lw->nconv, ir_shape(4, wd), cin * k * k, out * k * k / (groups == 1 ? 1 : out),
                          groups == 1 ? IR_CONV2D : IR_DWCONV2D, x, ir_shape(4, yd), stride, pad);
}

static int lower_pool(Lower *lw, const AstNode *e, int x) {
    const char *f = e->name;
    const IrShape *xs = shape_of(lw, x);
    int64_t k, stride;
    if (!int_arg(lw, e->kids[1], 1, 64, &k, "the window size")) return -1;
    stride = k;
    if (named(e, "stride") && !int_arg(lw, named(e, "stride"), 1, 64, &stride, "stride")) return -1;
    if (xs->rank != 4 || xs->d[2] < k || xs->d[3] < k) {
        lerror(lw, e->kids[0]->loc, "%s needs [N, channels, H, W] at least as large as its window, got %s", f, fmt_shape(lw, x));
        return -1;
    }
    int64_t yd[4] = {IR_BATCH, xs->d[1], (xs->d[2] - k) / stride + 1, (xs->d[3] - k) / stride + 1};
    int y = emit(lw, f[0] == 'm' ? IR_MAXPOOL : IR_AVGPOOL, x, -1, ir_shape(4, yd), e);
    lw->f->insts[y].attr[0] = k;
    lw->f->insts[y].attr[1] = stride;
    return y;
}

static int lower_dropout(Lower *lw, const AstNode *e, int x) {
    double rate;
    if (!const_num(lw, e->kids[1], &rate)) return -1;
    if (!(rate >= 0 && rate < 1)) {
        lerror(lw, e->kids[1]->loc, "the dropout rate must be in [0, 1), got %s", arena_printf(lw->m->arena, "%g", rate), NULL);
        return -1;
    }
    /* Evaluation sees the identity; so does training at rate 0. */
    int64_t ppm = (int64_t)llround(rate * 1e6);
    if (!lw->train || ppm == 0) return x;
    int y = emit(lw, IR_DROPOUT, x, -1, *shape_of(lw, x), e);
    lw->f->insts[y].attr[0] = ppm;
    return y;
}

static const struct Layer {
    const char *name;
    int (*lower)(Lower *lw, const AstNode *call, int x);
    int positional;
    const char *const *named;
    const char *doc[4];
} layers[] = {
#define LAYER(NAME, LOWER, POSITIONAL, NAMED, CALL, INPUT, RESULT, PARAMS) {#NAME, LOWER, POSITIONAL, NAMED, {CALL, INPUT, RESULT, PARAMS}},
#include "layers.def"
#undef LAYER
};
#define NLAYERS (int)(sizeof layers / sizeof *layers)

void layers_print(FILE *out) {
    for (int i = 0; i < NLAYERS; i++)
        fprintf(out, "| %s | %s | %s | %s |\n", layers[i].doc[0], layers[i].doc[1], layers[i].doc[2], layers[i].doc[3]);
}

static int lower_call(Lower *lw, const AstNode *e) {
    const AstNode *blk = program_find_block(lw->prog, e->name);
    if (blk) return inline_block(lw, blk, e);
    for (int i = 0; i < NLAYERS; i++) {
        const struct Layer *ly = &layers[i];
        if (strcmp(ly->name, e->name)) continue;
        if (!check_layer_args(lw, e, ly->positional, ly->positional, ly->named)) return -1;
        int x = lower_expr(lw, e->kids[0]);
        return x < 0 ? -1 : ly->lower(lw, e, x);
    }
    DiagNear near = diag_near(e->name);
    for (int i = 0; i < NLAYERS; i++) diag_near_offer(&near, layers[i].name);
    for (int i = 0; i < lw->prog->nblocks; i++) diag_near_offer(&near, lw->prog->blocks[i]->name);
    diag_unknown(lw->diag, e->loc, "layer", &near, NULL);
    lw->failed = true;
    diag_note_names(lw->diag, e->loc, "layers", &layers[0].name, NLAYERS, sizeof layers[0]);
    return -1;
}

static int lower_expr(Lower *lw, const AstNode *e) {
    switch (e->kind) {
    case AST_IDENT: {
        const Binding *bd = lookup(lw, e->name);
        if (bd && bd->kind == B_TENSOR) return bd->value;
        if (bd) lerror(lw, e->loc, "'%s' is not a tensor", e->name, NULL);
        else unknown_name(lw, e->loc, e->name);
        return -1;
    }
    case AST_IF: { /* the condition is known at compile time; only one branch is built */
        double c;
        if (!const_num(lw, e->kids[0], &c)) return -1;
        return lower_expr(lw, e->kids[c != 0 ? 1 : 2]);
    }
    case AST_CALL: return lower_call(lw, e);
    case AST_BINARY:
        if (e->op == AST_OP_ADD) {
            int a = lower_expr(lw, e->kids[0]), b = lower_expr(lw, e->kids[1]);
            if (a < 0 || b < 0) return -1;
            if (!ir_shape_equal(shape_of(lw, a), shape_of(lw, b))) {
                lerror(lw, e->loc, "cannot add %s and %s: shapes differ", fmt_shape(lw, a),
                       fmt_shape(lw, b));
                return -1;
            }
            return emit(lw, IR_ADD, a, b, *shape_of(lw, a), e);
        }
        break;
    default: break;
    }
    lerror(lw, e->loc, "this expression is not a layer", NULL, NULL);
    return -1;
}

/* `at` locates the message when the type is missing. */
static bool type_shape(Lower *lw, const AstNode *ty, SrcLoc at, IrShape *out) {
    if (!ty || strcmp(ty->name, "f32") != 0 || ty->nkids < 1 || ty->nkids > NNQ_MAX_RANK - 1) {
        lerror(lw, ty ? ty->loc : at, "expected a tensor type such as f32[1, 28, 28]", NULL, NULL);
        return false;
    }
    out->rank = ty->nkids;
    for (int i = 0; i < ty->nkids; i++) {
        const AstNode *d = ty->kids[i];
        if (d->kind != AST_NUMBER || !d->is_int || d->num < 1 || d->num > IR_MAX_DIM) {
            lerror(lw, d->loc, "a dimension must be an integer from 1 to 2^30", NULL, NULL);
            return false;
        }
        out->d[i] = (int64_t)d->num;
    }
    return true;
}

/* Lowers statements kids[first..] of `owner` (a model, block or for body). A `return`
 * sets *result and *ret (and must be last); `for` repeats its body once per element of
 * a literal list, binding numbers. False after an error. */
static bool lower_stmts(Lower *lw, const AstNode *owner, int first, int *result, const AstNode **ret) {
    for (int i = first; i < owner->nkids && !lw->failed; i++) {
        const AstNode *st = owner->kids[i];
        if (lw->f->n > LOWER_MAX_OPS) {
            char msg[160];
            snprintf(msg, sizeof msg, "the model expands to more than %d operations here (its loops and "
                     "blocks repeat their bodies)", LOWER_MAX_OPS);
            lerror(lw, st->loc, "%s", msg, NULL);
            return false;
        }
        if (st->kind == AST_ASSIGN) {
            int v = lower_expr(lw, st->kids[0]);
            if (v < 0) return false;
            bind(lw, (Binding){.name = st->name, .kind = B_TENSOR, .value = v});
        } else if (st->kind == AST_RETURN) {
            if (!ret) {
                lerror(lw, st->loc, "return is not allowed inside a for loop", NULL, NULL);
                return false;
            }
            *result = lower_expr(lw, st->kids[0]);
            *ret = st;
            if (i + 1 < owner->nkids)
                lerror(lw, owner->kids[i + 1]->loc, "statement after return", NULL, NULL);
            return *result >= 0 && !lw->failed;
        } else if (st->kind == AST_FOR) {
            const AstNode *vars = st->kids[0], *list = st->kids[1];
            int u, v = ast_repeated_name(vars, 1, &u);
            if (v >= 0) {
                lerror(lw, vars->kids[v]->loc, "the loop names '%s' twice", vars->kids[v]->name, NULL);
                return false;
            }
            if (list->kind != AST_LIST) {
                lerror(lw, list->loc, "a for loop runs over a list written out, e.g. [(64, 1), (128, 2)]", NULL, NULL);
                return false;
            }
            for (int k = 0; k < list->nkids; k++) {
                const AstNode *el = list->kids[k];
                int nel = el->kind == AST_TUPLE ? el->nkids : 1;
                if (nel != vars->nkids) {
                    char msg[96];
                    snprintf(msg, sizeof msg, "this element has %d value%s, the loop names %d", nel,
                             nel == 1 ? "" : "s", vars->nkids);
                    lerror(lw, el->loc, "%s", msg, NULL);
                    return false;
                }
                for (int v = 0; v < nel; v++) {
                    double num;
                    if (!const_num(lw, el->kind == AST_TUPLE ? el->kids[v] : el, &num)) return false;
                    bind(lw, (Binding){.name = vars->kids[v]->name, .kind = B_NUM, .value = -1, .num = num});
                }
                if (!lower_stmts(lw, st, 2, NULL, NULL)) return false;
            }
        } else {
            lerror(lw, st->loc, "this statement is not allowed here", NULL, NULL);
            return false;
        }
    }
    return !lw->failed;
}

/* A call of a user block: its body is lowered in place (inlined) with the parameters
 * bound to the arguments: tensors, numbers, or quantizers (a projection call such as
 * md_tanh(binary), `float`, or a name holding one). */
static int inline_block(Lower *lw, const AstNode *blk, const AstNode *call) {
    const AstNode *params = blk->kids[0];
    int np = params ? params->nkids : 0;
    if (call->nkids != np || npositional(call) != np) {
        char msg[160];
        snprintf(msg, sizeof msg, "block '%s' takes %d positional argument%s, got %d", blk->name, np,
                 np == 1 ? "" : "s", call->nkids);
        lerror(lw, call->loc, "%s", msg, NULL);
        diag_note(lw->diag, blk->loc, "'%s' is defined here", blk->name);
        return -1;
    }
    if (lw->depth == LOWER_MAX_DEPTH) {
        lerror(lw, call->loc, "blocks nest more than 32 deep (LOWER_MAX_DEPTH; a block calling itself?)", NULL, NULL);
        return -1;
    }
    Binding *args = arena_alloc(lw->m->arena, sizeof *args * (size_t)(np ? np : 1));
    for (int i = 0; i < np; i++) {
        const AstNode *a = call->kids[i], *p = params->kids[i];
        const AstNode *ty = p->nkids ? p->kids[0] : NULL;
        Binding b = {.name = p->name, .kind = B_TENSOR, .value = -1};
        const Binding *bd = a->kind == AST_IDENT ? lookup(lw, a->name) : NULL;
        bool is_quant = (bd && bd->kind == B_QUANT) ||
                        (a->kind == AST_CALL && program_find_projection(lw->prog, a->name)) ||
                        (a->kind == AST_IDENT && !bd && program_find_projection(lw->prog, a->name));
        if (is_quant) {
            b.kind = B_QUANT;
            b.quant = bd && bd->kind == B_QUANT ? bd->quant : a;
        } else if (ty && !strcmp(ty->name, "int")) {
            int64_t v;
            if (!int_arg(lw, a, INT32_MIN, INT32_MAX, &v, p->name)) return -1;
            b.kind = B_NUM;
            b.num = (double)v;
        } else if (bd && bd->kind == B_NUM) {
            b.kind = B_NUM;
            b.num = bd->num;
        } else if (a->kind == AST_NUMBER) {
            b.kind = B_NUM;
            b.num = a->num;
        } else if ((b.value = lower_expr(lw, a)) < 0) {
            return -1;
        }
        args[i] = b;
    }
    int saved_n = lw->nenv, saved_scope = lw->scope;
    lw->scope = lw->nenv;
    lw->depth++;
    int result = -1;
    const AstNode *ret = NULL;
    for (int i = 0; i < np; i++) bind(lw, args[i]);
    bool ok = lower_stmts(lw, blk, 2, &result, &ret);
    if (ok && !ret) lerror(lw, blk->loc, "block '%s' has no return statement", blk->name, NULL);
    lw->depth--;
    lw->scope = saved_scope;
    env_pop(lw, saved_n);
    return ok && ret ? result : -1;
}

static bool lower_model(Lower *lw, const AstNode *model, IrFunc *f, bool train) {
    lw->f = f;
    lw->train = train;
    lw->next_param = lw->next_bn = lw->ndense = lw->nconv = 0;
    env_pop(lw, 0);
    f->loss = f->correct = f->logits = -1;
    const AstNode *params = model->kids[0];
    if (!params || params->nkids != 1) {
        lerror(lw, model->loc, "model '%s' must take exactly one input", model->name, NULL);
        return false;
    }
    IrShape in, ret;
    const AstNode *xp = params->kids[0];
    if (!type_shape(lw, xp->nkids ? xp->kids[0] : NULL, xp->loc, &in) ||
        !type_shape(lw, model->kids[1], model->loc, &ret))
        return false;
    if (ret.rank != 1 || ret.d[0] < 2) {
        lerror(lw, model->kids[1]->loc, "a classifier returns f32[classes] with at least 2 classes",
               NULL, NULL);
        return false;
    }
    lw->m->input = in;
    lw->m->classes = ret.d[0];
    IrShape xb = {.rank = in.rank + 1};
    xb.d[0] = IR_BATCH;
    for (int i = 0; i < in.rank; i++) xb.d[i + 1] = in.d[i];
    int x = emit(lw, IR_INPUT, -1, -1, xb, params->kids[0]);
    int64_t yd[1] = {IR_BATCH};
    int y = ir_emit(lw->m, f, IR_LABELS, -1, -1, ir_shape(1, yd), IR_I32);
    lw->scope = 0;
    lw->depth = 0;
    bind(lw, (Binding){.name = params->kids[0]->name, .kind = B_TENSOR, .value = x});
    int result = -1;
    const AstNode *ret_stmt = NULL;
    lower_stmts(lw, model, 2, &result, &ret_stmt);
    if (lw->failed) return false;
    if (!ret_stmt) {
        lerror(lw, model->loc, "model '%s' has no return statement", model->name, NULL);
        return false;
    }
    if (result < 0) return false;
    int64_t want_d[2] = {IR_BATCH, ret.d[0]};
    IrShape want = ir_shape(2, want_d);
    if (!ir_shape_equal(shape_of(lw, result), &want)) {
        char buf[64];
        ir_shape_format(&ret, IR_F32, buf, sizeof buf);
        lerror(lw, ret_stmt->kids[0]->loc, "model returns %s per batch, but its declared type is %s",
               fmt_shape(lw, result), buf);
        return false;
    }
    f->logits = result;
    IrShape scalar = {.rank = 0};
    if (train) f->loss = emit(lw, IR_XENT, result, y, scalar, ret_stmt);
    f->correct = emit(lw, IR_CORRECT, result, y, scalar, ret_stmt);
    return true;
}

IrModule *lower_program(Program *prog, Diag *diag) {
    const AstNode *model = NULL;
    if (prog->train) model = program_find_model(prog, prog->train->model);
    else if (prog->nmodels > 0) model = prog->models[prog->nmodels - 1];
    if (!model) {
        diag_error_noloc(diag, "%s: the program defines no model", prog->main_path ? prog->main_path : "input");
        return NULL;
    }
    IrModule *m = arena_alloc(prog->arena, sizeof *m);
    m->arena = prog->arena;
    m->prog = prog;
    m->model = model->name;
    m->train.name = "train";
    m->eval.name = "eval";
    Lower lw = {.m = m, .prog = prog, .diag = diag, .innermost = {.arena = m->arena}};
    if (!lower_model(&lw, model, &m->train, true) || !lower_model(&lw, model, &m->eval, false))
        return NULL;
    if (m->nparams == 0) {
        diag_error(diag, model->loc, "model '%s' has no parameters to train", model->name);
        return NULL;
    }
    /* A random crop gives back images of the model's input size. */
    for (int i = 0; prog->train && i < prog->ndata; i++) {
        const DataDecl *d = prog->data[i];
        if (!d->crop_size || strcmp(d->name, prog->train->data) != 0) continue;
        const IrShape *in = &m->input;
        if (in->rank < 2 || in->d[in->rank - 1] != d->crop_size || in->d[in->rank - 2] != d->crop_size) {
            char buf[64], msg[160];
            ir_shape_format(in, IR_F32, buf, sizeof buf);
            snprintf(msg, sizeof msg, "random_crop(%lld) does not fit model '%s', whose input is %s",
                     (long long)d->crop_size, model->name, buf);
            diag_error(diag, d->crop_loc, "%s", msg);
            diag_note(diag, model->loc, "crops are as large as the input images; pad sets how far they move");
            return NULL;
        }
    }
    m->kernels = arena_alloc(m->arena, sizeof(*m->kernels) * m->nparams);
    return m;
}
