/* deploy.c — nnqc's commands on a trained model file: inspect, eval, predict and export.
 * They read the file (runtime/model_file.c), run it with the inference engine
 * (runtime/infer.c, no LLVM) and write through the runtime's durable writers, so a
 * failed command leaves no partial file. The C exporter is export_c.c.
 *
 * Requires: the runtime (data loaders and writers run inside nnq_run_invoke, which turns
 * their failures into "nnqc: error: ..." and exit status 1). eval --data compiles the
 * program's front end (pipeline.c) for its data declaration. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deploy.h"
#include "nnq_infer.h"
#include "pipeline.h"

typedef struct DeployArgs {
    const char *command, *model;
    const char *images, *labels;   /* eval: --images / --labels; predict: the input */
    const char *cifar;             /* eval --cifar DIR */
    int cifar_classes, cifar_split;
    const char *data, *program;    /* eval --data NAME PROGRAM.nnq */
    const char *output, *format, *name;
    int top, batch;
    bool floats, confusion, coarse;
    NnqRunOptions run;
    const char *stdlib_dir;
} DeployArgs;

static DeployArgs args;          /* the command being run, for the nnq_run_invoke entries */
static NnqModelFile *model_file;
static NnqNet *net;

/* The options of inspect, eval, predict and export (the usage says which takes which),
 * and the two run options they take. */
enum {
    D_IMAGES, D_LABELS, D_CIFAR, D_CLASSES, D_COARSE, D_SPLIT, D_DATA, D_OUTPUT, D_TOP, D_FORMAT, D_NAME, D_FLOAT,
    D_CONFUSION, D_BATCH, D_H, D_HELP
};
static const NnqOption deploy_options[] = {
    [D_IMAGES] = {"--images", "FILE", NULL}, [D_LABELS] = {"--labels", "FILE", NULL},
    [D_CIFAR] = {"--cifar", "DIR", NULL},    [D_CLASSES] = {"--classes", "N", NULL},
    [D_COARSE] = {"--coarse", NULL, NULL},   [D_SPLIT] = {"--split", "SPLIT", NULL},
    [D_DATA] = {"--data", "NAME", NULL},     [D_OUTPUT] = {"-o", "PATH", NULL},
    [D_TOP] = {"--top", "K", NULL},          [D_FORMAT] = {"--format", "FORMAT", NULL},
    [D_NAME] = {"--name", "PREFIX", NULL},   [D_FLOAT] = {"--float", NULL, NULL},
    [D_CONFUSION] = {"--confusion", NULL, NULL}, [D_BATCH] = {"--batch", "N", NULL},
    [D_H] = {"-h", NULL, NULL},              [D_HELP] = {"--help", NULL, NULL},
    {NULL, NULL, NULL},
};
static const NnqOption run_taken[] = {{"--threads", "N", NULL}, {"--data-dir", "DIR", NULL}, {NULL, NULL, NULL}};

static void deploy_usage(FILE *out) {
    fputs("usage: nnqc inspect MODEL.nnqm\n"
          "       nnqc eval MODEL.nnqm --images FILE --labels FILE   IDX (.gz) or .npy files\n"
          "       nnqc eval MODEL.nnqm --cifar DIR [--classes 10|100 [--coarse]] [--split test|train]\n"
          "       nnqc eval MODEL.nnqm --data NAME PROGRAM.nnq       a data declaration of the program\n"
          "       nnqc predict MODEL.nnqm IMAGES [-o OUT.npy] [--top K]   IDX (.gz) or .npy images\n"
          "       nnqc predict MODEL.nnqm --cifar DIR [--classes 10|100] [--split test|train] [-o OUT.npy] [--top K]\n"
          "       nnqc export MODEL.nnqm --format c|npy -o DIR [--name PREFIX]\n"
          "options: --float (eval, predict: float32 weights instead of the packed engine),\n"
          "         --confusion (eval: the confusion matrix of any class count),\n"
          "         --batch N (eval, predict: samples per engine call, default 100; at most 4 run\n"
          "         dense layers straight from the packed bits),\n"
          "         --threads N, --data-dir DIR\n",
          out);
}

