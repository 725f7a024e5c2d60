/* data.c — data sets: finding files, loading IDX, checking, normalizing, batching.
 *
 * Invariants:
 *  - A data set handle is an index into run->datasets, valid until nnq_run_free; the
 *    pixel and label arrays are tracked blocks of the run.
 *  - A loaded data set is fully validated: magic, dimensions, exact payload size (no
 *    truncation, no trailing bytes), equal image and label counts. Pixels are
 *    byte/255 in [0, 1], stored sample-major (sample, row, column).
 *  - Normalization is always relative to the loaded pixels: each data set records the
 *    affine map (shift, scale) now applied to it, so statistics and repeated calls do
 *    not depend on the order of nnq_rt_data_normalize calls.
 *  - The gzFile of a file being read is closed before any error is reported.
 *
 * Search path for a relative file name, in order: options.data_dir, each entry of
 * $NNQ_DATA_DIR (colon-separated, empty entries skipped), options.base_dir, ".",
 * /usr/share/datasets. The first candidate that exists and is not a directory wins.
 * An absolute name is used as is. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rt_internal.h"

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAX_SIDE 65536

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

/* Joins dir and name; NULL when out of memory. Caller frees. */
static char *path_join(const char *dir, size_t dirlen, const char *name) {
    size_t nlen = strlen(name);
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

/* Tries dir/name; on success stores the run-owned path in *found. */
static bool data_try_dir(NnqRun *run, const char *dir, size_t dirlen, const char *name,
                         const char *why, PathList *tried, char **found) {
    char *cand = path_join(dir, dirlen, name);
    if (!cand)
        return false;
    struct stat st;
    if (stat(cand, &st) == 0 && !S_ISDIR(st.st_mode)) {
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
    pathlist_append(tried, ")");
    free(cand);
    return false;
}

static char *data_resolve(NnqRun *run, const char *name) {
    if (!name || !*name)
        nnq_rt_fail(run, "empty data file name");
    if (name[0] == '/') {
        struct stat st;
        if (stat(name, &st) != 0)
            nnq_rt_fail(run, "cannot open data file '%s': %s", name, strerror(errno));
        if (S_ISDIR(st.st_mode))
            nnq_rt_fail(run, "data file '%s' is a directory", name);
        return rt_strdup(run, name);
    }
    PathList tried = {0};
    char *found = NULL;
    const char *dd = run->opts.data_dir;
    if (dd && *dd && data_try_dir(run, dd, strlen(dd), name, "--data-dir", &tried, &found))
        goto done;
    const char *env = getenv("NNQ_DATA_DIR");
    if (env) {
        for (const char *p = env; *p;) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0 && data_try_dir(run, p, len, name, "$NNQ_DATA_DIR", &tried, &found))
                goto done;
            p += len;
            if (*p == ':')
                p++;
        }
    }
    const char *bd = run->opts.base_dir;
    if (bd && *bd &&
        data_try_dir(run, bd, strlen(bd), name, "the program's directory", &tried, &found))
        goto done;
    if (data_try_dir(run, ".", 1, name, "the current directory", &tried, &found))
        goto done;
    if (data_try_dir(run, "/usr/share/datasets", 19, name, "system data sets", &tried, &found))
        goto done;
    {
        char msg[6144];
        snprintf(msg, sizeof msg, "%s", tried.text ? tried.text : "");
        free(tried.text);
        nnq_rt_fail(run,
                    "cannot find data file '%s'; tried: %s; set the directory with --data-dir "
                    "or $NNQ_DATA_DIR",
                    name, msg);
    }
done:
    free(tried.text);
    return found;
}

/* ---- IDX reading (all errors go to err; the caller closes and fails) ---- */

typedef struct IdxFile {
    gzFile gz;
    const char *path;
    char *err;
    size_t errlen;
} IdxFile;

/* Reads up to n bytes; *got = bytes read. false on a read or decompression error. A
 * short read at end of data (including a gzip stream that stops early) is not an
 * error here: the caller reports it as truncation with the counts. */
