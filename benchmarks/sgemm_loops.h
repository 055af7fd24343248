void repeat_sgemm(int repeats, int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                  const float *b, int ldb, float *c, int ldc);
void feedforward_gemms(int epochs, int rows, int batch, int d, int h, int k, const float *x, const float *w1,
                       const float *w2, float *hidden, float *scores, float *delta, float *grad_w1, float *grad_w2);
