/* names.c — see names.h. */
#include "names.h"

#include <stdint.h>
#include <string.h>

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot of `name` in slot[0 .. cap), or the empty one where it would go. */
static NameSlot *probe(NameSlot *slot, int cap, const char *name) {
    size_t i = name_hash(name) & (size_t)(cap - 1);
    while (slot[i].name && strcmp(slot[i].name, name)) i = (i + 1) & (size_t)(cap - 1);
    return &slot[i];
}

const int *names_find(const NameIndex *ix, const char *name) {
    if (!ix->cap) return NULL;
    const NameSlot *s = probe(ix->slot, ix->cap, name);
    return s->name ? &s->value : NULL;
}

int *names_add(NameIndex *ix, const char *name) {
    if (2 * (ix->n + 1) > ix->cap) {
        int cap = ix->cap ? 2 * ix->cap : 64;
        NameSlot *slot = arena_alloc(ix->arena, sizeof *slot * (size_t)cap);
        for (int i = 0; i < ix->cap; i++)
            if (ix->slot[i].name) *probe(slot, cap, ix->slot[i].name) = ix->slot[i];
        ix->slot = slot, ix->cap = cap;
    }
    NameSlot *s = probe(ix->slot, ix->cap, name);
    if (!s->name) {
        *s = (NameSlot){name, -1};
        ix->n++;
    }
    return &s->value;
}
