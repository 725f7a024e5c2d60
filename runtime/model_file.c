/* model_file.c — trained model files: writing (ABI) and reading (nnq_model_read).
 *
 * The byte layout is specified in docs/model-format.md (version 1): little-endian
 * header "NNQM", version, model name, tensor count; per tensor its name, dims, label
 * set and payload (packed label indices, or float32); a CRC-32 of everything before
 * it at the end.
 *
 * Invariants:
 *  - nnq_rt_model_begin starts an empty model; each nnq_rt_model_add validates and
 *    serializes one tensor into run->model_buf at once (so the caller may reuse its
 *    buffers); nnq_rt_model_save writes header + buffer + CRC and may be called again.
 *  - A label tensor stores value i as the index of the label equal to it (==), in
 *    `bits` bits (bits = the smallest b >= 1 with 2^b >= nlabels), at bit offset
 *    i * bits of the payload, least significant bit first within each byte; unused
 *    bits of the last byte are zero.
 *  - Saving never leaves a partial file under the destination name: the data goes to
 *    PATH.tmp, is fsynced and renamed over PATH; on any failure the .tmp we created is
 *    removed and PATH is untouched.
 *  - nnq_model_read checks magic, version, CRC, every length against the file size,
 *    label indices and padding bits, and returns NULL with a message otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_internal.h"

#define MODEL_MAGIC "NNQM"
#define MODEL_VERSION 2u /* written when the architecture is known; 1 is read too */
#define MODEL_MAX_RANK 8
#define MODEL_MAX_LABELS 256
#define MODEL_MAX_NAME 4096
#define MODEL_MAX_COUNT ((uint64_t)1 << 40)

/* *count *= v unless a factor or the product passes MODEL_MAX_COUNT (tested before the
 * multiplication: two factors of 2^40 would wrap round 2^64 and pass a test after it). */
static bool count_times(uint64_t *count, uint64_t v) {
    if (v > MODEL_MAX_COUNT || (v && *count > MODEL_MAX_COUNT / v))
        return false;
    *count *= v;
    return true;
}

static int model_bits(int32_t nlabels) {
    int bits = 1;
    while ((1 << bits) < nlabels)
        bits++;
    return bits;
}

/* ---- writing ---- */

static void model_release(NnqRun *run);

static void buf_reserve(NnqRun *run, size_t more) {
    if (run->model_len + more <= run->model_cap)
        return;
    size_t cap = run->model_cap ? run->model_cap : 4096;
    while (cap < run->model_len + more)
        cap *= 2;
    unsigned char *b = realloc(run->model_buf, cap);
    if (!b)
        nnq_rt_fail(run, "out of memory while serializing model '%s'", run->pending_model);
    run->model_buf = b;
    rt_on_release(run, model_release);
    run->model_cap = cap;
}

static void buf_bytes(NnqRun *run, const void *p, size_t n) {
    buf_reserve(run, n);
    memcpy(run->model_buf + run->model_len, p, n);
    run->model_len += n;
}

static void buf_u32(NnqRun *run, uint32_t v) {
    unsigned char b[4];
    rt_put_le32(b, v);
    buf_bytes(run, b, 4);
}

static void buf_u64(NnqRun *run, uint64_t v) {
    unsigned char b[8];
    rt_put_le64(b, v);
    buf_bytes(run, b, 8);
}

static void buf_f32(NnqRun *run, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    buf_u32(run, u);
}

void nnq_rt_model_begin(NnqRun *run, const char *model) {
    if (!model || !rt_is_name(model, strlen(model), MODEL_MAX_NAME))
        nnq_rt_fail(run, "model_begin: invalid model name");
    run->pending_model = rt_strdup(run, model);
    run->model_len = 0;
    run->model_ntensors = 0;
    run->model_arch = NULL;
}

void nnq_rt_model_arch(NnqRun *run, const unsigned char *arch, int64_t len, int32_t ds) {
    if (!run->pending_model)
        nnq_rt_fail(run, "model_arch: no model begun (nnq_rt_model_begin was not called)");
    if (!arch || len <= 0)
        nnq_rt_fail(run, "model_arch: empty architecture record");
    rt_data_get(run, ds, "model_arch");
    run->model_arch = arch;
    run->model_arch_len = len;
    run->model_arch_ds = ds;
}

