/* lexer.h — the re2c lexer of .nnq source (private to lang/; lexer.re implements it).
 *
 * The lexer turns a SourceFile into parser tokens (kinds from the Bison-generated
 * parser.h). Beyond plain tokens it keeps the layout facts the parser and its error
 * messages need:
 *   - NEWLINE is emitted for a line break only outside ( ) and [ ], never before the
 *     first token, and never twice in a row (blank and comment-only lines vanish);
 *   - a stack of open brackets, each `{` classified as a statement block (the body of
 *     a model, block, projection, train or for) or a set literal, with the name of the
 *     declaration it belongs to, so messages can say "the model 'mlp'";
 *   - per token: its bracket depth before/after and the innermost open bracket and
 *     block before it.
 * Lexical errors (unexpected character, unterminated string, invalid number) go to
 * the Diag sink; an unexpected character yields the error token YYUNDEF, an invalid
 * number a usable NUMBER, and an unterminated string a STRING marked `invalid` (the
 * parser treats it as YYUNDEF and recovers).
 *
 * Ownership: a Lexer borrows its SourceFile, Arena and Diag; resolved strings and
 * bracket names are allocated from the arena. Token.text points into the source.
 */
#ifndef NNQ_LEXER_H
#define NNQ_LEXER_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "diag.h"
#include "parser.h"
#include "source.h"

typedef enum BracketKind {
    BRACKET_NONE,      /* "no bracket" in Token.open / Token.block */
    BRACKET_PAREN,     /* ( grouping or tuple */
    BRACKET_CALL,      /* ( of a call; name = callee */
    BRACKET_SQUARE,    /* [ list, index or type dimensions */
    BRACKET_SET,       /* { set literal */
    BRACKET_MODEL,     /* { body of a model; name = model */
    BRACKET_BLOCK,     /* { body of a block; name = block */
    BRACKET_PROJECTION,/* { body of a projection; name = projection */
    BRACKET_TRAIN,     /* { body of a train block; name = model */
    BRACKET_FOR,       /* { body of a for loop */
} BracketKind;

/* ( and [ : line breaks inside them are not NEWLINE tokens. */
static inline bool bracket_is_paren(BracketKind kind) {
    return kind == BRACKET_PAREN || kind == BRACKET_CALL || kind == BRACKET_SQUARE;
}

/* The body of a declaration or for loop: holds statements. */
static inline bool bracket_is_block(BracketKind kind) {
    return kind >= BRACKET_MODEL;
}

typedef struct Bracket {
    BracketKind kind;
    SrcLoc loc;       /* the opening character */
    const char *name; /* see BracketKind; NULL where none */
} Bracket;

typedef struct Token {
    int kind;         /* a token kind of parser.h (TOK_*) */
    SrcLoc loc;
    const char *text; /* the source text of the token (not NUL-terminated) */
    size_t len;
    double num;       /* NUMBER: value */
    bool is_int;      /* NUMBER: written with digits only */
    const char *str;  /* STRING: contents with escapes resolved (arena) */
    bool line_start;  /* first token on its line */
    bool synthetic;   /* made up by the parser's error recovery, not in the source */
    bool unmatched;   /* a closing bracket with no opener of its kind */
    bool invalid;     /* broken beyond use; its lexical error is already reported */
    bool block_brace; /* a { that opens a statement block, or a } that closes one */
    int depth_before; /* open brackets before this token */
    int depth_after;  /* open brackets after this token */
    Bracket open;     /* innermost open bracket before this token (kind NONE: none) */
    Bracket block;    /* innermost open statement block before this token */
} Token;

typedef struct Lexer {
    const SourceFile *src;
    Arena *arena;
    Diag *diag;
    bool quiet;        /* when set, lexical errors are counted but not reported */
    int errors;        /* lexical errors seen, reported or not */
    /* re2c state */
    const unsigned char *cur, *mar, *tok, *end, *line_begin;
    int line;
    /* layout state */
    Bracket *stack;
    int depth, cap;
    int paren_depth;   /* ( and [ on the stack: line breaks inside them are ignored */
    int last_kind;     /* last token produced; 0 before the first */
    const char *last_text; /* its text, for naming the callee of a following '(' */
    size_t last_len;
    bool at_line_start;
    bool operand_done; /* the last token completes an operand (decides '|' and '{') */
    /* the statement being lexed, for classifying its '{' */
    int stmt_kind, stmt_ntoks, stmt_depth;
    const char *stmt_name; /* its second word (the declared name), not NUL-terminated */
    size_t stmt_name_len;
    bool stmt_has_block;
    bool block_assumed; /* lexer_open_missing_block just opened a body */
} Lexer;

void lexer_init(Lexer *lx, const SourceFile *src, Arena *arena, Diag *diag);
Token lexer_next(Lexer *lx);
/* Error recovery: forgets every open bracket and treats `first` (already lexed, a
 * declaration keyword) and `second` as the start of a new top-level statement. */
void lexer_resync(Lexer *lx, const Token *first, const Token *second);

/* Error recovery: forgets the open bracket at stack position `index` (if still open),
 * as if its closer had been written. */
void lexer_forget(Lexer *lx, int index);

/* Error recovery, when the line of a model/block/projection/train/for header ended
 * (the last token lexed is that NEWLINE) before its '{': opens the body as if the '{'
 * had been written, so the lines of the body stay inside it (a '{' that starts the
 * next line is taken as that body's brace). Returns false, doing
 * nothing, when the last statement is not such a header or already has its body. */
bool lexer_open_missing_block(Lexer *lx, SrcLoc loc, Bracket *opened);

/* Name of a token kind in token dumps: "IDENT", "MODEL", "LPAREN", "NEWLINE" ... */
const char *lexer_kind_name(int kind);
/* Words: any keyword; the keywords that start a top-level declaration. */
bool lexer_is_keyword(int kind);
bool lexer_is_decl_keyword(int kind);
/* The character that closes `kind` ('}' for all braces). */
char lexer_closer(BracketKind kind);

#endif
