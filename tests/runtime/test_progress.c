/* test_progress.c — progress.c: the printed lines, the live bar, notes, and the JSON
 * Lines metrics file (written as .tmp, renamed at the end, removed after an error). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char *g_metrics, *g_metrics_tmp;
static int g_tmp_seen, g_final_seen;

static int entry_train(NnqRun *run) {
    nnq_rt_train_begin(run, "mlp", 2, 5, 500, 100, 200);
    for (int i = 1; i <= 5; i++)
        nnq_rt_progress(run, 1, i, 0.5f);
    nnq_rt_epoch_end(run, 1, 0.5, 0.8, 0.75, -1, -1, 1e-3);
    g_tmp_seen = th_file_exists(g_metrics_tmp);
    g_final_seen = th_file_exists(g_metrics);
    nnq_rt_epoch_test(run, 0.7, 0.6);
    nnq_rt_epoch_end(run, 2, 0.4, 0.85, 0.8, 0.79, 12.3, 2e-4);
    nnq_rt_note(run, "kept best hard model from epoch %lld", 2);
    nnq_rt_note(run, "iterations:", 10);
    nnq_rt_note(run, "100% of %lld done", 7);
    nnq_rt_train_end(run, 2, 0.81, 0.8);
    return 0;
}

static NnqRunOptions metrics_opts(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.progress = 0;
    o.metrics_path = g_metrics;
    return o;
}

static char *file_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

void test_metrics_success(void) {
    g_metrics = th_path("metrics.jsonl");
    g_metrics_tmp = th_path("metrics.jsonl.tmp");
    NnqRunOptions o = metrics_opts();
    th_capture_begin(1);
    int rc = th_invoke_new(&o, entry_train, NULL);
    char *out = th_capture_end(1);
    CHECK(rc == 0);
    CHECK(g_tmp_seen && !g_final_seen, "during training only PATH.tmp exists (%d %d)",
          g_tmp_seen, g_final_seen);
    CHECK(th_file_exists(g_metrics) && !th_file_exists(g_metrics_tmp), "not renamed at the end");
    char *text = file_text(g_metrics);
    CHECK(text != NULL);
    if (text) {
        char *line[4] = {NULL};
        int n = 0;
        for (char *p = strtok(text, "\n"); p && n < 4; p = strtok(NULL, "\n"))
            line[n++] = p;
        CHECK(n == 3, "%d lines", n);
        const char *first = "{\"epoch\":1,\"train_loss\":0.5,\"train_acc\":0.8,"
                            "\"val_acc_soft\":0.75,\"val_acc_hard\":null,\"test_acc_soft\":null,"
                            "\"test_acc_hard\":null,\"beta\":null,"
                            "\"lr\":0.001,\"seconds\":";
        CHECK(line[0] && strncmp(line[0], first, strlen(first)) == 0, "line 1: %s", line[0]);
        CHECK(line[1] && th_contains(line[1], "\"epoch\":2,") &&
                  th_contains(line[1], "\"val_acc_hard\":0.79,\"test_acc_soft\":0.7,"
                                        "\"test_acc_hard\":0.6,\"beta\":12.3,\"lr\":0.0002,"),
              "line 2: %s", line[1]);
        const char *fin = "{\"final\":true,\"epochs\":2,\"test_acc_hard\":0.8,"
                          "\"test_acc_soft\":0.81,\"train_seconds\":";
        CHECK(line[2] && strncmp(line[2], fin, strlen(fin)) == 0 &&
                  line[2][strlen(line[2]) - 1] == '}',
              "final line: %s", line[2]);
    }
    free(text);
    CHECK(th_contains(out, "training mlp: 2 epochs of 5 iterations; 500 training, 100 "
                           "validation, 200 test samples\n"),
          "header: %s", out);
    CHECK(th_contains(out, "epoch 1/2  loss 0.5000  train 0.8000  val 0.7500  lr 1.00e-03  "),
          "epoch 1 line: %s", out);
    CHECK(th_contains(out, "epoch 2/2  loss 0.4000  train 0.8500  val 0.8000  hard 0.7900  "
                           "test 0.7000  hard 0.6000  beta 1.23e+01  lr 2.00e-04  "),
          "epoch 2 line: %s", out);
    CHECK(th_contains(out, "note: kept best hard model from epoch 2\n"), "%s", out);
    CHECK(th_contains(out, "note: iterations: 10\n"), "%s", out);
    CHECK(th_contains(out, "note: 100% of 7 done\n"), "%s", out);
    CHECK(th_contains(out, "test accuracy: hard 0.8000  soft 0.8100\n"), "%s", out);
    CHECK(th_contains(out, "training time: "), "%s", out);
    CHECK(!strchr(out, '\r'), "progress 0 draws no bar");
    free(out);
    unlink(g_metrics);
    free(g_metrics), free(g_metrics_tmp);
}

static int entry_diverge(NnqRun *run) {
    nnq_rt_train_begin(run, "mlp", 3, 10, 1000, 0, 0);
    nnq_rt_epoch_end(run, 1, 0.5, -1, -1, -1, -1, 1e-3);
    for (int i = 1; i <= 10; i++)
        nnq_rt_progress(run, 2, i, 0.4f);
    nnq_rt_check_loss(run, NAN, 17);
    nnq_rt_train_end(run, 3, -1, -1);
    return 0;
}

void test_metrics_failure(void) {
    g_metrics = th_path("failed.jsonl");
    g_metrics_tmp = th_path("failed.jsonl.tmp");
    NnqRunOptions o = metrics_opts();
    o.progress = 1;
    NnqRun *run = nnq_run_new(&o);
    CHECK(run != NULL);
    if (!run)
        return;
    char *err = NULL;
    th_capture_begin(1);
    int rc = th_invoke(run, entry_diverge, &err);
    char *out = th_capture_end(1);
    CHECK(rc == 1);
    CHECK(th_contains(err, "training diverged at iteration 17: the loss is nan; all state"), "got: %s", err);
    size_t len = strlen(out);
    CHECK(len > 0 && out[len - 1] == '\n', "the bar line is ended before the error: '%s'", out);
    nnq_run_free(run);
    /* the epoch it finished is kept, whole (the loss curve a divergence is read from) */
    CHECK(th_file_exists(g_metrics) && !th_file_exists(g_metrics_tmp),
          "a failed run's metrics not renamed into place");
    char *text = file_text(g_metrics);
    const char *first = "{\"epoch\":1,\"train_loss\":0.5,";
    CHECK(text && !strncmp(text, first, strlen(first)) && strchr(text, '\n') &&
              !strchr(text, '\n')[1],
          "a failed run's metrics: '%s'", text ? text : "(none)");
    free(text);
    unlink(g_metrics);
    free(err), free(out), free(g_metrics), free(g_metrics_tmp);
}

