/* options.c — command-line options as tables (NnqOption: finding a flag and its value,
 * printing the help, "did you mean" for an unknown one), used by every nnqc command; the
 * table of the options every trainer understands, parsed in one place for `nnqc run`
 * and for standalone trainers (`nnqc build`); and the trainer's main. Parsing never
 * exits: it reports to stderr and returns an error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "near.h"
#include "nnq_rt.h"

bool nnq_option_number(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "nnqc: error: %s takes a whole number from %lld to %lld, not '%s'\n", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

int nnq_option_find(const NnqOption *table, int argc, char **argv, int *i, const char **val) {
    const char *a = argv[*i];
    for (int k = 0; table[k].flag; k++) {
        size_t n = strlen(table[k].flag);
        if (strncmp(a, table[k].flag, n) != 0 || (a[n] != '\0' && a[n] != '=')) continue;
        *val = NULL;
        if (!table[k].value) {
            if (a[n] == '\0') return k;
            fprintf(stderr, "nnqc: error: %s takes no value\n", table[k].flag);
            return -2;
        }
        if (a[n] == '=') {
            *val = a + n + 1;
        } else if (*i + 1 < argc) {
            *val = argv[++*i];
        } else {
            fprintf(stderr, "nnqc: error: %s needs a value\n", table[k].flag);
            return -2;
        }
        if (!**val) { /* every value names something: `--metrics ""` wrote no metrics, silently */
            fprintf(stderr, "nnqc: error: %s needs a value, not an empty one\n", table[k].flag);
            return -2;
        }
        return k;
    }
    return -1;
}

void nnq_options_print(FILE *out, const NnqOption *table) {
    enum { COLUMN = 21 };
    for (int k = 0; table[k].flag; k++) {
        const NnqOption *o = &table[k];
        int w = fprintf(out, "  %s%s%s", o->flag, o->value ? " " : "", o->value ? o->value : "");
        fprintf(out, "%*s", w < COLUMN - 1 ? COLUMN - w : 2, "");
        for (const char *h = o->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n') fprintf(out, "%*s", COLUMN, "");
        }
        fputc('\n', out);
    }
}

void nnq_option_unknown(const char *arg, const char *where, const NnqOption *const *tables, const char *tail) {
    char word[80];
    snprintf(word, sizeof word, "%.*s", (int)strcspn(arg, "="), arg); /* "--epoch=3": --epoch */
    DiagNear near = diag_near(word);
    for (; *tables; tables++)
        for (const NnqOption *o = *tables; o->flag; o++) diag_near_offer(&near, o->flag);
    char hint[96];
    fprintf(stderr, "nnqc: error: unknown option '%s'%s%s%s\n", arg, where, diag_near_hint(&near, hint, sizeof hint),
            tail);
}

/* The run options, in --help's order. */
enum { RUN_EPOCHS, RUN_SEED, RUN_THREADS, RUN_DATA_DIR, RUN_METRICS, RUN_RESUME, RUN_PROGRESS, RUN_QUIET, RUN_PROFILE };
const NnqOption nnq_run_options[] = {
    [RUN_EPOCHS] = {"--epochs", "N", "override the program's epochs"},
    [RUN_SEED] = {"--seed", "N", "override the program's seed"},
    [RUN_THREADS] = {"--threads", "N",
                     "threads that train, and that nnqc run compiles on (default: the\n"
                     "CPUs this process may use: its affinity, its cgroup's quota)"},
    [RUN_DATA_DIR] = {"--data-dir", "DIR", "search DIR first for data files (also $NNQ_DATA_DIR)"},
    [RUN_METRICS] = {"--metrics", "PATH", "write JSON Lines metrics to PATH"},
    [RUN_RESUME] = {"--resume", "DIR", "continue from the checkpoint in DIR (written by `checkpoint`)"},
    [RUN_PROGRESS] = {"--progress", "MODE", "bar, lines or auto (default: a bar on a terminal)"},
    [RUN_QUIET] = {"--quiet", NULL, "no per-epoch lines"},
    [RUN_PROFILE] = {"--profile", NULL, "report where the training time went, by phase"},
    {NULL, NULL, NULL},
};

