/* isa.c — the vector instruction set nnq's code runs: the widest this CPU has, or a
 * narrower one where $NNQ_ISA asks for it, never a wider one.
 *
 * Requires: the CPU's feature flags (__builtin_cpu_supports).
 * Provides: rt_isa (the level, read on every call), rt_isa_kernels (the same, read once:
 *   the dispatched kernels' choice; rt_isa_reset reads it again, for tests that change
 *   $NNQ_ISA), nnq_isa (its name, for the compiler's target features), rt_cpu_lanes (a
 *   kernel family's lanes at that level). conv_dnnl.c and conv_xsmm.c hand the level to
 *   oneDNN and LIBXSMM, which choose their own kernels.
 *
 * One knob for every layer, so an AVX-512 machine can run what an AVX2-only one runs:
 * the runtime's kernels (the dispatched ones: RT_ISA_DISPATCH, gemm.c's dot kernel,
 * chan.c's sums, infer.c's decoding), the code nnqc generates (jit.c strips the wider
 * features), and oneDNN's and LIBXSMM's kernels. OpenBLAS picks its kernels when it
 * loads, before any of this runs: it takes $OPENBLAS_CORETYPE (bench/run --isa sets
 * both). A value that names no level is an error, not ignored: a benchmark run on the
 * wrong instructions would say nothing true. */
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

int rt_cpu_lanes(int lanes) {
    RtIsa isa = rt_isa();
    if (lanes == 0) lanes = isa == RT_ISA_AVX512 ? 16 : isa == RT_ISA_AVX2 ? 8 : 4;
    if ((lanes == 16 && isa < RT_ISA_AVX512) || (lanes == 8 && isa < RT_ISA_AVX2) ||
        (lanes != 16 && lanes != 8 && lanes != 4))
        return 0;
    return lanes;
}
