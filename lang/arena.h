/* arena.h — bump allocation by lifetime. Everything allocated from an Arena is freed
 * at once by arena_free. Allocations are zeroed and 16-byte aligned. With
 * NNQ_ARENA_MALLOC defined, each allocation is a separate malloc so ASan sees it. */
#ifndef NNQ_ARENA_H
#define NNQ_ARENA_H

#include <stddef.h>

typedef struct Arena Arena;

Arena *arena_new(void);
void arena_free(Arena *arena); /* NULL is fine */
void *arena_alloc(Arena *arena, size_t size);
/* Grows an array allocated from the arena (old contents copied; old block abandoned). */
void *arena_realloc(Arena *arena, void *old, size_t old_size, size_t new_size);
char *arena_strdup(Arena *arena, const char *s);
char *arena_strndup(Arena *arena, const char *s, size_t n);
char *arena_printf(Arena *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
