/* fuzz_compile.c — the whole compiler under a fuzzer: any byte string goes through
 * parsing, checking, projection instantiation (every projection of the file, used or
 * not), lowering, autodiff, fusion, the IR verifier and LLVM code generation (with
 * LLVM's module verifier; no optimization or JIT). Input that starts like IR text
 * (`module` or `; IR after`) goes through ir_parse instead (nnqc --from-ir), with an
 * empty program. It must never crash, hang or leak;
 * on input that lowers, the IR verifier must accept the IR and code generation must
 * succeed (it fails only on an internal error).
 *
 * With clang: cmake -DNNQ_FUZZ=ON -DCMAKE_C_COMPILER=clang builds `fuzz_compile`
 * (libFuzzer with ASan and UBSan; tools/test.sh runs it in CI for a bounded time on
 * tests/fuzz/regressions, the examples and the standard library). Always built:
 * `fuzz_replay`, which feeds files through the same entry point, with expectations:
 *
 *   fuzz_replay [--ok FILE...] [--golden FILE...] [--any FILE...]
 *
 *   --ok      each file must compile without an error (examples, the standard library)
 *   --golden  each NAME.nnq must report an error exactly when NAME.expected ends in a
 *             nonzero `exit: N` (the golden diagnostics cases)
 *   --any     each file only must not crash (tests/fuzz/regressions: every input a
 *             fuzzer or a bug report ever crashed the compiler with)
 *
 * and every file also cut at 64 places (the parser's recovery paths). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "codegen.h"
#include "pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Compiles one input; returns the number of errors reported (aborts on internal ones). */
static int compile_bytes(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    NnqCompileOptions o = {.stdlib_dir = NNQ_STDLIB_DIR, .diag_out = sink, .until = NNQ_STAGE_IR, .verify_each = true};
    /* IR text (nnqc --from-ir) when it looks like a module, with an empty program */
    bool ir = (size >= 6 && !memcmp(text, "module", 6)) || (size >= 10 && !memcmp(text, "; IR after", 10));
    if (ir) o.ir_path = "fuzz.ir", o.ir_text = text;
    NnqCompilation c;
    if (nnq_compile(&c, ir ? NULL : "fuzz.nnq", ir ? NULL : text, &o) && !c.library) {
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = cg_emit_module(c.m, ctx, false, c.diag);
        if (!mod) abort(); /* an internal error: the IR was valid */
        LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
    }
    if (c.internal_error && !ir) abort(); /* IR text that does not verify is the text's fault */
    int errors = diag_error_count(c.diag);
    nnq_compilation_free(&c);
    free(text);
    return errors;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    compile_bytes(data, size);
    return 0;
}

#ifndef NNQ_LIBFUZZER
static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The exit status a golden case expects: its .expected file's last line, `exit: N`. */
static int golden_exit(const char *nnq) {
    size_t n = strlen(nnq), len;
    char *path = malloc(n + 16);
    snprintf(path, n + 16, "%.*s.expected", (int)(n - 4), nnq);
    uint8_t *text = read_all(path, &len);
    free(path);
    if (!text) return -1;
    int status = -1;
    for (size_t i = len; i-- > 0;)
        if ((i == 0 || text[i - 1] == '\n') && len - i > 6 && !memcmp(text + i, "exit: ", 6)) {
            status = atoi((const char *)text + i + 6);
            break;
        }
    free(text);
    return status;
}

/* Replays one file (and its truncations); false when an expectation fails. */
static bool replay(const char *path, int want_errors /* 1 yes, 0 no, -1 either */) {
    size_t len;
    uint8_t *buf = read_all(path, &len);
    if (!buf) {
        fprintf(stderr, "fuzz_replay: cannot open %s\n", path);
        return false;
    }
    int errors = compile_bytes(buf, len);
    bool ok = want_errors < 0 || (errors > 0) == (want_errors > 0);
    if (!ok)
        fprintf(stderr, "FAIL %s: %d error%s, expected %s\n", path, errors, errors == 1 ? "" : "s",
                want_errors ? "at least one" : "none");
    for (size_t cut = 1; cut < len; cut += 1 + len / 64) compile_bytes(buf, cut);
    free(buf);
    return ok;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    enum { OK, GOLDEN, ANY } mode = ANY;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ok")) mode = OK;
        else if (!strcmp(argv[i], "--golden")) mode = GOLDEN;
        else if (!strcmp(argv[i], "--any")) mode = ANY;
        else if (mode != GOLDEN) {
            if (replay(argv[i], mode == OK ? 0 : -1)) passed++;
            else failed++;
        } else {
            int status = golden_exit(argv[i]);
            if (status < 0) {
                fprintf(stderr, "FAIL %s: no .expected file ending in `exit: N`\n", argv[i]);
                failed++;
                continue;
            }
            if (replay(argv[i], status != 0)) passed++;
            else failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
#endif
