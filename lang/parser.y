/* parser.y — the .nnq grammar (GNU Bison >= 3.8): tokens from lexer.re to an AST (ast.h).
 *
 * Layout: newlines end statements; the lexer drops them inside ( ) and [ ] and folds
 * runs of them into one NEWLINE, so the grammar sees at most one NEWLINE in a row.
 *
 *   program    := NL* (decl (NL | EOF))*
 *   decl       := 'import' IDENT ('.' IDENT)*
 *               | 'labels' IDENT '=' expr
 *               | 'projection' IDENT '(' params? ')' ('requires' expr)? '{' pstmt* '}'
 *               | 'model' IDENT '(' params? ')' '->' type '{' mstmt* '}'
 *               | 'block' IDENT '(' params? ')' '{' mstmt* '}'
 *               | 'data' name '=' expr
 *               | 'train' IDENT 'on' name '{' tstmt* '}'
 *   params     := IDENT (':' type)? (',' IDENT (':' type)?)*
 *   type       := IDENT ('[' expr (',' expr)* ']')? | 'labels'
 *   pstmt      := 'aux' IDENT ('[' expr ']')? | 'init' IDENT '=' expr
 *               | 'soft' IDENT '=' expr | 'weight' IDENT '=' expr
 *               | 'update' IDENT 'using' expr | 'move' IDENT '=' expr | 'after' IDENT '=' expr
 *               | 'hard' IDENT '=' expr
 *   mstmt      := IDENT '=' expr | 'return' expr
 *               | 'for' IDENT (',' IDENT)* 'in' expr '{' mstmt* '}'
 *   tstmt      := setting '=' expr | 'evaluate' name ('every' expr)?
 *               | 'save' STRING | 'checkpoint' STRING ('every' expr)? | 'init' 'from' STRING
 *   expr       := 'if' expr NL? 'then' expr NL? 'else' expr | opexpr
 *   opexpr     := binary operators, loosest first: or; and; not (prefix);
 *                 == != < <= > >= (not chainable); + -; * /; prefix - +
 *   postfix    := primary ('[' expr ']')*
 *   primary    := NUMBER | NUMBER IDENT (a quantity: 100 iterations) | STRING | name
 *               | name '(' (arg (',' arg)*)? ')' | '(' expr ')' | '(' expr (',' expr)+ ')'
 *               | '[' (expr (',' expr)*)? ']' | '{' NL? expr (',' NL? expr)* NL? '}'
 *               | '|' expr '|'
 *   arg        := expr | argname '=' expr   (positional arguments first)
 * Statements inside { } are separated by NL; NL after '{' and before '}' is optional.
 * Words: all 32 keywords are reserved, but a setting name may be any keyword but the
 * declaration keywords (import labels projection model block data train), a named
 * argument may be any keyword, and a `name` (data set names, identifiers in
 * expressions, callees) may also be a declaration keyword (`data train = ...`,
 * `like(train)`).
 *
 * Two liberties beyond the original grammar sketch: a line break may come before
 * 'then' and 'else', and a block may hold its statements on the line of its braces
 * (`{ return x }`).
 *
 * Errors: syntax errors are reported by yyreport_syntax_error with the expected tokens
 * grouped into words ("an expression", "an operator") and targeted wording where the
 * context is clear ("expected '=' after setting name 'loss'", "expected ')' to close
 * the call to 'relu'"). Recovery is at statement and declaration boundaries (`error`
 * productions) and skips to the end of the broken statement by the lexer's bracket
 * depths, so a broken `for` header does not leak its body into the enclosing block.
 * Heuristics keep one mistake to one message: a bracket reported as unclosed is
 * forgotten by the lexer; a header line that ends without its '{' gets its body
 * opened for it; brackets still open at the end of the file, or when a declaration
 * keyword starts a line in column 1, are reported once and closed by made-up tokens;
 * errors the lexer reported and errors at made-up tokens are not reported again.
 * The AST of a file with any error is not returned (lang_parse gives NULL).
 */

%define api.pure full
%define api.prefix {nnq_yy}
%define api.token.prefix {TOK_}
%define api.location.type {SrcLoc}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {ParseCtx *ctx}

%code requires {
#include <stdbool.h>

#include "ast.h"
#include "source.h"

typedef struct ParseCtx ParseCtx;

/* The semantic value of a token. */
typedef struct TokVal {
    const char *text; /* names: the word; STRING: contents; NUMBER: as written */
    double num;
    bool is_int;
} TokVal;
}

%union {
    AstNode *node;
    TokVal tok;
}

