/* data.c — data sets: finding files, loading IDX, CIFAR and NumPy .npy data,
 * checking, normalizing, batching and augmenting.
 *
 * Invariants:
 *  - A data set handle is an index into run->datasets, valid until nnq_run_free; the
 *    pixel, label and normalization arrays and the paths are tracked blocks of the run.
 *  - A loaded data set is fully validated: magic, header, dimensions, exact payload
 *    size (no truncation, no trailing bytes), equal image and label counts, labels in
 *    [0, 2^31). Pixels are stored sample-major (sample, channel, row, column); byte
 *    pixels load as byte/255 in [0, 1], float pixels (.npy) as their (finite) values.
 *  - Normalization is always relative to the loaded pixels: each data set records, per
 *    channel, the affine map (shift, scale) now applied to it, so statistics and
 *    repeated calls do not depend on the order of nnq_rt_data_normalize calls.
 *  - A file being read is closed before any error is reported:
 *    loaders write their message into a buffer and return false, and the caller closes
 *    the file and then fails.
 *  - Augmentation draws from the run's generator only when a batch asks for it, so a
 *    run without augmentation sees the same random stream as before.
 *
 * Search path for a relative file (or CIFAR directory) name, in order:
 * options.data_dir, each entry of $NNQ_DATA_DIR (colon-separated, empty entries
 * skipped), options.base_dir, ".", /usr/share/datasets. The first candidate that
 * exists and is of the wanted kind (a file: anything but a directory; a directory)
 * wins. An absolute name is used as is. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rt_internal.h"

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define DATA_MAX_SIDE 65536 /* rows and columns */
/* Most pixel values in one data set (2^44 floats: 64 TiB, over any real machine); keeps
 * byte counts far from overflow. */
#define DATA_MAX_VALUES ((uint64_t)1 << 44)

/* ---- search path ---- */

typedef struct PathList {
    char *text; /* "cand (why), cand (why), ..." for the message */
    size_t len, cap;
} PathList;

static void pathlist_append(PathList *pl, const char *s) {
    size_t n = strlen(s);
    if (pl->len + n + 1 > pl->cap) {
        size_t cap = (pl->len + n + 1) * 2;
        char *t = realloc(pl->text, cap);
        if (!t)
            return; /* the message just gets shorter */
        pl->text = t;
        pl->cap = cap;
    }
    memcpy(pl->text + pl->len, s, n + 1);
    pl->len += n;
}

/* Joins dir and name (for the current directory ".", name as it is: "./x" would read
 * "././x" in messages where the user wrote "./x"); NULL when out of memory. Caller frees. */
static char *path_join(const char *dir, size_t dirlen, const char *name) {
    size_t nlen = strlen(name);
    if (dirlen == 1 && dir[0] == '.') dirlen = 0;
    bool slash = dirlen > 0 && dir[dirlen - 1] != '/';
    char *p = malloc(dirlen + slash + nlen + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dirlen);
    if (slash)
        p[dirlen] = '/';
    memcpy(p + dirlen + slash, name, nlen + 1);
    return p;
}

/* Tries dir/name; on success (it exists and is a directory exactly when want_dir)
 * stores the run-owned path in *found. */
static bool data_try_dir(NnqRun *run, const char *dir, size_t dirlen, const char *name,
                         bool want_dir, const char *why, PathList *tried, char **found) {
    char *cand = path_join(dir, dirlen, name);
    if (!cand)
        return false;
    struct stat st;
    bool exists = stat(cand, &st) == 0;
    if (exists && (bool)S_ISDIR(st.st_mode) == want_dir) {
        /* rt_alloc_try: a longjmp here would leak cand and the list */
        size_t n = strlen(cand);
        char *owned = rt_alloc_try(run, (int64_t)n + 1, false);
        if (owned) {
            memcpy(owned, cand, n + 1);
            *found = owned;
            free(cand);
            return true;
        }
    }
    if (tried->len)
        pathlist_append(tried, ", ");
    pathlist_append(tried, cand);
    pathlist_append(tried, " (");
    pathlist_append(tried, why);
    /* there, but of the other kind: said, or "cannot find" reads as a missing path */
    if (exists)
        pathlist_append(tried, want_dir ? ": not a directory" : ": a directory");
    pathlist_append(tried, ")");
    free(cand);
    return false;
}

char *rt_data_resolve(NnqRun *run, const char *name, bool want_dir, const char *what) {
    const char *kind = what ? what : want_dir ? "data directory" : "data file";
    if (!name || !*name)
        nnq_rt_fail(run, "empty %s name", kind);
    if (name[0] == '/') {
        struct stat st;
        if (stat(name, &st) != 0)
            nnq_rt_fail(run, "cannot open %s '%s': %s", kind, name, strerror(errno));
        if (S_ISDIR(st.st_mode) && !want_dir)
            nnq_rt_fail(run, "%s '%s' is a directory", kind, name);
        if (!S_ISDIR(st.st_mode) && want_dir)
            nnq_rt_fail(run, "%s '%s' is not a directory", kind, name);
        return rt_strdup(run, name);
    }
    PathList tried = {0};
    char *found = NULL;
    const char *dd = run->opts.data_dir;
    if (dd && *dd &&
        data_try_dir(run, dd, strlen(dd), name, want_dir, "--data-dir", &tried, &found))
        goto done;
    const char *env = getenv("NNQ_DATA_DIR");
    if (env) {
        for (const char *p = env; *p;) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0 &&
                data_try_dir(run, p, len, name, want_dir, "$NNQ_DATA_DIR", &tried, &found))
                goto done;
            p += len;
            if (*p == ':')
                p++;
        }
    }
    const char *bd = run->opts.base_dir;
    if (bd && *bd &&
        data_try_dir(run, bd, strlen(bd), name, want_dir, "the program's directory", &tried,
                     &found))
        goto done;
    if (data_try_dir(run, ".", 1, name, want_dir, "the current directory", &tried, &found))
        goto done;
    if (data_try_dir(run, "/usr/share/datasets", 19, name, want_dir, "system data sets", &tried,
                     &found))
        goto done;
    {
        char msg[6144];
        snprintf(msg, sizeof msg, "%s", tried.text ? tried.text : "");
        free(tried.text);
        nnq_rt_fail(run,
                    "cannot find %s '%s'; tried: %s; set the directory with --data-dir "
                    "or $NNQ_DATA_DIR",
                    kind, name, msg);
    }
