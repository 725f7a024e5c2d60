/* test_model.c — model_file.c: save/read round trips for label and float tensors, the
 * exact byte layout of docs/model-format.md, rejected values, failed saves that must
 * leave the destination alone, and corruption caught on read. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"

typedef struct TensorSpec {
    const char *name;
    int32_t rank;
    int64_t dims[4];
    int32_t nlabels;
    float labels[256];
    float *values;
} TensorSpec;

static const char *g_model = "mlp_test";
static TensorSpec *g_specs;
static int g_nspecs;
static const char *g_save_path;

static int entry_save(NnqRun *run) {
    nnq_rt_model_begin(run, g_model);
    for (int i = 0; i < g_nspecs; i++)
        nnq_rt_model_add(run, g_specs[i].name, g_specs[i].rank, g_specs[i].dims,
                         g_specs[i].nlabels, g_specs[i].labels, g_specs[i].values);
    nnq_rt_model_save(run, g_save_path);
    return 0;
}

static int save_status(TensorSpec *specs, int n, const char *path, char **err) {
    g_specs = specs, g_nspecs = n, g_save_path = path;
    return th_invoke_new(NULL, entry_save, err);
}

static int64_t spec_count(const TensorSpec *t) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->dims[d];
    return n;
}

static uint32_t g_lcg = 99;
static uint32_t rnd_u32(void) {
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return g_lcg >> 8;
}

/* Fills values with labels chosen at random (float tensors: assorted floats). */
static void spec_fill(TensorSpec *t) {
    int64_t n = spec_count(t);
    t->values = malloc(sizeof(float) * (size_t)(n ? n : 1));
    static const float specials[] = {-0.0f, 1e-40f, -3.4e38f, 1.0f / 3.0f, 65504.0f, -1e-7f, INFINITY};
    for (int64_t i = 0; i < n; i++) {
        if (t->nlabels)
            t->values[i] = t->labels[rnd_u32() % (uint32_t)t->nlabels];
        else
            t->values[i] = i < 7 ? specials[i] : (float)((int)(rnd_u32() % 20001) - 10000) / 7.0f;
    }
}

static bool same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

void test_model_roundtrip(void) {
    TensorSpec specs[] = {
        {"w_binary", 3, {3, 5, 7}, 2, {-1, 1}, NULL},
        {"w_ternary", 1, {37}, 3, {-1, 0, 1}, NULL},
        {"w_four", 2, {13, 1}, 4, {-2, -1, 1, 2}, NULL},
        {"w_five", 1, {19}, 5, {-3, -1, 0, 1, 3}, NULL},
        {"bn_scale", 1, {11}, 0, {0}, NULL},
        {"scalar", 0, {0}, 0, {0}, NULL},
        {"w_256", 2, {3, 3}, 256, {0}, NULL},
        {"empty", 2, {0, 4}, 2, {-1, 1}, NULL},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    for (int l = 0; l < 256; l++)
        specs[6].labels[l] = (float)l * 0.5f - 17.0f;
    for (int i = 0; i < n; i++)
        spec_fill(&specs[i]);
    specs[6].values[0] = specs[6].labels[255]; /* the last index, all 8 bits set */
    char *path = th_path("roundtrip.nnqm");
    char *err = NULL;
    int rc = save_status(specs, n, path, &err);
    CHECK(rc == 0, "save failed: %s", err);
    free(err);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!th_file_exists(tmp), "the .tmp file is left over");

    char msg[512] = "";
    NnqModelFile *mf = nnq_model_read(path, msg, sizeof msg);
    CHECK(mf != NULL, "read failed: %s", msg);
    if (!mf) {
        free(path);
        return;
    }
    CHECK(strcmp(mf->model, g_model) == 0, "model name '%s'", mf->model);
    CHECK(mf->ntensors == n, "%d tensors", mf->ntensors);
    for (int i = 0; i < n && i < mf->ntensors; i++) {
        const NnqModelTensor *t = &mf->tensors[i];
        const TensorSpec *s = &specs[i];
        CHECK(strcmp(t->name, s->name) == 0, "tensor %d name '%s'", i, t->name);
        CHECK(t->rank == s->rank, "%s rank %d", s->name, t->rank);
        for (int d = 0; d < s->rank && d < t->rank; d++)
            CHECK(t->dims[d] == s->dims[d], "%s dim %d = %lld", s->name, d, (long long)t->dims[d]);
        CHECK(t->nlabels == s->nlabels, "%s nlabels %d", s->name, t->nlabels);
        int bad = 0;
        for (int l = 0; l < s->nlabels && l < t->nlabels; l++)
            bad += !same_bits(t->labels[l], s->labels[l]);
        CHECK(bad == 0, "%s: %d labels differ", s->name, bad);
        bad = 0;
        int64_t cnt = spec_count(s);
        for (int64_t v = 0; v < cnt; v++)
            bad += !same_bits(t->values[v], s->values[v]);
        CHECK(bad == 0, "%s: %d of %lld values differ after the round trip", s->name, bad,
              (long long)cnt);
    }
    nnq_model_free(mf);

    /* saving again over the file replaces it */
    g_model = "second";
    CHECK(save_status(specs, 1, path, NULL) == 0);
    mf = nnq_model_read(path, msg, sizeof msg);
    CHECK(mf && mf->ntensors == 1 && strcmp(mf->model, "second") == 0, "%s", msg);
    nnq_model_free(mf);
    g_model = "mlp_test";
    for (int i = 0; i < n; i++)
        free(specs[i].values);
    free(path);
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) {
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *b = malloc((1 << 16) + 1);
    *n = fread(b, 1, 1 << 16, f);
    fclose(f);
    return b;
}

