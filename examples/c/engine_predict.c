/* engine_predict.c — the inference engine from C: the class of every image in a file of
 * raw 8-bit pixels (an IDX image file's payload, e.g. `tail -c +17`), one per line.
 * Usage: engine_predict MODEL.nnqm PIXELS
 * Link with the nnq runtime (libnnqrt.a and its libraries; tests/e2e/CMakeLists.txt). */
#include <stdio.h>
#include <stdlib.h>

#include "nnq_infer.h"

int main(int argc, char **argv) {
    char err[512];
    if (argc != 3) return fprintf(stderr, "usage: engine_predict MODEL.nnqm PIXELS\n"), 2;
    NnqModelFile *mf = nnq_model_load(argv[1], NNQ_MODEL_PACKED, err, sizeof err);
    NnqNet *net = mf ? nnq_net_new(mf, NNQ_NET_PACKED, err, sizeof err) : NULL;
    FILE *f = fopen(argv[2], "rb");
    if (!net || !f) return fprintf(stderr, "engine_predict: %s\n", net ? argv[2] : err), 1;
    int64_t size = nnq_net_input_size(net);
    int classes = nnq_net_classes(net);
    unsigned char *pixels = malloc((size_t)size);
    float *x = malloc((size_t)size * sizeof *x), *logits = malloc((size_t)classes * sizeof *logits);
    while (fread(pixels, 1, (size_t)size, f) == (size_t)size) {
        for (int64_t i = 0; i < size; i++) x[i] = pixels[i] / 255.0f; /* as the data loaders */
        if (nnq_net_run(net, x, 1, logits, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (logits[c] > logits[best]) best = c;
        printf("%d\n", best);
    }
    fclose(f), free(pixels), free(x), free(logits);
    nnq_net_free(net);
    nnq_model_free(mf);
    return 0;
}
