/* ast.h — the abstract syntax tree of a .nnq file.
 *
 * One uniform node type: a kind, a source location, a few scalar fields and an
 * ordered list of children. The meaning of each child slot per kind is given in
 * ast_kinds.def (one row per kind). Nodes live in the Arena passed to the parser
 * and are never freed one by one. Strings (name, str) are NUL-terminated copies
 * owned by the same arena. Children may be NULL only where ast_kinds.def says
 * "optional".
 */
#ifndef NNQ_AST_H
#define NNQ_AST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "source.h"

typedef enum AstKind {
#define AST_KIND(name, str, layout) AST_##name,
#include "ast_kinds.def"
#undef AST_KIND
    AST_KIND_COUNT
} AstKind;

/* Operators of AST_BINARY / AST_UNARY. */
typedef enum AstOp {
    AST_OP_NONE,
    AST_OP_ADD, AST_OP_SUB, AST_OP_MUL, AST_OP_DIV,
    AST_OP_EQ, AST_OP_NE, AST_OP_LT, AST_OP_LE, AST_OP_GT, AST_OP_GE,
    AST_OP_AND, AST_OP_OR,
    AST_OP_NEG, AST_OP_PLUS, AST_OP_NOT,
} AstOp;

typedef struct AstNode AstNode;
struct AstNode {
    AstKind kind;
    SrcLoc loc;      /* first character of the construct */
    AstOp op;        /* AST_BINARY, AST_UNARY */
    const char *name;/* identifiers, declared names, setting names, units */
    const char *str; /* AST_STRING contents (escapes resolved) */
    double num;      /* AST_NUMBER value */
    bool is_int;     /* AST_NUMBER written without '.', 'e' */
    int depth;       /* expressions: the expression nodes on the longest path down, itself
                        included (a name or number 1, `a + b` 2); 0 for other kinds */
    int nkids;
    AstNode **kids;
};

/* The deepest an expression may nest (AstNode.depth): every pass after the parser walks
 * expressions recursively, and a sum of 50,000 terms (a left-leaning tree, which the
 * parser's own stack does not bound) overflowed the stack. The parser refuses more. */
#define AST_MAX_DEPTH 1000

const char *ast_kind_name(AstKind kind);
const char *ast_op_name(AstOp op); /* "+", "==", "and", "-" (neg), "not" ... */

/* Expression kinds: ast_kinds.def's last section, from Number on. */
bool ast_is_expr(AstKind kind);
AstNode *ast_new(Arena *arena, AstKind kind, SrcLoc loc);
/* Appends `kid` (may be NULL); an expression's depth grows past its kid's. */
void ast_add_kid(Arena *arena, AstNode *parent, AstNode *kid);
/* The index of the first kid of `list` (NULL: none) from kid `from` on whose name an
 * earlier kid has, that earlier kid's index in *first; -1 when there is none (a block's
 * parameters, a loop's names, which must be distinct). */
int ast_repeated_name(const AstNode *list, int from, int *first);

/* Writes the indented tree dump used by `nnqc --emit=ast` (golden-tested). */
void ast_dump(const AstNode *node, FILE *out);

#endif
