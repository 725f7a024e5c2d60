/* jit.c — native code through ORC LLJIT. The module is built in the JIT's thread-safe
 * context, optimized for the host CPU with the new pass manager, compiled to an object
 * in memory and added to the main JITDylib. The runtime ABI (rt_table) is defined as
 * absolute symbols; libm and other process symbols resolve through a process search
 * generator. Every LLVMErrorRef becomes a diagnostic.
 *
 * Compiled-code cache: with a cache directory, the object is stored under a key that
 * hashes everything it depends on — the unoptimized LLVM module's text (the program,
 * its imports and the compiler's code generation), the optimization level, the LLVM
 * version, this nnqc's build (compiler_build), the host CPU and its features — and a
 * later compile of the same key loads it instead of optimizing and generating code
 * again. A cache file is KEY.o: "NNQJIT2\0",
 * the number of objects (u32), then each object's length (u64) and CRC-32 (u32) and the
 * ELF object itself; it is written to a temporary name and renamed, and one that fails
 * its checks is ignored and replaced. The cache is bounded (JitCache.max_bytes): a hit
 * sets its file's modification time to now, and storing an entry that takes the cache
 * past its bound removes the entries used longest ago (cache_trim).
 *
 * Parallel optimization and code generation: the module's functions are dealt to
 * partitions (a function with the callees it may inline), and each partition is
 * optimized and becomes an object of its own on a thread of its own (see
 * compile_objects). NNQ_JITDUMP=1 names the generated functions for perf (perf_layer). */
#include <pthread.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <zlib.h>

#include "codegen.h"
#include "nnq_rt.h"
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

static void init_llvm(void) {
    static bool done;
    if (done) return;
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    /* No vectorized epilogue after a vectorized loop (its remainder runs scalar): the
     * kernels' loops run over blocks of 256, so the epilogue was code to compile that
     * hardly ran (a tenth of the binary PMF MLP's LLVM time at AVX-512 width). Parsed
     * once per process. No vector math library: generated code calls no libm function
     * (exp and log are inline code, codegen.c), so no loop's bits depend on one. */
    const char *argv[] = {"nnqc", "-enable-epilogue-vectorization=false"};
    LLVMParseCommandLineOptions(2, argv, NULL);
    done = true;
}

/* The CPU and features code is generated for: the host's, or for objects (a trainer
 * nnqc builds, --emit=obj or asm) and where the runtime's instruction set is held below
 * the CPU's (nnq_isa_held: $NNQ_ISA), the generic x86-64 level of that set
 * (nnq_isa_level): x86-64-v4 (AVX-512 F, BW, CD, DQ, VL) for avx512, x86-64-v3 (AVX2,
 * FMA, BMI2...) for avx2, x86-64 (SSE2) for portable, so the code runs on any such CPU
 * (a built trainer checks for its level as it starts; tune_for_host keeps this CPU's
 * tuning where the level is its own). Part of the cache key. Free both
 * with LLVMDisposeMessage. */
static void host_target(char **cpu, char **features, bool for_object) {
    if (for_object || nnq_isa_held()) {
        *cpu = LLVMCreateMessage(nnq_isa_level_name(nnq_isa_level()));
        *features = LLVMCreateMessage("");
    } else {
        *cpu = LLVMGetHostCPUName();
        *features = LLVMGetHostCPUFeatures();
    }
}

/* Objects for this CPU's own level (not held by $NNQ_ISA) keep the tuning LLVM has for
 * it (instruction scheduling, preferred vector width: its host CPU name, "generic" for a
 * CPU newer than LLVM) through each function's "tune-cpu": x86-64-v4's own tuning cost a
 * built MLP trainer 2-4% against the host's code (speed-log.md). */
