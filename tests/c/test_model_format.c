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

/* ---- training data --------------------------------------------------------- */

typedef struct dataset {
    float x[N_ROWS * N_COLS];
    int32_t y[N_ROWS];
} dataset;

static dataset make_dataset(uint64_t seed)
{
    dataset d;
    test_rng rng = test_rng_make(seed);
    toy_uniform(&rng, N_ROWS, N_COLS, N_CLASSES, d.x, d.y);
    return d;
}

static eb_matrix matrix_of(const dataset *d)
{
    return eb_matrix_view(d->x, N_ROWS, N_COLS);
}

/* ---- one interface over both finetuners --------------------------------------- */

typedef struct model_ops {
    const char *name;
    uint32_t kind;
    size_t (*saved_size)(const void *model);
    eb_status (*save_to_buffer)(const void *model, void *buffer, size_t capacity, size_t *written, eb_error *err);
    eb_status (*load_from_buffer)(const void *buffer, size_t size, const eb_allocator *mem, void **out,
                                  eb_error *err);
    eb_status (*save)(const void *model, const char *path, eb_error *err);
    eb_status (*load)(const char *path, const eb_allocator *mem, void **out, eb_error *err);
    eb_status (*partial_fit)(void *model, eb_matrix x, const int32_t *y, size_t n_classes);
    eb_status (*transform)(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err);
    const double *(*loss_history)(const void *model, size_t *length);
    size_t (*output_dim)(const void *model);
    int (*is_fitted)(const void *model);
    void (*release)(void *model);
} model_ops;

static size_t ff_saved_size(const void *m) { return eb_feedforward_saved_size(m); }
static eb_status ff_save_to_buffer(const void *m, void *b, size_t c, size_t *w, eb_error *e)
{
    return eb_feedforward_save_to_buffer(m, b, c, w, e);
}
static eb_status ff_load_from_buffer(const void *b, size_t s, const eb_allocator *mem, void **out, eb_error *e)
{
    eb_feedforward *model = NULL;
    eb_status status = eb_feedforward_load_from_buffer(b, s, mem, &model, e);
    *out = model;
    return status;
}
static eb_status ff_save(const void *m, const char *p, eb_error *e) { return eb_feedforward_save(m, p, e); }
static eb_status ff_load(const char *p, const eb_allocator *mem, void **out, eb_error *e)
{
    eb_feedforward *model = NULL;
    eb_status status = eb_feedforward_load(p, mem, &model, e);
    *out = model;
    return status;
}
static eb_status ff_partial_fit(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_feedforward_partial_fit(m, x, y, k);
}
static eb_status ff_transform(const void *m, eb_matrix x, eb_mut_matrix o, eb_error *e)
{
    return eb_feedforward_transform(m, x, o, e);
}
static const double *ff_history(const void *m, size_t *n) { return eb_feedforward_loss_history(m, n); }
static size_t ff_output_dim(const void *m) { return eb_feedforward_output_dim(m); }
static int ff_is_fitted(const void *m) { return eb_feedforward_is_fitted(m); }
static void ff_release(void *m) { eb_feedforward_free(m); }

static size_t cl_saved_size(const void *m) { return eb_contrastive_saved_size(m); }
static eb_status cl_save_to_buffer(const void *m, void *b, size_t c, size_t *w, eb_error *e)
{
    return eb_contrastive_save_to_buffer(m, b, c, w, e);
}
static eb_status cl_load_from_buffer(const void *b, size_t s, const eb_allocator *mem, void **out, eb_error *e)
{
    eb_contrastive *model = NULL;
    eb_status status = eb_contrastive_load_from_buffer(b, s, mem, &model, e);
    *out = model;
    return status;
}
static eb_status cl_save(const void *m, const char *p, eb_error *e) { return eb_contrastive_save(m, p, e); }
static eb_status cl_load(const char *p, const eb_allocator *mem, void **out, eb_error *e)
{
    eb_contrastive *model = NULL;
    eb_status status = eb_contrastive_load(p, mem, &model, e);
    *out = model;
    return status;
}
static eb_status cl_partial_fit(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_contrastive_partial_fit(m, x, y, k);
}
static eb_status cl_transform(const void *m, eb_matrix x, eb_mut_matrix o, eb_error *e)
{
    return eb_contrastive_transform(m, x, o, e);
}
static const double *cl_history(const void *m, size_t *n) { return eb_contrastive_loss_history(m, n); }
static size_t cl_output_dim(const void *m) { return eb_contrastive_output_dim(m); }
static int cl_is_fitted(const void *m) { return eb_contrastive_is_fitted(m); }
static void cl_release(void *m) { eb_contrastive_free(m); }

static const model_ops FEEDFORWARD = {
    "feed-forward", 1, ff_saved_size, ff_save_to_buffer, ff_load_from_buffer, ff_save, ff_load, ff_partial_fit,
    ff_transform, ff_history, ff_output_dim, ff_is_fitted, ff_release};
static const model_ops CONTRASTIVE = {
    "contrastive", 2, cl_saved_size, cl_save_to_buffer, cl_load_from_buffer, cl_save, cl_load, cl_partial_fit,
    cl_transform, cl_history, cl_output_dim, cl_is_fitted, cl_release};

/* ---- the models under test ------------------------------------------------------ */

typedef struct model_case {
    const model_ops *ops;
    bool fitted;
    size_t batch_size;
    /* Contrastive only: the output width, or EB_HIDDEN_DIM_AS_INPUT. */
    size_t hidden_dim;
} model_case;