done:
    free(tried.text);
    return found;
}

/* ---- reading a data file: gzip or plain, through zlib (IDX and .npy; npy.c) ---- */

/* Opens path, runs load, closes; fails the run with the loader's message. */
static void df_load(NnqRun *run, const char *path, NnqDataSet *ds,
                    bool (*load)(NnqRun *, RtZFile *, NnqDataSet *)) {
    char err[2048];
    RtZFile f = {.path = path, .err = err, .errlen = sizeof err};
    bool ok = rt_zf_open(&f, "data file");
    if (ok) {
        ok = load(run, &f, ds);
        rt_zf_close(&f);
    }
    if (!ok)
        nnq_rt_fail(run, "%s", err);
}

/* ---- IDX ---- */

static uint32_t idx_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *idx_magic_name(uint32_t magic) {
    switch (magic) {
    case IDX_MAGIC_LABELS:
        return " (that is an IDX label file)";
    case IDX_MAGIC_IMAGES:
        return " (that is an IDX image file)";
    default:
        return (magic >> 16) == 0 && ((magic >> 8) & 0xff) != 0x08
                   ? " (an IDX file, but not of unsigned bytes)"
                   : "";
    }
}

/* Reads and checks the header: magic, then ndims big-endian uint32 dimensions. */
static bool idx_header(RtZFile *f, uint32_t magic, const char *kind, int ndims, uint32_t *dims) {
    unsigned char hdr[16];
    size_t want = 4 + 4 * (size_t)ndims, got;
    if (!rt_zf_read(f, hdr, want, &got))
        return false;
    if (got >= 4 && idx_be32(hdr) != magic) {
        uint32_t m = idx_be32(hdr);
        snprintf(f->err, f->errlen,
                 "'%s' is not an IDX %s file: bad magic number 0x%08x%s, expected 0x%08x",
                 f->path, kind, m, idx_magic_name(m), magic);
        return false;
    }
    if (got < want) {
        snprintf(f->err, f->errlen,
                 "'%s' is truncated: expected a %zu-byte IDX %s header, found %zu bytes",
                 f->path, want, kind, got);
        return false;
    }
    for (int i = 0; i < ndims; i++)
        dims[i] = idx_be32(hdr + 4 + 4 * i);
    return true;
}

/* A data set's float values, every page of which its loader writes: mapped in at once
 * (nnq_prefault) instead of page by page as the loader first touches them. */
static float *pixels_alloc(NnqRun *run, int64_t bytes) {
    float *p = rt_alloc_try(run, bytes, false);
    if (p) nnq_prefault(p, (size_t)bytes);
    return p;
}

static bool idx_load_images(NnqRun *run, RtZFile *f, NnqDataSet *ds) {
    uint32_t dims[3];
    if (!idx_header(f, IDX_MAGIC_IMAGES, "image", 3, dims))
        return false;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > DATA_MAX_SIDE ||
        dims[2] > DATA_MAX_SIDE) {
        snprintf(f->err, f->errlen, "'%s' has invalid dimensions %ux%ux%u (images x rows x cols)",
                 f->path, dims[0], dims[1], dims[2]);
        return false;
    }
    uint64_t sample = (uint64_t)dims[1] * dims[2];
    uint64_t total = (uint64_t)dims[0] * sample; /* < 2^64: 2^32 * 2^32 at most */
    char data[128];
    snprintf(data, sizeof data, "pixel data (%u images of %ux%u) after the 16-byte header", dims[0],
             dims[1], dims[2]);
    if (!rt_zf_holds(f, 16, total, data))
        return false;
    float *pixels = total <= DATA_MAX_VALUES
                        ? pixels_alloc(run, (int64_t)(total * sizeof(float)))
                        : NULL;
    if (!pixels) {
        snprintf(f->err, f->errlen, "out of memory loading '%s' (%u images of %ux%u)", f->path,
                 dims[0], dims[1], dims[2]);
        return false;
    }
    float lut[256];
    for (int b = 0; b < 256; b++)
        lut[b] = (float)b / 255.0f;
    unsigned char buf[65536];
    uint64_t done = 0;
    while (done < total) {
        size_t want = total - done > sizeof buf ? sizeof buf : (size_t)(total - done), got;
        if (!rt_zf_read(f, buf, want, &got))
            return false;
        for (size_t i = 0; i < got; i++)
            pixels[done + i] = lut[buf[i]];
        done += got;
        if (got < want) {
            rt_zf_truncated(f, total, data, done);
            size_t len = strlen(f->err);
            snprintf(f->err + len, f->errlen - len, " (image %llu is incomplete)",
                     (unsigned long long)(done / sample));
            return false;
        }
    }
    char what[64];
    snprintf(what, sizeof what, "%u images", dims[0]);
    if (!rt_zf_expect_end(f, what))
        return false;
    ds->count = dims[0];
    ds->channels = 1;
    ds->rows = (int32_t)dims[1];
    ds->cols = (int32_t)dims[2];
    ds->pixels = pixels;
    return true;
}

static bool idx_load_labels(NnqRun *run, RtZFile *f, NnqDataSet *ds) {
    uint32_t n;
    if (!idx_header(f, IDX_MAGIC_LABELS, "label", 1, &n))
        return false;
    const char *data = "labels after the 8-byte header";
    if (!rt_zf_holds(f, 8, n, data))
        return false;
    int32_t *labels = rt_alloc_try(run, (int64_t)n * (int64_t)sizeof(int32_t) + 1, false);
    if (!labels) {
        snprintf(f->err, f->errlen, "out of memory loading '%s' (%u labels)", f->path, n);
        return false;
    }
    unsigned char buf[65536];
    uint64_t done = 0;
    ds->max_label = -1;
    ds->max_label_at = -1;
    while (done < n) {
        size_t want = n - done > sizeof buf ? sizeof buf : (size_t)(n - done), got;
        if (!rt_zf_read(f, buf, want, &got))
            return false;
        for (size_t i = 0; i < got; i++) {
            labels[done + i] = buf[i];
            if (buf[i] > ds->max_label) {
                ds->max_label = buf[i];
                ds->max_label_at = (int64_t)(done + i);
            }
        }
        done += got;
        if (got < want)
            return rt_zf_truncated(f, n, data, done);
    }
    char what[64];
    snprintf(what, sizeof what, "%u labels", n);
    if (!rt_zf_expect_end(f, what))
        return false;
    if ((int64_t)n != ds->count) {
        snprintf(f->err, f->errlen, "'%s' has %lld images but '%s' has %u labels",
                 ds->images_path, (long long)ds->count, f->path, n);
        return false;
    }
    ds->labels = labels;
    return true;
}

