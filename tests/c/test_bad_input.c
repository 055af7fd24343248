/*
 * Every kind of bad input gets its own status and a message naming the
 * problem (row and column, column counts, parameter), and a failed call
 * leaves a fitted model bit-for-bit as it was (weights, transform output,
 * loss history). Every kind runs the same checks from one table of kinds,
 * so none is forgotten.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "testing.h"

enum { ROWS = 30, COLS = 6, CLASSES = 3, HIDDEN = 4, PAD = 3 };

/* ---- the finetuners under test ---------------------------------------------------- */

static eb_finetuner *create_unfitted(eb_finetuner_kind kind)
{
    eb_finetuner_params params = test_params(kind, HIDDEN, kind == EB_KIND_FEEDFORWARD ? 15 : 5, 1);
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

/* ---- data and checks ---------------------------------------------------------- */

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 3, 2.0, 2024); }

/* A copy of the rows of data, to poison. */
static float *copy_x(const test_data *data)
{
    float *x = malloc(ROWS * COLS * sizeof *x);
    assert_non_null(x);
    memcpy(x, data->x, ROWS * COLS * sizeof *x);
    return x;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (needle == NULL)
        return;
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", haystack, needle);
}

typedef enum training_call { CALL_FIT, CALL_PARTIAL_FIT } training_call;

/*
 * Run fit or partial_fit, expect `status` and a last_error message holding
 * both needles, and expect the model to look exactly as before.
 */
static void expect_training_rejected(eb_finetuner_kind kind, eb_finetuner *model, training_call call, eb_matrix x,
                                     const int32_t *y, size_t n_classes, eb_status status, const char *needle,
                                     const char *needle2, eb_matrix probe)
{
    model_snapshot before = snapshot_finetuner(model, probe);
    eb_status got = call == CALL_FIT ? eb_finetuner_fit(model, x, y, n_classes, NULL) : eb_finetuner_partial_fit(model, x, y, n_classes, NULL);
    if (got != status)
        fail_msg("%s %s: got %s, expected %s (%s)", eb_finetuner_kind_name(kind), call == CALL_FIT ? "fit" : "partial_fit",
                 eb_status_string(got), eb_status_string(status), eb_finetuner_last_error(model));
    assert_contains(eb_finetuner_last_error(model), needle);
    assert_contains(eb_finetuner_last_error(model), needle2);
    model_snapshot after = snapshot_finetuner(model, probe);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
}

/* Both fit and partial_fit must reject the input the same way. */
static void expect_both_rejected(eb_finetuner_kind kind, eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes,
                                 eb_status status, const char *needle, const char *needle2, eb_matrix probe)
{
    expect_training_rejected(kind, model, CALL_FIT, x, y, n_classes, status, needle, needle2, probe);
    expect_training_rejected(kind, model, CALL_PARTIAL_FIT, x, y, n_classes, status, needle, needle2, probe);
}

/*
 * transform must fail with `status` and fill err with it and the needles. A
 * failed check of shapes or layout writes nothing to out; a non-finite value
 * is found during the product, so out's content is then unspecified.
 */
static void expect_transform_rejected(eb_finetuner_kind kind, eb_finetuner *model, eb_matrix x, eb_mut_matrix out,
                                      eb_status status, const char *needle, const char *needle2, eb_matrix probe)
{
    model_snapshot before = snapshot_finetuner(model, probe);
    size_t out_floats = out.data == NULL ? 0 : (out.rows == 0 ? 0 : (out.rows - 1) * out.stride + out.cols);
    float *copy = NULL;
    if (out_floats > 0) {
        copy = malloc(out_floats * sizeof *copy);
        assert_non_null(copy);
        memcpy(copy, out.data, out_floats * sizeof *copy);
    }
    eb_error err;
    err.status = EB_OK;
    snprintf(err.message, sizeof err.message, "stale");
    eb_status got = eb_finetuner_transform(model, x, out, &err);
    if (got != status)
        fail_msg("%s transform: got %s, expected %s (%s)", eb_finetuner_kind_name(kind), eb_status_string(got), eb_status_string(status),
                 err.message);
    assert_int_equal(err.status, status);
    assert_contains(err.message, needle);
    assert_contains(err.message, needle2);
    if (out_floats > 0 && status != EB_ERR_NONFINITE)
        assert_memory_equal(copy, out.data, out_floats * sizeof *copy);
    /* Without an eb_error the call must fail the same way. */
    assert_int_equal(eb_finetuner_transform(model, x, out, NULL), status);
    model_snapshot after = snapshot_finetuner(model, probe);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
    free(copy);
}

/* ---- bad training input -------------------------------------------------------- */

