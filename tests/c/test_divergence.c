/*
 * Training that overflows float32 must fail loudly, never hand back NaN
 * weights: a fresh fit is discarded, a continuing partial_fit is rolled back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "helpers.h"

enum { ROWS = 24, COLS = 5, CLASSES = 3, MAX_CALLS = 200 };

/* Adam moves every weight by about the step size: near FLT_MAX the sums that follow overflow. */
static const float EXPLOSIVE_RATE = 3e38f;
/*
 * The cosine does not grow with the weights, so the contrastive model only
 * overflows when large weights meet large inputs: rows scaled by this.
 */
static const float LARGE_INPUT = 1e30f;

static void make_data(float *x, int32_t *y)
{
    test_rng rng = test_rng_make(7);
    toy_uniform(&rng, ROWS, COLS, CLASSES, x, y);
}

static void make_large_data(float *x, int32_t *y)
{
    make_data(x, y);
    for (size_t i = 0; i < ROWS * COLS; i++)
        x[i] *= LARGE_INPUT;
}

static void test_contrastive_partial_fit_rolls_back(void **unused)
{
    (void)unused;
    float x[ROWS * COLS];
    int32_t y[ROWS];
    make_large_data(x, y);
    eb_matrix view = eb_matrix_view(x, ROWS, COLS);
    eb_contrastive_params params = eb_contrastive_default_params();
    eb_contrastive *model;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, view, y, CLASSES), EB_OK);
    params.learning_rate = EXPLOSIVE_RATE;
    assert_int_equal(eb_contrastive_set_params(model, &params), EB_OK);
    /* A pass reports the loss before its last update, so the overflow shows in the call after it. */
    model_snapshot before = snapshot_contrastive(model, view);
    eb_status status = EB_OK;
    for (int call = 0; call < MAX_CALLS && status == EB_OK; call++) {
        snapshot_release(&before);
        before = snapshot_contrastive(model, view);
        status = eb_contrastive_partial_fit(model, view, y, 0);
    }
    assert_int_equal(status, EB_ERR_NONFINITE);
    assert_non_null(strstr(eb_contrastive_last_error(model), "diverged"));
    model_snapshot after = snapshot_contrastive(model, view);
    assert_true(snapshots_identical(&before, &after));
    for (size_t i = 0; i < after.weight_count; i++)
        assert_true(isfinite(after.weights[i]));
    /* The last successful pass left weights under which these rows overflow: transform says so. */
    float out[ROWS * COLS];
    eb_error err;
    assert_int_equal(eb_contrastive_transform(model, view, eb_mut_matrix_view(out, ROWS, COLS), &err),
                     EB_ERR_NONFINITE);
    assert_non_null(strstr(err.message, "overflows float32"));
    snapshot_release(&before);
    snapshot_release(&after);
    eb_contrastive_free(model);
}

static void test_contrastive_fit_discards_diverged_state(void **unused)
{
    (void)unused;
    float x[ROWS * COLS];
    int32_t y[ROWS];
    make_large_data(x, y);
    eb_matrix view = eb_matrix_view(x, ROWS, COLS);
    eb_contrastive_params params = eb_contrastive_default_params();
    params.learning_rate = EXPLOSIVE_RATE;
    params.n_epochs = 5;
    eb_contrastive *model;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, view, y, CLASSES), EB_ERR_NONFINITE);
    assert_non_null(strstr(eb_contrastive_last_error(model), "diverged"));
    assert_false(eb_contrastive_is_fitted(model));
    size_t length;
    eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 0);
    eb_contrastive_free(model);
}

static void test_contrastive_survives_large_finite_input(void **unused)
{
    (void)unused;
    /* Squares of these overflow float; the norms and cosines must not. */
    float x[ROWS * COLS];
    int32_t y[ROWS];
    make_large_data(x, y);
    eb_matrix view = eb_matrix_view(x, ROWS, COLS);
    eb_contrastive_params params = eb_contrastive_default_params();
    eb_contrastive *model;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, view, y, CLASSES), EB_OK);
    size_t length;
    const double *history = eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, params.n_epochs);
    for (size_t i = 0; i < length; i++)
        assert_true(isfinite(history[i]) && history[i] >= 0.0);
    eb_contrastive_free(model);
}

static void test_feedforward_partial_fit_rolls_back(void **unused)
{
    (void)unused;
    float x[ROWS * COLS];
    int32_t y[ROWS];
    make_data(x, y);
    eb_matrix view = eb_matrix_view(x, ROWS, COLS);
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 4;
    params.n_epochs = 20;
    eb_feedforward *model;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, view, y, CLASSES), EB_OK);
    params.learning_rate = EXPLOSIVE_RATE;
    assert_int_equal(eb_feedforward_set_params(model, &params), EB_OK);
    model_snapshot before = snapshot_feedforward(model, view);
    eb_status status = eb_feedforward_partial_fit(model, view, y, 0);
    assert_int_equal(status, EB_ERR_NONFINITE);
    assert_non_null(strstr(eb_feedforward_last_error(model), "diverged"));
    model_snapshot after = snapshot_feedforward(model, view);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
    eb_feedforward_free(model);
}

static void test_set_params_keeps_fitted_shapes(void **unused)
{
    (void)unused;
    float x[ROWS * COLS];
    int32_t y[ROWS];
    make_data(x, y);
    eb_matrix view = eb_matrix_view(x, ROWS, COLS);
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 4;
    params.n_epochs = 3;
    eb_feedforward *model;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    /* Before fitting every valid change is taken, hidden_dim included. */
    params.hidden_dim = 5;
    assert_int_equal(eb_feedforward_set_params(model, &params), EB_OK);
    assert_int_equal(eb_feedforward_output_dim(model), 5);
    assert_int_equal(eb_feedforward_fit(model, view, y, CLASSES), EB_OK);
    model_snapshot before = snapshot_feedforward(model, view);
    params.hidden_dim = 6;
    assert_int_equal(eb_feedforward_set_params(model, &params), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(eb_feedforward_last_error(model), "hidden_dim cannot change once fitted"));
    params.hidden_dim = 5;
    params.learning_rate = -1.0f;
    assert_int_equal(eb_feedforward_set_params(model, &params), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(eb_feedforward_last_error(model), "learning_rate"));
    model_snapshot after = snapshot_feedforward(model, view);
    assert_true(snapshots_identical(&before, &after));
    assert_float_equal(eb_feedforward_get_params(model).learning_rate, 0.01f, 0.0f);
    snapshot_release(&before);
    snapshot_release(&after);
    eb_feedforward_free(model);

    eb_contrastive_params cparams = eb_contrastive_default_params();
    eb_contrastive *cmodel;
    assert_int_equal(eb_contrastive_create(&cparams, NULL, &cmodel, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(cmodel, view, y, CLASSES), EB_OK);
    cparams.n_neg = 7;
    assert_int_equal(eb_contrastive_set_params(cmodel, &cparams), EB_OK);
    assert_int_equal(eb_contrastive_get_params(cmodel).n_neg, 7);
    cparams.hidden_dim = 2;
    assert_int_equal(eb_contrastive_set_params(cmodel, &cparams), EB_ERR_INVALID_PARAM);
    assert_int_equal(eb_contrastive_output_dim(cmodel), COLS);
    eb_contrastive_free(cmodel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contrastive_partial_fit_rolls_back),
        cmocka_unit_test(test_contrastive_fit_discards_diverged_state),
        cmocka_unit_test(test_contrastive_survives_large_finite_input),
        cmocka_unit_test(test_feedforward_partial_fit_rolls_back),
        cmocka_unit_test(test_set_params_keeps_fitted_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
