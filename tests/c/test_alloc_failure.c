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

typedef struct dataset {
    float x[ROWS * COLS];
    int32_t y[ROWS];
} dataset;

static dataset make_data(void)
{
    dataset data;
    test_rng rng = test_rng_make(77);
    toy_buried_signal(&rng, ROWS, CLASSES, 3, COLS - 3, 2.0, 0.3, 1.0, data.x, data.y);
    return data;
}

/* ---- both models behind one table ---------------------------------------------- */

static char not_a_model;

typedef struct model_ops {
    eb_status (*create)(size_t batch_size, const eb_allocator *mem, void **out, eb_error *err);
    const model_calls *calls;
    size_t width;
} model_ops;

static eb_status ff_create(size_t batch_size, const eb_allocator *mem, void **out, eb_error *err)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 4;
    params.n_epochs = 6;
    params.batch_size = batch_size;
    params.seed = 3;
    /* Start from a non-NULL value: create must set *out to NULL when it fails. */
    eb_feedforward *model = (eb_feedforward *)&not_a_model;
    eb_status status = eb_feedforward_create(&params, mem, &model, err);
    *out = model;
    return status;
}

static eb_status cl_create(size_t batch_size, const eb_allocator *mem, void **out, eb_error *err)
{
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = 4;
    params.n_epochs = 4;
    params.batch_size = batch_size;
    params.seed = 3;
    eb_contrastive *model = (eb_contrastive *)&not_a_model;
    eb_status status = eb_contrastive_create(&params, mem, &model, err);
    *out = model;
    return status;
}

static const model_ops FEEDFORWARD = {ff_create, &FEEDFORWARD_CALLS, 4};
static const model_ops CONTRASTIVE = {cl_create, &CONTRASTIVE_CALLS, 4};

/* ---- create ------------------------------------------------------------------ */