static bool idx_read(IdxFile *f, void *buf, size_t n, size_t *got) {
    size_t total = 0;
    while (total < n) {
        size_t want = n - total;
        unsigned chunk = want > (1u << 24) ? (1u << 24) : (unsigned)want;
        int r = gzread(f->gz, (char *)buf + total, chunk);
        if (r <= 0)
            break;
        total += (size_t)r;
    }
    *got = total;
    int code = Z_OK;
    const char *msg = gzerror(f->gz, &code);
    if (code == Z_OK || code == Z_BUF_ERROR) /* Z_BUF_ERROR: stream ended early */
        return true;
    if (code == Z_ERRNO)
        snprintf(f->err, f->errlen, "cannot read '%s': %s", f->path, strerror(errno));
    else
        snprintf(f->err, f->errlen, "cannot read '%s': corrupt gzip data (%s)", f->path, msg);
    return false;
}

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
static bool idx_header(IdxFile *f, uint32_t magic, const char *kind, int ndims, uint32_t *dims) {
    unsigned char hdr[16];
    size_t want = 4 + 4 * (size_t)ndims, got;
    if (!idx_read(f, hdr, want, &got))
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

/* After the payload: any further byte is an error. */
static bool idx_expect_end(IdxFile *f, const char *what) {
    unsigned char buf[65536];
    size_t extra = 0, got;
    do {
        if (!idx_read(f, buf, sizeof buf, &got))
            return false;
        extra += got;
    } while (got == sizeof buf);
    if (extra) {
        snprintf(f->err, f->errlen, "'%s' has %zu unexpected bytes after %s", f->path, extra,
                 what);
        return false;
    }
    return true;
}

static bool idx_open(IdxFile *f) {
    errno = 0;
    f->gz = gzopen(f->path, "rb");
    if (!f->gz) {
        snprintf(f->err, f->errlen, "cannot open data file '%s': %s", f->path,
                 errno ? strerror(errno) : "out of memory");
        return false;
    }
    gzbuffer(f->gz, 1 << 17);
    return true;
}

static bool idx_load_images(NnqRun *run, IdxFile *f, NnqDataSet *ds) {
    uint32_t dims[3];
    if (!idx_header(f, IDX_MAGIC_IMAGES, "image", 3, dims))
        return false;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > IDX_MAX_SIDE ||
        dims[2] > IDX_MAX_SIDE) {
        snprintf(f->err, f->errlen, "'%s' has invalid dimensions %ux%ux%u (images x rows x cols)",
                 f->path, dims[0], dims[1], dims[2]);
        return false;
    }
    uint64_t sample = (uint64_t)dims[1] * dims[2];
    uint64_t total = (uint64_t)dims[0] * sample; /* < 2^64: 2^32 * 2^32 at most */
    float *pixels = rt_alloc_try(run, (int64_t)(total * sizeof(float)), false);
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
        if (!idx_read(f, buf, want, &got))
            return false;
        for (size_t i = 0; i < got; i++)
            pixels[done + i] = lut[buf[i]];
        done += got;
        if (got < want) {
            snprintf(f->err, f->errlen,
                     "'%s' is truncated: expected %llu bytes of pixel data (%u images of "
                     "%ux%u) after the 16-byte header, found %llu (image %llu is incomplete)",
                     f->path, (unsigned long long)total, dims[0], dims[1], dims[2],
                     (unsigned long long)done, (unsigned long long)(done / sample));
            return false;
        }
    }
    char what[64];
    snprintf(what, sizeof what, "%u images", dims[0]);
    if (!idx_expect_end(f, what))
        return false;
    ds->count = dims[0];
    ds->rows = (int32_t)dims[1];
    ds->cols = (int32_t)dims[2];
    ds->pixels = pixels;
    return true;
}

