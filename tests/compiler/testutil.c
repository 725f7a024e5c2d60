/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <string.h>

#include "codegen.h"
#include "lang.h"

int test_passed, test_failed;

static uint64_t rng = 88172645463325252ull;

double urand(double lo, double hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

bool compile_source(Compiled *c, const char *text, bool lower) {
    memset(c, 0, sizeof *c);
    c->arena = arena_new();
    c->diag = diag_new(stderr);
    SourceFile *src = source_from_string(c->arena, "test.nnq", text);
    AstNode *root = lang_parse(c->arena, c->diag, src);
    if (!root) return false;
    c->prog = check_program(c->arena, c->diag, root, NNQ_STDLIB_DIR);
    if (!c->prog) return false;
    if (!lower) return true;
    c->m = lower_program(c->prog, c->diag);
    if (!c->m) return false;
    autodiff_module(c->m);
    fuse_layers_module(c->m);
    fuse_module(c->m);
    return verify_module(c->m, stderr);
}

void compiled_free(Compiled *c) {
    if (c->prog) sx_pool_free(c->prog->pool);
    diag_free(c->diag);
    arena_free(c->arena);
}

int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

float *jit_param_buffer(Jit *jit, const char *param, const char *what, int comp) {
    char name[256];
    if (comp < 0) snprintf(name, sizeof name, "%s.%s", param, what);
    else snprintf(name, sizeof name, "%s.%s%d", param, what, comp);
    return jit_lookup(jit, name);
}
