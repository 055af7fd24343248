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

enum { ROWS = 48, COLS = 6, CLASSES = 3, HIDDEN = 4 };

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 3, 2.0, 5); }

/* How each kind trains here: its fit epochs and how many more partial_fit passes halve the loss. */
typedef struct kind_case {
    eb_finetuner_kind kind;
    float learning_rate;
    uint64_t seed;
    size_t fit_epochs, more_passes;
    size_t batch_sizes[2];
} kind_case;

static const kind_case KINDS[N_LABELLED_KINDS] = {
    {EB_KIND_FEEDFORWARD, 0.01f, 21, 10, 150, {0, 10}},
    {EB_KIND_CONTRASTIVE, 0.01f, 22, 5, 60, {0, 0}},
};

static eb_finetuner *new_model(const kind_case *k, size_t n_epochs, size_t batch_size)
{
    eb_finetuner_params params = test_params(k->kind, HIDDEN, n_epochs, k->seed);
    params.learning_rate = k->learning_rate;
    params.batch_size = batch_size;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static eb_status partial_fit(eb_finetuner *model, const test_data *data, size_t n_classes)
{
    return eb_finetuner_partial_fit(model, data_x(data), data->y, n_classes, NULL);
}

/* After fit, each partial_fit appends one loss, keeps the old ones, moves the weights and lowers the loss. */
static void check_continues(const kind_case *k, size_t batch_size)
{
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    const size_t epochs = k->fit_epochs;
    eb_finetuner *model = new_model(k, epochs, batch_size);
    assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);
    model_snapshot before = snapshot_finetuner(model, x);
    assert_int_equal(before.history_length, epochs);

    assert_int_equal(partial_fit(model, &data, 0), EB_OK);
    assert_string_equal(eb_finetuner_last_error(model), "");
    model_snapshot after = snapshot_finetuner(model, x);
    assert_int_equal(after.history_length, epochs + 1);
    assert_memory_equal(after.history, before.history, epochs * sizeof(double));
    assert_true(memcmp(after.weights, before.weights, before.weight_count * sizeof(float)) != 0);
    assert_true(memcmp(after.embedding, before.embedding, before.embedding_count * sizeof(float)) != 0);
    assert_int_equal(eb_finetuner_n_classes(model), CLASSES);

    /* Passing the fitted n_classes explicitly is as good as 0. */
    for (size_t i = 0; i < k->more_passes; i++)
        assert_int_equal(partial_fit(model, &data, i % 2 ? CLASSES : 0), EB_OK);
    size_t length;
    const double *history = eb_finetuner_loss_history(model, &length);
    assert_int_equal(length, epochs + 1 + k->more_passes);
    print_message("%s partial_fit loss %.4f after fit, %.4f after %zu more\n", eb_finetuner_kind_name(k->kind),
                  history[epochs - 1], history[length - 1], k->more_passes);
    assert_true(history[length - 1] < 0.5 * history[epochs - 1]);
    snapshot_release(&before);
    snapshot_release(&after);
    eb_finetuner_free(model);
    data_release(&data);
}

static void partial_fit_continues(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        check_continues(&KINDS[k], KINDS[k].batch_sizes[0]);
        if (KINDS[k].batch_sizes[1] != 0)
            check_continues(&KINDS[k], KINDS[k].batch_sizes[1]);
    }
}

/*
 * Full-batch training consumes no randomness after initialisation (the
 * contrastive pairs are drawn from the same RNG state either way), and
 * partial_fit keeps the weights and Adam state, so k partial_fit calls from
 * scratch must equal a fit of k epochs bit for bit.
 */
static void partial_fits_equal_full_batch_fit(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        eb_finetuner *stepped = new_model(&KINDS[k], 1, 0);
        for (size_t i = 0; i < 6; i++)
            assert_int_equal(partial_fit(stepped, &data, i == 0 ? CLASSES : 0), EB_OK);
        eb_finetuner *fitted = new_model(&KINDS[k], 6, 0);
        assert_int_equal(eb_finetuner_fit(fitted, data_x(&data), data.y, CLASSES, NULL), EB_OK);
        model_snapshot a = snapshot_finetuner(stepped, data_x(&data));
        model_snapshot b = snapshot_finetuner(fitted, data_x(&data));
        /* Only n_epochs differs between the two. */
        assert_true(fits_identical(&a, &b));
        snapshot_release(&a);
        snapshot_release(&b);
        eb_finetuner_free(stepped);
        eb_finetuner_free(fitted);
    }
    data_release(&data);
}