%code {
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"
#include "lexer.h"

struct ParseCtx {
    Arena *arena;
    Diag *diag;
    const SourceFile *src;
    Lexer lx;
    AstNode *program;
    /* Tokens made up by recovery, handed out before lexing more. */
    Token *queue;
    int qhead, qlen, qcap;
    Token peeked; /* one token read ahead (has_peeked) */
    bool has_peeked;
    /* The last two tokens handed to the parser: la is its lookahead. */
    Token la, prev;
    long la_index;
    /* The statement (or declaration) the lookahead belongs to. */
    bool at_stmt_start;
    Token stmt_first;
    long stmt_first_index;
    int stmt_depth;    /* bracket depth at the start of the current statement */
    int la_stmt_depth; /* ... of the statement the lookahead belongs to */
    /* Error recovery: skip to the end of the statement at depth skip_depth. */
    bool skipping;
    int skip_depth;
    bool resume_pending;
    bool too_deep;     /* an expression nested past AST_MAX_DEPTH was reported */
    long resume_index; /* la_index of the token parsing resumed at */
    long phantom_index; /* la_index of a NEWLINE where a missing '{' was assumed */
};

static int nnq_yylex(NNQ_YYSTYPE *lval, SrcLoc *lloc, ParseCtx *ctx);
static void nnq_yyerror(SrcLoc *lloc, ParseCtx *ctx, const char *msg);

enum { RECOVER_CLEAR = 1, RECOVER_ERROK = 2 };
static int parse_recover(ParseCtx *ctx, bool have_lookahead, bool decl_level);

/* An `error` production: skip the rest of the broken statement or declaration. */
#define PARSE_RECOVER(decl_level)                                                          \
    do {                                                                                   \
        int how_ = parse_recover(ctx, yychar != TOK_NNQ_YYEMPTY, decl_level);              \
        if (how_ & RECOVER_CLEAR)                                                          \
            yyclearin;                                                                     \
        if (how_ & RECOVER_ERROK)                                                          \
            yyerrok;                                                                       \
    } while (0)

/* A construct's location is that of its first symbol. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                                        \
    do {                                                                                   \
        (Cur) = (N) ? YYRHSLOC(Rhs, 1) : YYRHSLOC(Rhs, 0);                                 \
    } while (0)

static AstNode *parse_node(ParseCtx *ctx, AstKind kind, SrcLoc loc, const char *name) {
    AstNode *node = ast_new(ctx->arena, kind, loc);
    node->name = name;
    return node;
}

static AstNode *parse_program(ParseCtx *ctx) {
    return parse_node(ctx, AST_PROGRAM, (SrcLoc){ctx->src, 1, 1}, NULL);
}

/* Appends `kid`; an expression that now nests past AST_MAX_DEPTH is an error (once). */
static AstNode *parse_kid(ParseCtx *ctx, AstNode *parent, AstNode *kid) {
    ast_add_kid(ctx->arena, parent, kid);
    if (parent->depth > AST_MAX_DEPTH && !ctx->too_deep) {
        diag_error(ctx->diag, parent->loc, "this expression nests more than %d levels deep", AST_MAX_DEPTH);
        ctx->too_deep = true;
    }
    return parent;
}

/* AST_LIST nodes double as scratch lists while parsing: appends the kids of `list`
 * (NULLs left by error productions skipped). */
static AstNode *parse_append(ParseCtx *ctx, AstNode *parent, const AstNode *list) {
    for (int i = 0; i < list->nkids; i++)
        if (list->kids[i])
            parse_kid(ctx, parent, list->kids[i]);
    return parent;
}

static AstNode *parse_binary(ParseCtx *ctx, AstOp op, AstNode *lhs, AstNode *rhs) {
    AstNode *node = parse_node(ctx, AST_BINARY, lhs->loc, NULL);
    node->op = op;
    parse_kid(ctx, node, lhs);
    return parse_kid(ctx, node, rhs);
}

static AstNode *parse_unary(ParseCtx *ctx, AstOp op, SrcLoc loc, AstNode *operand) {
    AstNode *node = parse_node(ctx, AST_UNARY, loc, NULL);
    node->op = op;
    return parse_kid(ctx, node, operand);
}

static AstNode *parse_number(ParseCtx *ctx, SrcLoc loc, TokVal tok) {
    AstNode *node = parse_node(ctx, AST_NUMBER, loc, NULL);
    node->num = tok.num;
    node->is_int = tok.is_int;
    return node;
}

/* args := args ',' arg — positional arguments must come before named ones. */
static AstNode *parse_add_arg(ParseCtx *ctx, AstNode *args, AstNode *arg) {
    const AstNode *last = args->nkids ? args->kids[args->nkids - 1] : NULL;
    if (arg->kind != AST_NAMED_ARG && last && last->kind == AST_NAMED_ARG)
        diag_error(ctx->diag, arg->loc,
                   "positional argument after the named argument '%s'; "
                   "positional arguments come first",
                   last->name);
    return parse_kid(ctx, args, arg);
}
}

%token YYEOF 0 "end of file"
/* The tokens: one row each in tokens.def; lang/CMakeLists.txt writes their
 * declarations here (%token <tok> IMPORT "'import'" ...), in the table's order. */
%nnq_tokens%

%left OR
%left AND
%precedence NOT
%nonassoc EQ NE LT LE GT GE
%left PLUS MINUS
%left STAR SLASH
%precedence UNARY

%type <node> decls decl params_opt params param type exprs
%type <node> mbody mstmts mstmt pbody pstmts pstmt tbody tstmts tstmt
%type <node> requires_opt every_opt loopvars
%type <node> expr opexpr postfix primary set_elems args arg
%type <tok> dotted name setting argname

%%

program
    : nls              { ctx->program = parse_program(ctx); }
    | nls decls        { ctx->program = $2; }
    | nls decls nl     { ctx->program = $2; }
    ;

decls
    : decl             { $$ = parse_program(ctx); if ($1) parse_kid(ctx, $$, $1); }
    | decls nl decl    { $$ = $1; if ($3) parse_kid(ctx, $$, $3); }
    ;

nl  : NEWLINE | nl NEWLINE ;
nls : %empty | nls NEWLINE ;
nlo : %empty | NEWLINE ;

decl
    : IMPORT dotted
        { $$ = parse_node(ctx, AST_IMPORT, @1, $2.text); }
    | LABELS IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_LABELS, @1, $2.text), $4); }
    | PROJECTION IDENT LPAREN params_opt RPAREN requires_opt LBRACE pbody RBRACE
        { $$ = parse_node(ctx, AST_PROJECTION, @1, $2.text);
          $4->loc = @3;
          parse_kid(ctx, $$, $4);
          parse_kid(ctx, $$, $6);
          parse_append(ctx, $$, $8); }
    | MODEL IDENT LPAREN params_opt RPAREN ARROW type LBRACE mbody RBRACE
        { $$ = parse_node(ctx, AST_MODEL, @1, $2.text);
          $4->loc = @3;
          parse_kid(ctx, $$, $4);
          parse_kid(ctx, $$, $7);
          parse_append(ctx, $$, $9); }
    | BLOCK IDENT LPAREN params_opt RPAREN LBRACE mbody RBRACE
        { $$ = parse_node(ctx, AST_BLOCK, @1, $2.text);
          $4->loc = @3;
          parse_kid(ctx, $$, $4);
          parse_kid(ctx, $$, NULL);
          parse_append(ctx, $$, $7); }
    | DATA name ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_DATA, @1, $2.text), $4); }
    | TRAIN IDENT ON name LBRACE tbody RBRACE
        { $$ = parse_node(ctx, AST_TRAIN, @1, $2.text);
          parse_kid(ctx, $$, parse_node(ctx, AST_IDENT, @4, $4.text));
          parse_append(ctx, $$, $6); }
    | error
        { $$ = NULL; PARSE_RECOVER(true); }
    ;

