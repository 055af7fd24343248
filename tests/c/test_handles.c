/*
 * What one handle type for every kind adds: each handle knows its kind, so a
 * call that does not apply to it is EB_ERR_WRONG_KIND, and carries a magic
 * value that free clears, so a freed handle (where the memory is still
 * readable) or a pointer that never was a handle is EB_ERR_INVALID_HANDLE,
 * and the accessors answer 0 or NULL for it. Every refusal changes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"

enum { ROWS = 24, COLS = 5, CLASSES = 3, HIDDEN = 4 };

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 2, 2.0, 404); }

static eb_finetuner *fitted(eb_finetuner_kind kind, const test_data *data, const eb_allocator *mem)
{
    eb_finetuner_params params = test_params(kind, HIDDEN, 3, 1);
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, mem, &model, NULL), EB_OK);
    assert_int_equal(train_on(model, data, false, CLASSES), EB_OK);
    return model;
}

/*
 * Every call on a handle that is not a live finetuner: the fallible ones
 * return EB_ERR_INVALID_HANDLE (with a message where they take an eb_error),
 * the accessors 0 or NULL, free does nothing. Writes nothing through the handle.
 */
static void expect_every_call_refused(eb_finetuner *handle, const test_data *data)
{
    eb_matrix x = data_x(data);
    float out[ROWS * HIDDEN];
    eb_error err;
    assert_int_equal(eb_finetuner_fit(handle, x, data->y, CLASSES, NULL), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_partial_fit(handle, x, data->y, 0, NULL), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_fit_pairs(handle, data_pairs(data)), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_partial_fit_pairs(handle, data_pairs(data)), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_transform(handle, x, eb_mut_matrix_view(out, ROWS, HIDDEN), &err),
                     EB_ERR_INVALID_HANDLE);
    assert_int_equal(err.status, EB_ERR_INVALID_HANDLE);
    assert_non_null(strstr(err.message, "not a live eb_finetuner"));
    float similarities[ROWS];
    assert_int_equal(eb_finetuner_predict_pairs(handle, data_pairs(data), similarities, ROWS, &err),
                     EB_ERR_INVALID_HANDLE);
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    assert_int_equal(eb_finetuner_set_params(handle, &params), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_set_callback(handle, NULL, NULL), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_set_threads(handle, 2), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_set_threads(handle, EB_FINETUNER_THREADS_AUTO), EB_ERR_INVALID_HANDLE);
    static const int64_t names[CLASSES] = {1, 2, 3};
    eb_class_labels labels = {EB_LABELS_INT64, CLASSES, names, NULL, NULL};
    assert_int_equal(eb_finetuner_set_class_labels(handle, &labels), EB_ERR_INVALID_HANDLE);
    eb_class_labels got;
    memset(&got, 0xAB, sizeof got);
    assert_int_equal(eb_finetuner_class_labels(handle, &got), EB_ERR_INVALID_HANDLE);
    assert_int_equal(got.type, EB_LABELS_NONE);
    assert_int_equal(got.count, 0);
    assert_int_equal(eb_finetuner_set_metadata(handle, "x", 1), EB_ERR_INVALID_HANDLE);
    unsigned char buffer[64];
    size_t written = 99;
    assert_int_equal(eb_finetuner_save_to_buffer(handle, buffer, sizeof buffer, &written, &err), EB_ERR_INVALID_HANDLE);
    assert_int_equal(written, 0);
    assert_int_equal(eb_finetuner_save(handle, "/nonexistent/never-written.ebm", &err), EB_ERR_INVALID_HANDLE);
    assert_int_equal(eb_finetuner_check_savable(handle, &err), EB_ERR_INVALID_HANDLE);

    assert_handle_answers_nothing(handle);
    eb_finetuner_free(handle);
}

/*
 * A freed handle is caught while its memory is still there to read. The
 * allocator keeps freed blocks, so reading the cleared magic is defined in
 * this test; with a real allocator the memory may be reused, which is what
 * finetune.h says no check can catch.
 */
static void freed_handles_are_refused(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        counter.keep_freed = true;
        eb_finetuner *model = fitted(ALL_KINDS[k], &data, &mem);
        assert_int_equal(eb_finetuner_kind_of(model), ALL_KINDS[k]);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
        const size_t attempts = counter.attempts;
        expect_every_call_refused(model, &data);
        /* A second free of the same handle is refused too: nothing is given back twice. */
        assert_int_equal(counter.live_blocks, 0);
        assert_int_equal(counter.attempts, attempts);
        counting_allocator_release_kept(&counter);
    }
    data_release(&data);
}

