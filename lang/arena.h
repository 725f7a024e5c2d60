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
/* Room for element n of an array of n elements of `size` bytes that only ever grows by
 * this call, from NULL: arr itself, or where n is 0 or a power of two from 4 a copy with
 * twice the room. n appends cost O(n) (growing by one element at a time, a program of
 * 1,500 layers copied its parameter table 3,000 times, 0.7 GB, in 3 s). */
void *arena_grow(Arena *arena, void *arr, size_t n, size_t size);
char *arena_strdup(Arena *arena, const char *s);
char *arena_strndup(Arena *arena, const char *s, size_t n);
char *arena_printf(Arena *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