/* The bytes of docs/model-format.md, checked one field at a time. */
void test_model_layout(void) {
    float bin[10] = {1, -1, -1, 1, 1, 1, -1, -1, 1, -1}; /* indices 1001110010 */
    float ter[5] = {0, 1, -1, 1, 0};                    /* indices 1 2 0 2 1 */
    float five[3] = {3, 1, -3};                         /* indices 4 3 0, 3 bits */
    float flt[2] = {1.5f, -2.0f};
    TensorSpec specs[] = {
        {"w", 1, {10}, 2, {-1, 1}, bin},
        {"t", 2, {5, 1}, 3, {-1, 0, 1}, ter},
        {"f", 1, {3}, 5, {-3, -1, 0, 1, 3}, five},
        {"s", 1, {2}, 0, {0}, flt},
    };
    char *path = th_path("layout.nnqm");
    g_model = "m";
    CHECK(save_status(specs, 4, path, NULL) == 0);
    g_model = "mlp_test";
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    CHECK(b != NULL);
    if (!b) {
        free(path);
        return;
    }
    size_t expect = 4 + 4 + 4 + 1 + 4                        /* header */
                    + (4 + 1 + 4 + 8 + 4 + 2 * 4 + 8 + 2)      /* w: 10 bits */
                    + (4 + 1 + 4 + 16 + 4 + 3 * 4 + 8 + 2)     /* t: 10 bits */
                    + (4 + 1 + 4 + 8 + 4 + 5 * 4 + 8 + 2)      /* f: 9 bits */
                    + (4 + 1 + 4 + 8 + 4 + 0 + 8 + 8)          /* s: 2 floats */
                    + 4;                                        /* CRC */
    CHECK(n == expect, "file is %zu bytes, the format says %zu", n, expect);
    if (n != expect) {
        free(b), free(path);
        return;
    }
    CHECK(memcmp(b, "NNQM", 4) == 0);
    CHECK(le32(b + 4) == 1, "version %u", le32(b + 4));
    CHECK(le32(b + 8) == 1 && b[12] == 'm');
    CHECK(le32(b + 13) == 4, "tensor count %u", le32(b + 13));
    size_t o = 17;
    /* tensor w */
    CHECK(le32(b + o) == 1 && b[o + 4] == 'w');
    o += 5;
    CHECK(le32(b + o) == 1 && le64(b + o + 4) == 10, "w rank/dims");
    o += 12;
    CHECK(le32(b + o) == 2, "w nlabels");
    float l0, l1;
    memcpy(&l0, b + o + 4, 4);
    memcpy(&l1, b + o + 8, 4);
    CHECK(l0 == -1.0f && l1 == 1.0f, "w labels %g %g", l0, l1);
    o += 12;
    CHECK(le64(b + o) == 2, "w payload length %llu", (unsigned long long)le64(b + o));
    o += 8;
    CHECK(b[o] == 0x39 && b[o + 1] == 0x01, "w payload %02x %02x, want 39 01", b[o], b[o + 1]);
    o += 2;
    /* tensor t: 2 bits per value */
    o += 5;
    CHECK(le32(b + o) == 2 && le64(b + o + 4) == 5 && le64(b + o + 12) == 1, "t dims");
    o += 20;
    CHECK(le32(b + o) == 3, "t nlabels");
    o += 4 + 12;
    CHECK(le64(b + o) == 2);
    o += 8;
    CHECK(b[o] == 0x89 && b[o + 1] == 0x01, "t payload %02x %02x, want 89 01", b[o], b[o + 1]);
    o += 2;
    /* tensor f: 3 bits per value, the third crossing into byte 2 */
    o += 5 + 12;
    CHECK(le32(b + o) == 5, "f nlabels");
    o += 4 + 20;
    CHECK(le64(b + o) == 2);
    o += 8;
    CHECK(b[o] == 0x1c && b[o + 1] == 0x00, "f payload %02x %02x, want 1c 00", b[o], b[o + 1]);
    o += 2;
    /* tensor s: float32 */
    o += 5 + 12;
    CHECK(le32(b + o) == 0, "s nlabels");
    o += 4;
    CHECK(le64(b + o) == 8);
    o += 8;
    float f0, f1;
    memcpy(&f0, b + o, 4);
    memcpy(&f1, b + o + 4, 4);
    CHECK(f0 == 1.5f && f1 == -2.0f, "s values %g %g", f0, f1);
    o += 8;
    CHECK(o == n - 4, "fields end at %zu, CRC at %zu", o, n - 4);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(n - 4));
    CHECK(le32(b + n - 4) == crc, "stored CRC %08x, computed %08x", le32(b + n - 4), crc);
    free(b), free(path);
}

