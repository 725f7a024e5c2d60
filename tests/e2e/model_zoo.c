/* model_zoo.c SEED — prints a random valid nnq program for Fashion-MNIST: up to four
 * convolutions (kernel 1-5, stride 1-3, padding 0 to kernel + 1, half of them 3 x 3 with
 * 16 or 32 channels, the shapes Winograd's transforms and oneDNN take; depthwise ones,
 * with and without bias, batch norm, relu, residual sums), max and average pools of
 * windows 2-3 and strides 1-3, dropout, up to two hidden dense layers, every projection
 * of the standard library over 2, 3 or 5 labels, batch 32, 50 or 100; now and then a
 * model declared on [28, 28] samples. The same seed prints the same program.
 * tests/e2e/model_zoo.sh trains each and checks that the rest of the pipeline agrees.
 * A test fixture, not an example. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t state;

static uint64_t next(void) { /* splitmix64 */
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int between(int lo, int hi) { return lo + (int)(next() % (uint64_t)(hi - lo + 1)); }
static int chance(int percent) { return (int)(next() % 100) < percent; }

static const char *const quants[] = {"float",       "pmf(binary)",       "pmf(l3)", "md_softmax_s(l3)",
                                     "pmf(l5)",     "md_tanh_s(binary)", "ste(binary)", "pgd(l3)",
                                     "picm(binary)", "md_stanh_s(l3)"};
static const char *quant(void) { return quants[next() % (sizeof quants / sizeof quants[0])]; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: model_zoo SEED\n");
        return 2;
    }
    long seed = strtol(argv[1], NULL, 10);
    state = (uint64_t)seed;
    int hw = chance(15); /* [28, 28] samples: only elementwise ops and flatten read them */
    int c = 1, h = 28, w = 28;
    printf("import std.projections\nlabels binary = {-1, +1}\nlabels l3 = {-1, 0, +1}\nlabels l5 = levels(5)\n");
    printf("model zoo(x: f32[%s]) -> f32[10] {\n", hw ? "28, 28" : "1, 28, 28");
    printf("    h = %s\n", hw ? "relu(x) + x" : "x");
    for (int i = 0, convs = hw ? 0 : between(0, 4); i < convs; i++) {
        int k = between(1, 5), s = between(1, 3), p = between(0, k + 1), wide = chance(40);
        if (wide) k = 3, s = 1, p = 1;
        int dw = c > 1 && chance(30), o = dw ? c : wide ? (chance(50) ? 16 : 32) : between(2, 8);
        if (h + 2 * p < k || w + 2 * p < k) continue;
        int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
        if ((long)oh * ow * o > 40000) continue;
        char conv[256];
        snprintf(conv, sizeof conv, "conv2d(h, %d, %d, stride = %d, pad = %d, groups = %d, bias = %s, quant = %s)", o,
                 k, s, p, dw ? c : 1, chance(30) ? "false" : "true", quant());
        int bn = chance(70), relu = chance(80), res = !dw && o == c && oh == h && ow == w && chance(50);
        printf("    h = %s%s%s%s%s%s\n", res ? "h + " : "", relu ? "relu(" : "", bn ? "batchnorm(" : "", conv,
               bn ? ")" : "", relu ? ")" : "");
        c = o, h = oh, w = ow;
        if (h >= 2 && w >= 2 && chance(50)) {
            int pk = between(2, h < 3 || w < 3 ? 2 : 3), ps = between(1, 3);
            printf("    h = %s(h, %d, stride = %d)\n", chance(50) ? "maxpool" : "avgpool", pk, ps);
            h = (h - pk) / ps + 1, w = (w - pk) / ps + 1;
        }
    }
    printf("    h = flatten(h)\n");
    if (chance(30)) printf("    h = dropout(h, 0.2)\n");
    for (int i = 0, dense = between(0, 2); i < dense; i++) {
        int bn = chance(60);
        printf("    h = relu(%sdense(h, %d, bias = %s, quant = %s)%s)\n", bn ? "batchnorm(" : "", between(8, 40),
               chance(30) ? "false" : "true", quant(), bn ? ")" : "");
    }
    printf("    return dense(h, 10, quant = %s)\n}\n", quant());
    static const int batches[] = {32, 50, 100};
    printf("data train = idx(\"fashion-mnist/train-images-idx3-ubyte.gz\", \"fashion-mnist/train-labels-idx1-ubyte.gz\",\n"
           "                 normalize = standard)\n"
           "data test  = idx(\"fashion-mnist/t10k-images-idx3-ubyte.gz\", \"fashion-mnist/t10k-labels-idx1-ubyte.gz\",\n"
           "                 normalize = like(train))\n"
           "train zoo on train {\n    epochs = 1\n    batch = %d\n    seed = %ld\n    validation = 200\n"
           "    evaluate test\n    save \"zoo.nnqm\"\n}\n",
           batches[next() % 3], seed);
    return 0;
}
