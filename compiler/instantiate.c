/* instantiate.c — the instantiate pass: each parameter's projection, instantiated for
 * its label set.
 *
 * Requires: a lowered IrModule (every parameter's proj_def and proj_labels set, proj
 * NULL) and the program's syntax tree. Produces: every parameter's proj, from
 * proj_instantiate (proj.c: the projection's body evaluated symbolically, grad(...)
 * derived; cached per (definition, label set), so a weight and its bias share one).
 * Then the projections no parameter uses are checked on their own
 * (proj_check_unused), so an error in any projection of the program is reported once
 * the model compiles. Errors are reported at the `quant = ...` that asked. */
#include "ir.h"

bool instantiate_module(IrModule *m, Diag *diag, const AstNode *root) {
    bool ok = true;
    for (int i = 0; i < m->nparams; i++) {
        IrParam *p = &m->params[i];
        bool failed_before = false; /* reported once, at its first use */
        for (int j = 0; j < i && !failed_before; j++)
            failed_before = !m->params[j].proj && m->params[j].proj_def == p->proj_def &&
                            m->params[j].proj_labels == p->proj_labels;
        p->proj = failed_before ? NULL : proj_instantiate(m->prog, diag, p->proj_def, p->proj_labels, p->proj_loc);
        if (!p->proj) ok = false;
    }
    return ok && proj_check_unused(m->prog, diag, root);
}
