/* program.h — a checked nnq program: what the checker (check.c) produces from the AST
 * and every later pass reads. All strings and tables live in the Program's arena; the
 * AST it points into must outlive it. */
#ifndef NNQ_PROGRAM_H
#define NNQ_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"
#include "names.h"
#include "sx.h"

#define NNQ_MAX_LABELS 64
#define NNQ_MAX_RANK 6

typedef struct LabelSet {
    const char *name;
    SrcLoc loc;
    int k;                      /* number of labels */
    double q[NNQ_MAX_LABELS];   /* ascending, distinct */
} LabelSet;

/* VAR numbering of projection expressions (ProjInst); the fuser substitutes them. */
/* PV_W0STD: the standard deviation of the distribution w0 is drawn from (per tensor). */
enum { PV_BETA = 0, PV_GW = 1, PV_W0 = 2, PV_W0STD = 3, PV_AUX = 4 };

/* A projection instantiated for one label set: every expression is a node of the
 * program's SxPool over the VARs above (aux component k is VAR PV_AUX + k). */
typedef struct ProjInst {
    const char *name;           /* e.g. "pmf" */
    const LabelSet *labels;     /* NULL when the projection takes none (float) */
    const AstNode *def;         /* the projection definition */
    int ncomp;                  /* aux components per parameter element */
    const char **comp_names;    /* "a" or "a0", "a1", ... */
    int weight;                 /* w(aux, beta) */
    int hard;                   /* hard(aux), must lie in Q */
    int *init;                  /* [ncomp] aux from w0 (and beta) */
    int *grad;                  /* [ncomp] the gradient stepping each aux: over aux, beta, gw */
    int *after;                 /* [ncomp] post-step map of the aux (identity: the VAR itself) */
    int *move;                  /* [ncomp] the aux after a step, over aux VARs and delta VARs
                                   (delta_var0 + k: the optimizer's proposed change); -1: a - delta */
    int delta_var0;
    bool uses_beta;
} ProjInst;

typedef enum OptKind { OPT_SGD, OPT_ADAM } OptKind;

/* Optimizer settings for the parameters whose names match `pattern` (fnmatch). */
typedef struct ParamGroup {
    const char *pattern;
    SrcLoc loc;
    bool has_lr, has_weight_decay;
    double lr, weight_decay;
} ParamGroup;

typedef struct TrainConfig {
    const AstNode *node;
    const char *model;
    const char *data;           /* training data set name */
    OptKind opt;
    double lr, momentum, beta1, beta2, eps, weight_decay;
    bool decoupled_decay; /* adamw: weight decay outside the Adam normalization */
    int64_t lr_every;           /* step schedule: iterations (< 0: -epochs); 0 = none */
    int64_t *lr_milestones;     /* [nmilestones], multistep: iterations (< 0: -epochs) */
    int nmilestones;
    double lr_gamma;
    ParamGroup *groups;         /* [ngroups], later groups win; in the program's arena */
    int ngroups;
    double beta_start, beta_times, beta_max;
    int64_t beta_every;         /* iterations; 0 = constant beta */
    int epochs, batch;
    int64_t seed;
    int64_t validation;         /* last N training samples held out */
    int64_t calibrate;          /* training samples that re-estimate batch-norm statistics
                                   for the hard network before it is evaluated or saved;
                                   0: it uses the running statistics */
    bool keep_best;
    const char *eval_data;      /* NULL: none */
    int eval_every_epochs;      /* 0: only at the end */
    const char *save_path;      /* NULL: none */
    const char *checkpoint_dir; /* `checkpoint "DIR"`: the training state goes to
                                   DIR/checkpoint.nnqc; NULL: none */
    int checkpoint_every;       /* epochs between checkpoints (the last epoch always) */
    const char *init_dir;       /* `init from "DIR"`: after the random initialization, every
                                   parameter's weight is read from DIR/NAME.npy (and batch-norm
                                   statistics where present); NULL: none */
    SrcLoc init_loc;
} TrainConfig;

/* check.c: every setting's default (train_settings.def), and the settings as the rows
 * of docs/language.md's table (nnqc --help-settings). */
