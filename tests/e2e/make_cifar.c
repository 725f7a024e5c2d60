/* make_cifar — writes synthetic data in the real CIFAR binary formats, for tests and
 * benchmarks (the real CIFAR files are not available offline).
 *
 *   make_cifar DIR 10  PER_BATCH TEST [SEED]   DIR/data_batch_1..5.bin, DIR/test_batch.bin
 *   make_cifar DIR 100 TRAIN     TEST [SEED]   DIR/train.bin, DIR/test.bin
 *
 * Each record is the format's label byte(s) then 3072 pixel bytes (3 x 32 x 32,
 * channel-major). Images are learnable on purpose: class k has its own colour, the
 * pixels of a sample scatter around it with uniform noise, and every fourth class also
 * gets horizontal stripes, so a network's loss must fall within a few iterations. The
 * labels cycle through the classes (CIFAR-100: fine k, coarse k / 5). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state;
static uint32_t next(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(state >> 33);
}

static int write_file(const char *dir, const char *name, int classes, long count, long first) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    unsigned char rec[2 + 3072];
    int nlab = classes == 10 ? 1 : 2;
    for (long r = 0; r < count; r++) {
        int k = (int)((first + r) % classes);
        if (classes == 10) rec[0] = (unsigned char)k;
        else rec[0] = (unsigned char)(k / 5), rec[1] = (unsigned char)k;
        int colour[3] = {40 + (k * 53) % 180, 40 + (k * 97) % 180, 40 + (k * 31) % 180};
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    int v = colour[c] + (int)(next() % 61) - 30;
                    if (k % 4 == 0 && (y / 4) % 2) v -= 35;
                    rec[nlab + (c * 32 + y) * 32 + x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        if (fwrite(rec, 1, (size_t)nlab + 3072, f) != (size_t)nlab + 3072) {
            perror(path);
            fclose(f);
            return 1;
        }
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: make_cifar DIR 10|100 TRAIN_PER_FILE TEST [SEED]\n");
        return 2;
    }
    const char *dir = argv[1];
    int classes = atoi(argv[2]);
    long train = atol(argv[3]), test = atol(argv[4]);
    state = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    if ((classes != 10 && classes != 100) || train < 1 || test < 1) {
        fprintf(stderr, "make_cifar: bad arguments\n");
        return 2;
    }
    int rc = 0;
    if (classes == 10) {
        for (int b = 1; b <= 5 && !rc; b++) {
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", b);
            rc = write_file(dir, name, 10, train, (b - 1) * train);
        }
        if (!rc) rc = write_file(dir, "test_batch.bin", 10, test, 0);
    } else {
        rc = write_file(dir, "train.bin", 100, train, 0);
        if (!rc) rc = write_file(dir, "test.bin", 100, test, 0);
    }
    return rc;
}