static void tune_for_host(LLVMModuleRef mod) {
    if (nnq_isa_held()) return;
    char *host = LLVMGetHostCPUName();
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (LLVMCountBasicBlocks(f) > 0) LLVMAddTargetDependentFunctionAttr(f, "tune-cpu", host);
    LLVMDisposeMessage(host);
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
    char *cpu, *features;
    host_target(&cpu, &features, for_object);
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

/* The optimization pipeline at opt_level, for tm's target (the module has its layout).
 * Returns NULL, or LLVM's message (LLVMDisposeErrorMessage). */
static char *run_passes(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level) {
    if (opt_level <= 0) return NULL;
    char passes[32];
    snprintf(passes, sizeof passes, "default<O%d>", opt_level > 3 ? 3 : opt_level);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
    /* Below -O3, loops are vectorized but neither interleaved nor unrolled. The
     * generated loops stream over memory with no loop-carried chain (no reassociation,
     * so no vectorized float reductions): unrolled copies of their bodies did not make
     * the kernels faster but were a tenth of the binary PMF MLP's LLVM time. The fused
     * kernels' loops ask for interleaving themselves (loop metadata: target_cpu.c,
     * KERNEL_INTERLEAVE), which the vectorizer honours with it off here. */
    LLVMPassBuilderOptionsSetLoopUnrolling(opts, opt_level >= 3);
    LLVMPassBuilderOptionsSetLoopInterleaving(opts, opt_level >= 3);
    LLVMErrorRef err = LLVMRunPasses(mod, passes, tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    return err ? LLVMGetErrorMessage(err) : NULL;
}

bool cg_optimize(LLVMModuleRef mod, int opt_level, Diag *diag) {
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, false);
    if (!tm) return false;
    set_target(mod, tm);
    char *err = run_passes(mod, tm, opt_level);
    if (err) {
        diag_error_noloc(diag, "internal compiler error: optimizing: %s", err);
        LLVMDisposeErrorMessage(err);
    }
    LLVMDisposeTargetMachine(tm);
    return !err;
}

/* ---- the compiled-code cache ---- */

static const char cache_magic[8] = "NNQJIT2";

enum { MAX_PARTS = CG_MAX_OBJECTS }; /* objects of one program: partitions of its code */

/* This nnqc's build, for the key: the size and modification time of its executable.
 * Code generation, partitioning and the rules for which symbols an object exports
 * (jit.c) come after the module text the key hashes, so a rebuilt nnqc with the same
 * version and LLVM could otherwise load objects an earlier build made: self-consistent,
 * but not what this build makes (on 2026-12-07 a rebuilt nnqc whose -O0 objects failed
 * to link passed the tests from the cache its predecessor had filled). "" where unknown. */
static const char *compiler_build(void) {
    static char id[64];
    struct stat st;
    if (!id[0] && stat("/proc/self/exe", &st) == 0)
        snprintf(id, sizeof id, "%lld.%lld.%ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 (long)st.st_mtim.tv_nsec);
    return id;
}

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

static uint64_t get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* The cached objects of `path` into objs; how many (0 when absent or damaged). */
static int cache_load(const char *path, LLVMMemoryBufferRef objs[MAX_PARTS]) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char head[12], part[12];
    int n = 0, count = 0;
    bool ok = fread(head, 1, sizeof head, f) == sizeof head && !memcmp(head, cache_magic, 8);
    if (ok) count = (int)get_le(head + 8, 4);
    ok = ok && count >= 1 && count <= MAX_PARTS;
    while (ok && n < count) {
        ok = fread(part, 1, sizeof part, f) == sizeof part;
        uint64_t len = ok ? get_le(part, 8) : 0;
        uint32_t crc = (uint32_t)get_le(part + 8, 4);
        char *data = ok && len > 0 && len < ((uint64_t)1 << 32) ? malloc(len) : NULL;
        ok = data && fread(data, 1, len, f) == len && crc32(crc32(0, NULL, 0), (const Bytef *)data, (uInt)len) == crc;
        if (ok) objs[n++] = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, len, path);
        free(data);
    }
    ok = ok && fgetc(f) == EOF;
    if (ok) futimens(fileno(f), NULL); /* used now: the last the bound removes (best effort) */
    fclose(f);
    if (!ok) {
        for (int i = 0; i < n; i++) LLVMDisposeMemoryBuffer(objs[i]);
        n = 0;
    }
    return n;
}

typedef struct CacheEntry {
    char *name;
    uint64_t bytes;
    struct timespec used;
} CacheEntry;