static void check_training_input(eb_finetuner_kind kind)
{
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    eb_finetuner *model = create_unfitted(kind);
    /* Unfitted and fitted models alike must reject and stay as they are. */
    for (int fitted = 0; fitted <= 1; fitted++) {
        if (fitted)
            assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);

        eb_status null_model = eb_finetuner_fit(NULL, x, data.y, CLASSES, NULL);
        assert_int_equal(null_model, EB_ERR_NULL_POINTER);
        assert_int_equal(eb_finetuner_partial_fit(NULL, x, data.y, CLASSES, NULL), EB_ERR_NULL_POINTER);
        /* A NULL handle has no message to keep: the status alone says it. */
        assert_string_equal(eb_finetuner_last_error(NULL), "");

        eb_matrix no_data = x;
        no_data.data = NULL;
        expect_both_rejected(kind, model, no_data, data.y, CLASSES, EB_ERR_NULL_POINTER, "X.data", NULL, x);
        expect_both_rejected(kind, model, x, NULL, CLASSES, EB_ERR_NULL_POINTER, "y is NULL", NULL, x);

        eb_matrix no_rows = eb_matrix_view(data.x, 0, COLS);
        expect_both_rejected(kind, model, no_rows, data.y, CLASSES, EB_ERR_EMPTY_INPUT, "0 rows", NULL, x);
        eb_matrix no_cols = eb_matrix_view(data.x, ROWS, 0);
        expect_both_rejected(kind, model, no_cols, data.y, CLASSES, EB_ERR_EMPTY_INPUT, "0 columns", NULL, x);

        eb_matrix short_stride = x;
        short_stride.stride = COLS - 1;
        expect_both_rejected(kind, model, short_stride, data.y, CLASSES, EB_ERR_SHAPE_MISMATCH, "stride of 5",
                             "6 columns", x);

        int32_t labels[ROWS];
        memcpy(labels, data.y, sizeof labels);
        labels[11] = -1;
        expect_both_rejected(kind, model, x, labels, CLASSES, EB_ERR_LABEL_OUT_OF_RANGE, "y[11] is -1", "3 classes",
                             x);
        labels[11] = CLASSES;
        expect_both_rejected(kind, model, x, labels, CLASSES, EB_ERR_LABEL_OUT_OF_RANGE, "y[11] is 3", "0..2", x);
        labels[11] = INT32_MIN;
        expect_both_rejected(kind, model, x, labels, CLASSES, EB_ERR_LABEL_OUT_OF_RANGE, "y[11]", NULL, x);

        /* A fresh fit needs classes; a fitted model's partial_fit takes 0 as "the fitted n_classes". */
        expect_training_rejected(kind, model, CALL_FIT, x, data.y, 0, EB_ERR_TOO_FEW_CLASSES, "n_classes is 0", NULL,
                                 x);
        if (!fitted)
            expect_training_rejected(kind, model, CALL_PARTIAL_FIT, x, data.y, 0, EB_ERR_TOO_FEW_CLASSES,
                                     "n_classes is 0", NULL, x);

        /* Non-finite values, each at its own place, named by row and column. */
        static const struct {
            size_t row, col;
            float value;
            const char *word;
        } bad_values[] = {
            {7, 2, NAN, "NaN"},
            {0, 0, INFINITY, "+Inf"},
            {ROWS - 1, COLS - 1, -INFINITY, "-Inf"},
        };
        for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
            float *poisoned = copy_x(&data);
            poisoned[bad_values[i].row * COLS + bad_values[i].col] = bad_values[i].value;
            char place[64];
            snprintf(place, sizeof place, "row %zu, column %zu", bad_values[i].row, bad_values[i].col);
            expect_both_rejected(kind, model, eb_matrix_view(poisoned, ROWS, COLS), data.y, CLASSES,
                                 EB_ERR_NONFINITE, place, bad_values[i].word, x);
            free(poisoned);
        }
    }

    /* A fitted model fixes the column count for partial_fit (fit may change it). */
    float wider[ROWS * (COLS + 1)];
    for (size_t i = 0; i < ROWS * (COLS + 1); i++)
        wider[i] = (float)(i % 13) * 0.1f;
    expect_training_rejected(kind, model, CALL_PARTIAL_FIT, eb_matrix_view(wider, ROWS, COLS + 1), data.y, 0,
                             EB_ERR_SHAPE_MISMATCH, "X has 7 columns", "fitted on 6", x);
    expect_training_rejected(kind, model, CALL_PARTIAL_FIT, eb_matrix_view(data.x, ROWS, COLS - 1), data.y, 0,
                             EB_ERR_SHAPE_MISMATCH, "X has 5 columns", "fitted on 6", x);
    expect_training_rejected(kind, model, CALL_PARTIAL_FIT, x, data.y, CLASSES + 1, EB_ERR_LABEL_OUT_OF_RANGE,
                             "n_classes is 4", "fitted with 3", x);

    /* After all those failures the model still trains, and a success clears the message. */
    assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, NULL), EB_OK);
    assert_string_equal(eb_finetuner_last_error(model), "");
    assert_int_equal(eb_finetuner_fit(model, eb_matrix_view(wider, ROWS, COLS + 1), data.y, CLASSES, NULL), EB_OK);
    eb_finetuner_free(model);
    data_release(&data);
}