/* ---- CIFAR binary ----
 * Plain record files read through stdio (their size, from stat, must be a whole number
 * of records). Every file is checked for existence and size before anything is read,
 * so a missing data_batch_3.bin is reported before 20000 images are decoded. */

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE) /* bytes per image, CHW */
#define CIFAR_MAX_FILES 5

typedef struct CifarSpec {
    const char *name; /* "CIFAR-10", "CIFAR-100" */
    const char *files[CIFAR_MAX_FILES];
    int nfiles;
    const char *set; /* the file(s) as one name, for messages */
    int label_bytes; /* 1 (label) or 2 (coarse, fine) */
    int record;      /* bytes per record */
} CifarSpec;

static CifarSpec cifar_spec(int32_t classes, int32_t split) {
    CifarSpec s = {0};
    if (classes == 10) {
        s.name = "CIFAR-10";
        s.label_bytes = 1;
        if (split == 0) {
            static const char *train[5] = {"data_batch_1.bin", "data_batch_2.bin",
                                           "data_batch_3.bin", "data_batch_4.bin",
                                           "data_batch_5.bin"};
            memcpy(s.files, train, sizeof train);
            s.nfiles = 5;
            s.set = "data_batch_[1-5].bin";
        } else {
            s.files[0] = s.set = "test_batch.bin";
            s.nfiles = 1;
        }
    } else {
        s.name = "CIFAR-100";
        s.label_bytes = 2;
        s.files[0] = s.set = split == 0 ? "train.bin" : "test.bin";
        s.nfiles = 1;
    }
    s.record = s.label_bytes + CIFAR_PIXELS;
    return s;
}

char *rt_path_join(NnqRun *run, const char *dir, const char *name, const char *suffix) {
    size_t dl = strlen(dir), nl = strlen(name), sl = strlen(suffix);
    bool slash = dl > 0 && dir[dl - 1] != '/';
    char *p = rt_alloc_block(run, (int64_t)(dl + slash + nl + sl + 1), false);
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + slash, name, nl);
    memcpy(p + dl + slash + nl, suffix, sl + 1);
    return p;
}

/* Reads the records of one open file into pixels / labels, starting at sample `first`.
 * false with a message in err on a read error, a file that changed size since it was
 * checked, or a label out of range. */
static bool cifar_read_file(FILE *f, const char *path, const CifarSpec *spec, int64_t records,
                            bool coarse, int64_t first, float *pixels, int32_t *labels, char *err,
                            size_t errlen) {
    static const char *const label_kind[2] = {"coarse label", "fine label"};
    static const int label_limit[2] = {20, 100};
    float lut[256];
    for (int b = 0; b < 256; b++)
        lut[b] = (float)b / 255.0f;
    unsigned char rec[2 + CIFAR_PIXELS];
    for (int64_t r = 0; r < records; r++) {
        size_t got = fread(rec, 1, (size_t)spec->record, f);
        if (got < (size_t)spec->record) {
            if (ferror(f))
                snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
            else
                snprintf(err, errlen,
                         "'%s' is truncated: it shrank while being read (record %lld of %lld "
                         "is incomplete)",
                         path, (long long)r, (long long)records);
            return false;
        }
        /* every label byte of the record must be in range, the unused one included */
        for (int k = 0; k < spec->label_bytes; k++) {
            int limit = spec->label_bytes == 1 ? 10 : label_limit[k];
            const char *kind = spec->label_bytes == 1 ? "label" : label_kind[k];
            if (rec[k] >= limit) {
                snprintf(err, errlen,
                         "'%s': record %lld (counting from 0) has %s %d; %s %ss are 0..%d", path,
                         (long long)r, kind, rec[k], spec->name, kind, limit - 1);
                return false;
            }
        }
        int32_t label = spec->label_bytes == 1 ? rec[0] : rec[coarse ? 0 : 1];
        labels[first + r] = label;
        float *px = pixels + (size_t)(first + r) * CIFAR_PIXELS;
        const unsigned char *src = rec + spec->label_bytes;
        for (int i = 0; i < CIFAR_PIXELS; i++)
            px[i] = lut[src[i]];
    }
    if (fgetc(f) != EOF) {
        snprintf(err, errlen, "'%s' grew while being read (more than %lld records)", path,
                 (long long)records);
        return false;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return false;
    }
    return true;
}

/* ---- NumPy .npy (the format: npy.c) ---- */

/* The dtypes data sets read: integers and floats, little-endian (or one byte). */
static bool npy_dtype_check(RtZFile *f, const RtNpyHeader *h) {
    if (!h->kind) {
        snprintf(f->err, f->errlen,
                 "'%s' has dtype '%s', which is not supported (integers '|u1' '|i1' '<u2' "
                 "'<i2' '<u4' '<i4' '<u8' '<i8', floats '<f4' '<f8')",
                 f->path, h->descr);
        return false;
    }
    if (h->swapped) {
        snprintf(f->err, f->errlen,
                 "'%s' holds %s data (dtype '%s'), which is not supported; save it "
                 "little-endian, e.g. with a.astype('<%c%d')",
                 f->path, h->big ? "big-endian" : "unknown byte order", h->descr, h->kind, h->size);
        return false;
    }
    return true;
}

typedef struct NpyPixels {
    float *pixels;
    uint64_t sample; /* values per image */
    const RtNpyHeader *h;
    float lut[256];
} NpyPixels;

