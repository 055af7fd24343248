/*
 * partial_fit continues training where fit (or an earlier partial_fit) left
 * off, fixes n_classes on first use and rejects a later change of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "helpers.h"

enum { ROWS = 48, COLS = 6, CLASSES = 3 };

typedef struct dataset {
    float x[ROWS * COLS];
    int32_t y[ROWS];
} dataset;

static dataset make_data(void)
{
    dataset data;
    test_rng rng = test_rng_make(5);
    toy_buried_signal(&rng, ROWS, CLASSES, 3, COLS - 3, 2.0, 0.3, 1.0, data.x, data.y);
    return data;
}

static eb_feedforward *new_feedforward(size_t n_epochs, size_t batch_size)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 4;
    params.n_epochs = n_epochs;
    params.batch_size = batch_size;
    params.seed = 21;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static eb_contrastive *new_contrastive(size_t n_epochs)
{
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = 4;
    params.n_epochs = n_epochs;
    params.learning_rate = 0.01f;
    params.seed = 22;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

/* After fit, each partial_fit appends one loss, keeps the old ones, moves the weights and lowers the loss. */
static void check_feedforward_continues(size_t batch_size)
{
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_feedforward *model = new_feedforward(10, batch_size);
    assert_int_equal(eb_feedforward_fit(model, x, data.y, CLASSES), EB_OK);
    model_snapshot before = snapshot_feedforward(model, x);
    assert_int_equal(before.history_length, 10);

    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, 0), EB_OK);
    assert_string_equal(eb_feedforward_last_error(model), "");
    model_snapshot after = snapshot_feedforward(model, x);
    assert_int_equal(after.history_length, 11);
    assert_memory_equal(after.history, before.history, 10 * sizeof(double));
    assert_true(memcmp(after.weights, before.weights, before.weight_count * sizeof(float)) != 0);
    assert_true(memcmp(after.embedding, before.embedding, before.embedding_count * sizeof(float)) != 0);
    assert_int_equal(eb_feedforward_n_classes(model), CLASSES);

    /* Passing the fitted n_classes explicitly is as good as 0. */
    for (size_t i = 0; i < 150; i++)
        assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, i % 2 ? CLASSES : 0), EB_OK);
    size_t length;
    const double *history = eb_feedforward_loss_history(model, &length);
    assert_int_equal(length, 161);
    print_message("feed-forward partial_fit loss %.4f after fit, %.4f after 150 more\n", history[9],
                  history[length - 1]);
    assert_true(history[length - 1] < 0.5 * history[9]);
    snapshot_release(&before);
    snapshot_release(&after);
    eb_feedforward_free(model);
}

static void feedforward_partial_fit_continues(void **state)
{
    (void)state;
    check_feedforward_continues(0);
    check_feedforward_continues(10);
}

/*
 * Full-batch training consumes no randomness after initialisation, and
 * partial_fit keeps the weights and Adam state, so k partial_fit calls from
 * scratch must equal a fit of k epochs bit for bit.
 */
static void feedforward_partial_fits_equal_full_batch_fit(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_feedforward *stepped = new_feedforward(1, 0);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(eb_feedforward_partial_fit(stepped, x, data.y, i == 0 ? CLASSES : 0), EB_OK);
    eb_feedforward *fitted = new_feedforward(6, 0);
    assert_int_equal(eb_feedforward_fit(fitted, x, data.y, CLASSES), EB_OK);
    model_snapshot a = snapshot_feedforward(stepped, x);
    model_snapshot b = snapshot_feedforward(fitted, x);
    assert_true(snapshots_identical(&a, &b));
    snapshot_release(&a);
    snapshot_release(&b);
    eb_feedforward_free(stepped);
    eb_feedforward_free(fitted);
}

static void feedforward_partial_fit_from_scratch_fixes_n_classes(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_feedforward *model = new_feedforward(30, 0);

    /* The first call has nothing to fall back on, so n_classes 0 is refused. */
    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, 0), EB_ERR_TOO_FEW_CLASSES);
    assert_non_null(strstr(eb_feedforward_last_error(model), "n_classes"));
    assert_false(eb_feedforward_is_fitted(model));

    /* One more class than the labels use: allowed, and fixed from now on. */
    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, CLASSES + 1), EB_OK);
    assert_true(eb_feedforward_is_fitted(model));
    assert_int_equal(eb_feedforward_n_classes(model), CLASSES + 1);
    assert_int_equal(eb_feedforward_n_features(model), COLS);
    size_t length;
    eb_feedforward_loss_history(model, &length);
    assert_int_equal(length, 1);

    model_snapshot before = snapshot_feedforward(model, x);
    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, CLASSES), EB_ERR_LABEL_OUT_OF_RANGE);
    const char *message = eb_feedforward_last_error(model);
    assert_non_null(strstr(message, "n_classes is 3"));
    assert_non_null(strstr(message, "fitted with 4"));
    model_snapshot after = snapshot_feedforward(model, x);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&after);

    int32_t labels[ROWS];
    memcpy(labels, data.y, sizeof labels);
    labels[17] = CLASSES + 1; /* == the fixed n_classes */
    assert_int_equal(eb_feedforward_partial_fit(model, x, labels, 0), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_feedforward_last_error(model), "y[17] is 4"));
    after = snapshot_feedforward(model, x);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&after);

    labels[17] = -1;
    assert_int_equal(eb_feedforward_partial_fit(model, x, labels, 0), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_feedforward_last_error(model), "y[17] is -1"));
    after = snapshot_feedforward(model, x);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&after);

    /* A fresh fit may change n_classes: it replaces the old model whole. */
    assert_int_equal(eb_feedforward_fit(model, x, data.y, CLASSES), EB_OK);
    assert_int_equal(eb_feedforward_n_classes(model), CLASSES);
    eb_feedforward_loss_history(model, &length);
    assert_int_equal(length, 30);
    snapshot_release(&before);
    eb_feedforward_free(model);
}

