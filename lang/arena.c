/* arena.c — bump allocator (see arena.h).
 *
 * Invariants: every pointer handed out is 16-byte aligned and zeroed; nothing is freed
 * before arena_free. Normal builds carve allocations out of chunks (64 KiB, or larger
 * for one big request) linked newest-first. With NNQ_ARENA_MALLOC each allocation is
 * its own malloc behind a 16-byte header that links it into the arena, so ASan sees
 * every overflow and use-after-free. arena_realloc never frees the old block. */
#include "arena.h"

#include <assert.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ARENA_ALIGN = 16, ARENA_CHUNK_SIZE = 64 * 1024 };

/* A chunk header (normal builds) or an allocation header (NNQ_ARENA_MALLOC); its size
 * is a multiple of ARENA_ALIGN so the payload behind it stays aligned. */
typedef struct ArenaBlock {
    alignas(ARENA_ALIGN) struct ArenaBlock *next;
    size_t size; /* payload bytes */
} ArenaBlock;

struct Arena {
    ArenaBlock *blocks; /* newest first */
    char *cur;          /* next free byte in blocks (normal builds) */
    char *end;
};

static void *arena_abort_oom(size_t size) {
    /* Out of memory is not a user error the front end can report; treat it as fatal. */
    fprintf(stderr, "nnqc: fatal: out of memory allocating %zu bytes\n", size);
    abort();
}

static ArenaBlock *arena_block_new(size_t payload) {
    if (payload > SIZE_MAX - sizeof(ArenaBlock))
        arena_abort_oom(payload);
    ArenaBlock *block = calloc(1, sizeof(ArenaBlock) + payload);
    if (!block)
        arena_abort_oom(payload);
    block->size = payload;
    return block;
}

Arena *arena_new(void) {
    Arena *arena = calloc(1, sizeof(Arena));
    if (!arena)
        arena_abort_oom(sizeof(Arena));
    return arena;
}

void arena_free(Arena *arena) {
    if (!arena)
        return;
    ArenaBlock *block = arena->blocks;
    while (block) {
        ArenaBlock *next = block->next;
        free(block);
        block = next;
    }
    free(arena);
}

void *arena_alloc(Arena *arena, size_t size) {
    assert(arena);
    if (size == 0)
        size = 1;
#ifdef NNQ_ARENA_MALLOC
    ArenaBlock *block = arena_block_new(size);
    block->next = arena->blocks;
    arena->blocks = block;
    return block + 1;
#else
    size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (rounded < size || (size_t)(arena->end - arena->cur) < rounded) {
        size_t payload = rounded > ARENA_CHUNK_SIZE / 4 ? rounded : ARENA_CHUNK_SIZE;
        ArenaBlock *block = arena_block_new(payload);
        if (payload == ARENA_CHUNK_SIZE) {
            /* A fresh chunk becomes the bump region. */
            block->next = arena->blocks;
            arena->blocks = block;
            arena->cur = (char *)(block + 1);
            arena->end = arena->cur + payload;
        } else {
            /* A big request gets a block of its own; the current chunk stays in use. */
            block->next = arena->blocks ? arena->blocks->next : NULL;
            if (arena->blocks)
                arena->blocks->next = block;
            else
                arena->blocks = block;
            return block + 1;
        }
    }
    void *p = arena->cur;
    arena->cur += rounded;
    return p; /* chunks come from calloc and are never reused: already zero */
#endif
}

void *arena_realloc(Arena *arena, void *old, size_t old_size, size_t new_size) {
    void *p = arena_alloc(arena, new_size);
    if (old)
        memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

void *arena_grow(Arena *arena, void *arr, size_t n, size_t size) {
    if (n == 0)
        return arena_alloc(arena, 4 * size);
    if (n < 4 || (n & (n - 1)))
        return arr;
    return arena_realloc(arena, arr, n * size, 2 * n * size);
}

char *arena_strndup(Arena *arena, const char *s, size_t n) {
    char *p = arena_alloc(arena, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(Arena *arena, const char *s) {
    return arena_strndup(arena, s, strlen(s));
}

char *arena_printf(Arena *arena, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert(n >= 0);
    char *p = arena_alloc(arena, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