static bool npy_put_pixels(void *ctx, RtZFile *f, uint64_t first, const unsigned char *p,
                           size_t n) {
    NpyPixels *c = ctx;
    float *out = c->pixels + first;
    if (c->h->kind == 'u') {
        for (size_t k = 0; k < n; k++)
            out[k] = c->lut[p[k]];
        return true;
    }
    for (size_t k = 0; k < n; k++) {
        double v;
        if (c->h->size == 4) {
            uint32_t u = rt_le32(p + 4 * k);
            float x;
            memcpy(&x, &u, sizeof x);
            v = x;
        } else {
            uint64_t u = rt_le64(p + 8 * k);
            memcpy(&v, &u, sizeof v);
        }
        float x = (float)v;
        if (!isfinite(x)) {
            uint64_t i = first + k;
            if (!isfinite(v))
                snprintf(f->err, f->errlen,
                         "'%s' has a non-finite pixel (%g) at index %llu (image %llu)", f->path, v,
                         (unsigned long long)i, (unsigned long long)(i / c->sample));
            else
                snprintf(f->err, f->errlen,
                         "'%s' has pixel %g at index %llu (image %llu), outside the range of "
                         "float",
                         f->path, v, (unsigned long long)i, (unsigned long long)(i / c->sample));
            return false;
        }
        out[k] = x;
    }
    return true;
}

typedef struct NpyLabels {
    NnqDataSet *ds;
    const RtNpyHeader *h;
} NpyLabels;

static bool npy_put_labels(void *ctx, RtZFile *f, uint64_t first, const unsigned char *p,
                           size_t n) {
    NpyLabels *c = ctx;
    int size = c->h->size;
    for (size_t k = 0; k < n; k++, p += size) {
        uint64_t u = size == 1   ? p[0]
                     : size == 2 ? (uint64_t)p[0] | (uint64_t)p[1] << 8
                     : size == 4 ? rt_le32(p)
                                 : rt_le64(p);
        if (c->h->kind == 'i' && size < 8 && (u >> (8 * size - 1)) & 1)
            u |= ~(uint64_t)0 << (8 * size); /* sign-extend */
        uint64_t i = first + k;
        if (c->h->kind == 'i' && (int64_t)u < 0) {
            snprintf(f->err, f->errlen, "'%s' has a negative label %lld at index %llu", f->path,
                     (long long)(int64_t)u, (unsigned long long)i);
            return false;
        }
        if (u > (uint64_t)INT32_MAX) {
            snprintf(f->err, f->errlen,
                     "'%s' has label %llu at index %llu; labels must be below 2^31", f->path,
                     (unsigned long long)u, (unsigned long long)i);
            return false;
        }
        int32_t label = (int32_t)u;
        c->ds->labels[i] = label;
        if (label > c->ds->max_label) {
            c->ds->max_label = label;
            c->ds->max_label_at = (int64_t)i;
        }
    }
    return true;
}

static bool npy_load_images(NnqRun *run, RtZFile *f, NnqDataSet *ds) {
    RtNpyHeader h = {0};
    if (!rt_npy_header(f, &h) || !npy_dtype_check(f, &h))
        return false;
    char shape[RT_NPY_SHAPE_TEXT];
    rt_npy_shape_text(&h, shape, sizeof shape);
    if (h.kind != 'f' && !(h.kind == 'u' && h.size == 1)) {
        snprintf(f->err, f->errlen,
                 "'%s' holds images of dtype '%s'; images must be '|u1' (bytes, loaded as "
                 "byte/255), '<f4' or '<f8'",
                 f->path, h.descr);
        return false;
    }
    if (h.ndim != 3 && h.ndim != 4) {
        snprintf(f->err, f->errlen,
                 "'%s' has shape %s; images must have shape (N, H, W) or (N, C, H, W)", f->path,
                 shape);
        return false;
    }
    int64_t n = h.shape[0], c = h.ndim == 4 ? h.shape[1] : 1;
    int64_t rows = h.shape[h.ndim - 2], cols = h.shape[h.ndim - 1];
    const char *why = n == 0                             ? "no images"
                      : c == 0 || rows == 0 || cols == 0 ? "an empty dimension"
                      : c > RT_DATA_MAX_CHANNELS         ? "more than 4096 channels"
                      : rows > DATA_MAX_SIDE || cols > DATA_MAX_SIDE
                          ? "more than 65536 rows or columns"
                          : NULL;
    if (why) {
        snprintf(f->err, f->errlen, "'%s' has invalid image dimensions: shape %s, %s", f->path,
                 shape, why);
        return false;
    }
    uint64_t sample = (uint64_t)c * (uint64_t)rows * (uint64_t)cols; /* <= 2^44 */
    if ((uint64_t)n <= DATA_MAX_VALUES / sample && !rt_npy_check_size(f, &h, (uint64_t)n * sample))
        return false;
    float *pixels = (uint64_t)n <= DATA_MAX_VALUES / sample
                        ? pixels_alloc(run, n * (int64_t)sample * (int64_t)sizeof(float))
                        : NULL;
    if (!pixels) {
        snprintf(f->err, f->errlen, "out of memory loading '%s' (shape %s)", f->path, shape);
        return false;
    }
    NpyPixels ctx = {pixels, sample, &h, {0}};
    for (int b = 0; b < 256; b++)
        ctx.lut[b] = (float)b / 255.0f;
    char what[64];
    snprintf(what, sizeof what, "%lld images", (long long)n);
    if (!rt_npy_read_data(f, &h, (uint64_t)n * sample, what, npy_put_pixels, &ctx))
        return false;
    ds->count = n;
    ds->channels = (int32_t)c;
    ds->rows = (int32_t)rows;
    ds->cols = (int32_t)cols;
    ds->pixels = pixels;
    return true;
}