static const model_case CASES[] = {
    {&FEEDFORWARD, true, 8, 5},
    {&FEEDFORWARD, false, 8, 5},
    {&FEEDFORWARD, true, 0, 5},
    {&CONTRASTIVE, true, 16, 4},
    {&CONTRASTIVE, false, 16, 4},
    {&CONTRASTIVE, true, 16, EB_HIDDEN_DIM_AS_INPUT},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

/* A model of the case, trained for 3 epochs when fitted; mem may be NULL. */
static void *make_model(const model_case *c, const eb_allocator *mem)
{
    const dataset data = make_dataset(11);
    void *model = NULL;
    eb_error err;
    if (c->ops == &FEEDFORWARD) {
        eb_feedforward_params p = eb_feedforward_default_params();
        p.hidden_dim = c->hidden_dim;
        p.n_epochs = 3;
        p.learning_rate = 0.05f;
        p.batch_size = c->batch_size;
        p.seed = 7;
        eb_feedforward *ff = NULL;
        assert_int_equal(eb_feedforward_create(&p, mem, &ff, &err), EB_OK);
        if (c->fitted)
            assert_int_equal(eb_feedforward_fit(ff, matrix_of(&data), data.y, N_CLASSES), EB_OK);
        model = ff;
    } else {
        eb_contrastive_params p = eb_contrastive_default_params();
        p.hidden_dim = c->hidden_dim;
        p.n_neg = 2;
        p.n_epochs = 3;
        p.learning_rate = 0.05f;
        p.batch_size = c->batch_size;
        p.seed = 9;
        eb_contrastive *cl = NULL;
        assert_int_equal(eb_contrastive_create(&p, mem, &cl, &err), EB_OK);
        if (c->fitted)
            assert_int_equal(eb_contrastive_fit(cl, matrix_of(&data), data.y, N_CLASSES), EB_OK);
        model = cl;
    }
    assert_int_equal(c->ops->is_fitted(model), c->fitted);
    return model;
}

typedef struct saved_bytes {
    uint8_t *data;
    size_t size;
} saved_bytes;

static saved_bytes save_model(const model_ops *ops, const void *model)
{
    saved_bytes b;
    b.size = ops->saved_size(model);
    assert_true(b.size > HEADER_BYTES);
    b.data = malloc(b.size);
    assert_non_null(b.data);
    size_t written = 0;
    eb_error err;
    assert_int_equal(ops->save_to_buffer(model, b.data, b.size, &written, &err), EB_OK);
    assert_int_equal(written, b.size);
    assert_string_equal(err.message, "");
    return b;
}

static void *load_model(const model_ops *ops, const saved_bytes *b)
{
    void *model = NULL;
    eb_error err;
    eb_status status = ops->load_from_buffer(b->data, b->size, NULL, &model, &err);
    if (status != EB_OK)
        fail_msg("loading saved %s bytes failed: %s", ops->name, err.message);
    assert_non_null(model);
    return model;
}

/* ---- what "the same model" means ------------------------------------------------ */

/* Two models are interchangeable when every observable agrees bit for bit and they save to the same bytes. */
static void assert_models_identical(const model_ops *ops, const void *a, const void *b)
{
    assert_int_equal(ops->is_fitted(a), ops->is_fitted(b));
    assert_int_equal(ops->output_dim(a), ops->output_dim(b));

    size_t length_a, length_b;
    const double *history_a = ops->loss_history(a, &length_a);
    const double *history_b = ops->loss_history(b, &length_b);
    assert_int_equal(length_a, length_b);
    if (length_a > 0)
        assert_memory_equal(history_a, history_b, length_a * sizeof(double));

    const dataset probe = make_dataset(99);
    if (ops->is_fitted(a)) {
        size_t width = ops->output_dim(a);
        float *out_a = calloc(N_ROWS * width, sizeof(float));
        float *out_b = calloc(N_ROWS * width, sizeof(float));
        assert_non_null(out_a);
        assert_non_null(out_b);
        assert_int_equal(ops->transform(a, matrix_of(&probe), eb_mut_matrix_view(out_a, N_ROWS, width), NULL),
                         EB_OK);
        assert_int_equal(ops->transform(b, matrix_of(&probe), eb_mut_matrix_view(out_b, N_ROWS, width), NULL),
                         EB_OK);
        assert_memory_equal(out_a, out_b, N_ROWS * width * sizeof(float));
        free(out_a);
        free(out_b);
    } else {
        float scratch[N_ROWS * N_COLS];
        eb_mut_matrix out = eb_mut_matrix_view(scratch, N_ROWS, N_COLS);
        assert_int_equal(ops->transform(a, matrix_of(&probe), out, NULL), EB_ERR_NOT_FITTED);
        assert_int_equal(ops->transform(b, matrix_of(&probe), out, NULL), EB_ERR_NOT_FITTED);
    }

    saved_bytes bytes_a = save_model(ops, a), bytes_b = save_model(ops, b);
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
static void assert_training_continues_identically(const model_case *c, void *original, void *loaded)
{
    const model_ops *ops = c->ops;
    const dataset more = make_dataset(5);
    saved_bytes before = save_model(ops, loaded);
    assert_int_equal(ops->partial_fit(original, matrix_of(&more), more.y, N_CLASSES), EB_OK);
    assert_int_equal(ops->partial_fit(loaded, matrix_of(&more), more.y, N_CLASSES), EB_OK);
    assert_true(ops->is_fitted(loaded));
    assert_models_identical(ops, original, loaded);

    /* The check has teeth: the update really moved the model, so agreeing afterwards is not trivial. */
    size_t length;
    ops->loss_history(loaded, &length);
    assert_int_equal(length, c->fitted ? 4 : 1);
    saved_bytes after = save_model(ops, loaded);
    assert_true(after.size != before.size || memcmp(after.data, before.data, after.size) != 0);
    free(before.data);
    free(after.data);
}

/* ---- round trips -------------------------------------------------------------- */

static void test_buffer_round_trip(void **state)
{
    const model_case *c = *state;
    void *original = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, original);
    void *loaded = load_model(c->ops, &bytes);
    assert_models_identical(c->ops, original, loaded);
    assert_training_continues_identically(c, original, loaded);
    c->ops->release(original);
    c->ops->release(loaded);
    free(bytes.data);
}

static void test_saved_size_matches_and_small_buffer_is_refused(void **state)
{
    const model_case *c = *state;
    void *model = make_model(c, NULL);
    size_t size = c->ops->saved_size(model);
    uint8_t *buffer = malloc(size + 16);
    assert_non_null(buffer);

    memset(buffer, 0xA5, size + 16);
    size_t written = 0;
    eb_error err;
    assert_int_equal(c->ops->save_to_buffer(model, buffer, size + 16, &written, &err), EB_OK);
    assert_int_equal(written, size);
    for (size_t i = size; i < size + 16; i++)
        assert_int_equal(buffer[i], 0xA5);

    memset(buffer, 0xA5, size + 16);
    written = 12345;
    assert_int_equal(c->ops->save_to_buffer(model, buffer, size - 1, &written, &err), EB_ERR_SHAPE_MISMATCH);
    assert_int_equal(err.status, EB_ERR_SHAPE_MISMATCH);
    assert_int_equal(written, 0);
    char expected[64];
    snprintf(expected, sizeof expected, "needs %zu", size);
    assert_non_null(strstr(err.message, expected));
    for (size_t i = 0; i < size + 16; i++)
        assert_int_equal(buffer[i], 0xA5);

    assert_int_equal(c->ops->save_to_buffer(model, NULL, size, &written, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(c->ops->save_to_buffer(NULL, buffer, size, &written, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(c->ops->saved_size(NULL), 0);
    free(buffer);
    c->ops->release(model);
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

    void *original = make_model(c, NULL);
    eb_error err;
    assert_int_equal(c->ops->save(original, path, &err), EB_OK);
    assert_string_equal(err.message, "");

    /* The file holds exactly the buffer format, nothing more. */
    saved_bytes in_memory = save_model(c->ops, original);
    saved_bytes on_disk = read_whole_file(path);
    assert_int_equal(on_disk.size, in_memory.size);
    assert_memory_equal(on_disk.data, in_memory.data, in_memory.size);

    /* A new file gets the permissions the umask gives any new file, not a temporary file's 0600. */
    mode_t mask = umask(022);
    umask(mask);
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    assert_int_equal(info.st_mode & 0777, 0666 & ~mask);

    void *loaded = NULL;
    assert_int_equal(c->ops->load(path, NULL, &loaded, &err), EB_OK);
    assert_models_identical(c->ops, original, loaded);
    assert_training_continues_identically(c, original, loaded);

    /* Saving over an existing file replaces it and leaves nothing else behind. */
    assert_int_equal(c->ops->save(original, path, &err), EB_OK);
    saved_bytes replaced = read_whole_file(path);
    saved_bytes expected = save_model(c->ops, original);
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
    c->ops->release(original);
    c->ops->release(loaded);
    remove_scratch_dir(&dir);
}

/* ---- loading trusts nothing: damaged bytes ----------------------------------------- */

/* A failed load: EB_ERR_FORMAT, a message, no model. Returns the message for further checks. */
static const char *expect_format_error(const model_ops *ops, const void *data, size_t size, eb_error *err)
{
    void *model = (void *)1;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_status status = ops->load_from_buffer(data, size, &mem, &model, err);
    if (status != EB_ERR_FORMAT)
        fail_msg("expected EB_ERR_FORMAT loading %zu bytes as %s, got %s (%s)", size, ops->name,
                 eb_status_string(status), err->message);
    assert_null(model);
    assert_int_equal(err->status, EB_ERR_FORMAT);
    assert_true(strlen(err->message) > 0);
    assert_int_equal(counter.live_blocks, 0);
    return err->message;
}

static void test_every_truncation_is_refused(void **state)
{
    const model_case *c = *state;
    void *model = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, model);
    for (size_t length = 0; length < bytes.size; length++) {
        /* An exactly sized copy, so AddressSanitizer sees any read past the end. */
        uint8_t *copy = malloc(length == 0 ? 1 : length);
        assert_non_null(copy);
        memcpy(copy, bytes.data, length);
        eb_error err;
        const char *message = expect_format_error(c->ops, copy, length, &err);
        if (length < HEADER_BYTES)
            assert_non_null(strstr(message, "header"));
        else
            assert_non_null(strstr(message, "payload bytes"));
        free(copy);
    }
    free(bytes.data);
    c->ops->release(model);
}

static void test_every_bit_flip_is_refused(void **state)
{
    const model_case *c = *state;
    void *model = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, model);
    uint8_t *copy = malloc(bytes.size);
    assert_non_null(copy);
    memcpy(copy, bytes.data, bytes.size);
    for (size_t bit = 0; bit < 8 * bytes.size; bit++) {
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        eb_error err;
        const char *message = expect_format_error(c->ops, copy, bytes.size, &err);
        /* The CRC covers the payload; the header's fields are each checked on their own. */
        if (bit / 8 >= HEADER_BYTES)
            assert_non_null(strstr(message, "checksum"));
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_memory_equal(copy, bytes.data, bytes.size);
    free(copy);
    free(bytes.data);
    c->ops->release(model);
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
    void *model = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, model);
    uint8_t *copy = malloc(bytes.size);
    assert_non_null(copy);
    eb_error err;

    /* The other kind. */
    const model_ops *other = c->ops == &FEEDFORWARD ? &CONTRASTIVE : &FEEDFORWARD;
    const char *message = expect_format_error(other, bytes.data, bytes.size, &err);
    assert_non_null(strstr(message, c->ops == &FEEDFORWARD ? "holds a feed-forward" : "holds a contrastive"));

    /* A newer format version, and the never-used version 0. */
    static const uint32_t bad_versions[] = {2, 3, 0x80000000u, UINT32_MAX, 0};
    for (size_t i = 0; i < sizeof bad_versions / sizeof bad_versions[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u32(copy + 8, bad_versions[i]);
        message = expect_format_error(c->ops, copy, bytes.size, &err);
        assert_non_null(strstr(message, bad_versions[i] == 0 ? "version 0" : "newer"));
    }

    /* Unknown kinds. */
    static const uint32_t bad_kinds[] = {0, 3, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u32(copy + 12, bad_kinds[i]);
        message = expect_format_error(c->ops, copy, bytes.size, &err);
        assert_non_null(strstr(message, "unknown kind"));
    }

    /* A payload length that lies, in both directions and far beyond the data. */
    const uint64_t payload = bytes.size - HEADER_BYTES;
    const uint64_t lies[] = {payload + 1, payload - 1, 0, UINT64_MAX, (uint64_t)SIZE_MAX - HEADER_BYTES + 1};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(copy, bytes.data, bytes.size);
        put_u64(copy + 16, lies[i]);
        message = expect_format_error(c->ops, copy, bytes.size, &err);
        assert_non_null(strstr(message, "payload bytes"));
    }

    /* Not a model at all. */
    memcpy(copy, bytes.data, bytes.size);
    copy[0] = 'e';
    message = expect_format_error(c->ops, copy, bytes.size, &err);
    assert_non_null(strstr(message, "magic"));

    /* NULL arguments. */
    void *out = (void *)1;
    assert_int_equal(c->ops->load_from_buffer(NULL, bytes.size, NULL, &out, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(c->ops == &FEEDFORWARD ? eb_feedforward_load_from_buffer(bytes.data, bytes.size, NULL, NULL, &err)
                                            : eb_contrastive_load_from_buffer(bytes.data, bytes.size, NULL, NULL, &err),
                     EB_ERR_NULL_POINTER);

    free(copy);
    free(bytes.data);
    c->ops->release(model);
}

/* ---- an independent reader and writer of the documented layout ------------------ */

typedef struct saved_fields {
    uint32_t version;
    uint32_t kind;
    uint64_t hidden_dim;
    uint64_t n_neg; /* contrastive only */
    uint64_t n_epochs;
    float learning_rate;
    uint64_t batch_size;
    uint64_t seed;
    uint8_t fitted;
    uint64_t n_features, n_classes, out_dim, weight_count, adam_steps, rng[4];
    /* The arrays as parsed; weights_written / history_written entries of them are encoded. */
    float *values, *first_moment, *second_moment;
    size_t weights_parsed, weights_written;
    uint64_t history_length;
    double *history;
    size_t history_parsed, history_written;
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
    assert_int_equal(f.version, 1);
    assert_int_equal(payload_length, b->size - HEADER_BYTES);
    assert_int_equal(crc, (uint32_t)crc32(0L, b->data + HEADER_BYTES, (uInt)payload_length));

    f.hidden_dim = take(&c, 8);
    if (f.kind == 2)
        f.n_neg = take(&c, 8);
    f.n_epochs = take(&c, 8);
    f.learning_rate = take_f32(&c);
    f.batch_size = take(&c, 8);
    f.seed = take(&c, 8);
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
    assert_int_equal(c.pos, c.size);
    return f;
}

static void release_fields(saved_fields *f)
{
    free(f->values);
    free(f->first_moment);
    free(f->second_moment);
    free(f->history);
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
    if (f->kind == 2)
        give(&s, f->n_neg, 8);
    give(&s, f->n_epochs, 8);
    give_f32(&s, f->learning_rate);
    give(&s, f->batch_size, 8);
    give(&s, f->seed, 8);
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
    for (size_t i = 0; i < f->trailing; i++)
        give(&s, 0, 1);
    size_t payload = s.length - HEADER_BYTES;
    put_u64(s.data + 16, payload);
    put_u32(s.data + 24, (uint32_t)crc32(0L, s.data + HEADER_BYTES, (uInt)payload));
    saved_bytes b = {s.data, s.length};
    return b;
}

static void test_documented_layout_reproduces_the_bytes(void **state)
{
    const model_case *c = *state;
    void *model = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, model);
    saved_fields f = parse_saved(&bytes);
    assert_int_equal(f.kind, c->ops->kind);
    assert_int_equal(f.fitted, c->fitted);
    assert_true(f.hidden_dim == (c->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? UINT64_MAX : c->hidden_dim));
    assert_int_equal(f.batch_size, c->batch_size);
    assert_true(f.learning_rate == 0.05f);
    size_t history_length;
    const double *history = c->ops->loss_history(model, &history_length);
    assert_int_equal(f.history_length, history_length);
    if (history_length > 0)
        assert_memory_equal(f.history, history, history_length * sizeof(double));
    if (c->fitted) {
        assert_int_equal(f.n_features, N_COLS);
        assert_int_equal(f.n_classes, N_CLASSES);
        assert_int_equal(f.out_dim, c->ops->output_dim(model));
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
    c->ops->release(model);
}

/* ---- crafted payloads with a valid CRC ---------------------------------------------- */

typedef void (*field_edit)(saved_fields *f);

typedef struct crafted_case {
    const char *what;
    bool needs_fitted;
    bool feedforward_only;
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

static const crafted_case CRAFTED[] = {
    {"weight count UINT64_MAX", true, false, weight_count_huge, "weights need more bytes"},
    {"weight count 2^61", true, false, weight_count_past_data, "weights need more bytes"},
    {"weight count one more than written", true, false, weight_count_one_more, ""},
    {"weight count one less than written", true, false, weight_count_one_less, ""},
    {"weight count zero", true, false, weight_count_zero, "weights"},
    {"one weight more than the shapes need", true, false, weight_count_matching_extra_data, "shapes disagree"},
    {"history length UINT64_MAX", false, false, history_huge, "loss history"},
    {"history length 2^60", false, false, history_past_data, "loss history"},
    {"history length one more than written", false, false, history_one_more, "loss history"},
    {"fitted model without history", true, false, history_empty_when_fitted, "loss history"},
    {"fewer Adam steps than epochs", true, false, fewer_steps_than_epochs, "Adam steps"},
    {"Adam steps 2^62 + 1", true, false, steps_past_limit, "Adam steps"},
    {"Adam steps UINT64_MAX", true, false, steps_max, "Adam steps"},
    {"n_features times hidden overflows", true, false, features_times_hidden_overflow, "shapes disagree"},
    {"n_features above INT_MAX", true, false, features_above_int, "shapes disagree"},
    {"n_features off by one", true, false, features_off_by_one, "shapes disagree"},
    {"n_features zero", true, false, features_zero, "shapes disagree"},
    {"out_dim inconsistent with hidden_dim", true, false, out_dim_off, "shapes disagree"},
    {"out_dim zero", true, false, out_dim_zero, "shapes disagree"},
    {"n_classes zero", true, false, classes_zero, "shapes disagree"},
    {"n_classes UINT64_MAX", true, true, classes_huge, "shapes disagree"},
    {"n_classes one more than the output layer has", true, true, classes_off_by_one, "shapes disagree"},
    {"a NaN weight", true, false, weight_nan, "weight"},
    {"an infinite weight", true, false, weight_infinite, "weight"},
    {"a NaN Adam first moment", true, false, first_moment_nan, "Adam first moment"},
    {"an infinite Adam first moment", true, false, first_moment_infinite, "Adam first moment"},
    {"a negative Adam second moment", true, false, second_moment_negative, "Adam second moment"},
    {"a NaN Adam second moment", true, false, second_moment_nan, "Adam second moment"},
    {"a NaN loss in the history", true, false, history_nan, "loss history entry"},
    {"an infinite loss in the history", true, false, history_infinite, "loss history entry"},
    {"RNG state all zero", true, false, rng_all_zero, "RNG"},
    {"fitted flag 2", false, false, fitted_flag_two, "fitted flag"},
    {"learning_rate NaN", false, false, learning_rate_nan, "learning_rate"},
    {"learning_rate infinite", false, false, learning_rate_infinite, "learning_rate"},
    {"learning_rate negative", false, false, learning_rate_negative, "learning_rate"},
    {"learning_rate zero", false, false, learning_rate_zero, "learning_rate"},
    {"hidden_dim zero", false, false, hidden_dim_zero, "hidden_dim"},
    {"hidden_dim above INT_MAX", false, false, hidden_dim_above_int, "hidden_dim"},
    {"hidden_dim UINT64_MAX - 1", false, false, hidden_dim_size_max_minus_one, "hidden_dim"},
    {"n_epochs zero", false, false, epochs_zero, "n_epochs"},
    {"one trailing byte", false, false, one_trailing_byte, "1 unexpected bytes"},
    {"100 trailing bytes", false, false, many_trailing_bytes, "100 unexpected bytes"},
};

static void check_crafted(const model_case *c, const saved_fields *original, const char *what, field_edit edit,
                          const char *message_part)
{
    saved_fields f = *original;
    /* Edits may change array entries; give them their own copies. */
    f.history = calloc(f.history_parsed + 1, sizeof *f.history);
    assert_non_null(f.history);
    memcpy(f.history, original->history, f.history_parsed * sizeof *f.history);
    float **arrays[3] = {&f.values, &f.first_moment, &f.second_moment};
    for (int a = 0; a < 3; a++) {
        float *copy = calloc(f.weights_parsed + 1, sizeof *copy);
        assert_non_null(copy);
        if (*arrays[a] != NULL)
            memcpy(copy, *arrays[a], f.weights_parsed * sizeof *copy);
        *arrays[a] = copy;
    }
    edit(&f);
    saved_bytes crafted = encode_saved(&f);
    eb_error err;
    void *model = (void *)1;
    eb_status status = c->ops->load_from_buffer(crafted.data, crafted.size, NULL, &model, &err);
    if (status != EB_ERR_FORMAT || strstr(err.message, message_part) == NULL)
        fail_msg("%s %s model, %s: got %s \"%s\", expected EB_ERR_FORMAT mentioning \"%s\"", c->fitted ? "fitted" : "unfitted",
                 c->ops->name, what, eb_status_string(status), err.message, message_part);
    assert_null(model);
    assert_true(strstr(err.message, "saved model") != NULL);
    free(crafted.data);
    release_fields(&f);
}

static void test_crafted_payloads_are_refused(void **state)
{
    const model_case *c = *state;
    void *model = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, model);
    saved_fields f = parse_saved(&bytes);

    /* The crafting itself yields loadable bytes, so each refusal below is the edit's doing. */
    saved_fields reseeded = f;
    reseeded.seed = 12345;
    saved_bytes control = encode_saved(&reseeded);
    void *loaded = load_model(c->ops, &control);
    c->ops->release(loaded);
    free(control.data);

    size_t checked = 0;
    for (size_t i = 0; i < sizeof CRAFTED / sizeof CRAFTED[0]; i++) {
        if ((CRAFTED[i].needs_fitted && !c->fitted) || (CRAFTED[i].feedforward_only && c->ops != &FEEDFORWARD))
            continue;
        check_crafted(c, &f, CRAFTED[i].what, CRAFTED[i].edit, CRAFTED[i].message_part);
        checked++;
    }
    if (!c->fitted)
        check_crafted(c, &f, "history on an unfitted model", history_when_unfitted, "unfitted model");
    if (c->ops == &CONTRASTIVE)
        check_crafted(c, &f, "n_neg zero", n_neg_zero, "n_neg");
    /* Every case meets at least the params, history and trailing-byte edits. */
    assert_true(checked >= 14);
    release_fields(&f);
    free(bytes.data);
    c->ops->release(model);
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
    void *loaded;
    /* Contrastive: a fitted model has seen two labels; with hidden_dim "as input" the width is n_features. */
    const model_case as_input = {&CONTRASTIVE, true, 16, EB_HIDDEN_DIM_AS_INPUT};
    void *model = make_model(&as_input, NULL);
    saved_bytes bytes = save_model(as_input.ops, model);
    saved_fields f = parse_saved(&bytes);
    check_crafted(&as_input, &f, "a single class", single_class, "shapes disagree");
    check_crafted(&as_input, &f, "width not n_features under EB_HIDDEN_DIM_AS_INPUT", as_input_width_off,
                  "shapes disagree");
    release_fields(&f);
    free(bytes.data);
    as_input.ops->release(model);

    /* At the step limit a model loads, trains on, and still saves to a loadable file. */
    const model_case cl_case = {&CONTRASTIVE, true, 16, 4};
    model = make_model(&cl_case, NULL);
    bytes = save_model(cl_case.ops, model);
    f = parse_saved(&bytes);
    saved_fields at_limit = f;
    at_limit.adam_steps = (uint64_t)1 << 62;
    saved_bytes limit_bytes = encode_saved(&at_limit);
    void *veteran = load_model(cl_case.ops, &limit_bytes);
    const dataset more = make_dataset(21);
    assert_int_equal(cl_case.ops->partial_fit(veteran, matrix_of(&more), more.y, 0), EB_OK);
    saved_bytes trained = save_model(cl_case.ops, veteran);
    saved_fields trained_fields = parse_saved(&trained);
    assert_true(trained_fields.adam_steps == (uint64_t)1 << 62);
    void *reloaded = load_model(cl_case.ops, &trained);
    assert_models_identical(cl_case.ops, veteran, reloaded);
    cl_case.ops->release(reloaded);
    cl_case.ops->release(veteran);
    release_fields(&trained_fields);
    free(trained.data);
    free(limit_bytes.data);
    release_fields(&f);
    free(bytes.data);
    cl_case.ops->release(model);

    /* A gradient above ~1.8e19 squares to +inf in float, so an infinite second moment is legitimate. */
    model = make_model(&cl_case, NULL);
    bytes = save_model(cl_case.ops, model);
    f = parse_saved(&bytes);
    f.second_moment[3] = INFINITY;
    saved_bytes infinite_moment = encode_saved(&f);
    loaded = load_model(cl_case.ops, &infinite_moment);
    cl_case.ops->release(loaded);
    free(infinite_moment.data);
    release_fields(&f);
    free(bytes.data);
    cl_case.ops->release(model);

    /* Feed-forward: one class is a legal (if useless) fit and loads. */
    const model_case ff = {&FEEDFORWARD, true, 8, 5};
    model = make_model(&ff, NULL);
    bytes = save_model(ff.ops, model);
    f = parse_saved(&bytes);
    saved_fields edited = f;
    edited.n_classes = 1;
    edited.weight_count = N_COLS * 5 + 5 + 5 * 1 + 1;
    edited.weights_written = (size_t)edited.weight_count;
    saved_bytes one_class = encode_saved(&edited);
    loaded = load_model(ff.ops, &one_class);
    assert_int_equal(eb_feedforward_n_classes(loaded), 1);
    ff.ops->release(loaded);
    free(one_class.data);
    release_fields(&f);
    free(bytes.data);
    ff.ops->release(model);
}

/* ---- allocation failures ---------------------------------------------------------- */

static void test_every_allocation_failure(void **state)
{
    const model_case *c = *state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    void *model = make_model(c, &mem);
    saved_bytes bytes = save_model(c->ops, model);
    scratch_dir dir = make_scratch_dir();
    char path[512];
    join_path(path, sizeof path, &dir, "model.ebm");
    eb_error err;

    /* save_to_buffer draws on no allocator at all. */
    size_t live_before = counter.live_blocks;
    counting_allocator_arm(&counter, 0);
    saved_bytes again = save_model(c->ops, model);
    assert_int_equal(counter.attempts, 0);
    free(again.data);
    counting_allocator_arm(&counter, SIZE_MAX);

    /* Loading from a buffer: every allocation in turn fails, then all succeed. */
    counting_allocator load_counter;
    eb_allocator load_mem = counting_allocator_init(&load_counter);
    void *loaded = NULL;
    assert_int_equal(c->ops->load_from_buffer(bytes.data, bytes.size, &load_mem, &loaded, &err), EB_OK);
    size_t load_allocations = load_counter.attempts;
    assert_true(load_allocations >= (c->fitted ? 3u : 1u));
    c->ops->release(loaded);
    assert_int_equal(load_counter.live_blocks, 0);
    for (size_t fail_at = 0; fail_at < load_allocations; fail_at++) {
        counting_allocator_arm(&load_counter, fail_at);
        loaded = (void *)1;
        assert_int_equal(c->ops->load_from_buffer(bytes.data, bytes.size, &load_mem, &loaded, &err), EB_ERR_NOMEM);
        assert_null(loaded);
        assert_int_equal(load_counter.failures, 1);
        assert_int_equal(load_counter.live_blocks, 0);
        assert_non_null(strstr(err.message, "out of memory"));
    }

    /* Loading from a file reads it through the same allocator. */
    assert_int_equal(c->ops->save(model, path, &err), EB_OK);
    counting_allocator_arm(&load_counter, SIZE_MAX);
    assert_int_equal(c->ops->load(path, &load_mem, &loaded, &err), EB_OK);
    size_t file_allocations = load_counter.attempts;
    assert_int_equal(file_allocations, load_allocations + 1);
    c->ops->release(loaded);
    for (size_t fail_at = 0; fail_at < file_allocations; fail_at++) {
        counting_allocator_arm(&load_counter, fail_at);
        loaded = (void *)1;
        assert_int_equal(c->ops->load(path, &load_mem, &loaded, &err), EB_ERR_NOMEM);
        assert_null(loaded);
        assert_int_equal(load_counter.live_blocks, 0);
    }

    /* Saving to a file: each failure leaves the old file and no temporary behind. */
    saved_bytes old_file = read_whole_file(path);
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(c->ops->save(model, path, &err), EB_OK);
    size_t save_allocations = counter.attempts;
    assert_int_equal(save_allocations, 2);
    assert_int_equal(counter.live_blocks, live_before);
    for (size_t fail_at = 0; fail_at < save_allocations; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(c->ops->save(model, path, &err), EB_ERR_NOMEM);
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
    c->ops->release(model);
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

static int save_with_file_size_limit(const model_case *c, const void *model, const char *path, rlim_t limit)
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
            eb_status status = c->ops->save(model, path, &err);
            if (status == EB_OK)
                code = CHILD_SAVE_SUCCEEDED;
            else if (status != EB_ERR_IO || err.status != EB_ERR_IO)
                code = CHILD_WRONG_STATUS;
            else if (strstr(err.message, strerror(EFBIG)) == NULL || strstr(err.message, path) == NULL)
                code = CHILD_NO_REASON;
        }
        c->ops->release((void *)model);
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
    void *old_model = make_model(&old_case, NULL);
    eb_error err;
    assert_int_equal(c->ops->save(old_model, path, &err), EB_OK);
    saved_bytes old_bytes = read_whole_file(path);

    void *new_model = make_model(c, NULL);
    size_t new_size = c->ops->saved_size(new_model);
    assert_int_equal(save_with_file_size_limit(c, new_model, path, (rlim_t)(new_size / 2)), CHILD_OK);

    saved_bytes now = read_whole_file(path);
    assert_int_equal(now.size, old_bytes.size);
    assert_memory_equal(now.data, old_bytes.data, old_bytes.size);
    void *reloaded = NULL;
    assert_int_equal(c->ops->load(path, NULL, &reloaded, &err), EB_OK);
    assert_models_identical(c->ops, old_model, reloaded);
    char names[512];
    size_t count;
    list_entries(&dir, names, sizeof names, &count);
    assert_int_equal(count, 1);
    assert_string_equal(names, "model.ebm");

    /* With room enough, the same save goes through. */
    assert_int_equal(save_with_file_size_limit(c, new_model, path, (rlim_t)new_size), CHILD_SAVE_SUCCEEDED);
    saved_bytes replaced = read_whole_file(path);
    saved_bytes expected = save_model(c->ops, new_model);
    assert_int_equal(replaced.size, expected.size);
    assert_memory_equal(replaced.data, expected.data, expected.size);

    free(old_bytes.data);
    free(now.data);
    free(replaced.data);
    free(expected.data);
    c->ops->release(reloaded);
    c->ops->release(old_model);
    c->ops->release(new_model);
    remove_scratch_dir(&dir);
}

static void test_io_errors_name_the_path(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    void *model = make_model(c, NULL);
    eb_error err;
    char path[512];

    join_path(path, sizeof path, &dir, "no-such-directory/model.ebm");
    assert_int_equal(c->ops->save(model, path, &err), EB_ERR_IO);
    assert_int_equal(err.status, EB_ERR_IO);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(ENOENT)));

    void *loaded = (void *)1;
    assert_int_equal(c->ops->load(path, NULL, &loaded, &err), EB_ERR_IO);
    assert_null(loaded);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(ENOENT)));

    /* A directory is not a model file. */
    assert_int_equal(c->ops->load(dir.path, NULL, &loaded, &err), EB_ERR_IO);
    assert_non_null(strstr(err.message, "not a regular file"));

    /* An empty file and a garbage file are format errors, not I/O errors. */
    join_path(path, sizeof path, &dir, "empty.ebm");
    write_whole_file(path, "", 0);
    assert_int_equal(c->ops->load(path, NULL, &loaded, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "header"));
    join_path(path, sizeof path, &dir, "text.ebm");
    static const char text[] = "this is a text file, long enough to hold a header of 28 bytes";
    write_whole_file(path, text, sizeof text);
    assert_int_equal(c->ops->load(path, NULL, &loaded, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "magic"));

    assert_int_equal(c->ops->save(model, NULL, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(c->ops->save(model, "", &err), EB_ERR_IO);
    assert_int_equal(c->ops->load(NULL, NULL, &loaded, &err), EB_ERR_NULL_POINTER);

    c->ops->release(model);
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
static int load_in_child(const model_ops *ops, const char *path, const char *what)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(5);
        void *model = NULL;
        eb_error err, header_err;
        eb_model_header header;
        eb_status status = ops->load(path, NULL, &model, &err);
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
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];

    join_path(path, sizeof path, &dir, "fifo.ebm");
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(load_in_child(c->ops, path, "a FIFO"), CHILD_REFUSED);
    unlink(path);

    assert_int_equal(load_in_child(c->ops, "/dev/zero", "a character device"), CHILD_REFUSED);
    assert_int_equal(load_in_child(c->ops, "/dev/null", "a character device"), CHILD_REFUSED);
    assert_int_equal(load_in_child(c->ops, dir.path, "a directory"), CHILD_REFUSED);

    /* Nothing is allocated for any of them: the type is known before reading. */
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    void *model = NULL;
    eb_error err;
    assert_int_equal(c->ops->load("/dev/zero", &mem, &model, &err), EB_ERR_IO);
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
    void *original = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, original);

    join_path(path, sizeof path, &dir, "zeros.ebm");
    write_whole_file(path, "", 0);
    assert_int_equal(truncate(path, huge), 0);
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    void *model = (void *)1;
    eb_error err;
    assert_int_equal(c->ops->load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_null(model);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "not an embetter model"));
    assert_int_equal(counter.attempts, 0);

    join_path(path, sizeof path, &dir, "long.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    assert_int_equal(truncate(path, huge), 0);
    assert_int_equal(c->ops->load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "announces"));
    assert_int_equal(counter.attempts, 0);

    /* One byte short is refused the same way; the exact size loads. */
    join_path(path, sizeof path, &dir, "short.ebm");
    write_whole_file(path, bytes.data, bytes.size - 1);
    assert_int_equal(c->ops->load(path, &mem, &model, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "announces"));
    assert_int_equal(counter.attempts, 0);
    join_path(path, sizeof path, &dir, "exact.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    assert_int_equal(c->ops->load(path, &mem, &model, &err), EB_OK);
    assert_models_identical(c->ops, original, model);
    c->ops->release(model);
    assert_int_equal(counter.live_blocks, 0);

    free(bytes.data);
    c->ops->release(original);
    remove_scratch_dir(&dir);
}

/* A format error of a file names the file, whichever check found it. */
static void test_format_errors_of_a_file_name_it(void **state)
{
    const model_case *c = *state;
    scratch_dir dir = make_scratch_dir();
    char path[512];
    void *original = make_model(c, NULL);
    saved_bytes bytes = save_model(c->ops, original);
    bytes.data[bytes.size - 1] ^= 0x55; /* the CRC catches it */
    join_path(path, sizeof path, &dir, "corrupt.ebm");
    write_whole_file(path, bytes.data, bytes.size);
    void *model = (void *)1;
    eb_error err;
    assert_int_equal(c->ops->load(path, NULL, &model, &err), EB_ERR_FORMAT);
    assert_null(model);
    assert_int_equal(strncmp(err.message, path, strlen(path)), 0);
    assert_non_null(strstr(err.message, ": saved model: checksum mismatch"));
    free(bytes.data);
    c->ops->release(original);
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
    void *models[2] = {make_model(c, NULL), make_model(c, NULL)};
    const dataset data = make_dataset(12);
    assert_int_equal(c->ops->partial_fit(models[1], matrix_of(&data), data.y, c->fitted ? 0 : N_CLASSES), EB_OK);
    saved_bytes expected[2] = {save_model(c->ops, models[0]), save_model(c->ops, models[1])};
    assert_true(expected[0].size != expected[1].size ||
                memcmp(expected[0].data, expected[1].data, expected[0].size) != 0);
    eb_error err;
    assert_int_equal(c->ops->save(models[0], path, &err), EB_OK);
    pid_t savers[2];
    for (int i = 0; i < 2; i++) {
        savers[i] = fork();
        assert_true(savers[i] >= 0);
        if (savers[i] == 0) {
            int code = 0;
            for (int round = 0; round < 200 && code == 0; round++)
                code = c->ops->save(models[i], path, NULL) == EB_OK ? 0 : 1;
            exit(code);
        }
    }
    size_t loads[2] = {0, 0};
    for (int running = 2; running > 0;) {
        void *loaded = NULL;
        assert_int_equal(c->ops->load(path, NULL, &loaded, &err), EB_OK);
        saved_bytes again = save_model(c->ops, loaded);
        int which = -1;
        for (int i = 0; i < 2; i++)
            if (again.size == expected[i].size && memcmp(again.data, expected[i].data, again.size) == 0)
                which = i;
        assert_true(which >= 0);
        loads[which]++;
        free(again.data);
        c->ops->release(loaded);
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
        c->ops->release(models[i]);
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
    eb_feedforward_params p = eb_feedforward_default_params();
    p.hidden_dim = 4;
    p.n_epochs = 2;
    p.on_epoch = count_epochs;
    p.callback_data = &calls;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&p, NULL, &model, NULL), EB_OK);
    const dataset data = make_dataset(3);
    assert_int_equal(eb_feedforward_fit(model, matrix_of(&data), data.y, N_CLASSES), EB_OK);
    assert_int_equal(calls, 2);

    saved_bytes bytes = save_model(&FEEDFORWARD, model);
    eb_feedforward *loaded = load_model(&FEEDFORWARD, &bytes);
    eb_feedforward_params loaded_params = eb_feedforward_get_params(loaded);
    assert_null(loaded_params.on_epoch);
    assert_null(loaded_params.callback_data);
    assert_int_equal(eb_feedforward_partial_fit(loaded, matrix_of(&data), data.y, 0), EB_OK);
    assert_int_equal(calls, 2);
    eb_feedforward_set_callback(loaded, count_epochs, &calls);
    assert_int_equal(eb_feedforward_partial_fit(loaded, matrix_of(&data), data.y, 0), EB_OK);
    assert_int_equal(calls, 3);

    free(bytes.data);
    eb_feedforward_free(model);
    eb_feedforward_free(loaded);
}

