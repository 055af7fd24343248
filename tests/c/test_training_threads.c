/*
 * eb_finetuner_set_threads: a contrastive fit on rows that are mostly zeros
 * (their nonzeros listed once per call, the steps split over a team of
 * threads) gives the same bits on 1, 2, 3 and 8 threads and at
 * EB_FINETUNER_THREADS_AUTO, a team of two splitting its steps either way
 * (W's rows in halves, or the outputs in two sides): embeddings, loss
 * history and saved bytes, for a fit and for partial_fit continuing it, with
 * minibatches and full batch.
 * A refused thread count names n_threads and changes nothing; a threaded fit
 * that runs out of memory at any allocation leaves the model as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "testing.h"

/* 136 rows make 544 pairs: minibatches of 256, 256 and 32 pairs, the last touching at most 64 rows (the small-step path). */
enum { ROWS = 136, COLS = 160, CLASSES = 5, HIDDEN = 50, EPOCHS = 2 };

/* Thread counts, and how a team of two splits its steps (testing.h, eb__finetuner_set_team_split). */
typedef struct thread_setting {
    size_t threads;
    int split;
} thread_setting;

static const thread_setting THREAD_SETTINGS[] = {
    {1, EB_TEAM_SPLIT_MEASURED}, {2, EB_TEAM_SPLIT_ROWS}, {2, EB_TEAM_SPLIT_COLUMNS},
    {2, EB_TEAM_SPLIT_MEASURED}, {3, EB_TEAM_SPLIT_MEASURED}, {8, EB_TEAM_SPLIT_MEASURED},
    {EB_FINETUNER_THREADS_AUTO, EB_TEAM_SPLIT_MEASURED},
};
enum { N_SETTINGS = sizeof THREAD_SETTINGS / sizeof THREAD_SETTINGS[0] };

static void set_threads(eb_finetuner *model, thread_setting setting)
{
    assert_int_equal(eb_finetuner_set_threads(model, setting.threads), EB_OK);
    assert_int_equal(eb__finetuner_set_team_split(model, setting.split), EB_OK);
}

/* Rows like hashed n-gram counts: about a quarter of the entries nonzero, under the listing's 40% for 50 outputs. */
static test_data sparse_data(uint64_t seed)
{
    test_data d = make_data(ROWS, COLS, CLASSES, 0, 0.0, seed);
    test_rng rng = test_rng_make(seed + 1);
    for (size_t i = 0; i < ROWS * COLS; i++)
        if (test_rng_uniform(&rng, 0.0, 1.0) >= 0.25)
            d.x[i] = 0.0f;
    return d;
}

static eb_finetuner *new_model(size_t batch_pairs, const eb_allocator *mem)
{
    eb_finetuner_params params = test_params(EB_KIND_CONTRASTIVE, HIDDEN, EPOCHS, 7);
    params.batch_size = batch_pairs;
    eb_finetuner *model = NULL;
    eb_error err;
    if (eb_finetuner_create(&params, mem, &model, &err) != EB_OK)
        fail_msg("create: %s", err.message);
    return model;
}

static void fit_or_fail(eb_finetuner *model, const test_data *d, bool partial)
{
    eb_matrix x = data_x(d);
    eb_status status = partial ? eb_finetuner_partial_fit(model, x, d->y, CLASSES, NULL)
                               : eb_finetuner_fit(model, x, d->y, CLASSES, NULL);
    if (status != EB_OK)
        fail_msg("%s: %s", partial ? "partial_fit" : "fit", eb_finetuner_last_error(model));
}

static unsigned char *saved_bytes(const eb_finetuner *model, size_t *size)
{
    *size = eb_finetuner_saved_size(model);
    assert_true(*size > 0);
    unsigned char *bytes = malloc(*size);
    assert_non_null(bytes);
    size_t written = 0;
    eb_error err;
    assert_int_equal(eb_finetuner_save_to_buffer(model, bytes, *size, &written, &err), EB_OK);
    assert_int_equal(written, *size);
    return bytes;
}