static bool npy_load_labels(NnqRun *run, RtZFile *f, NnqDataSet *ds) {
    RtNpyHeader h = {0};
    if (!rt_npy_header(f, &h) || !npy_dtype_check(f, &h))
        return false;
    char shape[RT_NPY_SHAPE_TEXT];
    rt_npy_shape_text(&h, shape, sizeof shape);
    if (h.kind == 'f') {
        snprintf(f->err, f->errlen, "'%s' holds labels of dtype '%s'; labels must be integers",
                 f->path, h.descr);
        return false;
    }
    if (h.ndim != 1) {
        snprintf(f->err, f->errlen, "'%s' has shape %s; labels must have shape (N,)", f->path,
                 shape);
        return false;
    }
    if (h.shape[0] != ds->count) {
        snprintf(f->err, f->errlen, "'%s' has %lld images but '%s' has %lld labels",
                 ds->images_path, (long long)ds->count, f->path, (long long)h.shape[0]);
        return false;
    }
    if (!rt_npy_check_size(f, &h, (uint64_t)ds->count))
        return false;
    int32_t *labels = rt_alloc_try(run, ds->count * (int64_t)sizeof(int32_t), false);
    if (!labels) {
        snprintf(f->err, f->errlen, "out of memory loading '%s' (%lld labels)", f->path,
                 (long long)ds->count);
        return false;
    }
    ds->labels = labels;
    ds->max_label = -1;
    ds->max_label_at = -1;
    NpyLabels ctx = {ds, &h};
    char what[64];
    snprintf(what, sizeof what, "%lld labels", (long long)ds->count);
    return rt_npy_read_data(f, &h, (uint64_t)ds->count, what, npy_put_labels, &ctx);
}

/* ---- data set table ---- */

NnqDataSet *rt_data_get(NnqRun *run, int32_t ds, const char *fn) {
    if (ds < 0 || ds >= run->ndatasets)
        nnq_rt_fail(run, "%s: invalid data set handle %d (%d loaded)", fn, ds, run->ndatasets);
    return &run->datasets[ds];
}

static size_t data_sample_size(const NnqDataSet *d);
static void data_release(NnqRun *run);

/* A hash of a data set's shape, labels and pixels (64-bit words mixed in 4 lanes). */
static uint64_t data_fingerprint(const NnqDataSet *d) {
    uint64_t h[4] = {(uint64_t)d->count, (uint64_t)d->channels, (uint64_t)d->rows, (uint64_t)d->cols};
    const unsigned char *parts[2] = {(const unsigned char *)d->pixels, (const unsigned char *)d->labels};
    size_t bytes[2] = {(size_t)d->count * data_sample_size(d) * sizeof(float), (size_t)d->count * sizeof(int32_t)};
    for (int p = 0; p < 2; p++) {
        size_t i = 0;
        for (; i + 32 <= bytes[p]; i += 32)
            for (int k = 0; k < 4; k++) {
                uint64_t w;
                memcpy(&w, parts[p] + i + 8 * k, 8);
                h[k] = (h[k] ^ w) * 0x100000001b3ull;
            }
        for (; i < bytes[p]; i++)
            h[0] = (h[0] ^ parts[p][i]) * 0x100000001b3ull;
    }
    return h[0] ^ (h[1] * 31) ^ (h[2] * 961) ^ (h[3] * 29791);
}

/* Gives a loaded data set its identity normalization and adds it to the table; returns
 * its handle. Called with no file open. */
static int32_t data_add(NnqRun *run, NnqDataSet *ds) {
    assert(ds->channels >= 1 && ds->channels <= RT_DATA_MAX_CHANNELS);
    double *norm = rt_alloc_block(run, 2 * (int64_t)ds->channels * (int64_t)sizeof(double), false);
    ds->shift = norm;
    ds->scale = norm + ds->channels;
    for (int32_t c = 0; c < ds->channels; c++) {
        ds->shift[c] = 0.0;
        ds->scale[c] = 1.0;
    }
    if (run->ndatasets == run->cap_datasets) {
        int32_t cap = run->cap_datasets ? run->cap_datasets * 2 : 8;
        NnqDataSet *d = realloc(run->datasets, (size_t)cap * sizeof *d);
        if (!d)
            nnq_rt_fail(run, "out of memory loading '%s'", ds->images_path);
        run->datasets = d;
        rt_on_release(run, data_release);
        run->cap_datasets = cap;
    }
    run->datasets[run->ndatasets] = *ds;
    if (run->nranks > 1) /* the ranks of an MPI job must have read the same samples */
        rt_mpi_agree(run, data_fingerprint(ds), "data", ds->images_path);
    return run->ndatasets++;
}

/* ---- the ABI ---- */

int32_t nnq_rt_data_idx(NnqRun *run, const char *images, const char *labels) {
    NnqDataSet ds = {0};
    ds.images_path = rt_data_resolve(run, images, false, NULL);
    ds.labels_path = rt_data_resolve(run, labels, false, NULL);
    df_load(run, ds.images_path, &ds, idx_load_images);
    df_load(run, ds.labels_path, &ds, idx_load_labels);
    return data_add(run, &ds);
}

int32_t nnq_rt_data_npy(NnqRun *run, const char *images, const char *labels) {
    NnqDataSet ds = {0};
    ds.images_path = rt_data_resolve(run, images, false, NULL);
    ds.labels_path = rt_data_resolve(run, labels, false, NULL);
    df_load(run, ds.images_path, &ds, npy_load_images);
    df_load(run, ds.labels_path, &ds, npy_load_labels);
    return data_add(run, &ds);
}

int32_t nnq_data_images(NnqRun *run, const char *path) {
    NnqDataSet ds = {0};
    ds.images_path = rt_data_resolve(run, path, false, NULL);
    size_t n = strlen(path);
    bool npy = n >= 4 && strcmp(path + n - 4, ".npy") == 0;
    df_load(run, ds.images_path, &ds, npy ? npy_load_images : idx_load_images);
    ds.labels_path = ds.images_path;
    ds.labels = rt_alloc_block(run, ds.count * (int64_t)sizeof(int32_t), true);
    ds.max_label = 0;
    ds.max_label_at = 0;
    return data_add(run, &ds);
}

