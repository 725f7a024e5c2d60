/* jit.c — native code through ORC LLJIT. The module is built in the JIT's thread-safe
 * context, optimized for the host CPU with the new pass manager, compiled to an object
 * in memory and added to the main JITDylib. The runtime ABI (rt_table) is defined as
 * absolute symbols; libm and other process symbols resolve through a process search
 * generator. Every LLVMErrorRef becomes a diagnostic.
 *
 * Compiled-code cache: with a cache directory, the object is stored under a key that
 * hashes everything it depends on — the unoptimized LLVM module's text (the program,
 * its imports and the compiler's code generation), the optimization level, the LLVM
 * version, the host CPU and its features, the vector math library — and a later compile of the same key loads it
 * instead of optimizing and generating code again. A cache file is KEY.o: "NNQJIT1\0",
 * the payload's length (u64) and CRC-32 (u32), then the ELF object; it is written to a
 * temporary name and renamed, and one that fails its checks is ignored and replaced. */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <zlib.h>

#include "codegen.h"
#include "rt_table.h"

struct Jit {
    LLVMOrcLLJITRef lljit;
    void *entry;
    void *data;       /* the program's zero-initialized buffers (see host_buffers) */
    size_t data_size;
};

static bool report(Diag *diag, LLVMErrorRef err, const char *what) {
    if (!err) return false;
    char *msg = LLVMGetErrorMessage(err);
    diag_error_noloc(diag, "internal compiler error: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

/* With glibc's vector math library loaded, the loop vectorizer maps log in the fused
 * kernels to its SIMD variants (e.g. _ZGVdN8v_logf) instead of scalarizing it. (exp,
 * the one the projections lean on, is inline code: codegen.c's cg_exp_f32.) The JIT
 * resolves the variants through the process search generator. Without libmvec, calls
 * stay scalar. */
static const char *vector_library = ""; /* part of the cache key */

static void init_llvm(void) {
    static bool done;
    if (done) return;
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
#if defined(__x86_64__) && defined(__linux__)
    if (dlopen("libmvec.so.1", RTLD_NOW | RTLD_GLOBAL)) {
        vector_library = "LIBMVEC-X86";
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

/* Gives the module tm's triple and data layout. */
static void set_target(LLVMModuleRef mod, LLVMTargetMachineRef tm) {
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
}

/* The optimization pipeline at opt_level, for tm's target (the module has its layout). */
static bool run_passes(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level, Diag *diag) {
    if (opt_level <= 0) return true;
    char passes[32];
    snprintf(passes, sizeof passes, "default<O%d>", opt_level > 3 ? 3 : opt_level);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
    bool ok = !report(diag, LLVMRunPasses(mod, passes, tm, opts), "optimizing");
    LLVMDisposePassBuilderOptions(opts);
    return ok;
}

bool cg_optimize(LLVMModuleRef mod, int opt_level, Diag *diag) {
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, false);
    if (!tm) return false;
    set_target(mod, tm);
    bool ok = run_passes(mod, tm, opt_level, diag);
    LLVMDisposeTargetMachine(tm);
    return ok;
}

/* ---- the compiled-code cache ---- */

static const char cache_magic[8] = "NNQJIT1";

/* 128 bits of FNV-1a (two lanes, different offsets) over the parts, each ended by NUL. */
static void cache_key(const char *const *parts, int n, char out[33]) {
    static const uint64_t mult[2] = {0x100000001b3ull, 0x9e3779b97f4a7c15ull};
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    for (int i = 0; i < n; i++)
        for (const unsigned char *p = (const unsigned char *)parts[i];; p++) {
            for (int l = 0; l < 2; l++) h[l] = (h[l] ^ *p) * mult[l];
            if (!*p) break;
        }
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h[0], (unsigned long long)h[1]);
}

/* The cached object of `path` as a memory buffer, NULL when absent or damaged. */
static LLVMMemoryBufferRef cache_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[20];
    LLVMMemoryBufferRef buf = NULL;
    if (fread(head, 1, sizeof head, f) == sizeof head && !memcmp(head, cache_magic, 8)) {
        uint64_t len = 0;
        uint32_t crc = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)head[8 + i] << (8 * i);
        for (int i = 0; i < 4; i++) crc |= (uint32_t)head[16 + i] << (8 * i);
        char *data = len > 0 && len < ((uint64_t)1 << 32) ? malloc(len) : NULL;
        if (data && fread(data, 1, len, f) == len && fgetc(f) == EOF &&
            crc32(crc32(0, NULL, 0), (const Bytef *)data, (uInt)len) == crc)
            buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, len, path);
        free(data);
    }
    fclose(f);
    return buf;
}

/* Stores an object under `path` (tmp, then rename); a cache that cannot be written is
 * skipped silently: it only saves time. */
