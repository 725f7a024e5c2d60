/* ast.c — AST node construction and the textual dump (see ast.h, ast_kinds.def).
 *
 * Children live in an arena array whose capacity is implied by nkids: 4 slots first,
 * then doubled whenever nkids reaches a power of two >= 4, so no capacity field is
 * needed. The dump is deterministic: one node per line, two spaces per depth level,
 * `Kind [name] [extra] @line:col`, "(none)" for an absent optional child. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

static const char *const ast_kind_names[AST_KIND_COUNT] = {
#define AST_KIND(name, str, layout) str,
#include "ast_kinds.def"
#undef AST_KIND
};

const char *ast_kind_name(AstKind kind) {
    assert(kind >= 0 && kind < AST_KIND_COUNT);
    return ast_kind_names[kind];
}

const char *ast_op_name(AstOp op) {
    switch (op) {
    case AST_OP_NONE: return "?";
    case AST_OP_ADD: return "+";
    case AST_OP_SUB: return "-";
    case AST_OP_MUL: return "*";
    case AST_OP_DIV: return "/";
    case AST_OP_EQ: return "==";
    case AST_OP_NE: return "!=";
    case AST_OP_LT: return "<";
    case AST_OP_LE: return "<=";
    case AST_OP_GT: return ">";
    case AST_OP_GE: return ">=";
    case AST_OP_AND: return "and";
    case AST_OP_OR: return "or";
    case AST_OP_NEG: return "-";
    case AST_OP_PLUS: return "+";
    case AST_OP_NOT: return "not";
    }
    assert(!"unknown AstOp");
    return "?";
}

bool ast_is_expr(AstKind kind) { return kind >= AST_NUMBER; }

AstNode *ast_new(Arena *arena, AstKind kind, SrcLoc loc) {
    assert(kind >= 0 && kind < AST_KIND_COUNT);
    AstNode *node = arena_alloc(arena, sizeof(AstNode));
    node->kind = kind;
    node->loc = loc;
    node->depth = ast_is_expr(kind);
    return node;
}

void ast_add_kid(Arena *arena, AstNode *parent, AstNode *kid) {
    int n = parent->nkids;
    parent->kids = arena_grow(arena, parent->kids, (size_t)n, sizeof(AstNode *));
    parent->kids[n] = kid;
    parent->nkids = n + 1;
    if (kid && ast_is_expr(parent->kind) && kid->depth + 1 > parent->depth) parent->depth = kid->depth + 1;
}

int ast_repeated_name(const AstNode *list, int from, int *first) {
    for (int i = from > 1 ? from : 1; list && i < list->nkids; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(list->kids[i]->name, list->kids[j]->name)) {
                *first = j;
                return i;
            }
    return -1;
}

/* Shortest "%.*g" form of `v` that reads back exactly; non-integers written as integers
 * get ".0" so the dump shows that the number was not written with digits only. */
static void ast_print_number(FILE *out, double v, bool is_int) {
    char buf[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
    if (!is_int && isfinite(v) && !strpbrk(buf, ".e"))
        fputs(".0", out);
}

static void ast_print_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\x%02X", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void ast_dump_at(const AstNode *node, FILE *out, int depth) {
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
    if (!node) {
        fputs("(none)\n", out);
        return;
    }
    fputs(ast_kind_name(node->kind), out);
    switch (node->kind) {
    case AST_NUMBER:
        fputc(' ', out);
        ast_print_number(out, node->num, node->is_int);
        break;
    case AST_STRING:
        fputc(' ', out);
        ast_print_string(out, node->str ? node->str : "");
        break;
    case AST_BINARY:
    case AST_UNARY:
        fprintf(out, " %s", ast_op_name(node->op));
        break;
    default:
        if (node->name)
            fprintf(out, " %s", node->name);
        break;
    }
    fprintf(out, " @%d:%d\n", node->loc.line, node->loc.col);
    for (int i = 0; i < node->nkids; i++)
        ast_dump_at(node->kids[i], out, depth + 1);
}

void ast_dump(const AstNode *node, FILE *out) {
    ast_dump_at(node, out, 0);
}