dotted
    : IDENT                { $$ = $1; }
    | dotted DOT IDENT
        { $$ = $1; $$.text = arena_printf(ctx->arena, "%s.%s", $1.text, $3.text); }
    ;

/* Words usable as a name: identifiers and the declaration keywords. */
name
    : IDENT | IMPORT | LABELS | PROJECTION | MODEL | BLOCK | DATA | TRAIN
    ;

/* Words usable as a setting name: identifiers and the non-declaration keywords. */
setting
    : IDENT | ON | REQUIRES | AUX | SOFT | WEIGHT | UPDATE | USING | AFTER | HARD | INIT | MOVE
    | RETURN | EVALUATE | EVERY | SAVE | CHECKPOINT | FROM | IF | THEN | ELSE | AND | OR | NOT
    | FOR | IN
    ;

/* Words usable as a named argument: any. */
argname
    : setting | IMPORT | LABELS | PROJECTION | MODEL | BLOCK | DATA | TRAIN
    ;

/* ---- parameters and types ---- */

params_opt
    : %empty               { $$ = parse_node(ctx, AST_PARAMS, @$, NULL); }
    | params
    ;

params
    : param                { $$ = parse_kid(ctx, parse_node(ctx, AST_PARAMS, @1, NULL), $1); }
    | params COMMA param   { $$ = parse_kid(ctx, $1, $3); }
    ;

param
    : IDENT                { $$ = parse_kid(ctx, parse_node(ctx, AST_PARAM, @1, $1.text), NULL); }
    | IDENT COLON type     { $$ = parse_kid(ctx, parse_node(ctx, AST_PARAM, @1, $1.text), $3); }
    ;

type
    : IDENT                { $$ = parse_node(ctx, AST_TYPE, @1, $1.text); }
    | IDENT LBRACKET exprs RBRACKET
        { $$ = parse_append(ctx, parse_node(ctx, AST_TYPE, @1, $1.text), $3); }
    | LABELS               { $$ = parse_node(ctx, AST_TYPE, @1, "labels"); }
    ;

/* ---- projection bodies ---- */

requires_opt
    : %empty               { $$ = NULL; }
    | REQUIRES expr        { $$ = $2; }
    ;

pbody
    : nls                  { $$ = parse_node(ctx, AST_LIST, @$, NULL); }
    | nls pstmts           { $$ = $2; }
    | nls pstmts nl        { $$ = $2; }
    ;

pstmts
    : pstmt                { $$ = parse_kid(ctx, parse_node(ctx, AST_LIST, @1, NULL), $1); }
    | pstmts nl pstmt      { $$ = parse_kid(ctx, $1, $3); }
    ;

pstmt
    : AUX IDENT
        { $$ = parse_kid(ctx, parse_node(ctx, AST_AUX, @1, $2.text), NULL); }
    | AUX IDENT LBRACKET expr RBRACKET
        { $$ = parse_kid(ctx, parse_node(ctx, AST_AUX, @1, $2.text), $4); }
    | INIT IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_INIT, @1, $2.text), $4); }
    | SOFT IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_SOFT, @1, $2.text), $4); }
    | WEIGHT IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_WEIGHT, @1, $2.text), $4); }
    | UPDATE IDENT USING expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_UPDATE, @1, $2.text), $4); }
    | MOVE IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_MOVE, @1, $2.text), $4); }
    | AFTER IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_AFTER, @1, $2.text), $4); }
    | HARD IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_HARD, @1, $2.text), $4); }
    | error
        { $$ = NULL; PARSE_RECOVER(false); }
    ;

/* ---- model and block bodies ---- */

mbody
    : nls                  { $$ = parse_node(ctx, AST_LIST, @$, NULL); }
    | nls mstmts           { $$ = $2; }
    | nls mstmts nl        { $$ = $2; }
    ;

mstmts
    : mstmt                { $$ = parse_kid(ctx, parse_node(ctx, AST_LIST, @1, NULL), $1); }
    | mstmts nl mstmt      { $$ = parse_kid(ctx, $1, $3); }
    ;

mstmt
    : IDENT ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_ASSIGN, @1, $1.text), $3); }
    | RETURN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_RETURN, @1, NULL), $2); }
    | FOR loopvars IN expr LBRACE mbody RBRACE
        { $$ = parse_node(ctx, AST_FOR, @1, NULL);
          parse_kid(ctx, $$, $2);
          parse_kid(ctx, $$, $4);
          parse_append(ctx, $$, $6); }
    | error
        { $$ = NULL; PARSE_RECOVER(false); }
    ;

loopvars
    : IDENT
        { $$ = parse_node(ctx, AST_PARAMS, @1, NULL);
          parse_kid(ctx, $$, parse_kid(ctx, parse_node(ctx, AST_PARAM, @1, $1.text), NULL)); }
    | loopvars COMMA IDENT
        { $$ = parse_kid(ctx, $1, parse_kid(ctx, parse_node(ctx, AST_PARAM, @3, $3.text), NULL)); }
    ;

/* ---- train blocks ---- */