static void bad_training_input_is_rejected(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++)
        check_training_input(LABELLED_KINDS[k]);
}

/* ---- bad transform input ------------------------------------------------------- */

static void check_transform_input(eb_finetuner_kind kind)
{
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    float out_data[(ROWS + 1) * (HIDDEN + 1)];
    for (size_t i = 0; i < sizeof out_data / sizeof out_data[0]; i++)
        out_data[i] = 12345.0f;
    eb_mut_matrix out = eb_mut_matrix_view(out_data, ROWS, HIDDEN);
    eb_finetuner *model = create_unfitted(kind);

    expect_transform_rejected(kind, model, x, out, EB_ERR_NOT_FITTED, "not fitted", NULL, x);
    /* A failed fit does not make a model fitted. */
    if (kind == EB_KIND_PAIR_LEARNER) {
        eb_pairs none = data_pairs(&data);
        none.count = 0;
        assert_int_equal(eb_finetuner_fit_pairs(model, none), EB_ERR_EMPTY_INPUT);
    } else {
        assert_int_equal(eb_finetuner_fit(model, x, data.y, 0, NULL), EB_ERR_TOO_FEW_CLASSES);
    }
    expect_transform_rejected(kind, model, x, out, EB_ERR_NOT_FITTED, "not fitted", NULL, x);

    assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);

    eb_error err;
    assert_int_equal(eb_finetuner_transform(NULL, x, out, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(err.status, EB_ERR_NULL_POINTER);
    assert_contains(err.message, "model is NULL");

    eb_matrix no_data = x;
    no_data.data = NULL;
    expect_transform_rejected(kind, model, no_data, out, EB_ERR_NULL_POINTER, "X.data", NULL, x);
    eb_mut_matrix no_out = out;
    no_out.data = NULL;
    expect_transform_rejected(kind, model, x, no_out, EB_ERR_NULL_POINTER, "out.data", NULL, x);

    expect_transform_rejected(kind, model, eb_matrix_view(data.x, 0, COLS), eb_mut_matrix_view(out_data, 0, HIDDEN),
                              EB_ERR_EMPTY_INPUT, "0 rows", NULL, x);
    expect_transform_rejected(kind, model, eb_matrix_view(data.x, ROWS, 0), out, EB_ERR_EMPTY_INPUT, "0 columns", NULL,
                              x);
    eb_matrix short_stride = x;
    short_stride.stride = 2;
    expect_transform_rejected(kind, model, short_stride, out, EB_ERR_SHAPE_MISMATCH, "stride of 2", "6 columns", x);

    float wider[ROWS * (COLS + 2)];
    for (size_t i = 0; i < ROWS * (COLS + 2); i++)
        wider[i] = 0.5f;
    expect_transform_rejected(kind, model, eb_matrix_view(wider, ROWS, COLS + 2), out, EB_ERR_SHAPE_MISMATCH,
                              "X has 8 columns", "fitted on 6", x);
    expect_transform_rejected(kind, model, eb_matrix_view(data.x, ROWS, COLS - 2), out, EB_ERR_SHAPE_MISMATCH,
                              "X has 4 columns", "fitted on 6", x);

    static const struct {
        size_t row, col;
        float value;
        const char *word;
    } bad_values[] = {
        {3, 4, NAN, "NaN"},
        {ROWS - 1, 0, INFINITY, "+Inf"},
        {12, COLS - 1, -INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        float *poisoned = copy_x(&data);
        poisoned[bad_values[i].row * COLS + bad_values[i].col] = bad_values[i].value;
        char place[64];
        snprintf(place, sizeof place, "row %zu, column %zu", bad_values[i].row, bad_values[i].col);
        expect_transform_rejected(kind, model, eb_matrix_view(poisoned, ROWS, COLS), out, EB_ERR_NONFINITE, place,
                                  bad_values[i].word, x);
        free(poisoned);
    }

    /* Output of the wrong shape: rows, columns, stride. */
    expect_transform_rejected(kind, model, x, eb_mut_matrix_view(out_data, ROWS + 1, HIDDEN), EB_ERR_SHAPE_MISMATCH,
                              "out is 31 x 4", "needs 30 x 4", x);
    expect_transform_rejected(kind, model, x, eb_mut_matrix_view(out_data, ROWS - 1, HIDDEN), EB_ERR_SHAPE_MISMATCH,
                              "out is 29 x 4", "needs 30 x 4", x);
    expect_transform_rejected(kind, model, x, eb_mut_matrix_view(out_data, ROWS, HIDDEN + 1), EB_ERR_SHAPE_MISMATCH,
                              "out is 30 x 5", "needs 30 x 4", x);
    expect_transform_rejected(kind, model, x, eb_mut_matrix_view(out_data, ROWS, HIDDEN - 1), EB_ERR_SHAPE_MISMATCH,
                              "out is 30 x 3", "needs 30 x 4", x);
    eb_mut_matrix short_out = out;
    short_out.stride = HIDDEN - 1;
    expect_transform_rejected(kind, model, x, short_out, EB_ERR_SHAPE_MISMATCH, "out has a row stride of 3",
                              "4 columns", x);

    /* A successful call clears a stale error. */
    snprintf(err.message, sizeof err.message, "stale");
    err.status = EB_ERR_NOMEM;
    assert_int_equal(eb_finetuner_transform(model, x, out, &err), EB_OK);
    assert_int_equal(err.status, EB_OK);
    assert_string_equal(err.message, "");
    eb_finetuner_free(model);
    data_release(&data);
}

static void bad_transform_input_is_rejected(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_ALL_KINDS; k++)
        check_transform_input(ALL_KINDS[k]);
}

/* ---- strided views --------------------------------------------------------------- */

/*
 * Training and transforming through views whose stride exceeds their column
 * count must equal doing so on contiguous copies. The padding holds NaN, so
 * reading it anywhere would also be caught by the input check or the result.
 */
static void check_strided_views(eb_finetuner_kind kind)
{
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    const size_t stride = COLS + PAD;
    float padded[ROWS * (COLS + PAD)];
    for (size_t r = 0; r < ROWS; r++) {
        memcpy(padded + r * stride, data.x + r * COLS, COLS * sizeof(float));
        for (size_t c = COLS; c < stride; c++)
            padded[r * stride + c] = NAN;
    }
    eb_matrix strided = {padded, ROWS, COLS, stride};

    eb_finetuner *contiguous_model = create_unfitted(kind);
    eb_finetuner *strided_model = create_unfitted(kind);
    assert_int_equal(eb_finetuner_fit(contiguous_model, x, data.y, CLASSES, NULL), EB_OK);
    assert_int_equal(eb_finetuner_fit(strided_model, strided, data.y, CLASSES, NULL), EB_OK);
    assert_int_equal(eb_finetuner_partial_fit(contiguous_model, x, data.y, 0, NULL), EB_OK);
    assert_int_equal(eb_finetuner_partial_fit(strided_model, strided, data.y, 0, NULL), EB_OK);
    model_snapshot a = snapshot_finetuner(contiguous_model, x);
    model_snapshot b = snapshot_finetuner(strided_model, x);
    assert_int_equal(a.transform_status, EB_OK);
    assert_true(snapshots_identical(&a, &b));

    /* Strided input into a strided output: the same values, padding of the output untouched. */
    const size_t out_stride = HIDDEN + 2;
    float out_padded[ROWS * (HIDDEN + 2)];
    for (size_t i = 0; i < ROWS * out_stride; i++)
        out_padded[i] = -7.0f;
    eb_mut_matrix out = {out_padded, ROWS, HIDDEN, out_stride};
    assert_int_equal(eb_finetuner_transform(contiguous_model, strided, out, NULL), EB_OK);
    for (size_t r = 0; r < ROWS; r++) {
        assert_memory_equal(out_padded + r * out_stride, a.embedding + r * HIDDEN, HIDDEN * sizeof(float));
        for (size_t c = HIDDEN; c < out_stride; c++)
            assert_true(out_padded[r * out_stride + c] == -7.0f);
    }
    /* A view of a subset of rows and columns of a wider matrix: every other row. */
    eb_matrix every_other = {data.x, ROWS / 2, COLS, 2 * COLS};
    float gathered[(ROWS / 2) * COLS], out_view[(ROWS / 2) * HIDDEN], out_copy[(ROWS / 2) * HIDDEN];
    for (size_t r = 0; r < ROWS / 2; r++)
        memcpy(gathered + r * COLS, data.x + 2 * r * COLS, COLS * sizeof(float));
    assert_int_equal(eb_finetuner_transform(strided_model, every_other, eb_mut_matrix_view(out_view, ROWS / 2, HIDDEN), NULL),
                     EB_OK);
    assert_int_equal(eb_finetuner_transform(strided_model, eb_matrix_view(gathered, ROWS / 2, COLS),
                                    eb_mut_matrix_view(out_copy, ROWS / 2, HIDDEN), NULL),
                     EB_OK);
    assert_memory_equal(out_view, out_copy, sizeof out_view);
    snapshot_release(&a);
    snapshot_release(&b);
    eb_finetuner_free(contiguous_model);
    eb_finetuner_free(strided_model);
    data_release(&data);
}

static void strided_views_match_contiguous(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++)
        check_strided_views(LABELLED_KINDS[k]);
}

