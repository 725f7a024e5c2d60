/* nnq_rt.h — the nnq runtime: what is the same for every compiled program.
 *
 * Two faces:
 *  1. The ABI called by generated code: one prototype per row of abi.def.
 *  2. The driver API used by nnqc (and by standalone trainers): create a run with
 *     options, invoke the generated entry point, free the run.
 * An NnqRun owns every allocation made through it (data sets, nnq_rt_alloc blocks,
 * the metrics file); nnq_run_free releases them. Runtime code never calls exit():
 * errors unwind (longjmp) to nnq_run_invoke, which returns non-zero after the message
 * "nnqc: error: ..." has been written to stderr.
 */
#ifndef NNQ_RT_H
#define NNQ_RT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct NnqRun NnqRun;

/* Phases of a training step, for --profile (phases.def). */
typedef enum NnqPhase {
#define NNQ_PHASE(name, label, what) NNQ_PHASE_##name,
#include "phases.def"
#undef NNQ_PHASE
    NNQ_PHASE_COUNT
} NnqPhase;

/* The flags of nnq_rt_init_tensor. */
enum {
    NNQ_INIT_OPTIONAL = 1, /* a missing file leaves the tensor as it is */
    NNQ_INIT_NONNEG = 2,   /* every value must be >= 0 (a variance) */
};

/* The mode bits of nnq_rt_bn_apply: what a batch norm's elementwise pass does around
 * ((x - mean) * scale) or its gradient (runtime/chan.c; code generator: target_cpu.c). */
enum {
    NNQ_BN_BIAS = 1,      /* add bias[c] to x as it is read (forward), or to y (NNQ_BN_RECOMPUTE) */
    NNQ_BN_RELU = 2,      /* forward: store v >= 0 ? v : 0 */
    NNQ_BN_GRAD = 4,      /* the gradient pass: scale * ((g - sum1 / nf) - y * sum2 / nf) */
    NNQ_BN_RELU_MASK = 8, /* gradient: g = x where y > 0, else 0 (else g = x) */
    NNQ_BN_RECOMPUTE = 16 /* gradient: y = ((y + bias) - mean) * scale, y read as the forward's input */
};

/* What nnq_rt_bn_stats computes (runtime/chan.c). */
enum {
    NNQ_BN_MEANS,   /* mean = sum1 / nf */
    NNQ_BN_TRAIN,   /* scale from var = sum2 / nf; the running statistics move towards the batch's */
    NNQ_BN_CALIB,   /* scale from var = sum2 / nf; the batch's statistics added to the sums in rmean, rvar */
    NNQ_BN_RUNNING  /* mean and scale from the running statistics rmean, rvar */
};

#define NNQ_RT(rc, ret, name, params, codes) ret name params;
#include "abi.def"
#undef NNQ_RT

/* The most threads a run's pool takes (--threads 1 to this; every CPU, up to this). */
#define NNQ_MAX_THREADS 1024
/* A convolution's kernel size, stride and padding are each at most this: the language's
 * limit (lower.c) and a model file's (nnq_model_shapes). */
#define NNQ_CONV_MAX 64

typedef struct NnqRunOptions {
    int32_t epochs;          /* > 0 overrides the program's epochs */
    int64_t seed;            /* >= 0 overrides the program's seed */
    int32_t threads;         /* 1 .. NNQ_MAX_THREADS: the runtime pool's threads; 0: every CPU (at most that) */
    const char *data_dir;    /* relative data files: data_dir, $NNQ_DATA_DIR entries, base_dir,
                                ".", /usr/share/datasets (first match); may be NULL */
    const char *base_dir;    /* directory of the .nnq file: searched after $NNQ_DATA_DIR; may be NULL */
    const char *metrics_path;/* JSON Lines output; NULL: none */
    const char *resume_dir;  /* --resume: a checkpoint directory (or file) to continue
                                from; NULL: start afresh */
    int progress;            /* -1: auto (bar when stdout is a tty), 0: lines only, 1: bar */
    bool quiet;              /* no per-epoch lines (errors still printed) */
    bool profile;            /* --profile: time per phase, reported at the end */
} NnqRunOptions;

