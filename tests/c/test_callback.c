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

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 2, 2.0, 99); }

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

/* A finetuner of the kind with n_epochs, the logging callback (when log is given) and an allocator. */
static eb_finetuner *new_model(eb_finetuner_kind kind, size_t n_epochs, progress_log *log, const eb_allocator *mem)
{
    eb_finetuner_params params = test_params(kind, 3, n_epochs, 4);
    params.on_epoch = log == NULL ? NULL : record_progress;
    params.callback_data = log;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, mem, &model, NULL), EB_OK);
    return model;
}

static void callback_sees_every_epoch(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        progress_log log = {0};
        eb_finetuner *model = new_model(ALL_KINDS[k], 9 + k, &log, NULL);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        size_t length;
        const double *history = eb_finetuner_loss_history(model, &length);
        assert_log_matches(&log, history, length, 9 + k);

        /* partial_fit is one epoch: one more call, numbered 1 within that call. */
        log.calls = 0;
        assert_int_equal(train_on(model, &data, true, 0), EB_OK);
        history = eb_finetuner_loss_history(model, &length);
        assert_int_equal(length, 10 + k);
        assert_int_equal(log.calls, 1);
        assert_int_equal(log.epochs[0], 1);
        assert_memory_equal(&log.losses[0], &history[9 + k], sizeof(double));
        eb_finetuner_free(model);
    }
    data_release(&data);
}

static void callback_stops_early(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        progress_log log = {0};
        log.stop_after = 4;
        eb_finetuner *stopped = new_model(ALL_KINDS[k], 50, &log, NULL);
        assert_int_equal(train_on(stopped, &data, false, CLASSES), EB_OK);
        assert_true(eb_finetuner_is_fitted(stopped));
        size_t length;
        const double *history = eb_finetuner_loss_history(stopped, &length);
        assert_log_matches(&log, history, length, 4);

        /* The weights kept are those after the 4th epoch, as if n_epochs had been 4. */
        eb_finetuner *short_fit = new_model(ALL_KINDS[k], 4, NULL, NULL);
        assert_int_equal(train_on(short_fit, &data, false, CLASSES), EB_OK);
        model_snapshot a = snapshot_finetuner(stopped, x);
        model_snapshot b = snapshot_finetuner(short_fit, x);
        assert_int_equal(a.transform_status, EB_OK);
        /* Params differ (n_epochs, callback) but nothing a caller observes of the fit does. */
        assert_true(fits_identical(&a, &b));

        /* Stopping at the first epoch of a partial_fit still records that epoch. */
        log.calls = 0;
        log.stop_after = 1;
        assert_int_equal(train_on(stopped, &data, true, 0), EB_OK);
        eb_finetuner_loss_history(stopped, &length);
        assert_int_equal(length, 5);
        assert_int_equal(log.calls, 1);
        snapshot_release(&a);
        snapshot_release(&b);
        eb_finetuner_free(stopped);
        eb_finetuner_free(short_fit);
    }
    data_release(&data);
}

/* set_callback replaces the callback and its data, for the next training call; NULL removes it. */
static void set_callback_replaces_the_callback(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        progress_log first = {0}, second = {0};
        eb_finetuner *model = new_model(ALL_KINDS[k], 3, &first, NULL);
        assert_int_equal(eb_finetuner_set_callback(model, record_progress, &second), EB_OK);
        eb_finetuner_params params = eb_finetuner_get_params(model);
        assert_true(params.on_epoch == record_progress);
        assert_ptr_equal(params.callback_data, &second);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        assert_int_equal(first.calls, 0);
        assert_int_equal(second.calls, 3);
        assert_int_equal(eb_finetuner_set_callback(model, NULL, NULL), EB_OK);
        assert_null(eb_finetuner_get_params(model).on_epoch);
        assert_int_equal(train_on(model, &data, true, 0), EB_OK);
        assert_int_equal(second.calls, 3);
        eb_finetuner_free(model);
    }
    assert_int_equal(eb_finetuner_set_callback(NULL, record_progress, NULL), EB_ERR_NULL_POINTER);
    data_release(&data);
}

/* ---- the loss history grows with the epochs run ------------------------------------- */

/*
 * n_epochs is only an upper bound when a callback stops training: a bound of
 * 10^9 with a stop after 3 epochs must run, and take memory for 3 losses, not
 * for 10^9 (8 GB, which failed with out-of-memory before the first epoch).
 */