/* ---- parameters and create --------------------------------------------------- */

static void expect_param_error(eb_status got, const eb_error *err, const char *needle)
{
    assert_int_equal(got, EB_ERR_INVALID_PARAM);
    assert_int_equal(err->status, EB_ERR_INVALID_PARAM);
    assert_contains(err->message, needle);
}

static const float BAD_RATES[] = {0.0f, -0.01f, NAN, INFINITY, -INFINITY};

/* What every kind refuses in its params, and what it keeps of valid ones. */
static void check_params_of_kind(eb_finetuner_kind kind)
{
    eb_error err;
    eb_finetuner *model = (eb_finetuner *)&err; /* any non-NULL value: create must reset it */
    eb_finetuner_params params = eb_finetuner_default_params(kind);
    assert_int_equal(params.kind, kind);
    assert_int_equal(eb_finetuner_check_params(&params, &err), EB_OK);
    assert_string_equal(err.message, "");

    params.hidden_dim = 0;
    expect_param_error(eb_finetuner_check_params(&params, &err), &err, "hidden_dim is 0");
    expect_param_error(eb_finetuner_create(&params, NULL, &model, &err), &err, "hidden_dim");
    assert_null(model);

    params = eb_finetuner_default_params(kind);
    params.n_epochs = 0;
    expect_param_error(eb_finetuner_create(&params, NULL, &model, &err), &err, "n_epochs is 0");
    assert_null(model);

    for (size_t i = 0; i < sizeof BAD_RATES / sizeof BAD_RATES[0]; i++) {
        params = eb_finetuner_default_params(kind);
        params.learning_rate = BAD_RATES[i];
        expect_param_error(eb_finetuner_check_params(&params, &err), &err, "learning_rate");
        expect_param_error(eb_finetuner_create(&params, NULL, &model, &err), &err, "learning_rate");
        assert_null(model);
    }

    /* A field of another kind is refused by name rather than ignored; the kind's own takes its range. */
    params = eb_finetuner_default_params(kind);
    params.n_neg = kind == EB_KIND_CONTRASTIVE ? 0 : 3;
    expect_param_error(eb_finetuner_check_params(&params, &err), &err, "n_neg");
    if (kind == EB_KIND_CONTRASTIVE)
        assert_non_null(strstr(err.message, "n_neg is 0"));
    else
        assert_non_null(strstr(err.message, "applies to contrastive finetuners only"));
    expect_param_error(eb_finetuner_create(&params, NULL, &model, &err), &err, "n_neg");
    assert_null(model);
    if (kind != EB_KIND_PAIR_LEARNER) {
        params = eb_finetuner_default_params(kind);
        params.layers = EB_PAIR_LINEAR_RELU_LINEAR;
        expect_param_error(eb_finetuner_check_params(&params, &err), &err, "layers");
        assert_non_null(strstr(err.message, "applies to pair learners only"));
        expect_param_error(eb_finetuner_create(&params, NULL, &model, &err), &err, "layers");
        assert_null(model);
    }

    params = eb_finetuner_default_params(kind);
    eb_allocator broken = *eb_default_allocator();
    broken.calloc = NULL;
    assert_int_equal(eb_finetuner_create(&params, &broken, &model, &err), EB_ERR_NULL_POINTER);
    assert_contains(err.message, "calloc");
    assert_null(model);
    broken = *eb_default_allocator();
    broken.free = NULL;
    assert_int_equal(eb_finetuner_create(&params, &broken, &model, &err), EB_ERR_NULL_POINTER);
    assert_contains(err.message, "free");
    assert_null(model);
    /* Without an eb_error the status alone comes back. */
    params.hidden_dim = 0;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_ERR_INVALID_PARAM);

    /* Valid params are kept as given. */
    params = eb_finetuner_default_params(kind);
    params.hidden_dim = 7;
    params.seed = 123;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, &err), EB_OK);
    assert_int_equal(eb_finetuner_kind_of(model), kind);
    assert_int_equal(eb_finetuner_get_params(model).kind, kind);
    assert_int_equal(eb_finetuner_get_params(model).hidden_dim, 7);
    assert_int_equal(eb_finetuner_get_params(model).seed, 123);
    assert_int_equal(eb_finetuner_output_dim(model), 7);
    assert_false(eb_finetuner_is_fitted(model));
    size_t length = 99;
    assert_null(eb_finetuner_loss_history(model, &length));
    assert_int_equal(length, 0);
    eb_finetuner_free(model);
}

