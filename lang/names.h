/* names.h — an index of names: each name to an int, found in constant time (open
 * addressing, FNV-1a, at most half full, grown by doubling in an Arena).
 *
 * Requires: arena.h; the names themselves live as long as the index (it keeps the
 * pointers). Provides the compiler's tables of names: the program's one namespace
 * (compiler/check.c: label sets, projections, models, blocks, data sets) and a model's
 * names in sight (compiler/lower.c). Both compared each name with every earlier one
 * before (2026-12-07: a file of 50,000 label sets took 21 s to check). */
#ifndef NNQ_NAMES_H
#define NNQ_NAMES_H

#include "arena.h"

typedef struct NameSlot {
    const char *name; /* NULL: an empty slot */
    int value;
} NameSlot;

typedef struct NameIndex {
    Arena *arena;     /* where the slots grow; set before the first names_at */
    NameSlot *slot;   /* [cap], cap a power of 2 (0: none yet) */
    int n, cap;
} NameIndex;

/* The value of `name`, or NULL where it has none. */
const int *names_find(const NameIndex *ix, const char *name);
/* The value of `name`, made (-1) where it has none. */
int *names_add(NameIndex *ix, const char *name);

#endif
