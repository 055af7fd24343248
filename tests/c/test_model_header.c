/*
 * What the library tells a binding instead of leaving it to re-implement:
 * a saved model's header (eb_model_read_header, eb_model_read_file_header),
 * the rows of a training step (eb_training_step_rows) and the transform
 * slice (EB_TRANSFORM_SLICE_ROWS). The header reader must agree with the
 * loaders on every header it refuses, since both go through one parser.
 */
/* mkdtemp, rmdir: POSIX, hidden under strict -std=c11 without this. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "helpers.h"

enum { N_ROWS = 30, N_COLS = 5, N_CLASSES = 3 };

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", haystack, needle);
}

static void put_u32(uint8_t *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

/* A fitted model of any kind, saved to malloc'd bytes. */
typedef struct saved_model {
    uint8_t *data;
    size_t size;
} saved_model;

static saved_model save_fitted(eb_finetuner_kind kind)
{
    test_data data = make_data(N_ROWS, N_COLS, N_CLASSES, 0, 0.0, 7);
    eb_finetuner_params params = test_params(kind, kind == EB_KIND_FEEDFORWARD ? 4 : 3, kind == EB_KIND_FEEDFORWARD ? 3 : 2, 0);
    eb_finetuner *model;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(train_on(model, &data, false, N_CLASSES), EB_OK);
    saved_model saved = {NULL, eb_finetuner_saved_size(model)};
    saved.data = malloc(saved.size);
    assert_non_null(saved.data);
    assert_int_equal(eb_finetuner_save_to_buffer(model, saved.data, saved.size, NULL, NULL), EB_OK);
    eb_finetuner_free(model);
    data_release(&data);
    return saved;
}

/* The loader on bytes that must be refused; returns its status, the message in err. */
static eb_status load_refused(const uint8_t *data, size_t size, eb_error *err)
{
    eb_finetuner *model = NULL;
    eb_status status = eb_finetuner_load_from_buffer(data, size, NULL, &model, err);
    assert_null(model);
    assert_int_not_equal(status, EB_OK);
    return status;
}

/* Field by field: the struct has padding, which a struct copy need not preserve. */
static void assert_same_header(const eb_model_header *a, const eb_model_header *b)
{
    assert_int_equal(a->format_version, b->format_version);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->payload_size, b->payload_size);
    assert_int_equal(a->payload_crc32, b->payload_crc32);
}

static void assert_header_zero(const eb_model_header *header)
{
    const eb_model_header zero = {0, (eb_finetuner_kind)0, 0, 0};
    assert_same_header(header, &zero);
}

/* ---- buffers ------------------------------------------------------------------------- */

static void reads_the_header_of_saved_models_of_every_kind(void **state)
{
    (void)state;
    const eb_finetuner_kind *kinds = ALL_KINDS;
    for (size_t i = 0; i < N_ALL_KINDS; i++) {
        saved_model saved = save_fitted(kinds[i]);
        eb_model_header header;
        eb_error err;
        assert_int_equal(eb_model_read_header(saved.data, saved.size, &header, &err), EB_OK);
        assert_int_equal(err.status, EB_OK);
        assert_string_equal(err.message, "");
        assert_int_equal(header.kind, kinds[i]);
        assert_int_equal(header.format_version, EB_MODEL_FORMAT_VERSION);
        assert_int_equal(header.payload_size, saved.size - EB_MODEL_HEADER_SIZE);
        assert_int_equal(header.payload_crc32, saved_model_crc(saved.data, saved.size));

        /* The header alone is enough, and err is optional. */
        eb_model_header alone;
        assert_int_equal(eb_model_read_header(saved.data, EB_MODEL_HEADER_SIZE, &alone, NULL), EB_OK);
        assert_same_header(&alone, &header);
        free(saved.data);
    }
}

