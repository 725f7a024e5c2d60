/* mpi.c — data-parallel training over MPI: the process group, and the few collectives
 * generated code and the other runtime modules call.
 *
 * Requires: an MPI-3 library (Open MPI or MPICH; standard calls only), used only when the
 * process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx) or when
 * NNQ_MPI=1; NNQ_MPI=0 turns it off. Started any other way, MPI is never initialized,
 * nnq_rt_world_size is 1 and every function here returns at once: no cost, same results.
 * Provides: rank and size (process-wide, like MPI itself), the start-up agreement
 * (program fingerprint, seed, batch), the gradient all-reduce, the batch-norm sums,
 * sums of doubles, each rank's part of a range, and the failure path.
 *
 * Invariants:
 *  - Only the thread that runs the program calls MPI (MPI_THREAD_FUNNELED); the pool's
 *    workers never do.
 *  - Every rank makes the same collective calls in the same order: generated code calls
 *    them at the same points of the same program, and the start-up check refuses ranks
 *    whose programs, seeds or epochs differ before any other collective.
 *  - Replicas stay identical: every rank gets the same all-reduced bits (one
 *    MPI_Allreduce of a fixed size in a fixed order per step; its algorithm is chosen by
 *    size and process count only) and applies the same updates to the same state.
 *  - A rank that fails (nnq_rt_fail) ends the job: nnq_run_free calls MPI_Abort after the
 *    run's resources are released, so no other rank waits in a collective for it. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <mpi.h>

#include "rt_internal.h"

static struct {
    bool on;          /* MPI_Init was called by us */
    int rank, size;   /* 0 and 1 without MPI */
    int local_size;   /* ranks on this node */
    float *pack;      /* the gradients of all parameters, contiguous */
    int64_t pack_len;
} world = {.size = 1, .local_size = 1};

static const char *const launcher_vars[] = {
    "OMPI_COMM_WORLD_SIZE", /* Open MPI's mpirun */
    "PMIX_RANK",            /* PMIx launchers (Open MPI 4+, Slurm with --mpi=pmix) */
    "PMI_SIZE",             /* MPICH's Hydra, Slurm with PMI-2 */
    "PMI_RANK",
    "MPI_LOCALNRANKS",      /* MPICH's Hydra */
};

static bool launched_by_mpi(void) {
    const char *force = getenv("NNQ_MPI");
    if (force && *force) return strcmp(force, "0") != 0;
    for (size_t i = 0; i < sizeof launcher_vars / sizeof *launcher_vars; i++)
        if (getenv(launcher_vars[i])) return true;
    return false;
}

static void mpi_finalize_at_exit(void) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

static void mpi_release(NnqRun *run);

void rt_mpi_init(NnqRun *run) {
    rt_on_release(run, mpi_release); /* first registered: released last, after everything else */
    if (!world.on && launched_by_mpi()) {
        int inited = 0, provided = 0;
        MPI_Initialized(&inited);
        if (!inited) {
            MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
            atexit(mpi_finalize_at_exit);
        }
        world.on = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world.size);
        MPI_Comm local;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world.rank, MPI_INFO_NULL, &local);
        MPI_Comm_size(local, &world.local_size);
        MPI_Comm_free(&local);
    }
    run->rank = world.rank;
    run->nranks = world.size;
    if (world.rank > 0) {
        /* rank 0 speaks for the job: progress, metrics, profile */
        run->opts.quiet = true;
        run->opts.progress = 0;
        run->opts.profile = false;
        free((char *)run->opts.metrics_path);
        run->opts.metrics_path = NULL;
    }
}

/* The pool's threads when --threads is not given: 0 (nnq_cpus_usable) without MPI; with
 * it, the CPUs this process may use (within its cgroup's quota), shared by the ranks on
 * this node unless the launcher bound each rank to its own CPUs already (Open MPI binds
 * to cores by default). */
int32_t rt_mpi_threads(void) {
    if (world.size <= 1) return 0;
    bool bound;
    int cpus = rt_cpus_usable(&bound); /* the mask, within the cgroup's quota */
    if (!bound && world.local_size > 1) cpus /= world.local_size; /* not bound: shared */
    return cpus > 0 ? cpus : 1;
}

