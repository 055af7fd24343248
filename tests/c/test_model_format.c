/*
 * The native model format: round trips are exact (weights, Adam and RNG state
 * included), and loading trusts nothing.
 *
 * The file carries its own reader and writer of the layout documented in
 * docs/model-format.md. Re-encoding what it parsed must reproduce the
 * library's bytes exactly, which pins the documented layout to the code; the
 * same writer then crafts hostile payloads with a valid CRC32 (from zlib), so
 * the loader's own checks are what rejects them, not the checksum.
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "helpers.h"

enum { N_ROWS = 40, N_COLS = 6, N_CLASSES = 3, HEADER_BYTES = 28 };

/* ---- the models under test ------------------------------------------------------ */

typedef enum label_choice { NO_LABELS, INT_LABELS, TEXT_LABELS } label_choice;

typedef struct model_case {
    eb_finetuner_kind kind;
    bool fitted;
    size_t batch_size;
    /* The output width, or EB_HIDDEN_DIM_AS_INPUT (not feed-forward). */
    size_t hidden_dim;
    /* Class names given to fit (fitted cases of the kinds with classes), and metadata attached. */
    label_choice labels;
    bool metadata;
} model_case;

static const model_case CASES[] = {
    {EB_KIND_FEEDFORWARD, true, 8, 5, INT_LABELS, true},
    {EB_KIND_FEEDFORWARD, false, 8, 5, NO_LABELS, true},
    {EB_KIND_FEEDFORWARD, true, 0, 5, NO_LABELS, false},
    {EB_KIND_CONTRASTIVE, true, 16, 4, TEXT_LABELS, false},
    {EB_KIND_CONTRASTIVE, false, 16, 4, NO_LABELS, false},
    {EB_KIND_CONTRASTIVE, true, 16, EB_HIDDEN_DIM_AS_INPUT, NO_LABELS, true},
    {EB_KIND_PAIR_LEARNER, true, 8, 3, NO_LABELS, true},
    {EB_KIND_PAIR_LEARNER, false, 16, 300, NO_LABELS, false},
    {EB_KIND_PAIR_LEARNER, true, 0, EB_HIDDEN_DIM_AS_INPUT, NO_LABELS, false},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static test_data make_dataset(uint64_t seed) { return make_data(N_ROWS, N_COLS, N_CLASSES, 0, 0.0, seed); }

/* Names for the N_CLASSES classes: integers at the extremes, and strings with a NUL, multi-byte UTF-8 and nothing. */
static const int64_t INT_NAMES[N_CLASSES] = {INT64_MIN, -1, INT64_MAX};
static const char *const TEXT_NAMES[N_CLASSES] = {"n\xc3\xa9gatif", "a\0b", ""};
static const size_t TEXT_LENGTHS[N_CLASSES] = {8, 3, 0};

static eb_class_labels names_of(label_choice choice)
{
    eb_class_labels names;
    memset(&names, 0, sizeof names);
    if (choice == INT_LABELS) {
        names.type = EB_LABELS_INT64;
        names.count = N_CLASSES;
        names.integers = INT_NAMES;
    } else if (choice == TEXT_LABELS) {
        names.type = EB_LABELS_UTF8;
        names.count = N_CLASSES;
        names.strings = TEXT_NAMES;
        names.string_lengths = TEXT_LENGTHS;
    }
    return names;
}

static const char METADATA[] = "{\"estimator\": \"saved with metadata\", \"bytes\": \"\x00\xff\"}";

/* A model of the case, trained for 3 epochs when fitted; mem may be NULL. */
static eb_finetuner *make_model(const model_case *c, const eb_allocator *mem)
{
    test_data data = make_dataset(11);
    eb_finetuner_params p = test_params(c->kind, c->hidden_dim, 3, c->kind == EB_KIND_FEEDFORWARD ? 7 : 9);
    p.learning_rate = 0.05f;
    p.batch_size = c->batch_size;
    if (c->kind == EB_KIND_CONTRASTIVE)
        p.n_neg = 2;
    eb_finetuner *model = NULL;
    eb_error err;
    assert_int_equal(eb_finetuner_create(&p, mem, &model, &err), EB_OK);
    if (c->fitted && c->kind == EB_KIND_PAIR_LEARNER) {
        assert_int_equal(eb_finetuner_fit_pairs(model, data_pairs(&data)), EB_OK);
    } else if (c->fitted) {
        eb_class_labels names = names_of(c->labels);
        assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, N_CLASSES, c->labels == NO_LABELS ? NULL : &names),
                         EB_OK);
    }
    if (c->metadata)
        assert_int_equal(eb_finetuner_set_metadata(model, METADATA, sizeof METADATA), EB_OK);
    assert_int_equal(eb_finetuner_is_fitted(model), c->fitted);
    data_release(&data);
    return model;
}

/* One partial_fit of any kind on the data (names none: the labelled kinds keep theirs). */
static eb_status continue_training(eb_finetuner *model, const test_data *data, size_t n_classes)
{
    return train_on(model, data, true, n_classes);
}

typedef struct saved_bytes {
    uint8_t *data;
    size_t size;
} saved_bytes;

static saved_bytes save_model(const eb_finetuner *model)
{
    saved_bytes b;
    b.size = eb_finetuner_saved_size(model);
    assert_true(b.size > HEADER_BYTES);
    b.data = malloc(b.size);
    assert_non_null(b.data);
    size_t written = 0;
    eb_error err;
    assert_int_equal(eb_finetuner_save_to_buffer(model, b.data, b.size, &written, &err), EB_OK);
    assert_int_equal(written, b.size);
    assert_string_equal(err.message, "");
    return b;
}

static eb_finetuner *load_model(const saved_bytes *b)
{
    eb_finetuner *model = NULL;
    eb_error err;
    eb_status status = eb_finetuner_load_from_buffer(b->data, b->size, NULL, &model, &err);
    if (status != EB_OK)
        fail_msg("loading saved bytes failed: %s", err.message);
    assert_non_null(model);
    return model;
}

/* ---- what "the same model" means ------------------------------------------------ */

/* Two models are interchangeable when every observable agrees bit for bit and they save to the same bytes. */
static void assert_models_identical(const eb_finetuner *a, const eb_finetuner *b)
{
    assert_int_equal(eb_finetuner_kind_of(a), eb_finetuner_kind_of(b));
    assert_int_equal(eb_finetuner_is_fitted(a), eb_finetuner_is_fitted(b));
    assert_int_equal(eb_finetuner_output_dim(a), eb_finetuner_output_dim(b));
    assert_int_equal(eb_finetuner_n_features(a), eb_finetuner_n_features(b));
    assert_int_equal(eb_finetuner_n_classes(a), eb_finetuner_n_classes(b));
    eb_class_labels labels_a, labels_b;
    assert_int_equal(eb_finetuner_class_labels(a, &labels_a), EB_OK);
    assert_int_equal(eb_finetuner_class_labels(b, &labels_b), EB_OK);
    assert_true(class_labels_equal(&labels_a, &labels_b));
    size_t metadata_a, metadata_b;
    const void *bytes_of_a = eb_finetuner_metadata(a, &metadata_a), *bytes_of_b = eb_finetuner_metadata(b, &metadata_b);
    assert_int_equal(metadata_a, metadata_b);
    if (metadata_a > 0)
        assert_memory_equal(bytes_of_a, bytes_of_b, metadata_a);

    size_t length_a, length_b;
    const double *history_a = eb_finetuner_loss_history(a, &length_a);
    const double *history_b = eb_finetuner_loss_history(b, &length_b);
    assert_int_equal(length_a, length_b);
    if (length_a > 0)
        assert_memory_equal(history_a, history_b, length_a * sizeof(double));

    /* Models from files (the corpus, the fixtures) may have any width. */
    const size_t cols = eb_finetuner_is_fitted(a) ? eb_finetuner_n_features(a) : N_COLS;
    test_data probe = make_data(N_ROWS, cols, N_CLASSES, 0, 0.0, 99);
    if (eb_finetuner_is_fitted(a)) {
        size_t width = eb_finetuner_output_dim(a);
        float *out_a = calloc(N_ROWS * width, sizeof(float));
        float *out_b = calloc(N_ROWS * width, sizeof(float));
        assert_non_null(out_a);
        assert_non_null(out_b);
        assert_int_equal(eb_finetuner_transform(a, data_x(&probe), eb_mut_matrix_view(out_a, N_ROWS, width), NULL),
                         EB_OK);
        assert_int_equal(eb_finetuner_transform(b, data_x(&probe), eb_mut_matrix_view(out_b, N_ROWS, width), NULL),
                         EB_OK);
        assert_memory_equal(out_a, out_b, N_ROWS * width * sizeof(float));
        free(out_a);
        free(out_b);
    } else {
        float scratch[N_ROWS * N_COLS];
        eb_mut_matrix out = eb_mut_matrix_view(scratch, N_ROWS, N_COLS);
        assert_int_equal(eb_finetuner_transform(a, data_x(&probe), out, NULL), EB_ERR_NOT_FITTED);
        assert_int_equal(eb_finetuner_transform(b, data_x(&probe), out, NULL), EB_ERR_NOT_FITTED);
    }

    data_release(&probe);

    saved_bytes bytes_a = save_model(a), bytes_b = save_model(b);
    assert_int_equal(bytes_a.size, bytes_b.size);
    assert_memory_equal(bytes_a.data, bytes_b.data, bytes_a.size);
    free(bytes_a.data);
    free(bytes_b.data);
}

/*
 * One more partial_fit on both must keep them identical: the weights alone
 * would give the same transform right after loading, but only saved Adam
 * moments, step count and RNG state (minibatch shuffles, pair draws) make the
 * next update land on the same bits.
 */
static void assert_training_continues_identically(const model_case *c, eb_finetuner *original, eb_finetuner *loaded)
{
    test_data more = make_dataset(5);
    saved_bytes before = save_model(loaded);
    assert_int_equal(continue_training(original, &more, N_CLASSES), EB_OK);
    assert_int_equal(continue_training(loaded, &more, N_CLASSES), EB_OK);
    data_release(&more);
    assert_true(eb_finetuner_is_fitted(loaded));
    assert_models_identical(original, loaded);

    /* The check has teeth: the update really moved the model, so agreeing afterwards is not trivial. */
    size_t length;
    eb_finetuner_loss_history(loaded, &length);
    assert_int_equal(length, c->fitted ? 4 : 1);
    saved_bytes after = save_model(loaded);
    assert_true(after.size != before.size || memcmp(after.data, before.data, after.size) != 0);
    free(before.data);
    free(after.data);
}

