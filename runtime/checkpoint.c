/* checkpoint.c — training checkpoints: the complete state of a run, written at the end
 * of an epoch and read back by --resume so that training continues exactly.
 *
 * The byte layout is specified in docs/checkpoint-format.md (version 1): little-endian
 * header "NNQC", version, file size, epoch, the run's random generator; the program's
 * description (what, value lines); every declared state region by name and size; a
 * CRC-32 of everything before it at the end.
 *
 * Invariants:
 *  - Generated code declares the program's description (nnq_rt_checkpoint_describe) and
 *    its state regions (nnq_rt_checkpoint_state) once, before resuming or saving; a
 *    checkpoint holds them in declaration order, followed by nothing else. The run's
 *    generator (run.c) is always part of the state.
 *  - One run a directory: rank 0 holds a lock (flock) on it from nnq_rt_checkpoint_dir
 *    to the run's end, and a second run given it stops at once.
 *  - Saving never leaves a partial file under the checkpoint's name: the data goes to
 *    DIR/checkpoint.nnqc.tmp, is fsynced and renamed over DIR/checkpoint.nnqc, and the
 *    directory is fsynced; on any failure the .tmp is removed and the previous checkpoint
 *    is untouched.
 *  - Resuming checks size, magic, version and CRC, then the description and every state
 *    name and size against the program's, all before the first byte of state is
 *    restored; the mapping and descriptor are released before any failure is reported.
 *  - Every epoch ends with a scan of the float state (rt_checkpoint_epoch_done): a
 *    non-finite value fails the run naming the tensor, before any checkpoint of it is
 *    written; a fresh run scans its initial state before the first step
 *    (nnq_rt_checkpoint_resume without --resume). State named train.* or dropout.*
 *    holds the loop's scalars; all other state is float32 (codegen.c's
 *    declare_checkpoint); the scan skips carried values (P.carryK), which may be
 *    infinite.
 *  - While a program with a checkpoint directory runs, SIGINT, SIGTERM and SIGHUP (the
 *    terminal closed) only set a flag: the epoch finishes, its checkpoint is saved and
 *    the run fails saying how to resume (a second signal has its default effect). The
 *    handler runs on an alternate stack, on the thread that installed it (the pool's
 *    workers block the three signals,
 *    parallel.c): oneDNN 2.6's AVX-512 sgemm kernels point rsp into their heap
 *    workspace while they run, and a signal frame pushed there corrupted the heap
 *    (oneDNN issue 4845, fixed after 3.11; here 1 SIGINT in 8 aborted the run). The
 *    three are installed by nnq_stop_signals, which nnqc build's link uses too. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_internal.h"

#define CKPT_MAGIC "NNQC"
#define CKPT_VERSION 1u
#define CKPT_FILE "checkpoint.nnqc"
#define CKPT_MAX_NAME 4096
/* magic, version, size, epoch, epochs, generator */
#define CKPT_HEADER (4 + 4 + 8 + 4 + 4 + 32)

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "checkpoint state is stored in the host's byte order, assumed little-endian");

/* ---- declarations ---- */

static void checkpoint_release(NnqRun *run);

static void *ck_grow(NnqRun *run, void *arr, int32_t *cap, int32_t n, size_t elem) {
    if (n < *cap)
        return arr;
    int32_t c = *cap ? *cap * 2 : 32;
    void *p = realloc(arr, (size_t)c * elem);
    if (!p)
        nnq_rt_fail(run, "out of memory declaring checkpoint state");
    rt_on_release(run, checkpoint_release);
    *cap = c;
    return p;
}

static void ck_check_name(NnqRun *run, const char *name, const char *what) {
    if (!name || !*name || strlen(name) > CKPT_MAX_NAME)
        nnq_rt_fail(run, "checkpoint: invalid %s", what);
}

void nnq_rt_checkpoint_describe(NnqRun *run, const char *what, int64_t value) {
    ck_check_name(run, what, "description");
    run->ckpt_desc =
        ck_grow(run, run->ckpt_desc, &run->ckpt_cap_desc, run->ckpt_ndesc, sizeof *run->ckpt_desc);
    RtCkptItem *it = &run->ckpt_desc[run->ckpt_ndesc++];
    it->name = rt_strdup(run, what);
    it->value = value;
    it->p = NULL;
}