void nnq_rt_model_add(NnqRun *run, const char *name, int32_t rank, const int64_t *dims,
                      int32_t nlabels, const float *labels, const float *values) {
    if (!run->pending_model)
        nnq_rt_fail(run, "model_add: no model begun (nnq_rt_model_begin was not called)");
    const char *model = run->pending_model;
    if (!name || !rt_is_name(name, strlen(name), MODEL_MAX_NAME))
        nnq_rt_fail(run, "model '%s': invalid tensor name", model);
    for (int32_t i = 0; i < run->model_ntensors; i++)
        if (strcmp(run->model_names[i], name) == 0)
            nnq_rt_fail(run, "model '%s': tensor '%s' added twice", model, name);
    if (rank < 0 || rank > MODEL_MAX_RANK)
        nnq_rt_fail(run, "model '%s': tensor '%s' has rank %d (at most %d supported)", model,
                    name, rank, MODEL_MAX_RANK);
    uint64_t count = 1;
    for (int32_t d = 0; d < rank; d++) {
        if (dims[d] < 0 || (uint64_t)dims[d] > MODEL_MAX_COUNT)
            nnq_rt_fail(run, "model '%s': tensor '%s' has invalid dimension %lld", model, name,
                        (long long)dims[d]);
        if (!count_times(&count, (uint64_t)dims[d]))
            nnq_rt_fail(run, "model '%s': tensor '%s' is too large", model, name);
    }
    if (nlabels < 0 || nlabels > MODEL_MAX_LABELS)
        nnq_rt_fail(run, "model '%s': tensor '%s' has %d labels (at most %d supported)", model,
                    name, nlabels, MODEL_MAX_LABELS);
    for (int32_t l = 0; l < nlabels; l++) {
        if (!isfinite(labels[l]))
            nnq_rt_fail(run, "model '%s': tensor '%s': label %d is not finite", model, name, l);
        for (int32_t m = 0; m < l; m++)
            if (labels[m] == labels[l])
                nnq_rt_fail(run, "model '%s': tensor '%s': label %g appears twice", model, name,
                            labels[l]);
    }

    /* names are kept for the duplicate check */
    char **names = realloc(run->model_names, (size_t)(run->model_ntensors + 1) * sizeof *names);
    if (!names)
        nnq_rt_fail(run, "out of memory while serializing model '%s'", model);
    run->model_names = names;
    rt_on_release(run, model_release);
    size_t start = run->model_len; /* rolled back if a value is rejected */

    size_t nlen = strlen(name);
    buf_u32(run, (uint32_t)nlen);
    buf_bytes(run, name, nlen);
    buf_u32(run, (uint32_t)rank);
    for (int32_t d = 0; d < rank; d++)
        buf_u64(run, (uint64_t)dims[d]);
    buf_u32(run, (uint32_t)nlabels);
    for (int32_t l = 0; l < nlabels; l++)
        buf_f32(run, labels[l]);
    if (nlabels == 0) {
        buf_u64(run, count * 4);
        buf_reserve(run, count * 4);
        for (uint64_t i = 0; i < count; i++)
            buf_f32(run, values[i]);
    } else {
        int bits = model_bits(nlabels);
        uint64_t nbytes = (count * (uint64_t)bits + 7) / 8;
        buf_u64(run, nbytes);
        buf_reserve(run, nbytes);
        unsigned char *out = run->model_buf + run->model_len;
        uint64_t acc = 0;
        int nacc = 0;
        size_t o = 0;
        int32_t hint = 0; /* the last label matched: runs of equal values are common */
        for (uint64_t i = 0; i < count; i++) {
            float v = values[i];
            int32_t idx = -1;
            if (labels[hint] == v) {
                idx = hint;
            } else {
                for (int32_t l = 0; l < nlabels; l++)
                    if (labels[l] == v) {
                        idx = l;
                        break;
                    }
            }
            if (idx < 0) {
                run->model_len = start;
                char set[256];
                size_t len = 0;
                for (int32_t l = 0; l < nlabels && len < sizeof set - 24; l++)
                    len += (size_t)snprintf(set + len, sizeof set - len, "%s%g", l ? ", " : "",
                                            labels[l]);
                nnq_rt_fail(run,
                            "cannot save model '%s': tensor '%s' value %g at index %llu is not "
                            "one of its labels {%s}",
                            model, name, v, (unsigned long long)i, set);
            }
            hint = idx;
            acc |= (uint64_t)idx << nacc;
            nacc += bits;
            while (nacc >= 8) {
                out[o++] = (unsigned char)acc;
                acc >>= 8;
                nacc -= 8;
            }
        }
        if (nacc > 0)
            out[o++] = (unsigned char)acc;
        run->model_len += o;
    }
    run->model_names[run->model_ntensors++] = rt_strdup(run, name);
}