/* ---- round trips -------------------------------------------------------------- */

static void test_buffer_round_trip(void **state)
{
    const model_case *c = *state;
    eb_finetuner *original = make_model(c, NULL);
    saved_bytes bytes = save_model(original);
    eb_finetuner *loaded = load_model(&bytes);
    assert_models_identical(original, loaded);
    assert_training_continues_identically(c, original, loaded);
    eb_finetuner_free(original);
    eb_finetuner_free(loaded);
    free(bytes.data);
}

static void test_saved_size_matches_and_small_buffer_is_refused(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    size_t size = eb_finetuner_saved_size(model);
    uint8_t *buffer = malloc(size + 16);
    assert_non_null(buffer);

    memset(buffer, 0xA5, size + 16);
    size_t written = 0;
    eb_error err;
    assert_int_equal(eb_finetuner_save_to_buffer(model, buffer, size + 16, &written, &err), EB_OK);
    assert_int_equal(written, size);
    for (size_t i = size; i < size + 16; i++)
        assert_int_equal(buffer[i], 0xA5);

    memset(buffer, 0xA5, size + 16);
    written = 12345;
    assert_int_equal(eb_finetuner_save_to_buffer(model, buffer, size - 1, &written, &err), EB_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(err.status, EB_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(written, 0);
    char expected[64];
    snprintf(expected, sizeof expected, "needs %zu", size);
    assert_non_null(strstr(err.message, expected));
    for (size_t i = 0; i < size + 16; i++)
        assert_int_equal(buffer[i], 0xA5);

    assert_int_equal(eb_finetuner_save_to_buffer(model, buffer, 0, &written, &err), EB_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(buffer[0], 0xA5);
    assert_int_equal(eb_finetuner_save_to_buffer(model, NULL, size, &written, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_finetuner_save_to_buffer(NULL, buffer, size, &written, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_finetuner_saved_size(NULL), 0);
    free(buffer);
    eb_finetuner_free(model);
}

/* ---- a scratch directory --------------------------------------------------------- */

typedef struct scratch_dir {
    char path[64];
} scratch_dir;

static scratch_dir make_scratch_dir(void)
{
    scratch_dir d;
    snprintf(d.path, sizeof d.path, "/tmp/eb-model-format-XXXXXX");
    assert_non_null(mkdtemp(d.path));
    return d;
}

static void join_path(char *out, size_t size, const scratch_dir *d, const char *name)
{
    int n = snprintf(out, size, "%s/%s", d->path, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* Names in the directory other than . and .., joined by spaces. */
static void list_entries(const scratch_dir *d, char *out, size_t size, size_t *count)
{
    DIR *dir = opendir(d->path);
    assert_non_null(dir);
    out[0] = '\0';
    *count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", used > 0 ? " " : "", entry->d_name);
        (*count)++;
    }
    closedir(dir);
}

static void remove_scratch_dir(scratch_dir *d)
{
    DIR *dir = opendir(d->path);
    assert_non_null(dir);
    struct dirent *entry;
    char path[512];
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        join_path(path, sizeof path, d, entry->d_name);
        struct stat info;
        if (stat(path, &info) == 0 && S_ISDIR(info.st_mode))
            rmdir(path);
        else
            unlink(path);
    }
    closedir(dir);
    assert_int_equal(rmdir(d->path), 0);
}

static saved_bytes read_whole_file(const char *path)
{
    saved_bytes b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long length = ftell(f);
    assert_true(length >= 0);
    rewind(f);
    b.size = (size_t)length;
    b.data = malloc(b.size + 1);
    assert_non_null(b.data);
    assert_int_equal(fread(b.data, 1, b.size, f), b.size);
    fclose(f);
    return b;
}

static void write_whole_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static void test_file_round_trip(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    join_path(path, sizeof path, &dir, "model.ebm");

    eb_finetuner *original = make_model(c, NULL);
    eb_error err;
    assert_int_equal(eb_finetuner_save(original, path, &err), EB_OK);
    assert_string_equal(err.message, "");

    /* The file holds exactly the buffer format, nothing more. */
    saved_bytes in_memory = save_model(original);
    saved_bytes on_disk = read_whole_file(path);
    assert_int_equal(on_disk.size, in_memory.size);
    assert_memory_equal(on_disk.data, in_memory.data, in_memory.size);

    /* A new file gets the permissions the umask gives any new file, not a temporary file's 0600. */
    mode_t mask = umask(022);
    umask(mask);
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    assert_int_equal(info.st_mode & 0777, 0666 & ~mask);

    eb_finetuner *loaded = NULL;
    assert_int_equal(eb_finetuner_load(path, NULL, &loaded, &err), EB_OK);
    assert_models_identical(original, loaded);
    assert_training_continues_identically(c, original, loaded);

    /* Saving over an existing file replaces it and leaves nothing else behind. */
    assert_int_equal(eb_finetuner_save(original, path, &err), EB_OK);
    saved_bytes replaced = read_whole_file(path);
    saved_bytes expected = save_model(original);
    assert_int_equal(replaced.size, expected.size);
    assert_memory_equal(replaced.data, expected.data, expected.size);
    char names[512];
    size_t count;
    list_entries(&dir, names, sizeof names, &count);
    assert_int_equal(count, 1);
    assert_string_equal(names, "model.ebm");

    free(in_memory.data);
    free(on_disk.data);
    free(replaced.data);
    free(expected.data);
    eb_finetuner_free(original);
    eb_finetuner_free(loaded);
    remove_scratch_dir(&dir);
}

/* ---- loading trusts nothing: damaged bytes ----------------------------------------- */

/* Where a call must put NULL into its out parameter: a pointer that is no model. */
static char not_a_model;

/* A failed load: EB_ERR_FORMAT, a message, no model. Returns the message for further checks. */
static const char *expect_format_error(const void *data, size_t size, eb_error *err)
{
    eb_finetuner *model = (eb_finetuner *)&not_a_model;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_status status = eb_finetuner_load_from_buffer(data, size, &mem, &model, err);
    if (status != EB_ERR_FORMAT)
        fail_msg("expected EB_ERR_FORMAT loading %zu bytes, got %s (%s)", size, eb_status_string(status),
                 err->message);
    assert_null(model);
    assert_int_equal(err->status, EB_ERR_FORMAT);
    assert_true(strlen(err->message) > 0);
    assert_int_equal(counter.live_blocks, 0);
    return err->message;
}

static void test_every_truncation_is_refused(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    saved_bytes bytes = save_model(model);
    for (size_t length = 0; length < bytes.size; length++) {
        /* An exactly sized copy, so AddressSanitizer sees any read past the end. */
        uint8_t *copy = malloc(length == 0 ? 1 : length);
        assert_non_null(copy);
        memcpy(copy, bytes.data, length);
        eb_error err;
        const char *message = expect_format_error(copy, length, &err);
        if (length < HEADER_BYTES)
            assert_non_null(strstr(message, "header"));
        else
            assert_non_null(strstr(message, "payload bytes"));
        free(copy);
    }
    free(bytes.data);
    eb_finetuner_free(model);
}

static void test_every_bit_flip_is_refused(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    saved_bytes bytes = save_model(model);
    uint8_t *copy = malloc(bytes.size);
    assert_non_null(copy);
    memcpy(copy, bytes.data, bytes.size);
    for (size_t bit = 0; bit < 8 * bytes.size; bit++) {
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        eb_error err;
        const char *message = expect_format_error(copy, bytes.size, &err);
        /*
         * A payload flip is caught by the CRC. So is a flip of the kind into
         * another known kind, which version 2's CRC covers (in version 1 such
         * a flip could load as that kind); any other kind is named as unknown
         * before the CRC is computed.
         */
        if (bit / 8 >= HEADER_BYTES)
            assert_non_null(strstr(message, "checksum"));
        if (bit / 8 >= 12 && bit / 8 < 16)
            assert_true(strstr(message, "checksum") != NULL || strstr(message, "unknown kind") != NULL);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_memory_equal(copy, bytes.data, bytes.size);
    free(copy);
    free(bytes.data);
    eb_finetuner_free(model);
}

static void put_u32(uint8_t *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

static void put_u64(uint8_t *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

static void test_header_checks(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    saved_bytes bytes = save_model(model);
    uint8_t *copy = malloc(bytes.size);
    assert_non_null(copy);
    eb_error err;

    /*
     * Another kind in the header (the CRC covers only the payload): the
     * params and fit state are then checked as that kind's, so the bytes are
     * refused unless they happen to make a valid model of it, which then is one.
     */
    const char *message = NULL;
    for (uint32_t other = EB_KIND_FEEDFORWARD; other <= EB_KIND_PAIR_LEARNER; other++) {
        if (other == (uint32_t)c->kind)
            continue;
        memcpy(copy, bytes.data, bytes.size);
        put_u32(copy + 12, other);
        eb_finetuner *relabelled = NULL;
        eb_status status = eb_finetuner_load_from_buffer(copy, bytes.size, NULL, &relabelled, &err);
        if (status == EB_OK) {
            assert_int_equal(eb_finetuner_kind_of(relabelled), other);
            eb_finetuner_free(relabelled);
        } else {
            assert_int_equal(status, EB_ERR_FORMAT);
            assert_null(relabelled);
            assert_non_null(strstr(err.message, "saved model"));
        }
    }

    /* A newer format version, and the never-used version 0. */
    static const uint32_t bad_versions[] = {EB_MODEL_FORMAT_VERSION + 1, 0x80000000u, UINT32_MAX, 0};
    for (size_t i = 0; i < sizeof bad_versions / sizeof bad_versions[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u32(copy + 8, bad_versions[i]);
        message = expect_format_error(copy, bytes.size, &err);
        assert_non_null(strstr(message, bad_versions[i] == 0 ? "version 0" : "newer"));
    }

    /* Unknown kinds. */
    static const uint32_t bad_kinds[] = {0, 4, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u32(copy + 12, bad_kinds[i]);
        message = expect_format_error(copy, bytes.size, &err);
        assert_non_null(strstr(message, "unknown kind"));
    }

    /* A payload length that lies, in both directions and far beyond the data. */
    const uint64_t payload = bytes.size - HEADER_BYTES;
    const uint64_t lies[] = {payload + 1, payload - 1, 0, UINT64_MAX, (uint64_t)SIZE_MAX - HEADER_BYTES + 1};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u64(copy + 16, lies[i]);
        message = expect_format_error(copy, bytes.size, &err);
        assert_non_null(strstr(message, "payload bytes"));
    }

    /* Not a model at all. */
    memcpy(copy, bytes.data, bytes.size);
    copy[0] = 'e';
    message = expect_format_error(copy, bytes.size, &err);
    assert_non_null(strstr(message, "magic"));

    /* NULL arguments. */
    eb_finetuner *out = (eb_finetuner *)&not_a_model;
    assert_int_equal(eb_finetuner_load_from_buffer(NULL, bytes.size, NULL, &out, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(c->kind == EB_KIND_FEEDFORWARD ? eb_finetuner_load_from_buffer(bytes.data, bytes.size, NULL, NULL, &err)
                                            : eb_finetuner_load_from_buffer(bytes.data, bytes.size, NULL, NULL, &err),
                     EB_ERR_NULL_POINTER);

    free(copy);
    free(bytes.data);
    eb_finetuner_free(model);
}

/* ---- an independent reader and writer of the documented layout ------------------ */

typedef struct saved_fields {
    uint32_t version;
    uint32_t kind;
    uint64_t hidden_dim;
    uint64_t n_epochs;
    float learning_rate;
    uint64_t batch_size;
    uint64_t seed;
    uint64_t n_neg;
    uint32_t layers;
    uint8_t fitted;
    uint64_t n_features, n_classes, out_dim, weight_count, adam_steps, rng[4];
    /* The arrays as parsed; weights_written / history_written entries of them are encoded. */
    float *values, *first_moment, *second_moment;
    size_t weights_parsed, weights_written;
    uint64_t history_length;
    double *history;
    size_t history_parsed, history_written;
    /* Class names: type, count, then per name an i64, or a u64 length and its bytes. */
    uint8_t label_type;
    uint64_t label_count;
    int64_t *label_integers;
    uint64_t *label_lengths;
    uint8_t **label_strings;
    size_t *label_sizes; /* the bytes of each parsed string, which are what is encoded whatever its length says */
    size_t labels_parsed, labels_written;
    /* Metadata: a u64 length and the bytes; metadata_written of them are encoded. */
    uint64_t metadata_size;
    uint8_t *metadata;
    size_t metadata_parsed, metadata_written;
    /* Zero bytes appended after the payload proper. */
    size_t trailing;
} saved_fields;

typedef struct byte_cursor {
    const uint8_t *data;
    size_t size, pos;
} byte_cursor;

static uint64_t take(byte_cursor *c, size_t count)
{
    assert_true(c->size - c->pos >= count);
    uint64_t value = 0;
    for (size_t i = 0; i < count; i++)
        value |= (uint64_t)c->data[c->pos + i] << (8 * i);
    c->pos += count;
    return value;
}

static float take_f32(byte_cursor *c)
{
    uint32_t bits = (uint32_t)take(c, 4);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static float *take_f32_array(byte_cursor *c, size_t count)
{
    float *values = calloc(count + 1, sizeof *values);
    assert_non_null(values);
    for (size_t i = 0; i < count; i++)
        values[i] = take_f32(c);
    return values;
}

/* Parse saved bytes by the documentation, checking the header along the way. */
static saved_fields parse_saved(const saved_bytes *b)
{
    saved_fields f;
    memset(&f, 0, sizeof f);
    byte_cursor c = {b->data, b->size, 0};
    assert_memory_equal(b->data, "EMBETTER", 8);
    c.pos = 8;
    f.version = (uint32_t)take(&c, 4);
    f.kind = (uint32_t)take(&c, 4);
    uint64_t payload_length = take(&c, 8);
    uint32_t crc = (uint32_t)take(&c, 4);
    assert_int_equal(c.pos, HEADER_BYTES);
    assert_int_equal(f.version, 2);
    assert_int_equal(payload_length, b->size - HEADER_BYTES);
    assert_int_equal(crc, saved_model_crc(b->data, b->size));

    f.hidden_dim = take(&c, 8);
    f.n_epochs = take(&c, 8);
    f.learning_rate = take_f32(&c);
    f.batch_size = take(&c, 8);
    f.seed = take(&c, 8);
    f.n_neg = take(&c, 8);
    f.layers = (uint32_t)take(&c, 4);
    f.fitted = (uint8_t)take(&c, 1);
    if (f.fitted) {
        f.n_features = take(&c, 8);
        f.n_classes = take(&c, 8);
        f.out_dim = take(&c, 8);
        f.weight_count = take(&c, 8);
        f.adam_steps = take(&c, 8);
        for (int i = 0; i < 4; i++)
            f.rng[i] = take(&c, 8);
        f.weights_parsed = f.weights_written = (size_t)f.weight_count;
        f.values = take_f32_array(&c, f.weights_written);
        f.first_moment = take_f32_array(&c, f.weights_written);
        f.second_moment = take_f32_array(&c, f.weights_written);
    }
    f.history_length = take(&c, 8);
    f.history_parsed = f.history_written = (size_t)f.history_length;
    f.history = calloc(f.history_written + 1, sizeof *f.history);
    assert_non_null(f.history);
    for (size_t i = 0; i < f.history_written; i++) {
        uint64_t bits = take(&c, 8);
        memcpy(&f.history[i], &bits, sizeof bits);
    }
    f.label_type = (uint8_t)take(&c, 1);
    if (f.label_type != 0) {
        f.label_count = take(&c, 8);
        f.labels_parsed = f.labels_written = (size_t)f.label_count;
        f.label_integers = calloc(f.labels_parsed + 1, sizeof *f.label_integers);
        f.label_lengths = calloc(f.labels_parsed + 1, sizeof *f.label_lengths);
        f.label_strings = calloc(f.labels_parsed + 1, sizeof *f.label_strings);
        f.label_sizes = calloc(f.labels_parsed + 1, sizeof *f.label_sizes);
        assert_non_null(f.label_sizes);
        assert_non_null(f.label_integers);
        assert_non_null(f.label_lengths);
        assert_non_null(f.label_strings);
        for (size_t i = 0; i < f.labels_parsed; i++) {
            if (f.label_type == EB_LABELS_INT64) {
                f.label_integers[i] = (int64_t)take(&c, 8);
                continue;
            }
            f.label_lengths[i] = take(&c, 8);
            f.label_sizes[i] = (size_t)f.label_lengths[i];
            f.label_strings[i] = malloc(f.label_sizes[i] + 1);
            assert_non_null(f.label_strings[i]);
            for (size_t b = 0; b < f.label_lengths[i]; b++)
                f.label_strings[i][b] = (uint8_t)take(&c, 1);
        }
    }
    f.metadata_size = take(&c, 8);
    f.metadata_parsed = f.metadata_written = (size_t)f.metadata_size;
    f.metadata = malloc(f.metadata_parsed + 1);
    assert_non_null(f.metadata);
    for (size_t i = 0; i < f.metadata_parsed; i++)
        f.metadata[i] = (uint8_t)take(&c, 1);
    assert_int_equal(c.pos, c.size);
    return f;
}

static void release_fields(saved_fields *f)
{
    free(f->values);
    free(f->first_moment);
    free(f->second_moment);
    free(f->history);
    for (size_t i = 0; f->label_strings != NULL && i < f->labels_parsed; i++)
        free(f->label_strings[i]);
    free(f->label_integers);
    free(f->label_lengths);
    free(f->label_strings);
    free(f->label_sizes);
    free(f->metadata);
}

static void *copy_of(const void *data, size_t count, size_t size)
{
    void *copy = calloc(count + 1, size);
    assert_non_null(copy);
    if (count > 0 && data != NULL)
        memcpy(copy, data, count * size);
    return copy;
}

/* A deep copy, so an edit of its arrays leaves the original alone. */
static saved_fields copy_fields(const saved_fields *original)
{
    saved_fields f = *original;
    f.values = copy_of(original->values, f.weights_parsed, sizeof(float));
    f.first_moment = copy_of(original->first_moment, f.weights_parsed, sizeof(float));
    f.second_moment = copy_of(original->second_moment, f.weights_parsed, sizeof(float));
    f.history = copy_of(original->history, f.history_parsed, sizeof(double));
    f.metadata = copy_of(original->metadata, f.metadata_parsed, 1);
    if (original->label_integers != NULL) {
        f.label_integers = copy_of(original->label_integers, f.labels_parsed, sizeof(int64_t));
        f.label_lengths = copy_of(original->label_lengths, f.labels_parsed, sizeof(uint64_t));
        f.label_sizes = copy_of(original->label_sizes, f.labels_parsed, sizeof(size_t));
        f.label_strings = copy_of(NULL, f.labels_parsed, sizeof(uint8_t *));
        for (size_t i = 0; i < f.labels_parsed; i++)
            if (original->label_strings[i] != NULL)
                f.label_strings[i] = copy_of(original->label_strings[i], f.label_sizes[i], 1);
    }
    return f;
}

typedef struct byte_sink {
    uint8_t *data;
    size_t capacity, length;
} byte_sink;

static void give(byte_sink *s, uint64_t value, size_t count)
{
    if (s->length + count > s->capacity) {
        s->capacity = 2 * (s->length + count);
        s->data = realloc(s->data, s->capacity);
        assert_non_null(s->data);
    }
    for (size_t i = 0; i < count; i++)
        s->data[s->length + i] = (uint8_t)(value >> (8 * i));
    s->length += count;
}

static void give_f32(byte_sink *s, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    give(s, bits, 4);
}

/* Encode the fields as the documentation lays them out, with a correct length and CRC32. */
static saved_bytes encode_saved(const saved_fields *f)
{
    byte_sink s = {NULL, 0, 0};
    for (int i = 0; i < 8; i++)
        give(&s, (uint8_t)"EMBETTER"[i], 1);
    give(&s, f->version, 4);
    give(&s, f->kind, 4);
    give(&s, 0, 8);
    give(&s, 0, 4);
    give(&s, f->hidden_dim, 8);
    give(&s, f->n_epochs, 8);
    give_f32(&s, f->learning_rate);
    give(&s, f->batch_size, 8);
    give(&s, f->seed, 8);
    give(&s, f->n_neg, 8);
    give(&s, f->layers, 4);
    give(&s, f->fitted, 1);
    if (f->fitted) {
        give(&s, f->n_features, 8);
        give(&s, f->n_classes, 8);
        give(&s, f->out_dim, 8);
        give(&s, f->weight_count, 8);
        give(&s, f->adam_steps, 8);
        for (int i = 0; i < 4; i++)
            give(&s, f->rng[i], 8);
        const float *arrays[3] = {f->values, f->first_moment, f->second_moment};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < f->weights_written; i++)
                give_f32(&s, i < f->weights_parsed ? arrays[a][i] : 0.0f);
    }
    give(&s, f->history_length, 8);
    for (size_t i = 0; i < f->history_written; i++) {
        double entry = i < f->history_parsed ? f->history[i] : 1.0;
        uint64_t bits;
        memcpy(&bits, &entry, sizeof bits);
        give(&s, bits, 8);
    }
    give(&s, f->label_type, 1);
    if (f->label_type != 0) {
        give(&s, f->label_count, 8);
        for (size_t i = 0; i < f->labels_written; i++) {
            bool parsed = i < f->labels_parsed;
            if (f->label_type == EB_LABELS_INT64) {
                give(&s, parsed ? (uint64_t)f->label_integers[i] : 1000 + i, 8);
                continue;
            }
            /* Names made up past the parsed ones are distinct: "" is taken, these are one byte each. */
            give(&s, parsed ? f->label_lengths[i] : 1, 8);
            size_t bytes = parsed ? f->label_sizes[i] : 1;
            for (size_t b = 0; b < bytes; b++)
                give(&s, parsed ? f->label_strings[i][b] : (uint8_t)('A' + i % 26), 1);
        }
    }
    give(&s, f->metadata_size, 8);
    for (size_t i = 0; i < f->metadata_written; i++)
        give(&s, i < f->metadata_parsed ? f->metadata[i] : 0, 1);
    for (size_t i = 0; i < f->trailing; i++)
        give(&s, 0, 1);
    size_t payload = s.length - HEADER_BYTES;
    put_u64(s.data + 16, payload);
    put_u32(s.data + 24, saved_model_crc(s.data, s.length));
    saved_bytes b = {s.data, s.length};
    return b;
}

static void test_documented_layout_reproduces_the_bytes(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    saved_bytes bytes = save_model(model);
    saved_fields f = parse_saved(&bytes);
    assert_int_equal(f.kind, c->kind);
    assert_int_equal(f.fitted, c->fitted);
    assert_true(f.hidden_dim == (c->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? UINT64_MAX : c->hidden_dim));
    assert_int_equal(f.batch_size, c->batch_size);
    assert_true(f.learning_rate == 0.05f);
    size_t history_length;
    const double *history = eb_finetuner_loss_history(model, &history_length);
    assert_int_equal(f.history_length, history_length);
    if (history_length > 0)
        assert_memory_equal(f.history, history, history_length * sizeof(double));
    if (c->fitted) {
        assert_int_equal(f.n_features, N_COLS);
        assert_int_equal(f.n_classes, c->kind == EB_KIND_PAIR_LEARNER ? 0 : N_CLASSES);
        assert_int_equal(f.out_dim, eb_finetuner_output_dim(model));
        /* Minibatches take several Adam steps per epoch, full batch one. */
        if (c->batch_size == 0)
            assert_int_equal(f.adam_steps, 3);
        else
            assert_true(f.adam_steps > 3);
    }
    saved_bytes again = encode_saved(&f);
    assert_int_equal(again.size, bytes.size);
    assert_memory_equal(again.data, bytes.data, bytes.size);
    free(again.data);
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);
}

/* ---- crafted payloads with a valid CRC ---------------------------------------------- */

typedef void (*field_edit)(saved_fields *f);

typedef struct crafted_case {
    const char *what;
    bool needs_fitted;
    bool feedforward_only;
    /* Only for models saved with class names of this type (NO_LABELS: any model). */
    label_choice needs_labels;
    field_edit edit;
    /* A piece of the expected message. */
    const char *message_part;
} crafted_case;

static void weight_count_huge(saved_fields *f) { f->weight_count = UINT64_MAX; }
static void weight_count_past_data(saved_fields *f) { f->weight_count = (uint64_t)1 << 61; }
static void weight_count_one_more(saved_fields *f) { f->weight_count += 1; }
static void weight_count_one_less(saved_fields *f) { f->weight_count -= 1; }
static void weight_count_zero(saved_fields *f) { f->weight_count = 0; f->weights_written = 0; }
static void weight_count_matching_extra_data(saved_fields *f)
{
    /* The arrays really hold one weight more than the shapes need. */
    f->weight_count += 1;
    f->weights_written += 1;
}
static void history_huge(saved_fields *f) { f->history_length = UINT64_MAX; }
static void history_past_data(saved_fields *f) { f->history_length = (uint64_t)1 << 60; }
static void history_one_more(saved_fields *f) { f->history_length += 1; }
static void history_empty_when_fitted(saved_fields *f) { f->history_length = 0; f->history_written = 0; }
static void history_when_unfitted(saved_fields *f)
{
    f->history_length = 1;
    f->history_written = 1;
}
static void fewer_steps_than_epochs(saved_fields *f) { f->adam_steps = f->history_length - 1; }
static void steps_past_limit(saved_fields *f) { f->adam_steps = ((uint64_t)1 << 62) + 1; }
static void steps_max(saved_fields *f) { f->adam_steps = UINT64_MAX; }
static void features_times_hidden_overflow(saved_fields *f) { f->n_features = ((uint64_t)1 << 63) + 1; }
static void features_above_int(saved_fields *f) { f->n_features = (uint64_t)INT32_MAX + 1; }
static void features_off_by_one(saved_fields *f) { f->n_features += 1; }
static void features_zero(saved_fields *f) { f->n_features = 0; }
static void out_dim_off(saved_fields *f) { f->out_dim += 1; }
static void out_dim_zero(saved_fields *f) { f->out_dim = 0; }
static void classes_zero(saved_fields *f) { f->n_classes = 0; }
static void classes_huge(saved_fields *f) { f->n_classes = UINT64_MAX; }
static void classes_off_by_one(saved_fields *f) { f->n_classes += 1; }
static void rng_all_zero(saved_fields *f) { memset(f->rng, 0, sizeof f->rng); }
static void fitted_flag_two(saved_fields *f) { f->fitted = 2; }
static void learning_rate_nan(saved_fields *f) { f->learning_rate = NAN; }
static void learning_rate_infinite(saved_fields *f) { f->learning_rate = INFINITY; }
static void learning_rate_negative(saved_fields *f) { f->learning_rate = -0.01f; }
static void learning_rate_zero(saved_fields *f) { f->learning_rate = 0.0f; }
static void hidden_dim_zero(saved_fields *f) { f->hidden_dim = 0; }
static void hidden_dim_above_int(saved_fields *f) { f->hidden_dim = (uint64_t)INT32_MAX + 1; }
static void hidden_dim_size_max_minus_one(saved_fields *f) { f->hidden_dim = UINT64_MAX - 1; }
static void epochs_zero(saved_fields *f) { f->n_epochs = 0; }
static void n_neg_zero(saved_fields *f) { f->n_neg = 0; }
static void n_neg_three(saved_fields *f) { f->n_neg = 3; }
static void layers_relu(saved_fields *f) { f->layers = EB_PAIR_LINEAR_RELU_LINEAR; }
static void one_trailing_byte(saved_fields *f) { f->trailing = 1; }
static void weight_nan(saved_fields *f) { f->values[f->weights_parsed / 2] = NAN; }
static void weight_infinite(saved_fields *f) { f->values[0] = -INFINITY; }
static void first_moment_nan(saved_fields *f) { f->first_moment[f->weights_parsed - 1] = NAN; }
static void first_moment_infinite(saved_fields *f) { f->first_moment[1] = INFINITY; }
static void second_moment_negative(saved_fields *f) { f->second_moment[2] = -1e-3f; }
static void second_moment_nan(saved_fields *f) { f->second_moment[0] = NAN; }
static void history_nan(saved_fields *f) { f->history[f->history_parsed - 1] = NAN; }
static void history_infinite(saved_fields *f) { f->history[0] = INFINITY; }
static void many_trailing_bytes(saved_fields *f) { f->trailing = 100; }

static void label_type_unknown(saved_fields *f) { f->label_type = 3; }
static void label_count_one_more(saved_fields *f) { f->label_count += 1; f->labels_written += 1; }
static void label_count_huge(saved_fields *f) { f->label_count = UINT64_MAX; }
static void labels_on_no_classes(saved_fields *f)
{
    f->label_type = EB_LABELS_INT64;
    f->label_count = 1;
    f->labels_written = 1;
}
static void label_duplicate(saved_fields *f) { f->label_integers[2] = f->label_integers[0]; }
static void label_invalid_utf8(saved_fields *f) { f->label_strings[0][1] = 0xFF; }
static void label_length_huge(saved_fields *f) { f->label_lengths[1] = UINT64_MAX; }
static void label_length_past_limit(saved_fields *f) { f->label_lengths[1] = EB_MAX_LABEL_BYTES + 1; }
static void metadata_past_data(saved_fields *f) { f->metadata_size = f->metadata_parsed + 1; }
static void metadata_huge(saved_fields *f) { f->metadata_size = UINT64_MAX; }
static void metadata_past_limit(saved_fields *f)
{
    f->metadata_size = (uint64_t)EB_MAX_METADATA_BYTES + 1;
    f->metadata_written = (size_t)f->metadata_size;
}

static const crafted_case CRAFTED[] = {
    {"class label type 3", false, false, NO_LABELS, label_type_unknown, "unknown class label type 3"},
    {"one class label more than classes", true, false, INT_LABELS, label_count_one_more, "class labels for 3 classes"},
    {"class label count UINT64_MAX", true, false, TEXT_LABELS, label_count_huge, "class labels for 3 classes"},
    {"two equal integer class labels", true, false, INT_LABELS, label_duplicate, "class labels 0 and 2 are equal"},
    {"a class label that is not UTF-8", true, false, TEXT_LABELS, label_invalid_utf8, "class label 0 is not valid UTF-8"},
    {"a class label length UINT64_MAX", true, false, TEXT_LABELS, label_length_huge, "class label 1 is truncated"},
    {"a class label longer than the limit", true, false, TEXT_LABELS, label_length_past_limit, "class label 1"},
    {"metadata longer than the data", false, false, NO_LABELS, metadata_past_data, "exceed the data"},
    {"metadata length UINT64_MAX", false, false, NO_LABELS, metadata_huge, "metadata"},
    {"metadata over the limit", false, false, NO_LABELS, metadata_past_limit, "exceed the limit"},
    {"weight count UINT64_MAX", true, false, NO_LABELS, weight_count_huge, "weights need more bytes"},
    {"weight count 2^61", true, false, NO_LABELS, weight_count_past_data, "weights need more bytes"},
    {"weight count one more than written", true, false, NO_LABELS, weight_count_one_more, ""},
    {"weight count one less than written", true, false, NO_LABELS, weight_count_one_less, ""},
    {"weight count zero", true, false, NO_LABELS, weight_count_zero, "weights"},
    {"one weight more than the shapes need", true, false, NO_LABELS, weight_count_matching_extra_data, "shapes disagree"},
    {"history length UINT64_MAX", false, false, NO_LABELS, history_huge, "loss history"},
    {"history length 2^60", false, false, NO_LABELS, history_past_data, "loss history"},
    /* The entry it then reads is the class names' first bytes: whatever check fails next says so. */
    {"history length one more than written", false, false, NO_LABELS, history_one_more, "saved model"},
    {"fitted model without history", true, false, NO_LABELS, history_empty_when_fitted, "loss history"},
    {"fewer Adam steps than epochs", true, false, NO_LABELS, fewer_steps_than_epochs, "Adam steps"},
    {"Adam steps 2^62 + 1", true, false, NO_LABELS, steps_past_limit, "Adam steps"},
    {"Adam steps UINT64_MAX", true, false, NO_LABELS, steps_max, "Adam steps"},
    {"n_features times hidden overflows", true, false, NO_LABELS, features_times_hidden_overflow, "shapes disagree"},
    {"n_features above INT_MAX", true, false, NO_LABELS, features_above_int, "shapes disagree"},
    {"n_features off by one", true, false, NO_LABELS, features_off_by_one, "shapes disagree"},
    {"n_features zero", true, false, NO_LABELS, features_zero, "shapes disagree"},
    {"out_dim inconsistent with hidden_dim", true, false, NO_LABELS, out_dim_off, "shapes disagree"},
    {"out_dim zero", true, false, NO_LABELS, out_dim_zero, "shapes disagree"},
    {"n_classes zero", true, false, NO_LABELS, classes_zero, "shapes disagree"},
    {"n_classes UINT64_MAX", true, true, NO_LABELS, classes_huge, "shapes disagree"},
    {"n_classes one more than the output layer has", true, true, NO_LABELS, classes_off_by_one, "shapes disagree"},
    {"a NaN weight", true, false, NO_LABELS, weight_nan, "weight"},
    {"an infinite weight", true, false, NO_LABELS, weight_infinite, "weight"},
    {"a NaN Adam first moment", true, false, NO_LABELS, first_moment_nan, "Adam first moment"},
    {"an infinite Adam first moment", true, false, NO_LABELS, first_moment_infinite, "Adam first moment"},
    {"a negative Adam second moment", true, false, NO_LABELS, second_moment_negative, "Adam second moment"},
    {"a NaN Adam second moment", true, false, NO_LABELS, second_moment_nan, "Adam second moment"},
    {"a NaN loss in the history", true, false, NO_LABELS, history_nan, "loss history entry"},
    {"an infinite loss in the history", true, false, NO_LABELS, history_infinite, "loss history entry"},
    {"RNG state all zero", true, false, NO_LABELS, rng_all_zero, "RNG"},
    {"fitted flag 2", false, false, NO_LABELS, fitted_flag_two, "fitted flag"},
    {"learning_rate NaN", false, false, NO_LABELS, learning_rate_nan, "learning_rate"},
    {"learning_rate infinite", false, false, NO_LABELS, learning_rate_infinite, "learning_rate"},
    {"learning_rate negative", false, false, NO_LABELS, learning_rate_negative, "learning_rate"},
    {"learning_rate zero", false, false, NO_LABELS, learning_rate_zero, "learning_rate"},
    {"hidden_dim zero", false, false, NO_LABELS, hidden_dim_zero, "hidden_dim"},
    {"hidden_dim above INT_MAX", false, false, NO_LABELS, hidden_dim_above_int, "hidden_dim"},
    {"hidden_dim UINT64_MAX - 1", false, false, NO_LABELS, hidden_dim_size_max_minus_one, "hidden_dim"},
    {"n_epochs zero", false, false, NO_LABELS, epochs_zero, "n_epochs"},
    {"one trailing byte", false, false, NO_LABELS, one_trailing_byte, "1 unexpected bytes"},
    {"100 trailing bytes", false, false, NO_LABELS, many_trailing_bytes, "100 unexpected bytes"},
};

static void check_crafted(const model_case *c, const saved_fields *original, const char *what, field_edit edit,
                          const char *message_part)
{
    saved_fields f = copy_fields(original);
    edit(&f);
    saved_bytes crafted = encode_saved(&f);
    eb_error err;
    eb_finetuner *model = (eb_finetuner *)&not_a_model;
    eb_status status = eb_finetuner_load_from_buffer(crafted.data, crafted.size, NULL, &model, &err);
    if (status != EB_ERR_FORMAT || strstr(err.message, message_part) == NULL)
        fail_msg("%s %s model, %s: got %s \"%s\", expected EB_ERR_FORMAT mentioning \"%s\"", c->fitted ? "fitted" : "unfitted",
                 eb_finetuner_kind_name(c->kind), what, eb_status_string(status), err.message, message_part);
    assert_null(model);
    assert_true(strstr(err.message, "saved model") != NULL);
    free(crafted.data);
    release_fields(&f);
}

static void test_crafted_payloads_are_refused(void **state)
{
    const model_case *c = *state;
    eb_finetuner *model = make_model(c, NULL);
    saved_bytes bytes = save_model(model);
    saved_fields f = parse_saved(&bytes);

    /* The crafting itself yields loadable bytes, so each refusal below is the edit's doing. */
    saved_fields reseeded = f;
    reseeded.seed = 12345;
    saved_bytes control = encode_saved(&reseeded);
    eb_finetuner *loaded = load_model(&control);
    eb_finetuner_free(loaded);
    free(control.data);

    size_t checked = 0;
    for (size_t i = 0; i < sizeof CRAFTED / sizeof CRAFTED[0]; i++) {
        if ((CRAFTED[i].needs_fitted && !c->fitted) || (CRAFTED[i].feedforward_only && c->kind != EB_KIND_FEEDFORWARD) ||
            (CRAFTED[i].needs_labels != NO_LABELS && CRAFTED[i].needs_labels != c->labels))
            continue;
        /* A pair learner has no classes: zero is its n_classes already. */
        if (c->kind == EB_KIND_PAIR_LEARNER && CRAFTED[i].edit == classes_zero)
            continue;
        check_crafted(c, &f, CRAFTED[i].what, CRAFTED[i].edit, CRAFTED[i].message_part);
        checked++;
    }
    if (!c->fitted) {
        check_crafted(c, &f, "history on an unfitted model", history_when_unfitted, "unfitted model");
        check_crafted(c, &f, "class labels on an unfitted model", labels_on_no_classes, "1 class labels for 0 classes");
    }
    if (c->kind == EB_KIND_CONTRASTIVE)
        check_crafted(c, &f, "n_neg zero", n_neg_zero, "n_neg");
    else
        check_crafted(c, &f, "n_neg on a kind without it", n_neg_three, "n_neg applies to contrastive finetuners only");
    if (c->kind != EB_KIND_PAIR_LEARNER)
        check_crafted(c, &f, "layers on a kind without it", layers_relu, "layers applies to pair learners only");
    /* Every case meets at least the params, history and trailing-byte edits. */
    assert_true(checked >= 14);
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);
}

static void single_class(saved_fields *f) { f->n_classes = 1; }
/* Width and weight count agree with each other, but not with n_features. */
static void as_input_width_off(saved_fields *f)
{
    f->out_dim = f->n_features + 1;
    f->weight_count = (f->n_features + 1) * f->out_dim;
    f->weights_written = (size_t)f->weight_count;
}

/* Rules that belong to one finetuner only. */
static void test_model_specific_shape_rules(void **state)
{
    (void)state;
    eb_finetuner *loaded;
    /* Contrastive: a fitted model has seen two labels; with hidden_dim "as input" the width is n_features. */
    const model_case as_input = {EB_KIND_CONTRASTIVE, true, 16, EB_HIDDEN_DIM_AS_INPUT, NO_LABELS, false};
    eb_finetuner *model = make_model(&as_input, NULL);
    saved_bytes bytes = save_model(model);
    saved_fields f = parse_saved(&bytes);
    check_crafted(&as_input, &f, "a single class", single_class, "shapes disagree");
    check_crafted(&as_input, &f, "width not n_features under EB_HIDDEN_DIM_AS_INPUT", as_input_width_off,
                  "shapes disagree");
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);

    /* At the step limit a model loads, trains on, and still saves to a loadable file. */
    const model_case cl_case = {EB_KIND_CONTRASTIVE, true, 16, 4, NO_LABELS, false};
    model = make_model(&cl_case, NULL);
    bytes = save_model(model);
    f = parse_saved(&bytes);
    saved_fields at_limit = f;
    at_limit.adam_steps = (uint64_t)1 << 62;
    saved_bytes limit_bytes = encode_saved(&at_limit);
    eb_finetuner *veteran = load_model(&limit_bytes);
    test_data more = make_dataset(21);
    assert_int_equal(eb_finetuner_partial_fit(veteran, data_x(&more), more.y, 0, NULL), EB_OK);
    data_release(&more);
    saved_bytes trained = save_model(veteran);
    saved_fields trained_fields = parse_saved(&trained);
    assert_true(trained_fields.adam_steps == (uint64_t)1 << 62);
    eb_finetuner *reloaded = load_model(&trained);
    assert_models_identical(veteran, reloaded);
    eb_finetuner_free(reloaded);
    eb_finetuner_free(veteran);
    release_fields(&trained_fields);
    free(trained.data);
    free(limit_bytes.data);
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);

    /* A gradient above ~1.8e19 squares to +inf in float, so an infinite second moment is legitimate. */
    model = make_model(&cl_case, NULL);
    bytes = save_model(model);
    f = parse_saved(&bytes);
    f.second_moment[3] = INFINITY;
    saved_bytes infinite_moment = encode_saved(&f);
    loaded = load_model(&infinite_moment);
    eb_finetuner_free(loaded);
    free(infinite_moment.data);
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);

    /* Feed-forward: one class is a legal (if useless) fit and loads. */
    const model_case ff = {EB_KIND_FEEDFORWARD, true, 8, 5, NO_LABELS, false};
    model = make_model(&ff, NULL);
    bytes = save_model(model);
    f = parse_saved(&bytes);
    saved_fields edited = f;
    edited.n_classes = 1;
    edited.weight_count = N_COLS * 5 + 5 + 5 * 1 + 1;
    edited.weights_written = (size_t)edited.weight_count;
    saved_bytes one_class = encode_saved(&edited);
    loaded = load_model(&one_class);
    assert_int_equal(eb_finetuner_n_classes(loaded), 1);
    eb_finetuner_free(loaded);
    free(one_class.data);
    release_fields(&f);
    free(bytes.data);
    eb_finetuner_free(model);
}

/* ---- allocation failures ---------------------------------------------------------- */

static void test_every_allocation_failure(void **state)
{
    const model_case *c = *state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = make_model(c, &mem);
    saved_bytes bytes = save_model(model);
    scratch_dir dir = make_scratch_dir();
    char path[512];
    join_path(path, sizeof path, &dir, "model.ebm");
    eb_error err;

    /* save_to_buffer draws on no allocator at all. */
    size_t live_before = counter.live_blocks;
    counting_allocator_arm(&counter, 0);
    saved_bytes again = save_model(model);
    assert_int_equal(counter.attempts, 0);
    free(again.data);
    counting_allocator_arm(&counter, SIZE_MAX);

    /* Loading from a buffer: every allocation in turn fails, then all succeed. */
    counting_allocator load_counter;
    eb_allocator load_mem = counting_allocator_init(&load_counter);
    eb_finetuner *loaded = NULL;
    assert_int_equal(eb_finetuner_load_from_buffer(bytes.data, bytes.size, &load_mem, &loaded, &err), EB_OK);
    size_t load_allocations = load_counter.attempts;
    assert_true(load_allocations >= (c->fitted ? 3u : 1u));
    eb_finetuner_free(loaded);
    assert_int_equal(load_counter.live_blocks, 0);
    for (size_t fail_at = 0; fail_at < load_allocations; fail_at++) {
        counting_allocator_arm(&load_counter, fail_at);
        loaded = (eb_finetuner *)&not_a_model;
        assert_int_equal(eb_finetuner_load_from_buffer(bytes.data, bytes.size, &load_mem, &loaded, &err), EB_ERR_NOMEM);
        assert_null(loaded);
        assert_int_equal(load_counter.failures, 1);
        assert_int_equal(load_counter.live_blocks, 0);
        assert_non_null(strstr(err.message, "out of memory"));
    }

    /* Loading from a file reads it through the same allocator. */
    assert_int_equal(eb_finetuner_save(model, path, &err), EB_OK);
    counting_allocator_arm(&load_counter, SIZE_MAX);
    assert_int_equal(eb_finetuner_load(path, &load_mem, &loaded, &err), EB_OK);
    size_t file_allocations = load_counter.attempts;
    assert_int_equal(file_allocations, load_allocations + 1);
    eb_finetuner_free(loaded);
    for (size_t fail_at = 0; fail_at < file_allocations; fail_at++) {
        counting_allocator_arm(&load_counter, fail_at);
        loaded = (eb_finetuner *)&not_a_model;
        assert_int_equal(eb_finetuner_load(path, &load_mem, &loaded, &err), EB_ERR_NOMEM);
        assert_null(loaded);
        assert_int_equal(load_counter.live_blocks, 0);
    }

    /* Saving to a file: each failure leaves the old file and no temporary behind. */
    saved_bytes old_file = read_whole_file(path);
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb_finetuner_save(model, path, &err), EB_OK);
    size_t save_allocations = counter.attempts;
    assert_int_equal(save_allocations, 2);
    assert_int_equal(counter.live_blocks, live_before);
    for (size_t fail_at = 0; fail_at < save_allocations; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb_finetuner_save(model, path, &err), EB_ERR_NOMEM);
        assert_int_equal(counter.live_blocks, live_before);
        saved_bytes now = read_whole_file(path);
        assert_int_equal(now.size, old_file.size);
        assert_memory_equal(now.data, old_file.data, old_file.size);
        free(now.data);
        char names[512];
        size_t count;
        list_entries(&dir, names, sizeof names, &count);
        assert_int_equal(count, 1);
    }

    free(old_file.data);
    free(bytes.data);
    eb_finetuner_free(model);
    assert_int_equal(counter.live_blocks, 0);
    remove_scratch_dir(&dir);
}

/* ---- atomic save and I/O errors -------------------------------------------------- */

/*
 * A disk that fills up mid-save, simulated in a child process: with SIGXFSZ
 * ignored, a write past RLIMIT_FSIZE fails with EFBIG. The child reports by
 * exit code, since cmocka's asserts belong to the parent.
 */
enum { CHILD_OK = 0, CHILD_SAVE_SUCCEEDED = 10, CHILD_WRONG_STATUS = 11, CHILD_NO_REASON = 12, CHILD_SETUP = 13 };

static int save_with_file_size_limit(eb_finetuner *model, const char *path, rlim_t limit)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int code = CHILD_OK;
        struct rlimit cap = {limit, limit};
        if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR || setrlimit(RLIMIT_FSIZE, &cap) != 0) {
            code = CHILD_SETUP;
        } else {
            eb_error err;
            eb_status status = eb_finetuner_save(model, path, &err);
            if (status == EB_OK)
                code = CHILD_SAVE_SUCCEEDED;
            else if (status != EB_ERR_IO || err.status != EB_ERR_IO)
                code = CHILD_WRONG_STATUS;
            else if (strstr(err.message, strerror(EFBIG)) == NULL || strstr(err.message, path) == NULL)
                code = CHILD_NO_REASON;
        }
        eb_finetuner_free(model);
        exit(code);
    }
    int wait_status;
    assert_int_equal(waitpid(child, &wait_status, 0), child);
    assert_true(WIFEXITED(wait_status));
    return WEXITSTATUS(wait_status);
}