tbody
    : nls                  { $$ = parse_node(ctx, AST_LIST, @$, NULL); }
    | nls tstmts           { $$ = $2; }
    | nls tstmts nl        { $$ = $2; }
    ;

tstmts
    : tstmt                { $$ = parse_kid(ctx, parse_node(ctx, AST_LIST, @1, NULL), $1); }
    | tstmts nl tstmt      { $$ = parse_kid(ctx, $1, $3); }
    ;

tstmt
    : setting ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_SETTING, @1, $1.text), $3); }
    | EVALUATE name every_opt
        { $$ = parse_kid(ctx, parse_node(ctx, AST_EVALUATE, @1, $2.text), $3); }
    | SAVE STRING
        { AstNode *path = parse_node(ctx, AST_STRING, @2, NULL);
          path->str = $2.text;
          $$ = parse_kid(ctx, parse_node(ctx, AST_SAVE, @1, NULL), path); }
    | CHECKPOINT STRING every_opt
        { AstNode *path = parse_node(ctx, AST_STRING, @2, NULL);
          path->str = $2.text;
          $$ = parse_node(ctx, AST_CHECKPOINT, @1, NULL);
          parse_kid(ctx, $$, path);
          parse_kid(ctx, $$, $3); }
    | INIT FROM STRING
        { AstNode *path = parse_node(ctx, AST_STRING, @3, NULL);
          path->str = $3.text;
          $$ = parse_kid(ctx, parse_node(ctx, AST_INIT_FROM, @1, NULL), path); }
    | error
        { $$ = NULL; PARSE_RECOVER(false); }
    ;

every_opt
    : %empty               { $$ = NULL; }
    | EVERY expr           { $$ = $2; }
    ;

/* ---- expressions ---- */

expr
    : IF expr nlo THEN expr nlo ELSE expr
        { $$ = parse_node(ctx, AST_IF, @1, NULL);
          parse_kid(ctx, $$, $2);
          parse_kid(ctx, $$, $5);
          parse_kid(ctx, $$, $8); }
    | opexpr
    ;

opexpr
    : opexpr OR opexpr     { $$ = parse_binary(ctx, AST_OP_OR, $1, $3); }
    | opexpr AND opexpr    { $$ = parse_binary(ctx, AST_OP_AND, $1, $3); }
    | NOT opexpr           { $$ = parse_unary(ctx, AST_OP_NOT, @1, $2); }
    | opexpr EQ opexpr     { $$ = parse_binary(ctx, AST_OP_EQ, $1, $3); }
    | opexpr NE opexpr     { $$ = parse_binary(ctx, AST_OP_NE, $1, $3); }
    | opexpr LT opexpr     { $$ = parse_binary(ctx, AST_OP_LT, $1, $3); }
    | opexpr LE opexpr     { $$ = parse_binary(ctx, AST_OP_LE, $1, $3); }
    | opexpr GT opexpr     { $$ = parse_binary(ctx, AST_OP_GT, $1, $3); }
    | opexpr GE opexpr     { $$ = parse_binary(ctx, AST_OP_GE, $1, $3); }
    | opexpr PLUS opexpr   { $$ = parse_binary(ctx, AST_OP_ADD, $1, $3); }
    | opexpr MINUS opexpr  { $$ = parse_binary(ctx, AST_OP_SUB, $1, $3); }
    | opexpr STAR opexpr   { $$ = parse_binary(ctx, AST_OP_MUL, $1, $3); }
    | opexpr SLASH opexpr  { $$ = parse_binary(ctx, AST_OP_DIV, $1, $3); }
    | MINUS opexpr %prec UNARY { $$ = parse_unary(ctx, AST_OP_NEG, @1, $2); }
    | PLUS opexpr %prec UNARY  { $$ = parse_unary(ctx, AST_OP_PLUS, @1, $2); }
    | postfix
    ;

postfix
    : primary
    | postfix LBRACKET expr RBRACKET
        { $$ = parse_node(ctx, AST_INDEX, @1, NULL);
          parse_kid(ctx, $$, $1);
          parse_kid(ctx, $$, $3); }
    ;

primary
    : NUMBER               { $$ = parse_number(ctx, @1, $1); }
    | NUMBER IDENT         { $$ = parse_kid(ctx, parse_node(ctx, AST_QUANTITY, @1, $2.text),
                                            parse_number(ctx, @1, $1)); }
    | STRING               { $$ = parse_node(ctx, AST_STRING, @1, NULL); $$->str = $1.text; }
    | name                 { $$ = parse_node(ctx, AST_IDENT, @1, $1.text); }
    | name LPAREN RPAREN   { $$ = parse_node(ctx, AST_CALL, @1, $1.text); }
    | name LPAREN args RPAREN
        { $$ = $3; $$->loc = @1; $$->name = $1.text; }
    | LPAREN expr RPAREN   { $$ = $2; }
    | LPAREN expr COMMA exprs RPAREN
        { $$ = parse_kid(ctx, parse_node(ctx, AST_TUPLE, @1, NULL), $2);
          parse_append(ctx, $$, $4); }
    | LBRACKET RBRACKET    { $$ = parse_node(ctx, AST_LIST, @1, NULL); }
    | LBRACKET exprs RBRACKET
        { $$ = $2; $$->loc = @1; }
    | LBRACE nls set_elems nls RBRACE
        { $$ = $3; $$->loc = @1; }
    | PIPE expr PIPE       { $$ = parse_kid(ctx, parse_node(ctx, AST_CARD, @1, NULL), $2); }
    ;

exprs
    : expr                 { $$ = parse_kid(ctx, parse_node(ctx, AST_LIST, @1, NULL), $1); }
    | exprs COMMA expr     { $$ = parse_kid(ctx, $1, $3); }
    ;