void nnq_rt_model_save_check(NnqRun *run, const char *path) {
    if (!path || !*path)
        nnq_rt_fail(run, "cannot save model: empty file name");
    if (run->rank > 0)
        return;
    int err = nnq_output_check(path);
    if (err == EISDIR) nnq_rt_fail(run, "cannot save model to '%s': it is a directory", path);
    if (err) nnq_rt_fail(run, "cannot save model to '%s': cannot create '%s.tmp': %s", path, path, strerror(err));
    if (run->metrics_tmp) {
        /* --metrics naming the same file (neither may exist yet, but the metrics' PATH.tmp
         * does, and is then this one's): at the end the model replaced the metrics */
        char *real;
        nnq_output_dest(path, &real);
        const char *dest = real ? real : path;
        char *tmp = rt_tmp_name(malloc(strlen(dest) + 5), dest);
        bool same = tmp && nnq_same_file(tmp, run->metrics_tmp);
        free(tmp);
        free(real);
        if (same)
            nnq_rt_fail(run, "cannot save model to '%s': it is also the metrics file (--metrics %s)", path,
                        run->opts.metrics_path);
    }
}

void nnq_rt_model_save(NnqRun *run, const char *path) {
    if (!run->pending_model)
        nnq_rt_fail(run, "model_save: no model begun (nnq_rt_model_begin was not called)");
    if (!path || !*path)
        nnq_rt_fail(run, "cannot save model '%s': empty file name", run->pending_model);
    if (run->rank > 0) /* every rank holds the same model: rank 0 writes it */
        return;
    const char *model = run->pending_model;
    size_t mlen = strlen(model);
    RtWriter w;
    rt_wr_open(run, &w, path, "cannot save model to");
    rt_wr_bytes(&w, MODEL_MAGIC, 4);
    rt_wr_u32(&w, run->model_arch ? MODEL_VERSION : 1u);
    rt_wr_u32(&w, (uint32_t)mlen);
    rt_wr_bytes(&w, model, mlen);
    rt_wr_u32(&w, (uint32_t)run->model_ntensors);
    rt_wr_bytes(&w, run->model_buf, run->model_len);
    if (run->model_arch) { /* the record's ops, then the normalization of the data */
        const NnqDataSet *d = rt_data_get(run, run->model_arch_ds, "model_save");
        rt_wr_bytes(&w, run->model_arch, (size_t)run->model_arch_len);
        rt_wr_u32(&w, (uint32_t)d->channels);
        for (int k = 0; k < 2; k++)
            for (int32_t c = 0; c < d->channels; c++) {
                uint64_t u;
                memcpy(&u, k ? &d->scale[c] : &d->shift[c], 8);
                rt_wr_u64(&w, u);
            }
    }
    rt_wr_commit(&w);
}

static void model_release(NnqRun *run) {
    free(run->model_buf); /* pending_model and the names are tracked blocks */
    free(run->model_names);
    run->model_buf = NULL;
    run->model_names = NULL;
    run->model_len = run->model_cap = 0;
}

/* ---- the inference vocabulary (infer_ops.def) ---- */

static const struct {
    const char *name;
    int inputs, tensors, attrs;
    const char *attr_names;
} infer_ops[] = {
#define INFER_OP(name, text, inputs, tensors, attrs, attr_names, doc) {text, inputs, tensors, attrs, attr_names},
#include "infer_ops.def"
#undef INFER_OP
};

const char *nnq_infer_op_name(NnqInferOp op) { return infer_ops[op].name; }
int nnq_infer_op_inputs(NnqInferOp op) { return infer_ops[op].inputs; }
int nnq_infer_op_tensors(NnqInferOp op) { return infer_ops[op].tensors; }
int nnq_infer_op_attrs(NnqInferOp op) { return infer_ops[op].attrs; }
const char *nnq_infer_op_attr_names(NnqInferOp op) { return infer_ops[op].attr_names; }

/* ---- reading ---- */

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A name field (rt_rd_name), copied (malloc) into *out. */
static bool rd_string(RtReader *r, char **out, const char *what) {
    const char *s;
    uint32_t n;
    if (!rt_rd_name(r, &s, &n, MODEL_MAX_NAME, what))
        return false;
    *out = malloc(n + 1);
    if (!*out) {
        snprintf(r->err, r->errlen, "'%s': out of memory", r->path);
        return false;
    }
    memcpy(*out, s, n);
    (*out)[n] = 0;
    return true;
}