static void a_header_the_loaders_refuse_is_refused_with_the_same_message(void **state)
{
    (void)state;
    saved_model saved = save_fitted(EB_KIND_CONTRASTIVE);
    uint8_t *copy = malloc(saved.size);
    assert_non_null(copy);
    static const struct {
        size_t offset;  /* where to write value, as a u32; SIZE_MAX: cut the data to `value` bytes */
        uint32_t value;
        const char *needle;
    } cases[] = {
        {0, 0x42424242u, "EMBETTER magic"},
        {8, 0, "version 0 does not exist"},
        {8, EB_MODEL_FORMAT_VERSION + 1, "is newer than this library's"},
        {8, UINT32_MAX, "is newer than this library's"},
        {12, 0, "unknown kind 0"},
        {12, 4, "unknown kind 4"},
        {12, UINT32_MAX, "unknown kind 4294967295"},
        {SIZE_MAX, EB_MODEL_HEADER_SIZE - 1, "27 bytes is shorter than the 28-byte header"},
        {SIZE_MAX, 0, "0 bytes is shorter"},
        {SIZE_MAX, 5, "5 bytes is shorter"},    /* "EMBET": a model cut short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, saved.data, saved.size);
        size_t size = saved.size;
        if (cases[i].offset == SIZE_MAX)
            size = cases[i].value;
        else
            put_u32(copy + cases[i].offset, cases[i].value);
        eb_model_header header;
        memset(&header, 0xAB, sizeof header);
        eb_error err, loader_err;
        assert_int_equal(eb_model_read_header(copy, size, &header, &err), EB_ERR_FORMAT);
        assert_int_equal(err.status, EB_ERR_FORMAT);
        assert_contains(err.message, "saved model: ");
        assert_contains(err.message, cases[i].needle);
        assert_header_zero(&header);
        assert_int_equal(load_refused(copy, size, &loader_err), EB_ERR_FORMAT);
        assert_string_equal(loader_err.message, err.message);
    }
    free(copy);
    free(saved.data);
}

static void the_payload_is_reported_not_checked(void **state)
{
    (void)state;
    saved_model saved = save_fitted(EB_KIND_FEEDFORWARD);
    /* A corrupt payload and a truncated one: the header is still readable, only loading refuses them. */
    saved.data[saved.size - 1] ^= 0x10;
    eb_model_header header;
    eb_error err;
    assert_int_equal(eb_model_read_header(saved.data, saved.size, &header, &err), EB_OK);
    assert_int_equal(header.kind, EB_KIND_FEEDFORWARD);
    assert_int_equal(load_refused(saved.data, saved.size, &err), EB_ERR_FORMAT);
    assert_contains(err.message, "checksum mismatch");
    assert_int_equal(eb_model_read_header(saved.data, saved.size - 5, &header, &err), EB_OK);
    assert_int_equal(header.payload_size, saved.size - EB_MODEL_HEADER_SIZE);
    assert_int_equal(load_refused(saved.data, saved.size - 5, &err), EB_ERR_FORMAT);
    assert_contains(err.message, "payload bytes");
    free(saved.data);
}

static void null_arguments_are_refused(void **state)
{
    (void)state;
    saved_model saved = save_fitted(EB_KIND_FEEDFORWARD);
    eb_model_header header;
    eb_error err;
    assert_int_equal(eb_model_read_header(NULL, saved.size, &header, &err), EB_ERR_NULL_POINTER);
    assert_string_equal(err.message, "buffer is NULL");
    assert_header_zero(&header);
    assert_int_equal(eb_model_read_header(saved.data, saved.size, NULL, &err), EB_ERR_NULL_POINTER);
    assert_string_equal(err.message, "out is NULL");
    assert_int_equal(eb_model_read_file_header(NULL, &header, &err), EB_ERR_NULL_POINTER);
    assert_string_equal(err.message, "path is NULL");
    assert_int_equal(eb_model_read_file_header("/", NULL, NULL), EB_ERR_NULL_POINTER);
    free(saved.data);
}

/* ---- files ----------------------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, size, file), size);
    assert_int_equal(fclose(file), 0);
}

static void reads_the_header_of_a_file_and_no_further(void **state)
{
    (void)state;
    char directory[] = "/tmp/eb_header_XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[sizeof directory + 32], short_path[sizeof directory + 32];
    snprintf(path, sizeof path, "%s/model.ebm", directory);
    snprintf(short_path, sizeof short_path, "%s/short.ebm", directory);

    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    eb_finetuner *model;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_finetuner_save(model, path, NULL), EB_OK);
    eb_finetuner_free(model);
    eb_model_header header;
    eb_error err;
    assert_int_equal(eb_model_read_file_header(path, &header, &err), EB_OK);
    assert_int_equal(header.kind, EB_KIND_CONTRASTIVE);
    assert_int_equal(header.format_version, EB_MODEL_FORMAT_VERSION);

    /* Only the header is read: the payload behind it may be anything, even missing. */
    uint8_t head[EB_MODEL_HEADER_SIZE];
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fread(head, 1, sizeof head, file), sizeof head);
    fclose(file);
    write_file(short_path, head, sizeof head);
    eb_model_header from_head;
    assert_int_equal(eb_model_read_file_header(short_path, &from_head, &err), EB_OK);
    assert_same_header(&from_head, &header);

    write_file(short_path, head, 10);
    assert_int_equal(eb_model_read_file_header(short_path, &header, &err), EB_ERR_FORMAT);
    assert_contains(err.message, "10 bytes is shorter than the 28-byte header");
    assert_header_zero(&header);
    static const char not_a_model[] = "PK\x03\x04 certainly not a model file";
    write_file(short_path, not_a_model, sizeof not_a_model - 1);
    assert_int_equal(eb_model_read_file_header(short_path, &header, &err), EB_ERR_FORMAT);
    assert_contains(err.message, "not an embetter model");
    /* Shorter than a header, but not the start of a model either: that is what the message says. */
    write_file(short_path, "PK\x03\x04", 4);
    assert_int_equal(eb_model_read_file_header(short_path, &header, &err), EB_ERR_FORMAT);
    assert_contains(err.message, "not an embetter model");

    assert_int_equal(eb_model_read_file_header(directory, &header, &err), EB_ERR_IO);
    assert_contains(err.message, "is not a regular file");
    assert_int_equal(unlink(short_path), 0);
    assert_int_equal(eb_model_read_file_header(short_path, &header, &err), EB_ERR_IO);
    assert_contains(err.message, short_path);
    assert_contains(err.message, "No such file or directory");
    assert_int_equal(err.status, EB_ERR_IO);

    unlink(path);
    assert_int_equal(rmdir(directory), 0);
}

