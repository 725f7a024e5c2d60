/* lexer.re — the .nnq lexer (re2c input; see lexer.h for what it tracks and why).
 *
 * The whole file is in memory with a NUL after it: the NUL is the sentinel, so there is
 * no YYFILL, and no rule but the sentinel rule can match a NUL byte. Every byte is
 * matched by some rule (the catch-all yields YYUNDEF). Invariant: each call to
 * lexer_next returns exactly one token and ends with the cursor just past it; the last
 * token is YYEOF, returned again on every later call.
 *
 * Token syntax (the grammar is in parser.y):
 *   identifier  [A-Za-z_][A-Za-z0-9_]*, at most NNQ_MAX_IDENT bytes (keywords are
 *               reserved words of the same shape)
 *   number      1  300  1.0  1.  .5  1e-3  2.5E+4   (is_int when digits only)
 *   string      "..." with escapes \" \\ \n \t, on one line
 *   punctuation ( ) [ ] { } , : . = -> + - * / == != < <= > >= |
 *   comment     # to end of line
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"
#include "lexer.h"

/*!re2c
    re2c:define:YYCTYPE = "unsigned char";
    re2c:define:YYCURSOR = "lx->cur";
    re2c:define:YYMARKER = "lx->mar";
    re2c:yyfill:enable = 0;
    re2c:indent:string = "    ";

    dig   = [0-9];
    exp   = [eE] [+-]? dig+;
    ident = [A-Za-z_] [A-Za-z0-9_]*;
    strch = [^"\\\n\x00] | "\\" [^\n\x00];
    utf8  = [\xc2-\xdf] [\x80-\xbf]
          | "\xe0" [\xa0-\xbf] [\x80-\xbf]
          | [\xe1-\xec\xee\xef] [\x80-\xbf]{2}
          | "\xed" [\x80-\x9f] [\x80-\xbf]
          | "\xf0" [\x90-\xbf] [\x80-\xbf]{2}
          | [\xf1-\xf3] [\x80-\xbf]{3}
          | "\xf4" [\x80-\x8f] [\x80-\xbf]{2};
*/

void lexer_init(Lexer *lx, const SourceFile *src, Arena *arena, Diag *diag) {
    memset(lx, 0, sizeof *lx);
    lx->src = src;
    lx->arena = arena;
    lx->diag = diag;
    lx->cur = lx->line_begin = (const unsigned char *)src->text;
    lx->end = lx->cur + src->len;
    lx->line = 1;
    lx->at_line_start = true;
    assert(*lx->end == '\0');
}

static SrcLoc lexer_loc(const Lexer *lx, const unsigned char *p) {
    SrcLoc loc = {lx->src, lx->line, (int)(p - lx->line_begin) + 1};
    return loc;
}