/* (fields no setting has keep their value: start from a zeroed TrainConfig) */
void train_config_defaults(TrainConfig *tc);
/* Whether the optimizer keeps a first moment (momentum, Adam's m) and a second (Adam's v)
 * per auxiliary array: fuse.c's kernels read them, codegen.c allocates them, ir_parse.c
 * accepts kernels that name them. */
static inline bool train_keeps_m(const TrainConfig *tc) { return tc->opt == OPT_ADAM || tc->momentum != 0; }
static inline bool train_keeps_v(const TrainConfig *tc) { return tc->opt == OPT_ADAM; }
void train_settings_print(FILE *out);

typedef enum DataKind { DATA_IDX, DATA_NPY, DATA_CIFAR10, DATA_CIFAR100 } DataKind;

typedef struct DataDecl {
    const char *name;
    SrcLoc loc;
    DataKind kind;
    const char *images, *labels;  /* IDX / .npy paths as written; CIFAR: images = directory */
    int split;                    /* CIFAR: 0 train, 1 test */
    bool coarse;                  /* CIFAR-100: the 20 coarse labels */
    int normalize;               /* 0 none, 1 standard (per channel) */
    const char *like;            /* normalize = like(X): X's statistics */
    /* augment = [random_crop(size, pad = P), hflip]: applied to training batches only */
    int64_t crop_size, crop_pad; /* crop_size 0: no random crop */
    SrcLoc crop_loc;
    bool hflip;
} DataDecl;

/* A top-level name: every label set, projection, model, block and data set lives in one
 * namespace (Program.tops, found through Program.names). */
typedef struct TopName {
    const char *name;
    AstKind kind;       /* AST_LABELS (def: a LabelSet), AST_DATA (a DataDecl), AST_PROJECTION,
                           AST_MODEL, AST_BLOCK (the AstNode) */
    const void *def;
    SrcLoc loc;
} TopName;

typedef struct Program {
    Arena *arena;
    NameIndex names;             /* each top-level name to its index in tops */
    TopName *tops;
    int ntops;
    SxPool *pool;
    const char *main_path;
    int nlabels;
    LabelSet **labels;
    int nprojs;
    const AstNode **projs;       /* definitions (stdlib and user) */
    int ninsts;
    ProjInst **insts;            /* instantiation cache */
    int ndata;
    DataDecl **data;
    int nmodels;
    const AstNode **models;
    const AstNode **blocks;
    int nblocks;
    TrainConfig *train;          /* NULL when the program has no train block */
} Program;

/* check.c: resolves imports (stdlib_dir/NAME.nnq for `import std.NAME`), label sets,
 * data and train declarations. Returns NULL after reporting errors. */
Program *check_program(Arena *arena, Diag *diag, AstNode *root, const char *stdlib_dir);

/* Adds a definition to the namespace (its name not in it yet); the lookups find a name's
 * definition of one kind (NULL: none, or another kind), in constant time. */
void program_declare(Program *prog, AstKind kind, const char *name, const void *def, SrcLoc loc);
const TopName *program_find(const Program *prog, const char *name);
const LabelSet *program_find_labels(const Program *prog, const char *name);
const AstNode *program_find_projection(const Program *prog, const char *name);
const AstNode *program_find_model(const Program *prog, const char *name);
const AstNode *program_find_block(const Program *prog, const char *name);
DataDecl *program_find_data(const Program *prog, const char *name);

/* proj.c: instantiates projection `def` for label set Q (NULL when it takes none),
 * deriving grad(...) symbolically. `use` locates the instantiation for messages.
 * Cached per (def, Q). NULL after reporting errors. */
ProjInst *proj_instantiate(Program *prog, Diag *diag, const AstNode *def, const LabelSet *q,
                           SrcLoc use);
/* proj.c: instantiates every projection defined in `root` (the main file) that nothing
 * has instantiated yet, so that an unused projection (a library file) is checked too.
 * One that takes labels is checked for the program's first label set its `requires`
 * accepts, else for {-1, +1}, {-1, 0, +1} or {-2, -1, +1, +2}. False after errors. */
bool proj_check_unused(Program *prog, Diag *diag, const AstNode *root);
/* proj.c: the built-in functions of projections (proj_builtins.def) as the rows of
 * docs/projections.md's table (nnqc --help-builtins). */
void proj_builtins_print(FILE *out);

#endif
