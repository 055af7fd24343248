/*
 * Class names and metadata: what a model file now carries besides weights.
 * Names are integers or UTF-8 strings (NULs allowed, lengths given or not),
 * checked before anything changes (distinct, valid UTF-8, one per class),
 * copied, and saved and loaded with the model; metadata is bytes the library
 * keeps and saves without reading them. Every refusal names what is wrong
 * and leaves the finetuner as it was.
 */
/* mkdtemp, rmdir, unlink: POSIX, hidden under strict -std=c11 without this. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

enum { ROWS = 30, COLS = 4, CLASSES = 3, HIDDEN = 3 };

static test_data shared_data(void) { return make_data(ROWS, COLS, CLASSES, 2, 2.0, 31337); }

static eb_finetuner *new_model(eb_finetuner_kind kind, const eb_allocator *mem)
{
    eb_finetuner_params params = test_params(kind, HIDDEN, 2, 5);
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, mem, &model, NULL), EB_OK);
    return model;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", haystack, needle);
}

static const int64_t INTEGERS[CLASSES] = {-5, 0, INT64_MAX};
/* A NUL inside a name, a name of two-byte characters, and the empty name: all valid, all distinct. */
static const char *const STRINGS[CLASSES] = {"a\0b", "\xc3\xa9t\xc3\xa9", ""};
static const size_t LENGTHS[CLASSES] = {3, 5, 0};
/* NUL-terminated names, given without lengths (string_lengths NULL); one of four bytes. */
static const char *const C_STRINGS[CLASSES] = {"cat", "dog", "\xf0\x9f\x90\x9f"};

static eb_class_labels int_labels(void)
{
    eb_class_labels l = {EB_LABELS_INT64, CLASSES, INTEGERS, NULL, NULL};
    return l;
}

static eb_class_labels text_labels(void)
{
    eb_class_labels l = {EB_LABELS_UTF8, CLASSES, NULL, STRINGS, LENGTHS};
    return l;
}

static eb_class_labels c_string_labels(void)
{
    eb_class_labels l = {EB_LABELS_UTF8, CLASSES, NULL, C_STRINGS, NULL};
    return l;
}

/* The view the library returns: the given names, with strings NUL-terminated after their bytes. */
static void assert_labels(const eb_finetuner *model, const eb_class_labels *expected)
{
    eb_class_labels got;
    assert_int_equal(eb_finetuner_class_labels(model, &got), EB_OK);
    assert_true(class_labels_equal(&got, expected));
    if (got.type == EB_LABELS_UTF8) {
        assert_non_null(got.string_lengths);
        for (size_t i = 0; i < got.count; i++)
            assert_int_equal(got.strings[i][got.string_lengths[i]], '\0');
    }
}

static void names_round_trip_through_fit_save_and_load(void **state)
{
    (void)state;
    test_data data = shared_data();
    char directory[] = "/tmp/eb_labels_XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[sizeof directory + 32];
    snprintf(path, sizeof path, "%s/model.ebm", directory);
    const eb_class_labels choices[] = {int_labels(), text_labels(), c_string_labels()};
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        for (size_t c = 0; c < sizeof choices / sizeof choices[0]; c++) {
            eb_finetuner *model = new_model(LABELLED_KINDS[k], NULL);
            eb_class_labels none;
            assert_int_equal(eb_finetuner_class_labels(model, &none), EB_OK);
            assert_int_equal(none.type, EB_LABELS_NONE);
            assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, &choices[c]), EB_OK);
            assert_labels(model, &choices[c]);

            /* Through a buffer and through a file. */
            size_t size = eb_finetuner_saved_size(model);
            unsigned char *bytes = malloc(size);
            assert_non_null(bytes);
            assert_int_equal(eb_finetuner_save_to_buffer(model, bytes, size, NULL, NULL), EB_OK);
            eb_finetuner *from_buffer = NULL, *from_file = NULL;
            assert_int_equal(eb_finetuner_load_from_buffer(bytes, size, NULL, &from_buffer, NULL), EB_OK);
            assert_labels(from_buffer, &choices[c]);
            assert_int_equal(eb_finetuner_save(model, path, NULL), EB_OK);
            assert_int_equal(eb_finetuner_load(path, NULL, &from_file, NULL), EB_OK);
            assert_labels(from_file, &choices[c]);

            /* A fresh fit replaces the names too: without any, the model has none. */
            assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, NULL), EB_OK);
            assert_int_equal(eb_finetuner_class_labels(model, &none), EB_OK);
            assert_int_equal(none.type, EB_LABELS_NONE);
            assert_int_equal(none.count, 0);
            /* set_class_labels names a fitted model's classes afterwards, and EB_LABELS_NONE removes them. */
            assert_int_equal(eb_finetuner_set_class_labels(model, &choices[c]), EB_OK);
            assert_labels(model, &choices[c]);
            const eb_class_labels removal = {EB_LABELS_NONE, 0, NULL, NULL, NULL};
            assert_int_equal(eb_finetuner_set_class_labels(model, &removal), EB_OK);
            assert_int_equal(eb_finetuner_class_labels(model, &none), EB_OK);
            assert_int_equal(none.type, EB_LABELS_NONE);
            free(bytes);
            eb_finetuner_free(from_buffer);
            eb_finetuner_free(from_file);
            eb_finetuner_free(model);
        }
    }
    unlink(path);
    assert_int_equal(rmdir(directory), 0);
    data_release(&data);
}