static void test_failed_save_keeps_the_old_file(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    join_path(path, sizeof path, &dir, "model.ebm");

    /* The old file: an unfitted model of the same kind, smaller than the new one. */
    model_case old_case = *c;
    old_case.fitted = false;
    eb_finetuner *old_model = make_model(&old_case, NULL);
    eb_error err;
    assert_int_equal(eb_finetuner_save(old_model, path, &err), EB_OK);
    saved_bytes old_bytes = read_whole_file(path);

    eb_finetuner *new_model = make_model(c, NULL);
    size_t new_size = eb_finetuner_saved_size(new_model);
    assert_int_equal(save_with_file_size_limit(new_model, path, (rlim_t)(new_size / 2)), CHILD_OK);

    saved_bytes now = read_whole_file(path);
    assert_int_equal(now.size, old_bytes.size);
    assert_memory_equal(now.data, old_bytes.data, old_bytes.size);
    eb_finetuner *reloaded = NULL;
    assert_int_equal(eb_finetuner_load(path, NULL, &reloaded, &err), EB_OK);
    assert_models_identical(old_model, reloaded);
    char names[512];
    size_t count;
    list_entries(&dir, names, sizeof names, &count);
    assert_int_equal(count, 1);
    assert_string_equal(names, "model.ebm");

    /* With room enough, the same save goes through. */
    assert_int_equal(save_with_file_size_limit(new_model, path, (rlim_t)new_size), CHILD_SAVE_SUCCEEDED);
    saved_bytes replaced = read_whole_file(path);
    saved_bytes expected = save_model(new_model);
    assert_int_equal(replaced.size, expected.size);
    assert_memory_equal(replaced.data, expected.data, expected.size);

    free(old_bytes.data);
    free(now.data);
    free(replaced.data);
    free(expected.data);
    eb_finetuner_free(reloaded);
    eb_finetuner_free(old_model);
    eb_finetuner_free(new_model);
    remove_scratch_dir(&dir);
}

