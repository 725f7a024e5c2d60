/* export_c_ref.c — the exported model computed in double, the reference export_c_main.c
 * holds the engine to: the model.c of `nnqc export --format c` (found with -I, as
 * model.h is) compiled with every float a double, its entry renamed
 *
 *   int model_predict_ref(const double *in, double *logits, void *scratch);
 *
 * scratch: MODEL_SCRATCH_BYTES / 4 doubles (the export indexes its scratch by element).
 * The model's constants are float literals either way; only the arithmetic is double,
 * exact to about 1e-16 where float keeps about 6e-8 a step. Plain C99. */
#include <stdint.h> /* before float is a macro: no standard header sees it */

#ifdef __clang__
#pragma clang diagnostic ignored "-Wkeyword-macro"
#endif
#define float double
#define model_predict model_predict_ref
#include "model.c"