set_elems
    : expr                 { $$ = parse_kid(ctx, parse_node(ctx, AST_SET, @1, NULL), $1); }
    | set_elems COMMA nls expr
        { $$ = parse_kid(ctx, $1, $4); }
    ;

args
    : arg                  { $$ = parse_kid(ctx, parse_node(ctx, AST_CALL, @1, NULL), $1); }
    | args COMMA arg       { $$ = parse_add_arg(ctx, $1, $3); }
    ;

arg
    : expr
    | argname ASSIGN expr
        { $$ = parse_kid(ctx, parse_node(ctx, AST_NAMED_ARG, @1, $1.text), $3); }
    ;

%%

/* ---- the token stream: lexer plus recovery ---- */

static void parse_enqueue(ParseCtx *ctx, Token t) {
    if (ctx->qhead + ctx->qlen == ctx->qcap) {
        if (ctx->qhead > 0) {
            memmove(ctx->queue, ctx->queue + ctx->qhead, (size_t)ctx->qlen * sizeof(Token));
            ctx->qhead = 0;
        }
        if (ctx->qlen == ctx->qcap) {
            int cap = ctx->qcap ? 2 * ctx->qcap : 16;
            ctx->queue = arena_realloc(ctx->arena, ctx->queue, (size_t)ctx->qcap * sizeof(Token),
                                       (size_t)cap * sizeof(Token));
            ctx->qcap = cap;
        }
    }
    ctx->queue[ctx->qhead + ctx->qlen++] = t;
}

static Token parse_synthetic(int kind, SrcLoc loc, int depth_after) {
    Token t = {0};
    t.kind = kind;
    t.loc = loc;
    t.text = "";
    t.synthetic = true;
    t.depth_before = kind == TOK_NEWLINE ? depth_after : depth_after + 1;
    t.depth_after = depth_after;
    return t;
}

static Token parse_raw(ParseCtx *ctx) {
    if (ctx->has_peeked) {
        ctx->has_peeked = false;
        return ctx->peeked;
    }
    ctx->lx.quiet = ctx->skipping; /* the rest of a broken statement gets no more errors */
    return lexer_next(&ctx->lx);
}

/* "the model 'mlp'", "the call to 'dense'" ...; NULL for a plain ( or [. */
static const char *parse_bracket_desc(ParseCtx *ctx, const Bracket *b) {
    const char *name = b->name ? b->name : "?";
    switch (b->kind) {
    case BRACKET_CALL: return arena_printf(ctx->arena, "the call to '%s'", name);
    case BRACKET_SET: return "the set literal";
    case BRACKET_MODEL: return arena_printf(ctx->arena, "the model '%s'", name);
    case BRACKET_BLOCK: return arena_printf(ctx->arena, "the block '%s'", name);
    case BRACKET_PROJECTION: return arena_printf(ctx->arena, "the projection '%s'", name);
    case BRACKET_TRAIN: return arena_printf(ctx->arena, "the train block of '%s'", name);
    case BRACKET_FOR: return "the 'for' loop";
    default: return NULL;
    }
}

/* "identifier 'x'", "number", "'model'", "end of line" ... */
static const char *parse_token_desc(ParseCtx *ctx, const Token *t) {
    switch (t->kind) {
    case TOK_IDENT: return arena_printf(ctx->arena, "identifier '%.*s'", (int)t->len, t->text);
    case TOK_NNQ_YYUNDEF: return "an invalid character";
    default: {
        const char *name = yysymbol_name(YYTRANSLATE(t->kind));
        size_t n = strlen(name);
        if (n >= 2 && name[0] == '"')
            return arena_strndup(ctx->arena, name + 1, n - 2);
        return name;
    }
    }
}

/* Reports the innermost bracket still open at `at` (unless a broken statement is being
 * skipped) and queues tokens that close the open brackets the parser knows of. */
static void parse_close_brackets(ParseCtx *ctx, const Token *at) {
    Lexer *lx = &ctx->lx;
    if (lx->depth == 0)
        return;
    if (!ctx->skipping) {
        const Bracket *b = &lx->stack[lx->depth - 1];
        const char *desc = parse_bracket_desc(ctx, b);
        const char *found = parse_token_desc(ctx, at);
        char closer = lexer_closer(b->kind);
        if (desc) {
            diag_error(ctx->diag, at->loc, "expected '%c' to close %s, found %s", closer, desc,
                       found);
            diag_note(ctx->diag, b->loc, "%s opens here", desc);
        } else {
            diag_error(ctx->diag, at->loc, "expected '%c', found %s", closer, found);
            diag_note(ctx->diag, b->loc, "to match this '%c'",
                      b->kind == BRACKET_PAREN ? '(' : '[');
        }
    }
    int limit = ctx->skipping && ctx->skip_depth < lx->depth ? ctx->skip_depth : lx->depth;
    for (int i = limit - 1; i >= 0; i--) {
        char closer = lexer_closer(lx->stack[i].kind);
        int kind = closer == ')' ? TOK_RPAREN : closer == ']' ? TOK_RBRACKET : TOK_RBRACE;
        Token t = parse_synthetic(kind, at->loc, i);
        t.block_brace = bracket_is_block(lx->stack[i].kind);
        parse_enqueue(ctx, t);
    }
    lx->depth = 0;
    lx->paren_depth = 0;
}

/* Where skipping a broken statement at depth `depth` stops: its end of line, the '}'
 * of the enclosing block, or the end of the file. */
static bool parse_is_stop(const Token *t, int depth) {
    return (t->kind == TOK_NEWLINE && t->depth_before == depth) ||
           (t->kind == TOK_RBRACE && !t->unmatched && t->depth_after < depth) ||
           t->kind == TOK_YYEOF;
}