static bool rd_tensor(RtReader *r, NnqModelTensor *t, int flags) {
    if (!rd_string(r, &t->name, "tensor name"))
        return false;
    uint32_t rank, nlabels;
    if (!rt_rd_u32(r, &rank, "tensor rank"))
        return false;
    if (rank > MODEL_MAX_RANK) {
        rt_rd_error(r, "tensor '%s' has rank %u", t->name, rank);
        return false;
    }
    t->rank = (int32_t)rank;
    uint64_t count = 1;
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t v;
        if (!rt_rd_u64(r, &v, "tensor dimension"))
            return false;
        if (!count_times(&count, v)) {
            rt_rd_error(r, "tensor '%s' is too large", t->name);
            return false;
        }
        t->dims[d] = (int64_t)v;
    }
    if (!rt_rd_u32(r, &nlabels, "label count"))
        return false;
    if (nlabels > MODEL_MAX_LABELS) {
        rt_rd_error(r, "tensor '%s' has %u labels", t->name, nlabels);
        return false;
    }
    t->nlabels = (int32_t)nlabels;
    for (uint32_t l = 0; l < nlabels; l++) {
        uint32_t u;
        if (!rt_rd_u32(r, &u, "label"))
            return false;
        t->labels[l] = f32_from_bits(u);
    }
    uint64_t plen;
    if (!rt_rd_u64(r, &plen, "payload length"))
        return false;
    int bits = nlabels ? model_bits((int32_t)nlabels) : 32;
    uint64_t expect = nlabels ? (count * (uint64_t)bits + 7) / 8 : count * 4;
    if (plen != expect) {
        rt_rd_error(r, "tensor '%s' payload is %llu bytes, expected %llu", t->name,
                    (unsigned long long)plen, (unsigned long long)expect);
        return false;
    }
    if (!rt_rd_need(r, plen, "tensor payload"))
        return false;
    t->stored_bytes = (int64_t)plen;
    t->bits = nlabels ? bits : 0;
    bool packed = nlabels && (flags & NNQ_MODEL_PACKED);
    if (packed) {
        t->packed = malloc(plen ? plen : 1);
        if (t->packed)
            memcpy(t->packed, r->p + r->pos, plen);
    } else {
        t->values = malloc((size_t)(count ? count : 1) * sizeof(float));
    }
    if (packed ? !t->packed : !t->values) {
        snprintf(r->err, r->errlen, "'%s': out of memory reading tensor '%s'", r->path, t->name);
        return false;
    }
    const unsigned char *in = r->p + r->pos;
    if (nlabels == 0) {
        for (uint64_t i = 0; i < count; i++)
            t->values[i] = f32_from_bits(rt_le32(in + 4 * i));
    } else {
        uint64_t acc = 0;
        int nacc = 0;
        size_t o = 0;
        uint32_t mask = (1u << bits) - 1;
        for (uint64_t i = 0; i < count; i++) {
            while (nacc < bits) {
                acc |= (uint64_t)in[o++] << nacc;
                nacc += 8;
            }
            uint32_t idx = (uint32_t)acc & mask;
            acc >>= bits;
            nacc -= bits;
            if (idx >= nlabels) {
                rt_rd_error(r, "tensor '%s' value %llu has label index %u of %u", t->name,
                            (unsigned long long)i, idx, nlabels);
                return false;
            }
            if (!packed)
                t->values[i] = t->labels[idx];
        }
        if (acc != 0) {
            rt_rd_error(r, "tensor '%s' has non-zero padding bits", t->name);
            return false;
        }
    }
    r->pos += plen;
    return true;
}

/* The architecture record (version 2): input, classes, ops (names resolved to the op
 * table and to the file's tensors, value ids checked to refer to earlier values),
 * normalization. Shapes are the engine's to check (runtime/infer.c). */