static void bad_params_are_rejected(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_ALL_KINDS; k++)
        check_params_of_kind(ALL_KINDS[k]);

    /* The defaults each kind documents. */
    eb_finetuner_params ff = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    assert_int_equal(ff.hidden_dim, 50);
    assert_int_equal(ff.n_epochs, 500);
    assert_true(ff.learning_rate == 0.01f);
    assert_int_equal(ff.batch_size, 0);
    assert_int_equal(ff.n_neg, 0);
    eb_finetuner_params cl = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    assert_int_equal(cl.hidden_dim, EB_HIDDEN_DIM_AS_INPUT);
    assert_int_equal(cl.n_epochs, 20);
    assert_true(cl.learning_rate == 0.001f);
    assert_int_equal(cl.n_neg, 3);
    assert_int_equal(cl.layers, EB_PAIR_LINEAR);
    /* The pair learner's defaults are test_pair_learner's. */

    /* An unknown kind gives params every call refuses, naming the kind. */
    eb_error err;
    eb_finetuner *model = (eb_finetuner *)&err;
    eb_finetuner_params unknown = eb_finetuner_default_params((eb_finetuner_kind)9);
    assert_int_equal(unknown.kind, 9);
    assert_int_equal(unknown.hidden_dim, 0);
    assert_int_equal(unknown.n_epochs, 0);
    expect_param_error(eb_finetuner_check_params(&unknown, &err), &err, "kind is 9");
    expect_param_error(eb_finetuner_create(&unknown, NULL, &model, &err), &err, "kind is 9");
    assert_null(model);
    unknown = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    unknown.kind = (eb_finetuner_kind)0;
    expect_param_error(eb_finetuner_check_params(&unknown, &err), &err, "kind is 0");
    assert_string_equal(eb_finetuner_kind_name((eb_finetuner_kind)0), "unknown");
    assert_string_equal(eb_finetuner_kind_name(EB_KIND_FEEDFORWARD), "feedforward");
    assert_string_equal(eb_finetuner_kind_name(EB_KIND_CONTRASTIVE), "contrastive");
    assert_string_equal(eb_finetuner_kind_name(EB_KIND_PAIR_LEARNER), "pair_learner");

    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    assert_int_equal(eb_finetuner_check_params(NULL, &err), EB_ERR_NULL_POINTER);
    assert_contains(err.message, "params");
    assert_int_equal(eb_finetuner_create(NULL, NULL, &model, &err), EB_ERR_NULL_POINTER);
    assert_contains(err.message, "params");
    assert_null(model);
    assert_int_equal(eb_finetuner_create(&params, NULL, NULL, &err), EB_ERR_NULL_POINTER);
    assert_contains(err.message, "out");

    /* The queries tolerate NULL; free(NULL) is a no-op. */
    assert_false(eb_finetuner_is_fitted(NULL));
    assert_int_equal(eb_finetuner_kind_of(NULL), 0);
    assert_int_equal(eb_finetuner_n_features(NULL), 0);
    assert_int_equal(eb_finetuner_n_classes(NULL), 0);
    assert_int_equal(eb_finetuner_output_dim(NULL), 0);
    assert_int_equal(eb_finetuner_saved_size(NULL), 0);
    assert_string_equal(eb_finetuner_last_error(NULL), "");
    size_t length = 99;
    assert_null(eb_finetuner_loss_history(NULL, &length));
    assert_int_equal(length, 0);
    eb_finetuner_free(NULL);

    /* "As wide as the input" has no width until fitted, then the column count. */
    params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, &err), EB_OK);
    assert_int_equal(eb_finetuner_output_dim(model), 0);
    test_data data = shared_data();
    assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, NULL), EB_OK);
    assert_int_equal(eb_finetuner_output_dim(model), COLS);
    assert_int_equal(eb_finetuner_get_params(model).hidden_dim, EB_HIDDEN_DIM_AS_INPUT);
    eb_finetuner_free(model);
    data_release(&data);
    /* The feed-forward hidden layer has no such width. */
    params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = EB_HIDDEN_DIM_AS_INPUT;
    expect_param_error(eb_finetuner_check_params(&params, &err), &err, "hidden_dim");
}

