/*
 * Out-of-memory handling. A counting allocator fails allocation number N, for
 * N = 0, 1, 2, ... until the call gets through. Every failing run must return
 * EB_ERR_NOMEM, give back everything it took, and leave the model exactly as
 * before; the run that succeeds must produce the same model as a call that
 * never saw a failure (no half-done state survives a failed attempt).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "helpers.h"

enum { ROWS = 24, COLS = 5, CLASSES = 3 };

/* Far more allocations than any call makes; reaching it means the call never stops failing. */
static const size_t ATTEMPT_LIMIT = 1000;

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 3, 2.0, 77); }

/* ---- every kind ------------------------------------------------------------------ */

enum { WIDTH = 4 };

static char not_a_model;

/* The batch sizes that take each kind's different paths: full batch, and few rows or pairs per batch. */
static size_t small_batch(eb_finetuner_kind kind) { return kind == EB_KIND_FEEDFORWARD ? 5 : 4; }

static eb_status create(eb_finetuner_kind kind, size_t batch_size, const eb_allocator *mem, eb_finetuner **out,
                        eb_error *err)
{
    eb_finetuner_params params = test_params(kind, WIDTH, kind == EB_KIND_FEEDFORWARD ? 6 : 4, 3);
    params.batch_size = batch_size;
    /* Start from a non-NULL value: create must set *out to NULL when it fails. */
    *out = (eb_finetuner *)&not_a_model;
    return eb_finetuner_create(&params, mem, out, err);
}

/* ---- create ------------------------------------------------------------------ */

static void check_create(eb_finetuner_kind kind)
{
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    size_t failed_runs = 0;
    for (size_t n = 0;; n++) {
        assert_true(n < ATTEMPT_LIMIT);
        counting_allocator_arm(&counter, n);
        eb_finetuner *model = NULL;
        eb_error err;
        eb_status status = create(kind, 0, &mem, &model, &err);
        if (status == EB_OK) {
            assert_int_equal(counter.failures, 0);
            assert_non_null(model);
            eb_finetuner_free(model);
            break;
        }
        assert_int_equal(status, EB_ERR_NOMEM);
        assert_int_equal(err.status, EB_ERR_NOMEM);
        assert_non_null(strstr(err.message, "out of memory"));
        assert_int_equal(counter.failures, 1);
        assert_null(model);
        assert_int_equal(counter.live_blocks, 0);
        failed_runs++;
    }
    assert_true(failed_runs >= 1);
    assert_int_equal(counter.live_blocks, 0);
    assert_int_equal(counter.live_bytes, 0);
}

static void create_survives_allocation_failure(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_ALL_KINDS; k++)
        check_create(ALL_KINDS[k]);
}

/* ---- training calls ---------------------------------------------------------- */

typedef enum prior_state {
    PRIOR_UNFITTED,       /* the call trains a fresh model */
    PRIOR_FITTED,         /* the model was fitted before the call */
} prior_state;

typedef enum training_call { CALL_FIT, CALL_PARTIAL_FIT } training_call;

static eb_status train(eb_finetuner *model, training_call call, const test_data *data)
{
    return train_on(model, data, call == CALL_PARTIAL_FIT, CLASSES);
}

static void *new_model(eb_finetuner_kind kind, size_t batch_size, const eb_allocator *mem, prior_state prior,
                       const test_data *data)
{
    eb_finetuner *model = NULL;
    assert_int_equal(create(kind, batch_size, mem, &model, NULL), EB_OK);
    if (prior == PRIOR_FITTED) {
        assert_int_equal(train(model, CALL_FIT, data), EB_OK);
        /* One partial_fit as well, so the loss history has spare capacity on some paths and not on others. */
        assert_int_equal(train(model, CALL_PARTIAL_FIT, data), EB_OK);
    }
    return model;
}

