/* parallel.c — the one pool of threads that owns the cores. Everything that runs in
 * parallel runs on it: the runtime's convolutions (per chunk of samples: im2col, GEMM and
 * col2im of a chunk on one thread, its columns in that thread's scratch), large GEMMs
 * (split into fixed blocks, gemm.c), pooling and generated code's independent loops
 * (nnq_rt_parallel_for). OpenBLAS itself is kept single-threaded (set once here), and
 * oneDNN's OpenMP to one thread on each thread that calls it (conv_dnnl.c), so no second
 * pool spins against this one; a job started from inside a job runs inline.
 *
 * A job is a range [0, n) of independent items (samples, planes, elements) cut into
 * one contiguous part per thread; the caller and the workers claim parts until none is
 * left, and the caller waits only for parts already being run. A job of fewer parts than
 * threads is claimed by the caller and workers 1..parts-1 alone: the other workers see
 * it and go back to waiting without taking the pool's lock. Each item is always
 * computed whole by one thread, in the same order, so results do not depend on the
 * number of threads or on who ran which part. Between jobs a worker spins for up to
 * 0.2 ms, timed (the next job of a training step usually comes sooner: with 20 us, one
 * job in five of a LeNet-5 run found its worker asleep and paid for waking it, and
 * whole runs took 3% longer), then sleeps on a condition variable; the caller likewise
 * while waiting for the last part. After its first 20 us a spin yields its CPU between
 * checks (sched_yield), which costs nothing where the CPU is idle and gives it away where
 * another process wants it: two runs side by side on 2 CPUs, 2 threads each, trained
 * the flagship's two epochs in 1.8-1.9 s each while spinning, 1.1-1.2 s yielding (as
 * fast as one thread each), alone unchanged. With more threads than the process has
 * CPUs nobody spins (pool_spin_ns). Workers start on first
 * use. Jobs come from one thread at a time (generated code
 * is single-threaded); a job's parts may call rt_parallel_for again, which then runs the
 * whole range inline on that thread.
 *
 * Scratch: each thread (the caller is thread 0, workers 1..) has a 64-byte aligned
 * buffer reserved before training (rt_parallel_reserve), which kernels reach through
 * rt_thread_scratch(); one shared buffer serves per-job partial results. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <stdio.h>

#include <cblas.h>

#include "rt_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static unsigned fp_mode(void) { return _mm_getcsr(); }
static void set_fp_mode(unsigned m) { _mm_setcsr(m); }
static void cpu_relax(void) { _mm_pause(); }
#else
static unsigned fp_mode(void) { return 0; }
static void set_fp_mode(unsigned m) { (void)m; }
static void cpu_relax(void) {}
#endif

#define RT_MAX_THREADS NNQ_MAX_THREADS
#define RT_PART_ALIGN 64
#define RT_SPIN_NS 200000 /* how long a thread spins before it sleeps: 0.2 ms */
#define RT_SPIN_POLITE_NS 20000 /* after this much of it, the spin yields its CPU between checks */

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static int pool_threads;    /* threads a job may use, the caller included; 0: not set */
/* How long a waiting thread spins: RT_SPIN_NS, or none where the pool has more threads
 * than the process has CPUs (--threads 8 on 2): a spinning thread then holds a CPU a
 * working one needs (as libgomp stops spinning when oversubscribed). */