int32_t nnq_rt_data_cifar(NnqRun *run, const char *dir, int32_t classes, int32_t split,
                          int32_t coarse) {
    if (classes != 10 && classes != 100)
        nnq_rt_fail(run, "data_cifar: classes must be 10 (CIFAR-10) or 100 (CIFAR-100), not %d",
                    classes);
    if (split != 0 && split != 1)
        nnq_rt_fail(run, "data_cifar: split must be 0 (training) or 1 (test), not %d", split);
    if (classes == 10 && coarse)
        nnq_rt_fail(run, "data_cifar: coarse labels exist only in CIFAR-100");
    CifarSpec spec = cifar_spec(classes, split);
    char *root = rt_data_resolve(run, dir, true, NULL);

    /* every file present, non-empty and a whole number of records, before reading */
    char *paths[CIFAR_MAX_FILES];
    int64_t records[CIFAR_MAX_FILES], total = 0;
    for (int i = 0; i < spec.nfiles; i++) {
        paths[i] = rt_path_join(run, root, spec.files[i], "");
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            int e = errno;
            if (spec.nfiles > 1)
                nnq_rt_fail(run, "cannot open %s file '%s': %s (the %s set is %s .. %s in '%s')",
                            spec.name, paths[i], strerror(e), split == 0 ? "training" : "test",
                            spec.files[0], spec.files[spec.nfiles - 1], root);
            nnq_rt_fail(run, "cannot open %s file '%s': %s (the %s set is %s in '%s')", spec.name,
                        paths[i], strerror(e), split == 0 ? "training" : "test", spec.files[0],
                        root);
        }
        if (S_ISDIR(st.st_mode))
            nnq_rt_fail(run, "%s file '%s' is a directory", spec.name, paths[i]);
        if (st.st_size == 0)
            nnq_rt_fail(run, "%s file '%s' is empty", spec.name, paths[i]);
        if (st.st_size % spec.record != 0)
            nnq_rt_fail(run,
                        "%s file '%s' is %lld bytes, not a whole number of %d-byte records "
                        "(%lld records and %lld bytes over): truncated or not a %s file",
                        spec.name, paths[i], (long long)st.st_size, spec.record,
                        (long long)(st.st_size / spec.record),
                        (long long)(st.st_size % spec.record), spec.name);
        records[i] = st.st_size / spec.record;
        total += records[i];
    }

    NnqDataSet ds = {0};
    ds.images_path = ds.labels_path = rt_path_join(run, root, spec.set, "");
    ds.count = total;
    ds.channels = 3;
    ds.rows = ds.cols = CIFAR_SIDE;
    ds.pixels = pixels_alloc(run, total * CIFAR_PIXELS * (int64_t)sizeof(float));
    ds.labels = rt_alloc_try(run, total * (int64_t)sizeof(int32_t), false);
    if (!ds.pixels || !ds.labels)
        nnq_rt_fail(run, "out of memory loading %s from '%s' (%lld images)", spec.name,
                    ds.images_path, (long long)total);
    int64_t first = 0;
    for (int i = 0; i < spec.nfiles; i++) {
        char err[2048];
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            nnq_rt_fail(run, "cannot open %s file '%s': %s", spec.name, paths[i], strerror(errno));
        bool ok = cifar_read_file(f, paths[i], &spec, records[i], coarse != 0, first, ds.pixels,
                                  ds.labels, err, sizeof err);
        fclose(f);
        if (!ok)
            nnq_rt_fail(run, "%s", err);
        first += records[i];
    }
    ds.max_label = -1;
    ds.max_label_at = -1;
    for (int64_t i = 0; i < total; i++)
        if (ds.labels[i] > ds.max_label) {
            ds.max_label = ds.labels[i];
            ds.max_label_at = i;
        }
    return data_add(run, &ds);
}

int64_t nnq_rt_data_count(NnqRun *run, int32_t ds) {
    return rt_data_get(run, ds, "data_count")->count;
}

void nnq_rt_data_check(NnqRun *run, int32_t ds, int32_t rank, const int64_t *dims,
                       int32_t nclasses, const char *what) {
    NnqDataSet *d = rt_data_get(run, ds, "data_check");
    const char *model = what ? what : "?";
    bool ok = (rank == 3 && dims[0] == d->channels && dims[1] == d->rows && dims[2] == d->cols) ||
              (rank == 2 && d->channels == 1 && dims[0] == d->rows && dims[1] == d->cols);
    if (!ok) {
        char shape[256];
        size_t len = 0;
        shape[0] = 0;
        for (int32_t i = 0; i < rank && i < 8 && len < sizeof shape - 32; i++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", i ? ", " : "",
                                    (long long)dims[i]);
        if (rank > 8)
            snprintf(shape + len, sizeof shape - len, ", ...");
        /* "28x28 images" for one channel, "3x32x32 images" for more */
        char size[64];
        if (d->channels == 1)
            snprintf(size, sizeof size, "%dx%d", d->rows, d->cols);
        else
            snprintf(size, sizeof size, "%dx%dx%d", d->channels, d->rows, d->cols);
        nnq_rt_fail(run,
                    "model '%s' expects inputs of shape [%s] but '%s' holds %s images "
                    "(shape [%d, %d, %d])",
                    model, shape, d->images_path, size, d->channels, d->rows, d->cols);
    }
    if (d->max_label >= nclasses)
        nnq_rt_fail(run,
                    "'%s' has label %d at sample %lld, but model '%s' has %d classes "
                    "(labels must be 0..%d)",
                    d->labels_path, d->max_label, (long long)d->max_label_at, model, nclasses,
                    nclasses - 1);
}

/* Values per sample. */
static size_t data_sample_size(const NnqDataSet *d) {
    return (size_t)d->channels * (size_t)d->rows * (size_t)d->cols;
}

/* The sum over channel c of samples [0, count) of each value v (sq: of (v - m)^2), in
 * double: in LANES lanes (the value at k of a plane's run to lane k mod LANES), the lanes
 * then added pairwise, a fixed order. One chain of dependent adds waited an add's
 * latency a value; the lanes did not change a bit of the examples' training and took a
 * 50,000-image CIFAR-10 run's start (a one-epoch run of a small model) from 1.61 to 1.56
 * s (medians of 5 alternated runs; the normalization's share of its samples 22 -> 19%:
 * the channel's runs of 4 KB, a sample apart, come from memory). */