void nnq_run_options_default(NnqRunOptions *opts);
/* Makes OpenBLAS single-threaded and stops its threads (the runtime's pool runs it);
 * nnq_run_new does it too. nnqc calls it first, so they take no CPU from compilation. */
void nnq_run_prepare(void);
/* The vector instruction set the runtime's kernels run and nnqc generates code for:
 * "avx512", "avx2" or "portable" (SSE2), the widest this CPU has or a narrower one
 * $NNQ_ISA names (runtime/isa.c); a value of $NNQ_ISA that names none ends the process
 * with a message. */
const char *nnq_isa(void);
/* Whether that set is narrower than this CPU's widest ($NNQ_ISA held it). */
bool nnq_isa_held(void);
/* The x86-64 level a trainer nnqc builds targets, so that it runs on other CPUs of the
 * same level (host-tuned code, say AVX-512 on an AVX2 machine, ended with SIGILL): 2
 * x86-64-v4 (AVX-512 F, BW, CD, DQ, VL), 1 x86-64-v3 (AVX2, FMA, BMI1/2, F16C, MOVBE,
 * LZCNT), 0 x86-64; the widest within that set whose features this CPU has all of. Its
 * LLVM CPU name; and a built trainer's first step: true when this CPU runs the level,
 * else false after saying which feature it lacks (on stderr, as PROGRAM: error: ...). */
int nnq_isa_level(void);
const char *nnq_isa_level_name(int level);
bool nnq_isa_level_check(int level, const char *program);
/* The CPUs this process may use: its affinity mask's, fewer where its cgroup's CPU quota
 * allows less (runtime/cgroup.c); at least 1. The default thread count. */
int nnq_cpus_usable(void);
/* NULL on failure (message printed), e.g. metrics file cannot be opened. */
NnqRun *nnq_run_new(const NnqRunOptions *opts);
/* Calls entry(run) under the error trap. Returns entry's result when it returns, 1
 * after a reported error (the run stays usable; invokes may nest). */
int nnq_run_invoke(NnqRun *run, int (*entry)(NnqRun *run));
/* Frees the run. In an MPI job, a run that failed ends the whole job (MPI_Abort), so
 * that no other rank waits for this one. */
void nnq_run_free(NnqRun *run);
/* This process's rank in its MPI job: 0 without MPI (runtime/mpi.c). */
int nnq_run_rank(const NnqRun *run);

/* A command-line option: its flag ("--epochs", "-o"), the name of its value in the help
 * ("N"; NULL: a switch, which takes none) and its help, whose lines after the first
 * continue under it. Each command's options are one table, ended by a row of NULLs. */
typedef struct NnqOption {
    const char *flag, *value, *help;
} NnqOption;
/* argv[*i] against a table: the index of its row, with the value in *val ("--flag VALUE",
 * *i then moved past VALUE, or "--flag=VALUE"); -1 when argv[*i] is no row's flag; -2
 * after printing that a flag lacks its value (or has an empty one) or that a switch was
 * given one. */
int nnq_option_find(const NnqOption *table, int argc, char **argv, int *i, const char **val);
/* The help of a table's rows: "  FLAG VALUE", the help from column 22. */
void nnq_options_print(FILE *out, const NnqOption *table);
/* Prints "nnqc: error: unknown option 'ARG'" + where (e.g. " for eval"; may be "") + the
 * closest flag of the NULL-ended list of tables ("; did you mean '--epochs'?") + tail. */
void nnq_option_unknown(const char *arg, const char *where, const NnqOption *const *tables, const char *tail);
/* The options every trainer takes (--epochs, --seed, --threads, --data-dir, --metrics,
 * --resume, --progress, --quiet, --profile). */
extern const NnqOption nnq_run_options[];
/* Parses the run option at argv[*i], advancing *i past its value. Returns 1 when
 * consumed, 0 when argv[*i] is not a run option, -1 after printing an error. */
