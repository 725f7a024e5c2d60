/* ir_parse.c — reads the IR's text form (ir_print.c; docs/ir.md) back into an IrModule,
 * so that a pass can be run, tested and inspected from IR text (nnqc --from-ir).
 *
 * Requires: the text, and a checked Program that supplies what the IR names but does
 * not define: projections (a parameter's `quant pmf(binary)`; the standard library's
 * are always there) and the train settings. Label sets the IR declares (`labels
 * @binary = {-1, 1}`) are added to the program when it lacks them. Produces: the
 * module as the printer saw it: parameters (instantiated when the text gives `aux K`,
 * which must match the projection), batch-norm states, both functions, and the fused
 * kernels as expression DAGs in the program's pool (rebuilt through sx.c, which
 * hash-conses them). *after_pass is the index of the pass the text was printed after
 * (its first line `; IR after PASS`); the memory plan is not read (memplan runs again).
 *
 * Equal means printing equal: ir_print_module(ir_parse(text)) == text for any text
 * ir_print_module wrote (tests/e2e/ir_roundtrip.sh checks every example at every pass).
 * Not printed, so not read back: instruction names other than @param and @bn, and
 * source locations. Errors: `FILE:LINE:COL: error: ...` with the line and a caret. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "pipeline.h"

typedef struct Parser {
    Program *prog;
    IrModule *m;
    Diag *diag;
    const SourceFile *src;
    const char *p;     /* cursor */
    const char *line;  /* start of the current line */
    int lineno;
    bool failed;
} Parser;

static SrcLoc here(const Parser *ps) { return (SrcLoc){ps->src, ps->lineno, (int)(ps->p - ps->line) + 1}; }

static bool fail(Parser *ps, const char *what) {
    if (!ps->failed) diag_error(ps->diag, here(ps), "%s", what);
    ps->failed = true;
    return false;
}

static void skip_blanks(Parser *ps) {
    while (*ps->p == ' ' || *ps->p == '\t') ps->p++;
}

/* The rest of the line is blank or a comment. */
static bool at_eol(Parser *ps) {
    skip_blanks(ps);
    return *ps->p == '\n' || *ps->p == 0 || *ps->p == ';';
}

static void next_line(Parser *ps) {
    while (*ps->p && *ps->p != '\n') ps->p++;
    if (*ps->p == '\n') ps->p++, ps->lineno++;
    ps->line = ps->p;
}

/* Skips blank lines and comment lines. */
static void skip_empty(Parser *ps) {
    for (;;) {
        const char *save = ps->p;
        skip_blanks(ps);
        if (*ps->p == '\n' || *ps->p == ';') {
            next_line(ps);
            continue;
        }
        ps->p = save;
        if (*ps->p == ' ' || *ps->p == '\t') skip_blanks(ps);
        return;
    }
}

