/*
 * The per-epoch callback: once per epoch, epochs numbered 1, 2, ... within
 * the call, with exactly the loss that lands in the history; a non-zero
 * return stops training early, and the stopped model is a valid fitted model
 * equal to one trained for that many epochs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "helpers.h"

enum { ROWS = 40, COLS = 5, CLASSES = 2, MAX_CALLS = 64 };

typedef struct progress_log {
    size_t calls;
    size_t stop_after; /* stop once this many calls were seen; 0: never */
    size_t epochs[MAX_CALLS];
    double losses[MAX_CALLS];
} progress_log;

static int record_progress(size_t epoch, double loss, void *user_data)
{
    progress_log *log = user_data;
    if (log->calls < MAX_CALLS) {
        log->epochs[log->calls] = epoch;
        log->losses[log->calls] = loss;
    }
    log->calls++;
    return log->stop_after != 0 && log->calls >= log->stop_after;
}

typedef struct dataset {
    float x[ROWS * COLS];
    int32_t y[ROWS];
} dataset;

static dataset make_data(void)
{
    dataset data;
    test_rng rng = test_rng_make(99);
    toy_buried_signal(&rng, ROWS, CLASSES, 2, COLS - 2, 2.0, 0.3, 1.0, data.x, data.y);
    return data;
}

static void assert_log_matches(const progress_log *log, const double *history, size_t length, size_t expected_calls)
{
    assert_int_equal(log->calls, expected_calls);
    assert_int_equal(length, expected_calls);
    for (size_t i = 0; i < expected_calls; i++) {
        assert_int_equal(log->epochs[i], i + 1);
        /* The callback sees the very double that is stored, not a recomputation. */
        assert_memory_equal(&log->losses[i], &history[i], sizeof(double));
    }
}

static eb_feedforward *new_feedforward(size_t n_epochs, progress_log *log)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 3;
    params.n_epochs = n_epochs;
    params.seed = 4;
    params.on_epoch = log == NULL ? NULL : record_progress;
    params.callback_data = log;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static eb_contrastive *new_contrastive(size_t n_epochs, progress_log *log)
{
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = 3;
    params.n_epochs = n_epochs;
    params.seed = 4;
    params.on_epoch = log == NULL ? NULL : record_progress;
    params.callback_data = log;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    return model;
}

static void feedforward_callback_sees_every_epoch(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    progress_log log = {0};
    eb_feedforward *model = new_feedforward(12, &log);
    assert_int_equal(eb_feedforward_fit(model, x, data.y, CLASSES), EB_OK);
    size_t length;
    const double *history = eb_feedforward_loss_history(model, &length);
    assert_log_matches(&log, history, length, 12);

    /* partial_fit is one epoch: one more call, numbered 1 within that call. */
    log.calls = 0;
    assert_int_equal(eb_feedforward_partial_fit(model, x, data.y, 0), EB_OK);
    history = eb_feedforward_loss_history(model, &length);
    assert_int_equal(length, 13);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.epochs[0], 1);
    assert_memory_equal(&log.losses[0], &history[12], sizeof(double));
    eb_feedforward_free(model);
}

static void feedforward_callback_stops_early(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    progress_log log = {0};
    log.stop_after = 4;
    eb_feedforward *stopped = new_feedforward(50, &log);
    assert_int_equal(eb_feedforward_fit(stopped, x, data.y, CLASSES), EB_OK);
    assert_true(eb_feedforward_is_fitted(stopped));
    size_t length;
    const double *history = eb_feedforward_loss_history(stopped, &length);
    assert_log_matches(&log, history, length, 4);

    /* The weights kept are those after the 4th epoch, as if n_epochs had been 4. */
    eb_feedforward *short_fit = new_feedforward(4, NULL);
    assert_int_equal(eb_feedforward_fit(short_fit, x, data.y, CLASSES), EB_OK);
    model_snapshot a = snapshot_feedforward(stopped, x);
    model_snapshot b = snapshot_feedforward(short_fit, x);
    assert_int_equal(a.transform_status, EB_OK);
    /* Params differ (n_epochs, callback) but nothing a caller observes of the fit does. */
    assert_true(snapshots_identical(&a, &b));

    /* Stopping at the first epoch of a partial_fit still records that epoch. */
    log.calls = 0;
    log.stop_after = 1;
    assert_int_equal(eb_feedforward_partial_fit(stopped, x, data.y, 0), EB_OK);
    eb_feedforward_loss_history(stopped, &length);
    assert_int_equal(length, 5);
    assert_int_equal(log.calls, 1);
    snapshot_release(&a);
    snapshot_release(&b);
    eb_feedforward_free(stopped);
    eb_feedforward_free(short_fit);
}