void test_model_bad_value(void) {
    float vals[7] = {1, -1, 1, 1, 0.5f, -1, 1};
    TensorSpec specs[] = {
        {"ok", 1, {2}, 0, {0}, vals},
        {"w", 1, {7}, 2, {-1, 1}, vals},
    };
    char *path = th_path("badvalue.nnqm");
    char *err = NULL;
    CHECK(save_status(specs, 2, path, &err) == 1);
    CHECK(th_contains(err, "tensor 'w'") && th_contains(err, "value 0.5 at index 4") &&
              th_contains(err, "{-1, 1}"),
          "got: %s", err);
    free(err);
    CHECK(!th_file_exists(path), "a file was written");
    /* duplicate labels and duplicate tensor names are rejected too */
    TensorSpec dup_labels[] = {{"d", 1, {1}, 3, {-1, 1, -1}, vals}};
    CHECK(save_status(dup_labels, 1, path, &err) == 1);
    CHECK(th_contains(err, "appears twice"), "got: %s", err);
    free(err);
    TensorSpec dup_names[] = {{"x", 1, {1}, 0, {0}, vals}, {"x", 1, {1}, 0, {0}, vals}};
    CHECK(save_status(dup_names, 2, path, &err) == 1);
    CHECK(th_contains(err, "'x' added twice"), "got: %s", err);
    free(err);
    free(path);
}

static char *read_text(const char *path) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    if (!b)
        return NULL;
    b[n] = 0;
    return (char *)b;
}

void test_model_save_failures(void) {
    float vals[3] = {1, -1, 1};
    TensorSpec spec[] = {{"w", 1, {3}, 2, {-1, 1}, vals}};
    char *err = NULL;

    /* missing directory */
    char *nodir = th_path("no-such-dir/m.nnqm");
    CHECK(save_status(spec, 1, nodir, &err) == 1);
    CHECK(th_contains(err, nodir) && th_contains(err, "No such file or directory"), "got: %s",
          err);
    free(err);
    char *nodir_tmp = th_path("no-such-dir/m.nnqm.tmp");
    CHECK(!th_file_exists(nodir) && !th_file_exists(nodir_tmp));
    free(nodir), free(nodir_tmp);

    /* path.tmp cannot be created (it is a directory): the old file survives */
    char *dest = th_path("keep.nnqm"), *dest_tmp = th_path("keep.nnqm.tmp");
    CHECK(th_write_file(dest, "old", 3, false));
    mkdir(dest_tmp, 0700);
    CHECK(save_status(spec, 1, dest, &err) == 1);
    CHECK(th_contains(err, dest) && th_contains(err, "Is a directory"), "got: %s", err);
    free(err);
    char *text = read_text(dest);
    CHECK(text && strcmp(text, "old") == 0, "destination changed to '%s'", text);
    free(text);
    struct stat st;
    CHECK(stat(dest_tmp, &st) == 0 && S_ISDIR(st.st_mode), "a .tmp we did not create was removed");
    rmdir(dest_tmp);

    /* the disk is full: path.tmp is a link to /dev/full, writes fail with ENOSPC */
    if (th_file_exists("/dev/full") && symlink("/dev/full", dest_tmp) == 0) {
        CHECK(save_status(spec, 1, dest, &err) == 1);
        CHECK(th_contains(err, dest) && th_contains(err, "No space left on device"), "got: %s",
              err);
        free(err);
        text = read_text(dest);
        CHECK(text && strcmp(text, "old") == 0, "destination changed to '%s'", text);
        free(text);
        CHECK(lstat(dest_tmp, &st) != 0, "the .tmp is left after ENOSPC");
        unlink(dest_tmp);
    } else {
        printf("note: /dev/full unavailable, ENOSPC case not exercised\n");
    }

    /* the destination is a directory: rename fails, the .tmp is removed */
    char *adir = th_path("adir.nnqm"), *adir_tmp = th_path("adir.nnqm.tmp");
    mkdir(adir, 0700);
    CHECK(save_status(spec, 1, adir, &err) == 1);
    CHECK(th_contains(err, adir) && th_contains(err, "rename"), "got: %s", err);
    free(err);
    CHECK(!th_file_exists(adir_tmp), "the .tmp is left after a failed rename");
    CHECK(stat(adir, &st) == 0 && S_ISDIR(st.st_mode));

    /* a read-only directory (meaningless for root, who may write anyway) */
    if (geteuid() != 0) {
        char *ro = th_path("ro"), *ro_file = th_path("ro/m.nnqm");
        mkdir(ro, 0500);
        CHECK(save_status(spec, 1, ro_file, &err) == 1);
        CHECK(th_contains(err, "Permission denied"), "got: %s", err);
        free(err);
        CHECK(!th_file_exists(ro_file));
        chmod(ro, 0700);
        free(ro), free(ro_file);
    }

    /* and a save that works replaces the old file */
    CHECK(save_status(spec, 1, dest, NULL) == 0);
    char msg[256];
    NnqModelFile *mf = nnq_model_read(dest, msg, sizeof msg);
    CHECK(mf && mf->ntensors == 1 && mf->tensors[0].values[1] == -1.0f, "%s", msg);
    nnq_model_free(mf);
    free(dest), free(dest_tmp), free(adir), free(adir_tmp);
}