static uint64_t ck_hash(const char *s) { /* FNV-1a */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The slot of run->ckpt_names where `name` is, or the empty one where it would go. */
static int32_t *ck_name_slot(NnqRun *run, const char *name) {
    uint32_t mask = (uint32_t)run->ckpt_names_cap - 1, at = (uint32_t)ck_hash(name) & mask;
    while (run->ckpt_names[at] && strcmp(run->ckpt_state[run->ckpt_names[at] - 1].name, name))
        at = (at + 1) & mask;
    return &run->ckpt_names[at];
}

/* Each state name is declared once: a hash set of them, at most half full (a model of
 * 1,500 layers declares 18,000 buffers; comparing each with every earlier one was 7% of
 * its 11 s run). The compiler's index of names (lang/names.c) allocates from an Arena,
 * which aborts when memory runs out; the runtime fails with a message instead. */
void nnq_rt_checkpoint_state(NnqRun *run, const char *name, void *p, int64_t bytes) {
    ck_check_name(run, name, "state name");
    if (bytes < 0 || (bytes > 0 && !p))
        nnq_rt_fail(run, "checkpoint: invalid state '%s' (%lld bytes)", name, (long long)bytes);
    if (2 * (run->ckpt_nstate + 1) > run->ckpt_names_cap) {
        int32_t cap = run->ckpt_names_cap ? 2 * run->ckpt_names_cap : 64;
        int32_t *slots = calloc((size_t)cap, sizeof *slots);
        if (!slots)
            nnq_rt_fail(run, "out of memory declaring checkpoint state");
        rt_on_release(run, checkpoint_release);
        free(run->ckpt_names);
        run->ckpt_names = slots, run->ckpt_names_cap = cap;
        for (int32_t i = 0; i < run->ckpt_nstate; i++)
            *ck_name_slot(run, run->ckpt_state[i].name) = i + 1;
    }
    int32_t *slot = ck_name_slot(run, name);
    if (*slot)
        nnq_rt_fail(run, "checkpoint: state '%s' declared twice", name);
    run->ckpt_state = ck_grow(run, run->ckpt_state, &run->ckpt_cap_state, run->ckpt_nstate,
                              sizeof *run->ckpt_state);
    *slot = run->ckpt_nstate + 1;
    RtCkptItem *it = &run->ckpt_state[run->ckpt_nstate++];
    it->name = rt_strdup(run, name);
    it->value = bytes;
    it->p = p;
}

/* ---- interrupts ---- */

static volatile sig_atomic_t ck_signal; /* the signal received, 0: none */
static bool ck_handling;
static struct sigaction ck_old[NNQ_STOP_SIGNALS];

static const int stop_signals[NNQ_STOP_SIGNALS] = {SIGINT, SIGTERM, SIGHUP};

void nnq_stop_signals(void (*handler)(int), int flags, struct sigaction *old) {
    for (int i = 0; i < NNQ_STOP_SIGNALS; i++) {
        if (!handler) {
            sigaction(stop_signals[i], &old[i], NULL);
            continue;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sa.sa_flags = flags;
        sigfillset(&sa.sa_mask);
        sigaction(stop_signals[i], NULL, &old[i]);
        /* a signal ignored from the start (nohup's SIGHUP, a background job's SIGINT)
         * stays ignored */
        if (old[i].sa_handler != SIG_IGN)
            sigaction(stop_signals[i], &sa, NULL);
    }
}

static void ck_on_signal(int sig) {
    static const char msg[] = "\nnnqc: interrupted: finishing this epoch to save a checkpoint "
                              "(interrupt again to stop at once)\n";
    ck_signal = sig;
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
}

/* This thread's alternate signal stack, set once: 64 KiB, well above the frame of the
 * largest register state (AVX-512: about 3 KiB) and the handler's few calls. */
static void ck_signal_stack(void) {
    static char stack[65536] __attribute__((aligned(64)));
    static bool done;
    if (done)
        return;
    stack_t ss = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) == 0)
        done = true;
}