/* ---- sizes beyond what BLAS's int dimensions allow --------------------------- */

/*
 * Views claiming more rows than fit in an int are refused from their shape
 * alone, before any element is read, so a small buffer can stand in for them.
 */
static void oversized_inputs_are_refused(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    const size_t beyond_int = (size_t)INT32_MAX + 1;
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        eb_finetuner_kind kind = LABELLED_KINDS[k];
        eb_finetuner *model = create_unfitted(kind);
        assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);
        eb_matrix huge = eb_matrix_view(data.x, beyond_int, COLS);
        expect_both_rejected(kind, model, huge, data.y, CLASSES, EB_ERR_TOO_LARGE, "too large", NULL, x);
        float out_data[ROWS * HIDDEN] = {0};
        expect_transform_rejected(kind, model, huge, eb_mut_matrix_view(out_data, ROWS, HIDDEN), EB_ERR_TOO_LARGE,
                                  "too large", NULL, x);
        eb_matrix wide_stride = {data.x, 1, COLS, beyond_int};
        expect_both_rejected(kind, model, wide_stride, data.y, CLASSES, EB_ERR_TOO_LARGE, "stride", NULL, x);
        eb_finetuner_free(model);
    }

    /* More classes than BLAS can index: every label is valid, the weight matrix is not. */
    eb_finetuner *model = create_unfitted(EB_KIND_FEEDFORWARD);
    assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_OK);
    expect_training_rejected(EB_KIND_FEEDFORWARD, model, CALL_FIT, x, data.y, beyond_int, EB_ERR_TOO_LARGE,
                             "too many weights", NULL, x);
    eb_finetuner_free(model);
    data_release(&data);

    eb_error err;
    eb_finetuner_params ff_params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    ff_params.hidden_dim = beyond_int;
    expect_param_error(eb_finetuner_check_params(&ff_params, &err), &err, "hidden_dim is 2147483648");
    eb_finetuner_params cl_params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    cl_params.hidden_dim = beyond_int;
    expect_param_error(eb_finetuner_check_params(&cl_params, &err), &err, "hidden_dim is 2147483648");
}

