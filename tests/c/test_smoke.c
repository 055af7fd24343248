#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include "embetter/embetter.h"

static void smoke(void **state)
{
    (void)state;
    enum { N = 40, D = 6 };
    float x[N * D];
    int32_t y[N];
    unsigned s = 1;
    for (int i = 0; i < N; i++) {
        y[i] = i % 2;
        for (int j = 0; j < D; j++) {
            s = s * 1103515245u + 12345u;
            x[i * D + j] = ((s >> 16) % 1000) / 1000.0f + (j == 0 ? 2.0f * y[i] : 0.0f);
        }
    }
    eb_feedforward_params p = eb_feedforward_default_params();
    p.hidden_dim = 4;
    eb_feedforward *m;
    assert_int_equal(eb_feedforward_create(&p, NULL, &m, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(m, eb_matrix_view(x, N, D), y, 2), EB_OK);
    size_t len;
    const double *h = eb_feedforward_loss_history(m, &len);
    assert_int_equal(len, 500);
    printf("ff loss %g -> %g\n", h[0], h[len - 1]);
    assert_true(h[len - 1] < h[0]);
    float out[N * 4];
    assert_int_equal(eb_feedforward_transform(m, eb_matrix_view(x, N, D), eb_mut_matrix_view(out, N, 4), NULL), EB_OK);
    eb_feedforward_free(m);

    eb_contrastive_params cp = eb_contrastive_default_params();
    cp.n_epochs = 100; cp.learning_rate = 0.01f;
    eb_contrastive *c;
    assert_int_equal(eb_contrastive_create(&cp, NULL, &c, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(c, eb_matrix_view(x, N, D), y, 2), EB_OK);
    h = eb_contrastive_loss_history(c, &len);
    printf("cl loss %g -> %g\n", h[0], h[len - 1]);
    assert_true(h[len - 1] < h[0]);
    cp.batch_size = 7;
    eb_contrastive_free(c);
    assert_int_equal(eb_contrastive_create(&cp, NULL, &c, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(c, eb_matrix_view(x, N, D), y, 2), EB_OK);
    h = eb_contrastive_loss_history(c, &len);
    printf("cl mb loss %g -> %g\n", h[0], h[len - 1]);
    eb_contrastive_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(smoke)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