static void ck_handle_signals(bool on) {
    if (on == ck_handling)
        return;
    if (on) {
        ck_signal_stack();
        ck_signal = 0;
        /* the second signal: its default action */
        nnq_stop_signals(ck_on_signal, SA_RESETHAND | SA_ONSTACK, ck_old);
    } else {
        nnq_stop_signals(NULL, 0, ck_old);
    }
    ck_handling = on;
}

/* ---- non-finite state ---- */

static bool ck_is_f32(const char *name) {
    return strncmp(name, "train.", 6) != 0 && strncmp(name, "dropout.", 8) != 0;
}

/* Where a tensor comes in a parameter's update: the optimizer's moments, then the aux
 * they step, then the weights computed from the aux, then everything else. The first
 * non-finite tensor in this order is the likeliest origin. -1: not scanned, a value the
 * next update carries in (P.carryK: an intermediate of the projection, which may be
 * infinite where the weight saturates, an exp overflowing). */
static int ck_stage(const char *name) {
    const char *last = strrchr(name, '.');
    last = last ? last + 1 : name;
    if (!strncmp(last, "carry", 5) && isdigit((unsigned char)last[5]))
        return -1;
    if ((last[0] == 'm' || last[0] == 'v') && isdigit((unsigned char)last[1]))
        return 0;
    if (!strncmp(last, "aux", 3))
        return 1;
    if (!strcmp(last, "weight"))
        return 2;
    return 3;
}

static int64_t ck_iteration(const NnqRun *run) {
    for (int32_t i = 0; i < run->ckpt_nstate; i++)
        if (!strcmp(run->ckpt_state[i].name, "train.iteration") && run->ckpt_state[i].value == 8)
            return *(const int64_t *)run->ckpt_state[i].p;
    return -1;
}

bool rt_state_nonfinite(const NnqRun *run, char *what, size_t len) {
    for (int stage = 0; stage < 4; stage++)
        for (int32_t i = 0; i < run->ckpt_nstate; i++) {
            const RtCkptItem *it = &run->ckpt_state[i];
            if (!ck_is_f32(it->name) || ck_stage(it->name) != stage)
                continue;
            const float *x = it->p;
            int64_t n = it->value / 4, first = -1, bad = 0;
            for (int64_t k = 0; k < n; k++)
                if (!isfinite(x[k])) {
                    if (first < 0)
                        first = k;
                    bad++;
                }
            if (first >= 0) {
                snprintf(what, len, "'%s' (element %lld is %s; %lld of %lld values non-finite)",
                         it->name, (long long)first, isnan(x[first]) ? "nan" : x[first] > 0 ? "inf" : "-inf",
                         (long long)bad, (long long)n);
                return true;
            }
        }
    return false;
}

