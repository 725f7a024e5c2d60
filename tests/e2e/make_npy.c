/* make_npy — writes a synthetic image data set of any sample shape as NumPy .npy files,
 * for tests (tests/e2e/model_zoo.sh: programs on samples other than 28 x 28 and
 * 3 x 32 x 32).
 *
 *   make_npy DIR C H W TRAIN TEST [SEED] [f4]
 *
 * writes DIR/train-images.npy and DIR/test-images.npy (uint8, or float32 in [0, 1] with
 * `f4`; shape [N, C, H, W], or [N, H, W] where C is 0: one channel, no channel axis) and
 * DIR/train-labels.npy and DIR/test-labels.npy (int32 [N], classes 0 to 9 in turn).
 * Learnable on purpose, as make_cifar's: class k has its own level in each channel,
 * a sample's pixels scatter around it with uniform noise, and every third class gets
 * vertical stripes. Format 1.0 headers, padded with spaces to a multiple of 64 bytes as
 * numpy writes them. A test fixture, not part of nnq. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state;
static uint32_t next(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(state >> 33);
}

/* Opens DIR/NAME and writes a .npy 1.0 header for dtype DESCR and the shape text. */
static FILE *npy_open(const char *dir, const char *name, const char *descr, const char *shape) {
    char path[4096], head[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return NULL;
    }
    int n = snprintf(head, sizeof head, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int total = (10 + n + 1 + 63) / 64 * 64; /* magic, version, length, dict, newline */
    memset(head + n, ' ', (size_t)(total - 10 - n - 1));
    head[total - 10 - 1] = '\n';
    unsigned len = (unsigned)(total - 10);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    fwrite(pre, 1, sizeof pre, f);
    fwrite(head, 1, len, f);
    return f;
}

static int write_set(const char *dir, const char *what, int c, int h, int w, long count, int f4) {
    char name[64], shape[128];
    int ch = c ? c : 1;
    if (c)
        snprintf(shape, sizeof shape, "(%ld, %d, %d, %d)", count, c, h, w);
    else
        snprintf(shape, sizeof shape, "(%ld, %d, %d)", count, h, w);
    snprintf(name, sizeof name, "%s-images.npy", what);
    FILE *fi = npy_open(dir, name, f4 ? "<f4" : "|u1", shape);
    snprintf(shape, sizeof shape, "(%ld,)", count);
    snprintf(name, sizeof name, "%s-labels.npy", what);
    FILE *fl = npy_open(dir, name, "<i4", shape);
    if (!fi || !fl) return 1;
    for (long r = 0; r < count; r++) {
        int32_t k = (int32_t)(r % 10);
        fwrite(&k, sizeof k, 1, fl);
        for (int q = 0; q < ch; q++) {
            int level = 40 + (int)((k * 53 + q * 71) % 180);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int v = level + (int)(next() % 61) - 30;
                    if (k % 3 == 0 && (x / 2) % 2) v -= 35;
                    v = v < 0 ? 0 : v > 255 ? 255 : v;
                    if (f4) {
                        float fv = (float)v / 255.0f;
                        fwrite(&fv, sizeof fv, 1, fi);
                    } else {
                        fputc(v, fi);
                    }
                }
        }
    }
    int bad = ferror(fi) || ferror(fl);
    bad |= fclose(fi) != 0;
    bad |= fclose(fl) != 0;
    if (bad) fprintf(stderr, "make_npy: cannot write the %s set in %s\n", what, dir);
    return bad;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: make_npy DIR C H W TRAIN TEST [SEED] [f4]\n");
        return 2;
    }
    int c = atoi(argv[2]), h = atoi(argv[3]), w = atoi(argv[4]);
    long train = atol(argv[5]), test = atol(argv[6]);
    state = argc > 7 ? strtoull(argv[7], NULL, 10) : 1;
    int f4 = argc > 8 && strcmp(argv[8], "f4") == 0;
    if (c < 0 || c > 64 || h < 1 || h > 4096 || w < 1 || w > 4096 || train < 1 || test < 1) {
        fprintf(stderr, "make_npy: bad arguments\n");
        return 2;
    }
    return write_set(argv[1], "train", c, h, w, train, f4) || write_set(argv[1], "test", c, h, w, test, f4);
}
