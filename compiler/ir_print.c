/* ir_print.c — the IR's text form (docs/ir.md): parameters, batch-norm states, the
 * two functions as SSA instruction lists, and every fused kernel as a per-element
 * SSA program. Deterministic; golden-tested. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"


/* The shortest of %.9g .. %.17g that reads back as the same double (ir_parse.c). */
static void put_num(FILE *out, double v) {
    char b[40];
    for (int digits = 9; digits <= 17; digits++) {
        snprintf(b, sizeof b, "%.*g", digits, v);
        if (strtod(b, NULL) == v) break;
    }
    fputs(b, out);
}
static const char *const scalar_names[] = {"beta", "beta_next", "lr", "bc1", "bc2"};

static void print_func(const IrFunc *f, FILE *out) {
    fprintf(out, "func @%s {\n", f->name);
    for (int i = 0; i < f->n; i++) {
        const IrInst *in = &f->insts[i];
        char sh[128];
        ir_shape_format(&in->shape, in->dtype, sh, sizeof sh);
        if (in->op == IR_PARAM_GRAD) fprintf(out, "  ");
        else fprintf(out, "  %%%d = ", i);
        fputs(ir_op_name(in->op), out);
        int na = ir_op_nargs(in->op);
        for (int k = 0; k < na; k++) fprintf(out, "%s%%%d", k ? ", " : " ", in->args[k]);
        switch (ir_op_attrs(in->op)) { /* ir_ops.def's ATTRS column */
        case IR_ATTRS_PARAM:
        case IR_ATTRS_BN: fprintf(out, "%s@%s", na ? ", " : " ", in->name); break;
        case IR_ATTRS_CONV: fprintf(out, " stride %lld pad %lld", (long long)in->attr[0], (long long)in->attr[1]); break;
        case IR_ATTRS_POOL: fprintf(out, " window %lld stride %lld", (long long)in->attr[0], (long long)in->attr[1]); break;
        case IR_ATTRS_BN_POOL:
            fprintf(out, ", @%s window %lld stride %lld", in->name, (long long)in->attr[1], (long long)in->attr[2]);
            break;
        case IR_ATTRS_MATMUL:
            if (in->attr[0]) fputs(" transpose_a", out);
            if (in->attr[1]) fputs(" transpose_b", out);
            break;
        case IR_ATTRS_RATE:
            fputs(" rate ", out);
            put_num(out, (double)in->attr[0] * 1e-6);
            break;
        case IR_ATTRS_NONE: break;
        }
        if (in->op != IR_PARAM_GRAD) fprintf(out, " : %s", sh);
        fputc('\n', out);
    }
    fprintf(out, "  ret");
    if (f->loss >= 0) fprintf(out, " loss %%%d,", f->loss);
    fprintf(out, " correct %%%d", f->correct);
    if (f->logits >= 0) fprintf(out, ", logits %%%d", f->logits);
    fprintf(out, "\n}\n");
}

/* The dump's node order and the operand order of + and * depend only on the
 * expressions, not on the order the compiler built them in (node ids: they differ
 * between C compilers, argument evaluation order being unspecified; input slots: they
 * differ between fuse.c and ir_parse.c): a structural hash
 * orders the operands of commutative nodes, and nodes are printed depth first, each
 * after its operands. */
static bool commutes(SxOp op) { return op == SX_ADD || op == SX_MUL; }

static void operand_order(const SxPool *p, const uint64_t *hash, int id, int ops[3]) {
    const SxNode *nd = sx_node(p, id);
    ops[0] = nd->a, ops[1] = nd->b, ops[2] = nd->c;
    if (commutes(nd->op) && hash[ops[1]] < hash[ops[0]]) {
        int t = ops[0];
        ops[0] = ops[1];
        ops[1] = t;
    }
}

static void post_order(const SxPool *p, const uint64_t *hash, int id, char *seen, int *order, int *n) {
    if (seen[id]) return;
    seen[id] = 1;
    int ops[3];
    operand_order(p, hash, id, ops);
    for (int j = 0; j < 3; j++)
        if (ops[j] >= 0) post_order(p, hash, ops[j], seen, order, n);
    order[(*n)++] = id;
}