int nnq_run_parse_option(NnqRunOptions *o, int argc, char **argv, int *i) {
    const char *val;
    long long n;
    int k = nnq_option_find(nnq_run_options, argc, argv, i, &val);
    switch (k) {
    case -1: return 0;
    case -2: return -1;
    case RUN_EPOCHS:
        if (!nnq_option_number("--epochs", val, 1, 1000000, &n)) return -1;
        o->epochs = (int32_t)n;
        return 1;
    case RUN_SEED:
        if (!nnq_option_number("--seed", val, 0, INT64_MAX, &n)) return -1;
        o->seed = n;
        return 1;
    case RUN_THREADS:
        if (!nnq_option_number("--threads", val, 1, NNQ_MAX_THREADS, &n)) return -1;
        o->threads = (int32_t)n;
        return 1;
    case RUN_DATA_DIR: { /* a directory that is not there: a mistake, not a place to skip */
        struct stat st;
        const char *bad = stat(val, &st) != 0 ? strerror(errno) : S_ISDIR(st.st_mode) ? NULL : "not a directory";
        if (bad) {
            fprintf(stderr, "nnqc: error: --data-dir '%s': %s\n", val, bad);
            return -1;
        }
        o->data_dir = val;
        return 1;
    }
    case RUN_METRICS: o->metrics_path = val; return 1;
    case RUN_RESUME:
        if (!*val) {
            fprintf(stderr, "nnqc: error: --resume takes a checkpoint directory or file, not ''\n");
            return -1;
        }
        o->resume_dir = val;
        return 1;
    case RUN_PROGRESS:
        if (!strcmp(val, "bar")) o->progress = 1;
        else if (!strcmp(val, "lines")) o->progress = 0;
        else if (!strcmp(val, "auto")) o->progress = -1;
        else {
            fprintf(stderr, "nnqc: error: --progress takes bar, lines or auto, not '%s'\n", val);
            return -1;
        }
        return 1;
    case RUN_QUIET: o->quiet = true; return 1;
    default: o->profile = true; return 1; /* RUN_PROFILE */
    }
}

int nnq_trainer_main(int argc, char **argv, int (*entry)(NnqRun *run), const NnqSpan *buffers, int64_t nbuffers,
                     int32_t isa_level) {
    nnq_std_fds();
    if (!nnq_isa_level_check(isa_level, argc > 0 && argv[0] ? argv[0] : "trainer")) return 1;
    NnqRunOptions o;
    nnq_run_options_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s [options]   train (a trainer written by nnqc build)\noptions:\n", argv[0]);
            nnq_options_print(stdout, nnq_run_options);
            return nnq_stdout_check() ? 0 : 1;
        }
        int r = nnq_run_parse_option(&o, argc, argv, &i);
        if (r == 0) nnq_option_unknown(argv[i], "", (const NnqOption *const[]){nnq_run_options, NULL}, " (see --help)");
        if (r <= 0) return 2;
    }
    uint64_t bytes = 0;
    for (int64_t i = 0; i < nbuffers; i++) bytes += buffers[i].bytes;
    char fit[256];
    if (!nnq_buffers_fit(bytes, fit, sizeof fit)) {
        fprintf(stderr, "nnqc: error: %s\n", fit);
        return 1;
    }
    NnqRun *run = nnq_run_new(&o);
    if (!run) return 1;
    for (int64_t i = 0; i < nbuffers; i++) nnq_prefault(buffers[i].start, buffers[i].bytes);
    int rc = nnq_run_invoke(run, entry);
    nnq_run_free(run);
    if (!nnq_stdout_check() && rc == 0) rc = 1; /* the epoch lines lost (a full disk) */
    return rc;
}