static bool idx_load_labels(NnqRun *run, IdxFile *f, NnqDataSet *ds) {
    uint32_t n;
    if (!idx_header(f, IDX_MAGIC_LABELS, "label", 1, &n))
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
        if (!idx_read(f, buf, want, &got))
            return false;
        for (size_t i = 0; i < got; i++) {
            labels[done + i] = buf[i];
            if (buf[i] > ds->max_label) {
                ds->max_label = buf[i];
                ds->max_label_at = (int64_t)(done + i);
            }
        }
        done += got;
        if (got < want) {
            snprintf(f->err, f->errlen,
                     "'%s' is truncated: expected %u bytes of labels after the 8-byte header, "
                     "found %llu",
                     f->path, n, (unsigned long long)done);
            return false;
        }
    }
    char what[64];
    snprintf(what, sizeof what, "%u labels", n);
    if (!idx_expect_end(f, what))
        return false;
    if ((int64_t)n != ds->count) {
        snprintf(f->err, f->errlen, "'%s' has %lld images but '%s' has %u labels",
                 ds->images_path, (long long)ds->count, f->path, n);
        return false;
    }
    ds->labels = labels;
    return true;
}

/* Opens path, runs load, closes; fails the run with the loader's message. */
static void idx_load(NnqRun *run, const char *path, NnqDataSet *ds,
                     bool (*load)(NnqRun *, IdxFile *, NnqDataSet *)) {
    char err[2048];
    IdxFile f = {NULL, path, err, sizeof err};
    bool ok = idx_open(&f);
    if (ok) {
        ok = load(run, &f, ds);
        gzclose_r(f.gz);
    }
    if (!ok)
        nnq_rt_fail(run, "%s", err);
}

/* ---- the ABI ---- */

static NnqDataSet *data_get(NnqRun *run, int32_t ds, const char *fn) {
    if (ds < 0 || ds >= run->ndatasets)
        nnq_rt_fail(run, "%s: invalid data set handle %d (%d loaded)", fn, ds, run->ndatasets);
    return &run->datasets[ds];
}

int32_t nnq_rt_data_idx(NnqRun *run, const char *images, const char *labels) {
    char *images_path = data_resolve(run, images);
    char *labels_path = data_resolve(run, labels);
    if (run->ndatasets == run->cap_datasets) {
        int32_t cap = run->cap_datasets ? run->cap_datasets * 2 : 8;
        NnqDataSet *d = realloc(run->datasets, (size_t)cap * sizeof *d);
        if (!d)
            nnq_rt_fail(run, "out of memory loading '%s'", images_path);
        run->datasets = d;
        run->cap_datasets = cap;
    }
    NnqDataSet ds = {0};
    ds.images_path = images_path;
    ds.labels_path = labels_path;
    ds.shift = 0.0;
    ds.scale = 1.0;
    idx_load(run, images_path, &ds, idx_load_images);
    idx_load(run, labels_path, &ds, idx_load_labels);
    run->datasets[run->ndatasets] = ds;
    return run->ndatasets++;
}

int64_t nnq_rt_data_count(NnqRun *run, int32_t ds) {
    return data_get(run, ds, "data_count")->count;
}

void nnq_rt_data_check(NnqRun *run, int32_t ds, int32_t rank, const int64_t *dims,
                       int32_t nclasses, const char *what) {
    NnqDataSet *d = data_get(run, ds, "data_check");
    const char *model = what ? what : "?";
    bool ok = (rank == 2 && dims[0] == d->rows && dims[1] == d->cols) ||
              (rank == 3 && dims[0] == 1 && dims[1] == d->rows && dims[2] == d->cols);
    if (!ok) {
        char shape[256];
        size_t len = 0;
        shape[0] = 0;
        for (int32_t i = 0; i < rank && i < 8 && len < sizeof shape - 32; i++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", i ? ", " : "",
                                    (long long)dims[i]);
        if (rank > 8)
            snprintf(shape + len, sizeof shape - len, ", ...");
        nnq_rt_fail(run,
                    "model '%s' expects inputs of shape [%s] but '%s' holds %dx%d images "
                    "(shape [1, %d, %d])",
                    model, shape, d->images_path, d->rows, d->cols, d->rows, d->cols);
    }
    if (d->max_label >= nclasses)
        nnq_rt_fail(run,
                    "'%s' has label %d at sample %lld, but model '%s' has %d classes "
                    "(labels must be 0..%d)",
                    d->labels_path, d->max_label, (long long)d->max_label_at, model, nclasses,
                    nclasses - 1);
}