/* ---- arguments ---- */

static int parse(int argc, char **argv) {
    memset(&args, 0, sizeof args);
    nnq_run_options_default(&args.run);
    args.run.quiet = true;
    args.cifar_classes = 10, args.cifar_split = 1, args.batch = 100;
    args.command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        long long n = 0;
        int t = 0;
        if (!strncmp(a, "--threads", 9) || !strncmp(a, "--data-dir", 10)) /* the run options these commands take */
            t = nnq_run_parse_option(&args.run, argc, argv, &i);
        if (t < 0) return 2;
        if (t > 0) continue;
        int k = nnq_option_find(deploy_options, argc, argv, &i, &v);
        const char **str = k == D_IMAGES ? &args.images : k == D_LABELS ? &args.labels : k == D_CIFAR ? &args.cifar
                           : k == D_DATA ? &args.data : k == D_OUTPUT ? &args.output : k == D_FORMAT ? &args.format
                           : k == D_NAME ? &args.name : NULL;
        if (k == -2) return 2;
        if (str) {
            *str = v;
        } else if (k == D_SPLIT) {
            if (strcmp(v, "test") && strcmp(v, "train")) {
                fprintf(stderr, "nnqc: error: --split takes test or train, not '%s'\n", v);
                return 2;
            }
            args.cifar_split = !strcmp(v, "test");
        } else if (k == D_CLASSES) {
            if (strcmp(v, "10") && strcmp(v, "100")) {
                fprintf(stderr, "nnqc: error: --classes takes 10 or 100, not '%s'\n", v);
                return 2;
            }
            args.cifar_classes = atoi(v);
        } else if ((k == D_TOP || k == D_BATCH) && !nnq_option_number(deploy_options[k].flag, v, 1, 100000, &n)) {
            return 2;
        } else if (k == D_TOP) {
            args.top = (int)n;
        } else if (k == D_BATCH) {
            args.batch = (int)n;
        } else if (k == D_FLOAT) {
            args.floats = true;
        } else if (k == D_CONFUSION) {
            args.confusion = true;
        } else if (k == D_COARSE) {
            args.coarse = true;
        } else if (k == D_H || k == D_HELP) {
            deploy_usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            char where[32];
            snprintf(where, sizeof where, " for %s", args.command);
            nnq_option_unknown(a, where, (const NnqOption *const[]){deploy_options, run_taken, NULL}, "");
            return 2;
        } else if (!args.model) {
            args.model = a;
        } else if (!strcmp(args.command, "predict") && !args.images) {
            args.images = a;
        } else if (!strcmp(args.command, "eval") && args.data && !args.program) {
            args.program = a;
        } else {
            fprintf(stderr, "nnqc: error: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    const char *why = !args.model ? "a model file is needed" : NULL;
    if (!why && !strcmp(args.command, "eval")) {
        int sources = (args.images || args.labels) + !!args.cifar + !!args.data;
        why = sources != 1 ? "eval takes one of --images/--labels, --cifar or --data"
              : args.coarse && (!args.cifar || args.cifar_classes != 100) ? "--coarse goes with --cifar DIR --classes 100"
              : (args.images != NULL) != (args.labels != NULL) ? "--images and --labels go together"
              : args.data && !args.program ? "--data NAME needs the program: nnqc eval MODEL --data NAME PROGRAM.nnq"
                                           : NULL;
    } else if (!why && !strcmp(args.command, "predict")) {
        why = !args.images == !args.cifar ? "predict takes an image file or --cifar DIR"
              : args.coarse               ? "--coarse goes with eval (predict writes the class the model has)"
              : args.labels || args.data  ? "predict reads images only (--labels and --data go with eval)"
                                          : NULL;
    } else if (!why && !strcmp(args.command, "export")) {
        why = !args.format || (strcmp(args.format, "c") && strcmp(args.format, "npy"))
                  ? "export needs --format c or --format npy"
              : !args.output ? "export needs -o DIR"
              : args.name && strcmp(args.format, "c") ? "--name goes with --format c"
                             : NULL;
        if (!why && args.name && !export_c_name_ok(args.name)) {
            fprintf(stderr, "nnqc: error: --name '%s' is not a C identifier (letters, digits and '_', not "
                            "starting with a digit; at most 64)\n", args.name);
            return 2;
        }
    }
    if (why) {
        fprintf(stderr, "nnqc: error: %s\n", why);
        deploy_usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- inspect ---- */

/* Every tensor with its shape, its bytes as stored and, for quantized ones, how many
 * values take each label (which also proves every value is in Q: the reader decodes
 * indices); the architecture, one op per line; the whole model's size against float32. */
static int inspect(void) {
    char err[512];
    NnqModelFile *mf = nnq_model_read(args.model, err, sizeof err);
    if (!mf) {
        fprintf(stderr, "nnqc: error: %s\n", err);
        return 1;
    }
    printf("model %s: %d tensors\n", mf->model, mf->ntensors);
    int64_t stored = 0, as_float = 0;
    for (int i = 0; i < mf->ntensors; i++) {
        const NnqModelTensor *t = &mf->tensors[i];
        int64_t n = 1;
        printf("%-20s [", t->name);
        for (int d = 0; d < t->rank; d++) {
            printf("%s%lld", d ? ", " : "", (long long)t->dims[d]);
            n *= t->dims[d];
        }
        printf("]  %lld bytes", (long long)t->stored_bytes);
        stored += t->stored_bytes;
        as_float += 4 * n;
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
    const NnqModelArch *a = mf->arch;
    if (a) {
        printf("architecture: input [");
        for (int d = 0; d < a->input_rank; d++) printf("%s%lld", d ? ", " : "", (long long)a->input_dims[d]);
        printf("], %d classes, normalized per channel:", a->classes);
        for (int c = 0; c < a->norm_channels; c++) printf(" (x - %.6g) / %.6g", a->norm_shift[c], a->norm_scale[c]);
        printf("\n");
        for (int i = 0; i < a->nops; i++) {
            const NnqModelOp *op = &a->ops[i];
            printf("  %%%d = %s", i + 1, nnq_infer_op_name(op->op));
            for (int k = 0; k < nnq_infer_op_inputs(op->op); k++) printf("%s %%%d", k ? "," : "", op->in[k]);
            for (int k = 0; k < nnq_infer_op_tensors(op->op); k++) printf(", @%s", mf->tensors[op->tensor[k]].name);
            const char *names = nnq_infer_op_attr_names(op->op);
            for (int k = 0; k < nnq_infer_op_attrs(op->op); k++) {
                const char *end = strchr(names, ' ');
                int len = end ? (int)(end - names) : (int)strlen(names);
                printf(" %.*s %lld", len, names, (long long)op->attr[k]);
                names = end ? end + 1 : names + len;
            }
            printf("\n");
        }
    } else {
        printf("architecture: none (a version-%u file)\n", mf->version);
    }
    printf("size: %lld bytes of tensors, %lld as float32 (%.1fx smaller)\n", (long long)stored, (long long)as_float,
           stored ? (double)as_float / (double)stored : 0.0);
    nnq_model_free(mf);
    return 0;
}

/* ---- eval and predict ---- */

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int c = 1; c < n; c++)
        if (v[c] > v[best]) best = c; /* the first maximum wins, as the training's count */
    return best;
}

/* eval's data set: a declaration of the program (--data), or the one the --images /
 * --labels or --cifar arguments describe, named by its path. */
static const DataDecl *eval_data;
static DataDecl arg_data;

/* A data set loaded as a declaration says (unnormalized: the engine normalizes). */
static int32_t load_decl(NnqRun *run, const DataDecl *d) {
    switch (d->kind) {
    case DATA_IDX: return nnq_rt_data_idx(run, d->images, d->labels);
    case DATA_NPY: return nnq_rt_data_npy(run, d->images, d->labels);
    default: return nnq_rt_data_cifar(run, d->images, d->kind == DATA_CIFAR10 ? 10 : 100, d->split, d->coarse);
    }
}

static int eval_entry(NnqRun *run) {
    int32_t ds = load_decl(run, eval_data);
    const char *what = eval_data->name;
    const NnqModelArch *a = model_file->arch;
    nnq_rt_data_check(run, ds, a->input_rank, a->input_dims, a->classes, model_file->model);
    int64_t n = nnq_rt_data_count(run, ds), in = nnq_net_input_size(net), batch = args.batch;
    int classes = a->classes;
    float *x = nnq_rt_alloc(run, batch * in * 4);
    int32_t *y = nnq_rt_alloc(run, batch * 4);
    float *logits = nnq_rt_alloc(run, batch * classes * 4);
    int64_t *conf = nnq_rt_alloc(run, (int64_t)classes * classes * 8);
    memset(conf, 0, (size_t)classes * (size_t)classes * 8);
    char err[256];
    double engine = 0; /* seconds in the engine */
    for (int64_t s = 0; s < n; s += batch) {
        int64_t m = n - s < batch ? n - s : batch;
        nnq_rt_data_batch(run, ds, NULL, s, m, x, y, 0);
        double t0 = seconds();
        if (nnq_net_run(net, x, m, logits, err, sizeof err)) nnq_rt_fail(run, "%s", err);
        engine += seconds() - t0;
        for (int64_t k = 0; k < m; k++) conf[(int64_t)y[k] * classes + argmax(logits + k * classes, classes)]++;
    }
    int64_t correct = 0;
    for (int c = 0; c < classes; c++) correct += conf[(int64_t)c * classes + c];
    printf("model %s on %lld samples of %s (%s weights)\n", model_file->model, (long long)n, what,
           args.floats ? "float32" : "packed");
    printf("accuracy %.4f  (%lld of %lld)\n", (double)correct / (double)n, (long long)correct, (long long)n);
    printf("class  accuracy  correct / samples\n");
    for (int c = 0; c < classes; c++) {
        int64_t total = 0;
        for (int p = 0; p < classes; p++) total += conf[(int64_t)c * classes + p];
        if (total)
            printf("%5d  %.4f    %lld / %lld\n", c, (double)conf[(int64_t)c * classes + c] / (double)total,
                   (long long)conf[(int64_t)c * classes + c], (long long)total);
        else
            printf("%5d  -         0 / 0\n", c);
    }
    if (classes <= 20 || args.confusion) {
        printf("confusion matrix (rows: true class, columns: predicted class)\n     ");
        for (int p = 0; p < classes; p++) printf(" %5d", p);
        printf("\n");
        for (int c = 0; c < classes; c++) {
            printf("%5d", c);
            for (int p = 0; p < classes; p++) printf(" %5lld", (long long)conf[(int64_t)c * classes + p]);
            printf("\n");
        }
    } else {
        printf("(confusion matrix of %d classes: --confusion)\n", classes);
    }
    printf("engine: %.3f s, %.0f images/s at batch %lld (%s kernels)\n", engine, engine > 0 ? (double)n / engine : 0.0,
           (long long)batch, args.floats ? "float32" : nnq_net_isa());
    return 0;
}

/* The k best classes of v, best first (ties: the lower class first). */
static void top_classes(const float *v, int n, int k, int32_t *out) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < n; c++) {
            bool taken = false;
            for (int t = 0; t < j; t++) taken |= out[t] == c;
            if (!taken && (best < 0 || v[c] > v[best])) best = c;
        }
        out[j] = best;
    }
}

