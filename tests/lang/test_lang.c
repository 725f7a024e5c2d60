/* test_lang.c — unit tests of the front end through its public API (lang.h, ast.h,
 * diag.h, arena.h, source.h): tokens, numbers and strings, layout (newlines, brackets,
 * set literals over several lines), precedence, quantities, locations, diagnostics,
 * the two real programs of the repository, and a mutation smoke test (the parser must
 * terminate and return an AST exactly when it reported no error).
 *
 * Expressions are checked as s-expressions: `a + b * c` reads "(+ a (* b c))".
 * Prints each failure, then a last line "N passed, N failed"; exits 1 on any failure.
 * NNQ_SOURCE_DIR (a compile definition) is the repository root. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"

static int passed, failed;

static void check_at(bool ok, const char *what, int line) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL test_lang.c:%d: %s\n", line, what);
    }
}
#define CHECK(cond) check_at((cond), #cond, __LINE__)

static void check_str_at(const char *got, const char *want, const char *what, int line) {
    bool ok = got && strcmp(got, want) == 0;
    check_at(ok, what, line);
    if (!ok)
        printf("  want: %s\n  got:  %s\n", want, got ? got : "(null)");
}
#define CHECK_STR(got, want) check_str_at((got), (want), #got, __LINE__)

/* ---- helpers ---- */

/* A parse whose AST and diagnostics live until test_reset(). */
typedef struct Parsed {
    AstNode *root;
    char *diags; /* everything written to the Diag sink */
    int errors;
} Parsed;

static Arena *test_arena;

static void test_reset(void) {
    arena_free(test_arena);
    test_arena = arena_new();
}

static Parsed parse_text(const char *text) {
    Parsed p = {0};
    size_t size = 0;
    FILE *out = open_memstream(&p.diags, &size);
    Diag *diag = diag_new(out);
    SourceFile *src = source_from_string(test_arena, "t.nnq", text);
    p.root = lang_parse(test_arena, diag, src);
    p.errors = diag_error_count(diag);
    diag_free(diag);
    fclose(out);
    char *copy = arena_strdup(test_arena, p.diags);
    free(p.diags);
    p.diags = copy;
    return p;
}

static char *dump_tokens(const char *text, bool *ok) {
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    FILE *errs = fopen("/dev/null", "w");
    Diag *diag = diag_new(errs);
    *ok = lang_dump_tokens(source_from_string(test_arena, "t.nnq", text), diag, out);
    diag_free(diag);
    fclose(errs);
    fclose(out);
    char *copy = arena_strdup(test_arena, buf);
    free(buf);
    return copy;
}

/* What `write` prints for `node`, as a string in the test arena. */
static char *capture(void (*write)(FILE *out, const AstNode *node), const AstNode *node) {
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    write(out, node);
    fclose(out);
    char *copy = arena_strdup(test_arena, buf);
    free(buf);
    return copy;
}

static void ast_dump_to(FILE *out, const AstNode *node) { ast_dump(node, out); }

static char *dump_ast(const AstNode *node) { return capture(ast_dump_to, node); }

static void sexpr_write(FILE *out, const AstNode *n) {
    if (!n) {
        fputs("_", out);
        return;
    }
    const char *open = "(", *close = ")";
    switch (n->kind) {
    case AST_NUMBER: fprintf(out, "%g", n->num); return;
    case AST_IDENT: fputs(n->name, out); return;
    case AST_STRING: fprintf(out, "\"%s\"", n->str); return;
    case AST_BINARY: fprintf(out, "(%s", ast_op_name(n->op)); break;
    case AST_UNARY:
        fprintf(out, "(%s", n->op == AST_OP_NEG ? "neg" : n->op == AST_OP_PLUS ? "pos" : "not");
        break;
    case AST_CALL: fprintf(out, "(call %s", n->name); break;
    case AST_NAMED_ARG: fprintf(out, "(= %s", n->name); break;
    case AST_QUANTITY: fprintf(out, "(qty %s", n->name); break;
    case AST_INDEX: fputs("(index", out); break;
    case AST_CARD: fputs("(card", out); break;
    case AST_TUPLE: fputs("(tuple", out); break;
    case AST_IF: fputs("(if", out); break;
    case AST_SET: open = "{"; close = "}"; fputs(open, out); break;
    case AST_LIST: open = "["; close = "]"; fputs(open, out); break;
    default: fprintf(out, "(%s", ast_kind_name(n->kind)); break;
    }
    for (int i = 0; i < n->nkids; i++) {
        if (i > 0 || *open == '(')
            fputc(' ', out);
        sexpr_write(out, n->kids[i]);
    }
    fputs(close, out);
}