static int by_use(const void *a, const void *b) {
    const CacheEntry *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    if (x->used.tv_nsec != y->used.tv_nsec) return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Whether name is a cache entry, KEY.o (KEY: 32 hex digits), or with tmp, the temporary
 * KEY.o.PID.tmp of one being stored. */
static bool cache_name(const char *name, bool tmp) {
    for (int i = 0; i < 32; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
    if (strncmp(name + 32, ".o", 2)) return false;
    size_t n = strlen(name);
    return tmp ? n > 38 && !strcmp(name + n - 4, ".tmp") : n == 34;
}

/* Keeps the cache in dir within max bytes (0: no bound), after `kept` (a file name in it,
 * the entry just stored) was written: past the bound, the entries used longest ago
 * (cache_load touches a hit) are removed until the rest fit, `kept` never. Temporaries
 * older than an hour (a run killed while storing) are removed too. Only this cache's own
 * names are counted or removed. Harmless beside other processes: a file removed here
 * stays readable to whoever opened it, a missing entry is compiled again. */
static void cache_trim(const char *dir, const char *kept, uint64_t max) {
    DIR *d = opendir(dir);
    if (!d) return;
    CacheEntry *e = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (struct dirent *de; (de = readdir(d));) {
        struct stat st;
        bool entry = cache_name(de->d_name, false), tmp = !entry && cache_name(de->d_name, true);
        if ((!entry && !tmp) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (tmp) {
            if (st.st_mtim.tv_sec < now.tv_sec - 3600) unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        total += (uint64_t)st.st_size;
        if (!max || !strcmp(de->d_name, kept)) continue;
        if (n == cap) {
            CacheEntry *grown = realloc(e, sizeof *e * (cap = cap ? 2 * cap : 64));
            if (!grown) break;
            e = grown;
        }
        e[n++] = (CacheEntry){strdup(de->d_name), (uint64_t)st.st_size, st.st_mtim};
    }
    if (n > 1)
        qsort(e, n, sizeof *e, by_use);
    for (size_t i = 0; i < n; i++) {
        if (total > max && e[i].name && unlinkat(dirfd(d), e[i].name, 0) == 0) total -= e[i].bytes;
        free(e[i].name);
    }
    free(e);
    closedir(d);
}

/* Whether the cache directory may be used, made first where missing (mkdir -p): a
 * directory of this user's that no one else may write. Its objects run as native code,
 * so one that others can write would run their code: it is left alone, with a note
 * (once). A directory that cannot be made is skipped silently: the cache only saves time. */
static bool cache_dir_usable(const char *dir) {
    char d[4096];
    int dl = snprintf(d, sizeof d, "%s", dir);
    if (dl < 0 || (size_t)dl >= sizeof d) return false; /* past PATH_MAX: no cache */
    for (char *p = d + 1; *p; p++) /* mkdir -p; EEXIST is fine */
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0777);
            *p = '/';
        }
    mkdir(d, 0700); /* the cache's own directory: private whatever the umask */
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return false;
    const char *why = st.st_uid != geteuid() ? "it belongs to another user"
                      : st.st_mode & (S_IWGRP | S_IWOTH) ? "others may write it (chmod go-w makes it usable)"
                                                        : NULL;
    static _Atomic bool told;
    if (why && !told) {
        told = true;
        fprintf(stderr, "note: not using the compiled-code cache '%s': %s\n", dir, why);
    }
    return !why;
}

/* Stores n objects under `path` (tmp, then rename); a cache that cannot be written is
 * skipped silently (false): it only saves time. */
static bool cache_store(const char *path, LLVMMemoryBufferRef *objs, int n) {
    char tmp[4096];
    int tl = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (tl < 0 || (size_t)tl >= sizeof tmp) return false; /* past PATH_MAX: no cache */
    FILE *f = fopen(tmp, "wb");
    if (!f) return false;
    unsigned char head[12];
    memcpy(head, cache_magic, 8);
    put_le(head + 8, (uint64_t)n, 4);
    bool ok = fwrite(head, 1, sizeof head, f) == sizeof head;
    for (int i = 0; ok && i < n; i++) {
        size_t len = LLVMGetBufferSize(objs[i]);
        const char *data = LLVMGetBufferStart(objs[i]);
        unsigned char part[12];
        put_le(part, len, 8);
        put_le(part + 8, (uint32_t)crc32(crc32(0, NULL, 0), (const Bytef *)data, (uInt)len), 4);
        ok = fwrite(part, 1, sizeof part, f) == sizeof part && fwrite(data, 1, len, f) == len;
    }
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) == 0) return true;
    unlink(tmp);
    return false;
}

/* ---- parallel optimization and code generation ----
 * The module's defined functions are dealt to partitions before they are optimized.
 * A function and the callees it may inline go together (groups of the call graph joined
 * by direct calls of functions without noinline, so the inliner sees every call site
 * it would see in the whole module), groups largest first, each to the partition with
 * the least work so far (function_work; ties to the lowest index). Before dealing,
 * every local variable, and every local function that is used other than by calls
 * from its own partition, becomes an external hidden one (named, if it had none), so
 * that one partition's code can refer to what another defines; the JIT links the
 * objects by those names. The module is written as bitcode and each partition but the
 * first reads it into a context of its own (a context is one thread's at a time),
 * keeps its own functions' bodies (the others' become declarations, and all variables
 * are defined by partition 0 alone), then optimizes and compiles them on its own
 * thread. Without fast-math flags the optimizer keeps every float operation's result,
 * so partitioned code computes the same bits as the whole module's.
 *
 * The orchestration code (optnone, codegen.c's mark_cold: the epoch loop, train_step,
 * eval_batch...; straight-line calls of the kernels, one after another) goes to a
 * partition of its own, compiled without optimization (LLVM's fast instruction selector
 * and register allocator), when there is enough of it (GLUE_MIN_WORK): the optimizing
 * back end spent most of MobileNetV2's code generation on it (cold compile at 1 thread
 * 0.53-0.61 -> 0.39-0.43 s, ResNet-18's 0.33-0.37 -> 0.27-0.31, VGG-16's 0.34-0.47 ->
 * 0.29-0.32). At one thread, the partitions are compiled one after the other. */
enum {
    PART_MIN_WORK = 1500, /* function_work: a partition with less is not worth a thread */
    GLUE_MIN_WORK = 1500, /* orchestration code's function_work: less stays with the rest */
    LOOP_WORK = 5,        /* an optimized function's instruction in a loop, against 1 */
};

typedef struct Part {
    LLVMMemoryBufferRef bitcode; /* the module, read by partitions 1.. */
    const int *owner;            /* the partition of each defined function, in module order */
    int index, opt_level;
    LLVMTargetMachineRef tm;     /* this partition's own */
    LLVMMemoryBufferRef obj;     /* the result, or NULL and an error */
    char *error;
} Part;

