/* check.c — the checker: from a parsed main file to a Program.
 *
 * Requires: an AST_PROGRAM from lang_parse. Does: follows `import std.NAME` (parsing
 * stdlib_dir/NAME.nnq once), collects label sets, projections, blocks, models and data
 * declarations into one namespace (a redefinition is an error with a note at the first),
 * and reads the train block into a TrainConfig. Models are checked (shapes) when they
 * are lowered (lower.c); projections when they are instantiated (proj.c).
 * Reports every error it finds; returns NULL if there was any. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"
#include "program.h"

typedef struct Checker {
    Program *prog;
    Diag *diag;
    const char *stdlib_dir;
    int nimported;
    const char **imported;  /* module names, in the program's arena */
    bool prelude;   /* loading std.projections implicitly: the user's names win */
    bool failed;
} Checker;

#define PUSH(arena, arr, n, v)                                                                     \
    do {                                                                                           \
        (arr) = arena_grow((arena), (arr), (size_t)(n), sizeof(*(arr)));                            \
        (arr)[(n)++] = (v);                                                                        \
    } while (0)

void program_declare(Program *prog, AstKind kind, const char *name, const void *def, SrcLoc loc) {
    int *at = names_add(&prog->names, name);
    assert(*at < 0); /* declared once: check_fresh first */
    *at = prog->ntops;
    PUSH(prog->arena, prog->tops, prog->ntops, ((TopName){name, kind, def, loc}));
}

const TopName *program_find(const Program *prog, const char *name) {
    const int *at = names_find(&prog->names, name);
    return at ? &prog->tops[*at] : NULL;
}

static const void *find_kind(const Program *prog, const char *name, AstKind kind) {
    const TopName *t = program_find(prog, name);
    return t && t->kind == kind ? t->def : NULL;
}

const LabelSet *program_find_labels(const Program *prog, const char *name) { return find_kind(prog, name, AST_LABELS); }
const AstNode *program_find_projection(const Program *prog, const char *name) { return find_kind(prog, name, AST_PROJECTION); }
const AstNode *program_find_model(const Program *prog, const char *name) { return find_kind(prog, name, AST_MODEL); }
const AstNode *program_find_block(const Program *prog, const char *name) { return find_kind(prog, name, AST_BLOCK); }
DataDecl *program_find_data(const Program *prog, const char *name) { return (DataDecl *)find_kind(prog, name, AST_DATA); }

static void error(Checker *ck, SrcLoc loc, const char *fmt, const char *a) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "");
    diag_error(ck->diag, loc, "%s", msg);
    ck->failed = true;
}

/* "unknown data set 'NAME'" (+ tail), and the data set declared so far nearest it */
static void unknown_data(Checker *ck, SrcLoc loc, const char *name, const char *tail) {
    DiagNear near = diag_near(name);
    for (int i = 0; i < ck->prog->ndata; i++) diag_near_offer(&near, ck->prog->data[i]->name);
    diag_unknown(ck->diag, loc, "data set", &near, tail);
    ck->failed = true;
}

/* Every top-level name lives in one namespace. */
static bool check_fresh(Checker *ck, const AstNode *item) {
    const TopName *prev = program_find(ck->prog, item->name);
    if (!prev) return true;
    if (ck->prelude) return false; /* shadowed by the user's definition */
    error(ck, item->loc, "'%s' is already defined", item->name);
    diag_note(ck->diag, prev->loc, "first defined here");
    return false;
}

/* A projection, model or block: declared when its name is fresh. */
static bool declare_item(Checker *ck, const AstNode *item) {
    if (!check_fresh(ck, item)) return false;
    program_declare(ck->prog, item->kind, item->name, item, item->loc);
    return true;
}

/* A block's parameters have distinct names (a second `x` would hide the first). */
static void check_block_params(Checker *ck, const AstNode *blk) {
    const AstNode *params = blk->kids[0];
    int j;
    for (int i = ast_repeated_name(params, 1, &j); i >= 0; i = ast_repeated_name(params, i + 1, &j)) {
        error(ck, params->kids[i]->loc, "block parameter '%s' is named twice", params->kids[i]->name);
        diag_note(ck->diag, params->kids[j]->loc, "first named here");
    }
}

/* A projection's parameter list: none, or one label set (proj.c binds it). Checked where
 * the projection is defined, used or not: a second parameter was reported only at a use,
 * as a wrong argument count. */