static void test_io_errors_name_the_path(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    eb_finetuner *model = make_model(c, NULL);
    eb_error err;
    char path[512];

    join_path(path, sizeof path, &dir, "no-such-directory/model.ebm");
    assert_int_equal(eb_finetuner_save(model, path, &err), EB_ERR_IO);
    assert_int_equal(err.status, EB_ERR_IO);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(ENOENT)));

    eb_finetuner *loaded = (eb_finetuner *)&not_a_model;
    assert_int_equal(eb_finetuner_load(path, NULL, &loaded, &err), EB_ERR_IO);
    assert_null(loaded);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(ENOENT)));

    /* A directory is not a model file. */
    assert_int_equal(eb_finetuner_load(dir.path, NULL, &loaded, &err), EB_ERR_IO);
    assert_non_null(strstr(err.message, "not a regular file"));

    /* An empty file and a garbage file are format errors, not I/O errors. */
    join_path(path, sizeof path, &dir, "empty.ebm");
    write_whole_file(path, "", 0);
    assert_int_equal(eb_finetuner_load(path, NULL, &loaded, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "header"));
    join_path(path, sizeof path, &dir, "text.ebm");
    static const char text[] = "this is a text file, long enough to hold a header of 28 bytes";
    write_whole_file(path, text, sizeof text);
    assert_int_equal(eb_finetuner_load(path, NULL, &loaded, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "magic"));

    assert_int_equal(eb_finetuner_save(model, NULL, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_finetuner_save(model, "", &err), EB_ERR_IO);
    assert_int_equal(eb_finetuner_load(NULL, NULL, &loaded, &err), EB_ERR_NULL_POINTER);

    eb_finetuner_free(model);
    remove_scratch_dir(&dir);
}