/* A value or block and its position: sorted by address, an index of a list. */
typedef struct Indexed {
    const void *p;
    int index;
} Indexed;

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const Indexed *)a)->p, y = (uintptr_t)((const Indexed *)b)->p;
    return x < y ? -1 : x > y;
}

/* list[0..n) by address, for position_of. */
static Indexed *index_of(const void *const *list, int n) {
    Indexed *ix = malloc(sizeof *ix * (size_t)(n > 0 ? n : 1));
    for (int k = 0; k < n; k++) ix[k] = (Indexed){list[k], k};
    qsort(ix, (size_t)n, sizeof *ix, by_address);
    return ix;
}

/* The position of p in the list ix indexes, or -1. */
static int position_of(const Indexed *ix, int n, const void *p) {
    Indexed key = {p, 0};
    const Indexed *hit = p ? bsearch(&key, ix, (size_t)n, sizeof key, by_address) : NULL;
    return hit ? hit->index : -1;
}

/* The defined functions, in module order, and their index. */
typedef struct Fns {
    int n;
    LLVMValueRef *fn;
    Indexed *sorted;
} Fns;

static Fns fns_of(LLVMModuleRef mod) {
    Fns s = {0};
    int cap = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        if (s.n == cap) {
            cap = cap ? 2 * cap : 64;
            s.fn = realloc(s.fn, sizeof *s.fn * (size_t)cap);
        }
        s.fn[s.n++] = f;
    }
    s.sorted = index_of((const void *const *)s.fn, s.n);
    return s;
}

/* The index of defined function f, or -1 (a declaration, or not a function). */
static int fn_index(const Fns *s, LLVMValueRef f) {
    return position_of(s->sorted, s->n, f);
}

static void fns_free(Fns *s) {
    free(s->fn);
    free(s->sorted);
}

static bool has_attribute(LLVMValueRef f, const char *name) {
    return LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMGetEnumAttributeKindForName(name, strlen(name)));
}

/* The work of optimizing and compiling f, estimated: its instructions, those in loops
 * LOOP_WORK times (the vectorizer and the unroller multiply them) unless f is optnone.
 * A loop is taken to be the blocks from a branch's target to the branch, in layout
 * order, when the target comes first (code generation lays each loop out so). */
static int64_t function_work(LLVMValueRef f) {
    unsigned nb = LLVMCountBasicBlocks(f);
    if (nb == 0) return 0;
    int weight = has_attribute(f, "optnone") ? 1 : LOOP_WORK;
    LLVMBasicBlockRef *blocks = malloc(sizeof *blocks * nb);
    LLVMGetBasicBlocks(f, blocks);
    Indexed *ix = index_of((const void *const *)blocks, (int)nb);
    int64_t *count = calloc(nb, sizeof *count);
    int *depth = calloc((size_t)nb + 1, sizeof *depth); /* +1 at a loop's first block, -1 after its last */
    for (unsigned b = 0; b < nb; b++) {
        for (LLVMValueRef i = LLVMGetFirstInstruction(blocks[b]); i; i = LLVMGetNextInstruction(i)) count[b]++;
        LLVMValueRef term = LLVMGetBasicBlockTerminator(blocks[b]);
        for (unsigned s = 0, ns = term ? LLVMGetNumSuccessors(term) : 0; s < ns; s++) {
            int h = position_of(ix, (int)nb, LLVMGetSuccessor(term, s));
            if (h >= 0 && h <= (int)b) {
                depth[h]++;
                depth[b + 1]--;
            }
        }
    }
    int64_t work = 0;
    int in_loop = 0;
    for (unsigned b = 0; b < nb; b++) {
        in_loop += depth[b];
        work += in_loop > 0 ? weight * count[b] : count[b];
    }
    free(depth);
    free(count);
    free(ix);
    free(blocks);
    return work;
}

/* Union-find over the defined functions: the representative of k's group. */
static int group_of(int *up, int k) {
    while (up[k] != k) k = up[k] = up[up[k]];
    return k;
}

typedef struct Work {
    int64_t work;
    int index;
} Work;

static int by_work_desc(const void *a, const void *b) {
    const Work *x = a, *y = b;
    if (x->work != y->work) return x->work > y->work ? -1 : 1;
    return x->index - y->index;
}

/* The partition of each defined function into *owner (malloc'd, in module order);
 * returns the number of partitions: at most `threads` (<= 0: one per usable CPU) and
 * MAX_PARTS, and PART_MIN_WORK each; skip_glue: the orchestration code counts for no
 * work (it goes to a partition of its own after). */