/* ---- the shape of the work --------------------------------------------------------------- */

static void training_step_rows_follow_each_kind(void **state)
{
    (void)state;
    static const struct {
        eb_finetuner_kind kind;
        size_t n_rows, batch_size, rows;
    } cases[] = {
        {EB_KIND_FEEDFORWARD, 200, 0, 200},      /* full batch */
        {EB_KIND_FEEDFORWARD, 200, 32, 32},      /* a minibatch */
        {EB_KIND_FEEDFORWARD, 200, 199, 199},
        {EB_KIND_FEEDFORWARD, 200, 200, 200},
        {EB_KIND_FEEDFORWARD, 200, 5000, 200},   /* a batch larger than X is X */
        {EB_KIND_CONTRASTIVE, 200, 0, 200},      /* all pairs of the epoch use X whole */
        {EB_KIND_CONTRASTIVE, 10000, 16, 32},    /* 16 pairs gather their 32 rows */
        {EB_KIND_CONTRASTIVE, 200, 99, 198},
        {EB_KIND_CONTRASTIVE, 200, 100, 200},    /* 200 gathered rows would be no fewer than X's */
        {EB_KIND_CONTRASTIVE, 5, 2, 5},          /* 2 < 5 / 2 is false in integer arithmetic */
        {EB_KIND_CONTRASTIVE, 5, 1, 2},
        {EB_KIND_CONTRASTIVE, 200, SIZE_MAX, 200},
        {EB_KIND_PAIR_LEARNER, 200, 16, 32},     /* two rows per pair of a minibatch */
        {EB_KIND_PAIR_LEARNER, 200, 0, 400},     /* full batch: every pair at once */
        {EB_KIND_PAIR_LEARNER, 5000, 0, 2 * EB_PAIR_SLICE}, /* never more than a slice of pairs at a time */
        {EB_KIND_PAIR_LEARNER, 5000, 4000, 2 * EB_PAIR_SLICE},
        {EB_KIND_PAIR_LEARNER, 10, 16, 20},      /* a batch larger than the pairs is the pairs */
        {(eb_finetuner_kind)0, 200, 32, 0},
        {(eb_finetuner_kind)4, 200, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t rows = eb_training_step_rows(cases[i].kind, cases[i].n_rows, cases[i].batch_size);
        if (rows != cases[i].rows)
            fail_msg("kind %d, %zu rows, batch_size %zu: %zu step rows, expected %zu", (int)cases[i].kind,
                     cases[i].n_rows, cases[i].batch_size, rows, cases[i].rows);
    }
}

/*
 * A contrastive minibatch that gathers (2 * batch_size rows) needs buffers of
 * that many rows, one that does not needs X's. The peak of the training
 * allocations shows which one the training code chose, so it is checked
 * against eb_training_step_rows on both sides of the boundary.
 */
static size_t contrastive_training_peak(size_t n_rows, size_t batch_size, const float *x, const int32_t *y)
{
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    params.hidden_dim = 64;
    params.n_epochs = 1;
    params.n_neg = 1;
    params.batch_size = batch_size;
    eb_finetuner *model;
    assert_int_equal(eb_finetuner_create(&params, &mem, &model, NULL), EB_OK);
    size_t before = counter.live_bytes;
    counter.peak_bytes = before;
    assert_int_equal(eb_finetuner_fit(model, eb_matrix_view(x, n_rows, 64), y, 2, NULL), EB_OK);
    size_t peak = counter.peak_bytes - before;
    eb_finetuner_free(model);
    return peak;
}

static void contrastive_training_gathers_exactly_when_the_rule_says(void **state)
{
    (void)state;
    enum { ROWS = 101 };
    static float x[ROWS * 64];
    int32_t y[ROWS];
    test_rng rng = test_rng_make(3);
    toy_uniform(&rng, ROWS, 64, 2, x, y);
    /* 101 / 2 is 50: 49 and 50 pairs per batch sit on either side of the boundary. */
    assert_int_equal(eb_training_step_rows(EB_KIND_CONTRASTIVE, ROWS, 49), 98);
    assert_int_equal(eb_training_step_rows(EB_KIND_CONTRASTIVE, ROWS, 50), ROWS);
    size_t gathering = contrastive_training_peak(ROWS, 49, x, y);
    size_t whole = contrastive_training_peak(ROWS, 50, x, y);
    /*
     * Gathering adds a 98 x 64 copy of the rows (25 KB), while its other buffers
     * shrink by 3 rows (under 2 KB): the larger peak despite one pair fewer per batch.
     */
    if (!(gathering > whole + 64 * 64 * sizeof(float)))
        fail_msg("peak %zu bytes with 49 pairs per batch, %zu with 50", gathering, whole);
}

static void transform_split_at_slice_multiples_gives_the_same_bits(void **state)
{
    (void)state;
    enum { ROWS = 3 * EB_TRANSFORM_SLICE_ROWS + 77, COLS = 12, HIDDEN = 6 };
    static float whole[ROWS * HIDDEN], parts[ROWS * HIDDEN];
    const size_t cuts[] = {0, EB_TRANSFORM_SLICE_ROWS, 3 * EB_TRANSFORM_SLICE_ROWS, ROWS};

    test_data data = make_data(ROWS, COLS, N_CLASSES, 0, 0.0, 11);
    const float *x = data.x;
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        eb_finetuner_params params = test_params(ALL_KINDS[k], HIDDEN, ALL_KINDS[k] == EB_KIND_FEEDFORWARD ? 3 : 2, 0);
        eb_finetuner *model;
        assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
        assert_int_equal(train_on(model, &data, false, N_CLASSES), EB_OK);
        assert_int_equal(
            eb_finetuner_transform(model, eb_matrix_view(x, ROWS, COLS), eb_mut_matrix_view(whole, ROWS, HIDDEN), NULL),
            EB_OK);
        memset(parts, 0, sizeof parts);
        for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
            size_t rows = cuts[c + 1] - cuts[c];
            assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(x + cuts[c] * COLS, rows, COLS),
                                                    eb_mut_matrix_view(parts + cuts[c] * HIDDEN, rows, HIDDEN), NULL),
                             EB_OK);
        }
        assert_memory_equal(parts, whole, sizeof whole);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