/* ---- status strings and version ------------------------------------------------ */

/*
 * The feed-forward transform finds bad values of X during the product, slice
 * by slice (512 rows), from the pre-activations they poison: check it across
 * slices, with a weight of exactly zero (infinity times zero is NaN) and with
 * an overflowing row before the bad value, which must not hide it.
 */
enum { MANY_ROWS = 1500 };

static void expect_nonfinite(eb_finetuner *model, const float *x, const char *needle)
{
    static float out[MANY_ROWS * HIDDEN];
    eb_error err;
    eb_status status = eb_finetuner_transform(model, eb_matrix_view(x, MANY_ROWS, COLS),
                                                eb_mut_matrix_view(out, MANY_ROWS, HIDDEN), &err);
    if (status != EB_ERR_NONFINITE)
        fail_msg("transform: got %s, expected EB_ERR_NONFINITE mentioning \"%s\" (%s)", eb_status_string(status),
                 needle, err.message);
    assert_contains(err.message, needle);
}

static void feedforward_transform_checks_values_in_every_slice(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_finetuner *model = create_unfitted(EB_KIND_FEEDFORWARD);
    assert_int_equal(eb_finetuner_fit(model, eb_matrix_view(data.x, ROWS, COLS), data.y, CLASSES, NULL), EB_OK);
    static float x[MANY_ROWS * COLS], out[MANY_ROWS * HIDDEN];
    for (size_t r = 0; r < MANY_ROWS; r++)
        memcpy(x + r * COLS, data.x + (r % ROWS) * COLS, COLS * sizeof(float));
    eb_matrix view = eb_matrix_view(x, MANY_ROWS, COLS);
    eb_mut_matrix out_view = eb_mut_matrix_view(out, MANY_ROWS, HIDDEN);
    assert_int_equal(eb_finetuner_transform(model, view, out_view, NULL), EB_OK);

    x[1300 * COLS + 2] = INFINITY;
    expect_nonfinite(model, x, "X[1300, 2] is +Inf");
    x[700 * COLS + 5] = NAN;
    expect_nonfinite(model, x, "X[700, 5] is NaN");
    x[700 * COLS + 5] = data.x[(700 % ROWS) * COLS + 5];
    x[1300 * COLS + 2] = data.x[(1300 % ROWS) * COLS + 2];

    /* Input 1 feeds no hidden unit: its infinity becomes NaN, not infinity, in every pre-activation. */
    size_t count;
    float *w = eb__finetuner_weights(model, &count);
    memset(w + 1 * HIDDEN, 0, HIDDEN * sizeof(float));
    x[900 * COLS + 1] = -INFINITY;
    expect_nonfinite(model, x, "X[900, 1] is -Inf");
    x[900 * COLS + 1] = data.x[(900 % ROWS) * COLS + 1];

    /* With every weight 1, a row of 3e38 overflows; a NaN further down X is still what is reported. */
    for (size_t i = 0; i < COLS * HIDDEN; i++)
        w[i] = 1.0f;
    for (size_t c = 0; c < COLS; c++)
        x[10 * COLS + c] = 3e38f;
    expect_nonfinite(model, x, "row 10 of X overflows float32");
    x[1400 * COLS + 3] = NAN;
    expect_nonfinite(model, x, "X[1400, 3] is NaN");
    eb_finetuner_free(model);
    data_release(&data);
}