static bool rd_arch(RtReader *r, NnqModelFile *mf) {
    NnqModelArch *a = mf->arch = calloc(1, sizeof *mf->arch);
    if (!a) {
        snprintf(r->err, r->errlen, "'%s': out of memory", r->path);
        return false;
    }
    uint32_t rank, classes, nops, nc;
    if (!rt_rd_u32(r, &rank, "input rank"))
        return false;
    if (rank < 1 || rank > MODEL_MAX_RANK) {
        rt_rd_error(r, "input rank %u", rank);
        return false;
    }
    a->input_rank = (int32_t)rank;
    uint64_t sample = 1;
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t v;
        if (!rt_rd_u64(r, &v, "input dimension"))
            return false;
        if (v < 1 || !count_times(&sample, v)) {
            rt_rd_error(r, "input dimension %llu", (unsigned long long)v);
            return false;
        }
        a->input_dims[d] = (int64_t)v;
    }
    if (!rt_rd_u32(r, &classes, "class count"))
        return false;
    if (classes < 1 || classes > INT32_MAX) {
        rt_rd_error(r, "%u classes", classes);
        return false;
    }
    a->classes = (int32_t)classes;
    if (!rt_rd_u32(r, &nops, "op count"))
        return false;
    if (nops < 1 || nops > (r->end - r->pos) / 16) { /* an op takes at least 16 bytes */
        rt_rd_error(r, "%u ops", nops);
        return false;
    }
    a->ops = calloc(nops, sizeof *a->ops);
    if (!a->ops) {
        snprintf(r->err, r->errlen, "'%s': out of memory", r->path);
        return false;
    }
    for (uint32_t i = 0; i < nops; i++) {
        NnqModelOp *op = &a->ops[i];
        const char *name;
        uint32_t len, n;
        if (!rt_rd_str(r, &name, &len, MODEL_MAX_NAME, "op name"))
            return false;
        op->op = NNQ_INFER_COUNT;
        for (int k = 0; k < NNQ_INFER_COUNT; k++)
            if (strlen(infer_ops[k].name) == len && !memcmp(infer_ops[k].name, name, len))
                op->op = (NnqInferOp)k;
        if (op->op == NNQ_INFER_COUNT) {
            char shown[4 * 64 + 4];
            rt_rd_error(r, "op %u is '%s', not an op this build knows", i,
                        rt_printable(name, len, 64, shown, sizeof shown));
            return false;
        }
        const char *opn = infer_ops[op->op].name;
        if (!rt_rd_u32(r, &n, "op input count"))
            return false;
        if (n != (uint32_t)infer_ops[op->op].inputs) {
            rt_rd_error(r, "op %u (%s) has %u inputs", i, opn, n);
            return false;
        }
        for (uint32_t k = 0; k < n; k++) {
            uint32_t v;
            if (!rt_rd_u32(r, &v, "op input"))
                return false;
            if (v > i) {
                rt_rd_error(r, "op %u (%s) reads value %u, not yet defined", i, opn, v);
                return false;
            }
            op->in[k] = (int32_t)v;
        }
        if (!rt_rd_u32(r, &n, "op tensor count"))
            return false;
        if (n != (uint32_t)infer_ops[op->op].tensors) {
            rt_rd_error(r, "op %u (%s) has %u tensors", i, opn, n);
            return false;
        }
        for (uint32_t k = 0; k < n; k++) {
            const char *tn;
            uint32_t tl;
            if (!rt_rd_str(r, &tn, &tl, MODEL_MAX_NAME, "op tensor name"))
                return false;
            op->tensor[k] = -1;
            for (int32_t t = 0; t < mf->ntensors; t++)
                if (strlen(mf->tensors[t].name) == tl && !memcmp(mf->tensors[t].name, tn, tl))
                    op->tensor[k] = t;
            if (op->tensor[k] < 0) {
                char shown[4 * 64 + 4];
                rt_rd_error(r, "op %u (%s) reads tensor '%s', which the file does not hold", i, opn,
                            rt_printable(tn, tl, 64, shown, sizeof shown));
                return false;
            }
        }
        if (!rt_rd_u32(r, &n, "op attribute count"))
            return false;
        if (n != (uint32_t)infer_ops[op->op].attrs) {
            rt_rd_error(r, "op %u (%s) has %u attributes", i, opn, n);
            return false;
        }
        for (uint32_t k = 0; k < n; k++) {
            uint64_t v;
            if (!rt_rd_u64(r, &v, "op attribute"))
                return false;
            if (v > 65536) {
                rt_rd_error(r, "op %u (%s) attribute %u is %llu", i, opn, k, (unsigned long long)v);
                return false;
            }
            op->attr[k] = (int64_t)v;
        }
        a->nops = (int32_t)i + 1;
    }
    if (!rt_rd_u32(r, &nc, "normalization channels"))
        return false;
    if (nc > (r->end - r->pos) / 16) {
        rt_rd_error(r, "%u normalization channels", nc);
        return false;
    }
    a->norm_channels = (int32_t)nc;
    a->norm_shift = malloc(2 * (size_t)(nc ? nc : 1) * sizeof(double));
    if (!a->norm_shift) {
        snprintf(r->err, r->errlen, "'%s': out of memory", r->path);
        return false;
    }
    a->norm_scale = a->norm_shift + nc;
    for (uint32_t k = 0; k < 2 * nc; k++) {
        uint64_t u;
        double v;
        if (!rt_rd_u64(r, &u, "normalization"))
            return false;
        memcpy(&v, &u, 8);
        if (!isfinite(v) || (k >= nc && !(v > 0))) {
            rt_rd_error(r, "channel %u's normalization %s is %g", k % nc, k < nc ? "shift" : "scale", v);
            return false;
        }
        a->norm_shift[k] = v;
    }
    return true;
}

