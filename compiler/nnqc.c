/* nnqc.c — the driver: parses flags, runs the pipeline (pipeline.c, where the passes
 * are listed), then hands the IR module to the back end: the JIT and the runtime (run),
 * a standalone trainer (build), or a printed stage (--emit). The commands on trained
 * model files (inspect, eval, predict, export) are deploy.c's. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen.h"
#include "deploy.h"
#include "nnq_rt.h"
#include "pipeline.h"

#ifndef NNQ_STDLIB_DIR
#define NNQ_STDLIB_DIR "stdlib"
#endif

typedef enum Emit { EMIT_NONE, EMIT_TOKENS, EMIT_AST, EMIT_IR, EMIT_LLVM, EMIT_ASM, EMIT_OBJ } Emit;
static const char *const emit_names[] = {"", "tokens", "ast", "ir", "llvm", "asm", "obj"};

typedef struct Options {
    const char *command; /* run, check, or NULL with --emit */
    const char *file;
    Emit emit;
    const char *dump_after;
    const char *from_ir; /* --from-ir FILE.ir */
    const char *output; /* build, --emit: -o */
    bool verify_each;
    bool unshared_memory;
    bool no_cache;
    bool no_fuse_layers;
    int opt_level;
    NnqRunOptions run;
} Options;

/* The compiler's options (the run options are the runtime's: nnq_run_options). The
 * modes before -o are the usage lines' (their help: NULL). */
enum {
    OPT_H,
    OPT_HELP,
    OPT_VERSION,
    OPT_HELP_BUILTINS,
    OPT_HELP_LAYERS,
    OPT_HELP_SETTINGS,
    OPT_EMIT,
    OPT_FROM_IR,
    OPT_OUTPUT,
    OPT_OPT_LEVEL,
    OPT_DUMP_AFTER,
    OPT_VERIFY_EACH,
    OPT_NO_SHARE_MEMORY,
    OPT_NO_FUSE_LAYERS,
    OPT_NO_CACHE
};
static const NnqOption options[] = {
    [OPT_H] = {"-h", NULL, NULL},
    [OPT_HELP] = {"--help", NULL, NULL},
    [OPT_VERSION] = {"--version", NULL, NULL},
    [OPT_HELP_BUILTINS] = {"--help-builtins", NULL, NULL},
    [OPT_HELP_LAYERS] = {"--help-layers", NULL, NULL},
    [OPT_HELP_SETTINGS] = {"--help-settings", NULL, NULL},
    [OPT_EMIT] = {"--emit", "STAGE", NULL},
    [OPT_FROM_IR] = {"--from-ir", "FILE.ir", NULL},
    [OPT_OUTPUT] = {"-o", "PATH",
                    "the trainer to write (build); where --emit writes (default stdout)"},
    [OPT_OPT_LEVEL] = {"-O", "N",
                       "LLVM optimization level 0-3 (default 2; 3 also unrolls and\n"
                       "interleaves loops)"},
    [OPT_DUMP_AFTER] = {"--dump-after", "PASS",
                        "print the IR after a pass: lower, instantiate, autodiff, fuse_layers,\n"
                        "fuse or memplan"},
    [OPT_VERIFY_EACH] = {"--verify-each", NULL, "run the IR verifier after every pass"},
    [OPT_NO_SHARE_MEMORY] = {"--no-share-memory", NULL,
                             "give every IR value its own buffer (no lifetime sharing)"},
    [OPT_NO_FUSE_LAYERS] = {"--no-fuse-layers", NULL,
                            "keep bias_add + batch norm (+ relu, + maxpool), relu_grad + bn_grad,\n"
                            "relu + maxpool and add + relu as separate ops"},
    [OPT_NO_CACHE] = {"--no-cache", NULL,
                      "neither use nor fill the compiled-code cache ($NNQ_CACHE_DIR,\n"
                      "else $XDG_CACHE_HOME/nnq, else ~/.cache/nnq)"},
    {NULL, NULL, NULL},
};
static const NnqOption *const compiler_options = options + OPT_OUTPUT; /* those the help lists */

