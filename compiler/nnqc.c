/* nnqc.c — the driver: parses flags, runs the pipeline, hands the result to the JIT
 * and the runtime. The passes, in order (each in its own file):
 *
 *   source_load -> lang_parse -> check_program -> lower_program -> proj_check_unused
 *   -> autodiff_module -> fuse_layers_module -> fuse_module -> cg_emit_module -> cg_optimize -> ORC LLJIT
 *   -> nnq_main(run)
 *
 * with verify_module after every IR pass when --verify-each is given (and always in
 * builds without NDEBUG). */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>

#include "codegen.h"
#include "ir.h"
#include "lang.h"
#include "nnq_rt.h"

#ifndef NNQ_STDLIB_DIR
#define NNQ_STDLIB_DIR "stdlib"
#endif

typedef enum Emit { EMIT_NONE, EMIT_TOKENS, EMIT_AST, EMIT_IR, EMIT_LLVM } Emit;

typedef struct Options {
    const char *command; /* run, check, or NULL with --emit */
    const char *file;
    Emit emit;
    const char *dump_after;
    const char *output; /* build: -o */
    bool verify_each;
    bool unshared_memory;
    bool no_cache;
    bool no_fuse_layers;
    int opt_level;
    NnqRunOptions run;
} Options;

static void usage(FILE *out) {
    fputs("usage: nnqc run FILE.nnq [options]       compile and train\n"
          "       nnqc build FILE.nnq -o TRAINER    write a standalone trainer executable\n"
          "       nnqc check FILE.nnq               report errors only\n"
          "       nnqc --emit=STAGE FILE.nnq        print a stage: tokens, ast, ir, llvm\n"
          "       nnqc inspect MODEL.nnqm           summarize a trained model file\n"
          "training options (run; a built trainer takes the same):\n",
          out);
    fputs(nnq_run_options_help(), out);
    fputs("compiler options:\n"
          "  -o PATH            the trainer to write (build)\n"
          "  -O N               LLVM optimization level 0-3 (default 2)\n"
          "  --dump-after=PASS  print the IR after lower, autodiff, fuse_layers or fuse\n"
          "  --verify-each      run the IR verifier after every pass\n"
          "  --no-share-memory  give every IR value its own buffer (no lifetime sharing)\n"
          "  --no-fuse-layers   keep bias_add + batch norm and relu_grad + bn_grad as separate ops\n"
          "  --no-cache         neither use nor fill the compiled-code cache ($NNQ_CACHE_DIR,\n"
          "                     else $XDG_CACHE_HOME/nnq, else ~/.cache/nnq)\n",
          out);
}

/* The compiled-code cache: $NNQ_CACHE_DIR, else $XDG_CACHE_HOME/nnq, else $HOME/.cache/nnq;
 * NULL when none can be named. */