static void partial_fit_from_scratch_fixes_n_classes(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        eb_finetuner *model = new_model(&KINDS[k], 30, 0);

        /* The first call has nothing to fall back on, so n_classes 0 is refused. */
        assert_int_equal(partial_fit(model, &data, 0), EB_ERR_TOO_FEW_CLASSES);
        assert_non_null(strstr(eb_finetuner_last_error(model), "n_classes"));
        assert_false(eb_finetuner_is_fitted(model));

        /* One more class than the labels use: allowed, and fixed from now on. */
        assert_int_equal(partial_fit(model, &data, CLASSES + 1), EB_OK);
        assert_true(eb_finetuner_is_fitted(model));
        assert_int_equal(eb_finetuner_n_classes(model), CLASSES + 1);
        assert_int_equal(eb_finetuner_n_features(model), COLS);
        assert_int_equal(eb_finetuner_output_dim(model), HIDDEN);
        size_t length;
        eb_finetuner_loss_history(model, &length);
        assert_int_equal(length, 1);

        model_snapshot before = snapshot_finetuner(model, x);
        assert_int_equal(partial_fit(model, &data, CLASSES), EB_ERR_LABEL_OUT_OF_RANGE);
        const char *message = eb_finetuner_last_error(model);
        assert_non_null(strstr(message, "n_classes is 3"));
        assert_non_null(strstr(message, "fitted with 4"));
        model_snapshot after = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);

        int32_t labels[ROWS];
        memcpy(labels, data.y, sizeof labels);
        labels[17] = CLASSES + 1; /* == the fixed n_classes */
        assert_int_equal(eb_finetuner_partial_fit(model, x, labels, 0, NULL), EB_ERR_LABEL_OUT_OF_RANGE);
        assert_non_null(strstr(eb_finetuner_last_error(model), "y[17] is 4"));
        after = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);

        labels[17] = -1;
        assert_int_equal(eb_finetuner_partial_fit(model, x, labels, 0, NULL), EB_ERR_LABEL_OUT_OF_RANGE);
        assert_non_null(strstr(eb_finetuner_last_error(model), "y[17] is -1"));
        after = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);

        /* A fresh fit may change n_classes: it replaces the old model whole. */
        assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);
        assert_int_equal(eb_finetuner_n_classes(model), CLASSES);
        eb_finetuner_loss_history(model, &length);
        assert_int_equal(length, 30);
        snapshot_release(&before);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

static void contrastive_single_label(void **state)
{
    (void)state;
    test_data data = shared_data();
    int32_t ones[ROWS];
    for (size_t i = 0; i < ROWS; i++)
        ones[i] = 1;
    eb_matrix x = data_x(&data);
    eb_finetuner *model = new_model(&KINDS[1], 5, 0);

    /* A first fit cannot learn "different" from one label. */
    assert_int_equal(eb_finetuner_fit(model, x, ones, CLASSES, NULL), EB_ERR_TOO_FEW_CLASSES);
    assert_non_null(strstr(eb_finetuner_last_error(model), "single label (1)"));
    assert_false(eb_finetuner_is_fitted(model));
    assert_int_equal(eb_finetuner_partial_fit(model, x, ones, CLASSES, NULL), EB_ERR_TOO_FEW_CLASSES);
    assert_non_null(strstr(eb_finetuner_last_error(model), "two distinct labels"));
    assert_false(eb_finetuner_is_fitted(model));
    size_t length;
    assert_null(eb_finetuner_loss_history(model, &length));
    assert_int_equal(length, 0);

    /* Once fitted, a batch of one label is fine: it only draws positive pairs. */
    assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);
    model_snapshot before = snapshot_finetuner(model, x);
    assert_int_equal(eb_finetuner_partial_fit(model, x, ones, 0, NULL), EB_OK);
    assert_string_equal(eb_finetuner_last_error(model), "");
    model_snapshot after = snapshot_finetuner(model, x);
    assert_int_equal(after.history_length, 6);
    assert_true(memcmp(after.weights, before.weights, before.weight_count * sizeof(float)) != 0);
    /* A single row of a single label pairs with itself. */
    assert_int_equal(eb_finetuner_partial_fit(model, eb_matrix_view(data.x, 1, COLS), ones, 0, NULL), EB_OK);
    eb_finetuner_loss_history(model, &length);
    assert_int_equal(length, 7);

    /* n_classes is fixed, and labels are checked against it. */
    model_snapshot fixed = snapshot_finetuner(model, x);
    assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, CLASSES + 2, NULL), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_finetuner_last_error(model), "n_classes is 5"));
    int32_t labels[ROWS];
    memcpy(labels, data.y, sizeof labels);
    labels[ROWS - 1] = CLASSES;
    assert_int_equal(eb_finetuner_partial_fit(model, x, labels, 0, NULL), EB_ERR_LABEL_OUT_OF_RANGE);
    assert_non_null(strstr(eb_finetuner_last_error(model), "y[47] is 3"));
    model_snapshot unchanged = snapshot_finetuner(model, x);
    assert_true(snapshots_identical(&fixed, &unchanged));

    snapshot_release(&before);
    snapshot_release(&after);
    snapshot_release(&fixed);
    snapshot_release(&unchanged);
    eb_finetuner_free(model);
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partial_fit_continues),
        cmocka_unit_test(partial_fits_equal_full_batch_fit),
        cmocka_unit_test(partial_fit_from_scratch_fixes_n_classes),
        cmocka_unit_test(contrastive_single_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
