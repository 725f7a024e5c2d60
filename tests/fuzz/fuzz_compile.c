/* fuzz_compile.c — the front and middle end under a fuzzer: any byte string goes
 * through parsing, checking, projection instantiation, lowering, autodiff, fusion and
 * the IR verifier (no code generation). It must never crash, hang or leak; on input
 * that compiles, the verifier must accept the IR.
 *
 * With clang: cmake -DNNQ_FUZZ=ON -DCMAKE_C_COMPILER=clang builds `fuzz_compile`
 * (libFuzzer; run it on tests/fuzz/corpus or examples/). Always built: `fuzz_replay`,
 * which feeds every file named on its command line through the same entry point; the
 * default test suite runs it over the examples, the standard library and the golden
 * cases. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "lang.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    Arena *arena = arena_new();
    Diag *diag = diag_new(sink);
    SourceFile *src = source_from_string(arena, "fuzz.nnq", text);
    AstNode *root = lang_parse(arena, diag, src);
    Program *prog = root ? check_program(arena, diag, root, NNQ_STDLIB_DIR) : NULL;
    if (prog && prog->nmodels > 0) {
        IrModule *m = lower_program(prog, diag);
        if (m) {
            autodiff_module(m);
            fuse_module(m);
            if (!verify_module(m, stderr)) abort();
        }
    }
    if (prog) sx_pool_free(prog->pool);
    diag_free(diag);
    arena_free(arena);
    free(text);
    return 0;
}

#ifndef NNQ_LIBFUZZER
int main(int argc, char **argv) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "fuzz_replay: cannot open %s\n", argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        size_t got = fread(buf, 1, (size_t)len, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        /* Truncations of every input: the parser's recovery paths. */
        for (size_t cut = 1; cut < got; cut += 1 + got / 64) LLVMFuzzerTestOneInput(buf, cut);
        free(buf);
        n++;
    }
    printf("%d passed, 0 failed\n", n);
    return 0;
}
#endif