/* What a caller sees of a model after each call: embeddings, history and weights (snapshot), and its saved bytes. */
typedef struct observed {
    model_snapshot snapshot;
    unsigned char *saved;
    size_t saved_size;
} observed;

static observed observe(eb_finetuner *model, const test_data *d)
{
    observed o;
    o.snapshot = snapshot_finetuner(model, data_x(d));
    o.saved = saved_bytes(model, &o.saved_size);
    return o;
}

static void assert_same_observed(const observed *a, const observed *b, thread_setting setting, const char *call)
{
    if (!fits_identical(&a->snapshot, &b->snapshot))
        fail_msg("%s on %zu threads (0: auto), split %d, differs from 1 thread", call, setting.threads, setting.split);
    assert_int_equal(a->saved_size, b->saved_size);
    assert_memory_equal(a->saved, b->saved, a->saved_size);
}

static void observed_release(observed *o)
{
    snapshot_release(&o->snapshot);
    free(o->saved);
}

static void check_same_bits_on_any_threads(size_t batch_pairs)
{
    test_data d = sparse_data(31);
    observed fitted[N_SETTINGS], continued[N_SETTINGS];
    for (size_t s = 0; s < N_SETTINGS; s++) {
        eb_finetuner *model = new_model(batch_pairs, NULL);
        set_threads(model, THREAD_SETTINGS[s]);
        fit_or_fail(model, &d, false);
        fitted[s] = observe(model, &d);
        fit_or_fail(model, &d, true);
        fit_or_fail(model, &d, true);
        continued[s] = observe(model, &d);
        eb_finetuner_free(model);
    }
    /* The fit learned something (the loss history has one entry per epoch), and partial_fit added to it. */
    assert_int_equal(fitted[0].snapshot.history_length, EPOCHS);
    assert_int_equal(continued[0].snapshot.history_length, EPOCHS + 2);
    for (size_t s = 1; s < N_SETTINGS; s++) {
        assert_same_observed(&fitted[0], &fitted[s], THREAD_SETTINGS[s], "fit");
        assert_same_observed(&continued[0], &continued[s], THREAD_SETTINGS[s], "partial_fit");
    }
    /* A model fitted on one thread count continues on another with the same bits. */
    eb_finetuner *model = new_model(batch_pairs, NULL);
    assert_int_equal(eb_finetuner_set_threads(model, 8), EB_OK);
    fit_or_fail(model, &d, false);
    assert_int_equal(eb_finetuner_set_threads(model, 2), EB_OK);
    fit_or_fail(model, &d, true);
    assert_int_equal(eb_finetuner_set_threads(model, 1), EB_OK);
    fit_or_fail(model, &d, true);
    observed mixed = observe(model, &d);
    assert_same_observed(&continued[0], &mixed, THREAD_SETTINGS[5], "fit on 8, partial_fit on 2 then 1");
    observed_release(&mixed);
    eb_finetuner_free(model);
    for (size_t s = 0; s < N_SETTINGS; s++) {
        observed_release(&fitted[s]);
        observed_release(&continued[s]);
    }
    data_release(&d);
}

/* 256 pairs a batch (a few batches an epoch, each touching most rows) and everything at once. */
static void minibatch_fits_give_the_same_bits_on_any_threads(void **state)
{
    (void)state;
    check_same_bits_on_any_threads(256);
}

static void full_batch_fits_give_the_same_bits_on_any_threads(void **state)
{
    (void)state;
    check_same_bits_on_any_threads(0);
}

/* A batch of few pairs touches at most a minibatch of rows: the other split of the weight gradient. */
static void small_batch_fits_give_the_same_bits_on_any_threads(void **state)
{
    (void)state;
    check_same_bits_on_any_threads(16);
}

