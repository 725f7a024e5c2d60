/* export_c_main.c — the test driver of tests/e2e/export_c.sh and model_zoo.sh: runs a
 * model exported by `nnqc export --format c` (compiled with this file and
 * export_c_ref.c, its header model.h found with -I) on every image of an uncompressed IDX
 * image file, of a CIFAR-10 binary file (a name ending in .bin: records of a label byte
 * and 3 x 32 x 32 pixel bytes, the labels taken from them), or of an uncompressed .npy
 * file (version 1.0, C order, '|u1' or '<f4', N samples first: what tests/e2e/make_npy
 * writes), and compares it with the engine:
 *
 *   export_c_main IMAGES.idx ENGINE_LOGITS.npy ENGINE_CLASSES.txt [LABELS.idx]
 *   export_c_main IMAGES.bin|IMAGES.npy ENGINE_LOGITS.npy ENGINE_CLASSES.txt
 *
 * ENGINE_LOGITS.npy is `nnqc predict MODEL IMAGES -o F.npy` (float32 [N, classes]),
 * ENGINE_CLASSES.txt `nnqc predict MODEL IMAGES` (one class per line). Byte pixels
 * become byte / 255 as the data loaders read them; float ones are taken as they are.
 *
 * The engine and the export both compute in float, each summing in its own order; the
 * reference is the export's code run in double (export_c_ref.c), the model's function
 * to about 1e-16. For every image: the engine's logits are within
 *   tol = 1e-4 * max|reference logit| + 1e-4 + 4 * r
 * of the reference's, r the largest distance of the float export's logits from the
 * reference's: what float rounding does to this image, measured (a layer summing
 * thousands of terms that cancel leaves rounding of 1e-4 of the largest logit or more,
 * in either order: 2026-12-07, zoo seeds 195 and 244); r itself within 1e-3 of the
 * largest reference logit + 1e-3 (past that it is no rounding: a float overflow or NaN,
 * which would otherwise widen the tolerance without bound); and the export's class is the
 * engine's, or one whose reference logit is within tol of the engine's class's (a tie
 * rounding decides; counted). Prints a summary line (and the accuracy when LABELS is
 * given); exit status 1 on any disagreement. Plain C99 with stdio. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* export_c_ref.c: model_predict with every float a double */
int model_predict_ref(const double *in, double *logits, void *scratch);

