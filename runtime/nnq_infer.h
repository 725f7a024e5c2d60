/* nnq_infer.h — the inference engine (runtime/infer.c): evaluates the hard network of a
 * trained model file (version 2, with its architecture record) on raw samples. No LLVM:
 * nnqc eval / predict use it, and so can any C program linked with the runtime.
 *
 * Ownership: a net keeps pointers into its NnqModelFile (float tensors), which must
 * outlive it; it owns its packed weight rows, folded constants and activation buffers.
 * A net is not safe to run from two threads at once; one run uses the runtime's pool. */
#ifndef NNQ_INFER_H
#define NNQ_INFER_H

#include "nnq_rt.h"

typedef struct NnqNet NnqNet;

typedef enum NnqNetMode {
    /* quantized tensors stay packed (1 bit per binary weight, 2 per ternary, ...): batches
     * of at most NNQ_NET_PACKED_ROWS samples run a dense layer straight from the bits, larger
     * batches and convolutions decode one layer at a time into a scratch buffer for the
     * float kernels */
    NNQ_NET_PACKED,
    /* every tensor decoded to float32 at load, OpenBLAS / oneDNN kernels: the reference
     * the packed mode is measured and checked against */
    NNQ_NET_FLOAT,
} NnqNetMode;
#define NNQ_NET_PACKED_ROWS 4

/* NULL and a message in err on failure: no architecture record (version 1), a shape the
 * ops do not accept, out of memory. */
NnqNet *nnq_net_new(const NnqModelFile *mf, NnqNetMode mode, char *err, size_t errlen);
int64_t nnq_net_input_size(const NnqNet *net); /* floats per sample */
int32_t nnq_net_classes(const NnqNet *net);
/* Logits [n, classes] of n raw samples [n, input size] (pixels as the data loaders give
 * them; the net applies the model's normalization). 0, or -1 with a message in err
 * when out of memory. */
int nnq_net_run(NnqNet *net, const float *raw, int64_t n, float *logits, char *err, size_t errlen);
/* Bytes the net holds for weights (packed rows, decoded floats, folded constants), for
 * reports. */
int64_t nnq_net_weight_bytes(const NnqNet *net);
/* Floating-point operations per sample in the matrix products and convolutions. */
double nnq_net_flops(const NnqNet *net);
/* Which kernel the packed dense layers use on this CPU: "avx512", "avx2" or "portable". */
const char *nnq_net_isa(void);
void nnq_net_free(NnqNet *net);
/* Buffer planning, shared with the C exporter: the slot a value of `need` floats takes
 * among *nslots slots of slot_size floats (busy ones skipped): the smallest free one
 * that is large enough, else the largest free one, grown; else a new one (*nslots grows;
 * slot_size must have room). */
int nnq_slot_take(int64_t *slot_size, const bool *busy, int *nslots, int64_t need);

#endif