/* ---- special files: refused at once, nothing read ------------------------------------ */

enum { CHILD_REFUSED = 20, CHILD_LOADED = 21, CHILD_WRONG_REFUSAL = 22 };

/*
 * Load path in a child process that an alarm kills after a few seconds, so a
 * loader that blocks (a FIFO without a writer) fails this test instead of
 * hanging it. The child exits CHILD_REFUSED when both the loader and the header
 * reader return EB_ERR_IO with a message naming the path and containing `what`.
 */
static int load_in_child(const char *path, const char *what)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(5);
        eb_finetuner *model = NULL;
        eb_error err, header_err;
        eb_model_header header;
        eb_status status = eb_finetuner_load(path, NULL, &model, &err);
        eb_status header_status = eb_model_read_file_header(path, &header, &header_err);
        if (status == EB_OK)
            exit(CHILD_LOADED);
        bool named = strstr(err.message, path) != NULL && strstr(err.message, what) != NULL &&
                     strstr(header_err.message, path) != NULL && strstr(header_err.message, what) != NULL;
        exit(status == EB_ERR_IO && header_status == EB_ERR_IO && model == NULL && named ? CHILD_REFUSED
                                                                                          : CHILD_WRONG_REFUSAL);
    }
    int wait_status;
    assert_int_equal(waitpid(child, &wait_status, 0), child);
    if (WIFSIGNALED(wait_status))
        fail_msg("loading %s was killed by signal %d (SIGALRM %d: it blocked)", path, WTERMSIG(wait_status), SIGALRM);
    assert_true(WIFEXITED(wait_status));
    return WEXITSTATUS(wait_status);
}