static bool lit(Parser *ps, const char *s) {
    skip_blanks(ps);
    size_t n = strlen(s);
    if (strncmp(ps->p, s, n) != 0) return false;
    /* a keyword must end where the literal does */
    if (isalpha((unsigned char)s[0]) && isalnum((unsigned char)s[n - 1]) && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_'))
        return false;
    ps->p += n;
    return true;
}

static bool expect(Parser *ps, const char *s) {
    if (lit(ps, s)) return true;
    char msg[96];
    snprintf(msg, sizeof msg, "expected '%s'", s);
    return fail(ps, msg);
}

/* A name: letters, digits, '_' and '.', at most NNQ_MAX_IDENT of them. */
static const char *name(Parser *ps) {
    skip_blanks(ps);
    const char *s = ps->p;
    while (isalnum((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '.') ps->p++;
    if (ps->p == s) {
        fail(ps, "expected a name");
        return NULL;
    }
    if (ps->p - s > NNQ_MAX_IDENT) {
        char msg[96];
        snprintf(msg, sizeof msg, "name of %zu characters; at most %d are allowed", (size_t)(ps->p - s), NNQ_MAX_IDENT);
        ps->p = s;
        fail(ps, msg);
        return NULL;
    }
    return arena_strndup(ps->m->arena, s, (size_t)(ps->p - s));
}

static bool integer(Parser *ps, int64_t *out) {
    skip_blanks(ps);
    char *end;
    errno = 0;
    long long v = strtoll(ps->p, &end, 10);
    if (end == ps->p || errno) return fail(ps, "expected an integer");
    ps->p = end;
    *out = v;
    return true;
}

static bool number(Parser *ps, double *out) {
    skip_blanks(ps);
    char *end;
    double v = strtod(ps->p, &end);
    if (end == ps->p) return fail(ps, "expected a number");
    ps->p = end;
    *out = v;
    return true;
}

/* %N (prefix "%") or %sN (prefix "%s"), N < limit. */
static bool ref(Parser *ps, const char *prefix, int limit, int *out) {
    skip_blanks(ps);
    const char *at = ps->p;
    if (!lit(ps, prefix)) return fail(ps, prefix[1] ? "expected %sN" : "expected %N");
    int64_t v;
    if (!isdigit((unsigned char)*ps->p) || !integer(ps, &v)) return fail(ps, "expected a value number");
    if (v < 0 || v >= limit) {
        ps->p = at;
        char msg[96];
        snprintf(msg, sizeof msg, "%s%lld is used before it is defined", prefix, (long long)v);
        return fail(ps, msg);
    }
    *out = (int)v;
    return true;
}

/* f32[...] / i32[...]: N is the batch dimension (first only). */
static bool type(Parser *ps, IrShape *s, IrDType *dt) {
    if (lit(ps, "f32[")) *dt = IR_F32;
    else if (lit(ps, "i32[")) *dt = IR_I32;
    else return fail(ps, "expected a type, f32[...] or i32[...]");
    memset(s, 0, sizeof *s);
    skip_blanks(ps);
    while (*ps->p != ']') {
        if (s->rank == NNQ_MAX_RANK) return fail(ps, "too many dimensions");
        if (s->rank && !expect(ps, ",")) return false;
        skip_blanks(ps);
        if (*ps->p == 'N' && s->rank == 0) {
            ps->p++, s->d[s->rank++] = IR_BATCH;
        } else {
            if (!integer(ps, &s->d[s->rank])) return false;
            if (s->d[s->rank] < 1 || s->d[s->rank] > IR_MAX_DIM) return fail(ps, "a dimension out of range (1 .. 2^30)");
            s->rank++;
            if (!ir_shape_in_bounds(s)) return fail(ps, "a tensor of more than 2^31 - 1 elements");
        }
        skip_blanks(ps);
        if (!*ps->p || *ps->p == '\n') return fail(ps, "expected ']'");
    }
    ps->p++;
    return true;
}

static int find_param(const IrModule *m, const char *n) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, n)) return i;
    return -1;
}

static int find_bn(const IrModule *m, const char *n) {
    for (int i = 0; i < m->nbns; i++)
        if (!strcmp(m->bns[i].name, n)) return i;
    return -1;
}

/* labels @NAME = {q1, q2, ...} */
static bool parse_labels(Parser *ps) {
    if (!expect(ps, "@")) return false;
    const char *n = name(ps);
    if (!n || !expect(ps, "=") || !expect(ps, "{")) return false;
    LabelSet ls = {.name = n, .loc = here(ps)};
    do {
        if (ls.k == NNQ_MAX_LABELS) return fail(ps, "too many labels");
        if (!number(ps, &ls.q[ls.k++])) return false;
    } while (lit(ps, ","));
    if (!expect(ps, "}")) return false;
    const TopName *top = program_find(ps->prog, n);
    if (top && top->kind != AST_LABELS) return fail(ps, "the program gives this name to something other than a label set");
    const LabelSet *have = top ? top->def : NULL;
    if (have) { /* the program's: they must agree */
        bool same = have->k == ls.k;
        for (int i = 0; same && i < ls.k; i++) same = have->q[i] == ls.q[i];
        return same || fail(ps, "this label set differs from the program's of the same name");
    }
    LabelSet *copy = arena_alloc(ps->prog->arena, sizeof *copy);
    *copy = ls;
    ps->prog->labels = arena_grow(ps->prog->arena, ps->prog->labels, (size_t)ps->prog->nlabels, sizeof(LabelSet *));
    ps->prog->labels[ps->prog->nlabels++] = copy;
    program_declare(ps->prog, AST_LABELS, copy->name, copy, copy->loc);
    return true;
}