/*
 * A fit trains its fresh weights in a copy whose rows are padded to whole vectors (src/contrastive.c,
 * padded_width); a continuing partial_fit trains the model's own weights as they are. Both layouts give the same
 * bits: a fit of 4 epochs equals a first partial_fit and 3 more (each one epoch), and so does one more pass of
 * each (the Adam moments and steps the fit leaves), on 1 thread and on 2 splitting either way, at widths that pad
 * (50, 5) and one that does not (48), with minibatches, a full batch and small batches. A fit of two sides keeps
 * each side's rows apart (src/contrastive.c, side_of): the copy back must put every column where it was.
 */
static void padded_training_gives_the_bits_of_the_model_layout(void **state)
{
    (void)state;
    static const size_t widths[] = {50, 5, 48};
    static const size_t batches[] = {256, 0, 16};
    static const thread_setting threads[] = {
        {1, EB_TEAM_SPLIT_MEASURED}, {2, EB_TEAM_SPLIT_ROWS}, {2, EB_TEAM_SPLIT_COLUMNS}};
    enum { FIT_EPOCHS = 4 };
    test_data d = sparse_data(17);
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
                eb_finetuner *fitted = NULL, *stepped = NULL;
                eb_finetuner_params params = test_params(EB_KIND_CONTRASTIVE, widths[w], FIT_EPOCHS, 9);
                params.batch_size = batches[b];
                assert_int_equal(eb_finetuner_create(&params, NULL, &fitted, NULL), EB_OK);
                params.n_epochs = 1;
                assert_int_equal(eb_finetuner_create(&params, NULL, &stepped, NULL), EB_OK);
                set_threads(fitted, threads[t]);
                set_threads(stepped, threads[t]);
                fit_or_fail(fitted, &d, false);
                for (size_t epoch = 0; epoch < FIT_EPOCHS; epoch++)
                    fit_or_fail(stepped, &d, true);
                model_snapshot a = snapshot_finetuner(fitted, data_x(&d));
                model_snapshot c = snapshot_finetuner(stepped, data_x(&d));
                assert_int_equal(a.history_length, FIT_EPOCHS);
                /* Only n_epochs differs between the two. */
                if (!fits_identical(&a, &c))
                    fail_msg("width %zu, batch %zu, %zu threads split %d: fit differs from partial_fit epoch by epoch",
                             widths[w], batches[b], threads[t].threads, threads[t].split);
                snapshot_release(&a);
                snapshot_release(&c);
                /* The fit's Adam moments and step count came back from the copy: one more pass agrees too. */
                fit_or_fail(fitted, &d, true);
                fit_or_fail(stepped, &d, true);
                a = snapshot_finetuner(fitted, data_x(&d));
                c = snapshot_finetuner(stepped, data_x(&d));
                if (!fits_identical(&a, &c))
                    fail_msg("width %zu, batch %zu, %zu threads split %d: partial_fit after fit differs", widths[w],
                             batches[b], threads[t].threads, threads[t].split);
                snapshot_release(&a);
                snapshot_release(&c);
                eb_finetuner_free(fitted);
                eb_finetuner_free(stepped);
            }
    data_release(&d);
}

/* Above EB_FINETUNER_MAX_THREADS: EB_ERR_INVALID_PARAM naming n_threads, the setting kept, later fits unaffected. */
static void too_many_threads_are_refused(void **state)
{
    (void)state;
    test_data d = sparse_data(5);
    eb_finetuner *reference = new_model(256, NULL);
    assert_int_equal(eb_finetuner_set_threads(reference, 3), EB_OK);
    fit_or_fail(reference, &d, false);
    observed expected = observe(reference, &d);
    eb_finetuner_free(reference);

    static const size_t refused[] = {EB_FINETUNER_MAX_THREADS + 1, 1000, SIZE_MAX};
    eb_finetuner *model = new_model(256, NULL);
    assert_int_equal(eb_finetuner_set_threads(model, 3), EB_OK);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(eb_finetuner_set_threads(model, refused[i]), EB_ERR_INVALID_PARAM);
        assert_non_null(strstr(eb_finetuner_last_error(model), "n_threads"));
    }
    fit_or_fail(model, &d, false);
    observed got = observe(model, &d);
    assert_same_observed(&expected, &got, THREAD_SETTINGS[4], "fit after refused thread counts");
    observed_release(&got);
    /* Refused on a fitted model too: nothing about it changes. */
    model_snapshot before = snapshot_finetuner(model, data_x(&d));
    assert_int_equal(eb_finetuner_set_threads(model, EB_FINETUNER_MAX_THREADS + 1), EB_ERR_INVALID_PARAM);
    model_snapshot after = snapshot_finetuner(model, data_x(&d));
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
    /* The largest accepted count is accepted. */
    assert_int_equal(eb_finetuner_set_threads(model, EB_FINETUNER_MAX_THREADS), EB_OK);
    observed_release(&expected);
    eb_finetuner_free(model);
    data_release(&d);
}