static void test_special_files_are_refused_without_blocking(void **state)
{
    (void)state;
    scratch_dir dir = make_scratch_dir();
    char path[512];

    join_path(path, sizeof path, &dir, "fifo.ebm");
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(load_in_child(path, "a FIFO"), CHILD_REFUSED);
    unlink(path);

    assert_int_equal(load_in_child("/dev/zero", "a character device"), CHILD_REFUSED);
    assert_int_equal(load_in_child("/dev/null", "a character device"), CHILD_REFUSED);
    assert_int_equal(load_in_child(dir.path, "a directory"), CHILD_REFUSED);

    /* Nothing is allocated for any of them: the type is known before reading. */
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = NULL;
    eb_error err;
    assert_int_equal(eb_finetuner_load("/dev/zero", &mem, &model, &err), EB_ERR_IO);
    assert_int_equal(counter.attempts, 0);
    remove_scratch_dir(&dir);
}

/*
 * A huge sparse file costs nothing to make and would take all memory to read.
 * The header bounds the read: zeros are refused by the magic, and a real
 * header followed by far more bytes than it announces by the size check, both
 * before any allocation.
 */
static void test_a_huge_file_is_refused_by_its_header_before_reading(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    const off_t huge = (off_t)1 << 36; /* 64 GiB, sparse */
    eb_finetuner *original = make_model(c, NULL);
    saved_bytes bytes = save_model(original);

    join_path(path, sizeof path, &dir, "zeros.ebm");
    write_whole_file(path, "", 0);
    assert_int_equal(truncate(path, huge), 0);
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = (eb_finetuner *)&not_a_model;
    eb_error err;
    assert_int_equal(eb_finetuner_load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_null(model);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "not an embetter model"));
    assert_int_equal(counter.attempts, 0);

    join_path(path, sizeof path, &dir, "long.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    assert_int_equal(truncate(path, huge), 0);
    assert_int_equal(eb_finetuner_load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "announces"));
    assert_int_equal(counter.attempts, 0);

    /* One byte short is refused the same way; the exact size loads. */
    join_path(path, sizeof path, &dir, "short.ebm");
    write_whole_file(path, bytes.data, bytes.size - 1);
    assert_int_equal(eb_finetuner_load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "announces"));
    assert_int_equal(counter.attempts, 0);
    join_path(path, sizeof path, &dir, "exact.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    assert_int_equal(eb_finetuner_load(path, &mem, &model, &err), EB_OK);
    assert_models_identical(original, model);
    eb_finetuner_free(model);
    assert_int_equal(counter.live_blocks, 0);

    free(bytes.data);
    eb_finetuner_free(original);
    remove_scratch_dir(&dir);
}