/* param @NAME : f32[...] quant PROJ[(LABELS)] [aux K] init xavier(A, B) | normal(0, S) */
static bool parse_param(Parser *ps) {
    IrModule *m = ps->m;
    skip_blanks(ps);
    SrcLoc decl = here(ps);
    if (!expect(ps, "@")) return false;
    const char *n = name(ps);
    IrShape shape;
    IrDType dt;
    if (!n || !expect(ps, ":") || !type(ps, &shape, &dt)) return false;
    if (find_param(m, n) >= 0) return fail(ps, "a second parameter of this name");
    if (dt != IR_F32 || (shape.rank && shape.d[0] == IR_BATCH)) return fail(ps, "a parameter is f32 and has no batch dimension");
    if (!expect(ps, "quant")) return false;
    skip_blanks(ps);
    SrcLoc at = here(ps);
    const char *start = ps->p;
    const char *pname = name(ps);
    if (!pname) return false;
    char msg[256];
    const AstNode *def = program_find_projection(ps->prog, pname);
    if (!def) {
        ps->p = start;
        snprintf(msg, sizeof msg, "unknown projection '%.64s' (give the program that defines it)", pname);
        return fail(ps, msg);
    }
    const LabelSet *ls = NULL;
    if (lit(ps, "(")) {
        skip_blanks(ps);
        start = ps->p;
        const char *lname = name(ps);
        if (!lname) return false;
        if (!(ls = program_find_labels(ps->prog, lname))) {
            ps->p = start;
            snprintf(msg, sizeof msg, "unknown label set '%.64s' (declare it: labels @%.64s = {...})", lname, lname);
            return fail(ps, msg);
        }
        if (!expect(ps, ")")) return false;
    }
    int64_t aux = -1;
    if (lit(ps, "aux") && !integer(ps, &aux)) return false;
    IrParam p = {.name = n, .shape = shape, .count = ir_shape_elems(&shape), .proj_def = def, .proj_labels = ls, .proj_loc = at,
                 .loc = decl};
    if (!expect(ps, "init")) return false;
    if (lit(ps, "xavier")) {
        p.init = IR_INIT_XAVIER;
        if (!expect(ps, "(") || !integer(ps, &p.fan_in) || !expect(ps, ",") || !integer(ps, &p.fan_out) || !expect(ps, ")"))
            return false;
        if (p.fan_in < 1 || p.fan_out < 1 || p.fan_in > IR_MAX_ELEMS || p.fan_out > IR_MAX_ELEMS)
            return fail(ps, "the fans of a Xavier initialization are out of range");
    } else if (lit(ps, "normal")) {
        double mean;
        p.init = IR_INIT_NORMAL;
        if (!expect(ps, "(") || !number(ps, &mean) || !expect(ps, ",") || !number(ps, &p.init_std) || !expect(ps, ")"))
            return false;
        if (mean != 0) return fail(ps, "the normal initialization has mean 0");
        if (!(p.init_std >= 0 && p.init_std < 1e6)) return fail(ps, "the standard deviation is out of range");
    } else {
        return fail(ps, "expected xavier(FAN_IN, FAN_OUT) or normal(0, STD)");
    }
    if (aux >= 0) { /* printed after the instantiate pass */
        p.proj = proj_instantiate(ps->prog, ps->diag, def, ls, at);
        if (!p.proj) return ps->failed = true, false;
        if (p.proj->ncomp != aux) return fail(ps, "aux differs from the projection's number of auxiliary arrays");
    }
    m->params = arena_grow(m->arena, m->params, (size_t)m->nparams, sizeof(IrParam));
    m->params[m->nparams++] = p;
    return true;
}

/* bn @NAME : F features */
static bool parse_bn(Parser *ps) {
    IrModule *m = ps->m;
    if (!expect(ps, "@")) return false;
    const char *n = name(ps);
    int64_t f;
    if (!n || !expect(ps, ":") || !integer(ps, &f) || !expect(ps, "features")) return false;
    if (f < 1 || f > IR_MAX_DIM) return fail(ps, "the number of features is out of range");
    if (find_bn(m, n) >= 0) return fail(ps, "a second batch norm of this name");
    m->bns = arena_grow(m->arena, m->bns, (size_t)m->nbns, sizeof(IrBn));
    m->bns[m->nbns++] = (IrBn){n, f};
    return true;
}