int nnq_run_parse_option(NnqRunOptions *opts, int argc, char **argv, int *i);
/* A whole number from lo to hi in s, the value of option `flag`: true with *out set, or
 * false after printing "FLAG takes a whole number from LO TO HI, not 'S'". */
bool nnq_option_number(const char *flag, const char *s, long long lo, long long hi, long long *out);
/* A program's buffer in a built trainer: a common symbol of its .bss. */
typedef struct NnqSpan {
    void *start;
    uint64_t bytes;
} NnqSpan;
/* main() of a standalone trainer: checks that this CPU runs the x86-64 level its code was
 * compiled for (nnq_isa_level at the build), parses the run options, checks that the program's
 * buffers (nbuffers spans) fit in memory and maps them in, runs entry, returns the exit
 * status (0 ok, 1 reported error, 2 bad usage). */
int nnq_trainer_main(int argc, char **argv, int (*entry)(NnqRun *run), const NnqSpan *buffers, int64_t nbuffers,
                     int32_t isa_level);

/* Maps in at once the pages of [p, p + bytes), a program's zero-initialized buffers,
 * which its first step would otherwise fault in one at a time (MADV_POPULATE_WRITE,
 * Linux 5.14 and later; elsewhere it does nothing). `nnqc run` calls it on the JIT's
 * mapping of the buffers once the code is ready (jit_prefault), a built trainer on each
 * of its buffers. */
void nnq_prefault(void *p, size_t bytes);

/* Whether an output written as path.tmp and renamed over path (a model file, a built
 * trainer) can be written there: 0, or EISDIR where path is a directory, or the errno of
 * creating path.tmp (a missing or read-only directory). A .tmp it creates is removed,
 * one already there is kept. So that a run or a build checks before its work, not after. */
int nnq_output_check(const char *path);
/* nnq_output_check's nonzero answer in words: "it is a directory", or strerror(err). */
const char *nnq_output_problem(int err);
/* How a writer of PATH writes it. NNQ_DEST_FILE: a regular file, or none yet, replaced
 * whole: PATH.tmp renamed over it; where PATH is a symbolic link, *real is the file it
 * names (malloc'd), which is replaced in its own directory, the link left as it is (else
 * NULL). NNQ_DEST_STREAM: PATH is something else that exists and is not a directory (a
 * terminal, /dev/null, /dev/stdout, a pipe), written in place: renamed over, the device
 * or the link to it would be replaced by a file (as root: /dev/null itself). */
typedef enum { NNQ_DEST_FILE, NNQ_DEST_STREAM } NnqDest;
NnqDest nnq_output_dest(const char *path, char **real);
/* Whether paths a and b (either may be NULL) name one existing file, through links: an
 * output that is an input is refused before any work. */
bool nnq_same_file(const char *a, const char *b);

/* Writes a whole file held in memory durably, as a model file is written (PATH.tmp,
 * fsync, rename; no partial file under PATH), without a run: true, or false with
 * "STEP of 'PATH.tmp' failed: ..." or "cannot create 'PATH.tmp': ..." in msg[cap]
 * (nnqc --emit -o). */
bool nnq_file_write(const char *path, const void *data, size_t len, char *msg, size_t cap);

/* At the end of a command: whether everything written to standard output got there
 * (flushed, no error); if not, says so on stderr ("cannot write standard output: ...").
 * nnqc's commands and built trainers exit 1 then, not 0. */
bool nnq_stdout_check(void);
/* The signals that ask a run or a build to stop: SIGINT (Ctrl-C), SIGTERM, SIGHUP (the
 * terminal closed). nnq_stop_signals(handler, flags, old) installs handler for each
 * (sa_flags `flags`, every signal blocked while it runs), saving the previous actions in
 * old[NNQ_STOP_SIGNALS], except one ignored from the start, which stays ignored (nohup's
 * SIGHUP, a background job's SIGINT); with handler NULL, restores them from old. For a
 * checkpointed run (checkpoint.c) and nnqc build's link (compiler/link.c). */
