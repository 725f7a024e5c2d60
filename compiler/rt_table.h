/* rt_table.h — the runtime ABI (runtime/abi.def) as a table: name, address, LLVM
 * parameter codes. The code generator declares functions from it; the JIT defines
 * their addresses from it. */
#ifndef NNQ_RT_TABLE_H
#define NNQ_RT_TABLE_H

#include <string.h>

enum { RT_V, RT_I32, RT_I64, RT_F32, RT_F64, RT_P };

/* The most parameters a runtime function has (rt_table.c checks every row). */
enum { RT_MAX_ARGS = 24 };

typedef struct RtFn {
    const char *name;
    void *addr;
    int ret;
    int nargs;
    const int *args;
} RtFn;

extern const RtFn rt_table[];
extern const int rt_table_count;

#endif