static void a_nonfinite_input_says_so_in_its_message(void **state)
{
    (void)state;
    float x[N_ROWS * N_COLS], out[N_ROWS * 4];
    int32_t y[N_ROWS];
    test_rng rng = test_rng_make(5);
    toy_uniform(&rng, N_ROWS, N_COLS, N_CLASSES, x, y);
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = 4;
    params.n_epochs = 2;
    eb_finetuner *model;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_finetuner_fit(model, eb_matrix_view(x, N_ROWS, N_COLS), y, N_CLASSES, NULL), EB_OK);
    x[7 * N_COLS + 3] = INFINITY;
    eb_error err;
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(x, N_ROWS, N_COLS),
                                              eb_mut_matrix_view(out, N_ROWS, 4), &err),
                     EB_ERR_NONFINITE);
    /* The whole message comes from here, so a binding shows it as it is. */
    assert_string_equal(err.message, "X[7, 3] is +Inf (row 7, column 3); the input must not contain NaN or infinity");
    x[7 * N_COLS + 3] = NAN;
    assert_int_equal(eb_finetuner_fit(model, eb_matrix_view(x, N_ROWS, N_COLS), y, N_CLASSES, NULL), EB_ERR_NONFINITE);
    assert_string_equal(eb_finetuner_last_error(model),
                        "X[7, 3] is NaN (row 7, column 3); the input must not contain NaN or infinity");
    eb_finetuner_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_the_header_of_saved_models_of_every_kind),
        cmocka_unit_test(a_header_the_loaders_refuse_is_refused_with_the_same_message),
        cmocka_unit_test(the_payload_is_reported_not_checked),
        cmocka_unit_test(null_arguments_are_refused),
        cmocka_unit_test(reads_the_header_of_a_file_and_no_further),
        cmocka_unit_test(training_step_rows_follow_each_kind),
        cmocka_unit_test(contrastive_training_gathers_exactly_when_the_rule_says),
        cmocka_unit_test(transform_split_at_slice_multiples_gives_the_same_bits),
        cmocka_unit_test(a_nonfinite_input_says_so_in_its_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