enum { LANES = 8 };
static double channel_sum(const float *pixels, size_t sample, size_t hw, int32_t c, int64_t count, bool sq,
                          double m) {
    double lane[LANES] = {0};
    for (int64_t i = 0; i < count; i++) {
        const float *p = pixels + (size_t)i * sample + (size_t)c * hw;
        size_t k = 0;
        for (; k + LANES <= hw; k += LANES) /* a block of LANES at a time: the lanes in registers */
            _Pragma("GCC unroll 8") for (int j = 0; j < LANES; j++)
                lane[j] += sq ? (p[k + j] - m) * (p[k + j] - m) : p[k + j];
        for (; k < hw; k++) lane[k % LANES] += sq ? (p[k] - m) * (p[k] - m) : p[k];
    }
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) lane[j] += lane[j + w];
    return lane[0];
}

void nnq_rt_data_normalize(NnqRun *run, int32_t ds, int32_t mode, int32_t stats_ds,
                           int64_t stats_count) {
    NnqDataSet *d = rt_data_get(run, ds, "data_normalize");
    int32_t nc = d->channels;
    /* target map per channel: mean[c], stddev[c] of the loaded pixels. Scratch from
     * malloc, freed before any failure. */
    double *mean = NULL, *stddev = NULL;
    if (mode == 1) {
        NnqDataSet *s = rt_data_get(run, stats_ds, "data_normalize");
        if (s->channels != nc)
            nnq_rt_fail(run,
                        "cannot normalize '%s' (%d channel%s) with the statistics of '%s' (%d "
                        "channel%s): the channel counts differ",
                        d->images_path, nc, nc == 1 ? "" : "s", s->images_path, s->channels,
                        s->channels == 1 ? "" : "s");
        if (stats_count <= 0 || stats_count > s->count)
            nnq_rt_fail(run,
                        "cannot normalize with statistics of samples [0, %lld) of '%s': it "
                        "has %lld samples",
                        (long long)stats_count, s->images_path, (long long)s->count);
        mean = malloc(2 * (size_t)nc * sizeof *mean);
        if (!mean)
            nnq_rt_fail(run, "out of memory normalizing '%s'", d->images_path);
        stddev = mean + nc;
        size_t hw = (size_t)s->rows * (size_t)s->cols, sample = data_sample_size(s);
        double n = (double)stats_count * (double)hw;
        for (int32_t c = 0; c < nc; c++) {
            /* two passes over channel c of samples [0, stats_count), in double */
            double m = channel_sum(s->pixels, sample, hw, c, stats_count, false, 0.0) / n;
            double sq = channel_sum(s->pixels, sample, hw, c, stats_count, true, m);
            double sd = sqrt(sq / n);
            /* back to loaded-pixel units: current = (loaded - shift) / scale */
            mean[c] = s->shift[c] + s->scale[c] * m;
            stddev[c] = s->scale[c] * sd;
            if (!(stddev[c] > 0.0) || !isfinite(stddev[c]) || !isfinite(mean[c])) {
                free(mean);
                char where[48] = "";
                if (nc > 1)
                    snprintf(where, sizeof where, " in channel %d", c);
                nnq_rt_fail(run,
                            "cannot standardize with the statistics of '%s': its first %lld "
                            "images have zero pixel variance%s",
                            s->images_path, (long long)stats_count, where);
            }
        }
    } else if (mode != 0) {
        nnq_rt_fail(run, "data_normalize: unknown mode %d", mode);
    }
    size_t hw = (size_t)d->rows * (size_t)d->cols, sample = data_sample_size(d);
    for (int32_t c = 0; c < nc; c++) {
        double mc = mean ? mean[c] : 0.0, sc = stddev ? stddev[c] : 1.0;
        if (mc == d->shift[c] && sc == d->scale[c])
            continue;
        /* new = (loaded - mc) / sc, loaded = cur * scale + shift */
        double a = d->scale[c] / sc, b = (d->shift[c] - mc) / sc;
        for (int64_t i = 0; i < d->count; i++) {
            float *p = d->pixels + (size_t)i * sample + (size_t)c * hw;
            for (size_t k = 0; k < hw; k++)
                p[k] = (float)(p[k] * a + b);
        }
        d->shift[c] = mc;
        d->scale[c] = sc;
    }
    free(mean);
}

/* Writes sample src of d, augmented, to dst: draws the crop offset (pad > 0: dy, then
 * dx, each uniform in [0, 2 pad]) and the flip (hflip: one draw, probability 1/2), then
 * dst[c][h][w] = P[c][h + dy][w' + dx] of the image P padded by `pad` black pixels on
 * every side, where w' = W-1-w when flipped, else w. Black is the current value of a
 * loaded 0 in channel c. No allocation: one pass straight into dst. */
typedef struct AugDraw {
    int64_t dy, dx;
    bool flip;
} AugDraw;

/* A batch position's sample and its augmentation (NnqDataSet.picks). */
struct DataPick {
    int64_t src;
    AugDraw draw;
};

static AugDraw data_augment_draw(NnqRun *run, const NnqDataSet *d) {
    AugDraw a = {0, 0, false};
    int64_t pad = d->aug_pad;
    if (pad > 0) {
        a.dy = (int64_t)rt_rng_below(run, (uint64_t)(2 * pad + 1)) - pad;
        a.dx = (int64_t)rt_rng_below(run, (uint64_t)(2 * pad + 1)) - pad;
    }
    a.flip = d->aug_hflip && (rt_rng_next(run) >> 63);
    return a;
}