static void lexer_error(Lexer *lx, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lexer_error(Lexer *lx, SrcLoc loc, const char *fmt, ...) {
    lx->errors++;
    if (lx->quiet)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_error(lx->diag, loc, "%s", msg);
}

/* ---- token kinds as words ---- */

typedef enum TokenClass { TC_VALUE, TC_MARK, TC_DECL, TC_KEYWORD, TC_PUNCT } TokenClass; /* tokens.def's KIND */

static const struct TokenRow {
    int kind;
    const char *name, *spelling;
    TokenClass cls;
} token_rows[] = {
#define TOKEN(NAME, SPELLING, KIND) {TOK_##NAME, #NAME, SPELLING, TC_##KIND},
#include "tokens.def"
#undef TOKEN
};
#define NTOKEN_ROWS (int)(sizeof token_rows / sizeof *token_rows)

static const struct TokenRow *token_row(int kind) {
    for (int i = 0; i < NTOKEN_ROWS; i++)
        if (token_rows[i].kind == kind) return &token_rows[i];
    return NULL;
}

bool lexer_is_decl_keyword(int kind) {
    const struct TokenRow *r = token_row(kind);
    return r && r->cls == TC_DECL;
}

bool lexer_is_keyword(int kind) {
    const struct TokenRow *r = token_row(kind);
    return r && (r->cls == TC_DECL || r->cls == TC_KEYWORD);
}

/* The keyword an identifier spells, else TOK_IDENT. */
static int lexer_keyword(const unsigned char *text, size_t len) {
    for (int i = 0; i < NTOKEN_ROWS; i++) {
        const struct TokenRow *r = &token_rows[i];
        if ((r->cls == TC_DECL || r->cls == TC_KEYWORD) && strlen(r->spelling) == len && !memcmp(r->spelling, text, len))
            return r->kind;
    }
    return TOK_IDENT;
}

const char *lexer_kind_name(int kind) {
    if (kind == TOK_YYEOF) return "EOF";
    if (kind == TOK_NNQ_YYUNDEF) return "ERROR";
    const struct TokenRow *r = token_row(kind);
    assert(r && "token kind without a row in tokens.def");
    return r ? r->name : "?";
}

const char *lang_token_punct(int i, const char **name) {
    for (int k = 0; k < NTOKEN_ROWS; k++) {
        if (token_rows[k].cls != TC_PUNCT) continue;
        if (i-- == 0) {
            *name = token_rows[k].name;
            return token_rows[k].spelling;
        }
    }
    return NULL;
}

char lexer_closer(BracketKind kind) {
    switch (kind) {
    case BRACKET_PAREN:
    case BRACKET_CALL: return ')';
    case BRACKET_SQUARE: return ']';
    case BRACKET_NONE: return '\0';
    default: return '}';
    }
}

static char lexer_opener(BracketKind kind) {
    char c = lexer_closer(kind);
    return c == ')' ? '(' : c == ']' ? '[' : c == '}' ? '{' : '\0';
}

/* ---- the bracket stack and statement tracking ---- */

/* Tokens after which an operand is complete: a following '|' closes a cardinality and
 * a following '{' cannot start a set literal. Declaration keywords count because they
 * double as names (`train mlp on train {`). */
static bool lexer_completes_operand(int kind, bool closing_pipe) {
    switch (kind) {
    case TOK_IDENT: case TOK_NUMBER: case TOK_STRING:
    case TOK_RPAREN: case TOK_RBRACKET: case TOK_RBRACE:
        return true;
    case TOK_PIPE:
        return closing_pipe;
    default:
        return lexer_is_decl_keyword(kind);
    }
}

static void lexer_push(Lexer *lx, BracketKind kind, SrcLoc loc, const char *name) {
    if (lx->depth == lx->cap) {
        int cap = lx->cap ? 2 * lx->cap : 16;
        lx->stack = arena_realloc(lx->arena, lx->stack, (size_t)lx->cap * sizeof(Bracket),
                                  (size_t)cap * sizeof(Bracket));
        lx->cap = cap;
    }
    lx->stack[lx->depth++] = (Bracket){kind, loc, name};
    if (bracket_is_paren(kind))
        lx->paren_depth++;
}

/* Pops up to and including the innermost bracket opened by `open`; a closer with no
 * such opener leaves the stack alone. Returns the popped opener's kind or NONE. */
static BracketKind lexer_pop(Lexer *lx, char open) {
    int i = lx->depth - 1;
    while (i >= 0 && lexer_opener(lx->stack[i].kind) != open)
        i--;
    if (i < 0)
        return BRACKET_NONE;
    BracketKind kind = lx->stack[i].kind;
    while (lx->depth > i) {
        BracketKind k = lx->stack[--lx->depth].kind;
        if (bracket_is_paren(k))
            lx->paren_depth--;
    }
    return kind;
}

static Bracket lexer_innermost_block(const Lexer *lx) {
    for (int i = lx->depth - 1; i >= 0; i--)
        if (bracket_is_block(lx->stack[i].kind))
            return lx->stack[i];
    return (Bracket){0};
}

/* Does the next token begin a statement (or a declaration)? */
static bool lexer_at_stmt_start(const Lexer *lx) {
    if (lx->depth > 0 && !bracket_is_block(lx->stack[lx->depth - 1].kind))
        return false;
    return lx->last_kind == 0 || lx->last_kind == TOK_NEWLINE || lx->last_kind == TOK_LBRACE;
}

static BracketKind lexer_block_kind(int stmt_kind) {
    switch (stmt_kind) {
    case TOK_MODEL: return BRACKET_MODEL;
    case TOK_BLOCK: return BRACKET_BLOCK;
    case TOK_PROJECTION: return BRACKET_PROJECTION;
    case TOK_TRAIN: return BRACKET_TRAIN;
    case TOK_FOR: return BRACKET_FOR;
    default: return BRACKET_SET;
    }
}

/* Builds the token [lx->tok, lx->cur) of `kind` and updates the layout state. */
static Token lexer_make(Lexer *lx, int kind) {
    Token t = {0};
    t.kind = kind;
    t.loc = lexer_loc(lx, lx->tok);
    t.text = (const char *)lx->tok;
    t.len = (size_t)(lx->cur - lx->tok);
    t.line_start = lx->at_line_start;
    t.depth_before = lx->depth;
    t.open = lx->depth ? lx->stack[lx->depth - 1] : (Bracket){0};
    t.block = lexer_innermost_block(lx);
    lx->at_line_start = false;

    if (lexer_at_stmt_start(lx)) {
        lx->stmt_kind = kind;
        lx->stmt_ntoks = 0;
        lx->stmt_depth = lx->depth;
        lx->stmt_name = NULL;
        lx->stmt_has_block = false;
    }
    if (++lx->stmt_ntoks == 2 && (kind == TOK_IDENT || lexer_is_keyword(kind))) {
        lx->stmt_name = t.text;
        lx->stmt_name_len = t.len;
    }

    bool closing_pipe = false;
    bool assumed_brace = lx->block_assumed && kind == TOK_LBRACE;
    lx->block_assumed = false;
    switch (kind) {
    case TOK_LPAREN: {
        /* A '(' right after a name opens a call of that name. */
        bool call = lx->last_kind == TOK_IDENT || lexer_is_decl_keyword(lx->last_kind);
        lexer_push(lx, call ? BRACKET_CALL : BRACKET_PAREN, t.loc,
                   call ? arena_strndup(lx->arena, lx->last_text, lx->last_len) : NULL);
        break;
    }
    case TOK_LBRACKET:
        lexer_push(lx, BRACKET_SQUARE, t.loc, NULL);
        break;
    case TOK_LBRACE: {
        if (assumed_brace) {
            t.block_brace = true; /* the '{' of a body already opened for recovery */
            break;
        }
        /* The first '{' of a model/block/projection/train/for statement, at the
         * statement's own depth and after a complete header, opens its body. */
        BracketKind bk = BRACKET_SET;
        if (!lx->stmt_has_block && lx->depth == lx->stmt_depth &&
            (lx->operand_done || lx->last_kind == TOK_ARROW))
            bk = lexer_block_kind(lx->stmt_kind);
        lx->stmt_has_block |= bk != BRACKET_SET;
        t.block_brace = bk != BRACKET_SET;
        const char *name = NULL;
        if (bk != BRACKET_SET && lx->stmt_name)
            name = arena_strndup(lx->arena, lx->stmt_name, lx->stmt_name_len);
        lexer_push(lx, bk, t.loc, name);
        break;
    }
    case TOK_RPAREN:
    case TOK_RBRACKET:
    case TOK_RBRACE: {
        char open = kind == TOK_RPAREN ? '(' : kind == TOK_RBRACKET ? '[' : '{';
        BracketKind popped = lexer_pop(lx, open);
        t.unmatched = popped == BRACKET_NONE;
        t.block_brace = bracket_is_block(popped);
        break;
    }
    case TOK_PIPE:
        closing_pipe = lx->operand_done;
        break;
    default:
        break;
    }
    t.depth_after = lx->depth;
    lx->operand_done = lexer_completes_operand(kind, closing_pipe);
    lx->last_kind = kind;
    lx->last_text = t.text;
    lx->last_len = t.len;
    return t;
}

void lexer_resync(Lexer *lx, const Token *first, const Token *second) {
    lx->depth = 0;
    lx->paren_depth = 0;
    lx->stmt_kind = first->kind;
    lx->stmt_ntoks = 2;
    lx->stmt_depth = 0;
    lx->stmt_name = second->text;
    lx->stmt_name_len = second->len;
    lx->stmt_has_block = false;
}

void lexer_forget(Lexer *lx, int index) {
    if (index < 0 || index >= lx->depth)
        return;
    if (bracket_is_paren(lx->stack[index].kind))
        lx->paren_depth--;
    memmove(lx->stack + index, lx->stack + index + 1,
            (size_t)(lx->depth - index - 1) * sizeof(Bracket));
    lx->depth--;
}

bool lexer_open_missing_block(Lexer *lx, SrcLoc loc, Bracket *opened) {
    BracketKind kind = lexer_block_kind(lx->stmt_kind);
    if (lx->last_kind != TOK_NEWLINE || kind == BRACKET_SET || lx->stmt_has_block ||
        lx->depth != lx->stmt_depth)
        return false;
    const char *name = lx->stmt_name ? arena_strndup(lx->arena, lx->stmt_name, lx->stmt_name_len)
                                     : NULL;
    lexer_push(lx, kind, loc, name);
    lx->stmt_has_block = true;
    lx->block_assumed = true;
    *opened = lx->stack[lx->depth - 1];
    return true;
}

/* ---- tokens with a value ---- */

/* End of input. Its location is just after the last non-blank character, where a
 * missing '}' or ')' belongs, rather than on an empty line after the file. */
static Token lexer_eof(Lexer *lx) {
    Token t = lexer_make(lx, TOK_YYEOF);
    const unsigned char *begin = (const unsigned char *)lx->src->text, *p = lx->end;
    int line = lx->line;
    while (p > begin && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\r' || p[-1] == '\n')) {
        if (p[-1] == '\n')
            line--;
        p--;
    }
    const unsigned char *bol = p;
    while (bol > begin && bol[-1] != '\n')
        bol--;
    t.loc.line = line;
    t.loc.col = (int)(p - bol) + 1;
    t.len = 0;
    return t;
}

static Token lexer_number(Lexer *lx, bool is_int) {
    Token t = lexer_make(lx, TOK_NUMBER);
    char *text = arena_strndup(lx->arena, t.text, t.len);
    t.num = strtod(text, NULL); /* nnq never calls setlocale: '.' is the decimal point */
    t.is_int = is_int;
    if (isinf(t.num))
        lexer_error(lx, t.loc, "number '%s' is too large", text);
    return t;
}

/* Text that starts like a number but is not one: 1e, 1e+, 1.2.3, 12abc. */
static Token lexer_bad_number(Lexer *lx) {
    Token t = lexer_make(lx, TOK_NUMBER);
    char *text = arena_strndup(lx->arena, t.text, t.len);
    char *end = NULL;
    t.num = strtod(text, &end);
    t.is_int = false;
    size_t digits = strspn(text, "0123456789");
    const char *rest = end;
    if (*rest == 'e' || *rest == 'E') {
        rest++;
        if (*rest == '+' || *rest == '-')
            rest++;
    }
    if (rest != end && (*rest == '\0' || !strchr("0123456789", *rest)))
        lexer_error(lx, t.loc, "invalid number '%s': expected digits after the exponent",
                    text);
    else if (digits > 0 && (size_t)(end - text) == digits &&
             strspn(end, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_") ==
                 strlen(end))
        lexer_error(lx, t.loc,
                    "invalid number '%s': write a space between a number and its unit, "
                    "as in '%.*s %s'",
                    text, (int)digits, text, end);
    else
        lexer_error(lx, t.loc, "invalid number '%s'", text);
    return t;
}

/* A string literal; `closed` is false when a line break or the end of the file came
 * first. The token gets the contents with escapes resolved either way. */
static Token lexer_string(Lexer *lx, bool closed) {
    Token t = lexer_make(lx, TOK_STRING);
    const char *p = t.text + 1, *end = t.text + t.len - (closed ? 1 : 0);
    char *out = arena_alloc(lx->arena, t.len), *o = out;
    int bad_escape = 0;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        if (p + 1 == end)
            break; /* a backslash at the end of an unterminated string */
        switch (p[1]) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        default:
            if (bad_escape++ == 0) { /* one message per string is enough */
                SrcLoc loc = t.loc;
                loc.col += (int)(p - t.text);
                unsigned char c = (unsigned char)p[1];
                if (c > 0x20 && c < 0x7f)
                    lexer_error(lx, loc, "unknown escape sequence '\\%c' in string "
                                "(the escapes are \\\" \\\\ \\n and \\t)", c);
                else
                    lexer_error(lx, loc, "unknown escape sequence in string "
                                "(the escapes are \\\" \\\\ \\n and \\t)");
            }
            *o++ = p[1];
        }
        p += 2;
    }
    *o = '\0';
    t.str = out;
    if (!closed) {
        lexer_error(lx, t.loc, "unterminated string");
        t.invalid = true;
    }
    return t;
}