static char *sexpr(const AstNode *n) { return capture(sexpr_write, n); }

/* The expression `text` parsed as the value of a data declaration. */
static const AstNode *parse_expr(const char *text) {
    Parsed p = parse_text(arena_printf(test_arena, "data d = %s\n", text));
    if (!p.root || p.root->nkids != 1 || p.root->kids[0]->kind != AST_DATA)
        return NULL;
    return p.root->kids[0]->kids[0];
}

static const char *expr(const char *text) {
    const AstNode *n = parse_expr(text);
    return n ? sexpr(n) : "(parse failed)";
}

static bool contains(const char *haystack, const char *needle) {
    return haystack && strstr(haystack, needle) != NULL;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = arena_alloc(test_arena, (size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* ---- tests ---- */

static void test_arena_basics(void) {
    Arena *a = arena_new();
    char *prev = NULL;
    bool aligned = true, zeroed = true;
    for (int i = 1; i < 3000; i++) {
        size_t n = (size_t)(i * 7 % 301) + (i % 97 == 0 ? 100000 : 0);
        unsigned char *p = arena_alloc(a, n);
        aligned &= ((uintptr_t)p % 16) == 0;
        for (size_t k = 0; k < n; k++)
            zeroed &= p[k] == 0;
        memset(p, 0xAB, n);
        prev = (char *)p;
    }
    (void)prev;
    CHECK(aligned);
    CHECK(zeroed);
    int *xs = arena_alloc(a, 4 * sizeof(int));
    for (int i = 0; i < 4; i++)
        xs[i] = i + 1;
    int *ys = arena_realloc(a, xs, 4 * sizeof(int), 8 * sizeof(int));
    CHECK(ys[0] == 1 && ys[3] == 4 && ys[4] == 0 && ys[7] == 0);
    /* arena_grow: contents kept across each doubling, a new block only where n is 0 or a
     * power of two from 4 (a copy per append made a 1,500-layer program's compile
     * quadratic in time and memory) */
    int *arr = NULL, moves = 0;
    bool kept = true;
    for (int n = 0; n < 5000; n++) {
        int *grown = arena_grow(a, arr, (size_t)n, sizeof(int));
        moves += grown != arr;
        for (int k = 0; k < n && grown != arr; k++) kept &= grown[k] == k;
        arr = grown;
        arr[n] = n;
    }
    CHECK(kept);
    CHECK(moves == 12); /* at 0, 4, 8, ..., 4096 */
    CHECK_STR(arena_strndup(a, "abcdef", 3), "abc");
    CHECK_STR(arena_printf(a, "%s-%d", "x", 42), "x-42");
    arena_free(a);
    arena_free(NULL);
}

static void test_ast_kids(void) {
    SrcLoc loc = {0};
    AstNode *list = ast_new(test_arena, AST_LIST, loc);
    for (int i = 0; i < 100; i++) {
        AstNode *n = ast_new(test_arena, AST_NUMBER, loc);
        n->num = i;
        ast_add_kid(test_arena, list, i == 50 ? NULL : n);
    }
    bool in_order = list->nkids == 100;
    for (int i = 0; i < 100 && in_order; i++)
        in_order = i == 50 ? list->kids[i] == NULL : list->kids[i]->num == i;
    CHECK(in_order);
    CHECK_STR(ast_kind_name(AST_NAMED_ARG), "NamedArg");
    CHECK_STR(ast_op_name(AST_OP_NEG), "-");
    CHECK_STR(ast_op_name(AST_OP_GE), ">=");
    CHECK_STR(ast_op_name(AST_OP_NOT), "not");
}

static void test_numbers(void) {
    const AstNode *n = parse_expr("[1, 300, 1.0, 1e-3, 2.5E+4, .5, 7.]");
    CHECK(n && n->kind == AST_LIST && n->nkids == 7);
    if (!n || n->nkids != 7)
        return;
    double want[] = {1, 300, 1.0, 1e-3, 2.5e4, 0.5, 7.0};
    bool ints[] = {true, true, false, false, false, false, false};
    for (int i = 0; i < 7; i++) {
        check_at(n->kids[i]->kind == AST_NUMBER && n->kids[i]->num == want[i], "number value",
                 __LINE__);
        check_at(n->kids[i]->is_int == ints[i], "number is_int", __LINE__);
    }
    bool ok;
    CHECK_STR(dump_tokens("1e-3 2.5E+4 .5", &ok),
              "1:1 NUMBER '1e-3'\n1:6 NUMBER '2.5E+4'\n1:13 NUMBER '.5'\n1:15 EOF ''\n");
    CHECK(ok);
    /* Malformed numbers are lexical errors. */
    Parsed p = parse_text("data d = f(lr = 1e)\n");
    CHECK(!p.root && p.errors == 1);
    CHECK(contains(p.diags, "t.nnq:1:17: error: invalid number '1e'"));
    p = parse_text("data d = 1.2.3\n");
    CHECK(contains(p.diags, "invalid number '1.2.3'"));
    p = parse_text("data d = 100iterations\n");
    CHECK(contains(p.diags, "invalid number '100iterations'"));
    p = parse_text("data d = 1e999\n");
    CHECK(contains(p.diags, "number '1e999' is too large"));
}

static void test_strings(void) {
    const AstNode *n = parse_expr("\"a\\\"b\\\\c\\nd\\te\"");
    CHECK(n && n->kind == AST_STRING);
    if (n)
        CHECK_STR(n->str, "a\"b\\c\nd\te");
    n = parse_expr("\"\"");
    CHECK(n && n->kind == AST_STRING && n->str[0] == '\0');
    Parsed p = parse_text("data d = f(\"abc\n");
    CHECK(!p.root);
    CHECK(contains(p.diags, "t.nnq:1:12: error: unterminated string"));
    p = parse_text("data d = \"abc");
    CHECK(!p.root && p.errors == 1);
    CHECK(contains(p.diags, "t.nnq:1:10: error: unterminated string"));
    p = parse_text("data d = \"a\\qb\"\n");
    CHECK(!p.root && contains(p.diags, "t.nnq:1:12: error: unknown escape sequence '\\q'"));
}

static void test_tokens(void) {
    bool ok;
    CHECK_STR(dump_tokens("# comment\n\nmodel m(x,\n  y) -> t {\n\n  return |x| # c\n}", &ok),
              "3:1 MODEL 'model'\n"
              "3:7 IDENT 'm'\n"
              "3:8 LPAREN '('\n"
              "3:9 IDENT 'x'\n"
              "3:10 COMMA ','\n"
              "4:3 IDENT 'y'\n"
              "4:4 RPAREN ')'\n"
              "4:6 ARROW '->'\n"
              "4:9 IDENT 't'\n"
              "4:11 LBRACE '{'\n"
              "4:12 NEWLINE '\\n'\n"
              "6:3 RETURN 'return'\n"
              "6:10 PIPE '|'\n"
              "6:11 IDENT 'x'\n"
              "6:12 PIPE '|'\n"
              "6:17 NEWLINE '\\n'\n"
              "7:1 RBRACE '}'\n"
              "7:2 EOF ''\n");
    CHECK(ok);
    CHECK_STR(dump_tokens("== != <= >= < > -> = + - * / : , . [ ] f32 int trainer", &ok),
              "1:1 EQ '=='\n1:4 NE '!='\n1:7 LE '<='\n1:10 GE '>='\n1:13 LT '<'\n1:15 GT '>'\n"
              "1:17 ARROW '->'\n1:20 ASSIGN '='\n1:22 PLUS '+'\n1:24 MINUS '-'\n1:26 STAR '*'\n"
              "1:28 SLASH '/'\n1:30 COLON ':'\n1:32 COMMA ','\n1:34 DOT '.'\n1:36 LBRACKET '['\n"
              "1:38 RBRACKET ']'\n1:40 IDENT 'f32'\n1:44 IDENT 'int'\n1:48 IDENT 'trainer'\n"
              "1:55 EOF ''\n");
    CHECK_STR(dump_tokens("a @ b", &ok),
              "1:1 IDENT 'a'\n1:3 ERROR '@'\n1:5 IDENT 'b'\n1:6 EOF ''\n");
    CHECK(!ok);
    /* Inside [ ] as inside ( ), line breaks are not tokens; inside { } they are. */
    CHECK_STR(dump_tokens("[1,\n2]\n{1,\n2}", &ok),
              "1:1 LBRACKET '['\n1:2 NUMBER '1'\n1:3 COMMA ','\n2:1 NUMBER '2'\n"
              "2:2 RBRACKET ']'\n2:3 NEWLINE '\\n'\n3:1 LBRACE '{'\n3:2 NUMBER '1'\n"
              "3:3 COMMA ','\n3:4 NEWLINE '\\n'\n4:1 NUMBER '2'\n4:2 RBRACE '}'\n4:3 EOF ''\n");
}

/* Every punctuation row of tokens.def lexes to its own kind, and its dump name is the
 * row's name (the table and lexer.re's rules agree). */
static void test_token_table(void) {
    int n = 0;
    const char *name, *spelling;
    for (; (spelling = lang_token_punct(n, &name)); n++) {
        bool ok;
        char want[64];
        snprintf(want, sizeof want, "1:1 %s '%s'\n1:%d EOF ''\n", name, spelling, 1 + (int)strlen(spelling));
        char *got = dump_tokens(spelling, &ok);
        if (!ok || strcmp(got, want)) printf("punctuation '%s' lexes as %s", spelling, got);
        CHECK(ok && !strcmp(got, want));
    }
    CHECK(n >= 22);
}

static void test_precedence(void) {
    CHECK_STR(expr("a + b * c"), "(+ a (* b c))");
    CHECK_STR(expr("a * b + c"), "(+ (* a b) c)");
    CHECK_STR(expr("a - b - c"), "(- (- a b) c)");
    CHECK_STR(expr("a / b * c"), "(* (/ a b) c)");
    CHECK_STR(expr("not a == b"), "(not (== a b))");
    CHECK_STR(expr("a or b and c"), "(or a (and b c))");
    CHECK_STR(expr("not a and b"), "(and (not a) b)");
    CHECK_STR(expr("a == b and c != d"), "(and (== a b) (!= c d))");
    CHECK_STR(expr("-a * b"), "(* (neg a) b)");
    CHECK_STR(expr("- a[1]"), "(neg (index a 1))");
    CHECK_STR(expr("a < b + 1"), "(< a (+ b 1))");
    CHECK_STR(expr("x[1][2]"), "(index (index x 1) 2)");
    CHECK_STR(expr("(a + b) * c"), "(* (+ a b) c)");
    CHECK_STR(expr("|Q| == 2"), "(== (card Q) 2)");
    CHECK_STR(expr("| |a| |"), "(card (card a))");
    CHECK_STR(expr("Q[argmax(a)]"), "(index Q (call argmax a))");
    CHECK_STR(expr("if c then a else b + 1"), "(if c a (+ b 1))");
    CHECK_STR(expr("if a then if b then c else d else e"), "(if a (if b c d) e)");
    CHECK_STR(expr("if a\n then b\n else c"), "(if a b c)");
    CHECK_STR(expr("mid(Q) + half_range(Q) * tanh(beta * a)"),
              "(+ (call mid Q) (* (call half_range Q) (call tanh (* beta a))))");
    CHECK_STR(expr("{-1, +1}"), "{(neg 1) (pos 1)}");
    Parsed p = parse_text("data d = a < b < c\n");
    CHECK(!p.root && contains(p.diags, "comparisons cannot be chained"));
}

static void test_primaries(void) {
    CHECK_STR(expr("100 iterations"), "(qty iterations 100)");
    CHECK_STR(expr("f(every = 1 epoch, gamma = 0.5)"),
              "(call f (= every (qty epoch 1)) (= gamma 0.5))");
    CHECK_STR(expr("f()"), "(call f)");
    CHECK_STR(expr("f(x, 2, quant = pmf(b))"), "(call f x 2 (= quant (call pmf b)))");
    CHECK_STR(expr("f(init = w0, if = 1, train = 2)"), "(call f (= init w0) (= if 1) (= train 2))");
    CHECK_STR(expr("like(train)"), "(call like train)");
    CHECK_STR(expr("(a)"), "a");
    CHECK_STR(expr("(64, 1)"), "(tuple 64 1)");
    CHECK_STR(expr("[]"), "[]");
    CHECK_STR(expr("[(64,1),(128,2)]"), "[(tuple 64 1) (tuple 128 2)]");
    CHECK_STR(expr("{\n  -2, -1,\n\n  1,   # one\n  2\n}"), "{(neg 2) (neg 1) 1 2}");
    CHECK_STR(expr("f(1,\n   2,\n\n   3)"), "(call f 1 2 3)");
    CHECK_STR(expr("[1,\n 2]"), "[1 2]");
    Parsed p = parse_text("data d = f(quant = q, 2)\n");
    CHECK(!p.root && p.errors == 1);
    CHECK(contains(p.diags, "t.nnq:1:23: error: positional argument after the named argument "
                            "'quant'"));
}

static void test_layout(void) {
    Parsed p = parse_text("");
    CHECK(p.root && p.root->kind == AST_PROGRAM && p.root->nkids == 0 && p.errors == 0);
    p = parse_text("# only a comment\n\n   # another\n");
    CHECK(p.root && p.root->nkids == 0);
    p = parse_text("\n\nimport std.projections");
    CHECK(p.root && p.root->nkids == 1 && p.root->kids[0]->kind == AST_IMPORT);
    if (p.root && p.root->nkids == 1)
        CHECK_STR(p.root->kids[0]->name, "std.projections");
    p = parse_text("model m(x) -> t {\r\n  return x\r\n}\r\n");
    CHECK(p.root && p.root->nkids == 1);
    p = parse_text("model m(x) -> labels { return x }\nblock b() {}\n");
    CHECK(p.root && p.root->nkids == 2);
    /* Statements need a line break between them. */
    p = parse_text("model m(x) -> t { y = x return y }\n");
    CHECK(!p.root && contains(p.diags, "unexpected 'return', expected an operator"));
    p = parse_text("labels a = {1}\nlabels b = {2} labels c = {3}\n");
    CHECK(!p.root && contains(p.diags, "t.nnq:2:16: error: unexpected 'labels', expected an "
                              "operator or end of line"));
}

static void test_train_block(void) {
    Parsed p = parse_text("train mlp on train {\n"
                          "    every = 100 iterations\n"
                          "    init = uniform\n"
                          "    evaluate test every 1 epoch\n"
                          "    evaluate = 3\n"
                          "    checkpoint \"runs/m\" every 2 epochs\n"
                          "    save \"m.nnqm\"\n"
                          "    init from \"pretrained\"\n"
                          "    from = 2\n"
                          "}\n");
    CHECK(p.root && p.root->nkids == 1);
    if (!p.root || p.root->nkids != 1)
        return;
    const AstNode *t = p.root->kids[0];
    CHECK(t->kind == AST_TRAIN && strcmp(t->name, "mlp") == 0 && t->nkids == 9);
    if (t->nkids != 9)
        return;
    CHECK(t->kids[0]->kind == AST_IDENT && strcmp(t->kids[0]->name, "train") == 0);
    CHECK(t->kids[1]->kind == AST_SETTING && strcmp(t->kids[1]->name, "every") == 0);
    CHECK_STR(sexpr(t->kids[1]->kids[0]), "(qty iterations 100)");
    CHECK(t->kids[2]->kind == AST_SETTING && strcmp(t->kids[2]->name, "init") == 0);
    CHECK(t->kids[3]->kind == AST_EVALUATE && strcmp(t->kids[3]->name, "test") == 0);
    CHECK_STR(sexpr(t->kids[3]->kids[0]), "(qty epoch 1)");
    CHECK(t->kids[4]->kind == AST_SETTING && strcmp(t->kids[4]->name, "evaluate") == 0);
    CHECK(t->kids[5]->kind == AST_CHECKPOINT && t->kids[5]->nkids == 2);
    CHECK_STR(t->kids[5]->kids[0]->str, "runs/m");
    CHECK(t->kids[6]->kind == AST_SAVE && strcmp(t->kids[6]->kids[0]->str, "m.nnqm") == 0);
    CHECK(t->kids[7]->kind == AST_INIT_FROM && t->kids[7]->nkids == 1 &&
          t->kids[7]->kids[0]->kind == AST_STRING);
    CHECK_STR(t->kids[7]->kids[0]->str, "pretrained");
    CHECK(t->kids[8]->kind == AST_SETTING && strcmp(t->kids[8]->name, "from") == 0);

    p = parse_text("train m on d {\n    evaluate test\n    checkpoint \"c\"\n}\n");
    CHECK(p.root && p.root->kids[0]->kids[1]->kids[0] == NULL);
    CHECK(p.root && p.root->kids[0]->kids[2]->kids[1] == NULL);

    p = parse_text("train m on d {\n    loss cross_entropy\n    epochs 20\n}\n");
    CHECK(!p.root && p.errors == 2);
    CHECK(contains(p.diags, "t.nnq:2:10: error: expected '=' after setting name 'loss', "
                            "found identifier 'cross_entropy'"));
    CHECK(contains(p.diags, "t.nnq:3:12: error: expected '=' after setting name 'epochs', "
                            "found number"));
}

static void test_ast_dump(void) {
    Parsed p = parse_text("projection p(Q: labels) requires |Q| == 2 {\n"
                          "    aux a\n"
                          "    weight w = \"s\\t\" * -a[0]\n"
                          "}\n"
                          "block b(x) {\n"
                          "    for i, j in xs {\n"
                          "        y = 1.0\n"
                          "    }\n"
                          "}\n");
    CHECK(p.root != NULL);
    if (!p.root)
        return;
    CHECK_STR(dump_ast(p.root), "Program @1:1\n"
                                "  Projection p @1:1\n"
                                "    Params @1:13\n"
                                "      Param Q @1:14\n"
                                "        Type labels @1:17\n"
                                "    Binary == @1:34\n"
                                "      Card @1:34\n"
                                "        Ident Q @1:35\n"
                                "      Number 2 @1:41\n"
                                "    Aux a @2:5\n"
                                "      (none)\n"
                                "    Weight w @3:5\n"
                                "      Binary * @3:16\n"
                                "        String \"s\\t\" @3:16\n"
                                "        Unary - @3:24\n"
                                "          Index @3:25\n"
                                "            Ident a @3:25\n"
                                "            Number 0 @3:27\n"
                                "  Block b @5:1\n"
                                "    Params @5:8\n"
                                "      Param x @5:9\n"
                                "        (none)\n"
                                "    (none)\n"
                                "    For @6:5\n"
                                "      Params @6:9\n"
                                "        Param i @6:9\n"
                                "          (none)\n"
                                "        Param j @6:12\n"
                                "          (none)\n"
                                "      Ident xs @6:17\n"
                                "      Assign y @7:9\n"
                                "        Number 1.0 @7:13\n");
}

static void test_diagnostics(void) {
    /* The caret line copies tabs so it lines up under any tab width. */
    Parsed p = parse_text("model m(x) -> t {\n\th = x @ 2\n}\n");
    CHECK(!p.root && p.errors == 1);
    CHECK_STR(p.diags, "t.nnq:2:8: error: unexpected character '@'\n"
                       " \th = x @ 2\n"
                       " \t      ^\n");
    p = parse_text("model mlp(x) -> t {\n    return x\n");
    CHECK_STR(p.diags, "t.nnq:2:13: error: expected '}' to close the model 'mlp', found end "
                       "of file\n"
                       "     return x\n"
                       "             ^\n"
                       "t.nnq:1:19: note: the model 'mlp' opens here\n"
                       " model mlp(x) -> t {\n"
                       "                   ^\n");
    p = parse_text("model m(x) -> t {\n    h = relu(dense(x, 2)\n    return h\n}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:3:5: error: expected ')' to close the call "
                                             "to 'relu', found 'return'"));
    CHECK(contains(p.diags, "t.nnq:2:13: note: the call to 'relu' opens here"));
    p = parse_text("model m(x) -> {\n    return x\n}\n");
    CHECK(p.errors == 1 && contains(p.diags, "expected a return type after '->', found '{'"));
    p = parse_text("projection p() {\n    update a grad(w)\n}\n");
    CHECK(contains(p.diags, "expected 'using' after 'update a', found identifier 'grad'"));
    p = parse_text("model m(x) -> t {\n    return x\n}\n}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:4:1: error: unmatched '}'"));
    p = parse_text("x = 1\n");
    CHECK_STR(p.diags, "t.nnq:1:1: error: expected a declaration ('import', 'labels', "
                       "'projection', 'model', 'block', 'data' or 'train'), found identifier "
                       "'x'\n x = 1\n ^\n");
    /* A broken for header must not leak its body into the enclosing block. */
    p = parse_text("model m(x) -> t {\n    for i j in xs {\n        y = i\n    }\n"
                   "    return y\n}\nlabels b = {1, 2}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:2:11: error: unexpected identifier 'j', "
                                             "expected 'in' or ','"));
    /* A declaration keyword in column 1 ends an unclosed block, reported once. */
    p = parse_text("model m(x) -> t {\n    y = f(x\n\ndata d = idx(\"a\")\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:4:1: error: expected ')' to close the call "
                                             "to 'f', found 'data'"));
    /* A header line without its '{': the body is skipped as a whole, '{' on the next
     * line included. */
    p = parse_text("model m(x) -> t\n    h = x\n    return h\n}\nlabels b = {1}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:1:16: error: expected '{' to open the body "
                                             "of the model 'm', found end of line"));
    p = parse_text("model m(x) -> t {\n    for i in xs\n    {\n        y = i\n    }\n"
                   "    return y\n}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:2:16: error: expected '{' to open the body "
                                             "of the 'for' loop, found end of line"));
    /* An unterminated string does not take the rest of its call with it. */
    p = parse_text("data d = idx(\"a,\n             \"b\")\nlabels b = {1}\n");
    CHECK(p.errors == 1 && contains(p.diags, "t.nnq:1:14: error: unterminated string"));
    /* One unknown escape message per string. */
    p = parse_text("train m on d {\n    save \"C:\\x\\m\"\n}\n");
    CHECK(p.errors == 1);
    /* Errors in later declarations are still found. */
    p = parse_text("model m(x) -> t {\n    return x +\n}\ndata d = f(\ntrain m on d {\n"
                   "    batch 1\n}\n");
    CHECK(p.errors == 3);
    /* A location-less error and a NUL byte on load. */
    size_t size = 0;
    char *buf = NULL;
    FILE *out = open_memstream(&buf, &size);
    Diag *diag = diag_new(out);
    CHECK(source_load(test_arena, "/nonexistent/x.nnq", diag) == NULL);
    diag_error_noloc(diag, "plain %d", 1);
    CHECK(diag_error_count(diag) == 2);
    diag_free(diag);
    fclose(out);
    CHECK_STR(buf, "nnqc: error: cannot read '/nonexistent/x.nnq': No such file or directory\n"
                   "nnqc: error: plain 1\n");
    free(buf);
}