static void contrastive_callback_sees_every_epoch(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    progress_log log = {0};
    eb_contrastive *model = new_contrastive(9, &log);
    assert_int_equal(eb_contrastive_fit(model, x, data.y, CLASSES), EB_OK);
    size_t length;
    const double *history = eb_contrastive_loss_history(model, &length);
    assert_log_matches(&log, history, length, 9);

    log.calls = 0;
    assert_int_equal(eb_contrastive_partial_fit(model, x, data.y, 0), EB_OK);
    history = eb_contrastive_loss_history(model, &length);
    assert_int_equal(length, 10);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.epochs[0], 1);
    assert_memory_equal(&log.losses[0], &history[9], sizeof(double));
    eb_contrastive_free(model);
}

static void contrastive_callback_stops_early(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    progress_log log = {0};
    log.stop_after = 3;
    eb_contrastive *stopped = new_contrastive(40, &log);
    assert_int_equal(eb_contrastive_fit(stopped, x, data.y, CLASSES), EB_OK);
    assert_true(eb_contrastive_is_fitted(stopped));
    size_t length;
    const double *history = eb_contrastive_loss_history(stopped, &length);
    assert_log_matches(&log, history, length, 3);

    eb_contrastive *short_fit = new_contrastive(3, NULL);
    assert_int_equal(eb_contrastive_fit(short_fit, x, data.y, CLASSES), EB_OK);
    model_snapshot a = snapshot_contrastive(stopped, x);
    model_snapshot b = snapshot_contrastive(short_fit, x);
    assert_int_equal(a.transform_status, EB_OK);
    assert_true(snapshots_identical(&a, &b));
    snapshot_release(&a);
    snapshot_release(&b);
    eb_contrastive_free(stopped);
    eb_contrastive_free(short_fit);
}

/* ---- the loss history grows with the epochs run ------------------------------------- */

/* Create either kind with n_epochs, the logging callback and an allocator. */
static void *new_model(size_t kind, size_t n_epochs, progress_log *log, const eb_allocator *mem)
{
    void *model = NULL;
    if (kind == 0) {
        eb_feedforward_params params = eb_feedforward_default_params();
        params.hidden_dim = 3;
        params.n_epochs = n_epochs;
        params.seed = 4;
        params.on_epoch = log == NULL ? NULL : record_progress;
        params.callback_data = log;
        assert_int_equal(eb_feedforward_create(&params, mem, (eb_feedforward **)&model, NULL), EB_OK);
    } else {
        eb_contrastive_params params = eb_contrastive_default_params();
        params.hidden_dim = 3;
        params.n_epochs = n_epochs;
        params.seed = 4;
        params.on_epoch = log == NULL ? NULL : record_progress;
        params.callback_data = log;
        assert_int_equal(eb_contrastive_create(&params, mem, (eb_contrastive **)&model, NULL), EB_OK);
    }
    return model;
}

static const model_calls *const KINDS[2] = {&FEEDFORWARD_CALLS, &CONTRASTIVE_CALLS};

/*
 * n_epochs is only an upper bound when a callback stops training: a bound of
 * 10^9 with a stop after 3 epochs must run, and take memory for 3 losses, not
 * for 10^9 (8 GB, which failed with out-of-memory before the first epoch).
 */
static void huge_epoch_bound_stopped_early_takes_little_memory(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    for (size_t kind = 0; kind < 2; kind++) {
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        progress_log log = {0};
        log.stop_after = 3;
        void *model = new_model(kind, (size_t)1000000000, &log, &mem);
        eb_status status = KINDS[kind]->fit(model, x, data.y, CLASSES);
        if (status != EB_OK)
            fail_msg("%s: %s", KINDS[kind]->name, KINDS[kind]->last_error(model));
        model_snapshot got = KINDS[kind]->snapshot(model, x);
        assert_int_equal(got.history_length, 3);
        assert_int_equal(log.calls, 3);
        /* The model, data and workspace of this toy problem take a few kilobytes. */
        if (counter.peak_bytes > 64 * 1024)
            fail_msg("%s: peak allocation %zu bytes for 3 epochs", KINDS[kind]->name, counter.peak_bytes);

        void *short_fit = new_model(kind, 3, NULL, NULL);
        assert_int_equal(KINDS[kind]->fit(short_fit, x, data.y, CLASSES), EB_OK);
        model_snapshot expected = KINDS[kind]->snapshot(short_fit, x);
        assert_true(snapshots_identical(&expected, &got));
        snapshot_release(&expected);
        snapshot_release(&got);
        KINDS[kind]->release(short_fit);
        KINDS[kind]->release(model);
        assert_int_equal(counter.live_blocks, 0);
    }
}

