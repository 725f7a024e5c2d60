/* ir_print.c — the IR's text form (docs/ir.md): parameters, batch-norm states, the
 * two functions as SSA instruction lists, and every fused kernel as a per-element
 * SSA program. Deterministic; golden-tested. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static const char *const buf_names[] = {"weight", "hard", "grad", "aux", "m", "v"};
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
        switch (in->op) {
        case IR_PARAM:
        case IR_PARAM_GRAD:
        case IR_BN_TRAIN:
        case IR_BN_EVAL:
        case IR_BN_GRAD: fprintf(out, "%s@%s", na ? ", " : " ", in->name); break;
        case IR_CONV2D:
        case IR_CONV2D_DX: fprintf(out, " stride %lld pad %lld", (long long)in->attr[0], (long long)in->attr[1]); break;
        case IR_AVGPOOL:
        case IR_AVGPOOL_GRAD:
        case IR_MAXPOOL: fprintf(out, " window %lld stride %lld", (long long)in->attr[0], (long long)in->attr[1]); break;
        case IR_MATMUL:
            if (in->attr[0]) fputs(" transpose_a", out);
            if (in->attr[1]) fputs(" transpose_b", out);
            break;
        default: break;
        }
        if (in->op != IR_PARAM_GRAD) fprintf(out, " : %s", sh);
        fputc('\n', out);
    }
    fprintf(out, "  ret");
    if (f->loss >= 0) fprintf(out, " loss %%%d,", f->loss);
    fprintf(out, " correct %%%d\n}\n", f->correct);
}

static void print_kernel(const IrModule *m, const IrKernel *k, FILE *out) {
    const SxPool *p = m->prog->pool;
    const IrParam *par = &m->params[k->param];
    fprintf(out, "kernel @%s.%s over %lld elements {\n", k->name, par->name, (long long)par->count);
    int top = 0;
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].node + 1 > top) top = k->out[o].node + 1;
    char *need = calloc(top + 1, 1);
    for (int o = 0; o < k->nout; o++) need[k->out[o].node] = 1;
    for (int i = top - 1; i >= 0; i--) {
        if (!need[i]) continue;
        const SxNode *n = sx_node(p, i);
        if (n->a >= 0) need[n->a] = 1;
        if (n->b >= 0) need[n->b] = 1;
        if (n->c >= 0) need[n->c] = 1;
    }
    /* Local numbering in print order: the dump does not depend on what else the
     * program's expression pool holds. */
    int *num = malloc(sizeof(int) * (top + 1)), next = 0;
    for (int i = 0; i < top; i++) {
        if (!need[i]) continue;
        const SxNode *n = sx_node(p, i);
        if (n->op == SX_CONST) continue; /* printed inline */
        num[i] = next++;
        fprintf(out, "  %%s%d = ", num[i]);
        if (n->op == SX_INPUT) {
            if (n->slot >= IR_SCALAR_SLOT(0)) fprintf(out, "scalar %s\n", scalar_names[n->slot - IR_SCALAR_SLOT(0)]);
            else {
                const IrKernelIO *io = &k->in[n->slot];
                fprintf(out, "load %s", buf_names[io->buf]);
                if (io->buf >= IRB_AUX) fprintf(out, "%d", io->comp);
                fputs("[i]\n", out);
            }
            continue;
        }
        fputs(sx_op_name(n->op), out);
        int ops[3] = {n->a, n->b, n->c};
        for (int j = 0; j < sx_op_arity(n->op); j++) {
            double v;
            fputs(j ? ", " : " ", out);
            if (sx_is_const(p, ops[j], &v)) fprintf(out, "%.9g", v);
            else fprintf(out, "%%s%d", num[ops[j]]);
        }
        fputc('\n', out);
    }
    for (int o = 0; o < k->nout; o++) {
        const IrKernelIO *io = &k->out[o];
        double v;
        fprintf(out, "  store %s", buf_names[io->buf]);
        if (io->buf >= IRB_AUX) fprintf(out, "%d", io->comp);
        if (sx_is_const(p, io->node, &v)) fprintf(out, "[i], %.9g\n", v);
        else fprintf(out, "[i], %%s%d\n", num[io->node]);
    }
    free(num);
    free(need);
    fprintf(out, "}\n");
}

void ir_print_module(const IrModule *m, FILE *out) {
    fprintf(out, "module @%s  ; input f32", m->model);
    char sh[128];
    ir_shape_format(&m->input, IR_F32, sh, sizeof sh);
    fprintf(out, "%s, %lld classes\n\n", sh + 3, (long long)m->classes);
    for (int i = 0; i < m->nparams; i++) {
        const IrParam *p = &m->params[i];
        ir_shape_format(&p->shape, IR_F32, sh, sizeof sh);
        fprintf(out, "param @%s : %s quant %s", p->name, sh, p->proj->name);
        if (p->proj->labels) fprintf(out, "(%s)", p->proj->labels->name);
        fprintf(out, " aux %d", p->proj->ncomp);
        if (p->init == IR_INIT_XAVIER)
            fprintf(out, " init xavier(%lld, %lld)\n", (long long)p->fan_in, (long long)p->fan_out);
        else
            fprintf(out, " init normal(0, %g)\n", p->init_std);
    }
    for (int i = 0; i < m->nbns; i++)
        fprintf(out, "bn @%s : %lld features\n", m->bns[i].name, (long long)m->bns[i].features);
    if (m->prog && m->prog->train) {
        /* what memplan.c gives the code generator: one arena for both functions */
        int64_t batch = m->prog->train->batch;
        MemPlan t = memplan_func(&m->train, batch, true, m->arena), e = memplan_func(&m->eval, batch, true, m->arena);
        int64_t size = t.size > e.size ? t.size : e.size, total = t.total > e.total ? t.total : e.total;
        fprintf(out, "; memory at batch %lld: %.1f MiB of values and scratch (%.1f MiB unshared)\n",
                (long long)batch, (double)size * 4 / 1048576, (double)total * 4 / 1048576);
        fprintf(out, "; work at batch %lld: %.4g GFLOP per training step in matrix products and convolutions\n",
                (long long)batch, (double)ir_func_flops(&m->train, batch) * 1e-9);
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