/* @NAME of a parameter (bn false) or a batch norm: its index in attr[0], its name. */
static bool at_ref(Parser *ps, IrInst *in, bool bn) {
    if (!expect(ps, "@")) return false;
    const char *n = name(ps);
    if (!n) return false;
    int i = bn ? find_bn(ps->m, n) : find_param(ps->m, n);
    if (i < 0) return fail(ps, bn ? "unknown batch norm" : "unknown parameter");
    in->attr[0] = i;
    in->name = bn ? ps->m->bns[i].name : ps->m->params[i].name;
    return true;
}

/* The most instructions a function read from text may hold: what lowering's bound on a
 * model (20,000 operations) gives a training step, with room (8 instructions an
 * operation); past it the passes after reading (memplan's placement is quadratic in the
 * values, LLVM's code generation superlinear) would run for hours. */
#define IR_MAX_INSTS 160000

static bool parse_inst(Parser *ps, IrFunc *f) {
    IrModule *m = ps->m;
    SrcLoc at = here(ps); /* where the verifier locates this instruction's failures */
    int id = -1;
    if (f->n >= IR_MAX_INSTS) {
        char msg[96];
        snprintf(msg, sizeof msg, "a function of more than %d instructions", IR_MAX_INSTS);
        return fail(ps, msg);
    }
    if (*ps->p == '%') {
        int64_t v;
        ps->p++;
        if (!integer(ps, &v)) return false;
        if (v != f->n) return fail(ps, "values are numbered in order, from %0");
        if (!expect(ps, "=")) return false;
        id = (int)v;
    }
    const char *opname = name(ps);
    if (!opname) return false;
    int op = 0;
    while (op < IR_OP_COUNT && strcmp(ir_op_name((IrOp)op), opname)) op++;
    if (op == IR_OP_COUNT) return fail(ps, "unknown op");
    if ((op == IR_PARAM_GRAD) != (id < 0)) return fail(ps, op == IR_PARAM_GRAD ? "param_grad defines no value" : "expected %N = before the op");
    IrInst in;
    memset(&in, 0, sizeof in);
    in.op = (IrOp)op;
    in.loc = at;
    in.args[0] = in.args[1] = in.args[2] = -1;
    int na = ir_op_nargs(in.op);
    for (int k = 0; k < na; k++)
        if ((k && !expect(ps, ",")) || !ref(ps, "%", f->n, &in.args[k])) return false;
    switch (ir_op_attrs(in.op)) { /* ir_ops.def's ATTRS column */
    case IR_ATTRS_PARAM:
    case IR_ATTRS_BN:
        if ((na && !expect(ps, ",")) || !at_ref(ps, &in, ir_op_attrs(in.op) == IR_ATTRS_BN)) return false;
        break;
    case IR_ATTRS_CONV:
        if (!expect(ps, "stride") || !integer(ps, &in.attr[0]) || !expect(ps, "pad") || !integer(ps, &in.attr[1])) return false;
        break;
    case IR_ATTRS_POOL:
        if (!expect(ps, "window") || !integer(ps, &in.attr[0]) || !expect(ps, "stride") || !integer(ps, &in.attr[1])) return false;
        break;
    case IR_ATTRS_BN_POOL:
        if (!expect(ps, ",") || !at_ref(ps, &in, true) || !expect(ps, "window") || !integer(ps, &in.attr[1]) ||
            !expect(ps, "stride") || !integer(ps, &in.attr[2]))
            return false;
        break;
    case IR_ATTRS_MATMUL:
        in.attr[0] = lit(ps, "transpose_a");
        in.attr[1] = lit(ps, "transpose_b");
        break;
    case IR_ATTRS_RATE: {
        double r;
        if (!expect(ps, "rate") || !number(ps, &r)) return false;
        if (!(r >= 0 && r < 1)) return fail(ps, "a dropout rate is in [0, 1)");
        in.attr[0] = (int64_t)(r * 1e6 + 0.5);
        break;
    }
    case IR_ATTRS_NONE: break;
    }
    if (in.op != IR_PARAM_GRAD && (!expect(ps, ":") || !type(ps, &in.shape, &in.dtype))) return false;
    if (!at_eol(ps)) return fail(ps, "unexpected text after the instruction");
    int v = ir_emit(m, f, in.op, in.args[0], in.args[1], in.shape, in.dtype);
    f->insts[v] = in;
    return true;
}