/* A run longer than the first reservation grows the history as it goes and keeps every loss. */
static void history_grows_during_a_long_fit(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    for (size_t kind = 0; kind < 2; kind++) {
        progress_log log = {0};
        log.stop_after = 150;
        void *stopped = new_model(kind, 1000, &log, NULL);
        assert_int_equal(KINDS[kind]->fit(stopped, x, data.y, CLASSES), EB_OK);
        void *plain = new_model(kind, 150, NULL, NULL);
        assert_int_equal(KINDS[kind]->fit(plain, x, data.y, CLASSES), EB_OK);
        model_snapshot a = KINDS[kind]->snapshot(stopped, x);
        model_snapshot b = KINDS[kind]->snapshot(plain, x);
        assert_int_equal(a.history_length, 150);
        assert_true(snapshots_identical(&a, &b));
        for (size_t i = 0; i < MAX_CALLS; i++)
            assert_memory_equal(&log.losses[i], &a.history[i], sizeof(double));
        snapshot_release(&a);
        snapshot_release(&b);
        KINDS[kind]->release(stopped);
        KINDS[kind]->release(plain);
    }
}

/*
 * Running out of memory while the history grows mid-training is a failed
 * call like any other: NOMEM, nothing leaked, a fitted model exactly as it
 * was; once memory suffices, the same model as a run that never failed.
 */
static void history_growth_failure_mid_training_changes_nothing(void **state)
{
    (void)state;
    dataset data = make_data();
    eb_matrix x = eb_matrix_view(data.x, ROWS, COLS);
    for (size_t kind = 0; kind < 2; kind++) {
        void *reference = new_model(kind, 100, NULL, NULL);
        assert_int_equal(KINDS[kind]->fit(reference, x, data.y, CLASSES), EB_OK);
        assert_int_equal(KINDS[kind]->fit(reference, x, data.y, CLASSES), EB_OK);
        model_snapshot expected = KINDS[kind]->snapshot(reference, x);
        KINDS[kind]->release(reference);

        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        void *model = new_model(kind, 100, NULL, &mem);
        assert_int_equal(KINDS[kind]->fit(model, x, data.y, CLASSES), EB_OK);
        model_snapshot before = KINDS[kind]->snapshot(model, x);
        size_t blocks = counter.live_blocks, bytes = counter.live_bytes;
        bool growth_failed = false;
        for (size_t n = 0;; n++) {
            assert_true(n < 1000);
            counting_allocator_arm(&counter, n);
            eb_status status = KINDS[kind]->fit(model, x, data.y, CLASSES);
            counting_allocator_arm(&counter, SIZE_MAX);
            if (status == EB_OK)
                break;
            assert_int_equal(status, EB_ERR_NOMEM);
            const char *message = KINDS[kind]->last_error(model);
            assert_non_null(strstr(message, "out of memory"));
            growth_failed = growth_failed || strstr(message, "loss history after 64 epochs") != NULL;
            assert_int_equal(counter.live_blocks, blocks);
            assert_int_equal(counter.live_bytes, bytes);
            model_snapshot after = KINDS[kind]->snapshot(model, x);
            assert_true(snapshots_identical(&before, &after));
            snapshot_release(&after);
        }
        /* Some failing run hit the growth after the first 64 epochs, not only the allocations before training. */
        assert_true(growth_failed);
        model_snapshot got = KINDS[kind]->snapshot(model, x);
        assert_true(snapshots_identical(&expected, &got));
        snapshot_release(&got);
        snapshot_release(&before);
        snapshot_release(&expected);
        KINDS[kind]->release(model);
        assert_int_equal(counter.live_blocks, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_callback_sees_every_epoch),
        cmocka_unit_test(feedforward_callback_stops_early),
        cmocka_unit_test(contrastive_callback_sees_every_epoch),
        cmocka_unit_test(contrastive_callback_stops_early),
        cmocka_unit_test(huge_epoch_bound_stopped_early_takes_little_memory),
        cmocka_unit_test(history_grows_during_a_long_fit),
        cmocka_unit_test(history_growth_failure_mid_training_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