static void huge_epoch_bound_stopped_early_takes_little_memory(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        progress_log log = {0};
        log.stop_after = 3;
        eb_finetuner *model = new_model(ALL_KINDS[k], (size_t)1000000000, &log, &mem);
        eb_status status = train_on(model, &data, false, CLASSES);
        if (status != EB_OK)
            fail_msg("%s: %s", eb_finetuner_kind_name(ALL_KINDS[k]), eb_finetuner_last_error(model));
        model_snapshot got = snapshot_finetuner(model, x);
        assert_int_equal(got.history_length, 3);
        assert_int_equal(log.calls, 3);
        /* The model, data and workspace of this toy problem take a few kilobytes. */
        if (counter.peak_bytes > 64 * 1024)
            fail_msg("%s: peak allocation %zu bytes for 3 epochs", eb_finetuner_kind_name(ALL_KINDS[k]), counter.peak_bytes);

        eb_finetuner *short_fit = new_model(ALL_KINDS[k], 3, NULL, NULL);
        assert_int_equal(train_on(short_fit, &data, false, CLASSES), EB_OK);
        model_snapshot expected = snapshot_finetuner(short_fit, x);
        assert_true(fits_identical(&expected, &got));
        snapshot_release(&expected);
        snapshot_release(&got);
        eb_finetuner_free(short_fit);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    data_release(&data);
}

/* A run longer than the first reservation grows the history as it goes and keeps every loss. */
static void history_grows_during_a_long_fit(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        progress_log log = {0};
        log.stop_after = 150;
        eb_finetuner *stopped = new_model(ALL_KINDS[k], 1000, &log, NULL);
        assert_int_equal(train_on(stopped, &data, false, CLASSES), EB_OK);
        eb_finetuner *plain = new_model(ALL_KINDS[k], 150, NULL, NULL);
        assert_int_equal(train_on(plain, &data, false, CLASSES), EB_OK);
        model_snapshot a = snapshot_finetuner(stopped, x);
        model_snapshot b = snapshot_finetuner(plain, x);
        assert_int_equal(a.history_length, 150);
        assert_true(fits_identical(&a, &b));
        for (size_t i = 0; i < MAX_CALLS; i++)
            assert_memory_equal(&log.losses[i], &a.history[i], sizeof(double));
        snapshot_release(&a);
        snapshot_release(&b);
        eb_finetuner_free(stopped);
        eb_finetuner_free(plain);
    }
    data_release(&data);
}

/*
 * Running out of memory while the history grows mid-training is a failed
 * call like any other: NOMEM, nothing leaked, a fitted model exactly as it
 * was; once memory suffices, the same model as a run that never failed.
 */
static void history_growth_failure_mid_training_changes_nothing(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        eb_finetuner *reference = new_model(ALL_KINDS[k], 100, NULL, NULL);
        assert_int_equal(train_on(reference, &data, false, CLASSES), EB_OK);
        assert_int_equal(train_on(reference, &data, false, CLASSES), EB_OK);
        model_snapshot expected = snapshot_finetuner(reference, x);
        eb_finetuner_free(reference);

        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        eb_finetuner *model = new_model(ALL_KINDS[k], 100, NULL, &mem);
        assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
        model_snapshot before = snapshot_finetuner(model, x);
        size_t blocks = counter.live_blocks, bytes = counter.live_bytes;
        bool growth_failed = false;
        for (size_t n = 0;; n++) {
            assert_true(n < 1000);
            counting_allocator_arm(&counter, n);
            eb_status status = train_on(model, &data, false, CLASSES);
            counting_allocator_arm(&counter, SIZE_MAX);
            if (status == EB_OK)
                break;
            assert_int_equal(status, EB_ERR_NOMEM);
            const char *message = eb_finetuner_last_error(model);
            assert_non_null(strstr(message, "out of memory"));
            growth_failed = growth_failed || strstr(message, "loss history after 64 epochs") != NULL;
            assert_int_equal(counter.live_blocks, blocks);
            assert_int_equal(counter.live_bytes, bytes);
            model_snapshot after = snapshot_finetuner(model, x);
            assert_true(snapshots_identical(&before, &after));
            snapshot_release(&after);
        }
        /* Some failing run hit the growth after the first 64 epochs, not only the allocations before training. */
        assert_true(growth_failed);
        model_snapshot got = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&expected, &got));
        snapshot_release(&got);
        snapshot_release(&before);
        snapshot_release(&expected);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(callback_sees_every_epoch),
        cmocka_unit_test(callback_stops_early),
        cmocka_unit_test(set_callback_replaces_the_callback),
        cmocka_unit_test(huge_epoch_bound_stopped_early_takes_little_memory),
        cmocka_unit_test(history_grows_during_a_long_fit),
        cmocka_unit_test(history_growth_failure_mid_training_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