static int predict_entry(NnqRun *run) {
    const char *input = nnq_same_file(args.output, args.model)    ? args.model
                        : nnq_same_file(args.output, args.images) ? args.images
                                                                  : NULL; /* (--cifar: a directory) */
    if (input)
        nnq_rt_fail(run, "-o '%s' is the input file '%s'", args.output, input);
    int werr = args.output ? nnq_output_check(args.output) : 0; /* before the work, not after */
    if (werr)
        nnq_rt_fail(run, "cannot write '%s': %s", args.output, nnq_output_problem(werr));
    int32_t ds = args.cifar ? load_decl(run, eval_data) : nnq_data_images(run, args.images);
    const NnqModelArch *a = model_file->arch;
    nnq_rt_data_check(run, ds, a->input_rank, a->input_dims, a->classes, model_file->model);
    int64_t n = nnq_rt_data_count(run, ds), in = nnq_net_input_size(net), batch = args.batch;
    int classes = a->classes, top = args.top;
    if (top > classes) nnq_rt_fail(run, "--top %d: the model has %d classes", top, classes);
    float *x = nnq_rt_alloc(run, batch * in * 4);
    float *logits = nnq_rt_alloc(run, n * classes * 4);
    char err[256];
    for (int64_t s = 0; s < n; s += batch) {
        int64_t m = n - s < batch ? n - s : batch;
        nnq_rt_data_batch(run, ds, NULL, s, m, x, NULL, 0);
        if (nnq_net_run(net, x, m, logits + s * classes, err, sizeof err)) nnq_rt_fail(run, "%s", err);
    }
    int k = top ? top : 1;
    int32_t *ids = nnq_rt_alloc(run, n * k * 4);
    for (int64_t s = 0; s < n; s++) top_classes(logits + s * classes, classes, k, ids + s * k);
    if (args.output && top) {
        nnq_npy_save(run, args.output, "<i4", 2, (int64_t[]){n, k}, ids, (size_t)(n * k) * 4);
    } else if (args.output) {
        nnq_npy_save(run, args.output, "<f4", 2, (int64_t[]){n, classes}, logits, (size_t)(n * classes) * 4);
    } else {
        for (int64_t s = 0; s < n; s++) {
            for (int j = 0; j < k; j++) printf("%s%d", j ? " " : "", ids[s * k + j]);
            printf("\n");
        }
    }
    return 0;
}