static Token parse_pull(ParseCtx *ctx) {
    for (;;) {
        if (ctx->qlen > 0) {
            ctx->qlen--;
            return ctx->queue[ctx->qhead++];
        }
        ctx->qhead = 0;
        Token t = parse_raw(ctx);
        if (t.kind == TOK_YYEOF) {
            parse_close_brackets(ctx, &t);
            parse_enqueue(ctx, t);
            ctx->skipping = false;
            continue;
        }
        /* A declaration keyword in column 1 followed by a name on the same line starts
         * a new declaration even if brackets are open: close them and go on from it. */
        if (lexer_is_decl_keyword(t.kind) && t.line_start && t.loc.col == 1 &&
            t.depth_before > 0) {
            Token next = parse_raw(ctx);
            ctx->peeked = next;
            ctx->has_peeked = true;
            if ((next.kind == TOK_IDENT || lexer_is_keyword(next.kind)) && !next.line_start) {
                parse_close_brackets(ctx, &t);
                lexer_resync(&ctx->lx, &t, &next);
                parse_enqueue(ctx, parse_synthetic(TOK_NEWLINE, t.loc, 0));
                t.depth_before = t.depth_after = 0;
                t.open = t.block = (Bracket){0};
                ctx->peeked.depth_before = ctx->peeked.depth_after = 0;
                ctx->peeked.open = ctx->peeked.block = (Bracket){0};
                parse_enqueue(ctx, t);
                ctx->skipping = false;
                continue;
            }
        }
        if (ctx->skipping) {
            if (!parse_is_stop(&t, ctx->skip_depth))
                continue;
            ctx->skipping = false;
        }
        return t;
    }
}

static int nnq_yylex(NNQ_YYSTYPE *lval, SrcLoc *lloc, ParseCtx *ctx) {
    Token t = parse_pull(ctx);
    if (t.invalid)
        t.kind = TOK_NNQ_YYUNDEF; /* reported by the lexer; the parser just recovers */
    ctx->prev = ctx->la;
    ctx->la = t;
    ctx->la_index++;
    if (ctx->resume_pending) {
        ctx->resume_index = ctx->la_index;
        ctx->resume_pending = false;
    }
    if (ctx->at_stmt_start) {
        ctx->stmt_first = t;
        ctx->stmt_first_index = ctx->la_index;
        ctx->stmt_depth = t.depth_before;
    }
    ctx->la_stmt_depth = ctx->stmt_depth;
    if (t.kind == TOK_RBRACE)
        ctx->stmt_depth = t.depth_after; /* back in the statement that owns the block */
    /* A statement starts after a line break at block level or after a block's '{'. */
    ctx->at_stmt_start =
        (t.kind == TOK_NEWLINE && (t.open.kind == BRACKET_NONE || bracket_is_block(t.open.kind))) ||
        (t.kind == TOK_LBRACE && t.block_brace);

    lval->tok = (TokVal){0};
    if (t.kind == TOK_STRING) {
        lval->tok.text = t.str;
    } else if (t.kind == TOK_NUMBER || t.kind == TOK_IDENT || lexer_is_keyword(t.kind)) {
        lval->tok.text = arena_strndup(ctx->arena, t.text, t.len);
        lval->tok.num = t.num;
        lval->tok.is_int = t.is_int;
    }
    *lloc = t.loc;
    return t.kind;
}

static int parse_recover(ParseCtx *ctx, bool have_lookahead, bool decl_level) {
    int depth = decl_level ? 0 : ctx->la_stmt_depth;
    bool again = have_lookahead && ctx->la_index == ctx->resume_index;
    int how = again ? 0 : RECOVER_ERROK;
    if (have_lookahead && !again && ctx->la_index != ctx->phantom_index &&
        parse_is_stop(&ctx->la, depth)) {
        ctx->resume_index = ctx->la_index;
        return how;
    }
    ctx->skipping = true;
    ctx->skip_depth = depth;
    ctx->resume_pending = true;
    return how | (have_lookahead ? RECOVER_CLEAR : 0);
}

/* ---- syntax error messages ---- */

typedef struct ParseExpected {
    bool has[YYNTOKENS];
    const char *phrases[YYNTOKENS + 9];
    int nphrases;
} ParseExpected;

static void parse_expected_drop(ParseExpected *e, const yysymbol_kind_t *syms, int n) {
    for (int i = 0; i < n; i++)
        e->has[syms[i]] = false;
}

static bool parse_expected_all(const ParseExpected *e, const yysymbol_kind_t *syms, int n) {
    for (int i = 0; i < n; i++)
        if (!e->has[syms[i]])
            return false;
    return true;
}

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const yysymbol_kind_t expr_starts[] = {
    YYSYMBOL_NUMBER, YYSYMBOL_STRING, YYSYMBOL_IDENT, YYSYMBOL_LPAREN, YYSYMBOL_LBRACKET,
    YYSYMBOL_LBRACE, YYSYMBOL_PIPE, YYSYMBOL_MINUS, YYSYMBOL_PLUS, YYSYMBOL_NOT, YYSYMBOL_IF,
    YYSYMBOL_IMPORT, YYSYMBOL_LABELS, YYSYMBOL_PROJECTION, YYSYMBOL_MODEL, YYSYMBOL_BLOCK,
    YYSYMBOL_DATA, YYSYMBOL_TRAIN,
};
static const yysymbol_kind_t operators[] = {
    YYSYMBOL_PLUS, YYSYMBOL_MINUS, YYSYMBOL_STAR, YYSYMBOL_SLASH, YYSYMBOL_EQ, YYSYMBOL_NE,
    YYSYMBOL_LT, YYSYMBOL_LE, YYSYMBOL_GT, YYSYMBOL_GE, YYSYMBOL_AND, YYSYMBOL_OR,
    YYSYMBOL_LBRACKET, YYSYMBOL_LPAREN,
};
static const yysymbol_kind_t decl_keywords[] = {
    YYSYMBOL_IMPORT, YYSYMBOL_LABELS, YYSYMBOL_PROJECTION, YYSYMBOL_MODEL,
    YYSYMBOL_BLOCK, YYSYMBOL_DATA, YYSYMBOL_TRAIN,
};

