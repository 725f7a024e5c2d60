/* init_from.c — initial weights from NumPy .npy files: a train block's `init from "DIR"`
 * (docs/language.md). Generated code calls nnq_rt_init_from once, then, unless it says
 * that a checkpoint is resumed, nnq_rt_init_tensor for every parameter (DIR/NAME.npy,
 * required) and every batch-norm statistic (optional), and runs each parameter's init
 * kernel on what was read.
 *
 * Requires: npy.c (the .npy reader, shared with data sets), data.c (the search path:
 * DIR is found like a data directory), mpi.c (the agreement of the ranks).
 * Invariants:
 *  - A file is taken only when it is exactly the tensor: dtype '<f4', C order, the
 *    tensor's shape, every value finite (and >= 0 when asked), no byte missing or
 *    extra. Anything else fails the run naming the file, after the file is closed.
 *  - Messages are written into a buffer sized for the path (no fixed-size buffer holds
 *    anything read from a file or given by the user unchecked).
 *  - Every rank of a data-parallel job makes the same collective call per tensor, read
 *    or missing, so a file that differs (or is missing) on one rank fails every rank
 *    instead of leaving one waiting. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rt_internal.h"

/* A tensor being read: where it goes and what it must look like. */
typedef struct InitTensor {
    const char *name;
    int32_t rank;
    const int64_t *dims;
    uint64_t count;
    float *dst;
    int32_t flags;
    char *shape; /* "(784, 256)", as numpy prints shapes */
} InitTensor;

/* "(784, 256)" / "(10,)" in a tracked block. */
static char *init_shape_text(NnqRun *run, int32_t rank, const int64_t *dims) {
    size_t cap = 4 + (size_t)rank * 24;
    char *s = rt_alloc_block(run, (int64_t)cap, false);
    size_t len = (size_t)snprintf(s, cap, "(");
    for (int32_t i = 0; i < rank; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    snprintf(s + len, cap - len, rank == 1 ? ",)" : ")");
    return s;
}

static bool init_put(void *ctx, RtZFile *f, uint64_t first, const unsigned char *p, size_t n) {
    const InitTensor *t = ctx;
    for (size_t k = 0; k < n; k++) {
        uint32_t u = rt_le32(p + 4 * k);
        float x;
        memcpy(&x, &u, sizeof x);
        bool bad = !isfinite(x) || ((t->flags & NNQ_INIT_NONNEG) && x < 0);
        if (bad) {
            snprintf(f->err, f->errlen, "'%s' has %s %g at index %llu (of %llu values of %s)",
                     f->path, isfinite(x) ? "the negative variance" : "the non-finite value",
                     (double)x, (unsigned long long)(first + k), (unsigned long long)t->count,
                     t->name);
            return false;
        }
        t->dst[first + k] = x;
    }
    return true;
}

/* Reads the open file into t->dst; false with the message in f->err. */
static bool init_read(RtZFile *f, const InitTensor *t) {
    RtNpyHeader h = {0};
    if (!rt_npy_header(f, &h))
        return false;
    if (h.kind != 'f' || h.size != 4 || h.swapped) {
        snprintf(f->err, f->errlen,
                 "'%s' has dtype '%s'; the initial weights of %s must be float32, dtype '<f4' "
                 "(in numpy: np.save(path, a.astype('<f4')))",
                 f->path, h.descr, t->name);
        return false;
    }
    bool same = h.ndim == t->rank;
    for (int i = 0; same && i < h.ndim; i++)
        same = h.shape[i] == t->dims[i];
    if (!same) {
        char found[RT_NPY_SHAPE_TEXT];
        rt_npy_shape_text(&h, found, sizeof found);
        snprintf(f->err, f->errlen, "'%s' has shape %s; expected %s, the shape of %s", f->path,
                 found, t->shape, t->name);
        return false;
    }
    if (!rt_npy_check_size(f, &h, t->count))
        return false;
    return rt_npy_read_data(f, &h, t->count, "the array", init_put, (void *)t);
}

/* A hash of the values read, for the ranks' agreement. */
static uint64_t init_hash(const float *v, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        h = (h ^ u) * 0x100000001b3ull;
    }
    return h;
}

char *nnq_rt_init_from(NnqRun *run, const char *dir) {
    if (run->opts.resume_dir)
        return NULL; /* the checkpoint holds the whole state */
    return rt_data_resolve(run, dir, true, "`init from` directory");
}

int32_t nnq_rt_init_tensor(NnqRun *run, const char *dir, const char *name, int32_t rank,
                           const int64_t *dims, float *dst, int32_t flags) {
    if (!dir || !name || !dst || rank < 1 || rank > RT_NPY_MAX_DIMS)
        nnq_rt_fail(run, "init_tensor: bad arguments (rank %d)", rank);
    uint64_t count = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (dims[i] < 1 || (uint64_t)dims[i] > ((uint64_t)1 << 40) / count)
            nnq_rt_fail(run, "init_tensor: bad dimension %lld of %s", (long long)dims[i], name);
        count *= (uint64_t)dims[i];
    }
    InitTensor t = {name, rank, dims, count, dst, flags, init_shape_text(run, rank, dims)};
    char *path = rt_path_join(run, dir, name, ".npy");

    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && (flags & NNQ_INIT_OPTIONAL)) {
            rt_mpi_agree(run, 0, "initial weights", path);
            return 0;
        }
        nnq_rt_fail(run, "cannot open '%s', the initial weights of %s (shape %s): %s", path, name,
                    t.shape, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        nnq_rt_fail(run, "'%s' is a directory, not the .npy file of %s", path, name);
    size_t errlen = 2 * strlen(path) + 2 * strlen(t.shape) + 2048;
    char *err = rt_alloc_block(run, (int64_t)errlen, false);
    RtZFile f = {.path = path, .err = err, .errlen = errlen};
    bool ok = rt_zf_open(&f, "weights file");
    if (ok) {
        ok = init_read(&f, &t);
        rt_zf_close(&f);
    }
    if (!ok)
        nnq_rt_fail(run, "%s", err);
    rt_mpi_agree(run, run->nranks > 1 ? init_hash(dst, count) : 0, "initial weights", path);
    return 1;
}