static void print_kernel(const IrModule *m, const IrKernel *k, FILE *out) {
    const SxPool *p = m->prog->pool;
    const IrParam *par = &m->params[k->param];
    fprintf(out, "kernel @%s.%s over %lld elements {\n", k->name, par->name, (long long)par->count);
    int top = 0;
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].node + 1 > top) top = k->out[o].node + 1;
    /* operands have smaller ids: one upward sweep hashes every node after its operands */
    uint64_t *hash = malloc(sizeof(uint64_t) * (top + 1));
    for (int i = 0; i < top; i++) {
        const SxNode *n = sx_node(p, i);
        uint64_t h = 1469598103934665603ull ^ (uint64_t)n->op, x[3] = {0, 0, 0};
        memcpy(&x[0], &n->value, sizeof n->value);
        x[1] = (uint64_t)(int64_t)n->slot;
        if (n->op == SX_INPUT && n->slot < IR_SCALAR_SLOT(0)) /* the buffer, not its slot number */
            x[1] = 1 + ((uint64_t)k->in[n->slot].buf << 8 | (uint64_t)k->in[n->slot].comp);
        if (sx_op_arity(n->op) > 0) {
            int ops[3] = {n->a, n->b, n->c};
            for (int j = 0; j < 3; j++) x[j] = ops[j] >= 0 ? hash[ops[j]] : 0;
            if (commutes(n->op) && x[1] < x[0]) {
                uint64_t t = x[0];
                x[0] = x[1];
                x[1] = t;
            }
        }
        for (int j = 0; j < 3; j++) {
            h = (h ^ x[j]) * 1099511628211ull;
            h ^= h >> 29;
        }
        hash[i] = h;
    }
    char *seen = calloc(top + 1, 1);
    int *order = malloc(sizeof(int) * (top + 1)), count = 0;
    for (int o = 0; o < k->nout; o++) post_order(p, hash, k->out[o].node, seen, order, &count);
    /* Local numbering in print order: the dump does not depend on what else the
     * program's expression pool holds. */
    int *num = malloc(sizeof(int) * (top + 1)), next = 0;
    for (int oi = 0; oi < count; oi++) {
        int i = order[oi];
        const SxNode *n = sx_node(p, i);
        if (n->op == SX_CONST) continue; /* printed inline */
        num[i] = next++;
        fprintf(out, "  %%s%d = ", num[i]);
        if (n->op == SX_INPUT) {
            if (n->slot >= IR_SCALAR_SLOT(0)) fprintf(out, "scalar %s\n", scalar_names[n->slot - IR_SCALAR_SLOT(0)]);
            else {
                const IrKernelIO *io = &k->in[n->slot];
                fprintf(out, "load %s", ir_buf_name(io->buf));
                if (io->buf >= IRB_AUX) fprintf(out, "%d", io->comp);
                fputs("[i]\n", out);
            }
            continue;
        }
        fputs(sx_op_name(n->op), out);
        int ops[3];
        operand_order(p, hash, i, ops);
        for (int j = 0; j < sx_op_arity(n->op); j++) {
            double v;
            fputs(j ? ", " : " ", out);
            if (sx_is_const(p, ops[j], &v)) put_num(out, v);
            else fprintf(out, "%%s%d", num[ops[j]]);
        }
        fputc('\n', out);
    }
    for (int o = 0; o < k->nout; o++) {
        const IrKernelIO *io = &k->out[o];
        double v;
        fprintf(out, "  store %s", ir_buf_name(io->buf));
        if (io->buf >= IRB_AUX) fprintf(out, "%d", io->comp);
        if (sx_is_const(p, io->node, &v)) {
            fputs("[i], ", out);
            put_num(out, v);
            fputc('\n', out);
        }
        else fprintf(out, "[i], %%s%d\n", num[io->node]);
    }
    free(num);
    free(order);
    free(seen);
    free(hash);
    fprintf(out, "}\n");
}

void ir_print_module(const IrModule *m, FILE *out) {
    fprintf(out, "module @%s  ; input f32", m->model);
    char sh[128];
    ir_shape_format(&m->input, IR_F32, sh, sizeof sh);
    fprintf(out, "%s, %lld classes\n\n", sh + 3, (long long)m->classes);
    /* the label sets the parameters use, each once, so that the text stands alone */
    for (int i = 0; i < m->nparams; i++) {
        const LabelSet *ls = m->params[i].proj_labels;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = m->params[j].proj_labels == ls;
        if (!ls || seen) continue;
        fprintf(out, "labels @%s = {", ls->name);
        for (int q = 0; q < ls->k; q++) {
            if (q) fputs(", ", out);
            put_num(out, ls->q[q]);
        }
        fprintf(out, "}\n");
    }
    for (int i = 0; i < m->nparams; i++) {
        const IrParam *p = &m->params[i];
        ir_shape_format(&p->shape, IR_F32, sh, sizeof sh);
        fprintf(out, "param @%s : %s quant %s", p->name, sh, p->proj_def ? p->proj_def->name : "float");
        if (p->proj_labels) fprintf(out, "(%s)", p->proj_labels->name);
        if (p->proj) fprintf(out, " aux %d", p->proj->ncomp); /* once instantiated */
        if (p->init == IR_INIT_XAVIER)
            fprintf(out, " init xavier(%lld, %lld)\n", (long long)p->fan_in, (long long)p->fan_out);
        else
        {
            fputs(" init normal(0, ", out);
            put_num(out, p->init_std);
            fputs(")\n", out);
        }
    }
    for (int i = 0; i < m->nbns; i++)
        fprintf(out, "bn @%s : %lld features\n", m->bns[i].name, (long long)m->bns[i].features);
    if (m->planned) {
        /* what the memplan pass gives the code generator: one arena for both functions */
        int64_t batch = m->plan_batch;
        const MemPlan *t = &m->plan[0], *e = &m->plan[1];
        int64_t size = t->size > e->size ? t->size : e->size, total = t->total > e->total ? t->total : e->total;
        fprintf(out, "; memory at batch %lld: %.1f MiB of values and scratch (%.1f MiB unshared)\n",
                (long long)batch, (double)size * 4 / 1048576, (double)total * 4 / 1048576);
        fprintf(out, "; work at batch %lld: %.4g GFLOP per training step in matrix products and convolutions\n",
                (long long)batch, (double)ir_func_flops(&m->train, batch) * 1e-9);
        fprintf(out, "; traffic at batch %lld: %.4g MB per training step read and written by the passes bound by "
                     "memory (batch norms, elementwise ops, pooling, depthwise convolutions)\n",
                (long long)batch, (double)ir_func_pass_bytes(&m->train, batch) * 1e-6);
    }
    fputc('\n', out);
    print_func(&m->train, out);
    fputc('\n', out);
    print_func(&m->eval, out);
    for (int i = 0; i < m->nparams && m->kernels; i++)
        for (int j = 0; j < 4; j++) {
            if (!m->kernels[i][j].name) continue;
            fputc('\n', out);
            print_kernel(m, &m->kernels[i][j], out);
        }
}
