/* put_file.h — what the fuzz targets that read files share (fuzz_npy, fuzz_data,
 * fuzz_model): writing an input to a file, as it is or gzip-compressed. Include once.
 * Not part of nnq: a test tool. */
#ifndef NNQ_FUZZ_PUT_FILE_H
#define NNQ_FUZZ_PUT_FILE_H

#include <stdbool.h>
#include <stdio.h>
#include <zlib.h>

/* Writes n bytes of p to path (gz: gzip-compressed); false on any error. */
static bool put_file(const char *path, const void *p, size_t n, bool gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f)
            return false;
        bool ok = n == 0 || gzwrite(f, p, (unsigned)n) == (int)n;
        return gzclose(f) == Z_OK && ok;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

#endif