static void data_augment_sample(const NnqDataSet *d, AugDraw a, const float *src, float *dst) {
    int64_t dy = a.dy, dx = a.dx;
    bool flip = a.flip;
    int64_t rows = d->rows, cols = d->cols;
    for (int32_t c = 0; c < d->channels; c++) {
        float black = (float)((0.0 - d->shift[c]) / d->scale[c]);
        const float *plane = src + (size_t)c * (size_t)(rows * cols);
        for (int64_t h = 0; h < rows; h++) {
            float *out = dst + ((size_t)c * (size_t)rows + (size_t)h) * (size_t)cols;
            int64_t sr = h + dy; /* source row in the unpadded image */
            if (sr < 0 || sr >= rows) {
                for (int64_t w = 0; w < cols; w++)
                    out[w] = black;
                continue;
            }
            /* out[w] = row[sc], sc = (flip ? cols - 1 - w : w) + dx, where 0 <= sc < cols
             * (the columns [w0, w1)), black elsewhere */
            const float *row = plane + (size_t)sr * (size_t)cols;
            int64_t w0 = flip ? dx : -dx, w1 = flip ? cols + dx : cols - dx;
            if (w0 < 0) w0 = 0;
            if (w1 > cols) w1 = cols;
            if (w1 < w0) w1 = w0;
            for (int64_t w = 0; w < w0; w++) out[w] = black;
            if (flip)
                for (int64_t w = w0; w < w1; w++) out[w] = row[cols - 1 - w + dx];
            else if (w1 > w0)
                memcpy(out + w0, row + w0 + dx, (size_t)(w1 - w0) * sizeof(float));
            for (int64_t w = w1; w < cols; w++) out[w] = black;
        }
    }
}

/* A batch's copies, run on the pool: x's position i receives pick[i]'s sample, augmented
 * by its draw where aug. The samples sit at random places in memory, most of them out of the caches:
 * each copy waits on its sample's first lines, so the lines of the sample DATA_AHEAD
 * positions on are requested first (the float MLP's data phase, 100 Fashion-MNIST
 * images: 0.038-0.042 -> 0.030-0.038 ms a step at 1 thread, 0.034-0.039 -> 0.029-0.034
 * at 2). Parts of at least DATA_PART_BYTES, each thread's copies waiting on their own
 * misses: at 2 threads, alternated, the binary PMF MLP's data phase (100 images of 3 KB)
 * 0.018-0.026 -> 0.009-0.020 ms, medians 0.019 -> 0.011; LeNet-5's (cropped copies)
 * 0.049-0.053 -> 0.026-0.035. */
enum { DATA_AHEAD = 2, DATA_PART_BYTES = 32768 };
typedef struct DataCopy {
    const NnqDataSet *d;
    const DataPick *pick;
    float *x;
    size_t sample; /* floats a sample */
    bool aug;
} DataCopy;

static void data_copy(void *p, int64_t begin, int64_t end) {
    const DataCopy *c = p;
    const float *pixels = c->d->pixels;
    for (int64_t i = begin; i < end; i++) {
        if (i + DATA_AHEAD < end)
            for (size_t b = 0; b < c->sample; b += 16)
                __builtin_prefetch(pixels + (size_t)c->pick[i + DATA_AHEAD].src * c->sample + b, 0, 3);
        const float *src = pixels + (size_t)c->pick[i].src * c->sample;
        if (c->aug)
            data_augment_sample(c->d, c->pick[i].draw, src, c->x + (size_t)i * c->sample);
        else
            memcpy(c->x + (size_t)i * c->sample, src, c->sample * sizeof(float));
    }
}

/* Positions [start, start+count) of the batch; x and y receive positions [lo, hi) of
 * them (the augmentation of the others is drawn and dropped). The samples are checked
 * and the augmentation drawn in order on this thread (the draws do not depend on the
 * thread count), then copied on the pool. */
static void data_positions(NnqRun *run, int32_t ds, const int64_t *index, int64_t start,
                           int64_t count, int64_t lo, int64_t hi, float *x, int32_t *y,
                           int32_t augment) {
    NnqDataSet *d = rt_data_get(run, ds, "data_batch");
    if (start < 0 || count < 0 || (!index && start + count > d->count))
        nnq_rt_fail(run, "batch of samples [%lld, %lld) is out of range: '%s' has %lld samples",
                    (long long)start, (long long)(start + count), d->images_path,
                    (long long)d->count);
    /* only x is augmented: without x, nothing is drawn */
    bool aug = augment != 0 && x && (d->aug_pad > 0 || d->aug_hflip);
    if (x && hi - lo > d->cap_picks) {
        d->picks = rt_alloc_block(run, (hi - lo) * (int64_t)sizeof *d->picks, false);
        d->cap_picks = hi - lo;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t s = index ? index[start + i] : start + i;
        if (s < 0 || s >= d->count)
            nnq_rt_fail(run,
                        "batch position %lld selects sample %lld, out of range: '%s' has %lld "
                        "samples",
                        (long long)(start + i), (long long)s, d->images_path,
                        (long long)d->count);
        AugDraw a = aug ? data_augment_draw(run, d) : (AugDraw){0, 0, false};
        if (i < lo || i >= hi)
            continue;
        if (x)
            d->picks[i - lo] = (DataPick){s, a};
        if (y)
            y[i - lo] = d->labels[s];
    }
    if (!x || hi <= lo)
        return;
    DataCopy c = {d, d->picks, x, data_sample_size(d), aug};
    int64_t per = (int64_t)(c.sample * sizeof(float));
    rt_parallel_for(hi - lo, (DATA_PART_BYTES + per - 1) / per, data_copy, &c);
}

void nnq_rt_data_batch(NnqRun *run, int32_t ds, const int64_t *index, int64_t start,
                       int64_t count, float *x, int32_t *y, int32_t augment) {
    data_positions(run, ds, index, start, count, 0, count, x, y, augment);
}

int64_t nnq_rt_data_shard(NnqRun *run, int32_t ds, const int64_t *index, int64_t start,
                          int64_t count, float *x, int32_t *y, int32_t augment) {
    int64_t lo = nnq_rt_mpi_part(run, count, 0), n = nnq_rt_mpi_part(run, count, 1);
    data_positions(run, ds, index, start, count, lo, lo + n, x, y, augment);
    return n;
}

void nnq_rt_data_augment(NnqRun *run, int32_t ds, int32_t pad, int32_t hflip) {
    NnqDataSet *d = rt_data_get(run, ds, "data_augment");
    if (pad < 0 || pad > 64)
        nnq_rt_fail(run, "data_augment: padding %d for '%s' is out of range (0..64)", pad,
                    d->images_path);
    d->aug_pad = pad;
    d->aug_hflip = hflip != 0;
}

static void data_release(NnqRun *run) {
    /* pixels, labels, normalization arrays and paths are tracked blocks */
    free(run->datasets);
    run->datasets = NULL;
    run->ndatasets = run->cap_datasets = 0;
}
