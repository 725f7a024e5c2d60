/* model_zoo.c SEED [cifar|npy] — prints a random valid nnq program for Fashion-MNIST
 * (with `cifar`: for CIFAR-10's 3 x 32 x 32 images, in its binary files; with `npy`: for
 * samples of a random shape, C x H x W with 1 to 5 channels, or none, and sides of 5 to
 * 40, in .npy files of bytes or floats that tests/e2e/make_npy writes, as the program's
 * first line says: `# data: make_npy DIR C H W [f4]`) up to four convolutions (kernel
 * 1-5, stride 1-3, padding 0 to kernel + 1, half of them 3 x 3 with 16, 32 or 64
 * channels, the shapes Winograd's transforms and oneDNN take; depthwise ones,
 * with and without bias, batch norm, relu, residual sums), max and average pools of
 * windows 2-3 and strides 1-3, dropout, up to two hidden dense layers, every projection
 * of the standard library over 2, 3 or 5 labels; now and then a model declared on
 * [H, W] samples. Then a recipe: batch 32, 50 or 100, adam, adamw or sgd with weight
 * decay and momentum, a step or multistep lr schedule, a parameter group for the biases,
 * a constant or annealed beta, crops (square samples) and flips, calibration, keep best
 * or last, two epochs and a checkpoint every epoch. The same seed prints the same program.
 * tests/e2e/model_zoo.sh trains each and checks that the rest of the pipeline agrees.
 * A test fixture, not an example. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state;

static uint64_t next(void) { /* splitmix64 */
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int between(int lo, int hi) { return lo + (int)(next() % (uint64_t)(hi - lo + 1)); }
static int chance(int percent) { return (int)(next() % 100) < percent; }

static const char *const quants[] = {
    "float",        "pmf(binary)",    "pmf(l3)",           "md_softmax_s(l3)", "pmf(l5)",          "md_tanh_s(binary)",
    "ste(binary)",  "pgd(l3)",        "picm(binary)",      "md_stanh_s(l3)",   "md_softmax(l3)",   "gd_tanh(binary)",
    "md_tanh(binary)", "gd_stanh(l5)", "md_softmax_s(binary)", "pgd(binary)"};
static const char *pick(const char *const *v, int n) { return v[next() % (uint64_t)n]; }
#define PICK(...) pick((const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))
static const char *custom; /* the program's own projection's use, NULL without one */
static const char *quant(void) {
    return custom && chance(25) ? custom : pick(quants, (int)(sizeof quants / sizeof quants[0]));
}

/* A projection of the program's own (docs/projections.md), drawn from the forms users
 * write: a squashing function of beta * a for two labels, a softmax or sparsemax over a
 * score per label for any, stepped by the derivative nnqc derives through it, by a
 * straight-through gradient, or a mix; sometimes clipped after the step. Prints it and
 * sets `custom` to a use of it. */
static void custom_projection(void) {
    if (chance(50)) {
        printf("projection mine(Q: labels) requires |Q| == 2 {\n    aux    a\n    init   a = %s\n",
               PICK("w0", "0.5 * w0 / w0_std", "(abs(w0 - Q[0]) - abs(w0 - Q[1])) / 2"));
        printf("    soft   s = %s\n", PICK("tanh(beta * a)", "clamp(beta * a, -1, 1)", "beta * a / (1 + abs(beta * a))",
                                        "2 / (1 + exp(-beta * a)) - 1", "0.5 * tanh(beta * a) + 0.5 * clamp(beta * a, -1, 1)"));
        printf("    weight w = mid(Q) + half_range(Q) * s\n    update a using %s\n",
               PICK("grad(a)", "grad(w)", "grad(s)", "grad(a) + 0.01 * grad(w)", "grad(w) * (abs(a) <= 1)"));
        if (chance(40)) printf("    after  a = clamp(a, -2, 2)\n");
        printf("    hard   w = %s\n}\n", PICK("Q[a >= 0]", "nearest(Q, mid(Q) + half_range(Q) * s)"));
        custom = "mine(binary)";
    } else {
        printf("projection mine(Q: labels) {\n    aux    a[|Q|]\n"
               "    init   a = -abs(mid(Q) + half_range(Q) * w0 / (1.7320508 * w0_std) - Q)\n");
        printf("    soft   u = %s\n    weight w = sum(u * Q)\n", PICK("softmax(beta * a)", "sparsemax(beta * a)"));
        printf("    update a using %s\n", PICK("grad(a)", "grad(u)", "grad(a) + 0.1 * grad(u)"));
        if (chance(40)) printf("    after  a = clamp(a, -5, 5)\n");
        printf("    hard   w = Q[argmax(a)]\n}\n");
        custom = PICK("mine(binary)", "mine(l3)", "mine(l5)");
    }
}

/* An optimizer with an lr schedule now and then (the recipe is drawn after the model,
 * so a seed's network does not depend on it). */