static const char *cache_dir(char *buf, size_t n) {
    const char *env = getenv("NNQ_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len = env && *env ? snprintf(buf, n, "%s", env)
              : xdg && *xdg ? snprintf(buf, n, "%s/nnq", xdg)
              : home && *home ? snprintf(buf, n, "%s/.cache/nnq", home) : -1;
    return len > 0 && (size_t)len < n ? buf : NULL;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_args(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->opt_level = 2;
    nnq_run_options_default(&o->run);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define TAKES(flag)                                                                                \
    (strcmp(a, flag) == 0 ? (i + 1 < argc ? (val = argv[++i], 1) : (fprintf(stderr, "nnqc: error: %s needs a value\n", flag), -1)) \
     : strncmp(a, flag "=", strlen(flag) + 1) == 0 ? (val = a + strlen(flag) + 1, 1) : 0)
        int t = nnq_run_parse_option(&o->run, argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((t = TAKES("--emit"))) {
            if (t < 0) return 2;
            if (!strcmp(val, "tokens")) o->emit = EMIT_TOKENS;
            else if (!strcmp(val, "ast")) o->emit = EMIT_AST;
            else if (!strcmp(val, "ir")) o->emit = EMIT_IR;
            else if (!strcmp(val, "llvm")) o->emit = EMIT_LLVM;
            else {
                fprintf(stderr, "nnqc: error: unknown stage '%s' (tokens, ast, ir, llvm)\n", val);
                return 2;
            }
        } else if ((t = TAKES("--dump-after"))) {
            if (t < 0) return 2;
            if (strcmp(val, "lower") && strcmp(val, "autodiff") && strcmp(val, "fuse_layers") && strcmp(val, "fuse"))
                goto bad_value;
            o->dump_after = val;
        } else if ((t = TAKES("-o"))) {
            if (t < 0) return 2;
            o->output = val;
        } else if (!strcmp(a, "--verify-each")) {
            o->verify_each = true;
        } else if (!strcmp(a, "--no-share-memory")) {
            o->unshared_memory = true;
        } else if (!strcmp(a, "--no-cache")) {
            o->no_cache = true;
        } else if (!strcmp(a, "--no-fuse-layers")) {
            o->no_fuse_layers = true;
        } else if (!strncmp(a, "-O", 2)) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : "");
            if (v[0] < '0' || v[0] > '3' || v[1]) {
                fprintf(stderr, "nnqc: error: -O takes 0, 1, 2 or 3\n");
                return 2;
            }
            o->opt_level = v[0] - '0';
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nnqc: error: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!o->command && !o->emit && (!strcmp(a, "run") || !strcmp(a, "check") || !strcmp(a, "inspect") || !strcmp(a, "build"))) {
            o->command = a;
        } else if (!o->file) {
            o->file = a;
        } else {
            fprintf(stderr, "nnqc: error: unexpected argument '%s'\n", a);
            return 2;
        }
        continue;
    bad_value:
        fprintf(stderr, "nnqc: error: bad value '%s' for %s\n", val, a);
        return 2;
    }
    if ((!o->command && !o->emit) || !o->file) {
        usage(stderr);
        return 2;
    }
    if (o->command && !strcmp(o->command, "build") && !o->output) {
        fprintf(stderr, "nnqc: error: build needs -o TRAINER\n");
        return 2;
    }
    return -1;
}

/* nnqc build: the same module as `run`, plus a main(), as an object linked with the
 * runtime. The object goes to a temporary file next to the output. */