/*
 * A threaded fit or partial_fit with allocation N failing, for every N until the call gets through:
 * EB_ERR_NOMEM, nothing kept, the model exactly as before; the call that gets through gives the bits of one
 * that never failed.
 */
static void check_threaded_call_out_of_memory(size_t batch_pairs, bool prior_fit, bool partial)
{
    test_data d = sparse_data(13);
    eb_finetuner *reference = new_model(batch_pairs, NULL);
    assert_int_equal(eb_finetuner_set_threads(reference, 1), EB_OK);
    if (prior_fit)
        fit_or_fail(reference, &d, false);
    fit_or_fail(reference, &d, partial);
    observed expected = observe(reference, &d);
    eb_finetuner_free(reference);

    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = new_model(batch_pairs, &mem);
    assert_int_equal(eb_finetuner_set_threads(model, 3), EB_OK);
    if (prior_fit)
        fit_or_fail(model, &d, false);
    const size_t baseline_blocks = counter.live_blocks;
    model_snapshot before = snapshot_finetuner(model, data_x(&d));
    size_t failed_runs = 0;
    for (size_t n = 0;; n++) {
        assert_true(n < 1000);
        counting_allocator_arm(&counter, n);
        eb_matrix x = data_x(&d);
        eb_status status = partial ? eb_finetuner_partial_fit(model, x, d.y, CLASSES, NULL)
                                   : eb_finetuner_fit(model, x, d.y, CLASSES, NULL);
        const size_t failures = counter.failures;
        counting_allocator_arm(&counter, SIZE_MAX);
        if (status == EB_OK) {
            assert_int_equal(failures, 0);
            break;
        }
        if (status != EB_ERR_NOMEM)
            fail_msg("allocation %zu failing gave %s (%s)", n, eb_status_string(status), eb_finetuner_last_error(model));
        assert_int_equal(failures, 1);
        assert_non_null(strstr(eb_finetuner_last_error(model), "out of memory"));
        assert_int_equal(counter.live_blocks, baseline_blocks);
        model_snapshot after = snapshot_finetuner(model, data_x(&d));
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);
        failed_runs++;
    }
    assert_true(failed_runs >= 1);
    observed got = observe(model, &d);
    assert_same_observed(&expected, &got, THREAD_SETTINGS[4], "the fit after allocation failures");
    observed_release(&got);
    observed_release(&expected);
    snapshot_release(&before);
    eb_finetuner_free(model);
    assert_int_equal(counter.live_blocks, 0);
    data_release(&d);
}

static void threaded_fits_survive_allocation_failure(void **state)
{
    (void)state;
    /* Minibatches of 16 pairs gather their rows, which neither lists them nor starts a team. */
    static const size_t batches[] = {256, 0};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        check_threaded_call_out_of_memory(batches[b], false, false);
        check_threaded_call_out_of_memory(batches[b], true, false);
        check_threaded_call_out_of_memory(batches[b], true, true);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minibatch_fits_give_the_same_bits_on_any_threads),
        cmocka_unit_test(full_batch_fits_give_the_same_bits_on_any_threads),
        cmocka_unit_test(small_batch_fits_give_the_same_bits_on_any_threads),
        cmocka_unit_test(padded_training_gives_the_bits_of_the_model_layout),
        cmocka_unit_test(too_many_threads_are_refused),
        cmocka_unit_test(threaded_fits_survive_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