/* func @NAME { instructions  ret [loss %a,] correct %b[, logits %c] } */
static bool parse_func(Parser *ps) {
    if (!expect(ps, "@")) return false;
    const char *n = name(ps);
    if (!n) return false;
    IrFunc *f = !strcmp(n, "train") ? &ps->m->train : !strcmp(n, "eval") ? &ps->m->eval : NULL;
    if (!f) return fail(ps, "a function is @train or @eval");
    if (f->name) return fail(ps, "a second function of this name");
    f->name = f == &ps->m->train ? "train" : "eval";
    f->loss = f->correct = f->logits = -1;
    if (!expect(ps, "{") || (!at_eol(ps) && !fail(ps, "unexpected text after '{'"))) return false;
    for (;;) {
        next_line(ps);
        skip_empty(ps);
        if (!*ps->p) return fail(ps, "the function has no 'ret'");
        if (lit(ps, "ret")) break;
        if (!parse_inst(ps, f)) return false;
    }
    if (lit(ps, "loss") && (!ref(ps, "%", f->n, &f->loss) || !expect(ps, ","))) return false;
    if (!expect(ps, "correct") || !ref(ps, "%", f->n, &f->correct)) return false;
    if (lit(ps, ",") && (!expect(ps, "logits") || !ref(ps, "%", f->n, &f->logits))) return false;
    if (!at_eol(ps)) return fail(ps, "unexpected text after 'ret'");
    next_line(ps);
    skip_empty(ps);
    return expect(ps, "}");
}

static const char *const scalar_names[] = {"beta", "beta_next", "lr", "bc1", "bc2"};
static const char *const kernel_names[] = {"update", "init", "hard", "soft"};

/* weight | hard | grad | auxK | mK | vK | carryK, then [i]: a buffer parameter pi has (K
 * below its projection's number of auxiliary arrays, or IR_MAX_CARRY; m and v only with
 * an optimizer that keeps them), so that code generation finds every buffer a kernel
 * names. */
static bool buffer(Parser *ps, int pi, IrKernelIO *io) {
    skip_blanks(ps);
    for (int b = IRB_CARRY; b >= 0; b--) {
        size_t n = strlen(ir_buf_name(b));
        if (strncmp(ps->p, ir_buf_name(b), n)) continue;
        const char *at = ps->p; /* where a message about the buffer points */
        ps->p += n;
        io->buf = (IrBufKind)b;
        io->comp = 0;
        if (b >= IRB_AUX) {
            int64_t c;
            if (!integer(ps, &c)) return false;
            const ProjInst *proj = ps->m->params[pi].proj;
            _Static_assert(IR_MAX_CARRY == 2, "the message below names the carried values");
            if (b == IRB_CARRY && (c < 0 || c >= IR_MAX_CARRY))
                return ps->p = at, fail(ps, "no such carried value: a parameter has carry0 and carry1");
            if (b != IRB_CARRY && (c < 0 || !proj || c >= proj->ncomp))
                return ps->p = at, fail(ps, "no such component: the parameter's projection has fewer auxiliary arrays");
            TrainConfig defaults;
            const TrainConfig *tc = ps->prog->train;
            if (!tc) {
                memset(&defaults, 0, sizeof defaults);
                train_config_defaults(&defaults);
                tc = &defaults;
            }
            if ((b == IRB_M && !train_keeps_m(tc)) || (b == IRB_V && !train_keeps_v(tc)))
                return ps->p = at, fail(ps, "the program's optimizer keeps no such moment");
            io->comp = (int)c;
        }
        return expect(ps, "[i]");
    }
    return fail(ps, "expected a buffer: weight, hard, grad, auxK, mK, vK or carryK");
}

/* An operand: %sN or a constant. */
static bool operand(Parser *ps, const int *nodes, int nnodes, int *out) {
    skip_blanks(ps);
    if (ps->p[0] == '%') {
        int k;
        if (!ref(ps, "%s", nnodes, &k)) return false;
        *out = nodes[k];
        return true;
    }
    double v;
    if (!number(ps, &v)) return false;
    *out = sx_const(ps->prog->pool, v);
    return true;
}

