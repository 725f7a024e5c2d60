/* pipeline.h — the compiler as a library: one call runs the front end and every IR pass,
 * in the order listed once, in pipeline.c. The driver (nnqc.c), the tests, the fuzzer
 * and the benchmarks all compile through it; the back end (codegen.h: LLVM, the JIT,
 * objects and trainers) takes the IrModule it produces.
 *
 * An NnqCompilation owns everything it holds (one arena, the diagnostics sink, the
 * program's expression pool); nnq_compilation_free releases it, whether or not the
 * compile succeeded. */
#ifndef NNQ_PIPELINE_H
#define NNQ_PIPELINE_H

#include <stdbool.h>
#include <stdio.h>

#include "ir.h"
#include "lang.h"

typedef enum NnqStage {
    NNQ_STAGE_PARSE, /* stop after parsing: root */
    NNQ_STAGE_CHECK, /* after checking: prog */
    NNQ_STAGE_IR,    /* every pass: m, ready for code generation */
} NnqStage;

typedef struct NnqCompileOptions {
    const char *stdlib_dir; /* where `import std.NAME` looks (required) */
    FILE *diag_out;         /* where messages go; NULL: stderr */
    NnqStage until;
    const char *dump_after; /* an IR pass's name (nnq_ir_pass_name): the IR after it, to dump_out */
    FILE *dump_out;         /* NULL: stdout */
    bool verify_each;       /* verify_module after every IR pass (always in builds without NDEBUG) */
    bool no_fuse_layers;    /* skip fuse_layers (--no-fuse-layers) */
    bool unshared_memory;   /* memplan gives every buffer its own memory (--no-share-memory) */
    /* --from-ir: the module is read from the IR file ir_path (or from ir_text, named
     * ir_path) by ir_parse.c instead of lowered, and the passes after the one it was
     * printed after run on it. The program (path / text; path NULL: no program but the
     * standard library) supplies the projections and train settings the IR names. */
    const char *ir_path, *ir_text;
} NnqCompileOptions;

typedef struct NnqCompilation {
    Arena *arena;
    Diag *diag;        /* to o->diag_out */
    SourceFile *src;
    AstNode *root;     /* NULL before parse */
    Program *prog;     /* NULL before check */
    IrModule *m;       /* NULL before lower; complete after the last pass */
    bool library;      /* the file defines no model: checked, nothing to lower */
    bool internal_error; /* the IR verifier refused a pass's output (a compiler bug) */
} NnqCompilation;

/* Compiles the file `path` (text NULL) or `text` named `path`, as far as o->until.
 * With o->ir_path, path NULL means an empty program. False after reporting errors;
 * *c holds what was made either way. */
bool nnq_compile(NnqCompilation *c, const char *path, const char *text, const NnqCompileOptions *o);
void nnq_compilation_free(NnqCompilation *c);

/* The name of IR pass i in pipeline order (lower, instantiate, autodiff, fuse_layers,
 * fuse, memplan); NULL past the last. */
const char *nnq_ir_pass_name(int i);

#endif