static int assign_parts(const Fns *s, int threads, bool skip_glue, int **owner) {
    if (threads <= 0) threads = nnq_cpus_usable();
    int n = s->n, m = n > 0 ? n : 1;
    int *up = malloc(sizeof *up * (size_t)m);
    Work *group = calloc((size_t)m, sizeof *group); /* by representative */
    int64_t total = 0;
    for (int k = 0; k < n; k++) up[k] = k;
    for (int k = 0; k < n; k++) {
        for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(s->fn[k]); b; b = LLVMGetNextBasicBlock(b))
            for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) {
                int j = LLVMIsACallInst(i) ? fn_index(s, LLVMGetCalledValue(i)) : -1;
                if (j >= 0 && !has_attribute(s->fn[j], "noinline")) up[group_of(up, j)] = group_of(up, k);
            }
    }
    for (int k = 0; k < n; k++) {
        int64_t w = skip_glue && has_attribute(s->fn[k], "optnone") ? 0 : function_work(s->fn[k]);
        group[k].index = k;
        group[group_of(up, k)].work += w;
        total += w;
    }
    int64_t parts = total / PART_MIN_WORK;
    if (parts > threads) parts = threads;
    if (parts > MAX_PARTS) parts = MAX_PARTS;
    if (parts > n) parts = n;
    if (parts < 1) parts = 1;
    int *gpart = calloc((size_t)m, sizeof *gpart);
    qsort(group, (size_t)n, sizeof *group, by_work_desc);
    int64_t load[MAX_PARTS] = {0};
    for (int k = 0; k < n; k++) {
        if (group_of(up, group[k].index) != group[k].index) continue;
        int best = 0;
        for (int p = 1; p < parts; p++)
            if (load[p] < load[best]) best = p;
        gpart[group[k].index] = best;
        load[best] += group[k].work;
    }
    *owner = calloc((size_t)m, sizeof **owner);
    for (int k = 0; k < n; k++) (*owner)[k] = gpart[group_of(up, k)];
    free(gpart);
    free(group);
    free(up);
    return (int)parts;
}

/* The orchestration code's work (its optnone functions'). */
static int64_t glue_work(const Fns *s) {
    int64_t work = 0;
    for (int k = 0; k < s->n; k++)
        if (has_attribute(s->fn[k], "optnone")) work += function_work(s->fn[k]);
    return work;
}

static bool local_constant(LLVMValueRef g) {
    LLVMLinkage l = LLVMGetLinkage(g);
    return LLVMIsGlobalConstant(g) && !LLVMIsDeclaration(g) && (l == LLVMInternalLinkage || l == LLVMPrivateLinkage);
}

/* Whether `user` of a function of partition p (or of a constant that holds its
 * address) takes the function outside p: an instruction of another partition, a
 * variable other than a local constant, or a constant so used; depth bounds the walk
 * (deeper: taken as outside). */
static bool user_across(const Fns *s, const int *owner, int p, LLVMValueRef user, int depth) {
    if (LLVMIsAInstruction(user)) {
        int fn = fn_index(s, LLVMGetBasicBlockParent(LLVMGetInstructionParent(user)));
        return fn < 0 || owner[fn] != p;
    }
    bool held = LLVMIsAGlobalVariable(user) ? local_constant(user) : LLVMIsAConstant(user) && !LLVMIsAGlobalValue(user);
    if (!held || depth > 8) return true;
    for (LLVMUseRef u = LLVMGetFirstUse(user); u; u = LLVMGetNextUse(u))
        if (user_across(s, owner, p, LLVMGetUser(u), depth + 1)) return true;
    return false;
}

/* Whether some use of function k is other than a call from its own partition, or a
 * local constant's (codegen.c's tables of kernels) used only there. */
static bool used_across(const Fns *s, const int *owner, int k) {
    LLVMValueRef f = s->fn[k];
    for (LLVMUseRef u = LLVMGetFirstUse(f); u; u = LLVMGetNextUse(u)) {
        LLVMValueRef user = LLVMGetUser(u);
        if (LLVMIsAInstruction(user)) { /* a call of f, f not among its arguments */
            if (!LLVMIsACallInst(user) || LLVMGetCalledValue(user) != f) return true;
            for (unsigned a = 0, na = LLVMGetNumArgOperands(user); a < na; a++)
                if (LLVMGetOperand(user, a) == f) return true;
        }
        if (user_across(s, owner, owner[k], user, 0)) return true;
    }
    return false;
}

/* Local variables and local functions used across partitions become external hidden
 * ones, named "nnq.local.N" if unnamed. Constants stay local, copied into each
 * partition that uses them (copies of a constant cannot differ), and so do functions
 * only called from their own partition: every symbol one object defines and another
 * references costs the JIT's linker (ORC records each defined symbol's dependence on
 * each symbol its object takes from another): ResNet-18's link of two objects took
 * 40 ms with its 790 constants exposed, 14 ms without (4.5 ms as one object). */
static void expose_locals(LLVMModuleRef mod, const Fns *s, const int *owner) {
    int unnamed = 0;
    for (int pass = 0; pass < 2; pass++)
        for (LLVMValueRef v = pass ? LLVMGetFirstGlobal(mod) : LLVMGetFirstFunction(mod); v;
             v = pass ? LLVMGetNextGlobal(v) : LLVMGetNextFunction(v)) {
            LLVMLinkage l = LLVMGetLinkage(v);
            if (LLVMIsDeclaration(v) || (l != LLVMInternalLinkage && l != LLVMPrivateLinkage)) continue;
            if (pass ? LLVMIsGlobalConstant(v) : !used_across(s, owner, fn_index(s, v))) continue;
            size_t len;
            LLVMGetValueName2(v, &len);
            if (len == 0) {
                char name[32];
                snprintf(name, sizeof name, "nnq.local.%d", unnamed++);
                LLVMSetValueName2(v, name, strlen(name));
            }
            LLVMSetLinkage(v, LLVMExternalLinkage);
            LLVMSetVisibility(v, LLVMHiddenVisibility);
        }
}

