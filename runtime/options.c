/* options.c — the command-line options every trainer understands, parsed in one place
 * for `nnqc run` and for standalone trainers (`nnqc build`), and the trainer's main.
 * Parsing never exits: it reports to stderr and returns -1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* "--flag VALUE" or "--flag=VALUE": 1 and *val set when argv[*i] is `flag`. */
static int takes(const char *flag, int argc, char **argv, int *i, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(flag);
    if (strncmp(a, flag, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "nnqc: error: %s needs a value\n", flag);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int nnq_run_parse_option(NnqRunOptions *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *val = NULL;
    long long n;
    int t;
    if (!strcmp(a, "--quiet")) {
        o->quiet = true;
        return 1;
    }
    if (!strcmp(a, "--profile")) {
        o->profile = true;
        return 1;
    }
    if ((t = takes("--epochs", argc, argv, i, &val))) {
        if (t < 0) return -1;
        if (!nnq_option_number("--epochs", val, 1, 1000000, &n)) return -1;
        o->epochs = (int32_t)n;
        return 1;
    }
    if ((t = takes("--seed", argc, argv, i, &val))) {
        if (t < 0) return -1;
        if (!nnq_option_number("--seed", val, 0, INT64_MAX, &n)) return -1;
        o->seed = n;
        return 1;
    }
    if ((t = takes("--threads", argc, argv, i, &val))) {
        if (t < 0) return -1;
        if (!nnq_option_number("--threads", val, 1, NNQ_MAX_THREADS, &n)) return -1;
        o->threads = (int32_t)n;
        return 1;
    }
    if ((t = takes("--data-dir", argc, argv, i, &val))) {
        if (t < 0) return -1;
        o->data_dir = val;
        return 1;
    }
    if ((t = takes("--metrics", argc, argv, i, &val))) {
        if (t < 0) return -1;
        o->metrics_path = val;
        return 1;
    }
    if ((t = takes("--resume", argc, argv, i, &val))) {
        if (t < 0) return -1;
        if (!*val) {
            fprintf(stderr, "nnqc: error: --resume takes a checkpoint directory or file, not ''\n");
            return -1;
        }
        o->resume_dir = val;
        return 1;
    }
    if ((t = takes("--progress", argc, argv, i, &val))) {
        if (t < 0) return -1;
        if (!strcmp(val, "bar")) o->progress = 1;
        else if (!strcmp(val, "lines")) o->progress = 0;
        else if (!strcmp(val, "auto")) o->progress = -1;
        else {
            fprintf(stderr, "nnqc: error: --progress takes bar, lines or auto, not '%s'\n", val);
            return -1;
        }
        return 1;
    }
    return 0;
}

const char *nnq_run_options_help(void) {
    return "  --epochs N         override the program's epochs\n"
           "  --seed N           override the program's seed\n"
           "  --threads N        threads that train, and that nnqc run compiles on (default: the\n"
           "                     CPUs this process may use: its affinity, its cgroup's quota)\n"
           "  --data-dir DIR     search DIR first for data files (also $NNQ_DATA_DIR)\n"
           "  --metrics PATH     write JSON Lines metrics to PATH\n"
           "  --resume DIR       continue from the checkpoint in DIR (written by `checkpoint`)\n"
           "  --progress=MODE    bar, lines or auto (default: a bar on a terminal)\n"
           "  --quiet            no per-epoch lines\n"
           "  --profile          report where the training time went, by phase\n";
}

int nnq_trainer_main(int argc, char **argv, int (*entry)(NnqRun *run), const NnqSpan *buffers, int64_t nbuffers) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s [options]   train (a trainer written by nnqc build)\noptions:\n%s",
                   argv[0], nnq_run_options_help());
            return nnq_stdout_check() ? 0 : 1;
        }
        int r = nnq_run_parse_option(&o, argc, argv, &i);
        if (r == 0) fprintf(stderr, "nnqc: error: unknown option '%s' (see --help)\n", argv[i]);
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