/* Names that are refused, with what the message must name. */
static void expect_refused(eb_finetuner *model, const test_data *data, const eb_class_labels *labels,
                           eb_status status, const char *needle)
{
    model_snapshot before = snapshot_finetuner(model, data_x(data));
    eb_status got = eb_finetuner_set_class_labels(model, labels);
    if (got != status)
        fail_msg("set_class_labels: got %s, expected %s (%s)", eb_status_string(got), eb_status_string(status),
                 eb_finetuner_last_error(model));
    assert_contains(eb_finetuner_last_error(model), needle);
    /* fit refuses the same names the same way, before training. */
    got = eb_finetuner_fit(model, data_x(data), data->y, CLASSES, labels);
    assert_int_equal(got, status);
    assert_contains(eb_finetuner_last_error(model), needle);
    model_snapshot after = snapshot_finetuner(model, data_x(data));
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
}

static void bad_names_are_refused(void **state)
{
    (void)state;
    test_data data = shared_data();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        eb_finetuner *model = new_model(LABELLED_KINDS[k], NULL);
        const eb_class_labels good = int_labels();
        /* Before any fit there are no classes to name: fit takes the names. */
        assert_int_equal(eb_finetuner_set_class_labels(model, &good), EB_ERR_NOT_FITTED);
        assert_contains(eb_finetuner_last_error(model), "not fitted");
        assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, &good), EB_OK);

        static const int64_t repeated[CLASSES] = {4, 9, 4};
        eb_class_labels dup = {EB_LABELS_INT64, CLASSES, repeated, NULL, NULL};
        expect_refused(model, &data, &dup, EB_ERR_INVALID_PARAM, "class labels 0 and 2 are equal");

        static const char *const repeated_text[CLASSES] = {"x", "y\0z", "y\0z"};
        static const size_t repeated_lengths[CLASSES] = {1, 3, 3};
        eb_class_labels dup_text = {EB_LABELS_UTF8, CLASSES, NULL, repeated_text, repeated_lengths};
        expect_refused(model, &data, &dup_text, EB_ERR_INVALID_PARAM, "class labels 1 and 2 are equal");
        /* Cut at their NUL, "y\0z" and "y\0w" would be equal; with their lengths they are not. */
        static const char *const nul_apart[CLASSES] = {"x", "y\0z", "y\0w"};
        eb_class_labels distinct = {EB_LABELS_UTF8, CLASSES, NULL, nul_apart, repeated_lengths};
        assert_int_equal(eb_finetuner_set_class_labels(model, &distinct), EB_OK);
        eb_class_labels cut = {EB_LABELS_UTF8, CLASSES, NULL, nul_apart, NULL};
        expect_refused(model, &data, &cut, EB_ERR_INVALID_PARAM, "class labels 1 and 2 are equal");

        static const char *const invalid[CLASSES] = {"ok", "\xff\xfe", "fine"};
        eb_class_labels bad_utf8 = {EB_LABELS_UTF8, CLASSES, NULL, invalid, NULL};
        expect_refused(model, &data, &bad_utf8, EB_ERR_INVALID_UTF8, "class label 1 is not valid UTF-8");
        static const char *const overlong[CLASSES] = {"ok", "fine", "\xc0\xaf"};
        eb_class_labels bad_encoding = {EB_LABELS_UTF8, CLASSES, NULL, overlong, NULL};
        expect_refused(model, &data, &bad_encoding, EB_ERR_INVALID_UTF8, "class label 2");

        eb_class_labels too_few = int_labels();
        too_few.count = CLASSES - 1;
        expect_refused(model, &data, &too_few, EB_ERR_LABEL_OUT_OF_RANGE, "2 class labels for 3 classes");
        static const int64_t four[4] = {1, 2, 3, 4};
        eb_class_labels too_many = {EB_LABELS_INT64, 4, four, NULL, NULL};
        expect_refused(model, &data, &too_many, EB_ERR_LABEL_OUT_OF_RANGE, "4 class labels for 3 classes");

        eb_class_labels no_integers = {EB_LABELS_INT64, CLASSES, NULL, NULL, NULL};
        expect_refused(model, &data, &no_integers, EB_ERR_NULL_POINTER, "integers is NULL");
        static const char *const with_null[CLASSES] = {"a", NULL, "c"};
        eb_class_labels null_string = {EB_LABELS_UTF8, CLASSES, NULL, with_null, NULL};
        expect_refused(model, &data, &null_string, EB_ERR_NULL_POINTER, "class label 1 is NULL");
        eb_class_labels unknown = {(eb_label_type)7, CLASSES, INTEGERS, NULL, NULL};
        expect_refused(model, &data, &unknown, EB_ERR_INVALID_PARAM, "unknown type 7");

        char *long_name = malloc(EB_MAX_LABEL_BYTES + 1);
        assert_non_null(long_name);
        memset(long_name, 'n', EB_MAX_LABEL_BYTES + 1);
        const char *long_names[CLASSES] = {"a", "b", long_name};
        const size_t long_lengths[CLASSES] = {1, 1, EB_MAX_LABEL_BYTES + 1};
        eb_class_labels too_long = {EB_LABELS_UTF8, CLASSES, NULL, long_names, long_lengths};
        expect_refused(model, &data, &too_long, EB_ERR_INVALID_PARAM, "class label 2 has 65537 bytes");
        /* At the limit a name is fine. */
        const size_t limit_lengths[CLASSES] = {1, 1, EB_MAX_LABEL_BYTES};
        eb_class_labels at_limit = {EB_LABELS_UTF8, CLASSES, NULL, long_names, limit_lengths};
        assert_int_equal(eb_finetuner_set_class_labels(model, &at_limit), EB_OK);
        free(long_name);
        assert_int_equal(eb_finetuner_set_class_labels(model, NULL), EB_ERR_NULL_POINTER);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

