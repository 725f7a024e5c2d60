/* ckpt_diff.c — compares the state of two checkpoints (docs/checkpoint-format.md) for the
 * MPI tests. Usage: ckpt_diff A B TOL ATOL. Both files must hold the same regions in
 * the same order. float32 regions (every name but train.* and dropout.*) agree when
 * max |a - b| <= TOL * max |b| + ATOL over the region (0 0: bit for bit); the others, and the
 * random generator, must be equal byte for byte. Prints one line per float region
 * (name, largest difference, largest magnitude, their ratio); exits 1 on a mismatch, 2
 * when a file cannot be read. Not part of nnq: a test tool. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct File {
    unsigned char *p;
    size_t n, at;
    const char *path;
} File;

static void die(const File *f, const char *what) {
    fprintf(stderr, "ckpt_diff: %s: %s\n", f->path, what);
    exit(2);
}

static const unsigned char *take(File *f, size_t n) {
    if (n > f->n - f->at) die(f, "truncated");
    const unsigned char *p = f->p + f->at;
    f->at += n;
    return p;
}

static uint64_t u(File *f, int bytes) {
    const unsigned char *p = take(f, (size_t)bytes);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static File load(const char *path) {
    File f = {.path = path};
    FILE *fp = fopen(path, "rb");
    if (!fp) die(&f, "cannot open");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f.p = malloc(n > 0 ? (size_t)n : 1);
    if (!f.p || fread(f.p, 1, (size_t)n, fp) != (size_t)n) die(&f, "cannot read");
    fclose(fp);
    f.n = (size_t)n;
    if (memcmp(take(&f, 4), "NNQC", 4) != 0) die(&f, "not a checkpoint");
    u(&f, 4); /* version */
    u(&f, 8); /* size */
    u(&f, 4); /* epoch */
    u(&f, 4); /* epochs */
    return f;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: ckpt_diff A B TOL ATOL\n");
        return 2;
    }
    File a = load(argv[1]), b = load(argv[2]);
    double tol = atof(argv[3]), atol = atof(argv[4]);
    int bad = 0;
    if (memcmp(take(&a, 32), take(&b, 32), 32) != 0) {
        printf("random generator state differs\n");
        bad = 1;
    }
    uint64_t nd = u(&a, 4);
    if (u(&b, 4) != nd) die(&b, "another description");
    for (uint64_t i = 0; i < nd; i++) { /* the description: equal byte for byte */
        uint64_t la = u(&a, 4), lb = u(&b, 4);
        if (la != lb || memcmp(take(&a, la + 8), take(&b, lb + 8), la + 8) != 0) die(&b, "another description");
    }
    uint64_t ns = u(&a, 4);
    if (u(&b, 4) != ns) die(&b, "another number of state regions");
    for (uint64_t i = 0; i < ns; i++) {
        uint64_t la = u(&a, 4), lb = u(&b, 4);
        char name[4097];
        const unsigned char *na = take(&a, la), *nb = take(&b, lb);
        if (la != lb || la > 4096 || memcmp(na, nb, la) != 0) die(&b, "another state region");
        memcpy(name, na, la);
        name[la] = 0;
        uint64_t sa = u(&a, 8), sb = u(&b, 8);
        if (sa != sb) die(&b, "a state region of another size");
        const unsigned char *pa = take(&a, sa), *pb = take(&b, sb);
        if (!strncmp(name, "train.", 6) || !strncmp(name, "dropout.", 8) || sa % 4) {
            if (memcmp(pa, pb, sa) != 0) {
                printf("%s differs\n", name);
                bad = 1;
            }
            continue;
        }
        double diff = 0, mag = 0;
        for (uint64_t k = 0; k < sa / 4; k++) {
            float x, y;
            memcpy(&x, pa + 4 * k, 4);
            memcpy(&y, pb + 4 * k, 4);
            double d = fabs((double)x - (double)y);
            if (d > diff || d != d) diff = d;
            if (fabs((double)y) > mag) mag = fabs((double)y);
        }
        double ratio = mag > 0 ? diff / mag : diff;
        bool ok = diff <= tol * mag + atol;
        printf("%-28s max diff %.3g  max |b| %.3g  ratio %.3g%s\n", name, diff, mag, ratio, ok ? "" : "  <- over");
        if (!ok) bad = 1;
    }
    free(a.p);
    free(b.p);
    return bad;
}
