/* codegen.h — LLVM IR generation (codegen.c, through a target: target.h) and the JIT
 * (jit.c).
 * cg_emit_module builds the whole training program for an IrModule into a new LLVM
 * module in `ctx` (the caller owns the returned module). The JIT owns the LLVM
 * objects it creates; jit_free releases them in reverse order of creation. */
#ifndef NNQ_CODEGEN_H
#define NNQ_CODEGEN_H

#include <stdbool.h>

#include <llvm-c/Core.h>

#include "diag.h"
#include "ir.h"

/* NULL after an internal error (reported to diag). With `export_internals`, buffers and
 * the step functions get external linkage so tests can reach them (jit_lookup). */
LLVMModuleRef cg_emit_module(const IrModule *m, LLVMContextRef ctx, bool export_internals, Diag *diag);

typedef struct Jit Jit;

/* The compiled-code cache: a directory, and the most bytes its entries may take (0: no
 * limit); past it, the entries used longest ago are removed as a new one is stored. */
typedef struct JitCache {
    const char *dir;
    uint64_t max_bytes;
} JitCache;

/* Lowers an IrModule through LLVM (optimized at `opt_level` 0-3 for the host CPU) into
 * native code, generated on up to `threads` threads (0: one per usable CPU,
 * nnq_cpus_usable). With `cache` (may be NULL: no cache), the native code is looked up in
 * and stored to that compiled-code cache; *cached (may be NULL) says whether it came from
 * there. NULL after reporting an error. */
Jit *jit_compile(const IrModule *m, int opt_level, int threads, bool export_internals, const JitCache *cache,
                 bool *cached, Diag *diag);
/* Address of a JIT-compiled symbol, NULL when absent. */
void *jit_lookup(Jit *jit, const char *name);
/* The generated program's entry point: int nnq_main(NnqRun *). */
void *jit_entry(Jit *jit);
/* Maps in the program's buffers now (nnq_prefault), before its first step: after the
 * code is ready, so that "compiled in" times compilation alone. */
void jit_prefault(Jit *jit);
void jit_free(Jit *jit);

/* Optimizes a module for the host (used by the JIT and by --emit=llvm -O). */
bool cg_optimize(LLVMModuleRef mod, int opt_level, Diag *diag);

/* The program's identity for the ranks of a data-parallel run (nnq_rt_mpi_start): FNV-1a
 * of the module's text, `text` when the caller has printed it already (NULL: printed
 * here), stored in the module. The JIT and nnqc build set it before compiling. */
void cg_set_fingerprint(LLVMModuleRef mod, const char *text);

/* Whether g is a zero-initialized variable: a program's buffer (the JIT's mapping, a
 * built trainer's common symbols). */
bool cg_zero_variable(LLVMValueRef g);
/* Standalone trainers (nnqc build): the program's buffers become common symbols, and
 * `int main(argc, argv)` calls the runtime's nnq_trainer_main with nnq_main and the
 * table of their spans. */
void cg_add_trainer_main(LLVMModuleRef mod);
/* Optimizes `mod` and compiles it to position-independent native code for the host: an
 * object file, or assembly text, in memory (the caller disposes of it); NULL after
 * reporting an error. */
LLVMMemoryBufferRef cg_emit_native(LLVMModuleRef mod, int opt_level, bool assembly, Diag *diag);
/* Optimizes `mod` and compiles it to position-independent objects in memory, generated
 * on up to `threads` threads (0: one per usable CPU; jit.c's partitions): how many are in objs,
 * 0 after reporting an error (also where a trainer's buffers, its common symbols, pass
 * this machine's memory and swap: nnq_memory_total). The caller disposes of them. */
enum { CG_MAX_OBJECTS = 16 };
int cg_compile_objects(LLVMModuleRef mod, int opt_level, int threads, LLVMMemoryBufferRef objs[CG_MAX_OBJECTS],
                       Diag *diag);

/* link.c: links the objects with the runtime and its libraries into an executable at
 * `out`, atomically (temporary files named with the process id, then a rename); a
 * signal ending the build removes them. */
bool link_trainer(LLVMMemoryBufferRef *objs, int nobjs, const char *out, Diag *diag);
/* Whether a trainer can be written at `out`, before the build's work (reported when
 * not): a directory, a missing or read-only directory, or something that is no regular
 * file (/dev/null: the rename would replace the device). Where `out` is a symbolic link,
 * link_trainer replaces the file it names. */
bool link_output_ok(const char *out, Diag *diag);

#endif