/* kernel @KIND.PARAM over N elements { ... } */
static bool parse_kernel(Parser *ps) {
    IrModule *m = ps->m;
    SxPool *pool = ps->prog->pool;
    if (!expect(ps, "@")) return false;
    const char *full = name(ps);
    if (!full) return false;
    const char *dot = strchr(full, '.');
    size_t klen = dot ? (size_t)(dot - full) : 0;
    int kind = 0;
    while (kind < 4 && !(strlen(kernel_names[kind]) == klen && !strncmp(full, kernel_names[kind], klen))) kind++;
    if (kind == 4) return fail(ps, "a kernel is @update.P, @init.P, @hard.P or @soft.P");
    int pi = find_param(m, dot + 1);
    if (pi < 0) return fail(ps, "unknown parameter");
    int64_t count;
    if (!expect(ps, "over") || !integer(ps, &count) || !expect(ps, "elements") || !expect(ps, "{")) return false;
    if (count != m->params[pi].count) return fail(ps, "the parameter has another number of elements");
    if (!m->kernels) m->kernels = arena_alloc(m->arena, sizeof(*m->kernels) * (size_t)(m->nparams ? m->nparams : 1));
    IrKernel *k = &m->kernels[pi][kind];
    if (k->name) return fail(ps, "a second kernel of this kind for the parameter");
    memset(k, 0, sizeof *k);
    k->name = kernel_names[kind];
    k->param = pi;
    int cap = 64, n = 0;
    int *nodes = malloc(sizeof(int) * (size_t)cap);
    bool ok = true;
    for (;;) {
        next_line(ps);
        skip_empty(ps);
        if (!*ps->p) {
            ok = fail(ps, "the kernel has no closing '}'");
            break;
        }
        if (lit(ps, "}")) break;
        if (lit(ps, "store")) {
            IrKernelIO io;
            int v;
            if (k->nout == (int)(sizeof k->out / sizeof k->out[0])) {
                ok = fail(ps, "too many stores");
                break;
            }
            if (!(ok = buffer(ps, pi, &io) && expect(ps, ",") && operand(ps, nodes, n, &v) && (at_eol(ps) || fail(ps, "unexpected text"))))
                break;
            io.node = v;
            k->out[k->nout++] = io;
            continue;
        }
        int64_t id;
        skip_blanks(ps);
        const char *value_at = ps->p; /* where an error about the value points */
        if (!(ok = expect(ps, "%s") && integer(ps, &id) && expect(ps, "="))) break;
        if (id != n) {
            ok = fail(ps, "kernel values are numbered in order, from %s0");
            break;
        }
        int node = -1;
        if (lit(ps, "load")) {
            IrKernelIO io;
            if (!(ok = buffer(ps, pi, &io))) break;
            int slot = 0;
            while (slot < k->nin && (k->in[slot].buf != io.buf || k->in[slot].comp != io.comp)) slot++;
            if (slot == k->nin) {
                if (k->nin == (int)(sizeof k->in / sizeof k->in[0])) {
                    ok = fail(ps, "too many inputs");
                    break;
                }
                k->in[k->nin++] = (IrKernelIO){io.buf, io.comp, -1};
            }
            node = sx_input(pool, slot);
        } else if (lit(ps, "scalar")) {
            int s = 0;
            while (s < IRS_COUNT && !lit(ps, scalar_names[s])) s++;
            if (s == IRS_COUNT) {
                ok = fail(ps, "expected a scalar: beta, beta_next, lr, bc1 or bc2");
                break;
            }
            node = sx_input(pool, IR_SCALAR_SLOT(s));
        } else {
            const char *opname = name(ps);
            if (!opname) {
                ok = false;
                break;
            }
            int op = 0;
            while (op < SX_OP_COUNT && strcmp(sx_op_name((SxOp)op), opname)) op++;
            int ar = op < SX_OP_COUNT ? sx_op_arity((SxOp)op) : 0;
            if (op == SX_OP_COUNT || ar == 0) {
                ok = fail(ps, "unknown scalar op");
                break;
            }
            int a[3] = {-1, -1, -1};
            for (int j = 0; j < ar && ok; j++) ok = (!j || expect(ps, ",")) && operand(ps, nodes, n, &a[j]);
            if (!ok) break;
            node = ar == 1 ? sx_unary(pool, (SxOp)op, a[0]) : ar == 2 ? sx_binary(pool, (SxOp)op, a[0], a[1]) : sx_select(pool, a[0], a[1], a[2]);
        }
        if (sx_node(pool, node)->depth > SX_KERNEL_MAX_DEPTH) {
            char msg[96];
            snprintf(msg, sizeof msg, "this value is computed through more than %d operations in a row", SX_KERNEL_MAX_DEPTH);
            ps->p = value_at;
            ok = fail(ps, msg);
            break;
        }
        if (!(ok = at_eol(ps) || fail(ps, "unexpected text after the expression"))) break;
        if (n == cap) nodes = realloc(nodes, sizeof(int) * (size_t)(cap *= 2));
        nodes[n++] = node;
    }
    free(nodes);
    return ok;
}