void rt_checkpoint_epoch_done(NnqRun *run, int32_t epoch) {
    char what[CKPT_MAX_NAME + 160];
    if (rt_state_nonfinite(run, what, sizeof what))
        nnq_rt_fail(run, "training diverged in epoch %d (by iteration %lld): the first non-finite "
                    "tensor is %s; the last checkpoint and model file are left as they were",
                    epoch, (long long)ck_iteration(run), what);
    if (!run->ckpt_dir)
        return;
    /* every rank stops after the same epoch: the first signal any of them received */
    int sig = rt_mpi_max_i32(run, ck_signal);
    if (!sig)
        return;
    nnq_rt_checkpoint_save(run, epoch, run->epochs);
    rt_progress_keep_metrics(run);
    rt_mpi_barrier(run); /* no rank ends the job (MPI_Abort) before rank 0 has saved */
    nnq_rt_fail(run, "interrupted by %s after epoch %d of %d: checkpoint saved in '%s'; continue "
                "with the same command and --resume %s",
                sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT", epoch, run->epochs, run->ckpt_dir, run->ckpt_dir);
}

static void checkpoint_release(NnqRun *run) {
    ck_handle_signals(false);
    rt_dir_unlock(&run->ckpt_lock);
    free(run->ckpt_desc); /* names and the directory are tracked blocks */
    free(run->ckpt_state);
    free(run->ckpt_names);
    run->ckpt_desc = run->ckpt_state = NULL;
    run->ckpt_names = NULL;
    run->ckpt_ndesc = run->ckpt_nstate = run->ckpt_cap_desc = run->ckpt_cap_state = run->ckpt_names_cap = 0;
}

/* ---- the directory ---- */

void nnq_rt_checkpoint_dir(NnqRun *run, const char *dir) {
    if (!dir || !*dir)
        nnq_rt_fail(run, "checkpoint: empty directory name");
    char *d = rt_strdup(run, dir);
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/')
        d[--n] = 0;
    if (run->rank > 0) { /* rank 0 writes the checkpoints; the others only stop with it */
        run->ckpt_dir = d;
        rt_on_release(run, checkpoint_release); /* restores the signal handlers */
        ck_handle_signals(true);
        return;
    }
    nnq_make_dirs(run, d, "checkpoint directory");
    if (access(d, W_OK | X_OK) != 0)
        nnq_rt_fail(run, "cannot write checkpoints to '%s': %s", d, strerror(errno));
    /* one run a directory: two saving into one took turns whole, but a resume then took
     * whichever saved last, the other run's state where the program was the same */
    run->ckpt_lock = rt_dir_lock(d, false);
    if (run->ckpt_lock < 0) {
        run->ckpt_lock = 0;
        nnq_rt_fail(run, "checkpoint directory '%s' is in use by another run", d);
    }
    run->ckpt_dir = d;
    rt_on_release(run, checkpoint_release); /* restores the signal handlers */
    ck_handle_signals(true);
}

/* ---- writing ---- */

static void wr_str(RtWriter *w, const char *s) {
    size_t n = strlen(s);
    rt_wr_u32(w, (uint32_t)n);
    rt_wr_bytes(w, s, n);
}

/* The whole file's size, CRC included. */
static uint64_t ck_size(const NnqRun *run) {
    uint64_t size = CKPT_HEADER + 4 + 4 + 4;
    for (int32_t i = 0; i < run->ckpt_ndesc; i++)
        size += 4 + strlen(run->ckpt_desc[i].name) + 8;
    for (int32_t i = 0; i < run->ckpt_nstate; i++)
        size += 4 + strlen(run->ckpt_state[i].name) + 8 + (uint64_t)run->ckpt_state[i].value;
    return size;
}

void nnq_rt_checkpoint_save(NnqRun *run, int32_t epoch, int32_t epochs) {
    if (!run->ckpt_dir)
        nnq_rt_fail(run, "checkpoint_save: no checkpoint directory (nnq_rt_checkpoint_dir)");
    if (run->rank > 0) /* the state is the same on every rank: rank 0 saves it */
        return;
    const char *dir = run->ckpt_dir;
    size_t n = strlen(dir);
    char *path = rt_alloc_block(run, (int64_t)(n + sizeof CKPT_FILE + 1), false);
    snprintf(path, n + sizeof CKPT_FILE + 1, "%s/%s", dir, CKPT_FILE);

    RtWriter w;
    rt_wr_open(run, &w, path, "cannot write checkpoint");
    rt_wr_bytes(&w, CKPT_MAGIC, 4);
    rt_wr_u32(&w, CKPT_VERSION);
    rt_wr_u64(&w, ck_size(run));
    rt_wr_u32(&w, (uint32_t)epoch);
    rt_wr_u32(&w, (uint32_t)epochs);
    for (int i = 0; i < 4; i++)
        rt_wr_u64(&w, run->rng[i]);
    rt_wr_u32(&w, (uint32_t)run->ckpt_ndesc);
    for (int32_t i = 0; i < run->ckpt_ndesc; i++) {
        wr_str(&w, run->ckpt_desc[i].name);
        rt_wr_u64(&w, (uint64_t)run->ckpt_desc[i].value);
    }
    rt_wr_u32(&w, (uint32_t)run->ckpt_nstate);
    for (int32_t i = 0; i < run->ckpt_nstate; i++) {
        wr_str(&w, run->ckpt_state[i].name);
        rt_wr_u64(&w, (uint64_t)run->ckpt_state[i].value);
        rt_wr_bytes(&w, run->ckpt_state[i].p, (size_t)run->ckpt_state[i].value);
    }
    rt_wr_commit(&w);
}

/* ---- reading ---- */

static bool str_is(const char *s, uint32_t len, const char *name) {
    return strlen(name) == len && memcmp(s, name, len) == 0;
}

/* The description and state list after the header. With copy false: checks them against
 * the run's declarations (message in r->err); with copy true: restores the state (the
 * file has been checked). */
static bool ck_walk(NnqRun *run, RtReader *r, bool copy) {
    uint32_t n;
    if (!rt_rd_u32(r, &n, "description count"))
        return false;
    for (uint32_t i = 0; i < n || (int32_t)i < run->ckpt_ndesc; i++) {
        const RtCkptItem *mine = (int32_t)i < run->ckpt_ndesc ? &run->ckpt_desc[i] : NULL;
        const char *s = NULL;
        uint32_t len = 0;
        uint64_t v = 0;
        if (i < n && (!rt_rd_str(r, &s, &len, CKPT_MAX_NAME, "description") ||
                      !rt_rd_u64(r, &v, "description value")))
            return false;
        if (copy)
            continue;
        char shown[4 * 64 + 4];
        if (!mine) {
            snprintf(r->err, r->errlen,
                     "was written by a different program: it has '%s', this program does not",
                     rt_printable(s, len, 64, shown, sizeof shown));
            return false;
        }
        if (i >= n) {
            snprintf(r->err, r->errlen,
                     "was written by a different program: this program has '%s', the "
                     "checkpoint does not",
                     mine->name);
            return false;
        }
        if (!str_is(s, len, mine->name)) {
            snprintf(r->err, r->errlen,
                     "was written by a different program: it has '%s' where this program "
                     "has '%s'",
                     rt_printable(s, len, 64, shown, sizeof shown), mine->name);
            return false;
        }
        if ((int64_t)v != mine->value) {
            snprintf(r->err, r->errlen,
                     "was written by a different program: %s %lld there, %lld here", mine->name,
                     (long long)(int64_t)v, (long long)mine->value);
            return false;
        }
    }
    if (!rt_rd_u32(r, &n, "state count"))
        return false;
    for (uint32_t i = 0; i < n || (int32_t)i < run->ckpt_nstate; i++) {
        const RtCkptItem *mine = (int32_t)i < run->ckpt_nstate ? &run->ckpt_state[i] : NULL;
        const char *s = NULL;
        uint32_t len = 0;
        uint64_t bytes = 0;
        if (i < n && (!rt_rd_str(r, &s, &len, CKPT_MAX_NAME, "state name") ||
                      !rt_rd_u64(r, &bytes, "state size") || !rt_rd_need(r, bytes, "state")))
            return false;
        if (copy) {
            memcpy(mine->p, r->p + r->pos, (size_t)bytes);
        } else if (!mine || i >= n || !str_is(s, len, mine->name) ||
                   bytes != (uint64_t)mine->value) {
            char there[4 * 40 + 64], here[64], shown[4 * 40 + 4];
            if (i < n)
                snprintf(there, sizeof there, "'%s' (%llu bytes)",
                         rt_printable(s, len, 40, shown, sizeof shown), (unsigned long long)bytes);
            else
                snprintf(there, sizeof there, "nothing");
            if (mine)
                snprintf(here, sizeof here, "'%.40s' (%lld bytes)", mine->name,
                         (long long)mine->value);
            else
                snprintf(here, sizeof here, "nothing");
            snprintf(r->err, r->errlen,
                     "was written by a different program: its state %u is %s, this program's "
                     "is %s",
                     i + 1, there, here);
            return false;
        }
        r->pos += (size_t)bytes;
    }
    if (r->pos != r->end) {
        rt_rd_error(r, "%zu bytes left over before the CRC", r->end - r->pos);
        return false;
    }
    return true;
}

/* Checks the mapped file and, when it is good and at most `epochs` epochs in, restores
 * the state; returns the epoch, or -1 with a message (to follow the path) in err. */
static int64_t ck_load(NnqRun *run, const unsigned char *p, size_t size, int32_t epochs, char *err,
                       size_t errlen) {
    if (size < 4 || memcmp(p, CKPT_MAGIC, 4) != 0) {
        snprintf(err, errlen, "is not an nnq checkpoint (no \"NNQC\" magic)");
        return -1;
    }
    if (size < CKPT_HEADER) {
        snprintf(err, errlen, "is truncated: %zu bytes, shorter than the header", size);
        return -1;
    }
    uint32_t version = rt_le32(p + 4);
    if (version != CKPT_VERSION) {
        snprintf(err, errlen, "has format version %u; this nnqc reads version %u", version,
                 CKPT_VERSION);
        return -1;
    }
    uint64_t want = rt_le64(p + 8);
    if (want != size) {
        if (size < want)
            snprintf(err, errlen, "is truncated: %zu bytes, the header says %llu", size,
                     (unsigned long long)want);
        else
            snprintf(err, errlen, "is corrupt: %zu bytes, the header says %llu", size,
                     (unsigned long long)want);
        return -1;
    }
    if (size < CKPT_HEADER + 4 + 4 + 4) {
        snprintf(err, errlen, "is corrupt: %zu bytes is too short", size);
        return -1;
    }
    uint32_t stored = rt_le32(p + size - 4);
    uint32_t crc = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), p, size - 4);
    if (crc != stored) {
        snprintf(err, errlen, "is corrupt: CRC-32 %08x, the file says %08x", crc, stored);
        return -1;
    }
    RtReader r = {.p = p,
                  .pos = CKPT_HEADER,
                  .end = size - 4,
                  .kind = "is corrupt",
                  .err = err,
                  .errlen = errlen};
    if (!ck_walk(run, &r, false))
        return -1;
    uint32_t epoch = rt_le32(p + 16);
    if (epoch > (uint32_t)epochs) {
        snprintf(err, errlen,
                 "was written after epoch %u, but this run has %d epoch%s (--epochs trains "
                 "longer)",
                 epoch, epochs, epochs == 1 ? "" : "s");
        return -1;
    }
    r.pos = CKPT_HEADER;
    ck_walk(run, &r, true);
    for (int i = 0; i < 4; i++)
        run->rng[i] = rt_le64(p + 24 + 8 * i);
    return epoch;
}