static void contrastive_partial_fit_continues(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_contrastive *model = new_contrastive(5);
    assert_int_equal(eb_contrastive_fit(model, x, data.y, CLASSES), EB_OK);
    model_snapshot before = snapshot_contrastive(model, x);
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, 0), EB_OK);
    model_snapshot after = snapshot_contrastive(model, x);
    assert_int_equal(after.history_length, 6);
    assert_memory_equal(after.history, before.history, 5 * sizeof(double));
    assert_true(memcmp(after.weights, before.weights, before.weight_count * sizeof(float)) != 0);
    assert_true(memcmp(after.embedding, before.embedding, before.embedding_count * sizeof(float)) != 0);

    for (size_t i = 0; i < 60; i++)
        assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, i % 2 ? CLASSES : 0), EB_OK);
    size_t length;
    const double *history = eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 66);
    print_message("contrastive partial_fit loss %.4f after fit, %.4f after 60 more\n", history[4],
                  history[length - 1]);
    assert_true(history[length - 1] < 0.5 * history[4]);
    snapshot_release(&before);
    snapshot_release(&after);
    eb_contrastive_free(model);
}

static void contrastive_partial_fits_equal_full_batch_fit(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_contrastive *stepped = new_contrastive(1);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(eb_contrastive_partial_fit(stepped, x, data.y, i == 0 ? CLASSES : 0), EB_OK);
    eb_contrastive *fitted = new_contrastive(6);
    assert_int_equal(eb_contrastive_fit(fitted, x, data.y, CLASSES), EB_OK);
    model_snapshot a = snapshot_contrastive(stepped, x);
    model_snapshot b = snapshot_contrastive(fitted, x);
    assert_true(snapshots_identical(&a, &b));
    snapshot_release(&a);
    snapshot_release(&b);
    eb_contrastive_free(stepped);
    eb_contrastive_free(fitted);
}

static void contrastive_single_label(void **state)
{
    (void)state;
    dataset data = make_data();
    int32_t ones[ROWS];
    for (size_t i = 0; i < ROWS; i++)
        ones[i] = 1;
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_contrastive *model = new_contrastive(5);

    /* A first fit cannot learn "different" from one label. */
    assert_int_equal(eb_contrastive_fit(model, x, ones, CLASSES), EB_ERR_TOO_FEW_CLASSES);
    assert_non_null(strstr(eb_contrastive_last_error(model), "single label (1)"));
    assert_false(eb_contrastive_is_fitted(model));
    assert_int_equal(eb_contrastive_partial_fit(model, x, ones, CLASSES), EB_ERR_TOO_FEW_CLASSES);
    assert_non_null(strstr(eb_contrastive_last_error(model), "two distinct labels"));
    assert_false(eb_contrastive_is_fitted(model));
    size_t length;
    assert_null(eb_contrastive_loss_history(model, &length));
    assert_int_equal(length, 0);

    /* Once fitted, a batch of one label is fine: it only draws positive pairs. */
    assert_int_equal(eb_contrastive_fit(model, x, data.y, CLASSES), EB_OK);
    model_snapshot before = snapshot_contrastive(model, x);
    assert_int_equal(eb_contrastive_partial_fit(model, x, ones, 0), EB_OK);
    assert_string_equal(eb_contrastive_last_error(model), "");
    model_snapshot after = snapshot_contrastive(model, x);
    assert_int_equal(after.history_length, 6);
    assert_true(memcmp(after.weights, before.weights, before.weight_count * sizeof(float)) != 0);
    /* A single row of a single label pairs with itself. */
    assert_int_equal(eb_contrastive_partial_fit(model, eb_matrix_view(data.x, 1, COLS), ones, 0), EB_OK);
    eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 7);

    /* n_classes is fixed, and labels are checked against it. */
    model_snapshot fixed = snapshot_contrastive(model, x);
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, CLASSES + 2), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_contrastive_last_error(model), "n_classes is 5"));
    int32_t labels[ROWS];
    memcpy(labels, data.y, sizeof labels);
    labels[ROWS - 1] = CLASSES;
    assert_int_equal(eb_contrastive_partial_fit(model, x, labels, 0), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_contrastive_last_error(model), "y[47] is 3"));
    model_snapshot unchanged = snapshot_contrastive(model, x);
    assert_true(snapshots_identical(&fixed, &unchanged));

    snapshot_release(&before);
    snapshot_release(&after);
    snapshot_release(&fixed);
    snapshot_release(&unchanged);
    eb_contrastive_free(model);
}

static void contrastive_partial_fit_from_scratch(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    eb_contrastive *model = new_contrastive(5);
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, 0), EB_ERR_TOO_FEW_CLASSES);
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, CLASSES), EB_OK);
    assert_int_equal(eb_contrastive_n_classes(model), CLASSES);
    assert_int_equal(eb_contrastive_n_features(model), COLS);
    assert_int_equal(eb_contrastive_output_dim(model), 4);
    size_t length;
    eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 1);
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, CLASSES - 1), EB_ERR_LABEL_OUT_OF_RANGE);
    eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 1);
    eb_contrastive_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_partial_fit_continues),
        cmocka_unit_test(feedforward_partial_fits_equal_full_batch_fit),
        cmocka_unit_test(feedforward_partial_fit_from_scratch_fixes_n_classes),
        cmocka_unit_test(contrastive_partial_fit_continues),
        cmocka_unit_test(contrastive_partial_fits_equal_full_batch_fit),
        cmocka_unit_test(contrastive_single_label),
        cmocka_unit_test(contrastive_partial_fit_from_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
