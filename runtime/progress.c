/* progress.c — what a training run tells its user: header, live bar, per-epoch lines,
 * notes, the final result, the JSON Lines metrics file, and with --profile where the
 * time went (phases.def).
 *
 * Invariants:
 *  - Human-readable output goes to stdout; errors (run.c) to stderr. With
 *    options.quiet only the final "test accuracy" line is printed; ranks other than 0 of
 *    an MPI job print nothing but errors.
 *  - The live bar is drawn only when enabled (options.progress 1, or -1 with stdout a
 *    terminal), at most ~10 times a second, always on one line rewritten with '\r';
 *    bar_width records what is on the line so that the next regular line (or an error)
 *    first erases it (or ends it).
 *  - The metrics file is written as PATH.tmp, one JSON object per line, flushed per
 *    line; nnq_rt_train_end (or nnq_run_free) fsyncs it and renames it to PATH. The run
 *    holds a lock on PATH.tmp until then: a second run given the same PATH stops at once. PATH
 *    only ever holds whole lines: a run's complete record, or the record of the epochs
 *    a failed or interrupted run finished (a divergence is diagnosed from it); a run
 *    that failed before its first line, or on writing the file, leaves PATH as it was.
 *    Where PATH is a symbolic link, the file it names is written so; where it is no file
 *    (/dev/stdout, a pipe: nnq_output_dest), the lines go to it as they come, no .tmp, no lock.
 *  - --resume continues the record: the new file starts with the epoch lines 1..E of
 *    the earlier one (PATH.tmp when a killed run left one, else PATH), E being the
 *    checkpoint's epoch, so no epoch appears twice.
 *  - Values < 0 (and non-finite values) mean "not evaluated": omitted from the line and
 *    written as null in JSON. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rt_internal.h"

/* ---- metrics file ---- */