void nnq_rt_data_normalize(NnqRun *run, int32_t ds, int32_t mode, int32_t stats_ds,
                           int64_t stats_count) {
    NnqDataSet *d = data_get(run, ds, "data_normalize");
    double mean, stddev; /* of the loaded pixels, the target of the map */
    if (mode == 0) {
        mean = 0.0;
        stddev = 1.0;
    } else if (mode == 1) {
        NnqDataSet *s = data_get(run, stats_ds, "data_normalize");
        if (stats_count <= 0 || stats_count > s->count)
            nnq_rt_fail(run,
                        "cannot normalize with statistics of samples [0, %lld) of '%s': it "
                        "has %lld samples",
                        (long long)stats_count, s->images_path, (long long)s->count);
        int64_t n = stats_count * s->rows * s->cols;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += s->pixels[i];
        double m = sum / (double)n, sq = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double dv = s->pixels[i] - m;
            sq += dv * dv;
        }
        double sd = sqrt(sq / (double)n);
        /* back to loaded-pixel units: current = (loaded - shift) / scale */
        mean = s->shift + s->scale * m;
        stddev = s->scale * sd;
        if (!(stddev > 0.0) || !isfinite(stddev))
            nnq_rt_fail(run,
                        "cannot standardize with the statistics of '%s': its first %lld "
                        "images have zero pixel variance",
                        s->images_path, (long long)stats_count);
    } else {
        nnq_rt_fail(run, "data_normalize: unknown mode %d", mode);
    }
    if (mean == d->shift && stddev == d->scale)
        return;
    /* new = (loaded - mean) / stddev, loaded = cur * scale + shift */
    double a = d->scale / stddev, b = (d->shift - mean) / stddev;
    int64_t n = d->count * d->rows * d->cols;
    for (int64_t i = 0; i < n; i++)
        d->pixels[i] = (float)(d->pixels[i] * a + b);
    d->shift = mean;
    d->scale = stddev;
}

void nnq_rt_data_batch(NnqRun *run, int32_t ds, const int64_t *index, int64_t start,
                       int64_t count, float *x, int32_t *y, int32_t augment) {
    (void)augment; /* TODO(helper): augmentation */
    NnqDataSet *d = data_get(run, ds, "data_batch");
    if (start < 0 || count < 0 || (!index && start + count > d->count))
        nnq_rt_fail(run, "batch of samples [%lld, %lld) is out of range: '%s' has %lld samples",
                    (long long)start, (long long)(start + count), d->images_path,
                    (long long)d->count);
    size_t sample = (size_t)d->rows * (size_t)d->cols;
    for (int64_t i = 0; i < count; i++) {
        int64_t s = index ? index[start + i] : start + i;
        if (s < 0 || s >= d->count)
            nnq_rt_fail(run,
                        "batch position %lld selects sample %lld, out of range: '%s' has %lld "
                        "samples",
                        (long long)(start + i), (long long)s, d->images_path,
                        (long long)d->count);
        if (x)
            memcpy(x + (size_t)i * sample, d->pixels + (size_t)s * sample,
                   sample * sizeof(float));
        if (y)
            y[i] = d->labels[s];
    }
}

int32_t nnq_rt_data_cifar(NnqRun *run, const char *dir, int32_t classes, int32_t split,
                          int32_t coarse) {
    (void)classes, (void)split, (void)coarse;
    nnq_rt_fail(run, "CIFAR loader for '%s' not implemented yet", dir);
}

int32_t nnq_rt_data_npy(NnqRun *run, const char *images, const char *labels) {
    (void)labels;
    nnq_rt_fail(run, ".npy loader for '%s' not implemented yet", images);
}

void nnq_rt_data_augment(NnqRun *run, int32_t ds, int32_t pad, int32_t hflip) {
    (void)ds, (void)pad, (void)hflip;
    nnq_rt_fail(run, "augmentation not implemented yet");
}

void rt_data_release(NnqRun *run) {
    /* pixels, labels and paths are tracked blocks */
    free(run->datasets);
    run->datasets = NULL;
    run->ndatasets = run->cap_datasets = 0;
}
