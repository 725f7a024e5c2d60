/* testutil.h — what the compiler tests share: a check counter that ends in
 * "N passed, N failed", a deterministic random source, and compiling a program text
 * through the pipeline (parse, check, lower, autodiff, fuse, verify). */
#ifndef NNQ_TESTUTIL_H
#define NNQ_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir.h"

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

typedef struct Compiled {
    Arena *arena;
    Diag *diag;
    Program *prog;
    IrModule *m; /* NULL unless lowered */
} Compiled;

/* Compiles `text` (with the standard library); lowers, differentiates and fuses when
 * `lower`. False after diagnostics on stderr. */
bool compile_source(Compiled *c, const char *text, bool lower);
void compiled_free(Compiled *c);

typedef struct Jit Jit;
/* A JIT-compiled parameter buffer (compiled with export_internals): "PARAM.WHAT", e.g.
 * jit_param_buffer(jit, "dense1.w", "aux", 0) for dense1.w.aux0; comp < 0: no number. */
float *jit_param_buffer(Jit *jit, const char *param, const char *what, int comp);

/* Prints the summary line; returns the exit status. */
int test_summary(void);

#endif
