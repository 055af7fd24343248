/*
 * The matrix products of embetter's training and transform, and nothing else,
 * for the benchmark's hardware limit: what cblas_sgemm alone achieves at the
 * same shapes, in the same process, through the same OpenBLAS.
 */
#include <cblas.h>

#include "sgemm_loops.h"

void repeat_sgemm(int repeats, int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                  const float *b, int ldb, float *c, int ldc)
{
    for (int i = 0; i < repeats; i++)
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                    1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

/* The five products per batch of the feed-forward finetuner (forward two, backward three), batch by batch. */
void feedforward_gemms(int epochs, int rows, int batch, int d, int h, int k, const float *x, const float *w1,
                       const float *w2, float *hidden, float *scores, float *delta, float *grad_w1, float *grad_w2)
{
    for (int epoch = 0; epoch < epochs; epoch++) {
        for (int start = 0; start < rows; start += batch) {
            int b = rows - start < batch ? rows - start : batch;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, h, d, 1.0f, x, d, w1, h, 0.0f, hidden, h);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, k, h, 1.0f, hidden, h, w2, k, 0.0f, scores, k);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, k, b, 1.0f, hidden, h, scores, k, 0.0f, grad_w2, k);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, h, k, 1.0f, scores, k, w2, k, 0.0f, delta, h);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, h, b, 1.0f, x, d, delta, h, 0.0f, grad_w1, h);
        }
    }
}
