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

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 3, 1.0, 42); }

/* The settings each kind is fitted with, and the batch sizes that take its different paths. */
typedef struct kind_case {
    eb_finetuner_kind kind;
    size_t hidden, epochs;
    float learning_rate;
    size_t batch_sizes[3]; /* the first is 0 (full batch); 0 after it ends the list */
} kind_case;

static const kind_case KINDS[N_LABELLED_KINDS] = {
    {EB_KIND_FEEDFORWARD, 5, 25, 0.01f, {0, 7, 0}},
    /* 16 pairs per batch is small enough that batches gather their rows; 100 covers most rows and takes the path through the whole of X. */
    {EB_KIND_CONTRASTIVE, 4, 12, 0.01f, {0, 16, 100}},
};

static eb_finetuner *new_model(const kind_case *k, uint64_t seed, size_t batch_size)
{
    eb_finetuner_params params = test_params(k->kind, k->hidden, k->epochs, seed);
    params.learning_rate = k->learning_rate;
    params.batch_size = batch_size;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static model_snapshot fit_snapshot(const kind_case *k, const test_data *data, uint64_t seed, size_t batch_size)
{
    eb_finetuner *model = new_model(k, seed, batch_size);
    assert_int_equal(train_on(model, data, false, CLASSES), EB_OK);
    model_snapshot s = snapshot_finetuner(model, data_x(data));
    assert_int_equal(s.transform_status, EB_OK);
    eb_finetuner_free(model);
    return s;
}

static void assert_differ(const model_snapshot *a, const model_snapshot *b)
{
    assert_int_equal(a->embedding_count, b->embedding_count);
    assert_int_equal(a->history_length, b->history_length);
    assert_true(memcmp(a->embedding, b->embedding, a->embedding_count * sizeof(float)) != 0);
    assert_true(memcmp(a->weights, b->weights, a->weight_count * sizeof(float)) != 0);
    assert_true(memcmp(a->history, b->history, a->history_length * sizeof(double)) != 0);
}

/* Equal seeds give equal bits and another seed other bits, with and without minibatches. */
static void equal_seeds_give_equal_models(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        for (size_t b = 0; b < 3 && (b == 0 || KINDS[k].batch_sizes[b] != 0); b++) {
            size_t batch_size = KINDS[k].batch_sizes[b];
            print_message("%s, batch_size %zu\n", eb_finetuner_kind_name(KINDS[k].kind), batch_size);
            model_snapshot first = fit_snapshot(&KINDS[k], &data, 1234, batch_size);
            model_snapshot again = fit_snapshot(&KINDS[k], &data, 1234, batch_size);
            model_snapshot other = fit_snapshot(&KINDS[k], &data, 1235, batch_size);
            assert_true(snapshots_identical(&first, &again));
            assert_differ(&first, &other);
            snapshot_release(&first);
            snapshot_release(&again);
            snapshot_release(&other);
        }
    }
    data_release(&data);
}

/* Shuffled minibatches follow a different path than full batches: the results must differ too. */
static void batch_size_changes_the_result(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        model_snapshot full = fit_snapshot(&KINDS[k], &data, 9, 0);
        model_snapshot batched = fit_snapshot(&KINDS[k], &data, 9, KINDS[k].batch_sizes[1]);
        assert_differ(&full, &batched);
        snapshot_release(&full);
        snapshot_release(&batched);
    }
    data_release(&data);
}

/* fit replaces everything, so fitting one model twice equals a fresh fit, also after partial_fit. */
static void refit_starts_over(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        const size_t batch_size = KINDS[k].batch_sizes[1];
        model_snapshot fresh = fit_snapshot(&KINDS[k], &data, 77, batch_size);
        eb_finetuner *model = new_model(&KINDS[k], 77, batch_size);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        assert_int_equal(train_on(model, &data, true, 0), EB_OK);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        model_snapshot refit = snapshot_finetuner(model, data_x(&data));
        assert_true(snapshots_identical(&fresh, &refit));
        snapshot_release(&refit);
        snapshot_release(&fresh);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(equal_seeds_give_equal_models),
        cmocka_unit_test(batch_size_changes_the_result),
        cmocka_unit_test(refit_starts_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