/* Function f becomes a declaration: a new one takes its name, calling convention,
 * attributes (the function's, its result's and its parameters': its callers see what
 * they saw) and uses (LLVM's C API cannot delete a body in place). */
static void make_declaration(LLVMModuleRef mod, LLVMValueRef f) {
    size_t len;
    const char *name = LLVMGetValueName2(f, &len);
    char *copy = strndup(name, len);
    LLVMValueRef d = LLVMAddFunction(mod, "", LLVMGlobalGetValueType(f));
    LLVMSetFunctionCallConv(d, LLVMGetFunctionCallConv(f));
    LLVMSetVisibility(d, LLVMGetVisibility(f));
    for (int at = -1; at <= (int)LLVMCountParams(f); at++) { /* -1: the function, 0: the result */
        LLVMAttributeIndex idx = at < 0 ? LLVMAttributeFunctionIndex : (LLVMAttributeIndex)at;
        unsigned count = LLVMGetAttributeCountAtIndex(f, idx);
        LLVMAttributeRef attrs[64];
        if (count == 0 || count > 64) continue;
        LLVMGetAttributesAtIndex(f, idx, attrs);
        for (unsigned a = 0; a < count; a++) LLVMAddAttributeAtIndex(d, idx, attrs[a]);
    }
    LLVMReplaceAllUsesWith(f, d);
    LLVMDeleteFunction(f);
    LLVMSetValueName2(d, copy, len);
    free(copy);
}

/* Whether value v is used by an instruction or a variable, directly or through constant
 * expressions. (A constant expression outlives the instructions that used it: a table's
 * address computed in a function made a declaration still uses the table.) */
static bool in_use(LLVMValueRef v, int depth) {
    for (LLVMUseRef u = LLVMGetFirstUse(v); u; u = LLVMGetNextUse(u)) {
        LLVMValueRef user = LLVMGetUser(u);
        if (LLVMIsAInstruction(user) || LLVMIsAGlobalValue(user) || depth > 8 || in_use(user, depth + 1)) return true;
    }
    return false;
}

/* Keeps partition p's function bodies; outside partition 0, variables become
 * declarations and llvm.* ones (llvm.compiler.used) go; in every partition, so do the
 * local constants that no function of p uses. (Partition 0 kept them until 2026-12-07:
 * with nnq_main's tables of kernel entries, a 1,500-layer model's partition 0 held a
 * table of 12,000 functions the orchestration code's object defines, and the JIT's
 * linker took 485 s over the dependencies, quadratic in them.) */
static void keep_part(LLVMModuleRef mod, const int *owner, int p) {
    int k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod), next; f; f = next) {
        next = LLVMGetNextFunction(f); /* declarations made here go to the end */
        if (LLVMIsDeclaration(f)) continue;
        if (owner[k++] != p) make_declaration(mod, f);
    }
    for (LLVMValueRef g = p != 0 ? LLVMGetFirstGlobal(mod) : NULL, next; g; g = next) {
        next = LLVMGetNextGlobal(g);
        size_t len;
        const char *name = LLVMGetValueName2(g, &len);
        if (len > 5 && !memcmp(name, "llvm.", 5)) {
            LLVMDeleteGlobal(g);
        } else if (!LLVMIsDeclaration(g) && !local_constant(g)) {
            LLVMSetInitializer(g, NULL);
            LLVMSetLinkage(g, LLVMExternalLinkage);
        }
    }
    for (bool again = true; again;) { /* a table's strings go after the table */
        again = false;
        for (LLVMValueRef g = LLVMGetFirstGlobal(mod), next; g; g = next) {
            next = LLVMGetNextGlobal(g);
            if (local_constant(g) && !in_use(g, 0)) {
                LLVMDeleteGlobal(g);
                again = true;
            }
        }
    }
}

/* Partition part's code of mod: its functions kept, optimized and compiled to an object
 * (part->obj), or part->error. */
static void compile_part(Part *part, LLVMModuleRef mod) {
    keep_part(mod, part->owner, part->index);
    char *err = run_passes(mod, part->tm, part->opt_level);
    if (err) {
        part->error = strdup(err);
        LLVMDisposeErrorMessage(err);
        return;
    }
    if (LLVMTargetMachineEmitToMemoryBuffer(part->tm, mod, LLVMObjectFile, &err, &part->obj)) {
        part->obj = NULL;
        if (!part->error) part->error = strdup(err ? err : "unknown error");
    }
    if (err) LLVMDisposeMessage(err);
}

/* A partition's context reports errors here instead of LLVM's default handler, which
 * would print them and exit the process. */