static void check_training_call(eb_finetuner_kind kind, size_t batch_size, prior_state prior, training_call call)
{
    test_data data = shared_data();
    eb_matrix probe = data_x(&data);

    /* The model a failure-free call produces, from an identically prepared start. */
    eb_finetuner *reference = new_model(kind, batch_size, NULL, prior, &data);
    assert_int_equal(train(reference, call, &data), EB_OK);
    model_snapshot expected = snapshot_finetuner(reference, probe);
    eb_finetuner_free(reference);

    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = new_model(kind, batch_size, &mem, prior, &data);
    const size_t baseline_blocks = counter.live_blocks, baseline_bytes = counter.live_bytes;
    model_snapshot before = snapshot_finetuner(model, probe);

    size_t failed_runs = 0;
    for (size_t n = 0;; n++) {
        assert_true(n < ATTEMPT_LIMIT);
        counting_allocator_arm(&counter, n);
        eb_status status = train(model, call, &data);
        const size_t failures = counter.failures;
        counting_allocator_arm(&counter, SIZE_MAX);
        if (status == EB_OK) {
            /* Success only once n is past the call's last allocation. */
            assert_int_equal(failures, 0);
            break;
        }
        assert_int_equal(failures, 1);
        if (status != EB_ERR_NOMEM)
            fail_msg("%s: allocation %zu failing gave %s (%s)", eb_finetuner_kind_name(kind), n, eb_status_string(status),
                     eb_finetuner_last_error(model));
        assert_non_null(strstr(eb_finetuner_last_error(model), "out of memory"));
        /* Nothing leaked: the live allocations are exactly the model's own from before the call. */
        assert_int_equal(counter.live_blocks, baseline_blocks);
        assert_int_equal(counter.live_bytes, baseline_bytes);
        model_snapshot after = snapshot_finetuner(model, probe);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);
        failed_runs++;
    }
    print_message("%s batch %zu %s %s: %zu failing runs\n", eb_finetuner_kind_name(kind), batch_size,
                  prior == PRIOR_FITTED ? "fitted" : "fresh", call == CALL_FIT ? "fit" : "partial_fit", failed_runs);
    /* Every one of these calls needs memory (buffers, if not weights), so some run must have failed. */
    assert_true(failed_runs >= 1);

    model_snapshot got = snapshot_finetuner(model, probe);
    assert_true(snapshots_identical(&expected, &got));
    snapshot_release(&got);

    eb_finetuner_free(model);
    assert_int_equal(counter.live_blocks, 0);
    assert_int_equal(counter.live_bytes, 0);
    snapshot_release(&before);
    snapshot_release(&expected);
    data_release(&data);
}

static void check_all_training_calls(eb_finetuner_kind kind, size_t batch_size)
{
    check_training_call(kind, batch_size, PRIOR_UNFITTED, CALL_FIT);
    check_training_call(kind, batch_size, PRIOR_UNFITTED, CALL_PARTIAL_FIT);
    check_training_call(kind, batch_size, PRIOR_FITTED, CALL_FIT);
    check_training_call(kind, batch_size, PRIOR_FITTED, CALL_PARTIAL_FIT);
}

static void training_survives_allocation_failure(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        check_all_training_calls(ALL_KINDS[k], 0);
        /* Few rows or pairs per batch: batches gather their rows into extra buffers. */
        check_all_training_calls(ALL_KINDS[k], small_batch(ALL_KINDS[k]));
    }
}

/*
 * Growing the loss history across many partial_fit calls reallocates it from
 * time to time; a failure there must keep the old history intact.
 */
static void history_growth_survives_allocation_failure(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix probe = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        eb_finetuner_kind kind = ALL_KINDS[k];
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        eb_finetuner *model = new_model(kind, 0, &mem, PRIOR_FITTED, &data);
        size_t failed_runs = 0;
        for (size_t call = 0; call < 40; call++) {
            model_snapshot before = snapshot_finetuner(model, probe);
            for (size_t n = 0;; n++) {
                assert_true(n < ATTEMPT_LIMIT);
                counting_allocator_arm(&counter, n);
                eb_status status = train(model, CALL_PARTIAL_FIT, &data);
                const size_t failures = counter.failures;
                counting_allocator_arm(&counter, SIZE_MAX);
                if (status == EB_OK) {
                    assert_int_equal(failures, 0);
                    break;
                }
                assert_int_equal(status, EB_ERR_NOMEM);
                model_snapshot after = snapshot_finetuner(model, probe);
                assert_true(snapshots_identical(&before, &after));
                snapshot_release(&after);
                failed_runs++;
            }
            model_snapshot now = snapshot_finetuner(model, probe);
            assert_int_equal(now.history_length, before.history_length + 1);
            assert_memory_equal(now.history, before.history, before.history_length * sizeof(double));
            snapshot_release(&now);
            snapshot_release(&before);
        }
        assert_true(failed_runs >= 40);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    data_release(&data);
}

/* ---- transform --------------------------------------------------------------- */

static void transform_allocates_nothing(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        eb_finetuner_kind kind = ALL_KINDS[k];
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        eb_finetuner *model = new_model(kind, 0, &mem, PRIOR_FITTED, &data);
        model_snapshot before = snapshot_finetuner(model, x);
        float out[ROWS * WIDTH];
        /* Every allocation from the first on fails: transform must not need any. */
        counting_allocator_arm(&counter, 0);
        eb_error err;
        assert_int_equal(eb_finetuner_transform(model, x, eb_mut_matrix_view(out, ROWS, WIDTH), &err), EB_OK);
        assert_int_equal(counter.attempts, 0);
        assert_memory_equal(out, before.embedding, sizeof out);
        counting_allocator_arm(&counter, SIZE_MAX);
        snapshot_release(&before);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_survives_allocation_failure),
        cmocka_unit_test(training_survives_allocation_failure),
        cmocka_unit_test(history_growth_survives_allocation_failure),
        cmocka_unit_test(transform_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