static int64_t pool_spin_ns = RT_SPIN_NS;
static int64_t pool_min_cap; /* > 0: caps every job's min_items (tests split tiny jobs) */
static int pool_workers;    /* worker threads started */
static uint64_t pool_generation; /* the current job */
static RtRangeFn job_fn;
static void *job_ctx;
static int64_t job_n;
static int job_parts;
static int job_next;        /* the next part to claim */
static int job_active;      /* parts claimed and not finished */
static int64_t job_align;   /* parts start at multiples of this */
static int pool_sleepers;   /* workers blocked on pool_wake */
static bool caller_waiting; /* the caller blocked on pool_done */
static unsigned job_fp_mode; /* the caller's MXCSR: workers compute as it does */
static _Thread_local int thread_index;  /* 0: the caller; workers 1.. */
static _Thread_local bool in_job;       /* running a part: nested jobs run inline */
static float *scratch[RT_MAX_THREADS];  /* per thread index */
static int64_t scratch_floats;          /* each scratch[i] holds this many (0: none) */
static float *shared_scratch;
static int64_t shared_floats;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS computes on the calling thread only: this pool decides what runs where. Its
 * own threads, which it starts when it loads, are stopped: told one thread, they would
 * still spin in sched_yield for their first 0.1-0.2 s, a CPU taken from compilation.
 * blas_thread_shutdown_ is OpenBLAS's (pthreads builds; its OpenMP builds have it too);
 * another BLAS lacks it and has nothing to stop. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static void blas_single_thread(void) {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

/* Where part `part` of `parts` starts. Jobs of at least RT_PART_ALIGN items per part cut
 * at multiples of RT_PART_ALIGN: a vectorized loop body then leaves the same items to
 * its scalar remainder whatever the thread count, and SIMD and scalar math functions
 * (exp, log) do not round alike. */
static int64_t part_start(int64_t n, int part, int parts, int64_t align) {
    if (part >= parts) return n;
    int64_t at = n * part / parts / align * align;
    return at < n ? at : n;
}

/* Claims and runs parts of job `gen` until none is left. Called and returns with pool_mu
 * held. Parts are claimed, not assigned: when a worker is slow to wake (a loaded
 * machine), the caller runs its part instead of waiting for it. A part is a fixed range
 * whoever runs it, so results stay the same. */
static void work(uint64_t gen, bool worker) {
    while (pool_generation == gen && job_next < job_parts) {
        int part = job_next++;
        __atomic_add_fetch(&job_active, 1, __ATOMIC_RELAXED);
        RtRangeFn fn = job_fn;
        void *ctx = job_ctx;
        int64_t n = job_n;
        int parts = job_parts;
        unsigned mode = job_fp_mode;
        pthread_mutex_unlock(&pool_mu);
        if (worker)
            set_fp_mode(mode);
        int64_t begin = part_start(n, part, parts, job_align), end = part_start(n, part + 1, parts, job_align);
        in_job = true;
        if (begin < end)
            fn(ctx, begin, end);
        in_job = false;
        pthread_mutex_lock(&pool_mu);
        if (__atomic_sub_fetch(&job_active, 1, __ATOMIC_RELEASE) == 0 && job_next >= job_parts && caller_waiting)
            pthread_cond_broadcast(&pool_done);
    }
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A spin's clock: spin_start gives its end (pool_spin_ns from now) and when it turns
 * polite (RT_SPIN_POLITE_NS from now); spin_on, after each round of checks, yields the
 * CPU once polite and says whether the spin goes on. Timed, since a pause instruction
 * takes from about 10 to over 50 ns depending on the CPU. */
static int64_t spin_start(int64_t *polite) {
    int64_t now = mono_ns();
    *polite = now + RT_SPIN_POLITE_NS;
    return now + __atomic_load_n(&pool_spin_ns, __ATOMIC_RELAXED);
}

static bool spin_on(int64_t polite, int64_t end) {
    int64_t now = mono_ns();
    if (now >= polite)
        sched_yield();
    return now < end;
}

/* Spins while *p == v; true when *p changed. */
static bool spin_while_eq(const uint64_t *p, uint64_t v) {
    int64_t polite, end = spin_start(&polite);
    do
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(p, __ATOMIC_ACQUIRE) != v) return true;
            cpu_relax();
        }
    while (spin_on(polite, end));
    return false;
}

/* The same while *p > 0. */
static bool spin_while_positive(const int *p) {
    int64_t polite, end = spin_start(&polite);
    do
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(p, __ATOMIC_ACQUIRE) <= 0) return true;
            cpu_relax();
        }
    while (spin_on(polite, end));
    return false;
}

static void *worker_main(void *arg) {
    thread_index = (int)(intptr_t)arg;
    /* SIGINT, SIGTERM and SIGHUP go to the thread that handles them (checkpoint.c) */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    uint64_t seen = 0;
    for (;;) {
        /* a short spin first: the next job of a training step usually comes sooner */
        if (spin_while_eq(&pool_generation, seen)) {
            /* A job of fewer parts than threads is claimed by the caller and workers
             * 1..parts-1: the others stay out of the pool's lock (on 16 cores a dense
             * layer's 4 blocks woke 15 workers, each taking the lock). Read without the
             * lock, job_parts may already be the next job's; the claims, under the lock,
             * stay right either way (a part no worker takes, the caller runs). */
            uint64_t gen = __atomic_load_n(&pool_generation, __ATOMIC_ACQUIRE);
            if (thread_index >= __atomic_load_n(&job_parts, __ATOMIC_ACQUIRE) &&
                __atomic_load_n(&pool_generation, __ATOMIC_ACQUIRE) == gen) {
                seen = gen;
                continue;
            }
        }
        pthread_mutex_lock(&pool_mu);
        while (pool_generation == seen) {
            pool_sleepers++;
            pthread_cond_wait(&pool_wake, &pool_mu);
            pool_sleepers--;
        }
        seen = pool_generation;
        work(seen, true);
        pthread_mutex_unlock(&pool_mu);
    }
    return NULL;
}

/* threads <= 0: every CPU this process may use (usable, cgroup.c); at most RT_MAX_THREADS. */
static int resolve_threads(int threads, int usable) {
    if (threads <= 0)
        threads = usable;
    return threads > RT_MAX_THREADS ? RT_MAX_THREADS : threads;
}

/* pool_threads, set to the default first where no count was set; pool_mu held. */
static int pool_threads_locked(void) {
    if (pool_threads == 0)
        pool_threads = resolve_threads(0, nnq_cpus_usable());
    return pool_threads;
}

