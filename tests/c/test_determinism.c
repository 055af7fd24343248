/*
 * Equal seeds give bit-identical models (weights, transform output, loss
 * history), with and without minibatch shuffling; different seeds give
 * different ones. A refit of the same model starts over exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "helpers.h"

enum { ROWS = 60, COLS = 7, CLASSES = 3 };

typedef struct dataset {
    float x[ROWS * COLS];
    int32_t y[ROWS];
} dataset;

static dataset make_data(void)
{
    dataset data;
    test_rng rng = test_rng_make(42);
    toy_buried_signal(&rng, ROWS, CLASSES, 3, COLS - 3, 1.0, 0.3, 1.0, data.x, data.y);
    return data;
}

static model_snapshot fit_feedforward(const dataset *data, uint64_t seed, size_t batch_size)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 5;
    params.n_epochs = 25;
    params.seed = seed;
    params.batch_size = batch_size;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    eb_matrix x = eb_matrix_view(data->x, ROWS, COLS);
    assert_int_equal(eb_feedforward_fit(model, x, data->y, CLASSES), EB_OK);
    model_snapshot s = snapshot_feedforward(model, x);
    assert_int_equal(s.transform_status, EB_OK);
    eb_feedforward_free(model);
    return s;
}

static model_snapshot fit_contrastive(const dataset *data, uint64_t seed, size_t batch_size)
{
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = 4;
    params.n_epochs = 12;
    params.learning_rate = 0.01f;
    params.seed = seed;
    params.batch_size = batch_size;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    eb_matrix x = eb_matrix_view(data->x, ROWS, COLS);
    assert_int_equal(eb_contrastive_fit(model, x, data->y, CLASSES), EB_OK);
    model_snapshot s = snapshot_contrastive(model, x);
    assert_int_equal(s.transform_status, EB_OK);
    eb_contrastive_free(model);
    return s;
}

typedef model_snapshot (*fit_fn)(const dataset *data, uint64_t seed, size_t batch_size);

static void assert_differ(const model_snapshot *a, const model_snapshot *b)
{
    assert_int_equal(a->embedding_count, b->embedding_count);
    assert_int_equal(a->history_length, b->history_length);
    assert_true(memcmp(a->embedding, b->embedding, a->embedding_count * sizeof(float)) != 0);
    assert_true(memcmp(a->weights, b->weights, a->weight_count * sizeof(float)) != 0);
    assert_true(memcmp(a->history, b->history, a->history_length * sizeof(double)) != 0);
}

static void check_seeding(fit_fn fit, size_t batch_size)
{
    dataset data = make_data();
    model_snapshot first = fit(&data, 1234, batch_size);
    model_snapshot again = fit(&data, 1234, batch_size);
    model_snapshot other = fit(&data, 1235, batch_size);
    assert_true(snapshots_identical(&first, &again));
    assert_differ(&first, &other);
    snapshot_release(&first);
    snapshot_release(&again);
    snapshot_release(&other);
}

static void feedforward_full_batch_is_deterministic(void **state)
{
    (void)state;
    check_seeding(fit_feedforward, 0);
}

static void feedforward_minibatches_are_deterministic(void **state)
{
    (void)state;
    check_seeding(fit_feedforward, 7);
}

static void contrastive_full_batch_is_deterministic(void **state)
{
    (void)state;
    check_seeding(fit_contrastive, 0);
}

static void contrastive_minibatches_are_deterministic(void **state)
{
    (void)state;
    /* 16 pairs per batch is small enough that batches gather their rows. */
    check_seeding(fit_contrastive, 16);
    /* Batches covering most rows take the other path through the whole of X. */
    check_seeding(fit_contrastive, 100);
}

/* Shuffled minibatches follow a different path than full batches: the results must differ too. */
static void batch_size_changes_the_result(void **state)
{
    (void)state;
    dataset data = make_data();
    model_snapshot full = fit_feedforward(&data, 9, 0);
    model_snapshot batched = fit_feedforward(&data, 9, 7);
    assert_differ(&full, &batched);
    snapshot_release(&full);
    snapshot_release(&batched);
    model_snapshot cl_full = fit_contrastive(&data, 9, 0);
    model_snapshot cl_batched = fit_contrastive(&data, 9, 16);
    assert_differ(&cl_full, &cl_batched);
    snapshot_release(&cl_full);
    snapshot_release(&cl_batched);
}

/* fit replaces everything, so fitting one model twice equals a fresh fit, also after partial_fit. */
static void refit_starts_over(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    model_snapshot fresh = fit_feedforward(&data, 77, 7);
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 5;
    params.n_epochs = 25;
    params.seed = 77;
    params.batch_size = 7;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, x, data.y, CLASSES), EB_OK);
    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, 0), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, x, data.y, CLASSES), EB_OK);
    model_snapshot refit = snapshot_feedforward(model, x);
    assert_true(snapshots_identical(&fresh, &refit));
    snapshot_release(&refit);
    snapshot_release(&fresh);
    eb_feedforward_free(model);

    model_snapshot cl_fresh = fit_contrastive(&data, 78, 16);
    eb_contrastive_params cl_params = eb_contrastive_default_params();
    cl_params.hidden_dim = 4;
    cl_params.n_epochs = 12;
    cl_params.learning_rate = 0.01f;
    cl_params.seed = 78;
    cl_params.batch_size = 16;
    eb_contrastive *cl = NULL;
    assert_int_equal(eb_contrastive_create(&cl_params, NULL, &cl, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(cl, x, data.y, CLASSES), EB_OK);
    assert_int_equal(eb_contrastive_partial_fit(cl, x, data.y, 0), EB_OK);
    assert_int_equal(eb_contrastive_fit(cl, x, data.y, CLASSES), EB_OK);
    model_snapshot cl_refit = snapshot_contrastive(cl, x);
    assert_true(snapshots_identical(&cl_fresh, &cl_refit));
    snapshot_release(&cl_refit);
    snapshot_release(&cl_fresh);
    eb_contrastive_free(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_full_batch_is_deterministic),
        cmocka_unit_test(feedforward_minibatches_are_deterministic),
        cmocka_unit_test(contrastive_full_batch_is_deterministic),
        cmocka_unit_test(contrastive_minibatches_are_deterministic),
        cmocka_unit_test(batch_size_changes_the_result),
        cmocka_unit_test(refit_starts_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