static void test_locations(void) {
    const AstNode *n = parse_expr("foo(a) + 2 * b");
    CHECK(n && n->kind == AST_BINARY && n->loc.line == 1 && n->loc.col == 10);
    if (!n)
        return;
    CHECK(n->kids[0]->kind == AST_CALL && n->kids[0]->loc.col == 10);
    CHECK(n->kids[1]->loc.col == 19 && n->kids[1]->kids[1]->loc.col == 23);
    CHECK(n->loc.file && strcmp(n->loc.file->path, "t.nnq") == 0);
}

static void test_example_program(void) {
    const char *path = NNQ_SOURCE_DIR "/examples/fashion_mlp_pmf.nnq";
    char *text = read_file(path);
    CHECK(text != NULL);
    if (!text)
        return;
    Parsed p = parse_text(text);
    CHECK(p.root && p.errors == 0);
    if (!p.root)
        return;
    const AstNode *r = p.root;
    CHECK(r->nkids == 6);
    if (r->nkids != 6)
        return;
    CHECK(r->kids[0]->kind == AST_IMPORT && strcmp(r->kids[0]->name, "std.projections") == 0);
    CHECK(r->kids[1]->kind == AST_LABELS && strcmp(r->kids[1]->name, "binary") == 0);
    CHECK_STR(sexpr(r->kids[1]->kids[0]), "{(neg 1) (pos 1)}");
    const AstNode *m = r->kids[2];
    CHECK(m->kind == AST_MODEL && strcmp(m->name, "mlp") == 0 && m->nkids == 6);
    CHECK(m->kids[0]->kind == AST_PARAMS && m->kids[0]->nkids == 1);
    const AstNode *xt = m->kids[0]->kids[0]->kids[0];
    CHECK(xt->kind == AST_TYPE && strcmp(xt->name, "f32") == 0 && xt->nkids == 3);
    CHECK(m->kids[1]->kind == AST_TYPE && m->kids[1]->nkids == 1 && m->kids[1]->kids[0]->num == 10);
    CHECK(m->kids[5]->kind == AST_RETURN);
    CHECK_STR(sexpr(m->kids[3]->kids[0]),
              "(call relu (call batchnorm (call dense h 300 (= quant (call pmf binary)))))");
    CHECK(r->kids[3]->kind == AST_DATA && strcmp(r->kids[3]->name, "train") == 0);
    CHECK(r->kids[4]->kind == AST_DATA && strcmp(r->kids[4]->name, "test") == 0);
    const AstNode *t = r->kids[5];
    CHECK(t->kind == AST_TRAIN && strcmp(t->name, "mlp") == 0 && t->nkids == 11);
    CHECK(strcmp(t->kids[0]->name, "train") == 0);
    CHECK_STR(sexpr(t->kids[2]->kids[0]),
              "(call adam (= lr 0.001) (= schedule (call step (= every (qty iterations 7000)) "
              "(= gamma 0.2))))");
    CHECK(t->kids[9]->kind == AST_EVALUATE && t->kids[10]->kind == AST_SAVE);
}

