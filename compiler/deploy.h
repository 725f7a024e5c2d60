/* deploy.h — nnqc's commands on trained model files (deploy.c: inspect, eval, predict,
 * export; export_c.c: the C source export). */
#ifndef NNQ_DEPLOY_H
#define NNQ_DEPLOY_H

#include "nnq_rt.h"

/* The commands deploy_main runs (NULL-terminated). */
extern const char *const deploy_commands[];
/* nnqc COMMAND ...: argv[1] is the command. Returns the exit status. */
int deploy_main(int argc, char **argv, const char *stdlib_dir);
/* Writes DIR/PREFIX.c and DIR/PREFIX.h: the model (version 2, label tensors read with
 * NNQ_MODEL_PACKED) as plain C99 with its packed weights (docs/deploy.md). Inside
 * nnq_run_invoke; returns 0. */
int export_c(NnqRun *run, const NnqModelFile *mf, const char *dir, const char *prefix);
/* True when name can be export_c's prefix: a C identifier of at most 64 characters. */
bool export_c_name_ok(const char *name);

#endif