static void mpi_release(NnqRun *run) {
    free(world.pack);
    world.pack = NULL;
    world.pack_len = 0;
    if (run->failed && world.size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

int32_t nnq_rt_world_size(NnqRun *run) { return run->nranks; }

int nnq_run_rank(const NnqRun *run) { return run->rank; }

/* lo[i], hi[i]: the least and the largest of every rank's v[i] (two all-reduces). */
static void range_over_ranks(const long long *v, long long *lo, long long *hi, int n) {
    MPI_Allreduce(v, lo, n, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(v, hi, n, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
}

/* Every rank must run the same program (fingerprint: its code), with the same seed and
 * epochs, and the global batch must split evenly. Checked with two all-reduces (min and
 * max of each value): every rank learns the same verdict, so every rank fails alike. */
void nnq_rt_mpi_start(NnqRun *run, int64_t fingerprint, int64_t batch, int64_t seed, int32_t epochs) {
    if (run->nranks <= 1) return;
    if (batch % run->nranks != 0)
        nnq_rt_fail(run, "%d processes cannot share the batch of %lld evenly: run a number of processes that "
                    "divides it (the batch in the program is the global batch)",
                    run->nranks, (long long)batch);
    long long mine[4] = {(long long)fingerprint, (long long)seed, epochs, batch}, lo[4], hi[4];
    range_over_ranks(mine, lo, hi, 4);
    static const char *const what[4] = {"programs (or compiler options)", "seeds", "epoch counts", "batches"};
    for (int i = 0; i < 4; i++)
        if (lo[i] != hi[i])
            nnq_rt_fail(run, "the %d processes run different %s: every rank must run the same command "
                        "(rank %d: %lld; the ranks range from %lld to %lld)",
                        run->nranks, what[i], run->rank, mine[i], lo[i], hi[i]);
}

/* The gradients of all n parameters: summed over the ranks and divided by their count
 * (each rank's are the mean over its part of the batch, so this is the mean over the
 * global batch), in one all-reduce of one contiguous buffer. */
void nnq_rt_mpi_grads(NnqRun *run, float *const *grads, const int64_t *counts, int32_t n) {
    if (run->nranks <= 1) return;
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) total += counts[i];
    if (total > world.pack_len) {
        free(world.pack);
        world.pack = aligned_alloc(64, (size_t)((total + 15) / 16 * 64));
        if (!world.pack) nnq_rt_fail(run, "out of memory for the gradient buffer (%lld floats)", (long long)total);
        world.pack_len = total;
    }
    float *p = world.pack;
    for (int32_t i = 0; i < n; i++) {
        memcpy(p, grads[i], (size_t)counts[i] * sizeof(float));
        p += counts[i];
    }
    for (int64_t done = 0; done < total;) { /* MPI counts are ints */
        int part = total - done > (1 << 30) ? (1 << 30) : (int)(total - done);
        MPI_Allreduce(MPI_IN_PLACE, world.pack + done, part, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        done += part;
    }
    float scale = 1.0f / (float)run->nranks;
    p = world.pack;
    for (int32_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < counts[i]; k++) grads[i][k] = p[k] * scale;
        p += counts[i];
    }
}

void nnq_rt_bn_run(void (*body)(void *ctx, int64_t begin, int64_t end), int64_t channels, int64_t min_items,
                   int64_t *ctx, float *sum1, float *sum2, int32_t grad) {
    if (world.size <= 1) {
        rt_parallel_for(channels, min_items, body, ctx);
        return;
    }
    int64_t flags = ctx[4];
    for (int64_t stage = 1; stage <= 3; stage++) {
        if (grad && stage == 2) continue;
        ctx[4] = flags | stage << 2;
        rt_parallel_for(channels, min_items, body, ctx);
        if (stage == 3) break;
        nnq_rt_phase(NNQ_PHASE_COMM);
        MPI_Allreduce(MPI_IN_PLACE, stage == 1 ? sum1 : sum2, (int)channels, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (grad) MPI_Allreduce(MPI_IN_PLACE, sum2, (int)channels, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        nnq_rt_phase(NNQ_PHASE_NORM);
    }
    ctx[4] = flags;
}

void nnq_rt_sgemm_bn(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha, const float *a,
                     int32_t lda, const float *b, int32_t ldb, float beta, float *c, int32_t ldc,
                     void (*body)(void *ctx, int64_t begin, int64_t end), int64_t min_items, int64_t *ctx, float *sum1,
                     float *sum2, int32_t grad) {
    if (world.size > 1) { /* the batch norm's stages wait on all-reduces: after the whole product */
        nnq_rt_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        nnq_rt_bn_run(body, n, min_items, ctx, sum1, sum2, grad);
        return;
    }
    rt_sgemm_then(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, body, min_items, ctx);
}

double nnq_rt_mpi_sum_f64(NnqRun *run, double v) {
    if (run->nranks <= 1) return v;
    double s = 0;
    MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

void rt_mpi_agree(NnqRun *run, uint64_t value, const char *what, const char *where) {
    if (run->nranks <= 1) return;
    long long mine = (long long)value, lo = 0, hi = 0; /* equal or not: the order does not matter */
    range_over_ranks(&mine, &lo, &hi, 1);
    if (lo != hi)
        nnq_rt_fail(run, "the %d processes read different %s from '%s' (its size or contents differ "
                    "between ranks, or it is missing on some): every rank must read the same files",
                    run->nranks, what, where);
}

void rt_mpi_barrier(NnqRun *run) {
    if (run->nranks > 1) MPI_Barrier(MPI_COMM_WORLD);
}

int32_t rt_mpi_max_i32(NnqRun *run, int32_t v) {
    if (run->nranks <= 1) return v;
    int m = 0, in = v;
    MPI_Allreduce(&in, &m, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

/* This rank's part of [0, count): which 0 gives its first item, 1 its number of items.
 * Parts are contiguous, in rank order, and differ in size by at most one. */
int64_t nnq_rt_mpi_part(NnqRun *run, int64_t count, int32_t which) {
    int64_t r = run->rank, s = run->nranks;
    int64_t lo = count * r / s, hi = count * (r + 1) / s;
    return which ? hi - lo : lo;
}