IrModule *ir_parse(Program *prog, const SourceFile *src, int *after_pass, Diag *diag) {
    IrModule *m = arena_alloc(prog->arena, sizeof *m);
    m->arena = prog->arena;
    m->prog = prog;
    m->train.loss = m->train.correct = m->train.logits = -1;
    m->eval.loss = m->eval.correct = m->eval.logits = -1;
    Parser ps = {.prog = prog, .m = m, .diag = diag, .src = src};
    ps.p = ps.line = ps.src->text;
    ps.lineno = 1;
    /* The memory plan is not in the text (only its size, as a comment): a module printed
     * after memplan, or whole (--emit=ir), is read as of after the pass before it, so
     * that memplan runs again. */
    int last = 0;
    while (nnq_ir_pass_name(last + 1)) last++;
    *after_pass = last - 1;
    if (lit(&ps, "; IR after")) {
        const char *pass = name(&ps);
        if (!pass) return NULL;
        int i = 0;
        while (nnq_ir_pass_name(i) && strcmp(nnq_ir_pass_name(i), pass)) i++;
        if (!nnq_ir_pass_name(i)) return fail(&ps, "unknown pass"), NULL;
        *after_pass = i < last ? i : last - 1;
        next_line(&ps);
    }
    skip_empty(&ps);
    /* module @NAME  ; input f32[...], K classes */
    if (!expect(&ps, "module") || !expect(&ps, "@") || !(m->model = name(&ps)) || !expect(&ps, ";") ||
        !expect(&ps, "input"))
        return NULL;
    IrDType dt;
    if (!type(&ps, &m->input, &dt) || !expect(&ps, ",") || !integer(&ps, &m->classes) || !expect(&ps, "classes"))
        return NULL;
    if (m->classes < 2 || m->classes > IR_MAX_DIM) return fail(&ps, "the number of classes is out of range"), NULL;
    next_line(&ps);
    bool body = false;
    while (!ps.failed) {
        skip_empty(&ps);
        if (!*ps.p) break;
        bool ok;
        if (!body && lit(&ps, "labels")) ok = parse_labels(&ps);
        else if (!body && lit(&ps, "param")) ok = parse_param(&ps);
        else if (!body && lit(&ps, "bn")) ok = parse_bn(&ps);
        else if (lit(&ps, "func")) ok = parse_func(&ps), body = true;
        else if (lit(&ps, "kernel")) ok = parse_kernel(&ps), body = true;
        else ok = fail(&ps, "expected labels, param, bn, func or kernel");
        if (ok && !at_eol(&ps)) ok = fail(&ps, "unexpected text");
        if (!ok) {
            fail(&ps, "unexpected text"); /* (a no-op when a message was given) */
            break;
        }
        next_line(&ps);
    }
    if (!ps.failed && (!m->train.name || !m->eval.name)) fail(&ps, "a module has func @train and func @eval");
    /* printed after fuse: every parameter's four kernels (the passes after it, and code
     * generation, run each of them) */
    int fuse = 0;
    while (nnq_ir_pass_name(fuse) && strcmp(nnq_ir_pass_name(fuse), "fuse")) fuse++;
    for (int i = 0; !ps.failed && *after_pass >= fuse && i < m->nparams; i++)
        for (int k = 0; k < 4 && !ps.failed; k++)
            if (!m->kernels || !m->kernels[i][k].name) {
                diag_error(ps.diag, m->params[i].loc, "a module printed after fuse has the kernel @%s.%s",
                           kernel_names[k], m->params[i].name);
                ps.failed = true;
            }
    if (ps.failed) return NULL;
    if (!m->kernels) m->kernels = arena_alloc(m->arena, sizeof(*m->kernels) * (size_t)(m->nparams ? m->nparams : 1));
    return m;
}