/* An identifier or keyword (tokens.def). Identifiers name models, data sets and
 * projections in model files, checkpoints and generated symbols: longer than
 * NNQ_MAX_IDENT bytes is an error (the token stays usable, so parsing goes on). */
static Token lexer_ident(Lexer *lx) {
    size_t len = (size_t)(lx->cur - lx->tok);
    Token t = lexer_make(lx, lexer_keyword(lx->tok, len));
    if (len > NNQ_MAX_IDENT)
        lexer_error(lx, t.loc, "identifier of %zu characters; at most %d are allowed", len, NNQ_MAX_IDENT);
    return t;
}

static Token lexer_bad_char(Lexer *lx) {
    Token t = lexer_make(lx, TOK_NNQ_YYUNDEF);
    unsigned char c = (unsigned char)t.text[0];
    if (t.len > 1)
        lexer_error(lx, t.loc, "unexpected character '%.*s'", (int)t.len, t.text);
    else if (c == '\'' || c == '\\')
        lexer_error(lx, t.loc, "unexpected character '\\%c'", c);
    else if (c > 0x20 && c < 0x7f)
        lexer_error(lx, t.loc, "unexpected character '%c'", c);
    else
        lexer_error(lx, t.loc, "unexpected character '\\x%02X'", c);
    return t;
}