static void usage(FILE *out) {
    fputs("usage: nnqc run FILE.nnq [options]       compile and train\n"
          "       nnqc build FILE.nnq -o TRAINER    write a standalone trainer executable\n"
          "       nnqc check FILE.nnq               report errors only\n"
          "       nnqc --emit=STAGE FILE.nnq        print a stage: tokens, ast, ir, llvm, asm, obj\n"
          "       nnqc --from-ir FILE.ir [FILE.nnq] --emit=STAGE | check | run | build\n"
          "                                         start from IR text (FILE.nnq: its projections and settings)\n"
          "       nnqc inspect MODEL.nnqm           summarize a trained model file\n"
          "       nnqc eval | predict | export MODEL.nnqm ...   use a trained model (nnqc eval --help)\n"
          "       nnqc --help-layers | --help-settings | --help-builtins\n"
          "                                         the layers; a train block's settings; projections' functions\n"
          "       nnqc --version                    this build, its LLVM, the CPU and the libraries it runs on\n"
          "training options (run; a built trainer takes the same):\n",
          out);
    nnq_options_print(out, nnq_run_options);
    fputs("compiler options:\n", out);
    nnq_options_print(out, compiler_options);
    fputs("environment:\n"
          "  NNQ_ISA=avx2|portable  generate code and run kernels for at most AVX2 (or SSE2),\n"
          "                     as on an older CPU (default: the widest this CPU runs)\n"
          "  NNQ_JITDUMP=1      name the generated functions for perf: a jitdump file under\n"
          "                     $JITDUMPDIR/.debug/jit (else $HOME's) for perf inject --jit\n"
          "  NNQ_CACHE_MAX=SIZE the most the compiled-code cache holds (bytes, or with K, M\n"
          "                     or G; 0: no bound; default 1G): past it, the programs run\n"
          "                     longest ago go\n",
          out);
}

/* The compiled-code cache: $NNQ_CACHE_DIR, else $XDG_CACHE_HOME/nnq, else $HOME/.cache/nnq
 * (dir NULL when none can be named), holding at most $NNQ_CACHE_MAX bytes (a whole number,
 * or with K, M or G: KiB, MiB, GiB; 0: no bound; default 1G). False after reporting a
 * bad $NNQ_CACHE_MAX. */