void test_metrics_open_failure(void) {
    g_metrics = th_path("no-such-dir/metrics.jsonl");
    NnqRunOptions o = metrics_opts();
    th_capture_begin(2);
    NnqRun *run = nnq_run_new(&o);
    char *err = th_capture_end(2);
    CHECK(run == NULL, "nnq_run_new succeeded with an unwritable metrics path");
    nnq_run_free(run);
    CHECK(th_contains(err, "nnqc: error: cannot write metrics file") &&
              th_contains(err, g_metrics),
          "got: %s", err);
    free(err), free(g_metrics);
}

static int entry_bar(NnqRun *run) {
    nnq_rt_train_begin(run, "cnn", 20, 1000, 100000, 0, 10000);
    for (int i = 1; i <= 1000; i++)
        nnq_rt_progress(run, 3, i, 1.25f);
    nnq_rt_epoch_end(run, 3, 1.5, -1, -1, -1, -1, 0.01);
    nnq_rt_train_end(run, 20, -1, 0.5);
    return 0;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

void test_progress_output(void) {
    NnqRunOptions o;
    nnq_run_options_default(&o);
    o.progress = 1;
    th_capture_begin(1);
    CHECK(th_invoke_new(&o, entry_bar, NULL) == 0);
    char *out = th_capture_end(1);
    int draws = count_of(out, "\repoch  3/20 [");
    CHECK(draws >= 2 && draws <= 6, "%d bar draws for 1000 fast iterations (throttled)", draws);
    CHECK(th_contains(out, "epoch  3/20 [##############################] 1000/1000"),
          "full bar: %s", out);
    CHECK(th_contains(out, "loss 1.2500"), "%s", out);
    CHECK(th_contains(out, "\nepoch  3/20  loss 1.5000  lr 1.00e-02  ") ||
              th_contains(out, "\repoch  3/20  loss 1.5000  lr 1.00e-02  "),
          "epoch line after the bar: %s", out);
    CHECK(th_contains(out, "test accuracy: hard 0.5000\n"), "%s", out);
    free(out);

    o.progress = 0;
    th_capture_begin(1);
    CHECK(th_invoke_new(&o, entry_bar, NULL) == 0);
    out = th_capture_end(1);
    CHECK(!strchr(out, '\r') && !strchr(out, '['), "progress 0: %s", out);
    free(out);

    o.progress = 1; /* quiet wins over the bar */
    o.quiet = true;
    th_capture_begin(1);
    CHECK(th_invoke_new(&o, entry_bar, NULL) == 0);
    out = th_capture_end(1);
    CHECK(strcmp(out, "test accuracy: hard 0.5000\n") == 0, "quiet output: '%s'", out);
    free(out);

    o.quiet = false; /* auto: stdout is a file here, so no bar */
    o.progress = -1;
    th_capture_begin(1);
    CHECK(th_invoke_new(&o, entry_bar, NULL) == 0);
    out = th_capture_end(1);
    CHECK(!strchr(out, '\r'), "auto mode drew a bar into a file");
    free(out);
}