/* A whole file as a NUL-terminated malloc'd string; NULL when it cannot be read. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static void progress_release(NnqRun *run);

bool rt_progress_open(NnqRun *run) {
    rt_on_release(run, progress_release);
    run->bar_enabled = !run->opts.quiet &&
                       (run->opts.progress == 1 ||
                        (run->opts.progress == -1 && isatty(STDOUT_FILENO)));
    const char *path = run->opts.metrics_path;
    if (!path || !*path)
        return true;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* the rename at the end would fail */
        fprintf(stderr, "nnqc: error: cannot write metrics file '%s': it is a directory\n", path);
        return false;
    }
    char *real;
    if (nnq_output_dest(path, &real) == NNQ_DEST_STREAM) { /* /dev/stdout, a pipe: the lines as they come */
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        run->metrics = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!run->metrics) {
            fprintf(stderr, "nnqc: error: cannot write metrics file '%s': %s\n", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return false;
        }
        return true;
    }
    if (real) { /* a link: the file it names is replaced, the link stays */
        free((char *)run->opts.metrics_path);
        run->opts.metrics_path = path = real;
    }
    run->metrics_tmp = rt_tmp_name(malloc(strlen(path) + 5), path);
    if (!run->metrics_tmp) {
        fprintf(stderr, "nnqc: error: out of memory\n");
        return false;
    }
    if (run->opts.resume_dir) { /* read before the .tmp is truncated */
        run->metrics_history = read_text(run->metrics_tmp);
        if (!run->metrics_history)
            run->metrics_history = read_text(path);
    }
    /* locked for the whole run (flock, released as it is closed, after its rename): a
     * second run given the same PATH stops here, where it used to truncate the first
     * one's .tmp and write its lines into it */
    int fd = rt_open_tmp_locked(run->metrics_tmp, false);
    if (fd < 0 && errno == EWOULDBLOCK) {
        fprintf(stderr, "nnqc: error: cannot write metrics file '%s': another run is writing '%s'\n",
                path, run->metrics_tmp);
        return false;
    }
    run->metrics = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!run->metrics) {
        fprintf(stderr, "nnqc: error: cannot write metrics file '%s': %s\n", run->metrics_tmp,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    return true;
}

/* Closes and removes the .tmp (after an error). */
static void metrics_discard(NnqRun *run) {
    if (run->metrics) {
        if (run->metrics_tmp)
            unlink(run->metrics_tmp); /* before the close releases the lock */
        fclose(run->metrics);
        run->metrics = NULL;
    }
}

/* fsync, rename, close (the lock is held until the file is in place). false with a
 * message in err on failure (the .tmp is then gone). */
static bool metrics_finish(NnqRun *run, char *err, size_t errlen) {
    FILE *f = run->metrics;
    run->metrics = NULL;
    const char *step = "write";
    bool ok = fflush(f) == 0;
    if (!run->metrics_tmp) { /* a stream: nothing to rename */
        int e = ok ? 0 : errno;
        if (fclose(f) != 0 && ok)
            e = errno, ok = false;
        if (!ok)
            snprintf(err, errlen, "cannot write metrics file '%s': %s", run->opts.metrics_path, strerror(e));
        return ok;
    }
    if (ok) {
        step = "sync";
        ok = fsync(fileno(f)) == 0;
    }
    int saved = errno;
    bool renamed = ok && rename(run->metrics_tmp, run->opts.metrics_path) == 0;
    if (ok && !renamed) {
        saved = errno;
        snprintf(err, errlen, "cannot rename metrics file '%s' to '%s': %s", run->metrics_tmp,
                 run->opts.metrics_path, strerror(saved));
    } else if (!ok) {
        snprintf(err, errlen, "cannot %s metrics file '%s': %s", step, run->metrics_tmp,
                 strerror(saved));
    }
    if (!renamed)
        unlink(run->metrics_tmp);
    if (fclose(f) != 0 && renamed) {
        snprintf(err, errlen, "cannot close metrics file '%s': %s", run->opts.metrics_path,
                 strerror(errno));
        return false;
    }
    return renamed;
}

/* Appends one line to the metrics file; fails the run on an I/O error. */
static void metrics_line(NnqRun *run, const char *line) {
    if (!run->metrics)
        return;
    if (fputs(line, run->metrics) < 0 || fputc('\n', run->metrics) < 0 ||
        fflush(run->metrics) != 0) {
        int saved = errno;
        metrics_discard(run);
        nnq_rt_fail(run, "cannot write metrics file '%s': %s",
                    run->metrics_tmp ? run->metrics_tmp : run->opts.metrics_path, strerror(saved));
    }
}

/* A JSON number, or null for "not evaluated" (< 0) and non-finite values. */
static const char *json_num(char *buf, size_t len, double v) {
    if (!(v >= 0.0) || !isfinite(v))
        return "null";
    snprintf(buf, len, "%.10g", v);
    return buf;
}

void rt_progress_resumed(NnqRun *run, int64_t epoch) {
    char *text = run->metrics_history;
    run->metrics_history = NULL;
    for (char *line = text; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        long long e;
        if (sscanf(line, "{\"epoch\":%lld,", &e) == 1 && e >= 1 && e <= epoch)
            metrics_line(run, line);
        line = eol ? eol + 1 : NULL;
    }
    free(text);
}

void rt_progress_keep_metrics(NnqRun *run) {
    char err[1024];
    if (run->metrics && !metrics_finish(run, err, sizeof err))
        nnq_rt_fail(run, "%s", err);
}

static void progress_release(NnqRun *run) {
    free(run->metrics_history);
    run->metrics_history = NULL;
    /* A run that failed keeps the lines of its finished epochs, each written whole: the
     * record a divergence is diagnosed from, and that --resume continues. One that failed
     * before writing any leaves PATH as it was. */
    if (run->metrics && run->failed && ftell(run->metrics) <= 0) {
        metrics_discard(run);
    } else if (run->metrics) {
        char err[1024];
        if (!metrics_finish(run, err, sizeof err))
            fprintf(stderr, "nnqc: error: %s\n", err);
    }
    free(run->metrics_tmp);
    run->metrics_tmp = NULL;
}

/* ---- the live bar ---- */

/* Erases the bar so that a regular line can be printed in its place. */
static void bar_clear(NnqRun *run) {
    if (run->bar_width > 0) {
        printf("\r%*s\r", run->bar_width, "");
        run->bar_width = 0;
    }
}

void rt_progress_interrupt(NnqRun *run) {
    if (run->bar_width > 0) {
        putchar('\n');
        run->bar_width = 0;
    }
    fflush(stdout);
}

static int digits(int64_t v) {
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

void nnq_rt_progress(NnqRun *run, int32_t epoch, int64_t iter_in_epoch, float loss) {
    double now = rt_now();
    bool last = run->iters_per_epoch > 0 && iter_in_epoch >= run->iters_per_epoch;
    if (last)
        run->iters_end = now;
    if (!run->bar_enabled)
        return;
    if (run->bar_width > 0 && now - run->last_draw < 0.1 && !last)
        return;
    run->last_draw = now;
    char line[256];
    int len;
    int ew = run->epochs > 0 ? digits(run->epochs) : 1;
    if (run->epochs > 0)
        len = snprintf(line, sizeof line, "epoch %*d/%d ", ew, epoch, run->epochs);
    else
        len = snprintf(line, sizeof line, "epoch %d ", epoch);
    int64_t total = run->iters_per_epoch;
    if (total > 0) {
        enum { WIDTH = 30 };
        int64_t done = iter_in_epoch < 0 ? 0 : iter_in_epoch > total ? total : iter_in_epoch;
        int fill = (int)(done * WIDTH / total);
        line[len++] = '[';
        for (int i = 0; i < WIDTH; i++)
            line[len++] = i < fill ? '#' : '.';
        line[len++] = ']';
        len += snprintf(line + len, sizeof line - len, " %*lld/%lld", digits(total),
                        (long long)done, (long long)total);
        double elapsed = now - run->epoch_start;
        if (done > 0 && run->training)
            len += snprintf(line + len, sizeof line - len, "  eta %.0fs",
                            elapsed / (double)done * (double)(total - done));
    } else {
        len += snprintf(line + len, sizeof line - len, " iteration %lld",
                        (long long)iter_in_epoch);
    }
    len += snprintf(line + len, sizeof line - len, "  loss %.4f", loss);
    int pad = run->bar_width > len ? run->bar_width - len : 0;
    printf("\r%s%*s", line, pad, "");
    fflush(stdout);
    run->bar_width = len;
}

/* ---- lines ---- */

/* ---- profile: wall time on the training thread, by phase ---- */

static const char *const phase_label[] = {
#define NNQ_PHASE(name, label, what) label,
#include "phases.def"
#undef NNQ_PHASE
};
static struct {
    bool on;
    int32_t cur;
    double last, total[NNQ_PHASE_COUNT];
    double warm[NNQ_PHASE_COUNT]; /* the totals when the second iteration began */
    double mark[NNQ_PHASE_COUNT]; /* the totals when the latest iteration began */
    int64_t steps; /* entries into the data phase: training iterations */
} prof;

void nnq_rt_phase(int32_t phase) {
    if (!prof.on)
        return;
    double now = rt_now();
    prof.total[prof.cur] += now - prof.last;
    prof.last = now;
    prof.cur = phase >= 0 && phase < NNQ_PHASE_COUNT ? phase : NNQ_PHASE_OTHER;
    if (phase == NNQ_PHASE_DATA) {
        if (++prof.steps == 2)
            memcpy(prof.warm, prof.total, sizeof prof.warm);
        memcpy(prof.mark, prof.total, sizeof prof.mark);
    }
}

static void profile_start(NnqRun *run) {
    memset(&prof, 0, sizeof prof);
    prof.on = run->opts.profile;
    prof.cur = NNQ_PHASE_OTHER;
    prof.last = rt_now();
}

/* The table on stdout and one metrics line:
 * {"profile":true,"iterations":N,"seconds":{"data":S,...},"first_iteration":{...},
 *  "last_iteration":{...},"peak_rss_mib":M}. "ms / iter" is the time from the second
 * iteration's start to the last one's, per iteration: it leaves out the first iteration
 * (and what came before it), which pays for first touches of the program's memory and
 * cold caches, and what follows the last (the final model files and evaluations, which a
 * short run would otherwise spread over its few iterations). "seconds" are whole-run
 * totals, "first_iteration" and "last_iteration" the part of them up to the second
 * iteration's start and up to the last one's. With fewer than three iterations, "ms /
 * iter" runs from the second iteration's start to the end. */
static void profile_report(NnqRun *run) {
    if (!prof.on)
        return;
    nnq_rt_phase(NNQ_PHASE_OTHER);
    prof.on = false;
    double sum = 0;
    for (int p = 0; p < NNQ_PHASE_COUNT; p++)
        sum += prof.total[p];
    if (prof.steps < 2)
        memcpy(prof.warm, (double[NNQ_PHASE_COUNT]){0}, sizeof prof.warm);
    double first = 0;
    for (int p = 0; p < NNQ_PHASE_COUNT; p++)
        first += prof.warm[p];
    int64_t steady = prof.steps > 1 ? prof.steps - 1 : prof.steps;
    const double *end = prof.total; /* where the steady iterations end */
    if (prof.steps >= 3)
        steady = prof.steps - 2, end = prof.mark;
    int threads = rt_parallel_threads();
    printf("profile: %lld training iterations on %d thread%s, %.2fs (the first, with what preceded it, %.3fs)\n"
           "%-12s %9s %7s %18s\n",
           (long long)prof.steps, threads, threads == 1 ? "" : "s", sum, first, "phase", "seconds", "share",
           "ms / later iter");
    for (int p = 0; p < NNQ_PHASE_COUNT; p++)
        printf("%-12s %9.3f %6.1f%% %18.3f\n", phase_label[p], prof.total[p], sum > 0 ? 100 * prof.total[p] / sum : 0,
               steady ? 1e3 * (end[p] - prof.warm[p]) / (double)steady : 0);
    char line[2048];
    size_t len = (size_t)snprintf(line, sizeof line, "{\"profile\":true,\"iterations\":%lld,\"threads\":%d",
                                  (long long)prof.steps, threads);
    const char *part[3] = {"seconds", "first_iteration", "last_iteration"};
    const double *at[3] = {prof.total, prof.warm, prof.steps >= 2 ? prof.mark : prof.warm};
    for (int k = 0; k < 3; k++) {
        len += (size_t)snprintf(line + len, sizeof line - len, ",\"%s\":{", part[k]);
        for (int p = 0; p < NNQ_PHASE_COUNT; p++)
            len += (size_t)snprintf(line + len, sizeof line - len, "%s\"%s\":%.6f", p ? "," : "", phase_label[p],
                                    at[k][p]);
        len += (size_t)snprintf(line + len, sizeof line - len, "}");
    }
    struct rusage ru;
    double rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024 : -1; /* KiB -> MiB */
    printf("peak resident memory: %.1f MiB\n", rss);
    rt_gemm_describe(stdout);
    snprintf(line + len, sizeof line - len, ",\"peak_rss_mib\":%.1f}", rss);
    if (run->metrics)
        metrics_line(run, line);
}

void nnq_rt_train_begin(NnqRun *run, const char *model, int32_t epochs, int64_t iters_per_epoch,
                        int64_t train_count, int64_t val_count, int64_t test_count) {
    if (epochs > 0 && iters_per_epoch < 1) /* a batch is never partial: nothing would train */
        nnq_rt_fail(run,
                    "training %s: its %lld training samples are fewer than one batch, so an epoch "
                    "would train nothing (lower `batch`, or `validation`, which holds out samples)",
                    model ? model : "?", (long long)train_count);
    /* A training run's product is its model file; its lines are a log. A reader of them
     * that went away (`| head`, a pager quit, a killed tee) no longer kills the run with
     * SIGPIPE, losing the training: the lines are dropped, the run saves what it trains,
     * and it ends with status 1 saying standard output was lost (nnq_stdout_check), as on
     * a full disk. For the rest of the process: the lines after training are logs too. */
    signal(SIGPIPE, SIG_IGN);
    run->model_name = rt_strdup(run, model ? model : "?");
    run->epochs = epochs;
    run->iters_per_epoch = iters_per_epoch;
    run->training = true;
    run->train_start = run->epoch_start = rt_now();
    profile_start(run);
    if (run->opts.quiet)
        return;
    bar_clear(run);
    printf("training %s: %d epoch%s of %lld iteration%s; %lld training", run->model_name, epochs,
           epochs == 1 ? "" : "s", (long long)iters_per_epoch, iters_per_epoch == 1 ? "" : "s",
           (long long)train_count);
    if (val_count > 0)
        printf(", %lld validation", (long long)val_count);
    if (test_count > 0)
        printf(", %lld test", (long long)test_count);
    printf(" samples\n");
    fflush(stdout);
}

void nnq_rt_check_loss(NnqRun *run, float loss, int64_t iteration) {
    if (isfinite(loss))
        return;
    char what[4400]; /* a state name (at most 4096 bytes) and its first bad element */
    bool found = rt_state_nonfinite(run, what, sizeof what);
    nnq_rt_fail(run, "training diverged at iteration %lld: the loss is %s; %s%s; the last "
                "checkpoint and model file are left as they were",
                (long long)iteration, isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf",
                found ? "the first non-finite tensor is " : "",
                found ? what : "all state (weights, aux, optimizer moments, batch-norm "
                               "statistics) is finite, so an activation or a gradient of this "
                               "iteration overflowed");
}

void nnq_rt_epoch_test(NnqRun *run, double test_soft, double test_hard) {
    run->epoch_test_soft = test_soft;
    run->epoch_test_hard = test_hard;
}

void nnq_rt_epoch_end(NnqRun *run, int32_t epoch, double train_loss, double train_acc,
                      double val_soft, double val_hard, double beta, double lr) {
    double test_soft = run->epoch_test_soft, test_hard = run->epoch_test_hard;
    run->epoch_test_soft = run->epoch_test_hard = -1;
    double now = rt_now();
    double secs = run->training ? now - run->epoch_start : 0.0;
    double iter_secs = run->training && run->iters_end > run->epoch_start ? run->iters_end - run->epoch_start : -1.0;
    run->epoch_start = now;
    if (!run->opts.quiet) {
        bar_clear(run);
        if (run->epochs > 0)
            printf("epoch %*d/%d", digits(run->epochs), epoch, run->epochs);
        else
            printf("epoch %d", epoch);
        if (train_loss >= 0)
            printf("  loss %.4f", train_loss);
        if (train_acc >= 0)
            printf("  train %.4f", train_acc);
        if (val_soft >= 0)
            printf("  val %.4f", val_soft);
        if (val_hard >= 0)
            printf("  hard %.4f", val_hard);
        if (test_soft >= 0)
            printf("  test %.4f", test_soft);
        if (test_hard >= 0)
            printf("  hard %.4f", test_hard);
        if (beta >= 0)
            printf("  beta %.2e", beta);
        if (lr >= 0)
            printf("  lr %.2e", lr);
        printf("  %.1fs\n", secs);
        fflush(stdout);
    }
    if (run->metrics) {
        char line[704], b[10][32];
        snprintf(line, sizeof line,
                 "{\"epoch\":%d,\"train_loss\":%s,\"train_acc\":%s,\"val_acc_soft\":%s,"
                 "\"val_acc_hard\":%s,\"test_acc_soft\":%s,\"test_acc_hard\":%s,\"beta\":%s,"
                 "\"lr\":%s,\"seconds\":%s,\"iter_seconds\":%s}",
                 epoch, json_num(b[0], 32, train_loss), json_num(b[1], 32, train_acc),
                 json_num(b[2], 32, val_soft), json_num(b[3], 32, val_hard),
                 json_num(b[7], 32, test_soft), json_num(b[8], 32, test_hard),
                 json_num(b[4], 32, beta), json_num(b[5], 32, lr), json_num(b[6], 32, secs),
                 json_num(b[9], 32, iter_secs));
        metrics_line(run, line);
    }
    rt_checkpoint_epoch_done(run, epoch);
}

/* msg's first "%lld" is replaced by value; without one, " value" is appended. No other
 * character of msg is special (it is never used as a printf format). */
void nnq_rt_note(NnqRun *run, const char *msg, int64_t value) {
    if (run->opts.quiet)
        return;
    bar_clear(run);
    const char *at = msg ? strstr(msg, "%lld") : NULL;
    if (!msg)
        printf("note: %lld\n", (long long)value);
    else if (at)
        printf("note: %.*s%lld%s\n", (int)(at - msg), msg, (long long)value, at + 4);
    else
        printf("note: %s %lld\n", msg, (long long)value);
    fflush(stdout);
}

void nnq_rt_train_end(NnqRun *run, int32_t epochs, double test_soft, double test_hard) {
    double total = run->training ? rt_now() - run->train_start : 0.0;
    run->training = false;
    bar_clear(run);
    if ((test_hard >= 0 || test_soft >= 0) && run->rank == 0) { /* rank 0 speaks for an MPI job */
        printf("test accuracy:");
        if (test_hard >= 0)
            printf(" hard %.4f", test_hard);
        if (test_hard >= 0 && test_soft >= 0)
            printf(" ");
        if (test_soft >= 0)
            printf(" soft %.4f", test_soft);
        printf("\n");
    }
    if (!run->opts.quiet)
        printf("training time: %.1fs (%d epoch%s)\n", total, epochs, epochs == 1 ? "" : "s");
    profile_report(run);
    fflush(stdout);
    if (run->metrics) {
        char line[256], b[3][32];
        snprintf(line, sizeof line,
                 "{\"final\":true,\"epochs\":%d,\"test_acc_hard\":%s,\"test_acc_soft\":%s,"
                 "\"train_seconds\":%s}",
                 epochs, json_num(b[0], 32, test_hard), json_num(b[1], 32, test_soft),
                 json_num(b[2], 32, total));
        metrics_line(run, line);
        char err[1024];
        if (!metrics_finish(run, err, sizeof err))
            nnq_rt_fail(run, "%s", err);
    }
}
