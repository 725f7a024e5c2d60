/* source.h — source files held whole in memory, and locations in them.
 * A SourceFile's text is NUL-terminated (the lexer's sentinel) and lives as long as
 * the Arena it was loaded into. SrcLoc.file may be NULL for "no location". */
#ifndef NNQ_SOURCE_H
#define NNQ_SOURCE_H

#include <stddef.h>

#include "arena.h"

typedef struct Diag Diag;

typedef struct SourceFile {
    const char *path; /* as given by the user, used in messages */
    const char *text; /* len bytes plus a NUL */
    size_t len;
} SourceFile;

typedef struct SrcLoc {
    const SourceFile *file;
    int line; /* 1-based */
    int col;  /* 1-based, in bytes */
} SrcLoc;

/* NULL after reporting "nnqc: error: cannot read PATH: reason" to diag. A file that
 * holds a NUL byte is rejected with a located error. */
SourceFile *source_load(Arena *arena, const char *path, Diag *diag);
SourceFile *source_from_string(Arena *arena, const char *path, const char *text);

#endif