void rt_parallel_set_threads(int threads) {
    int usable = nnq_cpus_usable();
    threads = resolve_threads(threads, usable);
    int64_t spin = threads > usable ? 0 : RT_SPIN_NS;
    pthread_mutex_lock(&pool_mu);
    pool_threads = threads;
    __atomic_store_n(&pool_spin_ns, spin, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&pool_mu);
}

int64_t rt_parallel_spin_ns(void) {
    return __atomic_load_n(&pool_spin_ns, __ATOMIC_RELAXED);
}

int rt_parallel_threads(void) {
    pthread_mutex_lock(&pool_mu);
    int threads = pool_threads_locked();
    pthread_mutex_unlock(&pool_mu);
    return threads;
}

void rt_parallel_set_min_items_cap(int64_t cap) {
    pthread_mutex_lock(&pool_mu);
    pool_min_cap = cap;
    pthread_mutex_unlock(&pool_mu);
}

void rt_parallel_init(void) { pthread_once(&blas_once, blas_single_thread); }

bool rt_parallel_reserve(int64_t per_thread, int64_t shared) {
    rt_parallel_init();
    pthread_mutex_lock(&pool_mu);
    pool_threads_locked();
    /* every thread that may claim a part: the set number, and workers started before */
    int threads = pool_threads > pool_workers + 1 ? pool_threads : pool_workers + 1;
    pthread_mutex_unlock(&pool_mu);
    if (per_thread > scratch_floats) {
        for (int i = 0; i < RT_MAX_THREADS; i++) {
            free(scratch[i]);
            scratch[i] = NULL;
        }
        scratch_floats = per_thread;
    }
    for (int i = 0; i < threads && scratch_floats > 0; i++)
        if (!scratch[i] && posix_memalign((void **)&scratch[i], 64, sizeof(float) * (size_t)scratch_floats)) {
            scratch[i] = NULL;
            return false;
        }
    if (shared > shared_floats) {
        free(shared_scratch);
        shared_scratch = NULL;
        shared_floats = 0;
        if (posix_memalign((void **)&shared_scratch, 64, sizeof(float) * (size_t)shared)) {
            shared_scratch = NULL;
            return false;
        }
        shared_floats = shared;
    }
    return true;
}

float *rt_thread_scratch(int64_t floats) {
    float *s = scratch[thread_index];
    if (floats > scratch_floats || !s) {
        fprintf(stderr, "nnq: internal error: %lld floats of scratch asked, %lld reserved\n",
                (long long)floats, (long long)(s ? scratch_floats : 0));
        abort();
    }
    return s;
}

float *rt_shared_scratch(int64_t floats) {
    if (floats > shared_floats) {
        fprintf(stderr, "nnq: internal error: %lld floats of shared scratch asked, %lld reserved\n",
                (long long)floats, (long long)shared_floats);
        abort();
    }
    return shared_scratch;
}

void rt_parallel_for(int64_t n, int64_t min_items, RtRangeFn fn, void *ctx) {
    if (in_job) { /* a part of a job: this thread runs the whole range */
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool_mu);
    pool_threads_locked();
    if (pool_min_cap > 0 && min_items > pool_min_cap)
        min_items = pool_min_cap;
    int64_t most = n / (min_items < 1 ? 1 : min_items);
    int parts = most < pool_threads ? (int)most : pool_threads;
    if (parts <= 1) {
        pthread_mutex_unlock(&pool_mu);
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    while (pool_workers < parts - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)(pool_workers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* the caller claims whatever no worker does */
        pool_workers++;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    __atomic_store_n(&job_parts, parts, __ATOMIC_RELAXED); /* workers read it unlocked */
    job_align = min_items >= RT_PART_ALIGN ? RT_PART_ALIGN : 1;
    job_next = 0;
    job_active = 0;
    job_fp_mode = fp_mode();
    uint64_t gen = __atomic_add_fetch(&pool_generation, 1, __ATOMIC_RELEASE);
    if (pool_sleepers > 0)
        pthread_cond_broadcast(&pool_wake);
    work(gen, false);
    while (job_active > 0) { /* parts still running on workers: spin briefly, then sleep */
        pthread_mutex_unlock(&pool_mu);
        spin_while_positive(&job_active);
        pthread_mutex_lock(&pool_mu);
        if (job_active > 0) {
            caller_waiting = true;
            pthread_cond_wait(&pool_done, &pool_mu);
            caller_waiting = false;
        }
    }
    pthread_mutex_unlock(&pool_mu);
}

void nnq_rt_parallel_for(int64_t n, int64_t min_items, void (*fn)(void *ctx, int64_t begin, int64_t end),
                         void *ctx) {
    rt_parallel_for(n, min_items, fn, ctx);
}

int64_t nnq_rt_cache_floats(int32_t divisor) {
    long b = sysconf(_SC_LEVEL2_CACHE_SIZE); /* glibc: a value read at start-up, cheap */
    int64_t l2 = b > 0 ? b : (int64_t)1 << 20, f = l2 / 4 / (divisor > 0 ? divisor : 1);
    return f < 4096 ? 4096 : f;
}