/* Memory that never held a finetuner: zeros, and bytes that are not the magic. */
static void foreign_pointers_are_refused(void **state)
{
    (void)state;
    test_data data = shared_data();
    /* Larger than any finetuner struct, and aligned for it. */
    static union {
        max_align_t align;
        unsigned char bytes[4096];
    } zeroed, patterned;
    memset(zeroed.bytes, 0, sizeof zeroed.bytes);
    expect_every_call_refused((eb_finetuner *)(void *)zeroed.bytes, &data);
    memset(patterned.bytes, 0x5A, sizeof patterned.bytes);
    expect_every_call_refused((eb_finetuner *)(void *)patterned.bytes, &data);
    /* Nothing was written into either. */
    for (size_t i = 0; i < sizeof zeroed.bytes; i++) {
        assert_int_equal(zeroed.bytes[i], 0);
        assert_int_equal(patterned.bytes[i], 0x5A);
    }
    data_release(&data);
}

/* Training calls of the other kind of learning: refused by name, the finetuner unchanged. */
static void calls_of_another_kind_are_refused(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        const eb_finetuner_kind kind = ALL_KINDS[k];
        eb_finetuner *model = fitted(kind, &data, NULL);
        model_snapshot before = snapshot_finetuner(model, x);
        if (kind == EB_KIND_PAIR_LEARNER) {
            assert_int_equal(eb_finetuner_fit(model, x, data.y, CLASSES, NULL), EB_ERR_WRONG_KIND);
            assert_non_null(strstr(eb_finetuner_last_error(model), "a pair_learner finetuner learns from pairs"));
            assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, NULL), EB_ERR_WRONG_KIND);
            assert_non_null(strstr(eb_finetuner_last_error(model), "eb_finetuner_fit_pairs"));
            static const int64_t names[CLASSES] = {1, 2, 3};
            eb_class_labels labels = {EB_LABELS_INT64, CLASSES, names, NULL, NULL};
            assert_int_equal(eb_finetuner_set_class_labels(model, &labels), EB_ERR_WRONG_KIND);
            assert_non_null(strstr(eb_finetuner_last_error(model), "has no classes"));
            assert_int_equal(eb_finetuner_n_classes(model), 0);
        } else {
            assert_int_equal(eb_finetuner_fit_pairs(model, data_pairs(&data)), EB_ERR_WRONG_KIND);
            assert_non_null(strstr(eb_finetuner_last_error(model), "learns from rows with class labels"));
            assert_non_null(strstr(eb_finetuner_last_error(model), eb_finetuner_kind_name(kind)));
            assert_int_equal(eb_finetuner_partial_fit_pairs(model, data_pairs(&data)), EB_ERR_WRONG_KIND);
            assert_non_null(strstr(eb_finetuner_last_error(model), "eb_finetuner_fit or partial_fit"));
        }
        model_snapshot after = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&before);
        snapshot_release(&after);
        /* The kind's own training still works after the refusals and clears the message. */
        assert_int_equal(train_on(model, &data, true, 0), EB_OK);
        assert_string_equal(eb_finetuner_last_error(model), "");

        /* predict_pairs applies to every kind: each re-embeds rows. */
        float similarities[2 * ROWS];
        eb_error err;
        eb_pairs pairs = data_pairs(&data);
        assert_int_equal(eb_finetuner_predict_pairs(model, pairs, similarities, pairs.count, &err), EB_OK);
        for (size_t i = 0; i < pairs.count; i++)
            assert_true(similarities[i] >= -1.0001f && similarities[i] <= 1.0001f);
        /* A short output is EB_ERR_BUFFER_TOO_SMALL, saying how much is needed, with nothing written. */
        similarities[0] = 42.0f;
        assert_int_equal(eb_finetuner_predict_pairs(model, pairs, similarities, pairs.count - 1, &err),
                         EB_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(err.status, EB_ERR_BUFFER_TOO_SMALL);
        assert_non_null(strstr(err.message, "48 pairs"));
        assert_true(similarities[0] == 42.0f);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(freed_handles_are_refused),
        cmocka_unit_test(foreign_pointers_are_refused),
        cmocka_unit_test(calls_of_another_kind_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