#define NNQ_STOP_SIGNALS 3
struct sigaction;
void nnq_stop_signals(void (*handler)(int), int flags, struct sigaction *old);
/* First thing in a command's main: /dev/null, read-only, on each of standard input,
 * output and error that is closed, so that no file opened later takes its number. */
void nnq_std_fds(void);

/* The vector instructions the runtime runs and the libraries it runs on, a line each
 * ("OpenBLAS 0.3.21 ... Haswell ...", "oneDNN 2.6.3"), for nnqc --version. */
void nnq_describe_libraries(FILE *out);

/* Bytes this process may still fill: MemAvailable + SwapFree (/proc/meminfo; without
 * it, the machine's memory), or less where a cgroup's memory limit (v2: its own or an
 * ancestor's memory.max; else v1's) is lower; -1 when none of them can be read. */
int64_t nnq_memory_available(void);
/* The machine's memory and swap: MemTotal + SwapTotal (without /proc/meminfo, the
 * physical memory), or -1. Linux (its default overcommit heuristic) does not start an
 * executable whose .bss passes it: `nnqc build` refuses such buffers. */
int64_t nnq_memory_total(void);

/* Whether `bytes` of buffers, all of which a run fills (nnq_prefault, then its steps),
 * fit in nnq_memory_available() (true when that is unknown); if not, msg[cap] says so,
 * with both sizes and the batch setting to lower. So a program too large for the
 * machine stops with a message before its first step instead of being killed by the
 * kernel part way through filling its pages (Linux maps them lazily and overcommits). */
bool nnq_buffers_fit(uint64_t bytes, char *msg, size_t cap);

/* Driver helpers for nnqc's model commands (eval, predict, export); valid only inside
 * nnq_run_invoke, they fail the run with a message naming the file. */
/* Samples of an image file with no labels (labels read as 0): IDX images, or a .npy
 * file (by its name's ending) of shape (N, H, W) or (N, C, H, W); a data set handle. */
int32_t nnq_data_images(NnqRun *run, const char *path);
/* mkdir -p DIR; fails with "cannot create WHAT 'DIR': ..." naming the component at fault. */
void nnq_make_dirs(NnqRun *run, const char *dir, const char *what);
/* Writes a file whole, durably (PATH.tmp, fsync, rename): no partial file under PATH. */
void nnq_file_save(NnqRun *run, const char *path, const void *data, size_t len, const char *what);
/* The same for a NumPy .npy file (format 1.0) of dtype descr ("<f4", "<i4", "|u1"). */
void nnq_npy_save(NnqRun *run, const char *path, const char *descr, int ndim, const int64_t *shape,
                  const void *data, size_t len);

/* A set of files written as one into the directory dir (nnqc export: a C header and
 * its source, a model's .npy files): between the two calls nnq_file_save and
 * nnq_npy_save write each file whole to PATH.tmp, and nnq_files_commit renames them all
 * over their paths. Where a write fails, no file of the set has replaced one already
 * there (the .tmp files written so far are removed as the run ends). The directory is
 * locked (flock) from begin to commit: a second process's set into it waits its turn. */
void nnq_files_begin(NnqRun *run, const char *dir);
void nnq_files_commit(NnqRun *run);