static const char *optimizer(void) {
    static char buf[256];
    char sched[128] = "";
    int k = between(0, 3);
    if (k == 1)
        snprintf(sched, sizeof sched, ", schedule = step(every = %d %s, gamma = %g)", between(1, 6),
                 chance(50) ? "iterations" : "epochs", between(1, 9) * 0.1);
    else if (k == 2)
        snprintf(sched, sizeof sched, ", schedule = multistep(at = [%d iterations, 1 epochs], gamma = %g)",
                 between(1, 8), between(1, 9) * 0.1);
    double lr = between(1, 30) * 1e-4, wd = chance(50) ? 0 : between(1, 10) * 1e-4;
    switch (between(0, 2)) {
    case 0: snprintf(buf, sizeof buf, "adam(lr = %g, weight_decay = %g%s)\n", lr, wd, sched); break;
    case 1: snprintf(buf, sizeof buf, "adamw(lr = %g, weight_decay = %g%s)\n", lr, wd * 50, sched); break;
    default:
        snprintf(buf, sizeof buf, "sgd(lr = %g, momentum = %g, weight_decay = %g%s)\n", lr * 30, between(0, 9) * 0.1,
                 wd, sched);
    }
    return buf;
}

int main(int argc, char **argv) {
    int cifar = argc == 3 && strcmp(argv[2], "cifar") == 0, npy = argc == 3 && strcmp(argv[2], "npy") == 0;
    if (argc != 2 && !cifar && !npy) {
        fprintf(stderr, "usage: model_zoo SEED [cifar|npy]\n");
        return 2;
    }
    long seed = strtol(argv[1], NULL, 10);
    state = (uint64_t)seed;
    int c = cifar ? 3 : 1, h = cifar ? 32 : 28, w = h, axis = 1; /* axis: the files have a channel axis */
    if (npy) {
        static const int channels[] = {0, 1, 2, 3, 5}; /* 0: [N, H, W] files */
        c = channels[next() % 5];
        axis = c > 0, c += !axis;
        h = between(5, 40), w = chance(30) ? h : between(5, 40);
        printf("# data: make_npy npy-%ld %d %d %d%s\n", seed, axis ? c : 0, h, w, chance(30) ? " f4" : "");
    }
    int hw = chance(15) && c == 1; /* [H, W] samples: only elementwise ops and flatten read them */
    char shape[64];
    if (hw) snprintf(shape, sizeof shape, "%d, %d", h, w);
    else snprintf(shape, sizeof shape, "%d, %d, %d", c, h, w);
    printf("import std.projections\nlabels binary = {-1, +1}\nlabels l3 = {-1, 0, +1}\nlabels l5 = levels(5)\n");
    if (chance(40)) custom_projection();
    printf("model zoo(x: f32[%s]) -> f32[10] {\n", shape);
    printf("    h = %s\n", hw ? "relu(x) + x" : "x");
    int h0 = h, w0 = w; /* the sample's sides */
    for (int i = 0, convs = hw ? 0 : between(0, 4); i < convs; i++) {
        int k = between(1, 5), s = between(1, 3), p = between(0, k + 1), wide = chance(40);
        if (wide) k = 3, s = 1, p = 1;
        static const int wides[] = {16, 32, 64};
        int dw = c > 1 && chance(30), o = dw ? c : wide ? wides[next() % 3] : between(2, 8);
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
    printf("    return dense(h, 10, quant = %s)\n}\n", custom ? custom : quant()); /* used at least once */
    static const int batches[] = {32, 50, 100};
    int batch = batches[next() % 3];
    char crop[64];
    snprintf(crop, sizeof crop, ", augment = [random_crop(%d, pad = %d), hflip]", h0, between(1, 4));
    const char *augment = chance(40) && h0 == w0 ? crop : chance(30) ? ", augment = [hflip]" : "";
    if (npy)
        printf("data train = npy(\"npy-%ld/train-images.npy\", \"npy-%ld/train-labels.npy\", normalize = standard%s)\n"
               "data test  = npy(\"npy-%ld/test-images.npy\", \"npy-%ld/test-labels.npy\", normalize = like(train))\n",
               seed, seed, augment, seed, seed);
    else if (cifar)
        printf("data train = cifar10(\"cifar-10-batches-bin\", split = train, normalize = standard%s)\n"
               "data test  = cifar10(\"cifar-10-batches-bin\", split = test, normalize = like(train))\n", augment);
    else
        printf("data train = idx(\"fashion-mnist/train-images-idx3-ubyte.gz\", \"fashion-mnist/train-labels-idx1-ubyte.gz\",\n"
               "                 normalize = standard%s)\n"
               "data test  = idx(\"fashion-mnist/t10k-images-idx3-ubyte.gz\", \"fashion-mnist/t10k-labels-idx1-ubyte.gz\",\n"
               "                 normalize = like(train))\n", augment);
    printf("train zoo on train {\n    optimizer = %s", optimizer());
    if (chance(30)) printf("    group = params(\"*.b\", lr = %g, weight_decay = 0)\n", between(1, 20) * 1e-4);
    if (chance(70))
        printf("    beta = anneal(start = %g, times = %g, every = %d iterations, max = %g)\n", between(1, 4) * 0.5,
               1 + between(1, 20) * 0.01, between(1, 5), chance(50) ? 1e4 : 50.0);
    else if (chance(50))
        printf("    beta = %g\n", between(1, 8) * 0.5);
    if (chance(50)) printf("    calibrate = %d\n", chance(30) ? 0 : between(1, 4) * 50);
    if (chance(50)) printf("    keep = %s\n", chance(50) ? "best" : "last");
    printf("    epochs = 2\n    batch = %d\n    seed = %ld\n    validation = 200\n"
           "    evaluate test%s\n    checkpoint \"ck\" every 1 epoch\n    save \"zoo.nnqm\"\n}\n",
           batch, seed, chance(50) ? " every 1 epoch" : "");
    return 0;
}