static void check_projection_params(Checker *ck, const AstNode *def) {
    const AstNode *params = def->kids[0];
    for (int i = 0; params && i < params->nkids; i++) {
        const AstNode *pa = params->kids[i];
        const AstNode *ty = pa->nkids ? pa->kids[0] : NULL;
        if (!ty || strcmp(ty->name, "labels") != 0 || i > 0) {
            error(ck, pa->loc, "a projection takes one parameter, of type labels", NULL);
            return;
        }
    }
}

/* A compile-time number: literal, unary +/-. */
static bool const_number(const AstNode *e, double *out) {
    if (e->kind == AST_NUMBER) {
        *out = e->num;
        return true;
    }
    if (e->kind == AST_UNARY && (e->op == AST_OP_NEG || e->op == AST_OP_PLUS)) {
        if (!const_number(e->kids[0], out)) return false;
        if (e->op == AST_OP_NEG) *out = -*out;
        return true;
    }
    return false;
}

/* Whether v is 0 or a normal 32-bit float (training computes in them): 1e39 was taken as
 * infinity, a learning rate of 1e-50 as 0, and the run went on. */
static bool f32_number(double v) {
    float f = (float)v;
    return v == 0 || (isfinite(f) && fabsf(f) >= FLT_MIN);
}
#define F32_RANGE_TEXT "must be 0 or a normal 32-bit float, of magnitude 1.2e-38 to 3.4e38 (training computes in them)"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check_labels(Checker *ck, const AstNode *item) {
    if (!check_fresh(ck, item)) return;
    const AstNode *e = item->kids[0];
    LabelSet *ls = arena_alloc(ck->prog->arena, sizeof *ls);
    ls->name = item->name;
    ls->loc = item->loc;
    if (e->kind == AST_SET) {
        if (e->nkids > NNQ_MAX_LABELS) {
            error(ck, e->loc, "a label set has at most 64 labels", NULL);
            return;
        }
        for (int i = 0; i < e->nkids; i++) {
            if (!const_number(e->kids[i], &ls->q[i])) {
                error(ck, e->kids[i]->loc, "a label must be a number", NULL);
                return;
            }
            if (!f32_number(ls->q[i])) {
                error(ck, e->kids[i]->loc, "a label " F32_RANGE_TEXT, NULL);
                return;
            }
        }
        ls->k = e->nkids;
    } else if (e->kind == AST_CALL && strcmp(e->name, "levels") == 0) {
        double L;
        if (e->nkids != 1 || !const_number(e->kids[0], &L) || L < 2 || L > NNQ_MAX_LABELS ||
            L != floor(L)) {
            error(ck, e->loc, "levels(L) takes one integer L from 2 to 64", NULL);
            return;
        }
        /* The PMF code's L-level sets: integers in [-L/2, L/2], without 0 when L is even. */
        int l = (int)L, half = l / 2;
        for (int v = -half; v <= half; v++) {
            if (v == 0 && l % 2 == 0) continue;
            if (l % 2 == 1 && (v < -(l - 1) / 2 || v > (l - 1) / 2)) continue;
            ls->q[ls->k++] = v;
        }
    } else {
        error(ck, e->loc, "a label set is written {a, b, ...} or levels(L)", NULL);
        return;
    }
    qsort(ls->q, ls->k, sizeof(double), cmp_double);
    for (int i = 1; i < ls->k; i++) /* as the 32-bit floats training uses: 1 and 1.00000001 are one */
        if ((float)ls->q[i] == (float)ls->q[i - 1]) {
            error(ck, e->loc,
                  ls->q[i] == ls->q[i - 1] ? "label set '%s' lists a value twice"
                                           : "label set '%s' lists two values that are one as 32-bit floats",
                  item->name);
            return;
        }
    if (ls->k < 2) {
        error(ck, e->loc, "label set '%s' needs at least two labels", item->name);
        return;
    }
    PUSH(ck->prog->arena, ck->prog->labels, ck->prog->nlabels, ls);
    program_declare(ck->prog, AST_LABELS, ls->name, ls, ls->loc);
}

static const AstNode *named_arg(const AstNode *call, const char *name) {
    for (int i = 0; i < call->nkids; i++)
        if (call->kids[i]->kind == AST_NAMED_ARG && strcmp(call->kids[i]->name, name) == 0)
            return call->kids[i]->kids[0];
    return NULL;
}

