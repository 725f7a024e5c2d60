/* nnq_parse.c — `nnq-parse`, a small driver for testing the front end alone:
 *   nnq-parse tokens FILE   one token per line (lang_dump_tokens)
 *   nnq-parse ast FILE      the AST dump (ast_dump)
 *   nnq-parse check FILE    parse only
 * Output goes to stdout, diagnostics to stderr. Exit status: 0 when the file is fine,
 * 1 when errors were reported, 2 on bad usage. nnqc offers the same through
 * `--emit=tokens|ast` and `check`; this tool exists so lang/ can be tested before and
 * without the rest of the compiler. */
#include <stdio.h>
#include <string.h>

#include "lang.h"

static int nnq_parse_usage(void) {
    fputs("usage: nnq-parse tokens|ast|check FILE\n", stderr);
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return nnq_parse_usage();
    const char *mode = argv[1];
    if (strcmp(mode, "tokens") != 0 && strcmp(mode, "ast") != 0 && strcmp(mode, "check") != 0)
        return nnq_parse_usage();

    Arena *arena = arena_new();
    Diag *diag = diag_new(stderr);
    bool ok = false;
    SourceFile *src = source_load(arena, argv[2], diag);
    if (src && strcmp(mode, "tokens") == 0) {
        ok = lang_dump_tokens(src, diag, stdout);
    } else if (src) {
        AstNode *program = lang_parse(arena, diag, src);
        ok = program != NULL;
        if (ok && strcmp(mode, "ast") == 0)
            ast_dump(program, stdout);
    }
    fflush(stdout);
    diag_free(diag);
    arena_free(arena);
    return ok ? 0 : 1;
}