static void rewrite(const char *path, const unsigned char *b, size_t n, bool fix_crc) {
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    if (fix_crc && n >= 4) {
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), c, (uInt)(n - 4));
        for (int i = 0; i < 4; i++)
            c[n - 4 + i] = (unsigned char)(crc >> (8 * i));
    }
    CHECK(th_write_file(path, c, n, false));
    free(c);
}

static bool read_fails(const char *path, const char *want, char *msg, size_t len) {
    NnqModelFile *mf = nnq_model_read(path, msg, len);
    nnq_model_free(mf);
    return mf == NULL && th_contains(msg, want) && th_contains(msg, path);
}

void test_model_corruption(void) {
    float vals[9] = {1, -1, 1, 1, -1, -1, 1, -1, 1};
    TensorSpec spec[] = {{"w", 2, {3, 3}, 2, {-1, 1}, vals}};
    char *good = th_path("good.nnqm"), *bad = th_path("corrupt.nnqm");
    CHECK(save_status(spec, 1, good, NULL) == 0);
    size_t n = 0;
    unsigned char *b = slurp(good, &n);
    CHECK(b && n > 40);
    if (!b || n <= 40) {
        free(b), free(good), free(bad);
        return;
    }
    char msg[512];

    b[n / 2] ^= 0x10; /* one flipped bit */
    rewrite(bad, b, n, false);
    CHECK(read_fails(bad, "CRC-32 mismatch", msg, sizeof msg), "got: %s", msg);
    b[n / 2] ^= 0x10;

    rewrite(bad, b, n - 7, false); /* truncated */
    CHECK(read_fails(bad, "corrupt or truncated", msg, sizeof msg), "got: %s", msg);

    b[0] = 'X'; /* not a model file */
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "bad magic", msg, sizeof msg), "got: %s", msg);
    b[0] = 'N';

    b[4] = 3; /* a future version */
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "unsupported model file version 3", msg, sizeof msg), "got: %s", msg);
    b[4] = 1;

    /* consistent CRC but an impossible structure: payload length off by one */
    size_t plen_at = n - 4 - 2 - 8; /* 9 values x 1 bit = 2 bytes of payload */
    CHECK(le64(b + plen_at) == 2, "payload length field not where the format puts it");
    b[plen_at] = 3;
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "malformed", msg, sizeof msg), "got: %s", msg);
    b[plen_at] = 2;

    /* non-zero padding bits (9 values use 1 bit of the second byte) */
    b[n - 4 - 1] |= 0x80;
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "padding", msg, sizeof msg), "got: %s", msg);
    b[n - 4 - 1] &= 0x7f;

    rewrite(bad, b, n, true); /* back to the good bytes: reads again */
    NnqModelFile *mf = nnq_model_read(bad, msg, sizeof msg);
    CHECK(mf != NULL, "restored file: %s", msg);
    nnq_model_free(mf);

    char *missing = th_path("missing.nnqm");
    CHECK(read_fails(missing, "No such file", msg, sizeof msg), "got: %s", msg);
    free(missing), free(b), free(good), free(bad);
}