/* Reports an error and unwinds to nnq_run_invoke. Only valid inside it. */
_Noreturn void nnq_rt_fail(NnqRun *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- model files, read side (nnqc inspect/eval/predict/export, the engine, tests) ---- */
/* The inference vocabulary of a model file's architecture record (infer_ops.def). */
typedef enum NnqInferOp {
#define INFER_OP(name, text, inputs, tensors, attrs, attr_names, doc) NNQ_INFER_##name,
#include "infer_ops.def"
#undef INFER_OP
    NNQ_INFER_COUNT
} NnqInferOp;
const char *nnq_infer_op_name(NnqInferOp op);
int nnq_infer_op_inputs(NnqInferOp op);
int nnq_infer_op_tensors(NnqInferOp op);
int nnq_infer_op_attrs(NnqInferOp op);
const char *nnq_infer_op_attr_names(NnqInferOp op); /* space-separated, "" for none */

typedef struct NnqModelTensor {
    char *name;
    int32_t rank;
    int64_t dims[8];
    int32_t nlabels;   /* 0: float32 */
    float labels[256];
    int32_t bits;      /* label tensors: bits per packed index (docs/model-format.md) */
    float *values;     /* decoded, count = product of dims; NULL for a label tensor read
                          with NNQ_MODEL_PACKED */
    unsigned char *packed; /* label tensors read with NNQ_MODEL_PACKED: the payload as
                          stored (validated); else NULL */
    int64_t stored_bytes; /* the payload as stored: packed label indices, or 4 per float */
} NnqModelTensor;
/* One op of the architecture record: value ids it reads (0: the input, op i defines
 * value i + 1), indices into NnqModelFile.tensors, attributes; the counts are the
 * op's row of infer_ops.def. */
typedef struct NnqModelOp {
    NnqInferOp op;
    int32_t in[2];
    int32_t tensor[2];
    int64_t attr[2];
} NnqModelOp;
typedef struct NnqModelArch {
    int32_t input_rank;
    int64_t input_dims[8];  /* one sample */
    int32_t classes;
    /* A raw sample (pixels in [0, 1] as the data loaders read them) becomes the model's
     * input x = (float)(raw * (1 / scale[c]) + (-shift[c] / scale[c])), computed in
     * double, c the channel (the sample's first dimension; one channel for rank 1). */
    int32_t norm_channels;
    double *norm_shift, *norm_scale;
    int32_t nops;
    NnqModelOp *ops;        /* the last op's value is the logits, [N, classes] */
} NnqModelArch;
typedef struct NnqModelFile {
    char *model;
    uint32_t version;       /* 1 or 2 */
    int32_t ntensors;
    NnqModelTensor *tensors;
    NnqModelArch *arch;     /* version 2; NULL in version 1 */
} NnqModelFile;
enum { NNQ_MODEL_PACKED = 1 /* keep label tensors packed (values NULL) */ };
/* NULL and a message in err (size errlen) on failure. */
NnqModelFile *nnq_model_load(const char *path, int flags, char *err, size_t errlen);
NnqModelFile *nnq_model_read(const char *path, char *err, size_t errlen); /* flags 0 */
void nnq_model_free(NnqModelFile *mf);
/* The shape of one sample of a value of the architecture record: [F] (rank 1) or
 * [C, H, W] (rank 3). */
typedef struct NnqValueShape {
    int32_t rank;
    int64_t dims[3];
} NnqValueShape;
/* Every value's shape (shapes[0] the input, shapes[i + 1] op i's), inferred and checked
 * op by op as infer_ops.def defines the ops: the ranks an op takes, its tensors' shapes
 * against its input, windows that fit, equal shapes added. The engine and the C
 * exporter both start from it. 0, or -1 with "op I (NAME): ..." in err. */
int nnq_model_shapes(const NnqModelFile *mf, NnqValueShape *shapes, char *err, size_t errlen);
/* Op i's geometry from the checked shapes: its output per sample, its input as C
 * channels of H x W (1 x 1 for [F]), and its window (pools: k, stride) or filter (convs:
 * k from the weights, stride, pad). The engine and the C exporter both read ops so. */
typedef struct NnqOpGeometry {
    int32_t rank;           /* of the output: 1 ([F]) or 3 ([C, H, W]) */
    int64_t dims[3];        /* the output per sample */
    int64_t c, h, w;        /* the input */
    int64_t k, stride, pad;
} NnqOpGeometry;
NnqOpGeometry nnq_model_op_geometry(const NnqModelFile *mf, const NnqValueShape *shapes, int i);
/* Element pos (row-major) of a tensor read either way: its label index (label tensors),
 * its value; and the tensor's element count. */
int nnq_model_label_index(const NnqModelTensor *t, int64_t pos);
float nnq_model_value(const NnqModelTensor *t, int64_t pos);
int64_t nnq_model_count(const NnqModelTensor *t);

#endif
