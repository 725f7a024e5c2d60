/* export_c.c — nnqc export --format c: a trained model as plain C99 source. */
#include "deploy.h"

int export_c(NnqRun *run, const NnqModelFile *mf, const char *dir, const char *prefix) {
    nnq_rt_fail(run, "export --format c is not implemented yet");
}
