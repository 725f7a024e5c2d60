/* isa.c — the vector instruction set nnq's code runs: the widest this CPU has, or a
 * narrower one where $NNQ_ISA asks for it, never a wider one.
 *
 * Requires: the CPU's feature flags (__builtin_cpu_supports).
 * Provides: rt_isa (the level, read on every call), rt_isa_kernels (the same, read once:
 *   the dispatched kernels' choice; rt_isa_reset reads it again, for tests that change
 *   $NNQ_ISA), nnq_isa (its name, for the compiler's target features), rt_cpu_lanes (a
 *   kernel family's lanes at that level); nnq_isa_level (the x86-64 level, v4, v3 or
 *   baseline, that a trainer nnqc builds is compiled for: the widest this CPU runs whole
 *   within that set) and nnq_isa_level_check (a built trainer's first step: whether this
 *   CPU runs it, else a message). conv_dnnl.c and conv_xsmm.c hand the level to oneDNN
 *   and LIBXSMM, which choose their own kernels.
 *
 * One knob for every layer, so an AVX-512 machine can run what an AVX2-only one runs:
 * the runtime's kernels (the dispatched ones: RT_ISA_DISPATCH, gemm.c's dot kernel,
 * chan.c's sums, infer.c's decoding), the code nnqc generates (jit.c strips the wider
 * features), and oneDNN's and LIBXSMM's kernels. OpenBLAS picks its kernels when it
 * loads, before any of this runs: it takes $OPENBLAS_CORETYPE (bench/run --isa sets
 * both). A value that names no level is an error, not ignored: a benchmark run on the
 * wrong instructions would say nothing true. */
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

/* $NNQ_ISA's names of the levels, narrowest first. */
static const char *const levels[] = {[RT_ISA_PORTABLE] = "portable", [RT_ISA_AVX2] = "avx2", [RT_ISA_AVX512] = "avx512"};

/* The widest level this CPU runs. AVX2 comes with FMA on every CPU that has it and nnq's
 * AVX2 kernels use both (x86-64-v3). */
static RtIsa cpu_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return RT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return RT_ISA_AVX2;
    return RT_ISA_PORTABLE;
}

RtIsa rt_isa(void) {
    RtIsa cap = RT_ISA_AVX512, cpu = cpu_level();
    const char *want = getenv("NNQ_ISA");
    if (want && *want) {
        int k = RT_ISA_AVX512;
        while (k >= 0 && strcmp(want, levels[k])) k--;
        if (k < 0) {
            fprintf(stderr, "nnq: error: NNQ_ISA is \"%s\": expected avx512, avx2 or portable\n", want);
            exit(2);
        }
        cap = (RtIsa)k;
    }
    return cap < cpu ? cap : cpu;
}

bool nnq_isa_held(void) {
    return rt_isa() < cpu_level();
}

static _Atomic int kernels_isa = -1; /* -1: not read yet */

RtIsa rt_isa_kernels(void) {
    int isa = kernels_isa;
    if (isa < 0) kernels_isa = isa = (int)rt_isa();
    return (RtIsa)isa;
}

void rt_isa_reset(void) {
    kernels_isa = -1;
}

const char *nnq_isa(void) {
    return levels[rt_isa()];
}

/* ---- the x86-64 levels a built trainer's code targets ---- */

/* The features each level adds and code for it may use, as the CPU reports them (LLVM's
 * x86-64-v3 and -v4; below v3, SSE2, which every x86-64 CPU has): bit F_... of a set. */
enum { F_AVX2, F_FMA, F_BMI1, F_BMI2, F_F16C, F_MOVBE, F_LZCNT, F_AVX512F, F_AVX512BW, F_AVX512CD, F_AVX512DQ,
       F_AVX512VL, NFEATURES };
static const struct {
    int level;
    const char *name;
} level_features[NFEATURES] = {
    [F_AVX2] = {1, "avx2"},         [F_FMA] = {1, "fma"},           [F_BMI1] = {1, "bmi1"},
    [F_BMI2] = {1, "bmi2"},         [F_F16C] = {1, "f16c"},         [F_MOVBE] = {1, "movbe"},
    [F_LZCNT] = {1, "lzcnt"},       [F_AVX512F] = {2, "avx512f"},   [F_AVX512BW] = {2, "avx512bw"},
    [F_AVX512CD] = {2, "avx512cd"}, [F_AVX512DQ] = {2, "avx512dq"}, [F_AVX512VL] = {2, "avx512vl"},
};
static const char *const level_names[] = {"x86-64", "x86-64-v3", "x86-64-v4"};
static const char *const level_sets[] = {"SSE2", "AVX2", "AVX-512"};

/* This CPU's features (the vector ones through __builtin_cpu_supports, which also asks
 * whether the OS saves their registers; the three it does not know, from CPUID). */
static unsigned cpu_features(void) {
    __builtin_cpu_init();
    bool has[NFEATURES] = {
        [F_AVX2] = __builtin_cpu_supports("avx2"),         [F_FMA] = __builtin_cpu_supports("fma"),
        [F_BMI1] = __builtin_cpu_supports("bmi"),          [F_BMI2] = __builtin_cpu_supports("bmi2"),
        [F_AVX512F] = __builtin_cpu_supports("avx512f"),   [F_AVX512BW] = __builtin_cpu_supports("avx512bw"),
        [F_AVX512CD] = __builtin_cpu_supports("avx512cd"), [F_AVX512DQ] = __builtin_cpu_supports("avx512dq"),
        [F_AVX512VL] = __builtin_cpu_supports("avx512vl"),
    };
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) has[F_F16C] = c & bit_F16C, has[F_MOVBE] = c & bit_MOVBE;
    if (__get_cpuid(0x80000001, &a, &b, &c, &d)) has[F_LZCNT] = c & bit_LZCNT;
    unsigned bits = 0;
    for (int k = 0; k < NFEATURES; k++) bits |= (unsigned)has[k] << k;
    return bits;
}

const char *rt_isa_missing(int level, unsigned have) {
    for (int k = 0; k < NFEATURES; k++)
        if (level_features[k].level <= level && !(have >> k & 1)) return level_features[k].name;
    return NULL;
}

int nnq_isa_level(void) {
    unsigned have = cpu_features();
    int want = rt_isa() == RT_ISA_AVX512 ? 2 : rt_isa() == RT_ISA_AVX2 ? 1 : 0;
    while (want > 0 && rt_isa_missing(want, have)) want--;
    return want;
}

const char *nnq_isa_level_name(int level) {
    return level_names[level < 0 ? 0 : level > 2 ? 2 : level];
}

bool nnq_isa_level_check(int level, const char *program) {
    unsigned have = cpu_features();
    const char *missing = rt_isa_missing(level, have);
    if (!missing) return true;
    fprintf(stderr,
            "%s: error: this trainer was built for %s CPUs (%s), and this CPU lacks %s: build it again on this "
            "machine, or build it with NNQ_ISA=%s for CPUs like this one\n",
            program, nnq_isa_level_name(level), level_sets[level], missing,
            rt_isa_missing(1, have) ? "portable" : "avx2");
    return false;
}

int rt_cpu_lanes(int lanes) {
    RtIsa isa = rt_isa();
    if (lanes == 0) lanes = isa == RT_ISA_AVX512 ? 16 : isa == RT_ISA_AVX2 ? 8 : 4;
    if ((lanes == 16 && isa < RT_ISA_AVX512) || (lanes == 8 && isa < RT_ISA_AVX2) ||
        (lanes != 16 && lanes != 8 && lanes != 4))
        return 0;
    return lanes;
}