/* Rejects named arguments not in `allowed` (NULL-terminated) and checks positional count. */
static bool check_args(Checker *ck, const AstNode *call, int npos, const char *const *allowed) {
    int pos = 0;
    bool ok = true;
    for (int i = 0; i < call->nkids; i++) {
        const AstNode *a = call->kids[i];
        if (a->kind != AST_NAMED_ARG) {
            pos++;
            continue;
        }
        bool known = false;
        for (int j = 0; allowed && allowed[j]; j++)
            if (strcmp(allowed[j], a->name) == 0) known = true;
        for (int j = 0; j < i && known; j++)
            if (call->kids[j]->kind == AST_NAMED_ARG && strcmp(call->kids[j]->name, a->name) == 0) {
                error(ck, a->loc, "argument '%s' is given twice", a->name);
                ok = false;
            }
        if (!known) {
            char msg[256];
            snprintf(msg, sizeof msg, "'%s' has no argument named '%s'", call->name, a->name);
            error(ck, a->loc, "%s", msg);
            ok = false;
        }
    }
    if (pos != npos) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' takes %d positional argument%s, got %d", call->name, npos,
                 npos == 1 ? "" : "s", pos);
        error(ck, call->loc, "%s", msg);
        ok = false;
    }
    return ok;
}

static bool want_number(Checker *ck, const AstNode *e, double *out, const char *what) {
    if (e && const_number(e, out)) {
        if (f32_number(*out)) return true;
        error(ck, e->loc, "%s " F32_RANGE_TEXT, what);
        return false;
    }
    if (e) error(ck, e->loc, "%s must be a number", what);
    return false;
}

/* The ranges an optimizer's or beta's number must lie in, and what each range's error says. */
typedef enum { RANGE_POSITIVE, RANGE_NONNEGATIVE, RANGE_UNIT } NumRange; /* > 0, >= 0, [0, 1) */
static const char *const range_text[] = {"positive", "at least 0", "at least 0 and below 1"};

/* A number in range r into *out; else an error at it: "WHAT must be RANGE (WHY)". */
static bool want_number_in(Checker *ck, const AstNode *e, double *out, const char *what, NumRange r, const char *why) {
    double v;
    if (!want_number(ck, e, &v, what)) return false;
    bool ok = r == RANGE_POSITIVE ? v > 0 : v >= 0 && (r == RANGE_NONNEGATIVE || v < 1);
    if (ok) *out = v;
    else {
        diag_error(ck->diag, e->loc, "%s must be %s (%s)", what, range_text[r], why);
        ck->failed = true;
    }
    return ok;
}

