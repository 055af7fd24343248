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
#include <stdbool.h>
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

/* Each labelled kind with the data that makes it overflow. */
typedef struct kind_case {
    eb_finetuner_kind kind;
    bool large_input;
} kind_case;

static const kind_case KINDS[N_LABELLED_KINDS] = {
    {EB_KIND_FEEDFORWARD, false},
    {EB_KIND_CONTRASTIVE, true},
};

static test_data kind_data(const kind_case *k)
{
    test_data data = make_data(ROWS, COLS, CLASSES, 0, 0.0, 7);
    if (k->large_input)
        for (size_t i = 0; i < ROWS * COLS; i++)
            data.x[i] *= LARGE_INPUT;
    return data;
}

static eb_finetuner *new_model(eb_finetuner_kind kind, float learning_rate, size_t n_epochs)
{
    eb_finetuner_params params = test_params(kind, 4, n_epochs, 0);
    if (learning_rate > 0.0f)
        params.learning_rate = learning_rate;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static void partial_fit_rolls_back(void **unused)
{
    (void)unused;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        test_data data = kind_data(&KINDS[k]);
        eb_matrix view = data_x(&data);
        eb_finetuner *model = new_model(KINDS[k].kind, 0.0f, 20);
        assert_int_equal(eb_finetuner_fit(model, view, data.y, CLASSES, NULL), EB_OK);
        eb_finetuner_params params = eb_finetuner_get_params(model);
        params.learning_rate = EXPLOSIVE_RATE;
        assert_int_equal(eb_finetuner_set_params(model, &params), EB_OK);
        /* A pass reports the loss before its last update, so the overflow may show in the call after it. */
        model_snapshot before = snapshot_finetuner(model, view);
        eb_status status = EB_OK;
        for (int call = 0; call < MAX_CALLS && status == EB_OK; call++) {
            snapshot_release(&before);
            before = snapshot_finetuner(model, view);
            status = eb_finetuner_partial_fit(model, view, data.y, 0, NULL);
        }
        assert_int_equal(status, EB_ERR_NONFINITE);
        assert_non_null(strstr(eb_finetuner_last_error(model), "diverged"));
        model_snapshot after = snapshot_finetuner(model, view);
        assert_true(snapshots_identical(&before, &after));
        for (size_t i = 0; i < after.weight_count; i++)
            assert_true(isfinite(after.weights[i]));
        if (KINDS[k].large_input) {
            /* The last successful pass left weights under which these rows overflow: transform says so. */
            float out[ROWS * 4];
            eb_error err;
            assert_int_equal(eb_finetuner_transform(model, view, eb_mut_matrix_view(out, ROWS, 4), &err),
                             EB_ERR_NONFINITE);
            assert_non_null(strstr(err.message, "overflows float32"));
        }
        snapshot_release(&before);
        snapshot_release(&after);
        eb_finetuner_free(model);
        data_release(&data);
    }
}

static void fit_discards_diverged_state(void **unused)
{
    (void)unused;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        test_data data = kind_data(&KINDS[k]);
        eb_finetuner *model = new_model(KINDS[k].kind, EXPLOSIVE_RATE, 5);
        assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, NULL), EB_ERR_NONFINITE);
        assert_non_null(strstr(eb_finetuner_last_error(model), "diverged"));
        assert_false(eb_finetuner_is_fitted(model));
        size_t length;
        eb_finetuner_loss_history(model, &length);
        assert_int_equal(length, 0);
        eb_finetuner_free(model);
        data_release(&data);
    }
}

static void contrastive_survives_large_finite_input(void **unused)
{
    (void)unused;
    /* Squares of these overflow float; the norms and cosines must not. */
    test_data data = kind_data(&KINDS[1]);
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    eb_finetuner *model;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, NULL), EB_OK);
    size_t length;
    const double *history = eb_finetuner_loss_history(model, &length);
    assert_int_equal(length, params.n_epochs);
    for (size_t i = 0; i < length; i++)
        assert_true(isfinite(history[i]) && history[i] >= 0.0);
    eb_finetuner_free(model);
    data_release(&data);
}

/*
 * Before fitting every valid change of params is taken, hidden_dim included;
 * once fitted, hidden_dim (and the pair learner's layers) fix the weight
 * shapes and are refused, as is any change of kind, and an invalid value;
 * refusals change nothing.
 */
static void set_params_keeps_fitted_shapes(void **unused)
{
    (void)unused;
    test_data data = make_data(ROWS, COLS, CLASSES, 0, 0.0, 7);
    eb_matrix view = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        const eb_finetuner_kind kind = ALL_KINDS[k];
        eb_finetuner *model = new_model(kind, 0.0f, 3);
        eb_finetuner_params params = eb_finetuner_get_params(model);
        params.hidden_dim = 5;
        assert_int_equal(eb_finetuner_set_params(model, &params), EB_OK);
        assert_int_equal(eb_finetuner_output_dim(model), 5);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        model_snapshot before = snapshot_finetuner(model, view);

        params.hidden_dim = 6;
        assert_int_equal(eb_finetuner_set_params(model, &params), EB_ERR_INVALID_PARAM);
        assert_non_null(strstr(eb_finetuner_last_error(model), "hidden_dim cannot change once fitted"));
        params.hidden_dim = 5;
        const float rate = params.learning_rate;
        params.learning_rate = -1.0f;
        assert_int_equal(eb_finetuner_set_params(model, &params), EB_ERR_INVALID_PARAM);
        assert_non_null(strstr(eb_finetuner_last_error(model), "learning_rate"));
        params.learning_rate = rate;
        /* The kind is the handle's for life: params of another kind are refused, whatever their other fields. */
        for (size_t other = 0; other < N_ALL_KINDS; other++) {
            if (ALL_KINDS[other] == kind)
                continue;
            eb_finetuner_params foreign = eb_finetuner_default_params(ALL_KINDS[other]);
            foreign.hidden_dim = 5;
            assert_int_equal(eb_finetuner_set_params(model, &foreign), EB_ERR_INVALID_PARAM);
            assert_non_null(strstr(eb_finetuner_last_error(model), "kind"));
        }
        if (kind == EB_KIND_PAIR_LEARNER) {
            params.layers = EB_PAIR_LINEAR_RELU_LINEAR;
            assert_int_equal(eb_finetuner_set_params(model, &params), EB_ERR_INVALID_PARAM);
            assert_non_null(strstr(eb_finetuner_last_error(model), "layers"));
            params.layers = EB_PAIR_LINEAR;
        }
        model_snapshot after = snapshot_finetuner(model, view);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&before);
        snapshot_release(&after);

        /* What does not shape the weights may change after fitting. */
        params.learning_rate = rate * 2.0f;
        params.n_epochs = 9;
        if (kind == EB_KIND_CONTRASTIVE)
            params.n_neg = 7;
        assert_int_equal(eb_finetuner_set_params(model, &params), EB_OK);
        assert_string_equal(eb_finetuner_last_error(model), "");
        eb_finetuner_params now = eb_finetuner_get_params(model);
        assert_int_equal(now.n_epochs, 9);
        assert_true(now.learning_rate == rate * 2.0f);
        assert_int_equal(now.n_neg, kind == EB_KIND_CONTRASTIVE ? 7 : 0);
        assert_int_equal(eb_finetuner_output_dim(model), 5);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partial_fit_rolls_back),
        cmocka_unit_test(fit_discards_diverged_state),
        cmocka_unit_test(contrastive_survives_large_finite_input),
        cmocka_unit_test(set_params_keeps_fitted_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