/* A format error of a file names the file, whichever check found it. */
static void test_format_errors_of_a_file_name_it(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    eb_finetuner *original = make_model(c, NULL);
    saved_bytes bytes = save_model(original);
    bytes.data[bytes.size - 1] ^= 0x55; /* the CRC catches it */
    join_path(path, sizeof path, &dir, "corrupt.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    eb_finetuner *model = (eb_finetuner *)&not_a_model;
    eb_error err;
    assert_int_equal(eb_finetuner_load(path, NULL, &model, &err), EB_ERR_FORMAT);
    assert_null(model);
    assert_int_equal(strncmp(err.message, path, strlen(path)), 0);
    assert_non_null(strstr(err.message, ": saved model: checksum mismatch"));
    free(bytes.data);
    eb_finetuner_free(original);
    remove_scratch_dir(&dir);
}

/*
 * Two processes save different models to one path over and over while this
 * one loads it: every load must be one of the two models whole, since each
 * save renames a complete file into place.
 */
static void test_racing_saves_leave_one_model_whole(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    join_path(path, sizeof path, &dir, "model.ebm");
    /* The second model is the first after one more pass, so the two differ in weights, not in shape. */
    eb_finetuner *models[2] = {make_model(c, NULL), make_model(c, NULL)};
    test_data data = make_dataset(12);
    assert_int_equal(continue_training(models[1], &data, c->fitted ? 0 : N_CLASSES), EB_OK);
    data_release(&data);
    saved_bytes expected[2] = {save_model(models[0]), save_model(models[1])};
    assert_true(expected[0].size != expected[1].size ||
                memcmp(expected[0].data, expected[1].data, expected[0].size) != 0);
    eb_error err;
    assert_int_equal(eb_finetuner_save(models[0], path, &err), EB_OK);
    pid_t savers[2];
    for (int i = 0; i < 2; i++) {
        savers[i] = fork();
        assert_true(savers[i] >= 0);
        if (savers[i] == 0) {
            int code = 0;
            for (int round = 0; round < 200 && code == 0; round++)
                code = eb_finetuner_save(models[i], path, NULL) == EB_OK ? 0 : 1;
            exit(code);
        }
    }
    size_t loads[2] = {0, 0};
    for (int running = 2; running > 0;) {
        eb_finetuner *loaded = NULL;
        assert_int_equal(eb_finetuner_load(path, NULL, &loaded, &err), EB_OK);
        saved_bytes again = save_model(loaded);
        int which = -1;
        for (int i = 0; i < 2; i++)
            if (again.size == expected[i].size && memcmp(again.data, expected[i].data, again.size) == 0)
                which = i;
        assert_true(which >= 0);
        loads[which]++;
        free(again.data);
        eb_finetuner_free(loaded);
        running = 0;
        for (int i = 0; i < 2; i++) {
            int wait_status;
            pid_t done = savers[i] > 0 ? waitpid(savers[i], &wait_status, WNOHANG) : 0;
            if (done == savers[i] && savers[i] > 0) {
                assert_true(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
                savers[i] = 0;
            }
            running += savers[i] > 0;
        }
    }
    assert_true(loads[0] + loads[1] > 0);
    char names[512];
    size_t count;
    list_entries(&dir, names, sizeof names, &count);
    assert_int_equal(count, 1);
    for (int i = 0; i < 2; i++) {
        free(expected[i].data);
        eb_finetuner_free(models[i]);
    }
    remove_scratch_dir(&dir);
}

/* ---- callbacks are not saved ------------------------------------------------------ */

static int count_epochs(size_t epoch, double loss, void *user_data)
{
    (void)epoch;
    (void)loss;
    (*(int *)user_data)++;
    return 0;
}

static void test_callback_is_not_saved(void **state)
{
    (void)state;
    int calls = 0;
    eb_finetuner_params p = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    p.hidden_dim = 4;
    p.n_epochs = 2;
    p.on_epoch = count_epochs;
    p.callback_data = &calls;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&p, NULL, &model, NULL), EB_OK);
    test_data data = make_dataset(3);
    assert_int_equal(eb_finetuner_fit(model, data_x(&data), data.y, N_CLASSES, NULL), EB_OK);
    assert_int_equal(calls, 2);

    saved_bytes bytes = save_model(model);
    eb_finetuner *loaded = load_model(&bytes);
    eb_finetuner_params loaded_params = eb_finetuner_get_params(loaded);
    assert_null(loaded_params.on_epoch);
    assert_null(loaded_params.callback_data);
    assert_int_equal(eb_finetuner_partial_fit(loaded, data_x(&data), data.y, 0, NULL), EB_OK);
    assert_int_equal(calls, 2);
    assert_int_equal(eb_finetuner_set_callback(loaded, count_epochs, &calls), EB_OK);
    assert_int_equal(eb_finetuner_partial_fit(loaded, data_x(&data), data.y, 0, NULL), EB_OK);
    assert_int_equal(calls, 3);

    data_release(&data);
    free(bytes.data);
    eb_finetuner_free(model);
    eb_finetuner_free(loaded);
}

/* ---- files saved by earlier builds ------------------------------------------------ */

/*
 * The fuzzer's seed corpus holds real models of every kind saved by this
 * format version, which must keep loading and re-save to the same bytes, and
 * copies of the version 1 fixtures, which load and re-save as version 2 to a
 * model identical to them. Files named regression_* are inputs the fuzzer
 * once broke the library with, which must be refused.
 */
static void test_committed_models_load(void **state)
{
    (void)state;
    char dir_path[1024];
    const char *source = __FILE__;
    const char *slash = strrchr(source, '/');
    assert_non_null(slash);
    snprintf(dir_path, sizeof dir_path, "%.*s/../fuzz/corpus/model_load", (int)(slash - source), source);
    DIR *dir = opendir(dir_path);
    if (dir == NULL)
        fail_msg("cannot open the committed models in %s: %s", dir_path, strerror(errno));
    size_t loaded_count = 0, refused_count = 0, older_count = 0;
    bool kinds_seen[EB_KIND_PAIR_LEARNER + 1] = {false};
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        size_t length = strlen(name);
        if (length < 4 || strcmp(name + length - 4, ".ebm") != 0)
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir_path, name);
        saved_bytes bytes = read_whole_file(path);
        if (strncmp(name, "regression_", 11) == 0) {
            eb_error err;
            expect_format_error(bytes.data, bytes.size, &err);
            refused_count++;
        } else {
            eb_model_header header;
            assert_int_equal(eb_model_read_header(bytes.data, bytes.size, &header, NULL), EB_OK);
            eb_finetuner *model = load_model(&bytes);
            saved_bytes again = save_model(model);
            if (header.format_version == EB_MODEL_FORMAT_VERSION) {
                assert_int_equal(again.size, bytes.size);
                assert_memory_equal(again.data, bytes.data, bytes.size);
                kinds_seen[header.kind] = true;
            } else {
                assert_int_equal(header.format_version, 1);
                eb_finetuner *resaved = load_model(&again);
                assert_models_identical(model, resaved);
                eb_finetuner_free(resaved);
                older_count++;
            }
            free(again.data);
            eb_finetuner_free(model);
            loaded_count++;
        }
        free(bytes.data);
    }
    closedir(dir);
    assert_true(loaded_count >= 9);
    assert_true(refused_count >= 1);
    assert_true(older_count >= 2);
    for (size_t k = 0; k < N_ALL_KINDS; k++)
        assert_true(kinds_seen[ALL_KINDS[k]]);
}

/* ---- version 1 files: the committed fixtures ---------------------------------------- */

/* tests/fixtures/model-v1, found from this source file's path. */
static void fixture_path(char *out, size_t size, const char *name)
{
    const char *source = __FILE__;
    const char *slash = strrchr(source, '/');
    assert_non_null(slash);
    snprintf(out, size, "%.*s/../fixtures/model-v1/%s", (int)(slash - source), source, name);
}

