/* jit.c — native code through ORC LLJIT. The module is built in the JIT's thread-safe
 * context, optimized for the host CPU with the new pass manager, and added to the main
 * JITDylib. The runtime ABI (rt_table) is defined as absolute symbols; libm and other
 * process symbols resolve through a process search generator. Every LLVMErrorRef
 * becomes a diagnostic. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen.h"
#include "rt_table.h"

struct Jit {
    LLVMOrcLLJITRef lljit;
    void *entry;
};

static bool report(Diag *diag, LLVMErrorRef err, const char *what) {
    if (!err) return false;
    char *msg = LLVMGetErrorMessage(err);
    diag_error_noloc(diag, "internal compiler error: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

/* With glibc's vector math library loaded, the loop vectorizer maps exp and log in the
 * fused kernels to its SIMD variants (e.g. _ZGVdN8v_expf) instead of scalarizing them:
 * expf was 38% of a PMF training run before. The JIT resolves the variants through the
 * process search generator. Without libmvec, calls stay scalar. */
static void init_llvm(void) {
    static bool done;
    if (done) return;
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
#if defined(__x86_64__) && defined(__linux__)
    if (dlopen("libmvec.so.1", RTLD_NOW | RTLD_GLOBAL)) {
        const char *argv[] = {"nnqc", "-vector-library=LIBMVEC-X86"};
        LLVMParseCommandLineOptions(2, argv, NULL);
    }
#endif
    done = true;
}

static LLVMTargetMachineRef host_machine(Diag *diag, int opt_level, bool for_object) {
    init_llvm();
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        diag_error_noloc(diag, "internal compiler error: no LLVM target for %s: %s", triple, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    LLVMCodeGenOptLevel lvl = opt_level <= 0 ? LLVMCodeGenLevelNone
                              : opt_level == 1 ? LLVMCodeGenLevelLess
                              : opt_level == 2 ? LLVMCodeGenLevelDefault
                                               : LLVMCodeGenLevelAggressive;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
        target, triple, cpu, features, lvl, for_object ? LLVMRelocPIC : LLVMRelocDefault,
        for_object ? LLVMCodeModelDefault : LLVMCodeModelJITDefault);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeMessage(triple);
    return tm;
}

bool cg_optimize(LLVMModuleRef mod, int opt_level, Diag *diag) {
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, false);
    if (!tm) return false;
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
    bool ok = true;
    if (opt_level > 0) {
        char passes[32];
        snprintf(passes, sizeof passes, "default<O%d>", opt_level > 3 ? 3 : opt_level);
        LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
        ok = !report(diag, LLVMRunPasses(mod, passes, tm, opts), "optimizing");
        LLVMDisposePassBuilderOptions(opts);
    }
    LLVMDisposeTargetMachine(tm);
    return ok;
}

Jit *jit_compile(const IrModule *m, int opt_level, bool export_internals, Diag *diag) {
    init_llvm();
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef mod = cg_emit_module(m, ctx, export_internals, diag);
    if (!mod || !cg_optimize(mod, opt_level, diag)) {
        if (mod) LLVMDisposeModule(mod);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return NULL;
    }
    Jit *jit = calloc(1, sizeof *jit);
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    if (report(diag, LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb), "detecting the host")) goto fail_builder;
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
    if (report(diag, LLVMOrcCreateLLJIT(&jit->lljit, builder), "creating the JIT")) goto fail;
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit->lljit);
    /* The pair type was renamed after LLVM 14; the pointer typedef exists in all. */
    LLVMOrcCSymbolMapPairs syms = calloc(rt_table_count, sizeof *syms);
    for (int i = 0; i < rt_table_count; i++) {
        syms[i].Name = LLVMOrcLLJITMangleAndIntern(jit->lljit, rt_table[i].name);
        syms[i].Sym.Address = (LLVMOrcJITTargetAddress)(uintptr_t)rt_table[i].addr;
        syms[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        syms[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(syms, (size_t)rt_table_count));
    free(syms);
    if (report(diag, err, "defining runtime symbols")) goto fail;
    LLVMOrcDefinitionGeneratorRef gen;
    if (report(diag, LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit->lljit), NULL, NULL),
               "searching process symbols"))
        goto fail;
    LLVMOrcJITDylibAddGenerator(jd, gen);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
    mod = NULL;
    if (report(diag, LLVMOrcLLJITAddLLVMIRModule(jit->lljit, jd, tsm), "adding the module")) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        goto fail;
    }
    LLVMOrcDisposeThreadSafeContext(tsc); /* the module keeps the context alive */
    tsc = NULL;
    LLVMOrcJITTargetAddress addr = 0;
    if (report(diag, LLVMOrcLLJITLookup(jit->lljit, &addr, "nnq_main"), "compiling to native code")) goto fail;
    jit->entry = (void *)(uintptr_t)addr;
    return jit;
fail_builder:
    LLVMOrcDisposeLLJITBuilder(builder);
fail:
    if (mod) LLVMDisposeModule(mod);
    if (tsc) LLVMOrcDisposeThreadSafeContext(tsc);
    jit_free(jit);
    return NULL;
}

void *jit_entry(Jit *jit) { return jit->entry; }

void *jit_lookup(Jit *jit, const char *name) {
    LLVMOrcJITTargetAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit->lljit, &addr, name);
    if (err) {
        LLVMConsumeError(err);
        return NULL;
    }
    return (void *)(uintptr_t)addr;
}

void jit_free(Jit *jit) {
    if (!jit) return;
    if (jit->lljit) LLVMOrcDisposeLLJIT(jit->lljit);
    free(jit);
}

bool cg_write_object(LLVMModuleRef mod, int opt_level, const char *path, Diag *diag) {
    if (!cg_optimize(mod, opt_level, diag)) return false;
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, true);
    if (!tm) return false;
    char *err = NULL;
    bool ok = !LLVMTargetMachineEmitToFile(tm, mod, (char *)path, LLVMObjectFile, &err);
    if (!ok) {
        diag_error_noloc(diag, "cannot write object file %s: %s", path, err ? err : "unknown error");
        LLVMDisposeMessage(err);
    }
    LLVMDisposeTargetMachine(tm);
    return ok;
}