static void check_create(const model_ops *ops)
{
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    size_t failed_runs = 0;
    for (size_t n = 0;; n++) {
        assert_true(n < ATTEMPT_LIMIT);
        counting_allocator_arm(&counter, n);
        void *model = NULL;
        eb_error err;
        eb_status status = ops->create(0, &mem, &model, &err);
        if (status == EB_OK) {
            assert_int_equal(counter.failures, 0);
            assert_non_null(model);
            ops->calls->release(model);
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
    check_create(&FEEDFORWARD);
    check_create(&CONTRASTIVE);
}

/* ---- training calls ---------------------------------------------------------- */

typedef enum prior_state {
    PRIOR_UNFITTED,       /* the call trains a fresh model */
    PRIOR_FITTED,         /* the model was fitted before the call */
} prior_state;

typedef enum training_call { CALL_FIT, CALL_PARTIAL_FIT } training_call;

static eb_status train(const model_ops *ops, void *model, training_call call, const dataset *data)
{
    eb_matrix x = eb_matrix_view(data->x, ROWS, COLS);
    return call == CALL_FIT ? ops->calls->fit(model, x, data->y, CLASSES) : ops->calls->partial_fit(model, x, data->y, CLASSES);
}

static void *new_model(const model_ops *ops, size_t batch_size, const eb_allocator *mem, prior_state prior,
                       const dataset *data)
{
    void *model = NULL;
    assert_int_equal(ops->create(batch_size, mem, &model, NULL), EB_OK);
    if (prior == PRIOR_FITTED) {
        assert_int_equal(train(ops, model, CALL_FIT, data), EB_OK);
        /* One partial_fit as well, so the loss history has spare capacity on some paths and not on others. */
        assert_int_equal(train(ops, model, CALL_PARTIAL_FIT, data), EB_OK);
    }
    return model;
}

static void check_training_call(const model_ops *ops, size_t batch_size, prior_state prior, training_call call)
{
    dataset data = make_data();
    eb_matrix probe = eb_matrix_view(data.x, ROWS, COLS);

    /* The model a failure-free call produces, from an identically prepared start. */
    void *reference = new_model(ops, batch_size, NULL, prior, &data);
    assert_int_equal(train(ops, reference, call, &data), EB_OK);
    model_snapshot expected = ops->calls->snapshot(reference, probe);
    ops->calls->release(reference);

    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    void *model = new_model(ops, batch_size, &mem, prior, &data);
    const size_t baseline_blocks = counter.live_blocks, baseline_bytes = counter.live_bytes;
    model_snapshot before = ops->calls->snapshot(model, probe);

    size_t failed_runs = 0;
    for (size_t n = 0;; n++) {
        assert_true(n < ATTEMPT_LIMIT);
        counting_allocator_arm(&counter, n);
        eb_status status = train(ops, model, call, &data);
        const size_t failures = counter.failures;
        counting_allocator_arm(&counter, SIZE_MAX);
        if (status == EB_OK) {
            /* Success only once n is past the call's last allocation. */
            assert_int_equal(failures, 0);
            break;
        }
        assert_int_equal(failures, 1);
        if (status != EB_ERR_NOMEM)
            fail_msg("%s: allocation %zu failing gave %s (%s)", ops->calls->name, n, eb_status_string(status),
                     ops->calls->last_error(model));
        assert_non_null(strstr(ops->calls->last_error(model), "out of memory"));
        /* Nothing leaked: the live allocations are exactly the model's own from before the call. */
        assert_int_equal(counter.live_blocks, baseline_blocks);
        assert_int_equal(counter.live_bytes, baseline_bytes);
        model_snapshot after = ops->calls->snapshot(model, probe);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);
        failed_runs++;
    }
    print_message("%s batch %zu %s %s: %zu failing runs\n", ops->calls->name, batch_size,
                  prior == PRIOR_FITTED ? "fitted" : "fresh", call == CALL_FIT ? "fit" : "partial_fit", failed_runs);
    /* Every one of these calls needs memory (buffers, if not weights), so some run must have failed. */
    assert_true(failed_runs >= 1);

    model_snapshot got = ops->calls->snapshot(model, probe);
    assert_true(snapshots_identical(&expected, &got));
    snapshot_release(&got);

    ops->calls->release(model);
    assert_int_equal(counter.live_blocks, 0);
    assert_int_equal(counter.live_bytes, 0);
    snapshot_release(&before);
    snapshot_release(&expected);
}

static void check_all_training_calls(const model_ops *ops, size_t batch_size)
{
    check_training_call(ops, batch_size, PRIOR_UNFITTED, CALL_FIT);
    check_training_call(ops, batch_size, PRIOR_UNFITTED, CALL_PARTIAL_FIT);
    check_training_call(ops, batch_size, PRIOR_FITTED, CALL_FIT);
    check_training_call(ops, batch_size, PRIOR_FITTED, CALL_PARTIAL_FIT);
}

static void feedforward_training_survives_allocation_failure(void **state)
{
    (void)state;
    check_all_training_calls(&FEEDFORWARD, 0);
    check_all_training_calls(&FEEDFORWARD, 5);
}

static void contrastive_training_survives_allocation_failure(void **state)
{
    (void)state;
    check_all_training_calls(&CONTRASTIVE, 0);
    /* Few pairs per batch: batches gather their rows into extra buffers. */
    check_all_training_calls(&CONTRASTIVE, 4);
}

/*
 * Growing the loss history across many partial_fit calls reallocates it from
 * time to time; a failure there must keep the old history intact.
 */
static void history_growth_survives_allocation_failure(void **state)
{
    (void)state;
    const model_ops *all[] = {&FEEDFORWARD, &CONTRASTIVE};
    dataset data = make_data();
    eb_matrix probe = eb_matrix_view(data.x, ROWS, COLS);
    for (size_t m = 0; m < 2; m++) {
        const model_ops *ops = all[m];
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        void *model = new_model(ops, 0, &mem, PRIOR_FITTED, &data);
        size_t failed_runs = 0;
        for (size_t call = 0; call < 40; call++) {
            model_snapshot before = ops->calls->snapshot(model, probe);
            for (size_t n = 0;; n++) {
                assert_true(n < ATTEMPT_LIMIT);
                counting_allocator_arm(&counter, n);
                eb_status status = train(ops, model, CALL_PARTIAL_FIT, &data);
                const size_t failures = counter.failures;
                counting_allocator_arm(&counter, SIZE_MAX);
                if (status == EB_OK) {
                    assert_int_equal(failures, 0);
                    break;
                }
                assert_int_equal(status, EB_ERR_NOMEM);
                model_snapshot after = ops->calls->snapshot(model, probe);
                assert_true(snapshots_identical(&before, &after));
                snapshot_release(&after);
                failed_runs++;
            }
            model_snapshot now = ops->calls->snapshot(model, probe);
            assert_int_equal(now.history_length, before.history_length + 1);
            assert_memory_equal(now.history, before.history, before.history_length * sizeof(double));
            snapshot_release(&now);
            snapshot_release(&before);
        }
        assert_true(failed_runs >= 40);
        ops->calls->release(model);
        assert_int_equal(counter.live_blocks, 0);
    }
}

/* ---- transform --------------------------------------------------------------- */

static void transform_allocates_nothing(void **state)
{
    (void)state;
    const model_ops *all[] = {&FEEDFORWARD, &CONTRASTIVE};
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    for (size_t m = 0; m < 2; m++) {
        const model_ops *ops = all[m];
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        void *model = new_model(ops, 0, &mem, PRIOR_FITTED, &data);
        model_snapshot before = ops->calls->snapshot(model, x);
        float out[ROWS * 4];
        /* Every allocation from the first on fails: transform must not need any. */
        counting_allocator_arm(&counter, 0);
        eb_error err;
        assert_int_equal(ops->calls->transform(model, x, eb_mut_matrix_view(out, ROWS, ops->width), &err), EB_OK);
        assert_int_equal(counter.attempts, 0);
        assert_memory_equal(out, before.embedding, sizeof out);
        counting_allocator_arm(&counter, SIZE_MAX);
        snapshot_release(&before);
        ops->calls->release(model);
        assert_int_equal(counter.live_blocks, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_survives_allocation_failure),
        cmocka_unit_test(feedforward_training_survives_allocation_failure),
        cmocka_unit_test(contrastive_training_survives_allocation_failure),
        cmocka_unit_test(history_growth_survives_allocation_failure),
        cmocka_unit_test(transform_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