static void cache_store(const char *dir, const char *path, LLVMMemoryBufferRef obj) {
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    for (char *p = d + 1; *p; p++) /* mkdir -p; EEXIST is fine */
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0777);
            *p = '/';
        }
    mkdir(d, 0777);
    size_t len = LLVMGetBufferSize(obj);
    const char *data = LLVMGetBufferStart(obj);
    unsigned char head[20];
    memcpy(head, cache_magic, 8);
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), (const Bytef *)data, (uInt)len);
    for (int i = 0; i < 8; i++) head[8 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    for (int i = 0; i < 4; i++) head[16 + i] = (unsigned char)(crc >> (8 * i));
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    bool ok = fwrite(head, 1, sizeof head, f) == sizeof head && fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

/* Optimizes `mod` (its target already set from tm) and compiles it to an object in
 * memory with tm (the JIT's code model). NULL after reporting an error. */
static LLVMMemoryBufferRef compile_object(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level, Diag *diag) {
    if (!run_passes(mod, tm, opt_level, diag)) return NULL;
    char *err = NULL;
    LLVMMemoryBufferRef obj = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, &obj)) {
        diag_error_noloc(diag, "internal compiler error: generating native code: %s", err ? err : "unknown error");
        LLVMDisposeMessage(err);
        obj = NULL;
    }
    return obj;
}

/* ---- the program's buffers, allocated by the host ----
 * A program's weights, optimizer state and activation arena are zero-initialized globals,
 * hundreds of MiB for the CIFAR examples. Linked from the object, the JIT would zero them
 * with memset before the first instruction runs (34% of VGG-16's start-up was that). So
 * every zero-initialized variable of at least HOST_MIN bytes becomes an external
 * declaration, and the JIT defines it at an address in one anonymous mapping, whose
 * pages the kernel zeroes on first touch. Standalone trainers keep them in .bss, which
 * costs nothing there. */
enum { HOST_MIN = 4096, HOST_ALIGN = 64 };

typedef struct HostVar {
    char *name;
    uint64_t offset;
} HostVar;

/* Turns the module's large zero-initialized variables into declarations; returns them
 * with their offsets in a mapping of *total bytes. */
static HostVar *host_buffers(LLVMModuleRef mod, LLVMTargetDataRef dl, int *count, uint64_t *total) {
    int n = 0, cap = 0;
    HostVar *vars = NULL;
    *total = 0;
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g)) {
        LLVMValueRef init = LLVMGetInitializer(g);
        if (!init || !LLVMIsNull(init) || LLVMIsGlobalConstant(g)) continue;
        uint64_t size = LLVMABISizeOfType(dl, LLVMGlobalGetValueType(g));
        if (size < HOST_MIN) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            vars = realloc(vars, sizeof *vars * (size_t)cap);
        }
        size_t len;
        const char *name = LLVMGetValueName2(g, &len);
        vars[n].name = strndup(name, len);
        vars[n].offset = (*total + HOST_ALIGN - 1) / HOST_ALIGN * HOST_ALIGN;
        *total = vars[n].offset + size;
        n++;
        LLVMSetInitializer(g, NULL);
        LLVMSetLinkage(g, LLVMExternalLinkage);
    }
    *count = n;
    return vars;
}