/* Turns the parser's expected tokens into phrases, most general first. */
static void parse_expected_phrases(ParseCtx *ctx, ParseExpected *e) {
    const Token *la = &ctx->la;
    BracketKind open = la->open.kind;
    if (ctx->la_index <= 1 || ctx->prev.kind == TOK_NEWLINE || bracket_is_paren(open))
        e->has[YYSYMBOL_NEWLINE] = false; /* no NEWLINE can come here */
    if (e->has[YYSYMBOL_NEWLINE])
        e->has[YYSYMBOL_YYEOF] = false; /* "end of line" covers it */
    if (ctx->prev.kind == TOK_NUMBER)
        e->has[YYSYMBOL_IDENT] = false; /* a unit (`100 iterations`): rarely the point */
    if (ctx->prev.kind == TOK_INIT && e->has[YYSYMBOL_FROM])
        e->has[YYSYMBOL_ASSIGN] = false; /* `init = ...` is no setting: `init from` */

    bool kw_names = e->has[YYSYMBOL_EVERY] && e->has[YYSYMBOL_INIT];
    if (parse_expected_all(e, (const yysymbol_kind_t[]){YYSYMBOL_NUMBER, YYSYMBOL_STRING,
                                                   YYSYMBOL_LPAREN, YYSYMBOL_MINUS}, 4)) {
        e->phrases[e->nphrases++] = kw_names ? "an argument" : "an expression";
        parse_expected_drop(e, expr_starts, COUNT_OF(expr_starts));
        if (kw_names)
            for (int k = YYSYMBOL_IMPORT; k <= YYSYMBOL_IN; k++)
                e->has[k] = false;
    }
    if (e->has[YYSYMBOL_STAR] && e->has[YYSYMBOL_PLUS]) {
        e->phrases[e->nphrases++] = "an operator";
        parse_expected_drop(e, operators, COUNT_OF(operators));
    }
    if (parse_expected_all(e, decl_keywords, COUNT_OF(decl_keywords)) &&
        !e->has[YYSYMBOL_IDENT]) { /* with IDENT they are names */
        e->phrases[e->nphrases++] =
            "a declaration ('import', 'labels', 'projection', 'model', 'block', 'data' or "
            "'train')";
        parse_expected_drop(e, decl_keywords, COUNT_OF(decl_keywords));
        e->has[YYSYMBOL_YYEOF] = false;
    }
    if (e->has[YYSYMBOL_IDENT] && kw_names) {
        e->phrases[e->nphrases++] = "a setting";
        e->phrases[e->nphrases++] = "'init from'";
        for (int k = YYSYMBOL_IMPORT; k <= YYSYMBOL_IN; k++)
            if (k != YYSYMBOL_EVALUATE && k != YYSYMBOL_SAVE && k != YYSYMBOL_CHECKPOINT)
                e->has[k] = false;
        e->has[YYSYMBOL_IDENT] = false;
    }
    if (e->has[YYSYMBOL_IDENT] && e->has[YYSYMBOL_RETURN] && e->has[YYSYMBOL_FOR]) {
        e->phrases[e->nphrases++] = "an assignment";
        e->has[YYSYMBOL_IDENT] = false;
    }
    if (e->has[YYSYMBOL_IDENT] && e->has[YYSYMBOL_LABELS] && !e->has[YYSYMBOL_TRAIN]) {
        e->phrases[e->nphrases++] = ctx->prev.kind == TOK_ARROW ? "a return type" : "a type";
        e->has[YYSYMBOL_IDENT] = e->has[YYSYMBOL_LABELS] = false;
    }
    if (e->has[YYSYMBOL_IDENT]) {
        e->phrases[e->nphrases++] = "a name";
        e->has[YYSYMBOL_IDENT] = false;
        parse_expected_drop(e, decl_keywords, COUNT_OF(decl_keywords));
    }
    if (e->has[YYSYMBOL_STRING]) {
        e->phrases[e->nphrases++] = "a string";
        e->has[YYSYMBOL_STRING] = false;
    }
    for (int k = 0; k < YYNTOKENS; k++)
        if (e->has[k]) {
            const char *name = yysymbol_name((yysymbol_kind_t)k);
            size_t n = strlen(name);
            e->phrases[e->nphrases++] =
                n >= 2 && name[0] == '"' ? arena_strndup(ctx->arena, name + 1, n - 2) : name;
        }
}

/* "A", "A or B", "A, B or C" */
static const char *parse_join(ParseCtx *ctx, const char *const *items, int n) {
    const char *s = "";
    for (int i = 0; i < n; i++)
        s = arena_printf(ctx->arena, "%s%s%s", s, i == 0 ? "" : i == n - 1 ? " or " : ", ",
                         items[i]);
    return s;
}

/* What the lookahead came after, for "expected X after Y": "setting name 'loss'",
 * "'update a'", "'->'"; NULL after a line break. */
static const char *parse_after_desc(ParseCtx *ctx) {
    const Token *prev = &ctx->prev, *first = &ctx->stmt_first;
    if (ctx->la_index <= 1 || prev->synthetic || prev->kind == TOK_NEWLINE)
        return NULL;
    if (ctx->la_index == ctx->stmt_first_index + 1 && ctx->la.block.kind == BRACKET_TRAIN &&
        (prev->kind == TOK_IDENT || lexer_is_keyword(prev->kind)) && prev->kind != TOK_INIT)
        return arena_printf(ctx->arena, "setting name '%.*s'", (int)prev->len, prev->text);
    if (prev->kind == TOK_STRING)
        return "the string";
    if (ctx->la_index == ctx->stmt_first_index + 2 && lexer_is_keyword(first->kind) &&
        prev->kind == TOK_IDENT)
        return arena_printf(ctx->arena, "'%.*s %.*s'", (int)first->len, first->text,
                            (int)prev->len, prev->text);
    return arena_printf(ctx->arena, "'%.*s'", (int)prev->len, prev->text);
}