/* ---- the scanner ---- */

Token lexer_next(Lexer *lx) {
    for (;;) {
        lx->tok = lx->cur;
        /*!re2c
        "\x00" {
            if (lx->tok < lx->end)
                return lexer_bad_char(lx);
            lx->cur = lx->tok; /* stay on the sentinel: later calls return EOF again */
            return lexer_eof(lx);
        }
        [ \t\r]+         { continue; }
        "#" [^\n\x00]*   { continue; }
        "\n" {
            bool emit = lx->paren_depth == 0 && lx->last_kind != 0 &&
                        lx->last_kind != TOK_NEWLINE;
            Token t = {0};
            if (emit)
                t = lexer_make(lx, TOK_NEWLINE);
            lx->line++;
            lx->line_begin = lx->cur;
            lx->at_line_start = true;
            if (emit)
                return t;
            continue;
        }

        ident        { return lexer_ident(lx); }

        dig+                                          { return lexer_number(lx, true); }
        (dig+ "." dig* | "." dig+) exp? | dig+ exp    { return lexer_number(lx, false); }
        (dig | "." dig) ([A-Za-z0-9_.] | [eE] [+-])*  { return lexer_bad_number(lx); }

        ["] strch* ["]       { return lexer_string(lx, true); }
        ["] strch* "\\"?     { return lexer_string(lx, false); }

        /* punctuation: one rule per PUNCT row of tokens.def, generated into the build
         * directory by lang/CMakeLists.txt */
        !include "punct_rules.re";

        utf8 { return lexer_bad_char(lx); }
        *    { return lexer_bad_char(lx); }
        */
    }
}

/* ---- lang.h ---- */

static void lexer_print_text(FILE *out, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02X", c);
        else
            fputc(c, out);
    }
}

bool lang_dump_tokens(const SourceFile *src, Diag *diag, FILE *out) {
    Arena *arena = arena_new();
    Lexer lx;
    lexer_init(&lx, src, arena, diag);
    Token t;
    do {
        t = lexer_next(&lx);
        fprintf(out, "%d:%d %s '", t.loc.line, t.loc.col, lexer_kind_name(t.kind));
        lexer_print_text(out, t.text, t.len);
        fputs("'\n", out);
    } while (t.kind != TOK_YYEOF);
    bool ok = lx.errors == 0;
    arena_free(arena);
    return ok;
}