static void test_stdlib_projections(void) {
    char *text = read_file(NNQ_SOURCE_DIR "/stdlib/projections.nnq");
    CHECK(text != NULL);
    if (!text)
        return;
    Parsed p = parse_text(text);
    CHECK(p.root && p.errors == 0);
    if (!p.root)
        return;
    const char *names[] = {"float",     "pmf",     "pgd",    "picm",       "md_softmax_s",
                           "md_softmax", "ste",     "md_tanh_s", "gd_tanh", "md_tanh",
                           "md_stanh_s", "gd_stanh"};
    int nnames = (int)(sizeof names / sizeof names[0]);
    CHECK(p.root->nkids == nnames);
    for (int i = 0; i < nnames && i < p.root->nkids; i++)
        check_at(p.root->kids[i]->kind == AST_PROJECTION &&
                     strcmp(p.root->kids[i]->name, names[i]) == 0,
                 names[i], __LINE__);
    if (p.root->nkids != nnames)
        return;
    const AstNode *pmf = p.root->kids[1];
    CHECK(pmf->kids[1] == NULL && pmf->nkids == 8);
    /* two labels: one aux value (the pair's half difference), more: one per label */
    CHECK(pmf->kids[2]->kind == AST_AUX);
    CHECK_STR(sexpr(pmf->kids[2]->kids[0]), "(if (== (card Q) 2) 1 (card Q))");
    CHECK(pmf->kids[3]->kind == AST_INIT && pmf->kids[6]->kind == AST_UPDATE);
    /* the draw placed in the label range: mid(Q) + half_range(Q) * w0 */
    const char *init = "(if (== (card Q) 2) (/ (- (call abs (- (+ (call mid Q) (* (call half_range Q) w0)) (index Q 0)))";
    CHECK(strncmp(sexpr(pmf->kids[3]->kids[0]), init, strlen(init)) == 0);
    CHECK_STR(sexpr(pmf->kids[7]->kids[0]), "(if (== (card Q) 2) (index Q (> (index a 0) 0)) (index Q (call argmax a)))");
    const AstNode *mds = p.root->kids[5];
    CHECK(mds->kids[6]->kind == AST_MOVE);
    const AstNode *ste = p.root->kids[6];
    CHECK_STR(sexpr(ste->kids[1]), "(== (card Q) 2)");
    CHECK(ste->kids[6]->kind == AST_AFTER);
    CHECK_STR(sexpr(ste->kids[5]->kids[0]), "(* (call grad w) (<= (call abs a) (call max Q)))");
}