/* partial_fit fixes the names with the classes on its first call; later calls may repeat them or pass NULL. */
static void partial_fit_keeps_the_names_it_fixed(void **state)
{
    (void)state;
    test_data data = shared_data();
    eb_matrix x = data_x(&data);
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        eb_finetuner *model = new_model(LABELLED_KINDS[k], NULL);
        const eb_class_labels names = text_labels();
        assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, CLASSES, &names), EB_OK);
        assert_labels(model, &names);
        assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, NULL), EB_OK);
        /* Equal names in other memory are the same names. */
        char copies[CLASSES][8];
        const char *copy_pointers[CLASSES];
        for (size_t i = 0; i < CLASSES; i++) {
            memcpy(copies[i], STRINGS[i], LENGTHS[i]);
            copy_pointers[i] = copies[i];
        }
        eb_class_labels same = {EB_LABELS_UTF8, CLASSES, NULL, copy_pointers, LENGTHS};
        assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, &same), EB_OK);
        assert_labels(model, &names);

        model_snapshot before = snapshot_finetuner(model, x);
        const eb_class_labels other_type = int_labels();
        assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, &other_type), EB_ERR_LABEL_OUT_OF_RANGE);
        assert_contains(eb_finetuner_last_error(model), "names differ");
        copies[1][0] = 'E';
        assert_int_equal(eb_finetuner_partial_fit(model, x, data.y, 0, &same), EB_ERR_LABEL_OUT_OF_RANGE);
        assert_contains(eb_finetuner_last_error(model), "names differ");
        model_snapshot after = snapshot_finetuner(model, x);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&before);
        snapshot_release(&after);

        /* Names that would be refused are refused on the first partial_fit too, which then trains nothing. */
        eb_finetuner *fresh = new_model(LABELLED_KINDS[k], NULL);
        static const int64_t repeated[CLASSES] = {1, 1, 2};
        eb_class_labels dup = {EB_LABELS_INT64, CLASSES, repeated, NULL, NULL};
        assert_int_equal(eb_finetuner_partial_fit(fresh, x, data.y, CLASSES, &dup), EB_ERR_INVALID_PARAM);
        assert_contains(eb_finetuner_last_error(fresh), "class labels 0 and 1 are equal");
        assert_false(eb_finetuner_is_fitted(fresh));
        eb_finetuner_free(fresh);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