static void part_diagnostic(LLVMDiagnosticInfoRef info, void *arg) {
    Part *part = arg;
    if (LLVMGetDiagInfoSeverity(info) != LLVMDSError || part->error) return;
    char *msg = LLVMGetDiagInfoDescription(info);
    part->error = strdup(msg);
    LLVMDisposeMessage(msg);
}

static void *part_thread(void *arg) {
    Part *part = arg;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(ctx, part_diagnostic, part);
    LLVMModuleRef mod = NULL;
    if (LLVMParseBitcodeInContext2(ctx, part->bitcode, &mod)) {
        if (!part->error) part->error = strdup("reading the module back");
    } else {
        compile_part(part, mod);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    return NULL;
}

/* Optimizes `mod` (its target already set from tm) and compiles it with tm's settings
 * (for_object: a linker's objects, else the JIT's code model) to objects in memory, on
 * up to `threads` threads (<= 0: one per usable CPU), and one more for the orchestration code's
 * partition (its unoptimized compile is short); at one thread, one after the other.
 * Returns how many objects are in objs, 0 after reporting an error. `mod` is left with
 * partition 0's code. */
static int compile_objects(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level, int threads, bool for_object,
                           LLVMMemoryBufferRef objs[MAX_PARTS], Diag *diag) {
    Fns fns = fns_of(mod);
    int *owner;
    bool own = glue_work(&fns) >= GLUE_MIN_WORK; /* the orchestration code in a partition of its own */
    int parts = assign_parts(&fns, threads, own, &owner), glue = -1;
    if (own && parts < MAX_PARTS) {
        glue = parts++;
        for (int k = 0; k < fns.n; k++)
            if (has_attribute(fns.fn[k], "optnone")) owner[k] = glue;
    }
    Part part[MAX_PARTS] = {{0}};
    pthread_t tid[MAX_PARTS];
    bool running[MAX_PARTS] = {false};
    LLVMMemoryBufferRef bitcode = NULL;
    if (parts > 1) {
        expose_locals(mod, &fns, owner);
        bitcode = LLVMWriteBitcodeToMemoryBuffer(mod);
    }
    for (int p = 0; p < parts; p++) { /* target machines first: host_machine reports to diag */
        int level = p == glue ? 0 : opt_level;
        part[p] = (Part){bitcode, owner, p, level, p ? host_machine(diag, level, for_object) : tm, NULL, NULL};
    }
    for (int p = 1; p < parts && threads != 1; p++)
        running[p] = part[p].tm && pthread_create(&tid[p], NULL, part_thread, &part[p]) == 0;
    compile_part(&part[0], mod);
    int n = 0;
    bool ok = true;
    for (int p = 0; p < parts; p++) {
        if (running[p]) pthread_join(tid[p], NULL);
        else if (p > 0 && part[p].tm) part_thread(&part[p]); /* no thread: here, in turn */
        if (!part[p].obj && ok) {
            ok = false;
            if (part[p].tm) diag_error_noloc(diag, "internal compiler error: generating native code: %s", part[p].error);
        }
        if (part[p].obj) objs[n++] = part[p].obj;
        free(part[p].error);
        if (p > 0 && part[p].tm) LLVMDisposeTargetMachine(part[p].tm);
    }
    if (bitcode) LLVMDisposeMemoryBuffer(bitcode);
    fns_free(&fns);
    free(owner);
    if (!ok) {
        for (int i = 0; i < n; i++) LLVMDisposeMemoryBuffer(objs[i]);
        n = 0;
    }
    return n;
}

/* ---- the program's buffers, allocated by the host ----
 * A program's weights, optimizer state and activation arena are zero-initialized globals,
 * hundreds of MiB for the CIFAR examples. Linked from the object, the JIT would zero them
 * with memset before the first instruction runs (34% of VGG-16's start-up was that). So
 * every zero-initialized variable of at least HOST_MIN bytes becomes an external
 * declaration, and the JIT defines it at an address in one anonymous mapping, whose
 * pages the kernel zeroes on first touch. Standalone trainers keep them in .bss, which
 * costs nothing there (codegen.c's trainer_buffers). */
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
        if (!cg_zero_variable(g)) continue;
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

int cg_compile_objects(LLVMModuleRef mod, int opt_level, int threads, LLVMMemoryBufferRef objs[CG_MAX_OBJECTS],
                       Diag *diag) {
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, true);
    if (!tm) return 0;
    set_target(mod, tm);
    tune_for_host(mod);
    uint64_t bytes = 0;
    LLVMTargetDataRef dl = LLVMGetModuleDataLayout(mod);
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g))
        if (LLVMGetLinkage(g) == LLVMCommonLinkage) bytes += LLVMABISizeOfType(dl, LLVMGlobalGetValueType(g));
    int64_t total = nnq_memory_total();
    if (total > 0 && bytes > (uint64_t)total) { /* the trainer's buffers (cg_add_trainer_main) */
        diag_error_noloc(diag,
                         "the program's buffers need %.1f MiB, more than this machine's memory and swap (%.1f MiB): "
                         "Linux would not start a trainer holding them (a smaller `batch` needs less)",
                         (double)bytes / 1048576, (double)total / 1048576);
        LLVMDisposeTargetMachine(tm);
        return 0;
    }
    int n = compile_objects(mod, tm, opt_level, threads, true, objs, diag);
    LLVMDisposeTargetMachine(tm);
    return n;
}

