/* harness.h — the runtime tests' assertion harness.
 *
 * A test case is a void function; CHECK(cond) / CHECK(cond, fmt, ...) records one
 * check, and prints file:line, the expression and the optional message when it fails.
 * A case fails when any of its checks fails; th_skip() marks the running case as
 * skipped (counted as passed, with a "skip" line). main() ends with
 * "N passed, M failed" and exits non-zero on any failure.
 *
 * Helpers: a private temporary directory (removed at exit), capture of stdout or
 * stderr into a string, running an entry function under a fresh NnqRun. */
#ifndef NNQ_TEST_HARNESS_H
#define NNQ_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "nnq_rt.h"

bool th_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The format gets a leading space so that a CHECK without a message is not an empty
 * format string; th_check skips it. */
#define CHECK(cond, ...) th_check(!!(cond), __FILE__, __LINE__, #cond, " " __VA_ARGS__)

void th_skip(const char *why);

/* The test's temporary directory, and a path inside it (malloc'd, caller frees). */
const char *th_tmpdir(void);
char *th_path(const char *name);

/* Redirects fd 1 or 2 into a file until th_capture_end, which returns what was written
 * (malloc'd, NUL-terminated). Not nestable for the same fd. */
void th_capture_begin(int fd);
char *th_capture_end(int fd);

/* Runs entry under `run` with stderr captured; returns nnq_run_invoke's result and,
 * when err is not NULL, the captured stderr (malloc'd). */
int th_invoke(NnqRun *run, int (*entry)(NnqRun *run), char **err);
/* The same with a fresh run made from opts (NULL: defaults, quiet), freed afterwards. */
int th_invoke_new(const NnqRunOptions *opts, int (*entry)(NnqRun *run), char **err);

bool th_contains(const char *haystack, const char *needle);
bool th_file_exists(const char *path);
/* Open file descriptors of this process (-1 without /proc): error paths must close every
 * file they opened. */
int th_open_fds(void);
/* Writes n bytes to path (plain, or gzip-compressed when gz). false on error. */
bool th_write_file(const char *path, const void *data, size_t n, bool gz);
/* Writes a .npy file: magic, version major.0, the header text padded with spaces and a
 * newline so that the data starts at a multiple of 64 (`raw`: the header exactly as
 * given), then n data bytes; gzip-compressed when gz. false on error. */
bool th_write_npy(const char *path, int major, const char *header, bool raw, const void *data,
                  size_t n, bool gz);

/* test cases, by file */
void test_alloc(void);
void test_prefault(void);
void test_memory_limits(void);
void test_cgroup_cpus(void);
void test_trap(void);
void test_seed_override(void);
void test_shuffle(void);
void test_fill_uniform(void);
void test_fill_normal(void);
void test_check_loss_and_epochs(void);

void test_gemm_ref_known(void);
void test_gemm_vs_ref(void);
void test_gemm_edges(void);
void test_gemm_dot(void);
void test_gemm_then(void);

void test_infer_dense(void);
void test_infer_conv(void);
void test_infer_refused(void);

void test_idx_load(void);
void test_idx_search_path(void);
void test_idx_errors(void);
void test_data_check(void);
void test_data_normalize(void);
void test_data_batch(void);
void test_cifar_load(void);
void test_cifar_errors(void);
void test_npy_load(void);
void test_npy_errors(void);
void test_init_tensor(void);
void test_init_tensor_errors(void);
void test_data_normalize_channels(void);
void test_data_augment(void);
void test_fashion_mnist(void);

void test_model_roundtrip(void);
void test_model_layout(void);
void test_model_bad_value(void);
void test_model_save_failures(void);
void test_model_corruption(void);
void test_model_names(void);
void test_model_concurrent_saves(void);

void test_checkpoint_roundtrip(void);
void test_checkpoint_refusals(void);
void test_checkpoint_names(void);
void test_checkpoint_save_failures(void);

void test_metrics_success(void);
void test_metrics_failure(void);
void test_metrics_open_failure(void);
void test_progress_output(void);

void test_im2col_conv(void);
void test_image_threads(void);
void test_conv_kernels(void);
void test_dwconv_kernels(void);
void test_gemm_threads(void);
void test_pool_max_threads(void);
void test_maxpool(void);
void test_bn_relu_maxpool(void);
void test_chan_relu_grad_affine(void);
void test_chan_lanes(void);
void test_bn_apply(void);
void test_isa_levels(void);
void test_isa_trainer_level(void);
void test_isa_kernels(void);
void test_avgpool(void);

#endif