/* " in the model 'mlp'" when the lookahead starts a statement inside a block. */
static const char *parse_context_desc(ParseCtx *ctx) {
    if (ctx->la_index != ctx->stmt_first_index)
        return "";
    if (ctx->la.block.kind == BRACKET_NONE)
        return " at top level";
    return arena_printf(ctx->arena, " in %s", parse_bracket_desc(ctx, &ctx->la.block));
}

static int yyreport_syntax_error(const yypcontext_t *yyctx, ParseCtx *ctx) {
    const Token *la = &ctx->la;
    /* Already reported by the lexer or a recovery step: say nothing more. */
    if (la->kind == TOK_NNQ_YYUNDEF || la->synthetic || ctx->la_index == ctx->resume_index)
        return 0;

    yysymbol_kind_t syms[YYNTOKENS];
    int n = yypcontext_expected_tokens(yyctx, syms, YYNTOKENS);
    ParseExpected e = {0};
    for (int i = 0; i < n; i++)
        e.has[syms[i]] = true;
    const char *found = parse_token_desc(ctx, la);
    bool closer = la->kind == TOK_RPAREN || la->kind == TOK_RBRACKET || la->kind == TOK_RBRACE;

    /* An open bracket whose closer the parser wants, facing a closer of another kind or,
     * for ( [ and set literals, a token on a later line: most likely the closer was
     * forgotten. Say so, and let the lexer forget the bracket too so that line breaks
     * count again and the recovery finds the end of the statement. */
    const Bracket *open = &la->open;
    char want = lexer_closer(open->kind);
    yysymbol_kind_t want_sym = want == ')'   ? YYSYMBOL_RPAREN
                               : want == ']' ? YYSYMBOL_RBRACKET
                                             : YYSYMBOL_RBRACE;
    bool note_open = false;
    if (want && e.has[want_sym] &&
        (closer || (la->line_start && !bracket_is_block(open->kind)))) {
        lexer_forget(&ctx->lx, la->depth_before - 1);
        const char *desc = parse_bracket_desc(ctx, open);
        if (desc) {
            diag_error(ctx->diag, la->loc, "expected '%c' to close %s, found %s", want, desc,
                       found);
            if (la->loc.line != open->loc.line)
                diag_note(ctx->diag, open->loc, "%s opens here", desc);
            return 0;
        }
        note_open = la->loc.line != open->loc.line;
    }
    if (closer && la->unmatched) {
        diag_error(ctx->diag, la->loc, "unmatched '%.*s'", (int)la->len, la->text);
        return 0;
    }
    /* A header line (model, for, ...) that ends before its '{': the lines that follow
     * are most likely its body, so open it for them; recovery then skips it whole. */
    Bracket body;
    if (la->kind == TOK_NEWLINE && !ctx->has_peeked &&
        lexer_open_missing_block(&ctx->lx, la->loc, &body)) {
        ctx->phantom_index = ctx->la_index;
        if (e.has[YYSYMBOL_LBRACE]) {
            diag_error(ctx->diag, la->loc, "expected '{' to open the body of %s, found %s",
                       parse_bracket_desc(ctx, &body), found);
            return 0;
        }
    }
    bool comparison = la->kind == TOK_EQ || la->kind == TOK_NE || la->kind == TOK_LT ||
                      la->kind == TOK_LE || la->kind == TOK_GT || la->kind == TOK_GE;
    if (comparison && e.has[YYSYMBOL_PLUS]) {
        diag_error(ctx->diag, la->loc,
                   "comparisons cannot be chained; combine them with 'and', as in "
                   "'a < b and b < c'");
        return 0;
    }

    parse_expected_phrases(ctx, &e);
    if (e.nphrases == 0) {
        diag_error(ctx->diag, la->loc, "unexpected %s", found);
    } else if (e.nphrases == 1) {
        const char *after = parse_after_desc(ctx);
        if (after)
            diag_error(ctx->diag, la->loc, "expected %s after %s, found %s", e.phrases[0], after,
                       found);
        else
            diag_error(ctx->diag, la->loc, "expected %s, found %s", e.phrases[0], found);
    } else {
        diag_error(ctx->diag, la->loc, "unexpected %s%s, expected %s", found,
                   parse_context_desc(ctx), parse_join(ctx, e.phrases, e.nphrases));
    }
    if (note_open)
        diag_note(ctx->diag, open->loc, "to match this '%c'",
                  open->kind == BRACKET_PAREN ? '(' : '[');
    return 0;
}

/* Bison's own errors: only "memory exhausted", when the parser stack is full. */
static void nnq_yyerror(SrcLoc *lloc, ParseCtx *ctx, const char *msg) {
    (void)msg;
    diag_error(ctx->diag, *lloc, "the program is nested too deeply to parse");
}

/* ---- lang.h ---- */

AstNode *lang_parse(Arena *arena, Diag *diag, const SourceFile *src) {
    ParseCtx ctx = {0};
    ctx.arena = arena;
    ctx.diag = diag;
    ctx.src = src;
    ctx.at_stmt_start = true;
    ctx.resume_index = -1;
    ctx.phantom_index = -1;
    lexer_init(&ctx.lx, src, arena, diag);
    int errors = diag_error_count(diag);
    int rc = nnq_yyparse(&ctx);
    if (rc != 0 && diag_error_count(diag) == errors)
        diag_error(diag, ctx.la.loc, "unexpected %s", parse_token_desc(&ctx, &ctx.la));
    return diag_error_count(diag) == errors ? ctx.program : NULL;
}