static bool build_trainer(const Options *o, const Program *prog, const IrModule *m, Diag *diag) {
    if (!prog->train) {
        diag_error_noloc(diag, "%s: nothing to build: the program has no train block", o->file);
        return false;
    }
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = cg_emit_module(m, ctx, false, diag);
    bool ok = false;
    if (mod) {
        cg_add_trainer_main(mod);
        size_t n = strlen(o->output) + 8;
        char *obj = malloc(n);
        snprintf(obj, n, "%s.o.tmp", o->output);
        ok = cg_write_object(mod, o->opt_level, obj, diag) && link_trainer(obj, o->output, diag);
        remove(obj);
        free(obj);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    return ok;
}

static bool verify(const Options *o, const IrModule *m, const char *after) {
#ifdef NDEBUG
    if (!o->verify_each) return true;
#endif
    if (verify_module(m, stderr)) return true;
    fprintf(stderr, "nnqc: note: after pass '%s'\n", after);
    return false;
}

static void dump(const Options *o, const IrModule *m, const char *pass) {
    if (o->dump_after && !strcmp(o->dump_after, pass)) {
        printf("; IR after %s\n", pass);
        ir_print_module(m, stdout);
    }
}

/* `nnqc inspect`: every tensor with its shape and, for quantized ones, how many values
 * take each label (which also proves every value is in Q: the reader decodes indices). */
static int inspect(const char *path) {
    char err[512];
    NnqModelFile *mf = nnq_model_read(path, err, sizeof err);
    if (!mf) {
        fprintf(stderr, "nnqc: error: %s\n", err);
        return 1;
    }
    printf("model %s: %d tensors\n", mf->model, mf->ntensors);
    for (int i = 0; i < mf->ntensors; i++) {
        const NnqModelTensor *t = &mf->tensors[i];
        int64_t n = 1;
        printf("%-20s [", t->name);
        for (int d = 0; d < t->rank; d++) {
            printf("%s%lld", d ? ", " : "", (long long)t->dims[d]);
            n *= t->dims[d];
        }
        printf("]");
        if (t->nlabels == 0) {
            double lo = n ? t->values[0] : 0, hi = lo;
            for (int64_t k = 0; k < n; k++) {
                if (t->values[k] < lo) lo = t->values[k];
                if (t->values[k] > hi) hi = t->values[k];
            }
            printf("  float32  min %g  max %g\n", lo, hi);
            continue;
        }
        printf("  %d labels ", t->nlabels);
        for (int l = 0; l < t->nlabels; l++) {
            int64_t count = 0;
            for (int64_t k = 0; k < n; k++) count += t->values[k] == t->labels[l];
            printf(" %g: %lld", t->labels[l], (long long)count);
        }
        printf("\n");
    }
    nnq_model_free(mf);
    return 0;
}

int main(int argc, char **argv) {
    Options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.command && !strcmp(o.command, "inspect")) return inspect(o.file);
    const char *stdlib_dir = getenv("NNQ_STDLIB");
    if (!stdlib_dir || !*stdlib_dir) stdlib_dir = NNQ_STDLIB_DIR;

    Arena *arena = arena_new();
    Diag *diag = diag_new(stderr);
    rc = 1;
    SourceFile *src = source_load(arena, o.file, diag);
    if (!src) goto done;
    if (o.emit == EMIT_TOKENS) {
        rc = lang_dump_tokens(src, diag, stdout) ? 0 : 1;
        goto done;
    }
    AstNode *root = lang_parse(arena, diag, src);
    if (!root) goto done;
    if (o.emit == EMIT_AST) {
        ast_dump(root, stdout);
        rc = 0;
        goto done;
    }
    Program *prog = check_program(arena, diag, root, stdlib_dir);
    if (!prog) goto done;
    prog->main_path = o.file;
    if (o.command && !strcmp(o.command, "check") && prog->nmodels == 0) {
        /* a library file: nothing to lower, but every projection is checked */
        rc = proj_check_unused(prog, diag, root) ? 0 : 1;
        goto done_prog;
    }
    IrModule *m = lower_program(prog, diag);
    /* After lowering, which instantiates the projections the model uses. */
    if (!m || !proj_check_unused(prog, diag, root) || !verify(&o, m, "lower")) goto done_prog;
    m->unshared_memory = o.unshared_memory;
    dump(&o, m, "lower");
    autodiff_module(m);
    if (!verify(&o, m, "autodiff")) goto done_prog;
    dump(&o, m, "autodiff");
    if (!o.no_fuse_layers) fuse_layers_module(m);
    if (!verify(&o, m, "fuse_layers")) goto done_prog;
    dump(&o, m, "fuse_layers");
    fuse_module(m);
    if (!verify(&o, m, "fuse")) goto done_prog;
    dump(&o, m, "fuse");
    if (o.emit == EMIT_IR) {
        ir_print_module(m, stdout);
        rc = 0;
    } else if (o.emit == EMIT_LLVM) {
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = cg_emit_module(m, ctx, false, diag);
        if (mod && (o.opt_level == 0 || cg_optimize(mod, o.opt_level, diag))) {
            char *text = LLVMPrintModuleToString(mod);
            fputs(text, stdout);
            LLVMDisposeMessage(text);
            rc = 0;
        }
        if (mod) LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
    } else if (!strcmp(o.command, "check")) {
        rc = 0;
    } else if (!strcmp(o.command, "build")) {
        rc = build_trainer(&o, prog, m, diag) ? 0 : 1;
    } else {
        if (!prog->train) {
            diag_error_noloc(diag, "%s: nothing to run: the program has no train block", o.file);
            goto done_prog;
        }
        char cache[4096];
        double t0 = now_seconds();
        bool cached;
        Jit *jit = jit_compile(m, o.opt_level, false, o.no_cache ? NULL : cache_dir(cache, sizeof cache), &cached, diag);
        if (!jit) goto done_prog;
        char *dup = strdup(o.file);
        o.run.base_dir = dirname(dup);
        NnqRun *run = nnq_run_new(&o.run);
        if (run) {
            if (o.run.profile && nnq_run_rank(run) == 0) /* rank 0 speaks for an MPI job */
                printf("compiled in %.2fs%s\n", now_seconds() - t0, cached ? " (from the compiled-code cache)" : "");
            rc = nnq_run_invoke(run, (int (*)(NnqRun *))jit_entry(jit));
            nnq_run_free(run);
        }
        free(dup);
        jit_free(jit);
    }
done_prog:
    sx_pool_free(prog->pool);
done:
    diag_free(diag);
    arena_free(arena);
    return rc;
}