/* The expected name of a status is its enumerator's own spelling. */
#define EXPECTED_NAME(status) [status] = #status

static void status_strings_name_every_status(void **state)
{
    (void)state;
    static const char *const expected[EB_STATUS_COUNT] = {
        EXPECTED_NAME(EB_OK),
        EXPECTED_NAME(EB_ERR_NULL_POINTER),
        EXPECTED_NAME(EB_ERR_INVALID_PARAM),
        EXPECTED_NAME(EB_ERR_EMPTY_INPUT),
        EXPECTED_NAME(EB_ERR_SHAPE_MISMATCH),
        EXPECTED_NAME(EB_ERR_NONFINITE),
        EXPECTED_NAME(EB_ERR_LABEL_OUT_OF_RANGE),
        EXPECTED_NAME(EB_ERR_TOO_FEW_CLASSES),
        EXPECTED_NAME(EB_ERR_NOT_FITTED),
        EXPECTED_NAME(EB_ERR_NOMEM),
        EXPECTED_NAME(EB_ERR_TOO_LARGE),
        EXPECTED_NAME(EB_ERR_IO),
        EXPECTED_NAME(EB_ERR_FORMAT),
        EXPECTED_NAME(EB_ERR_INVALID_UTF8),
        EXPECTED_NAME(EB_ERR_WRONG_INPUT_KIND),
        EXPECTED_NAME(EB_ERR_BUFFER_TOO_SMALL),
        EXPECTED_NAME(EB_ERR_WRONG_KIND),
        EXPECTED_NAME(EB_ERR_INVALID_HANDLE),
    };
    /* The stable numbers of the statuses 0.2 added (common.h promises they never change). */
    assert_int_equal(EB_ERR_BUFFER_TOO_SMALL, 15);
    assert_int_equal(EB_ERR_WRONG_KIND, 16);
    assert_int_equal(EB_ERR_INVALID_HANDLE, 17);
    assert_int_equal(EB_STATUS_COUNT, 18);
    assert_int_equal(EB_OK, 0);
    const char *names[EB_STATUS_COUNT];
    for (int s = 0; s < EB_STATUS_COUNT; s++) {
        names[s] = eb_status_string((eb_status)s);
        assert_non_null(names[s]);
        if (expected[s] != NULL)
            assert_string_equal(names[s], expected[s]);
        /* Statuses added after this table still need a proper, distinct name. */
        assert_true(strncmp(names[s], s == EB_OK ? "EB_OK" : "EB_ERR_", s == EB_OK ? 5 : 7) == 0);
        for (int earlier = 0; earlier < s; earlier++)
            assert_string_not_equal(names[s], names[earlier]);
    }
    const int unknown[] = {EB_STATUS_COUNT, EB_STATUS_COUNT + 1, 1000, -1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = eb_status_string((eb_status)unknown[i]);
        assert_non_null(name);
        assert_true(name[0] != '\0');
        for (int s = 0; s < EB_STATUS_COUNT; s++)
            assert_string_not_equal(name, names[s]);
    }
}

static void version_matches_header(void **state)
{
    (void)state;
    assert_string_equal(eb_version(), EB_VERSION_STRING);
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", EB_VERSION_MAJOR, EB_VERSION_MINOR, EB_VERSION_PATCH);
    assert_string_equal(built, EB_VERSION_STRING);
    assert_int_equal(EB_VERSION_NUMBER, EB_VERSION_MAJOR * 10000 + EB_VERSION_MINOR * 100 + EB_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_training_input_is_rejected),
        cmocka_unit_test(bad_transform_input_is_rejected),
        cmocka_unit_test(feedforward_transform_checks_values_in_every_slice),
        cmocka_unit_test(strided_views_match_contiguous),
        cmocka_unit_test(bad_params_are_rejected),
        cmocka_unit_test(oversized_inputs_are_refused),
        cmocka_unit_test(status_strings_name_every_status),
        cmocka_unit_test(version_matches_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
