/* testutil.h — what the compiler tests share: a check counter that ends in
 * "N passed, N failed", a deterministic random source, compiling a program text
 * through the library's pipeline (pipeline.h), and a central difference of a
 * projection's weight; the paper's form of pmf as program text (pmf_pair.nnq). */
#ifndef NNQ_TESTUTIL_H
#define NNQ_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir.h"
#include "pipeline.h"

extern int test_passed, test_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) test_passed++;                                                                   \
        else {                                                                                     \
            test_failed++;                                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* Uniform in [lo, hi), from a fixed xorshift sequence. */
double urand(double lo, double hi);

/* A compilation through the library's pipeline (pipeline.h): prog, and m unless the
 * text is a library or `lower` was false. */
typedef NnqCompilation Compiled;

/* Compiles `text` (with the standard library) through check, or through every IR pass
 * when `lower` (verifying each). False after diagnostics on stderr. */
bool compile_source(Compiled *c, const char *text, bool lower);
void compiled_free(Compiled *c);

typedef struct Jit Jit;
/* A JIT-compiled parameter buffer (compiled with export_internals): "PARAM.WHAT", e.g.
 * jit_param_buffer(jit, "dense1.w", "aux", 0) for dense1.w.aux0; comp < 0: no number. */
float *jit_param_buffer(Jit *jit, const char *param, const char *what, int comp);

/* The central difference of expression `weight` in VAR `var` of vars[] (step h; vars[var]
 * is left as it was): what the projections' derived gradients are checked against. */
double weight_slope(const SxPool *pool, int weight, double *vars, int var, double h);

/* The text of tests/compiler/pmf_pair.nnq: pmf as the paper writes it, one score per
 * label also for two labels (the library's pmf keeps the pair as one value). Read once;
 * exits the test when the file cannot be read. */
const char *pmf_pair_src(void);

/* Prints the summary line; returns the exit status. */
int test_summary(void);

#endif
