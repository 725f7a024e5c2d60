/* rt_table.c — the runtime ABI as data for the code generator and the JIT: one entry
 * per row of runtime/abi.def with its LLVM parameter codes and its address. */
#include "rt_table.h"

#include "nnq_rt.h"

enum { V = RT_V, I32 = RT_I32, I64 = RT_I64, F32 = RT_F32, F64 = RT_F64, P = RT_P };

#define UNPAREN(...) __VA_ARGS__
#define NNQ_RT(rc, ret, name, params, codes)                                                       \
    {#name, (void *)&name, rc, (int)(sizeof((const int[]){UNPAREN codes}) / sizeof(int)),         \
     (const int[]){UNPAREN codes}},
const RtFn rt_table[] = {
#include "abi.def"
};
#undef NNQ_RT

const int rt_table_count = (int)(sizeof rt_table / sizeof rt_table[0]);

#define NNQ_RT(rc, ret, name, params, codes)                                                       \
    _Static_assert(sizeof((const int[]){UNPAREN codes}) / sizeof(int) <= RT_MAX_ARGS, #name " has more than RT_MAX_ARGS parameters");
#include "abi.def"
#undef NNQ_RT
