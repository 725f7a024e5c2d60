/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "codegen.h"

int test_passed, test_failed;

static uint64_t rng = 88172645463325252ull;

double urand(double lo, double hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

bool compile_source(Compiled *c, const char *text, bool lower) {
    NnqCompileOptions o = {.stdlib_dir = NNQ_STDLIB_DIR, .until = lower ? NNQ_STAGE_IR : NNQ_STAGE_CHECK,
                           .verify_each = true};
    return nnq_compile(c, "test.nnq", text, &o) && (!lower || c->m);
}

void compiled_free(Compiled *c) { nnq_compilation_free(c); }

double weight_slope(const SxPool *pool, int weight, double *vars, int var, double h) {
    double save = vars[var];
    vars[var] = save + h;
    double wp = sx_eval(pool, weight, NULL, vars);
    vars[var] = save - h;
    double wm = sx_eval(pool, weight, NULL, vars);
    vars[var] = save;
    return (wp - wm) / (2 * h);
}

const char *pmf_pair_src(void) {
    static char *text;
    if (text) return text;
    const char *path = NNQ_TEST_DIR "/pmf_pair.nnq";
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n + 1)) && fread(text, 1, (size_t)n, f) == (size_t)n) {
        text[n] = 0;
        fclose(f);
        return text;
    }
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
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