/* A fixture of little-endian float32 values, count of them exactly. */
static float *read_floats(const char *name, size_t count)
{
    char path[1024];
    fixture_path(path, sizeof path, name);
    saved_bytes bytes = read_whole_file(path);
    assert_int_equal(bytes.size, count * 4);
    float *values = malloc(count * sizeof *values);
    assert_non_null(values);
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = 0;
        for (int b = 0; b < 4; b++)
            bits |= (uint32_t)bytes.data[4 * i + b] << (8 * b);
        memcpy(&values[i], &bits, sizeof bits);
    }
    free(bytes.data);
    return values;
}

/* The training rows of make_v1_fixture.c, from the same integer arithmetic. */
enum { V1_ROWS = 24, V1_COLS = 5, V1_CLASSES = 3, V1_PROBE_ROWS = 4 };

static void v1_training_rows(float *x, int32_t *y)
{
    for (size_t r = 0; r < V1_ROWS; r++) {
        y[r] = (int32_t)(r % V1_CLASSES);
        for (size_t c = 0; c < V1_COLS; c++)
            x[r * V1_COLS + c] = (float)((r * 7 + c * 13 + r * c) % 17) / 8.0f - 1.0f;
    }
}

typedef struct v1_fixture {
    const char *stem;
    eb_finetuner_kind kind;
    eb_finetuner_params params; /* what make_v1_fixture.c created it with (kind and callback aside) */
} v1_fixture;

static void check_v1_fixture(const v1_fixture *fx, const float *probe)
{
    char path[1024], name[128];
    snprintf(name, sizeof name, "%s.ebm", fx->stem);
    fixture_path(path, sizeof path, name);
    eb_model_header header;
    assert_int_equal(eb_model_read_file_header(path, &header, NULL), EB_OK);
    assert_int_equal(header.format_version, 1);
    assert_int_equal(header.kind, fx->kind);

    eb_finetuner *model = NULL;
    eb_error err;
    if (eb_finetuner_load(path, NULL, &model, &err) != EB_OK)
        fail_msg("loading %s: %s", path, err.message);
    assert_int_equal(eb_finetuner_kind_of(model), fx->kind);
    eb_finetuner_params p = eb_finetuner_get_params(model);
    assert_int_equal(p.kind, fx->kind);
    assert_int_equal(p.hidden_dim, fx->params.hidden_dim);
    assert_int_equal(p.n_epochs, fx->params.n_epochs);
    assert_true(p.learning_rate == fx->params.learning_rate);
    assert_int_equal(p.batch_size, fx->params.batch_size);
    assert_int_equal(p.seed, fx->params.seed);
    assert_int_equal(p.n_neg, fx->params.n_neg);
    assert_int_equal(p.layers, EB_PAIR_LINEAR);
    assert_null(p.on_epoch);
    assert_true(eb_finetuner_is_fitted(model));
    assert_int_equal(eb_finetuner_n_features(model), V1_COLS);
    assert_int_equal(eb_finetuner_n_classes(model), V1_CLASSES);
    const size_t width = eb_finetuner_output_dim(model);
    assert_int_equal(width, fx->params.hidden_dim);
    size_t history_length;
    eb_finetuner_loss_history(model, &history_length);
    assert_int_equal(history_length, fx->params.n_epochs);
    /* Version 1 had neither class names nor metadata. */
    eb_class_labels labels;
    assert_int_equal(eb_finetuner_class_labels(model, &labels), EB_OK);
    assert_int_equal(labels.type, EB_LABELS_NONE);
    assert_int_equal(labels.count, 0);
    size_t metadata_size = 99;
    assert_null(eb_finetuner_metadata(model, &metadata_size));
    assert_int_equal(metadata_size, 0);

    /* The transform 0.1 computed, bit for bit. */
    float *out = calloc(V1_PROBE_ROWS * width, sizeof *out);
    assert_non_null(out);
    snprintf(name, sizeof name, "%s_transform.f32", fx->stem);
    float *expected = read_floats(name, V1_PROBE_ROWS * width);
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(probe, V1_PROBE_ROWS, V1_COLS),
                                            eb_mut_matrix_view(out, V1_PROBE_ROWS, width), &err),
                     EB_OK);
    assert_memory_equal(out, expected, V1_PROBE_ROWS * width * sizeof(float));
    free(expected);

    /* A saved copy is version 2 and the same model. */
    saved_bytes resaved = save_model(model);
    assert_int_equal(eb_model_read_header(resaved.data, resaved.size, &header, NULL), EB_OK);
    assert_int_equal(header.format_version, EB_MODEL_FORMAT_VERSION);
    eb_finetuner *reloaded = load_model(&resaved);
    assert_models_identical(model, reloaded);
    free(resaved.data);

    /* Training continues where 0.1 left off: Adam moments, step count and RNG state came through. */
    float x[V1_ROWS * V1_COLS];
    int32_t y[V1_ROWS];
    v1_training_rows(x, y);
    eb_finetuner *continuing[2] = {model, reloaded};
    snprintf(name, sizeof name, "%s_after_partial_fit.f32", fx->stem);
    expected = read_floats(name, V1_PROBE_ROWS * width);
    for (int m = 0; m < 2; m++) {
        assert_int_equal(eb_finetuner_partial_fit(continuing[m], eb_matrix_view(x, V1_ROWS, V1_COLS), y, 0, NULL),
                         EB_OK);
        eb_finetuner_loss_history(continuing[m], &history_length);
        assert_int_equal(history_length, fx->params.n_epochs + 1);
        assert_int_equal(eb_finetuner_transform(continuing[m], eb_matrix_view(probe, V1_PROBE_ROWS, V1_COLS),
                                                eb_mut_matrix_view(out, V1_PROBE_ROWS, width), &err),
                         EB_OK);
        assert_memory_equal(out, expected, V1_PROBE_ROWS * width * sizeof(float));
    }
    /* Names can be given to a model that was saved without them. */
    static const int64_t names[V1_CLASSES] = {10, 20, 30};
    eb_class_labels given = {EB_LABELS_INT64, V1_CLASSES, names, NULL, NULL};
    assert_int_equal(eb_finetuner_set_class_labels(model, &given), EB_OK);
    assert_int_equal(eb_finetuner_class_labels(model, &labels), EB_OK);
    assert_true(class_labels_equal(&labels, &given));
    free(expected);
    free(out);
    eb_finetuner_free(reloaded);
    eb_finetuner_free(model);
}

static void test_version_1_fixtures_load(void **state)
{
    (void)state;
    float *probe = read_floats("probe.f32", V1_PROBE_ROWS * V1_COLS);
    v1_fixture fixtures[2];
    memset(fixtures, 0, sizeof fixtures);
    fixtures[0].stem = "feedforward";
    fixtures[0].kind = EB_KIND_FEEDFORWARD;
    fixtures[0].params = test_params(EB_KIND_FEEDFORWARD, 6, 12, 101);
    fixtures[0].params.batch_size = 8;
    fixtures[1].stem = "contrastive";
    fixtures[1].kind = EB_KIND_CONTRASTIVE;
    fixtures[1].params = test_params(EB_KIND_CONTRASTIVE, 4, 6, 202);
    fixtures[1].params.n_neg = 2;
    fixtures[1].params.learning_rate = 0.01f;
    fixtures[1].params.batch_size = 10;
    for (size_t i = 0; i < 2; i++)
        check_v1_fixture(&fixtures[i], probe);
    free(probe);
}

/* ---- the table of tests --------------------------------------------------------- */

typedef struct per_case_test {
    const char *name;
    CMUnitTestFunction run;
} per_case_test;

static const per_case_test PER_CASE[] = {
    {"buffer_round_trip", test_buffer_round_trip},
    {"saved_size_matches_and_small_buffer_is_refused", test_saved_size_matches_and_small_buffer_is_refused},
    {"file_round_trip", test_file_round_trip},
    {"documented_layout_reproduces_the_bytes", test_documented_layout_reproduces_the_bytes},
    {"every_truncation_is_refused", test_every_truncation_is_refused},
    {"every_bit_flip_is_refused", test_every_bit_flip_is_refused},
    {"header_checks", test_header_checks},
    {"crafted_payloads_are_refused", test_crafted_payloads_are_refused},
    {"every_allocation_failure", test_every_allocation_failure},
    {"failed_save_keeps_the_old_file", test_failed_save_keeps_the_old_file},
    {"io_errors_name_the_path", test_io_errors_name_the_path},
    {"special_files_are_refused_without_blocking", test_special_files_are_refused_without_blocking},
    {"a_huge_file_is_refused_by_its_header_before_reading", test_a_huge_file_is_refused_by_its_header_before_reading},
    {"format_errors_of_a_file_name_it", test_format_errors_of_a_file_name_it},
    {"racing_saves_leave_one_model_whole", test_racing_saves_leave_one_model_whole},
};
enum { N_PER_CASE = sizeof PER_CASE / sizeof PER_CASE[0], NAME_SIZE = 128 };

static void describe_case(const model_case *c, char *out, size_t size)
{
    char width[32];
    if (c->hidden_dim == EB_HIDDEN_DIM_AS_INPUT)
        snprintf(width, sizeof width, "width_as_input");
    else
        snprintf(width, sizeof width, "width_%zu", c->hidden_dim);
    static const char *const label_names[] = {"", "_int_labels", "_text_labels"};
    snprintf(out, size, "%s_%s_%s_batch_%zu%s%s", eb_finetuner_kind_name(c->kind), c->fitted ? "fitted" : "unfitted",
             width, c->batch_size, label_names[c->labels], c->metadata ? "_metadata" : "");
}

int main(void)
{
    /* Every per-case test runs on every case, named test/case so a failure says which model broke. */
    static char names[N_PER_CASE * N_CASES][NAME_SIZE];
    struct CMUnitTest tests[N_PER_CASE * N_CASES + 4];
    size_t count = 0;
    for (size_t t = 0; t < N_PER_CASE; t++) {
        for (size_t c = 0; c < N_CASES; c++) {
            char description[96];
            describe_case(&CASES[c], description, sizeof description);
            snprintf(names[count], NAME_SIZE, "%s/%s", PER_CASE[t].name, description);
            struct CMUnitTest test = {names[count], PER_CASE[t].run, NULL, NULL, (void *)&CASES[c]};
            tests[count++] = test;
        }
    }
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_model_specific_shape_rules),
        cmocka_unit_test(test_callback_is_not_saved),
        cmocka_unit_test(test_committed_models_load),
        cmocka_unit_test(test_version_1_fixtures_load),
    };
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        tests[count++] = shared[i];
    if (count != sizeof tests / sizeof tests[0])
        return 1;
    return cmocka_run_group_tests_name("test_model_format", tests, NULL, NULL);
}