int nnq_model_label_index(const NnqModelTensor *t, int64_t pos) {
    if (t->packed) {
        uint64_t bit = (uint64_t)pos * (uint64_t)t->bits, v = 0;
        for (int b = 0; b < t->bits; b++, bit++)
            v |= (uint64_t)(t->packed[bit / 8] >> (bit % 8) & 1) << b;
        return (int)v;
    }
    for (int l = 0; l < t->nlabels; l++)
        if (t->values[pos] == t->labels[l])
            return l;
    return 0; /* unreachable: the reader checked every value */
}

float nnq_model_value(const NnqModelTensor *t, int64_t pos) {
    return t->nlabels ? t->labels[nnq_model_label_index(t, pos)] : t->values[pos];
}

int64_t nnq_model_count(const NnqModelTensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->dims[d];
    return n;
}

static int shape_fail(char *err, size_t errlen, int i, NnqInferOp op, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int shape_fail(char *err, size_t errlen, int i, NnqInferOp op, const char *fmt, ...) {
    int n = snprintf(err, errlen, "op %d (%s): ", i, infer_ops[op].name);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int nnq_model_shapes(const NnqModelFile *mf, NnqValueShape *shapes, char *err, size_t errlen) {
    const NnqModelArch *a = mf->arch;
    if (a->input_rank < 1 || a->input_rank > 3)
        return shape_fail(err, errlen, 0, a->ops[0].op, "the input has rank %d; samples are [F], [H, W] or [C, H, W]",
                          a->input_rank);
    /* [F]; [C, H, W]; a model declared on [H, W] samples (one channel's images, as
     * nnq_rt_data_check takes them; the language lets only elementwise ops and flatten
     * read them) as [1, H, W] (until 2026-12-07 such a model trained and was refused here) */
    const int64_t *in = a->input_dims;
    shapes[0] = a->input_rank == 1   ? (NnqValueShape){.rank = 1, .dims = {in[0], 1, 1}}
                : a->input_rank == 2 ? (NnqValueShape){.rank = 3, .dims = {1, in[0], in[1]}}
                                     : (NnqValueShape){.rank = 3, .dims = {in[0], in[1], in[2]}};
    /* one (shift, scale) pair for the whole sample, or one per channel of [C, H, W] */
    if (a->norm_channels > 1 && (a->input_rank != 3 || in[0] != a->norm_channels)) {
        snprintf(err, errlen, "%d normalization channels for an input of %lld channels", a->norm_channels,
                 (long long)(a->input_rank == 3 ? in[0] : 1));
        return -1;
    }
    for (int i = 0; i < a->nops; i++) {
        const NnqModelOp *mo = &a->ops[i];
        NnqInferOp op = mo->op;
        const NnqValueShape *in = &shapes[mo->in[0]];
        NnqValueShape *out = &shapes[i + 1];
        *out = *in;
        const int64_t *d = in->dims;
        int64_t h = in->rank == 3 ? d[1] : 1, w = in->rank == 3 ? d[2] : 1;
        const NnqModelTensor *t0 = infer_ops[op].tensors ? &mf->tensors[mo->tensor[0]] : NULL;
        bool spatial = op == NNQ_INFER_CONV2D || op == NNQ_INFER_DWCONV2D || op == NNQ_INFER_MAXPOOL ||
                       op == NNQ_INFER_AVGPOOL;
        if (spatial && in->rank != 3)
            return shape_fail(err, errlen, i, op, "needs [C, H, W] samples, its input has rank %d", in->rank);
        switch (op) {
        case NNQ_INFER_DENSE:
            if (in->rank != 1 || t0->rank != 2 || t0->dims[0] != d[0] || t0->dims[1] < 1)
                return shape_fail(err, errlen, i, op, "weight '%s' does not fit an input of %lld features", t0->name,
                                  (long long)d[0]);
            out->dims[0] = t0->dims[1];
            break;
        case NNQ_INFER_CONV2D:
        case NNQ_INFER_DWCONV2D: {
            bool dw = op == NNQ_INFER_DWCONV2D;
            int64_t stride = mo->attr[0], pad = mo->attr[1];
            if (t0->rank != 4 || t0->dims[2] != t0->dims[3] || t0->dims[1] != (dw ? 1 : d[0]) ||
                (dw && t0->dims[0] != d[0]) || t0->dims[0] < 1 || t0->dims[2] < 1 || stride < 1)
                return shape_fail(err, errlen, i, op, "weight '%s' does not fit an input of %lld channels", t0->name,
                                  (long long)d[0]);
            int64_t k = t0->dims[2], oh = h + 2 * pad - k, ow = w + 2 * pad - k;
            if (k > NNQ_CONV_MAX || stride > NNQ_CONV_MAX || pad > NNQ_CONV_MAX)
                return shape_fail(err, errlen, i, op, "kernel %lld, stride %lld, padding %lld: each at most %d",
                                  (long long)k, (long long)stride, (long long)pad, NNQ_CONV_MAX);
            /* a padding of k or more is the language's too: windows wholly in it give 0 */
            if (oh < 0 || ow < 0)
                return shape_fail(err, errlen, i, op, "a %lldx%lld window does not fit %lldx%lld (padding %lld)",
                                  (long long)k, (long long)k, (long long)h, (long long)w, (long long)pad);
            out->dims[0] = t0->dims[0], out->dims[1] = oh / stride + 1, out->dims[2] = ow / stride + 1;
            break;
        }
        case NNQ_INFER_MAXPOOL:
        case NNQ_INFER_AVGPOOL: {
            int64_t k = mo->attr[0], stride = mo->attr[1];
            if (k < 1 || stride < 1 || k > h || k > w)
                return shape_fail(err, errlen, i, op, "window %lld stride %lld on %lldx%lld", (long long)k,
                                  (long long)stride, (long long)h, (long long)w);
            out->dims[1] = (h - k) / stride + 1, out->dims[2] = (w - k) / stride + 1;
            break;
        }
        case NNQ_INFER_BIAS:
        case NNQ_INFER_BATCHNORM:
            for (int k = 0; k < infer_ops[op].tensors; k++) {
                const NnqModelTensor *t = &mf->tensors[mo->tensor[k]];
                if (t->rank != 1 || t->dims[0] != d[0])
                    return shape_fail(err, errlen, i, op, "tensor '%s' is not [%lld]", t->name, (long long)d[0]);
                if (op == NNQ_INFER_BATCHNORM && t->nlabels)
                    return shape_fail(err, errlen, i, op, "quantized statistics");
            }
            break;
        case NNQ_INFER_ADD: {
            const NnqValueShape *b = &shapes[mo->in[1]];
            if (b->rank != in->rank || memcmp(b->dims, in->dims, sizeof b->dims))
                return shape_fail(err, errlen, i, op, "its inputs differ in shape");
            break;
        }
        case NNQ_INFER_FLATTEN:
            out->rank = 1;
            out->dims[0] = d[0] * h * w, out->dims[1] = out->dims[2] = 1;
            break;
        default: /* relu */
            break;
        }
        int64_t n = 1; /* bounded, so that sizes computed from it cannot overflow */
        for (int k = 0; k < 3; k++) {
            if (out->dims[k] < 1 || out->dims[k] > ((int64_t)1 << 40) / n)
                return shape_fail(err, errlen, i, op, "gives more than 2^40 values a sample");
            n *= out->dims[k];
        }
    }
    return 0;
}

NnqOpGeometry nnq_model_op_geometry(const NnqModelFile *mf, const NnqValueShape *shapes, int i) {
    const NnqModelOp *mo = &mf->arch->ops[i];
    const NnqValueShape *in = &shapes[mo->in[0]], *out = &shapes[i + 1];
    NnqOpGeometry g = {.rank = out->rank, .c = in->dims[0], .h = in->rank == 3 ? in->dims[1] : 1,
                       .w = in->rank == 3 ? in->dims[2] : 1, .k = mo->attr[0], .stride = mo->attr[1]};
    memcpy(g.dims, out->dims, sizeof g.dims);
    if (mo->op == NNQ_INFER_CONV2D || mo->op == NNQ_INFER_DWCONV2D) /* attrs: stride, pad */
        g.stride = mo->attr[0], g.pad = mo->attr[1], g.k = mf->tensors[mo->tensor[0]].dims[2];
    return g;
}

void nnq_model_free(NnqModelFile *mf) {
    if (!mf)
        return;
    if (mf->tensors)
        for (int32_t i = 0; i < mf->ntensors; i++) {
            free(mf->tensors[i].name);
            free(mf->tensors[i].values);
            free(mf->tensors[i].packed);
        }
    free(mf->tensors);
    if (mf->arch) {
        free(mf->arch->norm_shift);
        free(mf->arch->ops);
        free(mf->arch);
    }
    free(mf->model);
    free(mf);
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(NnqModelTensor *const *)a)->name, (*(NnqModelTensor *const *)b)->name);
}