static void metadata_round_trips_and_has_a_limit(void **state)
{
    (void)state;
    test_data data = shared_data();
    /* Any bytes: NULs and bytes that are not UTF-8 included. */
    static const unsigned char blob[] = {0x7B, 0x00, 0xFF, 0x10, 0x22, 0x7D};
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        for (int fit = 0; fit <= 1; fit++) {
            eb_finetuner *model = new_model(ALL_KINDS[k], NULL);
            if (fit)
                assert_int_equal(train_on(model, &data, false, CLASSES), EB_OK);
            size_t size = 99;
            assert_null(eb_finetuner_metadata(model, &size));
            assert_int_equal(size, 0);
            const size_t bare = eb_finetuner_saved_size(model);
            assert_int_equal(eb_finetuner_set_metadata(model, blob, sizeof blob), EB_OK);
            assert_int_equal(eb_finetuner_saved_size(model), bare + sizeof blob);
            const unsigned char *kept = eb_finetuner_metadata(model, &size);
            assert_int_equal(size, sizeof blob);
            assert_memory_equal(kept, blob, sizeof blob);
            assert_true((const void *)kept != (const void *)blob);

            size_t saved_size = eb_finetuner_saved_size(model);
            unsigned char *bytes = malloc(saved_size);
            assert_non_null(bytes);
            assert_int_equal(eb_finetuner_save_to_buffer(model, bytes, saved_size, NULL, NULL), EB_OK);
            eb_finetuner *loaded = NULL;
            assert_int_equal(eb_finetuner_load_from_buffer(bytes, saved_size, NULL, &loaded, NULL), EB_OK);
            kept = eb_finetuner_metadata(loaded, &size);
            assert_int_equal(size, sizeof blob);
            assert_memory_equal(kept, blob, sizeof blob);
            free(bytes);
            eb_finetuner_free(loaded);

            /* Over the limit: refused, and the old metadata stays. */
            model_snapshot before = snapshot_finetuner(model, data_x(&data));
            assert_int_equal(eb_finetuner_set_metadata(model, blob, (size_t)EB_MAX_METADATA_BYTES + 1), EB_ERR_TOO_LARGE);
            assert_contains(eb_finetuner_last_error(model), "metadata");
            assert_int_equal(eb_finetuner_set_metadata(model, NULL, 4), EB_ERR_NULL_POINTER);
            model_snapshot after = snapshot_finetuner(model, data_x(&data));
            assert_true(snapshots_identical(&before, &after));
            snapshot_release(&before);
            snapshot_release(&after);

            /* At the limit it is kept; size 0 removes it. */
            unsigned char *largest = calloc(EB_MAX_METADATA_BYTES, 1);
            assert_non_null(largest);
            largest[EB_MAX_METADATA_BYTES - 1] = 0xEE;
            assert_int_equal(eb_finetuner_set_metadata(model, largest, EB_MAX_METADATA_BYTES), EB_OK);
            kept = eb_finetuner_metadata(model, &size);
            assert_int_equal(size, EB_MAX_METADATA_BYTES);
            assert_int_equal(kept[EB_MAX_METADATA_BYTES - 1], 0xEE);
            free(largest);
            assert_int_equal(eb_finetuner_set_metadata(model, NULL, 0), EB_OK);
            assert_null(eb_finetuner_metadata(model, &size));
            assert_int_equal(size, 0);
            assert_int_equal(eb_finetuner_saved_size(model), bare);
            eb_finetuner_free(model);
        }
    }
    data_release(&data);
}

/* Copying names or metadata needs memory: a failure there is NOMEM and changes nothing. */
static void names_and_metadata_survive_allocation_failure(void **state)
{
    (void)state;
    test_data data = shared_data();
    const eb_class_labels names = text_labels();
    for (size_t k = 0; k < N_LABELLED_KINDS; k++) {
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        eb_finetuner *model = new_model(LABELLED_KINDS[k], &mem);
        assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, CLASSES, NULL), EB_OK);
        const size_t blocks = counter.live_blocks;
        model_snapshot before = snapshot_finetuner(model, data_x(&data));
        size_t failed = 0;
        for (size_t n = 0;; n++) {
            assert_true(n < 100);
            counting_allocator_arm(&counter, n);
            eb_status status = eb_finetuner_set_class_labels(model, &names);
            counting_allocator_arm(&counter, SIZE_MAX);
            if (status == EB_OK)
                break;
            assert_int_equal(status, EB_ERR_NOMEM);
            assert_int_equal(counter.live_blocks, blocks);
            model_snapshot after = snapshot_finetuner(model, data_x(&data));
            assert_true(snapshots_identical(&before, &after));
            snapshot_release(&after);
            failed++;
        }
        assert_true(failed >= 1);
        assert_labels(model, &names);

        counting_allocator_arm(&counter, 0);
        assert_int_equal(eb_finetuner_set_metadata(model, "meta", 4), EB_ERR_NOMEM);
        counting_allocator_arm(&counter, SIZE_MAX);
        size_t size = 99;
        assert_null(eb_finetuner_metadata(model, &size));
        assert_int_equal(size, 0);
        snapshot_release(&before);
        eb_finetuner_free(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_round_trip_through_fit_save_and_load),
        cmocka_unit_test(bad_names_are_refused),
        cmocka_unit_test(partial_fit_keeps_the_names_it_fixed),
        cmocka_unit_test(metadata_round_trips_and_has_a_limit),
        cmocka_unit_test(names_and_metadata_survive_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