/* Names in a model file are what nnq writes (printable ASCII, no space) and distinct: a
 * control character (shown as \xNN, never sent to the terminal), a NUL, an empty name and
 * a second tensor of the same name are refused; so is writing such a name. */
void test_model_names(void) {
    float w[2] = {1, -1}, v[2] = {-1, 1};
    TensorSpec spec[] = {{"w", 1, {2}, 2, {-1, 1}, w}, {"v", 1, {2}, 2, {-1, 1}, v}};
    char *good = th_path("names.nnqm"), *bad = th_path("names_bad.nnqm");
    CHECK(save_status(spec, 2, good, NULL) == 0);
    size_t n = 0;
    unsigned char *b = slurp(good, &n);
    unsigned char *at = NULL; /* the second tensor's name: length 1, then 'v' */
    for (size_t i = 0; b && i + 5 <= n && !at; i++)
        if (!memcmp(b + i, "\x01\x00\x00\x00v", 5))
            at = b + i + 4;
    CHECK(at != NULL, "tensor 'v' not found in the file");
    if (!at) {
        free(b), free(good), free(bad);
        return;
    }
    char msg[512];
    static const struct {
        unsigned char c;
        const char *want;
    } cases[] = {{'w', "two tensors are named 'w'"},
                 {0x1b, "tensor name at byte"},
                 {0, "is '\\x00': a name is 1 to 4096 printable ASCII characters, no space"},
                 {' ', "is ' ': a name"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        *at = cases[k].c;
        rewrite(bad, b, n, true);
        CHECK(read_fails(bad, cases[k].want, msg, sizeof msg), "byte 0x%02x: got: %s", cases[k].c, msg);
        CHECK(!strchr(msg, 0x1b), "a control character reached the message: %s", msg);
    }
    *at = 0x1b;
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "is '\\x1b'", msg, sizeof msg), "got: %s", msg);

    at[-4] = 0; /* an empty name */
    rewrite(bad, b, n, true);
    CHECK(read_fails(bad, "tensor name at byte", msg, sizeof msg), "got: %s", msg);

    TensorSpec esc[] = {{"a\tb", 1, {2}, 2, {-1, 1}, w}};
    char *err = NULL;
    CHECK(save_status(esc, 1, bad, &err) == 1 && th_contains(err, "invalid tensor name"), "got: %s", err ? err : "");
    free(err), free(b), free(good), free(bad);
}

/* Two processes saving to one model path at once (runs of one program side by side)
 * take turns: every file under the name is one save's, whole. Each saves a 4 MB float
 * tensor of its own value 40 times; the other process reads the file between saves. (With
 * the .tmp opened unlocked, both wrote into one .tmp and the file renamed into place
 * failed its CRC.) */
void test_model_concurrent_saves(void) {
    enum { N = 1 << 20, SAVES = 40 };
    char *path = th_path("shared.nnqm");
    pid_t child = fork();
    CHECK(child >= 0);
    if (child < 0) {
        free(path);
        return;
    }
    float *v = malloc(sizeof(float) * N);
    float mine = child == 0 ? 2.0f : 1.0f;
    for (int i = 0; i < N; i++)
        v[i] = mine;
    TensorSpec spec[] = {{"w", 1, {N}, 0, {0}, v}};
    g_specs = spec, g_nspecs = 1, g_save_path = path;
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.quiet = true;
    int bad = 0, failed = 0;
    for (int k = 0; k < SAVES; k++) {
        NnqRun *run = nnq_run_new(&o); /* not th_invoke: its capture files are the test's */
        failed += !run || nnq_run_invoke(run, entry_save) != 0;
        nnq_run_free(run);
        char msg[512];
        NnqModelFile *mf = nnq_model_read(path, msg, sizeof msg);
        if (!mf || mf->ntensors != 1 || mf->tensors[0].values[0] != mf->tensors[0].values[N - 1] ||
            (mf->tensors[0].values[0] != 1.0f && mf->tensors[0].values[0] != 2.0f))
            bad++;
        nnq_model_free(mf);
    }
    free(v);
    if (child == 0)
        _exit(bad || failed ? 1 : 0);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(!failed, "%d of %d saves failed", failed, SAVES);
    CHECK(!bad, "%d of %d reads found a file that was no one save's", bad, SAVES);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process's saves or reads failed");
    free(path);
}