/* NNQ_JITDUMP=1: the JIT loads the objects through RuntimeDyld with LLVM's perf listener,
 * which writes each function's name, address and code to jit-PID.dump (under
 * $JITDUMPDIR/.debug/jit/, else $HOME/.debug/jit/); `perf record -k 1` then
 * `perf inject --jit` name the generated functions in `perf report` (without it they
 * are bare addresses). */
static LLVMOrcObjectLayerRef perf_layer(void *ctx, LLVMOrcExecutionSessionRef es, const char *triple) {
    (void)ctx;
    (void)triple;
    LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener(); /* NULL: LLVM built without it */
    if (perf) LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
    return layer;
}

Jit *jit_compile(const IrModule *m, int opt_level, int threads, bool export_internals, const JitCache *cache,
                 bool *cached, Diag *diag) {
    init_llvm();
    if (cached) *cached = false;
    const char *dump = getenv("NNQ_JITDUMP");
    if (dump && *dump && strcmp(dump, "0") && strcmp(dump, "1")) {
        diag_error_noloc(diag, "NNQ_JITDUMP is \"%s\": expected 0 or 1", dump);
        return NULL;
    }
    bool jitdump = dump && !strcmp(dump, "1");
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
    LLVMMemoryBufferRef objs[MAX_PARTS];
    int nobj = 0;
    char path[4096] = "", fit[256];
    bool fits = nnq_buffers_fit(data_size, fit, sizeof fit); /* known before the compile is spent on it */
    if (!fits) diag_error_noloc(diag, "%s", fit);
    const char *cache_dir = cache && cache->dir && *cache->dir && cache_dir_usable(cache->dir) ? cache->dir : NULL;
    if (fits && cache_dir) {
        char *text = LLVMPrintModuleToString(mod);
        char *cpu, *features;
        host_target(&cpu, &features, false);
        char opt[8], key[33];
        snprintf(opt, sizeof opt, "O%d", opt_level);
        const char *parts[] = {cache_magic, LLVM_VERSION_STRING, compiler_build(), cpu, features, opt, text};
        cache_key(parts, 7, key);
        cg_set_fingerprint(mod, text); /* the text printed for the key serves here too */
        LLVMDisposeMessage(text);
        LLVMDisposeMessage(cpu);
        LLVMDisposeMessage(features);
        if ((size_t)snprintf(path, sizeof path, "%s/%s.o", cache_dir, key) < sizeof path) {
            nobj = cache_load(path, objs);
            if (nobj && cached) *cached = true;
        } else {
            path[0] = 0;
        }
    }
    if (!path[0]) cg_set_fingerprint(mod, NULL); /* no cache: printed for it alone */
    if (!nobj && fits) {
        nobj = compile_objects(mod, tm, opt_level, threads, false, objs, diag);
        if (nobj && path[0] && cache_store(path, objs, nobj)) cache_trim(cache_dir, strrchr(path, '/') + 1, cache->max_bytes);
    }
    LLVMDisposeTargetMachine(tm);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    Jit *jit = NULL;
    int added = 0; /* objects the JIT took */
    if (!nobj) goto fail_vars;

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
    if (jitdump) LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_layer, NULL);
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
    while (added < nobj) /* the JIT takes each buffer, also on failure */
        if (report(diag, LLVMOrcLLJITAddObjectFile(jit->lljit, jd, objs[added++]), "adding an object")) goto fail;
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
    for (int i = added; i < nobj; i++) LLVMDisposeMemoryBuffer(objs[i]);
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

void jit_prefault(Jit *jit) {
    if (jit->data) nnq_prefault(jit->data, jit->data_size);
}

void jit_free(Jit *jit) {
    if (!jit) return;
    if (jit->lljit) LLVMOrcDisposeLLJIT(jit->lljit);
    if (jit->data) munmap(jit->data, jit->data_size);
    free(jit);
}

LLVMMemoryBufferRef cg_emit_native(LLVMModuleRef mod, int opt_level, bool assembly, Diag *diag) {
    tune_for_host(mod); /* the code a built trainer runs */
    if (!cg_optimize(mod, opt_level, diag)) return NULL;
    LLVMTargetMachineRef tm = host_machine(diag, opt_level, true);
    if (!tm) return NULL;
    char *err = NULL;
    LLVMMemoryBufferRef buf = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, assembly ? LLVMAssemblyFile : LLVMObjectFile, &err, &buf)) {
        diag_error_noloc(diag, "cannot generate %s: %s", assembly ? "assembly" : "an object file", err ? err : "LLVM gave no reason");
        buf = NULL;
    }
    if (err) LLVMDisposeMessage(err);
    LLVMDisposeTargetMachine(tm);
    return buf;
}