int32_t nnq_rt_checkpoint_resume(NnqRun *run, int32_t epochs) {
    const char *from = run->opts.resume_dir;
    if (!from) {
        /* a fresh state not finite: a projection's init or weight gave inf or nan, which
         * the epoch's end reported as a divergence (relu turns nan into 0, and the loss
         * stayed finite) */
        char bad[CKPT_MAX_NAME + 160];
        if (rt_state_nonfinite(run, bad, sizeof bad))
            nnq_rt_fail(run, "training cannot start: the initial state is not finite: the first non-finite "
                        "tensor is %s (from its projection's init or weight)", bad);
        return 0;
    }
    /* DIR holding checkpoint.nnqc, or the file itself */
    struct stat st;
    const char *path = from;
    if (stat(from, &st) != 0 || S_ISDIR(st.st_mode)) {
        size_t n = strlen(from);
        char *p = rt_alloc_block(run, (int64_t)(n + sizeof CKPT_FILE + 1), false);
        snprintf(p, n + sizeof CKPT_FILE + 1, "%s/%s", from, CKPT_FILE);
        path = p;
    }
    char err[1024] = "";
    size_t size;
    unsigned char *buf = rt_slurp(path, "checkpoint", &size, err, sizeof err);
    if (!buf)
        nnq_rt_fail(run, "cannot resume from '%s': %s", from, err);
    int64_t epoch = -1;
    if (size == 0)
        snprintf(err, sizeof err, "is truncated: the file is empty");
    else
        epoch = ck_load(run, buf, size, epochs, err, sizeof err);
    free(buf);
    if (epoch < 0)
        nnq_rt_fail(run, "checkpoint '%s' %s", path, err);
    rt_progress_resumed(run, epoch);
    if (!run->opts.quiet) {
        if (epoch == epochs)
            printf("note: checkpoint '%s' is from the end of training (epoch %lld of %d): "
                   "nothing left to train\n",
                   path, (long long)epoch, epochs);
        else
            printf("note: resuming from checkpoint '%s' after epoch %lld of %d\n", path,
                   (long long)epoch, epochs);
        fflush(stdout);
    }
    return (int32_t)epoch;
}