/* ---- files saved by earlier builds ------------------------------------------------ */

/*
 * The fuzzer's seed corpus holds real models saved by this format version;
 * they must keep loading, and re-save to the same bytes, for as long as the
 * version is read at all. Files named regression_* are inputs the fuzzer
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
    size_t loaded_count = 0, refused_count = 0;
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
            expect_format_error(&FEEDFORWARD, bytes.data, bytes.size, &err);
            expect_format_error(&CONTRASTIVE, bytes.data, bytes.size, &err);
            refused_count++;
        } else {
            const model_ops *ops = strncmp(name, "feedforward_", 12) == 0 ? &FEEDFORWARD : &CONTRASTIVE;
            void *model = load_model(ops, &bytes);
            saved_bytes again = save_model(ops, model);
            assert_int_equal(again.size, bytes.size);
            assert_memory_equal(again.data, bytes.data, bytes.size);
            free(again.data);
            ops->release(model);
            loaded_count++;
        }
        free(bytes.data);
    }
    closedir(dir);
    assert_true(loaded_count >= 9);
    assert_true(refused_count >= 1);
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
    snprintf(out, size, "%s_%s_%s_batch_%zu", c->ops == &FEEDFORWARD ? "feedforward" : "contrastive",
             c->fitted ? "fitted" : "unfitted", width, c->batch_size);
}

int main(void)
{
    /* Every per-case test runs on every case, named test/case so a failure says which model broke. */
    static char names[N_PER_CASE * N_CASES][NAME_SIZE];
    struct CMUnitTest tests[N_PER_CASE * N_CASES + 3];
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
    };
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        tests[count++] = shared[i];
    if (count != sizeof tests / sizeof tests[0])
        return 1;
    return cmocka_run_group_tests_name("test_model_format", tests, NULL, NULL);
}