Jit *jit_compile(const IrModule *m, int opt_level, bool export_internals, const char *cache_dir, bool *cached,
                 Diag *diag) {
    init_llvm();
    if (cached) *cached = false;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = cg_emit_module(m, ctx, export_internals, diag);
    LLVMTargetMachineRef tm = mod ? host_machine(diag, opt_level, false) : NULL;
    if (!tm) {
        if (mod) LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
        return NULL;
    }
    /* one target machine: the layout host_buffers sizes by, the passes, the object */
    set_target(mod, tm);
    LLVMTargetDataRef dl = LLVMGetModuleDataLayout(mod);
    int nvars;
    uint64_t data_size;
    HostVar *vars = host_buffers(mod, dl, &nvars, &data_size);
    LLVMMemoryBufferRef obj = NULL;
    char path[4096] = "";
    if (cache_dir && *cache_dir) {
        char *text = LLVMPrintModuleToString(mod);
        char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
        char opt[8], key[33];
        snprintf(opt, sizeof opt, "O%d", opt_level);
        const char *parts[] = {cache_magic, LLVM_VERSION_STRING, cpu, features, opt, vector_library, text};
        cache_key(parts, 7, key);
        cg_set_fingerprint(mod, text); /* the text printed for the key serves here too */
        LLVMDisposeMessage(text);
        LLVMDisposeMessage(cpu);
        LLVMDisposeMessage(features);
        if ((size_t)snprintf(path, sizeof path, "%s/%s.o", cache_dir, key) < sizeof path) {
            obj = cache_load(path);
            if (obj && cached) *cached = true;
        } else {
            path[0] = 0;
        }
    }
    if (!path[0]) cg_set_fingerprint(mod, NULL); /* no cache: printed for it alone */
    if (!obj) {
        obj = compile_object(mod, tm, opt_level, diag);
        if (obj && path[0]) cache_store(cache_dir, path, obj);
    }
    LLVMDisposeTargetMachine(tm);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    Jit *jit = NULL;
    if (!obj) goto fail_vars;

    jit = calloc(1, sizeof *jit);
    if (data_size > 0) {
        jit->data = mmap(NULL, data_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (jit->data == MAP_FAILED) {
            jit->data = NULL;
            diag_error_noloc(diag, "out of memory: the program's buffers need %.1f MiB", (double)data_size / 1048576);
            goto fail_vars;
        }
        jit->data_size = data_size;
    }
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    if (report(diag, LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb), "detecting the host")) goto fail_builder;
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
    if (report(diag, LLVMOrcCreateLLJIT(&jit->lljit, builder), "creating the JIT")) goto fail;
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit->lljit);
    /* The pair type was renamed after LLVM 14; the pointer typedef exists in all. */
    LLVMOrcCSymbolMapPairs syms = calloc((size_t)(rt_table_count + nvars), sizeof *syms);
    for (int i = 0; i < rt_table_count; i++) {
        syms[i].Name = LLVMOrcLLJITMangleAndIntern(jit->lljit, rt_table[i].name);
        syms[i].Sym.Address = (LLVMOrcJITTargetAddress)(uintptr_t)rt_table[i].addr;
        syms[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        syms[i].Sym.Flags.TargetFlags = 0;
    }
    for (int v = 0; v < nvars; v++) { /* the program's buffers, in the host's mapping */
        LLVMOrcCSymbolMapPairs s = &syms[rt_table_count + v];
        s->Name = LLVMOrcLLJITMangleAndIntern(jit->lljit, vars[v].name);
        s->Sym.Address = (LLVMOrcJITTargetAddress)(uintptr_t)((char *)jit->data + vars[v].offset);
        s->Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported;
        s->Sym.Flags.TargetFlags = 0;
    }
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(syms, (size_t)(rt_table_count + nvars)));
    free(syms);
    if (report(diag, err, "defining runtime symbols")) goto fail;
    LLVMOrcDefinitionGeneratorRef gen;
    if (report(diag, LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit->lljit), NULL, NULL),
               "searching process symbols"))
        goto fail;
    LLVMOrcJITDylibAddGenerator(jd, gen);
    LLVMMemoryBufferRef owned = obj;
    obj = NULL; /* the JIT takes the buffer, also on failure */
    if (report(diag, LLVMOrcLLJITAddObjectFile(jit->lljit, jd, owned), "adding the object")) goto fail;
    LLVMOrcJITTargetAddress addr = 0;
    if (report(diag, LLVMOrcLLJITLookup(jit->lljit, &addr, "nnq_main"), "linking native code")) goto fail;
    jit->entry = (void *)(uintptr_t)addr;
    for (int v = 0; v < nvars; v++) free(vars[v].name);
    free(vars);
    return jit;
fail_builder:
    LLVMOrcDisposeLLJITBuilder(builder);
fail:
fail_vars:
    if (obj) LLVMDisposeMemoryBuffer(obj);
    jit_free(jit);
    for (int v = 0; v < nvars; v++) free(vars[v].name);
    free(vars);
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
    if (jit->data) munmap(jit->data, jit->data_size);
    free(jit);
}

bool cg_write_native(LLVMModuleRef mod, int opt_level, bool assembly, const char *path, Diag *diag) {
    if (!cg_optimize(mod, opt_level, diag)) return false;
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, true);
    if (!tm) return false;
    char *err = NULL;
    LLVMCodeGenFileType kind = assembly ? LLVMAssemblyFile : LLVMObjectFile;
    bool ok;
    if (path) {
        ok = !LLVMTargetMachineEmitToFile(tm, mod, (char *)path, kind, &err);
    } else { /* standard output */
        LLVMMemoryBufferRef buf = NULL;
        ok = !LLVMTargetMachineEmitToMemoryBuffer(tm, mod, kind, &err, &buf);
        if (ok) {
            size_t n = LLVMGetBufferSize(buf);
            ok = fwrite(LLVMGetBufferStart(buf), 1, n, stdout) == n && fflush(stdout) == 0;
            if (!ok) err = NULL;
            LLVMDisposeMemoryBuffer(buf);
        }
    }
    if (!ok) {
        diag_error_noloc(diag, "cannot write %s %s: %s", assembly ? "assembly" : "object file", path ? path : "to standard output",
                         err ? err : "write error");
        if (err) LLVMDisposeMessage(err);
    }
    LLVMDisposeTargetMachine(tm);
    return ok;
}