/* No two tensors of the file share a name (an op's tensor, an exported file, is named by
 * it): sorted, neighbours compared. */
static bool names_distinct(RtReader *r, const NnqModelFile *mf) {
    NnqModelTensor **order = malloc((size_t)(mf->ntensors ? mf->ntensors : 1) * sizeof *order);
    if (!order) {
        snprintf(r->err, r->errlen, "'%s': out of memory", r->path);
        return false;
    }
    for (int32_t i = 0; i < mf->ntensors; i++)
        order[i] = &mf->tensors[i];
    qsort(order, (size_t)mf->ntensors, sizeof *order, by_name);
    bool ok = true;
    for (int32_t i = 1; i < mf->ntensors && ok; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            rt_rd_error(r, "two tensors are named '%s'", order[i]->name);
            ok = false;
        }
    free(order);
    return ok;
}

NnqModelFile *nnq_model_read(const char *path, char *err, size_t errlen) {
    return nnq_model_load(path, 0, err, errlen);
}

NnqModelFile *nnq_model_load(const char *path, int flags, char *err, size_t errlen) {
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    size_t size;
    unsigned char *buf = rt_slurp(path, "model file", &size, err, errlen);
    if (!buf)
        return NULL;
    NnqModelFile *mf = NULL;
    if (size < 4 || memcmp(buf, MODEL_MAGIC, 4) != 0) {
        snprintf(err, errlen, "'%s' is not an nnq model file (bad magic)", path);
        goto fail;
    }
    if (size < 20) {
        snprintf(err, errlen, "'%s': truncated model file (%zu bytes)", path, size);
        goto fail;
    }
    uint32_t version = rt_le32(buf + 4);
    if (version != 1 && version != MODEL_VERSION) {
        snprintf(err, errlen, "'%s': unsupported model file version %u (this build reads 1 and %u)",
                 path, version, MODEL_VERSION);
        goto fail;
    }
    uint32_t stored = rt_le32(buf + size - 4);
    uint32_t computed = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), buf, size - 4);
    if (stored != computed) {
        snprintf(err, errlen,
                 "'%s' is corrupt or truncated: CRC-32 mismatch (stored 0x%08x, computed 0x%08x)",
                 path, stored, computed);
        goto fail;
    }
    RtReader r = {buf, 8, size - 4, path, "malformed model file", err, errlen};
    mf = calloc(1, sizeof *mf);
    if (!mf) {
        snprintf(err, errlen, "out of memory reading '%s'", path);
        goto fail;
    }
    mf->version = version;
    if (!rd_string(&r, &mf->model, "model name"))
        goto fail;
    uint32_t nt;
    if (!rt_rd_u32(&r, &nt, "tensor count"))
        goto fail;
    /* each tensor takes at least 20 bytes: a cheap bound before allocating */
    if (nt > (r.end - r.pos) / 20) {
        rt_rd_error(&r, "%u tensors in %zu bytes", nt, size);
        goto fail;
    }
    mf->tensors = calloc(nt ? nt : 1, sizeof *mf->tensors);
    if (!mf->tensors) {
        snprintf(err, errlen, "out of memory reading '%s'", path);
        goto fail;
    }
    for (uint32_t i = 0; i < nt; i++) {
        mf->ntensors = (int32_t)i + 1;
        if (!rd_tensor(&r, &mf->tensors[i], flags))
            goto fail;
    }
    if (!names_distinct(&r, mf))
        goto fail;
    if (version >= 2 && !rd_arch(&r, mf))
        goto fail;
    if (r.pos != r.end) {
        rt_rd_error(&r, "%zu unexpected bytes before the CRC", r.end - r.pos);
        goto fail;
    }
    free(buf);
    return mf;
fail:
    free(buf);
    nnq_model_free(mf);
    return NULL;
}