static bool want_int(Checker *ck, const AstNode *e, int64_t *out, const char *what, int64_t lo) {
    double v;
    if (!want_number(ck, e, &v, what)) return false;
    if (v != floor(v) || v < lo || v > 1e15) {
        char msg[128];
        snprintf(msg, sizeof msg, "%%s must be an integer >= %lld", (long long)lo);
        error(ck, e->loc, msg, what);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* A non-empty string (every string a program gives names a file, a directory or a
 * pattern; "" named none, and failed at run time or matched nothing). */
static bool want_string(Checker *ck, const AstNode *e, const char **out, const char *what) {
    if (e && e->kind == AST_STRING && e->str[0]) {
        *out = e->str;
        return true;
    }
    if (e) error(ck, e->loc, e->kind == AST_STRING ? "%s must not be empty" : "%s must be a string", what);
    return false;
}

/* `N iterations` or `N epochs`: returns iterations (>0) or -epochs (<0). */
static bool want_period(Checker *ck, const AstNode *e, int64_t *out, const char *what) {
    if (!e) return false;
    if (e->kind != AST_QUANTITY) {
        error(ck, e->loc, "%s must be a count with a unit, e.g. `100 iterations` or `2 epochs`", what);
        return false;
    }
    int64_t n;
    if (!want_int(ck, e->kids[0], &n, what, 1)) return false;
    const char *u = e->name;
    if (!strcmp(u, "iteration") || !strcmp(u, "iterations") || !strcmp(u, "iters")) *out = n;
    else if (!strcmp(u, "epoch") || !strcmp(u, "epochs")) *out = -n;
    else {
        error(ck, e->loc, "unknown unit '%s' (use iterations or epochs)", u);
        return false;
    }
    return true;
}

enum { MAX_EPOCHS = 1000000 }; /* as --epochs allows */

/* `every N epochs` after `evaluate` or `checkpoint` (kind: "evaluation", "checkpoint"):
 * N into *out, at most MAX_EPOCHS (an int: 4294967298 was cut to 2). */
static void want_epoch_cadence(Checker *ck, const AstNode *e, const char *kind, int *out) {
    char what[64];
    snprintf(what, sizeof what, "the %s cadence", kind);
    int64_t n;
    if (!want_period(ck, e, &n, what)) return;
    if (n > 0) error(ck, e->loc, "%s cadence is given in epochs", kind);
    else if (-n > MAX_EPOCHS) error(ck, e->loc, "%s must be at most 1000000 epochs (the most a run trains)", what);
    else *out = (int)-n;
}

static void check_data_source(Checker *ck, DataDecl *d, const AstNode *e);

/* The name is registered even when the source is malformed, so later uses of it do
 * not cascade into "unknown data set" errors. */
static void check_data(Checker *ck, const AstNode *item) {
    if (!check_fresh(ck, item)) return;
    DataDecl *d = arena_alloc(ck->prog->arena, sizeof *d);
    d->name = item->name;
    d->loc = item->loc;
    check_data_source(ck, d, item->kids[0]);
    PUSH(ck->prog->arena, ck->prog->data, ck->prog->ndata, d);
    program_declare(ck->prog, AST_DATA, d->name, d, d->loc);
}

static void check_normalize(Checker *ck, DataDecl *d, const AstNode *norm) {
    if (norm->kind == AST_IDENT && strcmp(norm->name, "standard") == 0) d->normalize = 1;
    else if (norm->kind == AST_IDENT && strcmp(norm->name, "none") == 0) d->normalize = 0;
    else if (norm->kind == AST_CALL && strcmp(norm->name, "like") == 0 && norm->nkids == 1 &&
             norm->kids[0]->kind == AST_IDENT) {
        DataDecl *other = NULL;
        if (!(other = program_find_data(ck->prog, norm->kids[0]->name))) {
            unknown_data(ck, norm->kids[0]->loc, norm->kids[0]->name, "(define it first)");
            return;
        }
        if (!other->normalize) {
            error(ck, norm->loc, "data set '%s' is not normalized", other->name);
            return;
        }
        d->normalize = 1;
        d->like = other->name;
    } else {
        error(ck, norm->loc, "normalize must be standard, none or like(DATA)", NULL);
    }
}

/* augment = [random_crop(SIZE, pad = P), hflip], each at most once, in any order. */
static void check_augment(Checker *ck, DataDecl *d, const AstNode *list) {
    if (list->kind != AST_LIST) {
        error(ck, list->loc, "augment must be a list, e.g. [random_crop(32, pad = 4), hflip]", NULL);
        return;
    }
    for (int i = 0; i < list->nkids; i++) {
        const AstNode *a = list->kids[i];
        const char *what = a->kind == AST_IDENT || a->kind == AST_CALL ? a->name : "";
        if (!strcmp(what, "hflip") && (a->kind == AST_IDENT || a->nkids == 0)) {
            if (d->hflip) error(ck, a->loc, "hflip is listed twice", NULL);
            d->hflip = true;
        } else if (!strcmp(what, "random_crop") && a->kind == AST_CALL) {
            static const char *const allowed[] = {"pad", NULL};
            if (d->crop_size) error(ck, a->loc, "random_crop is listed twice", NULL);
            if (!check_args(ck, a, 1, allowed)) continue;
            int64_t size, pad = 0;
            if (!want_int(ck, a->kids[0], &size, "the crop size", 1)) continue;
            const AstNode *p = named_arg(a, "pad");
            if (p && !want_int(ck, p, &pad, "pad", 0)) continue;
            if (pad > 64) {
                error(ck, p->loc, "pad must be at most 64", NULL);
                continue;
            }
            d->crop_size = size;
            d->crop_pad = pad;
            d->crop_loc = a->loc;
        } else {
            error(ck, a->loc, "unknown augmentation (available: random_crop(SIZE, pad = P), hflip)", NULL);
        }
    }
}

static void check_data_source(Checker *ck, DataDecl *d, const AstNode *e) {
    static const char *const names[] = {"idx", "npy", "cifar10", "cifar100", NULL};
    int kind = -1;
    for (int i = 0; e->kind == AST_CALL && names[i]; i++)
        if (!strcmp(e->name, names[i])) kind = i;
    if (kind < 0) {
        error(ck, e->loc,
              "unknown data source (available: idx(images, labels), npy(images, labels), "
              "cifar10(dir, split = train), cifar100(dir, split = train))", NULL);
        return;
    }
    d->kind = (DataKind)kind;
    bool cifar = d->kind == DATA_CIFAR10 || d->kind == DATA_CIFAR100;
    static const char *const file_args[] = {"normalize", "augment", NULL};
    static const char *const c10_args[] = {"split", "normalize", "augment", NULL};
    static const char *const c100_args[] = {"split", "labels", "normalize", "augment", NULL};
    const char *const *allowed = !cifar ? file_args : d->kind == DATA_CIFAR10 ? c10_args : c100_args;
    if (!check_args(ck, e, cifar ? 1 : 2, allowed)) return;
    if (cifar) {
        if (!want_string(ck, e->kids[0], &d->images, "the CIFAR directory")) return;
        const AstNode *split = named_arg(e, "split");
        if (!split) {
            error(ck, e->loc, "'%s' needs split = train or split = test", e->name);
            return;
        }
        if (split->kind == AST_IDENT && (!strcmp(split->name, "train") || !strcmp(split->name, "test")))
            d->split = !strcmp(split->name, "test");
        else {
            error(ck, split->loc, "split must be train or test", NULL);
            return;
        }
        const AstNode *lab = named_arg(e, "labels");
        if (lab) {
            if (lab->kind == AST_IDENT && (!strcmp(lab->name, "fine") || !strcmp(lab->name, "coarse")))
                d->coarse = !strcmp(lab->name, "coarse");
            else {
                error(ck, lab->loc, "labels must be fine (100 classes) or coarse (20 classes)", NULL);
                return;
            }
        }
    } else if (!want_string(ck, e->kids[0], &d->images, "the images path") ||
               !want_string(ck, e->kids[1], &d->labels, "the labels path")) {
        return;
    }
    const AstNode *norm = named_arg(e, "normalize");
    if (norm) check_normalize(ck, d, norm);
    const AstNode *aug = named_arg(e, "augment");
    if (aug) check_augment(ck, d, aug);
}

static void check_optimizer(Checker *ck, TrainConfig *tc, const AstNode *e) {
    static const char *const adam_args[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "schedule", NULL};
    static const char *const sgd_args[] = {"lr", "momentum", "weight_decay", "schedule", NULL};
    static const char *const optimizers[] = {"adam", "adamw", "sgd", NULL};
    static const char available[] = "(available: adam(...), adamw(...), sgd(...))";
    const char *name = (e->kind == AST_CALL || e->kind == AST_IDENT) ? e->name : NULL;
    bool known = false;
    for (int i = 0; optimizers[i] && name; i++) known |= !strcmp(name, optimizers[i]);
    if (known && e->kind != AST_CALL) { /* `optimizer = adam`: a known name, not called */
        diag_error(ck->diag, e->loc, "optimizer '%s' is written as a call: %s(lr = ...) %s", name, name, available);
        ck->failed = true;
        return;
    }
    if (!known) {
        if (name) {
            DiagNear near = diag_near(name);
            for (int i = 0; optimizers[i]; i++) diag_near_offer(&near, optimizers[i]);
            diag_unknown(ck->diag, e->loc, "optimizer", &near, available);
            ck->failed = true;
        } else {
            error(ck, e->loc, "unknown optimizer %s", available);
        }
        return;
    }
    bool adam = strcmp(e->name, "sgd") != 0;
    if (!check_args(ck, e, 0, adam ? adam_args : sgd_args)) return;
    tc->opt = adam ? OPT_ADAM : OPT_SGD;
    tc->decoupled_decay = strcmp(e->name, "adamw") == 0;
    const AstNode *a;
    if ((a = named_arg(e, "lr"))) want_number(ck, a, &tc->lr, "lr");
    if ((a = named_arg(e, "beta1")))
        want_number_in(ck, a, &tc->beta1, "beta1", RANGE_UNIT, "the first moment's decay; at 1 Adam divides by 0");
    if ((a = named_arg(e, "beta2")))
        want_number_in(ck, a, &tc->beta2, "beta2", RANGE_UNIT, "the second moment's decay; at 1 Adam divides by 0");
    if ((a = named_arg(e, "eps")))
        want_number_in(ck, a, &tc->eps, "eps", RANGE_POSITIVE,
                       "Adam divides by sqrt(v) + eps, and v stays 0 where a gradient has always been 0");
    if ((a = named_arg(e, "momentum")))
        want_number_in(ck, a, &tc->momentum, "momentum", RANGE_UNIT, "the velocity's decay; at 1 or more it never forgets a step");
    if ((a = named_arg(e, "weight_decay")))
        want_number_in(ck, a, &tc->weight_decay, "weight_decay", RANGE_NONNEGATIVE, "a negative decay pushes weights away from 0");
    if ((a = named_arg(e, "schedule"))) {
        static const char *const step_args[] = {"every", "gamma", NULL};
        static const char *const multi_args[] = {"at", "gamma", NULL};
        bool step = a->kind == AST_CALL && strcmp(a->name, "step") == 0;
        bool multi = a->kind == AST_CALL && strcmp(a->name, "multistep") == 0;
        if (!step && !multi) {
            error(ck, a->loc, "unknown schedule (available: step(every = ..., gamma = ...), "
                              "multistep(at = [...], gamma = ...))", NULL);
            return;
        }
        if (!check_args(ck, a, 0, step ? step_args : multi_args)) return;
        if (!named_arg(a, step ? "every" : "at") || !named_arg(a, "gamma")) {
            error(ck, a->loc, step ? "step(...) needs every = ... and gamma = ..."
                                   : "multistep(...) needs at = [...] and gamma = ...", NULL);
            return;
        }
        want_number_in(ck, named_arg(a, "gamma"), &tc->lr_gamma, "gamma", RANGE_POSITIVE,
                       "the learning rate's factor; at 0 or below the learning rate is 0 or negative");
        if (step) {
            want_period(ck, named_arg(a, "every"), &tc->lr_every, "every");
        } else {
            const AstNode *at = named_arg(a, "at");
            if (at->kind != AST_LIST || at->nkids < 1) {
                error(ck, at->loc, "at must be a list of points, e.g. [7000 iterations, 14000 iterations]", NULL);
                return;
            }
            tc->lr_milestones = arena_alloc(ck->prog->arena, sizeof *tc->lr_milestones * (size_t)at->nkids);
            tc->nmilestones = 0;
            for (int i = 0; i < at->nkids; i++)
                if (want_period(ck, at->kids[i], &tc->lr_milestones[i], "a milestone")) tc->nmilestones++;
        }
    }
    if (tc->lr <= 0) error(ck, e->loc, "the learning rate must be positive", NULL);
}

/* group = params("PATTERN", lr = ..., weight_decay = ...): optimizer settings for the
 * parameters whose names match PATTERN (shell wildcards, e.g. "*.b" for every bias). */
static void check_group(Checker *ck, TrainConfig *tc, const AstNode *e) {
    static const char *const args[] = {"lr", "weight_decay", NULL};
    if (e->kind != AST_CALL || strcmp(e->name, "params") != 0) {
        error(ck, e->loc, "a group is written params(\"PATTERN\", lr = ..., weight_decay = ...)", NULL);
        return;
    }
    if (!check_args(ck, e, 1, args)) return;
    ParamGroup g = {.loc = e->loc};
    if (!want_string(ck, e->kids[0], &g.pattern, "the parameter pattern")) return;
    const AstNode *a;
    if ((a = named_arg(e, "lr"))) g.has_lr = want_number_in(ck, a, &g.lr, "lr", RANGE_POSITIVE, "a group's learning rate");
    if ((a = named_arg(e, "weight_decay")))
        g.has_weight_decay = want_number_in(ck, a, &g.weight_decay, "weight_decay", RANGE_NONNEGATIVE,
                                            "a negative decay pushes weights away from 0");
    PUSH(ck->prog->arena, tc->groups, tc->ngroups, g);
}

static void check_beta(Checker *ck, TrainConfig *tc, const AstNode *e) {
    double v;
    if (const_number(e, &v)) {
        want_number_in(ck, e, &tc->beta_start, "beta", RANGE_POSITIVE, "the projections' inverse temperature");
        return;
    }
    static const char *const args[] = {"start", "times", "every", "max", NULL};
    if (e->kind != AST_CALL || strcmp(e->name, "anneal") != 0) {
        error(ck, e->loc, "beta must be a number or anneal(start = ..., times = ..., every = ...)", NULL);
        return;
    }
    if (!check_args(ck, e, 0, args)) return;
    const AstNode *a;
    if ((a = named_arg(e, "start"))) want_number(ck, a, &tc->beta_start, "start");
    if ((a = named_arg(e, "times"))) want_number(ck, a, &tc->beta_times, "times");
    if ((a = named_arg(e, "every"))) want_period(ck, a, &tc->beta_every, "every");
    if ((a = named_arg(e, "max"))) want_number_in(ck, a, &tc->beta_max, "max", RANGE_POSITIVE, "beta's cap");
    if (tc->beta_start <= 0 || tc->beta_times <= 0)
        error(ck, e->loc, "beta's start and factor must be positive", NULL);
}

/* The readers of the simple settings (train_settings.def). */
static void read_loss(Checker *ck, TrainConfig *tc, const AstNode *e) {
    (void)tc;
    if (e->kind != AST_IDENT || strcmp(e->name, "cross_entropy"))
        error(ck, e->loc, "unknown loss (available: cross_entropy)", NULL);
}
static void read_epochs(Checker *ck, TrainConfig *tc, const AstNode *e) {
    int64_t n;
    if (!want_int(ck, e, &n, "epochs", 0)) return;
    if (n > MAX_EPOCHS) error(ck, e->loc, "epochs must be at most 1000000 (as with --epochs)", NULL);
    else tc->epochs = (int)n;
}
/* At most INT32_MAX: a batch is an int, and the runtime's matrix products count rows in
 * 32 bits (a batch of 2^32 + 100 trained at 100). */
static void read_batch(Checker *ck, TrainConfig *tc, const AstNode *e) {
    int64_t n;
    if (!want_int(ck, e, &n, "batch", 1)) return;
    if (n > INT32_MAX) error(ck, e->loc, "batch must be at most 2147483647", NULL);
    else tc->batch = (int)n;
}
static void read_seed(Checker *ck, TrainConfig *tc, const AstNode *e) { want_int(ck, e, &tc->seed, "seed", 0); }
static void read_validation(Checker *ck, TrainConfig *tc, const AstNode *e) {
    want_int(ck, e, &tc->validation, "validation", 0);
}
static void read_calibrate(Checker *ck, TrainConfig *tc, const AstNode *e) {
    want_int(ck, e, &tc->calibrate, "calibrate", 0);
}
static void read_keep(Checker *ck, TrainConfig *tc, const AstNode *e) {
    if (e->kind == AST_IDENT && !strcmp(e->name, "best")) tc->keep_best = true;
    else if (e->kind == AST_IDENT && !strcmp(e->name, "last")) tc->keep_best = false;
    else error(ck, e->loc, "keep must be best or last", NULL);
}

static const struct {
    const char *name;
    void (*read)(Checker *ck, TrainConfig *tc, const AstNode *value);
} settings[] = {
#define NNQ_SETTING(NAME, READ, DEFAULT, MEANING, DOC_DEFAULT) {#NAME, READ},
#include "train_settings.def"
#undef NNQ_SETTING
};
#define NSETTINGS (int)(sizeof settings / sizeof *settings)

void train_config_defaults(TrainConfig *tc) {
#define NNQ_SETTING(NAME, READ, DEFAULT, MEANING, DOC_DEFAULT) DEFAULT;
#include "train_settings.def"
#undef NNQ_SETTING
}

void train_settings_print(FILE *out) {
#define NNQ_SETTING(NAME, READ, DEFAULT, MEANING, DOC_DEFAULT) fprintf(out, "| `%s` | %s | %s |\n", #NAME, MEANING, DOC_DEFAULT);
#include "train_settings.def"
#undef NNQ_SETTING
}

static void unknown_setting(Checker *ck, const AstNode *st) {
    DiagNear near = diag_near(st->name);
    for (int k = 0; k < NSETTINGS; k++) diag_near_offer(&near, settings[k].name);
    diag_unknown(ck->diag, st->loc, "setting", &near, NULL);
    ck->failed = true;
    diag_note_names(ck->diag, st->loc, "settings", &settings[0].name, NSETTINGS, sizeof settings[0]);
}

static void check_train(Checker *ck, const AstNode *item) {
    Program *prog = ck->prog;
    if (prog->train) {
        error(ck, item->loc, "a program has at most one train block", NULL);
        diag_note(ck->diag, prog->train->node->loc, "the first is here");
        return;
    }
    TrainConfig *tc = arena_alloc(prog->arena, sizeof *tc);
    tc->node = item;
    tc->model = item->name;
    tc->data = item->kids[0]->name;
    train_config_defaults(tc);
    if (!program_find_model(prog, tc->model)) {
        DiagNear near = diag_near(tc->model);
        for (int i = 0; i < prog->nmodels; i++) diag_near_offer(&near, prog->models[i]->name);
        diag_unknown(ck->diag, item->loc, "model", &near, NULL);
        ck->failed = true;
    }
    if (!program_find_data(prog, tc->data))
        unknown_data(ck, item->kids[0]->loc, tc->data, NULL);
    for (int i = 1; i < item->nkids; i++) {
        const AstNode *st = item->kids[i];
        const AstNode *e = st->nkids ? st->kids[0] : NULL;
        switch (st->kind) {
        case AST_SETTING: {
            int k = 0;
            while (k < NSETTINGS && strcmp(settings[k].name, st->name)) k++;
            if (k < NSETTINGS) settings[k].read(ck, tc, e);
            else unknown_setting(ck, st);
            break;
        }
        case AST_EVALUATE:
            if (!program_find_data(prog, st->name))
                unknown_data(ck, st->loc, st->name, NULL);
            tc->eval_data = st->name;
            if (e) want_epoch_cadence(ck, e, "evaluation", &tc->eval_every_epochs);
            break;
        case AST_SAVE: want_string(ck, e, &tc->save_path, "the model path"); break;
        case AST_CHECKPOINT:
            if (!want_string(ck, e, &tc->checkpoint_dir, "the checkpoint directory")) break;
            tc->checkpoint_every = 1;
            if (st->kids[1]) want_epoch_cadence(ck, st->kids[1], "checkpoint", &tc->checkpoint_every);
            break;
        case AST_INIT_FROM:
            if (tc->init_dir) {
                error(ck, st->loc, "a train block has at most one `init from`", NULL);
                diag_note(ck->diag, tc->init_loc, "the first is here");
                break;
            }
            tc->init_loc = st->loc;
            if (!want_string(ck, e, &tc->init_dir, "the directory of the initial weights"))
                tc->init_dir = ""; /* refused; a second `init from` is still one too many */
            break;
        default: error(ck, st->loc, "unexpected statement in a train block", NULL);
        }
    }
    prog->train = tc;
}

static bool load_import(Checker *ck, const AstNode *item);

static void collect(Checker *ck, AstNode *root) {
    Program *prog = ck->prog;
    for (int i = 0; i < root->nkids; i++) {
        const AstNode *item = root->kids[i];
        switch (item->kind) {
        case AST_IMPORT: load_import(ck, item); break;
        case AST_LABELS: check_labels(ck, item); break;
        case AST_PROJECTION:
            check_projection_params(ck, item);
            if (declare_item(ck, item)) PUSH(prog->arena, prog->projs, prog->nprojs, item);
            break;
        case AST_MODEL:
            if (declare_item(ck, item)) PUSH(prog->arena, prog->models, prog->nmodels, item);
            break;
        case AST_BLOCK:
            check_block_params(ck, item);
            if (declare_item(ck, item)) PUSH(prog->arena, prog->blocks, prog->nblocks, item);
            break;
        case AST_DATA: check_data(ck, item); break;
        case AST_TRAIN: break; /* after everything is known */
        default: error(ck, item->loc, "unexpected item", NULL);
        }
    }
    for (int i = 0; i < root->nkids; i++)
        if (root->kids[i]->kind == AST_TRAIN) check_train(ck, root->kids[i]);
}

static bool load_import(Checker *ck, const AstNode *item) {
    const char *name = item->name;
    if (strncmp(name, "std.", 4) != 0 || strchr(name + 4, '.')) {
        error(ck, item->loc, "unknown module '%s' (modules are std.NAME)", name);
        return false;
    }
    for (int i = 0; i < ck->nimported; i++)
        if (strcmp(ck->imported[i], name) == 0) return true;
    Arena *arena = ck->prog->arena;
    ck->imported = arena_grow(arena, ck->imported, (size_t)ck->nimported, sizeof(char *));
    ck->imported[ck->nimported++] = name;
    const char *path = arena_printf(arena, "%s/%s.nnq", ck->stdlib_dir, name + 4);
    FILE *f = fopen(path, "rb");
    if (!f) {
        error(ck, item->loc, "unknown module '%s'", name);
        diag_note(ck->diag, item->loc,
                  "the standard library has no %s.nnq (NNQ_STDLIB selects another directory)",
                  name + 4);
        return false;
    }
    fclose(f);
    SourceFile *src = source_load(arena, path, ck->diag);
    if (src) {
        /* Messages name library files as std/NAME.nnq, wherever the library lives. */
        SourceFile *shown = arena_alloc(arena, sizeof *shown);
        *shown = *src;
        shown->path = arena_printf(arena, "std/%s.nnq", name + 4);
        src = shown;
    }
    AstNode *root = src ? lang_parse(arena, ck->diag, src) : NULL;
    if (!root) {
        ck->failed = true;
        return false;
    }
    collect(ck, root);
    return true;
}

Program *check_program(Arena *arena, Diag *diag, AstNode *root, const char *stdlib_dir) {
    Program *prog = arena_alloc(arena, sizeof *prog);
    prog->arena = arena;
    prog->names.arena = arena;
    prog->pool = sx_pool_new();
    Checker ck = {.prog = prog, .diag = diag, .stdlib_dir = stdlib_dir};
    collect(&ck, root);
    /* The prelude: std.projections (float, pmf, ...) is always available; a program
     * that defines a name itself keeps its own definition. */
    bool have = false;
    for (int i = 0; i < ck.nimported; i++) have |= strcmp(ck.imported[i], "std.projections") == 0;
    if (!have && !ck.failed) {
        AstNode imp = {.kind = AST_IMPORT, .name = "std.projections", .loc = {0}};
        ck.prelude = true;
        load_import(&ck, &imp);
        ck.prelude = false;
    }
    if (ck.failed) {
        sx_pool_free(prog->pool);
        return NULL;
    }
    return prog;
}