/* ---- export ---- */

/* A tensor name as a file name: letters, digits, '_', '-', '.', not starting with '.'. */
static bool safe_name(const char *s) {
    if (!*s || *s == '.') return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return false;
    return true;
}

static int export_npy_entry(NnqRun *run) {
    nnq_make_dirs(run, args.output, "directory");
    for (int i = 0; i < model_file->ntensors; i++) {
        const NnqModelTensor *t = &model_file->tensors[i];
        if (!safe_name(t->name)) nnq_rt_fail(run, "tensor name '%s' is not a safe file name", t->name);
    }
    nnq_files_begin(run, args.output); /* every file or none replaces what the directory held */
    for (int i = 0; i < model_file->ntensors; i++) {
        const NnqModelTensor *t = &model_file->tensors[i];
        int64_t n = nnq_model_count(t);
        char *path = nnq_rt_alloc(run, (int64_t)strlen(args.output) + (int64_t)strlen(t->name) + 16);
        const float *values = t->values; /* a label tensor is read packed: decoded here */
        if (!values) {
            float *v = nnq_rt_alloc(run, 4 * (n ? n : 1));
            for (int64_t k = 0; k < n; k++) v[k] = nnq_model_value(t, k);
            values = v;
        }
        sprintf(path, "%s/%s.npy", args.output, t->name);
        nnq_npy_save(run, path, "<f4", t->rank, t->dims, values, (size_t)n * 4);
        if (!t->nlabels) continue;
        /* the packed indices as stored (docs/model-format.md) and their label set */
        sprintf(path, "%s/%s.bits.npy", args.output, t->name);
        nnq_npy_save(run, path, "|u1", 1, &t->stored_bytes, t->packed, (size_t)t->stored_bytes);
        sprintf(path, "%s/%s.labels.npy", args.output, t->name);
        int64_t nl = t->nlabels;
        nnq_npy_save(run, path, "<f4", 1, &nl, t->labels, (size_t)nl * 4);
    }
    nnq_files_commit(run);
    printf("wrote %d tensors to %s\n", model_file->ntensors, args.output);
    return 0;
}