static unsigned char *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "export_c_main: cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)*len + 1);
    if (!p || fread(p, 1, (size_t)*len, f) != (size_t)*len) {
        fprintf(stderr, "export_c_main: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    return p;
}

static long be32(const unsigned char *p) {
    return (long)p[0] << 24 | (long)p[1] << 16 | (long)p[2] << 8 | (long)p[3];
}

static void die(const char *what) {
    fprintf(stderr, "export_c_main: %s\n", what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) die("usage: export_c_main IMAGES.idx|IMAGES.bin|IMAGES.npy LOGITS.npy CLASSES.txt [LABELS.idx]");
    long ilen, nlen, llen = 0;
    unsigned char *img = read_file(argv[1], &ilen);
    size_t namelen = strlen(argv[1]);
    int cifar = namelen > 4 && !strcmp(argv[1] + namelen - 4, ".bin");
    int npy_in = namelen > 4 && !strcmp(argv[1] + namelen - 4, ".npy"), f4 = 0;
    long n, per = 1, head, stride; /* sample s's pixels at head + s * stride (elements) */
    if (npy_in) {
        if (ilen < 10 || memcmp(img, "\x93NUMPY\x01", 7) || argc == 5) die("images: not a .npy file (version 1.0)");
        head = 10 + (img[8] | (long)img[9] << 8);
        if (head > ilen) die("images: a .npy header longer than the file");
        img[head - 1] = 0; /* the header's closing newline */
        const char *dict = (const char *)img + 10, *sh = strstr(dict, "'shape': (");
        f4 = strstr(dict, "'<f4'") != NULL;
        if (!sh || (!f4 && !strstr(dict, "'|u1'")) || !strstr(dict, "'fortran_order': False")) die("images: not a C-order .npy of |u1 or <f4");
        char *end;
        n = strtol(sh + 10, &end, 10);
        while (*end == ',' && end[1] == ' ' && end[2] >= '0' && end[2] <= '9') per *= strtol(end + 2, &end, 10);
        if (*end != ')' || per != MODEL_INPUT_SIZE || ilen != head + n * per * (f4 ? 4 : 1))
            die("images: not N samples of the model's input size");
        stride = per;
    } else if (cifar) {
        per = 3072, head = 1, stride = 3073, n = ilen / stride;
        if (per != MODEL_INPUT_SIZE || ilen != n * stride || argc == 5) die("images: not CIFAR-10 records of the model's input size");
    } else {
        if (ilen < 16 || img[2] != 0x08 || img[3] < 1) die("images: not an uncompressed IDX file of bytes");
        n = be32(img + 4);
        for (int d = 1; d < img[3]; d++) per *= be32(img + 4 + 4 * d);
        head = 4 + 4L * img[3], stride = per;
        if (per != MODEL_INPUT_SIZE || ilen != head + n * per) die("images: not N samples of the model's input size");
    }

    /* the engine's logits: .npy version 1.0, '<f4', shape (n, classes) */
    unsigned char *npy = read_file(argv[2], &nlen);
    if (nlen < 10 || memcmp(npy, "\x93NUMPY\x01", 7)) die("logits: not a .npy file");
    long hlen = npy[8] | (long)npy[9] << 8;
    char shape[64];
    snprintf(shape, sizeof shape, "(%ld, %d)", n, MODEL_OUTPUT_SIZE);
    npy[10 + hlen - 1] = 0;
    if (!strstr((char *)npy + 10, "'<f4'") || !strstr((char *)npy + 10, shape) ||
        nlen != 10 + hlen + n * MODEL_OUTPUT_SIZE * 4)
        die("logits: not float32 of shape (N, classes)");
    float *eng = malloc((size_t)n * MODEL_OUTPUT_SIZE * sizeof(float));
    memcpy(eng, npy + 10 + hlen, (size_t)n * MODEL_OUTPUT_SIZE * sizeof(float)); /* little-endian host */

    FILE *cf = fopen(argv[3], "r");
    if (!cf) die("cannot open the engine's classes");
    unsigned char *lab = argc == 5 ? read_file(argv[4], &llen) : NULL;
    if (lab && (llen != 8 + n || be32(lab + 4) != n)) die("labels: not N uncompressed IDX labels");
    /* sample s's label at labels[s * lstride]: the IDX labels, or each CIFAR record's first byte */
    const unsigned char *labels = lab ? lab + 8 : cifar ? img : NULL;
    long lstride = lab ? 1 : stride;

    static float scratch[(MODEL_SCRATCH_BYTES + 3) / 4];
    static double scratch_ref[(MODEL_SCRATCH_BYTES + 3) / 4];
    float x[MODEL_INPUT_SIZE], logits[MODEL_OUTPUT_SIZE];
    double x_ref[MODEL_INPUT_SIZE], exact[MODEL_OUTPUT_SIZE];
    long bad_logits = 0, bad_class = 0, ties = 0, correct = 0;
    double worst = 0, worst_rel = 0, worst_r = 0;
    for (long s = 0; s < n; s++) {
        for (long i = 0; i < per; i++) {
            long at = s * stride + i;
            if (f4) memcpy(&x[i], img + head + 4 * at, 4); /* little-endian host */
            else x[i] = (float)img[head + at] / 255.0f;
            x_ref[i] = x[i];
        }
        int cls = model_predict(x, logits, scratch), engine;
        model_predict_ref(x_ref, exact, scratch_ref);
        if (fscanf(cf, "%d", &engine) != 1) die("the engine's classes: too few lines");
        if (engine < 0 || engine >= MODEL_OUTPUT_SIZE) die("the engine's classes: a class out of range");
        const float *e = eng + s * MODEL_OUTPUT_SIZE;
        double big = 0, diff = 0, r = 0;
        for (int c = 0; c < MODEL_OUTPUT_SIZE; c++) {
            if (fabs(exact[c]) > big) big = fabs(exact[c]);
            double d = fabs(e[c] - exact[c]), dx = fabs(logits[c] - exact[c]);
            if (d != d) d = HUGE_VAL; /* NaN */
            if (dx != dx) dx = HUGE_VAL;
            if (d > diff) diff = d;
            if (dx > r) r = dx;
        }
        double tol = 1e-4 * big + 1e-4 + 4 * r;
        if (diff > worst) worst = diff;
        if (diff / (big + 1e-30) > worst_rel) worst_rel = diff / (big + 1e-30);
        if (r / (big + 1e-30) > worst_r) worst_r = r / (big + 1e-30);
        if (!(r <= 1e-3 * big + 1e-3)) { /* not rounding: an overflow, a NaN, a kernel float breaks */
            if (bad_logits++ < 5)
                fprintf(stderr, "sample %ld: the float export's logits differ from its double run by %g\n", s, r);
        } else if (!(diff <= tol)) {
            if (bad_logits++ < 5)
                fprintf(stderr, "sample %ld: the engine's logits differ from the reference's by %g (tolerance %g, the "
                        "float export's by %g)\n", s, diff, tol, r);
        }
        if (cls != engine) {
            if (cls >= 0 && cls < MODEL_OUTPUT_SIZE && fabs(exact[engine] - exact[cls]) <= tol) {
                ties++;
            } else if (bad_class++ < 5) {
                fprintf(stderr, "sample %ld: class %d, the engine's %d\n", s, cls, engine);
            }
        }
        if (labels) correct += cls == labels[s * lstride];
    }
    printf("%ld samples: %ld classes differ from the engine's (%ld more within a tie), %ld with logits out of "
           "tolerance; the engine's largest logit difference from the reference %.3g (%.3g of the largest logit), "
           "the float export's %.3g of the largest logit",
           n, bad_class, ties, bad_logits, worst, worst_rel, worst_r);
    if (labels) printf("; accuracy %.4f", (double)correct / (double)n);
    printf("\n");
    return bad_class || bad_logits ? 1 : 0;
}
