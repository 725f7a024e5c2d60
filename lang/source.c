/* source.c — loading source files whole into an arena (see source.h).
 *
 * Invariants: text[len] == '\0' for every SourceFile made here; a loaded file holds no
 * other NUL byte (the lexer treats NUL as end of input), so one found on load is
 * reported at its line and column and the file is rejected. A leading UTF-8 byte-order
 * mark is dropped on load. */
#include "source.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

/* The largest source file read (a line's columns and a file's offsets are ints). */
#define SOURCE_MAX ((size_t)256 << 20)

/* Reads all of `f` into a malloc'd buffer with a NUL after the last byte, stopping after
 * a NUL byte (the caller reports it: /dev/zero would otherwise be read until memory ran
 * out) or past SOURCE_MAX bytes (*too_big set). */
static char *source_read_all(FILE *f, size_t *len_out, bool *too_big) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (cap - len < 2) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        bool nul = memchr(buf + len, '\0', n) != NULL;
        len += n;
        if (len > SOURCE_MAX) {
            free(buf);
            *too_big = true;
            return NULL;
        }
        if (n == 0 || nul)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

SourceFile *source_load(Arena *arena, const char *path, Diag *diag) {
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_error_noloc(diag, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    errno = 0;
    size_t len = 0;
    bool too_big = false;
    char *buf = source_read_all(f, &len, &too_big);
    int err = errno ? errno : EIO;
    fclose(f);
    if (too_big) {
        diag_error_noloc(diag, "cannot read '%s': it is larger than %zu MiB, the most a source file may hold",
                         path, SOURCE_MAX >> 20);
        return NULL;
    }
    if (!buf) {
        diag_error_noloc(diag, "cannot read '%s': %s", path, strerror(err));
        return NULL;
    }

    /* A UTF-8 byte-order mark (which some editors write first) is not part of the text:
     * dropped, so line 1's columns count from what follows it. */
    size_t bom = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0;
    len -= bom;
    SourceFile *src = arena_alloc(arena, sizeof(SourceFile));
    src->path = arena_strdup(arena, path);
    src->text = arena_strndup(arena, buf + bom, len); /* memcpy: keeps any NUL for the check */
    src->len = len;
    free(buf);

    const char *nul = memchr(src->text, '\0', len);
    if (nul) {
        SrcLoc loc = {src, 1, 1};
        for (const char *p = src->text; p < nul; p++) {
            if (*p == '\n') {
                loc.line++;
                loc.col = 1;
            } else {
                loc.col++;
            }
        }
        diag_error(diag, loc, "file contains a NUL byte; nnq source must be text");
        return NULL;
    }
    return src;
}

SourceFile *source_from_string(Arena *arena, const char *path, const char *text) {
    SourceFile *src = arena_alloc(arena, sizeof(SourceFile));
    src->path = arena_strdup(arena, path);
    src->len = strlen(text);
    src->text = arena_strndup(arena, text, src->len);
    return src;
}