static int export_c_entry(NnqRun *run) {
    nnq_make_dirs(run, args.output, "directory");
    return export_c(run, model_file, args.output, args.name ? args.name : "model");
}

/* ---- the commands ---- */

const char *const deploy_commands[] = {"inspect", "eval", "predict", "export", NULL};

int deploy_main(int argc, char **argv, const char *stdlib_dir) {
    int rc = parse(argc, argv);
    if (rc >= 0) return rc;
    if (!strcmp(args.command, "inspect")) return inspect();
    args.stdlib_dir = stdlib_dir;
    char err[512];
    bool pack = !strcmp(args.command, "export") || !args.floats; /* export npy writes the bits as stored */
    model_file = nnq_model_load(args.model, pack ? NNQ_MODEL_PACKED : 0, err, sizeof err);
    if (!model_file) {
        fprintf(stderr, "nnqc: error: %s\n", err);
        return 1;
    }
    NnqCompilation c = {0};
    bool compiled = false;
    rc = 1;
    if (!strcmp(args.command, "eval") || !strcmp(args.command, "predict")) {
        if (!(net = nnq_net_new(model_file, args.floats ? NNQ_NET_FLOAT : NNQ_NET_PACKED, err, sizeof err))) {
            fprintf(stderr, "nnqc: error: %s: %s\n", args.model, err);
            goto done;
        }
    } else if (!strcmp(args.format, "c") && !model_file->arch) {
        fprintf(stderr, "nnqc: error: %s: a version-%u model file holds no architecture to export\n", args.model,
                model_file->version);
        goto done;
    }
    char *dup = NULL;
    if (args.data) { /* the program's data declaration, its paths relative to the program */
        NnqCompileOptions co = {.stdlib_dir = stdlib_dir, .until = NNQ_STAGE_CHECK};
        compiled = true;
        if (!nnq_compile(&c, args.program, NULL, &co)) goto done;
        eval_data = program_find_data(c.prog, args.data);
        if (!eval_data) {
            fprintf(stderr, "nnqc: error: %s declares no data set '%s'\n", args.program, args.data);
            goto done;
        }
        dup = strdup(args.program);
        args.run.base_dir = dirname(dup);
    } else if (args.cifar || args.images) {
        size_t n = args.images ? strlen(args.images) : 0;
        bool npy = n >= 4 && !strcmp(args.images + n - 4, ".npy");
        arg_data = (DataDecl){.name = args.cifar ? args.cifar : args.images,
                              .kind = args.cifar ? (args.cifar_classes == 10 ? DATA_CIFAR10 : DATA_CIFAR100)
                                      : npy      ? DATA_NPY
                                                 : DATA_IDX,
                              .images = args.cifar ? args.cifar : args.images, .labels = args.labels,
                              .split = args.cifar_split, .coarse = args.coarse};
        eval_data = &arg_data;
    }
    NnqRun *run = nnq_run_new(&args.run);
    if (run) {
        rc = nnq_run_invoke(run, !strcmp(args.command, "eval") ? eval_entry
                                 : !strcmp(args.command, "predict") ? predict_entry
                                 : !strcmp(args.format, "npy") ? export_npy_entry
                                                               : export_c_entry);
        nnq_run_free(run);
    }
    free(dup);
done:
    if (compiled) nnq_compilation_free(&c);
    nnq_net_free(net);
    nnq_model_free(model_file);
    return rc;
}
