/* pipeline.c — the pipeline, in one place. Each pass is one file; each file's header
 * states what it requires and produces.
 *
 *   source_load    lang/source.c     the file, NUL-terminated
 *   lang_parse     lang/parser.y     (lexer.re) the syntax tree
 *   check_program  check.c           imports, label sets, data and train declarations
 *   ---- IR passes (--dump-after=NAME, --verify-each) ----
 *   lower          lower.c           the model as train/eval IR functions, shapes checked
 *   instantiate    instantiate.c     each parameter's projection, for its label set (proj.c)
 *   autodiff       autodiff.c        the backward pass appended to train
 *   fuse_layers    fuse_layers.c     bias + batch norm (+ relu + maxpool), relu grad + bn grad, relu + maxpool, add + relu as one op each
 *   fuse           fuse.c            each parameter's fused gradient -> projection -> optimizer kernels
 *   memplan        memplan.c         where every value and scratch buffer lives
 *   ---- back end (codegen.h), driven by nnqc.c ----
 *   cg_emit_module codegen.c         the LLVM module, through a target (target.h: target_cpu.c);
 *                                    jit.c / link.c: native code, trainers
 *
 * A file with no model (a library of projections) stops after check, each projection
 * checked on its own. With --from-ir, ir_parse (ir_parse.c) takes lower's place and the
 * passes after the one the text was printed after run on its module. verify_module runs after every IR pass with verify_each, and
 * always in builds without NDEBUG. */
#include "pipeline.h"

#include <string.h>

typedef struct IrPass {
    const char *name;
    bool (*run)(NnqCompilation *c, const NnqCompileOptions *o);
} IrPass;

static bool pass_lower(NnqCompilation *c, const NnqCompileOptions *o) {
    c->m = lower_program(c->prog, c->diag);
    if (c->m) c->m->unshared_memory = o->unshared_memory;
    return c->m != NULL;
}
static bool pass_instantiate(NnqCompilation *c, const NnqCompileOptions *o) {
    (void)o;
    return instantiate_module(c->m, c->diag, c->root);
}
static bool pass_autodiff(NnqCompilation *c, const NnqCompileOptions *o) {
    (void)o;
    autodiff_module(c->m);
    return true;
}
static bool pass_fuse_layers(NnqCompilation *c, const NnqCompileOptions *o) {
    if (!o->no_fuse_layers) fuse_layers_module(c->m);
    return true;
}
static bool pass_fuse(NnqCompilation *c, const NnqCompileOptions *o) {
    (void)o;
    fuse_module(c->m);
    return true;
}
static bool pass_memplan(NnqCompilation *c, const NnqCompileOptions *o) {
    (void)o;
    memplan_module(c->m);
    return true;
}

static const IrPass ir_passes[] = {
    {"lower", pass_lower},
    {"instantiate", pass_instantiate},
    {"autodiff", pass_autodiff},
    {"fuse_layers", pass_fuse_layers},
    {"fuse", pass_fuse},
    {"memplan", pass_memplan},
};
#define NPASSES (int)(sizeof ir_passes / sizeof *ir_passes)

const char *nnq_ir_pass_name(int i) { return i >= 0 && i < NPASSES ? ir_passes[i].name : NULL; }

static void dump(const NnqCompilation *c, const NnqCompileOptions *o, int pass) {
    FILE *out = o->dump_out ? o->dump_out : stdout;
    fprintf(out, "; IR after %s\n", ir_passes[pass].name);
    ir_print_module(c->m, out);
}

bool nnq_compile(NnqCompilation *c, const char *path, const char *text, const NnqCompileOptions *o) {
    memset(c, 0, sizeof *c);
    c->arena = arena_new();
    c->diag = diag_new(o->diag_out ? o->diag_out : stderr);
    if (!path && o->ir_path) path = o->ir_path, text = ""; /* IR alone: the standard library's projections */
    c->src = text ? source_from_string(c->arena, path, text) : source_load(c->arena, path, c->diag);
    if (!c->src) return false;
    c->root = lang_parse(c->arena, c->diag, c->src);
    if (!c->root) return false;
    if (o->until == NNQ_STAGE_PARSE) return true;
    c->prog = check_program(c->arena, c->diag, c->root, o->stdlib_dir);
    if (!c->prog) return false;
    c->prog->main_path = path;
    if (o->until == NNQ_STAGE_CHECK) return true;
    bool verify = o->verify_each;
#ifndef NDEBUG
    verify = true;
#endif
    int first = 0;
    if (o->ir_path) { /* the module from IR text, then the passes after its stage */
        int after;
        const SourceFile *ir = o->ir_text ? source_from_string(c->arena, o->ir_path, o->ir_text)
                                          : source_load(c->arena, o->ir_path, c->diag);
        c->m = ir ? ir_parse(c->prog, ir, &after, c->diag) : NULL;
        if (!c->m) return false;
        c->m->unshared_memory = o->unshared_memory;
        if (!verify_module(c->m, stderr, ir)) /* always: the text may come from anywhere */
            return false; /* not a compiler bug: the text was wrong */
        first = after + 1;
        if (o->dump_after && !strcmp(o->dump_after, ir_passes[after].name)) /* the IR as read */
            dump(c, o, after);
    } else if (c->prog->nmodels == 0) { /* a library: every projection checked on its own */
        c->library = true;
        return proj_check_unused(c->prog, c->diag, c->root);
    }
    for (int i = first; i < NPASSES; i++) {
        if (!ir_passes[i].run(c, o)) return false;
        if (verify && !verify_module(c->m, stderr, NULL)) {
            fprintf(stderr, "nnqc: note: after pass '%s'\n", ir_passes[i].name);
            c->internal_error = true;
            return false;
        }
        if (o->dump_after && !strcmp(o->dump_after, ir_passes[i].name)) dump(c, o, i);
    }
    return true;
}

void nnq_compilation_free(NnqCompilation *c) {
    if (c->prog) sx_pool_free(c->prog->pool);
    diag_free(c->diag);
    arena_free(c->arena);
    memset(c, 0, sizeof *c);
}
