/* lang.h — the nnq front end as a library: lexing and parsing one source file.
 * Requires: a SourceFile (NUL-terminated text). Produces: an AST (ast.h) in `arena`.
 * Imports are not followed here; the checker resolves them. */
#ifndef NNQ_LANG_H
#define NNQ_LANG_H

#include <stdbool.h>
#include <stdio.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"
#include "source.h"

/* The longest identifier, in bytes, and the longest name the IR reader takes: a model's
 * name goes into its model files (names of at most 4096 bytes) and its checkpoints'
 * descriptions. */
#define NNQ_MAX_IDENT 1024

/* Parses a whole file. Returns the AST_PROGRAM node, or NULL when any lexical or
 * syntax error was reported (all of them are reported, with recovery at statement
 * boundaries). */
AstNode *lang_parse(Arena *arena, Diag *diag, const SourceFile *src);

/* `nnqc --emit=tokens`: one token per line, "line:col KIND 'text'"; false on a
 * lexical error (reported to diag). */
/* The i-th punctuation token of tokens.def: its spelling, and *name its dump name
 * (`--emit=tokens`); NULL past the last (tests check the lexer agrees with the table). */
const char *lang_token_punct(int i, const char **name);
bool lang_dump_tokens(const SourceFile *src, Diag *diag, FILE *out);

#endif
