/* gemm.c — single-precision matrix multiply: the OpenBLAS path and its naive reference.
 *
 * Contract shared by both (row-major, BLAS semantics):
 *   C[m x n] = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T (trans flag 1).
 *   A is stored m x k (lda >= k) or, transposed, k x m (lda >= m); B is k x n
 *   (ldb >= n) or n x k (ldb >= k); ldc >= n. Elements of C outside the m x n block
 *   are never touched. beta == 0 means C is not read (NaNs in it are overwritten).
 *   k == 0 or alpha == 0 gives C = beta * C (A and B are not read).
 * A leading dimension below its minimum is a code generator bug, not a user error: it
 * trips an assert. The results of the two paths agree to rounding (tests bound the
 * difference by a multiple of k * FLT_EPSILON * sum |alpha a b| + |beta c|). */
#include <assert.h>
#include <cblas.h>

#include "rt_internal.h"

static void gemm_check_args(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k,
                            int32_t lda, int32_t ldb, int32_t ldc) {
    assert(m >= 0 && n >= 0 && k >= 0);
    assert(lda >= (transa ? m : k) && lda >= 1);
    assert(ldb >= (transb ? k : n) && ldb >= 1);
    assert(ldc >= n && ldc >= 1);
    (void)transa, (void)transb, (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc;
}

/* C = beta * C over the m x n block (beta == 0 stores zeros). */
static void gemm_scale_c(int32_t m, int32_t n, float beta, float *c, int32_t ldc) {
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++)
            c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

void nnq_rt_sgemm(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k, float alpha,
                  const float *a, int32_t lda, const float *b, int32_t ldb, float beta, float *c,
                  int32_t ldc) {
    gemm_check_args(transa, transb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    if (k == 0 || alpha == 0.0f) {
        gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                transb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void nnq_rt_sgemm_ref(int32_t transa, int32_t transb, int32_t m, int32_t n, int32_t k,
                      float alpha, const float *a, int32_t lda, const float *b, int32_t ldb,
                      float beta, float *c, int32_t ldc) {
    gemm_check_args(transa, transb, m, n, k, lda, ldb, ldc);
    if (k == 0 || alpha == 0.0f) {
        gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    /* strides of op(A)[i][p] and op(B)[p][j] */
    size_t a_i = transa ? 1 : (size_t)lda, a_p = transa ? (size_t)lda : 1;
    size_t b_p = transb ? 1 : (size_t)ldb, b_j = transb ? (size_t)ldb : 1;
    for (int32_t i = 0; i < m; i++) {
        for (int32_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int32_t p = 0; p < k; p++)
                acc += (double)a[i * a_i + p * a_p] * (double)b[p * b_p + j * b_j];
            float *cij = &c[(size_t)i * ldc + j];
            float v = alpha * (float)acc;
            *cij = beta == 0.0f ? v : v + beta * *cij;
        }
    }
}