static bool cache_config(JitCache *cache, char *buf, size_t n) {
    const char *env = getenv("NNQ_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len = env && *env ? snprintf(buf, n, "%s", env)
              : xdg && *xdg ? snprintf(buf, n, "%s/nnq", xdg)
              : home && *home ? snprintf(buf, n, "%s/.cache/nnq", home) : -1;
    cache->dir = len > 0 && (size_t)len < n ? buf : NULL;
    cache->max_bytes = (uint64_t)1 << 30;
    const char *max = getenv("NNQ_CACHE_MAX");
    if (!max || !*max) return true;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(max, &end, 10);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : *end ? -1 : 0;
    if (shift > 0) end++;
    if (*max < '0' || *max > '9' || errno || shift < 0 || *end || v > (~0ull >> shift)) {
        fprintf(stderr, "nnqc: error: NNQ_CACHE_MAX is '%s': the compiled-code cache's size, a whole number of "
                "bytes or with K, M or G (e.g. 500M; 0: no bound)\n", max);
        return false;
    }
    cache->max_bytes = (uint64_t)v << shift;
    return true;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The commands parse_args takes (deploy.c's run on their own: deploy_commands). */
static const char *const commands[] = {"run", "check", "build", NULL};

/* Whether word is one of a NULL-terminated list (commands, deploy_commands). */
static bool listed(const char *const *list, const char *word) {
    for (const char *const *c = list; *c; c++)
        if (!strcmp(word, *c)) return true;
    return false;
}

static int parse_args(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->opt_level = 2;
    nnq_run_options_default(&o->run);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int t = nnq_run_parse_option(&o->run, argc, argv, &i);
        if (t < 0)
            return 2;
        if (t > 0)
            continue;
        int k = a[0] == '-' && a[1] == 'O' && a[2] && a[2] != '='
                    ? OPT_OPT_LEVEL
                    : nnq_option_find(options, argc, argv, &i, &val);
        if (k == OPT_OPT_LEVEL && !val)
            val = a + 2; /* -O2 */
        switch (k) {
        case -2:
            return 2;
        case OPT_H:
        case OPT_HELP: usage(stdout); return 0;
        case OPT_VERSION: { /* for a bug report: this build and what it runs on */
            char *cpu = LLVMGetHostCPUName();
            printf("nnqc %s\nLLVM %s, host CPU %s\n", NNQ_VERSION, LLVM_VERSION_STRING, cpu);
            LLVMDisposeMessage(cpu);
            nnq_describe_libraries(stdout);
            return 0;
        }
        case OPT_HELP_BUILTINS: /* the functions of projections, as a Markdown table */
            printf("| function | value |\n|---|---|\n");
            proj_builtins_print(stdout);
            return 0;
        case OPT_HELP_LAYERS: /* the layers, as a Markdown table */
            printf("| layer | input | result | parameters |\n|---|---|---|---|\n");
            layers_print(stdout);
            return 0;
        case OPT_HELP_SETTINGS: /* a train block's settings, as a Markdown table */
            printf("| setting | meaning | default |\n|---|---|---|\n");
            train_settings_print(stdout);
            return 0;
        case OPT_EMIT:
            for (int e = EMIT_TOKENS; e <= EMIT_OBJ; e++)
                if (!strcmp(val, emit_names[e])) o->emit = (Emit)e;
            if (!o->emit) {
                fprintf(stderr, "nnqc: error: unknown stage '%s' (tokens, ast, ir, llvm, asm, obj)\n", val);
                return 2;
            }
            continue;
        case OPT_DUMP_AFTER: {
            bool known = false;
            for (int p = 0; nnq_ir_pass_name(p); p++) known |= !strcmp(val, nnq_ir_pass_name(p));
            if (!known) {
                fprintf(stderr, "nnqc: error: unknown pass '%s' for --dump-after (", val);
                for (int p = 0; nnq_ir_pass_name(p); p++) fprintf(stderr, "%s%s", p ? ", " : "", nnq_ir_pass_name(p));
                fprintf(stderr, ")\n");
                return 2;
            }
            o->dump_after = val;
            continue;
        }
        case OPT_FROM_IR: o->from_ir = val; continue;
        case OPT_OUTPUT: o->output = val; continue;
        case OPT_OPT_LEVEL:
            if (val[0] < '0' || val[0] > '3' || val[1]) {
                fprintf(stderr, "nnqc: error: -O takes 0, 1, 2 or 3\n");
                return 2;
            }
            o->opt_level = val[0] - '0';
            continue;
        case OPT_VERIFY_EACH: o->verify_each = true; continue;
        case OPT_NO_SHARE_MEMORY: o->unshared_memory = true; continue;
        case OPT_NO_FUSE_LAYERS: o->no_fuse_layers = true; continue;
        case OPT_NO_CACHE: o->no_cache = true; continue;
        default: break; /* -1: not an option */
        }
        if (a[0] == '-' && a[1]) {
            nnq_option_unknown(a, "", (const NnqOption *const[]){nnq_run_options, options, NULL}, " (see nnqc --help)");
            return 2;
        } else if (!o->command && !o->emit && listed(commands, a)) {
            o->command = a;
        } else if (!o->command && !o->emit && !o->file && !strpbrk(a, "./") && access(a, F_OK) != 0) {
            /* a word that names no command and no file: a misspelt command */
            DiagNear near = diag_near(a);
            for (const char *const *c = commands; *c; c++) diag_near_offer(&near, *c);
            for (const char *const *c = deploy_commands; *c; c++) diag_near_offer(&near, *c);
            char hint[96];
            fprintf(stderr, "nnqc: error: unknown command '%s'%s (see nnqc --help)\n", a,
                    diag_near_hint(&near, hint, sizeof hint));
            return 2;
        } else if (!o->file) {
            o->file = a;
        } else {
            fprintf(stderr, "nnqc: error: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (o->from_ir && (o->emit == EMIT_TOKENS || o->emit == EMIT_AST)) {
        fprintf(stderr, "nnqc: error: --from-ir starts after the front end: --emit=ir, llvm, asm or obj\n");
        return 2;
    }
    if ((!o->command && !o->emit) || (!o->file && !(o->from_ir && o->command) && !(o->from_ir && o->emit))) {
        usage(stderr);
        return 2;
    }
    if (o->command && !strcmp(o->command, "build") && !o->output) {
        fprintf(stderr, "nnqc: error: build needs -o TRAINER\n");
        return 2;
    }
    /* an output that is an input file: `nnqc build p.nnq -o p.nnq` replaced the program
     * with the trainer (a C compiler refuses it too) */
    const char *outs[][2] = {{"-o", o->output}, {"--metrics", o->run.metrics_path}}, *ins[] = {o->file, o->from_ir};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2; j++)
            if (nnq_same_file(outs[k][1], ins[j])) {
                fprintf(stderr, "nnqc: error: %s '%s' is the input file '%s'\n", outs[k][0], outs[k][1], ins[j]);
                return 2;
            }
    return -1;
}

/* nnqc build: the same module as `run`, plus a main(), as objects (generated on
 * --threads threads, as for run) linked with the runtime (link.c). */
static bool build_trainer(const Options *o, const Program *prog, const IrModule *m, Diag *diag) {
    if (!prog->train) {
        diag_error_noloc(diag, "%s: nothing to build: the program has no train block", o->file);
        return false;
    }
    if (!link_output_ok(o->output, diag)) /* before its code is compiled (seconds for a large network) */
        return false;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = cg_emit_module(m, ctx, false, diag);
    bool ok = false;
    if (mod) {
        cg_set_fingerprint(mod, NULL);
        cg_add_trainer_main(mod);
        LLVMMemoryBufferRef objs[CG_MAX_OBJECTS];
        int nobj = cg_compile_objects(mod, o->opt_level, o->run.threads, objs, diag);
        ok = nobj > 0 && link_trainer(objs, nobj, o->output, diag);
        for (int i = 0; i < nobj; i++) LLVMDisposeMemoryBuffer(objs[i]);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    return ok;
}

/* Where --emit writes: standard output, or with -o a stream in memory that emit_close
 * writes to PATH whole (nnq_file_write: PATH.tmp, then renamed), so a full disk or a
 * missing directory is reported and leaves no partial file. Standard output's errors
 * are reported at exit (nnq_stdout_check). */
typedef struct EmitOut {
    FILE *f;
    char *buf;
    size_t len;
} EmitOut;

static FILE *emit_open(EmitOut *e, const char *path) {
    *e = (EmitOut){stdout, NULL, 0};
    if (path && !(e->f = open_memstream(&e->buf, &e->len))) {
        fprintf(stderr, "nnqc: error: cannot write '%s': %s\n", path, strerror(errno));
        e->f = NULL;
    }
    return e->f;
}

/* ok: the stage was printed; true when it was and reached PATH. */
static bool emit_close(EmitOut *e, const char *path, bool ok) {
    if (!path || !e->f) return ok && e->f;
    ok = fclose(e->f) == 0 && ok; /* the memory stream's buffer is final */
    char msg[4400];
    if (ok && !nnq_file_write(path, e->buf, e->len, msg, sizeof msg)) {
        fprintf(stderr, "nnqc: error: cannot write '%s': %s\n", path, msg);
        ok = false;
    }
    free(e->buf);
    return ok;
}

static int nnqc_main(int argc, char **argv) {
    nnq_run_prepare(); /* OpenBLAS's threads stopped before they take a CPU from compiling */
    const char *stdlib_dir = getenv("NNQ_STDLIB");
    if (!stdlib_dir || !*stdlib_dir) stdlib_dir = NNQ_STDLIB_DIR;
    if (argc > 1 && listed(deploy_commands, argv[1])) return deploy_main(argc, argv, stdlib_dir);
    Options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;

    if (o.emit == EMIT_TOKENS) { /* the lexer alone: no parse */
        Arena *arena = arena_new();
        Diag *diag = diag_new(stderr);
        SourceFile *src = source_load(arena, o.file, diag);
        EmitOut out = {0};
        bool ok = src && emit_open(&out, o.output) && lang_dump_tokens(src, diag, out.f);
        rc = src && emit_close(&out, o.output, ok) ? 0 : 1;
        diag_free(diag);
        arena_free(arena);
        return rc;
    }
    NnqCompileOptions co = {.stdlib_dir = stdlib_dir, .dump_after = o.dump_after, .verify_each = o.verify_each,
                            .ir_path = o.from_ir,
                            .no_fuse_layers = o.no_fuse_layers, .unshared_memory = o.unshared_memory,
                            .until = o.emit == EMIT_AST ? NNQ_STAGE_PARSE : NNQ_STAGE_IR};
    NnqCompilation c;
    rc = 1;
    double t0 = now_seconds(); /* --profile's "compiled in": from the parse to native code ready */
    if (!nnq_compile(&c, o.file, NULL, &co)) goto done;
    Diag *diag = c.diag;
    IrModule *m = c.m;
    EmitOut out;
    if (o.emit == EMIT_AST) {
        if (emit_open(&out, o.output)) ast_dump(c.root, out.f);
        rc = emit_close(&out, o.output, true) ? 0 : 1;
    } else if (c.library) {
        /* a library file: checked; nothing to lower, run or emit */
        if (o.command && !strcmp(o.command, "check")) rc = 0;
        else diag_error_noloc(diag, "%s: the program defines no model", o.file);
    } else if (o.emit == EMIT_IR) {
        if (emit_open(&out, o.output)) ir_print_module(m, out.f);
        rc = emit_close(&out, o.output, true) ? 0 : 1;
    } else if (o.emit == EMIT_LLVM || o.emit == EMIT_ASM || o.emit == EMIT_OBJ) {
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = cg_emit_module(m, ctx, false, diag);
        if (mod && o.emit != EMIT_LLVM) {
            LLVMMemoryBufferRef buf = cg_emit_native(mod, o.opt_level, o.emit == EMIT_ASM, diag);
            if (buf) {
                size_t n = LLVMGetBufferSize(buf);
                bool wrote = emit_open(&out, o.output) && fwrite(LLVMGetBufferStart(buf), 1, n, out.f) == n;
                rc = emit_close(&out, o.output, wrote) ? 0 : 1;
                LLVMDisposeMemoryBuffer(buf);
            }
        } else if (mod && (o.opt_level == 0 || cg_optimize(mod, o.opt_level, diag))) {
            char *text = LLVMPrintModuleToString(mod);
            bool wrote = emit_open(&out, o.output) && fputs(text, out.f) >= 0;
            rc = emit_close(&out, o.output, wrote) ? 0 : 1;
            LLVMDisposeMessage(text);
        }
        if (mod) LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
    } else if (c.prog->train && nnq_same_file(c.prog->train->save_path, o.file)) { /* training would replace it */
        diag_error_noloc(diag, "the model path '%s' is the program file '%s'", c.prog->train->save_path, o.file);
    } else if (!strcmp(o.command, "check")) {
        rc = 0;
    } else if (!strcmp(o.command, "build")) {
        rc = build_trainer(&o, c.prog, m, diag) ? 0 : 1;
    } else {
        if (!c.prog->train) {
            diag_error_noloc(diag, "%s: nothing to run: the program has no train block", o.file);
            goto done;
        }
        char cache_path[4096];
        JitCache cache;
        if (!o.no_cache && !cache_config(&cache, cache_path, sizeof cache_path)) {
            rc = 2;
            goto done;
        }
        bool cached;
        Jit *jit = jit_compile(m, o.opt_level, o.run.threads, false, o.no_cache ? NULL : &cache, &cached, diag);
        if (!jit) goto done;
        char *dup = strdup(o.file ? o.file : o.from_ir);
        o.run.base_dir = dirname(dup);
        NnqRun *run = nnq_run_new(&o.run);
        if (run) {
            if (o.run.profile && nnq_run_rank(run) == 0) /* rank 0 speaks for an MPI job */
                printf("compiled in %.2fs for %s%s\n", now_seconds() - t0, nnq_isa(),
                       cached ? " (from the compiled-code cache)" : "");
            jit_prefault(jit);
            rc = nnq_run_invoke(run, (int (*)(NnqRun *))jit_entry(jit));
            nnq_run_free(run);
        }
        free(dup);
        jit_free(jit);
    }
done:
    nnq_compilation_free(&c);
    return rc;
}

int main(int argc, char **argv) {
    nnq_std_fds(); /* before any file is opened */
    int rc = nnqc_main(argc, argv);
    /* output lost on the way (a full disk under a redirection) is a failure too */
    if (!nnq_stdout_check() && rc == 0) rc = 1;
    return rc;
}