/* Mutations of the example program: the parser must finish, and return an AST exactly
 * when it reported no error. */
static void test_mutations(void) {
    const char *file = read_file(NNQ_SOURCE_DIR "/examples/fashion_mlp_pmf.nnq");
    if (!file)
        return;
    char *text = strdup(file); /* outlives test_reset() */
    size_t len = strlen(text);
    const char pool[] = "(){}[]|,=:.\n\"#@-+ 1eaxtrain model data }{";
    unsigned long long seed = 42;
    FILE *sink = fopen("/dev/null", "w");
    int consistent = 0, runs = 3000;
    for (int run = 0; run < runs; run++) {
        char *buf = arena_alloc(test_arena, len + 8);
        memcpy(buf, text, len + 1);
        size_t n = len;
        int edits = 1 + run % 3;
        for (int e = 0; e < edits && n > 1; e++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(seed >> 33) % n;
            int op = (int)(seed >> 20) % 3;
            if (op == 0) { /* delete */
                memmove(buf + at, buf + at + 1, n - at);
                n--;
            } else if (op == 1) { /* replace */
                buf[at] = pool[(seed >> 40) % (sizeof pool - 1)];
            } else { /* truncate */
                buf[at] = '\0';
                n = at;
            }
        }
        Diag *diag = diag_new(sink);
        AstNode *root = lang_parse(test_arena, diag, source_from_string(test_arena, "m.nnq", buf));
        consistent += (root != NULL) == (diag_error_count(diag) == 0);
        diag_free(diag);
        if (run % 500 == 499)
            test_reset();
    }
    fclose(sink);
    free(text);
    CHECK(consistent == runs);
}

int main(void) {
    test_arena = arena_new();
    test_arena_basics();
    test_ast_kids();
    test_numbers();
    test_strings();
    test_tokens();
    test_token_table();
    test_precedence();
    test_primaries();
    test_layout();
    test_train_block();
    test_ast_dump();
    test_diagnostics();
    test_locations();
    test_example_program();
    test_stdlib_projections();
    test_mutations();
    arena_free(test_arena);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
