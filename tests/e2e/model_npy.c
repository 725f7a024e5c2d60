/* model_npy.c — writes every tensor of a model file (docs/model-format.md) as
 * DIR/<tensor name>.npy: NumPy format 1.0, dtype '<f4', C order, the tensor's shape
 * (label-coded tensors as their float values). Usage: model_npy MODEL.nnqm DIR (DIR must
 * exist). For the `init from` tests (tests/e2e/init_from.sh): the layout `nnqc export
 * --format npy` writes. Exits 1 on any error. Not part of nnq: a test tool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnq_rt.h"

static int write_npy(const char *path, const NnqModelTensor *t) {
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    int64_t count = 1;
    for (int32_t i = 0; i < t->rank; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld%s", (long long)t->dims[i],
                        t->rank == 1      ? ","
                        : i + 1 < t->rank ? ", "
                                          : "");
        count *= t->dims[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* magic, version, 2-byte length, header padded with spaces to a multiple of 64 with
     * the newline */
    int total = (10 + len + 1 + 63) / 64 * 64 - 10;
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned char hl[2] = {(unsigned char)(total & 255), (unsigned char)(total >> 8)};
    fwrite(hl, 1, 2, f);
    fwrite(dict, 1, (size_t)len, f);
    for (int i = len; i < total - 1; i++)
        fputc(' ', f);
    fputc('\n', f);
    for (int64_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &t->values[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        fwrite(b, 1, 4, f);
    }
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: model_npy MODEL.nnqm DIR\n");
        return 1;
    }
    char err[1024];
    NnqModelFile *mf = nnq_model_read(argv[1], err, sizeof err);
    if (!mf) {
        fprintf(stderr, "model_npy: %s\n", err);
        return 1;
    }
    int rc = 0;
    for (int32_t i = 0; i < mf->ntensors && !rc; i++) {
        size_t n = strlen(argv[2]) + strlen(mf->tensors[i].name) + 8;
        char *path = malloc(n);
        snprintf(path, n, "%s/%s.npy", argv[2], mf->tensors[i].name);
        rc = write_npy(path, &mf->tensors[i]);
        free(path);
    }
    nnq_model_free(mf);
    return rc;
}
